"""``celltrial safety DIR``: the safety tables in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from celltrial.cli_support import DbOption, FormatOption, Output, say

if TYPE_CHECKING:
    import pandas as pd


def safety_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    output_format: FormatOption = "text",
    db: DbOption = None,
) -> None:
    """Print the safety tables: overview, AEs by term, SAEs, lab shifts, infusion signals."""
    from celltrial.labels import display_unit, test_label
    from celltrial.safety.analysis import analyse_safety
    from celltrial.study import open_study, read_study_frames

    output = Output(output_format)
    study = open_study(directory, db_url=db, read_only=True)
    summary = analyse_safety(study.protocol, read_study_frames(study))
    output.title(f"{study.study_id} — safety population: {summary.population}")
    output.table(summary.summary, f"Safety overview (N = {summary.n})")
    if len(summary.data_problems):
        problems = summary.data_problems.drop(columns=["rule"]).astype(object)
        output.table(
            problems.where(problems.notna(), None),  # no study day without an infusion
            "Adverse-event data problems: how deaths are recorded (query the site; nothing was "
            "changed)",
        )
    if len(summary.by_term):
        output.table(summary.by_term, "Adverse events by term (subjects by worst grade)")
    if len(summary.serious):
        output.table(
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
            ],
            "Serious adverse events",
        )
    if len(summary.lab_toxicities):
        toxicities = summary.lab_toxicities.drop(columns=["time", "unit"])  # in the test's label
        output.table(
            toxicities.assign(test=toxicities["test"].map(test_label)),
            "Treatment-emergent lab toxicities (grade ≥ 3, worse than baseline)",
        )
    if len(summary.lab_baseline_abnormalities):
        present = summary.lab_baseline_abnormalities
        output.table(
            present.assign(test=present["test"].map(test_label)),
            "Lab abnormalities of grade ≥ 3 present before treatment, not worse since "
            "(not counted as toxicities)",
        )
    if len(summary.shifts):
        output.table(summary.shifts, "Lab shifts (baseline grade → worst post-baseline grade)")
    if len(summary.signals):
        signals = summary.signals
        if output.format == "text":  # CSV and JSON keep the catalogue's unit codes
            signals = signals.assign(unit=signals["unit"].map(display_unit))
        output.table(
            signals[
                [
                    "subject_id",
                    "infusion_number",
                    "signal",
                    "unit",
                    "pre_value",
                    "worst_value",
                    "change",
                    "hours_to_first",
                ]
            ],
            "Vital-sign signals after infusions",
        )
    output.notes("Notes", summary.caveats)
    output.close()


ae_app = typer.Typer(
    help="Record and import adverse events.", no_args_is_help=True, rich_markup_mode=None
)


@ae_app.command("import")
def ae_import(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    file: Annotated[Path, typer.Argument(help="CSV file of adverse events.", metavar="FILE")],
    db: DbOption = None,
) -> None:
    """Import adverse events from a CSV file (all or nothing; re-importing adds nothing)."""
    from celltrial.safety.recording import import_adverse_events
    from celltrial.store.database import current_user, study_session
    from celltrial.study import open_study

    study = open_study(directory, db_url=db)
    with study_session(study.engine, user=current_user(), reason=f"import {file.name}") as s:
        batch = import_adverse_events(s, study.study_id, file, zone=study.protocol.study.timezone)
        counts = dict(batch.report) if batch is not None else None
    if counts is None:
        say(f"nothing new in {file}: every event is already stored")
    else:
        say(
            ("imported", "green"),
            f" {counts['new']} adverse event(s) from {file} "
            f"({counts['already stored']} already stored)",
        )


@ae_app.command("add")
def ae_add(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    subject: Annotated[str, typer.Option("--subject", help="Subject ID.", metavar="ID")],
    term: Annotated[str, typer.Option("--term", help="Adverse-event term.", metavar="TERM")],
    onset: Annotated[
        str, typer.Option("--onset", help="Onset time (local to the study).", metavar="TIME")
    ],
    grade: Annotated[
        int | None, typer.Option("--grade", help="CTCAE grade 1–5.", metavar="GRADE")
    ] = None,
    serious: Annotated[
        str | None,
        typer.Option("--serious", help="ICH E2A criteria, ';'-separated.", metavar="CRITERIA"),
    ] = None,
    relatedness: Annotated[
        str | None, typer.Option("--relatedness", help="e.g. 'possibly related'.", metavar="TEXT")
    ] = None,
    resolved: Annotated[
        str | None, typer.Option("--resolved", help="Resolution time.", metavar="TIME")
    ] = None,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="e.g. recovered.", metavar="TEXT")
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the audit log).", metavar="TEXT")
    ] = ("reported by investigator"),
    db: DbOption = None,
) -> None:
    """Record one adverse event (audited)."""
    from celltrial.errors import DataError
    from celltrial.ingest.times import parse_time
    from celltrial.safety.recording import record_adverse_event
    from celltrial.store.database import current_user, study_session
    from celltrial.study import open_study

    study = open_study(directory, db_url=db)
    zone = study.protocol.study.timezone

    def when(text: str | None, option: str) -> pd.Timestamp | None:
        if not text:
            return None
        try:
            return parse_time(text, zone)
        except ValueError as exc:
            raise DataError(f"{option}: {exc}") from None

    event = {
        "subject_id": subject,
        "term": term,
        "onset": when(onset, "--onset"),
        "resolved": when(resolved, "--resolved"),
        "grade": grade,
        "serious": bool(serious),
        "serious_criteria": serious,
        "relatedness": relatedness,
        "outcome": outcome,
    }
    with study_session(study.engine, user=current_user(), reason=reason) as session:
        record_adverse_event(session, study.study_id, event, zone=zone)
    say(("recorded", "green"), f" {term} for {subject}")
