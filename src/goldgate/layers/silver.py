"""Silver: typed, long-format, deduplicated rates (one row per date and currency)."""

from __future__ import annotations

import itertools

import ibis
import ibis.expr.types as ir
import ibis.selectors as s

from goldgate.sql_dialect import run_duckdb_sql

_ALIASES = itertools.count()
MISSING = ("n/a", "", "na", "null", "none", "nan")  # compared lower-case


def melt_rates(bronze: ir.Table) -> ir.Table:
    """Wide bronze (one column per currency) to one candidate row per date, currency and fixing.

    Cells spelled as missing (``N/A``, empty) mean "no fixing that day" and produce no row.
    """
    long = unpivot(bronze, [c for c in bronze.columns if c != "Date" and not c.startswith("_")])
    long = long.filter(long.raw_value.notnull() & ~long.raw_value.strip().lower().isin(MISSING))
    typed = long.select(
        raw_date=long.Date,
        currency=long.currency.strip(),
        raw_value=long.raw_value,
        rate=long.raw_value.strip().try_cast("float64"),
        _batch_id=long._batch_id,
        _row_number=long._row_number,
        _ingested_at=long._ingested_at,
    )
    # ISO dates (history file) or "30 October 2026" (daily file); anything else stays NULL for the rules to catch.
    # The same two formats as the reader's slice filter (strict strptime, not a lenient CAST that would also accept
    # "2019/01/05" or "2019-01-05T00:00"), so a date the slice could not judge never reaches silver.
    alias = f"__typed_{next(_ALIASES)}"  # unique, so several melts can be combined in one query
    query = (
        "SELECT raw_date, currency, raw_value, CAST(COALESCE(TRY_STRPTIME(TRIM(raw_date), '%Y-%m-%d'), "
        "TRY_STRPTIME(TRIM(raw_date), '%d %B %Y')) AS DATE) AS date, rate, _batch_id, _row_number, "
        "_ingested_at FROM "
    )
    return run_duckdb_sql(typed.alias(alias), query + alias)


def unpivot(wide: ir.Table, columns: list[str], native: bool = True) -> ir.Table:
    """One row per row of ``wide`` and column in ``columns``: ``currency`` (the column name) and ``raw_value``.

    The other columns ride along. On DuckDB this is its own ``UNPIVOT`` (``native``), which reads the wide batch
    once: Ibis' portable ``pivot_longer`` builds and unnests a struct per cell, about ten times slower on a file of
    thousands of currency columns. Both leave out NULL cells' rows only after the caller's filter, so they agree.
    """
    if not native or ibis.get_backend(wide).name != "duckdb":
        return wide.pivot_longer(s.cols(*columns), names_to="currency", values_to="raw_value")
    alias = f"__wide_{next(_ALIASES)}"
    names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    query = f"SELECT * FROM {alias} UNPIVOT INCLUDE NULLS (raw_value FOR currency IN ({names}))"  # noqa: S608 - quoted
    return wide.alias(alias).sql(query)


def dedupe_latest(rates: ir.Table) -> ir.Table:
    """Keep one row per (date, currency): the most recently ingested, then the first in its file."""
    w = ibis.window(group_by=["date", "currency"], order_by=[ibis.desc("_ingested_at"), "_row_number"])
    ranked = rates.mutate(_rank=ibis.row_number().over(w))
    return ranked.filter(ranked._rank == 0).select("date", "currency", "rate", "_batch_id", "_ingested_at")
