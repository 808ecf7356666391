"""Shared fixtures: a small slice of the fx use case and a workspace that has run the whole loop on it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SLICE_CURRENCIES = ["USD", "JPY", "GBP", "CHF"]


def slice_usecase_dict() -> dict[str, Any]:
    """The bundled fx use case cut to 4 currencies and 3 years, with a smaller model, for fast tests."""
    from importlib import resources

    data = yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text())
    data["name"] = "fx_slice"
    data["source"]["unpivot"]["columns"] = list(SLICE_CURRENCIES)
    data["source"].update(start="2021-01-01", end="2023-12-31")
    data["tables"] = {k: v.replace("fx_", "fxs_") for k, v in data["tables"].items()}
    data["models"]["registered_name"] = "fx_slice_vol"
    data["models"]["candidates"][1]["params"].update(n_estimators=40, min_child_samples=20)
    data["evaluation"].update(folds=3, test_days=40)
    data["gate"].update(min_fold_wins=2, bootstrap_resamples=300)
    return data


def small_crm_dict() -> dict[str, Any]:
    """The bundled crm use case with two quick candidates (the full one also fits a random forest).

    The shipped policy stands, but for two rules that depend on the machine and on the sample size: single-row
    latency (a loaded CI machine) and the calibration tolerance (a few thousand deals give noisy ECE estimates).
    """
    from importlib import resources

    data = yaml.safe_load((resources.files("goldgate") / "usecases" / "crm.yaml").read_text(encoding="utf-8"))
    data["name"] = "crm_small"
    data["models"]["registered_name"] = "crm_small_win"
    data["models"]["candidates"] = [c for c in data["models"]["candidates"] if c["name"] in ("logistic", "lightgbm")]
    data["models"]["candidates"][-1]["params"]["n_estimators"] = 60
    data["gate"]["bootstrap_resamples"] = 200
    data["gate"]["latency_budget_ms"] = None
    data["gate"]["ece_tolerance"] = 0.05
    return dict(data)


@pytest.fixture(scope="session")
def slice_usecase_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("usecase") / "fx_slice.yaml"
    path.write_text(yaml.safe_dump(slice_usecase_dict(), sort_keys=False))
    return path


@dataclass(frozen=True)
class LoopedWorkspace:
    """A workspace after one ``goldgate run`` of the slice: its folder, use case file and run summary."""

    workspace: Path
    usecase_path: Path
    summary: dict[str, Any]


@pytest.fixture(scope="session")
def looped_workspace(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> LoopedWorkspace:
    """The whole loop once per session through the command line (so ``ops.runs`` records it); read-only for users."""
    from typer.testing import CliRunner

    from goldgate.cli import app

    workspace = tmp_path_factory.mktemp("looped")
    out = workspace / "summary.json"
    args = ["run", "-u", str(slice_usecase_path), "-w", str(workspace), "--summary-json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return LoopedWorkspace(workspace, slice_usecase_path, json.loads(out.read_text()))


def spark_missing() -> str | None:
    """Why the spark engine cannot run here (no Java, no PySpark), or None when it can."""
    import importlib.util
    import shutil

    if shutil.which("java") is None:
        return "the spark engine needs Java (java not on PATH)"
    if importlib.util.find_spec("pyspark") is None:
        return "the spark engine needs pyspark (not installed)"
    return None


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One local SparkSession for the whole test session (its start takes seconds); goldgate reuses it.

    Without Java or PySpark the test fails under CI (``CI=true``) and is skipped elsewhere.
    """
    reason = spark_missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from goldgate.engine import spark_session
    from goldgate.settings import Settings

    session = spark_session(Settings(workspace=tmp_path_factory.mktemp("spark"), engine="spark"))
    yield session
    session.stop()
