"""Run schemathesis with every check against the web app's JSON API and count failures by check.

A small study (``tests/web/conftest.build_study``) is made in a temporary folder (SQLite, or
``--db`` URL), ``celltrial serve`` runs it on a free loopback port, a coordinator signs in, and
``schemathesis run --checks all`` calls every operation with that session's cookie and CSRF
header. Signing out (``DELETE /api/v1/session``) is left out: it would end the session the run
uses. Heavier than a test (minutes); the test suite runs a small in-process fuzz instead
(``tests/web/test_schema_fuzz.py``).

The schema states what JSON Schema can (types, patterns, lengths, enums, ranges, the study's
sites). A few rules relate two values, or a value and the clock, which no schema can state
(each is in its operation's description): an enrolment's admission and enrolment are not in
the future, the birth date is not after them nor more than 120 years before, an age given
beside a birth date must match it. This file is also schemathesis's hooks module
(``SCHEMATHESIS_HOOKS``): its ``map_case`` hook makes the *positive* cases of those operations
keep these rules (negative cases are left as generated).

Other rules of the study depend on its data (a lot must be of the study and released, an
infusion number within the protocol's, a subject's events after their enrolment), or relate
fields in ways a schema could only spell out at length (a fatal event is grade 5 and serious;
a stopped infusion says why). The API refuses such an entry with 422 and one message naming
the rule (``detail`` a string), apart from the 422 of a request that does not fit the schema
(``detail`` a list of problems by field). schemathesis's ``positive_data_acceptance`` counts
every 422 on a valid request as a failure; here it takes 422 as an answer (a
``schemathesis.toml`` beside the run), and the check ``valid_request_fits_the_schema`` (below)
fails a valid request refused as not fitting the schema (the list-shaped 422) or as unreadable
(400): the schema says less than the API checks. Rule refusals are counted by operation, each
with an example, after the failures.

    python scripts/fuzz_api.py --max-examples 5
    PYTHONPATH=/path/to/other/src python scripts/fuzz_api.py   # another version of the app
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.web.conftest import PASSWORD, build_study  # noqa: E402

#: Operations whose positive cases the hook keeps to the rules no schema states.
ENROLMENT = {("POST", "/api/v1/subjects"), ("PUT", "/api/v1/subjects/{code}/demographics")}


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).upper()) if isinstance(value, str) else None
    except ValueError:
        return None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def keep_enrolment_rules(body: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``body`` (a valid enrolment or demographics edit) changed as little as needed to keep the
    rules that relate its values: no time in the future, a birth date from 120 years to a day
    before the admission (else the enrolment, else now), no age beside a birth date."""
    body = dict(body)
    for key in ("admitted_at", "enrolled_at"):
        when = _time(body.get(key))
        if when is not None and when > now - timedelta(days=1):
            body[key] = (now - timedelta(days=2)).isoformat()
    born = _date(body.get("birth_date"))
    if born is not None:
        reference = (_time(body.get("admitted_at")) or _time(body.get("enrolled_at")) or now).date()
        earliest = reference.replace(year=reference.year - 120) + timedelta(days=2)
        if not earliest <= born <= reference - timedelta(days=2):
            body["birth_date"] = None
        if body.get("birth_date") is not None:
            body["age"] = None
    return body


try:  # this file is schemathesis's hooks module too (SCHEMATHESIS_HOOKS)
    import schemathesis
    from schemathesis.generation import GenerationMode
except ImportError:  # pragma: no cover - the script says so when it runs
    schemathesis = None
else:

    @schemathesis.hook("map_case")
    def _rules_no_schema_states(_context: Any, case: Any) -> Any:
        meta = case.meta
        positive = meta is not None and meta.generation.mode == GenerationMode.POSITIVE
        key = (case.method.upper(), case.operation.path)
        if positive and key in ENROLMENT and isinstance(case.body, dict):
            case.body = keep_enrolment_rules(case.body, datetime.now(UTC))
        return case

    @schemathesis.check
    def valid_request_fits_the_schema(_ctx: Any, response: Any, case: Any) -> bool | None:
        """A valid request (a positive case) is never refused as not fitting the schema (422
        with a list of problems) or as unreadable (400)."""
        meta = case.meta
        if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
            return None
        if response.status_code == 400 or (
            response.status_code == 422 and isinstance(_detail(response.content), list)
        ):
            raise AssertionError(
                f"a request the schema allows was refused ({response.status_code}): "
                f"{response.content[:300]!r}"
            )
        return None


def _detail(content: bytes) -> Any:
    try:
        return json.loads(content).get("detail")
    except (ValueError, AttributeError):
        return None


#: schemathesis's settings for the run: a 422 is an answer to a valid request (the study's
#: rules, one message); ``valid_request_fits_the_schema`` fails the schema's own refusals.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


#: The server's last lines (shown when the run ends).
SERVER_LINES: deque[str] = deque(maxlen=20)


def _drain(server: subprocess.Popen) -> None:
    for line in server.stdout or ():
        SERVER_LINES.append(line.rstrip())


def _serve(study_dir: Path, db_url: str | None) -> tuple[subprocess.Popen, str]:
    command = [
        str(Path(sys.executable).with_name("celltrial")),
        "serve",
        str(study_dir),
        "--port",
        "0",
    ]
    if db_url:
        command += ["--db", db_url]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline() if server.stdout else ""
    # read what the server prints from now on (a request log line each): a pipe nobody reads
    # fills after some 600 requests and the server stops at its next line
    threading.Thread(target=_drain, args=(server,), daemon=True).start()
    found = re.search(r"http://[^/]+/", line)
    if not found:
        server.terminate()
        raise SystemExit(f"the server did not start: {line!r}")
    url = found.group(0).rstrip("/")
    for _ in range(120):
        try:
            httpx.get(f"{url}/login", timeout=2)
            return server, url
        except httpx.TransportError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("the server did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=5)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--role",
        default="coordinator",
        help="the role the run signs in as (each role reaches other operations)",
    )
    parser.add_argument("--keep-report", default=None, help="copy the NDJSON events here")
    parser.add_argument(
        "--phases", default="examples,coverage,fuzzing", help="schemathesis phases to run"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        study_dir = Path(temporary) / "study"
        build_study(study_dir, db_url=options.db).engine.dispose()
        server, url = _serve(study_dir, options.db)
        try:
            signed = httpx.post(
                f"{url}/api/v1/session",
                json={"username": options.role.replace("_", "-"), "password": PASSWORD},
            )
            signed.raise_for_status()
            token = signed.cookies.get("celltrial_session")
            report = Path(temporary) / "report.json"
            config = Path(temporary) / "schemathesis.toml"
            config.write_text(CONFIG, encoding="utf-8")
            command = [
                "schemathesis",
                "--config-file",
                str(config),
                "run",
                f"{url}/api/openapi.json",
                "-H",
                f"Cookie: celltrial_session={token}",
                "-H",
                f"X-CSRF-Token: {signed.json()['csrf_token']}",
                "--checks",
                "all",
                "--exclude-checks",
                "ignored_auth",  # the session is a cookie the schema cannot describe
                "--exclude-operation-id",  # signing out would end the session of the run
                "delete_session_api_v1_session_delete",
                "--max-examples",
                str(options.max_examples),
                "--seed",
                str(options.seed),
                "--workers",
                "1",
                "--phases",
                options.phases,
                "--continue-on-failure",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                str(report),
            ]
            hooks = {"SCHEMATHESIS_HOOKS": str(Path(__file__).resolve())}
            run = subprocess.run(
                command, capture_output=True, text=True, env=os.environ | hooks, cwd=temporary
            )
            tail = run.stdout.strip().splitlines()[-25:]
            print("\n".join(tail))
            print(_counts(report))
            print(_rule_refusals(report))
            if any("Traceback" in line for line in SERVER_LINES):
                print("the server's last lines:\n" + "\n".join(SERVER_LINES))
            if options.keep_report and report.is_file():
                shutil.copyfile(report, options.keep_report)
        finally:
            server.terminate()
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()


def _counts(report: Path) -> str:
    """Distinct failures by check, from the NDJSON events: a check failing on one operation
    counts once, however many test cases found it (a 405 without ``Allow``: once per method)."""
    if not report.is_file():
        return "no report written"
    distinct: set[tuple[str, str, str]] = set()
    for line in report.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for failure in _failures(event.get("ScenarioFinished")):
            message = str(failure.get("message", ""))
            # a 405 without Allow: once per method and path; other failures once per operation
            method = message.split(" ", 1)[0] if failure.get("code") == "ST204" else ""
            distinct.add((failure["title"], str(failure.get("operation")), method))
    by_check = Counter(title for title, _, _ in distinct)
    lines = [f"{n:4d}  {title}" for title, n in by_check.most_common()]
    lines += [
        f"  {title}: {operation}: {message}" for title, operation, message in sorted(distinct)
    ]
    return f"{len(distinct)} distinct failures\n" + "\n".join(lines)


def _rule_refusals(report: Path) -> str:
    """Valid requests the study's rules refused (422, one message), by operation."""
    if not report.is_file():
        return ""
    found: dict[str, list[str]] = {}
    for line in report.read_text(encoding="utf-8").splitlines():
        try:
            recorder = json.loads(line).get("ScenarioFinished", {}).get("recorder") or {}
        except ValueError:
            continue
        for case_id, case in (recorder.get("cases") or {}).items():
            value = case.get("value") or {}
            if ((value.get("meta") or {}).get("generation") or {}).get("mode") != "positive":
                continue
            response = ((recorder.get("interactions") or {}).get(case_id) or {}).get("response")
            if not response or response.get("status_code") != 422:
                continue
            content = response.get("content") or {}
            raw = base64.b64decode(content["$base64"]) if "$base64" in content else b""
            detail = _detail(raw)
            if isinstance(detail, str):
                label = f"{value.get('method')} {value.get('path')}"
                found.setdefault(label, []).append(detail)
    lines = [f"{sum(map(len, found.values()))} valid requests refused by the study's rules"]
    lines += [
        f"  {label}: {len(details)}, e.g. {details[0][:150]}"
        for label, details in sorted(found.items())
    ]
    return "\n".join(lines)


def _failures(node: object) -> list[dict]:
    if isinstance(node, dict):
        found = [node] if "title" in node and "code" in node else []
        return found + [f for value in node.values() for f in _failures(value)]
    if isinstance(node, list):
        return [f for value in node for f in _failures(value)]
    return []


if __name__ == "__main__":
    main()
