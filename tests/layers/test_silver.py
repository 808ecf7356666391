"""Silver: the wide ECB layout melted to typed long rows, missing cells skipped, latest ingestion wins."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest

from goldgate.layers.silver import dedupe_latest, melt_rates, unpivot

T0 = datetime(2024, 1, 10, tzinfo=UTC)
T1 = datetime(2024, 1, 11, tzinfo=UTC)


@pytest.fixture(scope="module")
def con() -> Any:
    return ibis.duckdb.connect()


def bronze(con: Any, lines: list[tuple[str, str | None, str | None]], batch: str = "b0", at: datetime = T0) -> ir.Table:
    """A bronze batch as ingested: Date and currency columns as text, plus the metadata columns."""
    n = len(lines)
    table = pa.table(
        {
            "Date": pa.array([d for d, _, _ in lines], pa.string()),
            "USD": pa.array([u for _, u, _ in lines], pa.string()),
            "JPY": pa.array([j for _, _, j in lines], pa.string()),
            "_row_number": pa.array(range(2, n + 2), pa.int64()),
            "_ingested_at": pa.array([at] * n, pa.timestamp("us", tz="UTC")),
            "_source": pa.array(["eurofxref.csv"] * n, pa.string()),
            "_batch_id": pa.array([batch] * n, pa.string()),
        }
    )
    return con.create_table(f"bronze_{batch}", table, temp=True, overwrite=True)


def long_rows(t: ir.Table) -> list[dict[str, Any]]:
    return sorted(t.to_pyarrow().to_pylist(), key=lambda r: (r["_row_number"], r["currency"]))


def test_melt_turns_wide_into_long_and_skips_missing_cells(con: Any) -> None:
    wide = bronze(
        con,
        [
            ("2024-01-03", "1.0919", "N/A"),
            ("2024-01-02", "", "155.73"),
            ("2024-01-01", None, " NA "),
            ("2023-12-29", " 1.1050 ", "156.33"),
        ],
    )
    out = long_rows(melt_rates(wide))
    assert [(r["_row_number"], r["currency"], r["date"], r["rate"]) for r in out] == [
        (2, "USD", date(2024, 1, 3), 1.0919),
        (3, "JPY", date(2024, 1, 2), 155.73),
        (5, "JPY", date(2023, 12, 29), 156.33),
        (5, "USD", date(2023, 12, 29), 1.105),
    ]
    assert {(r["_batch_id"], r["_ingested_at"]) for r in out} == {("b0", T0)}
    assert out[0]["raw_date"] == "2024-01-03"
    assert out[0]["raw_value"] == "1.0919"


def test_melt_schema(con: Any) -> None:
    schema = melt_rates(bronze(con, [("2024-01-03", "1.1", "150")])).schema()
    assert dict(schema.items()) == {
        "raw_date": ibis.dtype("string"),
        "currency": ibis.dtype("string"),
        "raw_value": ibis.dtype("string"),
        "date": ibis.dtype("date"),
        "rate": ibis.dtype("float64"),
        "_batch_id": ibis.dtype("string"),
        "_row_number": ibis.dtype("int64"),
        "_ingested_at": ibis.dtype("timestamp('UTC', 6)"),
    }


def test_unparseable_dates_and_rates_become_null_but_keep_their_raw_text(con: Any) -> None:
    wide = bronze(con, [("2024-13-45", "1.1", "abc"), ("yesterday", "-2", "1e2")])
    out = long_rows(melt_rates(wide))
    assert [(r["raw_date"], r["currency"], r["date"], r["raw_value"], r["rate"]) for r in out] == [
        ("2024-13-45", "JPY", None, "abc", None),
        ("2024-13-45", "USD", None, "1.1", 1.1),
        ("yesterday", "JPY", None, "1e2", 100.0),
        ("yesterday", "USD", None, "-2", -2.0),
    ]


def test_dedupe_keeps_the_latest_ingestion_per_date_and_currency(con: Any) -> None:
    old = bronze(con, [("2024-01-03", "1.09", "155.0"), ("2024-01-02", "1.10", "N/A")], batch="old", at=T0)
    new = bronze(con, [("2024-01-03", "1.08", "N/A")], batch="new", at=T1)
    out = dedupe_latest(melt_rates(old).union(melt_rates(new)))
    assert out.columns == ("date", "currency", "rate", "_batch_id", "_ingested_at")
    got = {(r["date"], r["currency"]): (r["rate"], r["_batch_id"]) for r in out.to_pyarrow().to_pylist()}
    assert got == {
        (date(2024, 1, 3), "USD"): (1.08, "new"),  # re-delivered: the newer batch wins
        (date(2024, 1, 3), "JPY"): (155.0, "old"),  # not in the newer batch: kept
        (date(2024, 1, 2), "USD"): (1.10, "old"),
    }


def test_dedupe_within_one_batch_keeps_the_first_line(con: Any) -> None:
    wide = bronze(con, [("2024-01-03", "1.09", "N/A"), ("2024-01-03", "1.50", "N/A")])
    out = dedupe_latest(melt_rates(wide)).to_pyarrow().to_pylist()
    assert [(r["currency"], r["rate"]) for r in out] == [("USD", 1.09)]


@pytest.mark.parametrize("spelling", ["N/A", "n/a", "NULL", "null", "None", "NaN", "", "  "])
def test_missing_spellings_are_not_rows_in_any_case(con: Any, spelling: str) -> None:
    wide = bronze(con, [("2024-01-03", spelling, "155.0")], batch=f"m{abs(hash(spelling))}")
    assert [r["currency"] for r in long_rows(melt_rates(wide))] == ["JPY"]


def test_duckdb_unpivot_gives_the_rows_of_the_portable_pivot(con: Any) -> None:
    table = pa.table(
        {
            "Date": ["2024-01-03", "2024-01-02", "2024-01-01"],
            "USD": ["1.09", None, ""],
            'odd "name", x': ["7", "8", None],
            "_row_number": [2, 3, 4],
        }
    )
    wide = con.create_table("wide_awkward", table, temp=True, overwrite=True)
    columns = ["USD", 'odd "name", x']

    def rows(t: ir.Table) -> list[tuple[Any, ...]]:
        out = t.select("Date", "_row_number", "currency", "raw_value").to_pyarrow().to_pylist()
        return sorted(tuple(r.values()) for r in out)

    native, portable = unpivot(wide, columns), unpivot(wide, columns, native=False)
    assert rows(native) == rows(portable)
    assert len(rows(native)) == 6  # NULL cells included: the caller's filter decides
