"""The Ibis connection the transforms run on: embedded DuckDB (default) or PySpark.

Stage code is engine-agnostic Ibis; only this module and the lake know which engine runs it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import ibis
from ibis.backends.duckdb import Backend as DuckDBBackend

from goldgate.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Loopback only: a local Spark driver must never bind to (or advertise) an external interface.
LOOPBACK = "127.0.0.1"
LOG4J_FILE = "log4j2.properties"
# The JVM's own log: errors only, on stderr. Spark's default (WARN) prints start-up notes into goldgate's output.
LOG4J_CONFIG = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""
# PySpark logs every failed query with its JVM stack trace before raising it; the raised error is enough.
_PYSPARK_QUERY_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


def connect(settings: Settings) -> Any:
    """The Ibis backend of ``settings.engine``: a DuckDB connection, or a PySpark one on the shared session."""
    if settings.engine == "spark":
        return connect_spark(settings)
    return connect_duckdb(settings)


def connect_duckdb(settings: Settings) -> DuckDBBackend:
    """Open the embedded DuckDB engine (in memory: the lake holds the data, DuckDB only computes)."""
    spill = settings.workspace_dir / ".duckdb_tmp"
    con = ibis.duckdb.connect()
    # Spill to the workspace rather than /tmp so large builds run out of core on the same disk as the lake.
    con.raw_sql(f"SET temp_directory = '{spill}'")
    # A ceiling, so large batches spill to the workspace instead of growing the process without bound.
    con.raw_sql(f"SET memory_limit = '{settings.duckdb_memory_limit}'")
    # Long queries would otherwise draw a progress bar on stdout, mixing with goldgate's own output.
    con.raw_sql("SET enable_progress_bar = false")
    return con


def connect_spark(settings: Settings) -> Any:
    """An Ibis PySpark backend on the process's SparkSession (created on first use, then reused)."""
    from goldgate.sql_dialect import spark_dialect

    spark_dialect()  # string literals Spark reads as written (see there)
    return ibis.pyspark.connect(spark_session(settings))


def spark_conf(settings: Settings) -> dict[str, str]:
    """The Spark configuration of a session goldgate starts itself (a cluster's own session is used as is)."""
    spark_dir = settings.workspace_dir / ".spark"
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "goldgate",
        "spark.driver.memory": settings.spark_driver_memory,
        # The default (200) is sized for clusters; on a few local cores every shuffle would run 200 tiny tasks.
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": (
            f"-Duser.timezone=UTC -Dderby.system.home={spark_dir / 'derby'} "
            f"-Dlog4j2.configurationFile=file:{spark_dir / LOG4J_FILE}"
        ),
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": str(spark_dir / "warehouse"),
        "spark.local.dir": str(spark_dir / "tmp"),
        # Arrow moves data between the JVM and Python (toPandas, createDataFrame, pandas UDFs) in columnar batches.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # INT96, Spark's legacy default, is read by DuckDB and pyarrow only with a flag; microseconds are standard.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }


def spark_session(settings: Settings) -> SparkSession:
    """The active SparkSession (on Databricks: the cluster's), or a new local one configured from ``settings``.

    A session is process-wide: its static settings (master, driver memory, directories) are those of the first
    call; later calls, e.g. with another workspace, reuse it.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Read by the JVM launcher, so they must be set before the session starts; a caller's own values win.
    os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    # Python workers (pandas UDFs, MLflow's spark_udf) must run the interpreter goldgate runs in.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark_dir = settings.workspace_dir / ".spark"
    spark_dir.mkdir(parents=True, exist_ok=True)
    (spark_dir / LOG4J_FILE).write_text(LOG4J_CONFIG)
    builder = SparkSession.builder
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    for name in _PYSPARK_QUERY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    log.info("spark session %s started (%s)", session.version, settings.spark_master)
    return session
