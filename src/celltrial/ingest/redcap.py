"""Read REDCap projects: the data dictionary plus a records export (flat CSV, one row per record
× event, repeating instruments as extra rows), with every field cast by its dictionary type.

How a REDCap export is recognised (:func:`redcap_records_layout`): a folder holding the records
and the dictionary; a records CSV with ``redcap_event_name`` or ``redcap_repeat_instrument``; or
a records CSV whose first column is the first field of a data dictionary lying beside it (a CSV
whose header is a dictionary's: "Variable / Field Name", "Form Name", "Field Type", "Field
Label", …, recognised by its header, not its name). The CDISC ODM XML export is read by
:mod:`celltrial.ingest.odm` into the same two tables and then read here.

- ``checkbox`` fields arrive as one column per choice (``gym___1``): cast to True/False;
- ``radio``/``dropdown``/``yesno``/``truefalse``: codes become their labels; a code the
  dictionary does not list is reported;
- ``calc``, ``slider`` and text validated as ``number``/``integer``: numbers (sliders are
  ratings, never results);
- text validated as ``date_*``/``datetime_*``: times (naive, in the study's time zone);
- identifier fields (flagged "y", validated as phone/e-mail, or named like a name, address,
  phone…; see ``identifying.yaml``) and file uploads are never read — except a birth date,
  read only to compute the age and never stored.

A field is a result only when it can hold a number (text validated as a number or not at all,
or ``calc``) and its label (e.g. "Creatinine (mg/dL)", the unit in brackets) or name is a
catalogue test; other number fields are results the catalogue does not know (reported, not
stored). A date field is never a result, whatever its label says ("Date of CRP"). Each result's
time is the date field of its own instrument (one, or the one whose name or label says
visit/collection/draw/sample), else the only date filled in on the same row (record × event),
else the field named by ``columns: {time: …}`` in a mapping; a result without one is reported,
never given a guessed date.

Subject facts (sex, age or birth date, height, weight, admission, discharge, death) come from
the fields whose name or label names them (:func:`celltrial.ingest.columns.find_roles`; a
mapping's ``columns:`` can name them); see :func:`read_subject_facts`.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest import facts
from celltrial.ingest.columns import find_roles
from celltrial.ingest.frame import SUBJECT_FIELDS, complete_raw
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.names import match_test
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.suggest import looks_identifying
from celltrial.ingest.tables import read_csv_table
from celltrial.ingest.times import RANGE_TEXT, parse_times

#: Dictionary headers as exported by the web interface and by the API.
DICTIONARY_HEADERS = {
    "variable / field name": "field",
    "field_name": "field",
    "form name": "form",
    "form_name": "form",
    "field type": "type",
    "field_type": "type",
    "field label": "label",
    "field_label": "label",
    "choices, calculations, or slider labels": "choices",
    "select_choices_or_calculations": "choices",
    "text validation type or show slider number": "validation",
    "text_validation_type_or_show_slider_number": "validation",
    "identifier?": "identifier",
    "identifier": "identifier",
    "field units": "units",
    "field_units": "units",
}
DICTIONARY_COLUMNS = ("field", "form", "type", "validation", "label", "choices", "identifier")
DICTIONARY_NAMES = ("dictionary.csv", "data_dictionary.csv", "datadictionary.csv", "metadata.csv")
RECORD_NAMES = ("data.csv", "records.csv", "record.csv")
CHOICE_TYPES = frozenset({"radio", "dropdown", "yesno", "truefalse"})
NUMBER_VALIDATIONS = frozenset({"number", "integer", "float", "int"})
#: Text validations whose values are never numbers of a lab test.
TEXT_VALIDATIONS = frozenset(
    {"phone", "email", "zipcode", "postalcode_us", "postalcode_ca", "ssn", "mrn", "alpha_only"}
)
SKIPPED_TYPES = frozenset({"file", "descriptive", "signature"})
SYSTEM_COLUMNS = (
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_data_access_group",
    "redcap_survey_identifier",
    "redcap_arm",
)
#: Words naming a collection date ("date_visit_4", "Date of blood draw"), not "withdraw_date".
_TIME_WORDS = re.compile(r"(?<![a-z])(?:visit|collect|draw|sample|specimen|lab)", re.IGNORECASE)
#: Subject facts read from the records: role → the frame's column.
FACT_ROLES = {
    "sex": "sex",
    "age": "age",
    "birth_date": None,
    "height": "height_cm",
    "weight": "weight_kg",
    "admitted": "admitted",
    "discharged": "discharged",
    "died": "died",
}
DATE_ROLES = ("birth_date", "admitted", "discharged", "died")
#: Units a height or weight field's label or units may give → factor to cm or kg.
BODY_UNITS = {
    "height_cm": {"cm": 1.0, "centimeters": 1.0, "centimetres": 1.0, "m": 100.0, "meters": 100.0,
                  "metres": 100.0, "in": 2.54, "inch": 2.54, "inches": 2.54, "mm": 0.1},
    "weight_kg": {"kg": 1.0, "kgs": 1.0, "kilograms": 1.0, "kilogram": 1.0, "g": 0.001,
                  "lb": 0.45359237, "lbs": 0.45359237, "pounds": 0.45359237},
}  # fmt: skip
_LABEL_UNIT = re.compile(r"^(?P<name>.*?)\s*[(\[](?P<unit>[^()\[\]]*)[)\]]\s*$")


@dataclass(frozen=True)
class RedcapProject:
    """A dictionary (one row per field: field, form, type, validation, label, choices,
    identifier, units) and its records as read (text).

    ``rows`` is the place of each record row in its file (a CSV's line, the header being line
    1); ``cells``, when given (ODM), the line of each value, by column.
    """

    dictionary: pd.DataFrame
    records: pd.DataFrame
    records_path: Path
    rows: pd.Series | None = None
    cells: pd.DataFrame | None = dataclasses.field(default=None, repr=False)

    def rows_of(self, column: str | None = None) -> pd.Series:
        """The file row (line) of each record row, or of each value of ``column``."""
        base = (
            self.rows
            if self.rows is not None
            else pd.Series(self.records.index + 2, index=self.records.index)
        )
        if column is not None and self.cells is not None and column in self.cells.columns:
            return self.cells[column].fillna(base).astype(int)
        return base.astype(int)


def parse_choices(text: object) -> dict[str, str]:
    """ "0, Female | 1, Male" → {"0": "Female", "1": "Male"} (codes as written)."""
    if not isinstance(text, str) or not text.strip():
        return {}
    choices: dict[str, str] = {}
    for part in text.split("|"):
        code, _, label = part.partition(",")
        if code.strip():
            choices[code.strip()] = label.strip() or code.strip()
    return choices


def _header_of(path: Path) -> list[str]:
    """The first row of a CSV file as text cells ([] when it cannot be read as one)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def is_dictionary_header(columns: list[str]) -> bool:
    """Whether ``columns`` are the header of a REDCap data dictionary."""
    named = {DICTIONARY_HEADERS.get(str(c).strip().casefold()) for c in columns}
    return {"field", "form", "type", "label"} <= named


def is_redcap_dictionary(path: Path) -> bool:
    """Whether ``path`` is a CSV file whose header is a REDCap data dictionary's."""
    return (
        path.is_file() and path.suffix.lower() == ".csv" and is_dictionary_header(_header_of(path))
    )


def dictionary_beside(records: Path) -> Path | None:
    """A data dictionary in the folder of ``records`` (known names first), or None."""
    folder = records.parent
    named = [folder / n for n in DICTIONARY_NAMES]
    others = sorted(p for p in folder.glob("*") if p.suffix.lower() == ".csv")
    for candidate in [*named, *(p for p in others if p not in named)]:
        if candidate != records and is_redcap_dictionary(candidate):
            return candidate
    return None


def _first_field(dictionary: Path) -> str | None:
    try:
        table = pd.read_csv(dictionary, encoding="utf-8-sig", dtype=str, nrows=1)
    except Exception:  # unreadable: not a dictionary for this purpose
        return None
    return str(table.iloc[0, 0]).strip() if len(table) else None


def redcap_records_layout(path: Path, columns: list[str], mapping: Mapping) -> bool:
    """Whether the table at ``path`` (header ``columns``) is a REDCap records export.

    True for records with ``redcap_event_name``/``redcap_repeat_instrument`` and for records
    whose first column is the first field of a dictionary beside them (a classic project);
    :class:`DataError` for REDCap records without a dictionary to read them with.
    """
    system = "redcap_event_name" in columns or "redcap_repeat_instrument" in columns
    dictionary = Path(mapping.dictionary) if mapping.dictionary else dictionary_beside(path)
    if dictionary is None:
        if system:
            raise DataError(
                f"{path}: REDCap records (column redcap_event_name) need their data dictionary: "
                "put the dictionary CSV exported with them beside the records file, pass the "
                "project folder that holds both, or name it in a mapping file (dictionary: FILE)"
            )
        return False
    return system or (bool(columns) and _first_field(dictionary) == str(columns[0]).strip())


def read_redcap_dictionary(path: str | Path) -> pd.DataFrame:
    """The data dictionary with normalised column names; :class:`DataError` when it is not one."""
    path = Path(path)
    table = read_csv_table(path, what="REDCap data dictionary", dtype=str, keep_default_na=False)
    renamed = {
        c: DICTIONARY_HEADERS[c.strip().casefold()]
        for c in table.columns
        if c.strip().casefold() in DICTIONARY_HEADERS
    }
    table = table.rename(columns=renamed)
    missing = [c for c in ("field", "form", "type", "label") if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: not a REDCap data dictionary: no column for {', '.join(missing)} "
            "(expected 'Variable / Field Name', 'Form Name', 'Field Type', 'Field Label')"
        )
    table = table.fillna("")
    # a row with nothing in it (Excel saves trailing ones as ",,,,") defines no field
    table = table[(table.apply(lambda column: column.str.strip()) != "").any(axis=1)]
    rows = pd.Series(table.index + 2, index=table.index)  # the file's rows, header row 1
    return check_dictionary(table, path, rows)


def check_dictionary(table: pd.DataFrame, path: Path, rows: pd.Series) -> pd.DataFrame:
    """A dictionary table (columns of :data:`DICTIONARY_COLUMNS`, text) normalised and checked:
    every field named, once, at least one field. ``rows`` says where each row is in ``path``."""
    table = table.copy()
    for column in (*DICTIONARY_COLUMNS, "units"):
        if column not in table.columns:
            table[column] = ""
    table = table.fillna("")
    table["type"] = table["type"].str.strip().str.casefold()
    table["validation"] = table["validation"].str.strip().str.casefold()
    table["field"] = table["field"].str.strip()
    unnamed = table["field"] == ""
    if unnamed.any():
        raise DataError(
            f"{path}: row {rows[unnamed].iloc[0]}: a field without a variable name; expected "
            "every row of the data dictionary to name its field"
        )
    repeated = table["field"].duplicated()
    if repeated.any():
        name = table.loc[repeated, "field"].iloc[0]
        first, again = rows[table["field"] == name].iloc[:2]
        raise DataError(
            f"{path}: rows {first} and {again} both define field {name!r}; expected each field "
            "once in the data dictionary"
        )
    if table.empty:
        raise DataError(
            f"{path}: the data dictionary lists no fields; expected one row per field, the "
            "record ID first"
        )
    return table[[*DICTIONARY_COLUMNS, "units"]].reset_index(drop=True)


def find_redcap_files(path: Path, mapping: Mapping) -> tuple[Path, Path]:
    """(dictionary, records) for a project folder, a records CSV, or a mapping's dictionary."""
    if path.is_dir():
        records = next((path / n for n in RECORD_NAMES if (path / n).is_file()), None)
        if records is None:
            raise DataError(
                f"{path}: no records export found; expected one of {', '.join(RECORD_NAMES)}"
            )
    else:
        records = path
    if mapping.dictionary is not None:
        return Path(mapping.dictionary), records
    dictionary = dictionary_beside(records)
    if dictionary is None:
        raise DataError(
            f"{path}: REDCap records need their data dictionary: put the dictionary CSV "
            f"exported with them beside the records (e.g. as {DICTIONARY_NAMES[0]}), pass the "
            "project folder that holds both, or name it in a mapping file (dictionary: FILE)"
        )
    return dictionary, records


def read_redcap_project(path: str | Path, mapping: Mapping | None = None) -> RedcapProject:
    """Dictionary and records (as text) of a REDCap export."""
    dictionary_path, records_path = find_redcap_files(Path(path), mapping or Mapping())
    dictionary = read_redcap_dictionary(dictionary_path)
    records = read_csv_table(
        records_path, what="REDCap records export", dtype=str, keep_default_na=False
    )
    records = records.replace("", None)
    return RedcapProject(dictionary, records, records_path)


def _columns_of(field: pd.Series, records: pd.DataFrame) -> list[str]:
    if field["type"] == "checkbox":
        prefix = f"{field['field']}___"
        return [c for c in records.columns if c.startswith(prefix)]
    return [field["field"]] if field["field"] in records.columns else []


def is_date_field(field: pd.Series) -> bool:
    return field["type"] == "text" and str(field["validation"]).startswith(("date", "datetime"))


def is_number_field(field: pd.Series) -> bool:
    validation = str(field["validation"])
    return field["type"] == "calc" or (
        field["type"] == "text"
        and (validation in NUMBER_VALIDATIONS or validation.startswith("number_"))
    )


def can_be_result(field: pd.Series) -> bool:
    """Whether a field can hold a lab value: text validated as a number or not validated, or a
    calculation; never a date, a choice, a checkbox, notes or an identifying field."""
    if is_identifying(field):
        return False
    if field["type"] == "calc":
        return True
    return field["type"] == "text" and (is_number_field(field) or field["validation"] == "")


def is_identifying(field: pd.Series) -> bool:
    """Identifier "y", a phone/e-mail/postcode validation, or a name or label that names a
    person, an address, a phone number, a record number… (``identifying.yaml``)."""
    return (
        _identifier(field)
        or str(field["validation"]) in TEXT_VALIDATIONS
        or looks_identifying(str(field["field"]))
        or looks_identifying(str(field["label"]))
    )


def cast_records(
    project: RedcapProject, *, zone: ZoneInfo | str, report: ValidationReport | None = None
) -> pd.DataFrame:
    """The records with every dictionary field cast by its type (see module doc); identifying
    and file fields left out. Codes not among a field's choices are reported (when ``report``)
    and become missing."""
    records = project.records
    out = pd.DataFrame(index=records.index)
    for column in SYSTEM_COLUMNS:
        if column in records.columns:
            out[column] = records[column]
    for _, field in project.dictionary.iterrows():
        columns = _columns_of(field, records)
        if not columns or field["type"] in SKIPPED_TYPES or is_identifying(field):
            continue
        name = field["field"]
        if field["type"] == "checkbox":
            for column in columns:
                out[column] = records[column].map({"1": True, "0": False})
        elif field["type"] in CHOICE_TYPES:
            choices = _choices(field)
            values = records[name].str.strip()
            labels = values.map(choices)
            unknown = values.notna() & labels.isna()
            if unknown.any() and report is not None:
                report.add(
                    "warning",
                    "bad_choice",
                    row=project.rows_of(name)[unknown].tolist(),
                    column=name,
                    value=values[unknown].tolist(),
                    expected=f"one of the dictionary's codes {', '.join(choices)}",
                )
            out[name] = labels
        elif is_number_field(field) or field["type"] == "slider":
            out[name] = pd.to_numeric(records[name].str.strip(), errors="coerce")
        elif is_date_field(field):
            out[name], unreadable = parse_times(records[name], zone)
            if unreadable.any() and report is not None:
                report.add(
                    "error",
                    "bad_time",
                    row=project.rows_of(name)[unreadable.to_numpy()].tolist(),
                    column=name,
                    value=records.loc[unreadable.to_numpy(), name].tolist(),
                    expected=f"a date ({field['validation']}) in the years {RANGE_TEXT}",
                )
        else:
            out[name] = records[name]
    return out


def _identifier(field: pd.Series) -> bool:
    return str(field["identifier"]).strip().casefold() in ("y", "yes", "1", "true")


def _choices(field: pd.Series) -> dict[str, str]:
    if field["type"] == "yesno":
        return {"1": "Yes", "0": "No"}
    if field["type"] == "truefalse":
        return {"1": "True", "0": "False"}
    return parse_choices(field["choices"])


def read_redcap(
    path: Path, mapping: Mapping, report: ValidationReport, *, zone: ZoneInfo | str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw long frame, subject information) of a REDCap export (folder or records CSV)."""
    return read_project(read_redcap_project(path, mapping), mapping, report, zone=zone)


def read_project(
    project: RedcapProject, mapping: Mapping, report: ValidationReport, *, zone: ZoneInfo | str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw long frame, subject information) of a REDCap project however it was exported
    (CSV pair or ODM XML)."""
    dictionary, records = project.dictionary, project.records
    report.file = str(project.records_path)
    subject_field = mapping.columns.get("subject") or dictionary["field"].iloc[0]
    if subject_field not in records.columns:
        raise DataError(
            f"{project.records_path}: no record ID column {subject_field!r} (the dictionary's "
            "first field); name it with columns: {subject: …} in a mapping"
        )
    cast = cast_records(project, zone=zone, report=report)
    none = pd.Series(None, index=records.index, dtype=object)
    events = records.get("redcap_event_name", none).astype(object)
    instances = records.get("redcap_repeat_instance", none).astype(object)
    skipped = dictionary[
        dictionary.apply(is_identifying, axis=1) | dictionary["type"].isin(SKIPPED_TYPES)
    ]
    if len(skipped):
        report.add(
            "info",
            "assumption",
            row=1,
            column=", ".join(skipped["field"]),
            value=f"{len(skipped)} identifying or file fields",
            expected="pseudonymous data only: identifiers and uploads are never read (a birth "
            "date only to compute the age, never stored)",
        )
    roles = fact_fields(dictionary, records, mapping)
    results = _result_fields(dictionary, mapping, exclude=set(roles.values()) - {subject_field})
    times = _result_times(dictionary, cast, results, mapping, report)
    parts = []
    for _, field in dictionary.iterrows():
        name = field["field"]
        if name not in results or name not in records.columns:
            continue
        present = records[name].notna() & (records[name].str.strip() != "")
        if not present.any():
            continue
        code, unit = results[name]
        where = events[present].fillna("").astype(str)
        instance = instances[present].fillna("").astype(str)
        label = name + " [" + where + np.where(instance != "", " #" + instance, "") + "]"
        parts.append(
            pd.DataFrame(
                {
                    "subject": records.loc[present, subject_field].str.strip(),
                    "time": times[field["form"]][present],
                    "column": label,
                    "name": field["label"],
                    "test": code,
                    "raw_value": records.loc[present, name],
                    "raw_unit": unit,
                    "source_row": project.rows_of(name)[present].to_numpy(),
                }
            )
        )
    raw = (
        complete_raw(pd.concat(parts, ignore_index=True)) if parts else complete_raw(pd.DataFrame())
    )
    subjects = read_subject_facts(
        project, cast, subject_field, roles, mapping, report, zone=zone, raw=raw
    )
    return raw, subjects


def _result_fields(
    dictionary: pd.DataFrame, mapping: Mapping, *, exclude: set[str] = frozenset()
) -> dict[str, tuple[str | None, str | None]]:
    """field → (test code or None, unit from the label or field units) for result fields."""
    from celltrial.ingest.columns import resolve_tests

    out: dict[str, tuple[str | None, str | None]] = {}
    for _, field in dictionary.iterrows():
        name = field["field"]
        entry = mapping.test_for(name)
        if not can_be_result(field):
            if entry:  # a mapping names it as a test: say why it cannot be
                raise DataError(
                    f"mapping: field {name!r} is a {_kind_of(field)} field in the data "
                    "dictionary, not a result; expected a number field (text validated as a "
                    "number or integer, or a calculation)"
                )
            continue
        if name in exclude and not entry:
            continue
        if entry is not False:
            code, unit, _specimen = resolve_tests([name], mapping)[name]
            if code is not None or entry is None:
                out[name] = (code, unit)
                continue
        match = match_test(str(field["label"])) or match_test(name)
        units = str(field["units"]).strip() or None
        if match is not None:
            out[name] = (match.code, match.unit or units)
        elif is_number_field(field):
            out[name] = (None, units)
    return out


def _kind_of(field: pd.Series) -> str:
    if is_identifying(field):
        return "identifying"
    if field["validation"]:
        return f"{field['type']} ({field['validation']})"
    return str(field["type"])


def _result_times(
    dictionary: pd.DataFrame,
    cast: pd.DataFrame,
    results: dict[str, tuple[str | None, str | None]],
    mapping: Mapping,
    report: ValidationReport,
) -> dict[str, pd.Series]:
    """form → the time of each row for that form's results (NaT where none)."""
    dates = dictionary[
        dictionary.apply(is_date_field, axis=1)
        & ~dictionary["field"].isin(results)
        & dictionary["field"].isin(cast.columns)
    ]
    empty = pd.Series(pd.NaT, index=cast.index, dtype="datetime64[us, UTC]")
    if "time" in mapping.columns:
        field = mapping.columns["time"]
        if field not in cast.columns:
            raise DataError(f"mapping: time field {field!r} is not a date field of the records")
        return {form: cast[field] for form in dictionary["form"].unique()}
    row_dates = cast[dates["field"].tolist()] if len(dates) else pd.DataFrame(index=cast.index)
    filled = row_dates.notna().sum(axis=1)
    only = row_dates.bfill(axis=1).iloc[:, 0] if len(dates) else empty
    row_time = only.where(filled == 1) if len(dates) else empty
    out: dict[str, pd.Series] = {}
    for form, fields in dictionary.groupby("form", sort=False):
        if not fields["field"].isin(results).any():
            continue
        own = dates[dates["form"] == form]
        if len(own) > 1:
            preferred = own[
                own["field"].str.contains(_TIME_WORDS) | own["label"].str.contains(_TIME_WORDS)
            ]
            own = preferred.head(1) if len(preferred) else own.iloc[0:0]
        if len(own) == 1:
            field = own["field"].iloc[0]
            out[form] = cast[field].fillna(row_time)
            how = f"date field {field} of the instrument, else the row's only date"
        else:
            out[form] = row_time
            how = "the only date filled in on the same row (record × event)"
        report.add(
            "info",
            "assumption",
            row=1,
            column=form,
            value="result times",
            expected=how + "; results without one are reported",
        )
    return out


def _label_key(label: object) -> str:
    """A label without its trailing "(unit)": "Height (cm)" → "Height"."""
    text = re.sub(r"<[^>]*>", "", str(label)).strip()
    split = _LABEL_UNIT.match(text)
    return split.group("name").strip() if split else text


def fact_fields(dictionary: pd.DataFrame, records: pd.DataFrame, mapping: Mapping) -> dict:
    """role → field of the subject facts (:data:`FACT_ROLES`), by the mapping's ``columns:``,
    else by field name, else by label; :class:`DataError` for a mapping's field that is not in
    the records."""
    usable = dictionary[
        ~dictionary["type"].isin(SKIPPED_TYPES | {"checkbox"})
        & dictionary["field"].isin(records.columns)
    ]
    usable = usable[usable["field"] != dictionary["field"].iloc[0]]  # never the record ID
    wanted = tuple(FACT_ROLES)
    roles = find_roles(usable["field"].tolist(), mapping, wanted)
    for role, name in roles.items():
        if role in mapping.columns and name not in records.columns:
            raise DataError(
                f"mapping: columns: {role}: {name!r} is not a field of the records; expected "
                f"one of {', '.join(usable['field'].head(12))}…"
            )
    taken = set(roles.values())
    by_label: dict[str, str] = {}
    for _, field in usable.iterrows():
        if field["field"] not in taken:
            by_label.setdefault(_label_key(field["label"]), field["field"])
    missing = [r for r in wanted if r not in roles]
    for role, label in find_roles(list(by_label), Mapping(), missing).items():
        if by_label[label] not in taken:
            roles[role] = by_label[label]
            taken.add(by_label[label])
    return roles


def read_subject_facts(
    project: RedcapProject,
    cast: pd.DataFrame,
    subject_field: str,
    roles: dict[str, str],
    mapping: Mapping,
    report: ValidationReport,
    *,
    zone: ZoneInfo | str,
    raw: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per subject with :data:`SUBJECT_FIELDS` and ``source_row``.

    Each fact is the subject's first non-missing value in file order; a later one that differs
    is reported (``subject_inconsistent``). A value that cannot be read or is implausible is
    reported by row and field (``bad_subject_fact``) and left empty. Sex codes are read through the
    field's choices ("1, Male | 2, Female") and the mapping's ``sex_codes``; a birth date
    becomes the age at admission, else at the subject's first result.
    """
    records, dictionary = project.records, project.dictionary
    fields = dictionary.set_index("field")
    codes = records[subject_field].astype("string").str.strip()
    values: dict[str, pd.Series] = {}
    for role, column in FACT_ROLES.items():
        key = column or role
        name = roles.get(role)
        if name is None:
            values[key] = pd.Series(None, index=records.index, dtype=object)
            continue
        field = fields.loc[name] if name in fields.index else None
        values[key] = _read_fact(
            project, cast, role, name, field, mapping, report, zone=zone, column=key
        )
    frame = pd.DataFrame({"subject": codes, **values, "source_row": project.rows_of()})
    frame = frame[frame["subject"].notna() & (frame["subject"] != "")]
    out = _first_per_subject(frame, project, roles, report)
    if "birth_date" in roles:
        out = _age_from_birth(out, raw, roles["birth_date"], report)
    out = out.drop(columns=["birth_date"])
    return out[[*SUBJECT_FIELDS, "source_row"]].reset_index(drop=True)


def _read_fact(
    project: RedcapProject,
    cast: pd.DataFrame,
    role: str,
    name: str,
    field: pd.Series | None,
    mapping: Mapping,
    report: ValidationReport,
    *,
    zone: ZoneInfo | str,
    column: str,
) -> pd.Series:
    """One fact's values, row by row (None/NaN/NaT where missing or unreadable, reported)."""
    text = project.records[name].astype("string").str.strip()
    text = text.where(text != "")
    rows = project.rows_of(name)

    def warn(mask: pd.Series, expected: str) -> None:
        if mask.any():
            report.add(
                "warning",
                "bad_subject_fact",
                row=rows[mask].tolist(),
                column=name,
                value=text[mask].tolist(),
                expected=expected + " (left empty)",
            )

    if role in DATE_ROLES:
        if name in cast.columns and isinstance(cast[name].dtype, pd.DatetimeTZDtype):
            return cast[name]  # a date field: unreadable dates are already errors by row
        times, unreadable = parse_times(text, zone)
        warn(unreadable.fillna(False).astype(bool), f"a date in the years {RANGE_TEXT}")
        return times
    if role == "sex":
        choices = _choices(field) if field is not None and field["type"] in CHOICE_TYPES else {}
        codes = {code: facts.read_sex(pd.Series([label]))[0].iloc[0] for code, label in
                 choices.items()}  # fmt: skip
        codes = {k: v for k, v in codes.items() if v is not None} | dict(mapping.sex_codes)
        sex, unreadable = facts.read_sex(text, codes)
        if choices:  # a code the dictionary does not list is already reported (bad_choice)
            unreadable &= text.isin(list(choices))
        warn(unreadable, "a sex: M/F, male/female, or a choice whose label says which")
        return sex
    numbers = pd.to_numeric(text.astype(object), errors="coerce").astype(float)
    warn(text.notna() & numbers.isna(), f"a number ({facts.UNITS[column]})")
    if column in BODY_UNITS:
        numbers = numbers * _body_factor(field, name, column)
    bad = facts.implausible(numbers, column)
    warn(bad, facts.expected_text(column))
    return numbers.where(~bad)


def _body_factor(field: pd.Series | None, name: str, column: str) -> float:
    """Factor from the unit a height/weight field's units or label give to cm/kg (1 when
    none is given)."""
    if field is None:
        return 1.0
    unit = str(field["units"]).strip()
    if not unit:
        split = _LABEL_UNIT.match(re.sub(r"<[^>]*>", "", str(field["label"])).strip())
        unit = split.group("unit").strip() if split else ""
    if not unit:
        return 1.0
    factors = BODY_UNITS[column]
    if unit.casefold() not in factors:
        raise DataError(
            f"data dictionary: field {name!r} ({field['label']}) gives the unit {unit!r}; "
            f"expected one of {', '.join(factors)} for {facts.UNITS[column]}"
        )
    return factors[unit.casefold()]


def _first_per_subject(
    frame: pd.DataFrame, project: RedcapProject, roles: dict[str, str], report: ValidationReport
) -> pd.DataFrame:
    """Each subject's first non-missing value of each fact; later values that differ are
    reported by row."""
    first = frame.groupby("subject", sort=False).first()
    first["source_row"] = frame.groupby("subject", sort=False)["source_row"].first()
    for role, column in FACT_ROLES.items():
        key = column or role
        if role not in roles:
            continue
        present = frame[frame[key].notna()]
        if present.empty:
            continue
        kept = present["subject"].map(first[key])
        differs = present[key].astype(str) != kept.astype(str)
        if differs.any():
            firsts = present.groupby("subject", sort=False)["source_row"].first()
            name = roles[role]
            rows = project.rows_of(name)
            bad = present[differs]
            report.add(
                "warning",
                "subject_inconsistent",
                row=rows[bad.index].tolist(),
                column=name,
                value=bad[key].astype(str).tolist(),
                expected=[
                    f"the subject's {key} as first given ({kept[i]}, row {firsts[s]}): "
                    "the first is kept"
                    for i, s in zip(bad.index, bad["subject"], strict=True)
                ],
            )
    return first.reset_index()


def _age_from_birth(
    out: pd.DataFrame, raw: pd.DataFrame | None, field: str, report: ValidationReport
) -> pd.DataFrame:
    """The age at admission (else at the first result) where no age is given and a birth date
    is."""
    out = out.copy()
    first_result = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
    if raw is not None and len(raw):
        times = pd.to_datetime(raw["time"], utc=True, errors="coerce")
        earliest = times.groupby(raw["subject"].astype(str)).min()
        first_result = out["subject"].astype(str).map(earliest)
    admitted = pd.to_datetime(out["admitted"], utc=True, errors="coerce")
    reference = admitted.fillna(pd.to_datetime(first_result, utc=True, errors="coerce"))
    needs = out["age"].isna() & out["birth_date"].notna()
    if not needs.any():
        return out
    ages = facts.age_from_birth(out.loc[needs, "birth_date"], reference[needs])
    bad = facts.implausible(ages, "age")
    out.loc[needs, "age"] = ages.where(~bad)
    unknown = needs & out["age"].isna()
    if unknown.any():
        report.add(
            "warning",
            "bad_subject_fact",
            row=out.loc[unknown, "source_row"].tolist(),
            column=field,
            value=out.loc[unknown, "subject"].tolist(),
            expected="an age: the birth date needs an admission date or a dated result after "
            f"it, giving {facts.expected_text('age')} (left empty)",
        )
    report.add(
        "info",
        "assumption",
        row=1,
        column=field,
        value="age from birth date",
        expected="the age at admission, else at the subject's first result; the birth date "
        "itself is not stored",
    )
    return out
