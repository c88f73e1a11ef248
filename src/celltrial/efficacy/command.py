"""``celltrial efficacy DIR [--test CODE]``: the efficacy tables in the terminal (Rich)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from celltrial.cli_support import DbOption, console, user_errors


def _num(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—" if value is None else str(value)
    from celltrial.efficacy.findings import format_number

    return format_number(number) if np.isfinite(number) else "—"


def _print(frame: pd.DataFrame, title: str) -> None:
    table = Table(*map(str, frame.columns), title=title, title_justify="left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_num(v) if not isinstance(v, str) else v for v in row))
    console.print(table)


def efficacy(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    test: Annotated[
        list[str] | None,
        typer.Option("--test", help="Marker code (repeatable); default: the efficacy markers."),
    ] = None,
    figures: Annotated[
        Path | None,
        typer.Option(
            "--figures", help="Also write each marker's panel and the overview (PNG and SVG) here."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Print the efficacy analysis: per-visit summaries, exact paired tests, mixed models,
    clinical status, responders and findings; optionally write the figures."""
    from celltrial.efficacy.analysis import summarize_efficacy
    from celltrial.efficacy.findings import format_level
    from celltrial.study import open_study, read_study_frames

    @user_errors
    def run() -> None:
        study = open_study(directory, db_url=db)
        frames = read_study_frames(study)
        analysis = summarize_efficacy(frames, study.protocol, tests=[t.upper() for t in test or []])
        console.print(f"[bold]{study.study_id}[/] — efficacy, {analysis.n} subjects")
        if analysis.n == 0:
            console.print(
                "No treated subjects yet: the efficacy analysis starts once subjects have "
                "an infusion (celltrial import, or the web app)."
            )
            return
        if figures is not None:
            written = write_marker_figures(
                analysis.observations, frames.infusions, analysis.tests, figures
            )
            for path in written:
                console.print(f"figure: {path}")
        visits = analysis.visits.summary
        if len(visits):
            _print(
                visits[
                    ["test", "visit", "n", "median", "q1", "q3", "min", "max", "geometric_mean"]
                ],
                "Per-visit summaries",
            )
        paired = analysis.paired.summary
        if len(paired):
            shown = paired.assign(
                ci=[
                    f"{_num(a)} to {_num(b)} ({format_level(c)})"
                    for a, b, c in zip(
                        paired["ci_low"], paired["ci_high"], paired["ci_level"], strict=True
                    )
                ]
            )
            _print(
                shown[
                    [
                        "test",
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
                "Baseline vs visit: Wilcoxon signed-rank, Hodges–Lehmann (exact)",
            )
        for code, model in analysis.mixed.items():
            if model.fitted:
                _print(
                    model.summary[
                        ["visit", "n", "effect", "ci_low", "ci_high", "p_value", "p_holm"]
                    ],
                    f"Mixed model {code} ({'fold change' if model.log else 'difference'} "
                    "vs baseline)",
                )
            else:
                console.print(
                    f"[yellow]Mixed model {code} not fitted:[/] {'; '.join(model.caveats)}"
                )
        if analysis.clinical is not None:
            clinical = analysis.clinical
            _print(
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
            _print(km, "Time to event (Kaplan–Meier; — = not reached)")
        _print(analysis.responders.wide, "Responders")
        console.print("[bold]Findings[/]")
        for finding in analysis.findings:
            console.print(f"• {finding.text}", highlight=False)
        console.print("[bold]Caveats[/]")
        for caveat in analysis.caveats:
            console.print(f"• {caveat}", highlight=False)

    run()


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
