"""MLflow wiring: the tracking/registry store and experiment live under the workspace unless configured."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache

from goldgate.settings import Settings


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the workspace store and return the experiment id for goldgate's runs."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    settings.workspace_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_registry_uri)
    return experiment_id(settings)


def experiment_id(settings: Settings, name: str = "goldgate") -> str:
    """Get or create the experiment, with artifacts under the workspace (not the current directory).

    Against a tracking server (``http(s)://``) the server chooses the artifact location (its
    ``--artifacts-destination``, proxied as ``mlflow-artifacts:/``), so clients on other machines can log too.
    """
    import mlflow

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    if is_remote(settings.resolved_tracking_uri):
        return str(mlflow.create_experiment(name))
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return str(mlflow.create_experiment(name, artifact_location=settings.artifacts_dir.as_uri()))


def is_remote(tracking_uri: str) -> bool:
    """Whether the tracking URI names an MLflow tracking server rather than a local store."""
    return tracking_uri.startswith(("http://", "https://"))


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The commit goldgate's code runs from, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=os.path.dirname(__file__),
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
