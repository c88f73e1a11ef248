"""Small hand-made observation frames for the efficacy tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2020-02-10 09:00", tz="UTC")


def observations(rows: list[dict]) -> pd.DataFrame:
    """An observation frame from partial rows (missing columns filled with defaults)."""
    defaults = {
        "subject_id": "S1",
        "time": T0,
        "study_day": np.nan,
        "test": "CRP",
        "value": 1.0,
        "ref_low": np.nan,
        "ref_high": np.nan,
        "qualifier": "",
    }
    extra = [key for row in rows for key in row if key not in defaults]
    columns = list(dict.fromkeys([*defaults, *extra]))
    return pd.DataFrame([{**defaults, **row} for row in rows], columns=columns)
