"""Protocol deviations: what happened that the protocol did not plan.

Kinds (``kind`` column): ``infusion_missed``, ``infusion_late``, ``infusion_early``,
``infusion_incomplete``, ``dose_outside_tolerance``, ``dose_not_recorded``, ``lot_not_released``,
``lot_fails_release``, ``lot_expired``, ``endotoxin_above_limit``, ``visit_missed``,
``assessment_missed``, ``assessment_out_of_window``, ``daily_assessment_missed``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.protocol.model import Daily, Protocol, ReleaseCriteria
from celltrial.protocol.release import check_lot_release, compute_endotoxin_dose
from celltrial.protocol.schedule import Schedule, derive_schedule, group_lists, subject_days

DEVIATION_COLUMNS = ("subject_id", "study_day", "kind", "category", "what", "detail")


#: The study frames (:class:`~celltrial.study.StudyFrames` names) each source of deviations is
#: derived from, besides the protocol, today and the schedule (which is derived from the same).
DEVIATION_INPUTS = {
    "infusion": frozenset({"subjects", "lots", "infusions"}),
    "visit": frozenset({"subjects", "observations", "clinical_status", "imaging"}),
    "daily": frozenset({"subjects", "observations", "clinical_status"}),
}


@dataclass(frozen=True)
class DeviationRows:
    """The deviations of each source (infusions and their lots, visits, daily assessments)
    before they are put in order: kept so that an update re-derives only the sources whose
    frames changed."""

    infusion: list[dict]
    visit: list[dict]
    daily: list[dict]


def derive_deviations(
    protocol: Protocol,
    *,
    subjects: pd.DataFrame,
    lots: pd.DataFrame,
    infusions: pd.DataFrame,
    observations: pd.DataFrame,
    clinical_status: pd.DataFrame,
    imaging: pd.DataFrame,
    today: pd.Timestamp,
    schedule: Schedule | None = None,
) -> pd.DataFrame:
    """Every protocol deviation of every treated subject, as of ``today``.

    ``schedule`` is :func:`~celltrial.protocol.schedule.derive_schedule` of the same frames and
    ``today`` when the caller has it already (it is derived otherwise).
    """
    if schedule is None:
        schedule = derive_schedule(
            protocol, subjects, infusions, observations, clinical_status, imaging, today=today
        )
    rows = derive_deviation_rows(
        protocol,
        subjects=subjects,
        lots=lots,
        infusions=infusions,
        observations=observations,
        clinical_status=clinical_status,
        today=today,
        schedule=schedule,
    )
    return order_deviations(rows)


def derive_deviation_rows(
    protocol: Protocol,
    *,
    subjects: pd.DataFrame,
    lots: pd.DataFrame,
    infusions: pd.DataFrame,
    observations: pd.DataFrame,
    clinical_status: pd.DataFrame,
    today: pd.Timestamp,
    schedule: Schedule,
    previous: DeviationRows | None = None,
    changed: Collection[str] = (),
) -> DeviationRows:
    """The deviations of each source (see :func:`derive_deviations`).

    ``previous``: the rows, as of the same ``today``, of frames that differ from these only in
    those named in ``changed``; a source derived from none of them is taken from it as it is.
    """

    def kept(source: str) -> bool:
        return previous is not None and not DEVIATION_INPUTS[source] & set(changed)

    return DeviationRows(
        infusion=previous.infusion
        if kept("infusion")
        else _infusion_deviations(protocol, subjects, lots, infusions, schedule.infusions),
        visit=previous.visit
        if kept("visit")
        else _visit_deviations(schedule.visit_assessments, schedule.visits),
        daily=previous.daily
        if kept("daily")
        else _daily_deviations(protocol, subjects, observations, clinical_status, today),
    )


def order_deviations(rows: DeviationRows) -> pd.DataFrame:
    """One frame of all deviations, by subject, study day and kind."""
    frame = pd.DataFrame(rows.infusion + rows.visit + rows.daily, columns=list(DEVIATION_COLUMNS))
    frame["study_day"] = frame["study_day"].astype("Int64")
    return frame.sort_values(["subject_id", "study_day", "kind"], kind="stable").reset_index(
        drop=True
    )


def _infusion_deviations(
    protocol: Protocol,
    subjects: pd.DataFrame,
    lots: pd.DataFrame,
    infusions: pd.DataFrame,
    status: pd.DataFrame,
) -> list[dict]:
    """Missed, late and early infusions (from ``status``), then each given infusion's dose,
    completeness and lot."""
    rows: list[dict] = []
    regimen = protocol.regimen
    for item in status[status["status"].isin(["missed", "late", "early"])].itertuples():
        where = {"subject_id": item.subject_id, "category": "infusion"}
        label = f"infusion {item.number}"
        if item.status == "missed":
            rows.append(
                where
                | {
                    "study_day": item.planned_day,
                    "kind": "infusion_missed",
                    "what": f"{label} not given",
                    "detail": f"planned day {item.planned_day}, window closed on "
                    f"day {item.last_day}",
                }
            )
        elif item.status in {"late", "early"}:
            rows.append(
                where
                | {
                    "study_day": item.actual_day,
                    "kind": f"infusion_{item.status}",
                    "what": f"{label} {item.status}",
                    "detail": f"given on day {item.actual_day}, planned day "
                    f"{item.planned_day} (window {item.first_day} to "
                    f"{item.last_day})",
                }
            )
    weights = dict(zip(subjects["subject_id"], subjects["weight_kg"], strict=True))
    checked = _checked_lots(lots, infusions["lot_id"], protocol.product.release)
    for item in infusions.itertuples():
        where = {"subject_id": item.subject_id, "study_day": item.study_day, "category": "infusion"}
        label = f"infusion {item.number}"
        weight = weights.get(item.subject_id)
        weight = None if pd.isna(weight) else float(weight)
        if not item.completed:
            rows.append(
                where
                | {
                    "kind": "infusion_incomplete",
                    "what": f"{label} stopped early",
                    "detail": item.stop_reason or "no reason recorded",
                }
            )
        if pd.isna(item.cells_given):
            rows.append(
                where
                | {
                    "kind": "dose_not_recorded",
                    "what": f"{label}: cells given not recorded",
                    "detail": "",
                }
            )
        else:
            ok = regimen.dose.within_tolerance(float(item.cells_given), weight)
            target = regimen.dose.target_cells(weight)
            if ok is False:
                rows.append(
                    where
                    | {
                        "kind": "dose_outside_tolerance",
                        "what": f"{label}: dose outside ±{regimen.dose.tolerance_pct:g} %",
                        "detail": f"{item.cells_given:.3g} cells given, target {target:.3g}",
                    }
                )
            elif ok is None:
                rows.append(
                    where
                    | {
                        "kind": "dose_not_recorded",
                        "what": f"{label}: per-kg dose cannot be checked",
                        "detail": "body weight not recorded",
                    }
                )
        if pd.isna(item.lot_id) or item.lot_id not in checked:
            rows.append(
                where
                | {
                    "kind": "lot_not_released",
                    "what": f"{label}: lot not recorded",
                    "detail": "no lot linked to the infusion",
                }
            )
            continue
        lot, failures = checked[item.lot_id]
        if lot["release_status"] != "released":
            rows.append(
                where
                | {
                    "kind": "lot_not_released",
                    "what": f"{label}: lot {item.lot_id} not released",
                    "detail": f"release status {lot['release_status']!r}",
                }
            )
        if failures:
            rows.append(
                where
                | {
                    "kind": "lot_fails_release",
                    "what": f"{label}: lot {item.lot_id} fails release criteria",
                    "detail": "; ".join(failures),
                }
            )
        if (
            pd.notna(lot.get("expires"))
            and pd.notna(item.start_time)
            and item.start_time > lot["expires"]
        ):
            rows.append(
                where
                | {
                    "kind": "lot_expired",
                    "what": f"{label}: lot {item.lot_id} expired",
                    "detail": f"expired {lot['expires']:%Y-%m-%d}",
                }
            )
        duration_h = (
            (item.end_time - item.start_time).total_seconds() / 3600
            if pd.notna(item.end_time) and pd.notna(item.start_time)
            else None
        )
        endotoxin = lot.get("endotoxin_eu_per_ml")
        if (
            None not in (weight, duration_h)
            and pd.notna(endotoxin)
            and pd.notna(item.volume_ml)
            and duration_h > 0
        ):
            dose = compute_endotoxin_dose(
                float(endotoxin), float(item.volume_ml), weight, duration_h
            )
            limit = protocol.product.release.endotoxin_max_eu_per_kg_per_h
            if dose > limit:
                rows.append(
                    where
                    | {
                        "kind": "endotoxin_above_limit",
                        "what": f"{label}: endotoxin {dose:.2f} EU/kg/h",
                        "detail": f"limit {limit:g} EU/kg/h",
                    }
                )
    return rows


def _checked_lots(
    lots: pd.DataFrame, lot_ids: pd.Series, criteria: ReleaseCriteria
) -> dict[str, tuple[dict, list[str]]]:
    """Each lot of ``lot_ids`` that ``lots`` holds: its fields, and every way it fails the
    release ``criteria`` (checked once per lot, not once per infusion)."""
    by_id = lots.set_index("lot_id") if len(lots) else lots
    checked = {}
    for lot_id in lot_ids.dropna().unique():
        if lot_id in by_id.index:
            lot = by_id.loc[lot_id].to_dict()
            checked[lot_id] = (lot, check_lot_release(lot, criteria))
    return checked


def _visit_deviations(visit_status: pd.DataFrame, visits: pd.DataFrame) -> list[dict]:
    """Whole visits missed, then per visit the assessments missed and those out of window
    (those of a missed visit are not repeated). ``visits`` is the summary of ``visit_status``."""
    if visit_status.empty:
        return []
    missed_visits = visits[visits["status"] == "missed"]
    missed_keys = set(zip(missed_visits["subject_id"], missed_visits["visit_index"], strict=True))
    rows = [
        {
            "subject_id": item.subject_id,
            "study_day": item.day,
            "kind": "visit_missed",
            "category": "visit",
            "what": f"{item.visit} missed",
            "detail": f"none of {item.n_assessments} assessments done",
        }
        for item in missed_visits.itertuples()
    ]
    flagged = visit_status[visit_status["status"].isin(["missed", "out_of_window"])]
    grouped = flagged.groupby(["subject_id", "visit_index", "status"], sort=True)
    groups = grouped[["visit", "day", "first_day", "last_day"]].first().reset_index()
    for group, names, matched_days in zip(
        groups.itertuples(),
        group_lists(grouped, flagged["assessment"]),
        group_lists(grouped, flagged["actual_days"]),
        strict=True,
    ):
        if (group.subject_id, group.visit_index) in missed_keys:
            continue
        window = f"window day {group.first_day} to {group.last_day}"
        assessments = ", ".join(names)
        if group.status == "missed":
            rows.append(
                {
                    "subject_id": group.subject_id,
                    "study_day": group.day,
                    "kind": "assessment_missed",
                    "category": "visit",
                    "what": f"{group.visit}: {assessments} not done",
                    "detail": window,
                }
            )
        else:
            days = sorted({d for days in matched_days for d in days})
            rows.append(
                {
                    "subject_id": group.subject_id,
                    "study_day": days[0] if days else group.day,
                    "kind": "assessment_out_of_window",
                    "category": "visit",
                    "what": f"{group.visit}: {assessments} out of window",
                    "detail": f"done on day {', '.join(map(str, days))}; {window}",
                }
            )
    return rows


def _daily_deviations(
    protocol: Protocol,
    subjects: pd.DataFrame,
    observations: pd.DataFrame,
    clinical_status: pd.DataFrame,
    today: pd.Timestamp,
) -> list[dict]:
    """Per treated subject and daily assessment, the expected days it is missing on."""
    daily = protocol.daily
    if daily is None:
        return []
    treated = subjects.dropna(subset=["first_infusion"])
    assessments = list(daily.vitals) + (["WHO"] if daily.clinical_status else [])
    seen = observations[["subject_id", "test", "study_day"]].rename(columns={"test": "assessment"})
    if daily.clinical_status and len(clinical_status):
        seen = pd.concat(
            [seen, clinical_status[["subject_id", "study_day"]].assign(assessment="WHO")]
        )
    days = np.arange(daily.from_day, daily.to_day + 1)
    last = _last_daily_days(daily, treated, today, protocol.study.timezone)
    expected = days[None, None, :] <= last[:, None, None]  # subject × 1 × day
    seen_on = _seen_on_days(seen.dropna(), treated["subject_id"], assessments, days)
    missing = expected & ~seen_on  # subject × assessment × day
    rows: list[dict] = []
    for subject, assessment in zip(*np.nonzero(missing.any(axis=2)), strict=True):
        missed = days[missing[subject, assessment]].tolist()
        rows.append(
            {
                "subject_id": treated["subject_id"].iloc[subject],
                "study_day": missed[0],
                "kind": "daily_assessment_missed",
                "category": "daily",
                "what": f"daily {assessments[assessment]} missing on {len(missed)} day(s)",
                "detail": "days " + ", ".join(map(str, missed)),
            }
        )
    return rows


def _last_daily_days(
    daily: Daily, treated: pd.DataFrame, today: pd.Timestamp, zone: str
) -> np.ndarray:
    """Per treated subject, the last day daily assessments are expected on: the earliest of the
    day before ``today``, ``daily.to_day``, the discharge day and the day before death or
    withdrawal."""
    days = subject_days(treated, today, zone, ends=("discharged", "died", "withdrawn"))
    days = days.astype(float)
    stops = np.column_stack(
        [
            days["today"] - 1,
            np.full(len(days), daily.to_day),
            days["discharged"],
            days["died"] - 1,
            days["withdrawn"] - 1,
        ]
    )
    return np.fmin.reduce(stops, axis=1)


def _seen_on_days(
    seen: pd.DataFrame, subject_ids: pd.Series, assessments: list[str], days: np.ndarray
) -> np.ndarray:
    """Whether each subject × assessment × day (of consecutive ``days``) is in ``seen``
    (subject_id, assessment, study_day; study days truncated to whole days)."""
    have = np.zeros((len(subject_ids), len(assessments), len(days)), dtype=bool)
    subject = pd.Index(subject_ids).get_indexer(seen["subject_id"])
    assessment = pd.Index(assessments).get_indexer(seen["assessment"])
    day = seen["study_day"].astype("int64").to_numpy() - days[0]
    known = (subject >= 0) & (assessment >= 0) & (day >= 0) & (day < len(days))
    have[subject[known], assessment[known], day[known]] = True
    return have
