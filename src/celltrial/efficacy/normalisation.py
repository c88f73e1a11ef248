"""Time to normalisation: the first value back inside the reference range after baseline.

Example: recovery from lymphopenia (lymphocytes back to ≥ the lower reference limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.efficacy.observations import reference_range
from celltrial.frames import check_columns


@dataclass(frozen=True, eq=False)
class NormalisationSummary:
    """Per subject × test time to normalisation (``summary``) and counts per test (``by_test``)."""

    summary: pd.DataFrame
    by_test: pd.DataFrame
    method: str
    caveats: tuple[str, ...]


def _ranges(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's reference range: the lab's own where given, else the catalogue default."""
    low = pd.to_numeric(frame["ref_low"], errors="coerce") if "ref_low" in frame else None
    high = pd.to_numeric(frame["ref_high"], errors="coerce") if "ref_high" in frame else None
    defaults = {t: reference_range(str(t)) for t in frame["test"].unique()}
    default_low = frame["test"].map(lambda t: defaults[t][0]).to_numpy(float)
    default_high = frame["test"].map(lambda t: defaults[t][1]).to_numpy(float)
    row_low = default_low if low is None else low.to_numpy(float)
    row_high = default_high if high is None else high.to_numpy(float)
    return (
        np.where(np.isnan(row_low), default_low, row_low),
        np.where(np.isnan(row_high), default_high, row_high),
    )


def summarize_time_to_normal(observations: pd.DataFrame) -> NormalisationSummary:
    """First post-baseline value inside the reference range, per subject × test.

    Needs the columns of :func:`~celltrial.efficacy.baseline.derive_baseline`. "Inside" is
    ``ref_low ≤ value ≤ ref_high`` (edges inclusive), with the row's own range where given, else
    the catalogue's. Subjects already inside the range at baseline are not at risk: they are
    flagged and not counted as normalising. Subjects who never normalise are censored at their
    last post-baseline observation (``censored_day``).

    ``summary`` columns: subject_id, test, baseline, abnormal_at_baseline, normalised, day, time
    (of the first normal value) and censored_day.
    """
    check_columns(
        observations,
        (
            "subject_id",
            "test",
            "time",
            "study_day",
            "value",
            "baseline",
            "baseline_time",
            "is_baseline",
        ),
        what="observation (run derive_baseline first)",
    )
    frame = observations[observations["baseline"].notna()].copy()
    low, high = _ranges(frame)
    value = frame["value"].to_numpy(float)
    frame["_known"] = ~(np.isnan(low) & np.isnan(high))
    frame["_inside"] = (value >= np.nan_to_num(low, nan=-np.inf)) & (
        value <= np.nan_to_num(high, nan=np.inf)
    )
    frame["_inside"] &= frame["_known"] & ~np.isnan(value)

    keys = ["subject_id", "test"]
    base_rows = frame[frame["is_baseline"].astype(bool)].drop_duplicates(keys)
    subjects = base_rows[[*keys, "baseline", "_inside", "_known"]].rename(
        columns={"_inside": "_normal_at_baseline"}
    )
    post = frame[(frame["time"] > frame["baseline_time"]) & frame["value"].notna()]
    post = post.sort_values("time", kind="stable")
    first_normal = post[post["_inside"]].drop_duplicates(keys)[[*keys, "study_day", "time"]]
    last_seen = post.drop_duplicates(keys, keep="last")[[*keys, "study_day"]]

    table = subjects.merge(first_normal.rename(columns={"study_day": "day"}), on=keys, how="left")
    table = table.merge(last_seen.rename(columns={"study_day": "_last"}), on=keys, how="left")
    table["abnormal_at_baseline"] = table["_known"] & ~table["_normal_at_baseline"]
    table["normalised"] = table["abnormal_at_baseline"] & table["day"].notna()
    table["day"] = table["day"].where(table["normalised"])
    table["time"] = table["time"].where(table["normalised"])
    table["censored_day"] = table["_last"].where(
        table["abnormal_at_baseline"] & ~table["normalised"]
    )
    table = table[
        [*keys, "baseline", "abnormal_at_baseline", "normalised", "day", "time", "censored_day"]
    ]
    table = table.sort_values(keys, kind="stable").reset_index(drop=True)

    at_risk = table[table["abnormal_at_baseline"]]
    by_test = (
        at_risk.groupby("test")
        .agg(
            n_abnormal_at_baseline=("subject_id", "size"),
            n_normalised=("normalised", "sum"),
            median_day_if_normalised=("day", "median"),
        )
        .reset_index()
    )
    caveats = []
    unknown = sorted(map(str, subjects.loc[~subjects["_known"], "test"].unique()))
    if unknown:
        caveats.append(f"no reference range known for {', '.join(unknown)}: not assessed")
    if (by_test["n_normalised"] < by_test["n_abnormal_at_baseline"]).any():
        caveats.append(
            "some subjects never normalised (censored): the median over those who did is not the "
            "median time to normalisation (use a Kaplan–Meier estimate for that)"
        )
    return NormalisationSummary(
        summary=table,
        by_test=by_test,
        method=(
            "first post-baseline value with ref_low ≤ value ≤ ref_high (row's range, else the "
            "catalogue's), in subjects outside the range at baseline; study day of that value"
        ),
        caveats=tuple(caveats),
    )
