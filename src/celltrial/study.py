"""Study directories: create one, open one, and read all of its data as frames.

A study directory holds its protocol (``protocol.yaml``, kept verbatim) and, by default, its SQLite
database (``celltrial.db``). The CLI and the web app are thin shells over these functions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError

from celltrial.errors import StudyError
from celltrial.protocol import Protocol, read_protocol, resolve_protocol
from celltrial.store import frames as store_frames
from celltrial.store import tables
from celltrial.store.database import (
    check_database_exists,
    check_schema_current,
    current_user,
    database_url,
    open_engine,
    schema_revision,
    study_session,
    upgrade_database,
)

PROTOCOL_FILE = "protocol.yaml"


@dataclass(frozen=True)
class StudyHandle:
    """An open study: its directory, validated protocol and database engine."""

    directory: Path
    protocol: Protocol
    engine: Engine
    url: str

    @property
    def study_id(self) -> str:
        return self.protocol.study.id


@dataclass(frozen=True)
class StudyFrames:
    """Every table of a study's own subjects (external cohorts excluded) as long frames."""

    subjects: pd.DataFrame
    lots: pd.DataFrame
    infusions: pd.DataFrame
    observations: pd.DataFrame
    adverse_events: pd.DataFrame
    clinical_status: pd.DataFrame
    imaging: pd.DataFrame


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def init_study(
    directory: str | Path,
    *,
    protocol: str | Path | None = None,
    db_url: str | None = None,
    user: str | None = None,
) -> StudyHandle:
    """Create a study directory with its protocol and an empty, migrated database."""
    directory = Path(directory)
    if (directory / PROTOCOL_FILE).exists():
        raise StudyError(
            f"{directory} already holds a study ({PROTOCOL_FILE} exists); "
            "choose a new directory or open this one"
        )
    from celltrial.store.models import Site, Study

    validated, text = resolve_protocol(protocol)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PROTOCOL_FILE).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StudyError(f"cannot create study directory {directory}: {exc}") from None
    url = database_url(directory, db_url)
    engine = open_engine(url)
    upgrade_database(engine)
    with study_session(engine, user=user or current_user(), reason="study created") as session:
        if session.get(Study, validated.study.id) is not None:
            raise StudyError(f"database {url} already holds study {validated.study.id!r}")
        session.add(
            Study(
                id=validated.study.id,
                title=validated.study.title,
                protocol_yaml=text,
                protocol_sha256=_sha256(text),
                created_at=datetime.now(UTC),
            )
        )
        session.flush()
        session.add(Site(study_id=validated.study.id, code="01", name="Site 01"))
    return StudyHandle(directory=directory, protocol=validated, engine=engine, url=url)


def open_study(
    directory: str | Path,
    *,
    db_url: str | None = None,
    user: str | None = None,
    read_only: bool = False,
) -> StudyHandle:
    """Open an existing study; the database schema is upgraded if an older celltrial made it.

    If the protocol file was edited since it was last recorded, the stored copy is updated
    through the audited write path, so the audit log shows every protocol version.
    ``read_only`` (the commands that only read): the database must exist at the current schema
    (else a message names the command that migrates it) and nothing is written to it.
    """
    directory = Path(directory)
    protocol_path = directory / PROTOCOL_FILE
    if not protocol_path.exists():
        raise StudyError(
            f"{directory} is not a study directory (no {PROTOCOL_FILE}); "
            "create one with `celltrial init DIR`"
        )
    protocol = read_protocol(protocol_path)
    text = protocol_path.read_text(encoding="utf-8")
    url = database_url(directory, db_url)
    if read_only:
        check_database_exists(url)
        engine = open_engine(url)
        check_schema_current(engine, directory=directory)
        _check_holds_study(engine, url, protocol.study.id)
        return StudyHandle(directory=directory, protocol=protocol, engine=engine, url=url)
    from celltrial.store.models import Study  # the ORM: only to write (not to read a study)

    engine = open_engine(url)
    upgrade_database(engine)
    try:
        with study_session(
            engine, user=user or current_user(), reason=f"{PROTOCOL_FILE} changed"
        ) as session:
            study = session.get(Study, protocol.study.id)
            if study is None:
                known = list(session.scalars(select(Study.id)))
                raise StudyError(
                    f"database {url} holds no study {protocol.study.id!r} "
                    f"(it holds: {', '.join(known) or 'none'}); is --db right?"
                )
            if study.protocol_sha256 != _sha256(text):
                study.protocol_yaml = text
                study.protocol_sha256 = _sha256(text)
                study.title = protocol.study.title
    except OperationalError as exc:
        raise StudyError(f"cannot read database {url}: {exc.orig}") from None
    return StudyHandle(directory=directory, protocol=protocol, engine=engine, url=url)


def migrate_study(directory: str | Path, *, db_url: str | None = None) -> tuple[str, str]:
    """Bring a study's database to this celltrial's schema; (revision before, revision after)."""
    directory = Path(directory)
    if not (directory / PROTOCOL_FILE).exists():
        raise StudyError(f"{directory} is not a study directory (no {PROTOCOL_FILE})")
    url = database_url(directory, db_url)
    check_database_exists(url)
    engine = open_engine(url)
    before = schema_revision(engine)
    upgrade_database(engine)
    return before or "none", schema_revision(engine) or "none"


def _check_holds_study(engine: Engine, url: str, study_id: str) -> None:
    try:
        with engine.connect() as connection:
            known = list(connection.scalars(select(tables.study.c.id)))
    except OperationalError as exc:
        raise StudyError(f"cannot read database {url}: {exc.orig}") from None
    if study_id not in known:
        raise StudyError(
            f"database {url} holds no study {study_id!r} "
            f"(it holds: {', '.join(known) or 'none'}); is --db right?"
        )


def read_study_frames(study: StudyHandle) -> StudyFrames:
    """All of a study's own data as frames, study days in the protocol's time zone."""
    zone = study.protocol.study.zone
    infusions = store_frames.read_infusions(study.engine, study.study_id, zone=zone)
    first = store_frames.first_infusions(infusions)
    kwargs = {"zone": zone, "first_infusion": first}
    return StudyFrames(
        subjects=store_frames.read_subjects(study.engine, study.study_id),
        lots=store_frames.read_lots(study.engine, study.study_id),
        infusions=infusions,
        observations=store_frames.read_observations(study.engine, study.study_id, **kwargs),
        adverse_events=store_frames.read_adverse_events(study.engine, study.study_id, **kwargs),
        clinical_status=store_frames.read_clinical_status(study.engine, study.study_id, **kwargs),
        imaging=store_frames.read_imaging(study.engine, study.study_id, **kwargs),
    )
