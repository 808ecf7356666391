"""MLflow registry: versions, ``challenger`` / ``champion`` aliases; every decision in ``ops.promotions``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from goldgate.evaluate import ModelScore
from goldgate.gate import GateDecision
from goldgate.lake import Lake

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTIONS = "ops.promotions"

PROMOTIONS_SCHEMA = pa.schema(
    [
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("actor", pa.string()),
        ("use_case", pa.string()),
        ("model_name", pa.string()),
        ("action", pa.string()),
        ("decision", pa.string()),
        ("from_version", pa.string()),
        ("to_version", pa.string()),
        ("run_id", pa.string()),
        ("reason", pa.string()),
        ("criteria", pa.string()),
        ("gate_record", pa.string()),
    ]
)


def alias_version(name: str, alias: str) -> Any | None:
    """The model version an alias points to, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def training_window_end(run_id: str) -> str | None:
    """The last training date of the model logged by ``run_id`` (recorded on its parent training run)."""
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    parent = run.data.tags.get("mlflow.parentRunId")
    params = client.get_run(parent).data.params if parent else run.data.params
    return params.get("train_end")


def version_score(name: str, version: str, role: str) -> ModelScore:
    """A registered version as an (unscored) entry of an evaluation."""
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(name, version)
    return ModelScore(
        model=f"{name} v{mv.version}",
        role=role,
        run_id=mv.run_id or "",
        model_uri=f"models:/{name}/{mv.version}",
        version=str(mv.version),
        train_end=training_window_end(mv.run_id) if mv.run_id else None,
    )


def champion_score(name: str) -> ModelScore | None:
    """The current champion as an unscored entry for the evaluation (None before the first promotion)."""
    version = alias_version(name, CHAMPION)
    return version_score(name, str(version.version), "champion") if version is not None else None


def record_promotion(lake: Lake, row: dict[str, Any]) -> None:
    """Append one row to the append-only promotion log."""
    full = {"recorded_at": datetime.now(UTC), **row}
    lake.append(PROMOTIONS, pa.Table.from_pylist([full], schema=PROMOTIONS_SCHEMA))


def decision_row(
    decision: GateDecision,
    name: str,
    use_case: str,
    actor: str,
    action: str,
    from_version: str | None,
    to_version: str | None,
) -> dict[str, Any]:
    """The ``ops.promotions`` row for a gate decision: each criterion with its value and threshold."""
    criteria = [
        {"name": c.name, "passed": c.passed, "value": c.value, "threshold": c.threshold} for c in decision.criteria
    ]
    return {
        "actor": actor,
        "use_case": use_case,
        "model_name": name,
        "action": action,
        "decision": decision.decision,
        "from_version": from_version,
        "to_version": to_version,
        "run_id": decision.candidate["run_id"] if decision.candidate else None,
        "reason": decision.reason,
        "criteria": json.dumps(criteria),
        "gate_record": json.dumps(decision.to_dict()),
    }


def move_champion(name: str, version: str, decision: GateDecision | None) -> None:
    """Point ``champion`` at ``version`` (through ``challenger``), tagging the version with the decision."""
    import mlflow

    client = mlflow.MlflowClient()
    if decision is not None:
        client.set_model_version_tag(name, version, "gate.decision", decision.decision)
        client.set_model_version_tag(name, version, "gate.record", json.dumps(decision.to_dict())[:4900])
    client.set_registered_model_alias(name, CHALLENGER, version)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.delete_registered_model_alias(name, CHALLENGER)


def register_decision(decision: GateDecision, name: str, use_case: str, actor: str, lake: Lake) -> str | None:
    """Register a promoted candidate (``challenger``, then ``champion``) and log the decision.

    Returns the new version, or None when the gate rejected.
    """
    import mlflow

    previous = alias_version(name, CHAMPION)
    from_version = str(previous.version) if previous is not None else None
    to_version: str | None = None
    if decision.promoted and decision.candidate is not None:
        mv = mlflow.register_model(decision.candidate["model_uri"], name)
        to_version = str(mv.version)
        mlflow.MlflowClient().set_model_version_tag(name, to_version, "run_id", decision.candidate["run_id"])
        # The gate has already compared the challenger with the champion on the same rows.
        move_champion(name, to_version, decision)
        log.info("promoted %s v%s to %s (was %s)", name, to_version, CHAMPION, from_version)
    record_promotion(lake, decision_row(decision, name, use_case, actor, "gate", from_version, to_version))
    return to_version


def promotions(lake: Lake) -> list[dict[str, Any]]:
    """The promotion log, oldest first."""
    if not lake.exists(PROMOTIONS):
        return []
    rows = lake.read(PROMOTIONS).to_pyarrow().to_pylist()
    return sorted(rows, key=lambda r: r["recorded_at"])


def previous_champion(lake: Lake, name: str, current: str) -> str | None:
    """The version that was champion before ``current`` last took over, from the promotion log.

    Rollback rows are not take-overs: counting them would make a second rollback reinstate the version
    the first one rolled back from, instead of walking further back.
    """
    moves = [
        r
        for r in promotions(lake)
        if r["model_name"] == name and r["to_version"] is not None and r["action"] != "rollback"
    ]
    for row in reversed(moves):
        if row["to_version"] == current:
            return row["from_version"]
    return None


def rollback(lake: Lake, name: str, use_case: str, actor: str, reason: str) -> tuple[str, str]:
    """Move ``champion`` back to the previous champion and record it; returns (from, to)."""
    current = alias_version(name, CHAMPION)
    if current is None:
        raise LookupError(f"{name} has no champion to roll back")
    target = previous_champion(lake, name, str(current.version))
    if target is None:
        raise LookupError(f"{name} v{current.version} has no previous champion in {PROMOTIONS}")
    move_champion(name, target, None)
    record_promotion(
        lake,
        {
            "actor": actor,
            "use_case": use_case,
            "model_name": name,
            "action": "rollback",
            "decision": "rollback",
            "from_version": str(current.version),
            "to_version": target,
            "run_id": None,
            "reason": reason,
            "criteria": "[]",
            "gate_record": None,
        },
    )
    log.info("rolled back %s champion v%s -> v%s", name, current.version, target)
    return str(current.version), target


def list_versions(name: str) -> list[dict[str, Any]]:
    """Every registered version with its aliases, gate decision and backtest metrics, newest first."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
        # search results carry no aliases (MLflow leaves them empty): take them from the registered model
        aliases = client.get_registered_model(name).aliases if versions else {}
    except MlflowException:
        return []
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        out.append(
            {
                "version": str(mv.version),
                "aliases": sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
                "run_id": mv.run_id,
                "decision": mv.tags.get("gate.decision"),
                "metrics": {k: v for k, v in metrics.items() if k.startswith(("backtest_", "holdout_"))},
            }
        )
    return out
