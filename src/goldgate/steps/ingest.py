"""ingest: the use case's file(s) -> bronze, as received (every cell as text), plus ingestion metadata.

A ``tables`` source is a folder: its main file goes to the use case's bronze table and every related file to
its own bronze table; each file is a batch of its own.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goldgate.context import Context
from goldgate.data.bronze import add_ingest_metadata, require_columns
from goldgate.steps.batches import batch_ingested, record_schema_changes
from goldgate.usecase import Source, UseCase

log = logging.getLogger(__name__)


class TablesSourceError(ValueError):
    """A ``tables`` source whose folder is missing."""


def file_source(source: Source, path: Path) -> Source:
    """The reading options of a ``tables`` source, pointed at one of its files."""
    return source.model_copy(update={"kind": "file", "path": str(path), "package": None, "unpivot": None})


def tables_folder(uc: UseCase, override: str | None, workspace: Path) -> Path:
    """The folder of a ``tables`` source: ``--source``, else ``source.path``, else the generated demo export."""
    chosen = override or uc.source.path
    if chosen:
        return Path(chosen).expanduser()
    if uc.source.demo == "crm":
        from goldgate.sources.crm_synthetic import demo_export  # the generator is only needed for the demo

        return demo_export(workspace, rows=uc.source.demo_rows, seed=uc.source.demo_seed)
    raise TablesSourceError("source: a tables source needs its folder (source.path or --source)")


def table_sources(uc: UseCase, override: str | None, workspace: Path) -> list[tuple[str, Source]]:
    """(bronze table, source of one file) for every file the use case reads; the main file last."""
    if uc.source.kind != "tables":
        return [(uc.tables.bronze, uc.source)]
    folder = tables_folder(uc, override, workspace)
    if not folder.is_dir():
        raise TablesSourceError(
            f"{folder}: not a folder (a tables source reads {uc.source.main} and its related files)"
        )
    related = [(uc.related_tables(n)[0], file_source(uc.source, folder / t.file)) for n, t in uc.source.tables.items()]
    return [*related, (uc.tables.bronze, file_source(uc.source, folder / str(uc.source.main)))]


def ingest_file(ctx: Context, bronze: str, source: Source, override: str | None) -> dict[str, Any]:
    """One file (or glob or folder of one table) into its bronze table, unless that batch is already there."""
    from goldgate.data.sources import read_source

    lake = ctx.lake
    batch = read_source(source, override)
    require_columns(batch.table.column_names, source.required, batch.source)
    result: dict[str, Any] = {
        "batch_id": batch.batch_id,
        "rows": batch.table.num_rows,
        "source": batch.source,
        "skipped_lines": dict(batch.skipped),
    }
    if batch.table.num_rows == 0:
        log.warning("%s has no data rows: nothing ingested", batch.source)
        return {**result, "new": False}
    if lake.exists(bronze):
        if batch_ingested(lake, bronze, batch.batch_id, batch.source):
            return {**result, "new": False}
        result["schema_changes"] = record_schema_changes(
            lake, bronze, batch.table.column_names, batch.batch_id, batch.source
        )
    lake.append(bronze, add_ingest_metadata(batch.table, batch.source, batch.batch_id, datetime.now(UTC)))
    log.info("ingested %d rows from %s into %s", batch.table.num_rows, batch.source, bronze)
    return {**result, "new": True}


def ingest(ctx: Context) -> dict[str, Any]:
    """Read the source and append it to bronze; a batch already ingested (same content and options) is skipped.

    New source columns widen bronze and are logged in ``ops.schema_changes``; a missing required column stops the
    step before anything is written. Lines that are not rows (comments, blank lines, a preamble) are counted.
    """
    uc = ctx.usecase
    if uc.source.kind != "tables":
        return ingest_file(ctx, uc.tables.bronze, uc.source, ctx.source)
    results = {
        bronze: ingest_file(ctx, bronze, source, None)
        for bronze, source in table_sources(uc, ctx.source, ctx.settings.workspace_dir)
    }
    main = results[uc.tables.bronze]
    return {**main, "related": {k: v for k, v in results.items() if k != uc.tables.bronze}}
