"""Fuzz the JSON API from its own OpenAPI schema (schemathesis): no request may cause a 5xx, and
every answer is one the schema documents (status code, content type, body schema).

Every operation of /api/openapi.json is called in-process with generated requests, valid and
invalid (types, lengths, ranges, unknown fields, huge numbers), signed in with a role that may
call it and with the session's CSRF header. Path parameters are generated, or half the time taken
from records that exist (so that reads and edits get past "not found"). Examples are bounded and
derandomised: the test takes the same time and tries the same requests on every run.

The report build (it starts a build process) is only called by a role that may not build.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.web.conftest import NOW, PASSWORD, RELEASED, client_for  # noqa: E402

#: The role that may call an operation (coordinator otherwise: enters and edits data).
ROLE_OF = {
    ("POST", "/api/v1/queries"): "data_manager",
    ("POST", "/api/v1/queries/{query_id}/close"): "data_manager",
    ("POST", "/api/v1/lots"): "data_manager",
    ("PUT", "/api/v1/lots/{lot_id}"): "data_manager",
    ("POST", "/api/v1/subjects/{code}/signatures"): "investigator",
    ("GET", "/api/v1/report"): "investigator",
    ("GET", "/api/v1/report/report.{kind}"): "investigator",
}
#: These end the session they are called with: each call gets a session of its own.
ENDS_SESSION = {("DELETE", "/api/v1/session")}
#: Examples per operation: enough to reach every documented answer of each operation in the suite's
#: time budget; `python scripts/fuzz_api.py --role R --max-examples N` runs deeper, per role.
EXAMPLES = 12
#: Fewer examples for calls that check a password (Argon2: tens of ms of CPU each).
FEWER = {("POST", "/api/v1/session"): 8, ("POST", "/api/v1/subjects/{code}/signatures"): 8}
#: What every answer is checked for.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Path parameter values of records that exist (made by ``records``), by parameter name.
KNOWN = {
    "code": ["S001", "S002"],
    "table": ["infusion", "adverse_event"],
    "kind": ["html", "pdf"],
}
KNOWN_ID = [1, 2]


def _sign_in(client, role: str) -> dict[str, str]:
    response = client.post(
        "/api/v1/session", json={"username": role.replace("_", "-"), "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    token = response.cookies.get("celltrial_session")
    return {"Cookie": f"celltrial_session={token}", "X-CSRF-Token": response.json()["csrf_token"]}


@pytest.fixture(scope="module")
def signed_in_headers(app):
    """Cookie and CSRF headers of one session per role used here."""
    client = client_for(app)
    return {role: _sign_in(client, role) for role in {"coordinator", *ROLE_OF.values()}}


@pytest.fixture(scope="module")
def records(app, signed_in_headers):
    """Two infusions, two adverse events and two queries for the fuzzed calls to find."""
    client = client_for(app)
    coordinator = signed_in_headers["coordinator"]
    for code in KNOWN["code"]:
        started = NOW - timedelta(days=2)
        infusion = {
            "lot_code": RELEASED,
            "vial_id": "V-1",
            "started_at": started.isoformat(),
            "ended_at": (started + timedelta(minutes=30)).isoformat(),
            "cells_given": 3.0e7,
            "label_subject_code": code,
        }
        made = client.post(f"/api/v1/subjects/{code}/infusions", json=infusion, headers=coordinator)
        assert made.status_code == 201, made.text
        event = {"term": "Headache", "onset_at": (NOW - timedelta(days=1)).isoformat(), "grade": 1}
        made = client.post(
            f"/api/v1/subjects/{code}/adverse-events", json=event, headers=coordinator
        )
        assert made.status_code == 201, made.text
        query = {
            "table": "adverse_event",
            "row_id": made.json()["id"],
            "field": "grade",
            "question": "Grade as in the source?",
        }
        made = client.post("/api/v1/queries", json=query, headers=signed_in_headers["data_manager"])
        assert made.status_code == 201, made.text


@pytest.fixture(scope="module")
def api_schema(app, signed_in_headers):
    """The app's own OpenAPI schema, read behind sign-in as a client reads it."""
    headers = signed_in_headers["coordinator"]
    return schemathesis.openapi.from_asgi("/api/openapi.json", app, headers=headers)


def _strategy(operation):
    """Generated requests, valid and invalid; half of them with path values of real records."""
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    generated = [operation.as_strategy(mode) for mode in modes]
    names = [p.name for p in operation.path_parameters]
    if not names or not all(n in KNOWN or n.endswith("_id") for n in names):
        return st.one_of(generated)
    known = st.fixed_dictionaries({n: st.sampled_from(KNOWN.get(n, KNOWN_ID)) for n in names})
    real = [
        known.flatmap(lambda values, mode=mode: operation.as_strategy(mode, path_parameters=values))
        for mode in modes
    ]
    return st.one_of(*generated, *real)


def _fuzz(app, operation, signed_in_headers):
    """A Hypothesis test of one operation."""
    key = (operation.method.upper(), operation.path)

    @settings(
        max_examples=FEWER.get(key, EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation))
    def call(case):
        if key in ENDS_SESSION:
            headers = _sign_in(client_for(app), "coordinator")
        else:
            headers = signed_in_headers[ROLE_OF.get(key, "coordinator")]
        case.call_and_validate(headers=headers, checks=CHECKS)

    return call


def test_no_request_causes_a_server_error(app, api_schema, signed_in_headers, records):
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        try:
            _fuzz(app, operation, signed_in_headers)()
        except Exception as exc:  # every operation is tried; all failures are reported together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
