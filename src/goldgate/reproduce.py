"""Rebuild a training run from what it recorded: Delta versions (time travel), folds, parameters and seed.

A reproduction passes only when the rebuilt features equal the stored ones and every retrained model gives
exactly the same predictions and metrics as the logged model, bit for bit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from goldgate.backtest import fold_rows
from goldgate.context import Context
from goldgate.evaluate import dataset_version_of, load_folds
from goldgate.features import build_feature_table
from goldgate.metrics import output_metrics
from goldgate.train import MODEL_KIND, TRAINING_KIND, fit_spec, prepare_frame
from goldgate.usecase import ModelSpec, UseCase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    matched: bool
    detail: str


@dataclass
class Reproduction:
    run_id: str
    dataset_version: dict[str, int]
    checks: list[Check] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return bool(self.checks) and all(c.matched for c in self.checks)


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def compare_frames(stored: pd.DataFrame, rebuilt: pd.DataFrame, keys: list[str] | None = None) -> Check:
    """Exact equality of two feature tables (same rows, columns, dtypes and values; NaN equals NaN)."""
    keys = keys or ["currency", "date"]
    a = _sorted(stored, keys)
    if set(rebuilt.columns) != set(stored.columns):
        return Check("features", False, f"columns differ: {sorted(set(rebuilt.columns) ^ set(stored.columns))}")
    b = _sorted(rebuilt[list(stored.columns)], keys)
    if len(a) != len(b):
        return Check("features", False, f"{len(b)} rebuilt rows vs {len(a)} stored")
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError as exc:
        return Check("features", False, f"values differ: {str(exc).splitlines()[0]}")
    return Check("features", True, f"{len(a):,} rows x {len(a.columns)} columns identical")


def _training_run(client: Any, run_id: str) -> tuple[Any, list[Any]]:
    run = client.get_run(run_id)
    kind = run.data.tags.get("goldgate.kind")
    if kind == TRAINING_KIND:
        children = client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
        )
        return run, [c for c in children if c.data.tags.get("goldgate.kind") == MODEL_KIND]
    if kind == MODEL_KIND:
        return client.get_run(run.data.tags["mlflow.parentRunId"]), [run]
    raise ValueError(f"run {run_id} is neither a goldgate training run nor a model run")


def _recorded_usecase(usecase: UseCase, training: Any) -> UseCase:
    """The use case with the seed the run recorded (the YAML may have changed since)."""
    seed = int(training.data.params.get("seed", usecase.models.seed))
    return usecase.model_copy(update={"models": usecase.models.model_copy(update={"seed": seed})})


def retrain_check(child: Any, train: pd.DataFrame, test: pd.DataFrame, usecase: UseCase) -> list[Check]:
    """Refit one logged model from its recorded spec and parameters; compare predictions and metrics."""
    import mlflow

    spec = ModelSpec.model_validate_json(child.data.tags["goldgate.spec"])
    recorded = json.loads(child.data.tags.get("goldgate.fitted_params", "null")) or spec.params
    spec = spec.model_copy(update={"params": recorded, "hpo": None})
    inputs = child.data.params["features"].split(",")
    model, _ = fit_spec(spec, train, inputs, usecase)
    logged = mlflow.pyfunc.load_model(child.data.tags["goldgate.model_uri"])
    new, old = np.asarray(model.predict(test[inputs])), np.asarray(logged.predict(test[inputs]))
    same = new.shape == old.shape and bool(np.array_equal(new, old))
    diff = float(np.max(np.abs(new - old))) if new.shape == old.shape and len(new) else float("nan")
    target = usecase.target.name
    train_metrics = {
        f"train_{k}": v for k, v in output_metrics(usecase.task, train[target], model.predict(train[inputs])).items()
    }
    logged_metrics = {k: child.data.metrics.get(k) for k in train_metrics}
    differing = [
        f"{k} {v!r} (logged {logged_metrics[k]!r})" for k, v in train_metrics.items() if logged_metrics[k] != v
    ]
    return [
        Check(f"{spec.name}: predictions", same, f"{len(new):,} holdout rows, max |difference| {diff:.3g}"),
        Check(
            f"{spec.name}: metrics",
            not differing,
            "; ".join(differing) or f"{', '.join(train_metrics)} identical to the logged values",
        ),
    ]


def reproduce_run(ctx: Context, run_id: str) -> Reproduction:
    """Rebuild features by time travel and retrain every model of a run; report what matches exactly."""
    client = ctx.mlflow_client()
    training, children = _training_run(client, run_id)
    uc = _recorded_usecase(ctx.usecase, training)
    versions = dataset_version_of(training)
    result = Reproduction(training.info.run_id, versions)
    stored = ctx.lake.read(uc.tables.features, versions[uc.tables.features]).to_pandas()
    frame = stored
    if uc.tables.gold in versions:
        gold = ctx.lake.read(uc.tables.gold, versions[uc.tables.gold])
        rebuilt = build_feature_table(gold, uc).to_pandas()
        result.checks.append(compare_frames(stored, rebuilt, [uc.entity, uc.time]))
        frame = rebuilt
    else:
        result.checks.append(Check("features", False, f"run records no version of {uc.tables.gold}"))
    frame = prepare_frame(frame, uc)
    train, test = fold_rows(frame, load_folds(training)[-1], uc.time)
    for child in sorted(children, key=lambda r: r.info.start_time):
        result.checks.extend(retrain_check(child, train, test, uc))
    log.info("reproduced %s: %s", run_id, "match" if result.matched else "MISMATCH")
    return result
