"""Paired block bootstrap of the loss difference: all rows of a date are resampled together."""

from __future__ import annotations

import numpy as np
import pytest

from goldgate.bootstrap import Interval, paired_block_bootstrap


def panel(n_dates: int, per_date: int) -> np.ndarray:
    """Block labels: ``per_date`` rows for each of ``n_dates`` dates."""
    return np.repeat(np.arange(n_dates), per_date)


def width(ci: Interval) -> float:
    return ci.high - ci.low


def test_a_clearly_better_model_has_an_interval_wholly_below_zero() -> None:
    rng = np.random.default_rng(1)
    blocks = panel(50, 4)
    good = rng.gamma(2.0, 0.25, len(blocks))  # mean loss 0.5
    bad = good + 0.5 + rng.normal(0, 0.1, len(blocks))
    ci = paired_block_bootstrap(good, bad, blocks, seed=0)
    assert ci.high < 0
    assert ci.excludes_zero()
    assert ci.low <= ci.mean <= ci.high
    assert ci.mean == pytest.approx(float(np.mean(good - bad)))
    # swapping the models mirrors the interval
    flipped = paired_block_bootstrap(bad, good, blocks, seed=0)
    assert flipped.low > 0
    assert flipped.excludes_zero()
    assert flipped.mean == pytest.approx(-ci.mean)


def test_identical_losses_give_a_zero_interval_that_does_not_exclude_zero() -> None:
    losses = np.random.default_rng(2).gamma(2.0, 1.0, 120)
    ci = paired_block_bootstrap(losses, losses.copy(), panel(30, 4), resamples=200)
    assert (ci.mean, ci.low, ci.high) == (0.0, 0.0, 0.0)
    assert not ci.excludes_zero()
    assert (ci.level, ci.resamples) == (0.95, 200)


def test_a_noisy_tie_does_not_exclude_zero() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(1, 0.3, 400), rng.normal(1, 0.3, 400)
    ci = paired_block_bootstrap(a, b, panel(100, 4), seed=0)
    assert ci.low < 0 < ci.high
    assert not ci.excludes_zero()


def test_the_interval_narrows_with_more_blocks() -> None:
    rng = np.random.default_rng(4)

    def interval(n_dates: int) -> Interval:
        blocks = panel(n_dates, 3)
        diff = rng.normal(-0.1, 1.0, len(blocks))
        return paired_block_bootstrap(diff, np.zeros_like(diff), blocks, seed=0)

    few, many = interval(20), interval(500)
    assert width(few) > 3 * width(many)  # about sqrt(500 / 20) = 5 times wider


def test_a_higher_level_gives_a_wider_interval() -> None:
    rng = np.random.default_rng(5)
    diff = rng.normal(0, 1, 200)
    blocks = panel(50, 4)
    narrow = paired_block_bootstrap(diff, np.zeros(200), blocks, level=0.8, seed=0)
    wide = paired_block_bootstrap(diff, np.zeros(200), blocks, level=0.99, seed=0)
    assert wide.low < narrow.low
    assert wide.high > narrow.high
    assert (narrow.level, wide.level) == (0.8, 0.99)


def test_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(6)
    a, b, blocks = rng.normal(0, 1, 300), rng.normal(0, 1, 300), panel(60, 5)
    first = paired_block_bootstrap(a, b, blocks, resamples=500, seed=7)
    assert paired_block_bootstrap(a, b, blocks, resamples=500, seed=7) == first
    other = paired_block_bootstrap(a, b, blocks, resamples=500, seed=8)
    assert (other.low, other.high) != (first.low, first.high)
    assert other.mean == first.mean  # the point estimate does not depend on the resampling


def test_blocks_keep_the_rows_of_a_date_together() -> None:
    # every row of a date shares that date's shock: the rows are not independent evidence
    rng = np.random.default_rng(9)
    n_dates, per_date = 30, 20
    blocks = panel(n_dates, per_date)
    diff = np.repeat(rng.normal(0, 1, n_dates), per_date) + rng.normal(0, 0.05, n_dates * per_date)
    zeros = np.zeros_like(diff)
    by_date = paired_block_bootstrap(diff, zeros, blocks, seed=0)
    by_row = paired_block_bootstrap(diff, zeros, np.arange(len(diff)), seed=0)
    # a per-row bootstrap pretends to have 600 independent rows, about sqrt(20) times too many
    assert width(by_date) > 3 * width(by_row)
    assert by_date.mean == pytest.approx(by_row.mean)


def test_block_labels_may_be_dates_as_text_and_in_any_order() -> None:
    rng = np.random.default_rng(10)
    n_dates, per_date = 40, 3
    codes = panel(n_dates, per_date)
    a, b = rng.normal(0, 1, len(codes)), rng.normal(0, 1, len(codes))
    as_ints = paired_block_bootstrap(a, b, codes, seed=3)
    labels = np.array([f"2024-01-{c + 1:02d}" if c < 31 else f"2024-02-{c - 30:02d}" for c in codes])
    assert paired_block_bootstrap(a, b, labels, seed=3) == as_ints
    order = rng.permutation(len(codes))
    shuffled = paired_block_bootstrap(a[order], b[order], labels[order], seed=3)
    assert (shuffled.low, shuffled.high) == pytest.approx((as_ints.low, as_ints.high))


def test_one_block_per_row_is_the_ordinary_paired_bootstrap() -> None:
    rng = np.random.default_rng(11)
    diff = rng.normal(0.2, 1, 400)
    ci = paired_block_bootstrap(diff, np.zeros(400), np.arange(400), resamples=2000, seed=0)
    se = diff.std(ddof=0) / np.sqrt(len(diff))
    assert width(ci) == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_excludes_zero() -> None:
    assert Interval(1.0, 0.5, 1.5, 0.95, 100).excludes_zero()
    assert Interval(-1.0, -1.5, -0.5, 0.95, 100).excludes_zero()
    assert not Interval(0.1, -0.5, 0.5, 0.95, 100).excludes_zero()
    assert not Interval(0.0, 0.0, 0.5, 0.95, 100).excludes_zero()


@pytest.mark.parametrize(
    ("a", "b", "blocks"),
    [
        (np.zeros(3), np.zeros(4), np.arange(3)),
        (np.zeros(3), np.zeros(3), np.arange(4)),
        (np.zeros((3, 2)), np.zeros((3, 2)), np.arange(3)),
    ],
)
def test_mismatched_lengths_are_rejected(a: np.ndarray, b: np.ndarray, blocks: np.ndarray) -> None:
    with pytest.raises(ValueError, match="same length"):
        paired_block_bootstrap(a, b, blocks)


def test_no_rows_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        paired_block_bootstrap(np.array([]), np.array([]), np.array([]))
