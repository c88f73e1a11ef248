"""When a subject's day 0 moves (a first infusion given, or its time edited), the web app gives new
study days to that subject's rows alone: every frame equals the frames read afresh (values,
order, index and types), and a frame without rows of that subject is kept as it is. Simulated
cohorts of 5 and 30 subjects (UTC+8)."""

from __future__ import annotations

from dataclasses import fields, replace

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from celltrial.services import monitoring
from celltrial.store.frames import first_infusions
from tests.test_overview_moved_day_0 import (
    ZONE,
    code_at,
    first_moved,
    newly_enrolled,
    untreated,
    with_infusions,
)
from tests.test_overview_moved_day_0 import study as study  # (the fixture)


def with_day_0(before, after, *, all_rows: bool = False):
    """``before``'s frames with ``after``'s infusions, their days derived as the web app does."""
    first = first_infusions(after.infusions)
    old = None if all_rows else first_infusions(before.infusions)
    return monitoring._with_day_0(
        replace(before, infusions=after.infusions), first, ZONE, before=old
    )


def assert_frames_equal(got, expected, what: str) -> None:
    for frame in fields(expected):
        name = frame.name
        assert_frame_equal(getattr(got, name), getattr(expected, name), obj=f"{name} ({what})")


@pytest.mark.parametrize("index", [0, 2, -1])
def test_a_first_infusion_gives_that_subjects_rows_new_days(study, index):
    _, frames = study
    code = code_at(frames, index)
    before = untreated(frames, code)
    got = with_day_0(before, frames)
    assert_frames_equal(got, frames, f"{code}'s first infusion")
    assert_frames_equal(with_day_0(before, frames, all_rows=True), frames, "every row")


def test_a_first_infusions_time_edited(study):
    _, frames = study
    code = code_at(frames, 1)
    for by in (pd.Timedelta(days=1), pd.Timedelta(hours=-30), pd.Timedelta(minutes=5)):
        after = first_moved(frames, code, by)
        assert_frames_equal(with_day_0(frames, after), after, f"{code}'s day 0 moved {by}")


def test_a_subject_without_rows_keeps_the_frames_as_they_are(study):
    _, frames = study
    code = code_at(frames, 0)
    after = with_infusions(newly_enrolled(frames, code), frames.infusions)  # nothing recorded
    before = untreated(after, code)
    got = with_day_0(before, after)
    assert_frames_equal(got, after, f"{code}'s first infusion, nothing recorded")
    for name in ("observations", "adverse_events", "clinical_status", "imaging"):
        assert getattr(got, name) is getattr(before, name), name


def test_new_days_for_the_wrong_subjects_fail_the_check(study):
    """The check is not blind: the moved subject's rows left with their old days differ."""
    _, frames = study
    code = code_at(frames, 0)
    before = untreated(frames, code)
    first = first_infusions(frames.infusions)
    stale = monitoring._with_day_0(
        replace(before, infusions=frames.infusions), first, ZONE, before=first
    )
    with pytest.raises(AssertionError, match="different"):
        assert_frames_equal(stale, frames, "nobody moved")
