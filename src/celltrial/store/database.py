"""Engines, schema migrations and audited sessions for a study database.

SQLite file inside the study directory by default; any SQLAlchemy URL through ``--db`` or the
``CELLTRIAL_DATABASE_URL`` environment variable. The schema is created and upgraded by Alembic.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from celltrial.errors import StudyBusy, StudyError
from celltrial.store.types import load_times_leniently
from celltrial.store.unreadable_times import remember_database
from celltrial.store.write_wait import say_if_write_waits

if TYPE_CHECKING:
    from alembic.config import Config

    from celltrial.store.audit import StudySession

DATABASE_ENV = "CELLTRIAL_DATABASE_URL"
DATABASE_FILE = "celltrial.db"
#: How long a write to a SQLite study waits for another writer to finish.
SQLITE_BUSY_SECONDS = 60
#: The newest schema revision (``migrations/versions``), so that a command that only reads a
#: study checks its database without importing Alembic (0.15 s); used only while it is the
#: revision of the newest migration file, else Alembic decides (and a test holds them equal).
SCHEMA_HEAD = "0011"
_VERSIONS = Path(__file__).parent / "migrations" / "versions"


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
    # a writer waits for another one (an import, the web app) instead of failing at once
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
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
    elif engine.dialect.driver == "psycopg":  # a stored time it cannot hold: read as unknown
        event.listen(engine, "connect", load_times_leniently)
    remember_database(url)
    return engine


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "celltrial.store:migrations")
    config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine) -> None:
    """Create the schema or bring it to the newest revision."""
    from alembic import command

    try:
        command.upgrade(_alembic_config(engine), "head")
    except OperationalError as exc:
        raise StudyError(f"cannot create or upgrade the database: {exc.orig}") from None


def check_database_exists(url: str) -> None:
    """Raise :class:`StudyError` when a SQLite ``url`` names no file, so that opening a study to
    read it never leaves a new, empty database behind (a mistyped ``--db``)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StudyError(f"cannot use database URL {url!r}: {exc}") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database.removeprefix("file:").split("?")[0])
    if not path.is_file():
        raise StudyError(
            f"no database at {path}: is --db (or $CELLTRIAL_DATABASE_URL) right? "
            "A new study is created with `celltrial init DIR`"
        )


def check_schema_current(engine: Engine, *, directory: str | Path) -> None:
    """Raise :class:`StudyError` unless the database's schema is the one this celltrial writes,
    naming the command that migrates it; read-only commands never migrate a database."""
    current = schema_revision(engine)
    if current == SCHEMA_HEAD and _schema_head_is_newest():
        return
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(engine))
    head = script.get_current_head()
    if current == head:
        return
    url = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise StudyError(f"database {url} holds no celltrial study; is --db right?")
    known = {revision.revision for revision in script.walk_revisions()}
    if current not in known:
        raise StudyError(
            f"database {url} was written by a newer celltrial (schema revision {current}); "
            "install that version to read it"
        )
    raise StudyError(
        f"database {url} was made by an older celltrial (schema revision {current}, this one "
        f"reads {head}): back it up, then upgrade it with `celltrial migrate {directory}`"
    )


def _schema_head_is_newest() -> bool:
    """Whether :data:`SCHEMA_HEAD` is the revision of the newest migration file."""
    names = sorted(p.name for p in _VERSIONS.glob("[0-9]*.py"))
    return bool(names) and names[-1].startswith(f"{SCHEMA_HEAD}_")


def schema_revision(engine: Engine) -> str | None:
    """The database's schema revision (None: no celltrial schema): Alembic's version table,
    read with plain SQL (Alembic itself is slow to import)."""
    from sqlalchemy import inspect, text

    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            versions = (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            )
            if len(versions) > 1:  # not one of celltrial's (its revisions are one line)
                from alembic.runtime.migration import MigrationContext

                return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise StudyError(f"cannot read the database: {exc.orig}") from None
    return versions[0] if versions else None


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest schema revision."""
    if _schema_head_is_newest():
        return schema_revision(engine) == SCHEMA_HEAD
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    return schema_revision(engine) == head


@contextmanager
def study_session(
    engine: Engine, *, user: str, reason: str | None = None
) -> Iterator[StudySession]:
    """An audited session: commits on success, rolls everything back on any error."""
    from celltrial.store.audit import StudySession  # the ORM: not needed to read a study

    say_if_write_waits(engine, busy_seconds=SQLITE_BUSY_SECONDS)
    session = StudySession(engine, info={"user": user, "reason": reason})
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise check_database_error(exc, engine) from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def check_database_error(exc: OperationalError, engine: Engine) -> Exception:
    """A database error a user can act on as a :class:`StudyError` (busy, disk full,
    read-only); any other as it is. Nothing of the failed transaction was stored."""
    text = str(exc.orig).lower()
    where = engine.url.render_as_string(hide_password=True)
    if "locked" in text or "busy" in text:
        return StudyBusy(
            f"the study database {where} stayed busy (another import or the web app was "
            f"writing) for {SQLITE_BUSY_SECONDS} s; nothing was stored: try again when it is done"
        )
    if "disk is full" in text or "no space left" in text or "disk full" in text:
        return StudyError(f"no space left on the disk of {where}; nothing was stored")
    if "readonly" in text or "read-only" in text:
        return StudyError(f"the study database {where} is read-only here; nothing was stored")
    return exc


def current_user() -> str:
    """Who is writing: ``$CELLTRIAL_USER``, else the login name."""
    return os.environ.get("CELLTRIAL_USER") or _login_name()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no $LOGNAME/$USER/$USERNAME and no password-database entry (a container)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
