"""The report's listings file from the web app: built beside the report, linked by the name it is
downloaded as, shown in the browser at the address the viewed report links to, downloadable, with
the report's permissions and no other file reachable through its address. On each backend."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from celltrial.report.tables import LISTING_MAX_ROWS, LISTINGS_SUFFIX
from celltrial.services.accounts import ROLES
from celltrial.services.casebook import NewLot, record_lot
from celltrial.web import reports
from tests.store.backends import BACKENDS, fresh_database
from tests.web.conftest import build_study, client_for

READERS = {"statistician", "investigator", "monitor", "admin"}
#: One lot more than a listing keeps in the body (the study has two): the lots table moves out.
LOTS = tuple(f"LOT-{i:03d}" for i in range(1, LISTING_MAX_ROWS))


def _study_with_many_lots(directory, url):
    study = build_study(directory, subjects=("S001", "S002"), db_url=url)
    release = study.protocol.product.release
    markers = {m: 99.0 for m in release.positive_markers_min_pct} | {
        m: 0.5 for m in release.negative_markers_max_pct
    }
    for code in LOTS:
        record_lot(
            study,
            NewLot(code=code, release_status="quarantine", viability_pct=90.0, markers_pct=markers),
            user="setup",
        )
    study.engine.dispose()


class _Links(HTMLParser):
    """The hrefs of a document's links and the ids of its elements."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"])
        if values.get("id"):
            self.ids.add(values["id"])


def _parsed(html: str) -> _Links:
    links = _Links()
    links.feed(html)
    return links


@pytest.fixture(scope="module", params=BACKENDS)
def built(request, tmp_path_factory):
    """A web app whose report was built (by the background builder) with a listings file."""
    from celltrial.web import create_app

    directory = tmp_path_factory.mktemp("listings") / "study"
    with fresh_database(request.param, directory.parent, migrated=True) as url:
        _study_with_many_lots(directory, url)
        app = create_app(directory, db_url=url)
        clients = {role: client_for(app, role) for role in ROLES}
        assert clients["statistician"].post("/api/v1/report/build").status_code == 202
        status = app.state.report_builder.wait(timeout=300)
        assert status.state == "ready", status.message
        yield app, clients
        app.state.study.engine.dispose()


def test_the_web_app_names_listings_as_the_report_does():
    assert reports.LISTINGS_SUFFIX == LISTINGS_SUFFIX


def test_viewed_report_links_to_listings_the_browser_can_open(built):
    app, clients = built
    status = app.state.report_builder.status
    study_id = app.state.study.study_id
    assert status.listings and re.fullmatch(rf"{study_id}-report-\d{{8}}-\d{{4}}", status.stem)
    monitor = clients["monitor"]
    view = monitor.get("/reports/view")
    targets = [h for h in _parsed(view.text).hrefs if "listings" in h]
    assert targets and {h.split("#")[0] for h in targets} == {f"{status.stem}-listings.html"}
    # each link as the browser resolves it against the viewed report's address
    seen = {}
    for href in targets:
        address = urlsplit(urljoin("https://testserver/reports/view", href))
        if address.path not in seen:
            seen[address.path] = monitor.get(address.path)
        response = seen[address.path]
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["content-security-policy"] == reports.VIEW_CSP
        if address.fragment:
            assert address.fragment in _parsed(response.text).ids
    (listings,) = seen.values()
    assert "Cell-product lots" in listings.text
    assert all(code in listings.text for code in LOTS)
    page = monitor.get("/reports").text
    assert f'href="/reports/{status.stem}-listings.html"' in page
    assert 'href="/reports/report-listings.html"' in page


def test_downloaded_report_and_listings_link_up_on_disk(built, tmp_path):
    app, clients = built
    statistician = clients["statistician"]
    folder = tmp_path / "downloads"
    folder.mkdir()
    for address in ("/reports/report.html", "/reports/report-listings.html"):
        response = statistician.get(address)
        assert response.status_code == 200
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment")
        name = re.search(r'filename="?([^";]+)', disposition).group(1)
        (folder / name).write_bytes(response.content)
    stem = app.state.report_builder.status.stem
    assert {p.name for p in folder.iterdir()} == {f"{stem}.html", f"{stem}-listings.html"}
    report = (folder / f"{stem}.html").read_text(encoding="utf-8")
    targets = [h for h in _parsed(report).hrefs if "listings" in h]
    assert targets
    for href in targets:
        name, _, anchor = href.partition("#")
        target = folder / name
        assert target.is_file(), href
        if anchor:
            assert anchor in _parsed(target.read_text(encoding="utf-8")).ids
    assert f"{stem}-listings.html" in re.sub(r"<[^>]+>", "", report)  # the text names it too
    body = statistician.get("/api/v1/report").json()
    assert body["listings_url"] == "/api/v1/report/report-listings.html"
    api = statistician.get(body["listings_url"])
    assert api.status_code == 200 and api.content == (folder / f"{stem}-listings.html").read_bytes()


def test_listings_have_the_report_permissions_and_no_other_file(built):
    app, clients = built
    stem = app.state.report_builder.status.stem
    addresses = (
        f"/reports/{stem}-listings.html",
        "/reports/report-listings.html",
        "/api/v1/report/report-listings.html",
    )
    for role, client in clients.items():
        for address in addresses:
            expected = 200 if role in READERS else 403
            assert client.get(address).status_code == expected, (role, address)
    reader = clients["monitor"]
    folder = app.state.study.directory / reports.REPORT_DIR
    assert (folder / "status.json").is_file()
    for stem_tried in (
        "report-20200101-0000",  # another build's name
        "..%2Fstatus.json%00",
        "..%2F..%2Fprotocol.yaml%23",
        "%2E%2E",
        stem.upper(),
    ):
        response = reader.get(f"/reports/{stem_tried}-listings.html")
        assert response.status_code == 404, stem_tried
        assert "not those of the current report" in response.text
    for address in ("/reports/../protocol.yaml", "/reports/status.json", "/reports/report.json"):
        response = reader.get(address)
        assert response.status_code == 404, address


def test_a_report_without_listings_file_says_so(tmp_path):
    study = build_study(tmp_path / "study", subjects=("S001",))
    folder = study.directory / reports.REPORT_DIR
    folder.mkdir()
    (folder / "report.html").write_text("<html></html>")
    from celltrial.web import create_app

    app = create_app(study.directory, db_url=study.url)
    try:
        client = client_for(app, "monitor")
        assert not client.get("/api/v1/report").json()["listings_url"]
        missing = client.get("/reports/report-listings.html")
        assert missing.status_code == 404 and "no listings file" in missing.text
        page = client.get("/reports").text
        assert "Download HTML" in page and "Download the listings" not in page
    finally:
        app.state.study.engine.dispose()
        study.engine.dispose()


def test_listings_file_name_is_the_report_download_name():
    from datetime import UTC, datetime, timedelta, timezone

    built = datetime(2026, 3, 1, 9, 5, tzinfo=timezone(timedelta(hours=8)))
    assert reports.report_stem("HUC-1", built) == "HUC-1-report-20260301-0105"
    assert reports.report_stem("HUC-1", built.astimezone(UTC)) == "HUC-1-report-20260301-0105"


def test_downloaded_report_opens_its_listings_in_chromium(built, browser, tmp_path):
    """From disk, in the browser: the downloaded report's link opens the downloaded listings at
    the table it names."""
    app, clients = built
    statistician = clients["statistician"]
    stem = app.state.report_builder.status.stem
    report = tmp_path / f"{stem}.html"
    report.write_bytes(statistician.get("/reports/report.html").content)
    listings = tmp_path / f"{stem}-listings.html"
    listings.write_bytes(statistician.get("/reports/report-listings.html").content)
    page = browser.new_page()
    page.goto(report.as_uri())
    link = page.locator("p.listing-ref a").first
    href = link.get_attribute("href")
    assert href and "#table-" in href
    link.click()
    page.wait_for_load_state()
    assert page.url == f"{listings.as_uri()}#{href.split('#')[1]}"
    assert page.locator(f"#{href.split('#')[1]}").is_visible()
    assert "Cell-product lots" in page.locator(f"#{href.split('#')[1]}").inner_text()
