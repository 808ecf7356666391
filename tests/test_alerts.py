"""Alert rules: M-of-N windows, cool-down, idempotent ids, runbook links, and the webhook sink on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pandas as pd
import pytest

from goldgate.alerts import FIRED, SUPPRESSED, alerts_table, deliver, evaluate_rules, post_webhook
from goldgate.usecase import AlertRule, Alerts, AlertSinks, UseCaseError, WebhookSink, parse_usecase

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)


def drift_history(values: list[float], feature: str = "rv_5", statistic: str = "psi") -> pd.DataFrame:
    """One drift row per daily window, oldest first."""
    return pd.DataFrame(
        {
            "model_version": "3",
            "feature": feature,
            "statistic": statistic,
            "window_start": [str((T0 + timedelta(days=i - 60)).date()) for i in range(len(values))],
            "window_end": [str((T0 + timedelta(days=i)).date()) for i in range(len(values))],
            "value": values,
            "threshold": 0.2,
        }
    )


def run_rules(
    alerts: Alerts, drift: pd.DataFrame, existing: pd.DataFrame, now: datetime, perf: pd.DataFrame | None = None
) -> list[dict[str, Any]]:
    return evaluate_rules(
        alerts, drift, perf if perf is not None else pd.DataFrame(), existing, use_case="fx", model_version="3", now=now
    )


def replay(alerts: Alerts, values: list[float], hours_between: float) -> pd.DataFrame:
    """Monitoring run after run as windows arrive: evaluate on the history so far, record what it raised."""
    existing = pd.DataFrame()
    for i in range(1, len(values) + 1):
        new = run_rules(alerts, drift_history(values[:i]), existing, T0 + timedelta(hours=hours_between * i))
        if new:
            existing = pd.concat([existing, alerts_table(new).to_pandas()], ignore_index=True)
    return existing


def test_one_of_one_fires_on_the_breaching_window_with_a_runbook_link() -> None:
    alerts = Alerts(rules=[AlertRule(name="feature_psi", metric="drift.psi")])
    [alert] = run_rules(alerts, drift_history([0.1, 0.35]), pd.DataFrame(), T0)
    assert alert["status"] == FIRED
    assert alert["alert_id"] == f"feature_psi:fx:v3:{(T0 + timedelta(days=1)).date()}:rv_5"
    assert alert["runbook"] == "docs/runbook/drift.md"
    assert (alert["value"], alert["threshold"], alert["direction"]) == (0.35, 0.2, "higher")
    assert alert["kind"] == "feature_drift"
    assert run_rules(alerts, drift_history([0.35, 0.1]), pd.DataFrame(), T0) == []  # latest window is fine


@pytest.mark.parametrize(
    ("values", "fires"),
    [([0.3, 0.1, 0.3], True), ([0.1, 0.1, 0.3], False), ([0.3, 0.3, 0.1], False), ([0.9, 0.1, 0.1, 0.3], False)],
)
def test_m_of_n_windows(values: list[float], fires: bool) -> None:
    alerts = Alerts(rules=[AlertRule(name="psi_2_of_3", metric="drift.psi", breaches=2, windows=3)])
    raised = run_rules(alerts, drift_history(values), pd.DataFrame(), T0)
    assert bool(raised) is fires
    if fires:
        assert (raised[0]["breaches"], raised[0]["windows"]) == (2, 3)


def test_cool_down_stops_flapping() -> None:
    alerts = Alerts(rules=[AlertRule(name="feature_psi", metric="drift.psi", cooldown_hours=24)])
    # A statistic hovering around its threshold, one monitoring run every 3 hours: 4 breaches in 18 hours.
    values = [0.25, 0.15, 0.25, 0.15, 0.25, 0.15, 0.25]
    log = replay(alerts, values, hours_between=3)
    assert list(log["status"]) == [FIRED, SUPPRESSED, SUPPRESSED, SUPPRESSED]
    # Once the cool-down has passed, the same rule and subject fire again.
    later = replay(alerts, values, hours_between=7)  # breaches 14 hours apart
    assert list(later["status"]) == [FIRED, SUPPRESSED, FIRED, SUPPRESSED]


def test_the_same_window_never_alerts_twice() -> None:
    alerts = Alerts(rules=[AlertRule(name="feature_psi", metric="drift.psi", cooldown_hours=0)])
    history = drift_history([0.5])
    first = run_rules(alerts, history, pd.DataFrame(), T0)
    assert len(first) == 1
    assert run_rules(alerts, history, alerts_table(first).to_pandas(), T0 + timedelta(days=3)) == []


def test_direction_lower_and_default_thresholds_per_statistic() -> None:
    rule = AlertRule(name="categories", metric="drift.chi2_pvalue")
    assert rule.worse == "lower"
    drift = drift_history([0.5, 0.001], feature="segment", statistic="chi2_pvalue").assign(threshold=0.01)
    [alert] = run_rules(Alerts(rules=[rule]), drift, pd.DataFrame(), T0)
    assert (alert["threshold"], alert["direction"], alert["subject"]) == (0.01, "lower", "segment")


def test_feature_rules_skip_the_prediction_unless_named() -> None:
    drift = pd.concat([drift_history([0.5]), drift_history([0.5], feature="prediction")])
    every = Alerts(rules=[AlertRule(name="feature_psi", metric="drift.psi")])
    assert [a["subject"] for a in run_rules(every, drift, pd.DataFrame(), T0)] == ["rv_5"]
    pred = Alerts(rules=[AlertRule(name="prediction_psi", metric="drift.psi", subjects=["prediction"])])
    [alert] = run_rules(pred, drift, pd.DataFrame(), T0)
    assert (alert["subject"], alert["kind"]) == ("prediction", "prediction_drift")


def test_performance_rule_reads_ops_performance() -> None:
    perf = pd.DataFrame(
        {
            "model_version": "3",
            "source": "backfill",
            "metric": ["rmse", "rmse", "mae"],
            "window_start": ["2026-08-01", "2026-09-01", "2026-09-01"],
            "window_end": ["2026-09-30", "2026-10-30", "2026-10-30"],
            "value": [0.03, 0.08, 0.07],
        }
    )
    rule = AlertRule(name="rmse_drop", metric="performance.rmse", threshold=0.06)
    [alert] = run_rules(Alerts(rules=[rule]), pd.DataFrame(), pd.DataFrame(), T0, perf)
    assert (alert["kind"], alert["subject"], alert["value"]) == ("performance_drop", "v3", 0.08)
    assert alert["runbook"] == "docs/runbook/performance-drop.md"


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="breaches"):
        AlertRule(name="r", metric="drift.psi", breaches=3, windows=2)
    with pytest.raises(ValueError, match="needs a threshold"):
        AlertRule(name="r", metric="performance.rmse")
    with pytest.raises(ValueError, match="metric"):
        AlertRule(name="r", metric="drift.colour")
    from importlib import resources

    import yaml

    data = yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text())
    data["monitoring"]["alerts"]["rules"][0]["colour"] = "red"
    with pytest.raises(UseCaseError, match=r"monitoring\.alerts\.rules\.0\.colour': unknown key"):
        parse_usecase(data)


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append({"type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/goldgate?token=s3cret"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_webhook_receives_exactly_one_post_per_fired_alert(receiver: str, caplog: pytest.LogCaptureFixture) -> None:
    alerts = Alerts(rules=[AlertRule(name="feature_psi", metric="drift.psi", cooldown_hours=24)])
    drift = pd.concat([drift_history([0.3], feature=f) for f in ("rv_5", "rv_20")])
    raised = run_rules(alerts, drift, pd.DataFrame(), T0)
    # A third alert of the same rule and subject inside the cool-down is recorded, not sent.
    raised.append({**raised[0], "alert_id": "x:suppressed", "status": SUPPRESSED})
    sinks = AlertSinks(console=True, webhook=WebhookSink(timeout_seconds=5))
    with caplog.at_level(logging.WARNING, logger="goldgate.alerts"):
        deliver(raised, sinks, receiver)
    assert sorted(r["body"]["alert_id"] for r in Receiver.received) == sorted(a["alert_id"] for a in raised[:2])
    assert {r["type"] for r in Receiver.received} == {"application/json"}
    body = Receiver.received[0]["body"]
    assert body["runbook"] == "docs/runbook/drift.md"
    assert {"rule", "subject", "statistic", "value", "threshold", "window_end", "model_version"} <= set(body)
    assert [a["delivered"] for a in raised] == ["console:ok,webhook:ok", "console:ok,webhook:ok", ""]
    assert sum("ALERT feature_psi" in r.getMessage() for r in caplog.records) == 2
    assert "s3cret" not in caplog.text  # the URL (and its token) is never logged


def test_an_unreachable_webhook_is_recorded_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook?token=s3cret"
    assert post_webhook(url, {"a": 1}, timeout=2).startswith("error")
    alerts = Alerts(rules=[AlertRule(name="feature_psi", metric="drift.psi")])
    raised = run_rules(alerts, drift_history([0.3]), pd.DataFrame(), T0)
    with caplog.at_level(logging.WARNING):
        deliver(raised, AlertSinks(console=False, webhook=WebhookSink(timeout_seconds=2)), url)
    assert raised[0]["delivered"].startswith("webhook:error")
    assert "s3cret" not in caplog.text


def test_apprise_is_optional() -> None:
    alerts = Alerts(rules=[AlertRule(name="feature_psi", metric="drift.psi")])
    raised = run_rules(alerts, drift_history([0.3]), pd.DataFrame(), T0)
    deliver(raised, AlertSinks(console=False, apprise=["json://127.0.0.1:9/"]), None)
    assert raised[0]["delivered"] in {"apprise:not installed", "apprise:ok", "apprise:error"}
