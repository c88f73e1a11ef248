"""Entry checks in headless Debian chromium: a dose 30,000 × the protocol's refused, then saved
with a reason to override; an infusion before the subject's enrolment saved once its warning is
confirmed; a grade 5 adverse event refused until serious and fatal; the casebook's open query
named where it is signed. Screenshots in ``$CELLTRIAL_SCREENSHOT_DIR`` (else a temporary
directory)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.store.backends import BACKENDS, fresh_database
from tests.web.conftest import NOW, PASSWORD, RELEASED, build_study
from tests.web.test_browser import CHROMIUM, _serve

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory):
    uvicorn = pytest.importorskip("uvicorn")
    from celltrial.web import create_app

    directory = tmp_path_factory.mktemp("entry-checks-browser") / "study"
    with fresh_database(request.param, directory.parent, migrated=True) as url:
        study = build_study(directory, subjects=("S001",), db_url=url)
        yield from _serve(uvicorn, create_app(directory, db_url=url), study)
        study.engine.dispose()


def _local(days: float, zone) -> str:
    return (NOW - timedelta(days=days)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def _sign_in(page, base: str, username: str, target: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}{target}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}{target}")


def _infusion(page, base: str, *, vial: str, days: float, cells: str, zone) -> None:
    page.goto(f"{base}/subjects/S001/infusions/new")
    page.fill("input[name=lot_code]", RELEASED)
    page.fill("input[name=vial_id]", vial)
    page.fill("input[name=label_subject_code]", "S001")
    page.fill("input[name=started_at]", _local(days, zone))
    page.fill("input[name=cells_given]", cells)
    page.click("main button[type=submit]")
    page.wait_for_load_state()


def test_hard_stop_warning_grade_5_and_open_queries(server, browser, shots):
    base, study = server
    zone = study.protocol.study.zone
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _sign_in(page, base, "coordinator", "/subjects/S001")

    # a hard stop: 9e11 cells is 30,000 × the protocol's 3e7; saved with a reason
    _infusion(page, base, vial="V-1", days=10, cells="9e11", zone=zone)
    assert page.url == f"{base}/subjects/S001/infusions"  # the form again, not saved
    said = page.locator("label:has(input[name=cells_given]) .field-error").inner_text()
    assert "30,000 × the protocol dose of 3 × 10^7" in said
    page.screenshot(path=shots / "infusion-dose-refused-1280.png", full_page=True)
    page.fill("textarea[name=override_reason]", "Investigator's order: see the chart note")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S001")

    # a warning: a start before the subject's enrolment, saved once confirmed
    _infusion(page, base, vial="V-2", days=13, cells="3e7", zone=zone)
    warning = page.locator("label:has(input[name=started_at]) .field-warning").inner_text()
    assert "is before subject S001's enrolment" in warning
    page.screenshot(path=shots / "infusion-date-warning-1280.png", full_page=True)
    assert "Not saved yet: please check the warnings" in page.locator("main p.warning").inner_text()
    page.check("input[name=confirm_warnings]")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S001")

    # grade 5 must be serious and fatal: the form says what to set
    page.goto(f"{base}/subjects/S001/adverse-events/new")
    page.fill("input[name=term]", "Acute respiratory distress syndrome")
    page.fill("input[name=onset_at]", _local(4, zone))
    page.select_option("select[name=grade]", "5")
    page.select_option("select[name=outcome]", "recovered")
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    errors = page.locator("main .field-error").all_inner_texts()
    assert any("record it as serious with the criterion 'results in death'" in e for e in errors)
    assert any("set the outcome to fatal" in e for e in errors)
    page.screenshot(path=shots / "ae-grade-5-refused-1280.png", full_page=True)
    page.check("input[name=serious]")
    page.check("input[value='results in death']")
    page.select_option("select[name=outcome]", "fatal")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S001")

    # the data manager queries the grade; the investigator is told before signing
    page.goto(f"{base}/api/v1/subjects/S001/adverse-events")
    [event] = json.loads(page.locator("body").inner_text())
    _sign_in(page, base, "data-manager", "/subjects/S001")
    page.goto(f"{base}/queries/new?table=adverse_event&row_id={event['id']}&field=grade")
    page.fill("textarea[name=question]", "Was grade 5 confirmed by the death certificate?")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S001#queries")

    _sign_in(page, base, "investigator", "/subjects/S001/sign")
    warned = page.locator("#open-queries").inner_text()
    assert "1 query is not closed" in warned
    assert "Was grade 5 confirmed by the death certificate?" in warned
    page.check("input[value=review]")
    page.fill("input[name=password]", PASSWORD)
    page.screenshot(path=shots / "sign-with-open-query-1280.png", full_page=True)
    page.click("main button:text('Sign anyway')")
    page.wait_for_url(f"{base}/subjects/S001#signature")
    assert "Signed by" in page.locator("#signature").inner_text()
