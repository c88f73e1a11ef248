"""An infusion given or its start edited changes that subject's infusion vital-sign signals
alone: with the observations as they were, only that subject's signals are derived again and put
in place among the others' (kept), and the signals equal those derived afresh (values, order,
index and types). Simulated cohorts of 5 and 30 subjects (UTC+8)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from celltrial.safety import analysis
from celltrial.safety.analysis import derive_safety_inputs
from tests.test_overview_moved_day_0 import (
    code_at,
    first_moved,
    newly_enrolled,
    untreated,
    with_odd_codes,
)
from tests.test_overview_moved_day_0 import study as study  # (the fixture)


def updated_signals(protocol, before, after) -> pd.DataFrame:
    previous = derive_safety_inputs(protocol, before)
    inputs = derive_safety_inputs(
        protocol,
        after,
        previous=previous,
        changed={"infusions"},
        infusions_before=before.infusions,
    )
    return inputs[1]


def check(protocol, before, after, codes: set[str], what: str, monkeypatch) -> None:
    """Updated, the signals equal those derived afresh, and only ``codes``' were derived."""
    derived = []
    signals = analysis._signals

    def spy(protocol, observations, infusions):
        derived.append(set(infusions["subject_id"]))
        return signals(protocol, observations, infusions)

    monkeypatch.setattr(analysis, "_signals", spy)
    got = updated_signals(protocol, before, after)
    monkeypatch.undo()
    assert derived[-1] == codes, f"derived for {derived} ({what})"
    fresh = derive_safety_inputs(protocol, after)[1]
    assert_frame_equal(got, fresh, obj=f"signals ({what})")


@pytest.mark.parametrize("index", [0, 2, -1])
def test_a_first_infusion_derives_that_subjects_signals_alone(study, index, monkeypatch):
    protocol, frames = study
    code = code_at(frames, index)
    # (the observations as they were: the subject's vitals before day 0 and after it)
    before = replace(untreated(frames, code), observations=frames.observations)
    check(protocol, before, frames, {code}, f"{code}'s first infusion", monkeypatch)


def test_a_first_infusion_of_a_newly_enrolled_subject(study, monkeypatch):
    protocol, frames = study
    code = code_at(frames, 1)
    after = newly_enrolled(frames, code_at(frames, -1))
    before = replace(untreated(after, code), observations=after.observations)
    check(protocol, before, after, {code}, f"{code}'s first infusion, new", monkeypatch)


@pytest.mark.parametrize("number", [2, 3])
def test_a_later_infusion_given(study, number, monkeypatch):
    protocol, frames = study
    code = code_at(frames, 0)
    infusions = frames.infusions
    drop = (infusions["subject_id"] == code) & (infusions["number"] == number)
    before = replace(frames, infusions=infusions[~drop].reset_index(drop=True))
    check(protocol, before, frames, {code}, f"{code}'s infusion {number}", monkeypatch)


@pytest.mark.parametrize("by", [pd.Timedelta(hours=3), pd.Timedelta(days=-1)])
def test_an_infusion_start_edited(study, by, monkeypatch):
    protocol, frames = study
    code = code_at(frames, -1)
    moved = first_moved(frames, code, by)
    after = replace(moved, observations=frames.observations)
    check(protocol, frames, after, {code}, f"{code}'s start moved {by}", monkeypatch)
    infusions = frames.infusions.copy()
    second = (infusions["subject_id"] == code) & (infusions["number"] == 2)
    infusions.loc[second, "start_time"] += by
    check(
        protocol, frames, replace(frames, infusions=infusions), {code}, "second moved", monkeypatch
    )


def test_subject_codes_of_any_kind(study, monkeypatch):
    protocol, frames = study
    frames = with_odd_codes(frames)
    for index in (0, 1, -1):
        code = code_at(frames, index)
        before = replace(untreated(frames, code), observations=frames.observations)
        check(protocol, before, frames, {code}, f"{code!r}'s first infusion", monkeypatch)


def test_two_subjects_at_once(study, monkeypatch):
    protocol, frames = study
    codes = {code_at(frames, 0), code_at(frames, -1)}
    before = replace(untreated(frames, *codes), observations=frames.observations)
    check(protocol, before, frames, codes, "two first infusions", monkeypatch)


def test_signals_put_in_place_out_of_order_fail_the_check(study, monkeypatch):
    """The check is not blind: the subject's signals appended after the others' differ."""
    protocol, frames = study
    code = code_at(frames, 0)
    before = replace(untreated(frames, code), observations=frames.observations)
    previous = derive_safety_inputs(protocol, before)[1]
    with_them = analysis._with_signals_derived_again(protocol, frames, previous, {code})
    fresh = derive_safety_inputs(protocol, frames)[1]
    assert_frame_equal(with_them, fresh)
    others = previous[previous["subject_id"] != code]
    own = fresh[fresh["subject_id"] == code]
    appended = pd.concat([others, own], ignore_index=True)
    with pytest.raises(AssertionError, match="different"):
        assert_frame_equal(appended, fresh)
    # a start edited: the subject's old signals must go
    moved = replace(
        first_moved(frames, code, pd.Timedelta(hours=3)), observations=frames.observations
    )
    fresh = derive_safety_inputs(protocol, moved)[1]
    previous = derive_safety_inputs(protocol, frames)[1]
    own = fresh[fresh["subject_id"] == code]
    old_kept = pd.concat([previous, own], ignore_index=True).sort_values(
        "subject_id", kind="stable"
    )
    with pytest.raises(AssertionError):
        assert_frame_equal(old_kept.reset_index(drop=True), fresh)


def test_no_subject_left_or_no_signal_derives_all(study, monkeypatch):
    protocol, frames = study
    everyone = frames.subjects["subject_id"].tolist()
    nobody = untreated(frames, *everyone)
    one = untreated(frames, *everyone[1:])
    got = updated_signals(protocol, replace(nobody, observations=one.observations), one)
    assert_frame_equal(got, derive_safety_inputs(protocol, one)[1])
