"""gold: silver rows with the feature table's key columns and the use case's derived columns."""

from __future__ import annotations

import itertools
from typing import Any

import ibis
import ibis.expr.types as ir

from goldgate.context import Context
from goldgate.sql_dialect import run_duckdb_sql
from goldgate.usecase import UseCase
from goldgate.usecase_defaults import AS_OF, ROW_ID, SERIES

_ALIASES = itertools.count()
KEY_SEPARATOR = "|"


def with_keys(silver: ir.Table, uc: UseCase) -> ir.Table:
    """Add the stand-in key columns the data lacks: one series, a composite entity, a row id, an as-of date."""
    cols: dict[str, ir.Value] = {}
    entities = uc.entity_columns
    if uc.entity == SERIES and not entities:
        cols[SERIES] = ibis.literal(uc.name)
    elif uc.entity == ROW_ID and not entities:
        # Unique across batches and files: the batch, the file's name and its line.
        name = silver._file.cast("string").re_extract(r"([^/\\]+)$", 1)
        cols[ROW_ID] = silver._batch_id.substr(0, 8).concat(":", name, ":", silver._row_number.cast("string"))
    elif len(entities) > 1:
        parts = [silver[c].cast("string").fill_null("") for c in entities]
        cols[uc.entity] = ibis.literal(KEY_SEPARATOR).join(parts)
    if uc.time == AS_OF and uc.time_column is None:
        cols[AS_OF] = silver._ingested_at.cast("date")
    return silver.mutate(**cols) if cols else silver


def with_derived(table: ir.Table, derive: dict[str, str]) -> ir.Table:
    """Derived columns as SQL expressions (DuckDB SQL, transpiled on other engines), in declaration order."""
    if not derive:
        return table
    alias = f"__gold_{next(_ALIASES)}"
    exprs = ", ".join(f'({sql}) AS "{name}"' for name, sql in derive.items())
    return run_duckdb_sql(table.alias(alias), f"SELECT *, {exprs} FROM {alias}")  # noqa: S608 - the use case's SQL


def where(table: ir.Table, condition: str | None) -> ir.Table:
    """Rows where the SQL condition holds (all rows without one)."""
    if condition is None:
        return table
    alias = f"__gold_{next(_ALIASES)}"
    return run_duckdb_sql(table.alias(alias), f"SELECT * FROM {alias} WHERE {condition}")  # noqa: S608 - use case's SQL


def build_gold(silver: ir.Table, uc: UseCase) -> ir.Table:
    """The gold table of a file use case (metadata columns dropped)."""
    table = where(with_derived(with_keys(silver, uc), uc.gold.derive), uc.gold.where)
    return table.drop(*[c for c in table.columns if c.startswith("_")])


def gold(ctx: Context) -> dict[str, Any]:
    """Silver -> gold, rebuilt whole and merged on the feature table's keys (rows silver no longer has go)."""
    uc, lake = ctx.usecase, ctx.lake
    version = lake.version(uc.tables.silver)
    table = build_gold(lake.read(uc.tables.silver, version), uc)
    merged = lake.merge(
        uc.tables.gold, table, keys=[uc.entity, uc.time], inputs={uc.tables.silver: version}, delete_missing=True
    )
    return {"inserted": merged.inserted, "updated": merged.updated, "version": merged.version}
