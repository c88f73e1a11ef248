"""The whole efficacy analysis of one study: every summary, test and model, as one result.

:func:`summarize_efficacy` runs the building blocks of :mod:`celltrial.efficacy` in the protocol's
terms (its visits and windows, baseline window, time zone and follow-up) and keeps every result;
the report section and the ``celltrial efficacy`` command render it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

#: The visit a marker's finding is stated at: the post-baseline visit nearest this day.
KEY_VISIT_DAY = 14


@dataclass(frozen=True, eq=False)
class EfficacyAnalysis:
    """Everything :func:`summarize_efficacy` computed (``summary``: per-marker key results)."""

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


def _key_visits(paired: PairedChangeSummary, day: float) -> dict[str, str]:
    """Per test, the compared visit nearest ``day`` among those with the most pairs ≥ 3."""
    out = {}
    table = paired.summary
    for test, group in table.groupby("test", sort=False):
        usable = group[group["n"] >= 3]
        pool = usable if len(usable) else group
        distance = (pool["visit_day"].astype(float) - day).abs()
        out[str(test)] = str(pool.loc[distance.idxmin(), "visit"])
    return out


def summarize_efficacy(
    frames: StudyFrames,
    protocol: Protocol,
    *,
    tests: Sequence[str] | None = None,
    confidence: float = 0.95,
    key_visit_day: float = KEY_VISIT_DAY,
) -> EfficacyAnalysis:
    """Run the efficacy analysis of a study's own subjects on the protocol's schedule.

    ``tests`` defaults to the efficacy markers present (:data:`EFFICACY_MARKERS`). Each
    marker: nominal visits, baseline (protocol window), change from baseline, per-visit
    summaries, baseline-vs-visit exact tests (Holm over all) and a mixed model; then oxygenation,
    the WHO scale and its outcomes, responders and findings.
    """
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
    rows = observations[observations["test"].isin(wanted)].copy()
    rows["subject_id"] = rows["subject_id"].astype(str)
    rows = derive_nominal_visits(rows, visit_table(protocol))
    rows = derive_baseline(
        rows, first_infusion=first_infusion, window_days=protocol.baseline.window_days
    )
    rows = derive_change_from_baseline(rows)

    visits = summarize_visits(rows)
    paired = summarize_paired_changes(rows, confidence=confidence)
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
    responders = summarize_responders(
        rows_for_responders(observations, rows, first_infusion, protocol),
        subjects=subjects["subject_id"],
        clinical=clinical,
        confidence=confidence,
    )
    key_visits = _key_visits(paired, key_visit_day) if len(paired.summary) else {}
    findings = summarize_findings(
        paired,
        compute_direction_counts(rows),
        markers={t: marker_label(t) for t in wanted},
        key_visits=key_visits,
        favourable=load_responder_rules().favourable_direction,
        responders=responders,
        clinical=clinical,
        n_subjects=len(subjects),
    )
    summary = _key_results(wanted, paired, mixed, key_visits)
    caveats = list(paired.caveats)
    if len(subjects) < 10:
        caveats.append(
            f"{len(subjects)} subjects: every estimate is imprecise; the individual trajectories "
            "are the primary evidence"
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
    )


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
        f"Baseline versus each later visit: {paired.method}; {paired.n_tests} comparisons.",
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
        "Findings are worded from these results by fixed rules: direction counts, the "
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
