"""DuckDB SQL snippets on Spark: strptime formats, full-match regexes and the built-in rule shapes, transpiled and
then checked value by value against DuckDB itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import ibis
import pytest

from goldgate.sql_dialect import SqlDialectError, run_duckdb_sql, strftime_to_spark, transpile

SILVER_DATE = (
    "CAST(COALESCE(TRY_STRPTIME(TRIM(v), '%Y-%m-%d'), TRY_STRPTIME(TRIM(v), '%d %B %Y')) AS DATE)"  # as in silver
)
CASES = [
    "2021-01-05",
    "2021-1-5",
    " 2021-01-05 ",
    "2021-02-30",
    "2022-13-01",
    "2019/01/05",
    "2019-01-05T00:00",
    "30 October 2026",
    "5 October 2026",
    "30 october 2026",
    "30 Oct 2026",
    "31.12.2022",
    "yesterday",
    "2021-01-05x",
    "",
    "USD",
    "usd",
    "US1",
    "USD\n",
]
# The one known difference: Spark's year field takes five digits where DuckDB's %Y stops at four.
KNOWN_DIFFERENT = {"02021-01-05": ((None, False), ((2021, 1, 5), False))}


@pytest.mark.parametrize(
    ("fmt", "pattern"),
    [
        ("%Y-%m-%d", "y-M-d"),
        ("%d %B %Y", "d MMMM y"),
        ("%Y-%m-%dT%H:%M:%S", "y-M-d'T'H:m:s"),
        ("%d.%m.%y", "d.M.yy"),
        ("%Y%m%d", "yMd"),
        ("100%% %Y", "100% y"),
        ("%Y at o'clock", "y' at o''clock'"),
    ],
)
def test_strftime_formats_become_spark_patterns(fmt: str, pattern: str) -> None:
    assert strftime_to_spark(fmt) == pattern


def test_an_untranslatable_directive_is_an_error_naming_it() -> None:
    with pytest.raises(SqlDialectError, match="%Z"):
        strftime_to_spark("%Y %Z")
    with pytest.raises(SqlDialectError, match="string literal"):
        transpile("SELECT TRY_STRPTIME(v, fmt_column) FROM t", "pyspark")


@pytest.mark.parametrize(
    ("rule", "spark"),
    [
        # RE2's $ is the end of the text; Java's would also match before a final line break.
        ("regexp_matches(currency, '^[A-Z]{3}$')", "currency RLIKE '^[A-Z]{3}\\\\z'"),
        ("regexp_matches(c, 'a[$]|(?m)b$')", "c RLIKE 'a[$]|(?m)b$'"),
        ("regexp_full_match(CAST(\"c\" AS VARCHAR), '[a-z]+')", "CAST(`c` AS STRING) RLIKE '^(?:[a-z]+)\\\\z'"),
        ('TRY_CAST("x" AS DOUBLE) IN (1, 2.5)', "TRY_CAST(`x` AS DOUBLE) IN (1, 2.5)"),
        ('COUNT(*) OVER (PARTITION BY "a", "b") = 1', "COUNT(*) OVER (PARTITION BY `a`, `b`) = 1"),
    ],
)
def test_rules_are_transpiled_to_spark_sql(rule: str, spark: str) -> None:
    assert transpile(f"SELECT {rule} FROM r", "pyspark") == f"SELECT {spark} FROM r"


def test_duckdb_runs_the_sql_as_written() -> None:
    table = ibis.duckdb.connect().create_table("t0", ibis.memtable({"v": ["2021-01-05", "nope"]}))
    out = run_duckdb_sql(table.alias("t"), f"SELECT v, {SILVER_DATE} AS d FROM t").to_pyarrow().to_pylist()
    assert [r["d"] is None for r in out] == [False, True]


def _duckdb_values(values: list[str], query: str) -> dict[str, tuple[Any, ...]]:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?) AS v", [values])
    return {row[0]: tuple(row[1:]) for row in con.execute(query).fetchall()}


def _spark_values(spark: Any, values: list[str], query: str) -> dict[str, tuple[Any, ...]]:
    spark.createDataFrame([(v,) for v in values], "v string").createOrReplaceTempView("sql_dialect_cases")
    table = ibis.pyspark.connect(spark).table("sql_dialect_cases")
    out = run_duckdb_sql(table.alias("t"), query).to_pyarrow().to_pylist()
    return {row["v"]: tuple(v for k, v in row.items() if k != "v") for row in out}


def test_dates_and_regexes_parse_on_spark_as_on_duckdb(spark: Any) -> None:
    query = (
        f"SELECT v, {SILVER_DATE} AS d, regexp_full_match(v, '[A-Z]{{3}}') AS full_match, "
        "regexp_matches(v, '^[A-Z]{3}$') AS search FROM t"
    )
    values = [*CASES, *KNOWN_DIFFERENT]
    on_duckdb, on_spark = _duckdb_values(values, query), _spark_values(spark, values, query)
    assert {v: on_spark[v] for v in CASES} == {v: on_duckdb[v] for v in CASES}
    # Checked, so a change on either side shows up here instead of silently in silver.
    for value, ((duck_date, duck_match), (spark_date, spark_match)) in KNOWN_DIFFERENT.items():
        assert (on_duckdb[value][0], on_duckdb[value][1]) == (duck_date, duck_match)
        spark_got = on_spark[value][0]
        assert ((spark_got.year, spark_got.month, spark_got.day), on_spark[value][1]) == (spark_date, spark_match)


def test_strip_trims_whitespace_and_not_letters_on_spark(tmp_path: Path, spark: Any) -> None:
    """Ibis' strip() is a TRIM of whitespace characters; Spark once read two of them as the letters v and f."""
    from goldgate.engine import connect_spark
    from goldgate.settings import Settings

    values = ["  Bea   Petrov ", "Bea Petrov\v", "\f\tsoftwaref\n", "leaf", "vivid"]
    con = connect_spark(Settings(workspace=tmp_path, engine="spark"))
    table = con.create_view("strip_cases", ibis.memtable({"v": values}), overwrite=True)
    expr = table.select(table.v, cleaned=table.v.strip().re_replace(r"\s+", " "))
    rows = expr.to_pyarrow().to_pylist()
    assert {r["v"]: r["cleaned"] for r in rows} == {v: " ".join(v.split()) for v in values}
