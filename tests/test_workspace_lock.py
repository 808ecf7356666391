"""One writer per workspace: the flock itself, the CLI's busy error, and two concurrent ``goldgate run``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import ibis
import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.lake import Lake
from goldgate.workspace_lock import LOCK_FILE, WorkspaceBusyError, workspace_lock

GOLDGATE = Path(sys.executable).parent / "goldgate"
HOLDER = """
import sys, time
from pathlib import Path
from goldgate.workspace_lock import workspace_lock
with workspace_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""
KEYS = {
    "bronze.fxs_rates_raw": ["_batch_id", "_row_number"],
    "silver.fxs_rates": ["date", "currency"],
    "gold.fxs_returns": ["date", "currency"],
    "gold.fxs_features": ["currency", "date"],
    "ops.quality": ["table_name", "batch_id", "rule"],
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDGATE_")}
    return {**env, "MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Another process holding the lock of a fresh workspace for up to 60 s (killed at teardown)."""
    ws = tmp_path / "ws"
    proc = _hold(ws, 60)
    yield ws, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _hold(ws: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ws), str(seconds)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_acquire_in_another_process_fails_naming_the_holder(
    holder: tuple[Path, subprocess.Popen[str]],
) -> None:
    ws, proc = holder
    with pytest.raises(WorkspaceBusyError) as info, workspace_lock(ws):
        pass
    message = str(info.value)
    assert f"workspace {ws} is busy" in message
    assert f"pid {proc.pid}" in message
    assert "-c" in message  # the holder's command line


def test_second_acquire_in_the_same_process_fails_and_release_frees_it(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with workspace_lock(ws) as path:
        assert path == ws / LOCK_FILE
        assert path.read_text().split("\n")[0] == str(os.getpid())
        with pytest.raises(WorkspaceBusyError), workspace_lock(ws):
            pass
    with workspace_lock(ws):  # released on exit
        pass


def test_lock_is_released_when_the_holder_is_sigkilled(holder: tuple[Path, subprocess.Popen[str]]) -> None:
    ws, proc = holder
    with pytest.raises(WorkspaceBusyError), workspace_lock(ws):
        pass
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    with workspace_lock(ws):  # the kernel dropped the dead process's flock
        pass


def test_wait_polls_until_the_holder_exits(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc = _hold(ws, 1.0)
    try:
        started = time.monotonic()
        with workspace_lock(ws, wait=20):
            waited = time.monotonic() - started
        assert 0.2 < waited < 20
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_writing_commands_fail_with_one_line_on_a_busy_workspace(
    holder: tuple[Path, subprocess.Popen[str]], slice_usecase_path: Path
) -> None:
    ws, proc = holder
    uc = ["--usecase", str(slice_usecase_path), "--workspace", str(ws)]
    writers = (["step", "ingest"], ["ingest"], ["promote", "1"], ["rollback"], ["monitor"], ["score"])
    for args in ([*w, *uc] for w in writers):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
        assert result.exit_code == 1, (args, result.output)
        errors = [line for line in result.output.splitlines() if "error" in line]
        assert len(errors) == 1, (args, result.output)
        assert f"workspace {ws} is busy" in errors[0]
        assert f"pid {proc.pid}" in errors[0]
    assert not (ws / "lake").exists()  # nothing was written
    started = time.monotonic()
    result = CliRunner().invoke(app, ["run", *uc, "--wait", "0.6"], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    assert "is busy" in result.output
    assert time.monotonic() - started >= 0.6


def test_two_concurrent_runs_one_wins_and_the_workspace_stays_consistent(
    slice_usecase_path: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    cmd = [str(GOLDGATE), "run", "--usecase", str(slice_usecase_path), "--workspace", str(ws)]
    procs = [
        subprocess.Popen(cmd, env={**_env(), "COLUMNS": "400"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=180)[0].decode() for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outputs
    loser = outputs[[p.returncode for p in procs].index(1)]
    assert f"workspace {ws} is busy: another goldgate process" in loser, loser

    lake = Lake(ws / "lake", ibis.duckdb.connect())
    assert set(KEYS) <= set(lake.tables())
    for name in lake.tables():
        table = DeltaTable(str(lake.path(name))).to_pyarrow_table()
        assert lake.rows(name) == table.num_rows, name
        if name in KEYS:
            dupes = lake.read(name).group_by(KEYS[name]).aggregate(n=lambda t: t.count()).filter(lambda t: t.n > 1)
            assert dupes.count().to_pyarrow().as_py() == 0, name

    uri = f"sqlite:///{ws.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions("name='fx_slice_vol'")
    # search results carry no aliases in MLflow: ask the registered model, which maps alias -> version.
    aliases = client.get_registered_model("fx_slice_vol").aliases if versions else {}
    assert ("champion" in aliases) == bool(versions)  # a dict: at most one champion by construction
    assert str(aliases.get("champion", "")) in {"", *(str(v.version) for v in versions)}
    promoted = [r for r in lake.read("ops.promotions").to_pyarrow().to_pylist() if r["to_version"] is not None]
    assert sorted(str(v.version) for v in versions) == sorted(r["to_version"] for r in promoted)
