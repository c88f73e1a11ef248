"""The 5-subject demo computes exactly the numbers it computed before the speed work of issue 26
(efficacy, external comparison, safety, overview, stored CT results; to 1e-8)."""

from __future__ import annotations

import pandas as pd

from tests.e2e.demo_numbers import (
    collect_demo_numbers,
    compare_numbers,
    flatten_numbers,
    read_reference,
)


def test_demo_numbers_are_unchanged(default_demo):
    reference = read_reference()
    assert len(reference) > 20_000
    problems = compare_numbers(reference, collect_demo_numbers(default_demo))
    assert not problems, "\n".join(problems)


def test_the_comparison_finds_a_change_beyond_1e8():
    reference = {".a": 1.0, ".b": 250.0, ".c": None, ".d": 3.0}
    assert compare_numbers(reference, {**reference, ".e": 9.0}) == []
    assert compare_numbers(reference, {**reference, ".a": 1.0 + 5e-9, ".b": 250.0 + 2e-6}) == []
    assert compare_numbers(reference, {**reference, ".a": 1.0 + 2e-8}) == [
        ".a: 1.00000002 (was 1.0)"
    ]
    assert compare_numbers(reference, {**reference, ".c": 0.0}) == [".c: 0.0 (was None)"]
    variance = ".efficacy.mixed.IL6.subject_variance"  # compared to 1e-6 (see LOOSER)
    assert compare_numbers({variance: 0.3}, {variance: 0.3 + 2e-7}) == []
    assert compare_numbers({variance: 0.3}, {variance: 0.3 + 2e-6}) != []
    assert compare_numbers(reference, {".a": 1.0, ".b": 250.0, ".c": None}) == [
        ".d: missing (was 3.0)"
    ]


def test_numbers_are_found_in_frames_and_mappings():
    frame = pd.DataFrame(
        {"subject": ["A", "B"], "value": [1.5, float("nan")], "time": pd.to_datetime([0, 1e9])}
    )
    numbers = flatten_numbers({"t": frame, "n": (2, True), "text": "x"})
    assert numbers == {
        ".t[0].value": 1.5,
        ".t[1].value": None,
        ".t[0].time": 0.0,
        ".t[1].time": 1.0,
        ".n[0]": 2.0,
        ".n[1]": 1.0,
    }
