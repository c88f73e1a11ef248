"""``celltrial safety DIR``: the safety tables in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from celltrial.safety.analysis import analyse_safety
from celltrial.study import open_study, read_study_frames

console = Console()


def _print(frame: pd.DataFrame, title: str) -> None:
    table = Table(*map(str, frame.columns), title=title, title_justify="left")
    for row in frame.itertuples(index=False):
        table.add_row(
            *("—" if pd.isna(v) else f"{v:.3g}" if isinstance(v, float) else str(v) for v in row)
        )
    console.print(table)


def safety_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy database URL.")] = None,
) -> None:
    """Print the safety tables: overview, AEs by term, SAEs, lab shifts, infusion signals."""
    study = open_study(directory, db_url=db)
    summary = analyse_safety(study.protocol, read_study_frames(study))
    _print(summary.summary, f"Safety overview (N = {summary.n})")
    if len(summary.by_term):
        _print(summary.by_term, "Adverse events by term (subjects by worst grade)")
    if len(summary.serious):
        _print(
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
        _print(summary.lab_toxicities.drop(columns=["time"]), "Lab values of grade ≥ 3")
    if len(summary.shifts):
        _print(summary.shifts, "Lab shifts (baseline grade → worst post-baseline grade)")
    if len(summary.signals):
        _print(
            summary.signals[
                [
                    "subject_id",
                    "infusion_number",
                    "signal",
                    "pre_value",
                    "worst_value",
                    "change",
                    "hours_to_first",
                ]
            ],
            "Vital-sign signals after infusions",
        )
    for caveat in summary.caveats:
        console.print(f"[yellow]note:[/] {caveat}")
