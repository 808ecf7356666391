"""Model families: the persistence baseline, a HAR-style linear model and LightGBM, all sklearn estimators."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression

from goldgate.usecase import ModelSpec


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


def build_model(spec: ModelSpec, seed: int) -> BaseEstimator:
    """An unfitted estimator for a model spec from the use case."""
    if spec.kind == "persistence":
        return Persistence(column=spec.features[0] if spec.features else "rv_5")
    if spec.kind == "har_linear":
        return LinearRegression(**spec.params)
    if spec.kind == "lightgbm":
        from lightgbm import LGBMRegressor

        params = {"random_state": seed, "deterministic": True, "n_jobs": 2, "verbose": -1, **spec.params}
        return LGBMRegressor(**params)
    raise ValueError(f"unknown model kind '{spec.kind}'")
