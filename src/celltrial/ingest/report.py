"""The validation report of one import: errors refuse the file, warnings import it with flags.

Every message names the file, the source row (the file's line, the header being line 1; a FHIR
bundle's entry number), the column as written in the file, the text of the cell at fault (the time
for a time that cannot be read, the unit for a unit that cannot be converted…) and what was
expected. Each non-empty result of the file ends in exactly one of: stored, stored with a flag, or
not stored and reported; :attr:`ValidationReport.accounting` adds them up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

MESSAGE_COLUMNS = ("severity", "kind", "file", "row", "column", "value", "expected")

#: What each kind of message means (shown in the terminal and the CSV).
KINDS: dict[str, str] = {
    "unknown_subject": "subject not in the study (use --register-subjects)",
    "bad_time": "time that cannot be read",
    "no_time": "result without a time",
    "unit_not_convertible": "unit that cannot be converted to the test's canonical unit",
    "unit_missing": "no unit given and the values do not fit the canonical unit",
    "unit_implied": "no unit given: the canonical unit is proposed from the values",
    "basis_implied": "D-dimer basis (FEU/DDU) not given: the test's basis is assumed",
    "implausible": "value outside the catalogue's plausible range (review)",
    "other_specimen": "result of another specimen in a blood column (not stored)",
    "sentinel": "sentinel value such as -1 (not stored)",
    "censored": "value at a reporting limit stored as a plain number (stored as censored)",
    "limit_only": "beyond a detection limit without a number (not stored)",
    "text_result": "text instead of a number (not stored)",
    "ambiguous_number": "number with an ambiguous separator, e.g. 1,234 (not stored)",
    "before_enrolment": "result before the subject's enrolment/admission",
    "after_discharge": "result after the subject's discharge or death",
    "duplicate_conflict": "same subject, test and time with different values (none stored)",
    "duplicate": "the same result twice in the file (stored once)",
    "column_ignored": "column not recognised as a test: not stored (--suggest-mapping proposes "
    "a mapping)",
    "unknown_test": "test name not in the catalogue: not stored (--suggest-mapping proposes a "
    "mapping)",
    "no_result_marker": "cells marked as no result (NA, —): not results",
    "subject_inconsistent": "a subject's fixed fields differ between rows",
    "subject_fact_changed": "a subject's sex, age, height, weight, admission, discharge or death "
    "differs from the one stored: updated (audited)",
    "bad_subject_fact": "a subject's sex, age, height or weight that cannot be read or is not "
    "plausible: left empty",
    "bad_offset": "time given in days that is not a whole number of days",
    "no_anchor": "time given in days with no admission or date to count them from",
    "same_day_repeat": "one test twice on one day: the mapping's same_day_repeats kept one",
    "subject_in_other_cohort": "subject code that names a patient of another cohort (codes are "
    "per cohort)",
    "missing_column": "a required column is missing",
    "assumption": "an assumption made while reading the file",
    "bad_choice": "a code that is not among the field's choices in the data dictionary",
    "misaligned_columns": "a column holds another column's content (shifted or swapped "
    "columns): nothing stored",
    "nothing_stored": "a file with results none of which can be stored: refused",
    "ambiguous_date": "a date that reads both ways (day/month or month/day): say which in the "
    "mapping (date_format)",
    "too_long": "text longer than the database keeps",
    "not_finite": "a number too large to store (beyond about ±1.8e308, or infinite after "
    "conversion): not stored",
    "bad_reference": "a reference limit that is not a finite number: left empty",
    "bad_subject_code": "a new subject's code with characters a code may not have (a / makes "
    "the subject's page unreachable): nothing stored",
}

#: First column of the report's CSV: what became of the import.
STATUS_COLUMN = "import"
NOT_IMPORTED = "not imported: nothing was stored (the file was refused)"
DRY_RUN = "dry run: nothing was stored"
IMPORTED = "imported"


@dataclass
class ValidationReport:
    """Messages of one import plus the accounting of the file's results."""

    file: str
    _parts: list[pd.DataFrame] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: {"results": 0, "stored": 0, "flagged": 0, "reported": 0}
    )

    def add(
        self,
        severity: str,
        kind: str,
        *,
        row: Any = None,
        column: Any = None,
        value: Any = None,
        expected: Any = "",
    ) -> None:
        """Add messages; ``row``/``column``/``value``/``expected`` may be scalars or sequences."""
        frame = pd.DataFrame(
            {"row": row, "column": column, "value": value, "expected": expected},
            index=range(len(row)) if _is_seq(row) else [0],
        )
        frame.insert(0, "file", self.file)
        frame.insert(0, "kind", kind)
        frame.insert(0, "severity", severity)
        self._parts.append(frame[list(MESSAGE_COLUMNS)].astype(object))

    def extend(self, other: ValidationReport) -> None:
        self._parts.extend(other._parts)

    def merge(self, other: ValidationReport) -> None:
        """Add ``other``'s messages after this report's and its counts to these (a report kept
        apart while a thread fills this one, e.g. the storage step's)."""
        self.extend(other)
        for key, value in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + value

    @property
    def messages(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame(columns=list(MESSAGE_COLUMNS))
        return pd.concat(self._parts, ignore_index=True)

    @property
    def errors(self) -> pd.DataFrame:
        messages = self.messages
        return messages[messages["severity"] == "error"]

    @property
    def ok(self) -> bool:
        return not any((part["severity"] == "error").any() for part in self._parts)

    def by_kind(self) -> pd.DataFrame:
        """One row per severity and kind with its count and meaning."""
        messages = self.messages
        if messages.empty:
            return pd.DataFrame(columns=["severity", "kind", "count", "meaning"])
        table = messages.groupby(["severity", "kind"]).size().rename("count").reset_index()
        table["meaning"] = table["kind"].map(KINDS).fillna("")
        order = {"error": 0, "warning": 1, "info": 2}
        table["_order"] = table["severity"].map(order)
        return table.sort_values(["_order", "kind"]).drop(columns="_order")

    @property
    def accounting(self) -> dict[str, int]:
        """results = stored + flagged + reported (non-empty result cells of the file)."""
        return dict(self.counts)

    def balanced(self) -> bool:
        c = self.counts
        return c["results"] == c["stored"] + c["flagged"] + c["reported"]

    def write_csv(self, path: str | Path, *, status: str | None = None) -> Path:
        """The messages as CSV; with ``status`` (:data:`NOT_IMPORTED`, :data:`DRY_RUN`,
        :data:`IMPORTED`) in a first column on every line, and on a line of its own when there
        are no messages, so that the file says whether anything was stored."""
        path = Path(path)
        messages = self.messages
        if status is not None:
            if messages.empty:
                messages = pd.DataFrame([dict.fromkeys(MESSAGE_COLUMNS, None)])
                messages["file"] = self.file
            messages.insert(0, STATUS_COLUMN, status)
        messages["file"] = messages["file"].map(lambda f: None if _missing(f) else Path(f).name)
        folder = str(Path(self.file).parent)
        for column in messages.columns:
            messages[column] = messages[column].map(lambda v: safe_cell(v, folder=folder))
        # CRLF line ends: a cell holding a line break of either kind is quoted (RFC 4180)
        messages.to_csv(path, index=False, lineterminator="\r\n")
        return path

    def summary(self, *, limit: int = 2000) -> dict[str, Any]:
        """JSON-able summary for the import batch (counts, kinds, the first ``limit`` messages)."""
        messages = self.messages
        return {
            "file": self.file,
            "accounting": self.accounting,
            "by_kind": self.by_kind()[["severity", "kind", "count"]].to_dict("records"),
            "messages": _json_records(messages.head(limit)),
            "messages_total": len(messages),
        }


#: First characters that make a spreadsheet read a text cell as a formula (and tab / carriage
#: return, which some spreadsheets strip before they look).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def safe_cell(value: Any, *, folder: str | None = None) -> Any:
    """A report cell safe to open in a spreadsheet: text that would start a formula gets a
    leading apostrophe (``=HYPERLINK(…)`` stays text); numbers, and text that is a plain number
    such as ``-1``, are kept as they are; ``folder`` (the server's folder of the file) is cut
    out of the text so that the report names files, not server paths."""
    if not isinstance(value, str):
        return value
    if folder and folder not in ("", "."):
        value = value.replace(folder + os.sep, "").replace(folder, "")
    if value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def describe_place(message: Mapping[str, Any]) -> str:
    """Where a message points and the cell's text: "row 3, column RE_DATE: '31/02/2020'"."""
    parts = []
    row = message.get("row")
    if not _missing(row):
        parts.append(f"row {int(row)}" if _whole(row) else f"row {row}")
    column = message.get("column")
    if not _missing(column):
        parts.append(f"column {column}")
    value = message.get("value")
    text = "(empty)" if _missing(value) or str(value) == "" else f"'{value}'"
    return f"{', '.join(parts)}: {text}" if parts else text


def describe_message(message: Mapping[str, Any]) -> str:
    """One message as a person reads it: where, the cell's text, what is wrong, what was
    expected ("row 3, column RE_DATE: '31/02/2020' — time that cannot be read; expected …")."""
    kind = str(message.get("kind") or "")
    text = f"{describe_place(message)} — {KINDS.get(kind, kind)}"
    expected = message.get("expected")
    return text if _missing(expected) or expected == "" else f"{text}; expected {expected}"


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _whole(value: Any) -> bool:
    try:
        return float(value).is_integer()
    except (TypeError, ValueError):
        return False


def _is_seq(value: Any) -> bool:
    return isinstance(value, list | tuple | pd.Series | pd.Index) or (
        hasattr(value, "__len__") and not isinstance(value, str | bytes) and hasattr(value, "dtype")
    )


def _json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.astype(object).where(frame.notna(), None)
    return [
        {
            k: (v if isinstance(v, int | float | str) or v is None else str(v))
            for k, v in rec.items()
        }
        for rec in out.to_dict("records")
    ]
