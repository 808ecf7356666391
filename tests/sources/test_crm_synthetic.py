"""The synthetic CRM export: deterministic, plausible, with a learnable signal and each dirt knob doing its job."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.data.sources import read_source
from goldgate.sources.crm_synthetic import (
    DEMO_FILES,
    PRODUCTS,
    SECTORS,
    Dirt,
    demo_export,
    generate_crm,
    make_sales_teams,
)
from goldgate.usecase import Source

Rows = list[dict[str, str | None]]
CRM_FILES = tuple(name.removesuffix(".csv") for name in DEMO_FILES)


def read_file(path: Path) -> list[dict[str, str | None]]:
    """One CSV of an export as the engine's reader sees it: every cell as text, only an empty cell missing."""
    table = read_source(Source(path=str(path), missing=[""])).table
    return list(table.select([c for c in table.column_names if not c.startswith("_")]).to_pylist())


def read_rows(folder: Path) -> dict[str, Rows]:
    return {name: read_file(folder / f"{name}.csv") for name in CRM_FILES}


def win_rate(deals: Rows) -> float:
    closed = [d for d in deals if d["deal_stage"] in ("Won", "Lost")]
    return sum(d["deal_stage"] == "Won" for d in closed) / len(closed)


def is_date(text: str | None) -> bool:
    try:
        date.fromisoformat(text or "")
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, int], dict[str, Rows]]:
    folder = tmp_path_factory.mktemp("clean")
    written = generate_crm(folder, rows=8800, seed=42, dirt=Dirt.none())
    return written, read_rows(folder)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = (generate_crm(tmp_path / name, rows=400, seed=seed) for name, seed in (("a", 1), ("b", 1), ("c", 2)))
    assert a == b == c
    for name in CRM_FILES:
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (tmp_path / "b" / f"{name}.csv").read_bytes()
    assert (tmp_path / "a" / "sales_pipeline.csv").read_bytes() != (tmp_path / "c" / "sales_pipeline.csv").read_bytes()
    assert len(list((tmp_path / "a").iterdir())) == 4  # only the four CSVs


def test_counts_and_reference_tables_are_plausible(clean: tuple[dict[str, int], dict[str, Rows]]) -> None:
    written, rows = clean
    assert written == {name: len(rows[name]) for name in CRM_FILES}
    assert written == {"sales_pipeline": 8800, "accounts": max(85, 8800 // 100), "products": 7, "sales_teams": 35}
    teams = rows["sales_teams"]
    assert len({t["sales_agent"] for t in teams}) == 35
    assert all(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", t["sales_agent"] or "") for t in teams)
    assert len({t["manager"] for t in teams}) == 6
    assert {t["regional_office"] for t in teams} == {"Central", "East", "West"}
    assert [(p["product"], p["series"], p["sales_price"]) for p in rows["products"]] == [
        (name, series, str(price)) for name, series, price, _ in PRODUCTS
    ]
    accounts = rows["accounts"]
    assert {a["sector"] for a in accounts} <= set(SECTORS)
    assert all(1979 <= int(a["year_established"] or 0) <= 2017 for a in accounts)
    revenue = np.log([float(a["revenue"] or 0) for a in accounts])
    employees = np.log([int(a["employees"] or 0) for a in accounts])
    assert np.corrcoef(revenue, employees)[0, 1] > 0.6
    subsidiaries = [a["subsidiary_of"] for a in accounts if a["subsidiary_of"]]
    assert 0 < len(subsidiaries) < len(accounts) / 3
    assert set(subsidiaries) <= {a["account"] for a in accounts}


def test_accounts_scale_with_rows(tmp_path: Path) -> None:
    assert generate_crm(tmp_path, rows=20_000, seed=1, dirt=Dirt.none())["accounts"] == 200


def test_stages_dates_and_values_follow_the_export_rules(clean: tuple[dict[str, int], dict[str, Rows]]) -> None:
    _, rows = clean
    deals = rows["sales_pipeline"]
    share = {s: sum(d["deal_stage"] == s for d in deals) / len(deals) for s in ("Prospecting", "Engaging", "Won")}
    assert 0.05 <= share["Prospecting"] <= 0.10
    assert 0.08 <= share["Engaging"] <= 0.30
    assert 0.55 <= win_rate(deals) <= 0.75
    export_date = date(2017, 12, 31)
    for d in deals:
        stage = d["deal_stage"]
        if stage == "Prospecting":
            assert d["engage_date"] is d["close_date"] is d["close_value"] is None, d
            continue
        engaged = date.fromisoformat(d["engage_date"] or "")
        assert date(2016, 10, 1) <= engaged <= export_date, d
        if stage == "Engaging":
            assert d["close_date"] is d["close_value"] is None, d
            continue
        closed = date.fromisoformat(d["close_date"] or "")
        assert engaged < closed <= export_date, d
        assert (int(d["close_value"] or "") > 0) if stage == "Won" else d["close_value"] == "0", d
    engaged = [date.fromisoformat(d["engage_date"] or "") for d in deals if d["engage_date"]]
    assert sum(e >= date(2017, 5, 16) for e in engaged) > 1.3 * sum(e < date(2017, 5, 16) for e in engaged)
    days = [
        (date.fromisoformat(d["close_date"] or "") - date.fromisoformat(d["engage_date"] or "")).days
        for d in deals
        if d["close_date"]
    ]
    assert 30 <= float(np.median(days)) <= 60


def test_deals_are_engaged_for_five_months_before_the_first_close(
    clean: tuple[dict[str, int], dict[str, Rows]], tmp_path: Path
) -> None:
    # The public export engages deals from October 2016 and closes none before March 2017.
    deals = clean[1]["sales_pipeline"]
    engaged = sorted(date.fromisoformat(d["engage_date"] or "") for d in deals if d["engage_date"])
    closed = sorted(date.fromisoformat(d["close_date"] or "") for d in deals if d["close_date"])
    assert (engaged[0], closed[0]) == (date(2016, 10, 1), date(2017, 3, 1))
    assert sum(e < closed[0] for e in engaged) > 0.15 * len(engaged)
    # The backlog closes within the first 30 days of closes, then the usual flow goes on.
    assert sum(c < date(2017, 3, 31) for c in closed) > sum(date(2017, 3, 31) <= c < date(2017, 4, 30) for c in closed)
    generate_crm(tmp_path, rows=500, seed=3, dirt=Dirt.none(), ramp_months=0)
    no_ramp = [d["close_date"] or "" for d in read_rows(tmp_path)["sales_pipeline"] if d["close_date"]]
    assert min(no_ramp) < "2016-11-01"


def test_won_close_value_is_near_the_list_price(clean: tuple[dict[str, int], dict[str, Rows]]) -> None:
    _, rows = clean
    price = {p["product"]: int(p["sales_price"] or 0) for p in rows["products"]}
    for d in rows["sales_pipeline"]:
        if d["deal_stage"] == "Won":
            ratio = int(d["close_value"] or 0) / price[d["product"] or ""]
            assert 0.74 <= ratio <= 1.11, d


def test_win_rate_rises_with_agent_skill_and_account_size_and_falls_with_price(
    clean: tuple[dict[str, int], dict[str, Rows]],
) -> None:
    _, rows = clean
    deals = rows["sales_pipeline"]
    # generate_crm draws the sales teams first from a fresh generator, so this reproduces the agents' skill.
    agents, _ = make_sales_teams(np.random.default_rng(42))
    skill = dict(zip(agents["name"], agents["skill"], strict=True))
    names = sorted(skill)
    rates = [win_rate([d for d in deals if d["sales_agent"] == name]) for name in names]
    assert np.corrcoef(rates, [skill[n] for n in names])[0, 1] > 0.6

    by_product = {p: win_rate([d for d in deals if d["product"] == p]) for p in ("MG Special", "GTX Plus Pro")}
    assert by_product["MG Special"] > by_product["GTX Plus Pro"] + 0.1  # $55 vs $5,482

    revenue = {a["account"]: float(a["revenue"] or 0) for a in rows["accounts"]}
    median = float(np.median(list(revenue.values())))
    big = win_rate([d for d in deals if revenue[d["account"] or ""] >= median])
    small = win_rate([d for d in deals if revenue[d["account"] or ""] < median])
    assert big > small + 0.03


def test_won_share_falls_with_deal_length(clean: tuple[dict[str, int], dict[str, Rows]]) -> None:
    # Stale deals are rarely won: the signal days since engage carries at a month end, with no account needed.
    # Only deals engaged once closes have begun: the ramp-up stretches the length of earlier ones.
    deals = [
        d
        for d in clean[1]["sales_pipeline"]
        if d["deal_stage"] in ("Won", "Lost") and (d["engage_date"] or "") >= "2017-03-01"
    ]
    days = np.array(
        [(date.fromisoformat(d["close_date"] or "") - date.fromisoformat(d["engage_date"] or "")).days for d in deals]
    )
    won = np.array([d["deal_stage"] == "Won" for d in deals])
    short, middle, long = (won[m].mean() for m in (days <= 30, (days > 30) & (days <= 60), days > 60))
    assert short > middle > long
    assert short > long + 0.3


def _raw(folder: Path, name: str) -> bytes:
    return (folder / f"{name}.csv").read_bytes()


def _agents_differ(folder: Path, rows: dict[str, Rows]) -> bool:
    known = {t["sales_agent"] for t in rows["sales_teams"]}
    odd = {d["sales_agent"] for d in rows["sales_pipeline"]} - known
    canonical = {" ".join((k or "").split()).casefold() for k in known}
    # Each variant is only a spelling of a real agent: same name once case and spacing are normalised.
    return bool(odd) and all(" ".join((o or "").split()).casefold() in canonical for o in odd)


def _missing_accounts(folder: Path, rows: dict[str, Rows]) -> bool:
    deals = rows["sales_pipeline"]
    missing = [d for d in deals if d["account"] is None]
    return bool(missing) and all(d["deal_stage"] in ("Prospecting", "Engaging") for d in missing)


def _duplicate_lines(folder: Path, rows: dict[str, Rows]) -> bool:
    lines = _raw(folder, "sales_pipeline").splitlines()[1:]
    return len(lines) != len(set(lines))


DETECTORS: dict[str, Callable[[Path, dict[str, Rows]], bool]] = {
    "product_spelling": lambda f, r: (
        "GTXPro" in {d["product"] for d in r["sales_pipeline"]} and "GTX Pro" in {p["product"] for p in r["products"]}
    ),
    "sector_typo_rate": lambda f, r: bool({a["sector"] for a in r["accounts"]} - set(SECTORS)),
    "agent_variant_rate": _agents_differ,
    "missing_account_rate": _missing_accounts,
    "unknown_product_rate": lambda f, r: bool(
        {d["product"] for d in r["sales_pipeline"]} - {p["product"] for p in r["products"]} - {"GTXPro"}
    ),
    "crlf": lambda f, r: all(b"\r\n" in _raw(f, name) for name in CRM_FILES),
    "bom": lambda f, r: _raw(f, "sales_pipeline").startswith(b"\xef\xbb\xbf"),
    "duplicate_rate": _duplicate_lines,
    "bad_date_rate": lambda f, r: any(
        d[c] is not None and not is_date(d[c]) for d in r["sales_pipeline"] for c in ("engage_date", "close_date")
    ),
    "negative_value_rate": lambda f, r: any(int(d["close_value"] or 0) < 0 for d in r["sales_pipeline"]),
}
ON = {f.name: (True if isinstance(f.default, bool) else f.default) for f in dataclasses.fields(Dirt)}


def test_every_knob_has_a_detector() -> None:
    assert set(DETECTORS) == set(ON)
    assert all(v for v in ON.values()), "every knob is on by default"


@pytest.mark.parametrize("knob", sorted(ON))
def test_each_dirt_knob_alone_produces_only_its_dirt(tmp_path: Path, knob: str) -> None:
    dirt = dataclasses.replace(Dirt.none(), **{knob: ON[knob]})
    generate_crm(tmp_path, rows=500, seed=3, dirt=dirt)
    rows = read_rows(tmp_path)
    found = {name: detect(tmp_path, rows) for name, detect in DETECTORS.items()}
    assert found == {name: name == knob for name in DETECTORS}


def test_default_dirt_has_everything_and_none_has_nothing(tmp_path: Path) -> None:
    generate_crm(tmp_path / "dirty", rows=500, seed=3)
    generate_crm(tmp_path / "clean", rows=500, seed=3, dirt=Dirt.none())
    dirty, clean = read_rows(tmp_path / "dirty"), read_rows(tmp_path / "clean")
    assert {n: d(tmp_path / "dirty", dirty) for n, d in DETECTORS.items()} == dict.fromkeys(DETECTORS, True)
    assert {n: d(tmp_path / "clean", clean) for n, d in DETECTORS.items()} == dict.fromkeys(DETECTORS, False)


def test_missing_accounts_hit_about_fifteen_percent_of_open_deals(tmp_path: Path) -> None:
    generate_crm(tmp_path, rows=4000, seed=9, dirt=dataclasses.replace(Dirt.none(), missing_account_rate=0.15))
    deals = read_rows(tmp_path)["sales_pipeline"]
    open_deals = [d for d in deals if d["deal_stage"] in ("Prospecting", "Engaging")]
    assert sum(d["account"] is None for d in open_deals) / len(open_deals) == pytest.approx(0.15, abs=0.01)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows"):
        generate_crm(tmp_path, rows=0)
    with pytest.raises(ValueError, match="ramp_months"):
        generate_crm(tmp_path, ramp_months=-1)


def test_cli_generate_crm_writes_the_export(tmp_path: Path) -> None:
    runner = CliRunner()
    clean = runner.invoke(
        app, ["generate", "crm", "--rows", "250", "--seed", "4", "--out", str(tmp_path / "c"), "--clean"]
    )
    assert clean.exit_code == 0, clean.output
    dirty = runner.invoke(app, ["generate", "crm", "--rows", "250", "--seed", "4", "--out", str(tmp_path / "d")])
    assert dirty.exit_code == 0, dirty.output
    assert "sales_pipeline.csv=250" in clean.output
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(f"{n}.csv" for n in CRM_FILES)
    assert not _raw(tmp_path / "c", "sales_pipeline").startswith(b"\xef\xbb\xbf")
    assert _raw(tmp_path / "d", "sales_pipeline").startswith(b"\xef\xbb\xbf")
    assert len(read_file(tmp_path / "c" / "sales_pipeline.csv")) == 250
    refused = runner.invoke(app, ["generate", "crm", "--rows", "0", "--out", str(tmp_path / "e")])
    assert refused.exit_code != 0


def test_demo_export_is_generated_once_and_reused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    folder = demo_export(workspace, rows=300, seed=7)
    assert folder == workspace / "sources" / "crm-demo-s7-n300"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert sorted(stamps) == sorted(DEMO_FILES)
    assert demo_export(workspace, rows=300, seed=7) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert [p.name for p in (workspace / "sources").iterdir()] == [folder.name]  # no temp folder left behind
    assert len(read_file(folder / "sales_pipeline.csv")) >= 300


def test_an_incomplete_demo_export_is_replaced(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    broken = workspace / "sources" / "crm-demo-s7-n300"
    broken.mkdir(parents=True)
    (broken / "accounts.csv").write_text("account\n")
    folder = demo_export(workspace, rows=300, seed=7)
    assert folder == broken
    reference = tmp_path / "reference"
    generate_crm(reference, rows=300, seed=7, dirt=Dirt())
    for name in DEMO_FILES:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name
