"""Browser forms to request schemas: local date-times in the study's zone, checkboxes, lists."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from celltrial.errors import EntryRefused
from celltrial.services import adverse_events, enrolment, infusions, vital_signs
from celltrial.services.plain_text import control_character_problem
from celltrial.web.validation import FORM_TIME_EXAMPLE, plain_message

DATETIME_FIELDS = (
    "started_at",
    "ended_at",
    "onset_at",
    "resolved_at",
    "time",
    "assessed_at",
    "manufactured_at",
    "expires_at",
    "admitted_at",
    "enrolled_at",
)
CHECKBOXES = {
    "infusion": ("completed", "reaction", "confirm_warnings"),
    "adverse_event": ("serious", "confirm_warnings"),
}
#: A checkbox whose saved value is unknown (imported) is a select instead: "" keeps it unknown.
ANSWERS = {"reaction": "reaction_answer"}
LISTS = ("serious_criteria",)
#: Fields posted as one input per key (``marker_CD73``) and validated as a dict.
DICTS = {"markers_pct": "marker_"}


#: Each form's fields as its messages name them ("field: what is wrong"), to show each message
#: beside its field.
FIELD_LABELS: dict[str, dict[str, str]] = {
    "infusion": infusions.FIELD_LABELS,
    "adverse_event": {"term": "term", "description": "description"} | adverse_events.FIELD_LABELS,
    "vital_signs": {"time": "time"} | vital_signs.FIELD_LABELS,
    "clinical_status": {
        "assessed_at": "time",
        "who_scale": "WHO scale",
        "oxygen_support": "oxygen support",
        "fio2": "FiO2",
    },
    "demographics": enrolment.FIELD_LABELS,
}


class ErrorMessage(str):
    """The message of a refused form (shown above it) with what it says of each field (shown
    beside the field): ``problems``, ``overridable`` and ``warnings``, field -> texts."""

    problems: dict[str, list[str]]
    overridable: dict[str, list[str]]
    warnings: dict[str, list[str]]

    @classmethod
    def of(cls, exc: Exception, *, kind: str = "") -> ErrorMessage:
        """The message of ``exc``: an :class:`EntryRefused` says it by field; another error's
        parts "label: text" (separated by "; ") are placed by the form's labels."""
        message = cls(str(exc))
        message.overridable, message.warnings = {}, {}
        if isinstance(exc, EntryRefused):
            message.problems = dict(exc.problems)
            message.overridable = dict(exc.overridable)
            message.warnings = dict(exc.warnings)
            return message
        fields = {label.lower(): name for name, label in FIELD_LABELS.get(kind, {}).items()}
        message.problems = {}
        text = (
            str(exc).split(": ", 1)[1]
            if str(exc).startswith(f"{kind.replace('_', ' ')}: ")
            else str(exc)
        )
        for part in text.split("; "):
            label, _, said = part.partition(": ")
            name = fields.get(label.strip().lower())
            if name and said:
                message.problems.setdefault(name, []).append(said)
        return message


def unstorable_fields(values: dict[str, Any], labels: dict[str, str]) -> ErrorMessage | None:
    """The fields among ``labels`` (form field -> its label) whose text holds a control
    character (the NUL character cannot be stored), each said beside its field; None when none
    does. For account forms, whose values reach the database before any other check."""
    problems = {}
    for name in labels:
        problem = control_character_problem(str(values.get(name) or ""))
        if problem is not None:
            problems[name] = [problem]
    if not problems:
        return None
    said = "; ".join(f"{labels[name]}: {texts[0]}" for name, texts in problems.items())
    message = ErrorMessage(f"Not done: {said}")
    message.problems, message.overridable, message.warnings = problems, {}, {}
    return message


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
    """Validate a posted form; :class:`~celltrial.errors.EntryRefused` lists every field that
    is wrong, in plain words (a value that cannot be read, a missing one, one out of range)."""
    data: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
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
                said = f"'{value}' is not a date and time ({FORM_TIME_EXAMPLE})"
                problems.setdefault(key, []).append(said)
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
    try:
        body = schema.model_validate(data, strict=False)  # a form's values are text
    except ValidationError as exc:
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else "form"
            if key not in problems:  # a value that could not be read is said once
                problems.setdefault(key, []).append(
                    plain_message(error, values.get(key), api=False)
                )
        body = None
    if problems or body is None:
        labels = FIELD_LABELS.get(kind, {})
        said = "; ".join(
            f"{labels.get(k, k.replace('_', ' '))}: {t}" for k, ts in problems.items() for t in ts
        )
        raise EntryRefused(f"{kind.replace('_', ' ')} not saved: {said}", problems=problems)
    return body
