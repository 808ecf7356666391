"""Silver typing of a ``file`` source: bronze text cells to the types the use case's ``columns:`` declare.

Bronze keeps every cell as text. Here each declared column is read from its file column, trimmed, and cast to
its type; a cell that holds a value which does not parse becomes NULL next to its text (``raw_<name>``), so
``cast_expectations`` can quarantine the row with the rule and the value instead of losing it. A row with more
fields than its file's header (surplus cells in ``_extra``: typically an unquoted delimiter that shifts every later
cell) is quarantined too. Every cast is strict and the same on DuckDB and on Spark: numbers, ISO dates and offsets
are matched by a regular expression before they are cast (each engine's own casts accept different extras), and
strftime formats go through DuckDB's ``TRY_STRPTIME``, which ``run_duckdb_sql`` translates for Spark.
"""

from __future__ import annotations

import itertools
import re
import sys

import ibis
import ibis.expr.types as ir
import ibis.selectors as s

from goldgate.sql_dialect import run_duckdb_sql
from goldgate.usecase import Column, Expectation, Source, Unpivot

EXTRA = "_extra"  # a line's cells beyond its header's width, CSV-encoded (NULL on a line as wide as the header)
METADATA = ("_batch_id", "_row_number", "_ingested_at", "_file", EXTRA)
# Columns bronze adds to every batch: never source columns, never unpivoted.
BRONZE_METADATA = (*METADATA, "_source")
RAW_PREFIX = "raw_"
IBIS_TYPES = {
    "string": "string",
    "int": "int64",
    "float": "float64",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}
ISO_FORMATS = (None, "iso")
EPOCH_UNITS = {"epoch_s": 1_000_000, "epoch_ms": 1_000}  # format -> microseconds per unit
# Seconds since 1970 of 0001-01-01 and 9999-12-31 23:59:59: the range both engines hold as a timestamp.
EPOCH_RANGE_S = (-62_135_596_800, 253_402_300_799)
INT64_RANGE = (-(2.0**63), 2.0**63)  # as floats: a whole float in [lo, hi) fits int64

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
# Hours, minutes and seconds in range: DuckDB's cast would read 24:00 as the next day, Spark's would not.
_ISO_TIMESTAMP = (
    r"^\d{4}-\d{2}-\d{2}(?:[Tt ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d+)?)?"
    r" ?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_ISO_ZONE = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)? ?([Zz]|[+-]\d{2}(?::?\d{2})?)$"
_ALIASES = itertools.count()


class SchemaError(ValueError):
    """A batch or a declaration that silver cannot type (a missing column, an unknown format)."""


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _source_name(name: str, column: Column) -> str:
    return column.source or name


def _typed_columns(columns: dict[str, Column]) -> dict[str, Column]:
    return {name: c for name, c in columns.items() if c.role != "ignore"}


# ------------------------------------------------------------------------------------------------ cells


def missing_spellings(source: Source) -> list[str]:
    """The source's spellings of 'no value', trimmed; an empty cell is always one of them."""
    return sorted({m.strip() for m in source.missing} | {""})


def cell_text(value: ir.Value, source: Source) -> ir.StringValue:
    """The cell trimmed (inner whitespace kept), NULL when empty or spelled as missing."""
    text = (value if value.type().is_string() else value.cast("string")).strip()
    return ibis.ifelse(text.isin(missing_spellings(source)), ibis.null("string"), text)


def clean_text(cell: ir.StringValue, column: Column, source: Source) -> ir.StringValue:
    """A text cell with inner whitespace runs collapsed (``source.collapse_spaces``) and cased as declared."""
    if source.collapse_spaces:
        cell = cell.re_replace(r"\s+", " ")
    if column.case == "lower":
        return cell.lower()
    return cell.upper() if column.case == "upper" else cell


def _where(condition: ir.BooleanValue, value: ir.Value) -> ir.Value:
    """``value`` where ``condition`` holds, else NULL (also when the condition is NULL)."""
    return ibis.ifelse(condition, value, ibis.null(value.type()))


def _literal_class(text: str) -> str:
    """A regular expression matching ``text`` literally, the same in RE2 (DuckDB) and Java (Spark)."""
    return "".join("[" + ("\\" + ch if ch in "]\\^-" else ch) + "]" for ch in text)


def number_pattern(source: Source, integer: bool = False) -> str:
    """The whole-cell pattern of a number as the source writes it (its decimal mark, thousands grouping)."""
    digits = r"\d+"
    if source.thousands:
        digits = rf"(?:\d{{1,3}}(?:{_literal_class(source.thousands)}\d{{3}})+|\d+)"
    if integer:
        return rf"^[+-]?{digits}$"
    mark = _literal_class(source.decimal)
    return rf"^[+-]?(?:{digits}(?:{mark}\d*)?|{mark}\d+)(?:[eE][+-]?\d+)?$"


def _plain_number(cell: ir.StringValue, source: Source) -> ir.StringValue:
    """The number's text as both engines cast it: thousands separators dropped, '.' as the decimal mark."""
    if source.thousands:
        cell = cell.replace(source.thousands, "")
    if source.decimal != ".":
        cell = cell.replace(source.decimal, ".")
    return cell


def finite_number(cell: ir.StringValue, source: Source) -> ir.FloatingValue:
    """A finite float64 written as a plain number, or NULL: 'inf', 'nan' and overflows such as '1e999' do not parse."""
    number = _where(cell.re_search(number_pattern(source)), _plain_number(cell, source).try_cast("float64"))
    # NaN compares above every number on both engines, so one bound also rejects it (Ibis' isinf is not portable).
    return _where(number.abs() <= sys.float_info.max, number)


def as_float(cell: ir.StringValue, source: Source) -> ir.FloatingValue:
    """A finite float64, or NULL; a number followed by a percent sign is a fraction ('13.5%' and '13.5 %' are 0.135).

    ``cell`` is trimmed already, so the sign ends it; '%' alone, '%5' and '5%%' do not parse.
    """
    percent = cell.endswith("%")
    body = ibis.ifelse(percent, cell.substr(0, cell.length() - 1).rstrip(), cell)
    number = finite_number(body, source)
    return ibis.ifelse(percent, number / 100.0, number)


def as_int(cell: ir.StringValue, source: Source) -> ir.IntegerValue:
    """An int64, or NULL: integers are cast exactly, '3.0' is accepted, '3.5', '3%' and out-of-range values are not."""
    exact = _where(cell.re_search(number_pattern(source, integer=True)), _plain_number(cell, source).try_cast("int64"))
    number = finite_number(cell, source)
    lo, hi = INT64_RANGE
    whole = _where((number % 1 == 0) & (number >= lo) & (number < hi), number.try_cast("int64"))
    return ibis.coalesce(exact, whole)


def as_bool(cell: ir.StringValue, column: Column) -> ir.BooleanValue:
    """True or false by the column's spellings (case-insensitive), else NULL."""
    lowered = cell.lower()
    return ibis.cases(
        (lowered.isin([v.strip().lower() for v in column.true_values]), True),
        (lowered.isin([v.strip().lower() for v in column.false_values]), False),
        else_=ibis.null("boolean"),
    )


def iso_date(cell: ir.StringValue) -> ir.DateValue:
    """A date written YYYY-MM-DD (and a real one: 2012-02-30 does not parse)."""
    return _where(cell.re_search(_ISO_DATE), cell.try_cast("date"))


def iso_zone(cell: ir.StringValue) -> ir.StringValue:
    """The UTC offset that ends an ISO date and time ('Z', '+02:00', '-0530', '+02'), '' when it has none."""
    return cell.re_extract(_ISO_ZONE, 1)


def iso_timestamp(cell: ir.StringValue, zone: ir.StringValue) -> ir.TimestampValue:
    """An ISO 8601 date or date and time as naive UTC, its offset ``zone`` (from ``iso_zone``) applied."""
    local = cell.substr(0, cell.length() - zone.length()).strip().replace("T", " ").replace("t", " ")
    # At most microseconds: the engines' casts disagree on longer fractions, so the rest is cut.
    local = local.replace(",", ".").substr(0, len("2012-01-31 10:00:00.123456"))
    hours = ibis.ifelse(zone.length() >= 3, zone.substr(1, 2).try_cast("int64"), 0)
    minutes = ibis.ifelse(zone.length() > 3, zone.right(2).try_cast("int64"), 0)
    offset = ibis.ifelse(zone.startswith("-"), -1, 1) * (hours * 60 + minutes)
    utc = local.try_cast("timestamp") - offset.as_interval("m")
    return _where(cell.re_search(_ISO_TIMESTAMP) & (hours < 24) & (minutes < 60), utc)


def epoch_timestamp(cell: ir.StringValue, source: Source, fmt: str) -> ir.TimestampValue:
    """Seconds (``epoch_s``) or milliseconds (``epoch_ms``) since 1970-01-01 UTC, naive UTC; NULL out of range."""
    per_unit = EPOCH_UNITS[fmt]
    number = finite_number(cell, source)
    seconds = number * per_unit / 1_000_000
    # Bounded before the cast, so no engine is asked to hold a number of microseconds beyond int64.
    bounded = _where((seconds >= EPOCH_RANGE_S[0]) & (seconds <= EPOCH_RANGE_S[1]), number * per_unit)
    return ibis.timestamp("1970-01-01 00:00:00") + bounded.round().cast("int64").as_interval("us")


# ------------------------------------------------------------------------------------------------ typing


def format_kind(name: str, column: Column) -> str:
    """How a date/timestamp column's text is read: 'iso', 'epoch_s', 'epoch_ms' or 'strftime'."""
    fmt = column.format
    if isinstance(fmt, list):
        if fmt and all("%" in f for f in fmt):
            return "strftime"
        raise SchemaError(f"column '{name}': formats {fmt} must all be strftime formats such as '%Y-%m-%d'")
    if fmt in ISO_FORMATS:
        return "iso"
    if fmt in EPOCH_UNITS:
        return fmt
    if fmt is not None and "%" in fmt:
        return "strftime"
    raise SchemaError(
        f"column '{name}': format '{fmt}' is not iso, epoch_s, epoch_ms or a strftime format such as '%Y-%m-%d'"
    )


def _cell_name(name: str, column: Column) -> str:
    """Where the staged cell of a column is: its own name for text, ``raw_<name>`` for every other type."""
    return name if column.type == "string" else RAW_PREFIX + name


def _zone_name(name: str) -> str:
    return f"__zone_{name}"


def _needs_zone(name: str, column: Column) -> bool:
    return column.type == "timestamp" and format_kind(name, column) == "iso"


def stage_cells(raw: ir.Table, declared: dict[str, Column], source: Source) -> ir.Table:
    """Each declared column's cell text once (and the offset of ISO timestamps), plus the metadata.

    Typing refers to a cell several times (the pattern check, the cast, the range checks); reading it from this
    projection, kept apart by ``view()``, computes the trimming and the missing spellings once per cell.
    """
    cells = {_cell_name(n, c): cell_text(raw[_source_name(n, c)], source) for n, c in declared.items()}
    zones = {_zone_name(n): iso_zone(cells[RAW_PREFIX + n]) for n, c in declared.items() if _needs_zone(n, c)}
    metadata = {m: raw[m] for m in METADATA if m in raw.columns}
    if EXTRA not in metadata:  # Parquet, JSON lines and Delta have no ragged lines; the width rule reads NULL
        metadata[EXTRA] = ibis.null("string")
    return raw.select(**cells, **zones, **metadata).view()


def typed_value(staged: ir.Table, name: str, column: Column, source: Source) -> ir.Value | None:
    """The column's staged cell as its type, or None for a strftime date/timestamp (parsed by ``TRY_STRPTIME``)."""
    cell = staged[_cell_name(name, column)]
    if column.type == "string":
        return clean_text(cell, column, source)
    if column.type == "float":
        return as_float(cell, source)
    if column.type == "int":
        return as_int(cell, source)
    if column.type == "bool":
        return as_bool(cell, column)
    kind = format_kind(name, column)
    if kind == "strftime":
        return None
    if kind != "iso":
        stamp = epoch_timestamp(cell, source, kind)
        return stamp.date() if column.type == "date" else stamp
    return iso_date(cell) if column.type == "date" else iso_timestamp(cell, staged[_zone_name(name)])


def _check_names(raw: ir.Table, columns: dict[str, Column]) -> None:
    """Every declared column readable, and no output name claimed twice."""
    absent = missing_columns(list(raw.columns), columns)
    if absent:
        raise SchemaError(f"bronze batch lacks the declared column(s) {', '.join(absent)}: silver cannot type it")
    outputs = [*columns, *(RAW_PREFIX + n for n, c in columns.items() if c.type != "string"), *METADATA]
    repeated = sorted({n for n in outputs if outputs.count(n) > 1})
    if repeated:
        raise SchemaError(
            f"columns: the name(s) {', '.join(repeated)} clash with a raw_ text column or bronze metadata; rename them"
        )


def _parse_any(cell: str, formats: list[str]) -> str:
    """SQL for ``cell`` parsed by the first of ``formats`` that fits it (strict), NULL when none does."""
    tries = [f"TRY_STRPTIME({cell}, {_sql_string(fmt)})" for fmt in formats]
    return tries[0] if len(tries) == 1 else f"COALESCE({', '.join(tries)})"


def _strptime(table: ir.Table, pending: dict[str, list[str]]) -> ir.Table:
    """``table`` with ``__strptime_<i>`` columns: each ``raw_<name>`` parsed by its strftime format(s) (strict)."""
    alias = f"__schema_{next(_ALIASES)}"  # unique, so several typed batches can be combined in one query
    parsed = ", ".join(
        f"{_parse_any(_quoted(RAW_PREFIX + name), formats)} AS {_quoted(f'__strptime_{i}')}"
        for i, (name, formats) in enumerate(pending.items())
    )
    return run_duckdb_sql(table.alias(alias), f"SELECT *, {parsed} FROM {alias}")  # noqa: S608 - quoted names


def _formats(column: Column) -> list[str]:
    """A strftime column's formats as a list (one, or the first-that-parses list the column declares)."""
    fmt = column.format
    return list(fmt) if isinstance(fmt, list) else [str(fmt)]


def type_columns(raw: ir.Table, columns: dict[str, Column], source: Source) -> ir.Table:
    """Every declared column except role ignore, typed, under its declared name (read from ``Column.source``).

    For each declared column whose type is not string, ``raw_<name>`` holds the trimmed cell text (NULL when empty
    or a missing spelling), so a cell that does not parse is NULL in ``<name>`` with its text kept. Text columns
    are trimmed with inner whitespace kept. Metadata columns pass through (``_extra`` NULL where the source has
    none). ``raw`` is bronze after
    ``shape_bronze``; a declared column it lacks is an error (``missing_columns`` names them first).
    """
    declared = _typed_columns(columns)
    _check_names(raw, declared)
    staged = stage_cells(raw, declared, source)
    typed = {name: typed_value(staged, name, c, source) for name, c in declared.items()}
    texts = [RAW_PREFIX + name for name, c in declared.items() if c.type != "string"]
    metadata = [m for m in METADATA if m in staged.columns]
    ready = {name: value for name, value in typed.items() if value is not None}
    table = staged.select(**ready, **{n: staged[n] for n in [*texts, *metadata]})
    pending = {name: _formats(declared[name]) for name, value in typed.items() if value is None}
    if not pending:
        return table
    table = _strptime(table, pending)
    parsed = {name: table[f"__strptime_{i}"] for i, name in enumerate(pending)}
    # Each engine names the types of a SQL query's columns its own way (DuckDB: timestamp(6)); cast to one.
    ordered = {n: (parsed[n] if n in parsed else table[n]).cast(IBIS_TYPES[c.type]) for n, c in declared.items()}
    return table.select(**ordered, **{n: table[n] for n in [*texts, *metadata]})


# ------------------------------------------------------------------------------------------------ layout


def unpivoted_columns(raw_columns: list[str], spec: Unpivot) -> list[str]:
    """The wide columns ``spec`` turns into rows: its list, or every column but the ids and the metadata."""
    if spec.columns is not None:
        return list(spec.columns)
    keep = {*spec.id_columns, *BRONZE_METADATA, spec.names_to, spec.values_to}
    return [c for c in raw_columns if c not in keep]


def _melt(wide: ir.Table, columns: list[str], names_to: str, values_to: str) -> ir.Table:
    """One row per row of ``wide`` and non-NULL cell of ``columns``; the other columns ride along.

    On DuckDB this is its own ``UNPIVOT``, which reads a wide batch once (Ibis' portable ``pivot_longer`` builds
    and unnests a struct per cell, much slower on files with thousands of columns).
    """
    if ibis.get_backend(wide).name != "duckdb":
        long = wide.pivot_longer(s.cols(*columns), names_to=names_to, values_to=values_to)
        return long.filter(long[values_to].notnull())
    alias = f"__wide_{next(_ALIASES)}"
    names = ", ".join(_quoted(c) for c in columns)
    query = f"SELECT * FROM {alias} UNPIVOT ({_quoted(values_to)} FOR {_quoted(names_to)} IN ({names}))"  # noqa: S608
    return wide.alias(alias).sql(query)


def shape_bronze(bronze: ir.Table, source: Source) -> ir.Table:
    """``bronze`` as is, or made long when ``source.unpivot`` is set.

    Long: one row per (id columns, unpivoted column) with ``names_to`` the column's name and ``values_to`` the cell
    text. Cells that are NULL or a missing spelling make no row (a wide file's empty cell is no observation, not a
    failure); the metadata rides along.
    """
    spec = source.unpivot
    if spec is None:
        return bronze
    wide = unpivoted_columns(list(bronze.columns), spec)
    absent = [c for c in [*spec.id_columns, *wide] if c not in bronze.columns]
    if absent:
        raise SchemaError(f"bronze batch lacks the unpivot column(s) {', '.join(absent)}")
    if not wide:
        raise SchemaError(f"unpivot: bronze batch has no column besides the ids {', '.join(spec.id_columns)}")
    long = _melt(bronze, wide, spec.names_to, spec.values_to)
    return long.filter(cell_text(long[spec.values_to], source).notnull())


# ------------------------------------------------------------------------------------------------ rules


def rule_stem(name: str) -> str:
    """A column name as the start of an expectation name (lower-case letters, digits, underscores)."""
    stem = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return stem if stem[:1].isalpha() else f"c_{stem}"


def _type_label(column: Column, source: Source) -> str:
    """The type and the way its text is read, as a rule description names them."""
    if column.type in ("float", "int"):
        grouping = f", thousands '{source.thousands}'" if source.thousands else ""
        if column.type == "int":
            return f"a whole number within int64 (decimal '{source.decimal}'{grouping})"
        return f"a finite number (decimal '{source.decimal}'{grouping}; a trailing % divides by 100)"
    if column.type == "bool":
        return f"a bool (true: {', '.join(column.true_values)}; false: {', '.join(column.false_values)})"
    fmt = column.format or "iso"
    if isinstance(fmt, list):
        return f"a {column.type} in one of the formats " + ", ".join(f"'{f}'" for f in fmt)
    return f"a {column.type} in format '{fmt}'" + (" (ISO 8601)" if fmt == "iso" else "")


ROW_WIDTH_RULE = "row_fits_header"


def cast_expectations(columns: dict[str, Column], source: Source) -> list[Expectation]:
    """Drop rules for the typing: ``row_fits_header``, ``<name>_parses`` and ``<name>_present``.

    ``row_fits_header``: the line has no cell beyond its header's width (bronze keeps surplus cells in
    ``_extra``); such a line is almost always shifted by an unquoted delimiter, so none of its cells can be
    trusted in their columns. It comes first: it is the cause of whatever else the shifted cells fail.
    ``<name>_parses`` (every non-string column): the cell has a value that does not parse as the type and format.
    ``<name>_present`` (every column that does not allow missing values): the cell is empty or spelled as missing.
    The parse rules come before the presence rules, so a row failing both is quarantined under the more specific one.
    """
    declared = _typed_columns(columns)
    width = Expectation(
        name=ROW_WIDTH_RULE,
        rule=f"{_quoted(EXTRA)} IS NULL",
        description="a line has no more fields than its header (an unquoted delimiter shifts every later cell); "
        f"the surplus cells are in {EXTRA}",
    )
    parses = [
        Expectation(
            name=f"{rule_stem(name)}_parses",
            rule=f"{_quoted(RAW_PREFIX + name)} IS NULL OR {_quoted(name)} IS NOT NULL",
            description=f"{name} must be {_type_label(c, source)}; the text is in {RAW_PREFIX}{name}",
        )
        for name, c in declared.items()
        if c.type != "string"
    ]
    present = [
        Expectation(
            name=f"{rule_stem(name)}_present",
            not_null=[name],
            description=f"{name} must have a value (role {c.role}, not nullable)",
        )
        for name, c in declared.items()
        if not c.allows_missing
    ]
    return [width, *parses, *present]


def missing_columns(raw_columns: list[str], columns: dict[str, Column]) -> list[str]:
    """File names of the declared columns (role ignore aside) the batch lacks; silver stops on them.

    ``raw_columns`` are the batch's columns after ``shape_bronze`` (an unpivoted batch has ``names_to`` and
    ``values_to``).
    """
    wanted = dict.fromkeys(_source_name(n, c) for n, c in _typed_columns(columns).items())
    return [name for name in wanted if name not in raw_columns]


def undeclared_columns(raw_columns: list[str], columns: dict[str, Column], source: Source) -> list[str]:
    """Source columns no declaration reads: kept in bronze, reported, not typed.

    A column the unpivot turns into rows is read through ``names_to`` and ``values_to``.
    """
    read = {_source_name(n, c) for n, c in columns.items()}
    if source.unpivot is not None:
        read |= set(unpivoted_columns(raw_columns, source.unpivot))
    return [c for c in raw_columns if c not in BRONZE_METADATA and c not in read]
