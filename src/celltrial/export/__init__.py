"""Data going out: CDISC SDTM-like datasets (DM, EX, AE, LB, VS as CSV or Dataset-JSON v1.1)
and the file formats celltrial reads (long CSV, wide XLSX, REDCap, FHIR), so that what came in
can be checked."""

from celltrial.export.datasets import DatasetWriter
from celltrial.export.files import write_fhir, write_long_csv, write_redcap, write_wide_xlsx
from celltrial.export.sdtm import (
    ExportContext,
    derive_ae,
    derive_dm,
    derive_ex,
    derive_findings,
    external_study_id,
)
from celltrial.export.submission import export_observations, export_sdtm

__all__ = [
    "DatasetWriter",
    "ExportContext",
    "derive_ae",
    "derive_dm",
    "derive_ex",
    "derive_findings",
    "export_observations",
    "export_sdtm",
    "external_study_id",
    "write_fhir",
    "write_long_csv",
    "write_redcap",
    "write_wide_xlsx",
]
