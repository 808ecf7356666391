"""Models page: registered versions and aliases, the latest training run's models, gate decisions, training plots."""

from __future__ import annotations

from typing import Any

import streamlit as st

from goldgate.context import Context
from goldgate.dashboard import data
from goldgate.plots import TRAINING_PLOTS


def render(ctx: Context) -> None:
    """Draw the page."""
    st.title("Models")
    show_registry(ctx)
    run = data.latest_training_run(ctx)
    if run is None:
        st.info("No training run yet: the train step of `goldgate run` creates one.")
    else:
        show_training_run(ctx, run)
    show_gate_history(ctx)


def show_registry(ctx: Context) -> None:
    """Registered versions with aliases, gate decision and primary metric."""
    name = ctx.usecase.models.registered_name
    st.header(f"Registered model `{name}`")
    versions = data.registered_versions(ctx)
    if versions.empty:
        st.info(f"No registered version of {name} yet: a candidate is registered when the gate promotes it.")
        return
    st.table(versions, hide_index=True)


def show_training_run(ctx: Context, run: Any) -> None:
    """The latest training run: model comparison, its gate decision with every criterion, and its plots."""
    st.header("Latest training run")
    st.caption(f"run {run.info.run_id} · data versions {run.data.tags.get('dataset_version', '?')}")
    models = data.training_models(ctx, run)
    if models.empty:
        st.info("The training run has no model runs.")
    else:
        st.subheader("Walk-forward backtest, all folds")
        st.table(models, hide_index=True)
    gate = data.load_run_json(run, "gate_decision.json")
    st.subheader("Gate decision")
    if gate is None:
        st.info("The gate has not decided on this training run yet.")
    else:
        candidate = (gate.get("candidate") or {}).get("model", data.NONE)
        verdict = st.success if gate["decision"] == "promote" else st.warning
        verdict(f"{gate['decision']} {candidate}: {gate['reason']}")
        st.table(data.criteria_frame(gate["criteria"]), hide_index=True)
    images = data.training_images(ctx, run)
    if images:
        st.subheader("Training plots")
    for name, png in images.items():
        st.image(png, caption=TRAINING_PLOTS.get(name, name))


def show_gate_history(ctx: Context) -> None:
    """Every gate decision, promotion and rollback from ``ops.promotions``, newest first."""
    st.header("Gate decisions and promotions")
    history = data.gate_history(ctx)
    if not history:
        st.info("No gate decision recorded yet (ops.promotions is empty).")
        return
    for row in history:
        moved = f"v{row['from_version'] or '-'} → v{row['to_version']}" if row["to_version"] else "champion unchanged"
        title = f"{data.fmt_time(row['recorded_at'])} · {row['action']} · {row['decision']} · {moved}"
        with st.expander(title):
            st.write(f"by {row['actor']}: {row['reason']}")
            if row["criteria"]:
                st.table(data.criteria_frame(row["criteria"]), hide_index=True)
