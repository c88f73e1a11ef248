"""The report's "External comparison" section (only when the study holds an external cohort)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from celltrial.errors import CelltrialError
from celltrial.external.analysis import ExternalComparison, summarize_external
from celltrial.external.balance import render_love_plot, variable_label
from celltrial.external.cohorts import choose_cohort, read_external_cohorts, read_external_frames
from celltrial.external.figures import render_mortality, render_trajectories
from celltrial.external.spec import resolve_target_trial
from celltrial.labels import name_codes, plain_words
from celltrial.pvalues import p_number
from celltrial.report.figures import render_figure
from celltrial.report.sections import ReportContext, Section
from celltrial.report.tables import ROUNDING_NOISE, render_table

FIGURE_DPI = 110
#: p-values in tables as people read them (never "0").
P_FORMAT = {"p_value": p_number}


def _num(value: object, digits: int = 3) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    if abs(number) < ROUNDING_NOISE:  # a zero computed in floats (1.11e-16) reads as 0
        number = 0.0
    return f"{number:.{digits}g}" if np.isfinite(number) else "—"


def _p(text: str) -> Markup:
    return Markup(f"<p>{escape(plain_words(name_codes(text)))}</p>")


def _items(lines) -> Markup:
    """A list of the analysis's sentences, variable names and units in words."""
    return Markup(
        "<ul>" + "".join(f"<li>{escape(plain_words(name_codes(x)))}</li>" for x in lines) + "</ul>"
    )


def _table(frame: pd.DataFrame, *, caption: str, **options) -> Markup:
    """A report table with the analysis's codes and variable names in words (LYM day 7 →
    "Lymphocytes day 7", log_LYM → "log lymphocytes") in its caption and text cells."""
    named = frame.copy()
    for column in named.columns:
        if named[column].dtype == object or pd.api.types.is_string_dtype(named[column]):
            named[column] = named[column].map(
                lambda v: plain_words(name_codes(v)) if isinstance(v, str) else v
            )
    return render_table(named, caption=plain_words(name_codes(caption)), **options)


def build_external_section(context: ReportContext) -> Section | None:
    """External comparison of the study's treated subjects (None without an external cohort)."""
    study = context.study
    if not read_external_cohorts(study):
        return None
    spec = resolve_target_trial(study.directory)
    cohort = choose_cohort(study, spec.cohort) if spec.cohort else read_external_cohorts(study)[0]
    tests = sorted({spec.test_of(m, "external") for m in spec.markers})
    subjects, observations = read_external_frames(study, cohort, tests=tests)
    try:
        comparison = summarize_external(
            context.frames.subjects,
            context.frames.observations,
            subjects,
            observations,
            spec=spec,
            cohort=cohort,
        )
    except CelltrialError as exc:
        html = _p(f"The external comparison against cohort {cohort!r} could not be made: {exc}")
        return Section(id="external", title="External comparison", html=html)
    html = render_external_html(comparison, context)
    return Section(
        id="external", title="External comparison", html=html, methods=(comparison.method,)
    )


def render_external_html(result: ExternalComparison, context: ReportContext) -> Markup:
    """The section body: attrition, balance, outcomes, sensitivity and the caveats."""
    tables, figures = context.tables, context.figures
    spec, matching = result.spec, result.matching
    parts: list[Markup] = [
        _p(
            f"What might these patients have looked like without the cells? The study's treated "
            f"subjects are compared with patients of the external cohort {result.cohort!r} who "
            "meet the same eligibility rules at a comparable time zero, matched on age, sex and "
            "baseline markers. This is a non-randomised comparison with historical controls: "
            "read every number with the caveats at the end of this section."
        ),
        Markup("<h3>Eligibility and time zero</h3>"),
        _items(spec.rule_text()),
    ]
    flow = pd.concat(
        [
            result.eligibility_treated.summary.assign(arm="treated"),
            result.eligibility_external.summary.assign(arm=f"external ({result.cohort})"),
        ],
        ignore_index=True,
    )[["arm", "status", "n"]]
    parts.append(_table(flow, caption="Eligibility at time zero, by arm", counter=tables))
    parts.append(
        _p(
            f"{matching.n_matched_treated} of {matching.n_treated} eligible treated subjects "
            f"were matched to {matching.n_controls_matched} of {matching.n_controls_eligible} "
            f"eligible controls ({matching.method})."
        )
    )
    if len(matching.unmatched):
        parts.append(
            _table(matching.unmatched, caption="Treated subjects without a match", counter=tables)
        )
    parts.append(Markup("<h3>Balance</h3>"))
    balance = result.balance.summary.copy()
    balance["variable"] = balance["variable"].map(variable_label)
    balance["meets_target"] = balance["meets_target"].map({True: "yes", False: "NO"})
    parts.append(
        _table(
            balance,
            caption="Baseline balance before and after matching (controls weighted); target: "
            f"{result.balance.rule}",
            counter=tables,
        )
    )
    parts.append(
        render_figure(
            render_love_plot(result.balance),
            caption="Love plot: standardised mean differences before and after matching "
            f"(dashed ±{result.balance.smd_below:g}).",
            counter=figures,
            dpi=FIGURE_DPI,
        )
    )
    parts.append(Markup("<h3>Outcomes</h3>"))
    parts.append(
        render_figure(
            render_trajectories(result.aligned, spec=spec),
            caption="Marker trajectories of treated subjects and matched controls from time "
            "zero (log scale).",
            counter=figures,
            dpi=FIGURE_DPI,
        )
    )
    parts.append(
        _table(
            result.availability,
            caption="Subjects with a value per marker and pre-specified day (follow-up "
            "availability)",
            counter=tables,
        )
    )
    parts.append(
        _table(
            result.changes,
            caption="Change from baseline: median fold change per arm and ratio of geometric "
            "mean fold changes (treated / controls) with a 95 % Welch t interval on the log "
            "scale (matching weights through Kish's effective n)",
            counter=tables,
            formats=P_FORMAT,
        )
    )
    model_rows = [
        m.summary.assign(marker=name)
        for name, m in result.models.items()
        if m.fitted and len(m.summary)
    ]
    if model_rows:
        models = pd.concat(model_rows, ignore_index=True)
        models = models[["marker", *[c for c in models.columns if c != "marker"]]]
        parts.append(
            _table(
                models,
                caption="Mixed model on log values, arm × day: ratio of fold changes from "
                "baseline, treated vs controls",
                counter=tables,
                formats=P_FORMAT,
            )
        )
    parts.append(
        render_figure(
            render_mortality(result.mortality),
            caption=f"Kaplan–Meier survival from time zero to day {result.mortality.horizon:g}.",
            counter=figures,
            dpi=FIGURE_DPI,
        )
    )
    parts.append(
        _table(
            result.mortality.summary,
            caption=f"{result.mortality.horizon:g}-day mortality by arm (crude risk with an "
            "exact interval)",
            counter=tables,
        )
    )
    mortality = result.mortality
    parts.append(
        _p(
            f"Risk difference treated − controls {_num(mortality.risk_difference)} (95 % CI "
            f"{_num(mortality.rd_ci[0])} to {_num(mortality.rd_ci[1])}; "
            f"{mortality.rd_interval}); risk ratio "
            + (
                f"{_num(mortality.risk_ratio)} (95 % CI {_num(mortality.rr_ci[0])} to "
                f"{_num(mortality.rr_ci[1])}; {mortality.rr_interval})."
                if np.isfinite(mortality.risk_ratio)
                else f"{mortality.rr_interval}."
            )
        )
    )
    norm = result.normalisation
    parts.append(
        _table(
            norm.summary,
            caption=f"Time to {norm.marker} ≥ {norm.threshold:g} within {norm.horizon:g} days "
            f"(Kaplan–Meier); difference treated − controls in the proportion normalised "
            f"{_num(norm.difference)} (95 % Newcombe score interval {_num(norm.difference_ci[0])} "
            f"to {_num(norm.difference_ci[1])})",
            counter=tables,
        )
    )
    parts.append(
        _table(
            result.summary,
            caption="Main estimates (95 % intervals as named in the last column)",
            counter=tables,
            formats=P_FORMAT,
        )
    )
    if result.landmark is not None:
        landmark = result.landmark
        added = plain_words(", ".join(landmark.variables[len(spec.matching.variables) :]))
        parts.append(
            _table(
                landmark.summary,
                caption=f"Main estimates with aligned landmarks: matched also on {added} "
                f"({landmark.n_treated} treated, {landmark.n_controls} controls), beside the "
                "main analysis",
                counter=tables,
                formats=P_FORMAT,
            )
        )
        parts.append(
            _table(
                landmark.timing,
                caption="Days since admission at time zero by arm, main and aligned matching",
                counter=tables,
            )
        )
    parts.append(Markup("<h3>Sensitivity</h3>"))
    parts.append(
        _table(
            result.e_values,
            caption="E-values (VanderWeele & Ding 2017): the risk ratio an unmeasured "
            "confounder would need with both arm and outcome to explain the estimate away",
            counter=tables,
        )
    )
    if result.sensitivity is not None:
        parts.append(
            _table(
                result.sensitivity.summary,
                caption="Main estimates under other matching choices and leaving out each "
                "treated subject",
                counter=tables,
                formats=P_FORMAT,
            )
        )
    parts.append(Markup("<h3>What this comparison cannot tell</h3>"))
    parts.append(_items(result.caveats))
    parts.append(
        _p(
            "External data: Tongji Hospital, Wuhan (Yan L. et al., Nat Mach Intell 2020; MIT "
            "licence) when the cohort is the Tongji export."
        )
    )
    return Markup("").join(parts)


__all__ = ["build_external_section", "render_external_html"]
