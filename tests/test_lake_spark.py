"""The spark engine's lake: every contract test of ``Lake`` (imported from test_lake) on versioned Parquet
snapshots written by Spark, plus what is particular to the snapshot log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest

from goldgate.lake import INPUTS_KEY, LakeError
from goldgate.lake_spark import LOG_DIR, SparkLake

# The contract tests of the DuckDB lake, collected again here with this module's ``lake`` fixture.
from test_lake import (  # noqa: F401
    kv,
    rows,
    test_a_changed_row_carries_its_ignored_columns_along,
    test_append_adds_rows_and_evolves_the_schema,
    test_appending_nothing_leaves_no_new_version,
    test_duplicate_keys_in_the_source_raise,
    test_ignored_columns_do_not_count_as_changes,
    test_invalid_logical_names_raise,
    test_merge_creates_a_missing_table,
    test_merge_inserts_new_keys_and_updates_changed_rows,
    test_merge_needs_keys,
    test_merge_of_identical_rows_leaves_no_new_version,
    test_merge_on_a_composite_key,
    test_merge_with_a_new_column_evolves_the_schema,
    test_merge_with_delete_missing_drops_rows_the_source_no_longer_has,
    test_merge_with_nulls_in_unchanged_rows_leaves_no_new_version,
    test_missing_table,
    test_overwrite_makes_a_new_version_and_time_travel_reads_the_old_rows,
    test_replace_where_only_touches_matching_rows,
    test_tables_lists_logical_names,
    test_valid_logical_names_pass,
    test_write_accepts_an_ibis_expression,
    test_write_read_round_trip,
)


@pytest.fixture
def lake(tmp_path: Path, spark: Any) -> SparkLake:
    return SparkLake(tmp_path / "lake", ibis.pyspark.connect(spark), spark)


def test_a_table_is_a_log_of_snapshots_over_parquet_files(lake: SparkLake) -> None:
    lake.write("silver.t", kv([1, 2], ["a", "b"]))
    lake.append("silver.t", kv([3], ["c"]))
    log = sorted((lake.path("silver.t") / LOG_DIR).glob("*.json"))
    assert [p.name for p in log] == [f"{0:020d}.json", f"{1:020d}.json"]
    first, second = (json.loads(p.read_text()) for p in log)
    assert (first["operation"], first["num_rows"]) == ("WRITE", 2)
    # An append keeps the earlier files and adds its own: nothing is copied.
    assert (second["operation"], second["num_rows"]) == ("APPEND", 3)
    assert second["files"][: len(first["files"])] == first["files"]
    assert all((lake.path("silver.t") / f).is_file() for f in second["files"])


def test_time_travel_reads_every_version(lake: SparkLake) -> None:
    lake.write("silver.t", kv([1], ["a"]))
    lake.append("silver.t", kv([2], ["b"]))
    lake.merge("silver.t", kv([1, 3], ["A", "c"]), keys=["k"])
    assert rows(lake, "silver.t", version=0) == [{"k": 1, "v": "a"}]
    assert rows(lake, "silver.t", version=1) == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]
    assert rows(lake, "silver.t") == [{"k": 1, "v": "A"}, {"k": 2, "v": "b"}, {"k": 3, "v": "c"}]
    assert [lake.rows("silver.t", v) for v in (0, 1, 2)] == [1, 2, 3]
    with pytest.raises(LakeError, match="no version 7"):
        lake.read("silver.t", version=7)


def test_merge_metrics_and_lineage_are_in_the_commit(lake: SparkLake) -> None:
    lake.write("silver.src", kv([1], ["a"]))
    lake.merge("gold.t", kv([1, 2], ["a", "b"]), keys=["k"], inputs={"silver.src": 0})
    result = lake.merge("gold.t", kv([2, 3], ["B", "c"]), keys=["k"], inputs={"silver.src": 0})
    assert (result.inserted, result.updated, result.version) == (1, 1, 1)
    newest = lake.history("gold.t")[0]
    assert newest["operation"] == "MERGE"
    assert newest["operationMetrics"] == {"num_target_rows_inserted": 1, "num_target_rows_updated": 1}
    assert json.loads(newest[INPUTS_KEY]) == {"silver.src": 0}
    assert lake.inputs_of("gold.t", 1) == {"silver.src": 0}
    assert lake.lineage("gold.t", 1) == {"gold.t": 1, "silver.src": 0}
    assert len(lake.history("gold.t", limit=1)) == 1


def test_a_folder_left_by_a_crashed_write_is_not_part_of_the_table(lake: SparkLake) -> None:
    lake.write("silver.t", kv([1], ["a"]))
    # A write that died after its files and before its commit: the next version's folder holds stray rows.
    orphan = lake.path("silver.t") / f"v{1:020d}"
    lake.write("silver.other", kv([9], ["zzz"]))
    (lake.path("silver.other") / f"v{0:020d}").rename(orphan)
    assert rows(lake, "silver.t") == [{"k": 1, "v": "a"}]
    lake.append("silver.t", kv([2], ["b"]))  # version 1 replaces the orphan folder
    assert rows(lake, "silver.t") == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]


def test_a_version_committed_twice_is_refused(lake: SparkLake, monkeypatch: pytest.MonkeyPatch) -> None:
    lake.write("silver.t", kv([1], ["a"]))
    log_dir = lake.path("silver.t") / LOG_DIR
    first = (log_dir / f"{0:020d}.json").read_text()
    # This writer chose version 1; another writer commits version 1 before it does.
    monkeypatch.setattr(lake, "_next_version", lambda name: 1)
    (log_dir / f"{1:020d}.json").write_text(first.replace('"version": 0', '"version": 1'))
    with pytest.raises(LakeError, match="committed concurrently"):
        lake.write("silver.t", kv([2], ["b"]))
    assert sorted(p.name for p in log_dir.iterdir()) == [f"{0:020d}.json", f"{1:020d}.json"]  # no staging left


def test_an_empty_first_write_keeps_its_schema(lake: SparkLake) -> None:
    lake.write("quarantine.q", pa.table({"k": pa.array([], pa.int64()), "v": pa.array([], pa.string())}))
    assert lake.exists("quarantine.q")
    assert lake.rows("quarantine.q") == 0
    assert dict(lake.read("quarantine.q").schema()) == {"k": ibis.dtype("int64"), "v": ibis.dtype("string")}


def test_a_workspace_of_the_duckdb_engine_is_refused(lake: SparkLake) -> None:
    (lake.path("silver.t") / "_delta_log").mkdir(parents=True)
    with pytest.raises(LakeError, match="separate workspace per engine"):
        lake.exists("silver.t")
    with pytest.raises(LakeError, match="separate workspace per engine"):
        lake.write("silver.t", kv([1], ["a"]))
