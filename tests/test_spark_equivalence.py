"""The spark engine computes what the DuckDB engine computes.

Each use case runs ingest -> silver -> gold -> features on DuckDB and on Spark (local[2]) into two workspaces,
batch by batch (a dirty second batch exercises quarantine, repeats and updates), and every table must come out
with the same versions, row counts, schema and values (floats within 1e-9 relative). A second test runs the whole
loop with ``goldgate run --engine spark`` and compares it with the same loop on DuckDB.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import pandas as pd
import pytest
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.context import Context
from goldgate.dag import get_step
from goldgate.lake import Lake
from goldgate.runner import run_step
from goldgate.settings import Settings
from goldgate.usecase import load_usecase

DATA_STEPS = ("ingest", "silver", "gold", "features")
# When a row was ingested, checked or scored: wall-clock stamps, different on every run by design.
STAMPS = {"_ingested_at", "checked_at", "scored_at", "detected_at", "recorded_at"}
RTOL, ATOL = 1e-9, 1e-12


def _fx_dirty_batch(folder: Path) -> Path:
    """A second ECB-format batch for the slice: a revised fixing, bad dates and rates, a repeated line, N/A."""
    lines = [
        "Date,USD,JPY,GBP,CHF,",
        "2023-12-29,1.1051,156.33,0.8691,0.9260,",  # revises the slice's last fixing (USD 1.1050)
        "2023-12-29,1.1051,156.33,0.8691,0.9260,",  # the same line again: quarantined as a repeat
        "2023-02-30,1.0500,140.00,0.8800,0.9900,",  # no such date
        "2023-06-15,abc,-1.0,0.8600,N/A,",  # not a number, not positive, no fixing
        "15 June 2023,1.0819,151.95,0.8554,0.9730,",  # the daily file's date format
    ]
    path = folder / "fx_dirty.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class EngineCase:
    """A use case and the batches to ingest one after the other (None: the use case's own default source)."""

    name: str
    usecase: Callable[[Path, Path], Path]  # (slice use case, tmp folder) -> use-case YAML
    batches: Callable[[Path], list[Path | None]]


def _bundled(name: str, folder: Path) -> Path:
    """A bundled use case's YAML, copied as it is."""
    path = folder / f"{name}.yaml"
    path.write_text((resources.files("goldgate") / "usecases" / f"{name}.yaml").read_text(encoding="utf-8"))
    return path


def _crm_export(folder: Path) -> Path:
    """A small generated CRM export with every kind of dirt the crm use case handles."""
    from goldgate.sources.crm_synthetic import generate_crm

    generate_crm(folder / "crm_export", rows=2000, seed=7)
    return folder / "crm_export"


def _weather_dirty_batch(folder: Path) -> Path:
    """A second weather batch: a revised day, a repeated line, cells that do not parse, a rule failure, a new day."""
    lines = [
        "date,precipitation,temp_max,temp_min,wind,weather",
        "2015/12/31,0.5,6.1,-2.1,3.5,rain",  # revises the last day of the file
        "2015/12/31,0.5,6.1,-2.1,3.5,rain",  # the same line again: quarantined as a repeat
        "2016/02/30,0.0,8.0,1.0,2.0,sun",  # no such date
        "2016/01/02,abc,1e999,1.0,2.0,sun",  # not a number, not finite
        "2016/01/03,0.0,2.0,5.0,2.0,fog",  # minimum above maximum
        "2016/01/01,1.2,7.0,2.0,4.1,drizzle",  # a new day
    ]
    path = folder / "weather_dirty.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


CASES = [
    # fx: the bundled fx.yaml on the declarative engine, cut to the test slice.
    EngineCase("fx", lambda slice_path, _: slice_path, lambda tmp: [None, _fx_dirty_batch(tmp)]),
    EngineCase("crm", lambda _, tmp: _bundled("crm", tmp), lambda tmp: [_crm_export(tmp)]),
    # The declarative engine: a file use case typed, checked and featurized from its YAML alone.
    EngineCase("weather", lambda _, tmp: _bundled("weather", tmp), lambda tmp: [None, _weather_dirty_batch(tmp)]),
]


def _context(workspace: Path, usecase: Path, engine: str, source: Path | None) -> Context:
    settings = Settings(workspace=workspace, engine=engine)
    return Context(settings=settings, usecase=load_usecase(usecase), source=str(source) if source else None)


def _run_data_steps(workspace: Path, usecase: Path, engine: str, batches: list[Path | None]) -> Lake:
    lake: Lake | None = None
    for source in batches:
        ctx = _context(workspace, usecase, engine, source)
        for name in DATA_STEPS:
            run_step(ctx, get_step(name))
        lake = ctx.lake
    assert lake is not None
    return lake


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def lakes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path, spark: Any
) -> tuple[Lake, Lake]:
    """(DuckDB lake, Spark lake) after the case's batches went through the data steps on each engine."""
    case: EngineCase = request.param
    tmp = tmp_path_factory.mktemp(f"equivalence_{case.name}")
    usecase = case.usecase(slice_usecase_path, tmp)
    batches = case.batches(tmp)
    duck = _run_data_steps(tmp / "duckdb", usecase, "duckdb", batches)
    on_spark = _run_data_steps(tmp / "spark", usecase, "spark", batches)
    return duck, on_spark


def _schema(lake: Lake, name: str) -> dict[str, dt.DataType]:
    """Column types; DuckDB reads timestamps as UTC-aware, Spark as UTC instants without a zone: both are UTC."""
    out = {}
    for column, dtype in lake.read(name).schema().items():
        out[column] = dt.Timestamp(scale=None, nullable=True) if dtype.is_timestamp() else dtype.copy(nullable=True)
    return out


def _frame(lake: Lake, name: str) -> pd.DataFrame:
    """The table without its stamps, rows in a canonical order (exact columns first, floats as tie-breakers)."""
    frame = lake.read(name).to_pandas()
    frame = frame.drop(columns=[c for c in frame.columns if c in STAMPS])
    exact = [c for c in frame.columns if not pd.api.types.is_float_dtype(frame[c])]
    floats = [c for c in frame.columns if c not in exact]
    return frame.sort_values([*exact, *floats], kind="stable", na_position="last").reset_index(drop=True)


def test_both_engines_write_the_same_tables_versions_and_rows(lakes: tuple[Lake, Lake]) -> None:
    duck, on_spark = lakes
    assert on_spark.tables() == duck.tables()
    assert {"ops.quality"} < set(duck.tables())
    for name in duck.tables():
        assert (on_spark.version(name), on_spark.rows(name)) == (duck.version(name), duck.rows(name)), name


def test_the_dirty_batch_reached_quarantine_on_both_engines(lakes: tuple[Lake, Lake]) -> None:
    duck, on_spark = lakes
    quarantined = [n for n in duck.tables() if n.startswith("quarantine.")]
    assert quarantined
    assert sum(duck.rows(n) for n in quarantined) > 0  # the comparison below is not vacuous for quarantine
    assert [on_spark.rows(n) for n in quarantined] == [duck.rows(n) for n in quarantined]


def test_both_engines_give_every_table_the_same_schema(lakes: tuple[Lake, Lake]) -> None:
    duck, on_spark = lakes
    for name in duck.tables():
        assert _schema(on_spark, name) == _schema(duck, name), name


def test_both_engines_compute_the_same_values(lakes: tuple[Lake, Lake]) -> None:
    duck, on_spark = lakes
    for name in duck.tables():
        expected, got = _frame(duck, name), _frame(on_spark, name)
        assert list(got.columns) == list(expected.columns), name
        assert len(expected) == len(got), name
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=RTOL, atol=ATOL, obj=name)


@pytest.mark.e2e
def test_goldgate_run_on_spark_completes_the_loop_like_duckdb(
    tmp_path: Path, slice_usecase_path: Path, spark: Any, looped_workspace: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole loop via the command line on Spark, scoring with spark_udf; same outcome as on DuckDB."""
    out = tmp_path / "summary.json"
    args = ["run", "-u", str(slice_usecase_path), "-w", str(tmp_path / "ws"), "--engine", "spark"]
    with caplog.at_level("INFO", logger="goldgate"):
        result = CliRunner().invoke(app, [*args, "--summary-json", str(out)])
    assert result.exit_code == 0, result.output
    assert any("with spark_udf" in r.getMessage() for r in caplog.records), "score did not run in Spark"
    summary, reference = json.loads(out.read_text()), looped_workspace.summary
    assert summary["tables"] == reference["tables"]
    assert summary["quarantine"] == reference["quarantine"]
    assert summary["gate"]["decision"] == reference["gate"]["decision"]
    assert summary["gate"]["candidate"] == reference["gate"]["candidate"]  # the model that was promoted
    assert [(c["name"], c["passed"]) for c in summary["gate"]["criteria"] if c["name"] != "latency_budget"] == [
        (c["name"], c["passed"]) for c in reference["gate"]["criteria"] if c["name"] != "latency_budget"
    ]
    assert summary["champion"] == reference["champion"]
    assert summary["predictions_rows"] == reference["predictions_rows"] > 0
    assert summary["drift"]["features_drifted"] == reference["drift"]["features_drifted"]
    tables = load_usecase(slice_usecase_path).tables
    spark_lake = _context(tmp_path / "ws", slice_usecase_path, "spark", None).lake
    duckdb_lake = Lake(looped_workspace.workspace / "lake", ibis.duckdb.connect())
    features = _frame(spark_lake, tables.features), _frame(duckdb_lake, tables.features)
    pd.testing.assert_frame_equal(*features, check_dtype=False, rtol=RTOL, atol=ATOL, obj=tables.features)
    on_spark, on_duckdb = _frame(spark_lake, tables.predictions), _frame(duckdb_lake, tables.predictions)
    lineage = ["currency", "as_of", "model_name", "model_version", "feature_table", "feature_table_version"]
    pd.testing.assert_frame_equal(on_spark[lineage], on_duckdb[lineage], check_dtype=False)
    pd.testing.assert_series_equal(on_spark["prediction"], on_duckdb["prediction"], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("unit", "kind"),
    [("days", "aggregate"), ("days", "value_at"), ("days", "event")],
)
def test_targets_over_a_time_span_are_the_same_on_spark(spark: Any, unit: str, kind: str) -> None:
    """A horizon in time is a range frame over the time column; both engines read the same rows into it."""
    from goldgate.data.targets import build_target, target_inputs
    from goldgate.usecase import parse_usecase

    days = pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-04", "2024-03-05", "2024-03-08"]).date
    frame = pd.DataFrame(
        {"ticker": ["a"] * 5 + ["b"] * 5, "day": list(days) * 2, "close": [10.0, 11, None, 13, 12, 20, 19, 21, 22, 18]}
    )
    target = {"kind": kind, "column": "close", "event": "close > 12", "horizon": 3, "unit": unit}
    uc = parse_usecase(
        {
            "name": "prices",
            "task": "classification" if kind == "event" else "regression",
            "source": {"kind": "file", "path": "p.csv"},
            "entity": "ticker",
            "time": "day",
            "columns": {"ticker": "string", "day": "date", "close": "float"},
            "target": target,
        }
    )
    results = []
    for con in (ibis.duckdb.connect(), ibis.pyspark.connect(spark)):
        gold = target_inputs(con.create_table(f"span_{kind}", frame, overwrite=True), uc)
        out = gold.select("ticker", "day", **build_target(gold, uc)).to_pandas()
        results.append(out.sort_values(["ticker", "day"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(results[0], results[1], check_dtype=False, rtol=RTOL)
    assert results[0]["target"].notna().sum() >= 6
