"""Walk-forward folds with an embargo, and the purge of training rows whose label reaches the test window."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pandas as pd
import pytest

from goldgate.backtest import Fold, SplitError, distinct_days, fold_rows, walk_forward_folds

START = date(2024, 1, 1)


def days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


@pytest.mark.parametrize(("n_folds", "test_days", "gap"), [(1, 10, 0), (3, 10, 5), (4, 7, 3), (5, 5, 10)])
def test_folds_are_consecutive_test_windows_ending_at_the_last_date(n_folds: int, test_days: int, gap: int) -> None:
    d = days(120)
    folds = walk_forward_folds(d, n_folds, test_days, gap)
    assert [f.index for f in folds] == list(range(n_folds))
    assert folds[-1].test_end == d[-1]
    for f in folds:
        # each test window holds exactly test_days dates
        assert d.index(f.test_end) - d.index(f.test_start) + 1 == test_days
        # the training window ends exactly gap + 1 positions before the test window starts
        assert d.index(f.test_start) - d.index(f.train_end) == gap + 1
        assert f.train_start <= f.train_end < f.test_start <= f.test_end
    for older, newer in itertools.pairwise(folds):
        assert d.index(newer.test_start) == d.index(older.test_end) + 1  # contiguous, oldest first
        assert newer.train_end > older.train_end


def test_gap_counts_positions_not_calendar_days() -> None:
    # business days only: the gap is measured in dates of the series, whatever the weekends in between
    d = [x.date() for x in pd.bdate_range("2024-01-01", periods=80)]
    folds = walk_forward_folds(d, 2, 10, 5)
    for f in folds:
        assert d.index(f.test_start) - d.index(f.train_end) == 6
        assert len([x for x in d if f.train_end < x < f.test_start]) == 5


def test_expanding_window_always_starts_at_the_first_date() -> None:
    d = days(100)
    folds = walk_forward_folds(d, 3, 10, 5, window="expanding")
    assert {f.train_start for f in folds} == {d[0]}
    assert [d.index(f.train_end) for f in folds] == [64, 74, 84]


def test_rolling_window_trains_on_the_last_train_days_dates() -> None:
    d = days(100)
    folds = walk_forward_folds(d, 3, 10, 5, window="rolling", train_days=30)
    for f in folds:
        assert d.index(f.train_end) - d.index(f.train_start) + 1 == 30
    assert [d.index(f.train_start) for f in folds] == [35, 45, 55]
    # the test windows do not depend on the window kind
    expanding = walk_forward_folds(d, 3, 10, 5)
    assert [(f.test_start, f.test_end, f.train_end) for f in folds] == [
        (f.test_start, f.test_end, f.train_end) for f in expanding
    ]


def test_rolling_window_longer_than_the_history_uses_all_of_it() -> None:
    d = days(60)
    folds = walk_forward_folds(d, 2, 10, 5, window="rolling", train_days=500)
    assert {f.train_start for f in folds} == {d[0]}


def test_too_little_history_names_the_fold_and_the_counts() -> None:
    d = days(40)
    # fold 0: test starts at 40 - 3 * 5 = 25, train ends at 25 - 5 - 1 = 19 -> 20 dates, fold ok only if min <= 20
    assert len(walk_forward_folds(d, 3, 5, 5, min_train_days=20)) == 3
    with pytest.raises(SplitError, match=r"40 dates .* 3 folds of 5 test dates .* 5-date gap") as err:
        walk_forward_folds(d, 3, 5, 5, min_train_days=21)
    assert "fold 0 would train on 20 dates, need 21" in str(err.value)
    # An hourly or intraday series has many rows a date: the message says what the settings count.
    assert "count distinct calendar dates of the time column" in str(err.value)


def test_rolling_window_shorter_than_the_minimum_names_the_first_fold() -> None:
    with pytest.raises(SplitError, match=r"fold 0 would train on 15 dates, need 20"):
        walk_forward_folds(days(100), 3, 10, 5, window="rolling", train_days=15)


def test_more_test_dates_than_history_raises_instead_of_wrapping_around() -> None:
    with pytest.raises(SplitError, match=r"fold 0 would train on 0 dates"):
        walk_forward_folds(days(30), 4, 10, 0)


def test_a_zero_minimum_never_yields_an_empty_or_wrapped_training_window() -> None:
    # test window starting at the very first date: there is nothing to train on, and a negative index
    # must not wrap around to the last date (that would train on the future)
    with pytest.raises(SplitError, match=r"fold 0 would train on 0 dates"):
        walk_forward_folds(days(10), 2, 5, 0, min_train_days=0)
    folds = walk_forward_folds(days(11), 2, 5, 0, min_train_days=0)
    assert folds[0].train_start == folds[0].train_end == START


@pytest.mark.parametrize(("n_folds", "test_days"), [(0, 10), (2, 0)])
def test_needs_at_least_one_fold_of_one_date(n_folds: int, test_days: int) -> None:
    with pytest.raises(SplitError, match="at least one fold"):
        walk_forward_folds(days(100), n_folds, test_days, 5)


def test_fold_as_dict_uses_iso_dates() -> None:
    f = Fold(2, date(2024, 1, 1), date(2024, 2, 1), date(2024, 2, 9), date(2024, 3, 1))
    assert f.as_dict() == {
        "index": 2,
        "train_start": "2024-01-01",
        "train_end": "2024-02-01",
        "test_start": "2024-02-09",
        "test_end": "2024-03-01",
    }


def _panel(all_days: list[date], missing: dict[str, list[date]], horizon: int) -> pd.DataFrame:
    """One row per (entity, date) it has; target_end is the entity's own date ``horizon`` rows ahead."""
    parts = []
    for entity in ("AAA", "BBB"):
        own = [d for d in all_days if d not in missing.get(entity, [])]
        frame = pd.DataFrame({"currency": entity, "date": pd.to_datetime(own), "y": range(len(own))})
        frame["target_end"] = frame["date"].shift(-horizon)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def test_fold_rows_purges_training_rows_whose_label_reaches_the_test_window() -> None:
    d = days(40)
    fold = walk_forward_folds(d, 1, 5, 2, min_train_days=20)[0]
    assert (fold.train_end, fold.test_start) == (d[32], d[35])
    # BBB has no fixings on d[33], d[34], d[35]: its labels from d[31] on stretch past the embargo
    frame = _panel(d, {"BBB": [d[33], d[34], d[35]]}, horizon=2)
    train, test = fold_rows(frame, fold, "date")

    def keys(rows: pd.DataFrame) -> set[tuple[str, date]]:
        return {(c, t.date()) for c, t in zip(rows["currency"], rows["date"], strict=True)}

    assert ("AAA", d[32]) in keys(train)  # label ends d[34], before the test window
    assert ("BBB", d[30]) in keys(train)  # label ends d[32]
    assert ("BBB", d[31]) not in keys(train)  # label ends d[36], inside the test window
    assert ("BBB", d[32]) not in keys(train)  # label ends d[37]
    assert (pd.to_datetime(train["target_end"]).dt.date < fold.test_start).all()
    assert train["date"].dt.date.max() == fold.train_end
    assert len(train) == 33 + 31  # AAA d[0..32]; BBB d[0..30]
    assert keys(test) == {(c, x) for c in ("AAA", "BBB") for x in d[35:40]} - {("BBB", d[35])}


def test_fold_rows_purges_a_label_ending_on_the_first_test_date() -> None:
    d = days(30)
    fold = walk_forward_folds(d, 1, 5, 2, min_train_days=20)[0]
    frame = pd.DataFrame(
        {
            "currency": ["AAA", "BBB", "CCC"],
            "date": [fold.train_end] * 3,
            "target_end": [fold.test_start - timedelta(days=1), fold.test_start, fold.test_start + timedelta(days=1)],
        }
    )
    train, _ = fold_rows(frame, fold, "date")
    assert list(train["currency"]) == ["AAA"]


def test_fold_rows_without_a_label_end_column_splits_by_date_only() -> None:
    d = days(40)
    fold = walk_forward_folds(d, 1, 5, 2, min_train_days=20)[0]
    frame = _panel(d, {"BBB": [d[33], d[34], d[35]]}, horizon=2).drop(columns="target_end")
    train, test = fold_rows(frame, fold, "date")
    assert len(train) == 2 * 33
    assert len(test) == 2 * 5 - 1
    assert len(fold_rows(frame, fold, "date", label_end="other_end")[0]) == 2 * 33


def test_fold_rows_leaves_the_embargo_dates_out_of_both_sides() -> None:
    d = days(40)
    fold = walk_forward_folds(d, 1, 5, 2, min_train_days=20)[0]
    frame = _panel(d, {}, horizon=2)
    train, test = fold_rows(frame, fold, "date")
    used = set(train["date"].dt.date) | set(test["date"].dt.date)
    assert set(d) - used == {d[33], d[34]}


def test_distinct_days_sorts_and_deduplicates_calendar_dates() -> None:
    raw = pd.Series(
        pd.to_datetime(
            ["2024-01-03", "2024-01-01 13:45", "2024-01-03 08:00", "2024-01-02", "2024-01-01"], format="ISO8601"
        )
    )
    assert distinct_days(raw) == [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
    assert distinct_days(pd.Series(["2024-02-01", "2024-01-31", "2024-02-01"])) == [date(2024, 1, 31), date(2024, 2, 1)]
    assert all(type(x) is date for x in distinct_days(raw))
