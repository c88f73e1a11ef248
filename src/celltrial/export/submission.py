"""``celltrial export``: a study's SDTM-like datasets (DM, EX, AE, LB, VS) into one folder.

Observations are read and written in chunks of whole subjects (memory stays bounded by a chunk,
not by the study); subjects, infusions and adverse events are small and read at once.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from celltrial.errors import CelltrialError
from celltrial.export.datasets import DatasetWriter
from celltrial.export.sdtm import (
    ExportContext,
    derive_ae,
    derive_dm,
    derive_ex,
    derive_findings,
    external_study_id,
    split_domains,
)
from celltrial.store.frames import OBSERVATION_CHUNK_ROWS as CHUNK_ROWS
from celltrial.store.frames import read_observation_chunks

FORMATS = {"csv": "csv", "dataset-json": "json"}


def export_sdtm(
    study: Any,
    out: str | Path,
    *,
    fmt: str = "csv",
    cohort: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> list[Path]:
    """Write the study's subjects (or external ``cohort``'s patients) as SDTM-like datasets into
    folder ``out``: dm, ex, ae, lb, vs (``.csv`` or Dataset-JSON ``.json``); an external cohort
    has no ex or ae. Returns the paths written. All or nothing: on an error no dataset is left.
    """
    from celltrial.efficacy.analysis import visit_table
    from celltrial.store import frames as store_frames

    if fmt not in FORMATS:
        raise CelltrialError(f"unknown export format {fmt!r}; expected csv or dataset-json")
    if cohort is not None:
        from celltrial.external.cohorts import choose_cohort

        choose_cohort(study, cohort)  # an unknown cohort is named as such
    protocol = study.protocol
    zone = protocol.study.zone
    engine, study_id = study.engine, study.study_id
    subjects = store_frames.read_subjects(engine, study_id, cohort=cohort)
    if subjects.empty:
        whose = f"external cohort {cohort!r}" if cohort else f"study {study_id}"
        raise CelltrialError(
            f"nothing to export: {whose} holds no subjects yet (register them with "
            "`celltrial import DIR FILE --register-subjects`, or run `celltrial demo`)"
        )
    subjects["subject_id"] = subjects["subject_id"].astype(str)
    infusions = store_frames.read_infusions(engine, study_id, cohort=cohort, zone=zone)
    if cohort is None:
        reference = store_frames.first_infusions(infusions)
        reference.index = reference.index.astype(str)
        context = ExportContext(
            study_id=study_id,
            zone=zone,
            reference=reference,
            visits=visit_table(protocol),
            treatment=protocol.product.name,
            route=protocol.regimen.route.upper(),
        )
    else:
        context = ExportContext(
            study_id=external_study_id(study_id, cohort),
            zone=zone,
            reference=subjects.set_index("subject_id")["admitted"].dropna(),
            treatment=protocol.product.name,
            external=True,
        )
    domains = ["DM", "LB", "VS"] if cohort is not None else ["DM", "EX", "AE", "LB", "VS"]
    folder = Path(out)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    writers: dict[str, DatasetWriter] = {}
    written: list[Path] = []
    try:
        for domain in domains:
            writers[domain] = DatasetWriter(
                folder / f"{domain.lower()}.{FORMATS[fmt]}",
                domain=domain,
                fmt=fmt,
                study_id=context.study_id,
            )
        writers["DM"].write(derive_dm(subjects, infusions, context=context))
        if "EX" in writers:
            writers["EX"].write(derive_ex(infusions, context=context))
        if "AE" in writers:
            events = store_frames.read_adverse_events(
                engine, study_id, zone=zone, first_infusion=context.reference
            )
            writers["AE"].write(derive_ae(events, context=context))
        for chunk in read_observation_chunks(
            engine, study_id, cohort=cohort, chunk_rows=chunk_rows
        ):
            for domain, rows in split_domains(chunk).items():
                writers[domain].write(derive_findings(rows, context=context, domain=domain))
        for domain in domains:
            written.append(writers[domain].close())
        return written
    except BaseException:
        for writer in writers.values():
            writer.abort()
        for path in written:
            path.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


#: The name of earlier releases.
export_observations = export_sdtm

__all__ = ["FORMATS", "export_observations", "export_sdtm"]
