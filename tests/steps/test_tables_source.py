"""A tables source: a main file and related files, each typed and checked on its own, joined in gold by key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from goldgate.context import Context
from goldgate.dag import get_step
from goldgate.quality import QUALITY
from goldgate.runner import run_step
from goldgate.settings import Settings
from goldgate.usecase import UseCaseError, parse_usecase

DEALS = """deal,account,value,won
d1,acme,100,Yes
d2,globex,250,No
d3,ghost,80,Yes
d4,acme,oops,No
d5,,60,No
"""
ACCOUNTS = """account,sector,employees
acme,retail,120
globex,tech,4000
globex,tech,4001
,energy,10
"""


def _spec(folder: Path, **gold: Any) -> dict[str, Any]:
    return {
        "name": "deals",
        "task": "binary",
        "source": {
            "kind": "tables",
            "path": str(folder),
            "main": "deals.csv",
            "tables": {
                "accounts": {
                    "file": "accounts.csv",
                    "keys": ["account"],
                    "columns": {"account": "string", "sector": "string", "employees": "int"},
                }
            },
        },
        "columns": {"deal": {"role": "entity"}, "account": "string", "value": "float", "won": {"role": "target"}},
        "target": {"kind": "label", "column": "won", "positive": "Yes"},
        "gold": {"joins": [{"table": "accounts", "on": {"account": "account"}, **gold}]},
    }


def _run(tmp_path: Path, **gold: Any) -> Context:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "deals.csv").write_text(DEALS)
    (folder / "accounts.csv").write_text(ACCOUNTS)
    ctx = Context(Settings(workspace=tmp_path / "ws"), parse_usecase(_spec(folder, **gold)))
    for step in ("ingest", "silver", "gold", "features"):
        ctx.results[step] = run_step(ctx, get_step(step))
    return ctx


def test_related_files_get_their_own_tables_and_the_join_keeps_unmatched_rows(tmp_path: Path) -> None:
    ctx = _run(tmp_path)
    lake = ctx.lake
    assert lake.rows("bronze.deals_accounts_raw") == 4
    accounts = lake.read("silver.deals_accounts").to_pandas().set_index("account")
    assert accounts.employees.to_dict() == {"acme": 120, "globex": 4000}  # the repeat and the keyless row quarantined
    assert sorted(lake.read("quarantine.deals_accounts").to_pandas()._rule) == ["account_present", "one_row_per_key"]
    gold = lake.read("gold.deals").to_pandas().set_index("deal").sort_index()
    assert gold.index.tolist() == ["d1", "d2", "d3", "d5"]  # d4's value does not parse: quarantined
    assert gold.sector.fillna("-").tolist() == ["retail", "tech", "-", "-"]  # no account "ghost", and none at all
    quality = lake.read(QUALITY).to_pandas()
    known = quality[(quality.table_name == "silver.deals") & (quality.rule == "accounts_known")].iloc[0]
    assert (known.action, known.failed) == ("warn", 2)
    features = lake.read("gold.deals_features").to_pandas()
    assert {"employees", "sector_retail", "sector_tech", "value"} <= set(features.columns)


def test_a_drop_join_quarantines_rows_without_a_match(tmp_path: Path) -> None:
    ctx = _run(tmp_path, unmatched="drop", columns=["employees"], prefix="account_")
    lake = ctx.lake
    rules = lake.read("quarantine.deals").to_pandas().set_index("deal")._rule.to_dict()
    assert rules == {"d3": "accounts_known", "d4": "value_parses", "d5": "accounts_known"}
    gold = lake.read("gold.deals").to_pandas()
    assert sorted(gold.columns) == ["account", "account_employees", "as_of", "deal", "value", "won"]


def test_joins_must_name_a_related_table_and_its_key(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec["gold"]["joins"][0]["table"] = "teams"
    with pytest.raises(UseCaseError, match=r"'teams' is not under source\.tables"):
        parse_usecase(spec)
    spec = _spec(tmp_path)
    spec["gold"]["joins"][0]["on"] = {"account": "sector"}
    with pytest.raises(UseCaseError, match="'sector' is not the key of accounts"):
        parse_usecase(spec)
