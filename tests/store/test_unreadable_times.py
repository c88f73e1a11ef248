"""A stored time celltrial cannot read (year 0, year 10000, a text that is no date, a year outside
1900–2099; written by an older celltrial or an edit outside it) is read as unknown, left out, and
named by the scan: table, row, subject, which row of the subject, column and stored text."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from celltrial.cohort import simulate
from celltrial.protocol import DEFAULT_PROTOCOL, load_builtin_protocol
from celltrial.store import unreadable_times
from celltrial.store.database import study_session
from celltrial.store.loading import load_simulated_cohort
from celltrial.store.types import UTCDateTime
from celltrial.store.unreadable_times import UnreadableTime, find_unreadable_times
from celltrial.study import init_study, read_study_frames

#: Year 0 as an older celltrial stored 0001-01-01 08:00 (+08:00), and a year after 9999, as each
#: backend holds them (PostgreSQL has no year 0: 1 BC is the year before 1).
YEAR_0 = {"sqlite": "0000-12-31 16:00:00.000000", "postgresql": "0001-01-01 00:00:00+00 BC"}
SHOWN_YEAR_0 = {"sqlite": "0000-12-31 16:00:00", "postgresql": "0001-01-01 00:00:00+00 BC"}
YEAR_10000 = {"sqlite": "10000-01-01 00:00:00.000000", "postgresql": "12000-01-01 00:00:00+00"}
SHOWN_YEAR_10000 = {"sqlite": "10000-01-01 00:00:00", "postgresql": "12000-01-01 00:00:00+00"}


@pytest.fixture
def study(database_url, tmp_path):
    protocol = load_builtin_protocol(DEFAULT_PROTOCOL)
    handle = init_study(tmp_path / "study", db_url=database_url, user="tester")
    with study_session(handle.engine, user="tester", reason="test") as session:
        load_simulated_cohort(session, handle.study_id, simulate(protocol, 2, seed=3))
    unreadable_times.forget_unreadable_times()
    yield handle
    unreadable_times.forget_unreadable_times()
    handle.engine.dispose()


def backend(study) -> str:
    return study.engine.dialect.name


def store(study, sql: str, **values) -> None:
    with study.engine.begin() as connection:
        connection.execute(sa.text(sql), values)


def observation(study, row_id: int) -> tuple[str, str]:
    """(subject code, test) of observation ``row_id``."""
    with study.engine.connect() as connection:
        return tuple(
            connection.execute(
                sa.text(
                    "select s.code, o.test from observation o join subject s "
                    "on s.id = o.subject_id where o.id = :id"
                ),
                {"id": row_id},
            ).one()
        )


def test_an_observation_of_year_0_is_left_out_and_named(study):
    before = read_study_frames(study)
    assert not unreadable_times.unreadable_times_noted()
    code, test = observation(study, 1)
    store(study, "update observation set time = :t where id = 1", t=YEAR_0[backend(study)])

    after = read_study_frames(study)

    assert len(after.observations) == len(before.observations) - 1
    # the one row left out is observation 1 (the first of its subject and test); the rest intact
    pd.testing.assert_frame_equal(
        after.observations,
        before.observations[
            ~(before.observations["subject_id"].eq(code) & before.observations["test"].eq(test))
            | before.observations.duplicated(["subject_id", "test"])
        ].reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(after.subjects, before.subjects)
    assert unreadable_times.unreadable_times_noted()
    assert find_unreadable_times(study.engine) == [
        UnreadableTime("observation", "1", "time", SHOWN_YEAR_0[backend(study)], code, test)
    ]
    assert unreadable_times.unreadable_time_warnings(study.engine) == [
        "the study database holds a time that cannot be read: observation row 1 "
        f'(subject {code}, {test}), time "{SHOWN_YEAR_0[backend(study)]}": left out until '
        "corrected"
    ]


def test_a_death_time_after_9999_becomes_unknown(study):
    store(
        study, "update subject set died_at = :t where code = 'S002'", t=YEAR_10000[backend(study)]
    )
    store(study, "update subject set died_at = :t where code = 'S001'", t="2020-03-01 00:00:00+00")

    subjects = read_study_frames(study).subjects.set_index("subject_id")

    assert pd.isna(subjects.loc["S002", "died"])
    assert subjects.loc["S001", "died"] == pd.Timestamp("2020-03-01", tz="UTC")
    (found,) = find_unreadable_times(study.engine)
    assert (found.table, found.column, found.subject, found.which) == (
        "subject",
        "died_at",
        "S002",
        None,
    )
    assert found.text == SHOWN_YEAR_10000[backend(study)]


def test_an_adverse_event_and_an_infusion_name_their_term_and_number(study):
    store(study, "update adverse_event set onset_at = :t where id = 1", t=YEAR_0[backend(study)])
    store(study, "update infusion set started_at = :t where id = 2", t=YEAR_0[backend(study)])
    with study.engine.connect() as connection:
        term, ae_subject = connection.execute(
            sa.text(
                "select a.term, s.code from adverse_event a join subject s "
                "on s.id = a.subject_id where a.id = 1"
            )
        ).one()
        number, infusion_subject = connection.execute(
            sa.text(
                "select i.number, s.code from infusion i join subject s "
                "on s.id = i.subject_id where i.id = 2"
            )
        ).one()

    frames = read_study_frames(study)

    assert frames.adverse_events["onset"].notna().all()
    assert frames.infusions["start_time"].isna().sum() == 1
    shown = SHOWN_YEAR_0[backend(study)]
    assert find_unreadable_times(study.engine) == [
        UnreadableTime("adverse_event", "1", "onset_at", shown, ae_subject, term),
        UnreadableTime(
            "infusion", "2", "started_at", shown, infusion_subject, f"infusion {number}"
        ),
    ]


def test_the_scan_finds_every_kind_of_unreadable_text_on_sqlite(study):
    if backend(study) != "sqlite":
        pytest.skip("SQLite keeps any text in a time column; PostgreSQL only instants")
    stored = {
        2: "not a date",  # no date at all
        3: "2020-02-30 08:00:00.000000",  # a day the month does not have
        4: "1850-01-01 00:00:00.000000",  # readable, before 1900
        5: "2020-02-10T08:00:00+08:00",  # readable (another form of 2020-02-10 00:00 UTC)
        6: "2020-02-10 23:59:59.999999",  # readable (SQLite's own date functions round it)
    }
    for row_id, text in stored.items():
        store(study, "update observation set time = :t where id = :id", t=text, id=row_id)
    store(study, "update observation set time = 3.5 where id = 7")  # a number, not a text

    found = find_unreadable_times(study.engine)

    assert [(f.row_id, f.text) for f in found] == [
        ("2", "not a date"),
        ("3", "2020-02-30 08:00:00"),
        ("4", "1850-01-01 00:00:00"),
        ("7", "3.5"),
    ]
    assert "a time outside the years 1900–2099: observation row 4" in found[2].sentence
    assert "a time that cannot be read: observation row 3" in found[1].sentence
    times = read_study_frames(study).observations["time"]
    assert pd.Timestamp("2020-02-10 00:00", tz="UTC") in set(times)


def test_nothing_is_scanned_unless_an_unreadable_time_was_met(study, monkeypatch):
    store(study, "update observation set time = :t where id = 1", t=YEAR_0[backend(study)])

    def refuse(engine):
        raise AssertionError("scanned although nothing unreadable was met")

    monkeypatch.setattr(unreadable_times, "find_unreadable_times", refuse)
    assert unreadable_times.unreadable_time_warnings(study.engine) == []


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("1899-12-31 00:00:00.000000", datetime(1899, 12, 31, tzinfo=UTC)),  # 1900 at UTC+24h
        ("1899-12-30 23:59:59.999999", None),
        ("2100-01-01 23:59:59.000000", datetime(2100, 1, 1, 23, 59, 59, tzinfo=UTC)),
        ("2100-01-02 00:00:00.000000", None),
        ("2020-02-10 08:00:00+08:00", datetime(2020, 2, 10, tzinfo=UTC)),
        ("0000-12-31 16:00:00.000000", None),
        (None, None),
    ],
)
def test_the_years_read_on_sqlite_at_their_boundaries(text, read):
    unreadable_times.forget_unreadable_times()
    process = UTCDateTime()._cached_result_processor(sqlite.dialect(), None)
    assert process(text) == read
    assert unreadable_times.unreadable_times_noted() is (text is not None and read is None)
    unreadable_times.forget_unreadable_times()


def test_an_audit_event_of_year_0_breaks_the_chain_and_is_named(study):
    if backend(study) != "sqlite":
        pytest.skip("the edit goes around SQLite's append-only triggers; the check is the same")
    from celltrial.store.audit import check_audit_chain

    with study.engine.begin() as connection:
        triggers = connection.execute(
            sa.text(
                "select name, sql from sqlite_master "
                "where tbl_name = 'audit_event' and type = 'trigger'"
            )
        ).all()
        for name, _ in triggers:
            connection.execute(sa.text(f"drop trigger {name}"))
        connection.execute(
            sa.text("update audit_event set time = :t where id = 2"), {"t": YEAR_0["sqlite"]}
        )
        for _, sql in triggers:
            connection.execute(sa.text(sql))

    check = check_audit_chain(study.engine)

    assert check.broken_at == 2
    assert "at a time that cannot be read" in check.problem
    assert find_unreadable_times(study.engine) == [
        UnreadableTime("audit_event", "2", "time", SHOWN_YEAR_0["sqlite"])
    ]
