"""Accounts, roles, passwords and sign-in sessions of the web app.

Passwords are hashed with Argon2id and checked against the rules of
:mod:`celltrial.services.passwords`. Failed sign-ins are throttled per client address and per user
name (:mod:`celltrial.services.sign_in`): a user name is locked for a growing delay, which an
attacker cannot keep up against the user's own computer. A sign-in session is a random token held
by the client (cookie); the database keeps only its SHA-256, with a per-session CSRF token, an
idle timeout and an absolute lifetime.

Accounts follow what 21 CFR Part 11 expects of them: a password an administrator set (a new
account, a reset to a one-time password) must be changed at the next sign-in and until then the
session reaches only the change-password page; users change their own password with their
current one; an administrator resets, unlocks, deactivates (its sessions end), reactivates,
changes roles and ends sessions. Every one of these, and every sign-in, sign-out and failed
attempt with the client's address (never a password), is written to the audit log under table
``app_user``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from celltrial.services import sign_in as throttle
from celltrial.services.errors import AccountError, NotFound, SignInRefused
from celltrial.services.passwords import (
    check_password,
    dummy_hash,
    generate_one_time_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from celltrial.services.plain_text import control_character_problem
from celltrial.store.audit import append_audit_events
from celltrial.store.database import study_session
from celltrial.store.models import AppUser, Study, WebSession

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
    #: a new subject and their demographics (later changes need edit_data and a reason)
    "enrol_subject": frozenset({"investigator", "coordinator"}),
    "enter_infusion": frozenset({"investigator", "coordinator"}),
    "enter_adverse_event": frozenset({"investigator", "coordinator"}),
    "enter_vital_signs": frozenset({"investigator", "coordinator"}),
    "enter_clinical_status": frozenset({"investigator", "coordinator"}),
    #: product lots and their release results: the data manager keeps the lot register (from
    #: the manufacturer's certificates), the administrator sets the study up
    "manage_lots": frozenset({"data_manager", "admin"}),
    "edit_data": frozenset({"investigator", "coordinator"}),
    "read_audit": frozenset({"investigator", "coordinator", "data_manager", "monitor", "admin"}),
    #: the study-wide audit log (every change, sign-in and account change, newest first): the
    #: data manager and the monitor review it, the administrator answers for the accounts in it
    "read_audit_log": frozenset({"data_manager", "monitor", "admin"}),
    "manage_users": frozenset({"admin"}),
    "raise_query": frozenset({"data_manager"}),
    "answer_query": frozenset({"investigator", "coordinator"}),
    "close_query": frozenset({"data_manager"}),
    "sign_casebook": frozenset({"investigator"}),
    "import_data": frozenset({"data_manager", "coordinator", "admin"}),
    "read_report": frozenset({"statistician", "investigator", "monitor", "admin"}),
    "build_report": frozenset({"statistician", "investigator", "admin"}),
}

#: Failures on one user name before it is locked (see :mod:`celltrial.services.sign_in`).
MAX_FAILED_SIGN_INS = throttle.ACCOUNT_FREE_FAILURES
LOCKOUT = throttle.ACCOUNT_BASE_DELAY
SESSION_IDLE = timedelta(minutes=30)
SESSION_LIFETIME = timedelta(hours=12)
#: last_seen_at is written at most this often (a read per request, a write per minute).
_TOUCH_EVERY = timedelta(seconds=60)
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
SIGN_IN_REFUSED = "Sign-in failed: wrong user name or password."
#: The throttle counts wrong current passwords of password changes under this prefix.
_CHANGE = "password change:"


def _refused_until(until: datetime, now: datetime) -> str:
    seconds = max(1, int((until - now).total_seconds() + 0.999))
    wait = f"{seconds} seconds" if seconds < 120 else f"{(seconds + 59) // 60} minutes"
    return (
        "Sign-in refused: too many failed attempts with this user name or from your address, "
        f"so sign-ins are locked for now. Try again in {wait}; an administrator can unlock the "
        "account."
    )


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    full_name: str
    role: str
    active: bool = True
    must_change_password: bool = False

    def can(self, permission: str) -> bool:
        return role_can(self.role, permission)


@dataclass(frozen=True)
class AccountStatus:
    """An account as the administrator sees it."""

    account: Account
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None
    password_changed_at: datetime | None
    sessions: int

    def __getattr__(self, name: str) -> Any:  # u.username, u.role… in templates
        if name.startswith("_") or name == "account":
            raise AttributeError(name)
        return getattr(self.account, name)


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
        must_change_password=bool(user.must_change_password),
    )


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _name(username: str) -> str:
    """A user name as typed, compared in lower case (names are lower case)."""
    return (username or "").strip().lower()[:200]


def _shown_name(name: str) -> str:
    """What the audit log says was typed as the user name: a name that could be one, else not
    the text itself (people type their password into the name field)."""
    return name if _USERNAME.match(name) else "(not a user name)"


def _study_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Study.id)))


def _audit(
    session: Session,
    *,
    now: datetime,
    by: str,
    action: str,
    user: AppUser | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    """One audit event on table ``app_user`` (chained like every other; never a password)."""
    append_audit_events(
        session,
        [
            {
                "time": now,
                "user": by[:64],
                "action": action,
                "table_name": "app_user",
                "row_id": str(user.id) if user is not None else None,
                "before": before,
                "after": after,
                "reason": reason,
            }
        ],
    )


def check_username(username: str) -> None:
    check_account_text("user name", username)
    if not _USERNAME.match(username):
        raise AccountError(
            f"user name {username!r}: expected 2–64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def check_account_text(label: str, value: str, *, lines: bool = False) -> None:
    """Raise :class:`AccountError` ("label: …") when ``value`` holds a control character (the
    NUL character cannot be stored; ``lines``: free text, which may hold line breaks)."""
    problem = control_character_problem(value or "", lines=lines)
    if problem is not None:
        raise AccountError(f"{label}: {problem}")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role {role!r}: expected one of {', '.join(ROLES)}")


def check_new_account(
    username: str, role: str, password: str, *, study_ids: tuple[str, ...] = ()
) -> None:
    """Raise :class:`AccountError` for a bad user name, unknown role or weak password."""
    check_username(username)
    check_role(role)
    check_password(password, username=username, study_ids=study_ids)


def add_user(
    engine: Engine,
    *,
    username: str,
    role: str,
    password: str,
    full_name: str = "",
    by: str,
    must_change_password: bool = False,
) -> Account:
    """Create an account (audited as an insert into ``app_user`` without the password hash).

    ``must_change_password``: the password is the administrator's, to be replaced by the user's
    own at the first sign-in (what the web app and ``celltrial users add`` do; set-up scripts and
    tests may create accounts ready to use).
    """
    check_account_text("full name", full_name)
    now = datetime.now(UTC)
    with study_session(engine, user=by, reason="account created") as session:
        check_new_account(username, role, password, study_ids=tuple(_study_ids(session)))
        taken = session.scalar(select(AppUser.id).where(AppUser.username == username))
        if taken is not None:
            raise AccountError(f"user name {username!r} is taken")
        user = AppUser(
            username=username,
            full_name=full_name.strip(),
            role=role,
            password_hash=hash_password(password),
            active=True,
            must_change_password=must_change_password,
            created_at=now,
        )
        session.add(user)
        session.flush()
        _audit(
            session,
            now=now,
            by=by,
            action="insert",
            user=user,
            after={
                "username": username,
                "full_name": user.full_name,
                "role": role,
                "must_change_password": must_change_password,
            },
            reason="account created",
        )
        return _account(user)


def count_users(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(AppUser)) or 0)


def list_users(engine: Engine, *, now: datetime | None = None) -> list[AccountStatus]:
    """Every account with its lock, sign-ins and open sessions, by user name."""
    now = now or datetime.now(UTC)
    with study_session(engine, user="read") as session:
        locked = throttle.locked_names(session, now)
        sessions = dict(
            session.execute(
                select(WebSession.user_id, func.count())
                .where(WebSession.expires_at > now)
                .group_by(WebSession.user_id)
            ).all()
        )
        return [
            AccountStatus(
                account=_account(u),
                locked_until=locked.get(u.username),
                created_at=u.created_at,
                last_login_at=u.last_login_at,
                password_changed_at=u.password_changed_at,
                sessions=int(sessions.get(u.id, 0)),
            )
            for u in session.scalars(select(AppUser).order_by(AppUser.username))
        ]


def _new_session(session: Session, user: AppUser, now: datetime) -> SignedIn:
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


def sign_in(
    engine: Engine,
    username: str,
    password: str,
    *,
    address: str = "unknown",
    now: datetime | None = None,
) -> SignedIn:
    """Check the password and open a session; :class:`SignInRefused` (one message) otherwise.

    Every attempt costs one password-hash check, against a dummy hash when the name is unknown
    and even when the attempt is refused without looking at the password (a locked name from an
    address that failed on it, a throttled address), and writes the same rows: an unknown name,
    a locked one and a wrong password answer in the same time. Failures are counted per address
    and per name (:mod:`celltrial.services.sign_in`) and audited with the client's address.
    """
    problem = control_character_problem(username or "")
    if problem is not None:  # no user name holds one (and PostgreSQL cannot look for NUL)
        raise SignInRefused(f"user name: {problem}")
    now = now or datetime.now(UTC)
    name = _name(username)
    shown = _shown_name(name)
    with study_session(engine, user=shown, reason="sign-in") as session:
        user = session.scalar(select(AppUser).where(AppUser.username == name))
        state = throttle.read_throttle(session, name, address, now)
        refused_until = state.refused_until(now)
        matches = verify_password(
            user.password_hash if user is not None else dummy_hash(), password
        )
        if refused_until is None and matches and user is not None and user.active:
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            user.last_login_at = now
            throttle.clear_name(session, name, address)
            signed = _new_session(session, user, now)
            _audit(
                session,
                now=now,
                by=user.username,
                action="sign_in",
                user=user,
                after={"client_address": address},
                reason="must change password" if user.must_change_password else None,
            )
            return signed
        if refused_until is not None:
            why = "refused unchecked: too many failed attempts (throttled)"
        elif user is None:
            why = "unknown user name"
        elif not user.active:
            why = "account deactivated"
        else:
            why = "wrong password"
        checked = refused_until is None
        before_lock = state.counts["account"]
        counts = throttle.record_failure(session, state, now, checked=checked)
        _audit(
            session,
            now=now,
            by=shown,
            action="sign_in_failed",
            user=user,
            after={"client_address": address, "user_name": shown},
            reason=why,
        )
        after_lock = counts["account"]
        if after_lock.blocked(now) and after_lock.blocked_until != before_lock.blocked_until:
            _audit(
                session,
                now=now,
                by=shown,
                action="lock",
                user=user,
                after={
                    "locked_until": after_lock.blocked_until.isoformat(),
                    "failures": after_lock.failures,
                },
                reason=f"{after_lock.failures} failed sign-ins with this user name",
            )
    raise SignInRefused(
        _refused_until(refused_until, now) if refused_until is not None else SIGN_IN_REFUSED
    )


def confirm_password(
    engine: Engine, username: str, password: str, *, now: datetime | None = None
) -> Account:
    """Re-check a signed-in user's password (electronic signature): :class:`SignInRefused` when
    wrong or while the name is locked; a failure counts towards the lock as a failed sign-in
    does (from the address ``session``: a stolen session cannot guess on without the lock)."""
    now = now or datetime.now(UTC)
    name = _name(username)
    refused = SignInRefused(
        "password: not confirmed (wrong password, or the account is locked); nothing was signed"
    )
    with study_session(engine, user=_shown_name(name), reason="password confirmation") as s:
        user = s.scalar(select(AppUser).where(AppUser.username == name))
        state = throttle.read_throttle(s, name, "session", now)
        locked = state.counts["account"].blocked(now)
        matches = verify_password(
            user.password_hash if user is not None else dummy_hash(), password
        )
        if matches and not locked and user is not None and user.active:
            return _account(user)
        throttle.record_failure(s, state, now, checked=not locked)
        _audit(
            s,
            now=now,
            by=_shown_name(name),
            action="confirm_failed",
            user=user,
            reason="password confirmation failed (electronic signature)",
        )
        s.commit()
    raise refused


def read_session(
    engine: Engine, token: str, *, now: datetime | None = None
) -> ActiveSession | None:
    """The live session of ``token``, or None when unknown, idle too long, expired or the
    account deactivated. A locked user name keeps its sessions (only an administrator ends
    them)."""
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


def sign_out(engine: Engine, token: str, *, address: str = "unknown") -> None:
    """End the session of ``token`` (audited; nothing happens for an unknown token)."""
    now = datetime.now(UTC)
    with study_session(engine, user="session") as session:
        found = session.execute(
            select(WebSession, AppUser)
            .join(AppUser, WebSession.user_id == AppUser.id)
            .where(WebSession.id == _token_id(token))
        ).first()
        if found is None:
            return
        web, user = found
        session.delete(web)
        _audit(
            session,
            now=now,
            by=user.username,
            action="sign_out",
            user=user,
            after={"client_address": address},
        )


# --- changes to accounts -------------------------------------------------------------------------


def _find(session: Session, username: str) -> AppUser:
    if control_character_problem(username or "") is not None:  # no user name holds one
        raise NotFound(f"no user {username!r} in this study")
    user = session.scalar(select(AppUser).where(AppUser.username == _name(username)))
    if user is None:
        raise NotFound(f"no user {username!r} in this study")
    return user


def _end_sessions(session: Session, user: AppUser, *, keep_token: str | None = None) -> int:
    statement = delete(WebSession).where(WebSession.user_id == user.id)
    if keep_token:
        statement = statement.where(WebSession.id != _token_id(keep_token))
    return int(session.execute(statement).rowcount or 0)


def _active_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AppUser)
            .where(AppUser.role == "admin", AppUser.active.is_(True))
        )
        or 0
    )


def change_password(
    engine: Engine,
    username: str,
    current_password: str,
    new_password: str,
    *,
    keep_token: str | None = None,
    address: str = "unknown",
    now: datetime | None = None,
) -> Account:
    """Change one's own password: the current one is required (a wrong one counts towards the
    lock like a failed sign-in), the new one must pass the rules and differ from it. The user's
    other sessions end (``keep_token``: the session making the change stays)."""
    now = now or datetime.now(UTC)
    name = _name(username)
    with study_session(engine, user=name, reason="password changed") as session:
        user = _find(session, name)
        # wrong current passwords are counted apart from sign-ins (a user's typos here do not
        # lock their sign-in), and slow down guessing through a session left open
        state = throttle.read_throttle(session, _CHANGE + name, None, now)
        refused_until = state.refused_until(now)
        matches = verify_password(user.password_hash, current_password)
        if refused_until is not None or not matches or not user.active:
            throttle.record_failure(session, state, now, checked=refused_until is None)
            _audit(
                session,
                now=now,
                by=name,
                action="password_failed",
                user=user,
                after={"client_address": address},
                reason="password change refused: current password wrong or account locked",
            )
            session.commit()
            if refused_until is not None:
                seconds = max(1, int((refused_until - now).total_seconds() + 0.999))
                raise SignInRefused(
                    "current password: too many wrong attempts; the password was not changed. "
                    f"Try again in {seconds} seconds."
                )
            raise SignInRefused("current password: wrong; the password was not changed")
        check_password(new_password, username=name, study_ids=_study_ids(session))
        if new_password == current_password:
            raise AccountError("new password: must differ from the current one")
        was_forced = bool(user.must_change_password)
        user.password_hash = hash_password(new_password)
        user.must_change_password = False
        user.password_changed_at = now
        ended = _end_sessions(session, user, keep_token=keep_token)
        throttle.clear_name(session, _CHANGE + name)
        _audit(
            session,
            now=now,
            by=name,
            action="password_change",
            user=user,
            before={"must_change_password": was_forced},
            after={
                "must_change_password": False,
                "sessions_ended": ended,
                "client_address": address,
            },
            reason="one-time password replaced" if was_forced else "password changed by its user",
        )
        return _account(user)


def reset_password(
    engine: Engine, username: str, *, by: str, reason: str = "", now: datetime | None = None
) -> str:
    """Give the account a one-time password (returned, to pass on to the user once) that must be
    changed at the next sign-in; its sessions end and its lock is lifted."""
    check_account_text("reason", reason, lines=True)
    now = now or datetime.now(UTC)
    one_time = generate_one_time_password()
    with study_session(engine, user=by, reason="password reset") as session:
        user = _find(session, username)
        user.password_hash = hash_password(one_time)
        user.must_change_password = True
        user.password_changed_at = now
        ended = _end_sessions(session, user)
        throttle.clear_name(session, user.username)
        throttle.clear_name(session, _CHANGE + user.username)
        _audit(
            session,
            now=now,
            by=by,
            action="password_reset",
            user=user,
            after={"must_change_password": True, "sessions_ended": ended},
            reason=reason.strip() or "password reset by an administrator",
        )
    return one_time


def unlock(engine: Engine, username: str, *, by: str, reason: str = "") -> None:
    """Lift the lock on the account's user name (its failure counts are forgotten)."""
    check_account_text("reason", reason, lines=True)
    now = datetime.now(UTC)
    with study_session(engine, user=by, reason="account unlocked") as session:
        user = _find(session, username)
        locked = throttle.locked_names(session, now).get(user.username)
        throttle.clear_name(session, user.username)
        throttle.clear_name(session, _CHANGE + user.username)
        _audit(
            session,
            now=now,
            by=by,
            action="unlock",
            user=user,
            before={"locked_until": locked.isoformat() if locked else None},
            after={"locked_until": None},
            reason=reason.strip() or "unlocked by an administrator",
        )


def deactivate(engine: Engine, username: str, *, by: str, reason: str = "") -> int:
    """Deactivate an account: it cannot sign in and its sessions end (how many: returned).
    Refused for one's own account and for the last active administrator."""
    check_account_text("reason", reason, lines=True)
    now = datetime.now(UTC)
    with study_session(engine, user=by, reason="account deactivated") as session:
        user = _find(session, username)
        if user.username == _name(by):
            raise AccountError("you cannot deactivate your own account")
        if not user.active:
            raise AccountError(f"user {user.username!r} is already deactivated")
        if user.role == "admin" and _active_admins(session) <= 1:
            raise AccountError(f"user {user.username!r} is the last active administrator")
        user.active = False
        ended = _end_sessions(session, user)
        _audit(
            session,
            now=now,
            by=by,
            action="deactivate",
            user=user,
            before={"active": True},
            after={"active": False, "sessions_ended": ended},
            reason=reason.strip() or "deactivated by an administrator",
        )
        return ended


def reactivate(engine: Engine, username: str, *, by: str, reason: str = "") -> None:
    """Let a deactivated account sign in again (with the password it had)."""
    check_account_text("reason", reason, lines=True)
    now = datetime.now(UTC)
    with study_session(engine, user=by, reason="account reactivated") as session:
        user = _find(session, username)
        if user.active:
            raise AccountError(f"user {user.username!r} is active already")
        user.active = True
        _audit(
            session,
            now=now,
            by=by,
            action="reactivate",
            user=user,
            before={"active": False},
            after={"active": True},
            reason=reason.strip() or "reactivated by an administrator",
        )


def set_role(engine: Engine, username: str, role: str, *, by: str, reason: str = "") -> None:
    """Change an account's role (in force at its next request). The last active administrator
    keeps the role."""
    check_account_text("reason", reason, lines=True)
    check_role(role)
    now = datetime.now(UTC)
    with study_session(engine, user=by, reason="role changed") as session:
        user = _find(session, username)
        if user.role == role:
            raise AccountError(f"user {user.username!r} has the role {role} already")
        if user.role == "admin" and user.active and _active_admins(session) <= 1:
            raise AccountError(f"user {user.username!r} is the last active administrator")
        before = user.role
        user.role = role
        _audit(
            session,
            now=now,
            by=by,
            action="role_change",
            user=user,
            before={"role": before},
            after={"role": role},
            reason=reason.strip() or "role changed by an administrator",
        )


def end_sessions(engine: Engine, username: str, *, by: str, reason: str = "") -> int:
    """End every session of the account (a lock does not); how many: returned."""
    check_account_text("reason", reason, lines=True)
    now = datetime.now(UTC)
    with study_session(engine, user=by, reason="sessions ended") as session:
        user = _find(session, username)
        ended = _end_sessions(session, user)
        _audit(
            session,
            now=now,
            by=by,
            action="end_sessions",
            user=user,
            after={"sessions_ended": ended},
            reason=reason.strip() or "sessions ended by an administrator",
        )
        return ended
