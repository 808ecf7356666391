"""Shared fixtures: a small slice of the fx use case and a workspace that has run the whole loop on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SLICE_CURRENCIES = ["USD", "JPY", "GBP", "CHF"]


def slice_usecase_dict() -> dict[str, Any]:
    """The bundled fx use case cut to 4 currencies and 3 years, with a smaller model, for fast tests."""
    from importlib import resources

    data = yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text())
    data["name"] = "fx_slice"
    data["source"].update(currencies=SLICE_CURRENCIES, start="2021-01-01", end="2023-12-31")
    data["tables"] = {k: v.replace("fx_", "fxs_") for k, v in data["tables"].items()}
    data["models"]["registered_name"] = "fx_slice_vol"
    data["models"]["candidates"][1]["params"].update(n_estimators=40, min_child_samples=20)
    data["evaluation"].update(folds=3, test_days=40)
    data["gate"].update(min_fold_wins=2, bootstrap_resamples=300)
    return data


@pytest.fixture(scope="session")
def slice_usecase_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("usecase") / "fx_slice.yaml"
    path.write_text(yaml.safe_dump(slice_usecase_dict(), sort_keys=False))
    return path
