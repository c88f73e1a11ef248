"""Enrolment, the lab results page and a query raised on a lab value, in headless Debian
chromium: the coordinator enrols a subject (a refused entry keeps what was typed), corrects
the weight with a reason; the data manager reads the subject's lab results and raises a query
on one value, which the subject page lists with the test's name, the field's label and the
study's local time. Screenshots in ``$CELLTRIAL_SCREENSHOT_DIR`` (else a temporary directory)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from celltrial.services.passwords import hash_cost
from celltrial.store.database import study_session
from celltrial.store.models import Observation, Subject
from tests.store.backends import BACKENDS, fresh_database
from tests.web.conftest import PASSWORD, build_study
from tests.web.test_accounts_browser import sign_in
from tests.web.test_browser import CHROMIUM, _serve

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
ZONE = ZoneInfo("Asia/Shanghai")  # the built-in protocol's time zone


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory):
    uvicorn = pytest.importorskip("uvicorn")
    from celltrial.web import create_app

    directory = tmp_path_factory.mktemp("enrolment-browser") / "study"
    with hash_cost(), fresh_database(request.param, directory.parent, migrated=True) as url:
        study = build_study(directory, subjects=("S001",), db_url=url)
        yield from _serve(uvicorn, create_app(directory, db_url=url), study)
        study.engine.dispose()


def _add_lab(study, code: str, when: datetime, test: str, value: float, unit: str, ref):
    with study_session(study.engine, user="setup", reason="lab file") as session:
        subject = session.query(Subject).filter_by(study_id=study.study_id, code=code).one()
        session.add(
            Observation(
                subject_id=subject.id,
                time=when,
                test=test,
                raw_value=f"{value:g}",
                raw_unit=unit,
                value=value,
                unit=unit,
                qualifier="",
                ref_low=ref[0],
                ref_high=ref[1],
            )
        )


def test_enrol_read_labs_and_query_a_lab_value(server, browser, shots):
    base, study = server
    coordinator = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(coordinator, base, "coordinator", PASSWORD)
    coordinator.click("text=Enrol a subject")
    assert coordinator.url == f"{base}/enrol"

    # an implausible height is refused; what was typed stays in the form
    coordinator.fill("input[name=code]", "B-7")
    coordinator.select_option("select[name=sex]", "F")
    coordinator.fill("input[name=birth_date]", "1961-03-02")
    coordinator.fill("input[name=height_cm]", "1.58")
    coordinator.fill("input[name=weight_kg]", "61")
    coordinator.fill("input[name=admitted_at]", "2025-03-01T22:15")
    coordinator.click("text=Enrol subject")
    coordinator.wait_for_load_state()
    error = coordinator.locator(".error").inner_text()
    assert "height: 1.58 — expected a number of cm from 30 to 250" in error
    assert coordinator.input_value("input[name=code]") == "B-7"
    coordinator.screenshot(path=shots / "enrol-refused-1280.png", full_page=True)
    coordinator.fill("input[name=height_cm]", "158")
    coordinator.click("text=Enrol subject")
    coordinator.wait_for_load_state()
    assert coordinator.url == f"{base}/subjects/B-7"
    header = " ".join(coordinator.locator("main p.muted").first.inner_text().split())
    # admitted the day before the 64th birthday (local date)
    assert header.startswith("F, 63 y, 61 kg, 158 cm")

    # the weight corrected, with a reason
    coordinator.click("text=Edit demographics")
    assert coordinator.input_value("input[name=admitted_at]") == "2025-03-01T22:15"
    coordinator.fill("input[name=weight_kg]", "59.5")
    coordinator.fill("input[name=reason]", "weighed again on the ward")
    coordinator.screenshot(path=shots / "demographics-edit-1280.png", full_page=True)
    coordinator.click("text=Save change")
    coordinator.wait_for_load_state()
    assert coordinator.url == f"{base}/subjects/B-7"
    assert "59.5 kg" in coordinator.locator("main p.muted").first.inner_text()

    # lab values arrive (as from an import); the data manager reads them and asks about one
    taken = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
    _add_lab(study, "B-7", taken, "LYM", 0.3, "10^9/L", (1.1, 3.2))
    _add_lab(study, "B-7", taken, "CD4", 150.0, "cells/uL", (404, 1612))
    manager = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(manager, base, "data-manager", PASSWORD, "/subjects/B-7")
    manager.click("text=Lab results")
    assert manager.url == f"{base}/subjects/B-7/labs"
    lym = manager.locator("#lab-LYM")
    assert "Lymphocytes (×10⁹/L)" in lym.locator("h2").inner_text()
    row = lym.locator("tbody tr").first
    cells = [c.strip() for c in row.locator("td").all_inner_texts()]
    local = taken.astimezone(ZONE).strftime("%Y-%m-%d %H:%M")
    assert cells[1:4] == [local, "0.3 ×10⁹/L", "1.1–3.2"]
    assert "grade 3" in cells[4] and "Lymphocyte count decreased" in cells[4]
    assert "low" in cells[5]
    assert "cells/µL" in manager.locator("#lab-CD4").inner_text()
    manager.screenshot(path=shots / "labs-1280.png", full_page=True)

    row.get_by_role("link", name=f"query Lymphocytes on {local}").click()
    manager.wait_for_load_state()
    assert f"lab result: Lymphocytes, {local}" in manager.locator("h1").inner_text()
    chosen = manager.locator("select[name=field] option:checked").inner_text()
    assert chosen == "value: 0.3 ×10⁹/L"
    manager.fill("textarea[name=question]", "0.3 after 1.2 yesterday: repeat sample?")
    manager.click("text=Raise query")
    manager.wait_for_load_state()
    assert manager.url == f"{base}/subjects/B-7#queries"
    listed = manager.locator("#queries tbody tr").first.inner_text()
    assert f"lab result: Lymphocytes, {local}: value = 0.3 ×10⁹/L" in listed
    assert "observation" not in listed and "+00:00" not in listed
    manager.screenshot(path=shots / "lab-query-1280.png", full_page=True)

    # the coordinator sees it on the dashboard, with the same words
    coordinator.goto(f"{base}/")
    open_query = coordinator.locator("#queries tbody tr").first.inner_text()
    assert "B-7" in open_query and f"Lymphocytes, {local}: value = 0.3 ×10⁹/L" in open_query
