"""The steps: each reads tables by logical name, calls pure stage code, writes tables or MLflow records."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

import mlflow
import pandas as pd
import pyarrow as pa

from goldgate.backtest import distinct_days, fold_rows
from goldgate.context import Context
from goldgate.evaluate import (
    EVALUATION_FILE,
    Evaluation,
    dataset_version_of,
    evaluate_training_run,
    evaluate_version,
    log_evaluation,
)
from goldgate.features import model_feature_columns
from goldgate.gate import DECISION_FILE, GateDecision, GateFacts, decide
from goldgate.monitor import PROFILE_FILE, build_reference_profile, prediction_profiles
from goldgate.quality import QUALITY, latest_quarantine_share
from goldgate.registry import (
    CHAMPION,
    alias_version,
    champion_score,
    decision_row,
    move_champion,
    record_promotion,
    register_decision,
    version_score,
)
from goldgate.score import (
    BATCH_ROWS,
    PREDICTION_KEYS,
    complete_rows,
    latest_complete_day,
    predict_batches,
    required_inputs,
)
from goldgate.train import prepare_frame, train_models

log = logging.getLogger(__name__)

DRIFT = "ops.drift"
ALERTS = "ops.alerts"


def ingest(ctx: Context) -> dict[str, Any]:
    """Source file(s) -> bronze, as received; a batch already ingested (same content hash) is skipped.

    New source columns are kept (bronze's schema grows) and reported in ``ops.schema_changes``; a missing
    required column stops the step before anything is written.
    """
    from goldgate.steps.ingest import ingest as ingest_file

    return ingest_file(ctx)


def silver(ctx: Context) -> dict[str, Any]:
    """New bronze batches -> typed rows merged by key; failing rows to quarantine with rule and reason.

    A later batch updates the keys it shares with earlier ones and appends the rest; a key repeated within one
    batch keeps its first good line and quarantines the others; every batch's conservation (rows in = kept +
    quarantined) is checked and logged in ``ops.quality``.
    """
    from goldgate.steps.silver import silver as silver_file

    return silver_file(ctx)


def gold(ctx: Context) -> dict[str, Any]:
    """Silver -> the gold table: the declared joins, derived columns and filter."""
    from goldgate.steps.gold import gold as gold_file

    return gold_file(ctx)


def features(ctx: Context) -> dict[str, Any]:
    """Gold -> point-in-time features and the target, as the use case declares them (``goldgate.data.features``)."""
    from goldgate.steps.features import features as features_file

    return features_file(ctx)


def _feature_frame(ctx: Context, version: int) -> Any:
    return ctx.lake.read(ctx.usecase.tables.features, version).to_pandas()


def train(ctx: Context) -> dict[str, Any]:
    """Fit baseline and candidates on the feature table pinned at its current version."""
    uc = ctx.usecase
    version = ctx.lake.version(uc.tables.features)
    if version is None:
        raise LookupError(f"{uc.tables.features} does not exist: run the features step first")
    features = _feature_frame(ctx, version)
    frame = prepare_frame(features, uc)
    if frame.empty:
        raise ValueError(
            f"{uc.tables.features} v{version}: none of its {len(features)} rows has a known target "
            f"'{uc.target.name}' and the baseline's inputs; the data may be shorter than the target's horizon "
            f"({uc.target.horizon}), or the target column may be empty"
        )
    result = train_models(frame, uc, ctx.settings, ctx.lake.lineage(uc.tables.features, version), ctx.experiment_id)
    train_rows, _ = fold_rows(frame, result.final, uc.time)
    if uc.monitoring.reference_days:
        recent = distinct_days(train_rows[uc.time])[-uc.monitoring.reference_days :]
        train_rows = train_rows[pd.to_datetime(train_rows[uc.time]).dt.date >= recent[0]]
    monitored = [c for c in model_feature_columns(list(frame.columns), uc) if c not in uc.monitoring.exclude_features]
    mon = uc.monitoring
    profile = build_reference_profile(train_rows, monitored, mon.bins, mon.grid_cells, mon.max_categories)
    profile["predictions"] = prediction_profiles(train_rows, result.runs, mon.bins, mon.grid_cells)
    mlflow.MlflowClient().log_dict(result.parent_run_id, profile, PROFILE_FILE)
    return {
        "training_run_id": result.parent_run_id,
        "folds": [f.as_dict() for f in result.folds],
        "runs": [{"run_id": r.run_id, "model": r.model, "role": r.role} for r in result.runs],
    }


def _pinned_frame(ctx: Context, dataset_version: dict[str, int]) -> Any:
    return prepare_frame(_feature_frame(ctx, dataset_version[ctx.usecase.tables.features]), ctx.usecase)


def evaluate(ctx: Context) -> dict[str, Any]:
    """Walk-forward backtest of every model of the latest training run and of the champion, on the same folds."""
    uc = ctx.usecase
    run = ctx.latest_training_run()
    frame = _pinned_frame(ctx, dataset_version_of(run))
    evaluation, predictions = evaluate_training_run(run, frame, uc, champion_score(uc.models.registered_name))
    log_evaluation(evaluation, predictions)
    from goldgate.plots import log_training_plots  # matplotlib only when a backtest is logged

    log_training_plots(mlflow.MlflowClient(), evaluation, predictions)  # predicted vs actual, importance, calibration
    return evaluation.to_dict()


def quarantine_share(ctx: Context) -> float | None:
    """Share of the latest silver batch's rows that were quarantined (None without a quality record)."""
    if not ctx.lake.exists(QUALITY):
        return None
    return latest_quarantine_share(ctx.lake.read(QUALITY), ctx.usecase.tables.silver)


def gate(ctx: Context) -> dict[str, Any]:
    """Apply the gate policy; the decision is recorded on the training run and the candidate's run."""
    run = ctx.latest_training_run()
    evaluation = Evaluation.from_dict(mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{EVALUATION_FILE}"))
    decision = decide(evaluation, ctx.usecase.gate, ctx.usecase.min_fold_wins, GateFacts(quarantine_share(ctx)))
    record_decision(decision, [run.info.run_id])
    log.info("gate: %s (%s)", decision.decision, decision.reason)
    return decision.to_dict()


def record_decision(decision: GateDecision, run_ids: list[str]) -> None:
    """The decision as a JSON artifact and tags on the given runs and on the candidate's run."""
    client = mlflow.MlflowClient()
    targets = run_ids + ([decision.candidate["run_id"]] if decision.candidate else [])
    for run_id in dict.fromkeys(t for t in targets if t):
        client.log_dict(run_id, decision.to_dict(), DECISION_FILE)
        client.set_tag(run_id, "gate.decision", decision.decision)
        client.set_tag(run_id, "gate.reason", decision.reason[:4000])


def promote_version(ctx: Context, version: str, force: bool, reason: str) -> GateDecision:
    """Make ``version`` champion if it passes the gate on the current data (or unconditionally with force)."""
    uc = ctx.usecase
    ctx.experiment_id  # noqa: B018 - configures MLflow for this workspace
    name = uc.models.registered_name
    current = alias_version(name, CHAMPION)
    if current is not None and str(current.version) == str(version):
        raise ValueError(f"{name} v{version} is already the champion")
    candidate = version_score(name, str(version), "candidate")
    features_version = ctx.lake.version(uc.tables.features)
    if features_version is None:
        raise LookupError(f"{uc.tables.features} does not exist: run the pipeline first")
    dataset_version = {uc.tables.features: features_version}
    champion = champion_score(name)
    evaluation, _ = evaluate_version(candidate, champion, _pinned_frame(ctx, dataset_version), uc, dataset_version)
    decision = decide(evaluation, uc.gate, uc.min_fold_wins, GateFacts(quarantine_share(ctx)))
    record_decision(decision, [])
    from_version = str(current.version) if current is not None else None
    action = "promote"
    if force and not decision.promoted:
        action = "force-promote"
        decision.reason = (
            f"forced by {ctx.settings.owner}: {reason or 'no reason given'} (gate said: {decision.reason})"
        )
    promoted = decision.promoted or force
    if promoted:
        move_champion(name, str(version), decision)
        if action == "force-promote":
            ctx.mlflow_client().set_model_version_tag(name, str(version), "gate.decision", action)
    record_promotion(
        ctx.lake,
        decision_row(
            decision,
            name,
            uc.name,
            ctx.settings.owner,
            action,
            from_version,
            str(version) if promoted else None,
        ),
    )
    return decision


def register(ctx: Context) -> dict[str, Any]:
    """Register and promote a candidate the gate accepted; record the decision in ops.promotions."""
    uc = ctx.usecase
    run = ctx.latest_training_run()
    if "goldgate.registered" in run.data.tags:
        return {"version": run.data.tags["goldgate.registered"] or None, "already_recorded": True}
    decision = GateDecision.from_dict(mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{DECISION_FILE}"))
    if ctx.dry_run:
        log.info("dry run: gate decision '%s' recorded, registry untouched", decision.decision)
        current = alias_version(uc.models.registered_name, CHAMPION)
        from_version = str(current.version) if current is not None else None
        row = decision_row(
            decision, uc.models.registered_name, uc.name, ctx.settings.owner, "dry-run", from_version, None
        )
        record_promotion(ctx.lake, row)
        return {"version": None, "dry_run": True, "decision": decision.decision}
    version = register_decision(decision, uc.models.registered_name, uc.name, ctx.settings.owner, ctx.lake)
    mlflow.MlflowClient().set_tag(run.info.run_id, "goldgate.registered", version or "")
    return {"version": version, "decision": decision.decision}


def score(ctx: Context, as_of: date | None = None, alias: str = CHAMPION) -> dict[str, Any]:
    """Predict one date with ``@alias`` and merge the rows, with lineage, into the predictions table.

    ``as_of`` defaults to the latest date on which some entity has every model input. Feature rows are streamed
    from the engine in Arrow batches; the merge keys (entity, as_of, model_version) keep every model's history and
    make a re-run a no-op.
    """
    uc, lake = ctx.usecase, ctx.lake
    name = uc.models.registered_name
    target = alias_version(name, alias)
    if target is None:
        if alias != CHAMPION:
            raise LookupError(f"{name} has no '{alias}' alias")
        log.warning("no champion for %s yet: nothing scored", name)
        return {"rows": 0}
    version = lake.version(uc.tables.features)
    if version is None:
        raise LookupError(f"{uc.tables.features} does not exist: run the features step first")
    # Pin the version the alias points to now, so a promotion during the run cannot mix two models.
    model = mlflow.pyfunc.load_model(f"models:/{name}/{target.version}")
    inputs = model.metadata.get_input_schema().input_names()
    features = lake.read(uc.tables.features, version)
    required = required_inputs(uc, inputs)
    day = as_of or latest_complete_day(features, inputs, uc.time, required)
    lineage = {
        "model_name": name,
        "model_version": str(target.version),
        "run_id": target.run_id,
        "feature_table": uc.tables.features,
        "feature_table_version": int(version),
    }
    rows = complete_rows(features, inputs, uc.entity, uc.time, day, required)
    if ctx.settings.engine == "spark":
        from goldgate.score_spark import predict_on_spark  # the model runs inside Spark (MLflow's spark_udf)

        uri = f"models:/{name}/{target.version}"
        parts = predict_on_spark(lake, rows, uri, inputs, uc.entity, uc.time, lineage, datetime.now(UTC))
    else:
        batches = rows.to_pyarrow_batches(chunk_size=BATCH_ROWS)
        scored = predict_batches(batches, model.predict, inputs, uc.entity, uc.time, lineage, datetime.now(UTC))
        # Only the (narrow) prediction rows are collected; the stream must be drained before the merge, which runs
        # its own queries on the same DuckDB connection and would cut a pending stream short.
        parts = list(scored)
    if not parts:
        raise ValueError(f"{uc.tables.features} v{version}: no {uc.entity} has every model input {inputs} on {day}")
    table = pa.concat_tables(parts)
    keys = [uc.entity, *PREDICTION_KEYS]
    merged = lake.merge(
        uc.tables.predictions, table, keys=keys, ignore=("scored_at",), inputs={uc.tables.features: version}
    )
    log.info("scored %d rows of %s with %s v%s (@%s)", table.num_rows, day, name, target.version, alias)
    return {
        "rows": table.num_rows,
        "as_of": str(day),
        "alias": alias,
        "model_version": str(target.version),
        "batches": len(parts),
        "inserted": merged.inserted,
        "updated": merged.updated,
    }


def monitor(ctx: Context) -> dict[str, Any]:
    """Drift, label-based performance and alerts of the latest window for the champion (see ``goldgate.loop``)."""
    from goldgate.loop import monitor_step

    return monitor_step(ctx)
