"""Regression and classification metrics, computed identically for every model.

Multiclass metrics take each row's true class as an index into the use case's sorted classes (``class_indices``)
and the predicted probabilities as a rows x classes matrix in that order (``class_probabilities``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


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


def class_indices(labels: Any, classes: Sequence[str]) -> np.ndarray:
    """Each label's position in ``classes`` as float64 (labels compared as text); an unknown label is an error."""
    position = {str(c): i for i, c in enumerate(classes)}
    text = pd.Series(labels, dtype="object").astype(str)
    unknown = sorted(set(text) - set(position))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among the classes {list(classes)[:10]}")
    return text.map(position).to_numpy(dtype="float64")


def class_probabilities(output: Any, classes: Sequence[str]) -> np.ndarray:
    """A multiclass model's output (a frame with one probability column per class) as a rows x ``classes``
    matrix in that order; a class the model never saw in training gets probability 0."""
    if not isinstance(output, pd.DataFrame):
        raise TypeError(f"a multiclass model returns a frame of class probabilities, not {type(output).__name__}")
    frame = output.rename(columns=str)
    extra = sorted(set(frame.columns) - {str(c) for c in classes})
    if extra:
        raise ValueError(f"the model predicts classes {extra[:5]} outside {list(classes)[:10]}")
    return frame.reindex(columns=[str(c) for c in classes], fill_value=0.0).to_numpy(dtype="float64")


def multiclass_log_loss_rows(y_index: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Per-row log loss: minus the log of the probability given to the true class (clipped like the binary one)."""
    y = np.asarray(y_index, dtype="int64")
    p = np.asarray(prob, dtype="float64")
    return -np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0))


def multiclass_brier_rows(y_index: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Per-row multiclass Brier score: the sum over classes of the squared probability errors (0 to 2)."""
    y = np.asarray(y_index, dtype="int64")
    p = np.asarray(prob, dtype="float64")
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return np.asarray(np.sum((p - onehot) ** 2, axis=1), dtype="float64")


def top_label_ece(y_index: np.ndarray, prob: np.ndarray, bins: int = 10) -> float:
    """Top-label expected calibration error: the binary ECE of 'the most probable class is right' against the
    probability given to that class."""
    p = np.asarray(prob, dtype="float64")
    if len(p) == 0:
        return float("nan")
    correct = (np.argmax(p, axis=1) == np.asarray(y_index, dtype="int64")).astype("float64")
    return expected_calibration_error(correct, p.max(axis=1), bins)


def multiclass_metrics(y_index: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """log_loss, brier (multiclass), accuracy, macro_f1 and top-label ece of class probabilities."""
    from sklearn.metrics import f1_score

    y = np.asarray(y_index, dtype="int64")
    p = np.asarray(prob, dtype="float64").reshape(len(y), -1)
    if len(y) == 0:
        return dict.fromkeys(("log_loss", "brier", "accuracy", "macro_f1", "ece"), float("nan"))
    predicted = np.argmax(p, axis=1)
    return {
        "log_loss": float(np.mean(multiclass_log_loss_rows(y, p))),
        "brier": float(np.mean(multiclass_brier_rows(y, p))),
        "accuracy": float(np.mean(predicted == y)),
        "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
        "ece": top_label_ece(y, p),
    }


def output_metrics(task: str, y_true: Any, output: Any) -> dict[str, float]:
    """``task_metrics`` of a model's raw output: for multiclass, labels and the probability frame are aligned on
    the classes either of them holds."""
    if task != "multiclass":
        return task_metrics(task, np.asarray(y_true, dtype="float64"), np.asarray(output, dtype="float64"))
    labels = pd.Series(y_true, dtype="object").astype(str)
    classes = sorted(set(labels) | {str(c) for c in output.columns})
    return multiclass_metrics(class_indices(labels, classes), class_probabilities(output, classes))


def task_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metric set of a use case's task: regression, classification (predictions are probabilities) or
    multiclass (``y_true`` class indices, ``y_pred`` a rows x classes probability matrix)."""
    if task == "classification":
        return classification_metrics(y_true, y_pred)
    if task == "multiclass":
        return multiclass_metrics(y_true, y_pred)
    return regression_metrics(y_true, y_pred)


def loss_rows(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-row loss whose mean the metric is built on: squared error (rmse, brier), absolute error (mae), log loss.

    With a rows x classes probability matrix (multiclass), ``y_true`` holds class indices and the loss is the
    multiclass log loss or Brier score of each row.
    """
    if np.ndim(y_pred) == 2:
        if metric == "log_loss":
            return multiclass_log_loss_rows(y_true, y_pred)
        if metric == "brier":
            return multiclass_brier_rows(y_true, y_pred)
        raise ValueError(f"no per-row multiclass loss for metric '{metric}'")
    if metric == "log_loss":
        return log_loss_rows(y_true, y_pred)
    err = np.asarray(y_pred, dtype="float64") - np.asarray(y_true, dtype="float64")
    if metric == "mae":
        return np.abs(err)
    if metric in ("rmse", "brier"):
        return err**2
    raise ValueError(f"no per-row loss for metric '{metric}'")


LOWER_IS_BETTER = {
    "rmse": True,
    "mae": True,
    "brier": True,
    "log_loss": True,
    "ece": True,
    "roc_auc": False,
    "accuracy": False,
    "macro_f1": False,
}
