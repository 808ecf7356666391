"""Delta tables addressed by logical name (``silver.fx_rates``), read into Ibis, written with delta-rs.

The lake is the only module that touches storage. Stage code receives Ibis tables and returns Ibis tables.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import ibis
import ibis.expr.types as ir
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions
from ibis.backends.sql.datatypes import DuckDBType

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(bronze|silver|gold|quarantine|ops)\.[a-z][a-z0-9_]*$")

Data: TypeAlias = ir.Table | pa.Table | pa.RecordBatchReader


INPUTS_KEY = "goldgate.inputs"
# Rows per Arrow batch when a table streams from DuckDB into delta-rs.
STREAM_ROWS = 131_072


def _copyable(dtype: Any) -> bool:
    """Types DuckDB's Parquet writer stores exactly as Delta expects them (timestamps: UTC-adjusted microseconds)."""
    if dtype.is_timestamp():
        return dtype.timezone == "UTC" and dtype.scale in (None, 6)
    return bool(
        dtype.is_boolean() or dtype.is_signed_integer() or dtype.is_floating() or dtype.is_string() or dtype.is_date()
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stream(table: ir.Table, chunk_size: int = STREAM_ROWS) -> pa.RecordBatchReader:
    """The expression's rows as Arrow batches that really have the schema the stream declares.

    Ibis' DuckDB stream declares Ibis' schema but passes DuckDB's batches through unchanged, and the two can
    differ (``date.month()`` is int32 to Ibis, BIGINT to DuckDB): a consumer reading the buffers with the declared
    type would read garbage. Batches whose schema differs are cast to the declared one.
    """
    reader = table.to_pyarrow_batches(chunk_size=chunk_size)
    schema = reader.schema
    return pa.RecordBatchReader.from_batches(schema, (b if b.schema == schema else b.cast(schema) for b in reader))


def _commit(inputs: dict[str, int | None] | None) -> CommitProperties | None:
    """Commit metadata naming the table versions a write was computed from (its lineage)."""
    return CommitProperties(custom_metadata={INPUTS_KEY: json.dumps(inputs, sort_keys=True)}) if inputs else None


class LakeError(RuntimeError):
    """A table that is missing, malformed or cannot be written."""


@dataclass(frozen=True)
class WriteResult:
    name: str
    version: int
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


def changed_rows(
    source: ir.Table, current: ir.Table, keys: list[str], ignore: tuple[str, ...] = ()
) -> tuple[ir.Table, bool]:
    """The rows of a merge source that are new or differ from ``current`` (lazy), and whether the schemas match.

    Columns in ``ignore`` do not count as a difference; with another schema every source row counts as changed.
    Shared by every lake implementation, so "nothing changed" means the same on every engine.
    """
    same_schema = list(source.columns) == list(current.columns) and all(
        source.schema()[c] == current.schema()[c] for c in current.columns
    )
    if not same_schema:
        return source, False
    compared = [c for c in source.columns if c not in ignore]
    delta = source.select(compared).difference(current.select(compared))
    return (source.semi_join(delta, keys) if ignore else delta), True


def check_name(name: str) -> str:
    """Validate a logical name: ``<layer>.<table>`` with layer in bronze/silver/gold/quarantine/ops."""
    if not _NAME.match(name):
        raise LakeError(f"invalid table name '{name}': expected <bronze|silver|gold|quarantine|ops>.<snake_case>")
    return name


class Lake:
    """Delta tables under ``root``; reads scan each snapshot's Parquet files with DuckDB (out of core)."""

    def __init__(self, root: Path, con: Any) -> None:
        self.root = root
        self.con = con
        self._views = 0

    def path(self, name: str) -> Path:
        layer, table = check_name(name).split(".", 1)
        return self.root / layer / table

    def _delta(self, name: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(str(self.path(name)), version=version)
        except TableNotFoundError:
            raise LakeError(f"table {name} does not exist yet (looked in {self.path(name)})") from None

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(str(self.path(name)))

    def version(self, name: str) -> int | None:
        """Current version, or None when the table does not exist."""
        return self._delta(name).version() if self.exists(name) else None

    def read(self, name: str, version: int | None = None) -> ir.Table:
        """The table (optionally as of ``version``) as a lazy Ibis expression.

        The snapshot's Parquet files are scanned by DuckDB's own reader (parallel, out of core). Files written
        by different delta-rs operations may carry ``string`` or ``string_view`` Arrow types for the same
        column; DuckDB reads both as VARCHAR, where an Arrow dataset scan would fail on filter pushdown.
        """
        delta = self._delta(name, version)
        self._views += 1
        view = f"{name.replace('.', '__')}__{self._views}"
        files = [uri.removeprefix("file://") for uri in delta.file_uris()]
        if not files:
            empty = pa.schema(delta.schema().to_arrow()).empty_table()
            return self.con.create_table(view, empty, temp=True)
        return self.con.read_parquet(files, table_name=view, union_by_name=True)

    def rows(self, name: str, version: int | None = None) -> int:
        """Row count of the snapshot (DuckDB answers it from the Parquet footers)."""
        return int(self.read(name, version).count().to_pyarrow().as_py())

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        return list(self._delta(name).history(limit))

    def inputs_of(self, name: str, version: int) -> dict[str, int]:
        """The table versions that version ``version`` of ``name`` was computed from (empty if not recorded)."""
        for entry in self._delta(name).history():
            if entry.get("version") == version:
                return {k: int(v) for k, v in json.loads(entry.get(INPUTS_KEY, "{}")).items() if v is not None}
        return {}

    def lineage(self, name: str, version: int) -> dict[str, int]:
        """``name@version`` and every upstream table version it was built from, following recorded inputs."""
        found = {name: version}
        pending = [(name, version)]
        while pending:
            table, ver = pending.pop()
            for upstream, up_ver in self.inputs_of(table, ver).items():
                if upstream not in found:
                    found[upstream] = up_ver
                    pending.append((upstream, up_ver))
        return found

    def tables(self) -> list[str]:
        """Logical names of every table in the lake."""
        if not self.root.exists():
            return []
        found = []
        for layer_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for table_dir in sorted(p for p in layer_dir.iterdir() if p.is_dir()):
                if (table_dir / "_delta_log").is_dir():
                    found.append(f"{layer_dir.name}.{table_dir.name}")
        return found

    def _to_arrow(self, data: Data) -> pa.Table:
        if isinstance(data, pa.Table):
            return data
        if isinstance(data, pa.RecordBatchReader):
            return data.read_all()
        return data.to_pyarrow()

    def write(
        self, name: str, data: Data, *, predicate: str | None = None, inputs: dict[str, int | None] | None = None
    ) -> WriteResult:
        """Overwrite the table (or, with ``predicate``, only the rows matching it: replace-where)."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        source = stream(data) if isinstance(data, ir.Table) else data
        if not self.exists(name):
            write_deltalake(str(path), source, mode="error", commit_properties=_commit(inputs))
        else:
            schema_mode: Literal["overwrite"] | None = "overwrite" if predicate is None else None
            write_deltalake(
                str(path),
                source,
                mode="overwrite",
                predicate=predicate,
                schema_mode=schema_mode,
                commit_properties=_commit(inputs),
            )
        version = self._delta(name).version()
        log.debug("wrote %s v%s", name, version)
        return WriteResult(name, version, inserted=self.rows(name))

    def append(self, name: str, data: Data, inputs: dict[str, int | None] | None = None) -> WriteResult:
        """Append rows (used for append-only logs such as ``ops.promotions``)."""
        table = self._to_arrow(data)
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if table.num_rows == 0 and self.exists(name):
            return WriteResult(name, self._delta(name).version())
        write_deltalake(str(path), table, mode="append", schema_mode="merge", commit_properties=_commit(inputs))
        return WriteResult(name, self._delta(name).version(), inserted=table.num_rows)

    def merge(
        self,
        name: str,
        data: Data,
        keys: list[str],
        *,
        ignore: tuple[str, ...] = (),
        inputs: dict[str, int | None] | None = None,
        delete_missing: bool = False,
    ) -> WriteResult:
        """Upsert by ``keys``: changed rows update, new rows insert, identical rows leave no new version.

        Columns in ``ignore`` (e.g. a ``computed_at`` stamp) do not make a row count as changed. With
        ``delete_missing`` the source is the whole table: rows whose key it no longer has are deleted (a derived
        table rebuilt from corrected inputs must not keep rows its inputs no longer produce).
        """
        if not keys:
            raise LakeError(f"merge into {name} needs at least one key column")
        source = data if isinstance(data, ir.Table) else ibis.memtable(self._to_arrow(data))
        if not self.exists(name):
            return self._create_unique(name, source, keys, inputs)
        deleted = self._delete_missing(name, source, keys, inputs) if delete_missing else 0
        changed, same_schema = changed_rows(source, self.read(name), keys, ignore)
        staged = changed.cache()
        if self._check_unique(name, staged, keys) == 0:
            return WriteResult(name, self._delta(name).version(), deleted=deleted)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        # Streamed: nothing else queries this DuckDB connection while delta-rs consumes the batches.
        batches = stream(staged)
        metrics = (
            self._delta(name)
            .merge(
                batches,
                predicate,
                source_alias="s",
                target_alias="t",
                merge_schema=not same_schema,
                commit_properties=_commit(inputs),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        return WriteResult(
            name,
            self._delta(name).version(),
            inserted=int(metrics.get("num_target_rows_inserted", 0)),
            updated=int(metrics.get("num_target_rows_updated", 0)),
            deleted=deleted,
        )

    def _delete_missing(
        self, name: str, source: ir.Table, keys: list[str], inputs: dict[str, int | None] | None
    ) -> int:
        """Delete the rows of ``name`` whose key ``source`` lacks; returns how many (no commit when none)."""
        current = self.read(name)
        gone = current.select(*keys).anti_join(source.select(*keys), keys).to_pyarrow()
        if gone.num_rows == 0:
            return 0
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        metrics = (
            self._delta(name)
            .merge(gone, predicate, source_alias="s", target_alias="t", commit_properties=_commit(inputs))
            .when_matched_delete()
            .execute()
        )
        log.info("%s: deleted %d rows no longer produced by its inputs", name, gone.num_rows)
        return int(metrics.get("num_target_rows_deleted", gone.num_rows))

    def _create_unique(
        self, name: str, source: ir.Table, keys: list[str], inputs: dict[str, int | None] | None
    ) -> WriteResult:
        """A new table: DuckDB writes the data files itself, the keys are checked on them, then delta-rs commits.

        DuckDB's own Parquet writer runs in parallel and out of core (the rows are never materialized nor passed
        through Python); each column is cast to the type Ibis declares, so the Delta schema is the expression's.
        The keys are checked on the written files (a 64-bit hash per key: as many distinct hashes as rows proves
        them unique, a collision can only lower that count; then the exact check decides). Version 0 then lists
        the files. A failed check removes them and commits nothing; a crash before the commit leaves files no
        version lists, so the table still does not exist either way. Columns of types ``_copyable`` does not
        list take the slower path: materialized by DuckDB, checked, streamed through delta-rs.
        """
        schema = source.schema()
        if not all(_copyable(dtype) for dtype in schema.types):
            staged = source.cache()
            rows = self._check_unique(name, staged, keys)
            return WriteResult(name, self.write(name, staged, inputs=inputs).version, inserted=rows)
        path = self.path(name)
        folder = path / f"part-{uuid.uuid4().hex}"  # a fresh folder: files of an interrupted attempt stay apart
        path.mkdir(parents=True, exist_ok=True)
        cols = ", ".join(f"CAST({_ident(c)} AS {DuckDBType.to_string(t)}) AS {_ident(c)}" for c, t in schema.items())
        view = f"_goldgate_new_{uuid.uuid4().hex}"
        self.con.create_view(view, source)  # also registers the expression's in-memory tables
        try:
            target = str(folder).replace("'", "''")
            query = f"SELECT {cols} FROM {_ident(view)}"  # noqa: S608 - quoted identifiers
            self.con.raw_sql(f"COPY ({query}) TO '{target}' (FORMAT parquet, PER_THREAD_OUTPUT true)")
        finally:
            self.con.drop_view(view, force=True)
        files = sorted(str(f) for f in folder.glob("*.parquet"))
        rows, distinct = self._key_counts(files, keys, exact=False)
        if distinct != rows:
            rows, distinct = self._key_counts(files, keys, exact=True)
        if distinct != rows:
            shutil.rmtree(folder)
            raise LakeError(
                f"merge into {name}: {rows - distinct} source rows share a key {keys}; a merge needs one row per key"
            )
        meta = self.con.con.execute("SELECT file_name, num_rows FROM parquet_file_metadata($f)", {"f": files})
        counts = dict(meta.fetchall()) if files else {}
        actions = [
            AddAction(
                path=str(Path(f).relative_to(path)),
                size=(stat := Path(f).stat()).st_size,
                partition_values={},
                modification_time=int(stat.st_mtime * 1000),
                data_change=True,
                stats=json.dumps({"numRecords": int(counts.get(f, 0))}),
            )
            for f in files
        ]
        create_table_with_add_actions(
            str(path),
            DeltaSchema.from_arrow(schema.to_pyarrow()),
            actions,
            mode="error",
            commit_properties=_commit(inputs),
        )
        return WriteResult(name, self._delta(name).version(), inserted=int(rows))

    def _key_counts(self, files: list[str], keys: list[str], *, exact: bool) -> tuple[int, int]:
        """Rows of the Parquet ``files`` and their distinct keys (``exact=False``: distinct 64-bit key hashes)."""
        if not files:
            return 0, 0
        cols = ", ".join(_ident(k) for k in keys)
        distinct = f"count(DISTINCT row({cols}))" if exact else f"count(DISTINCT hash({cols}))"  # NULL keys count
        query = f"SELECT count(*), {distinct} FROM read_parquet($f)"  # noqa: S608 - quoted identifiers
        found = self.con.con.execute(query, {"f": files}).fetchone()
        return int(found[0]), int(found[1])

    @staticmethod
    def _check_unique(name: str, staged: ir.Table, keys: list[str]) -> int:
        """Row count of a merge source, after checking that no two rows share a key."""
        rows = int(staged.count().to_pyarrow().as_py())
        distinct = staged.select(*keys).distinct().count().to_pyarrow().as_py()
        if int(distinct) != rows:
            raise LakeError(
                f"merge into {name}: {rows - int(distinct)} source rows share a key {keys}; "
                "a merge needs one row per key"
            )
        return rows
