"""Accounts as 21 CFR Part 11 practice expects: a password an administrator set must be changed
at the next sign-in (until then only the change-password page), users change their own password,
administrators reset, unlock, deactivate, reactivate, change roles and end sessions; each of
these, every sign-in, sign-out and failed attempt (with the client's address, never a password)
is in the chained audit log, which data managers and monitors read study-wide."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select

from celltrial.services.accounts import add_user, sign_in
from celltrial.services.passwords import hash_cost
from celltrial.store.audit import check_audit_chain
from celltrial.store.database import _alembic_config, open_engine, schema_revision
from celltrial.store.models import AuditEvent
from tests.store.backends import BACKENDS, fresh_database
from tests.web.conftest import PASSWORD, client_for

NEW_PASSWORD = "lantern orchid ferry 42"
OTHER_PASSWORD = "granite puffin meadow 9"


@pytest.fixture(scope="module", autouse=True)
def cheap_hashes():
    with hash_cost():
        yield


@pytest.fixture(scope="module")
def engine(app):
    return app.state.study.engine


def form_token(html: str, name: str = "csrf_token") -> str:
    return re.search(rf'name="{name}" value="([^"]+)"', html).group(1)


def page_sign_in(app, username: str, password: str, *, address: str = "10.0.0.9"):
    client = client_for(app)
    client._transport.app  # noqa: B018 (the transport is made lazily)
    login = client.get("/login")
    response = client.post(
        "/login",
        data={
            "form_token": form_token(login.text, "form_token"),
            "username": username,
            "password": password,
            "next": "/lots",
        },
        follow_redirects=False,
    )
    return client, response


def admin_form(admin, path: str, **fields):
    page = admin.get("/users")
    return admin.post(
        path, data={"csrf_token": form_token(page.text), **fields}, follow_redirects=False
    )


def audit_rows(engine, **where):
    with engine.connect() as connection:
        query = select(AuditEvent).order_by(AuditEvent.id)
        for key, value in where.items():
            query = query.where(getattr(AuditEvent, key) == value)
        return connection.execute(query).all()


def test_an_account_the_admin_creates_must_change_its_password_first(app, clients, engine):
    admin = clients["admin"]
    created = admin_form(
        admin,
        "/users",
        username="nurse.kim",
        full_name="Kim Lee",
        role="coordinator",
        password=PASSWORD,
    )
    assert created.status_code == 303 and "done=created" in created.headers["location"]
    assert "must be changed" in admin.get(created.headers["location"]).text

    client, response = page_sign_in(app, "nurse.kim", PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/account/password?next=/lots"
    # until changed, every other page leads back to the change-password page, the API refuses
    detour = client.get("/subjects/S001", follow_redirects=True)
    assert detour.url.path == "/account/password" and "set by an administrator" in detour.text
    api = client.get("/api/v1/dashboard")
    assert api.status_code == 403 and "change it first" in api.json()["detail"]

    page = client.get("/account/password?next=/lots")
    token = form_token(page.text)
    wrong = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": "not it at all",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 403 and "current password: wrong" in wrong.text
    weak = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": "password1234",
            "confirm_password": "password1234",
        },
    )
    assert weak.status_code == 422 and "most common passwords" in weak.text
    differ = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD + "x",
        },
    )
    assert differ.status_code == 422 and "differ" in differ.text
    done = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "next": "/lots",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/lots"
    assert client.get("/subjects/S001").status_code == 200
    assert client.get("/api/v1/dashboard").status_code == 200
    _, again = page_sign_in(app, "nurse.kim", NEW_PASSWORD)
    assert again.headers["location"] == "/lots"  # no detour any more

    actions = [
        (r.action, r.reason)
        for r in audit_rows(engine, table_name="app_user")
        if r.user == "nurse.kim" or (r.after or {}).get("username") == "nurse.kim"
    ]
    assert ("insert", "account created") in actions
    assert ("sign_in", "must change password") in actions
    assert ("password_change", "one-time password replaced") in actions


def test_users_change_their_own_password_and_their_other_sessions_end(app, engine):
    add_user(engine, username="dr.owen", role="investigator", password=PASSWORD, by="setup")
    other = client_for(app)
    assert (
        other.post(
            "/api/v1/session", json={"username": "dr.owen", "password": PASSWORD}
        ).status_code
        == 200
    )
    client = client_for(app, None)
    signed = client.post("/api/v1/session", json={"username": "dr.owen", "password": PASSWORD})
    client.headers["X-CSRF-Token"] = signed.json()["csrf_token"]
    body = {"current_password": PASSWORD, "new_password": "dr.owen signs 2020 forms"}
    refused = client.post("/api/v1/account/password", json=body)
    assert refused.status_code == 400 and "the user name ('dr.owen')" in refused.json()["detail"]
    no_csrf = client_for(app)
    no_csrf.cookies = client.cookies
    assert no_csrf.post("/api/v1/account/password", json=body).status_code == 403
    body["new_password"] = OTHER_PASSWORD
    assert client.post("/api/v1/account/password", json=body).status_code == 204
    assert client.get("/api/v1/dashboard").status_code == 200  # this session goes on
    assert other.get("/api/v1/dashboard").status_code == 401  # the other one ended
    assert (
        client_for(app)
        .post("/api/v1/session", json={"username": "dr.owen", "password": PASSWORD})
        .status_code
        == 401
    )
    assert (
        client_for(app)
        .post("/api/v1/session", json={"username": "dr.owen", "password": OTHER_PASSWORD})
        .status_code
        == 200
    )


def test_admin_reset_gives_a_one_time_password_and_ends_the_sessions(app, clients, engine):
    add_user(engine, username="dm.rosa", role="data_manager", password=PASSWORD, by="setup")
    user = client_for(app)
    user.post("/api/v1/session", json={"username": "dm.rosa", "password": PASSWORD})
    assert user.get("/api/v1/dashboard").status_code == 200
    page = admin_form(clients["admin"], "/users/dm.rosa/reset-password", reason="forgotten")
    assert page.status_code == 200
    one_time = re.search(r'class="one-time-password">([^<]+)<', page.text).group(1)
    assert user.get("/api/v1/dashboard").status_code == 401
    assert (
        client_for(app)
        .post("/api/v1/session", json={"username": "dm.rosa", "password": PASSWORD})
        .status_code
        == 401
    )
    _, signed = page_sign_in(app, "dm.rosa", one_time)
    assert signed.headers["location"].startswith("/account/password")
    reset = audit_rows(engine, action="password_reset")[-1]
    assert reset.user == "admin" and reset.reason == "forgotten"
    assert reset.after == {"must_change_password": True, "sessions_ended": 1}
    assert one_time not in str([tuple(r) for r in audit_rows(engine)])


def test_deactivate_ends_sessions_and_refuses_sign_in_until_reactivated(app, clients, engine):
    add_user(engine, username="mon.ada", role="monitor", password=PASSWORD, by="setup")
    user = client_for(app)
    user.post("/api/v1/session", json={"username": "mon.ada", "password": PASSWORD})
    admin = clients["admin"]
    assert admin_form(admin, "/users/mon.ada/deactivate").status_code == 303
    assert user.get("/api/v1/dashboard").status_code == 401
    refused = client_for(app).post(
        "/api/v1/session", json={"username": "mon.ada", "password": PASSWORD}
    )
    assert refused.status_code == 401 and "wrong user name or password" in refused.json()["detail"]
    assert "deactivated" in admin.get("/users").text
    assert admin_form(admin, "/users/mon.ada/reactivate").status_code == 303
    assert (
        client_for(app)
        .post("/api/v1/session", json={"username": "mon.ada", "password": PASSWORD})
        .status_code
        == 200
    )
    myself = admin_form(admin, "/users/admin/deactivate")
    assert myself.status_code == 422 and "your own account" in myself.text
    assert [r.action for r in audit_rows(engine, row_id=refused_row(engine, "mon.ada"))][-4:] == [
        "deactivate",
        "sign_in_failed",
        "reactivate",
        "sign_in",
    ]


def refused_row(engine, username: str) -> str:
    with engine.connect() as connection:
        return str(
            connection.scalar(
                sa.text("SELECT id FROM app_user WHERE username = :u"), {"u": username}
            )
        )


def test_role_change_is_in_force_at_once_and_audited(app, clients, engine):
    add_user(engine, username="stat.ben", role="statistician", password=PASSWORD, by="setup")
    user = client_for(app, None)
    user.post("/api/v1/session", json={"username": "stat.ben", "password": PASSWORD})
    assert user.get("/audit").status_code == 403
    admin = clients["admin"]
    assert (
        admin.post(
            "/api/v1/users/stat.ben/role", json={"role": "monitor", "reason": "new task"}
        ).status_code
        == 204
    )
    assert user.get("/audit").status_code == 200
    bad = admin.post("/api/v1/users/stat.ben/role", json={"role": "owner"})
    assert bad.status_code == 400 or bad.status_code == 422
    change = audit_rows(engine, action="role_change")[-1]
    assert (change.before, change.after, change.reason) == (
        {"role": "statistician"},
        {"role": "monitor"},
        "new task",
    )
    last_admin = admin.post("/api/v1/users/admin/role", json={"role": "monitor"})
    assert last_admin.status_code == 409 and "last active administrator" in last_admin.text
    listed = {u["username"]: u for u in admin.get("/api/v1/users").json()}
    assert listed["stat.ben"]["role"] == "monitor"
    assert clients["monitor"].get("/api/v1/users").status_code == 403


def test_the_study_wide_audit_log_for_data_managers_and_monitors(app, clients, engine):
    for role in ("data_manager", "monitor", "admin"):
        assert clients[role].get("/audit").status_code == 200
    for role in ("investigator", "coordinator", "statistician"):
        assert clients[role].get("/audit").status_code == 403
        assert clients[role].get("/api/v1/audit").status_code == 403
    monitor = clients["monitor"]
    client_for(app).post(
        "/api/v1/session", json={"username": "monitor", "password": "nope nope nope"}
    )
    page = monitor.get("/audit?table=app_user").text
    assert "sign in failed" in page and "client_address" in page and "testclient" in page
    newest = monitor.get("/api/v1/audit?limit=5").json()
    ids = [e["id"] for e in newest["entries"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5
    older = monitor.get(f"/api/v1/audit?limit=5&before={newest['older']}").json()
    assert max(e["id"] for e in older["entries"]) < min(ids)
    back = monitor.get(f"/api/v1/audit?limit=5&after={older['newer']}").json()
    assert [e["id"] for e in back["entries"]] == ids
    by_user = monitor.get("/api/v1/audit?user=setup&table=product_lot&limit=500").json()
    assert by_user["entries"] and all(
        e["user"] == "setup" and e["table"] == "product_lot" for e in by_user["entries"]
    )
    today = datetime.now(UTC).date()
    future = monitor.get(f"/api/v1/audit?since={today + timedelta(days=2)}").json()
    assert future["entries"] == []
    assert monitor.get(
        f"/api/v1/audit?since={today - timedelta(days=1)}&until={today + timedelta(days=1)}"
    ).json()["entries"]
    assert monitor.get("/audit?since=yesterday").status_code == 422
    assert monitor.get("/audit?table=secrets").status_code == 422
    older_page = monitor.get(f"/audit?before={ids[-1]}").text
    assert f"<td>{ids[-1]}</td>" not in older_page and f"<td>{ids[-1] - 1}</td>" in older_page
    newer = re.search(r'href="(/audit\?[^"]*after=\d+)"', older_page)
    assert newer and f"<td>{ids[-1]}</td>" in monitor.get(newer.group(1).replace("&amp;", "&")).text


def test_no_password_is_ever_in_the_audit_log_and_its_chain_holds(app, engine):
    client_for(app).post("/api/v1/session", json={"username": PASSWORD, "password": PASSWORD})
    text = str([tuple(r) for r in audit_rows(engine)])
    for secret in (PASSWORD, NEW_PASSWORD, OTHER_PASSWORD, "not it at all", "nope nope nope"):
        assert secret not in text
    assert "(not a user name)" in text  # a password typed as the user name is not written
    check = check_audit_chain(engine)
    assert check.intact, check.problem


def test_sign_out_is_audited(app, engine):
    client = client_for(app, "coordinator")
    assert client.delete("/api/v1/session").status_code == 204
    last = audit_rows(engine, action="sign_out")[-1]
    assert last.user == "coordinator" and last.after == {"client_address": "testclient"}


def test_users_commands(study_dir, db_url, app, engine):
    from typer.testing import CliRunner

    from celltrial.cli import app as cli_app

    runner = CliRunner()

    def run(*args, input=None):
        """``celltrial users ARGS`` as a user types it (errors: one message, exit 1)."""
        return runner.invoke(
            cli_app, ["users", args[0], str(study_dir), "--db", db_url, *args[1:]], input=input
        )

    added = run(
        "add",
        "--username",
        "cli.user",
        "--role",
        "monitor",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0 and "must be changed" in added.output
    assert sign_in(engine, "cli.user", PASSWORD).account.must_change_password
    common = run(
        "add",
        "--username",
        "cli.weak",
        "--role",
        "monitor",
        "--password-stdin",
        input="password1234\n",
    )
    assert common.exit_code == 1 and "most common" in common.output
    listed = run("list")
    assert listed.exit_code == 0 and re.search(
        r"cli\.user\s+monitor\s+active, must change password", listed.output
    )
    reset = run("reset-password", "cli.user", "--reason", "lost")
    assert reset.exit_code == 0
    one_time = reset.output.strip().splitlines()[-1]
    assert sign_in(engine, "cli.user", one_time).account.must_change_password
    assert run("set-role", "cli.user", "data_manager").exit_code == 0
    assert run("set-role", "cli.user", "boss").exit_code == 1
    assert run("deactivate", "cli.user").exit_code == 0
    assert "deactivated" in run("list").output
    assert run("deactivate", "cli.user").exit_code == 1
    assert run("reactivate", "cli.user").exit_code == 0
    assert run("unlock", "cli.user").exit_code == 0
    assert run("end-sessions", "cli.user").exit_code == 0
    missing = run("unlock", "nobody")
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output
    actions = [r.action for r in audit_rows(engine, user=_cli_user())][-7:]
    assert actions == [
        "insert",
        "password_reset",
        "role_change",
        "deactivate",
        "reactivate",
        "unlock",
        "end_sessions",
    ]


def _cli_user() -> str:
    from celltrial.store.database import current_user

    return current_user()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0011_keeps_accounts_and_downgrades(backend, tmp_path):
    with fresh_database(backend, tmp_path) as url:
        engine = open_engine(url)
        try:
            config = _alembic_config(engine)
            command.upgrade(config, "0010")
            with engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "INSERT INTO app_user (username, full_name, role, password_hash, active, "
                        "failed_logins, locked_until, created_at) VALUES ('old', '', 'admin', 'h', "
                        "true, 2, NULL, '2020-01-01 00:00:00+00')"
                    )
                )
            command.upgrade(config, "0011")
            assert schema_revision(engine) == "0011"
            with engine.connect() as connection:
                row = connection.execute(
                    sa.text(
                        "SELECT username, must_change_password, password_changed_at FROM app_user"
                    )
                ).one()
                assert tuple(row) == ("old", False, None)
                assert (
                    connection.execute(sa.text("SELECT count(*) FROM sign_in_throttle")).scalar()
                    == 0
                )
            command.downgrade(config, "0010")
            with engine.connect() as connection:
                assert connection.execute(
                    sa.text("SELECT username, failed_logins FROM app_user")
                ).one() == ("old", 0)
            command.upgrade(config, "head")
        finally:
            engine.dispose()


def test_wrong_current_passwords_slow_down_changes_but_do_not_lock_sign_in(app, engine):
    from celltrial.services.accounts import change_password
    from celltrial.services.errors import SignInRefused

    add_user(engine, username="typist", role="monitor", password=PASSWORD, by="setup")
    for _ in range(5):
        with pytest.raises(SignInRefused, match="current password: wrong"):
            change_password(engine, "typist", "not my password", NEW_PASSWORD)
    with pytest.raises(SignInRefused, match="too many wrong attempts"):
        change_password(engine, "typist", PASSWORD, NEW_PASSWORD)
    assert sign_in(engine, "typist", PASSWORD, address="10.3.3.3")  # sign-in is not locked
    change_password(
        engine, "typist", PASSWORD, NEW_PASSWORD, now=datetime.now(UTC) + timedelta(minutes=2)
    )
