"""Engine-side drift: histograms computed by DuckDB through Ibis, statistics checked against scipy and numpy.

Stated tolerances (see ``goldgate.monitor``):

- PSI, Jensen-Shannon and chi-square are exact functions of the histograms: they match a direct numpy / scipy
  computation on the same bins to 1e-9.
- KS is read at the cell boundaries of a 1,000-cell grid: at most one cell's share below scipy's exact statistic
  (here 0.002).
- Wasserstein is exact per cell unless the two CDFs cross inside a cell: within 0.5% of scipy's value plus 0.005
  reference standard deviations.
"""

from __future__ import annotations

from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare, ks_2samp, wasserstein_distance

from goldgate.drift_engine import window_histograms
from goldgate.monitor import (
    OTHER,
    build_reference_profile,
    categorical_drift,
    chi2_pvalue,
    histogram_drift,
    js_distance,
    numeric_drift,
    numeric_histogram,
)

THRESHOLDS = {
    "psi": 0.2,
    "wasserstein": 0.5,
    "ks": 0.1,
    "js": 0.1,
    "chi2_pvalue": 0.01,
    "missing_rate": 0.05,
    "out_of_range": 0.05,
}
KS_TOL = 0.002
W_RTOL, W_ATOL_STD = 0.005, 0.005
N_REF, N_CUR = 20_000, 8_000
CATS = ["a", "b", "c", "d"]
MIX = [0.4, 0.3, 0.2, 0.1]


def frame(
    seed: int, n: int, mean: float = 0.0, std: float = 1.0, mix: list[float] = MIX, missing: float = 0.0
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(mean, std, n)
    x[rng.random(n) < missing] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "skewed": rng.lognormal(0.0, 1.0, n),
            "cat": rng.choice(CATS, n, p=mix),
            "const": np.full(n, 7.0),
        }
    )


@pytest.fixture(scope="module")
def con() -> ibis.BaseBackend:
    return ibis.duckdb.connect()


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(0, N_REF)


@pytest.fixture(scope="module")
def profile(reference: pd.DataFrame) -> dict:
    return build_reference_profile(reference, ["x", "skewed", "cat", "const"], bins=10)


def engine_rows(con: ibis.BaseBackend, profile: dict, current: pd.DataFrame) -> dict[tuple[str, str], float]:
    hists = window_histograms(con.create_table("cur", current, overwrite=True), profile)
    return {(r.feature, r.statistic): r for r in histogram_drift(profile, hists, THRESHOLDS)}


def test_profile_kinds(profile: dict) -> None:
    kinds = {f: p["kind"] for f, p in profile["features"].items()}
    assert kinds == {"x": "numeric", "skewed": "numeric", "cat": "categorical", "const": "numeric"}
    assert profile["features"]["cat"]["categories"] == pytest.approx(dict(zip(CATS, MIX, strict=True)), abs=0.01)
    assert profile["features"]["const"]["grid"]["cells"] == 0


def test_engine_histograms_equal_the_numpy_histograms(con: ibis.BaseBackend, profile: dict) -> None:
    current = frame(1, N_CUR, mean=0.3, missing=0.1)
    current.loc[0:4, "x"] = np.array([np.nan, 99.0, -99.0, 7.5, np.nan])
    hists = window_histograms(con.create_table("cur", current, overwrite=True), profile)
    for feature in ("x", "skewed", "const"):
        expected = numeric_histogram(current[feature].to_numpy(), profile["features"][feature]["grid"])
        assert hists[feature].counts == expected.counts, feature
        assert hists[feature].missing == expected.missing, feature
        for k, s in expected.sums.items():
            assert hists[feature].sums[k] == pytest.approx(s, rel=1e-9, abs=1e-9)
    assert hists["x"].missing == int(current["x"].isna().sum())
    assert hists["cat"].counts == current["cat"].value_counts().to_dict()


def test_psi_matches_a_direct_numpy_computation(con: ibis.BaseBackend, profile: dict, reference: pd.DataFrame) -> None:
    current = frame(2, N_CUR, mean=0.4, std=1.2)
    ref = profile["features"]["x"]
    bounds = np.concatenate([[-np.inf], ref["edges"], [np.inf]])
    expected = np.histogram(reference["x"], bounds)[0] / N_REF
    actual = np.histogram(current["x"], bounds)[0] / N_CUR
    expected, actual = np.clip(expected, 1e-6, None), np.clip(actual, 1e-6, None)
    direct = float(np.sum((actual - expected) * np.log(actual / expected)))
    assert engine_rows(con, profile, current)["x", "psi"].value == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (0.3, 1.0), (1.0, 1.0), (0.5, 1.5), (-0.2, 0.6), (4.0, 1.0)])
def test_wasserstein_and_ks_agree_with_scipy(
    con: ibis.BaseBackend, profile: dict, reference: pd.DataFrame, mean: float, std: float
) -> None:
    current = frame(3, N_CUR, mean=mean, std=std)
    rows = engine_rows(con, profile, current)
    ref_std = reference["x"].std(ddof=0)
    exact_w = wasserstein_distance(reference["x"], current["x"]) / ref_std
    assert rows["x", "wasserstein"].value == pytest.approx(exact_w, rel=W_RTOL, abs=W_ATOL_STD)
    exact_ks = ks_2samp(reference["x"], current["x"]).statistic
    assert rows["x", "ks"].value == pytest.approx(exact_ks, abs=KS_TOL)
    assert rows["x", "ks"].value <= exact_ks + 1e-12  # read at cell boundaries: never above the exact statistic


def test_wasserstein_on_a_skewed_feature_agrees_with_scipy(profile: dict, reference: pd.DataFrame) -> None:
    current = reference["skewed"].to_numpy()[:5000] * 1.8
    ref = profile["features"]["skewed"]
    rows = {
        r.statistic: r.value for r in numeric_drift("skewed", ref, numeric_histogram(current, ref["grid"]), THRESHOLDS)
    }
    exact = wasserstein_distance(reference["skewed"], current) / reference["skewed"].std(ddof=0)
    assert rows["wasserstein"] == pytest.approx(exact, rel=W_RTOL, abs=W_ATOL_STD)


def test_js_and_chi_square_agree_with_scipy(con: ibis.BaseBackend, profile: dict) -> None:
    current = frame(4, N_CUR, mix=[0.25, 0.25, 0.25, 0.25])
    rows = engine_rows(con, profile, current)
    ref_shares = np.array([profile["features"]["cat"]["categories"][c] for c in CATS])
    observed = current["cat"].value_counts().reindex(CATS).to_numpy()
    assert rows["cat", "js"].value == pytest.approx(jensenshannon(ref_shares, observed / N_CUR, base=2), rel=1e-9)
    expected = chisquare(observed, ref_shares / ref_shares.sum() * observed.sum())
    assert chi2_pvalue(observed, ref_shares) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-9)
    assert rows["cat", "chi2_pvalue"].value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert js_distance(ref_shares, ref_shares) == pytest.approx(0.0, abs=1e-12)


def drifted(rows: dict, feature: str) -> set[str]:
    return {stat for (f, stat), r in rows.items() if f == feature and r.drifted}


def test_no_shift_is_not_flagged(con: ibis.BaseBackend, profile: dict) -> None:
    rows = engine_rows(con, profile, frame(5, N_CUR))
    assert {(f, s) for (f, s), r in rows.items() if r.drifted} == set()


@pytest.mark.parametrize(
    ("kwargs", "feature", "flags"),
    [
        ({"mean": 0.6}, "x", {"psi", "wasserstein", "ks"}),
        ({"std": 2.5}, "x", {"psi", "wasserstein", "ks", "out_of_range"}),
        ({"mix": [0.1, 0.2, 0.3, 0.4]}, "cat", {"psi", "js", "chi2_pvalue"}),
        ({"missing": 0.2}, "x", {"missing_rate"}),
    ],
    ids=["mean", "variance", "category_mix", "missing_rate"],
)
def test_simulated_shifts_are_flagged(
    con: ibis.BaseBackend, profile: dict, kwargs: dict, feature: str, flags: set[str]
) -> None:
    rows = engine_rows(con, profile, frame(6, N_CUR, **kwargs))
    assert drifted(rows, feature) >= flags
    others = {"x", "cat"} - {feature}
    assert all(not drifted(rows, f) for f in others)


def test_a_new_category_and_values_beyond_the_reference_range_are_flagged(profile: dict) -> None:
    ref = profile["features"]["cat"]
    values = ["a"] * 500 + ["zzz"] * 200
    from goldgate.monitor import categorical_histogram

    hist = categorical_histogram(values, [c for c in ref["categories"] if c != OTHER])
    assert hist.counts == {"a": 500, OTHER: 200}
    flags = {r.statistic for r in categorical_drift("cat", ref, hist, THRESHOLDS) if r.drifted}
    assert flags >= {"psi", "js", "chi2_pvalue"}
    x = profile["features"]["x"]
    beyond = numeric_drift("x", x, numeric_histogram(np.full(100, x["max"] + 1.0), x["grid"]), THRESHOLDS)
    assert {r.statistic: r.value for r in beyond}["out_of_range"] == 1.0


def test_a_constant_reference_feature_is_monitored(con: ibis.BaseBackend, profile: dict) -> None:
    same = engine_rows(con, profile, frame(7, 1000))
    assert not drifted(same, "const")
    moved = frame(7, 1000).assign(const=8.0)
    rows = engine_rows(con, profile, moved)
    assert drifted(rows, "const") >= {"out_of_range", "ks", "wasserstein"}
    assert rows["const", "wasserstein"].value == pytest.approx(1.0)  # std 0: raw distance


def test_one_pass_over_parquet(tmp_path: Path, con: ibis.BaseBackend, profile: dict) -> None:
    current = frame(8, N_CUR, mean=0.6)
    path = tmp_path / "current.parquet"
    pq.write_table(pa.Table.from_pandas(current, preserve_index=False), path)
    rows = engine_rows(con, profile, current)
    hists = window_histograms(con.read_parquet(path), profile)
    from_file = {(r.feature, r.statistic): r.value for r in histogram_drift(profile, hists, THRESHOLDS)}
    assert from_file == pytest.approx({k: r.value for k, r in rows.items()}, rel=1e-9)
