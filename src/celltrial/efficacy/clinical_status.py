"""Clinical status on the WHO clinical progression scale (0–10): derivation and outcomes.

The scale is recorded daily when the site records it; where it is not, it is derived from the
day's oxygen support, ventilation, oxygenation (P/F, else S/F), vasopressors, dialysis, ECMO and
death by the rules in ``who_scale.yaml`` (data, not code). Outcomes: time to a ≥ 2-point
improvement (or discharge alive), to discharge alive and to death, by Kaplan–Meier, and the
status at day 28.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import yaml

from celltrial.efficacy.survival import KaplanMeierResult, summarize_time_to_event
from celltrial.errors import CelltrialError
from celltrial.frames import check_columns, lookup
from celltrial.timeline import compute_study_days

#: Flags a rule may test (besides ``support``); optional boolean columns of the status frame.
FLAG_COLUMNS: tuple[str, ...] = (
    "vasopressors",
    "dialysis",
    "ecmo",
    "hospitalised",
    "symptomatic",
    "assistance",
    "infected",
)
_RULE_FLAGS = {"severe", "organ_support", *FLAG_COLUMNS}


@dataclass(frozen=True)
class WhoRule:
    score: int
    label: str
    when: Mapping[str, Any]
    at_least: bool = False


@dataclass(frozen=True)
class WhoScaleRules:
    """The shipped mapping: support texts → categories, severity thresholds, ordered rules."""

    support: Mapping[str, str]
    vasopressor_support: frozenset[str]
    pf_below: float
    sf_below: float
    rules: tuple[WhoRule, ...]
    #: Score -> what it means (the scale's own wording), for forms and listings.
    levels: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    #: The support texts a form offers: one per device, each a key of ``support``.
    offered: tuple[str, ...] = ()


@cache
def load_who_scale_rules() -> WhoScaleRules:
    """The WHO-scale derivation rules shipped in ``who_scale.yaml``, checked."""
    path = "who_scale.yaml"
    data = yaml.safe_load(files("celltrial.efficacy").joinpath(path).read_text("utf-8"))
    categories = {"none", "low_flow", "high_flow", "niv", "invasive", "ecmo", "dead"}
    support = {str(k).strip().lower(): str(v) for k, v in data["support"].items()}
    bad = sorted(set(support.values()) - categories)
    if bad:
        raise CelltrialError(f"{path}: unknown support categories {', '.join(bad)}")
    rules = []
    for number, item in enumerate(data["rules"]):
        when = dict(item["when"])
        unknown = set(when) - _RULE_FLAGS - {"support"}
        if unknown or not 0 <= int(item["score"]) <= 10:
            raise CelltrialError(f"{path}: rule {number}: bad score or conditions {unknown}")
        if "support" in when and set(when["support"]) - categories:
            raise CelltrialError(f"{path}: rule {number}: unknown support {when['support']}")
        rules.append(
            WhoRule(
                int(item["score"]),
                str(item["label"]),
                MappingProxyType(when),
                bool(item.get("at_least", False)),
            )
        )
    severe = data["severe_oxygenation"]
    offered = tuple(str(t).strip().lower() for t in data.get("offered", []))
    unknown = [t for t in offered if t not in support]
    if unknown or len(set(offered)) != len(offered):
        raise CelltrialError(
            f"{path}: offered: {unknown or 'a term listed twice'} — each once, a key of support"
        )
    return WhoScaleRules(
        support=MappingProxyType(support),
        vasopressor_support=frozenset(s.lower() for s in data.get("vasopressor_support", [])),
        pf_below=float(severe["pf_below"]),
        sf_below=float(severe["sf_below"]),
        rules=tuple(rules),
        levels=MappingProxyType({int(k): str(v) for k, v in data.get("scale", {}).items()}),
        offered=offered,
    )


def _tristate(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(is True, is False) masks of a column of booleans with missing values (unknown)."""
    known = values.notna().to_numpy()
    truth = values.where(values.notna(), False).astype(bool).to_numpy()
    return known & truth, known & ~truth


def derive_who_scale(
    clinical_status: pd.DataFrame,
    *,
    subjects: pd.DataFrame | None = None,
    oxygenation: pd.DataFrame | None = None,
    tolerance_minutes: float = 120.0,
    rules: WhoScaleRules | None = None,
) -> pd.DataFrame:
    """Return a new status frame with the WHO scale derived from the day's support and data.

    Uses ``oxygen_support`` and the optional columns ``pf_ratio``, ``sf_ratio`` and
    :data:`FLAG_COLUMNS`. Missing ratios are taken from ``oxygenation`` (see
    :func:`~celltrial.efficacy.oxygenation.derive_oxygenation`; the valid ratio nearest in time
    within ``tolerance_minutes``). With ``subjects``, rows after a subject's discharge are not in
    hospital and rows at or after death are "dead", unless the frame says otherwise.

    Added columns: ``support_category``, ``severe`` (P/F < 150, else S/F < 200; missing when
    neither is known), ``who_derived`` and ``who_rule`` (the rule that gave it; missing when no
    rule applies), ``who`` (the recorded score, else the derived one), ``who_source``
    ("recorded", "derived" or "missing") and ``who_conflict`` (recorded and derived differ; for a
    rule marked ``at_least`` only a recorded score below it conflicts).
    """
    check_columns(clinical_status, ("subject_id", "time", "oxygen_support"), what="clinical status")
    rules = rules or load_who_scale_rules()
    out = clinical_status.copy()
    n = len(out)
    text = out["oxygen_support"].astype(object).where(out["oxygen_support"].notna(), "")
    text = text.map(lambda v: str(v).strip().lower())
    category = text.map(lambda v: rules.support.get(v)).astype(object)
    unknown = sorted(set(text[(category.isna()) & (text != "")]))
    flags: dict[str, pd.Series] = {
        c: out[c].astype(object)
        if c in out
        else pd.Series([None] * n, index=out.index, dtype=object)
        for c in FLAG_COLUMNS
    }
    vaso_text = text.isin(rules.vasopressor_support)
    flags["vasopressors"] = flags["vasopressors"].where(~vaso_text, True)
    flags["ecmo"] = flags["ecmo"].where(category != "ecmo", True)
    if subjects is not None:
        check_columns(subjects, ("subject_id",), what="subject")
        by_subject = subjects.set_index(subjects["subject_id"].astype(str))
        sid = out["subject_id"].astype(str)
        if "died" in subjects:
            died = pd.to_datetime(lookup(sid, by_subject["died"]), utc=True)
            dead = (out["time"] >= died).fillna(False).to_numpy(bool)
            category = category.where(~dead, "dead")
        if "discharged" in subjects:
            discharged = pd.to_datetime(lookup(sid, by_subject["discharged"]), utc=True)
            inside = (discharged.isna() | (out["time"] <= discharged)).to_numpy(bool)
            flags["hospitalised"] = flags["hospitalised"].where(
                flags["hospitalised"].notna(), pd.Series(inside, index=out.index, dtype=object)
            )
    pf = _ratio(out, oxygenation, "pf_ratio", tolerance_minutes)
    sf = _ratio(out, oxygenation, "sf_ratio", tolerance_minutes)
    severe = np.where(
        ~np.isnan(pf), pf < rules.pf_below, np.where(~np.isnan(sf), sf < rules.sf_below, np.nan)
    )
    severe_series = pd.Series(severe, index=out.index).map({1.0: True, 0.0: False})
    masks = {k: _tristate(v) for k, v in flags.items()}
    masks["severe"] = _tristate(severe_series)
    organ = [masks[k] for k in ("vasopressors", "dialysis", "ecmo")]
    masks["organ_support"] = (
        organ[0][0] | organ[1][0] | organ[2][0],
        organ[0][1] & organ[1][1] & organ[2][1],
    )

    derived = np.full(n, np.nan)
    rule_label = np.full(n, None, dtype=object)
    lower_bound = np.zeros(n, dtype=bool)
    categories = category.to_numpy(dtype=object)
    for rule in rules.rules:
        hit = np.isnan(derived)
        for key, wanted in rule.when.items():
            if key == "support":
                hit &= np.isin(categories, list(wanted))
            else:
                is_true, is_false = masks[key]
                hit &= is_true if wanted else is_false
        derived[hit] = rule.score
        rule_label[hit] = rule.label
        lower_bound[hit] = rule.at_least

    out["support_category"] = category
    out["pf_ratio"] = pf
    out["sf_ratio"] = sf
    out["severe"] = severe_series
    out["who_derived"] = derived
    out["who_rule"] = rule_label
    recorded = (
        pd.to_numeric(out["who_scale"], errors="coerce").to_numpy(float)
        if "who_scale" in out
        else np.full(n, np.nan)
    )
    out["who"] = np.where(np.isnan(recorded), derived, recorded)
    out["who_source"] = np.select(
        [~np.isnan(recorded), ~np.isnan(derived)], ["recorded", "derived"], "missing"
    )
    differs = np.where(lower_bound, recorded < derived, recorded != derived)
    out["who_conflict"] = ~np.isnan(recorded) & ~np.isnan(derived) & differs
    if unknown:
        out.attrs["unknown_support"] = unknown
    return out


def _ratio(
    status: pd.DataFrame, oxygenation: pd.DataFrame | None, column: str, minutes: float
) -> np.ndarray:
    """The status frame's own ratio, else the nearest valid one from ``oxygenation``."""
    own = (
        pd.to_numeric(status[column], errors="coerce").to_numpy(float)
        if column in status
        else np.full(len(status), np.nan)
    )
    if oxygenation is None or oxygenation.empty or not np.isnan(own).any():
        return own
    source = oxygenation[oxygenation[column].notna()]
    if column == "sf_ratio":
        source = source[source["sf_valid"].astype(bool)]
    if source.empty or status.empty:
        return own
    left = pd.DataFrame(
        {
            "subject_id": status["subject_id"].astype(str).to_numpy(),
            "time": status["time"].to_numpy(),
            "_row": np.arange(len(status)),
        }
    ).sort_values("time", kind="stable")
    right = pd.DataFrame(
        {
            "subject_id": source["subject_id"].astype(str).to_numpy(),
            "time": source["time"].to_numpy(),
            "_value": source[column].to_numpy(float),
        }
    ).sort_values("time", kind="stable")
    left["time"] = pd.to_datetime(left["time"], utc=True)
    right["time"] = pd.to_datetime(right["time"], utc=True)
    merged = pd.merge_asof(
        left,
        right,
        on="time",
        by="subject_id",
        direction="nearest",
        tolerance=pd.Timedelta(minutes=float(minutes)),
    )
    found = np.full(len(status), np.nan)
    found[merged["_row"].to_numpy()] = merged["_value"].to_numpy(float)
    return np.where(np.isnan(own), found, own)


# ---- outcomes ---------------------------------------------------------------------------------

#: Time-to-event endpoints of :func:`summarize_clinical_status`, in report order.
ENDPOINTS: Mapping[str, str] = MappingProxyType(
    {
        "improvement": "clinical improvement (≥ {points}-point fall on the WHO scale from "
        "baseline, or discharge alive)",
        "discharge": "discharge alive",
        "death": "death",
    }
)


@dataclass(frozen=True, eq=False)
class ClinicalStatusSummary:
    """Per-subject clinical course (``summary``), day-28 outcome counts and Kaplan–Meier fits.

    ``summary`` columns: subject_id, baseline_who, worst_who, who_at_horizon (last score on or
    before the horizon day) with who_day, improved_day (first day with a fall ≥ ``points``),
    discharge_day, death_day, last_day (last follow-up, capped at the horizon), outcome and the
    per-endpoint ``<endpoint>_time`` / ``<endpoint>_event`` columns used for Kaplan–Meier.
    """

    summary: pd.DataFrame
    outcomes: pd.DataFrame
    time_to_event: Mapping[str, KaplanMeierResult]
    horizon_days: int
    points: int
    n: int
    method: str
    caveats: tuple[str, ...]


def _subject_day(subjects: pd.DataFrame, column: str, zone: ZoneInfo | str) -> pd.Series:
    if column not in subjects or "first_infusion" not in subjects:
        return pd.Series(np.nan, index=subjects.index)
    days = compute_study_days(subjects[column], subjects["first_infusion"], zone)
    return pd.to_numeric(days, errors="coerce").astype(float)


def summarize_clinical_status(
    status: pd.DataFrame,
    *,
    subjects: pd.DataFrame,
    horizon_days: int = 28,
    points: int = 2,
    zone: ZoneInfo | str = "UTC",
    confidence: float = 0.95,
) -> ClinicalStatusSummary:
    """Each subject's course on the WHO scale, the day-``horizon`` outcome and times to events.

    ``status`` needs ``who`` (see :func:`derive_who_scale`) and ``study_day``. ``subjects``
    gives ``first_infusion``, ``discharged`` and ``died`` (times; study days in ``zone``).
    Baseline is the last score on or before day 0. Improvement: the first day after day 0 with a
    score ≤ baseline − ``points``, or discharge alive, whichever is first. Death is the worst
    outcome: for improvement and discharge, subjects who died are censored at the horizon (they
    can never improve — so 1 − KM is the cumulative incidence). Others are censored at their last
    follow-up; events after the horizon are censored at it.
    """
    check_columns(status, ("subject_id", "study_day", "who"), what="clinical status")
    check_columns(subjects, ("subject_id",), what="subject")
    if points < 1:
        raise CelltrialError(f"points must be ≥ 1, got {points}")
    horizon = float(horizon_days)
    frame = status.assign(
        subject_id=status["subject_id"].astype(str),
        study_day=pd.to_numeric(status["study_day"], errors="coerce").astype(float),
        who=pd.to_numeric(status["who"], errors="coerce").astype(float),
    )
    frame = frame[frame["study_day"].notna()].sort_values(["subject_id", "study_day"])
    table = pd.DataFrame({"subject_id": subjects["subject_id"].astype(str).to_numpy()})
    table["discharge_day"] = _subject_day(subjects, "discharged", zone).to_numpy()
    table["death_day"] = _subject_day(subjects, "died", zone).to_numpy()

    scored = frame[frame["who"].notna()]
    pre = scored[scored["study_day"] <= 0].groupby("subject_id")["who"].last()
    post = scored[(scored["study_day"] > 0) & (scored["study_day"] <= horizon)]
    table["baseline_who"] = table["subject_id"].map(pre)
    table["worst_who"] = table["subject_id"].map(post.groupby("subject_id")["who"].max())
    last = scored[scored["study_day"] <= horizon].groupby("subject_id").last()
    table["who_at_horizon"] = table["subject_id"].map(last["who"])
    table["who_day"] = table["subject_id"].map(last["study_day"])
    base = post["subject_id"].map(pre)
    better = post[post["who"] <= base - points]
    table["improved_day"] = table["subject_id"].map(better.groupby("subject_id")["study_day"].min())
    seen = frame.groupby("subject_id")["study_day"].max()
    last_seen = table["subject_id"].map(seen).astype(float)
    last_seen = np.fmax(last_seen, table["discharge_day"].fillna(-np.inf))
    last_seen = np.fmax(last_seen, table["death_day"].fillna(-np.inf))
    table["last_day"] = np.minimum(last_seen.replace(-np.inf, np.nan), horizon)

    died = table["death_day"] <= horizon
    discharged = (table["discharge_day"] <= horizon) & ~(
        table["death_day"] <= table["discharge_day"]
    )
    table["outcome"] = np.select(
        [died, discharged, table["who_at_horizon"].notna()],
        ["died", "discharged alive", "in hospital"],
        "unknown",
    )
    table.loc[table["outcome"].eq("in hospital") & (table["who_day"] < horizon), "outcome"] = (
        "in hospital at last follow-up"
    )
    improve_day = np.fmin(table["improved_day"], table["discharge_day"].where(discharged))
    _endpoint(table, "improvement", improve_day, died, horizon)
    _endpoint(table, "discharge", table["discharge_day"].where(discharged), died, horizon)
    _endpoint(table, "death", table["death_day"], pd.Series(False, index=table.index), horizon)

    km = {}
    caveats: list[str] = []
    usable = table[table["baseline_who"].notna() | table["death_day"].notna()]
    for key, label in ENDPOINTS.items():
        rows = table if key != "improvement" else usable
        km[key] = summarize_time_to_event(
            rows,
            endpoint=label.format(points=points),
            duration=f"{key}_time",
            event=f"{key}_event",
            confidence=confidence,
        )
    if len(usable) < len(table):
        caveats.append(
            f"{len(table) - len(usable)} subject(s) without a baseline WHO score are left out of "
            "the improvement analysis"
        )
    outcomes = table["outcome"].value_counts().rename_axis("outcome").rename("n").reset_index()
    outcomes["percent"] = 100.0 * outcomes["n"] / max(len(table), 1)
    if "who_source" in status and (status["who_source"] == "derived").any():
        caveats.append(
            f"{int((status['who_source'] == 'derived').sum())} daily WHO score(s) were derived "
            "from oxygen support, ventilation and organ support (not recorded)"
        )
    if "who_conflict" in status and status["who_conflict"].any():
        caveats.append(
            f"{int(status['who_conflict'].sum())} recorded WHO score(s) disagree with the score "
            "derived from that day's support and oxygenation: check them"
        )
    caveats.append(
        "single arm, no control: improvement and discharge also follow the natural course and "
        "standard care, so these times cannot be attributed to the cells"
    )
    return ClinicalStatusSummary(
        summary=table,
        outcomes=outcomes,
        time_to_event=MappingProxyType(km),
        horizon_days=int(horizon_days),
        points=points,
        n=len(table),
        method=(
            f"WHO clinical progression scale (0–10) per day (recorded, else derived by the "
            f"shipped rules); baseline = last score on or before day 0; improvement = first day "
            f"with a score ≤ baseline − {points} or discharge alive; deaths censored at day "
            f"{horizon_days} for improvement and discharge, others at last follow-up; "
            f"Kaplan–Meier to day {horizon_days}"
        ),
        caveats=tuple(caveats),
    )


def _endpoint(
    table: pd.DataFrame, key: str, event_day: pd.Series, died: pd.Series, horizon: float
) -> None:
    """Add ``<key>_time``/``<key>_event``: event day ≤ horizon, else censored."""
    day = pd.to_numeric(event_day, errors="coerce").astype(float)
    event = (day <= horizon).fillna(False)
    censor = table["last_day"].where(~died, horizon)
    time = np.where(event, day, censor)
    table[f"{key}_time"] = np.maximum(time, 0.0)
    table[f"{key}_event"] = event.to_numpy(bool)
