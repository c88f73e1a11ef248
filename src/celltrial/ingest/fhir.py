"""Read FHIR R4 Bundles (any type) of Observation resources with LOINC codes and UCUM units.

Patient resources become subjects (pseudonymous: the resource id, never names); Observations with
a ``valueQuantity`` become results, matched to the catalogue by LOINC code first, then by name.
Blood-pressure panels are read from their components. Coded (non-numeric) observations are
reported as text results, never dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from celltrial.catalogue import load_catalogue
from celltrial.errors import DataError
from celltrial.ingest.columns import resolve_tests
from celltrial.ingest.frame import complete_raw
from celltrial.ingest.mapping import Mapping
from celltrial.ingest.report import ValidationReport
from celltrial.ingest.times import parse_times

_SEX = {"male": "M", "female": "F"}


def read_fhir(
    path: Path, mapping: Mapping, report: ValidationReport, *, zone: ZoneInfo | str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw long frame, subject information) of a FHIR JSON Bundle (or a single resource)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path} as JSON: {exc}") from None
    resources = (
        [e.get("resource", {}) for e in data.get("entry", [])]
        if data.get("resourceType") == "Bundle"
        else [data]
    )
    subjects = _patients(resources, path, zone)
    loinc = {t.loinc: t.code for t in load_catalogue().tests if t.loinc}
    rows: list[dict[str, object]] = []
    for number, resource in enumerate(resources, start=1):
        if resource.get("resourceType") != "Observation":
            continue
        subject = _reference_id(resource.get("subject", {}).get("reference", ""))
        time = resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get(
            "start"
        )
        parts = [(resource.get("code", {}), resource)] + [
            (c.get("code", {}), c) for c in resource.get("component", [])
        ]
        for code, holder in parts:
            if holder is resource and "component" in resource and "valueQuantity" not in resource:
                continue
            codings = code.get("coding", [])
            name = code.get("text") or (codings[0].get("display") if codings else "") or "?"
            test = next((loinc[c["code"]] for c in codings if c.get("code") in loinc), None)
            if test is None:
                test = resolve_tests([name], mapping)[name][0]
            quantity = holder.get("valueQuantity")
            if quantity is not None:
                value: object = quantity.get("value")
                if value is not None and quantity.get("comparator"):  # "<0.5": a limit
                    value = f"{quantity['comparator']}{value}"
                unit = quantity.get("code") or quantity.get("unit")
            else:
                concept = holder.get("valueCodeableConcept", {})
                value = concept.get("text") or next(
                    (c.get("display") for c in concept.get("coding", [])), holder.get("valueString")
                )
                unit = None
            rows.append(
                {
                    "subject": subject,
                    "time": time,
                    "column": f"entry {number} ({codings[0].get('code') if codings else name})",
                    "name": name,
                    "test": test,
                    "raw_value": None if value is None else str(value),
                    "raw_unit": unit,
                    "source_row": number,
                }
            )
    raw = complete_raw(pd.DataFrame(rows)) if rows else complete_raw(pd.DataFrame())
    return raw, subjects


def _reference_id(reference: str) -> str:
    """ "urn:uuid:abc" or "Patient/abc" → "abc"."""
    return reference.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def _patients(resources: list[dict], path: Path, zone: ZoneInfo | str) -> pd.DataFrame:
    rows = []
    for number, resource in enumerate(resources, start=1):
        if resource.get("resourceType") != "Patient":
            continue
        if not resource.get("id"):
            raise DataError(f"{path}: entry {number}: Patient without an id")
        rows.append(
            {
                "subject": resource["id"],
                "sex": _SEX.get(resource.get("gender", "")),
                "age": None,
                "died": resource.get("deceasedDateTime"),
                "source_row": number,
            }
        )
    frame = pd.DataFrame(rows, columns=["subject", "sex", "age", "died", "source_row"])
    frame["died"] = parse_times(frame["died"].astype(object), zone)[0]
    frame["admitted"] = pd.NaT
    frame["discharged"] = pd.NaT
    return frame
