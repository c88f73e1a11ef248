"""Every reader, fed damaged versions of small made-up files and of the real data sets: a clean
import or a celltrial error naming the file, never another exception, never a hang, and never a
partial write (a refused import leaves the study's subjects, observations, adverse events,
import batches and audit log as they were).

Deterministic (``derandomize``) and bounded: about a minute in all. More examples, and the whole
real files, with ``python scripts/fuzz_readers.py --examples N``. ``CELLTRIAL_FUZZ_SCALE=3``
runs three times as many examples here.
"""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzz.harness import CLEAN, CRASH, USER_ERROR, Probe, attempt
from tests.fuzz.paths import SHARED_DATA
from tests.fuzz.targets import TARGETS, Context, Target

SCALE = float(os.environ.get("CELLTRIAL_FUZZ_SCALE", "1"))

#: Libraries warn about the damage they meet (extra frames, a header value they repair).
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

#: Examples per reader: (made-up seeds, real seeds). Sized so that the suite stays near a minute.
EXAMPLES = {
    "lab-long-csv": (45, 25),
    "lab-long-xlsx": (30, 15),
    "lab-wide-csv": (45, 25),
    "lab-wide-xlsx": (30, 15),
    "redcap": (50, 20),
    "fhir": (80, 40),
    "protocol": (80, 0),
    "adverse-events": (120, 0),
    "ct-nifti": (150, 100),
    "ct-dicom": (150, 100),
    "ct-display": (150, 100),
}


@pytest.fixture(autouse=True)
def _quiet_nibabel():
    """nibabel logs each header value it repairs; the fuzzed headers would flood the output."""
    logger = logging.getLogger("nibabel")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def fuzz(target: Target, *, real: bool, examples: int, folder) -> None:
    strategy = target.strategy(real=real)
    if strategy is None:
        pytest.skip(
            f"real data set absent: {SHARED_DATA} (see shared/data/README.md)"
            if real
            else f"{target.name}: no seeds"
        )
    context: Context = target.context(folder)

    @settings(
        max_examples=max(1, round(examples * SCALE)),
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case) -> None:
        outcome = target.attempt(case, context)
        assert outcome.ok, f"{target.name}: {outcome.kind}: {outcome.detail}"

    check()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_made_up_files(name, tmp_path):
    fuzz(TARGETS[name], real=False, examples=EXAMPLES[name][0], folder=tmp_path)


@pytest.mark.parametrize("name", sorted(n for n, (_, real) in EXAMPLES.items() if real))
def test_real_files(name, tmp_path):
    fuzz(TARGETS[name], real=True, examples=EXAMPLES[name][1], folder=tmp_path)


def test_every_reader_is_fuzzed():
    assert set(EXAMPLES) == {name for name, target in TARGETS.items() if not target.slow}


# --- the harness finds what it is there to find ------------------------------------------------


def test_harness_tells_a_crash_from_a_user_error(tmp_path):
    from celltrial.errors import DataError

    path = tmp_path / "labs.csv"

    def crash():
        raise KeyError("subject")

    def refuse():
        raise DataError(f"{path}: row 2, column time: '08:00' — expected a date")

    def vague():
        raise DataError("something is wrong")

    names = [path.name]
    assert attempt(crash, names=names).kind == CRASH
    assert attempt(crash, names=names).detail.startswith("KeyError at ")
    refused = attempt(refuse, names=names)
    assert refused.kind == USER_ERROR and "row 2, column time" in refused.detail
    assert attempt(vague, names=names).kind == "message without the file"
    assert attempt(lambda: None, names=names).kind == CLEAN


def test_harness_finds_a_partial_write_and_a_hang(tmp_path):
    from celltrial.errors import DataError
    from celltrial.store.database import study_session
    from celltrial.store.models import Subject
    from celltrial.study import init_study

    study = init_study(tmp_path / "study", user="fuzzer")
    probe = Probe(study.engine)

    def half_written():
        with study_session(study.engine, user="fuzzer", reason="test") as session:
            session.add(Subject(study_id=study.study_id, code="S9"))
        raise DataError("labs.csv: refused after writing")

    assert attempt(half_written, names=["labs.csv"], probe=probe).kind == "partial write"

    def hang():
        while True:
            pass

    assert attempt(hang, names=["x"], limit=0.2).kind == "too slow"
