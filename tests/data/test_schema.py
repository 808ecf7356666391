"""Silver typing: bronze text cells cast to the declared types, strictly and alike on DuckDB and Spark."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest

from goldgate.data.schema import (
    METADATA,
    SchemaError,
    cast_expectations,
    missing_columns,
    shape_bronze,
    type_columns,
    undeclared_columns,
)
from goldgate.quality import apply_expectations
from goldgate.usecase import Column, Source, Unpivot

AT = datetime(2024, 1, 10, tzinfo=UTC)
_NAMES = itertools.count()


@pytest.fixture(scope="module")
def con() -> Any:
    return ibis.duckdb.connect()


Cells = Mapping[str, Sequence[str | None]]


def bronze_arrow(cells: Cells) -> pa.Table:
    """A bronze batch as ingested: every source column as text, plus the metadata columns."""
    n = len(next(iter(cells.values())))
    return pa.table(
        {
            **{name: pa.array(values, pa.string()) for name, values in cells.items()},
            "_row_number": pa.array(range(1, n + 1), pa.int64()),
            "_file": pa.array(["batch.csv"] * n, pa.string()),
            "_ingested_at": pa.array([AT] * n, pa.timestamp("us", tz="UTC")),
            "_source": pa.array(["batch.csv"] * n, pa.string()),
            "_batch_id": pa.array(["b0"] * n, pa.string()),
        }
    )


def bronze(con: Any, cells: Cells) -> ir.Table:
    return con.create_table(f"bronze_{next(_NAMES)}", bronze_arrow(cells), temp=True)


def rows(table: ir.Table, *columns: str) -> list[dict[str, Any]]:
    """The table's rows in file order (then by ``columns``)."""
    return sorted(table.to_pyarrow().to_pylist(), key=lambda r: (r["_row_number"], *(r[c] for c in columns)))


def typed_values(con: Any, texts: Sequence[str | None], column: Column, source: Source | None = None) -> list[Any]:
    """``texts`` as one column typed as ``column`` declares, in order, with the raw text checked on the way."""
    source = source or Source()
    out = rows(type_columns(bronze(con, {"v": texts}), {"v": column}, source))
    if column.type != "string":
        trimmed = [t.strip() if t is not None and t.strip() not in source.missing else None for t in texts]
        assert [r["raw_v"] for r in out] == trimmed
    return [r["v"] for r in out]


def test_float_accepts_finite_numbers_only(con: Any) -> None:
    texts = ["1.5", " 2 ", "-3e2", ".5", "+7.", "inf", "-inf", "Infinity", "1e999", "-1e999", "1.5d", "1_000", "abc"]
    expected = [1.5, 2.0, -300.0, 0.5, 7.0] + [None] * 8
    assert typed_values(con, texts, Column(type="float")) == expected


def test_nan_fails_when_it_is_no_missing_spelling(con: Any) -> None:
    source = Source(missing=["NA"])
    table = type_columns(bronze(con, {"v": ["nan", "NaN", "NA", "2"]}), {"v": Column(type="float")}, source)
    result = apply_expectations(table, cast_expectations({"v": Column(type="float")}, source), "silver.t")
    assert [(r["raw_v"], r["_rule"]) for r in rows(result.quarantined)] == [("nan", "v_parses"), ("NaN", "v_parses")]
    assert [(r["raw_v"], r["v"]) for r in rows(result.kept)] == [(None, None), ("2", 2.0)]


def test_float_with_decimal_comma_and_thousands_dot(con: Any) -> None:
    source = Source(decimal=",", thousands=".")
    texts = ["1.234,5", "1234,5", "-12,25", "1.234.567", "1.5", "12.34,5", "1,2,3"]
    # '1.5' is no number with '.' grouping thousands, and a group of two digits is no grouping.
    assert typed_values(con, texts, Column(type="float"), source) == [
        1234.5,
        1234.5,
        -12.25,
        1234567.0,
        None,
        None,
        None,
    ]


def test_float_with_thousands_comma(con: Any) -> None:
    source = Source(thousands=",")
    assert typed_values(con, ["1,234,567.25", "1234", "1,23"], Column(type="float"), source) == [1234567.25, 1234, None]


def test_float_reads_a_percentage_as_a_fraction(con: Any) -> None:
    texts = ["13.5%", "7 %", "-2.5%", "100%", "0.25%", "%", "5%%", "%5", "1,5%", "abc%", "inf%"]
    expected = [0.135, 0.07, -0.025, 1.0, 0.0025] + [None] * 6
    assert typed_values(con, texts, Column(type="float")) == pytest.approx(expected)
    source = Source(decimal=",", thousands=".")
    assert typed_values(con, ["13,5%", "1.234,5 %"], Column(type="float"), source) == pytest.approx([0.135, 12.345])


def test_int_and_epoch_columns_take_no_percentage(con: Any) -> None:
    assert typed_values(con, ["3%", "300%", "3"], Column(type="int")) == [None, None, 3]
    epoch = Column(type="timestamp", format="epoch_s")
    assert typed_values(con, ["10%", "0"], epoch) == [None, datetime(1970, 1, 1)]


def test_int_needs_a_whole_number_within_int64(con: Any) -> None:
    texts = ["3", "3.0", "-12", "1e3", "9223372036854775807", "3.5", "9223372036854775808", "1e19", "x", "nan"]
    expected = [3, 3, -12, 1000, 9223372036854775807, None, None, None, None, None]
    assert typed_values(con, texts, Column(type="int")) == expected


def test_bool_by_spelling(con: Any) -> None:
    texts = ["yes", "No", " Y ", "TRUE", "0", "maybe", "2"]
    assert typed_values(con, texts, Column(type="bool")) == [True, False, True, True, False, None, None]
    custom = Column(type="bool", true_values=["Ja"], false_values=["nein"])
    assert typed_values(con, ["ja", "NEIN", "yes"], custom) == [True, False, None]


def test_missing_spellings_are_null_and_no_failure(con: Any) -> None:
    texts = ["NA", "N/A", "", "  ", "-", "null", None, "1.5"]
    table = type_columns(bronze(con, {"v": texts}), {"v": Column(type="float")}, Source())
    assert [r["v"] for r in rows(table)] == [None] * 7 + [1.5]
    result = apply_expectations(table, cast_expectations({"v": Column(type="float")}, Source()), "silver.t")
    assert (result.rows_kept, result.rows_quarantined) == (8, 0)


def test_missing_spellings_are_the_sources(con: Any) -> None:
    source = Source(missing=["?"])
    out = rows(type_columns(bronze(con, {"v": ["?", " ? ", "NA", ""]}), {"v": Column(type="float")}, source))
    assert [(r["raw_v"], r["v"]) for r in out] == [(None, None), (None, None), ("NA", None), (None, None)]


def test_text_is_trimmed_with_inner_whitespace_kept(con: Any) -> None:
    texts = ["  Bea  Petrov ", "\tx\ty\n", "NA", "-", "verb", "five"]
    assert typed_values(con, texts, Column()) == ["Bea  Petrov", "x\ty", None, None, "verb", "five"]


def test_iso_dates(con: Any) -> None:
    texts = ["2012-01-31", " 2000-02-29 ", "2012-02-30", "2012-1-5", "31.01.2012", "2012-01-31 10:00", "infinity"]
    assert typed_values(con, texts, Column(type="date")) == [date(2012, 1, 31), date(2000, 2, 29)] + [None] * 5


def test_iso_timestamps_in_utc(con: Any) -> None:
    texts = [
        "2012-01-31 10:00",
        "2012-01-31T10:00:00Z",
        "2012-01-31T10:00:00+02:00",
        "2012-01-31 10:00:00.25 -0530",
        "2012-01-31T23:30+02",
        "2012-01-31T10:00:00.1234567",
        "2012-01-31",
        "2012-01-31 25:00",
        "2012-01-31 24:00",
        "2012-01-31 10:60",
        "2012-01-31T10:00:00+24:00",
        "2012-01-31T10:00:00 CET",
        "10:00",
        "infinity",
    ]
    expected = [
        datetime(2012, 1, 31, 10),
        datetime(2012, 1, 31, 10),
        datetime(2012, 1, 31, 8),
        datetime(2012, 1, 31, 15, 30, 0, 250000),
        datetime(2012, 1, 31, 21, 30),
        datetime(2012, 1, 31, 10, 0, 0, 123456),
        datetime(2012, 1, 31),
    ] + [None] * 7
    assert typed_values(con, texts, Column(type="timestamp")) == expected
    assert typed_values(con, ["2012-01-31T10:00Z"], Column(type="timestamp", format="iso")) == [expected[0]]


@pytest.mark.parametrize(
    ("fmt", "kind", "good", "parsed", "bad"),
    [
        ("%Y/%m/%d", "date", "2012/01/31", date(2012, 1, 31), ["2012-01-31", "2012/01/31 x", "2012/02/30"]),
        ("%d.%m.%Y", "date", "31.01.2012", date(2012, 1, 31), ["2012-01-31", "31.13.2012", "31.01.2012."]),
        ("%b-%Y", "date", "Mar-2018", date(2018, 3, 1), ["2018-03", "Mars-2018", "Mar 2018"]),
        ("%b %d %Y", "date", "Jan 1 2000", date(2000, 1, 1), ["Jan-1-2000", "1 Jan 2000", "Jan 1 2000 x"]),
        ("%Y-%m-%d %H:%M", "timestamp", "2012-01-31 10:05", datetime(2012, 1, 31, 10, 5), ["2012-01-31", "10:05"]),
    ],
)
def test_strftime_formats_are_strict(
    con: Any, fmt: str, kind: str, good: str, parsed: date | datetime, bad: list[str]
) -> None:
    column = Column(type=kind, format=fmt)  # type: ignore[arg-type]
    assert typed_values(con, [good, *bad, "NA"], column) == [parsed] + [None] * (len(bad) + 1)


def test_epoch_seconds_and_milliseconds(con: Any) -> None:
    seconds = ["1325376000", "1325376000.5", "-86400", "abc", "1e20", "inf"]
    assert typed_values(con, seconds, Column(type="timestamp", format="epoch_s")) == [
        datetime(2012, 1, 1),
        datetime(2012, 1, 1, 0, 0, 0, 500000),
        datetime(1969, 12, 31),
        None,
        None,
        None,
    ]
    millis = ["1325376000123", "1325376000", "12x"]
    assert typed_values(con, millis, Column(type="timestamp", format="epoch_ms")) == [
        datetime(2012, 1, 1, 0, 0, 0, 123000),
        datetime(1970, 1, 16, 8, 9, 36),
        None,
    ]
    assert typed_values(con, ["1325419200"], Column(type="date", format="epoch_s")) == [date(2012, 1, 1)]


def test_columns_are_read_from_their_source_names_and_ignored_ones_dropped(con: Any) -> None:
    raw = bronze(con, {"Date": ["2024-01-02"], "Price EUR": ["9,5"], "note": ["hi"], "spare": ["x"]})
    columns = {
        "date": Column(type="date", role="time", source="Date"),
        "price": Column(type="float", source="Price EUR"),
        "note": Column(role="ignore"),
    }
    table = type_columns(raw, columns, Source(decimal=","))
    # This batch has no _extra (a Parquet file, say): it reads NULL, as on a line as wide as its header.
    assert table.columns == ("date", "price", "raw_date", "raw_price", *METADATA)
    assert rows(table)[0] | {"_ingested_at": None} == {
        "date": date(2024, 1, 2),
        "price": 9.5,
        "raw_date": "2024-01-02",
        "raw_price": "9,5",
        "_batch_id": "b0",
        "_row_number": 1,
        "_ingested_at": None,
        "_file": "batch.csv",
        "_extra": None,
    }


def test_missing_and_undeclared_columns() -> None:
    columns = {
        "date": Column(type="date", role="time", source="Date"),
        "price": Column(type="float"),
        "note": Column(role="ignore"),
    }
    raw = ["Date", "extra", "_row_number", "_file", "_source", "_extra"]
    assert missing_columns(raw, columns) == ["price"]  # an ignored column may be absent
    assert undeclared_columns(raw, columns, Source()) == ["extra"]


def test_type_columns_stops_on_a_missing_column(con: Any) -> None:
    raw = bronze(con, {"date": ["2024-01-02"]})
    with pytest.raises(SchemaError, match=r"lacks the declared column\(s\) Price: silver"):
        type_columns(raw, {"date": Column(type="date"), "price": Column(type="float", source="Price")}, Source())


def test_an_unknown_format_is_rejected_by_the_schema() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="format 'YYYY-MM-DD' is neither iso, epoch_s, epoch_ms nor a strftime"):
        Column(type="date", format="YYYY-MM-DD")
    with pytest.raises(ValidationError, match="format applies to date and timestamp columns, not float"):
        Column(type="float", format="%Y")


def test_names_that_clash_with_raw_text_columns_are_an_error(con: Any) -> None:
    raw = bronze(con, {"x": ["1"], "raw_x": ["2"]})
    with pytest.raises(SchemaError, match="raw_x clash with a raw_ text column"):
        type_columns(raw, {"x": Column(type="int"), "raw_x": Column()}, Source())


ECB: Cells = {
    "Date": ["2024-01-03", "2024-01-02", "2024-01-01", "2023-12-29"],
    "USD": ["1.0919", "", None, " 1.1050 "],
    "JPY": ["N/A", "155.73", " NA ", "abc"],
}
ECB_UNPIVOT = Unpivot(id_columns=["Date"], names_to="currency", values_to="rate")
ECB_COLUMNS = {
    "date": Column(type="date", role="time", source="Date"),
    "currency": Column(role="entity"),
    "rate": Column(type="float", role="target"),
}


def test_unpivot_makes_one_row_per_present_cell(con: Any) -> None:
    long = shape_bronze(bronze(con, ECB), Source(unpivot=ECB_UNPIVOT))
    out = rows(long, "currency")
    assert [(r["_row_number"], r["Date"], r["currency"], r["rate"]) for r in out] == [
        (1, "2024-01-03", "USD", "1.0919"),
        (2, "2024-01-02", "JPY", "155.73"),
        (4, "2023-12-29", "JPY", "abc"),
        (4, "2023-12-29", "USD", " 1.1050 "),
    ]
    assert {r["_batch_id"] for r in out} == {"b0"}
    typed = rows(type_columns(long, ECB_COLUMNS, Source(unpivot=ECB_UNPIVOT)), "currency")
    assert [(r["date"], r["currency"], r["rate"], r["raw_rate"]) for r in typed] == [
        (date(2024, 1, 3), "USD", 1.0919, "1.0919"),
        (date(2024, 1, 2), "JPY", 155.73, "155.73"),
        (date(2023, 12, 29), "JPY", None, "abc"),
        (date(2023, 12, 29), "USD", 1.105, "1.1050"),
    ]


def test_unpivot_of_listed_columns_and_its_bookkeeping(con: Any) -> None:
    spec = Unpivot(id_columns=["Date"], columns=["USD"], names_to="currency", values_to="rate")
    source = Source(unpivot=spec)
    long = shape_bronze(bronze(con, ECB), source)
    assert [r["rate"] for r in rows(long)] == ["1.0919", " 1.1050 "]
    assert missing_columns(list(long.columns), ECB_COLUMNS) == []
    assert undeclared_columns(list(long.columns), ECB_COLUMNS, source) == ["JPY"]
    assert undeclared_columns([*ECB, "_file"], ECB_COLUMNS, source) == ["JPY"]
    with pytest.raises(SchemaError, match="lacks the unpivot column"):
        shape_bronze(bronze(con, {"Date": ["2024-01-02"]}), source)


def test_no_unpivot_leaves_bronze_as_is(con: Any) -> None:
    raw = bronze(con, ECB)
    assert shape_bronze(raw, Source()) is raw


def test_cast_expectations_name_type_format_and_presence() -> None:
    columns = {
        "Order Date": Column(type="date", role="time", format="%d.%m.%Y"),
        "id": Column(role="entity"),
        "amount": Column(type="float", nullable=False),
        "flag": Column(type="bool"),
        "note": Column(type="int", role="ignore"),
    }
    rules = {e.name: e for e in cast_expectations(columns, Source(decimal=",", thousands="."))}
    assert list(rules) == [
        "row_fits_header",
        "order_date_parses",
        "amount_parses",
        "flag_parses",
        "order_date_present",
        "id_present",
        "amount_present",
    ]
    assert rules["order_date_parses"].rule == '"raw_Order Date" IS NULL OR "Order Date" IS NOT NULL'
    assert "a date in format '%d.%m.%Y'" in rules["order_date_parses"].description
    assert "decimal ',', thousands '.'" in rules["amount_parses"].description
    assert "a trailing % divides by 100" in rules["amount_parses"].description
    assert rules["row_fits_header"].rule == '"_extra" IS NULL'
    assert rules["id_present"].not_null == ["id"]
    assert {e.action for e in rules.values()} == {"drop"}


def test_cast_expectations_quarantine_exactly_the_bad_rows_with_their_text(con: Any) -> None:
    raw = bronze(
        con,
        {
            "id": ["a", "b", "NA", "d", "e", "f"],
            "day": ["2024-01-02", "2024-01-32", "2024-01-04", "2024-01-05", "", "2024-01-07"],
            "qty": ["3", "4", "5", "3.5", "6", "NA"],
            "ok": ["yes", "no", "y", "n", "true", "perhaps"],
        },
    )
    columns = {
        "id": Column(role="entity"),
        "day": Column(type="date", role="time"),
        "qty": Column(type="int"),
        "ok": Column(type="bool"),
    }
    typed = type_columns(raw, columns, Source())
    result = apply_expectations(typed, cast_expectations(columns, Source()), "silver.orders")
    assert [r["_row_number"] for r in rows(result.kept)] == [1]
    quarantined = {r["_row_number"]: r for r in rows(result.quarantined)}
    assert {n: (r["_rule"], r["_failed_rules"]) for n, r in quarantined.items()} == {
        2: ("day_parses", "day_parses,day_present"),  # the specific rule first
        3: ("id_present", "id_present"),
        4: ("qty_parses", "qty_parses"),
        5: ("day_present", "day_present"),
        6: ("ok_parses", "ok_parses"),
    }
    assert (quarantined[2]["raw_day"], quarantined[4]["raw_qty"], quarantined[6]["raw_ok"]) == (
        "2024-01-32",
        "3.5",
        "perhaps",
    )
    assert "day must be a date in format 'iso'" in quarantined[2]["_reason"]


def test_a_line_wider_than_its_header_is_quarantined_with_its_surplus_cells(con: Any) -> None:
    """An unquoted comma in '64,5' shifts every later cell: the row's values cannot be trusted in their columns."""
    cells = {"id": ["a", "b", "c"], "charges": ["64.5", "64", "70"], "churn": ["No", "5", "Yes"]}
    arrow = bronze_arrow(cells).append_column("_extra", pa.array([None, "No", None], pa.string()))
    raw = con.create_table(f"bronze_{next(_NAMES)}", arrow, temp=True)
    columns = {"id": Column(role="entity"), "charges": Column(type="float"), "churn": Column()}
    result = apply_expectations(type_columns(raw, columns, Source()), cast_expectations(columns, Source()), "silver.t")
    assert [r["id"] for r in rows(result.kept)] == ["a", "c"]
    [shifted] = rows(result.quarantined)
    assert (shifted["id"], shifted["raw_charges"], shifted["churn"], shifted["_extra"]) == ("b", "64", "5", "No")
    assert (shifted["_rule"], shifted["_failed_rules"]) == ("row_fits_header", "row_fits_header")
    assert "more fields than its header" in shifted["_reason"]


MIXED: Cells = {
    "Date": ["2024-01-02", "2024-02-30", "2024-01-04", "NA", "2024-01-06", "2024-01-07"],
    "when": ["2012-01-31T10:00:00+02:00", "2012-01-31 10:00", "2012-01-31T10:00:00.25Z", "x", "", "2012-01-31 24:00"],
    "Slash Date": ["2012/01/31", "2012-01-31", "2012/02/30", "2012/12/01", "Mar-2018", "2012/01/01"],
    "month": ["Mar-2018", "Dec-1999", "Mar 2018", "", "Jan-2000", "Feb-2001"],
    "epoch": ["1325376000", "1325376000.5", "abc", "1e20", "-1", "0"],
    "price": ["1.234,5", "12,5", "inf", "1e999", "1.5", "-0,25"],
    "qty": ["3", "3,0", "3,5", "9223372036854775808", "-2", "N/A"],
    "flag": ["yes", "No", "maybe", "1", "", "f"],
    "name": ["  Bea  Petrov ", "verb", "five", "-", "\tx\ty", "Zoë"],
    "rate": ["13,5%", "7 %", "%", "1.234,5%", "", "5%%"],
}
MIXED_COLUMNS = {
    "date": Column(type="date", role="time", source="Date"),
    "when": Column(type="timestamp"),
    "Slash Date": Column(type="date", format="%Y/%m/%d"),
    "month": Column(type="date", format="%b-%Y"),
    "epoch": Column(type="timestamp", format="epoch_s"),
    "price": Column(type="float"),
    "qty": Column(type="int"),
    "flag": Column(type="bool"),
    "name": Column(),
    "rate": Column(type="float"),
}
MIXED_SOURCE = Source(decimal=",", thousands=".")


def test_type_columns_on_spark_matches_duckdb(con: Any, spark: Any) -> None:
    from goldgate.sql_dialect import spark_dialect

    spark_dialect()
    spark_con = ibis.pyspark.connect(spark)
    on_duckdb: dict[str, Any] = {}
    on_spark: dict[str, Any] = {}
    cases: list[tuple[str, Cells, dict[str, Column], Source, tuple[str, ...]]] = [
        ("mixed", MIXED, MIXED_COLUMNS, MIXED_SOURCE, ()),
        ("ecb", ECB, ECB_COLUMNS, Source(unpivot=ECB_UNPIVOT), ("currency",)),
    ]
    for name, cells, columns, source, order in cases:
        spark.createDataFrame(bronze_arrow(cells).to_pandas()).createOrReplaceTempView(f"schema_{name}")
        for raw, out in [(bronze(con, cells), on_duckdb), (spark_con.table(f"schema_{name}"), on_spark)]:
            typed = type_columns(shape_bronze(raw, source), columns, source).drop("_ingested_at")
            out[name] = (typed.schema(), rows(typed, *order))
    assert on_spark == on_duckdb
    mixed = on_spark["mixed"][1]
    assert [r["when"] for r in mixed] == [
        datetime(2012, 1, 31, 8),
        datetime(2012, 1, 31, 10),
        datetime(2012, 1, 31, 10, 0, 0, 250000),
        None,
        None,
        None,
    ]
    assert [r["Slash Date"] for r in mixed] == [
        date(2012, 1, 31),
        None,
        None,
        date(2012, 12, 1),
        None,
        date(2012, 1, 1),
    ]
    assert [r["qty"] for r in mixed] == [3, 3, None, None, -2, None]
    assert [r["rate"] for r in mixed] == pytest.approx([0.135, 0.07, None, 12.345, None, None])
    assert [r["month"] for r in mixed] == [
        date(2018, 3, 1),
        date(1999, 12, 1),
        None,
        None,
        date(2000, 1, 1),
        date(2001, 2, 1),
    ]
    assert len(on_spark["ecb"][1]) == 4
