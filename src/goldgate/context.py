"""What every step receives: settings, the use case, the lake and the MLflow experiment, opened lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from goldgate.settings import Settings
from goldgate.usecase import UseCase

if TYPE_CHECKING:
    from goldgate.lake import Lake


@dataclass
class Context:
    settings: Settings
    usecase: UseCase
    source: str | None = None
    dry_run: bool = False
    results: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Every step, the API and the dashboard read the registered name from the use case: on a Unity Catalog
        # registry it becomes <catalog>.<schema>_models.<name> here, once.
        from goldgate.catalog_names import registered_model_name

        name = registered_model_name(self.usecase.models.registered_name, self.settings)
        if name != self.usecase.models.registered_name:
            models = self.usecase.models.model_copy(update={"registered_name": name})
            self.usecase = self.usecase.model_copy(update={"models": models})

    @cached_property
    def lake(self) -> Lake:
        from goldgate.engine import connect
        from goldgate.lake import Lake

        self.settings.workspace_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.engine == "spark":
            from goldgate.lake_spark import open_spark_lake

            return open_spark_lake(self.settings)
        return Lake(self.settings.lake_dir, connect(self.settings))

    @cached_property
    def experiment_id(self) -> str:
        from goldgate.tracking import configure_mlflow

        return configure_mlflow(self.settings)

    def mlflow_client(self) -> Any:
        """An MLflow client on this workspace's store (configuring MLflow first, so no step uses a stray store)."""
        import mlflow

        experiment = self.experiment_id
        assert experiment
        return mlflow.MlflowClient()

    def latest_training_run(self) -> Any:
        """The newest training run of this use case (raises when none exists)."""
        runs = self.mlflow_client().search_runs(
            [self.experiment_id],
            filter_string=f"tags.`goldgate.kind` = 'training' AND tags.use_case = '{self.usecase.name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            raise LookupError(f"no training run for use case '{self.usecase.name}' yet: run the train step first")
        return runs[0]
