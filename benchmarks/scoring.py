"""Benchmark: goldgate's batch scoring path vs the raw LightGBM ``predict`` on a NumPy array of the same rows.

    .venv/bin/python benchmarks/scoring.py --workspace DIR [--rows 1000000] [--repeat 3]

The model is the LightGBM version registered in ``DIR`` (the champion when it is a LightGBM; the fx loop is run
there first when the workspace has no champion). The rows are a feature table built by goldgate's own ``features``
step from a synthetic panel (``benchmarks/panel.py``; ``--rows`` long rows) in a scratch lake, so they have the
model's inputs. In one process, alternating, ``--repeat`` times (median reported):

* ``raw``: ``LGBMRegressor.predict`` on a float64 NumPy array of the complete rows, prepared beforehand;
* ``stream``: goldgate's score path from the lake: the Delta feature table read by DuckDB, the rows with every
  input kept, streamed in Arrow batches of ``goldgate.score.BATCH_ROWS`` through
  ``goldgate.score.predict_batches`` with the MLflow pyfunc model (signature enforcement) and lineage columns;
* ``stream_merge``: the same plus the merge of the prediction rows into a Delta predictions table (what the
  ``score`` step writes).

Writes ``benchmarks/results/scoring.json`` and the ``scoring`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from panel import DAYS, entity_codes, fx_usecase, goldgate_context, load_gold, machine, write_panel  # noqa: E402
from report import load_text, write_section  # noqa: E402

DOC = HERE.parent / "docs" / "benchmarks.md"
RESULTS = HERE / "results"
START, END = "<!-- scoring:start -->", "<!-- scoring:end -->"
PREDICTIONS = "gold.bench_predictions"


def lightgbm_version(workspace: Path, usecase: str) -> dict[str, Any]:
    """The registered LightGBM model to score with: the champion if it is one, else the newest LightGBM version."""
    import mlflow
    from serving import ensure_model

    from goldgate.context import Context
    from goldgate.registry import CHAMPION, alias_version
    from goldgate.settings import load_settings
    from goldgate.usecase import load_usecase

    ensure_model(workspace, usecase)  # runs the loop when there is no champion yet
    ctx = Context(load_settings(workspace=workspace), load_usecase(usecase))
    ctx.mlflow_client()
    name = ctx.usecase.models.registered_name
    champion = alias_version(name, CHAMPION)
    versions = sorted(mlflow.MlflowClient().search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version))
    ordered = ([champion] if champion else []) + [v for v in versions if not champion or v.version != champion.version]
    for version in ordered:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
        if type(model.get_raw_model()).__name__.startswith("LGBM"):
            return {
                "name": name,
                "version": str(version.version),
                "run_id": version.run_id,
                "champion": bool(champion and champion.version == version.version),
                "model": model,
            }
    raise SystemExit(f"no LightGBM version of {name} is registered in {workspace}")


def feature_table(scratch: Path, rows: int) -> Any:
    """A goldgate fx feature table of about ``rows`` rows in a scratch workspace (built once, then reused)."""
    from goldgate.dag import get_step
    from goldgate.runner import run_step

    workspace = scratch / f"scoring_ws_{rows}"
    if not (workspace / "lake" / "gold" / "fx_features").exists():
        shutil.rmtree(workspace, ignore_errors=True)
        workspace.mkdir(parents=True)
        panel = scratch / f"panel_{rows}.parquet"
        if not panel.exists():
            write_panel(panel, rows)
        fx_usecase(workspace, entity_codes(1)[0])
        load_gold(panel, workspace, None)
        run_step(goldgate_context(workspace, None), get_step("features"))
    return goldgate_context(workspace, None)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    from goldgate.score import BATCH_ROWS, PREDICTION_KEYS, _complete, predict_batches

    load_start = os.getloadavg()
    chosen = lightgbm_version(args.workspace.resolve(), args.usecase)
    model = chosen["model"]
    raw = model.get_raw_model()
    inputs = model.metadata.get_input_schema().input_names()
    ctx = feature_table(args.scratch, args.rows)
    lake, uc = ctx.lake, ctx.usecase
    version = lake.version(uc.tables.features)
    lineage = {
        "model_name": chosen["name"],
        "model_version": chosen["version"],
        "run_id": chosen["run_id"],
        "feature_table": uc.tables.features,
        "feature_table_version": int(version or 0),
    }

    def rows_expr() -> Any:
        complete = _complete(lake.read(uc.tables.features, version), inputs)
        return complete.select(uc.entity, uc.time, *[c for c in inputs if c not in (uc.entity, uc.time)])

    frame = rows_expr().to_pandas()
    x = np.ascontiguousarray(frame[inputs].to_numpy(dtype="float64"))
    n = len(x)
    del frame

    def raw_predict() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fitted with column names, given a bare array: the point here
            return len(raw.predict(x))

    def stream(merge: bool) -> int:
        batches = rows_expr().to_pyarrow_batches(chunk_size=BATCH_ROWS)
        parts = list(predict_batches(batches, model.predict, inputs, uc.entity, uc.time, lineage, datetime.now(UTC)))
        table = pa.concat_tables(parts)
        if merge:
            lake.merge(PREDICTIONS, table, keys=[uc.entity, *PREDICTION_KEYS], ignore=("scored_at",))
        return table.num_rows

    def clear() -> None:
        layer, name = PREDICTIONS.split(".")
        shutil.rmtree(lake.root / layer / name, ignore_errors=True)

    variants = {"raw": raw_predict, "stream": lambda: stream(False), "stream_merge": lambda: stream(True)}
    timings: dict[str, list[float]] = {k: [] for k in variants}
    loads: list[float] = []
    raw_predict()  # warm-up: LightGBM's first call sets up its thread pool
    order = list(variants)
    for round_ in range(args.repeat):
        # The order rotates every round, so no variant always runs right after another one.
        for key in order[round_ % len(order) :] + order[: round_ % len(order)]:
            fn = variants[key]
            clear()
            loads.append(os.getloadavg()[0])
            started = time.perf_counter()
            scored = fn()
            timings[key].append(time.perf_counter() - started)
            if scored != n:
                raise RuntimeError(f"{key} scored {scored} rows, expected {n}")
            print(f"{key:<13} {timings[key][-1]:7.2f} s  {n / timings[key][-1]:>12,.0f} rows/s", flush=True)
    clear()
    # Same model, same rows: the pyfunc predictions on the stream equal the raw ones.
    check = np.asarray(model.predict(rows_expr().limit(10_000).to_pandas()[inputs]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = raw.predict(np.ascontiguousarray(rows_expr().limit(10_000).to_pandas()[inputs].to_numpy(float)))
    summary = {
        key: {
            "seconds": statistics.median(values),
            "runs": [round(v, 3) for v in values],
            "rows_per_second": n / statistics.median(values),
        }
        for key, values in timings.items()
    }
    return {
        "benchmark": "scoring",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_start": load_start,
        "load_1min_per_run": [round(v, 2) for v in loads],
        "load_average_end": os.getloadavg(),
        "machine": machine(),
        "model": {
            "name": chosen["name"],
            "version": chosen["version"],
            "champion": chosen["champion"],
            "kind": type(raw).__name__,
            "n_estimators": getattr(raw, "n_estimators", None),
            "inputs": inputs,
        },
        "rows": n,
        "panel_rows": args.rows,
        "days": DAYS,
        "batch_rows": BATCH_ROWS,
        "repeat": args.repeat,
        "variants": summary,
        "ratio_stream": summary["stream"]["rows_per_second"] / summary["raw"]["rows_per_second"],
        "ratio_stream_merge": summary["stream_merge"]["rows_per_second"] / summary["raw"]["rows_per_second"],
        "max_abs_diff_pyfunc_vs_raw": float(np.max(np.abs(check - expected))),
    }


def render(r: dict[str, Any]) -> str:
    m, model, v = r["machine"], r["model"], r["variants"]
    labels = {
        "raw": "raw `LGBMRegressor.predict` on a NumPy array",
        "stream": "goldgate: Delta → DuckDB → Arrow batches → `predict_batches` (pyfunc, lineage)",
        "stream_merge": "goldgate: the same + merge into a Delta predictions table",
    }
    lines = [
        START,
        "## Batch scoring vs raw predict",
        "",
        f"Measured {r['started_utc'].replace('T', ' ')[:16]} UTC with `.venv/bin/python benchmarks/scoring.py` on "
        f"{m['cpus']} CPUs (load average at start {load_text(r['load_average_start'])}, at end "
        f"{load_text(r['load_average_end'])}). Model: `{model['name']}` v{model['version']}"
        f"{' (champion)' if model['champion'] else ''}, {model['kind']} with {model['n_estimators']} trees and "
        f"{len(model['inputs'])} inputs. Rows: {r['rows']:,} complete feature rows built by goldgate's features "
        f"step from a {r['panel_rows']:,}-row synthetic panel. One process, the variants alternating, median of "
        f"{r['repeat']} runs (the order rotating every round).",
        "",
        "| path | seconds (runs) | rows/s | share of raw throughput |",
        "|---|---:|---:|---:|",
    ]
    for key in ("raw", "stream", "stream_merge"):
        s = v[key]
        share = s["rows_per_second"] / v["raw"]["rows_per_second"]
        runs = "/".join(f"{x:.2f}" for x in s["runs"])
        lines.append(f"| {labels[key]} | {s['seconds']:.2f} ({runs}) | {s['rows_per_second']:,.0f} | {share:.0%} |")
    ratio = r["ratio_stream"]
    lines += [
        "",
        f"Aim: batch scoring at ≥ 50 % of raw predict throughput. Measured: {ratio:.0%} for the scoring stream "
        f"({'met' if ratio >= 0.5 else '**missed**'}), {r['ratio_stream_merge']:.0%} including the Delta merge "
        f"({'met' if r['ratio_stream_merge'] >= 0.5 else '**missed**'}). The pyfunc predictions equal the raw ones "
        f"(largest difference on 10,000 rows: {r['max_abs_diff_pyfunc_vs_raw']:.1e}). Arrow batches of "
        f"{r['batch_rows']:,} rows; the raw array is built before the clock starts. Raw figures: "
        "`benchmarks/results/scoring.json`.",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True, help="workspace holding the registered model")
    parser.add_argument("--usecase", default="fx")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic panel")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "goldgate-panel")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args.scratch.mkdir(parents=True, exist_ok=True)
    result = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scoring.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.no_doc:
        write_section(DOC, START, END, render(result))


if __name__ == "__main__":
    main()
