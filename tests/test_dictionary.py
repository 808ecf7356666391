"""The data dictionary: every table and column of a real run is listed and described, and the committed
docs/data_dictionary.md covers every column the fx loop produces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.context import Context
from goldgate.dictionary import MISSING, describe, render_dictionary
from goldgate.runner import run_pipeline
from goldgate.settings import load_settings
from goldgate.usecase import UseCase, load_usecase

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "data_dictionary.md"


def _renamed(slice_usecase_path: Path) -> dict[str, Any]:
    """The slice use case with its ``descriptions`` keyed by the slice's own table names (fx_ -> fxs_)."""
    data: dict[str, Any] = yaml.safe_load(slice_usecase_path.read_text())
    fx_tables = load_usecase("fx").tables.model_dump()
    rename = {fx_tables[role]: name for role, name in data["tables"].items()}
    data["descriptions"] = {rename.get(table, table): cols for table, cols in data["descriptions"].items()}
    return data


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("dictionary")
    usecase_path = folder / "fx_slice_described.yaml"
    usecase_path.write_text(yaml.safe_dump(_renamed(slice_usecase_path), sort_keys=False))
    ctx = Context(load_settings(workspace=folder / "ws"), load_usecase(usecase_path))
    run_pipeline(ctx)
    return {"ctx": ctx, "usecase_path": usecase_path, "ws": folder / "ws"}


def sections(markdown: str) -> dict[str, dict[str, str]]:
    """``## `table``` sections of the dictionary -> {column: description} from their Markdown tables."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in markdown.splitlines():
        heading = re.fullmatch(r"## `([a-z_.0-9]+)`", line)
        if heading:
            current = found.setdefault(heading.group(1), {})
            continue
        cell = re.fullmatch(r"\| `([^`]+)` \| [^|]+ \| (.*) \|", line)
        if cell and current is not None:
            current[cell.group(1)] = cell.group(2)
    return found


def columns_of(ctx: Context) -> dict[str, list[str]]:
    return {name: list(ctx.lake.read(name).columns) for name in ctx.lake.tables()}


def test_the_run_produced_every_data_table(run: dict[str, Any]) -> None:
    tables = set(run["ctx"].lake.tables())
    uc: UseCase = run["ctx"].usecase
    assert {uc.tables.bronze, uc.tables.silver, uc.tables.quarantine, uc.tables.gold, uc.tables.features} <= tables
    assert {"ops.quality", "ops.promotions"} <= tables


def test_every_table_and_column_is_listed_with_a_description(run: dict[str, Any]) -> None:
    ctx: Context = run["ctx"]
    text, missing = render_dictionary(ctx.lake, ctx.usecase)
    assert missing == []
    assert MISSING not in text
    listed = sections(text)
    expected = columns_of(ctx)
    assert sorted(listed) == sorted(expected)
    for table, cols in expected.items():
        assert list(listed[table]) == cols, table
        assert all(description.strip() for description in listed[table].values()), table
    assert text.startswith(f"# Data dictionary: {ctx.usecase.name}")


def test_the_table_descriptions_come_from_the_yaml(run: dict[str, Any]) -> None:
    ctx: Context = run["ctx"]
    text, _ = render_dictionary(ctx.lake, ctx.usecase)
    silver = ctx.usecase.descriptions["silver.fxs_rates"]
    assert silver["_table"] in text
    assert sections(text)["silver.fxs_rates"]["rate"] == silver["rate"]
    # Bronze holds the file as received, every currency column (the slice is cut in silver): the wildcard
    # describes them, metadata columns are described one by one.
    bronze = sections(text)["bronze.fxs_rates_raw"]
    wildcard = ctx.usecase.descriptions["bronze.fxs_rates_raw"]["*"]
    by_wildcard = [c for c, d in bronze.items() if d == wildcard]
    assert {"USD", "JPY", "GBP", "CHF"} < set(by_wildcard)
    assert not any(c.startswith("_") for c in by_wildcard)


def test_descriptions_keyed_by_other_table_names_are_reported_missing(
    run: dict[str, Any], slice_usecase_path: Path
) -> None:
    """The slice as conftest writes it keeps the fx_ description keys: its fxs_ tables get only the descriptions
    the engine derives from the column declarations, and a column nothing describes is reported missing."""
    ctx: Context = run["ctx"]
    text, missing = render_dictionary(ctx.lake, load_usecase(slice_usecase_path))
    assert "gold.fxs_returns.log_return" in missing  # a gold.derive column: only the YAML can describe it
    assert "silver.fxs_rates.rate" not in missing  # declared in columns: described by its declaration
    assert sections(text)["silver.fxs_rates"]["rate"] == "Units of currency per euro."
    assert not any(m.startswith("ops.") for m in missing)


def test_dictionary_command_writes_the_file(run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "docs" / "dictionary.md"
    result = CliRunner().invoke(
        app, ["dictionary", "--usecase", str(run["usecase_path"]), "--workspace", str(run["ws"]), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    ctx: Context = run["ctx"]
    assert out.read_text(encoding="utf-8") == render_dictionary(ctx.lake, ctx.usecase)[0]
    assert "without a description" not in result.output


def test_committed_dictionary_covers_every_column_of_the_fx_loop(run: dict[str, Any]) -> None:
    committed = sections(COMMITTED.read_text(encoding="utf-8"))
    for table, cols in columns_of(run["ctx"]).items():
        fx_table = table.replace(".fxs_", ".fx_")
        assert fx_table in committed, f"{fx_table} is not in {COMMITTED.name}"
        absent = [c for c in cols if c not in committed[fx_table]]
        assert absent == [], f"{fx_table}: {absent} not in {COMMITTED.name}"


def test_committed_dictionary_describes_every_column() -> None:
    committed = sections(COMMITTED.read_text(encoding="utf-8"))
    assert committed, "no table sections found"
    undescribed = [f"{t}.{c}" for t, cols in committed.items() for c, d in cols.items() if d in ("", MISSING)]
    assert undescribed == []


COMMITTED_CRM = COMMITTED.with_name("data_dictionary_crm.md")


def _crm_tables() -> list[str]:
    """Every table the crm use case names, its ``tables.extra`` included."""
    named = load_usecase("crm").tables.model_dump()
    extra = named.pop("extra")
    return [*named.values(), *extra.values()]


def test_committed_crm_dictionary_has_every_crm_table_and_describes_every_column() -> None:
    committed = sections(COMMITTED_CRM.read_text(encoding="utf-8"))
    absent = [t for t in _crm_tables() if t not in committed]
    assert absent == [], f"{absent} not in {COMMITTED_CRM.name}"
    undescribed = [f"{t}.{c}" for t, cols in committed.items() for c, d in cols.items() if d in ("", MISSING)]
    assert undescribed == []


def test_committed_crm_dictionary_matches_the_yaml() -> None:
    """The crm tables' descriptions in the committed file are the YAML's current ones (regenerate after edits)."""
    uc = load_usecase("crm")
    committed = sections(COMMITTED_CRM.read_text(encoding="utf-8"))
    stale = [f"{t}.{c}" for t in _crm_tables() for c, text in committed[t].items() if text != describe(t, c, uc)]
    assert stale == [], f"regenerate with: goldgate dictionary --usecase crm --out docs/{COMMITTED_CRM.name}"
