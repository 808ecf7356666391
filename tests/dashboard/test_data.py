"""Dashboard data access: what each page reads, on a workspace after one run and on an empty one."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from deltalake import DeltaTable

from conftest import LoopedWorkspace
from goldgate.context import Context
from goldgate.dashboard import data


@pytest.fixture(scope="module")
def ctx(looped_workspace: LoopedWorkspace) -> Context:
    return data.open_context(str(looped_workspace.usecase_path), looped_workspace.workspace)


@pytest.fixture
def empty(tmp_path: Path) -> Context:
    return data.open_context("fx", tmp_path / "nothing-here")


def test_open_context_reads_the_use_case_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slice_usecase_path: Path
) -> None:
    monkeypatch.setenv(data.USECASE_ENV, str(slice_usecase_path))
    monkeypatch.setenv("GOLDGATE_WORKSPACE", str(tmp_path))
    ctx = data.open_context()
    assert ctx.usecase.name == "fx_slice"
    assert ctx.settings.workspace_dir == tmp_path.resolve()


def test_runs_and_step_timings(ctx: Context, looped_workspace: LoopedWorkspace) -> None:
    runs = data.recent_runs(ctx)
    assert len(runs) == 1
    table = data.runs_table(runs)
    assert table.loc[0, "status"] == "ok"
    assert table.loc[0, "gate"] == looped_workspace.summary["gate"]["decision"]
    assert table.loc[0, "champion"] == f"v{looped_workspace.summary['champion']['version']}"
    assert table.loc[0, "seconds"] == f"{looped_workspace.summary['seconds']['total']:.1f}"
    timings = data.step_timings(runs[0])
    assert timings["step"].tolist() == [
        "ingest",
        "silver",
        "gold",
        "features",
        "train",
        "evaluate",
        "gate",
        "register",
        "score",
        "monitor",
    ]
    assert timings["seconds"].tolist() == [looped_workspace.summary["seconds"][s] for s in timings["step"]]


def test_failed_run_without_total_gets_its_wall_time() -> None:
    run = {
        "run_id": "x" * 32,
        "status": "failed",
        "started_at": pd.Timestamp("2026-01-01 10:00:00", tz="UTC"),
        "finished_at": pd.Timestamp("2026-01-01 10:00:07", tz="UTC"),
        "seconds": {"ingest": 2.0},
        "summary": {"use_case": "fx"},
        "error": "step silver failed: boom",
    }
    row = data.runs_table([run]).iloc[0]
    assert (row["seconds"], row["gate"], row["champion"], row["error"]) == ("7.0", "—", "—", "step silver failed: boom")


def test_lake_tables_match_delta(ctx: Context, looped_workspace: LoopedWorkspace) -> None:
    tables = data.lake_tables(ctx).set_index("table")
    for name in ("silver.fxs_rates", "gold.fxs_features", "ops.runs"):
        layer, table = name.split(".")
        delta = DeltaTable(str(looped_workspace.workspace / "lake" / layer / table))
        assert tables.loc[name, "version"] == delta.version()
        assert tables.loc[name, "rows"] == delta.to_pyarrow_table().num_rows
    assert tables["last write (UTC)"].str.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$").all()


def test_quality_lists_every_rule(ctx: Context) -> None:
    quality = data.quality_frame(ctx)
    assert set(quality["rule"]) >= {e.name for e in ctx.usecase.expectations}
    checks = quality[quality["action"] != "slice"]
    assert (checks["failed"] == 0).all()  # the ECB slice is clean
    # The currencies and dates outside the slice are counted, not lost: the file's other cells.
    outside = quality[quality["rule"] == "outside_slice"]
    assert len(outside) == 1
    assert outside["failed"].iloc[0] > 0


def test_models_registry_and_gate(ctx: Context, looped_workspace: LoopedWorkspace) -> None:
    summary = looped_workspace.summary
    versions = data.registered_versions(ctx)
    assert versions["version"].tolist() == [summary["champion"]["version"]]
    assert versions.loc[0, "aliases"] == "champion"
    run = data.latest_training_run(ctx)
    models = data.training_models(ctx, run).set_index("model")
    for r in summary["runs"]:
        assert models.loc[r["model"], "rmse"] == f"{r['metrics']['rmse']:.5f}"
        assert models.loc[r["model"], "role"] == r["role"]
    assert list(models.columns)[:2] == ["role", "rmse"]  # the primary metric first
    gate = data.latest_gate(ctx)
    assert gate is not None
    assert gate["decision"] == summary["gate"]["decision"]
    criteria = data.criteria_frame(gate["criteria"])
    assert criteria["criterion"].tolist() == [c["name"] for c in summary["gate"]["criteria"]]
    history = data.gate_history(ctx)
    assert [h["action"] for h in history] == ["gate"]
    assert [c["name"] for c in history[0]["criteria"]] == criteria["criterion"].tolist()


def test_training_images_are_the_logged_pngs(ctx: Context) -> None:
    images = data.training_images(ctx, data.latest_training_run(ctx))
    assert list(images) == ["backtest.png", "predicted_vs_actual.png", "feature_importance.png"]
    assert all(png.startswith(b"\x89PNG") for png in images.values())


def test_predictions_filter_by_entity_and_date(ctx: Context, looped_workspace: LoopedWorkspace) -> None:
    frame = data.predictions_frame(ctx)
    assert len(frame) == looped_workspace.summary["predictions_rows"]
    time_col = data.prediction_time_column(ctx, frame)
    assert time_col == "as_of"
    last = pd.to_datetime(frame[time_col]).dt.date.max()
    usd = data.filter_predictions(frame, "currency", ["USD"], time_col, last, last)
    assert usd["currency"].tolist() == ["USD"]
    assert data.filter_predictions(frame, "currency", [], time_col, None, None).shape == frame.shape
    assert data.filter_predictions(frame, "currency", [], time_col, date(1999, 1, 1), date(1999, 12, 31)).empty
    csv = data.to_csv(usd).decode()
    assert csv.splitlines()[0].startswith("currency,as_of,prediction")


def test_monitoring_history(ctx: Context, looped_workspace: LoopedWorkspace) -> None:
    drift = data.drift_history(ctx)
    series = data.drift_over_time(drift, "psi")
    window_end = looped_workspace.summary["drift"]["window"][1]
    statistics = looped_workspace.summary["drift"]["statistics"]
    assert series.index.tolist() == [window_end]
    assert series.loc[window_end, "rv_60"] == pytest.approx(statistics["rv_60"]["psi"], abs=1e-6)
    latest = data.latest_drift(drift)
    drifted = set(latest.loc[latest["drifted"] & (latest["kind"] != "prediction"), "feature"])
    assert drifted == set(looped_workspace.summary["drift"]["features_drifted"])
    perf = data.performance_over_time(data.performance_history(ctx))
    assert list(perf.columns) == sorted(
        {f"{p['source']} {p['metric']}" for p in looped_workspace.summary["drift"]["performance"]}
    )
    alerts = data.alerts_frame(ctx)
    # The browser test may add one alert when the run raised none; the run's own alerts are all there.
    assert set(alerts["alert_id"]) >= {a["alert_id"] for a in looped_workspace.summary["alerts"]}
    assert alerts["raised_at"].is_monotonic_decreasing


def test_runbooks_resolve_in_the_repository() -> None:
    path = data.runbook_file("docs/runbook/drift.md")
    assert path is not None
    assert path.read_text().startswith("# Runbook: drift alert")
    assert data.runbook_file("docs/runbook/none.md") is None
    assert data.runbook_file("https://example.org/runbook") is None


def test_predict_from_the_champion_signature(ctx: Context) -> None:
    version = data.champion_version(ctx)
    assert version is not None
    model = data.load_champion(ctx)
    fields = data.signature_fields(model)
    assert [f.name for f in fields] == model.metadata.get_input_schema().input_names()
    types = {f.type for f in fields}
    assert "double" in types
    assert types <= {"double", "long"}
    entities = data.entity_choices(ctx, fields)
    assert entities == ["CHF", "GBP", "JPY", "USD"]
    values = data.default_inputs(ctx, fields, "USD")
    expected = mlflow.pyfunc.load_model(f"models:/{ctx.usecase.models.registered_name}/{version.version}")
    want = float(expected.predict(pd.DataFrame([values]))[0])
    assert data.predict_one(model, fields, values) == pytest.approx(want)
    with pytest.raises(ValueError, match="missing inputs: rv_5"):
        data.predict_one(model, fields, {k: v for k, v in values.items() if k != "rv_5"})


def test_typed_inputs_follow_the_signature() -> None:
    class Echo:
        def predict(self, frame: pd.DataFrame) -> list[float]:
            assert str(frame["n"].dtype) == "int64"
            assert str(frame["flag"].dtype) == "bool"
            return [float(frame["n"].iloc[0]) + float(frame["flag"].iloc[0])]

    fields = [data.InputField("n", "long"), data.InputField("flag", "boolean"), data.InputField("name", "string")]
    assert data.predict_one(Echo(), fields, {"n": 2, "flag": True, "name": "x"}) == 3.0


def test_an_empty_workspace_reads_as_empty_and_creates_nothing(empty: Context) -> None:
    assert data.recent_runs(empty) == []
    assert data.lake_tables(empty).empty
    assert data.quality_frame(empty).empty
    assert data.registered_versions(empty).empty
    assert data.latest_training_run(empty) is None
    assert data.latest_gate(empty) is None
    assert data.gate_history(empty) == []
    assert data.predictions_frame(empty).empty
    assert data.drift_history(empty).empty
    assert data.performance_over_time(data.performance_history(empty)).empty
    assert data.alerts_frame(empty).empty
    assert data.champion_version(empty) is None
    assert data.entity_choices(empty, [data.InputField("rv_5", "double")]) == []
    assert data.default_inputs(empty, [data.InputField("rv_5", "double")], None) == {"rv_5": 0}
    assert not empty.settings.workspace_dir.exists()


def test_formatting_helpers() -> None:
    assert data.fmt_metric(0.0304556) == "0.03046"
    assert data.fmt_metric(None) == "—"
    assert data.fmt_metric(float("nan")) == "—"
    assert data.fmt_time(pd.Timestamp("2026-01-01 10:00:00.123", tz="UTC")) == "2026-01-01 10:00:00"
    assert data.fmt_time(None) == ""
