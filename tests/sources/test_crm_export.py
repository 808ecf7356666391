"""The CRM export reader: four Maven-layout CSVs to all-text tables, quirks kept, errors naming file and row."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pytest

from goldgate.sources import crm_export
from goldgate.sources.crm_export import (
    CRM_FILES,
    REQUIRED_COLUMNS,
    CrmSourceError,
    read_crm_export,
    resolve_crm_source,
)
from goldgate.sources.crm_synthetic import Dirt, generate_crm
from goldgate.sources.ecb_fx import SourceError

PIPELINE_HEADER = "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value"
REFERENCE_LINES = {
    "accounts": [
        "account,sector,year_established,revenue,employees,office_location,subsidiary_of",
        "Acme,technology,1999,100.50,400,United States,",
    ],
    "products": ["product,series,sales_price", "GTX Pro,GTX,4821"],
    "sales_teams": ["sales_agent,manager,regional_office", "Anna Bauer,Cara Cohen,East"],
}


def write_export(folder: Path, pipeline: list[str], newline: str = "\n", encoding: str = "utf-8") -> Path:
    """A hand-written export: the given sales_pipeline lines and one row per reference file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sales_pipeline.csv").write_bytes(newline.join(pipeline).encode(encoding))
    for name, lines in REFERENCE_LINES.items():
        (folder / f"{name}.csv").write_bytes(("\n".join(lines) + "\n").encode())
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp("crm") / "export"
    return folder, generate_crm(folder, rows=600, seed=5)


def test_reads_generated_export_with_counts_schema_and_line_numbers(demo: tuple[Path, dict[str, int]]) -> None:
    folder, written = demo
    batch = read_crm_export(folder)
    assert set(batch.tables) == set(CRM_FILES)
    assert batch.source == str(folder)
    assert batch.files == {name: str(folder / f"{name}.csv") for name in CRM_FILES}
    for name, table in batch.tables.items():
        assert table.num_rows == written[name], name
        assert table.column_names == [*REQUIRED_COLUMNS[name], "_extra", "_row_number"]
        for column in REQUIRED_COLUMNS[name]:
            assert table.schema.field(column).type == pa.string(), (name, column)
        assert table["_row_number"].to_pylist() == list(range(2, written[name] + 2))
        assert table["_extra"].null_count == table.num_rows


def test_batch_id_is_stable_and_changes_with_any_byte(tmp_path: Path, demo: tuple[Path, dict[str, int]]) -> None:
    folder, _ = demo
    first, second = read_crm_export(folder), read_crm_export(folder)
    assert first.batch_id == second.batch_id
    assert len(first.batch_id) == 16
    int(first.batch_id, 16)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in CRM_FILES:
        (copy / f"{name}.csv").write_bytes((folder / f"{name}.csv").read_bytes())
    assert read_crm_export(copy).batch_id == first.batch_id  # the id is the content, not the path
    accounts = copy / "accounts.csv"
    data = bytearray(accounts.read_bytes())
    data[-3] = ord("9") if data[-3] != ord("9") else ord("8")
    accounts.write_bytes(bytes(data))
    assert read_crm_export(copy).batch_id != first.batch_id


def test_crlf_bom_quotes_header_spaces_and_trailing_empty_line(tmp_path: Path) -> None:
    header = " opportunity_id , sales_agent,product,account,deal_stage,engage_date,close_date,close_value "
    lines = [
        header,
        'A1,Anna Bauer,GTX Pro,"Acme, Inc.",Won,2017-01-02,2017-02-03,5000',
        "A2,  anna  bauer ,GTXPro,,Engaging,2017-03-04,,",
        "",
        "",
    ]
    folder = write_export(tmp_path / "x", lines, newline="\r\n")
    path = folder / "sales_pipeline.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    table = read_crm_export(folder).tables["sales_pipeline"]
    assert table.column_names[0] == "opportunity_id"
    rows = table.to_pylist()
    assert rows[0]["account"] == "Acme, Inc."
    assert rows[0]["close_value"] == "5000"
    # Cells are kept exactly as received: spacing and case are silver's business.
    assert rows[1]["sales_agent"] == "  anna  bauer "
    assert rows[1]["account"] is None
    assert (rows[1]["close_date"], rows[1]["close_value"]) == (None, None)
    assert table["_row_number"].to_pylist() == [2, 3]


def test_ragged_rows_are_kept_with_extra_cells_and_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [
        PIPELINE_HEADER,
        "A1,Anna Bauer,GTX Pro,Acme,Won,2017-01-02,2017-02-03,5000",
        "A2,Anna Bauer,GTX Pro",
        'A3,Anna Bauer,GTX Pro,Acme,Lost,2017-01-02,2017-02-03,0,surplus,"with, comma"',
    ]
    folder = write_export(tmp_path / "x", lines)
    with caplog.at_level(logging.WARNING, logger="goldgate.sources.crm_export"):
        table = read_crm_export(folder).tables["sales_pipeline"]
    rows = table.to_pylist()
    assert [r["opportunity_id"] for r in rows] == ["A1", "A2", "A3"]
    assert rows[1]["product"] == "GTX Pro"
    assert rows[1]["account"] is rows[1]["close_value"] is None
    assert rows[2]["close_value"] == "0"
    assert rows[2]["_extra"] == 'surplus,"with, comma"'
    assert rows[0]["_extra"] is None
    assert [r["_row_number"] for r in rows] == [2, 3, 4]
    warned = [r.getMessage() for r in caplog.records]
    assert any("sales_pipeline.csv: row 3 has 3 fields" in m for m in warned), warned
    assert any("sales_pipeline.csv: row 4 has 10 fields" in m for m in warned), warned


def test_blank_lines_and_quoted_line_breaks_keep_true_line_numbers(tmp_path: Path) -> None:
    lines = [
        PIPELINE_HEADER,
        "A1,Anna Bauer,GTX Pro,Acme,Won,2017-01-02,2017-02-03,5000",
        "",
        'A2,Anna Bauer,GTX Pro,"Acme',
        'Europe",Lost,2017-01-02,2017-02-03,0',
        "A3,Anna Bauer,GTX Pro,Acme,Won,2017-01-02,2017-02-03,4900",
    ]
    table = read_crm_export(write_export(tmp_path / "x", lines)).tables["sales_pipeline"]
    assert table["opportunity_id"].to_pylist() == ["A1", "A2", "A3"]
    assert table["account"].to_pylist() == ["Acme", "Acme\nEurope", "Acme"]
    assert table["_row_number"].to_pylist() == [2, 4, 6]


def test_fast_and_line_by_line_paths_give_the_same_cells(
    tmp_path: Path, demo: tuple[Path, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = demo
    slow_reads: list[Path] = []
    line_by_line = crm_export._read_slow

    def counted(path: Path, text: str, header: list[str]) -> pa.Table:
        slow_reads.append(path)
        return line_by_line(path, text, header)

    monkeypatch.setattr(crm_export, "_read_slow", counted)
    fast = read_crm_export(folder).tables["sales_pipeline"]
    assert slow_reads == []  # a well-formed export (CRLF, BOM and all) takes pyarrow's path
    # A blank line after the header forces the line-by-line path; every row moves down one line.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in CRM_FILES:
        (copy / f"{name}.csv").write_bytes((folder / f"{name}.csv").read_bytes())
    path = copy / "sales_pipeline.csv"
    head, _, rest = path.read_bytes().partition(b"\r\n")
    path.write_bytes(head + b"\r\n\r\n" + rest)
    slow = read_crm_export(copy).tables["sales_pipeline"]
    assert slow_reads == [path]
    assert slow.drop_columns(["_row_number"]).equals(fast.drop_columns(["_row_number"]))
    assert slow["_row_number"].to_pylist() == [n + 1 for n in fast["_row_number"].to_pylist()]


def test_cp1252_file_is_read_with_a_warning_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [PIPELINE_HEADER, "A1,Zoë Café,GTX Pro,Acme,Won,2017-01-02,2017-02-03,5000"]
    folder = write_export(tmp_path / "x", lines, encoding="cp1252")
    with caplog.at_level(logging.WARNING, logger="goldgate.sources.crm_export"):
        table = read_crm_export(folder).tables["sales_pipeline"]
    assert table["sales_agent"].to_pylist() == ["Zoë Café"]
    assert any("sales_pipeline.csv" in r.getMessage() and "cp1252" in r.getMessage() for r in caplog.records)


def test_bytes_neither_utf8_nor_cp1252_name_file_and_row(tmp_path: Path) -> None:
    folder = write_export(tmp_path / "x", [PIPELINE_HEADER, "A1,x,y,z,Won,,,"])
    path = folder / "sales_pipeline.csv"
    path.write_bytes(path.read_bytes() + b"\nA2,\x81\x81,y,z,Won,,,\n")  # 0x81 is undefined in cp1252
    with pytest.raises(CrmSourceError, match=r"sales_pipeline\.csv: row 3: bytes are neither UTF-8 nor cp1252"):
        read_crm_export(folder)


def test_missing_folder_file_column_and_empty_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(CrmSourceError, match=r"nowhere: CRM export folder not found"):
        read_crm_export(tmp_path / "nowhere")
    folder = write_export(tmp_path / "x", [PIPELINE_HEADER])
    (folder / "products.csv").unlink()
    with pytest.raises(CrmSourceError, match=r"products\.csv: file not found"):
        read_crm_export(folder)
    folder = write_export(tmp_path / "y", [PIPELINE_HEADER.replace(",close_value", "")])
    with pytest.raises(CrmSourceError, match=r"sales_pipeline\.csv: required column\(s\) close_value missing"):
        read_crm_export(folder)
    folder = write_export(tmp_path / "z", [""])
    with pytest.raises(CrmSourceError, match=r"sales_pipeline\.csv: file is empty"):
        read_crm_export(folder)
    assert issubclass(CrmSourceError, SourceError)


def test_header_only_file_gives_an_empty_table(tmp_path: Path) -> None:
    table = read_crm_export(write_export(tmp_path / "x", [PIPELINE_HEADER, ""])).tables["sales_pipeline"]
    assert table.num_rows == 0
    assert table.column_names == [*REQUIRED_COLUMNS["sales_pipeline"], "_extra", "_row_number"]


def test_resolve_uses_an_explicit_folder_or_fails_naming_it(tmp_path: Path) -> None:
    folder = write_export(tmp_path / "x", [PIPELINE_HEADER])
    assert resolve_crm_source(folder, tmp_path / "ws") == folder
    with pytest.raises(CrmSourceError, match=r"missing: CRM export folder not found"):
        resolve_crm_source(tmp_path / "missing", tmp_path / "ws")
    assert not (tmp_path / "ws").exists()  # an explicit source never triggers the demo


def test_resolve_generates_the_demo_once_and_reuses_it(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    folder = resolve_crm_source(None, workspace, rows=300, seed=7)
    assert folder == workspace / "sources" / "crm-demo-s7-n300"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert sorted(stamps) == sorted(f"{n}.csv" for n in CRM_FILES)
    assert resolve_crm_source(None, workspace, rows=300, seed=7) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert [p.name for p in (workspace / "sources").iterdir()] == [folder.name]  # no temp folder left behind
    assert read_crm_export(folder).tables["sales_pipeline"].num_rows >= 300


def test_resolve_replaces_an_incomplete_demo(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    broken = workspace / "sources" / "crm-demo-s7-n300"
    broken.mkdir(parents=True)
    (broken / "accounts.csv").write_text("account\n")
    folder = resolve_crm_source(None, workspace, rows=300, seed=7)
    assert folder == broken
    reference = tmp_path / "reference"
    generate_crm(reference, rows=300, seed=7, dirt=Dirt())
    for name in CRM_FILES:
        assert (folder / f"{name}.csv").read_bytes() == (reference / f"{name}.csv").read_bytes(), name
