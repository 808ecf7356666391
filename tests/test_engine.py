"""The engine switch: DuckDB by default, a local Spark session bound to loopback with its files in the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goldgate.context import Context
from goldgate.engine import connect, spark_conf
from goldgate.lake import Lake
from goldgate.lake_spark import SparkDeltaLake, SparkLake
from goldgate.settings import Settings
from goldgate.usecase import load_usecase


def test_duckdb_is_the_default_engine(tmp_path: Path, slice_usecase_path: Path) -> None:
    settings = Settings(workspace=tmp_path)
    assert connect(settings).name == "duckdb"
    lake = Context(settings, load_usecase(slice_usecase_path)).lake
    assert type(lake) is Lake


def test_a_local_session_binds_to_loopback_and_keeps_its_files_in_the_workspace(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, engine="spark", spark_master="local[3]", spark_shuffle_partitions=6)
    conf = spark_conf(settings)
    assert conf["spark.master"] == "local[3]"
    assert conf["spark.sql.shuffle.partitions"] == "6"
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.driver.memory"] == settings.spark_driver_memory
    for key in ("spark.sql.warehouse.dir", "spark.local.dir"):
        assert Path(conf[key]).is_relative_to(tmp_path.resolve()), key


def test_the_spark_engine_runs_ibis_on_the_shared_session(tmp_path: Path, slice_usecase_path: Path, spark: Any) -> None:
    settings = Settings(workspace=tmp_path, engine="spark")
    con = connect(settings)
    assert con.name == "pyspark"
    assert con.sql("SELECT 40 + 2 AS answer").to_pyarrow().to_pylist() == [{"answer": 42}]
    lake = Context(settings, load_usecase(slice_usecase_path)).lake
    assert type(lake) is SparkLake
    assert lake.session is spark  # reused, not a second JVM
    assert lake.root == tmp_path.resolve() / "lake"


def test_the_delta_table_format_addresses_unity_catalog_tables(
    tmp_path: Path, slice_usecase_path: Path, spark: Any
) -> None:
    settings = Settings(
        workspace=tmp_path, engine="spark", spark_table_format="delta", uc_catalog="main", uc_schema="goldgate"
    )
    lake = Context(settings, load_usecase(slice_usecase_path)).lake
    assert type(lake) is SparkDeltaLake
    assert lake.address("bronze.fx_rates_raw") == "main.goldgate_bronze.fx_rates_raw"
    assert lake.address("ops.quality") == "main.goldgate_ops.quality"
