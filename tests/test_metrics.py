"""Regression metrics agree with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from goldgate.metrics import regression_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.lognormal(0, 0.5, 200)
    y_pred = y_true + rng.normal(0, 0.3, 200)
    m = regression_metrics(y_true, y_pred)
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y_true, y_pred)), rel=1e-12)
    assert m["mae"] == pytest.approx(mean_absolute_error(y_true, y_pred), rel=1e-12)
    assert m["r2"] == pytest.approx(r2_score(y_true, y_pred), rel=1e-12)


def test_lists_are_accepted_and_values_are_floats() -> None:
    m = regression_metrics([1, 2, 3, 4], [1, 2, 3, 6])
    assert m == pytest.approx({"rmse": 1.0, "mae": 0.5, "r2": 1 - 4 / 5})
    assert all(type(v) is float for v in m.values())


def test_perfect_prediction() -> None:
    y = np.array([0.1, 0.4, 0.2])
    assert regression_metrics(y, y) == {"rmse": 0.0, "mae": 0.0, "r2": 1.0}


def test_r2_is_nan_for_constant_truth() -> None:
    m = regression_metrics(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    assert math.isnan(m["r2"])
    assert m["mae"] == pytest.approx(2 / 3)
