"""What the study team watches: the dashboard and a subject's casebook view, as plain values.

The analyses behind them (schedule status, deviations, safety) are the ones the CLI and the report
use. They are computed once per change of the study data: the audit log grows with every change, so
its newest id (with the minute, since statuses such as *due* move with the clock) keys a small
cache. Only the tables changed since are read again (a query or a signature changes nothing here;
each hour all are; when a subject's day 0 moves, every frame's study days are derived again,
and that subject's schedule and deviations, the other subjects' being kept).
Audit event ids ascend in commit order (:mod:`celltrial.store.audit`), so no change is missed.
Only the analyses derived from the changed tables are made again (an infusion edited leaves
the visit schedule and the lab grades as they were). A new minute moves "today" (the time the
dashboard is as of); the schedule and the deviations count whole study days, so they are derived
again each new day in the study's time zone, and the lab grades, the vital-sign signals and the
lab tables have no clock in them. The web app brings the cache up to date after each write before
acknowledging it, so reads after a write do not wait for the analyses; the
dashboard, each subject's view and each subject's figure (kept while the subject's own data are
unchanged) are made once per state. Figures are also kept as files in the study directory
(``cache/figures/``), so the web app's worker processes draw each one once between them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from celltrial import __version__
from celltrial.overview import StudyOverview, same_study_date, summarize_study
from celltrial.safety.analysis import (
    analyse_safety,
    derive_safety_inputs,
    same_lab_inputs,
    same_safety_frames,
)
from celltrial.safety.tables import BASELINE_ABNORMALITY_COLUMNS, SafetySummary
from celltrial.services.clinical_status import summarize_status_days
from celltrial.services.errors import NotFound
from celltrial.services.fingerprints import fingerprint
from celltrial.services.vital_signs import summarize_vital_days
from celltrial.store import frames as store_frames
from celltrial.store.models import AuditEvent
from celltrial.store.unreadable_times import unreadable_time_notes
from celltrial.study import StudyFrames, StudyHandle, read_study_frames
from celltrial.timeline import derive_study_day

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyState:
    """Frames and analyses of the study at one revision of its data."""

    revision: tuple[int, str]
    frames: StudyFrames
    overview: StudyOverview
    safety: SafetySummary | None
    safety_error: str | None = None
    #: lab grades and vital-sign signals (:func:`derive_safety_inputs`), for the next update
    safety_inputs: tuple[pd.DataFrame, pd.DataFrame] | None = None


@dataclass(frozen=True)
class Dashboard:
    study_id: str
    title: str
    as_of: datetime
    enrolment: dict[str, int]
    alerts: list[dict[str, Any]]
    subjects: list[dict[str, Any]]
    deviations: list[dict[str, Any]]
    serious_events: list[dict[str, Any]]
    lab_toxicities: list[dict[str, Any]]
    infusion_signals: list[dict[str, Any]]
    adverse_events: list[dict[str, Any]]
    caveats: list[str] = field(default_factory=list)
    #: grade ≥ 3 lab abnormalities there before treatment and no worse since (no alerts)
    lab_baseline_abnormalities: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SubjectView:
    code: str
    details: dict[str, Any]
    infusions: list[dict[str, Any]]
    visits: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    deviations: list[dict[str, Any]]
    has_observations: bool


#: Sorts timeline items without a time after those with one.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_cache: dict[str, StudyState] = {}
_lock = threading.Lock()
#: Views built from a state, kept while that state is current: study URL (and subject code) ->
#: (a weak reference to the state they were built from, the view). Weak, so that views of
#: subjects not looked at since do not keep old states (their frames) alive.
_dashboards: dict[str, tuple[weakref.ref[StudyState], Dashboard]] = {}
_subject_views: dict[tuple[str, str], tuple[weakref.ref[StudyState], SubjectView, _Rows]] = {}
#: Profile figures by study URL and subject code: (weak reference to the state, digest of the
#: subject's data, PNG). A change to another subject's data leaves a figure's digest, and so the
#: figure, as it was.
_figures: dict[tuple[str, str], tuple[weakref.ref[StudyState], str, bytes]] = {}


def data_revision(study: StudyHandle) -> tuple[int, str]:
    with study.engine.connect() as connection:
        newest = connection.scalar(select(func.max(AuditEvent.id))) or 0
    return int(newest), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")


#: Writes of this process not yet acknowledged (see :func:`write_in_flight`).
_writes_in_flight = 0
_writes_lock = threading.Lock()


@contextmanager
def write_in_flight() -> Iterator[None]:
    """Mark a write of this process as not yet acknowledged (the web app: from the request
    until its analyses are brought up to date).

    Meanwhile a reader that finds newer data gets the previous analyses rather than waiting or
    computing them: nobody has been told of the write yet, and every write this process has
    acknowledged is in them (each write's analyses are made before its answer). With several
    worker processes, a write acknowledged by another one may show a moment later.
    """
    global _writes_in_flight
    with _writes_lock:
        _writes_in_flight += 1
    try:
        yield
    finally:
        with _writes_lock:
            _writes_in_flight -= 1


def read_study_state(study: StudyHandle, *, wait: bool = False) -> StudyState:
    """The study's frames and analyses, recomputed only when the data (or the minute) changed.

    A reader is served the previous state rather than kept waiting when the new data are a
    write not yet acknowledged (that write brings the state up to date itself, see
    :func:`refresh_after_write`), or when only the minute moved and another request is already
    bringing it up to date. ``wait``: bring it up to date regardless (a write's own refresh).
    """
    revision = data_revision(study)
    cached = _cache.get(study.url)
    if cached is not None and not wait:
        new_data = cached.revision[0] < revision[0]
        if (new_data and _writes_in_flight) or (not new_data and _lock.locked()):
            return cached
    with _lock:
        cached = _cache.get(study.url)
        # a state computed while this request waited for the lock is as new or newer: use it
        fresh = cached is not None and cached.revision[0] >= revision[0]
        if fresh and cached.revision[1] >= revision[1]:
            return cached
        frames, previous, changed_frames, today = None, None, set(), None
        # subjects whose day 0 moved, their rows of the previous overview derived again
        moved: frozenset[str] | None = None
        #: the state whose lab grades and signals (no clock in them) these frames may reuse
        unclocked = None
        #: the state before a day 0 moved, whose lab grades these frames may reuse
        day_0_before = None
        # within the hour, read again only the tables changed since (each hour, all are)
        if cached is not None and cached.revision[1][:13] == revision[1][:13]:
            changed = _changed_tables(study, cached.revision[0]) - _NOT_IN_STATE
            same_minute = cached.revision[1] == revision[1]
            if not changed and same_minute:
                state = replace(cached, revision=revision)
                _cache[study.url] = state
                return state
            frames = _read_changed(study, cached.frames, changed) if changed else cached.frames
            moved_day_0 = frames is not None and frames.subjects is not cached.frames.subjects
            if moved_day_0:  # (the lab grades have no clock in them)
                day_0_before = cached
                # only those subjects' infusions changed: the rest of the overview is kept
                moved = _subjects_moved(cached.frames, frames) if changed == {"infusion"} else None
                at = None if same_minute else _now()
                zone = study.protocol.study.timezone
                if moved and (at is None or same_study_date(at, cached.overview.today, zone)):
                    previous, today = cached, at
            if frames is not None and not moved_day_0:
                # derive again only what is derived from them: the lab grades, signals and lab
                # tables have no clock in them, and the schedule and the deviations count whole
                # study days, so a new minute of the same day (in the study's time zone) keeps
                # them too; a new day 0 moves every study day: then everything is derived again
                unclocked, changed_frames = cached, {_FRAME_OF[table] for table in changed}
                if not same_minute:
                    today = _now()
                zone = study.protocol.study.timezone
                if same_minute or same_study_date(today, cached.overview.today, zone):
                    previous = cached
        if frames is None:
            frames = read_study_frames(study)
        overview = summarize_study(
            study.protocol,
            frames,
            today=today,
            previous=None if previous is None else previous.overview,
            changed=changed_frames if previous is not None else (),
            moved=moved if previous is not None and moved else (),
            infusions_before=None if previous is None else previous.frames.infusions,
        )
        try:
            kept = None if unclocked is None else unclocked.safety_inputs
            if (
                day_0_before is not None
                and day_0_before.safety_inputs is not None
                and same_lab_inputs(day_0_before.frames, frames)
            ):
                # day 0 moved only for subjects without observations: the lab grades are kept
                # (the signals of subjects whose infusion starts changed are derived again)
                inputs = derive_safety_inputs(
                    study.protocol,
                    frames,
                    previous=day_0_before.safety_inputs,
                    changed={"infusions"},
                    infusions_before=day_0_before.frames.infusions,
                )
            else:
                inputs = derive_safety_inputs(
                    study.protocol,
                    frames,
                    previous=kept,
                    changed=changed_frames,
                    infusions_before=None if unclocked is None else unclocked.frames.infusions,
                )
            # the lab tables of the previous summary, when made from these very lab grades
            same_grades = kept is not None and inputs[0] is kept[0]
            if (
                same_grades
                and inputs[1] is kept[1]
                and unclocked.safety is not None
                and same_safety_frames(unclocked.frames, frames)
            ):
                safety = unclocked.safety  # made from all the same: kept as it is
            else:
                safety = analyse_safety(
                    study.protocol,
                    frames,
                    inputs=inputs,
                    previous=unclocked.safety if same_grades else None,
                )
            error = None
        except (KeyError, ValueError, TypeError) as exc:  # an analysis failing must not hide data
            safety, error, inputs = None, f"the safety analysis failed: {exc}", None
        state = StudyState(revision, frames, overview, safety, error, inputs)
        _cache[study.url] = state
        return state


def _now() -> pd.Timestamp:
    """Now, the time an overview made from scratch is as of."""
    return pd.Timestamp.now(tz="UTC")


#: Tables the state is not made of: changing them leaves it as it was.
_NOT_IN_STATE = frozenset({"data_query", "casebook_signature", "app_user", "web_session"})
#: The frame each table is read into (as :func:`celltrial.study.read_study_frames` reads it).
_FRAME_OF = {
    "product_lot": "lots",
    "infusion": "infusions",
    "observation": "observations",
    "adverse_event": "adverse_events",
    "clinical_status": "clinical_status",
    "imaging_study": "imaging",
}


def _changed_tables(study: StudyHandle, since: int) -> set[str]:
    """Tables with an audited change after audit event ``since`` (imports name several)."""
    with study.engine.connect() as connection:
        names = connection.scalars(
            select(AuditEvent.table_name).where(AuditEvent.id > since).distinct()
        )
        return {table for name in names for table in name.split(",")}


def _read_changed(study: StudyHandle, frames: StudyFrames, changed: set[str]) -> StudyFrames | None:
    """``frames`` with the ``changed`` tables read again; None when all must be (subjects or a
    table not known here changed)."""
    if not changed <= set(_FRAME_OF):
        return None
    zone = study.protocol.study.zone
    engine, study_id = study.engine, study.study_id
    first = store_frames.first_infusions(frames.infusions)
    kwargs = {"zone": zone, "first_infusion": first}
    readers = {
        "lots": lambda: store_frames.read_lots(engine, study_id),
        "infusions": lambda: store_frames.read_infusions(engine, study_id, zone=zone),
        "observations": lambda: store_frames.read_observations(engine, study_id, **kwargs),
        "adverse_events": lambda: store_frames.read_adverse_events(engine, study_id, **kwargs),
        "clinical_status": lambda: store_frames.read_clinical_status(engine, study_id, **kwargs),
        "imaging": lambda: store_frames.read_imaging(engine, study_id, **kwargs),
    }
    fresh = {_FRAME_OF[table]: readers[_FRAME_OF[table]]() for table in changed}
    if "infusions" in fresh:
        moved = store_frames.first_infusions(fresh["infusions"])
        if not moved.equals(first):
            # a subject's day 0 moved: the study days of every frame (those just read too)
            # move with it, derived again here as the readers derive them
            return _with_day_0(replace(frames, **fresh), moved, zone, before=first)
    return replace(frames, **fresh)


def _subjects_moved(before: StudyFrames, after: StudyFrames) -> frozenset[str] | None:
    """The subjects whose day 0 differs between ``before`` and ``after`` (frames read again
    for a change of the infusions alone), when their infusions are the only ones that differ;
    None otherwise (another subject's infusion changed too, or the subjects themselves)."""
    old, new = before.subjects, after.subjects
    if not old["subject_id"].equals(new["subject_id"]):
        return None
    same = (old["first_infusion"] == new["first_infusion"]) | (
        old["first_infusion"].isna() & new["first_infusion"].isna()
    )
    moved = frozenset(new.loc[~same.to_numpy(), "subject_id"])
    if not moved:
        return None
    infusions = [
        frame[~frame["subject_id"].isin(moved)].reset_index(drop=True)
        for frame in (before.infusions, after.infusions)
    ]
    return moved if infusions[0].equals(infusions[1]) else None


#: Frames with study days (besides infusions, whose days come from their own starts): frame ->
#: (time column, study-day column), as :mod:`celltrial.store.frames` derives them.
_STUDY_DAYS = {
    "observations": ("time", "study_day"),
    "adverse_events": ("onset", "onset_day"),
    "clinical_status": ("time", "study_day"),
    "imaging": ("time", "study_day"),
}


def _with_day_0(
    frames: StudyFrames, first: pd.Series, zone: Any, *, before: pd.Series | None = None
) -> StudyFrames:
    """``frames`` with day 0 of each subject from ``first`` (subject code -> first infusion's
    start): the subjects' first infusion and the study days of every frame.

    ``before``: the day 0 the frames' study days were derived from; a frame without rows of the
    subjects whose day 0 differs is kept as it is (its days are those deriving them again
    would give)."""
    subjects = frames.subjects.assign(
        first_infusion=pd.to_datetime(
            first.reindex(frames.subjects["subject_id"]).to_numpy(), utc=True
        )
    )
    moved = None
    if before is not None:
        codes = before.index.union(first.index)
        old, new = before.reindex(codes), first.reindex(codes)
        moved = set(codes[~((old == new) | (old.isna() & new.isna())).to_numpy()])
    days = {
        name: _study_days(getattr(frames, name), first, zone, time, day, moved)
        for name, (time, day) in _STUDY_DAYS.items()
    }
    return replace(frames, subjects=subjects, **days)


def _study_days(
    frame: pd.DataFrame,
    first: pd.Series,
    zone: Any,
    time: str,
    day: str,
    moved: set[str] | None,
) -> pd.DataFrame:
    """``frame`` with study days (``day``, of ``time``) from day 0 ``first``; kept as it is when
    it has no row of the subjects ``moved`` (None: any subject may have moved). (Deriving only
    those subjects' rows costs about as much as deriving all of them.)"""
    if moved is not None and not frame["subject_id"].isin(moved).any():
        return frame
    return derive_study_day(frame, first, zone, time_column=time, day_column=day)


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (Timestamps to aware datetimes, NaN/NA to None, numpy to Python)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool:  # (most values: plain already)
        return value
    if kind is float:
        return None if math.isnan(value) else value
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts of plain values (:func:`_plain`), of those ``columns`` it
    has; converted column by column."""
    present = [c for c in columns if c in frame.columns]
    if not present:
        return [{} for _ in range(len(frame))]
    values = [[_plain(v) for v in frame[c].tolist()] for c in present]
    return [dict(zip(present, row, strict=True)) for row in zip(*values, strict=True)]


def _by_subject(codes: pd.Series, items: list[Any]) -> dict[Any, list[Any]]:
    """``items`` (one per row of ``codes``' frame) grouped by subject code, in frame order."""
    groups: dict[Any, list[Any]] = {}
    for code, item in zip(codes, items, strict=True):
        groups.setdefault(code, []).append(item)
    return groups


#: Each frame's row positions by subject code, grouped once per frame object (frames are not
#: changed in place; a state that changes a table holds a new frame), and the subjects' rows
#: taken so far: id(frame) -> (a weak reference to the frame, code -> positions, code -> rows).
_positions: dict[
    int, tuple[weakref.ref[pd.DataFrame], dict[Any, np.ndarray], dict[str, pd.DataFrame]]
] = {}


def rows_of_subject(frame: pd.DataFrame, code: str) -> pd.DataFrame:
    """The rows of ``frame`` (with a ``subject_id`` column) of subject ``code``, in frame order
    and numbered from 0.

    One look-up instead of comparing every row's code on each view; the same frame gives the
    same rows object, so views can tell unchanged rows by identity.
    """
    key = id(frame)
    kept = _positions.get(key)
    if kept is None or kept[0]() is not frame:

        def forget(ref: weakref.ref[pd.DataFrame], key: int = key) -> None:
            if _positions.get(key, (None,))[0] is ref:
                _positions.pop(key, None)

        groups = frame.groupby("subject_id", sort=False).indices if len(frame) else {}
        kept = (weakref.ref(frame, forget), groups, {})
        _positions[key] = kept
    rows = kept[2].get(code)
    if rows is None:
        positions = kept[1].get(code)
        if positions is None:  # not kept: any code may be asked for
            return frame.iloc[:0].reset_index(drop=True)
        # numbered from 0: the same rows compare equal whatever other subjects' rows precede
        rows = kept[2][code] = frame.take(positions).reset_index(drop=True)
    return rows


SERIOUS_COLUMNS = [
    "subject_id",
    "term",
    "onset",
    "onset_day",
    "grade",
    "serious_criteria",
    "relatedness",
    "outcome",
    "infusion_related",
]
LAB_COLUMNS = [
    "subject_id",
    "study_day",
    "time",
    "test",
    "value",
    "unit",
    "term",
    "grade",
    "baseline_grade",
    "assumed_normal_baseline",
]
SIGNAL_COLUMNS = [
    "subject_id",
    "infusion_number",
    "signal",
    "test",
    "unit",
    "pre_value",
    "worst_value",
    "change",
    "hours_to_first",
]
AE_COLUMNS = [
    "subject_id",
    "term",
    "onset",
    "onset_day",
    "grade",
    "serious",
    "relatedness",
    "outcome",
]
DEVIATION_COLUMNS = ["subject_id", "study_day", "kind", "category", "what", "detail"]


def refresh_after_write(study: StudyHandle) -> None:
    """Bring the analyses and the dashboard up to date after a write, before it is acknowledged
    (within :func:`write_in_flight`), so that the reads after it find them made."""
    _dashboard_of(study, read_study_state(study, wait=True))


def summarize_dashboard(study: StudyHandle) -> Dashboard:
    """Enrolment, each subject's schedule, deviations and the safety panel (worst first)."""
    return _dashboard_of(study, read_study_state(study))


def _dashboard_of(study: StudyHandle, state: StudyState) -> Dashboard:
    """The dashboard of ``state``, made once per state."""
    cached = _dashboards.get(study.url)
    if cached is not None and cached[0]() is state:
        return cached[1]
    dashboard = _dashboard(study, state)
    _dashboards[study.url] = (weakref.ref(state), dashboard)
    return dashboard


def _dashboard(study: StudyHandle, state: StudyState) -> Dashboard:
    overview, frames, safety = state.overview, state.frames, state.safety
    n_planned = study.protocol.regimen.n_infusions
    infusions = overview.infusions
    subjects = overview.summary
    enrolment = {
        "enrolled": len(subjects),
        "treated": int(frames.subjects["first_infusion"].notna().sum()),
        "infusions_given": int(infusions["actual_day"].notna().sum()) if len(infusions) else 0,
        "infusions_planned": len(subjects) * n_planned,
        "died": int(frames.subjects["died"].notna().sum()),
        "discharged": int(frames.subjects["discharged"].notna().sum()),
    }
    rows = _subject_rows(overview, frames, n_planned)
    serious = lab = signals = listing = present = []
    caveats: list[str] = []
    if safety is not None:
        serious = _rows(safety.serious.sort_values("onset", ascending=False), SERIOUS_COLUMNS)
        # treatment-emergent only: abnormalities there before treatment raise no alert
        lab = _rows(safety.lab_toxicities.sort_values("grade", ascending=False), LAB_COLUMNS)
        present = _rows(safety.lab_baseline_abnormalities, list(BASELINE_ABNORMALITY_COLUMNS))
        signals = _rows(safety.signals, SIGNAL_COLUMNS)
        listing = _rows(safety.listing.sort_values("onset", ascending=False), AE_COLUMNS)
        caveats = list(safety.caveats) + ([safety.conventions] if safety.conventions else [])
    elif state.safety_error:
        caveats = [state.safety_error]
    caveats += unreadable_time_notes(study.engine)  # a stored time left out: which row to fix
    alerts = (
        [
            {"kind": "serious adverse event", "subject_id": r["subject_id"], "text": _sae(r)}
            for r in serious
        ]
        + [
            {
                "kind": f"grade {r['grade']} lab toxicity",
                "subject_id": r["subject_id"],
                "text": f"{r['term']}: {r['test']} {r['value']:g} {r['unit'] or ''} "
                f"on day {r['study_day']} ({_baseline_text(r)})",
            }
            for r in lab
        ]
        + [
            {
                "kind": "infusion vital-sign signal",
                "subject_id": r["subject_id"],
                "text": f"infusion {r['infusion_number']}: {r['signal']}",
            }
            for r in signals
        ]
    )
    return Dashboard(
        study_id=study.study_id,
        title=study.protocol.study.title,
        as_of=overview.today.to_pydatetime(),
        enrolment=enrolment,
        alerts=alerts,
        subjects=rows,
        deviations=_rows(overview.deviations, DEVIATION_COLUMNS),
        serious_events=serious,
        lab_toxicities=lab,
        infusion_signals=signals,
        adverse_events=listing,
        caveats=caveats,
        lab_baseline_abnormalities=present,
    )


def _baseline_text(row: dict[str, Any]) -> str:
    """What a treatment-emergent lab toxicity worsened from."""
    if row.get("assumed_normal_baseline"):
        return "no baseline value: taken as normal"
    grade = row.get("baseline_grade")
    return "no graded baseline" if grade is None else f"baseline grade {grade}"


def _subject_rows(
    overview: StudyOverview, frames: StudyFrames, n_planned: int
) -> list[dict[str, Any]]:
    """The dashboard's row of each subject: outcome, infusion and visit statuses, counts."""
    infusions, visits, events = overview.infusions, overview.visits, frames.adverse_events
    statuses: dict[Any, dict[int, tuple[Any, Any, Any]]] = {}
    if len(infusions):
        for code, number, status, planned, actual in zip(
            infusions["subject_id"],
            infusions["number"],
            infusions["status"],
            infusions["planned_day"],
            infusions["actual_day"],
            strict=True,
        ):
            statuses.setdefault(code, {})[int(number)] = (status, _plain(planned), _plain(actual))
    visit_rows = _by_subject(
        visits["subject_id"], _rows(visits, ["visit", "day", "status", "not_done"])
    )
    serious = _by_subject(events["subject_id"], events["serious"].astype(bool).tolist())
    upcoming = ("upcoming", None, None)
    rows = []
    for item in overview.summary.itertuples():
        code = item.subject_id
        own = statuses.get(code, {})
        flags = serious.get(code, [])
        rows.append(
            {
                "subject_id": code,
                "outcome": item.outcome,
                "infusions": [
                    _infusion_cell(number, *own.get(number, upcoming))
                    for number in range(1, n_planned + 1)
                ],
                "visits": list(visit_rows.get(code, ())),
                "deviations": int(item.deviations),
                "adverse_events": len(flags),
                "serious_events": int(sum(flags)),
            }
        )
    return rows


def _infusion_cell(number: int, status: Any, planned_day: Any, actual_day: Any) -> dict[str, Any]:
    """One infusion of a subject's dashboard row."""
    return {
        "number": number,
        "status": status,
        "planned_day": planned_day,
        "actual_day": actual_day,
    }


def _sae(row: dict[str, Any]) -> str:
    grade = f"grade {row['grade']}" if row.get("grade") is not None else "grade not given"
    day = f", day {row['onset_day']}" if row.get("onset_day") is not None else ""
    return f"{row['term']} ({grade}{day}; {row.get('serious_criteria') or ''})"


def summarize_subject(study: StudyHandle, code: str) -> SubjectView:
    """One subject's details, schedule, deviations and a timeline of infusions, visits, AEs,
    vital signs (a day an item) and clinical status.

    Made once per state, and kept across states while the subject's own rows (of the frames and
    analyses the view shows) are the same: a write about another subject leaves it as it was.
    """
    state = read_study_state(study)
    key = (study.url, code)
    cached = _subject_views.get(key)
    if cached is not None and cached[0]() is state:
        return cached[1]
    rows = _subject_rows_of(state, code)
    if cached is not None and _same_rows(cached[2], rows):
        view = cached[1]
    else:
        if not len(rows.subject):
            raise NotFound(f"no subject {code!r} in study {study.study_id}")
        view = _subject_view(rows, code, zone=study.protocol.study.zone)
    _subject_views[key] = (weakref.ref(state), view, rows)
    return view


@dataclass(frozen=True)
class _Rows:
    """One subject's rows of each frame a subject view is made from."""

    subject: pd.DataFrame
    infusions: pd.DataFrame  # the analysed schedule (status, windows)
    given: pd.DataFrame  # the infusions recorded
    visits: pd.DataFrame
    events: pd.DataFrame
    observations: pd.DataFrame
    clinical_status: pd.DataFrame
    deviations: pd.DataFrame


def _subject_rows_of(state: StudyState, code: str) -> _Rows:
    frames, overview = state.frames, state.overview
    return _Rows(
        subject=rows_of_subject(frames.subjects, code),
        infusions=rows_of_subject(overview.infusions, code),
        given=rows_of_subject(frames.infusions, code),
        visits=rows_of_subject(overview.visits, code),
        events=rows_of_subject(frames.adverse_events, code),
        observations=rows_of_subject(frames.observations, code),
        clinical_status=rows_of_subject(frames.clinical_status, code),
        deviations=rows_of_subject(overview.deviations, code),
    )


def _same_rows(before: _Rows, after: _Rows) -> bool:
    """Whether two states hold the same rows of a subject (column names, types and values)."""
    return all(
        b is a or b.equals(a)
        for b, a in ((getattr(before, f.name), getattr(after, f.name)) for f in fields(_Rows))
    )


def _subject_view(rows: _Rows, code: str, *, zone: str) -> SubjectView:
    details = {k: _plain(v) for k, v in rows.subject.iloc[0].items() if k != "subject_id"}
    timeline: list[dict[str, Any]] = []
    for r in rows.given.itertuples():
        timeline.append(
            {
                "time": _plain(r.start_time),
                "day": _plain(r.study_day),
                "kind": "infusion",
                "text": f"infusion {r.number}: lot {r.lot_id}, {_cells(r.cells_given)}"
                + ("" if r.completed else f" — stopped: {r.stop_reason}"),
            }
        )
    for r in rows.events.itertuples():
        timeline.append(
            {
                "time": _plain(r.onset),
                "day": _plain(r.onset_day),
                "kind": "serious adverse event" if r.serious else "adverse event",
                "text": f"{r.term}"
                + (f", grade {int(r.grade)}" if pd.notna(r.grade) else "")
                + (f", {r.outcome}" if isinstance(r.outcome, str) else ""),
            }
        )
    for r in rows.visits.itertuples():
        timeline.append(
            {
                "time": None,
                "day": _plain(r.day),
                "kind": "visit",
                "text": f"{r.visit}: {str(r.status).replace('_', ' ')}"
                + (f" (not done: {r.not_done})" if r.not_done else ""),
            }
        )
    timeline += summarize_vital_days(rows.observations, zone=zone)
    timeline += summarize_status_days(rows.clinical_status)
    # by day, the day's visits first, then by time
    timeline.sort(
        key=lambda e: (
            e["day"] if e["day"] is not None else 10**6,
            e["kind"] != "visit",
            e["time"] is None,
            e["time"] or _EPOCH,
        )
    )
    return SubjectView(
        code=code,
        details=details,
        infusions=_rows(
            rows.infusions,
            ["number", "planned_day", "first_day", "last_day", "actual_day", "status"],
        ),
        visits=_rows(rows.visits, ["visit", "day", "status", "not_done"]),
        timeline=timeline,
        deviations=_rows(rows.deviations, DEVIATION_COLUMNS),
        has_observations=bool(len(rows.observations)),
    )


def _cells(cells: Any) -> str:
    return "cells not recorded" if pd.isna(cells) else f"{cells / 1e7:.2f} × 10⁷ cells"


def render_subject_figure(study: StudyHandle, code: str) -> bytes:
    """PNG of the subject's WHO scale, SpO2/FiO2 and marker trajectories (the report's profile)."""
    state = read_study_state(study)
    frames = state.frames
    if not len(rows_of_subject(frames.subjects, code)):
        raise NotFound(f"no subject {code!r} in study {study.study_id}")
    cached = _figures.get((study.url, code))
    if cached is not None and cached[0]() is state:
        return cached[2]

    data = (
        rows_of_subject(frames.observations, code),
        rows_of_subject(frames.clinical_status, code),
        rows_of_subject(frames.infusions, code),
        rows_of_subject(frames.adverse_events, code),
    )
    follow_up = study.protocol.safety.ae_follow_up_days
    digest = fingerprint(*data, follow_up, __version__)  # a new release draws figures anew
    if cached is not None and cached[1] == digest:
        _figures[(study.url, code)] = (weakref.ref(state), digest, cached[2])
        return cached[2]
    kept = _kept_figure(study, code, digest)
    png = kept.read_bytes() if kept.exists() else None
    if png is None:
        png = _draw_profile(code, data, follow_up)
        _keep_figure(kept, png)
    _figures[(study.url, code)] = (weakref.ref(state), digest, png)
    return png


#: Draws subject figures in a process of its own when set (:func:`start_figure_process`).
_drawer: ProcessPoolExecutor | None = None
#: Resolution of the subject figures on the web page.
FIGURE_DPI = 80


def start_figure_process() -> None:
    """Draw subject figures in a separate process from now on (the web app): drawing takes a
    tenth of a second or more of pure Python, which would hold up every request this process
    serves meanwhile. The process starts in the background and is warmed up at once."""
    global _drawer
    if _drawer is None:
        _drawer = ProcessPoolExecutor(
            max_workers=1,
            mp_context=get_context("spawn"),
            initializer=_end_with_parent,
            initargs=(os.getpid(),),
        )
        _drawer.submit(_warm_up)


def stop_figure_process() -> None:
    """Draw in this process again; the drawing process ends."""
    global _drawer
    drawer, _drawer = _drawer, None
    if drawer is not None:
        drawer.shutdown(wait=True, cancel_futures=True)


def _end_with_parent(parent: int) -> None:
    """In the drawing process: end when the web process is gone, even killed (its end of the
    task queue stays open in this process, so no end of input would tell)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="celltrial-parent-watch", daemon=True).start()


def _warm_up() -> None:
    import celltrial.report.profiles  # noqa: F401 - matplotlib and pandas loaded before use


def _draw_profile(code: str, data: tuple[pd.DataFrame, ...], follow_up: int) -> bytes:
    from celltrial.report.profiles import profile_png

    drawer = _drawer
    if drawer is not None:
        try:
            future = drawer.submit(
                profile_png, code, *data, follow_up_days=follow_up, dpi=FIGURE_DPI
            )
            return future.result()
        except (BrokenProcessPool, RuntimeError):  # broken or shut down: draw here
            _log.warning("the figure process is gone; drawing in the web process", exc_info=True)
    return profile_png(code, *data, follow_up_days=follow_up, dpi=FIGURE_DPI)


#: Folder (in the study directory) of the subject figures drawn, shared by the web app's worker
#: processes and kept across restarts; a file's name holds the digest of the data it shows.
FIGURE_CACHE = Path("cache") / "figures"


def _kept_figure(study: StudyHandle, code: str, digest: str) -> Path:
    subject = hashlib.sha256(code.encode()).hexdigest()[:16]  # any code is a safe file name
    return study.directory / FIGURE_CACHE / f"{subject}-{digest[:32]}.png"


def _keep_figure(path: Path, png: bytes) -> None:
    """Write ``path`` atomically and drop the subject's older figures (best effort: a folder
    that cannot be written only costs drawing the figure again)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
        partial.write_bytes(png)
        os.replace(partial, path)
        subject = path.name.split("-", 1)[0]
        for old in path.parent.glob(f"{subject}-*.png"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        _log.warning("could not keep the figure %s", path, exc_info=True)
