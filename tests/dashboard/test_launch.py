"""How ``goldgate ui`` starts Streamlit (the real start is driven in test_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.dashboard import APP_FILE
from goldgate.dashboard.launch import dashboard_env, streamlit_command


def _option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_command_runs_the_app_headless_on_the_given_address() -> None:
    cmd = streamlit_command("127.0.0.1", 8765)
    assert cmd[1:5] == ["-m", "streamlit", "run", str(APP_FILE)]
    assert APP_FILE.is_file()
    assert _option(cmd, "--server.address") == "127.0.0.1"
    assert _option(cmd, "--server.port") == "8765"
    assert _option(cmd, "--server.headless") == "true"
    assert _option(cmd, "--browser.gatherUsageStats") == "false"


def test_environment_names_workspace_and_use_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = dashboard_env(Path("/ws"), "usecases/my.yaml", base={"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "GOLDGATE_WORKSPACE": "/ws",
        "GOLDGATE_USECASE": str(tmp_path / "usecases" / "my.yaml"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    assert dashboard_env(Path("/ws"), "fx", base={})["GOLDGATE_USECASE"] == "fx"


def test_a_bad_use_case_fails_before_streamlit_starts(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ui", "-u", "no_such_use_case", "-w", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown use case 'no_such_use_case'" in result.output
