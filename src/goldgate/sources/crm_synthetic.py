"""A synthetic CRM export in the Maven "CRM Sales Opportunities" layout, deterministic for a seed.

The four CSVs look like the public export (35 agents under 6 managers in 3 regional offices, 7 products, ~85
accounts, 2016-10 to 2017-12) and carry a learnable signal: a deal's win probability is a logistic function of its
agent's skill, its product's price (dearer products win less often), its account's size (bigger accounts win
more often) and its length from engage to close (stale deals, open long, are rarely won), plus noise. Like the
public export, it opens with months of engaged deals and no close: no deal closes before the sixth month, and
those that would have closed earlier close in its first 30 days, in order. Deals whose close would fall after the
export date are still open. ``Dirt`` adds the defects real exports have, at small rates, so that the pipeline's
expectations, mappings and quarantine have something to catch; ``Dirt.none()`` writes a clean export.

Everything is drawn with numpy and written through pyarrow compute, so a million opportunities take seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

PRODUCTS = (  # name, series, list price (USD), relative deal volume in the public export
    ("GTX Basic", "GTX", 550, 1866),
    ("GTX Pro", "GTX", 4821, 1480),
    ("MG Special", "MG", 55, 1651),
    ("MG Advanced", "MG", 3393, 2166),
    ("GTX Plus Pro", "GTX", 5482, 968),
    ("GTX Plus Basic", "GTX", 1096, 1796),
    ("GTK 500", "GTK", 26768, 40),
)
PRODUCT_SPELLING = {"GTX Pro": "GTXPro"}  # the public export's sales_pipeline spells it without the space
UNKNOWN_PRODUCTS = ("GTX Ultra", "MG Mini", "GTK 100")
SECTORS = (
    "technology",
    "medical",
    "retail",
    "software",
    "entertainment",
    "finance",
    "marketing",
    "telecommunications",
    "services",
    "employment",
)
SECTOR_TYPOS = {
    "technology": "technolgy",
    "medical": "medicial",
    "retail": "retial",
    "software": "sofware",
    "entertainment": "entertainmnet",
    "finance": "finanse",
    "marketing": "marketting",
    "telecommunications": "telecomunications",
    "services": "servces",
    "employment": "employmnet",
}
OFFICES = ("Central", "East", "West")
COUNTRIES = ("Philippines", "Japan", "Italy", "Kenya", "Norway", "Korea", "Jordan", "Brazil", "Germany", "Panama")
BAD_DATES = ("2017-02-30", "n/a", "2017-13-01", "31/12/2016")
FIRST_NAMES = (
    "Anna", "Boris", "Cara", "Daniel", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lars", "Maya",
    "Nils", "Olga", "Paul", "Rita", "Simon", "Tara", "Umar", "Vera", "Wendy", "Xavier", "Yara", "Zane", "Amir",
    "Bea", "Carl", "Dina", "Emil", "Fiona", "Gil", "Hana", "Ivan", "Jade", "Kurt", "Lena", "Marco", "Nora", "Omar",
)  # fmt: skip
LAST_NAMES = (
    "Abbott", "Bauer", "Castro", "Dalton", "Engel", "Fischer", "Garza", "Hale", "Ibarra", "Jensen", "Klein",
    "Lopez", "Moreau", "Novak", "Olsen", "Petrov", "Quinn", "Rossi", "Sato", "Tanaka", "Ulrich", "Varga", "Weber",
    "Young", "Zimmer", "Arndt", "Brooks", "Cohen", "Dumas", "Ellis",
)  # fmt: skip
ACCOUNT_PARTS = (
    ("Acme", "Beta", "Cone", "Dyna", "Ever", "Fab", "Gold", "Hat", "Iso", "Jump", "Kin", "Lux", "Mel", "Nova",
     "Omni", "Plex", "Quad", "Ron", "Sun", "Tres", "Umbra", "Vel", "Won", "Xy", "Zoom"),
    ("", "ca", "do", "fi", "la", "mo", "ne", "ri", "so", "ta", "vi", "zu"),
    ("tech", "corp", "soft", "plus", "lane", "core", "sys", "line", "max", "dex", "tron", "ware", "hub", "net",
     "ex", "is", "ium", "ity", "quote", "dom"),
)  # fmt: skip
AGENTS, MANAGERS = 35, 6
# Days over which the deals that would have closed during the ramp-up close once closes start, in their order.
BACKLOG_DAYS = 30
# A deal's length in days is log-normal around this median.
MEDIAN_DAYS = 45.0
# Stale deals: the win logit falls by this much per e-fold of a deal's length (drawn before the ramp-up moves any
# close), so a deal still open long after its engage date is less likely to be won than a young one. It is the
# signal a point-in-time feature can see without the account: days since engage at the snapshot.
STALE_SLOPE = 2.5


@dataclass(frozen=True)
class Dirt:
    """Defects of real CRM exports, each at a small rate (a rate above 0 always yields at least one case)."""

    product_spelling: bool = True  # "GTXPro" in sales_pipeline vs "GTX Pro" in products, on every such deal
    sector_typo_rate: float = 0.05  # of accounts: "technolgy" for "technology"
    agent_variant_rate: float = 0.02  # of deals: agent name in other case or with extra spaces
    missing_account_rate: float = 0.15  # of deals open at the export date: empty account, as in the public export
    unknown_product_rate: float = 0.002  # of deals: a product code products.csv does not list
    crlf: bool = True  # Windows line endings in every file
    bom: bool = True  # a UTF-8 byte-order mark on sales_pipeline.csv
    duplicate_rate: float = 0.001  # of deals: the line repeated exactly, right after itself
    bad_date_rate: float = 0.001  # of closed deals: an unparseable engage or close date
    negative_value_rate: float = 0.001  # of won deals: a negative close value

    @classmethod
    def none(cls) -> Dirt:
        """A clean export: every knob off."""
        return cls(
            product_spelling=False,
            sector_typo_rate=0.0,
            agent_variant_rate=0.0,
            missing_account_rate=0.0,
            unknown_product_rate=0.0,
            crlf=False,
            bom=False,
            duplicate_rate=0.0,
            bad_date_rate=0.0,
            negative_value_rate=0.0,
        )


@dataclass(frozen=True)
class _Deals:
    """The generated opportunities as arrays, before any dirt."""

    ids: np.ndarray
    agent: np.ndarray
    product: np.ndarray
    account: np.ndarray
    stage: np.ndarray  # 0 Prospecting, 1 Engaging, 2 Won, 3 Lost
    engage: np.ndarray  # datetime64[D]
    close: np.ndarray  # datetime64[D]
    value: np.ndarray  # int64


STAGES = np.array(["Prospecting", "Engaging", "Won", "Lost"], dtype=object)
PROSPECTING, ENGAGING, WON, LOST = range(4)


def generate_crm(
    out: Path,
    rows: int = 8800,
    seed: int = 42,
    dirt: Dirt | None = None,
    start: date = date(2016, 10, 1),
    months: int = 15,
    ramp_months: int = 5,
) -> dict[str, int]:
    """Write the four CSVs of a synthetic export into ``out``; returns data rows written per file.

    ``rows`` is the number of opportunities; with duplicate-line dirt, sales_pipeline.csv has a few more lines.
    ``ramp_months`` is the number of opening months in which deals are engaged but none closes (at most
    ``months - 1``; 0: closes from the first day).
    """
    if rows < 1 or months < 1 or ramp_months < 0:
        raise ValueError(
            f"generate_crm: rows ({rows}) and months ({months}) must be at least 1, ramp_months ({ramp_months}) "
            "at least 0"
        )
    dirt = Dirt() if dirt is None else dirt
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agents, teams = make_sales_teams(rng)
    accounts = make_accounts(rng, max(85, rows // 100))
    deals = make_deals(rng, rows, agents, accounts, start, months, min(ramp_months, months - 1))
    tables = {
        "sales_pipeline": pipeline_table(rng, deals, agents, accounts, dirt),
        "accounts": accounts_table(rng, accounts, dirt),
        "products": products_table(),
        "sales_teams": teams,
    }
    eol = "\r\n" if dirt.crlf else "\n"
    written = {}
    for name, table in tables.items():
        write_csv(out / f"{name}.csv", table, eol=eol, bom=dirt.bom and name == "sales_pipeline")
        written[name] = table.num_rows
    log.debug("wrote synthetic CRM export to %s: %s", out, ", ".join(f"{k}={v}" for k, v in written.items()))
    return written


def make_sales_teams(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], pa.Table]:
    """35 agents under 6 managers (two per office); agent skill and activity drive the deals."""
    people = _unique_names(rng, AGENTS + MANAGERS)
    names, managers = people[:AGENTS], people[AGENTS:]
    manager_of = np.arange(AGENTS) % MANAGERS
    rng.shuffle(manager_of)
    office_of_manager = np.array(OFFICES, dtype=object)[np.arange(MANAGERS) // 2]
    agents = {
        "name": names,
        "skill": rng.normal(0.0, 0.6, AGENTS),
        "activity": rng.lognormal(0.0, 0.4, AGENTS),
    }
    teams = pa.table(
        {
            "sales_agent": pa.array(names, pa.string()),
            "manager": pa.array(managers[manager_of], pa.string()),
            "regional_office": pa.array(office_of_manager[manager_of], pa.string()),
        }
    )
    return agents, teams


def make_accounts(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Accounts with sector, founding year, revenue (millions USD) and employees that grow with revenue."""
    revenue = np.round(rng.lognormal(np.log(900.0), 1.2, n), 2)
    employees = np.maximum(9, np.round(revenue * rng.lognormal(np.log(4.0), 0.5, n))).astype(np.int64)
    abroad = rng.random(n) < 0.2
    location = np.where(abroad, rng.choice(np.array(COUNTRIES, dtype=object), n), "United States").astype(object)
    names = _account_names(rng, n)
    parent = np.full(n, None, dtype=object)
    subsidiaries = rng.choice(n, size=max(1, n // 6), replace=False)
    parents = rng.choice(np.setdiff1d(np.arange(n), subsidiaries), size=subsidiaries.size)
    parent[subsidiaries] = names[parents]
    return {
        "name": names,
        "sector": rng.choice(np.array(SECTORS, dtype=object), n),
        "year": rng.integers(1979, 2018, n),
        "revenue": revenue,
        "employees": employees,
        "location": location,
        "parent": parent,
        "size": (np.log(revenue) - np.log(revenue).mean()) / max(float(np.log(revenue).std()), 1e-9),
    }


def make_deals(
    rng: np.random.Generator,
    n: int,
    agents: dict[str, np.ndarray],
    accounts: dict[str, np.ndarray],
    start: date,
    months: int,
    ramp_months: int = 0,
) -> _Deals:
    """Opportunities with rising volume over the period; stage follows from close date vs export date and a coin.

    No deal closes in the first ``ramp_months`` months (see ``ramp_up``).
    """
    first = np.datetime64(start, "D")
    end = (np.datetime64(start, "M") + months).astype("datetime64[D]") - 1  # the export date: last day of the period
    span = int((end - first).astype(np.int64))
    agent = rng.choice(AGENTS, size=n, p=agents["activity"] / agents["activity"].sum())
    weights = np.array([p[3] for p in PRODUCTS], dtype=float)
    product = rng.choice(len(PRODUCTS), size=n, p=weights / weights.sum())
    size_weight = np.sqrt(accounts["revenue"])
    account = rng.choice(len(accounts["name"]), size=n, p=size_weight / size_weight.sum())
    # Volume density rises linearly to 2.5x the opening level: inverse CDF of (1 + 1.5 t) on [0, 1].
    t = (np.sqrt(1.0 + 5.25 * rng.random(n)) - 1.0) / 1.5
    engage = first + np.floor(t * span).astype(np.int64).astype("timedelta64[D]")
    duration = np.maximum(1, np.round(rng.lognormal(np.log(MEDIAN_DAYS), 0.7, n))).astype(np.int64)
    close = engage + duration.astype("timedelta64[D]")
    close = ramp_up(close, first, (np.datetime64(start, "M") + ramp_months).astype("datetime64[D]"))
    price = np.array([p[2] for p in PRODUCTS], dtype=float)
    log_price = np.log(price[product])
    logit = (
        0.6
        + agents["skill"][agent]
        - 0.35 * (log_price - log_price.mean())
        + 0.4 * accounts["size"][account]
        - STALE_SLOPE * (np.log(duration) - np.log(MEDIAN_DAYS))
        + rng.normal(0.0, 0.3, n)
    )
    won = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    stage = np.where(close > end, ENGAGING, np.where(won, WON, LOST))
    stage[rng.random(n) < 0.07] = PROSPECTING
    sale = np.round(price[product] * rng.uniform(0.75, 1.1, n)).astype(np.int64)
    value = np.where(stage == WON, sale, 0)
    return _Deals(
        ids=_opportunity_ids(rng, n),
        agent=agent,
        product=product,
        account=account,
        stage=stage,
        engage=engage,
        close=close,
        value=value,
    )


def ramp_up(close: np.ndarray, first: np.datetime64, opened: np.datetime64) -> np.ndarray:
    """Close dates with none before ``opened``: those earlier are spread over ``BACKLOG_DAYS`` from it, in order.

    Deterministic, so the ramp-up moves only these close dates and draws nothing from the generator.
    """
    early = close < opened
    if opened <= first or not early.any():
        return close
    elapsed = (close[early] - first).astype(np.int64)
    quiet = int((opened - first).astype(np.int64))
    moved = close.copy()
    moved[early] = opened + (np.maximum(elapsed, 0) * BACKLOG_DAYS // quiet).astype("timedelta64[D]")
    return moved


def pipeline_table(
    rng: np.random.Generator, deals: _Deals, agents: dict[str, np.ndarray], accounts: dict[str, np.ndarray], dirt: Dirt
) -> pa.Table:
    """sales_pipeline.csv as text columns, with the requested dirt applied."""
    n = deals.ids.size
    stage = deals.stage
    is_open = (stage == PROSPECTING) | (stage == ENGAGING)
    closed = ~is_open
    names = np.array([p[0] for p in PRODUCTS], dtype=object)
    if dirt.product_spelling:
        names = np.array([PRODUCT_SPELLING.get(p, p) for p in names], dtype=object)
    product = names[deals.product]
    agent = agents["name"][deals.agent].copy()
    account = accounts["name"][deals.account].copy()
    engage = _date_text(deals.engage)
    close = _date_text(deals.close)
    value = deals.value.astype(str).astype(object)
    engage[stage == PROSPECTING] = None
    close[is_open] = None
    value[is_open] = None

    picked = _pick(rng, np.flatnonzero(is_open), dirt.missing_account_rate)
    account[picked] = None
    picked = _pick(rng, np.arange(n), dirt.unknown_product_rate)
    product[picked] = rng.choice(np.array(UNKNOWN_PRODUCTS, dtype=object), picked.size)
    picked = _pick(rng, np.arange(n), dirt.agent_variant_rate)
    agent[picked] = [_variant(name, k) for k, name in enumerate(agent[picked])]
    picked = _pick(rng, np.flatnonzero(closed), dirt.bad_date_rate)
    bad = rng.choice(np.array(BAD_DATES, dtype=object), picked.size)
    on_close = rng.random(picked.size) < 0.5
    close[picked[on_close]] = bad[on_close]
    engage[picked[~on_close]] = bad[~on_close]
    picked = _pick(rng, np.flatnonzero(stage == WON), dirt.negative_value_rate)
    value[picked] = (-deals.value[picked]).astype(str)

    order = np.arange(n)
    repeated = _pick(rng, order, dirt.duplicate_rate)
    if repeated.size:
        order = np.sort(np.concatenate([order, repeated]), kind="stable")  # each repeat right after its original
    columns = {
        "opportunity_id": deals.ids,
        "sales_agent": agent,
        "product": product,
        "account": account,
        "deal_stage": STAGES[stage],
        "engage_date": engage,
        "close_date": close,
        "close_value": value,
    }
    return pa.table({k: pa.array(v[order], pa.string()) for k, v in columns.items()})


def accounts_table(rng: np.random.Generator, accounts: dict[str, np.ndarray], dirt: Dirt) -> pa.Table:
    """accounts.csv as text columns, with sector typos on a few accounts."""
    sector = accounts["sector"].copy()
    picked = _pick(rng, np.arange(sector.size), dirt.sector_typo_rate)
    sector[picked] = [SECTOR_TYPOS[s] for s in sector[picked]]
    return pa.table(
        {
            "account": pa.array(accounts["name"], pa.string()),
            "sector": pa.array(sector, pa.string()),
            "year_established": pa.array(accounts["year"].astype(str), pa.string()),
            "revenue": pa.array(np.char.mod("%.2f", accounts["revenue"]), pa.string()),
            "employees": pa.array(accounts["employees"].astype(str), pa.string()),
            "office_location": pa.array(accounts["location"], pa.string()),
            "subsidiary_of": pa.array(accounts["parent"], pa.string()),
        }
    )


def products_table() -> pa.Table:
    """products.csv: the seven products with their series and list price."""
    return pa.table(
        {
            "product": [p[0] for p in PRODUCTS],
            "series": [p[1] for p in PRODUCTS],
            "sales_price": [str(p[2]) for p in PRODUCTS],
        }
    )


def write_csv(path: Path, table: pa.Table, eol: str = "\n", bom: bool = False) -> None:
    """Write a text table as CSV the way spreadsheet exports do: quotes only where a cell needs them."""
    cells = [_csv_cell(table[name].combine_chunks()) for name in table.column_names]
    header = ",".join(table.column_names)
    lines = pc.binary_join_element_wise(*cells, ",") if cells else pa.array([], pa.string())
    body = eol.join([header, *lines.to_pylist()]) + eol
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))


def _csv_cell(column: pa.Array) -> pa.Array:
    """Cells as CSV text: NULL is empty, cells with a comma, quote or line break are quoted."""
    text = pc.fill_null(column.cast(pa.string()), "")
    needs_quotes = pc.match_substring_regex(text, r'[,"\r\n]')
    if not pc.any(needs_quotes).as_py():
        return text
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(needs_quotes, quoted, text)


def _pick(rng: np.random.Generator, population: np.ndarray, rate: float) -> np.ndarray:
    """A sorted random subset of ``population`` at ``rate`` (at least one element when the rate is above 0)."""
    if rate <= 0 or population.size == 0:
        return np.array([], dtype=np.int64)
    k = min(population.size, max(1, round(rate * population.size)))
    return np.sort(rng.choice(population, size=k, replace=False))


def _variant(name: str, k: int) -> str:
    """An agent name as another system spells it: other case, doubled inner space or a trailing space."""
    return (name.upper(), name.lower(), name.replace(" ", "  "), name + " ")[k % 4]


def _date_text(days: np.ndarray) -> np.ndarray:
    """ISO date strings; formatted once per distinct day in the span, since a million deals share a few hundred."""
    first = days.min()
    labels = np.datetime_as_string(np.arange(first, days.max() + 1), unit="D").astype(object)
    return labels[(days - first).astype(np.int64)]


def _unique_names(rng: np.random.Generator, n: int) -> np.ndarray:
    pairs = rng.choice(len(FIRST_NAMES) * len(LAST_NAMES), size=n, replace=False)
    return np.array(
        [f"{FIRST_NAMES[p // len(LAST_NAMES)]} {LAST_NAMES[p % len(LAST_NAMES)]}" for p in pairs], dtype=object
    )


def _account_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unique company-like names; past the 6,000 syllable combinations a number keeps them unique."""
    a, b, c = (len(p) for p in ACCOUNT_PARTS)
    capacity = a * b * c
    codes = rng.permutation(capacity)[: min(n, capacity)]
    names = [ACCOUNT_PARTS[0][i // (b * c)] + ACCOUNT_PARTS[1][(i // c) % b] + ACCOUNT_PARTS[2][i % c] for i in codes]
    names += [f"{names[i % capacity]} {i // capacity + 1}" for i in range(capacity, n)]
    return np.array(names, dtype=object)


def _opportunity_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unique 8-character upper-case alphanumeric ids, like the public export's.

    ``(a * i + b) mod 36**8`` with ``a`` coprime to 36 is a bijection, so the ids are unique without a uniqueness
    check; a random ``a`` and ``b`` make them look unordered.
    """
    space = 36**8
    a = int(rng.integers(space // 3, space // 2)) | 1  # odd: coprime to 2
    if a % 3 == 0:
        a += 2  # now coprime to 3 as well (a stays odd)
    i = np.arange(n, dtype=np.int64)
    # a * i overflows int64 past a few million rows: multiply by a's high and low 21 bits separately, mod space.
    high, low = divmod(a, 1 << 21)
    codes = ((high * i % space) * (1 << 21) % space + low * i + int(rng.integers(0, space))) % space
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    digits = (codes[:, None] // 36 ** np.arange(7, -1, -1, dtype=np.int64)) % 36
    return alphabet[digits].view("S8").ravel().astype(str).astype(object)


DEMO_FILES = ("sales_pipeline.csv", "accounts.csv", "products.csv", "sales_teams.csv")


def demo_export(workspace: Path, rows: int = 8800, seed: int = 42) -> Path:
    """The demo export folder in the workspace, generated once (``source.demo: crm`` without a path)."""
    target = Path(workspace) / "sources" / f"crm-demo-s{seed}-n{rows}"
    if _is_complete(target):
        return target
    return _generate_demo(target, rows, seed)


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in DEMO_FILES)


def _generate_demo(target: Path, rows: int, seed: int) -> Path:
    """Generate into a temporary sibling folder and rename it into place, so a half-written export is never seen."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        written = generate_crm(tmp, rows=rows, seed=seed)
        if target.exists() and not _is_complete(target):
            log.warning("%s: incomplete demo export found, replacing it", target)
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same demo first: its export is identical (same seed), use it.
            if not _is_complete(target):
                raise
            log.info("%s: generated concurrently by another process, reusing it", target)
            return target
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("generated demo CRM export %s (%s)", target, ", ".join(f"{k}={v}" for k, v in written.items()))
    return target
