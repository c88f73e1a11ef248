"""Everything recorded about one subject, read in one database session.

The subject page and its API read show all of a subject's records at once; one session (one
connection, one subject look-up) for all of them instead of one per kind of record.
"""

from __future__ import annotations

from dataclasses import dataclass

from celltrial.services.adverse_events import AdverseEventRecord, subject_events
from celltrial.services.clinical_status import ClinicalStatusRecord, subject_clinical_status
from celltrial.services.ct_scans import CtScanRecord, list_ct_scans
from celltrial.services.infusions import InfusionRecord, find_subject, subject_infusions
from celltrial.services.queries import QueryRecord, subject_queries
from celltrial.services.signatures import SignatureRecord, subject_signatures
from celltrial.services.vital_signs import VitalSignsRecord, subject_vital_signs
from celltrial.store.database import study_session
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


def read_subject_records(
    study: StudyHandle, code: str, *, with_review: bool = False
) -> SubjectRecords:
    """The subject's infusions, adverse events, vital-sign rounds, clinical statuses and CT
    scans; ``with_review``: also its data queries and casebook signatures.
    :class:`~celltrial.services.errors.NotFound` for an unknown subject."""
    with study_session(study.engine, user="read") as session:
        subject = find_subject(session, study, code)
        infusions = subject_infusions(session, subject)
        events = subject_events(session, subject)
        rounds = subject_vital_signs(session, subject)
        statuses = subject_clinical_status(session, subject)
        queries = subject_queries(session, subject) if with_review else []
        signatures = subject_signatures(session, subject) if with_review else []
    return SubjectRecords(
        infusions=infusions,
        adverse_events=events,
        vital_signs=rounds,
        clinical_status=statuses,
        ct_scans=list_ct_scans(study, code),  # from the analysed state (most subjects: none)
        queries=queries,
        signatures=signatures,
    )
