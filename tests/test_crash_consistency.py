"""Crash consistency: SIGKILL each writing step mid-write; tables stay at a committed version and a re-run converges.

Each step of the slice (ingest, silver, gold, features) runs as a ``goldgate step`` subprocess on a copy of the
workspace as it was before that step, and is killed (a) as soon as a new data file appears under the step's
target table, before its commit, and (b) as soon as the target table's new commit appears, while the step may
still be writing other tables. The reference is an uninterrupted run of the same steps in another workspace.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.lake import Lake

STEPS = {
    "ingest": "bronze.fxs_rates_raw",
    "silver": "silver.fxs_rates",
    "gold": "gold.fxs_returns",
    "features": "gold.fxs_features",
}
GOLDGATE = Path(sys.executable).parent / "goldgate"
KILL_TIMEOUT = 60.0


def _tables(ws: Path) -> dict[str, Path]:
    """Logical name -> folder of every Delta table (committed or not) under the workspace's lake."""
    lake = ws / "lake"
    if not lake.exists():
        return {}
    return {f"{layer.name}.{table.name}": table for layer in lake.iterdir() for table in layer.iterdir()}


def _versions(ws: Path) -> dict[str, int | None]:
    return {
        name: DeltaTable(str(path)).version() if DeltaTable.is_deltatable(str(path)) else None
        for name, path in _tables(ws).items()
    }


def _frame(table: pa.Table) -> pd.DataFrame:
    """The table without its wall-clock stamps, sorted on every column, for an exact comparison."""
    stamps = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
    frame = table.drop_columns(stamps).to_pandas()
    frame = frame[sorted(frame.columns)]
    return frame.sort_values(list(frame.columns), na_position="first").reset_index(drop=True)


def _content(ws: Path) -> dict[str, pd.DataFrame]:
    return {
        name: _frame(DeltaTable(str(path)).to_pyarrow_table())
        for name, path in _tables(ws).items()
        if DeltaTable.is_deltatable(str(path))
    }


def _cli_step(step: str, usecase: Path, ws: Path) -> None:
    result = CliRunner().invoke(app, ["step", step, "--usecase", str(usecase), "--workspace", str(ws)])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def reference(slice_usecase_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run, step by step, with a copy of the workspace before each step."""
    ws = tmp_path_factory.mktemp("reference") / "ws"
    before: dict[str, Path] = {}
    versions: dict[str, dict[str, int | None]] = {}
    after: dict[str, dict[str, pd.DataFrame]] = {}
    for step in STEPS:
        snap = tmp_path_factory.mktemp(f"before_{step}") / "ws"
        if ws.exists():
            shutil.copytree(ws, snap)
        before[step] = snap
        versions[step] = _versions(ws)
        _cli_step(step, slice_usecase_path, ws)
        after[step] = _content(ws)
    return {"ws": ws, "before": before, "versions": versions, "after": after}


def _files(folder: Path, suffix: str) -> set[str]:
    return {str(Path(root) / f) for root, _, names in os.walk(folder) for f in names if f.endswith(suffix)}


def _run_and_kill(step: str, usecase: Path, ws: Path, watch: Path, suffix: str) -> int:
    """Start ``goldgate step``; SIGKILL it as soon as a new ``suffix`` file appears under ``watch``."""
    seen = _files(watch, suffix)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = [str(GOLDGATE), "step", step, "--usecase", str(usecase), "--workspace", str(ws)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KILL_TIMEOUT
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if _files(watch, suffix) - seen:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait(timeout=30)
    return proc.returncode


@pytest.mark.parametrize("trigger", ["data_file", "commit"])
@pytest.mark.parametrize("step", list(STEPS))
def test_killed_step_leaves_committed_tables_and_rerun_converges(
    step: str, trigger: str, reference: dict[str, Any], slice_usecase_path: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    if reference["before"][step].exists():
        shutil.copytree(reference["before"][step], ws)
    target = ws / "lake" / Path(*STEPS[step].split("."))
    watch, suffix = (target, ".parquet") if trigger == "data_file" else (target / "_delta_log", ".json")
    code = _run_and_kill(step, slice_usecase_path, ws, watch, suffix)
    assert code == -signal.SIGKILL, f"{step} finished (exit {code}) before the {trigger} kill point"

    # Every table is at the version it had before the step or at a version the uninterrupted run committed,
    # holding exactly that version's rows: never a partial write.
    previous = reference["versions"][step]
    ref_ws = reference["ws"]
    lake = Lake(ws / "lake", ibis.duckdb.connect())
    for name, version in _versions(ws).items():
        if version is None:  # data files but no commit yet: the table does not exist
            assert previous.get(name) is None, name
            assert not lake.exists(name)
            continue
        before = previous.get(name)
        # The version it had before the step, or the one commit the step makes to it (never more).
        assert version in ({before, before + 1} if before is not None else {0}), (name, before, version)
        expected = DeltaTable(str(_tables(ref_ws)[name]), version=version).to_pyarrow_table()
        got = DeltaTable(str(_tables(ws)[name])).to_pyarrow_table()
        assert got.num_rows == expected.num_rows, name
        assert lake.rows(name) == expected.num_rows, name
        assert lake.read(name).to_pyarrow().num_rows == expected.num_rows, name
        pd.testing.assert_frame_equal(_frame(got), _frame(expected), check_dtype=False)

    # Re-running the step converges to the uninterrupted run's content.
    _cli_step(step, slice_usecase_path, ws)
    content = _content(ws)
    assert set(content) == set(reference["after"][step])
    for name, frame in reference["after"][step].items():
        pd.testing.assert_frame_equal(content[name], frame, obj=name)
