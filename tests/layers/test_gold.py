"""Gold: per-currency log returns between consecutive fixings."""

from __future__ import annotations

from datetime import date, timedelta

import ibis
import numpy as np
import pyarrow as pa

from goldgate.layers.gold import log_returns


def test_log_returns_match_numpy_per_currency() -> None:
    rng = np.random.default_rng(7)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(12)]
    prices = {"USD": 1.1 * np.exp(np.cumsum(rng.normal(0, 0.01, 12))), "JPY": 150 + rng.uniform(-5, 5, 12)}
    # JPY misses two fixings: its returns run between consecutive fixings, not calendar days.
    present = {"USD": list(range(12)), "JPY": [i for i in range(12) if i not in (4, 5)]}
    rows = [(days[i], c, float(prices[c][i])) for c in prices for i in present[c]]
    rows.reverse()  # input order must not matter
    con = ibis.duckdb.connect()
    rates = con.create_table(
        "rates",
        pa.table(
            {
                "date": pa.array([r[0] for r in rows], pa.date32()),
                "currency": [r[1] for r in rows],
                "rate": [r[2] for r in rows],
            }
        ),
    )
    out = log_returns(rates).to_pyarrow().to_pandas().sort_values(["currency", "date"])
    assert list(out.columns) == ["date", "currency", "rate", "log_return"]
    for currency, ix in present.items():
        got = out[out.currency == currency]
        p = prices[currency][ix]
        assert list(got.date) == [days[i] for i in ix[1:]]  # the first fixing has no return
        np.testing.assert_allclose(got.log_return.to_numpy(), np.log(p[1:] / p[:-1]), rtol=1e-12)
        np.testing.assert_allclose(got.rate.to_numpy(), p[1:], rtol=0)
    assert len(out) == 12 + 10 - 2
