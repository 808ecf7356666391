"""The data steps of a CRM export use case: four CSVs -> four bronze tables -> typed silver -> one deal row each.

Train, evaluate, gate, register, score and monitor are shared with every use case (``goldgate.pipeline``); so is
the features step, which builds the monthly deal snapshots from ``tables.gold``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ibis.expr.types as ir

from goldgate.context import Context
from goldgate.layers.bronze import add_ingest_metadata
from goldgate.layers.crm import REFERENCE_KEYS, TYPERS, join_deals, silver_rows, type_opportunities
from goldgate.quality import (
    QUALITY,
    QualityResult,
    apply_expectations,
    apply_mappings,
    quality_rows,
    quarantine_repeats,
)
from goldgate.sources.crm_export import CRM_FILES, read_crm_export, resolve_crm_source
from goldgate.steps.batches import batch_ingested, pending_batches, record_schema_changes
from goldgate.usecase import Expectation, UseCase

log = logging.getLogger(__name__)

MAIN_FILE = "sales_pipeline"
OPPORTUNITY_KEY = "opportunity_id"
QUARANTINE_KEYS = ["_batch_id", "_row_number"]


class CrmTablesError(ValueError):
    """The use case does not name a table the CRM steps need."""


def table_of(uc: UseCase, role: str) -> str:
    """Logical name of a CRM table by role: ``bronze_<file>``, ``<reference>``, ``quarantine_<reference>``."""
    fixed = {f"bronze_{MAIN_FILE}": uc.tables.bronze, "opportunities": uc.tables.silver}
    name = fixed.get(role) or uc.tables.extra.get(role)
    if name is None:
        raise CrmTablesError(f"use case '{uc.name}': tables.extra has no '{role}' entry (needed by the crm steps)")
    return name


def ingest(ctx: Context) -> dict[str, Any]:
    """Export folder -> one bronze table per CSV, as received; a folder already ingested (same bytes) is skipped."""
    uc, lake = ctx.usecase, ctx.lake
    explicit = ctx.source or (Path(uc.source.path) if uc.source.path else None)
    folder = resolve_crm_source(
        explicit,
        ctx.settings.workspace_dir,
        rows=uc.source.demo_rows,
        seed=uc.source.demo_seed,
    )
    batch = read_crm_export(folder)
    rows = {name: t.num_rows for name, t in batch.tables.items()}
    result: dict[str, Any] = {"batch_id": batch.batch_id, "rows": rows, "source": batch.source}
    main = table_of(uc, f"bronze_{MAIN_FILE}")
    if lake.exists(main) and batch_ingested(lake, main, batch.batch_id, batch.source):
        return {**result, "new": False}
    now = datetime.now(UTC)
    changes: dict[str, Any] = {}
    # The main file goes last: its batch id in bronze marks the whole export as ingested.
    for name in sorted(CRM_FILES, key=lambda n: n == MAIN_FILE):
        target = table_of(uc, f"bronze_{name}")
        table = batch.tables[name]
        if lake.exists(target):
            found = record_schema_changes(lake, target, table.column_names, batch.batch_id, batch.source)
            if found:
                changes[name] = found
        lake.append(target, add_ingest_metadata(table, batch.files.get(name, batch.source), batch.batch_id, now))
    return {**result, "new": True, "schema_changes": changes}


def _record(
    ctx: Context, table: str, bronze: str, batch_id: str, checked: QualityResult, remapped: dict[str, int]
) -> None:
    ctx.lake.merge(
        QUALITY,
        quality_rows(table, bronze, batch_id, checked, remapped),
        keys=["table_name", "batch_id", "rule"],
        ignore=("checked_at",),
    )


def _silver_reference(ctx: Context, name: str, batch_id: str, inputs: dict[str, int | None]) -> dict[str, int]:
    """One reference file's batch: typed, mapped, one row per key (repeats and missing keys quarantined)."""
    uc, lake = ctx.usecase, ctx.lake
    bronze_name, key = table_of(uc, f"bronze_{name}"), REFERENCE_KEYS[name]
    bronze = lake.read(bronze_name, inputs[bronze_name])
    typed = TYPERS[name](bronze.filter(bronze._batch_id == batch_id)).cache()
    # Reference mappings point at these tables; the tables themselves take only the listed spellings.
    spellings = [m for m in uc.mappings if m.reference is None]
    mapped, remapped = apply_mappings(typed, spellings, only_present=True)
    has_key = Expectation(name=f"{key}_present", not_null=[key], description=f"a {name} row names its {key}")
    checked = quarantine_repeats(apply_expectations(mapped, [has_key], table_of(uc, name)), [key], "_row_number", name)
    lake.merge(table_of(uc, name), silver_rows(checked.kept, key), keys=[key], inputs=inputs)
    lake.merge(table_of(uc, f"quarantine_{name}"), checked.quarantined, keys=QUARANTINE_KEYS, inputs=inputs)
    _record(ctx, table_of(uc, name), bronze_name, batch_id, checked, remapped)
    return {"rows_in": checked.rows_in, "kept": checked.rows_kept, "quarantined": checked.rows_quarantined}


def _references(ctx: Context) -> dict[str, ir.Table]:
    return {table_of(ctx.usecase, name): ctx.lake.read(table_of(ctx.usecase, name)) for name in REFERENCE_KEYS}


def silver(ctx: Context) -> dict[str, Any]:
    """Each new export batch: reference tables first, then the opportunities checked against them.

    Unknown accounts, products or agents are counted by ``warn`` foreign-key expectations and the deal is kept;
    rows failing a ``drop`` expectation go to the quarantine table with the rule and reason; a repeated
    opportunity id within one batch keeps the first line and quarantines the others.
    """
    uc, lake = ctx.usecase, ctx.lake
    totals: dict[str, Any] = {"batches": 0, "rows_in": 0, "kept": 0, "quarantined": 0, "references": {}}
    names = [table_of(uc, f"bronze_{f}") for f in CRM_FILES]
    inputs: dict[str, int | None] = {n: lake.version(n) for n in names}
    for batch_id in pending_batches(ctx):
        for name in REFERENCE_KEYS:
            totals["references"][name] = _silver_reference(ctx, name, batch_id, inputs)
        refs = _references(ctx)
        bronze = lake.read(uc.tables.bronze, inputs[uc.tables.bronze])
        typed = type_opportunities(bronze.filter(bronze._batch_id == batch_id)).cache()
        mapped, remapped = apply_mappings(typed, uc.mappings, refs, only_present=True)
        relations = {n: t.get_name() for n, t in refs.items()}
        checked = quarantine_repeats(
            apply_expectations(mapped, uc.expectations, uc.tables.silver, relations),
            [OPPORTUNITY_KEY],
            "_row_number",
            uc.tables.silver,
        )
        lake.merge(uc.tables.silver, silver_rows(checked.kept, OPPORTUNITY_KEY), keys=[OPPORTUNITY_KEY], inputs=inputs)
        lake.merge(uc.tables.quarantine, checked.quarantined, keys=QUARANTINE_KEYS, inputs=inputs)
        _record(ctx, uc.tables.silver, uc.tables.bronze, batch_id, checked, remapped)
        totals["batches"] += 1
        totals["rows_in"] += checked.rows_in
        totals["kept"] += checked.rows_kept
        totals["quarantined"] += checked.rows_quarantined
    return totals


def gold(ctx: Context) -> dict[str, Any]:
    """Silver opportunities joined with accounts, products and sales teams: one deal row per opportunity."""
    uc, lake = ctx.usecase, ctx.lake
    names = {"opportunities": uc.tables.silver, **{n: table_of(uc, n) for n in REFERENCE_KEYS}}
    versions = {role: lake.version(name) for role, name in names.items()}
    read = {role: lake.read(names[role], versions[role]) for role in names}
    deals = join_deals(read["opportunities"], read["accounts"], read["products"], read["sales_teams"])
    merged = lake.merge(
        uc.tables.gold, deals, keys=[OPPORTUNITY_KEY], inputs={names[r]: v for r, v in versions.items()}
    )
    return {"inserted": merged.inserted, "updated": merged.updated, "version": merged.version}
