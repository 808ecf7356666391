"""Sensible defaults of a ``file`` use case, derived from its columns and task before validation.

A use case names its columns and their roles; the rest follows: the key columns of the feature table, the
table names, the feature family, the baseline and candidates for the task, the metric, the evaluation scheme
(walk-forward over time, k-fold without a time column) and the bootstrap unit. Anything written in the YAML wins.
"""

from __future__ import annotations

from typing import Any

# Key columns the engine adds when the data has none of its own.
SERIES = "series"  # no entity column: one series, named after the use case
ROW_ID = "row_id"  # no entity and no time: each row is its own record
AS_OF = "as_of"  # no time column: the date the batch was ingested
SNAPSHOT_TIME = "snapshot_date"  # features.snapshots: the period end a row is a snapshot at

CLASSIFICATION_ALIASES = ("binary", "classification")
TIME_TARGETS = ("value_at", "aggregate", "event")


def _column_specs(columns: Any) -> dict[str, dict[str, Any]]:
    """``name: type`` shorthand and empty entries as full column mappings."""
    if not isinstance(columns, dict):
        raise ValueError("columns must map each column name to its type, role and options")
    specs: dict[str, dict[str, Any]] = {}
    for name, spec in columns.items():
        if spec is None:
            specs[str(name)] = {}
        elif isinstance(spec, str):
            specs[str(name)] = {"type": spec}
        elif isinstance(spec, dict):
            specs[str(name)] = dict(spec)
        else:
            raise ValueError(f"column '{name}': expected a type name or a mapping, got {type(spec).__name__}")
    return specs


def _apply_shorthand_roles(data: dict[str, Any], specs: dict[str, dict[str, Any]], snapshots: bool) -> None:
    """Top-level ``entity:`` (a name or a list) and ``time:`` set those columns' roles (with snapshots, ``time``
    names the snapshot column instead)."""
    entity = data.get("entity")
    named = [entity] if isinstance(entity, str) else list(entity or [])
    times = [data["time"]] if data.get("time") and not snapshots else []
    for role, names in (("entity", named), ("time", times)):
        for name in names:
            if name not in specs:
                raise ValueError(f"{role} '{name}' is not one of the columns ({', '.join(specs) or 'none declared'})")
            given = specs[name].get("role")
            if given not in (None, "feature", role):
                raise ValueError(f"column '{name}' is the {role} but its role says {given}")
            specs[name]["role"] = role


def key_columns(specs: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The feature table's entity and time columns: the data's own, or the engine's stand-ins."""
    entities = [n for n, c in specs.items() if c.get("role") == "entity"]
    times = [n for n, c in specs.items() if c.get("role") == "time"]
    if len(times) > 1:
        raise ValueError(f"more than one column has role time: {', '.join(times)}")
    time = times[0] if times else AS_OF
    if len(entities) == 1:
        entity = entities[0]
    elif entities:
        entity = "_".join(entities) + "_key"
    else:
        entity = SERIES if times else ROW_ID
    if (entity in specs and entity not in entities) or (time in specs and not times):
        raise ValueError(f"column names '{entity}' and '{time}' are the engine's key columns here: rename the column")
    return entity, time


def snapshot_time(data: dict[str, Any], specs: dict[str, dict[str, Any]]) -> str:
    """The snapshot column's name (``time``, default ``snapshot_date``); no source column may be the time."""
    times = [n for n, c in specs.items() if c.get("role") == "time"]
    if times:
        raise ValueError(f"features.snapshots makes the time column; column {times[0]} cannot have role time")
    time = str(data.get("time") or SNAPSHOT_TIME)
    if time in specs:
        raise ValueError(f"time '{time}' is the snapshot column here: a source column has that name, rename it")
    return time


def default_models(name: str, task: str, target: dict[str, Any], has_time: bool) -> dict[str, Any]:
    """A baseline that follows from the task and the data, and two candidates."""
    if task == "regression":
        column = target.get("column")
        if has_time and target.get("kind") in ("value_at", "aggregate") and column:
            baseline = {"name": "persistence", "kind": "persistence", "features": [column]}
        else:
            baseline = {"name": "mean", "kind": "mean"}
        candidates = [
            {"name": "linear", "kind": "linear"},
            {"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 200, "learning_rate": 0.05}},
        ]
    else:
        # Binary: the base rate; multiclass: the class frequencies of the training rows.
        baseline = {"name": "prior", "kind": "prior"}
        candidates = [
            {"name": "logistic", "kind": "logistic"},
            {
                "name": "lightgbm",
                "kind": "lightgbm_classifier",
                "params": {"n_estimators": 200, "learning_rate": 0.05},
            },
        ]
    return {"registered_name": name, "baseline": baseline, "candidates": candidates, "allow_missing": True}


def _defaults_for(data: dict[str, Any], has_time: bool) -> dict[str, Any]:
    name, task = data.get("name", "usecase"), data["task"]
    target = dict(data.get("target") or {})
    if "kind" not in target:
        raise ValueError("a file use case needs target.kind: value_at, aggregate, event or label")
    target.setdefault("name", "target")
    if target["kind"] == "label":
        target.setdefault("horizon", 0)
    else:
        target.setdefault("horizon", 1)
    models = {**default_models(name, task, target, has_time), **(data.get("models") or {})}
    evaluation = {
        "primary_metric": {"regression": "rmse", "multiclass": "log_loss"}.get(task, "brier"),
        "scheme": "walk_forward" if has_time else "kfold",
        **(data.get("evaluation") or {}),
    }
    if evaluation["scheme"] == "kfold":
        evaluation.setdefault("folds", 5)
    gate = dict(data.get("gate") or {})
    if not has_time:
        gate.setdefault("bootstrap_unit", "entity")
    if task in ("classification", "multiclass"):
        # The expected calibration error of a well calibrated model measures about 0.02 on 2,000 rows (sampling
        # noise), while a constant prior measures about 0: a tighter tolerance rejects models for noise.
        gate.setdefault("ece_tolerance", 0.05)
    monitoring = dict(data.get("monitoring") or {})
    if not has_time:
        monitoring.setdefault("reference_days", None)
    elif "test_days" in evaluation:
        # A monitoring window as long as a backtest fold's test window: the span the gate judged a model on.
        monitoring.setdefault("window_days", evaluation["test_days"])
    return {"target": target, "models": models, "evaluation": evaluation, "gate": gate, "monitoring": monitoring}


def related_tables(name: str, related: list[str]) -> dict[str, str]:
    """Bronze, silver and quarantine names of each related table of a ``tables`` source (role -> name)."""
    out: dict[str, str] = {}
    for t in related:
        out |= {
            f"bronze_{t}": f"bronze.{name}_{t}_raw",
            t: f"silver.{name}_{t}",
            f"quarantine_{t}": f"quarantine.{name}_{t}",
        }
    return out


def default_tables(name: str) -> dict[str, str]:
    """Table names of a use case, from its name."""
    return {
        "bronze": f"bronze.{name}_raw",
        "silver": f"silver.{name}",
        "gold": f"gold.{name}",
        "features": f"gold.{name}_features",
        "predictions": f"gold.{name}_predictions",
        "quarantine": f"quarantine.{name}",
    }


METADATA_DESCRIPTIONS = {
    "_batch_id": "Batch the row came from (a hash of the source bytes and the reading options).",
    "_ingested_at": "When that batch was ingested (UTC).",
    "_file": "The file the row came from.",
    "_row_number": "Line number in that file (the header is line 1).",
    "_source": "What was read: the path, glob or package file.",
    "_extra": "Cells beyond the header's width on a ragged line, CSV-encoded (empty otherwise).",
}


def _described(specs: dict[str, dict[str, Any]], keep: set[str] | None = None) -> dict[str, str]:
    out = {}
    for name, spec in specs.items():
        if spec.get("role") == "ignore" or (keep is not None and name not in keep):
            continue
        out[name] = str(spec.get("description") or f"{spec.get('type', 'string')} ({spec.get('role', 'feature')})")
    return out


def default_descriptions(
    tables: dict[str, str], specs: dict[str, dict[str, Any]], entity: str, time: str, target: dict[str, Any]
) -> dict[str, dict[str, str]]:
    """Data-dictionary text of a file use case's tables, from its column declarations."""
    meta = METADATA_DESCRIPTIONS
    typed = _described(specs)
    keys = {entity: "Entity key of the feature table.", time: "Time of the row (the as-of date without time)."}
    return {
        tables["bronze"]: {
            "_table": "The source as received: every cell as text exactly as written, plus ingestion metadata.",
            "*": "The source column of that name, as text (an empty cell is empty); typed in silver.",
            **meta,
        },
        tables["silver"]: {
            "_table": "Typed rows that passed every drop rule, one per key (the latest batch wins).",
            **typed,
            **{k: meta[k] for k in ("_batch_id", "_ingested_at", "_file", "_row_number")},
        },
        tables["quarantine"]: {
            "_table": "Rows that failed a drop rule (a cell that did not parse, a rule, a repeated key).",
            "*": "The column as typed (empty where the cell did not parse); raw_<column> keeps the cell's text.",
            "_rule": "The first drop rule the row failed.",
            "_failed_rules": "Every drop rule the row failed, comma-separated.",
            "_reason": "The first failed rule with its description.",
            **meta,
        },
        tables["gold"]: {"_table": "Silver rows with the feature table's keys and derived columns.", **typed, **keys},
        tables["features"]: {
            "_table": "Point-in-time features per entity and time (from rows at or before it) and the target.",
            **keys,
            "*": "A feature declared in the use case (computed from rows at or before the row's time).",
            str(target.get("name", "target")): f"Target ({target.get('kind')} of {target.get('column')}); empty "
            "until known.",
            "target_end": "Time at which the target is fully known; training rows whose target reaches a test "
            "window are purged.",
        },
        tables["predictions"]: {
            "_table": "Champion predictions per entity and time, with lineage; history kept per model version.",
            entity: "Entity key.",
            "as_of": "Time of the feature row the prediction was made from.",
            "prediction": "The model's prediction (a probability for a binary task, the most probable class for "
            "a multiclass one).",
            "model_name": "Registered model name.",
            "model_version": "Registered version that predicted.",
            "run_id": "MLflow run that trained that version.",
            "feature_table": "Feature table read (logical name).",
            "feature_table_version": "Delta version of the feature table read.",
            "scored_at": "When the row was scored (UTC).",
        },
    }


def related_descriptions(extra: dict[str, str], related: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Data-dictionary text of each related file's bronze, silver and quarantine tables."""
    meta = METADATA_DESCRIPTIONS
    out: dict[str, dict[str, str]] = {}
    for name, spec in related.items():
        columns = spec.get("columns") if isinstance(spec, dict) else None
        typed = _described(_column_specs(columns)) if isinstance(columns, dict) else {}
        file = spec.get("file", name) if isinstance(spec, dict) else name
        out[extra[f"bronze_{name}"]] = {
            "_table": f"{file} as received: every cell as text exactly as written, plus ingestion metadata.",
            "*": "The file's column of that name, as text (an empty cell is empty); typed in silver.",
            **meta,
        }
        out[extra[name]] = {
            "_table": f"Typed rows of {file} that passed every drop rule, one per key (the latest batch wins).",
            **typed,
            **{k: meta[k] for k in ("_batch_id", "_ingested_at")},
        }
        out[extra[f"quarantine_{name}"]] = {
            "_table": f"Rows of {file} that failed a drop rule (a cell that did not parse, a missing or repeated key).",
            "*": "The column as typed (empty where the cell did not parse); raw_<column> keeps the cell's text.",
            "_rule": "The first drop rule the row failed.",
            "_failed_rules": "Every drop rule the row failed, comma-separated.",
            "_reason": "The first failed rule with its description.",
            **meta,
        }
    return out


def fill_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The use case's mapping with every default a ``file`` use case derives from its columns and task."""
    data = dict(data)
    if data.get("task") in CLASSIFICATION_ALIASES:
        data["task"] = "classification"
    if data.get("task") not in ("regression", "classification", "multiclass"):
        return data  # pydantic names the allowed values
    specs = _column_specs(data.get("columns") or {})
    if not specs:
        raise ValueError("a file use case needs columns: each column's type and role")
    features = data.get("features")
    if features is None:
        features = {"kind": "dsl"}
    elif isinstance(features, dict) and "kind" not in features:
        features = {"kind": "dsl", **features}
    snapshots = isinstance(features, dict) and bool(features.get("snapshots"))
    _apply_shorthand_roles(data, specs, snapshots)
    entity, time = key_columns(specs)
    if snapshots:
        time = snapshot_time(data, specs)
    has_time = time != AS_OF
    name = str(data.get("name", "usecase"))
    tables = {**default_tables(name), **(data.get("tables") or {})}
    source = data.get("source") or {}
    related = source.get("tables") if isinstance(source, dict) else None
    names = [str(t) for t in related] if isinstance(related, dict) else []
    tables["extra"] = {**related_tables(name, names), **(tables.get("extra") or {})}
    derived = _defaults_for(data, has_time)
    described = default_descriptions(tables, specs, entity, time, derived["target"])
    if data["task"] == "multiclass":
        described[tables["predictions"]]["*"] = (
            "p_<class>: the probability of that class (named like one-hot features)."
        )
    if isinstance(related, dict):
        described |= related_descriptions(tables["extra"], related)
    for table, columns in (data.get("descriptions") or {}).items():
        described[table] = {**described.get(table, {}), **(columns or {})}
    return {
        **data,
        **derived,
        "descriptions": described,
        "columns": specs,
        "entity": entity,
        "time": time,
        "features": features,
        "tables": tables,
    }
