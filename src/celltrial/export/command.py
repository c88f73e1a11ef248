"""``celltrial export DIR --out PATH [--format csv|dataset-json] [--cohort NAME]`` (registered
by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from celltrial.cli_support import DbOption, say, user_errors


@user_errors
def export_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for the datasets (dm, ex, ae, lb, vs).", metavar="PATH"),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="csv or dataset-json (CDISC Dataset-JSON v1.1).", metavar="FORMAT"
        ),
    ] = "csv",
    cohort: Annotated[
        str | None,
        typer.Option(
            "--cohort",
            help="Export this external cohort instead (under a study id of its own).",
            metavar="NAME",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Export the study as CDISC SDTM-like datasets: demographics (DM), infusions (EX), adverse
    events (AE), lab results (LB) and vital signs (VS)."""
    from celltrial.export.sdtm import DOMAINS
    from celltrial.export.submission import export_sdtm
    from celltrial.study import open_study

    study = open_study(directory, db_url=db, read_only=True)
    for path in export_sdtm(study, out, fmt=fmt, cohort=cohort):
        what = DOMAINS.get(path.stem.upper(), path.stem).lower()
        say(("wrote", "green"), f" {what}: {path}")
