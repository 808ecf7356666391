"""The monitor step and the closed loop, end to end on the slice: drift, late labels, alerts, report, retraining.

One workspace for the module: the whole loop runs once; then an earlier date is scored so its labels are known,
monitoring runs again (also through the CLI), and finally a sabotaged copy of the use case (a one-tree LightGBM
as its only candidate, and an alert rule that always fires) monitors with ``--retrain-on-alert``: the gate must
reject the worse model and the champion must not move.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml
from deltalake import DeltaTable
from typer.testing import CliRunner

from conftest import slice_usecase_dict
from goldgate.context import Context
from goldgate.loop import run_monitor
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase

pytestmark = pytest.mark.e2e

LABELLED_DAY = date(2023, 12, 1)


class Hook(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        Hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def hook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()
    server.server_close()


def _frame(ws: Path, name: str) -> Any:
    layer, table = name.split(".")
    return DeltaTable(str(ws / "lake" / layer / table)).to_pandas()


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path, hook: str) -> dict[str, Any]:
    from goldgate.pipeline import score

    ws = tmp_path_factory.mktemp("loop")
    ctx = Context(load_settings(workspace=ws), load_usecase(slice_usecase_path))
    first = run_pipeline(ctx)
    score(ctx, as_of=LABELLED_DAY)  # a prediction whose 5-day outcome is already known: a "late" label
    relabelled = run_monitor(ctx)
    cli = CliRunner().invoke(
        __import__("goldgate.cli", fromlist=["app"]).app,
        ["monitor", "-u", str(slice_usecase_path), "-w", str(ws), "--summary-json", str(ws / "monitor.json")],
    )

    bad = slice_usecase_dict()
    bad["models"]["candidates"] = [
        {"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 1, "num_leaves": 2, "learning_rate": 0.01}}
    ]
    bad["monitoring"]["alerts"] = {
        "rules": [
            {"name": "always", "metric": "drift.psi", "threshold": 0.0, "subjects": ["rv_5"], "cooldown_hours": 0}
        ],
        "sinks": {"console": True, "webhook": {"url": hook, "timeout_seconds": 5}},
    }
    bad_path = ws / "sabotaged.yaml"
    bad_path.write_text(yaml.safe_dump(bad, sort_keys=False))
    Hook.bodies = []
    bad_ctx = Context(load_settings(workspace=ws), load_usecase(bad_path))
    retrained = run_monitor(bad_ctx, retrain_on_alert=True, now=datetime.now(UTC) + timedelta(days=2))
    return {
        "ws": ws,
        "ctx": ctx,
        "first": first,
        "relabelled": relabelled,
        "cli": cli,
        "retrained": retrained,
        "posts": list(Hook.bodies),
    }


def test_drift_rows_cover_every_statistic_and_the_prediction(loop: dict[str, Any]) -> None:
    drift = _frame(loop["ws"], "ops.drift")
    numeric = drift[drift["kind"] == "numeric"]
    assert set(numeric["statistic"]) == {"psi", "wasserstein", "ks", "missing_rate", "out_of_range"}
    pred = drift[drift["feature"] == "prediction"]
    assert set(pred["kind"]) == {"prediction"}
    assert {"psi", "wasserstein", "ks"} <= set(pred["statistic"])
    assert not drift.duplicated(["model_version", "window_end", "feature", "statistic"]).any()
    assert (drift["rows"] > 0).all()
    window = loop["first"]["drift"]["window"]
    assert set(drift["window_end"]) == {window[1]}


def test_backfill_performance_is_measured_on_unseen_labelled_dates(loop: dict[str, Any]) -> None:
    import mlflow

    perf = _frame(loop["ws"], "ops.performance")
    back = perf[perf["source"] == "backfill"].set_index("metric")
    assert set(back.index) == {"rmse", "mae"}
    assert not perf["estimated"].any()
    # Recompute: the champion on every labelled window row dated on or after its final holdout's first date.
    ctx = loop["ctx"]
    client = ctx.mlflow_client()
    champion = client.get_model_version_by_alias("fx_slice_vol", "champion")
    params = client.get_run(client.get_run(champion.run_id).data.tags["mlflow.parentRunId"]).data.params
    model = mlflow.pyfunc.load_model(f"models:/fx_slice_vol/{champion.version}")
    inputs = model.metadata.get_input_schema().input_names()
    feats = _frame(loop["ws"], "gold.fxs_features")
    day = feats["date"].astype("datetime64[ns]").dt.date
    start, end = (date.fromisoformat(d) for d in loop["first"]["drift"]["window"])
    rows = feats[(day >= max(start, date.fromisoformat(params["test_start"]))) & (day <= end)]
    rows = rows.dropna(subset=[*inputs, "target_rv_5d"])
    err = model.predict(rows[inputs]) - rows["target_rv_5d"].to_numpy()
    assert back.loc["rmse", "rows"] == len(rows)
    assert back.loc["rmse", "value"] == pytest.approx(float(np.sqrt(np.mean(err**2))), rel=1e-9)
    assert back.loc["mae", "value"] == pytest.approx(float(np.mean(np.abs(err))), rel=1e-9)


def test_late_labels_join_stored_predictions(loop: dict[str, Any]) -> None:
    perf = _frame(loop["ws"], "ops.performance")
    stored = perf[perf["source"] == "predictions"]
    assert set(stored["window_start"]) == {"2023-12-01"}  # the latest date (2023-12-29) has no label yet
    rmse = stored[stored["metric"] == "rmse"].iloc[0]
    assert rmse["window_end"] == "2023-12-31"
    assert rmse["rows"] == 4
    preds = _frame(loop["ws"], "gold.fxs_predictions")
    preds = preds[preds["as_of"].astype(str) == str(LABELLED_DAY)]
    feats = _frame(loop["ws"], "gold.fxs_features")
    feats = feats[feats["date"].astype(str).str[:10] == str(LABELLED_DAY)]
    joined = preds.merge(feats, on="currency")
    expected = float(np.sqrt(np.mean((joined["prediction"] - joined["target_rv_5d"]) ** 2)))
    assert rmse["value"] == pytest.approx(expected, rel=1e-9)
    assert "no label-free estimate" in " ".join(loop["relabelled"]["notes"])


def test_alerts_carry_runbooks_and_the_report_is_written_and_logged(loop: dict[str, Any]) -> None:
    alerts = _frame(loop["ws"], "ops.alerts")
    assert len(alerts) > 0
    assert alerts["runbook"].str.startswith("docs/runbook/").all()
    assert not alerts["alert_id"].duplicated().any()
    for runbook in set(alerts["runbook"]):
        assert (Path(__file__).parents[1] / runbook).is_file(), runbook
    report = Path(loop["first"]["drift"]["report"])
    text = report.read_text()
    assert report.parent == loop["ws"] / "reports"
    assert text.startswith("<!doctype html>")
    assert "data:image/png;base64," in text
    assert "<script" not in text
    client = loop["ctx"].mlflow_client()
    artifacts = [a.path for a in client.list_artifacts(loop["first"]["drift"]["monitoring_run_id"], "reports")]
    assert artifacts == [f"reports/{report.name}"]


def test_monitoring_again_on_the_same_window_raises_nothing_new(loop: dict[str, Any]) -> None:
    assert loop["relabelled"]["alerts"] == []
    assert loop["cli"].exit_code == 0, loop["cli"].output
    assert "window: " in loop["cli"].output
    summary = json.loads((loop["ws"] / "monitor.json").read_text())
    assert summary["alerts"] == []
    assert summary["window"] == loop["first"]["drift"]["window"]


def test_retrain_on_alert_never_promotes_a_worse_model(loop: dict[str, Any]) -> None:
    retrain = loop["retrained"]["retrain"]
    assert retrain is not None
    assert retrain["decision"] == "reject"
    assert retrain["version"] is None
    client = loop["ctx"].mlflow_client()
    assert str(client.get_model_version_by_alias("fx_slice_vol", "champion").version) == "1"
    promotions = _frame(loop["ws"], "ops.promotions").sort_values("recorded_at")
    last = promotions.iloc[-1]
    assert (last["decision"], last["from_version"]) == ("reject", "1")
    assert last["to_version"] is None or last["to_version"] != last["to_version"]  # null: nothing promoted
    failed = {c["name"] for c in json.loads(last["criteria"]) if not c["passed"]}
    assert "beats_champion" in failed
    alerts = _frame(loop["ws"], "ops.alerts").set_index("alert_id")
    [alert_id] = retrain["alerts"]
    assert alert_id.startswith("always:fx_slice:v1:")
    row = alerts.loc[alert_id]
    assert (row["retrain_run_id"], row["retrain_decision"]) == (retrain["training_run_id"], "reject")
    assert client.get_run(retrain["training_run_id"]).data.tags["goldgate.trigger"] == alert_id


def test_the_webhook_got_exactly_one_post_for_the_one_fired_alert(loop: dict[str, Any]) -> None:
    assert [p["alert_id"] for p in loop["posts"]] == loop["retrained"]["retrain"]["alerts"]
    assert loop["posts"][0]["runbook"] == "docs/runbook/drift.md"
