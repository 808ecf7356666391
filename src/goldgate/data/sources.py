"""Bronze input of the declarative engine: a file, glob, folder or package data file, read as received.

Every cell is kept as the text written in the file; an empty cell is NULL and nothing is trimmed or parsed. Only what
carries no data is left out, and it is counted or logged: a UTF-8 BOM, preamble lines before the header (``skip_rows``),
blank lines, comment lines, and an unnamed column (a trailing delimiter) without a value in any row. Each row carries
``_row_number`` (its line in the file; for Parquet and Delta its 1-based position) and ``_file``.

Delimited text goes through pyarrow's multithreaded reader when the file is clean (one record per line, no blank or
comment lines between records, every row as wide as the header) and through a line-by-line parse otherwise. That
parse keeps ragged rows: missing cells are NULL and surplus cells go to ``_extra``, so silver can quarantine them with
a reason.
Parquet, JSON lines and Delta keep their column names; their values are cast to text (nested values as JSON text).
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import itertools
import json
import logging
import os
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePath, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from goldgate.usecase import PackageFile, Source

log = logging.getLogger(__name__)

ROW_NUMBER = "_row_number"
FILE = "_file"
EXTRA = "_extra"
META_COLUMNS = (EXTRA, ROW_NUMBER, FILE)
DELIMITERS = (",", ";", "\t", "|")
SKIP_KINDS = ("comment", "blank", "preamble")
BOM = b"\xef\xbb\xbf"
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
# The options that shape the bronze table; the others (decimal, missing, unpivot, ...) are applied in silver.
READ_OPTIONS = frozenset({"format", "delimiter", "encoding", "comment", "header", "names", "skip_rows"})
_GLOB_CHARS = re.compile(r"[*?\[]")
_QUOTED = re.compile(r'"[^"]*"')
_BLANK_LINE = re.compile(rb"\n[ \t\f\v\r]*\n")
_SPACE_BYTES = b" \t\r\n\f\v"


class SourceError(ValueError):
    """A source file that is missing, unreadable, empty or not in the expected layout (every reader's base error)."""


class FileSourceError(SourceError):
    """A source file, glob or folder that is missing, unreadable, empty or malformed."""


@dataclass(frozen=True)
class SourceBatch:
    """A source as received: an all-text table with line numbers and file names, and what was left out."""

    table: pa.Table
    source: str
    batch_id: str
    files: list[str]
    skipped: dict[str, int]


@dataclass(frozen=True)
class _Head:
    """What precedes the data of a delimited file: its delimiter and column names."""

    delimiter: str
    names: list[str]
    unnamed: list[str]  # names given to header cells that were empty
    first_row: tuple[int, list[str]] | None  # header false: the first data row (line, cells), already read


def resolve_source(spec: Source, override: str | Path | None = None) -> str:
    """The path or glob to read: the CLI override, else ``spec.path``, else the package file.

    Errors name what is missing: the package that is not installed, or the file it does not ship.
    """
    if override is not None and str(override):  # an empty --source means "not given"
        return os.path.expanduser(str(override))
    if spec.path:
        return os.path.expanduser(spec.path)
    if spec.package is not None:
        return str(_package_file(spec.package))
    raise FileSourceError("source: no path, no package file and no --source given; name the file to read")


def read_source(spec: Source, override: str | Path | None = None) -> SourceBatch:
    """Read every file of the source into one all-text table with ``_row_number`` and ``_file``.

    Several files (a glob or a folder, sorted by name) are concatenated; columns some files lack are NULL there.
    """
    source = resolve_source(spec, override)
    _check_options(source, spec)
    paths = _list_files(source, spec.format)
    digest = hashlib.sha256()
    tables: list[pa.Table] = []
    skipped: Counter[str] = Counter(dict.fromkeys(SKIP_KINDS, 0))
    for path in paths:
        table, counts = _read_one(path, spec, digest)
        tables.append(_with_file(table, str(path)))
        skipped.update(counts)
    digest.update(spec.model_dump_json(include=set(READ_OPTIONS)).encode())
    files = [str(path) for path in paths]
    table = _union(tables, files)
    log.info(
        "%s: %d rows, %d columns from %d file(s); left out %s",
        source,
        table.num_rows,
        len([n for n in table.column_names if n not in META_COLUMNS]),
        len(files),
        ", ".join(f"{n} {kind}" for kind, n in skipped.items()),
    )
    return SourceBatch(table, source, digest.hexdigest()[:16], files, {k: skipped[k] for k in SKIP_KINDS})


def _package_file(package: PackageFile) -> Path:
    try:
        root = resources.files(package.name)
    except (ModuleNotFoundError, TypeError):
        raise FileSourceError(
            f"{package.path}: package '{package.name}' is not installed (install it, or give source.path)"
        ) from None
    path = Path(str(root / package.path))
    if not path.exists():
        raise FileSourceError(f"{path}: file not found in package '{package.name}'")
    return path


def _check_options(source: str, spec: Source) -> None:
    if spec.delimiter is not None and (len(spec.delimiter) != 1 or spec.delimiter in '"\r\n'):
        raise FileSourceError(
            f"{source}: delimiter must be one character other than a quote or line break, got {spec.delimiter!r}"
        )
    if spec.comment is not None and not spec.comment.strip():
        raise FileSourceError(f"{source}: comment marker must not be empty or blank")


def _list_files(source: str, declared: str) -> list[Path]:
    """The files to read, sorted: the file itself, the data files of a folder, or the matches of a glob."""
    path = Path(source)
    if path.exists():  # a name that exists wins over glob characters in it
        if path.is_dir() and not _is_delta(path) and declared != "delta":
            return _folder_files(path, declared)
        return [path]
    if _GLOB_CHARS.search(source):
        matches = sorted(Path(m) for m in glob.glob(source, recursive=True))
        matches = [m for m in matches if m.is_file() or _is_delta(m)]
        if not matches:
            raise FileSourceError(f"{source}: no file matches this pattern")
        return matches
    raise FileSourceError(f"{source}: file not found")


def _folder_files(folder: Path, declared: str) -> list[Path]:
    """A folder's files, its subfolders' too; with format auto only those whose name tells a data format."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))
    if declared == "auto":
        ignored = [p.name for p in files if not _is_data_name(p.name)]
        if ignored:
            log.info("%s: not data files by their names, ignored: %s", folder, ", ".join(ignored))
        files = [p for p in files if _is_data_name(p.name)]
    if not files:
        raise FileSourceError(f"{folder}: folder holds no data files")
    return files


def _is_data_name(name: str) -> bool:
    suffixes = [s.lower() for s in PurePath(name).suffixes[-2:]]
    if suffixes[-1:] == [".zip"]:
        return True
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in SUFFIX_FORMATS


def _hidden(relative: PurePath) -> bool:
    """Hidden and bookkeeping entries (``.crc``, ``_SUCCESS``, ``__MACOSX``) are not data."""
    return any(part.startswith((".", "_")) for part in relative.parts)


def _is_delta(path: Path) -> bool:
    return path.is_dir() and (path / "_delta_log").is_dir()


def _read_one(path: Path, spec: Source, digest: hashlib._Hash) -> tuple[pa.Table, Counter[str]]:
    """One file (or Delta folder) as text, hashing its name and bytes into ``digest``."""
    if _is_delta(path):
        return _read_delta(path, digest), Counter()
    if spec.format == "delta":
        raise FileSourceError(f"{path}: not a Delta table (no _delta_log folder)")
    raw = _read_bytes(path)
    # The name goes into the hash so that bytes moving between files change the batch id.
    digest.update(f"{path.name}\0{len(raw)}\0".encode())
    digest.update(raw)
    payload, inner = _unpack(path, raw)
    fmt = spec.format if spec.format != "auto" else SUFFIX_FORMATS.get(PurePath(inner).suffix.lower(), "csv")
    if fmt == "parquet":
        return _read_parquet(path, payload), Counter()
    if fmt == "jsonl":
        return _read_jsonl(path, payload), Counter()
    return _read_delimited(path, payload, spec, "\t" if fmt == "tsv" else None)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileSourceError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _unpack(path: Path, raw: bytes) -> tuple[bytes, str]:
    """The data bytes of a file (unzipped or gunzipped when it is compressed) and the name that tells their format."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _unzip(path, raw)
    if suffix == ".gz":
        try:
            return gzip.decompress(raw), path.stem
        except (OSError, EOFError, zlib.error):
            raise FileSourceError(f"{path}: not a valid gzip file") from None
    return raw, path.name


def _unzip(path: Path, raw: bytes) -> tuple[bytes, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and not _hidden(PurePosixPath(m.filename))]
            known = [m for m in members if PurePosixPath(m.filename).suffix.lower() in SUFFIX_FORMATS]
            if len(members) > 1 and len(known) == 1:
                members = known  # e.g. a CSV with a README next to it
            if len(members) != 1:
                found = ", ".join(m.filename for m in members) or "none"
                raise FileSourceError(f"{path}: expected one data file inside the zip, found {len(members)} ({found})")
            return archive.read(members[0]), PurePosixPath(members[0].filename).name
    except (zipfile.BadZipFile, zlib.error, EOFError):
        raise FileSourceError(f"{path}: not a valid zip file") from None


# --- delimited text -------------------------------------------------------------------------------------------------


def _read_delimited(path: Path, payload: bytes, spec: Source, delimiter: str | None) -> tuple[pa.Table, Counter[str]]:
    """A CSV/TSV file as text columns, ``_extra`` and ``_row_number``; also the lines left out, by kind."""
    data, start = _as_utf8(path, payload, spec.encoding)
    delimiter = spec.delimiter or delimiter
    fast = _read_fast(path, data, start, spec, delimiter)
    table, skipped, head = fast if fast is not None else _read_slow(path, data, start, spec, delimiter)
    if table.num_rows == 0:
        log.info("%s: no data rows (header only)", path)
    return _drop_empty_unnamed(path, table, head.unnamed), skipped


def _as_utf8(path: Path, payload: bytes, encoding: str) -> tuple[bytes, int]:
    """The file as UTF-8 bytes and where its text starts (after a BOM); a UTF-8 file is not copied."""
    if encoding in ("cp1252", "latin-1"):
        return _decode(path, payload, encoding).encode("utf-8"), 0
    start = len(BOM) if payload.startswith(BOM) else 0
    bad = _first_bad_utf8(payload, start)
    if bad is None:
        return payload, start
    if encoding != "auto":
        raise FileSourceError(f"{path}: line {_line_of(payload, bad)}: bytes are not valid {encoding} (byte {bad})")
    text = _decode(path, payload[start:], "cp1252", "neither UTF-8 nor cp1252")
    log.warning("%s: not UTF-8 (first bad byte on line %d); read as cp1252", path, _line_of(payload, bad))
    return text.encode("utf-8"), 0


def _first_bad_utf8(data: bytes, start: int) -> int | None:
    """Offset of the first byte that is not valid UTF-8, or None; validated by pyarrow without a decoded copy."""
    offsets = pa.py_buffer(np.array([start, len(data)], dtype=np.int64))
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        whole.cast(pa.large_string())
        return None
    except pa.ArrowInvalid:
        pass
    try:
        data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        return start + exc.start
    return None


def _decode(path: Path, body: bytes, encoding: str, rule: str | None = None) -> str:
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise FileSourceError(
            f"{path}: line {_line_of(body, exc.start)}: bytes are {rule or f'not valid {encoding}'} (byte {exc.start})"
        ) from None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _text_lines(data: bytes, start: int) -> Iterator[str]:
    """The physical lines of UTF-8 bytes from ``start``, line endings kept, decoded lazily."""
    stream = io.BytesIO(data)
    stream.seek(start)
    return iter(io.TextIOWrapper(stream, encoding="utf-8", newline=""))


class _LineFeed:
    """Physical lines for ``csv.reader`` that leaves out preamble, blank and comment lines between records.

    ``in_record`` is set while the reader is inside a record, so a quoted value's blank or ``#`` line is kept;
    the caller clears it after each record. ``record_start`` is the line the current record starts on.
    """

    def __init__(self, lines: Iterator[str], spec: Source, count_bytes: bool = False) -> None:
        self._lines = lines
        self._comment = spec.comment
        self._preamble = spec.skip_rows
        self._count_bytes = count_bytes
        self.line = 0
        self.offset = 0  # bytes handed out or left out so far (with count_bytes)
        self.record_start = 0
        self.record_offset = 0
        self.in_record = False
        self.skipped: Counter[str] = Counter()

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        while True:
            text = next(self._lines)
            self.line += 1
            before = self.offset
            if self._count_bytes:
                self.offset += len(text.encode("utf-8"))
            if self.in_record:
                return text
            kind = self._left_out(text)
            if kind is None:
                self.in_record, self.record_start, self.record_offset = True, self.line, before
                return text
            self.skipped[kind] += 1

    def _left_out(self, text: str) -> str | None:
        if self.line <= self._preamble:
            return "preamble"
        stripped = text.lstrip()
        if not stripped:
            return "blank"
        if self._comment and stripped.startswith(self._comment):
            return "comment"
        return None


def _scan_head(path: Path, feed: _LineFeed, spec: Source, delimiter: str | None) -> tuple[_Head, Iterator[list[str]]]:
    """The delimiter (sniffed from the first line unless given), the column names, and the reader after them."""
    try:
        first = next(feed)
    except StopIteration:
        after = f" after {spec.skip_rows} preamble line(s)" if spec.skip_rows else ""
        raise FileSourceError(f"{path}: file is empty (no {'header' if spec.header else 'data'} line{after})") from None
    delimiter = delimiter or _sniff(first)
    reader = csv.reader(itertools.chain([first], feed), delimiter=delimiter)
    row = _next_row(path, reader, feed) or []
    line = feed.record_start
    if spec.header:
        names = [cell.strip() for cell in row]
        unnamed = [f"_column_{i + 1}" for i, name in enumerate(names) if not name]
        names = [name or f"_column_{i + 1}" for i, name in enumerate(names)]
        _check_names(f"{path}: line {line}", names)
        return _Head(delimiter, names, unnamed, None), reader
    return _Head(delimiter, _given_names(path, row, spec.names, line), [], (line, row)), reader


def _sniff(line: str) -> str:
    """The candidate delimiter seen most often outside quotes (ties: the earlier candidate); ',' when none is."""
    counts = [_QUOTED.sub("", line).count(d) for d in DELIMITERS]
    return DELIMITERS[counts.index(max(counts))] if max(counts) else ","


def _given_names(path: Path, row: list[str], names: list[str] | None, line: int) -> list[str]:
    if names is None:
        return [f"column_{i + 1}" for i in range(len(row))]
    if len(names) != len(row):
        raise FileSourceError(
            f"{path}: line {line}: names give {len(names)} columns but the data has {len(row)} fields"
        )
    _check_names(f"{path}: names", names)
    return list(names)


def _check_names(where: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FileSourceError(f"{where}: column name(s) {', '.join(repeated)} appear more than once")
    reserved = [n for n in names if n in META_COLUMNS]
    if reserved:
        raise FileSourceError(f"{where}: column name(s) {', '.join(reserved)} are reserved for bronze bookkeeping")


def _next_row(path: Path, reader: Iterator[list[str]], feed: _LineFeed) -> list[str] | None:
    try:
        row = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise FileSourceError(f"{path}: line {feed.record_start}: {exc} (an unclosed quote?)") from None
    feed.in_record = False
    return row


def _read_fast(
    path: Path, data: bytes, start: int, spec: Source, delimiter: str | None
) -> tuple[pa.Table, Counter[str], _Head] | None:
    """pyarrow's reader over the data lines, without copying them; None when the file needs the line-by-line parse."""
    if b"\n" not in data and b"\r" in data:
        return None  # old-Mac line endings: line numbers need the line-by-line parse
    feed = _LineFeed(_text_lines(data, start), spec, count_bytes=True)
    head, _ = _scan_head(path, feed, spec, delimiter)
    if head.first_row is None:
        offset, first_line = start + feed.offset, feed.line + 1
    else:
        offset, first_line = start + feed.record_offset, head.first_row[0]
    end, lines, trailing_blank = _data_extent(data, offset)
    if lines and not _clean(data, offset, end, spec.comment):
        return None
    table = _parse_fast(path, data, offset, end, head) if lines else _empty(head.names)
    # Only a one-record-per-line parse gives rows whose line numbers can be counted on.
    if table is None or table.num_rows != lines:
        return None
    rows = pa.array(np.arange(first_line, first_line + lines, dtype=np.int64))
    table = table.append_column(EXTRA, pa.nulls(lines, pa.string())).append_column(ROW_NUMBER, rows)
    return table, feed.skipped + Counter(blank=trailing_blank), head


def _data_extent(data: bytes, offset: int) -> tuple[int, int, int]:
    """From ``offset``: the end of the last non-blank line, the lines up to it, and the blank lines after it."""
    end = len(data)
    while end > offset and data[end - 1] in _SPACE_BYTES:
        end -= 1
    if end == offset:
        return offset, 0, _blank_lines(data[offset:])
    stop = data.find(b"\n", end)
    stop = len(data) if stop < 0 else stop
    return stop, data.count(b"\n", offset, stop) + 1, _blank_lines(data[stop + 1 :])


def _blank_lines(tail: bytes) -> int:
    return tail.count(b"\n") + (1 if tail and not tail.endswith(b"\n") else 0)


def _clean(data: bytes, offset: int, end: int, comment: str | None) -> bool:
    """No blank line between the data lines, and no line that starts with the comment marker."""
    if _BLANK_LINE.search(data, max(offset - 1, 0), end):
        return False
    if comment is None:
        return True
    marker = re.compile(rb"(?m)^[ \t\f\v]*" + re.escape(comment.encode("utf-8")))
    return marker.search(data, offset, end) is None


def _parse_fast(path: Path, data: bytes, offset: int, end: int, head: _Head) -> pa.Table | None:
    try:
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data).slice(offset, end - offset)),
            read_options=pacsv.ReadOptions(column_names=head.names, block_size=8 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter=head.delimiter, newlines_in_values=False, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(head.names, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        log.debug("%s: pyarrow rejected the file (%s); reading line by line", path, exc)
        return None


def _empty(names: list[str]) -> pa.Table:
    return pa.table({name: pa.array([], pa.string()) for name in names})


def _read_slow(
    path: Path, data: bytes, start: int, spec: Source, delimiter: str | None
) -> tuple[pa.Table, Counter[str], _Head]:
    """Line-by-line parse: records may span lines (quoted line breaks), rows may be short or long."""
    feed = _LineFeed(_text_lines(data, start), spec)
    head, reader = _scan_head(path, feed, spec, delimiter)
    rows = _Rows(head.names, head.delimiter)
    if head.first_row is not None:
        rows.add(*head.first_row)
    while (row := _next_row(path, reader, feed)) is not None:
        rows.add(feed.record_start, row)
    rows.report(path, ends_in_line=_ends_in_line(data))
    return rows.table(), feed.skipped, head


def _ends_in_line(data: bytes) -> bool:
    """Whether the last line has no line break after it (trailing spaces and tabs aside)."""
    end = len(data)
    while end > 0 and data[end - 1] in b" \t":
        end -= 1
    return end > 0 and data[end - 1] not in b"\r\n"


class _Rows:
    """Columns built row by row: missing cells NULL, surplus cells CSV-encoded in ``_extra``."""

    def __init__(self, names: list[str], delimiter: str) -> None:
        self._names = names
        self._delimiter = delimiter
        self._columns: list[list[str | None]] = [[] for _ in names]
        self._extras: list[str | None] = []
        self._lines: list[int] = []
        self._short: list[int] = []  # lines of rows with too few fields
        self._long: list[int] = []  # lines of rows with surplus cells that hold a value
        self._padded = 0  # rows whose surplus cells are all empty (a trailing delimiter)
        self._last_fields = 0  # fields of the last row added

    def add(self, line: int, row: list[str]) -> None:
        width = len(self._names)
        for column, cell in zip(self._columns, row, strict=False):
            column.append(cell or None)
        for column in self._columns[len(row) :]:
            column.append(None)
        extra = None
        if len(row) < width:
            self._short.append(line)
        elif len(row) > width:
            if any(row[width:]):
                self._long.append(line)
                extra = _encode_cells(row[width:], self._delimiter)
            else:
                self._padded += 1
        self._extras.append(extra)
        self._lines.append(line)
        self._last_fields = len(row)

    def report(self, path: Path, ends_in_line: bool = False) -> None:
        """Warn of short and long rows; ``ends_in_line``: the data ends without a line break after its last row."""
        width = len(self._names)
        if ends_in_line and self._short and self._short[-1] == self._lines[-1]:
            log.warning(
                "%s: the file ends inside line %d, which has %d of the header's %d fields: a truncated file? "
                "Its last cell may be cut short too",
                *(path, self._lines[-1], self._last_fields, width),
            )
        if self._short:
            log.warning(
                "%s: %d row(s) have fewer fields than the header's %d (first on line %d); kept, missing cells NULL",
                *(path, len(self._short), width, self._short[0]),
            )
        if self._long:
            log.warning(
                "%s: %d row(s) have more fields than the header's %d (first on line %d); surplus kept in %s",
                *(path, len(self._long), width, self._long[0], EXTRA),
            )
        if self._padded:
            log.info("%s: %d row(s) end in empty surplus cells (a trailing delimiter); ignored", path, self._padded)

    def table(self) -> pa.Table:
        arrays = {name: pa.array(values, pa.string()) for name, values in zip(self._names, self._columns, strict=True)}
        arrays[EXTRA] = pa.array(self._extras, pa.string())
        arrays[ROW_NUMBER] = pa.array(self._lines, pa.int64())
        return pa.table(arrays)


def _encode_cells(cells: list[str], delimiter: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow(cells)
    return buffer.getvalue()


def _drop_empty_unnamed(path: Path, table: pa.Table, unnamed: list[str]) -> pa.Table:
    """An unnamed column (e.g. from a trailing delimiter on every line) is not a source column if it is all empty."""
    for name in unnamed:
        if table[name].null_count == table.num_rows:
            table = table.drop_columns([name])
            log.info("%s: unnamed column %s holds only empty cells (%d); dropped", path, name, table.num_rows)
    return table


# --- Parquet, JSON lines, Delta --------------------------------------------------------------------------------------


def _read_parquet(path: Path, payload: bytes) -> pa.Table:
    try:
        table = pq.read_table(pa.BufferReader(payload))
    except (pa.ArrowException, OSError) as exc:
        raise FileSourceError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    return _numbered(_as_text(path, table), np.arange(1, table.num_rows + 1, dtype=np.int64))


def _read_jsonl(path: Path, payload: bytes) -> pa.Table:
    """JSON lines through pyarrow; a file it cannot type (a key changing type, say) is read line by line."""
    start = len(BOM) if payload.startswith(BOM) else 0
    try:
        table = pajson.read_json(pa.BufferReader(pa.py_buffer(payload).slice(start)))
    except pa.ArrowInvalid as exc:
        log.info("%s: %s; reading line by line", path, _first_line(exc))
        return _read_jsonl_lines(path, payload[start:])
    lines = _json_line_numbers(payload, start, table.num_rows)
    if lines is None:  # a line of only spaces: let the exact parse number the records
        return _read_jsonl_lines(path, payload[start:])
    return _numbered(_as_text(path, table), lines)


def _json_line_numbers(data: bytes, start: int, rows: int) -> np.ndarray | None:
    """The 1-based lines that are not empty, or None when they are not one per record."""
    if rows == 0:
        return np.arange(1, 1, dtype=np.int64)
    codes = np.frombuffer(data, dtype=np.uint8)
    ends = np.append(np.flatnonzero(codes == 10), len(data))
    starts = np.insert(ends[:-1] + 1, 0, start)
    lengths = ends - starts
    carriage = (lengths > 0) & (codes[np.maximum(ends - 1, 0)] == 13)
    filled = np.flatnonzero(lengths - carriage > 0) + 1
    return filled.astype(np.int64) if len(filled) == rows else None


def _read_jsonl_lines(path: Path, body: bytes) -> pa.Table:
    """One JSON object per line, each value as text; errors name the line."""
    columns: dict[str, list[str | None]] = {}
    lines: list[int] = []
    for number, line in enumerate(_decode(path, body, "utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FileSourceError(f"{path}: line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise FileSourceError(f"{path}: line {number}: expected a JSON object, found {type(record).__name__}")
        for key, value in record.items():
            columns.setdefault(key, [None] * len(lines)).append(_json_text(value))
        lines.append(number)
        for values in columns.values():
            if len(values) < len(lines):
                values.append(None)
    _check_names(str(path), list(columns))
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    return _numbered(table, np.array(lines, dtype=np.int64))


def _json_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _read_delta(path: Path, digest: hashlib._Hash) -> pa.Table:
    """The current version of a Delta table; its active data files' names and bytes go into the hash."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    try:
        delta = DeltaTable(str(path))
        table = delta.to_pyarrow_table()
        data_files = sorted(Path(uri.removeprefix("file://")) for uri in delta.file_uris())
    except (DeltaError, OSError, pa.ArrowException) as exc:
        raise FileSourceError(f"{path}: not a readable Delta table ({_first_line(exc)})") from None
    for data_file in data_files:
        payload = _read_bytes(data_file)
        digest.update(f"{data_file.name}\0{len(payload)}\0".encode())
        digest.update(payload)
    return _numbered(_as_text(path, table), np.arange(1, table.num_rows + 1, dtype=np.int64))


def _as_text(path: Path, table: pa.Table) -> pa.Table:
    """Every column cast to text; NULLs stay NULL."""
    _check_names(str(path), table.column_names)
    return pa.table({name: _text_column(path, name, table[name]) for name in table.column_names})


def _text_column(path: Path, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_nested(kind):
        # Nested values are rare in tabular sources; their JSON text is made value by value.
        cells = [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in column.to_pylist()]
        return pa.array(cells, pa.string())
    if kind == pa.string():
        return column
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise FileSourceError(f"{path}: column {name}: values of type {kind} cannot be read as text") from None


def _numbered(table: pa.Table, lines: np.ndarray) -> pa.Table:
    return table.append_column(ROW_NUMBER, pa.array(lines, pa.int64()))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- batch ---------------------------------------------------------------------------------------------------------


def _with_file(table: pa.Table, name: str) -> pa.Table:
    # One dictionary entry repeated: no Python object per row.
    indices = pa.array(np.zeros(table.num_rows, dtype=np.int32))
    column = pa.DictionaryArray.from_arrays(indices, pa.array([name], pa.string())).dictionary_decode()
    return table.append_column(FILE, column)


def _union(tables: list[pa.Table], files: list[str]) -> pa.Table:
    """The tables one after the other over the union of their columns; a column a file lacks is NULL in its rows."""
    if len(tables) == 1:
        return tables[0]
    names = [n for n in dict.fromkeys(itertools.chain(*(t.column_names for t in tables))) if n not in META_COLUMNS]
    meta = [m for m in META_COLUMNS if any(m in t.column_names for t in tables)]
    for table, file in zip(tables, files, strict=True):
        missing = [n for n in names if n not in table.column_names]
        if missing:
            log.warning("%s: lacks column(s) %s that other files have; NULL in its rows", file, ", ".join(missing))
    return pa.concat_tables([_aligned(table, [*names, *meta]) for table in tables])


def _aligned(table: pa.Table, names: list[str]) -> pa.Table:
    present = set(table.column_names)
    return pa.table({n: table[n] if n in present else pa.nulls(table.num_rows, pa.string()) for n in names})
