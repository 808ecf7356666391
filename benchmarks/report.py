"""Shared by the benchmarks: each one owns a section of docs/benchmarks.md between its own markers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
RESULTS = Path(__file__).resolve().parent / "results"


def write_section(path: Path, start: str, end: str, section: str) -> None:
    """Replace the text between ``start`` and ``end`` (or append ``section``), leaving the rest of the file alone.

    ``section`` includes both markers.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def load_text(values: Any) -> str:
    """A load average triple as the sections print it."""
    return ", ".join(f"{v:.2f}" for v in values)


def log_log_plot(
    series: dict[str, list[tuple[float, float]]], path: Path, xlabel: str, ylabel: str, title: str
) -> None:
    """Seconds vs rows per implementation on log-log axes, written as a PNG (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for label, points in series.items():
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def start_result(benchmark: str, machine: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The head every results JSON starts with: what ran, when, on which machine, under which load."""
    return {
        "benchmark": benchmark,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_start": os.getloadavg(),
        "machine": machine,
        **fields,
    }


def save_result(
    result: dict[str, Any], name: str, render: Callable[[dict[str, Any]], str] | None, start: str, end: str
) -> None:
    """Stamp the load at the end, write ``results/<name>`` and, given ``render``, its section of the doc."""
    result["load_average_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if render is not None:
        write_section(DOC, start, end, render(result))
