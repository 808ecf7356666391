"""The ``goldgate`` command line: a thin layer over the library."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from goldgate.context import Context
from goldgate.dag import STEP_NAMES, get_step
from goldgate.runner import StepFailedError, run_pipeline, run_step
from goldgate.settings import Settings, load_settings
from goldgate.summary import build_summary, print_summary, write_summary
from goldgate.usecase import UseCaseError, load_usecase

app = typer.Typer(add_completion=False, no_args_is_help=True, help="goldgate: raw data to a monitored model.")
console = Console(stderr=True)
log = logging.getLogger("goldgate")

UseCaseOpt = Annotated[
    str, typer.Option("--usecase", "-u", help="Bundled use case (fx) or a use-case YAML path.")
]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="Workspace folder [env GOLDGATE_WORKSPACE].")
]
SourceOpt = Annotated[
    str | None, typer.Option("--source", "-s", help="Explicit source file or folder (default: bundled data).")
]
EngineOpt = Annotated[str | None, typer.Option("--engine", help="duckdb (default) [env GOLDGATE_ENGINE].")]


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=console, show_path=False, rich_tracebacks=False))
    root.setLevel(logging.WARNING)
    logging.getLogger("goldgate").setLevel(level.upper())


def _context(
    usecase: str, workspace: Path | None, engine: str | None, source: str | None = None, dry_run: bool = False
) -> Context:
    try:
        settings: Settings = load_settings(workspace=workspace, engine=engine)
        uc = load_usecase(usecase)
    except (UseCaseError, ValueError) as exc:
        _fail(str(exc))
    _setup_logging(settings.log_level)
    return Context(settings=settings, usecase=uc, source=source, dry_run=dry_run)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=1)


@app.command()
def run(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Write the run summary here.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report the gate decision without promoting.")
    ] = False,
) -> None:
    """Run the whole loop: ingest -> ... -> monitor."""
    ctx = _context(usecase, workspace, engine, source, dry_run)
    try:
        summary = run_pipeline(ctx, console)
    except StepFailedError as exc:
        _fail(str(exc))
    if summary_json:
        write_summary(summary, summary_json)
    print_summary(summary, Console())


@app.command()
def step(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(STEP_NAMES)}.")],
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="register: report without promoting.")] = False,
) -> None:
    """Run one step of the DAG on the workspace."""
    try:
        chosen = get_step(name)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    ctx = _context(usecase, workspace, engine, source, dry_run)
    try:
        result = run_step(ctx, chosen)
    except StepFailedError as exc:
        _fail(str(exc))
    console.print(f"{name}: {_short(result)}", highlight=False, soft_wrap=True)


def _short(result: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, (list, dict)))


@app.command()
def ingest(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
) -> None:
    """Ingest a source file into bronze (same as ``goldgate step ingest``)."""
    step("ingest", usecase=usecase, workspace=workspace, source=source, engine=engine)


@app.command()
def tables(usecase: UseCaseOpt = "fx", workspace: WorkspaceOpt = None) -> None:
    """List the lake's tables with their current version and row count."""
    ctx = _context(usecase, workspace, None)
    summary: dict[str, Any] = {
        "use_case": usecase,
        "tables": {},
        "runs": [],
        "gate": None,
        "champion": None,
        "predictions_rows": 0,
        "drift": {},
        "seconds": {},
    }
    summary["tables"] = build_summary(ctx)["tables"]
    print_summary(summary, Console())


@app.command("mlflow-ui")
def mlflow_ui(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Open the MLflow UI on the workspace's tracking store (127.0.0.1 only)."""
    settings = load_settings(workspace=workspace)
    exe = shutil.which("mlflow") or _fail("mlflow executable not found in this environment")
    cmd = [
        str(exe),
        "ui",
        "--backend-store-uri",
        settings.resolved_tracking_uri,
        "--default-artifact-root",
        settings.artifacts_dir.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    console.print(f"MLflow UI on http://127.0.0.1:{port} (Ctrl+C to stop)")
    subprocess.run(cmd, check=False, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def main() -> None:  # pragma: no cover - console entry point
    app()
