"""Bronze bookkeeping: the raw text table plus ingestion metadata, nothing parsed or dropped."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from goldgate.data.bronze import add_ingest_metadata

INGESTED_AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def raw(n: int) -> pa.Table:
    return pa.table(
        {
            "Date": pa.array([f"2024-01-{d:02d}" for d in range(1, n + 1)], pa.string()),
            "USD": pa.array(["N/A"] * n, pa.string()),
            "_row_number": pa.array(range(2, n + 2), pa.int64()),
        }
    )


@pytest.mark.parametrize("n", [0, 1, 3])
def test_metadata_columns_are_appended_to_every_row(n: int) -> None:
    out = add_ingest_metadata(raw(n), "data/eurofxref.csv", "abc123", INGESTED_AT)
    assert out.column_names == ["Date", "USD", "_row_number", "_ingested_at", "_source", "_batch_id"]
    assert out.num_rows == n
    assert out.schema.field("_ingested_at").type == pa.timestamp("us", tz="UTC")
    assert out.schema.field("_source").type == pa.string()
    assert out.schema.field("_batch_id").type == pa.string()
    assert out.column("_ingested_at").to_pylist() == [INGESTED_AT] * n
    assert out.column("_source").to_pylist() == ["data/eurofxref.csv"] * n
    assert out.column("_batch_id").to_pylist() == ["abc123"] * n


def test_source_columns_are_untouched() -> None:
    table = raw(3)
    out = add_ingest_metadata(table, "f.csv", "b", INGESTED_AT)
    assert out.select(table.column_names).equals(table)
