"""Walk-forward folds: every model is fitted and scored on the same time-ordered folds, with an embargo.

A fold's training window ends ``gap_days`` dates before its test window starts, so no training label (which
looks ``horizon`` dates ahead) can overlap the test window when ``gap_days >= horizon``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Literal

import pandas as pd


class SplitError(ValueError):
    """Too little history for the requested folds and gap."""


@dataclass(frozen=True)
class Fold:
    index: int
    train_start: date
    train_end: date
    test_start: date
    test_end: date

    def as_dict(self) -> dict[str, str | int]:
        return {k: (v if isinstance(v, int) else str(v)) for k, v in asdict(self).items()}


def distinct_days(dates: pd.Series) -> list[date]:
    """Sorted distinct calendar dates of a column."""
    return sorted(pd.unique(pd.to_datetime(dates).dt.date))


def walk_forward_folds(
    days: list[date],
    n_folds: int,
    test_days: int,
    gap_days: int,
    window: Literal["expanding", "rolling"] = "expanding",
    train_days: int | None = None,
    min_train_days: int = 20,
) -> list[Fold]:
    """``n_folds`` consecutive test windows of ``test_days`` dates ending at the last date, oldest first."""
    if n_folds < 1 or test_days < 1:
        raise SplitError("walk-forward needs at least one fold of at least one date")
    folds = []
    for k in range(n_folds):
        test_start_ix = len(days) - (n_folds - k) * test_days
        train_end_ix = test_start_ix - gap_days - 1
        train_start_ix = 0 if window == "expanding" else max(0, train_end_ix + 1 - (train_days or 0))
        need = max(min_train_days, 1)  # an empty window would index days[-1]: training on the future
        if train_end_ix + 1 - train_start_ix < need:
            have = max(train_end_ix + 1 - train_start_ix, 0)
            raise SplitError(
                f"{len(days)} dates is too little history for {n_folds} folds of {test_days} test dates "
                f"with a {gap_days}-date gap (fold {k} would train on {have} dates, need {need})"
            )
        folds.append(
            Fold(
                k,
                days[train_start_ix],
                days[train_end_ix],
                days[test_start_ix],
                days[test_start_ix + test_days - 1],
            )
        )
    return folds


def fold_rows(
    frame: pd.DataFrame, fold: Fold, time_col: str, label_end: str = "target_end"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and test rows of one fold; training rows whose label reaches the test window are purged."""
    day = pd.to_datetime(frame[time_col]).dt.date
    in_train = (day >= fold.train_start) & (day <= fold.train_end)
    if label_end in frame.columns:
        in_train &= pd.to_datetime(frame[label_end]).dt.date < fold.test_start
    test = frame[(day >= fold.test_start) & (day <= fold.test_end)]
    return frame[in_train], test
