"""The app's own layers around every request, as plain ASGI middleware.

Starlette's ``@app.middleware("http")`` runs each request through a task and a memory stream
of its own; these layers only wrap ``send``. That is less work per request and fewer turns of the
event loop, each of which waits for the interpreter lock while a write's analyses are being
brought up to date in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response

from celltrial.services.monitoring import write_in_flight
from celltrial.web.security import SECURITY_HEADERS, SESSION_COOKIE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_log = logging.getLogger(__name__)


class SessionGate:
    """A first gate before any parsing: a request without a session cookie reaches only the
    ``public`` routes (``refuse`` answers the others; each route then checks the session and
    its role itself). Every answer carries the security headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        public: frozenset[tuple[str, str]],
        refuse: Callable[[Request], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.public = public
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        request = Request(scope)
        if (request.method, request.url.path) not in self.public and not request.cookies.get(
            SESSION_COOKIE
        ):
            response = await self.refuse(request)
            await response(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)


class AnalysesAfterWrites:
    """A write brings the analyses and the dashboard up to date (``refresh``) before it is
    acknowledged, so the reads after it (its own redirect, other users' pages) find them made,
    not make them; while it runs, readers are not kept waiting for the analyses of a write not
    yet acknowledged (:func:`~celltrial.services.monitoring.write_in_flight`)."""

    def __init__(self, app: ASGIApp, *, refresh: Callable[[], None]) -> None:
        self.app = app
        self.refresh = refresh

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return

        async def refreshed_first(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                try:
                    await run_in_threadpool(self.refresh)
                except Exception:  # the write is saved; the next read computes the analyses
                    _log.exception("refreshing the study's analyses after a write failed")
            await send(message)

        with write_in_flight():
            await self.app(scope, receive, refreshed_first)
