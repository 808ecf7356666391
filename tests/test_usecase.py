"""Use-case YAML: the bundled fx file loads; unknown keys, wrong types and bad files are clear errors."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from goldgate.data.schema import cast_expectations
from goldgate.usecase import UseCaseError, bundled_usecases, load_usecase, parse_usecase


def fx_dict() -> dict[str, Any]:
    """The bundled fx use case as a fresh, mutable mapping."""
    return copy.deepcopy(yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text()))


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_bundled_fx_loads() -> None:
    uc = load_usecase("fx")
    assert uc.name == "fx"
    assert uc.task == "regression"
    assert (uc.entity, uc.time) == ("currency", "date")
    assert uc.source.kind == "file"  # pure YAML on the declarative engine
    assert uc.source.unpivot is not None
    assert uc.source.unpivot.id_columns == ["Date"]
    assert uc.tables.silver == "silver.fx_rates"
    assert (uc.target.kind, uc.target.horizon, uc.target.name) == ("aggregate", 5, "target_rv_5d")
    assert uc.models.baseline.kind == "persistence"
    assert [m.name for m in uc.models.candidates] == ["har", "lightgbm"]
    assert {e.name for e in uc.expectations} == {"rate_positive", "currency_code"}
    typing = {e.name for e in cast_expectations(uc.columns, uc.source)}  # generated from the column types
    assert {"date_parses", "rate_parses", "date_present", "currency_present"} <= typing
    assert uc.gap == 5


def test_bundled_use_cases_are_listed() -> None:
    assert "fx" in bundled_usecases()


def test_load_by_path_equals_load_by_name(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "fx_copy.yaml", fx_dict())
    assert load_usecase(path) == load_usecase("fx")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ((), "colour"),
        (("models", "baseline"), "colour"),
        (("source",), "url"),
        (("evaluation",), "holdout"),
    ],
)
def test_unknown_key_is_named(path: tuple[str, ...], key: str) -> None:
    data = fx_dict()
    node = data
    for part in path:
        node = node[part]
    node[key] = "red"
    with pytest.raises(UseCaseError) as err:
        parse_usecase(data, origin="my.yaml")
    dotted = ".".join((*path, key))
    assert f"key '{dotted}': unknown key" in str(err.value)
    assert str(err.value).startswith("my.yaml:")


def test_unknown_key_in_a_list_item_names_its_index() -> None:
    data = fx_dict()
    data["models"]["candidates"][1]["colour"] = "red"
    with pytest.raises(UseCaseError, match=r"key 'models\.candidates\.1\.colour': unknown key"):
        parse_usecase(data)


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("target", "horizon"), "five", "target.horizon"),
        (("features", "values"), "maybe", "features.values"),
        (("gate", "margin"), -0.1, "gate.margin"),
        (("evaluation", "primary_metric"), "mape", "evaluation.primary_metric"),
        (("monitoring", "bins"), [10], "monitoring.bins"),
    ],
)
def test_wrong_type_or_value_names_the_key(path: tuple[str, ...], value: Any, key: str) -> None:
    data = fx_dict()
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(UseCaseError) as err:
        parse_usecase(data)
    assert f"key '{key}'" in str(err.value)
    assert "unknown key" not in str(err.value)


def test_missing_required_key_is_named() -> None:
    data = fx_dict()
    del data["task"]
    with pytest.raises(UseCaseError, match=r"key 'task'"):
        parse_usecase(data)


def test_gap_smaller_than_horizon_is_rejected() -> None:
    data = fx_dict()
    data["evaluation"]["gap_days"] = 3
    with pytest.raises(UseCaseError, match=r"gap_days \(3\) must be >= target\.horizon \(5\)"):
        parse_usecase(data)


def test_gap_defaults_to_horizon() -> None:
    data = fx_dict()
    data["evaluation"]["gap_days"] = None
    data["target"]["horizon"] = 7
    assert parse_usecase(data).gap == 7


def test_unknown_use_case_name_lists_the_bundled_ones() -> None:
    with pytest.raises(UseCaseError) as err:
        load_usecase("no_such_case")
    message = str(err.value)
    assert "unknown use case 'no_such_case'" in message
    for name in bundled_usecases():
        assert name in message


def test_missing_yaml_path_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(UseCaseError, match="cannot read use case") as err:
        load_usecase(path)
    assert str(path) in str(err.value)


def test_unreadable_yaml_path_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a_folder.yaml"
    path.mkdir()
    with pytest.raises(UseCaseError, match="cannot read use case") as err:
        load_usecase(path)
    assert str(path) in str(err.value)


def test_invalid_yaml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: fx\nmodels: [1, 2\n")
    with pytest.raises(UseCaseError, match="not valid YAML") as err:
        load_usecase(path)
    assert str(path) in str(err.value)


def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UseCaseError, match="must be a YAML mapping, got list") as err:
        load_usecase(path)
    assert str(path) in str(err.value)


def test_invalid_file_errors_name_the_file(tmp_path: Path) -> None:
    data = fx_dict()
    data["models"]["baseline"]["colour"] = "red"
    path = write_yaml(tmp_path / "bad.yaml", data)
    with pytest.raises(UseCaseError, match=r"key 'models\.baseline\.colour': unknown key") as err:
        load_usecase(path)
    assert str(err.value).startswith(f"{path}: invalid use case")


@pytest.mark.parametrize(
    ("section", "changes", "message"),
    [
        ("gate", {"min_fold_wins": 5}, r"gate\.min_fold_wins \(5\) exceeds evaluation\.folds \(4\)"),
        ("evaluation", {"window": "rolling"}, "train_days is required when evaluation.window is rolling"),
    ],
)
def test_cross_field_rules(section: str, changes: dict[str, Any], message: str) -> None:
    data = fx_dict()
    data[section].update(changes)
    with pytest.raises(UseCaseError, match=message):
        parse_usecase(data)


def crm_dict() -> dict[str, Any]:
    text = (resources.files("goldgate") / "usecases" / "crm.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def test_bundled_crm_is_a_classification_on_monthly_snapshots() -> None:
    uc = load_usecase("crm")
    assert uc.task == "classification"
    assert uc.snapshots is not None
    assert uc.snapshots.every == "month"
    assert (uc.entity, uc.time, uc.gold_keys) == ("opportunity_id", "snapshot_date", ["opportunity_id"])
    assert uc.evaluation.primary_metric == "brier"
    assert uc.target.unit == "days"
    assert uc.gap == 1  # the label end date purges overlapping training rows; one date still separates windows


def test_a_metric_that_does_not_fit_the_task_is_rejected() -> None:
    data = crm_dict()
    data["evaluation"]["primary_metric"] = "rmse"
    with pytest.raises(UseCaseError, match="does not fit task 'classification'"):
        parse_usecase(data)


def test_time_slicing_keys_are_rejected_without_a_time_column() -> None:
    data = crm_dict()
    data["source"]["start"] = "2021-01-01"
    with pytest.raises(UseCaseError, match="no column has role time"):
        parse_usecase(data)


def test_features_of_the_wrong_family_are_named() -> None:
    data = crm_dict()
    data["features"] = {"return_lags": [1]}
    with pytest.raises(UseCaseError, match=r"key 'features\.return_lags': unknown key"):
        parse_usecase(data)


def test_a_mapping_needs_values_or_a_reference() -> None:
    data = crm_dict()
    data["mappings"] = [{"column": "product"}]
    with pytest.raises(UseCaseError, match="needs values, a reference, or both"):
        parse_usecase(data)
