"""Snapshots: period arithmetic, every aggregate on hand-checked data, the validation errors, the point-in-time
property, and the crm use case on the engine (the hand-checked export and the leakage checks it used to have as
hand-written code)."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date, timedelta
from importlib import resources
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from goldgate.context import Context
from goldgate.data.features import LABEL_END, FeatureSpecError, build_dsl_features
from goldgate.data.snapshots import period_end, period_ends, period_expr, period_index
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.sources.crm_synthetic import Dirt, generate_crm
from goldgate.usecase import Period, UseCase, UseCaseError, load_usecase, parse_usecase
from pit import CRM_KEYS, Keys, Rewind, check_point_in_time, engine, truncate_deals

D = date.fromisoformat
PERIODS: list[Period] = ["day", "week", "month", "quarter", "year"]


@pytest.fixture(scope="module")
def con() -> Any:
    return ibis.duckdb.connect()


def frame(table: ir.Table, keys: list[str]) -> pd.DataFrame:
    """The executed table indexed by ``keys``, NULL as NaN."""
    return table.to_pyarrow().to_pandas().set_index(keys).sort_index()


def dates_of(table: ir.Table, time: str = "snapshot_date") -> list[date]:
    """The snapshot dates that have rows, in order."""
    return sorted(set(table[time].to_pyarrow().to_pylist()))


# ================================================================================================ periods
@pytest.mark.parametrize(
    ("day", "every", "end"),
    [
        ("2024-02-29", "day", "2024-02-29"),
        ("2024-02-29", "week", "2024-03-03"),  # a Thursday: weeks run Monday to Sunday
        ("2024-03-03", "week", "2024-03-03"),  # a Sunday ends its own week
        ("2024-03-04", "week", "2024-03-10"),
        ("2024-02-10", "month", "2024-02-29"),
        ("2023-02-10", "month", "2023-02-28"),
        ("2024-12-31", "month", "2024-12-31"),
        ("2024-01-01", "quarter", "2024-03-31"),
        ("2024-05-15", "quarter", "2024-06-30"),
        ("2024-11-15", "quarter", "2024-12-31"),
        ("2024-02-10", "year", "2024-12-31"),
    ],
)
def test_period_end_is_the_last_day_of_the_period(day: str, every: Period, end: str) -> None:
    assert period_end(D(day), every) == D(end)


def test_period_index_numbers_from_the_epoch_and_weeks_start_on_monday() -> None:
    assert period_index(D("1970-01-01"), "day") == 0
    assert period_index(D("1970-01-02"), "day") == 1
    # 1970-01-01 was a Thursday: the Sunday after is in its week, the Monday starts the next one.
    assert [period_index(D(f"1970-01-0{d}"), "week") for d in (1, 4, 5)] == [0, 0, 1]
    assert period_index(D("2024-01-15"), "month") == 2024 * 12 + 1
    assert period_index(D("2024-05-15"), "quarter") == 2024 * 4 + 1
    assert period_index(D("2024-05-15"), "year") == 2024


@pytest.mark.parametrize(
    ("first", "last", "every", "ends"),
    [
        ("2024-01-30", "2024-02-01", "day", ["2024-01-30", "2024-01-31", "2024-02-01"]),
        ("2024-01-01", "2024-01-20", "week", ["2024-01-07", "2024-01-14"]),
        ("2024-01-15", "2024-04-30", "month", ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"]),
        ("2024-01-15", "2024-04-29", "month", ["2024-01-31", "2024-02-29", "2024-03-31"]),
        ("2023-11-01", "2024-07-01", "quarter", ["2023-12-31", "2024-03-31", "2024-06-30"]),
        ("2020-06-01", "2022-12-30", "year", ["2020-12-31", "2021-12-31"]),
        ("2024-01-15", "2024-01-30", "month", []),  # the first period has not ended by the last day
    ],
)
def test_period_ends_run_from_the_first_period_to_the_last_one_ended(
    first: str, last: str, every: Period, ends: list[str]
) -> None:
    assert period_ends(D(first), D(last), every) == [D(e) for e in ends]


@settings(max_examples=40, deadline=None)
@given(
    days=st.lists(st.dates(date(1900, 1, 1), date(2200, 12, 31)), min_size=1, max_size=40),
    every=st.sampled_from(PERIODS),
)
def test_period_index_in_python_equals_period_expr_in_duckdb(days: list[date], every: Period) -> None:
    table = ibis.memtable(pa.table({"day": pa.array(days, pa.date32())}))
    sql = table.select(p=period_expr(table.day, every)).to_pyarrow()["p"].to_pylist()
    assert sql == [period_index(d, every) for d in days]
    for d in days:
        end = period_end(d, every)
        # The period end is in the day's period, and the next day starts the next period.
        assert end >= d
        assert period_index(end, every) == period_index(d, every)
        if end < date(2200, 12, 31):
            assert period_index(end + timedelta(days=1), every) == period_index(d, every) + 1


# ================================================================================================ a generic use case
# Subscriptions of two teams: each is alive from `opened` to `closed`, a closed one ends `good` or `bad`.
SUBS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("team", pa.string()),
        ("opened", pa.date32()),
        ("closed", pa.date32()),
        ("outcome", pa.string()),
        ("amount", pa.float64()),
    ]
)
SUBS_COLUMNS: dict[str, Any] = {
    "id": {"type": "string", "role": "entity"},
    "team": "string",
    "opened": "date",
    "closed": "date",
    "outcome": "string",
    "amount": "float",
}
SUBS_KEYS = Keys(entity="id", target="bad_30d")
SUBS_REWIND = Rewind("opened", "closed", {"outcome": None})
EVENTS: list[dict[str, Any]] = [
    {"name": "n", "stat": "count"},
    {"name": "total", "stat": "sum", "of": "amount"},
    {"name": "avg", "stat": "mean", "of": "amount"},
    {"name": "good_rate", "stat": "rate", "of": "outcome = 'good'"},
    {
        "name": "team_rate",
        "stat": "rate",
        "of": "outcome = 'good'",
        "by": "team",
        "smoothing": 2,
        "toward": "good_rate",
    },
    {"name": "team_n", "stat": "count", "by": "team"},
    {"name": "team_since_good", "stat": "days_since", "of": "closed", "where": "outcome = 'good'", "by": "team"},
    {"name": "bad_n", "stat": "count", "where": "outcome = 'bad'"},
    {"name": "n_2p", "stat": "count", "periods": 2},
    {"name": "since_opened", "stat": "days_since", "of": "opened"},
]
ALIVE: list[dict[str, Any]] = [
    {"name": "open_n", "stat": "count"},
    {"name": "team_open_n", "stat": "count", "by": "team"},
    {"name": "team_open_sum", "stat": "sum", "of": "amount", "by": "team"},
    {"name": "team_open_mean", "stat": "mean", "of": "amount", "by": "team"},
]


def subs_dict(*, every: Period = "month", begin: str = "first_event") -> dict[str, Any]:
    """The subscriptions use case as a mapping: every kind of aggregate, labelled 'ends bad within 30 days'."""
    return {
        "name": "subs",
        "task": "classification",
        "source": {"kind": "file", "path": "subs.csv"},
        "columns": dict(SUBS_COLUMNS),
        "features": {
            "values": False,
            "snapshots": {"every": every, "start": "opened", "end": "closed", "begin": begin},
            "sql": {"age": "date_diff('day', opened, snapshot_date)", "amount": "amount"},
            "events": {"rows": "closed IS NOT NULL", "known_at": "closed", "aggregates": copy.deepcopy(EVENTS)},
            "alive": copy.deepcopy(ALIVE),
        },
        "target": {
            "name": "bad_30d",
            "kind": "event",
            "event": "outcome = 'bad'",
            "at": "closed",
            "horizon": 30,
            "unit": "days",
        },
    }


def subs(**kwargs: Any) -> UseCase:
    return parse_usecase(subs_dict(**kwargs))


def subs_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    """(id, team, opened, closed, outcome, amount) tuples, dates as ISO text or None."""
    records = [
        {
            "id": i,
            "team": team,
            "opened": D(opened) if opened else None,
            "closed": D(closed) if closed else None,
            "outcome": outcome,
            "amount": amount,
        }
        for i, team, opened, closed, outcome, amount in rows
    ]
    return pa.Table.from_pylist(records, SUBS_SCHEMA)


SUBS = [
    ("a1", "X", "2024-01-05", "2024-01-20", "good", 10.0),
    ("a2", "X", "2024-01-10", "2024-02-10", "bad", 20.0),
    ("a3", "Y", "2024-01-15", "2024-02-29", "good", 30.0),  # closes on a snapshot: an event there, not alive
    ("a4", None, "2024-02-01", "2024-03-05", "bad", 40.0),  # no team
    ("a5", "Y", "2024-02-15", None, None, 50.0),
    ("a6", "X", "2024-03-01", "2024-03-31", "good", 60.0),  # closes on the data's end
    ("a7", "X", "2024-03-10", None, None, 70.0),
    ("a8", "X", "2024-01-25", None, None, 80.0),
]
S1, S2, S3 = D("2024-01-31"), D("2024-02-29"), D("2024-03-31")


@pytest.fixture(scope="module")
def subs_gold(con: Any) -> ir.Table:
    return con.create_table("subs_gold", subs_table(SUBS), overwrite=True)


@pytest.fixture(scope="module")
def built(subs_gold: ir.Table) -> pd.DataFrame:
    return frame(build_dsl_features(subs_gold, subs()), ["id", "snapshot_date"])


def test_rows_are_the_entities_alive_at_each_period_end(built: pd.DataFrame) -> None:
    # Alive at t: opened on or before t, not closed by t (a row closing at t is not alive at t).
    assert list(built.index) == [
        ("a2", S1),
        ("a3", S1),
        ("a4", S2),
        ("a5", S2),
        ("a5", S3),
        ("a7", S3),
        ("a8", S1),
        ("a8", S2),
        ("a8", S3),
    ]
    assert list(built.columns) == [
        "age",
        "amount",
        *(a["name"] for a in EVENTS),
        *(a["name"] for a in ALIVE),
        "bad_30d",
        LABEL_END,
    ]
    assert built.loc[("a8", S2), ["age", "amount"]].tolist() == [35.0, 80.0]


def test_event_count_sum_mean_and_rate_count_events_known_by_the_snapshot(built: pd.DataFrame) -> None:
    # Known by Jan 31: a1 (good, 10); by Feb 29: a2 (bad, 20) and a3 (good, 30, closed on Feb 29 itself) too;
    # by Mar 31: a4 (bad, 40) and a6 (good, 60, closed on Mar 31) too.
    per_snapshot = built.groupby(level="snapshot_date")[["n", "total", "avg", "good_rate", "bad_n"]].first()
    assert per_snapshot.to_dict("index") == {
        S1: {"n": 1.0, "total": 10.0, "avg": 10.0, "good_rate": 1.0, "bad_n": 0.0},
        S2: {"n": 3.0, "total": 60.0, "avg": 20.0, "good_rate": pytest.approx(2 / 3), "bad_n": 1.0},
        S3: {"n": 5.0, "total": 160.0, "avg": 32.0, "good_rate": 0.6, "bad_n": 2.0},
    }
    # The same value on every row of a snapshot: the aggregates are of the snapshot, not of the row.
    assert built.groupby(level="snapshot_date")[["n", "total", "avg"]].nunique().eq(1).all().all()


def test_periods_counts_the_events_of_the_last_periods_only(built: pd.DataFrame) -> None:
    # Events known per month: 1 in January, 2 in February, 2 in March; two periods: this one and the one before.
    assert built.groupby(level="snapshot_date")["n_2p"].first().tolist() == [1.0, 3.0, 4.0]


def test_rate_per_group_is_smoothed_toward_the_overall_rate(built: pd.DataFrame) -> None:
    # (successes + 2 x good_rate) / (events + 2), per team.
    assert built.loc[("a8", S1), "team_rate"] == pytest.approx((1 + 2 * 1.0) / (1 + 2))
    assert built.loc[("a3", S1), "team_rate"] == pytest.approx(1.0)  # no Y event yet: the overall rate
    assert built.loc[("a8", S2), "team_rate"] == pytest.approx((1 + 2 * 2 / 3) / (2 + 2))
    assert built.loc[("a5", S2), "team_rate"] == pytest.approx((1 + 2 * 2 / 3) / (1 + 2))
    assert built.loc[("a7", S3), "team_rate"] == pytest.approx((2 + 2 * 0.6) / (3 + 2))
    assert [built.loc[(i, s), "team_n"] for i, s in [("a8", S1), ("a3", S1), ("a8", S2), ("a7", S3)]] == [1, 0, 2, 3]


def test_group_aggregates_of_a_row_without_a_group_have_seen_no_event(built: pd.DataFrame) -> None:
    # a4 has no team: its team has seen no event (the count is 0, the smoothed rate is the overall rate, no
    # last event date); a4's own event (a NULL team) counts in no team but does count overall.
    a4 = built.loc[("a4", S2)]
    assert a4["team_n"] == 0
    assert a4["team_rate"] == pytest.approx(2 / 3)
    assert pd.isna(a4["team_since_good"])
    assert built.loc[("a5", S3), "team_n"] == 1  # Y: a3 only, a4 not counted in any team
    # An alive aggregate by team is missing for a row without a team (it shares its group with no one).
    assert a4[["team_open_n", "team_open_sum", "team_open_mean"]].isna().all()
    assert built.loc[("a4", S2), "open_n"] == 3


def test_days_since_measures_from_the_latest_matching_event(built: pd.DataFrame) -> None:
    # Team X's last good event: a1 on Jan 20, then a6 on Mar 31; team Y's: a3 on Feb 29.
    assert built.loc[("a8", S1), "team_since_good"] == 11
    assert built.loc[("a8", S2), "team_since_good"] == 40
    assert built.loc[("a7", S3), "team_since_good"] == 0
    assert pd.isna(built.loc[("a3", S1), "team_since_good"])  # no good Y event yet
    assert built.loc[("a5", S2), "team_since_good"] == 0
    assert built.loc[("a5", S3), "team_since_good"] == 31
    # `of` need not be the date the event is known: the latest opened date among the known events.
    assert built.groupby(level="snapshot_date")["since_opened"].first().tolist() == [26, 45, 30]


def test_alive_aggregates_are_over_the_rows_alive_at_the_same_snapshot(built: pd.DataFrame) -> None:
    # Jan 31: X has a2 (20) and a8 (80), Y has a3 (30); Mar 31: X has a7 (70) and a8 (80), Y has a5 (50).
    assert built.loc[("a2", S1), ["team_open_n", "team_open_sum", "team_open_mean"]].tolist() == [2, 100, 50]
    assert built.loc[("a3", S1), ["team_open_n", "team_open_sum", "team_open_mean"]].tolist() == [1, 30, 30]
    assert built.loc[("a7", S3), ["team_open_n", "team_open_sum", "team_open_mean"]].tolist() == [2, 150, 75]
    assert built.loc[("a8", S2), ["team_open_n", "team_open_sum", "team_open_mean"]].tolist() == [1, 80, 80]
    assert built.groupby(level="snapshot_date")["open_n"].first().tolist() == [3, 3, 3]


def test_label_is_the_event_within_the_horizon_and_null_past_the_data(built: pd.DataFrame) -> None:
    label = built["bad_30d"]
    assert label[("a2", S1)] == 1.0  # bad on Feb 10, within Jan 31 + 30 days
    assert label[("a4", S2)] == 1.0  # bad on Mar 5
    assert (label[("a3", S1)], label[("a8", S1)], label[("a5", S2)]) == (0.0, 0.0, 0.0)  # good, or still alive
    # Mar 31 + 30 days is past the data's end (Mar 31): unknown.
    assert label.loc[pd.IndexSlice[:, S3]].isna().all()
    assert built.loc[("a2", S1), LABEL_END] == D("2024-03-01")


def test_label_counts_only_events_after_the_snapshot_and_within_the_horizon(con: Any) -> None:
    rows = [
        ("e0", "X", "2024-01-02", "2024-01-10", "bad", 1.0),  # the first event
        ("late", "X", "2024-01-20", "2024-03-02", "bad", 1.0),  # Jan 31 + 31 days: just past the horizon
        ("edge", "X", "2024-01-20", "2024-03-01", "bad", 1.0),  # Jan 31 + 30 days: within it
        ("null", "X", "2024-01-20", "2024-02-10", None, 1.0),  # the event condition is NULL: not the event
        ("open", "X", "2024-01-20", None, None, 1.0),
        ("end", "X", "2024-06-01", None, None, 1.0),  # sets the data's end
    ]
    out = frame(build_dsl_features(con.create_table("label_edges", subs_table(rows), overwrite=True), subs()), ["id"])
    jan = out[out.snapshot_date == S1]["bad_30d"]
    assert jan.to_dict() == {"late": 0.0, "edge": 1.0, "null": 0.0, "open": 0.0}


def test_data_end_bounds_the_snapshots_and_decides_which_labels_are_known(subs_gold: ir.Table) -> None:
    uc = subs()
    assert dates_of(build_dsl_features(subs_gold, uc)) == [S1, S2, S3]  # default: the latest opened/closed
    early = frame(build_dsl_features(subs_gold, uc, data_end=D("2024-02-29")), ["id", "snapshot_date"])
    assert sorted(set(early.index.get_level_values(1))) == [S1, S2]
    assert early["bad_30d"].isna().all()  # Jan 31 + 30 days is Mar 1, after Feb 29
    known = frame(build_dsl_features(subs_gold, uc, data_end=D("2024-03-01")), ["id", "snapshot_date"])
    assert known.xs(S1, level=1)["bad_30d"].tolist() == [1.0, 0.0, 0.0]
    assert known.xs(S2, level=1)["bad_30d"].isna().all()
    later = frame(build_dsl_features(subs_gold, uc, data_end=D("2024-05-31")), ["id", "snapshot_date"])
    assert sorted(set(later.index.get_level_values(1))) == [S1, S2, S3, D("2024-04-30"), D("2024-05-31")]
    assert later.xs(S3, level=1)["bad_30d"].tolist() == [0.0, 0.0, 0.0]  # Apr 30 is on or before May 31


def test_begin_first_event_skips_the_period_ends_before_any_event_is_known(con: Any) -> None:
    rows = [
        ("early", "X", "2023-10-20", "2024-02-10", "good", 5.0),  # alive at three period ends before any event
        ("e1", "Y", "2024-01-05", "2024-01-15", "bad", 1.0),
    ]
    gold = con.create_table("begins", subs_table(rows), overwrite=True)
    by_event = build_dsl_features(gold, subs(begin="first_event"))
    by_start = build_dsl_features(gold, subs(begin="first_start"))
    assert dates_of(by_event) == [S1]
    assert dates_of(by_start) == [D("2023-10-31"), D("2023-11-30"), D("2023-12-31"), S1]
    start = frame(by_start, ["id", "snapshot_date"])
    assert start.loc[("early", D("2023-12-31")), ["n", "good_rate"]].isna().tolist() == [False, True]
    assert start.loc[("early", D("2023-12-31")), "n"] == 0  # no event known yet: a count of 0, no rate
    assert start.loc[("early", S1), "n"] == 1
    assert frame(by_event, ["id", "snapshot_date"]).loc[("early", S1), "n"] == 1


def test_events_known_before_the_first_snapshot_count_from_it_on(con: Any) -> None:
    rows = [
        ("early", "X", "2023-10-20", "2024-02-10", "good", 5.0),
        ("dirty", "Y", "2024-02-10", "2023-09-05", "bad", 1.0),  # closes before it opens: never alive
    ]
    gold = con.create_table("before_first", subs_table(rows), overwrite=True)
    start = frame(build_dsl_features(gold, subs(begin="first_start")), ["id", "snapshot_date"])
    # The first start is Oct 20: dirty's Sep 5 close counts at the first snapshot, Oct 31, and in its period.
    assert start.index.get_level_values(1).min() == D("2023-10-31")
    assert start.loc[("early", D("2023-10-31")), ["n", "bad_n", "n_2p"]].tolist() == [1, 1, 1]
    assert start.loc[("early", D("2023-12-31")), ["n", "n_2p"]].tolist() == [1, 0]
    assert "dirty" not in start.index.get_level_values(0)


def test_no_snapshot_without_a_known_event_when_beginning_at_the_first_event(con: Any) -> None:
    rows = [("o1", "X", "2024-01-10", None, None, 1.0), ("o2", "Y", "2024-02-05", None, "bad", 1.0)]
    gold = con.create_table("no_events", subs_table(rows), overwrite=True)
    assert build_dsl_features(gold, subs()).count().execute() == 0
    assert dates_of(build_dsl_features(gold, subs(begin="first_start"))) == [S1]  # Feb 5 is the data's end


@pytest.mark.parametrize("every", PERIODS)
def test_snapshots_are_the_period_ends_of_each_period(con: Any, every: Period) -> None:
    # One subscription alive throughout: a row at every period end from its start to the data's end.
    rows = [("long", "X", "2023-12-20", "2025-02-10", "good", 1.0)]
    if every == "day":
        rows = [("long", "X", "2024-01-20", "2024-02-10", "good", 1.0)]
    gold = con.create_table(f"every_{every}", subs_table(rows), overwrite=True)
    out = build_dsl_features(gold, subs(every=every, begin="first_start"))
    first, last = D(rows[0][2]), D(rows[0][3])
    expected = [s for s in period_ends(first, last, every) if s < last]  # not alive on its closing day
    assert dates_of(out) == expected
    assert len(expected) >= 2
    # period_ends itself: consecutive period ends, each the end of its period.
    assert all(period_end(s, every) == s for s in expected)
    assert [period_index(s, every) for s in expected] == list(
        range(period_index(first, every), period_index(first, every) + len(expected))
    )


# ------------------------------------------------------------------------------------------------ errors
def invalid(change: Any) -> dict[str, Any]:
    data = subs_dict()
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["features"].pop("snapshots"),
            r"features.events and features.alive aggregate per snapshot: declare features.snapshots",
        ),
        (
            lambda d: d["features"].update(snapshots=None, events=None),
            r"features.events and features.alive aggregate per snapshot: declare features.snapshots",
        ),
        (lambda d: d["features"].update(values=True), r"features.snapshots: a gold row holds its values as of"),
        (
            lambda d: d["features"].update(events=None),
            r"features.snapshots.begin first_event needs features.events",
        ),
        (
            lambda d: d["features"]["events"]["aggregates"][4].update(toward="team_n"),
            r"events aggregate team_rate: toward must name an earlier rate without `by`",
        ),
        (
            lambda d: d["features"]["events"]["aggregates"].insert(
                0, {"name": "early", "stat": "rate", "of": "TRUE", "smoothing": 1, "toward": "good_rate"}
            ),
            r"events aggregate early: toward must name an earlier rate without `by`",
        ),
        (
            lambda d: d["features"]["events"]["aggregates"].append(
                {"name": "x", "stat": "rate", "of": "TRUE", "smoothing": 1, "toward": "team_rate"}
            ),
            r"events aggregate x: toward must name an earlier rate without `by`",
        ),
        (
            lambda d: d["features"]["events"]["aggregates"].append({"name": "n", "stat": "count"}),
            r"events aggregate n is declared twice",
        ),
        (
            lambda d: d["features"]["events"]["aggregates"].append({"name": "s", "stat": "sum"}),
            r"events aggregate s: stat sum needs `of`",
        ),
        (
            lambda d: d["features"]["events"]["aggregates"].append({"name": "s", "stat": "count", "smoothing": 2}),
            r"events aggregate s: smoothing and toward apply to a rate",
        ),
        (
            lambda d: d["features"]["events"]["aggregates"].append(
                {"name": "s", "stat": "rate", "of": "TRUE", "smoothing": 2}
            ),
            r"events aggregate s: smoothing needs `toward`",
        ),
        (
            lambda d: d["features"]["alive"].append({"name": "s", "stat": "mean"}),
            r"alive aggregate s: stat mean needs `of`",
        ),
        (
            lambda d: d["target"].update(kind="value_at", column="amount", at=None, event=None),
            r"features.snapshots: the target is an event within `horizon` days after the snapshot",
        ),
        (
            lambda d: d["target"].pop("at"),
            r"features.snapshots: the target is an event within `horizon` days after the snapshot",
        ),
        (
            lambda d: d["target"].update(unit="rows"),
            r"features.snapshots: the target is an event within `horizon` days after the snapshot",
        ),
        (
            lambda d: d.update(
                features={"values": True},
                columns={**SUBS_COLUMNS, "opened": {"type": "date", "role": "time"}},
            ),
            r"target.at dates an event on snapshot rows: declare features.snapshots",
        ),
    ],
)
def test_declarations_that_do_not_fit_snapshots_are_one_line_errors(change: Any, message: str) -> None:
    with pytest.raises(UseCaseError, match=message) as err:
        parse_usecase(invalid(change))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("sql", "extra", "read"),
    [
        ("closed", {}, "closed"),  # the end: a future fact at a past snapshot
        ("CASE WHEN outcome = 'bad' THEN 1 ELSE 0 END", {}, "outcome"),  # what the target's event reads
        ("date_diff('day', opened, decided)", {"target": {"at": "decided"}}, "decided"),  # the event's date
        ("length", {"gold": {"derive": {"length": "closed - opened"}}}, "length"),  # derived from the end
    ],
)
def test_row_sql_reading_the_end_the_event_or_its_date_is_refused(
    con: Any, subs_gold: ir.Table, sql: str, extra: dict[str, Any], read: str
) -> None:
    data = subs_dict()
    data["features"]["sql"]["leak"] = sql
    data["target"].update(extra.get("target", {}))
    if "gold" in extra:
        data["gold"] = extra["gold"]
    gold = subs_gold.mutate(decided=subs_gold.closed, length=(subs_gold.closed - subs_gold.opened).cast("int64"))
    with pytest.raises(FeatureSpecError) as err:
        build_dsl_features(gold, parse_usecase(data))
    assert str(err.value) == f"use case subs: features.sql 'leak' reads ['{read}'], not known at t"


def test_derive_ops_may_not_read_the_end_either(subs_gold: ir.Table) -> None:
    data = subs_dict()
    data["features"]["derive"] = [{"op": "lag", "column": "closed", "periods": [1]}]
    with pytest.raises(FeatureSpecError, match=r"derive lag of 'closed': 'closed' is not known at t"):
        build_dsl_features(subs_gold, parse_usecase(data))


def test_snapshot_columns_missing_from_gold_are_one_line_errors(subs_gold: ir.Table) -> None:
    data = subs_dict()
    data["features"]["snapshots"]["start"] = "started"
    with pytest.raises(FeatureSpecError, match=r"use case subs: features.snapshots names column\(s\) \['started'\]"):
        build_dsl_features(subs_gold, parse_usecase(data))
    data = subs_dict()
    data["features"]["events"]["aggregates"][0]["where"] = "no_such_column > 1"
    with pytest.raises(FeatureSpecError, match=r"or target SQL does not fit the gold columns: .*no_such_column"):
        build_dsl_features(subs_gold, parse_usecase(data))


# ================================================================================================ point in time
@st.composite
def subscriptions(draw: st.DrawFn) -> tuple[pa.Table, Period, str]:
    """A few subscriptions over a few periods: open ones, ones never opened, ones without a team or amount."""
    spans: dict[Period, int] = {"week": 30, "month": 120, "quarter": 400}
    every = draw(st.sampled_from(list(spans)))
    span = spans[every]
    n = draw(st.integers(1, 12))
    day0 = date(2024, 1, 1)
    rows = []
    for i in range(n):
        opened = draw(st.one_of(st.integers(0, span), st.just(None))) if i else draw(st.integers(0, span))
        length = draw(st.one_of(st.none(), st.integers(0, span // 2), st.sampled_from([29, 30, 31, 59, 90])))
        closed = None if opened is None or length is None else day0 + timedelta(days=opened + length)
        outcome = draw(st.sampled_from(["good", "bad"])) if closed is not None else None
        rows.append(
            (
                f"s{i}",
                draw(st.sampled_from(["X", "Y", None])),
                None if opened is None else (day0 + timedelta(days=opened)).isoformat(),
                None if closed is None else closed.isoformat(),
                outcome,
                draw(st.one_of(st.none(), st.integers(0, 9).map(float))),
            )
        )
    return subs_table(rows), every, draw(st.sampled_from(["first_event", "first_start"]))


_PROPERTY_CON = ibis.duckdb.connect()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=subscriptions())
def test_features_at_a_snapshot_are_those_built_from_the_data_known_then(data: tuple[pa.Table, Period, str]) -> None:
    table, every, begin = data
    uc = subs(every=every, begin=begin)
    gold = _PROPERTY_CON.create_table("gold", table, overwrite=True)
    full = build_dsl_features(gold, uc)
    assert check_point_in_time(engine(uc), gold, full, rewind=SUBS_REWIND, keys=SUBS_KEYS) == []


def test_the_point_in_time_check_compares_every_feature_and_row(subs_gold: ir.Table) -> None:
    uc = subs()
    full = build_dsl_features(subs_gold, uc)
    assert check_point_in_time(engine(uc), subs_gold, full, rewind=SUBS_REWIND, keys=SUBS_KEYS) == []
    # A feature table changed after the fact: one value, and one row too many.
    changed = full.mutate(n=ibis.ifelse(full.id == "a8", full.n + 1, full.n))
    extra = changed.union(changed.filter(changed.id == "a8").mutate(id=ibis.literal("zz")))
    problems = check_point_in_time(engine(uc), subs_gold, extra, rewind=SUBS_REWIND, keys=SUBS_KEYS, dates=[S2])
    assert problems == [
        "rows at 2024-02-29: only in full build ['zz'], only in truncated build []",
        "n at 2024-02-29: 1 rows differ, e.g. a8: full=4.0 point-in-time=3.0",
    ]


def test_rewind_drops_later_rows_and_reopens_rows_ended_later(subs_gold: ir.Table) -> None:
    at_feb = frame(SUBS_REWIND(subs_gold, S2), ["id"])
    assert list(at_feb.index) == ["a1", "a2", "a3", "a4", "a5", "a8"]  # a6 and a7 opened in March
    assert at_feb.loc["a4", ["closed", "outcome"]].isna().all()  # closed on Mar 5: still alive on Feb 29
    assert (at_feb.loc["a3", "closed"], at_feb.loc["a3", "outcome"]) == (S2, "good")  # closed on the day itself
    assert at_feb.loc["a4", "amount"] == 40.0


# ================================================================================================ crm on the engine
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
JAN, FEB, MAR = D("2024-01-31"), D("2024-02-29"), D("2024-03-31")
CRM_INDEX = ["opportunity_id", "snapshot_date"]
CRM = load_usecase("crm")


def crm_dict() -> dict[str, Any]:
    """The bundled crm use case as a mapping, to make variants of."""
    text = (resources.files("goldgate") / "usecases" / "crm.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def build_snapshots(deals: ir.Table, data_end: date | None = None, usecase: UseCase = CRM) -> ir.Table:
    """The crm snapshot feature table of ``deals`` (a gold.crm_deals table) on the engine."""
    return build_dsl_features(deals, usecase, data_end=data_end)


def snapshot_dates(deals: ir.Table, data_end: date | None = None) -> list[date]:
    return dates_of(build_snapshots(deals, data_end))


def crm_features(columns: list[str]) -> list[str]:
    return CRM_KEYS.features(columns)


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
    """Eight deals over Q1 2024; the export date is 2024-04-05, so the snapshots are Jan, Feb and Mar month ends."""
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
    return frame(build_snapshots(tiny), CRM_INDEX)


def test_crm_snapshot_dates_are_month_ends_up_to_the_export_date(tiny: ir.Table) -> None:
    assert snapshot_dates(tiny) == [JAN, FEB, MAR]
    assert snapshot_dates(tiny, data_end=D("2024-03-30")) == [JAN, FEB]
    assert snapshot_dates(tiny, data_end=D("2024-05-31")) == [JAN, FEB, MAR, D("2024-04-30"), D("2024-05-31")]


def test_crm_snapshots_start_at_the_first_month_end_by_which_a_deal_closed(con: Any, tiny: ir.Table) -> None:
    # Before the first close (D7, Jan 15) nothing is known: E1, engaged in October, is open at three earlier month
    # ends that would carry empty histories. E2 closes "before" it engages; its outcome counts from Feb 10 only.
    early = [
        gold_deal("E1", "A", "Won", "2023-10-20", "2024-02-10"),
        gold_deal("E2", "B", "Lost", "2024-02-10", "2023-12-05"),
    ]
    deals = con.create_table(
        "early_deals", pa.concat_tables([tiny.to_pyarrow(), pa.Table.from_pylist(early, GOLD_SCHEMA)]), overwrite=True
    )
    snapshots = build_snapshots(deals)
    assert dates_of(snapshots) == [JAN, FEB, MAR]
    e1 = snapshots.filter(snapshots.opportunity_id == "E1").to_pyarrow().to_pylist()
    assert [(r["snapshot_date"], r["won_30d"], r["days_since_engage"]) for r in e1] == [(JAN, 1.0, 103)]
    # E2's loss is not known at Jan 31 (prior_closed: D7 and D2), and is from Feb 29 on (D1 and E1 won too).
    by_key = frame(snapshots, CRM_INDEX)
    assert by_key.loc[("E1", JAN), "prior_closed"] == 2
    assert by_key.loc[("D4", FEB), ["prior_closed", "prior_win_rate"]].tolist() == [5, pytest.approx(2 / 5)]
    assert check_point_in_time(engine(CRM), deals, snapshots) == []


def test_crm_no_snapshot_before_any_deal_has_closed(con: Any) -> None:
    rows = [gold_deal("O1", "A", "Engaging", "2024-01-10", None), gold_deal("O2", "B", "Won", "2024-02-05", None)]
    deals = con.create_table("open_deals_only", pa.Table.from_pylist(rows, GOLD_SCHEMA), overwrite=True)
    assert build_snapshots(deals).count().execute() == 0


def test_crm_open_deals_per_snapshot(tiny_snapshots: pd.DataFrame) -> None:
    assert sorted(tiny_snapshots.index) == [
        ("D1", JAN),
        ("D3", FEB),
        ("D4", FEB),
        ("D4", MAR),
        ("D6", MAR),
        ("D8", MAR),
    ]


def test_crm_prior_rates_count_deals_closed_on_or_before_the_snapshot(tiny_snapshots: pd.DataFrame) -> None:
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


CRM_FEATURES = [
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


def test_crm_no_feature_is_derived_from_the_account(tiny_snapshots: pd.DataFrame) -> None:
    # D8 has no account, as a deal still open at the export date often has not: a fact of the export date, so
    # neither the account's attributes nor its or its sector's history can be features of a past snapshot.
    features = crm_features(list(tiny_snapshots.reset_index().columns))
    assert features == CRM_FEATURES
    assert tiny_snapshots.loc[("D8", MAR), features].notna().all()


def test_crm_deal_and_pipeline_features(tiny_snapshots: pd.DataFrame) -> None:
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
    # A's deals closed in the last three months: D2 (January) and D1 (February).
    assert (tiny_snapshots.loc[("D1", JAN), "agent_closed_3m"], d4_mar["agent_closed_3m"]) == (1, 2)


def test_crm_label_is_won_within_30_days_and_null_past_the_export(tiny_snapshots: pd.DataFrame) -> None:
    labels = tiny_snapshots["won_30d"]
    assert labels[("D1", JAN)] == 1.0  # won Feb 15, within Jan 31 + 30 days
    assert labels[("D3", FEB)] == 1.0  # won Mar 20, within Feb 29 + 30 days
    assert labels[("D4", FEB)] == 0.0  # still open
    # Mar 31 + 30 days is after the export date (Apr 5): not known yet, even for D6 which was won on Apr 5.
    assert labels.loc[pd.IndexSlice[:, MAR]].isna().all()
    assert tiny_snapshots.loc[("D4", MAR), LABEL_END] == D("2024-04-30")


def test_crm_features_are_numeric_and_many(tiny: ir.Table) -> None:
    schema = build_snapshots(tiny).schema()
    features = crm_features(list(schema.names))
    assert len(features) >= 20
    assert all(schema[c].is_numeric() for c in features)
    assert schema["won_30d"].is_float64()
    assert schema[LABEL_END].is_date()


def test_truncate_deals_rewinds_the_export(tiny: ir.Table) -> None:
    at_feb = frame(truncate_deals(tiny, FEB), ["opportunity_id"])
    assert sorted(at_feb.index) == ["D1", "D2", "D3", "D4", "D5", "D7"]  # D6 and D8 engaged after Feb 29
    assert at_feb.loc["D3", "deal_stage"] == "Engaging"  # won only on Mar 20
    assert pd.isna(at_feb.loc["D3", "close_date"])
    assert pd.isna(at_feb.loc["D3", "close_value"])
    assert (at_feb.loc["D1", "deal_stage"], at_feb.loc["D1", "close_value"]) == ("Won", 500.0)


# ------------------------------------------------------------------------------------------------ crm leakage
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
    table = pd.DataFrame(
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
    return pa.Table.from_pandas(table, GOLD_SCHEMA, preserve_index=False)


@pytest.fixture(scope="module")
def generated(con: Any) -> ir.Table:
    return con.create_table("generated_deals", random_deals(), overwrite=True)


@pytest.fixture(scope="module")
def generated_snapshots(generated: ir.Table) -> ir.Table:
    return build_snapshots(generated)


@pytest.fixture(scope="module")
def generated_dates(generated_snapshots: ir.Table) -> list[date]:
    return dates_of(generated_snapshots)


def checked_dates(dates: list[date], count: int) -> list[date]:
    """``count`` snapshot dates spread from the second to the last one."""
    return [dates[int(i)] for i in np.linspace(1, len(dates) - 1, count)]


def test_crm_generated_snapshots_are_point_in_time(
    generated: ir.Table, generated_snapshots: ir.Table, generated_dates: list[date]
) -> None:
    assert len(generated_dates) == 15
    assert generated_snapshots.count().execute() > 2000
    dates = checked_dates(generated_dates, 5)
    assert check_point_in_time(engine(CRM), generated, generated_snapshots, dates=dates) == []


ACCOUNT_COLUMNS = ("account", "sector", "year_established", "revenue", "employees", "office_location", "subsidiary_of")


def blank_open_accounts(deals: ir.Table) -> ir.Table:
    """The export as the CRM writes it when it leaves the account of every deal still open at its date empty."""
    still_open = ~deals.deal_stage.isin(["Won", "Lost"])
    blanked = {c: ibis.ifelse(still_open, ibis.null(deals[c].type()), deals[c]) for c in ACCOUNT_COLUMNS}
    return deals.mutate(**blanked, account_known=deals.account_known & ~still_open)


def test_crm_features_are_the_same_when_open_deals_lose_their_account(
    generated: ir.Table, generated_snapshots: ir.Table
) -> None:
    # Whether an account is empty is decided at the export date; a past snapshot must not be able to tell.
    blanked = frame(build_snapshots(blank_open_accounts(generated)), CRM_INDEX)
    original = frame(generated_snapshots, CRM_INDEX)
    assert blank_open_accounts(generated).filter(lambda t: t.account.isnull()).count().execute() > 100
    pd.testing.assert_frame_equal(blanked, original)


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


def test_crm_account_missingness_is_a_leak_no_feature_carries(exported: pd.DataFrame) -> None:
    label, no_account = exported.won_30d, exported.no_account
    # The trait: at past month ends every deal without an account is labelled 0, and the flag alone ranks.
    assert no_account.mean() > 0.05
    assert label[no_account].eq(0).all()
    assert auc(label, no_account) > 0.55
    features = crm_features(list(exported.columns.drop("no_account")))
    assert features == CRM_FEATURES
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


# Leaks built by hand around the engine: the check itself catches features that read past the snapshot.
def peek_at_own_close(deals: ir.Table, data_end: date) -> ir.Table:
    """Leaky: the days from the snapshot to the deal's own close date, which no one knew at the snapshot."""
    snaps = build_snapshots(deals, data_end)
    close = deals.select("opportunity_id", close_date_=deals.close_date)
    joined = snaps.left_join(close, "opportunity_id")
    return joined.select(*snaps.columns, days_to_close=joined.close_date_.delta(joined.snapshot_date, unit="day"))


def peek_a_week_ahead(deals: ir.Table, data_end: date) -> ir.Table:
    """Leaky: the agent's deals closed up to 7 days after the snapshot."""
    snaps = build_snapshots(deals, data_end)
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
def test_check_catches_hand_made_features_that_peek_past_the_snapshot(
    generated: ir.Table, generated_dates: list[date], leaky: Any, feature: str
) -> None:
    snapshots = leaky(generated, generated_dates[-1])
    problems = check_point_in_time(leaky, generated, snapshots, dates=checked_dates(generated_dates, 2))
    assert problems
    # Only the leaky feature differs: every honest feature still matches.
    assert all(p.startswith(f"{feature} at ") for p in problems), problems


def crm_variant(change: Any) -> UseCase:
    data = crm_dict()
    change(data)
    return parse_usecase(data, "crm (leaky variant)")


def _known_a_week_early(data: dict[str, Any]) -> None:
    data["features"]["events"]["known_at"] = "greatest(close_date, engage_date) - INTERVAL 7 DAY"


def _open_deals_won_share(data: dict[str, Any]) -> None:
    share = "CASE WHEN deal_stage = 'Won' THEN 1.0 ELSE 0.0 END"
    data["features"]["alive"].append({"name": "agent_open_won_share", "stat": "mean", "of": share, "by": "sales_agent"})


def _history_by_the_final_stage(data: dict[str, Any]) -> None:
    data["features"]["events"]["aggregates"].append({"name": "stage_closed", "stat": "count", "by": "deal_stage"})


def _close_value_as_a_feature(data: dict[str, Any]) -> None:
    data["features"]["sql"]["close_value_or_zero"] = "coalesce(close_value, 0)"
    data["features"]["snapshots"]["filled_at_end"] = []  # as if crm.yaml did not declare it


@pytest.mark.parametrize(
    ("change", "leaked"),
    [
        # events said to be known a week before they close
        (_known_a_week_early, {"prior_closed", "agent_closed", "prior_win_rate", "agent_days_since_win"}),
        # a column the export fills in when a deal closes, had the use case not declared it (filled_at_end)
        (_close_value_as_a_feature, {"close_value_or_zero"}),
    ],
)
def test_check_catches_a_use_case_whose_features_peek_past_the_snapshot(
    generated: ir.Table, generated_dates: list[date], change: Any, leaked: set[str]
) -> None:
    uc = crm_variant(change)
    dates = checked_dates(generated_dates, 2)
    snapshots = build_snapshots(generated, usecase=uc)
    problems = check_point_in_time(engine(uc), generated, snapshots, dates=dates)
    differing = {p.split(" at ")[0] for p in problems}
    assert leaked <= differing, problems
    # The honest features of the deal itself and of its open pipeline still match.
    assert not differing & {"days_since_engage", "sales_price", "month", "agent_open_deals", "agent_open_value"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # an alive aggregate over the open deals' final outcome
        (_open_deals_won_share, "aggregate agent_open_won_share reads ['deal_stage'] of the snapshot row"),
        # the history of the deals that share the open deal's final stage
        (_history_by_the_final_stage, "aggregate stage_closed reads ['deal_stage'] of the snapshot row"),
    ],
)
def test_aggregates_reading_the_snapshot_rows_future_are_refused(tiny: ir.Table, change: Any, message: str) -> None:
    with pytest.raises(FeatureSpecError) as err:
        build_snapshots(tiny, usecase=crm_variant(change))
    assert str(err.value) == f"use case crm: {message}, not known at the snapshot"


def test_columns_filled_at_the_end_are_refused_to_row_features(tiny: ir.Table) -> None:
    def declared(data: dict[str, Any]) -> None:
        _close_value_as_a_feature(data)
        data["features"]["snapshots"]["filled_at_end"] = ["close_value"]

    with pytest.raises(FeatureSpecError) as err:
        build_snapshots(tiny, usecase=crm_variant(declared))
    assert str(err.value) == "use case crm: features.sql 'close_value_or_zero' reads ['close_value'], not known at t"


@pytest.mark.parametrize(
    ("sql", "read"),
    [
        ("date_diff('day', snapshot_date, close_date)", "close_date"),
        ("CASE WHEN deal_stage = 'Won' THEN 1 ELSE 0 END", "deal_stage"),
    ],
)
def test_crm_row_sql_reading_the_close_is_refused(tiny: ir.Table, sql: str, read: str) -> None:
    uc = crm_variant(lambda data: data["features"]["sql"].update(days_to_close=sql))
    with pytest.raises(FeatureSpecError) as err:
        build_snapshots(tiny, usecase=uc)
    assert str(err.value) == f"use case crm: features.sql 'days_to_close' reads ['{read}'], not known at t"
