"""ORM models of the study database (SQLAlchemy 2).

Only :mod:`celltrial.store` uses these; analyses receive pandas frames (see
:mod:`celltrial.frames`).
Every row created by a bulk import keeps its ``import_batch_id`` and ``source_row``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, relationship

from celltrial.store.types import FiniteJSON, UTCDateTime


class Base(DeclarativeBase):
    """Base of every celltrial table."""

    # float is named: SQLAlchemy 2.1 maps it to Double (as the migrations do), 2.0 to Float
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        float: Double(),
        datetime: UTCDateTime(),
        dict[str, Any]: FiniteJSON(),
    }


class _Sourced:
    """Columns that trace a row back to the import batch and source row it came from."""

    import_batch_id: Mapped[int | None] = mapped_column(ForeignKey("import_batch.id"), index=True)
    source_row: Mapped[int | None]


class _Versioned:
    """Optimistic locking: ``version`` grows by one with every update, and an update whose row
    changed since it was read fails (:class:`sqlalchemy.orm.exc.StaleDataError`)."""

    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}


class Study(Base):
    __tablename__ = "study"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    protocol_yaml: Mapped[str] = mapped_column(Text)
    protocol_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Site(Base):
    __tablename__ = "site"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(Text, default="")


class Subject(_Versioned, _Sourced, Base):
    """A pseudonymous participant (or, with a ``cohort`` label, an external-cohort patient).

    A subject is identified by (study, cohort, code): the study's own subjects (cohort NULL) are
    one namespace, each external cohort its own, so two hospital exports each numbered 1…N stay
    two sets of patients. SQL treats NULLs as distinct in a unique constraint, hence the partial
    unique index for the study's own subjects.
    """

    __tablename__ = "subject"
    __table_args__ = (
        UniqueConstraint("study_id", "cohort", "code", name="uq_subject_study_cohort_code"),
        Index(
            "uq_subject_study_code_own",
            "study_id",
            "code",
            unique=True,
            sqlite_where=text("cohort IS NULL"),
            postgresql_where=text("cohort IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"))
    code: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))
    cohort: Mapped[str | None] = mapped_column(String(64), index=True)
    sex: Mapped[str | None] = mapped_column(String(1))
    age: Mapped[float | None]
    weight_kg: Mapped[float | None]
    height_cm: Mapped[float | None]
    enrolled_at: Mapped[datetime | None]
    admitted_at: Mapped[datetime | None]
    baseline_who_scale: Mapped[int | None]
    discharged_at: Mapped[datetime | None]
    died_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]

    site: Mapped[Site | None] = relationship()


class ProductLot(_Versioned, Base):
    """A released (or not) lot of the cell product with its quality-control results."""

    __tablename__ = "product_lot"
    __table_args__ = (UniqueConstraint("study_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"))
    code: Mapped[str] = mapped_column(String(64))
    donor_id: Mapped[str | None] = mapped_column(String(64))
    tissue_source: Mapped[str | None] = mapped_column(Text)
    manufactured_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    total_cells: Mapped[float | None]
    viability_pct: Mapped[float | None]
    markers_pct: Mapped[dict[str, Any]] = mapped_column(FiniteJSON, default=dict)
    sterility: Mapped[str | None] = mapped_column(String(32))
    mycoplasma: Mapped[str | None] = mapped_column(String(32))
    endotoxin_eu_per_ml: Mapped[float | None]
    release_status: Mapped[str] = mapped_column(String(16), default="quarantine")


class Infusion(_Versioned, Base):
    """One infusion of the product to a subject."""

    __tablename__ = "infusion"
    __table_args__ = (UniqueConstraint("subject_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    number: Mapped[int]
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("product_lot.id"))
    vial_id: Mapped[str | None] = mapped_column(String(64))
    planned_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    cells_given: Mapped[float | None]
    volume_ml: Mapped[float | None]
    rate_ml_per_h: Mapped[float | None]
    premedication: Mapped[str | None] = mapped_column(Text)
    completed: Mapped[bool] = mapped_column(Boolean, default=True)
    stop_reason: Mapped[str | None] = mapped_column(Text)
    #: Bedside record: a reaction during the infusion (None: not recorded) and what it was.
    reaction: Mapped[bool | None]
    reaction_description: Mapped[str | None] = mapped_column(Text)

    subject: Mapped[Subject] = relationship()
    lot: Mapped[ProductLot | None] = relationship()


class Observation(_Versioned, _Sourced, Base):
    """One lab result or vital sign: raw text as received plus the canonical value and unit."""

    __tablename__ = "observation"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    time: Mapped[datetime]
    test: Mapped[str] = mapped_column(String(16), index=True)
    raw_value: Mapped[str | None] = mapped_column(String(64))
    raw_unit: Mapped[str | None] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(32))
    qualifier: Mapped[str] = mapped_column(String(2), default="")
    ref_low: Mapped[float | None]
    ref_high: Mapped[float | None]
    specimen: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(Text)
    #: Validation warnings the stored value carries (comma-separated kinds, e.g. "censored").
    flags: Mapped[str | None] = mapped_column(String(64))


#: What an import or a load gives of each result besides its subject, in this order: the
#: columns of validation's rows (``subject`` first), of an import's stage and of a demo load.
RESULT_COLUMNS: tuple[str, ...] = (
    "time",
    "test",
    "raw_value",
    "raw_unit",
    "value",
    "unit",
    "qualifier",
    "ref_low",
    "ref_high",
    "specimen",
    "source_row",
    "flags",
)


class AdverseEvent(_Versioned, _Sourced, Base):
    __tablename__ = "adverse_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    term: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    onset_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    grade: Mapped[int | None]
    serious: Mapped[bool] = mapped_column(Boolean, default=False)
    serious_criteria: Mapped[str | None] = mapped_column(Text)
    relatedness: Mapped[str | None] = mapped_column(String(32))
    expected: Mapped[bool | None]
    action: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))


class ClinicalStatus(_Versioned, _Sourced, Base):
    """Daily clinical status: WHO clinical progression scale (0–10), oxygen support, FiO2."""

    __tablename__ = "clinical_status"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    time: Mapped[datetime]
    who_scale: Mapped[int | None]
    oxygen_support: Mapped[str | None] = mapped_column(String(64))
    fio2: Mapped[float | None]


class ImagingStudy(Base):
    __tablename__ = "imaging_study"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    time: Mapped[datetime]
    modality: Mapped[str] = mapped_column(String(8), default="CT")
    series_uid: Mapped[str | None] = mapped_column(String(128))
    path: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(64))


class CtResult(Base):
    __tablename__ = "ct_result"

    id: Mapped[int] = mapped_column(primary_key=True)
    imaging_study_id: Mapped[int] = mapped_column(ForeignKey("imaging_study.id"), index=True)
    method: Mapped[str] = mapped_column(Text)
    lung_volume_ml: Mapped[float | None]
    ggo_volume_ml: Mapped[float | None]
    consolidation_volume_ml: Mapped[float | None]
    involvement_pct: Mapped[float | None]
    zones: Mapped[dict[str, Any]] = mapped_column(FiniteJSON, default=dict)
    score: Mapped[float | None]


class ImportBatch(Base):
    """One bulk load (file import or simulation), audited as a whole."""

    __tablename__ = "import_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime]
    user: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(FiniteJSON, default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(FiniteJSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)


class AuditEvent(Base):
    """Append-only record of every change to study data (the database refuses edits to it)."""

    __tablename__ = "audit_event"
    #: the trail of one record (audit_trail.read_audit_trail) without scanning the whole log
    __table_args__ = (Index("ix_audit_event_record", "table_name", "row_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime]
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # insert | update | delete | import
    table_name: Mapped[str] = mapped_column(String(255))
    row_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(FiniteJSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(FiniteJSON)
    reason: Mapped[str | None] = mapped_column(Text)
    import_batch_id: Mapped[int | None] = mapped_column(ForeignKey("import_batch.id"))
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    #: the subject whose data the change is (``subject.id``); None when it is not one subject's
    #: (lots, accounts, imports) or was not recorded (events before schema revision 0008)
    subject_id: Mapped[int | None]
    #: SHA-256 over the previous event's chain hash and this event's content
    #: (store.audit.compute_chain_hash): an edit, removal or insertion breaks the chain
    chain_hash: Mapped[str | None] = mapped_column(String(64))


class DataQuery(_Versioned, Base):
    """A data manager's question about one stored value (a field of an observation, infusion or
    adverse event): ``open`` → ``answered`` by the site → ``closed`` by the data manager. Each step
    is an audited update of this row, so the audit log holds the query's history."""

    __tablename__ = "data_query"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    table_name: Mapped[str] = mapped_column(String(32))
    row_id: Mapped[int]
    field: Mapped[str] = mapped_column(String(64))
    #: The value as it was when the query was raised (text).
    value_text: Mapped[str | None] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    raised_by: Mapped[str] = mapped_column(String(64))
    raised_at: Mapped[datetime]
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(64))
    answered_at: Mapped[datetime | None]
    close_note: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None]


class CasebookSignature(Base):
    """An investigator's electronic signature of one subject's casebook: who (user name and
    printed name), when, what it means, and a SHA-256 of the signed data. It stands while the
    subject's data still hash to ``data_sha256``; any later change invalidates it."""

    __tablename__ = "casebook_signature"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subject.id"), index=True)
    signed_by: Mapped[str] = mapped_column(String(64))
    signer_name: Mapped[str] = mapped_column(Text)
    signer_role: Mapped[str] = mapped_column(String(32))
    meaning: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[datetime]
    data_sha256: Mapped[str] = mapped_column(String(64))


class AppUser(Base):
    """A person who signs in to the web app, with one role (see :mod:`celltrial.services.accounts`).

    Not study data: account changes are written to the audit log by the accounts service, without
    the password hash.
    """

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(Text, default="")
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: set by an administrator (new account, reset): until the user has chosen a password of
    #: their own, their sessions reach only the change-password page
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    password_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser or API client; the cookie holds a token whose SHA-256 is ``id``."""

    __tablename__ = "web_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class SignInThrottle(Base):
    """Failed sign-ins counted per client address (``address:<ip>``), per user name
    (``account:<name>``, known or not) and per pair (``pair:<name> <ip>``), with the time until
    which attempts are refused (see :mod:`celltrial.services.sign_in`). Not study data."""

    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(index=True)
    blocked_until: Mapped[datetime | None]


#: Tables that are not study data: the audit log, batches, accounts, sign-in sessions and the
#: sign-in throttle (account changes and sign-ins are written to the audit log by the services).
UNAUDITED_TABLES = frozenset(
    {"audit_event", "import_batch", "app_user", "web_session", "sign_in_throttle"}
)

#: Tables whose rows are study data (changes audited).
AUDITED_TABLES = frozenset(
    t.name for t in Base.metadata.sorted_tables if t.name not in UNAUDITED_TABLES
)
