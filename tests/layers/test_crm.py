"""CRM layers: cells typed with their raw text kept, keys cleaned, and deals joined with flags, never dropped."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest

from goldgate.layers.crm import join_deals, latest_per_key, type_accounts, type_opportunities, type_products
from goldgate.quality import apply_mappings
from goldgate.usecase import Mapping

T0 = datetime(2017, 1, 10, tzinfo=UTC)
T1 = datetime(2017, 2, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def con() -> Any:
    return ibis.duckdb.connect()


def bronze(con: Any, columns: dict[str, list[str | None]], at: datetime = T0, batch: str = "b0") -> ir.Table:
    n = len(next(iter(columns.values())))
    data = {k: pa.array(v, pa.string()) for k, v in columns.items()}
    data["_row_number"] = pa.array(range(2, n + 2), pa.int64())
    data["_ingested_at"] = pa.array([at] * n, pa.timestamp("us", tz="UTC"))
    data["_batch_id"] = pa.array([batch] * n, pa.string())
    return con.create_table(f"t{abs(hash((tuple(columns), at, batch))) % 10**8}", pa.table(data), overwrite=True)


def test_opportunities_are_typed_and_keep_the_raw_cells(con: Any) -> None:
    raw = bronze(
        con,
        {
            "opportunity_id": [" A1 ", "A2", "A3"],
            "sales_agent": ["Ann  Lee", "bob ray", None],
            "product": ["GTXPro", "MG Special", ""],
            "account": ["Acme", None, "  "],
            "deal_stage": ["Won", "Engaging", "Prospecting"],
            "engage_date": ["2017-01-02", "2017-02-30", None],
            "close_date": ["2017-01-20", None, None],
            "close_value": ["1054", None, "n/a"],
        },
    )
    rows = type_opportunities(raw).to_pyarrow().to_pylist()
    a1, a2, a3 = rows
    assert a1["opportunity_id"] == "A1"
    assert a1["sales_agent"] == "Ann Lee"
    assert a1["engage_date"] == date(2017, 1, 2)
    assert a1["close_value"] == 1054.0
    # Unparseable cells are NULL beside the text that failed, so an expectation can say why.
    assert a2["engage_date"] is None
    assert a2["raw_engage_date"] == "2017-02-30"
    assert a3["close_value"] is None
    assert a3["raw_close_value"] == "n/a"
    assert a3["product"] is None
    assert a3["account"] is None
    assert a3["_extra"] is None
    assert a3["_row_number"] == 4


def test_reference_files_are_typed(con: Any) -> None:
    acc = (
        type_accounts(
            bronze(
                con,
                {
                    "account": ["Acme"],
                    "sector": [" Technolgy "],
                    "year_established": ["1999"],
                    "revenue": ["12.5"],
                    "employees": ["4,000"],
                    "office_location": ["United States"],
                    "subsidiary_of": [""],
                },
            )
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    assert acc["sector"] == "technolgy"
    assert acc["year_established"] == 1999
    assert acc["revenue"] == 12.5
    assert acc["employees"] is None  # "4,000" is not a number goldgate guesses at
    prod = type_products(bronze(con, {"product": ["GTX Pro"], "series": ["GTX"], "sales_price": ["4821"]}))
    assert prod.to_pyarrow().to_pylist()[0]["sales_price"] == 4821.0


def test_a_missing_column_is_null_not_an_error(con: Any) -> None:
    typed = type_products(bronze(con, {"product": ["GTX Pro"], "sales_price": ["4821"]})).to_pyarrow().to_pylist()
    assert typed[0]["series"] is None
    assert typed[0]["product"] == "GTX Pro"


def test_latest_ingestion_wins_per_key(con: Any) -> None:
    old = bronze(con, {"product": ["GTX Pro"], "series": ["GTX"], "sales_price": ["4800"]}, at=T0, batch="b0")
    new = bronze(con, {"product": ["GTX Pro"], "series": ["GTX"], "sales_price": ["4821"]}, at=T1, batch="b1")
    both = type_products(old).union(type_products(new))
    assert latest_per_key(both, "product").to_pyarrow().to_pylist()[0]["sales_price"] == 4821.0


def test_reference_mapping_takes_the_reference_spelling(con: Any) -> None:
    teams = con.create_table(
        "teams_ref", pa.table({"sales_agent": ["Ann Lee", "Bob Ray"], "manager": ["M", "M"]}), overwrite=True
    )
    opps = con.create_table(
        "opps_map", pa.table({"sales_agent": ["ann lee", "BOB  RAY", "Cy Young", None]}), overwrite=True
    )
    mapping = Mapping(column="sales_agent", reference="silver.crm_sales_teams.sales_agent")
    mapped, counts = apply_mappings(opps, [mapping], {"silver.crm_sales_teams": teams})
    assert sorted(mapped.sales_agent.to_pyarrow().to_pylist(), key=str) == ["Ann Lee", "Bob Ray", "Cy Young", None]
    assert counts == {"sales_agent": 2}


def test_deals_keep_unknown_keys_and_flag_them(con: Any) -> None:
    opps = con.create_table(
        "opps_join",
        pa.table(
            {
                "opportunity_id": ["A1", "A2"],
                "sales_agent": ["Ann Lee", "Zed"],
                "product": ["GTX Pro", "Nope"],
                "account": ["Acme", None],
                "deal_stage": ["Won", "Engaging"],
                "engage_date": [date(2017, 1, 2), date(2017, 1, 5)],
                "close_date": [date(2017, 1, 20), None],
                "close_value": [1000.0, None],
            }
        ),
        overwrite=True,
    )
    accounts = con.create_table(
        "acc_join",
        pa.table(
            {
                "account": ["Acme"],
                "sector": ["technology"],
                "year_established": [1999],
                "revenue": [12.5],
                "employees": [40],
                "office_location": ["US"],
                "subsidiary_of": [None],
            },
            schema=pa.schema(
                [
                    ("account", pa.string()),
                    ("sector", pa.string()),
                    ("year_established", pa.int64()),
                    ("revenue", pa.float64()),
                    ("employees", pa.int64()),
                    ("office_location", pa.string()),
                    ("subsidiary_of", pa.string()),
                ]
            ),
        ),
        overwrite=True,
    )
    products = con.create_table(
        "prod_join", pa.table({"product": ["GTX Pro"], "series": ["GTX"], "sales_price": [4821.0]}), overwrite=True
    )
    teams = con.create_table(
        "team_join",
        pa.table({"sales_agent": ["Ann Lee"], "manager": ["Mo"], "regional_office": ["West"]}),
        overwrite=True,
    )
    deals = join_deals(opps, accounts, products, teams).order_by("opportunity_id").to_pyarrow().to_pylist()
    assert len(deals) == 2
    a1, a2 = deals
    assert (a1["account_known"], a1["product_known"], a1["agent_known"]) == (True, True, True)
    assert a1["sector"] == "technology"
    assert a1["sales_price"] == 4821.0
    assert a1["manager"] == "Mo"
    assert (a2["account_known"], a2["product_known"], a2["agent_known"]) == (False, False, False)
    assert a2["sales_price"] is None
    assert a2["deal_stage"] == "Engaging"
