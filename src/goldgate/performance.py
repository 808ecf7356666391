"""Performance once the labels arrive: predictions joined to the outcomes that became known after them.

Two sources, both written to ``ops.performance`` with ``estimated = false``:

- ``predictions``: the rows the score step stored (``gold.<uc>_predictions``), joined to the feature table on
  (entity, date = ``as_of``) where the target is now known, aggregated per model version and calendar month of
  ``as_of``. In fx a label is known 5 fixings after ``as_of``; a month's row appears (and grows) as labels land.
- ``backfill``: the champion scored on every row of the monitoring window, measured on the labelled dates it
  never saw while fitting (on or after the first date of its final holdout), as one window.

A label-free estimate is only sound for a calibrated classifier (its expected accuracy is the mean confidence);
for a regression no estimate is recorded (``estimate_note``).

Multiclass: ``prediction`` is the most probable class (text) and the probabilities are ``p_<class>`` columns in the
predictions table, ``prob:<class>`` columns in the window's scored rows.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from goldgate.metrics import output_metrics, task_metrics
from goldgate.score import PROBABILITY_PREFIX, class_columns

PERFORMANCE = "ops.performance"
PERFORMANCE_KEYS = ["model_version", "source", "window_start", "window_end", "metric"]
NO_ESTIMATE = "no label-free estimate: the model is a regression (an estimate is only sound for calibrated classifiers)"


def metric_rows(y: np.ndarray, pred: np.ndarray, metrics: tuple[str, ...] = ("rmse", "mae")) -> dict[str, float]:
    """The named metrics of predictions against outcomes (rmse, mae; brier, log_loss, ece, roc_auc)."""
    out = task_metrics("classification" if set(metrics) & set(CLASSIFICATION) else "regression", y, pred)
    return {m: out[m] for m in metrics}


REGRESSION = ("rmse", "mae")
CLASSIFICATION = ("brier", "log_loss", "ece", "roc_auc")
MULTICLASS = ("log_loss", "brier", "accuracy", "macro_f1", "ece")
# Multiclass rows scored for monitoring keep each class's probability in a column named by this prefix and the class.
PROB_PREFIX = "prob:"


def monitored_metrics(task: str) -> tuple[str, ...]:
    """The performance metrics monitoring records for a task."""
    return {"classification": CLASSIFICATION, "multiclass": MULTICLASS}.get(task, REGRESSION)


def expected_accuracy(probabilities: Any) -> float:
    """Label-free accuracy estimate of a calibrated classifier: the mean confidence, max(p, 1 - p) for binary
    probabilities, the largest class probability for a rows x classes matrix (multiclass).

    Sound only when the classifier is calibrated on the current data (the assumption behind confidence-based
    performance estimation); goldgate does not use it for regressions.
    """
    p = np.asarray(probabilities, dtype="float64")
    if p.ndim == 2:
        return float(np.mean(p.max(axis=1)))
    return float(np.mean(np.maximum(p, 1 - p)))


def class_probability_frame(scored: pd.DataFrame) -> pd.DataFrame:
    """Multiclass scored rows' probabilities as a frame with one column per class, named by the class."""
    columns = [c for c in scored.columns if str(c).startswith(PROB_PREFIX)]
    return scored[columns].rename(columns=lambda c: str(c).removeprefix(PROB_PREFIX))


def _label_rows(features: ir.Table, entity: str, time: str, target: str) -> ir.Table:
    y = features[target]
    known = features.filter(y.notnull(), ~y.isnan()) if y.type().is_floating() else features.filter(y.notnull())
    return known.select(_e=known[entity].cast("string"), _d=known[time].cast("date"), _y=known[target])


def _joined(predictions: ir.Table, labels: ir.Table, entity: str, extra: list[str]) -> ir.Table:
    """Stored predictions joined to the labels now known for their entity and ``as_of`` date."""
    p = predictions.select(
        _pe=predictions[entity].cast("string"),
        _pd=predictions["as_of"].cast("date"),
        model_version=predictions["model_version"].cast("string"),
        prediction=predictions["prediction"],
        **{c: predictions[c] for c in extra},
    )
    return p.join(labels, [p._pe == labels._e, p._pd == labels._d])


def _numeric_sums(joined: ir.Table) -> dict[str, ir.Value]:
    err = joined.prediction - joined._y
    # Clipped as in goldgate.metrics, so a confident miss costs a large but finite log loss.
    p = joined.prediction.clip(lower=1e-15, upper=1 - 1e-15)
    log_loss = -(joined._y * p.ln() + (1 - joined._y) * (1 - p).ln())
    return {"sse": (err * err).sum(), "sae": err.abs().sum(), "sll": log_loss.sum()}


def _multiclass_sums(joined: ir.Table, columns: list[str]) -> dict[str, ir.Value]:
    """Sums of log loss, multiclass Brier score and hits from the ``p_<class>`` columns: the true class's column
    is found by slugging the label (a class the model never saw has probability 0)."""
    classes = joined.select(c=joined._y.cast("string")).distinct().to_pyarrow()["c"].to_pylist()
    known = [(c, class_columns([c])[0]) for c in classes]
    cases = [(joined._y.cast("string") == c, joined[col]) for c, col in known if col in columns]
    p_true = ibis.cases(*cases, else_=ibis.literal(0.0)) if cases else ibis.literal(0.0)
    squares = sum((joined[c] * joined[c] for c in columns), ibis.literal(0.0))
    return {
        "sll": (-(p_true.clip(lower=1e-15).ln())).sum(),
        "sbr": (squares - 2 * p_true + 1).sum(),
        "hits": (joined.prediction.cast("string") == joined._y.cast("string")).cast("int64").sum(),
    }


def _values(r: dict[str, Any], task: str) -> tuple[tuple[str, float], ...]:
    n = r["rows"]
    if task == "multiclass":
        return (("log_loss", r["sll"] / n), ("brier", r["sbr"] / n), ("accuracy", r["hits"] / n))
    if task == "classification":
        return (("brier", r["sse"] / n), ("log_loss", r["sll"] / n))
    return (("rmse", math.sqrt(r["sse"] / n)), ("mae", r["sae"] / n))


def stored_performance(
    predictions: ir.Table, features: ir.Table, entity: str, time: str, target: str, task: str = "regression"
) -> list[dict[str, Any]]:
    """rmse / mae (brier / log_loss for classifiers; log_loss / brier / accuracy for multiclass) of stored
    predictions whose outcome is known, per model version and month of ``as_of``."""
    labels = _label_rows(features, entity, time, target)
    columns = [c for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)] if task == "multiclass" else []
    joined = _joined(predictions, labels, entity, columns)
    sums = _multiclass_sums(joined, columns) if task == "multiclass" else _numeric_sums(joined)
    agg = joined.group_by(joined.model_version, month=joined._pd.truncate("M")).aggregate(rows=joined.count(), **sums)
    out = []
    for r in agg.to_pyarrow().to_pylist():
        month: date = r["month"] if isinstance(r["month"], date) else r["month"].date()
        nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        end = date.fromordinal(nxt.toordinal() - 1)
        for metric, value in _values(r, task):
            out.append(
                {
                    "model_version": r["model_version"],
                    "source": "predictions",
                    "window_start": str(month),
                    "window_end": str(end),
                    "metric": metric,
                    "value": float(value),
                    "rows": int(r["rows"]),
                }
            )
    return out


def backfill_performance(
    scored: pd.DataFrame, time: str, target: str, since: date | None, task: str = "regression"
) -> list[dict[str, Any]]:
    """The task's metrics of window predictions on labelled rows dated on or after ``since`` (rows the model
    never fit)."""
    if scored.empty:
        return []
    days = pd.to_datetime(scored[time]).dt.date
    if task == "multiclass":
        mask = scored[target].notna()
    else:
        y = scored[target].astype("float64")
        mask = y.notna() & np.isfinite(y)
    if since is not None:
        mask &= days >= since
    if not mask.any():
        return []
    used = scored[mask]
    if task == "multiclass":
        every = output_metrics(task, used[target], class_probability_frame(used))
        metrics = {m: every[m] for m in MULTICLASS}
    else:
        metrics = metric_rows(used[target].to_numpy(), used["prediction"].to_numpy(), monitored_metrics(task))
    start, end = str(days[mask].min()), str(days[mask].max())
    return [
        {
            "source": "backfill",
            "window_start": start,
            "window_end": end,
            "metric": m,
            "value": v,
            "rows": int(mask.sum()),
        }
        for m, v in metrics.items()
    ]


def performance_table(rows: list[dict[str, Any]], model_name: str, model_version: str | None) -> Any:
    """ops.performance rows as an Arrow table (``model_version`` fills rows that do not name one)."""
    import pyarrow as pa

    now = datetime.now(UTC)
    full = [
        {
            "model_name": model_name,
            "model_version": r.get("model_version", model_version),
            "source": r["source"],
            "window_start": r["window_start"],
            "window_end": r["window_end"],
            "metric": r["metric"],
            "value": r["value"],
            "rows": r["rows"],
            "estimated": False,
            "computed_at": now,
        }
        for r in rows
    ]
    schema = pa.schema(
        [
            ("model_name", pa.string()),
            ("model_version", pa.string()),
            ("source", pa.string()),
            ("window_start", pa.string()),
            ("window_end", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("rows", pa.int64()),
            ("estimated", pa.bool_()),
            ("computed_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    return pa.Table.from_pylist(full, schema=schema)


def window_filter(table: ir.Table, time: str, start: date, end: date) -> ir.Table:
    """Rows of ``table`` dated within [start, end]."""
    day = table[time].cast("date")
    return table.filter(day >= ibis.literal(start, type="date"), day <= ibis.literal(end, type="date"))
