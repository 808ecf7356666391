"""Walk-forward evaluation without MLflow: synthetic frames, plain Python scorers, paired comparisons."""

from __future__ import annotations

import json
import zlib
from datetime import date, timedelta
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from goldgate.backtest import Fold, distinct_days, walk_forward_folds
from goldgate.evaluate import (
    Comparison,
    Evaluation,
    EvaluationError,
    ModelScore,
    artifact_scorer,
    compare,
    fill_scores,
    loss,
    out_of_sample,
    plot_backtest,
    refit_scorer,
    run_backtest,
)
from goldgate.usecase import Gate, UseCase, parse_usecase

TARGET = "target_rv_5d"
ENTITIES = ("AAA", "BBB", "CCC")
GAP = 5


def fx_usecase_dict() -> dict[str, Any]:
    """The bundled fx use case as plain YAML data, to adjust before validating."""
    data: dict[str, Any] = yaml.safe_load((resources.files("goldgate") / "usecases" / "fx.yaml").read_text())
    return data


def usecase(metric: str = "rmse") -> UseCase:
    data = fx_usecase_dict()
    data["evaluation"].update(primary_metric=metric, gap_days=GAP)
    return parse_usecase(data)


POLICY = Gate(bootstrap_resamples=300)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    """Three currencies over 60 dates; target_end is the date 5 rows ahead."""
    rng = np.random.default_rng(0)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(60)]
    parts = []
    for entity in ENTITIES:
        x = rng.normal(0, 1, len(days))
        part = pd.DataFrame({"currency": entity, "date": days, "x": x, TARGET: 3 * x + rng.normal(0, 0.5, len(days))})
        part["target_end"] = part["date"].shift(-GAP)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def folds(panel: pd.DataFrame) -> list[Fold]:
    return walk_forward_folds(distinct_days(panel["date"]), 3, 5, GAP, min_train_days=20)


def zeros(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    return np.zeros(len(test))


def train_mean(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    return np.full(len(test), train[TARGET].mean())


def never(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> None:
    return None


def test_run_backtest_has_one_row_per_model_fold_entity_and_date(panel: pd.DataFrame, folds: list[Fold]) -> None:
    preds = run_backtest(panel, folds, {"zeros": zeros, "mean": train_mean, "never": never}, usecase())
    assert set(preds["model"]) == {"zeros", "mean"}
    assert len(preds) == 2 * 3 * 5 * len(ENTITIES)
    assert not preds.duplicated(["model", "fold", "currency", "date"]).any()
    assert list(preds.columns) == ["model", "fold", "currency", "date", "y", "pred"]
    for fold in folds:
        rows = preds[(preds["model"] == "zeros") & (preds["fold"] == fold.index)]
        assert set(rows["date"]) == {fold.test_start + timedelta(days=i) for i in range(5)}
        assert set(rows["currency"]) == set(ENTITIES)
    assert (preds.loc[preds["model"] == "zeros", "pred"] == 0).all()
    truth = panel.set_index(["currency", "date"])[TARGET]
    looked_up = truth.loc[list(zip(preds["currency"], preds["date"], strict=True))].to_numpy()
    np.testing.assert_array_equal(preds["y"].to_numpy(), looked_up)


def test_run_backtest_hands_scorers_the_purged_training_rows(panel: pd.DataFrame, folds: list[Fold]) -> None:
    seen: dict[int, tuple[date, date]] = {}

    def spy(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        assert (pd.to_datetime(train["target_end"]).dt.date < fold.test_start).all()
        seen[fold.index] = (max(train["date"]), min(test["date"]))
        return np.zeros(len(test))

    run_backtest(panel, folds, {"spy": spy}, usecase())
    assert [seen[f.index] for f in folds] == [(f.train_end, f.test_start) for f in folds]


def test_run_backtest_without_any_scored_fold_is_empty(panel: pd.DataFrame, folds: list[Fold]) -> None:
    assert run_backtest(panel, folds, {"never": never}, usecase()).empty


def test_run_backtest_refuses_a_fold_without_test_rows(panel: pd.DataFrame, folds: list[Fold]) -> None:
    holed = panel[panel["date"] < folds[1].test_start]
    with pytest.raises(EvaluationError, match="fold 1"):
        run_backtest(holed, folds, {"zeros": zeros}, usecase())


def test_out_of_sample_needs_more_than_the_gap_after_the_training_end(folds: list[Fold]) -> None:
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(60)]
    # trained on the same window as fold 1: folds 1 and 2 are unseen, fold 0 overlaps its training data
    check = out_of_sample(days, folds[1].train_end, GAP)
    assert [check(f) for f in folds] == [False, True, True]
    # one date later, fold 1's test window starts only `gap` dates after training: its labels overlap
    check = out_of_sample(days, folds[1].train_end + timedelta(days=1), GAP)
    assert [check(f) for f in folds] == [False, False, True]
    # a training end between dates counts from the last date on or before it
    sparse = [d for d in days if d != folds[1].train_end]
    assert out_of_sample(sparse, folds[1].train_end, GAP)(folds[2])


def test_artifact_scorer_scores_only_folds_beyond_its_training_window(panel: pd.DataFrame, folds: list[Fold]) -> None:
    days = distinct_days(panel["date"])
    calls: list[int] = []

    def predict(x: pd.DataFrame) -> np.ndarray:
        calls.append(len(x))
        return np.asarray(x["x"] * 3)

    scorer = artifact_scorer(predict, ["x"], out_of_sample(days, folds[1].train_end, GAP))
    preds = run_backtest(panel, folds, {"fixed": scorer, "zeros": zeros}, usecase())
    assert sorted(preds.loc[preds["model"] == "fixed", "fold"].unique()) == [1, 2]
    assert sorted(preds.loc[preds["model"] == "zeros", "fold"].unique()) == [0, 1, 2]
    assert calls == [5 * len(ENTITIES)] * 2  # the fixed model never even sees fold 0's rows


def test_refit_scorer_uses_the_logged_model_on_the_last_fold_only(panel: pd.DataFrame, folds: list[Fold]) -> None:
    fitted: list[int] = []

    class Mean:
        def __init__(self, value: float) -> None:
            self.value = value

        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return np.full(len(x), self.value)

    def fit(train: pd.DataFrame) -> Mean:
        fitted.append(len(train))
        return Mean(float(train[TARGET].mean()))

    scorer = refit_scorer(fit, ["x"], final_predict=lambda x: np.full(len(x), -1.0), last_fold=folds[-1].index)
    preds = run_backtest(panel, folds, {"m": scorer}, usecase())
    assert len(fitted) == 2
    assert (preds.loc[preds["fold"] == folds[-1].index, "pred"] == -1.0).all()
    assert (preds.loc[preds["fold"] != folds[-1].index, "pred"] != -1.0).all()


def test_fill_scores_matches_sklearn_pooled_and_per_fold(panel: pd.DataFrame, folds: list[Fold]) -> None:
    preds = run_backtest(panel, folds, {"zeros": zeros, "mean": train_mean}, usecase())
    scores = [ModelScore("zeros", "baseline", "r0", "u0"), ModelScore("mean", "candidate", "r1", "u1")]
    scores.append(ModelScore("absent", "champion", "r2", "u2"))
    fill_scores(scores, preds)
    for s in scores[:2]:
        rows = preds[preds["model"] == s.model]
        y, p = rows["y"], rows["pred"]
        assert s.metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, p)))
        assert s.metrics["mae"] == pytest.approx(mean_absolute_error(y, p))
        assert s.metrics["r2"] == pytest.approx(r2_score(y, p))
        assert [f["fold"] for f in s.fold_metrics] == [0, 1, 2]
        for f in s.fold_metrics:
            g = rows[rows["fold"] == f["fold"]]
            assert f["rows"] == len(g) == 15
            assert f["rmse"] == pytest.approx(np.sqrt(mean_squared_error(g["y"], g["pred"])))
            assert f["mae"] == pytest.approx(mean_absolute_error(g["y"], g["pred"]))
        assert s.error is None
    assert scores[2].metrics == {}
    assert scores[2].fold_metrics == []
    assert "not scored on any fold" in (scores[2].error or "")


def test_fill_scores_keeps_an_earlier_error(panel: pd.DataFrame) -> None:
    s = ModelScore("broken", "champion", "r", "u", error="could not load")
    fill_scores([s], pd.DataFrame())
    assert s.error == "could not load"


def predictions(models: dict[str, tuple[list[int], float, float]], seed: int = 0) -> pd.DataFrame:
    """Backtest rows: for each model the folds it scored, a bias and a noise level around the same truth."""
    rng = np.random.default_rng(seed)
    days = [date(2024, 3, 1) + timedelta(days=i) for i in range(30)]
    truth = {(f, e, d): rng.normal(0, 1) for f in range(3) for e in ENTITIES for d in days[f * 10 : f * 10 + 10]}
    rows = []
    for name, (model_folds, bias, noise) in models.items():
        noise_rng = np.random.default_rng(zlib.crc32(name.encode()))
        for (f, e, d), y in truth.items():
            if f in model_folds:
                rows.append(
                    {
                        "model": name,
                        "fold": f,
                        "currency": e,
                        "date": d,
                        "y": y,
                        "pred": y + bias + noise_rng.normal(0, noise),
                    }
                )
    return pd.DataFrame(rows)


def test_compare_pairs_on_the_shared_rows_only() -> None:
    preds = predictions({"cand": ([0, 1, 2], 0.0, 0.1), "champ": ([1, 2], 0.0, 1.0)})
    c = compare(preds, "cand", "champ", "champion", usecase(), POLICY, seed=0)
    assert c is not None
    assert (c.candidate, c.rival, c.metric) == ("cand", "champion", "rmse")
    assert c.folds == [1, 2]
    assert c.rows == 2 * 10 * len(ENTITIES)
    shared = preds[(preds["model"] == "cand") & preds["fold"].isin([1, 2])]
    rival = preds[preds["model"] == "champ"]
    assert c.candidate_value == pytest.approx(np.sqrt(mean_squared_error(shared["y"], shared["pred"])))
    assert c.rival_value == pytest.approx(np.sqrt(mean_squared_error(rival["y"], rival["pred"])))
    assert c.fold_wins == 2
    assert c.ci_high < 0
    assert c.ci_low <= c.ci_mean <= c.ci_high
    assert c.ci_level == POLICY.confidence


def test_compare_counts_the_folds_the_candidate_wins() -> None:
    preds = predictions({"cand": ([0, 1, 2], 0.0, 0.5), "base": ([0, 1, 2], 0.0, 0.5)})
    # the candidate is worse on fold 1 only
    worse = (preds["model"] == "cand") & (preds["fold"] == 1)
    preds.loc[worse, "pred"] += 2.0
    better = (preds["model"] == "cand") & (preds["fold"] != 1)
    preds.loc[better, "pred"] = preds.loc[better, "y"]
    c = compare(preds, "cand", "base", "baseline", usecase(), POLICY, seed=0)
    assert c is not None
    assert c.fold_wins == 2
    assert c.folds == [0, 1, 2]


def test_compare_of_identical_predictions_is_a_tie_whose_interval_holds_zero() -> None:
    preds = predictions({"cand": ([0, 1, 2], 0.0, 0.5)})
    preds = pd.concat([preds, preds.assign(model="twin")], ignore_index=True)
    c = compare(preds, "cand", "twin", "champion", usecase(), POLICY, seed=0)
    assert c is not None
    assert c.fold_wins == 0  # a tie is not a win
    assert (c.ci_low, c.ci_high, c.ci_mean) == (0.0, 0.0, 0.0)
    assert c.candidate_value == c.rival_value


def test_compare_of_a_noisy_tie_does_not_exclude_zero() -> None:
    preds = predictions({"cand": ([0, 1, 2], 0.0, 0.5), "base": ([0, 1, 2], 0.0, 0.5)})
    c = compare(preds, "cand", "base", "baseline", usecase(), POLICY, seed=0)
    assert c is not None
    assert c.ci_low < 0 < c.ci_high


def test_compare_without_shared_rows_is_none() -> None:
    preds = predictions({"cand": ([0], 0.0, 0.1), "champ": ([1, 2], 0.0, 0.1)})
    assert compare(preds, "cand", "champ", "champion", usecase(), POLICY, seed=0) is None


def test_compare_uses_the_primary_metric() -> None:
    preds = predictions({"cand": ([0, 1, 2], 0.0, 0.1), "base": ([0, 1, 2], 0.3, 0.1)})
    c = compare(preds, "cand", "base", "baseline", usecase("mae"), POLICY, seed=0)
    assert c is not None
    assert c.metric == "mae"
    rows = preds[preds["model"] == "base"]
    assert c.rival_value == pytest.approx(mean_absolute_error(rows["y"], rows["pred"]))


def test_loss_is_squared_error_for_rmse_and_absolute_error_for_mae() -> None:
    y, pred = np.array([1.0, 2.0, 3.0]), np.array([1.5, 0.0, 3.0])
    np.testing.assert_allclose(loss("rmse", y, pred), [0.25, 4.0, 0.0])
    np.testing.assert_allclose(loss("mae", y, pred), [0.5, 2.0, 0.0])
    assert np.sqrt(loss("rmse", y, pred).mean()) == pytest.approx(np.sqrt(mean_squared_error(y, pred)))


def evaluation() -> Evaluation:
    return Evaluation(
        training_run_id="run-1",
        use_case="fx",
        dataset_version={"gold.fx_features": 4},
        primary_metric="rmse",
        folds=[Fold(0, date(2024, 1, 1), date(2024, 2, 1), date(2024, 2, 9), date(2024, 3, 1)).as_dict()],
        rows=30,
        scores=[
            ModelScore(
                "persistence",
                "baseline",
                "r0",
                "runs:/r0/model",
                metrics={"rmse": 0.3, "mae": 0.2},
                fold_metrics=[{"fold": 0, "rows": 15.0, "rmse": 0.3}, {"fold": 1, "rows": 15.0, "rmse": 0.31}],
            ),
            ModelScore(
                "lightgbm",
                "candidate",
                "r1",
                "runs:/r1/model",
                metrics={"rmse": 0.25},
                fold_metrics=[{"fold": 0, "rows": 15.0, "rmse": 0.26}, {"fold": 1, "rows": 15.0, "rmse": 0.24}],
                signature=["rv_5:double"],
                train_end="2024-02-01",
                latency_p95_ms=1.5,
            ),
            ModelScore("fx v1", "champion", "r9", "models:/fx/1", version="1", error="not scored on any fold"),
        ],
        comparisons=[Comparison("lightgbm", "baseline", "rmse", [0, 1], 30, 0.25, 0.3, 2, -0.02, -0.03, -0.01, 0.95)],
    )


def test_evaluation_round_trips_through_dict_and_json() -> None:
    ev = evaluation()
    back = Evaluation.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert back == ev
    assert isinstance(back.scores[1], ModelScore)
    assert isinstance(back.comparisons[0], Comparison)
    assert back.comparison("lightgbm", "baseline") == ev.comparisons[0]
    assert back.comparison("lightgbm", "champion") is None
    assert [s.model for s in back.by_role("champion")] == ["fx v1"]


def test_plot_has_one_line_per_scored_model() -> None:
    import matplotlib.pyplot as plt

    fig = plot_backtest(evaluation())
    try:
        (ax,) = fig.axes
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["persistence (baseline)", "lightgbm (candidate)"]
        np.testing.assert_allclose(lines[1].get_ydata(), [0.26, 0.24])
        np.testing.assert_allclose(lines[1].get_xdata(), [0, 1])
        assert ax.get_ylabel() == "rmse"
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------------------ multiclass
def species_usecase(metric: str = "log_loss") -> UseCase:
    return parse_usecase(
        {
            "name": "species",
            "task": "multiclass",
            "columns": {"species": {"type": "string", "role": "target"}, "x": "float"},
            "target": {"kind": "label", "column": "species"},
            "evaluation": {"folds": 3, "primary_metric": metric},
            "gate": {"bootstrap_resamples": 200},
        }
    )


def species_frame(n: int = 150) -> pd.DataFrame:
    """Records whose class is readable from x most of the time, split into three k-fold folds."""
    from goldgate.backtest import FOLD_COLUMN

    rng = np.random.default_rng(1)
    labels = rng.choice(["a", "b", "c"], n)
    return pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(n)],
            "as_of": date(2024, 1, 1),
            "x": [{"a": 0.0, "b": 1.0, "c": 2.0}[v] for v in labels],
            "target": labels.astype(object),
            FOLD_COLUMN: np.arange(n) % 3,
        }
    )


def class_prior(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    shares = train["target"].value_counts(normalize=True).sort_index()
    return pd.DataFrame(np.tile(shares.to_numpy(), (len(test), 1)), columns=list(shares.index))


def readable(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """0.9 on the class x points to; only classes a and b are known (c gets probability 0 from alignment)."""
    sure_a = (test["x"] == 0.0).to_numpy()
    return pd.DataFrame({"b": np.where(sure_a, 0.1, 0.9), "a": np.where(sure_a, 0.9, 0.1)})


def test_multiclass_backtest_keeps_class_indices_and_probabilities() -> None:
    from goldgate.backtest import kfold_folds

    frame, uc = species_frame(), species_usecase()
    folds = kfold_folds(3, date(2024, 1, 1), date(2024, 1, 1))
    preds = run_backtest(frame, folds, {"prior": class_prior, "readable": readable}, uc)
    assert [c for c in preds.columns if c.startswith("prob:")] == ["prob:a", "prob:b", "prob:c"]
    mine = preds[preds["model"] == "readable"].set_index("row_id").loc[frame["row_id"]]
    assert mine["y"].tolist() == frame["target"].map({"a": 0.0, "b": 1.0, "c": 2.0}).tolist()
    assert set(mine["prob:c"]) == {0.0}
    assert np.allclose(preds[["prob:a", "prob:b", "prob:c"]].sum(axis=1), 1.0)
    scores = [ModelScore("prior", "baseline", "", ""), ModelScore("readable", "candidate", "", "")]
    fill_scores(scores, preds, "multiclass")
    # The prior predicts each fold's most frequent training class for every test row of the fold.
    modes = {k: frame[frame["_fold"] != k]["target"].value_counts().idxmax() for k in range(3)}
    hits = (frame["target"] == frame["_fold"].map(modes)).mean()
    assert scores[0].metrics["accuracy"] == pytest.approx(hits)
    assert set(scores[1].metrics) >= {"log_loss", "brier", "accuracy", "macro_f1", "ece"}
    assert len(scores[1].fold_metrics) == 3


@pytest.mark.parametrize("metric", ["log_loss", "brier"])
def test_multiclass_comparison_pairs_per_row_losses(metric: str) -> None:
    from goldgate.backtest import kfold_folds
    from goldgate.metrics import multiclass_brier_rows, multiclass_log_loss_rows

    frame, uc = species_frame(), species_usecase(metric)
    folds = kfold_folds(3, date(2024, 1, 1), date(2024, 1, 1))
    preds = run_backtest(frame, folds, {"prior": class_prior, "near": near_truth}, uc)
    c = compare(preds, "near", "prior", "baseline", uc, uc.gate, seed=0)
    assert c is not None
    assert (c.metric, c.rows) == (metric, len(frame))
    rows = {m: preds[preds["model"] == m].sort_values("row_id") for m in ("near", "prior")}
    per_row = multiclass_log_loss_rows if metric == "log_loss" else multiclass_brier_rows
    cols = ["prob:a", "prob:b", "prob:c"]
    diff = per_row(rows["near"]["y"], rows["near"][cols].to_numpy()) - per_row(
        rows["prior"]["y"], rows["prior"][cols].to_numpy()
    )
    assert c.ci_mean == pytest.approx(diff.mean())
    assert c.ci_high < 0
    assert c.fold_wins == 3
    # Top-label ECE: always right, always 80% sure.
    assert c.candidate_ece == pytest.approx(0.2)
    assert c.rival_ece is not None
    assert 0 <= c.rival_ece < c.candidate_ece


def near_truth(fold: Fold, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """0.8 on the true class (read from x), 0.1 on each other class."""
    prob = np.full((len(test), 3), 0.1)
    prob[np.arange(len(test)), test["x"].to_numpy().astype(int)] = 0.8
    return pd.DataFrame(prob, columns=["a", "b", "c"])
