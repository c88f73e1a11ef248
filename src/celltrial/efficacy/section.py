"""The report's efficacy section: figures, tables, findings and methods from one analysis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from celltrial.efficacy.analysis import EfficacyAnalysis, summarize_efficacy
from celltrial.efficacy.figures import (
    MAX_SWIMMER_LANES,
    infusion_days_of,
    render_biomarker_overview,
    render_swimmer,
)
from celltrial.efficacy.findings import format_level, format_number
from celltrial.efficacy.mixed import MixedModelResult
from celltrial.efficacy.notes import paired_notes
from celltrial.labels import assessment_label, marker_label, name_codes
from celltrial.pvalues import p_number
from celltrial.report.figures import render_figure
from celltrial.report.sections import ReportContext, Section
from celltrial.report.tables import TableCounter, render_table

FIGURE_DPI = 110


def _num(value: object, digits: int = 3) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    return format_number(number, digits) if np.isfinite(number) else "—"


def _p_cell(value: object) -> str:
    """A p-value cell (the header says p): "0.38", "<0.001", "—" (never "0")."""
    try:
        return p_number(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"


def _ci(low: object, high: object, level: object | None = None) -> str:
    text = f"{_num(low)} to {_num(high)}"
    if level is not None and np.isfinite(float(level)):  # type: ignore[arg-type]
        text += f" ({format_level(float(level))})"  # type: ignore[arg-type]
    return text


def _items(lines: Iterable[str], *, css: str = "") -> Markup:
    body = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return (
        Markup(f'<ul class="{css}">{body}</ul>' if css else f"<ul>{body}</ul>")
        if body
        else Markup("")
    )


def _p(text: str) -> Markup:
    return Markup(f"<p>{escape(text)}</p>")


def build_efficacy_section(context: ReportContext) -> Section | None:
    """The efficacy section of the study report (None when the study has no efficacy data)."""
    frames, protocol = context.frames, context.study.protocol
    if frames.observations.empty and frames.clinical_status.empty:
        return None
    analysis = summarize_efficacy(frames, protocol, today=context.overview.today)
    if not analysis.tests and analysis.clinical is None:
        return None
    html = render_efficacy_html(analysis, frames.infusions, frames.adverse_events, context)
    return Section(id="efficacy", title="Efficacy", html=html, methods=(analysis.method,))


def _population(analysis: EfficacyAnalysis) -> str:
    """The population analysed: the treated subjects, and those enrolled but never treated."""
    text = f"{analysis.n_treated} treated subjects"
    untreated = analysis.n - analysis.n_treated
    return text + (f" ({untreated} enrolled but not treated, not analysed)" if untreated else "")


def render_efficacy_html(
    analysis: EfficacyAnalysis,
    infusions: pd.DataFrame,
    adverse_events: pd.DataFrame,
    context: ReportContext,
) -> Markup:
    """The section body: findings, figures and tables of ``analysis``."""
    tables, figures = context.tables, context.figures
    days = infusion_days_of(infusions)
    parts: list[Markup] = [
        _p(
            f"{_population(analysis)}; markers "
            f"{', '.join(assessment_label(t) for t in analysis.tests) or 'none'}. Study day 0 "
            "is each subject's first infusion. The individual trajectories are the primary "
            "evidence at this sample size; tests and models are secondary and stated with what "
            "they can and cannot show."
        ),
        Markup("<h3>Findings</h3>"),
        _items((f.text for f in analysis.findings), css="findings"),
    ]
    if analysis.tests:
        parts.append(Markup("<h3>Biomarker trajectories</h3>"))
        overview = render_biomarker_overview(
            analysis.observations, tests=analysis.tests, infusion_days=days
        )
        parts.append(
            render_figure(
                overview,
                caption="Efficacy markers over time: one line per subject, the median per "
                "protocol visit (black), reference range (grey band), infusion days (dotted); "
                "log axis for log-normal markers.",
                counter=figures,
                dpi=FIGURE_DPI,
                tight=False,  # fixed margins
            )
        )
        parts.append(_visit_table(analysis, tables))
        parts.append(Markup("<h3>Change from baseline: exact paired tests</h3>"))
        parts.append(_paired_table(analysis, tables))
        parts.append(_items(paired_notes(analysis.paired.caveats)))
        parts.append(Markup("<h3>Mixed-effects models (all visits)</h3>"))
        parts.append(_mixed_table(analysis, tables))
        parts.append(_items(_model_notes(analysis.mixed)))
    if analysis.clinical is not None:
        parts.append(Markup("<h3>Oxygenation and clinical status</h3>"))
        daily = analysis.oxygenation_summary.daily if analysis.oxygenation_summary else None
        swimmer = render_swimmer(
            analysis.status,
            clinical=analysis.clinical.summary,
            infusions=infusions,
            adverse_events=adverse_events,
            oxygenation=daily,
            horizon_days=analysis.clinical.horizon_days,
        )
        shown = min(analysis.n, MAX_SWIMMER_LANES)
        parts.append(
            render_figure(
                swimmer,
                caption="Clinical course per subject: daily WHO clinical progression scale "
                "(colour and number), infusions, adverse events, discharge and death; below, the "
                "daily SpO2/FiO2 ratio (only readings with SpO2 ≤ 97 %)"
                + (f" — first {shown} of {analysis.n} subjects." if shown < analysis.n else "."),
                counter=figures,
                dpi=FIGURE_DPI,
            )
        )
        parts += _clinical_tables(analysis, tables)
        if analysis.oxygenation_summary is not None:
            parts.append(_oxygen_table(analysis, tables))
            parts.append(_items(analysis.oxygenation_summary.caveats))
    parts.append(Markup("<h3>Responders</h3>"))
    parts += _responder_tables(analysis, tables)
    parts.append(_items(analysis.responders.caveats))
    return Markup("\n").join(parts)


def _visit_table(analysis: EfficacyAnalysis, counter: TableCounter) -> Markup:
    table = analysis.visits.summary
    frame = pd.DataFrame(
        {
            "marker": [assessment_label(t) for t in table["test"]],
            "unit": [marker_label(t)[1] for t in table["test"]],
            "visit": table["visit"],
            "n": table["n"],
            "median (IQR)": [
                f"{_num(m)} ({_num(a)}–{_num(b)})"
                for m, a, b in zip(table["median"], table["q1"], table["q3"], strict=True)
            ],
            "range": [
                f"{_num(a)}–{_num(b)}" for a, b in zip(table["min"], table["max"], strict=True)
            ],
            "geometric mean": [_num(v) for v in table["geometric_mean"]],
        }
    )
    return render_table(
        frame,
        caption="Per-visit summaries of the efficacy markers (scheduled values; quartiles R "
        "type 7).",
        counter=counter,
    )


def _paired_table(analysis: EfficacyAnalysis, counter: TableCounter) -> Markup:
    table = analysis.paired.summary
    if table.empty:
        return _p("No subject has both a baseline and a later scheduled value.")
    frame = pd.DataFrame(
        {
            "marker": table["test"],
            "visit": table["visit"],
            "n pairs": table["n"],
            "scale": table["scale"],
            "Hodges–Lehmann": [_num(v) for v in table["hodges_lehmann"]],
            "CI (achieved level)": [
                _ci(a, b, c)
                for a, b, c in zip(
                    table["ci_low"], table["ci_high"], table["ci_level"], strict=True
                )
            ],
            "exact p": [_p_cell(v) for v in table["p_value"]],
            "smallest possible p": [_p_cell(v) for v in table["min_p_value"]],
            "Holm p": [_p_cell(v) for v in table["p_holm"]],
            "t-test estimate (CI)": [
                f"{_num(e)} ({_num(a)} to {_num(b)})"
                for e, a, b in zip(
                    table["t_estimate"], table["t_ci_low"], table["t_ci_high"], strict=True
                )
            ],
        }
    )
    family = analysis.paired.family
    holm = (
        f" Holm p: {name_codes(family.describe())}."
        if family is not None and analysis.paired.n_tests > 1
        else ""
    )
    return render_table(
        frame,
        caption="Baseline vs each later visit: Wilcoxon signed-rank test with the Hodges–Lehmann "
        "estimate and its exact interval (ratio to baseline for log-normal markers); secondary "
        "paired t-test (ratio of geometric means)." + holm,
        counter=counter,
    )


def _mixed_table(analysis: EfficacyAnalysis, counter: TableCounter) -> Markup:
    rows = []
    for test, model in analysis.mixed.items():
        if not model.fitted or not model.converged:  # no estimates to read (see _model_notes)
            rows.append(
                {
                    "marker": test,
                    "visit": "—",
                    "n": 0,
                    "effect vs baseline": "not fitted" if not model.fitted else "not converged",
                    "CI": "—",
                    "p": "—",
                    "Holm p": "—",
                }
            )
            continue
        for item in model.summary.itertuples(index=False):
            rows.append(
                {
                    "marker": test,
                    "visit": item.visit,
                    "n": int(item.n),
                    "effect vs baseline": _num(item.effect) + (" ×" if model.log else ""),
                    "CI": _ci(item.ci_low, item.ci_high, model.confidence),
                    "p": _p_cell(item.p_value),
                    "Holm p": _p_cell(item.p_holm),
                }
            )
    return render_table(
        pd.DataFrame(rows),
        caption="Linear mixed-effects model per marker (log values, visit as factor, random "
        "intercept per subject): fold change vs the baseline visit (× = ratio). Holm p: over "
        "the visits of each marker's own model (a family per model, apart from the paired "
        "tests' family).",
        counter=counter,
    )


def _model_notes(models: Mapping[str, MixedModelResult]) -> list[str]:
    """What each model's fitting problems mean for the reader, then the shared caveats.

    The fitting library's own warnings (optimiser retries, deprecations) are not shown as they
    are: a model that did not converge has no estimates in the table, one whose between-subject
    variance sits at zero has intervals that may be too narrow.
    """
    specific: list[str] = []
    shared: dict[str, None] = {}
    for test, model in models.items():
        name = assessment_label(test)
        warnings = " ".join(c for c in model.caveats if c.startswith("model fitting warning"))
        if not model.fitted:
            reasons = [
                c
                for c in model.caveats[1:]
                if not c.startswith(("model fitting warning", "model could not be fitted"))
            ]
            specific.append(
                f"the model for {name} could not be fitted"
                + (f" ({reasons[0]})" if reasons else "")
                + ": it has no estimates"
            )
            continue
        if not model.converged:
            specific.append(f"the model for {name} did not converge: its estimates are not shown")
            continue
        if "boundary of the parameter space" in warnings:
            specific.append(
                f"the model for {name} estimates no variation between subjects beyond the "
                "visit effects (a variance at its lower limit of zero): its intervals may be too "
                "narrow"
            )
        elif "converge" in warnings:
            specific.append(f"the model for {name} converged only at a second attempt")
        for line in model.caveats:
            if line.startswith(("model fitting warning", "the optimiser did not converge")):
                continue
            shared[line.replace(" in statsmodels", " in the software used")] = None
    return specific + sorted(shared)


def _clinical_tables(analysis: EfficacyAnalysis, counter: TableCounter) -> list[Markup]:
    clinical = analysis.clinical
    assert clinical is not None
    out = []
    outcomes = clinical.outcomes.assign(
        percent=[f"{v:.0f} %" for v in clinical.outcomes["percent"]]
    )
    out.append(
        render_table(
            outcomes,
            caption=f"Outcome at day {clinical.horizon_days}.",
            counter=counter,
        )
    )
    km_rows = []
    for result in clinical.time_to_event.values():
        low, high = result.median_ci
        median = _num(result.median) if np.isfinite(result.median) else "not reached"
        bounds = " to ".join(_num(v) if np.isfinite(v) else "NR" for v in (low, high))
        share = 100 * (1 - result.survival_at(clinical.horizon_days))
        km_rows.append(
            {
                "endpoint": result.endpoint,
                "n": result.n,
                "events": result.n_events,
                "censored": result.n_censored,
                "median days (CI)": f"{median} ({bounds})",
                f"by day {clinical.horizon_days}": f"{share:.0f} %",
            }
        )
    out.append(
        render_table(
            pd.DataFrame(km_rows),
            caption="Time to event (Kaplan–Meier; median with Brookmeyer–Crowley "
            f"{format_level(clinical.time_to_event['death'].confidence)} interval; NR = not "
            "reached; share with the event by the horizon = 1 − KM).",
            counter=counter,
        )
    )
    table = clinical.summary
    listing = pd.DataFrame(
        {
            "subject": table["subject_id"],
            "WHO baseline": table["baseline_who"],
            "worst WHO": table["worst_who"],
            f"WHO by day {clinical.horizon_days}": table["who_at_horizon"],
            "≥ 2-point improvement day": table["improved_day"],
            "discharge day": table["discharge_day"],
            "death day": table["death_day"],
            "outcome": table["outcome"],
        }
    )
    out.append(
        render_table(
            listing,
            caption="Clinical course per subject (WHO clinical progression scale, study days).",
            counter=counter,
            formats={c: _int_or_dash for c in listing.columns if c not in ("subject", "outcome")},
            listing=True,
        )
    )
    out.append(_items(clinical.caveats))
    return out


def _int_or_dash(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    return "—" if not np.isfinite(number) else f"{number:g}"


def _oxygen_table(analysis: EfficacyAnalysis, counter: TableCounter) -> Markup:
    summary = analysis.oxygenation_summary
    assert summary is not None
    table = summary.summary
    visit_days = sorted(
        {int(v) for v in analysis.visits.summary.get("visit_day", pd.Series()).dropna()}
    )
    if visit_days:
        table = table[table["study_day"].isin(visit_days)]
    columns = {"study_day": "day", "n_subjects": "n"}
    frame = table.rename(columns=columns)[["day", "n"]].copy()
    for key, label in (
        ("spo2", "SpO2 %"),
        ("fio2", "FiO2"),
        ("sf_ratio", "S/F"),
        ("pf_ratio", "P/F"),
        ("rox", "ROX"),
    ):
        if f"{key}_median" in table:
            frame[f"{label} median (range)"] = [
                f"{_num(m)} ({_num(a)}–{_num(b)})"
                for m, a, b in zip(
                    table[f"{key}_median"], table[f"{key}_min"], table[f"{key}_max"], strict=True
                )
            ]
    return render_table(
        frame,
        caption="Oxygenation on visit days: median (range) over subjects of each subject's daily "
        "median; S/F only where SpO2 ≤ 97 %; ROX = (SpO2/FiO2) ÷ respiratory rate at every "
        "reading with all three (Roca et al.; no SpO2 limit, see the caveats).",
        counter=counter,
        formats={"day": _int_or_dash},
    )


def _responder_tables(analysis: EfficacyAnalysis, counter: TableCounter) -> list[Markup]:
    responders = analysis.responders
    summary = responders.summary
    frame = pd.DataFrame(
        {
            "rule": summary["label"],
            "responders / evaluable": [
                f"{k} / {n}"
                for k, n in zip(summary["responders"], summary["evaluable"], strict=True)
            ],
            "not evaluable": summary["not_evaluable"],
            "not applicable": summary["not_applicable"],
            f"exact {format_level(responders.confidence)} CI": [
                "—" if not np.isfinite(a) else f"{100 * a:.0f} % to {100 * b:.0f} %"
                for a, b in zip(summary["ci_low"], summary["ci_high"], strict=True)
            ],
        }
    )
    wide = responders.wide.rename(columns={"subject_id": "subject"})
    return [
        render_table(
            frame, caption="Responders per rule (rules in responders.yaml).", counter=counter
        ),
        render_table(
            wide,
            caption="Responder listing per subject (day of response).",
            counter=counter,
            listing=True,
        ),
    ]
