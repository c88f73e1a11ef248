"""Where a study's data came from, as the report and the web app need to tell their readers."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Engine, exists, func, select

from celltrial.store.models import AuditEvent, ImportBatch

#: ``import_batch.kind`` of a load written by the simulator (``celltrial.cohort.simulate``).
SIMULATION_KIND = "simulation"


def study_is_simulated(engine: Engine) -> bool:
    """Whether any of the study's data came from the simulator (any simulation import batch).

    A study is a whole: one simulated load makes every summary over it partly invented, so the
    answer is per study, not per record.
    """
    with engine.connect() as connection:
        return bool(connection.scalar(select(exists().where(ImportBatch.kind == SIMULATION_KIND))))


#: The tables whose changes are study data (not accounts, sessions, queries or signatures): the
#: data cut-off is the last change to one of these.
DATA_TABLES = (
    "study",
    "site",
    "subject",
    "product_lot",
    "infusion",
    "observation",
    "adverse_event",
    "clinical_status",
    "imaging_study",
    "ct_result",
    "import_batch",
)


def read_data_cutoff(engine: Engine) -> pd.Timestamp | None:
    """The time (UTC) of the last audited change to the study's data; None for a study without
    any (then the report is as of now).

    The report's data cut-off comes from the data, not the clock: two reports of unchanged data
    (an HTML run and a PDF run) state the same cut-off and the same visit statuses.
    """
    with engine.connect() as connection:
        latest = connection.scalar(
            select(func.max(AuditEvent.time)).where(AuditEvent.table_name.in_(DATA_TABLES))
        )
    if latest is None:
        return None
    stamp = pd.Timestamp(latest)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
