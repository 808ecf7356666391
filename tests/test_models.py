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


@pytest.mark.parametrize("kind", ["lightgbm", "lightgbm_classifier", "random_forest"])
def test_threads_reach_every_multithreaded_estimator_and_default_to_one(kind: str) -> None:
    def n_jobs(model: object) -> int:
        inner = getattr(model, "estimator", model)  # the classifiers are wrapped for calibration
        return int(inner.get_params()["n_jobs"])

    assert n_jobs(build_model(spec(kind), seed=1)) == 1
    assert n_jobs(build_model(spec(kind), seed=1, threads=3)) == 3
    assert n_jobs(build_model(spec(kind, n_jobs=2), seed=1, threads=3)) == 2  # a spec's own n_jobs wins


def test_build_lightgbm_is_seeded_and_params_override_defaults() -> None:
    model = build_model(spec("lightgbm", n_estimators=7, n_jobs=4), seed=123)
    assert isinstance(model, LGBMRegressor)
    params = model.get_params()
    assert params["random_state"] == 123
    assert params["deterministic"] is True
    assert params["n_estimators"] == 7
    assert params["n_jobs"] == 4  # the use case's params win over the defaults
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


def classification_data(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A signal in ``a``, noise in ``b``, and missing values in ``b``; outcomes drawn from a known logistic."""
    rng = np.random.default_rng(seed)
    xs = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    xs.loc[xs.index % 9 == 0, "b"] = np.nan
    y = pd.Series((rng.uniform(size=n) < 1 / (1 + np.exp(-2 * xs.a))).astype(float))
    return xs, y


@pytest.mark.parametrize("kind", ["logistic", "random_forest", "lightgbm_classifier"])
@pytest.mark.parametrize("calibration", ["none", "isotonic"])
def test_classifiers_predict_probabilities_that_rank_the_signal(kind: str, calibration: str) -> None:
    from sklearn.metrics import roc_auc_score

    xs, y = classification_data()
    model = build_model(ModelSpec(name=kind, kind=kind, calibration=calibration), seed=1).fit(xs[:1500], y[:1500])
    prob = model.predict(xs[1500:])
    assert prob.dtype == np.float64
    assert prob.shape == (500,)
    assert ((prob >= 0) & (prob <= 1)).all()
    np.testing.assert_allclose(model.predict_proba(xs[1500:]).sum(axis=1), 1.0)
    # The true model's AUC here is about 0.83; every family must find most of the signal.
    assert roc_auc_score(y[1500:], prob) > 0.75


def test_isotonic_calibration_is_fitted_on_the_latest_rows_only() -> None:
    from goldgate.models import ProbabilityClassifier

    xs, y = classification_data(1000)
    spec = ModelSpec(name="lr", kind="logistic", calibration="isotonic", calibration_share=0.25)
    model = build_model(spec, seed=1)
    assert isinstance(model, ProbabilityClassifier)
    model.fit(xs, y)
    base = build_model(ModelSpec(name="lr", kind="logistic"), seed=1).fit(xs[:750], y[:750])
    # The classifier inside is the one fitted on the first 75% of rows; the isotonic map is monotone on top of it.
    np.testing.assert_allclose(model.model_.predict_proba(xs)[:, 1], base.predict(xs))
    order = np.argsort(base.predict(xs))
    assert (np.diff(model.predict(xs)[order]) >= -1e-12).all()


def test_a_classifier_refuses_one_outcome_and_calibration_without_both_outcomes() -> None:
    xs, _y = classification_data(200)
    with pytest.raises(ValueError, match="both outcomes"):
        build_model(ModelSpec(name="lr", kind="logistic"), seed=1).fit(xs, pd.Series(np.zeros(200)))
    late_positive_only = pd.Series(np.r_[np.zeros(100), np.ones(60), np.ones(40)])
    with pytest.raises(ValueError, match="calibration"):
        build_model(ModelSpec(name="lr", kind="logistic", calibration="isotonic"), seed=1).fit(xs, late_positive_only)


def test_prior_rate_baseline_passes_its_rate_through() -> None:
    xs = pd.DataFrame({"agent_prior_win_rate": [0.2, 0.6], "other": [1.0, 2.0]})
    model = build_model(ModelSpec(name="prior", kind="prior_rate", features=["agent_prior_win_rate"]), seed=0)
    np.testing.assert_array_equal(model.fit(xs, pd.Series([0.0, 1.0])).predict(xs), [0.2, 0.6])


def test_calibrated_prior_rate_baseline_maps_the_rate_to_the_label_scale() -> None:
    from goldgate.models import RateBaseline

    rng = np.random.default_rng(5)
    rate = rng.uniform(0.4, 0.9, 3000)
    # Lifetime win rate ~0.65, but only about a third of that happens within the label's window.
    y = pd.Series((rng.uniform(size=3000) < rate / 3).astype(float))
    xs = pd.DataFrame({"agent_win_rate": rate})
    xs.loc[:9, "agent_win_rate"] = np.nan
    spec = ModelSpec(name="prior", kind="prior_rate", features=["agent_win_rate"], calibration="isotonic")
    model = build_model(spec, seed=0)
    assert isinstance(model, RateBaseline)
    pred = model.fit(xs, y).predict(xs)
    assert abs(pred[10:].mean() - y.mean()) < 0.01  # calibrated in the large, unlike the raw rate (~0.65)
    np.testing.assert_allclose(pred[:10], y.mean())  # no rate: the base rate
    order = np.argsort(rate[10:])
    assert (np.diff(pred[10:][order]) >= -1e-12).all()
    with pytest.raises(ValueError, match="needs column"):
        RateBaseline("missing").fit(xs, y)


def test_calibrated_probabilities_are_never_certain() -> None:
    from goldgate.models import PROBABILITY_FLOOR

    xs, y = classification_data(600)
    # A separable signal: raw isotonic steps would reach exactly 0 and 1.
    y = pd.Series((xs.a > 0).astype(float))
    prob = build_model(ModelSpec(name="lr", kind="logistic", calibration="isotonic"), seed=1).fit(xs, y).predict(xs)
    assert prob.min() >= PROBABILITY_FLOOR
    assert prob.max() <= 1 - PROBABILITY_FLOOR


def _species(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Three classes, each around its own centre in two features (with a missing value)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["gentoo", "adelie", "chinstrap"], n)
    centre = {"adelie": (0.0, 0.0), "chinstrap": (3.0, 0.0), "gentoo": (0.0, 3.0)}
    xy = np.array([centre[c] for c in labels]) + rng.normal(0, 0.7, (n, 2))
    x = pd.DataFrame({"a": xy[:, 0], "b": xy[:, 1]})
    x.loc[3, "a"] = np.nan
    return x, pd.Series(labels, dtype="object")


def test_multiclass_prior_predicts_the_training_class_shares() -> None:
    from goldgate.models import ClassPrior

    x, y = _species()
    spec = ModelSpec(name="prior", kind="prior")
    model = build_model(spec, seed=0, multiclass=True)
    assert isinstance(model, ClassPrior)
    out = model.fit(x, y).predict(x.head(4))
    assert list(out.columns) == ["adelie", "chinstrap", "gentoo"]
    shares = y.value_counts(normalize=True)
    assert out.iloc[0].to_dict() == pytest.approx({c: shares[c] for c in out.columns})
    assert np.allclose(out.sum(axis=1), 1.0)


@pytest.mark.parametrize("kind", ["logistic", "random_forest", "lightgbm_classifier"])
def test_multiclass_candidates_predict_class_probabilities(kind: str) -> None:
    from goldgate.metrics import output_metrics
    from goldgate.models import ClassProbabilities

    x, y = _species()
    params = {"n_estimators": 30} if kind != "logistic" else {}
    model = build_model(ModelSpec(name=kind, kind=kind, params=params), seed=0, multiclass=True)
    assert isinstance(model, ClassProbabilities)
    out = model.fit(x.iloc[:180], y.iloc[:180]).predict(x.iloc[180:])
    assert list(out.columns) == ["adelie", "chinstrap", "gentoo"]
    assert np.allclose(out.sum(axis=1), 1.0)
    m = output_metrics("multiclass", y.iloc[180:], out)
    assert m["accuracy"] > 0.85
    assert m["log_loss"] < np.log(3) / 2  # far better than knowing nothing


def test_multiclass_logistic_is_multinomial_and_integer_labels_become_text() -> None:
    x, y = _species()
    codes = y.map({"adelie": 1, "chinstrap": 2, "gentoo": 10})
    model = build_model(ModelSpec(name="logistic", kind="logistic"), seed=0, multiclass=True).fit(x, codes)
    assert model.classes_ == ["1", "10", "2"]  # sorted as text, as the feature table holds them
    inner = model.model_.steps[-1][1].steps[-1][1]
    assert inner.coef_.shape == (3, 2)  # one row of coefficients per class: multinomial


def test_multiclass_refuses_regression_kinds_and_a_single_class() -> None:
    x, _ = _species()
    with pytest.raises(ValueError, match="not a multiclass model"):
        build_model(ModelSpec(name="linear", kind="linear"), seed=0, multiclass=True)
    model = build_model(ModelSpec(name="logistic", kind="logistic"), seed=0, multiclass=True)
    with pytest.raises(ValueError, match="at least two classes"):
        model.fit(x, pd.Series(["adelie"] * len(x)))
