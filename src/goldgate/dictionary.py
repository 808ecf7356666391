"""The data dictionary: every table in the lake with its columns, types and descriptions, as Markdown.

Descriptions of a use case's tables come from its YAML (``descriptions``); goldgate's own ``ops`` tables are
described here. A column without a description is listed as missing, so gaps are visible, not silent.
"""

from __future__ import annotations

from goldgate.lake import Lake
from goldgate.runlog import RUNS, RUNS_DESCRIPTIONS
from goldgate.usecase import UseCase

MISSING = "(no description)"
WILDCARD = "*"

OPS_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "ops.quality": {
        "_table": "One row per batch, table and rule: how many rows passed and failed each expectation.",
        "table_name": "Table the rule guards (logical name).",
        "input_table": "Table the batch was read from.",
        "batch_id": "Source batch (content hash of the file and the use case's slice).",
        "rule": "Expectation name; `mapping:<column>` counts remapped values; `__batch__` is the batch total.",
        "action": "warn, drop, fail, map, or summary (for `__batch__`).",
        "passed": "Rows that passed (for `__batch__`: rows kept).",
        "failed": "Rows that failed (for `__batch__`: rows quarantined).",
        "checked_at": "When the batch was checked (UTC).",
    },
    "ops.schema_changes": {
        "_table": "Columns a source batch added to, or no longer has compared with, bronze.",
        "table_name": "Bronze table (logical name).",
        "batch_id": "Source batch that showed the change.",
        "source": "File the batch came from.",
        "column_name": "The column.",
        "change": "added or missing.",
        "detected_at": "When ingest saw it (UTC).",
    },
    "ops.promotions": {
        "_table": "Append-only log of every gate decision, promotion, forced promotion and rollback.",
        "recorded_at": "When (UTC).",
        "actor": "Who (settings owner).",
        "use_case": "Use case name.",
        "model_name": "Registered model name.",
        "action": "gate, dry-run, promote, force-promote or rollback.",
        "decision": "promote, reject or rollback.",
        "from_version": "Champion version before the action.",
        "to_version": "Champion version after the action (empty when nothing moved).",
        "run_id": "MLflow run of the candidate.",
        "reason": "Why: the gate's verdict, or the reason given by the actor.",
        "criteria": "JSON list of criteria with passed, value and threshold.",
        "gate_record": "The full decision record (JSON).",
    },
    "ops.drift": {
        "_table": "Drift statistics of a window of recent features against the champion's reference profile.",
        "model_name": "Registered model name.",
        "model_version": "Champion version whose training window is the reference.",
        "window_start": "First date of the monitored window.",
        "window_end": "Last date of the monitored window.",
        "feature": "Feature column, or 'prediction' for the champion's predictions.",
        "kind": "numeric, categorical or prediction.",
        "statistic": "psi, wasserstein (reference std units), ks, js, chi2_pvalue, missing_rate or out_of_range.",
        "value": "The statistic's value.",
        "threshold": "The statistic's drift threshold.",
        "drifted": "value beyond the threshold (below it for chi2_pvalue).",
        "rows": "Rows of the window the statistic was computed on (missing ones included).",
        "computed_at": "When (UTC).",
    },
    "ops.performance": {
        "_table": "Performance where labels are known: stored predictions per month, champion backfill per window.",
        "model_name": "Registered model name.",
        "model_version": "Version that predicted.",
        "source": "predictions (stored rows joined to late labels) or backfill (champion on unseen window dates).",
        "window_start": "First date of the window (a month's first day for predictions).",
        "window_end": "Last date of the window (a month's last day for predictions).",
        "metric": "rmse or mae (regression); brier, log_loss, ece or roc_auc (classification); log_loss, brier, "
        "accuracy, macro_f1 or ece (multiclass).",
        "value": "The metric's value.",
        "rows": "Labelled rows it was computed on.",
        "estimated": "False: computed from real labels (no label-free estimate is made).",
        "computed_at": "When (UTC).",
    },
    "ops.alerts": {
        "_table": "Alerts raised by the monitoring rules, one per rule, subject and window.",
        "alert_id": "Stable id: rule, use case, champion version, window end and subject.",
        "use_case": "Use case name.",
        "rule": "The alert rule (monitoring.alerts.rules) that raised it.",
        "kind": "feature_drift, prediction_drift or performance_drop.",
        "subject": "The feature, 'prediction', or the model version (performance).",
        "statistic": "The statistic or metric that breached.",
        "value": "Its value in the latest window.",
        "threshold": "The threshold it breached.",
        "direction": "Which side is worse: higher or lower.",
        "breaches": "Windows that breached among the last ones read.",
        "windows": "Windows read (N of the rule's M-of-N).",
        "window_start": "First date of the monitored window.",
        "window_end": "Last date of the monitored window.",
        "model_version": "Champion version monitored.",
        "severity": "info, warning or critical.",
        "status": "fired (sent to the sinks) or suppressed (within the rule's cool-down, not sent).",
        "runbook": "What to do: a runbook under docs/runbook/.",
        "delivered": "Outcome per sink, e.g. console:ok,webhook:ok.",
        "raised_at": "When (UTC).",
        "retrain_run_id": "Training run started by goldgate monitor --retrain-on-alert for this alert.",
        "retrain_decision": "That retraining's gate decision (promote, reject or dry-run).",
        "retrain_version": "The version promoted by that retraining (empty when none).",
    },
    RUNS: RUNS_DESCRIPTIONS,
}


def describe(table: str, column: str, usecase: UseCase) -> str:
    """A column's description from the use case's YAML or goldgate's ops catalogue."""
    known = {**OPS_DESCRIPTIONS, **usecase.descriptions}.get(table, {})
    if column in known:
        return known[column]
    if WILDCARD in known and not column.startswith("_") and column != "_table":
        return known[WILDCARD]
    return MISSING


def render_dictionary(lake: Lake, usecase: UseCase) -> tuple[str, list[str]]:
    """The dictionary as Markdown, and the ``table.column`` names that lack a description."""
    lines = [
        f"# Data dictionary: {usecase.name}",
        "",
        "Generated by `goldgate dictionary` from the lake's tables and the use case's descriptions.",
        "",
    ]
    missing: list[str] = []
    for name in lake.tables():
        schema = lake.read(name).schema()
        known = {**OPS_DESCRIPTIONS, **usecase.descriptions}.get(name, {})
        lines += [
            f"## `{name}`",
            "",
            known.get("_table", MISSING),
            "",
            "| column | type | description |",
            "|---|---|---|",
        ]
        for column, dtype in schema.items():
            text = describe(name, column, usecase)
            if text == MISSING:
                missing.append(f"{name}.{column}")
            lines.append(f"| `{column}` | {dtype} | {text} |")
        lines.append("")
    return "\n".join(lines), missing
