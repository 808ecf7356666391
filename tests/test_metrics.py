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


def _three_classes(seed: int = 4, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Class indices drawn from random class probabilities (so the probabilities are calibrated)."""
    rng = np.random.default_rng(seed)
    prob = rng.dirichlet([1.0, 1.0, 1.0], n)
    y = np.array([rng.choice(3, p=p) for p in prob], dtype="float64")
    return y, prob


def test_multiclass_metrics_match_sklearn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    from goldgate.metrics import multiclass_metrics

    y, prob = _three_classes()
    m = multiclass_metrics(y, prob)
    assert m["log_loss"] == pytest.approx(log_loss(y, prob, labels=[0, 1, 2]))
    onehot = np.eye(3)[y.astype(int)]
    assert m["brier"] == pytest.approx(np.mean(np.sum((prob - onehot) ** 2, axis=1)))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, prob.argmax(axis=1)))
    assert m["macro_f1"] == pytest.approx(f1_score(y, prob.argmax(axis=1), average="macro"))
    assert 0 <= m["ece"] < 0.15


def test_multiclass_per_row_losses_by_hand() -> None:
    from goldgate.metrics import loss_rows

    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    y = np.array([0.0, 1.0, 2.0])
    assert loss_rows("log_loss", y, prob) == pytest.approx([-math.log(0.7), -math.log(0.1), -math.log(1e-15)])
    # Brier: sum over classes of the squared errors, so a certain miss costs 2.
    expected = [0.09 + 0.04 + 0.01, 0.01 + 0.81 + 0.64, 0.25 + 0.25 + 1.0]
    assert loss_rows("brier", y, prob) == pytest.approx(expected)
    with pytest.raises(ValueError, match="multiclass loss"):
        loss_rows("rmse", y, prob)


def test_top_label_ece_is_zero_for_a_constant_prior_and_large_when_overconfident() -> None:
    from goldgate.metrics import top_label_ece

    y = np.array([0.0] * 50 + [1.0] * 30 + [2.0] * 20)
    prior = np.tile([0.5, 0.3, 0.2], (100, 1))
    assert top_label_ece(y, prior) == pytest.approx(0.0)
    # Always 99% sure of class 0, right half of the time.
    sure = np.tile([0.99, 0.005, 0.005], (100, 1))
    assert top_label_ece(y, sure) == pytest.approx(0.49)


def test_class_probabilities_align_columns_and_fill_unseen_classes() -> None:
    import pandas as pd

    from goldgate.metrics import class_indices, class_probabilities, output_metrics

    out = pd.DataFrame({"b": [0.2, 0.9], "a": [0.8, 0.1]})
    aligned = class_probabilities(out, ["a", "b", "c"])
    assert aligned.tolist() == [[0.8, 0.2, 0.0], [0.1, 0.9, 0.0]]
    assert class_indices(["c", "a"], ["a", "b", "c"]).tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="not among the classes"):
        class_indices(["z"], ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        class_probabilities(out, ["a"])
    with pytest.raises(TypeError, match="frame of class probabilities"):
        class_probabilities(np.ones((2, 2)), ["a", "b"])
    # A label the model never saw gets probability 0: the log loss is large but finite.
    m = output_metrics("multiclass", np.array(["a", "c"], dtype=object), out)
    assert m["accuracy"] == 0.5
    assert m["log_loss"] == pytest.approx((-math.log(0.8) - math.log(1e-15)) / 2)
