"""Where a study stands: cohort, infusions, visits and protocol deviations, as one result."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import pandas as pd

from celltrial.protocol import Protocol
from celltrial.protocol.deviations import DeviationRows, derive_deviation_rows, order_deviations
from celltrial.protocol.schedule import Schedule, derive_schedule
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
    #: the deviations by source, for an update (see :func:`summarize_study`)
    deviation_rows: DeviationRows | None = field(default=None, repr=False, compare=False)

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.infusions, self.visit_assessments, self.visits)


def summarize_study(
    protocol: Protocol,
    frames: StudyFrames,
    *,
    today: pd.Timestamp | None = None,
    previous: StudyOverview | None = None,
    changed: Collection[str] = (),
) -> StudyOverview:
    """Schedule status and deviations of every study subject as of ``today`` (default: now).

    ``previous``: an update — the overview of frames that differ from these only in those named
    in ``changed`` (and give every subject the same day 0). It is brought up to date as of its own
    ``today``: the parts derived from unchanged frames only are taken from it as they are.
    """
    if previous is not None:
        if today is not None and today != previous.today:
            raise ValueError("an update of an overview is as of that overview's today")
        today = previous.today
    elif today is None:
        today = pd.Timestamp.now(tz="UTC")
    reuse = previous is not None and previous.deviation_rows is not None
    schedule = derive_schedule(
        protocol,
        frames.subjects,
        frames.infusions,
        frames.observations,
        frames.clinical_status,
        frames.imaging,
        today=today,
        previous=previous.schedule if reuse else None,
        changed=changed,
    )
    infusion_status, visits = schedule.infusions, schedule.visits
    rows = derive_deviation_rows(
        protocol,
        subjects=frames.subjects,
        lots=frames.lots,
        infusions=frames.infusions,
        observations=frames.observations,
        clinical_status=frames.clinical_status,
        today=today,
        schedule=schedule,
        previous=previous.deviation_rows if reuse else None,
        changed=changed,
    )
    deviations = order_deviations(rows)
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
        deviation_rows=rows,
    )
