"""The Ibis connection the transforms run on."""

from __future__ import annotations

import ibis
from ibis.backends.duckdb import Backend as DuckDBBackend

from goldgate.settings import Settings


def connect(settings: Settings) -> DuckDBBackend:
    """Open the embedded DuckDB engine (in memory: the lake holds the data, DuckDB only computes)."""
    if settings.engine != "duckdb":
        raise NotImplementedError(f"engine '{settings.engine}' is not available in this build; use duckdb")
    spill = settings.workspace_dir / ".duckdb_tmp"
    con = ibis.duckdb.connect()
    # Spill to the workspace rather than /tmp so large builds run out of core on the same disk as the lake.
    con.raw_sql(f"SET temp_directory = '{spill}'")
    # A ceiling, so large batches spill to the workspace instead of growing the process without bound.
    con.raw_sql(f"SET memory_limit = '{settings.duckdb_memory_limit}'")
    # Long queries would otherwise draw a progress bar on stdout, mixing with goldgate's own output.
    con.raw_sql("SET enable_progress_bar = false")
    return con
