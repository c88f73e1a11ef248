"""Efficacy machinery on real, sparse and irregular trajectories: the Tongji cohort.

The 375 Tongji inpatients are imported as an external cohort; time zero is a landmark 48 h after
admission (no infusions there). Visit assignment, baselines, per-visit summaries and the mixed
model must run on these data, and the counts per window must equal a direct count.
"""

from __future__ import annotations

import pandas as pd
import pytest

from celltrial.efficacy import (
    derive_baseline,
    derive_nominal_visits,
    summarize_mixed_model,
    summarize_visits,
)
from celltrial.store.frames import read_observations, read_subjects
from celltrial.study import init_study
from tests.ingest.conftest import LABS

TONGJI = LABS / "tongji" / "time_series_375_prerpocess_en.xlsx"
VISITS = pd.DataFrame(
    {
        "visit": ["Baseline", "Day 3", "Day 7", "Day 14"],
        "day": [0, 3, 7, 14],
        "window_before": [0, 1, 2, 3],
        "window_after": [0, 1, 2, 3],
    }
)

pytestmark = [
    pytest.mark.skipif(not TONGJI.exists(), reason=f"real data set absent: {TONGJI}"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    pytest.importorskip("openpyxl", reason="reading XLSX needs openpyxl")
    from celltrial.ingest import import_file

    study = init_study(tmp_path_factory.mktemp("tongji-eff") / "study", user="tester")
    import_file(study, TONGJI, register=True, cohort="tongji", user="tester")
    subjects = read_subjects(study.engine, study.study_id, cohort="tongji")
    landmark = subjects.set_index("subject_id")["admitted"] + pd.Timedelta(hours=48)
    landmark = landmark.dropna()
    observations = read_observations(
        study.engine,
        study.study_id,
        zone=study.protocol.study.zone,
        first_infusion=landmark,
        tests=["LYM", "HSCRP", "DDIMER", "IL6"],
        cohort="tongji",
    )
    return observations, landmark


def test_cohort_is_large_and_sparse(cohort):
    observations, landmark = cohort
    assert len(landmark) == 375
    per_subject = observations[observations["test"] == "LYM"].groupby("subject_id").size()
    assert per_subject.median() < 10 and per_subject.max() > per_subject.min()


def test_visit_windows_count_what_a_direct_count_finds(cohort):
    observations, _ = cohort
    assigned = derive_nominal_visits(observations.dropna(subset=["study_day"]), VISITS)
    scheduled = assigned[assigned["visit"].notna() & ~assigned["unscheduled"]]
    for visit in VISITS.itertuples():
        in_window = observations[
            observations["study_day"].between(
                visit.day - visit.window_before, visit.day + visit.window_after
            )
            & observations["value"].notna()
        ]
        expected = in_window.groupby("test")["subject_id"].nunique()
        got = scheduled[scheduled["visit"] == visit.visit].groupby("test")["subject_id"].nunique()
        pd.testing.assert_series_equal(
            got.sort_index(), expected.sort_index(), check_names=False, check_dtype=False
        )
        # every subject x test keeps exactly one scheduled value per visit; the rest are flagged
        keys = scheduled[scheduled["visit"] == visit.visit][["subject_id", "test"]]
        assert not keys.duplicated().any()
    assert scheduled[scheduled["visit"] == "Day 7"]["subject_id"].nunique() > 100


def test_baselines_summaries_and_mixed_model_run(cohort):
    observations, landmark = cohort
    based = derive_baseline(observations, first_infusion=landmark, window_days=2)
    chosen = based[based["is_baseline"]]
    assert (chosen["time"] < chosen["subject_id"].map(landmark)).all()
    lym = based[(based["test"] == "LYM")]
    assert chosen[chosen["test"] == "LYM"]["subject_id"].nunique() > 250
    # the DESIGN calibration: admission-window lymphocytes of this cohort have a median near 1
    assert 0.5 < chosen[chosen["test"] == "LYM"]["value"].median() < 1.3
    assigned = derive_nominal_visits(lym.dropna(subset=["study_day"]), VISITS)
    summary = summarize_visits(assigned).summary
    assert set(summary["visit"]) == set(VISITS["visit"])
    assert (summary["n"] > 0).all()
    model = summarize_mixed_model(assigned, test="LYM")
    assert model.fitted, model.caveats
    assert model.n_subjects > 200
    assert set(model.summary["visit"]) == {"Day 3", "Day 7", "Day 14"}
