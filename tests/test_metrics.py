"""Regression and classification metrics agree with scikit-learn and with hand computations."""

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


def test_classification_metrics_match_sklearn() -> None:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    from goldgate.metrics import classification_metrics

    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, 500)
    y = (rng.uniform(size=500) < p).astype(float)
    m = classification_metrics(y, p)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p))
    assert m["log_loss"] == pytest.approx(log_loss(y, p))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["positive_rate"] == pytest.approx(y.mean())


def test_expected_calibration_error_by_hand() -> None:
    from goldgate.metrics import expected_calibration_error

    # Bin [0.1, 0.2): predicts 0.1, observed 1 of 2 -> gap 0.4; bin [0.9, 1]: predicts 0.9, observed 2 of 2 -> 0.1.
    y = np.array([0.0, 1.0, 1.0, 1.0])
    p = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0


def test_per_row_losses_average_to_their_metric() -> None:
    from goldgate.metrics import classification_metrics, loss_rows, regression_metrics

    y = np.array([0.0, 1.0, 1.0, 0.0])
    p = np.array([0.2, 0.7, 0.4, 0.1])
    assert loss_rows("brier", y, p).mean() == pytest.approx(classification_metrics(y, p)["brier"])
    assert loss_rows("log_loss", y, p).mean() == pytest.approx(classification_metrics(y, p)["log_loss"])
    assert np.sqrt(loss_rows("rmse", y, p).mean()) == pytest.approx(regression_metrics(y, p)["rmse"])
    assert loss_rows("mae", y, p).mean() == pytest.approx(regression_metrics(y, p)["mae"])
    with pytest.raises(ValueError, match="no per-row loss"):
        loss_rows("roc_auc", y, p)


def test_auc_is_undefined_with_one_class() -> None:
    from goldgate.metrics import roc_auc

    assert np.isnan(roc_auc(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4])))
