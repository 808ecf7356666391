"""MLflow tracking server on a real PostgreSQL: goldgate's train -> score loop against it, end to end.

The module starts a throwaway PostgreSQL cluster (Debian's server binaries) and an ``mlflow server`` with a
``postgresql+psycopg2`` backend store and proxied local artifacts, points goldgate at it through
``tracking_uri``, and checks that the runs, the registered version and its alias really live in PostgreSQL.
In CI a missing PostgreSQL is a failure, not a skip: ``.ci/run`` installs it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from goldgate.context import Context
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase

pytestmark = pytest.mark.e2e

INSTALL = "apt-get install -y postgresql"
STEPS = ["ingest", "silver", "gold", "features", "train", "evaluate", "gate", "register", "score"]
PG_READY_SECONDS = 60
MLFLOW_READY_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path | None:
    """The newest Debian PostgreSQL server bin dir with initdb, pg_ctl and postgres, or one on PATH."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if all((Path(bindir) / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return Path(bindir)
    on_path = [shutil.which(exe) for exe in ("initdb", "pg_ctl", "postgres")]
    if all(on_path):
        return Path(str(on_path[0])).parent
    return None


def _as_db_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run the command as the ``postgres`` system user."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(map(repr, cmd))]


@dataclass
class Postgres:
    bindir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database, connect_timeout=5)

    def pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _as_db_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bindir = _pg_bindir()
    if bindir is None:
        message = f"PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin); install them: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(f"SKIPPED MLflow-on-PostgreSQL test — {message}")
    root = Path(tempfile.mkdtemp(prefix="goldgate-pg-"))  # under /tmp, so the postgres user can reach it
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = Postgres(bindir, root, _free_port())
    started = False
    try:
        init = subprocess.run(
            _as_db_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(pg.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert init.returncode == 0, f"initdb failed:\n{init.stdout}\n{init.stderr}"
        options = f"-p {pg.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off"
        start = pg.pg_ctl("start", "-w", "-t", str(PG_READY_SECONDS), "-l", str(root / "postgres.log"), "-o", options)
        started = True
        log = (root / "postgres.log").read_text() if (root / "postgres.log").exists() else ""
        assert start.returncode == 0, f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{log}"
        deadline = time.monotonic() + PG_READY_SECONDS
        while True:
            try:
                conn = pg.connect()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield pg
    finally:
        if started:
            stop = pg.pg_ctl("stop", "-m", "fast", "-w", "-t", "60", timeout=90)
            if stop.returncode != 0:  # last resort: the postmaster's pid is the first line of postmaster.pid
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int((pg.data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class MlflowServer:
    url: str
    artifacts: Path


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts = root / "artifacts"
    port = _free_port()
    beside = Path(sys.executable).parent / "mlflow"
    exe = str(beside) if beside.exists() else shutil.which("mlflow")
    assert exe, "mlflow executable not found next to the interpreter or on PATH"
    cmd = [
        exe,
        "server",
        "--backend-store-uri",
        postgres.url("mlflow"),
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log_path = root / "mlflow-server.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
            start_new_session=True,  # its own process group: teardown stops the workers too
        )
    try:
        deadline = time.monotonic() + MLFLOW_READY_SECONDS
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {proc.returncode}" if proc.poll() is not None else "not healthy in time"
                pytest.fail(f"mlflow server {state}:\n{log_path.read_text()[-4000:]}", pytrace=False)
            time.sleep(0.5)
        yield MlflowServer(url, artifacts)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def loop_on_server(
    mlflow_server: MlflowServer, slice_usecase_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    import mlflow

    workspace = tmp_path_factory.mktemp("ws-pg")
    settings = load_settings(workspace=workspace, tracking_uri=mlflow_server.url)
    ctx = Context(settings, load_usecase(slice_usecase_path))
    try:
        summary = run_pipeline(ctx, only=STEPS)
        yield {"ctx": ctx, "summary": summary, "workspace": workspace}
    finally:  # later tests configure their own store, but leave no global pointing at a stopped server
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def test_runs_and_champion_are_on_the_server(loop_on_server: dict[str, Any], mlflow_server: MlflowServer) -> None:
    import mlflow

    summary = loop_on_server["summary"]
    assert summary["gate"]["decision"] == "promote"
    assert summary["champion"] == {"name": "fx_slice_vol", "version": "1"}
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("goldgate")
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's proxy, not a local path
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.use_case = 'fx_slice'")
    assert {r.data.tags.get("goldgate.role") for r in runs} >= {"baseline", "candidate"}
    run_ids = {r["run_id"] for r in summary["runs"]}
    assert run_ids <= {r.info.run_id for r in runs}
    champion = client.get_model_version_by_alias("fx_slice_vol", "champion")
    assert str(champion.version) == "1"
    # artifacts went through the server into its --artifacts-destination
    assert any(p.name == "MLmodel" for p in mlflow_server.artifacts.rglob("MLmodel"))


def test_predictions_are_filled_with_lineage(loop_on_server: dict[str, Any]) -> None:
    preds = DeltaTable(str(loop_on_server["workspace"] / "lake" / "gold" / "fxs_predictions")).to_pandas()
    assert len(preds) == loop_on_server["summary"]["predictions_rows"] == 4
    for col in ["model_name", "model_version", "run_id", "feature_table", "feature_table_version", "scored_at"]:
        assert preds[col].notna().all(), col
    assert set(preds["model_name"]) == {"fx_slice_vol"}
    assert set(preds["model_version"].astype(str)) == {"1"}
    assert (preds["prediction"] > 0).all()


def test_the_records_are_really_in_postgres(loop_on_server: dict[str, Any], postgres: Postgres) -> None:
    summary = loop_on_server["summary"]
    conn = postgres.connect("mlflow")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_uuid FROM runs")
            run_ids = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT name, version FROM model_versions")
            versions = set(cur.fetchall())
            cur.execute("SELECT name, alias, version FROM registered_model_aliases")
            aliases = set(cur.fetchall())
    finally:
        conn.close()
    assert {r["run_id"] for r in summary["runs"]} <= run_ids
    assert ("fx_slice_vol", 1) in versions
    assert ("fx_slice_vol", "champion", 1) in aliases
