"""The whole efficacy analysis of one study: every summary, test and model, as one result.

:func:`summarize_efficacy` runs the building blocks of :mod:`celltrial.efficacy` in the protocol's
terms (its visits and windows, baseline window, time zone and follow-up) and keeps every result;
the report section and the ``celltrial efficacy`` command render it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from celltrial.efficacy.baseline import derive_baseline, derive_change_from_baseline
from celltrial.efficacy.biomarkers import VisitSummary, summarize_visits
from celltrial.efficacy.changes import PairedChangeSummary, summarize_paired_changes
from celltrial.efficacy.clinical_status import (
    ClinicalStatusSummary,
    derive_who_scale,
    summarize_clinical_status,
)
from celltrial.efficacy.denominators import (
    Denominator,
    derive_follow_up_days,
    summarize_pair_denominator,
)
from celltrial.efficacy.findings import Finding, compute_direction_counts, summarize_findings
from celltrial.efficacy.mixed import MixedModelResult, summarize_mixed_model
from celltrial.efficacy.oxygenation import (
    OxygenationSummary,
    derive_oxygenation,
    summarize_oxygenation,
)
from celltrial.efficacy.responders import (
    ResponderSummary,
    load_responder_rules,
    summarize_responders,
)
from celltrial.efficacy.visits import derive_nominal_visits
from celltrial.errors import CelltrialError
from celltrial.frames import lookup
from celltrial.labels import marker_label
from celltrial.protocol import Protocol
from celltrial.study import StudyFrames

#: The efficacy markers of the reference study, in report order.
EFFICACY_MARKERS: tuple[str, ...] = ("DDIMER", "CRP", "IL6", "LYM", "NEUT", "CD4", "CD19", "CD1656")


@dataclass(frozen=True, eq=False)
class EfficacyAnalysis:
    """Everything :func:`summarize_efficacy` computed (``summary``: per-marker key results;
    ``n``: subjects enrolled, ``n_treated``: those with a first infusion, whom the findings count;
    ``denominators``: per marker, the treated at its key visit and why those without a pair are
    missing)."""

    summary: pd.DataFrame
    tests: tuple[str, ...]
    observations: pd.DataFrame
    visits: VisitSummary
    paired: PairedChangeSummary
    mixed: Mapping[str, MixedModelResult]
    oxygenation: pd.DataFrame
    oxygenation_summary: OxygenationSummary | None
    status: pd.DataFrame
    clinical: ClinicalStatusSummary | None
    responders: ResponderSummary
    findings: tuple[Finding, ...]
    key_visits: Mapping[str, str]
    n: int
    method: str
    caveats: tuple[str, ...]
    n_treated: int = 0
    denominators: Mapping[str, Denominator] = field(default_factory=lambda: MappingProxyType({}))


def visit_table(protocol: Protocol) -> pd.DataFrame:
    """The protocol's visits as the table :func:`derive_nominal_visits` takes."""
    return pd.DataFrame(
        {
            "visit": [v.name for v in protocol.visits],
            "day": [v.day for v in protocol.visits],
            "window_before": [v.window_before for v in protocol.visits],
            "window_after": [v.window_after for v in protocol.visits],
        }
    )


def key_visit_of(protocol: Protocol, *, day: int | None = None) -> str | None:
    """The name of the pre-specified key visit: the protocol's (``analysis.key_visit_day``, else
    its last visit with lab tests), or the visit on ``day`` when given. Never chosen from the
    data."""
    if day is None:
        visit = protocol.key_visit
        return visit.name if visit is not None else None
    for visit in protocol.visits:
        if visit.day == day and day > 0:
            return visit.name
    raise CelltrialError(
        f"key visit day {day} is not the day of a scheduled visit after day 0; visit days: "
        + ", ".join(str(v.day) for v in protocol.visits if v.day > 0)
    )


def holm_family_markers(present: Sequence[str]) -> tuple[str, ...]:
    """The markers whose baseline-vs-visit comparisons form the one Holm family: the
    pre-specified efficacy markers with data, whatever subset a command shows."""
    have = set(present)
    return tuple(t for t in EFFICACY_MARKERS if t in have)


def summarize_efficacy(
    frames: StudyFrames,
    protocol: Protocol,
    *,
    tests: Sequence[str] | None = None,
    confidence: float = 0.95,
    key_visit_day: int | None = None,
    today: pd.Timestamp | None = None,
) -> EfficacyAnalysis:
    """Run the efficacy analysis of a study's own subjects on the protocol's schedule.

    ``tests`` defaults to the efficacy markers present (:data:`EFFICACY_MARKERS`). Each
    marker: nominal visits, baseline (protocol window), change from baseline, per-visit
    summaries, baseline-vs-visit exact tests and a mixed model; then oxygenation, the WHO scale
    and its outcomes, responders and findings. Holm's adjustment runs over one family whatever
    ``tests`` asks for (:func:`holm_family_markers` × post-baseline visits); the findings are
    stated at the protocol's pre-specified key visit (``key_visit_day`` overrides it), their
    counts of every treated subject with the reasons those without a pair are missing as of
    ``today`` (default: now; see :mod:`celltrial.efficacy.denominators`).
    """
    if today is None:
        today = pd.Timestamp.now(tz="UTC")
    observations = frames.observations
    present = set(observations["test"].dropna().astype(str))
    wanted = tuple(tests) if tests else tuple(t for t in EFFICACY_MARKERS if t in present)
    missing = [t for t in wanted if t not in present]
    if tests and missing:
        raise CelltrialError(
            f"no observations of {', '.join(missing)}; tests with data: "
            f"{', '.join(sorted(present)) or 'none'}"
        )
    zone = protocol.study.zone
    given = frames.infusions[frames.infusions["start_time"].notna()]
    first_infusion = given.groupby(given["subject_id"].astype(str))["start_time"].min()
    family = holm_family_markers(sorted(present))
    analysed = tuple(dict.fromkeys((*wanted, *family)))
    every = observations[observations["test"].isin(analysed)].copy()
    every["subject_id"] = every["subject_id"].astype(str)
    every = derive_nominal_visits(every, visit_table(protocol))
    every = derive_baseline(
        every, first_infusion=first_infusion, window_days=protocol.baseline.window_days
    )
    every = derive_change_from_baseline(every)
    rows = every[every["test"].isin(wanted)].reset_index(drop=True)

    visits = summarize_visits(rows)
    paired = summarize_paired_changes(every, confidence=confidence, family=family).restricted_to(
        wanted
    )
    mixed = {t: summarize_mixed_model(rows, test=t, confidence=confidence) for t in wanted}

    oxygenation = derive_oxygenation(observations)
    oxygen_summary = summarize_oxygenation(oxygenation) if len(oxygenation) else None
    subjects = frames.subjects.copy()
    subjects["subject_id"] = subjects["subject_id"].astype(str)
    if "first_infusion" not in subjects:
        subjects["first_infusion"] = lookup(subjects["subject_id"], first_infusion)
    status = derive_who_scale(frames.clinical_status, subjects=subjects, oxygenation=oxygenation)
    clinical = (
        summarize_clinical_status(
            status,
            subjects=subjects,
            horizon_days=protocol.follow_up_days,
            zone=zone,
            confidence=confidence,
        )
        if len(status)
        else None
    )
    follow_up = derive_follow_up_days(subjects, today=today, zone=zone)
    treated = [s for s in subjects["subject_id"] if s in follow_up.index]
    responders = summarize_responders(
        rows_for_responders(observations, rows, first_infusion, protocol),
        subjects=treated,
        clinical=clinical,
        confidence=confidence,
        follow_up=follow_up,
    )
    key_visit = key_visit_of(protocol, day=key_visit_day)
    key_visits = {t: key_visit for t in wanted} if key_visit is not None else {}
    denominators = _denominators(rows, follow_up, protocol, key_visits)
    findings = summarize_findings(
        paired,
        compute_direction_counts(rows),
        markers={t: marker_label(t) for t in wanted},
        key_visits=key_visits,
        favourable=load_responder_rules().favourable_direction,
        responders=responders,
        clinical=clinical,
        n_subjects=len(treated),
        prespecified=True,
        denominators=denominators,
    )
    summary = _key_results(wanted, paired, mixed, key_visits)
    caveats = list(paired.caveats)
    if len(treated) < 10:
        caveats.append(
            f"{len(treated)} treated subjects: every estimate is imprecise; the individual "
            "trajectories are the primary evidence"
        )
    return EfficacyAnalysis(
        summary=summary,
        tests=wanted,
        observations=rows,
        visits=visits,
        paired=paired,
        mixed=MappingProxyType(mixed),
        oxygenation=oxygenation,
        oxygenation_summary=oxygen_summary,
        status=status,
        clinical=clinical,
        responders=responders,
        findings=tuple(findings),
        key_visits=MappingProxyType(key_visits),
        n=len(subjects),
        method=_method(protocol, visits, paired, mixed, oxygen_summary, clinical, responders),
        caveats=tuple(dict.fromkeys(caveats)),
        n_treated=len(treated),
        denominators=MappingProxyType(denominators),
    )


def _denominators(
    rows: pd.DataFrame,
    follow_up: pd.DataFrame,
    protocol: Protocol,
    key_visits: Mapping[str, str],
) -> dict[str, Denominator]:
    """Per marker: the treated subjects at its key visit and why those without a pair are
    missing (the visit's window from the protocol)."""
    windows = {v.name: (v.day, v.day + v.window_after) for v in protocol.visits}
    out = {}
    for test, visit in key_visits.items():
        if visit not in windows:
            continue
        day, last_day = windows[visit]
        out[test] = summarize_pair_denominator(
            rows, follow_up, test=test, visit=visit, day=day, last_day=last_day
        )
    return out


def rows_for_responders(
    observations: pd.DataFrame,
    rows: pd.DataFrame,
    first_infusion: pd.Series,
    protocol: Protocol,
) -> pd.DataFrame:
    """Baseline and change columns for the responder rules' tests (efficacy rows reused)."""
    rule_tests = {r.test for r in load_responder_rules().rules if r.test}
    extra = rule_tests - set(rows["test"].unique())
    if not extra:
        return rows
    more = observations[observations["test"].isin(extra)].copy()
    more["subject_id"] = more["subject_id"].astype(str)
    more = derive_change_from_baseline(
        derive_baseline(
            more, first_infusion=first_infusion, window_days=protocol.baseline.window_days
        )
    )
    return pd.concat([rows, more], ignore_index=True)


def _key_results(
    tests: Sequence[str],
    paired: PairedChangeSummary,
    mixed: Mapping[str, MixedModelResult],
    key_visits: Mapping[str, str],
) -> pd.DataFrame:
    records = []
    table = paired.summary.set_index(["test", "visit"]) if len(paired.summary) else None
    for test in tests:
        visit = key_visits.get(test)
        record: dict[str, object] = {"test": test, "visit": visit}
        if table is not None and visit is not None and (test, visit) in table.index:
            row = table.loc[(test, visit)]
            record |= {
                "n": int(row["n"]),
                "scale": row["scale"],
                "hodges_lehmann": row["hodges_lehmann"],
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
                "ci_level": row["ci_level"],
                "p_value": row["p_value"],
                "p_holm": row["p_holm"],
            }
        model = mixed.get(test)
        if model is not None and model.fitted:
            effect = model.summary.set_index("visit")
            if visit in effect.index:
                record |= {
                    "model_effect": effect.loc[visit, "effect"],
                    "model_ci_low": effect.loc[visit, "ci_low"],
                    "model_ci_high": effect.loc[visit, "ci_high"],
                }
        records.append(record)
    return pd.DataFrame.from_records(records)


def _method(
    protocol: Protocol,
    visits: VisitSummary,
    paired: PairedChangeSummary,
    mixed: Mapping[str, MixedModelResult],
    oxygen: OxygenationSummary | None,
    clinical: ClinicalStatusSummary | None,
    responders: ResponderSummary,
) -> str:
    fitted = [t for t, m in mixed.items() if m.fitted]
    parts = [
        "Efficacy markers were assigned to the protocol's nominal visits by their study-day "
        "windows (edges inclusive; nearest visit wins; one value per subject and visit). "
        f"Baseline was the last value before the first infusion within "
        f"{protocol.baseline.window_days} days.",
        f"Per-visit summaries: {visits.method}.",
        f"Baseline versus each later visit: {paired.method}; {paired.n_tests} comparisons"
        + (f" ({paired.family.describe()})" if paired.family and paired.n_tests > 1 else "")
        + ".",
        f"Key visit (pre-specified in the protocol, not chosen from the data): "
        f"{key_visit_of(protocol) or 'none'}; each marker's finding is stated there.",
    ]
    if fitted:
        model = mixed[fitted[0]]
        parts.append(f"Mixed models ({', '.join(fitted)}): {model.method}.")
    not_fitted = [t for t, m in mixed.items() if not m.fitted]
    if not_fitted:
        parts.append(f"No mixed model could be fitted for {', '.join(not_fitted)}.")
    if oxygen is not None:
        parts.append(f"Oxygenation: {oxygen.method}.")
    if clinical is not None:
        parts.append(f"Clinical status: {clinical.method}.")
    parts.append(f"Responders: {responders.method}.")
    parts.append(
        "Findings are worded from these results by fixed rules: direction counts of every "
        "treated subject (first infusion given), with why those without a pair are missing "
        "(died or withdrew before the visit window closed, window not yet closed, no baseline "
        "value, no value at the visit) — the tests and estimates use the pairs available; the "
        "Hodges–Lehmann estimate with its achieved-level interval and the exact p, with the "
        "smallest achievable p stated when it exceeds α, Holm adjustment when p < α, and no causal "
        "verbs (single arm, no control)."
    )
    return " ".join(parts)


def finite(value: float) -> bool:
    """Whether ``value`` is a finite number (helper for renderers)."""
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False
