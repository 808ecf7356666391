"""Planted secrets never reach the output: `goldgate run` at DEBUG and `goldgate serve` with real requests.

An API key (GOLDGATE_API_KEYS) and a webhook URL holding a token (GOLDGATE_ALERT_WEBHOOK_URL) are planted;
a local webhook receiver answers 500 so the delivery-failure path logs too. Everything the processes print,
every log and report file, and every file of the workspace is searched for the secrets.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml

pytestmark = pytest.mark.e2e

# Made at run time, so no literal secret sits in the repository; distinctive, so a hit cannot be chance.
API_KEY = "ggk-" + secrets.token_hex(16)  # pragma: allowlist secret
WEBHOOK_TOKEN = "wht" + secrets.token_hex(16)
SECRETS = (API_KEY, WEBHOOK_TOKEN)
RUN_TIMEOUT = 420
SERVE_READY_SECONDS = 60


def _goldgate() -> str:
    beside = Path(sys.executable).parent / "goldgate"
    assert beside.exists(), f"goldgate console script not found next to {sys.executable}"
    return str(beside)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Receiver(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).paths.append(self.path)
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep the receiver itself quiet
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/{WEBHOOK_TOKEN}", _Receiver.paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def usecase_path(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> Path:
    """The slice, with an alert rule that always fires and a webhook sink whose URL comes from the settings."""
    data = yaml.safe_load(slice_usecase_path.read_text())
    data["monitoring"]["alerts"]["rules"] = [{"name": "any_shift", "metric": "drift.psi", "threshold": 0.0}]
    data["monitoring"]["alerts"]["sinks"] = {"console": True, "webhook": {"url": None, "timeout_seconds": 5}}
    path = tmp_path_factory.mktemp("usecase-secrets") / "fx_slice.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def env(webhook: tuple[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GOLDGATE_")},
        "GOLDGATE_API_KEYS": json.dumps([API_KEY]),
        "GOLDGATE_ALERT_WEBHOOK_URL": webhook[0],
        "GOLDGATE_LOG_LEVEL": "DEBUG",
        "GOLDGATE_ENV": "dev",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HOME": str(home),
        "COLUMNS": "200",
    }


@pytest.fixture(scope="module")
def run_output(env: dict[str, str], usecase_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workspace = tmp_path_factory.mktemp("ws-secrets")
    summary = workspace.parent / "summary.json"
    proc = subprocess.run(
        [
            _goldgate(),
            "run",
            "--usecase",
            str(usecase_path),
            "--workspace",
            str(workspace),
            "--summary-json",
            str(summary),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=workspace.parent,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"goldgate run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"workspace": workspace, "stdout": proc.stdout, "stderr": proc.stderr, "summary": summary}


def _leaks(text: str) -> list[str]:
    return [s[:8] + "…" for s in SECRETS if s in text]


def _file_leaks(root: Path) -> list[str]:
    """Files under root whose bytes hold a planted secret (text, logs, reports, MLflow store, Delta files)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(s.encode() in data for s in SECRETS):
                found.append(str(path.relative_to(root)))
    return found


def test_run_at_debug_logs_no_secret(run_output: dict[str, Any], webhook: tuple[str, list[str]]) -> None:
    out = run_output["stdout"] + run_output["stderr"]
    assert "DEBUG" in out  # the run really logged at DEBUG
    assert "webhook delivery failed (http 500)" in out  # the failure path that could leak the URL ran
    assert any(WEBHOOK_TOKEN in p for p in webhook[1]), "the planted webhook URL was never used"
    assert _leaks(out) == []
    assert _file_leaks(run_output["workspace"]) == []
    assert _leaks(run_output["summary"].read_text()) == []


def test_serve_logs_no_secret(run_output: dict[str, Any], env: dict[str, str], usecase_path: Path) -> None:
    port = _free_port()
    log_path = run_output["workspace"].parent / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                _goldgate(),
                "serve",
                "--usecase",
                str(usecase_path),
                "--workspace",
                str(run_output["workspace"]),
                "--port",
                str(port),
                "--access-log",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    statuses: dict[str, int] = {}
    try:
        deadline = time.monotonic() + SERVE_READY_SECONDS
        with httpx.Client(base_url=url, timeout=10) as client:
            while True:
                assert proc.poll() is None, f"goldgate serve exited:\n{log_path.read_text()[-3000:]}"
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"goldgate serve not ready:\n{log_path.read_text()[-3000:]}"
                time.sleep(0.3)
            statuses["no key"] = client.get("/v1/model").status_code
            statuses["wrong key"] = client.get("/v1/model", headers={"X-API-Key": API_KEY[::-1]}).status_code
            statuses["key"] = client.get("/v1/model", headers={"X-API-Key": API_KEY}).status_code
            statuses["bearer"] = client.get("/v1/model", headers={"Authorization": f"Bearer {API_KEY}"}).status_code
            statuses["bad body"] = client.post(
                "/v1/predict", headers={"X-API-Key": API_KEY}, content=b"{not json " + API_KEY.encode()
            ).status_code
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert statuses["no key"] == 401
    assert statuses["wrong key"] == 401
    assert statuses["key"] == 200
    assert statuses["bearer"] == 200
    assert 400 <= statuses["bad body"] < 500
    out = log_path.read_text()
    assert "/v1/model" in out  # the access log was on
    assert _leaks(out) == []
    assert _file_leaks(run_output["workspace"]) == []
