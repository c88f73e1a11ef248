"""Writers that take a dataset chunk by chunk: CSV, or CDISC Dataset-JSON v1.1.

Memory stays bounded by one chunk. A file appears under its name only when complete (written
as ``NAME.part`` and renamed); Dataset-JSON rows go to a scratch file first, because the
metadata in front of them (``records``, each column's ``length`` and whether a ``--DTC``
column is a ``date`` or a ``datetime``) is known only at the end.

Column types follow the Dataset-JSON v1.1 specification ("Supported Column Data Type
Combinations"): text "string"; whole numbers "integer" (JSON integers); other numbers "double"
(JSON numbers); ISO 8601 timing variables "datetime", or "date" when every value of the column
is a date alone — both JSON strings, with no ``targetDataType`` (that attribute only takes
"integer" or "decimal", for values to be converted by the receiver). Missing values are null.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from celltrial import __version__
from celltrial.export.sdtm import DOMAINS, KEYS, VARIABLES

DATASET_JSON_VERSION = "1.1.0"


class DatasetWriter:
    """Write one domain's dataset to ``path`` in chunks (:meth:`write`), then :meth:`close`.

    ``fmt`` is "csv" or "dataset-json". :meth:`abort` removes what was written so far.
    """

    def __init__(self, path: Path, *, domain: str, fmt: str, study_id: str) -> None:
        self.path = Path(path)
        self.domain = domain
        self.fmt = fmt
        self.study_id = study_id
        self.variables = VARIABLES[domain]
        self.names = [name for name, _, _ in self.variables]
        self.records = 0
        self._part = self.path.with_name(self.path.name + ".part")
        self._rows_path = self.path.with_name(self.path.name + ".rows.part")
        self._lengths = dict.fromkeys(self.names, 0)
        self._has_time = dict.fromkeys(self.names, False)
        self._has_value = dict.fromkeys(self.names, False)
        target = self._rows_path if fmt == "dataset-json" else self._part
        self._handle = target.open("w", encoding="utf-8", newline="")
        if fmt == "csv":
            pd.DataFrame(columns=self.names).to_csv(self._handle, index=False)

    def write(self, chunk: pd.DataFrame) -> None:
        """Append the rows of ``chunk`` (columns :data:`~celltrial.export.sdtm.VARIABLES`)."""
        if chunk.empty:
            return
        chunk = chunk[self.names]
        self.records += len(chunk)
        if self.fmt == "csv":
            chunk.to_csv(self._handle, index=False, header=False)
            return
        columns = [self._column(name, kind, chunk[name]) for name, _, kind in self.variables]
        lines = [json.dumps(row, ensure_ascii=False) for row in zip(*columns, strict=True)]
        if self.records > len(chunk):
            self._handle.write(",\n")
        self._handle.write(",\n".join(lines))

    def _column(self, name: str, kind: str, series: pd.Series) -> list[Any]:
        present = series.notna().to_numpy()
        if kind == "integer":
            values = series.astype("Int64").astype(object).where(present, None).tolist()
            return [None if v is None else int(v) for v in values]
        if kind == "double":
            numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
            return [float(v) if np.isfinite(v) else None for v in numbers.tolist()]
        values = series.astype(object).where(present, None).tolist()
        texts = [str(v) for v in values if v is not None]
        if texts:
            self._has_value[name] = True
            self._lengths[name] = max(self._lengths[name], max(len(t) for t in texts))
            if kind == "datetime" and not self._has_time[name]:
                self._has_time[name] = any("T" in t for t in texts)
        return [None if v is None else str(v) for v in values]

    def close(self) -> Path:
        """Finish the file and give it its name; the path written."""
        if self.fmt == "csv":
            self._handle.close()
            os.replace(self._part, self.path)
            return self.path
        self._handle.close()
        with self._part.open("w", encoding="utf-8") as out:
            header = json.dumps(self.metadata(), ensure_ascii=False, indent=1)
            out.write(header[:-2] + ',\n "rows": [\n')
            with self._rows_path.open("r", encoding="utf-8") as rows:
                shutil.copyfileobj(rows, out)
            out.write("\n ]\n}\n")
        self._rows_path.unlink()
        os.replace(self._part, self.path)
        return self.path

    def abort(self) -> None:
        """Remove the unfinished file."""
        self._handle.close()
        for path in (self._part, self._rows_path):
            path.unlink(missing_ok=True)

    def metadata(self) -> dict[str, Any]:
        """Everything of the Dataset-JSON document but its rows."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        keys = KEYS[self.domain]
        columns = []
        for name, label, kind in self.variables:
            if kind == "datetime" and self._has_value[name] and not self._has_time[name]:
                kind = "date"
            column: dict[str, Any] = {
                "itemOID": f"IT.{self.domain}.{name}",
                "name": name,
                "label": label,
                "dataType": kind,
            }
            if kind in ("string", "date", "datetime"):
                column["length"] = max(1, self._lengths[name])
            if name in keys:
                column["keySequence"] = keys.index(name) + 1
            columns.append(column)
        return {
            "datasetJSONCreationDateTime": now,
            "datasetJSONVersion": DATASET_JSON_VERSION,
            "fileOID": f"celltrial.{self.study_id}.{self.domain}",
            "originator": "celltrial",
            "sourceSystem": {"name": "celltrial", "version": __version__},
            "studyOID": self.study_id,
            "metaDataVersionOID": "MDV.celltrial.1",
            "itemGroupOID": f"IG.{self.domain}",
            "records": self.records,
            "name": self.domain,
            "label": DOMAINS[self.domain],
            "columns": columns,
        }


__all__ = ["DATASET_JSON_VERSION", "DatasetWriter"]
