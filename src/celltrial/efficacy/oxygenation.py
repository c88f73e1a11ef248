"""Oxygenation: SpO2, FiO2, SpO2/FiO2 (S/F), PaO2/FiO2 (P/F) and the ROX index.

Each SpO2 (and each PaO2) is paired with the FiO2 and the respiratory rate of the same subject
taken nearest in time, within a tolerance (default 60 min). S/F is only valid while SpO2 ≤ 97 %:
on the flat top of the oxyhaemoglobin dissociation curve SpO2 no longer tracks PaO2 (Rice et al.,
Chest 2007), so S/F from a higher SpO2 is kept but flagged ``sf_valid = False`` and left out of
summaries. ROX = (SpO2/FiO2) / respiratory rate (Roca et al., AJRCCM 2019) at every time with
SpO2, FiO2 and a respiratory rate, as published: no SpO2 limit. Where SpO2 > 97 % its S/F part is
insensitive (the flat top of the curve), which the caveats say; it is not a filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.efficacy.observations import check_tz_aware
from celltrial.frames import check_columns

#: S/F is valid only where SpO2 is at or below this (%).
SF_MAX_SPO2 = 97.0

OXYGENATION_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "time",
    "study_day",
    "kind",
    "spo2",
    "pao2",
    "fio2",
    "fio2_minutes",
    "resp",
    "sf_ratio",
    "sf_valid",
    "pf_ratio",
    "rox",
    "flag",
)


def _series(observations: pd.DataFrame, test: str) -> pd.DataFrame:
    rows = observations.loc[
        (observations["test"] == test) & observations["value"].notna(),
        ["subject_id", "time", "study_day", "value"],
    ]
    rows = rows.assign(
        subject_id=rows["subject_id"].astype(str),
        value=pd.to_numeric(rows["value"], errors="coerce").astype(float),
        study_day=pd.to_numeric(rows["study_day"], errors="coerce").astype(float),
    )
    return rows.sort_values("time", kind="stable").reset_index(drop=True)


def _nearest(left: pd.DataFrame, right: pd.DataFrame, name: str, tolerance: pd.Timedelta):
    """``left`` with the value (``name``) and time of the nearest ``right`` row in tolerance."""
    right = right[["subject_id", "time", "value"]].rename(columns={"value": name})
    right[f"_{name}_time"] = right["time"]
    if left.empty:
        return left.assign(**{name: np.nan, f"_{name}_time": pd.NaT})
    merged = pd.merge_asof(
        left.sort_values("time", kind="stable"),
        right.sort_values("time", kind="stable"),
        on="time",
        by="subject_id",
        direction="nearest",
        tolerance=tolerance,
    )
    return merged


def derive_oxygenation(
    observations: pd.DataFrame, *, tolerance_minutes: float = 60.0
) -> pd.DataFrame:
    """One row per SpO2 and per PaO2 with the nearest FiO2 and respiratory rate and the ratios.

    Columns :data:`OXYGENATION_COLUMNS`: ``kind`` is "SPO2" or "PAO2"; ``fio2_minutes`` how far
    the paired FiO2 was taken (minutes); ``sf_ratio`` = SpO2 / FiO2 (SpO2 in %, FiO2 a
    fraction); ``sf_valid`` whether SpO2 ≤ 97 %; ``pf_ratio`` = PaO2 (mmHg) / FiO2; ``rox`` =
    (SpO2 / FiO2) ÷ respiratory rate wherever all three are present (whatever the SpO2, as
    Roca et al.); ``flag`` says why a ratio is missing or not valid. FiO2 above 1 is read as a
    percentage (÷ 100) and flagged.
    """
    check_columns(
        observations, ("subject_id", "time", "study_day", "test", "value"), what="observation"
    )
    check_tz_aware(observations["time"], what="observation column 'time'")
    tolerance = pd.Timedelta(minutes=float(tolerance_minutes))
    fio2 = _series(observations, "FIO2")
    percent = fio2["value"] > 1.0
    fio2.loc[percent, "value"] = fio2.loc[percent, "value"] / 100.0
    resp = _series(observations, "RESP")
    parts = []
    for kind in ("SPO2", "PAO2"):
        base = _series(observations, kind)
        if base.empty:
            continue
        base = base.rename(columns={"value": kind.lower()})
        base["kind"] = kind
        paired = _nearest(base, fio2, "fio2", tolerance)
        paired = _nearest(paired, resp, "resp", tolerance)
        parts.append(paired)
    if not parts:
        return pd.DataFrame({c: [] for c in OXYGENATION_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    for column in ("spo2", "pao2"):
        if column not in out:
            out[column] = np.nan
    out["fio2_minutes"] = (out["time"] - out["_fio2_time"]).abs().dt.total_seconds() / 60.0
    spo2 = out["spo2"].to_numpy(float)
    fio2_values = out["fio2"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["sf_ratio"] = spo2 / fio2_values
        out["pf_ratio"] = out["pao2"].to_numpy(float) / fio2_values
        out["sf_valid"] = (spo2 <= SF_MAX_SPO2) & np.isfinite(out["sf_ratio"].to_numpy(float))
        resp_values = out["resp"].to_numpy(float)
        rox = out["sf_ratio"].to_numpy(float) / resp_values
        out["rox"] = np.where(np.isfinite(rox) & (resp_values > 0), rox, np.nan)
    flags = np.full(len(out), "", dtype=object)
    no_fio2 = np.isnan(fio2_values)
    flags[no_fio2] = f"no FiO2 within {tolerance_minutes:g} min"
    high = (out["kind"] == "SPO2").to_numpy() & (spo2 > SF_MAX_SPO2) & ~no_fio2
    flags[high] = f"SpO2 > {SF_MAX_SPO2:g} %: S/F not valid"
    percent_times = set(
        zip(fio2.loc[percent, "subject_id"], fio2.loc[percent, "time"], strict=True)
    )
    if percent_times:
        was_percent = [
            (s, t) in percent_times
            for s, t in zip(out["subject_id"], out["_fio2_time"], strict=True)
        ]
        flags[np.asarray(was_percent)] = "FiO2 given as % (divided by 100)"
    out["flag"] = flags
    out = out.sort_values(["subject_id", "time", "kind"], kind="stable").reset_index(drop=True)
    return out[list(OXYGENATION_COLUMNS)]


@dataclass(frozen=True, eq=False)
class OxygenationSummary:
    """Per study day summaries of oxygenation (``summary``) and per subject × day (``daily``)."""

    summary: pd.DataFrame
    daily: pd.DataFrame
    n_subjects: int
    n_measurements: int
    n_sf_invalid: int
    method: str
    caveats: tuple[str, ...]


def summarize_oxygenation(oxygenation: pd.DataFrame) -> OxygenationSummary:
    """Daily oxygenation per subject (median of the day) and across subjects per study day.

    ``daily``: subject_id, study_day, spo2, fio2, sf_ratio (valid S/F only), pf_ratio, rox —
    each the median of that subject's values on that day. ``summary``: per study day, n subjects
    and the median, minimum and maximum over subjects of each daily value.
    """
    check_columns(oxygenation, OXYGENATION_COLUMNS, what="oxygenation (run derive_oxygenation)")
    frame = oxygenation.assign(
        sf_ratio=oxygenation["sf_ratio"].where(oxygenation["sf_valid"].astype(bool))
    )
    frame = frame[frame["study_day"].notna()]
    values = ["spo2", "fio2", "sf_ratio", "pf_ratio", "rox"]
    daily = frame.groupby(["subject_id", "study_day"], sort=True)[values].median().reset_index()
    grouped = daily.groupby("study_day", sort=True)
    summary = grouped["subject_id"].nunique().rename("n_subjects").to_frame()
    for column in values:
        summary[f"{column}_median"] = grouped[column].median()
        summary[f"{column}_min"] = grouped[column].min()
        summary[f"{column}_max"] = grouped[column].max()
    summary = summary.reset_index()
    summary = summary.loc[:, (summary.notna().any()) | (summary.columns == "study_day")]
    spo2_rows = oxygenation["kind"] == "SPO2"
    n_invalid = int((spo2_rows & ~oxygenation["sf_valid"].astype(bool)).sum())
    n_no_fio2 = int((spo2_rows & oxygenation["fio2"].isna()).sum())
    n_high = int((spo2_rows & (oxygenation["spo2"] > SF_MAX_SPO2)).sum())
    n_high_rox = int(
        (spo2_rows & (oxygenation["spo2"] > SF_MAX_SPO2) & oxygenation["rox"].notna()).sum()
    )
    caveats = []
    if n_high:
        caveats.append(
            f"{n_high} SpO2 reading(s) above {SF_MAX_SPO2:g} %: S/F not valid there (SpO2 no "
            "longer tracks PaO2), left out of the S/F summaries"
        )
    if n_high_rox:
        caveats.append(
            f"ROX is computed as published (Roca et al.) at every time with SpO2, FiO2 and "
            f"respiratory rate, including {n_high_rox} with SpO2 above {SF_MAX_SPO2:g} %: there "
            "its S/F part sits on the flat top of the oxyhaemoglobin curve and understates how "
            "much oxygen reserve is left"
        )
    if n_no_fio2:
        caveats.append(
            f"{n_no_fio2} SpO2 reading(s) had no FiO2 recorded close in time (e.g. peri-infusion "
            "checks): no S/F for them"
        )
    if oxygenation["pf_ratio"].notna().sum() == 0:
        caveats.append("no arterial PaO2 recorded: P/F ratio not available")
    caveats.append(
        "S/F and ROX depend on the FiO2 set by the clinicians (a treatment decision), not only on "
        "the patient's lungs; with 5 patients they describe courses and cannot test an effect"
    )
    return OxygenationSummary(
        summary=summary,
        daily=daily,
        n_subjects=int(oxygenation["subject_id"].nunique()),
        n_measurements=len(oxygenation),
        n_sf_invalid=n_invalid,
        method=(
            "each SpO2 and PaO2 paired with the same subject's FiO2 and respiratory rate nearest "
            "in time (within the tolerance); S/F only where SpO2 ≤ 97 %; ROX = (SpO2/FiO2) ÷ "
            "respiratory rate at every time with all three (no SpO2 limit); daily value = median "
            "of the subject's values that day; medians and ranges "
            "over subjects per study day"
        ),
        caveats=tuple(caveats),
    )
