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


def test_spellings_follow_the_related_table_and_joins_flag_their_matches(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "deals.csv").write_text(
        "deal,account,agent,value,won\nd1,acme,ann  lee,100,Yes\nd2,Globex ,BOB RAY,250,No\nd3,ghost,cy,80,Yes\n"
    )
    (folder / "accounts.csv").write_text("account,sector\nacme,Retail\nGlobex,TECH\n")
    (folder / "agents.csv").write_text("agent,office\nAnn Lee,West\nBob Ray,East\n")
    spec = _spec(folder, known="account_known")
    spec["source"]["collapse_spaces"] = True
    spec["source"]["tables"]["accounts"]["columns"] = {
        "account": "string",
        "sector": {"type": "string", "case": "lower"},
    }
    spec["source"]["tables"]["agents"] = {
        "file": "agents.csv",
        "keys": ["agent"],
        "columns": {"agent": "", "office": ""},
    }
    spec["columns"]["agent"] = "string"
    spec["mappings"] = [{"column": "agent", "reference": "silver.deals_agents.agent"}]
    spec["gold"]["joins"].append({"table": "agents", "on": {"agent": "agent"}, "known": "agent_known"})
    ctx = Context(Settings(workspace=tmp_path / "ws"), parse_usecase(spec))
    for step in ("ingest", "silver", "gold"):
        ctx.results[step] = run_step(ctx, get_step(step))
    gold = ctx.lake.read("gold.deals").to_pandas().set_index("deal").sort_index()
    assert gold.agent.fillna("-").tolist() == ["Ann Lee", "Bob Ray", "cy"]  # "ann  lee": spaces collapsed, mapped
    assert gold.office.fillna("-").tolist() == ["West", "East", "-"]
    assert gold.account_known.tolist() == [True, True, False]  # "Globex " trimmed; "ghost" is in no file
    assert gold.agent_known.tolist() == [True, True, False]
    assert gold.sector.fillna("-").tolist() == ["retail", "tech", "-"]


def test_yaml_on_key_and_a_generated_demo_export(tmp_path: Path) -> None:
    import yaml

    from goldgate.usecase import load_usecase

    text = (Path(__file__).parents[2] / "src/goldgate/usecases/crm.yaml").read_text(encoding="utf-8")
    assert "on: {" in text  # YAML 1.1 reads an unquoted on: as true; the schema takes it back as "on"
    data = yaml.safe_load(text)
    assert True in data["gold"]["joins"][0]
    uc = load_usecase("crm")
    assert uc.gold.joins[0].on == {"sales_agent": "sales_agent"}
    small = uc.model_copy(update={"source": uc.source.model_copy(update={"demo_rows": 300, "demo_seed": 3})})
    ctx = Context(Settings(workspace=tmp_path / "ws"), small)
    result = run_step(ctx, get_step("ingest"))
    assert result["new"] is True
    assert (tmp_path / "ws" / "sources" / "crm-demo-s3-n300" / "sales_pipeline.csv").is_file()
    assert ctx.lake.rows("bronze.crm_sales_pipeline_raw") >= 300
