"""Point-in-time monthly snapshots of open deals for the crm use case.

At every month end ``s``, from the first one by which a deal has closed, each deal that is open (engaged on or
before ``s``, not closed by ``s``) becomes one row. Its features use only what was known at ``s``: the deal's own
static attributes (product price, ...), how long it has been open, the workload of its agent at ``s``, and win
rates of its agent, manager, office, product and series computed from deals closed on or before ``s``. The label
looks forward: was the deal won within ``label_days`` after ``s``.

No feature reads the deal's account. An export leaves the account empty on deals still open at the export date,
so at a past snapshot an empty account foretells that the deal will not have closed by then. Any value derived
from the account (its size, age and parent, the account's and sector's win rates, its open deals) would be
missing, or a default, on exactly those rows; a model splits on that as readily as on a value, so these features
are left out for every deal, not only for those without an account.

The prior aggregates never join a snapshot with all deals: closed deals are counted per group and month, the
counts are summed cumulatively over a dense group x snapshot grid, and the grid is joined to the open rows on
(group, snapshot). Only the open-deal expansion is a range join.

``truncate_deals`` and ``check_point_in_time`` form the leakage check: a snapshot rebuilt from the export as it
looked at ``s`` must carry exactly the same features as the snapshot built from the full export.
"""

from __future__ import annotations

import calendar
import logging
import math
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from numbers import Real
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

log = logging.getLogger(__name__)

SNAPSHOT_KEYS = ["opportunity_id", "snapshot_date"]
LABEL_END = "target_end"
CLOSED_STAGES = ("Won", "Lost")
# Stand-in close date of open deals, so the open-deal condition is two plain inequalities (a fast range join).
_OPEN_FOREVER = date(9999, 12, 31)
# Feature prefix -> gold column of the categories whose prior win rate and closed-deal count enter as features.
# Account and sector are not among them: whether a deal has an account is known only at the export date.
GROUPS: dict[str, str] = {
    "agent": "sales_agent",
    "manager": "manager",
    "office": "regional_office",
    "product": "product",
    "series": "series",
}
# Months (this one included) over which the agent's recent closed deals are counted.
RECENT_MONTHS = 3


def month_end(day: date) -> date:
    """The last day of ``day``'s month."""
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def _month_index(day: date) -> int:
    """Months since year 0, the integer the SQL side computes as ``year * 12 + month``."""
    return day.year * 12 + day.month


def outcome_known(deals: ir.Table) -> ir.DateValue:
    """The day a closed deal's outcome became known.

    That is its close date, or its engage date when a dirty row closes before it engages: the export truncated
    at an earlier day does not hold that deal yet.
    """
    return ibis.greatest(deals.close_date, deals.engage_date)


def data_bounds(deals: ir.Table) -> tuple[date | None, date | None]:
    """The first day a Won/Lost outcome was known and the export date (latest engage or close date).

    The first is None when no deal is closed, the export date None for an empty export.
    """
    closed = deals.deal_stage.isin(CLOSED_STAGES) & deals.close_date.notnull()
    row = (
        deals.aggregate(
            first_outcome=outcome_known(deals).min(where=closed),
            last_engage=deals.engage_date.max(),
            last_close=deals.close_date.max(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    ends = [d for d in (row["last_engage"], row["last_close"]) if d is not None]
    return row["first_outcome"], max(ends) if ends else None


def snapshot_dates(deals: ir.Table, data_end: date | None = None) -> list[date]:
    """Month ends from the first one on/after the first Won/Lost close to the last one on/before ``data_end``.

    Earlier month ends are left out: no outcome is known at them, so every history feature is empty, and their
    labels mostly record that nothing had closed yet. A CRM export can hold months of engaged deals before its
    first close (the Maven export five month ends, all labelled 0); their rows would inflate the negatives with
    rows unlike any the model scores later.
    ``data_end`` defaults to the export date: the latest engage or close date in the data.
    """
    first, export_date = data_bounds(deals)
    end = data_end if data_end is not None else export_date
    if first is None or end is None:
        return []
    dates: list[date] = []
    s = month_end(first)
    while s <= end:
        dates.append(s)
        s = month_end(s + timedelta(days=1))
    return dates


def _snapshot_table(dates: list[date], label_days: int, data_end: date | None) -> ir.Table:
    """One row per snapshot with its month index, label end and whether that label is already observable."""
    ends = [s + timedelta(days=label_days) for s in dates]
    table = pa.table(
        {
            "snapshot_date": pa.array(dates, pa.date32()),
            "snap_month": pa.array([_month_index(s) for s in dates], pa.int64()),
            LABEL_END: pa.array(ends, pa.date32()),
            "label_known": pa.array([data_end is not None and e <= data_end for e in ends], pa.bool_()),
        }
    )
    return ibis.memtable(table)


def open_deals(deals: ir.Table, snaps: ir.Table) -> ir.Table:
    """Every (deal, snapshot) pair where the deal is open at the snapshot: engaged by then and not yet closed."""
    return deals.join(
        snaps,
        [
            deals.engage_date <= snaps.snapshot_date,
            deals.close_date.fill_null(_OPEN_FOREVER) > snaps.snapshot_date,
        ],
    )


def closed_deals(deals: ir.Table, first_month: int) -> ir.Table:
    """Won/Lost deals with the month (``snap_month``) from whose month end on their outcome counts as known.

    The outcome is known at its close date, or at the engage date when a dirty row closes before it engages:
    the truncated export drops deals engaged after ``s``, so counting them earlier would break point-in-time
    equality. Deals closed before the first snapshot all count from the first snapshot on.
    """
    closed = deals.filter(deals.close_date.notnull() & deals.deal_stage.isin(CLOSED_STAGES))
    known = outcome_known(closed)
    month = (known.year().cast("int64") * 12 + known.month().cast("int64")).clip(lower=first_month)
    won = closed.deal_stage == "Won"
    return closed.mutate(
        snap_month=month,
        is_won=won.cast("int64"),
        won_value=ibis.ifelse(won, closed.close_value, 0.0).cast("float64"),
        won_date=ibis.ifelse(won, closed.close_date, ibis.null("date")),
    )


def group_history(closed: ir.Table, snaps: ir.Table, key: str, prefix: str, *, agent_extras: bool = False) -> ir.Table:
    """Closed and won deal counts of each ``key`` value up to each snapshot (dense key x snapshot grid).

    With ``agent_extras`` it also carries the won value, the last win date and the deals closed in the last
    ``RECENT_MONTHS`` months.
    """
    with_key = closed.filter(closed[key].notnull())
    metrics: dict[str, ir.Value] = {"n_closed": with_key.count(), "n_won": with_key.is_won.sum()}
    if agent_extras:
        metrics |= {"won_value": with_key.won_value.sum(), "last_win": with_key.won_date.max()}
    per_month = with_key.group_by([key, "snap_month"]).aggregate(**metrics)
    grid = with_key.select(key).distinct().cross_join(snaps.select("snapshot_date", "snap_month"))
    joined = grid.left_join(per_month, [key, "snap_month"])
    upto = ibis.window(group_by=key, order_by="snap_month", rows=(None, 0))
    cols: dict[str, ir.Value] = {
        f"{prefix}_closed_n": joined.n_closed.fill_null(0).sum().over(upto).cast("int64"),
        f"{prefix}_won_n": joined.n_won.fill_null(0).sum().over(upto).cast("int64"),
    }
    if agent_extras:
        recent = ibis.window(group_by=key, order_by="snap_month", rows=(-(RECENT_MONTHS - 1), 0))
        cols |= {
            f"{prefix}_won_value": joined.won_value.fill_null(0.0).sum().over(upto).cast("float64"),
            f"{prefix}_last_win": joined.last_win.max().over(upto),
            f"{prefix}_closed_{RECENT_MONTHS}m": joined.n_closed.fill_null(0).sum().over(recent).cast("int64"),
        }
    return joined.select(key, "snapshot_date", **cols)


def global_history(closed: ir.Table, snaps: ir.Table) -> ir.Table:
    """Closed and won deal counts over all deals up to each snapshot."""
    per_month = closed.group_by("snap_month").aggregate(g_closed=closed.count(), g_won=closed.is_won.sum())
    joined = snaps.select("snapshot_date", "snap_month").left_join(per_month, "snap_month")
    upto = ibis.window(order_by="snap_month", rows=(None, 0))
    return joined.select(
        "snapshot_date",
        prior_closed=joined.g_closed.fill_null(0).sum().over(upto).cast("int64"),
        prior_won=joined.g_won.fill_null(0).sum().over(upto).cast("int64"),
    )


def _ratio(num: ir.NumericValue, den: ir.NumericValue) -> ir.FloatingValue:
    """num / den as float64, NULL where den is 0 (rather than relying on each backend's division by zero)."""
    return ibis.ifelse(den > 0, num.cast("float64") / den.cast("float64"), ibis.null("float64"))


def smoothed_rate(won: ir.Value, closed: ir.Value, prior: ir.Value, smoothing: float) -> ir.FloatingValue:
    """(won + smoothing * prior) / (closed + smoothing): few closed deals stay near the global prior rate."""
    w, n = won.fill_null(0), closed.fill_null(0)
    return _ratio(w.cast("float64") + prior * smoothing, n.cast("float64") + smoothing)


def _static_features(t: ir.Table) -> dict[str, ir.Value]:
    """Features of the deal itself and its product/agent references, plus the snapshot's calendar.

    The account's attributes are left out (see the module docstring).
    """
    s = t.snapshot_date
    return {
        "days_since_engage": s.delta(t.engage_date, unit="day").cast("int64"),
        "sales_price": t.sales_price.cast("float64"),
        "product_known": t.product_known.cast("int64"),
        "agent_known": t.agent_known.cast("int64"),
        "month": s.month().cast("int64"),
    }


def _history_features(t: ir.Table, smoothing: float) -> dict[str, ir.Value]:
    """Prior win rates and closed-deal counts per category, and the agent's track record, at the snapshot."""
    prior = _ratio(t.prior_won, t.prior_closed)
    cols: dict[str, ir.Value] = {"prior_win_rate": prior, "prior_closed": t.prior_closed.fill_null(0)}
    for prefix in GROUPS:
        won, closed = t[f"{prefix}_won_n"], t[f"{prefix}_closed_n"]
        cols[f"{prefix}_win_rate"] = smoothed_rate(won, closed, prior, smoothing)
        cols[f"{prefix}_closed"] = closed.fill_null(0).cast("int64")
    cols |= {
        "agent_won_value": t.agent_won_value.fill_null(0.0),
        "agent_days_since_win": t.snapshot_date.delta(t.agent_last_win, unit="day").cast("int64"),
        f"agent_closed_{RECENT_MONTHS}m": t[f"agent_closed_{RECENT_MONTHS}m"].fill_null(0).cast("int64"),
    }
    return cols


def pipeline_load(rows: ir.Table) -> ir.Table:
    """Open pipeline of each agent at each snapshot: its open deals and their list value.

    Aggregated and joined back rather than computed as window functions, which would sort the wide rows.
    """
    return rows.group_by(["sales_agent", "snapshot_date"]).aggregate(
        agent_open_deals=rows.count(), agent_open_value=rows.sales_price.sum().cast("float64")
    )


def _label(t: ir.Table, target: str) -> dict[str, ir.Value]:
    """Won within the label window after the snapshot (1.0/0.0), NULL while the window reaches past the data."""
    won_in_window = (t.deal_stage == "Won") & t.close_date.notnull() & (t.close_date <= t[LABEL_END])
    return {target: ibis.ifelse(t.label_known, won_in_window.cast("float64"), ibis.null("float64"))}


def build_snapshots(
    deals: ir.Table,
    *,
    label_days: int = 30,
    smoothing: float = 10.0,
    data_end: date | None = None,
    target: str = "won_30d",
) -> ir.Table:
    """One row per (month end, open deal) with point-in-time features, the label ``target`` and ``target_end``.

    ``deals`` is the gold table ``gold.crm_deals``. ``data_end`` (default: the export date) bounds the snapshots
    and decides which labels are observable: the label is NULL when ``snapshot + label_days`` is after it.
    """
    if data_end is None:
        data_end = data_bounds(deals)[1]
    dates = snapshot_dates(deals, data_end)
    log.info("crm snapshots: %d month ends up to %s", len(dates), data_end)
    snaps = _snapshot_table(dates, label_days, data_end)
    first_month = _month_index(dates[0]) if dates else 0
    closed = closed_deals(deals, first_month)

    rows = open_deals(deals, snaps)
    agent_load = pipeline_load(rows)
    rows = rows.left_join(global_history(closed, snaps), "snapshot_date")
    rows = rows.left_join(agent_load, ["sales_agent", "snapshot_date"])
    for prefix, key in GROUPS.items():
        history = group_history(closed, snaps, key, prefix, agent_extras=prefix == "agent")
        rows = rows.left_join(history, [key, "snapshot_date"])
    return rows.select(
        "opportunity_id",
        "snapshot_date",
        **_static_features(rows),
        **_history_features(rows, smoothing),
        agent_open_deals=rows.agent_open_deals.cast("int64"),
        agent_open_value=rows.agent_open_value,
        **_label(rows, target),
        **{LABEL_END: rows[LABEL_END]},
    ).order_by(SNAPSHOT_KEYS)


def snapshot_feature_columns(columns: Sequence[str], target: str = "won_30d") -> list[str]:
    """The feature columns of a snapshot table: everything but the keys, the label and its end date."""
    return [c for c in columns if c not in (*SNAPSHOT_KEYS, target, LABEL_END)]


def truncate_deals(deals: ir.Table, at: date) -> ir.Table:
    """The export as it would have looked on ``at``.

    Deals engaged after ``at`` did not exist yet; deals closed after ``at`` were still open ('Engaging', no close
    date or value). Rows without an engage date (Prospecting) carry no time and are kept as they are.
    """
    kept = deals.filter(deals.engage_date.isnull() | (deals.engage_date <= at))
    later = kept.close_date.notnull() & (kept.close_date > at)
    return kept.mutate(
        deal_stage=ibis.ifelse(later, "Engaging", kept.deal_stage),
        close_date=ibis.ifelse(later, ibis.null("date"), kept.close_date),
        close_value=ibis.ifelse(later, ibis.null("float64"), kept.close_value.cast("float64")),
    )


def _differs(a: Any, b: Any, tolerance: float) -> bool:
    """True unless both are missing, equal, or numbers within ``tolerance`` (relative above magnitude 1)."""
    a_missing, b_missing = pd.isna(a), pd.isna(b)
    if a_missing or b_missing:
        return bool(a_missing != b_missing)
    if isinstance(a, Real) and isinstance(b, Real):
        return not math.isclose(float(a), float(b), rel_tol=tolerance, abs_tol=tolerance)
    return bool(a != b)


def _compare_snapshot(full: pd.DataFrame, rebuilt: pd.DataFrame, s: date, target: str, tolerance: float) -> list[str]:
    """Mismatches between one snapshot's rows built from the full export and from the export truncated at it."""
    problems: list[str] = []
    full_ids, rebuilt_ids = set(full.opportunity_id), set(rebuilt.opportunity_id)
    if full_ids != rebuilt_ids:
        extra, missing = sorted(full_ids - rebuilt_ids), sorted(rebuilt_ids - full_ids)
        problems.append(f"rows at {s}: only in full build {extra[:3]}, only in truncated build {missing[:3]}")
    features = snapshot_feature_columns(list(full.columns), target)
    for col in sorted(set(features) ^ set(snapshot_feature_columns(list(rebuilt.columns), target))):
        problems.append(f"{col} at {s}: column present in only one build")
    merged = full.merge(rebuilt, on="opportunity_id", suffixes=("_full", "_pit"))
    for col in features:
        if f"{col}_pit" not in merged.columns:
            continue
        pairs = zip(merged.opportunity_id, merged[f"{col}_full"], merged[f"{col}_pit"], strict=True)
        bad = [(oid, a, b) for oid, a, b in pairs if _differs(a, b, tolerance)]
        if bad:
            oid, a, b = bad[0]
            problems.append(f"{col} at {s}: {len(bad)} rows differ, e.g. {oid}: full={a!r} point-in-time={b!r}")
    return problems


def check_point_in_time(
    build: Callable[..., ir.Table],
    deals: ir.Table,
    snapshots: ir.Table,
    *,
    dates: Sequence[date] | None = None,
    target: str = "won_30d",
    tolerance: float = 1e-9,
) -> list[str]:
    """Rebuild each snapshot ``s`` from ``truncate_deals(deals, s)`` and compare its features with ``snapshots``.

    ``build`` is called as ``build(truncated_deals, data_end=s)``. ``dates`` limits the check to some snapshots
    (default: all of them). Returns one message per (feature, snapshot) that differs, naming an example deal;
    an empty list means no feature of ``snapshots`` used information from after its snapshot date.
    """
    full = snapshots.to_pyarrow().to_pandas()
    checked = sorted(set(full.snapshot_date)) if dates is None else list(dates)
    problems: list[str] = []
    for s in checked:
        rebuilt = build(truncate_deals(deals, s), data_end=s)
        at_s = rebuilt.filter(rebuilt.snapshot_date == s).to_pyarrow().to_pandas()
        problems += _compare_snapshot(full[full.snapshot_date == s], at_s, s, target, tolerance)
    log.info("point-in-time check: %d snapshots, %d mismatches", len(checked), len(problems))
    return problems
