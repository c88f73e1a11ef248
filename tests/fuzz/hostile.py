"""Hostile values: what a damaged or careless export puts where data belong."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

#: Text that looks like data but is not what a reader expects.
TEXTS = (
    "",
    " ",
    "\t",
    "  \u3000 ",
    "NaN",
    "nan",
    "NA",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "1e308",
    "-1e308",
    "1e400",
    "-1e400",
    "1" + "0" * 400,
    "9" * 5000,
    "5e-324",
    "0",
    "-1",
    "1,234",
    "0,8",
    "<0.5",
    ">1000",
    "≥1000",
    "pending",
    "=1+1",
    '=HYPERLINK("http://example.org/x","12")',
    "=A1",
    "#DIV/0!",
    "#N/A",
    "31/02/2020",
    "2020-02-30 08:00",
    "0001-01-01",
    "9999-12-31",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00+08:00",
    "43870",
    "43870.5",
    "08:00",
    "now",
    "today",
    "Feb",
    "2020",
    "2020-02-10 08:00",
    "2020-02-10T08:00:00+08:00",
    "S001",
    "S001 ",
    "subject_id",
    "患者",
    "\u202eevil",
    "\ufeff",
    "a\nb",
    'quote"inside',
    "x" * 5000,
    "true",
    "yes",
    "maybe",
    "mg/L",
    "10^9/L",
    "furlongs",
)

#: Typed cells a workbook can hold besides text.
TYPED = (
    0,
    -1,
    1e308,
    -1e308,
    5e-324,
    2**63 - 1,
    -(2**63),
    True,
    False,
    dt.datetime(1, 1, 1),
    dt.datetime(1899, 12, 30, 8, 0),
    dt.datetime(9999, 12, 31, 23, 59),
    dt.datetime(2020, 2, 10, 8, 0),
    dt.date(2020, 2, 10),
    dt.time(8, 0),
    dt.timedelta(days=3),
    43870,
    43870.5,
)


def text_values() -> st.SearchStrategy[str]:
    """Text cells: the pool above, numbers at the edges, and arbitrary short text."""
    numbers = st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.integers(
        min_value=-(10**400), max_value=10**400
    ).map(str)
    return st.one_of(
        st.sampled_from(TEXTS),
        numbers,
        st.text(max_size=12),
    )


def cell_values() -> st.SearchStrategy[object]:
    """Workbook cells: text as above or a typed value (number, date, time, boolean)."""
    return st.one_of(text_values(), st.sampled_from(TYPED), st.floats(allow_nan=True))


#: JSON values put where a FHIR resource expects something else.
JSON_VALUES = (
    None,
    True,
    0,
    -1,
    1.5,
    1e308,
    "",
    " ",
    "x",
    "Patient/",
    "urn:uuid:",
    "2020-02-31",
    "0001-01-01",
    "9999-12-31T23:59:59Z",
    "08:00",
    "now",
    [],
    [None],
    [1, 2],
    {},
    {"reference": 5},
    {"coding": "x"},
    {"coding": [{"code": ["1988-5"]}]},
    {"value": "12", "unit": 5},
    {"value": [], "code": {}},
    "x" * 5000,
)
#: Raw JSON literals (put into the text as written): beyond what JSON numbers hold, or not JSON.
JSON_LITERALS = ("1e400", "-1e400", "1" + "0" * 400, "9" * 5000, "NaN", "-Infinity", '"\\u0000"')

#: YAML text put where the protocol expects a value.
YAML_LITERALS = (
    "~",
    "[]",
    "{}",
    "''",
    "1e400",
    "9" * 5000,
    ".nan",
    ".inf",
    "-.inf",
    "-1",
    "0",
    "2020-02-31",
    "0001-01-01",
    "9999-12-31",
    "yes",
    "!!binary aGVsbG8=",
    "!!python/object:os.system x",
    "*nowhere",
    "&a x",
    '"\\x00"',
    '"\\u202e"',
    "[[[[[[[[[[]]]]]]]]]]",
    "x" * 5000,
)
