"""Batch scoring with the champion; every prediction row carries its lineage.

The step reads the feature rows of one date as a lazy Ibis expression and streams them in Arrow record batches
(``to_pyarrow_batches``), so only one batch of features is in memory at a time, whatever the table's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from goldgate.backtest import time_points
from goldgate.data.names import slugs
from goldgate.usecase import UseCase

# Predictions are keyed by the use case's entity column plus these.
PREDICTION_KEYS = ("as_of", "model_version")
# Feature rows per Arrow batch handed to the model.
BATCH_ROWS = 65_536


def latest_complete_date(frame: pd.DataFrame, inputs: list[str], time_col: str) -> date:
    """The newest date on which some entity has every model input."""
    complete = frame.dropna(subset=inputs)
    if complete.empty:
        raise ValueError(f"no row has all model inputs {inputs}")
    return pd.to_datetime(complete[time_col]).max().date()


def rows_to_score(frame: pd.DataFrame, inputs: list[str], time_col: str, as_of: date) -> pd.DataFrame:
    """Entities observed on ``as_of`` with every model input known."""
    day = pd.to_datetime(frame[time_col]).dt.date
    return frame[day == as_of].dropna(subset=inputs).reset_index(drop=True)


PROBABILITY_PREFIX = "p_"


def class_columns(classes: Iterable[object]) -> list[str]:
    """The predictions table's probability column of each class: ``p_`` and the class slugged like a one-hot
    feature name (lower-case letters, digits and underscores, unique in order)."""
    return [PROBABILITY_PREFIX + slug for slug in slugs(list(classes))]


def prediction_columns(predictions: object) -> dict[str, Any]:
    """The prediction columns of scored rows: ``prediction`` (a number; for a multiclass model's probability frame,
    the most probable class as text) and, for multiclass, one ``p_<class>`` probability column per class."""
    if not isinstance(predictions, pd.DataFrame):
        return {"prediction": pd.Series(predictions, dtype="float64").to_numpy()}
    classes = [str(c) for c in predictions.columns]
    prob = predictions.to_numpy(dtype="float64")
    top = np.asarray(classes, dtype=object)[np.argmax(prob, axis=1)] if len(prob) else np.array([], dtype=object)
    return {"prediction": top, **{c: prob[:, i] for i, c in enumerate(class_columns(classes))}}


def with_lineage(
    rows: pd.DataFrame,
    predictions: object,
    entity: str,
    time_col: str,
    lineage: dict[str, object],
    scored_at: datetime,
) -> pa.Table:
    """Prediction rows keyed by entity and date, with the model and data they came from."""
    out = pd.DataFrame(
        {
            entity: rows[entity].astype(str),
            "as_of": time_points(rows[time_col]),
            **prediction_columns(predictions),
        }
    )
    for key, value in lineage.items():
        out[key] = value
    out["scored_at"] = pd.Timestamp(scored_at)
    table = pa.Table.from_pandas(out, preserve_index=False)
    return table.set_column(
        table.schema.get_field_index("scored_at"),
        "scored_at",
        table["scored_at"].cast(pa.timestamp("us", tz="UTC")),
    )


def _complete(features: ir.Table, inputs: list[str]) -> ir.Table:
    """Rows where every input is known: not NULL and, for floating-point columns, not NaN."""
    missing = [c for c in inputs if c not in features.columns]
    if missing:
        raise ValueError(f"model inputs {missing} are not columns of the feature table")
    conditions = []
    for c in inputs:
        col = features[c]
        conditions.append(col.notnull())
        if features.schema()[c].is_floating():
            conditions.append(~col.isnan())
    return features.filter(conditions) if conditions else features


def required_inputs(usecase: UseCase, inputs: list[str]) -> list[str]:
    """Inputs a row must have to be scored: all of them, or with ``models.allow_missing`` only the baseline's."""
    if not usecase.models.allow_missing:
        return list(inputs)
    baseline = set(usecase.models.baseline.features)
    return [c for c in inputs if c in baseline]


def latest_complete_day(
    features: ir.Table, inputs: list[str], time_col: str, required: list[str] | None = None
) -> date:
    """The newest date on which some entity has every required model input (computed by the engine)."""
    missing = [c for c in inputs if c not in features.columns]
    if missing:
        raise ValueError(f"model inputs {missing} are not columns of the feature table")
    value = _complete(features, inputs if required is None else required)[time_col].max().to_pyarrow().as_py()
    if value is None:
        raise ValueError(f"no row has all model inputs {inputs}")
    if isinstance(value, datetime):
        # An intraday series is scored at its latest time step; a daily one on its latest date.
        return value if value != datetime.combine(value.date(), datetime.min.time()) else value.date()
    return value


def complete_rows(
    features: ir.Table, inputs: list[str], entity: str, time_col: str, as_of: date, required: list[str] | None = None
) -> ir.Table:
    """The entities observed on ``as_of`` with every required model input known, ordered by entity (lazy)."""
    missing = [c for c in inputs if c not in features.columns]
    if missing:
        raise ValueError(f"model inputs {missing} are not columns of the feature table")
    rows = _complete(features, inputs if required is None else required)
    if isinstance(as_of, datetime):
        # Intraday: every entity at its own latest complete time step of that day (a panel's last bars differ).
        day = rows.filter(rows[time_col].cast("date") == ibis.literal(as_of.date(), type="date"))
        newest = day.group_by(entity).aggregate(_newest=day[time_col].max())
        rows = day.semi_join(newest, [day[entity] == newest[entity], day[time_col] == newest["_newest"]])
    else:
        rows = rows.filter(rows[time_col].cast("date") == ibis.literal(as_of, type="date"))
    return rows.select(entity, time_col, *dict.fromkeys(c for c in inputs if c not in (entity, time_col))).order_by(
        entity
    )


def latest_complete_rows(
    features: ir.Table, inputs: list[str], entity: str, time_col: str, required: list[str] | None = None
) -> ir.Table:
    """For each entity, its newest row with every required input known (lazy): what scoring by key reads."""
    missing = [c for c in inputs if c not in features.columns]
    if missing:
        raise ValueError(f"model inputs {missing} are not columns of the feature table")
    rows = _complete(features, inputs if required is None else required)
    newest = rows.group_by(entity).aggregate(_newest=rows[time_col].max())
    latest = rows.semi_join(newest, [rows[entity] == newest[entity], rows[time_col] == newest["_newest"]])
    return latest.select(entity, time_col, *dict.fromkeys(c for c in inputs if c not in (entity, time_col)))


def predict_batches(
    batches: Iterable[pa.RecordBatch],
    predict: Callable[[pd.DataFrame], Any],
    inputs: list[str],
    entity: str,
    time_col: str,
    lineage: dict[str, object],
    scored_at: datetime,
) -> Iterator[pa.Table]:
    """Prediction rows with lineage, one Arrow table per input batch (empty batches are skipped)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        rows = batch.to_pandas()
        yield with_lineage(rows, predict(rows[inputs]), entity, time_col, lineage, scored_at)
