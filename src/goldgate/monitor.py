"""Drift of recent feature values against the training window, from a reference profile saved at training.

The profile (quantile bin edges, bin shares, quantiles, moments) is computed once when a model is trained, so
monitoring is a single pass over the current window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

PROFILE_FILE = "reference_profile.json"
QUANTILE_LEVELS = np.linspace(0.005, 0.995, 100)
_EPS = 1e-6


def profile_feature(values: np.ndarray, bins: int) -> dict[str, Any]:
    """Bin edges (reference quantiles), the reference share per bin, quantiles and moments of one feature."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
    shares = np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1) / len(v)
    return {
        "edges": edges.tolist(),
        "shares": shares.tolist(),
        "quantiles": np.quantile(v, QUANTILE_LEVELS).tolist(),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "count": len(v),
    }


def build_reference_profile(frame: pd.DataFrame, features: list[str], bins: int) -> dict[str, Any]:
    """Reference profile of every numeric feature in the training rows."""
    return {"bins": bins, "features": {f: profile_feature(frame[f].to_numpy(), bins) for f in features}}


def psi(reference: dict[str, Any], current: np.ndarray) -> float:
    """Population stability index of current values over the reference bins."""
    edges = np.asarray(reference["edges"])
    expected = np.clip(np.asarray(reference["shares"]), _EPS, None)
    counts = np.bincount(np.searchsorted(edges, current, side="left"), minlength=len(edges) + 1)
    actual = np.clip(counts / max(len(current), 1), _EPS, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def wasserstein(reference: dict[str, Any], current: np.ndarray) -> float:
    """Earth mover's distance between the two quantile functions (100 levels), in reference std units."""
    cur_q = np.quantile(current, QUANTILE_LEVELS)
    dist = float(np.mean(np.abs(cur_q - np.asarray(reference["quantiles"]))))
    return dist / reference["std"] if reference["std"] > 0 else dist


@dataclass(frozen=True)
class DriftRow:
    feature: str
    statistic: str
    value: float
    threshold: float
    drifted: bool


def drift_rows(profile: dict[str, Any], current: pd.DataFrame, psi_max: float, w_max: float) -> list[DriftRow]:
    """PSI and Wasserstein for every profiled feature present in the current window."""
    rows: list[DriftRow] = []
    for feature, ref in profile["features"].items():
        if feature not in current.columns:
            continue
        values = current[feature].to_numpy(dtype="float64")
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        p, w = psi(ref, values), wasserstein(ref, values)
        rows.append(DriftRow(feature, "psi", p, psi_max, p > psi_max))
        rows.append(DriftRow(feature, "wasserstein", w, w_max, w > w_max))
    return rows
