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


def champion_score(name: str) -> ModelScore | None:
    """The current champion as an unscored entry for the evaluation (None before the first promotion)."""
    version = alias_version(name, CHAMPION)
    if version is None:
        return None
    return ModelScore(
        model=f"{name} v{version.version}",
        role="champion",
        run_id=version.run_id or "",
        model_uri=f"models:/{name}/{version.version}",
        version=str(version.version),
    )


def record_promotion(lake: Lake, row: dict[str, Any]) -> None:
    """Append one row to the append-only promotion log."""
    full = {"recorded_at": datetime.now(UTC), **row}
    lake.append(PROMOTIONS, pa.Table.from_pylist([full], schema=PROMOTIONS_SCHEMA))


def register_decision(decision: GateDecision, name: str, use_case: str, actor: str, lake: Lake) -> str | None:
    """Register a promoted candidate (``challenger``, then ``champion``) and log the decision.

    Returns the new version, or None when the gate rejected.
    """
    import mlflow

    client = mlflow.MlflowClient()
    previous = alias_version(name, CHAMPION)
    from_version = str(previous.version) if previous is not None else None
    to_version: str | None = None
    if decision.promoted and decision.candidate is not None:
        mv = mlflow.register_model(decision.candidate["model_uri"], name)
        to_version = str(mv.version)
        client.set_model_version_tag(name, to_version, "gate.decision", decision.decision)
        client.set_model_version_tag(name, to_version, "gate.record", json.dumps(decision.to_dict())[:4900])
        client.set_model_version_tag(name, to_version, "run_id", decision.candidate["run_id"])
        client.set_registered_model_alias(name, CHALLENGER, to_version)
        # The gate has already compared the challenger with the champion on the same rows.
        client.set_registered_model_alias(name, CHAMPION, to_version)
        client.delete_registered_model_alias(name, CHALLENGER)
        log.info("promoted %s v%s to %s (was %s)", name, to_version, CHAMPION, from_version)
    record_promotion(
        lake,
        {
            "actor": actor,
            "use_case": use_case,
            "model_name": name,
            "action": "gate",
            "decision": decision.decision,
            "from_version": from_version,
            "to_version": to_version,
            "run_id": decision.candidate["run_id"] if decision.candidate else None,
            "reason": decision.reason,
            "gate_record": json.dumps(decision.to_dict()),
        },
    )
    return to_version
