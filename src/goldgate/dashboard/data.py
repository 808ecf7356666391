"""What the dashboard shows, read through goldgate's library: the run log, the lake, the registry and MLflow.

Nothing here recomputes pipeline results; every function reads what the steps recorded and shapes it as a pandas
frame (or a small dict) for a page. Every function works on an empty workspace: a table that does not exist yet
reads as an empty frame, and an MLflow store that does not exist yet is not created (the dashboard only reads).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path
from typing import Any

import pandas as pd

from goldgate.context import Context
from goldgate.dag import STEP_NAMES
from goldgate.settings import load_settings
from goldgate.usecase import load_usecase

log = logging.getLogger(__name__)

USECASE_ENV = "GOLDGATE_USECASE"
DEFAULT_USECASE = "fx"
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]
# Shown for a missing value (a lone "-" in a table cell would render as a Markdown bullet).
NONE = "—"


def open_context(usecase: str | None = None, workspace: Path | None = None) -> Context:
    """The use case (argument, else ``GOLDGATE_USECASE``, else fx) on the workspace (argument, else settings)."""
    settings = load_settings(workspace=workspace)
    return Context(settings=settings, usecase=load_usecase(usecase or os.environ.get(USECASE_ENV, DEFAULT_USECASE)))


def lake_ready(ctx: Context) -> bool:
    """Whether the workspace has a lake folder (reading never creates one)."""
    return ctx.settings.lake_dir.is_dir()


def tracking_ready(ctx: Context) -> bool:
    """Whether the MLflow store exists: a local SQLite file must already be there; a server is asked directly."""
    uri = ctx.settings.resolved_tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


def read_table(ctx: Context, name: str) -> pd.DataFrame:
    """A lake table as a pandas frame (empty when the lake or the table does not exist yet)."""
    if not lake_ready(ctx) or not ctx.lake.exists(name):
        return pd.DataFrame()
    return ctx.lake.read(name).to_pandas()


def fmt_time(value: Any) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC); empty for a missing one."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    ts = pd.Timestamp(value)
    ts = ts.tz_convert(UTC) if ts.tzinfo is not None else ts
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def fmt_metric(value: Any) -> str:
    """A metric value as the dashboard and the run report print it (5 decimals)."""
    return f"{value:.5f}" if isinstance(value, (int, float)) and not pd.isna(value) else NONE


# ------------------------------------------------------------------------------------------------ pipeline


def recent_runs(ctx: Context, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs from ``ops.runs``, newest first (see ``goldgate.runlog``)."""
    from goldgate.runlog import recent_runs as runlog_recent

    return runlog_recent(ctx.lake, ctx.usecase.name, limit) if lake_ready(ctx) else []


def _total_seconds(run: dict[str, Any]) -> float:
    total = run["seconds"].get("total")
    if total is not None:
        return float(total)
    return float((pd.Timestamp(run["finished_at"]) - pd.Timestamp(run["started_at"])).total_seconds())


def runs_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One display row per run: id, start, status, seconds, gate decision, champion after the run, error."""
    rows = []
    for r in runs:
        summary = r["summary"]
        gate = summary.get("gate") or {}
        champion = summary.get("champion")
        rows.append(
            {
                "run": r["run_id"][:12],
                "started (UTC)": fmt_time(r["started_at"]),
                "status": r["status"],
                "seconds": f"{_total_seconds(r):.1f}",
                "gate": gate.get("decision") or NONE,
                "champion": f"v{champion['version']}" if champion else NONE,
                "error": r.get("error") or "",
            }
        )
    return pd.DataFrame(rows)


def step_timings(run: dict[str, Any]) -> pd.DataFrame:
    """Seconds per step of one run, in DAG order (the total left out)."""
    seconds = {k: float(v) for k, v in run["seconds"].items() if k != "total"}
    order = {name: i for i, name in enumerate(STEP_NAMES)}
    steps = sorted(seconds, key=lambda s: order.get(s, len(order)))
    return pd.DataFrame({"step": steps, "seconds": [seconds[s] for s in steps]})


def lake_tables(ctx: Context) -> pd.DataFrame:
    """Every table of the lake with its current Delta version, row count and last write."""
    from goldgate.summary import table_versions

    cols = ["table", "version", "rows", "last write (UTC)"]
    if not lake_ready(ctx):
        return pd.DataFrame(columns=cols)
    rows = []
    for name, t in table_versions(ctx.lake).items():
        last = ctx.lake.history(name, limit=1)
        stamp = last[0].get("timestamp") if last else None
        when = fmt_time(pd.Timestamp(stamp, unit="ms", tz=UTC)) if stamp is not None else ""
        rows.append({"table": name, "version": t["version"], "rows": t["rows"], "last write (UTC)": when})
    return pd.DataFrame(rows, columns=cols)


def quality_frame(ctx: Context, batches: int = 5) -> pd.DataFrame:
    """Per table and rule: passed and failed rows over every batch, and failures in the last batches."""
    from goldgate.quality import QUALITY, quality_report

    cols = ["table", "rule", "action", "passed", "failed", "trend"]
    if not lake_ready(ctx) or not ctx.lake.exists(QUALITY):
        return pd.DataFrame(columns=cols)
    report = quality_report(ctx.lake.read(QUALITY), batches)
    rows = [
        {**{k: r[k] for k in cols[:-1]}, "trend": " ".join(NONE if v is None else str(v) for v in r["trend"])}  # type: ignore[attr-defined]
        for r in report
    ]
    return pd.DataFrame(rows, columns=cols)


# -------------------------------------------------------------------------------------------------- models


def _client(ctx: Context) -> Any | None:
    return ctx.mlflow_client() if tracking_ready(ctx) else None


def registered_versions(ctx: Context) -> pd.DataFrame:
    """Registered versions, newest first: aliases, gate decision and the primary metric (backtest, holdout)."""
    from goldgate.registry import list_versions

    metric = ctx.usecase.evaluation.primary_metric
    cols = ["version", "aliases", "decision", f"backtest {metric}", f"holdout {metric}", "run id"]
    if _client(ctx) is None:
        return pd.DataFrame(columns=cols)
    rows = [
        {
            "version": v["version"],
            "aliases": ", ".join(v["aliases"]) or NONE,
            "decision": v["decision"] or NONE,
            f"backtest {metric}": fmt_metric(v["metrics"].get(f"backtest_{metric}")),
            f"holdout {metric}": fmt_metric(v["metrics"].get(f"holdout_{metric}")),
            "run id": (v["run_id"] or "")[:12],
        }
        for v in list_versions(ctx.usecase.models.registered_name)
    ]
    return pd.DataFrame(rows, columns=cols)


def latest_training_run(ctx: Context) -> Any | None:
    """The newest training run of the use case, or None."""
    if _client(ctx) is None:
        return None
    try:
        return ctx.latest_training_run()
    except LookupError:
        return None


def training_models(ctx: Context, run: Any) -> pd.DataFrame:
    """The baseline and candidates of a training run with their pooled walk-forward (backtest) metrics."""
    client = ctx.mlflow_client()
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}' AND tags.`goldgate.kind` = 'model'",
    )
    primary = ctx.usecase.evaluation.primary_metric
    rows = []
    for child in sorted(children, key=lambda r: r.info.start_time):
        metrics = {k.removeprefix("backtest_"): v for k, v in child.data.metrics.items() if k.startswith("backtest_")}
        names = sorted(metrics, key=lambda m: (m != primary, m))  # the primary metric first
        rows.append(
            {
                "model": child.data.tags.get("goldgate.model", ""),
                "role": child.data.tags.get("goldgate.role", ""),
                **{k: fmt_metric(metrics[k]) for k in names},
                "run id": child.info.run_id[:12],
            }
        )
    return pd.DataFrame(rows)


def load_run_json(run: Any, name: str) -> dict[str, Any] | None:
    """A JSON artifact of a run (None when the run has none by that name)."""
    import mlflow

    try:
        data = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{name}")
    except Exception:  # MLflow raises several types for a missing artifact, depending on the store
        return None
    return data if isinstance(data, dict) else None


def latest_gate(ctx: Context) -> dict[str, Any] | None:
    """The gate decision recorded on the newest training run (``gate_decision.json``), or None."""
    from goldgate.gate import DECISION_FILE

    run = latest_training_run(ctx)
    return load_run_json(run, DECISION_FILE) if run is not None else None


def criteria_frame(criteria: list[dict[str, Any]]) -> pd.DataFrame:
    """Gate criteria for display: passed mark, name, value, threshold and detail."""
    rows = [
        {
            "passed": "✓" if c.get("passed") else "✗",
            "criterion": c.get("name", ""),
            "value": NONE if c.get("value") is None else f"{c['value']:.6g}",
            "threshold": NONE if c.get("threshold") is None else f"{c['threshold']:.6g}",
            "detail": c.get("detail", ""),
        }
        for c in criteria
    ]
    return pd.DataFrame(rows, columns=["passed", "criterion", "value", "threshold", "detail"])


def gate_history(ctx: Context) -> list[dict[str, Any]]:
    """Every ``ops.promotions`` row of the use case, newest first, with its criteria parsed.

    The criteria come from the full gate record when there is one (it carries each criterion's detail).
    """
    from goldgate.registry import promotions

    if not lake_ready(ctx):
        return []
    out = []
    for row in reversed(promotions(ctx.lake)):
        if row.get("use_case") not in (None, ctx.usecase.name):
            continue
        record = json.loads(row["gate_record"]) if row.get("gate_record") else None
        criteria = record["criteria"] if record else json.loads(row.get("criteria") or "[]")
        out.append({**row, "criteria": criteria})
    return out


def training_images(ctx: Context, run: Any) -> dict[str, bytes]:
    """The PNG plots logged on a training run (backtest, predicted vs actual, importance, calibration)."""
    from goldgate.plots import logged_plots

    ctx.mlflow_client()
    return logged_plots(run.info.run_id)


# --------------------------------------------------------------------------------------------- predictions


def predictions_frame(ctx: Context) -> pd.DataFrame:
    """The predictions table, newest first."""
    frame = read_table(ctx, ctx.usecase.tables.predictions)
    if frame.empty:
        return frame
    time_col = prediction_time_column(ctx, frame)
    return frame.sort_values([time_col, ctx.usecase.entity], ascending=[False, True]).reset_index(drop=True)


def prediction_time_column(ctx: Context, frame: pd.DataFrame) -> str:
    """The date a prediction was made for: ``as_of`` (the scoring steps' column), else the use case's time."""
    return "as_of" if "as_of" in frame.columns else ctx.usecase.time


def filter_predictions(
    frame: pd.DataFrame,
    entity_col: str,
    entities: list[Any],
    time_col: str,
    start: date | None,
    end: date | None,
) -> pd.DataFrame:
    """Rows of the chosen entities (all when none chosen) between ``start`` and ``end`` (inclusive)."""
    out = frame
    if entities:
        out = out[out[entity_col].isin(entities)]
    days = pd.to_datetime(out[time_col]).dt.date
    if start is not None:
        out = out[days >= start]
        days = days[days >= start]
    if end is not None:
        out = out[days <= end]
    return out.reset_index(drop=True)


def to_csv(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV (for the download button)."""
    return frame.to_csv(index=False).encode("utf-8")


# ---------------------------------------------------------------------------------------------- monitoring


def drift_history(ctx: Context) -> pd.DataFrame:
    """``ops.drift`` rows of the use case's registered model."""
    from goldgate.loop import DRIFT

    frame = read_table(ctx, DRIFT)
    return frame[frame["model_name"] == ctx.usecase.models.registered_name] if not frame.empty else frame


def drift_over_time(drift: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """One column per feature, one row per window end: the statistic's value (the newest computation wins)."""
    rows = drift[drift["statistic"] == statistic].sort_values("computed_at")
    if rows.empty:
        return pd.DataFrame()
    return rows.pivot_table(index="window_end", columns="feature", values="value", aggfunc="last").sort_index()


def latest_drift(drift: pd.DataFrame) -> pd.DataFrame:
    """The statistics of the newest window, drifted first."""
    if drift.empty:
        return drift
    latest = drift[drift["window_end"] == drift["window_end"].max()]
    cols = ["feature", "kind", "statistic", "value", "threshold", "drifted", "model_version", "window_end"]
    return latest.sort_values(["drifted", "feature", "statistic"], ascending=[False, True, True])[cols]


def performance_history(ctx: Context) -> pd.DataFrame:
    """``ops.performance`` rows of the use case's registered model."""
    from goldgate.performance import PERFORMANCE

    frame = read_table(ctx, PERFORMANCE)
    return frame[frame["model_name"] == ctx.usecase.models.registered_name] if not frame.empty else frame


def performance_over_time(performance: pd.DataFrame) -> pd.DataFrame:
    """One column per source and metric (e.g. ``backfill rmse``), one row per window end."""
    if performance.empty:
        return pd.DataFrame()
    rows = performance.assign(series=performance["source"] + " " + performance["metric"]).sort_values("computed_at")
    return rows.pivot_table(index="window_end", columns="series", values="value", aggfunc="last").sort_index()


def alerts_frame(ctx: Context) -> pd.DataFrame:
    """``ops.alerts`` rows of the use case, newest first."""
    from goldgate.alerts import ALERTS

    frame = read_table(ctx, ALERTS)
    if frame.empty:
        return frame
    mine = frame[frame["use_case"] == ctx.usecase.name]
    return mine.sort_values(["raised_at", "alert_id"], ascending=[False, True]).reset_index(drop=True)


def runbook_file(link: str) -> Path | None:
    """The runbook a link names, found relative to the current folder or to goldgate's source tree."""
    if link.startswith(("http://", "https://")):
        return None
    for base in (Path.cwd(), _PACKAGE_ROOT):
        path = (base / link).resolve()
        if path.is_file():
            return path
    return None


# ------------------------------------------------------------------------------------------------- predict


@dataclass(frozen=True)
class InputField:
    """One input of the champion's MLflow signature."""

    name: str
    type: str  # MLflow data type: double, float, long, integer, boolean, string, datetime, binary

    @property
    def numeric(self) -> bool:
        return self.type in ("double", "float", "long", "integer")

    @property
    def integral(self) -> bool:
        return self.type in ("long", "integer")


def champion_version(ctx: Context) -> Any | None:
    """The model version the ``champion`` alias points to, or None."""
    from goldgate.registry import CHAMPION, alias_version

    if _client(ctx) is None:
        return None
    return alias_version(ctx.usecase.models.registered_name, CHAMPION)


def load_champion(ctx: Context) -> Any:
    """The champion as an MLflow pyfunc model (``models:/<name>@champion``)."""
    import mlflow

    ctx.mlflow_client()
    return mlflow.pyfunc.load_model(f"models:/{ctx.usecase.models.registered_name}@champion")


def signature_fields(model: Any) -> list[InputField]:
    """The inputs of a pyfunc model's signature, in order."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        return []
    from mlflow.types import DataType

    # A column's type is a DataType member (double, long, ...); arrays and objects are named by their text.
    return [
        InputField(str(c.name), c.type.name if isinstance(c.type, DataType) else str(c.type)) for c in schema.inputs
    ]


def _complete_rows(ctx: Context, fields: list[InputField]) -> Any:
    features = ctx.lake.read(ctx.usecase.tables.features)
    names = [f.name for f in fields if f.name in features.columns]
    conds = [features[n].notnull() for n in names]
    return features.filter(conds) if conds else features


def entity_choices(ctx: Context, fields: list[InputField]) -> list[str]:
    """Entities with every input known on the latest such date (the rows a batch score would predict)."""
    uc = ctx.usecase
    if not lake_ready(ctx) or not ctx.lake.exists(uc.tables.features):
        return []
    rows = _complete_rows(ctx, fields)
    last = rows[uc.time].max()
    found = rows.filter(rows[uc.time] == last).select(uc.entity).distinct().to_pandas()[uc.entity]
    return sorted(str(e) for e in found)


def default_inputs(ctx: Context, fields: list[InputField], entity: str | None) -> dict[str, Any]:
    """The entity's latest feature row with every input known; zeros (or empty) when there is none."""
    uc = ctx.usecase
    values: dict[str, Any] = {f.name: 0 if f.numeric else "" for f in fields}
    if entity is None or not lake_ready(ctx) or not ctx.lake.exists(uc.tables.features):
        return values
    rows = _complete_rows(ctx, fields)
    rows = rows.filter(rows[uc.entity].cast("string") == entity).order_by(rows[uc.time].desc()).limit(1)
    found = rows.to_pandas()
    if found.empty:
        return values
    row = found.iloc[0]
    return {f.name: (row[f.name].item() if hasattr(row[f.name], "item") else row[f.name]) for f in fields}


_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}


def predict_one(model: Any, fields: list[InputField], values: dict[str, Any]) -> float | str:
    """The model's prediction for one row of input values, typed as the signature says (a multiclass model's:
    its most probable class with the probability, as text)."""
    missing = [f.name for f in fields if f.name not in values]
    if missing:
        raise ValueError(f"missing inputs: {', '.join(missing)}")
    frame = pd.DataFrame([{f.name: values[f.name] for f in fields}])
    for f in fields:
        if f.type in _DTYPES:
            frame[f.name] = frame[f.name].astype(_DTYPES[f.type])
        elif f.type == "datetime":
            frame[f.name] = pd.to_datetime(frame[f.name])
    out = model.predict(frame)
    if isinstance(out, pd.DataFrame):  # multiclass: the most probable class and its probability
        best = out.iloc[0].astype("float64")
        return f"{best.idxmax()} (p = {best.max():.3f})"
    return float(pd.Series(out).iloc[0])
