"""Small hand-made frames for the external-comparison tests."""

from __future__ import annotations

import pandas as pd

T = pd.Timestamp("2020-02-01T00:00:00Z")


def hours(h: float) -> pd.Timestamp:
    return T + pd.Timedelta(hours=h)


def subjects(rows: list[dict]) -> pd.DataFrame:
    base = {"sex": "M", "age": 60.0, "admitted": T, "discharged": pd.NaT, "died": pd.NaT}
    frame = pd.DataFrame([base | r for r in rows])
    for column in ("admitted", "discharged", "died", "first_infusion"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def observations(rows: list[tuple[str, float, str, float]]) -> pd.DataFrame:
    """(subject_id, hours after T, test, value) rows."""
    return pd.DataFrame(
        {
            "subject_id": [r[0] for r in rows],
            "time": pd.to_datetime([hours(r[1]) for r in rows], utc=True),
            "test": [r[2] for r in rows],
            "value": [float(r[3]) for r in rows],
        }
    )
