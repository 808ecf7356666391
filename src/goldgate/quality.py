"""Expectations on a table: ``warn`` keeps and counts, ``drop`` moves rows to quarantine, ``fail`` stops."""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir

from goldgate.usecase import Expectation


class ConservationError(RuntimeError):
    """Rows in != rows kept + rows quarantined: a bug in goldgate, never a property of the data."""


class QualityError(RuntimeError):
    """A ``fail`` expectation was violated: the step stops and writes nothing."""


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    action: str
    passed: int
    failed: int


@dataclass
class QualityResult:
    kept: ir.Table
    quarantined: ir.Table
    rows_in: int
    rows_kept: int
    rows_quarantined: int
    outcomes: list[RuleOutcome] = field(default_factory=list)


def _flag_column(rule_name: str) -> str:
    return f"__ok_{rule_name}"


def flag_rows(table: ir.Table, expectations: list[Expectation]) -> ir.Table:
    """Add one boolean column per expectation (NULL counts as a failure: unknown is not proof of quality)."""
    if not expectations:
        return table
    checks = ", ".join(f"COALESCE(({e.rule}), FALSE) AS {_flag_column(e.name)}" for e in expectations)
    return table.alias("__rows").sql(f"SELECT *, {checks} FROM __rows")  # noqa: S608 - rules come from YAML


def apply_expectations(table: ir.Table, expectations: list[Expectation], table_name: str) -> QualityResult:
    """Split ``table`` into kept and quarantined rows and count every rule.

    Quarantined rows carry ``_rule`` (the first failing drop rule), ``_failed_rules`` and ``_reason``.
    Raises QualityError when a ``fail`` rule has any failing row; conservation is checked before returning.
    """
    flagged = flag_rows(table, expectations)
    aggs = {"__n": flagged.count()}
    for e in expectations:
        aggs[e.name] = (~flagged[_flag_column(e.name)]).sum().coalesce(0)
    counts = flagged.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    rows_in = int(counts.pop("__n"))
    outcomes = [RuleOutcome(e.name, e.action, rows_in - int(counts[e.name]), int(counts[e.name])) for e in expectations]
    for e, o in zip(expectations, outcomes, strict=True):
        if e.action == "fail" and o.failed:
            raise QualityError(
                f"{table_name}: expectation '{e.name}' ({e.rule}) failed on {o.failed} of {rows_in} rows; "
                "action is fail, table left unchanged"
            )
    drops = [e for e in expectations if e.action == "drop"]
    if drops:
        ok = ibis.and_(*[flagged[_flag_column(e.name)] for e in drops])
        first_rule = ibis.cases(*[(~flagged[_flag_column(e.name)], e.name) for e in drops], else_=None)
        reasons = ibis.cases(
            *[(~flagged[_flag_column(e.name)], f"{e.name}: {e.description or e.rule}") for e in drops],
            else_=None,
        )
        failed_list = (
            ibis.array([ibis.ifelse(~flagged[_flag_column(e.name)], e.name, ibis.null("string")) for e in drops])
            .filter(lambda x: x.notnull())
            .join(",")
        )
    else:
        ok = ibis.literal(True)
        first_rule = reasons = failed_list = ibis.null("string")
    original = list(table.columns)
    kept = flagged.filter(ok).select(*original)
    quarantined = flagged.filter(~ok).select(*original, _rule=first_rule, _failed_rules=failed_list, _reason=reasons)
    rows_quarantined = int(quarantined.count().to_pyarrow().as_py())
    rows_kept = rows_in - rows_quarantined
    result = QualityResult(kept, quarantined, rows_in, rows_kept, rows_quarantined, outcomes)
    check_conservation(result, table_name)
    return result


def check_conservation(result: QualityResult, table_name: str) -> None:
    """rows in = rows kept + rows quarantined, measured, not assumed."""
    kept = int(result.kept.count().to_pyarrow().as_py())
    if kept + result.rows_quarantined != result.rows_in:
        raise ConservationError(
            f"{table_name}: row conservation violated: {result.rows_in} in != {kept} kept + "
            f"{result.rows_quarantined} quarantined"
        )
