"""CRM export layers: typed silver tables from the four bronze files, and one enriched deal row per opportunity.

Bronze keeps every CSV cell as received (text). Silver types them: a cell that does not parse becomes NULL
beside its ``raw_*`` original, so expectations can quarantine the row with the value that failed. Text keys are
trimmed and inner runs of spaces collapsed, because exports from CRMs disagree on spacing but never mean two
different agents by it. Gold joins the opportunities with their reference rows and flags keys that are missing or
unknown instead of dropping the deal.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

# Typed columns per reference file, with the key first.
REFERENCE_KEYS = {"accounts": "account", "products": "product", "sales_teams": "sales_agent"}
METADATA = ("_batch_id", "_row_number", "_ingested_at")
DEAL_STAGES = ("Prospecting", "Engaging", "Won", "Lost")


def clean_text(value: ir.StringValue) -> ir.StringValue:
    """Trimmed text with runs of whitespace collapsed; empty text is NULL."""
    cleaned = value.strip().re_replace(r"\s+", " ")
    return ibis.ifelse(cleaned == "", ibis.null("string"), cleaned)


def _column(table: ir.Table, name: str) -> ir.StringValue:
    """A bronze column, or NULL text when this batch's file lacks it (schema changes are reported at ingest)."""
    return table[name].cast("string") if name in table.columns else ibis.null("string")


def _parsed(text: ir.StringValue, dtype: str) -> ir.Value:
    return clean_text(text).try_cast(dtype)


def _metadata(table: ir.Table) -> dict[str, ir.Value]:
    extra = _column(table, "_extra")
    return {**{c: table[c] for c in METADATA}, "_extra": extra}


def type_opportunities(bronze: ir.Table) -> ir.Table:
    """``sales_pipeline`` rows typed; ``raw_*`` keep the date and value cells as received."""
    raw = {c: _column(bronze, c) for c in ("engage_date", "close_date", "close_value")}
    return bronze.select(
        opportunity_id=clean_text(_column(bronze, "opportunity_id")),
        sales_agent=clean_text(_column(bronze, "sales_agent")),
        product=clean_text(_column(bronze, "product")),
        account=clean_text(_column(bronze, "account")),
        deal_stage=clean_text(_column(bronze, "deal_stage")),
        engage_date=_parsed(raw["engage_date"], "date"),
        close_date=_parsed(raw["close_date"], "date"),
        close_value=_parsed(raw["close_value"], "float64"),
        raw_engage_date=raw["engage_date"],
        raw_close_date=raw["close_date"],
        raw_close_value=raw["close_value"],
        **_metadata(bronze),
    )


def type_accounts(bronze: ir.Table) -> ir.Table:
    """``accounts`` rows typed (sector lower-cased: it is a category, not a name)."""
    return bronze.select(
        account=clean_text(_column(bronze, "account")),
        sector=clean_text(_column(bronze, "sector")).lower(),
        year_established=_parsed(_column(bronze, "year_established"), "int64"),
        revenue=_parsed(_column(bronze, "revenue"), "float64"),
        employees=_parsed(_column(bronze, "employees"), "int64"),
        office_location=clean_text(_column(bronze, "office_location")),
        subsidiary_of=clean_text(_column(bronze, "subsidiary_of")),
        **_metadata(bronze),
    )


def type_products(bronze: ir.Table) -> ir.Table:
    """``products`` rows typed."""
    return bronze.select(
        product=clean_text(_column(bronze, "product")),
        series=clean_text(_column(bronze, "series")),
        sales_price=_parsed(_column(bronze, "sales_price"), "float64"),
        **_metadata(bronze),
    )


def type_sales_teams(bronze: ir.Table) -> ir.Table:
    """``sales_teams`` rows typed."""
    return bronze.select(
        sales_agent=clean_text(_column(bronze, "sales_agent")),
        manager=clean_text(_column(bronze, "manager")),
        regional_office=clean_text(_column(bronze, "regional_office")),
        **_metadata(bronze),
    )


TYPERS = {"accounts": type_accounts, "products": type_products, "sales_teams": type_sales_teams}


def latest_per_key(table: ir.Table, key: str) -> ir.Table:
    """One row per key: the most recently ingested, then the first in its file (for merging into silver)."""
    w = ibis.window(group_by=key, order_by=[ibis.desc("_ingested_at"), "_row_number"])
    ranked = table.mutate(_rank=ibis.row_number().over(w))
    return ranked.filter(ranked._rank == 0).drop("_rank")


def _silver_columns(table: ir.Table) -> list[str]:
    return [c for c in table.columns if not c.startswith("raw_") and c not in ("_row_number", "_extra")]


def silver_rows(table: ir.Table, key: str) -> ir.Table:
    """The columns silver keeps (typed values, the batch and its ingestion time), one row per key."""
    return latest_per_key(table, key).select(*_silver_columns(table))


def join_deals(opportunities: ir.Table, accounts: ir.Table, products: ir.Table, teams: ir.Table) -> ir.Table:
    """One row per opportunity with its account, product and sales-team attributes and ``*_known`` flags."""
    acc = accounts.select(
        "sector", "year_established", "revenue", "employees", "office_location", "subsidiary_of", _acc=accounts.account
    )
    prod = products.select("series", "sales_price", _prod=products.product)
    team = teams.select("manager", "regional_office", _agent=teams.sales_agent)
    o = opportunities
    joined = (
        o.left_join(acc, o.account == acc._acc)
        .left_join(prod, o.product == prod._prod)
        .left_join(team, o.sales_agent == team._agent)
    )
    return joined.select(
        "opportunity_id",
        "sales_agent",
        "manager",
        "regional_office",
        "product",
        "series",
        "sales_price",
        "account",
        "sector",
        "year_established",
        "revenue",
        "employees",
        "office_location",
        "subsidiary_of",
        "deal_stage",
        "engage_date",
        "close_date",
        "close_value",
        account_known=joined._acc.notnull(),
        product_known=joined._prod.notnull(),
        agent_known=joined._agent.notnull(),
    )
