"""Optuna search for one candidate inside a training window: the last dates of that window validate.

Because each walk-forward fold tunes on its own training rows, the test windows never inform the search.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from goldgate.backtest import Fold, distinct_days, fold_rows
from goldgate.metrics import output_metrics
from goldgate.models import build_model
from goldgate.usecase import Dimension, ModelSpec, UseCase

log = logging.getLogger(__name__)


class TuningError(ValueError):
    """The training window is too short to hold out a validation window."""


def suggest(trial: Any, name: str, dim: Dimension) -> Any:
    """One parameter value for a trial from its search dimension."""
    if dim.choices is not None:
        return trial.suggest_categorical(name, dim.choices)
    assert dim.low is not None
    assert dim.high is not None
    if dim.integer:
        return trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(name, dim.low, dim.high, log=dim.log)


def inner_split(train: pd.DataFrame, usecase: UseCase, validation_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit rows and validation rows inside a training window, with the use case's gap between them."""
    days = distinct_days(train[usecase.time])
    if len(days) < validation_days + usecase.gap + 20:
        raise TuningError(f"{len(days)} training dates cannot hold a {validation_days}-date validation window")
    fold = Fold(-1, days[0], days[-(validation_days + usecase.gap + 1)], days[-validation_days], days[-1])
    return fold_rows(train, fold, usecase.time)


def tune(spec: ModelSpec, train: pd.DataFrame, inputs: list[str], usecase: UseCase, log_trials: bool) -> dict[str, Any]:
    """Best parameters for ``spec`` on ``train``; with ``log_trials`` every trial is a nested MLflow run."""
    import optuna

    assert spec.hpo is not None
    hpo, target, metric = spec.hpo, usecase.target.name, usecase.evaluation.primary_metric
    fit_rows, val_rows = inner_split(train, usecase, hpo.validation_days)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        params = {name: suggest(trial, name, dim) for name, dim in hpo.space.items()}
        model = build_model(
            spec.model_copy(update={"params": {**spec.params, **params}}),
            usecase.models.seed,
            usecase.models.threads,
            usecase.task == "multiclass",
        )
        model.fit(fit_rows[inputs], fit_rows[target])
        value = output_metrics(usecase.task, val_rows[target].to_numpy(), model.predict(val_rows[inputs]))[metric]
        if log_trials:
            import mlflow

            # A nested run goes to the active experiment unless told: keep trials beside their parent run.
            parent = mlflow.active_run()
            with mlflow.start_run(
                experiment_id=parent.info.experiment_id if parent is not None else None,
                run_name=f"{spec.name}-trial-{trial.number}",
                nested=True,
                tags={"goldgate.kind": "trial", "goldgate.model": spec.name},
            ):
                mlflow.log_params(params)
                mlflow.log_metric(f"validation_{metric}", value)
        return value

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=usecase.models.seed))
    study.optimize(objective, n_trials=hpo.trials, timeout=hpo.timeout_seconds)
    log.info("tuned %s: %d trials, best validation %s %.5g", spec.name, len(study.trials), metric, study.best_value)
    return dict(study.best_params)
