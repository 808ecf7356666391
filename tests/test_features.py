"""fx's features (declared in fx.yaml, compiled by the feature DSL) against a numpy reference on a small synthetic
panel, and a point-in-time (leakage) check."""

from __future__ import annotations

from datetime import date
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from goldgate.features import LABEL_END, build_feature_table, feature_columns
from goldgate.usecase import UseCase, load_usecase

FX = load_usecase("fx")
TARGET = FX.target
KEYS = ["currency", "date"]
RETURN_LAGS = [1, 2, 5]
VOL_WINDOWS = [5, 20, 60]
ANN = np.sqrt(252)
DATES = [d.date() for d in pd.bdate_range("2024-01-01", periods=80)]
# Currencies miss a few fixings (holidays): windows run over rows, and USD gaps leave ret_vs_ref NULL.
MISSING = {"USD": {DATES[33]}, "JPY": set(), "GBP": {DATES[10], DATES[11], DATES[50]}}


@pytest.fixture(scope="module")
def con() -> Any:
    return ibis.duckdb.connect()


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    """Gold-shaped returns: one row per currency and fixing date, with the log return since the last one."""
    rng = np.random.default_rng(20240101)
    frames = []
    for currency, scale in [("USD", 0.004), ("JPY", 0.007), ("GBP", 0.003)]:
        days = [d for d in DATES if d not in MISSING[currency]]
        r = rng.normal(0, scale, len(days))
        frames.append(pd.DataFrame({"date": days, "currency": currency, "rate": np.exp(np.cumsum(r)), "log_return": r}))
    return pd.concat(frames, ignore_index=True).sample(frac=1, random_state=1)  # order must not matter


@pytest.fixture(scope="module")
def returns(con: Any, panel: pd.DataFrame) -> ir.Table:
    table = pa.Table.from_pandas(panel, preserve_index=False).cast(
        pa.schema(
            [
                ("date", pa.date32()),
                ("currency", pa.string()),
                ("rate", pa.float64()),
                ("log_return", pa.float64()),
            ]
        )
    )
    return con.create_table("returns", table, overwrite=True)


def frame(t: ir.Table) -> pd.DataFrame:
    """Executed features, NULL as NaN, dates as ``datetime.date``, sorted by the keys."""
    return t.to_pyarrow().to_pandas().sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def features(returns: ir.Table) -> pd.DataFrame:
    return frame(build_features(returns))


def build_features(returns: ir.Table, usecase: UseCase = FX) -> ir.Table:
    """The feature table fx.yaml declares, from gold-shaped returns."""
    return build_feature_table(returns, usecase)


def _trailing_rv(r: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(r), np.nan)
    for i in range(n - 1, len(r)):
        out[i] = np.sqrt(np.mean(r[i - n + 1 : i + 1] ** 2)) * ANN
    return out


def _forward_rv(r: np.ndarray, h: int) -> np.ndarray:
    out = np.full(len(r), np.nan)
    for i in range(len(r) - h):
        out[i] = np.sqrt(np.mean(r[i + 1 : i + 1 + h] ** 2)) * ANN
    return out


def _lag(r: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([np.full(k, np.nan), r[:-k]])


@pytest.fixture(scope="module")
def reference(panel: pd.DataFrame) -> pd.DataFrame:
    """The same features computed directly with numpy, row by row per currency."""
    parts = []
    for _, grp in panel.sort_values(KEYS).groupby("currency"):
        r = grp.log_return.to_numpy()
        part = pd.DataFrame({"currency": grp.currency.to_numpy(), "date": grp.date.to_numpy()})
        part["ret"] = r
        part["abs_ret_1"] = np.abs(r) * ANN
        for k in RETURN_LAGS:
            part[f"ret_lag{k}"] = _lag(r, k)
        for n in VOL_WINDOWS:
            part[f"rv_{n}"] = _trailing_rv(r, n)
        part[TARGET.name] = _forward_rv(r, TARGET.horizon)
        days = list(grp.date)
        part[LABEL_END] = days[TARGET.horizon :] + [None] * TARGET.horizon
        parts.append(part)
    ref = pd.concat(parts, ignore_index=True)
    usd = panel[panel.currency == "USD"].set_index("date").log_return
    ref["ret_vs_ref"] = ref.ret - ref.date.map(usd).astype("float64")
    ref["xs_rv_delta"] = ref.rv_5 - ref.groupby("date").rv_5.transform("mean")
    ref["day_of_week"] = [d.weekday() for d in ref.date]
    ref["month"] = [d.month for d in ref.date]
    return ref.sort_values(KEYS).reset_index(drop=True)


EXPECTED_COLUMNS = [
    "currency",
    "date",
    "ret",
    "abs_ret_1",
    "ret_lag1",
    "ret_lag2",
    "ret_lag5",
    "rv_5",
    "rv_20",
    "rv_60",
    "ret_vs_ref",
    "xs_rv_delta",
    "day_of_week",
    "month",
    "target_rv_5d",
    "target_end",
]


def test_columns_and_one_row_per_return(features: pd.DataFrame, panel: pd.DataFrame) -> None:
    assert [c for c in features.columns if not c.startswith("_")] == EXPECTED_COLUMNS
    assert len(features) == len(panel)
    assert not features.duplicated(KEYS).any()


def test_keys_line_up_with_the_reference(features: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert features[KEYS].equals(reference[KEYS])


@pytest.mark.parametrize(
    "column",
    [c for c in EXPECTED_COLUMNS if c not in (*KEYS, LABEL_END)],
)
def test_values_match_the_numpy_reference(features: pd.DataFrame, reference: pd.DataFrame, column: str) -> None:
    got = features[column].to_numpy(dtype="float64")
    want = reference[column].to_numpy(dtype="float64")
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15, equal_nan=True)


def test_reference_is_not_trivially_null(reference: pd.DataFrame) -> None:
    # Guards the comparison above against a reference that is NULL everywhere.
    for column in ["ret_lag5", "rv_60", "ret_vs_ref", "xs_rv_delta", TARGET.name]:
        assert reference[column].notna().sum() >= 15, column
    assert reference.ret_vs_ref.isna().sum() == 2  # JPY and GBP on the date USD has no fixing


def test_calendar_columns_are_int32(returns: ir.Table) -> None:
    schema = build_features(returns).schema()
    assert schema["day_of_week"] == ibis.dtype("int32")
    assert schema["month"] == ibis.dtype("int32")


def test_no_calendar_columns_when_disabled(returns: ir.Table) -> None:
    usecase = FX.model_copy(update={"features": FX.features.model_copy(update={"calendar": []})})
    columns = build_features(returns, usecase).columns
    assert "day_of_week" not in columns
    assert "month" not in columns


@pytest.mark.parametrize("n", VOL_WINDOWS)
def test_rv_is_null_until_n_returns_exist(features: pd.DataFrame, n: int) -> None:
    for currency, grp in features.groupby("currency"):
        rv = grp[f"rv_{n}"].to_numpy()
        assert np.isnan(rv[: n - 1]).all(), currency
        assert not np.isnan(rv[n - 1 :]).any(), currency


def test_target_is_the_forward_vol_and_null_at_the_end(features: pd.DataFrame) -> None:
    h = TARGET.horizon
    for currency, grp in features.groupby("currency"):
        r = grp.ret.to_numpy()
        target = grp[TARGET.name].to_numpy()
        assert np.isnan(target[-h:]).all(), currency
        assert not np.isnan(target[:-h]).any(), currency
        i = 10
        assert target[i] == pytest.approx(np.sqrt(np.mean(r[i + 1 : i + 1 + h] ** 2)) * ANN, rel=1e-12)


def test_target_end_is_the_date_of_the_last_fixing_the_target_reads(
    features: pd.DataFrame, reference: pd.DataFrame
) -> None:
    assert features[LABEL_END].tolist() == reference[LABEL_END].tolist()
    assert features[LABEL_END].isna().tolist() == features[TARGET.name].isna().tolist()
    gbp = features[features.currency == "GBP"].reset_index(drop=True)
    # GBP misses DATES[10] and DATES[11]: its 5-fixing horizon from DATES[8] ends on DATES[15], not DATES[13].
    assert gbp.loc[gbp.date == DATES[8], LABEL_END].item() == DATES[15]


def test_feature_columns_exclude_keys_target_and_target_end() -> None:
    assert feature_columns(EXPECTED_COLUMNS, TARGET, KEYS) == EXPECTED_COLUMNS[2:-2]


# --- point in time -------------------------------------------------------------------------------------------


CUT_DATES = [DATES[12], DATES[33], DATES[50], DATES[61], DATES[-TARGET.horizon - 1]]


def differing_columns(full: pd.DataFrame, truncated: pd.DataFrame, day: date, columns: list[str]) -> set[str]:
    """Columns whose values on ``day`` differ between the full-history and the truncated build."""
    a = full[full.date == day].set_index("currency").sort_index()
    b = truncated[truncated.date == day].set_index("currency").sort_index()
    assert list(a.index) == list(b.index)
    assert len(a) > 0
    return {c for c in columns if not same_values(a[c], b[c])}


def same_values(x: pd.Series, y: pd.Series) -> bool:
    """Equal values and equal NULL positions (floats to 1e-12 relative)."""
    if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
        xs, ys = x.to_numpy(dtype="float64"), y.to_numpy(dtype="float64")
        nan = np.isnan(xs)
        return np.array_equal(nan, np.isnan(ys)) and np.allclose(xs[~nan], ys[~nan], rtol=1e-12, atol=0)
    return [None if pd.isna(v) else v for v in x] == [None if pd.isna(v) else v for v in y]


def build_truncated(returns: ir.Table, day: date, build: Any) -> pd.DataFrame:
    return frame(build(returns.filter(returns.date <= day)))


def _features(t: ir.Table) -> ir.Table:
    return build_features(t)


def _with_a_leaky_feature(t: ir.Table) -> ir.Table:
    """The real features plus one that peeks at the next return: the check below must catch it."""
    feats = build_features(t)
    w = ibis.window(group_by="currency", order_by="date")
    return feats.mutate(peek_next=feats.ret.lead(1).over(w))


@pytest.mark.parametrize("day", CUT_DATES, ids=str)
def test_features_on_a_date_only_use_history_up_to_that_date(
    returns: ir.Table, features: pd.DataFrame, day: date
) -> None:
    truncated = build_truncated(returns, day, _features)
    non_target = feature_columns(list(features.columns), TARGET, KEYS)
    assert differing_columns(features, truncated, day, non_target) == set()


@pytest.mark.parametrize("day", CUT_DATES, ids=str)
def test_the_leakage_check_detects_columns_that_look_ahead(returns: ir.Table, day: date) -> None:
    full = frame(_with_a_leaky_feature(returns))
    truncated = build_truncated(returns, day, _with_a_leaky_feature)
    every_column = [c for c in full.columns if c not in KEYS]
    assert differing_columns(full, truncated, day, every_column) == {TARGET.name, LABEL_END, "peek_next"}
