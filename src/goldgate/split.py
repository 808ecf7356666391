"""Time-ordered holdout: test on the last dates, with an embargo so no training label overlaps the test."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import pandas as pd


class SplitError(ValueError):
    """Too little history for the requested holdout and gap."""


@dataclass(frozen=True)
class Split:
    train_start: date
    train_end: date
    test_start: date
    test_end: date
    gap_days: int

    def as_params(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Split:
        return cls(
            train_start=date.fromisoformat(params["train_start"]),
            train_end=date.fromisoformat(params["train_end"]),
            test_start=date.fromisoformat(params["test_start"]),
            test_end=date.fromisoformat(params["test_end"]),
            gap_days=int(params["gap_days"]),
        )


def holdout_split(dates: pd.Series, holdout_days: int, gap_days: int) -> Split:
    """Split on distinct dates: the last ``holdout_days`` test, the ``gap_days`` before them are unused.

    With a target over the next h fixings, a gap of at least h dates keeps every training label strictly
    before the first test date.
    """
    days = sorted(pd.unique(pd.to_datetime(dates).dt.date))
    if len(days) < holdout_days + gap_days + 20:
        raise SplitError(
            f"{len(days)} dates is too little history for a {holdout_days}-date holdout with a "
            f"{gap_days}-date gap (need at least {holdout_days + gap_days + 20})"
        )
    test = days[-holdout_days:]
    train = days[: -(holdout_days + gap_days)]
    return Split(train[0], train[-1], test[0], test[-1], gap_days)


def apply_split(frame: pd.DataFrame, split: Split, time_col: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of the training and test windows."""
    day = pd.to_datetime(frame[time_col]).dt.date
    train = frame[(day >= split.train_start) & (day <= split.train_end)]
    test = frame[(day >= split.test_start) & (day <= split.test_end)]
    return train, test
