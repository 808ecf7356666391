"""A CRM export folder in the Maven "CRM Sales Opportunities" layout: four CSVs read as received.

Bronze keeps every cell as text exactly as it is in the file (only a UTF-8 BOM and the whitespace around header
names are removed); an empty cell is NULL. Quirks of real exports handled here: Windows line endings, a BOM,
quoted fields with commas, a trailing empty line, cp1252 bytes from spreadsheet tools, and rows with too few or
too many fields. Such rows are kept (missing cells NULL, surplus cells in ``_extra``) so that silver expectations
can quarantine them with a reason instead of the reader dropping them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from goldgate.sources.ecb_fx import SourceError

log = logging.getLogger(__name__)

CRM_FILES = ("sales_pipeline", "accounts", "products", "sales_teams")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "sales_pipeline": (
        "opportunity_id",
        "sales_agent",
        "product",
        "account",
        "deal_stage",
        "engage_date",
        "close_date",
        "close_value",
    ),
    "accounts": (
        "account",
        "sector",
        "year_established",
        "revenue",
        "employees",
        "office_location",
        "subsidiary_of",
    ),
    "products": ("product", "series", "sales_price"),
    "sales_teams": ("sales_agent", "manager", "regional_office"),
}
ROW_NUMBER = "_row_number"
EXTRA = "_extra"
BOM = b"\xef\xbb\xbf"
_NON_BLANK = re.compile(rb"\S")


class CrmSourceError(SourceError):
    """A CRM export folder or file that is missing, unreadable or not in the Maven CSV layout."""


@dataclass(frozen=True)
class CrmBatch:
    """One export as received: a text table per file, the content hash of all four files, and where they came from."""

    tables: dict[str, pa.Table]
    batch_id: str
    source: str
    files: dict[str, str] = field(default_factory=dict)


def read_crm_export(folder: Path) -> CrmBatch:
    """Read the four CSVs of an export folder into all-text tables with file line numbers."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise CrmSourceError(f"{folder}: CRM export folder not found")
    if not folder.is_dir():
        raise CrmSourceError(f"{folder}: not a folder (expected one holding {', '.join(_csv_names())})")
    digest = hashlib.sha256()
    tables: dict[str, pa.Table] = {}
    files: dict[str, str] = {}
    for name in CRM_FILES:
        path = folder / f"{name}.csv"
        payload = _read_file(path)
        # The file name goes into the hash so that bytes moving between files change the batch id.
        digest.update(f"{name}\0{len(payload)}\0".encode())
        digest.update(payload)
        tables[name] = read_crm_csv(path, payload, REQUIRED_COLUMNS[name])
        files[name] = str(path)
    return CrmBatch(tables=tables, batch_id=digest.hexdigest()[:16], source=str(folder), files=files)


def read_crm_csv(path: Path, payload: bytes, required: tuple[str, ...] = ()) -> pa.Table:
    """One CSV's bytes as a text table (``_row_number`` = line in the file, ``_extra`` = surplus cells).

    A UTF-8 file is parsed in place (no decoded copy of the file is made, which matters for large exports); only
    a file that needs the line-by-line parse, or is not UTF-8, is decoded as a whole.
    """
    start = len(BOM) if payload.startswith(BOM) else 0
    if _NON_BLANK.search(payload, start) is None:
        raise CrmSourceError(f"{path}: file is empty (no header line)")
    header = _parse_header(path, _head_text(path, payload, start))
    missing = [c for c in required if c not in header]
    if missing:
        raise CrmSourceError(
            f"{path}: required column(s) {', '.join(missing)} missing from the header (found: {', '.join(header)})"
        )
    table = _read_fast(path, payload, start, header)
    if table is None:
        text, utf8 = _decode(path, payload[start:])
        if utf8 is not None:  # cp1252 re-encoded as UTF-8: the fast path may take it now
            table = _read_fast(path, utf8, 0, header)
        if table is None:
            table = _read_slow(path, text, header)
    return table


def resolve_crm_source(explicit: str | Path | None, workspace: Path, rows: int = 8800, seed: int = 42) -> Path:
    """The export folder to ingest: the explicit one, else the demo export generated once into the workspace."""
    if explicit is not None and str(explicit):  # an empty --source means "not given"
        folder = Path(explicit).expanduser()
        if not folder.is_dir():
            raise CrmSourceError(f"{folder}: CRM export folder not found (expected {', '.join(_csv_names())})")
        return folder
    target = Path(workspace) / "sources" / f"crm-demo-s{seed}-n{rows}"
    if _is_complete(target):
        return target
    return _generate_demo(target, rows, seed)


def _csv_names() -> list[str]:
    return [f"{name}.csv" for name in CRM_FILES]


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _csv_names())


def _generate_demo(target: Path, rows: int, seed: int) -> Path:
    """Generate into a temporary sibling folder and rename it into place, so a half-written export is never seen."""
    from goldgate.sources.crm_synthetic import generate_crm  # the generator is only needed for the demo

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        written = generate_crm(tmp, rows=rows, seed=seed)
        if target.exists() and not _is_complete(target):
            log.warning("%s: incomplete demo export found, replacing it", target)
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same demo first: its export is identical (same seed), use it.
            if not _is_complete(target):
                raise
            log.info("%s: generated concurrently by another process, reusing it", target)
            return target
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("generated demo CRM export %s (%s)", target, ", ".join(f"{k}={v}" for k, v in written.items()))
    return target


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise CrmSourceError(f"{path}: file not found (a CRM export needs {', '.join(_csv_names())})")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CrmSourceError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _line_of(payload: bytes, offset: int) -> int:
    return payload.count(b"\n", 0, offset) + 1


def _decode(path: Path, body: bytes) -> tuple[str, bytes | None]:
    """The text, and its UTF-8 bytes when the file was not UTF-8 (read as cp1252, as spreadsheet tools write)."""
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    try:
        text = body.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise CrmSourceError(
            f"{path}: row {_line_of(body, exc.start)}: bytes are neither UTF-8 nor cp1252 (byte {exc.start})"
        ) from None
    log.warning("%s: not UTF-8 (first bad byte on line %d); read as cp1252", path, _line_of(body, first_bad))
    return text, text.encode("utf-8")


def _head_text(path: Path, payload: bytes, start: int) -> str:
    """The header line as text; the whole file when a quoted header name spans lines (rare)."""
    end = payload.find(b"\n", start)
    line = payload[start : len(payload) if end < 0 else end + 1]
    if line.count(b'"') % 2:
        line = payload[start:]
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return _decode(path, payload[start:])[0]


def _parse_header(path: Path, text: str) -> list[str]:
    first = next(csv.reader(io.StringIO(text, newline="")))
    header = [name.strip() for name in first]
    # An unnamed column (e.g. from a trailing comma) still carries cells: give it a name instead of dropping it.
    header = [name or f"_column_{i + 1}" for i, name in enumerate(header)]
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:
        raise CrmSourceError(f"{path}: row 1: column name(s) {', '.join(repeated)} appear more than once")
    return header


def _physical_lines(data: bytes) -> int:
    """Lines in the file once trailing line breaks are ignored (what a clean parse must turn into header + rows)."""
    end = len(data)
    while end and data[end - 1] in b"\r\n":
        end -= 1
    return data.count(b"\n", 0, end) + 1 if end else 0


def _read_fast(path: Path, data: bytes, start: int, header: list[str]) -> pa.Table | None:
    """pyarrow's multithreaded CSV reader over the UTF-8 bytes from ``start``, without copying them.

    None when the file needs the line-by-line path (ragged rows, blank lines, quoted line breaks) or is not UTF-8.
    """
    if b"\n" not in data and b"\r" in data:
        return None  # old-Mac line endings: row numbers need the line-by-line path
    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data).slice(start)),
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=8 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        log.debug("%s: pyarrow rejected the file (%s); reading line by line", path, exc)
        return None
    # Blank lines inside the file or line breaks inside quotes shift line numbers: only trust a 1:1 mapping.
    if table.num_rows + 1 != _physical_lines(data):
        return None
    table = table.append_column(EXTRA, pa.nulls(table.num_rows, pa.string()))
    return table.append_column(ROW_NUMBER, pa.array(np.arange(2, table.num_rows + 2, dtype=np.int64)))


def _read_slow(path: Path, text: str, header: list[str]) -> pa.Table:
    """Line-by-line parse that keeps ragged rows: missing cells NULL, surplus cells CSV-encoded in ``_extra``."""
    width = len(header)
    columns: list[list[str | None]] = [[] for _ in header]
    extras: list[str | None] = []
    row_numbers: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    line = reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num
        if not row:
            continue  # a blank line is not a record
        if len(row) != width:
            log.warning("%s: row %d has %d fields, header has %d; kept", path, start, len(row), width)
        for i, column in enumerate(columns):
            column.append(row[i] if i < len(row) and row[i] != "" else None)
        extras.append(_encode_cells(row[width:]) if len(row) > width else None)
        row_numbers.append(start)
    arrays = {name: pa.array(values, pa.string()) for name, values in zip(header, columns, strict=True)}
    arrays[EXTRA] = pa.array(extras, pa.string())
    arrays[ROW_NUMBER] = pa.array(row_numbers, pa.int64())
    return pa.table(arrays)


def _encode_cells(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()
