"""End to end on a dirty generated CRM export: every row accounted for, point-in-time features, calibrated models.

One small export (5,000 opportunities, every kind of dirt on) goes through the whole loop, then the data steps again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from conftest import small_crm_dict
from goldgate.context import Context
from goldgate.quality import BATCH_RULE
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.sources.crm_synthetic import generate_crm
from goldgate.usecase import load_usecase
from pit import check_point_in_time, engine

pytestmark = pytest.mark.e2e


def _small_usecase(path: Path) -> Path:
    """The small crm use case (conftest.small_crm_dict) written where the run can read it."""
    path.write_text(yaml.safe_dump(small_crm_dict()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def crm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("crm")
    export = root / "export"
    generate_crm(export, rows=5000, seed=7)
    usecase = load_usecase(_small_usecase(root / "crm_small.yaml"))
    ctx = Context(load_settings(workspace=root / "ws"), usecase, source=export)
    first = run_pipeline(ctx)
    again = Context(load_settings(workspace=root / "ws"), usecase, source=export)
    second = run_pipeline(again, only=["ingest", "silver", "gold", "features"])
    return {"ctx": ctx, "first": first, "second": second, "export": export}


def test_no_row_is_lost_between_the_export_and_silver(crm_runs: dict[str, Any]) -> None:
    ctx = crm_runs["ctx"]
    lake, uc = ctx.lake, ctx.usecase
    lines = sum(1 for _ in (crm_runs["export"] / "sales_pipeline.csv").open(encoding="utf-8-sig")) - 1
    assert lake.rows(uc.tables.bronze) == lines
    batch = lake.read("ops.quality").to_pandas()
    summary = batch[(batch.table_name == uc.tables.silver) & (batch.rule == BATCH_RULE)].iloc[0]
    quarantined = lake.read(uc.tables.quarantine).to_pandas()
    assert summary.passed + summary.failed == lines
    assert len(quarantined) == summary.failed > 0
    assert lake.rows(uc.tables.silver) == summary.passed
    # Every quarantined row says which rule it failed and why, next to the cells as received.
    assert quarantined["_rule"].notna().all()
    assert quarantined["_reason"].str.len().gt(0).all()
    assert {"close_value_not_negative", "one_row_per_key"} <= set(quarantined["_rule"])


def test_open_deals_with_unknown_keys_are_kept_flagged_and_scored(crm_runs: dict[str, Any]) -> None:
    ctx = crm_runs["ctx"]
    deals = ctx.lake.read(ctx.usecase.tables.gold).to_pandas()
    unknown = deals[~deals.account_known]
    assert len(unknown) > 0
    assert unknown.deal_stage.isin(["Engaging", "Prospecting"]).all()
    assert (deals["product"] == "GTX Pro").any()
    assert not (deals["product"] == "GTXPro").any()
    predictions = ctx.lake.read(ctx.usecase.tables.predictions).to_pandas()
    snapshots = ctx.lake.read(ctx.usecase.tables.features).to_pandas()
    latest = snapshots[snapshots.snapshot_date == snapshots.snapshot_date.max()]
    # Every deal open at the latest month end is scored, those with no known account included.
    assert set(predictions.opportunity_id) == set(latest.opportunity_id)
    assert set(unknown.opportunity_id) & set(latest.opportunity_id)
    assert predictions.prediction.between(0, 1).all()
    assert {"model_version", "run_id", "feature_table_version"} <= set(predictions.columns)


def test_stored_snapshots_are_point_in_time(crm_runs: dict[str, Any]) -> None:
    ctx = crm_runs["ctx"]
    gold = ctx.lake.read(ctx.usecase.tables.gold)
    stored = ctx.lake.read(ctx.usecase.tables.features)
    dates = sorted(set(stored.snapshot_date.to_pyarrow().to_pylist()))
    dates = [dates[2], dates[len(dates) // 2], dates[-2]]
    problems = check_point_in_time(engine(ctx.usecase), gold, stored, dates=dates)
    assert problems == []


def test_models_are_classifiers_judged_on_calibration_too(crm_runs: dict[str, Any]) -> None:
    s = crm_runs["first"]
    assert {r["model"] for r in s["runs"]} == {"prior_rate", "logistic", "lightgbm"}
    for r in s["runs"]:
        assert {"brier", "log_loss", "roc_auc", "ece"} <= set(r["metrics"])
    names = {c["name"] for c in s["gate"]["criteria"]}
    assert {"calibration_vs_baseline", "beats_baseline", "ci_vs_baseline"} <= names
    assert s["gate"]["decision"] == "promote", s["gate"]["reason"]
    assert s["champion"] == {"name": "crm_small_win", "version": "1"}
    run = mlflow.get_run(s["runs"][1]["run_id"])
    assert {"backtest_brier", "backtest_ece", "backtest_roc_auc", "backtest_log_loss"} <= set(run.data.metrics)


def test_a_second_run_on_the_same_export_changes_no_data(crm_runs: dict[str, Any]) -> None:
    first, second = crm_runs["first"]["tables"], crm_runs["second"]["tables"]
    for name in ("bronze.crm_sales_pipeline_raw", "silver.crm_opportunities", "gold.crm_deals", "gold.crm_snapshots"):
        assert second[name] == first[name], name


def test_the_api_scores_a_deal_whose_account_is_unknown(crm_runs: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from goldgate.serve import create_app
    from goldgate.settings import Settings

    ctx = crm_runs["ctx"]
    key = "crm-e2e-" + "k" * 32  # pragma: allowlist secret
    settings = Settings.model_validate({"workspace": ctx.settings.workspace, "env": "dev", "api_keys": [key]})
    stored = ctx.lake.read(ctx.usecase.tables.predictions).to_pandas().set_index("opportunity_id")
    snapshots = ctx.lake.read(ctx.usecase.tables.features).to_pandas()
    latest = snapshots[snapshots.snapshot_date == snapshots.snapshot_date.max()]
    deals = ctx.lake.read(ctx.usecase.tables.gold).to_pandas()
    deal = sorted(set(deals[~deals.account_known].opportunity_id) & set(latest.opportunity_id))[0]
    with TestClient(create_app(settings, ctx.usecase)) as http:
        resp = http.post("/v1/predict/by-key", json={"keys": [deal]}, headers={"X-API-Key": key})
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"][0] == pytest.approx(stored.loc[deal, "prediction"])
