"""The plain values the dashboard and the subject views are made of: Python's own strings,
integers, booleans and floats are taken as they are (the commonest values, without the general
checks), columns are read as lists, and every value converts as the general conversion of each
value the column gave did."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from celltrial.services import monitoring


def plain_as_it_was(value: Any) -> Any:
    """:func:`monitoring._plain` before it took Python's plain values at once (verbatim)."""
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


class Text(str):
    """A subclass of str (not taken at once)."""


VALUES = [
    "S001",
    "",
    Text("sub"),
    np.str_("numpy text"),
    0,
    -3,
    2**70,
    True,
    False,
    np.bool_(True),
    1.5,
    -0.0,
    float("nan"),
    float("inf"),
    np.float64(2.5),
    np.float64("nan"),
    np.float32(1.25),
    np.int64(7),
    np.int32(-2),
    None,
    pd.NA,
    pd.NaT,
    np.datetime64("NaT"),
    pd.Timestamp("2026-12-08T01:00", tz="UTC"),
    pd.Timestamp("2026-12-08T09:00", tz="Asia/Shanghai"),
    datetime(2026, 12, 8, tzinfo=UTC),
    Decimal("1.10"),
    (1, 2),
    [3],
]


def test_every_value_converts_as_before():
    for value in VALUES:
        got, expected = monitoring._plain(value), plain_as_it_was(value)
        assert type(got) is type(expected), repr(value)
        assert got == expected, repr(value)


def test_frame_columns_convert_as_before():
    frame = pd.DataFrame(
        {
            "code": pd.Series(["S1", None, "S3"], dtype="str"),
            "day": pd.Series([1, None, 3], dtype="Int64"),
            "count": [1, 2, 3],
            "value": [0.5, float("nan"), 2.0],
            "flag": [True, False, True],
            "known": pd.Series([True, None, False], dtype="boolean"),
            "note": pd.Series(["a", None, "c"], dtype="string"),
            "when": pd.to_datetime(["2026-12-01", None, "2026-12-03"], utc=True),
            "any": [("a",), None, 4.0],
        }
    )
    got = monitoring._rows(frame, list(frame.columns))
    expected = [
        {c: plain_as_it_was(v) for c, v in zip(frame.columns, row, strict=True)}
        for row in zip(*(frame[c] for c in frame.columns), strict=True)
    ]
    assert got == expected
    assert [type(v) for row in got for v in row.values()] == [
        type(v) for row in expected for v in row.values()
    ]
