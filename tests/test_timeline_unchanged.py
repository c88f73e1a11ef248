"""derive_study_day converts the subjects' day 0 as a column (no Timestamp per row): the frames
it returns equal those of the previous code, kept here as the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from celltrial.timeline import compute_study_days, derive_study_day


def reference_derive_study_day(
    frame: pd.DataFrame, first_infusions: pd.Series, zone: str, *, time_column: str = "time"
) -> pd.DataFrame:
    """The previous derive_study_day (day 0 made objects with ``to_numpy()``)."""
    out = frame.copy()
    if len(out) == 0:
        out["study_day"] = pd.Series(dtype="Int64")
        return out
    day0 = pd.to_datetime(first_infusions.reindex(out["subject_id"]).to_numpy(), utc=True)
    out["study_day"] = compute_study_days(out[time_column], pd.Series(day0, index=out.index), zone)
    return out


def first_infusions(rng: np.random.Generator, codes: list[str], kind: str) -> pd.Series:
    """Day 0 of some of ``codes`` (the others have none), in the dtype ``kind`` names."""
    treated = [c for c in codes if rng.random() < 0.7]
    starts = pd.Series(
        pd.to_datetime("2021-03-20", utc=True)
        + pd.to_timedelta(rng.integers(0, 20 * 24 * 60, len(treated)), unit="min"),
        index=pd.Index(treated, name="subject_id"),
    )
    if kind == "us":
        return starts.astype("datetime64[us, UTC]")
    if kind == "local":
        return starts.dt.tz_convert("Europe/Paris")
    if kind == "objects":
        return pd.Series([*starts.tolist()[:-1], None][: len(starts)], index=starts.index)
    if kind == "none":
        return starts.iloc[:0]
    return starts


@pytest.mark.parametrize("kind", ["ns", "us", "local", "objects", "none"])
@pytest.mark.parametrize("zone", ["Europe/Paris", "Asia/Shanghai", "UTC"])
@pytest.mark.parametrize("seed", range(6))
def test_study_days_equal_the_previous_code(kind: str, zone: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = [f"S{i:03d}" for i in range(12)]
    rows = int(rng.integers(1, 80))
    times = pd.Series(
        pd.to_datetime("2021-03-15", utc=True)
        + pd.to_timedelta(rng.integers(0, 30 * 24 * 60, rows), unit="min")
    )
    times[rng.random(rows) < 0.1] = pd.NaT
    frame = pd.DataFrame(
        {
            "subject_id": rng.choice([*codes, "S999"], rows),  # S999 enrolled nowhere
            "time": times,
            "value": rng.normal(size=rows),
        },
        index=rng.permutation(rows) + 100,  # not a default index
    )
    first = first_infusions(rng, codes, kind)
    expected = reference_derive_study_day(frame, first, zone)
    assert_frame_equal(derive_study_day(frame, first, zone), expected)
    empty = frame.iloc[:0]
    assert_frame_equal(
        derive_study_day(empty, first, zone), reference_derive_study_day(empty, first, zone)
    )
