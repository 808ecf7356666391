"""Alert rules over the monitoring history, with M-of-N windows, a cool-down, runbook links and sinks.

A rule watches one metric: a drift statistic per feature (``ops.drift``) or a performance metric of the champion
(``ops.performance``). It fires for a subject when the latest window breaches its threshold and at least
``breaches`` of the last ``windows`` windows did. A rule that already fired for the same subject within
``cooldown_hours`` records the new alert as ``suppressed`` and sends nothing, so a metric hovering around its
threshold does not flap. An alert's id names the rule, use case, champion version, window and subject: running
monitoring again on the same window adds nothing and sends nothing.

Every alert is a row in ``ops.alerts``. Fired alerts also go to the configured sinks: console (a WARNING log
line), a webhook (one JSON POST per alert, bounded timeout), and optionally apprise URLs (email, Slack, ...)
when the optional ``apprise`` package is installed.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

from goldgate.monitor import PREDICTION
from goldgate.usecase import AlertRule, Alerts, AlertSinks

log = logging.getLogger(__name__)

ALERTS = "ops.alerts"
FIRED, SUPPRESSED = "fired", "suppressed"
KIND = {"drift": "feature_drift", "performance": "performance_drop"}

ALERTS_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("use_case", pa.string()),
        ("rule", pa.string()),
        ("kind", pa.string()),
        ("subject", pa.string()),
        ("statistic", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("direction", pa.string()),
        ("breaches", pa.int64()),
        ("windows", pa.int64()),
        ("window_start", pa.string()),
        ("window_end", pa.string()),
        ("model_version", pa.string()),
        ("severity", pa.string()),
        ("status", pa.string()),
        ("runbook", pa.string()),
        ("delivered", pa.string()),
        ("raised_at", pa.timestamp("us", tz="UTC")),
        ("retrain_run_id", pa.string()),
        ("retrain_decision", pa.string()),
        ("retrain_version", pa.string()),
    ]
)


def worse(value: float, threshold: float, direction: str) -> bool:
    """Whether ``value`` is on the bad side of ``threshold`` (direction: which side is worse)."""
    return value > threshold if direction == "higher" else value < threshold


def rule_observations(
    rule: AlertRule, drift: pd.DataFrame, performance: pd.DataFrame, model_version: str
) -> pd.DataFrame:
    """The history a rule reads: subject, window_start, window_end, value, threshold (for the champion version)."""
    cols = ["subject", "window_start", "window_end", "value", "threshold"]
    if rule.family == "drift":
        if drift.empty:
            return pd.DataFrame(columns=cols)
        d = drift[(drift["statistic"] == rule.statistic) & (drift["model_version"].astype(str) == model_version)]
        d = d[d["feature"].isin(rule.subjects)] if rule.subjects else d[d["feature"] != PREDICTION]
        return d.rename(columns={"feature": "subject"})[cols]
    if performance.empty:
        return pd.DataFrame(columns=cols)
    p = performance[
        (performance["metric"] == rule.statistic)
        & (performance["source"] == rule.source)
        & (performance["model_version"].astype(str) == model_version)
    ]
    out = p.assign(subject=f"v{model_version}", threshold=rule.threshold)
    return out[cols]


def evaluate_rules(
    alerts: Alerts,
    drift: pd.DataFrame,
    performance: pd.DataFrame,
    existing: pd.DataFrame,
    *,
    use_case: str,
    model_version: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """New ``ops.alerts`` rows (fired or suppressed) for the latest window of every rule and subject."""
    known = set(existing["alert_id"]) if not existing.empty else set()
    out: list[dict[str, Any]] = []
    for rule in alerts.rules:
        obs = rule_observations(rule, drift, performance, model_version)
        for subject, hist in obs.groupby("subject", sort=True):
            hist = hist.sort_values("window_end", ascending=False).drop_duplicates("window_end").head(rule.windows)
            latest = hist.iloc[0]
            threshold = float(rule.threshold if rule.threshold is not None else latest["threshold"])
            breached = [worse(float(v), threshold, rule.worse) for v in hist["value"]]
            if not breached[0] or sum(breached) < rule.breaches:
                continue
            alert_id = f"{rule.name}:{use_case}:v{model_version}:{latest['window_end']}:{subject}"
            if alert_id in known:
                continue
            status = SUPPRESSED if _cooling(existing, out, rule, str(subject), use_case, now) else FIRED
            out.append(
                {
                    "alert_id": alert_id,
                    "use_case": use_case,
                    "rule": rule.name,
                    "kind": "prediction_drift" if subject == PREDICTION else KIND[rule.family],
                    "subject": str(subject),
                    "statistic": rule.statistic,
                    "value": float(latest["value"]),
                    "threshold": threshold,
                    "direction": rule.worse,
                    "breaches": int(sum(breached)),
                    "windows": len(breached),
                    "window_start": str(latest["window_start"]),
                    "window_end": str(latest["window_end"]),
                    "model_version": model_version,
                    "severity": rule.severity,
                    "status": status,
                    "runbook": alerts.runbook_base + rule.runbook_file,
                    "delivered": "",
                    "raised_at": now,
                    "retrain_run_id": None,
                    "retrain_decision": None,
                    "retrain_version": None,
                }
            )
    return out


def _cooling(
    existing: pd.DataFrame, new: list[dict[str, Any]], rule: AlertRule, subject: str, use_case: str, now: datetime
) -> bool:
    """Whether the rule fired for the subject within its cool-down (in the table or earlier in this batch)."""
    since = now - timedelta(hours=rule.cooldown_hours)
    if any(a["rule"] == rule.name and a["subject"] == subject and a["status"] == FIRED for a in new):
        return True
    if existing.empty or "rule" not in existing.columns:
        return False
    fired = existing[
        (existing["rule"] == rule.name)
        & (existing["subject"] == subject)
        & (existing["use_case"] == use_case)
        & (existing["status"] == FIRED)
    ]
    if fired.empty:
        return False
    last = pd.Timestamp(fired["raised_at"].max())
    last = last.tz_localize(UTC) if last.tzinfo is None else last
    return bool(last > pd.Timestamp(since))


def payload(alert: dict[str, Any]) -> dict[str, Any]:
    """The JSON document a sink receives for one alert."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in alert.items() if k != "delivered"}


def post_webhook(url: str, body: dict[str, Any], timeout: float) -> str:
    """POST one alert as JSON; returns 'ok' or a short error (never the URL, which may hold a token)."""
    data = json.dumps(body, default=str).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is operator configuration
        url, data=data, method="POST", headers={"Content-Type": "application/json", "User-Agent": "goldgate"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return "ok" if 200 <= response.status < 300 else f"http {response.status}"
    except urllib.error.HTTPError as exc:
        return f"http {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return f"error {type(exc).__name__}"


def _apprise(urls: list[str], alert: dict[str, Any]) -> str:
    try:
        import apprise
    except ImportError:
        return "not installed"
    notifier = apprise.Apprise()
    for url in urls:
        notifier.add(url)
    ok = notifier.notify(title=f"goldgate alert: {alert['rule']} {alert['subject']}", body=json.dumps(payload(alert)))
    return "ok" if ok else "error"


def deliver(alerts: list[dict[str, Any]], sinks: AlertSinks, webhook_url: str | None) -> None:
    """Send every fired alert to every sink, once; record per sink the outcome in the alert's ``delivered``."""
    for alert in alerts:
        if alert["status"] != FIRED:
            continue
        outcomes = []
        if sinks.console:
            log.warning(
                "ALERT %s [%s] %s %s=%.4g (threshold %.4g, %s is worse; %d of %d windows) window %s..%s runbook: %s",
                alert["rule"],
                alert["severity"],
                alert["subject"],
                alert["statistic"],
                alert["value"],
                alert["threshold"],
                alert["direction"],
                alert["breaches"],
                alert["windows"],
                alert["window_start"],
                alert["window_end"],
                alert["runbook"],
            )
            outcomes.append("console:ok")
        if sinks.webhook is not None and webhook_url:
            result = post_webhook(webhook_url, payload(alert), sinks.webhook.timeout_seconds)
            if result != "ok":
                log.error("alert %s: webhook delivery failed (%s)", alert["alert_id"], result)
            outcomes.append(f"webhook:{result}")
        elif sinks.webhook is not None:
            outcomes.append("webhook:no url")
        if sinks.apprise:
            outcomes.append(f"apprise:{_apprise(sinks.apprise, alert)}")
        alert["delivered"] = ",".join(outcomes)


def alerts_table(rows: list[dict[str, Any]]) -> pa.Table:
    """ops.alerts rows as an Arrow table with the full schema."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in ALERTS_SCHEMA} for r in rows], schema=ALERTS_SCHEMA)
