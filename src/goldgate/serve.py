"""The prediction service: a FastAPI app over a registry alias, with API keys, limits, lineage and hot reload.

``create_app(settings, usecase)`` loads ``models:/<registered_name>@champion`` once, generates the request
schema from the model's MLflow signature, and starts a poller that follows the alias: when it moves, the new
version is loaded and checked completely beside the old one, then a single reference is swapped, so requests in
flight finish on the version they started with and none are dropped.

Per request the service does as little as it can: a pure-ASGI guard checks the API key (SHA-256 digests,
constant-time comparison) and the body size, pydantic validates the rows (strict types, every field required,
no NaN/inf), and the rows go to the model as one float64 NumPy array. LightGBM is called through its booster and
linear models through their coefficients; both are checked against MLflow's own ``predict`` on the model's input
example at load time, and any other model goes through MLflow's ``pyfunc`` on a DataFrame.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from goldgate.settings import Settings
from goldgate.usecase import UseCase

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Values that ship in examples and docs: never accepted as a key outside env=dev.
PLACEHOLDER_KEYS = frozenset(
    {"change-me", "changeme", "change_me", "dev-key", "devkey", "secret", "password", "api-key", "apikey", "test"}
)
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "change_me", "replace-me", "your-", "<")
MIN_KEY_CHARS = 16  # outside env=dev
PROTECTED_PREFIX = "/v1/"
_INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_PY_TYPES: dict[str, type] = {"double": float, "float": float, "integer": int, "long": int, "boolean": bool}
_NUMPY_TYPES = {"double": "float64", "float": "float32", "integer": "int32", "long": "int64", "boolean": "bool"}


class ServeError(RuntimeError):
    """The service refuses to start (the message is one line and never contains a key)."""


# --------------------------------------------------------------------------------------------- API keys


def is_placeholder(key: str) -> bool:
    """True for example values such as ``change-me-1`` or ``dev-key`` that must not protect a real service."""
    k = key.strip().lower()
    return k in PLACEHOLDER_KEYS or k.startswith(PLACEHOLDER_PREFIXES)


def key_digests(settings: Settings, allow_no_auth: bool = False) -> list[bytes] | None:
    """SHA-256 digests of the configured API keys, or None when authentication is off.

    Authentication can be off only in ``env=dev`` with no key configured and ``allow_no_auth``. Outside dev, a
    missing key, a placeholder key or one shorter than 16 characters raises ``ServeError``.
    """
    keys = [k.get_secret_value() for k in settings.api_keys]
    if not keys:
        if settings.env != "dev":
            raise ServeError(f"no API key configured (GOLDGATE_API_KEYS) and env={settings.env}: refusing to start")
        if not allow_no_auth:
            raise ServeError(
                "no API key configured: set GOLDGATE_API_KEYS='[\"...\"]', or pass --allow-no-auth for a "
                "local demo (env=dev, loopback only)"
            )
        log.warning("authentication is OFF (--allow-no-auth, env=dev): every client may call /v1/*")
        return None
    for number, key in enumerate(keys, start=1):
        if not key.strip():
            raise ServeError(f"API key #{number} in GOLDGATE_API_KEYS is empty")
        if settings.env == "dev":
            if is_placeholder(key):
                log.warning("API key #%d is a placeholder value: acceptable in env=dev only", number)
            continue
        if is_placeholder(key):
            raise ServeError(
                f"API key #{number} in GOLDGATE_API_KEYS is a placeholder value and env={settings.env}: "
                "set real keys before starting"
            )
        if len(key) < MIN_KEY_CHARS:
            raise ServeError(
                f"API key #{number} in GOLDGATE_API_KEYS is shorter than {MIN_KEY_CHARS} characters "
                f"and env={settings.env}: refusing to start"
            )
    return [hashlib.sha256(k.encode()).digest() for k in keys]


def key_matches(presented: bytes, digests: list[bytes]) -> bool:
    """Compare the presented key's digest with every configured digest in constant time."""
    digest = hashlib.sha256(presented).digest()
    found = False
    for ref in digests:  # no early exit: the time does not depend on which key matched
        found |= hmac.compare_digest(digest, ref)
    return found


def check_bind(host: str, authenticated: bool) -> None:
    """Refuse to serve without authentication on anything but a loopback address."""
    if authenticated:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ServeError(f"--allow-no-auth serves on loopback addresses only, not {host}")


# ------------------------------------------------------------------------------------- the served model


@dataclass(frozen=True)
class InputField:
    """One column of the model signature."""

    name: str
    type: str  # MLflow type name: double, float, long, integer, boolean


Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ServedModel:
    """A fully loaded, checked registry version and the metadata the API reports with every prediction."""

    name: str
    version: str
    alias: str
    run_id: str
    data_version: dict[str, int]
    gate_decision: str | None
    fields: tuple[InputField, ...]
    predict: Predictor
    path: str  # how predict calls the model: lightgbm-booster, linear, pyfunc
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # A multiclass model's classes: predict then returns one probability column per class, in this order.
    classes: tuple[str, ...] = ()

    @property
    def lineage(self) -> dict[str, str]:
        """What every prediction response carries."""
        return {"name": self.name, "version": self.version, "run_id": self.run_id}

    def describe(self) -> dict[str, Any]:
        """The ``GET /v1/model`` body (without the poller's state)."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "data_version": self.data_version,
            "gate_decision": self.gate_decision,
            "inputs": [{"name": f.name, "type": f.type} for f in self.fields],
            "predict_path": self.path,
            "loaded_at": self.loaded_at.isoformat(),
            **({"classes": list(self.classes)} if self.classes else {}),
        }

    def payload(self, y: np.ndarray) -> dict[str, Any]:
        """The predictions of a response: one number per row, or for a multiclass model the most probable class
        of each row and every class's probability."""
        if not self.classes:
            return {"predictions": y.tolist()}
        top = [self.classes[i] for i in np.argmax(y, axis=1)]
        return {"predictions": top, "probabilities": [dict(zip(self.classes, row, strict=True)) for row in y.tolist()]}


def output_classes(pyfunc_model: Any) -> tuple[str, ...]:
    """The classes of a multiclass model (the named columns of its output signature); empty for a model that
    predicts one number per row."""
    schema = pyfunc_model.metadata.get_output_schema()
    if schema is None or not schema.has_input_names():
        return ()
    return tuple(str(n) for n in schema.input_names())


def signature_fields(schema: Any) -> tuple[InputField, ...]:
    """The named, scalar columns of an MLflow input schema (anything else cannot be served as JSON rows)."""
    if schema is None or not schema.has_input_names():
        raise ServeError("the model has no column-based input signature; log it with a signature")
    out = []
    for spec in schema.inputs:
        type_name = getattr(spec.type, "name", str(spec.type))
        if type_name not in _PY_TYPES:
            raise ServeError(f"input '{spec.name}' has type {type_name}, which the service cannot accept as JSON")
        out.append(InputField(spec.name, type_name))
    return tuple(out)


def _fast_predictor(raw: Any) -> tuple[Predictor, str] | None:
    """A direct call into the estimator for the model kinds goldgate trains, or None."""
    booster = getattr(raw, "booster_", None)
    if booster is not None and type(raw).__module__.startswith("lightgbm"):
        # One thread: requests are small, and OpenMP threads spinning beside the event loop cost more than they
        # save (concurrency comes from more processes, not from threads inside one prediction).
        return (lambda x: np.asarray(booster.predict(x, num_threads=1), dtype=np.float64)), "lightgbm-booster"
    coef, intercept = getattr(raw, "coef_", None), getattr(raw, "intercept_", None)
    if coef is not None and intercept is not None and np.ndim(coef) == 1 and np.ndim(intercept) == 0:
        w, b = np.asarray(coef, dtype=np.float64), float(intercept)
        return (lambda x: x @ w + b), "linear"
    return None


def build_predictor(
    pyfunc_model: Any, fields: tuple[InputField, ...], classes: tuple[str, ...] = ()
) -> tuple[Predictor, str]:
    """The fastest call that gives MLflow's own predictions for this model, checked on its input example.

    With ``classes`` (multiclass) the predictor returns a rows x classes probability matrix, through pyfunc.
    """
    import pandas as pd

    names = [f.name for f in fields]
    dtypes = {f.name: _NUMPY_TYPES[f.type] for f in fields}

    def via_pyfunc(x: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(x, columns=names).astype(dtypes)
        out = pyfunc_model.predict(frame)
        if classes:
            return pd.DataFrame(out).rename(columns=str)[list(classes)].to_numpy(dtype=np.float64)
        return np.asarray(out, dtype=np.float64).reshape(-1)

    if classes:
        return via_pyfunc, "pyfunc"

    try:
        raw = pyfunc_model.get_raw_model()
    except Exception:  # flavours without a raw model simply use pyfunc
        raw = None
    fast = _fast_predictor(raw) if raw is not None else None
    example = getattr(pyfunc_model, "input_example", None)
    if fast is None or example is None or not hasattr(example, "columns"):
        return via_pyfunc, "pyfunc"
    x = example[names].to_numpy(dtype=np.float64)
    expected = np.asarray(pyfunc_model.predict(example[names]), dtype=np.float64).reshape(-1)
    if not np.allclose(fast[0](x), expected, rtol=1e-9, atol=1e-12):
        log.warning("direct %s predictions differ from MLflow's on the input example: using pyfunc", fast[1])
        return via_pyfunc, "pyfunc"
    return fast


def load_version(name: str, alias: str, version: Any) -> ServedModel:
    """Load one registry version completely (model, predictor, lineage) and warm it up."""
    import mlflow

    uri = f"models:/{name}/{version.version}"
    pyfunc_model = mlflow.pyfunc.load_model(uri)
    fields = signature_fields(pyfunc_model.metadata.get_input_schema())
    classes = output_classes(pyfunc_model)
    predict, path = build_predictor(pyfunc_model, fields, classes)
    predict(np.zeros((1, len(fields)), dtype=np.float64))  # warm-up: first calls allocate
    run_id = version.run_id or ""
    data_version: dict[str, int] = {}
    if run_id:
        tag = mlflow.MlflowClient().get_run(run_id).data.tags.get("dataset_version")
        data_version = json.loads(tag) if tag else {}
    return ServedModel(
        name=name,
        version=str(version.version),
        alias=alias,
        run_id=run_id,
        data_version=data_version,
        gate_decision=(version.tags or {}).get("gate.decision"),
        fields=fields,
        predict=predict,
        path=path,
        classes=classes,
    )


@dataclass(frozen=True)
class FeatureRows:
    """The newest complete feature row of every entity, from one version of the feature table."""

    table: str
    version: int
    inputs: tuple[str, ...]
    index: dict[str, int]  # entity -> row of ``matrix``
    as_of: list[str]
    matrix: np.ndarray  # float64, one row per entity, columns in ``inputs`` order


class FeatureLookup:
    """Serves ``POST /v1/predict/by-key``: reads the latest feature rows and re-reads them when the table moves."""

    def __init__(self, lake: Any, table: str, entity: str, time_col: str, usecase: UseCase | None = None) -> None:
        self.lake = lake
        self.table = table
        self.entity = entity
        self.time_col = time_col
        # With models.allow_missing, rows missing non-baseline inputs are served too (the models impute).
        self.usecase = usecase
        self.current: FeatureRows | None = None
        self.error: str | None = None

    def refresh(self, inputs: tuple[str, ...]) -> bool:
        """Re-read when the table has a new version (or other inputs are needed); True when it changed."""
        from goldgate.score import latest_complete_rows, required_inputs

        version = self.lake.version(self.table)
        if version is None:
            self.error = f"{self.table} does not exist in this workspace"
            return False
        current = self.current
        if current is not None and current.version == version and current.inputs == inputs:
            return False
        required = required_inputs(self.usecase, list(inputs)) if self.usecase is not None else None
        features = self.lake.read(self.table, version)
        rows = latest_complete_rows(features, list(inputs), self.entity, self.time_col, required)
        arrow = rows.to_pyarrow()
        keys = [str(k) for k in arrow.column(self.entity).to_pylist()]
        matrix = (
            np.column_stack(
                [np.asarray(arrow.column(c).to_numpy(zero_copy_only=False), dtype=np.float64) for c in inputs]
            )
            if keys
            else np.empty((0, len(inputs)))
        )
        days = [str(d)[:10] for d in arrow.column(self.time_col).to_pylist()]
        self.current = FeatureRows(self.table, int(version), inputs, {k: i for i, k in enumerate(keys)}, days, matrix)
        self.error = None
        log.info("feature rows for by-key predictions: %d %s from %s v%d", len(keys), self.entity, self.table, version)
        return True

    def state(self) -> dict[str, Any]:
        """The lookup's view for ``GET /v1/model``."""
        cur = self.current
        return {
            "table": self.table,
            "version": cur.version if cur else None,
            "entities": len(cur.index) if cur else 0,
            "error": self.error,
        }


class ModelHolder:
    """Holds the served version and follows the alias; the swap is one reference assignment."""

    def __init__(self, name: str, alias: str, poll_seconds: float, lookup: FeatureLookup | None = None) -> None:
        self.name = name
        self.alias = alias
        self.poll_seconds = poll_seconds
        self.lookup = lookup
        self.current: ServedModel | None = None
        self.alias_version: str | None = None
        self.last_checked_at: datetime | None = None
        self.reload_error: str | None = None
        self.reloads = 0
        self._rejected: str | None = None  # a version not swapped in (signature change): not reloaded again
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh_features(self) -> None:
        """Re-read the feature rows if their table moved; a failure is reported, never raised."""
        if self.lookup is None or self.current is None:
            return
        try:
            self.lookup.refresh(tuple(f.name for f in self.current.fields))
        except Exception as exc:  # the by-key endpoint reports it; row predictions are unaffected
            self.lookup.error = f"cannot read {self.lookup.table}: {type(exc).__name__}: {exc}"
            log.warning("%s", self.lookup.error)

    def _alias_target(self) -> Any:
        from goldgate.registry import alias_version

        return alias_version(self.name, self.alias)

    def load_initial(self) -> ServedModel:
        """Load the alias' version now; raises ServeError when the alias points nowhere."""
        target = self._alias_target()
        if target is None:
            raise ServeError(f"{self.name} has no '{self.alias}' alias in the registry: run the pipeline first")
        self.current = load_version(self.name, self.alias, target)
        self.alias_version = self.current.version
        self.last_checked_at = datetime.now(UTC)
        log.info("serving %s v%s (@%s, predict via %s)", self.name, self.current.version, self.alias, self.current.path)
        self.refresh_features()
        return self.current

    def check(self) -> bool:
        """Reload if the alias moved; returns True when a new version was swapped in."""
        target = self._alias_target()
        self.last_checked_at = datetime.now(UTC)
        current = self.current
        if target is None:
            self.reload_error = f"alias '{self.alias}' no longer exists: still serving v{current and current.version}"
            log.warning("%s", self.reload_error)
            return False
        self.alias_version = str(target.version)
        if current is not None and self.alias_version == current.version:
            self.reload_error = None
            return False
        if self.alias_version == self._rejected:
            return False
        loaded = load_version(self.name, self.alias, target)
        if current is not None and loaded.fields != current.fields:
            self._rejected = loaded.version
            self.reload_error = (
                f"v{loaded.version} has a different input signature than v{current.version}: "
                "restart the service to serve it (the API schema is fixed at start)"
            )
            log.error("%s", self.reload_error)
            return False
        self.current = loaded  # the atomic swap: requests already running keep their reference
        self.reload_error = None
        self.reloads += 1
        log.info("hot reload: %s v%s -> v%s", self.name, current and current.version, loaded.version)
        return True

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh_features()
            try:
                self.check()
            except Exception as exc:  # a failed poll must never stop the poller or the service
                self.reload_error = f"reload check failed: {type(exc).__name__}: {exc}"
                log.warning("%s", self.reload_error)

    def start(self) -> None:
        """Start the background poller (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="goldgate-model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the poller and wait for it (bounded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.poll_seconds))

    def state(self) -> dict[str, Any]:
        """The poller's view for ``GET /v1/model``."""
        return {
            "alias_version": self.alias_version,
            "last_checked_at": self.last_checked_at.isoformat() if self.last_checked_at else None,
            "poll_seconds": self.poll_seconds,
            "reloads": self.reloads,
            "reload_error": self.reload_error,
            "features": self.lookup.state() if self.lookup else None,
        }


# -------------------------------------------------------------------------------- request/response models


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("Input should be a valid integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("Input should be a valid integer, got a number with a fractional part or not finite")
    return int(value)


def request_models(fields: tuple[InputField, ...], max_rows: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """Pydantic models of one row and of the request, generated from the signature.

    Every input is required, types are strict (a string is not a number, 2.5 is not an integer), NaN and
    infinity are refused and unknown fields are errors, so a bad row is a 422 naming the field.
    """
    row_fields: dict[str, Any] = {}
    for i, f in enumerate(fields):
        py: Any = _PY_TYPES[f.type]
        bounds = _INT_BOUNDS.get(f.type)
        kwargs: dict[str, Any] = {"alias": f.name, "description": f"{f.type} input of the model"}
        if bounds:
            # JSON Schema calls 3.0 an integer too: accept integral numbers, never strings, booleans or 2.5.
            py = Annotated[int, BeforeValidator(_json_integer)]
            kwargs.update(ge=bounds[0], le=bounds[1], strict=False)
        row_fields[f"f{i}"] = (py, Field(..., **kwargs))  # internal names: inputs may not be identifiers
    row = create_model(
        "PredictRow",
        __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
        **row_fields,
    )
    request = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(
            list[row],  # type: ignore[valid-type]
            Field(
                ...,
                min_length=1,
                description=f"One or more rows, each with every model input (at most {max_rows} per request).",
                json_schema_extra={"maxItems": max_rows},
            ),
        ),
    )
    return row, request


class Lineage(BaseModel):
    """Which registry version produced the predictions."""

    name: str
    version: str
    run_id: str


class PredictResponse(BaseModel):
    """Predictions in the order of the request's rows, with their lineage. A multiclass model predicts each row's
    most probable class, and ``probabilities`` gives every class's probability."""

    predictions: list[float] | list[str]
    probabilities: list[dict[str, float]] | None = None
    model: Lineage


class FeatureSource(BaseModel):
    """The feature table version the by-key predictions read."""

    table: str
    version: int


class PredictByKeyResponse(BaseModel):
    """Predictions in key order, the feature date of each, and their lineage (model and feature table)."""

    predictions: list[float] | list[str]
    probabilities: list[dict[str, float]] | None = None
    keys: list[str]
    as_of: list[str]
    model: Lineage
    features: FeatureSource


class ModelInfo(BaseModel):
    """The served version, its lineage and the hot-reload poller's state."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: str
    alias: str
    run_id: str
    data_version: dict[str, int]
    gate_decision: str | None
    alias_version: str | None
    reload_error: str | None


class Problem(BaseModel):
    """An error body."""

    detail: str


class FieldProblem(BaseModel):
    """One invalid field: ``loc`` is its path, e.g. ``["body", "rows", 0, "rv_5"]``."""

    type: str
    loc: list[str | int]
    msg: str


class ValidationProblem(BaseModel):
    """The 422 body: every invalid field of the request."""

    detail: list[FieldProblem] | str


# ------------------------------------------------------------------------------------ the ASGI guard


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class Guard:
    """Pure-ASGI middleware: API key on ``/v1/*`` (401) and a body size cap (413), before any parsing."""

    def __init__(self, app: ASGIApp, digests: list[bytes] | None, max_body_bytes: int) -> None:
        self.app = app
        self.digests = digests
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if self.digests is not None and scope["path"].startswith(PROTECTED_PREFIX):
            presented = None
            for name, value in headers:
                if name == b"x-api-key":
                    presented = value
                    break
                if name == b"authorization" and value[:7].lower() == b"bearer ":
                    presented = value[7:].strip()
            if not presented:
                await _send_json(
                    send,
                    401,
                    {"detail": "missing API key: send it in the X-API-Key header (or Authorization: Bearer)"},
                    [(b"www-authenticate", b'ApiKey header="X-API-Key"')],
                )
                return
            if not key_matches(presented, self.digests):
                await _send_json(send, 401, {"detail": "invalid API key"}, [(b"www-authenticate", b"ApiKey")])
                return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = next((v for k, v in headers if k == b"content-length"), None)
            if length is not None:
                if not length.isdigit() or int(length) > self.max_body:
                    await self._too_large(send, length.decode("latin-1"))
                    return
            else:  # chunked: read up to the cap, then replay
                chunks, size = [], 0
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # client went away
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > self.max_body:
                        await self._too_large(send, f"more than {self.max_body}")
                        return
                    if not message.get("more_body", False):
                        break
                body = b"".join(chunks)
                sent = False

                async def replay() -> Message:
                    nonlocal sent
                    if sent:
                        return await receive()
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}

                await self.app(scope, replay, send)
                return
        await self.app(scope, receive, send)

    async def _too_large(self, send: Send, size: str) -> None:
        await _send_json(
            send,
            413,
            {
                "detail": f"request body of {size} bytes exceeds the limit of {self.max_body} bytes "
                "(GOLDGATE_SERVE_MAX_BODY_BYTES)"
            },
            [(b"connection", b"close")],
        )


# -------------------------------------------------------------------------------------------- the app


def create_app(
    settings: Settings,
    usecase: UseCase,
    *,
    alias: str = "champion",
    allow_no_auth: bool = False,
    holder: ModelHolder | None = None,
) -> FastAPI:
    """The prediction service for ``usecase``: loads ``@alias`` now and follows it while running.

    Raises ``ServeError`` (one line, no key in it) when it must not start: no usable API key, or no model.
    """
    from goldgate.tracking import configure_mlflow

    digests = key_digests(settings, allow_no_auth)
    configure_mlflow(settings)
    if holder is None:
        from goldgate.context import Context

        lake = Context(settings, usecase).lake
        lookup = FeatureLookup(lake, usecase.tables.features, usecase.entity, usecase.time, usecase)
        holder = ModelHolder(usecase.models.registered_name, alias, settings.serve_poll_seconds, lookup)
    first = holder.current or holder.load_initial()
    _, request_model = request_models(first.fields, settings.serve_max_rows)
    max_rows = settings.serve_max_rows
    n_inputs = len(first.fields)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder.start()
        try:
            yield
        finally:
            holder.stop()

    app = FastAPI(
        title=f"goldgate · {usecase.name}",
        version=first.version,
        summary=f"Predictions of {usecase.models.registered_name}@{alias} with lineage.",
        description=(
            f"Send the API key in the `X-API-Key` header (or `Authorization: Bearer`). At most {max_rows} rows "
            f"and {settings.serve_max_body_bytes} bytes per request. Inputs follow the model signature: "
            + ", ".join(f"`{f.name}` ({f.type})" for f in first.fields)
            + "."
        ),
        lifespan=lifespan,
    )
    app.state.holder = holder
    app.add_exception_handler(RequestValidationError, _validation_error)
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem, "description": "Missing or invalid API key."},
        413: {"model": Problem, "description": "Body too large or too many rows."},
    }

    def check_row_limit(count: int, noun: str) -> None:
        if count > max_rows:
            raise HTTPException(
                413, f"{count} {noun} exceed the limit of {max_rows} rows per request (GOLDGATE_SERVE_MAX_ROWS)"
            )

    async def predict(request: Request) -> Response:
        # pydantic-core parses and validates the JSON in one pass (no json.loads + dict walk): the body schema
        # is documented through ``openapi_extra`` below.
        try:
            body = request_model.model_validate_json(await request.body())
        except ValidationError as exc:
            return _unprocessable(exc.errors(), ("body",))
        rows = body.rows  # type: ignore[attr-defined]
        check_row_limit(len(rows), "rows")
        served = holder.current  # one read: the whole request uses this version
        assert served is not None
        x = np.array([tuple(r.__dict__.values()) for r in rows], dtype=np.float64).reshape(len(rows), n_inputs)
        y = served.predict(x)
        finite = np.isfinite(y).reshape(len(y), -1).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise HTTPException(422, f"rows.{bad}: the model's prediction is not finite (inputs out of range)")
        payload = {**served.payload(y), "model": served.lineage}
        return Response(json.dumps(payload), media_type="application/json")

    body_schema = {"$ref": f"#/components/schemas/{request_model.__name__}"}
    app.add_api_route(
        "/v1/predict",
        predict,
        methods=["POST"],
        response_model=PredictResponse,
        responses={
            **errors,
            422: {"model": ValidationProblem, "description": "A field is missing, unknown or of the wrong type."},
        },
        summary="Predict one or more rows",
        tags=["predict"],
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
    )

    known = holder.lookup.current if holder.lookup else None
    examples: dict[str, Any] = {"examples": [sorted(known.index)[:3]]} if known and known.index else {}
    keys_model = create_model(
        "PredictByKeyRequest",
        __config__=ConfigDict(extra="forbid", strict=True),
        keys=(
            list[str],
            Field(
                ...,
                min_length=1,
                description=f"Values of `{usecase.entity}`; each is scored on its newest complete feature row.",
                json_schema_extra={"maxItems": max_rows, **examples},
            ),
        ),
    )

    async def predict_by_key(request: Request) -> Response:
        try:
            keys: list[str] = keys_model.model_validate_json(await request.body()).keys  # type: ignore[attr-defined]
        except ValidationError as exc:
            return _unprocessable(exc.errors(), ("body",))
        check_row_limit(len(keys), "keys")
        served, lookup = holder.current, holder.lookup
        feats = lookup.current if lookup else None
        assert served is not None
        if feats is None or feats.inputs != tuple(f.name for f in served.fields):
            reason = (lookup.error if lookup else None) or "not loaded yet"
            raise HTTPException(503, f"feature rows are not available: {reason}")
        unknown = [k for k in keys if k not in feats.index]
        if unknown:
            raise HTTPException(
                404, f"no row of {feats.table} v{feats.version} has every model input for {usecase.entity} {unknown}"
            )
        rows = [feats.index[k] for k in keys]
        y = served.predict(feats.matrix[rows])
        payload = {
            **served.payload(y),
            "keys": keys,
            "as_of": [feats.as_of[i] for i in rows],
            "model": served.lineage,
            "features": {"table": feats.table, "version": feats.version},
        }
        return Response(json.dumps(payload), media_type="application/json")

    keys_schema = {"$ref": f"#/components/schemas/{keys_model.__name__}"}
    app.add_api_route(
        "/v1/predict/by-key",
        predict_by_key,
        methods=["POST"],
        response_model=PredictByKeyResponse,
        responses={
            **errors,
            404: {"model": Problem, "description": "A key has no complete feature row."},
            422: {"model": ValidationProblem, "description": "The body is not a list of keys."},
            503: {"model": Problem, "description": "The feature table cannot be read."},
        },
        summary=f"Predict by {usecase.entity}, from the latest feature table",
        tags=["predict"],
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": keys_schema}}}},
    )

    @app.get("/v1/model", response_model=ModelInfo, responses={401: errors[401]}, tags=["model"])
    async def model_info() -> dict[str, Any]:
        """The served version: name, version, alias, run id, data version, gate decision, poller state."""
        served = holder.current
        assert served is not None
        return {**served.describe(), **holder.state()}

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": Problem, "description": "No model loaded."}})
    async def readyz() -> Any:
        """Readiness: a model version is loaded and answered its warm-up prediction."""
        served = holder.current
        if served is None:
            return JSONResponse({"detail": "no model loaded"}, status_code=503)
        return {"status": "ready", "name": served.name, "version": served.version}

    _document_openapi(app, [request_model, keys_model])
    app.add_middleware(Guard, digests=digests, max_body_bytes=settings.serve_max_body_bytes)
    return app


def _unprocessable(errors: Any, prefix: tuple[str, ...] = ()) -> Response:
    """422 naming each offending field; the rejected input is not echoed (it may be large, or NaN)."""
    detail = [{"type": e["type"], "loc": [*prefix, *e["loc"]], "msg": e["msg"]} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


async def _validation_error(_: Request, exc: Exception) -> Response:
    return _unprocessable(exc.errors() if isinstance(exc, RequestValidationError) else [])


def _document_openapi(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Add the request body schemas and the API-key scheme of the ``/v1/*`` operations (the guard enforces it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        for model in models:
            defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.setdefault("schemas", {}).update(defs.pop("$defs", {}))
            components["schemas"][model.__name__] = defs
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
        for path, ops in schema.get("paths", {}).items():
            if path.startswith(PROTECTED_PREFIX):
                for op in ops.values():
                    op["security"] = [{"ApiKey": []}, {"Bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def run_server(
    settings: Settings,
    usecase: UseCase,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    alias: str = "champion",
    allow_no_auth: bool = False,
    access_log: bool = False,
) -> None:
    """Start uvicorn with the service (blocks until interrupted)."""
    import uvicorn

    check_bind(host, bool(settings.api_keys) or not allow_no_auth)
    app = create_app(settings, usecase, alias=alias, allow_no_auth=allow_no_auth)
    if access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    log.info("listening on http://%s:%d (OpenAPI docs at /docs)", host, port)
    started = time.perf_counter()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    log.info("stopped after %.0f s", time.perf_counter() - started)
