"""The quality gate: a candidate is promoted only when it beats every rival on the same rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from goldgate.evaluate import Evaluation, ModelScore
from goldgate.usecase import Gate

DECISION_FILE = "gate_decision.json"
LOWER_IS_BETTER = {"rmse": True, "mae": True, "r2": False}


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass
class GateDecision:
    decision: str  # promote | reject
    reason: str
    primary_metric: str
    candidate: dict[str, Any] | None
    criteria: list[Criterion] = field(default_factory=list)
    training_run_id: str = ""
    dataset_version: dict[str, int] = field(default_factory=dict)
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def promoted(self) -> bool:
        return self.decision == "promote"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        criteria = [Criterion(**c) for c in data.pop("criteria")]
        return cls(criteria=criteria, **data)


def _better(value: float, rival: float, margin: float, lower: bool) -> tuple[bool, float]:
    """Whether ``value`` beats ``rival`` by the relative ``margin``; returns the threshold it had to meet."""
    threshold = rival * (1 - margin) if lower else rival * (1 + margin)
    return (value < threshold if lower else value > threshold), threshold


def best_candidate(evaluation: Evaluation) -> ModelScore | None:
    """The candidate with the best primary metric (ties go to the first declared)."""
    metric = evaluation.primary_metric
    scored = [s for s in evaluation.by_role("candidate") if metric in s.metrics]
    if not scored:
        return None
    sign = 1 if LOWER_IS_BETTER[metric] else -1
    return min(scored, key=lambda s: sign * s.metrics[metric])


def _rival(name: str, cand: float, rival: ModelScore | None, policy: Gate, metric: str) -> Criterion:
    if rival is None or metric not in rival.metrics:
        why = rival.error if rival is not None and rival.error else f"no {name} score"
        return Criterion(f"beats_{name}", False, cand, None, f"cannot compare: {why}")
    ok, threshold = _better(cand, rival.metrics[metric], policy.margin, LOWER_IS_BETTER[metric])
    detail = f"{metric} {cand:.6g} vs {name} {rival.metrics[metric]:.6g} (margin {policy.margin:.1%})"
    return Criterion(f"beats_{name}", ok, cand, threshold, detail)


def decide(evaluation: Evaluation, policy: Gate) -> GateDecision:
    """Apply the gate policy to an evaluation. Any criterion that cannot be checked counts as failed."""
    metric = evaluation.primary_metric
    cand = best_candidate(evaluation)
    base: dict[str, Any] = {
        "primary_metric": metric,
        "training_run_id": evaluation.training_run_id,
        "dataset_version": evaluation.dataset_version,
    }
    if cand is None:
        return GateDecision("reject", "no candidate could be scored", candidate=None, **base)
    value = cand.metrics[metric]
    baselines = evaluation.by_role("baseline")
    criteria = [_rival("baseline", value, baselines[0] if baselines else None, policy, metric)]
    champions = evaluation.by_role("champion")
    if not champions:
        criteria.append(Criterion("beats_champion", True, value, None, "no champion yet: first promotion"))
    elif policy.require_beat_champion:
        criteria.append(_rival("champion", value, champions[0], policy, metric))
    criteria.append(
        Criterion(
            "holdout_rows",
            evaluation.rows >= 20,
            float(evaluation.rows),
            20.0,
            f"{evaluation.rows} holdout rows",
        )
    )
    failed = [c.name for c in criteria if not c.passed]
    reason = "all criteria passed" if not failed else "failed: " + ", ".join(failed)
    candidate = {
        "model": cand.model,
        "run_id": cand.run_id,
        "model_uri": cand.model_uri,
        "metrics": cand.metrics,
    }
    return GateDecision(
        "reject" if failed else "promote", reason, candidate=candidate, criteria=criteria, **base
    )
