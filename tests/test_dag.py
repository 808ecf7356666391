"""The step list: order, dependencies, lookup, and every step's function."""

from __future__ import annotations

import itertools

import pytest

from goldgate.dag import STEP_NAMES, STEPS, Step, get_step, topological_order

ORDER = ["ingest", "silver", "gold", "features", "train", "evaluate", "gate", "register", "score", "monitor"]


def step(name: str, *deps: str) -> Step:
    return Step(name, "goldgate.metrics:regression_metrics", tuple(deps), f"step {name}")


def test_steps_are_in_pipeline_order() -> None:
    assert [s.name for s in STEPS] == ORDER
    assert list(STEP_NAMES) == ORDER


def test_each_step_depends_on_the_one_before() -> None:
    assert STEPS[0].depends_on == ()
    for before, after in itertools.pairwise(STEPS):
        assert after.depends_on == (before.name,)


def test_topological_order_of_the_real_steps_is_the_declared_order() -> None:
    assert [s.name for s in topological_order()] == ORDER


def test_topological_order_puts_dependencies_first() -> None:
    steps = (step("c", "a", "b"), step("b", "a"), step("d", "c"), step("a"))
    names = [s.name for s in topological_order(steps)]
    assert sorted(names) == ["a", "b", "c", "d"]
    for s in steps:
        assert all(names.index(d) < names.index(s.name) for d in s.depends_on)


def test_cycle_is_detected() -> None:
    with pytest.raises(ValueError, match=r"cycle in the DAG: a -> c -> b -> a"):
        topological_order((step("a", "c"), step("b", "a"), step("c", "b")))


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        topological_order((step("a", "a"),))


def test_unknown_dependency_is_named() -> None:
    with pytest.raises(ValueError, match="step 'b' depends on unknown step 'nope'"):
        topological_order((step("a"), step("b", "nope")))


def test_get_step_by_name() -> None:
    gate = get_step("gate")
    assert gate.name == "gate"
    assert gate.depends_on == ("evaluate",)


def test_get_step_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(KeyError) as err:
        get_step("deploy")
    message = str(err.value)
    assert "unknown step 'deploy'" in message
    assert ", ".join(ORDER) in message


def test_func_imports_the_target() -> None:
    from goldgate.metrics import regression_metrics

    assert step("x").func is regression_metrics
    with pytest.raises(AttributeError):
        _ = Step("x", "goldgate.metrics:no_such_function", (), "").func


@pytest.mark.parametrize("s", STEPS, ids=lambda s: s.name)
def test_every_step_func_resolves_to_a_callable(s: Step) -> None:
    fn = s.func  # imports goldgate.pipeline (and MLflow with it) once for the whole session
    assert callable(fn)
    assert fn.__name__ == s.target.partition(":")[2]
    assert s.description


def test_only_the_model_steps_use_mlflow() -> None:
    assert [s.name for s in STEPS if not s.uses_mlflow] == ["ingest", "silver", "gold", "features"]
