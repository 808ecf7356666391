"""The run log: one ``ops.runs`` row per ``goldgate run``, newest first, failed runs included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ibis
import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner

from conftest import LoopedWorkspace
from goldgate.cli import app
from goldgate.context import Context
from goldgate.lake import Lake
from goldgate.runlog import (
    FAILED,
    OK,
    RUNS,
    failed_summary,
    find_run,
    recent_runs,
    record_outcome,
    record_run,
)
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake", ibis.duckdb.connect())


def _summary(use_case: str = "fx", total: float = 12.5) -> dict[str, object]:
    return {
        "use_case": use_case,
        "tables": {"silver.fx_rates": {"version": 3, "rows": 10}},
        "gate": {"decision": "promote", "criteria": []},
        "seconds": {"ingest": 1.5, "train": 11.0, "total": total},
    }


def test_record_run_appends_one_row_with_json_columns(lake: Lake) -> None:
    run_id = record_run(lake, _summary(), OK, T0, T0 + timedelta(seconds=12))
    row = lake.read(RUNS).to_pyarrow().to_pylist()
    assert len(row) == 1
    assert row[0]["run_id"] == run_id
    assert len(run_id) == 32
    assert row[0]["status"] == "ok"
    assert row[0]["use_case"] == "fx"
    assert row[0]["started_at"] == T0
    assert json.loads(row[0]["seconds"]) == {"ingest": 1.5, "train": 11.0, "total": 12.5}
    assert json.loads(row[0]["summary"])["gate"]["decision"] == "promote"
    assert row[0]["error"] is None


def test_seconds_keep_the_step_order(lake: Lake) -> None:
    record_run(lake, _summary(), OK, T0, T0)
    assert list(recent_runs(lake, "fx")[0]["seconds"]) == ["ingest", "train", "total"]


def test_recent_runs_are_newest_first_per_use_case_and_limited(lake: Lake) -> None:
    ids = [record_run(lake, _summary(total=i), OK, T0 + timedelta(hours=i), T0 + timedelta(hours=i)) for i in range(3)]
    other = record_run(lake, _summary("crm"), OK, T0 + timedelta(days=1), T0 + timedelta(days=1))
    assert [r["run_id"] for r in recent_runs(lake, "fx")] == ids[::-1]
    assert [r["run_id"] for r in recent_runs(lake, "fx", limit=2)] == ids[:0:-1]
    assert [r["run_id"] for r in recent_runs(lake, "crm")] == [other]
    assert recent_runs(lake, "fx")[0]["summary"]["seconds"]["total"] == 2


def test_no_table_means_no_runs(lake: Lake) -> None:
    assert recent_runs(lake, "fx") == []
    with pytest.raises(LookupError, match="no run of use case 'fx'"):
        find_run(lake, "fx")
    with pytest.raises(LookupError, match="does not exist yet"):
        find_run(lake, "fx", "abc")


def test_find_run_by_latest_and_by_id_prefix(lake: Lake) -> None:
    first = record_run(lake, _summary(), OK, T0, T0)
    second = record_run(lake, _summary(), FAILED, T0 + timedelta(hours=1), T0 + timedelta(hours=1), error="boom")
    assert find_run(lake, "fx")["run_id"] == second
    assert find_run(lake, "fx", first[:10])["run_id"] == first
    assert find_run(lake, "fx", second)["error"] == "boom"
    with pytest.raises(LookupError, match=r"no run of use case 'fx' in ops\.runs with id 'zzz'"):
        find_run(lake, "fx", "zzz")
    with pytest.raises(LookupError, match="2 runs"):
        find_run(lake, "fx", "")


def test_status_must_be_ok_or_failed(lake: Lake) -> None:
    with pytest.raises(ValueError, match="run status must be 'ok' or 'failed', got 'done'"):
        record_run(lake, _summary(), "done", T0, T0)
    assert not lake.exists(RUNS)


def test_failed_summary_names_the_steps_that_finished() -> None:
    results = {"ingest": {}, "_seconds": {"ingest": 0.4, "silver": 0.9}}
    summary = failed_summary("fx", "/ws", results, "step gold failed: boom")
    assert summary == {
        "use_case": "fx",
        "workspace": "/ws",
        "steps_done": ["ingest", "silver"],
        "seconds": {"ingest": 0.4, "silver": 0.9},
        "error": "step gold failed: boom",
    }


def test_record_outcome_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = Context(load_settings(workspace=tmp_path / "ws"), load_usecase("fx"))
    # A file where the ops folder should be: the append fails, the caller's outcome stands.
    (tmp_path / "ws" / "lake").mkdir(parents=True)
    (tmp_path / "ws" / "lake" / "ops").write_text("not a folder")
    assert record_outcome(ctx, T0, summary=_summary()) is None
    assert "run log: could not append to ops.runs" in caplog.text


def test_failed_cli_run_is_recorded(tmp_path: Path, slice_usecase_path: Path) -> None:
    ws = tmp_path / "ws"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    args = ["run", "-u", str(slice_usecase_path), "-w", str(ws), "--source", str(empty)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    rows = DeltaTable(str(ws / "lake" / "ops" / "runs")).to_pyarrow_table().to_pylist()
    assert len(rows) == 1
    assert rows[0]["status"] == "failed"
    assert rows[0]["error"].startswith("step ingest failed")
    assert json.loads(rows[0]["summary"])["steps_done"] == []


def test_cli_run_records_its_summary(looped_workspace: LoopedWorkspace) -> None:
    rows = DeltaTable(str(looped_workspace.workspace / "lake" / "ops" / "runs")).to_pyarrow_table().to_pylist()
    assert len(rows) == 1
    assert rows[0]["status"] == "ok"
    recorded = json.loads(rows[0]["summary"])
    assert recorded["gate"] == looped_workspace.summary["gate"]
    assert json.loads(rows[0]["seconds"]) == looped_workspace.summary["seconds"]
    assert rows[0]["finished_at"] > rows[0]["started_at"]
