"""Five data shapes a new user brings, each run end to end from one YAML through `goldgate run`.

Each YAML is what README's "Your data" leads to: the columns with their types and roles, the target, a few
features, and the evaluation a short history needs. The files (see ``shapes``) carry the dirt real exports
carry. Every test checks that the run completes, that every bronze row is in silver or in quarantine, that each
dirty line is quarantined under its rule with its raw text, that the features read what they should, and that
the gate decides honestly: promote a model that has learned something real, reject one fitted to noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.lake import Lake
from shapes import ShapeFile, customer_table, daily_series, hourly_panel, intraday_bars, loan_book

pytestmark = pytest.mark.e2e

# --- the YAML files, as a user writes them ----------------------------------------------------------------------

DAILY = """
name: station
task: regression
source:
  path: station.csv
columns:
  date: {type: date, role: time, format: "%Y/%m/%d"}
  precipitation: float
  temp_max: float
  temp_min: float
  wind: float
  weather: string
target: {kind: value_at, column: temp_max, horizon: 1}
features:
  calendar: [day_of_year, month]
  derive:
    - {op: lag, column: temp_max, periods: [1, 2, 7]}
    - {op: rolling, column: temp_max, window: 7, stats: [mean, std]}
gate:
  latency_budget_ms: null
"""

HOURLY = """
name: sensors
task: regression
source:
  path: sensors.csv
columns:
  timestamp: {type: timestamp, role: time}
  sensor: {type: string, role: entity}
  temperature: float
  humidity: float
target: {kind: value_at, column: temperature, horizon: 3}   # three rows (hours) ahead
features:
  calendar: [hour]
  derive:
    - {op: lag, column: temperature, periods: [1, 2, 3, 24]}
    - {op: rolling, column: temperature, window: 24, stats: [mean]}
evaluation:          # 45 days of hours: the windows count calendar dates
  folds: 3
  test_days: 7
  min_train_days: 14
gate:
  latency_budget_ms: null
"""

CUSTOMERS = """
name: customers
task: binary
source:
  path: customers.csv
columns:
  customerID: {type: string, role: entity}
  SeniorCitizen: int
  tenure: int
  Contract: string
  PaymentMethod: string
  MonthlyCharges: float
  TotalCharges: float
  Churn: {type: string, role: target}
target: {kind: label, column: Churn, positive: "Yes"}
gate:
  latency_budget_ms: null
  ece_tolerance: 0.05   # 2000 rows: a perfectly calibrated model measures an ECE of about 0.02
"""

LOANS = """
name: loans
task: binary
source:
  path: loans.csv
columns:
  id: {type: string, role: entity}
  issue_d: {type: date, role: time, format: "%b-%Y"}
  loan_amnt: float
  term: string
  int_rate: float
  grade: string
  emp_length: string
  home_ownership: string
  annual_inc: float
  dti: float
  fico_range_low: float
  revol_util: float
  purpose: string
  loan_status: {type: string, role: target}
target: {kind: label, column: loan_status, positive: "Charged Off"}
evaluation:          # 36 issue months: each fold tests the loans of 3 months
  folds: 4
  test_days: 3
  min_train_days: 12
gate:
  latency_budget_ms: null
"""

INTRADAY = """
name: bars
task: regression
source:
  path: bars.csv
columns:
  time: {type: timestamp, role: time}
  open: float
  high: float
  low: float
  close: float
  volume: int
target: {kind: value_at, column: close, horizon: 1}   # the next bar's close
features:
  calendar: [hour, minute]
  derive:
    - {op: log_change, column: close, periods: [1, 2]}
    - {op: rolling, column: close, window: 12, stats: [mean, std]}
evaluation:          # 15 sessions: each fold tests 3 of them
  folds: 3
  test_days: 3
  min_train_days: 5
gate:
  latency_budget_ms: null
"""


# --- running and reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    summary: dict[str, Any]
    lake: Lake
    name: str

    def table(self, layer: str, suffix: str = "") -> pd.DataFrame:
        return self.lake.read(f"{layer}.{self.name}{suffix}").to_pandas()

    @property
    def gate(self) -> dict[str, Any]:
        assert self.summary["gate"] is not None
        return dict(self.summary["gate"])

    def criterion(self, name: str) -> dict[str, Any]:
        return next(c for c in self.gate["criteria"] if c["name"] == name)


def run(tmp_path: Path, usecase: str, shape: ShapeFile) -> Outcome:
    """`goldgate run` of the YAML on the shape's file, as a user types it; the run must complete."""
    spec = tmp_path / "usecase.yaml"
    spec.write_text(usecase)
    workspace, out = tmp_path / "ws", tmp_path / "summary.json"
    args = ["run", "--usecase", str(spec), "--source", str(shape.path), "-w", str(workspace), "--summary-json"]
    result = CliRunner().invoke(app, [*args, str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert set(summary["seconds"]) >= {"ingest", "silver", "gold", "features", "train", "evaluate", "gate", "total"}
    return Outcome(summary, Lake(workspace / "lake", ibis.duckdb.connect()), summary["use_case"])


def assert_conserved(outcome: Outcome, shape: ShapeFile) -> None:
    """Every record of the file is in bronze, and every bronze row is in silver or in quarantine."""
    tables, name = outcome.summary["tables"], outcome.name
    bronze = tables[f"bronze.{name}_raw"]["rows"]
    assert bronze == shape.records
    quarantined = outcome.summary["quarantine"][f"quarantine.{name}"]
    assert tables[f"silver.{name}"]["rows"] + quarantined == bronze
    quality = outcome.lake.read("ops.quality").to_pandas()
    batch = quality[quality.rule == "__batch__"].iloc[0]
    assert (batch.passed, batch.failed) == (bronze - quarantined, quarantined)


def assert_quarantined(outcome: Outcome, shape: ShapeFile) -> pd.DataFrame:
    """Exactly the dirty lines are in quarantine, each under its rule with the text that broke it."""
    quarantine = outcome.table("quarantine").set_index("_row_number").sort_index()
    assert sorted(quarantine.index) == sorted(d.line for d in shape.dirt)
    for dirt in shape.dirt:
        row = quarantine.loc[dirt.line]
        assert row["_rule"] == dirt.rule, (dirt, row["_failed_rules"])
        assert row["_reason"].startswith(f"{dirt.rule}: ")
        assert row["_file"] == str(shape.path)
        if dirt.raw is not None:
            assert row[f"raw_{dirt.column}"] == dirt.raw
    return quarantine


MISSING = {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A", "-"}


def assert_cells_kept(outcome: Outcome, columns: list[str]) -> None:
    """Silver holds a value exactly where a kept bronze row has one: no cell is lost, none is made up."""
    bronze = outcome.table("bronze", "_raw")
    kept = bronze[~bronze["_row_number"].isin(outcome.table("quarantine")["_row_number"])]
    silver = outcome.table("silver")
    assert len(kept) == len(silver)
    for column in columns:
        missing = kept[column].fillna("").str.strip().isin(MISSING)
        assert silver[column].isna().sum() == missing.sum() > 0, column


def assert_promoted(outcome: Outcome) -> None:
    gate = outcome.gate
    assert gate["decision"] == "promote", gate
    assert outcome.summary["champion"] == {"name": outcome.name, "version": "1"}
    assert outcome.summary["predictions_rows"] >= 1


def assert_rejected_on_merit(outcome: Outcome) -> None:
    """Rejected because the candidate does not beat the baseline: not for data quality or a missing record."""
    gate = outcome.gate
    assert gate["decision"] == "reject", gate
    failed = {c["name"] for c in gate["criteria"] if not c["passed"]}
    assert failed & {"beats_baseline", "ci_vs_baseline"}, failed
    assert outcome.criterion("data_quality_clean")["passed"]
    assert outcome.summary["champion"] is None
    assert outcome.summary["predictions_rows"] == 0


def _same(a: pd.Series, b: pd.Series) -> bool:
    return bool(np.allclose(a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64"), equal_nan=True))


# --- the shapes ---------------------------------------------------------------------------------------------------


def test_daily_series_with_slash_dates_and_missing_days(tmp_path: Path) -> None:
    shape = daily_series(tmp_path)
    outcome = run(tmp_path, DAILY, shape)
    assert_conserved(outcome, shape)
    assert_quarantined(outcome, shape)
    assert_cells_kept(outcome, ["temp_min", "wind"])  # their NA cells
    silver = outcome.table("silver").sort_values("date").reset_index(drop=True)
    features = outcome.table("gold", "_features").sort_values("date").reset_index(drop=True)
    assert features["series"].unique().tolist() == ["station"]
    assert list(features["date"]) == list(silver["date"])
    # Lags and the target count rows: a missing day is skipped over, never filled.
    assert _same(features["temp_max_lag1"], silver["temp_max"].shift(1))
    assert _same(features["target"], silver["temp_max"].shift(-1))
    assert _same(features["temp_max_mean_7"], silver["temp_max"].rolling(7).mean())
    assert list(features["day_of_year"]) == [d.timetuple().tm_yday for d in silver["date"]]
    assert {"weather_rain", "weather_sun", "weather_fog"} <= set(features.columns)
    assert_promoted(outcome)
    assert outcome.gate["candidate"] in ("linear", "lightgbm")


def test_hourly_panel_of_sensors_with_gaps_and_empty_cells(tmp_path: Path) -> None:
    shape = hourly_panel(tmp_path)
    outcome = run(tmp_path, HOURLY, shape)
    assert_conserved(outcome, shape)
    quarantine = assert_quarantined(outcome, shape)
    truncated = quarantine.loc[shape.records + 1]  # the last line, cut inside its timestamp
    assert truncated["_failed_rules"] == "timestamp_parses,timestamp_present,sensor_present"
    silver = outcome.table("silver").sort_values(["sensor", "timestamp"]).reset_index(drop=True)
    assert sorted(silver["sensor"].unique()) == ["S01", "S02", "S03", "S04"]
    assert_cells_kept(outcome, ["temperature", "humidity"])  # NaN, NA and empty cells
    features = outcome.table("gold", "_features").sort_values(["sensor", "timestamp"]).reset_index(drop=True)
    by_sensor = silver.groupby("sensor")["temperature"]
    assert _same(features["temperature_lag1"], by_sensor.shift(1))
    assert _same(features["temperature_lag24"], by_sensor.shift(24))
    assert _same(features["target"], by_sensor.shift(-3))
    assert list(features["hour"]) == list(silver["timestamp"].dt.hour)
    assert_promoted(outcome)
    assert outcome.gate["candidate"] == "lightgbm"
    # Every sensor is scored at its own latest complete hour of the last day, not only those at the latest hour.
    predictions = outcome.table("gold", "_predictions")
    assert sorted(predictions["sensor"]) == ["S01", "S02", "S03", "S04"]
    last = silver.groupby("sensor")["timestamp"].max()
    assert (pd.to_datetime(predictions.set_index("sensor")["as_of"]) == last).all()


def test_customer_table_without_time_and_a_yes_no_label(tmp_path: Path) -> None:
    shape = customer_table(tmp_path)
    outcome = run(tmp_path, CUSTOMERS, shape)
    assert_conserved(outcome, shape)
    quarantine = assert_quarantined(outcome, shape)
    # '64,5' unquoted split its line: the shifted cells never reach silver as charges and a label.
    [split] = [d.line for d in shape.dirt if d.rule == "row_fits_header"]
    assert (quarantine.loc[split, "raw_TotalCharges"], quarantine.loc[split, "Churn"]) == ("5", "2202.74")
    assert quarantine.loc[split, "_extra"] == "No"
    assert_cells_kept(outcome, ["TotalCharges", "Contract", "PaymentMethod"])
    silver = outcome.table("silver")
    assert set(silver["Churn"]) == {"Yes", "No"}
    assert "Crédit card (automatic)" in set(silver["PaymentMethod"])  # cp1252 read as such
    assert silver["TotalCharges"].isna().sum() == (silver["tenure"] == 0).sum() > 0  # ' ' is no value
    features = outcome.table("gold", "_features").set_index("customerID")
    assert features["as_of"].nunique() == 1
    assert not [c for c in features.columns if c.lower().startswith("churn")]  # the label is no feature
    assert {"Contract_month_to_month", "Contract_one_year", "Contract_two_year"} <= set(features.columns)
    labels = silver.set_index("customerID")["Churn"].eq("Yes").astype(float)
    assert _same(features["target"].sort_index(), labels.sort_index())
    assert_promoted(outcome)


def test_customer_table_with_a_label_of_pure_noise_is_rejected(tmp_path: Path) -> None:
    shape = customer_table(tmp_path, noise=True)
    outcome = run(tmp_path, CUSTOMERS, shape)
    assert_conserved(outcome, shape)
    assert_rejected_on_merit(outcome)


def test_loan_book_with_month_dates_percent_strings_and_56_columns(tmp_path: Path) -> None:
    shape = loan_book(tmp_path)
    outcome = run(tmp_path, LOANS, shape)
    assert_conserved(outcome, shape)
    assert_quarantined(outcome, shape)
    bronze = outcome.table("bronze", "_raw")
    assert set(shape.columns) <= set(bronze.columns)  # undeclared columns stay in bronze
    silver = outcome.table("silver")
    raw = bronze.set_index("_row_number").loc[2]
    first = silver.set_index("id").loc[raw["id"]]
    assert first["int_rate"] == pytest.approx(float(raw["int_rate"].rstrip("%")) / 100)  # '13.5%' is 0.135
    assert first["revol_util"] == pytest.approx(float(raw["revol_util"].rstrip("%")) / 100)
    assert first["term"] == raw["term"].strip()
    assert silver["issue_d"].nunique() == 36
    features = outcome.table("gold", "_features")
    expected = {"grade_a", "grade_g", "emp_length_10_plus_years", "emp_length_lt_1_year", "term_36_months"}
    assert expected <= set(features.columns)
    assert features["int_rate"].between(0, 1).all()
    assert features["target"].mean() == pytest.approx((silver["loan_status"] == "Charged Off").mean())
    assert_promoted(outcome)


def test_intraday_bars_with_mixed_z_timestamps(tmp_path: Path) -> None:
    shape = intraday_bars(tmp_path)
    outcome = run(tmp_path, INTRADAY, shape)
    assert_conserved(outcome, shape)
    assert_quarantined(outcome, shape)
    silver = outcome.table("silver").sort_values("time").reset_index(drop=True)
    stamps = silver["time"]
    # Half the file ends in Z: the same clock either way, so one bar every 5 minutes within each session.
    session = stamps.dt.date
    steps = stamps.groupby(session).diff().dropna()
    assert (steps >= pd.Timedelta(minutes=5)).all()
    assert steps.value_counts().idxmax() == pd.Timedelta(minutes=5)
    assert stamps.dt.time.min().isoformat() == "09:35:00"
    assert stamps.dt.time.max().isoformat() == "16:00:00"
    features = outcome.table("gold", "_features").sort_values("time").reset_index(drop=True)
    assert _same(features["target"], silver["close"].shift(-1))
    assert _same(features["close_logchg1"], np.log(silver["close"] / silver["close"].shift(1)))
    assert list(features["minute"]) == list(stamps.dt.minute)
    assert_promoted(outcome)
    predictions = outcome.table("gold", "_predictions")
    assert pd.Timestamp(predictions["as_of"].iloc[0]).time().isoformat() == "15:55:00"  # the last bar with a close


def test_intraday_random_walk_is_rejected(tmp_path: Path) -> None:
    """On a random walk the last close is the best forecast of the next: no candidate may be promoted.

    The gate pairs each bar with the same bar of the rival model (not with every bar of its day).
    """
    shape = intraday_bars(tmp_path, noise=True)
    outcome = run(tmp_path, INTRADAY, shape)
    assert_conserved(outcome, shape)
    beats = outcome.criterion("beats_baseline")
    backtest_rows = int(outcome.criterion("test_rows")["value"])
    assert f" on {backtest_rows} shared rows" in beats["detail"]
    assert_rejected_on_merit(outcome)
