"""Eligibility at time zero, for treated subjects and for external controls (landmarks).

Treated subjects' time zero is their first infusion. An external patient has no infusion: their
time zero is a **landmark**, the first of admission + k × step (k = 0, 1, … max_landmarks) at which
the patient is alive and still in hospital and every eligibility rule is met using only the values
in the baseline window before the landmark ([T0 − window, T0)). Nothing measured at or after a
landmark, and no outcome, decides whether a patient is eligible at that landmark. Both arms use
the same code path, so a rule means the same thing in each.

A marker rule reads the last non-missing value in the window (the same baseline definition as
:func:`celltrial.efficacy.derive_baseline`); a subject without a value there does not meet it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.errors import DataError
from celltrial.external.spec import OPERATORS, TargetTrialSpec
from celltrial.frames import check_columns, lookup

DAY = pd.Timedelta(days=1)


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
    Among values at the same time the last in frame order wins. A value without a time is in no
    window. Subjects and times are matched as integer codes and nanoseconds (an as-of merge on
    text keys and zoned times converts every time to an object: 100,000 patients took seconds).
    """
    check_columns(observations, ("subject_id", "time", "test", "value"), what="observation")
    left_ids = time_zero["subject_id"].astype(str).to_numpy(dtype=object)
    codes, uniques = pd.factorize(left_ids)
    return _window_values(
        observations,
        codes,
        pd.Index(uniques),
        _nanoseconds(time_zero["time_zero"]),
        test=test,
        window=window,
    )


def _window_values(
    observations: pd.DataFrame,
    left_code: np.ndarray,
    universe: pd.Index,
    left_zero: np.ndarray,
    *,
    test: str,
    window: pd.Timedelta,
) -> pd.DataFrame:
    """:func:`derive_window_values` with the left side as subject codes into ``universe`` and
    UTC nanoseconds (so that several markers share one coding of a large landmark grid)."""
    rows = observations.loc[
        (observations["test"] == test) & observations["value"].notna(),
        ["subject_id", "time", "value"],
    ]
    right_code = universe.get_indexer(rows["subject_id"].astype(str).to_numpy(dtype=object))
    right_time = _nanoseconds(rows["time"])
    usable = (right_time != NAT) & (right_code >= 0)  # a time, and a subject on the left
    right_code = right_code[usable]
    right_at = right_time[usable]
    right_value = pd.to_numeric(rows["value"], errors="coerce").to_numpy(float)[usable]
    # one sortable key per (subject, time): subject code × (distinct value times + 1) + the number
    # of distinct value times before it (for a value: its own rank)
    distinct, right_rank = np.unique(right_at, return_inverse=True)
    width = np.int64(len(distinct) + 1)
    right_key = right_code.astype(np.int64) * width + right_rank
    left_key = left_code.astype(np.int64) * width + np.searchsorted(distinct, left_zero, "left")
    # stable: among values of one subject at one time the last in frame order comes last
    order = np.argsort(right_key, kind="stable")
    before = _last_below(right_key[order], left_key)
    candidate = order[np.maximum(before, 0)] if len(order) else np.zeros(len(left_key), np.intp)
    found = (left_zero != NAT) & (before >= 0)
    found[found] &= right_code[candidate[found]] == left_code[found]
    rows_found = np.flatnonzero(found)
    taken = candidate[found]
    recent = right_at[taken] >= left_zero[found] - window.value
    value = np.full(len(left_code), np.nan)
    stamp = np.full(len(left_code), NAT, dtype=np.int64)
    value[rows_found[recent]] = right_value[taken[recent]]
    stamp[rows_found[recent]] = right_at[taken[recent]]
    return pd.DataFrame(
        {
            "value": value,
            "value_time": pd.Series(
                pd.DatetimeIndex(stamp.view("datetime64[ns]")).tz_localize("UTC"),
                index=range(len(left_code)),
            ),
        }
    )


def _last_below(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of the last of ``sorted_keys`` below each of ``keys`` (−1: none); the search runs
    on ``keys`` in order (a landmark grid comes sorted; random look-ups are several times
    slower)."""
    if len(keys) < 2 or bool(np.all(keys[1:] >= keys[:-1])):
        return np.searchsorted(sorted_keys, keys, side="left") - 1
    order = np.argsort(keys, kind="stable")
    out = np.empty(len(keys), dtype=np.intp)
    out[order] = np.searchsorted(sorted_keys, keys[order], side="left") - 1
    return out


#: NaT as int64 nanoseconds.
NAT = np.iinfo(np.int64).min


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """UTC nanoseconds since 1970 as int64 (NaT: :data:`NAT`)."""
    stamps = pd.to_datetime(times, utc=True).astype("datetime64[ns, UTC]")
    return stamps.array.asi8.copy()


def _check_subjects(subjects: pd.DataFrame) -> None:
    check_columns(subjects, ("subject_id", "sex", "age"), what="subject")


def _age_band(age: pd.Series, edges: tuple[float, ...]) -> pd.Series:
    labels = [f"{edges[i]:g}–{edges[i + 1]:g}" for i in range(len(edges) - 1)]
    return pd.cut(age.astype(float), bins=list(edges), right=False, labels=labels).astype(object)


def _covariates(frame: pd.DataFrame, subjects: pd.DataFrame, spec: TargetTrialSpec) -> None:
    """Each row's subject covariates, computed once per subject and taken by position (a
    landmark grid repeats every subject up to 15 times)."""
    info = subjects.set_index("subject_id")
    position = info.index.get_indexer(frame["subject_id"])  # −1: not in subjects

    def take(values: pd.Series) -> pd.api.extensions.ExtensionArray:
        return values.array.take(position, allow_fill=True)

    age = pd.to_numeric(info["age"], errors="coerce").astype(float)
    male = pd.Series(
        np.where(
            info["sex"].isna(), np.nan, (info["sex"].astype(str).str.upper() == "M").astype(float)
        ),
        index=info.index,
    )
    band = pd.Series(_age_band(age, spec.matching.age_bands).to_numpy(), index=info.index)
    frame["sex"] = take(info["sex"]).to_numpy()
    frame["age"] = take(age).to_numpy(float)
    frame["male"] = take(male).to_numpy(float)
    frame["age_band"] = take(band).to_numpy()
    if "admitted" in info.columns:
        admitted = pd.Series(take(pd.to_datetime(info["admitted"], utc=True)), index=frame.index)
        elapsed = pd.to_datetime(frame["time_zero"], utc=True) - admitted
        frame["days_since_admission"] = (elapsed / DAY).to_numpy(float)
    else:
        frame["days_since_admission"] = np.nan


def _field_rules(frame: pd.DataFrame, spec: TargetTrialSpec) -> np.ndarray:
    met = np.ones(len(frame), dtype=bool)
    for rule in spec.eligibility:
        if rule.field:
            values = frame[rule.field].to_numpy(float)
            ok = OPERATORS[rule.op](values, rule.value) & ~np.isnan(values)
            frame[f"rule: {rule.name}"] = ok
            met &= ok
    return met


def _marker_values(
    frame: pd.DataFrame, observations: pd.DataFrame, spec: TargetTrialSpec, arm: str
) -> None:
    window = pd.Timedelta(hours=spec.time_zero.baseline_window_hours)
    check_columns(observations, ("subject_id", "time", "test", "value"), what="observation")
    codes, uniques = pd.factorize(frame["subject_id"].astype(str).to_numpy(dtype=object))
    zero = _nanoseconds(frame["time_zero"])
    for marker in spec.baseline_markers:
        found = _window_values(
            observations,
            codes,
            pd.Index(uniques),
            zero,
            test=spec.test_of(marker, arm),
            window=window,
        )
        frame[marker] = found["value"].to_numpy(float)
        frame[f"{marker}_time"] = found["value_time"].array


def _marker_rules(frame: pd.DataFrame, spec: TargetTrialSpec) -> np.ndarray:
    met = np.ones(len(frame), dtype=bool)
    for rule in spec.eligibility:
        if rule.marker:
            values = frame[rule.marker].to_numpy(float)
            ok = OPERATORS[rule.op](values, rule.value) & ~np.isnan(values)
            frame[f"rule: {rule.name}"] = ok
            met &= ok
    return met


def _add_logs(frame: pd.DataFrame, spec: TargetTrialSpec) -> None:
    for marker in spec.baseline_markers:
        values = frame[marker].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            frame[f"log_{marker}"] = np.where(values > 0, np.log(values), np.nan)


def derive_treated_eligibility(
    subjects: pd.DataFrame, observations: pd.DataFrame, *, spec: TargetTrialSpec
) -> pd.DataFrame:
    """One row per treated subject: time zero (first infusion), baseline values, rules, eligible.

    Needs ``subjects`` with subject_id, sex, age, first_infusion (and admitted, optional).
    Subjects without an infusion are not eligible (reason "no infusion").
    """
    _check_subjects(subjects)
    check_columns(subjects, ("first_infusion",), what="subject")
    frame = pd.DataFrame(
        {
            "subject_id": subjects["subject_id"].astype(str).to_numpy(),
            "arm": "treated",
            "time_zero": pd.to_datetime(subjects["first_infusion"], utc=True).to_numpy(),
            "landmark": np.nan,
        }
    )
    frame["time_zero"] = pd.to_datetime(frame["time_zero"], utc=True)
    _covariates(frame, subjects.assign(subject_id=subjects["subject_id"].astype(str)), spec)
    fields = _field_rules(frame, spec)
    _marker_values(frame, observations, spec, "treated")
    markers = _marker_rules(frame, spec)
    has_zero = frame["time_zero"].notna().to_numpy()
    frame["eligible"] = fields & markers & has_zero
    frame["reason"] = _reasons(frame, spec, has_zero, "no infusion")
    _add_logs(frame, spec)
    return frame


def derive_control_landmarks(
    subjects: pd.DataFrame, observations: pd.DataFrame, *, spec: TargetTrialSpec
) -> pd.DataFrame:
    """One row per external patient: landmark time zero (first landmark meeting every rule).

    Needs ``subjects`` with subject_id, sex, age, admitted, discharged, died. A landmark counts
    only while the patient is alive and in hospital (before discharge or death); patients with
    neither date are in hospital until their last observation (the end of their records).
    Ineligible patients keep NaT time zero and a ``reason``.
    """
    _check_subjects(subjects)
    check_columns(subjects, ("admitted", "discharged", "died"), what="subject")
    subjects = subjects.assign(subject_id=subjects["subject_id"].astype(str))
    tz = spec.time_zero
    admitted = pd.to_datetime(subjects["admitted"], utc=True)
    end = pd.concat(
        [
            pd.to_datetime(subjects["discharged"], utc=True),
            pd.to_datetime(subjects["died"], utc=True),
        ],
        axis=1,
    ).min(axis=1)
    if end.isna().any():
        last = (
            pd.to_datetime(observations["time"], utc=True)
            .groupby(observations["subject_id"].astype(str))
            .max()
        )
        end = end.fillna(lookup(subjects["subject_id"], last))
    n, k = len(subjects), tz.max_landmarks + 1
    step = pd.Timedelta(hours=tz.landmark_step_hours)
    grid = pd.DataFrame(
        {
            "subject_id": np.repeat(subjects["subject_id"].to_numpy(), k),
            "landmark": np.tile(np.arange(k), n),
            "_admitted": admitted.repeat(k).reset_index(drop=True).array,
            "_end": pd.to_datetime(end, utc=True).repeat(k).reset_index(drop=True).array,
        }
    )
    grid["time_zero"] = pd.to_datetime(grid["_admitted"], utc=True) + grid["landmark"] * step
    in_hospital = (grid["time_zero"] < pd.to_datetime(grid["_end"], utc=True)).to_numpy()
    grid = grid.loc[in_hospital & grid["time_zero"].notna().to_numpy()].reset_index(drop=True)
    grid = grid.drop(columns=["_admitted", "_end"])
    _covariates(grid, subjects, spec)
    fields = _field_rules(grid, spec)
    _marker_values(grid, observations, spec, "external")
    markers = _marker_rules(grid, spec)
    grid["eligible"] = fields & markers
    rule_columns = [c for c in grid.columns if c.startswith("rule: ")]
    ever = grid.groupby("subject_id")[rule_columns].any()
    chosen = grid[grid["eligible"]].drop_duplicates("subject_id", keep="first")

    frame = pd.DataFrame({"subject_id": subjects["subject_id"].to_numpy(), "arm": "external"})
    frame = frame.merge(chosen.drop(columns=["arm"], errors="ignore"), on="subject_id", how="left")
    frame["eligible"] = frame["eligible"].fillna(False).astype(bool)
    frame["time_zero"] = pd.to_datetime(frame["time_zero"], utc=True)
    not_chosen = ~frame["eligible"].to_numpy()
    # covariates of patients never eligible (for the attrition table)
    base = pd.DataFrame({"subject_id": frame["subject_id"], "time_zero": frame["time_zero"]})
    _covariates(base, subjects, spec)
    for column in ("sex", "age", "male", "age_band"):
        frame[column] = base[column].to_numpy()
    for column in rule_columns:
        frame[column] = frame[column].astype("boolean").fillna(False).astype(bool)
    codes = frame["subject_id"]
    reasons = pd.Series("", index=frame.index, dtype=object)
    first_never = pd.Series(
        f"rules never met together at landmarks 0–{tz.max_landmarks}", index=ever.index
    )
    for column in reversed(rule_columns):  # the first rule (in spec order) never met wins
        first_never = first_never.where(ever[column], f"never met: {column[6:]}")
    gone = "left hospital or died before the first landmark"
    reasons[not_chosen] = codes[not_chosen].map(first_never).astype(object).fillna(gone)
    admitted_known = codes.map(subjects.set_index("subject_id")["admitted"].notna())
    reasons[not_chosen & ~admitted_known.fillna(False).to_numpy(bool)] = "no admission time"
    frame["reason"] = reasons.to_numpy()
    _add_logs(frame, spec)
    return frame


def _reasons(
    frame: pd.DataFrame, spec: TargetTrialSpec, has_zero: np.ndarray, no_zero: str
) -> np.ndarray:
    reasons = np.full(len(frame), "", dtype=object)
    for i in range(len(frame)):
        if not has_zero[i]:
            reasons[i] = no_zero
            continue
        for rule in spec.eligibility:
            if not frame.at[i, f"rule: {rule.name}"]:
                target = rule.field or rule.marker
                value = frame.at[i, target]
                shown = "no value in the window" if pd.isna(value) else f"{float(value):g}"
                reasons[i] = f"not met: {rule.name} ({shown})"
                break
    return reasons


@dataclass(frozen=True, eq=False)
class EligibilityResult:
    """Attrition of one arm: ``summary`` has one row per reason (eligible first) with counts."""

    summary: pd.DataFrame
    arm: str
    n: int
    n_eligible: int
    method: str
    caveats: tuple[str, ...]


def summarize_eligibility(frame: pd.DataFrame, *, spec: TargetTrialSpec) -> EligibilityResult:
    """Counts of eligible subjects and of each reason for exclusion in one arm's frame."""
    check_columns(frame, ("subject_id", "arm", "eligible", "reason"), what="eligibility")
    arms = frame["arm"].unique()
    if len(arms) != 1:
        raise DataError(f"eligibility frame must hold one arm, got {', '.join(map(str, arms))}")
    arm = str(arms[0])
    reasons = frame.loc[~frame["eligible"], "reason"].value_counts()
    rows = [{"status": "eligible", "n": int(frame["eligible"].sum())}]
    rows += [{"status": str(r), "n": int(c)} for r, c in reasons.items()]
    summary = pd.DataFrame(rows)
    caveats = []
    if arm == "external":
        tz = spec.time_zero
        caveats.append(
            f"control time zero is a landmark: the first of admission + k × "
            f"{tz.landmark_step_hours:g} h (k = 0–{tz.max_landmarks}) at which the patient was "
            "alive, in hospital and met every rule on the values measured before it"
        )
    caveats += spec.substitution_caveats(spec.rule_markers)
    return EligibilityResult(
        summary=summary,
        arm=arm,
        n=len(frame),
        n_eligible=int(frame["eligible"].sum()),
        method="; ".join(spec.rule_text()),
        caveats=tuple(caveats),
    )
