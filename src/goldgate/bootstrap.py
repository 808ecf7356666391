"""Paired bootstrap confidence intervals for the difference in loss between two models on the same rows.

Rows of a time series are not independent, so resampling is by block (all rows of a date move together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    level: float
    resamples: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_block_bootstrap(
    loss_a: np.ndarray,
    loss_b: np.ndarray,
    blocks: np.ndarray,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """CI of mean(loss_a - loss_b), resampling whole blocks with replacement (negative: a is better)."""
    a, b = np.asarray(loss_a, dtype="float64"), np.asarray(loss_b, dtype="float64")
    if a.shape != b.shape or a.shape != np.shape(blocks):
        raise ValueError("paired bootstrap needs losses and blocks of the same length")
    if len(a) == 0:
        raise ValueError("paired bootstrap needs at least one row")
    diff = a - b
    codes, block_ix = np.unique(np.asarray(blocks), return_inverse=True)
    sums = np.bincount(block_ix, weights=diff, minlength=len(codes))
    sizes = np.bincount(block_ix, minlength=len(codes)).astype("float64")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(codes), size=(resamples, len(codes)))
    means = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(diff.mean()), float(low), float(high), level, resamples)
