"""The ``celltrial`` command line: a thin shell over the service functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from celltrial import __version__
from celltrial.cli_support import DbOption, console, user_errors
from celltrial.efficacy.command import efficacy as efficacy_command
from celltrial.errors import CelltrialError
from celltrial.export.command import export_command
from celltrial.external.command import external_command
from celltrial.imaging.command import app as ct_app
from celltrial.ingest.command import import_command
from celltrial.safety.command import ae_app, safety_command
from celltrial.web.command import serve_command, users_app

app = typer.Typer(
    name="celltrial",
    help="Run and analyse early-phase cell-therapy studies: protocol, schedule, data, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
STATUS_STYLE = {
    "done": "green",
    "on_time": "green",
    "partial": "yellow",
    "out_of_window": "dark_orange",
    "late": "dark_orange",
    "early": "dark_orange",
    "missed": "red",
    "due": "cyan",
    "upcoming": "dim",
    "not_expected": "dim",
}


def _version(value: bool) -> None:
    if value:
        console.print(f"celltrial {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """celltrial: one system from the infusion schedule to the study report."""


@app.command()
@user_errors
def protocols() -> None:
    """List the built-in protocols."""
    from celltrial.protocol import DEFAULT_PROTOCOL, builtin_protocols

    table = Table("name", "study title", title="Built-in protocols")
    for name, title in builtin_protocols().items():
        table.add_row(name + (" (default)" if name == DEFAULT_PROTOCOL else ""), title)
    console.print(table)


@app.command("check-protocol")
@user_errors
def check_protocol(
    file: Annotated[Path, typer.Argument(help="Protocol YAML file to validate.")],
) -> None:
    """Validate a protocol file and summarise it (errors give line and field)."""
    from celltrial.protocol import read_protocol
    from celltrial.report.build import regimen_text

    protocol = read_protocol(file)
    console.print(f"[green]valid[/]: {file} — study {protocol.study.id}: {protocol.study.title}")
    console.print(regimen_text(protocol))
    console.print(
        f"{len(protocol.visits)} visits: "
        + ", ".join(f"{v.name} (day {v.day})" for v in protocol.visits)
    )


@app.command()
@user_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Study directory to create.")],
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol", help="Protocol YAML file or built-in name (default: reference)."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create a study directory with its protocol and an empty database."""
    from celltrial.study import init_study

    study = init_study(directory, protocol=protocol, db_url=db)
    console.print(
        f"[green]created[/] study {study.study_id} in {directory} "
        f"(database {study.engine.url.render_as_string(hide_password=True)})"
    )


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for the demo study.")] = Path(
        "celltrial-demo"
    ),
    subjects: Annotated[int, typer.Option("--subjects", help="Number of subjects.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the simulation.")] = 2020,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing demo study in --out.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Build a demo study (built-in protocol, simulated cohort), analyse it, write its report."""
    from celltrial.demo import DEMO_STEPS, run_demo

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=not sys.stdout.isatty(),
    ) as progress:
        task = progress.add_task("demo", total=len(DEMO_STEPS))

        def step(name: str) -> None:
            progress.update(task, description=name, completed=DEMO_STEPS.index(name))

        result = run_demo(out, n_subjects=subjects, seed=seed, db_url=db, force=force, on_step=step)
        progress.update(task, completed=len(DEMO_STEPS), description="done")
    overview = result.overview
    console.print(
        f"[green]demo study[/] {result.study.study_id} in {out}: {overview.n} subjects, "
        f"{int(overview.infusions['actual_day'].notna().sum())} infusions, "
        f"{len(overview.deviations)} protocol deviations"
    )
    console.print(f"report: {result.report}")


@app.command()
@user_errors
def status(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    subject: Annotated[
        str | None, typer.Option("--subject", help="Show only this subject.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Print each subject's schedule (done, due, missed, out of window) and the deviations."""
    from celltrial.overview import summarize_study
    from celltrial.study import open_study, read_study_frames

    study = open_study(directory, db_url=db)
    overview = summarize_study(study.protocol, read_study_frames(study))
    subjects = overview.summary["subject_id"].tolist()
    if subject is not None:
        if subject not in subjects:
            raise CelltrialError(
                f"no subject {subject!r} in {directory}; subjects: {', '.join(subjects) or 'none'}"
            )
        subjects = [subject]
    console.print(
        f"[bold]{study.study_id}[/] — {overview.n} subjects, status as of "
        f"{overview.today:%Y-%m-%d %H:%M} UTC"
    )
    for code in subjects:
        _print_subject(overview, code)
    _print_deviations(overview.deviations, subjects)


@app.command()
@user_errors
def report(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    report_format: Annotated[str, typer.Option("--format", help="html, pdf or both.")] = "html",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="File or directory to write (default: DIR/report.html)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Write the study report (self-contained HTML and/or PDF) from the study database."""
    from celltrial.report import write_report
    from celltrial.study import open_study

    study = open_study(directory, db_url=db)
    with console.status("analysing and writing the report…"):
        paths = write_report(study, out=out, report_format=report_format)
    for path in paths:
        console.print(f"report: {path}")


def _badge(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status.replace('_', ' ')}[/]"


def _print_subject(overview: Any, code: str) -> None:
    row = overview.summary.set_index("subject_id").loc[code]
    table = Table(
        "item",
        "planned day",
        "window",
        "actual day(s)",
        "status",
        "not done",
        title=f"{code} — {row['outcome']}, {row['infusions']} infusion(s), "
        f"{row['deviations']} deviation(s)",
        title_justify="left",
    )
    for item in overview.infusions[overview.infusions["subject_id"] == code].itertuples():
        actual = "" if pd.isna(item.actual_day) else str(int(item.actual_day))
        table.add_row(
            f"infusion {item.number}",
            str(item.planned_day),
            f"{item.first_day}..{item.last_day}",
            actual,
            _badge(item.status),
            "",
        )
    assessments = overview.visit_assessments
    for visit in overview.visits[overview.visits["subject_id"] == code].itertuples():
        rows = assessments[
            (assessments["subject_id"] == code) & (assessments["visit_index"] == visit.visit_index)
        ]
        first = rows.iloc[0]
        days = sorted({d for ds in rows["actual_days"] for d in ds})
        in_window = [d for d in days if first["first_day"] <= d <= first["last_day"]]
        days = in_window or days  # the days that count; else the out-of-window ones
        table.add_row(
            visit.visit,
            str(visit.day),
            f"{first['first_day']}..{first['last_day']}",
            ", ".join(map(str, days)),
            _badge(visit.status),
            visit.not_done,
        )
    console.print(table)


def _print_deviations(deviations: pd.DataFrame, subjects: list[str]) -> None:
    shown = deviations[deviations["subject_id"].isin(subjects)]
    if shown.empty:
        console.print("[green]No protocol deviations.[/]")
        return
    table = Table(
        "subject",
        "day",
        "kind",
        "what",
        "detail",
        title=f"Protocol deviations ({len(shown)})",
        title_justify="left",
    )
    for item in shown.itertuples():
        day = "" if pd.isna(item.study_day) else str(int(item.study_day))
        table.add_row(item.subject_id, day, item.kind, item.what, item.detail)
    console.print(table)


# Commands of the analysis packages: each package keeps its own command functions.
app.command("import")(user_errors(import_command))
app.command("export")(user_errors(export_command))
app.command("safety")(user_errors(safety_command))
app.command("efficacy")(user_errors(efficacy_command))
app.command("external")(user_errors(external_command))
app.command("serve")(user_errors(serve_command))


def _add_group(group: typer.Typer, name: str) -> None:
    """Register a command group whose commands print user errors like the others."""
    for command in group.registered_commands:
        command.callback = user_errors(command.callback)
    app.add_typer(group, name=name)


_add_group(ae_app, "ae")
_add_group(ct_app, "ct")
_add_group(users_app, "users")

if __name__ == "__main__":  # pragma: no cover
    app()
