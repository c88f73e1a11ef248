"""Reading an external cohort out of a study (read-only; the store does the querying)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from celltrial.errors import StudyError
from celltrial.store import tables
from celltrial.store.frames import read_observations, read_subjects
from celltrial.study import StudyHandle


def read_external_cohorts(study: StudyHandle) -> list[str]:
    """Labels of the study's external cohorts (sorted; empty when there are none).

    A one-line read that belongs in :mod:`celltrial.store.frames`; kept here until it moves.
    """
    subject = tables.subject.c  # (Core: the report's section process needs no ORM)
    statement = (
        select(subject.cohort)
        .where(subject.study_id == study.study_id, subject.cohort.is_not(None))
        .distinct()
    )
    with study.engine.connect() as connection:
        return sorted(str(c) for c in connection.scalars(statement))


def choose_cohort(study: StudyHandle, cohort: str | None) -> str:
    """``cohort`` if the study holds it, else the study's only external cohort."""
    known = read_external_cohorts(study)
    if cohort is not None:
        if cohort not in known:
            raise StudyError(
                f"study {study.study_id} has no external cohort {cohort!r} (it has: "
                f"{', '.join(known) or 'none'}); import one with `celltrial import DIR FILE "
                "--register-subjects --cohort NAME`"
            )
        return cohort
    if not known:
        raise StudyError(
            f"study {study.study_id} holds no external cohort yet; import one with "
            "`celltrial import DIR FILE --register-subjects --cohort NAME`"
        )
    if len(known) != 1:
        raise StudyError(
            f"study {study.study_id} has {len(known)} external cohorts "
            f"({', '.join(known) or 'none'}); name one with --cohort"
        )
    return known[0]


def read_external_frames(
    study: StudyHandle, cohort: str, *, tests: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(subjects, observations) of one external cohort; study days count from admission."""
    subjects = read_subjects(study.engine, study.study_id, cohort=cohort)
    observations = read_observations(
        study.engine,
        study.study_id,
        zone=study.protocol.study.zone,
        first_infusion=subjects.set_index("subject_id")["admitted"].dropna(),
        tests=tests,
        cohort=cohort,
    )
    return subjects, observations
