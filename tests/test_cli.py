"""The command line: exit codes, one-line errors, the summary contract, tables untouched on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable
from typer.testing import CliRunner

from goldgate.cli import app

runner = CliRunner()

SUMMARY_KEYS = {
    "use_case",
    "workspace",
    "tables",
    "quarantine",
    "runs",
    "gate",
    "champion",
    "predictions_rows",
    "drift",
    "alerts",
    "seconds",
}


def _ecb_file(path: Path, rows: list[str], header: str = "Date,USD,JPY,GBP,CHF,") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _bronze_version(workspace: Path) -> int:
    return DeltaTable(str(workspace / "lake" / "bronze" / "fxs_rates_raw")).version()


def test_run_writes_the_summary_contract(tmp_path: Path, slice_usecase_path: Path) -> None:
    out = tmp_path / "summary.json"
    result = runner.invoke(
        app,
        [
            "run",
            "--usecase",
            str(slice_usecase_path),
            "--workspace",
            str(tmp_path / "ws"),
            "--summary-json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["tables"]["silver.fxs_rates"]["version"] == 0
    assert summary["gate"]["decision"] in {"promote", "reject"}
    assert summary["workspace"] == str((tmp_path / "ws").resolve())
    assert "champion" in result.output


def test_unknown_step_is_a_one_line_error() -> None:
    result = runner.invoke(app, ["step", "polish"])
    assert result.exit_code == 1
    assert "unknown step 'polish'" in result.output
    assert "ingest" in result.output


def test_invalid_usecase_names_the_key(tmp_path: Path, slice_usecase_path: Path) -> None:
    data = yaml.safe_load(slice_usecase_path.read_text())
    data["models"]["baseline"]["colour"] = "red"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["run", "--usecase", str(path), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert "models.baseline.colour" in result.output
    assert "unknown key" in result.output


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "not found"), ("", "empty"), ("Day,USD,\n2023-01-02,1.1,\n", "missing: Date")],
    ids=["missing", "empty", "no-date-header"],
)
def test_bad_source_fails_ingest_and_leaves_bronze_unchanged(
    tmp_path: Path, slice_usecase_path: Path, content: str | None, problem: str
) -> None:
    ws = tmp_path / "ws"
    good = _ecb_file(tmp_path / "good.csv", ["2023-01-03,1.0545,138.87,0.8846,0.9909,"])
    base = ["ingest", "--usecase", str(slice_usecase_path), "--workspace", str(ws)]
    assert runner.invoke(app, [*base, "--source", str(good)]).exit_code == 0
    before = _bronze_version(ws)
    bad = tmp_path / "bad.csv"
    if content is not None:
        bad.write_text(content)
    result = runner.invoke(app, [*base, "--source", str(bad)])
    assert result.exit_code == 1
    assert "step ingest failed" in result.output
    assert str(bad) in result.output.replace("\n", "")
    assert problem in result.output
    assert _bronze_version(ws) == before


def test_newer_file_is_a_new_batch_and_the_same_file_is_not(tmp_path: Path, slice_usecase_path: Path) -> None:
    ws = tmp_path / "ws"
    base = ["ingest", "--usecase", str(slice_usecase_path), "--workspace", str(ws)]
    first = _ecb_file(tmp_path / "d1.csv", ["2023-01-03,1.0545,138.87,0.8846,0.9909,"])
    assert runner.invoke(app, [*base, "--source", str(first)]).exit_code == 0
    assert runner.invoke(app, [*base, "--source", str(first)]).exit_code == 0
    assert _bronze_version(ws) == 0
    second = _ecb_file(tmp_path / "d2.csv", ["2023-01-04,1.0599,139.10,0.8800,0.9900,"])
    result = runner.invoke(app, [*base, "--source", str(second)])
    assert result.exit_code == 0
    assert "new=True" in result.output
    assert _bronze_version(ws) == 1


def test_tables_lists_versions(tmp_path: Path, slice_usecase_path: Path) -> None:
    ws = tmp_path / "ws"
    good = _ecb_file(tmp_path / "good.csv", ["2023-01-03,1.0545,138.87,0.8846,0.9909,"])
    runner.invoke(app, ["ingest", "--usecase", str(slice_usecase_path), "--workspace", str(ws), "--source", str(good)])
    result = runner.invoke(app, ["tables", "--usecase", str(slice_usecase_path), "--workspace", str(ws)])
    assert result.exit_code == 0
    assert "bronze.fxs_rates_raw" in result.output
