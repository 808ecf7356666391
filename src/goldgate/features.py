"""The feature table of a use case from its gold table, and which of its columns are model inputs.

A use case's features are declared in its YAML and compiled by ``goldgate.data.features``. Every feature at time t
uses rows up to t only; the target (and its end date) are the columns that look forward.
"""

from __future__ import annotations

import ibis.expr.types as ir

from goldgate.usecase import Target, UseCase

# Date of the last row the target looks at: training rows whose label ends on or after a test window's first date
# are purged.
LABEL_END = "target_end"


def feature_columns(table_columns: list[str], target: Target, keys: list[str] | tuple[str, ...]) -> list[str]:
    """Every column that is neither a key nor the target (nor the target's end date, nor engine bookkeeping)."""
    return [c for c in table_columns if c not in (*keys, target.name, LABEL_END) and not c.startswith("_")]


def model_feature_columns(table_columns: list[str], usecase: UseCase) -> list[str]:
    """The feature columns of a use case's feature table (everything but its entity, time and target columns)."""
    return feature_columns(table_columns, usecase.target, (usecase.entity, usecase.time))


def build_feature_table(gold: ir.Table, usecase: UseCase) -> ir.Table:
    """The use case's feature table from its gold table: the declared DSL features."""
    from goldgate.data.features import build_dsl_features

    return build_dsl_features(gold, usecase)
