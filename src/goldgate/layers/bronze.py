"""Bronze: the source as received, plus ingestion metadata. Nothing is parsed or dropped here."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa


def add_ingest_metadata(raw: pa.Table, source: str, batch_id: str, ingested_at: datetime) -> pa.Table:
    """Append ``_ingested_at``, ``_source`` and ``_batch_id`` (``_row_number`` comes from the reader)."""
    n = raw.num_rows
    return (
        raw.append_column("_ingested_at", pa.array([ingested_at] * n, pa.timestamp("us", tz="UTC")))
        .append_column("_source", pa.array([source] * n, pa.string()))
        .append_column("_batch_id", pa.array([batch_id] * n, pa.string()))
    )
