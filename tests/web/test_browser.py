"""The main journey in headless Debian chromium: sign in, three infusions (one late), an AE, and
the dashboard flags both. Screenshots at 1280 and 390 px (``$CELLTRIAL_SCREENSHOT_DIR``, else a
temporary directory)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.browser import CHROMIUM, NO_CHROMIUM
from tests.store.backends import BACKENDS, fresh_database
from tests.web.conftest import NOW, PASSWORD, RELEASED, build_study

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory):
    uvicorn = pytest.importorskip("uvicorn")
    from celltrial.web import create_app

    directory = tmp_path_factory.mktemp("browser") / "study"
    with fresh_database(request.param, directory.parent, migrated=True) as url:
        study = build_study(directory, subjects=("S001", "S002"), db_url=url)
        yield from _serve(uvicorn, create_app(directory, db_url=url), study)
        study.engine.dispose()


def _serve(uvicorn, app, study):
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", study
    server.should_exit = True
    thread.join(timeout=5)
    app.state.study.engine.dispose()


def _local(days: float, zone: ZoneInfo) -> str:
    return (NOW - timedelta(days=days)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def test_record_infusions_and_ae_then_dashboard_flags_them(server, browser, shots):
    base, study = server
    zone = study.protocol.study.zone
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/subjects/S001")
    assert "/login" in page.url
    page.screenshot(path=shots / "login-1280.png", full_page=True)
    page.fill("input[name=username]", "coordinator")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S001")

    for number, days in ((1, 10), (2, 7), (3, 2)):  # study days 0, 3, 8: the third is late
        page.click("text=Record infusion")
        page.fill("input[name=lot_code]", RELEASED)
        page.fill("input[name=vial_id]", f"V-{number}")
        page.fill("input[name=label_subject_code]", "S001")
        page.fill("input[name=started_at]", _local(days, zone))
        page.fill("input[name=cells_given]", "3.0e7")
        page.fill("input[name=volume_ml]", "100")
        if number == 1:
            page.screenshot(path=shots / "infusion-form-1280.png", full_page=True)
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        assert page.url == f"{base}/subjects/S001", page.locator("main").inner_text()
    assert page.locator("text=late").first.is_visible()

    page.click("text=Record adverse event")
    page.fill("input[name=term]", "Anaphylaxis")
    page.fill("input[name=onset_at]", _local(1.9, zone))
    page.select_option("select[name=grade]", "3")
    page.check("input[name=serious]")
    page.check("input[value='life-threatening']")
    page.select_option("select[name=relatedness]", "possibly related")
    page.select_option("select[name=outcome]", "recovering")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S001")
    page.screenshot(path=shots / "subject-1280.png", full_page=True)

    page.goto(f"{base}/")
    alerts = page.locator(".alerts li")
    assert "serious adverse event" in alerts.first.inner_text()
    assert "Anaphylaxis" in alerts.first.inner_text()
    assert "#3 late" in page.locator("table.schedule").inner_text()
    page.screenshot(path=shots / "dashboard-1280.png", full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    for name, url in (("dashboard", "/"), ("subject", "/subjects/S001")):
        page.goto(base + url)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width} px wide at 390 px"
        page.screenshot(path=shots / f"{name}-390.png", full_page=True)


def _sign_in(page, base: str, username: str, target: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}{target}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}{target}")


def test_raise_and_answer_a_query_then_sign_the_casebook(server, browser, shots):
    base, study = server
    zone = study.protocol.study.zone
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _sign_in(page, base, "coordinator", "/subjects/S002")
    page.click("text=Record infusion")
    page.fill("input[name=lot_code]", RELEASED)
    page.fill("input[name=vial_id]", "V-9")
    page.fill("input[name=label_subject_code]", "S002")
    page.fill("input[name=started_at]", _local(3, zone))
    page.fill("input[name=cells_given]", "3.0e7")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S002")

    _sign_in(page, base, "data-manager", "/subjects/S002")
    page.click("main a:text('query')")
    page.select_option("select[name=field]", "vial_id")
    page.fill("textarea[name=question]", "Vial V-9 is not on the shipment list; please check.")
    page.screenshot(path=shots / "query-form-1280.png", full_page=True)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S002#queries")
    page.goto(f"{base}/")
    assert "Vial V-9 is not on the shipment list" in page.locator("#queries").inner_text()

    _sign_in(page, base, "investigator", "/subjects/S002")
    page.fill("#queries textarea[name=answer]", "Vial is V-09 on the label; shipment list agrees.")
    page.click("#queries button:text('Answer')")
    page.wait_for_url(f"{base}/subjects/S002#queries")
    assert "answered" in page.locator("#queries").inner_text()
    page.click("text=Sign casebook")
    page.check("input[value=review]")
    page.fill("input[name=password]", PASSWORD)
    page.screenshot(path=shots / "sign-form-1280.png", full_page=True)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/subjects/S002#signature")
    assert "Signed by" in page.locator("#signature").inner_text()
    page.screenshot(path=shots / "subject-signed-1280.png", full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    for name, url in (
        ("subject-signed", "/subjects/S002"),
        ("sign-form", "/subjects/S002/sign"),
    ):
        page.goto(base + url)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width} px wide at 390 px"
        page.screenshot(path=shots / f"{name}-390.png", full_page=True)


def test_import_a_lab_file_then_build_and_download_the_report(server, browser, shots, tmp_path):
    base, study = server
    zone = study.protocol.study.zone
    labs = tmp_path / "hospital-labs.csv"
    labs.write_text(
        "subject_id,time,test,value,unit\n"
        f"S001,{_local(9, zone).replace('T', ' ')},CRP,48,mg/L\n"
        f"S002,{_local(2, zone).replace('T', ' ')},Lymphocyte count,0.62,10^9/L\n"
        f"S001,{_local(8, zone).replace('T', ' ')},IL-6,pending,pg/mL\n",  # a text result: warning
        encoding="utf-8",
    )

    def fits(page, name: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width} px wide at 390 px"

    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    _sign_in(page, base, "data-manager", "/imports")
    page.screenshot(path=shots / "imports-1280.png", full_page=True)
    page.set_input_files("input[name=file]", str(labs))
    page.click("#upload button[type=submit]")
    page.wait_for_load_state()
    assert "/imports/" in page.url, page.locator("main").inner_text()
    summary = page.locator("#summary").inner_text()
    assert "No errors" in summary and "3 in the file: 2 to be stored" in summary
    report = page.locator("#report").inner_text()
    assert "text result" in report and "pending" in report
    page.screenshot(path=shots / "import-review-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    fits(page, "import review")
    page.screenshot(path=shots / "import-review-390.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.click("#summary button:text('Confirm import')")
    page.wait_for_url("**/imports/batches/*")
    notice = page.locator("[role=status]").inner_text()
    assert "2 new" in notice and "hospital-labs.csv" in notice
    page.screenshot(path=shots / "import-batch-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    fits(page, "import batch")
    page.screenshot(path=shots / "import-batch-390.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{base}/imports")
    assert "hospital-labs.csv" in page.locator("#batches").inner_text()
    page.screenshot(path=shots / "imports-history-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    fits(page, "imports")
    page.screenshot(path=shots / "imports-390.png", full_page=True)

    page.set_viewport_size({"width": 1280, "height": 900})
    _sign_in(page, base, "statistician", "/reports")
    page.click("#build button[type=submit]")
    page.wait_for_url(f"{base}/reports")
    assert "building" in page.locator("#report-state").inner_text()
    page.screenshot(path=shots / "report-building-1280.png", full_page=True)
    deadline = time.monotonic() + 180
    while "building" in page.locator("#report-state").inner_text():  # the page refreshes
        assert time.monotonic() < deadline, "the report was not built in 3 minutes"
        page.wait_for_timeout(1000)
        page.wait_for_load_state()
    assert "ready" in page.locator("#report-state").inner_text(), page.inner_text("main")
    page.screenshot(path=shots / "report-ready-1280.png", full_page=True)
    with page.expect_download() as html_download:
        page.click("text=Download HTML")
    html = Path(html_download.value.path()).read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "hospital-labs.csv" in html
    if page.locator("text=Download PDF").count():
        with page.expect_download() as pdf_download:
            page.click("text=Download PDF")
        assert Path(pdf_download.value.path()).read_bytes().startswith(b"%PDF")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/reports")
    fits(page, "report")
    page.screenshot(path=shots / "report-390.png", full_page=True)
