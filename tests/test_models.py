"""Model families: the persistence baseline and build_model for every kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor
from sklearn.base import clone
from sklearn.linear_model import LinearRegression

from goldgate.models import Persistence, build_model
from goldgate.usecase import ModelSpec


def data(n: int = 80, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    xs = pd.DataFrame({"rv_5": rng.uniform(0.05, 0.2, n), "rv_20": rng.uniform(0.05, 0.2, n)})
    y = pd.Series(0.6 * xs.rv_5 + 0.4 * xs.rv_20 + rng.normal(0, 0.001, n))
    return xs, y


def test_persistence_predicts_its_column() -> None:
    xs, y = data()
    model = Persistence(column="rv_20").fit(xs, y)
    pred = model.predict(xs)
    assert pred.dtype == np.float64
    np.testing.assert_array_equal(pred, xs.rv_20.to_numpy())
    assert model.n_features_in_ == 2
    assert list(model.feature_names_in_) == ["rv_5", "rv_20"]


def test_persistence_defaults_to_rv_5() -> None:
    xs, y = data()
    np.testing.assert_array_equal(Persistence().fit(xs, y).predict(xs), xs.rv_5.to_numpy())


def test_persistence_errors_when_its_column_is_missing() -> None:
    xs, y = data()
    with pytest.raises(ValueError, match="needs column 'rv_60'"):
        Persistence(column="rv_60").fit(xs, y)
    fitted = Persistence(column="rv_5").fit(xs, y)
    with pytest.raises(KeyError):
        fitted.predict(xs.drop(columns="rv_5"))


def test_persistence_is_a_cloneable_sklearn_estimator() -> None:
    model = clone(Persistence(column="rv_20"))
    assert model.get_params() == {"column": "rv_20"}


def spec(kind: str, features: list[str] | None = None, **params: object) -> ModelSpec:
    return ModelSpec(name=kind, kind=kind, features=features or [], params=params)


def test_build_persistence_uses_the_first_feature() -> None:
    model = build_model(spec("persistence", ["rv_20", "rv_5"]), seed=1)
    assert isinstance(model, Persistence)
    assert model.column == "rv_20"
    assert build_model(spec("persistence"), seed=1).column == "rv_5"


def test_build_har_linear_passes_params() -> None:
    model = build_model(spec("har_linear", ["rv_5", "rv_20"], fit_intercept=False), seed=1)
    assert isinstance(model, LinearRegression)
    assert model.fit_intercept is False
    xs, y = data()
    fitted = model.fit(xs, y)
    np.testing.assert_allclose(fitted.coef_, [0.6, 0.4], atol=0.05)


def test_build_lightgbm_is_seeded_and_params_override_defaults() -> None:
    model = build_model(spec("lightgbm", n_estimators=7, n_jobs=1), seed=123)
    assert isinstance(model, LGBMRegressor)
    params = model.get_params()
    assert params["random_state"] == 123
    assert params["deterministic"] is True
    assert params["n_estimators"] == 7
    assert params["n_jobs"] == 1  # the use case's params win over the defaults
    xs, y = data()
    assert model.fit(xs, y).predict(xs).shape == (len(xs),)


def test_lightgbm_with_the_same_seed_is_reproducible() -> None:
    xs, y = data()
    a = build_model(spec("lightgbm", n_estimators=10, min_child_samples=5), seed=7).fit(xs, y).predict(xs)
    b = build_model(spec("lightgbm", n_estimators=10, min_child_samples=5), seed=7).fit(xs, y).predict(xs)
    np.testing.assert_array_equal(a, b)


def test_unknown_kind_is_rejected() -> None:
    rogue = ModelSpec.model_construct(name="x", kind="xgboost", features=[], params={})
    with pytest.raises(ValueError, match="unknown model kind 'xgboost'"):
        build_model(rogue, seed=1)
