"""Every benchmark's raw figures in one machine-readable file, with the machine's facts and the aims' verdicts.

    .venv/bin/python benchmarks/combine.py

Reads ``benchmarks/results/*.json`` (each benchmark writes its own), writes ``benchmarks/results/benchmarks.json``
and the ``targets`` section of docs/benchmarks.md. A benchmark that has not been run is listed as missing.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- targets:start -->", "<!-- targets:end -->"
SOURCES = {
    "layers": "layers.json",
    "drift": "drift.json",
    "panel": "panel.json",
    "panel_100m": "panel-100m.json",
    "crm": "crm.json",
    "features_profile": "features-profile.json",
    "scoring": "scoring.json",
    "runs": "runs.json",
    "spark": "spark.json",
    "threads": "threads.json",
    "silver": "silver.json",
}
PACKAGES = ["goldgate", "duckdb", "ibis-framework", "deltalake", "pyarrow", "pandas", "polars", "numpy", "lightgbm"]
PACKAGES += ["mlflow", "scikit-learn", "pyspark"]


def machine() -> dict[str, Any]:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "ram_gb": round(int(mem.split()[1]) / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_combine": os.getloadavg(),
        "git_head": sha.stdout.strip() or None,
        "versions": versions,
    }


def latest_serving() -> Path | None:
    found = sorted(RESULTS.glob("serving-*.json"))
    return found[-1] if found else None


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's aims, each with the measured value and whether it is met (None when not measured)."""
    out: list[dict[str, Any]] = []
    panel = data.get("panel")
    if panel:
        largest = max(panel["sizes"], key=lambda s: s["rows"])
        impls = largest["impls"]
        duck = impls.get("duckdb")
        for impl, label in (("goldgate_ref", "reference spec through the lake"), ("goldgate_fx", "fx features step")):
            r = impls.get(impl)
            if r and duck:
                ratio = r["seconds"] / duck["seconds"]
                out.append(
                    {
                        "aim": f"goldgate {label} within 1.25x of bare DuckDB at {largest['rows']:,} rows",
                        "measured": round(ratio, 2),
                        "unit": "x DuckDB seconds",
                        "met": ratio <= 1.25,
                    }
                )
            if r:
                out.append(
                    {
                        "aim": f"goldgate {label} under 1 GiB peak at {largest['rows']:,} rows",
                        "measured": round(r["peak_rss_mb"]),
                        "unit": "MiB",
                        "met": r["peak_rss_mb"] < 1024,
                    }
                )
        fx, engine = impls.get("goldgate_fx"), impls.get("goldgate_engine")
        if fx and engine:
            for key, what, unit in (
                ("seconds", "time", "x fx step seconds"),
                ("peak_rss_mb", "peak memory", "x fx step peak RSS"),
            ):
                ratio = engine[key] / fx[key]
                out.append(
                    {
                        "aim": f"generic engine features step within 1.1x of the hard-wired fx step at "
                        f"{largest['rows']:,} rows ({what})",
                        "measured": round(ratio, 2),
                        "unit": unit,
                        "met": ratio <= 1.1,
                    }
                )
    large = data.get("panel_100m")
    if large:
        for size in large["sizes"]:
            for impl, r in size["impls"].items():
                out.append(
                    {
                        "aim": f"{size['rows']:,}-row build ({impl}) completes under 4 GiB peak",
                        "measured": round(r["peak_rss_mb"]),
                        "unit": f"MiB (duckdb_memory_limit {r.get('duckdb_memory_limit')}, {r['seconds']:.0f} s)",
                        "met": r["peak_rss_mb"] < 4096 and r.get("rows_out") == size["rows"],
                    }
                )
    scoring = data.get("scoring")
    if scoring:
        for key, label in (("ratio_stream", "scoring stream"), ("ratio_stream_merge", "scoring + Delta merge")):
            out.append(
                {
                    "aim": f"batch scoring ({label}) at >= 50% of raw predict throughput",
                    "measured": round(100 * scoring[key]),
                    "unit": "%",
                    "met": scoring[key] >= 0.5,
                }
            )
    runs = data.get("runs")
    fx = next((u for u in (runs or {}).get("usecases", []) if u["usecase"] == "fx"), None)
    if fx:
        warm = fx["warm"]["seconds"]
        out.append(
            {
                "aim": "full fx loop (`goldgate run`) warm under 30 s",
                "measured": round(warm, 1),
                "unit": "s",
                "met": warm < 30,
            }
        )
    return out


def render(combined: dict[str, Any]) -> str:
    m = combined["machine"]
    lines = [
        START,
        "## Aims at a glance",
        "",
        f"Collected {combined['generated_utc'].replace('T', ' ')[:16]} UTC by `benchmarks/combine.py` from each "
        f"benchmark's own results ({m['cpus']} CPUs, {m['ram_gb']} GB RAM; every section below records the load "
        "average it ran under). All figures, with the machine's facts and versions: "
        "`benchmarks/results/benchmarks.json`.",
        "",
        "| aim | measured | met |",
        "|---|---:|---|",
    ]
    for t in combined["targets"]:
        met = "yes" if t["met"] else "**no**"
        lines.append(f"| {t['aim']} | {t['measured']:,} {t['unit']} | {met} |")
    missing = [k for k, v in combined["benchmarks"].items() if v is None]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)}."]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    data: dict[str, Any] = {}
    for key, name in SOURCES.items():
        path = RESULTS / name
        data[key] = json.loads(path.read_text()) if path.exists() else None
    serving = latest_serving()
    data["serving"] = json.loads(serving.read_text()) if serving else None
    combined = {
        "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "targets": targets(data),
        "benchmarks": data,
    }
    (RESULTS / "benchmarks.json").write_text(json.dumps(combined, indent=2, default=str) + "\n")
    if "--no-doc" not in sys.argv:
        sys.path.insert(0, str(HERE))
        from report import write_section

        write_section(DOC, START, END, render(combined))


if __name__ == "__main__":
    main()
