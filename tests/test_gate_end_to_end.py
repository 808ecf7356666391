"""The gate through the real pipeline on the slice use case: dry run, promotion, a rejected and a forced
promotion of a worse version, rollback from the CLI, and the CLI views of versions and decisions.

One workspace for the module: the fixture plays the whole story once and keeps a snapshot after each act.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.context import Context
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase
from mlflow_store import mlflow_store

pytestmark = pytest.mark.e2e

NAME = "fx_slice_vol"


def promotion_log(workspace: Path) -> list[dict[str, Any]]:
    path = workspace / "lake" / "ops" / "promotions"
    if not DeltaTable.is_deltatable(str(path)):
        return []
    return sorted(DeltaTable(str(path)).to_pyarrow_table().to_pylist(), key=lambda r: r["recorded_at"])


def champion() -> str | None:
    from goldgate.registry import CHAMPION, alias_version

    mv = alias_version(NAME, CHAMPION)
    return str(mv.version) if mv is not None else None


def snapshot(workspace: Path, **extra: Any) -> dict[str, Any]:
    from goldgate.registry import list_versions

    return {"champion": champion(), "log": promotion_log(workspace), "versions": list_versions(NAME), **extra}


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> Iterator[dict[str, Any]]:
    import mlflow

    from goldgate.pipeline import promote_version

    workspace = tmp_path_factory.mktemp("gate_ws")
    settings = load_settings(workspace=workspace)
    usecase = load_usecase(slice_usecase_path)
    cli = ["--usecase", str(slice_usecase_path), "--workspace", str(workspace)]
    acts: dict[str, Any] = {"workspace": workspace, "cli": cli}
    with mlflow_store(settings.resolved_tracking_uri):
        # (a) the whole loop with --dry-run semantics
        dry = Context(settings, usecase, dry_run=True)
        summary = run_pipeline(dry)
        acts["dry"] = snapshot(workspace, summary=summary, register=dry.results["register"])
        # the same training run, registered for real
        ctx = Context(settings, usecase)
        run_pipeline(ctx, only=["register", "score"])
        acts["registered"] = snapshot(workspace, register=ctx.results["register"])
        # (b) a deliberately worse version: the persistence baseline of that training run
        baseline = next(r for r in dry.results["train"]["runs"] if r["role"] == "baseline")
        uri = mlflow.MlflowClient().get_run(baseline["run_id"]).data.tags["goldgate.model_uri"]
        worse = str(mlflow.register_model(uri, NAME).version)
        acts["worse_version"] = worse
        rejected = promote_version(ctx, worse, force=False, reason="try the baseline")
        acts["rejected"] = snapshot(workspace, decision=rejected)
        forced = promote_version(ctx, worse, force=True, reason="incident drill")
        acts["forced"] = snapshot(workspace, decision=forced)
        result = CliRunner().invoke(app, ["rollback", *cli, "--reason", "drill over"])
        acts["rollback"] = snapshot(workspace, result=result)
        yield acts


def test_dry_run_reports_the_decision_and_leaves_the_registry_without_a_champion(story: dict[str, Any]) -> None:
    dry = story["dry"]
    gate = dry["summary"]["gate"]
    assert gate["decision"] == "promote"  # the first candidate would be promoted ...
    assert dry["register"] == {"version": None, "dry_run": True, "decision": "promote"}
    assert dry["champion"] is None  # ... but nothing was registered
    assert dry["versions"] == []
    assert dry["summary"]["champion"] is None
    assert dry["summary"]["predictions_rows"] == 0
    (row,) = dry["log"]
    assert (row["action"], row["decision"], row["from_version"], row["to_version"]) == (
        "dry-run",
        "promote",
        None,
        None,
    )
    assert [c["name"] for c in json.loads(row["criteria"])] == [c["name"] for c in gate["criteria"]]
    assert json.loads(row["gate_record"])["decision"] == "promote"


def test_registering_the_gated_run_makes_the_first_champion(story: dict[str, Any]) -> None:
    reg = story["registered"]
    assert reg["register"] == {"version": "1", "decision": "promote"}
    assert reg["champion"] == "1"
    assert [r["action"] for r in reg["log"]] == ["dry-run", "gate"]
    assert (reg["log"][-1]["from_version"], reg["log"][-1]["to_version"]) == (None, "1")


def test_a_worse_version_is_rejected_and_the_champion_stays(story: dict[str, Any]) -> None:
    act, worse = story["rejected"], story["worse_version"]
    assert worse == "2"
    decision = act["decision"]
    assert decision.decision == "reject"
    failed = {c.name for c in decision.criteria if not c.passed}
    # the baseline's own model cannot beat the refitted baseline, nor the champion
    assert {"beats_baseline", "ci_vs_baseline", "beats_champion"} <= failed
    assert act["champion"] == "1"
    row = act["log"][-1]
    assert (row["action"], row["decision"], row["from_version"], row["to_version"]) == ("promote", "reject", "1", None)
    assert row["reason"] == decision.reason
    assert len(act["log"]) == len(story["registered"]["log"]) + 1


def test_force_moves_the_champion_and_records_the_reason(story: dict[str, Any]) -> None:
    act = story["forced"]
    assert act["champion"] == story["worse_version"] == "2"
    row = act["log"][-1]
    assert (row["action"], row["decision"], row["from_version"], row["to_version"]) == (
        "force-promote",
        "reject",
        "1",
        "2",
    )
    assert "incident drill" in row["reason"]
    assert "forced by" in row["reason"]
    assert "gate said: failed:" in row["reason"]
    assert json.loads(row["gate_record"])["reason"] == row["reason"]


def test_rollback_from_the_cli_restores_the_previous_champion(story: dict[str, Any]) -> None:
    act = story["rollback"]
    assert act["result"].exit_code == 0, act["result"].output
    assert "champion v2 -> v1" in act["result"].output
    assert act["champion"] == "1"
    row = act["log"][-1]
    assert (row["action"], row["from_version"], row["to_version"], row["reason"]) == (
        "rollback",
        "2",
        "1",
        "drill over",
    )
    assert [r["action"] for r in act["log"]] == ["dry-run", "gate", "promote", "force-promote", "rollback"]
    # the log only ever grew: every earlier row is still there, unchanged
    assert act["log"][: len(story["forced"]["log"])] == story["forced"]["log"]


def test_a_second_rollback_does_not_reinstate_the_rolled_back_version(story: dict[str, Any]) -> None:
    with mlflow_store(load_settings(workspace=story["workspace"]).resolved_tracking_uri):
        result = CliRunner().invoke(app, ["rollback", *story["cli"]])
        assert champion() == "1"
    assert result.exit_code == 1
    assert "no previous champion" in result.output
    assert len(promotion_log(story["workspace"])) == len(story["rollback"]["log"])


def test_models_lists_every_version_with_its_alias(story: dict[str, Any]) -> None:
    listed = story["rollback"]["versions"]
    assert [(v["version"], v["aliases"], v["decision"]) for v in listed] == [
        ("2", [], "force-promote"),  # forced past a rejecting gate
        ("1", ["champion"], "promote"),
    ]
    assert "backtest_rmse" in listed[1]["metrics"]
    result = CliRunner().invoke(app, ["models", *story["cli"]])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith("│")]
    by_version = {line.split("│")[1].strip(): line for line in lines}
    assert set(by_version) >= {"1", "2"}
    assert "champion" in by_version["1"]
    assert "champion" not in by_version["2"]


def test_gate_show_prints_the_decision_as_a_markdown_table(story: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["gate", "show", *story["cli"]])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "## Gate decision: **PROMOTE**" in out
    assert "| criterion | passed | value | threshold | detail |" in out
    for criterion in story["dry"]["summary"]["gate"]["criteria"]:
        assert f"| {criterion['name']} | yes |" in out
