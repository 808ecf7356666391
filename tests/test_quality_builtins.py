"""Built-in expectations compiled by ``rule_sql`` and applied by ``apply_expectations``; mappings; the report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest
import yaml
from pydantic import ValidationError

from goldgate.quality import (
    BATCH_RULE,
    QUALITY_SCHEMA,
    QualityError,
    QualityResult,
    RuleOutcome,
    apply_expectations,
    apply_mappings,
    latest_quarantine_share,
    quality_report,
    quality_rows,
    rule_sql,
)
from goldgate.usecase import Expectation, Mapping, UseCaseError, parse_usecase


@pytest.fixture(scope="module")
def con() -> Any:
    return ibis.duckdb.connect()


_TABLES = iter(range(1_000_000))


def table(con: Any, data: dict[str, list[Any]] | pa.Table) -> ir.Table:
    """A small in-memory table registered on the module's DuckDB connection."""
    return con.create_table(f"t{next(_TABLES)}", ibis.memtable(data), temp=True)


def check(name: str, action: str = "drop", **builtin: Any) -> Expectation:
    return Expectation.model_validate({"name": name, "action": action, **builtin})


def ids(t: ir.Table) -> list[int]:
    return sorted(r["id"] for r in t.to_pyarrow().to_pylist())


def split(t: ir.Table, e: Expectation, refs: dict[str, str] | None = None) -> tuple[list[int], list[int]]:
    """Ids kept and ids quarantined after applying ``e`` (conservation is checked inside)."""
    result = apply_expectations(t, [e], "silver.things", refs)
    assert result.rows_kept + result.rows_quarantined == result.rows_in
    return ids(result.kept), ids(result.quarantined)


# --- not_null -----------------------------------------------------------------------------------------------


def test_not_null_over_several_columns_fails_a_row_missing_any_of_them(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3, 4], "a": [1, None, 3, None], "b": ["x", "y", None, None]})
    e = check("complete", not_null=["a", "b"])
    assert rule_sql(e) == '"a" IS NOT NULL AND "b" IS NOT NULL'
    assert split(t, e) == ([1], [2, 3, 4])


def test_not_null_quotes_odd_column_names(con: Any) -> None:
    t = table(con, {"id": [1, 2], 'we"ird col': [1.0, None]})
    assert split(t, check("weird", not_null=['we"ird col'])) == ([1], [2])


# --- unique -------------------------------------------------------------------------------------------------


def test_unique_fails_every_row_of_a_duplicated_key(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3, 4, 5], "k": ["a", "b", "b", "c", "b"]})
    result = apply_expectations(t, [check("one_k", unique=["k"])], "silver.things")
    assert ids(result.kept) == [1, 4]
    assert ids(result.quarantined) == [2, 3, 5]  # all three rows of key b, not "all but the first"
    assert {r["_rule"] for r in result.quarantined.to_pyarrow().to_pylist()} == {"one_k"}
    assert [(o.passed, o.failed) for o in result.outcomes] == [(2, 3)]


def test_unique_over_a_composite_key(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3, 4], "d": [1, 1, 2, 2], "c": ["USD", "JPY", "USD", "USD"]})
    assert split(t, check("one_per_day", unique=["d", "c"])) == ([1, 2], [3, 4])


# --- in_set -------------------------------------------------------------------------------------------------


def test_in_set_escapes_quotes_in_string_values(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3, 4], "name": ["O'Brien", "plain", "O'Brien'; DROP TABLE x; --", None]})
    e = check("known", in_set={"column": "name", "values": ["O'Brien", "plain"]})
    assert rule_sql(e) == "CAST(\"name\" AS VARCHAR) IN ('O''Brien', 'plain')"
    assert split(t, e) == ([1, 2], [3, 4])  # NULL is not in the set


def test_in_set_with_numbers(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3], "n": [1, 2, 3]})
    assert split(t, check("small", in_set={"column": "n", "values": [1, 3]})) == ([1, 3], [2])


def test_in_set_with_numbers_on_a_text_column_fails_rows_instead_of_crashing(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3], "n": ["1", "x", "3.0"]})
    assert split(t, check("small", in_set={"column": "n", "values": [1, 3]})) == ([1, 3], [2])


# --- between ------------------------------------------------------------------------------------------------


@pytest.fixture
def numbers(con: Any) -> ir.Table:
    return table(con, {"id": [1, 2, 3, 4, 5, 6], "x": [-1.0, 0.0, 0.5, 1.0, 2.0, None]})


def test_between_min_only_is_inclusive(numbers: ir.Table) -> None:
    e = check("non_negative", between={"column": "x", "min": 0})
    assert rule_sql(e) == '"x" >= 0.0'
    assert split(numbers, e) == ([2, 3, 4, 5], [1, 6])


def test_between_max_only(numbers: ir.Table) -> None:
    assert split(numbers, check("at_most_one", between={"column": "x", "max": 1})) == ([1, 2, 3, 4], [5, 6])


def test_between_both_bounds_inclusive(numbers: ir.Table) -> None:
    assert split(numbers, check("unit", between={"column": "x", "min": 0, "max": 1})) == ([2, 3, 4], [1, 5, 6])


def test_between_exclusive_rejects_the_bounds(numbers: ir.Table) -> None:
    e = check("open_unit", between={"column": "x", "min": 0, "max": 1, "exclusive": True})
    assert split(numbers, e) == ([3], [1, 2, 4, 5, 6])
    positive = check("positive", between={"column": "x", "min": 0, "exclusive": True})
    assert split(numbers, positive) == ([3, 4, 5], [1, 2, 6])


def test_between_needs_a_bound() -> None:
    with pytest.raises(ValidationError, match="between needs min, max or both"):
        check("nothing", between={"column": "x"})


# --- matches ------------------------------------------------------------------------------------------------


def test_matches_requires_the_whole_value_to_match(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3, 4, 5], "code": ["USD", "USDX", "xUSD", "usd", None]})
    assert split(t, check("iso", matches={"column": "code", "pattern": "[A-Z]{3}"})) == ([1], [2, 3, 4, 5])


def test_matches_casts_non_text_columns_and_escapes_quotes(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3], "n": [123, 1234, 12]})
    assert split(t, check("three_digits", matches={"column": "n", "pattern": "[0-9]{3}"})) == ([1], [2, 3])
    quoted = table(con, {"id": [1, 2], "s": ["it's", "its"]})
    assert split(quoted, check("apostrophe", matches={"column": "s", "pattern": "it's"})) == ([1], [2])


# --- foreign_key --------------------------------------------------------------------------------------------


def test_foreign_key_checks_values_against_the_referenced_table(con: Any) -> None:
    con.create_table("products_v3", ibis.memtable({"product": ["GTX Basic", "MG Special"]}), temp=True)
    t = table(con, {"id": [1, 2, 3, 4], "product": ["GTX Basic", "GTXPro", "MG Special", "gtx basic"]})
    e = check("known_product", foreign_key={"column": "product", "references": "silver.crm_products.product"})
    assert e.foreign_key is not None
    assert (e.foreign_key.table, e.foreign_key.ref_column) == ("silver.crm_products", "product")
    refs = {"silver.crm_products": "products_v3"}
    assert split(t, e, refs) == ([1, 3], [2, 4])


def test_foreign_key_without_its_reference_raises(con: Any) -> None:
    t = table(con, {"id": [1], "product": ["GTX Basic"]})
    e = check("known_product", foreign_key={"column": "product", "references": "silver.crm_products.product"})
    with pytest.raises(QualityError, match=r"known_product.*silver\.crm_products is not available"):
        rule_sql(e, {"silver.other": "x"})
    with pytest.raises(QualityError, match=r"silver\.crm_products"):
        apply_expectations(t, [e], "silver.things")


def test_foreign_key_reference_must_name_layer_table_and_column() -> None:
    with pytest.raises(ValidationError, match=r"references must be <layer>\.<table>\.<column>"):
        check("fk", foreign_key={"column": "product", "references": "crm_products.product"})


# --- freshness ----------------------------------------------------------------------------------------------


def _dated(con: Any, newest: date) -> ir.Table:
    return table(con, {"id": [1, 2, 3], "d": [newest - timedelta(days=40), newest - timedelta(days=1), newest]})


def test_freshness_passes_every_row_of_a_fresh_batch(con: Any) -> None:
    e = check("recent", action="warn", freshness={"column": "d", "max_age_days": 5})
    result = apply_expectations(_dated(con, date.today() - timedelta(days=2)), [e], "silver.things")
    assert [(o.passed, o.failed) for o in result.outcomes] == [(3, 0)]


def test_freshness_fails_every_row_of_a_stale_batch_and_warn_keeps_them(con: Any) -> None:
    e = check("recent", action="warn", freshness={"column": "d", "max_age_days": 5})
    result = apply_expectations(_dated(con, date.today() - timedelta(days=30)), [e], "silver.things")
    assert [(o.rule, o.action, o.passed, o.failed) for o in result.outcomes] == [("recent", "warn", 0, 3)]
    assert (result.rows_kept, result.rows_quarantined) == (3, 0)


def test_freshness_with_fail_stops_on_a_stale_batch(con: Any) -> None:
    e = check("recent", action="fail", freshness={"column": "d", "max_age_days": 5})
    with pytest.raises(QualityError, match=r"silver\.things: expectation 'recent'.*failed on 3 of 3"):
        apply_expectations(_dated(con, date.today() - timedelta(days=30)), [e], "silver.things")


def test_freshness_with_drop_is_rejected_by_the_use_case_model() -> None:
    with pytest.raises(ValidationError, match="'recent': freshness judges the whole batch"):
        check("recent", action="drop", freshness={"column": "d", "max_age_days": 5})


def test_fail_message_shows_the_builtin_check_not_none(con: Any) -> None:
    t = table(con, {"id": [1, 2], "a": [1, None]})
    with pytest.raises(QualityError) as err:
        apply_expectations(t, [check("complete", action="fail", not_null=["a"])], "silver.things")
    message = str(err.value)
    assert "silver.things: expectation 'complete'" in message
    assert '"a" IS NOT NULL' in message
    assert "None" not in message


# --- several built-ins at once ------------------------------------------------------------------------------


def test_builtins_combine_with_first_failing_drop_rule_and_reasons(con: Any) -> None:
    t = table(con, {"id": [1, 2, 3, 4], "code": ["USD", "usd", "JPY", None], "x": [1.0, 2.0, -1.0, 3.0]})
    expectations = [
        check("iso", matches={"column": "code", "pattern": "[A-Z]{3}"}),
        check("positive", between={"column": "x", "min": 0, "exclusive": True}, description="x > 0"),
        check("watch", action="warn", in_set={"column": "code", "values": ["USD"]}),
    ]
    result = apply_expectations(t, expectations, "silver.things")
    assert ids(result.kept) == [1]
    rows = {r["id"]: r for r in result.quarantined.to_pyarrow().to_pylist()}
    assert {i: (r["_rule"], r["_failed_rules"]) for i, r in rows.items()} == {
        2: ("iso", "iso"),
        3: ("positive", "positive"),
        4: ("iso", "iso"),
    }
    assert rows[3]["_reason"] == "positive: x > 0"
    assert rows[2]["_reason"].startswith("iso: regexp_full_match")
    assert [(o.rule, o.passed, o.failed) for o in result.outcomes] == [
        ("iso", 2, 2),
        ("positive", 3, 1),
        ("watch", 1, 3),
    ]


# --- validation ---------------------------------------------------------------------------------------------


def _usecase_with(expectation: dict[str, Any], slice_dict: dict[str, Any]) -> dict[str, Any]:
    return {**slice_dict, "expectations": [expectation]}


@pytest.fixture(scope="module")
def slice_dict(slice_usecase_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(slice_usecase_path.read_text())
    return data


@pytest.mark.parametrize(
    "extra",
    [{}, {"rule": "x > 0", "not_null": ["x"]}, {"unique": ["k"], "in_set": {"column": "k", "values": ["a"]}}],
    ids=["no-check", "rule-and-not-null", "unique-and-in-set"],
)
def test_an_expectation_needs_exactly_one_check(extra: dict[str, Any], slice_dict: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="expectation 'odd_one' needs exactly one of rule, not_null"):
        Expectation(name="odd_one", **extra)
    with pytest.raises(UseCaseError, match="expectation 'odd_one' needs exactly one of") as err:
        parse_usecase(_usecase_with({"name": "odd_one", **extra}, slice_dict), "bad.yaml")
    assert "bad.yaml" in str(err.value)


def test_an_unknown_builtin_or_action_is_rejected(slice_dict: dict[str, Any]) -> None:
    with pytest.raises(UseCaseError, match=r"expectations\.0\.is_positive': unknown key"):
        parse_usecase(_usecase_with({"name": "p", "is_positive": "x"}, slice_dict))
    with pytest.raises(UseCaseError, match=r"expectations\.0\.action"):
        parse_usecase(_usecase_with({"name": "p", "rule": "x > 0", "action": "ignore"}, slice_dict))


def test_builtins_parse_from_yaml_mappings(slice_dict: dict[str, Any]) -> None:
    uc = parse_usecase(
        _usecase_with({"name": "rate_range", "between": {"column": "rate", "min": 0, "max": 1e6}}, slice_dict)
    )
    (e,) = uc.expectations
    assert e.action == "drop"
    assert rule_sql(e) == '"rate" >= 0.0 AND "rate" <= 1000000.0'


# --- mappings -----------------------------------------------------------------------------------------------


@pytest.fixture
def dirty(con: Any) -> ir.Table:
    data = pa.table(
        {
            "id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
            "stage": pa.array(["won", "Won", " WON ", "Lost", "Engaging", None], pa.string()),
            "code": pa.array([1, 2, 3, 2, 9, None], pa.int32()),
        }
    )
    return table(con, data)


def test_mapping_is_case_insensitive_by_default(dirty: ir.Table) -> None:
    mapped, counts = apply_mappings(dirty, [Mapping(column="stage", values={"won": "Won", "lost": "Lost"})])
    rows = sorted(mapped.to_pyarrow().to_pylist(), key=lambda r: r["id"])
    assert [r["stage"] for r in rows] == ["Won", "Won", "Won", "Lost", "Engaging", None]
    # "Won" and "Lost" were already canonical: only rows whose value changed are counted.
    assert counts == {"stage": 2}


def test_mapping_can_be_case_sensitive(dirty: ir.Table) -> None:
    m = Mapping(column="stage", values={"won": "Won", "WON": "Won"}, case_insensitive=False)
    mapped, counts = apply_mappings(dirty, [m])
    rows = sorted(mapped.to_pyarrow().to_pylist(), key=lambda r: r["id"])
    assert [r["stage"] for r in rows] == ["Won", "Won", "Won", "Lost", "Engaging", None]
    assert counts == {"stage": 2}
    exact, n = apply_mappings(dirty, [Mapping(column="stage", values={"lost": "LOST"}, case_insensitive=False)])
    assert n == {"stage": 0}  # "Lost" is not "lost" when case matters
    assert sorted(exact.to_pyarrow().column("stage").to_pylist(), key=str) == sorted(
        dirty.to_pyarrow().column("stage").to_pylist(), key=str
    )


def test_mapping_keeps_the_column_type_and_leaves_unmapped_values_alone(dirty: ir.Table) -> None:
    mapped, counts = apply_mappings(
        dirty,
        [Mapping(column="code", values={"9": "3"}), Mapping(column="stage", values={"engaging": "Engaging"})],
    )
    assert mapped.schema()["code"] == dirty.schema()["code"] == ibis.dtype("int32")
    assert mapped.schema()["stage"] == dirty.schema()["stage"]
    rows = sorted(mapped.to_pyarrow().to_pylist(), key=lambda r: r["id"])
    assert [r["code"] for r in rows] == [1, 2, 3, 2, 3, None]
    assert [r["stage"] for r in rows] == ["won", "Won", " WON ", "Lost", "Engaging", None]  # untouched
    assert counts == {"code": 1, "stage": 0}
    assert mapped.count().to_pyarrow().as_py() == 6


# --- ops.quality rows and the report ------------------------------------------------------------------------


def _result(rows_in: int, kept: int, outcomes: list[RuleOutcome]) -> QualityResult:
    empty = ibis.memtable({"x": [1]})
    return QualityResult(empty, empty, rows_in, kept, rows_in - kept, outcomes)


def test_quality_rows_have_each_rule_each_mapping_and_the_batch_summary() -> None:
    result = _result(10, 7, [RuleOutcome("rate_positive", "drop", 7, 3), RuleOutcome("soft", "warn", 9, 1)])
    rows = quality_rows("silver.x", "bronze.x", "b1", result, {"currency": 2})
    assert rows.schema == QUALITY_SCHEMA
    got = [
        (r["table_name"], r["input_table"], r["batch_id"], r["rule"], r["action"], r["passed"], r["failed"])
        for r in rows.to_pylist()
    ]
    assert got == [
        ("silver.x", "bronze.x", "b1", "rate_positive", "drop", 7, 3),
        ("silver.x", "bronze.x", "b1", "soft", "warn", 9, 1),
        ("silver.x", "bronze.x", "b1", "mapping:currency", "map", 8, 2),
        ("silver.x", "bronze.x", "b1", BATCH_RULE, "summary", 7, 3),
    ]
    assert len({r["checked_at"] for r in rows.to_pylist()}) == 1


T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _q(table_name: str, batch: str, rule: str, action: str, passed: int, failed: int, day: int) -> dict[str, Any]:
    return {
        "table_name": table_name,
        "input_table": "bronze.x",
        "batch_id": batch,
        "rule": rule,
        "action": action,
        "passed": passed,
        "failed": failed,
        "checked_at": T0 + timedelta(days=day),
    }


@pytest.fixture
def quality(con: Any) -> ir.Table:
    rows = [
        _q("silver.a", "b1", "rate_positive", "drop", 9, 1, 0),
        _q("silver.a", "b1", BATCH_RULE, "summary", 9, 1, 0),
        _q("silver.a", "b2", "rate_positive", "drop", 20, 0, 1),
        _q("silver.a", "b2", "soft", "warn", 18, 2, 1),
        _q("silver.a", "b2", BATCH_RULE, "summary", 20, 0, 1),
        _q("silver.a", "b3", "rate_positive", "drop", 3, 1, 2),
        _q("silver.a", "b3", BATCH_RULE, "summary", 3, 1, 2),
        _q("silver.b", "c1", "known", "drop", 5, 5, 3),
        _q("silver.b", "c1", BATCH_RULE, "summary", 5, 5, 3),
    ]
    return table(con, pa.Table.from_pylist(rows, schema=QUALITY_SCHEMA))


def test_latest_quarantine_share_uses_the_newest_batch(quality: ir.Table) -> None:
    assert latest_quarantine_share(quality, "silver.a") == pytest.approx(1 / 4)
    assert latest_quarantine_share(quality, "silver.b") == pytest.approx(0.5)
    assert latest_quarantine_share(quality, "silver.none") is None


def test_latest_quarantine_share_of_an_empty_batch_is_zero(con: Any) -> None:
    rows = table(con, pa.Table.from_pylist([_q("silver.a", "b1", BATCH_RULE, "summary", 0, 0, 0)], QUALITY_SCHEMA))
    assert latest_quarantine_share(rows, "silver.a") == 0.0


def test_quality_report_totals_and_trend_per_table_and_rule(quality: ir.Table) -> None:
    report = {(r["table"], r["rule"]): r for r in quality_report(quality, last_batches=2)}
    assert set(report) == {
        ("silver.a", "rate_positive"),
        ("silver.a", "soft"),
        ("silver.a", "(quarantined rows)"),
        ("silver.b", "known"),
        ("silver.b", "(quarantined rows)"),
    }
    positive = report[("silver.a", "rate_positive")]
    assert (positive["action"], positive["passed"], positive["failed"]) == ("drop", 32, 2)
    assert positive["trend"] == [0, 1]  # the last two batches, oldest first
    assert report[("silver.a", "soft")]["trend"] == [2, None]  # the rule was not checked in b3
    total = report[("silver.a", "(quarantined rows)")]
    assert (total["passed"], total["failed"], total["trend"]) == (32, 2, [0, 1])
    assert report[("silver.b", "known")]["trend"] == [5]
    assert all(r["rule"] != BATCH_RULE for r in report.values())
    full = {(r["table"], r["rule"]): r for r in quality_report(quality, last_batches=5)}
    assert full[("silver.a", "rate_positive")]["trend"] == [1, 0, 1]
