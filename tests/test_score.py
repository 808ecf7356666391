"""Batch scoring helpers: the date to score, the rows to score, and prediction rows with lineage."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from goldgate.score import latest_complete_date, rows_to_score, with_lineage

INPUTS = ["rv_5", "rv_20"]
D1, D2, D3 = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)


def frame() -> pd.DataFrame:
    """D3 is the newest date but no currency has rv_20 there yet; on D2 only JPY and GBP are complete."""
    return pd.DataFrame(
        {
            "currency": ["USD", "JPY", "GBP"] * 3,
            "date": [D1] * 3 + [D2] * 3 + [D3] * 3,
            "rv_5": [0.1, 0.2, 0.3, np.nan, 0.2, 0.3, 0.1, 0.2, 0.3],
            "rv_20": [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, np.nan, np.nan, np.nan],
            "target": [np.nan] * 9,
        }
    )


def test_latest_complete_date_skips_dates_without_all_inputs() -> None:
    assert latest_complete_date(frame(), INPUTS, "date") == D2
    assert latest_complete_date(frame(), ["rv_5"], "date") == D3


def test_latest_complete_date_accepts_timestamps() -> None:
    f = frame().assign(date=lambda x: pd.to_datetime(x.date))
    assert latest_complete_date(f, INPUTS, "date") == D2


def test_latest_complete_date_raises_when_nothing_is_complete() -> None:
    with pytest.raises(ValueError, match="no row has all model inputs"):
        latest_complete_date(frame(), [*INPUTS, "target"], "date")


def test_rows_to_score_are_the_complete_rows_of_that_date() -> None:
    rows = rows_to_score(frame(), INPUTS, "date", D2)
    assert list(rows.currency) == ["JPY", "GBP"]
    assert list(rows.index) == [0, 1]
    assert rows[INPUTS].notna().all().all()
    assert rows_to_score(frame(), INPUTS, "date", date(2030, 1, 1)).empty


SCORED_AT = datetime(2024, 3, 7, 18, 30, tzinfo=UTC)
LINEAGE = {
    "model_name": "fx_realized_vol",
    "model_version": "3",
    "run_id": "abc",
    "feature_table": "gold.fx_features",
    "feature_table_version": 12,
}


def test_with_lineage_columns_types_and_values() -> None:
    rows = rows_to_score(frame(), INPUTS, "date", D2)
    table = with_lineage(rows, np.array([0.25, 0.35]), "currency", "date", LINEAGE, SCORED_AT)
    assert table.column_names == ["currency", "as_of", "prediction", *LINEAGE, "scored_at"]
    schema = table.schema
    assert pa.types.is_string(schema.field("currency").type) or pa.types.is_large_string(schema.field("currency").type)
    assert schema.field("as_of").type == pa.date32()
    assert schema.field("prediction").type == pa.float64()
    assert schema.field("feature_table_version").type == pa.int64()
    assert schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("currency").to_pylist() == ["JPY", "GBP"]
    assert table.column("as_of").to_pylist() == [D2, D2]
    assert table.column("prediction").to_pylist() == [0.25, 0.35]
    for key, value in LINEAGE.items():
        assert table.column(key).to_pylist() == [value, value], key
    assert table.column("scored_at").to_pylist() == [SCORED_AT, SCORED_AT]


def test_scored_at_keeps_the_instant_of_an_aware_time() -> None:
    rows = rows_to_score(frame(), INPUTS, "date", D1)
    local = SCORED_AT.astimezone(timezone(timedelta(hours=2)))
    table = with_lineage(rows, [1, 2, 3], "currency", "date", LINEAGE, local)
    assert table.schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("scored_at").to_pylist()) == {SCORED_AT}
    assert table.column("prediction").to_pylist() == [1.0, 2.0, 3.0]


def test_with_lineage_from_timestamps_and_an_unsorted_index() -> None:
    rows = frame().iloc[[5, 4]].assign(date=lambda x: pd.to_datetime(x.date))  # index [5, 4]
    table = with_lineage(rows, pd.Series([0.5, 0.4]), "currency", "date", {}, SCORED_AT)
    assert table.column("currency").to_pylist() == ["GBP", "JPY"]
    assert table.column("as_of").to_pylist() == [D2, D2]
    assert table.column("prediction").to_pylist() == [0.5, 0.4]
