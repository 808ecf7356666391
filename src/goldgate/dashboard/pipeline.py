"""Pipeline page: the last runs with their per-step timings, every lake table, and data quality per rule."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from goldgate.context import Context
from goldgate.dashboard import data


def render(ctx: Context) -> None:
    """Draw the page."""
    st.title("Pipeline")
    show_runs(ctx)
    tables = data.lake_tables(ctx)
    show_tables(tables)
    show_quality(ctx, tables)


def no_runs_hint(ctx: Context) -> str:
    """What to type to fill an empty workspace."""
    return (
        f"No runs yet in {ctx.settings.workspace_dir}: "
        f"`goldgate run --usecase {ctx.usecase.name} --workspace {ctx.settings.workspace_dir}`."
    )


def show_runs(ctx: Context) -> None:
    """The last runs from ``ops.runs`` and the step timings of the chosen one."""
    st.header("Last runs")
    runs = data.recent_runs(ctx)
    if not runs:
        st.info(no_runs_hint(ctx))
        return
    st.table(data.runs_table(runs), hide_index=True)
    labels = {r["run_id"]: f"{r['run_id'][:12]} · {data.fmt_time(r['started_at'])} · {r['status']}" for r in runs}
    chosen = st.selectbox("Step timings of run", list(labels), format_func=labels.__getitem__)
    run = next(r for r in runs if r["run_id"] == chosen)
    if run["status"] != "ok":
        st.error(f"run failed: {run.get('error') or 'no error recorded'}")
    timings = data.step_timings(run)
    if timings.empty:
        st.info("This run finished no step.")
        return
    st.bar_chart(timings, x="step", y="seconds", horizontal=True, sort=False)
    st.table(timings.assign(seconds=timings["seconds"].map("{:.2f}".format)), hide_index=True)


def show_tables(tables: pd.DataFrame) -> None:
    """Every table of the lake with its Delta version and row count."""
    st.header("Lake tables")
    if tables.empty:
        st.info("The lake has no tables yet.")
        return
    st.table(tables.assign(rows=tables["rows"].map("{:,}".format)), hide_index=True)


def show_quality(ctx: Context, tables: pd.DataFrame) -> None:
    """Passed and failed rows per rule, and the quarantine tables."""
    st.header("Data quality")
    quality = data.quality_frame(ctx)
    if quality.empty:
        st.info("No quality records yet: the silver step writes them.")
        return
    st.caption("Failed rows per rule over every batch; trend: failures in the last batches, oldest first.")
    st.table(quality, hide_index=True)
    quarantine = tables[tables["table"].str.startswith("quarantine.")]
    for row in quarantine.itertuples():
        st.write(f"`{row.table}`: {row.rows:,} quarantined rows (version {row.version})")
