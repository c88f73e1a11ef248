"""Account forms and calls refuse control characters (the NUL character above all, which
PostgreSQL cannot keep in text) with a plain message beside the field, on both backends: never
a server error, nothing saved, nothing looked up with it."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from celltrial.services.accounts import add_user, reset_password, sign_in, unlock
from celltrial.services.errors import AccountError, NotFound, SignInRefused
from celltrial.services.plain_text import control_character_problem
from celltrial.store.models import AppUser, AuditEvent
from tests.web.conftest import PASSWORD, client_for

NUL = "nurse\x00one"
BELL = "nurse\x07one"
NEW_PASSWORD = "lantern orchid ferry 42"
SAID_NUL = "contains the NUL character (U+0000); type it again without it"
SAID_BELL = "contains an invisible control character (U+0007); type it again without it"


@pytest.fixture(scope="module")
def engine(app):
    return app.state.study.engine


def counts(engine) -> tuple[int, int]:
    with engine.connect() as connection:
        users = connection.scalar(select(func.count()).select_from(AppUser))
        events = connection.scalar(select(func.count()).select_from(AuditEvent))
    return users, events


def beside(page: str, field: str) -> list[str]:
    """The messages shown inside the label of the form field ``field``."""
    label = re.search(rf'<label>[^<]*<input name="{field}"[^>]*>(.*?)</label>', page, re.S)
    assert label is not None, f"no field {field} on the page"
    return [html.unescape(m) for m in re.findall(r'class="field-error">([^<]*)<', label.group(1))]


def token(page: str, name: str = "csrf_token") -> str:
    return re.search(rf'name="{name}" value="([^"]+)"', page).group(1)


def test_the_rule_names_what_it_found():
    assert control_character_problem("Ann Smith") is None
    assert control_character_problem(NUL) == SAID_NUL
    assert control_character_problem(BELL) == SAID_BELL
    assert control_character_problem("x\x7f") is not None  # DEL
    assert control_character_problem("x\x85") is not None  # a C1 control (next line)
    assert control_character_problem("line one\nline two\tend") is not None
    assert control_character_problem("line one\r\nline two\tend", lines=True) is None
    assert control_character_problem("a\x00\n", lines=True) == SAID_NUL
    assert control_character_problem("Ärztin Œ ü – “quoted”") is None  # letters are not controls


@pytest.mark.parametrize(("field", "label"), [("username", "user name"), ("password", "password")])
def test_sign_in_form(app, engine, field, label):
    client = client_for(app)
    before = counts(engine)
    form = client.get("/login").text
    data = {"form_token": token(form, "form_token"), "next": "/", "username": "monitor"}
    data |= {"password": PASSWORD, field: NUL}
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 422
    assert beside(response.text, field) == [SAID_NUL]
    assert f"{label}: {SAID_NUL}" in html.unescape(response.text)
    assert "celltrial_session" not in response.headers.get("set-cookie", "")
    assert counts(engine) == before  # no attempt recorded: nothing was looked up


@pytest.mark.parametrize(
    ("field", "label", "text"),
    [
        ("username", "user name", NUL),
        ("full_name", "full name", NUL),
        ("full_name", "full name", BELL),
        ("password", "password", NEW_PASSWORD + "\x00"),
    ],
)
def test_new_account_form(app, clients, engine, field, label, text):
    admin = clients["admin"]
    before = counts(engine)
    data = {"username": "nurse-one", "full_name": "Nurse One", "role": "coordinator"}
    data |= {"password": NEW_PASSWORD, field: text}
    response = admin.post("/users", data={"csrf_token": admin.csrf, **data})
    assert response.status_code == 422
    said = SAID_BELL if text == BELL else SAID_NUL
    assert beside(response.text, field) == [said]
    assert f"{label}: {said}" in html.unescape(response.text)
    assert counts(engine) == before
    # what was typed in the other fields is shown again, never the password or the refused text
    if field != "username":
        assert 'value="nurse-one"' in response.text
    assert NEW_PASSWORD not in response.text


@pytest.mark.parametrize("field", ["current_password", "new_password", "confirm_password"])
def test_change_password_form(app, engine, field):
    client = client_for(app, "statistician")
    before = counts(engine)
    values = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    values |= {"confirm_password": NEW_PASSWORD, field: "granite\x00puffin meadow"}
    response = client.post(
        "/account/password", data={"csrf_token": client.csrf, "next": "/", **values}
    )
    assert response.status_code == 422
    assert beside(response.text, field) == [SAID_NUL]
    assert counts(engine) == before
    # the password is as it was
    assert sign_in(engine, "statistician", PASSWORD).account.username == "statistician"


@pytest.mark.parametrize(
    "action", ["reset-password", "unlock", "deactivate", "reactivate", "role", "end-sessions"]
)
def test_account_changes_by_an_administrator(app, clients, engine, action):
    admin = clients["admin"]
    before = counts(engine)
    # a reason holding NUL: refused in plain words, nothing changed
    response = admin.post(
        f"/users/monitor/{action}",
        data={"csrf_token": admin.csrf, "reason": "asked\x00by phone", "role": "statistician"},
    )
    assert response.status_code == 422
    assert f"reason: {SAID_NUL}" in html.unescape(response.text)
    # no user name holds a NUL: not found (the API the same), not looked up
    response = admin.post(
        f"/users/nurse%00one/{action}", data={"csrf_token": admin.csrf, "role": "monitor"}
    )
    assert response.status_code == 404
    assert "no user 'nurse\\x00one'" in html.unescape(response.text)
    body = {"role": "monitor"} if action == "role" else {}
    response = admin.post(f"/api/v1/users/nurse%00one/{action}", json=body)
    assert response.status_code == 404
    assert response.json() == {"detail": "no user 'nurse\\x00one' in this study"}
    assert counts(engine) == before


def test_audit_log_filters(clients):
    manager = clients["data_manager"]
    page = manager.get("/audit", params={"user": NUL})
    assert page.status_code == 422
    assert f"user: {SAID_NUL}" in html.unescape(page.text)
    assert manager.get("/audit", params={"user": BELL}).status_code == 422
    api = manager.get("/api/v1/audit", params={"user": NUL})
    assert api.status_code == 422
    assert api.json()["detail"][0]["field"] == "user"
    # other control characters are refused by the rule (the schema states NUL only)
    api = manager.get("/api/v1/audit", params={"user": BELL})
    assert api.status_code == 422
    assert api.json() == {"detail": f"user: {SAID_BELL}"}


def test_the_services_refuse_them_whoever_calls(engine):
    before = counts(engine)
    with pytest.raises(SignInRefused, match=re.escape(f"user name: {SAID_NUL}")):
        sign_in(engine, NUL, PASSWORD)
    with pytest.raises(AccountError, match=re.escape(f"user name: {SAID_BELL}")):
        add_user(engine, username=BELL, role="monitor", password=NEW_PASSWORD, by="admin")
    with pytest.raises(AccountError, match=re.escape(f"full name: {SAID_NUL}")):
        add_user(
            engine,
            username="nurse-two",
            full_name=NUL,
            role="monitor",
            password=NEW_PASSWORD,
            by="admin",
        )
    with pytest.raises(AccountError, match=re.escape(f"password: {SAID_NUL}")):
        add_user(engine, username="nurse-two", role="monitor", password=NUL + "x" * 12, by="admin")
    with pytest.raises(AccountError, match=re.escape(f"reason: {SAID_NUL}")):
        unlock(engine, "monitor", by="admin", reason="\x00")
    with pytest.raises(NotFound):
        reset_password(engine, NUL, by="admin")
    assert counts(engine) == before
    # a reason over several lines is free text, kept as written
    unlock(engine, "monitor", by="admin", reason="asked by phone\nchecked the badge")
    with engine.connect() as connection:
        newest = connection.scalar(
            select(AuditEvent.reason).order_by(AuditEvent.id.desc()).limit(1)
        )
    assert newest == "asked by phone\nchecked the badge"
