"""Run database tests on SQLite and, when ``$CELLTRIAL_TEST_POSTGRES_URL`` is set, on PostgreSQL.

``CELLTRIAL_TEST_POSTGRES_URL`` is a SQLAlchemy URL of a server database whose role may create
databases (``postgresql+psycopg://celltrial:…@127.0.0.1/celltrial``). Each PostgreSQL test (or test
module, for module-scoped fixtures) gets a database of its own, created empty and dropped after.
Without the variable the PostgreSQL variants are skipped, saying how to run them; ``-k postgresql``
selects them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_ENV = "CELLTRIAL_TEST_POSTGRES_URL"
SKIP_REASON = (
    f"PostgreSQL tests need ${POSTGRES_ENV} (a postgresql+psycopg:// URL of a role that may "
    "create databases); .ci/run sets it"
)

#: Parameters for fixtures that run once per backend.
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
]


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """The URL of a new, empty database on ``backend`` (dropped afterwards on PostgreSQL)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'celltrial.db'}"
        return
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        pytest.skip(SKIP_REASON)
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"celltrial_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database per test, on each backend."""
    with fresh_database(request.param, tmp_path) as url:
        yield url
