"""The shipped use cases' tables and backtest figures, held against the copies recorded in tests/golden/.

fx runs on the test slice (4 currencies, 2021-2023, a small LightGBM); crm on a generated export of 3,000
opportunities with the logistic and a small LightGBM candidate. A figure that moves fails the test with every
differing figure listed. ``GOLDGATE_RECORD_GOLDEN=1`` writes the JSON instead (after checking that the run
produced tables and metrics). The full-size figures are ``benchmarks/golden.py``'s.

fx and crm are the bundled fx.yaml and crm.yaml, pure YAML on the declarative engine; their figures were recorded
from the hard-wired code they replaced. Their silver, gold and feature tables and every model's backtest metrics
and gate criteria must equal them (floats within 1e-9); bronze, the quarantine tables and ``_batch_id``, which the
engine changes by design, are left out of the comparison, and crm's gold is fingerprinted in the recorded column
order (``golden.figures.ENGINE_CHANGED``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conftest import slice_usecase_dict, small_crm_dict
from golden.figures import (
    RECORD_ENV,
    collect,
    comparable,
    compare,
    describe,
    load,
    produced_something,
    recorded_orders,
    run_steps,
    save,
)
from goldgate.sources.crm_synthetic import generate_crm
from goldgate.usecase import UseCase, parse_usecase

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).parent / "golden"


def fx_slice_usecase() -> UseCase:
    """The fx test slice (the bundled fx.yaml, cut) without the latency rule (single-row timings follow the load)."""
    data = slice_usecase_dict()
    data["gate"]["latency_budget_ms"] = None
    return parse_usecase(data, "fx_slice (golden figures)")


def crm_small_usecase() -> UseCase:
    """The small crm use case of the crm end-to-end test (logistic and a small LightGBM)."""
    return parse_usecase(small_crm_dict(), "crm_small (golden figures)")


def check_or_record(figures: dict[str, Any], recorded: Path, usecase: UseCase, family: str) -> None:
    """Compare against the recorded figures (what ``family`` leaves out aside), or write them when asked to."""
    missing = produced_something(figures)
    assert not missing, "the run produced nothing to record: " + "; ".join(missing)
    if os.environ.get(RECORD_ENV) == "1":
        save(figures, recorded)
        return
    assert recorded.is_file(), f"{recorded} is missing: record it with {RECORD_ENV}=1"
    differences = compare(comparable(load(recorded), usecase, family), comparable(figures, usecase, family))
    assert not differences, describe(differences, recorded)


def test_fx_slice_figures_match_the_recorded_ones(tmp_path: Path) -> None:
    usecase = fx_slice_usecase()
    assert usecase.source.kind == "file"  # fx runs on the declarative engine, from its YAML alone
    ctx = run_steps(usecase, tmp_path / "ws")
    figures = collect(ctx)
    compared = comparable(figures, usecase, "fx")["tables"]
    assert set(compared) == {"silver.fxs_rates", "gold.fxs_returns", "gold.fxs_features"}
    check_or_record(figures, GOLDEN / "fx_slice.json", usecase, "fx")


def test_crm_small_figures_match_the_recorded_ones(tmp_path: Path) -> None:
    export = tmp_path / "export"
    generate_crm(export, rows=3000, seed=7)
    usecase = crm_small_usecase()
    assert usecase.source.kind == "tables"  # crm runs on the declarative engine, from its YAML alone
    ctx = run_steps(usecase, tmp_path / "ws", source=export)
    recorded = GOLDEN / "crm_small.json"
    orders = recorded_orders(load(recorded), usecase, "crm") if recorded.is_file() else {}
    figures = collect(ctx, orders)
    compared = comparable(figures, usecase, "crm")["tables"]
    assert set(compared) == {
        "silver.crm_opportunities",
        "silver.crm_accounts",
        "silver.crm_products",
        "silver.crm_sales_teams",
        "gold.crm_deals",
        "gold.crm_snapshots",
    }
    check_or_record(figures, recorded, usecase, "crm")
