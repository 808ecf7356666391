"""Multiclass label targets: the row's own class as text, NULL where missing, and errors for unusable columns."""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd
import pyarrow as pa
import pytest

from goldgate.data.targets import LABEL_END, FeatureSpecError, build_target
from goldgate.usecase import parse_usecase


def classes(values: list[Any], kind: pa.DataType) -> pd.Series:
    """The target ``build_target`` makes of a ``label`` column holding ``values``, in row order."""
    uc = parse_usecase(
        {
            "name": "species",
            "task": "multiclass",
            "columns": {"penguin": {"type": "string", "role": "entity"}, "label": "string"},
            "target": {"kind": "label", "column": "label"},
        }
    )
    gold = ibis.duckdb.connect().create_table(
        "gold", pa.table({"penguin": [f"p{i}" for i in range(len(values))], "label": pa.array(values, kind)})
    )
    exprs = build_target(gold, uc)
    assert LABEL_END not in exprs  # nothing says when such a label arrives
    out = gold.select("penguin", **exprs).to_pyarrow().to_pandas().sort_values("penguin")
    return out["target"].reset_index(drop=True)


def test_text_classes_are_kept_and_missing_labels_stay_missing() -> None:
    got = classes(["Adelie", "Gentoo", None, "Chinstrap"], pa.string())
    assert got.tolist()[:2] == ["Adelie", "Gentoo"]
    assert pd.isna(got[2])
    assert got[3] == "Chinstrap"


@pytest.mark.parametrize(
    ("values", "kind", "expected"),
    [([3, 1, 2], pa.int64(), ["3", "1", "2"]), ([True, False], pa.bool_(), ["true", "false"])],
)
def test_integer_and_boolean_classes_become_text(values: list[Any], kind: pa.DataType, expected: list[str]) -> None:
    assert classes(values, kind).tolist() == expected


@pytest.mark.parametrize(
    ("values", "kind", "message"),
    [
        ([1.5, 2.5], pa.float64(), "a multiclass label needs a text, integer or boolean column; 'label' is float64"),
        (["Adelie", "Adelie", None], pa.string(), r"needs at least two classes \(observed: 'Adelie'\)"),
        ([None, None], pa.string(), r"needs at least two classes \(the gold table has no label\)"),
    ],
)
def test_unusable_label_columns_are_errors(values: list[Any], kind: pa.DataType, message: str) -> None:
    with pytest.raises(FeatureSpecError, match=message):
        classes(values, kind)
