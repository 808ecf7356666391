"""The registry on a real MLflow store and a real lake: champion aliases, rollback, and the promotion log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from goldgate.gate import Criterion, GateDecision
from goldgate.lake import Lake
from goldgate.registry import (
    CHALLENGER,
    CHAMPION,
    PROMOTIONS,
    PROMOTIONS_SCHEMA,
    alias_version,
    champion_score,
    list_versions,
    promotions,
    register_decision,
    rollback,
    version_score,
)
from mlflow_store import mlflow_store

ACTOR = "tester"
USE_CASE = "fx_test"


def _log_trained_model(experiment: str, train_end: str, slope: float) -> dict[str, str]:
    """A parent training run (param train_end) with one child run holding a tiny sklearn model, as train.py does."""
    import mlflow
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame({"rv_5": np.linspace(0.0, 1.0, 20)})
    model = LinearRegression().fit(x, slope * x["rv_5"] + 0.1)
    with mlflow.start_run(experiment_id=experiment, run_name="training") as parent:
        mlflow.log_params({"train_end": train_end, "gap_days": 5})
        with mlflow.start_run(experiment_id=experiment, run_name="candidate", nested=True) as child:
            info = mlflow.sklearn.log_model(
                model, name="model", input_example=x.head(3), pip_requirements=["scikit-learn"]
            )
            mlflow.log_metrics({"backtest_rmse": 0.1 * slope, "holdout_rmse": 0.2 * slope, "train_rmse": 0.01})
    return {"parent": parent.info.run_id, "run_id": child.info.run_id, "model_uri": info.model_uri}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    """One tracking store with two trained models; each test registers them under its own model name."""
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    with mlflow_store(f"sqlite:///{root / 'mlflow.db'}"):
        experiment = mlflow.create_experiment("goldgate", artifact_location=(root / "artifacts").as_uri())
        yield {
            "a": _log_trained_model(experiment, "2024-03-01", 1.0),
            "b": _log_trained_model(experiment, "2024-06-01", 2.0),
        }


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake", ibis.duckdb.connect())


@pytest.fixture
def name(request: pytest.FixtureRequest, store: dict[str, dict[str, str]]) -> str:
    """A registered-model name of this test's own (the store is shared by the module)."""
    return "m_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:60]


CRITERIA = [
    Criterion("beats_baseline", True, 0.25, 0.297, "rmse 0.25 vs baseline 0.3"),
    Criterion("ci_vs_baseline", True, -0.01, 0.0, "95% CI below 0"),
    Criterion("fold_wins_vs_baseline", True, 3.0, 3.0, "3 of 4 folds"),
    Criterion("beats_champion", True, None, None, "no champion yet: first promotion"),
]


def decision(model: dict[str, str], verdict: str = "promote") -> GateDecision:
    criteria = CRITERIA if verdict == "promote" else [*CRITERIA[:3], Criterion("test_rows", False, 3.0, 20.0, "few")]
    return GateDecision(
        decision=verdict,
        reason="all criteria passed" if verdict == "promote" else "failed: test_rows",
        primary_metric="rmse",
        candidate={"model": "lin", "run_id": model["run_id"], "model_uri": model["model_uri"], "metrics": {}},
        criteria=criteria,
        training_run_id=model["parent"],
        dataset_version={"gold.fx_features": 3},
    )


def champion(name: str) -> str | None:
    mv = alias_version(name, CHAMPION)
    return str(mv.version) if mv is not None else None


def versions(name: str) -> list[str]:
    return [v["version"] for v in list_versions(name)]


def test_a_promote_decision_registers_the_candidate_as_champion(
    store: dict[str, dict[str, str]], lake: Lake, name: str
) -> None:
    import mlflow

    assert champion_score(name) is None
    promoted = decision(store["a"])
    assert register_decision(promoted, name, USE_CASE, ACTOR, lake) == "1"
    assert champion(name) == "1"
    assert alias_version(name, CHALLENGER) is None  # challenger is only a way station
    mv = mlflow.MlflowClient().get_model_version(name, "1")
    assert mv.run_id == store["a"]["run_id"]
    assert mv.tags["gate.decision"] == "promote"
    assert json.loads(mv.tags["gate.record"])["training_run_id"] == store["a"]["parent"]
    (row,) = promotions(lake)
    assert row["recorded_at"].tzinfo is not None
    assert row["recorded_at"].utcoffset() == UTC.utcoffset(None)
    assert {k: row[k] for k in ("actor", "use_case", "model_name", "action", "decision")} == {
        "actor": ACTOR,
        "use_case": USE_CASE,
        "model_name": name,
        "action": "gate",
        "decision": "promote",
    }
    assert (row["from_version"], row["to_version"], row["run_id"]) == (None, "1", store["a"]["run_id"])
    assert row["reason"] == "all criteria passed"
    assert json.loads(row["criteria"]) == [
        {"name": c.name, "passed": c.passed, "value": c.value, "threshold": c.threshold} for c in CRITERIA
    ]
    assert GateDecision.from_dict(json.loads(row["gate_record"])) == promoted  # the full record, details too


def test_a_second_promotion_moves_the_champion_and_records_where_from(
    store: dict[str, dict[str, str]], lake: Lake, name: str
) -> None:
    register_decision(decision(store["a"]), name, USE_CASE, ACTOR, lake)
    assert register_decision(decision(store["b"]), name, USE_CASE, ACTOR, lake) == "2"
    assert champion(name) == "2"
    last = promotions(lake)[-1]
    assert (last["from_version"], last["to_version"], last["run_id"]) == ("1", "2", store["b"]["run_id"])


def test_the_registered_version_knows_its_training_window(
    store: dict[str, dict[str, str]], lake: Lake, name: str
) -> None:
    register_decision(decision(store["a"]), name, USE_CASE, ACTOR, lake)
    score = champion_score(name)
    assert score is not None
    assert (score.model, score.role, score.version) == (f"{name} v1", "champion", "1")
    assert score.train_end == "2024-03-01"  # the param of the parent training run
    assert score.model_uri == f"models:/{name}/1"
    assert version_score(name, "1", "candidate").run_id == store["a"]["run_id"]


def test_a_reject_decision_leaves_the_registry_untouched_but_is_logged(
    store: dict[str, dict[str, str]], lake: Lake, name: str
) -> None:
    # before any champion: not even a registered model appears
    assert register_decision(decision(store["a"], "reject"), name, USE_CASE, ACTOR, lake) is None
    assert list_versions(name) == []
    register_decision(decision(store["a"]), name, USE_CASE, ACTOR, lake)
    assert register_decision(decision(store["b"], "reject"), name, USE_CASE, ACTOR, lake) is None
    assert versions(name) == ["1"]
    assert champion(name) == "1"
    rows = promotions(lake)
    assert [r["decision"] for r in rows] == ["reject", "promote", "reject"]
    assert [(r["from_version"], r["to_version"]) for r in rows] == [(None, None), (None, "1"), ("1", None)]
    assert rows[-1]["run_id"] == store["b"]["run_id"]
    assert rows[-1]["reason"] == "failed: test_rows"
    assert json.loads(rows[-1]["criteria"])[-1] == {
        "name": "test_rows",
        "passed": False,
        "value": 3.0,
        "threshold": 20.0,
    }


def test_rollback_restores_the_previous_champion_and_is_logged(
    store: dict[str, dict[str, str]], lake: Lake, name: str
) -> None:
    register_decision(decision(store["a"]), name, USE_CASE, ACTOR, lake)
    register_decision(decision(store["b"]), name, USE_CASE, ACTOR, lake)
    assert rollback(lake, name, USE_CASE, "oncall", "v2 misbehaves") == ("2", "1")
    assert champion(name) == "1"
    assert alias_version(name, CHALLENGER) is None
    row = promotions(lake)[-1]
    assert {k: row[k] for k in ("actor", "action", "decision", "from_version", "to_version", "reason")} == {
        "actor": "oncall",
        "action": "rollback",
        "decision": "rollback",
        "from_version": "2",
        "to_version": "1",
        "reason": "v2 misbehaves",
    }
    assert row["criteria"] == "[]"
    assert row["gate_record"] is None
    assert row["run_id"] is None


def test_repeated_rollbacks_walk_back_and_never_reinstate_the_rolled_back_version(
    store: dict[str, dict[str, str]], lake: Lake, name: str
) -> None:
    for model in ("a", "b", "a"):
        register_decision(decision(store[model]), name, USE_CASE, ACTOR, lake)
    assert champion(name) == "3"
    assert rollback(lake, name, USE_CASE, ACTOR, "first") == ("3", "2")
    assert rollback(lake, name, USE_CASE, ACTOR, "second") == ("2", "1")
    with pytest.raises(LookupError, match="no previous champion"):
        rollback(lake, name, USE_CASE, ACTOR, "third")
    assert champion(name) == "1"


def test_rollback_without_a_previous_champion_raises_and_logs_nothing(
    store: dict[str, dict[str, str]], lake: Lake, name: str
) -> None:
    with pytest.raises(LookupError, match="no champion to roll back"):
        rollback(lake, name, USE_CASE, ACTOR, "nothing there")
    register_decision(decision(store["a"]), name, USE_CASE, ACTOR, lake)
    with pytest.raises(LookupError, match=rf"{name} v1 has no previous champion in {PROMOTIONS}"):
        rollback(lake, name, USE_CASE, ACTOR, "first ever")
    assert champion(name) == "1"
    assert [r["action"] for r in promotions(lake)] == ["gate"]


def test_list_versions_shows_aliases_decisions_and_backtest_metrics(
    store: dict[str, dict[str, str]], lake: Lake, name: str
) -> None:
    register_decision(decision(store["a"]), name, USE_CASE, ACTOR, lake)
    register_decision(decision(store["b"]), name, USE_CASE, ACTOR, lake)
    listed = list_versions(name)
    assert [v["version"] for v in listed] == ["2", "1"]  # newest first
    assert [v["aliases"] for v in listed] == [[CHAMPION], []]
    assert [v["decision"] for v in listed] == ["promote", "promote"]
    assert [v["run_id"] for v in listed] == [store["b"]["run_id"], store["a"]["run_id"]]
    assert listed[0]["metrics"] == {"backtest_rmse": pytest.approx(0.2), "holdout_rmse": pytest.approx(0.4)}
    rollback(lake, name, USE_CASE, ACTOR, "back")
    assert [v["aliases"] for v in list_versions(name)] == [[], [CHAMPION]]


def _log_rows(lake: Lake) -> list[dict[str, Any]]:
    """The promotion log straight from Delta, in commit order, every value as text."""
    table = DeltaTable(str(lake.path(PROMOTIONS))).to_pyarrow_table()
    rows = sorted(table.to_pylist(), key=lambda r: r["recorded_at"])
    return [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in rows]


def test_the_promotion_log_is_append_only(store: dict[str, dict[str, str]], lake: Lake, name: str) -> None:
    steps = [
        lambda: register_decision(decision(store["a"]), name, USE_CASE, ACTOR, lake),
        lambda: register_decision(decision(store["b"], "reject"), name, USE_CASE, ACTOR, lake),
        lambda: register_decision(decision(store["b"]), name, USE_CASE, ACTOR, lake),
        lambda: rollback(lake, name, USE_CASE, ACTOR, "undo"),
        lambda: register_decision(decision(store["a"], "reject"), name, USE_CASE, ACTOR, lake),
    ]
    seen: list[dict[str, Any]] = []
    for i, step in enumerate(steps, start=1):
        step()
        rows = _log_rows(lake)
        assert len(rows) == i
        assert rows[: len(seen)] == seen  # every earlier row unchanged, value for value
        seen = rows
    fields = DeltaTable(str(lake.path(PROMOTIONS))).schema().fields
    assert [f.name for f in fields] == PROMOTIONS_SCHEMA.names
    history = lake.history(PROMOTIONS)
    assert len(history) == len(steps)
    for entry in history:
        assert entry["operation"] == "WRITE"
        assert entry["operationParameters"]["mode"] == "Append"
        assert entry["operationMetrics"]["num_removed_files"] == 0
        assert entry["operationMetrics"]["num_added_rows"] == 1
    assert [r["action"] for r in seen] == ["gate", "gate", "gate", "rollback", "gate"]
