"""A use case's figures from one run of its data and model steps, and their comparison against a recorded copy.

The steps ingest → gate run into a fresh workspace. Then, for every table the use case names (bronze, silver,
gold, features, quarantine and the extra tables its source kind writes; predictions are not produced by these
steps), the figures are:

* the row count and every column's name with its Arrow type (as ``Lake.read`` returns it);
* the sort keys: every column that is not floating point, not ingestion metadata (``_ingested_at``,
  ``_batch_id``, ``_source``) and not volatile; the rows are sorted by them, then by the remaining fingerprinted
  columns as tie-breakers, so the order is total and the same in every run. ``distinct_keys`` says whether the
  keys alone already identify a row;
* per column, in that row order: numeric columns give the non-null count, the sum and the position-weighted sum
  ``Σ value × (row index + 1)`` (a value moving to another row changes it); floats are summed with ``math.fsum``
  (exactly rounded, so independent of summation order) over their finite values, and non-finite ones are
  counted. Other columns give the non-null count and a sha256 of the values' text in row order.

Columns that depend on the wall clock or on a random id (``_ingested_at``, ``scored_at``, run ids) are named
but not fingerprinted; ``_source`` (a file path inside the run's workspace) is fingerprinted by file name only.

From the evaluate step's ``Evaluation.to_dict()``: the folds, every score's model, role, pooled metrics and
per-fold metrics, every comparison's values, fold wins and bootstrap interval; from the gate step, the decision
and each criterion's pass flag (not the latency criterion's: it measures the machine's load).

Counts, names, types, hashes and the decision compare exactly, floats within ``math.isclose(a, b,
rel_tol=1e-9, abs_tol=1e-9)``.

fx's and crm's figures were recorded from the hard-wired code that preceded the declarative engine; both now run
as YAML on the engine, which changes a few things by design, so ``comparable`` leaves them out of the comparison
(see ``ENGINE_CHANGED``): the bronze tables (the files as received, every column as text, with the engine's
``_file`` and not cut to the slice), the quarantine tables (their columns describe the engine's typing) and
``_batch_id`` (a hash of the bytes and the reading options). crm's gold table holds the same columns and values,
the joined columns after the main file's: ``collect`` fingerprints it in the recorded column order.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from datetime import date, datetime
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pyarrow as pa

from goldgate.context import Context
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.usecase import UseCase

STEPS = ("ingest", "silver", "gold", "features", "train", "evaluate", "gate")
VOLATILE = frozenset({"_ingested_at", "scored_at", "checked_at", "detected_at", "recorded_at", "run_id"})
INGEST_METADATA = frozenset({"_ingested_at", "_batch_id", "_source"})
PATHS = frozenset({"_source"})
NOT_TABLES = frozenset({"predictions", "extra"})
COMPARISON_FIELDS = (
    "metric",
    "folds",
    "rows",
    "candidate_value",
    "rival_value",
    "fold_wins",
    "ci_mean",
    "ci_low",
    "ci_high",
    "ci_level",
    "ci_unit",
    "candidate_ece",
    "rival_ece",
)
TOLERANCE = 1e-9
RECORD_ENV = "GOLDGATE_RECORD_GOLDEN"
# Use case -> (table roles, columns) its comparison leaves out: figures recorded before it moved onto the engine.
# Use case -> (layers whose tables are left out, columns left out, roles whose column order may differ).
ENGINE_CHANGED: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "fx": (("bronze", "quarantine"), ("_batch_id",), ()),
    "crm": (("bronze", "quarantine"), ("_batch_id",), ("gold",)),
}
ABOUT = "about"  # package versions at recording time, to explain a mismatch; never compared
PACKAGES = (
    "goldgate",
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "ibis-framework",
    "deltalake",
    "scipy",
    "scikit-learn",
    "lightgbm",
    "mlflow",
    "CurrencyConverter",
)


@dataclass(frozen=True)
class Difference:
    """One figure that moved: where it sits, its recorded value and its value now (``ABSENT`` on either side)."""

    path: str
    recorded: Any
    now: Any


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


def run_steps(usecase: UseCase, workspace: Path, source: Path | None = None) -> Context:
    """Run ingest → gate of ``usecase`` into ``workspace`` (``source``: the export or file, else the default)."""
    ctx = Context(load_settings(workspace=workspace), usecase, source=str(source) if source else None)
    run_pipeline(ctx, only=list(STEPS))
    return ctx


def collect(ctx: Context, orders: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The figures of a context whose steps have run (see the module docstring).

    ``orders`` maps a table to a column order to fingerprint it in, used when the table has exactly those columns.
    """
    figures: dict[str, Any] = {ABOUT: about(), "use_case": ctx.usecase.name, "tables": {}}
    for role, name in sorted(table_names(ctx.usecase).items(), key=lambda item: item[1]):
        if not ctx.lake.exists(name):
            figures["tables"][name] = {"role": role, "exists": False}
            continue
        table = ctx.lake.read(name).to_pyarrow()
        order = (orders or {}).get(name)
        if order is not None and sorted(order) == sorted(table.column_names):
            table = table.select(order)
        figures["tables"][name] = {"role": role, "exists": True, **table_figures(table)}
    figures["backtest"] = backtest_figures(ctx.results["evaluate"], ctx.results["gate"])
    return figures


def table_names(usecase: UseCase) -> dict[str, str]:
    """Role -> logical name of every table the use case names, predictions aside."""
    declared = usecase.tables.model_dump()
    return {**{r: n for r, n in declared.items() if r not in NOT_TABLES}, **declared["extra"]}


def table_figures(table: pa.Table) -> dict[str, Any]:
    """Row count, schema, sort keys and per-column fingerprints of one table."""
    schema = table.schema
    fingerprinted = [f.name for f in schema if f.name not in VOLATILE]
    keys = [
        f.name
        for f in schema
        if f.name in fingerprinted
        and f.name not in INGEST_METADATA
        and _sortable(f.type)
        and not pa.types.is_floating(f.type)
    ]
    ties = [f.name for f in schema if f.name in fingerprinted and f.name not in keys and _sortable(f.type)]
    order = [n for n in keys + ties if n not in PATHS]
    ordered = table.sort_by([(n, "ascending") for n in order]) if order and table.num_rows else table
    distinct = table.group_by(keys).aggregate([]).num_rows if keys else None
    return {
        "rows": table.num_rows,
        "columns": [f"{f.name}: {f.type}" for f in schema],
        "sort_keys": keys,
        "distinct_keys": distinct,
        "not_fingerprinted": sorted(set(schema.names) - set(fingerprinted)),
        "fingerprints": {n: column_figures(ordered.column(n), path=n in PATHS) for n in fingerprinted},
    }


def _sortable(kind: pa.DataType) -> bool:
    return not (pa.types.is_nested(kind) or pa.types.is_null(kind) or pa.types.is_dictionary(kind))


def column_figures(column: pa.ChunkedArray, path: bool = False) -> dict[str, Any]:
    """Non-null count and either the (position-weighted) sums of a numeric column or a hash of its text."""
    kind = column.type
    if pa.types.is_integer(kind):
        ints = column.to_pylist()
        valid = [(i + 1, v) for i, v in enumerate(ints) if v is not None]
        return {"non_null": len(valid), "sum": sum(v for _, v in valid), "weighted_sum": sum(w * v for w, v in valid)}
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype("float64")
        present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        finite = present & np.isfinite(values)
        weights = np.arange(1, len(values) + 1, dtype="float64")
        return {
            "non_null": int(present.sum()),
            "non_finite": int((present & ~finite).sum()),
            "sum": math.fsum(values[finite]),
            "weighted_sum": math.fsum((values * weights)[finite]),
        }
    texts = [_text(v, path) for v in column.to_pylist()]
    payload = json.dumps(texts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return {"non_null": sum(t is not None for t in texts), "sha256": hashlib.sha256(payload).hexdigest()}


def _text(value: Any, path: bool) -> str | None:
    if value is None:
        return None
    if path:
        return PurePath(str(value)).name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def backtest_figures(evaluation: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """Folds, every model's metrics, every comparison and the gate's decision from the two steps' results."""
    scores = {
        f"{s['role']}:{s['model']}": {
            "model": s["model"],
            "role": s["role"],
            "error": s["error"],
            "metrics": s["metrics"],
            "fold_metrics": s["fold_metrics"],
        }
        for s in evaluation["scores"]
    }
    comparisons = {
        f"{c['candidate']} vs {c['rival']}": {k: c[k] for k in COMPARISON_FIELDS} for c in evaluation["comparisons"]
    }
    criteria = {
        # The latency criterion times single-row predictions: its outcome follows the machine's load.
        c["name"]: {} if c["name"].startswith("latency") else {"passed": c["passed"]}
        for c in decision["criteria"]
    }
    candidate = decision.get("candidate") or {}
    return {
        "task": evaluation["task"],
        "primary_metric": evaluation["primary_metric"],
        "rows": evaluation["rows"],
        "folds": evaluation["folds"],
        "scores": scores,
        "comparisons": comparisons,
        "gate": {"decision": decision["decision"], "candidate": candidate.get("model"), "criteria": criteria},
    }


def about() -> dict[str, str]:
    """Python and package versions of the run: a changed version is the first suspect of a changed figure."""
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf values by path (``tables/silver.fx_rates/rows``, ``scores/candidate:har/fold_metrics[0]/rmse``)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{path}/{key}" if path else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{path}[{i}]"))
        return out
    return {path: value}


def same(recorded: Any, now: Any) -> bool:
    """Exact for everything but floats, which agree within the tolerance (NaN equals NaN)."""
    numbers = (int, float)
    if isinstance(recorded, bool) or isinstance(now, bool) or not isinstance(recorded, numbers):
        return type(recorded) is type(now) and recorded == now
    if not isinstance(now, numbers):
        return False
    if isinstance(recorded, int) and isinstance(now, int):
        return recorded == now
    if math.isnan(recorded) or math.isnan(now):
        return math.isnan(recorded) and math.isnan(now)
    return math.isclose(recorded, now, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def compare(recorded: dict[str, Any], now: dict[str, Any]) -> list[Difference]:
    """Every figure that differs, is missing or is new, by path (the ``about`` section aside)."""
    old = flatten({k: v for k, v in recorded.items() if k != ABOUT})
    new = flatten({k: v for k, v in now.items() if k != ABOUT})
    return [
        Difference(path, old.get(path, ABSENT), new.get(path, ABSENT))
        for path in sorted(old.keys() | new.keys())
        if path not in old or path not in new or not same(old[path], new[path])
    ]


def comparable(figures: dict[str, Any], usecase: UseCase, family: str) -> dict[str, Any]:
    """``figures`` without the tables and columns ``ENGINE_CHANGED`` leaves out for ``family`` (``fx``, ``crm``).

    A family with no entry is returned unchanged. ``usecase`` names the tables (the test slice renames them).
    """
    if family not in ENGINE_CHANGED:
        return figures
    layers, columns, _ = ENGINE_CHANGED[family]
    tables = {}
    for name, table in figures["tables"].items():
        if name.split(".", 1)[0] in layers:
            continue
        table = dict(table)
        if table.get("exists", True):
            table["columns"] = [c for c in table["columns"] if c.split(":", 1)[0] not in columns]
            table["fingerprints"] = {k: v for k, v in table["fingerprints"].items() if k not in columns}
        tables[name] = table
    return {**figures, "tables": tables}


def recorded_orders(recorded: dict[str, Any], usecase: UseCase, family: str) -> dict[str, list[str]]:
    """The recorded column order of each table whose order the engine may change (``ENGINE_CHANGED``)."""
    roles = ENGINE_CHANGED.get(family, ((), (), ()))[2]
    names = {getattr(usecase.tables, role) for role in roles}
    return {
        name: [c.split(":", 1)[0] for c in table["columns"]]
        for name, table in recorded.get("tables", {}).items()
        if name in names and table.get("exists", True)
    }


def describe(differences: list[Difference], recorded: Path) -> str:
    """One line per differing figure: path, recorded value, value now."""
    lines = [f"{len(differences)} figure(s) differ from {recorded}:"]
    lines += [f"  {d.path}: recorded {d.recorded!r}, now {d.now!r}" for d in differences]
    return "\n".join(lines)


def save(figures: dict[str, Any], path: Path) -> None:
    """Write figures as JSON (floats as ``repr``, so they read back bit for bit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load(path: Path) -> dict[str, Any]:
    """Read figures written by ``save``."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def produced_something(figures: dict[str, Any]) -> list[str]:
    """What an empty run lacks: tables without rows and models without metrics (empty when all is there)."""
    problems = [
        f"{name}: no rows"
        for name, t in figures["tables"].items()
        if t["role"] in ("bronze", "silver", "gold", "features") and not t.get("rows")
    ]
    scores = figures["backtest"]["scores"]
    problems += [f"{key}: no metrics" for key, s in scores.items() if not s["metrics"]]
    if not scores:
        problems.append("no model was scored")
    return problems
