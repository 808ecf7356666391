"""Synthetic ECB-format files: N currencies x D business days of random-walk rates, wide, newest first."""

from __future__ import annotations

import argparse
import itertools
import string
from datetime import date, timedelta
from pathlib import Path

import numpy as np


def currency_codes(n: int) -> list[str]:
    """``n`` distinct three-letter codes (AAA, AAB, ...)."""
    return ["".join(c) for c in itertools.islice(itertools.product(string.ascii_uppercase, repeat=3), n)]


def business_days(n: int, end: date = date(2026, 10, 30)) -> list[date]:
    days: list[date] = []
    d = end
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d -= timedelta(days=1)
    return days  # newest first, as the ECB publishes


def write_ecb_file(path: Path, currencies: int, days: int, seed: int = 0) -> int:
    """Write the file; returns the number of long rows (currency x day cells) it holds."""
    rng = np.random.default_rng(seed)
    codes = currency_codes(currencies)
    steps = rng.normal(0, 0.006, size=(days, currencies))
    levels = np.exp(np.cumsum(steps[::-1], axis=0))[::-1] * rng.uniform(0.5, 150, size=currencies)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write("Date," + ",".join(codes) + ",\n")
        for day, row in zip(business_days(days), levels, strict=True):
            out.write(day.isoformat() + "," + ",".join(f"{v:.6g}" for v in row) + ",\n")
    return currencies * days


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--currencies", type=int, default=2000)
    parser.add_argument("--days", type=int, default=5000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = write_ecb_file(args.out, args.currencies, args.days)
    print(f"{args.out}: {rows:,} long rows")


if __name__ == "__main__":
    main()
