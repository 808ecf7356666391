"""Serving benchmark: goldgate's service vs ``mlflow models serve`` (and a bare FastAPI app) on one model.

    .venv/bin/python benchmarks/serving.py --workspace DIR

Trains the fx use case into DIR first if it has no champion. Then, one server at a time on 127.0.0.1, starts

* ``goldgate serve`` (API key, validation and lineage on),
* ``mlflow models serve -m models:/<name>@champion --env-manager local`` on the same registry version,
* a bare FastAPI app that calls the same estimator directly, with no auth, no validation and no lineage
  (the reference for the "within 80 % of a bare app" aim),

waits (bounded) until it answers, and drives it with the same bounded load from a separate client process:
``--clients`` keep-alive connections, single-row and 100-row requests, ``--requests`` per scenario or
``--seconds``, whichever comes first, after a short warm-up. It reports p50/p95/p99 latency and requests/s,
writes ``benchmarks/results/serving-<time>.json`` and replaces the ``Serving`` section of docs/benchmarks.md.
Every server is stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import multiprocessing as mp
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request  # module level: the bare app's annotations are resolved from here
from report import write_section  # benchmarks/ is on sys.path when a benchmark runs as a script

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START = "<!-- serving:start -->"
END = "<!-- serving:end -->"
log = logging.getLogger("bench.serving")


# ------------------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until GET ``path`` answers 200 (raises after ``timeout`` or if the process died)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"server on port {port} not ready after {timeout:.0f} s")


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int, ready_path: str, log_file: Path, timeout: float) -> Any:
    """Start a server process in its own session, wait until ready, and always stop it."""
    with log_file.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            seconds = wait_ready(port, ready_path, proc, timeout)
            log.info("%s ready in %.1f s (pid %d)", cmd[1] if len(cmd) > 1 else cmd[0], seconds, proc.pid)
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------- the load


def _client(
    port: int, path: str, body: bytes, headers: dict[str, str], n: int, deadline: float, out: list[tuple[float, int]]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(n):
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except OSError:
            status = -1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        out.append((time.perf_counter() - t0, status))
    conn.close()


def drive(spec: dict[str, Any], queue: Any) -> None:
    """Client process: warm up, then ``clients`` threads share ``requests`` until done or ``seconds`` pass."""
    headers = {"Content-Type": "application/json", **spec["headers"]}
    body = spec["body"].encode()
    _client(spec["port"], spec["path"], body, headers, spec["warmup"], time.perf_counter() + 30, [])
    per_client = [spec["requests"] // spec["clients"]] * spec["clients"]
    results: list[list[tuple[float, int]]] = [[] for _ in per_client]
    deadline = time.perf_counter() + spec["seconds"]
    threads = [
        threading.Thread(target=_client, args=(spec["port"], spec["path"], body, headers, n, deadline, results[i]))
        for i, n in enumerate(per_client)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=spec["seconds"] + 30)
    wall = time.perf_counter() - started
    flat = [r for rs in results for r in rs]
    queue.put({"wall": wall, "latencies": [r[0] for r in flat], "statuses": [r[1] for r in flat]})


def measure(port: int, path: str, body: str, headers: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Run the load in a separate process (so the client does not share the server's interpreter)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    spec = {
        "port": port,
        "path": path,
        "body": body,
        "headers": headers,
        "clients": args.clients,
        "requests": args.requests,
        "seconds": args.seconds,
        "warmup": args.warmup,
    }
    proc = ctx.Process(target=drive, args=(spec, queue))
    proc.start()
    raw = queue.get(timeout=args.seconds + 120)
    proc.join(timeout=30)
    lat = np.asarray(raw["latencies"]) * 1000
    ok = sum(1 for s in raw["statuses"] if s == 200)
    return {
        "requests": len(lat),
        "errors": len(lat) - ok,
        "seconds": round(raw["wall"], 2),
        "requests_per_s": round(len(lat) / raw["wall"], 1) if raw["wall"] else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


# ------------------------------------------------------------------------------------- the bare app


def bare_app(workspace: str, name: str, version: str, port: int) -> None:  # pragma: no cover - subprocess
    """A minimal FastAPI app calling the same estimator directly: no auth, no validation, no lineage."""
    import mlflow
    import uvicorn

    mlflow.set_tracking_uri(f"sqlite:///{Path(workspace).resolve() / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    cols = model.metadata.get_input_schema().input_names()
    raw = model.get_raw_model()
    if hasattr(raw, "booster_"):  # the same call as goldgate's: one thread per prediction
        booster = raw.booster_

        def predict(x: np.ndarray) -> np.ndarray:
            return booster.predict(x, num_threads=1)
    else:
        predict = raw.predict
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict_rows(request: Request) -> dict[str, Any]:
        rows = (await request.json())["rows"]
        x = np.array([[r[c] for c in cols] for r in rows], dtype=np.float64)
        return {"predictions": predict(x).tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ------------------------------------------------------------------------------------------- workspace


def ensure_model(workspace: Path, usecase: str) -> dict[str, Any]:
    """The champion of the use case in ``workspace``, training the whole loop first when there is none."""
    from goldgate.context import Context
    from goldgate.registry import CHAMPION, alias_version
    from goldgate.runner import run_pipeline
    from goldgate.settings import load_settings
    from goldgate.usecase import load_usecase

    ctx = Context(load_settings(workspace=workspace), load_usecase(usecase))
    ctx.mlflow_client()
    name = ctx.usecase.models.registered_name
    if alias_version(name, CHAMPION) is None:
        log.info("no champion in %s: running the %s loop first", workspace, usecase)
        run_pipeline(ctx)
    champion = alias_version(name, CHAMPION)
    if champion is None:
        raise SystemExit(f"the gate promoted no model in {workspace}: nothing to serve")
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{name}/{champion.version}")
    inputs = model.metadata.get_input_schema().input_names()
    raw = model.get_raw_model()
    feats = ctx.lake.read(ctx.usecase.tables.features).to_pandas()
    rows = feats.dropna(subset=inputs)[inputs].tail(100)
    records = json.loads(rows.to_json(orient="records"))
    return {
        "name": name,
        "version": str(champion.version),
        "kind": type(raw).__name__,
        "n_estimators": getattr(raw, "n_estimators", None),
        "inputs": inputs,
        "records": records,
    }


# -------------------------------------------------------------------------------------------- report


def markdown(result: dict[str, Any]) -> str:
    m, runs = result["model"], result["runs"]
    lines = [
        START,
        "## Serving",
        "",
        f"Measured {result['measured_at']} with `.venv/bin/python benchmarks/serving.py --workspace "
        f"{result['args']['workspace_label']}` on {result['machine']}. Model: `{m['name']}` v{m['version']} "
        f"({m['kind']}, {m['n_estimators']} trees, {len(m['inputs'])} inputs). Load: {result['args']['clients']} "
        f"concurrent keep-alive clients in a separate process on 127.0.0.1, {result['args']['requests']} requests "
        f"per scenario or {result['args']['seconds']} s, whichever comes first, after "
        f"{result['args']['warmup']} warm-up requests; one server runs at a time.",
        "",
        "| server | rows/request | requests | errors | p50 ms | p95 ms | p99 ms | requests/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['server']} | {r['rows']} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['p99_ms']} | {r['requests_per_s']} |"
        )
    lines += ["", "| aim | rows/request | measured | met |", "|---|---:|---:|---|"]
    for a in result["aims"]:
        lines.append(f"| {a['aim']} | {a['rows']} | {a['measured']} | {'yes' if a['met'] else '**no**'} |")
    lines += [
        "",
        "`goldgate` runs with an API key, strict validation of every row against the model signature and lineage "
        "in every response. `mlflow` is `mlflow models serve --env-manager local` on the same registry version "
        "(`/invocations`, `dataframe_split`). `bare` is a FastAPI app that calls the same estimator with no auth, "
        "no validation and no lineage. The client shares the 2 cores with the server, and on a shared machine "
        "repeated runs differ by up to about 25 %: compare servers within one run. Raw figures: "
        f"`benchmarks/results/{result['file']}`.",
        END,
    ]
    return "\n".join(lines)


def aims(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["server"], r["rows"]): r for r in runs}
    out = []
    for rows in (1, 100):
        # A run with failed requests is no measurement: it takes part in no comparison.
        g, m, b = (by.get((name, rows)) for name in ("goldgate", "mlflow", "bare"))
        g, m, b = (r if r and r["errors"] == 0 else None for r in (g, m, b))
        if g and m:
            ratio = g["requests_per_s"] / m["requests_per_s"] if m["requests_per_s"] else float("inf")
            out.append({"aim": "goldgate ≥ 10× mlflow requests/s", "rows": rows, "measured": f"{ratio:.1f}×"})
            out[-1]["met"] = ratio >= 10
        if g and b:
            share = g["requests_per_s"] / b["requests_per_s"] if b["requests_per_s"] else 0.0
            out.append({"aim": "goldgate ≥ 80 % of bare requests/s", "rows": rows, "measured": f"{share:.0%}"})
            out[-1]["met"] = share >= 0.8
        if g and rows == 1:
            out.append({"aim": "goldgate p99 < 10 ms", "rows": 1, "measured": f"{g['p99_ms']} ms"})
            out[-1]["met"] = g["p99_ms"] < 10
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--usecase", default="fx")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=4000, help="Requests per scenario (upper bound).")
    parser.add_argument("--seconds", type=float, default=20.0, help="Duration per scenario (upper bound).")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--servers", default="goldgate,mlflow,bare")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--bare-app", nargs=3, metavar=("NAME", "VERSION", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.bare_app:
        bare_app(str(args.workspace), args.bare_app[0], args.bare_app[1], int(args.bare_app[2]))
        return

    workspace = args.workspace.resolve()
    model = ensure_model(workspace, args.usecase)
    records = model["records"]
    key = secrets.token_urlsafe(24)
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    # mlflow models serve execs `uvicorn` from PATH: the venv's bin goes first.
    path_var = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    base_env = {**os.environ, "PATH": path_var, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": uri}
    logs = workspace / "benchmark-logs"  # server output stays out of the repository
    logs.mkdir(parents=True, exist_ok=True)
    payloads = {n: records[:n] for n in (1, 100)}
    runs: list[dict[str, Any]] = []
    for name in args.servers.split(","):
        port = free_port()
        if name == "goldgate":
            cmd = [str(BIN / "goldgate"), "serve", "--usecase", args.usecase, "--workspace", str(workspace)]
            cmd += ["--port", str(port)]
            env = {**base_env, "GOLDGATE_API_KEYS": json.dumps([key]), "GOLDGATE_ENV": "dev"}
            path, ready, headers = "/v1/predict", "/readyz", {"X-API-Key": key}

            def body(rows: list[dict[str, Any]]) -> str:
                return json.dumps({"rows": rows})
        elif name == "mlflow":
            cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{model['name']}@champion"]
            cmd += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
            env, path, ready, headers = base_env, "/invocations", "/ping", {}

            def body(rows: list[dict[str, Any]]) -> str:
                cols = model["inputs"]
                return json.dumps({"dataframe_split": {"columns": cols, "data": [[r[c] for c in cols] for r in rows]}})
        elif name == "bare":
            cmd = [sys.executable, __file__, "--workspace", str(workspace), "--bare-app", model["name"]]
            cmd += [model["version"], str(port)]
            env, path, ready, headers = base_env, "/predict", "/ping", {}

            def body(rows: list[dict[str, Any]]) -> str:
                return json.dumps({"rows": rows})
        else:
            raise SystemExit(f"unknown server {name}")
        with server(cmd, env, port, ready, logs / f"{name}.log", args.ready_timeout):
            for n, rows in payloads.items():
                result = measure(port, path, body(rows), headers, args)
                runs.append({"server": name, "rows": n, **result})
                log.info("%s %d row(s): %s", name, n, result)
    stamp = datetime.now(UTC)
    file = f"serving-{stamp:%Y%m%dT%H%M%SZ}.json"
    result = {
        "measured_at": stamp.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
        "model": {k: v for k, v in model.items() if k != "records"},
        "args": {
            "workspace_label": "DIR",
            "clients": args.clients,
            "requests": args.requests,
            "seconds": args.seconds,
            "warmup": args.warmup,
        },
        "runs": runs,
        "aims": aims(runs),
        "file": file,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / file).write_text(json.dumps(result, indent=2) + "\n")
    write_section(args.markdown, START, END, markdown(result))
    log.info("wrote %s and the Serving section of %s", args.results_dir / file, args.markdown)
    for a in result["aims"]:
        log.info("%s (%d row%s): %s — %s", a["aim"], a["rows"], "" if a["rows"] == 1 else "s", a["measured"], a["met"])


if __name__ == "__main__":
    main()
