"""Findings in plain words, each as strong as the evidence allows and no stronger.

The wording rules, in order of strength (``Finding.evidence``):

* ``"no data"`` / ``"too few"``: fewer than :data:`MIN_PAIRS` pairs — only the count is stated;
* ``"no clear change"``: the interval includes no change;
* ``"direction only"``: the interval excludes no change but the exact test is not below α — at
  n = 5 this is the best the data can ever give (smallest exact two-sided p = 0.0625);
* ``"nominal"``: p < α unadjusted, but not after Holm's adjustment over all comparisons;
* ``"adjusted"``: Holm-adjusted p < α.

Counts are of every treated patient (``Denominator``): "fell in 3 of 5 treated patients (1 died
before Day 14; 1 had no Day 14 value)", never "3 of 3"; tests and estimates stay on the pairs.

Verbs describe what was measured ("fell", "rose"), never what caused it ("improved", "alleviated"):
a single-arm study cannot separate the cells from the natural course and standard care.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from celltrial.efficacy.changes import PairedChangeSummary
from celltrial.efficacy.clinical_status import ClinicalStatusSummary
from celltrial.efficacy.denominators import Denominator, count_reasons, select_pair_rows
from celltrial.efficacy.paired import PairedComparison
from celltrial.efficacy.responders import ResponderSummary
from celltrial.efficacy.signedrank import compute_snapped
from celltrial.pvalues import format_p

#: Below this many complete pairs no estimate or test is worded, only the count.
MIN_PAIRS = 3

#: Evidence levels of paired findings, weakest first; responder and clinical findings are
#: "descriptive", the design statement "context".
EVIDENCE = ("no data", "too few", "no clear change", "direction only", "nominal", "adjusted")


@dataclass(frozen=True)
class Finding:
    """One statement: its topic (e.g. the marker), the sentence, and how strong it is."""

    topic: str
    text: str
    evidence: str


def format_number(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits with a true minus sign (−45, 0.125, 1.2e+03)."""
    if value is None or not np.isfinite(value):
        return "not reached" if value == np.inf else "—"
    text = f"{value:.{digits}g}"
    if "e" in text:
        text = f"{value:.0f}"
    return text.replace("-", "−")


def format_level(level: float) -> str:
    """A coverage level as a percentage: 0.9375 → "93.8 %", 0.95 → "95 %"."""
    return f"{100 * level:.3g} %"


def _counts(n_down: int, n_up: int, n_same: int) -> str:
    parts = []
    if n_down:
        parts.append(f"fell in {n_down}")
    if n_up:
        parts.append(f"rose in {n_up}")
    if n_same:
        parts.append(f"did not change in {n_same}")
    return ", ".join(parts)


def state_paired_change(
    comparison: PairedComparison,
    *,
    marker: str,
    unit: str,
    visit: str,
    n_down: int,
    n_up: int,
    n_same: int = 0,
    p_holm: float | None = None,
    n_tests: int = 1,
    alpha: float = 0.05,
    favourable: str | None = None,
    prespecified: bool = False,
    denominator: Denominator | None = None,
) -> Finding:
    """Word one baseline-vs-visit comparison (``compare_paired`` result and direction counts).

    ``n_down``/``n_up``/``n_same`` count subjects whose value fell, rose or stayed. ``p_holm``
    and ``n_tests`` give the multiplicity context; ``favourable`` ("up"/"down") only adds "the
    direction hoped for" — it never changes the test. ``prespecified``: ``visit`` is the
    protocol's key visit (said, with the number of pairs, also when too few to test).
    ``denominator``: the treated patients, and why those without a pair are missing — counts are
    then "of N treated" with the reasons, and the estimate says how many pairs it rests on.
    """
    n = comparison.n
    span = f"from baseline to {visit}" + (" (the pre-specified key visit)" if prespecified else "")
    key = f"{visit} is the pre-specified key visit; " if prespecified else ""
    why = denominator.describe() if denominator is not None else ""
    if n == 0:
        text = f"{marker}: {key}no patient has both a baseline and a {visit} value" + (
            ": the test is not run" if prespecified else ""
        )
        if denominator is not None:
            text += f"; of {denominator.treated} treated, {why or 'none missing'}"
        return Finding(marker, text + ".", "no data")
    if n < MIN_PAIRS:
        who = (
            f"{n} of {denominator.treated} treated patients have"
            if denominator is not None
            else f"{n} patient(s) have"
        )
        return Finding(
            marker,
            f"{marker}: {key}only {who} both a baseline and a {visit} value"
            + (f" ({why})" if why else "")
            + " — too few to estimate a change"
            + (" or run the test" if prespecified else "")
            + f"; {marker} {_counts(n_down, n_up, n_same)}.",
            "too few",
        )
    of = f"{denominator.treated} treated patients" if denominator is not None else f"{n} patients"
    if n_down > n_up and n_down > n_same:
        direction, count = "fell", n_down
    elif n_up > n_down and n_up > n_same:
        direction, count = "rose", n_up
    else:
        direction, count = None, 0
    if direction:
        others = _counts(
            0 if direction == "fell" else n_down, 0 if direction == "rose" else n_up, n_same
        )
        head = f"{marker} {direction} {span} in {count} of {of}"
        aside = "; ".join(part for part in (others, why) if part)
        head += f" ({aside})" if aside else ""
        if favourable and (direction == "fell") == (favourable == "down"):
            head += ", the direction hoped for"
    else:
        head = f"{marker} did not move one way {span}: it {_counts(n_down, n_up, n_same)} of {of}"
        head += f" ({why})" if why else ""
    level = format_level(comparison.ci_level)
    exact = "exact " if comparison.exact else ""
    low, high = comparison.ci
    if comparison.scale == "ratio":
        pct = 100.0 * (comparison.hodges_lehmann - 1.0)
        estimate = (
            f"median ratio to baseline {format_number(comparison.hodges_lehmann, 2)} "
            f"({'+' if pct >= 0 else ''}{format_number(pct, 2)} %; Hodges–Lehmann on log values; "
            f"{exact}{level} CI {format_number(low, 2)} to {format_number(high, 2)})"
        )
        null, null_text = 1.0, "a ratio of 1 (no change)"
    else:
        unit_text = f" {unit}" if unit and unit != "1" else ""
        estimate = (
            f"median change {format_number(comparison.hodges_lehmann)}{unit_text} "
            f"(Hodges–Lehmann; {exact}{level} CI {format_number(low)} to {format_number(high)})"
        )
        null, null_text = 0.0, "no change"
    p_text = f"{exact}{format_p(comparison.p_value)}"
    on = f"on the {n} with both values, " if why else ""
    text = f"{head}; {on}{estimate}; {p_text}"
    holm = p_holm is not None and bool(np.isfinite(p_holm))
    outside = p_holm is not None and not holm  # NaN: not in the Holm family
    excludes = bool(np.isfinite(low) and np.isfinite(high) and (low > null or high < null))
    blocked = comparison.exact and comparison.min_p_value > alpha
    if blocked:
        m = n - comparison.n_zero
        text += (
            f" — with {m} patients the {exact}two-sided test cannot go below "
            f"{format_p(comparison.min_p_value)}, even when all {m} change in the same "
            "direction"
        )
        evidence = "direction only" if excludes else "no clear change"
        if not excludes:
            text += f"; the interval includes {null_text}"
    elif not excludes or comparison.p_value >= alpha:
        text += f"; the interval includes {null_text}" if not excludes else ""
        evidence = "direction only" if excludes else "no clear change"
    elif holm and n_tests > 1 and p_holm >= alpha:  # type: ignore[operator]
        text += (
            f"; below {alpha:g} only before adjustment: Holm-adjusted over the family of "
            f"{n_tests} comparisons {format_p(p_holm)}"
        )
        evidence = "nominal"
    else:
        if holm and n_tests > 1:
            text += f" (Holm-adjusted over the family of {n_tests} comparisons: {format_p(p_holm)})"
        elif outside:
            text += " (outside the pre-specified Holm family: unadjusted)"
        adjusted = not outside and (n_tests == 1 or (holm and p_holm < alpha))  # type: ignore[operator]
        evidence = "adjusted" if adjusted else "nominal"
    return Finding(marker, text + ".", evidence)


def compute_direction_counts(observations: pd.DataFrame) -> pd.DataFrame:
    """Per test × visit, how many subjects' values fell, rose or stayed vs baseline.

    Uses the same rows as :func:`~celltrial.efficacy.changes.summarize_paired_changes`
    (scheduled, after the baseline time, both values present).
    """
    rows = observations.loc[select_pair_rows(observations), ["test", "visit", "value", "baseline"]]
    records = []
    for (test, visit), group in rows.groupby(["test", "visit"], sort=False):
        d = compute_snapped(group["value"].to_numpy(float) - group["baseline"].to_numpy(float))
        records.append(
            {
                "test": test,
                "visit": visit,
                "n_down": int((d < 0).sum()),
                "n_up": int((d > 0).sum()),
                "n_same": int((d == 0).sum()),
            }
        )
    return pd.DataFrame(records, columns=["test", "visit", "n_down", "n_up", "n_same"])


def summarize_findings(
    paired: PairedChangeSummary,
    directions: pd.DataFrame,
    *,
    markers: Mapping[str, tuple[str, str]],
    key_visits: Mapping[str, str],
    favourable: Mapping[str, str] | None = None,
    responders: ResponderSummary | None = None,
    clinical: ClinicalStatusSummary | None = None,
    n_subjects: int | None = None,
    prespecified: bool = False,
    denominators: Mapping[str, Denominator] | None = None,
) -> list[Finding]:
    """Findings for each marker at its key visit, the responder rules and the clinical course.

    ``markers`` maps test code → (display name, unit); ``key_visits`` test code → visit label;
    ``directions`` is :func:`compute_direction_counts`; ``prespecified``: the key visits are the
    protocol's pre-specified key visit. ``denominators``: per test code, the treated patients at its
    key visit and why those without a pair are missing. Responder counts are of every subject in
    ``responders`` (the treated), with why those not counted are not. The last finding says what
    the design allows.
    """
    denominators = denominators or {}
    alpha = 1.0 - paired.confidence
    favourable = favourable or {}
    findings: list[Finding] = []
    summary = paired.summary.set_index(["test", "visit"]) if len(paired.summary) else None
    counts = directions.set_index(["test", "visit"]) if len(directions) else None
    for test, (name, unit) in markers.items():
        visit = key_visits.get(test)
        key = (test, visit)
        if visit is None:
            findings.append(Finding(name, f"{name}: no baseline-to-visit pairs.", "no data"))
            continue
        denominator = denominators.get(test)
        if key not in paired.comparisons:
            text = (
                f"{name}: {visit} is the pre-specified key visit; no patient has both a baseline "
                f"and a {visit} value: the test is not run"
                if prespecified
                else f"{name}: no baseline-to-visit pairs"
            )
            if denominator is not None:
                missing = denominator.describe() or "none missing"
                text += f"; of {denominator.treated} treated, {missing}"
            findings.append(Finding(name, text + ".", "no data"))
            continue
        row = counts.loc[key] if counts is not None and key in counts.index else None
        findings.append(
            state_paired_change(
                paired.comparisons[key],
                marker=name,
                unit=unit,
                visit=str(visit),
                n_down=int(row["n_down"]) if row is not None else 0,
                n_up=int(row["n_up"]) if row is not None else 0,
                n_same=int(row["n_same"]) if row is not None else 0,
                p_holm=float(summary.loc[key, "p_holm"]) if summary is not None else None,
                n_tests=paired.n_tests,
                alpha=alpha,
                favourable=favourable.get(test),
                prespecified=prespecified,
                denominator=denominator,
            )
        )
    if responders is not None:
        listing = responders.listing
        days = {rule.id: rule.by_day for rule in responders.rules}
        for item in responders.summary.itertuples(index=False):
            part = listing[listing["rule"] == item.rule]
            counted = part["status"].isin(["responder", "non-responder"])
            denominator = Denominator(
                len(part), count_reasons(part.loc[~counted, "reason"], order=RESPONDER_ORDER)
            )
            reason = part["reason"].astype(str)
            died = int((part["status"].eq("non-responder") & reason.str.startswith("died")).sum())
            findings.append(
                state_responders(
                    item,
                    confidence=responders.confidence,
                    denominator=denominator,
                    died=died,
                    by_day=days.get(item.rule),
                )
            )
    if clinical is not None:
        findings.append(state_clinical(clinical))
    findings.append(state_design(n_subjects if n_subjects is not None else _n(paired), paired))
    return findings


def _n(paired: PairedChangeSummary) -> int:
    return int(paired.summary["n"].max()) if len(paired.summary) else 0


#: Reasons a subject is not counted by a responder rule, in the order they are stated (the rule's
#: day varies; these come first when present).
RESPONDER_ORDER = ("had no baseline value", "had no baseline WHO score")


def state_responders(
    row: object,
    *,
    confidence: float,
    denominator: Denominator | None = None,
    died: int = 0,
    by_day: float | None = None,
) -> Finding:
    """One responder rule: k of n with its exact interval; with a ``denominator``, k of every
    treated patient with the reasons the others are not counted, and how many non-responders
    (``died``) died by the rule's day (``by_day``); the interval stays on the n evaluable."""
    label = str(row.label)  # type: ignore[attr-defined]
    k, n = int(row.responders), int(row.evaluable)  # type: ignore[attr-defined]
    if denominator is not None:
        return _state_responders_of_treated(row, k, n, confidence, denominator, died, by_day)
    if n == 0:
        return Finding(label, f"{label}: no evaluable patient.", "no data")
    extra = []
    if int(row.not_evaluable):  # type: ignore[attr-defined]
        extra.append(f"{int(row.not_evaluable)} not evaluable")  # type: ignore[attr-defined]
    if int(row.not_applicable):  # type: ignore[attr-defined]
        extra.append(f"{int(row.not_applicable)} not applicable")  # type: ignore[attr-defined]
    text = (
        f"{label}: {k} of {n} evaluable patients"
        + (f" ({', '.join(extra)})" if extra else "")
        + f"; exact {format_level(confidence)} CI {100 * row.ci_low:.0f} % to "  # type: ignore[attr-defined]
        f"{100 * row.ci_high:.0f} %."  # type: ignore[attr-defined]
    )
    return Finding(label, text, "too few" if n < MIN_PAIRS else "descriptive")


def _state_responders_of_treated(
    row: object,
    k: int,
    n: int,
    confidence: float,
    denominator: Denominator,
    died: int,
    by_day: float | None,
) -> Finding:
    label = str(row.label)  # type: ignore[attr-defined]
    why = denominator.describe()
    if n == 0:
        text = f"{label}: no evaluable patient of {denominator.treated} treated" + (
            f" ({why})." if why else "."
        )
        return Finding(label, text, "no data")
    parts = [f"{label}: {k} of {denominator.treated} treated patients"]
    if died:
        when = f" by day {by_day:g}" if by_day is not None else ""
        parts[0] += f" ({died} of the non-responders died{when})"
    if why:
        parts.append(why)
    ci = (
        f"exact {format_level(confidence)} CI {100 * row.ci_low:.0f} % to "  # type: ignore[attr-defined]
        f"{100 * row.ci_high:.0f} %"  # type: ignore[attr-defined]
    )
    parts.append(f"{k} of the {n} evaluable, {ci}" if why else ci)
    return Finding(label, "; ".join(parts) + ".", "too few" if n < MIN_PAIRS else "descriptive")


def state_clinical(clinical: ClinicalStatusSummary) -> Finding:
    """Day-horizon outcome counts and the median time to improvement."""
    counts = dict(zip(clinical.outcomes["outcome"], clinical.outcomes["n"], strict=True))
    parts = [f"{v} {k}" for k, v in counts.items()]
    km = clinical.time_to_event["improvement"]
    low, high = km.median_ci
    if np.isfinite(km.median):
        median = (
            f"median time to clinical improvement {format_number(km.median)} days "
            f"({format_level(km.confidence)} CI {format_number(low)} to "
            f"{format_number(high) if np.isfinite(high) else 'not reached'})"
        )
    else:
        median = "the median time to clinical improvement was not reached"
    text = (
        f"By day {clinical.horizon_days}, of {clinical.n} patients: {', '.join(parts)}; {median} "
        f"(Kaplan–Meier, {km.n_events} improvements). Without a control group this is the course "
        "under treatment, not an effect of it."
    )
    return Finding("clinical status", text, "descriptive")


def state_design(n: int, paired: PairedChangeSummary) -> Finding:
    """What a single-arm study of ``n`` patients can and cannot show."""
    alpha = 1.0 - paired.confidence
    text = (
        f"What the design allows: {n} patients, one arm, no control. Changes from baseline "
        "describe the course of treated patients; they cannot show that the cells caused them, "
        "since the markers of critically ill patients also move with time and standard care. "
        f"{paired.n_tests} baseline-vs-visit comparisons were run: at α = {alpha:g} about "
        f"{paired.n_tests * alpha:.1f} would fall below α by chance alone. A claim such as 'the "
        "cells improved immune function and alleviated inflammation' needs a randomised "
        "comparison; here it is, at most, a hypothesis."
    )
    return Finding("design", text, "context")
