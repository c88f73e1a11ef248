"""Import page (upload → dry-run report → confirm or cancel) and report page (background build,
status, downloads): rows stored, nothing stored on cancel or error, roles, CSRF, inert names."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from celltrial.store.models import ImportBatch, Observation
from celltrial.web import imports, reports
from celltrial.web.imports import safe_filename
from tests.web.conftest import NOW, client_for

HEADER = "subject_id,time,test,value,unit\n"
IMPORTERS = {"data_manager", "coordinator", "admin"}
HISTORY = {"investigator", "coordinator", "data_manager", "monitor", "admin"}
READERS = {"statistician", "investigator", "monitor", "admin"}
BUILDERS = {"statistician", "investigator", "admin"}


def stamp(app, days: float) -> str:
    zone = app.state.study.protocol.study.zone
    return (NOW - timedelta(days=days)).astimezone(zone).strftime("%Y-%m-%d %H:%M")


def lab_file(app, *rows: str) -> bytes:
    """A long CSV: two results of enrolled subjects and a text result (a warning)."""
    rows = rows or (
        f"S001,{stamp(app, 5)},CRP,12,mg/L",
        f"S002,{stamp(app, 5)},Lymphocyte count,0.8,10^9/L",
        f"S001,{stamp(app, 4)},CRP,pending,mg/L",
    )
    return (HEADER + "\n".join(rows) + "\n").encode()


def count(app, model) -> int:
    with app.state.study.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(model)).scalar_one()


def staged_folders(app) -> set[str]:
    folder = app.state.study.directory / imports.UPLOAD_DIR
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def upload(client, content: bytes, name: str = "labs.csv", **fields):
    """POST the upload form; returns the response (not followed)."""
    data = {"csrf_token": client.csrf} | fields
    return client.post(
        "/imports",
        data=data,
        files={"file": (name, content, "text/csv")},
        follow_redirects=False,
    )


def test_upload_shows_report_then_confirm_stores_rows_as_one_batch(app, clients):
    client = clients["data_manager"]
    before, batches = count(app, Observation), count(app, ImportBatch)
    response = upload(client, lab_file(app))
    assert response.status_code == 303, response.text
    review_url = response.headers["location"]
    token = review_url.rsplit("/", 1)[1]
    assert count(app, Observation) == before and count(app, ImportBatch) == batches

    page = client.get(review_url)
    assert page.status_code == 200
    text = page.text
    assert "No errors: the file can be imported" in text
    assert "text result" in text and "pending" in text  # kind, value
    cells = re.findall(r"<td data-label=\"(\w+)\">([^<]*)</td>", text)
    assert ("File", "labs.csv") in cells and ("Row", "4") in cells  # file, source row
    assert ("Column", "value") in cells and ("Value", "pending") in cells
    assert "a number, optionally with" in text  # expected
    assert "3 in the file: 2 to be stored" in text
    csv = client.get(f"/imports/{token}/report.csv")
    assert csv.status_code == 200 and "text_result" in csv.text

    confirmed = client.post(
        f"/imports/{token}/confirm", data={"csrf_token": client.csrf}, follow_redirects=False
    )
    assert confirmed.status_code == 303, confirmed.text
    assert count(app, Observation) == before + 2
    assert count(app, ImportBatch) == batches + 1
    batch_page = client.get(confirmed.headers["location"])
    assert "Imported labs.csv in one transaction: 2 new" in batch_page.text
    batch_id = int(re.search(r"/imports/batches/(\d+)", confirmed.headers["location"])[1])
    with app.state.study.engine.connect() as connection:
        batch = connection.execute(select(ImportBatch).where(ImportBatch.id == batch_id)).one()
        rows = connection.execute(
            select(func.count()).where(Observation.import_batch_id == batch_id)
        ).scalar_one()
    assert rows == 2 and batch.user == "data-manager" and batch.source_sha256

    history = client.get("/imports").text
    assert f'href="/imports/batches/{batch_id}"' in history and batch.source_sha256[:12] in history
    report = client.get(f"/imports/batches/{batch_id}/report.csv")
    assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
    assert "text_result" in report.text
    listed = client.get("/api/v1/import-batches").json()
    assert listed[0]["id"] == batch_id and listed[0]["counts"]["inserted"] == 2
    assert listed[0]["file_name"] == "labs.csv" and listed[0]["report_csv_url"]
    # the staging record is gone: a second confirm finds nothing and stores nothing
    again = client.post(f"/imports/{token}/confirm", data={"csrf_token": client.csrf})
    assert again.status_code == 404 and count(app, Observation) == before + 2


def test_cancel_stores_nothing_and_deletes_the_staged_file(app, clients):
    client = clients["coordinator"]
    before, batches = count(app, Observation), count(app, ImportBatch)
    response = upload(client, lab_file(app, f"S003,{stamp(app, 3)},CRP,30,mg/L"))
    token = response.headers["location"].rsplit("/", 1)[1]
    assert token in staged_folders(app)
    cancelled = client.post(
        f"/imports/{token}/cancel", data={"csrf_token": client.csrf}, follow_redirects=False
    )
    assert cancelled.headers["location"] == "/imports?cancelled=1"
    assert token not in staged_folders(app)
    assert count(app, Observation) == before and count(app, ImportBatch) == batches
    assert "nothing was stored" in client.get("/imports?cancelled=1").text
    assert client.get(f"/imports/{token}").status_code == 404


def test_file_with_an_error_cannot_be_confirmed(app, clients):
    client = clients["data_manager"]
    before, batches = count(app, Observation), count(app, ImportBatch)
    content = lab_file(app, f"S001,{stamp(app, 2)},CRP,7,mg/L", f"S999,{stamp(app, 2)},CRP,9,mg/L")
    token = upload(client, content).headers["location"].rsplit("/", 1)[1]
    page = client.get(f"/imports/{token}").text
    assert "1 error(s): the file cannot be imported" in page
    assert "unknown subject" in page and "S999" in page
    assert f'action="/imports/{token}/confirm"' not in page
    refused = client.post(f"/imports/{token}/confirm", data={"csrf_token": client.csrf})
    assert refused.status_code == 422 and "has errors; nothing was stored" in refused.text
    api = client.post(f"/api/v1/uploads/{token}/confirm")
    assert api.status_code == 422
    assert count(app, Observation) == before and count(app, ImportBatch) == batches
    unreadable = upload(client, b"\x00\x01 not a table", name="scan.xlsx")
    page = client.get(unreadable.headers["location"]).text
    assert "The file cannot be imported" in page and "Confirm import" not in page
    assert str(app.state.study.directory) not in page  # no server paths in messages


def test_mapping_may_not_point_outside_the_upload(app, clients):
    client = clients["data_manager"]
    files = {
        "file": ("labs.csv", lab_file(app), "text/csv"),
        "mapping": ("map.yaml", b"layout: redcap\ndictionary: /etc/passwd\n", "text/yaml"),
    }
    response = client.post(
        "/imports", data={"csrf_token": client.csrf}, files=files, follow_redirects=False
    )
    page = client.get(response.headers["location"]).text
    assert "is not a file of this upload" in page and "Confirm import" not in page
    assert "root:" not in page


def test_api_upload_review_cancel_and_confirm(app, clients):
    client = clients["admin"]
    files = {"file": ("api.csv", lab_file(app, f"S004,{stamp(app, 6)},CRP,40,mg/L"), "text/csv")}
    staged = client.post("/api/v1/uploads", files=files, data={"register": "no"})
    assert staged.status_code == 201, staged.text
    body = staged.json()
    assert body["ok"] and body["can_confirm"] and body["accounting"]["results"] == 1
    assert client.get(f"/api/v1/uploads/{body['token']}").json()["sha256"] == body["sha256"]
    assert client.delete(f"/api/v1/uploads/{body['token']}").status_code == 204
    assert client.get(f"/api/v1/uploads/{body['token']}").status_code == 404

    token = client.post("/api/v1/uploads", files=files).json()["token"]
    before = count(app, Observation)
    batch = client.post(f"/api/v1/uploads/{token}/confirm")
    assert batch.status_code == 201, batch.text
    assert batch.json()["counts"]["inserted"] == 1 and count(app, Observation) == before + 1
    assert client.get(f"/api/v1/import-batches/{batch.json()['id']}").status_code == 200
    schema = client.get("/api/openapi.json").json()
    assert {"/api/v1/uploads", "/api/v1/import-batches", "/api/v1/report"} <= set(schema["paths"])


def test_staged_upload_belongs_to_its_session(app, clients):
    token = upload(clients["data_manager"], lab_file(app)).headers["location"].rsplit("/", 1)[1]
    other = client_for(app, "data_manager")  # the same user, another session
    assert other.get(f"/imports/{token}").status_code == 404
    assert other.post(f"/imports/{token}/confirm", data={"csrf_token": other.csrf}).status_code == (
        404
    )
    assert clients["admin"].delete(f"/api/v1/uploads/{token}").status_code == 404
    assert token in staged_folders(app)
    for bad in ("..%2F..%2Fprotocol.yaml", "..%5Cupload.json", "x" * 32):
        assert clients["data_manager"].get(f"/imports/{bad}").status_code == 404


@pytest.mark.parametrize("name", ["../../../evil.csv", "..\\..\\evil.csv", "/etc/evil.csv"])
def test_path_traversal_in_the_file_name_is_inert(app, clients, name):
    client = clients["data_manager"]
    study_dir = app.state.study.directory
    outside = {p for p in study_dir.parent.rglob("evil*")}
    response = upload(client, lab_file(app), name=name)
    token = response.headers["location"].rsplit("/", 1)[1]
    source = study_dir / imports.UPLOAD_DIR / token / imports.SOURCE_DIR
    assert [p.name for p in source.iterdir()] == ["evil.csv"]
    assert {p for p in study_dir.parent.rglob("evil*")} - outside == {source / "evil.csv"}
    client.post(f"/imports/{token}/cancel", data={"csrf_token": client.csrf})


def test_safe_filename():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..") == "upload" and safe_filename("") == "upload"
    assert safe_filename(".hidden.csv") == "hidden.csv"
    assert safe_filename("Labor Ergebnisse (März).xlsx") == "Labor_Ergebnisse_Marz_.xlsx"
    assert safe_filename("a" * 300 + ".csv") == "a" * 96 + ".csv"


def test_upload_refusals_store_nothing(app, clients):
    client = clients["data_manager"]
    before = staged_folders(app)
    assert upload(client, b"x", name="labs.exe").status_code == 422
    assert upload(client, b"", name="empty.csv").status_code == 422
    app.state.upload_limit = 1024
    try:
        large = upload(client, lab_file(app) * 100)
        assert large.status_code == 413 and "larger than the limit" in large.text
    finally:
        del app.state.upload_limit
    assert staged_folders(app) == before


def test_forms_without_csrf_token_are_refused(app, clients):
    client = clients["data_manager"]
    before, folders = count(app, Observation), staged_folders(app)
    for token in ("", "forged"):
        response = client.post(
            "/imports",
            data={"csrf_token": token} if token else {},
            files={"file": ("labs.csv", lab_file(app), "text/csv")},
        )
        assert response.status_code == 403 and "security token" in response.text
    assert staged_folders(app) == folders
    staged = upload(client, lab_file(app)).headers["location"].rsplit("/", 1)[1]
    assert client.post(f"/imports/{staged}/confirm").status_code == 403
    assert client.post(f"/imports/{staged}/confirm", data={"csrf_token": "x"}).status_code == 403
    bare = client_for(app)
    bare.cookies = client.cookies  # signed in, but without the X-CSRF-Token header
    files = {"file": ("labs.csv", lab_file(app), "text/csv")}
    assert bare.post("/api/v1/uploads", files=files).status_code == 403
    assert bare.post(f"/api/v1/uploads/{staged}/confirm").status_code == 403
    assert count(app, Observation) == before
    assert clients["statistician"].post("/reports/build").status_code == 403
    assert app.state.report_builder.status.state != "building"
    client.post(f"/imports/{staged}/cancel", data={"csrf_token": client.csrf})


@pytest.mark.parametrize(
    ("method", "path", "roles"),
    [
        ("GET", "/imports", HISTORY),
        ("GET", "/api/v1/import-batches", HISTORY),
        ("POST", "/imports", IMPORTERS),
        ("POST", "/api/v1/uploads", IMPORTERS),
        ("GET", "/reports", READERS),
        ("GET", "/api/v1/report", READERS),
        ("POST", "/reports/build", BUILDERS),
        ("POST", "/api/v1/report/build", BUILDERS),
    ],
)
def test_each_role_is_refused_what_it_may_not_do(app, clients, method, path, roles):
    for role, client in clients.items():
        if method == "POST" and role in roles:
            continue  # allowed writes are exercised by the other tests
        if path == "/imports" and method == "POST":
            response = upload(client, lab_file(app))
        else:
            response = client.request(method, path, follow_redirects=False)
        if role in roles:
            assert response.status_code == 200, (role, path, response.text)
        else:
            assert response.status_code == 403, (role, path, response.status_code)
            assert "may not do this" in response.text
    nav = clients["statistician"].get("/reports").text
    assert 'href="/reports"' in nav and 'href="/imports"' not in nav


def test_every_route_refuses_anonymous(anonymous):
    checked = 0
    routers = (imports.router, imports.api_router, reports.router, reports.api_router)
    for route in [route for router in routers for route in router.routes]:
        if not isinstance(route, APIRoute):
            continue
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in route.methods - {"HEAD"}:
            response = anonymous.request(method, path, follow_redirects=False)
            if path.startswith("/api/"):
                assert response.status_code == 401, (method, path)
            else:
                assert response.status_code == 303, (method, path)
                assert response.headers["location"].startswith("/login?next=")
            checked += 1
    assert checked >= 20


def test_report_build_status_and_downloads(app, clients):
    statistician, monitor = clients["statistician"], clients["monitor"]
    assert monitor.get("/reports/report.html").status_code == 404  # nothing built yet
    started = statistician.post("/api/v1/report/build")
    assert started.status_code == 202 and started.json()["state"] == "building"
    assert statistician.post("/api/v1/report/build").status_code == 409  # one build at a time
    busy = statistician.post(
        "/reports/build", data={"csrf_token": statistician.csrf}, follow_redirects=False
    )
    assert busy.headers["location"] == "/reports?busy=1"
    page = statistician.get("/reports").text
    assert "building" in page and 'http-equiv="refresh"' in page

    status = app.state.report_builder.wait(timeout=120)
    assert status.state == "ready", status.message
    page = monitor.get("/reports").text
    assert "ready" in page and 'http-equiv="refresh"' not in page
    assert "Build the report" not in page and "Rebuild" not in page  # the monitor only reads
    html = monitor.get("/reports/report.html")
    assert html.status_code == 200 and "<html" in html.text[:500].lower()
    assert html.headers["content-disposition"].startswith("attachment")
    assert html.headers["content-security-policy"].startswith("default-src 'none'")
    view = monitor.get("/reports/view")
    assert view.status_code == 200 and "script-src" not in view.headers["content-security-policy"]
    body = statistician.get("/api/v1/report").json()
    assert body["state"] == "ready" and body["html_url"] == "/api/v1/report/report.html"
    if body["pdf_url"]:
        pdf = statistician.get("/reports/report.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    else:
        assert body["pdf_message"]
    folder = app.state.study.directory / reports.REPORT_DIR
    assert (folder / "report.html").is_file() and (folder / "status.json").is_file()
    assert not list(folder.glob(".build-*"))


def test_report_status_survives_a_restart(tmp_path):
    from tests.web.conftest import build_study

    study = build_study(tmp_path / "study", subjects=("S001",))
    folder = study.directory / reports.REPORT_DIR
    folder.mkdir()
    (folder / "report.html").write_text("<html></html>")
    (folder / "status.json").write_text('{"state": "building", "started_by": "x"}')
    status = reports.ReportBuilder(study).status
    assert status.state == "failed" and "interrupted" in status.message
    assert status.html and not status.pdf
    study.engine.dispose()


def test_serve_sets_the_upload_limit(study_dir, db_url, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from celltrial.cli import app as cli

    served = {}

    def run(server, sockets=None):  # instead of serving: what it would serve, and where
        served.update(app=server.config.app, port=sockets[0].getsockname()[1])
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    args = ["serve", str(study_dir), "--db", db_url, "--port", "0"]  # any free port
    result = CliRunner().invoke(cli, [*args, "--max-upload-mb", "0.5"])
    assert result.exit_code == 0, result.output
    assert imports.upload_limit(_RequestOf(served["app"])) == 512 * 1024
    assert f"http://127.0.0.1:{served['port']}/" in result.output  # the port it listens on
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert imports.upload_limit(_RequestOf(served["app"])) == imports.MAX_UPLOAD_BYTES
    refused = CliRunner().invoke(cli, [*args, "--max-upload-mb", "0"])
    assert refused.exit_code != 0 and "max-upload-mb" in refused.output


class _RequestOf:
    """The one attribute of a request that ``upload_limit`` reads."""

    def __init__(self, app) -> None:
        self.app = app
