"""Benchmark: goldgate's features step on DuckDB vs Spark (local[2]), side by side in one run.

    .venv/bin/python benchmarks/spark.py                                  # fx (bundled data) + 10M panel, 3 repeats
    .venv/bin/python benchmarks/spark.py --datasets fx --repeat 3 --panel-repeat 1

Datasets: ``fx``, the bundled ECB history (41 currencies, 1999 to the file's release); ``panel``, a synthetic
ECB-format file of ``--panel-currencies`` x 5,000 business days (2,000 x 5,000 = 10M long rows, random-walk rates,
``benchmarks/synthetic.py``). Each dataset goes through ingest -> silver -> gold once on DuckDB (untimed); the gold
table is then copied into the Spark lake (versioned Parquet snapshots), so both engines start from the same rows.

Timed: ``goldgate.pipeline.features`` (read gold, compute the features and the target, merge into the feature
table), in a fresh child process per engine and repeat, from a workspace without a feature table. The child opens
the lake before the clock starts (for Spark that includes the JVM start, reported separately). Peak RSS is that of
the whole process tree (the Python process plus, on Spark, the JVM and its Python workers), sampled every 0.1 s
from /proc. After the runs, the two feature tables are compared on a sample of entities.

Writes ``benchmarks/results/spark.json`` and the ``spark`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from report import start_result, write_section  # benchmarks/ is on sys.path when a benchmark runs as a script

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "benchmarks.md"
START, END = "<!-- spark:start -->", "<!-- spark:end -->"
ENGINES = ("duckdb", "spark")
PREPARE_STEPS = ("ingest", "silver", "gold")
PANEL_DAYS = 5000
CHILD_TIMEOUT = 3600
SAMPLE_SECONDS = 0.1
DIFF_TOLERANCE = 1e-9  # larger differences between the engines' outputs are named in the doc


# ---------------------------------------------------------------------------------------------------- process tree


def _children_of() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc/<pid>/stat (field 4 is the parent's pid)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while the tree was read
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants now, in MB."""
    tree, pending, total = _children_of(), [root], 0
    while pending:
        pid = pending.pop()
        total += _rss_kb(pid)
        pending.extend(tree.get(pid, []))
    return total / 1024


class TreePeak:
    """Samples a process tree's resident memory in a thread until stopped; keeps the largest sum seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


# ---------------------------------------------------------------------------------------------------- preparation


def write_usecase(folder: Path, dataset: str) -> Path:
    """The bundled fx use case (for the panel: renamed, with the first synthetic code as the cross reference)."""
    from importlib import resources

    data = yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text())
    data["name"] = f"fx_spark_bench_{dataset}"
    if dataset == "panel":
        data["features"]["cross_reference"] = "AAA"
    path = folder / "usecase.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def prepare(dataset: str, scratch: Path, panel_currencies: int) -> dict[str, Any]:
    """Per engine, a workspace holding the dataset's gold table and no feature table; returns the paths."""
    folder = scratch / dataset
    ready = folder / "ready.json"
    if ready.exists():
        return dict(json.loads(ready.read_text()))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    usecase = write_usecase(folder, dataset)
    source: Path | None = None
    if dataset == "panel":
        sys.path.insert(0, str(HERE))
        from synthetic import write_ecb_file

        source = folder / "ecb_panel.csv"
        write_ecb_file(source, panel_currencies, PANEL_DAYS)
    info = {"usecase": str(usecase), "source": str(source) if source else None}
    info["workspaces"] = {engine: str(folder / engine) for engine in ENGINES}
    started = time.perf_counter()
    _run_child(["prepare", "--info", json.dumps(info)])
    info["prepare_seconds"] = time.perf_counter() - started
    ready.write_text(json.dumps(info))
    return info


def child_prepare(info: dict[str, Any]) -> None:  # pragma: no cover - runs in the subprocess
    """DuckDB: ingest -> silver -> gold. Spark: the same gold rows copied into its lake."""
    from deltalake import DeltaTable

    from goldgate.context import Context
    from goldgate.dag import get_step
    from goldgate.runner import run_step
    from goldgate.settings import Settings
    from goldgate.usecase import load_usecase

    uc = load_usecase(info["usecase"])
    duck = Context(Settings(workspace=info["workspaces"]["duckdb"]), uc, source=info["source"])
    for name in PREPARE_STEPS:
        run_step(duck, get_step(name))
    gold_files = [u.removeprefix("file://") for u in DeltaTable(str(duck.lake.path(uc.tables.gold))).file_uris()]
    spark = Context(Settings(workspace=info["workspaces"]["spark"], engine="spark"), uc)
    lake = spark.lake
    view = "bench_gold_source"
    lake.session.read.parquet(*gold_files).createOrReplaceTempView(view)
    lake.write(uc.tables.gold, lake.con.table(view))
    print("RESULT " + json.dumps({"gold_rows": lake.rows(uc.tables.gold)}), flush=True)


# ---------------------------------------------------------------------------------------------------- timed runs


def child_features(info: dict[str, Any], engine: str) -> None:  # pragma: no cover - runs in the subprocess
    """One timed features step; prints ``RESULT {json}``."""
    import goldgate.pipeline  # noqa: F401  start-up imports are not the step's cost
    from goldgate.context import Context
    from goldgate.dag import get_step
    from goldgate.runner import run_step
    from goldgate.settings import Settings
    from goldgate.usecase import load_usecase

    settings = Settings(workspace=info["workspaces"][engine], engine=engine)
    ctx = Context(settings, load_usecase(info["usecase"]))
    opened = time.perf_counter()
    ctx.lake  # noqa: B018  connects (Spark: starts the JVM) before the clock starts
    opened = time.perf_counter() - opened
    started = time.perf_counter()
    result = run_step(ctx, get_step("features"))
    seconds = time.perf_counter() - started
    out = {"seconds": seconds, "open_seconds": opened, "rows": int(result["inserted"])}
    print("RESULT " + json.dumps(out), flush=True)


def _run_child(args: list[str]) -> dict[str, Any]:
    """Run this script as a child with ``args``; returns its RESULT and the process tree's peak RSS."""
    cmd = [sys.executable, __file__, *args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = TreePeak(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=CHILD_TIMEOUT)
    finally:
        peak_mb = peak.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed ({proc.returncode}):\n{stderr[-3000:]}")
    line = next(x for x in reversed(stdout.splitlines()) if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["process_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = peak_mb
    return result


def clear_features(info: dict[str, Any], engine: str) -> None:
    """Remove the feature table (and DuckDB's spill) so every repeat builds it from scratch."""
    from goldgate.usecase import load_usecase

    layer, table = load_usecase(info["usecase"]).tables.features.split(".")
    workspace = Path(info["workspaces"][engine])
    shutil.rmtree(workspace / "lake" / layer / table, ignore_errors=True)
    shutil.rmtree(workspace / ".duckdb_tmp", ignore_errors=True)


def time_features(info: dict[str, Any], repeat: int) -> dict[str, Any]:
    """Engines interleaved per repeat (duckdb, spark, duckdb, ...) so a change in machine load hits both."""
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in ENGINES}
    for _ in range(repeat):
        for engine in ENGINES:
            clear_features(info, engine)
            load = os.getloadavg()[0]
            run = _run_child(["features", "--info", json.dumps(info), "--engine", engine])
            run["load_1min_before"] = load
            runs[engine].append(run)
            print(f"  {engine}: {run['seconds']:.2f} s, peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    out = {}
    for engine, done in runs.items():
        out[engine] = {
            "runs": done,
            "seconds": statistics.median(r["seconds"] for r in done),
            "open_seconds": statistics.median(r["open_seconds"] for r in done),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in done),
            "rows": done[0]["rows"],
        }
    return out


# ---------------------------------------------------------------------------------------------------- verification


def _table_files(info: dict[str, Any], engine: str, name: str) -> list[str]:
    """The Parquet files of the current snapshot of table ``name`` in ``engine``'s lake."""
    from deltalake import DeltaTable

    layer, table = name.split(".")
    folder = Path(info["workspaces"][engine]) / "lake" / layer / table
    if engine == "duckdb":
        return [u.removeprefix("file://") for u in DeltaTable(str(folder)).file_uris()]
    commit = json.loads(sorted((folder / "_goldgate_log").glob("*.json"))[-1].read_text())
    return [str(folder / f) for f in commit["files"]]


def _rows_of(files: list[str], column: str, values: list[str], order: list[str]) -> Any:
    """The rows whose ``column`` is in ``values``, read with pyarrow (independent of both engines), sorted."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    data = pq.ParquetDataset(files).read()
    data = data.filter(pc.is_in(data[column], value_set=pa.array(values)))
    return data.to_pandas().sort_values(order).reset_index(drop=True)


def compare(info: dict[str, Any]) -> dict[str, Any]:
    """Largest absolute difference between the engines' feature values on three entities (NULLs must agree)."""
    import numpy as np
    import pyarrow.parquet as pq

    from goldgate.usecase import load_usecase

    uc = load_usecase(info["usecase"])
    gold = pq.ParquetDataset(_table_files(info, "duckdb", uc.tables.gold)).read(columns=[uc.entity])
    names = sorted(set(gold[uc.entity].to_pylist()))
    sample = sorted({names[0], names[len(names) // 2], names[-1]})
    order = [uc.entity, uc.time]
    a = _rows_of(_table_files(info, "duckdb", uc.tables.features), uc.entity, sample, order)
    b = _rows_of(_table_files(info, "spark", uc.tables.features), uc.entity, sample, order)
    report: dict[str, Any] = {"entities": sample, "rows": len(a), "same_rows": len(a) == len(b)}
    if not report["same_rows"] or list(a[uc.time].astype(str)) != list(b[uc.time].astype(str)):
        report["same_rows"] = False
        return report
    per_column: dict[str, float] = {}
    for col in a.columns:
        if col in order or not np.issubdtype(a[col].dtype, np.number):
            continue
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            per_column[col] = math.inf  # NULL in one engine's output where the other has a value
        elif (~np.isnan(x)).any():
            per_column[col] = float(np.nanmax(np.abs(x - y)))
    report["max_abs_diff_by_column"] = per_column
    report["max_abs_diff"] = max(per_column.values(), default=0.0)
    # An independent check of the calendar columns against the date tells which engine is right when they differ.
    report["calendar_errors"] = {"duckdb": calendar_errors(a, uc.time), "spark": calendar_errors(b, uc.time)}
    return report


def calendar_errors(frame: Any, time_col: str) -> int:
    """Rows whose ``month`` or ``day_of_week`` (0 = Monday) disagree with their date (0 without those columns)."""
    import pandas as pd

    if not {"month", "day_of_week"} <= set(frame.columns):
        return 0
    day = pd.to_datetime(frame[time_col])
    return int(((frame["month"] != day.dt.month) | (frame["day_of_week"] != day.dt.dayofweek)).sum())


# ---------------------------------------------------------------------------------------------------- driver


def machine() -> dict[str, Any]:
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "java": java[0] if java else None,
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from goldgate.settings import Settings

    settings = Settings()
    spark = {
        "master": settings.spark_master,
        "driver_memory": settings.spark_driver_memory,
        "shuffle_partitions": settings.spark_shuffle_partitions,
    }
    result = start_result(
        "features step, duckdb vs spark",
        machine(),
        spark=spark,
        duckdb_memory_limit=settings.duckdb_memory_limit,
        datasets=[],
    )
    for dataset in args.datasets:
        repeat = args.panel_repeat if dataset == "panel" else args.repeat
        print(f"{dataset}: preparing", flush=True)
        info = prepare(dataset, args.scratch, args.panel_currencies)
        print(f"{dataset}: timing the features step, {repeat} repeat(s)", flush=True)
        engines = time_features(info, repeat)
        result["datasets"].append(
            {
                "dataset": dataset,
                "repeat": repeat,
                "gold_rows": engines["duckdb"]["rows"],
                "engines": engines,
                "comparison": compare(info),
            }
        )
    result["load_average_end"] = os.getloadavg()
    result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def render(result: dict[str, Any]) -> str:
    """The Markdown section: one row per dataset and engine."""
    m = result["machine"]
    load = ", ".join(f"{x:.1f}" for x in result["load_average_start"])
    lines = [
        START,
        "## Spark engine: the features step on DuckDB and on Spark local[2]",
        "",
        f"Measured {result['started_utc'][:16].replace('T', ' ')} UTC with `.venv/bin/python benchmarks/spark.py` "
        f"on {m['cpus']} CPUs ({m['platform']}), PySpark {m['pyspark']}, {m['java']}; Spark "
        f"`{result['spark']['master']}`, driver memory {result['spark']['driver_memory']}, "
        f"{result['spark']['shuffle_partitions']} shuffle partitions; DuckDB memory limit "
        f"{result['duckdb_memory_limit']}. Load average at start: {load} (a shared machine: compare engines within "
        "one run). Each engine and repeat runs in a fresh process, engines interleaved; medians.",
        "",
        "| dataset | rows | repeats | engine | features s | rows/s | peak RSS MB (process tree) | session start s |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for d in result["datasets"]:
        label = {"fx": "fx (bundled ECB history)", "panel": "synthetic panel"}[d["dataset"]]
        for engine in ENGINES:
            e = d["engines"][engine]
            start = f"{e['open_seconds']:.1f}" if engine == "spark" else "–"
            lines.append(
                f"| {label} | {e['rows']:,} | {d['repeat']} | {engine} | {e['seconds']:.2f} | "
                f"{e['rows'] / e['seconds']:,.0f} | {e['peak_rss_mb']:,.0f} | {start} |"
            )
    lines += [
        "",
        "The timed step reads the gold table, computes the fx feature set and the forward target, and merges the "
        "result into a new feature table (DuckDB: Delta through delta-rs; Spark: a versioned Parquet snapshot). "
        "Peak RSS sums the resident memory of the whole process tree (Python, the JVM, Spark's Python workers), "
        "sampled every 0.1 s. Session start is the JVM start, outside the timed step.",
        "",
    ]
    for d in result["datasets"]:
        c = d["comparison"]
        head = f"- {d['dataset']}: on {', '.join(c['entities'])} ({c['rows']:,} rows) the engines' feature values "
        if not c["same_rows"]:
            lines.append(head + "do not line up (different rows).")
            continue
        off = {k: v for k, v in c["max_abs_diff_by_column"].items() if v > DIFF_TOLERANCE}
        close = max((v for k, v in c["max_abs_diff_by_column"].items() if k not in off), default=0.0)
        lines.append(head + f"differ by at most {close:.1e}" + ("." if not off else ", except: "))
        if off:
            lines[-1] += ", ".join(f"`{k}` (up to {v:g})" for k, v in off.items()) + "."
        wrong = c.get("calendar_errors", {})
        if any(wrong.values()):
            lines[-1] += (
                " Checked against the date, `month`/`day_of_week` are wrong in "
                + ", ".join(f"{n:,} of {c['rows']:,} sampled rows on {engine}" for engine, n in wrong.items())
                + "."
            )
    lines += ["", "Raw figures: `benchmarks/results/spark.json`.", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("prepare")
    p.add_argument("--info", required=True)
    c = sub.add_parser("features")
    c.add_argument("--info", required=True)
    c.add_argument("--engine", choices=ENGINES, required=True)
    parser.add_argument("--datasets", nargs="+", choices=["fx", "panel"], default=["fx", "panel"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--panel-repeat", type=int, default=3, help="repeats for the 10M panel")
    parser.add_argument("--panel-currencies", type=int, default=2000, help="x 5,000 days (2,000: 10M rows)")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "goldgate-spark-bench")
    parser.add_argument("--no-doc", action="store_true", help="write the JSON only")
    args = parser.parse_args()
    if args.command == "prepare":
        child_prepare(json.loads(args.info))
        return
    if args.command == "features":
        child_features(json.loads(args.info), args.engine)
        return
    args.scratch.mkdir(parents=True, exist_ok=True)
    result = bench(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spark.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_doc:
        write_section(DOC, START, END, render(result))


if __name__ == "__main__":
    main()
