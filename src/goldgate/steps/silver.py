"""silver: each new bronze batch typed as the use case declares; failing rows to quarantine with rule and value.

Cast failures (a cell that has a value but does not parse as its column's type) and ``drop`` expectations send
the row to the quarantine table with the first failing rule, every failing rule and the reason; a key repeated
within one batch keeps its first line. Every batch's conservation (rows in = kept + quarantined) is checked and
logged in ``ops.quality``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
from goldgate.steps.batches import pending_batches_of
from goldgate.usecase import Column, Expectation, Mapping, Source, UseCase

log = logging.getLogger(__name__)

# Where a row came from: unique per bronze row (an unpivoted row adds the column it came from).
ORIGIN = ["_batch_id", "_file", "_row_number"]


class SilverSchemaError(ValueError):
    """A batch lacks a column the use case declares."""


@dataclass(frozen=True)
class CheckedTable:
    """One table silver types and checks: the main file's, or a related file's of a ``tables`` source."""

    bronze: str
    silver: str
    quarantine: str
    columns: dict[str, Column]
    expectations: list[Expectation]
    keys: list[str]
    source: Source
    mappings: list[Mapping]


def silver_keys(uc: UseCase) -> list[str]:
    """The columns that identify a silver row: entity and time columns, else the row's origin."""
    keys = [*uc.entity_columns, *([uc.time_column] if uc.time_column else [])]
    return keys or ORIGIN


def quarantine_keys(source: Source) -> list[str]:
    """One quarantine row per source row (per cell for an unpivoted wide file)."""
    return [*ORIGIN, source.unpivot.names_to] if source.unpivot else list(ORIGIN)


def latest_per_key(table: ir.Table, keys: list[str]) -> ir.Table:
    """One row per key: the most recently ingested, then the first in its file."""
    w = ibis.window(group_by=keys, order_by=[ibis.desc("_ingested_at"), "_file", "_row_number"])
    ranked = table.mutate(_rank=ibis.row_number().over(w))
    return ranked.filter(ranked._rank == 0).drop("_rank")


def silver_columns(columns: dict[str, Column], keys: list[str]) -> list[str]:
    """The typed columns silver keeps, with the batch and ingestion time (and the origin for key-less rows)."""
    declared = [n for n, c in columns.items() if c.role != "ignore"]
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


def slice_row(table: CheckedTable, batch_id: str, rows_in: int, kept: int) -> pa.Table:
    """The ``ops.quality`` row counting a batch's rows outside the use case's time slice (passed: inside it)."""
    row = {
        "table_name": table.silver,
        "input_table": table.bronze,
        "batch_id": batch_id,
        "rule": SLICE_RULE,
        "action": "slice",
        "passed": kept,
        "failed": rows_in - kept,
        "checked_at": datetime.now(UTC),
    }
    return pa.Table.from_pylist([row], schema=QUALITY_SCHEMA)


def _typed_batch(table: CheckedTable, bronze: ir.Table, batch_id: str) -> ir.Table:
    from goldgate.data.schema import missing_columns, shape_bronze, type_columns, undeclared_columns

    batch = bronze.filter(bronze._batch_id == batch_id)
    shaped = shape_bronze(batch, table.source)
    missing = missing_columns(list(shaped.columns), table.columns)
    if missing:
        raise SilverSchemaError(
            f"{table.bronze} batch {batch_id}: declared column(s) {', '.join(missing)} not in the source "
            f"(it has: {', '.join(c for c in shaped.columns if not c.startswith('_'))})"
        )
    extra = undeclared_columns(list(shaped.columns), table.columns, table.source)
    if extra:
        log.warning("%s: source column(s) %s not declared: kept in bronze, not typed", table.bronze, extra)
    return type_columns(shaped, table.columns, table.source).cache()


def main_table(uc: UseCase) -> CheckedTable:
    """The main file's table: the use case's columns, expectations (and each join's foreign key) and keys."""
    return CheckedTable(
        uc.tables.bronze,
        uc.tables.silver,
        uc.tables.quarantine,
        uc.columns,
        [*uc.expectations, *join_expectations(uc)],
        silver_keys(uc),
        uc.source,
        [m for m in uc.mappings if m.column in uc.columns],
    )


def related_table(uc: UseCase, name: str) -> CheckedTable:
    """A related file's table: its own columns, expectations and keys; the use case's mappings of its columns."""
    spec = uc.source.tables[name]
    bronze, silver, quarantine = uc.related_tables(name)
    source = uc.source.model_copy(update={"unpivot": None})
    # A reference mapping points at a related table; that table itself takes only the listed spellings.
    mappings = [m for m in uc.mappings if m.column in spec.columns and not (m.reference or "").startswith(f"{silver}.")]
    present = [
        Expectation(name=f"{k}_present", not_null=[k], description=f"a {name} row names its {k}")
        for k in spec.keys
        if spec.columns[k].allows_missing  # otherwise the typing rules check it already
    ]
    rules = [*present, *spec.expectations]
    return CheckedTable(bronze, silver, quarantine, spec.columns, rules, spec.keys, source, mappings)


def join_expectations(uc: UseCase) -> list[Expectation]:
    """``<table>_known``: each join's key is found in the related table (warn counts a miss, drop quarantines)."""
    out = []
    for join in uc.gold.joins:
        ((column, key),) = join.on.items()
        silver = uc.related_tables(join.table)[1]
        out.append(
            Expectation(
                name=f"{join.table}_known",
                action=join.unmatched,
                foreign_key={"column": column, "references": f"{silver}.{key}"},  # type: ignore[arg-type]
                description=f"the {column} is in {join.table} ({join.unmatched}: a row without a match keeps NULLs)",
            )
        )
    return out


def check_batch(ctx: Context, table: CheckedTable, batch_id: str, version: int | None) -> dict[str, int]:
    """One bronze batch of one table typed, checked and merged into its silver and quarantine tables."""
    from goldgate.data.schema import cast_expectations

    uc, lake = ctx.usecase, ctx.lake
    inputs = {table.bronze: version}
    counts: dict[str, int] = {}
    typed = _typed_batch(table, lake.read(table.bronze, version), batch_id)
    recorded: list[pa.Table] = []  # ops.quality rows written with the batch's checks, never before them
    if table.silver == uc.tables.silver:
        sliced = in_slice(typed, uc)
        if sliced is not typed:
            rows, kept = (int(t.count().to_pyarrow().as_py()) for t in (typed, sliced))
            # Recorded with the rules' rows below: a row of this batch in ops.quality marks it done, so a fail rule
            # that stops the step must find none, or the batch would never be checked again.
            recorded.append(slice_row(table, batch_id, rows, kept))
            counts["outside_slice"] = rows - kept
            typed = sliced.cache()
    references = {m.reference.rpartition(".")[0] for m in table.mappings if m.reference}
    mapped, remapped = apply_mappings(typed, table.mappings, {name: lake.read(name) for name in references})
    rules = [*cast_expectations(table.columns, table.source), *table.expectations]
    refs = {name: lake.read(name).get_name() for name in {e.foreign_key.table for e in rules if e.foreign_key}}
    checked = apply_expectations(mapped, rules, table.silver, refs)
    if table.keys != ORIGIN:
        checked = quarantine_repeats(checked, table.keys, ["_file", "_row_number"], table.silver)
    if checked.rows_in and not checked.rows_kept:
        worst = max(checked.outcomes, key=lambda o: o.failed if o.action == "drop" else -1)
        log.warning(
            "%s batch %s: all %d rows quarantined (most by %s: %d); check the column types and formats",
            table.silver,
            batch_id,
            checked.rows_in,
            worst.rule,
            worst.failed,
        )
    rows = latest_per_key(checked.kept, table.keys).select(*silver_columns(table.columns, table.keys))
    merged = lake.merge(table.silver, rows, keys=table.keys, inputs=inputs)
    lake.merge(table.quarantine, checked.quarantined, keys=quarantine_keys(table.source), inputs=inputs)
    lake.merge(
        QUALITY,
        pa.concat_tables([*recorded, quality_rows(table.silver, table.bronze, batch_id, checked, remapped)]),
        keys=["table_name", "batch_id", "rule"],
        ignore=("checked_at",),
    )
    return {
        **counts,
        "rows_in": checked.rows_in,
        "kept": checked.rows_kept,
        "quarantined": checked.rows_quarantined,
        "inserted": merged.inserted,
        "updated": merged.updated,
        "batches": 1,
    }


def check_table(ctx: Context, table: CheckedTable) -> dict[str, int]:
    """Every pending bronze batch of one table, oldest first; the counts summed."""
    totals = {"batches": 0, "rows_in": 0, "kept": 0, "quarantined": 0, "inserted": 0, "updated": 0}
    version = ctx.lake.version(table.bronze)
    for batch_id in pending_batches_of(ctx.lake, table.bronze, table.silver):
        for key, value in check_batch(ctx, table, batch_id, version).items():
            totals[key] = totals.get(key, 0) + value
    return totals


def silver(ctx: Context) -> dict[str, Any]:
    """New bronze batches -> typed silver rows merged by key; failing rows to quarantine.

    Related files of a ``tables`` source go first, so the main rows' foreign keys are checked against them.
    """
    uc = ctx.usecase
    related = {name: check_table(ctx, related_table(uc, name)) for name in uc.source.tables}
    totals: dict[str, Any] = dict(check_table(ctx, main_table(uc)))
    if related:
        totals["related"] = related
    return totals
