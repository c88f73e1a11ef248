"""A study as CDISC SDTM-like datasets: DM, EX, AE, LB (laboratory) and VS (vital signs).

Conventions (also in README.md, "Exports"):

* ``STUDYID`` is the study's id; an external cohort is exported under a study id of its own,
  ``<study id>-EXT-<COHORT>`` (``HUC-MSC-COVID19-EXT-TONGJI``), never under the trial's, and
  ``USUBJID`` = ``STUDYID-SUBJID``, so its patients cannot be mistaken for trial subjects.
* ``--DTC`` is ISO 8601 in the study's time zone with its UTC offset
  (``2020-01-17T07:30:00+08:00``), or the date alone when it was collected without a time
  (see :mod:`celltrial.export.timing`).
* ``RFSTDTC`` is the first infusion (trial subjects) or hospital admission (external cohorts);
  ``--DY`` counts calendar days in the study's time zone from it, day 1 being its day (no day 0).
* ``--STRESN`` is rounded to the precision the value was reported with
  (:mod:`celltrial.export.results`); ``--ORRES``/``--ORRESU`` are the value and unit as written.
* ``--BLFL`` = "Y" on the last non-missing result at or before the reference start per subject
  and test (dates without a time compare by date).
* ``VISIT``/``VISITNUM`` come from the protocol's visit windows
  (:func:`celltrial.efficacy.visits.derive_nominal_visits`): a result in a visit's window is
  that visit; others are ``UNSCHEDULED`` with ``VISITNUM`` k.01, k.02, … (k: the last visit
  before it; one number per calendar day). External cohorts follow no protocol schedule:
  no VISIT.
* ``LBNRIND`` compares the result with the range stored with it, else the catalogue's
  (``LBSTNRLO``/``LBSTNRHI``, canonical units; both limits are normal).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from celltrial.catalogue import load_catalogue
from celltrial.catalogue.model import TestDefinition
from celltrial.export.results import (
    compute_reference_indicator,
    compute_reported_decimals,
    compute_result_text,
    compute_rounded,
)
from celltrial.export.timing import compute_date_only, compute_dtc, compute_sdtm_day
from celltrial.timeline import compute_study_days

DataType = Literal["string", "integer", "double", "datetime", "date"]

#: Dataset labels.
DOMAINS: dict[str, str] = {
    "DM": "Demographics",
    "EX": "Exposure",
    "AE": "Adverse Events",
    "LB": "Laboratory Test Results",
    "VS": "Vital Signs",
}

_COMMON = (
    ("STUDYID", "Study Identifier", "string"),
    ("DOMAIN", "Domain Abbreviation", "string"),
    ("USUBJID", "Unique Subject Identifier", "string"),
)
_VISIT = (
    ("VISITNUM", "Visit Number", "double"),
    ("VISIT", "Visit Name", "string"),
    ("VISITDY", "Planned Study Day of Visit", "integer"),
)

#: (name, label, Dataset-JSON dataType) of every variable, in dataset order. ``--DTC`` columns
#: are "datetime"; a writer makes one "date" when every value in it is a date alone.
VARIABLES: dict[str, tuple[tuple[str, str, DataType], ...]] = {
    "DM": (
        *_COMMON,
        ("SUBJID", "Subject Identifier for the Study", "string"),
        ("RFSTDTC", "Subject Reference Start Date/Time", "datetime"),
        ("RFENDTC", "Subject Reference End Date/Time", "datetime"),
        ("RFXSTDTC", "Date/Time of First Study Treatment", "datetime"),
        ("RFXENDTC", "Date/Time of Last Study Treatment", "datetime"),
        ("DTHDTC", "Date/Time of Death", "datetime"),
        ("DTHFL", "Subject Death Flag", "string"),
        ("SITEID", "Study Site Identifier", "string"),
        ("AGE", "Age", "integer"),
        ("AGEU", "Age Units", "string"),
        ("SEX", "Sex", "string"),
        ("ARMCD", "Planned Arm Code", "string"),
        ("ARM", "Description of Planned Arm", "string"),
        ("ACTARMCD", "Actual Arm Code", "string"),
        ("ACTARM", "Description of Actual Arm", "string"),
    ),
    "EX": (
        *_COMMON,
        ("EXSEQ", "Sequence Number", "integer"),
        ("EXSPID", "Sponsor-Defined Identifier", "string"),
        ("EXTRT", "Name of Treatment", "string"),
        ("EXDOSE", "Dose", "double"),
        ("EXDOSU", "Dose Units", "string"),
        ("EXDOSFRM", "Dose Form", "string"),
        ("EXROUTE", "Route of Administration", "string"),
        ("EXLOT", "Lot Number", "string"),
        ("EXVOL", "Volume Given (mL)", "double"),
        ("EXADJ", "Reason for Dose Adjustment", "string"),
        ("EXSTDTC", "Start Date/Time of Treatment", "datetime"),
        ("EXENDTC", "End Date/Time of Treatment", "datetime"),
        ("EXSTDY", "Study Day of Start of Treatment", "integer"),
        ("EXENDY", "Study Day of End of Treatment", "integer"),
    ),
    "AE": (
        *_COMMON,
        ("AESEQ", "Sequence Number", "integer"),
        ("AETERM", "Reported Term for the Adverse Event", "string"),
        ("AEDECOD", "Dictionary-Derived Term", "string"),
        ("AESER", "Serious Event", "string"),
        ("AESCRIT", "Seriousness Criteria", "string"),
        ("AEACN", "Action Taken with Study Treatment", "string"),
        ("AEREL", "Causality", "string"),
        ("AEOUT", "Outcome of Adverse Event", "string"),
        ("AETOXGR", "Standard Toxicity Grade", "string"),
        ("AESTDTC", "Start Date/Time of Adverse Event", "datetime"),
        ("AEENDTC", "End Date/Time of Adverse Event", "datetime"),
        ("AESTDY", "Study Day of Start of Adverse Event", "integer"),
        ("AEENDY", "Study Day of End of Adverse Event", "integer"),
    ),
    "LB": (
        *_COMMON,
        ("LBSEQ", "Sequence Number", "integer"),
        ("LBTESTCD", "Lab Test or Examination Short Name", "string"),
        ("LBTEST", "Lab Test or Examination Name", "string"),
        ("LBCAT", "Category for Lab Test", "string"),
        ("LBORRES", "Result or Finding in Original Units", "string"),
        ("LBORRESU", "Original Units", "string"),
        ("LBSTRESC", "Character Result/Finding in Std Format", "string"),
        ("LBSTRESN", "Numeric Result/Finding in Standard Units", "double"),
        ("LBSTRESU", "Standard Units", "string"),
        ("LBSTNRLO", "Normal Range Lower Limit-Std Units", "double"),
        ("LBSTNRHI", "Normal Range Upper Limit-Std Units", "double"),
        ("LBNRIND", "Reference Range Indicator", "string"),
        ("LBSPEC", "Specimen Type", "string"),
        ("LBLOINC", "LOINC Code", "string"),
        ("LBBLFL", "Baseline Flag", "string"),
        *_VISIT,
        ("LBDTC", "Date/Time of Specimen Collection", "datetime"),
        ("LBDY", "Study Day of Specimen Collection", "integer"),
    ),
    "VS": (
        *_COMMON,
        ("VSSEQ", "Sequence Number", "integer"),
        ("VSTESTCD", "Vital Signs Test Short Name", "string"),
        ("VSTEST", "Vital Signs Test Name", "string"),
        ("VSORRES", "Result or Finding in Original Units", "string"),
        ("VSORRESU", "Original Units", "string"),
        ("VSSTRESC", "Character Result/Finding in Std Format", "string"),
        ("VSSTRESN", "Numeric Result/Finding in Standard Units", "double"),
        ("VSSTRESU", "Standard Units", "string"),
        ("VSLOINC", "LOINC Code", "string"),
        ("VSBLFL", "Baseline Flag", "string"),
        *_VISIT,
        ("VSDTC", "Date/Time of Measurements", "datetime"),
        ("VSDY", "Study Day of Vital Signs", "integer"),
    ),
}

#: Key variables of each dataset (Dataset-JSON ``keySequence``).
KEYS: dict[str, tuple[str, ...]] = {
    "DM": ("STUDYID", "USUBJID"),
    **{d: ("STUDYID", "USUBJID", f"{d}SEQ") for d in ("EX", "AE", "LB", "VS")},
}

EXTERNAL_ARM = ("EXTCTRL", "External control")
NOT_TREATED_ARM = ("NOTTRT", "Not treated")
#: SDTM controlled terminology (OUT codelist) for the outcomes celltrial records.
_OUTCOMES = {
    "recovered": "RECOVERED/RESOLVED",
    "recovering": "RECOVERING/RESOLVING",
    "recovered with sequelae": "RECOVERED/RESOLVED WITH SEQUELAE",
    "not recovered": "NOT RECOVERED/NOT RESOLVED",
    "fatal": "FATAL",
    "unknown": "UNKNOWN",
}
#: SDTM controlled terminology (ACN codelist) where an action maps onto it; others upper-cased.
_ACTIONS = {
    "none": "DOSE NOT CHANGED",
    "dose not changed": "DOSE NOT CHANGED",
    "infusion interrupted": "DRUG INTERRUPTED",
    "infusion stopped": "DRUG WITHDRAWN",
    "product withdrawn": "DRUG WITHDRAWN",
    "unknown": "UNKNOWN",
}


@dataclass(frozen=True)
class ExportContext:
    """What every dataset of one export shares.

    ``reference`` maps subject code → reference start instant (UTC; first infusion, or
    admission for an external cohort); ``visits`` is the protocol's visit table
    (:func:`celltrial.efficacy.analysis.visit_table`), None when no schedule applies.
    """

    study_id: str
    zone: ZoneInfo
    reference: pd.Series
    visits: pd.DataFrame | None = None
    treatment: str = "hUC-MSC"
    route: str = "INTRAVENOUS"
    external: bool = False

    def usubjid(self, codes: pd.Series) -> pd.Series:
        return self.study_id + "-" + codes.astype(str)


def external_study_id(study_id: str, cohort: str) -> str:
    """STUDYID of an external cohort: ``<study id>-EXT-<COHORT>`` (cohort label upper-cased,
    characters other than letters, digits, ``_`` and ``-`` as ``_``)."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "_", cohort.strip()).strip("_").upper() or "COHORT"
    return f"{study_id}-EXT-{label}"


def _text(series: pd.Series) -> pd.Series:
    """Object column: text, None where missing or empty."""
    out = series.astype(object)
    return out.where(series.notna() & (series.astype(str) != ""), None)


def _calendar_days(times: pd.Series, subjects: pd.Series, context: ExportContext) -> pd.Series:
    """Calendar days in the study's time zone from each subject's reference start (day 0)."""
    reference = context.reference
    if len(reference) == 0:
        reference = pd.Series(dtype="datetime64[ns, UTC]")
    day0 = pd.Series(
        pd.to_datetime(reference, utc=True).reindex(subjects.astype(str).to_numpy()).array,
        index=times.index,
    )
    return compute_study_days(pd.to_datetime(times, utc=True), day0, context.zone)


def _days(times: pd.Series, subjects: pd.Series, context: ExportContext) -> pd.Series:
    return compute_sdtm_day(_calendar_days(times, subjects, context))


def derive_dm(
    subjects: pd.DataFrame, infusions: pd.DataFrame, *, context: ExportContext
) -> pd.DataFrame:
    """DM: one row per subject (frame of :func:`celltrial.store.frames.read_subjects`)."""
    subjects = subjects.sort_values("subject_id", kind="stable").reset_index(drop=True)
    codes = subjects["subject_id"].astype(str)
    given = infusions.dropna(subset=["start_time"])
    ends = given["end_time"].fillna(given["start_time"])
    first = given.groupby(given["subject_id"].astype(str))["start_time"].min()
    last = ends.groupby(given["subject_id"].astype(str)).max()
    first_dose = pd.Series(first.reindex(codes).to_numpy(), dtype="datetime64[ns, UTC]")
    last_dose = pd.Series(last.reindex(codes).to_numpy(), dtype="datetime64[ns, UTC]")
    died = pd.to_datetime(subjects["died"], utc=True)
    if context.external:
        start = pd.to_datetime(subjects["admitted"], utc=True)
        end = pd.to_datetime(subjects["discharged"], utc=True).fillna(died)
        arm = pd.Series([EXTERNAL_ARM] * len(subjects), dtype=object)
    else:
        start = first_dose
        end = last_dose
        treated = (context.treatment.replace("-", "").upper()[:20] or "TRT", context.treatment)
        arm = pd.Series(
            [treated if pd.notna(t) else NOT_TREATED_ARM for t in first_dose], dtype=object
        )
    age = pd.to_numeric(subjects["age"], errors="coerce")
    sex = subjects["sex"].map({"M": "M", "F": "F"}).where(subjects["sex"].notna(), "U")
    planned = [a[0] if a != NOT_TREATED_ARM else None for a in arm]
    planned_label = [a[1] if a != NOT_TREATED_ARM else None for a in arm]
    return pd.DataFrame(
        {
            "STUDYID": context.study_id,
            "DOMAIN": "DM",
            "USUBJID": context.usubjid(codes),
            "SUBJID": codes,
            "RFSTDTC": compute_dtc(start, context.zone),
            "RFENDTC": compute_dtc(end, context.zone),
            "RFXSTDTC": compute_dtc(first_dose, context.zone),
            "RFXENDTC": compute_dtc(last_dose, context.zone),
            "DTHDTC": compute_dtc(died, context.zone),
            "DTHFL": np.where(died.notna(), "Y", None),
            "SITEID": _text(subjects["site"]),
            "AGE": pd.array(np.floor(age), dtype="Int64"),
            "AGEU": np.where(age.notna(), "YEARS", None),
            "SEX": sex.fillna("U"),
            "ARMCD": planned if not context.external else [a[0] for a in arm],
            "ARM": planned_label if not context.external else [a[1] for a in arm],
            "ACTARMCD": [a[0] for a in arm],
            "ACTARM": [a[1] for a in arm],
        }
    )


def derive_ex(infusions: pd.DataFrame, *, context: ExportContext) -> pd.DataFrame:
    """EX: one row per infusion given (frame of :func:`celltrial.store.frames.read_infusions`);
    planned infusions never started are not exposure and are left out."""
    given = infusions.dropna(subset=["start_time"]).copy()
    given["subject_id"] = given["subject_id"].astype(str)
    given = given.sort_values(["subject_id", "start_time", "number"], kind="stable")
    given = given.reset_index(drop=True)
    stopped = ~given["completed"].fillna(True).astype(bool)
    reason = given["stop_reason"].fillna("").astype(str)
    adjustment = np.where(
        stopped, "INFUSION STOPPED" + np.where(reason != "", ": " + reason, ""), None
    )
    return pd.DataFrame(
        {
            "STUDYID": context.study_id,
            "DOMAIN": "EX",
            "USUBJID": context.usubjid(given["subject_id"]),
            "EXSEQ": given.groupby("subject_id").cumcount() + 1,
            "EXSPID": "INFUSION " + given["number"].astype(str),
            "EXTRT": context.treatment,
            "EXDOSE": compute_rounded(given["cells_given"]),
            "EXDOSU": "cells",
            "EXDOSFRM": "SUSPENSION",
            "EXROUTE": context.route,
            "EXLOT": _text(given["lot_id"]),
            "EXVOL": compute_rounded(given["volume_ml"]),
            "EXADJ": adjustment,
            "EXSTDTC": compute_dtc(given["start_time"], context.zone),
            "EXENDTC": compute_dtc(given["end_time"], context.zone),
            "EXSTDY": _days(given["start_time"], given["subject_id"], context),
            "EXENDY": _days(given["end_time"], given["subject_id"], context),
        }
    )


def derive_ae(events: pd.DataFrame, *, context: ExportContext) -> pd.DataFrame:
    """AE: one row per adverse event (frame of :func:`celltrial.store.frames.read_adverse_events`).

    ``AEDECOD`` stays empty: celltrial keeps the reported term only (no MedDRA coding).
    """
    events = events.copy()
    events["subject_id"] = events["subject_id"].astype(str)
    events = events.sort_values(["subject_id", "onset"], kind="stable").reset_index(drop=True)
    serious = events["serious"].fillna(False).astype(bool)
    grade = pd.to_numeric(events["grade"], errors="coerce")
    outcome = events["outcome"].fillna("").astype(str).str.strip().str.lower()
    action = events["action"].fillna("").astype(str).str.strip().str.lower()
    return pd.DataFrame(
        {
            "STUDYID": context.study_id,
            "DOMAIN": "AE",
            "USUBJID": context.usubjid(events["subject_id"]),
            "AESEQ": events.groupby("subject_id").cumcount() + 1,
            "AETERM": _text(events["term"]),
            "AEDECOD": None,
            "AESER": np.where(serious, "Y", "N"),
            "AESCRIT": _text(events["serious_criteria"]),
            "AEACN": _text(action.map(lambda a: _ACTIONS.get(a, a.upper()))),
            "AEREL": _text(events["relatedness"].fillna("").astype(str).str.upper()),
            "AEOUT": _text(outcome.map(lambda o: _OUTCOMES.get(o, o.upper()))),
            "AETOXGR": [None if pd.isna(g) else str(int(g)) for g in grade],
            "AESTDTC": compute_dtc(events["onset"], context.zone),
            "AEENDTC": compute_dtc(events["resolved"], context.zone),
            "AESTDY": _days(events["onset"], events["subject_id"], context),
            "AEENDY": _days(events["resolved"], events["subject_id"], context),
        }
    )


def split_domains(observations: pd.DataFrame) -> Mapping[str, pd.DataFrame]:
    """Observations of vital-sign tests (catalogue category ``vital``) → VS, the rest → LB."""
    vitals = [t.code for t in load_catalogue().tests if t.category == "vital"]
    is_vital = observations["test"].isin(vitals)
    return {"LB": observations[~is_vital], "VS": observations[is_vital]}


def derive_findings(
    observations: pd.DataFrame,
    *,
    context: ExportContext,
    domain: str,
    first_seq: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """LB or VS rows of ``observations`` (columns of :data:`celltrial.frames.OBSERVATION_COLUMNS`;
    ``study_day`` is recomputed from ``context.reference``). Each subject's rows must all be in
    ``observations`` (the baseline flag and visits look at all of them); ``first_seq`` maps a
    subject to the sequence number its first row gets (1 when absent)."""
    if domain not in ("LB", "VS"):
        raise ValueError(f"domain must be LB or VS, not {domain!r}")
    frame = observations.copy()
    frame["subject_id"] = frame["subject_id"].astype(str)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame = frame.sort_values(["subject_id", "time", "test"], kind="stable").reset_index(drop=True)
    frame["study_day"] = _calendar_days(frame["time"], frame["subject_id"], context)
    known = frame["test"].map(_definitions())
    qualifier = frame["qualifier"].fillna("").astype(str)
    value = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)

    decimals = compute_reported_decimals(
        frame["raw_value"], frame["test"], frame["raw_unit"], frame["unit"]
    )
    rounded = compute_rounded(value, decimals)
    number_text = compute_result_text(rounded, decimals)
    stresc = [
        None if text is None else q + text
        for q, text in zip(qualifier.tolist(), number_text, strict=True)
    ]
    orres = _text(frame["raw_value"]).where(frame["raw_value"].notna(), pd.Series(stresc))

    date_only = compute_date_only(frame["time"], context.zone)
    baseline = _baseline_flags(frame, value, date_only, context)
    visit, visitnum, visitdy = _visits(frame, context)
    d = domain
    columns: dict[str, object] = {
        "STUDYID": context.study_id,
        "DOMAIN": d,
        "USUBJID": context.usubjid(frame["subject_id"]),
        f"{d}SEQ": _sequence(frame["subject_id"], first_seq),
        f"{d}TESTCD": frame["test"],
        f"{d}TEST": known.map(lambda t: t.name if t is not None else None),
    }
    if d == "LB":
        columns["LBCAT"] = known.map(lambda t: t.category.upper() if t is not None else None)
    columns |= {
        f"{d}ORRES": orres,
        f"{d}ORRESU": _text(frame["raw_unit"]),
        f"{d}STRESC": stresc,
        f"{d}STRESN": np.where(qualifier == "", rounded, np.nan),
        f"{d}STRESU": _text(frame["unit"]),
    }
    if d == "LB":
        catalogue_low = known.map(lambda t: t.reference[0] if t is not None else np.nan)
        catalogue_high = known.map(lambda t: t.reference[1] if t is not None else np.nan)
        own = frame["ref_low"].notna() | frame["ref_high"].notna()
        low = compute_rounded(np.where(own, frame["ref_low"].astype(float), catalogue_low))
        high = compute_rounded(np.where(own, frame["ref_high"].astype(float), catalogue_high))
        columns |= {
            "LBSTNRLO": low,
            "LBSTNRHI": high,
            "LBNRIND": compute_reference_indicator(
                rounded,
                qualifier,
                low,
                high,
                plausible_low=known.map(lambda t: t.plausible[0] if t else -np.inf).to_numpy(float),
                plausible_high=known.map(lambda t: t.plausible[1] if t else np.inf).to_numpy(float),
            ),
            "LBSPEC": _text(frame["specimen"].astype("string").str.upper()),
        }
    columns |= {
        f"{d}LOINC": known.map(lambda t: t.loinc if t is not None else None),
        f"{d}BLFL": np.where(baseline, "Y", None),
        "VISITNUM": visitnum,
        "VISIT": visit,
        "VISITDY": visitdy,
        f"{d}DTC": compute_dtc(frame["time"], context.zone),
        f"{d}DY": compute_sdtm_day(frame["study_day"]),
    }
    out = pd.DataFrame(columns)
    return out[[name for name, _, _ in VARIABLES[d]]]


@cache
def _definitions() -> dict[str, TestDefinition]:
    return {t.code: t for t in load_catalogue().tests}


def _sequence(subjects: pd.Series, first_seq: Mapping[str, int] | None) -> pd.Series:
    seq = subjects.groupby(subjects).cumcount() + 1
    if first_seq:
        seq = seq + subjects.map(lambda s: first_seq.get(s, 1) - 1)
    return seq.astype("int64")


def _baseline_flags(
    frame: pd.DataFrame, value: np.ndarray, date_only: np.ndarray, context: ExportContext
) -> np.ndarray:
    """True on each subject × test's last non-missing result at or before the reference start;
    a date without a time (either side) compares by date (its day ≤ the reference day)."""
    reference = pd.to_datetime(context.reference, utc=True).reindex(frame["subject_id"]).array
    reference_date_only = compute_date_only(pd.Series(reference), context.zone)
    by_date = date_only | reference_date_only
    day = pd.to_numeric(frame["study_day"], errors="coerce").to_numpy(float, na_value=np.nan)
    times = np.asarray(frame["time"].array.tz_convert("UTC").tz_localize(None))
    limit = np.asarray(reference.tz_convert("UTC").tz_localize(None))
    with np.errstate(invalid="ignore"):
        before = np.where(by_date, day <= 0, times <= limit)
    has_value = np.isfinite(value) & ~pd.isna(reference)
    candidates = pd.DataFrame(
        {"subject_id": frame["subject_id"], "test": frame["test"], "position": range(len(frame))}
    )[before & has_value]
    last = candidates.groupby(["subject_id", "test"], sort=False)["position"].max()
    flags = np.zeros(len(frame), dtype=bool)
    flags[last.to_numpy(dtype=int)] = True
    return flags


def _visits(frame: pd.DataFrame, context: ExportContext) -> tuple[list, np.ndarray, pd.Series]:
    """(VISIT, VISITNUM, VISITDY) by the protocol's visit windows (none for external cohorts)."""
    n = len(frame)
    if context.visits is None or n == 0:
        return [None] * n, np.full(n, np.nan), pd.Series(pd.NA, index=frame.index, dtype="Int64")
    from celltrial.efficacy.visits import check_visits, derive_nominal_visits

    table = check_visits(context.visits)
    assigned = derive_nominal_visits(frame, table)
    labels = table["visit"].astype(str).tolist()
    number = {label: float(i + 1) for i, label in enumerate(labels)}
    nominal = dict(zip(labels, table["day"], strict=True))
    window = assigned["window_visit"]
    day = pd.to_numeric(frame["study_day"], errors="coerce")
    # unscheduled: k.01, k.02, ... per calendar day after the last visit k whose day is before
    previous = np.searchsorted(table["day"].to_numpy(float), day.to_numpy(float), side="left")
    outside = window.isna() & day.notna()
    keys = pd.DataFrame({"subject": frame["subject_id"], "k": previous, "day": day})[outside]
    rank = keys.groupby(["subject", "k"])["day"].rank(method="dense")
    visitnum = np.array(window.map(number).to_numpy(dtype=float, na_value=np.nan))
    extra = np.round(keys["k"].to_numpy(float) + rank.to_numpy(float) / 100, 2)
    extra[rank.to_numpy(float) >= 100] = np.nan
    visitnum[outside.to_numpy()] = extra
    visit = [
        None if pd.isna(d) else (w if isinstance(w, str) else "UNSCHEDULED")
        for w, d in zip(window.tolist(), day.tolist(), strict=True)
    ]
    planned = window.map(nominal).astype("Float64")
    return visit, visitnum, compute_sdtm_day(planned)


__all__ = [
    "DOMAINS",
    "EXTERNAL_ARM",
    "KEYS",
    "VARIABLES",
    "ExportContext",
    "derive_ae",
    "derive_dm",
    "derive_ex",
    "derive_findings",
    "external_study_id",
    "split_domains",
]
