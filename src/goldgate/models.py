"""Model families, all sklearn estimators whose ``predict`` is the use case's prediction.

Regression: the persistence baseline, a HAR-style linear model and LightGBM. Classification (``predict`` returns
the probability of the positive class): a prior-rate baseline, logistic regression, a random forest and LightGBM,
each optionally calibrated by isotonic regression on the latest rows of its training set. Multiclass (``predict``
returns a frame with one probability column per class, named by the class, classes sorted): the class prior,
multinomial logistic regression, a random forest and LightGBM's multiclass objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import LinearRegression

from goldgate.usecase import MULTICLASS_KINDS, ModelSpec


class Persistence(RegressorMixin, BaseEstimator):
    """Predicts that the next value equals a trailing one (e.g. next-5-day vol = last-5-day vol)."""

    def __init__(self, column: str = "rv_5") -> None:
        self.column = column

    def fit(self, X: pd.DataFrame, y: Any = None) -> Persistence:  # noqa: N803 - sklearn convention
        if self.column not in X.columns:
            raise ValueError(f"persistence baseline needs column '{self.column}'")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return np.asarray(X[self.column], dtype="float64")


class MeanBaseline(RegressorMixin, BaseEstimator):
    """Predicts the training mean of the target: the mean for a regression, the base rate for a classifier."""

    def fit(self, X: pd.DataFrame, y: Any) -> MeanBaseline:  # noqa: N803
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.mean_ = float(np.mean(np.asarray(y, dtype="float64")))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return np.full(len(X), self.mean_, dtype="float64")


def linear_regression(params: dict[str, Any]) -> BaseEstimator:
    """Least squares on standardized inputs, missing values imputed with the training medians."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    imputer = SimpleImputer(strategy="median", keep_empty_features=True)
    return make_pipeline(imputer, StandardScaler(), LinearRegression(**params))


# Calibrated probabilities stay within [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR].
PROBABILITY_FLOOR = 0.005


class RateBaseline(RegressorMixin, BaseEstimator):
    """A prior rate (e.g. the agent's smoothed win rate) mapped to the label's own scale by isotonic regression.

    A win rate over a deal's whole life is not the chance of winning within 30 days; the monotone map keeps the
    baseline's ranking and makes its probabilities honest, so a candidate must beat a calibrated rival. Rows
    without the rate get the training base rate.
    """

    def __init__(self, column: str = "agent_win_rate") -> None:
        self.column = column

    def fit(self, X: pd.DataFrame, y: Any) -> RateBaseline:  # noqa: N803
        from sklearn.isotonic import IsotonicRegression

        if self.column not in X.columns:
            raise ValueError(f"prior-rate baseline needs column '{self.column}'")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        y = np.asarray(y, dtype="float64")
        rate = np.asarray(X[self.column], dtype="float64")
        known = ~np.isnan(rate)
        self.base_rate_ = float(y.mean())
        self.isotonic_ = IsotonicRegression(
            y_min=PROBABILITY_FLOOR, y_max=1 - PROBABILITY_FLOOR, out_of_bounds="clip"
        ).fit(rate[known], y[known])
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        rate = np.asarray(X[self.column], dtype="float64")
        out = np.full(len(rate), self.base_rate_)
        known = ~np.isnan(rate)
        if known.any():
            out[known] = self.isotonic_.predict(rate[known])
        return out


class ProbabilityClassifier(RegressorMixin, BaseEstimator):
    """A binary classifier whose ``predict`` is the probability of the positive class.

    Scoring, serving, monitoring and the gate all read one number per row; for a classifier that number is the
    probability. Missing inputs are imputed with the training medians unless the classifier handles them itself.
    ``calibration="isotonic"`` fits the classifier on the earliest rows and an isotonic map on the latest
    ``calibration_share`` of them (rows arrive in time order), so calibration is learned on later data, as in use.
    """

    def __init__(
        self,
        estimator: Any = None,
        impute: bool = True,
        calibration: str = "none",
        calibration_share: float = 0.2,
    ) -> None:
        self.estimator = estimator
        self.impute = impute
        self.calibration = calibration
        self.calibration_share = calibration_share

    def _pipeline(self) -> Any:
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        base = clone(self.estimator)
        return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), base) if self.impute else base

    def fit(self, X: pd.DataFrame, y: Any) -> ProbabilityClassifier:  # noqa: N803
        y = np.asarray(y, dtype="float64")
        if len(np.unique(y)) < 2:
            raise ValueError("a classifier needs both outcomes in its training rows")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.calibrator_ = None
        if self.calibration == "isotonic":
            cut = int(len(X) * (1 - self.calibration_share))
            fit_y, cal_y = y[:cut], y[cut:]
            if min(len(np.unique(fit_y)), len(np.unique(cal_y))) < 2:
                raise ValueError("isotonic calibration needs both outcomes before and after the calibration cut")
            self.model_ = self._pipeline().fit(X.iloc[:cut], fit_y)
            from sklearn.isotonic import IsotonicRegression

            raw = self.model_.predict_proba(X.iloc[cut:])[:, 1]
            # A bin of the calibration rows that happened to be all wins (or all losses) would map to exactly 1 (0):
            # no open deal is certain, and a certain miss costs an unbounded log loss.
            self.calibrator_ = IsotonicRegression(
                y_min=PROBABILITY_FLOOR, y_max=1 - PROBABILITY_FLOOR, out_of_bounds="clip"
            ).fit(raw, cal_y)
        else:
            self.model_ = self._pipeline().fit(X, y)
        _predict_in_one_job(self.model_)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        p = np.asarray(self.model_.predict_proba(X)[:, 1], dtype="float64")
        if self.calibrator_ is not None:
            p = np.asarray(self.calibrator_.predict(p), dtype="float64")
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.predict_proba(X)[:, 1]


def class_frame(prob: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Class probabilities as a frame with one column per class, named by the class."""
    return pd.DataFrame(np.asarray(prob, dtype="float64"), columns=list(classes))


def _classes_of(y: Any) -> tuple[list[str], np.ndarray]:
    """The sorted distinct labels (as text) and each row's position among them."""
    labels = pd.Series(y, dtype="object").astype(str).to_numpy()
    classes = sorted(set(labels.tolist()))
    return classes, np.searchsorted(np.asarray(classes, dtype=object), labels)


class ClassPrior(BaseEstimator):
    """Multiclass baseline: every row gets the class frequencies of the training rows."""

    def fit(self, X: pd.DataFrame, y: Any) -> ClassPrior:  # noqa: N803
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        classes, codes = _classes_of(y)
        if not classes:
            raise ValueError("the class prior needs at least one labelled row")
        self.classes_ = classes
        self.prior_ = np.bincount(codes, minlength=len(classes)).astype("float64") / len(codes)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return np.tile(self.prior_, (len(X), 1))

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        return class_frame(self.predict_proba(X), self.classes_)


class ClassProbabilities(BaseEstimator):
    """A multiclass classifier whose ``predict`` is a frame of class probabilities, one column per class.

    The estimator is fitted on each row's class position (the classes are the sorted distinct training labels, as
    text), so the logged model holds no label values beyond ``classes_``. Missing inputs are imputed with the
    training medians unless the estimator handles them itself. No calibration: isotonic maps are binary.
    """

    def __init__(self, estimator: Any = None, impute: bool = True) -> None:
        self.estimator = estimator
        self.impute = impute

    def fit(self, X: pd.DataFrame, y: Any) -> ClassProbabilities:  # noqa: N803
        classes, codes = _classes_of(y)
        if len(classes) < 2:
            raise ValueError("a multiclass classifier needs at least two classes in its training rows")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.classes_ = classes
        base = clone(self.estimator)
        if self.impute:
            from sklearn.impute import SimpleImputer
            from sklearn.pipeline import make_pipeline

            base = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), base)
        self.model_ = base.fit(X, codes)
        _predict_in_one_job(self.model_)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return np.asarray(self.model_.predict_proba(X), dtype="float64")

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        return class_frame(self.predict_proba(X), self.classes_)


def _predict_in_one_job(model: Any) -> None:
    """Fit in parallel, predict in one job: a thread pool per single-row request costs more than the trees."""
    for name, value in model.get_params().items():
        if name.endswith("n_jobs") and value not in (None, 1):
            model.set_params(**{name: 1})


def _classifier(spec: ModelSpec, seed: int, threads: int, multiclass: bool = False) -> BaseEstimator:
    if spec.kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        est: Any = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, **spec.params))
        impute = True
    elif spec.kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        params = {"n_estimators": 200, "min_samples_leaf": 20, "n_jobs": threads, "random_state": seed, **spec.params}
        est, impute = RandomForestClassifier(**params), True
    else:
        from lightgbm import LGBMClassifier

        params = {"random_state": seed, "deterministic": True, "n_jobs": threads, "verbose": -1, **spec.params}
        est, impute = LGBMClassifier(**params), False  # LightGBM routes missing values itself
    if multiclass:
        # Three or more classes: LightGBM picks its multiclass objective, logistic regression is multinomial.
        return ClassProbabilities(est, impute)
    return ProbabilityClassifier(est, impute, spec.calibration, spec.calibration_share)


def build_model(spec: ModelSpec, seed: int, threads: int = 1, multiclass: bool = False) -> BaseEstimator:
    """An unfitted estimator for a model spec from the use case; ``threads`` is each fit's thread count.

    ``multiclass``: the use case's task is multiclass, and the model predicts a frame of class probabilities.
    """
    if multiclass:
        if spec.kind not in MULTICLASS_KINDS:
            raise ValueError(f"model kind '{spec.kind}' is not a multiclass model ({', '.join(MULTICLASS_KINDS)})")
        return ClassPrior() if spec.kind == "prior" else _classifier(spec, seed, threads, multiclass=True)
    if spec.kind == "persistence":
        return Persistence(column=spec.features[0] if spec.features else "rv_5")
    if spec.kind in ("mean", "prior"):
        return MeanBaseline()
    if spec.kind == "linear":
        return linear_regression(spec.params)
    if spec.kind == "prior_rate":
        column = spec.features[0] if spec.features else "agent_win_rate"
        return RateBaseline(column) if spec.calibration == "isotonic" else Persistence(column=column)
    if spec.kind in ("logistic", "random_forest", "lightgbm_classifier"):
        return _classifier(spec, seed, threads)
    if spec.kind == "har_linear":
        return LinearRegression(**spec.params)
    if spec.kind == "lightgbm":
        from lightgbm import LGBMRegressor

        params = {"random_state": seed, "deterministic": True, "n_jobs": threads, "verbose": -1, **spec.params}
        return LGBMRegressor(**params)
    raise ValueError(f"unknown model kind '{spec.kind}'")
