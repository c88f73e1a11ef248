"""Entry checks of the infusion and adverse-event forms and API (issue 25, item 5), on each backend:
a dose outside the protocol's tolerance refused unless overridden with a reason; unlikely dates
saved once confirmed; grade 5 serious and fatal; errors beside their fields in plain words; one
oxygen-support term per device; open queries named where a casebook is signed. The override and
the confirmed warnings are in the audit trail."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from celltrial.protocol.model import Dose
from celltrial.services.entry_checks import CLOCK_SKEW, EntryCheck, check_dose
from celltrial.store.database import study_session
from celltrial.store.models import Subject
from tests.web.conftest import NOW, RELEASED

DOSE = 3.0e7  # the built-in protocol's cells per infusion, tolerance ±10 %
#: What a user must never read on a page or in an API message.
TECHNICAL = ("Timestamp(", "ValueError", "Error", "Input should", "float_parsing", "Traceback")


@pytest.fixture(scope="module")
def study(app):
    """The web study, plus S005 who died 2 days ago, S900 with no enrolment date and S901 with
    no enrolment date, admitted 5 days ago."""
    handle = app.state.study
    with study_session(handle.engine, user="setup", reason="test subjects") as session:
        session.add(
            Subject(
                study_id=handle.study_id,
                code="S005",
                enrolled_at=NOW - timedelta(days=12),
                died_at=NOW - timedelta(days=2),
                weight_kg=70,
            )
        )
        session.add(Subject(study_id=handle.study_id, code="S900"))
        session.add(
            Subject(study_id=handle.study_id, code="S901", admitted_at=NOW - timedelta(days=5))
        )
    return handle


def iso(days: float, hours: float = 0) -> str:
    return (NOW - timedelta(days=days, hours=hours)).isoformat()


def infusion(subject: str, cells: float, **more) -> dict:
    body = {
        "lot_code": RELEASED,
        "vial_id": "V-1",
        "label_subject_code": subject,
        "started_at": iso(10),
        "cells_given": cells,
    }
    return body | more


def plain(text: str) -> bool:
    """No Python or library words in a message a user reads."""
    return not any(word in text for word in TECHNICAL)


# --- the rules, without a database -------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "completed", "refused"),
    [
        (DOSE * 1.10, True, False),  # the tolerance's edge: accepted
        (DOSE * 1.1001, True, True),
        (DOSE * 0.90, True, False),
        (DOSE * 0.8999, True, True),
        (DOSE * 0.5, False, False),  # a stopped infusion gives less than planned
        (DOSE * 1.2, False, True),  # but never more
    ],
)
def test_the_dose_is_refused_outside_the_tolerance(cells, completed, refused):
    check = EntryCheck("infusion")
    check_dose(check, "cells_given", cells, Dose(cells=DOSE), weight_kg=None, completed=completed)
    assert bool(check.overridable) is refused and not check.problems and not check.warnings


def test_a_per_kg_dose_is_checked_with_the_weight_and_warned_without():
    dose = Dose(cells=1e6, basis="per_kg")
    check = EntryCheck("infusion")
    check_dose(check, "cells_given", 7.7e7, dose, weight_kg=70, completed=True)  # 1.1 × 7e7
    assert not check.overridable
    check_dose(check, "cells_given", 7.8e7, dose, weight_kg=70, completed=True)
    [said] = check.overridable["cells_given"]
    assert (
        said == "7.8 × 10^7 cells is 1.1 × the protocol dose of 7 × 10^7 (allowed ±10 %): "
        "check the number"
    )
    check_dose(check, "cells_given", 7e7, dose, weight_kg=None, completed=True)
    assert "weight is not recorded" in check.warnings["cells_given"][0]


def test_settle_needs_a_reason_for_an_override_and_a_confirmation_for_a_warning():
    check = EntryCheck("infusion", {"cells_given": "cells given"})
    check.refuse_unless_overridden("cells_given", "too many")
    check.warn("started_at", "before the study")
    with pytest.raises(Exception, match=r"cells given: too many \(give a reason to override\)"):
        check.settle(confirmed=True)
    with pytest.raises(Exception, match=r"started at: before the study \(check it"):
        check.settle(override_reason="ordered by the PI")
    with pytest.raises(Exception, match="give a reason"):
        check.settle(override_reason="   ", confirmed=True)  # blank is no reason
    note = check.settle(override_reason="ordered by the PI", confirmed=True)
    assert note == (
        "overridden (cells given: too many): ordered by the PI; "
        "warning confirmed: started at: before the study"
    )


# --- the dose, through the API and the form ----------------------------------------------------


def test_a_dose_30000_times_the_protocol_dose_is_refused_until_overridden(clients, study):
    coordinator = clients["coordinator"]
    url = "/api/v1/subjects/S001/infusions"
    refused = coordinator.post(url, json=infusion("S001", DOSE * 30000))
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["overridable"] == {
        "cells_given": [
            "9 × 10^11 cells is 30,000 × the protocol dose of 3 × 10^7 (allowed ±10 %): "
            "check the number"
        ]
    }
    assert body["problems"] == {} and body["warnings"] == {} and plain(body["detail"])
    assert coordinator.get(url).json() == []  # nothing stored

    edge = coordinator.post(url, json=infusion("S001", DOSE * 1.1))
    assert edge.status_code == 201, edge.text
    overridden = coordinator.post(
        url,
        json=infusion(
            "S001", DOSE * 1.5, vial_id="V-2", started_at=iso(7), override_reason="PI: 1.5 × dose"
        ),
    )
    assert overridden.status_code == 201, overridden.text
    trail = coordinator.get(f"/api/v1/audit/infusion/{overridden.json()['id']}").json()
    reason = trail["entries"][0]["reason"]
    assert reason.startswith(
        "infusion recorded; overridden (cells given: 4.5 × 10^7 cells is 1.5 ×"
    )
    assert reason.endswith("): PI: 1.5 × dose")
    # an edit that leaves the dose as it is does not ask again
    stored = overridden.json()
    change = infusion("S001", DOSE * 1.5, vial_id="V-2b", started_at=iso(7))
    change.pop("label_subject_code")
    edited = coordinator.put(
        f"/api/v1/infusions/{stored['id']}",
        json=change | {"version": stored["version"], "reason": "vial id misread"},
    )
    assert edited.status_code == 200, edited.text


def test_the_infusion_form_shows_the_dose_problem_beside_the_field_and_asks_a_reason(
    clients, study
):
    coordinator = clients["coordinator"]
    page = coordinator.get("/subjects/S002/infusions/new")
    form = {
        "csrf_token": coordinator.csrf,
        "lot_code": RELEASED,
        "vial_id": "V-9",
        "label_subject_code": "S002",
        "started_at": iso(9)[:16],
        "cells_given": "9e11",
        "completed": "on",
    }
    assert page.status_code == 200 and 'name="override_reason"' not in page.text
    refused = coordinator.post("/subjects/S002/infusions", data=form, follow_redirects=False)
    assert refused.status_code == 422
    beside = re.search(r'name="cells_given"[^>]*><span class="field-error">([^<]+)<', refused.text)
    assert beside and "30,000 × the protocol dose" in beside.group(1)
    assert 'name="override_reason"' in refused.text and plain(refused.text.split("<main")[1])
    saved = coordinator.post(
        "/subjects/S002/infusions",
        data=form | {"override_reason": "as prescribed"},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text


# --- dates: warnings saved once confirmed ------------------------------------------------------


def test_an_infusion_before_the_study_or_after_death_is_saved_once_confirmed(clients, study):
    coordinator = clients["coordinator"]
    # S003 enrolled 12 days ago, as the study's first subjects: 12 days ago is no warning
    at_start = coordinator.post(
        "/api/v1/subjects/S003/infusions", json=infusion("S003", DOSE, started_at=iso(12))
    )
    assert at_start.status_code == 201, at_start.text
    early = coordinator.post(
        "/api/v1/subjects/S003/infusions",
        json=infusion("S003", DOSE, vial_id="V-2", started_at=iso(12, hours=1)),
    )
    assert early.status_code == 422
    [said] = early.json()["warnings"]["started_at"]
    assert "is before subject S003's enrolment" in said and plain(said)
    # S005 died 2 days ago
    after = infusion("S005", DOSE, started_at=iso(1))
    refused = coordinator.post("/api/v1/subjects/S005/infusions", json=after)
    [said] = refused.json()["warnings"]["started_at"]
    assert "is after subject S005's death" in said
    saved = coordinator.post(
        "/api/v1/subjects/S005/infusions", json=after | {"confirm_warnings": True}
    )
    assert saved.status_code == 201, saved.text
    trail = coordinator.get(f"/api/v1/audit/infusion/{saved.json()['id']}").json()
    assert "warning confirmed: start: " in trail["entries"][0]["reason"]
    assert "after subject S005's death" in trail["entries"][0]["reason"]


def test_ae_dates_years_off_are_refused_or_confirmed(clients, study):
    coordinator = clients["coordinator"]
    url = "/api/v1/subjects/S001/adverse-events"
    event = {"term": "Fever", "grade": 1, "outcome": "recovered"}
    future = coordinator.post(url, json=event | {"onset_at": "2031-01-01T10:00:00+00:00"})
    assert future.status_code == 422 and "onset_at" in future.json()["problems"]
    assert "a time that has passed" in future.json()["problems"]["onset_at"][0]
    long_ago = coordinator.post(url, json=event | {"onset_at": "1990-01-01T10:00:00+00:00"})
    assert long_ago.status_code == 422 and "enrolment" in long_ago.json()["problems"]["onset_at"][0]
    after_death = coordinator.post(
        "/api/v1/subjects/S005/adverse-events", json=event | {"onset_at": iso(1)}
    )
    assert "death" in after_death.json()["problems"]["onset_at"][0]
    assert all(plain(r.json()["detail"]) for r in (future, long_ago, after_death))

    # no enrolment date, no infusion: 1990 is before the study began — a warning
    unenrolled = event | {"onset_at": "1990-01-01T10:00:00+00:00"}
    warned = coordinator.post("/api/v1/subjects/S900/adverse-events", json=unenrolled)
    assert warned.status_code == 422 and warned.json()["problems"] == {}
    assert "before the study began" in warned.json()["warnings"]["onset_at"][0]
    confirmed = coordinator.post(
        "/api/v1/subjects/S900/adverse-events", json=unenrolled | {"confirm_warnings": True}
    )
    assert confirmed.status_code == 201, confirmed.text
    # before 1900 no study datum: refused, confirmed or not
    ancient = event | {"onset_at": "1899-12-31T12:00:00+00:00", "confirm_warnings": True}
    refused = coordinator.post("/api/v1/subjects/S900/adverse-events", json=ancient)
    assert refused.status_code == 422  # the schema's years, said by field
    assert "in the years 1900–2099" in refused.json()["detail"][0]["msg"]
    # not enrolled, admitted 5 days ago: at admission nothing, an hour before a warning
    at_admission = event | {"onset_at": iso(5)}
    url_901 = "/api/v1/subjects/S901/adverse-events"
    assert coordinator.post(url_901, json=at_admission).status_code == 201
    before = coordinator.post(url_901, json=event | {"onset_at": iso(5, hours=1)})
    assert "is before subject S901's admission" in before.json()["warnings"]["onset_at"][0]

    # a resolution in the future: beyond the clock skew a warning, within it none
    soon = (NOW + CLOCK_SKEW - timedelta(minutes=1)).isoformat()
    later = (NOW + timedelta(days=1)).isoformat()
    ok = coordinator.post(url, json=event | {"onset_at": iso(3), "resolved_at": soon})
    assert ok.status_code == 201, ok.text
    warned = coordinator.post(url, json=event | {"onset_at": iso(3), "resolved_at": later})
    assert "is in the future" in warned.json()["warnings"]["resolved_at"][0]
    # resolved after the death: a warning
    dead = coordinator.post(
        "/api/v1/subjects/S005/adverse-events",
        json=event | {"onset_at": iso(5), "resolved_at": iso(1)},
    )
    assert "after subject S005's death" in dead.json()["warnings"]["resolved_at"][0]


# --- grade 5 -----------------------------------------------------------------------------------


def test_grade_5_must_be_serious_and_fatal(clients, study):
    coordinator = clients["coordinator"]
    url = "/api/v1/subjects/S002/adverse-events"
    base = {"term": "Sepsis", "onset_at": iso(4)}
    refused = coordinator.post(url, json=base | {"grade": 5, "outcome": "recovered"})
    assert refused.status_code == 422
    problems = refused.json()["problems"]
    assert problems == {
        "serious": [
            "grade 5 (death) but not recorded as serious: record it as serious with the "
            "criterion 'results in death'"
        ],
        "outcome": [
            "grade 5 (death) but outcome recovered: set the outcome to fatal, or correct the grade"
        ],
    }
    no_outcome = coordinator.post(
        url, json=base | {"grade": 5, "serious": True, "serious_criteria": ["results in death"]}
    )
    assert list(no_outcome.json()["problems"]) == ["outcome"]
    assert "outcome not given" in no_outcome.json()["problems"]["outcome"][0]
    grade_4 = coordinator.post(url, json=base | {"grade": 4, "outcome": "recovered"})
    assert grade_4.status_code == 201, grade_4.text
    # an edit to grade 5 is held to the same rules
    stored = grade_4.json()
    edit = base | {"grade": 5, "outcome": "recovered", "version": stored["version"]}
    refused = coordinator.put(
        f"/api/v1/adverse-events/{stored['id']}", json=edit | {"reason": "died of sepsis"}
    )
    assert refused.status_code == 422 and set(refused.json()["problems"]) == {"serious", "outcome"}
    fatal = base | {
        "grade": 5,
        "serious": True,
        "serious_criteria": ["results in death"],
        "outcome": "fatal",
        "onset_at": iso(3),
    }
    assert coordinator.post(url, json=fatal).status_code == 201


def test_the_event_form_says_what_to_set_beside_serious_and_outcome(clients, study):
    coordinator = clients["coordinator"]
    form = {
        "csrf_token": coordinator.csrf,
        "term": "ARDS",
        "onset_at": iso(4)[:16],
        "grade": "5",
        "outcome": "recovered",
    }
    page = coordinator.post("/subjects/S003/adverse-events", data=form)
    assert page.status_code == 422
    assert re.search(
        r"Serious adverse event</label><span class=\"field-error\">grade 5 \(death\) but not "
        r"recorded as serious: record it as serious",
        page.text,
    )
    assert re.search(
        r'</select><span class="field-error">grade 5 \(death\) but outcome recovered: set the '
        r"outcome to fatal",
        page.text,
    )


# --- plain words beside the fields, on every entry form ----------------------------------------


@pytest.mark.parametrize(
    ("url", "form", "field", "said"),
    [
        (
            "/subjects/S004/infusions",
            {
                "lot_code": RELEASED,
                "vial_id": "V",
                "label_subject_code": "S004",
                "started_at": "2020-02-10T10:00",
                "cells_given": "lots",
            },
            "cells_given",
            "'lots' is not a number",
        ),
        (
            "/subjects/S004/infusions",
            {
                "lot_code": RELEASED,
                "vial_id": "V",
                "label_subject_code": "S004",
                "started_at": "31/02/2020",
                "cells_given": "3e7",
            },
            "started_at",
            "'31/02/2020' is not a date and time (e.g. 2020-02-10 14:30)",
        ),
        (
            "/subjects/S004/infusions",
            {
                "lot_code": RELEASED,
                "vial_id": "",
                "label_subject_code": "S004",
                "started_at": "2020-02-10T10:00",
                "cells_given": "3e7",
            },
            "vial_id",
            "required",
        ),
        (
            "/subjects/S004/adverse-events",
            {"term": "Fever", "onset_at": "2020-02-31T10:00"},
            "onset_at",
            "'2020-02-31T10:00' is not a date and time",
        ),
        (
            "/subjects/S004/adverse-events",
            {"term": "", "onset_at": "2020-02-10T10:00"},
            "term",
            "required",
        ),
        (
            "/subjects/S004/vital-signs",
            {"time": "31/02/2020", "heart_rate": "80"},
            "time",
            "'31/02/2020' is not a date and time",
        ),
        (
            "/subjects/S004/vital-signs",
            {"time": "2020-02-10T10:00", "heart_rate": "fast"},
            "heart_rate",
            "'fast' is not a measured number",
        ),
        (
            "/subjects/S004/clinical-status",
            {"assessed_at": "2020-02-10T10:00", "who_scale": "five"},
            "who_scale",
            "'five' is not a whole number",
        ),
        (
            "/subjects/S004/clinical-status",
            {"assessed_at": "2020-02-10T10:00"},
            "who_scale",
            "required",
        ),
    ],
)
def test_bad_input_is_said_beside_its_field_in_plain_words(clients, study, url, form, field, said):
    coordinator = clients["coordinator"]
    page = coordinator.post(url, data=form | {"csrf_token": coordinator.csrf})
    assert page.status_code == 422, page.text
    # the message within the field's label, after its input
    beside = re.search(
        rf'name="{field}"(?:(?!</label>).)*?<span class="field-error">([^<]+)<', page.text, re.S
    )
    assert beside, page.text
    assert html.unescape(beside.group(1)).startswith(said)
    assert plain(page.text.split("<main", 1)[1])


# --- oxygen support ----------------------------------------------------------------------------


def test_the_status_form_offers_one_oxygen_term_per_device(clients, study):
    coordinator = clients["coordinator"]
    page = coordinator.get("/subjects/S004/clinical-status/new").text
    select = re.search(r'<select name="oxygen_support">(.*?)</select>', page, re.S).group(1)
    offered = re.findall(r"<option\s*>([^<]+)</option>", select)
    assert offered == [
        "room air",
        "nasal cannula",
        "face mask",
        "venturi mask",
        "non-rebreather mask",
        "high-flow nasal cannula",
        "non-invasive ventilation",
        "invasive ventilation",
        "invasive ventilation and vasopressors",
        "ecmo",
    ]
    # a synonym stays accepted where data come from other systems
    saved = coordinator.post(
        "/api/v1/subjects/S004/clinical-status",
        json={"assessed_at": iso(3), "who_scale": 6, "oxygen_support": "hfnc"},
    )
    assert saved.status_code == 201, saved.text


# --- the casebook ------------------------------------------------------------------------------


def test_signing_a_casebook_with_open_queries_says_how_many_and_which(clients, study):
    coordinator, dm, investigator = (
        clients["coordinator"],
        clients["data_manager"],
        clients["investigator"],
    )
    assert "open-queries" not in investigator.get("/subjects/S002/sign").text
    events = []  # two events of this test's own (not those earlier tests happened to record)
    for term, day in (("Headache", 4), ("Nausea", 5)):
        recorded = coordinator.post(
            "/api/v1/subjects/S002/adverse-events",
            json={"term": term, "onset_at": iso(day), "grade": 1, "outcome": "recovered"},
        )
        assert recorded.status_code == 201, recorded.text
        events.append(recorded.json())
    for event, question in zip(events, ("Grade confirmed?", "Onset from the chart?"), strict=True):
        raised = dm.post(
            "/api/v1/queries",
            json={
                "table": "adverse_event",
                "row_id": event["id"],
                "field": "grade",
                "question": question,
            },
        )
        assert raised.status_code == 201, raised.text
    page = investigator.get("/subjects/S002/sign").text
    warning = re.search(
        r'<div class="warning" role="status" id="open-queries">(.*?)</div>', page, re.S
    )
    assert warning and "2 queries are not closed" in warning.group(1)
    assert "Grade confirmed?" in warning.group(1) and "Onset from the chart?" in warning.group(1)
    assert "Sign anyway" in page
    from tests.web.conftest import PASSWORD

    sign = {"password": PASSWORD, "meaning": "review"}
    refused = investigator.post("/api/v1/subjects/S002/signatures", json=sign)
    assert refused.status_code == 422, refused.text  # the API confirms too, explicitly
    assert len(refused.json()["warnings"]["open_queries"]) == 2
    signed = investigator.post(
        "/api/v1/subjects/S002/signatures", json=sign | {"confirm_open_queries": True}
    )
    assert signed.status_code == 201, signed.text
    trail = coordinator.get(f"/api/v1/audit/casebook_signature/{signed.json()['id']}").json()
    assert "signed with 2 open queries (#" in trail["entries"][0]["reason"]
