"""The study tables' columns that :mod:`celltrial.store.frames` reads, as light Core tables.

Reading through these needs no ORM: importing ``sqlalchemy.orm`` and the mapped models
(:mod:`celltrial.store.models`) takes about a third of a second, which `celltrial status` need
not pay. Each column has the name and the type of its model's column, so a row reads exactly as
through the models (times aware UTC, booleans, JSON); ``tests/store/test_tables.py`` holds them
equal. Writing goes through the models.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Double, Float, Integer, String, Text, column, table

from celltrial.store.types import FiniteJSON, UTCDateTime

study = table("study", column("id", String))

site = table("site", column("id", Integer), column("code", String))

subject = table(
    "subject",
    column("id", Integer),
    column("study_id", String),
    column("code", String),
    column("site_id", Integer),
    column("cohort", String),
    column("sex", String),
    column("age", Double),
    column("weight_kg", Double),
    column("height_cm", Double),
    column("enrolled_at", UTCDateTime),
    column("admitted_at", UTCDateTime),
    column("baseline_who_scale", Integer),
    column("discharged_at", UTCDateTime),
    column("died_at", UTCDateTime),
    column("withdrawn_at", UTCDateTime),
)

product_lot = table(
    "product_lot",
    column("id", Integer),
    column("study_id", String),
    column("code", String),
    column("donor_id", String),
    column("tissue_source", Text),
    column("manufactured_at", UTCDateTime),
    column("expires_at", UTCDateTime),
    column("total_cells", Double),
    column("viability_pct", Double),
    column("markers_pct", FiniteJSON),
    column("sterility", String),
    column("mycoplasma", String),
    column("endotoxin_eu_per_ml", Double),
    column("release_status", String),
)

infusion = table(
    "infusion",
    column("id", Integer),
    column("subject_id", Integer),
    column("number", Integer),
    column("lot_id", Integer),
    column("vial_id", String),
    column("planned_at", UTCDateTime),
    column("started_at", UTCDateTime),
    column("ended_at", UTCDateTime),
    column("cells_given", Double),
    column("volume_ml", Double),
    column("completed", Boolean),
    column("stop_reason", Text),
)

observation = table(
    "observation",
    column("id", Integer),
    column("subject_id", Integer),
    column("time", UTCDateTime),
    column("test", String),
    column("raw_value", String),
    column("raw_unit", String),
    column("value", Float),
    column("unit", String),
    column("qualifier", String),
    column("ref_low", Double),
    column("ref_high", Double),
    column("specimen", String),
    column("source", Text),
)

adverse_event = table(
    "adverse_event",
    column("id", Integer),
    column("subject_id", Integer),
    column("term", Text),
    column("description", Text),
    column("onset_at", UTCDateTime),
    column("resolved_at", UTCDateTime),
    column("grade", Integer),
    column("serious", Boolean),
    column("serious_criteria", Text),
    column("relatedness", String),
    column("expected", Boolean),
    column("action", Text),
    column("outcome", String),
)

clinical_status = table(
    "clinical_status",
    column("id", Integer),
    column("subject_id", Integer),
    column("time", UTCDateTime),
    column("who_scale", Integer),
    column("oxygen_support", String),
    column("fio2", Double),
)

imaging_study = table(
    "imaging_study",
    column("id", Integer),
    column("subject_id", Integer),
    column("time", UTCDateTime),
    column("modality", String),
    column("series_uid", String),
    column("path", Text),
    column("checksum", String),
)

ct_result = table(
    "ct_result",
    column("id", Integer),
    column("imaging_study_id", Integer),
    column("method", Text),
    column("lung_volume_ml", Double),
    column("ggo_volume_ml", Double),
    column("consolidation_volume_ml", Double),
    column("involvement_pct", Double),
    column("zones", FiniteJSON),
    column("score", Double),
)

import_batch = table(
    "import_batch",
    column("id", Integer),
    column("time", UTCDateTime),
    column("user", String),
    column("kind", String),
    column("source", Text),
    column("source_sha256", String),
    column("counts", FiniteJSON),
    column("report", FiniteJSON),
    column("reason", Text),
)

#: Every light table, for the test that holds each equal to its model.
TABLES = (
    study,
    site,
    subject,
    product_lot,
    infusion,
    observation,
    adverse_event,
    clinical_status,
    imaging_study,
    ct_result,
    import_batch,
)
