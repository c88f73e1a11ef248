"""Page latency while a large workbook is uploaded: is the dashboard still quick?

A small study (``tests/web/conftest.build_study``) is served by uvicorn in a process of its own
(SQLite, or ``--db``); a data manager uploads an XLSX of ``--cells`` cells (a long lab table,
five columns) while a coordinator loads the dashboard every quarter second. Printed: the
dashboard's median and 95th-percentile time before and during the upload, the upload's answer
and how long it took.

    python benchmarks/bench_upload_latency.py --cells 1900000            # this tree
    python benchmarks/bench_upload_latency.py --cells 1900000 --in-thread  # dry run in a thread
    python benchmarks/bench_upload_latency.py --cells 2400000            # over the cell limit
    PYTHONPATH=/path/to/other/src python benchmarks/bench_upload_latency.py --in-thread \
        --cell-limit 1000000000                                           # a version without one
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from datetime import timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.web.conftest import NOW, PASSWORD, build_study  # noqa: E402

SERVER = """
import sys, uvicorn
from celltrial.web import create_app
from celltrial.web.command import bind_port
directory, mode = sys.argv[1], sys.argv[2]
options = {} if mode == "thread" else {"upload_process": True}
app = create_app(directory, db_url=sys.argv[3] or None, figure_process=True, **options)
app.state.upload_limit = 512 * 2**20
if sys.argv[4]:
    app.state.upload_cells = int(sys.argv[4])
listening = bind_port("127.0.0.1", 0)
print(f"http://127.0.0.1:{listening.getsockname()[1]}", flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
"""
TESTS = ("CRP", "IL-6", "D-dimer", "LDH", "Lymphocyte count", "Neutrophil count")
UNITS = ("mg/L", "pg/mL", "mg/L FEU", "U/L", "10^9/L", "10^9/L")


def write_workbook(path: Path, cells: int) -> None:
    """An XLSX long lab table of ``cells`` cells (five columns), written as XML directly."""
    rows = cells // 5
    start = NOW - timedelta(days=11)
    lines = ['<row r="1">' + _cells(1, ["subject_id", "time", "test", "value", "unit"]) + "</row>"]
    for i in range(rows - 1):
        test = i % len(TESTS)
        subject = f"S00{1 + (i // len(TESTS)) % 4}"
        when = (start + timedelta(minutes=i // 24)).strftime("%Y-%m-%d %H:%M")
        values = [subject, when, TESTS[test], 1.0 + (i % 97) / 10, UNITS[test]]
        lines.append(f'<row r="{i + 2}">' + _cells(i + 2, values) + "</row>")
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="A1:E{rows}"/><sheetData>' + "".join(lines) + "</sheetData></worksheet>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", _CONTENT_TYPES)
        book.writestr("_rels/.rels", _ROOT_RELS)
        book.writestr("xl/workbook.xml", _WORKBOOK)
        book.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        book.writestr("xl/worksheets/sheet1.xml", sheet)


def _cells(row: int, values: list[object]) -> str:
    out = []
    for column, value in zip("ABCDE", values, strict=True):
        if isinstance(value, float):
            out.append(f'<c r="{column}{row}"><v>{value}</v></c>')
        else:
            text = escape(str(value))
            out.append(f'<c r="{column}{row}" t="inlineStr"><is><t>{text}</t></is></c>')
    return "".join(out)


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="rels" ContentType="application/'
    'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
    '"application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName='
    '"/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    'spreadsheetml.worksheet+xml"/></Types>'
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
    'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
    'openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target='
    '"xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/'
    'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships"><sheets><sheet name="labs" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
    'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
    'openxmlformats.org/officeDocument/2006/relationships/worksheet" Target='
    '"worksheets/sheet1.xml"/></Relationships>'
)


def _sign_in(url: str, user: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=900)
    signed = client.post("/api/v1/session", json={"username": user, "password": PASSWORD})
    signed.raise_for_status()
    client.headers["X-CSRF-Token"] = signed.json()["csrf_token"]
    client.cookies.set("celltrial_session", signed.cookies["celltrial_session"])
    return client


def _dashboard_times(client: httpx.Client, until: threading.Event | None, n: int) -> list[float]:
    times = []
    while (until is None and len(times) < n) or (until is not None and not until.is_set()):
        started = time.perf_counter()
        client.get("/").raise_for_status()
        times.append(time.perf_counter() - started)
        time.sleep(0.25)
    return times


def _summary(times: list[float]) -> str:
    if not times:
        return "no requests"
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"median {statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms ({len(times)} requests)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_900_000)
    parser.add_argument("--in-thread", action="store_true", help="dry run in a web thread")
    parser.add_argument("--db", default="", help="database URL (default: SQLite)")
    parser.add_argument(
        "--cell-limit", default="", help="the app's cell limit (default: the app's own)"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        book = folder / "labs.xlsx"
        write_workbook(book, options.cells)
        print(f"workbook: {options.cells:,} cells, {book.stat().st_size / 2**20:.1f} MB")
        build_study(folder / "study", db_url=options.db or None).engine.dispose()
        mode = "thread" if options.in_thread else "process"
        command = [sys.executable, "-c", SERVER, str(folder / "study"), mode, options.db]
        command.append(options.cell_limit)
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            url = (server.stdout.readline() if server.stdout else "").strip()
            if not re.match(r"http://", url):
                raise SystemExit("the server did not start")
            time.sleep(3)  # warm-up
            reader, importer = _sign_in(url, "coordinator"), _sign_in(url, "data-manager")
            idle = _dashboard_times(reader, None, 20)
            done = threading.Event()
            answer: dict[str, object] = {}

            def send() -> None:
                started = time.perf_counter()
                with book.open("rb") as handle:
                    response = importer.post(
                        "/api/v1/uploads", files={"file": ("labs.xlsx", handle)}
                    )
                answer["seconds"] = time.perf_counter() - started
                answer["status"] = response.status_code
                answer["text"] = response.text[:200]
                done.set()

            uploading = threading.Thread(target=send)
            uploading.start()
            during = _dashboard_times(reader, done, 0)
            uploading.join()
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"dry run in a {mode}")
    print(f"dashboard before the upload: {_summary(idle)}")
    print(f"dashboard during the upload: {_summary(during)}")
    print(f"upload: HTTP {answer['status']} after {answer['seconds']:.1f} s: {answer['text']}")


if __name__ == "__main__":
    main()
