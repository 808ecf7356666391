"""The Prefect flow built from the DAG: step order and dependencies, retries and time limits from the use-case YAML,
results in the workspace, the CLI's `run --orchestrator prefect`, and a scheduled deployment read back from the API.

All flow tests share one Prefect test server (``prefect_test_harness``): it takes 15-30 s to start on a 2-core
machine, so it is started once per session.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.context import Context
from goldgate.dag import STEP_NAMES, STEPS, get_step, topological_order
from goldgate.orchestration import prefect_flow
from goldgate.orchestration.prefect_flow import (
    ENTRYPOINT,
    FLOW_NAME,
    FlowParameters,
    build_step_task,
    results_dir,
    run_flow,
)
from goldgate.runner import StepFailedError, run_pipeline
from goldgate.settings import load_settings
from goldgate.usecase import UseCaseError, load_usecase, parse_usecase

DATA_STEPS = ["ingest", "silver", "gold", "features"]
runner = CliRunner()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server and database for the session; Prefect's environment restored afterwards."""
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        # configure_prefect() rewrites these per workspace; setting them here first means they are restored at exit
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(home / "results"))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv("PREFECT_LOGGING_EXTRA_LOGGERS", "goldgate")
        mp.setenv("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
        mp.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield


def _usecase_with(base: Path, tmp_path: Path, orchestration: dict[str, Any]) -> Path:
    data = yaml.safe_load(base.read_text())
    data["orchestration"] = orchestration
    path = tmp_path / "usecase.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _patch_step(
    monkeypatch: pytest.MonkeyPatch, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    """Replace a step's function where the DAG imports it from; ``make`` receives the real one."""
    module, _, attr = get_step(name).target.partition(":")
    target = importlib.import_module(module)
    monkeypatch.setattr(target, attr, make(getattr(target, attr)))


def _flow_run_id(workspace: Path) -> UUID:
    """The single flow run that ran on a fresh workspace: task results are stored under <results>/<flow run id>/."""
    runs = [p for p in results_dir(workspace).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return UUID(runs[0].name)


def _task_runs(flow_run_id: UUID) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(runs, key=lambda r: r.start_time)


# --- the use case's orchestration section (no server needed) ------------------------------------------------------


def test_policies_default_and_override_per_step(slice_usecase_path: Path, tmp_path: Path) -> None:
    path = _usecase_with(
        slice_usecase_path,
        tmp_path,
        {"defaults": {"retries": 2, "retry_delay_seconds": 5}, "steps": {"train": {"timeout_seconds": 900}}},
    )
    orchestration = load_usecase(path).orchestration
    assert orchestration.policy("ingest").model_dump() == {
        "retries": 2,
        "retry_delay_seconds": 5.0,
        "timeout_seconds": 3600.0,
    }
    assert orchestration.policy("train").model_dump() == {
        "retries": 2,
        "retry_delay_seconds": 5.0,
        "timeout_seconds": 900.0,
    }


def test_a_use_case_without_the_section_gets_the_defaults() -> None:
    policy = load_usecase("fx").orchestration.policy("monitor")
    assert (policy.retries, policy.retry_delay_seconds, policy.timeout_seconds) == (1, 30.0, 3600.0)


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"steps": {"trian": {"retries": 1}}}, "unknown steps ['trian']"),
        ({"steps": {"train": {"retries": -1}}}, "orchestration.steps.train.retries"),
        ({"defaults": {"timeout_seconds": 0}}, "orchestration.defaults.timeout_seconds"),
        ({"defaults": {"retry": 1}}, "orchestration.defaults.retry': unknown key"),
    ],
)
def test_invalid_orchestration_sections_name_the_key(
    slice_usecase_path: Path, section: dict[str, Any], problem: str
) -> None:
    data = yaml.safe_load(slice_usecase_path.read_text())
    with pytest.raises(UseCaseError, match=re.escape(problem)):
        parse_usecase({**data, "orchestration": section})


def test_the_module_builds_the_flow_only_for_its_entrypoint_name() -> None:
    assert ENTRYPOINT == "goldgate.orchestration.prefect_flow.goldgate_pipeline"
    with pytest.raises(AttributeError, match="no_such_flow"):
        prefect_flow.no_such_flow  # noqa: B018


# --- flow runs on the test server ---------------------------------------------------------------------------------


def test_tasks_carry_the_yaml_retries_and_time_limits(
    prefect_api: None, slice_usecase_path: Path, tmp_path: Path
) -> None:
    path = _usecase_with(
        slice_usecase_path,
        tmp_path,
        {"defaults": {"retries": 3, "retry_delay_seconds": 7}, "steps": {"evaluate": {"timeout_seconds": 120}}},
    )
    ctx = Context(settings=load_settings(workspace=tmp_path / "ws"), usecase=load_usecase(path))
    tasks = {step.name: build_step_task(ctx, step) for step in STEPS}
    assert list(tasks) == list(STEP_NAMES)
    assert {n: (t.retries, t.retry_delay_seconds) for n, t in tasks.items()} == dict.fromkeys(STEP_NAMES, (3, 7.0))
    assert tasks["evaluate"].timeout_seconds == 120
    assert {t.timeout_seconds for n, t in tasks.items() if n != "evaluate"} == {3600.0}


def test_flow_runs_the_steps_in_dag_order_like_the_in_process_runner(
    prefect_api: None, slice_usecase_path: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    summary = run_flow(FlowParameters(usecase=str(slice_usecase_path), workspace=str(workspace), only=DATA_STEPS))

    task_runs = _task_runs(_flow_run_id(workspace))
    assert [r.name for r in task_runs] == DATA_STEPS
    ids = {r.name: r.id for r in task_runs}
    for run in task_runs:  # each task waited for exactly its DAG dependencies
        waited = {i.id for i in run.task_inputs.get("wait_for", [])}
        assert waited == {ids[d] for d in get_step(run.name).depends_on}, run.name
        assert run.state.is_completed()
    # every task's result is persisted in the workspace
    assert {p.name for p in (results_dir(workspace) / str(_flow_run_id(workspace))).iterdir()} == set(DATA_STEPS)

    ctx = Context(settings=load_settings(workspace=tmp_path / "local"), usecase=load_usecase(slice_usecase_path))
    local = run_pipeline(ctx, only=DATA_STEPS)
    assert set(summary) == set(local)
    assert summary["tables"] == local["tables"]
    assert set(summary["seconds"]) == {*DATA_STEPS, "total"}


def test_a_failing_step_is_retried_as_configured(
    prefect_api: None, slice_usecase_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _usecase_with(slice_usecase_path, tmp_path, {"steps": {"ingest": {"retries": 2, "retry_delay_seconds": 0}}})
    calls: list[float] = []

    def fail_first_time(real: Callable[..., Any]) -> Callable[..., Any]:
        def ingest(ctx: Context) -> Any:
            calls.append(time.perf_counter())
            if len(calls) == 1:
                raise OSError("source share not mounted yet")
            return real(ctx)

        return ingest

    _patch_step(monkeypatch, "ingest", fail_first_time)
    workspace = tmp_path / "ws"
    summary = run_flow(FlowParameters(usecase=str(path), workspace=str(workspace), only=["ingest"]))

    assert len(calls) == 2
    assert summary["tables"]["bronze.fxs_rates_raw"]["version"] == 0
    [task_run] = _task_runs(_flow_run_id(workspace))
    assert (task_run.name, task_run.run_count, task_run.state.is_completed()) == ("ingest", 2, True)


def test_a_step_failing_every_attempt_stops_the_flow_with_a_one_line_error(
    prefect_api: None, slice_usecase_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _usecase_with(slice_usecase_path, tmp_path, {"defaults": {"retries": 1, "retry_delay_seconds": 0}})
    calls: list[int] = []

    def always_fail(real: Callable[..., Any]) -> Callable[..., Any]:
        def silver(ctx: Context) -> Any:
            calls.append(1)
            raise ValueError("rule rate_positive: column rate missing")

        return silver

    _patch_step(monkeypatch, "silver", always_fail)
    workspace = tmp_path / "ws"
    with pytest.raises(StepFailedError, match=r"^step silver failed: rule rate_positive: column rate missing$"):
        run_flow(FlowParameters(usecase=str(path), workspace=str(workspace), only=["ingest", "silver", "gold"]))

    assert len(calls) == 2  # one attempt and one retry
    # gold never started: the flow stops at the first step that fails for good
    assert [r.name for r in _task_runs(_flow_run_id(workspace))] == ["ingest", "silver"]


def test_the_time_limit_comes_from_the_yaml(
    prefect_api: None, slice_usecase_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _usecase_with(slice_usecase_path, tmp_path, {"steps": {"ingest": {"timeout_seconds": 1, "retries": 0}}})

    def hang(real: Callable[..., Any]) -> Callable[..., Any]:
        def ingest(ctx: Context) -> Any:
            for _ in range(100):  # at most 10 s: bounded even if the time limit were not enforced
                time.sleep(0.1)
            return real(ctx)

        return ingest

    _patch_step(monkeypatch, "ingest", hang)
    started = time.perf_counter()
    with pytest.raises(StepFailedError, match=r"step ingest failed: .*timed out after 1\.0 second"):
        run_flow(FlowParameters(usecase=str(path), workspace=str(tmp_path / "ws"), only=["ingest"]))
    assert time.perf_counter() - started < 8


def test_cli_run_on_prefect_writes_the_summary_contract(
    prefect_api: None, slice_usecase_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The full loop trains and backtests for 30-60 s on a 2-core machine; the data steps exercise the same CLI path.
    # The in-process runner's full-loop test (tests/test_cli.py) covers the remaining steps.
    monkeypatch.setattr(prefect_flow, "topological_order", lambda: topological_order(STEPS[:4]))
    out = tmp_path / "summary.json"
    ws = tmp_path / "ws"
    args = ["run", "--orchestrator", "prefect", "--usecase", str(slice_usecase_path), "--workspace", str(ws)]
    result = runner.invoke(app, [*args, "--summary-json", str(out)])

    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert set(summary) >= {"use_case", "workspace", "tables", "quarantine", "runs", "gate", "champion", "seconds"}
    assert summary["workspace"] == str(ws.resolve())
    assert summary["tables"]["gold.fxs_features"]["version"] == 0
    assert set(summary["seconds"]) == {*DATA_STEPS, "total"}


def test_cli_run_on_prefect_fails_in_one_line_naming_the_step(
    prefect_api: None, slice_usecase_path: Path, tmp_path: Path
) -> None:
    path = _usecase_with(slice_usecase_path, tmp_path, {"defaults": {"retries": 0}})
    missing = tmp_path / "no-such-file.csv"
    args = ["run", "--orchestrator", "prefect", "--usecase", str(path), "--workspace", str(tmp_path / "ws")]
    result = runner.invoke(app, [*args, "--source", str(missing)])

    assert result.exit_code == 1
    assert "error: step ingest failed:" in result.output
    assert str(missing.name) in result.output


def test_deploy_creates_a_scheduled_deployment_readable_from_the_api(
    prefect_api: None, slice_usecase_path: Path, tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.flows import load_flow_from_entrypoint

    ws = tmp_path / "ws"
    args = ["deploy", "prefect", "--cron", "0 6 * * 1-5", "--name", "weekdays", "--timezone", "Europe/Berlin"]
    result = runner.invoke(app, [*args, "--usecase", str(slice_usecase_path), "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    assert "worker start --pool goldgate" in result.output

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{FLOW_NAME}/weekdays")
        pool = client.read_work_pool("goldgate")
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "0 6 * * 1-5",
        "Europe/Berlin",
        True,
    )
    assert deployment.parameters["workspace"] == str(ws.resolve())
    assert deployment.parameters["usecase"] == str(slice_usecase_path.resolve())
    assert (deployment.work_pool_name, pool.type) == ("goldgate", "process")
    assert deployment.entrypoint == ENTRYPOINT
    # a worker loads the flow from the installed package by that entrypoint
    assert load_flow_from_entrypoint(deployment.entrypoint).name == FLOW_NAME

    bad = runner.invoke(app, [*args[:2], "--cron", "0 6 * *", "--workspace", str(ws)])
    assert bad.exit_code == 1
    assert "deploy prefect: " in bad.output
    assert "Invalid cron string" in bad.output
