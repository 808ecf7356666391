"""Performance with late labels: stored predictions joined to outcomes per month, backfill on unseen dates."""

from __future__ import annotations

from datetime import date

import ibis
import numpy as np
import pandas as pd
import pytest

from goldgate.performance import (
    backfill_performance,
    expected_accuracy,
    metric_rows,
    performance_table,
    stored_performance,
)


def test_metric_rows() -> None:
    out = metric_rows(np.array([1.0, 2.0, 3.0]), np.array([1.0, 4.0, 2.0]))
    assert out == pytest.approx({"rmse": np.sqrt(5 / 3), "mae": 1.0})


def test_stored_predictions_are_measured_once_their_label_is_known() -> None:
    features = pd.DataFrame(
        {
            "currency": ["USD", "JPY", "USD", "JPY", "USD"],
            "date": pd.to_datetime(["2026-09-30", "2026-09-30", "2026-10-01", "2026-10-01", "2026-10-30"]),
            "target_rv_5d": [0.10, 0.20, 0.30, np.nan, None],  # the October labels are not all known yet
        }
    )
    predictions = pd.DataFrame(
        {
            "currency": ["USD", "JPY", "USD", "JPY", "USD", "USD"],
            "as_of": [
                date(2026, 9, 30),
                date(2026, 9, 30),
                date(2026, 10, 1),
                date(2026, 10, 1),
                date(2026, 10, 30),
                date(2026, 9, 30),
            ],
            "model_version": ["1", "1", "1", "1", "1", "2"],
            "prediction": [0.12, 0.16, 0.33, 0.5, 0.4, 0.10],
        }
    )
    rows = stored_performance(ibis.memtable(predictions), ibis.memtable(features), "currency", "date", "target_rv_5d")
    got = {(r["model_version"], r["window_start"], r["metric"]): (r["value"], r["rows"]) for r in rows}
    assert got[("1", "2026-09-01", "rmse")] == pytest.approx((np.sqrt((0.02**2 + 0.04**2) / 2), 2))
    assert got[("1", "2026-09-01", "mae")] == pytest.approx((0.03, 2))
    assert got[("1", "2026-10-01", "rmse")] == pytest.approx((0.03, 1))  # only USD on 10-01 has its label
    assert got[("2", "2026-09-01", "mae")] == pytest.approx((0.0, 1))
    assert {r["window_end"] for r in rows if r["window_start"] == "2026-09-01"} == {"2026-09-30"}
    assert {r["source"] for r in rows} == {"predictions"}


def test_backfill_uses_labelled_rows_the_model_never_fit() -> None:
    scored = pd.DataFrame(
        {
            "date": pd.to_datetime(["2026-09-01", "2026-09-02", "2026-09-03", "2026-09-04"]),
            "target_rv_5d": [0.1, 0.2, 0.3, np.nan],
            "prediction": [0.9, 0.25, 0.2, 0.5],
        }
    )
    rows = backfill_performance(scored, "date", "target_rv_5d", since=date(2026, 9, 2))
    by = {r["metric"]: r for r in rows}
    assert by["mae"]["value"] == pytest.approx(0.075)
    assert (by["mae"]["rows"], by["mae"]["window_start"], by["mae"]["window_end"]) == (2, "2026-09-02", "2026-09-03")
    assert backfill_performance(scored, "date", "target_rv_5d", since=date(2026, 9, 4)) == []
    table = performance_table(rows, "m", "7")
    assert table.column("model_version").to_pylist() == ["7", "7"]
    assert table.column("estimated").to_pylist() == [False, False]


def test_expected_accuracy_of_a_calibrated_classifier() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    y = rng.uniform(0, 1, p.size) < p  # labels drawn from the probabilities: calibrated by construction
    actual = np.mean((p > 0.5) == y)
    assert expected_accuracy(p) == pytest.approx(actual, abs=0.005)


def species_features() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_id": ["r1", "r2", "r3", "r4"],
            "as_of": pd.to_datetime(["2026-09-30"] * 4),
            "target": ["Adelie", "Gentoo", "Chinstrap", None],  # r4's species is not known
        }
    )


def test_stored_multiclass_predictions_are_measured_from_their_class_probabilities() -> None:
    predictions = pd.DataFrame(
        {
            "row_id": ["r1", "r2", "r3", "r4"],
            "as_of": [date(2026, 9, 30)] * 4,
            "model_version": ["1"] * 4,
            "prediction": ["Adelie", "Adelie", "Gentoo", "Gentoo"],
            "p_adelie": [0.8, 0.6, 0.1, 0.1],
            "p_gentoo": [0.2, 0.4, 0.9, 0.9],  # the model never saw Chinstrap: p = 0 for r3
        }
    )
    rows = stored_performance(
        ibis.memtable(predictions), ibis.memtable(species_features()), "row_id", "as_of", "target", "multiclass"
    )
    got = {r["metric"]: (r["value"], r["rows"]) for r in rows}
    assert set(got) == {"log_loss", "brier", "accuracy"}
    assert got["accuracy"] == pytest.approx((1 / 3, 3))
    log_loss = (-np.log(0.8) - np.log(0.4) - np.log(1e-15)) / 3
    assert got["log_loss"] == pytest.approx((log_loss, 3))
    brier = ((0.2**2 + 0.2**2) + (0.6**2 + 0.6**2) + (0.1**2 + 0.9**2 + 1.0)) / 3
    assert got["brier"] == pytest.approx((brier, 3))


def test_backfill_of_a_multiclass_model_and_its_expected_accuracy() -> None:
    scored = species_features().assign(
        prediction=["Adelie", "Gentoo", "Chinstrap", "Adelie"],
        **{
            "prob:Adelie": [0.8, 0.1, 0.1, 0.6],
            "prob:Chinstrap": [0.1, 0.1, 0.8, 0.2],
            "prob:Gentoo": [0.1, 0.8, 0.1, 0.2],
        },
    )
    rows = backfill_performance(scored, "as_of", "target", since=None, task="multiclass")
    got = {r["metric"]: r["value"] for r in rows}
    assert set(got) == {"log_loss", "brier", "accuracy", "macro_f1", "ece"}
    assert got["accuracy"] == 1.0
    assert got["log_loss"] == pytest.approx(-np.log(0.8))
    assert {r["rows"] for r in rows} == {3}
    assert expected_accuracy(np.array([[0.8, 0.1, 0.1], [0.3, 0.3, 0.4]])) == pytest.approx(0.6)
