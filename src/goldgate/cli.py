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
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from goldgate.context import Context
from goldgate.dag import STEP_NAMES, get_step
from goldgate.runner import StepFailedError, run_pipeline, run_step
from goldgate.settings import Settings, load_settings
from goldgate.summary import print_summary, print_tables, table_versions, write_summary
from goldgate.usecase import UseCase, UseCaseError, load_usecase
from goldgate.workspace_lock import WorkspaceBusyError, workspace_lock

app = typer.Typer(add_completion=False, no_args_is_help=True, help="goldgate: raw data to a monitored model.")
console = Console(stderr=True)
log = logging.getLogger("goldgate")

UseCaseOpt = Annotated[
    str, typer.Option("--usecase", "-u", help="Bundled use case (fx, crm, weather, penguins) or a use-case YAML path.")
]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="Workspace folder (env GOLDGATE_WORKSPACE).")
]
SourceOpt = Annotated[
    str | None, typer.Option("--source", "-s", help="Explicit source file or folder (default: bundled data).")
]
EngineOpt = Annotated[str | None, typer.Option("--engine", help="duckdb (default) or spark (env GOLDGATE_ENGINE).")]


class Orchestrator(StrEnum):
    """Where ``goldgate run`` executes the DAG."""

    local = "local"  # in this process, no server (the default; see ADR 0003)
    prefect = "prefect"  # a Prefect flow, one task per step, retries and time limits from the use case


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
    orchestrator: Annotated[
        Orchestrator,
        typer.Option("--orchestrator", help="local: in this process; prefect: as a Prefect flow (slower start)."),
    ] = Orchestrator.local,
) -> None:
    """Run the whole loop: ingest -> ... -> monitor."""
    from goldgate.runlog import record_outcome, utc_now

    ctx = _context(usecase, workspace, engine, source, dry_run)
    if orchestrator is Orchestrator.prefect:
        summary = _run_on_prefect(ctx, usecase, wait)
        if summary_json:
            write_summary(summary, summary_json)
        print_summary(summary, Console())
        return
    try:
        with _exclusive(ctx, wait):
            started = utc_now()
            try:
                summary = run_pipeline(ctx, console)
            except StepFailedError as exc:
                record_outcome(ctx, started, error=str(exc))  # one ops.runs row per run, failed ones too
                raise
            record_outcome(ctx, started, summary=summary)
    except StepFailedError as exc:
        _fail(str(exc))
    if summary_json:
        write_summary(summary, summary_json)
    print_summary(summary, Console())


def _run_on_prefect(ctx: Context, usecase: str, wait: float) -> dict[str, Any]:
    """The loop as a Prefect flow run; the flow holds the workspace lock and records the run itself."""
    from goldgate.orchestration.prefect_flow import FlowParameters, run_flow

    params = FlowParameters(
        usecase=usecase,
        workspace=str(ctx.settings.workspace_dir),
        source=ctx.source,
        engine=ctx.settings.engine,
        dry_run=ctx.dry_run,
        lock_wait_seconds=wait,
    )
    try:
        summary = run_flow(params)
    except (StepFailedError, WorkspaceBusyError) as exc:
        _fail(str(exc))
    return summary


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


generate_app = typer.Typer(no_args_is_help=True, help="Generate synthetic source data.")
app.add_typer(generate_app, name="generate")


@generate_app.command("crm")
def generate_crm_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the four CSVs into.")],
    rows: Annotated[int, typer.Option("--rows", min=1, help="Opportunities in sales_pipeline.csv.")] = 8800,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")] = 42,
    clean: Annotated[bool, typer.Option("--clean", help="No dirt: no typos, CRLF, BOM, repeats, bad dates.")] = False,
) -> None:
    """Write a synthetic CRM export in the Maven "CRM Sales Opportunities" CSV layout."""
    from goldgate.sources.crm_synthetic import Dirt, generate_crm

    try:
        _setup_logging(load_settings().log_level)
    except ValueError as exc:
        _fail(str(exc))
    try:
        written = generate_crm(out, rows=rows, seed=seed, dirt=Dirt.none() if clean else None)
    except (OSError, ValueError) as exc:
        _fail(f"generate crm: {out}: {exc}")
    log.info("generate crm: %s rows in %s", ", ".join(f"{k}.csv={v}" for k, v in written.items()), out)


def _listed_metrics(uc: UseCase) -> tuple[str, ...]:
    """The metrics `goldgate models` lists for the use case's task, its primary metric first."""
    task_metrics = {
        "regression": ("rmse", "mae"),
        "multiclass": ("log_loss", "brier", "accuracy", "macro_f1"),
    }.get(uc.task, ("brier", "roc_auc", "log_loss"))
    primary = uc.evaluation.primary_metric
    return (primary, *(m for m in task_metrics if m != primary))


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
    primary, *others = _listed_metrics(ctx.usecase)
    # The primary metric over all folds and on the holdout; the task's other metrics over all folds.
    keys = [f"backtest_{primary}", f"holdout_{primary}", *(f"backtest_{m}" for m in others)]
    table.add_column("version")
    table.add_column("aliases", min_width=8)
    for col in ("decision", *(k.replace("_", " ", 1) for k in keys), "run id"):
        table.add_column(col)
    for r in rows:
        m = r["metrics"]
        cells = [f"{m[k]:.5f}" if k in m else "-" for k in keys]
        table.add_row(
            r["version"], ",".join(r["aliases"]) or "-", r["decision"] or "-", *cells, (r["run_id"] or "")[:8]
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


@app.command()
def ui(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Open the dashboard (Streamlit): pipeline runs, models and gate, predictions, monitoring, a predict form."""
    from goldgate.dashboard.launch import dashboard_env, streamlit_command

    ctx = _context(usecase, workspace, None)  # fails here, in one line, on a bad use case or workspace setting
    cmd, env = streamlit_command(host, port), dashboard_env(ctx.settings.workspace_dir, usecase)
    console.print(f"goldgate dashboard on http://{host}:{port} (Ctrl+C to stop)")
    result = subprocess.run(cmd, check=False, env=env)
    if result.returncode not in (0, -2, 130):  # Ctrl+C is a normal way to stop it
        _fail(f"ui: streamlit exited with code {result.returncode}")


@app.command("report")
def report_cmd(
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    run_id: Annotated[str, typer.Option("--run", help="'latest' or a run id from ops.runs.")] = "latest",
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file (default: <workspace>/reports/<use case>-run-<ts>.html).")
    ] = None,
) -> None:
    """Write the run report (one self-contained HTML file) and log it to the training run in MLflow."""
    from goldgate.run_report import write_run_report

    ctx = _context(usecase, workspace, None)
    try:
        path = write_run_report(ctx, run_id, out)
    except LookupError as exc:
        _fail(f"report: {exc.args[0]}")
    console.print(f"report: {path}")


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


deploy_app = typer.Typer(no_args_is_help=True, help="Schedule the loop on an orchestrator.")
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("prefect")
def deploy_prefect(
    cron: Annotated[str, typer.Option("--cron", help="Five-field cron schedule, e.g. '0 6 * * 1-5'.")],
    name: Annotated[str | None, typer.Option("--name", help="Deployment name (default: the use case's name).")] = None,
    usecase: UseCaseOpt = "fx",
    workspace: WorkspaceOpt = None,
    source: SourceOpt = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of the schedule.")] = "UTC",
    pool: Annotated[str, typer.Option("--pool", help="Prefect work pool (type process; created if missing).")] = (
        "goldgate"
    ),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Scheduled runs report the gate without promoting.")] = (
        False
    ),
) -> None:
    """Create or update a scheduled Prefect deployment of the whole loop, and print how to run it."""
    from goldgate.orchestration.prefect_flow import FlowParameters, deploy_flow

    ctx = _context(usecase, workspace, None, source, dry_run)  # validates the use case and the settings first
    params = FlowParameters(usecase=usecase, workspace=str(ctx.settings.workspace_dir), source=source, dry_run=dry_run)
    try:
        info = deploy_flow(name or ctx.usecase.name, cron, params, timezone=timezone, work_pool=pool)
    except ValueError as exc:
        _fail(f"deploy prefect: {exc}")
    for line in _prefect_instructions(info.name, info.work_pool, info.api_url, ctx.settings.workspace_dir):
        typer.echo(line)
    console.print(f"deployment {info.name} (id {info.id}): cron '{info.cron}' ({info.timezone}), pool {info.work_pool}")


def _prefect_instructions(deployment: str, pool: str, api_url: str | None, workspace: Path) -> list[str]:
    """What to start so the deployment's scheduled runs happen."""
    from goldgate.orchestration.prefect_flow import prefect_environment

    beside = Path(sys.executable).parent / "prefect"
    exe = str(beside) if beside.exists() else "prefect"
    env = " ".join(f"{k}={v}" for k, v in prefect_environment(workspace).items())
    url = api_url or "http://127.0.0.1:4200/api"
    lines = []
    if api_url is None:
        lines += [
            f"The deployment is stored in {workspace / '.prefect' / 'prefect.db'} (no PREFECT_API_URL set).",
            "1. Start a Prefect server on it (UI on http://127.0.0.1:4200; it creates the scheduled runs):",
            f"   {env} {exe} server start --host 127.0.0.1",
        ]
    else:
        lines.append(f"The deployment is stored on the Prefect API at {api_url}.")
    lines += [
        f"{'2' if api_url is None else '1'}. Start a worker that runs them (from this environment, with goldgate):",
        f"   {env} PREFECT_API_URL={url} {exe} worker start --pool {pool}",
        f"Run once now: PREFECT_API_URL={url} {exe} deployment run '{deployment}'",
    ]
    return lines


@app.command()
def bundle(
    out: Annotated[Path, typer.Option("--out", help="Folder for databricks.yml and resources/.")] = Path("."),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 with a diff if the files in --out are stale.")
    ] = False,
    usecase: Annotated[
        str, typer.Option("--usecase", "-u", help="Use case whose orchestration section sets retries and timeouts.")
    ] = "fx",
) -> None:
    """Generate the Databricks Asset Bundle (databricks.yml, resources/*.job.yml) from the DAG."""
    from goldgate.bundle import BundleError, bundle_diff, render_bundle, write_bundle

    try:
        files = render_bundle(load_usecase(usecase))
    except (UseCaseError, BundleError) as exc:
        _fail(f"bundle: {exc}")
    if check:
        diff = bundle_diff(files, out)
        if diff:
            typer.echo(diff, nl=False)
            _fail(f"bundle: the files in {out} differ from the DAG; regenerate them with `goldgate bundle --out {out}`")
        console.print(f"bundle: {len(files)} files in {out} match the DAG")
        return
    written = write_bundle(files, out)
    console.print(f"bundle: wrote {', '.join(str(p) for p in written)}")


def main() -> None:  # pragma: no cover - console entry point
    app()
