"""``celltrial demo``: a whole study from the built-in protocol and a simulated cohort."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from celltrial.cohort import simulate
from celltrial.errors import StudyError
from celltrial.overview import StudyOverview, summarize_study
from celltrial.report.sections import SectionProcess, start_section_process
from celltrial.store.database import database_url
from celltrial.study import StudyHandle, init_study, read_study_frames

DEMO_USER = "celltrial-demo"
#: Marks a directory made by the demo: only such a directory may be replaced with ``force``.
DEMO_MARKER = ".celltrial-demo"
#: The demo's steps, in order, for progress display.
DEMO_STEPS = (
    "create study",
    "simulate cohort",
    "load database",
    "quantify chest CT",
    "analyse",
    "write report",
)


@dataclass(frozen=True)
class DemoResult:
    study: StudyHandle
    overview: StudyOverview
    report: Path


def run_demo(
    out: str | Path,
    *,
    n_subjects: int = 5,
    seed: int = 2020,
    protocol: str | Path | None = None,
    db_url: str | None = None,
    force: bool = False,
    on_step: Callable[[str], None] = lambda _step: None,
) -> DemoResult:
    """Create a study in ``out``, load a simulated cohort, analyse it and write its report.

    ``on_step`` is called with each step's name before it starts (for progress display).
    """
    out = Path(out)
    if n_subjects < 1:
        raise StudyError(f"--subjects must be at least 1 (got {n_subjects})")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise StudyError(
                f"{out} exists and is not empty; choose another --out or add --force to replace "
                "a previous demo"
            )
        if not (out / DEMO_MARKER).exists():
            raise StudyError(
                f"{out} was not made by `celltrial demo`; --force only replaces a demo study"
            )
        shutil.rmtree(out)
    # the report's analysis libraries are imported in another process meanwhile (two cores)
    with start_section_process(database_url(out, db_url)) or nullcontext() as sections:
        return _run_demo(out, n_subjects, seed, protocol, db_url, on_step, sections)


def _run_demo(
    out: Path,
    n_subjects: int,
    seed: int,
    protocol: str | Path | None,
    db_url: str | None,
    on_step: Callable[[str], None],
    sections: SectionProcess | None,
) -> DemoResult:
    # imported after the section process started: that process does not need them
    from celltrial.report import write_report
    from celltrial.store.database import study_session
    from celltrial.store.loading import load_simulated_cohort

    on_step(DEMO_STEPS[0])
    study = init_study(out, protocol=protocol, db_url=db_url, user=DEMO_USER)
    (out / DEMO_MARKER).write_text(
        "made by celltrial demo; `celltrial demo --force` may replace it\n"
    )
    on_step(DEMO_STEPS[1])
    cohort = simulate(study.protocol, n_subjects, seed=seed)
    on_step(DEMO_STEPS[2])
    with study_session(study.engine, user=DEMO_USER, reason="demo: simulated cohort") as session:
        load_simulated_cohort(session, study.study_id, cohort)
    on_step(DEMO_STEPS[3])
    # phantom scans at the cohort's CT visits, quantified and stored like real scans
    from celltrial.imaging.demo import add_demo_scans

    add_demo_scans(study, cohort, user=DEMO_USER, seed=seed)
    on_step(DEMO_STEPS[4])
    frames = read_study_frames(study)
    overview = summarize_study(study.protocol, frames)
    on_step(DEMO_STEPS[5])
    report = write_report(study, frames=frames, overview=overview, section_process=sections)[0]
    return DemoResult(study=study, overview=overview, report=report)
