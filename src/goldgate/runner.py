"""The in-process runner: the DAG's steps in order, with a progress display and per-step timings."""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from goldgate.context import Context
from goldgate.dag import Step, topological_order
from goldgate.summary import build_summary

log = logging.getLogger(__name__)


class StepFailedError(RuntimeError):
    """A step raised; the message names the step and the cause in one line."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"step {step} failed: {cause}")


def run_step(ctx: Context, step: Step) -> dict[str, Any]:
    """Run one step, timing it; the result lands in ``ctx.results``."""
    func = step.func  # imported outside the timing: module import is start-up cost, not the step's
    started = time.perf_counter()
    try:
        if step.uses_mlflow:
            ctx.mlflow_client()
        result = func(ctx)
    except Exception as exc:
        log.debug("step %s failed", step.name, exc_info=True)
        raise StepFailedError(step.name, exc) from exc
    seconds = time.perf_counter() - started
    ctx.results[step.name] = result
    ctx.results.setdefault("_seconds", {})[step.name] = round(seconds, 3)
    log.info("step %s done in %.2f s", step.name, seconds)
    return result


def run_pipeline(ctx: Context, console: Console | None = None, only: list[str] | None = None) -> dict[str, Any]:
    """Run every step (or ``only`` these, in DAG order) and return the run summary."""
    steps = [s for s in topological_order() if only is None or s.name in only]
    started = time.perf_counter()
    console = console or Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("goldgate", total=len(steps))
        for step in steps:
            progress.update(task, description=f"{ctx.usecase.name}: {step.name} — {step.description}")
            run_step(ctx, step)
            progress.advance(task)
        progress.update(task, description=f"{ctx.usecase.name}: done")
    ctx.results.setdefault("_seconds", {})["total"] = round(time.perf_counter() - started, 3)
    return build_summary(ctx)
