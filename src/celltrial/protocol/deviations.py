"""Protocol deviations: what happened that the protocol did not plan.

Kinds (``kind`` column): ``infusion_missed``, ``infusion_late``, ``infusion_early``,
``infusion_incomplete``, ``dose_outside_tolerance``, ``dose_not_recorded``, ``lot_not_released``,
``lot_fails_release``, ``lot_expired``, ``endotoxin_above_limit``, ``visit_missed``,
``assessment_missed``, ``assessment_out_of_window``, ``daily_assessment_missed``.
"""

from __future__ import annotations

import pandas as pd

from celltrial.protocol.model import Protocol
from celltrial.protocol.release import check_lot_release, compute_endotoxin_dose
from celltrial.protocol.schedule import (
    derive_infusion_status,
    derive_visit_status,
    subject_today,
    summarize_visits,
)
from celltrial.timeline import compute_study_days

DEVIATION_COLUMNS = ("subject_id", "study_day", "kind", "category", "what", "detail")


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
) -> pd.DataFrame:
    """Every protocol deviation of every treated subject, as of ``today``."""
    rows: list[dict] = []
    rows += _infusion_deviations(protocol, subjects, lots, infusions, today)
    visit_status = derive_visit_status(
        protocol, subjects, observations, clinical_status, imaging, today=today
    )
    rows += _visit_deviations(visit_status)
    rows += _daily_deviations(protocol, subjects, observations, clinical_status, today)
    frame = pd.DataFrame(rows, columns=list(DEVIATION_COLUMNS))
    frame["study_day"] = frame["study_day"].astype("Int64")
    return frame.sort_values(["subject_id", "study_day", "kind"], kind="stable").reset_index(
        drop=True
    )


def _infusion_deviations(
    protocol: Protocol,
    subjects: pd.DataFrame,
    lots: pd.DataFrame,
    infusions: pd.DataFrame,
    today: pd.Timestamp,
) -> list[dict]:
    rows: list[dict] = []
    regimen = protocol.regimen
    status = derive_infusion_status(protocol, subjects, infusions, today=today)
    for item in status.itertuples():
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
    weights = subjects.set_index("subject_id")["weight_kg"]
    lots_by_id = lots.set_index("lot_id") if len(lots) else lots
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
        if pd.isna(item.lot_id) or item.lot_id not in lots_by_id.index:
            rows.append(
                where
                | {
                    "kind": "lot_not_released",
                    "what": f"{label}: lot not recorded",
                    "detail": "no lot linked to the infusion",
                }
            )
            continue
        lot = lots_by_id.loc[item.lot_id]
        if lot["release_status"] != "released":
            rows.append(
                where
                | {
                    "kind": "lot_not_released",
                    "what": f"{label}: lot {item.lot_id} not released",
                    "detail": f"release status {lot['release_status']!r}",
                }
            )
        failures = check_lot_release(lot.to_dict(), protocol.product.release)
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


def _visit_deviations(visit_status: pd.DataFrame) -> list[dict]:
    rows: list[dict] = []
    if visit_status.empty:
        return rows
    visits = summarize_visits(visit_status)
    missed_visits = visits[visits["status"] == "missed"]
    missed_keys = set(zip(missed_visits["subject_id"], missed_visits["visit_index"], strict=True))
    for item in missed_visits.itertuples():
        rows.append(
            {
                "subject_id": item.subject_id,
                "study_day": item.day,
                "kind": "visit_missed",
                "category": "visit",
                "what": f"{item.visit} missed",
                "detail": f"none of {item.n_assessments} assessments done",
            }
        )
    flagged = visit_status[visit_status["status"].isin(["missed", "out_of_window"])]
    for (subject, index, status), group in flagged.groupby(
        ["subject_id", "visit_index", "status"], sort=True
    ):
        if (subject, index) in missed_keys:
            continue
        first = group.iloc[0]
        window = f"window day {first['first_day']} to {first['last_day']}"
        if status == "missed":
            rows.append(
                {
                    "subject_id": subject,
                    "study_day": first["day"],
                    "kind": "assessment_missed",
                    "category": "visit",
                    "what": f"{first['visit']}: {', '.join(group['assessment'])} not done",
                    "detail": window,
                }
            )
        else:
            days = sorted({d for days in group["actual_days"] for d in days})
            rows.append(
                {
                    "subject_id": subject,
                    "study_day": days[0] if days else first["day"],
                    "kind": "assessment_out_of_window",
                    "category": "visit",
                    "what": f"{first['visit']}: {', '.join(group['assessment'])} out of window",
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
    daily = protocol.daily
    if daily is None:
        return []
    zone = protocol.study.timezone
    treated = subjects.dropna(subset=["first_infusion"])
    today_day = subject_today(treated, today, zone)
    assessments = list(daily.vitals) + (["WHO"] if daily.clinical_status else [])
    seen = observations[["subject_id", "test", "study_day"]].rename(columns={"test": "assessment"})
    if daily.clinical_status and len(clinical_status):
        seen = pd.concat(
            [seen, clinical_status[["subject_id", "study_day"]].assign(assessment="WHO")]
        )
    seen_sets = (
        seen.dropna()
        .groupby(["subject_id", "assessment"])["study_day"]
        .agg(lambda s: set(int(v) for v in s))
    )
    rows: list[dict] = []
    for subject in treated.itertuples():
        stops = [today_day.get(subject.subject_id, daily.to_day) - 1, daily.to_day]
        for column in ("discharged", "died", "withdrawn"):
            value = getattr(subject, column)
            if pd.notna(value):
                day = compute_study_days(
                    pd.Series([value]), pd.Series([subject.first_infusion]), zone
                ).iloc[0]
                stops.append(int(day) - (0 if column == "discharged" else 1))
        last = min(int(s) for s in stops if pd.notna(s))
        expected = set(range(daily.from_day, last + 1))
        for assessment in assessments:
            have = seen_sets.get((subject.subject_id, assessment), set())
            missing = sorted(expected - have)
            if missing:
                rows.append(
                    {
                        "subject_id": subject.subject_id,
                        "study_day": missing[0],
                        "kind": "daily_assessment_missed",
                        "category": "daily",
                        "what": f"daily {assessment} missing on {len(missing)} day(s)",
                        "detail": "days " + ", ".join(map(str, missing)),
                    }
                )
    return rows
