"""Data going out: CDISC SDTM-like LB/VS datasets (CSV, Dataset-JSON v1.1) and the file formats
celltrial reads (long CSV, wide XLSX, REDCap, FHIR), so that what came in can be checked."""

from celltrial.export.files import write_fhir, write_long_csv, write_redcap, write_wide_xlsx
from celltrial.export.sdtm import derive_sdtm, export_observations, write_dataset_json

__all__ = [
    "derive_sdtm",
    "export_observations",
    "write_dataset_json",
    "write_fhir",
    "write_long_csv",
    "write_redcap",
    "write_wide_xlsx",
]
