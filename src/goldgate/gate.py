"""The quality gate: a candidate is promoted only when it has earned it on the same rows. Blocks by default.

Every criterion is evaluated and recorded; one that cannot be checked (no score, no shared rows, no quality
record) counts as failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from goldgate.evaluate import Comparison, Evaluation, ModelScore
from goldgate.metrics import LOWER_IS_BETTER
from goldgate.usecase import Gate

DECISION_FILE = "gate_decision.json"


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
        data = dict(data)
        criteria = [Criterion(**c) for c in data.pop("criteria")]
        return cls(criteria=criteria, **data)


@dataclass(frozen=True)
class GateFacts:
    """What the gate needs beyond the evaluation: the input batch's data quality."""

    quarantine_share: float | None


def best_candidate(evaluation: Evaluation) -> ModelScore | None:
    """The candidate with the best pooled primary metric (ties go to the first declared)."""
    metric = evaluation.primary_metric
    scored = [s for s in evaluation.by_role("candidate") if metric in s.metrics]
    if not scored:
        return None
    sign = 1 if LOWER_IS_BETTER[metric] else -1
    return min(scored, key=lambda s: sign * s.metrics[metric])


def _beats(name: str, comp: Comparison | None, margin: float, why_missing: str) -> list[Criterion]:
    """Margin on the shared rows, and a paired CI of the loss difference that lies wholly below zero."""
    if comp is None:
        return [
            Criterion(f"beats_{name}", False, None, None, f"cannot compare: {why_missing}"),
            Criterion(f"ci_vs_{name}", False, None, 0.0, f"cannot compare: {why_missing}"),
        ]
    threshold = comp.rival_value * (1 - margin)
    margin_ok = comp.candidate_value < threshold
    detail = (
        f"{comp.metric} {comp.candidate_value:.6g} vs {name} {comp.rival_value:.6g} on {comp.rows} shared "
        f"rows, folds {comp.folds} (must be < {threshold:.6g}, margin {margin:.1%})"
    )
    ci_detail = (
        f"{comp.ci_level:.0%} CI of mean loss difference [{comp.ci_low:.3g}, {comp.ci_high:.3g}] "
        f"(block bootstrap by {comp.ci_unit}; must lie below 0)"
    )
    return [
        Criterion(f"beats_{name}", margin_ok, comp.candidate_value, threshold, detail),
        Criterion(f"ci_vs_{name}", comp.ci_high < 0, comp.ci_high, 0.0, ci_detail),
    ]


def _calibration(
    name: str, comp: Comparison | None, tolerance: float, why_missing: str, top_label: bool = False
) -> Criterion:
    """A classifier's expected calibration error may not exceed the rival's by more than ``tolerance``.

    ``top_label`` (multiclass): the ECE of the confidence in the most probable class against whether it is right.
    """
    if comp is None or comp.candidate_ece is None or comp.rival_ece is None:
        return Criterion(f"calibration_vs_{name}", False, None, None, f"cannot compare: {why_missing}")
    limit = comp.rival_ece + tolerance
    what = "top-label expected calibration error" if top_label else "expected calibration error"
    return Criterion(
        f"calibration_vs_{name}",
        comp.candidate_ece <= limit,
        comp.candidate_ece,
        limit,
        f"{what} {comp.candidate_ece:.4f} vs {name} {comp.rival_ece:.4f} on {comp.rows} shared "
        f"rows (may exceed it by {tolerance:g})",
    )


def decide(evaluation: Evaluation, policy: Gate, min_fold_wins: int, facts: GateFacts) -> GateDecision:
    """Apply the gate policy to an evaluation; promote only when every criterion passes."""
    metric = evaluation.primary_metric
    cand = best_candidate(evaluation)
    base: dict[str, Any] = {
        "primary_metric": metric,
        "training_run_id": evaluation.training_run_id,
        "dataset_version": evaluation.dataset_version,
    }
    if cand is None:
        return GateDecision("reject", "no candidate could be scored", candidate=None, **base)
    vs_base = evaluation.comparison(cand.model, "baseline")
    criteria = _beats("baseline", vs_base, policy.margin, "no baseline score")
    classifier = evaluation.task in ("classification", "multiclass")
    top_label = evaluation.task == "multiclass"
    if classifier:
        criteria.append(_calibration("baseline", vs_base, policy.ece_tolerance, "no baseline score", top_label))
    wins = vs_base.fold_wins if vs_base else 0
    shared = len(vs_base.folds) if vs_base else 0
    # A registered version is only scored on folds it has not seen: with fewer shared folds than the policy's
    # count, it must win every one of them.
    needed = max(min(min_fold_wins, shared), 1)
    criteria.append(
        Criterion(
            "fold_wins_vs_baseline",
            wins >= needed,
            float(wins),
            float(needed),
            f"better than the baseline in {wins} of {shared} folds (needs {needed})",
        )
    )
    champions = evaluation.by_role("champion")
    if not champions:
        criteria.append(Criterion("beats_champion", True, None, None, "no champion yet: first promotion"))
    else:
        champ = champions[0]
        if policy.require_beat_champion:
            why = champ.error or "no fold the champion has not seen"
            vs_champ = evaluation.comparison(cand.model, "champion")
            criteria += _beats("champion", vs_champ, policy.margin, why)
            if classifier:
                criteria.append(_calibration("champion", vs_champ, policy.ece_tolerance, why, top_label))
        same = cand.signature == champ.signature
        criteria.append(
            Criterion(
                "signature_compatible",
                same or policy.allow_signature_change,
                None,
                None,
                "same inputs and types as the champion"
                if same
                else f"inputs differ from the champion's: {sorted(set(cand.signature) ^ set(champ.signature))}",
            )
        )
    share = facts.quarantine_share
    criteria.append(
        Criterion(
            "data_quality_clean",
            share is not None and share <= policy.max_quarantine_share,
            share,
            policy.max_quarantine_share,
            "no quality record for the input batch" if share is None else f"{share:.2%} of input rows quarantined",
        )
    )
    if policy.latency_budget_ms is not None:
        lat = cand.latency_p95_ms
        criteria.append(
            Criterion(
                "latency_budget",
                lat is not None and lat <= policy.latency_budget_ms,
                lat,
                policy.latency_budget_ms,
                "not measured" if lat is None else f"p95 single-row predict {lat:.2f} ms",
            )
        )
    criteria.append(
        Criterion(
            "test_rows",
            evaluation.rows >= policy.min_test_rows,
            float(evaluation.rows),
            float(policy.min_test_rows),
            f"{evaluation.rows} backtest rows",
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
    return GateDecision("reject" if failed else "promote", reason, candidate=candidate, criteria=criteria, **base)


def render_markdown(decision: GateDecision) -> str:
    """The decision as Markdown: verdict, candidate, and one table row per criterion."""
    cand = decision.candidate or {}
    lines = [
        f"## Gate decision: **{decision.decision.upper()}**",
        "",
        f"- candidate: `{cand.get('model', '-')}` (run `{cand.get('run_id', '-')}`)",
        f"- primary metric: {decision.primary_metric}",
        f"- data version: `{decision.dataset_version}`",
        f"- training run: `{decision.training_run_id}`",
        f"- decided at: {decision.decided_at}",
        f"- reason: {decision.reason}",
        "",
        "| criterion | passed | value | threshold | detail |",
        "|---|---|---|---|---|",
    ]
    for c in decision.criteria:
        value = "-" if c.value is None else f"{c.value:.6g}"
        threshold = "-" if c.threshold is None else f"{c.threshold:.6g}"
        lines.append(f"| {c.name} | {'yes' if c.passed else 'NO'} | {value} | {threshold} | {c.detail} |")
    return "\n".join(lines) + "\n"
