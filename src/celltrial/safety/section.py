"""The report's safety section, rendered from :class:`SafetySummary`."""

from __future__ import annotations

import pandas as pd
from markupsafe import Markup, escape

from celltrial.labels import value_label
from celltrial.report.sections import ReportContext, Section
from celltrial.report.tables import render_table
from celltrial.safety.analysis import analyse_safety
from celltrial.safety.conventions import load_grading_conventions
from celltrial.safety.tables import SafetySummary


def build_safety_section(context: ReportContext) -> Section:
    """Safety tables and listings for the report."""
    summary = analyse_safety(context.study.protocol, context.frames)
    return Section(
        id="safety",
        title="Safety",
        html=render_safety_html(summary, context),
        methods=(summary.method,),
    )


def _hours(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.1f}"


def _yes_no(value: object) -> str:
    return "yes" if value is True or value == 1 else "no"


#: The subject IDs a safety table cell names before "… and N more" (the listings name all).
MAX_IDS_IN_CELL = 12


def _first_ids(ids: object) -> object:
    """A comma-separated list of subject IDs cut to :data:`MAX_IDS_IN_CELL`."""
    if not isinstance(ids, str):
        return ids
    items = [i for i in ids.split(", ") if i]
    if len(items) <= MAX_IDS_IN_CELL:
        return ids
    return ", ".join(items[:MAX_IDS_IN_CELL]) + f" … and {len(items) - MAX_IDS_IN_CELL} more"


def _version() -> str:
    return load_grading_conventions().ctcae_version


def render_safety_html(summary: SafetySummary, context: ReportContext) -> Markup:
    """Overview, AEs by term and worst grade, SAEs, lab shifts and toxicities, infusion signals."""
    counter = context.tables
    parts = [
        Markup('<p class="population"><strong>Safety population: ')
        + escape(summary.population)
        + Markup(".</strong></p>"),
        Markup("<p>") + escape(" ".join(summary.caveats)) + Markup("</p>"),
    ]
    if summary.conventions:
        parts.append(Markup("<p>") + escape(summary.conventions) + Markup("</p>"))
    overview = summary.summary.assign(
        percent=summary.summary["percent"].map(lambda p: "—" if pd.isna(p) else f"{p:.0f} %")
    )
    for column in ("subject_ids",):  # a line of IDs, not a page of them, in the body
        if column in overview:
            overview[column] = overview[column].map(_first_ids)
    parts.append(
        render_table(overview, caption=f"Safety overview (N = {summary.n}).", counter=counter)
    )
    problems = summary.data_problems
    if len(problems):
        parts.append(
            render_table(
                pd.DataFrame(
                    {
                        "subject": problems["subject_id"],
                        "term": problems["term"],
                        "onset day": problems["onset_day"],
                        "grade": problems["grade"],
                        "serious": problems["serious"].map({True: "yes", False: "no"}),
                        "outcome": problems["outcome"],
                        "problem": problems["problem"],
                        "what to fix": problems["fix"],
                    }
                ),
                caption="Adverse-event data problems: how deaths are recorded (to be queried "
                "with the site; the events are shown as recorded, nothing was changed).",
                counter=counter,
                listing=True,
            )
        )
    if len(summary.by_term):
        parts.append(
            render_table(
                summary.by_term.assign(
                    **(
                        {"subject_ids": summary.by_term["subject_ids"].map(_first_ids)}
                        if "subject_ids" in summary.by_term
                        else {}
                    )
                ),
                caption="Treatment-emergent adverse events by term: subjects by worst CTCAE grade.",
                counter=counter,
            )
        )
    listing = summary.listing
    if len(listing):
        parts.append(
            render_table(
                pd.DataFrame(
                    {
                        "subject": listing["subject_id"],
                        "term": listing["term"],
                        "onset day": listing["onset_day"],
                        "grade": listing["grade"],
                        "serious": listing["serious"].map({True: "yes", False: "no"}),
                        "relatedness": listing["relatedness"],
                        "after infusion": listing["last_infusion"],
                        "hours after start": listing["hours_since_infusion"],
                        "outcome": listing["outcome"],
                    }
                ),
                caption="Listing of adverse events (hours counted from the start of the last "
                "infusion before onset).",
                counter=counter,
                formats={"hours after start": _hours},
                listing=True,
            )
        )
    if len(summary.serious):
        parts.append(
            render_table(
                summary.serious[
                    [
                        "subject_id",
                        "term",
                        "onset_day",
                        "grade",
                        "serious_criteria",
                        "relatedness",
                        "outcome",
                    ]
                ].rename(columns={"subject_id": "subject"}),
                caption="Serious adverse events (ICH E2A criteria).",
                counter=counter,
                listing=True,
            )
        )
    else:
        parts.append(Markup("<p>No serious adverse events.</p>"))
    if len(summary.shifts):
        shifts = summary.shifts.pivot_table(
            index=["term", "baseline"],
            columns="worst",
            values="subjects",
            aggfunc="sum",
            fill_value=0,
        ).reset_index()
        shifts.columns = [
            str(c) if c in ("term", "baseline") else f"worst {c}" for c in shifts.columns
        ]
        parts.append(
            render_table(
                shifts,
                caption="Laboratory shift table: subjects by baseline CTCAE grade (the last graded "
                "value at or before the first infusion, graded against LLN/ULN) and worst grade "
                f"after the first infusion (CTCAE v{_version()}, laboratory part).",
                counter=counter,
            )
        )
    toxicities = summary.lab_toxicities
    if len(toxicities):
        parts.append(
            render_table(
                toxicities.drop(columns=["time"]).rename(
                    columns={
                        "subject_id": "subject",
                        "study_day": "day",
                        "baseline_grade": "baseline grade",
                        "assumed_normal_baseline": "no baseline (taken as normal)",
                    }
                ),
                caption="Treatment-emergent laboratory toxicities: values of CTCAE grade ≥ 3 after "
                "the first infusion, worse than the subject's baseline grade for the term.",
                counter=counter,
                formats={"no baseline (taken as normal)": _yes_no},
                listing=True,
            )
        )
    else:
        parts.append(Markup("<p>No treatment-emergent laboratory toxicity of grade ≥ 3.</p>"))
    present = summary.lab_baseline_abnormalities
    if len(present):
        parts.append(
            render_table(
                present.rename(
                    columns={
                        "subject_id": "subject",
                        "baseline_grade": "baseline grade",
                        "worst_grade": "worst grade after",
                        "n_values": "values of grade ≥ 3 after",
                        "first_study_day": "first day",
                        "last_study_day": "last day",
                    }
                ),
                caption="Laboratory abnormalities of grade ≥ 3 present before treatment and no "
                "worse after the first infusion: not counted as toxicities.",
                counter=counter,
                listing=True,
            )
        )
    if len(summary.signals):
        signals = summary.signals
        parts.append(
            render_table(
                pd.DataFrame(
                    {
                        "subject": signals["subject_id"],
                        "infusion": signals["infusion_number"],
                        "signal": signals["signal"].map(value_label),
                        "unit": signals["unit"],
                        "before": signals["pre_value"],
                        "worst after": signals["worst_value"],
                        "change": signals["change"],
                        "hours to first": signals["hours_to_first"],
                    }
                ),
                caption="Vital-sign signals within the reaction window after infusion starts "
                "(compare with the adverse events reported); hours to first: from the start of "
                "the infusion to the first reading past the threshold.",
                counter=counter,
                formats={"hours to first": _hours},
                listing=True,
            )
        )
    return Markup("").join(parts)
