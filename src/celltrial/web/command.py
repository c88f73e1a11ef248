"""``celltrial serve`` and ``celltrial users …``: command functions the CLI registers.

app.command("serve")(user_errors(serve_command))
users_app (a Typer group): registered as ``celltrial users``
"""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from celltrial.cli_support import DbOption
from celltrial.errors import CelltrialError


def serve_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")],
    db: DbOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on.", metavar="HOST")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="TCP port (0: any free port).", metavar="PORT", min=0)
    ] = 8000,
    max_upload_mb: Annotated[
        float | None,
        typer.Option(
            "--max-upload-mb",
            min=0.001,
            help="Largest upload (a file with its mapping and dictionary) the import page "
            "accepts, in MiB (default: 64).",
            metavar="MB",
        ),
    ] = None,
) -> None:
    """Run the study web app (put it behind an HTTPS reverse proxy beyond the loopback)."""
    import uvicorn

    from celltrial.services.accounts import count_users
    from celltrial.web import create_app

    app = create_app(directory, db_url=db, figure_process=True, upload_process=True)
    if max_upload_mb is not None:
        app.state.upload_limit = int(max_upload_mb * 2**20)
    if count_users(app.state.study.engine) == 0:
        raise CelltrialError(
            f"no user can sign in to {directory} yet; create the first admin with "
            f"`celltrial users add {directory} --username NAME --role admin`"
        )
    listening = bind_port(host, port)  # before the URL is printed: it must lead to this app
    port = listening.getsockname()[1]  # --port 0: the free port the system chose
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"celltrial web app for study {app.state.study.study_id}: http://{shown}:{port}/")
    config = uvicorn.Config(app, log_level="info", proxy_headers=True)
    uvicorn.Server(config).run(sockets=[listening])


def bind_port(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``; :class:`CelltrialError` when it is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise CelltrialError(f"--host {host!r}: not an address of this machine ({exc})") from None
    listening = socket.socket(family, kind, proto)
    try:
        if sys.platform != "win32":
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(2048)
    except OSError as exc:
        listening.close()
        if exc.errno == errno.EADDRINUSE:
            raise CelltrialError(
                f"port {port} on {host} is already in use by another program; "
                "choose another with --port"
            ) from None
        raise CelltrialError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listening.set_inheritable(True)
    return listening


users_app = typer.Typer(help="Web app accounts.", no_args_is_help=True, rich_markup_mode=None)


@users_app.callback()
def users() -> None:
    """Web app accounts: people who sign in to `celltrial serve`, each with one role. Every change
    is written to the study's audit log under $CELLTRIAL_USER (else the login name)."""


DirArgument = Annotated[Path, typer.Argument(help="Study directory.", metavar="DIR")]
UserArgument = Annotated[str, typer.Argument(help="User name of the account.", metavar="USER")]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (written to the audit log).", metavar="TEXT")
]


def _engine(directory: Path, db: str | None):
    from celltrial.study import open_study

    return open_study(directory, db_url=db).engine


@users_app.command("add")
def users_add(
    directory: DirArgument,
    username: Annotated[
        str, typer.Option("--username", help="User name (lower case).", metavar="NAME")
    ],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="investigator, coordinator, data_manager, monitor, statistician or admin.",
            metavar="ROLE",
        ),
    ],
    full_name: Annotated[str, typer.Option("--name", help="Full name.", metavar="NAME")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Create a web app account (the first one is usually the admin). Its user must change the
    password at the first sign-in."""
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
        must_change_password=True,
    )
    typer.echo(
        f"created user {account.username} ({account.role}) for study {study.study_id}; "
        "the password must be changed at the first sign-in"
    )


@users_app.command("list")
def users_list(directory: DirArgument, db: DbOption = None) -> None:
    """The accounts: role, status (active, locked, must change password), last sign-in."""
    from celltrial.services.accounts import list_users

    rows = list_users(_engine(directory, db))
    if not rows:
        typer.echo("no accounts yet")
        return
    width = max(len(u.username) for u in rows)
    for u in rows:
        status = ["active" if u.active else "deactivated"]
        if u.locked_until:
            status.append(f"locked until {u.locked_until:%Y-%m-%d %H:%M} UTC")
        if u.must_change_password:
            status.append("must change password")
        if u.sessions:
            status.append(f"{u.sessions} session{'s' if u.sessions != 1 else ''}")
        last = f"{u.last_login_at:%Y-%m-%d %H:%M} UTC" if u.last_login_at else "never"
        typer.echo(
            f"{u.username:<{width}}  {u.role:<12}  {', '.join(status)}; last sign-in {last}"
            + (f"; {u.full_name}" if u.full_name else "")
        )


@users_app.command("reset-password")
def users_reset_password(
    directory: DirArgument, username: UserArgument, reason: ReasonOption = "", db: DbOption = None
) -> None:
    """Give the account a one-time password (printed once) that must be changed at the next
    sign-in; its sessions end and its lock is lifted."""
    from celltrial.services.accounts import reset_password
    from celltrial.store.database import current_user

    one_time = reset_password(_engine(directory, db), username, by=current_user(), reason=reason)
    typer.echo(f"one-time password for {username} (shown once; to be changed at the next sign-in):")
    typer.echo(one_time)


@users_app.command("unlock")
def users_unlock(
    directory: DirArgument, username: UserArgument, reason: ReasonOption = "", db: DbOption = None
) -> None:
    """Lift the lock that failed sign-ins put on the account's user name."""
    from celltrial.services.accounts import unlock
    from celltrial.store.database import current_user

    unlock(_engine(directory, db), username, by=current_user(), reason=reason)
    typer.echo(f"unlocked {username}")


@users_app.command("deactivate")
def users_deactivate(
    directory: DirArgument, username: UserArgument, reason: ReasonOption = "", db: DbOption = None
) -> None:
    """Deactivate the account: it can no longer sign in, and its sessions end."""
    from celltrial.services.accounts import deactivate
    from celltrial.store.database import current_user

    ended = deactivate(_engine(directory, db), username, by=current_user(), reason=reason)
    typer.echo(f"deactivated {username} ({ended} session{'s' if ended != 1 else ''} ended)")


@users_app.command("reactivate")
def users_reactivate(
    directory: DirArgument, username: UserArgument, reason: ReasonOption = "", db: DbOption = None
) -> None:
    """Let a deactivated account sign in again."""
    from celltrial.services.accounts import reactivate
    from celltrial.store.database import current_user

    reactivate(_engine(directory, db), username, by=current_user(), reason=reason)
    typer.echo(f"reactivated {username}")


@users_app.command("set-role")
def users_set_role(
    directory: DirArgument,
    username: UserArgument,
    role: Annotated[str, typer.Argument(help="The new role.", metavar="ROLE")],
    reason: ReasonOption = "",
    db: DbOption = None,
) -> None:
    """Change the account's role (in force at its next request)."""
    from celltrial.services.accounts import set_role
    from celltrial.store.database import current_user

    set_role(_engine(directory, db), username, role, by=current_user(), reason=reason)
    typer.echo(f"{username} is now {role}")


@users_app.command("end-sessions")
def users_end_sessions(
    directory: DirArgument, username: UserArgument, reason: ReasonOption = "", db: DbOption = None
) -> None:
    """End every session of the account (a lock keeps them)."""
    from celltrial.services.accounts import end_sessions
    from celltrial.store.database import current_user

    ended = end_sessions(_engine(directory, db), username, by=current_user(), reason=reason)
    typer.echo(f"ended {ended} session{'s' if ended != 1 else ''} of {username}")
