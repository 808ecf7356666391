"""Predict page: a form built from the champion's MLflow signature; the champion predicts through MLflow."""

from __future__ import annotations

from typing import Any

import streamlit as st

from goldgate.context import Context
from goldgate.dashboard import data

COLUMNS = 3


@st.cache_resource(show_spinner=False, max_entries=4)
def _champion_model(_ctx: Context, tracking_uri: str, name: str, version: str) -> Any:
    # Cached per registered version: the alias moving to a new version loads the new model on the next run.
    return data.load_champion(_ctx)


def render(ctx: Context) -> None:
    """Draw the page."""
    uc = ctx.usecase
    name = uc.models.registered_name
    st.title("Predict")
    version = data.champion_version(ctx)
    if version is None:
        st.info(f"No champion yet: `{name}@champion` appears when the gate promotes a candidate.")
        return
    model = _champion_model(ctx, ctx.settings.resolved_tracking_uri, name, str(version.version))
    fields = data.signature_fields(model)
    if not fields:
        st.warning(f"{name} v{version.version} has no input signature to build a form from.")
        return
    st.caption(f"`models:/{name}@champion` is version {version.version}; inputs from its MLflow signature.")
    entities = data.entity_choices(ctx, fields)
    entity = st.selectbox(f"Prefill with the latest features of {uc.entity}", entities) if entities else None
    defaults = data.default_inputs(ctx, fields, entity)
    values = _input_form(fields, defaults, key=f"predict-{entity}")
    if values is None:
        return
    try:
        value = data.predict_one(model, fields, values)
    except Exception as exc:  # the model's own error is what the user needs to see
        st.error(f"prediction failed: {exc}")
        return
    label = {"classification": "probability", "multiclass": "class"}.get(uc.task, "prediction")
    shown = f"{value:.6g}" if isinstance(value, float) else value
    st.success(f"{label} of {name} v{version.version}: {shown}")


def _input_form(fields: list[data.InputField], defaults: dict[str, Any], key: str) -> dict[str, Any] | None:
    """One widget per signature input; the submitted values, or None before the form is submitted."""
    values: dict[str, Any] = {}
    with st.form(key):
        columns = st.columns(COLUMNS)
        for i, field in enumerate(fields):
            col, default, wkey = columns[i % COLUMNS], defaults.get(field.name), f"{key}-{field.name}"
            if field.integral:
                values[field.name] = col.number_input(field.name, value=int(default or 0), step=1, key=wkey)
            elif field.numeric:
                values[field.name] = col.number_input(
                    field.name, value=float(default or 0.0), format="%.6g", step=None, key=wkey
                )
            elif field.type == "boolean":
                values[field.name] = col.checkbox(field.name, value=bool(default), key=wkey)
            else:
                values[field.name] = col.text_input(field.name, value="" if default is None else str(default), key=wkey)
        submitted = st.form_submit_button("Predict")
    return values if submitted else None
