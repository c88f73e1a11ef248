"""Run database tests on SQLite and, when ``$CELLTRIAL_TEST_POSTGRES_URL`` is set, on PostgreSQL.

``CELLTRIAL_TEST_POSTGRES_URL`` is a SQLAlchemy URL of a server database whose role may create
databases (``postgresql+psycopg://celltrial:…@127.0.0.1/celltrial``). Each PostgreSQL test (or test
module, for module-scoped fixtures) gets a database of its own, created empty and dropped after.
Without the variable the PostgreSQL variants are skipped, saying how to run them; ``-k postgresql``
selects them.

``CELLTRIAL_TEST_ALL_POSTGRESQL=1`` (with ``CELLTRIAL_TEST_POSTGRES_URL`` set) runs the whole
suite on PostgreSQL: every study a test creates without an explicit URL (``init_study(dir)``, the
CLI without ``--db``, the demo) gets a fresh PostgreSQL database of its own instead of
``DIR/celltrial.db`` (:class:`StudyDatabases`, installed by ``tests/conftest.py``; forked
workers inherit it, and a test that runs celltrial in a separate Python process must pass ``--db``),
the SQLite variants of the tests above (the SQLite-only paths, such as the bulk insert, with
them) are skipped saying so while their PostgreSQL variants run, and tests about SQLite itself
keep it through an explicit ``sqlite:///`` URL. ``-rs`` lists what was skipped and why.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_ENV = "CELLTRIAL_TEST_POSTGRES_URL"
ALL_POSTGRESQL_ENV = "CELLTRIAL_TEST_ALL_POSTGRESQL"
#: Whether this run puts every study on PostgreSQL.
ALL_POSTGRESQL = os.environ.get(ALL_POSTGRESQL_ENV, "").strip().lower() not in (
    "",
    "0",
    "false",
    "no",
)
SKIP_REASON = (
    f"PostgreSQL tests need ${POSTGRES_ENV} (a postgresql+psycopg:// URL of a role that may "
    "create databases); .ci/run sets it"
)
SQLITE_SKIP_REASON = (
    f"${ALL_POSTGRESQL_ENV} runs every study on PostgreSQL: this test's postgresql variant runs"
)
#: In a study directory, the URL of the PostgreSQL database that stands in for ``celltrial.db``.
STUDY_DATABASE_FILE = ".celltrial-test-database"

#: Parameters for fixtures that run once per backend.
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
]


def _server_url() -> str:
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        pytest.skip(SKIP_REASON)
    return server_url


def create_database(server_url: str, *, template: str | None = None) -> tuple[str, str]:
    """A new database on the server of ``server_url``: (its name, its URL). Empty, or a copy of
    database ``template`` (which nobody may be connected to)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"celltrial_test_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        admin.dispose()
    return name, make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` on the server of ``server_url``, closing its connections."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        for attempt in range(20):
            try:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                return
            except DBAPIError:
                # an autovacuum worker of the server's own role, busy in the database after a
                # large test import, is not ours to terminate: it ends within moments
                if attempt == 19:
                    raise
                time.sleep(0.5)
    finally:
        admin.dispose()


class _Dropper:
    """Drops test databases in a thread of its own. ``DROP DATABASE`` makes the server write a
    checkpoint (0.2–2 s of waiting, more when earlier tests left much to write), which the next
    test need not wait for. At most 16 drops wait at a time (each database holds disk space);
    :meth:`wait` (at the end of the run) waits for them all and raises the first failure."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=16)
        self._thread: threading.Thread | None = None
        self._failures: list[BaseException] = []

    def drop(self, server_url: str, name: str) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="drop-test-databases")
            self._thread.daemon = True
            self._thread.start()
        self._queue.put((server_url, name))

    def _run(self) -> None:
        while True:
            server_url, name = self._queue.get()
            try:
                drop_database(server_url, name)
            except BaseException as exc:  # reported by wait(), at the end of the run
                self._failures.append(exc)
            finally:
                self._queue.task_done()

    def wait(self) -> None:
        self._queue.join()
        if self._failures:
            raise self._failures[0]


class MigratedTemplates:
    """One empty database per backend at the schema head, made once per test run (on first use)
    and copied for each study a test makes (:func:`fresh_database` with ``migrated=True``):
    ``init_study`` then finds nothing to migrate. Copying costs about a quarter of migrating
    (SQLite 0.13 → 0.04 CPU-s; PostgreSQL 1.2 → 0.5 s of waiting for the server). The templates
    are made by the migrations themselves, so they are what ``init_study`` would make; the
    migration path is tested from empty databases (``fresh_database`` without ``migrated``)."""

    def __init__(self) -> None:
        self._sqlite: Path | None = None
        self._postgresql: str | None = None
        self._lock = threading.Lock()

    def sqlite(self) -> Path:
        """The SQLite template file."""
        with self._lock:
            if self._sqlite is None:
                folder = tempfile.mkdtemp(prefix="celltrial-template-")
                atexit.register(shutil.rmtree, folder, True)  # also when used outside pytest
                path = Path(folder) / "celltrial.db"
                _migrate(f"sqlite:///{path}")
                self._sqlite = path
            return self._sqlite

    def postgresql(self, server_url: str) -> str:
        """The name of the PostgreSQL template database (nobody stays connected to it)."""
        with self._lock:
            if self._postgresql is None:
                name, url = create_database(server_url)
                self._postgresql = name
                _migrate(url)
            return self._postgresql

    def close(self, server_url: str | None) -> None:
        """Remove the templates (at the end of the run)."""
        with self._lock:
            if self._sqlite is not None:
                shutil.rmtree(self._sqlite.parent, ignore_errors=True)
                self._sqlite = None
            if self._postgresql is not None and server_url:
                drop_database(server_url, self._postgresql)
                self._postgresql = None


def _migrate(url: str) -> None:
    """Bring the database at ``url`` to the schema head, as ``init_study`` does."""
    from celltrial.store.database import open_engine, upgrade_database

    engine = open_engine(url)
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()  # on SQLite: the write-ahead log is folded into the file and removed


DROPPER = _Dropper()
TEMPLATES = MigratedTemplates()


def close_test_databases() -> None:
    """At the end of the run: wait for the background drops, then remove the templates."""
    try:
        DROPPER.wait()
    finally:
        TEMPLATES.close(os.environ.get(POSTGRES_ENV))


def migrated_default_database(study_dir: Path) -> None:
    """Put a copy of the migrated SQLite template where ``init_study(study_dir)`` makes its default
    database (``study_dir/celltrial.db``), so that it finds nothing to migrate; nothing when
    every study runs on PostgreSQL (``$CELLTRIAL_TEST_ALL_POSTGRESQL``: its database is made
    there)."""
    if ALL_POSTGRESQL:
        return
    study_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATES.sqlite(), study_dir / "celltrial.db")


@contextmanager
def fresh_database(backend: str, directory: Path, *, migrated: bool = False) -> Iterator[str]:
    """The URL of a new database on ``backend`` (dropped afterwards on PostgreSQL): empty, or with
    ``migrated`` already at the schema head (for a study made in it at once, see
    :class:`MigratedTemplates`). On SQLite the file is ``directory/celltrial.db``."""
    if backend == "sqlite":
        if ALL_POSTGRESQL:
            pytest.skip(SQLITE_SKIP_REASON)
        path = directory / "celltrial.db"
        if migrated:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(TEMPLATES.sqlite(), path)
        yield f"sqlite:///{path}"
        return
    server_url = _server_url()
    template = TEMPLATES.postgresql(server_url) if migrated else None
    name, url = create_database(server_url, template=template)
    try:
        yield url
    finally:
        DROPPER.drop(server_url, name)


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database per test, on each backend."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


class StudyDatabases:
    """Default study databases on PostgreSQL: a stand-in for ``store.database.database_url``.

    A study directory's default database (no ``--db``/``db_url``, no ``$CELLTRIAL_DATABASE_URL``)
    is a PostgreSQL database created on first use, its URL kept in the directory's
    ``.celltrial-test-database`` file, so ``open_study`` on the same directory, in this process or
    a forked one, finds the same database, and a directory deleted and made again (``demo
    --force``) gets a new one. A database is dropped when whatever made it ends: the fixture that
    was being set up (see ``pytest_fixture_setup`` in ``tests/conftest.py``), else the test (for a
    directory in its ``tmp_path``), else the session.
    """

    def __init__(self, server_url: str, original: Callable[..., str]) -> None:
        self.server_url = server_url
        self.original = original
        #: Fixtures being set up, innermost last (a database made meanwhile is dropped with it).
        self.fixtures: list = []
        #: The running test's tmp_path, if it has one.
        self.test_dir: Path | None = None
        #: Databases made by the running test in its tmp_path, dropped when the test ends.
        self.unowned: list[str] = []
        #: Databases made by a test elsewhere (a module's study made again), dropped at the end.
        self.leftover: list[str] = []

    def database_url(self, study_dir: str | Path, override: str | None = None) -> str:
        from celltrial.store.database import DATABASE_ENV

        directory = Path(study_dir)
        if override or os.environ.get(DATABASE_ENV) or not directory.is_dir():
            return self.original(study_dir, override)
        marker = directory / STUDY_DATABASE_FILE
        if marker.is_file():
            return marker.read_text(encoding="utf-8").strip()
        name, url = create_database(self.server_url)
        if self.fixtures:
            self.fixtures[-1].addfinalizer(lambda: drop_database(self.server_url, name))
        elif self.test_dir is not None and directory.resolve().is_relative_to(self.test_dir):
            self.unowned.append(name)
        else:
            self.leftover.append(name)
        marker.write_text(url + "\n", encoding="utf-8")
        return url

    def drop_unowned(self) -> None:
        while self.unowned:
            drop_database(self.server_url, self.unowned.pop())

    def drop_all(self) -> None:
        self.unowned += self.leftover
        self.leftover.clear()
        self.drop_unowned()
