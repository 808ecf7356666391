"""The lake: Delta tables by logical name; writes, merges that leave no version when nothing changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest

from goldgate.lake import Lake, LakeError, check_name


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake", ibis.duckdb.connect())


def rows(lake: Lake, name: str, version: int | None = None) -> list[dict[str, Any]]:
    """The table's rows as dicts, sorted by every column for order-free comparison."""
    table = lake.read(name, version).to_pyarrow()
    return sorted(table.to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))


def kv(keys: list[int], values: list[str], **extra: list[Any]) -> pa.Table:
    return pa.table({"k": pa.array(keys, pa.int64()), "v": values, **extra})


def test_write_read_round_trip(lake: Lake) -> None:
    result = lake.write("silver.t", kv([2, 1], ["b", "a"]))
    assert (result.version, result.inserted) == (0, 2)
    assert rows(lake, "silver.t") == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]
    assert lake.exists("silver.t")
    assert lake.version("silver.t") == 0
    assert lake.rows("silver.t") == 2


def test_write_accepts_an_ibis_expression(lake: Lake) -> None:
    lake.write("gold.t", ibis.memtable({"k": [1, 2, 3], "v": ["a", "b", "c"]}).filter(ibis._.k > 1))
    assert [r["k"] for r in rows(lake, "gold.t")] == [2, 3]


def test_overwrite_makes_a_new_version_and_time_travel_reads_the_old_rows(lake: Lake) -> None:
    lake.write("silver.t", kv([1, 2], ["a", "b"]))
    result = lake.write("silver.t", kv([3], ["c"]))
    assert result.version == 1
    assert rows(lake, "silver.t") == [{"k": 3, "v": "c"}]
    assert rows(lake, "silver.t", version=0) == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]
    assert lake.rows("silver.t", version=0) == 2
    assert len(lake.history("silver.t")) == 2


def test_replace_where_only_touches_matching_rows(lake: Lake) -> None:
    lake.write("silver.t", kv([1, 2], ["a", "b"]))
    lake.write("silver.t", kv([2], ["B"]), predicate="k = 2")
    assert rows(lake, "silver.t") == [{"k": 1, "v": "a"}, {"k": 2, "v": "B"}]


def test_merge_creates_a_missing_table(lake: Lake) -> None:
    result = lake.merge("gold.t", kv([1, 2], ["a", "b"]), keys=["k"])
    assert (result.version, result.inserted, result.updated) == (0, 2, 0)
    assert rows(lake, "gold.t") == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]


def test_merge_inserts_new_keys_and_updates_changed_rows(lake: Lake) -> None:
    lake.write("silver.t", kv([1, 2, 3], ["a", "b", "c"]))
    result = lake.merge("silver.t", kv([1, 2, 4], ["a", "B", "d"]), keys=["k"])
    assert (result.inserted, result.updated, result.version) == (1, 1, 1)
    assert result.changed
    assert rows(lake, "silver.t") == [
        {"k": 1, "v": "a"},
        {"k": 2, "v": "B"},
        {"k": 3, "v": "c"},
        {"k": 4, "v": "d"},
    ]
    assert rows(lake, "silver.t", version=0) == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}, {"k": 3, "v": "c"}]


@pytest.mark.parametrize("as_ibis", [False, True], ids=["arrow", "ibis"])
def test_merge_of_identical_rows_leaves_no_new_version(lake: Lake, as_ibis: bool) -> None:
    lake.write("silver.t", kv([1, 2, 3], ["a", "b", "c"]))
    source: Any = kv([3, 1], ["c", "a"])  # a subset, in another order: nothing changes
    if as_ibis:
        source = ibis.memtable(source)
    result = lake.merge("silver.t", source, keys=["k"])
    assert not result.changed
    assert result.version == 0
    assert lake.version("silver.t") == 0
    assert len(lake.history("silver.t")) == 1


def test_merge_with_nulls_in_unchanged_rows_leaves_no_new_version(lake: Lake) -> None:
    table = pa.table({"k": pa.array([1, 2], pa.int64()), "x": pa.array([None, 1.5], pa.float64())})
    lake.write("silver.t", table)
    assert not lake.merge("silver.t", table, keys=["k"]).changed
    assert lake.version("silver.t") == 0


def test_ignored_columns_do_not_count_as_changes(lake: Lake) -> None:
    lake.write("ops.t", kv([1, 2], ["a", "b"], stamp=["t0", "t0"]))
    same_but_restamped = kv([1, 2], ["a", "b"], stamp=["t1", "t1"])
    assert not lake.merge("ops.t", same_but_restamped, keys=["k"], ignore=("stamp",)).changed
    assert lake.version("ops.t") == 0
    # The same source without ``ignore`` is a change: the check above is not vacuous.
    assert lake.merge("ops.t", same_but_restamped, keys=["k"]).updated == 2


def test_a_changed_row_carries_its_ignored_columns_along(lake: Lake) -> None:
    lake.write("ops.t", kv([1, 2], ["a", "b"], stamp=["t0", "t0"]))
    result = lake.merge("ops.t", kv([1, 2], ["a", "B"], stamp=["t1", "t1"]), keys=["k"], ignore=("stamp",))
    assert (result.updated, result.inserted) == (1, 0)
    assert rows(lake, "ops.t") == [{"k": 1, "v": "a", "stamp": "t0"}, {"k": 2, "v": "B", "stamp": "t1"}]


def test_merge_with_a_new_column_evolves_the_schema(lake: Lake) -> None:
    lake.write("silver.t", kv([1, 2], ["a", "b"]))
    lake.merge("silver.t", kv([2, 3], ["b", "c"], w=[2.0, 3.0]), keys=["k"])
    assert rows(lake, "silver.t") == [
        {"k": 1, "v": "a", "w": None},
        {"k": 2, "v": "b", "w": 2.0},
        {"k": 3, "v": "c", "w": 3.0},
    ]


def test_merge_on_a_composite_key(lake: Lake) -> None:
    lake.write("silver.t", pa.table({"d": ["x", "x"], "c": ["A", "B"], "r": [1.0, 2.0]}))
    result = lake.merge("silver.t", pa.table({"d": ["x", "y"], "c": ["B", "B"], "r": [2.5, 3.0]}), ["d", "c"])
    assert (result.inserted, result.updated) == (1, 1)
    assert lake.rows("silver.t") == 3


@pytest.mark.parametrize("table_exists", [False, True])
def test_duplicate_keys_in_the_source_raise(lake: Lake, table_exists: bool) -> None:
    if table_exists:
        lake.write("silver.t", kv([1], ["a"]))
    with pytest.raises(LakeError, match="share a key"):
        lake.merge("silver.t", kv([2, 2], ["x", "y"]), keys=["k"])
    assert lake.version("silver.t") == (0 if table_exists else None)


def test_merge_needs_keys(lake: Lake) -> None:
    with pytest.raises(LakeError, match="at least one key"):
        lake.merge("silver.t", kv([1], ["a"]), keys=[])


@pytest.mark.parametrize(
    "name", ["fx_rates", "platinum.fx", "silver.FX", "silver.1fx", "silver.fx-rates", "silver.", "silver.a.b"]
)
def test_invalid_logical_names_raise(lake: Lake, name: str) -> None:
    with pytest.raises(LakeError, match="invalid table name"):
        check_name(name)
    with pytest.raises(LakeError, match="invalid table name"):
        lake.write(name, kv([1], ["a"]))


@pytest.mark.parametrize("name", ["bronze.raw", "silver.fx_rates", "gold.f2", "quarantine.q", "ops.drift"])
def test_valid_logical_names_pass(lake: Lake, name: str) -> None:
    assert check_name(name) == name
    layer, table = name.split(".")
    assert lake.path(name) == lake.root / layer / table


def test_missing_table(lake: Lake) -> None:
    assert not lake.exists("gold.nothing")
    assert lake.version("gold.nothing") is None
    with pytest.raises(LakeError, match="does not exist"):
        lake.read("gold.nothing")


def test_append_adds_rows_and_evolves_the_schema(lake: Lake) -> None:
    first = lake.append("ops.log", kv([1], ["a"]))
    second = lake.append("ops.log", kv([2], ["b"], extra=["x"]))
    assert (first.version, first.inserted) == (0, 1)
    assert (second.version, second.inserted) == (1, 1)
    assert rows(lake, "ops.log") == [{"k": 1, "v": "a", "extra": None}, {"k": 2, "v": "b", "extra": "x"}]


def test_appending_nothing_leaves_no_new_version(lake: Lake) -> None:
    lake.append("ops.log", kv([1], ["a"]))
    result = lake.append("ops.log", kv([], []))
    assert not result.changed
    assert lake.version("ops.log") == 0


def test_tables_lists_logical_names(lake: Lake) -> None:
    assert lake.tables() == []
    for name in ["silver.b", "gold.a", "ops.c", "silver.a"]:
        lake.write(name, kv([1], ["a"]))
    (lake.root / "gold" / "not_a_table").mkdir()
    assert lake.tables() == ["gold.a", "ops.c", "silver.a", "silver.b"]


def test_merge_with_delete_missing_drops_rows_the_source_no_longer_has(lake: Lake) -> None:
    lake.merge("gold.t", pa.table({"k": [1, 2, 3], "v": [1.0, 2.0, 3.0]}), keys=["k"])
    before = lake.version("gold.t")
    kept = lake.merge("gold.t", pa.table({"k": [1, 2, 3], "v": [1.0, 2.0, 3.0]}), keys=["k"], delete_missing=True)
    assert kept.version == before  # nothing missing, nothing changed: no commit
    assert not kept.changed
    result = lake.merge("gold.t", pa.table({"k": [1, 3], "v": [1.0, 30.0]}), keys=["k"], delete_missing=True)
    assert (result.deleted, result.updated, result.inserted) == (1, 1, 0)
    rows = sorted(lake.read("gold.t").to_pyarrow().to_pylist(), key=lambda r: r["k"])
    assert rows == [{"k": 1, "v": 1.0}, {"k": 3, "v": 30.0}]
    # Without the flag, a merge never deletes.
    lake.merge("gold.t", pa.table({"k": [1], "v": [1.0]}), keys=["k"])
    assert lake.rows("gold.t") == 2


@pytest.mark.parametrize("how", ["merge", "write"])
def test_streamed_expressions_keep_their_values_when_duckdb_types_differ_from_ibis(lake: Lake, how: str) -> None:
    # Ibis types date.month() as int32, DuckDB computes a BIGINT: the stream must not reinterpret the buffers.
    days = pa.table(
        {"k": pa.array(range(300), pa.int64()), "d": pa.array([f"2024-{m:02d}-15" for m in range(1, 13)] * 25)}
    )
    expr = lake.con.create_table("days", days).mutate(month=ibis._.d.cast("date").month())
    (lake.merge("gold.m", expr, keys=["k"]) if how == "merge" else lake.write("gold.m", expr))
    got = lake.read("gold.m").to_pyarrow()
    assert got.schema.field("month").type == pa.int32()
    assert got.column("month").to_pylist() == [int(d[5:7]) for d in got.column("d").to_pylist()]


def test_a_new_table_from_an_expression_with_duplicate_keys_is_not_created(lake: Lake) -> None:
    expr = lake.con.create_table("dups", pa.table({"k": [1, 2, 2], "v": ["a", "b", "c"]}))
    with pytest.raises(LakeError, match="share a key"):
        lake.merge("gold.dups", expr, keys=["k"])
    assert not lake.exists("gold.dups")
