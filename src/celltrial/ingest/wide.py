"""Read wide LIS exports: one row per blood draw, one column per test (CSV or XLSX).

Handles what hospital exports do: the patient ID only on a patient's first row (carried down and
checked against the repeated admission/discharge fields), admission, discharge and outcome
repeated on every row, columns in local spellings or other languages, and urinalysis results
(urine pH, WBC, RBC) in the same columns as blood results.

Subject IDs are text exactly as written (``00123``, ``1e5``, ``024e7871``; a workbook's number
123 as ``123``). Subject facts (sex, age or birth date, height, weight, admission, discharge,
death or outcome) are read by :func:`read_subject_facts`, shared with long files: a value that
cannot be read, or is implausible, is a warning naming its row and column and is left empty; a
time of admission, discharge or death that cannot be read is an error. Times may be given as
days from an anchor (a mapping's ``offsets`` and per-test ``day_column``; see
:mod:`celltrial.ingest.mapping`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest import facts
from celltrial.ingest.columns import FACT_ROLES, find_roles, resolve_tests, subject_id_column
from celltrial.ingest.frame import SUBJECT_FIELDS, complete_raw
from celltrial.ingest.long import read_sheet, row_anchors
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.tables import id_series, is_workbook, read_csv_table
from celltrial.ingest.times import (
    OFFSET_COLUMNS,
    RANGE_TEXT,
    ambiguous_dates,
    describe_two_ways,
    parse_times,
)

SUBJECT_ROLES = ("subject", "time", *FACT_ROLES)
#: The fact each numeric role fills (see :data:`celltrial.ingest.frame.SUBJECT_FIELDS`).
NUMERIC_FACTS = {"age": "age", "height": "height_cm", "weight": "weight_kg"}
TIME_FACTS = ("admitted", "discharged", "died")
#: Urine dipstick pH is read in steps of 0.5 (5.0, 5.5, …); blood gas pH has 2–3 decimals.
URINE_PH_STEP = 0.5
URINE_PH_RANGE = (4.5, 9.0)
#: Tests a urinalysis row also reports in the blood columns, unless the row has a blood count.
URINALYSIS_TESTS = ("WBC", "RBC")
BLOOD_COUNT_MARKER = "HGB"
_DIED_WORDS = {"1", "1.0", "died", "dead", "death", "deceased", "yes", "死亡"}
#: The usual LIS sex coding, assumed (with a warning) when a file codes sex as 1/2.
LIS_SEX_CODES = {"1": "M", "2": "F"}
_SHOWN = 5


def read_wide_table(path: Path, mapping: Mapping) -> pd.DataFrame:
    """The sheet of a wide file (CSV or XLSX) as read; a CSV's cells as text, exactly as written
    (subject ``007`` stays ``007``, result ``12.50`` stays ``12.50``; numbers are parsed later);
    the subject column as text in a workbook too (a number cell 123 as ``123``)."""
    if is_workbook(path):
        return read_sheet(path, mapping)
    return read_csv_table(
        path,
        what="lab file",
        dtype=str,
        keep_default_na=False,
        id_columns=subject_id_column(mapping),
    )


def read_wide(
    path: Path, mapping: Mapping, report: ValidationReport, *, zone: ZoneInfo | str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw long frame, subject information) of a wide file; assumptions go to ``report``."""
    table = read_wide_table(path, mapping)
    table.columns = [str(c) for c in table.columns]
    roles = find_roles(table.columns, mapping, SUBJECT_ROLES)
    for role in ("subject", "time"):
        if role not in roles or roles[role] not in table.columns:
            raise DataError(
                f"{path}: no {role} column found (columns: {', '.join(table.columns[:12])}…); "
                "name it in a mapping file (--mapping, see --suggest-mapping)"
            )
    day_columns = _day_columns(table.columns, mapping, path)
    table["__row"] = np.arange(2, len(table) + 2)
    # a row with nothing in it (Excel saves trailing ones as ",,,,") is no draw: not carried
    cells = table.drop(columns="__row")
    table = table[np.column_stack([_filled(cells[c]) for c in cells.columns]).any(axis=1)]
    table = table.reset_index(drop=True)
    _carry_subject_down(table, roles, report, path)
    uses_offsets = mapping.offsets is not None and (
        bool(mapping.offsets.column) or bool(day_columns)
    )
    info = read_subject_facts(
        table,
        roles,
        mapping,
        report,
        zone,
        first_times=None if uses_offsets else roles["time"],
    )
    skip = set(roles.values()) | set(day_columns.values()) | {"__row"}
    test_columns = [c for c in table.columns if c not in skip]
    resolved = resolve_tests(test_columns, mapping)
    specimen = _urinalysis(table, resolved, report)
    times = _result_times(table, roles, mapping, day_columns, info)
    raw = _stack(table, roles, test_columns, resolved, specimen, times)
    raw.attrs["same_day_repeats"] = mapping.same_day_repeats
    return raw, info


def _day_columns(columns: Iterable[str], mapping: Mapping, path: Path) -> dict[str, str]:
    """Test column → its day column (a mapping's ``day_column``); a day column the file does
    not have is a :class:`DataError`."""
    names = list(columns)
    out: dict[str, str] = {}
    for test, day in mapping.day_columns().items():
        if day not in names:
            raise DataError(
                f"{path}: mapping: tests: {test}: day_column {day!r} is not a column of the "
                f"file (columns: {', '.join(names[:12])}…)"
            )
        column = test if test in names else next((c for c in names if c.strip() == test), test)
        out[column] = day
    return out


def _carry_subject_down(
    table: pd.DataFrame, roles: dict[str, str], report: ValidationReport, path: Path
):
    column = roles["subject"]
    ids = id_series(table[column]).astype("string")
    blank = ids.isna()
    if not blank.any():
        table[column] = ids
        return
    if blank.iloc[0]:
        raise DataError(
            f"{path}: row 2, column {column}: no subject ID; expected one on the first row (the "
            "rows below without one continue its patient)"
        )
    table[column] = ids.ffill()
    fixed = [
        roles[r]
        for r in ("admitted", "discharged", "outcome", "age", "sex", "birth_date")
        if r in roles
    ]
    if fixed:
        varying = table.groupby(column, sort=False)[fixed].nunique(dropna=False).max(axis=1) > 1
        if varying.any():
            bad = varying[varying].index.tolist()
            raise DataError(
                f"{path}: column {column}: IDs carried down to blank rows give subject(s) "
                f"{', '.join(map(str, bad[:5]))} rows with different {', '.join(fixed)}; "
                "expected each blank ID to continue the patient above"
            )
    report.add(
        "info",
        "assumption",
        row=int(table.loc[blank, "__row"].iloc[0]),
        column=column,
        value=f"{int(blank.sum())} rows without an ID",
        expected="the ID of the row above (merged cells); checked against "
        + (", ".join(fixed) or "nothing"),
    )


# --- subject facts -----------------------------------------------------------------------------


def read_subject_facts(
    table: pd.DataFrame,
    roles: dict[str, str],
    mapping: Mapping,
    report: ValidationReport,
    zone: ZoneInfo | str,
    *,
    first_times: str | pd.Series | None = None,
) -> pd.DataFrame:
    """One row per subject (in order of first appearance): the columns of
    :data:`~celltrial.ingest.frame.SUBJECT_FIELDS` plus ``source_row``.

    ``table``: the subject column as text (carried down), ``__row`` the file's row numbers, and
    the columns of the fact roles in ``roles``. Each fact is the subject's first value given;
    rows of one subject that disagree are a warning naming them. A sex, age, birth date, height
    or weight that cannot be read or is implausible is a warning by row and column (left empty);
    an admission, discharge or death time that cannot be read is an error by row. A birth date
    gives the age at admission, else at the subject's first result (``first_times``: the
    column of result times, or each subject's first result time by subject code).
    """
    subject = table[roles["subject"]].astype("string")
    present = subject.notna()
    table, subject = table[present.to_numpy()], subject[present]
    firsts = ~subject.duplicated()
    info = pd.DataFrame(
        {"subject": subject[firsts].astype(str).to_numpy()},
        index=pd.Index(subject[firsts].astype(str).to_numpy(), name=None),
    )
    info["source_row"] = table.loc[firsts.to_numpy(), "__row"].to_numpy()
    for field in SUBJECT_FIELDS[1:]:
        info[field] = pd.Series(dtype=object) if field == "sex" else np.nan
    for field in TIME_FACTS:
        info[field] = pd.Series(pd.NaT, index=info.index, dtype="datetime64[us, UTC]")
    reader = _FactReader(table, subject, report)
    if "sex" in roles:
        info["sex"] = reader.first(roles["sex"], _read_sex(table, roles["sex"], mapping, report))
    for role, field in NUMERIC_FACTS.items():
        if role in roles:
            info[field] = reader.first(roles[role], _read_number(table, roles[role], field))
    for role in TIME_FACTS:
        if role in roles:
            info[role] = reader.first(roles[role], _read_time(table, roles[role], role, zone))
    birth = None
    if "birth_date" in roles:
        birth = reader.first(roles["birth_date"], _read_birth(table, roles["birth_date"], zone))
    reader.report_problems()
    if birth is not None:
        _age_from_birth(info, birth, table, subject, roles, first_times, zone, report)
    if "outcome" in roles:
        _outcome(info, table, subject, roles, mapping, report)
    for field in NUMERIC_FACTS.values():
        info[field] = info[field].astype(float)
    info["sex"] = info["sex"].astype(object).where(info["sex"].notna(), None)
    return info.reset_index(drop=True)


class _Parsed:
    """A fact column read row by row: values (None/NaN/NaT where empty or unreadable) and
    the rows whose cell cannot be used, with what was expected."""

    def __init__(self, values: pd.Series, bad: pd.Series, expected: str, severity: str, kind: str):
        self.values = values
        self.bad = bad.fillna(False).astype(bool)
        self.expected = expected
        self.severity = severity
        self.kind = kind


class _FactReader:
    """Takes each subject's first usable value of a fact column and collects the problems."""

    def __init__(self, table: pd.DataFrame, subject: pd.Series, report: ValidationReport):
        self.table = table
        self.subject = subject
        self.report = report
        self.problems: list[tuple[str, _Parsed]] = []

    def first(self, column: str, parsed: _Parsed) -> pd.Series:
        values = parsed.values.where(~parsed.bad)
        self.problems.append((column, parsed))
        frame = pd.DataFrame({"s": self.subject.to_numpy(), "v": values.to_numpy()})
        given = frame[frame["v"].notna()]
        first = given.drop_duplicates("s").set_index("s")["v"]
        self._disagreeing(column, given)
        out = first.reindex(pd.unique(self.subject.astype(str)))
        if isinstance(parsed.values.dtype, pd.DatetimeTZDtype):
            out = pd.to_datetime(out, utc=True).astype("datetime64[us, UTC]")
        return out

    def _disagreeing(self, column: str, given: pd.DataFrame) -> None:
        """A warning naming the rows of a subject whose values differ from its first one."""
        if given.empty:
            return
        distinct = given.groupby("s", sort=False)["v"].transform("nunique")
        differ = given[distinct > 1]
        if differ.empty:
            return
        rows = self.table["__row"].to_numpy()
        for code, part in differ.groupby("s", sort=False):
            shown = part.drop_duplicates("v")
            where = [int(rows[i]) for i in shown.index]
            values = [_cell_text(self.table[column].iloc[i]) for i in shown.index]
            self.report.add(
                "warning",
                "subject_inconsistent",
                row=where[1],
                column=column,
                value=values[1],
                expected=f"one {column} per subject: subject {code} has "
                + ", ".join(
                    f"{v!r} (row {r})" for v, r in zip(values[:_SHOWN], where[:_SHOWN], strict=True)
                )
                + f"; the first ({values[0]!r}, row {where[0]}) is kept",
            )

    def report_problems(self) -> None:
        """One message per subject, column and cell text (a value repeated on every row of a
        subject is named once, at its first row)."""
        for column, parsed in self.problems:
            if not parsed.bad.any():
                continue
            bad = self.table.loc[parsed.bad.to_numpy()]
            texts = [_cell_text(v) for v in bad[column]]
            frame = pd.DataFrame(
                {
                    "s": self.subject[parsed.bad.to_numpy()].to_numpy(),
                    "text": texts,
                    "row": bad["__row"].to_numpy(),
                }
            ).drop_duplicates(["s", "text"])
            self.report.add(
                parsed.severity,
                parsed.kind,
                row=frame["row"].astype(int).tolist(),
                column=column,
                value=frame["text"].tolist(),
                expected=parsed.expected,
            )


def _read_sex(table: pd.DataFrame, column: str, mapping: Mapping, report: ValidationReport):
    text = id_series(table[column]).astype("string")
    codes = dict(mapping.sex_codes)
    if not codes and text.isin(list(LIS_SEX_CODES)).any():
        report.add(
            "warning",
            "assumption",
            row=int(table.loc[text.isin(list(LIS_SEX_CODES)).to_numpy(), "__row"].iloc[0]),
            column=column,
            value="codes 1/2",
            expected="sex coded 1 = male, 2 = female (the usual LIS coding); confirm with "
            "sex_codes in a mapping",
        )
        codes = dict(LIS_SEX_CODES)
    sex, unreadable = facts.read_sex(text, codes or None)
    known = ", ".join(sorted(codes)) if codes else ""
    return _Parsed(
        sex.astype(object),
        unreadable,
        "M or F (male/female, m/f, 男/女"
        + (f", or a code of sex_codes: {known}" if known else "")
        + "); not stored (left empty)",
        "warning",
        "bad_subject_fact",
    )


def _read_number(table: pd.DataFrame, column: str, field: str) -> _Parsed:
    cells = table[column]
    text = id_series(cells).astype("string")
    numbers = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
    numbers = numbers.astype(float)
    numbers = numbers.where(np.isfinite(numbers))
    bad = (text.notna() & numbers.isna()) | facts.implausible(numbers, field)
    return _Parsed(
        numbers,
        bad,
        f"{facts.expected_text(field)}; not stored (left empty)",
        "warning",
        "bad_subject_fact",
    )


def _read_time(table: pd.DataFrame, column: str, role: str, zone: ZoneInfo | str) -> _Parsed:
    times, unreadable = parse_times(table[column], zone)
    expected = (
        f"the subject's {role} date and time in the years {RANGE_TEXT}, e.g. 2020-02-10 08:30"
    )
    two_ways = (unreadable & ambiguous_dates(table[column])).fillna(False).astype(bool)
    if two_ways.any():
        example = str(table.loc[two_ways.to_numpy(), column].iloc[0]).strip()
        one, other = describe_two_ways(example)
        expected += (
            f"; a date such as {example!r} reads as {one} or {other}: say how the file writes "
            "dates in the mapping (date_format: DD/MM/YYYY or MM/DD/YYYY)"
        )
    return _Parsed(times, unreadable, expected, "error", "bad_time")


def _read_birth(table: pd.DataFrame, column: str, zone: ZoneInfo | str) -> _Parsed:
    times, unreadable = parse_times(table[column], zone)
    return _Parsed(
        times,
        unreadable,
        f"the subject's date of birth in the years {RANGE_TEXT}, e.g. 1958-03-21; not stored "
        "(no age from it)",
        "warning",
        "bad_subject_fact",
    )


def _age_from_birth(
    info: pd.DataFrame,
    birth: pd.Series,
    table: pd.DataFrame,
    subject: pd.Series,
    roles: dict[str, str],
    first_times: str | pd.Series | None,
    zone: ZoneInfo | str,
    report: ValidationReport,
) -> None:
    """Age at admission, else at the subject's first result, where no age is given."""
    reference = info["admitted"].copy()
    if isinstance(first_times, pd.Series):
        first = pd.to_datetime(first_times, utc=True)
        reference = reference.fillna(pd.to_datetime(first.reindex(info.index), utc=True))
    elif first_times is not None and first_times in table.columns:
        times, _bad = parse_times(table[first_times], zone)
        first = pd.Series(times.to_numpy(), index=subject.astype(str).to_numpy())
        first = first.groupby(level=0).min()
        reference = reference.fillna(pd.to_datetime(first.reindex(info.index), utc=True))
    ages = facts.age_from_birth(birth, reference)
    need = info["age"].isna() & birth.notna()
    late = need & reference.notna() & ages.isna()
    if late.any():
        column = roles["birth_date"]
        report.add(
            "warning",
            "bad_subject_fact",
            row=info.loc[late, "source_row"].astype(int).tolist(),
            column=column,
            value=[str(b.date()) for b in birth[late]],
            expected="a date of birth before the subject's admission (or first result); "
            "no age stored",
        )
    info["age"] = info["age"].where(~need, ages)
    if (need & ages.notna()).any():
        report.add(
            "info",
            "assumption",
            row=int(info.loc[need & ages.notna(), "source_row"].iloc[0]),
            column=roles["birth_date"],
            value=f"{int((need & ages.notna()).sum())} subjects",
            expected="age in completed years at admission (else at the first result) from the "
            "date of birth",
        )


def _outcome(
    info: pd.DataFrame,
    table: pd.DataFrame,
    subject: pd.Series,
    roles: dict[str, str],
    mapping: Mapping,
    report: ValidationReport,
) -> None:
    """Outcome "died": the death time is the discharge time (where no death time is given);
    a subject who died without either is an error by row (never a death without a date)."""
    column = roles["outcome"]
    text = id_series(table[column]).astype("string").str.casefold()
    died_codes = {c.casefold() for c in mapping.died_codes} or _DIED_WORDS
    frame = pd.DataFrame({"s": subject.astype(str).to_numpy(), "v": text.to_numpy()})
    outcome = frame.dropna().drop_duplicates("s").set_index("s")["v"].reindex(info.index)
    dead = outcome.isin(died_codes).fillna(False).to_numpy()
    no_died = info["died"].isna().to_numpy()
    from_discharge = dead & no_died
    info.loc[from_discharge, "died"] = info.loc[from_discharge, "discharged"]
    info.loc[from_discharge, "discharged"] = pd.NaT
    undated = dead & info["died"].isna().to_numpy()
    if undated.any():
        where = [roles[r] for r in ("died", "discharged") if r in roles]
        report.add(
            "error",
            "bad_time",
            row=info.loc[undated, "source_row"].astype(int).tolist(),
            column=where[0] if where else column,
            value="",
            expected=f"the date and time of death of a subject whose {column} says died "
            f"({' or '.join(where) or 'a death or discharge time column'} is empty)",
        )
    report.add(
        "info",
        "assumption",
        row=2,
        column=column,
        value=f"{int(dead.sum())} of {len(info)} subjects died",
        expected=f"outcome {sorted(died_codes)} = died at "
        + ("the death time, else " if "died" in roles else "")
        + "the discharge time, else discharged",
    )


def _cell_text(value: object) -> str:
    """A cell as a person reads it in a message (a 300-digit number as 1e+300)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        if abs(int(value)) >= 10**15:  # Python refuses to print 4,300 digits and more
            return f"a number of {int(math.log10(abs(int(value)))) + 1} digits"
    elif isinstance(value, float | np.floating) and (
        not math.isfinite(value) or abs(value) >= 1e15
    ):
        return f"{float(value):.6g}"
    elif isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text if len(text) <= 40 else text[:40] + "…"


# --- times given as days from an anchor --------------------------------------------------------


class _Times:
    """Each result's time: the row's time cell, or days from an anchor (the row's day column or
    a test's own ``day_column``), which validation turns into dates (see
    :func:`celltrial.ingest.validate.check_results`)."""

    def __init__(self, row: pd.Series) -> None:
        self.row = row  # per table row: the time cell (None where the row's time is days)
        self.row_days: pd.Series | None = None  # per table row: the day cell
        self.anchor: pd.Series | None = None  # per table row: the anchor (or None: stored)
        self.columns: dict[str, tuple[pd.Series, str]] = {}  # test column → (days, column)


def _result_times(
    table: pd.DataFrame,
    roles: dict[str, str],
    mapping: Mapping,
    day_columns: dict[str, str],
    info: pd.DataFrame,
) -> _Times:
    offsets = mapping.offsets
    times = _Times(table[roles["time"]])
    if offsets is None or not (offsets.column or day_columns):
        return times
    times.anchor = row_anchors(table[roles["subject"]], offsets, info)
    if offsets.column:
        times.row_days = table[roles["time"]]
        times.row = pd.Series(None, index=table.index, dtype=object)
    for test, day in day_columns.items():
        times.columns[test] = (table[day], day)
    return times


def _stack(
    table: pd.DataFrame,
    roles: dict[str, str],
    test_columns: list[str],
    resolved: dict[str, tuple[str | None, ...]],
    specimens: dict[str, pd.Series],
    times: _Times | None = None,
) -> pd.DataFrame:
    times = times or _Times(table[roles["time"]])
    with_days = times.anchor is not None
    parts = []
    for column in test_columns:
        cells = table[column]
        present = _filled(cells)
        if not present.any():
            continue
        code, unit, specimen = resolved[column]
        rows = table.loc[present]
        spec = specimens.get(column)
        part = pd.DataFrame(
            {
                "subject": rows[roles["subject"]],
                "time": times.row[present],
                "column": column,
                "name": column,
                "test": code,
                "raw_value": cells[present],
                "raw_unit": unit,
                "specimen": spec[present] if spec is not None else specimen,
                "source_row": rows["__row"],
            }
        )
        if with_days:
            days = times.row_days if times.row_days is not None else None
            time_column = pd.Series(roles["time"], index=table.index, dtype=object)
            if column in times.columns:
                own, day_column = times.columns[column]
                given = _filled(own)
                # a test's day cell counts; where it is empty, the row's time does
                days = own.where(given, days) if days is not None else own.where(given, None)
                time_column = time_column.where(~given, day_column)
                part["time"] = part["time"].where(~given[present], None)
            part["offset_days"] = days[present] if days is not None else None
            part["anchor"] = times.anchor[present]
            part["time_column"] = time_column[present]
        parts.append(part)
    if not parts:
        return complete_raw(pd.DataFrame())
    stacked = pd.concat(parts, ignore_index=True)
    out = complete_raw(stacked)
    for extra in OFFSET_COLUMNS if with_days else ():
        out[extra] = stacked[extra].astype(object)
    return out


def _urinalysis(
    table: pd.DataFrame, resolved: dict[str, tuple[str | None, ...]], report: ValidationReport
) -> dict[str, pd.Series]:
    """column → specimen per row ("urine" for urinalysis results in blood columns)."""
    by_test = {code: col for col, (code, *_) in resolved.items() if code}
    specimens: dict[str, pd.Series] = {}
    ph_column = by_test.get("PH")
    if ph_column is None:
        return specimens
    ph = pd.to_numeric(table[ph_column], errors="coerce")
    low, high = URINE_PH_RANGE
    on_grid = np.isclose((ph / URINE_PH_STEP).round(), ph / URINE_PH_STEP, atol=1e-9)
    urine = ph.notna() & on_grid & (ph >= low) & (ph <= high)
    if not urine.any():
        return specimens
    specimens[ph_column] = pd.Series(np.where(urine, "urine", None), index=table.index)
    blood_count = (
        _filled(table[by_test[BLOOD_COUNT_MARKER]])
        if BLOOD_COUNT_MARKER in by_test
        else pd.Series(False, index=table.index)
    )
    urine_counts = urine & ~blood_count
    for code in URINALYSIS_TESTS:
        if code in by_test:
            specimens[by_test[code]] = pd.Series(
                np.where(urine_counts, "urine", None), index=table.index
            )
    report.add(
        "info",
        "assumption",
        row=int(table.loc[urine, "__row"].iloc[0]),
        column=ph_column,
        value=f"{int(urine.sum())} rows with a dipstick pH",
        expected=f"a pH in steps of {URINE_PH_STEP} marks a urinalysis row: its pH and, unless "
        f"the row has a blood count ({BLOOD_COUNT_MARKER}), its "
        f"{'/'.join(URINALYSIS_TESTS)} are urine results",
    )
    return specimens


def _filled(cells: pd.Series) -> pd.Series:
    """Cells holding something (not missing, not blank text)."""
    present = cells.notna()
    if cells.dtype == object or pd.api.types.is_string_dtype(cells.dtype):
        present &= (cells.astype("string").str.strip() != "").fillna(False)
    return present.astype(bool)
