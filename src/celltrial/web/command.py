"""``celltrial serve`` and ``celltrial users add``: command functions the CLI registers.

app.command("serve")(user_errors(serve_command))
users_app (a Typer group): registered as ``celltrial users``
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from celltrial.cli_support import DbOption
from celltrial.errors import CelltrialError


def serve_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    db: DbOption = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_upload_mb: Annotated[
        float | None,
        typer.Option(
            "--max-upload-mb",
            min=0.001,
            help="Largest upload (a file with its mapping and dictionary) the import page "
            "accepts, in MiB (default: 64).",
        ),
    ] = None,
) -> None:
    """Run the study web app (put it behind an HTTPS reverse proxy beyond the loopback)."""
    import uvicorn

    from celltrial.services.accounts import count_users
    from celltrial.web import create_app

    app = create_app(directory, db_url=db, figure_process=True)
    if max_upload_mb is not None:
        app.state.upload_limit = int(max_upload_mb * 2**20)
    if count_users(app.state.study.engine) == 0:
        raise CelltrialError(
            f"no user can sign in to {directory} yet; create the first admin with "
            f"`celltrial users add {directory} --username NAME --role admin`"
        )
    typer.echo(f"celltrial web app for study {app.state.study.study_id}: http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True)


users_app = typer.Typer(help="Web app accounts.", no_args_is_help=True)


@users_app.callback()
def users() -> None:
    """Web app accounts: people who sign in to `celltrial serve`, each with one role."""


@users_app.command("add")
def users_add(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    username: Annotated[str, typer.Option("--username", help="User name (lower case).")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="investigator, coordinator, data_manager, monitor, statistician or admin.",
        ),
    ],
    full_name: Annotated[str, typer.Option("--name", help="Full name.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Create a web app account (the first one is usually the admin)."""
    from celltrial.services.accounts import add_user, check_new_account
    from celltrial.store.database import current_user
    from celltrial.study import open_study

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_new_account(username, role, password)
    study = open_study(directory, db_url=db)
    account = add_user(
        study.engine,
        username=username,
        role=role,
        password=password,
        full_name=full_name,
        by=current_user(),
    )
    typer.echo(f"created user {account.username} ({account.role}) for study {study.study_id}")
