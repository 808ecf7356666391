"""Predictions page: the stored predictions filtered by entity and date, with a CSV download."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from goldgate.context import Context
from goldgate.dashboard import data

SHOWN_ROWS = 500


def render(ctx: Context) -> None:
    """Draw the page."""
    uc = ctx.usecase
    st.title("Predictions")
    frame = data.predictions_frame(ctx)
    if frame.empty:
        st.info(f"No predictions yet in `{uc.tables.predictions}`: the score step writes them.")
        return
    time_col = data.prediction_time_column(ctx, frame)
    days = pd.to_datetime(frame[time_col]).dt.date
    first, last = days.min(), days.max()
    kind = {
        "classification": "probability of the positive class",
        "multiclass": "most probable class (p_<class>: each class's probability)",
    }.get(uc.task, "predicted value")
    st.caption(f"`{uc.tables.predictions}`: one {kind} per {uc.entity} and {time_col}, with lineage.")
    left, right = st.columns(2)
    entities = left.multiselect(uc.entity, sorted(frame[uc.entity].astype(str).unique()), placeholder="all")
    picked = right.date_input(f"{time_col} range", value=(last, last), min_value=first, max_value=last)
    start, end = _date_range(picked, last)
    shown = data.filter_predictions(frame.astype({uc.entity: str}), uc.entity, entities, time_col, start, end)
    st.write(f"{len(shown):,} of {len(frame):,} rows, {time_col} {start} … {end}")
    st.dataframe(shown.head(SHOWN_ROWS), hide_index=True)
    st.download_button(
        "Download CSV",
        data.to_csv(shown),
        file_name=f"{uc.name}-predictions-{start}-{end}.csv",
        mime="text/csv",
    )
    st.subheader("Latest prediction per " + uc.entity)
    latest = shown.drop_duplicates(uc.entity).sort_values(uc.entity)
    view = latest.assign(
        prediction=latest["prediction"].map("{:.6g}".format),
        **{time_col: pd.to_datetime(latest[time_col]).dt.date.astype(str)},
    )
    st.table(view[[uc.entity, time_col, "prediction", *_lineage(latest)]], hide_index=True)


def _date_range(picked: Any, default: date) -> tuple[date, date]:
    """A date_input value as (start, end): the widget returns one date while a range is half chosen."""
    if isinstance(picked, tuple):
        if len(picked) == 2:
            return picked[0], picked[1]
        if len(picked) == 1:
            return picked[0], picked[0]
        return default, default
    return picked, picked


def _lineage(frame: pd.DataFrame) -> list[str]:
    return [c for c in ("model_version", "feature_table_version") if c in frame.columns]
