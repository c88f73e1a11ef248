"""A request that does not fit the API's schema, said in plain words.

FastAPI answers such a request with 422 and pydantic's own texts ("Input should be a valid
integer, unable to parse string as an integer") beside a location tuple. The API keeps that
shape (``detail``: a list of problems with ``loc`` and ``type``, as documented) but each problem
also names its ``field`` as the request spells it (``grade``, ``serious_criteria[0]``,
``markers_pct.CD73``), and its ``msg`` says what was expected in words a person reads:
``grade: 'abc' is not a whole number``. The forms use the same wording for their fields.

Pydantic reports a value that fits none of a union's types once per type (a reading may be a
number or a text: two errors); those are said once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The time the API's messages give as an example (ISO 8601 with its UTC offset).
API_TIME_EXAMPLE = "e.g. 2020-02-10T14:30:00+08:00"
#: The time the forms' messages give as an example (the study's local time).
FORM_TIME_EXAMPLE = "e.g. 2020-02-10 14:30"
#: Patterns of the request schemas, in words (what a value must look like).
PATTERN_WORDS: dict[str, str] = {}
#: Where a request's value came from (the first element of FastAPI's ``loc``).
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})
#: How pydantic names the members of a union in an error's ``loc`` (never a field name).
_UNION_TAG = re.compile(
    r"^(float|int|str|bool|bytes|none|datetime|date|constrained-\w+|[\w-]+\[.*\])$"
)
#: Errors that say a value is of the wrong type (not that a value of the right type is wrong).
_TYPE_ERRORS = re.compile(r"_(type|parsing)$|^(finite_number|int_from_float|literal_error)$")
_SHOWN = 40
#: Stands for a value a message must not repeat (a password).
HIDDEN = object()


def register_pattern(pattern: str, words: str) -> str:
    """Name ``pattern`` in words for the messages (returns the pattern, for use in a Field)."""
    PATTERN_WORDS[pattern] = words
    return pattern


def shown(value: Any) -> str:
    """A value as a message quotes it: text in quotes, at most 40 characters."""
    if value is HIDDEN:
        return "the value given"
    if isinstance(value, str):
        text = value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…"
        return f"'{text}'"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # a NaN pydantic refused, a circular structure
        text = str(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def plain_message(error: Mapping[str, Any], value: Any, *, api: bool = True) -> str:
    """What one pydantic ``error`` says, in plain words (never its type names or Python reprs).
    ``api``: times are asked for with their UTC offset (forms take the study's local time)."""
    kind, ctx = str(error.get("type", "")), error.get("ctx") or {}
    said = shown(value)

    def number(key: str) -> str:
        return f"{ctx.get(key):g}" if isinstance(ctx.get(key), int | float) else str(ctx.get(key))

    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return "required"
    if kind == "string_too_short":
        return f"at least {ctx.get('min_length')} characters"
    if kind == "extra_forbidden":
        return "not a field of this request"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"{said} is not a number (e.g. 30000000, 3e7 or 3.5)"
    if kind in ("int_parsing", "int_type", "int_from_float", "int_parsing_size"):
        return f"{said} is not a whole number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{said}: expected {'true or false' if api else 'yes or no'}"
    if kind in ("string_type", "string_unicode"):
        return f"{said} is not text"
    if kind == "greater_than":
        return f"expected more than {number('gt')}, not {said}"
    if kind == "greater_than_equal":
        return f"expected at least {number('ge')}, not {said}"
    if kind == "less_than":
        return f"expected less than {number('lt')}, not {said}"
    if kind == "less_than_equal":
        return f"expected at most {number('le')}, not {said}"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} items"
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(str(ctx.get("pattern")), "the form this field takes")
        return f"{said} is not allowed: expected {words}"
    if kind in ("literal_error", "enum"):
        return f"{said} is not one of the choices ({ctx.get('expected', '')})"
    if kind == "timezone_aware":
        example = API_TIME_EXAMPLE if api else FORM_TIME_EXAMPLE
        return f"{said} has no UTC offset ({example})"
    if kind.startswith(("datetime", "timezone")):
        example = API_TIME_EXAMPLE if api else FORM_TIME_EXAMPLE
        return f"{said} is not a date and time ({example})"
    if kind.startswith("date"):
        return f"{said} is not a date (e.g. 1960-05-31)"
    if kind == "list_type":
        return f"{said}: expected a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a JSON object ({{…}}), not {said}"
    message = str(error.get("msg", "not valid"))
    return message.replace("Input should be", "expected").removeprefix("Value error, ")


def readable_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI's validation ``errors`` as the API answers them: ``loc`` (where, without the
    names of a union's members), ``field`` (as the request spells it), ``msg`` (the field and
    what was expected, in words) and ``type`` (pydantic's code, for programs)."""
    grouped: dict[tuple, list[Mapping[str, Any]]] = {}
    for error in errors:
        grouped.setdefault(_place(tuple(error.get("loc") or ())), []).append(error)
    found = []
    for loc, alternatives in grouped.items():
        error = _telling(alternatives)
        if error.get("type") == "json_invalid":  # loc: ("body", the character it stopped at)
            where = loc[1] if len(loc) > 1 else "?"
            why = str((error.get("ctx") or {}).get("error", "cannot be read"))
            said = f"not valid JSON ({why[:1].lower() + why[1:]} at character {where})"
            found.append(
                {
                    "loc": ["body"],
                    "field": "",
                    "msg": f"request body: {said}",
                    "type": "json_invalid",
                }
            )
            continue
        field = field_name(loc)
        value = HIDDEN if "password" in field else error.get("input")
        if len(alternatives) > 1 and all(_TYPE_ERRORS.search(str(e["type"])) for e in alternatives):
            what = " or ".join(dict.fromkeys(_noun(str(e["type"])) for e in alternatives))
            message = f"{shown(value)} is not {what}"
        else:
            message = plain_message(error, value)
        found.append(
            {
                "loc": list(loc),
                "field": field,
                "msg": f"{field or 'request body'}: {message}",
                "type": str(error.get("type", "")),
            }
        )
    return found


def page_summary(problems: Sequence[Mapping[str, Any]]) -> str:
    """The problems of :func:`readable_errors` as one sentence for a page, the fields in words
    (an address's ``infusion_id``: infusion number)."""
    said = []
    for problem in problems:
        field = str(problem["field"])
        words = field.removesuffix("_id") + " number" if field.endswith("_id") else field
        message = str(problem["msg"]).split(": ", 1)[-1]
        said.append(f"{words.replace('_', ' ') or 'request'}: {message}")
    return "; ".join(said)


def field_name(loc: Sequence[Any]) -> str:
    """A ``loc`` as the request spells the field: ``markers_pct.CD73``, ``serious_criteria[0]``."""
    parts = list(loc[1:] if loc and loc[0] in _SOURCES else loc)
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part == "[key]":
            name += " (key)"
        else:
            name += f".{part}" if name else str(part)
    return name


def _place(loc: tuple) -> tuple:
    """``loc`` without the union members' names (kept: source, fields, keys, indexes)."""
    kept = list(loc[:2])
    kept += [p for p in loc[2:] if not (isinstance(p, str) and _UNION_TAG.match(p))]
    return tuple(kept)


def _telling(alternatives: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Of a union's errors, the one that says most: a value of the right type that breaks a
    rule (too long, out of range) before one that says the value is of another type."""
    for error in alternatives:
        if not _TYPE_ERRORS.search(str(error.get("type", ""))):
            return error
    return alternatives[0]


def _noun(kind: str) -> str:
    for prefix, noun in (
        ("float", "a number"),
        ("finite", "a number"),
        ("int", "a whole number"),
        ("string", "text"),
        ("bool", "true or false"),
        ("datetime", "a date and time"),
        ("date", "a date"),
        ("literal", "one of the choices"),
    ):
        if kind.startswith(prefix):
            return noun
    return "of the expected type"
