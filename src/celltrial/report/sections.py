"""How analyses add sections to the report.

A section builder takes the :class:`ReportContext` and returns a :class:`Section` (or None when it
has nothing to show, e.g. no CT scans yet). Builders are listed in :data:`SECTION_BUILDERS` in
report order; tables and figures are numbered through the shared counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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


SectionBuilder = Callable[[ReportContext], "Section | None"]

#: "module:function" of each section builder, in report order (after deviations).
SECTION_BUILDERS: tuple[str, ...] = (
    "celltrial.safety.section:build_safety_section",
    "celltrial.efficacy.section:build_efficacy_section",
    "celltrial.imaging.section:build_ct_section",
    "celltrial.external.section:build_external_section",
    "celltrial.report.profiles:build_profiles_section",
)


def build_sections(context: ReportContext) -> list[Section]:
    """Run every registered builder; sections that return None are left out."""
    sections = []
    for spec in SECTION_BUILDERS:
        module, _, name = spec.partition(":")
        builder: SectionBuilder = getattr(import_module(module), name)
        section = builder(context)
        if section is not None:
            sections.append(section)
    return sections
