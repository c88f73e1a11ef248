"""The ``celltrial`` command line: a thin shell over the service functions."""

from __future__ import annotations

import atexit
import functools
import gc
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from celltrial.cli_support import (
    DbOption,
    FormatOption,
    Output,
    console,
    errors,
    say,
    user_errors,
)
from celltrial.efficacy.command import efficacy as efficacy_command
from celltrial.errors import CelltrialError
from celltrial.export.command import export_command
from celltrial.external.command import external_command
from celltrial.imaging.command import app as ct_app
from celltrial.ingest.command import import_command
from celltrial.safety.command import ae_app, safety_command
from celltrial.web.command import serve_command, users_app

if TYPE_CHECKING:
    import pandas as pd

    from celltrial.report.sections import SectionProcess
    from celltrial.study import StudyHandle

app = typer.Typer(
    name="celltrial",
    help="Run and analyse early-phase cell-therapy studies: protocol, schedule, data, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no type hints such as <bool> beside the options
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
        from celltrial import __version__  # read from the package metadata only when asked

        console.print(f"celltrial {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """celltrial: one system from the infusion schedule to the study report."""
    from celltrial.store import unreadable_times
    from celltrial.store.write_wait import notify_write_waits

    notify_write_waits(lambda text: errors.print(text))
    # a stored time that cannot be read is left out, and said once, when the command ends
    unreadable_times.forget_unreadable_times()
    unreadable_times.notify_unreadable_times(
        lambda text: errors.print(Text.assemble(("warning:", "dark_orange"), " ", text))
    )
    ctx.call_on_close(unreadable_times.say_unreadable_times)
    _skip_collection_at_exit()


def _skip_collection_at_exit() -> None:
    """Python's last garbage collection, as the process exits, traverses every object the
    command made (0.3 s once pandas and SQLAlchemy are loaded) only to free memory the process
    is giving back: the objects still alive then are frozen (``gc.freeze``) so that it skips
    them. Nothing relies on that collection: Python does not promise to finalize objects alive
    at exit, and celltrial closes its files and commits its transactions itself."""
    if not getattr(_skip_collection_at_exit, "registered", False):
        atexit.register(gc.freeze)
        _skip_collection_at_exit.registered = True  # type: ignore[attr-defined]


@app.command()
@user_errors
def protocols() -> None:
    """List the built-in protocols."""
    import pandas as pd

    from celltrial.protocol import DEFAULT_PROTOCOL, builtin_protocols

    rows = [
        {"name": name + (" (default)" if name == DEFAULT_PROTOCOL else ""), "study title": title}
        for name, title in builtin_protocols().items()
    ]
    Output("text").table(pd.DataFrame(rows), "Built-in protocols")


@app.command("check-protocol")
@user_errors
def check_protocol(
    file: Annotated[Path, typer.Argument(help="Protocol YAML file to validate.", metavar="FILE")],
) -> None:
    """Validate a protocol file and summarise it (errors give line and field)."""
    from celltrial.protocol import read_protocol
    from celltrial.report.build import regimen_text

    protocol = read_protocol(file)
    say(("valid", "green"), f": {file} — study {protocol.study.id}: {protocol.study.title}")
    console.print(regimen_text(protocol))
    console.print(
        f"{len(protocol.visits)} visits: "
        + ", ".join(f"{v.name} (day {v.day})" for v in protocol.visits)
    )


@app.command()
@user_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Study directory to create.", metavar="DIR")],
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            help="Protocol YAML file or built-in name (default: reference).",
            metavar="FILE|NAME",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create a study directory with its protocol and an empty database."""
    from celltrial.study import init_study

    study = init_study(directory, protocol=protocol, db_url=db)
    say(
        ("created", "green"),
        f" study {study.study_id} in {directory} "
        f"(database {study.engine.url.render_as_string(hide_password=True)})",
    )


@app.command()
@user_errors
def migrate(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    db: DbOption = None,
    grant_to: Annotated[
        str | None,
        typer.Option(
            "--grant-to",
            help="PostgreSQL: after migrating (as the tables' owner), give this role what "
            "celltrial needs to run the study and no more; it owns no table, so it cannot "
            "lift the audit log's triggers.",
            metavar="ROLE",
        ),
    ] = None,
) -> None:
    """Upgrade a study's database to this version of celltrial (back it up first)."""
    from celltrial.study import migrate_study

    before, after = migrate_study(directory, db_url=db)
    if before == after:
        say(f"the database of {directory} is up to date (schema revision {after})")
    else:
        say(("migrated", "green"), f" the database of {directory}: revision {before} → {after}")
    if grant_to is not None:
        from celltrial.store.database import database_url, open_engine
        from celltrial.store.roles import grant_app_role

        engine = open_engine(database_url(directory, db))
        try:
            grant_app_role(engine, grant_to)
        finally:
            engine.dispose()
        say(
            ("granted", "green"),
            f" {grant_to} may read and write the study's data and only add to its audit log",
        )


@app.command()
@user_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the demo study.", metavar="PATH")
    ] = Path("celltrial-demo"),
    subjects: Annotated[
        int, typer.Option("--subjects", help="Number of subjects.", metavar="N")
    ] = 5,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed of the simulation.", metavar="N")
    ] = 2020,
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
    say(
        ("demo study", "green"),
        f" {result.study.study_id} in {out}: {overview.n} subjects, "
        f"{int(overview.infusions['actual_day'].notna().sum())} infusions, "
        f"{len(overview.deviations)} protocol deviations",
    )
    console.print(f"report: {result.report}")


def _collector_paused(command: Callable[..., None]) -> Callable[..., None]:
    """Run a short command that only reads with Python's cyclic garbage collector paused: its
    imports (pandas, SQLAlchemy, pydantic) make ~10⁶ objects that each collection would traverse
    again, 0.2 s of the 1.3 s of `status` and no memory saved; collection resumes when it ends."""

    @functools.wraps(command)
    def paused(*args: Any, **kwargs: Any) -> None:
        collecting = gc.isenabled()
        gc.disable()
        try:
            command(*args, **kwargs)
        finally:
            if collecting:
                gc.enable()

    return paused


@app.command()
@user_errors
@_collector_paused
def status(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    subject: Annotated[
        str | None, typer.Option("--subject", help="Show only this subject.", metavar="ID")
    ] = None,
    output_format: FormatOption = "text",
    db: DbOption = None,
) -> None:
    """Print each subject's schedule (done, due, missed, out of window) and the deviations."""
    import pandas as pd

    from celltrial.overview import summarize_study
    from celltrial.study import open_study, read_study_frames

    output = Output(output_format)
    study = open_study(directory, db_url=db, read_only=True)
    overview = summarize_study(study.protocol, read_study_frames(study))
    subjects = overview.summary["subject_id"].tolist()
    if subject is not None:
        if subject not in subjects:
            raise CelltrialError(
                f"no subject {subject!r} in {directory}; subjects: {', '.join(subjects) or 'none'}"
            )
        subjects = [subject]
    zone = study.protocol.study.zone
    today = pd.Timestamp(overview.today).tz_convert(zone)
    output.title(
        f"{study.study_id} — {overview.n} subjects, status as of "
        f"{today:%Y-%m-%d %H:%M} ({study.protocol.study.timezone})"
    )
    groups = _SubjectRows.of(overview)
    for code in subjects:
        _print_subject(output, groups, code)
    _print_deviations(output, overview.deviations, subjects)
    output.close()


@app.command()
@user_errors
def report(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    report_format: Annotated[
        str, typer.Option("--format", help="html, pdf or both.", metavar="FORMAT")
    ] = "html",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="File or directory to write (default: DIR/report.html).", metavar="PATH"
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Write the study report (self-contained HTML and/or PDF) from the study database."""
    from contextlib import nullcontext

    from celltrial.report.sections import start_section_process
    from celltrial.store.database import database_url
    from celltrial.study import open_study

    # the analyses' libraries are imported in another process while this one reads the study
    sections = start_section_process(database_url(directory, db))
    with sections or nullcontext():
        study = open_study(directory, db_url=db, read_only=True)
        paths = _write_report(study, out, report_format, sections)
    for path in paths:
        console.print(f"{'listings' if path.stem.endswith('-listings') else 'report'}: {path}")


def _write_report(
    study: StudyHandle, out: Path | None, report_format: str, sections: SectionProcess | None
) -> list[Path]:
    """The report written with its stages shown as they finish, each with its time."""
    import time

    from celltrial.report.build import REPORT_STEPS, write_report

    steps = [s for s in REPORT_STEPS if report_format != "html" or s != "write PDF"]
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=not sys.stdout.isatty(),
    ) as progress:
        task = progress.add_task("report", total=len(steps))
        current: list[tuple[str, float]] = []

        def step(name: str) -> None:  # each stage finished is printed with its time
            if current:
                done, started = current.pop()
                progress.console.print(f"  {done}: {time.perf_counter() - started:.1f} s")
            current.append((name, time.perf_counter()))
            progress.update(task, description=name, completed=steps.index(name))

        paths = write_report(
            study, out=out, report_format=report_format, on_step=step, section_process=sections
        )
        step_done = current.pop() if current else None
        if step_done:
            progress.console.print(f"  {step_done[0]}: {time.perf_counter() - step_done[1]:.1f} s")
        progress.update(task, completed=len(steps), description="done")
    return paths


def _status_style(status: object) -> str | None:
    return STATUS_STYLE.get(str(status))


@dataclass(frozen=True)
class _SubjectRows:
    """A study overview's rows split by subject once (not filtered again for each subject, which
    made ``status`` quadratic in the number of subjects)."""

    summary: pd.DataFrame
    infusions: dict[Any, pd.DataFrame]
    visits: dict[Any, pd.DataFrame]
    assessments: dict[Any, pd.DataFrame]

    @classmethod
    def of(cls, overview: Any) -> _SubjectRows:
        def split(frame: pd.DataFrame, by: str | list[str]) -> dict[Any, pd.DataFrame]:
            return dict(tuple(frame.groupby(by, sort=False)))

        return cls(
            summary=overview.summary.set_index("subject_id"),
            infusions=split(overview.infusions, "subject_id"),
            visits=split(overview.visits, "subject_id"),
            assessments=split(overview.visit_assessments, ["subject_id", "visit_index"]),
        )

    def of_subject(self, name: str, code: str) -> Iterator[Any]:
        frame = getattr(self, name).get(code)
        return iter(()) if frame is None else frame.itertuples()


def _print_subject(output: Output, groups: _SubjectRows, code: str) -> None:
    import pandas as pd

    row = groups.summary.loc[code]
    rows = []
    for item in groups.of_subject("infusions", code):
        rows.append(
            {
                "item": f"infusion {item.number}",
                "planned day": item.planned_day,
                "window": f"{item.first_day}..{item.last_day}",
                "actual day(s)": "" if pd.isna(item.actual_day) else str(int(item.actual_day)),
                "status": item.status,
                "not done": "",
            }
        )
    for visit in groups.of_subject("visits", code):
        found = groups.assessments[(code, visit.visit_index)]
        first = found.iloc[0]
        days = sorted({d for ds in found["actual_days"] for d in ds})
        in_window = [d for d in days if first["first_day"] <= d <= first["last_day"]]
        days = in_window or days  # the days that count; else the out-of-window ones
        rows.append(
            {
                "item": visit.visit,
                "planned day": visit.day,
                "window": f"{first['first_day']}..{first['last_day']}",
                "actual day(s)": ", ".join(map(str, days)),
                "status": visit.status,
                "not done": _named(output, visit.not_done),
            }
        )
    output.table(
        pd.DataFrame(
            rows, columns=["item", "planned day", "window", "actual day(s)", "status", "not done"]
        ),
        f"{code} — {row['outcome']}, {row['infusions']} infusion(s), "
        f"{row['deviations']} deviation(s)",
        styles={"status": _status_style},
    )


def _named(output: Output, text: object) -> object:
    """Test codes in text as their names for people ("Day 1: PLAT not done" → "Day 1: Platelets
    not done", as the report says); csv and json keep the codes for programs."""
    from celltrial.labels import name_codes

    return name_codes(text) if output.format == "text" and isinstance(text, str) else text


def _print_deviations(output: Output, deviations: pd.DataFrame, subjects: list[str]) -> None:
    import pandas as pd

    shown = deviations[deviations["subject_id"].isin(subjects)]
    if shown.empty:
        output.line(("No protocol deviations.", "green"))
        return
    day = pd.to_numeric(shown["study_day"], errors="coerce").astype("Int64")
    shown = shown.assign(
        what=[_named(output, v) for v in shown["what"]],
        detail=[_named(output, v) for v in shown["detail"]],
    )
    output.table(
        shown.assign(study_day=day)[["subject_id", "study_day", "kind", "what", "detail"]],
        f"Protocol deviations ({len(shown)})",
        labels={"study_day": "Day"},
    )


audit_app = typer.Typer(
    help="The audit trail: check that no entry was changed.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@audit_app.command("verify")
def audit_verify(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    db: DbOption = None,
) -> None:
    """Check the audit trail link by link: each entry's hash covers the one before it, so an
    entry changed, removed or inserted outside celltrial is found (exit 1 naming the first)."""
    from celltrial.store.audit import check_audit_chain
    from celltrial.study import open_study

    study = open_study(directory, db_url=db, read_only=True)
    check = check_audit_chain(study.engine)
    if not check.intact:
        raise CelltrialError(f"the audit trail of {directory} is not intact: {check.problem}")
    say(
        ("audit trail intact", "green"),
        f": {check.events} entries, each linked to the one before; newest link {check.head}"
        " (write it down to show later that nothing before it changed)",
    )


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
_add_group(audit_app, "audit")

if __name__ == "__main__":  # pragma: no cover
    app()
