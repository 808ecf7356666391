"""Point-in-time features for the fx use case: every feature at date t uses returns up to t only.

The target is the one column that looks forward: realized volatility over the next ``horizon`` fixings.
"""

from __future__ import annotations

import math

import ibis
import ibis.expr.types as ir

from goldgate.usecase import DslFeatures, Features, SnapshotFeatures, Target, UseCase

KEYS = ["currency", "date"]
# Date of the last fixing the target looks at: training rows whose label ends on or after a test window's
# first date are purged, even when a currency's missing fixings stretch its horizon over more calendar dates.
LABEL_END = "target_end"
# Exact type the cross-sectional mean is summed in: 18 decimals resolve a volatility far below float64's precision.
XS_DECIMAL = "decimal(38, 18)"


def _realized_vol(returns: ir.Table, rows: tuple[int, int], n: int, annualization: int) -> ir.Value:
    """sqrt(mean(r^2)) over a row frame, annualized; NULL unless the frame holds all ``n`` returns."""
    w = ibis.window(group_by="currency", order_by="date", rows=rows)
    sq = returns.log_return * returns.log_return
    vol = (sq.mean().over(w)).sqrt() * math.sqrt(annualization)
    return ibis.ifelse(returns.log_return.count().over(w) == n, vol, ibis.null("float64"))


def per_currency_features(returns: ir.Table, spec: Features, target: Target) -> ir.Table:
    """Lagged returns, trailing realized volatility and the forward target per currency, in one window pass.

    Every column shares the partition (currency) and the order (date), so the engine sorts the returns once.
    All columns but the target (and its end date) use rows at or before t only.
    """
    w = ibis.window(group_by="currency", order_by="date")
    cols: dict[str, ir.Value] = {
        "ret": returns.log_return,
        "abs_ret_1": returns.log_return.abs() * math.sqrt(spec.annualization),
    }
    for k in spec.return_lags:
        cols[f"ret_lag{k}"] = returns.log_return.lag(k).over(w)
    for n in spec.vol_windows:
        cols[f"rv_{n}"] = _realized_vol(returns, (-(n - 1), 0), n, spec.annualization)
    cols[target.name] = _realized_vol(returns, (1, target.horizon), target.horizon, spec.annualization)
    cols[LABEL_END] = returns.date.lead(target.horizon).over(w)
    return returns.select("currency", "date", **cols)


def daily_context(returns: ir.Table, spec: Features) -> ir.Table:
    """One row per date: the reference currency's return and the cross-sectional mean of the shortest volatility.

    Computed from a narrow projection (currency, date, return), so the second window pass sorts three columns,
    not the whole feature row, and the result joins back on the date alone (a few thousand rows).
    """
    short = min(spec.vol_windows)
    narrow = returns.select("currency", "date", "log_return")
    daily = narrow.select(
        "date",
        "currency",
        ref=ibis.ifelse(narrow.currency == spec.cross_reference, narrow.log_return, ibis.null("float64")),
        rv=_realized_vol(narrow, (-(short - 1), 0), short, spec.annualization),
    )
    return daily.group_by("date").aggregate(
        ref_ret=daily.ref.max(),  # one reference row per date at most (keys are unique); NULL when it has none
        # Summed in exact decimal arithmetic: the result does not depend on the order in which parallel threads
        # meet the values (bit-identical reruns, on any engine), and each date keeps one small aggregate state
        # (an ordered aggregate would buffer and sort every value: the costliest operator of the step at 10M rows).
        xs_rv_mean=daily.rv.cast(XS_DECIMAL).mean().cast("float64"),
    )


def calendar_features(features: ir.Table) -> dict[str, ir.Value]:
    """Day of week (0 = Monday) and month: known in advance, so always point-in-time safe."""
    return {
        "day_of_week": features.date.day_of_week.index().cast("int32"),
        "month": features.date.month().cast("int32"),
    }


def build_features(returns: ir.Table, spec: Features, target: Target) -> ir.Table:
    """The gold feature table: keys, point-in-time features, and the forward target.

    Rows come in no particular order (readers sort where order matters): sorting the whole table only to write
    it would cost a full extra pass.
    """
    own = per_currency_features(returns, spec, target)
    day = daily_context(returns, spec)
    joined = own.left_join(day, own.date == day.date)
    short = f"rv_{min(spec.vol_windows)}"
    return joined.select(
        *[c for c in own.columns if c not in (target.name, LABEL_END)],
        ret_vs_ref=joined.ret - joined.ref_ret,
        xs_rv_delta=joined[short] - joined.xs_rv_mean,
        **(calendar_features(joined) if spec.calendar else {}),
        **{target.name: joined[target.name], LABEL_END: joined[LABEL_END]},
    )


def feature_columns(table_columns: list[str], target: Target, keys: list[str] | tuple[str, ...] = KEYS) -> list[str]:
    """Every column that is neither a key nor the target (nor the target's end date, nor engine bookkeeping)."""
    return [c for c in table_columns if c not in (*keys, target.name, LABEL_END) and not c.startswith("_")]


def model_feature_columns(table_columns: list[str], usecase: UseCase) -> list[str]:
    """The feature columns of a use case's feature table (everything but its entity, time and target columns)."""
    return feature_columns(table_columns, usecase.target, (usecase.entity, usecase.time))


def build_feature_table(gold: ir.Table, usecase: UseCase) -> ir.Table:
    """The use case's feature table from its gold table: the daily fx panel or the monthly deal snapshots."""
    spec = usecase.features
    if isinstance(spec, DslFeatures):
        from goldgate.data.features import build_dsl_features

        return build_dsl_features(gold, usecase)
    if isinstance(spec, SnapshotFeatures):
        from goldgate.features_crm import build_snapshots

        table = build_snapshots(
            gold, label_days=usecase.target.horizon, smoothing=spec.smoothing, target=usecase.target.name
        )
        # Every input as float64: a count or year that can be missing (unknown account) keeps one signature type.
        keep = (usecase.entity, usecase.time, LABEL_END)
        return table.mutate(
            **{c: table[c].cast("float64") for c in table.columns if c not in keep and table[c].type().is_numeric()}
        )
    if not isinstance(spec, Features):
        raise TypeError(f"unknown feature family {type(spec).__name__}")
    return build_features(gold, spec, usecase.target)
