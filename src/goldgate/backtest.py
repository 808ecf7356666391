"""Walk-forward folds: every model is fitted and scored on the same time-ordered folds, with an embargo.

A fold's training window ends ``gap_days`` dates before its test window starts, so no training label (which
looks ``horizon`` dates ahead) can overlap the test window when ``gap_days >= horizon``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

# Column prepare_frame adds for k-fold evaluation: the fold whose test set holds the row.
FOLD_COLUMN = "_fold"


class SplitError(ValueError):
    """Too little history for the requested folds and gap."""


@dataclass(frozen=True)
class Fold:
    index: int
    train_start: date
    train_end: date
    test_start: date
    test_end: date
    scheme: str = "walk_forward"

    def as_dict(self) -> dict[str, str | int]:
        data = asdict(self)
        if self.scheme == "walk_forward":
            del data["scheme"]  # the default, and the only scheme older records know
        return {k: (v if isinstance(v, int) else str(v)) for k, v in data.items()}


def kfold_folds(n_folds: int, first: date, last: date) -> list[Fold]:
    """``n_folds`` folds over rows without a time order; each row's fold is its ``FOLD_COLUMN``."""
    if n_folds < 2:
        raise SplitError("k-fold evaluation needs at least 2 folds")
    return [Fold(k, first, last, first, last, scheme="kfold") for k in range(n_folds)]


def assign_kfold(groups: pd.Series, labels: pd.Series | None, n_folds: int, seed: int) -> np.ndarray:
    """Each row's test fold: whole groups (entities) stay together; classes are balanced across folds when given.

    Deterministic for the same rows in the same order and the same seed.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_groups = groups.nunique()
    if n_groups < n_folds:
        raise SplitError(f"{n_groups} entities are too few for {n_folds} folds")
    folds = np.full(len(groups), -1, dtype="int64")
    x = np.zeros((len(groups), 1))
    if labels is not None:
        splits = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(x, labels, groups)
    else:
        splits = GroupKFold(n_folds, shuffle=True, random_state=seed).split(x, None, groups)
    for k, (_, test) in enumerate(splits):
        folds[test] = k
    return folds


def time_points(values: pd.Series) -> np.ndarray:
    """Each row's time as the backtest keys it: its date for daily (or coarser) data, its timestamp intraday.

    Keying an intraday row by its date alone would pair every bar of a day with every other in a comparison,
    and would give a panel's predictions of one day the same key.
    """
    stamps = pd.to_datetime(values)
    if bool((stamps != stamps.dt.normalize()).any()):
        return stamps.to_numpy()
    return stamps.dt.date.to_numpy()


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
                f"with a {gap_days}-date gap (fold {k} would train on {have} dates, need {need}); "
                "evaluation.test_days, gap_days and min_train_days count distinct calendar dates of the time column, "
                "whatever its grain"
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
    if fold.scheme == "kfold":
        in_test = frame[FOLD_COLUMN] == fold.index
        return frame[~in_test], frame[in_test]
    day = pd.to_datetime(frame[time_col]).dt.date
    in_train = (day >= fold.train_start) & (day <= fold.train_end)
    if label_end in frame.columns:
        ends = pd.to_datetime(frame[label_end]).dt.date
        in_train &= ends.isna() | (ends < fold.test_start)
    test = frame[(day >= fold.test_start) & (day <= fold.test_end)]
    return frame[in_train], test
