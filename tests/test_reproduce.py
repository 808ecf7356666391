"""Reproduce: a training run rebuilt by time travel matches bit for bit, and a tampered record does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.context import Context
from goldgate.reproduce import reproduce_run
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> dict[str, Any]:
    workspace = tmp_path_factory.mktemp("ws")
    ctx = Context(load_settings(workspace=workspace), load_usecase(slice_usecase_path))
    summary = run_pipeline(ctx)
    return {
        "ctx": ctx,
        "summary": summary,
        "training_run_id": ctx.results["train"]["training_run_id"],
        "usecase_path": slice_usecase_path,
    }


def test_training_run_records_the_whole_lineage(trained: dict[str, Any]) -> None:
    run = trained["ctx"].mlflow_client().get_run(trained["training_run_id"])
    versions = json.loads(run.data.tags["dataset_version"])
    assert set(versions) == {"bronze.fxs_rates_raw", "silver.fxs_rates", "gold.fxs_returns", "gold.fxs_features"}


def test_reproduction_matches_bit_for_bit(trained: dict[str, Any]) -> None:
    result = reproduce_run(trained["ctx"], trained["training_run_id"])
    assert result.matched, [c for c in result.checks if not c.matched]
    names = [c.name for c in result.checks]
    assert names[0] == "features"
    assert {"lightgbm: predictions", "har: predictions", "persistence: metrics"} <= set(names)


def test_reproduction_uses_time_travel_after_upstream_changes(trained: dict[str, Any]) -> None:
    ctx = trained["ctx"]
    gold = ctx.lake.read("gold.fxs_returns").to_pyarrow()
    doubled = gold.set_column(
        gold.schema.get_field_index("log_return"), "log_return", pa.compute.multiply(gold["log_return"], 2.0)
    )
    ctx.lake.merge("gold.fxs_returns", doubled, keys=["date", "currency"])
    result = reproduce_run(ctx, trained["training_run_id"])
    assert result.matched  # the run pinned the older gold version


def test_a_tampered_parameter_is_reported_as_a_mismatch(trained: dict[str, Any]) -> None:
    ctx = trained["ctx"]
    client = ctx.mlflow_client()
    lgbm = next(r for r in trained["summary"]["runs"] if r["model"] == "lightgbm")
    params = json.loads(client.get_run(lgbm["run_id"]).data.tags["goldgate.fitted_params"])
    try:
        client.set_tag(lgbm["run_id"], "goldgate.fitted_params", json.dumps({**params, "num_leaves": 7}))
        result = runner.invoke(
            app,
            [
                "reproduce",
                lgbm["run_id"],
                "--usecase",
                str(trained["usecase_path"]),
                "--workspace",
                str(ctx.settings.workspace_dir),
            ],
        )
    finally:
        client.set_tag(lgbm["run_id"], "goldgate.fitted_params", json.dumps(params))
    assert result.exit_code == 1
    assert "lightgbm: predictions" in result.output
    assert "checks differ" in result.output


def test_unknown_run_is_a_one_line_error(trained: dict[str, Any], slice_usecase_path: Path) -> None:
    ctx = trained["ctx"]
    mlflow.set_tracking_uri(ctx.settings.resolved_tracking_uri)
    result = runner.invoke(
        app,
        ["reproduce", "0" * 32, "--usecase", str(slice_usecase_path), "--workspace", str(ctx.settings.workspace_dir)],
    )
    assert result.exit_code == 1
    assert "reproduce:" in result.output
