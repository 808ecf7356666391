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


def with_joins(table: ir.Table, related: dict[str, ir.Table], uc: UseCase) -> ir.Table:
    """Each declared join's columns from its related silver table (left join: a row without a match keeps NULLs;
    silver's ``<table>_known`` expectation counted or quarantined it)."""
    for join in uc.gold.joins:
        ((column, key),) = join.on.items()
        other = related[join.table]
        wanted = uc.gold_join_columns(join)
        names = {f"{join.prefix}{c}": c for c in wanted}
        clash = sorted(set(names) & set(table.columns))
        if clash:
            raise ValueError(f"gold.joins {join.table}: columns {clash} already exist; set a prefix")
        right = other.select(_gg_key=other[key], **{new: other[old] for new, old in names.items()})
        joined = table.left_join(right, table[column] == right._gg_key)
        table = joined.mutate(**{join.known: joined._gg_key.notnull()}) if join.known else joined
        table = table.drop("_gg_key")
    return table


def build_gold(silver: ir.Table, uc: UseCase, related: dict[str, ir.Table] | None = None) -> ir.Table:
    """The gold table of a file use case (metadata columns dropped)."""
    table = with_joins(with_keys(silver, uc), related or {}, uc)
    table = where(with_derived(table, uc.gold.derive), uc.gold.where)
    return table.drop(*[c for c in table.columns if c.startswith("_")])


def gold(ctx: Context) -> dict[str, Any]:
    """Silver -> gold, rebuilt whole and merged on the feature table's keys (rows silver no longer has go)."""
    uc, lake = ctx.usecase, ctx.lake
    version = lake.version(uc.tables.silver)
    inputs: dict[str, int | None] = {uc.tables.silver: version}
    related = {}
    for join in uc.gold.joins:
        name = uc.related_tables(join.table)[1]
        inputs[name] = lake.version(name)
        related[join.table] = lake.read(name, inputs[name])
    table = build_gold(lake.read(uc.tables.silver, version), uc, related)
    merged = lake.merge(uc.tables.gold, table, keys=uc.gold_keys, inputs=inputs, delete_missing=True)
    return {"inserted": merged.inserted, "updated": merged.updated, "version": merged.version}
