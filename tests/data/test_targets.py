"""Targets of declarative use cases: each kind against pandas or by hand, its end time, and its errors."""

from __future__ import annotations

from datetime import date
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from goldgate.data.targets import LABEL_END, FeatureSpecError, build_target, target_inputs
from goldgate.usecase import UseCase, parse_usecase

DATES = [date(2024, 3, d) for d in (1, 2, 4, 5, 8)]
CLOSE = [10.0, 11.0, None, 13.0, 12.0, 20.0, 19.0, 21.0, 22.0, 18.0]
OPEN = [10.5, 10.0, 12.0, 14.0, 11.0, 19.0, 20.0, 20.0, 23.0, 20.0]


def panel() -> pa.Table:
    """Two tickers over five irregular dates; ticker a misses its close on the third."""
    return pa.table(
        {
            "ticker": ["a"] * 5 + ["b"] * 5,
            "day": pa.array(DATES * 2, pa.date32()),
            "close": pa.array(CLOSE, pa.float64()),
            "open": pa.array(OPEN, pa.float64()),
        }
    )


def usecase(target: dict[str, Any], *, task: str = "regression") -> UseCase:
    return parse_usecase(
        {
            "name": "prices",
            "task": task,
            "source": {"kind": "file", "path": "prices.csv"},
            "entity": "ticker",
            "time": "day",
            "columns": {"ticker": "string", "day": "date", "close": "float", "open": "float"},
            "target": target,
        }
    )


def duckdb_table(table: pa.Table) -> ir.Table:
    return ibis.duckdb.connect().create_table("gold", table)


def targets(uc: UseCase, table: pa.Table | None = None) -> pd.DataFrame:
    """The keys and what ``build_target`` returns, executed and sorted by the keys."""
    gold = target_inputs(duckdb_table(table if table is not None else panel()), uc)
    exprs = build_target(gold, uc)
    keys = [uc.entity, uc.time]
    return gold.select(*keys, **exprs).to_pyarrow().to_pandas().sort_values(keys).reset_index(drop=True)


def close_to(got: pd.Series, want: pd.Series) -> None:
    g, w = got.to_numpy(dtype=float), want.to_numpy(dtype=float)
    assert np.array_equal(np.isnan(g), np.isnan(w)), f"NULLs differ:\n{g}\n{w}"
    assert np.allclose(g, w, rtol=1e-12, atol=1e-12, equal_nan=True), f"\n{g}\n{w}"


def reference() -> pd.DataFrame:
    return panel().to_pandas().sort_values(["ticker", "day"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------- time targets
def test_value_at_is_the_value_horizon_rows_ahead_scaled_with_its_date() -> None:
    got = targets(usecase({"kind": "value_at", "column": "close", "horizon": 2, "scale": 3.0, "name": "close_2"}))
    df = reference()
    close_to(got.close_2, df.groupby("ticker")["close"].shift(-2) * 3.0)
    assert list(got[LABEL_END]) == [*DATES[2:], None, None] * 2  # the last rows of each ticker are not known yet


@pytest.mark.parametrize("stat", ["mean", "sum", "rms", "min", "max", "std"])
def test_aggregate_reads_the_next_rows_and_needs_all_of_them(stat: str) -> None:
    got = targets(usecase({"kind": "aggregate", "column": "close", "aggregate": stat, "horizon": 2, "scale": 2.0}))
    df = reference()
    by = df.groupby("ticker")["close"]
    if stat == "rms":
        squares = (df.close**2).groupby(df.ticker).rolling(2).mean().reset_index(drop=True)
        want = np.sqrt(squares.groupby(df.ticker).shift(-2))
    else:
        want = getattr(by.rolling(2), stat)().reset_index(drop=True).groupby(df.ticker).shift(-2)
    close_to(got.target, want * 2.0)
    # ticker a: the rows after Mar 1 and Mar 2 include the missing close, so both are NULL
    assert got.target.iloc[:2].isna().all()


def test_event_is_whether_the_condition_holds_on_any_of_the_next_rows() -> None:
    uc = usecase({"kind": "event", "event": "close < open * 0.98", "horizon": 2}, task="classification")
    got = targets(uc)
    # close < 0.98 open holds for a on Mar 1 and Mar 5, for b on Mar 2, Mar 5 and Mar 8; a's missing close on
    # Mar 4 does not hold, so a's Mar 1 sees no event in Mar 2 and Mar 4
    assert got.target.tolist()[:3] == [0.0, 1.0, 1.0]
    assert got.target.tolist()[5:8] == [1.0, 1.0, 1.0]
    assert got.target.isna().tolist() == [False, False, False, True, True] * 2
    assert list(got[LABEL_END]) == [*DATES[2:], None, None] * 2


def test_event_that_is_not_a_condition_is_an_error() -> None:
    table = duckdb_table(panel())
    with pytest.raises(FeatureSpecError, match=r"use case prices: target.event 'close <<< open' is not a SQL cond"):
        target_inputs(table, usecase({"kind": "event", "event": "close <<< open", "horizon": 1}))
    with pytest.raises(FeatureSpecError, match=r"target.event 'close - open' is not a SQL condition .* DOUBLE"):
        target_inputs(table, usecase({"kind": "event", "event": "close - open", "horizon": 1}))
    with pytest.raises(FeatureSpecError, match=r"target.event 'year\(day\) \+ 1' must be a condition"):
        target_inputs(table, usecase({"kind": "event", "event": "year(day) + 1", "horizon": 1}))
    with pytest.raises(FeatureSpecError, match=r"target.event 'volume > 3' is not a SQL condition"):
        target_inputs(table, usecase({"kind": "event", "event": "volume > 3", "horizon": 1}))


def test_time_targets_need_a_time_column_rows_and_numbers() -> None:
    record = parse_usecase(
        {
            "name": "prices",
            "task": "regression",
            "source": {"kind": "file"},
            "columns": {"ticker": {"type": "string", "role": "entity"}, "close": "float"},
            "target": {"kind": "value_at", "column": "close"},
        }
    )
    table = duckdb_table(pa.table({"ticker": ["a"], "as_of": [date(2024, 1, 1)], "close": [1.0]}))
    with pytest.raises(FeatureSpecError, match=r"use case prices: a value_at target reads the next rows in time"):
        build_target(table, record)
    by_hours = usecase({"kind": "aggregate", "column": "close", "horizon": 5, "unit": "hours"})
    with pytest.raises(FeatureSpecError, match=r"a horizon in hours needs a timestamp time column, 'day' is date"):
        build_target(duckdb_table(panel()), by_hours)
    with pytest.raises(FeatureSpecError, match=r"a value_at target needs a numeric column; 'ticker' is string"):
        build_target(duckdb_table(panel()), usecase({"kind": "value_at", "column": "ticker"}))


# ------------------------------------------------------------------------------------------------ time spans
def test_a_horizon_in_days_reads_the_rows_within_the_span_whatever_their_number() -> None:
    # Dates 1, 2, 4, 5, 8 March: three days ahead of the 1st is (1st, 4th], of the 5th (5th, 8th].
    got = targets(usecase({"kind": "aggregate", "column": "close", "aggregate": "sum", "horizon": 3, "unit": "days"}))
    a = got[got.ticker == "a"].set_index("day")
    assert a.loc[date(2024, 3, 1), "target"] == 11.0  # the 2nd (11) and the 4th (missing)
    assert a.loc[date(2024, 3, 2), "target"] == 13.0  # the 4th (missing) and the 5th (13)
    assert a.loc[date(2024, 3, 5), "target"] == 12.0  # only the 8th
    assert np.isnan(a.loc[date(2024, 3, 8), "target"])  # the data does not reach the 11th
    assert a.loc[date(2024, 3, 5), LABEL_END] == date(2024, 3, 8)
    last = targets(usecase({"kind": "value_at", "column": "close", "horizon": 2, "unit": "days"}))
    b = last[last.ticker == "b"].set_index("day").target
    assert b[date(2024, 3, 1)] == 19.0  # the last value in (1st, 3rd]: the 2nd's
    assert b[date(2024, 3, 2)] == 21.0  # (2nd, 4th]: the 4th's
    assert b[date(2024, 3, 4)] == 22.0
    assert np.isnan(b[date(2024, 3, 5)])  # no row in (5th, 7th], though the data reaches past it
    assert np.isnan(b[date(2024, 3, 8)])  # the data does not reach the 10th


def test_a_horizon_in_hours_on_timestamps_and_an_event_within_it() -> None:
    stamps = [pd.Timestamp("2024-03-01 09:00") + pd.Timedelta(minutes=m) for m in (0, 30, 150, 200, 400)]
    table = pa.table(
        {
            "ticker": ["a"] * 5,
            "day": pa.array(stamps, pa.timestamp("us")),
            "close": [10.0, 9.0, 12.0, 8.0, 11.0],
            "open": [10.0] * 5,
        }
    )
    uc = parse_usecase(
        {
            "name": "ticks",
            "task": "classification",
            "source": {"kind": "file", "path": "t.csv"},
            "entity": "ticker",
            "time": "day",
            "columns": {"ticker": "string", "day": "timestamp", "close": "float", "open": "float"},
            "target": {"kind": "event", "event": "close < 9", "horizon": 3, "unit": "hours"},
        }
    )
    got = targets(uc, table).set_index("day")
    # 09:00 sees 09:30 (9) and 11:30 (12), not 12:20 (8); 09:30 and 11:30 see 12:20; 12:20 sees no row up to 15:20.
    assert got.target.tolist()[:4] == [0.0, 1.0, 1.0, 0.0]
    assert got.target.isna().tolist() == [False, False, False, False, True]  # 15:40 + 3h passes the data
    assert got[LABEL_END].iloc[0] == pd.Timestamp("2024-03-01 12:00")


# ------------------------------------------------------------------------------------------------ labels
def labelled(values: list[Any], kind: pa.DataType, **target: Any) -> pd.DataFrame:
    """Label targets over one row per customer (no time column: as_of stands in)."""
    uc = parse_usecase(
        {
            "name": "churn",
            "task": "classification" if "scale" not in target else "regression",
            "source": {"kind": "file"},
            "columns": {"customer": {"type": "string", "role": "entity"}, "label": "string"},
            "target": {"kind": "label", "column": "label", **target},
        }
    )
    n = len(values)
    table = pa.table(
        {
            "customer": [f"c{i}" for i in range(n)],
            "as_of": pa.array([date(2024, 5, 1)] * n, pa.date32()),
            "label": pa.array(values, kind),
        }
    )
    return targets(uc, table)


def test_classification_label_is_one_where_the_column_holds_positive() -> None:
    got = labelled(["yes", "no", None, "yes"], pa.string(), positive="yes")
    close_to(got.target, pd.Series([1.0, 0.0, np.nan, 1.0]))
    assert LABEL_END not in got  # nothing says when such a label arrives


@pytest.mark.parametrize(
    ("values", "kind"),
    [([True, False, None, True], pa.bool_()), ([1, 0, None, 1], pa.int64()), ([1.0, 0.0, None, 1.0], pa.float64())],
)
def test_boolean_and_zero_one_labels_need_no_positive(values: list[Any], kind: pa.DataType) -> None:
    close_to(labelled(values, kind).target, pd.Series([1.0, 0.0, np.nan, 1.0]))


@pytest.mark.parametrize(
    ("values", "kind", "positive", "message"),
    [
        (["yes", "no"], pa.string(), None, r"use case churn: classification label 'label' is string: set target.pos"),
        ([0, 1, 2], pa.int64(), None, r"label 'label' holds values other than 0 and 1 \(observed: 0, 1, 2\)"),
        (["Yes", "no"], pa.string(), "yes", r"target.positive 'yes' never occurs in column 'label' \(observed: 'Ye"),
        (["yes", "no"], pa.string(), True, r"target.positive True is not a value of string .* quote it\)"),
        ([1, 0], pa.int64(), "high", r"target.positive 'high' is not a value of int64 column 'label'"),
        ([True, False], pa.bool_(), "maybe", r"target.positive 'maybe' is not a value of boolean column"),
    ],
)
def test_label_positive_that_does_not_fit_is_an_error(
    values: list[Any], kind: pa.DataType, positive: Any, message: str
) -> None:
    with pytest.raises(FeatureSpecError, match=message) as err:
        labelled(values, kind, positive=positive)
    assert "\n" not in str(err.value)


def test_positive_is_read_in_the_column_type() -> None:
    close_to(labelled([3, 5, 3], pa.int64(), positive=3).target, pd.Series([1.0, 0.0, 1.0]))
    close_to(labelled([True, False], pa.bool_(), positive="false").target, pd.Series([0.0, 1.0]))


def test_regression_label_is_the_scaled_value_and_ends_when_it_arrives() -> None:
    uc = parse_usecase(
        {
            "name": "claims",
            "task": "regression",
            "source": {"kind": "file"},
            "entity": "policy",
            "time": "month",
            "columns": {
                "policy": "string",
                "month": "date",
                "cost": "float",
                "settled": {"type": "date", "role": "label_available_at"},
            },
            "target": {"kind": "label", "column": "cost", "scale": 0.001},
        }
    )
    table = pa.table(
        {
            "policy": ["p1", "p1", "p2"],
            "month": pa.array([date(2024, 1, 1), date(2024, 2, 1), date(2024, 1, 1)], pa.date32()),
            "cost": [1500.0, None, 200.0],
            "settled": pa.array([date(2024, 4, 2), None, date(2024, 1, 20)], pa.date32()),
        }
    )
    got = targets(uc, table)
    close_to(got.target, pd.Series([1.5, np.nan, 0.2]))
    assert list(got[LABEL_END]) == [date(2024, 4, 2), None, date(2024, 1, 20)]


def test_regression_label_needs_numbers() -> None:
    with pytest.raises(FeatureSpecError, match=r"use case churn: a regression label needs a numeric column; 'label'"):
        labelled(["a"], pa.string(), scale=1.0)


def test_a_third_class_needs_target_negative_and_then_gets_no_label() -> None:
    from goldgate.data.features import build_dsl_features

    data = {
        "name": "loans",
        "task": "binary",
        "source": {"kind": "file", "path": "loans.csv"},
        "columns": {"id": {"role": "entity"}, "amount": "float", "status": {"role": "target"}},
        "target": {"kind": "label", "column": "status", "positive": "Charged Off"},
    }
    gold = ibis.duckdb.connect().create_table(
        "gold",
        pa.table(
            {
                "id": ["a", "b", "c", "d"],
                "amount": [1.0, 2.0, 3.0, 4.0],
                "status": ["Charged Off", "Fully Paid", "Current", "Fully Paid"],
                "as_of": pa.array([date(2024, 1, 1)] * 4, pa.date32()),
            }
        ),
    )
    with pytest.raises(FeatureSpecError, match=r"holds 3 classes .*set target.negative"):
        build_dsl_features(gold, parse_usecase(data))
    data["target"]["negative"] = "Fully Paid"
    out = build_dsl_features(gold, parse_usecase(data)).to_pandas().set_index("id").sort_index()
    assert out.target.fillna(-1).tolist() == [1.0, 0.0, -1.0, 0.0]  # 'Current' has no label yet
