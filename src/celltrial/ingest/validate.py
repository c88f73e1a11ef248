"""Validate a raw long frame: parse values, convert units, check subjects, times and ranges.

Every non-empty result ends in exactly one outcome: ``stored``, ``flagged`` (stored, with a
warning) or ``reported`` (not stored, with a message). Errors refuse the whole file.

Times given as days from an anchor (raw columns :data:`~celltrial.ingest.times.OFFSET_COLUMNS`,
from a mapping's ``offsets``) become dates here: the anchor's calendar day in the study's time
zone plus the days; a day cell that is not a whole number, or a subject without an admission
time to count from (neither in the file nor in the study), is an error by row.

Two values of one test on one day without a clock time (day-resolution data) are a conflict:
neither is stored, unless the mapping's ``same_day_repeats`` says ``first`` or ``last`` (in file
order), which keeps that one and names the rule in the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from celltrial.catalogue import TestDefinition, load_catalogue
from celltrial.errors import UnitError
from celltrial.ingest import values as V
from celltrial.ingest.alignment import MAX_SUBJECT_CODE
from celltrial.ingest.frame import map_unique, strip_text, stripped_codes
from celltrial.ingest.limits import compute_reporting_limits
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.times import (
    AMBIGUOUS_DATE_HINT,
    ambiguous_dates,
    current_date_order,
    dates_from_offsets,
    describe_two_ways,
    parse_day_offsets,
    parse_times_and_days,
)
from celltrial.store.models import RESULT_COLUMNS
from celltrial.units import convert, explain_unconvertible, normalize_unit

#: Specimens whose results belong in blood, serum or plasma columns.
BLOOD_SPECIMENS = frozenset(
    {
        "blood",
        "serum",
        "plasma",
        "serum/plasma",
        "whole blood",
        "arterial blood",
        "venous blood",
        "capillary blood",
        "bld",
        "ser",
        "plas",
        "ser/plas",
        "血",
        "血清",
        "血浆",
        "全血",
    }
)
_NO_UNIT = "<no unit given>"
_BASIS = re.compile(r"\b(FEU|DDU)\b", re.IGNORECASE)

#: The longest text the database keeps of a stored result (``observation``'s VARCHAR lengths),
#: checked here so that SQLite (which keeps more) and PostgreSQL (which refuses more) agree.
MAX_TEXT = {"raw_value": 64, "raw_unit": 32, "specimen": 32}

STORED_COLUMNS = ("subject", *RESULT_COLUMNS)


#: Outcome of a result, by code: stored, stored with a flag, or not stored and reported.
OUTCOMES = ("stored", "flagged", "reported")
STORED, FLAGGED, REPORTED = range(len(OUTCOMES))


@dataclass(frozen=True)
class SubjectDates:
    """Known subjects (index: code) with ``start`` (enrolment/admission) and ``end`` (discharge
    or death) as UTC times, NaT where unknown."""

    table: pd.DataFrame


def check_results(
    raw: pd.DataFrame,
    report: ValidationReport,
    *,
    subjects: pd.DataFrame,
    zone: ZoneInfo | str,
    detect_limits: bool = True,
    columns: Mapping[str, str] | None = None,
    same_day_repeats: str | None = None,
) -> pd.DataFrame:
    """The rows to store (columns :data:`STORED_COLUMNS` plus ``flagged``), report filled in.

    ``subjects``: index = subject code, columns ``start`` and ``end`` (aware UTC or NaT).
    ``columns``: the file's column (as written in it) of each role a table file has —
    ``subject``, ``time``, ``test`` (long files), ``unit`` — so that a problem with a subject,
    a time, a test name or a unit is reported on the cell that holds it; without one, on the
    result's own column. Every message names the source row, that column and the cell's text.
    ``same_day_repeats``: ``conflict`` | ``first`` | ``last`` (a mapping's setting); default: the
    reader's (``raw.attrs["same_day_repeats"]``), else ``conflict``.
    """
    run = _Run(raw.reset_index(drop=True), report, subjects, zone, columns or {})
    run.same_day_repeats = same_day_repeats or raw.attrs.get("same_day_repeats") or "conflict"
    return run.execute(detect_limits=detect_limits)


class _Run:
    def __init__(
        self,
        raw: pd.DataFrame,
        report: ValidationReport,
        subjects: pd.DataFrame,
        zone: object,
        columns: Mapping[str, str],
    ) -> None:
        self.raw = raw
        self.report = report
        self.subjects = subjects
        self.zone = zone
        self.columns = dict(columns)
        self.catalogue = {t.code: t for t in load_catalogue().tests}
        # outcome codes (small integers: compared on every check, cheaper than text)
        self.outcome = pd.Series(STORED, index=raw.index, dtype="int8")
        self.text = raw["raw_value"].astype("string")

    # -- bookkeeping ------------------------------------------------------------------------
    @property
    def headers_hold_tests(self) -> bool:
        """Whether the tests (and their units) are named by the columns' headers, line 1 of
        the file (a wide table), rather than by cells (a long one) or a REDCap/FHIR source."""
        return "time" in self.columns and "test" not in self.columns

    def column_of(self, role: str, rows: pd.DataFrame) -> pd.Series:
        """The file's column holding each row's ``role`` cell (subject, time, test, unit): the
        one the reader named, else the result's own column."""
        if role == "unit" and "unit" not in self.columns and "test" in self.columns:
            role = "test"  # a long file without a unit column: the unit came with the test name
        name = self.columns.get(role)
        if role == "time" and "time_column" in rows.columns:
            given = rows["time_column"].astype(object)
            if given.notna().any():  # times given as days: the column holding the days
                fallback = name if name is not None else rows["column"]
                return given.where(given.notna(), fallback).astype(object)
        if name is None and role == "subject":
            name = "subject"  # REDCap record ID, FHIR subject reference
        if name is None:
            return rows["column"].astype(object)
        return pd.Series(name, index=rows.index, dtype=object)

    def cells(self, role: str, mask: pd.Series) -> pd.Series:
        """The text of the ``role`` cells of the rows in ``mask`` ("" where empty)."""
        source = {"subject": "subject", "time": "time", "unit": "raw_unit", "test": "name"}
        if role == "value":
            return _cell_text(self.raw.loc[mask, "raw_value"])
        if role == "time" and "offset_days" in self.raw.columns:
            days = self.raw.loc[mask, "offset_days"]
            return _cell_text(days.where(days.notna(), self.raw.loc[mask, "time"]))
        return _cell_text(self.raw.loc[mask, source[role]])

    def _messages(
        self, mask: pd.Series, severity: str, kind: str, expected: object, role: str
    ) -> None:
        """One message per row of ``mask`` naming its ``role`` cell: the result itself
        (``value``), or a cell the row's results share (subject, time, unit), named once per
        row however many results the row holds."""
        rows = self.raw.loc[mask]
        if rows.empty:
            return
        messages = pd.DataFrame(
            {
                "row": rows["source_row"],
                "column": rows["column"] if role == "value" else self.column_of(role, rows),
                "value": self.cells(role, mask),
                "expected": expected.loc[mask] if isinstance(expected, pd.Series) else expected,
            }
        )
        if role != "value":
            messages = messages.drop_duplicates(["row", "column", "value", "expected"])
        self.report.add(
            severity,
            kind,
            row=messages["row"].tolist(),
            column=messages["column"].tolist(),
            value=messages["value"].tolist(),
            expected=messages["expected"].tolist(),
        )

    def drop(
        self,
        mask: pd.Series,
        kind: str,
        expected: object,
        severity: str = "warning",
        *,
        role: str = "value",
    ) -> None:
        mask = mask & (self.outcome != REPORTED)
        self._messages(mask, severity, kind, expected, role)
        self.outcome[mask] = REPORTED

    def flag(self, mask: pd.Series, kind: str, expected: object, *, role: str = "value") -> None:
        mask = mask & (self.outcome != REPORTED)
        self._messages(mask, "warning", kind, expected, role)
        self.outcome[mask] = FLAGGED
        if mask.any():
            self.flags[mask] = self.flags[mask] + ("," + kind)

    def live(self) -> pd.Series:
        return self.outcome != REPORTED

    # -- steps -----------------------------------------------------------------------------
    def execute(self, *, detect_limits: bool) -> pd.DataFrame:
        raw = self.raw
        text_cells = raw["raw_value"].dtype == object or pd.api.types.is_string_dtype(
            raw["raw_value"].dtype
        )
        # plain numbers as written: read once for the values and the reporting limits
        self.numbers = V.numbers_as_written(raw["raw_value"]) if text_cells else None
        parsed = V.parse_values(raw["raw_value"], self.numbers)
        # each cell's status as an integer code (compared four times below; -2: no such status)
        statuses, names = pd.factorize(parsed["status"].to_numpy(dtype=object))
        status_code = {name: code for code, name in enumerate(names)}
        empty = pd.Series(statuses == status_code.get(V.EMPTY, -2), index=parsed.index)
        self._no_result_markers(empty)
        keep = ~empty
        if not keep.all():  # (a million rows copied to keep them all otherwise)
            self.raw, parsed, self.text = raw[keep], parsed[keep], self.text[keep]
            self.outcome = self.outcome[keep]
            statuses = statuses[keep.to_numpy()]
        self.flags = pd.Series("", index=self.raw.index, dtype=object)
        self.report.counts["results"] += int(keep.sum())
        self.value = parsed["value"].copy()
        self.qualifier = parsed["qualifier"].copy()
        self.test = self.raw["test"].astype(object).copy()
        self._test_codes: tuple[np.ndarray, np.ndarray] | None = None
        self._units_as_written: tuple[np.ndarray, np.ndarray] | None = None

        self._unknown_columns()
        for status, kind, expected in (
            (V.TEXT, "text_result", "a number, optionally with <, <=, >, >="),
            (V.AMBIGUOUS, "ambiguous_number", "a decimal point, e.g. 1234 or 1.234"),
            (V.LIMIT_ONLY, "limit_only", "a limit with its number, e.g. >1000"),
        ):
            rows = statuses == status_code.get(status, -2)
            self.drop(pd.Series(rows, index=self.raw.index), kind, expected)
        self._times()
        self._subjects()
        self._specimens()
        self._sentinels()
        self._lengths()
        self.slope = pd.Series(np.nan, index=self.raw.index)
        self.offset = pd.Series(np.nan, index=self.raw.index)
        unit = self._units()
        self._finite()
        self._references()
        self._plausible(unit)
        if detect_limits:
            self._censored()
        self._timing()
        self._duplicates()
        return self._result(unit)

    def _no_result_markers(self, empty: pd.Series) -> None:
        marked = empty.copy()
        if empty.any():
            marked[empty] = self.text[empty].notna() & (self.text[empty].str.strip() != "")
        if marked.any():
            per_column = self.raw.loc[marked].groupby("column", sort=False)["source_row"]
            for column, rows in per_column:
                self.report.add(
                    "info",
                    "no_result_marker",
                    row=int(rows.iloc[0]),
                    column=column,
                    value=str(self.text[rows.index[0]]).strip(),
                    expected=f"a result, or an empty cell: {len(rows)} cells of this column "
                    f"({_rows_text(rows)}) mark no result and are not counted as results",
                )

    def _unknown_columns(self) -> None:
        """Results whose test is not in the catalogue: in a long file, one message per unknown
        test name (its first row, on the test column); in a wide file, one per column (on its
        header, line 1); otherwise one per source column."""
        unknown = self.test.isna()
        if not unknown.any():
            return
        mapping_hint = "or a mapping entry naming its test (--mapping)"
        long_file = "test" in self.columns
        for (column, name), rows in self.raw.loc[unknown].groupby(
            ["column", "name"], sort=False, dropna=False
        )["source_row"]:
            count = _results(len(rows))
            name_text = "" if pd.isna(name) else str(name)
            if long_file:
                self.report.add(
                    "warning",
                    "unknown_test",
                    row=int(rows.iloc[0]),
                    column=self.columns["test"],
                    value=name_text,
                    expected=f"a test of the catalogue (its name, an alias or its code), "
                    f"{mapping_hint}. Not stored: {count} ({_rows_text(rows)})",
                )
                continue
            self.report.add(
                "warning",
                "column_ignored",
                row=1 if self.headers_hold_tests else int(rows.iloc[0]),
                column=column,
                value=name_text,
                expected=f"a test name or alias of the catalogue, {mapping_hint}. "
                f"Not stored: {count} ({_rows_text(rows)})",
            )
        self.outcome[unknown] = REPORTED

    def _offsets(self) -> None:
        """Times given as days from an anchor become dates (``YYYY-MM-DD`` in the raw time)."""
        if "offset_days" not in self.raw.columns:
            return
        cells = self.raw["offset_days"]
        given = strip_text(cells).notna()
        if not given.any():
            return
        days, bad = parse_day_offsets(cells)
        bad &= given
        if bad.any():
            self.drop(
                bad,
                "bad_offset",
                "the time as a whole number of days from the anchor (e.g. 0, 3, -1)",
                "error",
                role="time",
            )
        anchor = _anchor_days(self.raw["anchor"], self.zone)
        missing = anchor.isna() & given & ~bad
        if missing.any() and len(self.subjects) and "admitted" in self.subjects.columns:
            code = strip_text(self.raw["subject"].astype("string"))
            admitted = pd.to_datetime(self.subjects["admitted"], utc=True)
            stored = pd.Series(
                pd.to_datetime(code[missing].map(admitted), utc=True).to_numpy(),
                index=code[missing].index,
            )
            anchor[missing] = _anchor_days(stored.astype(object), self.zone)
            missing = anchor.isna() & given & ~bad
        if missing.any():
            self.drop(
                missing,
                "no_anchor",
                "an admission time of the subject to count the days from (in the file's "
                "admission column or the study's record of the subject), or a date as the "
                "mapping's offsets: anchor",
                "error",
                role="time",
            )
        dates = dates_from_offsets(anchor, days, self.zone)
        use = given & ~bad & ~missing
        time = self.raw["time"].astype(object).copy()
        time[use] = dates[use]
        self.raw = self.raw.assign(time=time)

    def _times(self) -> None:
        self._offsets()
        times, unreadable, self.day_only = parse_times_and_days(self.raw["time"], self.zone)
        unreadable = unreadable.fillna(False).astype(bool)
        self.time = times
        two_ways = unreadable.copy()  # of the unreadable, those written with the year last
        if unreadable.any():  # (a million readable times need no regular expression each)
            two_ways[unreadable] = ambiguous_dates(self.raw["time"][unreadable]).to_numpy()
        if two_ways.any():
            cells = self.cells("time", two_ways)
            order = current_date_order()
            said = f" ({order.describe()})" if order is not None else ""
            expected = cells.map(
                lambda v: (
                    AMBIGUOUS_DATE_HINT.format(
                        value=v, one=describe_two_ways(v)[0], other=describe_two_ways(v)[1]
                    )
                    + said
                )
            )
            self.drop(
                two_ways, "ambiguous_date", expected.reindex(self.raw.index), "error", role="time"
            )
            unreadable &= ~two_ways
        if unreadable.any():
            example = pd.Timestamp("2020-02-10 08:30", tz=str(self.zone)).isoformat("T", "minutes")
            self.drop(
                unreadable,
                "bad_time",
                f"a date and time that exists, e.g. 2020-02-10 08:30 (local to {self.zone}) or "
                f"{example}",
                "error",
                role="time",
            )
        self.drop(times.isna(), "no_time", "the time the sample was taken", role="time")

    def _subjects(self) -> None:
        # each row's subject code (stripped) as an integer code, each distinct code looked at
        # once here and in the length and timing checks (-1: missing or blank)
        codes, texts = stripped_codes(self.raw["subject"].astype("string"))
        self._subject_codes = (codes, texts)
        code = pd.Series(np.append(texts, None)[codes], index=self.raw.index, dtype=object)
        code = code.astype("string")
        self.subject = code
        missing = pd.Series(codes < 0, index=self.raw.index)
        self.drop(
            missing, "unknown_subject", "a subject ID on every result", "error", role="subject"
        )
        known = np.append(pd.Index(texts, dtype=object).isin(self.subjects.index), True)[codes]
        unknown = pd.Series(~known, index=self.raw.index) & self.live()
        if unknown.any():
            rows = self.raw.loc[unknown]
            first = rows.groupby(code[unknown], sort=True)["source_row"].agg(["min", "size"])
            where = self.column_of("subject", rows).iloc[0]
            self.report.add(
                "error",
                "unknown_subject",
                row=first["min"].tolist(),
                column=where,
                value=first.index.tolist(),
                expected=[
                    "a subject of the study (or import with --register-subjects); "
                    f"{_results(n)} of this subject in the file"
                    for n in first["size"]
                ],
            )
            self.outcome[unknown] = REPORTED

    def _lengths(self) -> None:
        """Text longer than the database keeps: an error by row, on both backends alike."""
        codes, texts = self._subject_codes
        too_long = np.array([len(text) > MAX_SUBJECT_CODE for text in texts] + [False])
        long_code = pd.Series(too_long[codes], index=self.raw.index)
        self.drop(
            long_code & self.live(),
            "too_long",
            f"a subject ID of at most {MAX_SUBJECT_CODE} characters",
            "error",
            role="subject",
        )
        for column, role in (("raw_value", "value"), ("raw_unit", "unit"), ("specimen", "value")):
            limit = MAX_TEXT[column]
            if column == "raw_value":
                text = self.text
                lengths = text.astype("string").str.len()
            else:
                found = self._unit_cells() if column == "raw_unit" else None
                lengths = _stripped_lengths(self.raw[column], found)
            over = (lengths > limit).fillna(False).astype(bool) & self.live()
            if not over.any():
                continue
            if column != "raw_value":
                text = strip_text(self.raw[column])
            what = {"raw_value": "result", "raw_unit": "unit", "specimen": "specimen"}[column]
            self.drop(
                over,
                "too_long",
                f"a {what} of at most {limit} characters (the database keeps no more)"
                + (
                    ": the specimen " + text[over].astype(str).str[:40]
                    if column == "specimen"
                    else ""
                ),
                "error",
                role=role,
            )

    def _finite(self) -> None:
        """A value that is infinite once converted (1e308 mg/dL in mg/L) is not stored."""
        values = self.value.astype(float)
        bad = values.notna() & ~np.isfinite(values.fillna(0.0)) & self.live()
        self.drop(
            bad.astype(bool),
            "not_finite",
            "a number a computer can hold (within about ±1.8e308, also once converted to the "
            "test's unit)",
        )
        self.value = self.value.where(~bad)

    def _references(self) -> None:
        """Reference limits that are not finite numbers (1e309) are left empty, with a warning."""
        for column in ("ref_low", "ref_high"):
            cells = self.raw[column]
            if cells.isna().all():  # no limits given (a number per cell: slow on a million)
                continue
            numbers = pd.to_numeric(cells, errors="coerce").astype(float)
            bad = (numbers.notna() & ~np.isfinite(numbers.fillna(0.0))) & self.live()
            if not bad.any():
                continue
            rows = self.raw.loc[bad]
            self.report.add(
                "warning",
                "bad_reference",
                row=rows["source_row"].tolist(),
                column=column,
                value=_cell_text(cells[bad]).tolist(),
                expected="a finite reference limit; left empty",
            )
            values = cells.astype(object).copy()
            values[bad] = None
            self.raw = self.raw.assign(**{column: values})

    def _unit_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's unit cell as written as an integer code (-1 where missing) and the distinct
        cells; found once (the rows and their units do not change after the first step)."""
        if self._units_as_written is None:
            self._units_as_written = pd.factorize(self.raw["raw_unit"].to_numpy(dtype=object))
        return self._units_as_written

    def _per_test(self, value_of) -> pd.Series:
        """``value_of(definition)`` of each row's test (object dtype; None for rows without a
        known test). The tests are factorised once, until :meth:`_set_tests` changes them."""
        if self._test_codes is None:
            self._test_codes = pd.factorize(self.test.to_numpy(dtype=object, na_value=None))
        codes, uniques = self._test_codes
        defined = [self.catalogue.get(code) for code in uniques]
        mapped = np.array([None if d is None else value_of(d) for d in defined] + [None])
        return pd.Series(mapped[codes], index=self.test.index, dtype=object)

    def _set_tests(self, index: pd.Index, code: str) -> None:
        self.test[index] = code
        self._test_codes = None

    def _definition_series(self, attribute: str) -> pd.Series:
        return self._per_test(lambda definition: getattr(definition, attribute))

    def _plausible_bounds(self) -> tuple[pd.Series, pd.Series]:
        return (
            self._per_test(lambda definition: definition.plausible[0]).astype(float),
            self._per_test(lambda definition: definition.plausible[1]).astype(float),
        )

    def _specimens(self) -> None:
        if self.raw["specimen"].isna().all():  # none given: no specimen other than blood
            return
        given = map_unique(
            self.raw["specimen"], lambda v: v.astype("string").str.strip().str.casefold()
        )
        blood = BLOOD_SPECIMENS | {"plasma", "serum"}
        # whether each row's test is a blood test, worked out once per test
        blood_test = (
            self._per_test(
                lambda definition: (
                    definition.specimen is not None and str(definition.specimen).casefold() in blood
                )
            )
            .fillna(False)
            .astype(bool)
        )
        other = given.notna() & ~given.isin(BLOOD_SPECIMENS) & blood_test
        if not other.any():
            return
        self.drop(
            other.fillna(False).astype(bool),
            "other_specimen",
            "a blood result; this row is " + given.fillna("") + " (e.g. urinalysis)",
        )

    def _sentinels(self) -> None:
        low, _high = self._plausible_bounds()
        sentinel = (self.value < 0) & (low >= 0)
        self.drop(sentinel.fillna(False), "sentinel", "a measured value (negative is impossible)")

    def _units(self) -> pd.Series:
        unit = pd.Series(None, index=self.raw.index, dtype=object)
        where = np.flatnonzero((self.live() & self.test.notna()).to_numpy())
        # each live row's test and unit as written (stripped, each distinct cell once) as integer
        # codes: a groupby hashes every row's pair, once for the labels and once for the rows
        if self._test_codes is None:
            self._test_codes = pd.factorize(self.test.to_numpy(dtype=object, na_value=None))
        test_codes, tests = self._test_codes
        cells, distinct = self._unit_cells()
        stripped = strip_text(pd.Series(distinct, dtype=object)).fillna(_NO_UNIT).tolist()
        # a missing cell (code -1) takes the last: no unit given
        unit_codes, units = pd.factorize(np.array([*stripped, _NO_UNIT], dtype=object))
        if not len(where):
            return unit
        group, _ = pd.factorize(test_codes[where] * len(units) + unit_codes[cells[where]])
        order = np.argsort(group, kind="stable")  # each group's rows in file order
        found = [
            ((tests[test_codes[where[rows[0]]]], units[unit_codes[cells[where[rows[0]]]]]), rows)
            for rows in np.split(order, np.cumsum(np.bincount(group))[:-1])
        ]
        # sorted by test and unit as a groupby sorts them
        for (code, unit_text), rows in sorted(found, key=lambda group: group[0]):
            self._convert_group(
                code,
                None if unit_text == _NO_UNIT else unit_text,
                self.raw.index[where[rows]],
                unit,
                where[rows],
            )
        return unit

    def _convert_group(
        self,
        code: str,
        unit_text: str | None,
        index: pd.Index,
        unit: pd.Series,
        positions: np.ndarray,
    ) -> None:
        """Convert the results of one test given in one unit (rows ``index``, at
        ``positions``) to the test's unit, or report why they cannot be."""
        definition = self.catalogue[code]
        if unit_text is not None and definition.basis is not None:
            match = _BASIS.search(unit_text)
            if match:
                basis = match.group(1).upper()
                unit_text = _BASIS.sub("", unit_text).strip() or definition.unit
                if basis != definition.basis:
                    definition = self._sibling(definition, basis)
                    self._set_tests(index, definition.code)
        if definition.basis is not None and (
            unit_text is None or not _BASIS.search(str(self.raw.loc[index[0], "raw_unit"] or ""))
        ):
            self._column_note(index, "basis_implied", f"basis {definition.basis} ({code})")
        values = self.value.iloc[positions].to_numpy(dtype=float)
        if unit_text is None:
            self._implied_unit(definition, index, values, unit)
            return
        reason = explain_unconvertible(
            unit_text,
            definition.unit,
            molar_mass=definition.molar_mass,
            analyte=definition.code,
        )
        if reason is None and definition.units:
            accepted = {normalize_unit(u) for u in (definition.unit, *definition.units)}
            if normalize_unit(unit_text) not in accepted:
                reason = f"{unit_text!r} is not among the units accepted for {definition.code}"
        if reason is not None:
            accepted = (
                "; accepted: " + ", ".join(dict.fromkeys((definition.unit, *definition.units)))
                if definition.units
                else ""
            )
            self._unit_problem(
                index,
                "unit_not_convertible",
                f"a unit convertible to {definition.unit} for {definition.code} "
                f"({definition.name}{accepted}): {reason}",
            )
            return
        converted = convert(values, unit_text, definition.unit, molar_mass=definition.molar_mass)
        factor = convert(
            np.array([0.0, 1.0]), unit_text, definition.unit, molar_mass=definition.molar_mass
        )
        self.value.iloc[positions] = converted
        unit.iloc[positions] = definition.unit
        self.slope.iloc[positions] = factor[1] - factor[0]
        self.offset.iloc[positions] = factor[0]

    def _unit_problem(self, index: pd.Index, kind: str, expected: str) -> None:
        """Refuse the results of ``index`` for their unit: on each row's unit cell or, where
        the unit comes from a column's header (wide files), once on that header (line 1)."""
        mask = pd.Series(True, index=index).reindex(self.raw.index, fill_value=False)
        mask &= self.outcome != REPORTED
        if not mask.any():
            return
        if not self.headers_hold_tests:
            self.drop(mask, kind, expected, "error", role="unit")
            return
        rows = self.raw.loc[mask]
        for column, part in rows.groupby("column", sort=False)["source_row"]:
            self.report.add(
                "error",
                kind,
                row=1,
                column=column,
                value=_cell_text(rows.loc[part.index[:1], "raw_unit"]).iloc[0],
                expected=f"{expected}. Not stored: {_results(len(part))} ({_rows_text(part)})",
            )
        self.outcome[mask] = REPORTED

    def _sibling(self, definition: TestDefinition, basis: str) -> TestDefinition:
        for test in self.catalogue.values():
            if test.analyte == definition.analyte and test.basis == basis:
                return test
        raise UnitError(f"no {definition.analyte} test with basis {basis} in the catalogue")

    def _implied_unit(
        self, definition: TestDefinition, index: pd.Index, values: np.ndarray, unit: pd.Series
    ) -> None:
        low, high = definition.plausible
        finite = values[np.isfinite(values) & (values >= 0)]
        median = float(np.median(finite)) if len(finite) else float("nan")
        if len(finite) and low <= median <= high:
            unit[index] = definition.unit
            self._column_note(
                index,
                "unit_implied",
                f"{definition.unit} for {definition.code}: median {median:g} lies in its "
                f"plausible range {low:g}–{high:g}; state the unit in a mapping to confirm",
            )
            return
        self._unit_problem(
            index,
            "unit_missing",
            f"a unit for {definition.code} ({definition.name}): the values' median "
            f"{median:g} does not fit {definition.unit} (plausible {low:g}–{high:g})",
        )

    def _column_note(self, index: pd.Index, kind: str, expected: str) -> None:
        """A note on the unit cells of ``index``, once per source column (its first row)."""
        rows = self.raw.loc[index]
        where = self.column_of("unit", rows)
        for column, part in rows.groupby("column", sort=False)["source_row"]:
            first = part.index[:1]
            self.report.add(
                "warning",
                kind,
                row=1 if self.headers_hold_tests else int(part.iloc[0]),
                column=where.loc[first].iloc[0],
                value=_cell_text(rows.loc[first, "raw_unit"]).iloc[0],
                expected=f"{expected} ({_results(len(part))} of column {column})",
            )

    def _plausible(self, unit: pd.Series) -> None:
        low, high = self._plausible_bounds()
        outside = (((self.value < low) | (self.value > high)) & unit.notna()).fillna(False)
        if not outside.any():
            return
        o = outside
        expected = (
            "a value in "
            + low[o].astype(str)
            + "–"
            + high[o].astype(str)
            + " "
            + unit[o].astype(str)
            + " (got "
            + self.value[o].round(6).astype(str)
            + ")"
        )
        self.flag(outside, "implausible", expected.reindex(self.raw.index))

    def _censored(self) -> None:
        plain = self.live() & (self.qualifier == "") & self.value.notna()
        raw_numbers = (
            self.numbers.loc[self.raw.index]
            if self.numbers is not None
            else pd.to_numeric(self.raw["raw_value"], errors="coerce")
        )
        mask = plain.to_numpy()
        plain_numbers = raw_numbers.to_numpy(dtype=float, na_value=np.nan)[mask]
        plain_index = self.raw.index[mask]
        # per column and unit as written, in order of first appearance, each group's rows in
        # file order (integer codes: a groupby on the text hashes every row's pair)
        columns, _ = pd.factorize(self.raw["column"].to_numpy(dtype=object))
        units, distinct = self._unit_cells()
        group, _ = pd.factorize(columns[mask] * (len(distinct) + 1) + (units[mask] + 1))
        order = np.argsort(group, kind="stable")
        for positions in np.split(order, np.cumsum(np.bincount(group))[:-1]) if len(order) else ():
            index = plain_index[positions]
            numbers = plain_numbers[positions]
            floor, ceiling = compute_reporting_limits(numbers)
            for limit, qualifier, word in ((floor, "<=", "floor"), (ceiling, ">=", "ceiling")):
                if limit is None:
                    continue
                at = pd.Series(False, index=self.raw.index)
                at[index[numbers == limit]] = True
                self.qualifier[at] = qualifier
                self.flag(
                    at,
                    "censored",
                    f"a measured value; {limit:g} is this column's reporting {word} "
                    f"({int(at.sum())} results), stored with qualifier {qualifier}",
                )

    def _timing(self) -> None:
        if not len(self.subjects):
            return
        # both looked up once per distinct subject
        codes, texts = self._subject_codes
        found = self.subjects[["start", "end"]].reindex(pd.Index(texts, dtype=object))
        start, end = (
            pd.Series(found[column].array.take(codes, allow_fill=True), index=self.raw.index)
            for column in ("start", "end")
        )
        start = pd.to_datetime(start, utc=True)
        end = pd.to_datetime(end, utc=True)
        before = (self.time < start).fillna(False)
        after = (self.time > end).fillna(False)
        if before.any():
            self.flag(
                before,
                "before_enrolment",
                "a time at or after the subject's enrolment/admission, "
                + self._local(start[before]),
                role="time",
            )
        if after.any():
            self.flag(
                after,
                "after_discharge",
                "a time at or before the subject's discharge or death, " + self._local(end[after]),
                role="time",
            )

    def _local(self, times: pd.Series) -> pd.Series:
        """Times as people read them: in the study's time zone, to the minute, labelled."""
        text = times.dt.tz_convert(str(self.zone)).dt.strftime("%Y-%m-%d %H:%M")
        return text.reindex(self.raw.index).fillna("") + f" ({self.zone})"

    def _duplicates(self) -> None:
        live = self.live()
        if not live.any():
            return
        frame = pd.DataFrame(
            {
                "s": self.subject,
                "t": self.test,
                "time": self.time,
                "v": self.value,
                "q": self.qualifier,
            }
        )[live]
        dup = frame.duplicated(["s", "t", "time"], keep=False)
        if not dup.any():
            return
        part = frame[dup]
        distinct = part.groupby(["s", "t", "time"])[["v", "q"]].transform("nunique")
        conflict = (distinct["v"] > 1) | (distinct["q"] > 1)
        conflict_mask = pd.Series(False, index=self.raw.index)
        conflict_mask[part.index[conflict.to_numpy()]] = True
        if self.same_day_repeats in ("first", "last"):
            conflict_mask = self._same_day_repeats(part, conflict_mask)
        self.drop(conflict_mask, "duplicate_conflict", "one value per subject, test and time")
        same = part[~conflict.to_numpy()]
        repeat = same.duplicated(["s", "t", "time"], keep="first")
        repeat_mask = pd.Series(False, index=self.raw.index)
        repeat_mask[same.index[repeat.to_numpy()]] = True
        self.drop(repeat_mask, "duplicate", "each result once", "info")

    def _same_day_repeats(self, part: pd.DataFrame, conflict: pd.Series) -> pd.Series:
        """Keep the first or last (file order) of different values of one test on one day
        without a clock time; report the others (info) naming the rule. Returns the conflicts
        left (those with a clock time)."""
        rule = self.same_day_repeats
        day = self.day_only.reindex(part.index).fillna(False).astype(bool)
        chosen = part[conflict[part.index].to_numpy() & day.to_numpy()]
        if chosen.empty:
            return conflict
        order = chosen.assign(row=self.raw.loc[chosen.index, "source_row"].astype(float))
        order = order.sort_values("row", kind="stable")
        keys = ["s", "t", "time"]
        kept = order.drop_duplicates(keys, keep="first" if rule == "first" else "last")
        dropped = order.index.difference(kept.index)
        sizes = order.groupby(keys, sort=False).size().rename("n")
        info = order.join(sizes, on=keys)
        kept_rows = kept.set_index(keys)["row"]
        for_rows = info.loc[dropped]
        date_text = for_rows["time"].dt.tz_convert(str(self.zone)).dt.strftime("%Y-%m-%d")
        kept_at = [kept_rows.loc[tuple(k)] for k in for_rows[keys].itertuples(index=False)]
        word = "first" if rule == "first" else "last"
        expected = pd.Series(
            [
                f"one value per subject, test and day: kept the {word} of {int(n)} values on "
                f"{d} (row {int(r)}) (mapping: same_day_repeats: {rule})"
                for n, d, r in zip(for_rows["n"], date_text, kept_at, strict=True)
            ],
            index=for_rows.index,
            dtype=object,
        ).reindex(self.raw.index)
        mask = pd.Series(False, index=self.raw.index)
        mask[dropped] = True
        self.drop(mask, "same_day_repeat", expected, "info")
        out = conflict.copy()
        out[chosen.index] = False
        return out

    def _result(self, unit: pd.Series) -> pd.DataFrame:
        counts = np.bincount(self.outcome.to_numpy(), minlength=len(OUTCOMES))
        for code, outcome in enumerate(OUTCOMES):
            self.report.counts[outcome] += int(counts[code])
        keep = self.outcome != REPORTED
        flagged = self.outcome[keep] == FLAGGED
        out = pd.DataFrame(
            {
                "subject": self.subject[keep],
                "time": self.time[keep],
                "test": self.test[keep],
                "raw_value": self.text[keep],
                "raw_unit": self.raw.loc[keep, "raw_unit"],
                "value": self.value[keep],
                "unit": unit[keep],
                "qualifier": self.qualifier[keep],
                "ref_low": self._ref(self.raw.loc[keep, "ref_low"], keep),
                "ref_high": self._ref(self.raw.loc[keep, "ref_high"], keep),
                "specimen": self._specimen(keep),
                "source_row": self.raw.loc[keep, "source_row"],
                "flagged": flagged,
                # only a flagged row has flags (see flag())
                "flags": self.flags[keep].map({"": None}).fillna(self.flags[keep].str[1:])
                if flagged.any()
                else None,
                "column": self.raw.loc[keep, "column"],
            }
        )
        return out.reset_index(drop=True)

    def _ref(self, values: pd.Series, keep: pd.Series) -> pd.Series:
        if values.isna().all():  # no limits given: what pandas.to_numeric makes of them
            return pd.Series(np.nan, index=values.index, dtype=float, name=values.name)
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        if numbers.isna().all():
            return numbers
        converted = numbers * self.slope[keep] + self.offset[keep]
        return converted.where(np.isfinite(converted.fillna(0.0)))

    def _specimen(self, keep: pd.Series) -> pd.Series:
        """Each stored row's specimen as text (pd.NA where unknown): the file's, else its
        test's."""
        given = self.raw.loc[keep, "specimen"]
        if given.isna().all():  # none given (no specimen column): the tests', made text once
            default = self._per_test(
                lambda definition: (
                    pd.NA if definition.specimen is None else str(definition.specimen)
                )
            )[keep]
            missing = default.isna()  # rows without a known test: None
            return default.where(~missing, pd.NA) if missing.any() else default
        default = self._definition_series("specimen")[keep].astype("string")
        return given.astype("string").fillna(default).astype(object)


def _anchor_days(anchor: pd.Series, zone: object) -> pd.Series:
    """Anchors as ``YYYY-MM-DD`` text (object; None where missing): a time's calendar day in
    ``zone``, a date as written."""

    def day(values: pd.Series) -> pd.Series:
        out = []
        for value in values:
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                out.append(None)
            elif isinstance(value, str):
                out.append(value.strip()[:10] or None)
            else:
                stamp = pd.Timestamp(value)
                if stamp.tzinfo is not None:
                    stamp = stamp.tz_convert(str(zone))
                out.append(stamp.strftime("%Y-%m-%d"))
        return pd.Series(out, index=values.index, dtype=object)

    return map_unique(anchor, day)


def _stripped_lengths(
    cells: pd.Series, found: tuple[np.ndarray, np.ndarray] | None = None
) -> pd.Series:
    """The length of each cell's text once stripped (NaN where blank or empty), worked out
    once per distinct cell (a file repeats its few units and specimens on every row).
    ``found``: the cells' codes and distinct values (:func:`pandas.factorize`), if known."""
    codes, uniques = (
        found if found is not None else pd.factorize(cells.to_numpy(dtype=object, na_value=None))
    )
    text = pd.Series(uniques, dtype=object).astype("string").str.strip()
    lengths = text.where(text != "").str.len().to_numpy(dtype=float, na_value=np.nan)
    # code -1 (a missing cell) takes the NaN appended last
    return pd.Series(np.append(lengths, np.nan)[codes], index=cells.index)


def _cell_text(values: pd.Series) -> pd.Series:
    """Cells as the text a person sees in the file: "" where empty, a whole number read as
    46.0 from a workbook as "46", a time read from a workbook as 2020-02-13 18:35:00."""

    def text(value: object) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    return map_unique(values, lambda unique: unique.map(text)).fillna("").astype(object)


def _results(n: int) -> str:
    return f"{n} result" if n == 1 else f"{n} results"


def _rows_text(rows: pd.Series, *, shown: int = 5) -> str:
    """ "row 5" or "rows 5, 9, 12, 14, 20 and 3 more" of source row numbers."""
    numbers = [int(r) for r in rows.iloc[:shown]]
    if len(rows) == 1:
        return f"row {numbers[0]}"
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return "rows " + ", ".join(map(str, numbers)) + more
