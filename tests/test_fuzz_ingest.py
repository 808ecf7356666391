"""Fuzzing ingest + silver of the fx use case (YAML on the engine) with generated ECB-format files: no crash, and
every candidate cell is accounted for.

A candidate cell is a non-missing value cell of a row whose date is inside the slice (or does not parse: such
rows are kept for silver to quarantine). Each example runs on a fresh workspace; the batch's ``__batch__``
quality row must count every candidate cell as passed (silver) or failed (quarantine), the rows outside the
slice are counted under ``outside_slice``, and every bronze line is a row of bronze.
"""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import ibis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.lake import Lake
from goldgate.usecase import load_usecase

SLICE = ["USD", "JPY", "GBP", "CHF"]
START, END = date(2021, 1, 1), date(2023, 12, 31)
# Spellings of "no fixing that day" (fx.yaml's source.missing), compared after trimming.
MISSING = {m.strip() for m in load_usecase("fx").source.missing}
DATE_FORMATS = ("%Y-%m-%d", "%d %B %Y")  # the history file and the daily file, as fx.yaml declares them
BRONZE, SILVER, QUARANTINE, QUALITY = "bronze.fxs_rates_raw", "silver.fxs_rates", "quarantine.fxs_rates", "ops.quality"

in_slice_day = st.dates(START, END).map(date.isoformat)
odd_day = st.sampled_from(
    ["2023-02-30", "31.12.2022", "yesterday", "2022-13-01", "", " ", "2022/03/01", "1 March 2022", "2022-3-1x"]
)
outside_day = st.sampled_from(["2019-05-02", "2025-01-02", "1998-12-31"])
rate = st.floats(0.0001, 5000, allow_nan=False).map(lambda v: f"{v:.4f}")
negative = st.floats(-5000, 0, allow_nan=False).map(lambda v: f"{v:.4f}")
garbage = st.one_of(
    st.sampled_from(["abc", "1.2.3", "#VALUE!", "1e400", "nan", "-inf", "0x1F", "n/a", "--", "1.05 EUR"]),
    st.text(alphabet="abcXYZ019.-+#!? ", min_size=1, max_size=8),
)
cell = st.one_of(rate, rate, rate, st.just("N/A"), st.just(""), negative, garbage, st.just("0"))


@st.composite
def ecb_files(draw: st.DrawFn) -> bytes:
    """Header ``Date,USD,JPY,GBP,CHF,`` and 1-12 rows of mixed cells; rows may be short or long."""
    days = [draw(in_slice_day), *draw(st.lists(st.one_of(in_slice_day, odd_day, outside_day), max_size=11))]
    lines = ["Date," + ",".join(SLICE) + ","]
    for day in days:
        cells = draw(st.lists(cell, min_size=4, max_size=4))
        width = draw(st.sampled_from([4, 4, 4, 2, 5, 6]))  # short rows lose cells, long rows add some
        cells = (cells + draw(st.lists(cell, min_size=2, max_size=2)))[:width]
        trailing = draw(st.booleans())
        lines.append(",".join([day, *cells]) + ("," if trailing else ""))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8")


def parse_day(text: str) -> date | None:
    """The date in a Date cell, or None when it is in neither of fx's formats."""
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def candidates(payload: bytes) -> tuple[int, int, int]:
    """(non-missing value cells under a slice currency of rows inside the slice or with an unparsable date,
    such cells of rows outside the slice, data lines that are not blank)."""
    lines = list(csv.reader(io.StringIO(payload.decode("utf-8-sig"), newline="")))
    header = [h.strip() for h in lines[0]]
    columns = [i for i, h in enumerate(header) if h in SLICE]
    inside = outside = rows = 0
    for cells in lines[1:]:
        if not cells:
            continue
        rows += 1
        count = sum(1 for i in columns if i < len(cells) and cells[i].strip() not in MISSING)
        day = parse_day(cells[0])
        if day is not None and not START <= day <= END:
            outside += count
        else:
            inside += count
    return inside, outside, rows


def _cli(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@settings(
    max_examples=25,
    database=None,  # no .hypothesis folder in the repository
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: a failing example costs seconds each
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payload=ecb_files())
def test_generated_file_is_conserved_through_ingest_and_silver(payload: bytes, slice_usecase_path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, ws = Path(tmp) / "rates.csv", Path(tmp) / "ws"
        source.write_bytes(payload)
        uc: list[str | Path] = ["--usecase", slice_usecase_path, "--workspace", ws]
        ingested = _cli("ingest", *uc, "--source", source)
        assert ingested.exit_code == 0, ingested.output
        silvered = _cli("step", "silver", *uc)
        assert silvered.exit_code == 0, silvered.output

        lake = Lake(ws / "lake", ibis.duckdb.connect())
        quality = lake.read(QUALITY).to_pyarrow().to_pylist()
        (batch,) = [r for r in quality if r["rule"] == "__batch__"]
        expected, outside, lines = candidates(payload)
        assert batch["passed"] + batch["failed"] == expected
        assert lake.rows(BRONZE) == lines  # bronze holds every line as received, the slice is silver's
        assert sum(r["failed"] for r in quality if r["rule"] == "outside_slice") == outside
        silver = lake.read(SILVER).to_pyarrow().to_pylist()
        quarantine = lake.read(QUARANTINE).to_pyarrow().to_pylist()
        assert (len(silver), len(quarantine)) == (batch["passed"], batch["failed"])
        assert all(r["_rule"] and r["_reason"] for r in quarantine)
        assert all(r["rate"] is not None and r["rate"] > 0 for r in silver)
