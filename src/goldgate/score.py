"""Batch scoring with the champion; every prediction row carries its lineage."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pyarrow as pa

# Predictions are keyed by the use case's entity column plus these.
PREDICTION_KEYS = ("as_of", "model_version")


def latest_complete_date(frame: pd.DataFrame, inputs: list[str], time_col: str) -> date:
    """The newest date on which some entity has every model input."""
    complete = frame.dropna(subset=inputs)
    if complete.empty:
        raise ValueError(f"no row has all model inputs {inputs}")
    return pd.to_datetime(complete[time_col]).max().date()


def rows_to_score(frame: pd.DataFrame, inputs: list[str], time_col: str, as_of: date) -> pd.DataFrame:
    """Entities observed on ``as_of`` with every model input known."""
    day = pd.to_datetime(frame[time_col]).dt.date
    return frame[day == as_of].dropna(subset=inputs).reset_index(drop=True)


def with_lineage(
    rows: pd.DataFrame,
    predictions: object,
    entity: str,
    time_col: str,
    lineage: dict[str, object],
    scored_at: datetime,
) -> pa.Table:
    """Prediction rows keyed by entity and date, with the model and data they came from."""
    out = pd.DataFrame(
        {
            entity: rows[entity].astype(str),
            "as_of": pd.to_datetime(rows[time_col]).dt.date,
            "prediction": pd.Series(predictions, dtype="float64").to_numpy(),
        }
    )
    for key, value in lineage.items():
        out[key] = value
    out["scored_at"] = pd.Timestamp(scored_at)
    table = pa.Table.from_pandas(out, preserve_index=False)
    return table.set_column(
        table.schema.get_field_index("scored_at"),
        "scored_at",
        table["scored_at"].cast(pa.timestamp("us", tz="UTC")),
    )
