"""Incremental ingestion: the bundled history, then the bundled daily file, then a newer overlapping file.

Overlaps update, new keys append, nothing duplicates, and a file ingested twice is one batch. Expected overlaps
are computed from the files themselves.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.context import Context
from goldgate.dag import get_step
from goldgate.runner import run_step
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase

SLICE = ["USD", "JPY", "GBP", "CHF"]
START = date(2021, 1, 1)
BRONZE, SILVER, QUARANTINE, QUALITY = "bronze.fxs_rates_raw", "silver.fxs_rates", "quarantine.fxs_rates", "ops.quality"
MISSING = {"N/A", "", "NA", "null", "NULL"}


def _package_file(name: str) -> Path:
    return Path(str(resources.files("currency_converter") / name))


HISTORY = _package_file("eurofxref-hist.zip")
DAILY = _package_file("eurofxref.csv")


def _parse_day(text: str) -> date:
    for fmt in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise AssertionError(f"not an ECB date: {text!r}")


def _cells(text: str) -> dict[tuple[date, str], float]:
    """(date, currency) -> rate of every slice cell with a fixing on or after the slice start, read independently."""
    lines = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    header = [h.strip() for h in lines[0]]
    found = {}
    for cells in lines[1:]:
        if not any(c.strip() for c in cells):
            continue
        day = _parse_day(cells[0])
        if day < START:
            continue
        for i, name in enumerate(header):
            if name in SLICE and i < len(cells) and cells[i].strip() not in MISSING:
                found[(day, name)] = float(cells[i])
    return found


@pytest.fixture(scope="module")
def history() -> dict[tuple[date, str], float]:
    with zipfile.ZipFile(HISTORY) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".csv")]
        return _cells(archive.read(member).decode("utf-8"))


@pytest.fixture(scope="module")
def daily() -> dict[tuple[date, str], float]:
    return _cells(DAILY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def open_ended(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> Path:
    """The slice with ``end: null``, so the daily file's date falls inside it."""
    data = yaml.safe_load(slice_usecase_path.read_text())
    data["source"]["end"] = None
    path = tmp_path_factory.mktemp("usecase") / "fx_slice_open_ended.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Workspace:
    """Steps run in process on one workspace, each with a fresh context (as separate CLI calls would)."""

    def __init__(self, root: Path, usecase: Path) -> None:
        self.root, self.usecase = root, usecase
        self.base = Context(load_settings(workspace=root), load_usecase(usecase))

    def step(self, name: str, source: Path | None = None) -> dict[str, Any]:
        ctx = replace(self.base, source=str(source) if source else None, results={})
        return run_step(ctx, get_step(name))

    @property
    def lake(self) -> Any:
        return replace(self.base, results={}).lake

    def rows(self, name: str, **equal: Any) -> list[dict[str, Any]]:
        found = self.lake.read(name).to_pyarrow().to_pylist()
        return [r for r in found if all(r[k] == v for k, v in equal.items())]

    def silver(self) -> dict[tuple[date, str], dict[str, Any]]:
        rows = self.rows(SILVER)
        keys = Counter((r["date"], r["currency"]) for r in rows)
        assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]  # no duplicate (date, currency)
        return {(r["date"], r["currency"]): r for r in rows}

    def versions(self) -> dict[str, int | None]:
        lake = self.lake
        return {name: lake.version(name) for name in lake.tables()}


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, open_ended: Path, daily: dict[tuple[date, str], float]) -> Any:
    """History, then daily file (twice), then a newer file: every step's result and the table states between."""
    ws = Workspace(tmp_path_factory.mktemp("ws"), open_ended)
    out: dict[str, Any] = {"ws": ws}
    out["history_ingest"] = ws.step("ingest")
    out["history_silver"] = ws.step("silver")
    out["after_history"] = ws.silver()
    out["daily_ingest"] = ws.step("ingest", DAILY)
    out["daily_silver"] = ws.step("silver")
    out["after_daily"] = ws.silver()
    batch = out["daily_ingest"]["batch_id"]
    out["daily_batch_rows"] = (len(ws.rows(SILVER, _batch_id=batch)), len(ws.rows(QUARANTINE, _batch_id=batch)))
    out["versions_after_daily"] = ws.versions()
    out["daily_again_ingest"] = ws.step("ingest", DAILY)
    out["daily_again_silver"] = ws.step("silver")
    out["versions_after_daily_again"] = ws.versions()
    # A newer file: the last two days already in silver with changed rates, and one new day.
    days = sorted({d for d, _ in out["after_daily"]})[-2:]
    new_day = days[-1] + timedelta(days=3 if days[-1].weekday() == 4 else 1)
    changed = {(d, c): round(out["after_daily"][(d, c)]["rate"] * 1.01, 6) for d in days for c in SLICE}
    added = {(new_day, c): round(1.5 + i / 10, 4) for i, c in enumerate(SLICE)}
    newer = {**changed, **added}
    path = tmp_path_factory.mktemp("newer") / "eurofxref-newer.csv"
    lines = ["Date,USD,JPY,GBP,CHF,"] + [
        ",".join([d.isoformat(), *(str(newer[(d, c)]) for c in SLICE)]) + ","
        for d in sorted({d for d, _ in newer}, reverse=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    out.update(newer_path=path, newer=newer, changed=changed, added=added)
    out["newer_ingest"] = ws.step("ingest", path)
    out["newer_silver"] = ws.step("silver")
    out["after_newer"] = ws.silver()
    return out


def test_history_lands_in_silver(loop: dict[str, Any], history: dict[tuple[date, str], float]) -> None:
    assert loop["history_ingest"]["new"] is True
    assert loop["history_silver"]["quarantined"] == 0
    silver = loop["after_history"]
    assert {k: r["rate"] for k, r in silver.items()} == history
    assert loop["history_silver"]["inserted"] == len(history)


def test_daily_file_merges_by_key(
    loop: dict[str, Any], history: dict[tuple[date, str], float], daily: dict[tuple[date, str], float]
) -> None:
    assert len(daily) == len(SLICE)  # one day, the slice's currencies
    overlap = set(daily) & set(history)
    result = loop["daily_silver"]
    assert loop["daily_ingest"]["new"] is True
    assert (result["batches"], result["rows_in"], result["kept"], result["quarantined"]) == (1, len(daily), 4, 0)
    assert result["updated"] == len(overlap)
    assert result["inserted"] == len(daily) - len(overlap)
    silver = loop["after_daily"]
    assert len(silver) == len(set(history) | set(daily))
    batch = loop["daily_ingest"]["batch_id"]
    for key, rate in daily.items():
        assert silver[key]["rate"] == rate
        assert silver[key]["_batch_id"] == batch  # the latest ingestion wins
    untouched = {k: r for k, r in silver.items() if k not in daily}
    assert untouched == {k: r for k, r in loop["after_history"].items() if k not in daily}


def test_daily_batch_is_conserved_and_recorded(loop: dict[str, Any], daily: dict[tuple[date, str], float]) -> None:
    ws, batch = loop["ws"], loop["daily_ingest"]["batch_id"]
    assert sum(loop["daily_batch_rows"]) == len(daily)  # right after its silver step (the newer file supersedes it)
    (summary,) = ws.rows(QUALITY, batch_id=batch, rule="__batch__")
    assert (summary["passed"], summary["failed"]) == (len(daily), 0)
    assert {r["_source"] for r in ws.rows(BRONZE, _batch_id=batch)} == {str(DAILY)}


def test_the_same_file_twice_is_one_batch(loop: dict[str, Any]) -> None:
    again = loop["daily_again_ingest"]
    assert again["new"] is False
    assert again["batch_id"] == loop["daily_ingest"]["batch_id"]
    assert loop["daily_again_silver"]["batches"] == 0
    assert loop["versions_after_daily_again"] == loop["versions_after_daily"]  # no new version of any table
    assert len({r["_batch_id"] for r in loop["ws"].rows(BRONZE)}) == 3  # history, daily, newer


def test_newer_overlapping_file_updates_and_appends(loop: dict[str, Any]) -> None:
    result = loop["newer_silver"]
    assert loop["newer_ingest"]["new"] is True
    assert (result["batches"], result["rows_in"], result["quarantined"]) == (1, 12, 0)
    assert (result["updated"], result["inserted"]) == (2 * len(SLICE), 1 * len(SLICE))
    silver = loop["after_newer"]
    assert len(silver) == len(loop["after_daily"]) + len(loop["added"])
    batch = loop["newer_ingest"]["batch_id"]
    for key, rate in loop["newer"].items():
        assert silver[key]["rate"] == rate
        assert silver[key]["_batch_id"] == batch
    assert all(silver[k]["rate"] != loop["after_daily"][k]["rate"] for k in loop["changed"])
    older = {k: r for k, r in silver.items() if k not in loop["newer"]}
    assert older == {k: r for k, r in loop["after_daily"].items() if k not in loop["newer"]}


def test_downstream_steps_pick_up_the_merged_rates(loop: dict[str, Any]) -> None:
    """gold and features after the incremental batches: the newer rates flow on, nothing is re-ingested."""
    ws: Workspace = loop["ws"]
    silver_version = ws.lake.version(SILVER)
    base = ["--usecase", str(ws.usecase), "--workspace", str(ws.root)]
    cli = CliRunner()
    for name in ("ingest", "silver", "gold", "features"):  # ingest: the bundled history again, already a batch
        result = cli.invoke(app, ["step", name, *base])
        assert result.exit_code == 0, result.output
    assert ws.lake.version(SILVER) == silver_version
    gold = {(r["date"], r["currency"]): r for r in ws.rows("gold.fxs_returns")}
    assert len(gold) == len(loop["after_newer"]) - len(SLICE)  # the first fixing has no return
    assert {k: gold[k]["rate"] for k in loop["newer"]} == loop["newer"]
    new_day = max(d for d, _ in loop["added"])
    previous = max(d for d, _ in loop["after_newer"] if d < new_day)
    for currency in SLICE:
        expected = math.log(loop["newer"][(new_day, currency)] / loop["newer"][(previous, currency)])
        assert gold[(new_day, currency)]["log_return"] == pytest.approx(expected)
    features = {(r["date"], r["currency"]) for r in ws.rows("gold.fxs_features")}
    assert set(loop["added"]) <= features
