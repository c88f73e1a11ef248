"""The sign-in throttle: growing delays per client address and per user name that an attacker
cannot turn against a user.

Failed sign-ins are counted under three keys (table ``sign_in_throttle``):

- ``address:<ip>``: after :data:`ADDRESS_FREE_FAILURES` failures from one address, every further
  failure refuses that address for a delay doubling from :data:`ADDRESS_BASE_DELAY` up to
  :data:`ADDRESS_MAX_DELAY` (password spraying over many user names);
- ``account:<name>``: after :data:`ACCOUNT_FREE_FAILURES` failures on one user name, from
  anywhere, the name is *locked*: a delay doubling from :data:`ACCOUNT_BASE_DELAY` up to
  :data:`ACCOUNT_MAX_DELAY` (guessing one user's password from many addresses);
- ``pair:<name> <ip>``: the failures on that name from that address. While a name is locked, an
  attempt from an address with fewer than :data:`PAIR_TRUSTED_FAILURES` recent failures on it is
  still checked, so the user signs in with the right password from their own computer however
  often an attacker fails elsewhere; the attacker's own addresses wait.

Names are counted whether or not an account has them, so a lock says nothing about which names
exist. A count is forgotten :data:`FAILURE_MEMORY` after its last failure; a correct password
clears the name's and the pair's counts (never the address's: an attacker's own account must
not reset the address that guesses others'). A lock never ends a session already open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from celltrial.store.models import SignInThrottle

ADDRESS_FREE_FAILURES = 20
ADDRESS_BASE_DELAY = timedelta(seconds=1)
ADDRESS_MAX_DELAY = timedelta(minutes=5)
ACCOUNT_FREE_FAILURES = 5
ACCOUNT_BASE_DELAY = timedelta(minutes=1)
ACCOUNT_MAX_DELAY = timedelta(minutes=15)
PAIR_TRUSTED_FAILURES = 3
FAILURE_MEMORY = timedelta(hours=1)
_KEY_PART = 64


def address_key(address: str) -> str:
    return f"address:{(address or 'unknown')[:_KEY_PART]}"


def account_key(name: str) -> str:
    return f"account:{name[:_KEY_PART]}"


def pair_key(name: str, address: str) -> str:
    return f"pair:{name[:_KEY_PART]} {(address or 'unknown')[:_KEY_PART]}"


def pair_prefix(name: str) -> str:
    return f"pair:{name[:_KEY_PART]} "


@dataclass(frozen=True)
class Count:
    """A key's failures still remembered at ``now`` and the time until which it is refused."""

    failures: int = 0
    blocked_until: datetime | None = None

    def blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now


def _delay(failures: int, free: int, base: timedelta, cap: timedelta) -> timedelta | None:
    if failures < free:
        return None
    return min(base * 2 ** min(failures - free, 30), cap)


def delay_after(kind: str, failures: int) -> timedelta | None:
    """The refusal that ``failures`` failures of a key of ``kind`` earn (None: none)."""
    if kind == "address":
        return _delay(failures, ADDRESS_FREE_FAILURES + 1, ADDRESS_BASE_DELAY, ADDRESS_MAX_DELAY)
    if kind == "account":
        return _delay(failures, ACCOUNT_FREE_FAILURES, ACCOUNT_BASE_DELAY, ACCOUNT_MAX_DELAY)
    return None


@dataclass(frozen=True)
class Throttle:
    """The counts that decide one sign-in attempt, read in the attempt's transaction."""

    keys: dict[str, str]  # kind -> key
    counts: dict[str, Count]

    def refused_until(self, now: datetime) -> datetime | None:
        """Until when this attempt is refused without looking at the password (None: checked)."""
        address, account, pair = (
            self.counts.get(k, Count()) for k in ("address", "account", "pair")
        )
        if address.blocked(now):
            return address.blocked_until
        # without an address (a check inside a session) a lock refuses outright
        trusted = "pair" in self.counts and pair.failures < PAIR_TRUSTED_FAILURES
        if account.blocked(now) and not trusted:
            return account.blocked_until
        return None


def read_throttle(session: Session, name: str, address: str | None, now: datetime) -> Throttle:
    """The counts of a sign-in attempt with ``name`` from ``address`` (None: no address, the
    name's own count only: a password check inside a session)."""
    keys = {"account": account_key(name)}
    if address is not None:
        keys |= {"address": address_key(address), "pair": pair_key(name, address)}
    rows = {
        row.key: row
        for row in session.scalars(
            select(SignInThrottle).where(SignInThrottle.key.in_(list(keys.values())))
        )
    }
    counts = {}
    for kind, key in keys.items():
        row = rows.get(key)
        if row is None or now - row.last_failure_at > FAILURE_MEMORY:
            counts[kind] = Count()
        else:
            counts[kind] = Count(row.failures, row.blocked_until)
    return Throttle(keys, counts)


def record_failure(
    session: Session, throttle: Throttle, now: datetime, *, checked: bool
) -> dict[str, Count]:
    """Count a failed attempt (``checked``: its password was looked at and was wrong) and set
    the delays it earns; an attempt refused unchecked only keeps the counts remembered. The
    same statements run either way, so both take the same time. Returns the new counts."""
    new: dict[str, Count] = {}
    for kind, key in throttle.keys.items():
        old = throttle.counts[kind]
        failures = old.failures + 1 if checked else old.failures
        blocked_until = old.blocked_until if old.blocked(now) else None
        delay = delay_after(kind, failures) if checked else None
        if delay is not None:
            blocked_until = now + delay
        new[kind] = Count(failures, blocked_until)
        _upsert(session, key, failures, now, blocked_until)
    # names tried once long ago are not kept for ever
    session.execute(
        delete(SignInThrottle).where(SignInThrottle.last_failure_at < now - FAILURE_MEMORY)
    )
    return new


_UPDATED = ("failures", "last_failure_at", "blocked_until")


def _upsert(
    session: Session, key: str, failures: int, now: datetime, blocked_until: datetime | None
) -> None:
    values = {"key": key, "failures": failures, "last_failure_at": now}
    values["blocked_until"] = blocked_until
    dialect = session.connection().dialect.name
    if dialect in ("postgresql", "sqlite"):
        make = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = make(SignInThrottle).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[SignInThrottle.key],
            set_={
                k: statement.excluded[k] for k in ("failures", "last_failure_at", "blocked_until")
            },
        )
        session.execute(statement)
        return
    row = session.get(SignInThrottle, key)  # another database: read, then write
    if row is None:
        session.add(SignInThrottle(**values))
    else:
        row.failures, row.last_failure_at, row.blocked_until = failures, now, blocked_until
    session.flush()


def clear_name(session: Session, name: str, address: str | None = None) -> None:
    """Forget the name's failures (a correct password, an administrator's unlock): the pair of
    ``address`` only, else every pair of the name."""
    keys = [account_key(name)]
    statement = delete(SignInThrottle).where(SignInThrottle.key.in_(keys))
    session.execute(statement)
    if address is None:
        session.execute(
            delete(SignInThrottle).where(
                SignInThrottle.key.startswith(pair_prefix(name), autoescape=True)
            )
        )
    else:
        session.execute(delete(SignInThrottle).where(SignInThrottle.key == pair_key(name, address)))


def locked_names(session: Session, now: datetime) -> dict[str, datetime]:
    """User name -> until when its sign-ins are locked, for the names locked now."""
    rows = session.execute(
        select(SignInThrottle.key, SignInThrottle.blocked_until).where(
            SignInThrottle.key.startswith("account:"), SignInThrottle.blocked_until > now
        )
    )
    return {key.removeprefix("account:"): until for key, until in rows}
