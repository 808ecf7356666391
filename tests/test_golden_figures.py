"""The shipped use cases' tables and backtest figures, held against the copies recorded in tests/golden/.

fx runs on the test slice (4 currencies, 2021-2023, a small LightGBM); crm on a generated export of 3,000
opportunities with the logistic and a small LightGBM candidate. A figure that moves fails the test with every
differing figure listed. ``GOLDGATE_RECORD_GOLDEN=1`` writes the JSON instead (after checking that the run
produced tables and metrics). The full-size figures are ``benchmarks/golden.py``'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conftest import slice_usecase_dict, small_crm_dict
from golden.figures import RECORD_ENV, collect, compare, describe, load, produced_something, run_steps, save
from goldgate.sources.crm_synthetic import generate_crm
from goldgate.usecase import UseCase, parse_usecase

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).parent / "golden"


def fx_slice_usecase() -> UseCase:
    """The fx test slice without the latency rule (single-row timings follow the machine's load)."""
    data = slice_usecase_dict()
    data["gate"]["latency_budget_ms"] = None
    return parse_usecase(data, "fx_slice (golden figures)")


def crm_small_usecase() -> UseCase:
    """The small crm use case of the crm end-to-end test (logistic and a small LightGBM)."""
    return parse_usecase(small_crm_dict(), "crm_small (golden figures)")


def check_or_record(figures: dict[str, Any], recorded: Path) -> None:
    """Compare against the recorded figures, or write them when recording is asked for."""
    missing = produced_something(figures)
    assert not missing, "the run produced nothing to record: " + "; ".join(missing)
    if os.environ.get(RECORD_ENV) == "1":
        save(figures, recorded)
        return
    assert recorded.is_file(), f"{recorded} is missing: record it with {RECORD_ENV}=1"
    differences = compare(load(recorded), figures)
    assert not differences, describe(differences, recorded)


def test_fx_slice_figures_match_the_recorded_ones(tmp_path: Path) -> None:
    ctx = run_steps(fx_slice_usecase(), tmp_path / "ws")
    check_or_record(collect(ctx), GOLDEN / "fx_slice.json")


def test_crm_small_figures_match_the_recorded_ones(tmp_path: Path) -> None:
    export = tmp_path / "export"
    generate_crm(export, rows=3000, seed=7)
    ctx = run_steps(crm_small_usecase(), tmp_path / "ws", source=export)
    check_or_record(collect(ctx), GOLDEN / "crm_small.json")
