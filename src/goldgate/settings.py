"""Typed settings: defaults, overridden by ``GOLDGATE_*`` environment variables, overridden by CLI flags."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_owner() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


class Settings(BaseSettings):
    """Everything goldgate needs to know about where it runs."""

    model_config = SettingsConfigDict(
        env_prefix="GOLDGATE_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    env: Literal["dev", "staging", "prod"] = "dev"
    workspace: Path = Path("workspace")
    engine: Literal["duckdb", "spark"] = "duckdb"
    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default is a SQLite store under the workspace."
    )
    registry_uri: str | None = Field(
        default=None,
        description="MLflow registry URI; default: the tracking URI. 'databricks-uc' registers models in Unity "
        "Catalog as <uc_catalog>.<uc_schema>_models.<model>.",
    )
    uc_catalog: str = Field(
        default="main", pattern=r"^[a-z_][a-z0-9_]*$", description="Unity Catalog catalog of the tables and models."
    )
    uc_schema: str = Field(
        default="goldgate",
        pattern=r"^[a-z_][a-z0-9_]*$",
        description="Unity Catalog schema prefix: layer L lives in <uc_schema>_<L>, models in <uc_schema>_models.",
    )
    owner: str = Field(default_factory=_default_owner)
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="API keys of the prediction service (JSON list in GOLDGATE_API_KEYS)."
    )
    log_level: str = "INFO"
    duckdb_memory_limit: str = Field(default="4GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="Alert webhook (JSON POST) when the use case names none; never logged."
    )
    serve_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often the prediction service checks whether the alias moved."
    )
    serve_max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest accepted request body.")
    serve_max_rows: int = Field(default=1000, ge=1, description="Most rows accepted in one predict request.")
    spark_master: str = Field(default="local[2]", description="Spark master URL of the spark engine.")
    spark_driver_memory: str = Field(
        default="2g", pattern=r"^\d+[kmgtKMGT]?$", description="Spark driver heap (e.g. 2g)."
    )
    spark_shuffle_partitions: int = Field(
        default=4, ge=1, description="spark.sql.shuffle.partitions: few, since a local run has few cores."
    )
    spark_table_format: Literal["parquet", "delta"] = Field(
        default="parquet",
        description="Lake format of the spark engine: versioned Parquet snapshots, or Spark's own Delta (Databricks).",
    )

    @property
    def workspace_dir(self) -> Path:
        """Absolute workspace folder (created on first use by the steps, not here)."""
        return self.workspace.expanduser().resolve()

    @property
    def lake_dir(self) -> Path:
        return self.workspace_dir / "lake"

    @property
    def artifacts_dir(self) -> Path:
        return self.workspace_dir / "mlartifacts"

    @property
    def reports_dir(self) -> Path:
        return self.workspace_dir / "reports"

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.workspace_dir / 'mlflow.db'}"

    @property
    def resolved_registry_uri(self) -> str:
        """Where models are registered: the registry URI if set, else the tracking store."""
        return self.registry_uri or self.resolved_tracking_uri

    def with_overrides(self, **overrides: object) -> Settings:
        """A copy with the non-None overrides applied (CLI flags win over env and defaults)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        return type(self).model_validate({**self.model_dump(), **values}) if values else self


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, then apply explicit overrides."""
    return Settings().with_overrides(**overrides)
