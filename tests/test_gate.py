"""The gate: promote only a candidate that beats the baseline and the champion on the same rows, by the margin.

Evaluations are built directly from ModelScore and Comparison objects: no models, no MLflow.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goldgate.evaluate import Comparison, Evaluation, ModelScore
from goldgate.gate import GateDecision, GateFacts, best_candidate, decide
from goldgate.usecase import Gate

POLICY = Gate(margin=0.01, latency_budget_ms=50)
CLEAN = GateFacts(quarantine_share=0.0)
WINS = 3  # folds a candidate must win against the baseline (of 4)
SIGNATURE = ["rv_5:double", "rv_20:double"]


def score(
    model: str, role: str, error: str | None = None, signature: list[str] | None = None, **metrics: float
) -> ModelScore:
    return ModelScore(
        model,
        role,
        run_id=f"run-{model}",
        model_uri=f"runs:/run-{model}/model",
        metrics=dict(metrics),
        error=error,
        signature=SIGNATURE if signature is None else signature,
        latency_p95_ms=2.0 if role == "candidate" else None,
    )


def comparison(
    candidate: str,
    rival: str,
    candidate_value: float,
    rival_value: float,
    ci_high: float = -0.001,
    fold_wins: int = 4,
    metric: str = "rmse",
) -> Comparison:
    """A paired comparison; by default the candidate wins every fold and the CI lies below zero."""
    return Comparison(
        candidate=candidate,
        rival=rival,
        metric=metric,
        folds=[0, 1, 2, 3],
        rows=240,
        candidate_value=candidate_value,
        rival_value=rival_value,
        fold_wins=fold_wins,
        ci_mean=ci_high - 0.002,
        ci_low=ci_high - 0.004,
        ci_high=ci_high,
        ci_level=0.95,
    )


def evaluation(
    scores: list[ModelScore], comparisons: list[Comparison], primary: str = "rmse", rows: int = 240
) -> Evaluation:
    return Evaluation(
        training_run_id="train-1",
        use_case="fx",
        dataset_version={"gold.fx_features": 3},
        primary_metric=primary,
        folds=[],
        rows=rows,
        scores=scores,
        comparisons=comparisons,
    )


def standard(champion_value: float | None = 0.85, champion_error: str | None = None, **overrides: Any) -> Evaluation:
    """Baseline 1.0; candidates har 0.9 and lightgbm 0.8 (the best); optionally a champion."""
    scores = [
        score("persistence", "baseline", rmse=1.0),
        score("har", "candidate", rmse=0.9),
        score("lightgbm", "candidate", rmse=0.8),
    ]
    comparisons = [comparison("lightgbm", "baseline", 0.8, 1.0), comparison("har", "baseline", 0.9, 1.0)]
    if champion_error is not None:
        scores.append(score("champion", "champion", error=champion_error))
    elif champion_value is not None:
        scores.append(score("champion", "champion", rmse=champion_value))
        comparisons.append(comparison("lightgbm", "champion", 0.8, champion_value))
    ev = evaluation(scores, comparisons)
    for key, value in overrides.items():
        setattr(ev, key, value)
    return ev


def passed(decision: GateDecision) -> dict[str, bool]:
    return {c.name: c.passed for c in decision.criteria}


def criterion(decision: GateDecision, name: str) -> Any:
    return next(c for c in decision.criteria if c.name == name)


def test_promotes_the_best_candidate_that_beats_baseline_and_champion() -> None:
    decision = decide(standard(), POLICY, WINS, CLEAN)
    assert decision.promoted
    assert decision.decision == "promote"
    assert decision.reason == "all criteria passed"
    assert passed(decision) == {
        "beats_baseline": True,
        "ci_vs_baseline": True,
        "fold_wins_vs_baseline": True,
        "beats_champion": True,
        "ci_vs_champion": True,
        "signature_compatible": True,
        "data_quality_clean": True,
        "latency_budget": True,
        "test_rows": True,
    }
    assert decision.candidate == {
        "model": "lightgbm",
        "run_id": "run-lightgbm",
        "model_uri": "runs:/run-lightgbm/model",
        "metrics": {"rmse": 0.8},
    }
    assert criterion(decision, "beats_champion").threshold == pytest.approx(0.85 * 0.99)
    assert criterion(decision, "beats_baseline").threshold == pytest.approx(0.99)
    assert (decision.training_run_id, decision.dataset_version) == ("train-1", {"gold.fx_features": 3})


def test_rejects_a_candidate_that_does_not_beat_the_champion() -> None:
    decision = decide(standard(champion_value=0.78), POLICY, WINS, CLEAN)
    assert decision.decision == "reject"
    assert decision.reason == "failed: beats_champion"
    assert passed(decision)["beats_baseline"]


def test_rejects_a_candidate_better_than_the_champion_by_less_than_the_margin() -> None:
    ev = standard(champion_value=0.805)
    assert decide(ev, Gate(margin=0.01), WINS, CLEAN).decision == "reject"
    assert decide(ev, Gate(margin=0.0), WINS, CLEAN).decision == "promote"


def test_rejects_a_candidate_that_does_not_beat_the_baseline() -> None:
    ev = standard()
    ev.comparisons[0] = comparison("lightgbm", "baseline", 0.8, 0.805)
    decision = decide(ev, POLICY, WINS, CLEAN)
    assert decision.reason == "failed: beats_baseline"


def test_rejects_when_the_champion_could_not_be_scored() -> None:
    error = "champion needs columns ['rv_120'] that the feature table lacks"
    decision = decide(standard(champion_error=error), POLICY, WINS, CLEAN)
    assert decision.decision == "reject"
    assert decision.reason == "failed: beats_champion, ci_vs_champion"
    beats = criterion(decision, "beats_champion")
    assert (beats.passed, beats.value, beats.threshold) == (False, None, None)
    assert "cannot compare" in beats.detail
    assert "rv_120" in beats.detail


def test_rejects_when_the_champion_shares_no_rows_with_the_candidate() -> None:
    ev = standard()
    ev.comparisons = [c for c in ev.comparisons if c.rival != "champion"]
    decision = decide(ev, POLICY, WINS, CLEAN)
    assert decision.decision == "reject"
    assert "no fold the champion has not seen" in criterion(decision, "beats_champion").detail


def test_rejects_when_there_is_no_baseline_comparison() -> None:
    ev = standard(champion_value=None)
    ev.comparisons = []
    decision = decide(ev, POLICY, WINS, CLEAN)
    assert decision.reason == "failed: beats_baseline, ci_vs_baseline, fold_wins_vs_baseline"


def test_first_promotion_needs_no_champion() -> None:
    decision = decide(standard(champion_value=None), POLICY, WINS, CLEAN)
    assert decision.promoted
    first = criterion(decision, "beats_champion")
    assert first.passed
    assert "first promotion" in first.detail
    assert "signature_compatible" not in passed(decision)
    assert "ci_vs_champion" not in passed(decision)


def test_champion_is_not_compared_when_the_policy_does_not_require_it() -> None:
    decision = decide(standard(champion_value=0.5), Gate(require_beat_champion=False), WINS, CLEAN)
    assert decision.promoted
    assert "beats_champion" not in passed(decision)
    assert passed(decision)["signature_compatible"]


@pytest.mark.parametrize(("rival", "name"), [("baseline", "ci_vs_baseline"), ("champion", "ci_vs_champion")])
def test_rejects_when_the_confidence_interval_reaches_zero(rival: str, name: str) -> None:
    ev = standard()
    ix = next(i for i, c in enumerate(ev.comparisons) if c.candidate == "lightgbm" and c.rival == rival)
    old = ev.comparisons[ix]
    ev.comparisons[ix] = comparison("lightgbm", rival, old.candidate_value, old.rival_value, ci_high=0.0)
    decision = decide(ev, POLICY, WINS, CLEAN)
    assert decision.reason == f"failed: {name}"


def test_rejects_too_few_fold_wins_against_the_baseline() -> None:
    ev = standard()
    ev.comparisons[0] = comparison("lightgbm", "baseline", 0.8, 1.0, fold_wins=2)
    decision = decide(ev, POLICY, WINS, CLEAN)
    assert decision.reason == "failed: fold_wins_vs_baseline"
    assert (
        criterion(decision, "fold_wins_vs_baseline").value,
        criterion(decision, "fold_wins_vs_baseline").threshold,
    ) == (
        2.0,
        3.0,
    )
    assert decide(ev, POLICY, 2, CLEAN).promoted


def test_signature_change_is_rejected_unless_allowed() -> None:
    ev = standard()
    ev.scores[2] = score("lightgbm", "candidate", signature=[*SIGNATURE, "rv_60:double"], rmse=0.8)
    decision = decide(ev, POLICY, WINS, CLEAN)
    assert decision.reason == "failed: signature_compatible"
    assert "rv_60:double" in criterion(decision, "signature_compatible").detail
    assert decide(ev, POLICY.model_copy(update={"allow_signature_change": True}), WINS, CLEAN).promoted


@pytest.mark.parametrize(("share", "ok"), [(0.0, True), (0.01, True), (0.02, False), (None, False)])
def test_data_quality_share(share: float | None, ok: bool) -> None:
    decision = decide(standard(), POLICY, WINS, GateFacts(quarantine_share=share))
    assert passed(decision)["data_quality_clean"] is ok
    assert decision.promoted is ok


@pytest.mark.parametrize(("latency", "ok"), [(49.0, True), (51.0, False), (None, False)])
def test_latency_budget(latency: float | None, ok: bool) -> None:
    ev = standard()
    ev.scores[2].latency_p95_ms = latency
    decision = decide(ev, POLICY, WINS, CLEAN)
    assert passed(decision)["latency_budget"] is ok
    assert "latency_budget" not in passed(decide(ev, Gate(margin=0.01), WINS, CLEAN))


def test_rejects_too_few_test_rows() -> None:
    decision = decide(standard(rows=19), POLICY, WINS, CLEAN)
    assert decision.reason == "failed: test_rows"


def test_rejects_when_no_candidate_could_be_scored() -> None:
    ev = evaluation([score("persistence", "baseline", rmse=1.0), score("lightgbm", "candidate", error="boom")], [])
    decision = decide(ev, POLICY, WINS, CLEAN)
    assert decision.decision == "reject"
    assert decision.reason == "no candidate could be scored"
    assert decision.candidate is None


def test_mae_as_primary_metric_picks_by_mae() -> None:
    ev = evaluation(
        [
            score("a", "candidate", rmse=0.5, mae=0.6),
            score("b", "candidate", rmse=0.6, mae=0.4),
        ],
        [],
        primary="mae",
    )
    best = best_candidate(ev)
    assert best is not None
    assert best.model == "b"


def test_best_candidate_picks_the_minimum_rmse() -> None:
    ev = evaluation(
        [
            score("persistence", "baseline", rmse=0.1),
            score("a", "candidate", rmse=0.9),
            score("b", "candidate", rmse=0.7),
            score("broken", "candidate", error="could not load"),
            score("c", "candidate", rmse=0.8),
            score("champion", "champion", rmse=0.2),
        ],
        [],
    )
    best = best_candidate(ev)
    assert best is not None
    assert best.model == "b"


def test_best_candidate_tie_goes_to_the_first_declared() -> None:
    best = best_candidate(evaluation([score("a", "candidate", rmse=0.7), score("b", "candidate", rmse=0.7)], []))
    assert best is not None
    assert best.model == "a"


def test_best_candidate_is_none_without_scored_candidates() -> None:
    assert best_candidate(evaluation([score("persistence", "baseline", rmse=1.0)], [])) is None


@pytest.mark.parametrize("champion_error", [None, "unavailable"])
def test_decision_round_trips_through_dict_and_json(champion_error: str | None) -> None:
    decision = decide(standard(champion_error=champion_error), POLICY, WINS, CLEAN)
    data = json.loads(json.dumps(decision.to_dict()))
    assert GateDecision.from_dict(data) == decision
    as_dict = decision.to_dict()
    assert GateDecision.from_dict(as_dict) == decision
    assert "criteria" in as_dict  # from_dict does not consume its input


# --- property: a candidate that does not beat the champion by the margin is never promoted ----------------------

values = st.floats(min_value=1e-4, max_value=10.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    primary=st.sampled_from(["rmse", "mae"]),
    candidates=st.lists(values, min_size=1, max_size=4),
    baseline=values,
    champion=values,
    margin=st.floats(min_value=0.0, max_value=0.5),
    ci_high=st.floats(min_value=-1.0, max_value=1.0),
    fold_wins=st.integers(min_value=0, max_value=4),
)
def test_never_promotes_a_candidate_not_better_than_the_champion(
    primary: str,
    candidates: list[float],
    baseline: float,
    champion: float,
    margin: float,
    ci_high: float,
    fold_wins: int,
) -> None:
    names = [f"cand{i}" for i in range(len(candidates))]
    scores = [score("base", "baseline", **{primary: baseline}), score("champ", "champion", **{primary: champion})]
    scores += [score(n, "candidate", **{primary: v}) for n, v in zip(names, candidates, strict=True)]
    comparisons = [
        comparison(n, rival, v, rival_value, ci_high=ci_high, fold_wins=fold_wins, metric=primary)
        for n, v in zip(names, candidates, strict=True)
        for rival, rival_value in (("baseline", baseline), ("champion", champion))
    ]
    decision = decide(evaluation(scores, comparisons, primary=primary), Gate(margin=margin), WINS, CLEAN)
    best = min(candidates)
    if best >= champion * (1 - margin) or best >= baseline * (1 - margin) or ci_high >= 0 or fold_wins < WINS:
        assert not decision.promoted
    else:
        assert decision.promoted
    if decision.promoted:
        assert decision.candidate is not None
        assert decision.candidate["metrics"][primary] == best


def classifier_evaluation(candidate_ece: float, rival_ece: float) -> Evaluation:
    comp = comparison("lightgbm", "baseline", 0.10, 0.12, metric="brier")
    comp.candidate_ece, comp.rival_ece = candidate_ece, rival_ece
    ev = evaluation(
        [score("prior_rate", "baseline", brier=0.12), score("lightgbm", "candidate", brier=0.10)], [comp], "brier"
    )
    ev.task = "classification"
    return ev


def test_a_classifier_must_not_be_worse_calibrated_than_its_rival() -> None:
    policy = Gate(margin=0.01, latency_budget_ms=50, ece_tolerance=0.01)
    good = decide(classifier_evaluation(0.03, 0.025), policy, WINS, CLEAN)
    assert good.promoted, good.reason
    criterion = next(c for c in good.criteria if c.name == "calibration_vs_baseline")
    assert criterion.value == pytest.approx(0.03)
    assert criterion.threshold == pytest.approx(0.035)
    bad = decide(classifier_evaluation(0.09, 0.025), policy, WINS, CLEAN)
    assert not bad.promoted
    assert "calibration_vs_baseline" in bad.reason


def test_calibration_that_cannot_be_checked_fails() -> None:
    ev = classifier_evaluation(0.03, 0.03)
    ev.comparisons[0].candidate_ece = None
    decision = decide(ev, Gate(margin=0.01, latency_budget_ms=50), WINS, CLEAN)
    assert not decision.promoted
    assert "calibration_vs_baseline" in decision.reason


def test_regression_gates_have_no_calibration_criterion() -> None:
    ev = evaluation(
        [score("persistence", "baseline", rmse=0.05), score("lgbm", "candidate", rmse=0.04)],
        [comparison("lgbm", "baseline", 0.04, 0.05)],
    )
    assert not any(c.name.startswith("calibration") for c in decide(ev, POLICY, WINS, CLEAN).criteria)


def multiclass_evaluation(candidate_ece: float, rival_ece: float, candidate_loss: float = 0.2) -> Evaluation:
    comp = comparison("lightgbm", "baseline", candidate_loss, 1.05, metric="log_loss")
    comp.candidate_ece, comp.rival_ece = candidate_ece, rival_ece
    scores = [score("prior", "baseline", log_loss=1.05), score("lightgbm", "candidate", log_loss=candidate_loss)]
    ev = evaluation(scores, [comp], "log_loss")
    ev.task, ev.classes = "multiclass", ["Adelie", "Chinstrap", "Gentoo"]
    return ev


def test_multiclass_gate_checks_top_label_calibration() -> None:
    policy = Gate(margin=0.01, latency_budget_ms=50, ece_tolerance=0.05)
    good = decide(multiclass_evaluation(0.03, 0.0), policy, WINS, CLEAN)
    assert good.promoted, good.reason
    criterion = next(c for c in good.criteria if c.name == "calibration_vs_baseline")
    assert criterion.detail.startswith("top-label expected calibration error 0.0300 vs baseline 0.0000")
    bad = decide(multiclass_evaluation(0.2, 0.0), policy, WINS, CLEAN)
    assert bad.reason == "failed: calibration_vs_baseline"


def test_multiclass_gate_rejects_a_candidate_no_better_than_the_prior() -> None:
    ev = multiclass_evaluation(0.0, 0.0, candidate_loss=1.10)
    ev.comparisons[0].ci_high, ev.comparisons[0].fold_wins = 0.02, 1
    decision = decide(ev, Gate(margin=0.01, latency_budget_ms=50), WINS, CLEAN)
    assert not decision.promoted
    assert decision.reason == "failed: beats_baseline, ci_vs_baseline, fold_wins_vs_baseline"
    # The decision survives its JSON record, classes and all.
    assert GateDecision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision
    assert Evaluation.from_dict(json.loads(json.dumps(ev.to_dict()))).classes == ev.classes
