"""Score every model of a training run, and the current champion, on the same holdout rows."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from goldgate.metrics import regression_metrics
from goldgate.split import Split, apply_split
from goldgate.usecase import UseCase

log = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"


class EvaluationError(RuntimeError):
    """Nothing to evaluate, or the recorded inputs cannot be found."""


@dataclass
class ModelScore:
    model: str
    role: str  # baseline | candidate | champion
    run_id: str
    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    version: str | None = None
    error: str | None = None


@dataclass
class Evaluation:
    training_run_id: str
    use_case: str
    dataset_version: dict[str, int]
    split: dict[str, str]
    rows: int
    primary_metric: str
    scores: list[ModelScore]

    def by_role(self, role: str) -> list[ModelScore]:
        return [s for s in self.scores if s.role == role]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        scores = [ModelScore(**s) for s in data.pop("scores")]
        return cls(scores=scores, **data)


def predict_with(model_uri: str, test: pd.DataFrame) -> Any:
    """Predictions of a logged model on rows, selecting the inputs its signature declares."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    inputs = schema.input_names() if schema is not None else list(test.columns)
    missing = [c for c in inputs if c not in test.columns]
    if missing:
        raise EvaluationError(f"model {model_uri} needs columns {missing} that the feature table lacks")
    return model.predict(test[inputs])


def score_model(score: ModelScore, test: pd.DataFrame, target: str) -> ModelScore:
    """Fill ``score.metrics`` from the holdout rows (or ``score.error`` when the model cannot be scored)."""
    try:
        score.metrics = regression_metrics(test[target].to_numpy(), predict_with(score.model_uri, test))
    except EvaluationError as exc:
        score.error = str(exc)
    return score


def evaluate_run(
    training_run: Any, frame: pd.DataFrame, usecase: UseCase, champion: ModelScore | None
) -> Evaluation:
    """Holdout metrics for the baseline, every candidate and the champion, all on identical rows."""
    import mlflow

    split = Split.from_params(training_run.data.params)
    _, test = apply_split(frame, split, usecase.time)
    if test.empty:
        raise EvaluationError(
            f"holdout {split.test_start}..{split.test_end} has no rows in the feature table"
        )
    client = mlflow.MlflowClient()
    children = client.search_runs(
        [training_run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{training_run.info.run_id}'",
    )
    scores = [
        ModelScore(
            r.data.tags["goldgate.model"],
            r.data.tags["goldgate.role"],
            r.info.run_id,
            r.data.tags["goldgate.model_uri"],
        )
        for r in sorted(children, key=lambda r: r.info.start_time)
    ]
    if champion is not None:
        scores.append(champion)
    for s in scores:
        score_model(s, test, usecase.target.name)
        if s.role != "champion" and s.metrics:
            client.log_batch(
                s.run_id,
                metrics=[mlflow.entities.Metric(f"holdout_{k}", v, 0, 0) for k, v in s.metrics.items()],
            )
    log.info("evaluated %d models on %d holdout rows", len(scores), len(test))
    return Evaluation(
        training_run_id=training_run.info.run_id,
        use_case=usecase.name,
        dataset_version=json.loads(training_run.data.tags["dataset_version"]),
        split=split.as_params(),
        rows=len(test),
        primary_metric=usecase.evaluation.primary_metric,
        scores=scores,
    )
