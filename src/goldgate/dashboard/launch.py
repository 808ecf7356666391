"""How ``goldgate ui`` starts the dashboard: the ``streamlit run`` command and the environment it runs in."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from goldgate.dashboard import APP_FILE
from goldgate.dashboard.data import USECASE_ENV


def streamlit_command(host: str, port: int) -> list[str]:
    """``streamlit run`` on the dashboard app: bound to ``host:port``, headless, no usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_FILE),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # The app's files do not change while it runs: no watcher threads, no reruns on edits.
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]


def dashboard_env(workspace: Path, usecase: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the Streamlit process: the workspace and use case the app reads, MLflow telemetry off.

    A use-case YAML path is made absolute, so the app finds it whatever its working folder.
    """
    path = Path(usecase)
    return {
        **(dict(os.environ) if base is None else base),
        "GOLDGATE_WORKSPACE": str(workspace),
        USECASE_ENV: str(path.resolve()) if path.suffix in {".yaml", ".yml"} else usecase,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
