"""Unity Catalog names of goldgate's tables and registered models, derived from the settings.

goldgate addresses tables by logical name, ``<layer>.<table>`` (``bronze.fx_rates_raw``). On Databricks the same
table lives in Unity Catalog under a three-level name: the catalog is ``GOLDGATE_UC_CATALOG`` and each layer has
its own schema, ``<GOLDGATE_UC_SCHEMA>_<layer>``::

    bronze.fx_rates_raw  ->  main.goldgate_bronze.fx_rates_raw     (uc_catalog=main, uc_schema=goldgate)

One schema per layer lets a workspace grant access by layer (analysts read ``*_gold``, nobody but the pipeline
writes ``*_bronze``). Registered models get a three-level name too when the MLflow registry is Unity Catalog
(``GOLDGATE_REGISTRY_URI=databricks-uc``): ``<catalog>.<uc_schema>_models.<model>``. The aliases stay the same
(``@challenger``, ``@champion``); Unity Catalog supports aliases and has no stages.

Everything here is a pure function of its arguments: the Databricks bundle passes the catalog and schema to each
job as ``GOLDGATE_UC_CATALOG`` / ``GOLDGATE_UC_SCHEMA``, and the settings read them.
"""

from __future__ import annotations

import re

from goldgate.settings import Settings

UC_REGISTRY_URI = "databricks-uc"
MODELS_LAYER = "models"

# Unity Catalog folds names to lower case; accepting only the folded form keeps a name identical everywhere
# (SQL, the Python API, the catalog explorer) and needs no quoting.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def check_identifier(part: str, what: str) -> str:
    """``part`` if it is a valid unquoted Unity Catalog identifier, else a ValueError naming ``what``."""
    if not _IDENTIFIER.match(part) or len(part) > 255:
        raise ValueError(
            f"{what} '{part}' is not a Unity Catalog identifier (lower-case letters, digits and '_', "
            "not starting with a digit, at most 255 characters)"
        )
    return part


def split_logical_name(name: str) -> tuple[str, str]:
    """``(layer, table)`` of a logical table name ``<layer>.<table>``."""
    layer, dot, table = name.partition(".")
    if not dot or not layer or not table or "." in table:
        raise ValueError(f"logical table name '{name}' must be <layer>.<table>, e.g. bronze.fx_rates_raw")
    return check_identifier(layer, f"layer of '{name}'"), check_identifier(table, f"table of '{name}'")


def schema_name(layer: str, settings: Settings) -> str:
    """The Unity Catalog schema of a layer: ``<uc_schema>_<layer>``."""
    return check_identifier(f"{settings.uc_schema}_{layer}", f"schema of layer '{layer}'")


def table_address(name: str, settings: Settings) -> str:
    """The three-level Unity Catalog name of a logical table (``bronze.x`` -> ``main.goldgate_bronze.x``)."""
    layer, table = split_logical_name(name)
    catalog = check_identifier(settings.uc_catalog, "catalog")
    return f"{catalog}.{schema_name(layer, settings)}.{table}"


def uses_unity_catalog_registry(settings: Settings) -> bool:
    """Whether models are registered in Unity Catalog (registry URI ``databricks-uc`` or ``databricks-uc://…``)."""
    uri = settings.resolved_registry_uri
    return uri == UC_REGISTRY_URI or uri.startswith(f"{UC_REGISTRY_URI}://")


def registered_model_name(name: str, settings: Settings) -> str:
    """The registry name of a model: ``<catalog>.<uc_schema>_models.<name>`` in Unity Catalog, else ``name``."""
    if not uses_unity_catalog_registry(settings):
        return name
    model = check_identifier(name, "registered model name")
    catalog = check_identifier(settings.uc_catalog, "catalog")
    return f"{catalog}.{schema_name(MODELS_LAYER, settings)}.{model}"


def model_uri(name: str, alias: str, settings: Settings) -> str:
    """``models:/<registry name>@<alias>``: the same alias on either registry."""
    return f"models:/{registered_model_name(name, settings)}@{alias}"
