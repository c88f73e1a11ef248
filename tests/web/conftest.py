"""A small study for the web tests: subjects without infusions, lots, one account per role."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest

from celltrial.services.accounts import ROLES, add_user
from celltrial.services.casebook import NewLot, NewSubject, enrol_subject, record_lot
from celltrial.services.passwords import hash_cost
from celltrial.study import init_study
from tests.browser import browser, chromium, shots  # noqa: F401  (browser tests' fixtures)
from tests.store.backends import BACKENDS, fresh_database

PASSWORD = "correct horse battery 7"
RELEASED = "LOT-R1"
QUARANTINED = "LOT-Q1"
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture(scope="module", autouse=True)
def _cheap_password_hashes(request):
    """Accounts made and checked at a low Argon2 cost (the default costs about 0.2 CPU-s a hash,
    and every study here makes six accounts and signs them in); the code paths are the same.
    A module marked ``full_password_cost`` keeps the default (it tests the cost itself)."""
    if request.node.get_closest_marker("full_password_cost"):
        yield
        return
    with hash_cost():
        yield


def build_study(directory, *, subjects=("S001", "S002", "S003", "S004"), db_url=None):
    study = init_study(directory, user="setup", db_url=db_url)
    release = study.protocol.product.release
    markers = {m: 99.0 for m in release.positive_markers_min_pct} | {
        m: 0.5 for m in release.negative_markers_max_pct
    }
    for code, status in ((RELEASED, "released"), (QUARANTINED, "quarantine")):
        record_lot(
            study,
            NewLot(
                code=code,
                release_status=status,
                viability_pct=95.0,
                markers_pct=markers,
                sterility="no growth",
                mycoplasma="negative",
                endotoxin_eu_per_ml=0.1,
                expires_at=NOW + timedelta(days=90),
            ),
            user="setup",
        )
    for code in subjects:
        enrol_subject(
            study,
            NewSubject(
                code=code, enrolled_at=NOW - timedelta(days=12), sex="F", age=61, weight_kg=64
            ),
            user="setup",
        )
    for role in ROLES:
        add_user(
            study.engine, username=role.replace("_", "-"), role=role, password=PASSWORD, by="setup"
        )
    return study


@pytest.fixture(scope="module", params=BACKENDS)
def study_database(request, tmp_path_factory):
    """(study directory, database URL) of a small study, on each backend."""
    directory = tmp_path_factory.mktemp("web") / "study"
    with fresh_database(request.param, directory.parent, migrated=True) as url:
        study = build_study(directory, db_url=url)
        study.engine.dispose()
        yield directory, url


@pytest.fixture(scope="module")
def study_dir(study_database):
    return study_database[0]


@pytest.fixture(scope="module")
def db_url(study_database):
    return study_database[1]


@pytest.fixture(scope="module")
def app(study_dir, db_url):
    from celltrial.web import create_app

    app = create_app(study_dir, db_url=db_url)
    yield app
    app.state.study.engine.dispose()


def client_for(app, role: str | None = None):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    client = TestClient(app, base_url="https://testserver")
    if role is not None:
        response = client.post(
            "/api/v1/session", json={"username": role.replace("_", "-"), "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        client.csrf = response.json()["csrf_token"]
    return client


@pytest.fixture(scope="module")
def clients(app):
    return {role: client_for(app, role) for role in ROLES}


@pytest.fixture
def anonymous(app):
    return client_for(app)
