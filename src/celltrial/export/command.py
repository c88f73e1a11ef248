"""``celltrial export DIR --out PATH [--format csv|dataset-json]`` (registered by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from celltrial.cli_support import DbOption, say, user_errors


@user_errors
def export_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the LB and VS datasets.", metavar="PATH")
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="csv or dataset-json (CDISC Dataset-JSON v1.1).", metavar="FORMAT"
        ),
    ] = "csv",
    cohort: Annotated[
        str | None,
        typer.Option("--cohort", help="Export this external cohort instead.", metavar="NAME"),
    ] = None,
    db: DbOption = None,
) -> None:
    """Export observations as CDISC SDTM-like LB (labs) and VS (vital signs) datasets."""
    from celltrial.export.sdtm import export_observations
    from celltrial.study import open_study

    study = open_study(directory, db_url=db, read_only=True)
    for path in export_observations(study, out, fmt=fmt, cohort=cohort):
        say(("wrote", "green"), f" {path}")
