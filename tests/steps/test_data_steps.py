"""The declarative engine's data steps on a small file: slicing, typing, quarantine, keys and gold expressions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from goldgate.context import Context
from goldgate.dag import get_step
from goldgate.quality import QUALITY
from goldgate.runner import run_step
from goldgate.settings import Settings
from goldgate.steps.silver import SLICE_RULE
from goldgate.usecase import parse_usecase

CSV = """day;store;sales
2024-01-01;a;10
2024-01-02;a;12,5
2024-01-03;a;11
2024-01-04;a;oops
2024-01-01;b;20
2024-01-02;b;22
2024-01-03;b;21
2024-02-30;b;1
2025-01-01;b;30
"""


def _context(tmp_path: Path, **over: Any) -> Context:
    source = tmp_path / "sales.csv"
    source.write_text(CSV)
    spec: dict[str, Any] = {
        "name": "shop",
        "task": "regression",
        "source": {"kind": "file", "path": str(source), "decimal": ",", "end": "2024-12-31"},
        "columns": {"day": {"type": "date", "role": "time"}, "store": {"role": "entity"}, "sales": "float"},
        "target": {"kind": "value_at", "column": "sales", "horizon": 1},
        "gold": {"derive": {"prev": "lag(sales) OVER (PARTITION BY store ORDER BY day)"}, "where": "prev IS NOT NULL"},
        **over,
    }
    return Context(Settings(workspace=tmp_path / "ws"), parse_usecase(spec, "shop.yaml"))


def _run(ctx: Context, *steps: str) -> dict[str, Any]:
    return {name: run_step(ctx, get_step(name)) for name in steps}


def test_rows_outside_the_slice_are_counted_and_bad_cells_quarantined_with_their_text(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    out = _run(ctx, "ingest", "silver", "gold")
    lake = ctx.lake
    assert out["ingest"]["rows"] == 9
    assert out["silver"]["outside_slice"] == 1  # 2025-01-01 is after source.end
    quarantined = lake.read("quarantine.shop").to_pandas().sort_values("_row_number")
    assert quarantined[["_row_number", "_rule"]].values.tolist() == [[5, "sales_parses"], [9, "day_parses"]]
    assert quarantined.raw_sales.tolist() == ["oops", "1"]
    assert lake.rows("silver.shop") + len(quarantined) + out["silver"]["outside_slice"] == 9
    quality = lake.read(QUALITY).to_pandas()
    sliced = quality[quality.rule == SLICE_RULE].iloc[0]
    assert (sliced.passed, sliced.failed, sliced.action) == (8, 1, "slice")  # the bad date stays for its rule
    silver = lake.read("silver.shop").to_pandas().set_index(["store", "day"]).sort_index()
    assert silver.sales.tolist() == [10.0, 12.5, 11.0, 20.0, 22.0, 21.0]  # decimal comma read as a number


def test_gold_adds_derived_columns_and_keeps_the_rows_where_the_condition_holds(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _run(ctx, "ingest", "silver", "gold")
    gold = ctx.lake.read("gold.shop").to_pandas().sort_values(["store", "day"])
    assert gold.prev.tolist() == [10.0, 12.5, 20.0, 22.0]  # each store's first day has no previous value
    assert not [c for c in gold.columns if c.startswith("_")]


def test_several_entity_columns_make_one_key_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    csv = tmp_path / "grid.csv"
    csv.write_text("day,region,store,v\n2024-01-01,n,1,1\n2024-01-01,s,1,2\n2024-01-02,n,1,3\n")
    spec = {
        "name": "grid",
        "task": "regression",
        "source": {"kind": "file", "path": str(csv)},
        "columns": {"day": {"type": "date", "role": "time"}, "region": "string", "store": "int", "v": "float"},
        "entity": ["region", "store"],
        "target": {"kind": "value_at", "column": "v", "horizon": 1},
    }
    ctx = Context(Settings(workspace=tmp_path / "ws"), parse_usecase(spec))
    first = _run(ctx, "ingest", "silver", "gold", "features")
    again = _run(ctx, "ingest", "silver", "gold", "features")
    keys = sorted(ctx.lake.read("gold.grid_features").to_pandas().region_store_key.unique())
    assert keys == ["n|1", "s|1"]
    assert first["features"]["inserted"] == 3
    assert again["ingest"]["new"] is False
    assert (again["features"]["inserted"], again["features"]["updated"]) == (0, 0)


def test_training_on_rows_without_a_known_target_names_the_table_and_the_horizon(tmp_path: Path) -> None:
    csv = tmp_path / "short.csv"
    csv.write_text("day,v\n2024-01-01,1\n2024-01-02,2\n")
    spec = {
        "name": "short",
        "task": "regression",
        "columns": {"day": {"type": "date", "role": "time"}, "v": "float"},
        "target": {"kind": "value_at", "column": "v", "horizon": 5},
    }
    ctx = Context(Settings(workspace=tmp_path / "ws"), parse_usecase(spec), source=str(csv))
    _run(ctx, "ingest", "silver", "gold", "features")
    with pytest.raises(
        Exception, match=r"gold.short_features v0: none of its 2 rows has a known target .*horizon \(5\)"
    ):
        run_step(ctx, get_step("train"))
