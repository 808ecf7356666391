"""Silver: typed, long-format, deduplicated rates (one row per date and currency)."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import ibis.selectors as s

MISSING = ("N/A", "", "NA", "null", "NULL")


def melt_rates(bronze: ir.Table) -> ir.Table:
    """Wide bronze (one column per currency) to one candidate row per date, currency and fixing.

    Cells spelled as missing (``N/A``, empty) mean "no fixing that day" and produce no row.
    """
    long = bronze.pivot_longer(~s.cols("Date") & ~s.startswith("_"), names_to="currency", values_to="raw_value")
    long = long.filter(long.raw_value.notnull() & ~long.raw_value.strip().isin(MISSING))
    return long.select(
        raw_date=long.Date,
        currency=long.currency,
        raw_value=long.raw_value,
        date=long.Date.strip().try_cast("date"),
        rate=long.raw_value.strip().try_cast("float64"),
        _batch_id=long._batch_id,
        _row_number=long._row_number,
        _ingested_at=long._ingested_at,
    )


def dedupe_latest(rates: ir.Table) -> ir.Table:
    """Keep one row per (date, currency): the most recently ingested, then the first in its file."""
    w = ibis.window(group_by=["date", "currency"], order_by=[ibis.desc("_ingested_at"), "_row_number"])
    ranked = rates.mutate(_rank=ibis.row_number().over(w))
    return ranked.filter(ranked._rank == 0).select("date", "currency", "rate", "_batch_id", "_ingested_at")
