"""The caveat for values reported at a detection limit (qualifier <, <=, >, >=)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from celltrial.efficacy.observations import limit_caveat


def test_a_column_without_any_qualifier_has_no_caveat_and_no_library_warning():
    # read from a file whose qualifier column is empty, pandas makes it a float column of NaN
    frame = pd.DataFrame({"value": [1.0, 2.0], "qualifier": [np.nan, np.nan]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas warns of filling a float column with text
        assert limit_caveat(frame) is None


@pytest.mark.parametrize("dtype", [object, "str"])
def test_values_at_a_limit_are_counted_with_their_kinds(dtype):
    frame = pd.DataFrame({"qualifier": pd.Series(["<", None, " >= ", "", "<"], dtype=dtype)})
    caveat = limit_caveat(frame)
    assert caveat is not None
    assert caveat.startswith("3 value(s) were reported at a limit (<, >=)")


def test_no_caveat_for_no_rows_or_no_column():
    assert limit_caveat(pd.DataFrame({"qualifier": []})) is None
    assert limit_caveat(pd.DataFrame({"value": [1.0]})) is None
