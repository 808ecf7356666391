"""Unity Catalog names: logical table names and model names mapped per catalog, schema prefix and registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from goldgate.catalog_names import (
    model_uri,
    registered_model_name,
    schema_name,
    split_logical_name,
    table_address,
    uses_unity_catalog_registry,
)
from goldgate.settings import Settings
from goldgate.usecase import load_usecase


def _settings(**values: object) -> Settings:
    # _env_file=None: a developer's .env must not change what these tests expect
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _no_goldgate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GOLDGATE_UC_CATALOG", "GOLDGATE_UC_SCHEMA", "GOLDGATE_REGISTRY_URI", "GOLDGATE_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)


def test_default_mapping_puts_each_layer_in_its_own_schema() -> None:
    settings = _settings()
    assert table_address("bronze.fx_rates_raw", settings) == "main.goldgate_bronze.fx_rates_raw"
    assert table_address("quarantine.fx_rates", settings) == "main.goldgate_quarantine.fx_rates"
    assert table_address("ops.promotions", settings) == "main.goldgate_ops.promotions"


def test_catalog_and_schema_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDGATE_UC_CATALOG", "prod")
    monkeypatch.setenv("GOLDGATE_UC_SCHEMA", "fxteam")
    settings = _settings()
    assert table_address("gold.fx_features", settings) == "prod.fxteam_gold.fx_features"
    assert schema_name("silver", settings) == "fxteam_silver"


def test_every_table_of_the_fx_use_case_maps_to_three_distinct_parts() -> None:
    uc = load_usecase("fx")
    settings = _settings(uc_catalog="staging")
    names = [uc.tables.bronze, uc.tables.silver, uc.tables.gold, uc.tables.features, uc.tables.predictions]
    addresses = [table_address(n, settings) for n in [*names, uc.tables.quarantine]]
    assert len(set(addresses)) == len(addresses)
    for logical, address in zip([*names, uc.tables.quarantine], addresses, strict=True):
        catalog, schema, table = address.split(".")
        layer, short = logical.split(".")
        assert (catalog, schema, table) == ("staging", f"goldgate_{layer}", short)


@pytest.mark.parametrize(
    "name",
    ["fx_rates_raw", "bronze.", ".fx", "bronze.fx.rates", "Bronze.fx", "bronze.fx-rates", "bronze.1x", "gold.fx rates"],
)
def test_malformed_logical_names_are_rejected_with_the_name(name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"'{name}'")):
        table_address(name, _settings())


def test_split_logical_name_returns_layer_and_table() -> None:
    assert split_logical_name("gold.fx_predictions") == ("gold", "fx_predictions")


@pytest.mark.parametrize("field", ["uc_catalog", "uc_schema"])
@pytest.mark.parametrize("value", ["Main", "my-catalog", "a.b", "", "9lives"])
def test_settings_reject_names_unity_catalog_would_need_quoted(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _settings(**{field: value})


def test_model_name_is_unchanged_outside_unity_catalog() -> None:
    settings = _settings(tracking_uri="sqlite:////tmp/mlflow.db")
    assert not uses_unity_catalog_registry(settings)
    assert registered_model_name("fx_realized_vol", settings) == "fx_realized_vol"
    assert model_uri("fx_realized_vol", "champion", settings) == "models:/fx_realized_vol@champion"


def test_model_name_is_three_level_in_unity_catalog() -> None:
    settings = _settings(registry_uri="databricks-uc", uc_catalog="prod", uc_schema="goldgate")
    assert uses_unity_catalog_registry(settings)
    assert registered_model_name("fx_realized_vol", settings) == "prod.goldgate_models.fx_realized_vol"
    # the aliases are the same on both registries
    assert model_uri("fx_realized_vol", "champion", settings) == "models:/prod.goldgate_models.fx_realized_vol@champion"
    assert model_uri("fx_realized_vol", "challenger", settings).endswith("@challenger")


def test_registry_uri_with_a_profile_still_counts_as_unity_catalog() -> None:
    settings = _settings(registry_uri="databricks-uc://my-profile")
    assert registered_model_name("m", settings) == "main.goldgate_models.m"


def test_registry_falls_back_to_the_tracking_uri() -> None:
    assert _settings(tracking_uri="databricks-uc").resolved_registry_uri == "databricks-uc"
    assert _settings(tracking_uri="databricks").resolved_registry_uri == "databricks"
    assert not uses_unity_catalog_registry(_settings(tracking_uri="databricks"))


def test_a_model_name_unity_catalog_cannot_hold_is_rejected() -> None:
    with pytest.raises(ValueError, match="registered model name 'fx-vol'"):
        registered_model_name("fx-vol", _settings(registry_uri="databricks-uc"))


def test_a_context_on_a_unity_catalog_registry_uses_the_three_part_model_name(tmp_path: Path) -> None:
    from goldgate.context import Context
    from goldgate.settings import load_settings
    from goldgate.usecase import load_usecase

    uc_settings = load_settings(workspace=tmp_path, registry_uri="databricks-uc", uc_catalog="prod", uc_schema="gg")
    ctx = Context(uc_settings, load_usecase("fx"))
    assert ctx.usecase.models.registered_name == "prod.gg_models.fx_realized_vol"
    local = Context(load_settings(workspace=tmp_path), load_usecase("fx"))
    assert local.usecase.models.registered_name == "fx_realized_vol"
