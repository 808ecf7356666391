"""Benchmark: goldgate's ingest -> silver -> gold -> features on a synthetic long table, one process per size.

Each size runs in a fresh subprocess (so peak RSS is that run's own), repeated; the median is reported.
Usage: .venv/bin/python benchmarks/layers.py --sizes 100000 1000000 10000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from report import write_section  # benchmarks/ is on sys.path when a benchmark runs as a script

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STEPS = ["ingest", "silver", "gold", "features"]


def bench_usecase(workspace: Path, currencies: list[str] | None = None) -> Path:
    from importlib import resources

    data = yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text())
    data["name"] = "fx_bench"
    data["features"]["cross_reference"] = "AAA"
    path = workspace / "fx_bench.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_once(rows: int, scratch: Path) -> dict[str, float]:
    """Generate the file, then time each step in a child process; returns seconds per step and peak RSS."""
    sys.path.insert(0, str(HERE))
    from synthetic import write_ecb_file

    days = 5000 if rows >= 5_000_000 else max(rows // 200, 100)
    currencies = rows // days
    source = scratch / f"ecb_{rows}.csv"
    if not source.exists():
        write_ecb_file(source, currencies, days)
    workspace = Path(tempfile.mkdtemp(dir=scratch))
    usecase = bench_usecase(workspace)
    child = (
        "import json, sys, time, resource\n"
        "from goldgate.context import Context\nfrom goldgate.dag import get_step\n"
        "from goldgate.runner import run_step\n"
        "from goldgate.settings import load_settings\nfrom goldgate.usecase import load_usecase\n"
        "import goldgate.pipeline  # start-up imports are not the steps' cost\n"
        f"ctx = Context(load_settings(workspace={str(workspace)!r}), load_usecase({str(usecase)!r}), "
        f"source={str(source)!r})\n"
        "ctx.lake\n"
        "out = {}\n"
        f"for name in {STEPS!r}:\n"
        "    t = time.perf_counter(); run_step(ctx, get_step(name)); out[name] = time.perf_counter() - t\n"
        "out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=3600)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)  # a 10M-row workspace holds about 0.5 GB of tables
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["wall"] = time.perf_counter() - started
    result["rows"] = currencies * days
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "goldgate-bench")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    summary = []
    for size in args.sizes:
        runs = [run_once(size, args.scratch) for _ in range(args.repeat)]
        steps = {s: statistics.median(r[s] for r in runs) for s in STEPS}
        total = sum(steps.values())
        summary.append(
            {
                "rows": runs[0]["rows"],
                "repeat": args.repeat,
                "seconds": steps,
                "total_seconds": total,
                "rows_per_second": runs[0]["rows"] / total,
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            }
        )
        print(json.dumps(summary[-1]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "layers.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_section(DOC, START, END, render(summary))


START, END = "<!-- layers:start -->", "<!-- layers:end -->"
LOAD_AT_START = ", ".join(f"{x:.2f}" for x in os.getloadavg())
DOC = HERE.parent / "docs" / "benchmarks.md"


def render(summary: list[dict[str, Any]]) -> str:
    """The Markdown section: seconds per step, rows/s and peak RSS per size."""
    lines = [
        START,
        "## Data layers: ingest → silver → gold → features",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `.venv/bin/python benchmarks/layers.py` "
        f"on 2 CPUs (load average at start {LOAD_AT_START}, at end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}); a synthetic ECB-format wide file (random-walk rates), "
        f"each size in a fresh process, median of {summary[0]['repeat']} runs. Rows are long rows (currency x day); "
        "the ingest reads the CSV, the silver step applies the use case's expectations.",
        "",
        "| rows | ingest s | silver s | gold s | features s | total s | rows/s | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        s = r["seconds"]
        lines.append(
            f"| {r['rows']:,} | {s['ingest']:.2f} | {s['silver']:.2f} | {s['gold']:.2f} | {s['features']:.2f} "
            f"| {r['total_seconds']:.2f} | {r['rows_per_second']:,.0f} | {r['peak_rss_mb']:,.0f} |"
        )
    lines += ["", "Raw figures: `benchmarks/results/layers.json`.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
