"""The ``goldgate`` command line: a thin layer over the library."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from goldgate.context import Context
from goldgate.dag import STEP_NAMES, get_step
from goldgate.runner import StepFailedError, run_pipeline, run_step
from goldgate.settings import Settings, load_settings
from goldgate.summary import print_summary, print_tables, table_versions, write_summary
from goldgate.usecase import UseCaseError, load_usecase
from goldgate.workspace_lock import WorkspaceBusyError, workspace_lock

app = typer.Typer(add_completion=False, no_args_is_help=True, help="goldgate: raw data to a monitored model.")
console = Console(stderr=True)
log = logging.getLogger("goldgate")

UseCaseOpt = Annotated[str, typer.Option("--usecase", "-u", help="Bundled use case (fx) or a use-case YAML path.")]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="Workspace folder (env GOLDGATE_WORKSPACE).")
]
SourceOpt = Annotated[
    str | None, typer.Option("--source", "-s", help="Explicit source file or folder (default: bundled data).")
]
EngineOpt = Annotated[str | None, typer.Option("--engine", help="duckdb (default) (env GOLDGATE_ENGINE).")]


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
    if settings.engine != "duckdb":
        _fail(f"engine '{settings.engine}' is not available in this build; use duckdb")
    _setup_logging(settings.log_level)
    return Context(settings=settings, usecase=uc, source=source, dry_run=dry_run)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=1)


@contextmanager
def _exclusive(ctx: Context, wait: float = 0.0) -> Iterator[None]:
    """Hold the workspace lock for a writing command; a busy workspace is a one-line error (exit 1)."""
    try:
        with workspace_lock(ctx.settings.workspace_dir, wait):
            yield
    except WorkspaceBusyError as exc:
        _fail(str(exc))


@app.command()
def run(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    summary_json: Annotated[Path | None, typer.Option("--summary-json", help="Write the run summary here.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report the gate decision without promoting.")] = False,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to wait for a busy workspace (default: fail at once).")
    ] = 0.0,
) -> None:
    """Run the whole loop: ingest -> ... -> monitor."""
    ctx = _context(usecase, workspace, engine, source, dry_run)
    try:
        with _exclusive(ctx, wait):
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
        with _exclusive(ctx):
            result = run_step(ctx, chosen)
    except StepFailedError as exc:
        _fail(str(exc))
    console.print(f"{name}: {_short(result)}", highlight=False, soft_wrap=True)


def _short(result: dict[str, object]) -> str:
    parts = []
    for key, value in result.items():
        if isinstance(value, list):
            parts.append(f"{key}=[{len(value)} items]")
        elif not isinstance(value, dict):
            parts.append(f"{key}={value}")
    return ", ".join(parts)


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
    print_tables(table_versions(ctx.lake), usecase, Console())


@app.command()
def quality(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    batches: Annotated[int, typer.Option(help="How many recent batches the trend shows.")] = 5,
) -> None:
    """Per table and rule: pass/fail counts and the failures over the last batches."""
    from rich.table import Table

    from goldgate.quality import QUALITY, quality_report

    ctx = _context(usecase, workspace, None)
    if not ctx.lake.exists(QUALITY):
        _fail(f"no quality records in {ctx.settings.workspace_dir}: run the silver step first")
    view = Table(title=f"data quality · last {batches} batches (failed rows, oldest → newest)", title_justify="left")
    for col in ("table", "rule", "action", "passed", "failed", "trend"):
        view.add_column(col, justify="right" if col in ("passed", "failed") else "left")
    for r in quality_report(ctx.lake.read(QUALITY), batches):
        trend = " ".join("-" if v is None else str(v) for v in r["trend"])  # type: ignore[attr-defined]
        view.add_row(str(r["table"]), str(r["rule"]), str(r["action"]), f"{r['passed']:,}", f"{r['failed']:,}", trend)
    Console().print(view)


@app.command()
def dictionary(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Markdown file to write.")] = Path("docs/data_dictionary.md"),
) -> None:
    """Write the data dictionary of the workspace's tables (columns, types, descriptions from the YAML)."""
    from goldgate.dictionary import render_dictionary

    ctx = _context(usecase, workspace, None)
    text, missing = render_dictionary(ctx.lake, ctx.usecase)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    console.print(f"wrote {out} ({len(ctx.lake.tables())} tables)")
    if missing:
        log.warning("columns without a description: %s", ", ".join(missing))


gate_app = typer.Typer(no_args_is_help=True, help="Gate decisions.")
app.add_typer(gate_app, name="gate")


@gate_app.command("show")
def gate_show(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Training or model run id (default: latest).")] = None,
) -> None:
    """Print a gate decision as Markdown."""
    import mlflow

    from goldgate.gate import DECISION_FILE, GateDecision, render_markdown

    ctx = _context(usecase, workspace, None)
    try:
        ctx.experiment_id  # noqa: B018 - configures MLflow for this workspace
        run = mlflow.MlflowClient().get_run(run_id) if run_id else ctx.latest_training_run()
        record = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{DECISION_FILE}")
    except Exception as exc:
        _fail(f"gate show: no gate decision found ({exc})")
    typer.echo(render_markdown(GateDecision.from_dict(record)))


@app.command()
def models(usecase: UseCaseOpt = "fx", workspace: WorkspaceOpt = None) -> None:
    """List registered versions with aliases, gate decision and backtest metrics."""
    from rich.table import Table

    from goldgate.registry import list_versions

    ctx = _context(usecase, workspace, None)
    ctx.experiment_id  # noqa: B018 - configures MLflow for this workspace
    name = ctx.usecase.models.registered_name
    rows = list_versions(name)
    if not rows:
        _fail(f"no registered versions of {name} in {ctx.settings.workspace_dir}")
    table = Table(title=f"{name}", title_justify="left")
    for col in ("version", "aliases", "decision", "backtest rmse", "holdout rmse", "run id"):
        table.add_column(col)
    for r in rows:
        m = r["metrics"]
        table.add_row(
            r["version"],
            ",".join(r["aliases"]) or "-",
            r["decision"] or "-",
            f"{m['backtest_rmse']:.5f}" if "backtest_rmse" in m else "-",
            f"{m['holdout_rmse']:.5f}" if "holdout_rmse" in m else "-",
            (r["run_id"] or "")[:12],
        )
    Console().print(table)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered model version to make champion.")],
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the gate rejects (recorded).")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in ops.promotions).")] = "",
) -> None:
    """Make VERSION champion: it goes through the gate on the current data unless --force."""
    from goldgate.gate import render_markdown
    from goldgate.pipeline import promote_version

    ctx = _context(usecase, workspace, None)
    try:
        with _exclusive(ctx):
            decision = promote_version(ctx, version, force, reason)
    except typer.Exit:
        raise
    except Exception as exc:
        _fail(f"promote: {exc}")
    typer.echo(render_markdown(decision))
    outcome = "promoted" if decision.promoted or force else "not promoted"
    console.print(f"{ctx.usecase.models.registered_name} v{version}: {outcome}")


@app.command()
def rollback(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in ops.promotions).")] = "",
) -> None:
    """Move champion back to the previous champion (recorded in ops.promotions)."""
    from goldgate.registry import rollback as rollback_champion

    ctx = _context(usecase, workspace, None)
    ctx.experiment_id  # noqa: B018 - configures MLflow for this workspace
    try:
        with _exclusive(ctx):
            old, new = rollback_champion(
                ctx.lake, ctx.usecase.models.registered_name, ctx.usecase.name, ctx.settings.owner, reason or "rollback"
            )
    except LookupError as exc:
        _fail(f"rollback: {exc.args[0]}")
    console.print(f"{ctx.usecase.models.registered_name}: champion v{old} -> v{new}")


@app.command()
def reproduce(
    run_id: Annotated[str, typer.Argument(help="A training run id or one of its model run ids.")],
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
) -> None:
    """Rebuild features by time travel and retrain with the recorded params and seed; exit 1 on any mismatch."""
    from rich.table import Table

    from goldgate.reproduce import reproduce_run

    ctx = _context(usecase, workspace, None)
    try:
        result = reproduce_run(ctx, run_id)
    except Exception as exc:
        _fail(f"reproduce: {exc}")
    table = Table(title=f"reproduce {result.run_id} · data {result.dataset_version}", title_justify="left")
    for col in ("check", "match", "detail"):
        table.add_column(col)
    for check in result.checks:
        table.add_row(check.name, "yes" if check.matched else "[red]NO[/red]", check.detail)
    Console().print(table)
    if not result.matched:
        _fail(f"reproduce: {sum(not c.matched for c in result.checks)} of {len(result.checks)} checks differ")


@app.command("mlflow-ui")
def mlflow_ui(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Open the MLflow UI on the workspace's tracking store (127.0.0.1 only)."""
    settings = load_settings(workspace=workspace)
    beside = Path(sys.executable).parent / "mlflow"
    exe = str(beside) if beside.exists() else shutil.which("mlflow") or _fail("mlflow executable not found")
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


@app.command("score")
def score_cmd(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="Date to score (default: latest with every input)."),
    ] = None,
    alias: Annotated[str, typer.Option("--alias", help="Registry alias of the model to score with.")] = "champion",
) -> None:
    """Batch-score one date with @alias and merge the rows, with lineage, into the predictions table."""
    from goldgate.pipeline import score as score_step

    ctx = _context(usecase, workspace, None)
    try:
        with _exclusive(ctx):
            ctx.mlflow_client()
            result = score_step(ctx, as_of=as_of.date() if as_of else None, alias=alias)
    except typer.Exit:
        raise
    except Exception as exc:
        _fail(f"score: {exc}")
    console.print(f"score: {_short(result)}", highlight=False, soft_wrap=True)


@app.command()
def serve(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    alias: Annotated[str, typer.Option("--alias", help="Registry alias to serve and follow.")] = "champion",
    allow_no_auth: Annotated[
        bool, typer.Option("--allow-no-auth", help="env=dev, loopback only: serve without API keys (a demo).")
    ] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log one line per request.")] = False,
) -> None:
    """Serve @alias over HTTP: POST /v1/predict, GET /v1/model, /healthz, /readyz, OpenAPI at /docs."""
    from goldgate.serve import ServeError, run_server

    ctx = _context(usecase, workspace, None)
    try:
        run_server(
            ctx.settings,
            ctx.usecase,
            host,
            port,
            alias=alias,
            allow_no_auth=allow_no_auth,
            access_log=access_log,
        )
    except ServeError as exc:
        _fail(f"serve: {exc}")


@app.command()
def monitor(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    retrain_on_alert: Annotated[
        bool,
        typer.Option("--retrain-on-alert", help="On a fired alert: train -> evaluate -> gate -> register (same gate)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --retrain-on-alert: gate without promoting.")
    ] = False,
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Write the monitoring result here.")
    ] = None,
) -> None:
    """Drift, performance (late labels) and alerts for the champion; optionally retrain through the gate."""
    from goldgate.loop import run_monitor
    from goldgate.summary import write_summary as write_json

    ctx = _context(usecase, workspace, None, dry_run=dry_run)
    try:
        with _exclusive(ctx):
            result = run_monitor(ctx, retrain_on_alert=retrain_on_alert)
    except typer.Exit:
        raise
    except StepFailedError as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(f"step monitor failed: {exc}")
    if summary_json:
        write_json(result, summary_json)
    out = Console()
    if "window" not in result:
        out.print(f"monitor: {result.get('note', 'nothing to monitor')}")
        return
    drifted = result["features_drifted"]
    out.print(f"window: {result['window'][0]} .. {result['window'][1]} (champion v{result['model_version']})")
    out.print(f"drift: {len(drifted)} feature(s) drifted {drifted if drifted else ''}".rstrip())
    out.print(f"prediction drift: {'yes' if result['prediction_drifted'] else 'no'}")
    for p in result["performance"]:
        if p["source"] == "backfill":
            out.print(
                f"performance ({p['window_start']}..{p['window_end']}, {p['rows']} rows): "
                f"{p['metric']} {p['value']:.5f}"
            )
    for a in result["alerts"]:
        out.print(
            f"alert {a['status']}: {a['rule']} {a['subject']} {a['statistic']}={a['value']:.4g} -> {a['runbook']}"
        )
    if result.get("retrain"):
        r = result["retrain"]
        out.print(f"retrain: {r['decision']} (run {r['training_run_id'][:12]}) — {r['reason']}")
    if result.get("report"):
        out.print(f"report: {result['report']}")


def main() -> None:  # pragma: no cover - console entry point
    app()
