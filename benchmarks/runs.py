"""Benchmark: the whole loop, ``goldgate run``, cold (fresh workspace) and warm (the same workspace again).

    .venv/bin/python benchmarks/runs.py [--usecases fx crm] [--root DIR] [--crm-rows 8800] [--repeat 3]

Per use case and repeat: a fresh workspace under ``--root``; ``goldgate run --usecase U --workspace W
--summary-json S`` once (cold: every table and model is created) and once more (warm: the same source, so ingest
finds the batch already there and every merge finds nothing changed). Wall seconds and the peak RSS of the process
(``/usr/bin/time``'s maximum resident set size), plus goldgate's own per-step seconds from the summary; medians over
the repeats. The crm use case runs on a generated export (``goldgate generate crm``).

Writes ``benchmarks/results/runs.json`` and the ``runs`` section of docs/benchmarks.md; the fx workspace is kept
(``--root``/fx) so ``benchmarks/scoring.py --workspace`` can reuse its registered model.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from panel import machine  # noqa: E402
from report import load_text, save_result, start_result  # noqa: E402

BIN = Path(sys.executable).parent
DOC = HERE.parent / "docs" / "benchmarks.md"
RESULTS = HERE / "results"
START, END = "<!-- runs:start -->", "<!-- runs:end -->"
TIMEOUT = 1800


def timed(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` under /usr/bin/time; wall seconds, peak RSS (MB) and the exit code."""
    stats = log.with_suffix(".time")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", str(stats), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
    wall = time.perf_counter() - started
    _elapsed, max_kb = stats.read_text().split()[-2:]
    return {"seconds": wall, "peak_rss_mb": int(max_kb) / 1024, "exit_code": proc.returncode, "load_1min": load}


def run_usecase(usecase: str, root: Path, source: Path | None, repeat: int) -> dict[str, Any]:
    """Cold then warm, ``repeat`` times, each pair on a fresh workspace; every run and the medians."""
    runs = [run_pair(usecase, root, source) for _ in range(repeat)]
    entry: dict[str, Any] = {"usecase": usecase, "source": str(source) if source else None, "repeat": repeat}
    for phase in ("cold", "warm"):
        phase_runs = [r[phase] for r in runs]
        median_run = sorted(phase_runs, key=lambda r: r["seconds"])[len(phase_runs) // 2]
        entry[phase] = {**median_run, "runs_seconds": [r["seconds"] for r in phase_runs]}
        entry[phase]["peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in phase_runs)
    return entry


def run_pair(usecase: str, root: Path, source: Path | None) -> dict[str, Any]:
    """One cold and one warm run on a fresh workspace (kept at ``root/usecase`` for scoring.py to reuse)."""
    workspace = root / usecase
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    entry: dict[str, Any] = {}
    for phase in ("cold", "warm"):
        summary = workspace / f"summary-{phase}.json"
        cmd = [str(BIN / "goldgate"), "run", "--usecase", usecase, "--workspace", str(workspace)]
        cmd += ["--summary-json", str(summary)] + (["--source", str(source)] if source else [])
        result = timed(cmd, workspace / f"run-{phase}.log")
        if result["exit_code"] != 0:
            tail = (workspace / f"run-{phase}.log").read_text()[-2000:]
            raise RuntimeError(f"goldgate run --usecase {usecase} ({phase}) exited {result['exit_code']}:\n{tail}")
        facts = json.loads(summary.read_text())
        result["steps"] = facts.get("seconds", {})
        result["tables"] = {k: v.get("rows") for k, v in facts.get("tables", {}).items()}
        result["gate"] = (facts.get("gate") or {}).get("decision")
        result["predictions_rows"] = facts.get("predictions_rows")
        entry[phase] = result
        print(
            f"{usecase:<4} {phase:<5} {result['seconds']:7.1f} s {result['peak_rss_mb']:7.0f} MB "
            f"(load {result['load_1min']:.2f}) gate {result['gate']}",
            flush=True,
        )
    return entry


def generate_crm(root: Path, rows: int, seed: int) -> Path:
    out = root / "crm-source"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(BIN / "goldgate"), "generate", "crm", "--rows", str(rows), "--seed", str(seed), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return out


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        START,
        "## Full runs: `goldgate run`, cold and warm",
        "",
        f"Measured {r['started_utc'].replace('T', ' ')[:16]} UTC with `.venv/bin/python benchmarks/runs.py` on "
        f"{m['cpus']} CPUs (load average at start {load_text(r['load_average_start'])}, at end "
        f"{load_text(r['load_average_end'])}). Cold: a fresh workspace (every table, run and model created); warm: "
        "the same command again on that workspace (the batch is already ingested, merges find nothing changed, "
        "training, the walk-forward evaluation and the gate run again). Seconds are the whole command's wall time, "
        "including interpreter start-up; peak RSS is the process's maximum resident set. Each pair ran "
        f"{r['usecases'][0]['repeat']} times on a fresh workspace: the median run, its steps, and every run's "
        "seconds.",
        "",
        "| use case | run | seconds (runs) | peak RSS MB | slowest steps (s) | gate |",
        "|---|---|---:|---:|---|---|",
    ]
    for entry in r["usecases"]:
        for phase in ("cold", "warm"):
            p = entry[phase]
            steps = {k: v for k, v in p["steps"].items() if k != "total"}
            slow = ", ".join(f"{k} {v:.1f}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:3])
            every = "/".join(f"{s:.1f}" for s in p["runs_seconds"])
            lines.append(
                f"| {entry['usecase']} | {phase} | {p['seconds']:.1f} ({every}) | {p['peak_rss_mb']:,.0f} | {slow} "
                f"| {p['gate']} |"
            )
    lines += ["", "Raw figures, with every step's seconds: `benchmarks/results/runs.json`.", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--usecases", nargs="+", default=["fx", "crm"])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "goldgate-runs")
    parser.add_argument("--crm-rows", type=int, default=8800)
    parser.add_argument("--crm-seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    result = start_result("runs", machine(), usecases=[])
    for usecase in args.usecases:
        source = generate_crm(args.root, args.crm_rows, args.crm_seed) if usecase == "crm" else None
        result["usecases"].append(run_usecase(usecase, args.root, source, args.repeat))
    save_result(result, "runs.json", None if args.no_doc else render, START, END)


if __name__ == "__main__":
    main()
