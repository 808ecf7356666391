"""Walk-forward evaluation: the baseline, every candidate and the champion on the same folds and rows.

Baseline and candidates are refitted on each fold's training window (the last fold uses the logged model
itself, which was trained on exactly that window). A fixed model artifact, such as the current champion,
is scored only on folds it has not seen: those whose test window starts more than ``gap`` dates after the
end of its own training window. Comparisons are paired on the rows both models scored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from goldgate.backtest import Fold, fold_rows, time_points
from goldgate.bootstrap import paired_block_bootstrap
from goldgate.features import model_feature_columns
from goldgate.metrics import (
    class_indices,
    class_probabilities,
    expected_calibration_error,
    loss_rows,
    task_metrics,
    top_label_ece,
)
from goldgate.usecase import Gate, UseCase

log = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"
PREDICTIONS_FILE = "backtest_predictions.parquet"
PLOT_FILE = "backtest.png"
# Multiclass backtest rows hold one probability column per class, named by this prefix and the class.
PROB_PREFIX = "prob:"


class EvaluationError(RuntimeError):
    """Nothing to evaluate, or the recorded inputs cannot be found."""


@dataclass
class ModelScore:
    model: str
    role: str  # baseline | candidate | champion
    run_id: str
    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    fold_metrics: list[dict[str, float]] = field(default_factory=list)
    version: str | None = None
    error: str | None = None
    signature: list[str] = field(default_factory=list)
    train_end: str | None = None
    latency_p95_ms: float | None = None


@dataclass
class Comparison:
    """A candidate against a rival on the rows both scored."""

    candidate: str
    rival: str  # baseline | champion
    metric: str
    folds: list[int]
    rows: int
    candidate_value: float
    rival_value: float
    fold_wins: int
    ci_mean: float
    ci_low: float
    ci_high: float
    ci_level: float
    ci_unit: str = "date"  # what the bootstrap resampled as blocks: date or entity
    # Classifiers: expected calibration error of both on the shared rows (None for regression); multiclass: the
    # top-label ECE (the confidence in the most probable class against whether it is right).
    candidate_ece: float | None = None
    rival_ece: float | None = None


@dataclass
class Evaluation:
    training_run_id: str
    use_case: str
    dataset_version: dict[str, int]
    primary_metric: str
    folds: list[dict[str, Any]]
    rows: int
    scores: list[ModelScore]
    comparisons: list[Comparison] = field(default_factory=list)
    task: str = "regression"
    classes: list[str] = field(default_factory=list)  # multiclass: the classes, in the order of their indices

    def by_role(self, role: str) -> list[ModelScore]:
        return [s for s in self.scores if s.role == role]

    def comparison(self, candidate: str, rival: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.candidate == candidate and c.rival == rival), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        data = dict(data)
        scores = [ModelScore(**s) for s in data.pop("scores")]
        comparisons = [Comparison(**c) for c in data.pop("comparisons", [])]
        return cls(scores=scores, comparisons=comparisons, **data)


# A scorer returns predictions for a fold's test rows, or None when it may not be scored on that fold.
# A multiclass model's predictions are a frame with one probability column per class.
Scorer = Callable[[Fold, pd.DataFrame, pd.DataFrame], Any]


def loss(metric: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-row loss whose mean the metric is built on (see ``goldgate.metrics.loss_rows``)."""
    return loss_rows(metric, np.asarray(y), np.asarray(pred))


def label_classes(frame: pd.DataFrame, usecase: UseCase) -> list[str]:
    """Multiclass: the sorted distinct labels (as text) of the labelled rows; empty for other tasks."""
    if usecase.task != "multiclass":
        return []
    labels = frame[usecase.target.name].dropna()
    return sorted({str(v) for v in labels})


def prob_columns(rows: pd.DataFrame, prefix: str = PROB_PREFIX) -> list[str]:
    """The class probability columns of multiclass backtest rows, in class order (none for other tasks)."""
    return [c for c in rows.columns if str(c).startswith(prefix)]


def row_outputs(rows: pd.DataFrame, prefix: str = PROB_PREFIX, pred: str = "pred") -> np.ndarray:
    """What the metrics read of backtest rows: ``pred``, or with class probabilities the rows x classes matrix."""
    columns = prob_columns(rows, prefix)
    if columns:
        return rows[columns].to_numpy(dtype="float64")
    return rows[pred].to_numpy(dtype="float64")


def _prediction_rows(
    name: str, fold: Fold, test: pd.DataFrame, output: Any, usecase: UseCase, classes: list[str]
) -> pd.DataFrame:
    """Backtest rows of one scorer on one fold; multiclass adds a probability column per class."""
    target = test[usecase.target.name]
    rows = pd.DataFrame(
        {
            "model": name,
            "fold": fold.index,
            usecase.entity: test[usecase.entity].to_numpy(),
            usecase.time: time_points(test[usecase.time]),
        }
    )
    if not classes:
        rows["y"] = target.to_numpy(dtype="float64")
        rows["pred"] = np.asarray(output, dtype="float64")
        return rows
    prob = class_probabilities(output, classes)
    rows["y"] = class_indices(target, classes)
    rows["pred"] = np.argmax(prob, axis=1).astype("float64")  # the index of the most probable class
    return pd.concat([rows, pd.DataFrame(prob, columns=[PROB_PREFIX + c for c in classes])], axis=1)


def run_backtest(frame: pd.DataFrame, folds: list[Fold], scorers: dict[str, Scorer], usecase: UseCase) -> pd.DataFrame:
    """Predictions of every scorer on every fold it may score: one row per (model, fold, entity, date).

    Multiclass: ``y`` and ``pred`` are class indices into the classes of the labels and of every model's output
    (sorted), and ``prob:<class>`` columns hold the probabilities.
    """
    outputs = []
    for fold in folds:
        train, test = fold_rows(frame, fold, usecase.time)
        if test.empty:
            raise EvaluationError(f"fold {fold.index} ({fold.test_start}..{fold.test_end}) has no test rows")
        for name, scorer in scorers.items():
            pred = scorer(fold, train, test)
            if pred is not None:
                outputs.append((name, fold, test, pred))
    classes = label_classes(frame, usecase)
    if classes:
        seen = {str(c) for *_, out in outputs for c in getattr(out, "columns", [])}
        classes = sorted(set(classes) | seen)
    parts = [_prediction_rows(name, fold, test, out, usecase, classes) for name, fold, test, out in outputs]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _metrics_by_fold(rows: pd.DataFrame, task: str) -> list[dict[str, float]]:
    return [
        {"fold": int(k), "rows": float(len(g)), **task_metrics(task, g["y"].to_numpy(), row_outputs(g))}
        for k, g in rows.groupby("fold", sort=True)
    ]


def fill_scores(scores: list[ModelScore], predictions: pd.DataFrame, task: str = "regression") -> None:
    """Pooled and per-fold metrics of every score from the backtest predictions."""
    for s in scores:
        rows = predictions[predictions["model"] == s.model] if len(predictions) else predictions
        if len(rows) == 0:
            s.error = s.error or "not scored on any fold (no out-of-sample fold for this model)"
            continue
        s.metrics = task_metrics(task, rows["y"].to_numpy(), row_outputs(rows))
        s.fold_metrics = _metrics_by_fold(rows, task)


def _blocks(rows: pd.DataFrame, usecase: UseCase, policy: Gate) -> np.ndarray:
    """Bootstrap blocks: whole dates (every time step of a day moves together), or whole entities."""
    if policy.bootstrap_unit == "time":
        return pd.to_datetime(rows[usecase.time]).dt.date.astype(str).to_numpy()
    return rows[usecase.entity].astype(str).to_numpy()


# Prefix of the rival's prediction columns in a paired comparison.
RIVAL = "rival:"


def _paired_rows(predictions: pd.DataFrame, candidate: str, rival: str, keys: list[str]) -> pd.DataFrame:
    """The candidate's backtest rows joined to the rival's predictions (``rival:``-prefixed) on shared keys."""
    a = predictions[predictions["model"] == candidate]
    b = predictions[predictions["model"] == rival]
    outputs = ["pred", *prob_columns(predictions)]
    return a.merge(b[[*keys, *outputs]].rename(columns={c: RIVAL + c for c in outputs}), on=keys)


def compare(
    predictions: pd.DataFrame,
    candidate: str,
    rival: str,
    rival_role: str,
    usecase: UseCase,
    policy: Gate,
    seed: int,
) -> Comparison | None:
    """Paired comparison on the rows both models scored; None when they share no row."""
    both = _paired_rows(predictions, candidate, rival, ["fold", usecase.entity, usecase.time])
    if both.empty:
        return None
    metric = usecase.evaluation.primary_metric
    mine, theirs = row_outputs(both), row_outputs(both, RIVAL + PROB_PREFIX, RIVAL + "pred")
    la, lb = loss(metric, both["y"], mine), loss(metric, both["y"], theirs)
    ci = paired_block_bootstrap(
        la,
        lb,
        _blocks(both, usecase, policy),
        resamples=policy.bootstrap_resamples,
        level=policy.confidence,
        seed=seed,
    )
    task = usecase.task
    wins = 0
    folds = sorted(int(f) for f in both["fold"].unique())
    for k in folds:
        in_fold = (both["fold"] == k).to_numpy()
        ma = task_metrics(task, both["y"].to_numpy()[in_fold], mine[in_fold])[metric]
        mb = task_metrics(task, both["y"].to_numpy()[in_fold], theirs[in_fold])[metric]
        wins += int(ma < mb)
    y = both["y"].to_numpy()
    ece = {"classification": expected_calibration_error, "multiclass": top_label_ece}.get(task)
    return Comparison(
        candidate=candidate,
        rival=rival_role,
        metric=metric,
        folds=folds,
        rows=len(both),
        candidate_value=task_metrics(task, y, mine)[metric],
        rival_value=task_metrics(task, y, theirs)[metric],
        fold_wins=wins,
        ci_mean=ci.mean,
        ci_low=ci.low,
        ci_high=ci.high,
        ci_level=ci.level,
        ci_unit="date" if policy.bootstrap_unit == "time" else usecase.entity,
        candidate_ece=ece(y, mine) if ece is not None else None,
        rival_ece=ece(y, theirs) if ece is not None else None,
    )


def compare_all(predictions: pd.DataFrame, scores: list[ModelScore], usecase: UseCase) -> list[Comparison]:
    """Every candidate against the baseline and against the champion."""
    out = []
    rivals = [s for s in scores if s.role in ("baseline", "champion") and s.metrics]
    for cand in [s for s in scores if s.role == "candidate" and s.metrics]:
        for rival in rivals:
            c = compare(predictions, cand.model, rival.model, rival.role, usecase, usecase.gate, usecase.models.seed)
            if c is not None:
                out.append(c)
    return out


def out_of_sample(days: list[date], train_end: date, gap: int) -> Callable[[Fold], bool]:
    """Whether a fold's test window lies beyond a model's training labels (more than ``gap`` dates later)."""
    pos = {d: i for i, d in enumerate(days)}
    end_ix = max((i for d, i in pos.items() if d <= train_end), default=-1)

    def check(fold: Fold) -> bool:
        return pos[fold.test_start] - end_ix > gap

    return check


def measure_latency(predict: Callable[[pd.DataFrame], Any], row: pd.DataFrame, calls: int = 100) -> float:
    """p95 wall milliseconds of single-row predictions (after one warm-up call)."""
    predict(row)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        predict(row)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 95))


def signature_of(model: Any) -> list[str]:
    """``name:type`` of every input in a pyfunc model's signature."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        return []
    return [f"{c.name}:{c.type}" for c in schema.inputs]


def plot_backtest(evaluation: Evaluation) -> Any:
    """Primary metric per fold for every model (a matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = evaluation.primary_metric
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for s in evaluation.scores:
        if s.fold_metrics:
            ax.plot(
                [f["fold"] for f in s.fold_metrics],
                [f[metric] for f in s.fold_metrics],
                marker="o",
                label=f"{s.model} ({s.role})",
            )
    ax.set_xlabel("walk-forward fold (oldest → newest)")
    ax.set_ylabel(metric)
    ax.set_title(f"{evaluation.use_case}: {metric} per fold")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def describe(evaluation: Evaluation) -> str:
    """One log line per model: pooled primary metric and folds scored."""
    m = evaluation.primary_metric
    return "; ".join(
        f"{s.model}={s.metrics[m]:.5g} ({len(s.fold_metrics)} folds)" if s.metrics else f"{s.model}: {s.error}"
        for s in evaluation.scores
    )


def dataset_version_of(run: Any) -> dict[str, int]:
    return {k: int(v) for k, v in json.loads(run.data.tags["dataset_version"]).items()}


def _output(predicted: Any) -> Any:
    """A model's predictions as the backtest keeps them: an array, or a multiclass model's probability frame."""
    return predicted if isinstance(predicted, pd.DataFrame) else np.asarray(predicted)


def refit_scorer(
    fit: Callable[[pd.DataFrame], Any],
    inputs: list[str],
    final_predict: Callable[[pd.DataFrame], Any] | None = None,
    last_fold: int = -1,
) -> Scorer:
    """Refit on each fold's training rows; on the last fold, score the logged model trained on that window."""

    def score(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        if final_predict is not None and fold.index == last_fold:
            return _output(final_predict(test[inputs]))
        return _output(fit(train).predict(test[inputs]))

    return score


def artifact_scorer(
    predict: Callable[[pd.DataFrame], Any], inputs: list[str], is_oos: Callable[[Fold], bool]
) -> Scorer:
    """Score a fixed model only on folds it has not seen."""

    def score(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray | None:
        return _output(predict(test[inputs])) if is_oos(fold) else None

    return score


def load_folds(run: Any) -> list[Fold]:
    """The walk-forward folds recorded on a training run."""
    return [
        Fold(
            int(f["index"]),
            date.fromisoformat(f["train_start"]),
            date.fromisoformat(f["train_end"]),
            date.fromisoformat(f["test_start"]),
            date.fromisoformat(f["test_end"]),
            scheme=str(f.get("scheme", "walk_forward")),
        )
        for f in json.loads(run.data.tags["goldgate.folds"])
    ]


def _add_artifact(
    score: ModelScore, scorers: dict[str, Scorer], frame: pd.DataFrame, days: list[date], usecase: UseCase
) -> None:
    """Register a fixed model (champion or a registered version) for scoring on its out-of-sample folds."""
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(score.model_uri)
        inputs = _input_names(model)
        missing = [c for c in inputs if c not in frame.columns]
        if missing:
            raise EvaluationError(f"{score.model} needs columns {missing} that the feature table lacks")
        if score.train_end is None:
            raise EvaluationError(f"{score.model} has no recorded training window")
        score.signature = signature_of(model)
        if usecase.evaluation.scheme == "kfold":
            # Without a time order every fold may hold rows the model saw: its recipe is refitted on each fold.
            scorers[score.model] = refit_scorer(_recipe_of(score.run_id, inputs, usecase), inputs)
        else:
            is_oos = out_of_sample(days, date.fromisoformat(score.train_end), usecase.gap)
            scorers[score.model] = artifact_scorer(model.predict, inputs, is_oos)
        if score.role == "candidate":
            score.latency_p95_ms = measure_latency(model.predict, frame[inputs].head(1))
    except (EvaluationError, OSError, ValueError) as exc:
        score.error = str(exc)


def _recipe_of(run_id: str, inputs: list[str], usecase: UseCase) -> Callable[[pd.DataFrame], Any]:
    """A function fitting the model spec recorded on ``run_id`` to given training rows."""
    import mlflow

    from goldgate.train import fit_spec
    from goldgate.usecase import ModelSpec

    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    if "goldgate.spec" not in tags:
        raise EvaluationError(f"run {run_id} records no model spec to refit on k-fold folds")
    spec = ModelSpec.model_validate_json(tags["goldgate.spec"])

    def fit(train: pd.DataFrame) -> Any:
        return fit_spec(spec, train, inputs, usecase)[0]

    return fit


def evaluate_version(
    candidate: ModelScore,
    champion: ModelScore | None,
    frame: pd.DataFrame,
    usecase: UseCase,
    dataset_version: dict[str, int],
) -> tuple[Evaluation, pd.DataFrame]:
    """Backtest a registered version against a refitted baseline and the champion, on folds neither has seen."""
    from goldgate.backtest import distinct_days
    from goldgate.train import model_inputs, plan_folds

    folds = plan_folds(frame, usecase)
    days = distinct_days(frame[usecase.time])
    spec = usecase.models.baseline
    inputs = model_inputs(spec, model_feature_columns(list(frame.columns), usecase))
    baseline = ModelScore(spec.name, "baseline", "", "", train_end=None)

    def fit(train: pd.DataFrame) -> Any:
        from goldgate.train import fit_spec

        return fit_spec(spec, train, inputs, usecase)[0]

    scorers: dict[str, Scorer] = {spec.name: refit_scorer(fit, inputs)}
    scores = [baseline, candidate]
    _add_artifact(candidate, scorers, frame, days, usecase)
    if champion is not None:
        _add_artifact(champion, scorers, frame, days, usecase)
        scores.append(champion)
    evaluation, predictions = _backtest(
        frame, folds, scorers, scores, usecase, candidate.run_id, dataset_version, candidate.model
    )
    log.info("version backtest over %d folds: %s", len(folds), describe(evaluation))
    return evaluation, predictions


def _backtest(
    frame: pd.DataFrame,
    folds: list[Fold],
    scorers: dict[str, Scorer],
    scores: list[ModelScore],
    usecase: UseCase,
    run_id: str,
    dataset_version: dict[str, int],
    rows_of: str,
) -> tuple[Evaluation, pd.DataFrame]:
    """Run the scorers over the folds, fill every score and compare candidates; ``rows_of`` names the row count."""
    predictions = run_backtest(frame, folds, scorers, usecase)
    fill_scores(scores, predictions, usecase.task)
    evaluation = Evaluation(
        training_run_id=run_id,
        use_case=usecase.name,
        dataset_version=dataset_version,
        primary_metric=usecase.evaluation.primary_metric,
        folds=[f.as_dict() for f in folds],
        rows=int((predictions["model"] == rows_of).sum()) if len(predictions) else 0,
        scores=scores,
        comparisons=compare_all(predictions, scores, usecase),
        task=usecase.task,
        classes=[c.removeprefix(PROB_PREFIX) for c in prob_columns(predictions)],
    )
    return evaluation, predictions


def _input_names(model: Any) -> list[str]:
    schema = model.metadata.get_input_schema()
    return list(schema.input_names()) if schema is not None else []


def evaluate_training_run(
    run: Any, frame: pd.DataFrame, usecase: UseCase, champion: ModelScore | None
) -> tuple[Evaluation, pd.DataFrame]:
    """Backtest every model of a training run and the champion; returns the evaluation and the predictions."""
    import mlflow

    from goldgate.backtest import distinct_days
    from goldgate.train import fit_spec
    from goldgate.usecase import ModelSpec

    client = mlflow.MlflowClient()
    folds = load_folds(run)
    days = distinct_days(frame[usecase.time])
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    scorers: dict[str, Scorer] = {}
    scores: list[ModelScore] = []
    _, last_test = fold_rows(frame, folds[-1], usecase.time)
    for child in sorted(children, key=lambda r: r.info.start_time):
        if child.data.tags.get("goldgate.kind") != "model":
            continue
        spec = ModelSpec.model_validate_json(child.data.tags["goldgate.spec"])
        model = mlflow.pyfunc.load_model(child.data.tags["goldgate.model_uri"])
        inputs = _input_names(model)
        score = ModelScore(
            spec.name,
            child.data.tags["goldgate.role"],
            child.info.run_id,
            child.data.tags["goldgate.model_uri"],
            signature=signature_of(model),
            train_end=str(folds[-1].train_end),
        )
        if score.role == "candidate" and not last_test.empty:
            score.latency_p95_ms = measure_latency(model.predict, last_test[inputs].head(1))

        def fit(train: pd.DataFrame, spec: ModelSpec = spec, inputs: list[str] = inputs) -> Any:
            return fit_spec(spec, train, inputs, usecase)[0]

        scorers[spec.name] = refit_scorer(fit, inputs, model.predict, folds[-1].index)
        scores.append(score)
    if champion is not None:
        _add_artifact(champion, scorers, frame, days, usecase)
        scores.append(champion)
    evaluation, predictions = _backtest(
        frame, folds, scorers, scores, usecase, run.info.run_id, dataset_version_of(run), scores[0].model
    )
    log.info("%s over %d folds: %s", folds[0].scheme.replace("_", "-"), len(folds), describe(evaluation))
    return evaluation, predictions


def log_evaluation(evaluation: Evaluation, predictions: pd.DataFrame) -> None:
    """Per-fold metrics on every model run; the record, predictions and backtest plot on the training run."""
    import tempfile
    from pathlib import Path

    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    for s in evaluation.scores:
        if s.role == "champion" or not s.metrics:
            continue
        # backtest_* pools every fold; holdout_* is the last fold, the window the logged model never saw.
        metrics = [Metric(f"backtest_{k}", v, now, 0) for k, v in s.metrics.items()]
        metrics += [Metric(f"holdout_{k}", v, now, 0) for k, v in s.fold_metrics[-1].items() if k != "fold"]
        per_fold = {
            "regression": ("rmse", "mae"),
            "multiclass": ("log_loss", "brier", "accuracy", "macro_f1", "ece"),
        }.get(evaluation.task, ("brier", "log_loss", "roc_auc", "ece"))
        metrics += [Metric(f"fold_{k}", f[k], now, int(f["fold"])) for f in s.fold_metrics for k in per_fold if k in f]
        client.log_batch(s.run_id, metrics=metrics)
    run_id = evaluation.training_run_id
    client.log_dict(run_id, evaluation.to_dict(), EVALUATION_FILE)
    fig = plot_backtest(evaluation)
    client.log_figure(run_id, fig, PLOT_FILE)
    plt.close(fig)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PREDICTIONS_FILE
        predictions.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path))
