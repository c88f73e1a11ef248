"""Column-mapping files (YAML) for layouts celltrial cannot recognise on its own.

Example (wide LIS export)::

    layout: wide
    timezone: Asia/Shanghai
    columns: {subject: PATIENT_ID, time: RE_DATE, sex: gender, admitted: Admission time}
    sex_codes: {"1": M, "2": F}
    tests:
      D-D dimer: {test: DDIMER, unit: mg/L FEU}
      HBsAg: null            # ignore this column (its results are reported, not stored)

Sections:

``layout``
    ``long`` | ``wide`` | ``redcap`` | ``fhir`` (else recognised from the file).
``sheet``, ``timezone``
    The workbook's sheet (name or 0-based number); the time zone of times written without a
    UTC offset (default: the study's).
``columns``
    role → column name, for the roles of :data:`ROLES`. Subject facts: ``sex``, ``age``
    (years), ``birth_date`` (the age at admission, else at the subject's first result, is
    stored), ``height`` (cm), ``weight`` (kg), ``admitted``, ``discharged``, ``died``,
    ``outcome`` (with ``died_codes``). Wide and long files alike; a long file gives each
    subject's facts on any of its rows (the first value given counts; a subject whose rows
    disagree is a warning naming the rows). Subject IDs are always read as text exactly as
    written (``00123``, ``1e5``, ``024e7871``).
``sex_codes``
    code → ``M``/``F`` (e.g. ``{"1": M, "2": F}``); else the words male/female/m/f/男/女,
    and in a wide file 1/2 assumed as 1 = male, 2 = female with a warning.
``died_codes``
    outcome values that mean the subject died (at the discharge time).
``tests``
    source test name or column → ``{test: CODE, unit: UNIT, specimen: S, day_column: COL}``,
    a bare code, or ``null`` to ignore it. ``day_column`` (wide files): the column holding this
    test's time as whole days from the ``offsets`` anchor (``CRP: {test: CRP, day_column:
    CRP_day}``); the day columns are not results themselves.
``offsets``
    Times written as whole days from an anchor instead of dates::

        offsets: {column: Day, unit: days, anchor: admitted}   # or anchor: "2020-01-17"

    ``column`` (optional): the column holding each row's time as days (it takes the ``time``
    role: a long file needs no date column); ``unit``: ``days`` (the only one); ``anchor``:
    ``admitted`` (the subject's admission: from the file's admission column, else the study's
    record of the subject) or a date ``YYYY-MM-DD``. A result's time is the anchor's calendar
    day (in the study's time zone) plus the offset: a date without a clock time, as other
    date-only times. An offset that is not a whole number of days, or a subject without an
    admission time to count from, is an error by row.
``same_day_repeats``
    ``conflict`` (default) | ``first`` | ``last``: two different values of one test on one day in
    day-resolution data (dates without a clock time). ``conflict``: neither is stored (a
    ``duplicate_conflict`` warning per row, as for two values at one time); ``first``/``last``:
    the first or last in file order is stored, the others are reported (``same_day_repeat``,
    info: "kept the last of 2 values on 2020-02-03 (row 4) (mapping: same_day_repeats: last)").
    Values with a clock time stay a conflict. Within one file chunk (200,000 rows of a long CSV).
``date_format`` / ``dayfirst``
    How the file writes dates with the year last: ``date_format: DD/MM/YYYY`` (or
    ``dayfirst: true``) reads ``10/02/2020`` as 10 February, ``date_format: MM/DD/YYYY`` (or
    ``dayfirst: false``) as 2 October; the separator (``/``, ``.``, ``-``) and a two-digit year
    do not matter. Without it a file's dates are read in the one order its own dates allow
    (``13/02/2020`` can only be day first), and a file whose dates read both ways is refused
    (see :mod:`celltrial.ingest.times`).
``dictionary``
    REDCap data dictionary (relative to the mapping file).

YAML anchors and aliases (``&name``, ``*name``) are refused: a mapping is written out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from celltrial.errors import DataError

ROLES = (
    "subject",
    "time",
    "test",
    "value",
    "unit",
    "ref_low",
    "ref_high",
    "reference",
    "specimen",
    "sex",
    "age",
    "birth_date",
    "height",
    "weight",
    "admitted",
    "discharged",
    "died",
    "outcome",
)


class TestColumn(BaseModel):
    """How one source test name or column is read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False

    test: str | None = None
    unit: str | None = None
    specimen: str | None = None
    day_column: str | None = None  # wide files: this test's time as days from the anchor


#: The anchor word for "the subject's admission" (``admission`` is read as the same).
ADMITTED = "admitted"


class Offsets(BaseModel):
    """Times given as whole days from an anchor: the subject's admission or a fixed date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    unit: Literal["days", "day", "d"] = "days"
    anchor: str = ADMITTED

    @field_validator("anchor", mode="before")
    @classmethod
    def _anchor(cls, value: object) -> str:
        import datetime as dt

        if isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, dt.date):
            value = value.isoformat()
        text = str(value).strip()
        if text.casefold() in (ADMITTED, "admission", "admission_time", "admission time"):
            return ADMITTED
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"anchor {text!r}: expected admitted (each subject's admission) or a date "
                "YYYY-MM-DD"
            ) from None
        if not 1900 <= day.year < 2100:
            raise ValueError(f"anchor {text!r}: expected a date in the years 1900–2099")
        return day.isoformat()

    @property
    def fixed_date(self) -> str | None:
        """The anchor date (``YYYY-MM-DD``), or None when it is each subject's admission."""
        return None if self.anchor == ADMITTED else self.anchor


class Mapping(BaseModel):
    """A mapping file: layout, roles of columns, and the test of each source name."""

    model_config = ConfigDict(extra="forbid")

    layout: Literal["long", "wide", "redcap", "odm", "fhir"] | None = None
    sheet: str | int | None = None
    timezone: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    tests: dict[str, TestColumn | str | None] = Field(default_factory=dict)
    sex_codes: dict[str, Literal["M", "F"]] = Field(default_factory=dict)
    died_codes: list[str] = Field(default_factory=list)
    dictionary: str | None = None  # REDCap data dictionary (relative to the mapping file)
    offsets: Offsets | None = None
    same_day_repeats: Literal["conflict", "first", "last"] = "conflict"
    date_format: str | None = None
    dayfirst: bool | None = None

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _format_dayfirst(value) is None:
            raise ValueError(
                f"date_format {value!r}: expected DD/MM/YYYY (day first) or MM/DD/YYYY "
                "(month first)"
            )
        return value

    @property
    def date_dayfirst(self) -> bool | None:
        """Whether the file writes the day before the month (None: the mapping does not say)."""
        by_format = _format_dayfirst(self.date_format) if self.date_format else None
        return by_format if by_format is not None else self.dayfirst

    @model_validator(mode="after")
    def _offsets_agree(self) -> Mapping:
        if (
            self.date_format is not None
            and self.dayfirst is not None
            and _format_dayfirst(self.date_format) != self.dayfirst
        ):
            raise ValueError(
                f"date_format {self.date_format!r} and dayfirst: {self.dayfirst} disagree; "
                "expected one of them"
            )
        day_columns = [
            name
            for name, entry in self.tests.items()
            if isinstance(entry, TestColumn) and entry.day_column
        ]
        if day_columns and self.offsets is None:
            self.offsets = Offsets()  # day columns count from each subject's admission
        if self.offsets is not None and self.offsets.column:
            time = self.columns.get("time")
            if time is not None and time != self.offsets.column:
                raise ValueError(
                    f"columns: time is {time!r} but offsets: column is "
                    f"{self.offsets.column!r}; expected one column for the time (a date, or "
                    "days from the anchor)"
                )
        return self

    def day_columns(self) -> dict[str, str]:
        """Source test name → the column holding its time as days (``tests: …: day_column``)."""
        return {
            name: entry.day_column
            for name, entry in self.tests.items()
            if isinstance(entry, TestColumn) and entry.day_column
        }

    def test_for(self, name: str) -> TestColumn | Literal[False] | None:
        """The mapping's entry for ``name``: a TestColumn, ``None`` (ignore) or False (absent)."""
        if name not in self.tests:
            stripped = {k.strip(): v for k, v in self.tests.items()}
            if name.strip() not in stripped:
                return False
            entry = stripped[name.strip()]
        else:
            entry = self.tests[name]
        if entry is None or entry == "ignore":
            return None
        if isinstance(entry, str):
            return TestColumn(test=entry)
        return entry


def _format_dayfirst(text: str) -> bool | None:
    """True for a format with the day before the month (DD/MM/YYYY, %d.%m.%Y), False for the
    month before the day; None when it names neither (or puts the year first with the day
    before the month)."""
    folded = text.strip().upper().replace("%D", "DD").replace("%M", "MM")
    day, month = folded.find("D"), folded.find("M")
    if day < 0 or month < 0 or "Y" not in folded:
        return None
    year = folded.find("Y")
    if year < min(day, month):  # year first: YYYY-MM-DD
        return False if month < day else None
    return day < month


def check_no_aliases(text: str, path: Path) -> None:
    """Refuse YAML anchors and aliases (``&name``, ``*name``) before building anything: nine
    lines of nested aliases expand to billions of values (an "alias bomb")."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                mark = event.start_mark
                raise DataError(
                    f"cannot read mapping file {path}, line {mark.line + 1}: YAML anchors and "
                    "aliases (&name, *name) are not allowed in a mapping; expected every value "
                    "written out"
                )
    except yaml.YAMLError:
        return  # reported by the loader, with its line


def read_mapping(path: str | Path | None) -> Mapping:
    """Read and validate a mapping file; an empty mapping when ``path`` is ``None``."""
    if path is None:
        return Mapping()
    from celltrial.protocol.loader import MAX_DEPTH, flow_depth

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
        if flow_depth(text) > MAX_DEPTH:
            raise RecursionError
        check_no_aliases(text, path)
        data = yaml.safe_load(text) or {}
    except UnicodeDecodeError as exc:
        raise DataError(
            f"cannot read mapping file {path}: not UTF-8 text (byte {exc.start + 1} cannot be "
            "read); save it as UTF-8"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read mapping file {path}: {exc}") from None
    except (RecursionError, ValueError) as exc:  # nested too deeply; 2020-02-31; 10**5000
        why = (
            "nested too deeply"
            if isinstance(exc, RecursionError)
            else "a number with thousands of digits"
            if "digits" in str(exc)
            else str(exc)[:80]
        )
        raise DataError(
            f"cannot read mapping file {path}: a value cannot be read ({why})"
        ) from None
    if not isinstance(data, dict):
        raise DataError(
            f"mapping file {path}: expected sections such as layout:, columns:, tests: (a "
            f"mapping), got {type(data).__name__}"
        )
    columns = data.get("columns", {}) or {}
    if not isinstance(columns, dict):
        raise DataError(f"mapping file {path}: columns: expected role: column name pairs")
    unknown = {str(role) for role in columns} - set(ROLES)
    if unknown:
        raise DataError(
            f"mapping file {path}: unknown column role(s) {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(ROLES)}"
        )
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        raise DataError(f"mapping file {path} is invalid:\n{exc}") from None
    if mapping.dictionary is not None and not Path(mapping.dictionary).is_absolute():
        mapping.dictionary = str(path.parent / mapping.dictionary)
    return mapping
