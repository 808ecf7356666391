"""The feature DSL of a use case, compiled to Ibis: the same YAML runs on DuckDB and on Spark.

The gold table (one row per entity and time) becomes the feature table: the entity and time keys, every declared
feature as float64, the target and, where it means something, ``target_end`` (see ``goldgate.data.targets``).

Point in time: a feature of the row at t reads rows at or before t only. Time-order ops look back within the
entity; cross-sectional ops (``rank``, ``demean``) read the rows at t; encodings read no later row either:

- onehot: one 0/1 column per category among the ``max_categories`` most frequent of the whole table (ties by
  value). Which columns exist depends on all the data; the value of each at t depends on the row alone.
- ordinal: categories are numbered 0, 1, ... in the order they first appear in time (ties by value), so a
  category's code never changes when later data brings new ones. Without a time column (every row has the
  same ``as_of``) this is the code by sorted value.
- frequency: the value's share of the rows up to and including t, across all entities.

Output names: the column's own name (values), the calendar part, ``<col>_lag<k>``, ``_diff<k>``, ``_pct<k>``,
``_logchg<k>``, ``_<stat>_<window>``, ``_<stat>_<span>``, ``_ewm<halflife>`` (a decimal point written ``p``:
``_ewm2p5``), ``_xs_rank``, ``_xs_demean``, ``_<category slug>`` (onehot), ``_code`` (ordinal), ``_freq``
(frequency); ``name`` renames a single-output op.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import sqlglot
from sqlglot import exp

from goldgate.data.names import slugs
from goldgate.data.targets import (
    LABEL_END,
    TIME_TARGETS,
    FeatureSpecError,
    build_target,
    columns_read,
    is_number_like,
    target_inputs,
    to_float,
    unknown_at_t,
)
from goldgate.sql_dialect import run_duckdb_sql
from goldgate.usecase import Derive, DslFeatures, UseCase

__all__ = ["LABEL_END", "FeatureSpecError", "build_dsl_features", "feature_names"]

log = logging.getLogger(__name__)

# Stands for the category part of onehot names before the data is read.
CATEGORY_PLACEHOLDER = "*"
_ALIASES = itertools.count()
TIME_ORDER_OPS = ("lag", "diff", "pct_change", "log_change", "rolling", "ewm")
STEP_SUFFIXES = {"lag": "lag", "diff": "diff", "pct_change": "pct", "log_change": "logchg"}
ENCODE_SUFFIXES = {"ordinal": "code", "frequency": "freq"}
# An ewm reads the last ceil(EWM_HALFLIVES * halflife) rows: older weights are below 0.5**10 (0.1%) of the newest.
EWM_HALFLIVES = 10
_SPAN_SECONDS = {"min": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
# Helper columns (prefix _gg_) live between stages and never reach the feature table.
ROW_NUMBER = "_gg_row"
ROWS_SO_FAR = "_gg_rows_so_far"
_CODE_KEY = "_gg_code_key"
# The entity, the time and the given gold or row-SQL columns, read from gold for a per-time statistic.
NarrowSource = Callable[[list[str]], ir.Table]


@dataclass(frozen=True)
class Keys:
    """The use case's name and the keys the DSL partitions and orders by."""

    usecase: str
    entity: str
    time: str
    time_type: dt.DataType | None  # None: the data has no time column of its own

    def error(self, message: str) -> FeatureSpecError:
        """A one-line error naming the use case."""
        return FeatureSpecError(f"use case {self.usecase}: {message}")


@dataclass(frozen=True)
class Plan:
    """What a use case's DSL computes, checked against the gold columns before any data is read."""

    keys: Keys
    sql: list[str]  # row-level SQL features, computed first
    values: list[str]  # gold columns that are features as they are (text ones through ``encodes``)
    encodes: dict[str, Derive]  # text value column -> its default encoding
    calendar: list[str]
    ops: list[Derive]
    aggregates: list[str]  # snapshots: the events and alive aggregates
    names: list[str]  # every output name in output order; onehot: "<col>_*"
    reserved: tuple[str, ...]  # the keys, the target and its end: no feature may take these names


# --------------------------------------------------------------------------------------------- planning
def _dsl(usecase: UseCase) -> DslFeatures:
    if not isinstance(usecase.features, DslFeatures):
        raise FeatureSpecError(f"use case {usecase.name}: features.kind is {usecase.features.kind}, not dsl")
    return usecase.features


def _is_value(column: str, usecase: UseCase, hidden: set[str]) -> bool:
    """Whether a gold column is a feature as it is (``values: true``)."""
    if column in hidden:
        return False
    if usecase.target.kind in TIME_TARGETS and column == usecase.target.column:
        return True  # the target's own value at t is known at t
    spec = usecase.columns.get(column) or usecase.joined_columns().get(column)
    if spec is not None:
        return spec.role == "feature"
    return column in usecase.gold.derive


def _value_plan(schema: dict[str, dt.DataType], usecase: UseCase) -> tuple[list[str], dict[str, Derive]]:
    """Value feature columns and the default encoding of each text one without an encode op of its own."""
    spec = _dsl(usecase)
    if not spec.values:
        return [], {}
    hidden = unknown_at_t(usecase)
    own = {d.column for d in spec.derive if d.op == "encode"}
    method = spec.encode_strings
    values, encodes = [], {}
    for column, kind in schema.items():
        if not _is_value(column, usecase, hidden):
            continue
        if kind.is_string():
            if column in own or method == "drop":
                continue
            encodes[column] = Derive(op="encode", column=column, method=method, max_categories=spec.max_categories)
        values.append(column)
    return values, encodes


def _halflife_text(halflife: float) -> str:
    """5.0 -> '5', 2.5 -> '2p5': a name part without a decimal point."""
    return f"{halflife:f}".rstrip("0").rstrip(".").replace(".", "p")


def op_names(op: Derive, categories: Iterable[str] | None = None) -> list[str]:
    """The output names of one op; onehot names come from its category slugs (the placeholder before)."""
    c = op.column
    if op.op in STEP_SUFFIXES:
        names = [f"{c}_{STEP_SUFFIXES[op.op]}{k}" for k in op.periods]
    elif op.op == "rolling":
        names = [f"{c}_{stat}_{op.window if op.window is not None else op.span}" for stat in op.stats]
    elif op.op == "ewm":
        names = [f"{c}_ewm{_halflife_text(float(op.halflife or 0))}"]
    elif op.op in ("rank", "demean"):
        names = [f"{c}_xs_{op.op}"]
    elif op.op == "versus":
        names = [f"{c}_vs_{slugs([op.entity])[0]}"]
    elif op.method == "onehot":
        names = [f"{c}_{slug}" for slug in (categories if categories is not None else [CATEGORY_PLACEHOLDER])]
    else:
        names = [f"{c}_{ENCODE_SUFFIXES[op.method]}"]
    return [op.name] if op.name is not None else names


def _op_label(op: Derive) -> str:
    return f"derive {op.op} of '{op.column}'"


def _check_op(op: Derive, available: dict[str, dt.DataType], hidden: set[str], keys: Keys) -> None:
    """One derive op against the columns before it: it exists, is known at t and fits the op."""
    if op.column not in available:
        raise keys.error(f"{_op_label(op)}: no such column (available: {', '.join(available)})")
    if op.column in hidden:
        raise keys.error(f"{_op_label(op)}: '{op.column}' is not known at t (the label or when it arrives)")
    if op.op in TIME_ORDER_OPS and keys.time_type is None:
        raise keys.error(f"{_op_label(op)}: the op reads earlier rows in time, but the data has no time column")
    if op.op != "encode" and not is_number_like(available[op.column]):
        raise keys.error(f"{_op_label(op)}: the op needs numbers, '{op.column}' is {available[op.column]} (encode it)")
    if op.span is not None:
        _check_span(op, keys)
    several = len(op.periods) if op.op in STEP_SUFFIXES else len(op.stats) if op.op == "rolling" else 1
    if op.name is not None and (several > 1 or (op.op == "encode" and op.method == "onehot")):
        raise keys.error(f"{_op_label(op)}: name '{op.name}' renames a single output, and this op writes several")


def _check_span(op: Derive, keys: Keys) -> None:
    """A time span needs a date or timestamp time column; on dates, whole days."""
    kind = keys.time_type
    if kind is None or not (kind.is_date() or kind.is_timestamp()):
        raise keys.error(f"{_op_label(op)}: span '{op.span}' needs a date or timestamp time column, not {kind}")
    if kind.is_date() and _span_seconds(str(op.span)) % 86_400:
        raise keys.error(f"{_op_label(op)}: span '{op.span}' is not whole days, and the time column holds dates")


def _span_seconds(span: str) -> int:
    match = re.fullmatch(r"([0-9]+)(min|h|d|w)", span)
    assert match is not None  # the use case's pattern admits nothing else
    return int(match.group(1)) * _SPAN_SECONDS[match.group(2)]


def _check_names(names: list[str], taken: Iterable[str], keys: Keys, what: str) -> None:
    """Feature names are unique and none is a key, the target or ``target_end``."""
    seen: set[str] = set(taken)
    for name in names:
        if name.endswith(f"_{CATEGORY_PLACEHOLDER}"):
            continue
        if name in seen:
            raise keys.error(f"feature name '{name}' is used twice ({what}); rename one with `name`")
        seen.add(name)


def plan(schema: dict[str, dt.DataType], usecase: UseCase) -> Plan:
    """Check the DSL against the gold columns and list what it computes, without reading any data."""
    spec = _dsl(usecase)
    aggregates: list[str] = []
    if spec.snapshots is not None:
        from goldgate.data.snapshots import aggregate_names, snapshot_columns

        schema = {**snapshot_columns(usecase), **schema}
        aggregates = aggregate_names(usecase)
    has_time = usecase.time_column is not None or spec.snapshots is not None
    time_type = schema.get(usecase.time) if has_time else None
    keys = Keys(usecase.name, usecase.entity, usecase.time, time_type)
    for key in (keys.entity, keys.time):
        if key not in schema:
            raise keys.error(f"key column '{key}' is not in the gold table (columns: {', '.join(schema)})")
    if spec.calendar and (time_type is None or not (time_type.is_date() or time_type.is_timestamp())):
        raise keys.error(f"calendar features {spec.calendar} need a date or timestamp time column")
    values, encodes = _value_plan(schema, usecase)
    hidden = unknown_at_t(usecase)
    available = dict(schema)
    derived: list[str] = []
    for op in spec.derive:
        _check_op(op, available, hidden, keys)
        names = op_names(op)
        clash = [n for n in names if n in available]
        if clash:
            raise keys.error(f"{_op_label(op)}: output '{clash[0]}' is already a column; rename it with `name`")
        available.update({n: dt.float64 for n in names if not n.endswith(f"_{CATEGORY_PLACEHOLDER}")})
        derived.extend(names)
    value_names = [n for c in values for n in (op_names(encodes[c]) if c in encodes else [c])]
    sql = [n for n in spec.sql if n in schema]
    names = [*sql, *value_names, *aggregates, *derived, *spec.calendar]
    reserved = (keys.entity, keys.time, usecase.target.name, LABEL_END)
    _check_names(names, reserved, keys, "sql, values, events, alive, derive, calendar")
    return Plan(keys, sql, values, encodes, list(spec.calendar), list(spec.derive), aggregates, names, reserved)


def check_row_sql(name: str, sql: str, hidden: set[str], usecase: str) -> None:
    """A row-level SQL feature parses, reads no column unknown at t, and looks at no other row."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise FeatureSpecError(f"use case {usecase}: features.sql '{name}' does not parse: {exc}") from None
    if tree.find(exp.Window) is not None or tree.find(exp.Select) is not None:
        raise FeatureSpecError(
            f"use case {usecase}: features.sql '{name}' may use its own row only (no window function or subquery); "
            "use a derive op to read earlier rows"
        )
    leaked = sorted({c.name for c in tree.find_all(exp.Column)} & hidden)
    if leaked:
        raise FeatureSpecError(f"use case {usecase}: features.sql '{name}' reads {leaked}, not known at t")


def with_sql_features(gold: ir.Table, usecase: UseCase) -> ir.Table:
    """Gold with the use case's row-level SQL features added (DuckDB SQL, transpiled on other engines)."""
    spec = _dsl(usecase)
    if not spec.sql:
        return gold
    hidden = unknown_at_t(usecase)
    for name, sql in spec.sql.items():
        check_row_sql(name, sql, hidden, usecase.name)
        if name in (usecase.entity, usecase.time):
            raise FeatureSpecError(f"use case {usecase.name}: features.sql '{name}' is a key column; rename it")
    return _add_row_sql(gold, spec.sql)


def _add_row_sql(table: ir.Table, sql: dict[str, str]) -> ir.Table:
    """``table`` with the row-level SQL features ``sql`` (name -> DuckDB SQL) added as float64 columns.

    A feature may take the name of a gold column (``sales_price: sales_price``): it replaces that column.
    """
    alias = f"__rowsql_{next(_ALIASES)}"
    kept = ", ".join(f'"{c}"' for c in table.columns if c not in sql)
    exprs = ", ".join(f'CAST(({text}) AS DOUBLE) AS "{name}"' for name, text in sql.items())
    select = f"{kept}, {exprs}" if kept else exprs
    return run_duckdb_sql(table.alias(alias), f"SELECT {select} FROM {alias}")  # noqa: S608 - the use case's SQL


def feature_names(gold_columns: dict[str, str], usecase: UseCase) -> list[str]:
    """The feature columns ``build_dsl_features`` writes, from the gold columns and their Ibis types alone.

    Onehot columns appear as ``<col>_*``: their categories come from the data. Raises ``FeatureSpecError`` on
    a declaration that does not fit the columns.
    """
    return plan({name: dt.dtype(kind) for name, kind in gold_columns.items()}, usecase).names


# ---------------------------------------------------------------------------------------------- compiling
def _over_time(keys: Keys, **frame: object) -> ibis.expr.builders.LegacyWindowBuilder:
    """The entity's rows in time order (optionally a frame of them)."""
    return ibis.window(group_by=keys.entity, order_by=keys.time, **frame)


def _steps(x: ir.NumericValue, op: Derive, keys: Keys) -> list[ir.Value]:
    """lag / diff / pct_change / log_change for every period; a ratio is NULL where it is undefined."""
    out: list[ir.Value] = []
    for k in op.periods:
        prev = x.lag(k).over(_over_time(keys))
        if op.op == "lag":
            out.append(prev)
        elif op.op == "diff":
            out.append(x - prev)
        elif op.op == "pct_change":
            out.append(ibis.ifelse(prev != 0, x / prev - 1, ibis.null("float64")))
        else:
            out.append(ibis.ifelse((x > 0) & (prev > 0), (x / prev).ln(), ibis.null("float64")))
    return out


def _window_stat(x: ir.NumericValue, stat: str, frame: object) -> ir.Value:
    stats: dict[str, Callable[[], ir.Value]] = {
        "mean": lambda: x.mean().over(frame),
        "std": lambda: x.std().over(frame),
        "rms": lambda: (x * x).mean().over(frame).sqrt(),
        "min": lambda: x.min().over(frame),
        "max": lambda: x.max().over(frame),
        "sum": lambda: x.sum().over(frame),
        "count": lambda: x.count().over(frame).cast("float64"),
    }
    return stats[stat]()


def _rolling(x: ir.NumericValue, op: Derive, keys: Keys) -> list[ir.Value]:
    """Statistics over the last ``window`` rows or the span (t - span, t]; NULL below ``min_periods`` values.

    A span frame is a range over the time column: on dates it holds the last ``span`` days, on timestamps the
    span at one-second resolution (Spark's SQL has no finer interval literal).
    """
    if op.window is not None:
        frame = _over_time(keys, rows=(-(op.window - 1), 0))
        needed = op.min_periods or op.window
    else:
        seconds = _span_seconds(str(op.span))
        assert keys.time_type is not None  # checked by plan()
        reach = (
            ibis.interval(days=seconds // 86_400 - 1)
            if keys.time_type.is_date()
            else ibis.interval(seconds=seconds - 1)
        )
        frame = _over_time(keys, range=(-reach, 0))
        needed = op.min_periods or 1
    enough = x.count().over(frame) >= needed
    return [ibis.ifelse(enough, _window_stat(x, stat, frame), ibis.null("float64")) for stat in op.stats]


def _ewm(table: ir.Table, x: ir.NumericValue, op: Derive, keys: Keys) -> ir.Value:
    """Exponentially weighted mean (adjust=True) over the last ceil(10 * halflife) rows; NULL without values.

    The weight of the row i steps back is q**i, q = 0.5 ** (1 / halflife). Window sums cannot weight by the
    distance to the current row, so rows are cut into blocks of the frame's length n: a row j at offset o_j in
    its block carries x_j * q**-o_j (at most 2**10, so nothing overflows), the sum over the current block up to
    t and the sum over the frame give the previous block's part by difference, which is n rows further away.
    """
    q = 0.5 ** (1.0 / float(op.halflife or 1.0))
    n = math.ceil(EWM_HALFLIVES * float(op.halflife or 1.0))
    row = table[ROW_NUMBER]
    offset = (row % n).cast("float64")
    lift = ibis.literal(1.0 / q) ** offset
    frame = _over_time(keys, rows=(-(n - 1), 0))
    block = ibis.window(group_by=[table[keys.entity], row // n], order_by=keys.time, rows=(None, 0))

    def weighted(value: ir.NumericValue) -> ir.NumericValue:
        total = value.sum().over(frame).fill_null(0.0)
        same = value.sum().over(block).fill_null(0.0)
        return (same + q**n * (total - same)) * ibis.literal(q) ** offset

    numerator = weighted(x * lift)
    denominator = weighted(ibis.ifelse(x.notnull(), lift, 0.0))
    return ibis.ifelse(denominator > 0, numerator / denominator, ibis.null("float64"))


def _cross_section(table: ir.Table, x: ir.NumericValue, op: Derive, keys: Keys) -> ir.Value:
    """Percent rank among the entities with a value at t, or the value minus the per-time statistic that
    ``_with_time_stats`` joined to ``table``: the entities' mean at t, or the reference entity's value at t."""
    if op.op == "rank":
        peers = ibis.window(group_by=[table[keys.time], x.isnull()], order_by=x)
        return ibis.ifelse(x.isnull(), ibis.null("float64"), x.percent_rank().over(peers))
    return x - table[_stat_column(op)]


def _stat_column(op: Derive) -> str:
    return f"_gg_xs_{op_names(op)[0]}"


def _time_stat(narrow: ir.Table, op: Derive, keys: Keys) -> ir.Value:
    """Per time step: the mean of the op's input over the entities with a value (demean), or the reference
    entity's value (versus; keys are unique, so max() picks its one row, NULL without one)."""
    x = to_float(narrow[op.column])
    assert x is not None  # checked by plan()
    if op.op == "versus":
        return ibis.ifelse(narrow[keys.entity].cast("string") == str(op.entity), x, ibis.null("float64")).max()
    # Summed in exact decimal arithmetic: the mean does not depend on the order in which parallel threads meet the
    # values, so a rerun on the same data gives the same bits and its merge changes nothing.
    return x.cast("decimal(38, 18)").mean().cast("float64")


def _chain(ops: list[Derive], index: int, columns: list[str]) -> tuple[list[str], set[int]]:
    """The columns of ``columns`` and the earlier ops that the input of ``ops[index]`` is computed from."""

    def produces(op: Derive, name: str) -> bool:
        # onehot names come from the data: any "<col>_..." may be one (one op too many only costs time)
        onehot = op.op == "encode" and op.method == "onehot" and op.name is None
        return name in op_names(op) or (onehot and name.startswith(f"{op.column}_"))

    read: list[str] = []
    needed: set[int] = set()
    todo = [ops[index].column]
    while todo:
        name = todo.pop()
        if name in columns:
            read.append(name)
            continue
        for j in range(index):
            if j not in needed and produces(ops[j], name):
                needed.add(j)
                todo.append(ops[j].column)
    return read, needed


def _with_time_stats(
    table: ir.Table, source: ir.Table, ops: list[Derive], keys: Keys, narrow_source: NarrowSource
) -> ir.Table:
    """``table`` with the per-time statistic of every ``demean`` and ``versus`` op, joined on the time column.

    The statistics read one column per row, so they are computed on one narrow table (the entity, the time and
    the columns of ``source`` their inputs are computed from, read again from gold by ``narrow_source``, the
    earlier ops they depend on compiled again there) and grouped by time: the wide rows are never sorted by
    time. Reading gold again rather than ``source`` keeps ``source`` used once, so the engine streams it
    instead of keeping it in memory for a second reader.
    """
    stat_ops = [(index, op) for index, op in enumerate(ops) if op.op in ("demean", "versus")]
    if not stat_ops:
        return table
    read: list[str] = []
    needed: set[int] = set()
    for index, _ in stat_ops:
        columns, chain = _chain(ops, index, source.columns)
        read.extend(columns)
        needed |= chain
    narrow, _ = _derive(narrow_source(list(dict.fromkeys(read))), [ops[j] for j in sorted(needed)], keys, narrow_source)
    stats = narrow.group_by(_gg_xs_time=narrow[keys.time]).aggregate(
        **{_stat_column(op): _time_stat(narrow, op, keys) for _, op in stat_ops}
    )
    return table.left_join(stats, table[keys.time] == stats._gg_xs_time).drop("_gg_xs_time")


def top_categories(table: ir.Table, column: str, limit: int) -> list[object]:
    """The ``limit`` most frequent non-null values of ``column``, ties by value (one small query)."""
    values = table.select(column)
    values = values.filter(values[column].notnull())
    counts = values.group_by(column).aggregate(_gg_n=values.count())
    top = counts.order_by([ibis.desc("_gg_n"), column]).limit(limit)
    return list(top.to_pyarrow()[column].to_pylist())


def _encode(table: ir.Table, op: Derive, keys: Keys) -> dict[str, ir.Value]:
    """Onehot 0/1 columns, the ordinal code or the frequency so far of a column (see the module docstring)."""
    x = table[op.column]
    if op.method == "onehot":
        categories = top_categories(table, op.column, op.max_categories)
        names = op_names(op, slugs(categories))
        return {n: (x == v).fill_null(False).cast("float64") for n, v in zip(names, categories, strict=True)}
    if op.method == "ordinal":
        return {op_names(op)[0]: table[_code_column(op.column)].cast("float64")}
    so_far = ibis.window(group_by=x, order_by=keys.time, range=(None, 0))
    share = x.count().over(so_far).cast("float64") / table[ROWS_SO_FAR]
    return {op_names(op)[0]: ibis.ifelse(x.isnull(), ibis.null("float64"), share)}


def _code_column(column: str) -> str:
    return f"_gg_code_{column}"


def _with_codes(table: ir.Table, column: str, keys: Keys) -> ir.Table:
    """``table`` with the ordinal code of ``column``: categories numbered by first appearance, ties by value."""
    if _code_column(column) in table.columns:
        return table
    firsts = table.group_by(**{_CODE_KEY: table[column]}).aggregate(_gg_first=table[keys.time].min())
    firsts = firsts.filter(firsts[_CODE_KEY].notnull())
    order = ibis.window(order_by=[firsts._gg_first, firsts[_CODE_KEY]])  # one row per category: a small sort
    codes = firsts.select(_CODE_KEY, **{_code_column(column): ibis.row_number().over(order)})
    return table.left_join(codes, table[column] == codes[_CODE_KEY]).drop(_CODE_KEY)


def _with_helpers(table: ir.Table, ops: list[Derive], keys: Keys) -> ir.Table:
    """Row numbers (for ewm) and the count of rows up to each time (for frequency), when an op needs them."""
    if any(op.op == "ewm" for op in ops):
        table = table.mutate(**{ROW_NUMBER: ibis.row_number().over(_over_time(keys))})
    if any(op.op == "encode" and op.method == "frequency" for op in ops):
        per_time = table.group_by(_gg_time=table[keys.time]).aggregate(_gg_n=table.count())
        cumulative = ibis.window(order_by=per_time._gg_time, rows=(None, 0))  # one row per time: a small sort
        so_far = per_time.select("_gg_time", **{ROWS_SO_FAR: per_time._gg_n.sum().over(cumulative).cast("float64")})
        table = table.left_join(so_far, table[keys.time] == so_far._gg_time).drop("_gg_time")
    return table


def _compile(table: ir.Table, op: Derive, keys: Keys) -> dict[str, ir.Value]:
    """The op's outputs as float64 expressions over ``table`` (which holds its input and helper columns)."""
    if op.op == "encode":
        exprs = _encode(table, op, keys)
    else:
        x = to_float(table[op.column])
        assert x is not None  # checked by plan()
        if op.op in STEP_SUFFIXES:
            values = _steps(x, op, keys)
        elif op.op == "rolling":
            values = _rolling(x, op, keys)
        elif op.op == "ewm":
            values = [_ewm(table, x, op, keys)]
        else:
            values = [_cross_section(table, x, op, keys)]
        exprs = dict(zip(op_names(op), values, strict=True))
    scale = op.scale
    return {n: (e * scale if scale != 1 else e).cast("float64") for n, e in exprs.items()}


def _derive(
    source: ir.Table,
    ops: list[Derive],
    keys: Keys,
    narrow_source: NarrowSource,
    first: Callable[[ir.Table], dict[str, ir.Value]] | None = None,
) -> tuple[ir.Table, list[list[str]]]:
    """Every op's outputs added to ``source``, in order; ops that read no earlier output share one stage.

    A stage is one projection, so its window functions share the engine's sort by entity and time; ``first``
    adds further columns (the target) to the first stage, so they share that sort too.
    """
    table = _with_time_stats(_with_helpers(source, ops, keys), source, ops, keys, narrow_source)
    pending: dict[str, ir.Value] = dict(first(table)) if first is not None else {}
    outputs: list[list[str]] = []
    for op in ops:
        ordinal = op.op == "encode" and op.method == "ordinal"
        if pending and (op.column in pending or ordinal):
            table, pending = table.mutate(**pending), {}
        if ordinal:
            table = _with_codes(table, op.column, keys)
        exprs = _compile(table, op, keys)
        for name in exprs:
            if name in table.columns or name in pending:
                raise keys.error(f"{_op_label(op)}: output '{name}' is already a column; rename it with `name`")
        pending.update(exprs)
        outputs.append(list(exprs))
    return (table.mutate(**pending) if pending else table), outputs


def _calendar(time: ir.Value, part: str) -> ir.Value:
    """One calendar part of the time column (day of week 0 = Monday, ISO week) as int32: a count, never missing."""
    stamp = time.cast("timestamp") if time.type().is_date() else time
    parts: dict[str, Callable[[], ir.Value]] = {
        "day_of_week": lambda: time.day_of_week.index(),
        "day_of_month": lambda: time.day(),
        "day_of_year": lambda: time.day_of_year(),
        "week": lambda: time.week_of_year(),
        "month": lambda: time.month(),
        "quarter": lambda: time.quarter(),
        "year": lambda: time.year(),
        "hour": lambda: stamp.hour(),
        "minute": lambda: stamp.minute(),
        "is_weekend": lambda: time.day_of_week.index() >= 5,
    }
    return parts[part]().cast("int32")


def _features(table: ir.Table, steps: Plan, derived: list[list[str]]) -> dict[str, ir.Value]:
    """Every feature column in output order: row SQL, values (text ones encoded), derive outputs, calendar parts."""
    encoded = dict(zip(steps.encodes, derived[len(steps.ops) :], strict=True))
    features: dict[str, ir.Value] = {}
    names: list[str] = []
    for column in steps.sql:
        features[column] = to_float(table[column])
        names.append(column)
    for column in steps.values:
        if column in encoded:
            features.update({n: table[n] for n in encoded[column]})
            names.extend(encoded[column])
        else:
            value = to_float(table[column])
            assert value is not None  # text columns are encoded
            features[column] = value
            names.append(column)
    for column in steps.aggregates:
        features[column] = to_float(table[column])
        names.append(column)
    for outputs in derived[: len(steps.ops)]:
        features.update({n: table[n] for n in outputs})
        names.extend(outputs)
    for part in steps.calendar:
        features[part] = _calendar(table[steps.keys.time], part)
        names.append(part)
    _check_names(names, steps.reserved, steps.keys, "onehot categories included")
    return features


def _narrow_gold(gold: ir.Table, usecase: UseCase, keys: Keys) -> NarrowSource:
    """Reads the entity, the time and the given gold or row-SQL columns from ``gold`` (before the row SQL),
    computing only the row-SQL features asked for, from the gold columns they read."""
    sql = _dsl(usecase).sql
    by_folded = {c.lower(): c for c in gold.columns}  # DuckDB SQL matches column names in any case

    def narrow(columns: list[str]) -> ir.Table:
        wanted = {name: sql[name] for name in columns if name in sql}
        names = {c.lower() for text in wanted.values() for c in columns_read(text) or set()}
        read = [by_folded[c] for c in sorted(names) if c in by_folded]
        plain = [c for c in columns if c not in wanted]
        table = gold.select(*dict.fromkeys([keys.entity, keys.time, *plain, *read]))
        return _add_row_sql(table, wanted) if wanted else table

    return narrow


def _snapshot_target(table: ir.Table, usecase: UseCase) -> dict[str, ir.Value]:
    from goldgate.data.snapshots import target_label

    return target_label(table, usecase)


def build_dsl_features(gold: ir.Table, usecase: UseCase, data_end: date | None = None) -> ir.Table:
    """The feature table of a DSL use case: keys, float64 features, the target and ``target_end`` if any.

    Every gold row is kept (rows whose target is not known yet have a NULL target: they are scored). Rows come
    in no particular order; readers sort. With ``features.snapshots`` the rows are the entities alive at each
    period end up to ``data_end`` (default: the data's own end).
    """
    snapshots = usecase.snapshots is not None
    if snapshots:
        from goldgate.data.snapshots import build_snapshot_rows

        gold = build_snapshot_rows(gold, usecase, data_end)
    raw = gold
    gold = with_sql_features(gold, usecase)
    steps = plan(dict(gold.schema().items()), usecase)
    ops = [*steps.ops, *steps.encodes.values()]
    if snapshots:
        table, derived = _derive(gold, ops, steps.keys, _narrow_gold(raw, usecase, steps.keys))
        target = _snapshot_target(table, usecase)
    else:
        # The target's windows join the first stage's: one sort of the rows by entity and time for both.
        names: list[str] = []

        def target_columns(stage: ir.Table) -> dict[str, ir.Value]:
            columns = build_target(stage, usecase)
            names.extend(columns)
            return columns

        inputs = target_inputs(gold, usecase)
        table, derived = _derive(inputs, ops, steps.keys, _narrow_gold(raw, usecase, steps.keys), target_columns)
        target = {name: table[name] for name in names}
    features = _features(table, steps, derived)
    log.debug("use case %s: %d DSL features", usecase.name, len(features))
    return table.select(steps.keys.entity, steps.keys.time, **features, **target)
