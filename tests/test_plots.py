"""Training plots: predicted vs actual, feature importance, calibration; logged on the training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from goldgate.evaluate import Evaluation, ModelScore
from goldgate.models import Persistence, ProbabilityClassifier
from goldgate.plots import (
    CALIBRATION_FILE,
    IMPORTANCE_FILE,
    PRED_VS_ACTUAL_FILE,
    calibration_table,
    feature_importances,
    figure_png,
    log_training_plots,
    plot_calibration,
    plot_feature_importance,
    plot_predicted_vs_actual,
)
from mlflow_store import mlflow_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows), "noise": rng.normal(size=rows)})
    x["y"] = 3 * x["a"] - x["b"] + rng.normal(scale=0.1, size=rows)
    return x


def _backtest(models: dict[str, np.ndarray], y: np.ndarray) -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame({"model": m, "fold": np.arange(len(y)) % 3, "currency": "USD", "date": 0, "y": y, "pred": p})
            for m, p in models.items()
        ],
        ignore_index=True,
    )


def test_predicted_vs_actual_draws_one_panel_per_model() -> None:
    y = np.linspace(0, 1, 50)
    fig = plot_predicted_vs_actual(_backtest({"persistence": y, "har": y * 0.9, "lightgbm": y + 0.1}, y))
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["persistence (50 rows)", "har (50 rows)", "lightgbm (50 rows)"]
    assert len(panels[1].collections[0].get_offsets()) == 50
    assert figure_png(fig).startswith(PNG_MAGIC)


def test_predicted_vs_actual_samples_large_frames() -> None:
    y = np.arange(10_000, dtype="float64")
    fig = plot_predicted_vs_actual(_backtest({"m": y}, y), max_points=500)
    assert len(fig.axes[0].collections[0].get_offsets()) == 500
    assert fig.axes[0].get_title() == "m (10,000 rows)"


def test_predicted_vs_actual_needs_rows() -> None:
    with pytest.raises(ValueError, match="no backtest predictions"):
        plot_predicted_vs_actual(pd.DataFrame(columns=["model", "y", "pred"]))


def test_importances_of_tree_models_are_shares() -> None:
    x = _frame()
    model = LGBMRegressor(n_estimators=30, verbose=-1).fit(x[["a", "b", "noise"]], x["y"])
    kind, values = feature_importances(model, ["a", "b", "noise"])
    assert kind == "importance share"
    assert sum(values.values()) == pytest.approx(1.0)
    assert values["a"] > values["noise"]


def test_importances_of_linear_models_are_absolute_coefficients() -> None:
    x = _frame()
    model = LinearRegression().fit(x[["a", "b"]], x["y"])
    kind, values = feature_importances(model, ["ignored", "names"])
    # The fitted feature names win over the signature's when the estimator has them.
    assert kind == "|coefficient|"
    assert values["a"] == pytest.approx(3.0, abs=0.05)
    assert values["b"] == pytest.approx(1.0, abs=0.05)


def test_importances_unwrap_goldgate_classifiers_and_pipelines() -> None:
    x = _frame()
    label = (x["y"] > 0).astype(float)
    logistic = ProbabilityClassifier(make_pipeline(StandardScaler(), LogisticRegression())).fit(x[["a", "b"]], label)
    kind, values = feature_importances(logistic, ["a", "b"])
    assert kind == "|coefficient|"
    assert values["a"] > values["b"] > 0
    forest = ProbabilityClassifier(RandomForestClassifier(n_estimators=10, random_state=0)).fit(x[["a", "b"]], label)
    kind, values = feature_importances(forest, ["a", "b"])
    assert kind == "importance share"
    assert sum(values.values()) == pytest.approx(1.0)


def test_models_without_importances_give_none() -> None:
    x = _frame()
    assert feature_importances(Persistence("a").fit(x[["a"]]), ["a"]) is None


def test_importance_names_must_match_the_values(caplog: pytest.LogCaptureFixture) -> None:
    class Bare:
        coef_ = np.array([1.0, 2.0])

    assert feature_importances(Bare(), ["only_one"]) is None
    assert "2 values for 1 feature names" in caplog.text


def test_feature_importance_plot_keeps_the_top_features() -> None:
    values = {f"f{i}": float(i) for i in range(20)}
    fig = plot_feature_importance({"lightgbm": ("importance share", values), "har": ("|coefficient|", {"a": 1.0})}, 5)
    bars = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert bars == ["f15", "f16", "f17", "f18", "f19"]  # largest at the top
    assert fig.axes[1].get_xlabel() == "|coefficient|"
    with pytest.raises(ValueError, match="no model exposes"):
        plot_feature_importance({})


def test_calibration_table_bins_predictions() -> None:
    frame = pd.DataFrame(
        {"model": "m", "y": [0.0, 0.0, 1.0, 1.0, 1.0], "pred": [0.05, 0.15, 0.12, 0.95, 1.0]},
    )
    table = calibration_table(frame, bins=10)
    assert table["bin"].tolist() == [0, 1, 9]
    assert table["rows"].tolist() == [1, 2, 2]
    assert table["observed"].tolist() == [0.0, 0.5, 1.0]
    assert table["predicted"].tolist() == pytest.approx([0.05, 0.135, 0.975])


def test_calibration_plot_draws_each_classifier() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(size=400)
    y = (rng.uniform(size=400) < p).astype(float)
    fig = plot_calibration(_backtest({"prior_rate": np.full(400, y.mean()), "lightgbm": p}, y))
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["perfectly calibrated", "prior_rate", "lightgbm"]


def test_calibration_needs_binary_labels() -> None:
    with pytest.raises(ValueError, match="binary labels"):
        plot_calibration(_backtest({"m": np.array([0.1, 0.2])}, np.array([0.5, 2.0])))


def _logged_model(model: Any, x: pd.DataFrame) -> str:
    import mlflow
    from mlflow.models import infer_signature

    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(x, model.predict(x)), pip_requirements=["scikit-learn"]
        )
    return str(info.model_uri)


def _evaluation(run_id: str, uri: str, task: str) -> Evaluation:
    return Evaluation(
        training_run_id=run_id,
        use_case="t",
        dataset_version={},
        primary_metric="brier" if task == "classification" else "rmse",
        folds=[],
        rows=200,
        scores=[
            ModelScore("linear", "candidate", "", uri),
            ModelScore("champion v1", "champion", "", "models:/absent/1"),  # a fixed artifact: never loaded
        ],
        task=task,
    )


def test_log_training_plots_logs_on_the_training_run(tmp_path: Path) -> None:
    import mlflow

    x = _frame(200)
    label = (x["y"] > 0).astype(float)
    logged: dict[str, list[str]] = {}
    artifacts: dict[str, set[str]] = {}
    with mlflow_store(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        # Artifacts under the test's folder: a SQLite store's default artifact root is ./mlruns in the cwd.
        experiment = mlflow.create_experiment("plots", artifact_location=(tmp_path / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        model = LogisticRegression().fit(x[["a", "b"]], label)
        uri = _logged_model(model, x[["a", "b"]])
        client = mlflow.MlflowClient()
        for task, pred in (("classification", model.predict_proba(x[["a", "b"]])[:, 1]), ("regression", x["y"])):
            with mlflow.start_run() as parent:
                pass
            evaluation = _evaluation(parent.info.run_id, uri, task)
            logged[task] = log_training_plots(client, evaluation, _backtest({"linear": np.asarray(pred)}, label))
            artifacts[task] = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert set(logged["classification"]) == artifacts["classification"]
    assert artifacts["classification"] == {PRED_VS_ACTUAL_FILE, IMPORTANCE_FILE, CALIBRATION_FILE}
    assert set(logged["regression"]) == artifacts["regression"] == {PRED_VS_ACTUAL_FILE, IMPORTANCE_FILE}
