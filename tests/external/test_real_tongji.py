"""End to end: the demo's simulated treated subjects against the imported Tongji cohort."""

from __future__ import annotations

import pytest

from celltrial.cohort import simulate
from celltrial.external.analysis import summarize_external
from celltrial.external.cohorts import choose_cohort, read_external_cohorts, read_external_frames
from celltrial.external.spec import load_target_trial
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.study import init_study, read_study_frames
from tests.ingest.conftest import LABS

TONGJI = LABS / "tongji" / "time_series_375_prerpocess_en.xlsx"

pytestmark = [
    pytest.mark.skipif(not TONGJI.exists(), reason=f"real data set absent: {TONGJI}"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    pytest.importorskip("openpyxl", reason="reading XLSX needs openpyxl")
    from celltrial.ingest import import_file

    study = init_study(tmp_path_factory.mktemp("external") / "study", user="tester")
    cohort = simulate(study.protocol, 5, seed=2020)  # the demo's cohort
    with study_session(study.engine, user="tester", reason="demo cohort") as session:
        load_simulated_cohort(session, study.study_id, cohort)
    import_file(study, TONGJI, register=True, cohort="tongji", user="tester")
    spec = load_target_trial()
    frames = read_study_frames(study)
    assert read_external_cohorts(study) == ["tongji"]
    subjects, observations = read_external_frames(study, choose_cohort(study, None))
    result = summarize_external(
        frames.subjects, frames.observations, subjects, observations, spec=spec, cohort="tongji"
    )
    return study, frames, result


def test_external_cohort_stays_out_of_the_study_tables(comparison):
    _study, frames, _result = comparison
    assert len(frames.subjects) == 5 and frames.subjects["cohort"].isna().all()


def test_eligibility_and_matching_counts(comparison):
    _study, _frames, result = comparison
    assert result.eligibility_external.n == 375
    assert 100 < result.eligibility_external.n_eligible < 250
    assert result.eligibility_treated.n == 5
    assert result.matching.n_matched_treated >= 1
    matched_controls = result.matching.matched[result.matching.matched["arm"] == "external"]
    # exact matching on sex and age band holds in every pair
    base = result.baseline.set_index("subject_id")
    for pair in result.matching.summary.itertuples():
        assert base.at[pair.treated_id, "sex"] == base.at[pair.control_id, "sex"]
        assert base.at[pair.treated_id, "age_band"] == base.at[pair.control_id, "age_band"]
    assert len(matched_controls) == result.matching.n_controls_matched


def test_controls_time_zero_precedes_their_baseline_free_follow_up(comparison):
    _study, _frames, result = comparison
    eligible = result.baseline[result.baseline["eligible"]]
    for marker in ("LYM", "CRP"):
        assert (eligible[f"{marker}_time"] < eligible["time_zero"]).all()


def test_outcomes_and_caveats(comparison):
    _study, _frames, result = comparison
    assert set(result.mortality.summary["arm"]) == {"treated", "external"}
    assert -1 <= result.mortality.risk_difference <= 1
    assert result.models["LYM"].fitted
    text = " ".join(result.caveats)
    for phrase in ("admission", "oxygen", "IL-6", "extraction", "2020", "hs-CRP"):
        assert phrase in text
    assert result.sensitivity is not None and "main analysis" in result.sensitivity.scenarios
    assert "matched also on days since admission" in result.sensitivity.scenarios


def test_intervals_are_named_and_hold_their_estimates(comparison):
    _study, _frames, result = comparison
    summary = result.summary
    assert summary["interval"].str.len().gt(0).all()
    finite = summary[summary["ci_low"].notna()]
    assert len(finite) and (finite["ci_low"] <= finite["value"]).all()
    assert (finite["value"] <= finite["ci_high"]).all()
    changes = finite[finite["estimate"].str.contains("fold")]
    assert (changes["interval"] == "Welch t, log scale").all()
    assert "bootstrap" not in result.method
    # landmark alignment is reported beside the main result
    assert result.landmark is not None
    assert "days_since_admission" in result.landmark.variables
    assert {"main_value", "value"} <= set(result.landmark.summary.columns)
    timing = result.landmark.timing.set_index(["matching", "arm"])
    assert (
        timing.loc[("main", "treated"), "median_days_since_admission"]
        > timing.loc[("main", "external"), "median_days_since_admission"]
    )
    assert "variance ratio 0.5–2" in result.balance.rule


def test_section_renders(comparison):
    from celltrial.external.section import build_external_section
    from celltrial.overview import summarize_study
    from celltrial.report.sections import ReportContext

    study, frames, _result = comparison
    context = ReportContext(
        study=study, frames=frames, overview=summarize_study(study.protocol, frames)
    )
    section = build_external_section(context)
    assert section is not None and section.id == "external"
    html = str(section.html)
    assert html.count("<figure>") == 3 and "Love plot" in html and "hs-CRP" in html
    assert "Welch t" in html and "aligned landmarks" in html and "Koopman" in html
