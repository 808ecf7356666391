"""silver: each new bronze batch typed as the use case declares; failing rows to quarantine with rule and value.

Cast failures (a cell that has a value but does not parse as its column's type) and ``drop`` expectations send
the row to the quarantine table with the first failing rule, every failing rule and the reason; a key repeated
within one batch keeps its first line. Every batch's conservation (rows in = kept + quarantined) is checked and
logged in ``ops.quality``.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from goldgate.context import Context
from goldgate.quality import (
    QUALITY,
    QUALITY_SCHEMA,
    apply_expectations,
    apply_mappings,
    quality_rows,
    quarantine_repeats,
)
from goldgate.steps.batches import pending_batches
from goldgate.usecase import UseCase

log = logging.getLogger(__name__)

# Where a row came from: unique per bronze row (an unpivoted row adds the column it came from).
ORIGIN = ["_batch_id", "_file", "_row_number"]


class SilverSchemaError(ValueError):
    """A batch lacks a column the use case declares."""


def silver_keys(uc: UseCase) -> list[str]:
    """The columns that identify a silver row: entity and time columns, else the row's origin."""
    keys = [*uc.entity_columns, *([uc.time_column] if uc.time_column else [])]
    return keys or ORIGIN


def quarantine_keys(uc: UseCase) -> list[str]:
    """One quarantine row per source row (per cell for an unpivoted wide file)."""
    return [*ORIGIN, uc.source.unpivot.names_to] if uc.source.unpivot else list(ORIGIN)


def latest_per_key(table: ir.Table, keys: list[str]) -> ir.Table:
    """One row per key: the most recently ingested, then the first in its file."""
    w = ibis.window(group_by=keys, order_by=[ibis.desc("_ingested_at"), "_file", "_row_number"])
    ranked = table.mutate(_rank=ibis.row_number().over(w))
    return ranked.filter(ranked._rank == 0).drop("_rank")


def silver_columns(uc: UseCase, keys: list[str]) -> list[str]:
    """The typed columns silver keeps, with the batch and ingestion time (and the origin for key-less rows)."""
    declared = [n for n, c in uc.columns.items() if c.role != "ignore"]
    origin = [c for c in ORIGIN if c in keys and c != "_batch_id"]
    return [*declared, "_batch_id", "_ingested_at", *origin]


SLICE_RULE = "outside_slice"


def in_slice(typed: ir.Table, uc: UseCase) -> ir.Table:
    """Rows within the use case's ``source.start`` / ``source.end``; a row whose time did not parse stays, so
    that its parse rule quarantines it."""
    time, start, end = uc.time_column, uc.source.start, uc.source.end
    if time is None or (start is None and end is None):
        return typed
    t = typed[time].cast("date")
    keep = ibis.literal(True)
    if start is not None:
        keep &= t >= ibis.literal(date.fromisoformat(start))
    if end is not None:
        keep &= t <= ibis.literal(date.fromisoformat(end))
    return typed.filter(t.isnull() | keep)


def slice_row(uc: UseCase, batch_id: str, rows_in: int, kept: int) -> pa.Table:
    """The ``ops.quality`` row counting a batch's rows outside the use case's time slice (passed: inside it)."""
    row = {
        "table_name": uc.tables.silver,
        "input_table": uc.tables.bronze,
        "batch_id": batch_id,
        "rule": SLICE_RULE,
        "action": "slice",
        "passed": kept,
        "failed": rows_in - kept,
        "checked_at": datetime.now(UTC),
    }
    return pa.Table.from_pylist([row], schema=QUALITY_SCHEMA)


def _typed_batch(ctx: Context, bronze: ir.Table, batch_id: str) -> ir.Table:
    from goldgate.data.schema import missing_columns, shape_bronze, type_columns, undeclared_columns

    uc = ctx.usecase
    batch = bronze.filter(bronze._batch_id == batch_id)
    shaped = shape_bronze(batch, uc.source)
    missing = missing_columns(list(shaped.columns), uc.columns)
    if missing:
        raise SilverSchemaError(
            f"{uc.tables.bronze} batch {batch_id}: declared column(s) {', '.join(missing)} not in the source "
            f"(it has: {', '.join(c for c in shaped.columns if not c.startswith('_'))})"
        )
    extra = undeclared_columns(list(shaped.columns), uc.columns, uc.source)
    if extra:
        log.warning("%s: source column(s) %s not declared: kept in bronze, not typed", uc.tables.bronze, extra)
    return type_columns(shaped, uc.columns, uc.source).cache()


def silver(ctx: Context) -> dict[str, Any]:
    """New bronze batches -> typed silver rows merged by key; failing rows to quarantine."""
    from goldgate.data.schema import cast_expectations

    uc, lake = ctx.usecase, ctx.lake
    totals = {"batches": 0, "rows_in": 0, "kept": 0, "quarantined": 0, "inserted": 0, "updated": 0}
    version = lake.version(uc.tables.bronze)
    inputs = {uc.tables.bronze: version}
    keys = silver_keys(uc)
    rules = [*cast_expectations(uc.columns, uc.source), *uc.expectations]
    for batch_id in pending_batches(ctx):
        typed = _typed_batch(ctx, lake.read(uc.tables.bronze, version), batch_id)
        sliced = in_slice(typed, uc)
        if sliced is not typed:
            rows, kept = (int(t.count().to_pyarrow().as_py()) for t in (typed, sliced))
            lake.merge(
                QUALITY,
                slice_row(uc, batch_id, rows, kept),
                keys=["table_name", "batch_id", "rule"],
                ignore=("checked_at",),
            )
            totals["outside_slice"] = totals.get("outside_slice", 0) + rows - kept
            typed = sliced.cache()
        mapped, remapped = apply_mappings(typed, uc.mappings)
        checked = apply_expectations(mapped, rules, uc.tables.silver)
        if keys != ORIGIN:
            checked = quarantine_repeats(checked, keys, ["_file", "_row_number"], uc.tables.silver)
        rows = latest_per_key(checked.kept, keys).select(*silver_columns(uc, keys))
        merged = lake.merge(uc.tables.silver, rows, keys=keys, inputs=inputs)
        lake.merge(uc.tables.quarantine, checked.quarantined, keys=quarantine_keys(uc), inputs=inputs)
        lake.merge(
            QUALITY,
            quality_rows(uc.tables.silver, uc.tables.bronze, batch_id, checked, remapped),
            keys=["table_name", "batch_id", "rule"],
            ignore=("checked_at",),
        )
        for key, value in (
            ("rows_in", checked.rows_in),
            ("kept", checked.rows_kept),
            ("quarantined", checked.rows_quarantined),
            ("inserted", merged.inserted),
            ("updated", merged.updated),
            ("batches", 1),
        ):
            totals[key] += value
    return totals
