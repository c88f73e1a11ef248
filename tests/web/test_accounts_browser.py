"""Account workflows in headless Debian chromium: the admin creates an account, its user must
change the password at the first sign-in; the admin resets it (one-time password), unlocks it
after failed sign-ins, deactivates and reactivates it; the user changes their own password; the
monitor reads the audit log. Screenshots in ``$CELLTRIAL_SCREENSHOT_DIR`` (else a temporary
directory)."""

from __future__ import annotations

import re

import pytest

from celltrial.services.passwords import hash_cost
from tests.store.backends import BACKENDS, fresh_database
from tests.web.conftest import PASSWORD, build_study
from tests.web.test_browser import CHROMIUM, _serve

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

NURSE_OWN = "lantern orchid ferry 42"
NURSE_NEXT = "granite puffin meadow 9"
NURSE_LAST = "quiet heron lagoon 31"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory):
    uvicorn = pytest.importorskip("uvicorn")
    from celltrial.web import create_app

    directory = tmp_path_factory.mktemp("accounts-browser") / "study"
    with hash_cost(), fresh_database(request.param, directory.parent, migrated=True) as url:
        study = build_study(directory, subjects=("S001",), db_url=url)
        yield from _serve(uvicorn, create_app(directory, db_url=url), study)
        study.engine.dispose()


def sign_in(page, base: str, username: str, password: str, target: str = "/") -> None:
    page.goto(f"{base}/login?next={target}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state()


def change_password(page, current: str, new: str) -> None:
    page.fill("input[name=current_password]", current)
    page.fill("input[name=new_password]", new)
    page.fill("input[name=confirm_password]", new)
    page.click("main button[type=submit]")
    page.wait_for_load_state()


def user_action(page, username: str, label: str) -> None:
    row = page.locator(f"[id='user-{username}']")
    row.get_by_role("button", name=label, exact=True).click()
    page.wait_for_load_state()


def test_account_workflows(server, browser, shots):
    base, _study = server
    admin = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    nurse = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()

    # the admin creates an account
    sign_in(admin, base, "admin", PASSWORD, "/users")
    assert admin.url == f"{base}/users"
    admin.fill("input[name=username]", "nurse.lee")
    admin.fill("input[name=full_name]", "Lee Nurse")
    admin.select_option("section select[name=role]", "coordinator")
    admin.fill("input[name=password]", PASSWORD)
    admin.click("text=Add user")
    admin.wait_for_load_state()
    assert "must be changed at the first sign-in" in admin.locator(".notice").inner_text()
    assert "must change password" in admin.locator("[id='user-nurse.lee']").inner_text()
    admin.screenshot(path=shots / "users-1280.png", full_page=True)

    # the new user must change the password before anything else
    sign_in(nurse, base, "nurse.lee", PASSWORD, "/subjects/S001")
    assert nurse.url.startswith(f"{base}/account/password")
    assert "set by an administrator" in nurse.locator(".notice").inner_text()
    nurse.goto(f"{base}/lots")
    assert nurse.url.startswith(f"{base}/account/password")
    nurse.screenshot(path=shots / "forced-password-change-1280.png", full_page=True)
    change_password(nurse, PASSWORD, "password1234")
    assert "most common passwords" in nurse.locator(".error").inner_text()
    change_password(nurse, PASSWORD, NURSE_OWN)
    assert nurse.url == f"{base}/lots", nurse.locator("main").inner_text()

    # the admin resets the password: a one-time password, shown once; the session ends
    admin.goto(f"{base}/users")
    user_action(admin, "nurse.lee", "Reset password")
    one_time = admin.locator(".one-time-password").inner_text().strip()
    assert re.fullmatch(r"[a-z0-9]{5}(-[a-z0-9]{5}){3}", one_time)
    nurse.goto(f"{base}/lots")
    assert "/login" in nurse.url
    sign_in(nurse, base, "nurse.lee", one_time, "/lots")
    assert nurse.url.startswith(f"{base}/account/password")
    change_password(nurse, one_time, NURSE_NEXT)
    assert nurse.url == f"{base}/lots"

    # failed sign-ins lock the name for the address they came from; the session stays
    other = browser.new_context().new_page()
    for _ in range(5):
        sign_in(other, base, "nurse.lee", "not my password at all")
    sign_in(other, base, "nurse.lee", NURSE_NEXT)
    assert "locked" in other.locator(".error").inner_text()
    nurse.goto(f"{base}/lots")
    assert nurse.url == f"{base}/lots"  # a lock does not end a session
    admin.goto(f"{base}/users")
    assert "locked" in admin.locator("[id='user-nurse.lee']").inner_text()
    user_action(admin, "nurse.lee", "Unlock")
    assert "unlocked" in admin.locator(".notice").inner_text()
    sign_in(other, base, "nurse.lee", NURSE_NEXT, "/lots")
    assert other.url == f"{base}/lots"

    # the user changes their own password
    nurse.goto(f"{base}/account/password")
    change_password(nurse, NURSE_NEXT, NURSE_LAST)
    assert nurse.url == f"{base}/"
    other.goto(f"{base}/lots")
    assert "/login" in other.url  # the other session ended with the change

    # deactivate: the session ends, sign-in is refused; reactivate
    admin.goto(f"{base}/users")
    user_action(admin, "nurse.lee", "Deactivate")
    nurse.goto(f"{base}/lots")
    assert "/login" in nurse.url
    sign_in(nurse, base, "nurse.lee", NURSE_LAST)
    assert "wrong user name or password" in nurse.locator(".error").inner_text()
    user_action(admin, "nurse.lee", "Reactivate")
    sign_in(nurse, base, "nurse.lee", NURSE_LAST, "/lots")
    assert nurse.url == f"{base}/lots"

    # the monitor reads it all in the audit log
    monitor = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(monitor, base, "monitor", PASSWORD, "/audit")
    monitor.select_option("select[name=table]", "app_user")
    monitor.click("text=Show")
    monitor.wait_for_load_state()
    log = monitor.locator("table.audit-log").inner_text()
    for action in ("password reset", "unlock", "deactivate", "reactivate", "sign in failed"):
        assert action in log, action
    for secret in (PASSWORD, NURSE_OWN, NURSE_NEXT, NURSE_LAST, one_time):
        assert secret not in monitor.content()
    monitor.screenshot(path=shots / "audit-log-1280.png", full_page=True)
