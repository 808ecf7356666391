"""The lake on the spark engine: the same interface as ``Lake``, computed and stored by Spark.

Two storage formats, chosen by ``GOLDGATE_SPARK_TABLE_FORMAT``:

- ``parquet`` (default, runs anywhere Spark runs): every commit writes its new rows into a version folder and a
  small JSON log entry naming the Parquet files of the whole snapshot, its schema, row count, operation metrics
  and lineage (``goldgate.inputs``). Old files are never deleted, so every version stays readable (time travel).
- ``delta`` (Databricks, where the Delta jars are part of the runtime): Spark's own Delta tables, merged with
  ``MERGE INTO``. That class is not exercised by goldgate's test suite, which runs without the Delta jars.

Change detection (which source rows are new or differ, the one-row-per-key check) is shared with ``Lake`` through
``goldgate.lake.changed_rows`` and runs in Spark through Ibis.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq

from goldgate.lake import INPUTS_KEY, Data, Lake, LakeError, WriteResult, changed_rows, check_name
from goldgate.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

LOG_DIR = "_goldgate_log"
_VIEWS = itertools.count()


def open_spark_lake(settings: Settings) -> SparkLake:
    """The lake of ``settings`` on the process's SparkSession, in the configured table format."""
    from goldgate.engine import connect_spark, spark_session

    session = spark_session(settings)
    con = connect_spark(settings)
    if settings.spark_table_format == "delta":
        return SparkDeltaLake(settings.lake_dir, con, session, settings)
    return SparkLake(settings.lake_dir, con, session)


class SparkLake(Lake):
    """Versioned Parquet snapshots under ``root``, read and written by Spark, queried through Ibis on PySpark."""

    def __init__(self, root: Path, con: Any, session: SparkSession) -> None:
        super().__init__(root, con)
        self.session = session

    # ----------------------------------------------------------------------------------------------- the log
    def _log_dir(self, name: str) -> Path:
        return self.path(name) / LOG_DIR

    def _commits(self, name: str) -> list[dict[str, Any]]:
        """Every commit of ``name``, oldest first (empty when the table does not exist)."""
        if (self.path(name) / "_delta_log").is_dir():
            # Written by the duckdb engine: two formats in one folder would hide each other's versions.
            raise LakeError(
                f"table {name} in {self.path(name)} is a Delta table written by the duckdb engine; "
                "the spark engine keeps Parquet snapshots: use a separate workspace per engine"
            )
        folder = self._log_dir(name)
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def _commit(self, name: str, version: int | None = None) -> dict[str, Any]:
        commits = self._commits(name)
        if not commits:
            raise LakeError(f"table {name} does not exist yet (looked in {self.path(name)})")
        if version is None:
            return commits[-1]
        for commit in commits:
            if commit["version"] == version:
                return commit
        raise LakeError(f"table {name} has no version {version} (latest is {commits[-1]['version']})")

    def _record(
        self,
        name: str,
        version: int,
        operation: str,
        files: list[str],
        schema: StructType,
        inputs: dict[str, int | None] | None,
        metrics: dict[str, int],
    ) -> int:
        """Commit ``version`` (whose files were written for it); visible once its log file is linked in place.

        Linking fails when the version exists: another writer committed first, and this commit is refused.
        """
        rows = self._count_rows(name, files)
        entry: dict[str, Any] = {
            "version": version,
            "timestamp": int(time.time() * 1000),
            "operation": operation,
            "files": files,
            "schema": schema.json(),
            "num_rows": rows,
            "operationMetrics": metrics,
        }
        if inputs:
            entry[INPUTS_KEY] = json.dumps(inputs, sort_keys=True)
        folder = self._log_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{version:020d}.json"
        staging = folder / f".{version:020d}.json.{os.getpid()}.tmp"
        staging.write_text(json.dumps(entry, sort_keys=True))
        try:
            os.link(staging, final)  # fails if another writer committed this version first
        except FileExistsError:
            raise LakeError(f"{name}: version {version} was committed concurrently; retry the step") from None
        finally:
            staging.unlink()
        log.debug("committed %s v%s (%s, %d rows)", name, version, operation, rows)
        return version

    # -------------------------------------------------------------------------------------------- reading
    def exists(self, name: str) -> bool:
        return bool(self._commits(name))

    def version(self, name: str) -> int | None:
        """Current version, or None when the table does not exist."""
        commits = self._commits(name)
        return int(commits[-1]["version"]) if commits else None

    def _schema(self, commit: dict[str, Any]) -> StructType:
        from pyspark.sql.types import StructType

        return StructType.fromJson(json.loads(commit["schema"]))

    def _load_files(self, name: str, files: list[str], schema: StructType) -> DataFrame:
        """The snapshot made of ``files`` (relative to the table's folder), read with the snapshot's schema.

        Files written before a column was added lack it; with the snapshot's schema Spark reads it as NULL there.
        """
        if not files:
            return self.session.createDataFrame([], schema)
        base = self.path(name)
        return self.session.read.schema(schema).parquet(*(str(base / f) for f in files))

    def _count_rows(self, name: str, files: list[str]) -> int:
        """Rows in ``files``, from their Parquet footers (no Spark job)."""
        base = self.path(name)
        return sum(pq.ParquetFile(base / f).metadata.num_rows for f in files)

    def frame(self, name: str, version: int | None = None) -> DataFrame:
        """The table (optionally as of ``version``) as a Spark DataFrame."""
        commit = self._commit(name, version)
        return self._load_files(name, commit["files"], self._schema(commit))

    def read(self, name: str, version: int | None = None) -> ir.Table:
        """The table (optionally as of ``version``) as a lazy Ibis expression on the Spark session."""
        return self._register(self.frame(name, version), name)

    def rows(self, name: str, version: int | None = None) -> int:
        """Row count of the snapshot, from its commit (no Spark job)."""
        return int(self._commit(name, version)["num_rows"])

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first, shaped like Delta's history (``version``, ``timestamp``, ``operation``, ...)."""
        self._commit(name)  # raises for a missing table
        entries = [{k: v for k, v in c.items() if k not in ("files", "schema")} for c in reversed(self._commits(name))]
        return entries[:limit] if limit is not None else entries

    def inputs_of(self, name: str, version: int) -> dict[str, int]:
        """The table versions that version ``version`` of ``name`` was computed from (empty if not recorded)."""
        raw = self._commit(name, version).get(INPUTS_KEY, "{}")
        return {k: int(v) for k, v in json.loads(raw).items() if v is not None}

    def tables(self) -> list[str]:
        """Logical names of every table in the lake."""
        if not self.root.exists():
            return []
        found = []
        for layer_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for table_dir in sorted(p for p in layer_dir.iterdir() if p.is_dir()):
                if any((table_dir / LOG_DIR).glob("*.json")):
                    found.append(f"{layer_dir.name}.{table_dir.name}")
        return found

    # ------------------------------------------------------------------------------------- data conversion
    def _register(self, frame: DataFrame, hint: str) -> ir.Table:
        """A Spark DataFrame as an Ibis table (a temporary view with a unique name)."""
        view = f"{hint.replace('.', '__')}__{next(_VIEWS)}"
        frame.createOrReplaceTempView(view)
        return self.con.table(view)

    def to_frame(self, data: Data) -> DataFrame:
        """Arrow data, or an Ibis expression on this engine, as a Spark DataFrame."""
        if isinstance(data, ir.Table):
            view = f"goldgate_expr__{next(_VIEWS)}"
            self.con.create_view(view, data, overwrite=True)  # also registers the expression's in-memory tables
            return self.session.table(view)
        table = self._to_arrow(data)
        return self.session.createDataFrame(table, schema=_spark_schema(table.schema))

    def _to_ibis(self, data: Data, hint: str) -> ir.Table:
        """``data`` as an Ibis table over a Spark view: Ibis' ``cache()`` on PySpark does not register in-memory
        tables (``ibis.memtable``) an expression refers to, a view over the expression does."""
        return self._register(self.to_frame(data), hint)

    def _write_files(self, name: str, version: int, frame: DataFrame) -> list[str]:
        """Write ``frame`` into the version's folder; the Parquet files written, relative to the table's folder."""
        folder = self.path(name) / f"v{version:020d}"
        # A folder left by a write that crashed before its commit is not part of any snapshot: replace it.
        frame.write.mode("overwrite").parquet(str(folder))
        return sorted(str(p.relative_to(self.path(name))) for p in folder.glob("*.parquet"))

    def _current_version(self, name: str) -> int:
        """The version of a table that exists (raises otherwise)."""
        version = self.version(name)
        if version is None:
            raise LakeError(f"table {name} does not exist yet (looked in {self.path(name)})")
        return version

    def _next_version(self, name: str) -> int:
        current = self.version(name)
        return 0 if current is None else current + 1

    # -------------------------------------------------------------------------------------------- writing
    def write(
        self, name: str, data: Data, *, predicate: str | None = None, inputs: dict[str, int | None] | None = None
    ) -> WriteResult:
        """Overwrite the table (or, with ``predicate``, only the rows matching it: replace-where)."""
        check_name(name)
        frame = self.to_frame(data)
        if predicate is not None and self.exists(name):
            kept = self.frame(name).filter(f"NOT ({predicate})")
            frame = kept.unionByName(_cast_like(frame, kept.schema), allowMissingColumns=True)
        version = self._next_version(name)
        files = self._write_files(name, version, frame)
        self._record(name, version, "WRITE", files, frame.schema, inputs, {})
        return WriteResult(name, version, inserted=self.rows(name))

    def append(self, name: str, data: Data, inputs: dict[str, int | None] | None = None) -> WriteResult:
        """Append rows (used for append-only logs such as ``ops.promotions``); the schema grows with new columns."""
        check_name(name)
        frame = self.to_frame(data)
        if not self.exists(name):
            files = self._write_files(name, 0, frame)
            self._record(name, 0, "WRITE", files, frame.schema, inputs, {})
            return WriteResult(name, 0, inserted=self.rows(name))
        commit = self._commit(name)
        if frame.isEmpty():
            return WriteResult(name, int(commit["version"]))
        schema = _merged_schema(self._schema(commit), frame.schema)
        version = int(commit["version"]) + 1
        new_files = self._write_files(name, version, _cast_like(frame, schema))
        self._record(name, version, "APPEND", [*commit["files"], *new_files], schema, inputs, {})
        return WriteResult(name, version, inserted=self._count_rows(name, new_files))

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
        ``delete_missing`` the source is the whole table: rows whose key it no longer has are deleted first, in a
        commit of their own (as ``Lake.merge`` does).
        """
        if not keys:
            raise LakeError(f"merge into {name} needs at least one key column")
        check_name(name)
        source = self._to_ibis(data, "merge_source")
        if not self.exists(name):
            staged = source.cache()
            rows, _ = self._count_merge_source(name, self.to_frame(staged), keys, None)
            result = self.write(name, staged, inputs=inputs)
            return WriteResult(name, result.version, inserted=rows)
        deleted = self._delete_missing(name, source, keys, inputs) if delete_missing else 0
        changed, same_schema = changed_rows(source, self.read(name), keys, ignore)
        staged = changed.cache()
        rows, inserted = self._count_merge_source(name, self.to_frame(staged), keys, self.frame(name))
        if rows == 0:
            return WriteResult(name, self._current_version(name), deleted=deleted)
        version = self._apply_merge(name, staged, keys, same_schema, inputs, inserted, rows - inserted)
        return WriteResult(name, version, inserted=inserted, updated=rows - inserted, deleted=deleted)

    def _delete_missing(
        self, name: str, source: ir.Table, keys: list[str], inputs: dict[str, int | None] | None
    ) -> int:
        """Delete the rows of ``name`` whose key ``source`` lacks; returns how many (no commit when none).

        A row with a NULL key matches nothing in a MERGE, so it is never deleted (as on Delta).
        """
        current_keys = self.frame(name).select(*keys)
        source_keys = self.to_frame(source).select(*keys)
        gone = current_keys.join(source_keys, on=keys, how="left_anti").dropna(subset=keys).distinct()
        count = int(gone.count())
        if count:
            self._delete_rows(name, gone, keys, inputs, count)
            log.info("%s: deleted %d rows no longer produced by its inputs", name, count)
        return count

    def _delete_rows(
        self, name: str, gone: DataFrame, keys: list[str], inputs: dict[str, int | None] | None, count: int
    ) -> None:
        """Commit the snapshot without the rows whose key is in ``gone``."""
        current = self.frame(name)
        kept = current.join(gone, on=keys, how="left_anti").select(*current.columns)
        version = self._next_version(name)
        files = self._write_files(name, version, kept)
        self._record(name, version, "DELETE", files, current.schema, inputs, {"num_target_rows_deleted": count})

    @staticmethod
    def _count_merge_source(
        name: str, staged: DataFrame, keys: list[str], current: DataFrame | None
    ) -> tuple[int, int]:
        """Rows of a merge source and how many of them have a key the table lacks, after checking that no two rows
        share a key: one Spark job (each query costs a job's fixed latency, so the three counts share one).

        Keys match with ``=`` as in a MERGE: a NULL key never matches, so its row counts as inserted.
        """
        from pyspark.sql import functions as sf

        per_key = staged.groupBy(*keys).agg(sf.count(sf.lit(1)).alias("_gg_rows"))
        if current is None:
            new_rows = sf.sum("_gg_rows")
        else:
            known = current.select(*keys).distinct().withColumn("_gg_known", sf.lit(True))
            per_key = per_key.join(known, on=keys, how="left")
            new_rows = sf.sum(sf.when(sf.col("_gg_known").isNull(), sf.col("_gg_rows")).otherwise(0))
        counts = per_key.agg(sf.sum("_gg_rows"), sf.count(sf.lit(1)), new_rows).first()
        rows, distinct, inserted = (int(v or 0) for v in (counts or (0, 0, 0)))
        if distinct != rows:
            raise LakeError(
                f"merge into {name}: {rows - distinct} source rows share a key {keys}; a merge needs one row per key"
            )
        return rows, inserted

    def _apply_merge(
        self,
        name: str,
        staged: ir.Table,
        keys: list[str],
        same_schema: bool,
        inputs: dict[str, int | None] | None,
        inserted: int,
        updated: int,
    ) -> int:
        """Commit the merged snapshot: the table's rows whose key is not in ``staged``, plus ``staged``.

        Copy-on-write at table granularity: a merge rewrites the snapshot into a new version folder.
        """
        current = self.frame(name)
        changes = self.to_frame(staged)
        schema = _merged_schema(current.schema, changes.schema)
        kept = _cast_like(current.join(changes.select(*keys), on=keys, how="left_anti"), schema)
        snapshot = kept.unionByName(_cast_like(changes, schema), allowMissingColumns=True)
        version = self._next_version(name)
        files = self._write_files(name, version, snapshot.select(*schema.fieldNames()))
        metrics = {"num_target_rows_inserted": inserted, "num_target_rows_updated": updated}
        self._record(name, version, "MERGE", files, schema, inputs, metrics)
        return version


def _spark_schema(schema: pa.Schema) -> StructType:
    """The Spark schema of an Arrow schema (every column nullable, as in Delta tables written by goldgate)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.schema([f.with_nullable(True) for f in schema]))


def _merged_schema(current: StructType, incoming: StructType) -> StructType:
    """``current`` plus the columns only ``incoming`` has, appended in its order (schema evolution)."""
    from pyspark.sql.types import StructType

    known = set(current.fieldNames())
    return StructType([*current.fields, *(f for f in incoming.fields if f.name not in known)])


def _cast_like(frame: DataFrame, schema: StructType) -> DataFrame:
    """``frame`` with its columns cast to the types ``schema`` gives them (columns it lacks stay absent)."""
    from pyspark.sql import functions as sf

    types = {f.name: f.dataType for f in schema.fields}
    return frame.select(
        *(
            sf.col(f"`{f.name}`").cast(types[f.name]).alias(f.name)
            if f.name in types and f.dataType != types[f.name]
            else sf.col(f"`{f.name}`")
            for f in frame.schema.fields
        )
    )


class SparkDeltaLake(SparkLake):
    """Spark's own Delta tables in Unity Catalog (Databricks, where the Delta jars ship with the runtime).

    A logical name ``<layer>.<table>`` is the managed table ``<uc_catalog>.<uc_schema>_<layer>.<table>``
    (``goldgate.catalog_names``). Time travel is Delta's ``versionAsOf``, history is ``DESCRIBE HISTORY``, and the
    lineage goes into each commit's ``userMetadata``.

    Not exercised by goldgate's test suite: the Delta jars cannot be loaded where it runs.
    """

    def __init__(self, root: Path, con: Any, session: SparkSession, settings: Settings) -> None:
        super().__init__(root, con, session)
        self.settings = settings

    def address(self, name: str) -> str:
        """The table's three-level Unity Catalog name."""
        from goldgate.catalog_names import table_address

        return table_address(check_name(name), self.settings)

    def exists(self, name: str) -> bool:
        return bool(self.session.catalog.tableExists(self.address(name)))

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        return int(self.session.sql(f"DESCRIBE HISTORY {self.address(name)} LIMIT 1").collect()[0]["version"])

    def frame(self, name: str, version: int | None = None) -> DataFrame:
        if not self.exists(name):
            raise LakeError(f"table {name} does not exist yet ({self.address(name)})")
        reader = self.session.read
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.table(self.address(name))

    def rows(self, name: str, version: int | None = None) -> int:
        return int(self.frame(name, version).count())

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        query = f"DESCRIBE HISTORY {self.address(name)}" + (f" LIMIT {int(limit)}" if limit else "")
        entries = []
        for row in self.session.sql(query).collect():
            entry = row.asDict(recursive=True)
            if entry.get("userMetadata"):
                entry[INPUTS_KEY] = entry["userMetadata"]
            entries.append(entry)
        return entries

    def inputs_of(self, name: str, version: int) -> dict[str, int]:
        for entry in self.history(name):
            if entry.get("version") == version:
                return {k: int(v) for k, v in json.loads(entry.get(INPUTS_KEY) or "{}").items() if v is not None}
        return {}

    def tables(self) -> list[str]:
        from goldgate.catalog_names import schema_name

        found = []
        for layer in ("bronze", "silver", "gold", "quarantine", "ops"):
            schema = f"{self.settings.uc_catalog}.{schema_name(layer, self.settings)}"
            if self.session.catalog.databaseExists(schema):
                found += [f"{layer}.{t.name}" for t in self.session.catalog.listTables(schema)]
        return sorted(found)

    def _save(self, name: str, frame: DataFrame, mode: str, options: dict[str, str]) -> int:
        writer = frame.write.format("delta").mode(mode)
        for key, value in options.items():
            writer = writer.option(key, value)
        writer.saveAsTable(self.address(name))
        return self._current_version(name)

    def write(
        self, name: str, data: Data, *, predicate: str | None = None, inputs: dict[str, int | None] | None = None
    ) -> WriteResult:
        options = _metadata_options(inputs)
        if predicate is not None and self.exists(name):
            options["replaceWhere"] = predicate
        else:
            options["overwriteSchema"] = "true"
        version = self._save(name, self.to_frame(data), "overwrite", options)
        return WriteResult(name, version, inserted=self.rows(name))

    def append(self, name: str, data: Data, inputs: dict[str, int | None] | None = None) -> WriteResult:
        frame = self.to_frame(data)
        if self.exists(name) and frame.isEmpty():
            return WriteResult(name, self._current_version(name))
        version = self._save(name, frame, "append", {**_metadata_options(inputs), "mergeSchema": "true"})
        return WriteResult(name, version, inserted=int(frame.count()))

    def _delete_rows(
        self, name: str, gone: DataFrame, keys: list[str], inputs: dict[str, int | None] | None, count: int
    ) -> None:
        view = f"goldgate_delete__{next(_VIEWS)}"
        gone.createOrReplaceTempView(view)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        with self._commit_metadata(inputs):
            self.session.sql(f"MERGE INTO {self.address(name)} t USING {view} s ON {on} WHEN MATCHED THEN DELETE")

    @contextmanager
    def _commit_metadata(self, inputs: dict[str, int | None] | None) -> Iterator[None]:
        """Lineage in the ``userMetadata`` of the SQL commits made inside the block."""
        key = "spark.databricks.delta.commitInfo.userMetadata"
        self.session.conf.set(key, json.dumps(inputs or {}, sort_keys=True))
        try:
            yield
        finally:
            self.session.conf.unset(key)

    def _apply_merge(
        self,
        name: str,
        staged: ir.Table,
        keys: list[str],
        same_schema: bool,
        inputs: dict[str, int | None] | None,
        inserted: int,
        updated: int,
    ) -> int:
        view = f"goldgate_merge__{next(_VIEWS)}"
        self.to_frame(staged).createOrReplaceTempView(view)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        evolution = "" if same_schema else " WITH SCHEMA EVOLUTION"
        with self._commit_metadata(inputs):
            self.session.sql(
                f"MERGE{evolution} INTO {self.address(name)} t USING {view} s ON {on} "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            )
        return self._current_version(name)


def _metadata_options(inputs: dict[str, int | None] | None) -> dict[str, str]:
    return {"userMetadata": json.dumps(inputs, sort_keys=True)} if inputs else {}
