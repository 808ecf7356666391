"""DuckDB SQL snippets (Silver's date parsing, expectation rules) run on whichever engine holds the table.

Expectation rules in a use-case YAML are written in DuckDB SQL. On DuckDB they run as written. On another engine
they are transpiled with sqlglot, after rewriting the few DuckDB functions sqlglot leaves untranslated into
equivalents of the target engine (today: Spark).
"""

from __future__ import annotations

import re
from typing import Any

import ibis
import ibis.expr.types as ir
import sqlglot
from sqlglot import exp

SOURCE_DIALECT = "duckdb"
SPARK_BACKENDS = ("pyspark", "databricks")

# strftime directive -> Spark datetime pattern (https://spark.apache.org/docs/latest/sql-ref-datetime-pattern.html).
_SPARK_PATTERNS = {
    "%Y": "y",
    "%y": "yy",
    "%m": "M",
    "%d": "d",
    "%B": "MMMM",
    "%b": "MMM",
    "%H": "H",
    "%M": "m",
    "%S": "s",
    "%f": "SSSSSS",
    "%j": "DDD",
    "%%": "%",
}
_DIRECTIVE = re.compile(r"%.")


class SqlDialectError(ValueError):
    """A DuckDB SQL snippet uses something the target engine has no translation for."""


# Control characters in Spark SQL string literals: Spark's parser knows \t \n \r \b and \uXXXX, not \v \f \a.
_SPARK_ESCAPES = {"\v": "\\u000B", "\f": "\\u000C", "\a": "\\u0007"}


def spark_dialect() -> Any:
    """Ibis' PySpark SQL dialect, writing control characters in string literals the way Spark reads them.

    sqlglot writes a vertical tab as ``'\\v'`` (and a form feed as ``'\\f'``), which Spark's parser reads as the
    letters ``v`` and ``f``: Ibis' ``strip()``, a ``TRIM`` of ``' \\t\\n\\r\\v\\f'``, would also cut a leading or
    trailing ``v`` or ``f`` ("Bea Petrov" -> "Bea Petro"). Spark reads ``\\uXXXX`` escapes, so those are written
    instead. Idempotent; called whenever goldgate connects to Spark or writes Spark SQL.
    """
    from ibis.backends.sql.dialects import PySpark

    PySpark.ESCAPED_SEQUENCES = {**PySpark.ESCAPED_SEQUENCES, **_SPARK_ESCAPES}
    return PySpark


def run_duckdb_sql(table: ir.Table, query: str) -> ir.Table:
    """``table.sql(query)`` for a query written in DuckDB SQL, on the engine ``table`` is bound to.

    ``table`` is usually aliased (``table.alias(name)``) and ``query`` selects from that name.
    """
    backend = ibis.get_backend(table)
    if backend.name == SOURCE_DIALECT:
        return table.sql(query)
    return table.sql(transpile(query, backend.name))


def transpile(query: str, backend: str) -> str:
    """``query`` (DuckDB SQL) in the SQL dialect of the Ibis backend named ``backend``."""
    tree = sqlglot.parse_one(query, read=SOURCE_DIALECT)
    if backend in SPARK_BACKENDS:
        return str(tree.transform(_spark_function).sql(dialect=spark_dialect()))
    return str(tree.sql(dialect=backend))


def strftime_to_spark(fmt: str) -> str:
    """A strftime format (DuckDB's ``strptime``) as a Spark datetime pattern; literal letters are quoted."""
    out: list[str] = []
    pos = 0
    for match in _DIRECTIVE.finditer(fmt):
        out.append(_spark_literal(fmt[pos : match.start()]))
        directive = match.group()
        if directive not in _SPARK_PATTERNS:
            raise SqlDialectError(f"strptime format '{fmt}': directive {directive} has no Spark equivalent")
        out.append(_SPARK_PATTERNS[directive])
        pos = match.end()
    out.append(_spark_literal(fmt[pos:]))
    return "".join(out)


def _spark_literal(text: str) -> str:
    """Literal text inside a Spark datetime pattern: letters must be quoted ('' is a quote)."""
    if not text:
        return ""
    if not re.search(r"[A-Za-z']", text):
        return text
    return "'" + text.replace("'", "''") + "'"


def re2_to_java(pattern: str) -> str:
    """An RE2 pattern (DuckDB) for Java's regex engine (Spark): ``$`` becomes ``\\z``.

    In RE2 ``$`` is the end of the text; in Java it also matches before a final line break, so ``'^[A-Z]{3}$'``
    would accept ``"USD\\n"`` on Spark only. A ``$`` escaped or inside a character class is a literal and stays,
    and so does every ``$`` of a pattern with the multi-line flag, where both engines read it as end of line.
    """
    if re.search(r"\(\?[a-zA-Z]*m", pattern):
        return pattern
    out: list[str] = []
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            out.append("\\z")
            continue
        out.append(char)
    return "".join(out)


def _string_argument(node: exp.Expression, function: str) -> str:
    if not (isinstance(node, exp.Literal) and node.is_string):
        raise SqlDialectError(f"{function}: the format or pattern must be a string literal to run on Spark")
    return str(node.this)


def _spark_function(node: exp.Expression) -> Any:
    """Rewrite a DuckDB function that sqlglot does not translate to Spark; other nodes pass unchanged."""
    if isinstance(node, exp.RegexpFullMatch):
        # RLIKE matches anywhere; anchoring with \z (end of input) gives a full match as in DuckDB (RE2).
        pattern = re2_to_java(_string_argument(node.expression, "regexp_full_match"))
        return exp.RegexpLike(this=node.this, expression=exp.Literal.string(f"^(?:{pattern})\\z"))
    if isinstance(node, exp.RegexpLike) and isinstance(node.expression, exp.Literal) and node.expression.is_string:
        return exp.RegexpLike(this=node.this, expression=exp.Literal.string(re2_to_java(str(node.expression.this))))
    if isinstance(node, exp.Anonymous) and node.name.upper() == "TRY_STRPTIME" and len(node.expressions) == 2:
        # NULL on text that does not parse, like DuckDB; Spark's TO_TIMESTAMP raises instead (ANSI mode).
        value, fmt = node.expressions
        pattern = strftime_to_spark(_string_argument(fmt, "try_strptime"))
        return exp.Anonymous(this="TRY_TO_TIMESTAMP", expressions=[value, exp.Literal.string(pattern)])
    return node
