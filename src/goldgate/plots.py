"""Training plots: predicted vs actual, feature importance and (for classifiers) calibration, logged to MLflow.

Every plot is drawn from what the evaluation already produced: the walk-forward backtest predictions (one row
per model, fold, entity and date with the label ``y`` and the prediction ``pred``) and the models logged by the
training run. The same figures go into the run report (``goldgate.run_report``).
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from goldgate.evaluate import Evaluation

log = logging.getLogger(__name__)

PRED_VS_ACTUAL_FILE = "predicted_vs_actual.png"
IMPORTANCE_FILE = "feature_importance.png"
CALIBRATION_FILE = "calibration.png"
# Every plot a training run carries (the backtest plot is drawn by goldgate.evaluate), in reading order.
TRAINING_PLOTS = {
    "backtest.png": "Primary metric per walk-forward fold",
    PRED_VS_ACTUAL_FILE: "Predicted vs actual over the backtest",
    IMPORTANCE_FILE: "Feature importance of the logged models",
    CALIBRATION_FILE: "Calibration of the predicted probabilities",
}
# Points drawn per model in a scatter: enough to see the shape, few enough for a small PNG.
MAX_POINTS = 4000
TOP_FEATURES = 15


def load_pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # no display: figures are only ever written to files
    import matplotlib.pyplot as plt

    return plt


def _grid(count: int, cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(cols, count))
    return -(-count // cols), cols


def _sample(rows: pd.DataFrame, max_points: int, seed: int) -> pd.DataFrame:
    return rows.sample(max_points, random_state=seed) if len(rows) > max_points else rows


def plot_predicted_vs_actual(predictions: pd.DataFrame, max_points: int = MAX_POINTS, seed: int = 0) -> Figure:
    """One scatter per model of the backtest prediction against the label, with the identity line."""
    plt = load_pyplot()
    if predictions.empty:
        raise ValueError("no backtest predictions to plot")
    models = list(dict.fromkeys(predictions["model"]))
    rows, cols = _grid(len(models))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
    lo = float(np.nanmin([predictions["y"].min(), predictions["pred"].min()]))
    hi = float(np.nanmax([predictions["y"].max(), predictions["pred"].max()]))
    for ax, model in zip(axes.flat, models, strict=False):
        mine = _sample(predictions[predictions["model"] == model], max_points, seed)
        ax.scatter(mine["y"], mine["pred"], s=6, alpha=0.4, color="#2e86c1", linewidths=0)
        ax.plot([lo, hi], [lo, hi], color="#c0392b", linewidth=1, label="prediction = actual")
        ax.set_title(f"{model} ({len(predictions[predictions['model'] == model]):,} rows)", fontsize=9)
        ax.set_xlabel("actual", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(models) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Walk-forward backtest: predicted vs actual (all folds)", fontsize=10)
    fig.tight_layout()
    return fig


def _final_estimator(model: Any) -> Any:
    """The estimator that holds importances: unwraps goldgate's classifier wrapper and sklearn pipelines."""
    inner = getattr(model, "model_", model)
    # Pipelines nest (an imputer in front of a scaling pipeline): the last step of the last step.
    for _ in range(5):
        steps = getattr(inner, "steps", None)
        if not steps:
            break
        inner = steps[-1][1]
    return inner


def feature_importances(model: Any, names: list[str]) -> tuple[str, dict[str, float]] | None:
    """``(kind, {feature: value})`` from ``feature_importances_`` or ``|coef_|``; None when the model has neither.

    Importances are shares of the total; coefficients are absolute values in the units the model saw them
    (standardized inside a scaling pipeline), so they compare within a model, not across models.
    """
    est = _final_estimator(model)
    if getattr(est, "feature_importances_", None) is not None:
        values = np.asarray(est.feature_importances_, dtype="float64")
        total = values.sum()
        kind, values = "importance share", values / total if total > 0 else values
    elif getattr(est, "coef_", None) is not None:
        coef = np.abs(np.asarray(est.coef_, dtype="float64"))
        # A multinomial model has one row of coefficients per class: their mean per feature.
        kind, values = "|coefficient|", coef.mean(axis=0) if coef.ndim == 2 and coef.shape[0] > 1 else coef.ravel()
    else:
        return None
    fitted = getattr(model, "feature_names_in_", None)
    labels = [str(n) for n in fitted] if fitted is not None and len(fitted) == len(values) else names
    if len(labels) != len(values):
        log.warning("feature importance: %d values for %d feature names; skipped", len(values), len(labels))
        return None
    return kind, dict(zip(labels, values.tolist(), strict=True))


def plot_feature_importance(importances: dict[str, tuple[str, dict[str, float]]], top: int = TOP_FEATURES) -> Figure:
    """One horizontal bar chart per model of its ``top`` most important features."""
    plt = load_pyplot()
    if not importances:
        raise ValueError("no model exposes feature importances or coefficients")
    rows, cols = _grid(len(importances), cols=2)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 0.3 * top + 1.4 * rows), squeeze=False)
    for ax, (model, (kind, values)) in zip(axes.flat, importances.items(), strict=False):
        best = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
        ax.barh([k for k, _ in best], [v for _, v in best], color="#2e86c1")
        ax.set_title(model, fontsize=9)
        ax.set_xlabel(kind, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(importances) :]:
        ax.axis("off")
    fig.suptitle("Feature importance of the logged models", fontsize=10)
    fig.tight_layout()
    return fig


def calibration_table(predictions: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Per model and probability bin: rows, mean predicted probability and observed positive rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Models keep the order they appear in (baseline first), bins go low to high.
    order = pd.Categorical(predictions["model"], categories=list(dict.fromkeys(predictions["model"])))
    frame = predictions.assign(model=order, bin=np.clip(np.digitize(predictions["pred"], edges[1:-1]), 0, bins - 1))
    grouped = frame.groupby(["model", "bin"], sort=True, observed=True).agg(
        rows=("y", "size"), predicted=("pred", "mean"), observed=("y", "mean")
    )
    out = grouped.reset_index()
    return out.assign(model=out["model"].astype(str))


def plot_calibration(predictions: pd.DataFrame, bins: int = 10) -> Figure:
    """Reliability diagram of classifiers: observed positive rate against mean predicted probability per bin.

    ``predictions`` holds the backtest rows of a classification use case: ``y`` in {0, 1}, ``pred`` the
    predicted probability of the positive class.
    """
    labels = set(np.unique(predictions["y"].dropna()).tolist())
    if not labels <= {0.0, 1.0}:
        raise ValueError(f"calibration needs binary labels in {{0, 1}}, got {sorted(labels)[:5]}")
    plt = load_pyplot()
    table = calibration_table(predictions, bins)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot([0, 1], [0, 1], color="#9aa7b1", linestyle="--", linewidth=1, label="perfectly calibrated")
    for model, rows in table.groupby("model", sort=False):
        ax.plot(rows["predicted"], rows["observed"], marker="o", markersize=4, label=str(model))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability", fontsize=8)
    ax.set_ylabel("observed positive rate", fontsize=8)
    ax.set_title(f"Calibration over the walk-forward backtest ({bins} bins)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = load_pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def model_importances(scores: list[Any]) -> dict[str, tuple[str, dict[str, float]]]:
    """Importances of every logged model of an evaluation (the champion, a fixed artifact, is left out)."""
    import mlflow

    out: dict[str, tuple[str, dict[str, float]]] = {}
    for s in scores:
        if s.role == "champion" or not s.model_uri:
            continue
        pyfunc = mlflow.pyfunc.load_model(s.model_uri)
        schema = pyfunc.metadata.get_input_schema()
        names = list(schema.input_names()) if schema is not None else []
        found = feature_importances(pyfunc.get_raw_model(), names)
        if found is not None:
            out[s.model] = found
    return out


def log_training_plots(client: Any, evaluation: Evaluation, predictions: pd.DataFrame) -> list[str]:
    """Log predicted-vs-actual, feature importance and, for classifiers, calibration on the training run.

    Returns the artifact names logged.
    """
    plt = load_pyplot()
    figures: dict[str, Figure] = {}
    if not predictions.empty:
        figures[PRED_VS_ACTUAL_FILE] = plot_predicted_vs_actual(predictions)
        if evaluation.task == "classification":
            figures[CALIBRATION_FILE] = plot_calibration(predictions)
    importances = model_importances(evaluation.scores)
    if importances:
        figures[IMPORTANCE_FILE] = plot_feature_importance(importances)
    for name, fig in figures.items():
        client.log_figure(evaluation.training_run_id, fig, name)
        plt.close(fig)
    return list(figures)


def logged_plots(run_id: str) -> dict[str, bytes]:
    """The PNG plots logged on a training run (see ``TRAINING_PLOTS``), in reading order."""
    import tempfile
    from pathlib import Path

    import mlflow

    logged = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id)}
    images: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in TRAINING_PLOTS:
            if name in logged:
                local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, dst_path=tmp)
                images[name] = Path(local).read_bytes()
    return images
