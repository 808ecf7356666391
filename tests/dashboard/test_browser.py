"""The dashboard in a real browser: ``goldgate ui`` serves a workspace after one run; headless Chromium drives
every page and opens the run report from disk.

Streamlit renders in the browser, so every check waits (bounded) for the text it expects. Screenshots go to
``test-artifacts/screenshots/``. Chromium is Debian's (``/usr/bin/chromium``); in CI a missing one fails.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner

from conftest import LoopedWorkspace
from goldgate.alerts import ALERTS, alerts_table, evaluate_rules
from goldgate.cli import app
from goldgate.context import Context
from goldgate.loop import DRIFT
from goldgate.settings import load_settings
from goldgate.usecase import AlertRule, Alerts, load_usecase

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
START_SECONDS = 90  # the server answers its health check within seconds; the bound is for a loaded machine
WAIT_MS = 90_000  # the first page imports MLflow in the server before it renders


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"goldgate ui exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"goldgate ui not healthy after {START_SECONDS} s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group (goldgate ui and the Streamlit process it started)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def _context(looped: LoopedWorkspace) -> Context:
    return Context(load_settings(workspace=looped.workspace), load_usecase(looped.usecase_path))


def _ensure_alert(looped: LoopedWorkspace) -> dict[str, Any]:
    """The newest alert of the run; when the run raised none, one fired by the library's rules on its drift rows."""
    ctx = _context(looped)
    existing = ctx.lake.read(ALERTS).to_pandas() if ctx.lake.exists(ALERTS) else pd.DataFrame()
    mine = existing[existing["use_case"] == ctx.usecase.name] if not existing.empty else existing
    if not mine.empty:
        return dict(mine.sort_values("raised_at").iloc[-1])
    drift = ctx.lake.read(DRIFT).to_pandas()
    version = str(looped.summary["champion"]["version"])
    always = Alerts(rules=[AlertRule(name="browser_check", metric="drift.psi", threshold=0.0)])
    rows = evaluate_rules(
        always, drift, pd.DataFrame(), existing, use_case=ctx.usecase.name, model_version=version, now=datetime.now(UTC)
    )
    assert rows, "the always-firing rule fired nothing on the run's drift rows"
    ctx.lake.merge(ALERTS, alerts_table(rows[:1]), keys=["alert_id"])
    return rows[0]


@pytest.fixture(scope="module")
def alert(looped_workspace: LoopedWorkspace) -> dict[str, Any]:
    return _ensure_alert(looped_workspace)


@pytest.fixture(scope="module")
def server(
    looped_workspace: LoopedWorkspace, alert: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    _require_chromium()  # no point serving when no browser can look
    port = _free_port()
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    goldgate = Path(sys.executable).with_name("goldgate")
    cmd = [
        str(goldgate),
        "ui",
        "-u",
        str(looped_workspace.usecase_path),
        "-w",
        str(looped_workspace.workspace),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    yield page
    page.close()


def _open(page: Any, url: str, title: str) -> None:
    page.goto(url)
    page.locator("h1", has_text=title).first.wait_for()


def _screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _cells(row: Any) -> list[str]:
    row.wait_for()
    return [t.strip() for t in row.locator("td").all_inner_texts()]


def test_pipeline_page_shows_every_table_version(page: Any, server: str, looped_workspace: LoopedWorkspace) -> None:
    _open(page, f"{server}/", "Pipeline")
    for name in ("gold.fxs_features", "silver.fxs_rates", "ops.runs"):
        layer, table = name.split(".")
        delta = DeltaTable(str(looped_workspace.workspace / "lake" / layer / table))
        cells = _cells(page.locator("tr", has_text=name).first)
        assert cells[:3] == [name, str(delta.version()), f"{delta.to_pyarrow_table().num_rows:,}"]
    recorded = DeltaTable(str(looped_workspace.workspace / "lake" / "ops" / "runs")).to_pyarrow_table().to_pylist()
    run = _cells(page.locator("tr", has_text=recorded[0]["run_id"][:12]).first)
    summary = looped_workspace.summary
    assert run[2:6] == ["ok", f"{summary['seconds']['total']:.1f}", summary["gate"]["decision"], "v1"]
    page.locator("tr", has_text="rate_positive").first.wait_for()
    _screenshot(page, "pipeline")


def test_models_page_shows_the_run_metrics_and_gate(page: Any, server: str, looped_workspace: LoopedWorkspace) -> None:
    _open(page, f"{server}/models", "Models")
    summary = looped_workspace.summary
    for run in summary["runs"]:
        # The comparison row (the registry table shows the champion's run id too).
        cells = _cells(page.locator("tr").filter(has_text=run["run_id"][:12]).filter(has_text=run["role"]).first)
        assert cells[:2] == [run["model"], run["role"]]
        assert f"{run['metrics']['rmse']:.5f}" in cells
    for criterion in summary["gate"]["criteria"]:
        cells = _cells(page.locator("tr", has_text=criterion["name"]).first)
        assert cells[0] == ("✓" if criterion["passed"] else "✗")
    page.get_by_text(f"{summary['gate']['decision']} {summary['gate']['candidate']}:").first.wait_for()
    page.get_by_text("Feature importance of the logged models").first.wait_for()
    images = page.locator("[data-testid='stImage'] img")
    images.nth(2).wait_for()
    # Wait for the three training plots to finish loading, then check each decoded to a real picture.
    page.wait_for_function(
        "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")].every(i => i.complete)",
        timeout=30_000,
    )
    assert images.evaluate_all("imgs => imgs.map(i => i.naturalWidth > 0)") == [True, True, True]
    _screenshot(page, "models")


def test_predictions_page_filters_and_downloads(
    page: Any, server: str, looped_workspace: LoopedWorkspace, tmp_path: Path
) -> None:
    stored = DeltaTable(str(looped_workspace.workspace / "lake" / "gold" / "fxs_predictions")).to_pandas()
    usd = stored[stored["currency"] == "USD"].sort_values("as_of").iloc[-1]
    _open(page, f"{server}/predictions", "Predictions")
    cells = _cells(page.locator("[data-testid='stTable'] tr", has_text="USD").first)  # latest per currency
    assert cells[:3] == ["USD", str(pd.Timestamp(usd["as_of"]).date()), f"{usd['prediction']:.6g}"]
    page.get_by_text(f"{len(stored)} of {len(stored)} rows").first.wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv = tmp_path / "predictions.csv"
    download.value.save_as(str(csv))
    assert sorted(pd.read_csv(csv)["currency"]) == sorted(stored["currency"])
    _screenshot(page, "predictions")


def test_monitoring_page_shows_the_alert_with_its_runbook(page: Any, server: str, alert: dict[str, Any]) -> None:
    _open(page, f"{server}/monitoring", "Monitoring")
    row = page.locator("tr").filter(has_text=alert["rule"]).filter(has_text=alert["subject"]).first
    cells = _cells(row)
    assert cells[1:4] == [alert["rule"], alert["severity"], alert["subject"]]
    assert cells[-2:] == [alert["status"], alert["runbook"]]
    page.get_by_text(f"runbook: {alert['runbook']}").first.wait_for()
    row.scroll_into_view_if_needed()
    _screenshot(page, "monitoring")


def _expected_prediction(looped: LoopedWorkspace, entity: str) -> float:
    """The champion's prediction on the entity's latest complete feature row, computed here, not by the page."""
    ctx = _context(looped)
    ctx.mlflow_client()
    model = mlflow.pyfunc.load_model(f"models:/{ctx.usecase.models.registered_name}@champion")
    inputs = model.metadata.get_input_schema().input_names()
    features = DeltaTable(str(looped.workspace / "lake" / "gold" / "fxs_features")).to_pandas()
    rows = features[features["currency"] == entity].dropna(subset=inputs).sort_values("date")
    return float(model.predict(rows[inputs].tail(1))[0])


def test_predict_page_calls_the_champion(page: Any, server: str, looped_workspace: LoopedWorkspace) -> None:
    _open(page, f"{server}/predict", "Predict")
    page.get_by_role("button", name="Predict").click()
    version = looped_workspace.summary["champion"]["version"]
    message = page.get_by_text(re.compile(rf"prediction of fx_slice_vol v{version}: ")).first
    message.wait_for()
    shown = float(message.inner_text().rsplit(": ", 1)[1])
    # The form is prefilled with the first currency's latest features.
    assert math.isclose(shown, _expected_prediction(looped_workspace, "CHF"), rel_tol=1e-5)
    _screenshot(page, "predict")


def test_run_report_renders_without_console_errors(
    browser: Any, looped_workspace: LoopedWorkspace, tmp_path: Path
) -> None:
    out = tmp_path / "run-report.html"
    args = [
        "report",
        "-u",
        str(looped_workspace.usecase_path),
        "-w",
        str(looped_workspace.workspace),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(out.as_uri())
        page.locator("section#alerts h2").wait_for(timeout=10_000)
        loaded = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
        assert loaded
        assert all(loaded)
        headings = page.locator("h2").all_inner_texts()
        assert headings[:3] == ["Run", "DAG run", "Data versions"]
        _screenshot(page, "run-report")
    finally:
        page.close()
    assert errors == []
