"""features: gold -> the declared point-in-time features and the target (compiled to Ibis)."""

from __future__ import annotations

from typing import Any

from goldgate.context import Context


def features(ctx: Context) -> dict[str, Any]:
    """Rebuild the feature table from gold and merge it on (entity, time); rows gold no longer has are deleted."""
    from goldgate.data.features import build_dsl_features

    uc, lake = ctx.usecase, ctx.lake
    version = lake.version(uc.tables.gold)
    if version is None:
        raise LookupError(f"{uc.tables.gold} does not exist: run the gold step first")
    table = build_dsl_features(lake.read(uc.tables.gold, version), uc)
    merged = lake.merge(
        uc.tables.features, table, keys=[uc.entity, uc.time], inputs={uc.tables.gold: version}, delete_missing=True
    )
    return {"inserted": merged.inserted, "updated": merged.updated, "version": merged.version}
