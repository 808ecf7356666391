"""Test helper: the point-in-time (leakage) check of snapshot feature tables.

A snapshot ``s`` rebuilt from gold as it looked at ``s`` must carry exactly the features of the snapshot built from
the full gold table. ``Rewind`` turns gold back to a past day: rows started after it did not exist yet, rows ended
after it were still alive (their end, the event's date and the columns that change when a row ends reset).
``check_point_in_time`` rebuilds every (or some) snapshot that way and lists the features that differ.

The crm defaults (``CRM_REWIND``, the keys ``opportunity_id``/``snapshot_date``, the label ``won_30d``) are the
shape of ``gold.crm_deals`` and of the bundled crm use case; generic tests pass their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from numbers import Real
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from goldgate.data.features import LABEL_END, build_dsl_features
from goldgate.usecase import UseCase

# (gold as it looked at data_end, data_end) -> the feature table built from it
Build = Callable[[ir.Table, date], ir.Table]


@dataclass(frozen=True)
class Rewind:
    """How gold looked on a past day: ``start``/``end`` date the rows, ``reset`` gives the values of a row that was
    still alive (column -> value, None: NULL); ``end`` is always reset to NULL."""

    start: str
    end: str
    reset: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, gold: ir.Table, at: date) -> ir.Table:
        """``gold`` as it would have looked on ``at``. Rows without a start carry no time and are kept as they are."""
        kept = gold.filter(gold[self.start].isnull() | (gold[self.start] <= at))
        later = kept[self.end].notnull() & (kept[self.end] > at)
        reset = {self.end: None, **self.reset}
        values: dict[str, ir.Value] = {}
        for column, value in reset.items():
            kind = kept[column].type()
            new = ibis.null(kind) if value is None else ibis.literal(value, kind)
            values[column] = ibis.ifelse(later, new, kept[column])
        return kept.mutate(**values)


# A deal closed after the day was still open: 'Engaging', without a close date or value.
CRM_REWIND = Rewind("engage_date", "close_date", {"deal_stage": "Engaging", "close_value": None})


def truncate_deals(deals: ir.Table, at: date) -> ir.Table:
    """The crm export (``gold.crm_deals``) as it would have looked on ``at``."""
    return CRM_REWIND(deals, at)


def engine(usecase: UseCase) -> Build:
    """The declarative engine's build of ``usecase``, bounded at ``data_end``."""

    def build(gold: ir.Table, data_end: date) -> ir.Table:
        return build_dsl_features(gold, usecase, data_end=data_end)

    return build


@dataclass(frozen=True)
class Keys:
    """The columns of a snapshot feature table that are not features."""

    entity: str = "opportunity_id"
    time: str = "snapshot_date"
    target: str = "won_30d"

    def features(self, columns: Sequence[str]) -> list[str]:
        """The feature columns: everything but the keys, the label and its end date."""
        return [c for c in columns if c not in (self.entity, self.time, self.target, LABEL_END)]


CRM_KEYS = Keys()


def _differs(a: Any, b: Any, tolerance: float) -> bool:
    """True unless both are missing, equal, or numbers within ``tolerance`` (relative above magnitude 1)."""
    a_missing, b_missing = pd.isna(a), pd.isna(b)
    if a_missing or b_missing:
        return bool(a_missing != b_missing)
    if isinstance(a, Real) and isinstance(b, Real):
        return not math.isclose(float(a), float(b), rel_tol=tolerance, abs_tol=tolerance)
    return bool(a != b)


def compare_snapshot(full: pd.DataFrame, rebuilt: pd.DataFrame, s: date, keys: Keys, tolerance: float) -> list[str]:
    """Mismatches between one snapshot's rows built from the full gold table and from gold rewound to it."""
    problems: list[str] = []
    full_ids, rebuilt_ids = set(full[keys.entity]), set(rebuilt[keys.entity])
    if full_ids != rebuilt_ids:
        extra, missing = sorted(full_ids - rebuilt_ids), sorted(rebuilt_ids - full_ids)
        problems.append(f"rows at {s}: only in full build {extra[:3]}, only in truncated build {missing[:3]}")
    features = keys.features(list(full.columns))
    for col in sorted(set(features) ^ set(keys.features(list(rebuilt.columns)))):
        problems.append(f"{col} at {s}: column present in only one build")
    merged = full.merge(rebuilt, on=keys.entity, suffixes=("_full", "_pit"))
    for col in features:
        if f"{col}_pit" not in merged.columns:
            continue
        pairs = zip(merged[keys.entity], merged[f"{col}_full"], merged[f"{col}_pit"], strict=True)
        bad = [(key, a, b) for key, a, b in pairs if _differs(a, b, tolerance)]
        if bad:
            key, a, b = bad[0]
            problems.append(f"{col} at {s}: {len(bad)} rows differ, e.g. {key}: full={a!r} point-in-time={b!r}")
    return problems


def check_point_in_time(
    build: Build,
    gold: ir.Table,
    features: ir.Table,
    *,
    rewind: Callable[[ir.Table, date], ir.Table] = CRM_REWIND,
    keys: Keys = CRM_KEYS,
    dates: Sequence[date] | None = None,
    tolerance: float = 1e-9,
) -> list[str]:
    """Rebuild each snapshot ``s`` from ``rewind(gold, s)`` and compare its features with ``features``.

    ``build`` is called as ``build(rewound_gold, s)``. ``dates`` limits the check to some snapshots (default: all
    of them). Returns one message per (feature, snapshot) that differs, naming an example entity; an empty list
    means no feature of ``features`` used information from after its snapshot.
    """
    full = features.to_pyarrow().to_pandas()
    checked = sorted(set(full[keys.time])) if dates is None else list(dates)
    problems: list[str] = []
    for s in checked:
        rebuilt = build(rewind(gold, s), s)
        at_s = rebuilt.filter(rebuilt[keys.time] == s).to_pyarrow().to_pandas()
        problems += compare_snapshot(full[full[keys.time] == s], at_s, s, keys, tolerance)
    return problems
