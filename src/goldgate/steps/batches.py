"""Bronze batches: whether a batch is already in, which are not yet checked into silver, schema changes."""

from __future__ import annotations

import logging
from typing import Any

from goldgate.context import Context
from goldgate.data.bronze import SCHEMA_CHANGES, schema_change_rows, schema_changes
from goldgate.quality import QUALITY

log = logging.getLogger(__name__)


def batch_ingested(lake: Any, bronze: str, batch_id: str, source: str) -> bool:
    """Whether bronze already holds this batch (same content hash): a re-ingest is then skipped."""
    table = lake.read(bronze)
    if not table.filter(table._batch_id == batch_id).count().to_pyarrow().as_py():
        return False
    log.info("batch %s from %s is already in %s", batch_id, source, bronze)
    return True


def record_schema_changes(
    lake: Any, bronze: str, columns: list[str], batch_id: str, source: str
) -> dict[str, list[str]]:
    """New and missing columns of a batch against an existing bronze table, logged in ``ops.schema_changes``."""
    changes = schema_changes(list(lake.read(bronze).columns), columns)
    if changes:
        log.warning("%s: schema changed in %s: %s", bronze, source, changes)
        lake.append(SCHEMA_CHANGES, schema_change_rows(bronze, batch_id, source, changes))
    return changes


def pending_batches(ctx: Context) -> list[str]:
    """Bronze batches not yet checked into silver, oldest first (the main bronze table marks a whole batch)."""
    return pending_batches_of(ctx.lake, ctx.usecase.tables.bronze, ctx.usecase.tables.silver)


def pending_batches_of(lake: Any, bronze_name: str, silver_name: str) -> list[str]:
    """Batches of one bronze table not yet checked into its silver table, oldest first."""
    if not lake.exists(bronze_name):
        return []
    bronze = lake.read(bronze_name)
    batches = bronze.group_by("_batch_id").aggregate(at=bronze._ingested_at.max()).order_by("at").to_pyarrow()
    done: set[str] = set()
    if lake.exists(QUALITY):
        q = lake.read(QUALITY)
        done = set(q.filter(q.table_name == silver_name).batch_id.to_pyarrow().to_pylist())
    return [b for b in batches["_batch_id"].to_pylist() if b not in done]
