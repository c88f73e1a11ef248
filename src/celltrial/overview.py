"""Where a study stands: cohort, infusions, visits and protocol deviations, as one result."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from celltrial.protocol import Protocol
from celltrial.protocol.deviations import derive_deviations
from celltrial.protocol.schedule import derive_schedule
from celltrial.study import StudyFrames


@dataclass(frozen=True)
class StudyOverview:
    """The state of a study as of ``today``.

    ``summary`` has one row per subject (infusions given, visits done, deviations, outcome);
    the other frames hold the detail the status command and the report show.
    """

    today: pd.Timestamp
    summary: pd.DataFrame
    subjects: pd.DataFrame
    infusions: pd.DataFrame
    visits: pd.DataFrame
    visit_assessments: pd.DataFrame
    deviations: pd.DataFrame
    n: int
    method: str = (
        "Study days are calendar days in the study time zone from each subject's first infusion "
        "(day 0). Windows are inclusive. An assessment is matched to the visit whose window holds "
        "it, else to the nearest visit listing it (ties to the earlier visit)."
    )


def summarize_study(
    protocol: Protocol, frames: StudyFrames, *, today: pd.Timestamp | None = None
) -> StudyOverview:
    """Schedule status and deviations of every study subject as of ``today`` (default: now)."""
    today = pd.Timestamp.now(tz="UTC") if today is None else today
    schedule = derive_schedule(
        protocol,
        frames.subjects,
        frames.infusions,
        frames.observations,
        frames.clinical_status,
        frames.imaging,
        today=today,
    )
    infusion_status, visits = schedule.infusions, schedule.visits
    deviations = derive_deviations(
        protocol,
        subjects=frames.subjects,
        lots=frames.lots,
        infusions=frames.infusions,
        observations=frames.observations,
        clinical_status=frames.clinical_status,
        imaging=frames.imaging,
        today=today,
        schedule=schedule,
    )
    summary = frames.subjects[["subject_id", "sex", "age", "baseline_who_scale"]].copy()
    given = infusion_status[infusion_status["actual_day"].notna()].groupby("subject_id").size()
    summary["infusions"] = summary["subject_id"].map(given).fillna(0).astype(int)
    done = visits[visits["status"] == "done"].groupby("subject_id").size()
    summary["visits_complete"] = summary["subject_id"].map(done).fillna(0).astype(int)
    summary["deviations"] = (
        summary["subject_id"].map(deviations.groupby("subject_id").size()).fillna(0).astype(int)
    )
    summary["outcome"] = [
        "died" if pd.notna(d) else "discharged" if pd.notna(c) else "in hospital"
        for d, c in zip(frames.subjects["died"], frames.subjects["discharged"], strict=True)
    ]
    return StudyOverview(
        today=today,
        summary=summary,
        subjects=frames.subjects,
        infusions=infusion_status,
        visits=visits,
        visit_assessments=schedule.visit_assessments,
        deviations=deviations,
        n=len(frames.subjects),
    )
