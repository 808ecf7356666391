"""The generic bronze reader: files, globs, folders and package files to all-text tables, as received."""

from __future__ import annotations

import gzip
import io
import logging
import re
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from goldgate.data import sources
from goldgate.data.sources import FileSourceError, SourceBatch, SourceError, read_source, resolve_source
from goldgate.usecase import PackageFile, Source

META = ["_extra", "_row_number", "_file"]


def at(path: Path) -> str:
    """A pattern for an error message that starts with the path."""
    return "^" + re.escape(str(path))


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read(path: Path | str, **options: Any) -> SourceBatch:
    return read_source(Source(path=str(path), **options))


def rows(batch: SourceBatch, *columns: str) -> list[tuple[Any, ...]]:
    """The given columns (default: the source columns and the row number) as tuples."""
    names = list(columns) or [n for n in batch.table.column_names if n not in ("_extra", "_file")]
    return list(zip(*(batch.table[n].to_pylist() for n in names), strict=True))


def source_columns(batch: SourceBatch) -> list[str]:
    return [n for n in batch.table.column_names if n not in META]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_sniffs_the_delimiter_from_the_header(tmp_path: Path, delimiter: str) -> None:
    other = "," if delimiter != "," else ";"  # a value holding another candidate must not mislead the sniffer
    path = write(
        tmp_path / "data.csv", delimiter.join(["id", "name", "note"]) + f"\n1{delimiter}Ann{delimiter}a{other}b\n"
    )
    batch = read(path)
    assert batch.table.column_names == ["id", "name", "note", *META]
    assert rows(batch) == [("1", "Ann", f"a{other}b", 2)]
    assert all(batch.table.schema.field(n).type == pa.string() for n in ["id", "name", "note", "_extra", "_file"])
    assert batch.table.schema.field("_row_number").type == pa.int64()
    assert batch.files == [str(path)]
    assert batch.table["_file"].to_pylist() == [str(path)]


def test_explicit_delimiter_and_tsv_format(tmp_path: Path) -> None:
    semicolons = write(tmp_path / "a.csv", "a,b;c\n1,2;3\n")
    assert source_columns(read(semicolons, delimiter=";")) == ["a,b", "c"]
    tabs = write(tmp_path / "b.tsv", "a,b\tc\n1,2\t3\n")
    assert rows(read(tabs)) == [("1,2", "3", 2)]


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.csv", b"\xef\xbb\xbfid,city\n1,K\xc3\xb6ln\n")
    assert rows(read(path)) == [("1", "Köln", 2)]
    assert source_columns(read(path, encoding="utf-8")) == ["id", "city"]


def test_cp1252_is_detected_with_a_warning_naming_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "excel.csv", "id,name\n1,Anna\n2,Café\n".encode("cp1252"))
    with caplog.at_level(logging.WARNING):
        batch = read(path)
    assert rows(batch) == [("1", "Anna", 2), ("2", "Café", 3)]
    assert f"{path}: not UTF-8 (first bad byte on line 3); read as cp1252" in caplog.text


def test_explicit_latin1_and_invalid_explicit_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.csv", "id,name\n1,Zoë\n".encode("latin-1"))
    assert rows(read(path, encoding="latin-1")) == [("1", "Zoë", 2)]
    with pytest.raises(FileSourceError, match=at(path) + r": line 2: bytes are not valid utf-8 \(byte 12\)$"):
        read(path, encoding="utf-8")


def test_bytes_neither_utf8_nor_cp1252_are_an_error_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", b"id\n1\n\x81\x9d\xff\n")
    with pytest.raises(FileSourceError, match=at(path) + r": line 3: bytes are neither UTF-8 nor cp1252"):
        read(path)


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path / "win.csv", "id,name\r\n1,Ann\r\n2,Bo\r\n")
    batch = read(path)
    assert rows(batch) == [("1", "Ann", 2), ("2", "Bo", 3)]
    assert batch.skipped == {"comment": 0, "blank": 0, "preamble": 0}


def test_quoted_delimiters_and_line_breaks_keep_physical_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", 'id,text\n1,"a, b"\n2,"line one\r\n\r\n# not a comment"\n3,"say ""hi"""\n')
    batch = read(path, comment="#")
    assert rows(batch) == [("1", "a, b", 2), ("2", "line one\r\n\r\n# not a comment", 3), ("3", 'say "hi"', 6)]
    assert batch.skipped == {"comment": 0, "blank": 0, "preamble": 0}


def test_comment_and_blank_lines_are_left_out_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "# exported 2024\nid,v\n1,a\n\n   # a note\n2,b\n  \n\n")
    batch = read(path, comment="#")
    assert rows(batch) == [("1", "a", 3), ("2", "b", 6)]
    assert batch.skipped == {"comment": 2, "blank": 3, "preamble": 0}


def test_hash_is_data_without_a_comment_marker(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "id,v\n#1,a\n")
    assert rows(read(path)) == [("#1", "a", 2)]


def test_skip_rows_preamble_keeps_physical_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "Sales report\nid;v;w, x\nid,v\n1,a\n2,b\n")
    batch = read(path, skip_rows=2)
    assert rows(batch) == [("1", "a", 4), ("2", "b", 5)]
    assert batch.skipped == {"comment": 0, "blank": 0, "preamble": 2}


def test_header_false_generated_and_given_names(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", "\n1,a\n2,b\n")
    generated = read(path, header=False)
    assert source_columns(generated) == ["column_1", "column_2"]
    assert rows(generated) == [("1", "a", 2), ("2", "b", 3)]
    assert generated.skipped["blank"] == 1
    named = read(path, header=False, names=["id", "v"])
    assert rows(named) == [("1", "a", 2), ("2", "b", 3)]
    with pytest.raises(FileSourceError, match=at(path) + r": line 2: names give 3 columns but the data has 2 fields$"):
        read(path, header=False, names=["id", "v", "w"])


def test_ragged_rows_are_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "r.csv", "a,b,c\n1,2,3\n4,5\n6,7,8,9,\n10,11,12,,\n")
    with caplog.at_level(logging.WARNING):
        batch = read(path)
    assert rows(batch, "a", "b", "c", "_extra", "_row_number") == [
        ("1", "2", "3", None, 2),
        ("4", "5", None, None, 3),
        ("6", "7", "8", "9,", 4),
        ("10", "11", "12", None, 5),  # only empty surplus cells: a trailing delimiter, not data
    ]
    assert f"{path}: 1 row(s) have fewer fields than the header's 3 (first on line 3)" in caplog.text
    assert f"{path}: 1 row(s) have more fields than the header's 3 (first on line 4)" in caplog.text


def test_truncated_last_line_without_newline(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "t.csv", "a,b,c\n1,2,3\n4,5")
    with caplog.at_level(logging.WARNING):
        assert rows(read(path)) == [("1", "2", "3", 2), ("4", "5", None, 3)]
    assert (
        f"{path}: the file ends inside line 3, which has 2 of the header's 3 fields: a truncated file?" in caplog.text
    )


def test_a_short_last_line_ended_by_a_line_break_is_no_truncation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name, text in [("n.csv", "a,b,c\n1,2,3\n4,5\r\n"), ("w.csv", "a,b,c\n1,2\n4,5,6")]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            read(write(tmp_path / name, text))
        assert "fewer fields" in caplog.text
        assert "truncated" not in caplog.text


def test_cells_are_kept_as_written_and_empty_cells_are_null(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", ' id , name \n 1 ,  Ann  \n2,""\n,\n')
    batch = read(path)
    assert source_columns(batch) == ["id", "name"]  # header names are trimmed, cells are not
    assert rows(batch) == [(" 1 ", "  Ann  ", 2), ("2", None, 3), (None, None, 4)]


def test_unnamed_trailing_column_is_dropped_when_empty_and_kept_with_a_value(tmp_path: Path) -> None:
    empty = write(tmp_path / "e.csv", "Date,USD,\n2024-01-02,1.09,\n2024-01-01,N/A,\n")
    assert rows(read(empty)) == [("2024-01-02", "1.09", 2), ("2024-01-01", "N/A", 3)]
    filled = write(tmp_path / "f.csv", "Date,USD,\n2024-01-02,1.09,\n2024-01-01,N/A,x\n")
    assert rows(read(filled)) == [("2024-01-02", "1.09", None, 2), ("2024-01-01", "N/A", "x", 3)]
    assert source_columns(read(filled)) == ["Date", "USD", "_column_3"]


def test_bundled_ecb_file_through_its_package() -> None:
    spec = Source(package=PackageFile(name="currency_converter", path="eurofxref-hist.zip"))
    batch = read_source(spec)
    with zipfile.ZipFile(resolve_source(spec)) as archive:
        text = archive.read(archive.namelist()[0]).decode()
    lines = text.splitlines()
    assert source_columns(batch)[:2] == ["Date", "USD"]
    assert source_columns(batch) == lines[0].split(",")[:-1]  # the trailing comma's empty column is dropped
    assert batch.table.num_rows == len(lines) - 1
    assert batch.table["_row_number"].to_pylist()[:2] == [2, 3]
    assert "N/A" in batch.table["CYP"].to_pylist()
    assert batch.source == resolve_source(spec)


def test_glob_over_files_with_different_columns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = write(tmp_path / "in" / "2024-01.csv", "id,a\n1,x\n")
    second = write(tmp_path / "in" / "2024-02.csv", "id,b\n2,y\n3,z\n")
    write(tmp_path / "in" / "notes.txt", "not matched\n")
    with caplog.at_level(logging.WARNING):
        batch = read(tmp_path / "in" / "*.csv")
    assert batch.files == [str(first), str(second)]
    assert batch.source == str(tmp_path / "in" / "*.csv")
    assert rows(batch, "id", "a", "b", "_row_number", "_file") == [
        ("1", "x", None, 2, str(first)),
        ("2", None, "y", 2, str(second)),
        ("3", None, "z", 3, str(second)),
    ]
    assert f"{first}: lacks column(s) b" in caplog.text
    assert f"{second}: lacks column(s) a" in caplog.text


def test_folder_reads_its_data_files_sorted_and_skips_bookkeeping(tmp_path: Path) -> None:
    write(tmp_path / "drop" / "b.csv", "id\n2\n")
    write(tmp_path / "drop" / "a.csv", "id\n1\n")
    write(tmp_path / "drop" / "_SUCCESS", "")
    write(tmp_path / "drop" / ".a.csv.crc", "x")
    write(tmp_path / "drop" / "README.md", "# about")
    write(tmp_path / "drop" / "sub" / "c.csv.gz", gzip.compress(b"id\n3\n"))
    batch = read(tmp_path / "drop")
    assert batch.files == [str(tmp_path / "drop" / name) for name in ("a.csv", "b.csv", "sub/c.csv.gz")]
    assert rows(batch) == [("1", 2), ("2", 2), ("3", 2)]


def test_parquet_round_trip_as_text(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, None], pa.int64()),
            "price": [1.5, None, 3.25],
            "ok": [True, False, None],
            "tag": pa.array(["a", "b", "a"]).dictionary_encode(),
            "tags": [["x", "y"], None, []],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    batch = read(tmp_path / "t.parquet")
    assert source_columns(batch) == ["id", "price", "ok", "tag", "tags"]
    assert "_extra" not in batch.table.column_names
    assert rows(batch) == [
        ("1", "1.5", "true", "a", '["x", "y"]', 1),
        ("2", None, "false", "b", None, 2),
        (None, "3.25", None, "a", "[]", 3),
    ]


def test_jsonl_round_trip_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "e.jsonl", '{"id": "007", "n": 2, "meta": {"k": "v"}}\n\n{"id": "8", "n": null}\n')
    batch = read(path)
    assert rows(batch, "id", "n", "meta", "_row_number") == [("007", "2", '{"k": "v"}', 1), ("8", None, None, 3)]


def test_jsonl_with_a_key_changing_type_and_invalid_json(tmp_path: Path) -> None:
    mixed = write(tmp_path / "m.jsonl", '{"v": 1}\n{"v": "x", "w": true}\n')
    assert rows(read(mixed)) == [("1", None, 1), ("x", "true", 2)]
    broken = write(tmp_path / "b.jsonl", '{"v": 1}\n{"v": \n')
    with pytest.raises(FileSourceError, match=at(broken) + r": line 2: not valid JSON"):
        read(broken)


def test_delta_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "delta"
    write_deltalake(str(folder), pa.table({"id": [1, 2], "name": ["a", None]}))
    batch = read(folder)
    assert rows(batch) == [("1", "a", 1), ("2", None, 2)]
    assert batch.files == [str(folder)]
    assert read(folder).batch_id == batch.batch_id
    write_deltalake(str(folder), pa.table({"id": [3], "name": ["c"]}), mode="append")
    assert read(folder).batch_id != batch.batch_id
    with pytest.raises(FileSourceError, match=at(tmp_path / "x.csv") + r": not a Delta table"):
        read(write(tmp_path / "x.csv", "a\n1\n"), format="delta")


def test_gzip_and_zip_are_read_transparently(tmp_path: Path) -> None:
    gz = write(tmp_path / "d.csv.gz", gzip.compress(b"id;v\n1;a\n"))
    assert rows(read(gz)) == [("1", "a", 2)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.md", "about the data")
        archive.writestr("data.tsv", "id\tv\n1\ta\n")
    assert rows(read(write(tmp_path / "d.zip", buffer.getvalue()))) == [("1", "a", 2)]


def test_batch_id_is_stable_and_sensitive_to_bytes_and_options(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "id,v\n1,a\n")
    base = read(path).batch_id
    assert len(base) == 16
    assert int(base, 16) >= 0
    assert read(path).batch_id == base
    assert read(path, missing=["?"], decimal=",").batch_id == base  # silver options do not change bronze
    for options in ({"delimiter": ";"}, {"encoding": "latin-1"}, {"skip_rows": 1}, {"comment": "#"}):
        assert read(path, **options).batch_id != base, options
    write(path, "id,v\n1,b\n")
    assert read(path).batch_id != base


def test_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "emptydir").mkdir()
    cases = {
        tmp_path / "missing.csv": "file not found",
        tmp_path / "none-*.csv": "no file matches this pattern",
        write(tmp_path / "empty.csv", "\n  \n"): r"file is empty \(no header line\)",
        write(tmp_path / "short.csv", "title\n"): r"file is empty \(no header line after 3 preamble line\(s\)\)",
        write(tmp_path / "bad.zip", b"PK not a zip"): "not a valid zip file",
        write(tmp_path / "bad.csv.gz", b"nope"): "not a valid gzip file",
        write(tmp_path / "bad.parquet", b"nope"): "not a readable Parquet file",
        write(tmp_path / "dup.csv", "id,v,id\n1,2,3\n"): "line 1: column name\\(s\\) id appear more than once",
        write(tmp_path / "meta.csv", "id,_file\n1,2\n"): r"line 1: column name\(s\) _file are reserved",
        tmp_path / "emptydir": "folder holds no data files",
    }
    for path, rule in cases.items():
        skip_rows = 3 if path.name == "short.csv" else 0
        with pytest.raises(FileSourceError, match=at(path) + ": " + rule) as caught:
            read(path, skip_rows=skip_rows)
        assert "\n" not in str(caught.value)
        assert isinstance(caught.value, SourceError)


def test_header_only_file_is_not_an_error(tmp_path: Path) -> None:
    batch = read(write(tmp_path / "h.csv", "id,v,\n"))
    assert batch.table.num_rows == 0
    assert source_columns(batch) == ["id", "v"]


def test_resolve_source_prefers_override_then_path_then_package(tmp_path: Path) -> None:
    package = PackageFile(name="currency_converter", path="eurofxref-hist.zip")
    assert resolve_source(Source(path="a.csv", package=package), tmp_path / "b.csv") == str(tmp_path / "b.csv")
    assert resolve_source(Source(path="a.csv", package=package), "") == "a.csv"
    assert resolve_source(Source(package=package)).endswith("currency_converter/eurofxref-hist.zip")
    with pytest.raises(FileSourceError, match=r"^source: no path, no package file and no --source given"):
        resolve_source(Source())
    with pytest.raises(FileSourceError, match=r"/missing\.csv: file not found in package 'currency_converter'$"):
        resolve_source(Source(package=PackageFile(name="currency_converter", path="missing.csv")))
    with pytest.raises(FileSourceError, match=r"^x\.csv: package 'no_such_pkg_gg' is not installed"):
        resolve_source(Source(package=PackageFile(name="no_such_pkg_gg", path="x.csv")))


def test_bad_delimiter_option_is_rejected_by_the_schema(tmp_path: Path) -> None:
    from pydantic import ValidationError

    path = write(tmp_path / "d.csv", "a\n1\n")
    with pytest.raises(ValidationError, match=r"delimiter must be one character"):
        read(path, delimiter=";;")


CLEAN_AND_QUIRKY: list[tuple[str, dict[str, Any]]] = [
    ("id,v\n1,a\n2,b\n", {}),
    ("id,v\r\n1,a\r\n2,b\r\n\r\n", {}),
    ("id,v\n1,a\n2,b", {}),
    ('id,v\n1,"x, y"\n2,""\n', {}),
    ("# c\nid,v\n1,a\n", {"comment": "#"}),
    ("Date,USD,\n2024-01-02,1.1,\n", {}),
    ("id,v\n1,a\n\n  \n", {}),
    ("\ufeffnotice\n\n1,a\n2,b\n", {"header": False, "skip_rows": 1}),
]


@pytest.mark.parametrize(("content", "options"), CLEAN_AND_QUIRKY)
def test_fast_and_line_by_line_paths_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, options: dict[str, Any]
) -> None:
    path = write(tmp_path / "d.csv", content)
    fast_results: list[object] = []
    read_fast = sources._read_fast

    def spy(*args: Any) -> object:
        fast_results.append(read_fast(*args))
        return fast_results[-1]

    monkeypatch.setattr(sources, "_read_fast", spy)
    fast = read(path, **options)
    assert fast_results[-1] is not None  # a clean file takes pyarrow's reader
    monkeypatch.setattr(sources, "_read_fast", lambda *args: None)
    slow = read(path, **options)
    assert fast.table.equals(slow.table)
    assert fast.skipped == slow.skipped


def test_old_mac_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path / "mac.csv", "id,name\r1,Ann\r2,Bo\r")
    assert rows(read(path)) == [("1", "Ann", 2), ("2", "Bo", 3)]


def test_example_files_of_the_worked_examples_read_cleanly(tmp_path: Path) -> None:
    weather = write(
        tmp_path / "seattle-weather.csv",
        "date,precipitation,temp_max,temp_min,wind,weather\n2012/01/01,0.0,12.8,5.0,4.7,drizzle\n",
    )
    assert rows(read(weather)) == [("2012/01/01", "0.0", "12.8", "5.0", "4.7", "drizzle", 2)]
    penguins = write(
        tmp_path / "penguins.csv",
        "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
        "Adelie,Torgersen,39.1,18.7,181,3750,male,2007\nAdelie,Torgersen,NA,NA,NA,NA,NA,2007\n",
    )
    batch = read(penguins)
    assert batch.table.num_rows == 2
    assert rows(batch)[1] == ("Adelie", "Torgersen", "NA", "NA", "NA", "NA", "NA", "2007", 3)
    assert batch.table["_extra"].null_count == 2
