"""Load test of the study web app: concurrent users browse pages, read and write through the API.

Run: python benchmarks/bench_web.py [--db URL] [--users 20] [--seconds 60] [--workers 1]

Set-up (not timed): a fresh PostgreSQL database (created in the server of ``--db``, default
``$CELLTRIAL_TEST_POSTGRES_URL``, else the local CI server; dropped afterwards; SQLite in a
temporary folder when the server cannot be reached, said so in the output), a study from the
built-in protocol with a simulated cohort (``--subjects``), a few newly enrolled subjects without
infusions and a released lot for bedside entry, and one account per role.

The real server then runs in a subprocess (uvicorn, ``--workers`` processes, 127.0.0.1, a free
port), and ``--users`` simulated users (asyncio + httpx, one session each, roles in turn) each
sign in once. One user opens every subject page once, not measured (``--no-warm-up`` skips this,
so that the figures and views the server keeps are first made during the measurement). Then,
until ``--seconds`` have passed, the users browse pages (dashboard, subject pages with their
profile figure, audit trails), read through the API, and — investigators, coordinators and data
managers — write through the API with the CSRF header (adverse events, infusions, infusion edits
with a reason, queries raised, answered and closed), pausing ``--think`` seconds on average
between requests (0: back to back, the server's capacity). Writes never collide: each writer owns
its subjects and queries, so any 4xx/5xx or failed connection counts as an error.

Prints requests/s and p50/p95/p99 latency for pages, profile figures, API reads, API writes and
sign-ins, the error count (by status and route) and the machine load.

``--sequential N`` measures instead what one request costs alone: one client reads each route N
times per pass, one request at a time, and the server's CPU per request is printed beside the
latency (the stylesheet, which needs no session and no database, is the anchor). ``--before
DIR`` runs a server of another checkout on the same study, the two read in turn.

Targets (issue 12): p95 under 200 ms for pages and under 50 ms for API reads, no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

LOCAL_POSTGRES = "postgresql+psycopg://celltrial_ci:celltrial_ci@127.0.0.1:5432/celltrial_ci"
PASSWORD = "bench password 2020"
ROLES = ("investigator", "coordinator", "data_manager", "monitor", "statistician", "admin")
WRITERS = ("investigator", "coordinator")
LOT = "LOT-BENCH"
CATEGORIES = ("page", "figure", "api read", "api write", "sign-in")

APP_MODULE = """
import os
from celltrial.web import create_app


def app():
    return create_app(
        os.environ["BENCH_STUDY_DIR"], db_url=os.environ["BENCH_DB_URL"], figure_process=True
    )
"""


# --- set-up --------------------------------------------------------------------------------------


@contextmanager
def fresh_database(server_url: str, folder: Path):
    """A new PostgreSQL database on ``server_url`` (dropped after), else a SQLite file."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    name = f"celltrial_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        reason = str(exc.orig).strip().splitlines()[0]
        print(f"NOTE: PostgreSQL not reachable ({reason}); falling back to SQLite")
        yield f"sqlite:///{folder / 'celltrial.db'}", "sqlite"
        return
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        yield url, "postgresql"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def build_study(directory: Path, url: str, *, subjects: int, new_subjects: int, seed: int) -> dict:
    """The study, its cohort, one account per role; returns what the users need to know."""
    from sqlalchemy import select

    from celltrial.cohort import simulate
    from celltrial.services.accounts import add_user
    from celltrial.services.casebook import NewLot, NewSubject, enrol_subject, record_lot
    from celltrial.store.database import study_session
    from celltrial.store.loading import load_simulated_cohort
    from celltrial.store.models import AdverseEvent, Infusion, Subject
    from celltrial.study import init_study

    study = init_study(directory, db_url=url, user="bench")
    cohort = simulate(study.protocol, subjects, seed=seed)
    with study_session(study.engine, user="bench", reason="benchmark cohort") as session:
        load_simulated_cohort(session, study.study_id, cohort)
    release = study.protocol.product.release
    now = datetime.now(UTC).replace(microsecond=0)
    record_lot(
        study,
        NewLot(
            code=LOT,
            release_status="released",
            viability_pct=95.0,
            markers_pct={m: 99.0 for m in release.positive_markers_min_pct}
            | {m: 0.5 for m in release.negative_markers_max_pct},
            sterility="no growth",
            mycoplasma="negative",
            endotoxin_eu_per_ml=0.1,
            expires_at=now + timedelta(days=90),
        ),
        user="bench",
    )
    fresh = [f"N{i:03d}" for i in range(1, new_subjects + 1)]
    for code in fresh:
        enrol_subject(
            study,
            NewSubject(
                code=code, enrolled_at=now - timedelta(days=8), sex="F", age=60, weight_kg=70
            ),
            user="bench",
        )
    for role in ROLES:
        add_user(
            study.engine, username=role.replace("_", "-"), role=role, password=PASSWORD, by="bench"
        )
    with study_session(study.engine, user="bench") as session:
        ours = Subject.study_id == study.study_id
        infusions = session.execute(
            select(Subject.code, Infusion.id).join(Subject).where(ours).order_by(Infusion.id)
        ).all()
        events = session.execute(
            select(Subject.code, AdverseEvent.id).join(Subject).where(ours)
        ).all()
    study.engine.dispose()
    return {
        "subjects": list(cohort.subjects["subject_id"]),
        "new_subjects": fresh,
        "infusions": [(code, row_id) for code, row_id in infusions],
        "events": [(code, row_id) for code, row_id in events],
        "observations": len(cohort.observations),
    }


def server_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the server process and its worker processes so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state, ppid, ..., utime (14th field of stat), stime (15th)
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    folder: Path, study_dir: Path, url: str, workers: int, *, source: Path | None = None
) -> tuple:
    """The server in a subprocess (``source``: the ``src`` folder of another checkout)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench_web_app.py").write_text(APP_MODULE)
    port = free_port()
    env = dict(os.environ, BENCH_STUDY_DIR=str(study_dir), BENCH_DB_URL=url)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    log = (folder / "server.log").open("w")
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench_web_app:app",
        "--factory",
        "--app-dir",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {(folder / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                # every worker answers (each opens the study on start-up)
                for _ in range(4 * workers):
                    httpx.get(f"{base}/login", timeout=10)
                return server, base, log
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not answer within 120 s")


# --- the simulated users -------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.by_route: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.errors: Counter[tuple[str, str]] = Counter()
        self.samples: dict[tuple[str, str], str] = {}
        self.measuring = False
        #: (start s, seconds, category, route, status) of every measured request, for --trace
        self.trace: list[tuple[float, float, str, str, int]] = []

    async def call(
        self,
        client: httpx.AsyncClient,
        category: str,
        method: str,
        path: str,
        route: str,
        *,
        expect: tuple[int, ...] = (200,),
        **kwargs,
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.errors[(type(exc).__name__, f"{method} {route}")] += 1
            return None
        elapsed = time.perf_counter() - started
        if self.measuring or category == "sign-in":
            self.latencies[category].append(elapsed)
            self.by_route[(category, f"{method} {route}")].append(elapsed)
            self.trace.append(
                (started, elapsed, category, f"{method} {route}", response.status_code)
            )
        if response.status_code not in expect:
            key = (str(response.status_code), f"{method} {route}")
            self.errors[key] += 1
            self.samples.setdefault(key, f"{method} {path}: {response.text[:300]}")
            return None
        return response


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class User:
    """One person at a browser: signs in, then browses, reads and (by role) writes."""

    def __init__(self, index: int, role: str, plan: dict, recorder: Recorder, args) -> None:
        self.index = index
        self.role = role
        self.plan = plan
        self.recorder = recorder
        self.think = args.think
        self.write_share = args.write_share
        self.random = random.Random(args.seed * 1000 + index)
        writers = [i for i in range(args.users) if ROLES[i % len(ROLES)] in WRITERS]
        managers = [i for i in range(args.users) if ROLES[i % len(ROLES)] == "data_manager"]
        # subjects (and so their infusions, events and queries) owned by this writer
        codes = plan["subjects"] + plan["new_subjects"]
        self.own: set[str] = set()
        if index in writers:
            self.own = {c for n, c in enumerate(codes) if n % len(writers) == writers.index(index)}
        self.manager_slot = (managers.index(index), len(managers)) if index in managers else None
        self.new_subjects = [c for c in plan["new_subjects"] if c in self.own]
        self.csrf = ""

    async def pause(self) -> None:
        if self.think > 0:
            await asyncio.sleep(self.random.uniform(0.5, 1.5) * self.think)

    async def get(self, client, category, path, route, **kwargs):
        return await self.recorder.call(client, category, "GET", path, route, **kwargs)

    async def sign_in(self, client: httpx.AsyncClient) -> bool:
        body = {"username": self.role.replace("_", "-"), "password": PASSWORD}
        response = await self.recorder.call(
            client, "sign-in", "POST", "/api/v1/session", "/api/v1/session", json=body
        )
        if response is None:
            return False
        # the session cookie is Secure (HTTPS only): send it by hand over plain HTTP
        token = response.cookies.get("celltrial_session") or _cookie(response, "celltrial_session")
        client.headers["Cookie"] = f"celltrial_session={token}"
        self.csrf = response.json()["csrf_token"]
        return True

    async def run(self, client: httpx.AsyncClient, deadline: float) -> None:
        await asyncio.sleep(self.random.uniform(0, max(self.think, 0.05)))
        writes = self.role in WRITERS or self.manager_slot is not None
        while time.monotonic() < deadline:
            if writes and self.random.random() < self.write_share:
                await self.write(client)
            elif self.random.random() < 0.5:
                await self.browse(client)
            else:
                await self.read(client)
            await self.pause()

    # pages: what a browser fetches for each click
    async def browse(self, client: httpx.AsyncClient) -> None:
        choice = self.random.random()
        if choice < 0.3:
            await self.get(client, "page", "/", "/")
        elif choice < 0.8 or self.role == "statistician":
            code = self.random.choice(self.plan["subjects"] + self.plan["new_subjects"])
            page = await self.get(client, "page", f"/subjects/{code}", "/subjects/{code}")
            if page is not None and "profile.png" in page.text:
                await self.get(
                    client,
                    "figure",
                    f"/subjects/{code}/profile.png",
                    "/subjects/{code}/profile.png",
                )
        else:
            table, rows = self.random.choice(
                [("infusion", self.plan["infusions"]), ("adverse_event", self.plan["events"])]
            )
            _code, row_id = self.random.choice(rows)
            await self.get(client, "page", f"/audit/{table}/{row_id}", "/audit/{table}/{id}")

    async def read(self, client: httpx.AsyncClient) -> None:
        code = self.random.choice(self.plan["subjects"])
        _, infusion = self.random.choice(self.plan["infusions"])
        _, event = self.random.choice(self.plan["events"])
        options = [
            ("/api/v1/dashboard", "/api/v1/dashboard"),
            (f"/api/v1/subjects/{code}", "/api/v1/subjects/{code}"),
            (f"/api/v1/subjects/{code}/infusions", "/api/v1/subjects/{code}/infusions"),
            (f"/api/v1/subjects/{code}/adverse-events", "/api/v1/subjects/{code}/adverse-events"),
            (f"/api/v1/subjects/{code}/signatures", "/api/v1/subjects/{code}/signatures"),
            (f"/api/v1/infusions/{infusion}", "/api/v1/infusions/{id}"),
            (f"/api/v1/adverse-events/{event}", "/api/v1/adverse-events/{id}"),
            ("/api/v1/queries?open_only=true", "/api/v1/queries"),
        ]
        if self.role != "statistician":
            options.append((f"/api/v1/audit/infusion/{infusion}", "/api/v1/audit/{table}/{id}"))
        path, route = self.random.choice(options)
        await self.get(client, "api read", path, route)

    async def write(self, client: httpx.AsyncClient) -> None:
        headers = {"X-CSRF-Token": self.csrf}
        call = self.recorder.call
        now = datetime.now(UTC)
        if self.manager_slot is not None:
            await self.manage_queries(client, headers, now)
            return
        choice = self.random.random()
        if self.new_subjects and choice < 0.15:
            code = self.new_subjects[0]
            listed = await self.get(
                client,
                "api read",
                f"/api/v1/subjects/{code}/infusions",
                "/api/v1/subjects/{code}/infusions",
            )
            if listed is None:
                return
            done = len(listed.json())
            if done >= 3:
                self.new_subjects.pop(0)
                return
            started_at = now - timedelta(days=6 - 3 * done, hours=1)
            body = {
                "lot_code": LOT,
                "vial_id": f"V-{code}-{done + 1}",
                "started_at": _iso(started_at),
                "ended_at": _iso(started_at + timedelta(minutes=40)),
                "cells_given": 3.0e7,
                "volume_ml": 100,
                "label_subject_code": code,
            }
            path = f"/api/v1/subjects/{code}/infusions"
            await call(
                client,
                "api write",
                "POST",
                path,
                "/api/v1/subjects/{code}/infusions",
                expect=(201,),
                json=body,
                headers=headers,
            )
        elif choice < 0.45:
            code = self.random.choice(sorted(self.own))
            body = {
                "term": self.random.choice(["Headache", "Fever", "Nausea", "Rash"]),
                "onset_at": _iso(now - timedelta(hours=self.random.randint(1, 48))),
                "grade": self.random.randint(1, 2),
                "relatedness": "unlikely related",
                "outcome": "recovering",
                "description": "entered by the load test",
            }
            await call(
                client,
                "api write",
                "POST",
                f"/api/v1/subjects/{code}/adverse-events",
                "/api/v1/subjects/{code}/adverse-events",
                expect=(201,),
                json=body,
                headers=headers,
            )
        elif choice < 0.75:
            mine = [i for code, i in self.plan["infusions"] if code in self.own]
            if not mine:
                return
            infusion_id = self.random.choice(mine)
            read = await self.get(
                client, "api read", f"/api/v1/infusions/{infusion_id}", "/api/v1/infusions/{id}"
            )
            if read is None:
                return
            record = read.json()
            body = {
                k: record[k]
                for k in (
                    "lot_code",
                    "vial_id",
                    "started_at",
                    "ended_at",
                    "cells_given",
                    "completed",
                    "stop_reason",
                    "premedication",
                    "reaction",
                    "reaction_description",
                )
            }
            body["reaction"] = bool(body["reaction"])  # read back as null when never entered
            body["volume_ml"] = self.random.choice([95.0, 100.0, 105.0])
            body["version"] = record["version"]
            body["reason"] = "volume corrected from the infusion chart"
            if not body["completed"] and not body["stop_reason"]:
                body["stop_reason"] = "stopped"
            await call(
                client,
                "api write",
                "PUT",
                f"/api/v1/infusions/{infusion_id}",
                "/api/v1/infusions/{id}",
                json=body,
                headers=headers,
            )
        else:
            await self.answer_query(client, headers)

    async def answer_query(self, client, headers) -> None:
        listed = await self.get(
            client, "api read", "/api/v1/queries?open_only=true", "/api/v1/queries"
        )
        if listed is None:
            return
        mine = [q for q in listed.json() if q["status"] == "open" and q["subject_code"] in self.own]
        if not mine:
            return
        query = self.random.choice(mine)
        await self.recorder.call(
            client,
            "api write",
            "POST",
            f"/api/v1/queries/{query['id']}/answer",
            "/api/v1/queries/{id}/answer",
            json={"answer": "checked against the source", "version": query["version"]},
            headers=headers,
        )

    async def manage_queries(self, client, headers, now) -> None:
        slot, slots = self.manager_slot
        if self.random.random() < 0.6:
            table, rows, field = self.random.choice(
                [
                    ("infusion", self.plan["infusions"], "volume_ml"),
                    ("adverse_event", self.plan["events"], "grade"),
                ]
            )
            _code, row_id = self.random.choice(rows)
            body = {
                "table": table,
                "row_id": row_id,
                "field": field,
                "question": f"please confirm against the source ({now:%H:%M:%S})",
            }
            await self.recorder.call(
                client,
                "api write",
                "POST",
                "/api/v1/queries",
                "/api/v1/queries",
                expect=(201,),
                json=body,
                headers=headers,
            )
            return
        listed = await self.get(
            client, "api read", "/api/v1/queries?open_only=true", "/api/v1/queries"
        )
        if listed is None:
            return
        answered = [
            q for q in listed.json() if q["status"] == "answered" and q["id"] % slots == slot
        ]
        if not answered:
            return
        query = self.random.choice(answered)
        await self.recorder.call(
            client,
            "api write",
            "POST",
            f"/api/v1/queries/{query['id']}/close",
            "/api/v1/queries/{id}/close",
            json={"note": "resolved", "version": query["version"]},
            headers=headers,
        )


def _cookie(response: httpx.Response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        key, _, rest = header.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    raise RuntimeError(f"no {name} cookie in the sign-in response")


async def warm_up(base: str, plan: dict, args) -> float:
    """One monitor opens the dashboard and every subject page with its figure (not measured), as
    many times as there are workers, each of which keeps its own caches; returns the seconds."""
    started = time.monotonic()
    user = User(0, "monitor", plan, Recorder(), args)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        if not await user.sign_in(client):
            raise SystemExit("warm-up: the monitor could not sign in")
        for _ in range(args.workers):
            await client.get("/")
            for code in plan["subjects"] + plan["new_subjects"]:
                await client.get(f"/subjects/{code}")
                await client.get(f"/subjects/{code}/profile.png")
    return time.monotonic() - started


async def run_load(base: str, plan: dict, args, pid: int) -> tuple[Recorder, float, int, float]:
    """Everyone signs in (timed apart), then the measured period; returns the wall time, the
    number of users signed in and the server's CPU seconds in the measured period."""
    recorder = Recorder()
    users = [User(i, ROLES[i % len(ROLES)], plan, recorder, args) for i in range(args.users)]
    clients = [httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=False) for _ in users]
    try:
        signed = await asyncio.gather(*(u.sign_in(c) for u, c in zip(users, clients, strict=True)))
        active = [(u, c) for u, c, ok in zip(users, clients, signed, strict=True) if ok]
        if args.warm_up:
            print(f"warm-up (not measured): {await warm_up(base, plan, args):.1f} s")
        recorder.measuring = True
        cpu = server_cpu_seconds(pid)
        started = time.monotonic()
        deadline = started + args.seconds
        await asyncio.gather(*(u.run(c, deadline) for u, c in active))
        duration = time.monotonic() - started
        cpu = server_cpu_seconds(pid) - cpu
        recorder.measuring = False
    finally:
        for client in clients:
            await client.aclose()
    return recorder, duration, len(active), cpu


def write_trace(recorder: Recorder, path: Path) -> None:
    import csv

    first = min((row[0] for row in recorder.trace), default=0.0)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["start_s", "seconds", "category", "route", "status"])
        for start, elapsed, category, route, status in sorted(recorder.trace):
            out.writerow([f"{start - first:.4f}", f"{elapsed:.4f}", category, route, status])
    print(f"trace of {len(recorder.trace)} requests: {path}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def anchor() -> tuple[float, float]:
    """(wall, CPU) seconds of a fixed pure-Python workload (SHA-256 chained 200,000 times): a
    same-run yardstick of how fast this machine is at the moment, printed beside the figures
    (a loaded machine makes both the anchor and the latencies slower)."""
    import hashlib

    wall, cpu = time.perf_counter(), time.process_time()
    digest = b"celltrial"
    for _ in range(200_000):
        digest = hashlib.sha256(digest).digest()
    return time.perf_counter() - wall, time.process_time() - cpu


# --- one client, one request at a time ----------------------------------------------------------


def sequential_routes(plan: dict, rng: random.Random) -> dict:
    """Route -> a function giving a path: the stylesheet (no session, no database: the anchor),
    every API read of the load mix, and the two pages most asked for."""
    codes, infusions = plan["subjects"], [i for _, i in plan["infusions"]]
    events = [i for _, i in plan["events"]]
    return {
        "GET /static/style.css (anchor)": lambda: "/static/style.css",
        "GET /api/v1/dashboard": lambda: "/api/v1/dashboard",
        "GET /api/v1/subjects/{code}": lambda: f"/api/v1/subjects/{rng.choice(codes)}",
        "GET /api/v1/subjects/{code}/infusions": (
            lambda: f"/api/v1/subjects/{rng.choice(codes)}/infusions"
        ),
        "GET /api/v1/subjects/{code}/adverse-events": (
            lambda: f"/api/v1/subjects/{rng.choice(codes)}/adverse-events"
        ),
        "GET /api/v1/subjects/{code}/signatures": (
            lambda: f"/api/v1/subjects/{rng.choice(codes)}/signatures"
        ),
        "GET /api/v1/infusions/{id}": lambda: f"/api/v1/infusions/{rng.choice(infusions)}",
        "GET /api/v1/adverse-events/{id}": lambda: f"/api/v1/adverse-events/{rng.choice(events)}",
        "GET /api/v1/queries": lambda: "/api/v1/queries?open_only=true",
        "GET /api/v1/audit/{table}/{id}": (
            lambda: f"/api/v1/audit/infusion/{rng.choice(infusions)}"
        ),
        "GET /subjects/{code} (page)": lambda: f"/subjects/{rng.choice(codes)}",
        "GET / (page)": lambda: "/",
    }


def run_sequential(servers: list[tuple[str, subprocess.Popen, str]], plan: dict, args) -> None:
    """One monitor per server reads each route ``--sequential`` times per pass, one request at a
    time, the servers in turn (``--passes``). Prints per route and server the p50/p95 latency
    and the server's CPU per request (median over the passes: a pass in which the analyses were
    made again, as each new minute does, is not the typical read)."""
    rng = random.Random(args.seed)
    routes = sequential_routes(plan, rng)
    clients = {}
    for label, _server, base in servers:
        client = httpx.Client(base_url=base, timeout=120)
        body = {"username": "monitor", "password": PASSWORD}
        signed = client.post("/api/v1/session", json=body)
        signed.raise_for_status()
        client.headers["Cookie"] = f"celltrial_session={_cookie(signed, 'celltrial_session')}"
        for code in plan["subjects"] + plan["new_subjects"]:  # views made, as after a warm-up
            client.get(f"/api/v1/subjects/{code}")
            client.get(f"/subjects/{code}")
        for make in routes.values():
            client.get(make())
        clients[label] = client
    walls = {(label, route): [] for label, *_ in servers for route in routes}
    cpus = {(label, route): [] for label, *_ in servers for route in routes}
    for _ in range(args.passes):
        for label, server, _base in servers:
            for route, make in routes.items():
                cpu = server_cpu_seconds(server.pid)
                for _ in range(args.sequential):
                    started = time.perf_counter()
                    response = clients[label].get(make())
                    walls[(label, route)].append(time.perf_counter() - started)
                    if response.status_code != 200:
                        raise SystemExit(f"{label} {route}: {response.status_code}")
                used = server_cpu_seconds(server.pid) - cpu
                cpus[(label, route)].append(used / args.sequential)
    for client in clients.values():
        client.close()
    labels = [label for label, *_ in servers]
    header = "".join(
        f"{label + ' ' + what:>14}" for label in labels for what in ("p50", "p95", "CPU")
    )
    print(f"{'one client, one request at a time':<44}{header}")
    for route in routes:
        cells = ""
        for label in labels:
            values, cpu = walls[(label, route)], cpus[(label, route)]
            cells += f"{1000 * statistics.median(values):>11.1f} ms"
            cells += f"{1000 * percentile(values, 95):>11.1f} ms"
            cells += f"{1000 * statistics.median(cpu):>11.1f} ms"
        print(f"{route:<44}{cells}")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def report(recorder: Recorder, duration: float, cpu: float) -> None:
    total = sum(len(recorder.latencies[c]) for c in CATEGORIES if c != "sign-in")
    print(f"measured {duration:.1f} s: {total} requests, {total / duration:.1f} requests/s")
    print(
        f"server CPU: {cpu:.1f} s = {cpu / duration:.2f} cores on average, "
        f"{1000 * cpu / max(total, 1):.0f} ms per request"
    )
    header = ("", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms")
    print(f"{header[0]:<10}" + "".join(f"{h:>10}" for h in header[1:]))
    for category in CATEGORIES:
        values = recorder.latencies.get(category, [])
        if not values:
            continue
        rate = "" if category == "sign-in" else f"{len(values) / duration:.1f}"
        cells = [str(len(values)), rate] + [
            f"{1000 * v:.1f}"
            for v in (
                statistics.median(values),
                percentile(values, 95),
                percentile(values, 99),
                max(values),
            )
        ]
        print(f"{category:<10}" + "".join(f"{c:>10}" for c in cells))
    slowest = sorted(
        ((percentile(v, 95), key, len(v)) for key, v in recorder.by_route.items()),
        reverse=True,
    )[:8]
    print(
        "slowest routes by p95: "
        + "; ".join(
            f"{route} ({category}, {n}) {1000 * p95:.0f} ms"
            for p95, (category, route), n in slowest
        )
    )
    errors = sum(recorder.errors.values())
    print(f"errors: {errors}")
    for (status, route), count in recorder.errors.most_common():
        print(f"  {count:>6}  {status}  {route}")
        if (status, route) in recorder.samples:
            print(f"          e.g. {recorder.samples[(status, route)]}")
    checks = [
        ("page p95 < 200 ms", recorder.latencies.get("page"), 0.200),
        ("API read p95 < 50 ms", recorder.latencies.get("api read"), 0.050),
    ]
    for label, values, limit in checks:
        if values:
            verdict = "met" if percentile(values, 95) < limit else "MISSED"
            print(f"target {label}: {verdict}")
    print(f"target no errors: {'met' if errors == 0 else 'MISSED'}")


def sequential(folder: Path, url: str, plan: dict, args) -> None:
    """The ``--sequential`` run: this checkout's server (and ``--before``'s), same study."""
    checkouts = [("now", None)]
    if args.before is not None:
        checkouts.append(("before", args.before.resolve() / "src"))
    servers, logs = [], []
    try:
        for label, source in checkouts:
            server, base, log = start_server(
                folder / label, folder / "study", url, 1, source=source
            )
            servers.append((label, server, base))
            logs.append(log)
        print(f"load average before: {load_average()}")
        before = anchor()
        run_sequential(servers, plan, args)
        after = anchor()
        print(f"load average after:  {load_average()}")
        print(
            "anchor (fixed workload, same run): "
            f"before {1000 * before[0]:.0f} ms wall / {1000 * before[1]:.0f} ms CPU, "
            f"after {1000 * after[0]:.0f} ms wall / {1000 * after[1]:.0f} ms CPU"
        )
    finally:
        for _label, server, _base in servers:
            server.terminate()
            server.wait(timeout=30)
        for log in logs:
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        default=os.environ.get("CELLTRIAL_TEST_POSTGRES_URL") or LOCAL_POSTGRES,
        help="PostgreSQL server URL of a role that may create databases",
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (celltrial serve: 1)"
    )
    parser.add_argument("--subjects", type=int, default=20, help="simulated subjects")
    parser.add_argument("--new-subjects", type=int, default=8, help="enrolled, no infusion yet")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between requests, s")
    parser.add_argument(
        "--write-share", type=float, default=0.1, help="share of writes for roles that write"
    )
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument(
        "--trace",
        type=Path,
        help="write every measured request (start, seconds, category, route, status) to this CSV",
    )
    parser.add_argument(
        "--sequential",
        type=int,
        default=0,
        metavar="N",
        help="instead of the load: one client reads each route N times per pass, one request at "
        "a time (latency and the server's CPU per request, beside the stylesheet as an anchor)",
    )
    parser.add_argument("--passes", type=int, default=3, help="passes of --sequential")
    parser.add_argument(
        "--before",
        type=Path,
        help="with --sequential: also a server of this checkout (its src folder is used), "
        "the two read in turn",
    )
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="measure from a cold server (figures and views not yet made)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with fresh_database(args.db, folder) as (url, backend):
            started = time.perf_counter()
            plan = build_study(
                folder / "study",
                url,
                subjects=args.subjects,
                new_subjects=args.new_subjects,
                seed=args.seed,
            )
            print(
                f"study on {backend}: {args.subjects} simulated subjects "
                f"({plan['observations']} observations, {len(plan['infusions'])} infusions, "
                f"{len(plan['events'])} adverse events) + {args.new_subjects} new; "
                f"set up in {time.perf_counter() - started:.1f} s"
            )
            if args.sequential:
                sequential(folder, url, plan, args)
                return
            server, base, log = start_server(folder, folder / "study", url, args.workers)
            try:
                print(
                    f"server: uvicorn, {args.workers} worker process(es) on {base}; "
                    f"{args.users} users, think time {args.think:g} s, "
                    f"write share {args.write_share:g} (writing roles), {args.seconds:g} s"
                )
                print(f"load average before: {load_average()}")
                before = anchor()
                recorder, duration, active, cpu = asyncio.run(
                    run_load(base, plan, args, server.pid)
                )
                after = anchor()
                print(f"load average after:  {load_average()}")
                print(
                    "anchor (fixed workload, same run): "
                    f"before {1000 * before[0]:.0f} ms wall / {1000 * before[1]:.0f} ms CPU, "
                    f"after {1000 * after[0]:.0f} ms wall / {1000 * after[1]:.0f} ms CPU"
                )
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                log.close()
            if active < args.users:
                print(f"only {active} of {args.users} users could sign in")
            report(recorder, duration, cpu)
            if args.trace:
                write_trace(recorder, args.trace)
            tail = (folder / "server.log").read_text().strip()
            if tail:
                print("server log (last lines):")
                print("\n".join(tail.splitlines()[-20:]))


if __name__ == "__main__":
    main()
