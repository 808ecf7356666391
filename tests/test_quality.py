"""Expectations: drop quarantines with the rule and reason, warn counts, fail stops; rows are conserved."""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest

from goldgate.quality import (
    ConservationError,
    QualityError,
    QualityResult,
    apply_expectations,
    apply_mappings,
    check_conservation,
)
from goldgate.usecase import Expectation, Mapping


@pytest.fixture(scope="module")
def con() -> Any:
    return ibis.duckdb.connect()


@pytest.fixture
def table(con: Any) -> ir.Table:
    # x: passes both rules, fails positive, fails small, passes both, NULL (unknown: fails both)
    data = ibis.memtable({"id": [1, 2, 3, 4, 5], "x": [1.0, -1.0, 200.0, 5.0, None]})
    return con.create_table("readings", data, temp=True, overwrite=True)


def rule(name: str, sql: str, action: str = "drop", description: str = "") -> Expectation:
    return Expectation(name=name, rule=sql, action=action, description=description)


POSITIVE = rule("positive", "x > 0")
SMALL = rule("small", "x < 100", description="x is below 100")


def by_id(t: ir.Table) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in t.to_pyarrow().to_pylist()}


def test_drop_moves_failing_rows_to_quarantine_with_rule_and_reason(table: ir.Table) -> None:
    result = apply_expectations(table, [POSITIVE, SMALL], "silver.readings")
    assert sorted(by_id(result.kept)) == [1, 4]
    assert list(result.kept.columns) == ["id", "x"]
    quarantined = by_id(result.quarantined)
    assert sorted(quarantined) == [2, 3, 5]
    assert list(result.quarantined.columns) == ["id", "x", "_rule", "_failed_rules", "_reason"]
    assert quarantined[2] == {
        "id": 2,
        "x": -1.0,
        "_rule": "positive",
        "_failed_rules": "positive",
        "_reason": "positive: x > 0",  # no description: the reason shows the rule
    }
    assert quarantined[3]["_rule"] == "small"
    assert quarantined[3]["_failed_rules"] == "small"
    assert quarantined[3]["_reason"] == "small: x is below 100"
    # A NULL rule result is a failure of every rule, and _rule is the first one declared.
    assert quarantined[5]["_rule"] == "positive"
    assert quarantined[5]["_failed_rules"] == "positive,small"


def test_counts_per_rule_and_conservation(table: ir.Table) -> None:
    result = apply_expectations(table, [POSITIVE, SMALL], "silver.readings")
    assert (result.rows_in, result.rows_kept, result.rows_quarantined) == (5, 2, 3)
    assert result.rows_kept + result.rows_quarantined == result.rows_in
    assert result.kept.count().to_pyarrow().as_py() == result.rows_kept
    assert [(o.rule, o.action, o.passed, o.failed) for o in result.outcomes] == [
        ("positive", "drop", 3, 2),
        ("small", "drop", 3, 2),
    ]


def test_warn_keeps_rows_but_counts_failures(table: ir.Table) -> None:
    result = apply_expectations(table, [rule("positive", "x > 0", action="warn")], "silver.readings")
    assert (result.rows_kept, result.rows_quarantined) == (5, 0)
    assert sorted(by_id(result.kept)) == [1, 2, 3, 4, 5]
    assert result.quarantined.count().to_pyarrow().as_py() == 0
    assert [(o.passed, o.failed) for o in result.outcomes] == [(3, 2)]


def test_warn_and_drop_together_only_drop_quarantines(table: ir.Table) -> None:
    result = apply_expectations(table, [rule("positive", "x > 0", action="warn"), SMALL], "silver.readings")
    assert sorted(by_id(result.quarantined)) == [3, 5]
    assert {r["_failed_rules"] for r in by_id(result.quarantined).values()} == {"small"}
    assert result.outcomes[0].failed == 2


def test_fail_raises_naming_table_and_rule(table: ir.Table) -> None:
    with pytest.raises(QualityError, match=r"silver\.readings: expectation 'positive' \(x > 0\) failed on 2 of 5"):
        apply_expectations(table, [SMALL, rule("positive", "x > 0", action="fail")], "silver.readings")


def test_fail_rule_that_holds_does_not_raise(table: ir.Table) -> None:
    result = apply_expectations(table, [rule("has_id", "id IS NOT NULL", action="fail")], "silver.readings")
    assert (result.rows_kept, result.outcomes[0].failed) == (5, 0)


@pytest.mark.parametrize("action", ["warn", "drop"])
def test_null_rule_result_counts_as_failure(table: ir.Table, action: str) -> None:
    # Only row 5 has x NULL; ``x * 0 = 0`` is true for every other row and NULL for it.
    result = apply_expectations(table, [rule("known", "x * 0 = 0", action=action)], "silver.readings")
    assert result.outcomes[0].failed == 1
    if action == "drop":
        assert list(by_id(result.quarantined)) == [5]


def test_no_expectations_keeps_everything(table: ir.Table) -> None:
    result = apply_expectations(table, [], "silver.readings")
    assert (result.rows_in, result.rows_kept, result.rows_quarantined, result.outcomes) == (5, 5, 0, [])


def test_empty_input(con: Any) -> None:
    empty = con.create_table("empty", ibis.memtable({"x": [1.0]}).limit(0), temp=True, overwrite=True)
    result = apply_expectations(empty, [rule("positive", "x > 0")], "silver.empty")
    assert (result.rows_in, result.rows_kept, result.rows_quarantined) == (0, 0, 0)
    assert result.outcomes[0].failed == 0


def test_conservation_check_detects_lost_rows(table: ir.Table) -> None:
    broken = QualityResult(kept=table, quarantined=table, rows_in=7, rows_kept=5, rows_quarantined=1)
    with pytest.raises(ConservationError, match=r"silver\.readings: .*7 in != 5 kept \+ 1 quarantined"):
        check_conservation(broken, "silver.readings")


def test_reference_mapping_takes_the_reference_spelling() -> None:
    con = ibis.duckdb.connect()
    teams = con.create_table("teams_ref", pa.table({"sales_agent": ["Ann Lee", "Bob Ray"], "manager": ["M", "M"]}))
    opps = con.create_table("opps_map", pa.table({"sales_agent": ["ann lee", "BOB  RAY", "Cy Young", None]}))
    mapping = Mapping(column="sales_agent", reference="silver.crm_sales_teams.sales_agent")
    mapped, counts = apply_mappings(opps, [mapping], {"silver.crm_sales_teams": teams})
    assert sorted(mapped.sales_agent.to_pyarrow().to_pylist(), key=str) == ["Ann Lee", "Bob Ray", "Cy Young", None]
    assert counts == {"sales_agent": 2}
