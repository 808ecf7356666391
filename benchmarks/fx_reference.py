"""The fx feature code as it was before fx moved onto the declarative engine, frozen here for the panel benchmark.

Until fx became YAML (``src/goldgate/usecases/fx.yaml``), its features were computed by hand-written Ibis in
``goldgate.features`` (``build_features``, the ``fx_panel`` feature family). ``benchmarks/panel.py`` times that code
(``goldgate_fx``, "today's fx path" when the engine was introduced) against the declarative engine computing the same
feature set from the YAML (``goldgate_engine``), and checks that both give the same values. The code below is that
module's feature code unchanged but for its spec, which is now a small dataclass here; it is not part of goldgate and
nothing in ``src/`` imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir

KEYS = ["currency", "date"]
# Date of the last fixing the target looks at: training rows whose label ends on or after a test window's
# first date are purged, even when a currency's missing fixings stretch its horizon over more calendar dates.
LABEL_END = "target_end"
# Exact type the cross-sectional mean is summed in: 18 decimals resolve a volatility far below float64's precision.
XS_DECIMAL = "decimal(38, 18)"


@dataclass(frozen=True)
class FxSpec:
    """The former ``fx_panel`` feature family's settings (its defaults are fx's)."""

    return_lags: list[int] = field(default_factory=lambda: [1, 2, 5])
    vol_windows: list[int] = field(default_factory=lambda: [5, 20, 60])
    cross_reference: str = "USD"
    calendar: bool = True
    annualization: int = 252


@dataclass(frozen=True)
class FxTarget:
    """The forward target: realized volatility of the next ``horizon`` returns."""

    name: str = "target_rv_5d"
    horizon: int = 5


def _realized_vol(returns: ir.Table, rows: tuple[int, int], n: int, annualization: int) -> ir.Value:
    """sqrt(mean(r^2)) over a row frame, annualized; NULL unless the frame holds all ``n`` returns."""
    w = ibis.window(group_by="currency", order_by="date", rows=rows)
    sq = returns.log_return * returns.log_return
    vol = (sq.mean().over(w)).sqrt() * math.sqrt(annualization)
    return ibis.ifelse(returns.log_return.count().over(w) == n, vol, ibis.null("float64"))


def per_currency_features(returns: ir.Table, spec: FxSpec, target: FxTarget) -> ir.Table:
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


def daily_context(returns: ir.Table, spec: FxSpec) -> ir.Table:
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


def build_features(returns: ir.Table, spec: FxSpec, target: FxTarget) -> ir.Table:
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


def features_step(lake: Any, gold: str, features: str, spec: FxSpec, target: FxTarget | None = None) -> dict[str, Any]:
    """The former fx ``features`` step: gold returns -> the feature table, merged by (currency, date).

    The table is rebuilt whole from gold, so a row gold no longer produces (a corrected input) is deleted.
    """
    version = lake.version(gold)
    table = build_features(lake.read(gold, version), spec, target or FxTarget())
    merged = lake.merge(features, table, keys=KEYS, inputs={gold: version}, delete_missing=True)
    return {"inserted": merged.inserted, "updated": merged.updated, "version": merged.version}
