"""Point-in-time features for the fx use case: every feature at date t uses returns up to t only.

The target is the one column that looks forward: realized volatility over the next ``horizon`` fixings.
"""

from __future__ import annotations

import math

import ibis
import ibis.expr.types as ir

from goldgate.usecase import Features, Target

KEYS = ["currency", "date"]
# Date of the last fixing the target looks at: training rows whose label ends on or after a test window's
# first date are purged, even when a currency's missing fixings stretch its horizon over more calendar dates.
LABEL_END = "target_end"


def _realized_vol(returns: ir.Table, rows: tuple[int, int], n: int, annualization: int) -> ir.Value:
    """sqrt(mean(r^2)) over a row frame, annualized; NULL unless the frame holds all ``n`` returns."""
    w = ibis.window(group_by="currency", order_by="date", rows=rows)
    sq = returns.log_return * returns.log_return
    vol = (sq.mean().over(w)).sqrt() * math.sqrt(annualization)
    return ibis.ifelse(returns.log_return.count().over(w) == n, vol, ibis.null("float64"))


def trailing_features(returns: ir.Table, spec: Features) -> ir.Table:
    """Lagged returns and trailing realized volatility per currency, computed from rows at or before t."""
    w = ibis.window(group_by="currency", order_by="date")
    cols: dict[str, ir.Value] = {
        "ret": returns.log_return,
        "abs_ret_1": returns.log_return.abs() * math.sqrt(spec.annualization),
    }
    for k in spec.return_lags:
        cols[f"ret_lag{k}"] = returns.log_return.lag(k).over(w)
    for n in spec.vol_windows:
        cols[f"rv_{n}"] = _realized_vol(returns, (-(n - 1), 0), n, spec.annualization)
    return returns.select("currency", "date", **cols)


def cross_features(trailing: ir.Table, returns: ir.Table, spec: Features) -> ir.Table:
    """Cross-currency context on the same date: spread to the reference currency and to the cross-section."""
    ref = returns.filter(returns.currency == spec.cross_reference).select(
        ref_date=returns.date, ref_ret=returns.log_return
    )
    joined = trailing.left_join(ref, trailing.date == ref.ref_date)
    # An explicit order makes the cross-sectional sum run in the same order every time (bit-identical reruns).
    day = ibis.window(group_by="date", order_by="currency", rows=(None, None))
    short = f"rv_{min(spec.vol_windows)}"
    return joined.select(
        *trailing.columns,
        ret_vs_ref=joined.ret - joined.ref_ret,
        xs_rv_delta=joined[short] - joined[short].mean().over(day),
    )


def calendar_features(features: ir.Table) -> ir.Table:
    """Day of week (0 = Monday) and month: known in advance, so always point-in-time safe."""
    return features.mutate(
        day_of_week=features.date.day_of_week.index().cast("int32"),
        month=features.date.month().cast("int32"),
    )


def add_target(features: ir.Table, returns: ir.Table, spec: Features, target: Target) -> ir.Table:
    """Realized volatility of the next ``horizon`` returns (NULL where the future is not known yet)."""
    w = ibis.window(group_by="currency", order_by="date")
    fwd = returns.select(
        "currency",
        "date",
        **{target.name: _realized_vol(returns, (1, target.horizon), target.horizon, spec.annualization)},
        **{LABEL_END: returns.date.lead(target.horizon).over(w)},
    )
    return features.left_join(fwd, ["currency", "date"]).select(*features.columns, target.name, LABEL_END)


def build_features(returns: ir.Table, spec: Features, target: Target) -> ir.Table:
    """The gold feature table: keys, point-in-time features, and the forward target."""
    feats = cross_features(trailing_features(returns, spec), returns, spec)
    if spec.calendar:
        feats = calendar_features(feats)
    return add_target(feats, returns, spec, target).order_by(KEYS)


def feature_columns(table_columns: list[str], target: Target) -> list[str]:
    """Every column that is neither a key nor the target (nor the target's end date)."""
    return [c for c in table_columns if c not in (*KEYS, target.name, LABEL_END)]
