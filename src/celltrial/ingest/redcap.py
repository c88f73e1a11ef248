"""Read REDCap projects: the data dictionary plus a records export (flat CSV, one row per record
× event, repeating instruments as extra rows), with every field cast by its dictionary type.

- ``checkbox`` fields arrive as one column per choice (``gym___1``): cast to True/False;
- ``radio``/``dropdown``/``yesno``/``truefalse``: codes become their labels; a code the
  dictionary does not list is reported;
- ``calc``, ``slider`` and text validated as ``number``/``integer``: numbers (sliders are
  ratings, never results);
- text validated as ``date_*``/``datetime_*``: times (naive, in the study's time zone);
- identifier fields (names, phone, e-mail, date of birth…) and file uploads are never read.

A field is a result when its label (e.g. "Creatinine (mg/dL)", the unit in brackets) or name is
a catalogue test; other numeric fields are results the catalogue does not know (reported, not
stored). Each result's time is the date field of its own instrument (one, or the one whose name
or label says visit/collection/draw/sample), else the only date filled in on the same row
(record × event), else the field named by ``columns: {time: …}`` in a mapping; a result without
one is reported, never given a guessed date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.ingest.columns import find_roles
from celltrial.ingest.frame import complete_raw
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.names import match_test
from celltrial.ingest.report import ValidationReport
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
DICTIONARY_NAMES = ("dictionary.csv", "data_dictionary.csv", "datadictionary.csv", "metadata.csv")
RECORD_NAMES = ("data.csv", "records.csv", "record.csv")
CHOICE_TYPES = frozenset({"radio", "dropdown", "yesno", "truefalse"})
NUMBER_VALIDATIONS = frozenset({"number", "integer", "float"})
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
_SEX_WORDS = {"male": "M", "m": "M", "man": "M", "female": "F", "f": "F", "woman": "F"}


@dataclass(frozen=True)
class RedcapProject:
    """A dictionary (one row per field: field, form, type, validation, label, choices,
    identifier) and its records as read (text)."""

    dictionary: pd.DataFrame
    records: pd.DataFrame
    records_path: Path


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
    for column in ("choices", "validation", "identifier", "units"):
        if column not in table.columns:
            table[column] = ""
    table = table.fillna("")
    # a row with nothing in it (Excel saves trailing ones as ",,,,") defines no field
    table = table[(table.apply(lambda column: column.str.strip()) != "").any(axis=1)]
    table["type"] = table["type"].str.strip().str.casefold()
    table["validation"] = table["validation"].str.strip().str.casefold()
    table["field"] = table["field"].str.strip()
    rows = pd.Series(table.index + 2, index=table.index)  # the file's rows, header row 1
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
    return table[
        ["field", "form", "type", "validation", "label", "choices", "identifier", "units"]
    ].reset_index(drop=True)


def find_redcap_files(path: Path, mapping: Mapping) -> tuple[Path, Path]:
    """(dictionary, records) for a project folder, a records CSV, or a mapping's dictionary."""
    if path.is_dir():
        folder, records = path, None
        for name in RECORD_NAMES:
            if (path / name).is_file():
                records = path / name
                break
        if records is None:
            raise DataError(
                f"{path}: no records export found; expected one of {', '.join(RECORD_NAMES)}"
            )
    else:
        folder, records = path.parent, path
    if mapping.dictionary is not None:
        return Path(mapping.dictionary), records
    candidates = [folder / n for n in DICTIONARY_NAMES if (folder / n).is_file()]
    candidates += sorted(p for p in folder.glob("*DataDictionary*.csv") if p not in candidates)
    if not candidates:
        raise DataError(
            f"{path}: REDCap records need their data dictionary: put it next to the records as "
            f"{DICTIONARY_NAMES[0]} or name it in a mapping file (dictionary: FILE)"
        )
    return candidates[0], records


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
    return field["type"] == "calc" or (
        field["type"] == "text" and field["validation"] in NUMBER_VALIDATIONS
    )


def cast_records(
    project: RedcapProject, *, zone: ZoneInfo | str, report: ValidationReport | None = None
) -> pd.DataFrame:
    """The records with every dictionary field cast by its type (see module doc); identifier
    and file fields left out. Codes not among a field's choices are reported (when ``report``)
    and become missing."""
    records = project.records
    out = pd.DataFrame(index=records.index)
    for column in SYSTEM_COLUMNS:
        if column in records.columns:
            out[column] = records[column]
    for _, field in project.dictionary.iterrows():
        columns = _columns_of(field, records)
        if not columns or field["type"] in SKIPPED_TYPES or _identifier(field):
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
                    row=(records.index[unknown] + 2).tolist(),
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
                    row=(records.index[unreadable.to_numpy()] + 2).tolist(),
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
    """(raw long frame, subject information) of a REDCap export."""
    project = read_redcap_project(path, mapping)
    dictionary, records = project.dictionary, project.records
    report.file = str(project.records_path)
    subject_field = mapping.columns.get("subject") or dictionary["field"].iloc[0]
    if subject_field not in records.columns:
        raise DataError(
            f"{project.records_path}: no record ID column {subject_field!r} (the dictionary's "
            "first field); name it with columns: {subject: …} in a mapping"
        )
    cast = cast_records(project, zone=zone, report=report)
    rows = records.index + 2
    none = pd.Series(None, index=records.index, dtype=object)
    events = records.get("redcap_event_name", none).astype(object)
    instances = records.get("redcap_repeat_instance", none).astype(object)
    skipped = dictionary[
        dictionary.apply(_identifier, axis=1) | dictionary["type"].isin(SKIPPED_TYPES)
    ]
    if len(skipped):
        report.add(
            "info",
            "assumption",
            row=1,
            column=", ".join(skipped["field"]),
            value=f"{len(skipped)} identifier or file fields",
            expected="pseudonymous data only: identifiers and uploads are never read",
        )
    results = _result_fields(dictionary, mapping)
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
                    "source_row": rows[present.to_numpy()],
                }
            )
        )
    raw = (
        complete_raw(pd.concat(parts, ignore_index=True)) if parts else complete_raw(pd.DataFrame())
    )
    return raw, _subjects(cast, records, subject_field, dictionary, mapping, rows)


def _result_fields(
    dictionary: pd.DataFrame, mapping: Mapping
) -> dict[str, tuple[str | None, str | None]]:
    """field → (test code or None, unit from the label or field units) for result fields."""
    from celltrial.ingest.columns import resolve_tests

    out: dict[str, tuple[str | None, str | None]] = {}
    for _, field in dictionary.iterrows():
        if field["type"] in SKIPPED_TYPES or _identifier(field) or field["type"] == "checkbox":
            continue
        name = field["field"]
        entry = mapping.test_for(name)
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


def _subjects(
    cast: pd.DataFrame,
    records: pd.DataFrame,
    subject_field: str,
    dictionary: pd.DataFrame,
    mapping: Mapping,
    rows: pd.Index,
) -> pd.DataFrame:
    codes = records[subject_field].str.strip()
    roles = find_roles(
        [c for c in cast.columns if c not in SYSTEM_COLUMNS],
        mapping,
        ("sex", "age", "admitted", "discharged", "died"),
    )
    frame = pd.DataFrame({"subject": codes, "source_row": rows})
    for role in ("sex", "age", "admitted", "discharged", "died"):
        frame[role] = cast[roles[role]] if role in roles else None
    if "sex" in roles:
        frame["sex"] = frame["sex"].astype("string").str.strip().str.casefold().map(_SEX_WORDS)
    if "age" in roles:
        frame["age"] = pd.to_numeric(frame["age"], errors="coerce")
    first = frame.groupby("subject", sort=False).first().reset_index()
    return first[["subject", "sex", "age", "admitted", "discharged", "died", "source_row"]]
