"""Benchmark: goldgate's ingest -> silver -> gold -> features on a synthetic ECB-format file, per engine and size.

    .venv/bin/python benchmarks/layers.py --sizes 100000 1000000 10000000 --repeat 3 [--engines duckdb spark]
        [--spark-sizes 100000 1000000]

Every run is a fresh subprocess on a fresh workspace (so peak memory is that run's own), engines alternating,
repeated; medians. Writes ``benchmarks/results/layers.json`` and the layers section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from panel import machine  # benchmarks/ is on sys.path when a benchmark runs as a script
from report import load_text, save_result, start_result

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STEPS = ["ingest", "silver", "gold", "features"]


def bench_usecase(workspace: Path, currencies: list[str] | None = None) -> Path:
    from importlib import resources

    data = yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text())
    data["name"] = "fx_bench"
    # The synthetic file's first currency is the cross-rate reference (the versus op of fx's feature DSL).
    data["features"]["derive"] = [
        {**d, "entity": "AAA"} if d["op"] == "versus" else d for d in data["features"]["derive"]
    ]
    path = workspace / "fx_bench.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def source_file(rows: int, scratch: Path) -> Path:
    """The synthetic ECB-format file of ``rows`` long rows (5,000 days from 5M rows on), written once."""
    from synthetic import write_ecb_file

    days = 5000 if rows >= 5_000_000 else max(rows // 200, 100)
    source = scratch / f"ecb_{rows}.csv"
    if not source.exists():
        write_ecb_file(source, rows // days, days)
    return source


CHILD = """
import json, sys, time, resource
from goldgate.context import Context
from goldgate.dag import get_step
from goldgate.runner import run_step
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase
import goldgate.pipeline  # start-up imports are not the steps' cost
workspace, usecase, source, engine, steps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
ctx = Context(load_settings(workspace=workspace, engine=engine), load_usecase(usecase), source=source)
ctx.lake  # opens the engine (for Spark: starts the JVM) before the clock
out = {}
for name in steps:
    t = time.perf_counter(); run_step(ctx, get_step(name)); out[name] = time.perf_counter() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["rows"] = ctx.lake.read(ctx.usecase.tables.features).count().to_pyarrow().as_py()
print("RESULT " + json.dumps(out))
"""


def run_once(rows: int, scratch: Path, engine: str) -> dict[str, Any]:
    """The four steps in a fresh child process on a fresh workspace: seconds per step and peak memory.

    Peak memory is that of the child's whole process tree (for Spark: the JVM and its Python workers too),
    sampled every 0.1 s, next to the Python process's own ``ru_maxrss``.
    """
    from spark import TreePeak

    source = source_file(rows, scratch)
    workspace = Path(tempfile.mkdtemp(dir=scratch))
    usecase = bench_usecase(workspace)
    cmd = [sys.executable, "-c", CHILD, str(workspace), str(usecase), str(source), engine, *STEPS]
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = TreePeak(proc.pid)
        stdout, stderr = proc.communicate(timeout=3600)
        tree_mb = peak.stop()
    finally:
        shutil.rmtree(workspace, ignore_errors=True)  # a 10M-row workspace holds about 0.5 GB of tables
    if proc.returncode != 0:
        raise RuntimeError(f"layers child ({engine}, {rows:,} rows) exited {proc.returncode}:\n{stderr[-3000:]}")
    line = next(x for x in reversed(stdout.splitlines()) if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["wall"] = time.perf_counter() - started
    result["tree_peak_mb"] = max(tree_mb, result["peak_rss_mb"])
    return result


def summarize(engine: str, rows: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats of one engine and size."""
    steps = {s: statistics.median(r[s] for r in runs) for s in STEPS}
    total = sum(steps.values())
    return {
        "engine": engine,
        "rows": rows,
        "feature_rows": runs[0]["rows"],
        "repeat": len(runs),
        "seconds": steps,
        "total_seconds": total,
        "runs_total_seconds": [sum(r[s] for s in STEPS) for r in runs],
        "rows_per_second": rows / total,
        "peak_rss_mb": statistics.median(r["tree_peak_mb"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--engines", nargs="+", choices=["duckdb", "spark"], default=["duckdb"])
    parser.add_argument("--spark-sizes", type=int, nargs="+", default=None, help="sizes for spark (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "goldgate-bench")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    result = start_result("layers", machine(), repeat=args.repeat, engines=args.engines, sizes=[])
    for size in args.sizes:
        engines = [e for e in args.engines if e != "spark" or args.spark_sizes is None or size in args.spark_sizes]
        runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
        for _ in range(args.repeat):
            for engine in engines:  # engines alternate, so both see the same machine
                runs[engine].append(run_once(size, args.scratch, engine))
        for engine in engines:
            result["sizes"].append(summarize(engine, size, runs[engine]))
            print(json.dumps(result["sizes"][-1]), flush=True)
    save_result(result, "layers.json", render, START, END)


START, END = "<!-- layers:start -->", "<!-- layers:end -->"
DOC = HERE.parent / "docs" / "benchmarks.md"


def render(result: dict[str, Any]) -> str:
    """The Markdown section: seconds per step, rows/s and peak memory per engine and size."""
    lines = [
        START,
        "## Data layers: ingest → silver → gold → features",
        "",
        f"Measured {result['started_utc'].replace('T', ' ')[:16]} UTC with `.venv/bin/python benchmarks/layers.py` "
        f"on {result['machine']['cpus']} CPUs (load average at start {load_text(result['load_average_start'])}, at "
        f"end {load_text(result['load_average_end'])}); a synthetic ECB-format wide file (random-walk rates), "
        "through goldgate's four data steps on each engine, every run in a fresh process on a fresh workspace, "
        f"engines alternating, median of {result['repeat']} runs. Rows are long rows (currency x day); the ingest "
        "reads the CSV into bronze, silver melts and types it and applies the use case's expectations, gold derives "
        "the returns, features builds the feature table. The engine (for Spark `local[2]`: the JVM) is started "
        "before the clock. Peak memory is the child's whole process tree (for Spark: Python, the JVM and its "
        "Python workers), sampled every 0.1 s.",
        "",
        "| rows | engine | ingest s | silver s | gold s | features s | total s (runs) | rows/s | peak MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["sizes"]:
        s = r["seconds"]
        every = "/".join(f"{t:.1f}" for t in r["runs_total_seconds"])
        lines.append(
            f"| {r['rows']:,} | {r['engine']} | {s['ingest']:.2f} | {s['silver']:.2f} | {s['gold']:.2f} "
            f"| {s['features']:.2f} | {r['total_seconds']:.2f} ({every}) | {r['rows_per_second']:,.0f} "
            f"| {r['peak_rss_mb']:,.0f} |"
        )
    lines += ["", "Raw figures: `benchmarks/results/layers.json`.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
