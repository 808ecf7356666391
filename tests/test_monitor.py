"""Drift statistics: PSI over reference quantile bins, and a quantile Wasserstein distance in std units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from goldgate.monitor import build_reference_profile, drift_rows, profile_feature, psi, wasserstein

N = 20_000
BINS = 10


def normal(seed: int, mean: float = 0.0, std: float = 1.0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, n)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return normal(0)


@pytest.fixture(scope="module")
def profile(reference: np.ndarray) -> dict:
    return profile_feature(reference, BINS)


def direct_psi(reference: np.ndarray, current: np.ndarray, edges: np.ndarray, eps: float = 1e-6) -> float:
    """PSI written out: right-closed bins (-inf, e1], (e1, e2], ..., (ek, inf) shared by both samples."""
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    expected = pd.Series(pd.cut(reference, bounds, right=True)).value_counts(sort=False).to_numpy() / len(reference)
    actual = pd.Series(pd.cut(current, bounds, right=True)).value_counts(sort=False).to_numpy() / len(current)
    expected, actual = np.clip(expected, eps, None), np.clip(actual, eps, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def test_profile_holds_decile_edges_shares_and_moments(reference: np.ndarray, profile: dict) -> None:
    assert len(profile["edges"]) == BINS - 1
    # The PSI edges are the reference deciles snapped to the monitoring grid (at most half a cell away).
    half_cell = 0.5 / profile["grid"]["inv"]
    np.testing.assert_allclose(profile["edges"], np.quantile(reference, np.linspace(0.1, 0.9, 9)), atol=half_cell)
    np.testing.assert_allclose(profile["shares"], np.full(BINS, 0.1), atol=3e-3)
    assert sum(profile["shares"]) == pytest.approx(1.0)
    assert len(profile["quantiles"]) == 100
    assert profile["mean"] == pytest.approx(reference.mean())
    assert profile["std"] == pytest.approx(reference.std())
    assert profile["count"] == N


def test_profile_ignores_non_finite_values() -> None:
    values = np.array([1.0, 2.0, np.nan, 3.0, np.inf, 4.0, -np.inf])
    p = profile_feature(values, 2)
    assert p["count"] == 4
    assert p["mean"] == pytest.approx(2.5)


def test_psi_is_zero_for_identical_distributions(reference: np.ndarray, profile: dict) -> None:
    assert psi(profile, reference) == pytest.approx(0.0, abs=1e-12)
    assert psi(profile, normal(1)) < 0.01  # a fresh sample of the same distribution


@pytest.mark.parametrize(("shift", "at_least"), [(0.5, 0.2), (1.0, 0.8), (2.0, 3.0)])
def test_psi_is_large_for_a_shifted_mean(profile: dict, shift: float, at_least: float) -> None:
    assert psi(profile, normal(2, mean=shift)) > at_least


@pytest.mark.parametrize(
    "current",
    [normal(3), normal(4, mean=0.3), normal(5, std=2.0), normal(6, mean=-1.5, n=500)],
    ids=["same", "shift", "wider", "small_shifted"],
)
def test_psi_agrees_with_a_direct_computation(reference: np.ndarray, profile: dict, current: np.ndarray) -> None:
    expected = direct_psi(reference, current, np.asarray(profile["edges"]))
    assert psi(profile, current) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_psi_grows_with_the_shift(profile: dict) -> None:
    values = [psi(profile, normal(7, mean=m)) for m in (0.1, 0.3, 0.6, 1.0)]
    assert values == sorted(values)


# scipy's distance is exact on the samples; ours reads 100 quantile levels (0.5%..99.5%), hence the tolerance.
WASSERSTEIN_RTOL = 0.05


@pytest.mark.parametrize(
    ("mean", "std"),
    [(0.5, 1.0), (1.0, 1.0), (0.5, 1.3), (-0.25, 0.7), (2.0, 2.0)],
)
def test_wasserstein_agrees_with_scipy(reference: np.ndarray, profile: dict, mean: float, std: float) -> None:
    current = normal(8, mean=mean, std=std)
    expected = wasserstein_distance(reference, current) / reference.std()
    assert wasserstein(profile, current) == pytest.approx(expected, rel=WASSERSTEIN_RTOL)


def test_wasserstein_is_in_reference_std_units() -> None:
    ref = normal(9, std=3.0)
    shifted = ref + 1.5  # every quantile moves by 1.5, about half a reference std
    assert wasserstein(profile_feature(ref, BINS), shifted) == pytest.approx(1.5 / ref.std(), rel=1e-9)


def test_wasserstein_is_about_zero_for_the_same_distribution(profile: dict) -> None:
    assert wasserstein(profile, normal(10)) < 0.03


def test_wasserstein_with_a_constant_reference_is_the_raw_distance() -> None:
    p = profile_feature(np.full(100, 2.0), BINS)
    assert p["std"] == 0
    assert wasserstein(p, np.full(50, 3.5)) == pytest.approx(1.5)


def test_drift_rows_flag_a_shifted_feature_only(reference: np.ndarray) -> None:
    train = pd.DataFrame({"stable": reference, "moving": normal(11), "absent": normal(12)})
    profile = build_reference_profile(train, ["stable", "moving", "absent"], BINS)
    assert profile["bins"] == BINS
    current = pd.DataFrame({"stable": normal(13, n=2000), "moving": normal(14, mean=1.0, n=2000)})
    current.loc[:9, "stable"] = np.nan  # missing values are ignored, not counted as drift
    rows = {(r.feature, r.statistic): r for r in drift_rows(profile, current, psi_max=0.2, w_max=0.5)}
    assert set(rows) == {(f, s) for f in ("stable", "moving") for s in ("psi", "wasserstein")}
    assert rows["moving", "psi"].drifted
    assert rows["moving", "wasserstein"].drifted
    assert not rows["stable", "psi"].drifted
    assert not rows["stable", "wasserstein"].drifted
    assert rows["moving", "psi"].threshold == 0.2
    assert rows["moving", "wasserstein"].threshold == 0.5
    assert rows["moving", "wasserstein"].value == pytest.approx(1.0, rel=0.1)


def test_drift_rows_skip_features_without_values(reference: np.ndarray) -> None:
    profile = build_reference_profile(pd.DataFrame({"x": reference}), ["x"], BINS)
    assert drift_rows(profile, pd.DataFrame({"x": [np.nan, np.nan]}), 0.2, 0.5) == []


def test_histograms_agree_with_the_raw_value_functions(reference: np.ndarray, profile: dict) -> None:
    from goldgate.monitor import numeric_drift, numeric_histogram

    current = normal(15, mean=0.4, n=3000)
    thresholds = dict.fromkeys(("psi", "wasserstein", "ks", "missing_rate", "out_of_range"), 0.2)
    rows = {
        r.statistic: r for r in numeric_drift("x", profile, numeric_histogram(current, profile["grid"]), thresholds)
    }
    assert rows["psi"].value == pytest.approx(psi(profile, current), rel=1e-12)
    # two estimators of the same distance: quantile levels vs exact per-cell CDF integral
    assert rows["wasserstein"].value == pytest.approx(wasserstein(profile, current), rel=0.05)
    assert rows["missing_rate"].value == 0.0


def test_missing_values_are_profiled_and_their_change_measured() -> None:
    from goldgate.monitor import Histogram, missing_rate_change

    values = normal(16, n=1000)
    values[:100] = np.nan
    p = profile_feature(values, BINS)
    assert p["missing_rate"] == pytest.approx(0.1)
    assert missing_rate_change(p, Histogram(counts={0: 70}, missing=30)) == pytest.approx(0.2)


def test_categorical_profile_pools_rare_categories() -> None:
    from goldgate.monitor import OTHER, profile_categorical

    values = ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 5 + [None] * 10
    p = profile_categorical(values, max_categories=2)
    assert p["categories"] == pytest.approx({"a": 50 / 100, "b": 30 / 100, OTHER: 20 / 100})
    assert p["missing_rate"] == pytest.approx(10 / 110)
    frame = pd.DataFrame({"seg": values, "x": np.arange(110, dtype="float64")})
    built = build_reference_profile(frame, ["seg", "x"], BINS)
    assert built["features"]["seg"]["kind"] == "categorical"
    assert built["features"]["x"]["kind"] == "numeric"


def test_prediction_profiles_are_keyed_by_run() -> None:
    from types import SimpleNamespace

    from goldgate.monitor import prediction_profiles

    class Doubler:
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return x["a"].to_numpy() * 2

    frame = pd.DataFrame({"a": normal(17, n=500)})
    runs = [
        SimpleNamespace(run_id="r1", estimator=Doubler(), inputs=["a"]),
        SimpleNamespace(run_id="r2", estimator=None, inputs=[]),
    ]
    profiles = prediction_profiles(frame, runs, BINS)
    assert list(profiles) == ["r1"]
    assert profiles["r1"]["mean"] == pytest.approx(2 * frame["a"].mean())


def test_a_profile_without_a_grid_still_gives_psi(reference: np.ndarray) -> None:
    edges = np.quantile(reference, np.linspace(0, 1, BINS + 1)[1:-1])
    old = {"edges": edges.tolist(), "shares": [0.1] * BINS, "quantiles": [], "std": 1.0}
    assert psi(old, reference) == pytest.approx(0.0, abs=1e-3)


def test_a_multiclass_model_is_profiled_and_drifts_by_its_predicted_class() -> None:
    from types import SimpleNamespace

    from goldgate.monitor import categorical_drift, categorical_histogram, prediction_profiles

    class Sorter:
        def predict(self, x: pd.DataFrame) -> pd.DataFrame:
            high = (x["a"] > 0).to_numpy(dtype="float64")
            return pd.DataFrame({"low": 0.9 - 0.8 * high, "high": 0.1 + 0.8 * high})

    frame = pd.DataFrame({"a": normal(3, n=400)})
    profile = prediction_profiles(frame, [SimpleNamespace(run_id="r1", estimator=Sorter(), inputs=["a"])], BINS)["r1"]
    assert profile["kind"] == "categorical"
    assert profile["categories"] == pytest.approx({"high": (frame["a"] > 0).mean(), "low": (frame["a"] <= 0).mean()})
    thresholds = {"missing_rate": 0.05, "psi": 0.2, "js": 0.1, "chi2_pvalue": 0.01}
    shifted = categorical_histogram(["high"] * 90 + ["low"] * 10, list(profile["categories"]))
    rows = categorical_drift("prediction", profile, shifted, thresholds, kind="prediction")
    assert {r.kind for r in rows} == {"prediction"}
    assert {r.statistic for r in rows if r.drifted} == {"psi", "js", "chi2_pvalue"}
