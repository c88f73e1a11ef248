"""``celltrial external DIR --cohort NAME [--spec FILE]``: the external comparison in the terminal.

Register in ``cli.py``: ``app.command("external")(user_errors(external_command))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from celltrial.cli_support import DbOption, FormatOption, Output, console
from celltrial.pvalues import p_number


def _for_people(frame, output: Output):
    """p-values as people read them ("0.38", "<0.001") in text; numbers for csv and json."""
    if output.format != "text" or "p_value" not in frame.columns:
        return frame
    return frame.assign(p_value=frame["p_value"].map(p_number))


def external_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    cohort: Annotated[
        str | None,
        typer.Option(
            "--cohort", help="External cohort label (default: the only one).", metavar="NAME"
        ),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="Target-trial specification YAML (default: DIR/target_trial.yaml, else built-in).",
            metavar="FILE",
        ),
    ] = None,
    output_format: FormatOption = "text",
    db: DbOption = None,
) -> None:
    """Compare the study's treated subjects with matched controls of an external cohort."""
    from celltrial.external.analysis import summarize_external
    from celltrial.external.cohorts import choose_cohort, read_external_frames
    from celltrial.external.spec import resolve_target_trial
    from celltrial.study import open_study, read_study_frames

    output = Output(output_format)
    study = open_study(directory, db_url=db, read_only=True)
    target = resolve_target_trial(directory, spec)
    name = choose_cohort(study, cohort or target.cohort)
    frames = read_study_frames(study)
    tests = sorted({target.test_of(m, "external") for m in target.markers})
    subjects, observations = read_external_frames(study, name, tests=tests)
    with console.status("matching and comparing…", refresh_per_second=4):
        result = summarize_external(
            frames.subjects, frames.observations, subjects, observations, spec=target, cohort=name
        )
    output.title(f"{study.study_id} — external comparison against cohort {name!r}")
    output.notes("Eligibility", target.rule_text())
    output.table(result.eligibility_treated.summary, "Treated subjects at their first infusion")
    output.table(result.eligibility_external.summary, f"External patients ({name}) at a landmark")
    m = result.matching
    output.line(
        f"matched {m.n_matched_treated} of {m.n_treated} treated to {m.n_controls_matched} "
        f"controls — {m.method}"
    )
    if len(m.unmatched):
        output.table(m.unmatched, "Treated subjects without a match")
    balance = result.balance.summary
    output.table(
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
        f"Balance (target: {result.balance.rule})",
    )
    output.table(result.mortality.summary, f"{result.mortality.horizon:g}-day mortality")
    norm = result.normalisation
    output.table(
        norm.summary,
        f"Time to {norm.marker} ≥ {norm.threshold:g} (difference in proportion normalised by day "
        f"{norm.horizon:g}: {norm.difference:.2f}, 95 % CI {norm.difference_ci[0]:.2f} to "
        f"{norm.difference_ci[1]:.2f})",
    )
    output.table(
        _for_people(result.changes, output),
        "Change from baseline (ratio = treated / controls; 95 % CI: Welch t on the log scale, "
        "matching weights through Kish's effective n)",
    )
    mortality = result.mortality
    output.line(
        f"{mortality.horizon:g}-day mortality: risk difference {mortality.risk_difference:.2f} "
        f"(95 % CI {mortality.rd_ci[0]:.2f} to {mortality.rd_ci[1]:.2f}; {mortality.rd_interval})"
        f"; risk ratio "
        + (
            f"{mortality.risk_ratio:.2f} (95 % CI {mortality.rr_ci[0]:.2f} to "
            f"{mortality.rr_ci[1]:.2f}; {mortality.rr_interval})"
            if mortality.risk_ratio == mortality.risk_ratio
            else mortality.rr_interval
        )
    )
    output.table(_for_people(result.summary, output), "Main estimates (interval: as named)")
    if result.landmark is not None:
        landmark = result.landmark
        output.table(
            _for_people(landmark.summary, output),
            f"Main estimates with aligned landmarks: matched also on "
            f"{', '.join(landmark.variables[len(target.matching.variables) :])} "
            f"({landmark.n_treated} treated, {landmark.n_controls} controls) beside the main "
            "analysis",
        )
        output.table(landmark.timing, "Days since admission at time zero, by matching")
    output.table(result.e_values, "E-values")
    if result.sensitivity is not None:
        output.table(_for_people(result.sensitivity.summary, output), "Sensitivity")
    output.notes("Caveats", result.caveats)
    output.close()
