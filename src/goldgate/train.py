"""Fit the baseline and the candidates on the final training window; every model is an MLflow run."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pandas as pd

from goldgate.backtest import FOLD_COLUMN, Fold, assign_kfold, distinct_days, fold_rows, kfold_folds, walk_forward_folds
from goldgate.features import model_feature_columns
from goldgate.metrics import output_metrics
from goldgate.models import build_model
from goldgate.settings import Settings
from goldgate.tracking import git_sha
from goldgate.usecase import ModelSpec, UseCase

log = logging.getLogger(__name__)

TRAINING_KIND = "training"
MODEL_KIND = "model"
# goldgate's own estimators and LightGBM's, which MLflow's skops serializer must be told are safe to load.
TRUSTED_TYPES = [
    "goldgate.models.Persistence",
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "goldgate.models.ProbabilityClassifier",
    "goldgate.models.RateBaseline",
    "goldgate.models.MeanBaseline",
    "goldgate.models.ClassPrior",
    "goldgate.models.ClassProbabilities",
    "lightgbm.sklearn.LGBMClassifier",
    "sklearn.tree._tree.Tree",
    "numpy.dtype",
]


@dataclass
class TrainedRun:
    run_id: str
    model: str
    role: str
    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    # The fitted estimator and its input columns, kept in memory for the prediction profile (not logged).
    estimator: Any = field(default=None, repr=False, compare=False)
    inputs: list[str] = field(default_factory=list, repr=False, compare=False)


@dataclass
class TrainingResult:
    parent_run_id: str
    folds: list[Fold]
    dataset_version: dict[str, int]
    runs: list[TrainedRun]

    @property
    def final(self) -> Fold:
        """The last fold: its training window is the final models' training window."""
        return self.folds[-1]


def model_inputs(spec: ModelSpec, all_features: list[str]) -> list[str]:
    """The columns a model reads: its own list from YAML, else every feature."""
    return list(spec.features) or list(all_features)


def prepare_frame(features: pd.DataFrame, usecase: UseCase) -> pd.DataFrame:
    """Rows where the target and every model input (only the baseline's, when models may impute) are known.

    Rows are put in (time, entity) order: a parallel scan returns them in any order, and tree learners are
    only bit-for-bit reproducible on the same rows in the same order.
    """
    cols = model_feature_columns(list(features.columns), usecase)
    specs = [usecase.models.baseline, *usecase.models.candidates]
    used = sorted({c for m in specs for c in model_inputs(m, cols)})
    missing = [c for c in used if c not in features.columns]
    if missing:
        raise ValueError(f"{usecase.tables.features}: model inputs {missing} are not feature columns")
    # With allow_missing the models impute; only the baseline's own inputs must be present, so that every model
    # is still scored on the same rows.
    required = model_inputs(usecase.models.baseline, cols) if usecase.models.allow_missing else used
    if usecase.models.baseline.kind in ("mean", "prior"):
        required = []  # a constant baseline reads no input
    known = features.dropna(subset=[*required, usecase.target.name])
    known = known.sort_values([usecase.time, usecase.entity], kind="stable").reset_index(drop=True)
    if usecase.evaluation.scheme == "kfold":
        classified = usecase.task in ("classification", "multiclass")
        labels = known[usecase.target.name] if classified else None
        known[FOLD_COLUMN] = assign_kfold(known[usecase.entity], labels, usecase.evaluation.folds, usecase.models.seed)
    return known


def plan_folds(frame: pd.DataFrame, usecase: UseCase) -> list[Fold]:
    """The walk-forward folds of the use case over the frame's dates."""
    ev = usecase.evaluation
    if ev.scheme == "kfold":
        days = distinct_days(frame[usecase.time])
        return kfold_folds(ev.folds, days[0], days[-1])
    return walk_forward_folds(
        distinct_days(frame[usecase.time]),
        ev.folds,
        ev.test_days,
        usecase.gap,
        ev.window,
        ev.train_days,
        ev.min_train_days,
    )


def fit_spec(
    spec: ModelSpec, train: pd.DataFrame, inputs: list[str], usecase: UseCase, log_trials: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Fit one model spec on training rows, tuning it first on those rows alone when the spec asks for HPO.

    Returns the fitted model and the parameters it was built with (the spec's, plus any tuned ones).
    """
    params = dict(spec.params)
    if spec.hpo is not None:
        from goldgate.hpo import tune

        params.update(tune(spec, train, inputs, usecase, log_trials=log_trials))
    chosen = spec.model_copy(update={"params": params, "hpo": None})
    model = build_model(chosen, usecase.models.seed, usecase.models.threads, usecase.task == "multiclass")
    return model.fit(train[inputs], train[usecase.target.name]), params


def _pip_requirements() -> list[str]:
    # Explicit requirements skip MLflow's slow environment inference when logging models.
    pkgs = ["scikit-learn", "lightgbm", "pandas", "numpy", "goldgate"]
    return [f"{p}=={metadata.version(p)}" for p in pkgs]


def _log_model(model: Any, X: pd.DataFrame) -> Any:  # noqa: N803
    import mlflow
    from mlflow.models import infer_signature

    example = X.head(5)
    with warnings.catch_warnings():
        # Calendar columns are integers and never missing; MLflow's hint about NaN integers is moot.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(example, model.predict(example))
    return mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=_pip_requirements(),
        skops_trusted_types=TRUSTED_TYPES,
    )


def train_models(
    frame: pd.DataFrame,
    usecase: UseCase,
    settings: Settings,
    dataset_version: dict[str, int],
    experiment_id: str,
) -> TrainingResult:
    """Fit every model on the final training window and log each as a child run of one training run."""
    import mlflow

    folds = plan_folds(frame, usecase)
    train, _ = fold_rows(frame, folds[-1], usecase.time)
    all_features = model_feature_columns(list(frame.columns), usecase)
    tags = {
        "use_case": usecase.name,
        "env": settings.env,
        "owner": settings.owner,
        "git_sha": git_sha(),
        "dataset_version": json.dumps(dataset_version, sort_keys=True),
    }
    runs: list[TrainedRun] = []
    parent_tags = {
        **tags,
        "goldgate.kind": TRAINING_KIND,
        "goldgate.folds": json.dumps([f.as_dict() for f in folds]),
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{usecase.name}-training", tags=parent_tags) as parent:
        final = folds[-1]
        mlflow.log_params(
            {
                "train_start": str(final.train_start),
                "train_end": str(final.train_end),
                "test_start": str(final.test_start),
                "test_end": str(final.test_end),
                "gap_days": usecase.gap,
                "folds": len(folds),
                "window": usecase.evaluation.window,
                "train_rows": len(train),
                "seed": usecase.models.seed,
            }
        )
        specs = [("baseline", usecase.models.baseline)] + [("candidate", c) for c in usecase.models.candidates]
        for role, spec in specs:
            inputs = model_inputs(spec, all_features)
            X, y = train[inputs], train[usecase.target.name]  # noqa: N806
            run_tags = {
                **tags,
                "goldgate.kind": MODEL_KIND,
                "goldgate.role": role,
                "goldgate.model": spec.name,
                "goldgate.spec": spec.model_dump_json(),
            }
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=f"{usecase.name}-{spec.name}",
                nested=True,
                tags=run_tags,
            ) as run:
                model, params = fit_spec(spec, train, inputs, usecase, log_trials=True)
                mlflow.set_tag("goldgate.fitted_params", json.dumps(params, sort_keys=True, default=str))
                metrics = {f"train_{k}": v for k, v in output_metrics(usecase.task, y, model.predict(X)).items()}
                mlflow.log_params(
                    {
                        "kind": spec.kind,
                        "features": ",".join(inputs),
                        **{k: v for k, v in model.get_params().items() if _loggable(v)},
                    }
                )
                mlflow.log_metrics(metrics)
                info = _log_model(model, X)
                mlflow.set_tag("goldgate.model_uri", info.model_uri)
                runs.append(TrainedRun(run.info.run_id, spec.name, role, info.model_uri, metrics, model, inputs))
                log.info("trained %s (%s) on %d rows", spec.name, role, len(X))
    return TrainingResult(parent.info.run_id, folds, dataset_version, runs)


def _loggable(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))
