"""Read FHIR R4 Bundles (any type) of Observation resources with LOINC codes and UCUM units.

Patient resources become subjects (pseudonymous: the resource id, never names); Observations with
a ``valueQuantity`` become results, matched to the catalogue by LOINC code first, then by name.
Blood-pressure panels are read from their components. Coded (non-numeric) observations are
reported as text results, never dropped silently.

A file that is not a FHIR resource or Bundle (not UTF-8, not JSON, a JSON list, nested beyond
reason, ``NaN`` where JSON has no such value), or a Patient or Observation whose fields have the
wrong shape (a ``subject`` that is text instead of an object…), is refused with a message naming
the file, the entry and the field. Resources of other types are skipped: they hold no results.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from celltrial.catalogue import load_catalogue
from celltrial.errors import DataError
from celltrial.ingest.columns import resolve_tests
from celltrial.ingest.frame import complete_raw
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.times import RANGE_TEXT, parse_times

_SEX = {"male": "M", "female": "F"}
#: Integers longer than this are kept as their digits (text): no result has so many, and Python
#: refuses to convert more than 4,300 digits.
_MAX_DIGITS = 300
_NUL = re.compile(r"\x00|(?<!\\)(?:\\\\)*\\u0000")
_CONSTANT = re.compile(r"(?<![\w\"])(-?Infinity|NaN)(?![\w\"])")


def read_fhir(
    path: Path, mapping: Mapping, report: ValidationReport, *, zone: ZoneInfo | str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw long frame, subject information) of a FHIR JSON Bundle (or a single resource)."""
    data = read_fhir_json(path)
    resources = _resources(data, path)
    subjects = _patients(resources, path, report, zone)
    loinc = {t.loinc: t.code for t in load_catalogue().tests if t.loinc}
    rows: list[dict[str, object]] = []
    for number, resource in resources:
        if resource.get("resourceType") != "Observation":
            continue
        rows.extend(_observation_rows(resource, number, path, mapping, loinc))
    raw = complete_raw(pd.DataFrame(rows)) if rows else complete_raw(pd.DataFrame())
    return raw, subjects


def read_fhir_json(path: Path) -> Any:
    """The JSON of a FHIR file; :class:`DataError` naming the file, line and column otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start + 1} cannot be read); expected FHIR JSON, "
            "which is always UTF-8"
        ) from None

    def constant(name: str) -> Any:
        match = _CONSTANT.search(text)
        where = f"line {_line_col(text, match.start())}: " if match else ""
        raise DataError(
            f"{path}: {where}{name} is not a JSON number; expected a number or no value"
        )

    nul = _NUL.search(text)
    if nul:
        raise DataError(
            f"{path}: line {_line_col(text, nul.start())}: a NUL character (\\u0000); expected "
            "text without it (the file is damaged)"
        )
    try:
        return json.loads(text, parse_int=_json_int, parse_constant=constant)
    except json.JSONDecodeError as exc:
        problem = exc.msg[0].lower() + exc.msg[1:]
        raise DataError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {problem}"
        ) from None
    except RecursionError:
        raise DataError(
            f"{path}: the JSON is nested too deeply to be a FHIR resource (lists or objects "
            "inside one another hundreds of levels deep)"
        ) from None


def _json_int(digits: str) -> int | str:
    return int(digits) if len(digits) <= _MAX_DIGITS else digits


def _line_col(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"{line}, column {column}"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f"the text {shown!r}"


class _Entry:
    """Typed access to one resource's fields; a wrong shape is a :class:`DataError` naming the
    file, the entry and the field."""

    def __init__(self, path: Path, number: int, kind: str | None) -> None:
        self.path = path
        self.where = f"entry {number}" + (f" ({kind})" if kind else "")

    def fail(self, field: str, expected: str, value: Any) -> DataError:
        return DataError(
            f"{self.path}: {self.where}, {field}: expected {expected}, got {_json_kind(value)}"
        )

    def object(self, holder: dict, key: str, field: str) -> dict:
        value = holder.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(field, "an object", value)
        return value

    def objects(self, holder: dict, key: str, field: str) -> list[dict]:
        value = holder.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(field, "a list", value)
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{field}[{index}]", "an object", item)
        return value

    def text(self, holder: dict, key: str, field: str) -> str | None:
        value = holder.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self.fail(field, "text", value)


def _resources(data: Any, path: Path) -> list[tuple[int, dict]]:
    """(entry number, resource) of a Bundle's entries, or (1, the resource) for one resource."""
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a FHIR Bundle or resource (a JSON object with a resourceType), "
            f"got {_json_kind(data)}"
        )
    kind = data.get("resourceType")
    if not isinstance(kind, str) or not kind.strip():
        raise DataError(
            f"{path}: resourceType: expected the FHIR resource type as text (Bundle, "
            f"Observation, Patient…), got {_json_kind(kind)}"
        )
    if kind != "Bundle":
        return [(1, data)]
    entries = data.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise DataError(f"{path}: Bundle.entry: expected a list, got {_json_kind(entries)}")
    out = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise DataError(
                f"{path}: entry {number}: expected an object with a resource, got "
                f"{_json_kind(entry)}"
            )
        resource = _Entry(path, number, None).object(entry, "resource", "resource")
        if not resource:  # an entry without a resource (a response, a deleted resource)
            continue
        kind = resource.get("resourceType")
        if not isinstance(kind, str):
            raise _Entry(path, number, None).fail(
                "resource.resourceType", "the FHIR resource type as text", kind
            )
        out.append((number, resource))
    return out


def _observation_rows(
    resource: dict, number: int, path: Path, mapping: Mapping, loinc: dict[str, str]
) -> list[dict[str, object]]:
    entry = _Entry(path, number, "Observation")
    reference = entry.text(entry.object(resource, "subject", "subject"), "reference", "subject")
    subject = _reference_id(reference or "")
    time = resource.get("effectiveDateTime")
    if time is None:
        time = entry.object(resource, "effectivePeriod", "effectivePeriod").get("start")
    components = entry.objects(resource, "component", "component")
    parts = [(entry.object(resource, "code", "code"), resource, "")] + [
        (entry.object(c, "code", f"component[{i}].code"), c, f"component[{i}].")
        for i, c in enumerate(components)
    ]
    rows = []
    for code, holder, prefix in parts:
        if holder is resource and "component" in resource and "valueQuantity" not in resource:
            continue
        codings = entry.objects(code, "coding", f"{prefix}code.coding")
        texts = [
            entry.text(c, "code", f"{prefix}code.coding[{i}].code") for i, c in enumerate(codings)
        ]
        display = (
            entry.text(codings[0], "display", f"{prefix}code.coding[0].display")
            if codings
            else None
        )
        name = entry.text(code, "text", f"{prefix}code.text") or display or "?"
        test = next((loinc[c] for c in texts if c in loinc), None)
        if test is None:
            test = resolve_tests([name], mapping)[name][0]
        quantity = holder.get("valueQuantity")
        if quantity is not None:
            quantity = entry.object(holder, "valueQuantity", f"{prefix}valueQuantity")
            value: object = quantity.get("value")
            comparator = entry.text(quantity, "comparator", f"{prefix}valueQuantity.comparator")
            if value is not None and comparator:  # "<0.5": a limit
                value = f"{comparator}{value}"
            unit = entry.text(quantity, "code", f"{prefix}valueQuantity.code") or entry.text(
                quantity, "unit", f"{prefix}valueQuantity.unit"
            )
        else:
            concept = entry.object(holder, "valueCodeableConcept", f"{prefix}valueCodeableConcept")
            concept_codings = entry.objects(
                concept, "coding", f"{prefix}valueCodeableConcept.coding"
            )
            value = concept.get("text") or next(
                (c.get("display") for c in concept_codings), holder.get("valueString")
            )
            unit = None
        rows.append(
            {
                "subject": subject,
                "time": time,
                "column": f"entry {number} ({texts[0] if texts and texts[0] else name})",
                "name": name,
                "test": test,
                "raw_value": None if value is None else str(value),
                "raw_unit": unit,
                "source_row": number,
            }
        )
    return rows


def _reference_id(reference: str) -> str:
    """ "urn:uuid:abc" or "Patient/abc" → "abc"."""
    return reference.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def _patients(
    resources: list[tuple[int, dict]], path: Path, report: ValidationReport, zone: ZoneInfo | str
) -> pd.DataFrame:
    rows = []
    for number, resource in resources:
        if resource.get("resourceType") != "Patient":
            continue
        entry = _Entry(path, number, "Patient")
        subject = resource.get("id")
        if isinstance(subject, int) and not isinstance(subject, bool):
            subject = str(subject)
        if subject is not None and not isinstance(subject, str):
            raise entry.fail("id", "the patient's id as text", subject)
        if not subject or not subject.strip():
            raise DataError(f"{path}: {entry.where}: Patient without an id")
        gender = entry.text(resource, "gender", "gender")
        died = resource.get("deceasedDateTime")
        if died is not None and not isinstance(died, str):
            raise entry.fail("deceasedDateTime", "a date and time as text", died)
        rows.append(
            {
                "subject": subject,
                "sex": _SEX.get(gender or ""),
                "age": None,
                "died": died,
                "source_row": number,
            }
        )
    frame = pd.DataFrame(rows, columns=["subject", "sex", "age", "died", "source_row"])
    frame["died"], unreadable = parse_times(frame["died"].astype(object), zone)
    if unreadable.any():
        report.add(
            "error",
            "bad_time",
            row=frame.loc[unreadable, "source_row"].tolist(),
            column="deceasedDateTime",
            value=[r["died"] for r, bad in zip(rows, unreadable, strict=True) if bad],
            expected=f"the patient's date and time of death in the years {RANGE_TEXT}",
        )
    frame["admitted"] = pd.NaT
    frame["discharged"] = pd.NaT
    return frame
