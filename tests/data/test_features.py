"""The feature DSL: each op against pandas on a tiny panel, its errors, and the point-in-time property."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goldgate.data.features import (
    LABEL_END,
    FeatureSpecError,
    build_dsl_features,
    feature_names,
    op_names,
)
from goldgate.usecase import Derive, UseCase, parse_usecase

KEYS = ["store", "date"]
# Irregular dates (a gap after the 3rd and the 5th): row frames and time spans differ.
DATES = [date(2024, 1, d) for d in (1, 2, 3, 5, 6, 9)]
X_A = [1.0, 2.0, None, 4.0, 3.0, 6.0]
X_B = [2.0, 5.0, 1.0, 3.0, 3.0, 7.5]
COLUMNS: dict[str, Any] = {
    "store": "string",
    "date": "date",
    "x": "float",
    "y": "int",
    "flag": "bool",
    "opened": "date",
    "kind": "string",
    "sales": {"type": "float", "role": "target"},
    "note": {"type": "string", "role": "ignore"},
}


def usecase(features: dict[str, Any], *, columns: dict[str, Any] | None = None, **extra: Any) -> UseCase:
    """A file use case over the panel's columns (entity store, time date) with the given features."""
    data: dict[str, Any] = {
        "name": "shop",
        "task": "regression",
        "source": {"kind": "file", "path": "shop.csv"},
        "columns": columns or COLUMNS,
        "target": {"kind": "value_at", "column": "sales", "horizon": 1},
        "features": features,
        **extra,
    }
    if columns is None:
        data.update(entity="store", time="date")
    return parse_usecase(data)


def panel() -> pa.Table:
    """Two stores over six irregular dates; store a misses x on Jan 3, store b has a NaN sales."""
    n = len(DATES)
    return pa.table(
        {
            "store": ["a"] * n + ["b"] * n,
            "date": pa.array(DATES * 2, pa.date32()),
            "x": pa.array(X_A + X_B, pa.float64()),
            "y": pa.array([1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1], pa.int64()),
            "flag": [True, False] * n,
            "opened": pa.array([date(1970, 1, 11)] * n + [date(2023, 12, 31)] * n, pa.date32()),
            "kind": ["u", "v", "u", None, "w", "u", "v", "v", "w", "u", "u", "v"],
            # from_pandas=False keeps a NaN, which must read as missing like a NULL
            "sales": pa.array([10.0, 11, 12, 13, 14, 15, 20, 21, float("nan"), 23, 24, 25], from_pandas=False),
        }
    )


def duckdb_table(table: pa.Table) -> ir.Table:
    """``table`` in a DuckDB database: an event target runs its SQL on the table's engine."""
    return ibis.duckdb.connect().create_table("gold", table)


def build(uc: UseCase, table: pa.Table | None = None) -> pd.DataFrame:
    """The executed feature table, sorted by the keys, NULL as NaN."""
    out = build_dsl_features(duckdb_table(table if table is not None else panel()), uc)
    return out.to_pyarrow().to_pandas().sort_values(KEYS).reset_index(drop=True)


def reference() -> pd.DataFrame:
    """The panel in pandas, sorted like ``build``'s output, with a DatetimeIndex-ready date column."""
    df = panel().to_pandas().sort_values(KEYS).reset_index(drop=True)
    df["ts"] = pd.to_datetime(df["date"])
    return df


def close(got: pd.Series, want: pd.Series, tol: float = 1e-12) -> None:
    """Equal within ``tol`` (relative and absolute), NaN equal to NaN."""
    got_v, want_v = got.to_numpy(dtype=float), want.to_numpy(dtype=float)
    assert np.array_equal(np.isnan(got_v), np.isnan(want_v)), f"{got.name}: NULLs differ\n{got_v}\n{want_v}"
    assert np.allclose(got_v, want_v, rtol=tol, atol=tol, equal_nan=True), f"{got.name}:\n{got_v}\n{want_v}"


def derive(*ops: dict[str, Any], **features: Any) -> UseCase:
    return usecase({"values": False, "derive": list(ops), **features})


# ------------------------------------------------------------------------------------------- ops vs pandas
def test_lag_diff_pct_and_log_change_match_pandas_per_entity() -> None:
    uc = derive(
        {"op": "lag", "column": "x", "periods": [1, 2]},
        {"op": "diff", "column": "x", "periods": [1, 3]},
        {"op": "pct_change", "column": "x", "periods": [1]},
        {"op": "log_change", "column": "x", "periods": [2]},
    )
    got, df = build(uc), reference()
    g = df.groupby("store")["x"]
    close(got.x_lag1, g.shift(1))
    close(got.x_lag2, g.shift(2))
    close(got.x_diff1, df.x - g.shift(1))
    close(got.x_diff3, df.x - g.shift(3))
    close(got.x_pct1, df.x / g.shift(1) - 1)
    close(got.x_logchg2, np.log(df.x / g.shift(2)))


def test_ratios_are_null_where_undefined() -> None:
    table = panel().set_column(2, "x", pa.array([1.0, 0.0, 2.0, -1.0, 4.0, 2.0, *X_B], pa.float64()))
    got = build(derive({"op": "pct_change", "column": "x"}, {"op": "log_change", "column": "x"}), table)
    a = got[got.store == "a"]
    # 0 -> 2 has no percent change; a step from or to a non-positive value has no log change
    assert np.isnan(a.x_pct1.iloc[2])
    assert a.x_pct1.iloc[1] == pytest.approx(-1.0)
    assert a.x_logchg1.isna().tolist() == [True, True, True, True, True, False]
    assert a.x_logchg1.iloc[5] == pytest.approx(math.log(0.5))


@pytest.mark.parametrize("min_periods", [None, 2])
def test_rolling_rows_match_pandas_with_min_periods(min_periods: int | None) -> None:
    stats = ["mean", "std", "rms", "min", "max", "sum", "count"]
    uc = derive({"op": "rolling", "column": "x", "window": 3, "stats": stats, "min_periods": min_periods})
    got, df = build(uc), reference()
    need = min_periods or 3
    roll = df.groupby("store")["x"].rolling(3, min_periods=need)
    for stat in ("mean", "std", "min", "max", "sum"):
        close(got[f"x_{stat}_3"], getattr(roll, stat)().reset_index(drop=True))
    squares = (df.x**2).groupby(df.store).rolling(3, min_periods=need).mean().reset_index(drop=True)
    close(got.x_rms_3, np.sqrt(squares))
    counts = df.groupby("store")["x"].rolling(3, min_periods=0).count().reset_index(drop=True)
    close(got.x_count_3, counts.where(counts >= need))  # NULL below min_periods non-null values, like the others


def test_rolling_span_is_a_time_range_ending_at_t() -> None:
    uc = derive({"op": "rolling", "column": "x", "span": "3d", "stats": ["sum", "count", "mean"]})
    got, df = build(uc), reference()
    for stat in ("sum", "count", "mean"):
        want = df.groupby("store").apply(lambda g, s=stat: getattr(g.rolling("3d", on="ts")["x"], s)())
        close(got[f"x_{stat}_3d"], want.reset_index(drop=True))
    # Jan 5 (store a) reads Jan 3..5: Jan 3 has no x, so the sum is 4 alone
    assert got.x_sum_3d.iloc[3] == 4.0


def stamped() -> tuple[UseCase, pa.Table]:
    """One store at irregular times of day: a 12-hour span, the hour and minute of the time column."""
    columns = {"store": "string", "at": "timestamp", "x": "float", "sales": {"type": "float", "role": "target"}}
    features = {
        "values": False,
        "calendar": ["hour", "minute"],
        "derive": [{"op": "rolling", "column": "x", "span": "12h", "stats": ["sum"]}],
    }
    uc = usecase(features, columns=columns, entity="store", time="at")
    at = [datetime(2024, 1, 1, h, m) for h, m in ((0, 0), (6, 30), (12, 0), (13, 15), (23, 59))]
    return uc, pa.table({"store": ["a"] * 5, "at": at, "x": [1.0, 2.0, 4.0, 8.0, 16.0], "sales": [0.0] * 5})


def test_rolling_span_on_timestamps_ends_at_t_and_excludes_t_minus_span() -> None:
    uc, table = stamped()
    got = build_dsl_features(ibis.memtable(table), uc).to_pandas().sort_values("at")
    want = pd.Series([1.0, 2.0, 4.0, 8.0, 16.0], index=pd.DatetimeIndex(table["at"].to_pylist())).rolling("12h")
    # at 12:00 the row at 00:00 is exactly 12 hours old: out, as in pandas
    assert got.x_sum_12h.tolist() == want.sum().tolist() == [1.0, 3.0, 6.0, 14.0, 28.0]
    assert got.hour.tolist() == [0.0, 6.0, 12.0, 13.0, 23.0]
    assert got.minute.tolist() == [0.0, 30.0, 0.0, 15.0, 59.0]


def truncated_ewm(x: np.ndarray, halflife: float) -> np.ndarray:
    """The definition: adjust=True weights q**i over the last ceil(10 * halflife) rows, missing values skipped."""
    q, n = 0.5 ** (1 / halflife), math.ceil(10 * halflife)
    out = np.full(len(x), np.nan)
    for t in range(len(x)):
        window = x[max(0, t - n + 1) : t + 1][::-1]
        weights = q ** np.arange(len(window))
        seen = ~np.isnan(window)
        if seen.any():
            out[t] = (weights[seen] * window[seen]).sum() / weights[seen].sum()
    return out


@pytest.mark.parametrize("halflife", [0.5, 1.0, 2.5])
def test_ewm_matches_its_truncated_definition_and_pandas(halflife: float) -> None:
    rng = np.random.default_rng(7)
    n = 90
    x = rng.normal(10, 3, n)
    x[[5, 6, 40]] = np.nan
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(n)]
    table = pa.table(
        {
            "store": ["a"] * n,
            "date": pa.array(days, pa.date32()),
            "x": pa.array(x, from_pandas=True),
            "sales": np.zeros(n),
        }
    )
    columns = {"store": "string", "date": "date", "x": "float", "sales": {"type": "float", "role": "target"}}
    uc = usecase(
        {"values": False, "derive": [{"op": "ewm", "column": "x", "halflife": halflife}]},
        columns=columns,
        entity="store",
        time="date",
    )
    got = build_dsl_features(ibis.memtable(table), uc).to_pandas().sort_values("date").reset_index(drop=True)
    name = op_names(Derive(op="ewm", column="x", halflife=halflife))[0]
    close(got[name], pd.Series(truncated_ewm(x, halflife)))
    # Where the newest row has a value, the cut weights sum to at most 2**-10 / (1 - q) of the kept ones, so the
    # mean moves by at most that share of the values' range from pandas' untruncated one.
    present = ~np.isnan(x)
    pandas = pd.Series(x).ewm(halflife=halflife, adjust=True).mean()
    bound = 0.5**10 / (1 - 0.5 ** (1 / halflife)) * (np.nanmax(x) - np.nanmin(x))
    assert (got[name] - pandas)[present].abs().max() <= bound


def test_ewm_restarts_per_entity() -> None:
    got, df = build(derive({"op": "ewm", "column": "x", "halflife": 2})), reference()
    want = df.groupby("store")["x"].transform(lambda s: s.ewm(halflife=2, adjust=True).mean())
    close(got.x_ewm2, want)  # 6 rows: within the truncation, so pandas' exact value


def test_cross_sectional_rank_and_demean_read_the_rows_at_t() -> None:
    three = pa.concat_tables([panel(), panel().set_column(0, "store", pa.array(["c"] * 12))])
    three = three.set_column(2, "x", pa.array(X_A + X_B + [9.0, 1.0, 1.0, None, 3.0, 0.0] * 2, pa.float64()))
    three = three.slice(0, 18)  # store c on the first six dates
    got = build(derive({"op": "rank", "column": "x"}, {"op": "demean", "column": "x"}), three)
    df = three.to_pandas().sort_values(KEYS).reset_index(drop=True)
    by_date = df.groupby("date")["x"]
    # percent rank: (rank - 1) / (rows with a value - 1), 0 for a lone value; ties share the lowest rank
    ranks, present = by_date.rank(method="min"), by_date.transform("count")
    close(got.x_xs_rank, ((ranks - 1) / (present - 1).clip(lower=1)).where(df.x.notna()))
    close(got.x_xs_demean, df.x - by_date.transform("mean"))


def test_encodings_onehot_ordinal_and_frequency() -> None:
    uc = derive(
        {"op": "encode", "column": "kind", "method": "onehot", "max_categories": 2},
        {"op": "encode", "column": "kind", "method": "ordinal"},
        {"op": "encode", "column": "kind", "method": "frequency"},
    )
    got = build(uc)
    # u (5 rows) and v (4) are the two most frequent; w and the missing value are neither
    assert [c for c in got.columns if c.startswith("kind_") and c not in ("kind_code", "kind_freq")] == [
        "kind_u",
        "kind_v",
    ]
    df = reference()
    close(got.kind_u, (df.kind == "u").astype(float))
    close(got.kind_v, (df.kind == "v").astype(float))
    # first seen: u and v on Jan 1 (ties by value), w on Jan 3 -> codes 0, 1, 2
    close(got.kind_code, df.kind.map({"u": 0.0, "v": 1.0, "w": 2.0}))
    # share of the rows up to t, all stores: Jan 1 has u and v of 2 rows; by Jan 2, v holds 3 of 4
    rows_to = df.date.map(df.groupby("date").size().cumsum())
    same_to = df.apply(lambda r: ((df.kind == r.kind) & (df.date <= r.date)).sum(), axis=1)
    close(got.kind_freq, (same_to / rows_to).where(df.kind.notna()))
    assert got.kind_freq.iloc[7] == pytest.approx(3 / 4)


def test_values_calendar_and_default_text_encoding() -> None:
    uc = usecase({"calendar": ["day_of_week", "day_of_month", "week", "quarter", "is_weekend", "hour"]})
    got, df = build(uc), reference()
    names = ["x", "y", "flag", "opened", "kind_u", "kind_v", "kind_w", "sales"]
    calendar = ["day_of_week", "day_of_month", "week", "quarter", "is_weekend", "hour"]
    assert list(got.columns) == [*KEYS, *names, *calendar, "target", LABEL_END]
    assert all(got[c].dtype == "float64" for c in [*names, "target"])
    assert all(got[c].dtype == "int32" for c in calendar)  # counts, never missing
    close(got.y, df.y.astype(float))
    close(got.flag, df.flag.astype(float))
    close(got.opened, pd.Series([10.0] * 6 + [19722.0] * 6))  # days since 1970-01-01
    close(got.sales, df.sales)  # a value_at target's own column is known at t; the NaN reads as missing
    close(got.day_of_week, df.ts.dt.dayofweek.astype(float))
    close(got.week, df.ts.dt.isocalendar().week.astype(float))
    close(got.is_weekend, (df.ts.dt.dayofweek >= 5).astype(float))
    assert set(got.hour) == {0.0}  # dates have no time of day


@pytest.mark.parametrize(("method", "names"), [("ordinal", ["kind_code"]), ("frequency", ["kind_freq"]), ("drop", [])])
def test_encode_strings_choose_the_default_for_text_values(method: str, names: list[str]) -> None:
    got = build(usecase({"encode_strings": method}))
    assert [c for c in got.columns if c.startswith("kind")] == names


def test_label_column_is_never_a_feature_and_its_arrival_neither() -> None:
    columns = {
        "store": {"type": "string", "role": "entity"},
        "date": {"type": "date", "role": "time"},
        "x": "float",
        "sales": "float",
        "known": {"type": "date", "role": "label_available_at"},
    }
    table = pa.table(
        {"store": ["a"], "date": pa.array([date(2024, 1, 1)]), "x": [1.0], "sales": [2.0], "known": [date(2024, 2, 1)]}
    )
    uc = usecase(
        {"values": True},
        columns=columns,
        target={"kind": "label", "column": "sales"},
        gold={"derive": {"x2": "x * 2", "leak": "sales + 1"}},
    )
    gold = ibis.memtable(table).mutate(x2=ibis._.x * 2, leak=ibis._.sales + 1)
    got = build_dsl_features(gold, uc).to_pandas()
    assert list(got.columns) == ["store", "date", "x", "x2", "target", LABEL_END]
    with pytest.raises(FeatureSpecError, match=r"use case shop: derive lag of 'leak': 'leak' is not known at t"):
        build_dsl_features(gold, uc.model_copy(update={"features": derive({"op": "lag", "column": "leak"}).features}))


def test_later_ops_read_earlier_outputs_and_name_and_scale_apply() -> None:
    uc = derive(
        {"op": "diff", "column": "x", "name": "dx"},
        {"op": "rolling", "column": "dx", "window": 2, "stats": ["mean"], "scale": 10},
        {"op": "lag", "column": "dx_mean_2", "periods": [1]},
    )
    got, df = build(uc), reference()
    dx = df.x - df.groupby("store")["x"].shift(1)
    mean2 = dx.groupby(df.store).rolling(2).mean().reset_index(drop=True) * 10
    close(got.dx, dx)
    close(got.dx_mean_2, mean2)
    close(got.dx_mean_2_lag1, mean2.groupby(df.store).shift(1))
    assert feature_names({c: str(t) for c, t in ibis.memtable(panel()).schema().items()}, uc) == [
        "dx",
        "dx_mean_2",
        "dx_mean_2_lag1",
    ]


def test_feature_names_lists_the_output_columns_without_reading_data() -> None:
    uc = usecase(
        {
            "calendar": ["month"],
            "derive": [
                {"op": "ewm", "column": "y", "halflife": 2.5},
                {"op": "encode", "column": "kind", "method": "onehot"},
            ],
        }
    )
    schema = {c: str(t) for c, t in ibis.memtable(panel()).schema().items()}
    names = feature_names(schema, uc)
    assert names == ["x", "y", "flag", "opened", "sales", "y_ewm2p5", "kind_*", "month"]
    got = build(uc)
    assert [c for c in got.columns if c not in (*KEYS, "target", LABEL_END)] == [
        *names[:-2],
        "kind_u",
        "kind_v",
        "kind_w",
        "month",
    ]


def test_record_table_without_time_encodes_and_ranks_across_rows() -> None:
    columns = {"customer": {"type": "string", "role": "entity"}, "age": "int", "plan": "string", "churn": "bool"}
    uc = usecase(
        {"encode_strings": "ordinal", "derive": [{"op": "rank", "column": "age"}]},
        columns=columns,
        task="classification",
        target={"kind": "label", "column": "churn"},
    )
    as_of = pa.array([date(2024, 5, 1)] * 4, pa.date32())
    table = pa.table(
        {
            "customer": ["c1", "c2", "c3", "c4"],
            "as_of": as_of,
            "age": [30, 20, 40, 20],
            "plan": ["pro", "basic", "pro", None],
            "churn": [True, False, None, True],
        }
    )
    got = build_dsl_features(ibis.memtable(table), uc).to_pandas().sort_values("customer")
    assert (uc.entity, uc.time) == ("customer", "as_of")
    assert got.plan_code.tolist()[:3] == [1.0, 0.0, 1.0]  # one as_of: codes by sorted value
    assert np.isnan(got.plan_code.iloc[3])
    assert got.age_xs_rank.tolist() == [2 / 3, 0.0, 1.0, 0.0]
    assert got.target.tolist()[:2] == [1.0, 0.0]
    assert LABEL_END not in got


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("features", "message"),
    [
        (
            {"derive": [{"op": "lag", "column": "price"}]},
            r"use case shop: derive lag of 'price': no such column \(available: store, date, x, y, flag",
        ),
        (
            {"derive": [{"op": "lag", "column": "x", "periods": [1, 2], "name": "xl"}]},
            r"derive lag of 'x': name 'xl' renames a single output",
        ),
        (
            {"derive": [{"op": "encode", "column": "kind", "name": "k"}]},
            r"derive encode of 'kind': name 'k' renames a single output",
        ),
        ({"derive": [{"op": "diff", "column": "kind"}]}, r"derive diff of 'kind': the op needs numbers, 'kind' is"),
        (
            {"derive": [{"op": "lag", "column": "x", "name": "y"}]},
            r"derive lag of 'x': output 'y' is already a column",
        ),
        (
            {"calendar": ["month"], "derive": [{"op": "lag", "column": "x", "name": "month"}]},
            r"feature name 'month' is used twice",
        ),
        (
            {"derive": [{"op": "lag", "column": "x", "name": "target"}]},
            r"feature name 'target' is used twice",
        ),
        (
            {"derive": [{"op": "rolling", "column": "x", "span": "12h"}]},
            r"derive rolling of 'x': span '12h' is not whole days, and the time column holds dates",
        ),
    ],
)
def test_declarations_that_do_not_fit_are_one_line_errors(features: dict[str, Any], message: str) -> None:
    with pytest.raises(FeatureSpecError, match=message) as err:
        build_dsl_features(ibis.memtable(panel()), usecase(features))
    assert "\n" not in str(err.value)


def test_time_ops_and_calendar_need_a_time_column() -> None:
    columns = {"customer": {"type": "string", "role": "entity"}, "age": "int", "spend": "float"}
    table = ibis.memtable(
        pa.table({"customer": ["c1"], "as_of": pa.array([date(2024, 5, 1)]), "age": [3], "spend": [1.0]})
    )
    target = {"kind": "label", "column": "spend"}
    uc = usecase({"derive": [{"op": "rolling", "column": "age", "window": 2}]}, columns=columns, target=target)
    with pytest.raises(FeatureSpecError, match=r"derive rolling of 'age': the op reads earlier rows in time, but"):
        build_dsl_features(table, uc)
    uc = usecase({"calendar": ["month"]}, columns=columns, target=target)
    with pytest.raises(FeatureSpecError, match=r"use case shop: calendar features \['month'\] need a date"):
        build_dsl_features(table, uc)


def test_onehot_names_that_collide_after_reading_the_data_are_an_error() -> None:
    table = panel().set_column(6, "kind", pa.array(["code"] * 12))
    uc = derive(
        {"op": "encode", "column": "kind", "method": "onehot"},
        {"op": "encode", "column": "kind", "method": "ordinal"},
    )
    with pytest.raises(FeatureSpecError, match=r"derive encode of 'kind': output 'kind_code' is already a column"):
        build(uc, table)


# ------------------------------------------------------------------------------------------ point in time
OPS = ["lag", "diff", "pct_change", "log_change", "rolling_rows", "rolling_span", "ewm", "rank", "demean", "encode"]


@st.composite
def panels(draw: st.DrawFn) -> pa.Table:
    """1-4 stores, each on its own irregular dates, x and y with NULLs and NaNs, a text column with NULLs."""
    rows: dict[str, list[Any]] = {"store": [], "date": [], "x": [], "y": [], "kind": [], "sales": []}
    number = st.one_of(st.none(), st.just(float("nan")), st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 3)))
    for store in range(draw(st.integers(1, 4))):
        days = draw(st.lists(st.integers(0, 24), min_size=3, max_size=10, unique=True))
        for day in sorted(days):
            rows["store"].append(f"s{store}")
            rows["date"].append(date(2024, 1, 1) + timedelta(days=day))
            rows["x"].append(draw(number))
            rows["y"].append(draw(number))
            rows["kind"].append(draw(st.sampled_from(["a", "b", "c", None])))
            rows["sales"].append(draw(number))
    types = {"store": pa.string(), "date": pa.date32(), "kind": pa.string()}
    return pa.table({k: pa.array(v, types.get(k, pa.float64()), from_pandas=False) for k, v in rows.items()})


def draw_op(draw: st.DrawFn, kind: str, column: str) -> dict[str, Any]:
    """One op of ``kind`` on ``column`` with drawn parameters."""
    op: dict[str, Any] = {"op": kind, "column": column}
    if kind in ("lag", "diff", "pct_change", "log_change"):
        op["periods"] = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2, unique=True))
    elif kind == "rolling_rows":
        stat = st.sampled_from(["mean", "std", "rms", "min", "max", "sum", "count"])
        op.update(op="rolling", window=draw(st.integers(1, 4)))
        op.update(stats=draw(st.lists(stat, min_size=1, max_size=3, unique=True)))
        op["min_periods"] = draw(st.one_of(st.none(), st.integers(1, op["window"])))
    elif kind == "rolling_span":
        stat = st.sampled_from(["mean", "std", "sum", "count"])
        op.update(op="rolling", span=draw(st.sampled_from(["1d", "3d", "1w"])))
        op.update(stats=draw(st.lists(stat, min_size=1, max_size=2, unique=True)))
    elif kind == "ewm":
        op["halflife"] = draw(st.sampled_from([0.5, 1.0, 2.5]))
    elif kind == "encode":
        op.update(column="kind", method=draw(st.sampled_from(["onehot", "ordinal", "frequency"])))
    return op


@st.composite
def derive_ops(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-6 ops of every kind, each on x, y, sales or an earlier numeric output; outputs with unique names."""
    ops: list[dict[str, Any]] = []
    numeric, names = ["x", "y", "sales"], {"x", "y", "sales", "kind"}
    for _ in range(draw(st.integers(1, 6))):
        op = draw_op(draw, draw(st.sampled_from(OPS)), draw(st.sampled_from(numeric)))
        outputs = op_names(Derive.model_validate(op))
        if names & set(outputs):
            continue
        names.update(outputs)
        ops.append(op)
        numeric.extend(n for n in outputs if not n.startswith("kind_"))
    return ops


def features_by_key(gold: pa.Table, uc: UseCase) -> pd.DataFrame:
    """Features only (no target: it looks forward by design), indexed by (store, date)."""
    out = build_dsl_features(ibis.memtable(gold), uc).to_pyarrow().to_pandas()
    return out.drop(columns=["target", LABEL_END]).set_index(KEYS).sort_index()


@settings(max_examples=50, deadline=None)
@given(
    gold=panels(),
    ops=derive_ops(),
    encode=st.sampled_from(["onehot", "ordinal", "frequency", "drop"]),
    calendar=st.lists(st.sampled_from(["day_of_week", "month", "week", "is_weekend"]), max_size=2, unique=True),
    cut=st.integers(0, 100),
)
def test_features_at_t_do_not_change_when_later_rows_are_removed(
    gold: pa.Table, ops: list[dict[str, Any]], encode: str, calendar: list[str], cut: int
) -> None:
    """Point in time over the whole DSL: every feature of every row at or before a cutoff c is the same when the
    data ends at c.

    Onehot columns are compared where both tables have them: the category set is drawn from the whole table,
    so later rows can add or drop a column, but never change the value of a column at t. Values are equal up
    to float summation order (window sums over partitions of different sizes), NaN equal to NaN.
    """
    features = {"calendar": calendar, "encode_strings": encode, "derive": ops}
    uc = usecase(features, columns=COLUMNS | {"y": "float"}, entity="store", time="date")
    dates = sorted(set(gold["date"].to_pylist()))
    cutoff = dates[cut % len(dates)]
    gold = gold.append_column("flag", pa.array([True] * gold.num_rows))
    gold = gold.append_column("opened", pa.array([date(2020, 1, 1)] * gold.num_rows, pa.date32()))
    full = features_by_key(gold, uc)
    cut_off = features_by_key(gold.filter(pc.less_equal(gold["date"], pa.scalar(cutoff, pa.date32()))), uc)
    full = full[full.index.get_level_values("date") <= cutoff]
    assert full.index.equals(cut_off.index)
    shared = [c for c in full.columns if c in cut_off.columns]
    onehot = {c for c in set(full.columns) | set(cut_off.columns) if c.startswith("kind_")}
    assert set(full.columns) ^ set(cut_off.columns) <= onehot
    for column in shared:
        close(full[column].reset_index(drop=True), cut_off[column].reset_index(drop=True), tol=1e-9)


# ------------------------------------------------------------------------------------------------- engines
def spark_table(spark: Any, table: pa.Table, name: str) -> ir.Table:
    spark.createDataFrame(table).createOrReplaceTempView(name)  # from Arrow: NULL stays NULL, NaN stays NaN
    return ibis.pyspark.connect(spark).table(name)


def test_spark_builds_the_same_features_and_target_as_duckdb(spark: Any) -> None:
    uc = usecase(
        {
            "calendar": ["day_of_week", "week", "is_weekend"],
            "derive": [
                {"op": "lag", "column": "x", "periods": [1, 2]},
                {"op": "log_change", "column": "x"},
                {"op": "rolling", "column": "x", "window": 3, "stats": ["mean", "std", "rms"], "min_periods": 2},
                {"op": "rolling", "column": "y", "span": "1w", "stats": ["sum", "max"]},
                {"op": "ewm", "column": "x", "halflife": 0.5},
                {"op": "rank", "column": "x"},
                {"op": "demean", "column": "y"},
                {"op": "encode", "column": "kind", "method": "onehot"},
                {"op": "encode", "column": "kind", "method": "ordinal"},
                {"op": "encode", "column": "kind", "method": "frequency"},
            ],
        },
        task="classification",
        target={"kind": "event", "event": "sales > x * 5", "horizon": 2},
    )
    on_duckdb = build(uc)
    gold = spark_table(spark, panel(), "dsl_panel")
    on_spark = build_dsl_features(gold, uc).to_pyarrow().to_pandas().sort_values(KEYS).reset_index(drop=True)
    assert list(on_spark.columns) == list(on_duckdb.columns)
    pd.testing.assert_frame_equal(on_spark[[*KEYS, LABEL_END]], on_duckdb[[*KEYS, LABEL_END]], check_dtype=False)
    for column in on_duckdb.columns.drop([*KEYS, LABEL_END]):
        close(on_spark[column], on_duckdb[column], tol=1e-9)
    assert on_duckdb.target.notna().sum() == 8  # two rows per store lack their horizon


def test_spark_reads_time_spans_and_calendar_of_timestamps_as_duckdb(spark: Any) -> None:
    uc, table = stamped()
    on_duckdb = build_dsl_features(ibis.memtable(table), uc).to_pandas().sort_values("at").reset_index(drop=True)
    gold = spark_table(spark, table, "dsl_stamped")
    on_spark = build_dsl_features(gold, uc).to_pyarrow().to_pandas().sort_values("at").reset_index(drop=True)
    for column in ("x_sum_12h", "hour", "minute", "target"):
        close(on_spark[column], on_duckdb[column])


def test_versus_subtracts_the_reference_entitys_value_at_the_same_time() -> None:
    got = build(derive({"op": "versus", "column": "x", "entity": "a", "name": "x_vs_a"}))
    df = reference()
    a = df[df.store == "a"].set_index("date").x
    want = df.x - df.date.map(a)
    close(got.x_vs_a, want)
    assert got[got.store == "a"].x_vs_a.dropna().eq(0).all()


def test_demean_and_versus_of_earlier_outputs_and_row_sql_read_the_rows_at_t() -> None:
    uc = derive(
        {"op": "rolling", "column": "xy", "window": 2, "stats": ["mean"], "name": "m2"},
        {"op": "lag", "column": "m2", "periods": [1]},
        {"op": "demean", "column": "m2_lag1"},
        {"op": "versus", "column": "xy", "entity": "a", "scale": 2.0, "name": "xy_vs_a"},
        {"op": "demean", "column": "xy_vs_a"},
        sql={"xy": "x * y"},
    )
    got, df = build(uc), reference()
    xy = df.x * df.y
    lagged = xy.groupby(df.store).transform(lambda s: s.rolling(2).mean().shift(1))
    close(got.m2_lag1_xs_demean, lagged - lagged.groupby(df.date).transform("mean"))
    # store a has no x on Jan 3: every store's value against it is NULL that day
    versus = 2.0 * (xy - df.date.map(xy[df.store == "a"].groupby(df.date).first()))
    assert versus[df.date == date(2024, 1, 3)].isna().all()
    close(got.xy_vs_a, versus)
    close(got.xy_vs_a_xs_demean, versus - versus.groupby(df.date).transform("mean"))


def test_row_sql_features_come_first_and_later_ops_read_them() -> None:
    uc = derive({"op": "lag", "column": "xy", "periods": [1]}, sql={"xy": "x * y"}, values=False)
    got, df = build(uc), reference()
    assert [c for c in got.columns if c not in (*KEYS, "target", LABEL_END)] == ["xy", "xy_lag1"]
    close(got.xy, df.x * df.y)
    close(got.xy_lag1, (df.x * df.y).groupby(df.store).shift(1))


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("lead(x) OVER (PARTITION BY store ORDER BY date)", "own row only"),
        ("(SELECT max(x) FROM gold)", "own row only"),
    ],
)
def test_row_sql_may_not_read_other_rows(sql: str, message: str) -> None:
    with pytest.raises(FeatureSpecError, match=message):
        build(derive(sql={"peek": sql}))


def test_row_sql_may_not_read_the_label() -> None:
    columns = {**COLUMNS, "sales": {"type": "float", "role": "target"}}
    uc = usecase(
        {"sql": {"leak": "sales * 2"}},
        columns=columns,
        entity="store",
        time="date",
        target={"kind": "label", "column": "sales"},
    )
    with pytest.raises(FeatureSpecError, match="reads \\['sales'\\], not known at t"):
        build(uc)


def test_onehot_names_spell_out_symbols_so_categories_stay_apart() -> None:
    from goldgate.data.features import op_names

    op = Derive(op="encode", column="emp", method="onehot")
    assert op_names(op, _slug_values(["< 1 year", "1 year", "10+ years", "5%"])) == [
        "emp_lt_1_year",
        "emp_1_year",
        "emp_10_plus_years",
        "emp_5_pct",
    ]


def _slug_values(values: list[str]) -> list[str]:
    from goldgate.data.names import slugs

    return slugs(list(values))
