"""The SDTM export: local times with their offset at the precision collected, study days, visits,
baseline flags, reference-range indicators, reported precision, a coherent DM/EX/AE/LB/VS set,
external cohorts under their own study id, Dataset-JSON v1.1 column types and bounded memory."""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from celltrial.cohort import simulate
from celltrial.export import (
    DatasetWriter,
    ExportContext,
    derive_ae,
    derive_findings,
    export_sdtm,
    external_study_id,
    write_long_csv,
)
from celltrial.export.results import compute_reported_decimals, compute_rounded, parse_decimals
from celltrial.export.timing import compute_dtc
from celltrial.ingest.times import parse_times
from celltrial.protocol import DEFAULT_PROTOCOL, load_builtin_protocol
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study
from tests.store.backends import database_url  # noqa: F401  (a fixture)

PROTOCOL = load_builtin_protocol(DEFAULT_PROTOCOL)
ZONE = PROTOCOL.study.zone
SHANGHAI = "Asia/Shanghai"
DATASET_JSON_TYPES = {
    "string",
    "integer",
    "decimal",
    "float",
    "double",
    "boolean",
    "datetime",
    "date",
    "time",
    "URI",
}


def _local(day0: pd.Timestamp, days: int, clock: str) -> pd.Timestamp:
    """The UTC instant of local (Shanghai) time ``clock`` on calendar day ``day0 + days``."""
    date = (day0.tz_convert(SHANGHAI).normalize() + timedelta(days=days)).tz_localize(None)
    return pd.Timestamp(f"{date.date()} {clock}").tz_localize(SHANGHAI).tz_convert("UTC")


def _row(subject: str, time: pd.Timestamp, test: str, value: float, **extra) -> dict:
    unit = extra.pop("unit", "mg/L")
    return {
        "subject_id": subject,
        "time": time,
        "test": test,
        "value": value,
        "qualifier": extra.pop("qualifier", ""),
        "unit": unit,
        "ref_low": extra.pop("ref_low", np.nan),
        "ref_high": extra.pop("ref_high", np.nan),
        "specimen": "serum",
        "raw_value": extra.pop("raw_value", repr(value)),
        "raw_unit": extra.pop("raw_unit", unit),
        "source": "test",
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A study of 3 simulated subjects, with S001's hs-CRP sampled at 07:30 Shanghai time two days
    after the first infusion and once as a date without a time, and a temperature converted
    from °F that carries binary noise."""
    cohort = simulate(PROTOCOL, 3, seed=5)
    first = cohort.infusions.groupby("subject_id")["start_time"].min()
    day0 = first["S001"]
    extra = pd.DataFrame(
        [
            _row("S001", _local(day0, 2, "07:30"), "HSCRP", 2.5, raw_value="2.5"),
            _row("S001", _local(day0, 5, "00:00"), "HSCRP", 1.5, raw_value="1.5"),
            _row(
                "S001",
                _local(day0, 1, "10:00"),
                "TEMP",
                38.99999999999874,
                unit="degC",
                raw_value="102.2",
                raw_unit="degF",
            ),
        ]
    )
    cohort = dataclasses.replace(
        cohort, observations=pd.concat([cohort.observations, extra], ignore_index=True)
    )
    folder = tmp_path_factory.mktemp("sdtm")
    study = init_study(folder / "study", user="tester")
    with study_session(study.engine, user="tester", reason="test") as session:
        load_simulated_cohort(session, study.study_id, cohort)
    csv = export_sdtm(study, folder / "csv", fmt="csv", chunk_rows=500)
    tables = {p.stem.upper(): pd.read_csv(p, dtype=str, keep_default_na=False) for p in csv}
    return {"study": study, "cohort": cohort, "day0": day0, "tables": tables, "folder": folder}


def test_the_study_time_zone_is_shanghai():
    assert PROTOCOL.study.timezone == SHANGHAI


def test_a_shanghai_sample_at_0730_keeps_its_local_time_offset_and_study_day(built):
    lb = built["tables"]["LB"]
    rows = lb[(lb["USUBJID"].str.endswith("-S001")) & (lb["LBTESTCD"] == "HSCRP")]
    date = (built["day0"].tz_convert(SHANGHAI).normalize() + timedelta(days=2)).date()
    sample = rows[rows["LBORRES"] == "2.5"].iloc[0]
    # 07:30 in Shanghai is 23:30 UTC the day before: the UTC wall clock gave the wrong day
    assert sample["LBDTC"] == f"{date}T07:30:00+08:00"
    assert sample["LBDY"] == "3"  # day 0 (first infusion) is SDTM day 1


def test_a_date_without_a_time_stays_a_date(built):
    lb = built["tables"]["LB"]
    rows = lb[(lb["USUBJID"].str.endswith("-S001")) & (lb["LBTESTCD"] == "HSCRP")]
    date = (built["day0"].tz_convert(SHANGHAI).normalize() + timedelta(days=5)).date()
    sample = rows[rows["LBORRES"] == "1.5"].iloc[0]
    assert sample["LBDTC"] == str(date)
    assert sample["LBDY"] == "6"


def test_a_date_read_by_the_ingest_exports_as_that_date():
    """The ingest stores a date without a time as local midnight; it comes back as the date."""
    times, bad = parse_times(pd.Series(["2020-01-17", "2020-01-17 07:30"]), SHANGHAI)
    assert not bad.any()
    assert compute_dtc(times, SHANGHAI) == ["2020-01-17", "2020-01-17T07:30:00+08:00"]
    summer = pd.Series(pd.to_datetime(["2020-07-01T12:00:00Z"], utc=True))
    assert compute_dtc(summer, "Europe/Paris") == ["2020-07-01T14:00:00+02:00"]
    assert compute_dtc(pd.Series([pd.NaT], dtype="datetime64[ns, UTC]"), SHANGHAI) == [None]


def test_rfstdtc_is_the_first_infusion_and_every_dy_agrees_with_its_dtc(built):
    tables = built["tables"]
    dm = tables["DM"].set_index("USUBJID")
    first = built["cohort"].infusions.groupby("subject_id")["start_time"].min()
    for subject, start in first.items():
        usubjid = f"{built['study'].study_id}-{subject}"
        assert dm.loc[usubjid, "RFSTDTC"] == compute_dtc(pd.Series([start]), SHANGHAI)[0]
    for domain in ("LB", "VS"):
        frame = tables[domain]
        reference = frame["USUBJID"].map(dm["RFSTDTC"].str[:10]).map(pd.Timestamp)
        dates = frame[f"{domain}DTC"].str[:10].map(pd.Timestamp)
        difference = (dates - reference).dt.days
        expected = np.where(difference >= 0, difference + 1, difference)
        assert (frame[f"{domain}DY"].astype(int) == expected).all()
        assert (frame[f"{domain}DY"] != "0").all()


def test_the_datasets_are_coherent(built):
    tables = built["tables"]
    assert set(tables) == {"DM", "EX", "AE", "LB", "VS"}
    dm = tables["DM"]
    assert dm["USUBJID"].is_unique and len(dm) == 3
    for domain in ("EX", "AE", "LB", "VS"):
        frame = tables[domain]
        assert len(frame) > 0
        assert set(frame["USUBJID"]) <= set(dm["USUBJID"])
        assert not frame.duplicated(["USUBJID", f"{domain}SEQ"]).any()
        assert (frame["STUDYID"] == built["study"].study_id).all()
        assert (frame["DOMAIN"] == domain).all()
    assert (dm["ARM"] == "hUC-MSC").all() and (dm["AGEU"] == "YEARS").all()
    died = built["cohort"].subjects.dropna(subset=["died"])["subject_id"]
    flagged = dm.loc[dm["DTHFL"] == "Y", "SUBJID"]
    assert sorted(flagged) == sorted(died) and (dm.loc[dm["DTHFL"] == "Y", "DTHDTC"] != "").all()


def test_ex_has_one_row_per_infusion_with_lot_and_dose(built):
    ex = built["tables"]["EX"]
    infusions = built["cohort"].infusions.dropna(subset=["start_time"])
    infusions = infusions.sort_values(["subject_id", "start_time"])
    assert len(ex) == len(infusions)
    assert list(ex["EXLOT"]) == list(infusions["lot_id"])
    assert np.allclose(ex["EXDOSE"].astype(float), infusions["cells_given"].astype(float))
    assert set(ex["EXDOSU"]) == {"cells"} and set(ex["EXROUTE"]) == {"INTRAVENOUS"}
    assert list(ex["EXSTDTC"]) == compute_dtc(infusions["start_time"], SHANGHAI)
    assert (ex["EXSTDTC"].str.endswith("+08:00")).all()
    assert ex.groupby("USUBJID")["EXSTDY"].first().eq("1").all()


def test_ae_rows_carry_grade_seriousness_and_local_times(built):
    ae = built["tables"]["AE"]
    events = built["cohort"].adverse_events
    assert len(ae) == len(events)
    assert set(ae["AESER"]) <= {"Y", "N"}
    assert set(ae["AETOXGR"]) <= {"1", "2", "3", "4", "5"}
    assert ae["AESTDTC"].str.endswith("+08:00").all()
    assert set(ae["AEOUT"]) <= {
        "RECOVERED/RESOLVED",
        "RECOVERING/RESOLVING",
        "NOT RECOVERED/NOT RESOLVED",
        "RECOVERED/RESOLVED WITH SEQUELAE",
        "FATAL",
        "UNKNOWN",
        "",
    }


def test_vsstresn_is_at_the_reported_precision_without_float_noise(built):
    vs = built["tables"]["VS"]
    temp = vs[(vs["VSTESTCD"] == "TEMP") & (vs["VSORRES"] == "102.2")].iloc[0]
    assert temp["VSORRESU"] == "degF" and temp["VSSTRESU"] == "degC"
    assert temp["VSSTRESN"] == "39.0"  # stored as 38.99999999999874
    assert temp["VSSTRESC"] == "39.00"  # 0.1 °F is 0.06 °C: two decimals
    numbers = vs["VSSTRESN"][vs["VSSTRESN"] != ""].astype(float)
    assert (numbers.map(lambda v: len(repr(v))) < 12).all()


def test_precision_rule():
    assert parse_decimals("38.9") == 1 and parse_decimals("<0.50") == 2
    assert parse_decimals("550") == 0 and parse_decimals("1.2e3") == -2
    assert np.isnan(parse_decimals("")) and np.isnan(parse_decimals(None))
    raw = pd.Series(["1.23", "550", "102.2", None, "5"])
    tests = pd.Series(["CRP", "LYM", "TEMP", "CRP", "CRP"])
    raw_units = pd.Series(["mg/dL", "cells/uL", "degF", None, "mg/L"])
    units = pd.Series(["mg/L", "10^9/L", "degC", "mg/L", "mg/L"])
    decimals = compute_reported_decimals(raw, tests, raw_units, units)
    assert list(decimals[[0, 1, 2, 4]]) == [1, 3, 2, 0] and np.isnan(decimals[3])
    values = np.array([12.299999999999999, 0.55, 38.99999999999874, 0.30000000000000004, 5.0])
    rounded = compute_rounded(values, decimals)
    assert list(rounded) == [12.3, 0.55, 39.0, 0.3, 5.0]
    assert compute_rounded(np.array([38.99999999999874, np.nan]))[0] == 39.0
    assert compute_rounded(np.array([1.4999]), np.array([0.0]))[0] == 1.0


def _context(reference: dict[str, pd.Timestamp], **extra) -> ExportContext:
    return ExportContext(
        study_id="STUDY",
        zone=ZONE,
        reference=pd.Series(reference, dtype="datetime64[ns, UTC]"),
        **extra,
    )


def test_lbnrind_at_the_limits_of_the_reference_range():
    dose = pd.Timestamp("2020-02-10T02:00:00Z")
    t = [dose + timedelta(hours=h) for h in range(9)]
    rows = [
        _row("S1", t[0], "CRP", 10.0, ref_low=0.0, ref_high=10.0),  # = high: NORMAL
        _row("S1", t[1], "CRP", 10.1, ref_low=0.0, ref_high=10.0),
        _row("S1", t[2], "LYM", 1.1, unit="10^9/L", ref_low=1.1, ref_high=3.2),  # = low
        _row("S1", t[3], "LYM", 1.0, unit="10^9/L", ref_low=1.1, ref_high=3.2),
        _row("S1", t[4], "CRP", 0.5, qualifier="<", raw_value="<0.5"),  # catalogue 0–10
        _row("S1", t[5], "DDIMER", 21.0, qualifier=">", raw_value=">21"),  # catalogue 0–0.5
        _row("S1", t[6], "LYM", 1.5, unit="10^9/L", qualifier="<", raw_value="<1.5"),
        _row("S1", t[7], "CRP", 10.000000000000002, ref_low=0.0, ref_high=10.0),
        _row("S1", t[8], "CRP", np.nan, raw_value=None),
    ]
    lb = derive_findings(pd.DataFrame(rows), context=_context({"S1": dose}), domain="LB")
    assert [None if pd.isna(v) else v for v in lb["LBNRIND"]] == [
        "NORMAL",
        "HIGH",
        "NORMAL",
        "LOW",
        "NORMAL",
        "HIGH",
        None,  # <1.5 may be below 1.1 or within the range
        "NORMAL",
        None,
    ]
    assert list(lb["LBSTNRHI"][:2]) == [10.0, 10.0] and lb["LBSTNRHI"].iloc[4] == 10.0
    assert lb["LBSTRESN"].iloc[4] != lb["LBSTRESN"].iloc[4]  # at a limit: no number
    assert lb["LBSTRESC"].iloc[4] == "<0.5" and lb["LBORRES"].iloc[4] == "<0.5"


def test_baseline_is_the_last_value_at_or_before_the_first_dose():
    dose = pd.Timestamp("2020-02-10T02:00:00Z")  # 10:00 in Shanghai
    rows = [
        _row("S1", dose - timedelta(days=1), "CRP", 50.0),
        _row("S1", dose - timedelta(hours=2), "CRP", 40.0),  # baseline
        _row("S1", dose + timedelta(hours=2), "CRP", 30.0),
        _row("S1", dose - timedelta(days=2), "IL6", 20.0),
        _row("S1", dose - timedelta(hours=1), "IL6", np.nan, raw_value=None),  # missing
        _row("S1", dose, "LYM", 0.5, unit="10^9/L"),  # at the dose time: at or before
        _row("S1", dose + timedelta(minutes=1), "LYM", 0.6, unit="10^9/L"),
        # a date alone on the day of the first dose compares by date: baseline
        _row("S1", pd.Timestamp("2020-02-09T16:00:00Z"), "ALT", 35.0, unit="U/L"),
        _row("S1", dose + timedelta(days=1), "AST", 35.0, unit="U/L"),  # none before
        _row("S2", dose - timedelta(hours=1), "CRP", 10.0),  # S2 never infused
    ]
    lb = derive_findings(pd.DataFrame(rows), context=_context({"S1": dose}), domain="LB")
    flagged = lb.loc[lb["LBBLFL"] == "Y", ["USUBJID", "LBTESTCD", "LBSTRESN"]]
    assert sorted(map(tuple, flagged.to_numpy().tolist())) == [
        ("STUDY-S1", "ALT", 35.0),
        ("STUDY-S1", "CRP", 40.0),
        ("STUDY-S1", "IL6", 20.0),
        ("STUDY-S1", "LYM", 0.5),
    ]
    assert lb.loc[lb["LBTESTCD"] == "ALT", "LBDTC"].iloc[0] == "2020-02-10"
    assert lb["LBBLFL"].isna().sum() == len(lb) - 4


def test_visits_come_from_the_protocol_windows():
    from celltrial.efficacy.analysis import visit_table

    dose = pd.Timestamp("2020-02-10T02:00:00Z")
    rows = [
        _row("S1", dose - timedelta(days=1), "CRP", 50.0),  # day -1: Screening/Baseline window
        _row("S1", dose + timedelta(days=2), "CRP", 40.0),  # day 2: no window
        _row("S1", dose + timedelta(days=2, hours=1), "LYM", 1.0, unit="10^9/L"),
        _row("S1", dose + timedelta(days=3), "CRP", 30.0),  # Day 3
        _row("S1", dose + timedelta(days=4), "CRP", 20.0),  # day 4: second unscheduled day
        _row("S1", dose + timedelta(days=9), "CRP", 10.0),  # Day 10 window (9-11)
    ]
    context = _context({"S1": dose}, visits=visit_table(PROTOCOL))
    lb = derive_findings(pd.DataFrame(rows), context=context, domain="LB")
    assert list(lb["VISIT"]) == [
        "Screening/Baseline",
        "UNSCHEDULED",
        "UNSCHEDULED",
        "Day 3",
        "UNSCHEDULED",
        "Day 10",
    ]
    assert list(lb["VISITNUM"]) == [1.0, 2.01, 2.01, 3.0, 3.01, 5.0]
    assert list(lb["VISITDY"].astype("Float64").fillna(-99)) == [1, -99, -99, 4, -99, 11]


def test_dataset_json_column_types_follow_v1_1(built):
    paths = export_sdtm(built["study"], built["folder"] / "json", fmt="dataset-json")
    assert [p.name for p in paths] == ["dm.json", "ex.json", "ae.json", "lb.json", "vs.json"]
    for path in paths:
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document["datasetJSONVersion"] == "1.1.0"
        assert document["records"] == len(document["rows"]) > 0
        columns = document["columns"]
        types = {c["name"]: c["dataType"] for c in columns}
        assert set(types.values()) <= DATASET_JSON_TYPES
        for column in columns:
            assert column.get("targetDataType") in (None, "integer", "decimal")
        domain = document["name"]
        keys = [c["name"] for c in sorted(columns, key=lambda c: c.get("keySequence", 99))]
        assert keys[:2] == ["STUDYID", "USUBJID"]
        for index, column in enumerate(columns):
            values = [row[index] for row in document["rows"] if row[index] is not None]
            kind = column["dataType"]
            if kind == "integer":
                assert all(type(v) is int for v in values), column["name"]
            elif kind == "double":
                assert all(isinstance(v, int | float) for v in values), column["name"]
            else:
                assert all(isinstance(v, str) for v in values), column["name"]
                assert all(len(v) <= column["length"] for v in values)
        if domain == "LB":
            assert types["LBDTC"] == "datetime" and types["LBSTRESN"] == "double"
            assert types["LBSEQ"] == "integer" and types["LBDY"] == "integer"
            assert types["VISITNUM"] == "double"
        if domain == "DM":
            assert types["AGE"] == "integer" and types["RFSTDTC"] == "datetime"


def test_a_timing_column_of_dates_alone_is_typed_date(tmp_path):
    events = pd.DataFrame(
        {
            "subject_id": ["S1"],
            "term": ["Fever"],
            "onset": [pd.Timestamp("2020-02-09T16:00:00Z")],  # 2020-02-10 in Shanghai
            "resolved": [pd.NaT],
            "onset_day": [0],
            "grade": [1],
            "serious": [False],
            "serious_criteria": [None],
            "relatedness": ["possibly related"],
            "expected": [True],
            "action": ["none"],
            "outcome": ["recovered"],
        }
    )
    ae = derive_ae(events, context=_context({"S1": pd.Timestamp("2020-02-10T02:00:00Z")}))
    assert ae["AESTDTC"].iloc[0] == "2020-02-10" and ae["AESTDY"].iloc[0] == 1
    writer = DatasetWriter(tmp_path / "ae.json", domain="AE", fmt="dataset-json", study_id="S")
    writer.write(ae)
    document = json.loads(writer.close().read_text(encoding="utf-8"))
    types = {c["name"]: c["dataType"] for c in document["columns"]}
    assert types["AESTDTC"] == "date"  # every value a date alone
    assert types["AEENDTC"] == "datetime"  # no value: the variable's own type
    assert not list(tmp_path.glob("*.part"))


def test_an_external_cohort_exports_under_its_own_study_id(built, tmp_path):
    from celltrial.ingest import import_file

    study = built["study"]
    path = write_long_csv(built["cohort"].observations.head(400), tmp_path / "labs.csv")
    import_file(study, path, register=True, cohort="tongji", user="tester")
    paths = export_sdtm(study, tmp_path / "ext", fmt="csv", cohort="tongji")
    assert [p.name for p in paths] == ["dm.csv", "lb.csv", "vs.csv"]  # no EX, no AE
    expected = external_study_id(study.study_id, "tongji")
    assert expected == f"{study.study_id}-EXT-TONGJI"
    for path in paths:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert (frame["STUDYID"] == expected).all()
        assert frame["USUBJID"].str.startswith(expected + "-").all()
    dm = pd.read_csv(paths[0], dtype=str, keep_default_na=False)
    assert set(dm["ARM"]) == {"External control"}
    # the trial's own export is unchanged by the cohort
    trial = pd.read_csv(built["folder"] / "csv" / "dm.csv", dtype=str)
    assert len(trial) == 3 and (trial["STUDYID"] == study.study_id).all()


def test_export_command_messages(built, tmp_path):
    import celltrial.cli  # noqa: F401  (first: it registers export.command, which imports it)
    from celltrial.export.command import export_command

    app = __import__("typer").Typer()
    app.command()(export_command)
    directory = str(built["study"].directory)
    bad = CliRunner().invoke(app, [directory, "--out", str(tmp_path / "x"), "--format", "bogus"])
    assert bad.exit_code == 1 and "csv or dataset-json" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "x").exists()
    unknown = CliRunner().invoke(app, [directory, "--out", str(tmp_path / "y"), "--cohort", "no"])
    assert unknown.exit_code == 1 and "no external cohort 'no'" in unknown.output
    good = CliRunner().invoke(app, [directory, "--out", str(tmp_path / "z")])
    assert good.exit_code == 0, good.output
    assert "wrote laboratory test results:" in good.output
    assert sorted(p.name for p in (tmp_path / "z").iterdir()) == [
        "ae.csv",
        "dm.csv",
        "ex.csv",
        "lb.csv",
        "vs.csv",
    ]


def _export_peak(tmp_path, n_subjects: int, *, warm: bool = False) -> tuple[int, int]:
    """(observations, peak bytes traced while exporting them as Dataset-JSON)."""
    cohort = simulate(PROTOCOL, n_subjects, seed=11)
    study = init_study(tmp_path / f"study{n_subjects}", user="tester")
    with study_session(study.engine, user="tester", reason="test") as session:
        load_simulated_cohort(session, study.study_id, cohort)
    rows = len(cohort.observations)
    del cohort
    if warm:  # imports and caches, so that they do not count as the export's memory
        export_sdtm(study, tmp_path / "warm", fmt="dataset-json", chunk_rows=1000)
    tracemalloc.start()
    try:
        export_sdtm(study, tmp_path / f"out{n_subjects}", fmt="dataset-json", chunk_rows=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    study.engine.dispose()
    return rows, peak


def test_export_memory_does_not_grow_with_the_rows(tmp_path):
    """Peak memory of an export of ~6k vs ~15k observations (chunks of 1000 rows): the unbounded
    export grew by about 3.7 kB per row; this one stays flat (a few bytes per row at most)."""
    small_rows, small_peak = _export_peak(tmp_path, 12, warm=True)
    big_rows, big_peak = _export_peak(tmp_path, 30)
    assert big_rows >= 2.4 * small_rows
    per_row = (big_peak - small_peak) / (big_rows - small_rows)
    assert per_row < 100, f"{per_row:.0f} bytes per row ({small_peak=}, {big_peak=})"


def test_chunks_hold_whole_subjects_on_every_backend(database_url, tmp_path):  # noqa: F811
    """The streamed read gives the rows of read_observations, each subject in one chunk
    (SQLite, and PostgreSQL's server-side cursor when a server is configured)."""
    from celltrial.store import frames as store_frames
    from celltrial.store.frames import read_observation_chunks

    cohort = simulate(PROTOCOL, 3, seed=2)
    study = init_study(tmp_path / "study", db_url=database_url, user="tester")
    try:
        with study_session(study.engine, user="tester", reason="test") as session:
            load_simulated_cohort(session, study.study_id, cohort)
        chunks = list(read_observation_chunks(study.engine, study.study_id, chunk_rows=300))
        assert len(chunks) == 3  # one subject (~500 rows) per chunk of 300 rows
        subjects = [set(chunk["subject_id"]) for chunk in chunks]
        assert all(len(s) == 1 for s in subjects) and len(set.union(*subjects)) == 3
        streamed = pd.concat(chunks, ignore_index=True)
        whole = store_frames.read_observations(
            study.engine,
            study.study_id,
            zone=ZONE,
            first_infusion=pd.Series(dtype="datetime64[ns, UTC]"),
        )
        key = ["subject_id", "time", "test"]
        pd.testing.assert_frame_equal(
            streamed[[*key, "value"]].sort_values(key).reset_index(drop=True),
            whole[[*key, "value"]].sort_values(key).reset_index(drop=True),
            check_dtype=False,
        )
        paths = export_sdtm(study, tmp_path / "out", chunk_rows=300)
        lb, vs = (pd.read_csv(p) for p in paths[3:])
        assert len(lb) + len(vs) == len(cohort.observations)
    finally:
        study.engine.dispose()
