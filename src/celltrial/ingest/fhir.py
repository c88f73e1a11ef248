"""Read FHIR R4 Bundles (any type) of Observation resources with LOINC codes and UCUM units.

Patient resources become subjects (pseudonymous: the resource id, never names); Observations with
a ``valueQuantity`` become results, matched to the catalogue by LOINC code first, then by name.
Blood-pressure panels are read from their components. Coded (non-numeric) observations are
reported as text results, never dropped silently.

Subject facts: ``Patient.gender`` → sex; ``Patient.birthDate`` → age in completed years at the
reference time; Body Weight (LOINC 29463-7, 3141-9) → weight in kg and Body Height (8302-2,
8306-3) → height in cm, converted from their UCUM unit (g, [lb_av], m, [in_i]…), the value at or
before the reference time nearest to it, else the first after (these observations are facts,
not results). The reference time is the start of the first hospital Encounter (class inpatient,
emergency, acute, short stay or observation), which is also the admission (its end the
discharge); else the Encounter of the subject's first result, else the first result, else the
first Encounter. A gender, birth date, weight or height that cannot be read or is implausible
is a warning naming the entry, left empty.

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

import numpy as np
import pandas as pd

from celltrial.catalogue import load_catalogue
from celltrial.errors import DataError, UnitError
from celltrial.ingest import facts
from celltrial.ingest.columns import resolve_tests
from celltrial.ingest.frame import complete_raw
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.times import RANGE_TEXT, parse_times

_SEX = {"male": "M", "female": "F"}
#: LOINC codes of body size observations read as subject facts (not results).
BODY_SIZE: dict[str, str] = {
    "29463-7": "weight_kg",  # Body weight
    "3141-9": "weight_kg",  # Body weight Measured
    "8302-2": "height_cm",  # Body height
    "8306-3": "height_cm",  # Body height --lying
}
_FACT_UNITS = {"weight_kg": "kg", "height_cm": "cm"}
#: UCUM units the unit converter knows under their plain names.
_UCUM = {
    "[lb_av]": "lb",
    "[lb_us]": "lb",
    "[oz_av]": "oz",
    "[in_i]": "in",
    "[in_us]": "in",
    "[ft_i]": "ft",
    "[ft_us]": "ft",
}
#: Encounter classes (v3 ActCode) of a hospital stay: the admission of a subject.
HOSPITAL_CLASSES = frozenset({"IMP", "ACUTE", "NONAC", "EMER", "SS", "OBSENC"})
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
    sizes: list[dict[str, object]] = []
    for number, resource in resources:
        if resource.get("resourceType") != "Observation":
            continue
        size = _body_size(resource, number, path)
        if size is not None:
            sizes.append(size)
            continue
        rows.extend(_observation_rows(resource, number, path, mapping, loinc))
    raw = complete_raw(pd.DataFrame(rows)) if rows else complete_raw(pd.DataFrame())
    encounters = _encounters(resources, path, zone)
    _subject_facts(subjects, raw, rows, encounters, sizes, report, zone)
    raw.attrs["same_day_repeats"] = mapping.same_day_repeats
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
    encounter_ref = entry.text(
        entry.object(resource, "encounter", "encounter"), "reference", "encounter"
    )
    encounter = _reference_id(encounter_ref) if encounter_ref else None
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
                "encounter": encounter,
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
        birth = entry.text(resource, "birthDate", "birthDate")
        died = resource.get("deceasedDateTime")
        if died is not None and not isinstance(died, str):
            raise entry.fail("deceasedDateTime", "a date and time as text", died)
        rows.append(
            {
                "subject": subject,
                "sex": gender,
                "age": None,
                "birth": birth,
                "died": died,
                "source_row": number,
            }
        )
    frame = pd.DataFrame(rows, columns=["subject", "sex", "age", "birth", "died", "source_row"])
    gender = frame["sex"].astype(object)
    frame["sex"], unreadable = facts.read_sex(gender.where(gender != "unknown", None), _SEX)
    if unreadable.any():
        report.add(
            "warning",
            "bad_subject_fact",
            row=frame.loc[unreadable, "source_row"].tolist(),
            column="gender",
            value=gender[unreadable].tolist(),
            expected="male or female (other: not stored, left empty)",
        )
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
    frame["admitted"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    frame["discharged"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    frame["height_cm"] = np.nan
    frame["weight_kg"] = np.nan
    frame["age"] = np.nan
    return frame


# --- subject facts from encounters and body-size observations ----------------------------------


def _body_size(resource: dict, number: int, path: Path) -> dict[str, object] | None:
    """A Body Weight or Body Height observation as a fact record, else None."""
    entry = _Entry(path, number, "Observation")
    code = entry.object(resource, "code", "code")
    codings = entry.objects(code, "coding", "code.coding")
    fact = next(
        (
            BODY_SIZE[c.get("code")]
            for c in codings
            if isinstance(c.get("code"), str)
            and c.get("code") in BODY_SIZE
            and c.get("system") in (None, "http://loinc.org")
        ),
        None,
    )
    if fact is None:
        return None
    reference = entry.text(entry.object(resource, "subject", "subject"), "reference", "subject")
    time = resource.get("effectiveDateTime")
    if time is None:
        time = entry.object(resource, "effectivePeriod", "effectivePeriod").get("start")
    quantity = entry.object(resource, "valueQuantity", "valueQuantity")
    unit = entry.text(quantity, "code", "valueQuantity.code") or entry.text(
        quantity, "unit", "valueQuantity.unit"
    )
    return {
        "subject": _reference_id(reference or ""),
        "time": time,
        "fact": fact,
        "value": quantity.get("value"),
        "unit": unit,
        "entry": number,
    }


def _encounters(resources: list[tuple[int, dict]], path: Path, zone: ZoneInfo | str):
    """One row per Encounter: subject, id, hospital (bool), start, end (UTC)."""
    rows = []
    for number, resource in resources:
        if resource.get("resourceType") != "Encounter":
            continue
        entry = _Entry(path, number, "Encounter")
        reference = entry.text(entry.object(resource, "subject", "subject"), "reference", "subject")
        period = entry.object(resource, "period", "period")
        kind = resource.get("class")
        classes = kind if isinstance(kind, list) else [kind]
        codes = set()
        for item in classes:
            if isinstance(item, dict):
                codes.add(item.get("code"))
                for coding in item.get("coding") or []:
                    if isinstance(coding, dict):
                        codes.add(coding.get("code"))
        rows.append(
            {
                "subject": _reference_id(reference or ""),
                "id": resource.get("id"),
                "full": f"Encounter/{resource.get('id')}",
                "hospital": bool(codes & HOSPITAL_CLASSES),
                "start": period.get("start") if isinstance(period.get("start"), str) else None,
                "end": period.get("end") if isinstance(period.get("end"), str) else None,
            }
        )
    frame = pd.DataFrame(rows, columns=["subject", "id", "full", "hospital", "start", "end"])
    frame["start"] = parse_times(frame["start"].astype(object), zone)[0]
    frame["end"] = parse_times(frame["end"].astype(object), zone)[0]
    return frame.sort_values("start", kind="stable")


def _subject_facts(
    subjects: pd.DataFrame,
    raw: pd.DataFrame,
    rows: list[dict[str, object]],
    encounters: pd.DataFrame,
    sizes: list[dict[str, object]],
    report: ValidationReport,
    zone: ZoneInfo | str,
) -> None:
    """Fill admission, discharge, age, weight and height of ``subjects`` in place."""
    if subjects.empty:
        return
    result_times = parse_times(raw["time"].astype(object), zone)[0]
    results = pd.DataFrame(
        {
            "subject": raw["subject"].astype(object).to_numpy(),
            "time": result_times.to_numpy(),
            "encounter": [r.get("encounter") for r in rows] if rows else [],
        }
    ).dropna(subset=["time"])
    results = results.sort_values("time", kind="stable")
    hospital = encounters[encounters["hospital"] & encounters["start"].notna()]
    references = {}
    for position, code in subjects["subject"].items():
        stay = hospital[hospital["subject"] == code]
        reference = pd.NaT
        if len(stay):
            subjects.loc[position, "admitted"] = stay["start"].iloc[0]
            subjects.loc[position, "discharged"] = stay["end"].iloc[0]
            reference = stay["start"].iloc[0]
        mine = results[results["subject"] == code]
        if pd.isna(reference) and len(mine):
            linked = mine["encounter"].dropna()
            if len(linked):
                found = encounters[encounters["id"] == linked.iloc[0]]["start"].dropna()
                reference = found.iloc[0] if len(found) else pd.NaT
            if pd.isna(reference):
                reference = mine["time"].iloc[0]
        if pd.isna(reference):
            starts = encounters[encounters["subject"] == code]["start"].dropna()
            reference = starts.iloc[0] if len(starts) else pd.NaT
        references[code] = reference
    reference = subjects["subject"].map(references)
    reference = pd.to_datetime(reference, utc=True)
    _birth_to_age(subjects, reference, report, zone)
    _sizes(subjects, reference, sizes, report, zone)
    del subjects["birth"]


def _birth_to_age(
    subjects: pd.DataFrame, reference: pd.Series, report: ValidationReport, zone: ZoneInfo | str
) -> None:
    birth, unreadable = parse_times(subjects["birth"].astype(object), zone)
    if unreadable.any():
        report.add(
            "warning",
            "bad_subject_fact",
            row=subjects.loc[unreadable, "source_row"].tolist(),
            column="birthDate",
            value=subjects.loc[unreadable, "birth"].tolist(),
            expected=f"the patient's birth date (YYYY-MM-DD) in the years {RANGE_TEXT}; "
            "no age stored",
        )
    ages = facts.age_from_birth(birth, reference)
    late = birth.notna() & reference.notna() & ages.isna()
    if late.any():
        report.add(
            "warning",
            "bad_subject_fact",
            row=subjects.loc[late, "source_row"].tolist(),
            column="birthDate",
            value=subjects.loc[late, "birth"].tolist(),
            expected="a birth date before the patient's admission or first result; no age stored",
        )
    subjects["age"] = ages.astype(float)


def _sizes(
    subjects: pd.DataFrame,
    reference: pd.Series,
    sizes: list[dict[str, object]],
    report: ValidationReport,
    zone: ZoneInfo | str,
) -> None:
    """Weight and height: the value nearest the reference time (at or before it, else the first
    after), in kg and cm; unreadable, unconvertible or implausible values are warnings."""
    if not sizes:
        return
    from celltrial.units import convert

    frame = pd.DataFrame(sizes)
    frame["time"] = parse_times(frame["time"].astype(object), zone)[0]
    numbers = pd.to_numeric(frame["value"].astype(object), errors="coerce").astype(float)
    converted = []
    problems = []
    for value, unit, fact in zip(numbers, frame["unit"], frame["fact"], strict=True):
        target = _FACT_UNITS[str(fact)]
        if np.isnan(value) or not np.isfinite(value):
            converted.append(np.nan)
            problems.append("a number")
            continue
        source = _UCUM.get(str(unit), unit) if unit else target
        try:
            number = float(convert(np.array([value]), str(source), target)[0])
        except (UnitError, ValueError) as exc:
            converted.append(np.nan)
            problems.append(f"a unit convertible to {target} ({exc})")
            continue
        if facts.implausible(pd.Series([number]), str(fact)).iloc[0]:
            converted.append(np.nan)
            problems.append(facts.expected_text(str(fact)))
            continue
        converted.append(number)
        problems.append(None)
    frame["number"] = converted
    frame["problem"] = problems
    bad = frame[frame["problem"].notna()]
    if len(bad):
        report.add(
            "warning",
            "bad_subject_fact",
            row=bad["entry"].tolist(),
            column=[f"entry {e} ({f})" for e, f in zip(bad["entry"], bad["fact"], strict=True)],
            value=[
                f"{v} {u or ''}".strip() for v, u in zip(bad["value"], bad["unit"], strict=True)
            ],
            expected=[f"{p}; not stored (left empty)" for p in bad["problem"]],
        )
    good = frame[frame["number"].notna() & frame["time"].notna()]
    for position, code in subjects["subject"].items():
        at = reference.loc[position]
        for fact in ("weight_kg", "height_cm"):
            mine = good[(good["subject"] == code) & (good["fact"] == fact)].sort_values(
                "time", kind="stable"
            )
            if mine.empty:
                continue
            if pd.isna(at):
                chosen = mine.iloc[0]
            else:
                before = mine[mine["time"] <= at]
                chosen = before.iloc[-1] if len(before) else mine.iloc[0]
            subjects.loc[position, fact] = float(chosen["number"])
