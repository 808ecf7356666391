"""Fit the baseline and the candidates on the training window; every model is an MLflow run."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from importlib import metadata

import pandas as pd

from goldgate.features import feature_columns
from goldgate.metrics import regression_metrics
from goldgate.models import build_model
from goldgate.settings import Settings
from goldgate.split import Split, apply_split, holdout_split
from goldgate.tracking import git_sha
from goldgate.usecase import ModelSpec, UseCase

log = logging.getLogger(__name__)

TRAINING_KIND = "training"
MODEL_KIND = "model"
# goldgate's own estimators, which MLflow's skops serializer must be told are safe to load.
TRUSTED_TYPES = [
    "goldgate.models.Persistence",
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
]


@dataclass
class TrainedRun:
    run_id: str
    model: str
    role: str
    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingResult:
    parent_run_id: str
    split: Split
    dataset_version: dict[str, int]
    runs: list[TrainedRun]


def model_inputs(spec: ModelSpec, all_features: list[str]) -> list[str]:
    """The columns a model reads: its own list from YAML, else every feature."""
    return list(spec.features) or list(all_features)


def prepare_frame(features: pd.DataFrame, usecase: UseCase) -> pd.DataFrame:
    """Rows where the target and every model input are known, so all models see the same rows."""
    cols = feature_columns(list(features.columns), usecase.target)
    used = sorted(
        {c for m in [usecase.models.baseline, *usecase.models.candidates] for c in model_inputs(m, cols)}
    )
    missing = [c for c in used if c not in features.columns]
    if missing:
        raise ValueError(f"{usecase.tables.features}: model inputs {missing} are not feature columns")
    return features.dropna(subset=[*used, usecase.target.name]).reset_index(drop=True)


def _pip_requirements() -> list[str]:
    # Explicit requirements skip MLflow's slow environment inference when logging models.
    pkgs = ["scikit-learn", "lightgbm", "pandas", "numpy", "goldgate"]
    return [f"{p}=={metadata.version(p)}" for p in pkgs]


def train_models(
    frame: pd.DataFrame,
    usecase: UseCase,
    settings: Settings,
    dataset_version: dict[str, int],
    experiment_id: str,
) -> TrainingResult:
    """Fit every model on the training window and log each as a child run of one training run."""
    import mlflow
    from mlflow.models import infer_signature

    split = holdout_split(frame[usecase.time], usecase.evaluation.holdout_days, usecase.gap)
    train, _ = apply_split(frame, split, usecase.time)
    all_features = feature_columns(list(frame.columns), usecase.target)
    tags = {
        "use_case": usecase.name,
        "env": settings.env,
        "owner": settings.owner,
        "git_sha": git_sha(),
        "dataset_version": json.dumps(dataset_version, sort_keys=True),
    }
    runs: list[TrainedRun] = []
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{usecase.name}-training",
        tags={**tags, "goldgate.kind": TRAINING_KIND},
    ) as parent:
        mlflow.log_params({**split.as_params(), "train_rows": len(train), "seed": usecase.models.seed})
        specs = [("baseline", usecase.models.baseline)] + [
            ("candidate", c) for c in usecase.models.candidates
        ]
        for role, spec in specs:
            inputs = model_inputs(spec, all_features)
            X, y = train[inputs], train[usecase.target.name]  # noqa: N806
            with mlflow.start_run(
                experiment_id=experiment_id,
                run_name=f"{usecase.name}-{spec.name}",
                nested=True,
                tags={
                    **tags,
                    "goldgate.kind": MODEL_KIND,
                    "goldgate.role": role,
                    "goldgate.model": spec.name,
                },
            ) as run:
                model = build_model(spec, usecase.models.seed).fit(X, y)
                metrics = {f"train_{k}": v for k, v in regression_metrics(y, model.predict(X)).items()}
                mlflow.log_params({"kind": spec.kind, "features": ",".join(inputs), **spec.params})
                mlflow.log_metrics(metrics)
                example = X.head(5)
                with warnings.catch_warnings():
                    # Calendar columns are integers and never missing; MLflow's hint about NaN ints is moot.
                    warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
                    signature = infer_signature(example, model.predict(example))
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=signature,
                    input_example=example,
                    pip_requirements=_pip_requirements(),
                    skops_trusted_types=TRUSTED_TYPES,
                )
                mlflow.set_tag("goldgate.model_uri", info.model_uri)
                runs.append(TrainedRun(run.info.run_id, spec.name, role, info.model_uri, metrics))
                log.info("trained %s (%s) on %d rows", spec.name, role, len(X))
    return TrainingResult(parent.info.run_id, split, dataset_version, runs)
