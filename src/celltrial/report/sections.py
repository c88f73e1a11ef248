"""How analyses add sections to the report.

A section builder takes the :class:`ReportContext` and returns a :class:`Section` (or None when it
has nothing to show, e.g. no CT scans yet). Builders are listed in :data:`SECTION_BUILDERS` in
report order; tables and figures are numbered through the shared counters.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import import_module
from typing import TYPE_CHECKING

from markupsafe import Markup

from celltrial.overview import StudyOverview
from celltrial.report.tables import TableCounter
from celltrial.store.unreadable_times import note_texts, noted_texts
from celltrial.study import StudyFrames, StudyHandle

if TYPE_CHECKING:
    from multiprocessing.connection import Connection


@dataclass(frozen=True)
class Section:
    """One report section: anchor id, title and its HTML body (tables, figures, text)."""

    id: str
    title: str
    html: Markup
    #: Methods text this section contributes to the report's methods section.
    methods: tuple[str, ...] = ()


@dataclass
class ReportContext:
    """Everything a section builder may use; counters number tables and figures report-wide."""

    study: StudyHandle
    frames: StudyFrames
    overview: StudyOverview
    tables: TableCounter = field(default_factory=TableCounter)
    figures: TableCounter = field(default_factory=TableCounter)
    #: Where the subject profiles go: "body", "listings" (the listings file) or "none".
    profiles: str = "body"
    #: Seconds each section builder took (serial runs), for the progress display.
    timings: dict[str, float] = field(default_factory=dict)


SectionBuilder = Callable[[ReportContext], "Section | None"]

#: "module:function" of each section builder, in report order (after deviations).
SECTION_BUILDERS: tuple[str, ...] = (
    "celltrial.safety.section:build_safety_section",
    "celltrial.efficacy.section:build_efficacy_section",
    "celltrial.imaging.section:build_ct_section",
    "celltrial.external.section:build_external_section",
    "celltrial.report.profiles:build_profiles_section",
)


#: The builders from the longest to the shortest (CPU seconds of the 5-subject demo: efficacy
#: 2.0, profiles 1.1, CT 1.1, safety 0.3, external 0.0): handed to the workers in this order, the
#: two workers end at about the same time.
LONGEST_FIRST: tuple[str, ...] = (
    "celltrial.efficacy.section:build_efficacy_section",
    "celltrial.report.profiles:build_profiles_section",
    "celltrial.imaging.section:build_ct_section",
    "celltrial.safety.section:build_safety_section",
    "celltrial.external.section:build_external_section",
)


def build_sections(
    context: ReportContext,
    *,
    workers: int | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> list[Section]:
    """Run every registered builder; sections that return None are left out.

    Builders are independent, so on a machine with several cores they run in forked worker
    processes (the context is inherited, not copied through pickling); their tables and figures
    are then numbered on in report order, exactly as a serial run numbers them.

    The builders' modules (statsmodels, scipy, matplotlib…) are imported once, before the fork,
    and the objects alive then are frozen for the garbage collector (``gc.freeze``): a worker
    neither imports them again nor copies the parent's memory by traversing it. Measured on the
    5-subject demo (CPU seconds, the process and its workers), this makes the workers cost no
    more than a serial run (5.7 against 6.3; 7.5–8.1 without), so they are used at any size.

    ``meanwhile`` is called in this process while the workers build (not at all in a serial run).
    """
    workers = min(workers or os.cpu_count() or 1, len(SECTION_BUILDERS))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [s for s in (_build(spec, context) for spec in SECTION_BUILDERS) if s]
    for spec in SECTION_BUILDERS:
        _builder(spec)  # imported here, once for every worker
    order = [s for s in LONGEST_FIRST if s in SECTION_BUILDERS]
    order += [s for s in SECTION_BUILDERS if s not in order]
    global _FORKED
    _FORKED = context
    ours = gc.get_freeze_count() == 0  # (objects frozen by someone else stay frozen)
    if ours:
        gc.freeze()
    try:
        fork = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=fork, initializer=_fresh_connections) as pool:
            answers = pool.map(_build_in_worker, order)  # (every builder is handed out now)
            if meanwhile is not None:
                meanwhile()
            built = dict(zip(order, answers, strict=True))
    finally:
        _FORKED = None
        if ours:
            gc.unfreeze()
    sections = []
    for spec in SECTION_BUILDERS:  # numbered in report order
        section, n_tables, n_figures, listings, noted = built[spec]
        note_texts(noted)  # unreadable stored times a worker met, said as if met here
        offsets = (context.tables.count, context.figures.count)
        if section is not None:
            sections.append(replace(section, html=_renumber(section.html, *offsets)))
        context.tables.listings += [_renumber(html, *offsets) for html in listings]
        context.tables.count += n_tables
        context.figures.count += n_figures
    return sections


class SectionProcess:
    """A process forked early that imports the section builders' libraries (statsmodels, SciPy,
    Matplotlib: about a second) while its parent does other work, then builds the sections of
    the one context it is given, exactly as :func:`build_sections` does in the parent.

    ``celltrial demo`` starts one before it creates the study, so that on two cores the imports
    overlap creating, loading and quantifying the study instead of delaying the report. The
    context is sent pickled (frames and overview; the study's database is opened again by URL)
    and the sections come back pickled. Start it with :func:`start_section_process`; close it
    (a context manager) whether or not it built anything.
    """

    def __init__(self, workers: int | None = None) -> None:
        fork = multiprocessing.get_context("fork")
        self._connection, theirs = fork.Pipe()
        self._process = fork.Process(target=_serve, args=(theirs, workers), daemon=False)
        # frozen for the fork: the process's collections (its imports make many) skip the
        # objects it shares with this one instead of copying their memory by traversing them
        ours = gc.get_freeze_count() == 0
        if ours:
            gc.freeze()
        try:
            self._process.start()
        finally:
            if ours:
                gc.unfreeze()
        theirs.close()
        self._asked = False

    def build(
        self, context: ReportContext, *, meanwhile: Callable[[], None] | None = None
    ) -> list[Section]:
        """The sections of ``context`` (numbered on from its counters, which are advanced);
        ``meanwhile`` is called here while the process builds them."""
        if self._asked:
            raise RuntimeError("a section process builds one report's sections")
        self._asked = True
        study = context.study
        self._connection.send(
            (
                study.directory,
                study.protocol,
                study.url,
                context.frames,
                context.overview,
                context.tables,
                context.figures,
                context.profiles,
            )
        )
        if meanwhile is not None:
            meanwhile()
        try:
            answer = self._connection.recv()
        except EOFError:
            raise RuntimeError("the report's section process ended without its sections") from None
        if answer[0] == "error":
            raise answer[1]
        _, sections, tables, figures, noted = answer
        note_texts(noted)  # unreadable stored times met there, said as if met here
        context.tables.count, context.tables.listings = tables.count, tables.listings
        context.figures.count = figures.count
        return sections

    def close(self) -> None:
        """End the process: at once if it was never asked (it only imported), else when done."""
        if not self._asked and self._process.is_alive():
            self._process.terminate()
        self._connection.close()
        self._process.join(timeout=10)
        if self._process.is_alive():  # (its parent was interrupted while it built)
            self._process.terminate()
            self._process.join()

    def __enter__(self) -> SectionProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def start_section_process(url: str, *, workers: int | None = None) -> SectionProcess | None:
    """A :class:`SectionProcess` for a study whose database is at ``url``, or None where
    :func:`build_sections` would not use workers (one core, no fork) or another process could
    not open the database (SQLite in memory)."""
    from sqlalchemy.engine import make_url

    workers = min(workers or os.cpu_count() or 1, len(SECTION_BUILDERS))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        return None
    return SectionProcess(workers)


def _serve(connection: Connection, workers: int | None) -> None:
    """The section process: import the builders, then build the sections of one context."""
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):  # parent gone/stopped
        connection.send(_answer(connection, workers))


def _answer(connection: Connection, workers: int | None) -> tuple[object, ...]:
    from celltrial.store.database import open_engine

    failure: Exception | None = None
    try:
        for spec in SECTION_BUILDERS:
            _builder(spec)
    except Exception as exc:  # said when the sections are asked for, as a serial run would
        failure = exc
    directory, protocol, url, frames, overview, tables, figures, profiles = connection.recv()
    try:
        if failure is not None:
            raise failure
        engine = open_engine(url)
        try:
            study = StudyHandle(directory=directory, protocol=protocol, engine=engine, url=url)
            context = ReportContext(
                study=study,
                frames=frames,
                overview=overview,
                tables=tables,
                figures=figures,
                profiles=profiles,
            )
            gc.freeze()  # (as build_sections does; this process's objects were frozen in part)
            sections = build_sections(context, workers=workers)
        finally:
            engine.dispose()
    except Exception as exc:
        try:  # the parent raises it as it is when it can be rebuilt there
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        return ("error", exc)
    return ("ok", sections, context.tables, context.figures, noted_texts())


_FORKED: ReportContext | None = None
#: Where a table's or figure's number is written: captions, listing references and anchors.
_CAPTION = re.compile(
    r"(<caption>Table |<figcaption>Figure |<strong>Table |"
    r'id="table-|#table-|id="figure-)(\d+)(?=[."])'
)


def _builder(spec: str) -> SectionBuilder:
    module, _, name = spec.partition(":")
    return getattr(import_module(module), name)


def _build(spec: str, context: ReportContext) -> Section | None:
    """Run one builder (the stage is timed for the progress display)."""
    started = time.perf_counter()
    section = _builder(spec)(context)
    context.timings[spec.rpartition(":")[2]] = time.perf_counter() - started
    return section


def _fresh_connections() -> None:
    """A forked worker must not share the parent's database connections."""
    if _FORKED is not None:
        _FORKED.study.engine.dispose(close=False)


def _build_in_worker(
    spec: str,
) -> tuple[Section | None, int, int, list[Markup], frozenset[str]]:
    assert _FORKED is not None
    local = ReportContext(
        study=_FORKED.study,
        frames=_FORKED.frames,
        overview=_FORKED.overview,
        tables=TableCounter(listings_file=_FORKED.tables.listings_file),
        profiles=_FORKED.profiles,
    )
    section = _builder(spec)(local)
    listings = local.tables.listings
    return section, local.tables.count, local.figures.count, listings, noted_texts()


def _renumber(html: Markup, table_offset: int, figure_offset: int) -> Markup:
    """Shift the numbers of a section's table and figure captions by the ones before it."""

    def shift(match: re.Match[str]) -> str:
        figure = match.group(1) in ("<figcaption>Figure ", 'id="figure-')
        offset = figure_offset if figure else table_offset
        return f"{match.group(1)}{int(match.group(2)) + offset}"

    return Markup(_CAPTION.sub(shift, str(html)))
