"""Accounts, roles, passwords and sign-in sessions of the web app.

Passwords are hashed with Argon2id (``argon2-cffi``). After :data:`MAX_FAILED_SIGN_INS`
consecutive failures an account is locked for :data:`LOCKOUT`. A sign-in session is a random
token held by the client (cookie); the database keeps only its SHA-256, with a per-session CSRF
token, an idle timeout and an absolute lifetime.

Accounts are not study data, but who may change study data is: creating an account or changing
its role is written to the audit log (table ``app_user``, never the password hash).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from celltrial.services.errors import AccountError, SignInRefused
from celltrial.store.audit import append_audit_events
from celltrial.store.database import study_session
from celltrial.store.models import AppUser, WebSession

#: The roles of a study team, with what each may do (:data:`PERMISSIONS`).
ROLES: dict[str, str] = {
    "investigator": "Investigator",
    "coordinator": "Study coordinator",
    "data_manager": "Data manager",
    "monitor": "Monitor (read-only)",
    "statistician": "Statistician",
    "admin": "Administrator",
}

_ALL = frozenset(ROLES)
#: permission -> roles that have it. Every page and API call names one of these.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read_study": _ALL,
    "enter_infusion": frozenset({"investigator", "coordinator"}),
    "enter_adverse_event": frozenset({"investigator", "coordinator"}),
    "enter_vital_signs": frozenset({"investigator", "coordinator"}),
    "enter_clinical_status": frozenset({"investigator", "coordinator"}),
    #: product lots and their release results: the data manager keeps the lot register (from
    #: the manufacturer's certificates), the administrator sets the study up
    "manage_lots": frozenset({"data_manager", "admin"}),
    "edit_data": frozenset({"investigator", "coordinator"}),
    "read_audit": frozenset({"investigator", "coordinator", "data_manager", "monitor", "admin"}),
    "manage_users": frozenset({"admin"}),
    "raise_query": frozenset({"data_manager"}),
    "answer_query": frozenset({"investigator", "coordinator"}),
    "close_query": frozenset({"data_manager"}),
    "sign_casebook": frozenset({"investigator"}),
    "import_data": frozenset({"data_manager", "coordinator", "admin"}),
    "read_report": frozenset({"statistician", "investigator", "monitor", "admin"}),
    "build_report": frozenset({"statistician", "investigator", "admin"}),
}

MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_IDLE = timedelta(minutes=30)
SESSION_LIFETIME = timedelta(hours=12)
#: last_seen_at is written at most this often (a read per request, a write per minute).
_TOUCH_EVERY = timedelta(seconds=60)
MIN_PASSWORD_LENGTH = 12
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
SIGN_IN_REFUSED = (
    "Sign-in failed: wrong user name or password, or the account is locked "
    f"({MAX_FAILED_SIGN_INS} failed attempts lock it for {LOCKOUT.seconds // 60} minutes)."
)

_hasher = PasswordHasher()
#: Verified against when the user name is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    full_name: str
    role: str
    active: bool = True
    locked_until: datetime | None = None

    def can(self, permission: str) -> bool:
        return role_can(self.role, permission)


@dataclass(frozen=True)
class SignedIn:
    """A new session: ``token`` goes into the cookie, ``csrf_token`` into every form."""

    token: str
    csrf_token: str
    account: Account
    expires_at: datetime


@dataclass(frozen=True)
class ActiveSession:
    account: Account
    csrf_token: str


def role_can(role: str, permission: str) -> bool:
    """Whether ``role`` has ``permission`` (unknown permissions are refused to everyone)."""
    return role in PERMISSIONS.get(permission, frozenset())


def _account(user: AppUser) -> Account:
    return Account(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=user.role,
        active=user.active,
        locked_until=user.locked_until,
    )


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_new_account(username: str, role: str, password: str) -> None:
    """Raise :class:`AccountError` for a bad user name, unknown role or weak password."""
    if not _USERNAME.match(username):
        raise AccountError(
            f"user name {username!r}: expected 2–64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if role not in ROLES:
        raise AccountError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: expected at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password or password.lower() == username.lower():
        raise AccountError("password: must not be the user name or start or end with spaces")


def add_user(
    engine: Engine,
    *,
    username: str,
    role: str,
    password: str,
    full_name: str = "",
    by: str,
) -> Account:
    """Create an account (audited as an insert into ``app_user`` without the password hash)."""
    check_new_account(username, role, password)
    with study_session(engine, user=by, reason="account created") as session:
        taken = session.scalar(select(AppUser.id).where(AppUser.username == username))
        if taken is not None:
            raise AccountError(f"user name {username!r} is taken")
        user = AppUser(
            username=username,
            full_name=full_name.strip(),
            role=role,
            password_hash=_hasher.hash(password),
            active=True,
            failed_logins=0,
            created_at=datetime.now(UTC),
        )
        session.add(user)
        session.flush()
        append_audit_events(
            session,
            [
                {
                    "time": user.created_at,
                    "user": by,
                    "action": "insert",
                    "table_name": "app_user",
                    "row_id": str(user.id),
                    "before": None,
                    "after": {"username": username, "full_name": user.full_name, "role": role},
                    "reason": "account created",
                }
            ],
        )
        return _account(user)


def count_users(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(AppUser)) or 0)


def list_users(engine: Engine) -> list[Account]:
    with study_session(engine, user="read") as session:
        return [_account(u) for u in session.scalars(select(AppUser).order_by(AppUser.username))]


def sign_in(
    engine: Engine, username: str, password: str, *, now: datetime | None = None
) -> SignedIn:
    """Check the password and open a session; :class:`SignInRefused` (one message) otherwise.

    A failure counts against the account; the :data:`MAX_FAILED_SIGN_INS`-th locks it for
    :data:`LOCKOUT` (recorded in the audit log). While locked, even the right password fails.
    """
    now = now or datetime.now(UTC)
    with study_session(engine, user=username or "anonymous", reason="sign-in") as session:
        user = session.scalar(select(AppUser).where(AppUser.username == username))
        if user is None:
            _verify(_DUMMY_HASH, password)
            raise SignInRefused(SIGN_IN_REFUSED)
        locked = user.locked_until is not None and user.locked_until > now
        if locked or not user.active:
            raise SignInRefused(SIGN_IN_REFUSED)
        if not _verify(user.password_hash, password):
            _count_failure(session, user, now, what="sign-ins")
            raise SignInRefused(SIGN_IN_REFUSED)
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + SESSION_LIFETIME
        session.add(
            WebSession(
                id=_token_id(token),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
                expires_at=expires,
            )
        )
        # old sessions of this user that have lapsed are removed here, not by a background job
        session.execute(
            delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at < now)
        )
        return SignedIn(token=token, csrf_token=csrf, account=_account(user), expires_at=expires)


def confirm_password(
    engine: Engine, username: str, password: str, *, now: datetime | None = None
) -> Account:
    """Re-check a signed-in user's password (electronic signature): :class:`SignInRefused` when
    wrong, and the failure counts towards the lock-out exactly as a failed sign-in does."""
    now = now or datetime.now(UTC)
    with study_session(engine, user=username or "anonymous", reason="password confirmation") as s:
        user = s.scalar(select(AppUser).where(AppUser.username == username))
        refused = SignInRefused(
            "password: not confirmed (wrong password, or the account is locked); nothing was signed"
        )
        if user is None or not user.active:
            raise refused
        if user.locked_until is not None and user.locked_until > now:
            raise refused
        if not _verify(user.password_hash, password):
            _count_failure(s, user, now, what="password confirmations")
            raise refused
        user.failed_logins = 0
        return _account(user)


def _count_failure(session: Session, user: AppUser, now: datetime, *, what: str) -> None:
    """Count a wrong password; lock the account (audited) at the limit. Committed at once, so
    the count survives the refusal that follows."""
    user.failed_logins += 1
    if user.failed_logins >= MAX_FAILED_SIGN_INS:
        user.locked_until = now + LOCKOUT
        user.failed_logins = 0
        append_audit_events(
            session,
            [
                {
                    "time": now,
                    "user": user.username,
                    "action": "lock",
                    "table_name": "app_user",
                    "row_id": str(user.id),
                    "before": None,
                    "after": {"locked_until": user.locked_until.isoformat()},
                    "reason": f"{MAX_FAILED_SIGN_INS} failed {what}",
                }
            ],
        )
    session.commit()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def read_session(
    engine: Engine, token: str, *, now: datetime | None = None
) -> ActiveSession | None:
    """The live session of ``token``, or None when unknown, idle too long, expired or locked."""
    if not token:
        return None
    now = now or datetime.now(UTC)
    with study_session(engine, user="session") as session:
        found = session.execute(
            select(WebSession, AppUser)
            .join(AppUser, WebSession.user_id == AppUser.id)
            .where(WebSession.id == _token_id(token))
        ).first()
        if found is None:
            return None
        web, user = found
        idle = now - web.last_seen_at > SESSION_IDLE
        if idle or web.expires_at <= now or not user.active:
            session.delete(web)
            return None
        if now - web.last_seen_at > _TOUCH_EVERY:
            web.last_seen_at = now
        return ActiveSession(account=_account(user), csrf_token=web.csrf_token)


def sign_out(engine: Engine, token: str) -> None:
    """End the session of ``token`` (nothing happens for an unknown token)."""
    with study_session(engine, user="session") as session:
        session.execute(delete(WebSession).where(WebSession.id == _token_id(token)))
