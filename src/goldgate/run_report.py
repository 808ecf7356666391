"""The run report: one self-contained HTML file about one ``goldgate run`` (``goldgate report``).

It is built from what the run recorded: its row in ``ops.runs`` (timings and the run summary), the plots and the
gate decision logged on its training run in MLflow, the registry, and the predictions table read at the version
the run left it (Delta time travel). Images are inlined as base64 PNG and the page has no script and no external
style, so the file can be mailed, archived or opened from disk. It is also logged to the training run.
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from goldgate.context import Context
from goldgate.dag import STEP_NAMES
from goldgate.plots import TRAINING_PLOTS, logged_plots
from goldgate.report import write_report

log = logging.getLogger(__name__)

REPORT_ARTIFACT_DIR = "reports"
SAMPLE_PREDICTIONS = 20
SECTIONS = (
    ("run", "Run"),
    ("dag", "DAG run"),
    ("data", "Data versions"),
    ("quality", "Data quality"),
    ("models", "Model comparison"),
    ("gate", "Gate decision"),
    ("champion", "Champion"),
    ("predictions", "Sample predictions"),
    ("drift", "Drift"),
    ("alerts", "Alerts"),
)
_STYLE = (
    "body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222}"
    "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;"
    "text-align:left}th{background:#f3f5f7}tr.bad td{background:#fde2e0}tr.good td{background:#e6f4ea}"
    "img{max-width:100%;display:block;margin:.5em 0}figcaption{font-size:12px;color:#555}"
    "nav a{margin-right:1em}.muted{color:#777}.error{color:#c0392b}"
)


@dataclass
class RunFacts:
    """Everything the report shows, gathered before rendering (rendering reads nothing)."""

    use_case: str
    task: str
    primary_metric: str
    entity: str
    run: dict[str, Any]
    quality: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    training_run_id: str | None = None
    images: dict[str, bytes] = field(default_factory=dict)
    psi_threshold: float = 0.2

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.run.get("summary") or {})


# ------------------------------------------------------------------------------------------------- gather


def training_run_id(summary: dict[str, Any]) -> str | None:
    """The training run a run summary's model runs belong to (their MLflow parent), or None."""
    import mlflow

    client = mlflow.MlflowClient()
    for r in summary.get("runs") or []:
        parent = client.get_run(r["run_id"]).data.tags.get("mlflow.parentRunId")
        if parent:
            return str(parent)
    return None


def predictions_at_run(ctx: Context, summary: dict[str, Any]) -> pd.DataFrame:
    """The newest predictions as the run left the table (time travel to the version in its summary)."""
    name = ctx.usecase.tables.predictions
    version = (summary.get("tables") or {}).get(name, {}).get("version")
    if version is None or not ctx.lake.exists(name):
        return pd.DataFrame()
    frame = ctx.lake.read(name, version=int(version)).to_pandas()
    time_col = "as_of" if "as_of" in frame.columns else ctx.usecase.time
    newest = frame.sort_values([time_col, ctx.usecase.entity], ascending=[False, True])
    cols = [c for c in (ctx.usecase.entity, time_col, "prediction", "model_version") if c in frame.columns]
    return newest[cols].head(SAMPLE_PREDICTIONS).reset_index(drop=True)


def gather_facts(ctx: Context, run: str = "latest") -> RunFacts:
    """The report's content for one recorded run (``latest`` or a run id); LookupError when there is none."""
    from goldgate.quality import QUALITY, quality_report
    from goldgate.registry import list_versions
    from goldgate.runlog import find_run

    uc = ctx.usecase
    record = find_run(ctx.lake, uc.name, run)
    facts = RunFacts(
        use_case=uc.name,
        task=uc.task,
        primary_metric=uc.evaluation.primary_metric,
        entity=uc.entity,
        run=record,
        psi_threshold=uc.monitoring.psi_threshold,
    )
    if ctx.lake.exists(QUALITY):
        facts.quality = quality_report(ctx.lake.read(QUALITY))
    facts.predictions = predictions_at_run(ctx, facts.summary)
    if facts.summary.get("runs"):
        ctx.mlflow_client()
        facts.versions = list_versions(uc.models.registered_name)
        facts.training_run_id = training_run_id(facts.summary)
        if facts.training_run_id:
            facts.images = logged_plots(facts.training_run_id)
    return facts


# ------------------------------------------------------------------------------------------------- render


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def html_table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    """An escaped HTML table; ``classes`` gives each row a CSS class (``good``/``bad``) or none."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def image_tag(png: bytes, caption: str) -> str:
    """A figure with the PNG inlined as base64."""
    encoded = base64.b64encode(png).decode()
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{encoded}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _when(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def _muted(text: str) -> str:
    return f"<p class='muted'>{html.escape(text)}</p>"


def timings_png(seconds: dict[str, float]) -> bytes:
    """Horizontal bars of seconds per step, in DAG order."""
    from goldgate.plots import figure_png, load_pyplot

    plt = load_pyplot()
    order = {name: i for i, name in enumerate(STEP_NAMES)}
    steps = sorted((s for s in seconds if s != "total"), key=lambda s: order.get(s, len(order)))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(steps) + 1.0))
    ax.barh(steps[::-1], [seconds[s] for s in steps][::-1], color="#2e86c1")
    ax.set_xlabel("seconds", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title("Wall-clock seconds per step", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def drift_png(statistics: dict[str, dict[str, float]], statistic: str, threshold: float) -> bytes:
    """One bar per monitored feature of a drift statistic, with its threshold."""
    from goldgate.plots import figure_png, load_pyplot

    plt = load_pyplot()
    values = {f: s[statistic] for f, s in sorted(statistics.items()) if statistic in s}
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(values) + 1.2))
    colours = ["#c0392b" if v > threshold else "#2e86c1" for v in values.values()]
    ax.barh(list(values)[::-1], list(values.values())[::-1], color=colours[::-1])
    ax.axvline(threshold, color="#555", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel(statistic, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"{statistic} per feature, latest window", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def section_run(facts: RunFacts) -> str:
    """Run id, status, start and finish, workspace, training run, and the error of a failed run."""
    run, s = facts.run, facts.summary
    rows = [
        ["run id", run["run_id"]],
        ["use case", facts.use_case],
        ["status", run["status"]],
        ["started (UTC)", _when(run["started_at"])],
        ["finished (UTC)", _when(run["finished_at"])],
        ["workspace", s.get("workspace", "")],
        ["training run (MLflow)", facts.training_run_id or "-"],
    ]
    error = f"<p class='error'><b>error:</b> {html.escape(run['error'])}</p>" if run.get("error") else ""
    return html_table(["", ""], rows) + error


def section_dag(facts: RunFacts) -> str:
    """Seconds per step in DAG order, the steps that did not run, and a bar chart."""
    seconds = {k: float(v) for k, v in (facts.run.get("seconds") or {}).items()}
    if not [k for k in seconds if k != "total"]:
        return _muted("No step finished.")
    order = {name: i for i, name in enumerate(STEP_NAMES)}
    steps = sorted((k for k in seconds if k != "total"), key=lambda k: order.get(k, len(order)))
    rows = [[k, f"{seconds[k]:.2f}"] for k in steps]
    if "total" in seconds:
        rows.append(["total", f"{seconds['total']:.2f}"])
    not_run = [name for name in STEP_NAMES if name not in seconds]
    note = _muted(f"Not run: {', '.join(not_run)}.") if not_run else ""
    return html_table(["step", "seconds"], rows) + note + image_tag(timings_png(seconds), "Seconds per step")


def section_data(facts: RunFacts) -> str:
    """Every lake table with the Delta version and row count the run left."""
    tables = facts.summary.get("tables") or {}
    if not tables:
        return _muted("The run recorded no table versions.")
    rows = [[name, t.get("version"), f"{t.get('rows', 0):,}"] for name, t in sorted(tables.items())]
    return "<p>Every lake table as the run left it.</p>" + html_table(["table", "Delta version", "rows"], rows)


def section_quality(facts: RunFacts) -> str:
    """Passed and failed rows per rule over every batch checked so far, and the quarantine tables."""
    quarantine = facts.summary.get("quarantine") or {}
    parts = []
    if facts.quality:
        rows = [[q["table"], q["rule"], q["action"], f"{q['passed']:,}", f"{q['failed']:,}"] for q in facts.quality]
        flags = ["bad" if q["failed"] else "" for q in facts.quality]
        parts.append(html_table(["table", "rule", "action", "passed", "failed"], rows, flags))
    else:
        parts.append(_muted("No quality records."))
    if quarantine:
        parts.append(html_table(["quarantine table", "rows"], [[k, f"{v:,}"] for k, v in sorted(quarantine.items())]))
    return "".join(parts)


def section_models(facts: RunFacts) -> str:
    """Baseline and candidates with their pooled backtest metrics, and the training run's plots."""
    runs = facts.summary.get("runs") or []
    if not runs:
        return _muted("No models were trained in this run.")
    metrics = sorted({k for r in runs for k in r.get("metrics", {})})
    metrics = [facts.primary_metric, *[m for m in metrics if m != facts.primary_metric]]
    rows = [
        [r["model"], r.get("role", ""), *[_metric(r.get("metrics", {}).get(m)) for m in metrics], r["run_id"][:12]]
        for r in runs
    ]
    images = "".join(image_tag(png, TRAINING_PLOTS[name]) for name, png in facts.images.items())
    note = "<p>Walk-forward backtest, all folds pooled; the primary metric first.</p>"
    return note + html_table(["model", "role", *metrics, "run id"], rows) + images


def _metric(value: Any) -> str:
    return f"{value:.5f}" if isinstance(value, (int, float)) else "-"


def section_gate(facts: RunFacts) -> str:
    """The gate's decision, the candidate, the reason and every criterion."""
    gate = facts.summary.get("gate")
    if not gate:
        return _muted("The gate did not decide in this run.")
    head = (
        f"<p><b>{html.escape(str(gate['decision']))}</b> {html.escape(str(gate.get('candidate') or '-'))}: "
        f"{html.escape(str(gate['reason']))}</p>"
    )
    criteria = gate.get("criteria") or []
    rows = [
        ["✓" if c["passed"] else "✗", c["name"], c.get("value"), c.get("threshold"), c.get("detail", "")]
        for c in criteria
    ]
    flags = ["good" if c["passed"] else "bad" for c in criteria]
    return head + html_table(["", "criterion", "value", "threshold", "detail"], rows, flags)


def section_champion(facts: RunFacts) -> str:
    """The champion after the run and every registered version with its aliases now."""
    champion = facts.summary.get("champion")
    head = (
        f"<p>After the run: <b>{html.escape(champion['name'])} v{html.escape(str(champion['version']))}</b></p>"
        if champion
        else _muted("No champion after this run.")
    )
    if not facts.versions:
        return head
    metric = facts.primary_metric
    rows = [
        [
            v["version"],
            ", ".join(v["aliases"]) or "-",
            v["decision"] or "-",
            _metric(v["metrics"].get(f"backtest_{metric}")),
            (v["run_id"] or "")[:12],
        ]
        for v in facts.versions
    ]
    return head + html_table(["version", "aliases (now)", "decision", f"backtest {metric}", "run id"], rows)


def section_predictions(facts: RunFacts) -> str:
    """The newest predictions as the run left the predictions table."""
    frame = facts.predictions
    if frame.empty:
        return _muted("No predictions.")
    rows = [[_fmt(v) for v in r] for r in frame.itertuples(index=False)]
    total = (facts.summary.get("predictions_rows") or 0) if facts.summary else 0
    kind = "probabilities" if facts.task == "classification" else "predictions"
    return f"<p>Newest {len(frame)} of {total:,} stored {kind}.</p>" + html_table(list(frame.columns), rows)


def section_drift(facts: RunFacts) -> str:
    """The monitored window, drifted features, every statistic per feature and a PSI chart."""
    drift = facts.summary.get("drift") or {}
    statistics = drift.get("statistics") or {}
    if not statistics:
        return _muted(drift.get("note") or "No drift measured in this run.")
    window = drift.get("window") or ["?", "?"]
    drifted = drift.get("features_drifted") or []
    head = (
        f"<p>Window {html.escape(str(window[0]))} … {html.escape(str(window[1]))} against the champion "
        f"v{html.escape(str(drift.get('model_version', '?')))}'s reference. Drifted: "
        f"<b>{html.escape(', '.join(drifted) or 'none')}</b>; prediction drift: "
        f"{'yes' if drift.get('prediction_drifted') else 'no'}.</p>"
    )
    stats = sorted({k for s in statistics.values() for k in s})
    rows = [[f, *[s.get(k) for k in stats]] for f, s in sorted(statistics.items())]
    flags = ["bad" if f in drifted else "" for f, _ in sorted(statistics.items())]
    plot = image_tag(drift_png(statistics, "psi", facts.psi_threshold), "PSI per feature") if "psi" in stats else ""
    return head + html_table(["feature", *stats], rows, flags) + plot


def section_alerts(facts: RunFacts) -> str:
    """The alerts the run's monitoring raised (fired or suppressed)."""
    alerts = facts.summary.get("alerts") or []
    if not alerts:
        return _muted("No alerts in this run.")
    cols = ["rule", "severity", "subject", "statistic", "value", "threshold", "status", "runbook"]
    rows = [[a.get(c) for c in cols] for a in alerts]
    return html_table(cols, rows, ["bad" if a.get("status") == "fired" else "" for a in alerts])


_RENDERERS = {
    "run": section_run,
    "dag": section_dag,
    "data": section_data,
    "quality": section_quality,
    "models": section_models,
    "gate": section_gate,
    "champion": section_champion,
    "predictions": section_predictions,
    "drift": section_drift,
    "alerts": section_alerts,
}


def render_run_report(facts: RunFacts) -> str:
    """The report as one HTML document (inline style and images, no scripts)."""
    title = f"goldgate · {facts.use_case} · run {facts.run['run_id'][:12]}"
    nav = "".join(f"<a href='#{key}'>{html.escape(name)}</a>" for key, name in SECTIONS)
    body = "".join(
        f"<section id='{key}'><h2>{html.escape(name)}</h2>{_RENDERERS[key](facts)}</section>" for key, name in SECTIONS
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}</body></html>"
    )


# ---------------------------------------------------------------------------------------------------- write


def default_path(ctx: Context, facts: RunFacts) -> Path:
    """``<workspace>/reports/<use case>-run-<start time>.html``."""
    stamp = pd.Timestamp(facts.run["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    return ctx.settings.reports_dir / f"{facts.use_case}-run-{stamp}.html"


def write_run_report(ctx: Context, run: str = "latest", out: Path | None = None) -> Path:
    """Write the report of a recorded run and log it to the run's training run in MLflow; returns the file."""
    facts = gather_facts(ctx, run)
    path = write_report(render_run_report(facts), out or default_path(ctx, facts))
    if facts.training_run_id:
        ctx.mlflow_client().log_artifact(facts.training_run_id, str(path), REPORT_ARTIFACT_DIR)
        log.info("logged %s to training run %s", path.name, facts.training_run_id)
    else:
        log.info("run %s has no training run: the report is not logged to MLflow", facts.run["run_id"])
    return path
