"""Data going out: CDISC SDTM-like datasets (DM, EX, AE, LB, VS as CSV or Dataset-JSON v1.1)
and the file formats celltrial reads (long CSV, wide XLSX, REDCap, FHIR), so that what came in
can be checked. Names are imported on first use (:mod:`celltrial.lazy`), so the command line
starts without loading pandas and the database layer."""

from celltrial.lazy import lazy_exports

_WHERE = {
    "DatasetWriter": "datasets",
    "ExportContext": "sdtm",
    "derive_ae": "sdtm",
    "derive_dm": "sdtm",
    "derive_ex": "sdtm",
    "derive_findings": "sdtm",
    "export_observations": "submission",
    "export_sdtm": "submission",
    "external_study_id": "sdtm",
    "write_fhir": "files",
    "write_long_csv": "files",
    "write_redcap": "files",
    "write_wide_xlsx": "files",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())

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
