"""Monthly deal snapshots: exact values on a hand-checked export, and the point-in-time (leakage) check."""

from __future__ import annotations

from datetime import date
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from goldgate.features_crm import (
    LABEL_END,
    SNAPSHOT_KEYS,
    build_snapshots,
    check_point_in_time,
    snapshot_dates,
    snapshot_feature_columns,
    truncate_deals,
)

GOLD_SCHEMA = pa.schema(
    [
        ("opportunity_id", pa.string()),
        ("sales_agent", pa.string()),
        ("manager", pa.string()),
        ("regional_office", pa.string()),
        ("product", pa.string()),
        ("series", pa.string()),
        ("sales_price", pa.float64()),
        ("account", pa.string()),
        ("sector", pa.string()),
        ("year_established", pa.int64()),
        ("revenue", pa.float64()),
        ("employees", pa.int64()),
        ("office_location", pa.string()),
        ("subsidiary_of", pa.string()),
        ("deal_stage", pa.string()),
        ("engage_date", pa.date32()),
        ("close_date", pa.date32()),
        ("close_value", pa.float64()),
        ("account_known", pa.bool_()),
        ("product_known", pa.bool_()),
        ("agent_known", pa.bool_()),
    ]
)
D = date.fromisoformat
JAN, FEB, MAR = D("2024-01-31"), D("2024-02-29"), D("2024-03-31")


@pytest.fixture(scope="module")
def con() -> Any:
    return ibis.duckdb.connect()


def gold_deal(opportunity_id: str, agent: str, stage: str, engage: str | None, close: str | None) -> dict[str, Any]:
    """A gold row with agent A in team M1/West, product GTX (550) and account Acme (est. 2000, a subsidiary)."""
    return {
        "opportunity_id": opportunity_id,
        "sales_agent": agent,
        "manager": "M1",
        "regional_office": "West",
        "product": "GTX",
        "series": "GT",
        "sales_price": 550.0,
        "account": "Acme",
        "sector": "retail",
        "year_established": 2000,
        "revenue": 12.5,
        "employees": 300,
        "office_location": "US",
        "subsidiary_of": "Globex",
        "deal_stage": stage,
        "engage_date": D(engage) if engage else None,
        "close_date": D(close) if close else None,
        "close_value": {"Won": 500.0, "Lost": 0.0}.get(stage),
        "account_known": True,
        "product_known": True,
        "agent_known": True,
    }


@pytest.fixture(scope="module")
def tiny(con: Any) -> ir.Table:
    """Seven deals over Q1 2024; the export date is 2024-04-05, so the snapshots are Jan, Feb and Mar month ends."""
    rows = [
        gold_deal("D7", "B", "Lost", "2024-01-05", "2024-01-15"),
        gold_deal("D1", "A", "Won", "2024-01-10", "2024-02-15"),
        gold_deal("D2", "A", "Lost", "2024-01-20", "2024-01-31"),  # closes on a snapshot: closed, not open
        gold_deal("D3", "B", "Won", "2024-02-05", "2024-03-20"),
        gold_deal("D4", "A", "Engaging", "2024-02-20", None),
        gold_deal("D5", "A", "Prospecting", None, None),  # no engage date: never in a snapshot
        gold_deal("D6", "A", "Won", "2024-03-10", "2024-04-05"),
        gold_deal("D8", "B", "Engaging", "2024-03-31", None),  # engaged on a snapshot: open at it
    ]
    rows[-1] |= {"account": None, "sector": None, "year_established": None, "revenue": None, "employees": None}
    rows[-1] |= {"subsidiary_of": None, "account_known": False}
    return con.create_table("tiny_deals", pa.Table.from_pylist(rows, GOLD_SCHEMA), overwrite=True)


@pytest.fixture(scope="module")
def tiny_snapshots(tiny: ir.Table) -> pd.DataFrame:
    frame = build_snapshots(tiny, label_days=30, smoothing=10.0).to_pyarrow().to_pandas()
    return frame.set_index(SNAPSHOT_KEYS)


def test_snapshot_dates_are_month_ends_up_to_the_export_date(tiny: ir.Table) -> None:
    assert snapshot_dates(tiny) == [JAN, FEB, MAR]
    assert snapshot_dates(tiny, data_end=D("2024-03-30")) == [JAN, FEB]
    assert snapshot_dates(tiny, data_end=D("2024-05-31")) == [JAN, FEB, MAR, D("2024-04-30"), D("2024-05-31")]


def test_snapshots_start_at_the_first_month_end_by_which_a_deal_closed(con: Any, tiny: ir.Table) -> None:
    # Before the first close (D7, Jan 15) nothing is known: E1, engaged in October, is open at three earlier month
    # ends that would carry empty histories. E2 closes "before" it engages; its outcome counts from Feb 10 only.
    early = [
        gold_deal("E1", "A", "Won", "2023-10-20", "2024-02-10"),
        gold_deal("E2", "B", "Lost", "2024-02-10", "2023-12-05"),
    ]
    deals = con.create_table(
        "early_deals", pa.concat_tables([tiny.to_pyarrow(), pa.Table.from_pylist(early, GOLD_SCHEMA)]), overwrite=True
    )
    assert snapshot_dates(deals) == [JAN, FEB, MAR]
    snapshots = build_snapshots(deals)
    e1 = snapshots.filter(snapshots.opportunity_id == "E1").to_pyarrow().to_pylist()
    assert [(r["snapshot_date"], r["won_30d"], r["days_since_engage"]) for r in e1] == [(JAN, 1.0, 103)]
    assert check_point_in_time(build_snapshots, deals, snapshots) == []


def test_no_snapshot_before_any_deal_has_closed(con: Any) -> None:
    rows = [gold_deal("O1", "A", "Engaging", "2024-01-10", None), gold_deal("O2", "B", "Won", "2024-02-05", None)]
    deals = con.create_table("open_deals_only", pa.Table.from_pylist(rows, GOLD_SCHEMA), overwrite=True)
    assert snapshot_dates(deals) == []
    assert build_snapshots(deals).count().execute() == 0


def test_open_deals_per_snapshot(tiny_snapshots: pd.DataFrame) -> None:
    assert sorted(tiny_snapshots.index) == [
        ("D1", JAN),
        ("D3", FEB),
        ("D4", FEB),
        ("D4", MAR),
        ("D6", MAR),
        ("D8", MAR),
    ]


def test_prior_rates_count_deals_closed_on_or_before_the_snapshot(tiny_snapshots: pd.DataFrame) -> None:
    # Jan 31: D7 and D2 (closed on Jan 31 itself) lost; Feb 29: D1 won too; Mar 31: D3 won too.
    assert tiny_snapshots.loc[("D1", JAN), ["prior_closed", "prior_win_rate"]].tolist() == [2, 0.0]
    assert tiny_snapshots.loc[("D4", FEB), "prior_win_rate"] == pytest.approx(1 / 3)
    assert tiny_snapshots.loc[("D4", MAR), "prior_win_rate"] == pytest.approx(2 / 4)
    # Agent A at Feb 29: 1 won of 2 closed, pulled toward 1/3 by 10 pseudo-deals: (1 + 10/3) / (2 + 10).
    assert tiny_snapshots.loc[("D4", FEB), "agent_win_rate"] == pytest.approx(13 / 36)
    assert tiny_snapshots.loc[("D4", FEB), "agent_closed"] == 2
    # Agent B at Feb 29: 0 won of 1 closed: (0 + 10/3) / 11.
    assert tiny_snapshots.loc[("D3", FEB), "agent_win_rate"] == pytest.approx(10 / 33)
    # Manager M1 covers both agents: 1 won of 3 closed equals the prior, so smoothing leaves it there.
    assert tiny_snapshots.loc[("D3", FEB), "manager_win_rate"] == pytest.approx(1 / 3)
    assert tiny_snapshots.loc[("D3", FEB), "manager_closed"] == 3


def test_unknown_account_has_no_history_and_no_attributes(tiny_snapshots: pd.DataFrame) -> None:
    row = tiny_snapshots.loc[("D8", MAR)]
    assert row["account_known"] == 0
    assert row["account_closed"] == 0
    assert row["account_win_rate"] == pytest.approx(row["prior_win_rate"])
    assert pd.isna(row["account_open_deals"])
    assert pd.isna(row["is_subsidiary"])
    assert pd.isna(row["account_age_years"])


def test_deal_and_pipeline_features(tiny_snapshots: pd.DataFrame) -> None:
    d4_feb, d4_mar = tiny_snapshots.loc[("D4", FEB)], tiny_snapshots.loc[("D4", MAR)]
    assert d4_feb["days_since_engage"] == 9
    assert tiny_snapshots.loc[("D8", MAR), "days_since_engage"] == 0
    assert d4_feb["account_age_years"] == 24
    assert d4_feb["is_subsidiary"] == 1
    assert d4_feb["month"] == 2
    # Agent A's open deals: D4 alone in February, D4 and D6 in March; Acme holds D3 and D4 in February.
    assert (d4_feb["agent_open_deals"], d4_mar["agent_open_deals"]) == (1, 2)
    assert d4_mar["agent_open_value"] == 1100.0
    assert d4_feb["account_open_deals"] == 2
    # A's only win (D1, 500) closed on Feb 15.
    assert (d4_feb["agent_days_since_win"], d4_mar["agent_days_since_win"]) == (14, 45)
    assert (d4_feb["agent_won_value"], tiny_snapshots.loc[("D1", JAN), "agent_won_value"]) == (500.0, 0.0)
    assert pd.isna(tiny_snapshots.loc[("D1", JAN), "agent_days_since_win"])


def test_label_is_won_within_30_days_and_null_past_the_export(tiny_snapshots: pd.DataFrame) -> None:
    labels = tiny_snapshots["won_30d"]
    assert labels[("D1", JAN)] == 1.0  # won Feb 15, within Jan 31 + 30 days
    assert labels[("D3", FEB)] == 1.0  # won Mar 20, within Feb 29 + 30 days
    assert labels[("D4", FEB)] == 0.0  # still open
    # Mar 31 + 30 days is after the export date (Apr 5): not known yet, even for D6 which was won on Apr 5.
    assert labels.loc[pd.IndexSlice[:, MAR]].isna().all()
    assert tiny_snapshots.loc[("D4", MAR), LABEL_END] == D("2024-04-30")


def test_features_are_numeric_and_many(tiny_snapshots: pd.DataFrame, tiny: ir.Table) -> None:
    schema = build_snapshots(tiny).schema()
    features = snapshot_feature_columns(list(schema.names))
    assert len(features) >= 23
    assert all(schema[c].is_numeric() for c in features)
    assert schema["won_30d"].is_float64()
    assert schema[LABEL_END].is_date()


def test_truncate_deals_rewinds_the_export(tiny: ir.Table) -> None:
    at_feb = truncate_deals(tiny, FEB).to_pyarrow().to_pandas().set_index("opportunity_id")
    assert sorted(at_feb.index) == ["D1", "D2", "D3", "D4", "D5", "D7"]  # D6 and D8 engaged after Feb 29
    assert at_feb.loc["D3", "deal_stage"] == "Engaging"  # won only on Mar 20
    assert pd.isna(at_feb.loc["D3", "close_date"])
    assert pd.isna(at_feb.loc["D3", "close_value"])
    assert (at_feb.loc["D1", "deal_stage"], at_feb.loc["D1", "close_value"]) == ("Won", 500.0)


def when(mask: np.ndarray, values: Any) -> pd.Series:
    """``values`` where ``mask`` holds, missing elsewhere."""
    return pd.Series(values).where(mask)


def random_deals(n: int = 2000, months: int = 15, seed: int = 7) -> pa.Table:
    """Gold-shaped random deals: ~5% Prospecting, ~5% unknown references, a few closing before they engage."""
    rng = np.random.default_rng(seed)
    start = date(2024, 1, 1)
    engage = rng.integers(0, months * 30, n)
    close = engage + rng.gamma(2.0, 25.0, n).astype(int) + 1
    close[rng.random(n) < 0.01] = engage[: n // 100 + 1].min()  # dirty rows: closed before engaging
    export = months * 30 + 5
    prospecting = rng.random(n) < 0.05
    is_closed = (close <= export) & ~prospecting
    won = rng.random(n) < 0.45
    stage = np.where(prospecting, "Prospecting", np.where(is_closed, np.where(won, "Won", "Lost"), "Engaging"))
    agent, account, product = rng.integers(0, 37, n), rng.integers(0, 90, n), rng.integers(0, 8, n)
    agent_known, account_known, product_known = agent < 35, account < 85, product < 7
    prices = np.array([55.0, 550.0, 1096.0, 3393.0, 4821.0, 5482.0, 26768.0])
    price = np.where(product_known, prices[np.minimum(product, 6)], np.nan)
    day0 = pd.Timestamp(start)
    frame = pd.DataFrame(
        {
            "opportunity_id": [f"O{i:05d}" for i in range(n)],
            "sales_agent": [f"agent{a}" for a in agent],
            "manager": when(agent_known, [f"manager{a % 6}" for a in agent]),
            "regional_office": when(agent_known, [f"office{a % 3}" for a in agent]),
            "product": when(product_known, [f"product{p}" for p in product]),
            "series": when(product_known, [f"series{p % 3}" for p in product]),
            "sales_price": price,
            "account": when(account_known | (account % 2 == 0), [f"account{a}" for a in account]),
            "sector": when(account_known, [f"sector{a % 10}" for a in account]),
            "year_established": when(account_known, 1950 + account % 60).astype("Int64"),
            "revenue": when(account_known, (account * 13 % 1000).astype(float)),
            "employees": when(account_known, account * 97 % 10000).astype("Int64"),
            "office_location": when(account_known, ["US"] * n),
            "subsidiary_of": when(account_known & (account % 7 == 0), ["account1"] * n),
            "deal_stage": stage,
            "engage_date": when(~prospecting, day0 + pd.to_timedelta(engage, "D")).dt.date,
            "close_date": when(is_closed, day0 + pd.to_timedelta(close, "D")).dt.date,
            "close_value": np.where(stage == "Won", price * rng.uniform(0.9, 1.1, n), np.where(is_closed, 0.0, np.nan)),
            "account_known": account_known,
            "product_known": product_known,
            "agent_known": agent_known,
        }
    )
    return pa.Table.from_pandas(frame, GOLD_SCHEMA, preserve_index=False)


@pytest.fixture(scope="module")
def generated(con: Any) -> ir.Table:
    return con.create_table("generated_deals", random_deals(), overwrite=True)


@pytest.fixture(scope="module")
def generated_snapshots(generated: ir.Table) -> ir.Table:
    return build_snapshots(generated)


def checked_dates(deals: ir.Table, count: int) -> list[date]:
    """``count`` snapshot dates spread from the second to the last one."""
    dates = snapshot_dates(deals)
    return [dates[int(i)] for i in np.linspace(1, len(dates) - 1, count)]


def test_generated_snapshots_are_point_in_time(generated: ir.Table, generated_snapshots: ir.Table) -> None:
    assert len(snapshot_dates(generated)) == 15
    assert generated_snapshots.count().execute() > 2000
    assert check_point_in_time(build_snapshots, generated, generated_snapshots, dates=checked_dates(generated, 5)) == []


def peek_at_own_close(deals: ir.Table, **kwargs: Any) -> ir.Table:
    """Leaky: the days from the snapshot to the deal's own close date, which no one knew at the snapshot."""
    snaps = build_snapshots(deals, **kwargs)
    close = deals.select("opportunity_id", close_date_=deals.close_date)
    joined = snaps.left_join(close, "opportunity_id")
    return joined.select(*snaps.columns, days_to_close=joined.close_date_.delta(joined.snapshot_date, unit="day"))


def peek_a_week_ahead(deals: ir.Table, **kwargs: Any) -> ir.Table:
    """Leaky: the agent's deals closed up to 7 days after the snapshot."""
    snaps = build_snapshots(deals, **kwargs)
    agents = deals.select("opportunity_id", agent_=deals.sales_agent)
    joined = snaps.left_join(agents, "opportunity_id")
    rows = joined.select(*snaps.columns, "agent_")
    stamps = rows.select(s_=rows.snapshot_date).distinct()
    closed = deals.filter(deals.close_date.notnull())
    pairs = closed.join(stamps, closed.close_date <= stamps.s_ + ibis.interval(days=7))
    ahead = pairs.group_by(agent_=pairs.sales_agent, snapshot_date=pairs.s_).aggregate(
        agent_closed_7d_ahead=pairs.count()
    )
    out = rows.left_join(ahead, ["agent_", "snapshot_date"])
    return out.select(*snaps.columns, agent_closed_7d_ahead=out.agent_closed_7d_ahead.fill_null(0))


@pytest.mark.parametrize(
    ("leaky", "feature"), [(peek_at_own_close, "days_to_close"), (peek_a_week_ahead, "agent_closed_7d_ahead")]
)
def test_check_catches_features_that_peek_past_the_snapshot(generated: ir.Table, leaky: Any, feature: str) -> None:
    snapshots = leaky(generated)
    problems = check_point_in_time(leaky, generated, snapshots, dates=checked_dates(generated, 2))
    assert problems
    # Only the leaky feature differs: every honest feature still matches.
    assert all(p.startswith(f"{feature} at ") for p in problems), problems
