"""The target of a declarative use case: the one column of the feature table that looks forward.

``value_at``, ``aggregate`` and ``event`` read the next ``horizon`` rows of the entity (in time order) and come
with ``target_end``, the time of the last row they read: the label is fully known from then on, which is what
walk-forward evaluation purges training rows by. ``label`` is the row's own column; its ``target_end`` is the
declared ``label_available_at`` column, if any. A row whose label is not known yet keeps a NULL target: it is
what gets scored.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import sqlglot
from sqlglot import exp

from goldgate.sql_dialect import run_duckdb_sql
from goldgate.usecase import UseCase

log = logging.getLogger(__name__)

LABEL_END = "target_end"
# Helper column holding an event target's condition per row; it never reaches the feature table.
EVENT_FLAG = "_gg_event"
TIME_TARGETS = ("value_at", "aggregate", "event")
# Observed values an error message lists at most.
SHOWN_VALUES = 20
_ALIASES = itertools.count()


class FeatureSpecError(ValueError):
    """A feature or target declaration that does not fit the data (a missing column, a wrong type, ...)."""


def is_number_like(kind: dt.DataType) -> bool:
    """Whether ``to_float`` turns values of this type into numbers."""
    return bool(kind.is_boolean() or kind.is_numeric() or kind.is_date() or kind.is_timestamp())


def to_float(value: ir.Value) -> ir.Value | None:
    """A number, boolean, date or timestamp as float64 (dates as days since 1970); None for anything else.

    NaN becomes NULL: Spark's Ibis backend counts NaN as missing, DuckDB does not, and a feature must read
    the same on both engines.
    """
    kind = value.type()
    if kind.is_boolean():
        return value.cast("float64")
    if kind.is_numeric():
        number = value.cast("float64")
        return ibis.ifelse(number.isnan(), ibis.null("float64"), number) if kind.is_floating() else number
    if kind.is_date():
        return value.epoch_days().cast("float64")
    if kind.is_timestamp():
        return value.epoch_seconds().floor().cast("float64") / 86400.0
    return None


def columns_read(sql: str) -> set[str] | None:
    """Column names a DuckDB SQL expression reads; None when it does not parse."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError:
        return None
    return {c.name for c in tree.find_all(exp.Column)}


def unknown_at_t(usecase: UseCase) -> set[str]:
    """Columns a feature at t may not read: a label target's column, when labels arrive, and gold columns
    derived from them (directly or through another derived column)."""
    hidden = {c for c in [usecase.label_available_column] if c is not None}
    if usecase.target.kind == "label" and usecase.target.column is not None:
        hidden.add(usecase.target.column)
    snapshots = usecase.snapshots
    if snapshots is not None:
        # A snapshot row carries its gold row's values at the data's end: its end, the event and its date are
        # future facts at a past snapshot.
        hidden |= {c for c in (snapshots.end, usecase.target.at, *snapshots.filled_at_end) if c is not None}
        hidden |= columns_read(usecase.target.event or "TRUE") or set()
    reads = {name: columns_read(sql) or set() for name, sql in usecase.gold.derive.items()}
    grown = True
    while grown:
        tainted = {name for name, read in reads.items() if read & hidden} - hidden
        hidden |= tainted
        grown = bool(tainted)
    return hidden


def target_inputs(table: ir.Table, usecase: UseCase) -> ir.Table:
    """``table`` with what the target reads besides its columns: the condition of an event target, per row.

    The condition is DuckDB SQL over a row; it runs through ``run_duckdb_sql``, so Spark runs it too. A NULL
    condition (a missing input) counts as not holding.
    """
    target = usecase.target
    if target.kind != "event":
        return table
    alias = f"_gg_rows_{next(_ALIASES)}"
    query = f"SELECT *, COALESCE(({target.event}), FALSE) AS {EVENT_FLAG} FROM {alias}"  # noqa: S608 - YAML SQL
    ibis.get_backend(table)  # a table bound to no engine is the caller's error, not the condition's
    try:
        flagged = run_duckdb_sql(table.alias(alias), query)
    except Exception as exc:  # the engine's own parse or binder error says what is wrong
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FeatureSpecError(
            f"use case {usecase.name}: target.event '{target.event}' is not a SQL condition over the gold "
            f"columns: {reason}"
        ) from None
    if not flagged[EVENT_FLAG].type().is_boolean():
        raise FeatureSpecError(
            f"use case {usecase.name}: target.event '{target.event}' must be a condition (true/false), "
            f"not {flagged[EVENT_FLAG].type()}"
        )
    return flagged


def build_target(table: ir.Table, usecase: UseCase) -> dict[str, ir.Value]:
    """The target column and, where it means something, ``target_end``, as expressions over ``table``.

    ``table`` holds one row per entity and time; an event target needs ``target_inputs(table)``. Rows whose
    label is not known yet get NULL.
    """
    target = usecase.target
    if target.kind is None:
        raise FeatureSpecError(f"use case {usecase.name}: target.kind is not set (value_at, aggregate, event, label)")
    if target.kind == "label":
        return _label_target(table, usecase)
    _check_time_target(table, usecase)
    if target.unit != "rows":
        return _time_span_target(table, usecase)
    builders = {"value_at": _value_at, "aggregate": _aggregate, "event": _event}
    ahead = ibis.window(group_by=usecase.entity, order_by=usecase.time)
    return {
        target.name: builders[target.kind](table, usecase).cast("float64"),
        LABEL_END: table[usecase.time].lead(target.horizon).over(ahead),
    }


UNIT_SECONDS = {"days": 86_400, "hours": 3_600, "minutes": 60}


def _time_span_target(table: ir.Table, usecase: UseCase) -> dict[str, ir.Value]:
    """A target over the span (t, t + horizon] in time: the latest known value in it (``value_at``), a statistic
    of its values (``aggregate``) or whether the event holds on any of its rows (``event``).

    The label is known once the entity's data reaches t + horizon (a row at or after it), else NULL; an
    ``aggregate`` or ``value_at`` over a span without rows is NULL too. ``target_end`` is t + horizon.
    """
    target, time = usecase.target, table[usecase.time]
    seconds = target.horizon * UNIT_SECONDS[target.unit]
    on_dates = time.type().is_date()
    step, reach = (
        (ibis.interval(days=1), ibis.interval(days=seconds // 86_400))
        if on_dates
        else (ibis.interval(seconds=1), ibis.interval(seconds=seconds))
    )
    frame = ibis.window(group_by=usecase.entity, order_by=usecase.time, range=(step, reach))
    end = time + reach
    reached = time.max().over(ibis.window(group_by=usecase.entity)) >= end
    if target.kind == "event":
        value = table[EVENT_FLAG].cast("int32").max().over(frame).cast("float64").fill_null(0.0)
    else:
        x = _target_value(table, usecase)
        stats: dict[str, Any] = {
            "mean": lambda: x.mean().over(frame),
            "sum": lambda: x.sum().over(frame),
            "rms": lambda: (x * x).mean().over(frame).sqrt(),
            "min": lambda: x.min().over(frame),
            "max": lambda: x.max().over(frame),
            "std": lambda: x.std().over(frame),
        }
        # The latest known value in the span: engines disagree on whether last() skips missing values.
        known_at = ibis.ifelse(x.notnull(), time, ibis.null(time.type()))
        latest = x.argmax(known_at).over(frame)
        value = latest if target.kind == "value_at" else stats[target.aggregate]()
        value = value * target.scale
    return {
        target.name: ibis.ifelse(reached, value, ibis.null("float64")).cast("float64"),
        LABEL_END: end.cast(time.type()),
    }


def _check_time_target(table: ir.Table, usecase: UseCase) -> None:
    """A target over the next rows needs a time column, whole rows as its unit and a numeric column."""
    target = usecase.target
    if usecase.time_column is None:
        raise FeatureSpecError(
            f"use case {usecase.name}: a {target.kind} target reads the next rows in time, but the data has no "
            "time column (use kind label)"
        )
    time_type = table[usecase.time].type()
    if target.unit in ("hours", "minutes") and not time_type.is_timestamp():
        raise FeatureSpecError(
            f"use case {usecase.name}: a horizon in {target.unit} needs a timestamp time column, "
            f"'{usecase.time}' is {time_type} (use unit days or rows)"
        )
    if target.kind == "event" or target.column is None:
        return
    if target.column not in table.columns:
        raise FeatureSpecError(
            f"use case {usecase.name}: target column '{target.column}' is not in the gold table "
            f"(columns: {', '.join(table.columns)})"
        )
    if not is_number_like(table[target.column].type()):
        raise FeatureSpecError(
            f"use case {usecase.name}: a {target.kind} target needs a numeric column; '{target.column}' is "
            f"{table[target.column].type()}"
        )


def _target_value(table: ir.Table, usecase: UseCase) -> ir.Value:
    value = to_float(table[str(usecase.target.column)])
    assert value is not None  # checked by _check_time_target
    return value


def _value_at(table: ir.Table, usecase: UseCase) -> ir.Value:
    """The column ``horizon`` rows ahead, scaled."""
    ahead = ibis.window(group_by=usecase.entity, order_by=usecase.time)
    return _target_value(table, usecase).lead(usecase.target.horizon).over(ahead) * usecase.target.scale


def _aggregate(table: ir.Table, usecase: UseCase) -> ir.Value:
    """The statistic over the next ``horizon`` rows (t excluded), scaled; NULL unless all of them have a value."""
    target = usecase.target
    frame = ibis.window(group_by=usecase.entity, order_by=usecase.time, rows=(1, target.horizon))
    x = _target_value(table, usecase)
    stats: dict[str, Any] = {
        "mean": lambda: x.mean().over(frame),
        "sum": lambda: x.sum().over(frame),
        "rms": lambda: (x * x).mean().over(frame).sqrt(),
        "min": lambda: x.min().over(frame),
        "max": lambda: x.max().over(frame),
        "std": lambda: x.std().over(frame),
    }
    full = x.count().over(frame) == target.horizon
    return ibis.ifelse(full, stats[target.aggregate]() * target.scale, ibis.null("float64"))


def _event(table: ir.Table, usecase: UseCase) -> ir.Value:
    """1.0 when the condition holds on any of the next ``horizon`` rows, else 0.0; NULL unless they all exist."""
    horizon = usecase.target.horizon
    frame = ibis.window(group_by=usecase.entity, order_by=usecase.time, rows=(1, horizon))
    if EVENT_FLAG not in table.columns:
        raise FeatureSpecError(
            f"use case {usecase.name}: the event target reads the flag target_inputs() adds; pass the table "
            "through it first"
        )
    hit = table[EVENT_FLAG].cast("int32").max().over(frame).cast("float64")
    full = table[usecase.time].count().over(frame) == horizon
    return ibis.ifelse(full, hit, ibis.null("float64"))


def _label_target(table: ir.Table, usecase: UseCase) -> dict[str, ir.Value]:
    """The row's own column: 1.0/0.0 for classification, the class as text for multiclass, the scaled value
    for regression."""
    target = usecase.target
    column = str(target.column)
    if column not in table.columns:
        raise FeatureSpecError(
            f"use case {usecase.name}: label column '{column}' is not in the gold table "
            f"(columns: {', '.join(table.columns)})"
        )
    if usecase.task == "multiclass":
        return {target.name: _class_label(table, usecase), **_label_end(table, usecase)}
    if usecase.task == "classification":
        label = _positive_indicator(table, usecase)
    else:
        value = to_float(table[column])
        if value is None:
            raise FeatureSpecError(
                f"use case {usecase.name}: a regression label needs a numeric column; '{column}' is "
                f"{table[column].type()}"
            )
        label = value * target.scale
    return {target.name: label.cast("float64"), **_label_end(table, usecase)}


def _label_end(table: ir.Table, usecase: UseCase) -> dict[str, ir.Value]:
    """``target_end`` of a label target: when the label became known, if a column says so."""
    available = usecase.label_available_column
    return {} if available is None else {LABEL_END: table[available]}


def _class_label(table: ir.Table, usecase: UseCase) -> ir.Value:
    """Multiclass: the label column as text (NULL where missing: those rows are scored, not trained on).

    The column must be text, integer or boolean and hold at least two classes; the classes are learned from the
    training rows (sorted as text).
    """
    column = str(usecase.target.column)
    kind = table[column].type()
    if not (kind.is_string() or kind.is_integer() or kind.is_boolean()):
        raise FeatureSpecError(
            f"use case {usecase.name}: a multiclass label needs a text, integer or boolean column; '{column}' is {kind}"
        )
    value = table[column].cast("string")
    observed = _observed(table, column)
    if len(observed) < 2:
        raise FeatureSpecError(
            f"use case {usecase.name}: multiclass label '{column}' needs at least two classes "
            + (f"(observed: {', '.join(map(repr, observed))})" if observed else "(the gold table has no label)")
        )
    return value


def _positive_indicator(table: ir.Table, usecase: UseCase) -> ir.Value:
    """1.0 where the label column holds the positive class, 0.0 elsewhere, NULL where it is missing."""
    column = str(usecase.target.column)
    value = table[column]
    if usecase.target.positive is None:
        _check_binary(table, usecase)
        return value.cast("float64")
    positive = _positive_literal(table, usecase, usecase.target.positive)
    if table.filter(value == positive).count().execute() == 0:
        observed = _observed(table, column)
        raise FeatureSpecError(
            f"use case {usecase.name}: target.positive {positive!r} never occurs in column '{column}' "
            + (f"(observed: {', '.join(map(repr, observed))})" if observed else "(the gold table has no label)")
        )
    if usecase.target.negative is not None:
        negative = _positive_literal(table, usecase, usecase.target.negative, "negative")
        return ibis.cases((value == positive, 1.0), (value == negative, 0.0), else_=ibis.null("float64"))
    others = _observed(table.filter(value != positive), column)
    if len(others) > 1:
        raise FeatureSpecError(
            f"use case {usecase.name}: label column '{column}' holds {len(others) + 1} classes "
            f"({', '.join(map(repr, [positive, *others]))}): set target.negative to the class that counts as 0 "
            "(rows of any other class are then scored, not trained on)"
        )
    return (value == positive).cast("float64")


def _check_binary(table: ir.Table, usecase: UseCase) -> None:
    """Without ``positive`` the label column must be boolean or hold only 0 and 1."""
    column = str(usecase.target.column)
    kind = table[column].type()
    if kind.is_boolean():
        return
    ask = f"set target.positive to the value of '{column}' that counts as 1"
    if not kind.is_numeric():
        raise FeatureSpecError(f"use case {usecase.name}: classification label '{column}' is {kind}: {ask}")
    others = table.filter(table[column].notnull() & ~table[column].isin([0, 1]))
    if others.count().execute() > 0:
        raise FeatureSpecError(
            f"use case {usecase.name}: classification label '{column}' holds values other than 0 and 1 "
            f"(observed: {', '.join(map(repr, _observed(table, column)))}): {ask}"
        )


def _positive_literal(table: ir.Table, usecase: UseCase, positive: Any, key: str = "positive") -> Any:
    """``target.<key>`` (the positive or negative class) as a value of the label column's type; a mismatch is an
    error, not a silent 0."""
    column = str(usecase.target.column)
    kind = table[column].type()
    mismatch = FeatureSpecError(
        f"use case {usecase.name}: target.{key} {positive!r} is not a value of {kind} column '{column}'"
        + (" (YAML reads unquoted yes/no/true/false as booleans: quote it)" if isinstance(positive, bool) else "")
    )
    if kind.is_string():
        if isinstance(positive, bool):
            raise mismatch
        return str(positive)
    if kind.is_boolean():
        text = str(positive).strip().lower()
        if isinstance(positive, bool) or text in ("true", "false", "1", "0"):
            return positive if isinstance(positive, bool) else text in ("true", "1")
        raise mismatch
    if kind.is_numeric():
        try:
            return float(positive)
        except ValueError:
            raise mismatch from None
    raise mismatch


def _observed(table: ir.Table, column: str) -> list[Any]:
    """A few distinct non-null values of ``column``, sorted, for an error message."""
    values = table.select(column)
    values = values.filter(values[column].notnull()).distinct().order_by(column).limit(SHOWN_VALUES)
    return list(values.to_pyarrow()[column].to_pylist())
