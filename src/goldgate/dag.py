"""THE step list. The CLI, the in-process runner (and any orchestrator target) are derived from it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    name: str
    target: str  # "module:function", imported on first call so the CLI starts fast
    depends_on: tuple[str, ...]
    description: str
    uses_mlflow: bool = False

    @property
    def func(self) -> Callable[..., dict[str, Any]]:
        module, _, attr = self.target.partition(":")
        # A step takes the run's Context; it is not imported here, so the use-case schema may read STEP_NAMES.
        fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), attr)
        return fn


STEPS: tuple[Step, ...] = (
    Step("ingest", "goldgate.pipeline:ingest", (), "source file(s) -> bronze, as received"),
    Step("silver", "goldgate.pipeline:silver", ("ingest",), "typed, deduplicated; failing rows to quarantine"),
    Step("gold", "goldgate.pipeline:gold", ("silver",), "log returns (fx); deals joined with references (crm)"),
    Step("features", "goldgate.pipeline:features", ("gold",), "point-in-time features and forward target"),
    Step("train", "goldgate.pipeline:train", ("features",), "baseline and candidates as MLflow runs", True),
    Step("evaluate", "goldgate.pipeline:evaluate", ("train",), "walk-forward backtest, champion included", True),
    Step("gate", "goldgate.pipeline:gate", ("evaluate",), "promote only what beats baseline and champion", True),
    Step("register", "goldgate.pipeline:register", ("gate",), "registry version, challenger -> champion", True),
    Step("score", "goldgate.pipeline:score", ("register",), "champion predictions with lineage", True),
    Step("monitor", "goldgate.pipeline:monitor", ("score",), "feature drift against the training window", True),
)

STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)


def get_step(name: str) -> Step:
    """A step by name (raises KeyError listing the valid names)."""
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"unknown step '{name}'; steps are: {', '.join(STEP_NAMES)}")


def topological_order(steps: tuple[Step, ...] = STEPS) -> list[Step]:
    """Steps ordered so each comes after everything it depends on (raises on cycles or unknown names)."""
    by_name = {s.name: s for s in steps}
    done: list[Step] = []
    seen: set[str] = set()

    def visit(step: Step, path: tuple[str, ...]) -> None:
        if step.name in path:
            raise ValueError(f"cycle in the DAG: {' -> '.join((*path, step.name))}")
        if step.name in seen:
            return
        for dep in step.depends_on:
            if dep not in by_name:
                raise ValueError(f"step '{step.name}' depends on unknown step '{dep}'")
            visit(by_name[dep], (*path, step.name))
        seen.add(step.name)
        done.append(step)

    for step in steps:
        visit(step, ())
    return done
