"""Queries on vital signs and signing with open queries, in headless Debian chromium (issue 25,
items 4 and 5): the data manager clicks "query" beside a heart rate on the subject page and the
form names that value (not the round's temperature); the investigator is warned of the open
query where the casebook is signed, a query raised while the form is open stops the signature
(it was not shown), and signing again with both shown succeeds. Screenshots in
``$CELLTRIAL_SCREENSHOT_DIR`` (else a temporary directory)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.store.backends import BACKENDS, fresh_database
from tests.web.conftest import NOW, PASSWORD, build_study, client_for
from tests.web.test_browser import CHROMIUM, _serve

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory):
    uvicorn = pytest.importorskip("uvicorn")
    from celltrial.web import create_app

    directory = tmp_path_factory.mktemp("queries-browser") / "study"
    with fresh_database(request.param, directory.parent, migrated=True) as url:
        study = build_study(directory, subjects=("S001",), db_url=url)
        app = create_app(directory, db_url=url)
        for base, _study in _serve(uvicorn, app, study):
            yield base, app
        study.engine.dispose()


def _sign_in(page, base: str, username: str, target: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}{target}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}{target}")


def test_query_the_value_clicked_then_sign_only_what_was_shown(server, browser, shots):
    base, app = server
    coordinator = client_for(app, "coordinator")  # the same app (its cookie is Secure)
    when = (NOW - timedelta(hours=5)).isoformat()
    round_ = {"time": when, "temperature": 38.4, "heart_rate": 112, "spo2": 91}
    made = coordinator.post("/api/v1/subjects/S001/vital-signs", json=round_)
    assert made.status_code == 201, made.text
    heart_rate = next(v["id"] for v in made.json()["values"] if v["field"] == "heart_rate")
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    _sign_in(page, base, "data-manager", "/subjects/S001")
    page.click("a.query-link[aria-label^='query heart rate']")
    page.wait_for_load_state()
    assert f"row_id={heart_rate}" in page.url
    form = page.locator("main").inner_text()
    assert "vital sign: Heart rate" in form
    assert page.locator("select[name=field] option:checked").inner_text() == "value: 112 /min"
    page.fill("textarea[name=question]", "Heart rate 112 at rest: as in the chart?")
    page.screenshot(path=shots / "query-heart-rate-1280.png", full_page=True)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S001#queries")
    listed = page.locator("#queries").inner_text()
    assert "Heart rate" in listed and "Heart rate 112 at rest" in listed

    _sign_in(page, base, "investigator", "/subjects/S001/sign")
    assert "1 query is not closed" in page.locator("#open-queries").inner_text()
    # a query raised while the investigator reads the form was not shown: not confirmed
    raised = client_for(app, "data_manager").post(
        "/api/v1/queries",
        json={
            "table": "observation",
            "row_id": made.json()["values"][0]["id"],
            "field": "value",
            "question": "Raised while the form was open",
        },
    )
    assert raised.status_code == 201, raised.text
    page.check("input[value=review]")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button:text('Sign anyway')")
    page.wait_for_load_state()
    said = page.locator("main p.error").inner_text()
    assert "not signed: 1 query is not closed" in said  # the one not shown
    assert "Raised while the form was open" in said
    assert "Raised while the form was open" in page.locator("#open-queries").inner_text()
    page.screenshot(path=shots / "sign-new-query-refused-1280.png", full_page=True)

    page.check("input[value=review]")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button:text('Sign anyway')")
    page.wait_for_url(f"{base}/subjects/S001#signature")
    assert "Signed by" in page.locator("#signature").inner_text()
    [signature] = coordinator.get("/api/v1/subjects/S001/signatures").json()
    trail = coordinator.get(f"/api/v1/audit/casebook_signature/{signature['id']}").json()
    assert "signed with 2 open queries" in trail["entries"][0]["reason"]
