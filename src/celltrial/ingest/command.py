"""``celltrial import DIR FILE``: the command-line shell over :func:`import_file`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from celltrial.cli_support import DbOption, console, errors, say, user_errors

if TYPE_CHECKING:  # the ingest package is imported when a command runs, not at start-up
    from celltrial.ingest.report import ValidationReport

SEVERITY_STYLE = {"error": "bold red", "warning": "dark_orange", "info": "dim"}


@user_errors
def import_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    file: Annotated[
        Path, typer.Argument(help="File to import (CSV, XLSX, FHIR JSON, REDCap).", metavar="FILE")
    ],
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="Column-mapping YAML file (with --suggest-mapping: where to write).",
            metavar="FILE",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report only; store nothing.")
    ] = False,
    register_subjects: Annotated[
        bool,
        typer.Option(
            "--register-subjects", help="Create subjects the file names but the study lacks."
        ),
    ] = False,
    cohort: Annotated[
        str | None,
        typer.Option(
            "--cohort",
            help="External cohort whose patients the file's subject codes name (codes are per "
            "cohort; with --register-subjects the default is the file name); --cohort '' (or "
            "no --cohort without --register-subjects) means the study's own subjects.",
            metavar="NAME",
        ),
    ] = None,
    suggest_mapping: Annotated[
        bool,
        typer.Option("--suggest-mapping", help="Write a proposed mapping YAML; import nothing."),
    ] = False,
    db: DbOption = None,
) -> None:
    """Import lab results and vital signs: all or nothing, idempotent, with a validation report."""
    from celltrial.ingest.importer import ImportRefused, import_file
    from celltrial.study import open_study

    if suggest_mapping:
        from celltrial.ingest.suggest import suggest_mapping as propose
        from celltrial.ingest.suggest import write_mapping_proposal

        proposal, unrecognised = propose(file)
        out = mapping or directory / f"{file.stem}-mapping.yaml"
        write_mapping_proposal(proposal, unrecognised, out)
        known = len(proposal["tests"]) - len(unrecognised)
        say(("proposed mapping", "green"), f" {out}: {known} tests recognised")
        if unrecognised:
            say(
                (f"not recognised ({len(unrecognised)}):", "dark_orange"),
                " " + ", ".join(map(str, unrecognised)),
            )
        return
    study = open_study(directory, db_url=db)
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not sys.stdout.isatty(),
    ) as progress:
        task = progress.add_task("import", total=file.stat().st_size if file.is_file() else None)

        def advance(_rows: int, _size: int) -> None:
            progress.advance(task, 0)

        try:
            result = import_file(
                study,
                file,
                mapping=mapping,
                dry_run=dry_run,
                register=register_subjects,
                cohort=cohort,
                on_progress=advance,
            )
        except ImportRefused as refused:
            print_report(refused.report, console=errors)
            raise
    print_report(result.report)
    verb = "would import" if dry_run else "imported"
    c = result.counts
    where = (
        f"external cohort '{result.cohort}'"
        if result.cohort is not None
        else "the study's own subjects"
    )
    subjects = "new subject" if c["subjects"] == 1 else "new subjects"
    registered = f"{subjects} to register" if dry_run else f"{subjects} registered"
    facts = (
        f", {c['subjects_updated']} with changed facts (audited)" if c["subjects_updated"] else ""
    )
    say(
        (verb, "green"),
        f" {file} ({result.layout}) into {where}: {c['inserted']} new, {c['updated']} updated "
        f"(audited), {c['unchanged']} unchanged results; {c['subjects']} {registered}{facts}"
        + ("; nothing was stored (dry run)" if dry_run else f"; batch {result.batch_id}"),
    )
    console.print(f"report: {result.report_csv}")


def print_report(report: ValidationReport, *, console: Console = console) -> None:
    """The report as a Rich table grouped by kind, with the accounting of the file's results."""
    from celltrial.ingest.report import describe_place
    from celltrial.labels import value_label

    kinds = report.by_kind()
    c = report.counts
    title = (
        f"Validation of {report.file}: {c['results']} results = {c['stored']} stored + "
        f"{c['flagged']} flagged + {c['reported']} reported"
    )
    table = Table(
        "severity", "kind", "count", "meaning", "first example", title=title, title_justify="left"
    )
    messages = report.messages
    for item in kinds.itertuples():
        same = messages[(messages["kind"] == item.kind) & (messages["severity"] == item.severity)]
        first = same.iloc[0]
        example = describe_place(first.to_dict())
        style = SEVERITY_STYLE.get(item.severity, "")
        table.add_row(
            Text(item.severity, style=style),
            Text(value_label(item.kind)),
            str(item.count),
            Text(item.meaning),
            Text(example[:80]),
        )
    console.print(table)
