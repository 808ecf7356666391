"""Regression and classification metrics, computed identically for every model."""

from __future__ import annotations

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """rmse, mae and r2 of predictions against truth."""
    y_true = np.asarray(y_true, dtype="float64")
    y_pred = np.asarray(y_pred, dtype="float64")
    err = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
    }


# Probabilities are clipped before the log so a confident miss costs a large but finite loss.
_EPS = 1e-15


def log_loss_rows(y_true: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Per-row log loss of probabilities of the positive class."""
    y = np.asarray(y_true, dtype="float64")
    p = np.clip(np.asarray(prob, dtype="float64"), _EPS, 1 - _EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean gap between predicted and observed rates over equal-width probability bins."""
    y = np.asarray(y_true, dtype="float64")
    p = np.clip(np.asarray(prob, dtype="float64"), 0.0, 1.0)
    if len(y) == 0:
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)
    gaps = 0.0
    for b in np.unique(which):
        sel = which == b
        gaps += sel.sum() * abs(p[sel].mean() - y[sel].mean())
    return float(gaps / len(y))


def roc_auc(y_true: np.ndarray, prob: np.ndarray) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true, dtype="float64")
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(prob, dtype="float64")))


def classification_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """brier, log_loss, ece, roc_auc and the base rate of probabilities against 0/1 outcomes."""
    y = np.asarray(y_true, dtype="float64")
    p = np.asarray(prob, dtype="float64")
    return {
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(np.mean(log_loss_rows(y, p))),
        "ece": expected_calibration_error(y, p),
        "roc_auc": roc_auc(y, p),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
    }


def task_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metric set of a use case's task: regression or classification (predictions are probabilities)."""
    if task == "classification":
        return classification_metrics(y_true, y_pred)
    return regression_metrics(y_true, y_pred)


def loss_rows(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-row loss whose mean the metric is built on: squared error (rmse, brier), absolute error (mae), log loss."""
    if metric == "log_loss":
        return log_loss_rows(y_true, y_pred)
    err = np.asarray(y_pred, dtype="float64") - np.asarray(y_true, dtype="float64")
    if metric == "mae":
        return np.abs(err)
    if metric in ("rmse", "brier"):
        return err**2
    raise ValueError(f"no per-row loss for metric '{metric}'")


LOWER_IS_BETTER = {"rmse": True, "mae": True, "brier": True, "log_loss": True, "ece": True, "roc_auc": False}
