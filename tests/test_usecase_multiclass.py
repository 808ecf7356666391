"""task: multiclass in the use-case schema: its defaults, and a one-line error for every binary-only option."""

from __future__ import annotations

from typing import Any

import pytest

from goldgate.usecase import UseCaseError, load_usecase, parse_usecase


def species(**changes: Any) -> dict[str, Any]:
    """A minimal multiclass use case: a table of records whose `species` column is the class."""
    data: dict[str, Any] = {
        "name": "species",
        "task": "multiclass",
        "columns": {"species": {"type": "string", "role": "target"}, "bill": "float", "island": "string"},
        "target": {"kind": "label", "column": "species"},
    }
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return data


def test_multiclass_defaults_follow_from_the_task_and_the_data() -> None:
    uc = parse_usecase(species())
    assert uc.task == "multiclass"
    assert uc.evaluation.primary_metric == "log_loss"
    assert uc.evaluation.scheme == "kfold"  # no time column
    assert (uc.models.baseline.name, uc.models.baseline.kind) == ("prior", "prior")
    assert [(c.name, c.kind) for c in uc.models.candidates] == [
        ("logistic", "logistic"),
        ("lightgbm", "lightgbm_classifier"),
    ]
    assert all(m.calibration == "none" for m in [uc.models.baseline, *uc.models.candidates])
    assert uc.gate.ece_tolerance == 0.05
    assert "p_<class>" in uc.descriptions[uc.tables.predictions]["*"]


def test_multiclass_brier_is_allowed_and_regression_metrics_are_not() -> None:
    assert parse_usecase(species(evaluation={"primary_metric": "brier"})).evaluation.primary_metric == "brier"
    with pytest.raises(UseCaseError, match="does not fit task 'multiclass'"):
        parse_usecase(species(evaluation={"primary_metric": "rmse"}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": {"positive": "Adelie"}}, "target.positive names a binary task's class"),
        ({"target": {"negative": "Gentoo"}}, "target.negative names a binary task's class"),
        (
            {"models": {"candidates": [{"name": "lgb", "kind": "lightgbm_classifier", "calibration": "isotonic"}]}},
            "isotonic calibration, which is binary only",
        ),
        ({"models": {"baseline": {"name": "rate", "kind": "prior_rate"}}}, "not a multiclass model"),
        ({"models": {"candidates": [{"name": "lin", "kind": "linear"}]}}, "not a multiclass model"),
    ],
)
def test_binary_only_options_are_refused_in_one_line(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UseCaseError, match=message) as err:
        parse_usecase(species(**changes))
    assert "\n" not in str(err.value)


def test_multiclass_needs_a_label_target() -> None:
    data = species(
        columns={"day": {"type": "date", "role": "time"}},
        target={"kind": "value_at", "column": "bill", "horizon": 1},
    )
    with pytest.raises(UseCaseError, match=r"target\.kind must be label"):
        parse_usecase(data)


def test_binary_alias_still_means_classification() -> None:
    data = species(task="binary", target={"positive": "Adelie"})
    assert parse_usecase(data).task == "classification"


def test_the_shipped_species_example_is_multiclass() -> None:
    uc = load_usecase("penguins_species")
    assert (uc.task, uc.target.kind, uc.target.column) == ("multiclass", "label", "species")
    assert uc.evaluation.primary_metric == "log_loss"
    assert uc.models.registered_name == "penguins_species"
