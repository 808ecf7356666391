"""Expectations on a table: ``warn`` keeps and counts, ``drop`` moves rows to quarantine, ``fail`` stops."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from goldgate.sql_dialect import run_duckdb_sql
from goldgate.usecase import Expectation, Mapping

_ALIASES = itertools.count()
QUALITY = "ops.quality"
# The ops.quality row that summarises a whole batch: passed = rows kept, failed = rows quarantined.
BATCH_RULE = "__batch__"
MAPPING_PREFIX = "mapping:"
# Rows of one batch that repeat a key already kept: quarantined under this rule rather than deduplicated silently.
REPEAT_RULE = "one_row_per_key"


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


def _ident(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def rule_sql(e: Expectation, refs: dict[str, str] | None = None) -> str:
    """The expectation as a SQL boolean over one row of ``__rows`` (true = the row passes).

    ``refs`` maps the logical names that foreign keys reference to the relations holding them.
    """
    if e.rule is not None:
        return e.rule
    if e.not_null is not None:
        return " AND ".join(f"{_ident(c)} IS NOT NULL" for c in e.not_null)
    if e.unique is not None:
        return f"COUNT(*) OVER (PARTITION BY {', '.join(_ident(c) for c in e.unique)}) = 1"
    if e.in_set is not None:
        values = e.in_set.values
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            # Numbers against a column of any type: text that is not a number simply fails the rule.
            return f"TRY_CAST({_ident(e.in_set.column)} AS DOUBLE) IN ({', '.join(_literal(v) for v in values)})"
        return f"CAST({_ident(e.in_set.column)} AS VARCHAR) IN ({', '.join(_literal(str(v)) for v in values)})"
    if e.between is not None:
        b, col = e.between, _ident(e.between.column)
        lo, hi = (">", "<") if b.exclusive else (">=", "<=")
        parts = ([f"{col} {lo} {b.min!r}"] if b.min is not None else []) + (
            [f"{col} {hi} {b.max!r}"] if b.max is not None else []
        )
        return " AND ".join(parts)
    if e.matches is not None:
        return f"regexp_full_match(CAST({_ident(e.matches.column)} AS VARCHAR), {_literal(e.matches.pattern)})"
    if e.foreign_key is not None:
        fk = e.foreign_key
        relation = (refs or {}).get(fk.table)
        if relation is None:
            raise QualityError(f"expectation '{e.name}': referenced table {fk.table} is not available")
        return f"{_ident(fk.column)} IN (SELECT {_ident(fk.ref_column)} FROM {_ident(relation)})"  # noqa: S608
    if e.freshness is not None:
        f = e.freshness
        return (
            f"(SELECT CAST(MAX({_ident(f.column)}) AS DATE) FROM __rows) >= "  # noqa: S608
            f"CURRENT_DATE - INTERVAL {int(f.max_age_days)} DAY"
        )
    raise QualityError(f"expectation '{e.name}' has no check")


def flag_rows(table: ir.Table, expectations: list[Expectation], refs: dict[str, str] | None = None) -> ir.Table:
    """Add one boolean column per expectation (NULL counts as a failure: unknown is not proof of quality)."""
    if not expectations:
        return table
    checks = ", ".join(f"COALESCE(({rule_sql(e, refs)}), FALSE) AS {_flag_column(e.name)}" for e in expectations)
    alias = f"__rows_{next(_ALIASES)}"  # unique, so flagged tables can be combined in one query
    sql = f"SELECT *, {checks} FROM {alias}".replace("FROM __rows)", f"FROM {alias})")  # noqa: S608 - YAML rules
    return run_duckdb_sql(table.alias(alias), sql)  # rules are DuckDB SQL; transpiled on other engines


def normalized_text(value: ir.Value) -> ir.StringValue:
    """Lower-cased, trimmed text with inner whitespace collapsed: how spellings are matched to a reference."""
    return value.cast("string").strip().re_replace(r"\s+", " ").lower()


def _reference_lookup(ref: ir.Table, column: str) -> ir.Table:
    """Normalized spelling -> the reference's own spelling (the smallest, should two differ only in case)."""
    pairs = ref.select(_norm=normalized_text(ref[column]), _canon=ref[column].cast("string"))
    return pairs.filter(pairs._norm.notnull()).group_by("_norm").aggregate(_canon=pairs._canon.min())


def apply_mappings(
    table: ir.Table, mappings: list[Mapping], refs: dict[str, ir.Table] | None = None, only_present: bool = False
) -> tuple[ir.Table, dict[str, int]]:
    """Replace known spellings by canonical values; returns the table and how many rows each mapping changed.

    ``refs`` holds the tables that ``reference`` mappings point at, by logical name; with ``only_present``,
    mappings of columns the table lacks are skipped (one use case's mappings applied to several tables).
    """
    counts: dict[str, int] = {}
    for m in mappings:
        if only_present and m.column not in table.columns:
            continue
        dtype = table[m.column].type()
        original = table[m.column].cast("string")
        mapped = original
        if m.values:
            lookup = {(k.lower() if m.case_insensitive else k): v for k, v in m.values.items()}
            probe = original.strip().lower() if m.case_insensitive else original.strip()
            mapped = probe.substitute(lookup, else_=original)
        staged = table.mutate(_gg_mapped=mapped)
        if m.reference is not None:
            ref_name, _, ref_col = m.reference.rpartition(".")
            if refs is None or ref_name not in refs:
                raise QualityError(f"mapping of '{m.column}': referenced table {ref_name} is not available")
            spelled = _reference_lookup(refs[ref_name], ref_col)
            joined = staged.left_join(spelled, normalized_text(staged._gg_mapped) == spelled._norm)
            staged = joined.select(*table.columns, _gg_mapped=joined._canon.coalesce(joined._gg_mapped))
        staged = staged.mutate(_gg_changed=(staged._gg_mapped != staged[m.column].cast("string")).fill_null(False))
        counts[m.column] = counts.get(m.column, 0) + int(staged._gg_changed.sum().to_pyarrow().as_py() or 0)
        table = staged.mutate(**{m.column: staged._gg_mapped.cast(dtype)}).drop("_gg_mapped", "_gg_changed")
    return table, counts


def apply_expectations(
    table: ir.Table, expectations: list[Expectation], table_name: str, refs: dict[str, str] | None = None
) -> QualityResult:
    """Split ``table`` into kept and quarantined rows and count every rule.

    Quarantined rows carry ``_rule`` (the first failing drop rule), ``_failed_rules`` and ``_reason``.
    Raises QualityError when a ``fail`` rule has any failing row; conservation is checked before returning.
    """
    # Materialized once: the counts, the split and the conservation check then scan it instead of recomputing.
    flagged = flag_rows(table, expectations, refs).cache()
    aggs = {"__n": flagged.count()}
    for e in expectations:
        aggs[e.name] = (~flagged[_flag_column(e.name)]).sum().coalesce(0)
    counts = flagged.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    rows_in = int(counts.pop("__n"))
    outcomes = [RuleOutcome(e.name, e.action, rows_in - int(counts[e.name]), int(counts[e.name])) for e in expectations]
    for e, o in zip(expectations, outcomes, strict=True):
        if e.action == "fail" and o.failed:
            raise QualityError(
                f"{table_name}: expectation '{e.name}' ({rule_sql(e, refs)}) failed on {o.failed} of {rows_in} rows; "
                "action is fail, table left unchanged"
            )
    drops = [e for e in expectations if e.action == "drop"]
    if drops:
        ok = ibis.and_(*[flagged[_flag_column(e.name)] for e in drops])
        first_rule = ibis.cases(*[(~flagged[_flag_column(e.name)], e.name) for e in drops], else_=None)
        reasons = ibis.cases(
            *[(~flagged[_flag_column(e.name)], f"{e.name}: {e.description or rule_sql(e, refs)}") for e in drops],
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


def quarantine_repeats(
    result: QualityResult, keys: list[str], order_by: str | list[str], table_name: str
) -> QualityResult:
    """Of the kept rows sharing a key, keep the first by ``order_by``; the rest go to quarantine (``REPEAT_RULE``).

    A batch that says two things about one key is not collapsed silently: every row still ends up kept or
    quarantined, and the repeats are counted in ``ops.quality`` like any other rule.
    """
    order = ", ".join(_ident(c) for c in ([order_by] if isinstance(order_by, str) else order_by))
    check = Expectation(
        name=REPEAT_RULE,
        rule=f"ROW_NUMBER() OVER (PARTITION BY {', '.join(_ident(k) for k in keys)} ORDER BY {order}) = 1",
        description=f"one row per {', '.join(keys)} in a batch: the first is kept, later ones are quarantined",
    )
    repeats = apply_expectations(result.kept, [check], table_name)
    combined = QualityResult(
        kept=repeats.kept,
        quarantined=result.quarantined.union(repeats.quarantined),
        rows_in=result.rows_in,
        rows_kept=repeats.rows_kept,
        rows_quarantined=result.rows_quarantined + repeats.rows_quarantined,
        outcomes=[
            *result.outcomes,
            RuleOutcome(REPEAT_RULE, "drop", result.rows_in - repeats.rows_quarantined, repeats.rows_quarantined),
        ],
    )
    check_conservation(combined, table_name)
    return combined


def check_conservation(result: QualityResult, table_name: str) -> None:
    """rows in = rows kept + rows quarantined, measured, not assumed."""
    kept = int(result.kept.count().to_pyarrow().as_py())
    if kept + result.rows_quarantined != result.rows_in:
        raise ConservationError(
            f"{table_name}: row conservation violated: {result.rows_in} in != {kept} kept + "
            f"{result.rows_quarantined} quarantined"
        )


def quality_rows(
    table_name: str, input_table: str, batch_id: str, result: QualityResult, remapped: dict[str, int]
) -> pa.Table:
    """The ``ops.quality`` rows of one batch: each rule, each mapping, and the batch's conservation summary."""
    now = datetime.now(UTC)
    outcomes = [
        *result.outcomes,
        *(RuleOutcome(f"{MAPPING_PREFIX}{col}", "map", result.rows_in - n, n) for col, n in remapped.items()),
        RuleOutcome(BATCH_RULE, "summary", result.rows_kept, result.rows_quarantined),
    ]
    return pa.Table.from_pylist(
        [
            {
                "table_name": table_name,
                "input_table": input_table,
                "batch_id": batch_id,
                "rule": o.rule,
                "action": o.action,
                "passed": o.passed,
                "failed": o.failed,
                "checked_at": now,
            }
            for o in outcomes
        ],
        schema=QUALITY_SCHEMA,
    )


QUALITY_SCHEMA = pa.schema(
    [
        ("table_name", pa.string()),
        ("input_table", pa.string()),
        ("batch_id", pa.string()),
        ("rule", pa.string()),
        ("action", pa.string()),
        ("passed", pa.int64()),
        ("failed", pa.int64()),
        ("checked_at", pa.timestamp("us", tz="UTC")),
    ]
)


def latest_quarantine_share(quality: ir.Table, table_name: str) -> float | None:
    """Quarantined share of the most recently checked batch of ``table_name`` (None if never checked)."""
    rows = quality.filter((quality.table_name == table_name) & (quality.rule == BATCH_RULE))
    latest = rows.order_by(ibis.desc("checked_at")).limit(1).to_pyarrow().to_pylist()
    if not latest:
        return None
    total = latest[0]["passed"] + latest[0]["failed"]
    return latest[0]["failed"] / total if total else 0.0


def quality_report(quality: ir.Table, last_batches: int = 5) -> list[dict[str, object]]:
    """Per table and rule: totals over every batch, and failures in each of the last batches (oldest first)."""
    rows = quality.filter(quality.rule != BATCH_RULE).to_pyarrow().to_pylist()
    batches = quality.filter(quality.rule == BATCH_RULE).order_by("checked_at").to_pyarrow().to_pylist()
    report = []
    for table in sorted({r["table_name"] for r in rows}):
        recent = [b["batch_id"] for b in batches if b["table_name"] == table][-last_batches:]
        for rule in sorted({(r["rule"], r["action"]) for r in rows if r["table_name"] == table}):
            mine = [r for r in rows if r["table_name"] == table and (r["rule"], r["action"]) == rule]
            by_batch = {r["batch_id"]: r["failed"] for r in mine}
            report.append(
                {
                    "table": table,
                    "rule": rule[0],
                    "action": rule[1],
                    "passed": sum(r["passed"] for r in mine),
                    "failed": sum(r["failed"] for r in mine),
                    "trend": [by_batch.get(b) for b in recent],
                }
            )
    for table in sorted({b["table_name"] for b in batches}):
        mine = [b for b in batches if b["table_name"] == table]
        report.append(
            {
                "table": table,
                "rule": "(quarantined rows)",
                "action": "drop",
                "passed": sum(b["passed"] for b in mine),
                "failed": sum(b["failed"] for b in mine),
                "trend": [b["failed"] for b in mine[-last_batches:]],
            }
        )
    return report
