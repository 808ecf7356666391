"""Snapshots: one row per entity alive at each period end, with point-in-time aggregates and an event label.

A gold row (a deal, a subscription, a loan) is alive at the period end ``t`` when ``start <= t < end`` (a NULL
``end``: still alive). ``features.snapshots`` turns gold into one row per (entity, period end) it is alive at;
``features.events`` adds aggregates of the gold rows that are events (closed deals), counting an event at ``t``
only once its ``known_at`` date is on or before ``t``; ``features.alive`` adds aggregates over the rows alive at
the same ``t`` (an agent's open deals). The target is an event (``target.event``, dated by ``target.at``) within
``horizon`` days after ``t``, NULL while those days reach past the data's end.

The event aggregates never join a snapshot with every event: events are aggregated per key and period, summed
cumulatively over a dense key x snapshot grid, and the grid is joined to the rows on (key, snapshot). Only the
expansion of gold into alive rows is a range join.
"""

from __future__ import annotations

import calendar
import itertools
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa

from goldgate.data.targets import LABEL_END, FeatureSpecError, columns_read, unknown_at_t
from goldgate.sql_dialect import run_duckdb_sql
from goldgate.usecase import AliveAggregate, DslFeatures, EventAggregate, Events, Period, Snapshots, UseCase

log = logging.getLogger(__name__)

PERIOD = "_gg_period"
LABEL_KNOWN = "_gg_label_known"
EVENT = "_gg_is_event"
KNOWN_AT = "_gg_known_at"
TARGET_EVENT = "_gg_target_event"
# Stand-in end of rows still alive, so aliveness is two plain inequalities (a fast range join).
_FOREVER = date(9999, 12, 31)
_EPOCH = date(1970, 1, 1)
_ALIASES = itertools.count()


@dataclass(frozen=True)
class SnapshotSpec:
    """The parts of a use case the snapshot builder reads."""

    usecase: str
    entity: str
    time: str
    snapshots: Snapshots
    events: Events | None
    alive: list[AliveAggregate]
    horizon: int
    event: str
    at: str

    @classmethod
    def of(cls, usecase: UseCase) -> SnapshotSpec:
        """The snapshot spec of a use case that declares ``features.snapshots``."""
        spec = usecase.features
        assert isinstance(spec, DslFeatures)
        assert spec.snapshots is not None
        target = usecase.target
        assert target.event is not None  # the use case's validation says so
        assert target.at is not None
        return cls(
            usecase.name,
            usecase.entity,
            usecase.time,
            spec.snapshots,
            spec.events,
            list(spec.alive),
            target.horizon,
            target.event,
            target.at,
        )

    def error(self, message: str) -> FeatureSpecError:
        """A one-line error naming the use case."""
        return FeatureSpecError(f"use case {self.usecase}: {message}")


# ------------------------------------------------------------------------------------------------ periods
def period_end(day: date, every: Period) -> date:
    """The last day of the period (week: Monday to Sunday) that holds ``day``."""
    if every == "day":
        return day
    if every == "week":
        return day + timedelta(days=6 - day.weekday())
    if every == "year":
        return date(day.year, 12, 31)
    month = day.month if every == "month" else (day.month - 1) // 3 * 3 + 3
    return date(day.year, month, calendar.monthrange(day.year, month)[1])


def period_index(day: date, every: Period) -> int:
    """Consecutive periods get consecutive integers (the same numbers ``period_expr`` computes in SQL)."""
    if every in ("day", "week"):
        days = (day - _EPOCH).days
        return days if every == "day" else (days + 3) // 7  # 1970-01-01 was a Thursday
    if every == "month":
        return day.year * 12 + day.month
    return day.year * 4 + (day.month - 1) // 3 if every == "quarter" else day.year


def period_expr(value: ir.DateValue, every: Period) -> ir.IntegerValue:
    """``period_index`` of a date column, as an Ibis expression."""
    if every in ("day", "week"):
        days = value.epoch_days().cast("int64")
        return days if every == "day" else (days + 3).floordiv(7)
    year, month = value.year().cast("int64"), value.month().cast("int64")
    if every == "month":
        return year * 12 + month
    return year * 4 + (month - 1).floordiv(3) if every == "quarter" else year


def period_ends(first: date, last: date, every: Period) -> list[date]:
    """Every period end from the one holding ``first`` up to the last one on or before ``last``."""
    ends: list[date] = []
    end = period_end(first, every)
    while end <= last:
        ends.append(end)
        end = period_end(end + timedelta(days=1), every)
    return ends


# ------------------------------------------------------------------------------------------------ helpers
def _sql_columns(gold: ir.Table, exprs: dict[str, str], spec: SnapshotSpec) -> ir.Table:
    """``gold`` with helper columns computed by the use case's SQL over each row (DuckDB SQL, transpiled)."""
    alias = f"__snap_{next(_ALIASES)}"
    select = ", ".join(f'({sql}) AS "{name}"' for name, sql in exprs.items())
    try:
        return run_duckdb_sql(gold.alias(alias), f"SELECT *, {select} FROM {alias}")  # noqa: S608 - YAML SQL
    except Exception as exc:  # the engine's parse or binder error says what is wrong
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise spec.error(
            f"features.snapshots/events/alive or target SQL does not fit the gold columns: {reason}"
        ) from None


def _of(i: int) -> str:
    return f"_gg_of_{i}"


def _where(i: int) -> str:
    return f"_gg_where_{i}"


def _alive_of(i: int) -> str:
    return f"_gg_alive_of_{i}"


def helper_sql(spec: SnapshotSpec) -> dict[str, str]:
    """Helper column -> SQL over a gold row: the target's event, and the events' and alive aggregates' inputs."""
    exprs = {TARGET_EVENT: f"COALESCE(({spec.event}), FALSE)"}  # a NULL condition does not hold
    if spec.events is not None:
        exprs[EVENT] = f"COALESCE(({spec.events.rows}), FALSE)"
        exprs[KNOWN_AT] = f"CAST(({spec.events.known_at}) AS DATE)"
        for i, agg in enumerate(spec.events.aggregates):
            if agg.of:
                exprs[_of(i)] = f"CAST(({agg.of}) AS DATE)" if agg.stat == "days_since" else agg.of
            if agg.where:
                exprs[_where(i)] = f"COALESCE(({agg.where}), FALSE)"
    exprs |= {_alive_of(i): agg.of for i, agg in enumerate(spec.alive) if agg.of}
    return exprs


def _as_date(value: ir.Value) -> ir.DateValue:
    return value if value.type().is_date() else value.cast("date")


def _check_columns(gold: ir.Table, spec: SnapshotSpec) -> None:
    """The columns the snapshot spec names exist in gold."""
    named = [spec.snapshots.start, spec.snapshots.end, spec.at, *(a.by for a in _aggregates(spec))]
    missing = sorted({c for c in named if c is not None and c not in gold.columns})
    if missing:
        raise spec.error(f"features.snapshots names column(s) {missing} not in gold ({', '.join(gold.columns)})")


def check_row_reads(usecase: UseCase, spec: SnapshotSpec) -> None:
    """No ``by`` column and no alive aggregate's ``of`` reads a snapshot row's future facts (its end, its event,
    the columns filled at the end): those hold the values of the data's end. Event rows' own columns are fine,
    an event counts only once known."""
    hidden = unknown_at_t(usecase)
    for agg in _aggregates(spec):
        read = {agg.by} if agg.by else set()
        if isinstance(agg, AliveAggregate) and agg.of:
            read |= columns_read(agg.of) or set()
        leaked = sorted(read & hidden)
        if leaked:
            raise spec.error(f"aggregate {agg.name} reads {leaked} of the snapshot row, not known at the snapshot")


def _aggregates(spec: SnapshotSpec) -> list[EventAggregate | AliveAggregate]:
    return [*(spec.events.aggregates if spec.events else []), *spec.alive]


# ------------------------------------------------------------------------------------------------ snapshots
def data_bounds(rows: ir.Table, spec: SnapshotSpec) -> tuple[date | None, date | None]:
    """The first snapshot's anchor (first known event, or first start) and the data's end (latest start/end)."""
    snap = spec.snapshots
    start = _as_date(rows[snap.start])
    aggs: dict[str, ir.Value] = {"last_start": start.max()}
    if snap.end is not None:
        aggs["last_end"] = _as_date(rows[snap.end]).max()
    if snap.begin == "first_event":
        aggs["first"] = rows[KNOWN_AT].min(where=rows[EVENT])
    else:
        aggs["first"] = start.min()
    row = rows.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    ends = [d for d in (row["last_start"], row.get("last_end")) if d is not None]
    return row["first"], max(ends) if ends else None


def snapshot_table(
    spec: SnapshotSpec, first: date | None, data_end: date | None, backend: Any
) -> tuple[ir.Table, list[date]]:
    """One row per period end with its period index, label end and whether that label is observable yet."""
    every = spec.snapshots.every
    dates = period_ends(first, data_end, every) if first is not None and data_end is not None else []
    ends = [s + timedelta(days=spec.horizon) for s in dates]
    table = pa.table(
        {
            spec.time: pa.array(dates, pa.date32()),
            PERIOD: pa.array([period_index(s, every) for s in dates], pa.int64()),
            LABEL_END: pa.array(ends, pa.date32()),
            LABEL_KNOWN: pa.array([data_end is not None and e <= data_end for e in ends], pa.bool_()),
        }
    )
    # A view, not a bare memtable: SQL over an expression and cached tables do not register memtables on every
    # engine (DuckDB's `Table.sql`, Spark's cache), a view does.
    name = f"_gg_snapshots_{next(_ALIASES)}_{id(table):x}"
    return backend.create_view(name, ibis.memtable(table), overwrite=True), dates


def alive_rows(rows: ir.Table, snaps: ir.Table, spec: SnapshotSpec) -> ir.Table:
    """Every (row, snapshot) pair where the row is alive at the snapshot: started by then and not ended."""
    snap = spec.snapshots
    start = _as_date(rows[snap.start])
    conditions = [start <= snaps[spec.time]]
    if snap.end is not None:
        conditions.append(_as_date(rows[snap.end]).fill_null(_FOREVER) > snaps[spec.time])
    return rows.join(snaps, conditions)


# ------------------------------------------------------------------------------------------------ events
def _period_metrics(events: ir.Table, group: list[tuple[int, EventAggregate]]) -> dict[str, ir.Value]:
    """Per-period partial aggregates of one ``by`` group's events (``_n_i``, ``_s_i``, ``_m_i``)."""
    metrics: dict[str, ir.Value] = {}
    for i, agg in group:
        where = events[_where(i)] if agg.where else None
        metrics[f"_n_{i}"] = events.count(where=where)
        if agg.stat in ("sum", "mean"):
            metrics[f"_s_{i}"] = events[_of(i)].cast("float64").sum(where=where)
        elif agg.stat == "rate":
            metrics[f"_s_{i}"] = events[_of(i)].cast("boolean").cast("int64").sum(where=where)
        elif agg.stat == "days_since":
            metrics[f"_m_{i}"] = events[_of(i)].max(where=where)
    return metrics


def _cumulative(joined: ir.Table, group: list[tuple[int, EventAggregate]], by: str | None) -> dict[str, ir.Value]:
    """Each aggregate's running totals up to each snapshot (within its last ``periods`` snapshots if set)."""
    out: dict[str, ir.Value] = {}
    for i, agg in group:
        frame = (None, 0) if agg.periods is None else (-(agg.periods - 1), 0)
        w = ibis.window(group_by=by, order_by=PERIOD, rows=frame) if by else ibis.window(order_by=PERIOD, rows=frame)
        out[f"_n_{i}"] = joined[f"_n_{i}"].fill_null(0).sum().over(w).cast("int64")
        if agg.stat in ("sum", "mean"):
            out[f"_s_{i}"] = joined[f"_s_{i}"].fill_null(0.0).sum().over(w).cast("float64")
        elif agg.stat == "rate":
            out[f"_s_{i}"] = joined[f"_s_{i}"].fill_null(0).sum().over(w).cast("int64")
        elif agg.stat == "days_since":
            out[f"_m_{i}"] = joined[f"_m_{i}"].max().over(w)
    return out


def event_history(
    events: ir.Table, snaps: ir.Table, by: str | None, group: list[tuple[int, EventAggregate]], time: str
) -> ir.Table:
    """Running aggregates of one ``by`` group's events at each snapshot: a dense (by value x snapshot) grid."""
    keyed = events.filter(events[by].notnull()) if by else events
    keys = [by, PERIOD] if by else [PERIOD]
    per_period = keyed.group_by(keys).aggregate(**_period_metrics(keyed, group))
    grid = keyed.select(by).distinct().cross_join(snaps.select(time, PERIOD)) if by else snaps.select(time, PERIOD)
    joined = grid.left_join(per_period, keys)
    return joined.select(*([by] if by else []), time, **_cumulative(joined, group, by))


def _ratio(num: ir.NumericValue, den: ir.NumericValue) -> ir.FloatingValue:
    """num / den as float64, NULL where den is 0 (rather than each backend's division by zero)."""
    return ibis.ifelse(den > 0, num.cast("float64") / den.cast("float64"), ibis.null("float64"))


def event_value(t: ir.Table, i: int, agg: EventAggregate, done: dict[str, ir.Value], time: str) -> ir.Value:
    """The feature of aggregate ``i`` from its running totals on a snapshot row (rows of no group: none seen)."""
    n = t[f"_n_{i}"].fill_null(0)
    if agg.stat == "count":
        return n
    if agg.stat == "sum":
        return t[f"_s_{i}"].fill_null(0.0)
    if agg.stat == "mean":
        return _ratio(t[f"_s_{i}"].fill_null(0.0), n)
    if agg.stat == "days_since":
        return t[time].delta(t[f"_m_{i}"], unit="day").cast("int64")
    successes = t[f"_s_{i}"].fill_null(0)
    if agg.toward is None:
        return _ratio(successes, n)
    toward = done[agg.toward]
    return _ratio(successes.cast("float64") + toward * agg.smoothing, n.cast("float64") + agg.smoothing)


def with_events(rows: ir.Table, events: ir.Table, snaps: ir.Table, spec: SnapshotSpec) -> ir.Table:
    """Alive rows with every ``features.events`` aggregate as of their snapshot, in declaration order."""
    assert spec.events is not None
    groups: dict[str | None, list[tuple[int, EventAggregate]]] = {}
    for i, agg in enumerate(spec.events.aggregates):
        groups.setdefault(agg.by, []).append((i, agg))
    for by, group in groups.items():
        history = event_history(events, snaps, by, group, spec.time)
        rows = rows.left_join(history, [by, spec.time] if by else [spec.time])
        rows = rows.drop(*[c for c in rows.columns if c.endswith("_right")])
    done: dict[str, ir.Value] = {}
    for i, agg in enumerate(spec.events.aggregates):
        done[agg.name] = event_value(rows, i, agg, done, spec.time)
    return rows.mutate(**done)


def event_rows(gold: ir.Table, first: date | None, spec: SnapshotSpec) -> ir.Table:
    """The gold rows that are events, with the period from whose end on they count (never before the first)."""
    events = gold.filter(gold[EVENT])
    period = period_expr(events[KNOWN_AT], spec.snapshots.every)
    if first is not None:
        period = period.clip(lower=period_index(first, spec.snapshots.every))
    return events.mutate(**{PERIOD: period})


# ------------------------------------------------------------------------------------------------ alive
def with_alive(rows: ir.Table, spec: SnapshotSpec) -> ir.Table:
    """Alive rows with each ``features.alive`` aggregate over the rows alive at the same snapshot."""
    groups: dict[str | None, list[tuple[int, AliveAggregate]]] = {}
    for i, agg in enumerate(spec.alive):
        groups.setdefault(agg.by, []).append((i, agg))
    for by, group in groups.items():
        keys = [by, spec.time] if by else [spec.time]
        metrics: dict[str, ir.Value] = {}
        for i, agg in group:
            if agg.stat == "count":
                metrics[agg.name] = rows.count()
            else:
                value = rows[_alive_of(i)].cast("float64")
                metrics[agg.name] = value.sum() if agg.stat == "sum" else value.mean()
        load = rows.group_by(keys).aggregate(**metrics)
        rows = rows.left_join(load, keys)
        rows = rows.drop(*[c for c in rows.columns if c.endswith("_right")])
    return rows


# ------------------------------------------------------------------------------------------------ entry points
def snapshot_columns(usecase: UseCase) -> dict[str, dt.DataType]:
    """The columns snapshots add to gold, by type: the snapshot time and every aggregate (as features)."""
    spec = SnapshotSpec.of(usecase)
    columns: dict[str, dt.DataType] = {spec.time: dt.date}
    columns |= {a.name: dt.float64 for a in _aggregates(spec)}
    return columns


def aggregate_names(usecase: UseCase) -> list[str]:
    """The aggregate features in output order: events, then alive."""
    return [a.name for a in _aggregates(SnapshotSpec.of(usecase))]


def build_snapshot_rows(gold: ir.Table, usecase: UseCase, data_end: date | None = None) -> ir.Table:
    """Gold expanded to one row per entity alive at each period end, with the aggregates and label inputs.

    The result keeps every gold column (row-level SQL features read them), adds the snapshot time column, the
    aggregates, ``target_end`` and the helper columns ``target_label`` reads. ``data_end`` (default: the latest
    start or end date in gold, the export date) bounds the snapshots and decides which labels are observable.
    """
    spec = SnapshotSpec.of(usecase)
    _check_columns(gold, spec)
    check_row_reads(usecase, spec)
    prepared = _sql_columns(gold, helper_sql(spec), spec).cache()
    first, latest = data_bounds(prepared, spec)
    data_end = latest if data_end is None else data_end
    snaps, dates = snapshot_table(spec, first, data_end, ibis.get_backend(prepared))
    log.info("use case %s: %d snapshots (%s) up to %s", spec.usecase, len(dates), spec.snapshots.every, data_end)
    rows = alive_rows(prepared, snaps, spec)
    if spec.events is not None:
        rows = with_events(rows, event_rows(prepared, first, spec), snaps, spec)
    if spec.alive:
        rows = with_alive(rows, spec)
    rows = rows.drop(*[c for c in rows.columns if c.startswith(("_n_", "_s_", "_m_"))])
    return rows.cache()  # the row SQL, the derive ops and the target read it several times


def target_label(table: ir.Table, usecase: UseCase) -> dict[str, ir.Value]:
    """The event label: 1.0 when the event holds and is dated within ``horizon`` days after the snapshot, 0.0
    otherwise, NULL while those days reach past the data's end; with ``target_end``."""
    spec = SnapshotSpec.of(usecase)
    at, end = _as_date(table[spec.at]), table[LABEL_END]
    within = table[TARGET_EVENT] & at.notnull() & (at > table[spec.time]) & (at <= end)
    label = ibis.ifelse(table[LABEL_KNOWN], within.cast("float64"), ibis.null("float64"))
    return {usecase.target.name: label, LABEL_END: end}
