"""The steps: each reads tables by logical name, calls pure stage code, writes tables or MLflow records."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import ibis
import mlflow
import pyarrow as pa

from goldgate.context import Context
from goldgate.evaluate import EVALUATION_FILE, Evaluation, evaluate_run
from goldgate.features import KEYS, build_features, feature_columns
from goldgate.gate import DECISION_FILE, GateDecision, decide
from goldgate.layers.bronze import add_ingest_metadata
from goldgate.layers.gold import log_returns
from goldgate.layers.silver import dedupe_latest, melt_rates
from goldgate.monitor import PROFILE_FILE, build_reference_profile, drift_rows
from goldgate.quality import apply_expectations
from goldgate.registry import CHAMPION, alias_version, champion_score, register_decision
from goldgate.score import PREDICTION_KEYS, latest_complete_date, rows_to_score, with_lineage
from goldgate.sources.ecb_fx import read_ecb_csv, resolve_source
from goldgate.split import apply_split
from goldgate.train import prepare_frame, train_models

log = logging.getLogger(__name__)

QUALITY = "ops.quality"
DRIFT = "ops.drift"
ALERTS = "ops.alerts"


def ingest(ctx: Context) -> dict[str, Any]:
    """Source file -> bronze, as received; a batch already ingested (same content hash) is skipped."""
    uc, lake = ctx.usecase, ctx.lake
    path = resolve_source(uc.source, ctx.source)
    batch = read_ecb_csv(path, uc.source)
    if lake.exists(uc.tables.bronze):
        bronze = lake.read(uc.tables.bronze)
        if bronze.filter(bronze._batch_id == batch.batch_id).count().to_pyarrow().as_py():
            log.info("batch %s from %s is already in %s", batch.batch_id, path, uc.tables.bronze)
            return {
                "batch_id": batch.batch_id,
                "rows": batch.table.num_rows,
                "new": False,
                "source": str(path),
            }
    table = add_ingest_metadata(batch.table, batch.source, batch.batch_id, datetime.now(UTC))
    lake.append(uc.tables.bronze, table)
    return {"batch_id": batch.batch_id, "rows": table.num_rows, "new": True, "source": str(path)}


def silver(ctx: Context) -> dict[str, Any]:
    """Bronze -> typed long rates; rows failing a drop rule go to quarantine with the rule and reason."""
    uc, lake = ctx.usecase, ctx.lake
    bronze_version = lake.version(uc.tables.bronze)
    checked = apply_expectations(melt_rates(lake.read(uc.tables.bronze)), uc.expectations, uc.tables.silver)
    merged = lake.merge(uc.tables.silver, dedupe_latest(checked.kept), keys=["date", "currency"])
    if checked.rows_quarantined:
        lake.merge(uc.tables.quarantine, checked.quarantined, keys=["_batch_id", "_row_number", "currency"])
    quality = pa.Table.from_pylist(
        [
            {
                "table_name": uc.tables.silver,
                "input_table": uc.tables.bronze,
                "input_version": bronze_version,
                "rule": o.rule,
                "action": o.action,
                "passed": o.passed,
                "failed": o.failed,
                "checked_at": datetime.now(UTC),
            }
            for o in checked.outcomes
        ]
    )
    if quality.num_rows:
        lake.merge(
            QUALITY,
            quality,
            keys=["table_name", "input_table", "input_version", "rule"],
            ignore=("checked_at",),
        )
    return {
        "rows_in": checked.rows_in,
        "kept": checked.rows_kept,
        "quarantined": checked.rows_quarantined,
        "inserted": merged.inserted,
        "updated": merged.updated,
    }


def gold(ctx: Context) -> dict[str, Any]:
    """Silver rates -> daily log returns."""
    uc, lake = ctx.usecase, ctx.lake
    returns = log_returns(lake.read(uc.tables.silver).select("date", "currency", "rate"))
    merged = lake.merge(uc.tables.gold, returns, keys=["date", "currency"])
    return {"inserted": merged.inserted, "updated": merged.updated, "version": merged.version}


def features(ctx: Context) -> dict[str, Any]:
    """Gold returns -> point-in-time features and the forward target."""
    uc, lake = ctx.usecase, ctx.lake
    table = build_features(lake.read(uc.tables.gold), uc.features, uc.target)
    merged = lake.merge(uc.tables.features, table, keys=KEYS)
    return {"inserted": merged.inserted, "updated": merged.updated, "version": merged.version}


def _feature_frame(ctx: Context, version: int) -> Any:
    return ctx.lake.read(ctx.usecase.tables.features, version).to_pandas()


def train(ctx: Context) -> dict[str, Any]:
    """Fit baseline and candidates on the feature table pinned at its current version."""
    uc = ctx.usecase
    version = ctx.lake.version(uc.tables.features)
    if version is None:
        raise LookupError(f"{uc.tables.features} does not exist: run the features step first")
    frame = prepare_frame(_feature_frame(ctx, version), uc)
    result = train_models(frame, uc, ctx.settings, {uc.tables.features: version}, ctx.experiment_id)
    train_rows, _ = apply_split(frame, result.split, uc.time)
    monitored = [
        c for c in feature_columns(list(frame.columns), uc.target) if c not in uc.monitoring.exclude_features
    ]
    profile = build_reference_profile(train_rows, monitored, uc.monitoring.bins)
    mlflow.MlflowClient().log_dict(result.parent_run_id, profile, PROFILE_FILE)
    return {
        "training_run_id": result.parent_run_id,
        "split": result.split.as_params(),
        "runs": [{"run_id": r.run_id, "model": r.model, "role": r.role} for r in result.runs],
    }


def evaluate(ctx: Context) -> dict[str, Any]:
    """Score every model of the latest training run and the current champion on the same holdout rows."""
    uc = ctx.usecase
    run = ctx.latest_training_run()
    version = json.loads(run.data.tags["dataset_version"])[uc.tables.features]
    frame = prepare_frame(_feature_frame(ctx, version), uc)
    evaluation = evaluate_run(run, frame, uc, champion_score(uc.models.registered_name))
    mlflow.MlflowClient().log_dict(run.info.run_id, evaluation.to_dict(), EVALUATION_FILE)
    return evaluation.to_dict()


def gate(ctx: Context) -> dict[str, Any]:
    """Apply the gate policy; the decision is recorded on the training run and the candidate's run."""
    run = ctx.latest_training_run()
    evaluation = Evaluation.from_dict(
        mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{EVALUATION_FILE}")
    )
    decision = decide(evaluation, ctx.usecase.gate)
    client = mlflow.MlflowClient()
    targets = [run.info.run_id] + ([decision.candidate["run_id"]] if decision.candidate else [])
    for run_id in targets:
        client.log_dict(run_id, decision.to_dict(), DECISION_FILE)
        client.set_tag(run_id, "gate.decision", decision.decision)
        client.set_tag(run_id, "gate.reason", decision.reason[:4000])
    log.info("gate: %s (%s)", decision.decision, decision.reason)
    return decision.to_dict()


def register(ctx: Context) -> dict[str, Any]:
    """Register and promote a candidate the gate accepted; record the decision in ops.promotions."""
    uc = ctx.usecase
    run = ctx.latest_training_run()
    if "goldgate.registered" in run.data.tags:
        return {"version": run.data.tags["goldgate.registered"] or None, "already_recorded": True}
    decision = GateDecision.from_dict(mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{DECISION_FILE}"))
    if ctx.dry_run:
        log.info("dry run: gate decision '%s' reported, registry untouched", decision.decision)
        return {"version": None, "dry_run": True, "decision": decision.decision}
    version = register_decision(decision, uc.models.registered_name, uc.name, ctx.settings.owner, ctx.lake)
    mlflow.MlflowClient().set_tag(run.info.run_id, "goldgate.registered", version or "")
    return {"version": version, "decision": decision.decision}


def score(ctx: Context) -> dict[str, Any]:
    """Predict the latest date of every currency with ``@champion`` and merge the rows with lineage."""
    uc, lake = ctx.usecase, ctx.lake
    champion = alias_version(uc.models.registered_name, CHAMPION)
    if champion is None:
        log.warning("no champion for %s yet: nothing scored", uc.models.registered_name)
        return {"rows": 0}
    version = lake.version(uc.tables.features)
    assert version is not None
    model = mlflow.pyfunc.load_model(f"models:/{uc.models.registered_name}@{CHAMPION}")
    inputs = model.metadata.get_input_schema().input_names()
    frame = _feature_frame(ctx, version)
    as_of = latest_complete_date(frame, inputs, uc.time)
    rows = rows_to_score(frame, inputs, uc.time, as_of)
    lineage = {
        "model_name": uc.models.registered_name,
        "model_version": str(champion.version),
        "run_id": champion.run_id,
        "feature_table": uc.tables.features,
        "feature_table_version": int(version),
    }
    table = with_lineage(rows, model.predict(rows[inputs]), uc.entity, uc.time, lineage, datetime.now(UTC))
    keys = [uc.entity, *PREDICTION_KEYS]
    merged = lake.merge(uc.tables.predictions, table, keys=keys, ignore=("scored_at",))
    return {
        "rows": table.num_rows,
        "as_of": str(as_of),
        "inserted": merged.inserted,
        "updated": merged.updated,
    }


def monitor(ctx: Context) -> dict[str, Any]:
    """Drift of the latest window of features against the champion's training window."""
    uc, lake, mon = ctx.usecase, ctx.lake, ctx.usecase.monitoring
    champion = alias_version(uc.models.registered_name, CHAMPION)
    if champion is None:
        return {"features_drifted": [], "statistics": {}, "note": "no champion to monitor"}
    client = mlflow.MlflowClient()
    parent = client.get_run(champion.run_id).data.tags["mlflow.parentRunId"]
    profile = mlflow.artifacts.load_dict(f"{client.get_run(parent).info.artifact_uri}/{PROFILE_FILE}")
    feats = lake.read(uc.tables.features)
    days = feats.select(feats[uc.time]).distinct().order_by(ibis.desc(uc.time)).limit(mon.window_days)
    window = feats.filter(feats[uc.time].isin(days[uc.time])).to_pandas()
    start, end = str(window[uc.time].min()), str(window[uc.time].max())
    rows = drift_rows(profile, window, mon.psi_threshold, mon.wasserstein_threshold)
    now = datetime.now(UTC)
    drift = pa.Table.from_pylist(
        [
            {
                "model_name": uc.models.registered_name,
                "model_version": str(champion.version),
                "window_start": start,
                "window_end": end,
                "feature": r.feature,
                "statistic": r.statistic,
                "value": r.value,
                "threshold": r.threshold,
                "drifted": r.drifted,
                "computed_at": now,
            }
            for r in rows
        ]
    )
    lake.merge(
        DRIFT, drift, keys=["model_version", "window_end", "feature", "statistic"], ignore=("computed_at",)
    )
    alerts = [
        {
            "alert_id": f"drift:{uc.name}:v{champion.version}:{end}:{r.feature}:{r.statistic}",
            "use_case": uc.name,
            "kind": "feature_drift",
            "subject": r.feature,
            "statistic": r.statistic,
            "value": r.value,
            "threshold": r.threshold,
            "window_end": end,
            "raised_at": now,
            "runbook": "docs/runbook/drift.md",
        }
        for r in rows
        if r.drifted
    ]
    if alerts:
        lake.merge(ALERTS, pa.Table.from_pylist(alerts), keys=["alert_id"], ignore=("raised_at",))
    stats: dict[str, dict[str, float]] = {}
    for r in rows:
        stats.setdefault(r.feature, {})[r.statistic] = round(r.value, 6)
    drifted = sorted({r.feature for r in rows if r.drifted})
    return {
        "window": [start, end],
        "features_drifted": drifted,
        "statistics": stats,
        "alerts": [{k: v for k, v in a.items() if k != "raised_at"} for a in alerts],
    }
