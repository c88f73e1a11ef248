"""Per-subject responder listing against rules kept as data (``responders.yaml``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from celltrial.efficacy.clinical_status import ClinicalStatusSummary
from celltrial.efficacy.denominators import explain_unevaluable
from celltrial.efficacy.normalisation import summarize_time_to_normal
from celltrial.efficacy.observations import check_confidence
from celltrial.errors import CelltrialError
from celltrial.frames import check_columns

KINDS = ("percent_change", "back_in_range", "who_improvement")
STATUSES = ("responder", "non-responder", "not evaluable", "not applicable")

#: One result of a rule for one subject: status, day of response, detail, reason — why the subject
#: is not evaluable or not applicable, or "died by day N" for a non-responder who died ("" else).
Result = tuple[str, float, str, str]


@dataclass(frozen=True)
class ResponderRule:
    id: str
    kind: str
    label: str
    by_day: float
    test: str | None = None
    threshold_pct: float | None = None
    points: int | None = None


@dataclass(frozen=True)
class ResponderRules:
    rules: tuple[ResponderRule, ...]
    favourable_direction: Mapping[str, str]


def check_responder_rules(
    data: Mapping[str, Any], *, where: str = "responder rules"
) -> ResponderRules:
    """Validate a responder-rule mapping (the shape of ``responders.yaml``)."""
    rules = []
    for number, item in enumerate(data.get("rules", [])):
        kind = item.get("kind")
        if kind not in KINDS:
            raise CelltrialError(
                f"{where}: rule {number}: kind must be one of {KINDS}, got {kind!r}"
            )
        if kind in ("percent_change", "back_in_range") and not item.get("test"):
            raise CelltrialError(f"{where}: rule {number} ({kind}) needs a test")
        if kind == "percent_change" and item.get("threshold_pct") in (None, 0):
            raise CelltrialError(f"{where}: rule {number} needs a non-zero threshold_pct")
        rules.append(
            ResponderRule(
                id=str(item.get("id", f"rule{number}")),
                kind=kind,
                label=str(item.get("label", item.get("id", kind))),
                by_day=float(item["by_day"]),
                test=item.get("test"),
                threshold_pct=item.get("threshold_pct"),
                points=int(item.get("points", 2)) if kind == "who_improvement" else None,
            )
        )
    directions = {str(k): str(v) for k, v in (data.get("favourable_direction") or {}).items()}
    bad = sorted(k for k, v in directions.items() if v not in ("up", "down"))
    if bad:
        raise CelltrialError(f"{where}: favourable_direction must be up or down for {bad}")
    return ResponderRules(tuple(rules), MappingProxyType(directions))


@cache
def load_responder_rules() -> ResponderRules:
    """The shipped responder rules (``responders.yaml``)."""
    text = files("celltrial.efficacy").joinpath("responders.yaml").read_text("utf-8")
    return check_responder_rules(yaml.safe_load(text), where="responders.yaml")


@dataclass(frozen=True, eq=False)
class ResponderSummary:
    """``listing``: one row per subject × rule (``reason``: why not evaluable or not applicable,
    or that a non-responder died, in words that group); ``summary``: per rule counts and exact
    CI."""

    summary: pd.DataFrame
    listing: pd.DataFrame
    rules: tuple[ResponderRule, ...]
    n: int
    confidence: float
    method: str
    caveats: tuple[str, ...]

    @property
    def wide(self) -> pd.DataFrame:
        """Subjects × rules table of statuses (with the day of response)."""
        cells = self.listing.assign(
            cell=[
                s + (f" (day {d:g})" if s == "responder" and pd.notna(d) else "")
                for s, d in zip(self.listing["status"], self.listing["day"], strict=True)
            ]
        )
        table = cells.pivot(index="subject_id", columns="label", values="cell")
        return table[[r.label for r in self.rules if r.label in table.columns]].reset_index()


def summarize_responders(
    observations: pd.DataFrame,
    *,
    subjects: pd.Series | list[str],
    clinical: ClinicalStatusSummary | None = None,
    rules: ResponderRules | None = None,
    confidence: float = 0.95,
    follow_up: pd.DataFrame | None = None,
) -> ResponderSummary:
    """Classify each subject by each rule; count responders with a Clopper–Pearson interval.

    ``observations`` needs the columns of
    :func:`~celltrial.efficacy.baseline.derive_change_from_baseline` and ``study_day``.
    ``subjects`` lists every subject to classify (a subject with no data is "not evaluable").
    ``clinical`` gives death days and the WHO course; without it WHO rules are not evaluable.
    ``follow_up`` (:func:`~celltrial.efficacy.denominators.derive_follow_up_days`) says why a
    subject without values is not evaluable (withdrawn, or the rule's day not yet passed), and
    gives death days where ``clinical`` has none.
    """
    confidence = check_confidence(confidence)
    check_columns(
        observations,
        ("subject_id", "test", "time", "study_day", "value", "baseline", "pct_change"),
        what="observation (run derive_baseline and derive_change_from_baseline first)",
    )
    rules = rules or load_responder_rules()
    ids = [str(s) for s in pd.unique(pd.Series(list(subjects), dtype=object))]
    death: dict[str, float] = {}
    if follow_up is not None and "died" in follow_up:
        death = {str(k): float(v) for k, v in follow_up["died"].items()}
    if clinical is not None:
        table = clinical.summary
        death |= dict(zip(table["subject_id"], table["death_day"].astype(float), strict=True))
    records = []
    for rule in rules.rules:
        if rule.kind == "percent_change":
            results = _percent_change(observations, rule, ids, death, follow_up)
        elif rule.kind == "back_in_range":
            results = _back_in_range(observations, rule, ids, death, follow_up)
        else:
            results = _who(clinical, rule, ids, follow_up)
        for subject, (status, day, detail, reason) in zip(ids, results, strict=True):
            records.append(
                {
                    "subject_id": subject,
                    "rule": rule.id,
                    "label": rule.label,
                    "status": status,
                    "day": day,
                    "detail": detail,
                    "reason": reason,
                }
            )
    listing = pd.DataFrame.from_records(
        records, columns=["subject_id", "rule", "label", "status", "day", "detail", "reason"]
    )
    rows = []
    for rule in rules.rules:
        part = listing[listing["rule"] == rule.id]
        k = int((part["status"] == "responder").sum())
        n = int(part["status"].isin(["responder", "non-responder"]).sum())
        low, high = _clopper_pearson(k, n, confidence)
        rows.append(
            {
                "rule": rule.id,
                "label": rule.label,
                "responders": k,
                "evaluable": n,
                "not_evaluable": int((part["status"] == "not evaluable").sum()),
                "not_applicable": int((part["status"] == "not applicable").sum()),
                "proportion": k / n if n else np.nan,
                "ci_low": low,
                "ci_high": high,
            }
        )
    summary = pd.DataFrame(rows)
    caveats = [
        f"proportions with exact (Clopper–Pearson) {100 * confidence:.3g} % intervals: with "
        f"{len(ids)} subjects each interval spans tens of percentage points",
        "responder thresholds are conventions, not validated surrogate endpoints; without a "
        "control group a response cannot be attributed to the cells",
    ]
    return ResponderSummary(
        summary=summary,
        listing=listing,
        rules=rules.rules,
        n=len(ids),
        confidence=confidence,
        method=(
            "per subject and rule (responders.yaml): percentage change from baseline reaching the "
            "threshold on a post-baseline day up to the rule's day; back in the reference range by "
            "the rule's day (subjects outside it at baseline); WHO improvement from the clinical "
            "course; deaths before the rule's day without response count as non-responders; "
            "exact Clopper–Pearson intervals for the proportions"
        ),
        caveats=tuple(caveats),
    )


def _clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def _rows(observations: pd.DataFrame, rule: ResponderRule) -> pd.DataFrame:
    frame = observations[observations["test"] == rule.test]
    return frame.assign(
        subject_id=frame["subject_id"].astype(str),
        study_day=pd.to_numeric(frame["study_day"], errors="coerce").astype(float),
    )


def _died_by(death: Mapping[str, float], subject: str, day: float) -> bool:
    value = death.get(subject, np.nan)
    return bool(np.isfinite(value) and value <= day)


def _no_values(subject: str, follow_up: pd.DataFrame | None, by_day: float) -> Result:
    why = explain_unevaluable(subject, follow_up, by_day=by_day)
    return (
        "not evaluable",
        np.nan,
        why or f"no value on days 1–{by_day:g}",
        why or f"had no value on days 1–{by_day:g}",
    )


NO_BASELINE: Result = ("not evaluable", np.nan, "no baseline value", "had no baseline value")


def _percent_change(
    observations: pd.DataFrame,
    rule: ResponderRule,
    ids: list[str],
    death: Mapping[str, float],
    follow_up: pd.DataFrame | None,
) -> list[Result]:
    frame = _rows(observations, rule)
    threshold = float(rule.threshold_pct or 0.0)
    has_base = set(frame.loc[frame["baseline"].notna(), "subject_id"])
    post = frame[
        frame["pct_change"].notna()
        & (frame["study_day"] >= 1)
        & (frame["study_day"] <= rule.by_day)
    ].sort_values("time", kind="stable")
    met = post["pct_change"] <= threshold if threshold < 0 else post["pct_change"] >= threshold
    first = post[met].drop_duplicates("subject_id").set_index("subject_id")
    best = post.groupby("subject_id")["pct_change"].agg("min" if threshold < 0 else "max")
    died = f"died by day {rule.by_day:g}"
    out: list[Result] = []
    for subject in ids:
        if subject in first.index:
            row = first.loc[subject]
            out.append(("responder", float(row["study_day"]), f"{row['pct_change']:+.0f} %", ""))
        elif subject not in has_base:
            out.append(NO_BASELINE)
        elif subject in best.index:
            reason = died if _died_by(death, subject, rule.by_day) else ""
            out.append(("non-responder", np.nan, f"largest change {best[subject]:+.0f} %", reason))
        elif _died_by(death, subject, rule.by_day):
            out.append(("non-responder", np.nan, died, died))
        else:
            out.append(_no_values(subject, follow_up, rule.by_day))
    return out


def _back_in_range(
    observations: pd.DataFrame,
    rule: ResponderRule,
    ids: list[str],
    death: Mapping[str, float],
    follow_up: pd.DataFrame | None,
) -> list[Result]:
    frame = _rows(observations, rule)
    frame = frame[frame["study_day"].isna() | (frame["study_day"] <= rule.by_day)]
    if frame.empty or "is_baseline" not in frame:
        return [NO_BASELINE] * len(ids)
    normal = summarize_time_to_normal(frame).summary.set_index("subject_id")
    post = frame[(frame["time"] > frame["baseline_time"]) & frame["value"].notna()]
    post = post[post["study_day"] >= 1]
    seen = set(post["subject_id"])
    died = f"died by day {rule.by_day:g}"
    out: list[Result] = []
    for subject in ids:
        if subject not in normal.index:
            out.append(NO_BASELINE)
            continue
        row = normal.loc[subject]
        if not bool(row["abnormal_at_baseline"]):
            out.append(
                (
                    "not applicable",
                    np.nan,
                    f"in range at baseline ({row['baseline']:g})",
                    "in range at baseline (not applicable)",
                )
            )
        elif bool(row["normalised"]) and float(row["day"]) >= 1:
            out.append(("responder", float(row["day"]), f"baseline {row['baseline']:g}", ""))
        elif subject in seen or _died_by(death, subject, rule.by_day):
            reason = died if _died_by(death, subject, rule.by_day) else ""
            out.append(("non-responder", np.nan, f"baseline {row['baseline']:g}", reason))
        else:
            out.append(_no_values(subject, follow_up, rule.by_day))
    return out


def _who(
    clinical: ClinicalStatusSummary | None,
    rule: ResponderRule,
    ids: list[str],
    follow_up: pd.DataFrame | None,
) -> list[Result]:
    if clinical is None:
        return [("not evaluable", np.nan, "no clinical status", "had no clinical status")] * len(
            ids
        )
    if rule.points != clinical.points:
        raise CelltrialError(
            f"responder rule {rule.id} wants a {rule.points}-point improvement but the clinical "
            f"summary was computed for {clinical.points} points"
        )
    table = clinical.summary.set_index("subject_id")
    out: list[Result] = []
    for subject in ids:
        if subject not in table.index or pd.isna(table.loc[subject, "baseline_who"]):
            out.append(
                ("not evaluable", np.nan, "no baseline WHO score", "had no baseline WHO score")
            )
            continue
        row = table.loc[subject]
        event_day = float(row["improvement_time"])
        if bool(row["improvement_event"]) and event_day <= rule.by_day:
            how = (
                "discharged alive"
                if pd.isna(row["improved_day"]) or row["discharge_day"] < row["improved_day"]
                else f"WHO {row['baseline_who']:g} → ≤ {row['baseline_who'] - rule.points:g}"
            )
            out.append(("responder", event_day, how, ""))
        elif pd.notna(row["death_day"]) and row["death_day"] <= rule.by_day:
            out.append(
                (
                    "non-responder",
                    np.nan,
                    f"died on day {row['death_day']:g}",
                    f"died by day {rule.by_day:g}",
                )
            )
        elif row["last_day"] >= rule.by_day:
            out.append(
                ("non-responder", np.nan, f"WHO {row['who_at_horizon']:g} at last score", "")
            )
        else:
            why = explain_unevaluable(str(subject), follow_up, by_day=rule.by_day)
            out.append(
                (
                    "not evaluable",
                    np.nan,
                    f"followed to day {row['last_day']:g} only",
                    why or f"followed for less than {rule.by_day:g} days",
                )
            )
    return out
