"""End to end: the whole loop on a slice of the real ECB data, twice, into a temporary workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from goldgate.context import Context
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase

pytestmark = pytest.mark.e2e

DATA_TABLES = ["bronze.fxs_rates_raw", "silver.fxs_rates", "gold.fxs_returns", "gold.fxs_features"]


def _run(workspace: Path, usecase: Path) -> tuple[Context, dict[str, Any]]:
    ctx = Context(load_settings(workspace=workspace), load_usecase(usecase))
    return ctx, run_pipeline(ctx)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> dict[str, Any]:
    workspace = tmp_path_factory.mktemp("ws")
    ctx, first = _run(workspace, slice_usecase_path)
    _, second = _run(workspace, slice_usecase_path)
    return {"ctx": ctx, "first": first, "second": second, "workspace": workspace}


def _frame(workspace: Path, name: str) -> Any:
    layer, table = name.split(".")
    return DeltaTable(str(workspace / "lake" / layer / table)).to_pandas()


def test_first_run_promotes_a_champion_and_fills_every_table(two_runs: dict[str, Any]) -> None:
    s = two_runs["first"]
    assert s["use_case"] == "fx_slice"
    assert s["gate"]["decision"] == "promote"
    names = {c["name"] for c in s["gate"]["criteria"]}
    assert names >= {
        "beats_baseline",
        "ci_vs_baseline",
        "fold_wins_vs_baseline",
        "beats_champion",
        "data_quality_clean",
    }
    assert s["champion"] == {"name": "fx_slice_vol", "version": "1"}
    assert s["predictions_rows"] == 4  # one per currency on the latest date
    assert {r["role"] for r in s["runs"]} == {"baseline", "candidate"}
    assert all("rmse" in r["metrics"] for r in s["runs"])
    bronze = s["tables"]["bronze.fxs_rates_raw"]["rows"]
    assert bronze > 7000  # the whole ECB file as received, 1999 on: the slice is cut in silver
    silver = s["tables"]["silver.fxs_rates"]["rows"]
    assert 700 * 4 < silver < 800 * 4  # about 3 years of ECB business days x 4 currencies
    assert silver % 4 == 0  # the slice has no N/A cells
    assert set(s["seconds"]) >= {"ingest", "train", "monitor", "total"}


def test_second_run_adds_no_rows_and_no_versions_to_data_tables(two_runs: dict[str, Any]) -> None:
    first, second = two_runs["first"]["tables"], two_runs["second"]["tables"]
    for name in [*DATA_TABLES, "gold.fxs_predictions", "ops.drift", "ops.quality"]:
        assert second[name] == first[name], name


def test_second_run_is_rejected_against_an_identical_champion(two_runs: dict[str, Any]) -> None:
    s = two_runs["second"]
    assert s["gate"]["decision"] == "reject"
    failed = [c for c in s["gate"]["criteria"] if not c["passed"]]
    # Same data, same recipe: the new model equals the champion, so it neither beats it nor has a CI below 0.
    assert [c["name"] for c in failed] == ["beats_champion", "ci_vs_champion"]
    assert s["champion"] == {"name": "fx_slice_vol", "version": "1"}


def test_no_duplicate_keys_anywhere(two_runs: dict[str, Any]) -> None:
    ws = two_runs["workspace"]
    keys = {
        "silver.fxs_rates": ["date", "currency"],
        "gold.fxs_returns": ["date", "currency"],
        "gold.fxs_features": ["currency", "date"],
        "gold.fxs_predictions": ["currency", "as_of", "model_version"],
        "ops.drift": ["model_version", "window_end", "feature", "statistic"],
    }
    for name, cols in keys.items():
        frame = _frame(ws, name)
        assert len(frame) > 0, name
        assert not frame.duplicated(cols).any(), name
    assert not _frame(ws, "bronze.fxs_rates_raw").duplicated(["_batch_id", "_row_number"]).any()


def test_predictions_carry_lineage(two_runs: dict[str, Any]) -> None:
    preds = _frame(two_runs["workspace"], "gold.fxs_predictions")
    for col in [
        "model_name",
        "model_version",
        "run_id",
        "feature_table",
        "feature_table_version",
        "scored_at",
    ]:
        assert preds[col].notna().all(), col
    assert set(preds["model_name"]) == {"fx_slice_vol"}
    assert set(preds["feature_table_version"]) == {two_runs["first"]["tables"]["gold.fxs_features"]["version"]}
    assert (preds["prediction"] > 0).all()
    assert str(preds["as_of"].max()) <= "2023-12-31"


def test_registry_aliases_and_promotion_log(two_runs: dict[str, Any]) -> None:
    import mlflow

    ctx = two_runs["ctx"]
    mlflow.set_tracking_uri(ctx.settings.resolved_tracking_uri)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("fx_slice_vol", "champion")
    assert str(champion.version) == "1"
    assert champion.tags["gate.decision"] == "promote"
    log = _frame(two_runs["workspace"], "ops.promotions").sort_values("recorded_at")
    assert list(log["decision"]) == ["promote", "reject"]
    assert list(log["to_version"].fillna("-")) == ["1", "-"]
    assert log["gate_record"].str.contains("beats_baseline").all()


def test_training_runs_are_tagged_with_their_data_version(two_runs: dict[str, Any]) -> None:
    import json

    import mlflow

    ctx = two_runs["ctx"]
    mlflow.set_tracking_uri(ctx.settings.resolved_tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`goldgate.kind` = 'model'")
    assert len(runs) == 6  # 3 models x 2 runs
    for col in ["tags.dataset_version", "tags.git_sha", "tags.use_case", "tags.env", "tags.owner"]:
        assert runs[col].notna().all(), col
    versions = {json.loads(v)["gold.fxs_features"] for v in runs["tags.dataset_version"]}
    assert versions == {two_runs["first"]["tables"]["gold.fxs_features"]["version"]}


def test_drift_is_recorded_per_feature(two_runs: dict[str, Any]) -> None:
    drift = _frame(two_runs["workspace"], "ops.drift")
    assert set(drift["statistic"]) == {"psi", "wasserstein", "ks", "missing_rate", "out_of_range"}
    assert "month" not in set(drift["feature"])  # calendar features are excluded from drift
    assert {"rv_5", "rv_20", "ret"} <= set(drift["feature"])
    assert two_runs["first"]["drift"]["window"][0] <= two_runs["first"]["drift"]["window"][1]
