"""The human drift report: one self-contained HTML file (inline PNG, no scripts) from the monitoring histograms.

It shows exactly what monitoring measured: per feature, the reference and current shares over the PSI bins
(or categories), every statistic against its threshold, the performance rows and the alerts. No rows are read
for it; it is built from the reference profile and the current window's histograms.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from goldgate.monitor import DriftRow, Histogram, _bin_shares


def _shares(ref: dict[str, Any], hist: Histogram) -> tuple[list[str], np.ndarray, np.ndarray]:
    if ref.get("kind") == "categorical":
        cats = list(dict.fromkeys([*ref["categories"], *hist.counts]))
        cur = np.array([hist.counts.get(c, 0) for c in cats], dtype="float64")
        return cats, np.array([ref["categories"].get(c, 0.0) for c in cats]), cur / max(cur.sum(), 1)
    edges = ref["edges"]
    labels = [f"<{edges[0]:.3g}"] + [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
    labels.append(f"≥{edges[-1]:.3g}")
    return labels, np.asarray(ref["shares"]), _bin_shares(hist, ref["edge_cells"])


def _figure(panels: list[tuple[str, dict[str, Any], Histogram, bool]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (name, ref, hist, drifted) in zip(axes.flat, panels, strict=False):
        labels, ref_s, cur_s = _shares(ref, hist)
        x = np.arange(len(labels))
        ax.bar(x - 0.2, ref_s, 0.4, label="reference", color="#9aa7b1")
        ax.bar(x + 0.2, cur_s, 0.4, label="current", color="#c0392b" if drifted else "#2e86c1")
        ax.set_title(name + ("  (drifted)" if drifted else ""), fontsize=9, color="#c0392b" if drifted else "black")
        ax.set_xticks(x, labels, rotation=60, fontsize=6, ha="right")
        ax.tick_params(axis="y", labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(headers: list[str], rows: list[list[Any]], flag: list[bool] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, r in enumerate(rows):
        cls = ' class="bad"' if flag and flag[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def render_report(
    *,
    title: str,
    window: tuple[str, str],
    model: str,
    profile: dict[str, Any],
    histograms: dict[str, tuple[dict[str, Any], Histogram]],
    drift: list[DriftRow],
    performance: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    notes: list[str],
) -> str:
    """The report as one HTML document."""
    drifted = {r.feature for r in drift if r.drifted}
    panels = [(name, ref, hist, name in drifted) for name, (ref, hist) in histograms.items() if hist.present]
    image = _figure(panels) if panels else ""
    stats = sorted(drift, key=lambda r: (r.feature, r.statistic))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}tr.bad td{background:#fde2e0}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Window <b>{html.escape(window[0])} … {html.escape(window[1])}</b> against the reference profile of "
        f"<b>{html.escape(model)}</b> ({profile.get('rows', '?')} reference rows). Drifted features: "
        f"<b>{html.escape(', '.join(sorted(drifted)) or 'none')}</b>.</p>",
        "".join(f"<p><i>{html.escape(n)}</i></p>" for n in notes),
        "<h2>Reference vs current shares</h2>",
        f"<img alt='histograms' src='data:image/png;base64,{image}'>" if image else "<p>No current values.</p>",
        "<h2>Drift statistics</h2>",
        _table(
            ["feature", "kind", "statistic", "value", "threshold", "drifted"],
            [[r.feature, r.kind, r.statistic, r.value, r.threshold, "yes" if r.drifted else ""] for r in stats],
            [r.drifted for r in stats],
        ),
        "<h2>Performance (labels known)</h2>",
        _table(
            ["source", "model version", "window", "metric", "value", "rows"],
            [
                [
                    p["source"],
                    p.get("model_version"),
                    f"{p['window_start']}…{p['window_end']}",
                    p["metric"],
                    p["value"],
                    p["rows"],
                ]
                for p in performance
            ],
        )
        if performance
        else "<p>No labelled rows yet.</p>",
        "<h2>Alerts</h2>",
        _table(
            ["rule", "subject", "statistic", "value", "threshold", "status", "runbook"],
            [
                [a["rule"], a["subject"], a["statistic"], a["value"], a["threshold"], a["status"], a["runbook"]]
                for a in alerts
            ],
        )
        if alerts
        else "<p>No new alerts.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(text: str, path: Path) -> Path:
    """Write the report (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
