"""Test helper: realistic files of five data shapes, written from a fixed seed with the dirt real exports carry.

Each generator writes one file into a folder and returns a ``ShapeFile``: where it is, how many records a reader
must find in it, and every dirty line that must end in quarantine (its line in the file, the rule that catches
it, the column and the raw text). The dirt is what files received from other systems have: a UTF-8 BOM or a
cp1252 byte, CRLF line endings, a trailing empty line, ``NA`` and ``NaN`` spellings, blank cells, a duplicated
line, an impossible date, a non-number in a numeric column and a truncated last line.

``noise=True`` makes the target pure noise: the same columns, but nothing in them tells the label or the next
value, so no candidate can honestly beat the baseline.

The shapes:

1. ``daily_series``: one daily series with slash dates (``2012/01/31``) and a few missing days.
2. ``hourly_panel``: hourly readings of four sensors with missing hours and empty or NaN cells.
3. ``customer_table``: a churn table without a time column, a Yes/No label and blank cells.
4. ``loan_book``: 56 columns of loans issued per month (``Mar-2018``), percent strings, text grades and
   employment lengths (``10+ years``), labelled by their status.
5. ``intraday_bars``: five-minute bars of one instrument over two weeks, some timestamps ending in ``Z``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Dirt:
    """A line that must end in quarantine: its line in the file, the rule, and the column and text that broke it."""

    line: int
    rule: str
    column: str | None = None
    raw: str | None = None


@dataclass(frozen=True)
class ShapeFile:
    path: Path
    records: int  # data records a reader must find (bronze rows)
    dirt: list[Dirt] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def _encode_lines(
    header: list[str],
    rows: list[list[str]],
    *,
    newline: str = "\n",
    bom: bool = False,
    encoding: str = "utf-8",
    trailing_blank: bool = False,
    truncate_last: int | None = None,
) -> bytes:
    """The file's bytes: header and rows joined by commas; the last line cut to ``truncate_last`` characters."""
    lines = [",".join(header), *(",".join(r) for r in rows)]
    if truncate_last is not None:
        lines[-1] = lines[-1][:truncate_last]
        text = newline.join(lines)  # a cut-off transfer: no line break after the last line
    else:
        text = newline.join(lines) + newline + (newline if trailing_blank else "")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)


def _line(index: int) -> int:
    """The file line of the data row at ``index`` (line 1 is the header)."""
    return index + 2


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


# --------------------------------------------------------------------------------------------- 1. daily series
def daily_series(folder: Path, seed: int = 1, noise: bool = False, days: int = 900) -> ShapeFile:
    """A weather station's daily record, dates written ``2012/01/31``, eight days missing.

    ``temp_max`` is a seasonal cycle plus an AR(1) anomaly (phi 0.6): tomorrow is partly predictable beyond
    today's value. With ``noise`` it is a random walk, where today's value is the best forecast of tomorrow.
    Dirt: a BOM, CRLF, a trailing empty line, ``NA`` cells, a duplicated line, 2013/02/30 and a ``?`` wind.
    """
    rng = np.random.default_rng(seed)
    start = date(2012, 1, 1)
    all_days = [start + timedelta(days=i) for i in range(days)]
    dropped = set(rng.choice(np.arange(30, days - 30), size=8, replace=False).tolist())
    kept = [d for i, d in enumerate(all_days) if i not in dropped]
    n = len(all_days)
    doy = np.array([d.timetuple().tm_yday for d in all_days])
    season = 14 + 9 * np.sin(2 * np.pi * (doy - 110) / 365.25)
    if noise:
        temp_max = 15 + np.cumsum(rng.normal(0, 1.5, n))
    else:
        anomaly = np.zeros(n)
        for i in range(1, n):
            anomaly[i] = 0.6 * anomaly[i - 1] + rng.normal(0, 2.5)
        temp_max = season + anomaly
    temp_min = temp_max - rng.uniform(4, 10, n)
    rain = np.where(rng.random(n) < 0.35, rng.gamma(1.2, 4.0, n), 0.0)
    wind = rng.gamma(3.0, 1.2, n)
    kinds = np.where(rain > 0.5, "rain", np.where(rng.random(n) < 0.1, "fog", "sun"))
    rows = []
    for i, d in enumerate(all_days):
        if i in dropped:
            continue
        cells = [
            d.strftime("%Y/%m/%d"),
            _fmt(rain[i]),
            _fmt(temp_max[i]),
            _fmt(temp_min[i]),
            _fmt(wind[i]),
            str(kinds[i]),
        ]
        rows.append(cells)
    header = ["date", "precipitation", "temp_max", "temp_min", "wind", "weather"]
    dirt: list[Dirt] = []
    rows[40][3] = "NA"  # a missing minimum: kept (the column is nullable)
    rows[41][4] = "NA"
    bad_wind = 300
    rows[bad_wind][4] = "?"
    dirt.append(Dirt(_line(bad_wind), "wind_parses", "wind", "?"))
    # An impossible date: the day after 2013/02/28 written as the 30th (2013/03/01 goes missing with it).
    feb = next(i for i, r in enumerate(rows) if r[0] == "2013/03/01")
    rows[feb][0] = "2013/02/30"
    dirt.append(Dirt(_line(feb), "date_parses", "date", "2013/02/30"))
    # A line sent twice: the second copy repeats the key.
    dup = 500
    rows.insert(dup + 1, list(rows[dup]))
    dirt.append(Dirt(_line(dup + 1), "one_row_per_key"))
    payload = _encode_lines(header, rows, newline="\r\n", bom=True, trailing_blank=True)
    path = folder / "station.csv"
    path.write_bytes(payload)
    assert len(kept) + 1 == len(rows)
    return ShapeFile(path, len(rows), dirt, header)


# --------------------------------------------------------------------------------------------- 2. hourly panel
SENSORS = ("S01", "S02", "S03", "S04")


def hourly_panel(folder: Path, seed: int = 2, noise: bool = False, days: int = 45) -> ShapeFile:
    """Hourly temperature and humidity of four sensors, about 3% of hours missing, empty and NaN cells.

    The temperature follows a daily cycle plus an AR(1) anomaly, so the value three hours ahead is predictable
    from the hour and the recent values. Dirt: CRLF, empty cells, ``NaN`` and ``NA`` spellings, a duplicated
    line, an hour 24:00, ``err`` in a numeric column and a truncated last line.
    """
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1)
    hours = days * 24
    rows: list[list[str]] = []
    for k, sensor in enumerate(SENSORS):
        t = np.arange(hours)
        cycle = 4.0 * np.sin(2 * np.pi * ((t % 24) - 9) / 24)
        if noise:
            temp = 18 + k + np.cumsum(rng.normal(0, 0.6, hours))
        else:
            anomaly = np.zeros(hours)
            for i in range(1, hours):
                anomaly[i] = 0.8 * anomaly[i - 1] + rng.normal(0, 0.8)
            temp = 18 + k + cycle + anomaly
        humidity = np.clip(60 - 1.5 * cycle + rng.normal(0, 5, hours), 5, 100)
        missing = rng.random(hours) < 0.03
        for i in range(hours):
            if missing[i]:
                continue
            stamp = start + timedelta(hours=int(i))
            rows.append([stamp.strftime("%Y-%m-%d %H:%M:%S"), sensor, _fmt(temp[i], 2), _fmt(humidity[i])])
    header = ["timestamp", "sensor", "temperature", "humidity"]
    dirt: list[Dirt] = []
    for i in rng.choice(np.arange(100, len(rows) - 100), size=30, replace=False):
        rows[int(i)][3] = ""  # empty humidity: kept
    for i in rng.choice(np.arange(100, len(rows) - 100), size=10, replace=False):
        rows[int(i)][2] = str(rng.choice(["NaN", "NA"]))  # missing temperature: kept
    bad_hour = 700
    rows[bad_hour][0] = rows[bad_hour][0][:11] + "24:00:00"
    dirt.append(Dirt(_line(bad_hour), "timestamp_parses", "timestamp", rows[bad_hour][0]))
    bad_number = 1500
    rows[bad_number][2] = "err"
    dirt.append(Dirt(_line(bad_number), "temperature_parses", "temperature", "err"))
    dup = 2000
    rows.insert(dup + 1, list(rows[dup]))
    dirt.append(Dirt(_line(dup + 1), "one_row_per_key"))
    # The transfer stopped inside the last line's timestamp.
    cut = len("2024-02-14 23:0")
    last = rows[-1]
    dirt.append(Dirt(_line(len(rows) - 1), "timestamp_parses", "timestamp", last[0][:cut]))
    payload = _encode_lines(header, rows, newline="\r\n", truncate_last=cut)
    path = folder / "sensors.csv"
    path.write_bytes(payload)
    return ShapeFile(path, len(rows), dirt, header)


# --------------------------------------------------------------------------------------------- 3. customer table
CONTRACTS = ("Month-to-month", "One year", "Two year")
PAYMENTS = ("Electronic check", "Mailed check", "Bank transfer (automatic)", "Crédit card (automatic)")


def customer_table(folder: Path, seed: int = 3, noise: bool = False, customers: int = 2000) -> ShapeFile:
    """A telecom's customers: id, tenure, charges, contract and payment text, and ``Churn`` Yes/No.

    Churn is likelier on month-to-month contracts, short tenures and high charges (with ``noise``: a coin with the
    same rate). Dirt: cp1252 bytes (``Crédit``), blank ``TotalCharges`` for new customers (a space, as real
    exports write it), empty cells, a duplicated customer, an unquoted ``64,5`` that splits its line, a trailing
    empty line.
    """
    rng = np.random.default_rng(seed)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    ids = [f"{rng.integers(1000, 9999)}-{''.join(rng.choice(letters, 5))}{k:04d}" for k in range(customers)]
    tenure = rng.integers(0, 72, customers)
    contract = rng.choice(len(CONTRACTS), customers, p=[0.55, 0.25, 0.2])
    monthly = np.round(rng.uniform(18, 118, customers), 2)
    senior = rng.random(customers) < 0.16
    payment = rng.choice(len(PAYMENTS), customers)
    logit = -1.0 + 1.6 * (contract == 0) - 0.045 * tenure + 0.018 * (monthly - 65) + 0.5 * senior
    p = 1 / (1 + np.exp(-logit))
    churn = rng.random(customers) < (p.mean() if noise else p)
    rows = []
    for k in range(customers):
        total = "" if tenure[k] == 0 else _fmt(monthly[k] * tenure[k] * rng.uniform(0.95, 1.05), 2)
        rows.append(
            [
                ids[k],
                "1" if senior[k] else "0",
                str(tenure[k]),
                CONTRACTS[contract[k]],
                PAYMENTS[payment[k]],
                _fmt(monthly[k], 2),
                total if total else " ",
                "Yes" if churn[k] else "No",
            ]
        )
    header = ["customerID", "SeniorCitizen", "tenure", "Contract", "PaymentMethod", "MonthlyCharges"]
    header += ["TotalCharges", "Churn"]
    dirt: list[Dirt] = []
    for i in rng.choice(np.arange(10, customers - 10), size=15, replace=False):
        rows[int(i)][int(rng.choice([3, 4]))] = ""  # unknown contract or payment: kept
    # A decimal comma, unquoted: the line gets a ninth field and every cell after it shifts one column right.
    bad = 777
    rows[bad][5] = "64,5"
    dirt.append(Dirt(_line(bad), "row_fits_header", "MonthlyCharges", "64"))
    dup = 1200
    rows.insert(dup + 1, list(rows[dup]))
    dirt.append(Dirt(_line(dup + 1), "one_row_per_key"))
    payload = _encode_lines(header, rows, encoding="cp1252", trailing_blank=True)
    path = folder / "customers.csv"
    path.write_bytes(payload)
    return ShapeFile(path, len(rows), dirt, header)


# --------------------------------------------------------------------------------------------- 4. loan book
GRADES = ("A", "B", "C", "D", "E", "F", "G")
EMP_LENGTHS = ("< 1 year", "1 year", "2 years", "3 years", "5 years", "7 years", "10+ years", "n/a")
PURPOSES = ("debt_consolidation", "credit_card", "home_improvement", "other", "major_purchase", "car")
HOMES = ("RENT", "MORTGAGE", "OWN")
STATES = ("CA", "NY", "TX", "FL", "IL", "NJ", "PA", "OH", "GA", "WA")


def loan_book(folder: Path, seed: int = 4, noise: bool = False, loans: int = 3000, months: int = 36) -> ShapeFile:
    """Loans issued monthly (``issue_d`` written ``Mar-2018``) with 56 columns, labelled Fully Paid or Charged Off.

    Rates are percent strings (``13.5%``), grades letters, employment lengths text (``10+ years``). The chance
    of a charge-off grows with the grade, the debt-to-income ratio and the rate (with ``noise``: a coin). Dirt:
    ``Sept-2017`` (not a ``%b`` month), an empty ``issue_d``, ``n/a`` employment, empty cells, a duplicated loan.
    """
    rng = np.random.default_rng(seed)
    first = date(2016, 1, 1)
    month_of = rng.integers(0, months, loans)
    month_of.sort()
    grade = rng.choice(len(GRADES), loans, p=[0.18, 0.28, 0.26, 0.15, 0.08, 0.04, 0.01])
    rate = 6 + 3.2 * grade + rng.normal(0, 1.0, loans)
    amount = np.round(rng.lognormal(9.4, 0.6, loans) / 25) * 25
    income = np.round(rng.lognormal(11.0, 0.5, loans), -2)
    dti = np.clip(rng.normal(18, 8, loans), 0, 60)
    fico = np.clip(np.round(760 - 18 * grade + rng.normal(0, 20, loans)), 600, 850)
    revol_util = np.clip(rng.normal(50, 22, loans), 0, 120)
    emp = rng.choice(len(EMP_LENGTHS), loans)
    logit = -3.2 + 0.6 * grade + 0.05 * (dti - 18) - 0.012 * (fico - 700) + 0.2 * (emp == len(EMP_LENGTHS) - 1)
    p = 1 / (1 + np.exp(-logit))
    charged_off = rng.random(loans) < (p.mean() if noise else p)
    header = [
        "id",
        "member_id",
        "loan_amnt",
        "funded_amnt",
        "funded_amnt_inv",
        "term",
        "int_rate",
        "installment",
        "grade",
        "sub_grade",
        "emp_title",
        "emp_length",
        "home_ownership",
        "annual_inc",
        "verification_status",
        "issue_d",
        "loan_status",
        "pymnt_plan",
        "purpose",
        "title",
        "zip_code",
        "addr_state",
        "dti",
        "delinq_2yrs",
        "earliest_cr_line",
        "fico_range_low",
        "fico_range_high",
        "inq_last_6mths",
        "mths_since_last_delinq",
        "open_acc",
        "pub_rec",
        "revol_bal",
        "revol_util",
        "total_acc",
        "initial_list_status",
        "out_prncp",
        "total_pymnt",
        "total_rec_prncp",
        "total_rec_int",
        "recoveries",
        "last_pymnt_d",
        "last_pymnt_amnt",
        "last_credit_pull_d",
        "collections_12_mths_ex_med",
        "policy_code",
        "application_type",
        "acc_now_delinq",
        "tot_coll_amt",
        "tot_cur_bal",
        "total_rev_hi_lim",
        "acc_open_past_24mths",
        "avg_cur_bal",
        "bc_util",
        "mort_acc",
        "num_actv_bc_tl",
        "pct_tl_nvr_dlq",
    ]
    rows = []
    for k in range(loans):
        issued = _add_months(first, int(month_of[k]))
        term = 36 if rng.random() < 0.75 else 60
        monthly_rate = rate[k] / 1200
        installment = amount[k] * monthly_rate / (1 - (1 + monthly_rate) ** -term)
        paid = installment * term * (0.4 if charged_off[k] else 1.0)
        delinq_months = "" if rng.random() < 0.5 else str(int(rng.integers(1, 80)))
        g = GRADES[grade[k]]
        cells = {
            "id": str(10_000_000 + k),
            "member_id": "",
            "loan_amnt": _fmt(amount[k], 0),
            "funded_amnt": _fmt(amount[k], 0),
            "funded_amnt_inv": _fmt(amount[k] - 25 * rng.integers(0, 3), 0),
            "term": f" {term} months",
            "int_rate": f"{rate[k]:.2f}%",
            "installment": _fmt(installment, 2),
            "grade": g,
            "sub_grade": f"{g}{int(rng.integers(1, 6))}",
            "emp_title": str(rng.choice(["Teacher", "Manager", "Nurse", "Driver", "Engineer", ""])),
            "emp_length": EMP_LENGTHS[emp[k]],
            "home_ownership": str(rng.choice(HOMES)),
            "annual_inc": _fmt(income[k], 0),
            "verification_status": str(rng.choice(["Verified", "Not Verified", "Source Verified"])),
            "issue_d": issued.strftime("%b-%Y"),
            "loan_status": "Charged Off" if charged_off[k] else "Fully Paid",
            "pymnt_plan": "n",
            "purpose": str(rng.choice(PURPOSES)),
            "title": "Debt consolidation",
            "zip_code": f"{int(rng.integers(100, 999))}xx",
            "addr_state": str(rng.choice(STATES)),
            "dti": _fmt(dti[k], 2),
            "delinq_2yrs": str(int(rng.poisson(0.3))),
            "earliest_cr_line": _add_months(date(1995, 1, 1), int(rng.integers(0, 240))).strftime("%b-%Y"),
            "fico_range_low": _fmt(fico[k], 0),
            "fico_range_high": _fmt(fico[k] + 4, 0),
            "inq_last_6mths": str(int(rng.poisson(0.8))),
            "mths_since_last_delinq": delinq_months,
            "open_acc": str(int(rng.integers(2, 30))),
            "pub_rec": str(int(rng.poisson(0.2))),
            "revol_bal": str(int(rng.integers(0, 60_000))),
            "revol_util": f"{revol_util[k]:.1f}%",
            "total_acc": str(int(rng.integers(5, 60))),
            "initial_list_status": str(rng.choice(["w", "f"])),
            "out_prncp": "0.00",
            "total_pymnt": _fmt(paid, 2),
            "total_rec_prncp": _fmt(min(paid, amount[k]), 2),
            "total_rec_int": _fmt(max(paid - amount[k], 0), 2),
            "recoveries": _fmt(amount[k] * 0.05 if charged_off[k] else 0.0, 2),
            "last_pymnt_d": _add_months(issued, int(rng.integers(6, term))).strftime("%b-%Y"),
            "last_pymnt_amnt": _fmt(installment, 2),
            "last_credit_pull_d": "Mar-2021",
            "collections_12_mths_ex_med": "0",
            "policy_code": "1",
            "application_type": "Individual",
            "acc_now_delinq": "0",
            "tot_coll_amt": str(int(rng.integers(0, 500))),
            "tot_cur_bal": str(int(rng.integers(1_000, 400_000))),
            "total_rev_hi_lim": str(int(rng.integers(5_000, 90_000))),
            "acc_open_past_24mths": str(int(rng.integers(0, 12))),
            "avg_cur_bal": str(int(rng.integers(500, 40_000))),
            "bc_util": _fmt(float(np.clip(revol_util[k] + rng.normal(0, 8), 0, 130)), 1),
            "mort_acc": str(int(rng.integers(0, 6))),
            "num_actv_bc_tl": str(int(rng.integers(0, 10))),
            "pct_tl_nvr_dlq": _fmt(float(rng.uniform(70, 100)), 1),
        }
        rows.append([_csv_cell(cells[h]) for h in header])
    col = {h: i for i, h in enumerate(header)}
    dirt: list[Dirt] = []
    for i in rng.choice(np.arange(10, loans - 10), size=20, replace=False):
        rows[int(i)][col["annual_inc"] if i % 2 else col["dti"]] = ""  # empty cells: kept
    dup = 1000
    rows.insert(dup + 1, list(rows[dup]))
    dirt.append(Dirt(_line(dup + 1), "one_row_per_key"))
    sept = next(i for i, r in enumerate(rows) if r[col["issue_d"]] == "Sep-2017")
    rows[sept][col["issue_d"]] = "Sept-2017"
    dirt.append(Dirt(_line(sept), "issue_d_parses", "issue_d", "Sept-2017"))
    rows[sept + 3][col["issue_d"]] = ""
    dirt.append(Dirt(_line(sept + 3), "issue_d_present"))
    payload = _encode_lines(header, rows, trailing_blank=True)
    path = folder / "loans.csv"
    path.write_bytes(payload)
    return ShapeFile(path, len(rows), dirt, header)


def _add_months(day: date, months: int) -> date:
    total = day.year * 12 + day.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


def _csv_cell(text: str) -> str:
    return f'"{text}"' if "," in text else text


# --------------------------------------------------------------------------------------------- 5. intraday bars
def intraday_bars(folder: Path, seed: int = 5, noise: bool = False, days: int = 15) -> ShapeFile:
    """Five-minute bars (09:35 to 16:00) of one instrument over ``days`` trading days.

    Each bar's return takes back half of the previous one (with ``noise``: a pure random walk, where the last
    close is the best forecast of the next). Timestamps are written
    ``2024-03-01 09:35:00``; after a feed change half-way, the same clock time ends in ``Z``. Dirt: a volume
    ``1.2k``, a bar at 9:65, a duplicated line, an empty volume and a truncated last line.
    """
    rng = np.random.default_rng(seed)
    day = date(2024, 3, 1)
    sessions: list[date] = []
    while len(sessions) < days:
        if day.weekday() < 5:
            sessions.append(day)
        day += timedelta(days=1)
    stamps = [
        datetime.combine(d, datetime.min.time()) + timedelta(hours=9, minutes=35 + 5 * i)
        for d in sessions
        for i in range(78)
    ]
    n = len(stamps)
    returns = rng.normal(0, 0.0012, n)
    if not noise:
        for i in range(1, n):
            returns[i] += -0.5 * returns[i - 1]
    close = 100 * np.exp(np.cumsum(returns))
    opens = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(opens, close) * (1 + np.abs(rng.normal(0, 0.0004, n)))
    low = np.minimum(opens, close) * (1 - np.abs(rng.normal(0, 0.0004, n)))
    volume = rng.integers(800, 20_000, n)
    rows = []
    for i, stamp in enumerate(stamps):
        text = stamp.strftime("%Y-%m-%d %H:%M:%S") + ("Z" if i >= n // 2 else "")
        rows.append([text, _fmt(opens[i], 3), _fmt(high[i], 3), _fmt(low[i], 3), _fmt(close[i], 3), str(volume[i])])
    header = ["time", "open", "high", "low", "close", "volume"]
    dirt: list[Dirt] = []
    rows[120][5] = "1.2k"
    dirt.append(Dirt(_line(120), "volume_parses", "volume", "1.2k"))
    rows[200][5] = ""  # an empty volume: kept
    bad = 301
    rows[bad][0] = rows[bad][0][:11] + "09:65:00"
    dirt.append(Dirt(_line(bad), "time_parses", "time", rows[bad][0]))
    dup = 400
    rows.insert(dup + 1, list(rows[dup]))
    dirt.append(Dirt(_line(dup + 1), "one_row_per_key"))
    cut = len(rows[-1][0]) + len(",100.000,10")  # inside the high: the last line has three of six cells
    payload = _encode_lines(header, rows, truncate_last=cut)
    path = folder / "bars.csv"
    path.write_bytes(payload)
    return ShapeFile(path, len(rows), dirt, header)
