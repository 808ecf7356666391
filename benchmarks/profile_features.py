"""Profile goldgate's features step on a panel workspace, and compare it with an earlier commit's code.

    .venv/bin/python benchmarks/panel.py --sizes 10000000 --repeat 1 --impls goldgate_fx --no-doc   # workspace
    .venv/bin/python benchmarks/profile_features.py profile --workspace /tmp/goldgate-panel/ws_10000000
    .venv/bin/python benchmarks/profile_features.py compare --workspace /tmp/goldgate-panel/ws_10000000 \\
        --baseline 4a88d00 --repeat 3

``profile`` runs the step once under cProfile while a thread samples the resident set every 0.2 s (DuckDB's
work shows up inside the Python calls that trigger it), then profiles the feature query alone with DuckDB's JSON
profiler (operator timings, summed over threads). Writes ``benchmarks/results/profile-<impl>.txt``.

``compare`` times the step body (read gold, build the fx feature set, ``Lake.merge`` into a new table) with
``goldgate/features.py`` and ``goldgate/lake.py`` taken from ``--baseline`` (``git show``) against the working
tree (the fx feature set is the declarative engine's since fx became YAML; a baseline whose ``features.py`` still
has the hand-written ``build_features`` runs that, fed ``benchmarks/fx_reference.py``'s spec), each run in a fresh
process, alternating, and profiles both feature queries' operators. Writes
``benchmarks/results/features-profile.json`` and the ``features-profile`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from panel import FX_FEATURES, GOLD, REF_TABLE, goldgate_context, machine, peak_rss_mb, rss_mb  # noqa: E402
from report import load_text, start_result  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = HERE / "results"
START, END = "<!-- features-profile:start -->", "<!-- features-profile:end -->"
PATCHED = ("features", "lake")


class Sampler(threading.Thread):
    """Resident set every ``interval`` seconds, until stopped (bounded by ``limit`` samples)."""

    def __init__(self, interval: float = 0.2, limit: int = 100_000) -> None:
        super().__init__(daemon=True)
        self.interval, self.limit = interval, limit
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.perf_counter()
        while not self.stop.is_set() and len(self.samples) < self.limit:
            self.samples.append((time.perf_counter() - started, rss_mb()))
            self.stop.wait(self.interval)


def use_commit(commit: str) -> None:
    """Overlay goldgate.features and goldgate.lake with their source at ``commit``.

    The old source runs in the current modules' namespaces: its definitions replace today's, names it lacks stay
    (so the rest of goldgate still imports), and code that looks them up at call time gets the old ones.
    """
    import importlib

    for name in PATCHED:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:src/goldgate/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        module = importlib.import_module(f"goldgate.{name}")
        origin = f"{commit}:src/goldgate/{name}.py"
        exec(compile(source, origin, "exec"), module.__dict__)  # the repository's own code
        module.__dict__["__origin__"] = origin


def clear(workspace: Path, table: str) -> None:
    layer, name = table.split(".")
    shutil.rmtree(workspace / "lake" / layer / name, ignore_errors=True)
    shutil.rmtree(workspace / ".duckdb_tmp", ignore_errors=True)


def feature_query(ctx: Any, impl: str) -> Any:
    """The fx feature set (the engine's, or a baseline's hand-written ``build_features``), or the reference."""
    from panel import reference_ibis

    from goldgate import features

    gold = ctx.lake.read(GOLD, ctx.lake.version(GOLD))
    if impl != "goldgate_fx":
        return reference_ibis(gold)
    hand_written = getattr(features, "build_features", None)  # a --baseline from before fx moved onto the engine
    if hand_written is not None:
        from fx_reference import FxSpec, FxTarget

        versus = next(d for d in ctx.usecase.features.derive if d.op == "versus")
        return hand_written(gold, FxSpec(cross_reference=str(versus.entity)), FxTarget())
    return features.build_feature_table(gold, ctx.usecase)


def step(ctx: Any, impl: str) -> int:
    """The features step's body: read gold at its version, build, merge into a new table."""
    version = ctx.lake.version(GOLD)
    table = FX_FEATURES if impl == "goldgate_fx" else REF_TABLE
    merged = ctx.lake.merge(table, feature_query(ctx, impl), keys=["currency", "date"], inputs={GOLD: version})
    return int(merged.inserted)


def operators(ctx: Any, impl: str, out: Path) -> list[dict[str, Any]]:
    """DuckDB operator timings (seconds summed over threads) of the feature query, materialized as a merge would."""
    import ibis

    sql = str(ibis.to_sql(feature_query(ctx, impl), dialect="duckdb"))
    con = ctx.lake.con
    con.raw_sql("SET enable_profiling = 'json'")
    con.raw_sql(f"SET profiling_output = '{out}'")
    con.raw_sql("SET profiling_mode = 'standard'")
    con.raw_sql(f"CREATE TEMP TABLE _profiled AS {sql}")
    con.raw_sql("SET enable_profiling = 'no_output'")
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        name = node.get("operator_type") or node.get("operator_name")
        if name:
            extra = node.get("extra_info") or {}
            detail = extra.get("Projections") or extra.get("Conditions") or extra.get("Aggregates") or ""
            if isinstance(detail, list):
                detail = "; ".join(str(d) for d in detail)
            found.append(
                {
                    "operator": name,
                    "seconds": float(node.get("operator_timing", 0.0)),
                    "rows": node.get("operator_cardinality"),
                    "detail": str(detail)[:160],
                }
            )
        for child in node.get("children", []):
            walk(child)

    walk(json.loads(out.read_text()))
    return sorted(found, key=lambda o: -o["seconds"])


def child(args: argparse.Namespace) -> None:  # pragma: no cover - runs in the subprocess
    import resource

    if args.commit:
        use_commit(args.commit)
    import goldgate.pipeline  # noqa: F401  start-up imports are not the step's cost

    table = FX_FEATURES if args.impl == "goldgate_fx" else REF_TABLE
    clear(args.workspace, table)
    ctx = goldgate_context(args.workspace, args.memory_limit)
    ctx.lake  # noqa: B018  connection opened before the clock starts
    out: dict[str, Any] = {"code": sys.modules["goldgate.lake"].__dict__.get("__origin__", "working tree")}
    if args.what == "operators":
        out["operators"] = operators(ctx, args.impl, args.workspace / f"profile-{os.getpid()}.json")
    else:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        out["rows"] = step(ctx, args.impl)
        out["seconds"] = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu_seconds"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        out["peak_rss_mb"] = peak_rss_mb()
    clear(args.workspace, table)
    print("RESULT " + json.dumps(out), flush=True)


def run_child(args: argparse.Namespace, what: str, commit: str | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "child", "--what", what, "--impl", args.impl, "--workspace", str(args.workspace)]
    cmd += ["--commit", commit] if commit else []
    cmd += ["--memory-limit", args.memory_limit] if args.memory_limit else []
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} ({commit or 'working tree'}) failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT "))
    return {**json.loads(line.removeprefix("RESULT ")), "load_1min": load}


def compare(args: argparse.Namespace) -> dict[str, Any]:
    variants = {"before": args.baseline, "after": None}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    result = start_result("features-profile", machine(), impl=args.impl, baseline=args.baseline, workspace_rows=None)
    for _ in range(args.repeat):
        for key, commit in variants.items():
            run = run_child(args, "time", commit)
            runs[key].append(run)
            print(
                f"{key:<6} {run['seconds']:7.2f} s  cpu {run['cpu_seconds']:7.2f} s  {run['peak_rss_mb']:6.0f} MB  "
                f"(load {run['load_1min']:.2f})",
                flush=True,
            )
    result["workspace_rows"] = runs["after"][-1]["rows"]
    for key, commit in variants.items():
        done = runs[key]
        result[key] = {
            "code": f"{commit}" if commit else "working tree",
            "seconds": statistics.median(r["seconds"] for r in done),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in done),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in done),
            "runs": [round(r["seconds"], 2) for r in done],
            "load_1min": [round(r["load_1min"], 2) for r in done],
            "operators": run_child(args, "operators", commit)["operators"][:8],
        }
    result["load_average_end"] = os.getloadavg()
    return result


def render(r: dict[str, Any]) -> str:
    b, a = r["before"], r["after"]
    lines = [
        START,
        "## Profile of the features step, before and after",
        "",
        f"Measured {r['started_utc'].replace('T', ' ')[:16]} UTC with `.venv/bin/python benchmarks/profile_features.py "
        f"compare --baseline {r['baseline']}` on {r['machine']['cpus']} CPUs (load average at start "
        f"{load_text(r['load_average_start'])}, at end {load_text(r['load_average_end'])}): "
        "the features step's body (read "
        f"gold, build the fx features, merge into a new Delta table) on the {r['workspace_rows']:,}-row panel of "
        "the panel benchmark, with `features.py` and `lake.py` as of the baseline commit ('before') and as now "
        f"('after'), each run in a fresh process, alternating, median of {len(a['runs'])}.",
        "",
        "| code | seconds (runs) | CPU seconds | peak RSS MiB |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (("before", f"before ({r['baseline']})"), ("after", "after")):
        v = r[key]
        runs = "/".join(f"{x:.1f}" for x in v["runs"])
        lines.append(f"| {label} | {v['seconds']:.1f} ({runs}) | {v['cpu_seconds']:.1f} | {v['peak_rss_mb']:,.0f} |")
    lines += [
        "",
        f"Speed-up {b['seconds'] / a['seconds']:.1f}× in wall time, {b['cpu_seconds'] / a['cpu_seconds']:.1f}× in CPU "
        f"time; peak memory {b['peak_rss_mb'] / a['peak_rss_mb']:.1f}× lower.",
        "",
        "DuckDB's costliest operators in the feature query (JSON profiler, one run each, seconds summed over "
        "threads, the query materialized into a temporary table; on a shared machine single-run operator times vary "
        "by tens of percent):",
        "",
        "| code | operator | seconds | what |",
        "|---|---|---:|---|",
    ]
    for key in ("before", "after"):
        for op in r[key]["operators"][:5]:
            what = op["detail"].replace("|", "/").replace("\n", " ")[:90]
            lines.append(f"| {key} | {op['operator']} | {op['seconds']:.1f} | {what} |")
    lines += [
        "",
        "What changed: (1) the forward target and its end date are computed in the same window pass as the lags and "
        "trailing volatilities (same partition and order), instead of a second window pass over the returns and a "
        "join of two 10M-row relations on (currency, date); (2) the per-date context (the reference currency's "
        "return and the cross-sectional mean volatility) is an aggregate of a narrow three-column projection joined "
        "back on the date alone (a few thousand rows), instead of a window partitioned by date that re-sorted every "
        "feature column; its mean is summed in exact decimal arithmetic, so reruns stay bit-identical without an "
        "ordered aggregate; (3) the table is no longer sorted before it is written (every reader sorts where order "
        "matters); (4) `Lake.merge` into a new table no longer materializes the query in DuckDB and streams it "
        "through Python into delta-rs' writer (one thread): DuckDB's own Parquet writer writes the data files in "
        "parallel, out of core, into the table's folder, the keys are checked on those files (a 64-bit hash per "
        "key, the exact check only on a hash collision), and delta-rs commits version 0 listing them — a failed "
        "check removes the files, a crash before the commit leaves files no version lists. Streams that remain "
        "(`Lake.write` of an expression, merges into an existing table) cast each Arrow batch to the declared "
        "schema: Ibis' DuckDB stream declared `month` as int32 while DuckDB sent BIGINT, which a consumer reading "
        "the declared type misread. Raw figures: `benchmarks/results/features-profile.json`; the cProfile, RSS "
        "timeline and operator profile of one run: `benchmarks/results/profile-goldgate_fx.txt`.",
        END,
    ]
    return "\n".join(lines)


def profile(args: argparse.Namespace) -> None:
    import goldgate.pipeline  # noqa: F401  imports are start-up cost

    table = FX_FEATURES if args.impl == "goldgate_fx" else REF_TABLE
    clear(args.workspace, table)
    ctx = goldgate_context(args.workspace, args.memory_limit)
    ctx.lake  # noqa: B018  connection opened before the clock starts
    sampler = Sampler()
    sampler.start()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    rows = step(ctx, args.impl)
    profiler.disable()
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join(timeout=5)
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(args.top)
    peak = peak_rss_mb()  # before the operator profile, which materializes the whole result
    clear(args.workspace, table)
    ops = operators(goldgate_context(args.workspace, args.memory_limit), args.impl, args.workspace / "profile.json")
    timeline = sampler.samples
    every = max(1, len(timeline) // 40)
    lines = [
        f"{args.impl}: {rows:,} rows in {seconds:.2f} s, peak RSS {peak:,.0f} MiB "
        f"(DuckDB memory limit {ctx.settings.duckdb_memory_limit}; load average {load_text(os.getloadavg())})",
        "",
        "RSS timeline (s:MB): " + ", ".join(f"{t:.1f}:{m:.0f}" for t, m in timeline[::every]),
        "",
        buf.getvalue(),
        "DuckDB operators of the feature query (seconds summed over threads):",
        *(f"  {o['operator']:<22} {o['seconds']:8.2f} s  {o['rows']!s:>12} rows  {o['detail']}" for o in ops[:12]),
    ]
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"profile-{args.impl}.txt").write_text(report + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["profile", "compare", "child"])
    parser.add_argument("--workspace", type=Path, default=Path("."))
    parser.add_argument("--impl", choices=["goldgate_fx", "goldgate_ref"], default="goldgate_fx")
    parser.add_argument("--memory-limit", default=None)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--baseline", default="4a88d00", help="commit whose features.py and lake.py are 'before'")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--render", action="store_true", help="compare: only rewrite the doc section from the JSON")
    parser.add_argument("--what", choices=["time", "operators"], default="time", help=argparse.SUPPRESS)
    parser.add_argument("--commit", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workspace = args.workspace.resolve()
    if args.command == "child":
        child(args)
    elif args.command == "profile":
        profile(args)
    else:
        saved = RESULTS / "features-profile.json"
        if args.render:
            result = json.loads(saved.read_text())
        else:
            result = compare(args)
            RESULTS.mkdir(exist_ok=True)
            saved.write_text(json.dumps(result, indent=2, default=str) + "\n")
        if not args.no_doc:
            sys.path.insert(0, str(HERE))
            from report import write_section

            write_section(DOC, START, END, render(result))


if __name__ == "__main__":
    main()
