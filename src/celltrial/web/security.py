"""Who is asking and what they may do: session cookie, role checks, CSRF tokens, headers.

- The session cookie is ``Secure``, ``HttpOnly`` and ``SameSite=Strict``; the server keeps only the
  token's hash (:mod:`celltrial.services.accounts`).
- Every form carries the session's CSRF token (field ``csrf_token``); every API write carries it
  in the ``X-CSRF-Token`` header. The sign-in form, before a session exists, uses a double-submit
  cookie.
- Every route names the permission it needs; a role without it gets 403, nobody signed in 401
  (API) or the sign-in page (pages).
- A session whose password an administrator set (a new account, a reset) reaches only the
  change-password page and sign-out until the user has chosen their own: pages lead there
  (through the sign-in page), the API answers 403 naming the call that changes it.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from celltrial.services.accounts import ActiveSession, read_session
from celltrial.services.errors import NotPermitted
from celltrial.study import StudyHandle

SESSION_COOKIE = "celltrial_session"
SIGN_IN_COOKIE = "celltrial_signin_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class NotSignedIn(Exception):
    """No valid session: pages redirect to sign-in, the API answers 401."""


class CsrfRefused(Exception):
    """A write without the session's CSRF token."""


class PasswordChangeRequired(NotSignedIn):
    """The session may only change its password: handled as not signed in (to the sign-in page,
    which sends a session that must change its password on to the change-password page)."""


CHANGE_PASSWORD_PAGE = "/account/password"
CHANGE_PASSWORD_API = "/api/v1/account/password"
#: What a session that must change its password may still reach.
_BEFORE_PASSWORD_CHANGE = frozenset(
    {CHANGE_PASSWORD_PAGE, CHANGE_PASSWORD_API, "/logout", "/api/v1/session"}
)


def client_address(request: Request) -> str:
    """The client's address as the server saw it (behind a reverse proxy, the address it
    forwarded: ``celltrial serve`` trusts the proxy headers of the loopback only)."""
    return request.client.host if request.client else "unknown"


def study_of(request: Request) -> StudyHandle:
    return request.app.state.study


def signed_in(request: Request) -> ActiveSession:
    cached = getattr(request.state, "active", None)
    if cached is not None:
        return cached
    token = request.cookies.get(SESSION_COOKIE, "")
    active = read_session(study_of(request).engine, token) if token else None
    if active is None:
        raise NotSignedIn()
    if active.account.must_change_password and request.url.path not in _BEFORE_PASSWORD_CHANGE:
        if request.url.path.startswith("/api/"):
            raise NotPermitted(
                "your password was set by an administrator: change it first "
                f"(POST {CHANGE_PASSWORD_API})"
            )
        raise PasswordChangeRequired()
    request.state.active = active
    return active


def allowed(permission: str):
    """A dependency: the signed-in session, if its role has ``permission``."""

    async def dependency(active: Annotated[ActiveSession, Depends(signed_in)]) -> ActiveSession:
        if not active.account.can(permission):
            what = permission.replace("_", " ")
            raise NotPermitted(f"your role ({active.account.role}) may not do this ({what})")
        return active

    return Depends(dependency)


def api_write(permission: str):
    """A dependency for API writes: permission plus the CSRF header."""

    permitted = allowed(permission)

    async def dependency(request: Request, active: ActiveSession = permitted) -> ActiveSession:
        check_csrf(active, request.headers.get(CSRF_HEADER))
        return active

    return Depends(dependency)


def check_csrf(active: ActiveSession, token: str | None) -> None:
    if not token or not hmac.compare_digest(token, active.csrf_token):
        raise CsrfRefused()


async def checked_form(request: Request, active: ActiveSession) -> dict[str, object]:
    """The posted form as a dict (repeated fields as lists), after the CSRF check."""
    form = await request.form()
    check_csrf(active, str(form.get(CSRF_FIELD) or ""))
    values: dict[str, object] = {}
    for key in form:
        if key == CSRF_FIELD:
            continue
        items = [str(v) for v in form.getlist(key)]
        values[key] = items if len(items) > 1 else items[0]
    return values


def set_session_cookie(response: Response, token: str, *, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(32)


def set_sign_in_cookie(response: Response, token: str) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE, token, max_age=3600, path="/", secure=True, httponly=True, samesite="strict"
    )


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
