"""A first infusion (or its time edited) moves day 0 for one subject: the overview of the frames
before it is brought up to date by deriving that subject's schedule and deviations again and
putting them in place among the other subjects' (kept), and equals the overview made afresh:
every part, its order, index and column types. Simulated cohorts of 5 and 30 subjects in the
built-in protocol's time zone (UTC+8), with observations before day 0, subjects newly enrolled
without observations, deaths and withdrawals, on a day within the schedule and after it."""

from __future__ import annotations

from dataclasses import fields, replace

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from celltrial import overview
from celltrial.cohort import simulate
from celltrial.overview import _NOT_DONE as NOT_DONE
from celltrial.overview import derive_follow_up_end, summarize_study
from celltrial.protocol.schedule import (
    Schedule,
    derive_schedule,
    subject_days,
    summarize_visits,
)
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import StudyFrames, init_study, read_study_frames
from tests.test_lab_grades_day_0 import ZONE, with_infusions

PARTS = ("summary", "infusions", "visits", "visit_assessments", "deviations")


@pytest.fixture(scope="module", params=[5, 30], ids=lambda n: f"{n} subjects")
def study(request, tmp_path_factory):
    handle = init_study(tmp_path_factory.mktemp("moved") / "study", user="test")
    cohort = simulate(handle.protocol, request.param, seed=2020)
    with study_session(handle.engine, user="test", reason="test cohort") as session:
        load_simulated_cohort(session, handle.study_id, cohort)
    assert handle.protocol.study.timezone == ZONE
    return handle.protocol, read_study_frames(handle)


def untreated(frames: StudyFrames, *codes: str) -> StudyFrames:
    """``frames`` before those subjects' infusions (no day 0 for them)."""
    infusions = frames.infusions
    return with_infusions(frames, infusions[~infusions["subject_id"].isin(codes)])


def newly_enrolled(frames: StudyFrames, *codes: str) -> StudyFrames:
    """``frames`` with those subjects enrolled and nothing recorded for them yet."""
    emptied = {
        name: getattr(frames, name)[~getattr(frames, name)["subject_id"].isin(codes)].reset_index(
            drop=True
        )
        for name in ("observations", "adverse_events", "clinical_status", "imaging")
    }
    return untreated(replace(frames, **emptied), *codes)


def first_moved(frames: StudyFrames, code: str, by: pd.Timedelta) -> StudyFrames:
    """``frames`` with ``code``'s first infusion given ``by`` later (its time edited)."""
    infusions = frames.infusions.copy()
    first = (infusions["subject_id"] == code) & (infusions["number"] == 1)
    infusions.loc[first, "start_time"] += by
    infusions.loc[first, "end_time"] += by
    return with_infusions(frames, infusions)


def ended(frames: StudyFrames, code: str, column: str, day: int) -> StudyFrames:
    """``frames`` with ``code`` dead or withdrawn (``column``) at noon on study ``day``."""
    subjects = frames.subjects.copy()
    row = subjects["subject_id"] == code
    day0 = subjects.loc[row, "first_infusion"].iloc[0]
    subjects.loc[row, column] = day0.normalize() + pd.Timedelta(days=day, hours=4)
    return replace(frames, subjects=subjects)


def code_at(frames: StudyFrames, index: int) -> str:
    return str(frames.subjects["subject_id"].iloc[index])


def todays(frames: StudyFrames) -> list[pd.Timestamp]:
    """A day within every subject's schedule (statuses due and upcoming) and one after it."""
    first = frames.subjects["first_infusion"].dropna().max()
    return [first + pd.Timedelta(days=4), first + pd.Timedelta(days=60)]


def assert_as_afresh(got, protocol, frames: StudyFrames, today: pd.Timestamp, what: str) -> None:
    fresh = summarize_study(protocol, frames, today=today)
    for part in PARTS:
        assert_frame_equal(getattr(got, part), getattr(fresh, part), obj=f"{part} ({what})")
    assert got.n_treated == fresh.n_treated


def check(protocol, before: StudyFrames, after: StudyFrames, codes: set[str], what: str) -> None:
    """The overview of ``before`` updated for ``codes`` (put in place, not derived all again)
    equals the overview of ``after`` made afresh."""
    for today in todays(after):
        previous = summarize_study(protocol, before, today=today)
        again = overview._with_subjects_derived_again(protocol, after, previous, codes, today)
        assert again is not None, f"derived all again ({what})"
        got = summarize_study(protocol, after, today=today, previous=previous, moved=codes)
        assert_as_afresh(got, protocol, after, today, f"{what}, today {today}")
        # the update's deviation rows update again as those of the overview made afresh
        later = summarize_study(
            protocol, after, today=today, previous=got, changed={"observations"}
        )
        assert_as_afresh(later, protocol, after, today, f"{what}, updated again")


@pytest.mark.parametrize("index", [0, 2, -1])
def test_a_first_infusion_of_a_subject_with_observations_before_and_after_day_0(study, index):
    protocol, frames = study
    code = code_at(frames, index)
    assert (frames.observations.query("subject_id == @code")["study_day"] < 0).any()
    check(protocol, untreated(frames, code), frames, {code}, f"{code}'s first infusion")


@pytest.mark.parametrize("index", [0, 1, -1])
def test_a_first_infusion_of_a_newly_enrolled_subject_others_still_untreated(study, index):
    """The bench's shape: newly enrolled subjects without observations, one infused."""
    protocol, frames = study
    new = [code_at(frames, i) for i in (0, 1, -1)]
    code = code_at(frames, index)
    after = newly_enrolled(frames, *new)
    after = with_infusions(
        after,
        pd.concat(
            [after.infusions, frames.infusions[frames.infusions["subject_id"] == code]],
            ignore_index=True,
        ).sort_values(["subject_id", "number"], kind="stable"),
    )
    check(protocol, untreated(after, code), after, {code}, f"{code}'s first infusion, new")


@pytest.mark.parametrize("by", [pd.Timedelta(days=1), pd.Timedelta(hours=-30)])
def test_a_first_infusions_time_edited_moves_day_0_of_a_treated_subject(study, by):
    protocol, frames = study
    code = code_at(frames, 1)
    check(protocol, frames, first_moved(frames, code, by), {code}, f"{code}'s day 0 moved {by}")


@pytest.mark.parametrize("column", ["died", "withdrawn"])
def test_a_first_infusion_beside_a_death_or_withdrawal(study, column):
    protocol, frames = study
    code, other = code_at(frames, 0), code_at(frames, -1)
    after = ended(frames, other, column, 8)
    check(protocol, untreated(after, code), after, {code}, f"another subject {column}")
    own = ended(frames, code, column, 5)  # the moved subject's own end, days after day 0
    check(protocol, untreated(own, code), own, {code}, f"the subject {column}")


def test_several_subjects_moved_at_once(study):
    protocol, frames = study
    codes = {code_at(frames, 0), code_at(frames, -1)}
    check(protocol, untreated(frames, *codes), frames, codes, "two first infusions")


def test_what_cannot_be_put_in_place_is_derived_all_again(study):
    protocol, frames = study
    today = todays(frames)[1]
    everyone = frames.subjects["subject_id"].tolist()
    nobody = untreated(frames, *everyone[1:])
    previous = summarize_study(protocol, nobody, today=today)
    code = everyone[0]
    # no other subject treated: nothing to put the subject's rows beside
    again = overview._with_subjects_derived_again(protocol, nobody, previous, {code}, today)
    assert again is None
    got = summarize_study(protocol, nobody, today=today, previous=previous, moved={code})
    assert_as_afresh(got, protocol, nobody, today, "no other subject")
    # the subject's infusions removed (day 0 gone): no rows of its own
    before = summarize_study(protocol, frames, today=today)
    gone = untreated(frames, code)
    assert overview._with_subjects_derived_again(protocol, gone, before, {code}, today) is None
    got = summarize_study(protocol, gone, today=today, previous=before, moved={code})
    assert_as_afresh(got, protocol, gone, today, "day 0 removed")


def test_a_splice_out_of_order_or_keeping_old_rows_fails_the_check(study, monkeypatch):
    """The check is not blind: put in place wrongly, the overview differs from one afresh."""
    protocol, frames = study
    code = code_at(frames, 0)
    put_in_place = overview.put_subjects_in_place

    def appended(kept, derived, codes, position=None):
        others = kept[~kept["subject_id"].isin(codes)]
        return pd.concat([others, derived], ignore_index=True)

    monkeypatch.setattr(overview, "put_subjects_in_place", appended)
    with pytest.raises(AssertionError, match="different"):
        check(protocol, untreated(frames, code), frames, {code}, "appended at the end")

    def old_rows_kept(kept, derived, codes, position=None):
        return put_in_place(kept, derived, set(), position)

    monkeypatch.setattr(overview, "put_subjects_in_place", old_rows_kept)
    moved = first_moved(frames, code, pd.Timedelta(days=1))
    with pytest.raises(AssertionError, match="different"):
        check(protocol, frames, moved, {code}, "old rows kept")


def follow_up_end_as_it_was(
    schedule: Schedule, subjects: pd.DataFrame, *, today: pd.Timestamp, zone: str
) -> Schedule:
    """:func:`derive_follow_up_end` before it kept the visits when nothing is cut (verbatim)."""
    assessments = schedule.visit_assessments
    if assessments.empty or subjects.empty:
        return schedule
    treated = subjects.dropna(subset=["first_infusion"])
    days = subject_days(treated, today, zone).astype(float)
    died, withdrawn = days["died"], days["withdrawn"]
    end = pd.concat([died, withdrawn], axis=1).min(axis=1)
    reason = pd.Series(
        [
            ""
            if pd.isna(e)
            else f"died day {int(d)}"
            if not pd.isna(d) and d == e
            else f"withdrawn day {int(w)}"
            for e, d, w in zip(end, died, withdrawn, strict=True)
        ],
        index=days.index,
        dtype=object,
    )
    end_of_row = end.reindex(assessments["subject_id"].to_numpy()).to_numpy()
    cut = assessments["status"].isin(NOT_DONE).to_numpy() & (
        end_of_row <= assessments["last_day"].to_numpy(dtype=float)
    )
    out = assessments.copy()
    out.loc[cut, "status"] = "not_expected"
    out["not_expected_reason"] = pd.Series("", index=out.index, dtype=object)
    out.loc[cut, "not_expected_reason"] = reason.reindex(
        out.loc[cut, "subject_id"].to_numpy()
    ).to_numpy()
    visits = summarize_visits(out)
    why = (
        out[cut]
        .groupby(["subject_id", "visit_index"], sort=False)["not_expected_reason"]
        .first()
        .rename("_why")
        .reset_index()
    )
    visits = visits.merge(why, on=["subject_id", "visit_index"], how="left")
    notes = []
    for status, not_done, why_text in zip(
        visits["status"], visits["not_done"], visits["_why"], strict=True
    ):
        if not isinstance(why_text, str) or not why_text:
            notes.append(not_done)
        elif status == "not_expected":
            notes.append(f"({why_text})")
        else:
            rest = f"rest not expected ({why_text})"
            notes.append(f"{not_done}; {rest}" if not_done else rest)
    visits["not_done"] = pd.Series(notes, index=visits.index, dtype="str")
    return Schedule(schedule.infusions, out, visits.drop(columns="_why"))


@pytest.mark.parametrize(
    ("column", "day"), [(None, 0), ("died", 40), ("withdrawn", 40), ("died", 2), ("withdrawn", 9)]
)
def test_the_follow_up_end_equals_the_old_code(study, column, day):
    """Nothing cut (no end, or one after every window): the visits given are kept, equal to
    those summarised again; something cut: as before."""
    protocol, frames = study
    subjects = frames.subjects
    ends = {c: subjects[c].where(subjects[c].isna()) for c in ("died", "withdrawn")}
    frames = replace(frames, subjects=subjects.assign(**ends))  # (the cohort's deaths undone)
    if column is not None:
        frames = ended(frames, code_at(frames, 0), column, day)
    for today in todays(frames):
        schedule = derive_schedule(
            protocol,
            frames.subjects,
            frames.infusions,
            frames.observations,
            frames.clinical_status,
            frames.imaging,
            today=today,
        )
        got = derive_follow_up_end(schedule, frames.subjects, today=today, zone=ZONE)
        cut = (got.visit_assessments["not_expected_reason"] != "").any()
        assert cut == (column is not None and day < 30), "an end before the last window cuts"
        assert (got.visits is schedule.visits) == (not cut)
        expected = follow_up_end_as_it_was(schedule, frames.subjects, today=today, zone=ZONE)
        assert_frame_equal(got.visits, expected.visits)
        assert_frame_equal(got.visit_assessments, expected.visit_assessments)
        assert_frame_equal(got.infusions, expected.infusions)


def with_odd_codes(frames: StudyFrames) -> StudyFrames:
    """``frames`` with subject codes that sort otherwise than they read (case, accents, digits,
    spaces), the subjects frame no longer in code order."""
    odd = ["é", "B", "a10", "a9", " x", "Z", "ä", "S_1", "S-1", "s1", "10", "9"]
    codes = frames.subjects["subject_id"].tolist()
    mapping = {
        code: odd[i % len(odd)] + f"-{i // len(odd)}" * (i >= len(odd))
        for i, code in enumerate(codes)
    }

    def renamed(frame: pd.DataFrame) -> pd.DataFrame:
        ids = pd.Series([mapping[c] for c in frame["subject_id"]], index=frame.index, dtype="str")
        return frame.assign(subject_id=ids)

    named = {
        f.name: renamed(getattr(frames, f.name))
        for f in fields(frames)
        if "subject_id" in getattr(frames, f.name).columns
    }
    frames = replace(frames, **named)
    assert frames.subjects["subject_id"].dtype == "str"
    assert not frames.subjects["subject_id"].is_monotonic_increasing
    return frames


def test_subject_codes_of_any_kind_and_subjects_not_in_code_order(study):
    """Each part is put in the order deriving all gives, whatever the codes."""
    protocol, frames = study
    frames = with_odd_codes(frames)
    for index in (0, 1, -1):
        code = code_at(frames, index)
        check(protocol, untreated(frames, code), frames, {code}, f"{code!r}'s first infusion")
        moved = first_moved(frames, code, pd.Timedelta(days=1))
        check(protocol, frames, moved, {code}, f"{code!r}'s day 0 moved")


def summary_as_it_was(overview) -> pd.DataFrame:
    """The per-subject summary as :func:`summarize_study` made it before it counted rows by
    subject in Python (verbatim)."""
    infusion_status, visits = overview.infusions, overview.visits
    deviations = overview.deviations
    summary = overview.subjects[["subject_id", "sex", "age", "baseline_who_scale"]].copy()
    given = infusion_status[infusion_status["actual_day"].notna()].groupby("subject_id").size()
    summary["infusions"] = summary["subject_id"].map(given).fillna(0).astype(int)
    done = visits[visits["status"] == "done"].groupby("subject_id").size()
    summary["visits_complete"] = summary["subject_id"].map(done).fillna(0).astype(int)
    summary["deviations"] = (
        summary["subject_id"].map(deviations.groupby("subject_id").size()).fillna(0).astype(int)
    )
    summary["outcome"] = [
        "died" if pd.notna(d) else "discharged" if pd.notna(c) else "in hospital"
        for d, c in zip(overview.subjects["died"], overview.subjects["discharged"], strict=True)
    ]
    return summary


def test_the_summary_equals_the_old_code(study):
    """Every subject treated, some new and untreated, none treated, odd codes; on a day within
    the schedule and after it."""
    protocol, frames = study
    everyone = frames.subjects["subject_id"].tolist()
    cases = {
        "all treated": frames,
        "some new": newly_enrolled(frames, everyone[0], everyone[-1]),
        "none treated": untreated(frames, *everyone),
        "odd codes": with_odd_codes(frames),
    }
    for what, case in cases.items():
        for today in todays(frames):
            got = summarize_study(protocol, case, today=today)
            assert_frame_equal(got.summary, summary_as_it_was(got), obj=f"summary ({what})")
            counts = got.summary[["infusions", "visits_complete", "deviations"]]
            if what != "none treated":
                assert (counts > 0).any().all(), f"some counts to compare ({what})"
