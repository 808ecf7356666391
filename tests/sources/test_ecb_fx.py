"""The ECB reader: wide CSV (or zip) to an all-text table, with the file's quirks handled."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

from goldgate.sources.ecb_fx import (
    RawBatch,
    SourceError,
    bundled_ecb_path,
    read_ecb_csv,
    resolve_source,
)
from goldgate.usecase import Source

SPEC = Source(kind="ecb_fx")

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


def columns(batch: RawBatch) -> dict[str, list]:
    return batch.table.to_pydict()


def test_reads_every_cell_as_text_with_file_line_numbers(tmp_path: Path) -> None:
    batch = read_ecb_csv(write_ecb(tmp_path / "eurofxref-hist.csv"), SPEC)
    assert batch.table.column_names == ["Date", "USD", "JPY", "_row_number"]
    assert columns(batch) == {
        "Date": ["2024-01-04", "2024-01-03", "2024-01-02"],
        "USD": ["1.0953", "1.0919", "N/A"],
        "JPY": ["157.15", "N/A", "N/A"],
        "_row_number": [2, 3, 4],
    }
    for name in ("Date", "USD", "JPY"):
        assert batch.table.schema.field(name).type == pa.string()
    assert batch.table.schema.field("_row_number").type == pa.int64()
    assert batch.source == str(tmp_path / "eurofxref-hist.csv")


def test_trailing_empty_column_is_not_a_column(tmp_path: Path) -> None:
    batch = read_ecb_csv(write_ecb(tmp_path / "f.csv"), SPEC)
    assert "" not in batch.table.column_names
    assert batch.table.num_columns == 4


def test_blank_lines_are_skipped_but_row_numbers_stay_file_lines(tmp_path: Path) -> None:
    lines = [LINES[0], LINES[1], "", LINES[2], " , , ", LINES[3]]
    batch = read_ecb_csv(write_ecb(tmp_path / "f.csv", lines), SPEC)
    assert columns(batch)["_row_number"] == [2, 4, 6]
    assert columns(batch)["Date"] == ["2024-01-04", "2024-01-03", "2024-01-02"]


def test_short_rows_get_null_cells(tmp_path: Path) -> None:
    batch = read_ecb_csv(write_ecb(tmp_path / "f.csv", [LINES[0], "2024-01-04,1.09"]), SPEC)
    assert columns(batch) == {"Date": ["2024-01-04"], "USD": ["1.09"], "JPY": [None], "_row_number": [2]}


@pytest.mark.parametrize(("newline", "bom"), [("\r\n", False), ("\n", True), ("\r\n", True)])
def test_crlf_and_utf8_bom_read_like_plain_lf(tmp_path: Path, newline: str, bom: bool) -> None:
    plain = read_ecb_csv(write_ecb(tmp_path / "plain.csv"), SPEC)
    odd = read_ecb_csv(write_ecb(tmp_path / "odd.csv", newline=newline, bom=bom), SPEC)
    assert odd.table.equals(plain.table)
    assert odd.table.column_names[0] == "Date"


def test_zip_with_one_csv_reads_like_the_csv(tmp_path: Path) -> None:
    from_csv = read_ecb_csv(write_ecb(tmp_path / "f.csv"), SPEC)
    from_zip = read_ecb_csv(write_zip(tmp_path / "f.zip", {"eurofxref-hist.csv": LINES}), SPEC)
    assert from_zip.table.equals(from_csv.table)
    assert from_zip.source == str(tmp_path / "f.zip")


def test_zip_must_hold_exactly_one_csv(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "two.zip", {"a.csv": LINES, "b.csv": LINES})
    with pytest.raises(SourceError, match="expected one CSV inside the zip, found 2"):
        read_ecb_csv(path, SPEC)


def test_corrupt_zip(tmp_path: Path) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(b"this is not a zip")
    with pytest.raises(SourceError, match="not a valid zip"):
        read_ecb_csv(path, SPEC)


@pytest.fixture(scope="module")
def bundled() -> RawBatch:
    return read_ecb_csv(bundled_ecb_path(), SPEC)


def test_bundled_file_has_41_currencies_from_1999(bundled: RawBatch) -> None:
    currencies = [c for c in bundled.table.column_names if c not in ("Date", "_row_number")]
    assert len(currencies) == 41
    assert {"USD", "JPY", "GBP", "CHF", "CYP", "ZAR"} <= set(currencies)
    dates = bundled.table.column("Date").to_pylist()
    assert "1999-01-04" in dates
    assert min(dates) == "1999-01-04"
    assert dates == sorted(dates, reverse=True)  # newest first
    assert bundled.table.column("_row_number").to_pylist()[:2] == [2, 3]


def test_slice_keeps_requested_currencies_and_dates(tmp_path: Path) -> None:
    spec = Source(kind="ecb_fx", currencies=["JPY"], start="2024-01-03", end="2024-01-03")
    batch = read_ecb_csv(write_ecb(tmp_path / "f.csv"), spec)
    assert columns(batch) == {"Date": ["2024-01-03"], "JPY": ["N/A"], "_row_number": [3]}


def test_slice_of_the_bundled_file() -> None:
    spec = Source(kind="ecb_fx", currencies=["USD", "GBP"], start="2021-01-01", end="2021-12-31")
    batch = read_ecb_csv(bundled_ecb_path(), spec)
    assert batch.table.column_names == ["Date", "USD", "GBP", "_row_number"]
    dates = batch.table.column("Date").to_pylist()
    assert 250 <= len(dates) <= 260
    assert min(dates) >= "2021-01-01"
    assert max(dates) <= "2021-12-31"


def test_slice_with_a_currency_not_in_the_file(tmp_path: Path) -> None:
    spec = Source(kind="ecb_fx", currencies=["USD", "XAU"])
    with pytest.raises(SourceError, match=r"\['XAU'\] requested by the use case are not in the header"):
        read_ecb_csv(write_ecb(tmp_path / "f.csv"), spec)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(SourceError, match="not found") as err:
        read_ecb_csv(path, SPEC)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf  \r\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="empty"):
        read_ecb_csv(path, SPEC)


def test_header_without_date(tmp_path: Path) -> None:
    path = write_ecb(tmp_path / "f.csv", ["Day,USD,JPY,", "2024-01-04,1.0953,157.15,"])
    with pytest.raises(SourceError, match="no 'Date' column"):
        read_ecb_csv(path, SPEC)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("Date,USD,\n2024-01-04,1,\xe9\n".encode("latin-1"))
    with pytest.raises(SourceError, match="not UTF-8"):
        read_ecb_csv(path, SPEC)


def test_folder_with_one_csv_reads_it(tmp_path: Path) -> None:
    direct = read_ecb_csv(write_ecb(tmp_path / "only.csv"), SPEC)
    via_folder = read_ecb_csv(tmp_path, SPEC)
    assert via_folder.table.equals(direct.table)
    assert via_folder.batch_id == direct.batch_id


def test_folder_with_two_csvs(tmp_path: Path) -> None:
    write_ecb(tmp_path / "a.csv")
    write_ecb(tmp_path / "b.csv")
    with pytest.raises(SourceError, match=r"exactly one \.csv or \.zip in the folder, found 2"):
        read_ecb_csv(tmp_path, SPEC)


def test_batch_id_is_a_content_hash(tmp_path: Path) -> None:
    first = read_ecb_csv(write_ecb(tmp_path / "a.csv"), SPEC)
    same_content = read_ecb_csv(write_ecb(tmp_path / "b.csv"), SPEC)
    changed = [*LINES[:2], "2024-01-03,1.0920,N/A,", LINES[3]]
    edited = read_ecb_csv(write_ecb(tmp_path / "c.csv", changed), SPEC)
    assert first.batch_id == same_content.batch_id
    assert read_ecb_csv(tmp_path / "a.csv", SPEC).batch_id == first.batch_id
    assert edited.batch_id != first.batch_id
    assert len(first.batch_id) == 16


def test_batch_id_depends_on_the_slice(tmp_path: Path) -> None:
    path = write_ecb(tmp_path / "a.csv")
    full = read_ecb_csv(path, SPEC).batch_id
    sliced = read_ecb_csv(path, Source(kind="ecb_fx", currencies=["USD"])).batch_id
    assert full != sliced


def test_resolve_source_prefers_override_then_use_case_then_bundled(tmp_path: Path) -> None:
    spec = Source(kind="ecb_fx", path=str(tmp_path / "from_yaml.csv"))
    assert resolve_source(spec, tmp_path / "flag.csv") == tmp_path / "flag.csv"
    assert resolve_source(spec, None) == tmp_path / "from_yaml.csv"
    assert resolve_source(SPEC, None) == bundled_ecb_path()
    assert bundled_ecb_path().is_file()
