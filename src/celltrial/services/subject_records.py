"""Everything recorded about one subject, read in one database session and kept until the
subject's data change.

The subject page and its API read show all of a subject's records at once: one session (one
connection, one subject look-up) for all of them instead of one per kind of record. They are
kept between requests: each audit event names the subject whose data it changed, so one look at
the events since the records were read tells whether they still hold (events of other subjects
leave them as they were; a change that is not one subject's, such as a lot or an import, makes
them be read again). Audit event ids ascend in commit order (:mod:`celltrial.store.audit`), so
no change is missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select

from celltrial.services.adverse_events import AdverseEventRecord, subject_events
from celltrial.services.clinical_status import ClinicalStatusRecord, subject_clinical_status
from celltrial.services.ct_scans import CtScanRecord, subject_ct_scans
from celltrial.services.infusions import InfusionRecord, find_subject, subject_infusions
from celltrial.services.queries import QueryRecord, subject_queries
from celltrial.services.signatures import SignatureRecord, subject_signatures
from celltrial.services.vital_signs import VitalSignsRecord, subject_vital_signs
from celltrial.store.database import study_session
from celltrial.store.models import AuditEvent
from celltrial.study import StudyHandle


@dataclass(frozen=True)
class SubjectRecords:
    """A subject's records, each kind in the order its own listing gives."""

    infusions: list[InfusionRecord]
    adverse_events: list[AdverseEventRecord]
    vital_signs: list[VitalSignsRecord]
    clinical_status: list[ClinicalStatusRecord]
    ct_scans: list[CtScanRecord]
    #: read only when asked for (``with_review``), else empty
    queries: list[QueryRecord]
    signatures: list[SignatureRecord]


#: Records read: (study URL, subject code, with review) -> (the newest audit event they
#: include, the subject's id, the records). At most one entry per subject and kind.
_kept: dict[tuple[str, str, bool], tuple[int, int, SubjectRecords]] = {}


def read_subject_records(
    study: StudyHandle, code: str, *, with_review: bool = False
) -> SubjectRecords:
    """The subject's infusions, adverse events, vital-sign rounds, clinical statuses and CT
    scans; ``with_review``: also its data queries and casebook signatures.
    :class:`~celltrial.services.errors.NotFound` for an unknown subject."""
    key = (study.url, code, with_review)
    with study_session(study.engine, user="read") as session:
        kept = _kept.get(key)
        if kept is not None:
            seen, subject_id, records = kept
            # the events since: the newest, and how many may be this subject's
            own = or_(AuditEvent.subject_id.is_(None), AuditEvent.subject_id == subject_id)
            newest, touching = session.execute(
                select(func.max(AuditEvent.id), func.count().filter(own)).where(
                    AuditEvent.id > seen
                )
            ).one()
            if not touching:
                if newest is not None:  # other subjects' changes: look only after them next
                    _kept[key] = (newest, subject_id, records)
                return records
        # the newest event first: the records read after it hold it (or newer)
        newest = session.scalar(select(func.max(AuditEvent.id))) or 0
        subject = find_subject(session, study, code)
        subject_id = subject.id
        infusions = subject_infusions(session, subject)
        started = [i.started_at for i in infusions if i.started_at is not None]
        records = SubjectRecords(
            infusions=infusions,
            adverse_events=subject_events(session, subject),
            vital_signs=subject_vital_signs(session, subject),
            clinical_status=subject_clinical_status(session, subject),
            # study days from the subject's own first infusion (day 0), read here as well
            ct_scans=subject_ct_scans(
                session, subject, min(started, default=None), study.protocol.study.zone
            ),
            queries=subject_queries(session, subject) if with_review else [],
            signatures=subject_signatures(session, subject) if with_review else [],
        )
    _kept[key] = (newest, subject_id, records)
    return records
