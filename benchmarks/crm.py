"""Benchmark: crm deal snapshots at scale, goldgate's data steps vs pandas, Polars and bare DuckDB SQL.

    .venv/bin/python benchmarks/crm.py --sizes 100000 1000000 10000000 --repeat 3 --scratch /tmp/goldgate-bench/crm

The input is a synthetic CRM export in the Maven layout (``goldgate.sources.crm_synthetic.generate_crm``, default
dirt, seed 42): ``rows`` opportunities in sales_pipeline.csv (plus the repeated lines the dirt adds), generated
once per size into the scratch folder. Implementations:

* ``goldgate``: goldgate's ``ingest`` -> ``silver`` -> ``gold`` -> ``features`` steps of the crm use case on the
  duckdb engine in a fresh workspace (CSV in, Delta tables out: bronze, silver with quality rules, mappings and
  quarantine, gold deals, the 33-feature monthly snapshot table), seconds per step and row counts;
* ``pandas``, ``polars`` (lazy) and ``duckdb`` (one bare SQL statement): a reference snapshot spec, a subset of
  goldgate's features, from sales_pipeline.csv to Parquet. The spec: dates parsed (a cell that does not parse is
  missing), rows without an engage date dropped; one snapshot per month end from the first engage month to the
  last month end on or before the export date (the latest engage or close date); per snapshot ``M`` the deals
  open at ``M`` (engaged on or before it, no close date or one after it) with ``days_open``, the agent's closed
  deals on or before ``M`` (``agent_closed``), the agent's win rate smoothed toward the global rate,
  ``(won + 10 * global) / (closed + 10)`` (``agent_win_rate``, NULL before the first close), and the label
  ``won_30d``: 1 when the deal is Won with a close date on or before ``M + 30 days``, else 0, NULL when
  ``M + 30 days`` is after the export date. These are goldgate's definitions (the crm use case's snapshot
  features in ``src/goldgate/usecases/crm.yaml``).

Every implementation x size runs in a fresh subprocess, round robin, ``--repeat`` times, with a per-run timeout
(recorded as a time-out, not raised); reported: median wall seconds from the first read to the written output
(imports excluded), CPU seconds (user + system of the child over that span), rows/s (input lines / seconds) and
peak RSS (``VmHWM``). Then an agreement check on a sample of agents. Writes ``benchmarks/results/crm.json``, the
plot ``docs/img/crm-seconds.png`` and the ``crm`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmarks, when this one runs as a script

from panel import machine, peak_rss_mb, rss_mb  # noqa: E402
from report import load_text, start_result  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "img" / "crm-seconds.png"
START, END = "<!-- crm:start -->", "<!-- crm:end -->"
AFTER = "<!-- layers:end -->"

SEED = 42
SMOOTHING = 10.0  # goldgate's crm.yaml: the smoothing of the win-rate aggregates
LABEL_DAYS = 30  # goldgate's crm.yaml target.horizon
STEPS = ["ingest", "silver", "gold", "features"]
IMPLS = ("pandas", "polars", "duckdb", "goldgate")
LABELS = {
    "pandas": "pandas (loop over month ends)",
    "polars": "Polars lazy (cross join + filter)",
    "duckdb": "DuckDB SQL (bare)",
    "goldgate": "goldgate ingest → silver → gold → features",
}
REF_COLUMNS = ["days_open", "agent_closed", "agent_win_rate", "won_30d"]
GOLDGATE_NAMES = {"days_since_engage": "days_open"}  # goldgate's snapshot column -> the reference column
SNAPSHOTS, DEALS = "gold.crm_snapshots", "gold.crm_deals"
SILVER, QUARANTINE = "silver.crm_opportunities", "quarantine.crm_opportunities"
CHILD_TIMEOUT = 1800


# ---------------------------------------------------------------------------------------------------- data


def export_folder(scratch: Path, rows: int) -> tuple[Path, dict[str, Any]]:
    """The export for ``rows`` opportunities, generated once into ``scratch`` (cached with its generation time)."""
    from goldgate.sources.crm_synthetic import generate_crm

    folder = scratch / f"export_{rows}"
    meta_path = folder / "meta.json"
    if meta_path.exists():
        return folder, {**json.loads(meta_path.read_text()), "cached": True}
    print(f"generating {folder}", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    written = generate_crm(folder, rows=rows, seed=SEED)
    meta = {"opportunities": rows, "lines": written, "seed": SEED, "generate_seconds": time.perf_counter() - started}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return folder, {**meta, "cached": False}


# ---------------------------------------------------------------------------------------------------- reference spec


def month_ends(first: date, data_end: date) -> list[date]:
    """Month ends from ``first``'s month to the last one on or before ``data_end``."""
    out: list[date] = []
    year, month = first.year, first.month
    while True:
        following = date(year + month // 12, month % 12 + 1, 1)
        end = following - timedelta(days=1)
        if end > data_end:
            return out
        out.append(end)
        year, month = following.year, following.month


def reference_pandas(deals: Any, agents: list[str] | None = None) -> Any:
    """The reference snapshots from parsed deals, one month end at a time (``agents`` limits the open rows)."""
    import numpy as np
    import pandas as pd

    data_end = max(deals.engage_date.max(), deals.close_date.max())
    closed_all = deals[deals.deal_stage.isin(["Won", "Lost"]) & deals.close_date.notna()]
    closed_all = closed_all.assign(won=(closed_all.deal_stage == "Won").astype("int64"))
    frames = []
    for m in month_ends(deals.engage_date.min().date(), data_end.date()):
        ts = pd.Timestamp(m)
        is_open = (deals.engage_date <= ts) & ~(deals.close_date <= ts)
        snap = deals[is_open & (deals.sales_agent.isin(agents) if agents else True)]
        closed = closed_all[closed_all.close_date <= ts]
        prior = closed.won.mean() if len(closed) else np.nan
        stats = closed.groupby("sales_agent").won.agg(agent_closed="size", agent_won="sum").reset_index()
        snap = snap.merge(stats, on="sales_agent", how="left")
        snap["snapshot_date"] = ts
        snap["days_open"] = (ts - snap.engage_date).dt.days
        snap["agent_closed"] = snap.agent_closed.fillna(0).astype("int64")
        snap["agent_win_rate"] = (snap.agent_won.fillna(0) + SMOOTHING * prior) / (snap.agent_closed + SMOOTHING)
        label_end = ts + pd.Timedelta(days=LABEL_DAYS)
        won = (snap.deal_stage == "Won") & (snap.close_date <= label_end)
        snap["won_30d"] = won.astype("float64") if label_end <= data_end else np.nan
        frames.append(snap[["opportunity_id", "sales_agent", "snapshot_date", *REF_COLUMNS]])
    return pd.concat(frames, ignore_index=True)


def run_pandas(source: Path, out: Path) -> int:
    """CSV -> pandas, dates coerced, reference snapshots -> Parquet."""
    import pandas as pd

    columns = ["opportunity_id", "sales_agent", "deal_stage", "engage_date", "close_date"]
    df = pd.read_csv(source / "sales_pipeline.csv", usecols=columns, dtype=str)
    for col in ("engage_date", "close_date"):
        df[col] = pd.to_datetime(df[col], format="%Y-%m-%d", errors="coerce")
    df = df[df.engage_date.notna()]
    snapshots = reference_pandas(df)
    snapshots.to_parquet(out, index=False)
    return len(snapshots)


def reference_polars(source: Path) -> Any:
    """The reference snapshots as a Polars lazy query (month ends crossed with the deals, then filtered)."""
    import polars as pl

    c = pl.col
    deals = (
        pl.scan_csv(source / "sales_pipeline.csv", infer_schema=False)
        .select(
            "opportunity_id",
            "sales_agent",
            "deal_stage",
            c("engage_date").str.to_date("%Y-%m-%d", strict=False),
            c("close_date").str.to_date("%Y-%m-%d", strict=False),
        )
        .filter(c("engage_date").is_not_null())
    )
    data_end = pl.max_horizontal(c("engage_date").max(), c("close_date").max())
    first = c("engage_date").min().dt.month_start()
    months = deals.select(
        pl.date_range(first, data_end, "1mo").dt.month_end().alias("snapshot_date"), data_end.alias("data_end")
    ).filter(c("snapshot_date") <= c("data_end"))
    open_ = deals.join(months, how="cross").filter(
        (c("engage_date") <= c("snapshot_date")) & (c("close_date").is_null() | (c("close_date") > c("snapshot_date")))
    )
    closed = deals.filter(c("deal_stage").is_in(["Won", "Lost"]) & c("close_date").is_not_null())
    history = (
        closed.join(months.select("snapshot_date"), how="cross")
        .filter(c("close_date") <= c("snapshot_date"))
        .group_by("sales_agent", "snapshot_date")
        .agg(agent_closed=pl.len().cast(pl.Int64), agent_won=(c("deal_stage") == "Won").sum().cast(pl.Int64))
    )
    prior = history.group_by("snapshot_date").agg(prior=c("agent_won").sum() / c("agent_closed").sum())
    label_end = c("snapshot_date") + pl.duration(days=LABEL_DAYS)
    won = (c("deal_stage") == "Won") & c("close_date").is_not_null() & (c("close_date") <= label_end)
    return (
        open_.join(history, on=["sales_agent", "snapshot_date"], how="left")
        .join(prior, on="snapshot_date", how="left")
        .with_columns(c("agent_closed").fill_null(0), c("agent_won").fill_null(0))
        .select(
            "opportunity_id",
            "sales_agent",
            "snapshot_date",
            days_open=(c("snapshot_date") - c("engage_date")).dt.total_days(),
            agent_closed=c("agent_closed"),
            agent_win_rate=(c("agent_won") + SMOOTHING * c("prior")) / (c("agent_closed") + SMOOTHING),
            won_30d=pl.when(label_end <= c("data_end")).then(won.cast(pl.Float64)),
        )
    )


def run_polars(source: Path, out: Path) -> int:
    """CSV -> Polars lazy reference snapshots -> Parquet (``sink_parquet``)."""
    import polars as pl

    reference_polars(source).sink_parquet(out)
    return int(pl.scan_parquet(out).select(pl.len()).collect().item())


def reference_sql(csv: str) -> str:
    """The reference snapshots as one DuckDB statement over the CSV."""
    return f"""
    WITH deals AS (
        SELECT opportunity_id, sales_agent, deal_stage,
               TRY_CAST(engage_date AS DATE) AS engage_date, TRY_CAST(close_date AS DATE) AS close_date
        FROM read_csv({csv!r}, all_varchar = true)
    ), valid AS (
        SELECT * FROM deals WHERE engage_date IS NOT NULL
    ), bounds AS (
        SELECT min(engage_date) AS first_engage, greatest(max(engage_date), max(close_date)) AS data_end FROM valid
    ), months AS (
        SELECT * FROM (
            SELECT last_day(unnest(generate_series(date_trunc('month', first_engage)::TIMESTAMP,
                                                   data_end::TIMESTAMP, INTERVAL 1 MONTH)))::DATE AS snapshot_date,
                   data_end
            FROM bounds
        ) WHERE snapshot_date <= data_end
    ), closed AS (
        SELECT sales_agent, close_date, (deal_stage = 'Won')::BIGINT AS won
        FROM valid WHERE deal_stage IN ('Won', 'Lost') AND close_date IS NOT NULL
    ), history AS (
        SELECT m.snapshot_date, c.sales_agent, count(*) AS agent_closed, sum(c.won) AS agent_won
        FROM months m JOIN closed c ON c.close_date <= m.snapshot_date
        GROUP BY ALL
    ), prior AS (
        SELECT snapshot_date, sum(agent_won) / sum(agent_closed) AS prior FROM history GROUP BY ALL
    )
    SELECT d.opportunity_id, d.sales_agent, m.snapshot_date,
           date_diff('day', d.engage_date, m.snapshot_date) AS days_open,
           coalesce(h.agent_closed, 0) AS agent_closed,
           (coalesce(h.agent_won, 0) + {SMOOTHING} * p.prior) / (coalesce(h.agent_closed, 0) + {SMOOTHING})
               AS agent_win_rate,
           CASE WHEN m.snapshot_date + {LABEL_DAYS} <= m.data_end
                THEN (d.deal_stage = 'Won' AND d.close_date IS NOT NULL
                      AND d.close_date <= m.snapshot_date + {LABEL_DAYS})::DOUBLE END AS won_30d
    FROM valid d
    JOIN months m ON d.engage_date <= m.snapshot_date AND (d.close_date IS NULL OR d.close_date > m.snapshot_date)
    LEFT JOIN history h ON h.sales_agent = d.sales_agent AND h.snapshot_date = m.snapshot_date
    LEFT JOIN prior p ON p.snapshot_date = m.snapshot_date
    """


def run_duckdb(source: Path, out: Path) -> int:
    """CSV -> one DuckDB statement -> Parquet (``COPY ... TO``), DuckDB's default settings."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"COPY ({reference_sql(str(source / 'sales_pipeline.csv'))}) TO {str(out)!r} (FORMAT parquet)")
    return int(con.execute(f"SELECT count(*) FROM read_parquet({str(out)!r})").fetchone()[0])  # type: ignore[index]


# ---------------------------------------------------------------------------------------------------- goldgate


def goldgate_context(workspace: Path, source: Path) -> Any:
    """The bundled crm use case on the duckdb engine, reading ``source``, in ``workspace``."""
    from goldgate.context import Context
    from goldgate.settings import load_settings
    from goldgate.usecase import load_usecase

    settings = load_settings(workspace=workspace, engine="duckdb")
    return Context(settings, load_usecase("crm"), source=str(source))


def run_goldgate(ctx: Any, out: dict[str, Any]) -> int:
    """The four data steps, timed one by one into ``out['steps']``; returns the snapshot rows."""
    from goldgate.dag import get_step
    from goldgate.runner import run_step

    out["steps"], out["step_results"], out["peak_rss_mb_after"] = {}, {}, {}
    for name in STEPS:
        started = time.perf_counter()
        result = run_step(ctx, get_step(name))
        out["steps"][name] = time.perf_counter() - started
        out["step_results"][name] = result
        out["peak_rss_mb_after"][name] = peak_rss_mb()  # VmHWM only grows: the step that raised it shows
    return int(out["step_results"]["features"]["inserted"])


def goldgate_counts(ctx: Any) -> dict[str, int]:
    """Rows of the bronze, silver, quarantine and snapshot tables (counted after the clock stops)."""
    lake, uc = ctx.lake, ctx.usecase
    tables = {"bronze": uc.tables.bronze, "silver": SILVER, "quarantine": QUARANTINE, "snapshots": SNAPSHOTS}
    return {k: int(lake.read(name).count().execute()) for k, name in tables.items()}


# ---------------------------------------------------------------------------------------------------- child


def child(args: argparse.Namespace) -> None:  # pragma: no cover - runs in the subprocess
    """One timed run; prints ``RESULT {json}``."""
    import resource

    out: dict[str, Any] = {}
    if args.impl == "goldgate":
        # Start-up imports are not the steps' cost.
        import goldgate.data.snapshots
        import goldgate.pipeline  # noqa: F401

        ctx = goldgate_context(args.workspace, args.source)
        ctx.lake  # noqa: B018  opens the DuckDB connection before the clock starts
        out["duckdb_memory_limit"] = ctx.settings.duckdb_memory_limit
    else:
        __import__({"pandas": "pandas", "polars": "polars", "duckdb": "duckdb"}[args.impl])
    out["start_rss_mb"] = rss_mb()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if args.impl == "goldgate":
        rows = run_goldgate(ctx, out)
    else:
        rows = {"pandas": run_pandas, "polars": run_polars, "duckdb": run_duckdb}[args.impl](args.source, args.out)
    out["seconds"] = time.perf_counter() - started
    end = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime
    out["peak_rss_mb"] = peak_rss_mb()
    out["rows"] = rows
    if args.impl == "goldgate":
        out["counts"] = goldgate_counts(ctx)
    print("RESULT " + json.dumps(out, default=str), flush=True)


# ---------------------------------------------------------------------------------------------------- driver


def run_child(impl: str, source: Path, out: Path, workspace: Path, timeout: float) -> dict[str, Any]:
    """One fresh process; a time-out or a failure is recorded in the result (``status``) rather than raised."""
    cmd = [sys.executable, __file__, "child", "--impl", impl, "--source", str(source), "--out", str(out)]
    cmd += ["--workspace", str(workspace)]
    shutil.rmtree(workspace, ignore_errors=True)
    out.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=60)
            return {"status": "time-out", "timeout_seconds": timeout, "load_1min_before": load}
        wall = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        out_text, err_text = stdout.read(), stderr.read()
    line = next((x for x in reversed(out_text.splitlines()) if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        return {"status": "failed", "returncode": proc.returncode, "error": err_text[-2000:], "load_1min_before": load}
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return {**result, "status": "ok", "process_seconds": wall, "load_1min_before": load}


def summarize(impl: str, lines: int, done: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs that finished; the statuses of all runs."""
    ok = [r for r in done if r["status"] == "ok"]
    entry: dict[str, Any] = {"status": [r["status"] for r in done], "load_1min": [r["load_1min_before"] for r in done]}
    if not ok:
        return entry
    seconds = statistics.median(r["seconds"] for r in ok)
    entry |= {
        "seconds": seconds,
        "runs": [round(r["seconds"], 3) for r in ok],
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in ok),
        "process_seconds": statistics.median(r["process_seconds"] for r in ok),
        "rows_per_second": lines / seconds,
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in ok),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in ok),
        "start_rss_mb": statistics.median(r["start_rss_mb"] for r in ok),
        "rows_out": ok[-1]["rows"],
    }
    if impl == "goldgate":
        entry |= goldgate_summary(lines, ok)
    return entry


def goldgate_summary(lines: int, ok: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds per step and the row accounting of the last run (silver + quarantine = input lines)."""
    counts = ok[-1]["counts"]
    silver = ok[-1]["step_results"]["silver"]
    lost = lines - counts["silver"] - counts["quarantine"]
    assert lost == 0, (
        f"goldgate lost rows: {lines} lines, {counts['silver']} silver + {counts['quarantine']} quarantined"
    )
    return {
        "steps": {s: statistics.median(r["steps"][s] for r in ok) for s in STEPS},
        "step_runs": {s: [round(r["steps"][s], 3) for r in ok] for s in STEPS},
        "peak_rss_mb_after_step": ok[-1]["peak_rss_mb_after"],
        "counts": {"lines": lines, **counts, "lost": lost},
        "silver_step": silver,
        "duckdb_memory_limit": ok[-1]["duckdb_memory_limit"],
    }


def bench_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    """Every implementation ``--repeat`` times on one size, round robin; then the agreement check."""
    source, meta = export_folder(args.scratch, size)
    lines = int(meta["lines"]["sales_pipeline"])
    entry: dict[str, Any] = {"rows": size, "lines": lines, "generation": meta, "impls": {}}
    outs = {impl: args.scratch / f"out_{impl}_{size}.parquet" for impl in args.impls}
    workspaces = {impl: args.scratch / f"ws_{impl}_{size}" for impl in args.impls}
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in args.impls}
    for _ in range(args.repeat):
        for impl in args.impls:
            run = run_child(impl, source, outs[impl], workspaces[impl], args.timeout)
            runs[impl].append(run)
            shown = f"{run['seconds']:8.2f} s {run['peak_rss_mb']:8.0f} MiB" if run["status"] == "ok" else run["status"]
            print(f"{size:>11,} {impl:<9} {shown} (load {run['load_1min_before']:.2f})", flush=True)
            if run["status"] == "failed":
                print(run["error"], file=sys.stderr, flush=True)
    for impl, done in runs.items():
        entry["impls"][impl] = summarize(impl, lines, done)
    if not args.no_verify:
        entry["verify"] = verify(args.impls, entry["impls"], outs, args.scratch / f"ws_goldgate_{size}", source)
        print(json.dumps(entry["verify"], default=str), flush=True)
    return entry


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """All sizes; the result with the machine's facts and the load average around the runs."""
    args.scratch.mkdir(parents=True, exist_ok=True)
    result = start_result("crm", machine(), repeat=args.repeat, timeout_seconds=args.timeout, impls=list(args.impls))
    result["sizes"] = [bench_size(args, size) for size in args.sizes]
    result["load_average_end"] = os.getloadavg()
    result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


# ---------------------------------------------------------------------------------------------------- agreement


def sample_agents(source: Path) -> list[str]:
    """Three agents of sales_teams.csv (first, middle and last by name)."""
    import pandas as pd

    names = sorted(pd.read_csv(source / "sales_teams.csv", dtype=str).sales_agent)
    return sorted({names[0], names[len(names) // 2], names[-1]})


def read_reference(out: Path, agents: list[str]) -> Any:
    """The sample agents' rows of one reference output, sorted, dates as dates."""
    import duckdb

    names = ", ".join(repr(a) for a in agents)
    sql = f"SELECT * FROM read_parquet({str(out)!r}) WHERE sales_agent IN ({names})"
    return normalize(duckdb.connect().execute(sql).df())


def normalize(frame: Any) -> Any:
    """Dates as ``date``, numeric reference columns as float, rows sorted by key."""
    import pandas as pd

    frame = frame.assign(snapshot_date=pd.to_datetime(frame.snapshot_date).dt.date)
    frame = frame.astype(dict.fromkeys(REF_COLUMNS, "float64"))
    return frame.sort_values(["opportunity_id", "snapshot_date", "sales_agent"]).reset_index(drop=True)


def delta_sql(workspace: Path, table: str) -> str:
    """A ``read_parquet`` over a Delta table's current files."""
    from deltalake import DeltaTable

    layer, name = table.split(".")
    files = [u.removeprefix("file://") for u in DeltaTable(str(workspace / "lake" / layer / name)).file_uris()]
    return f"read_parquet({files!r})"


def read_goldgate(workspace: Path, agents: list[str]) -> Any:
    """goldgate's snapshot rows of the sample agents (agent from gold deals), reference column names."""
    import duckdb

    names = ", ".join(repr(a) for a in agents)
    cols = ", ".join(f"s.{g} AS {r}" for g, r in GOLDGATE_NAMES.items())
    sql = (
        f"SELECT s.opportunity_id, d.sales_agent, s.snapshot_date, {cols}, s.agent_closed, s.agent_win_rate, "
        f"s.won_30d FROM {delta_sql(workspace, SNAPSHOTS)} s JOIN {delta_sql(workspace, DEALS)} d "
        f"USING (opportunity_id) WHERE d.sales_agent IN ({names})"
    )
    return normalize(duckdb.connect().execute(sql).df())


def reference_on_silver(workspace: Path, agents: list[str]) -> Any:
    """The pandas reference spec applied to goldgate's silver opportunities (cleaned, mapped, deduplicated)."""
    import duckdb
    import pandas as pd

    sql = (
        "SELECT opportunity_id, sales_agent, deal_stage, engage_date, close_date "
        f"FROM {delta_sql(workspace, SILVER)} WHERE engage_date IS NOT NULL"
    )
    deals = duckdb.connect().execute(sql).df()
    deals = deals.assign(engage_date=pd.to_datetime(deals.engage_date), close_date=pd.to_datetime(deals.close_date))
    return normalize(reference_pandas(deals, agents))


def max_abs_diff(a: Any, b: Any) -> dict[str, float]:
    """Per reference column the largest absolute difference of two aligned frames (inf where NULLs differ)."""
    import numpy as np

    out: dict[str, float] = {}
    for col in REF_COLUMNS:
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            out[col] = math.inf
        else:
            both = ~np.isnan(x)
            out[col] = float(np.abs(x[both] - y[both]).max()) if both.any() else 0.0
    return out


def compare_same_rows(base: Any, other: Any) -> dict[str, Any]:
    """Two outputs expected to hold the same rows: counts and, when the keys line up, the largest differences."""
    report: dict[str, Any] = {"rows": len(other), "base_rows": len(base)}
    keys = ["opportunity_id", "snapshot_date"]
    if len(base) == len(other) and base[keys].equals(other[keys]):
        report["max_abs_diff"] = max_abs_diff(base, other)
    else:
        report["max_abs_diff"] = "rows differ"
    return report


def compare_goldgate(pandas_rows: Any, gold: Any, full_pandas: Path, workspace: Path) -> dict[str, Any]:
    """goldgate vs the pandas reference on the CSV: matched rows' differences, unmatched rows with their reasons."""
    import duckdb

    keys = ["opportunity_id", "snapshot_date"]
    repeated = int(pandas_rows.duplicated(keys).sum())
    ref = pandas_rows.drop_duplicates(keys)
    merged = ref.merge(gold, on=keys, how="outer", suffixes=("_ref", "_gg"), indicator=True)
    only_ref = merged[merged._merge == "left_only"]
    only_gg = merged[merged._merge == "right_only"]
    both = merged[merged._merge == "both"]
    con = duckdb.connect()
    rules = con.execute(f"SELECT opportunity_id, _rule FROM {delta_sql(workspace, QUARANTINE)}").df()
    rule_of = dict(zip(rules.opportunity_id, rules._rule, strict=True))
    ids = sorted(set(only_gg.opportunity_id))
    spelled = con.execute(
        f"SELECT DISTINCT opportunity_id, sales_agent FROM read_parquet({str(full_pandas)!r}) "
        "WHERE opportunity_id IN (SELECT unnest($ids))",
        {"ids": ids},
    ).df()
    a = both.rename(columns={f"{c}_ref": c for c in REF_COLUMNS})
    b = both.rename(columns={f"{c}_gg": c for c in REF_COLUMNS})
    diffs = max_abs_diff(a, b)
    differing = {c: int((~((a[c] == b[c]) | (a[c].isna() & b[c].isna()))).sum()) for c in REF_COLUMNS}
    return {
        "pandas_rows": len(pandas_rows),
        "goldgate_rows": len(gold),
        "matched_rows": len(both),
        "pandas_repeated_line_rows": repeated,
        "only_pandas_rows": len(only_ref),
        "only_pandas_by_quarantine_rule": only_ref.opportunity_id.map(rule_of)
        .fillna("not quarantined")
        .value_counts()
        .to_dict(),
        "only_goldgate_rows": len(only_gg),
        "only_goldgate_agent_spelled_otherwise_in_csv": int(
            only_gg.opportunity_id.isin(set(spelled.opportunity_id)).sum()
        ),
        "agent_spellings_in_csv": sorted(set(spelled.sales_agent))[:8],
        "max_abs_diff_matched": diffs,
        "rows_differing_matched": differing,
    }


def verify(
    impls: list[str], results: dict[str, Any], outs: dict[str, Path], workspace: Path, source: Path
) -> dict[str, Any]:
    """On a sample of agents: the reference outputs vs pandas; goldgate vs pandas and vs the spec on its silver."""
    agents = sample_agents(source)
    ok = [i for i in impls if "seconds" in results[i]]
    report: dict[str, Any] = {"agents": agents}
    refs = {i: read_reference(outs[i], agents) for i in ok if i != "goldgate"}
    base_name = "pandas" if "pandas" in refs else next(iter(refs), None)
    if base_name is not None:
        report["reference"] = base_name
        report["references"] = {i: compare_same_rows(refs[base_name], f) for i, f in refs.items() if i != base_name}
        report["reference_rows"] = len(refs[base_name])
    if "goldgate" in ok:
        gold = read_goldgate(workspace, agents)
        report["goldgate_on_silver"] = compare_same_rows(reference_on_silver(workspace, agents), gold)
        if base_name is not None:
            report["goldgate_vs_csv"] = compare_goldgate(refs[base_name], gold, outs[base_name], workspace)
    return report


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    """Run the benchmark (or one child run) and write the results, the plot and the doc section."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    c = sub.add_parser("child")
    c.add_argument("--impl", choices=IMPLS, required=True)
    c.add_argument("--source", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "goldgate-bench" / "crm")
    parser.add_argument(
        "--timeout", type=float, default=CHILD_TIMEOUT, help="seconds per child run before it is killed"
    )
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--no-doc", action="store_true", help="write the JSON only")
    parser.add_argument("--render", action="store_true", help="only rewrite the doc section from the saved JSON")
    args = parser.parse_args()
    if args.command == "child":
        child(args)
        return
    if args.render:
        result = json.loads((RESULTS / "crm.json").read_text())
    else:
        result = bench(args)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "crm.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.no_doc:
        plot(result, PLOT)
        write_doc(render(result))


# ---------------------------------------------------------------------------------------------------- report


def write_doc(section: str) -> None:
    """The crm section of docs/benchmarks.md, its markers placed after the layers section the first time."""
    from report import write_section

    text = DOC.read_text(encoding="utf-8")
    if START not in text and AFTER in text:
        DOC.write_text(text.replace(AFTER, f"{AFTER}\n\n{START}\n{END}", 1), encoding="utf-8")
    write_section(DOC, START, END, section)


def plot(result: dict[str, Any], path: Path) -> None:
    """Seconds vs input lines per implementation, log-log."""
    from report import log_log_plot

    series = {
        LABELS[impl]: [
            (s["lines"], s["impls"][impl]["seconds"]) for s in result["sizes"] if "seconds" in s["impls"].get(impl, {})
        ]
        for impl in IMPLS
    }
    title = f"CRM monthly deal snapshots ({result['machine']['cpus']} CPUs)"
    log_log_plot(
        series, path, "opportunity lines in sales_pipeline.csv", "seconds, median (CSV read to written output)", title
    )


def _diffs(diffs: Any) -> str:
    if isinstance(diffs, str):
        return diffs
    return ", ".join(f"{c} {d:.1e}" if d else f"{c} 0" for c, d in diffs.items())


def render(result: dict[str, Any]) -> str:
    """The Markdown section: timings, goldgate's steps and row counts, the agreement check, notes."""
    lines = [START, "## CRM deal snapshots: goldgate's crm steps vs pandas, Polars and DuckDB", "", intro(result), ""]
    lines += [*timing_table(result), "", "![seconds vs rows, log-log](img/crm-seconds.png)", ""]
    lines += [*steps_table(result), ""]
    lines += [*agreement(result), ""]
    lines += [notes(result), END]
    return "\n".join(lines)


def intro(result: dict[str, Any]) -> str:
    m = result["machine"]
    gen = ", ".join(f"{s['rows']:,} in {s['generation']['generate_seconds']:.1f} s" for s in result["sizes"])
    runs = f"median of {result['repeat']} runs" if result["repeat"] > 1 else "one run"
    return (
        f"Measured {result['started_utc'].replace('T', ' ')[:16]} UTC with `.venv/bin/python benchmarks/crm.py` on "
        f"{m['cpus']} CPUs, {m['ram_gb']} GB RAM, Python {m['python']}, pandas {m['versions']['pandas']}, Polars "
        f"{m['versions']['polars']}, DuckDB {m['versions']['duckdb']} (load average at start "
        f"{load_text(result['load_average_start'])}, at end {load_text(result['load_average_end'])}). "
        "Input: a synthetic "
        "CRM export in the Maven layout with the default dirt (repeated lines, unparseable dates, agent names in "
        "other case or spacing, unknown products, negative values), seed 42; rows are opportunities, the CSV has "
        f"about 0.1 % more lines (the repeats). Generating the exports (not timed): {gen}. Each implementation x "
        f"size in a fresh process, round robin, {runs}; seconds run from reading the CSV to the written output "
        f"(imports excluded); rows/s is CSV lines per second; a run is stopped after "
        f"{result['timeout_seconds']:.0f} s."
    )


def timing_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| rows | implementation | seconds (runs) | CPU s | rows/s | peak RSS MiB (at start) | vs DuckDB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for size in result["sizes"]:
        duck = size["impls"].get("duckdb", {}).get("seconds")
        for impl in IMPLS:
            r = size["impls"].get(impl)
            if r is None:
                continue
            if "seconds" not in r:
                lines.append(f"| {size['rows']:,} | {LABELS[impl]} | {'/'.join(r['status'])} | - | - | - | - |")
                continue
            runs = "/".join(f"{s:.1f}" for s in r["runs"])
            ratio = f"{r['seconds'] / duck:.2f}×" if duck else "-"
            lines.append(
                f"| {size['rows']:,} | {LABELS[impl]} | {r['seconds']:.2f} ({runs}) | {r['cpu_seconds']:.1f} "
                f"| {r['rows_per_second']:,.0f} | {r['peak_rss_mb']:,.0f} ({r['start_rss_mb']:,.0f}) | {ratio} |"
            )
    return lines


def steps_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "goldgate's steps (median seconds), the process's peak RSS after each step (MiB, ingest / silver / gold / "
        "features) and the rows: input lines of sales_pipeline.csv = silver + quarantined.",
        "",
        "| rows | ingest s | silver s | gold s | features s | peak RSS after step | CSV lines | silver | quarantined "
        "| lost | snapshots |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in result["sizes"]:
        r = size["impls"].get("goldgate", {})
        if "steps" not in r:
            continue
        s, n = r["steps"], r["counts"]
        peaks = " / ".join(f"{v:,.0f}" for v in r.get("peak_rss_mb_after_step", {}).values()) or "-"
        lines.append(
            f"| {size['rows']:,} | {s['ingest']:.2f} | {s['silver']:.2f} | {s['gold']:.2f} | {s['features']:.2f} "
            f"| {peaks} | {n['lines']:,} | {n['silver']:,} | {n['quarantine']:,} | {n['lost']} | {n['snapshots']:,} |"
        )
    return lines


def agreement(result: dict[str, Any]) -> list[str]:
    checked = [s for s in result["sizes"] if "verify" in s]
    if not checked:
        return []
    size, v = checked[-1], checked[-1]["verify"]
    lines = [f"Agreement on a sample of agents ({', '.join(v['agents'])}) at {size['rows']:,} rows:", ""]
    for impl, r in v.get("references", {}).items():
        lines.append(
            f"* {LABELS[impl]} vs {LABELS[v['reference']]}: {r['rows']:,} vs {r['base_rows']:,} rows, largest "
            f"difference {_diffs(r['max_abs_diff'])}."
        )
    on_silver = v.get("goldgate_on_silver")
    if on_silver:
        lines.append(
            f"* goldgate's `{SNAPSHOTS}` vs the reference spec (pandas) applied to goldgate's own "
            f"`{SILVER}` rows: {on_silver['rows']:,} vs {on_silver['base_rows']:,} rows, largest difference "
            f"{_diffs(on_silver['max_abs_diff'])} (columns `days_since_engage`, `agent_closed`, `agent_win_rate`, "
            f"`won_30d`){': the definitions agree' if agrees(on_silver) else ''}."
        )
    g = v.get("goldgate_vs_csv")
    if g:
        lines.append(goldgate_vs_csv(g))
    return lines


def agrees(report: dict[str, Any]) -> bool:
    """Same rows and no difference in any reference column."""
    diffs = report["max_abs_diff"]
    return report["rows"] == report["base_rows"] and isinstance(diffs, dict) and not any(diffs.values())


def goldgate_vs_csv(g: dict[str, Any]) -> str:
    differing = ", ".join(f"{c} {n:,}" for c, n in g["rows_differing_matched"].items())
    rules = ", ".join(f"`{r}` {n:,}" for r, n in g["only_pandas_by_quarantine_rule"].items()) or "none"
    return (
        f"* goldgate vs the pandas reference on the raw CSV: {g['goldgate_rows']:,} vs {g['pandas_rows']:,} rows, "
        f"{g['matched_rows']:,} matched on (opportunity_id, snapshot_date). The reference keeps "
        f"{g['pandas_repeated_line_rows']:,} rows from repeated CSV lines (goldgate quarantines the repeat) and "
        f"{g['only_pandas_rows']:,} further rows of deals goldgate does not have (by goldgate's quarantine rule: "
        f"{rules}; a Won/Lost deal whose close date does not parse is open forever in the reference, a won deal "
        "with a negative value is an ordinary deal there). "
        f"{g['only_goldgate_rows']:,} goldgate rows are missing from the reference sample, "
        f"{g['only_goldgate_agent_spelled_otherwise_in_csv']:,} of them deals whose agent the CSV spells otherwise "
        "(other case, doubled or trailing space; goldgate maps them to the sales team's spelling, the reference "
        "counts them as other agents). On the matched rows the largest differences are "
        f"{_diffs(g['max_abs_diff_matched'])} (rows differing: {differing}): the same dirt moves the agents' "
        "closed-deal counts and the global win rate the smoothing pulls toward."
    )


def notes(result: dict[str, Any]) -> str:
    limit = next(
        (s["impls"]["goldgate"].get("duckdb_memory_limit") for s in result["sizes"] if "goldgate" in s["impls"]), None
    )
    return (
        f"*{LABELS['goldgate']}* is the real crm use case: CSV files read and appended to Delta bronze tables, "
        "typed silver with the use case's expectations (rows failing a drop rule or repeating an opportunity id go "
        "to the quarantine table with the reason), mappings (product spelling, agent spelling to the sales team "
        "list, sector typos), the reference tables, the gold deal table (one row per opportunity joined with its "
        "account, product and team) and the snapshot table of 33 point-in-time features plus the label, each "
        "merged into Delta with its input versions. The reference implementations compute 4 of those columns from "
        "sales_pipeline.csv alone, with no quality rules, and write one Parquet file. pandas loops over the month "
        "ends (a boolean mask of open deals and a group-by of the deals closed so far per month); Polars crosses "
        "the month ends with the deals and filters, which its optimizer turns into an inequality join; DuckDB "
        "range-joins the month ends with the deals and with the closed deals. CPU s is the process's user + "
        "system time over the same span (two cores: up to twice the seconds). RSS is `VmHWM` in MiB; 'at start' "
        "is the resident set before the clock starts (for goldgate, the imports of its step modules). goldgate "
        f"ran with `duckdb_memory_limit={limit}`, the bare tools with their defaults. The CSV is in the page "
        "cache for every run. The machine is shared: compare implementations within one run. Raw figures: "
        "`benchmarks/results/crm.json`."
    )


if __name__ == "__main__":
    main()
