"""The API's OpenAPI schema, with every response the API can send documented on every call.

FastAPI documents what each route declares; the answers that come from the app around the
routes are added here, once, for every operation: not signed in (401), not permitted or no CSRF
token (403), a body that cannot be read (400) or is too large (413), the two shapes of 422 (a
request that does not fit the schema: a list of problems; an entry the study refuses: one
message), and a study busy with another write (503, with ``Retry-After``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from celltrial.web.body_limit import MAX_BODY_BYTES, megabytes

_ERROR = {"$ref": "#/components/schemas/ErrorOut"}
_VALIDATION = {"$ref": "#/components/schemas/HTTPValidationError"}
#: The calls anyone may make (no 401/403 from the sign-in gate).
PUBLIC = {("post", "/api/v1/session")}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build_openapi(app: FastAPI, *, sites: list[str] | None = None) -> dict[str, Any]:
    """The schema of ``app``'s API (pages are not part of it), every response documented;
    ``sites``: the study's site codes, the values a new subject's ``site`` may take."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(
        "ErrorOut",
        {
            "title": "ErrorOut",
            "type": "object",
            "required": ["detail"],
            "properties": {"detail": {"type": "string", "title": "Detail"}},
        },
    )
    _add_validation_error(components)
    _name_the_sites(components, sites)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method in _HTTP_METHODS:
                document_responses(operation, public=(method, path) in PUBLIC)
    return schema


def document_responses(operation: dict[str, Any], *, public: bool = False) -> None:
    """Add to ``operation`` the responses the app around its route can send."""
    responses = operation.setdefault("responses", {})
    has_body = "requestBody" in operation
    if not public:
        responses.setdefault("401", _json(_ERROR, "Not signed in (no valid session)"))
        responses.setdefault(
            "403", _json(_ERROR, "Role not permitted, CSRF token missing, or password to change")
        )
    responses.setdefault(
        "400",
        _json(
            _ERROR,
            "The request body cannot be read (e.g. not UTF-8, or not a well-formed form), or "
            "the request cannot be done",
        ),
    )
    if has_body:
        limit = "the upload limit" if _is_upload(operation) else megabytes(MAX_BODY_BYTES)
        responses.setdefault("413", _json(_ERROR, f"The request body is larger than {limit}"))
    declared = responses.get("422")
    refused = "Entry refused: one message saying what to change"
    if declared is not None:
        refused = declared.get("description") or refused
    responses["422"] = _json(
        {"anyOf": [_VALIDATION, _ERROR]},
        "Not done. Either the request does not fit the schema (malformed JSON, a missing or "
        "wrong field: a list of problems with their place) or " + refused[0].lower() + refused[1:],
    )
    busy = _json(_ERROR, "The study is busy with another write: try again")
    busy["headers"] = {
        "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
    }
    responses.setdefault("503", busy)


def _is_upload(operation: dict[str, Any]) -> bool:
    content = operation.get("requestBody", {}).get("content", {})
    return "multipart/form-data" in content


def _add_validation_error(components: dict[str, Any]) -> None:
    """FastAPI's own 422 body (a list of problems), also where no route made it appear."""
    components["ValidationError"] = {  # what the app answers (celltrial.web.validation)
        "title": "ValidationError",
        "type": "object",
        "required": ["loc", "field", "msg", "type"],
        "properties": {
            "loc": {
                "title": "Location",
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "description": "Where: body, query or path, then the field (and item).",
            },
            "field": {
                "title": "Field",
                "type": "string",
                "description": "The field as the request spells it (markers_pct.CD73, "
                "serious_criteria[0]); empty for the body as a whole.",
            },
            "msg": {
                "title": "Message",
                "type": "string",
                "description": "The field and what was expected, in plain words.",
            },
            "type": {"title": "Error Type", "type": "string", "description": "A code."},
        },
    }
    components.setdefault(
        "HTTPValidationError",
        {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {
                "detail": {
                    "title": "Detail",
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ValidationError"},
                }
            },
        },
    )


def _name_the_sites(components: dict[str, Any], sites: list[str] | None) -> None:
    """A new subject's ``site``: one of the study's sites (or null, the first)."""
    site = components.get("SubjectEnrol", {}).get("properties", {}).get("site")
    if site is None or sites is None:
        return
    site.pop("anyOf", None)
    site.update({"anyOf": [{"type": "string", "enum": list(sites)}, {"type": "null"}]})
