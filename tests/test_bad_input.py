"""Dirty ECB files through `goldgate ingest` and `goldgate step silver` of the fx use case (YAML on the declarative
engine: the wide file unpivoted to one row per date and currency): no crash, no cell lost, every bad value in
quarantine with the rule that caught it and its text (``raw_date``, ``raw_rate``), schema drift reported, a `fail`
rule stops the step.

The corpus is built by a fixture under tests/data/bad/ (git-ignored), in the ECB wide layout with the slice's
currencies and dates inside 2021-2023.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import ibis
import pytest
import yaml
from typer.testing import CliRunner

from goldgate.cli import app
from goldgate.lake import Lake

runner = CliRunner()

BAD_DIR = Path(__file__).parent / "data" / "bad"
SLICE = ["USD", "JPY", "GBP", "CHF"]
START, END = date(2021, 1, 1), date(2023, 12, 31)
HEADER = "Date,USD,JPY,GBP,CHF,"
# Spellings of "no fixing that day" in the corpus: such a cell is not a candidate row (the test's own definition;
# fx.yaml's source.missing lists them).
MISSING = {"N/A", "", "NA", "null", "NULL"}

BRONZE, SILVER, QUARANTINE = "bronze.fxs_rates_raw", "silver.fxs_rates", "quarantine.fxs_rates"
QUALITY, SCHEMA_CHANGES = "ops.quality", "ops.schema_changes"


def row(day: str, *cells: str) -> str:
    return ",".join([day, *cells]) + ","


GOOD = [
    row("2022-03-03", "1.1116", "128.30", "0.8338", "1.0246"),
    row("2022-03-02", "1.1106", "127.56", "0.8314", "1.0199"),
    row("2022-03-01", "1.1127", "128.18", "0.8346", "1.0251"),
]
BASE = [  # a first batch for the workspaces that need one (other dates than every corpus file)
    row("2021-03-02", "1.2044", "128.43", "0.8659", "1.1087"),
    row("2021-03-01", "1.2053", "128.51", "0.8654", "1.1029"),
]


@dataclass(frozen=True)
class BadFile:
    name: str
    lines: list[str]
    newline: str = "\n"
    bom: bool = False
    final_newline: bool = True
    # (raw_date, currency, raw_rate, rule) of every cell that must land in quarantine
    quarantined: tuple[tuple[str, str, str, str], ...] = ()

    @property
    def path(self) -> Path:
        return BAD_DIR / self.name

    def payload(self) -> bytes:
        text = self.newline.join(self.lines) + (self.newline if self.final_newline else "")
        return (b"\xef\xbb\xbf" if self.bom else b"") + text.encode("utf-8")


def _all_cells(day: str, values: list[str], rule: str) -> tuple[tuple[str, str, str, str], ...]:
    return tuple((day, cur, v, rule) for cur, v in zip(SLICE, values, strict=True))


BAD_DATES = ["2023-02-30", "31.12.2022", "yesterday", "2022-13-01", "2019/01/05"]
DATE_VALUES = ["1.0500", "140.00", "0.8800", "0.9900"]

CORPUS = [
    BadFile("crlf.csv", [HEADER, *GOOD], newline="\r\n"),
    BadFile("bom.csv", [HEADER, *GOOD], bom=True),
    BadFile("bom_crlf.csv", [HEADER, *GOOD], newline="\r\n", bom=True),
    BadFile(
        "trailing_commas.csv",
        [
            "Date,USD,JPY,GBP,CHF,,,",
            "2022-04-01,1.1014,135.01,0.8443,1.0210,,,",
            "2022-04-04,1.0982,135.42,0.8380,1.0190",  # no trailing comma at all
            "2022-04-05,1.0957,135.77,0.8367,1.0171,,,,,",  # more than the header
        ],
    ),
    BadFile(
        "missing_spellings.csv",
        [
            HEADER,
            row("2022-05-02", "1.0524", "N/A", "", "1.0263"),
            row("2022-05-03", "null", "136.86", "NULL", "NA"),
            row("2022-05-04", " N/A ", "137.57", "0.8420", " "),
            row("2022-05-05", "N/A", "N/A", "N/A", "N/A"),
        ],
    ),
    BadFile(
        "duplicated_rows.csv",
        [
            HEADER,
            GOOD[0],
            GOOD[0],  # the same line twice
            GOOD[1],
            row("2022-03-02", "1.2000", "N/A", "N/A", "N/A"),  # same key, another value: the first line wins
            GOOD[0],
        ],
        quarantined=(
            *_all_cells("2022-03-03", ["1.1116", "128.30", "0.8338", "1.0246"], "one_row_per_key"),
            *_all_cells("2022-03-03", ["1.1116", "128.30", "0.8338", "1.0246"], "one_row_per_key"),
            ("2022-03-02", "USD", "1.2000", "one_row_per_key"),
        ),
    ),
    BadFile(
        "out_of_range.csv",
        [
            HEADER,
            row("2022-06-01", "-1.0723", "141.00", "0.8541", "1.0303"),
            row("2022-06-02", "1.0722", "0", "0.8539", "-0"),
            row("2022-06-03", "1.0728", "141.32", "0.0000", "1.0296"),
        ],
        quarantined=(
            ("2022-06-01", "USD", "-1.0723", "rate_positive"),
            ("2022-06-02", "JPY", "0", "rate_positive"),
            ("2022-06-02", "CHF", "-0", "rate_positive"),
            ("2022-06-03", "GBP", "0.0000", "rate_positive"),
        ),
    ),
    BadFile(
        "bad_dates.csv",
        [HEADER, row("2022-07-01", "1.0426", "141.85", "0.8600", "1.0029"), *(row(d, *DATE_VALUES) for d in BAD_DATES)],
        quarantined=tuple(cell for d in BAD_DATES for cell in _all_cells(d, DATE_VALUES, "date_parses")),
    ),
    BadFile(
        "bad_rates.csv",
        [
            HEADER,
            row("2022-08-01", "abc", "137.20", '"1,05"', "0.9800"),
            row("2022-08-02", "1.0191", "1.2.3", "0.8396", "#VALUE!"),
        ],
        quarantined=(
            ("2022-08-01", "USD", "abc", "rate_parses"),
            ("2022-08-01", "GBP", "1,05", "rate_parses"),
            ("2022-08-02", "JPY", "1.2.3", "rate_parses"),
            ("2022-08-02", "CHF", "#VALUE!", "rate_parses"),
        ),
    ),
    BadFile(
        "truncated.csv",
        [HEADER, *GOOD[:2], "2022-03-01,1.1127,128.18"],  # the last line stops after JPY, no newline
        final_newline=False,
    ),
    BadFile(
        "extra_column.csv",
        ["Date,USD,JPY,GBP,CHF,XYZ,", *(line + "2.5," for line in GOOD)],
    ),
    BadFile("missing_column.csv", ["Date,USD,GBP,CHF,", "2022-09-01,0.9993,0.8666,0.9774,"]),
    BadFile(
        "lowercase_header.csv",
        ["Date,usd,JPY,GBP,CHF,", *GOOD[:2]],
        quarantined=(
            ("2022-03-03", "usd", "1.1116", "currency_code"),
            ("2022-03-02", "usd", "1.1106", "currency_code"),
        ),
    ),
]
EMPTY = BadFile("empty.csv", [], final_newline=False)
NO_DATE = BadFile("no_date.csv", ["Day,USD,JPY,GBP,CHF,", row("2022-10-03", "0.9764", "141.55", "0.8741", "0.9657")])
BASE_FILE = BadFile("base.csv", [HEADER, *BASE])
FILES = {f.name: f for f in [*CORPUS, EMPTY, NO_DATE, BASE_FILE]}


@pytest.fixture(scope="module")
def corpus() -> dict[str, BadFile]:
    """Write every file of the corpus (CRLF, BOM and truncation are bytes, so write bytes)."""
    BAD_DIR.mkdir(parents=True, exist_ok=True)
    for f in FILES.values():
        f.path.write_bytes(f.payload())
    return FILES


@pytest.fixture(scope="module")
def open_usecase(tmp_path_factory: pytest.TempPathFactory, slice_usecase_path: Path) -> Path:
    """The slice without its currency list: every column of the file is unpivoted (dates still 2021-2023).

    With the list (``source.unpivot.columns``), only those columns become silver rows; the corpus files only hold
    the slice's currencies, so this is otherwise the slice.
    """
    data = yaml.safe_load(slice_usecase_path.read_text())
    data["source"]["unpivot"]["columns"] = None
    path = tmp_path_factory.mktemp("open") / "fx_slice_open.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, [str(a) for a in args], env=env)


def ingest(usecase: Path, ws: Path, source: Path) -> Any:
    return cli("ingest", "--usecase", usecase, "--workspace", ws, "--source", source)


def step_silver(usecase: Path, ws: Path) -> Any:
    return cli("step", "silver", "--usecase", usecase, "--workspace", ws)


def lake(ws: Path) -> Lake:
    return Lake(ws / "lake", ibis.duckdb.connect())


def rows(ws: Path, name: str, **equal: Any) -> list[dict[str, Any]]:
    found = lake(ws).read(name).to_pyarrow().to_pylist()
    return [r for r in found if all(r[k] == v for k, v in equal.items())]


def versions(ws: Path) -> dict[str, int | None]:
    lk = lake(ws)
    return {name: lk.version(name) for name in lk.tables()}


def batch_of(ws: Path, f: BadFile) -> str:
    (batch,) = {r["_batch_id"] for r in rows(ws, BRONZE, _source=str(f.path))}
    return str(batch)


def _iso(text: str) -> date | None:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d").date()
    except ValueError:
        return None


def candidates(f: BadFile, currencies: list[str] | None) -> list[tuple[str, str, str]]:
    """(raw_date, currency, raw_rate) of every non-missing cell of the file inside the use case's slice."""
    text = f.payload().decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text, newline="")))
    header = [h.strip() for h in lines[0]]
    columns = [(i, h) for i, h in enumerate(header) if h and h != "Date" and (currencies is None or h in currencies)]
    found = []
    for cells in lines[1:]:
        if not any(c.strip() for c in cells):
            continue
        day = cells[0].strip()
        parsed = _iso(day)
        if parsed is not None and not START <= parsed <= END:
            continue
        for i, name in columns:
            if i < len(cells) and cells[i].strip() not in MISSING:
                found.append((day, name, cells[i].strip()))
    return found


@pytest.fixture(scope="module")
def runs(
    corpus: dict[str, BadFile], open_usecase: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """Each corpus file ingested, then checked into silver, on its own fresh workspace."""
    done = {}
    for f in CORPUS:
        ws = tmp_path_factory.mktemp(f.name.removesuffix(".csv"))
        done[f.name] = {"ws": ws, "ingest": ingest(open_usecase, ws, f.path), "silver": step_silver(open_usecase, ws)}
    return done


@pytest.mark.parametrize("name", [f.name for f in CORPUS])
def test_dirty_file_neither_crashes_nor_loses_a_row(name: str, runs: dict[str, dict[str, Any]]) -> None:
    f, run = FILES[name], runs[name]
    assert run["ingest"].exit_code == 0, run["ingest"].output
    assert run["silver"].exit_code == 0, run["silver"].output
    ws = run["ws"]
    batch = batch_of(ws, f)
    silver = rows(ws, SILVER, _batch_id=batch)
    quarantine = rows(ws, QUARANTINE, _batch_id=batch)
    expected = candidates(f, None)
    assert expected, "a corpus file must have candidate rows"
    # Conservation: every candidate cell is in silver or in quarantine, none twice, none lost.
    assert len(silver) + len(quarantine) == len(expected)
    (summary,) = rows(ws, QUALITY, batch_id=batch, rule="__batch__")
    assert (summary["passed"], summary["failed"]) == (len(silver), len(quarantine))


@pytest.mark.parametrize("name", [f.name for f in CORPUS])
def test_every_bad_value_is_quarantined_with_its_rule(name: str, runs: dict[str, dict[str, Any]]) -> None:
    f, ws = FILES[name], runs[name]["ws"]
    batch = batch_of(ws, f)
    quarantine = rows(ws, QUARANTINE, _batch_id=batch)
    assert all(r["_rule"] and r["_reason"] and r["_reason"].startswith(f"{r['_rule']}: ") for r in quarantine)
    got = sorted((r["raw_date"], r["currency"], r["raw_rate"], r["_rule"]) for r in quarantine)
    assert got == sorted(f.quarantined)
    # Rule counts in ops.quality cover what was quarantined under each rule.
    failed = {r["rule"]: r["failed"] for r in rows(ws, QUALITY, batch_id=batch)}
    for rule in {q[3] for q in f.quarantined}:
        assert failed[rule] >= sum(q[3] == rule for q in f.quarantined)


@pytest.mark.parametrize("name", [f.name for f in CORPUS])
def test_silver_holds_the_first_good_value_of_each_cell(name: str, runs: dict[str, dict[str, Any]]) -> None:
    f, ws = FILES[name], runs[name]["ws"]
    bad = list(f.quarantined)
    expected: dict[tuple[date, str], float] = {}
    for day, cur, value in candidates(f, None):
        if (day, cur, value, "one_row_per_key") in bad:
            bad.remove((day, cur, value, "one_row_per_key"))
            continue
        if any(q[:3] == (day, cur, value) for q in bad):
            continue
        parsed = _iso(day)
        assert parsed is not None
        expected.setdefault((parsed, cur), float(value))
    got = {(r["date"], r["currency"]): r["rate"] for r in rows(ws, SILVER, _batch_id=batch_of(ws, f))}
    assert got == expected


def test_quality_command_names_every_failing_rule(runs: dict[str, dict[str, Any]], open_usecase: Path) -> None:
    for name in ("duplicated_rows.csv", "out_of_range.csv", "bad_dates.csv", "bad_rates.csv"):
        ws = runs[name]["ws"]
        result = cli("quality", "--usecase", open_usecase, "--workspace", ws, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        failing = {r["rule"] for r in rows(ws, QUALITY) if r["failed"] and r["rule"] != "__batch__"}
        assert {q[3] for q in FILES[name].quarantined} <= failing
        for rule in failing:
            assert rule in result.output, (name, rule)
        assert "silver.fxs_rates" in result.output


def _workspace_with_base(usecase: Path, ws: Path) -> None:
    assert ingest(usecase, ws, BASE_FILE.path).exit_code == 0
    assert step_silver(usecase, ws).exit_code == 0


def test_empty_file_fails_ingest_with_one_line_and_touches_nothing(
    corpus: dict[str, BadFile], open_usecase: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    _workspace_with_base(open_usecase, ws)
    before = versions(ws)
    result = ingest(open_usecase, ws, EMPTY.path)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.output
    assert "step ingest failed" in errors[0]
    assert str(EMPTY.path) in errors[0]
    assert "empty" in errors[0]
    assert step_silver(open_usecase, ws).exit_code == 0
    assert versions(ws) == before


def test_extra_column_is_kept_in_bronze_and_reported_as_added(
    corpus: dict[str, BadFile], open_usecase: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    _workspace_with_base(open_usecase, ws)
    f = FILES["extra_column.csv"]
    assert ingest(open_usecase, ws, f.path).exit_code == 0
    batch = batch_of(ws, f)
    assert [r["XYZ"] for r in rows(ws, BRONZE, _batch_id=batch)] == ["2.5", "2.5", "2.5"]
    assert {r["XYZ"] for r in rows(ws, BRONZE) if r["_batch_id"] != batch} == {None}
    changes = rows(ws, SCHEMA_CHANGES)
    assert [(c["table_name"], c["batch_id"], c["column_name"], c["change"]) for c in changes] == [
        (BRONZE, batch, "XYZ", "added")
    ]
    assert changes[0]["source"] == str(f.path)
    assert step_silver(open_usecase, ws).exit_code == 0
    silver = rows(ws, SILVER, _batch_id=batch)
    assert len(silver) + len(rows(ws, QUARANTINE, _batch_id=batch)) == len(candidates(f, None)) == 15
    assert sorted({r["currency"] for r in silver}) == sorted([*SLICE, "XYZ"])


def test_missing_column_is_reported_as_missing_in_a_later_batch(
    corpus: dict[str, BadFile], open_usecase: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    _workspace_with_base(open_usecase, ws)
    f = FILES["missing_column.csv"]
    result = ingest(open_usecase, ws, f.path)
    assert result.exit_code == 0, result.output
    batch = batch_of(ws, f)
    assert [(c["batch_id"], c["column_name"], c["change"]) for c in rows(ws, SCHEMA_CHANGES)] == [
        (batch, "JPY", "missing")
    ]
    assert step_silver(open_usecase, ws).exit_code == 0
    silver = rows(ws, SILVER, _batch_id=batch)
    assert sorted(r["currency"] for r in silver) == ["CHF", "GBP", "USD"]
    assert rows(ws, QUARANTINE, _batch_id=batch) == []


def test_the_slice_currency_list_keeps_other_columns_out_of_silver(
    corpus: dict[str, BadFile], slice_usecase_path: Path, tmp_path: Path
) -> None:
    """With a currency list, an extra column stays in bronze (as received) but makes no silver row; a listed
    column a batch lacks makes no row either (``source.required_columns`` turns it into an ingest error, below)."""
    ws = tmp_path / "ws"
    _workspace_with_base(slice_usecase_path, ws)
    extra = FILES["extra_column.csv"]
    assert ingest(slice_usecase_path, ws, extra.path).exit_code == 0
    assert step_silver(slice_usecase_path, ws).exit_code == 0
    batch = batch_of(ws, extra)
    assert [r["XYZ"] for r in rows(ws, BRONZE, _batch_id=batch)] == ["2.5", "2.5", "2.5"]
    assert sorted({r["currency"] for r in rows(ws, SILVER, _batch_id=batch)}) == sorted(SLICE)
    assert len(rows(ws, SILVER, _batch_id=batch)) == 12
    assert rows(ws, QUARANTINE, _batch_id=batch) == []
    missing = FILES["missing_column.csv"]
    assert ingest(slice_usecase_path, ws, missing.path).exit_code == 0
    assert step_silver(slice_usecase_path, ws).exit_code == 0
    batch = batch_of(ws, missing)
    assert sorted(r["currency"] for r in rows(ws, SILVER, _batch_id=batch)) == ["CHF", "GBP", "USD"]
    assert ("JPY", "missing") in {(c["column_name"], c["change"]) for c in rows(ws, SCHEMA_CHANGES, batch_id=batch)}


def test_missing_date_column_fails_ingest_naming_it(
    corpus: dict[str, BadFile], open_usecase: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    _workspace_with_base(open_usecase, ws)
    before = versions(ws)
    result = ingest(open_usecase, ws, NO_DATE.path)
    assert result.exit_code == 1
    assert "step ingest failed" in result.output
    assert "required column(s) missing: Date" in result.output
    assert versions(ws) == before


def test_missing_required_column_fails_ingest_naming_it(
    corpus: dict[str, BadFile], open_usecase: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(open_usecase.read_text())
    data["source"]["required_columns"] = ["Date", "JPY"]
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(data, sort_keys=False))
    ws = tmp_path / "ws"
    _workspace_with_base(strict, ws)
    before = versions(ws)
    result = ingest(strict, ws, FILES["missing_column.csv"].path)
    assert result.exit_code == 1
    assert "required column(s) missing: JPY" in result.output
    assert versions(ws) == before


def test_fail_action_stops_silver_and_leaves_it_unchanged(
    corpus: dict[str, BadFile], slice_usecase_path: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(slice_usecase_path.read_text())
    for e in data["expectations"]:
        if e["name"] == "rate_positive":
            e["action"] = "fail"
    failing = tmp_path / "fail.yaml"
    failing.write_text(yaml.safe_dump(data, sort_keys=False))
    ws = tmp_path / "ws"
    _workspace_with_base(failing, ws)
    before = versions(ws)
    f = FILES["out_of_range.csv"]
    assert ingest(failing, ws, f.path).exit_code == 0
    result = step_silver(failing, ws)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "step silver failed" in out
    assert "silver.fxs_rates: expectation 'rate_positive'" in out
    assert "failed on 4 of" in out
    after = versions(ws)
    for name in (SILVER, QUARANTINE, QUALITY):
        assert after[name] == before[name], name
    assert rows(ws, QUALITY, batch_id=batch_of(ws, f)) == []  # still pending: nothing recorded for the batch


def test_mapping_fixes_a_spelling_in_silver_and_is_reported(
    corpus: dict[str, BadFile], open_usecase: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(open_usecase.read_text())
    data["mappings"] = [{"column": "currency", "values": {"USD": "USD", "us dollar": "USD"}}]
    mapped = tmp_path / "mapped.yaml"
    mapped.write_text(yaml.safe_dump(data, sort_keys=False))
    ws = tmp_path / "ws"
    f = FILES["lowercase_header.csv"]
    assert ingest(mapped, ws, f.path).exit_code == 0
    assert step_silver(mapped, ws).exit_code == 0
    batch = batch_of(ws, f)
    silver = rows(ws, SILVER, _batch_id=batch)
    assert rows(ws, QUARANTINE, _batch_id=batch) == []  # "usd" is mapped before the rules see it
    assert sorted(r["currency"] for r in silver) == sorted(SLICE * 2)
    assert {r["rate"] for r in silver if r["currency"] == "USD"} == {1.1116, 1.1106}
    (mapping,) = rows(ws, QUALITY, batch_id=batch, rule="mapping:currency")
    assert (mapping["action"], mapping["passed"], mapping["failed"]) == ("map", 6, 2)  # 2 of 8 values remapped
    result = cli("quality", "--usecase", mapped, "--workspace", ws, env={"COLUMNS": "200"})
    assert "mapping:currency" in result.output
