"""``celltrial external DIR --cohort NAME [--spec FILE]``: the external comparison in the terminal.

Register in ``cli.py``: ``app.command("external")(user_errors(external_command))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from celltrial.cli_support import DbOption, console


def _text(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return f"{value:.3g}" if np.isfinite(value) else "—"
    return str(value)


def _print(frame: pd.DataFrame, title: str) -> None:
    table = Table(*map(str, frame.columns), title=title, title_justify="left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_text(v) for v in row))
    console.print(table)


def external_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    cohort: Annotated[
        str | None,
        typer.Option("--cohort", help="External cohort label (default: the only one)."),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="Target-trial specification YAML (default: DIR/target_trial.yaml, else built-in).",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Compare the study's treated subjects with matched controls of an external cohort."""
    from celltrial.external.analysis import summarize_external
    from celltrial.external.cohorts import choose_cohort, read_external_frames
    from celltrial.external.spec import resolve_target_trial
    from celltrial.study import open_study, read_study_frames

    study = open_study(directory, db_url=db)
    target = resolve_target_trial(directory, spec)
    name = choose_cohort(study, cohort or target.cohort)
    frames = read_study_frames(study)
    tests = sorted({target.test_of(m, "external") for m in target.markers})
    subjects, observations = read_external_frames(study, name, tests=tests)
    with console.status("matching and comparing…"):
        result = summarize_external(
            frames.subjects, frames.observations, subjects, observations, spec=target, cohort=name
        )
    console.print(f"[bold]{study.study_id}[/] — external comparison against {name!r}")
    for text in target.rule_text():
        console.print(f"• eligibility: {text}", highlight=False)
    _print(result.eligibility_treated.summary, "Treated subjects at their first infusion")
    _print(result.eligibility_external.summary, f"External patients ({name}) at a landmark")
    m = result.matching
    console.print(
        f"matched {m.n_matched_treated} of {m.n_treated} treated to {m.n_controls_matched} "
        f"controls — {m.method}",
        highlight=False,
    )
    if len(m.unmatched):
        _print(m.unmatched, "Treated subjects without a match")
    balance = result.balance.summary
    _print(
        balance[
            [
                "variable",
                "sample",
                "mean_treated",
                "mean_control",
                "smd",
                "variance_ratio",
                "meets_target",
            ]
        ],
        "Balance",
    )
    _print(result.mortality.summary, f"{result.mortality.horizon:g}-day mortality")
    norm = result.normalisation
    _print(
        norm.summary,
        f"Time to {norm.marker} ≥ {norm.threshold:g} (difference in proportion normalised by day "
        f"{norm.horizon:g}: {norm.difference:.2f}, 95 % CI {norm.difference_ci[0]:.2f} to "
        f"{norm.difference_ci[1]:.2f})",
    )
    _print(result.changes, "Change from baseline (ratio = treated / controls)")
    _print(result.summary, "Main estimates")
    _print(result.e_values, "E-values")
    if result.sensitivity is not None:
        _print(result.sensitivity.summary, "Sensitivity")
    console.print("[bold]Caveats[/]")
    for caveat in result.caveats:
        console.print(f"• {caveat}", highlight=False)
