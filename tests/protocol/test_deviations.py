"""Each kind of protocol deviation, from hand-made frames."""

from __future__ import annotations

import pandas as pd
import pytest

from celltrial.protocol.deviations import derive_deviations
from celltrial.protocol.release import check_lot_release, compute_endotoxin_dose
from celltrial.protocol.schedule import derive_schedule
from tests.conftest import EMPTY_IMAGING, EMPTY_STATUS, local, observations_frame, subjects_frame

LATER = local(60)

GOOD_LOT = {
    "lot_id": "L1",
    "viability_pct": 92.0,
    "markers_pct": {
        "CD73": 99.0,
        "CD90": 99.0,
        "CD105": 98.0,
        "CD34": 0.5,
        "CD45": 0.4,
        "CD14": 0.3,
        "CD19": 0.2,
        "HLA-DR": 0.6,
    },
    "sterility": "no growth",
    "mycoplasma": "negative",
    "endotoxin_eu_per_ml": 0.2,
    "release_status": "released",
    "expires": local(300),
}


def infusion(number: int, day: int, **changes) -> dict:
    row = {
        "subject_id": "S1",
        "number": number,
        "lot_id": "L1",
        "study_day": day,
        "start_time": local(day),
        "end_time": local(day) + pd.Timedelta(minutes=40),
        "cells_given": 3.0e7,
        "volume_ml": 100.0,
        "completed": True,
        "stop_reason": None,
    }
    return row | changes


def deviations(
    protocol, *, infusions=None, lots=None, observations=None, subjects=None, today=LATER
):
    infusions = (
        infusions if infusions is not None else [infusion(1, 0), infusion(2, 3), infusion(3, 6)]
    )
    return derive_deviations(
        protocol,
        subjects=subjects if subjects is not None else subjects_frame("S1"),
        lots=pd.DataFrame(lots if lots is not None else [GOOD_LOT]),
        infusions=pd.DataFrame(infusions),
        observations=observations if observations is not None else observations_frame([]),
        clinical_status=EMPTY_STATUS,
        imaging=EMPTY_IMAGING,
        today=today,
    )


def kinds(frame: pd.DataFrame, category: str = "infusion") -> list[str]:
    return frame[frame["category"] == category]["kind"].tolist()


def test_clean_infusions_have_no_infusion_deviation(make_protocol):
    assert kinds(deviations(make_protocol())) == []


def test_missed_late_and_early_infusions(make_protocol):
    protocol = make_protocol()
    missed = deviations(protocol, infusions=[infusion(1, 0), infusion(3, 6)])
    assert kinds(missed) == ["infusion_missed"]
    assert "planned day 3" in missed[missed["kind"] == "infusion_missed"].iloc[0]["detail"]
    late = deviations(protocol, infusions=[infusion(1, 0), infusion(2, 5), infusion(3, 7)])
    assert kinds(late) == ["infusion_late"]
    assert late[late["kind"] == "infusion_late"].iloc[0]["study_day"] == 5
    early = deviations(protocol, infusions=[infusion(1, 0), infusion(2, 2), infusion(3, 6)])
    assert kinds(early) == ["infusion_early"]


@pytest.mark.parametrize(
    ("cells", "deviation"), [(3.3e7, False), (3.31e7, True), (2.7e7, False), (2.69e7, True)]
)
def test_dose_tolerance(make_protocol, cells, deviation):
    frame = deviations(
        make_protocol(),
        infusions=[infusion(1, 0), infusion(2, 3, cells_given=cells), infusion(3, 6)],
    )
    assert ("dose_outside_tolerance" in kinds(frame)) is deviation


def test_dose_missing_and_incomplete(make_protocol):
    frame = deviations(
        make_protocol(),
        infusions=[
            infusion(1, 0),
            infusion(2, 3, cells_given=float("nan")),
            infusion(3, 6, completed=False, stop_reason="rigors"),
        ],
    )
    assert sorted(kinds(frame)) == ["dose_not_recorded", "infusion_incomplete"]
    assert "rigors" in frame[frame["kind"] == "infusion_incomplete"].iloc[0]["detail"]


def test_lot_not_released_fails_release_and_expired(make_protocol):
    protocol = make_protocol()
    quarantined = GOOD_LOT | {"release_status": "quarantine"}
    assert kinds(deviations(protocol, lots=[quarantined])) == ["lot_not_released"] * 3
    failing = GOOD_LOT | {"viability_pct": 79.9}
    frame = deviations(protocol, lots=[failing])
    assert kinds(frame) == ["lot_fails_release"] * 3
    assert "viability 79.9 % < 80 %" in frame[frame["category"] == "infusion"].iloc[0]["detail"]
    expired = GOOD_LOT | {"expires": local(4)}
    assert kinds(deviations(protocol, lots=[expired])) == ["lot_expired"]  # only infusion 3


def test_endotoxin_limit(make_protocol):
    # 5 EU/kg/h limit; 70 kg, 40 min infusion of 100 mL: limit at 5*70*(40/60)/100 = 2.333 EU/mL
    protocol = make_protocol()
    assert kinds(deviations(protocol, lots=[GOOD_LOT | {"endotoxin_eu_per_ml": 2.33}])) == []
    assert (
        kinds(deviations(protocol, lots=[GOOD_LOT | {"endotoxin_eu_per_ml": 2.34}]))
        == ["endotoxin_above_limit"] * 3
    )
    assert compute_endotoxin_dose(2.0, 100, 50, 2.0) == pytest.approx(2.0)


def test_release_check_lists_every_failure(make_protocol):
    criteria = make_protocol().product.release
    assert check_lot_release(GOOD_LOT, criteria) == []
    at_limits = GOOD_LOT | {
        "viability_pct": 80.0,
        "markers_pct": GOOD_LOT["markers_pct"] | {"CD73": 95.0, "CD34": 2.0},
    }
    assert check_lot_release(at_limits, criteria) == []
    bad = GOOD_LOT | {
        "markers_pct": GOOD_LOT["markers_pct"] | {"CD105": 94.9, "HLA-DR": 2.1},
        "sterility": "growth",
        "mycoplasma": None,
    }
    bad["markers_pct"].pop("CD90")
    failures = check_lot_release(bad, criteria)
    assert "CD90 not tested" in failures
    assert "CD105 94.9 % < 95 %" in failures
    assert "HLA-DR 2.1 % > 2 %" in failures
    assert any(f.startswith("sterility growth") for f in failures)
    assert any(f.startswith("mycoplasma not tested") for f in failures)


def test_release_check_of_a_lot_without_qc_results_yet(make_protocol):
    # a lot read from the database has NaN (not None) where no result was entered yet
    criteria = make_protocol().product.release
    pending = GOOD_LOT | {"sterility": float("nan"), "mycoplasma": "  ", "viability_pct": None}
    failures = check_lot_release(pending, criteria)
    assert "sterility not tested (need no growth)" in failures
    assert "mycoplasma not tested (need negative)" in failures
    assert "viability not tested" in failures
    assert check_lot_release(GOOD_LOT | {"sterility": " No Growth "}, criteria) == []


def test_visit_and_assessment_deviations(make_protocol):
    protocol = make_protocol()
    everything = [
        (code, visit.day) for visit in protocol.visits for code in visit.labs + visit.vitals
    ]
    daily = [(code, day) for day in range(0, 29) for code in ("SPO2", "FIO2")]
    rows = [("S1", code, day) for code, day in everything + daily]
    rows = [r for r in rows if not (r[1] == "CRP" and r[2] == 3)]  # one missed assessment
    rows = [r for r in rows if r[2] != 14 or r[1] in ("SPO2", "FIO2")]  # Day 14 labs missed...
    rows += [("S1", code, 20) for code in next(v for v in protocol.visits if v.day == 14).labs]
    rows = [r for r in rows if r[2] != 28]  # Day 28 entirely missed
    rows = [r for r in rows if not (r[1] == "SPO2" and r[2] in (4, 9))]
    status = pd.DataFrame(
        {
            "subject_id": ["S1"] * 29,
            "time": [local(d) for d in range(29)],
            "study_day": list(range(29)),
            "who_scale": [6] * 29,
        }
    )
    frame = derive_deviations(
        protocol,
        subjects=subjects_frame("S1"),
        lots=pd.DataFrame([GOOD_LOT]),
        infusions=pd.DataFrame([infusion(1, 0), infusion(2, 3), infusion(3, 6)]),
        observations=observations_frame(rows),
        clinical_status=status,
        imaging=pd.DataFrame(
            {
                "subject_id": ["S1"] * 4,
                "time": [local(d) for d in (0, 10, 14, 28)],
                "study_day": [0, 10, 14, 28],
            }
        ),
        today=LATER,
    )
    by_kind = {k: g for k, g in frame.groupby("kind")}
    missed = by_kind["assessment_missed"]
    assert "Day 3: CRP not done" in missed["what"].tolist()
    oow = by_kind["assessment_out_of_window"].iloc[0]
    assert oow["study_day"] == 20 and oow["what"].startswith("Day 14:")
    assert "window day 12 to 16" in oow["detail"]
    # Day 28: CT was done, everything else missing -> assessments missed, not a missed visit
    day28 = missed[missed["what"].str.startswith("Day 28")]
    assert len(day28) == 1 and "CRP" in day28.iloc[0]["what"]
    daily_missed = by_kind["daily_assessment_missed"]
    assert daily_missed["what"].tolist() == [
        "daily SPO2 missing on 3 day(s)",
        "daily FIO2 missing on 1 day(s)",
    ]
    assert daily_missed["detail"].tolist() == ["days 4, 9, 28", "days 28"]


def test_whole_visit_missed(make_protocol):
    frame = deviations(make_protocol(), observations=observations_frame([]))
    missed_visits = frame[frame["kind"] == "visit_missed"]["what"].tolist()
    assert "Day 10 missed" in missed_visits
    assert not frame[
        (frame["kind"] == "assessment_missed") & frame["what"].str.startswith("Day 10")
    ].shape[0]


def test_deviations_from_a_given_schedule_are_the_same(make_protocol):
    protocol = make_protocol()
    subjects = subjects_frame("S1", died={"S1": local(20, 3)})
    frames = {
        "infusions": pd.DataFrame([infusion(1, 0), infusion(2, 5), infusion(3, 6)]),
        "observations": observations_frame([("S1", "CRP", 3), ("S1", "SPO2", 2)]),
        "clinical_status": EMPTY_STATUS,
        "imaging": EMPTY_IMAGING,
    }
    schedule = derive_schedule(protocol, subjects, *frames.values(), today=LATER)
    kwargs = frames | {"subjects": subjects, "lots": pd.DataFrame([GOOD_LOT]), "today": LATER}
    given = derive_deviations(protocol, **kwargs, schedule=schedule)
    pd.testing.assert_frame_equal(given, derive_deviations(protocol, **kwargs))
    assert {"infusion_late", "visit_missed", "daily_assessment_missed"} <= set(given["kind"])
