"""goldgate's DAG as a Prefect 3 flow: one task per step, in topological order, each waiting for its dependencies.

The flow is built from ``goldgate.dag.STEPS`` when it runs, so it never holds a second copy of the step list. Each
task calls :func:`goldgate.runner.run_step`, the function ``goldgate run`` and ``goldgate step`` use, so a step
does the same work under either runner. Retries, retry delays and time limits come from the use case's
``orchestration`` section. Tasks run one at a time in the flow's own thread: the steps share one workspace (one
DuckDB connection, one workspace lock), and in the main thread Prefect enforces a time limit with a signal
(SIGALRM), which also cuts sleeps and waits short; in a worker thread it could not.

Prefect reads its settings once, when it is first imported. So every entry point here calls
:func:`configure_prefect` first, which points ``PREFECT_HOME`` and the result storage under the workspace and turns
analytics off, and only then imports Prefect.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from goldgate.context import Context
from goldgate.dag import Step, topological_order
from goldgate.runner import StepFailedError, run_step
from goldgate.settings import load_settings
from goldgate.summary import build_summary
from goldgate.usecase import load_usecase
from goldgate.workspace_lock import workspace_lock

if TYPE_CHECKING:
    from prefect import Flow, Task
    from prefect.client.schemas.objects import State

log = logging.getLogger(__name__)

FLOW_NAME = "goldgate-pipeline"
FLOW_ATTRIBUTE = "goldgate_pipeline"
# Workers import the flow by module path, so a deployment needs no file path relative to where it was created.
ENTRYPOINT = f"{__name__}.{FLOW_ATTRIBUTE}"
DEFAULT_WORK_POOL = "goldgate"
EPHEMERAL_STARTUP_TIMEOUT = 90


def prefect_home(workspace: Path) -> Path:
    """Prefect's home (database, profiles, memo store) for a workspace: ``<workspace>/.prefect``."""
    return workspace / ".prefect"


def results_dir(workspace: Path) -> Path:
    """Where the flow and its tasks persist their results: ``<workspace>/.prefect/results``."""
    return prefect_home(workspace) / "results"


def prefect_environment(workspace: Path) -> dict[str, str]:
    """The environment variables that keep Prefect's state in the workspace and its analytics off."""
    return {
        "PREFECT_HOME": str(prefect_home(workspace)),
        "PREFECT_LOCAL_STORAGE_PATH": str(results_dir(workspace)),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def configure_prefect(workspace: Path) -> None:
    """Set Prefect's environment for ``workspace``; must run before Prefect is first imported.

    An API URL already configured (``PREFECT_API_URL``) is kept; without one Prefect starts a temporary local
    server on 127.0.0.1 whose database is ``<workspace>/.prefect/prefect.db``.
    """
    workspace = workspace.expanduser().resolve()
    results_dir(workspace).mkdir(parents=True, exist_ok=True)
    os.environ.update(prefect_environment(workspace))
    # goldgate's own log lines then appear in each task run's logs in the Prefect UI
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "goldgate")
    # ... and outside a flow run (deploy_flow), they go to the console only, without a warning per line
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # The temporary server takes 15-18 s to start on an idle 2-core machine; Prefect's 20 s limit is too tight
    # for a busy one.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT))
    if "prefect" in sys.modules:
        log.debug("Prefect was imported before configure_prefect; it keeps the settings it read then")


@dataclass(frozen=True)
class FlowParameters:
    """What one flow run needs; plain values, because Prefect stores them with the run."""

    usecase: str = "fx"
    workspace: str | None = None
    source: str | None = None
    engine: str | None = None
    dry_run: bool = False
    only: list[str] | None = None
    lock_wait_seconds: float = 0.0


def build_step_task(ctx: Context, step: Step) -> Task[[], dict[str, Any]]:
    """A Prefect task that runs ``step`` on ``ctx`` with the use case's retries and time limit for it."""
    from prefect import task

    policy = ctx.usecase.orchestration.policy(step.name)

    def run_goldgate_step() -> dict[str, Any]:
        return run_step(ctx, step)

    return task(
        name=step.name,
        description=step.description,
        task_run_name=step.name,
        retries=policy.retries,
        retry_delay_seconds=policy.retry_delay_seconds,
        timeout_seconds=policy.timeout_seconds,
        persist_result=True,
        result_storage=results_dir(ctx.settings.workspace_dir),
        # One file per flow run and step. The key is also the cache key, so a result is reused only by a retry
        # of the same flow run. Prefect's default key (inputs and source code) would be the same for every step:
        # each step's task has no inputs and the same code.
        result_storage_key="{flow_run.id}/" + step.name,
        tags=["goldgate", ctx.usecase.name],
    )(run_goldgate_step)


def _step_error(step: Step, state: State) -> StepFailedError:
    """The one-line error of a step whose final state is not Completed."""
    cause = state.result(raise_on_failure=False)
    if isinstance(cause, StepFailedError):
        return cause
    if isinstance(cause, BaseException):
        return StepFailedError(step.name, cause)
    return StepFailedError(step.name, RuntimeError(f"ended in state {state.name}: {state.message or 'no message'}"))


def run_steps(ctx: Context, only: list[str] | None = None) -> dict[str, Any]:
    """Run the DAG's steps (or ``only`` these) as Prefect tasks inside the current flow run; return the summary.

    Must be called from a flow. A step that still fails after its retries stops the run with StepFailedError.
    """
    steps = [s for s in topological_order() if only is None or s.name in only]
    started = time.perf_counter()
    states: dict[str, State] = {}
    for step in steps:
        # Dependencies outside ``only`` are taken as already done, as in the in-process runner.
        upstream = [states[name] for name in step.depends_on if name in states]
        state = build_step_task(ctx, step)(wait_for=upstream, return_state=True)
        states[step.name] = state
        if not state.is_completed():
            raise _step_error(step, state)
    ctx.results.setdefault("_seconds", {})["total"] = round(time.perf_counter() - started, 3)
    return build_summary(ctx)


def run_pipeline_flow(params: FlowParameters) -> dict[str, Any]:
    """The flow's body: open the workspace, hold its lock, run the steps and return the run summary."""
    settings = load_settings(workspace=Path(params.workspace) if params.workspace else None, engine=params.engine)
    ctx = Context(settings=settings, usecase=load_usecase(params.usecase), source=params.source, dry_run=params.dry_run)
    from goldgate.runlog import record_outcome, utc_now

    # The flow takes the lock and records the run itself, so a scheduled run started by a worker is as safe, and
    # as visible in ops.runs, as `goldgate run`.
    with workspace_lock(settings.workspace_dir, params.lock_wait_seconds):
        started = utc_now()
        try:
            summary = run_steps(ctx, params.only)
        except StepFailedError as exc:
            record_outcome(ctx, started, error=str(exc))
            raise
        record_outcome(ctx, started, summary=summary)
        return summary


def build_flow(result_dir: Path | None = None) -> Flow[..., dict[str, Any]]:
    """The goldgate flow; its result goes to ``result_dir`` (default: Prefect's local storage path)."""
    from prefect import flow

    storage: dict[str, Any] = {} if result_dir is None else {"result_storage": result_dir}

    @flow(
        name=FLOW_NAME,
        description="goldgate's DAG: ingest -> ... -> monitor, one task per step.",
        persist_result=True,
        **storage,
    )
    def goldgate_pipeline(
        usecase: str = "fx",
        workspace: str | None = None,
        source: str | None = None,
        engine: str | None = None,
        dry_run: bool = False,
        only: list[str] | None = None,
        lock_wait_seconds: float = 0.0,
    ) -> dict[str, Any]:
        """Run goldgate's DAG on a workspace and return the run summary (same shape as ``goldgate run``)."""
        return run_pipeline_flow(
            FlowParameters(usecase, workspace, source, engine, dry_run, only, lock_wait_seconds),
        )

    return goldgate_pipeline


def run_flow(params: FlowParameters) -> dict[str, Any]:
    """Run the flow once, now, in this process; return the run summary.

    Raises StepFailedError when a step fails after its retries, WorkspaceBusyError when another process holds the
    workspace.
    """
    workspace = load_settings(workspace=Path(params.workspace) if params.workspace else None).workspace_dir
    configure_prefect(workspace)
    pipeline = build_flow(results_dir(workspace))
    summary: dict[str, Any] = pipeline(
        usecase=params.usecase,
        workspace=str(workspace),
        source=params.source,
        engine=params.engine,
        dry_run=params.dry_run,
        only=params.only,
        lock_wait_seconds=params.lock_wait_seconds,
    )
    return summary


@dataclass(frozen=True)
class DeploymentInfo:
    """A deployment as the Prefect API stored it."""

    id: str
    name: str
    cron: str
    timezone: str
    work_pool: str
    parameters: dict[str, Any]
    api_url: str | None


def ensure_work_pool(name: str) -> None:
    """Create a ``process`` work pool called ``name`` unless it exists (workers run flows as local processes)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
            log.info("created work pool %s (type process)", name)


def deploy_flow(
    name: str,
    cron: str,
    params: FlowParameters,
    timezone: str = "UTC",
    work_pool: str = DEFAULT_WORK_POOL,
) -> DeploymentInfo:
    """Create or update a deployment of the flow on a cron schedule, in ``work_pool``; return what was stored.

    The deployment refers to the flow by module path (``ENTRYPOINT``): a worker runs it from the installed goldgate
    package, with nothing to pull from remote storage. Raises ValueError on an invalid cron or time zone.
    """
    workspace = load_settings(workspace=Path(params.workspace) if params.workspace else None).workspace_dir
    configure_prefect(workspace)
    from prefect import get_client
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.deployments.runner import EntrypointType, RunnerDeployment
    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL
    from pydantic import ValidationError

    try:  # check both before anything is written
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        raise ValueError("; ".join(str(e["msg"]) for e in exc.errors())) from None
    usecase = params.usecase
    if Path(usecase).suffix in {".yaml", ".yml"}:
        usecase = str(Path(usecase).expanduser().resolve())  # a worker may start in another directory
    parameters = {
        "usecase": usecase,
        "workspace": str(workspace),
        "source": params.source,
        "engine": params.engine,
        "dry_run": params.dry_run,
        "only": params.only,
        "lock_wait_seconds": params.lock_wait_seconds,
    }
    ensure_work_pool(work_pool)
    deployment = RunnerDeployment.from_flow(
        build_flow(),
        name=name,
        schedule=Cron(cron, timezone=timezone),
        parameters={k: v for k, v in parameters.items() if v is not None},
        description=f"goldgate {usecase} on {workspace}, {cron} ({timezone})",
        tags=["goldgate"],
        work_pool_name=work_pool,
        # the flow run's own results and Prefect state stay in the workspace, as with `goldgate run`
        job_variables={"env": prefect_environment(workspace)},
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment_id = deployment.apply()
    if not isinstance(deployment_id, UUID):  # apply() returns a coroutine when called inside an event loop
        raise RuntimeError("deploy_flow must be called from synchronous code, outside a running event loop")
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(deployment_id)
    crons = [s.schedule for s in stored.schedules if isinstance(s.schedule, CronSchedule)]
    return DeploymentInfo(
        id=str(stored.id),
        name=f"{FLOW_NAME}/{stored.name}",
        cron=crons[0].cron if crons else "",
        timezone=(crons[0].timezone or "UTC") if crons else "",
        work_pool=stored.work_pool_name or "",
        parameters=dict(stored.parameters),
        api_url=PREFECT_API_URL.value(),
    )


def __getattr__(name: str) -> Any:
    # Prefect loads a deployment's flow with getattr(module, FLOW_ATTRIBUTE): build it on that first access
    # rather than at import time, which would import Prefect before its environment is set.
    if name == FLOW_ATTRIBUTE:
        return build_flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
