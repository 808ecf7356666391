"""Drift of recent feature values against the training window, from a reference profile saved at training.

The profile is computed once when a model is trained, so monitoring is a single pass over the current window.
For a numeric feature it holds a fixed grid (``cells`` equal cells over the reference's 0.5%..99.5% range, plus
four tail cells: below the reference minimum, between the minimum and the grid, between the grid and the
maximum, above the maximum) with the reference rows and the sum of their values per cell; PSI bins (reference
deciles snapped to the grid), quantiles, moments, the missing rate and the range. For a categorical feature it
holds the share of each category (rare ones pooled as ``__other__``) and the missing rate.

A current window is summarised the same way, by rows and sum per cell, which an engine computes with one
``GROUP BY`` per feature (``goldgate.drift_engine``) or numpy computes in memory (``numeric_histogram``). Every
statistic is then computed from the two histograms: PSI and Jensen-Shannon from bin shares, chi-square from
category counts, the Kolmogorov-Smirnov statistic from the cumulative shares at the cell boundaries, and the
Wasserstein distance as the integral of the difference of the two CDFs, exact per cell from its rows and sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PROFILE_FILE = "reference_profile.json"
QUANTILE_LEVELS = np.linspace(0.005, 0.995, 100)
GRID_CELLS = 1000
GRID_RANGE = (0.005, 0.995)
MAX_CATEGORIES = 50
OTHER = "__other__"
PREDICTION = "prediction"
_EPS = 1e-6

# Statistics where a small value means drift (p-values); for every other statistic a large value does.
LOWER_IS_WORSE = frozenset({"chi2_pvalue"})
NUMERIC_STATISTICS = ("psi", "wasserstein", "ks", "missing_rate", "out_of_range")
CATEGORICAL_STATISTICS = ("psi", "js", "chi2_pvalue", "missing_rate")


# --------------------------------------------------------------------------------------------------- profile


def make_grid(values: np.ndarray, cells: int = GRID_CELLS) -> dict[str, Any]:
    """The fixed binning grid of a feature: ``cells`` equal cells over its 0.5%..99.5% quantile range.

    A constant reference gets a grid without regular cells (``cells`` = 0): every value is then below, at or
    above the constant.
    """
    lo, hi = (float(q) for q in np.quantile(values, GRID_RANGE))
    vmin, vmax = float(values.min()), float(values.max())
    if hi <= lo:  # (nearly) constant: the grid is the constant itself
        hi, cells, inv, width = lo, 0, 1.0, 1.0
    else:
        inv = cells / (hi - lo)
        width = (hi - lo) / cells
    return {
        "lo": lo,
        "hi": hi,
        "inv": inv,
        "cells": cells,
        "clip_lo": lo - width / 2,
        "clip_hi": hi + width / 2,
        "min": vmin,
        "max": vmax,
    }


def cell_keys(values: np.ndarray, grid: dict[str, Any]) -> np.ndarray:
    """Grid cell of every (finite) value: -2 below the reference minimum, -1 below the grid, 0..cells-1 on it,
    ``cells`` above it, ``cells`` + 1 above the reference maximum. The engine computes the same expression."""
    v = np.asarray(values, dtype="float64")
    clipped = np.minimum(np.maximum(v, grid["clip_lo"]), grid["clip_hi"])
    base = np.floor((clipped - grid["lo"]) * grid["inv"]).astype(np.int64)
    return base + (v > grid["max"]).astype(np.int64) - (v < grid["min"]).astype(np.int64)


@dataclass
class Histogram:
    """Rows (and, for numeric features, the sum of the values) per grid cell or category, plus missing rows."""

    counts: dict[Any, int]
    sums: dict[Any, float] = field(default_factory=dict)
    missing: int = 0

    @property
    def present(self) -> int:
        return int(sum(self.counts.values()))

    @property
    def rows(self) -> int:
        return self.present + self.missing


def numeric_histogram(values: np.ndarray, grid: dict[str, Any]) -> Histogram:
    """In-memory histogram of values on a grid (non-finite values count as missing)."""
    raw = np.asarray(values, dtype="float64")
    finite = raw[np.isfinite(raw)]
    keys = cell_keys(finite, grid)
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=finite, minlength=len(uniq))
    return Histogram(
        counts={int(k): int(n) for k, n in zip(uniq, counts, strict=True)},
        sums={int(k): float(s) for k, s in zip(uniq, sums, strict=True)},
        missing=int(len(raw) - len(finite)),
    )


def categorical_histogram(values: Any, categories: list[str]) -> Histogram:
    """In-memory histogram of categories (values outside ``categories`` pool as ``__other__``)."""
    s = pd.Series(values, dtype="object")
    missing = int(s.isna().sum())
    present = s.dropna().astype(str)
    known = set(categories)
    mapped = present.where(present.isin(known), OTHER)
    return Histogram(counts={str(k): int(n) for k, n in mapped.value_counts().items()}, missing=missing)


def _bin_index(keys: np.ndarray, edge_cells: list[int]) -> np.ndarray:
    return np.searchsorted(np.asarray(edge_cells, dtype=np.int64), keys, side="right")


def profile_feature(values: np.ndarray, bins: int, cells: int = GRID_CELLS) -> dict[str, Any]:
    """Reference profile of one numeric feature (see the module docstring); non-finite values count as missing."""
    raw = np.asarray(values, dtype="float64")
    v = raw[np.isfinite(raw)]
    if len(v) == 0:
        raise ValueError("no finite values to profile")
    grid = make_grid(v, cells)
    hist = numeric_histogram(v, grid)
    deciles = np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])
    edge_cells = np.unique(np.clip(np.round((deciles - grid["lo"]) * grid["inv"]), 0, grid["cells"]).astype(int))
    keys = cell_keys(v, grid)
    shares = np.bincount(_bin_index(keys, edge_cells.tolist()), minlength=len(edge_cells) + 1) / len(v)
    return {
        "kind": "numeric",
        "edges": (grid["lo"] + edge_cells / grid["inv"]).tolist(),
        "edge_cells": edge_cells.tolist(),
        "shares": shares.tolist(),
        "quantiles": np.quantile(v, QUANTILE_LEVELS).tolist(),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "count": len(v),
        "missing_rate": float(1 - len(v) / len(raw)),
        "min": grid["min"],
        "max": grid["max"],
        "grid": grid,
        "cells": {
            "keys": list(hist.counts),
            "counts": list(hist.counts.values()),
            "sums": [hist.sums[k] for k in hist.counts],
        },
    }


def profile_categorical(values: Any, max_categories: int = MAX_CATEGORIES) -> dict[str, Any]:
    """Reference profile of one categorical feature: share per category (rare ones as ``__other__``)."""
    s = pd.Series(values, dtype="object")
    present = s.dropna().astype(str)
    if present.empty:
        raise ValueError("no values to profile")
    counts = present.value_counts()
    kept = counts.iloc[:max_categories]
    shares = {str(k): float(n / len(present)) for k, n in kept.items()}
    rest = int(counts.iloc[max_categories:].sum())
    if rest:
        shares[OTHER] = rest / len(present)
    return {
        "kind": "categorical",
        "categories": shares,
        "count": len(present),
        "missing_rate": float(1 - len(present) / len(s)),
    }


def is_categorical(series: pd.Series) -> bool:
    """Whether a column is profiled by category shares (strings, categoricals, booleans) rather than a grid."""
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def build_reference_profile(
    frame: pd.DataFrame, features: list[str], bins: int, cells: int = GRID_CELLS, max_categories: int = MAX_CATEGORIES
) -> dict[str, Any]:
    """Reference profile of every feature in the training rows (numeric or categorical by dtype)."""
    profiles: dict[str, Any] = {}
    for f in features:
        col = frame[f]
        try:
            profiles[f] = (
                profile_categorical(col, max_categories)
                if is_categorical(col)
                else profile_feature(col.to_numpy(dtype="float64", na_value=np.nan), bins, cells)
            )
        except ValueError:
            continue  # a feature with no values in the reference window cannot be monitored
    return {"version": 2, "bins": bins, "cells": cells, "rows": len(frame), "features": profiles}


# ----------------------------------------------------------------------------------- statistics from histograms


def psi_from_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins (shares clipped at 1e-6)."""
    e = np.clip(np.asarray(expected, dtype="float64"), _EPS, None)
    a = np.clip(np.asarray(actual, dtype="float64"), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two distributions over the same bins."""
    p = np.asarray(p, dtype="float64") / np.sum(p)
    q = np.asarray(q, dtype="float64") / np.sum(q)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def chi2_pvalue(observed: np.ndarray, expected_shares: np.ndarray) -> tuple[float, float]:
    """Chi-square goodness of fit of observed counts to reference shares: (statistic, p-value).

    Bins with neither a reference share nor an observation are dropped; a bin observed but absent from the
    reference (a new category) gets a share of 1e-6, which makes the statistic large.
    """
    from scipy.stats import chi2

    obs = np.asarray(observed, dtype="float64")
    shares = np.asarray(expected_shares, dtype="float64")
    keep = (obs > 0) | (shares > 0)
    obs, shares = obs[keep], np.clip(shares[keep], _EPS, None)
    shares = shares / shares.sum()
    n = obs.sum()
    if n == 0 or len(obs) < 2:
        return 0.0, 1.0
    exp = shares * n
    stat = float(np.sum((obs - exp) ** 2 / exp))
    return stat, float(chi2.sf(stat, len(obs) - 1))


def _cell_bounds(key: int, grid: dict[str, Any]) -> tuple[float, float]:
    k, cells = int(key), int(grid["cells"])
    if k == -1:
        return grid["min"], grid["lo"]
    if k == cells:
        return grid["hi"], grid["max"]
    return grid["lo"] + k / grid["inv"], grid["lo"] + (k + 1) / grid["inv"]


def _ref_cells(ref: dict[str, Any]) -> Histogram:
    c = ref["cells"]
    return Histogram(
        counts={int(k): int(n) for k, n in zip(c["keys"], c["counts"], strict=True)},
        sums={int(k): float(s) for k, s in zip(c["keys"], c["sums"], strict=True)},
    )


def ks_and_wasserstein(ref: dict[str, Any], current: Histogram) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic and Wasserstein-1 distance (raw units) between reference and current cells.

    KS is the largest difference of the two empirical CDFs at the cell boundaries (a lower bound of the exact
    statistic, off by at most the mass of one cell). Wasserstein is the sum over cells of the absolute integral
    of the CDF difference across the cell, exact from each cell's rows and sum of values: it equals the exact
    distance unless the two CDFs cross inside a cell.
    """
    grid, refh = ref["grid"], _ref_cells(ref)
    n_r, n_c = refh.present, current.present
    cells = int(grid["cells"])
    keys = sorted(set(refh.counts) | set(current.counts))
    f_r = f_c = 0.0
    ks = dist = 0.0
    prev_upper: float | None = None
    for k in keys:
        nr, sr = refh.counts.get(k, 0), refh.sums.get(k, 0.0)
        nc, sc = current.counts.get(k, 0), current.sums.get(k, 0.0)
        if k <= -2:
            d = -(nc * grid["min"] - sc) / n_c  # only current values lie below the reference minimum
            upper = grid["min"]
        elif k >= cells + 1:
            d = (sc - nc * grid["max"]) / n_c  # ... or above its maximum
            upper = math.inf
        else:
            lo, hi = _cell_bounds(k, grid)
            if prev_upper is not None and lo > prev_upper:
                dist += abs(f_r - f_c) * (lo - prev_upper)  # empty cells in between: both CDFs are flat
            d = (hi - lo) * (f_r - f_c) + (nr * hi - sr) / n_r - (nc * hi - sc) / n_c
            upper = hi
        dist += abs(d)
        f_r += nr / n_r
        f_c += nc / n_c
        ks = max(ks, abs(f_r - f_c))
        prev_upper = upper
    return ks, dist


def _bin_shares(hist: Histogram, edge_cells: list[int]) -> np.ndarray:
    counts = np.zeros(len(edge_cells) + 1)
    if hist.counts:
        keys = np.fromiter(hist.counts, dtype=np.int64)
        np.add.at(counts, _bin_index(keys, edge_cells), np.fromiter(hist.counts.values(), dtype="float64"))
    return counts / max(hist.present, 1)


@dataclass(frozen=True)
class DriftRow:
    feature: str
    statistic: str
    value: float
    threshold: float
    drifted: bool
    kind: str = "numeric"


def is_breach(statistic: str, value: float, threshold: float) -> bool:
    """Whether a statistic's value is on the drifted side of its threshold."""
    return value < threshold if statistic in LOWER_IS_WORSE else value > threshold


def _row(feature: str, statistic: str, value: float, thresholds: dict[str, float], kind: str) -> DriftRow:
    t = thresholds[statistic]
    return DriftRow(feature, statistic, float(value), t, is_breach(statistic, value, t), kind)


def missing_rate_change(ref: dict[str, Any], current: Histogram) -> float:
    """Absolute change of the share of missing values."""
    return abs(current.missing / max(current.rows, 1) - float(ref.get("missing_rate", 0.0)))


def numeric_drift(
    feature: str, ref: dict[str, Any], current: Histogram, thresholds: dict[str, float], kind: str = "numeric"
) -> list[DriftRow]:
    """PSI, Wasserstein (in reference std units), KS, missing-rate change and out-of-range share of a feature."""
    rows = [_row(feature, "missing_rate", missing_rate_change(ref, current), thresholds, kind)]
    if current.present == 0:
        return rows
    psi_value = psi_from_shares(np.asarray(ref["shares"]), _bin_shares(current, ref["edge_cells"]))
    ks, w = ks_and_wasserstein(ref, current)
    w = w / ref["std"] if ref["std"] > 0 else w
    cells = int(ref["grid"]["cells"])
    outside = (current.counts.get(-2, 0) + current.counts.get(cells + 1, 0)) / current.present
    rows += [
        _row(feature, "psi", psi_value, thresholds, kind),
        _row(feature, "wasserstein", w, thresholds, kind),
        _row(feature, "ks", ks, thresholds, kind),
        _row(feature, "out_of_range", outside, thresholds, kind),
    ]
    return rows


def categorical_drift(
    feature: str, ref: dict[str, Any], current: Histogram, thresholds: dict[str, float], kind: str = "categorical"
) -> list[DriftRow]:
    """PSI, Jensen-Shannon distance, chi-square p-value and missing-rate change of a categorical feature (or of a
    multiclass model's predicted class, ``kind="prediction"``)."""
    rows = [_row(feature, "missing_rate", missing_rate_change(ref, current), thresholds, kind)]
    if current.present == 0:
        return rows
    cats = list(dict.fromkeys([*ref["categories"], *current.counts]))
    expected = np.array([ref["categories"].get(c, 0.0) for c in cats])
    observed = np.array([current.counts.get(c, 0) for c in cats], dtype="float64")
    actual = observed / observed.sum()
    _, p = chi2_pvalue(observed, expected)
    rows += [
        _row(feature, "psi", psi_from_shares(expected, actual), thresholds, kind),
        _row(feature, "js", js_distance(expected, actual), thresholds, kind),
        _row(feature, "chi2_pvalue", p, thresholds, kind),
    ]
    return rows


def histogram_drift(
    profile: dict[str, Any], histograms: dict[str, Histogram], thresholds: dict[str, float]
) -> list[DriftRow]:
    """Every statistic of every profiled feature that has a current histogram."""
    rows: list[DriftRow] = []
    for feature, ref in profile["features"].items():
        if feature not in histograms:
            continue
        if ref.get("kind") == "categorical":
            rows += categorical_drift(feature, ref, histograms[feature], thresholds)
        elif "grid" in ref:
            rows += numeric_drift(feature, ref, histograms[feature], thresholds)
    return rows


# ----------------------------------------------------------------------- in-memory statistics on raw values


def psi(reference: dict[str, Any], current: np.ndarray) -> float:
    """Population stability index of current values over the reference bins."""
    values = np.asarray(current, dtype="float64")
    values = values[np.isfinite(values)]
    if "grid" in reference:
        keys = cell_keys(values, reference["grid"])
        counts = np.bincount(_bin_index(keys, reference["edge_cells"]), minlength=len(reference["edge_cells"]) + 1)
    else:  # a profile written before the grid existed
        edges = np.asarray(reference["edges"])
        counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return psi_from_shares(np.asarray(reference["shares"]), counts / max(len(values), 1))


def wasserstein(reference: dict[str, Any], current: np.ndarray) -> float:
    """Earth mover's distance between the two quantile functions (100 levels), in reference std units."""
    cur_q = np.quantile(current, QUANTILE_LEVELS)
    dist = float(np.mean(np.abs(cur_q - np.asarray(reference["quantiles"]))))
    return dist / reference["std"] if reference["std"] > 0 else dist


def drift_rows(profile: dict[str, Any], current: pd.DataFrame, psi_max: float, w_max: float) -> list[DriftRow]:
    """PSI and Wasserstein for every numeric profiled feature present in the current window (in memory)."""
    rows: list[DriftRow] = []
    for feature, ref in profile["features"].items():
        if feature not in current.columns or ref.get("kind", "numeric") != "numeric":
            continue
        values = current[feature].to_numpy(dtype="float64")
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        p, w = psi(ref, values), wasserstein(ref, values)
        rows.append(DriftRow(feature, "psi", p, psi_max, p > psi_max))
        rows.append(DriftRow(feature, "wasserstein", w, w_max, w > w_max))
    return rows


def prediction_profiles(frame: pd.DataFrame, runs: list[Any], bins: int, cells: int = GRID_CELLS) -> dict[str, Any]:
    """Profile of each trained model's predictions on the reference rows, by run id (for prediction drift).

    ``runs`` are ``goldgate.train.TrainedRun`` objects that still hold their fitted estimator and input columns.
    A multiclass model's predictions (a frame of class probabilities) are profiled as its predicted class.
    """
    out: dict[str, Any] = {}
    for run in runs:
        if run.estimator is None or not run.inputs or frame.empty:
            continue
        predicted = run.estimator.predict(frame[run.inputs])
        if isinstance(predicted, pd.DataFrame):
            out[run.run_id] = profile_categorical(top_class(predicted))
        else:
            out[run.run_id] = profile_feature(np.asarray(predicted, dtype="float64"), bins, cells)
    return out


def top_class(probabilities: pd.DataFrame) -> np.ndarray:
    """The most probable class (a column name, as text) of each row of a frame of class probabilities."""
    names = np.asarray([str(c) for c in probabilities.columns], dtype=object)
    return names[np.argmax(probabilities.to_numpy(dtype="float64"), axis=1)]
