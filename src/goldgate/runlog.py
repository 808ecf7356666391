"""The run log: one row in ``ops.runs`` per ``goldgate run``, successful or failed, with its summary as JSON.

The dashboard's Pipeline page and the run report read it: which runs happened, how long each step took, and
what each run produced (the summary described in the design notes). The table is an append-only event log.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from goldgate.context import Context
from goldgate.lake import Lake

log = logging.getLogger(__name__)

RUNS = "ops.runs"
OK, FAILED = "ok", "failed"

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("use_case", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),
        ("seconds", pa.string()),
        ("summary", pa.string()),
        ("error", pa.string()),
    ]
)

# Column descriptions for the data dictionary (goldgate's own ops tables are described by goldgate).
RUNS_DESCRIPTIONS: dict[str, str] = {
    "_table": "Append-only log of every `goldgate run`: when, outcome, seconds per step and the run summary.",
    "run_id": "Identifier of the run (a UUID).",
    "use_case": "Use case name.",
    "started_at": "When the run started (UTC).",
    "finished_at": "When the run finished or failed (UTC).",
    "status": "ok or failed.",
    "seconds": "JSON map of wall-clock seconds per step, and the total.",
    "summary": "The run summary (JSON), as written by `goldgate run --summary-json`.",
    "error": "The one-line error of a failed run (empty when it succeeded).",
}


def record_run(
    lake: Lake,
    summary: dict[str, Any],
    status: str,
    started_at: datetime,
    finished_at: datetime,
    error: str | None = None,
) -> str:
    """Append one run to ``ops.runs`` and return its run id."""
    if status not in (OK, FAILED):
        raise ValueError(f"run status must be '{OK}' or '{FAILED}', got '{status}'")
    run_id = uuid.uuid4().hex
    row = {
        "run_id": run_id,
        "use_case": str(summary.get("use_case", "")),
        "started_at": started_at,
        "finished_at": finished_at,
        "status": status,
        "seconds": json.dumps(summary.get("seconds", {})),
        "summary": json.dumps(summary, default=str),
        "error": error,
    }
    lake.append(RUNS, pa.Table.from_pylist([row], schema=RUNS_SCHEMA))
    log.info("recorded run %s (%s) in %s", run_id, status, RUNS)
    return run_id


def failed_summary(use_case: str, workspace: str, results: dict[str, Any], error: str) -> dict[str, Any]:
    """The partial summary of a failed run: the steps that finished, their seconds, and the error."""
    seconds = dict(results.get("_seconds", {}))
    return {
        "use_case": use_case,
        "workspace": workspace,
        "steps_done": [name for name in seconds if name != "total"],
        "seconds": seconds,
        "error": error,
    }


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "seconds": json.loads(row["seconds"] or "{}"), "summary": json.loads(row["summary"] or "{}")}


def recent_runs(lake: Lake, use_case: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ``limit`` runs of a use case, newest first, with ``seconds`` and ``summary`` parsed."""
    if not lake.exists(RUNS):
        return []
    runs = lake.read(RUNS)
    newest = runs.filter(runs.use_case == use_case).order_by(runs.started_at.desc()).limit(limit)
    return [_parsed(r) for r in newest.to_pyarrow().to_pylist()]


def find_run(lake: Lake, use_case: str, run: str = "latest") -> dict[str, Any]:
    """One recorded run: ``latest`` or a run id (a unique prefix is enough). Raises LookupError when absent."""
    if run == "latest":
        found = recent_runs(lake, use_case, limit=1)
        if not found:
            raise LookupError(f"no run of use case '{use_case}' recorded in {RUNS}: run `goldgate run` first")
        return found[0]
    if not lake.exists(RUNS):
        raise LookupError(f"run {run}: {RUNS} does not exist yet")
    runs = lake.read(RUNS)
    matches = runs.filter((runs.use_case == use_case) & runs.run_id.startswith(run)).to_pyarrow().to_pylist()
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs"
        raise LookupError(f"{what} of use case '{use_case}' in {RUNS} with id '{run}'")
    return _parsed(matches[0])


def utc_now() -> datetime:
    """The current time in UTC (the run log's clock)."""
    return datetime.now(UTC)


def record_outcome(
    ctx: Context, started_at: datetime, summary: dict[str, Any] | None = None, error: str | None = None
) -> str | None:
    """Record a finished run (``summary``) or a failed one (``error``) without ever raising.

    The run's own outcome is what the caller reports; a run log that cannot be written is logged as an error
    rather than turning a finished run into a failed command or hiding the step that failed.
    """
    try:
        if summary is not None:
            return record_run(ctx.lake, summary, OK, started_at, utc_now())
        partial = failed_summary(ctx.usecase.name, str(ctx.settings.workspace_dir), ctx.results, error or "")
        return record_run(ctx.lake, partial, FAILED, started_at, utc_now(), error=error)
    except Exception as exc:
        log.error("run log: could not append to %s: %s", RUNS, exc)
        return None
