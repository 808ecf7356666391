"""Optuna search inside a training window: the window's last dates validate, behind the use case's gap."""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from goldgate.hpo import TuningError, inner_split, suggest, tune
from goldgate.usecase import HPO, Dimension, ModelSpec, UseCase, parse_usecase
from mlflow_store import mlflow_store

TARGET = "target_rv_5d"
SPACE = {
    "num_leaves": Dimension(low=4, high=16, integer=True),
    "learning_rate": Dimension(low=0.05, high=0.3, log=True),
    "n_estimators": Dimension(choices=[5, 10, 20]),
}


def fx_usecase_dict() -> dict[str, Any]:
    """The bundled fx use case as plain YAML data, to adjust before validating."""
    data: dict[str, Any] = yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text())
    return data


def usecase(gap: int = 5, seed: int = 42) -> UseCase:
    data = fx_usecase_dict()
    data["evaluation"]["gap_days"] = gap
    data["models"]["seed"] = seed
    return parse_usecase(data)


def frame(n_days: int = 80, missing: dict[str, list[int]] | None = None, horizon: int = 5) -> pd.DataFrame:
    """Two currencies on business days; y depends on x1 and x2; target_end is the entity's date ``horizon`` ahead."""
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2023-01-02", periods=n_days)
    parts = []
    for entity in ("AAA", "BBB"):
        gone = set((missing or {}).get(entity, []))
        own = [d for i, d in enumerate(days) if i not in gone]
        x1, x2 = rng.normal(0, 1, len(own)), rng.normal(0, 1, len(own))
        part = pd.DataFrame({"currency": entity, "date": own, "x1": x1, "x2": x2})
        part[TARGET] = 2 * x1 - x2 + rng.normal(0, 0.1, len(own))
        part["target_end"] = part["date"].shift(-horizon)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def spec(trials: int = 3) -> ModelSpec:
    return ModelSpec(
        name="lgbm",
        kind="lightgbm",
        params={"min_child_samples": 5, "n_estimators": 10},
        hpo=HPO(trials=trials, validation_days=10, space=SPACE),
    )


def day_list(rows: pd.DataFrame) -> list[date]:
    return sorted(set(pd.to_datetime(rows["date"]).dt.date))


def test_inner_split_validates_on_the_last_dates_behind_the_gap() -> None:
    train = frame(80)
    days = day_list(train)
    fit, val = inner_split(train, usecase(gap=5), validation_days=10)
    assert day_list(val) == days[-10:]
    assert len(val) == 2 * 10
    assert max(day_list(fit)) == days[-16]  # 5 embargo dates between fit and validation
    assert not set(day_list(fit)) & set(day_list(val))
    assert (pd.to_datetime(fit["target_end"]) < pd.Timestamp(days[-10])).all()


def test_inner_split_purges_fit_rows_whose_label_reaches_the_validation_window() -> None:
    # BBB has no fixings at positions 65..67, so its label from position 64 ends at position 72
    train = frame(80, missing={"BBB": [65, 66, 67]})
    days = day_list(train)
    fit, val = inner_split(train, usecase(gap=5), validation_days=10)
    last = fit[pd.to_datetime(fit["date"]).dt.date == days[64]]
    assert list(last["currency"]) == ["AAA"]
    assert (pd.to_datetime(fit["target_end"]) < pd.Timestamp(days[70])).all()
    assert day_list(val) == days[70:]


def test_inner_split_gap_follows_the_use_case() -> None:
    train = frame(80)
    days = day_list(train)
    fit, _ = inner_split(train.drop(columns="target_end"), usecase(gap=8), validation_days=10)
    assert max(day_list(fit)) == days[-19]


def test_a_window_too_short_for_validation_and_gap_raises() -> None:
    uc = usecase(gap=5)
    # the fit part must keep 20 dates: 10 validation + 5 gap + 20 = 35
    inner_split(frame(35), uc, validation_days=10)
    with pytest.raises(TuningError, match="34 training dates cannot hold a 10-date validation window"):
        inner_split(frame(34), uc, validation_days=10)


def test_suggest_uses_the_right_distribution_for_each_dimension() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dims = {
        "leaves": Dimension(low=2, high=64, integer=True),
        "leaves_log": Dimension(low=2, high=64, integer=True, log=True),
        "rate": Dimension(low=0.1, high=0.9),
        "rate_log": Dimension(low=1e-4, high=1e-1, log=True),
        "boosting": Dimension(choices=["gbdt", "dart"]),
    }
    for _ in range(5):
        trial = study.ask()
        values = {name: suggest(trial, name, dim) for name, dim in dims.items()}
        dist = trial.distributions
        assert isinstance(dist["leaves"], optuna.distributions.IntDistribution)
        assert not dist["leaves"].log
        assert isinstance(dist["leaves_log"], optuna.distributions.IntDistribution)
        assert dist["leaves_log"].log
        assert isinstance(dist["rate"], optuna.distributions.FloatDistribution)
        assert not dist["rate"].log
        assert isinstance(dist["rate_log"], optuna.distributions.FloatDistribution)
        assert dist["rate_log"].log
        assert isinstance(dist["boosting"], optuna.distributions.CategoricalDistribution)
        assert dist["boosting"].choices == ("gbdt", "dart")
        assert (dist["rate_log"].low, dist["rate_log"].high) == (1e-4, 1e-1)
        assert isinstance(values["leaves"], int)
        assert 2 <= values["leaves"] <= 64
        assert isinstance(values["leaves_log"], int)
        assert 2 <= values["leaves_log"] <= 64
        assert isinstance(values["rate"], float)
        assert 0.1 <= values["rate"] <= 0.9
        assert 1e-4 <= values["rate_log"] <= 1e-1
        assert values["boosting"] in ("gbdt", "dart")
        study.tell(trial, 0.0)


def test_suggest_with_a_fixed_trial_returns_the_fixed_values() -> None:
    trial = optuna.trial.FixedTrial({"n": 7, "lr": 0.01, "kind": "dart"})
    assert suggest(trial, "n", Dimension(low=1, high=10, integer=True)) == 7
    assert suggest(trial, "lr", Dimension(low=1e-3, high=1.0, log=True)) == 0.01
    assert suggest(trial, "kind", Dimension(choices=["gbdt", "dart"])) == "dart"


def test_tune_returns_parameters_inside_the_space_and_is_deterministic() -> None:
    train, uc = frame(80), usecase()
    first = tune(spec(), train, ["x1", "x2"], uc, log_trials=False)
    assert set(first) == set(SPACE)
    assert isinstance(first["num_leaves"], int)
    assert 4 <= first["num_leaves"] <= 16
    assert 0.05 <= first["learning_rate"] <= 0.3
    assert first["n_estimators"] in (5, 10, 20)
    assert tune(spec(), train, ["x1", "x2"], uc, log_trials=False) == first


def test_tune_needs_a_long_enough_window() -> None:
    with pytest.raises(TuningError):
        tune(spec(), frame(30), ["x1", "x2"], usecase(), log_trials=False)


def test_every_trial_is_a_nested_mlflow_run(tmp_path: Path) -> None:
    import mlflow

    with mlflow_store(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        experiment = mlflow.create_experiment("hpo", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment, run_name="parent") as parent:
            best = tune(spec(trials=3), frame(80), ["x1", "x2"], usecase(), log_trials=True)
        client = mlflow.MlflowClient()
        children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        everything = client.search_runs([experiment])
    assert len(children) == 3
    assert len(everything) == 4  # the parent and its three trials, nothing else
    assert {c.data.tags["goldgate.kind"] for c in children} == {"trial"}
    assert {c.data.tags["goldgate.model"] for c in children} == {"lgbm"}
    assert sorted(c.info.run_name for c in children) == [f"lgbm-trial-{i}" for i in range(3)]
    for child in children:
        assert set(child.data.params) == set(SPACE)
        assert "validation_rmse" in child.data.metrics
    # the best parameters are those of the trial with the lowest validation error
    winner = min(children, key=lambda c: c.data.metrics["validation_rmse"])
    assert {k: str(v) for k, v in best.items()} == winner.data.params
