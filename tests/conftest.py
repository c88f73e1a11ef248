"""Shared fixtures: the reference protocol as editable data, and small hand-made frames."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
import yaml

from celltrial.protocol import Protocol
from celltrial.protocol.loader import DEFAULT_PROTOCOL, builtin_protocol_text
from tests.store import backends

ZONE = "Asia/Shanghai"
# an unexpected error in a command is raised with its traceback (not turned into a message)
os.environ.setdefault("CELLTRIAL_DEBUG", "1")
# The CLI's console takes its width from $COLUMNS once, when celltrial.cli_support is imported
# (pytest-xdist's workers have COLUMNS=80): without it, each command a test runs takes the width
# the test gives it (CliRunner's env={"COLUMNS": ...}), whichever test imported the CLI first.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)


@pytest.fixture(scope="session")
def reference_data() -> dict[str, Any]:
    """The built-in protocol as a plain dict (copy before editing)."""
    return yaml.safe_load(builtin_protocol_text(DEFAULT_PROTOCOL))


@pytest.fixture
def make_protocol(reference_data: dict[str, Any]) -> Callable[..., Protocol]:
    """Build a validated protocol from the reference one with some parts replaced."""

    def make(**changes: Any) -> Protocol:
        data = copy.deepcopy(reference_data)
        for dotted, value in changes.items():
            target = data
            *parents, last = dotted.split("__")
            for key in parents:
                target = target[key]
            target[last] = value
        return Protocol.model_validate(data)

    return make


def local(day: int, hour: float = 10.0, *, day0: str = "2020-02-10") -> pd.Timestamp:
    """An aware UTC instant at ``hour`` local (Shanghai) time on study ``day``."""
    base = pd.Timestamp(day0).tz_localize(ZONE) + pd.Timedelta(days=day, hours=hour)
    return base.tz_convert("UTC")


def subjects_frame(*codes: str, died: dict[str, pd.Timestamp] | None = None) -> pd.DataFrame:
    """Subjects whose first infusion is day 0 at 10:00 local on 2020-02-10."""
    died = died or {}
    return pd.DataFrame(
        {
            "subject_id": list(codes),
            "sex": ["M"] * len(codes),
            "age": [60.0] * len(codes),
            "weight_kg": [70.0] * len(codes),
            "baseline_who_scale": [6] * len(codes),
            "first_infusion": [local(0)] * len(codes),
            "discharged": pd.to_datetime([pd.NaT] * len(codes), utc=True),
            "died": pd.to_datetime([died.get(c, pd.NaT) for c in codes], utc=True),
            "withdrawn": pd.to_datetime([pd.NaT] * len(codes), utc=True),
        }
    )


def observations_frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Observations from (subject, test, study_day) triples (value 1.0)."""
    return pd.DataFrame(
        {
            "subject_id": [r[0] for r in rows],
            "test": [r[1] for r in rows],
            "study_day": pd.array([r[2] for r in rows], dtype="Int64"),
            "time": [local(r[2], 6) for r in rows],
            "value": [1.0] * len(rows),
        }
    )


EMPTY_STATUS = pd.DataFrame(columns=["subject_id", "time", "study_day", "who_scale"])
EMPTY_IMAGING = pd.DataFrame(columns=["subject_id", "time", "study_day"])


# --- CELLTRIAL_TEST_ALL_POSTGRESQL: every study on PostgreSQL (see tests/store/backends.py) ---

_study_databases: backends.StudyDatabases | None = None


def pytest_configure(config) -> None:
    if backends.ALL_POSTGRESQL and not os.environ.get(backends.POSTGRES_ENV):
        raise pytest.UsageError(
            f"${backends.ALL_POSTGRESQL_ENV} needs ${backends.POSTGRES_ENV}, a "
            "postgresql+psycopg:// URL of a role that may create databases"
        )


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Note which fixture is being set up: a study database it makes is dropped with it."""
    if _study_databases is None:
        return (yield)
    _study_databases.fixtures.append(fixturedef)
    try:
        return (yield)
    finally:
        _study_databases.fixtures.pop()


@pytest.fixture(scope="session", autouse=True)
def _cache_of_this_run(tmp_path_factory) -> Iterator[None]:
    """celltrial's cache (the demo's phantom scans) in a folder of this test run, shared by its
    tests (and the commands they start), never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELLTRIAL_CACHE_DIR", str(tmp_path_factory.mktemp("celltrial-cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _test_databases_closed() -> Iterator[None]:
    """At the end of the run, the test databases dropped in the background are gone and the
    migrated templates removed (tests/store/backends.py)."""
    yield
    backends.close_test_databases()


@pytest.fixture(scope="session", autouse=True)
def _all_studies_on_postgresql() -> Iterator[None]:
    """With $CELLTRIAL_TEST_ALL_POSTGRESQL, a study's default database is a PostgreSQL one."""
    global _study_databases
    if not backends.ALL_POSTGRESQL:
        yield
        return
    import celltrial.store.database
    import celltrial.study

    databases = backends.StudyDatabases(
        os.environ[backends.POSTGRES_ENV], celltrial.store.database.database_url
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(celltrial.store.database, "database_url", databases.database_url)
        patch.setattr(celltrial.study, "database_url", databases.database_url)
        _study_databases = databases
        try:
            yield
        finally:
            _study_databases = None
            databases.drop_all()


@pytest.fixture(autouse=True)
def _drop_test_study_databases(request) -> Iterator[None]:
    """Drop the PostgreSQL databases of the studies this test made in its body."""
    databases = _study_databases
    if databases is None:
        yield
        return
    if "tmp_path" in request.fixturenames:
        databases.test_dir = request.getfixturevalue("tmp_path").resolve()
    try:
        yield
    finally:
        databases.test_dir = None
        databases.drop_unowned()


# --- pytest-xdist: the tests that share a costly fixture run in one worker ----------------------

#: Test modules that share a costly session-scoped fixture (a demo study), by that fixture. With
#: pytest-xdist (``-n``, pyproject's addopts) these modules run in one worker, so the fixture is
#: made once per run, not once per worker; every other module is a unit of its own (its tests
#: in one worker, in order, sharing its module-scoped fixtures). Checked at collection.
SHARED_SESSION_FIXTURES: dict[str, tuple[str, ...]] = {
    "demo": (  # tests/report/conftest.py: a 4-subject demo and its HTML and PDF reports
        "tests/report/test_layout.py",
        "tests/report/test_pdf_warm_up.py",
        "tests/report/test_reader.py",
        "tests/report/test_report.py",
        "tests/report/test_section_process.py",
    ),
    "default_demo": (  # tests/e2e/conftest.py: the default demo (test_cli's --force remakes it)
        "tests/e2e/test_cli.py",
        "tests/e2e/test_demo_numbers.py",
    ),
}
_WORK_UNIT = {
    module: f"modules sharing the {fixture!r} fixture"
    for fixture, modules in SHARED_SESSION_FIXTURES.items()
    for module in modules
}


def pytest_collection_modifyitems(config, items) -> None:
    """Refuse a test module that uses a fixture of :data:`SHARED_SESSION_FIXTURES` without being
    listed there (pytest-xdist would make the fixture again in another worker)."""
    unlisted = sorted(
        {
            f"{item.nodeid.split('::')[0]} uses {fixture!r}"
            for item in items
            for fixture, modules in SHARED_SESSION_FIXTURES.items()
            if fixture in getattr(item, "fixturenames", ())
            and item.nodeid.split("::")[0] not in modules
        }
    )
    if unlisted:
        raise pytest.UsageError(
            "list these modules in SHARED_SESSION_FIXTURES (tests/conftest.py): "
            + "; ".join(unlisted)
        )


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """For ``--dist loadscope`` (pyproject's addopts): pytest-xdist's scheduling by scope with
    whole modules as units of work (not classes), and the modules of
    :data:`SHARED_SESSION_FIXTURES` as one unit per fixture. The units start in the order of
    the collection, not (pytest-xdist ≥ 3.7) by their number of tests, which would start the
    long modules of a few tests (the journeys, the browser tests) last and leave one worker
    running them alone at the end."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return _WORK_UNIT.get(module, module)

    return ByModule(config, log)
