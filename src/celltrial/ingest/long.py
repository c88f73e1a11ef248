"""Read long files (one row per result) from CSV in chunks, or from XLSX.

Subject IDs are text exactly as written. Subject facts (sex, age, birth date, height, weight,
admission, discharge, death, outcome: columns a mapping names or recognised by their names) are
read by :func:`read_long_subjects` in a pass over those columns only, before the results, so
that the subjects are complete (and the admissions known, for times given as days) before any
result is stored: :func:`read_long` returns both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.columns import FACT_ROLES, find_roles, resolve_tests, subject_id_column
from celltrial.ingest.frame import SUBJECT_FIELDS, complete_raw, strip_text, stripped_codes
from celltrial.ingest.mapping import Mapping, Offsets
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.tables import (
    is_workbook,
    read_csv_chunks,
    read_table,
    read_workbook_sheet,
)
from celltrial.ingest.times import OFFSET_COLUMNS, parse_times

LONG_ROLES = (
    "subject",
    "time",
    "test",
    "value",
    "unit",
    "ref_low",
    "ref_high",
    "reference",
    "specimen",
)
REQUIRED = ("subject", "time", "test", "value")
CHUNK_ROWS = 200_000
_RANGE = r"^\s*(?P<lo>[+-]?\d+(?:[.,]\d+)?)?\s*(?:-|–|~|to)\s*(?P<hi>[+-]?\d+(?:[.,]\d+)?)\s*$"


def long_roles(columns: list[str], mapping: Mapping, path: Path) -> dict[str, str]:
    """The roles of a long file's columns; :class:`DataError` naming what is missing."""
    roles = find_roles(columns, mapping, LONG_ROLES)
    missing = [r for r in REQUIRED if r not in roles or roles[r] not in columns]
    if missing:
        raise DataError(
            f"{path}: no column for {', '.join(missing)} (columns: {', '.join(columns)}); "
            "name them in a mapping file (--mapping, see --suggest-mapping)"
        )
    return roles


def fact_roles(columns: list[str], mapping: Mapping) -> dict[str, str]:
    """role → column of the subject facts a long file has (besides its result roles)."""
    result_columns = set(find_roles(columns, mapping, LONG_ROLES).values())
    found = find_roles(columns, mapping, ("subject", *FACT_ROLES))
    return {
        role: column
        for role, column in found.items()
        if role == "subject" or (column in columns and column not in result_columns)
    }


def read_long(
    path: Path,
    mapping: Mapping,
    report: ValidationReport,
    *,
    zone: ZoneInfo | str,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[Iterator[pd.DataFrame], pd.DataFrame]:
    """(raw frames chunk by chunk, subject facts: one row per subject with
    :data:`~celltrial.ingest.frame.SUBJECT_FIELDS` and ``source_row``) of a long file.

    The facts are read first (a pass over the subject and fact columns only); problems with them
    go to ``report``. Times given as days from each subject's admission count from the
    admission in the file, else (in validation) from the study's record of the subject.
    """
    if is_workbook(path):
        sheet = read_sheet(path, mapping)
        roles = long_roles([str(c) for c in sheet.columns], mapping, path)
        subjects = _sheet_facts(sheet, mapping, report, zone)
        chunk = to_raw(sheet, roles, mapping, first_row=2, subjects=subjects)
        return iter([chunk]), subjects
    subjects = read_long_subjects(path, mapping, report, zone=zone, chunk_rows=chunk_rows)
    chunks = read_long_chunks(path, mapping, chunk_rows=chunk_rows, subjects=subjects)
    return chunks, subjects


def read_long_chunks(
    path: Path,
    mapping: Mapping,
    *,
    chunk_rows: int = CHUNK_ROWS,
    subjects: pd.DataFrame | None = None,
) -> Iterator[pd.DataFrame]:
    """Raw frames (see :mod:`celltrial.ingest.frame`) of a long CSV or XLSX, chunk by chunk.

    ``subjects`` (from :func:`read_long_subjects`): the admissions that times given as days
    count from (else validation takes the study's record of each subject). Without them, days
    counted from each subject's admission take the admission's date as written in the file.
    """
    if subjects is None and _days_from_admission(mapping):
        subjects = _written_admissions(path, mapping, chunk_rows)
    if is_workbook(path):
        sheet = read_sheet(path, mapping)
        roles = long_roles([str(c) for c in sheet.columns], mapping, path)
        yield to_raw(sheet, roles, mapping, first_row=2, subjects=subjects)
        return
    chunks = read_csv_chunks(
        path,
        chunk_rows=chunk_rows,
        what="lab file",
        dtype=str,
        keep_default_na=False,
        id_columns=subject_id_column(mapping),
    )
    first_row = 2
    roles: dict[str, str] | None = None
    for chunk in chunks:
        if roles is None:
            roles = long_roles(list(chunk.columns), mapping, path)
        yield to_raw(chunk, roles, mapping, first_row=first_row, subjects=subjects)
        first_row += len(chunk)


def read_long_subjects(
    path: Path,
    mapping: Mapping,
    report: ValidationReport,
    *,
    zone: ZoneInfo | str,
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """The subject facts of a long file (an empty frame when it has no fact columns): each
    subject's first value of each fact; rows that disagree are a warning naming them."""
    if is_workbook(path):
        return _sheet_facts(read_sheet(path, mapping), mapping, report, zone)
    header = [str(c) for c in read_table(path, what="lab file", nrows=0).columns]
    roles = fact_roles(header, mapping)
    if "subject" not in roles or len(roles) == 1:
        return empty_facts()
    time = find_roles(header, mapping, ("time",)).get("time")
    use_time = "birth_date" in roles and time in header and not _days(mapping, time)
    columns = list(dict.fromkeys([*roles.values(), *([time] if use_time else [])]))
    fact_columns = [c for c in columns if c != roles["subject"] and c != time]
    parts: list[pd.DataFrame] = []
    first_times: list[pd.Series] = []
    first_row = 2
    chunks = read_csv_chunks(
        path,
        chunk_rows=chunk_rows,
        what="lab file",
        dtype=str,
        keep_default_na=False,
        usecols=columns,
        id_columns=[roles["subject"]],
    )
    for chunk in chunks:
        chunk = chunk.reset_index(drop=True)
        chunk["__row"] = np.arange(first_row, first_row + len(chunk))
        first_row += len(chunk)
        chunk = chunk[chunk[roles["subject"]].notna()]
        # one row per distinct combination of facts: what a subject's rows disagree on is kept
        parts.append(chunk.drop_duplicates([roles["subject"], *fact_columns]))
        if use_time:
            times, _bad = parse_times(chunk[time], zone)
            first_times.append(times.groupby(chunk[roles["subject"]].to_numpy()).min())
    if not parts:
        return empty_facts()
    table = pd.concat(parts, ignore_index=True)
    firsts = pd.concat(first_times).groupby(level=0).min() if first_times else None
    return _facts(table, roles, mapping, report, zone, firsts)


def _days_from_admission(mapping: Mapping) -> bool:
    offsets = mapping.offsets
    return offsets is not None and bool(offsets.column) and offsets.fixed_date is None


def _written_admissions(path: Path, mapping: Mapping, chunk_rows: int) -> pd.DataFrame:
    """Each subject's admission date as written in the file (``YYYY-MM-DD`` text; the time
    zone does not move a date written without one)."""
    facts = read_long_subjects(
        path, mapping, ValidationReport(file=str(path)), zone="UTC", chunk_rows=chunk_rows
    )
    if facts.empty:
        return facts
    admitted = pd.to_datetime(facts["admitted"], utc=True)
    facts["admitted"] = admitted.dt.strftime("%Y-%m-%d").astype(object).where(admitted.notna())
    return facts


def _days(mapping: Mapping, time: str | None) -> bool:
    """Whether the time column holds days from an anchor (not dates)."""
    return (
        mapping.offsets is not None
        and bool(mapping.offsets.column)
        and (time == mapping.offsets.column)
    )


def _sheet_facts(
    sheet: pd.DataFrame, mapping: Mapping, report: ValidationReport, zone: ZoneInfo | str
) -> pd.DataFrame:
    header = [str(c) for c in sheet.columns]
    roles = fact_roles(header, mapping)
    if "subject" not in roles or len(roles) == 1:
        return empty_facts()
    table = sheet.copy()
    table.columns = header
    table["__row"] = np.arange(2, len(table) + 2)
    time = find_roles(header, mapping, ("time",)).get("time")
    firsts = time if time in header and not _days(mapping, time) else None
    return _facts(table, roles, mapping, report, zone, firsts)


def _facts(table, roles, mapping, report, zone, first_times) -> pd.DataFrame:
    from celltrial.ingest.wide import read_subject_facts

    table = table.copy()
    table[roles["subject"]] = strip_text(table[roles["subject"]]).astype("string")
    return read_subject_facts(table, roles, mapping, report, zone, first_times=first_times)


def empty_facts() -> pd.DataFrame:
    """A subject-facts frame with no rows (the columns readers return)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in (*SUBJECT_FIELDS, "source_row")})


def read_sheet(path: Path, mapping: Mapping) -> pd.DataFrame:
    """The mapping's sheet of a workbook (the first by default): each cell as the workbook holds
    it (text stays text: an ID typed as ``007`` is not made the number 7); the subject column
    as text (a number cell 123 as ``123``)."""
    return read_workbook_sheet(
        path,
        sheet=mapping.sheet,
        what="lab workbook",
        dtype=object,
        id_columns=subject_id_column(mapping),
    )


def row_anchors(subject: pd.Series, offsets: Offsets, info: pd.DataFrame | None) -> pd.Series:
    """Per row: the anchor its days count from — the mapping's date (text), the subject's
    admission in the file (a UTC time), or None (validation takes the study's record)."""
    if offsets.fixed_date is not None:
        return pd.Series(offsets.fixed_date, index=subject.index, dtype=object)
    if info is None or info.empty or "admitted" not in info.columns:
        return pd.Series(None, index=subject.index, dtype=object)
    admitted = info.drop_duplicates("subject").set_index("subject")["admitted"]
    admitted = admitted[admitted.notna()]
    found = subject.astype("string").map(admitted.astype(object))
    return found.astype(object).where(found.notna(), None)


def to_raw(
    table: pd.DataFrame,
    roles: dict[str, str],
    mapping: Mapping,
    *,
    first_row: int,
    subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """A long table's rows as a raw frame (times given as days: see :func:`read_long`)."""
    # each distinct test name stripped, resolved and looked up once, then spread to its rows
    codes, texts = stripped_codes(table[roles["test"]])
    names = pd.Series(np.append(texts, None)[codes], index=table.index, dtype=object)
    resolved = resolve_tests(texts.tolist(), mapping)
    lookup = pd.DataFrame.from_dict(
        resolved, orient="index", columns=["test", "name_unit", "map_specimen"]
    ).reindex(pd.Index(texts, dtype=object))
    info = pd.DataFrame(
        {c: lookup[c].array.take(codes, allow_fill=True) for c in lookup.columns},
        index=table.index,
    )
    unit = table[roles["unit"]] if "unit" in roles else pd.Series(None, index=table.index)
    unit = strip_text(unit).fillna(info["name_unit"])
    days = _days(mapping, roles["time"])
    frame = pd.DataFrame(
        {
            "subject": table[roles["subject"]],
            "time": None if days else table[roles["time"]],
            "column": roles["value"],
            "name": names,
            "test": info["test"],
            "raw_value": table[roles["value"]],
            "raw_unit": unit,
            "specimen": table[roles["specimen"]] if "specimen" in roles else info["map_specimen"],
            "source_row": pd.RangeIndex(first_row, first_row + len(table)).to_numpy(),
        },
        index=table.index,
    )
    if "ref_low" in roles or "ref_high" in roles:
        frame["ref_low"] = table[roles["ref_low"]] if "ref_low" in roles else None
        frame["ref_high"] = table[roles["ref_high"]] if "ref_high" in roles else None
    elif "reference" in roles:
        bounds = table[roles["reference"]].astype("string").str.extract(_RANGE)
        frame["ref_low"] = bounds["lo"].str.replace(",", ".")
        frame["ref_high"] = bounds["hi"].str.replace(",", ".")
    frame["specimen"] = strip_text(frame["specimen"])
    out = complete_raw(frame)
    if days:
        assert mapping.offsets is not None
        subject = strip_text(table[roles["subject"]])
        extra = {
            "offset_days": table[roles["time"]].astype(object),
            "anchor": row_anchors(subject, mapping.offsets, subjects),
            "time_column": roles["time"],
        }
        for column in OFFSET_COLUMNS:
            out[column] = extra[column]
    out.attrs["same_day_repeats"] = mapping.same_day_repeats
    return out
