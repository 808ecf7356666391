"""The prediction service through a real uvicorn on 127.0.0.1: auth, validation, limits, lineage, hot reload."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
import uvicorn
from pydantic import SecretStr

from goldgate.context import Context
from goldgate.runner import run_pipeline
from goldgate.serve import ServeError, check_bind, create_app, is_placeholder, key_digests, key_matches
from goldgate.settings import Settings, load_settings
from goldgate.usecase import load_usecase

KEY = "test-key-0123456789abcdef"
MAX_ROWS = 50
MAX_BODY = 20_000
NAME = "fx_slice_vol"


class LiveServer:
    """uvicorn serving an app on a free loopback port in a background thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
            assert self.thread.is_alive(), "uvicorn exited during start-up"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def _settings(workspace: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": workspace,
        "env": "dev",
        "tracking_uri": None,
        "api_keys": [KEY],
        "serve_poll_seconds": 0.2,
        "serve_max_rows": MAX_ROWS,
        "serve_max_body_bytes": MAX_BODY,
        **overrides,
    }
    return Settings.model_validate(values)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> dict[str, Any]:
    """The slice's loop up to a registered champion, plus real feature rows to send."""
    ws = tmp_path_factory.mktemp("serve_ws")
    usecase = load_usecase(slice_usecase_path)
    ctx = Context(load_settings(workspace=ws), usecase)
    run_pipeline(ctx, only=["ingest", "silver", "gold", "features", "train", "evaluate", "gate", "register"])
    import mlflow

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(NAME, "champion")
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{champion.version}")
    inputs = model.metadata.get_input_schema().input_names()
    features = ctx.lake.read(usecase.tables.features).to_pandas().dropna(subset=inputs)
    rows = features[inputs].tail(8).to_dict(orient="records")
    return {
        "ws": ws,
        "usecase": usecase,
        "ctx": ctx,
        "inputs": inputs,
        "rows": rows,
        "model": model,
        "features_version": ctx.lake.version(usecase.tables.features),
    }


@pytest.fixture(scope="module")
def live(workspace: dict[str, Any]) -> Iterator[LiveServer]:
    app = create_app(_settings(workspace["ws"]), workspace["usecase"])
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=10, headers={"X-API-Key": KEY}) as client:
        yield client


def _champion() -> Any:
    import mlflow

    return mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion")


# ------------------------------------------------------------------------------------------- predict


def test_predictions_match_mlflow_and_carry_lineage(http: httpx.Client, workspace: dict[str, Any]) -> None:
    import pandas as pd

    rows = workspace["rows"]
    resp = http.post("/v1/predict", json={"rows": rows})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    expected = workspace["model"].predict(pd.DataFrame(rows)[workspace["inputs"]])
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-9)
    champion = _champion()
    assert body["model"] == {"name": NAME, "version": str(champion.version), "run_id": champion.run_id}


def test_bearer_token_is_accepted_and_one_row_gives_one_prediction(live: LiveServer, workspace: dict[str, Any]) -> None:
    resp = httpx.post(
        f"{live.url}/v1/predict", json={"rows": workspace["rows"][:1]}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong-key-0123456789"}, {"Authorization": "Bearer nope"}, {"X-API-Key": ""}],
    ids=["missing", "wrong", "wrong-bearer", "empty"],
)
def test_missing_or_wrong_key_is_401_before_anything_else(
    live: LiveServer, workspace: dict[str, Any], headers: dict[str, str]
) -> None:
    for method, path, body in [
        ("POST", "/v1/predict", {"rows": workspace["rows"][:1]}),
        ("POST", "/v1/predict", {"rows": "not rows"}),  # would be a 422 with a key
        ("GET", "/v1/model", None),
    ]:
        resp = httpx.request(method, f"{live.url}{path}", json=body, headers=headers)
        assert resp.status_code == 401, (path, resp.text)
        assert "API key" in resp.json()["detail"]
        assert "www-authenticate" in resp.headers
        assert KEY not in resp.text


def test_wrong_type_is_422_naming_the_field(http: httpx.Client, workspace: dict[str, Any]) -> None:
    field = workspace["inputs"][1]
    row = {**workspace["rows"][0], field: "not a number"}
    resp = http.post("/v1/predict", json={"rows": [workspace["rows"][0], row]})
    assert resp.status_code == 422
    [error] = resp.json()["detail"]
    assert error["loc"] == ["body", "rows", 1, field]


def test_missing_and_unknown_fields_are_422_naming_them(http: httpx.Client, workspace: dict[str, Any]) -> None:
    field = workspace["inputs"][-1]
    row = {k: v for k, v in workspace["rows"][0].items() if k != field}
    resp = http.post("/v1/predict", json={"rows": [{**row, "colour": 1.0}]})
    assert resp.status_code == 422
    found = {(e["loc"][-1], e["type"]) for e in resp.json()["detail"]}
    assert found == {(field, "missing"), ("colour", "extra_forbidden")}


@pytest.mark.parametrize(
    "body",
    [b'{"rows": []}', b"{}", b'{"rows": [{"abs_ret_1": NaN}]}', b"[1, 2]"],
    ids=["no-rows", "no-rows-key", "nan", "not-an-object"],
)
def test_malformed_requests_are_422(http: httpx.Client, body: bytes) -> None:
    resp = http.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text


def test_nan_is_422_naming_the_field_without_echoing_it(http: httpx.Client, workspace: dict[str, Any]) -> None:
    field = workspace["inputs"][0]
    body = json.dumps({"rows": [{**workspace["rows"][0], field: 0.5}]}).replace("0.5", "NaN", 1)
    resp = http.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["detail"] == [
        {"type": "finite_number", "loc": ["body", "rows", 0, field], "msg": "Input should be a finite number"}
    ]


def test_too_many_rows_is_413(http: httpx.Client, workspace: dict[str, Any]) -> None:
    rows = (workspace["rows"] * MAX_ROWS)[: MAX_ROWS + 1]
    resp = http.post("/v1/predict", json={"rows": rows})
    assert resp.status_code == 413
    assert resp.json()["detail"] == f"{MAX_ROWS + 1} rows exceed the limit of {MAX_ROWS} rows per request " + (
        "(GOLDGATE_SERVE_MAX_ROWS)"
    )
    assert http.post("/v1/predict", json={"rows": rows[:MAX_ROWS]}).status_code == 200


def test_oversized_body_is_413_with_or_without_content_length(http: httpx.Client) -> None:
    big = b'{"rows": [' + b" " * MAX_BODY + b"]}"
    resp = http.post("/v1/predict", content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert f"exceeds the limit of {MAX_BODY} bytes" in resp.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(4):
            yield b" " * (MAX_BODY // 2)

    resp = http.post("/v1/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413


def test_small_chunked_body_is_accepted(http: httpx.Client, workspace: dict[str, Any]) -> None:
    payload = json.dumps({"rows": workspace["rows"][:2]}).encode()
    chunks = iter([payload[:10], payload[10:]])
    resp = http.post("/v1/predict", content=chunks, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 2


# -------------------------------------------------------------------------------------- model and probes


def test_model_endpoint_reports_lineage(http: httpx.Client, workspace: dict[str, Any]) -> None:
    info = http.get("/v1/model").json()
    champion = _champion()
    assert info["name"] == NAME
    assert info["version"] == str(champion.version)
    assert info["alias"] == "champion"
    assert info["run_id"] == champion.run_id
    assert info["gate_decision"] == "promote"
    assert info["data_version"]["gold.fxs_features"] == workspace["features_version"]
    assert info["features"]["table"] == "gold.fxs_features"
    assert info["features"]["entities"] == 4
    assert [i["name"] for i in info["inputs"]] == workspace["inputs"]
    assert info["reload_error"] is None


def test_health_and_readiness_need_no_key(live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["version"] == str(_champion().version)


def test_openapi_request_schema_is_the_model_signature(live: LiveServer, workspace: dict[str, Any]) -> None:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    row = spec["components"]["schemas"]["PredictRow"]
    assert list(row["properties"]) == workspace["inputs"]
    assert row["required"] == workspace["inputs"]
    assert row["additionalProperties"] is False
    assert spec["paths"]["/v1/predict"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert {"401", "413", "422"} <= set(spec["paths"]["/v1/predict"]["post"]["responses"])
    assert httpx.get(f"{live.url}/docs").status_code == 200


def test_schemathesis_finds_no_server_error(live: LiveServer, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{live.url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--header",
            f"X-API-Key: {KEY}",
            "--max-examples",
            "40",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "5",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert cases, result.stdout[-3000:]
    assert int(cases[1]) > 100
    assert cases[1] == cases[2], result.stdout[-3000:]  # every generated case passed every check


# ------------------------------------------------------------------------------------------ hot reload


def _register_copy(source_version: Any) -> str:
    """A new registry version of an existing version's model (same signature)."""
    import mlflow

    return str(mlflow.register_model(source_version.source, NAME).version)


def _wait_for(url: str, version: str, key: str = "version", seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = httpx.get(f"{url}/v1/model", headers={"X-API-Key": KEY}).json()
        if info[key] == version:
            return info
        time.sleep(0.05)
    raise AssertionError(f"/v1/model {key} did not become {version} within {seconds} s: {info}")


def test_hot_reload_switches_version_without_dropping_requests(live: LiveServer, workspace: dict[str, Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    old = _champion()
    new_version = _register_copy(old)
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=live.url, headers={"X-API-Key": KEY}, timeout=10) as c:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                r = c.post("/v1/predict", json={"rows": workspace["rows"][:3]})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model"]["version"])

    sender = threading.Thread(target=load)
    sender.start()
    try:
        time.sleep(0.3)
        client.set_registered_model_alias(NAME, "champion", new_version)
        info = _wait_for(live.url, new_version)
        time.sleep(0.3)  # requests keep flowing after the switch
    finally:
        stop.set()
        sender.join(timeout=15)
        client.set_registered_model_alias(NAME, "champion", str(old.version))
    assert info["alias_version"] == new_version
    assert info["reloads"] >= 1
    assert info["reload_error"] is None
    assert statuses
    assert set(statuses) == {200}
    assert versions[0] == str(old.version)
    assert versions[-1] == new_version
    switch = versions.index(new_version)
    assert set(versions[switch:]) == {new_version}  # one swap, never back and forth
    _wait_for(live.url, str(old.version))


def test_signature_change_is_not_swapped_in(live: LiveServer, workspace: dict[str, Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    old = _champion()
    runs = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`goldgate.model` = 'lightgbm'", output_format="list"
    )
    other = mlflow.register_model(runs[0].data.tags["goldgate.model_uri"], NAME)
    try:
        client.set_registered_model_alias(NAME, "champion", str(other.version))
        info = _wait_for(live.url, str(other.version), key="alias_version")
        deadline = time.monotonic() + 10
        while info["reload_error"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
            info = httpx.get(f"{live.url}/v1/model", headers={"X-API-Key": KEY}).json()
        assert "different input signature" in info["reload_error"]
        assert info["version"] == str(old.version)
        resp = httpx.post(f"{live.url}/v1/predict", json={"rows": workspace["rows"][:1]}, headers={"X-API-Key": KEY})
        assert resp.status_code == 200
        assert resp.json()["model"]["version"] == str(old.version)
    finally:
        client.set_registered_model_alias(NAME, "champion", str(old.version))
    _wait_for(live.url, None, key="reload_error")


# ------------------------------------------------------------------------------------------- by key


def _latest_rows(workspace: dict[str, Any]) -> Any:
    feats = workspace["ctx"].lake.read("gold.fxs_features").to_pandas().dropna(subset=workspace["inputs"])
    return feats.sort_values("date").groupby("currency").tail(1).set_index("currency")


def test_predict_by_key_scores_the_newest_complete_feature_rows(http: httpx.Client, workspace: dict[str, Any]) -> None:
    resp = http.post("/v1/predict/by-key", json={"keys": ["USD", "JPY", "USD"]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    latest = _latest_rows(workspace).loc[["USD", "JPY", "USD"]]
    same = http.post("/v1/predict", json={"rows": latest[workspace["inputs"]].to_dict(orient="records")})
    assert body["predictions"] == same.json()["predictions"]
    assert body["keys"] == ["USD", "JPY", "USD"]
    assert body["as_of"] == [str(d)[:10] for d in latest["date"]]
    assert body["features"] == {
        "table": "gold.fxs_features",
        "version": workspace["ctx"].lake.version("gold.fxs_features"),
    }
    assert body["model"]["name"] == NAME


def test_predict_by_key_errors(http: httpx.Client, live: LiveServer) -> None:
    unknown = http.post("/v1/predict/by-key", json={"keys": ["USD", "XAU"]})
    assert unknown.status_code == 404
    assert "currency ['XAU']" in unknown.json()["detail"]
    wrong = http.post("/v1/predict/by-key", json={"keys": [840]})
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["body", "keys", 0]
    assert http.post("/v1/predict/by-key", json={"keys": ["USD"] * (MAX_ROWS + 1)}).status_code == 413
    assert httpx.post(f"{live.url}/v1/predict/by-key", json={"keys": ["USD"]}).status_code == 401


def test_predict_by_key_follows_a_new_feature_table_version(http: httpx.Client, workspace: dict[str, Any]) -> None:
    lake = workspace["ctx"].lake
    before = http.post("/v1/predict/by-key", json={"keys": ["USD"]}).json()
    day = date.fromisoformat(before["as_of"][0])
    t = lake.read("gold.fxs_features")
    row = t.filter((t.currency == "USD") & (t.date == day)).to_pyarrow()
    assert row.num_rows == 1
    field = workspace["inputs"][-1]
    changed = row.set_column(row.schema.get_field_index(field), field, pa.array([row[field][0].as_py() * 3]))
    version = lake.merge("gold.fxs_features", changed, keys=["currency", "date"]).version
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        after = http.post("/v1/predict/by-key", json={"keys": ["USD"]}).json()
        if after["features"]["version"] == version:
            break
        time.sleep(0.05)
    assert after["features"]["version"] == version
    assert after["as_of"] == before["as_of"]
    assert after["predictions"] != before["predictions"]


# ---------------------------------------------------------------------------------- start-up refusals


@pytest.mark.parametrize("env", ["staging", "prod"])
@pytest.mark.parametrize("key", ["change-me-1", "changeme", "dev-key", "short-but-real"])
def test_placeholder_or_short_key_outside_dev_refuses_to_start(env: str, key: str) -> None:
    settings = Settings.model_validate({"env": env, "api_keys": [key]})
    with pytest.raises(ServeError) as err:
        key_digests(settings)
    assert key not in str(err.value)
    assert env in str(err.value)


def test_no_key_refuses_unless_dev_demo(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ServeError, match="--allow-no-auth"):
        key_digests(Settings.model_validate({"env": "dev"}))
    with pytest.raises(ServeError, match="env=prod"):
        key_digests(Settings.model_validate({"env": "prod"}), allow_no_auth=True)
    with caplog.at_level(logging.WARNING, logger="goldgate.serve"):
        assert key_digests(Settings.model_validate({"env": "dev"}), allow_no_auth=True) is None
    assert "authentication is OFF" in caplog.text
    check_bind("127.0.0.1", authenticated=False)
    check_bind("0.0.0.0", authenticated=True)
    with pytest.raises(ServeError, match="loopback"):
        check_bind("0.0.0.0", authenticated=False)


def test_keys_are_hashed_compared_in_full_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    real = "a-real-key-0123456789"
    with caplog.at_level(logging.DEBUG):
        digests = key_digests(Settings.model_validate({"env": "dev", "api_keys": ["change-me-1", real]}))
    assert digests is not None
    assert "placeholder" in caplog.text
    assert "change-me-1" not in caplog.text
    assert real not in caplog.text
    assert all(len(d) == 32 and real.encode() not in d for d in digests)
    assert key_matches(real.encode(), digests)
    assert not key_matches(real[:-1].encode(), digests)
    assert not key_matches(b"", digests)
    assert is_placeholder(" Change-Me-2 ")
    assert not is_placeholder(real)
    assert Settings.model_validate({"api_keys": [real]}).api_keys == [SecretStr(real)]
    assert real not in repr(Settings.model_validate({"api_keys": [real]}))


def test_unknown_alias_refuses_to_start(workspace: dict[str, Any]) -> None:
    with pytest.raises(ServeError, match="no 'nobody' alias"):
        create_app(_settings(workspace["ws"]), workspace["usecase"], alias="nobody")


def test_without_auth_in_dev_the_service_answers_without_a_key(workspace: dict[str, Any]) -> None:
    app = create_app(_settings(workspace["ws"], api_keys=[]), workspace["usecase"], allow_no_auth=True)
    with LiveServer(app) as server:
        resp = httpx.post(f"{server.url}/v1/predict", json={"rows": workspace["rows"][:1]})
    assert resp.status_code == 200, resp.text


# ------------------------------------------------------------------------------------------- load

LOAD_CLIENT = """
import json, sys, time, threading
import httpx
url, key, body, total, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
lat, errors, lock = [], [], threading.Lock()
deadline = time.monotonic() + seconds
def worker(n):
    with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": key, "Content-Type": "application/json"}) as c:
        for _ in range(n):
            if time.monotonic() > deadline:
                return
            t = time.perf_counter()
            try:
                status = c.post("/v1/predict", content=body).status_code
            except httpx.HTTPError as exc:
                status = repr(exc)
            with lock:
                lat.append((time.perf_counter() - t) * 1000)
                if status != 200:
                    errors.append(status)
threads = [threading.Thread(target=worker, args=(total // 4,)) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(json.dumps({"requests": len(lat), "errors": len(errors), "p50_ms": p(0.5), "p99_ms": p(0.99)}))
"""


def test_bounded_load_from_a_second_process_has_no_errors(live: LiveServer, workspace: dict[str, Any]) -> None:
    """400 single-row requests from 4 client threads in another process, at most 30 s: zero errors, p99 kept."""
    import json
    import subprocess
    import sys

    body = json.dumps({"rows": workspace["rows"][:1]})
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_CLIENT, live.url, KEY, body, "400", "30"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    out = Path(__file__).resolve().parents[1] / "test-artifacts" / "load.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    assert result["errors"] == 0, result
    assert result["requests"] >= 100, result  # the 30 s bound did not cut the run short to nothing
    assert 0 < result["p50_ms"] <= result["p99_ms"]


# ------------------------------------------------------------------------------------------- multiclass


def test_a_multiclass_model_answers_with_the_most_probable_class_and_every_probability(tmp_path: Path) -> None:
    import mlflow
    import pandas as pd

    from goldgate.models import build_model
    from goldgate.serve import ModelHolder, ServedModel, build_predictor, output_classes, signature_fields
    from goldgate.tracking import configure_mlflow
    from goldgate.train import _log_model
    from goldgate.usecase import ModelSpec

    settings = _settings(tmp_path / "ws")
    configure_mlflow(settings)
    rng = np.random.default_rng(0)
    y = pd.Series(rng.choice(["Adelie", "Chinstrap", "Gentoo"], 90), dtype="object")
    x = pd.DataFrame({"bill": y.map({"Adelie": 38.0, "Chinstrap": 49.0, "Gentoo": 47.0}) + rng.normal(0, 1, 90)})
    x["depth"] = y.map({"Adelie": 18.0, "Chinstrap": 18.5, "Gentoo": 15.0}) + rng.normal(0, 0.5, 90)
    model = build_model(ModelSpec(name="logistic", kind="logistic"), seed=0, multiclass=True).fit(x, y)
    with mlflow.start_run():
        pyfunc = mlflow.pyfunc.load_model(_log_model(model, x).model_uri)
    fields = signature_fields(pyfunc.metadata.get_input_schema())
    classes = output_classes(pyfunc)
    assert classes == ("Adelie", "Chinstrap", "Gentoo")
    predict, path = build_predictor(pyfunc, fields, classes)
    holder = ModelHolder("penguins_species", "champion", 3600)
    holder.current = ServedModel(
        "penguins_species", "1", "champion", "", {}, None, fields, predict, path, classes=classes
    )
    app = create_app(settings, load_usecase("penguins_species"), holder=holder)
    rows = [{"bill": 38.5, "depth": 18.2}, {"bill": 47.5, "depth": 14.8}]
    with LiveServer(app) as server, httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as client:
        body = client.post("/v1/predict", json={"rows": rows}).json()
        described = client.get("/v1/model").json()
    assert body["predictions"] == ["Adelie", "Gentoo"]
    expected = model.predict(pd.DataFrame(rows))
    for got, (_, want) in zip(body["probabilities"], expected.iterrows(), strict=True):
        assert list(got) == list(classes)
        assert got == pytest.approx(want.to_dict())
    assert described["classes"] == list(classes)
