"""Current-window histograms computed where the data lives: Ibis expressions run by DuckDB (or Spark).

For each numeric feature the engine assigns every row to a cell of the reference grid with arithmetic only
(clip, subtract, multiply, floor, two comparisons: no ``CASE`` chain, no sort) and groups by the cell, counting
rows and summing values; NULL and NaN fall into the NULL group, the missing rows. Categorical features are
grouped by category, with categories unknown to the reference pooled as ``__other__``. All features go into one
``UNION ALL`` statement per kind, so the engine reads each column of the window once and returns at most a few
thousand rows, whatever the window's size. Everything after that (PSI, KS, Wasserstein, ...) is
``goldgate.monitor`` on those histograms.
"""

from __future__ import annotations

import logging
from typing import Any

import ibis
import ibis.expr.types as ir

from goldgate.monitor import OTHER, Histogram

log = logging.getLogger(__name__)


def cell_expr(value: ir.FloatingValue, grid: dict[str, Any]) -> ir.IntegerValue:
    """The grid cell of a value, the same expression as ``goldgate.monitor.cell_keys`` (NULL stays NULL)."""
    clipped = ibis.least(ibis.greatest(value, grid["clip_lo"]), grid["clip_hi"])
    base = ((clipped - grid["lo"]) * grid["inv"]).floor().cast("int64")
    return base + (value > grid["max"]).cast("int64") - (value < grid["min"]).cast("int64")


def _numeric_part(table: ir.Table, feature: str, grid: dict[str, Any]) -> ir.Table:
    values = table.select(v=table[feature].cast("float64").nullif(float("nan")))
    cells = values.select(key=cell_expr(values.v, grid), v=values.v)
    return cells.group_by("key").aggregate(n=ibis._.count(), s=ibis._.v.sum()).mutate(feature=ibis.literal(feature))


def _categorical_part(table: ir.Table, feature: str, categories: list[str]) -> ir.Table:
    c = table[feature].cast("string")
    key = ibis.cases((c.isnull(), ibis.null("string")), (c.isin(categories), c), else_=OTHER)
    grouped = table.select(key=key).group_by("key").aggregate(n=ibis._.count())
    return grouped.mutate(feature=ibis.literal(feature))


def _union(parts: list[ir.Table]) -> ir.Table:
    return parts[0] if len(parts) == 1 else ibis.union(*parts)


def window_histograms(table: ir.Table, profile: dict[str, Any]) -> dict[str, Histogram]:
    """Histogram of every profiled feature that is a column of ``table`` (one engine query per feature kind)."""
    numeric = {
        f: p["grid"]
        for f, p in profile["features"].items()
        if f in table.columns and p.get("kind", "numeric") == "numeric" and "grid" in p
    }
    categorical = {
        f: [c for c in p["categories"] if c != OTHER]
        for f, p in profile["features"].items()
        if f in table.columns and p.get("kind") == "categorical"
    }
    out: dict[str, Histogram] = {f: Histogram(counts={}) for f in [*numeric, *categorical]}
    if numeric:
        base = table.select(*numeric)
        for row in _union([_numeric_part(base, f, g) for f, g in numeric.items()]).to_pyarrow().to_pylist():
            hist = out[row["feature"]]
            if row["key"] is None:
                hist.missing += int(row["n"])
            else:
                hist.counts[int(row["key"])] = int(row["n"])
                hist.sums[int(row["key"])] = float(row["s"])
    if categorical:
        base = table.select(*categorical)
        for row in _union([_categorical_part(base, f, c) for f, c in categorical.items()]).to_pyarrow().to_pylist():
            hist = out[row["feature"]]
            if row["key"] is None:
                hist.missing += int(row["n"])
            else:
                hist.counts[str(row["key"])] = int(row["n"])
    log.debug("histograms of %d numeric and %d categorical features", len(numeric), len(categorical))
    return out
