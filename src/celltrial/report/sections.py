"""How analyses add sections to the report.

A section builder takes the :class:`ReportContext` and returns a :class:`Section` (or None when it
has nothing to show, e.g. no CT scans yet). Builders are listed in :data:`SECTION_BUILDERS` in
report order; tables and figures are numbered through the shared counters.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import import_module

from markupsafe import Markup

from celltrial.overview import StudyOverview
from celltrial.report.tables import TableCounter
from celltrial.study import StudyFrames, StudyHandle


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


def build_sections(context: ReportContext, *, workers: int | None = None) -> list[Section]:
    """Run every registered builder; sections that return None are left out.

    Builders are independent, so on a machine with several cores they run in forked worker
    processes (the context is inherited, not copied through pickling); their tables and figures
    are then numbered on in report order, exactly as a serial run numbers them.

    The builders' modules (statsmodels, scipy, matplotlib…) are imported once, before the fork,
    and the objects alive then are frozen for the garbage collector (``gc.freeze``): a worker
    neither imports them again nor copies the parent's memory by traversing it. Measured on the
    5-subject demo (CPU seconds, the process and its workers), this makes the workers cost no
    more than a serial run (5.7 against 6.3; 7.5–8.1 without), so they are used at any size.
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
            built = dict(zip(order, pool.map(_build_in_worker, order), strict=True))
    finally:
        _FORKED = None
        if ours:
            gc.unfreeze()
    sections = []
    for spec in SECTION_BUILDERS:  # numbered in report order
        section, n_tables, n_figures, listings = built[spec]
        offsets = (context.tables.count, context.figures.count)
        if section is not None:
            sections.append(replace(section, html=_renumber(section.html, *offsets)))
        context.tables.listings += [_renumber(html, *offsets) for html in listings]
        context.tables.count += n_tables
        context.figures.count += n_figures
    return sections


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


def _build_in_worker(spec: str) -> tuple[Section | None, int, int, list[Markup]]:
    assert _FORKED is not None
    local = ReportContext(
        study=_FORKED.study,
        frames=_FORKED.frames,
        overview=_FORKED.overview,
        tables=TableCounter(listings_file=_FORKED.tables.listings_file),
        profiles=_FORKED.profiles,
    )
    section = _builder(spec)(local)
    return section, local.tables.count, local.figures.count, local.tables.listings


def _renumber(html: Markup, table_offset: int, figure_offset: int) -> Markup:
    """Shift the numbers of a section's table and figure captions by the ones before it."""

    def shift(match: re.Match[str]) -> str:
        figure = match.group(1) in ("<figcaption>Figure ", 'id="figure-')
        offset = figure_offset if figure else table_offset
        return f"{match.group(1)}{int(match.group(2)) + offset}"

    return Markup(_CAPTION.sub(shift, str(html)))
