"""Browser forms to request schemas: local date-times in the study's zone, checkboxes, lists."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from celltrial.errors import DataError

DATETIME_FIELDS = (
    "started_at",
    "ended_at",
    "onset_at",
    "resolved_at",
    "time",
    "assessed_at",
    "manufactured_at",
    "expires_at",
)
CHECKBOXES = {"infusion": ("completed", "reaction"), "adverse_event": ("serious",)}
#: A checkbox whose saved value is unknown (imported) is a select instead: "" keeps it unknown.
ANSWERS = {"reaction": "reaction_answer"}
LISTS = ("serious_criteria",)
#: Fields posted as one input per key (``marker_CD73``) and validated as a dict.
DICTS = {"markers_pct": "marker_"}


def local_input(value: datetime | None, zone: ZoneInfo) -> str:
    """An aware time as the value of an ``<input type=datetime-local>`` in the study zone."""
    if value is None:
        return ""
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def record_values(record: Any, zone: ZoneInfo) -> dict[str, Any]:
    """A saved record (a service's dataclass) as the values of its edit form: times as
    ``datetime-local`` inputs in the study zone, dicts as one input per key."""
    values = asdict(record)
    for key in DATETIME_FIELDS:
        if key in values:
            values[key] = local_input(values[key], zone)
    for key, prefix in DICTS.items():
        for name, value in (values.get(key) or {}).items():
            values[f"{prefix}{name}"] = value
    return values


def parse_form(
    values: dict[str, Any], schema: type[BaseModel], *, kind: str, zone: ZoneInfo
) -> BaseModel:
    """Validate a posted form; :class:`DataError` lists every field that is wrong."""
    data: dict[str, Any] = {}
    problems: list[str] = []
    for key, prefix in DICTS.items():
        if key in schema.model_fields:
            data[key] = {
                name[len(prefix) :]: str(value).strip()
                for name, value in values.items()
                if name.startswith(prefix) and str(value).strip()
            }
    for key, value in values.items():
        if key not in schema.model_fields:
            continue
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                continue
        if key in DATETIME_FIELDS:
            try:
                stamp = datetime.fromisoformat(str(value))
            except ValueError:
                problems.append(f"{key.replace('_', ' ')}: {value!r} is not a date and time")
                continue
            data[key] = stamp if stamp.tzinfo else stamp.replace(tzinfo=zone)
        elif key in LISTS:
            data[key] = value if isinstance(value, list) else [value]
        elif key == "expected":
            data[key] = {"yes": True, "no": False}.get(str(value))
        else:
            data[key] = value
    for box in CHECKBOXES.get(kind, ()):
        if box in schema.model_fields:
            answer = values.get(ANSWERS.get(box, ""))
            if answer is None:
                data[box] = box in values
            else:
                data[box] = {"yes": True, "no": False}.get(answer)
    if problems:
        raise DataError("; ".join(problems))
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise DataError(
            "; ".join(
                f"{'.'.join(map(str, e['loc'])).replace('_', ' ') or 'form'}: {e['msg']}"
                for e in exc.errors()
            )
        ) from None
