"""Monthly deal snapshots: exact values on a hand-checked export, and the point-in-time (leakage) check."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from goldgate.context import Context
from goldgate.features_crm import (
    LABEL_END,
    SNAPSHOT_KEYS,
    build_snapshots,
    check_point_in_time,
    snapshot_dates,
    snapshot_feature_columns,
    truncate_deals,
)
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.sources.crm_synthetic import Dirt, generate_crm
from goldgate.usecase import load_usecase

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


def test_no_feature_is_derived_from_the_account(tiny_snapshots: pd.DataFrame) -> None:
    # D8 has no account, as a deal still open at the export date often has not: a fact of the export date, so
    # neither the account's attributes nor its or its sector's history can be features of a past snapshot.
    features = snapshot_feature_columns(list(tiny_snapshots.reset_index().columns))
    assert features == [
        "days_since_engage",
        "sales_price",
        "product_known",
        "agent_known",
        "month",
        "prior_win_rate",
        "prior_closed",
        "agent_win_rate",
        "agent_closed",
        "manager_win_rate",
        "manager_closed",
        "office_win_rate",
        "office_closed",
        "product_win_rate",
        "product_closed",
        "series_win_rate",
        "series_closed",
        "agent_won_value",
        "agent_days_since_win",
        "agent_closed_3m",
        "agent_open_deals",
        "agent_open_value",
    ]
    assert tiny_snapshots.loc[("D8", MAR), features].notna().all()


def test_deal_and_pipeline_features(tiny_snapshots: pd.DataFrame) -> None:
    d4_feb, d4_mar = tiny_snapshots.loc[("D4", FEB)], tiny_snapshots.loc[("D4", MAR)]
    assert d4_feb["days_since_engage"] == 9
    assert tiny_snapshots.loc[("D8", MAR), "days_since_engage"] == 0
    assert d4_feb["month"] == 2
    # Agent A's open deals: D4 alone in February, D4 and D6 in March.
    assert (d4_feb["agent_open_deals"], d4_mar["agent_open_deals"]) == (1, 2)
    assert d4_mar["agent_open_value"] == 1100.0
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
    assert len(features) >= 20
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


ACCOUNT_COLUMNS = ("account", "sector", "year_established", "revenue", "employees", "office_location", "subsidiary_of")


def blank_open_accounts(deals: ir.Table) -> ir.Table:
    """The export as the CRM writes it when it leaves the account of every deal still open at its date empty."""
    still_open = ~deals.deal_stage.isin(["Won", "Lost"])
    blanked = {c: ibis.ifelse(still_open, ibis.null(deals[c].type()), deals[c]) for c in ACCOUNT_COLUMNS}
    return deals.mutate(**blanked, account_known=deals.account_known & ~still_open)


def test_features_are_the_same_when_open_deals_lose_their_account(
    generated: ir.Table, generated_snapshots: ir.Table
) -> None:
    # Whether an account is empty is decided at the export date; a past snapshot must not be able to tell.
    blanked = build_snapshots(blank_open_accounts(generated)).to_pyarrow().to_pandas()
    pd.testing.assert_frame_equal(blanked, generated_snapshots.to_pyarrow().to_pandas())


def auc(labels: pd.Series, scores: pd.Series) -> float:
    """ROC AUC of ``scores`` for ``labels``, folded to at least 0.5: how well it separates them either way round."""
    value = float(roc_auc_score(labels, scores)) if scores.nunique() > 1 else 0.5
    return max(value, 1.0 - value)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Labelled snapshot rows of a generated export, with ``no_account`` telling whether the deal has none.

    Every deal still open at the export date lacks its account (the Maven export leaves most of them empty).
    """
    root = tmp_path_factory.mktemp("crm_missing_accounts")
    generate_crm(root / "export", rows=2000, seed=11, dirt=dataclasses.replace(Dirt(), missing_account_rate=1.0))
    ctx = Context(load_settings(workspace=root / "ws"), load_usecase("crm"), source=str(root / "export"))
    run_pipeline(ctx, only=["ingest", "silver", "gold", "features"])
    deals = ctx.lake.read(ctx.usecase.tables.gold).to_pandas()[["opportunity_id", "account"]]
    snapshots = ctx.lake.read(ctx.usecase.tables.features).to_pandas()
    labelled = snapshots[snapshots.won_30d.notna()].merge(deals, on="opportunity_id")
    return labelled.assign(no_account=labelled.account.isna()).drop(columns="account")


def test_account_missingness_is_a_leak_no_feature_carries(exported: pd.DataFrame) -> None:
    label, no_account = exported.won_30d, exported.no_account
    # The trait: at past month ends every deal without an account is labelled 0, and the flag alone ranks.
    assert no_account.mean() > 0.05
    assert label[no_account].eq(0).all()
    assert auc(label, no_account) > 0.55
    features = snapshot_feature_columns(list(exported.columns.drop("no_account")))
    # No feature's missingness says anything about the label...
    missing = {c: auc(label, exported[c].isna()) for c in features}
    assert max(missing.values()) < 0.52, missing
    # ...and the best single feature ranks the deals with an account as well as all deals: its power does not
    # come from the rows without one (wherever its missing values are put).
    low, high = exported[features].fillna(-1e18), exported[features].fillna(1e18)
    power = {c: max(auc(label, low[c]), auc(label, high[c])) for c in features}
    best = max(power, key=power.__getitem__)
    with_account = ~no_account
    alone = max(auc(label[with_account], low[best][with_account]), auc(label[with_account], high[best][with_account]))
    assert power[best] - alone < 0.02, (best, power[best], alone)


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
