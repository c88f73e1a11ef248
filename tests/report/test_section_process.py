"""The report's sections built in a process started early (``celltrial demo``) are those a serial
run builds, byte for byte; its failures reach the caller; unasked, it ends at once."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time

import pytest

from celltrial.errors import CelltrialError
from celltrial.overview import summarize_study
from celltrial.report import sections as report_sections
from celltrial.report.sections import (
    ReportContext,
    SectionProcess,
    build_sections,
    start_section_process,
)
from celltrial.store import unreadable_times
from celltrial.study import read_study_frames

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork"
)


def _built(demo, make) -> tuple:
    frames = read_study_frames(demo.study)
    overview = summarize_study(demo.study.protocol, frames, today=demo.overview.today)
    context = ReportContext(study=demo.study, frames=frames, overview=overview, profiles="listings")
    context.tables.listings_file = "r-listings.html"
    context.tables.count, context.figures.count = 10, 3  # as if the core report came first
    sections = make(context)
    return (
        [(s.id, s.title, type(s.html), str(s.html), s.methods) for s in sections],
        context.tables.count,
        context.figures.count,
        [str(listing) for listing in context.tables.listings],
    )


def _in_process(context: ReportContext, meanwhile=None) -> list:
    with SectionProcess(workers=2) as process:
        return process.build(context, meanwhile=meanwhile)


def test_sections_from_the_process_equal_a_serial_run(demo):
    called = []
    serial = _built(
        demo,
        lambda context: build_sections(
            context, workers=1, meanwhile=lambda: called.append("serial")
        ),
    )
    early = _built(demo, lambda context: _in_process(context, lambda: called.append("process")))
    assert early == serial
    assert called == ["process"]  # once while the process builds; a serial run has no meanwhile
    assert [s[0] for s in serial[0]][:2] == ["safety", "efficacy"]
    assert serial[3]  # the profiles went to the listings, numbered on as in the body


def failing_builder(_context: ReportContext) -> None:
    raise CelltrialError("no efficacy without markers")


def test_a_builder_failure_is_raised_in_the_caller(demo, monkeypatch):
    monkeypatch.setattr(
        report_sections,
        "SECTION_BUILDERS",
        (*report_sections.SECTION_BUILDERS, "tests.report.test_section_process:failing_builder"),
    )
    with pytest.raises(CelltrialError, match="no efficacy without markers"):
        _built(demo, _in_process)


def test_an_unasked_process_ends_at_once():
    started = time.perf_counter()
    process = SectionProcess(workers=2)
    process.close()
    assert not process._process.is_alive()
    assert time.perf_counter() - started < 5


def test_no_process_for_a_database_in_memory(tmp_path):
    assert start_section_process("sqlite://", workers=2) is None
    assert start_section_process("sqlite:///:memory:", workers=2) is None
    assert start_section_process("sqlite://", workers=1) is None
    process = start_section_process(f"sqlite:///{tmp_path / 'x.db'}", workers=2)
    assert isinstance(process, SectionProcess)
    process.close()


def test_the_process_imports_no_orm_and_no_templates():
    """What the demo imports before it starts the process, and the builders the process
    imports, leave out what only the command's own process needs (the ORM, Jinja2, Alembic)."""
    probe = (
        "import json, sys\n"
        "import celltrial.cli, celltrial.demo\n"
        "from celltrial.report import sections\n"
        "for spec in sections.SECTION_BUILDERS:\n"
        "    sections._builder(spec)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    names = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "celltrial.efficacy.section" in names
    assert not {"sqlalchemy.orm", "celltrial.store.models", "jinja2", "alembic"} & names


def noting_builder(_context: ReportContext) -> None:
    """A builder that meets a stored time it cannot read (as one reading an external cohort
    from the database would) and has nothing to show."""
    unreadable_times.note_unreadable_time("0000-12-31 16:00:00")


@pytest.mark.parametrize("where", ["workers", "process"])
def test_unreadable_times_met_by_a_builder_reach_the_report(demo, monkeypatch, where):
    """The report's data-quality section and the command's warnings name every unreadable time
    met while the sections were built, in whichever process a builder ran."""
    monkeypatch.setattr(
        report_sections,
        "SECTION_BUILDERS",
        (*report_sections.SECTION_BUILDERS, "tests.report.test_section_process:noting_builder"),
    )
    unreadable_times.forget_unreadable_times()
    try:
        make = _in_process if where == "process" else lambda c: build_sections(c, workers=2)
        _built(demo, make)
        assert unreadable_times.noted_texts() == {"0000-12-31 16:00:00"}
    finally:
        unreadable_times.forget_unreadable_times()
