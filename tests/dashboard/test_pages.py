"""Every dashboard page rendered by Streamlit's AppTest, on a workspace after one run and on an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import LoopedWorkspace
from goldgate.dashboard import APP_FILE, data
from goldgate.dashboard.data import USECASE_ENV

TIMEOUT = 60  # seconds per script run: the first one imports MLflow and loads models


def _page_script(key: str) -> None:
    # AppTest runs this function's source as the app script, so it imports what it needs.
    from goldgate.dashboard.app import render_page

    render_page(key)


def _run(key: str) -> AppTest:
    at = AppTest.from_function(_page_script, args=(key,), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def looped_env(monkeypatch: pytest.MonkeyPatch, looped_workspace: LoopedWorkspace) -> LoopedWorkspace:
    monkeypatch.setenv("GOLDGATE_WORKSPACE", str(looped_workspace.workspace))
    monkeypatch.setenv(USECASE_ENV, str(looped_workspace.usecase_path))
    return looped_workspace


@pytest.fixture
def empty_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slice_usecase_path: Path) -> Path:
    monkeypatch.setenv("GOLDGATE_WORKSPACE", str(tmp_path / "empty"))
    monkeypatch.setenv(USECASE_ENV, str(slice_usecase_path))
    return tmp_path / "empty"


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [i.value for i in at.info] + [s.value for s in at.success] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def _main_script() -> None:
    from goldgate.dashboard.app import main

    main()


def test_main_opens_the_pipeline_page_by_default(looped_env: LoopedWorkspace) -> None:
    at = AppTest.from_function(_main_script, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.title[0].value == "Pipeline"
    assert "use case `fx_slice`" in _texts(at)
    assert f"champion fx_slice_vol v{looped_env.summary['champion']['version']}" in _texts(at)


def test_the_app_file_is_the_streamlit_entry_point(empty_env: Path) -> None:
    at = AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.title[0].value == "Pipeline"
    assert "champion fx_slice_vol: none yet" in _texts(at)


def test_pipeline_page(looped_env: LoopedWorkspace) -> None:
    at = _run("pipeline")
    runs, timings, tables, quality = (t.value for t in at.table)
    assert runs["status"].tolist() == ["ok"]
    assert timings["step"].tolist()[0] == "ingest"
    row = tables.set_index("table").loc["gold.fxs_features"]
    expected = looped_env.summary["tables"]["gold.fxs_features"]
    assert (row["version"], row["rows"]) == (expected["version"], f"{expected['rows']:,}")
    assert "rate_positive" in quality["rule"].tolist()
    assert "`quarantine.fxs_rates`: 0 quarantined rows" in _texts(at)


def test_models_page(looped_env: LoopedWorkspace) -> None:
    at = _run("models")
    versions, models, criteria = (t.value for t in at.table[:3])
    summary = looped_env.summary
    assert versions["aliases"].tolist() == ["champion"]
    by_model = models.set_index("model")
    for r in summary["runs"]:
        assert by_model.loc[r["model"], "rmse"] == f"{r['metrics']['rmse']:.5f}"
    assert criteria["criterion"].tolist() == [c["name"] for c in summary["gate"]["criteria"]]
    assert f"{summary['gate']['decision']} {summary['gate']['candidate']}" in _texts(at)
    assert len(at.get("image")) == 3
    assert len(at.expander) == 1  # one row in ops.promotions


def test_predictions_page_filters(looped_env: LoopedWorkspace) -> None:
    at = _run("predictions")
    assert "4 of 4 rows" in _texts(at)
    at.multiselect[0].select("USD").run()
    assert "1 of 4 rows" in _texts(at)
    assert at.dataframe[0].value["currency"].tolist() == ["USD"]
    latest = at.table[0].value
    assert latest["currency"].tolist() == ["USD"]


def test_monitoring_page(looped_env: LoopedWorkspace) -> None:
    at = _run("monitoring")
    assert at.selectbox[0].value == "psi"
    drift, _, alerts = (t.value for t in at.table)
    assert set(drift["statistic"]) == {"psi"}
    assert set(alerts["rule"]) >= {a["rule"] for a in looped_env.summary["alerts"]}
    assert any("Runbook: drift alert" in m.value for m in at.markdown)
    at.selectbox[0].select("ks").run()
    assert set(at.table[0].value["statistic"]) == {"ks"}


def test_predict_page_predicts_with_the_champion(looped_env: LoopedWorkspace) -> None:
    at = _run("predict")
    assert at.selectbox[0].value == "CHF"
    champion = data.load_champion(data.open_context())
    # One input per signature column (laid out in columns, so compared as sets).
    assert sorted(n.label for n in at.number_input) == sorted(champion.metadata.get_input_schema().input_names())
    at.button[0].click().run()
    assert not at.exception
    message = at.success[0].value
    assert message.startswith(f"prediction of fx_slice_vol v{looped_env.summary['champion']['version']}: ")
    assert float(message.rsplit(": ", 1)[1]) > 0  # annualized volatility


@pytest.mark.parametrize("key", ["pipeline", "models", "predictions", "monitoring", "predict"])
def test_pages_on_an_empty_workspace_say_so(empty_env: Path, key: str) -> None:
    at = _run(key)
    assert at.info, f"{key}: no hint shown"
    assert not empty_env.exists()


def test_empty_pipeline_page_says_no_runs_yet(empty_env: Path) -> None:
    at = _run("pipeline")
    assert at.info[0].value.startswith(f"No runs yet in {empty_env.resolve()}")


def test_an_unknown_use_case_is_an_error_on_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USECASE_ENV, "no_such_use_case")
    at = _run("pipeline")
    assert "unknown use case 'no_such_use_case'" in at.error[0].value
