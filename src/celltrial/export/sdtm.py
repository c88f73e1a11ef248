"""Observations as CDISC SDTM-like LB (laboratory) and VS (vital signs) datasets.

One row per result. ``--ORRES``/``--ORRESU`` keep the value and unit as received;
``--STRESC``/``--STRESN``/``--STRESU`` the canonical (converted) value; a value at a reporting
limit keeps its qualifier in ``--STRESC`` ("<0.5") and has no ``--STRESN`` (SDTM convention).
``--DY`` is the SDTM study day (day 1 = day of first infusion; no day 0), ``--DTC`` ISO 8601
in UTC. Written as CSV or as CDISC Dataset-JSON v1.1.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from celltrial import __version__
from celltrial.catalogue import load_catalogue
from celltrial.errors import CelltrialError

DOMAINS = {"LB": "Laboratory Test Results", "VS": "Vital Signs"}
#: (suffix, label, data type) of each variable after STUDYID, DOMAIN, USUBJID.
_VARIABLES = (
    ("SEQ", "Sequence Number", "integer"),
    ("TESTCD", "Test Short Name", "string"),
    ("TEST", "Test Name", "string"),
    ("CAT", "Category", "string"),
    ("ORRES", "Result or Finding in Original Units", "string"),
    ("ORRESU", "Original Units", "string"),
    ("ORNRLO", "Reference Range Lower Limit in Orig Unit", "string"),
    ("ORNRHI", "Reference Range Upper Limit in Orig Unit", "string"),
    ("STRESC", "Character Result/Finding in Std Format", "string"),
    ("STRESN", "Numeric Result/Finding in Standard Units", "double"),
    ("STRESU", "Standard Units", "string"),
    ("SPEC", "Specimen Type", "string"),
    ("LOINC", "LOINC Code", "string"),
    ("DTC", "Date/Time of Specimen Collection", "datetime"),
    ("DY", "Study Day of Specimen Collection", "integer"),
)


def derive_sdtm(observations: pd.DataFrame, *, study_id: str, domain: str) -> pd.DataFrame:
    """The LB or VS dataset of ``observations`` (frame of :func:`celltrial.frames` shape:
    subject_id, time, study_day, test, value, unit, raw_value, raw_unit, qualifier, ref_low,
    ref_high, specimen). Vital signs (catalogue category ``vital``) go to VS, the rest to LB."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {', '.join(DOMAINS)}, not {domain!r}")
    catalogue = {t.code: t for t in load_catalogue().tests}
    vital = observations["test"].isin([c for c, t in catalogue.items() if t.category == "vital"])
    frame = observations[vital if domain == "VS" else ~vital]
    frame = frame.sort_values(["subject_id", "time", "test"], kind="stable")
    definition = frame["test"].map(catalogue)
    qualifier = frame["qualifier"].fillna("").astype(str)
    number = frame["value"].map(lambda v: "" if pd.isna(v) else f"{v:.10g}")
    day = frame["study_day"] if "study_day" in frame else pd.Series(np.nan, index=frame.index)
    day = pd.to_numeric(day, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    sdtm_day = np.where(day >= 0, np.floor(day) + 1, np.floor(day))
    d = domain
    out = pd.DataFrame(
        {
            "STUDYID": study_id,
            "DOMAIN": d,
            "USUBJID": study_id + "-" + frame["subject_id"].astype(str),
            f"{d}SEQ": frame.groupby("subject_id").cumcount() + 1,
            f"{d}TESTCD": frame["test"],
            f"{d}TEST": definition.map(lambda t: t.name if t is not None else ""),
            f"{d}CAT": definition.map(lambda t: t.category.upper() if t is not None else ""),
            f"{d}ORRES": frame["raw_value"].fillna(qualifier + number),
            f"{d}ORRESU": frame["raw_unit"].fillna(""),
            f"{d}ORNRLO": frame["ref_low"].map(lambda v: "" if pd.isna(v) else f"{v:.10g}"),
            f"{d}ORNRHI": frame["ref_high"].map(lambda v: "" if pd.isna(v) else f"{v:.10g}"),
            f"{d}STRESC": qualifier + number,
            f"{d}STRESN": frame["value"].where(qualifier == ""),
            f"{d}STRESU": frame["unit"].fillna(""),
            f"{d}SPEC": frame["specimen"].fillna("").astype(str).str.upper(),
            f"{d}LOINC": definition.map(lambda t: (t.loinc or "") if t is not None else ""),
            f"{d}DTC": pd.to_datetime(frame["time"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S"),
            f"{d}DY": pd.array(np.where(np.isnan(sdtm_day), pd.NA, sdtm_day), dtype="Int64"),
        }
    )
    return out.reset_index(drop=True)


def write_dataset_json(
    dataset: pd.DataFrame, path: str | Path, *, study_id: str, domain: str
) -> Path:
    """``dataset`` as CDISC Dataset-JSON v1.1 (JSON: metadata, ``columns``, ``rows``)."""
    path = Path(path)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    columns = []
    for name in dataset.columns:
        suffix = name[len(domain) :] if name.startswith(domain) and name != "DOMAIN" else None
        label, kind = next(
            ((lab, typ) for suf, lab, typ in _VARIABLES if suf == suffix),
            {
                "STUDYID": ("Study Identifier", "string"),
                "DOMAIN": ("Domain Abbreviation", "string"),
                "USUBJID": ("Unique Subject Identifier", "string"),
            }.get(name, (name, "string")),
        )
        column: dict[str, Any] = {
            "itemOID": f"IT.{domain}.{name}",
            "name": name,
            "label": label,
            "dataType": kind,
        }
        if kind == "string":
            column["length"] = int(max(1, dataset[name].astype(str).str.len().max() or 1))
        if kind == "datetime":
            column["targetDataType"] = "string"
        if name in ("STUDYID", "USUBJID", f"{domain}SEQ"):
            column["keySequence"] = ("STUDYID", "USUBJID", f"{domain}SEQ").index(name) + 1
        columns.append(column)
    rows = [
        [None if _missing(v) else _json_value(v) for v in record]
        for record in dataset.itertuples(index=False, name=None)
    ]
    document = {
        "datasetJSONCreationDateTime": now,
        "datasetJSONVersion": "1.1.0",
        "fileOID": f"celltrial.{study_id}.{domain}",
        "dbLastModifiedDateTime": now,
        "originator": "celltrial",
        "sourceSystem": {"name": "celltrial", "version": __version__},
        "studyOID": study_id,
        "metaDataVersionOID": "MDV.celltrial.1",
        "itemGroupOID": f"IG.{domain}",
        "records": len(rows),
        "name": domain,
        "label": DOMAINS[domain],
        "columns": columns,
        "rows": rows,
    }
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _json_value(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def export_observations(
    study: Any, out: str | Path, *, fmt: str = "csv", cohort: str | None = None
) -> list[Path]:
    """Write the study's (or ``cohort``'s) observations as LB and VS datasets into folder
    ``out`` (lb.csv, vs.csv or lb.json, vs.json); the paths written."""
    from celltrial.store import frames as store_frames

    if fmt not in ("csv", "dataset-json"):
        raise CelltrialError(f"unknown export format {fmt!r}; expected csv or dataset-json")
    if cohort is not None:
        from celltrial.external.cohorts import choose_cohort

        choose_cohort(study, cohort)  # an unknown cohort is named as such
    zone = study.protocol.study.zone
    infusions = store_frames.read_infusions(study.engine, study.study_id, zone=zone)
    observations = store_frames.read_observations(
        study.engine,
        study.study_id,
        zone=zone,
        first_infusion=store_frames.first_infusions(infusions),
        cohort=cohort,
    )
    if observations.empty:
        whose = f"external cohort {cohort!r}" if cohort else f"study {study.study_id}"
        raise CelltrialError(
            f"nothing to export: {whose} holds no lab results or vital signs yet "
            "(import them with `celltrial import`)"
        )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for domain in DOMAINS:
        dataset = derive_sdtm(observations, study_id=study.study_id, domain=domain)
        if fmt == "csv":
            path = folder / f"{domain.lower()}.csv"
            dataset.to_csv(path, index=False)
        else:
            path = write_dataset_json(
                dataset, folder / f"{domain.lower()}.json", study_id=study.study_id, domain=domain
            )
        written.append(path)
    return written
