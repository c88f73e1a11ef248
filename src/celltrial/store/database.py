"""Engines, schema migrations and audited sessions for a study database.

SQLite file inside the study directory by default; any SQLAlchemy URL through ``--db`` or the
``CELLTRIAL_DATABASE_URL`` environment variable. The schema is created and upgraded by Alembic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from celltrial.errors import StudyError
from celltrial.store.audit import StudySession

DATABASE_ENV = "CELLTRIAL_DATABASE_URL"
DATABASE_FILE = "celltrial.db"


def database_url(study_dir: str | Path, override: str | None = None) -> str:
    """The URL to use: ``override``, else ``$CELLTRIAL_DATABASE_URL``, else DIR/celltrial.db."""
    if override:
        return override
    if os.environ.get(DATABASE_ENV):
        return os.environ[DATABASE_ENV]
    return f"sqlite:///{(Path(study_dir) / DATABASE_FILE).resolve()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_engine(url: str) -> Engine:
    """Create an engine for ``url`` (foreign keys enforced on SQLite)."""
    try:
        server = make_url(url).get_backend_name() != "sqlite"
        # a database server: room for one connection per request the web app runs at once (its
        # requests run in up to 40 threads), instead of making the 16th wait for one
        engine = create_engine(url, **({"pool_size": 10, "max_overflow": 30} if server else {}))
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise StudyError(f"cannot use database URL {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", "celltrial.store:migrations")
    config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine) -> None:
    """Create the schema or bring it to the newest revision."""
    try:
        command.upgrade(_alembic_config(engine), "head")
    except OperationalError as exc:
        raise StudyError(f"cannot create or upgrade the database: {exc.orig}") from None


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest schema revision."""
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


@contextmanager
def study_session(
    engine: Engine, *, user: str, reason: str | None = None
) -> Iterator[StudySession]:
    """An audited session: commits on success, rolls everything back on any error."""
    session = StudySession(engine, info={"user": user, "reason": reason})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def current_user() -> str:
    """Who is writing: ``$CELLTRIAL_USER``, else the login name."""
    return os.environ.get("CELLTRIAL_USER") or os.environ.get("USER") or "unknown"
