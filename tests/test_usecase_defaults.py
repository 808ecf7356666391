"""A file use case derives its keys, tables, models, metric and evaluation scheme from its columns and task."""

from __future__ import annotations

from typing import Any

import pytest

from goldgate.usecase import UseCaseError, parse_usecase
from goldgate.usecase_defaults import AS_OF, ROW_ID, SERIES


def _spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "demo",
        "task": "regression",
        "source": {"kind": "file", "path": "data.csv"},
        "columns": {"day": {"type": "date", "role": "time"}, "value": "float"},
        "target": {"kind": "value_at", "column": "value", "horizon": 2},
    }
    return {**base, **over}


def test_single_series_gets_a_series_key_and_a_persistence_baseline() -> None:
    uc = parse_usecase(_spec())
    assert (uc.entity, uc.time) == (SERIES, "day")
    assert uc.time_column == "day"
    assert uc.entity_columns == []
    assert uc.models.baseline.kind == "persistence"
    assert uc.models.baseline.features == ["value"]
    assert [c.kind for c in uc.models.candidates] == ["linear", "lightgbm"]
    assert uc.evaluation.scheme == "walk_forward"
    assert uc.evaluation.primary_metric == "rmse"
    assert uc.tables.features == "gold.demo_features"
    assert uc.models.registered_name == "demo"
    assert uc.target.name == "target"
    assert uc.gap == 2


def test_several_entity_columns_make_one_composite_key() -> None:
    columns = {"store": "string", "item": "int", "day": {"type": "date", "role": "time"}, "value": "float"}
    uc = parse_usecase(_spec(columns=columns, entity=["store", "item"]))
    assert uc.entity == "store_item_key"
    assert uc.entity_columns == ["store", "item"]


def test_a_table_without_time_is_evaluated_by_stratified_kfold_with_entity_blocks() -> None:
    columns = {
        "id": {"type": "string", "role": "entity"},
        "x": "float",
        "churned": {"type": "string", "role": "target"},
    }
    uc = parse_usecase(
        _spec(task="binary", columns=columns, target={"kind": "label", "column": "churned", "positive": "Yes"})
    )
    assert (uc.entity, uc.time) == ("id", AS_OF)
    assert uc.task == "classification"
    assert uc.evaluation.scheme == "kfold"
    assert uc.evaluation.folds == 5
    assert uc.evaluation.primary_metric == "brier"
    assert uc.gate.bootstrap_unit == "entity"
    assert uc.models.baseline.kind == "prior"
    assert uc.monitoring.reference_days is None


def test_no_entity_and_no_time_makes_each_row_a_record() -> None:
    columns = {"x": "float", "y": {"type": "float", "role": "target"}}
    uc = parse_usecase(_spec(columns=columns, target={"kind": "label", "column": "y"}))
    assert (uc.entity, uc.time) == (ROW_ID, AS_OF)
    assert uc.models.baseline.kind == "mean"


def test_yaml_values_win_over_defaults() -> None:
    uc = parse_usecase(_spec(evaluation={"folds": 3, "test_days": 10}, models={"registered_name": "mine"}))
    assert uc.evaluation.folds == 3
    assert uc.evaluation.test_days == 10
    assert uc.models.registered_name == "mine"
    assert uc.models.baseline.kind == "persistence"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"target": {"column": "value"}}, "target.kind"),
        ({"columns": {}}, "needs columns"),
        ({"entity": "ticker"}, "entity 'ticker' is not one of the columns"),
        ({"columns": {"a": {"type": "date", "role": "time"}, "b": {"type": "date", "role": "time"}}}, "role time"),
        ({"columns": {"day": {"type": "date", "role": "time"}, "value": "decimal"}}, "columns.value.type"),
        ({"target": {"kind": "event", "horizon": 1}}, "needs `event`"),
    ],
)
def test_bad_file_use_cases_name_the_key(over: dict[str, Any], message: str) -> None:
    with pytest.raises(UseCaseError, match=message):
        parse_usecase(_spec(**over), "demo.yaml")


def test_derive_ops_check_their_options() -> None:
    with pytest.raises(UseCaseError, match="exactly one of window"):
        parse_usecase(_spec(features={"derive": [{"op": "rolling", "column": "value"}]}))
    with pytest.raises(UseCaseError, match="halflife"):
        parse_usecase(_spec(features={"derive": [{"op": "ewm", "column": "value"}]}))


def test_a_use_case_without_source_reads_the_file_given_with_source() -> None:
    spec = _spec()
    del spec["source"]
    uc = parse_usecase(spec)
    assert uc.source.kind == "file"
    assert uc.source.path is None
    assert uc.source.package is None
