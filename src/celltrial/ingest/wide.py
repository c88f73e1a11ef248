"""Read wide LIS exports: one row per blood draw, one column per test (CSV or XLSX).

Handles what hospital exports do: the patient ID only on a patient's first row (carried down and
checked against the repeated admission/discharge fields), admission, discharge and outcome
repeated on every row, columns in local spellings or other languages, and urinalysis results
(urine pH, WBC, RBC) in the same columns as blood results.
"""

from __future__ import annotations

import math
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.columns import find_roles, resolve_tests
from celltrial.ingest.frame import complete_raw, map_unique
from celltrial.ingest.long import read_sheet
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.tables import is_workbook, read_csv_table
from celltrial.ingest.times import RANGE_TEXT, parse_times

SUBJECT_ROLES = ("subject", "time", "sex", "age", "admitted", "discharged", "died", "outcome")
#: Urine dipstick pH is read in steps of 0.5 (5.0, 5.5, …); blood gas pH has 2–3 decimals.
URINE_PH_STEP = 0.5
URINE_PH_RANGE = (4.5, 9.0)
#: Tests a urinalysis row also reports in the blood columns, unless the row has a blood count.
URINALYSIS_TESTS = ("WBC", "RBC")
BLOOD_COUNT_MARKER = "HGB"
_SEX_WORDS = {
    "m": "M",
    "male": "M",
    "man": "M",
    "男": "M",
    "f": "F",
    "female": "F",
    "woman": "F",
    "女": "F",
}
_DIED_WORDS = {"1", "1.0", "died", "dead", "death", "deceased", "yes", "死亡"}
#: Ages a subject can have (years); others are reported, never stored.
AGE_RANGE = (0.0, 130.0)
#: Whole numbers read from a sheet become IDs without ".0" up to here (exact in a float).
_EXACT_WHOLE = 2**53


def read_wide_table(path: Path, mapping: Mapping) -> pd.DataFrame:
    """The sheet of a wide file (CSV or XLSX) as read; a CSV's cells as text, exactly as written
    (subject ``007`` stays ``007``, result ``12.50`` stays ``12.50``; numbers are parsed later)."""
    if is_workbook(path):
        return read_sheet(path, mapping)
    return read_csv_table(path, what="lab file", dtype=str, keep_default_na=False)


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
    table["__row"] = np.arange(2, len(table) + 2)
    # a row with nothing in it (Excel saves trailing ones as ",,,,") is no draw: not carried
    cells = table.drop(columns="__row")
    table = table[np.column_stack([_filled(cells[c]) for c in cells.columns]).any(axis=1)]
    table = table.reset_index(drop=True)
    _carry_subject_down(table, roles, report, path)
    info = _subject_info(table, roles, mapping, report, zone, path)
    test_columns = [c for c in table.columns if c not in roles.values() and c != "__row"]
    resolved = resolve_tests(test_columns, mapping)
    specimen = _urinalysis(table, resolved, report)
    raw = _stack(table, roles, test_columns, resolved, specimen)
    return raw, info


def _carry_subject_down(
    table: pd.DataFrame, roles: dict[str, str], report: ValidationReport, path: Path
):
    column = roles["subject"]
    ids = _ids(table[column])
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
    fixed = [roles[r] for r in ("admitted", "discharged", "outcome", "age", "sex") if r in roles]
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


def _ids(series: pd.Series) -> pd.Series:
    """IDs as text, missing where blank; a whole number read from a sheet (1.0) becomes "1",
    text stays as written (``007``, ``1e5``)."""
    return map_unique(series, lambda values: values.map(_id_text)).astype("string")


def _id_text(value: object) -> str | None:
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if math.isfinite(value) and value.is_integer() and abs(value) < _EXACT_WHOLE:
            return str(int(value))
        return repr(float(value))
    text = str(value).strip()
    return text or None


def _subject_info(
    table: pd.DataFrame,
    roles: dict[str, str],
    mapping: Mapping,
    report: ValidationReport,
    zone: ZoneInfo | str,
    path: Path,
) -> pd.DataFrame:
    first = table.drop_duplicates(roles["subject"]).set_index(roles["subject"], drop=False)
    info = pd.DataFrame({"subject": first[roles["subject"]].astype(str)}, index=first.index)
    info["source_row"] = first["__row"]
    info["age"] = _ages(first, roles["age"], path) if "age" in roles else np.nan
    info["sex"] = (
        _sex(first[roles["sex"]], mapping, report, roles["sex"]) if "sex" in roles else None
    )
    for role in ("admitted", "discharged", "died"):
        if role not in roles:
            info[role] = pd.NaT
            continue
        times, unreadable = parse_times(first[roles[role]], zone)
        info[role] = times
        if unreadable.any():
            report.add(
                "error",
                "bad_time",
                row=first.loc[unreadable.to_numpy(), "__row"].tolist(),
                column=roles[role],
                value=[_cell_text(v) for v in first.loc[unreadable.to_numpy(), roles[role]]],
                expected=f"the subject's {role} date and time in the years {RANGE_TEXT}, e.g. "
                "2020-02-10 08:30",
            )
    if "outcome" in roles and "died" not in roles:
        outcome = first[roles["outcome"]].astype("string").str.strip().str.casefold()
        died_codes = {c.casefold() for c in mapping.died_codes} or _DIED_WORDS
        dead = outcome.isin(died_codes).fillna(False).to_numpy()
        info["died"] = info["discharged"].where(dead)
        info["discharged"] = info["discharged"].where(~dead)
        report.add(
            "info",
            "assumption",
            row=2,
            column=roles["outcome"],
            value=f"{int(dead.sum())} of {len(info)} subjects died",
            expected=f"outcome {sorted(died_codes)} = died at the discharge time, else discharged",
        )
    return info.reset_index(drop=True)


def _ages(first: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """Ages in years; a cell that is not an age refuses the file (never stored as missing)."""
    cells = first[column]
    ages = pd.to_numeric(cells, errors="coerce").astype(float)
    given = cells.notna() & (cells.astype("string").str.strip() != "").fillna(False)
    low, high = AGE_RANGE
    bad = given & ~ages.between(low, high)
    if bad.any():
        shown = ", ".join(
            f"row {row}: {_cell_text(value)!r}"
            for row, value in zip(first.loc[bad, "__row"][:5], cells[bad][:5], strict=True)
        )
        raise DataError(
            f"{path}: column {column}: {shown}{' …' if bad.sum() > 5 else ''} — expected an "
            f"age in years, {low:g}–{high:g}"
        )
    return ages


def _cell_text(value: object) -> str:
    """A cell as a person reads it in a message (a 300-digit number as 1e+300)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        if abs(int(value)) >= 10**15:  # Python refuses to print 4,300 digits and more
            return f"a number of {int(math.log10(abs(int(value)))) + 1} digits"
    elif isinstance(value, float | np.floating) and (
        not math.isfinite(value) or abs(value) >= 1e15
    ):
        return f"{float(value):.6g}"
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _sex(values: pd.Series, mapping: Mapping, report: ValidationReport, column: str) -> pd.Series:
    text = values.astype("string").str.strip().str.replace(r"\.0$", "", regex=True)
    if mapping.sex_codes:
        return text.map(mapping.sex_codes)
    words = text.str.casefold().map(_SEX_WORDS)
    numeric = text.isin(["1", "2"])
    if numeric.any():
        report.add(
            "warning",
            "assumption",
            row=2,
            column=column,
            value="codes 1/2",
            expected="sex coded 1 = male, 2 = female (the usual LIS coding); confirm with "
            "sex_codes in a mapping",
        )
        words = words.fillna(text.map({"1": "M", "2": "F"}))
    return words


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


def _stack(
    table: pd.DataFrame,
    roles: dict[str, str],
    test_columns: list[str],
    resolved: dict[str, tuple[str | None, ...]],
    specimens: dict[str, pd.Series],
) -> pd.DataFrame:
    parts = []
    for column in test_columns:
        cells = table[column]
        present = _filled(cells)
        if not present.any():
            continue
        code, unit, specimen = resolved[column]
        rows = table.loc[present]
        spec = specimens.get(column)
        parts.append(
            pd.DataFrame(
                {
                    "subject": rows[roles["subject"]],
                    "time": rows[roles["time"]],
                    "column": column,
                    "name": column,
                    "test": code,
                    "raw_value": cells[present],
                    "raw_unit": unit,
                    "specimen": spec[present] if spec is not None else specimen,
                    "source_row": rows["__row"],
                }
            )
        )
    if not parts:
        return complete_raw(pd.DataFrame())
    return complete_raw(pd.concat(parts, ignore_index=True))
