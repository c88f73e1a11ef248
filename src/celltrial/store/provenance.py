"""Where a study's data came from, as the report and the web app need to tell their readers."""

from __future__ import annotations

from sqlalchemy import Engine, exists, select

from celltrial.store.models import ImportBatch

#: ``import_batch.kind`` of a load written by the simulator (``celltrial.cohort.simulate``).
SIMULATION_KIND = "simulation"


def study_is_simulated(engine: Engine) -> bool:
    """Whether any of the study's data came from the simulator (any simulation import batch).

    A study is a whole: one simulated load makes every summary over it partly invented, so the
    answer is per study, not per record.
    """
    with engine.connect() as connection:
        return bool(connection.scalar(select(exists().where(ImportBatch.kind == SIMULATION_KIND))))
