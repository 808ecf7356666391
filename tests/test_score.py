"""Batch scoring: the date to score, the rows to score, prediction rows with lineage, and the score step."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from goldgate.score import (
    complete_rows,
    latest_complete_date,
    latest_complete_day,
    predict_batches,
    rows_to_score,
    with_lineage,
)

INPUTS = ["rv_5", "rv_20"]
D1, D2, D3 = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)


def frame() -> pd.DataFrame:
    """D3 is the newest date but no currency has rv_20 there yet; on D2 only JPY and GBP are complete."""
    return pd.DataFrame(
        {
            "currency": ["USD", "JPY", "GBP"] * 3,
            "date": [D1] * 3 + [D2] * 3 + [D3] * 3,
            "rv_5": [0.1, 0.2, 0.3, np.nan, 0.2, 0.3, 0.1, 0.2, 0.3],
            "rv_20": [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, np.nan, np.nan, np.nan],
            "target": [np.nan] * 9,
        }
    )


def test_latest_complete_date_skips_dates_without_all_inputs() -> None:
    assert latest_complete_date(frame(), INPUTS, "date") == D2
    assert latest_complete_date(frame(), ["rv_5"], "date") == D3


def test_latest_complete_date_accepts_timestamps() -> None:
    f = frame().assign(date=lambda x: pd.to_datetime(x.date))
    assert latest_complete_date(f, INPUTS, "date") == D2


def test_latest_complete_date_raises_when_nothing_is_complete() -> None:
    with pytest.raises(ValueError, match="no row has all model inputs"):
        latest_complete_date(frame(), [*INPUTS, "target"], "date")


def test_rows_to_score_are_the_complete_rows_of_that_date() -> None:
    rows = rows_to_score(frame(), INPUTS, "date", D2)
    assert list(rows.currency) == ["JPY", "GBP"]
    assert list(rows.index) == [0, 1]
    assert rows[INPUTS].notna().all().all()
    assert rows_to_score(frame(), INPUTS, "date", date(2030, 1, 1)).empty


SCORED_AT = datetime(2024, 3, 7, 18, 30, tzinfo=UTC)
LINEAGE = {
    "model_name": "fx_realized_vol",
    "model_version": "3",
    "run_id": "abc",
    "feature_table": "gold.fx_features",
    "feature_table_version": 12,
}


def test_with_lineage_columns_types_and_values() -> None:
    rows = rows_to_score(frame(), INPUTS, "date", D2)
    table = with_lineage(rows, np.array([0.25, 0.35]), "currency", "date", LINEAGE, SCORED_AT)
    assert table.column_names == ["currency", "as_of", "prediction", *LINEAGE, "scored_at"]
    schema = table.schema
    assert pa.types.is_string(schema.field("currency").type) or pa.types.is_large_string(schema.field("currency").type)
    assert schema.field("as_of").type == pa.date32()
    assert schema.field("prediction").type == pa.float64()
    assert schema.field("feature_table_version").type == pa.int64()
    assert schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("currency").to_pylist() == ["JPY", "GBP"]
    assert table.column("as_of").to_pylist() == [D2, D2]
    assert table.column("prediction").to_pylist() == [0.25, 0.35]
    for key, value in LINEAGE.items():
        assert table.column(key).to_pylist() == [value, value], key
    assert table.column("scored_at").to_pylist() == [SCORED_AT, SCORED_AT]


def test_scored_at_keeps_the_instant_of_an_aware_time() -> None:
    rows = rows_to_score(frame(), INPUTS, "date", D1)
    local = SCORED_AT.astimezone(timezone(timedelta(hours=2)))
    table = with_lineage(rows, [1, 2, 3], "currency", "date", LINEAGE, local)
    assert table.schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("scored_at").to_pylist()) == {SCORED_AT}
    assert table.column("prediction").to_pylist() == [1.0, 2.0, 3.0]


def test_with_lineage_from_timestamps_and_an_unsorted_index() -> None:
    rows = frame().iloc[[5, 4]].assign(date=lambda x: pd.to_datetime(x.date))  # index [5, 4]
    table = with_lineage(rows, pd.Series([0.5, 0.4]), "currency", "date", {}, SCORED_AT)
    assert table.column("currency").to_pylist() == ["GBP", "JPY"]
    assert table.column("as_of").to_pylist() == [D2, D2]
    assert table.column("prediction").to_pylist() == [0.5, 0.4]


# ----------------------------------------------------------------------------- engine-side (Ibis) helpers


def ibis_frame() -> Any:
    """The same frame as an Ibis table; rv_5's gap is a NULL, rv_20's gaps on D3 are NaN (not NULL)."""
    f = frame()
    table = pa.Table.from_pandas(f, preserve_index=False)
    rv_20 = pa.array(f["rv_20"].to_numpy(), from_pandas=False)  # NaN stays NaN
    table = table.set_column(table.schema.get_field_index("rv_20"), "rv_20", rv_20)
    assert table.column("rv_20").null_count == 0
    assert table.column("rv_5").null_count == 1
    return ibis.memtable(table)


def test_latest_complete_day_treats_nan_and_null_as_missing() -> None:
    t = ibis_frame()
    assert latest_complete_day(t, INPUTS, "date") == D2
    assert latest_complete_day(t, ["rv_5"], "date") == D3
    with pytest.raises(ValueError, match="no row has all model inputs"):
        latest_complete_day(t, [*INPUTS, "target"], "date")


def test_complete_rows_are_the_complete_rows_of_that_date_ordered_by_entity() -> None:
    rows = complete_rows(ibis_frame(), INPUTS, "currency", "date", D2).to_pandas()
    assert list(rows.columns) == ["currency", "date", *INPUTS]
    assert list(rows.currency) == ["GBP", "JPY"]
    assert complete_rows(ibis_frame(), INPUTS, "currency", "date", D3).to_pandas().empty
    with pytest.raises(ValueError, match=r"\['nope'\] are not columns"):
        complete_rows(ibis_frame(), ["nope"], "currency", "date", D2)


def test_predict_batches_predicts_each_batch_and_skips_empty_ones() -> None:
    rows = pa.Table.from_pandas(frame().dropna(subset=INPUTS), preserve_index=False)
    batches = [*rows.to_batches(max_chunksize=2), pa.RecordBatch.from_pylist([], schema=rows.schema)]
    calls: list[int] = []

    def predict(x: pd.DataFrame) -> np.ndarray:
        calls.append(len(x))
        assert list(x.columns) == INPUTS
        return (x["rv_5"] * 2).to_numpy()

    out = list(predict_batches(batches, predict, INPUTS, "currency", "date", LINEAGE, SCORED_AT))
    assert calls == [2, 2, 1]
    merged = pa.concat_tables(out)
    assert merged.column("prediction").to_pylist() == pytest.approx([0.2, 0.4, 0.6, 0.4, 0.6])
    assert set(merged.column("model_version").to_pylist()) == {"3"}


# ------------------------------------------------------------------------------------- the score step


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> dict[str, Any]:
    """Features of the slice, and two registered linear models: v1 @champion, v2 @challenger."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    from goldgate.context import Context
    from goldgate.runner import run_pipeline
    from goldgate.settings import load_settings
    from goldgate.usecase import load_usecase

    ws = tmp_path_factory.mktemp("score_ws")
    ctx = Context(load_settings(workspace=ws), load_usecase(slice_usecase_path))
    run_pipeline(ctx, only=["ingest", "silver", "gold", "features"])
    uc = ctx.usecase
    inputs = ["rv_5", "rv_20", "day_of_week"]
    feats = ctx.lake.read(uc.tables.features).to_pandas()
    train = feats.dropna(subset=[*inputs, uc.target.name])
    client = ctx.mlflow_client()
    name = uc.models.registered_name
    for alias, scale in (("champion", 1.0), ("challenger", 2.0)):
        model = LinearRegression().fit(train[inputs], train[uc.target.name] * scale)
        with mlflow.start_run(experiment_id=ctx.experiment_id), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(train[inputs].head(), model.predict(train[inputs].head())),
                pip_requirements=["scikit-learn"],
            )
        version = mlflow.register_model(info.model_uri, name).version
        client.set_registered_model_alias(name, alias, str(version))
    return {"ctx": ctx, "inputs": inputs, "features": feats, "ws": ws}


def _predictions(data: dict[str, Any]) -> pd.DataFrame:
    ctx = data["ctx"]
    return ctx.lake.read(ctx.usecase.tables.predictions).to_pandas()


def test_score_predicts_the_latest_complete_date_with_lineage(scored: dict[str, Any]) -> None:
    import mlflow

    from goldgate.pipeline import score

    ctx, inputs, feats = scored["ctx"], scored["inputs"], scored["features"]
    result = score(ctx)
    day = latest_complete_date(feats, inputs, "date")
    assert result["as_of"] == str(day)
    assert result["rows"] == result["inserted"] == 4
    assert result["model_version"] == "1"
    preds = _predictions(scored).sort_values("currency").reset_index(drop=True)
    expected_rows = rows_to_score(feats, inputs, "date", day).sort_values("currency").reset_index(drop=True)
    model = mlflow.pyfunc.load_model("models:/fx_slice_vol/1")
    np.testing.assert_allclose(preds["prediction"], model.predict(expected_rows[inputs]), rtol=1e-12)
    assert list(preds["currency"]) == list(expected_rows["currency"])
    assert set(preds["model_name"]) == {"fx_slice_vol"}
    assert set(preds["feature_table"]) == {"gold.fxs_features"}
    assert set(preds["feature_table_version"]) == {ctx.lake.version("gold.fxs_features")}
    assert preds["run_id"].notna().all()
    assert preds["scored_at"].notna().all()


def test_rescoring_is_a_no_op(scored: dict[str, Any]) -> None:
    from goldgate.pipeline import score

    ctx = scored["ctx"]
    score(ctx)  # the first scoring, whatever ran before
    before = ctx.lake.version("gold.fxs_predictions")
    again = score(ctx)
    assert (again["inserted"], again["updated"]) == (0, 0)
    assert ctx.lake.version("gold.fxs_predictions") == before


def test_other_dates_and_aliases_add_history(scored: dict[str, Any]) -> None:
    from goldgate.pipeline import score

    ctx = scored["ctx"]
    latest = date.fromisoformat(score(ctx)["as_of"])
    earlier = date(2023, 12, 1)
    assert score(ctx, as_of=earlier)["inserted"] == 4
    challenger = score(ctx, as_of=latest, alias="challenger")
    assert (challenger["model_version"], challenger["inserted"]) == ("2", 4)
    preds = _predictions(scored).assign(as_of=lambda f: pd.to_datetime(f.as_of).dt.date)
    assert not preds.duplicated(["currency", "as_of", "model_version"]).any()
    by_key = preds.groupby(["as_of", "model_version"]).size().to_dict()
    assert by_key[(latest, "1")] == by_key[(earlier, "1")] == by_key[(latest, "2")] == 4
    v1 = preds[(preds.as_of == latest) & (preds.model_version == "1")].set_index("currency")["prediction"]
    v2 = preds[(preds.as_of == latest) & (preds.model_version == "2")].set_index("currency")["prediction"]
    assert not np.allclose(v1, v2)  # two models, two histories side by side


def test_many_small_batches_give_every_row(scored: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import goldgate.pipeline as pipeline

    ctx = scored["ctx"]
    monkeypatch.setattr(pipeline, "BATCH_ROWS", 1)
    day = date(2023, 11, 1)
    before = ctx.lake.version("gold.fxs_predictions")
    first = pipeline.score(ctx, as_of=day)
    assert (first["rows"], first["batches"], first["inserted"]) == (4, 4, 4)
    assert ctx.lake.version("gold.fxs_predictions") == before + 1  # one merge, one commit
    again = pipeline.score(ctx, as_of=day)
    assert (again["inserted"], again["updated"]) == (0, 0)
    monkeypatch.undo()
    assert pipeline.score(ctx, as_of=day)["batches"] == 1
    assert pipeline.score(ctx, as_of=day)["inserted"] == 0  # one batch finds the same rows


def test_a_date_without_complete_rows_or_an_unknown_alias_fails(scored: dict[str, Any]) -> None:
    from goldgate.pipeline import score

    with pytest.raises(ValueError, match=r"no currency has every model input .* on 2023-12-31"):
        score(scored["ctx"], as_of=date(2023, 12, 31))  # a Sunday
    with pytest.raises(LookupError, match="no 'nobody' alias"):
        score(scored["ctx"], alias="nobody")


def test_score_command(scored: dict[str, Any], slice_usecase_path: Path) -> None:
    from goldgate.cli import app

    runner = CliRunner()
    base = ["score", "--usecase", str(slice_usecase_path), "--workspace", str(scored["ws"])]
    ok = runner.invoke(app, [*base, "--as-of", "2023-10-02", "--alias", "challenger"])
    assert ok.exit_code == 0, ok.output
    assert "rows=4" in ok.output
    assert "as_of=2023-10-02" in ok.output
    assert "model_version=2" in ok.output
    bad = runner.invoke(app, [*base, "--alias", "nobody"])
    assert bad.exit_code == 1
    assert "score: fx_slice_vol has no 'nobody' alias" in bad.output


def test_with_lineage_of_a_multiclass_model_keeps_the_class_and_every_probability() -> None:
    rows = rows_to_score(frame(), INPUTS, "date", D2)
    probabilities = pd.DataFrame({"Adelie": [0.7, 0.1], "Chin strap": [0.2, 0.1], "Gentoo": [0.1, 0.8]})
    table = with_lineage(rows, probabilities, "currency", "date", LINEAGE, SCORED_AT)
    columns = ["prediction", "p_adelie", "p_chin_strap", "p_gentoo"]
    assert table.column_names == ["currency", "as_of", *columns, *LINEAGE, "scored_at"]
    assert pa.types.is_string(table.schema.field("prediction").type) or pa.types.is_large_string(
        table.schema.field("prediction").type
    )
    assert table.column("prediction").to_pylist() == ["Adelie", "Gentoo"]
    assert table.column("p_gentoo").to_pylist() == [0.1, 0.8]
    assert table.schema.field("p_adelie").type == pa.float64()


def test_class_columns_are_named_like_one_hot_features() -> None:
    from goldgate.data.names import slugs
    from goldgate.score import class_columns

    classes = ["<= 1 year", "10+ years", "A b", "a_b", "", "5%"]
    assert class_columns(classes) == [f"p_{s}" for s in slugs(classes)]
    assert class_columns(classes) == ["p_le_1_year", "p_10_plus_years", "p_a_b", "p_a_b_2", "p_blank", "p_5_pct"]
