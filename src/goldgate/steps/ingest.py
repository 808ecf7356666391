"""ingest: the use case's file(s) -> bronze, as received (every cell as text), plus ingestion metadata."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from goldgate.context import Context
from goldgate.layers.bronze import add_ingest_metadata, require_columns
from goldgate.steps.batches import batch_ingested, record_schema_changes

log = logging.getLogger(__name__)


def ingest(ctx: Context) -> dict[str, Any]:
    """Read the source and append it to bronze; a batch already ingested (same content and options) is skipped.

    New source columns widen bronze and are logged in ``ops.schema_changes``; a missing required column stops the
    step before anything is written. Lines that are not rows (comments, blank lines, a preamble) are counted.
    """
    from goldgate.data.sources import read_source

    uc, lake = ctx.usecase, ctx.lake
    batch = read_source(uc.source, ctx.source)
    require_columns(batch.table.column_names, uc.source.required, batch.source)
    result: dict[str, Any] = {
        "batch_id": batch.batch_id,
        "rows": batch.table.num_rows,
        "source": batch.source,
        "skipped_lines": dict(batch.skipped),
    }
    if batch.table.num_rows == 0:
        log.warning("%s has no data rows: nothing ingested", batch.source)
        return {**result, "new": False}
    if lake.exists(uc.tables.bronze):
        if batch_ingested(lake, uc.tables.bronze, batch.batch_id, batch.source):
            return {**result, "new": False}
        columns = batch.table.column_names
        result["schema_changes"] = record_schema_changes(lake, uc.tables.bronze, columns, batch.batch_id, batch.source)
    lake.append(uc.tables.bronze, add_ingest_metadata(batch.table, batch.source, batch.batch_id, datetime.now(UTC)))
    log.info("ingested %d rows from %s into %s", batch.table.num_rows, batch.source, uc.tables.bronze)
    return {**result, "new": True}
