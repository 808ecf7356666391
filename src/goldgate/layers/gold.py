"""Gold: daily log returns per currency."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def log_returns(rates: ir.Table) -> ir.Table:
    """ln(rate_t / rate_prev) between consecutive fixings of each currency; the first fixing has none."""
    w = ibis.window(group_by="currency", order_by="date")
    prev = rates.rate.lag().over(w)
    out = rates.select("date", "currency", "rate", log_return=(rates.rate / prev).ln())
    return out.filter(out.log_return.notnull())
