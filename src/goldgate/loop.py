"""The monitor step and the closed loop: drift and performance of the champion, alerts, retraining through the gate.

``monitor_step`` measures the latest window against the reference profile saved with the champion's training
run (engine-side histograms, ``goldgate.drift_engine``), scores the champion on the window for prediction drift
and label-based performance, writes ``ops.drift``, ``ops.performance`` and ``ops.alerts``, sends fired alerts
to the sinks and writes the HTML report. ``run_monitor`` adds ``--retrain-on-alert``: when a fired alert's rule
asks for it, the train, evaluate, gate and register steps of the DAG run, so the same gate decides whether the
retrained model replaces the champion, and the alerts record the retraining run and its decision.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from goldgate.alerts import ALERTS, FIRED, alerts_table, deliver, evaluate_rules
from goldgate.context import Context
from goldgate.drift_engine import window_histograms
from goldgate.monitor import (
    PREDICTION,
    PROFILE_FILE,
    DriftRow,
    Histogram,
    categorical_drift,
    categorical_histogram,
    histogram_drift,
    numeric_histogram,
    top_class,
)
from goldgate.monitor import numeric_drift as numeric_drift_rows
from goldgate.performance import (
    NO_ESTIMATE,
    PERFORMANCE,
    PERFORMANCE_KEYS,
    PROB_PREFIX,
    backfill_performance,
    class_probability_frame,
    expected_accuracy,
    performance_table,
    stored_performance,
    window_filter,
)
from goldgate.report import render_report, write_report
from goldgate.score import required_inputs
from goldgate.usecase import UseCase

log = logging.getLogger(__name__)

DRIFT = "ops.drift"
DRIFT_KEYS = ["model_version", "window_end", "feature", "statistic"]
MONITORING_KIND = "monitoring"
RETRAIN_STEPS = ("train", "evaluate", "gate", "register")

DRIFT_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("window_start", pa.string()),
        ("window_end", pa.string()),
        ("feature", pa.string()),
        ("kind", pa.string()),
        ("statistic", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("drifted", pa.bool_()),
        ("rows", pa.int64()),
        ("computed_at", pa.timestamp("us", tz="UTC")),
    ]
)


def window_bounds(features: ir.Table, time: str, days: int) -> tuple[date, date]:
    """First and last of the latest ``days`` distinct dates of the feature table (computed by the engine)."""
    d = features.select(d=features[time].cast("date")).distinct()
    last = d.order_by(ibis.desc("d")).limit(days)
    row = last.aggregate(start=last.d.min(), end=last.d.max()).to_pyarrow().to_pylist()[0]
    if row["start"] is None:
        raise LookupError("the feature table has no rows to monitor")
    return row["start"], row["end"]


def _complete(table: ir.Table, inputs: list[str]) -> ir.Table:
    conds = []
    for c in inputs:
        conds.append(table[c].notnull())
        if table.schema()[c].is_floating():
            conds.append(~table[c].isnan())
    return table.filter(conds) if conds else table


def score_window(
    window: ir.Table, model: Any, entity: str, time: str, target: str, usecase: UseCase | None = None
) -> pd.DataFrame:
    """The model's predictions for every window row with its required inputs, streamed in Arrow batches."""
    inputs = model.metadata.get_input_schema().input_names()
    required = required_inputs(usecase, inputs) if usecase is not None else inputs
    missing = [c for c in inputs if c not in window.columns]
    if missing:
        raise ValueError(f"model inputs {missing} are not columns of the feature table")
    cols = list(dict.fromkeys([entity, time, *inputs, *([target] if target in window.columns else [])]))
    parts = []
    for batch in _complete(window, required).select(*cols).to_pyarrow_batches(chunk_size=65_536):
        if batch.num_rows == 0:
            continue
        rows = batch.to_pandas()
        keep = [entity, time, *([target] if target in rows.columns else [])]
        out = rows[keep].copy()
        predicted = model.predict(rows[inputs])
        if isinstance(predicted, pd.DataFrame):  # multiclass: the top class and each class's probability
            out["prediction"] = top_class(predicted)
            for c in predicted.columns:
                out[f"{PROB_PREFIX}{c}"] = predicted[c].to_numpy(dtype="float64")
        else:
            out["prediction"] = np.asarray(predicted, dtype="float64")
        parts.append(out)
    if not parts:
        return pd.DataFrame(columns=[entity, time, target, "prediction"])
    return pd.concat(parts, ignore_index=True)


def _prediction_drift(
    predictions: pd.Series, profile: dict[str, Any], thresholds: dict[str, float]
) -> tuple[Histogram, list[DriftRow]]:
    """Drift of the champion's predictions: on the numeric grid, or for a multiclass model by predicted class."""
    if profile.get("kind") == "categorical":
        hist = categorical_histogram(predictions, list(profile["categories"]))
        return hist, categorical_drift(PREDICTION, profile, hist, thresholds, kind="prediction")
    hist = numeric_histogram(predictions.to_numpy(dtype="float64"), profile["grid"])
    return hist, numeric_drift_rows(PREDICTION, profile, hist, thresholds, kind="prediction")


def _history(ctx: Context, name: str, version: str) -> pd.DataFrame:
    if not ctx.lake.exists(name):
        return pd.DataFrame()
    t = ctx.lake.read(name)
    if "model_version" in t.columns:
        t = t.filter(t.model_version == version)
    return t.to_pandas()


def _drift_table(rows: list[DriftRow], counts: dict[str, int], meta: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                **meta,
                "feature": r.feature,
                "kind": r.kind,
                "statistic": r.statistic,
                "value": r.value,
                "threshold": r.threshold,
                "drifted": r.drifted,
                "rows": counts.get(r.feature, 0),
            }
            for r in rows
        ],
        schema=DRIFT_SCHEMA,
    )


def _load_profile(ctx: Context, champion: Any) -> tuple[dict[str, Any], Any]:
    import mlflow

    client = ctx.mlflow_client()
    parent = client.get_run(client.get_run(champion.run_id).data.tags["mlflow.parentRunId"])
    return mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/{PROFILE_FILE}"), parent


def monitor_step(ctx: Context, now: datetime | None = None) -> dict[str, Any]:
    """Drift, performance and alerts of the latest window for the current champion (the DAG's monitor step)."""
    import mlflow

    from goldgate.registry import CHAMPION, alias_version

    uc, lake, mon = ctx.usecase, ctx.lake, ctx.usecase.monitoring
    now = now or datetime.now(UTC)
    name = uc.models.registered_name
    champion = alias_version(name, CHAMPION)
    if champion is None:
        return {"features_drifted": [], "statistics": {}, "alerts": [], "note": "no champion to monitor"}
    version = str(champion.version)
    profile, training_run = _load_profile(ctx, champion)
    features = lake.read(uc.tables.features)
    start, end = window_bounds(features, uc.time, mon.window_days)
    window = window_filter(features, uc.time, start, end)
    thresholds = mon.thresholds()

    histograms = window_histograms(window, profile)
    rows = histogram_drift(profile, histograms, thresholds)
    panels: dict[str, tuple[dict[str, Any], Histogram]] = {
        f: (profile["features"][f], h) for f, h in histograms.items()
    }
    notes: list[str] = []

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    scored = score_window(window, model, uc.entity, uc.time, uc.target.name, uc)
    pred_profile = profile.get("predictions", {}).get(champion.run_id)
    if pred_profile is not None and len(scored):
        pred_hist, pred_rows = _prediction_drift(scored["prediction"], pred_profile, thresholds)
        rows += pred_rows
        panels[PREDICTION] = (pred_profile, pred_hist)
    elif pred_profile is None:
        notes.append("prediction drift: the champion's training run has no prediction profile")

    counts = {f: h.rows for f, h in histograms.items()} | {PREDICTION: len(scored)}
    meta = {
        "model_name": name,
        "model_version": version,
        "window_start": str(start),
        "window_end": str(end),
        "computed_at": now,
    }
    lake.merge(DRIFT, _drift_table(rows, counts, meta), keys=DRIFT_KEYS, ignore=("computed_at",))

    test_start = training_run.data.params.get("test_start")
    perf = []
    if mon.backfill_performance:
        since = date.fromisoformat(test_start) if test_start else None
        perf += backfill_performance(scored, uc.time, uc.target.name, since, uc.task)
    if lake.exists(uc.tables.predictions):
        predictions = lake.read(uc.tables.predictions)
        perf += stored_performance(predictions, features, uc.entity, uc.time, uc.target.name, uc.task)
    if perf:
        lake.merge(PERFORMANCE, performance_table(perf, name, version), keys=PERFORMANCE_KEYS, ignore=("computed_at",))
    if uc.task in ("classification", "multiclass") and not scored.empty:
        # Label-free: what accuracy the champion expects of itself on the window, sound while it stays calibrated.
        confidence = class_probability_frame(scored) if uc.task == "multiclass" else scored["prediction"]
        notes.append(f"expected accuracy (label-free, assumes calibration): {expected_accuracy(confidence)}")
    else:
        notes.append(NO_ESTIMATE)

    existing = lake.read(ALERTS).to_pandas() if lake.exists(ALERTS) else pd.DataFrame()
    new_alerts = evaluate_rules(
        mon.alerts,
        _history(ctx, DRIFT, version),
        _history(ctx, PERFORMANCE, version),
        existing,
        use_case=uc.name,
        model_version=version,
        now=now,
    )
    sinks = mon.alerts.sinks
    url = (sinks.webhook.url if sinks.webhook else None) or (
        ctx.settings.alert_webhook_url.get_secret_value() if ctx.settings.alert_webhook_url else None
    )
    deliver(new_alerts, sinks, url)
    if new_alerts:
        lake.merge(ALERTS, alerts_table(new_alerts), keys=["alert_id"])

    report_path = None
    monitoring_run_id = _log_monitoring_run(ctx, version, str(start), str(end), rows, perf, new_alerts)
    if mon.report:
        text = render_report(
            title=f"goldgate · {uc.name} · drift report",
            window=(str(start), str(end)),
            model=f"{name} v{version}",
            profile=profile,
            histograms=panels,
            drift=rows,
            performance=perf,
            alerts=new_alerts,
            notes=notes,
        )
        path = ctx.settings.reports_dir / f"{uc.name}-drift-{end}-v{version}.html"
        report_path = str(write_report(text, path))
        ctx.mlflow_client().log_artifact(monitoring_run_id, report_path, "reports")

    stats: dict[str, dict[str, float]] = {}
    for r in rows:
        stats.setdefault(r.feature, {})[r.statistic] = round(r.value, 6)
    return {
        "window": [str(start), str(end)],
        "model_version": version,
        "features_drifted": sorted({r.feature for r in rows if r.drifted and r.kind != "prediction"}),
        "prediction_drifted": any(r.drifted for r in rows if r.kind == "prediction"),
        "statistics": stats,
        "performance": [dict(p.items()) for p in perf],
        "estimate": None,
        "notes": notes,
        "report": report_path,
        "monitoring_run_id": monitoring_run_id,
        "alerts": [{k: v for k, v in a.items() if k != "raised_at"} for a in new_alerts],
    }


def _log_monitoring_run(
    ctx: Context,
    version: str,
    start: str,
    end: str,
    rows: list[DriftRow],
    perf: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
) -> str:
    """One MLflow run per monitoring pass: window, drifted count, backfill metrics, fired alerts, the report."""
    from mlflow.entities import Metric, Param, RunTag

    client = ctx.mlflow_client()
    uc = ctx.usecase
    tags = {
        "goldgate.kind": MONITORING_KIND,
        "use_case": uc.name,
        "env": ctx.settings.env,
        "owner": ctx.settings.owner,
        "model_name": uc.models.registered_name,
        "model_version": version,
        "mlflow.runName": f"{uc.name}-monitoring",
    }
    run = client.create_run(ctx.experiment_id, tags=tags)
    ts = int(datetime.now(UTC).timestamp() * 1000)
    metrics = [Metric("features_drifted", float(len({r.feature for r in rows if r.drifted})), ts, 0)]
    metrics += [
        Metric(f"{p['source']}_{p['metric']}", float(p["value"]), ts, 0) for p in perf if p["source"] == "backfill"
    ]
    metrics.append(Metric("alerts_fired", float(sum(a["status"] == FIRED for a in alerts)), ts, 0))
    client.log_batch(
        run.info.run_id,
        metrics=metrics,
        params=[Param("window_start", start), Param("window_end", end)],
        tags=[RunTag("goldgate.alerts", json.dumps([a["alert_id"] for a in alerts])[:4900])],
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def run_monitor(ctx: Context, retrain_on_alert: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Monitor, and with ``retrain_on_alert`` retrain through the DAG's gate when a fired alert asks for it."""
    from goldgate.dag import get_step
    from goldgate.runner import run_step

    ctx.mlflow_client()
    result = monitor_step(ctx, now)
    ctx.results["monitor"] = result
    retrain_rules = {r.name for r in ctx.usecase.monitoring.alerts.rules if r.retrain}
    triggers = [a for a in result["alerts"] if a["status"] == FIRED and a["rule"] in retrain_rules]
    result["retrain"] = None
    if not retrain_on_alert or not triggers:
        return result
    log.warning("retraining: %d fired alert(s) ask for it (%s)", len(triggers), triggers[0]["alert_id"])
    for step in RETRAIN_STEPS:
        run_step(ctx, get_step(step))
    gate = ctx.results["gate"]
    training_run_id = ctx.results["train"]["training_run_id"]
    version = ctx.results["register"].get("version")
    decision = "dry-run" if ctx.results["register"].get("dry_run") else gate["decision"]
    if version:
        run_step(ctx, get_step("score"))
    ctx.mlflow_client().set_tag(training_run_id, "goldgate.trigger", ",".join(a["alert_id"] for a in triggers)[:4900])
    rows = ctx.lake.read(ALERTS)
    ids = [a["alert_id"] for a in triggers]
    current = rows.filter(rows.alert_id.isin(ids)).to_pyarrow()
    for column, value in (
        ("retrain_run_id", training_run_id),
        ("retrain_decision", decision),
        ("retrain_version", version),
    ):
        current = current.set_column(
            current.schema.get_field_index(column), column, pa.array([value] * current.num_rows, pa.string())
        )
    ctx.lake.merge(ALERTS, current, keys=["alert_id"])
    result["retrain"] = {
        "training_run_id": training_run_id,
        "decision": decision,
        "reason": gate["reason"],
        "version": version,
        "alerts": ids,
    }
    return result
