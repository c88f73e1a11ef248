"""The external comparison's code as it was before issue 26's speed work, kept as the reference
that tests/external/test_results_unchanged.py compares the faster code with (verbatim, but for
the module references)."""

# ruff: noqa

from __future__ import annotations

import numpy as np
import pandas as pd

from celltrial.external.eligibility import DAY, _age_band
from celltrial.external.spec import TargetTrialSpec
from celltrial.frames import check_columns, lookup


def derive_window_values(
    observations: pd.DataFrame,
    time_zero: pd.DataFrame,
    *,
    test: str,
    window: pd.Timedelta,
) -> pd.DataFrame:
    """For each row of ``time_zero`` (subject_id, time_zero) the last ``test`` value before it.

    Looks only at ``time_zero − window ≤ time < time_zero``. Returns a new frame aligned with
    ``time_zero``'s rows: ``value`` and ``value_time`` (NaN/NaT when the window holds none).
    """
    check_columns(observations, ("subject_id", "time", "test", "value"), what="observation")
    left = time_zero[["subject_id", "time_zero"]].copy()
    left["_row"] = np.arange(len(left))
    left["subject_id"] = left["subject_id"].astype(str)
    rows = observations.loc[
        (observations["test"] == test) & observations["value"].notna(),
        ["subject_id", "time", "value"],
    ]
    right = pd.DataFrame(
        {
            "subject_id": rows["subject_id"].astype(str).to_numpy(),
            "value_time": pd.to_datetime(rows["time"], utc=True).array,
            "value": pd.to_numeric(rows["value"], errors="coerce").to_numpy(float),
        }
    )
    right["value_time"] = pd.to_datetime(right["value_time"], utc=True)
    right["subject_id"] = right["subject_id"].astype(left["subject_id"].dtype)
    # one time resolution on both sides (merge_asof refuses mixed units)
    right["value_time"] = right["value_time"].astype("datetime64[ns, UTC]")
    left["time_zero"] = pd.to_datetime(left["time_zero"], utc=True).astype("datetime64[ns, UTC]")
    # stable sort keeps frame order among equal times: the last row at the latest time wins
    right = right.sort_values("value_time", kind="stable")
    valid = left["time_zero"].notna()
    merged = pd.merge_asof(
        left[valid].sort_values("time_zero", kind="stable"),
        right,
        left_on="time_zero",
        right_on="value_time",
        by="subject_id",
        direction="backward",
        allow_exact_matches=False,
    )
    too_old = merged["value_time"] < merged["time_zero"] - window
    merged.loc[too_old, ["value"]] = np.nan
    merged.loc[too_old, ["value_time"]] = pd.NaT
    out = pd.DataFrame(
        {
            "value": np.full(len(left), np.nan),
            "value_time": pd.Series(pd.NaT, index=range(len(left)), dtype="datetime64[ns, UTC]"),
        }
    )
    order = merged["_row"].to_numpy()
    out.loc[order, "value"] = merged["value"].to_numpy(float)
    times = pd.Series(pd.NaT, index=range(len(left)), dtype="datetime64[ns, UTC]")
    times.iloc[order] = pd.to_datetime(merged["value_time"], utc=True).astype(times.dtype).array
    out["value_time"] = times
    return out


def _covariates(frame: pd.DataFrame, subjects: pd.DataFrame, spec: TargetTrialSpec) -> None:
    info = subjects.set_index("subject_id")
    ids = frame["subject_id"]
    frame["sex"] = ids.map(info["sex"]).to_numpy()
    frame["age"] = pd.to_numeric(ids.map(info["age"]), errors="coerce").to_numpy(float)
    frame["male"] = np.where(
        frame["sex"].isna(), np.nan, (frame["sex"].astype(str).str.upper() == "M").astype(float)
    )
    frame["age_band"] = _age_band(frame["age"], spec.matching.age_bands).to_numpy()
    if "admitted" in info.columns:
        admitted = pd.to_datetime(lookup(ids, info["admitted"]), utc=True)
        admitted.index = frame.index
        elapsed = pd.to_datetime(frame["time_zero"], utc=True) - admitted
        frame["days_since_admission"] = (elapsed / DAY).to_numpy(float)
    else:
        frame["days_since_admission"] = np.nan


def _marker_values(
    frame: pd.DataFrame, observations: pd.DataFrame, spec: TargetTrialSpec, arm: str
) -> None:
    window = pd.Timedelta(hours=spec.time_zero.baseline_window_hours)
    for marker in spec.baseline_markers:
        found = derive_window_values(
            observations, frame, test=spec.test_of(marker, arm), window=window
        )
        frame[marker] = found["value"].to_numpy(float)
        frame[f"{marker}_time"] = found["value_time"].array


def derive_aligned_observations(
    observations: pd.DataFrame,
    cohort: pd.DataFrame,
    *,
    spec: TargetTrialSpec,
    arm: str,
    markers: list[str] | None = None,
) -> pd.DataFrame:
    """Values of ``markers`` of the subjects in ``cohort`` on days since their time zero.

    ``cohort``: one row per subject with subject_id, time_zero and the baseline value columns of
    :mod:`~celltrial.external.eligibility` (named by marker). The baseline value becomes the
    day-0 row (``is_baseline``); every value after time zero up to the end of the trajectory
    window follows with ``hours`` and nominal ``day``. Returns columns subject_id, arm, marker,
    test, time, hours, day, value, is_baseline.
    """
    check_columns(cohort, ("subject_id", "time_zero"), what="cohort")
    markers = list(markers or spec.outcomes.trajectory_markers)
    last_day = spec.outcomes.trajectory_days[1]
    zero = cohort.set_index("subject_id")["time_zero"]
    parts = []
    for marker in markers:
        test = spec.test_of(marker, arm)
        rows = observations[
            (observations["test"] == test)
            & observations["subject_id"].isin(zero.index)
            & observations["value"].notna()
        ]
        t0 = pd.to_datetime(lookup(rows["subject_id"], zero), utc=True)
        hours = (pd.to_datetime(rows["time"], utc=True) - t0) / pd.Timedelta(hours=1)
        keep = (hours > 0) & (hours <= (last_day + 0.5) * 24)
        post = pd.DataFrame(
            {
                "subject_id": rows["subject_id"].to_numpy(),
                "arm": arm,
                "marker": marker,
                "test": test,
                "time": pd.to_datetime(rows["time"], utc=True).to_numpy(),
                "hours": hours.to_numpy(float),
                "value": pd.to_numeric(rows["value"], errors="coerce").to_numpy(float),
                "is_baseline": False,
            }
        )[keep.to_numpy()]
        if marker in cohort.columns:
            base = cohort[cohort[marker].notna()]
            base_time = (
                pd.to_datetime(base[f"{marker}_time"], utc=True)
                if f"{marker}_time" in base.columns
                else pd.to_datetime(base["time_zero"], utc=True)
            )
            pre = pd.DataFrame(
                {
                    "subject_id": base["subject_id"].to_numpy(),
                    "arm": arm,
                    "marker": marker,
                    "test": test,
                    "time": base_time.to_numpy(),
                    "hours": (
                        (base_time - pd.to_datetime(base["time_zero"], utc=True))
                        / pd.Timedelta(hours=1)
                    ).to_numpy(float),
                    "value": base[marker].to_numpy(float),
                    "is_baseline": True,
                }
            )
            parts.append(pre)
        parts.append(post)
    if not parts:
        return pd.DataFrame(
            columns=[
                "subject_id",
                "arm",
                "marker",
                "test",
                "time",
                "hours",
                "day",
                "value",
                "is_baseline",
            ]
        )
    out = pd.concat(parts, ignore_index=True)
    out["day"] = np.where(out["is_baseline"], 0, np.round(out["hours"].to_numpy(float) / 24.0))
    out["day"] = out["day"].astype(int)
    return out.sort_values(["marker", "arm", "subject_id", "hours"], kind="stable").reset_index(
        drop=True
    )
