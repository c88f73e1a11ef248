"""Parsing result text: qualifiers, decimal commas, no-result markers, text, limits."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from celltrial.ingest.values import AMBIGUOUS, EMPTY, LIMIT_ONLY, OK, TEXT, parse_values


@pytest.mark.parametrize(
    ("raw", "value", "qualifier", "status"),
    [
        ("<0.5", 0.5, "<", OK),
        (">1000", 1000.0, ">", OK),
        ("≤2", 2.0, "<=", OK),
        (">= 7", 7.0, ">=", OK),
        ("0,8", 0.8, "", OK),
        (" 12.5 ", 12.5, "", OK),
        ("1e3", 1000.0, "", OK),
        ("NA", None, "", EMPTY),
        ("—", None, "", EMPTY),
        ("", None, "", EMPTY),
        ("pending", None, "", TEXT),
        ("inf", None, ">", LIMIT_ONLY),
        ("-inf", None, "<", LIMIT_ONLY),
        ("1,234", None, "", AMBIGUOUS),
    ],
)
def test_parse_text(raw, value, qualifier, status):
    parsed = parse_values(pd.Series([raw], dtype=object)).iloc[0]
    assert parsed["status"] == status
    assert parsed["qualifier"] == qualifier
    if value is None:
        assert math.isnan(parsed["value"])
    else:
        assert parsed["value"] == pytest.approx(value)


def test_parse_numbers_keeps_index():
    parsed = parse_values(pd.Series([1.5, None, float("inf")], index=[7, 8, 9]))
    assert list(parsed.index) == [7, 8, 9]
    assert list(parsed["status"]) == [OK, EMPTY, LIMIT_ONLY]


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "<1e400", "1" + "0" * 400])
def test_a_number_beyond_what_is_stored_is_text_not_infinity(raw):
    # "1e400" was stored as infinity, a value no analysis can use
    parsed = parse_values(pd.Series([raw, "12"], dtype=object))
    assert parsed["status"].tolist() == [TEXT, OK]
    assert math.isnan(parsed["value"].iloc[0])


def test_whole_numbers_too_large_for_a_float_raise_nothing():
    # pandas reads a 400-digit number in a CSV as a Python int; to_numeric overflowed on it
    parsed = parse_values(pd.Series([-(3**900), 12], dtype=object))
    assert parsed["status"].tolist() == [TEXT, OK]
