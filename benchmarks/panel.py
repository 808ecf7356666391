"""Benchmark: per-entity lag and rolling-window features on a long panel, goldgate vs the tools users would pick.

    .venv/bin/python benchmarks/panel.py --sizes 100000 1000000 10000000 --repeat 3
    .venv/bin/python benchmarks/panel.py --impls duckdb goldgate_fx goldgate_engine --tag engine   # engine vs fx step
    .venv/bin/python benchmarks/panel.py --sizes 100000000 --repeat 1 --impls goldgate_fx --tag 100m   # out of core

The panel is synthetic: ``rows / 5000`` entities x 5,000 business days (10M rows = 2,000 entities x 5,000 days),
columns ``entity, date, price, x`` (``x`` a daily return), written to Parquet in date-major order, the way a
daily feed accumulates. The reference transforms, per entity ordered by date: ``lag1``, ``lag5``, rolling mean and
sample standard deviation over the last 5 / 20 / 60 rows (NULL until the window is full), and as target the
sample standard deviation of the next 5 rows. Implementations, Parquet in and Parquet out unless said otherwise:

* ``pandas``: ``read_parquet``, ``sort_values``, ``groupby().shift`` / ``groupby().rolling()``, ``to_parquet``;
* ``polars``: ``scan_parquet`` ... ``over("entity")`` ... ``sink_parquet`` (lazy);
* ``duckdb``: one SQL statement with window functions, ``COPY ... TO`` Parquet, DuckDB's default settings;
* ``goldgate_ref``: the same reference spec written in Ibis, read from and merged into Delta through
  ``goldgate.lake.Lake`` (Delta in, Delta out, goldgate's DuckDB connection and memory ceiling);
* ``goldgate_fx``: the hard-wired fx feature code that preceded the declarative engine, kept frozen in
  ``benchmarks/fx_reference.py``, on the panel loaded as the gold returns table of an fx use case: it computes
  goldgate's fx feature set, not the reference one (see the doc);
* ``goldgate_engine``: the same gold table featurized by goldgate's ``features`` step, the declarative engine
  (``goldgate.steps.features``), with the fx feature set the bundled fx.yaml declares: the same feature values as
  ``goldgate_fx``.

Every implementation x size runs in a fresh subprocess, ``--repeat`` times; reported: median seconds from the
read to the written output (interpreter start-up and imports excluded, the process's own wall also recorded),
rows/s and the process's peak RSS. After the runs the outputs are compared on a sample of entities (the engine's
fx features with the hard-wired step's, column by column). Writes
``benchmarks/results/panel.json`` (or ``panel-<tag>.json``), the plot ``docs/img/panel-seconds.png`` and the
``panel`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from report import load_text, log_log_plot, start_result  # benchmarks/ is on sys.path when a benchmark runs as a script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "img" / "panel-seconds.png"
START, END = "<!-- panel:start -->", "<!-- panel:end -->"
START_100M, END_100M = "<!-- panel-100m:start -->", "<!-- panel-100m:end -->"

DAYS = 5000
LAGS = (1, 5)
WINDOWS = (5, 20, 60)
HORIZON = 5
TARGET = f"target_fwd_std_{HORIZON}"
REF_COLUMNS = [
    *(f"lag{k}" for k in LAGS),
    *(f"{stat}_{n}" for n in WINDOWS for stat in ("mean", "std")),
    TARGET,
]
IMPLS = ("pandas", "polars", "duckdb", "goldgate_ref", "goldgate_fx", "goldgate_engine")
LABELS = {
    "pandas": "pandas groupby/rolling",
    "polars": "Polars lazy",
    "duckdb": "DuckDB SQL (bare)",
    "goldgate_ref": "goldgate lake, reference spec in Ibis",
    "goldgate_fx": "goldgate pre-engine fx step (fx set, frozen)",
    "goldgate_engine": "goldgate declarative engine (fx set in YAML)",
}
GOLD = "gold.fx_returns"
FX_FEATURES = "gold.fx_features"
ENGINE_FEATURES = "gold.fx_engine_features"
REF_TABLE = "gold.panel_features"
OUTPUT_TABLES = {"goldgate_ref": REF_TABLE, "goldgate_fx": FX_FEATURES, "goldgate_engine": ENGINE_FEATURES}
USECASE_FILES = {"goldgate_engine": "fx_panel_engine.yaml"}  # the others run the bundled fx use case's copy
FX_USECASE_FILE = "fx_panel_bench.yaml"
ENGINE_YAML = ROOT / "src" / "goldgate" / "usecases" / "fx.yaml"  # fx, pure YAML on the declarative engine
# The gold returns table load_gold writes: entity, time, then the value columns.
GOLD_ENTITY, GOLD_TIME = "currency", "date"
# Aim: the declarative engine costs no more than the hard-wired step (time and peak memory, at the largest size).
ENGINE_AIM = 1.1
CHILD_TIMEOUT = 3600


# ---------------------------------------------------------------------------------------------------- data


def entity_codes(n: int) -> list[str]:
    return [f"E{i:05d}" for i in range(n)]


def business_days(n: int, start: date = date(2000, 1, 3)) -> list[date]:
    days: list[date] = []
    d = start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def write_panel(path: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """Write ``rows`` (= entities x 5,000 days) in date-major order, a block of days at a time (bounded memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    entities = max(rows // DAYS, 1)
    rng = np.random.default_rng(seed)
    codes = pa.array(entity_codes(entities), pa.string())
    scale = rng.uniform(0.002, 0.02, entities)
    level = np.log(rng.uniform(0.5, 150, entities))
    days = business_days(DAYS)
    block = max(1, 5_000_000 // entities)
    schema = pa.schema([("entity", pa.string()), ("date", pa.date32()), ("price", pa.float64()), ("x", pa.float64())])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for first in range(0, DAYS, block):
            span = days[first : first + block]
            x = rng.normal(0.0, 1.0, (len(span), entities)) * scale
            cum = level + np.cumsum(x, axis=0)
            level = cum[-1]
            writer.write_table(
                pa.table(
                    {
                        "entity": pa.concat_arrays([codes] * len(span)),
                        "date": pa.array(np.repeat(np.array(span, dtype="datetime64[D]"), entities), pa.date32()),
                        "price": pa.array(np.exp(cum).ravel()),
                        "x": pa.array(x.ravel()),
                    },
                    schema=schema,
                )
            )
    tmp.replace(path)
    return {"entities": entities, "days": DAYS, "rows": entities * DAYS}


def _versus(data: dict[str, Any]) -> dict[str, Any]:
    """The one ``versus`` op of an fx use case's features (the cross-rate reference)."""
    versus = [d for d in data["features"]["derive"] if d["op"] == "versus"]
    if len(versus) != 1:
        raise ValueError(f"{ENGINE_YAML}: expected one versus op, found {len(versus)}")
    return dict(versus[0])


def fx_usecase(workspace: Path, reference: str) -> Path:
    """The bundled fx use case, renamed, with the panel's first entity as the cross-rate reference."""
    import yaml

    data = yaml.safe_load(ENGINE_YAML.read_text(encoding="utf-8"))
    data["name"] = "fx_panel_bench"
    data["features"]["derive"] = [
        {**d, "entity": reference} if d["op"] == "versus" else d for d in data["features"]["derive"]
    ]
    path = workspace / FX_USECASE_FILE
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def engine_usecase(workspace: Path, reference: str) -> Path:
    """The bundled fx.yaml on the panel: tables in the workspace, the panel's keys, ``versus`` a panel entity.

    Gold is the table ``load_gold`` writes (``gold.fx_returns``: currency, date, rate, log_return); the engine writes
    its features to a table of its own so that they can be compared with the hard-wired step's.
    """
    import yaml

    data = yaml.safe_load(ENGINE_YAML.read_text(encoding="utf-8"))
    data["name"] = "fx_panel_engine"
    data["tables"] = {
        "bronze": "bronze.fx_engine_raw",
        "silver": "silver.fx_engine_rates",
        "gold": GOLD,
        "features": ENGINE_FEATURES,
        "predictions": "gold.fx_engine_predictions",
        "quarantine": "quarantine.fx_engine_rates",
    }
    roles = {c.get("role"): name for name, c in data["columns"].items()}
    if (roles.get("entity"), roles.get("time")) != (GOLD_ENTITY, GOLD_TIME):
        raise ValueError(
            f"{ENGINE_YAML}: entity '{roles.get('entity')}' and time '{roles.get('time')}' are not the gold table's "
            f"keys ({GOLD_ENTITY}, {GOLD_TIME})"
        )
    _versus(data)  # exactly one
    data["features"]["derive"] = [
        {**d, "entity": reference} if d["op"] == "versus" else d for d in data["features"]["derive"]
    ]
    path = workspace / USECASE_FILES["goldgate_engine"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_gold(panel: Path, workspace: Path, memory_limit: str | None) -> None:
    """The panel as goldgate's gold returns table (currency, date, rate, log_return), through the real Lake."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from goldgate.engine import connect
    from goldgate.lake import Lake
    from goldgate.settings import load_settings

    settings = load_settings(workspace=workspace, duckdb_memory_limit=memory_limit)
    lake = Lake(settings.lake_dir, connect(settings))
    source = ds.dataset(panel).scanner(columns=["entity", "date", "price", "x"], batch_size=1 << 20)
    schema = pa.schema(
        [("currency", pa.string()), ("date", pa.date32()), ("rate", pa.float64()), ("log_return", pa.float64())]
    )
    batches = (pa.RecordBatch.from_arrays(b.columns, schema=schema) for b in source.to_batches())
    lake.write(GOLD, pa.RecordBatchReader.from_batches(schema, batches))


# ---------------------------------------------------------------------------------------------------- implementations


def run_pandas(panel: Path, out: Path) -> int:
    import pandas as pd

    df = pd.read_parquet(panel)
    df = df.sort_values(["entity", "date"]).reset_index(drop=True)
    g = df.groupby("entity", sort=False)["x"]
    for k in LAGS:
        df[f"lag{k}"] = g.shift(k)
    for n in WINDOWS:
        rolling = g.rolling(n)
        df[f"mean_{n}"] = rolling.mean().reset_index(level=0, drop=True)
        df[f"std_{n}"] = rolling.std().reset_index(level=0, drop=True)
    fwd = g.rolling(HORIZON).std().reset_index(level=0, drop=True)
    df[TARGET] = fwd.groupby(df["entity"], sort=False).shift(-HORIZON)
    df.to_parquet(out, index=False)
    return len(df)


def run_polars(panel: Path, out: Path) -> int:
    import polars as pl

    x = pl.col("x")
    exprs = [x.shift(k).over("entity").alias(f"lag{k}") for k in LAGS]
    for n in WINDOWS:
        exprs.append(x.rolling_mean(n).over("entity").alias(f"mean_{n}"))
        exprs.append(x.rolling_std(n).over("entity").alias(f"std_{n}"))
    exprs.append(x.rolling_std(HORIZON).shift(-HORIZON).over("entity").alias(TARGET))
    pl.scan_parquet(panel).sort("entity", "date").with_columns(exprs).sink_parquet(out)
    return int(pl.scan_parquet(out).select(pl.len()).collect().item())


def reference_sql(source: str) -> str:
    """The reference spec as one DuckDB statement (window functions, full windows only)."""
    part = "PARTITION BY entity ORDER BY date"
    cols = [f"lag(x, {k}) OVER ({part}) AS lag{k}" for k in LAGS]
    for n in WINDOWS:
        frame = f"({part} ROWS BETWEEN {n - 1} PRECEDING AND CURRENT ROW)"
        full = f"count(x) OVER {frame} = {n}"
        cols.append(f"CASE WHEN {full} THEN avg(x) OVER {frame} END AS mean_{n}")
        cols.append(f"CASE WHEN {full} THEN stddev_samp(x) OVER {frame} END AS std_{n}")
    fwd = f"({part} ROWS BETWEEN 1 FOLLOWING AND {HORIZON} FOLLOWING)"
    cols.append(f"CASE WHEN count(x) OVER {fwd} = {HORIZON} THEN stddev_samp(x) OVER {fwd} END AS {TARGET}")
    return f"SELECT entity, date, price, x, {', '.join(cols)} FROM {source}"


def run_duckdb(panel: Path, out: Path) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute(f"COPY ({reference_sql(f'read_parquet({str(panel)!r})')}) TO {str(out)!r} (FORMAT parquet)")
    return int(con.execute(f"SELECT count(*) FROM read_parquet({str(out)!r})").fetchone()[0])  # type: ignore[index]


def reference_ibis(returns: Any) -> Any:
    """The reference spec in Ibis over goldgate's gold returns table (entity ``currency``, value ``log_return``)."""
    import ibis

    x = returns.log_return
    order = ibis.window(group_by="currency", order_by="date")
    cols: dict[str, Any] = {f"lag{k}": x.lag(k).over(order) for k in LAGS}
    for n in WINDOWS:
        w = ibis.window(group_by="currency", order_by="date", rows=(-(n - 1), 0))
        full = x.count().over(w) == n
        cols[f"mean_{n}"] = ibis.ifelse(full, x.mean().over(w), ibis.null("float64"))
        cols[f"std_{n}"] = ibis.ifelse(full, x.std().over(w), ibis.null("float64"))
    fwd = ibis.window(group_by="currency", order_by="date", rows=(1, HORIZON))
    cols[TARGET] = ibis.ifelse(x.count().over(fwd) == HORIZON, x.std().over(fwd), ibis.null("float64"))
    return returns.select("currency", "date", "rate", "log_return", **cols)


def goldgate_context(workspace: Path, memory_limit: str | None, impl: str = "goldgate_fx") -> Any:
    from goldgate.context import Context
    from goldgate.settings import load_settings
    from goldgate.usecase import load_usecase

    settings = load_settings(workspace=workspace, duckdb_memory_limit=memory_limit)
    return Context(settings, load_usecase(workspace / USECASE_FILES.get(impl, FX_USECASE_FILE)))


def run_goldgate_ref(ctx: Any) -> int:
    lake = ctx.lake
    version = lake.version(GOLD)
    table = reference_ibis(lake.read(GOLD, version))
    return int(lake.merge(REF_TABLE, table, keys=["currency", "date"], inputs={GOLD: version}).inserted)


def run_goldgate_fx(ctx: Any) -> int:
    """The frozen pre-engine fx features step (``benchmarks/fx_reference.py``), with the use case's cross reference."""
    from fx_reference import FxSpec, features_step

    versus = next(d for d in ctx.usecase.features.derive if d.op == "versus")
    spec = FxSpec(cross_reference=str(versus.entity))
    return int(features_step(ctx.lake, GOLD, FX_FEATURES, spec)["inserted"])


def run_goldgate_engine(ctx: Any) -> int:
    """The ``features`` step as ``goldgate run`` calls it: the declarative engine on the use case's YAML."""
    from goldgate.dag import get_step
    from goldgate.runner import run_step

    return int(run_step(ctx, get_step("features"))["inserted"])


def _status_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith(field)).split()[1]) / 1024


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``: its own address space, not the parent's it was forked from)."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def child(args: argparse.Namespace) -> None:  # pragma: no cover - runs in the subprocess
    """One timed run; prints ``RESULT {json}``."""
    import resource

    out: dict[str, Any] = {}
    if args.impl.startswith("goldgate"):
        import goldgate.pipeline  # noqa: F401  start-up imports are not the step's cost

        if args.impl == "goldgate_engine":
            from goldgate.data import features as _dsl  # noqa: F401  the engine's compiler, imported lazily by its step

        ctx = goldgate_context(args.workspace, args.memory_limit, args.impl)
        ctx.lake  # noqa: B018  opens the DuckDB connection (settings, spill folder) before the clock starts
        out["start_rss_mb"] = rss_mb()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        runner = {"goldgate_ref": run_goldgate_ref, "goldgate_fx": run_goldgate_fx}.get(args.impl, run_goldgate_engine)
        rows = runner(ctx)
        out["duckdb_memory_limit"] = ctx.settings.duckdb_memory_limit
    else:
        if args.impl == "pandas":
            import pandas  # noqa: F401
        elif args.impl == "polars":
            import polars  # noqa: F401
        else:
            import duckdb  # noqa: F401
        run = {"pandas": run_pandas, "polars": run_polars, "duckdb": run_duckdb}[args.impl]
        out["start_rss_mb"] = rss_mb()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        rows = run(args.panel, args.out)
    out["seconds"] = time.perf_counter() - started
    end = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime
    out["rows"] = rows
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------------------------------------------- driver


def clear_outputs(workspace: Path, impl: str) -> None:
    """Remove the table and spill a goldgate run writes, so every repeat builds from scratch."""
    layer, table = OUTPUT_TABLES[impl].split(".")
    shutil.rmtree(workspace / "lake" / layer / table, ignore_errors=True)
    shutil.rmtree(workspace / ".duckdb_tmp", ignore_errors=True)


def spill_bytes(workspace: Path) -> int:
    """Bytes in DuckDB's spill folder under the workspace (files may vanish while they are counted)."""
    total = 0
    for f in (workspace / ".duckdb_tmp").glob("**/*"):
        try:
            total += f.stat().st_size if f.is_file() else 0
        except FileNotFoundError:
            continue
    return total


def run_child(
    impl: str, panel: Path, out: Path, workspace: Path, memory_limit: str | None, timeout: float
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "child", "--impl", impl, "--panel", str(panel), "--out", str(out)]
    cmd += ["--workspace", str(workspace)]
    if memory_limit:
        cmd += ["--memory-limit", memory_limit]
    if impl.startswith("goldgate"):
        clear_outputs(workspace, impl)
    elif out.exists():
        out.unlink()
    load = os.getloadavg()[0]
    spill = 0
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True)
        try:
            # DuckDB removes its spill files when done: the folder is watched while the child runs.
            while proc.poll() is None:
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"{impl} did not finish within {timeout:.0f} s")
                if impl.startswith("goldgate"):
                    spill = max(spill, spill_bytes(workspace))
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        wall = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        out_text, err_text = stdout.read(), stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} failed ({proc.returncode}):\n{err_text[-3000:]}")
    line = next(x for x in reversed(out_text.splitlines()) if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["process_seconds"] = wall
    result["load_1min_before"] = load
    result["spill_mb_peak"] = spill / 1e6
    return result


def read_sample(impl: str, out: Path, workspace: Path, entities: list[str]) -> Any:
    """The sample entities' rows of one implementation's output as pandas, sorted, entity column ``entity``."""
    import duckdb

    con = duckdb.connect()
    names = ", ".join(repr(e) for e in entities)
    if impl.startswith("goldgate"):
        from deltalake import DeltaTable

        layer, name = OUTPUT_TABLES[impl].split(".")
        files = [u.removeprefix("file://") for u in DeltaTable(str(workspace / "lake" / layer / name)).file_uris()]
        sql = f"SELECT * FROM read_parquet({files!r}) WHERE currency IN ({names})"
        frame = con.execute(sql).df().rename(columns={"currency": "entity", "log_return": "x", "ret": "x"})
    else:
        frame = con.execute(f"SELECT * FROM read_parquet({str(out)!r}) WHERE entity IN ({names})").df()
    return frame.sort_values(["entity", "date"]).reset_index(drop=True)


def fx_reference(x: Any, annualization: int = 252) -> dict[str, Any]:
    """goldgate's fx realized volatilities and target recomputed with NumPy for one entity's returns."""
    import numpy as np

    out: dict[str, Any] = {}
    sq = x**2
    for n in WINDOWS:
        rv = np.full(len(x), np.nan)
        for i in range(n - 1, len(x)):
            rv[i] = math.sqrt(sq[i - n + 1 : i + 1].mean() * annualization)
        out[f"rv_{n}"] = rv
    fwd = np.full(len(x), np.nan)
    for i in range(len(x) - HORIZON):
        fwd[i] = math.sqrt(sq[i + 1 : i + 1 + HORIZON].mean() * annualization)
    out["target_rv_5d"] = fwd
    return out


def verify(impls: list[str], outs: dict[str, Path], workspace: Path, entities: int) -> dict[str, Any]:
    """Largest absolute difference per implementation against the pandas (or first) output on a sample."""
    import numpy as np

    sample = sorted({entity_codes(entities)[i] for i in (0, entities // 2, entities - 1)})
    frames = {impl: read_sample(impl, outs[impl], workspace, sample) for impl in impls}
    refs = [i for i in impls if i not in ("goldgate_fx", "goldgate_engine")]
    report: dict[str, Any] = {"entities": sample, "rows": 0, "max_abs_diff": {}, "reference": None}
    if refs:
        base_name = "pandas" if "pandas" in refs else refs[0]
        base = frames[base_name]
        report["reference"], report["rows"] = base_name, len(base)
        for impl in refs:
            other = frames[impl]
            if len(other) != len(base) or list(other["date"].astype(str)) != list(base["date"].astype(str)):
                report["max_abs_diff"][impl] = "row mismatch"
                continue
            worst = 0.0
            for col in REF_COLUMNS:
                a, b = base[col].to_numpy(float), other[col].to_numpy(float)
                if not np.array_equal(np.isnan(a), np.isnan(b)):
                    worst = math.inf
                    break
                worst = max(worst, float(np.nanmax(np.abs(a - b))) if (~np.isnan(a)).any() else 0.0)
            report["max_abs_diff"][impl] = worst
    for impl in ("goldgate_fx", "goldgate_engine"):
        if impl in frames:
            report["max_abs_diff"][impl] = fx_numpy_diff(frames[impl])
    if "goldgate_fx" in frames:
        fx = frames["goldgate_fx"]
        report["goldgate_fx_check"] = (
            "ret_lag1, ret_lag5, rv_5/20/60, target_rv_5d, day_of_week and month against NumPy and the dates"
        )
        report["goldgate_fx_columns"] = [c for c in fx.columns if c not in ("entity", "date", "rate", "x")]
        if "goldgate_engine" in frames:
            report["engine_vs_fx"] = engine_vs_fx(frames["goldgate_engine"], fx)
    return report


def fx_numpy_diff(frame: Any) -> float:
    """Largest absolute difference of an fx feature output from ``fx_reference`` and the dates (inf: NULLs differ)."""
    import numpy as np

    worst = 0.0
    for _, rows in frame.groupby("entity"):
        x = rows["x"].to_numpy(float)
        expected = fx_reference(x)
        expected["ret_lag1"] = np.concatenate([[np.nan], x[:-1]])
        expected["ret_lag5"] = np.concatenate([[np.nan] * 5, x[:-5]])
        days = [d if isinstance(d, date) else d.date() for d in rows["date"]]
        expected["day_of_week"] = np.array([d.weekday() for d in days], dtype=float)
        expected["month"] = np.array([d.month for d in days], dtype=float)
        for col, want in expected.items():
            got = rows[col].to_numpy(float)
            if not np.array_equal(np.isnan(got), np.isnan(want)):
                return math.inf
            worst = max(worst, float(np.nanmax(np.abs(got - want))))
    return worst


def engine_vs_fx(engine: Any, fx: Any) -> dict[str, Any]:
    """The engine's fx features against the hard-wired step's on the same rows: every column, NULLs included."""
    import numpy as np

    own = [c for c in fx.columns if c not in ("entity", "date")]
    out: dict[str, Any] = {"rows": len(fx), "columns": own, "max_abs_diff": {}}
    if sorted(engine.columns) != sorted(fx.columns):
        out["error"] = f"columns differ: engine {sorted(engine.columns)}, fx {sorted(fx.columns)}"
        return out
    keys = ["entity", "date"]
    if len(engine) != len(fx) or not engine[keys].astype(str).equals(fx[keys].astype(str)):
        out["error"] = "row mismatch"
        return out
    for col in own:
        a, b = engine[col], fx[col]
        if not np.array_equal(a.isna().to_numpy(), b.isna().to_numpy()):
            out["max_abs_diff"][col] = "NULLs differ"
        elif col == "target_end":
            out["max_abs_diff"][col] = 0.0 if a.astype(str).equals(b.astype(str)) else "dates differ"
        else:
            x, y = a.to_numpy(float), b.to_numpy(float)
            out["max_abs_diff"][col] = float(np.nanmax(np.abs(x - y))) if (~np.isnan(x)).any() else 0.0
    diffs = list(out["max_abs_diff"].values())
    out["max"] = max(diffs) if all(isinstance(d, float) for d in diffs) else "mismatch"
    return out


def machine() -> dict[str, Any]:
    import duckdb
    import ibis
    import pandas as pd
    import polars as pl

    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {
        "cpus": os.cpu_count(),
        "ram_gb": round(int(mem.split()[1]) / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "pandas": pd.__version__,
            "polars": pl.__version__,
            "duckdb": duckdb.__version__,
            "ibis": ibis.__version__,
        },
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    scratch: Path = args.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    result = start_result("panel", machine(), repeat=args.repeat, memory_limit=args.memory_limit, sizes=[])
    for size in args.sizes:
        panel = scratch / f"panel_{size}.parquet"
        if not panel.exists():
            print(f"writing {panel}", flush=True)
            write_panel(panel, size)
        entities = max(size // DAYS, 1)
        workspace = scratch / f"ws_{size}"
        if any(i.startswith("goldgate") for i in args.impls) and not (workspace / "lake" / "gold").exists():
            shutil.rmtree(workspace, ignore_errors=True)
            workspace.mkdir(parents=True)
            fx_usecase(workspace, entity_codes(1)[0])
            print(f"loading {panel.name} into {workspace}/lake as {GOLD}", flush=True)
            load_gold(panel, workspace, args.memory_limit)
        if "goldgate_engine" in args.impls:
            engine_usecase(workspace, entity_codes(1)[0])
        entry: dict[str, Any] = {"rows": entities * DAYS, "entities": entities, "days": DAYS, "impls": {}}
        outs = {impl: scratch / f"out_{impl}_{size}.parquet" for impl in args.impls}
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in args.impls}
        # Round robin (every implementation once, then again): a burst of load on the shared machine then hits
        # all of them rather than all the repeats of one.
        for _ in range(args.repeat):
            for impl in args.impls:
                run = run_child(impl, panel, outs[impl], workspace, args.memory_limit, args.timeout)
                runs[impl].append(run)
                print(
                    f"{size:>11,} {impl:<15} {run['seconds']:8.2f} s {run['peak_rss_mb']:8.0f} MB "
                    f"(load {run['load_1min_before']:.2f})",
                    flush=True,
                )
        for impl, done in runs.items():
            seconds = statistics.median(r["seconds"] for r in done)
            entry["impls"][impl] = {
                "seconds": seconds,
                "runs": [round(r["seconds"], 3) for r in done],
                "cpu_seconds": statistics.median(r["cpu_seconds"] for r in done),
                "process_seconds": statistics.median(r["process_seconds"] for r in done),
                "rows_per_second": entry["rows"] / seconds,
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in done),
                "peak_rss_mb_max": max(r["peak_rss_mb"] for r in done),
                "start_rss_mb": statistics.median(r["start_rss_mb"] for r in done),
                "load_1min": [round(r["load_1min_before"], 2) for r in done],
                "rows_out": done[-1]["rows"],
                **({"spill_mb": max(r["spill_mb_peak"] for r in done)} if impl.startswith("goldgate") else {}),
                **({"duckdb_memory_limit": done[-1]["duckdb_memory_limit"]} if impl.startswith("goldgate") else {}),
            }
        if not args.no_verify:
            entry["verify"] = verify(list(args.impls), outs, workspace, entities)
            print(json.dumps(entry["verify"], default=str), flush=True)
        result["sizes"].append(entry)
    result["load_average_end"] = os.getloadavg()
    result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    c = sub.add_parser("child")
    c.add_argument("--impl", choices=IMPLS, required=True)
    c.add_argument("--panel", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--workspace", type=Path, required=True)
    c.add_argument("--memory-limit", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "goldgate-panel")
    parser.add_argument("--memory-limit", default=None, help="goldgate's duckdb_memory_limit (default: Settings')")
    parser.add_argument(
        "--tag",
        default=None,
        help="write results/panel-<tag>.json and the 100M section (a tag starting 'engine': listed in the panel one)",
    )
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument(
        "--timeout", type=float, default=CHILD_TIMEOUT, help="seconds per child run before it is killed"
    )
    parser.add_argument("--no-doc", action="store_true", help="write the JSON only")
    parser.add_argument("--render", action="store_true", help="only rewrite the doc section from the saved JSON")
    args = parser.parse_args()
    if args.command == "child":
        child(args)
        return
    name = f"panel-{args.tag}.json" if args.tag else "panel.json"
    if args.render:
        result = json.loads((RESULTS / name).read_text())
    else:
        result = bench(args)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / name).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.no_doc:
        return
    sys.path.insert(0, str(HERE))
    from report import write_section

    if args.tag and args.tag.startswith("engine"):
        # A run of the engine against the fx step alone: listed under the main panel table, which is re-rendered.
        write_section(DOC, START, END, render(json.loads((RESULTS / "panel.json").read_text())))
    elif args.tag:
        write_section(DOC, START_100M, END_100M, render_large(result))
    else:
        plot(result, PLOT)
        write_section(DOC, START, END, render(result))


# ---------------------------------------------------------------------------------------------------- report


def plot(result: dict[str, Any], path: Path) -> None:
    series = {
        LABELS[impl]: [(s["rows"], s["impls"][impl]["seconds"]) for s in result["sizes"] if impl in s["impls"]]
        for impl in IMPLS
    }
    title = f"Lag and rolling features per entity ({result['machine']['cpus']} CPUs)"
    log_log_plot(series, path, "rows (entities x 5,000 days)", "seconds, median (read to written output)", title)


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    ran = list(dict.fromkeys(i for s in result["sizes"] for i in s["impls"]))
    command = "benchmarks/panel.py" + ("" if set(ran) == set(IMPLS) else f" --impls {' '.join(ran)}")
    lines = [
        START,
        "## Feature engineering on a long panel: goldgate vs pandas, Polars and DuckDB",
        "",
        f"Measured {result['started_utc'].replace('T', ' ')[:16]} UTC with `.venv/bin/python {command}` on "
        f"{m['cpus']} CPUs, {m['ram_gb']} GB RAM, Python {m['python']}, pandas {m['versions']['pandas']}, Polars "
        f"{m['versions']['polars']}, DuckDB {m['versions']['duckdb']}, Ibis {m['versions']['ibis']} (load average at "
        f"start {load_text(result['load_average_start'])}, at end {load_text(result['load_average_end'])}). The panel: "
        "entities x 5,000 business days of a synthetic daily return `x`, Parquet in date-major order. Reference "
        "transforms per entity: lag 1 and 5, rolling mean and sample std over 5 / 20 / 60 rows (full windows only), "
        "target the sample std of the next 5 rows. Each implementation x size in a fresh process, median of "
        f"{result['repeat']} runs; seconds run from reading the input to the written output (imports excluded).",
        "",
        "| rows | implementation | seconds (runs) | CPU s | rows/s | peak RSS MiB (at start) | vs DuckDB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for size in result["sizes"]:
        duck = size["impls"].get("duckdb", {}).get("seconds")
        for impl in IMPLS:
            r = size["impls"].get(impl)
            if r is None:
                continue
            runs = "/".join(f"{s:.1f}" for s in r["runs"])
            ratio = f"{r['seconds'] / duck:.2f}×" if duck else "-"
            lines.append(
                f"| {size['rows']:,} | {LABELS[impl]} | {r['seconds']:.2f} ({runs}) | {r['cpu_seconds']:.1f} "
                f"| {r['rows_per_second']:,.0f} | {r['peak_rss_mb']:,.0f} ({r['start_rss_mb']:,.0f}) | {ratio} |"
            )
    lines += ["", "![seconds vs rows, log-log](img/panel-seconds.png)", ""]
    largest = result["sizes"][-1]
    duck = largest["impls"].get("duckdb")
    lines += ["| aim at the largest size | measured | met |", "|---|---:|---|"]
    for impl in ("goldgate_ref", "goldgate_fx", "goldgate_engine"):
        r = largest["impls"].get(impl)
        if r and duck:
            ratio = r["seconds"] / duck["seconds"]
            lines.append(
                f"| {LABELS[impl]} within 1.25× of bare DuckDB ({largest['rows']:,} rows) | {ratio:.2f}× | "
                f"{'yes' if ratio <= 1.25 else '**no**'} |"
            )
        if r:
            lines.append(
                f"| {LABELS[impl]} under 1 GiB peak ({largest['rows']:,} rows) | {r['peak_rss_mb']:,.0f} MiB | "
                f"{'yes' if r['peak_rss_mb'] < 1024 else '**no**'} |"
            )
    lines += [*engine_aims(largest), ""]
    lines += render_engine(result)
    verify = [s for s in result["sizes"] if "verify" in s]
    if verify:
        v = verify[-1]["verify"]
        fx_sets = ("goldgate_fx", "goldgate_engine")
        diffs = ", ".join(f"{LABELS[k]} {diff_text(d)}" for k, d in v["max_abs_diff"].items() if k not in fx_sets)
        numpy = ", ".join(f"{LABELS[k]} {diff_text(d)}" for k, d in v["max_abs_diff"].items() if k in fx_sets)
        text = f"Agreement on a sample ({', '.join(v['entities'])} at {verify[-1]['rows']:,} rows), largest absolute "
        parts = [f"difference from the {v['reference']} output: {diffs}"] if diffs else []
        if numpy:
            parts.append(f"for goldgate's fx set, {v.get('goldgate_fx_check', '-')}: {numpy}")
        lines += [text + "; ".join(parts) + ".", ""]
    limit = next(
        (r.get("duckdb_memory_limit") for s in result["sizes"] for i, r in s["impls"].items() if i.startswith("gold")),
        None,
    )
    lines += [
        f"*{LABELS['goldgate_ref']}* is the reference spec written in Ibis and run the way a goldgate step runs: "
        "the gold table is read from Delta through `goldgate.lake.Lake`, the result is merged into a new Delta table "
        f"(`{REF_TABLE}`, keys checked unique before the commit) — Delta in, Delta out. *{LABELS['goldgate_fx']}* "
        "is the real `features` step on the panel loaded as the fx use case's `gold.fx_returns`: it computes "
        "goldgate's own fx set, which differs from the reference set: return lags 1/2/5, annualized absolute return, "
        "realized volatility (root mean square, not std) over 5/20/60 rows, return vs a reference entity on the same "
        "date, the 5-row volatility minus the cross-sectional mean of that date, day of week and month, and as target "
        "the realized volatility of the next 5 rows plus its end date (13 columns beyond the keys, against the "
        "reference set's 9, plus a second, narrow window pass and a per-date aggregate). CPU s is the process's "
        "user + system time over the same span (two cores: up to twice the seconds). RSS is `VmHWM` in MiB; 'at "
        "start' is the process's "
        "resident set before the clock starts: for goldgate, the imports of its step module (MLflow, pandas, "
        f"LightGBM, Ibis, DuckDB). goldgate ran with `duckdb_memory_limit={limit}`; the bare tools with their own "
        "defaults (DuckDB: 80 % of RAM). Polars writes zstd Parquet, the others snappy; goldgate's new Delta tables "
        "are Parquet files written by DuckDB and committed by delta-rs. The input is in the page cache for every "
        "run. The machine is shared: compare implementations within one run. Raw figures: "
        "`benchmarks/results/panel.json`.",
        END,
    ]
    return "\n".join(lines)


def diff_text(d: Any) -> str:
    return f"{d:.1e}" if isinstance(d, float) else str(d)


def engine_ratios(size: dict[str, Any]) -> dict[str, Any] | None:
    """The declarative engine against the hard-wired fx step at one size: medians and the ratio of each round."""
    fx, engine = size["impls"].get("goldgate_fx"), size["impls"].get("goldgate_engine")
    if not (fx and engine):
        return None
    return {
        "fx": fx,
        "engine": engine,
        "time": engine["seconds"] / fx["seconds"],
        "cpu": engine["cpu_seconds"] / fx["cpu_seconds"],
        "memory": engine["peak_rss_mb"] / fx["peak_rss_mb"],
        "rounds": [e / f for e, f in zip(engine["runs"], fx["runs"], strict=True)],
    }


def engine_aims(largest: dict[str, Any]) -> list[str]:
    r = engine_ratios(largest)
    if r is None:
        return []
    rows = f"{largest['rows']:,} rows"
    return [
        f"| {LABELS['goldgate_engine']} within {ENGINE_AIM}× of the hard-wired fx step, time ({rows}) "
        f"| {r['time']:.2f}× | {'yes' if r['time'] <= ENGINE_AIM else '**no**'} |",
        f"| {LABELS['goldgate_engine']} within {ENGINE_AIM}× of the hard-wired fx step, peak RSS ({rows}) "
        f"| {r['memory']:.2f}× | {'yes' if r['memory'] <= ENGINE_AIM else '**no**'} |",
    ]


def render_engine(result: dict[str, Any]) -> list[str]:
    """The engine-vs-fx-step table: the same gold table, the same feature values, two code paths."""
    rows = [(size, r) for size in result["sizes"] if (r := engine_ratios(size)) is not None]
    if not rows:
        return []
    lines = [
        "### The declarative engine vs the hard-wired fx step",
        "",
        f"*{LABELS['goldgate_engine']}* runs the same `features` step entry point on the same `{GOLD}` table, for a "
        "use case written as YAML: the bundled fx.yaml with its tables pointed at the benchmark workspace and "
        "its `versus` reference set to the panel's first entity, as the frozen fx step's `cross_reference` is. "
        "The engine compiles the declared features (row SQL, lags, rolling RMS, `versus`, `demean`, calendar parts, "
        "the aggregate target) to Ibis (`goldgate.data.features.build_dsl_features`) and merges the result into "
        f"`{ENGINE_FEATURES}`. Ratios per size from the medians; 'per round' divides the two runs of the same round "
        "(they run one after the other, so a burst of load on the shared machine hits both); CPU s is the process's "
        "user + system time, less sensitive to other work on the machine than the wall clock; the load is the "
        "1-minute load average before each engine run.",
        "",
        "| rows | fx step s (runs) | engine s (runs) | engine / fx, time (per round) | engine / fx, CPU s "
        "| engine vs DuckDB | fx step peak RSS MiB | engine peak RSS MiB | engine / fx, peak RSS | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in rows:
        fx, engine = r["fx"], r["engine"]
        duck = size["impls"].get("duckdb", {}).get("seconds")
        vs_duck = f"{engine['seconds'] / duck:.2f}×" if duck else "-"
        rounds = "/".join(f"{x:.2f}" for x in r["rounds"])
        lines.append(
            f"| {size['rows']:,} | {fx['seconds']:.2f} ({'/'.join(f'{s:.1f}' for s in fx['runs'])}) "
            f"| {engine['seconds']:.2f} ({'/'.join(f'{s:.1f}' for s in engine['runs'])}) "
            f"| {r['time']:.2f}× ({rounds}) | {r['cpu']:.2f}× | {vs_duck} "
            f"| {fx['peak_rss_mb']:,.0f} | {engine['peak_rss_mb']:,.0f} | {r['memory']:.2f}× "
            f"| {'/'.join(f'{x:.1f}' for x in engine['load_1min'])} |"
        )
    lines += [
        "",
        "Where the difference comes from, as the two steps compile for this YAML: the fx step sorts the full rows by "
        "entity and date once (lags, volatilities and the target in one projection) and takes the per-date "
        "reference return and mean volatility from a narrow (entity, date, return) projection grouped by date, "
        "joined back on the date. The engine does the same for `versus` and `demean`: it reads (entity, date, "
        "return) from gold again, computes `rv_5` there (a window over the narrow rows), groups by date and joins "
        "both statistics back on the date, so no window sorts the full rows by date and the `demean` stage is a "
        "projection. Its plan still windows over the full rows twice, both by entity: lags and volatilities in its "
        "first stage, the target in the final projection.",
        "",
        *render_engine_reruns(),
        "",
    ]
    checked = [s for s in result["sizes"] if "engine_vs_fx" in s.get("verify", {})]
    if checked:
        v = checked[-1]["verify"]["engine_vs_fx"]
        if "error" in v:
            lines += [f"The engine's output does not match the fx step's: {v['error']}.", ""]
        else:
            worst = max(((c, d) for c, d in v["max_abs_diff"].items() if isinstance(d, float)), key=lambda t: t[1])
            lines += [
                f"Same values: on {', '.join(checked[-1]['verify']['entities'])} at {checked[-1]['rows']:,} rows "
                f"({v['rows']:,} rows, {len(v['columns'])} columns, NULLs included, `target_end` date by date) the "
                f"engine's features differ from the fx step's by at most {diff_text(v['max'])} (largest in "
                f"`{worst[0]}`; `ret` appears as `x`).",
                "",
            ]
    return lines


def render_engine_reruns() -> list[str]:
    """One line per extra run of the engine and the fx step alone (``--tag engine...``), the largest size of each."""
    lines = []
    for path in sorted(RESULTS.glob("panel-engine*.json")):
        run = json.loads(path.read_text())
        largest = run["sizes"][-1]
        r = engine_ratios(largest)
        if r is None:
            continue
        impls = " ".join(largest["impls"])
        lines.append(
            f"- `benchmarks/results/{path.name}`, {run['started_utc'].replace('T', ' ')[:16]} UTC, `--impls {impls}`, "
            f"{run['repeat']} rounds (load average at start {load_text(run['load_average_start'])}, at end "
            f"{load_text(run['load_average_end'])}): at {largest['rows']:,} rows fx step {r['fx']['seconds']:.2f} s, "
            f"engine {r['engine']['seconds']:.2f} s: {r['time']:.2f}× time (per round "
            f"{'/'.join(f'{x:.2f}' for x in r['rounds'])}), {r['cpu']:.2f}× CPU s, {r['memory']:.2f}× peak RSS "
            f"({r['fx']['peak_rss_mb']:,.0f} vs {r['engine']['peak_rss_mb']:,.0f} MiB)."
        )
    if not lines:
        return []
    return ["The same comparison in runs of its own (`--tag engine...`, results not in the table above):", "", *lines]


def render_large(result: dict[str, Any]) -> str:
    lines = [
        START_100M,
        "## Out-of-core feature build",
        "",
        f"Measured {result['started_utc'].replace('T', ' ')[:16]} UTC with `.venv/bin/python benchmarks/panel.py "
        f"--sizes {' '.join(str(s['rows']) for s in result['sizes'])} --repeat {result['repeat']} --impls "
        f"{' '.join(result['sizes'][0]['impls'])} --memory-limit {result['memory_limit']}` on "
        f"{result['machine']['cpus']} CPUs (load average at start {load_text(result['load_average_start'])}, at end "
        f"{load_text(result['load_average_end'])}): the same panel as above at "
        f"{result['sizes'][0]['entities']:,} entities x {result['sizes'][0]['days']:,} days, goldgate's step with "
        f"DuckDB capped at `duckdb_memory_limit={result['memory_limit']}` (`GOLDGATE_DUCKDB_MEMORY_LIMIT`).",
        "",
        "| rows | implementation | seconds | CPU s | rows/s | peak RSS MiB (at start) | DuckDB memory limit "
        "| spill MB | under 4 GiB |",
        "|---:|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for size in result["sizes"]:
        for impl, r in size["impls"].items():
            lines.append(
                f"| {size['rows']:,} | {LABELS[impl]} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} "
                f"| {r['rows_per_second']:,.0f} | {r['peak_rss_mb']:,.0f} ({r['start_rss_mb']:,.0f}) "
                f"| {r.get('duckdb_memory_limit', 'default')} | {r.get('spill_mb', 0):,.0f} "
                f"| {'yes' if r['peak_rss_mb'] < 4096 and r['rows_out'] == size['rows'] else '**no**'} |"
            )
    checked = [s["verify"] for s in result["sizes"] if "verify" in s]
    if checked:
        v = checked[-1]
        diffs = ", ".join(f"{k} {d:.1e}" if isinstance(d, float) else f"{k} {d}" for k, d in v["max_abs_diff"].items())
        check = v.get("goldgate_fx_check")
        lines += ["", f"Checked on {', '.join(v['entities'])}: largest difference {diffs} ({check})."]
    lines += [
        "",
        "DuckDB spills past its memory ceiling to `.duckdb_tmp` under the workspace; 'spill MB' is the largest size "
        "of that folder seen while the step ran (sampled every 0.5 s; '0' where it was not sampled). Raw figures: "
        "`benchmarks/results/panel-*.json`.",
        END_100M,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
