"""Sign-in sessions: refused when idle too long, expired or the account inactive; noted as in use
at most once a minute (every request checks its session)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from celltrial.services.accounts import (
    SESSION_IDLE,
    SESSION_LIFETIME,
    add_user,
    read_session,
    sign_in,
)
from celltrial.store.database import open_engine
from celltrial.store.models import AppUser, WebSession
from tests.web.conftest import NOW, PASSWORD


@pytest.fixture(scope="module")
def engine(study_database):
    engine = open_engine(study_database[1])
    add_user(engine, username="session-check", role="monitor", password=PASSWORD, by="setup")
    yield engine
    engine.dispose()


def last_seen(engine, token_hash: str):
    with engine.connect() as connection:
        return connection.scalar(select(WebSession.last_seen_at).where(WebSession.id == token_hash))


def session_count(engine) -> int:
    with engine.connect() as connection:
        return len(connection.execute(select(WebSession.id)).all())


def hashed(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def test_a_live_session_gives_its_account_and_csrf_token(engine):
    signed = sign_in(engine, "session-check", PASSWORD, now=NOW)
    active = read_session(engine, signed.token, now=NOW + timedelta(seconds=5))
    assert active is not None
    assert active.account == signed.account
    assert active.account.role == "monitor" and active.account.username == "session-check"
    assert active.csrf_token == signed.csrf_token
    assert read_session(engine, signed.token + "x", now=NOW) is None
    assert read_session(engine, "", now=NOW) is None


def test_use_is_noted_at_most_once_a_minute(engine):
    signed = sign_in(engine, "session-check", PASSWORD, now=NOW)
    key = hashed(signed.token)
    assert read_session(engine, signed.token, now=NOW + timedelta(seconds=60)) is not None
    assert last_seen(engine, key) == NOW  # exactly a minute: not yet written
    later = NOW + timedelta(seconds=61)
    assert read_session(engine, signed.token, now=later) is not None
    assert last_seen(engine, key) == later
    # in use every 20 minutes, the session outlives the 30 idle minutes
    for minutes in (20, 40, 60):
        assert read_session(engine, signed.token, now=later + timedelta(minutes=minutes))


def test_a_session_idle_too_long_is_refused_and_ended(engine):
    signed = sign_in(engine, "session-check", PASSWORD, now=NOW)
    count = session_count(engine)
    assert read_session(engine, signed.token, now=NOW + SESSION_IDLE) is not None
    assert (
        read_session(engine, signed.token, now=NOW + SESSION_IDLE * 2 + timedelta(seconds=1))
        is None
    )
    assert session_count(engine) == count - 1  # ended, not only refused
    assert read_session(engine, signed.token, now=NOW) is None


def test_a_session_is_refused_at_the_end_of_its_lifetime(engine):
    signed = sign_in(engine, "session-check", PASSWORD, now=NOW)
    moment = NOW
    while moment + timedelta(minutes=20) < NOW + SESSION_LIFETIME:
        moment += timedelta(minutes=20)
        assert read_session(engine, signed.token, now=moment) is not None
    assert read_session(engine, signed.token, now=NOW + SESSION_LIFETIME) is None


def test_a_session_of_an_inactive_account_is_refused(engine):
    add_user(engine, username="leaving", role="coordinator", password=PASSWORD, by="setup")
    signed = sign_in(engine, "leaving", PASSWORD, now=NOW)
    assert read_session(engine, signed.token, now=NOW) is not None
    with engine.begin() as connection:
        connection.execute(
            update(AppUser).where(AppUser.username == "leaving").values(active=False)
        )
    assert read_session(engine, signed.token, now=NOW) is None
