"""Column names made from data values: one-hot feature names and the predictions' class probability columns."""

from __future__ import annotations

import re

# Symbols that carry meaning in category values ('< 1 year', '10+ years', '5%'), spelled out in column names.
SYMBOLS = {"<=": " le ", ">=": " ge ", "<": " lt ", ">": " gt ", "+": " plus ", "%": " pct ", "&": " and "}


def slugs(values: list[object]) -> list[str]:
    """Name parts of category values: lower-case letters, digits and underscores, unique in order."""
    out: list[str] = []
    for value in values:
        text = str(value).lower()
        for symbol, word in SYMBOLS.items():
            text = text.replace(symbol, word)
        slug = re.sub(r"[^0-9a-z]+", "_", text).strip("_") or "blank"
        base, k = slug, 2
        while slug in out:
            slug, k = f"{base}_{k}", k + 1
        out.append(slug)
    return out
