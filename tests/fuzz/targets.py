"""Every reader of celltrial, each with its seed inputs, the edits it is fed and how it is run.

A :class:`Target` turns a hypothesis case into files in a folder and runs the reader on them
(through the import service for lab files, REDCap and FHIR, so that a refused import can be
checked for writes). ``CI`` targets use small inputs; ``slow`` ones (whole real files) are left
to ``scripts/fuzz_readers.py``.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import strategies as st

from tests.fuzz import binary, hostile, seeds
from tests.fuzz.binary import apply_byte_edits, byte_edits
from tests.fuzz.documents import (
    DocumentCase,
    document_cases,
    json_edits,
    render_json,
    render_yaml,
    yaml_edits,
)
from tests.fuzz.harness import Outcome, Probe, attempt, names_for
from tests.fuzz.paths import real
from tests.fuzz.tabular import TableCase, rarely, render_table, table_cases
from tests.store.backends import migrated_default_database

USER = "fuzzer"
COHORT = "fuzz"


@dataclass
class Context:
    """What a reader runs against: a study (for imports) and its row counts."""

    folder: Path
    study: object | None = None
    probe: Probe | None = None
    inputs: int = 0

    def new_folder(self) -> Path:
        self.inputs += 1
        return Path(tempfile.mkdtemp(prefix=f"input-{self.inputs}-", dir=self.folder))


@dataclass
class Target:
    """One reader: seeds (generated, real), how cases become files, how the reader runs."""

    name: str
    generated: dict[str, Callable[[], object]]
    real: dict[str, Callable[[], object]]
    cases: Callable[[list[str]], st.SearchStrategy]
    write: Callable[[object, object, Path], Path]  # (case, seed value, folder) → input path
    run: Callable[[Path, Context], object]
    study: str | None = None  # "labs" | "adverse events": the reader needs a study
    slow: bool = False
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    def seeds(self, *, real: bool) -> list[str]:
        """Names of the seeds there are (real ones only when the data set is present)."""
        pool = self.real if real else self.generated
        return [name for name, load in pool.items() if self.seed(name) is not None]

    def seed(self, name: str) -> object:
        if name not in self._cache:
            load = self.generated.get(name) or self.real[name]
            self._cache[name] = load()
        return self._cache[name]

    def strategy(self, *, real: bool) -> st.SearchStrategy | None:
        names = self.seeds(real=real)
        return self.cases(names) if names else None

    def context(self, folder: Path) -> Context:
        folder.mkdir(parents=True, exist_ok=True)
        if self.study is None:
            return Context(folder)
        from celltrial.study import init_study

        directory = Path(tempfile.mkdtemp(prefix="study-", dir=folder))
        migrated_default_database(directory)
        study = init_study(directory, user=USER)
        if self.study == "adverse events":
            _enrol(study, "S001", "S002")
        return Context(folder, study, Probe(study.engine))

    def attempt(self, case, context: Context) -> Outcome:
        folder = context.new_folder()
        try:
            path = self.write(case, self.seed(case_seed(case)), folder)
            return attempt(
                lambda: self.run(path, context), names=names_for(path), probe=context.probe
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def case_seed(case) -> str:
    return case[1].seed if isinstance(case, tuple) else case.seed


def _enrol(study, *codes: str) -> None:
    from celltrial.store.database import study_session
    from celltrial.store.models import Subject

    with study_session(study.engine, user=USER, reason="enrolment") as session:
        for code in codes:
            session.add(
                Subject(
                    study_id=study.study_id, code=code, enrolled_at=datetime(2020, 2, 1, tzinfo=UTC)
                )
            )


# --- runners -----------------------------------------------------------------------------------


def _import(path: Path, context: Context) -> object:
    from celltrial.ingest import import_file

    return import_file(context.study, path, register=True, cohort=COHORT, user=USER)


def _import_adverse_events(path: Path, context: Context) -> object:
    from celltrial.safety.recording import import_adverse_events
    from celltrial.store.database import study_session

    study = context.study
    with study_session(study.engine, user=USER, reason="fuzzed import") as session:
        return import_adverse_events(
            session, study.study_id, path, zone=study.protocol.study.timezone
        )


def _read_protocol(path: Path, _context: Context) -> object:
    from celltrial.protocol import read_protocol

    return read_protocol(path)


def _read_ct(path: Path, _context: Context) -> object:
    from celltrial.imaging.io import read_ct

    return read_ct(path)


# --- writers -----------------------------------------------------------------------------------


def _table_writer(file_name: str, *, workbook: bool):
    def write(case: TableCase, table, folder: Path) -> Path:
        path = folder / file_name
        path.write_bytes(render_table(case, table, workbook=workbook))
        return path

    return write


def _write_redcap(case: tuple[str, TableCase], project, folder: Path) -> Path:
    which, table_case = case
    dictionary, records = project
    out = folder / "project"
    out.mkdir()
    plain = TableCase(table_case.seed, ())
    for name, table in (("dictionary", dictionary), ("records", records)):
        chosen = table_case if name == which else plain
        file = "dictionary.csv" if name == "dictionary" else "data.csv"
        (out / file).write_bytes(render_table(chosen, table, workbook=False))
    return out


def _write_json(case: DocumentCase, document, folder: Path) -> Path:
    path = folder / "bundle.json"
    path.write_bytes(render_json(case, document))
    return path


def _write_yaml(case: DocumentCase, document, folder: Path) -> Path:
    path = folder / "protocol.yaml"
    path.write_bytes(render_yaml(case, document))
    return path


@dataclass(frozen=True)
class VolumeCase:
    """A NIfTI seed, header edits, whether it is gzip-compressed, damage to its bytes."""

    seed: str
    edits: tuple
    compressed: bool
    bytes_edits: tuple

    def __repr__(self) -> str:
        return (
            f"VolumeCase({self.seed}, {list(self.edits)}, "
            f"{'.nii.gz' if self.compressed else '.nii'}, {list(self.bytes_edits)})"
        )


def _volume_cases(names: list[str]) -> st.SearchStrategy:
    return st.builds(
        VolumeCase,
        st.sampled_from(names),
        st.lists(binary.nifti_edits(), max_size=3).map(tuple),
        st.booleans(),
        rarely(st.lists(byte_edits(), min_size=1, max_size=2).map(tuple), ()),
    )


def _write_volume(case: VolumeCase, data: bytes, folder: Path) -> Path:
    data = binary.edit_nifti(data, case.edits)
    if case.compressed:
        data = gzip.compress(data, mtime=0)
    path = folder / ("scan.nii.gz" if case.compressed else "scan.nii")
    path.write_bytes(apply_byte_edits(data, case.bytes_edits))
    return path


@dataclass(frozen=True)
class SeriesCase:
    """A DICOM series seed, attribute edits, and damage to the bytes of one of its files."""

    seed: str
    edits: tuple
    damaged: float
    bytes_edits: tuple

    def __repr__(self) -> str:
        return f"SeriesCase({self.seed}, {list(self.edits)}, {list(self.bytes_edits)})"


def _series_cases(names: list[str]) -> st.SearchStrategy:
    return st.builds(
        SeriesCase,
        st.sampled_from(names),
        st.lists(binary.dicom_edits(), max_size=3).map(tuple),
        st.floats(0, 1),
        rarely(st.lists(byte_edits(), min_size=1, max_size=2).map(tuple), ()),
    )


def _write_series(case: SeriesCase, files, folder: Path) -> Path:
    out = folder / "series"
    out.mkdir()
    written = binary.edit_dicom(list(files), case.edits)
    damaged = min(len(written) - 1, int(case.damaged * len(written)))
    for number, (name, data) in enumerate(written):
        if number == damaged:
            data = apply_byte_edits(data, case.bytes_edits)
        (out / name).write_bytes(data)
    return out


@dataclass(frozen=True)
class ImageCase:
    seed: str
    size: binary.PngSize | None
    bytes_edits: tuple

    def __repr__(self) -> str:
        return f"ImageCase({self.seed}, {self.size!r}, {list(self.bytes_edits)})"


def _image_cases(names: list[str]) -> st.SearchStrategy:
    return st.builds(
        ImageCase,
        st.sampled_from(names),
        rarely(binary.png_sizes(), None),
        st.lists(byte_edits(), max_size=2).map(tuple),
    )


def _write_image(case: ImageCase, data: bytes, folder: Path) -> Path:
    if case.size is not None:
        data = binary.set_png_size(data, case.size)
    path = folder / ("slice.jpg" if data[:2] == b"\xff\xd8" else "slice.png")
    path.write_bytes(apply_byte_edits(data, case.bytes_edits))
    return path


@dataclass(frozen=True)
class FileCase:
    """A whole real file with damaged bytes (slow: the file is read in full)."""

    seed: str
    bytes_edits: tuple

    def __repr__(self) -> str:
        return f"FileCase({self.seed}, {list(self.bytes_edits)})"


def _file_cases(names: list[str]) -> st.SearchStrategy:
    return st.builds(
        FileCase, st.sampled_from(names), st.lists(byte_edits(), min_size=1, max_size=2).map(tuple)
    )


def _file_writer(suffix: str):
    def write(case: FileCase, source: Path, folder: Path) -> Path:
        path = folder / f"file{suffix}"
        path.write_bytes(apply_byte_edits(source.read_bytes(), case.bytes_edits))
        return path

    return write


# --- the readers -------------------------------------------------------------------------------


def _text(table):
    return None if table is None else seeds._typed(table, typed=False)


_ae_values = st.one_of(
    hostile.text_values(),
    st.sampled_from(
        (
            "yes",
            "no",
            "y",
            "n",
            "TRUE",
            "0",
            "1",
            "5",
            "6",
            "1.0",
            "S001",
            "S003",
            "Fever",
            "possibly related",
            "2020-02-12 14:00",
            "",
        )
    ),
)
_redcap_values = st.one_of(hostile.text_values(), st.sampled_from(seeds.REDCAP_VALUES))

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "lab-long-csv",
            {"generated-long": lambda: seeds.long_table(typed=False)},
            {
                "tongji-en-long": lambda: _text(seeds.tongji_long("en")),
                "tongji-zh-long": lambda: _text(seeds.tongji_long("zh")),
            },
            lambda names: table_cases(names, workbook=False),
            _table_writer("labs.csv", workbook=False),
            _import,
            study="labs",
        ),
        Target(
            "lab-long-xlsx",
            {"generated-long": lambda: seeds.long_table(typed=True)},
            {"tongji-en-long": lambda: seeds.tongji_long("en")},
            lambda names: table_cases(names, workbook=True),
            _table_writer("labs.xlsx", workbook=True),
            _import,
            study="labs",
        ),
        Target(
            "lab-wide-csv",
            {"generated-wide": lambda: seeds.wide_table(typed=False)},
            {
                "tongji-en": lambda: _text(seeds.tongji_sample("en")),
                "olink-plasma": seeds.olink_sample,
            },
            lambda names: table_cases(names, workbook=False),
            _table_writer("labs.csv", workbook=False),
            _import,
            study="labs",
        ),
        Target(
            "lab-wide-xlsx",
            {"generated-wide": lambda: seeds.wide_table(typed=True)},
            {
                "tongji-en": lambda: seeds.tongji_sample("en"),
                "tongji-zh": lambda: seeds.tongji_sample("zh"),
            },
            lambda names: table_cases(names, workbook=True),
            _table_writer("labs.xlsx", workbook=True),
            _import,
            study="labs",
        ),
        Target(
            "redcap",
            {"generated-redcap": seeds.redcap_generated},
            {"redcap-longitudinal": seeds.redcap_real},
            lambda names: st.tuples(
                st.sampled_from(("dictionary", "records")),
                table_cases(names, workbook=False, values=_redcap_values),
            ),
            _write_redcap,
            _import,
            study="labs",
        ),
        Target(
            "fhir",
            {"generated-bundle": seeds.fhir_bundle, "generated-observation": seeds.fhir_single},
            {"synthea": seeds.synthea_bundle},
            lambda names: document_cases(names, json_edits()),
            _write_json,
            _import,
            study="labs",
        ),
        Target(
            "protocol",
            {"built-in": seeds.protocol_tree},
            {},
            lambda names: document_cases(names, yaml_edits()),
            _write_yaml,
            _read_protocol,
        ),
        Target(
            "adverse-events",
            {"generated-ae": seeds.adverse_event_table},
            {},
            lambda names: table_cases(names, workbook=False, values=_ae_values),
            _table_writer("adverse-events.csv", workbook=False),
            _import_adverse_events,
            study="adverse events",
        ),
        Target(
            "ct-nifti",
            {"generated-nifti": seeds.generated_nifti},
            {"medseg2d-slice": seeds.medseg_nifti},
            _volume_cases,
            _write_volume,
            _read_ct,
        ),
        Target(
            "ct-dicom",
            {"generated-series": seeds.generated_dicom},
            {"dicom-lungmask": seeds.lungmask_dicom},
            _series_cases,
            _write_series,
            _read_ct,
        ),
        Target(
            "ct-display",
            {
                name: (lambda n=name: seeds.generated_images()[n])
                for name in ("png-L", "png-RGB", "png-RGBA", "png-P", "png-I;16", "png-1")
            },
            {"infnet-jpeg": seeds.infnet_image},
            _image_cases,
            _write_image,
            _read_ct,
        ),
        # whole real files, damaged: each benign case reads the full file (seconds)
        Target(
            "lab-wide-xlsx-file",
            {},
            {
                "tongji-en-file": lambda: real("labs/tongji/time_series_375_prerpocess_en.xlsx"),
            },
            _file_cases,
            _file_writer(".xlsx"),
            _import,
            study="labs",
            slow=True,
        ),
        Target(
            "ct-nifti-file",
            {},
            {"totalseg-chest-crop": lambda: real("ct/totalseg-examples/chest_crop.nii.gz")},
            _file_cases,
            _file_writer(".nii.gz"),
            _read_ct,
            slow=True,
        ),
    )
}
