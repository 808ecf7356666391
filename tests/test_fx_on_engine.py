"""fx as YAML on the declarative engine reproduces the hard-wired fx use case's recorded figures.

tests/golden/fx_engine.yaml describes fx with no fx-specific Python: the ECB wide file unpivoted by a source
option, log returns as a gold expression, realized volatility and the cross-sectional features from the DSL. On the
test slice its silver, gold and feature tables and every model's backtest metrics and gate criteria must equal
the figures recorded from the hard-wired code (tests/golden/fx_slice.json; floats within 1e-9).

Left out of the comparison, because the engine changes them by design: bronze (the file as received, every column
as text and not cut to the slice), the quarantine table (its columns describe the typing), and ``_batch_id`` (a hash
of the bytes and the reading options, which differ between the two readers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import SLICE_CURRENCIES, slice_usecase_dict
from golden.figures import collect, compare, describe, load, run_steps
from goldgate.usecase import UseCase, parse_usecase

pytestmark = pytest.mark.e2e

GOLDEN = Path(__file__).parent / "golden"
NOT_COMPARED = ("bronze", "quarantine")


def engine_slice_dict() -> dict[str, Any]:
    """fx_engine.yaml cut like the test slice: the same currencies, dates, table names, model and folds."""
    data: dict[str, Any] = yaml.safe_load((GOLDEN / "fx_engine.yaml").read_text(encoding="utf-8"))
    hard_wired = slice_usecase_dict()
    data["name"] = hard_wired["name"]
    data["source"]["unpivot"]["columns"] = list(SLICE_CURRENCIES)
    data["source"].update(start=hard_wired["source"]["start"], end=hard_wired["source"]["end"])
    data["tables"] = hard_wired["tables"]
    data["models"] = {**hard_wired["models"], "allow_missing": False}
    data["evaluation"] = hard_wired["evaluation"]
    data["gate"] = {**hard_wired["gate"], "latency_budget_ms": None}
    return data


def engine_slice_usecase() -> UseCase:
    """The engine's fx slice, validated."""
    return parse_usecase(engine_slice_dict(), "fx_engine (slice)")


def _comparable(figures: dict[str, Any], usecase: UseCase) -> dict[str, Any]:
    skipped = {getattr(usecase.tables, role) for role in NOT_COMPARED}
    tables = {}
    for name, table in figures["tables"].items():
        if name in skipped:
            continue
        table = dict(table)
        table["columns"] = [c for c in table["columns"] if not c.startswith("_batch_id:")]
        table["fingerprints"] = {k: v for k, v in table["fingerprints"].items() if k != "_batch_id"}
        tables[name] = table
    return {**figures, "tables": tables, "about": {}}


def test_fx_on_the_engine_equals_the_recorded_hard_wired_figures(tmp_path: Path) -> None:
    usecase = engine_slice_usecase()
    ctx = run_steps(usecase, tmp_path / "ws")
    now = _comparable(collect(ctx), usecase)
    recorded = _comparable(load(GOLDEN / "fx_slice.json"), usecase)
    assert (
        set(now["tables"]) == set(recorded["tables"]) == {"silver.fxs_rates", "gold.fxs_returns", "gold.fxs_features"}
    )
    differences = compare(recorded, now)
    assert not differences, describe(differences, GOLDEN / "fx_slice.json")
