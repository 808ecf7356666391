"""Bronze bookkeeping shared by every reader: ingestion metadata, required columns and schema changes.

Bronze is the source as received, plus ingestion metadata. Nothing is parsed or dropped here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa


def add_ingest_metadata(raw: pa.Table, source: str, batch_id: str, ingested_at: datetime) -> pa.Table:
    """Append ``_ingested_at``, ``_source`` and ``_batch_id`` (``_row_number`` comes from the reader)."""
    n = raw.num_rows
    return (
        raw.append_column("_ingested_at", pa.array([ingested_at] * n, pa.timestamp("us", tz="UTC")))
        .append_column("_source", pa.array([source] * n, pa.string()))
        .append_column("_batch_id", pa.array([batch_id] * n, pa.string()))
    )


SCHEMA_CHANGES = "ops.schema_changes"
METADATA_PREFIX = "_"


class SchemaError(ValueError):
    """A source batch lacks a column the use case requires."""


def require_columns(columns: list[str], required: list[str], source: str) -> None:
    """Stop before writing when a required column is missing, naming it."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise SchemaError(f"{source}: required column(s) missing: {', '.join(missing)}")


def schema_changes(bronze_columns: list[str], batch_columns: list[str]) -> dict[str, list[str]]:
    """Source columns new to bronze, and bronze columns this batch no longer has (metadata aside)."""
    known = [c for c in bronze_columns if not c.startswith(METADATA_PREFIX)]
    incoming = [c for c in batch_columns if not c.startswith(METADATA_PREFIX)]
    changes = {"added": [c for c in incoming if c not in known], "missing": [c for c in known if c not in incoming]}
    return {k: v for k, v in changes.items() if v}


def schema_change_rows(table: str, batch_id: str, source: str, changes: dict[str, list[str]]) -> pa.Table:
    """One ``ops.schema_changes`` row per added or missing column."""
    now = datetime.now(UTC)
    return pa.Table.from_pylist(
        [
            {
                "table_name": table,
                "batch_id": batch_id,
                "source": source,
                "column_name": col,
                "change": kind,
                "detected_at": now,
            }
            for kind, cols in changes.items()
            for col in cols
        ],
        schema=pa.schema(
            [
                ("table_name", pa.string()),
                ("batch_id", pa.string()),
                ("source", pa.string()),
                ("column_name", pa.string()),
                ("change", pa.string()),
                ("detected_at", pa.timestamp("us", tz="UTC")),
            ]
        ),
    )
