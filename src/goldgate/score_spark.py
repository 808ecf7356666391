"""Batch scoring on the spark engine: the model runs inside Spark as MLflow's ``spark_udf``.

The feature rows never leave Spark; only the narrow prediction rows (entity, date, prediction) come back to the
driver, where they get the same lineage columns as on DuckDB (``goldgate.score.with_lineage``).
"""

from __future__ import annotations

import logging
from datetime import datetime

import ibis.expr.types as ir
import mlflow
import pandas as pd
import pyarrow as pa

from goldgate.lake import Lake
from goldgate.score import with_lineage

log = logging.getLogger(__name__)

PREDICTION = "prediction"


def predict_on_spark(
    lake: Lake,
    rows: ir.Table,
    model_uri: str,
    inputs: list[str],
    entity: str,
    time_col: str,
    lineage: dict[str, object],
    scored_at: datetime,
) -> list[pa.Table]:
    """Prediction rows with lineage for ``rows`` (an Ibis table on the Spark lake), scored by ``model_uri``.

    Returns one Arrow table, or none when ``rows`` is empty (as ``predict_batches`` does on DuckDB).
    """
    from pyspark.sql import functions as sf

    from goldgate.lake_spark import SparkLake

    if not isinstance(lake, SparkLake):
        raise TypeError(f"scoring with spark_udf needs the spark engine's lake, not {type(lake).__name__}")
    signature = mlflow.models.get_model_info(model_uri).signature
    outputs = signature.outputs if signature is not None else None
    if outputs is not None and outputs.has_input_names():
        raise ValueError(
            f"{model_uri} predicts class probabilities (task multiclass); scoring inside Spark reads one number "
            "per row: score it with the duckdb engine"
        )
    frame = lake.to_frame(rows)
    # env_manager="local": Spark's Python workers run goldgate's own interpreter, which has the model's packages.
    udf = mlflow.pyfunc.spark_udf(lake.session, model_uri, result_type="double", env_manager="local")
    # One struct argument: the UDF hands the model a pandas frame with the signature's column names.
    model_input = sf.struct(*(sf.col(f"`{c}`") for c in inputs))
    scored = frame.select(sf.col(f"`{entity}`"), sf.col(f"`{time_col}`"), udf(model_input).alias(PREDICTION))
    out = pd.DataFrame(scored.toPandas())
    log.info("scored %d rows in Spark with spark_udf(%s)", len(out), model_uri)
    if out.empty:
        return []
    return [with_lineage(out, out[PREDICTION], entity, time_col, lineage, scored_at)]
