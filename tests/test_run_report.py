"""The run report: one self-contained HTML file per recorded run, logged to its training run."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import LoopedWorkspace
from goldgate.cli import app
from goldgate.context import Context
from goldgate.plots import figure_png, load_pyplot
from goldgate.run_report import SECTIONS, RunFacts, gather_facts, render_run_report, write_run_report
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STARTED = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


def _png() -> bytes:
    fig, ax = load_pyplot().subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    return figure_png(fig)


def _facts(**summary: object) -> RunFacts:
    base: dict[str, object] = {
        "use_case": "fx",
        "workspace": "/ws",
        "tables": {"silver.fx_rates": {"version": 4, "rows": 12345}, "gold.fx_predictions": {"version": 2, "rows": 29}},
        "quarantine": {"quarantine.fx_rates": 3},
        "runs": [
            {"run_id": "a" * 32, "model": "persistence", "role": "baseline", "metrics": {"rmse": 0.0366, "mae": 0.02}},
            {"run_id": "b" * 32, "model": "lightgbm", "role": "candidate", "metrics": {"rmse": 0.0304, "mae": 0.017}},
        ],
        "gate": {
            "decision": "promote",
            "reason": "all criteria passed",
            "candidate": "lightgbm",
            "criteria": [
                {"name": "beats_baseline", "passed": True, "value": 0.0304, "threshold": 0.0362, "detail": "ok"},
                {"name": "latency_budget", "passed": False, "value": 70.0, "threshold": 50.0, "detail": "<slow>"},
            ],
        },
        "champion": {"name": "fx_realized_vol", "version": "3"},
        "predictions_rows": 29,
        "drift": {
            "window": ["2026-01-01", "2026-03-01"],
            "model_version": "3",
            "features_drifted": ["rv_60"],
            "prediction_drifted": False,
            "statistics": {"rv_60": {"psi": 0.45, "ks": 0.2}, "rv_5": {"psi": 0.01, "ks": 0.03}},
        },
        "alerts": [
            {
                "rule": "feature_psi",
                "severity": "warning",
                "subject": "rv_60",
                "statistic": "psi",
                "value": 0.45,
                "threshold": 0.2,
                "status": "fired",
                "runbook": "docs/runbook/drift.md",
            }
        ],
        "seconds": {"ingest": 1.0, "silver": 2.0, "train": 9.5, "total": 12.5},
    }
    base.update(summary)
    return RunFacts(
        use_case="fx",
        task="regression",
        primary_metric="rmse",
        entity="currency",
        run={
            "run_id": "f" * 32,
            "status": "ok",
            "started_at": STARTED,
            "finished_at": STARTED,
            "seconds": base["seconds"],
            "summary": base,
            "error": None,
        },
        quality=[{"table": "silver.fx_rates", "rule": "rate_positive", "action": "drop", "passed": 9, "failed": 3}],
        predictions=pd.DataFrame({"currency": ["USD"], "as_of": ["2026-03-01"], "prediction": [0.071]}),
        training_run_id="c" * 32,
        images={"backtest.png": _png()},
    )


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)]


def test_every_section_is_present_in_order() -> None:
    text = render_run_report(_facts())
    positions = [text.index(f"<section id='{key}'><h2>{name}</h2>") for key, name in SECTIONS]
    assert positions == sorted(positions)
    assert "<title>goldgate · fx · run ffffffffffff</title>" in text


def test_images_are_inlined_and_nothing_is_fetched() -> None:
    text = render_run_report(_facts())
    images = _images(text)
    # timings, the training run's backtest plot, the PSI plot
    assert len(images) == 3
    assert all(png.startswith(PNG_MAGIC) for png in images)
    assert "<script" not in text
    assert not re.search(r"(src|href)=['\"](https?:|//)", text)
    assert "<link" not in text


def test_content_comes_from_the_run() -> None:
    text = render_run_report(_facts())
    assert "<td>silver.fx_rates</td><td>4</td><td>12,345</td>" in text
    assert "<td>lightgbm</td><td>candidate</td><td>0.03040</td>" in text  # primary metric first
    assert '<tr class="bad"><td>✗</td><td>latency_budget</td>' in text
    assert "&lt;slow&gt;" in text  # escaped
    assert "<b>fx_realized_vol v3</b>" in text
    assert "<td>USD</td><td>2026-03-01</td><td>0.071</td>" in text
    assert '<tr class="bad"><td>rv_60</td>' in text
    assert "<td>feature_psi</td><td>warning</td><td>rv_60</td>" in text
    assert "<td>train</td><td>9.50</td>" in text
    assert "Not run: gold, features" in text


def test_a_failed_run_renders_what_it_has() -> None:
    facts = _facts()
    facts.run["status"] = "failed"
    facts.run["error"] = "step gold failed: <boom>"
    facts.run["summary"] = {"use_case": "fx", "steps_done": ["ingest"], "seconds": {"ingest": 0.5}}
    facts.run["seconds"] = {"ingest": 0.5}
    facts.images, facts.quality, facts.predictions = {}, [], pd.DataFrame()
    text = render_run_report(facts)
    assert "step gold failed: &lt;boom&gt;" in text
    for note in ("No models were trained", "The gate did not decide", "No champion after this run", "No alerts"):
        assert note in text
    assert len(_images(text)) == 1  # the timings of the step that ran


def test_no_recorded_run_is_a_clear_error(tmp_path: Path) -> None:
    ctx = Context(load_settings(workspace=tmp_path / "ws"), load_usecase("fx"))
    with pytest.raises(LookupError, match=r"no run of use case 'fx' recorded in ops\.runs"):
        gather_facts(ctx)


def test_report_of_a_real_run_is_written_and_logged(looped_workspace: LoopedWorkspace) -> None:
    import mlflow

    ctx = Context(load_settings(workspace=looped_workspace.workspace), load_usecase(looped_workspace.usecase_path))
    path = write_run_report(ctx)
    assert path.parent == looped_workspace.workspace / "reports"
    assert re.fullmatch(r"fx_slice-run-\d{8}T\d{6}Z\.html", path.name)
    text = path.read_text(encoding="utf-8")
    summary = looped_workspace.summary
    features = summary["tables"]["gold.fxs_features"]
    assert f"<td>gold.fxs_features</td><td>{features['version']}</td><td>{features['rows']:,}</td>" in text
    har = next(r for r in summary["runs"] if r["model"] == "har")
    assert f"<td>har</td><td>candidate</td><td>{har['metrics']['rmse']:.5f}</td>" in text
    # timings, the four training plots minus calibration (regression), the PSI plot
    assert len(_images(text)) == 5
    facts = gather_facts(ctx)
    assert facts.training_run_id is not None
    logged = [f.path for f in mlflow.MlflowClient().list_artifacts(facts.training_run_id, "reports")]
    assert f"reports/{path.name}" in logged


def test_report_command_writes_the_requested_file(looped_workspace: LoopedWorkspace, tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    base = ["report", "-u", str(looped_workspace.usecase_path), "-w", str(looped_workspace.workspace)]
    result = CliRunner().invoke(app, [*base, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    missing = CliRunner().invoke(app, [*base, "--run", "nope", "--out", str(out)])
    assert missing.exit_code == 1
    assert "report: no run of use case 'fx_slice' in ops.runs with id 'nope'" in missing.output
