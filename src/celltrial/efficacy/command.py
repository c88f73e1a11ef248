"""``celltrial efficacy DIR [--test CODE]``: the efficacy tables in the terminal (Rich)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from celltrial.cli_support import DbOption, FormatOption, Output, say, user_errors

if TYPE_CHECKING:
    import pandas as pd


def efficacy(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    test: Annotated[
        list[str] | None,
        typer.Option(
            "--test",
            help="Marker code (repeatable); default: the efficacy markers.",
            metavar="CODE",
        ),
    ] = None,
    figures: Annotated[
        Path | None,
        typer.Option(
            "--figures",
            help="Also write each marker's panel and the overview (PNG and SVG) here.",
            metavar="FOLDER",
        ),
    ] = None,
    output_format: FormatOption = "text",
    db: DbOption = None,
) -> None:
    """Print the efficacy analysis: per-visit summaries, exact paired tests, mixed models,
    clinical status, responders and findings; optionally write the figures."""
    import pandas as pd

    from celltrial.efficacy.analysis import summarize_efficacy
    from celltrial.efficacy.findings import format_level, format_number
    from celltrial.efficacy.notes import paired_notes
    from celltrial.labels import test_label
    from celltrial.study import open_study, read_study_frames

    def number(value: object) -> str:
        return format_number(float(value)) if pd.notna(value) else "—"  # type: ignore[arg-type]

    @user_errors
    def run() -> None:
        output = Output(output_format)
        study = open_study(directory, db_url=db, read_only=True)
        frames = read_study_frames(study)
        analysis = summarize_efficacy(frames, study.protocol, tests=[t.upper() for t in test or []])
        untreated = analysis.n - analysis.n_treated
        output.title(
            f"{study.study_id} — efficacy, {analysis.n_treated} treated subjects"
            + (f" ({untreated} enrolled but not treated)" if untreated else "")
        )
        if analysis.n_treated == 0:
            output.line(
                "No treated subjects yet: the efficacy analysis starts once subjects have "
                "an infusion (celltrial import, or the web app)."
            )
            output.close()
            return
        if figures is not None:
            written = write_marker_figures(
                analysis.observations, frames.infusions, analysis.tests, figures
            )
            for path in written:
                say(f"figure: {path}")
        visits = analysis.visits.summary
        for code, rows in visits.groupby("test", sort=False):
            output.table(
                rows[["visit", "n", "median", "q1", "q3", "min", "max", "geometric_mean"]],
                f"{test_label(str(code))}: per-visit summaries",
            )
        paired = analysis.paired.summary
        for code, rows in paired.groupby("test", sort=False):
            shown = rows.assign(
                ci=[
                    f"{number(a)} to {number(b)} ({format_level(c)})"
                    for a, b, c in zip(
                        rows["ci_low"], rows["ci_high"], rows["ci_level"], strict=True
                    )
                ],
            )
            output.table(
                shown[
                    [
                        "visit",
                        "n",
                        "scale",
                        "hodges_lehmann",
                        "ci",
                        "p_value",
                        "min_p_value",
                        "p_holm",
                    ]
                ],
                f"{test_label(str(code))}: baseline vs visit, Wilcoxon signed-rank test and "
                "Hodges–Lehmann estimate (exact); p (Holm) over the family below",
            )
        family = analysis.paired.family
        if family is not None and analysis.paired.n_tests > 1 and len(paired):
            output.line(_for_people(output, family.describe()) + ".")
        for code, model in analysis.mixed.items():
            if model.fitted:
                output.table(
                    model.summary[
                        ["visit", "n", "effect", "ci_low", "ci_high", "p_value", "p_holm"]
                    ],
                    f"Mixed model, {test_label(code)} "
                    f"({'fold change' if model.log else 'difference'} vs baseline; p (Holm) over "
                    f"this model's {int(model.summary['p_value'].notna().sum())} visits)",
                )
            else:
                output.line(
                    ("Mixed model not fitted", "yellow"),
                    f" for {test_label(code)}: {'; '.join(model.caveats)}",
                )
        if analysis.clinical is not None:
            clinical = analysis.clinical
            output.table(
                clinical.summary[
                    [
                        "subject_id",
                        "baseline_who",
                        "worst_who",
                        "who_at_horizon",
                        "improved_day",
                        "discharge_day",
                        "death_day",
                        "outcome",
                    ]
                ],
                f"Clinical status (WHO scale) to day {clinical.horizon_days}",
            )
            km = pd.DataFrame(
                [
                    {
                        "endpoint": r.endpoint,
                        "n": r.n,
                        "events": r.n_events,
                        "median": r.median,
                        "ci_low": r.median_ci[0],
                        "ci_high": r.median_ci[1],
                    }
                    for r in clinical.time_to_event.values()
                ]
            )
            output.table(km, "Time to event (Kaplan–Meier; — = not reached)")
        output.table(analysis.responders.wide, "Responders")
        output.notes("Findings", [finding.text for finding in analysis.findings])
        caveats = analysis.caveats
        if output.format == "text":  # as the report says them: names, not codes or fields
            caveats = [_for_people(output, line) for line in paired_notes(caveats)]
        output.notes("Caveats", caveats)
        output.close()

    run()


def _for_people(output: Output, text: str) -> str:
    """Test codes in a sentence as their names (DDIMER → D-dimer (FEU)) for the text format, as
    the report says it; csv and json keep the codes."""
    from celltrial.labels import name_codes

    return name_codes(text) if output.format == "text" else text


def write_marker_figures(
    observations: pd.DataFrame, infusions: pd.DataFrame, tests: Sequence[str], out: Path
) -> list[Path]:
    """One panel per marker plus the small-multiples overview, each as PNG and SVG.

    ``observations`` carry their nominal visits (the analysis' frame), so the median line is
    drawn per protocol visit."""
    from celltrial.efficacy.figures import (
        infusion_days_of,
        render_biomarker_overview,
        render_biomarker_panel,
        write_figure,
    )

    days = infusion_days_of(infusions)
    written = []
    for code in tests:
        if not (observations["test"] == code).any():
            continue
        figure = render_biomarker_panel(observations, test=code, infusion_days=days)
        written += [write_figure(figure, out / f"{code}.{suffix}") for suffix in ("png", "svg")]
    overview = render_biomarker_overview(observations, tests=tests, infusion_days=days)
    written += [write_figure(overview, out / f"overview.{suffix}") for suffix in ("png", "svg")]
    return written
