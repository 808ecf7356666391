"""Monitoring page: drift per feature over time, the champion's performance over time, alerts with runbooks."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from goldgate.context import Context
from goldgate.dashboard import data

ALERT_COLUMNS = ["raised (UTC)", "rule", "severity", "subject", "statistic", "value", "threshold", "status", "runbook"]


def render(ctx: Context) -> None:
    """Draw the page."""
    st.title("Monitoring")
    show_drift(ctx)
    show_performance(ctx)
    show_alerts(ctx)


def show_drift(ctx: Context) -> None:
    """One line per feature of the chosen statistic over the monitored windows, and the latest window's table."""
    st.header("Drift")
    drift = data.drift_history(ctx)
    if drift.empty:
        st.info("No drift measured yet: the monitor step writes ops.drift.")
        return
    statistics = sorted(drift["statistic"].unique())
    statistic = st.selectbox("Statistic", statistics, index=statistics.index("psi") if "psi" in statistics else 0)
    series = data.drift_over_time(drift, statistic)
    if len(series) > 1:
        st.line_chart(series, x_label="window end", y_label=statistic)
    else:  # one window so far: a line needs two points, bars show the values
        st.bar_chart(series.T, x_label="feature", y_label=statistic, stack=False)
    latest = data.latest_drift(drift)
    drifted = sorted(latest.loc[latest["drifted"], "feature"].unique())
    st.write(
        f"Latest window ends {latest['window_end'].iloc[0]}: "
        + (f"**{len(drifted)} drifted**: {', '.join(drifted)}" if drifted else "nothing drifted")
    )
    chosen = latest[latest["statistic"] == statistic]
    st.table(
        _format(chosen, ["value", "threshold"]).assign(drifted=chosen["drifted"].map({True: "yes", False: ""})),
        hide_index=True,
    )


def show_performance(ctx: Context) -> None:
    """The champion's error where labels are known, per window."""
    st.header("Performance")
    perf = data.performance_history(ctx)
    if perf.empty:
        st.info("No labelled predictions yet: performance appears once the targets of scored dates are known.")
        return
    series = data.performance_over_time(perf)
    if len(series) > 1:
        st.line_chart(series, x_label="window end")
    cols = ["model_version", "source", "window_start", "window_end", "metric", "value", "rows"]
    st.table(_format(perf.sort_values("window_end", ascending=False)[cols], ["value"]), hide_index=True)


def show_alerts(ctx: Context) -> None:
    """Every alert of the use case, newest first, and the runbooks they link to."""
    st.header("Alerts")
    alerts = data.alerts_frame(ctx)
    if alerts.empty:
        st.info("No alerts.")
        return
    view = _format(alerts, ["value", "threshold"]).assign(**{"raised (UTC)": alerts["raised_at"].map(data.fmt_time)})
    st.table(view[ALERT_COLUMNS], hide_index=True)
    st.subheader("Runbooks")
    for link in sorted(alerts["runbook"].dropna().unique()):
        if link.startswith(("http://", "https://")):
            st.markdown(f"- [{link}]({link})")
            continue
        path = data.runbook_file(link)
        with st.expander(f"runbook: {link}"):
            if path is None:
                st.write(f"`{link}` is not found next to this dashboard; it is in goldgate's repository.")
            else:
                st.markdown(path.read_text(encoding="utf-8"))


def _format(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.assign(**{c: frame[c].map(lambda v: f"{v:.4g}") for c in columns})
