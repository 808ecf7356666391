"""The steps: each reads tables by logical name, calls pure stage code, writes tables or MLflow records."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import ibis
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
from goldgate.features import KEYS, build_features, feature_columns
from goldgate.gate import DECISION_FILE, GateDecision, GateFacts, decide
from goldgate.layers.bronze import add_ingest_metadata
from goldgate.layers.gold import log_returns
from goldgate.layers.silver import dedupe_latest, melt_rates
from goldgate.monitor import PROFILE_FILE, build_reference_profile, drift_rows
from goldgate.quality import RuleOutcome, apply_expectations
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
from goldgate.score import PREDICTION_KEYS, latest_complete_date, rows_to_score, with_lineage
from goldgate.sources.ecb_fx import read_ecb_csv, resolve_source
from goldgate.train import prepare_frame, train_models

log = logging.getLogger(__name__)

QUALITY = "ops.quality"
DRIFT = "ops.drift"
ALERTS = "ops.alerts"
# The ops.quality row that summarises a whole batch: passed = rows kept, failed = rows quarantined.
BATCH_RULE = "__batch__"


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
    checked = apply_expectations(
        melt_rates(lake.read(uc.tables.bronze, bronze_version)), uc.expectations, uc.tables.silver
    )
    inputs = {uc.tables.bronze: bronze_version}
    merged = lake.merge(uc.tables.silver, dedupe_latest(checked.kept), keys=["date", "currency"], inputs=inputs)
    # Merged even when empty, so the quarantine table always exists and reports its (zero) rows.
    lake.merge(uc.tables.quarantine, checked.quarantined, keys=["_batch_id", "_row_number", "currency"], inputs=inputs)
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
            for o in [
                *checked.outcomes,
                RuleOutcome(BATCH_RULE, "summary", checked.rows_kept, checked.rows_quarantined),
            ]
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
    version = lake.version(uc.tables.silver)
    returns = log_returns(lake.read(uc.tables.silver, version).select("date", "currency", "rate"))
    merged = lake.merge(uc.tables.gold, returns, keys=["date", "currency"], inputs={uc.tables.silver: version})
    return {"inserted": merged.inserted, "updated": merged.updated, "version": merged.version}


def features(ctx: Context) -> dict[str, Any]:
    """Gold returns -> point-in-time features and the forward target."""
    uc, lake = ctx.usecase, ctx.lake
    version = lake.version(uc.tables.gold)
    table = build_features(lake.read(uc.tables.gold, version), uc.features, uc.target)
    merged = lake.merge(uc.tables.features, table, keys=KEYS, inputs={uc.tables.gold: version})
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
    result = train_models(frame, uc, ctx.settings, ctx.lake.lineage(uc.tables.features, version), ctx.experiment_id)
    train_rows, _ = fold_rows(frame, result.final, uc.time)
    if uc.monitoring.reference_days:
        recent = distinct_days(train_rows[uc.time])[-uc.monitoring.reference_days :]
        train_rows = train_rows[pd.to_datetime(train_rows[uc.time]).dt.date >= recent[0]]
    monitored = [c for c in feature_columns(list(frame.columns), uc.target) if c not in uc.monitoring.exclude_features]
    profile = build_reference_profile(train_rows, monitored, uc.monitoring.bins)
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
    return evaluation.to_dict()


def quarantine_share(ctx: Context) -> float | None:
    """Share of the latest silver batch's rows that were quarantined (None without a quality record)."""
    if not ctx.lake.exists(QUALITY):
        return None
    q = ctx.lake.read(QUALITY)
    rows = q.filter((q.table_name == ctx.usecase.tables.silver) & (q.rule == BATCH_RULE)).to_pandas()
    if rows.empty:
        return None
    latest = rows.sort_values("input_version").iloc[-1]
    total = int(latest["passed"]) + int(latest["failed"])
    return float(latest["failed"]) / total if total else 0.0


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
    days = pd.to_datetime(window[uc.time]).dt.date
    start, end = str(days.min()), str(days.max())
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
    lake.merge(DRIFT, drift, keys=["model_version", "window_end", "feature", "statistic"], ignore=("computed_at",))
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
