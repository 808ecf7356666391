"""The fx use case as YAML on the declarative engine: the ECB file read, typed and turned into log returns.

What the hard-wired ECB reader and its silver and gold layers did, checked through fx.yaml: the wide file (CSV or
zip, a trailing comma on every line, ``N/A`` for "no fixing", newest date first) is read into bronze as received,
every cell as text with its line number; silver unpivots it to one typed row per date and currency (missing cells
make no row, cells that do not parse are quarantined with their text, the latest ingestion wins per key, a key
repeated within a batch keeps its first line); gold holds the log return between consecutive fixings.
"""

from __future__ import annotations

import zipfile
from dataclasses import replace
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import ibis
import ibis.selectors as s
import numpy as np
import pyarrow as pa
import pytest

from goldgate.context import Context
from goldgate.dag import get_step
from goldgate.data.bronze import SchemaError, require_columns
from goldgate.data.schema import _melt
from goldgate.data.sources import FileSourceError, SourceBatch, read_source, resolve_source
from goldgate.runner import run_step
from goldgate.settings import load_settings
from goldgate.usecase import UseCase, load_usecase

FX = load_usecase("fx")
SOURCE = FX.source
BRONZE, SILVER, QUARANTINE, GOLD = (FX.tables.bronze, FX.tables.silver, FX.tables.quarantine, FX.tables.gold)
META = ["_extra", "_row_number", "_file"]

# Newest first, a trailing comma on every line, N/A for "no fixing", like the real file.
LINES = [
    "Date,USD,JPY,",
    "2024-01-04,1.0953,157.15,",
    "2024-01-03,1.0919,N/A,",
    "2024-01-02,N/A,N/A,",
]


def write_ecb(path: Path, lines: list[str] = LINES, newline: str = "\n", bom: bool = False) -> Path:
    text = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def write_zip(path: Path, members: dict[str, list[str]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, lines in members.items():
            archive.writestr(name, "\n".join(lines) + "\n")
    return path


def read(path: Path) -> SourceBatch:
    return read_source(SOURCE, path)


def cells(batch: SourceBatch) -> dict[str, list[Any]]:
    """The source columns and line numbers (the file name aside)."""
    return batch.table.drop_columns(["_file"]).to_pydict()


# --- bronze: the file as received ------------------------------------------------------------------------------------


def test_reads_every_cell_as_text_with_file_line_numbers(tmp_path: Path) -> None:
    path = write_ecb(tmp_path / "eurofxref-hist.csv")
    batch = read(path)
    assert batch.table.column_names == ["Date", "USD", "JPY", *META]
    assert cells(batch) == {
        "Date": ["2024-01-04", "2024-01-03", "2024-01-02"],
        "USD": ["1.0953", "1.0919", "N/A"],
        "JPY": ["157.15", "N/A", "N/A"],
        "_extra": [None, None, None],
        "_row_number": [2, 3, 4],
    }
    for name in ("Date", "USD", "JPY"):
        assert batch.table.schema.field(name).type == pa.string()
    assert batch.table.schema.field("_row_number").type == pa.int64()
    assert batch.source == str(path)
    assert set(batch.table.column("_file").to_pylist()) == {str(path)}


def test_trailing_empty_column_is_not_a_column(tmp_path: Path) -> None:
    batch = read(write_ecb(tmp_path / "f.csv"))
    assert not [c for c in batch.table.column_names if c not in ("Date", "USD", "JPY", *META)]


def test_blank_lines_are_skipped_but_row_numbers_stay_file_lines(tmp_path: Path) -> None:
    lines = [LINES[0], LINES[1], "", LINES[2], LINES[3]]
    batch = read(write_ecb(tmp_path / "f.csv", lines))
    assert cells(batch)["_row_number"] == [2, 4, 5]
    assert cells(batch)["Date"] == ["2024-01-04", "2024-01-03", "2024-01-02"]
    assert batch.skipped["blank"] == 1


def test_short_rows_get_null_cells(tmp_path: Path) -> None:
    batch = read(write_ecb(tmp_path / "f.csv", [LINES[0], "2024-01-04,1.09"]))
    assert cells(batch) == {
        "Date": ["2024-01-04"],
        "USD": ["1.09"],
        "JPY": [None],
        "_extra": [None],
        "_row_number": [2],
    }


@pytest.mark.parametrize(("newline", "bom"), [("\r\n", False), ("\n", True), ("\r\n", True)])
def test_crlf_and_utf8_bom_read_like_plain_lf(tmp_path: Path, newline: str, bom: bool) -> None:
    plain = read(write_ecb(tmp_path / "plain.csv"))
    odd = read(write_ecb(tmp_path / "odd.csv", newline=newline, bom=bom))
    assert cells(odd) == cells(plain)
    assert odd.table.column_names[0] == "Date"


def test_zip_with_one_csv_reads_like_the_csv(tmp_path: Path) -> None:
    from_csv = read(write_ecb(tmp_path / "f.csv"))
    from_zip = read(write_zip(tmp_path / "f.zip", {"eurofxref-hist.csv": LINES}))
    assert cells(from_zip) == cells(from_csv)
    assert from_zip.source == str(tmp_path / "f.zip")


def test_zip_must_hold_exactly_one_csv(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "two.zip", {"a.csv": LINES, "b.csv": LINES})
    with pytest.raises(FileSourceError, match="expected one data file inside the zip, found 2"):
        read(path)


def test_corrupt_zip(tmp_path: Path) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(b"this is not a zip")
    with pytest.raises(FileSourceError, match="not a valid zip"):
        read(path)


@pytest.fixture(scope="module")
def bundled() -> SourceBatch:
    return read_source(SOURCE)


def test_bundled_file_has_41_currencies_from_1999(bundled: SourceBatch) -> None:
    currencies = [c for c in bundled.table.column_names if c not in ("Date", *META)]
    assert len(currencies) == 41
    assert {"USD", "JPY", "GBP", "CHF", "CYP", "ZAR"} <= set(currencies)
    dates = bundled.table.column("Date").to_pylist()
    assert min(dates) == "1999-01-04"
    assert dates == sorted(dates, reverse=True)  # newest first
    assert bundled.table.column("_row_number").to_pylist()[:2] == [2, 3]
    assert bundled.source == str(resources.files("currency_converter") / "eurofxref-hist.zip")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(FileSourceError, match="not found") as err:
        read(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf  \r\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(FileSourceError, match="empty"):
        read(path)


def test_a_header_without_date_is_refused_by_the_required_columns(tmp_path: Path) -> None:
    batch = read(write_ecb(tmp_path / "f.csv", ["Day,USD,JPY,", "2024-01-04,1.0953,157.15,"]))
    assert SOURCE.required == ["Date"]
    with pytest.raises(SchemaError, match="required column\\(s\\) missing: Date"):
        require_columns(batch.table.column_names, SOURCE.required, batch.source)


def test_a_file_that_is_not_utf8_is_read_as_cp1252(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("Date,USD,\n2024-01-04,1\xe9,\n".encode("latin-1"))
    with caplog.at_level("WARNING", logger="goldgate"):
        batch = read(path)
    assert cells(batch)["USD"] == ["1é"]  # silver's rate_parses then quarantines the cell with this text
    assert any("read as cp1252" in r.getMessage() for r in caplog.records)


def test_folder_with_one_csv_reads_it(tmp_path: Path) -> None:
    direct = read(write_ecb(tmp_path / "only.csv"))
    via_folder = read(tmp_path)
    assert via_folder.table.equals(direct.table)
    assert via_folder.batch_id == direct.batch_id


def test_folder_with_two_csvs_reads_both(tmp_path: Path) -> None:
    write_ecb(tmp_path / "a.csv")
    write_ecb(tmp_path / "b.csv", [LINES[0], "2024-01-05,1.0900,156.00,"])
    batch = read(tmp_path)
    assert cells(batch)["Date"] == ["2024-01-04", "2024-01-03", "2024-01-02", "2024-01-05"]
    assert batch.table.column("_file").to_pylist() == [str(tmp_path / "a.csv")] * 3 + [str(tmp_path / "b.csv")]


def test_batch_id_is_a_hash_of_the_file(tmp_path: Path) -> None:
    first = read(write_ecb(tmp_path / "a.csv"))
    changed = [*LINES[:2], "2024-01-03,1.0920,N/A,", LINES[3]]
    edited = read(write_ecb(tmp_path / "c.csv", changed))
    assert read(tmp_path / "a.csv").batch_id == first.batch_id
    assert edited.batch_id != first.batch_id
    assert len(first.batch_id) == 16


def test_resolve_source_prefers_override_then_use_case_then_bundled(tmp_path: Path) -> None:
    spec = SOURCE.model_copy(update={"path": str(tmp_path / "from_yaml.csv")})
    assert resolve_source(spec, tmp_path / "flag.csv") == str(tmp_path / "flag.csv")
    assert resolve_source(spec, None) == str(tmp_path / "from_yaml.csv")
    bundled = resolve_source(SOURCE, None)
    assert bundled.endswith("eurofxref-hist.zip")
    assert Path(bundled).is_file()


# --- silver and gold: typed long rows, quarantine, returns ------------------------------------------------------------


class Workspace:
    """The fx data steps run in process on one workspace, each with a fresh context (as separate CLI calls would)."""

    def __init__(self, root: Path, usecase: UseCase = FX) -> None:
        self.base = Context(load_settings(workspace=root), usecase)

    def step(self, name: str, source: Path | None = None) -> dict[str, Any]:
        ctx = replace(self.base, source=str(source) if source else None, results={})
        return run_step(ctx, get_step(name))

    def load(self, source: Path, steps: tuple[str, ...] = ("ingest", "silver")) -> dict[str, Any]:
        return {name: self.step(name, source if name == "ingest" else None) for name in steps}

    def rows(self, name: str) -> list[dict[str, Any]]:
        lake = replace(self.base, results={}).lake
        return lake.read(name).to_pyarrow().to_pylist()

    def rates(self) -> dict[tuple[date, str], tuple[float, str]]:
        return {(r["date"], r["currency"]): (r["rate"], r["_batch_id"]) for r in self.rows(SILVER)}

    def quarantined(self) -> list[tuple[Any, ...]]:
        return sorted(
            (r["_row_number"], r["currency"], r["raw_date"], r["raw_rate"], r["_rule"]) for r in self.rows(QUARANTINE)
        )


def test_wide_rows_become_typed_long_rows_and_missing_cells_no_row(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    lines = [
        "Date,USD,JPY,",
        "2024-01-03,1.0919,N/A,",
        "2024-01-02,,155.73,",
        "2024-01-01,null, NA ,",
        "2023-12-29, 1.1050 ,156.33,",
    ]
    result = ws.load(write_ecb(tmp_path / "f.csv", lines))
    batch = result["ingest"]["batch_id"]
    assert ws.rates() == {
        (date(2024, 1, 3), "USD"): (1.0919, batch),
        (date(2024, 1, 2), "JPY"): (155.73, batch),
        (date(2023, 12, 29), "JPY"): (156.33, batch),
        (date(2023, 12, 29), "USD"): (1.105, batch),
    }
    assert (result["silver"]["rows_in"], result["silver"]["quarantined"]) == (4, 0)
    schema = ws.rows(SILVER)[0]
    assert list(schema) == ["date", "currency", "rate", "_batch_id", "_ingested_at"]


@pytest.mark.parametrize("spelling", ["N/A", "n/a", "NULL", "null", "None", "NaN", "", "  "])
def test_missing_spellings_are_not_rows(tmp_path: Path, spelling: str) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.load(write_ecb(tmp_path / "f.csv", ["Date,USD,JPY,", f"2024-01-03,{spelling},155.0,"]))
    assert list(ws.rates()) == [(date(2024, 1, 3), "JPY")]
    assert ws.rows(QUARANTINE) == []


def test_cells_that_do_not_parse_are_quarantined_with_their_text_and_rule(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    lines = ["Date,USD,JPY,", "2024-13-45,1.1,abc,", "yesterday,-2,1e2,", "2024-01-05,-2,1e2,", "2024-01-04,0,x,"]
    result = ws.load(write_ecb(tmp_path / "f.csv", lines))
    assert ws.quarantined() == [
        (2, "JPY", "2024-13-45", "abc", "date_parses"),
        (2, "USD", "2024-13-45", "1.1", "date_parses"),
        (3, "JPY", "yesterday", "1e2", "date_parses"),
        (3, "USD", "yesterday", "-2", "date_parses"),
        (4, "USD", "2024-01-05", "-2", "rate_positive"),
        (5, "JPY", "2024-01-04", "x", "rate_parses"),
        (5, "USD", "2024-01-04", "0", "rate_positive"),
    ]
    assert ws.rates() == {(date(2024, 1, 5), "JPY"): (100.0, result["ingest"]["batch_id"])}
    reasons = {r["_rule"]: r["_reason"] for r in ws.rows(QUARANTINE)}
    assert all(reason.startswith(f"{rule}: ") for rule, reason in reasons.items())
    # Each rule counts every row it fails, also those an earlier rule quarantined (abc, -2 on the bad dates).
    failed = {r["rule"]: r["failed"] for r in ws.rows("ops.quality")}
    assert (failed["date_parses"], failed["rate_parses"], failed["rate_positive"], failed["__batch__"]) == (4, 2, 3, 7)


def test_the_daily_files_date_format_is_read(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.load(write_ecb(tmp_path / "daily.csv", ["Date, USD, JPY, ", "30 October 2026, 1.1172, 175.68, "]))
    assert {k: v[0] for k, v in ws.rates().items()} == {
        (date(2026, 10, 30), "USD"): 1.1172,
        (date(2026, 10, 30), "JPY"): 175.68,
    }


def test_the_latest_ingestion_wins_per_date_and_currency(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    old = ws.load(write_ecb(tmp_path / "old.csv", ["Date,USD,JPY,", "2024-01-03,1.09,155.0,", "2024-01-02,1.10,N/A,"]))
    new = ws.load(write_ecb(tmp_path / "new.csv", ["Date,USD,JPY,", "2024-01-03,1.08,N/A,"]))
    old_batch, new_batch = old["ingest"]["batch_id"], new["ingest"]["batch_id"]
    assert ws.rates() == {
        (date(2024, 1, 3), "USD"): (1.08, new_batch),  # re-delivered: the newer batch wins
        (date(2024, 1, 3), "JPY"): (155.0, old_batch),  # not in the newer batch: kept
        (date(2024, 1, 2), "USD"): (1.10, old_batch),
    }
    assert (new["silver"]["updated"], new["silver"]["inserted"]) == (1, 0)


def test_within_one_batch_the_first_line_of_a_key_wins(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.load(write_ecb(tmp_path / "f.csv", ["Date,USD,JPY,", "2024-01-03,1.09,N/A,", "2024-01-03,1.50,N/A,"]))
    assert {k: v[0] for k, v in ws.rates().items()} == {(date(2024, 1, 3), "USD"): 1.09}
    assert ws.quarantined() == [(3, "USD", "2024-01-03", "1.50", "one_row_per_key")]


def test_duckdb_unpivot_gives_the_rows_of_the_portable_pivot() -> None:
    con = ibis.duckdb.connect()
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
    native = _melt(wide, columns, "currency", "rate")
    portable = wide.pivot_longer(s.cols(*columns), names_to="currency", values_to="rate")
    portable = portable.filter(portable.rate.notnull())

    def rows(t: Any) -> list[tuple[Any, ...]]:
        out = t.select("Date", "_row_number", "currency", "rate").to_pyarrow().to_pylist()
        return sorted(tuple(r.values()) for r in out)

    assert rows(native) == rows(portable)
    assert len(rows(native)) == 4  # NULL cells make no row; the empty text is judged by the missing spellings


def test_log_returns_match_numpy_per_currency(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(12)]
    prices = {"USD": 1.1 * np.exp(np.cumsum(rng.normal(0, 0.01, 12))), "JPY": 150 + rng.uniform(-5, 5, 12)}
    # JPY misses two fixings: its returns run between consecutive fixings, not calendar days.
    present = {"USD": list(range(12)), "JPY": [i for i in range(12) if i not in (4, 5)]}
    lines = ["Date,USD,JPY,"] + [
        ",".join([days[i].isoformat(), *(repr(float(prices[c][i])) if i in present[c] else "N/A" for c in prices)])
        + ","
        for i in reversed(range(12))  # newest first, like the ECB file: input order must not matter
    ]
    ws = Workspace(tmp_path / "ws")
    ws.load(write_ecb(tmp_path / "f.csv", lines), steps=("ingest", "silver", "gold"))
    gold = sorted(ws.rows(GOLD), key=lambda r: (r["currency"], r["date"]))
    assert [c for c in gold[0] if not c.startswith("_")] == ["date", "currency", "rate", "log_return"]
    for currency, ix in present.items():
        got = [r for r in gold if r["currency"] == currency]
        p = prices[currency][ix]
        assert [r["date"] for r in got] == [days[i] for i in ix[1:]]  # the first fixing has no return
        np.testing.assert_allclose([r["log_return"] for r in got], np.log(p[1:] / p[:-1]), rtol=1e-12)
        np.testing.assert_allclose([r["rate"] for r in got], p[1:], rtol=0)
    assert len(gold) == 12 + 10 - 2
