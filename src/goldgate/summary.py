"""The run summary: the tables, runs, gate decision, champion, predictions and drift of a run, as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from goldgate.context import Context


def _runs(ctx: Context) -> list[dict[str, Any]]:
    scores = {s["run_id"]: s["metrics"] for s in ctx.results.get("evaluate", {}).get("scores", [])}
    runs = ctx.results.get("train", {}).get("runs", [])
    return [
        {
            "run_id": r["run_id"],
            "model": r["model"],
            "role": r["role"],
            "metrics": scores.get(r["run_id"], {}),
        }
        for r in runs
    ]


def table_versions(lake: Any) -> dict[str, dict[str, int | None]]:
    """Current version and row count of every table in the lake."""
    return {name: {"version": lake.version(name), "rows": lake.rows(name)} for name in lake.tables()}


def build_summary(ctx: Context) -> dict[str, Any]:
    """The summary described in the design notes, from the lake, the registry and the step results."""
    from goldgate.registry import CHAMPION, alias_version

    lake, uc = ctx.lake, ctx.usecase
    tables = table_versions(lake)
    champion = alias_version(uc.models.registered_name, CHAMPION) if "experiment_id" in vars(ctx) else None
    gate = ctx.results.get("gate")
    monitor = ctx.results.get("monitor", {})
    return {
        "use_case": uc.name,
        "workspace": str(ctx.settings.workspace_dir),
        "tables": tables,
        "quarantine": {n: t["rows"] for n, t in tables.items() if n.startswith("quarantine.")},
        "runs": _runs(ctx),
        "gate": {
            "decision": gate["decision"],
            "reason": gate["reason"],
            "criteria": gate["criteria"],
            "candidate": (gate["candidate"] or {}).get("model"),
        }
        if gate
        else None,
        "champion": {"name": uc.models.registered_name, "version": str(champion.version)} if champion else None,
        "predictions_rows": tables.get(uc.tables.predictions, {}).get("rows", 0),
        "drift": {k: v for k, v in monitor.items() if k != "alerts"},
        "alerts": monitor.get("alerts", []),
        "seconds": ctx.results.get("_seconds", {}),
    }


def write_summary(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")


def print_tables(tables: dict[str, dict[str, Any]], use_case: str, console: Console) -> None:
    """The lake's tables with version and rows."""
    view = Table(title=f"goldgate · {use_case} · tables", title_justify="left")
    for col in ("table", "version", "rows"):
        view.add_column(col, justify="right" if col != "table" else "left")
    for name, t in tables.items():
        view.add_row(name, str(t["version"]), f"{t['rows']:,}")
    console.print(view)


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """A short human version of the summary."""
    print_tables(summary["tables"], summary["use_case"], console)
    runs = Table(title="models (walk-forward backtest, all folds)", title_justify="left")
    shown = [
        m
        for m in ("rmse", "mae", "brier", "log_loss", "roc_auc", "accuracy", "macro_f1", "ece")
        if any(m in r["metrics"] for r in summary["runs"])
    ]
    for col in ("model", "role", *shown, "run id"):
        runs.add_column(col)
    for r in summary["runs"]:
        m = r["metrics"]
        runs.add_row(r["model"], r["role"], *(f"{m.get(k, float('nan')):.5f}" for k in shown), r["run_id"][:12])
    if summary["runs"]:
        console.print(runs)
    gate = summary["gate"]
    if gate:
        colour = "green" if gate["decision"] == "promote" else "yellow"
        console.print(f"gate: [{colour}]{gate['decision']}[/{colour}] {gate['candidate']} — {gate['reason']}")
        for c in gate["criteria"]:
            mark = "✓" if c["passed"] else "✗"
            console.print(f"  {mark} {c['name']}: {c['detail']}")
    champ = summary["champion"]
    console.print(f"champion: {champ['name']} v{champ['version']}" if champ else "champion: none")
    console.print(f"predictions: {summary['predictions_rows']:,} rows")
    drifted = summary["drift"].get("features_drifted", [])
    console.print(f"drift: {len(drifted)} feature(s) drifted {drifted if drifted else ''}".rstrip())
    secs = summary["seconds"]
    console.print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
