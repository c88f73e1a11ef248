"""A size limit on every request body, checked before the body is read.

A body larger than the route's limit gets 413 without being read: from its ``Content-Length``
before the application sees the request, and, for a body streamed without one (chunked), by
counting its bytes as they arrive and stopping at the limit. Most routes take small JSON or form
bodies (:data:`MAX_BODY_BYTES`); the upload routes have their own, larger limit
(``celltrial serve --max-upload-mb``, ``app.state.upload_limit``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from celltrial.web.security import SECURITY_HEADERS

#: The largest body of a form or an API call (the largest real one, a long AE narrative, is a
#: few kB; the uploads have their own limit).
MAX_BODY_BYTES = 1 << 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def megabytes(size: int) -> str:
    """A size as people read it: "64 MB", "256 kB", "100 bytes"."""
    if size >= 2**20:
        return f"{size / 2**20:.0f} MB"
    return f"{size / 2**10:.0f} kB" if size >= 2**10 else f"{size} bytes"


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit_for(scope)`` bytes, before reading it."""

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        length = _content_length(scope)
        if length is not None and length > limit:
            await _refuse(scope, send, length=length, limit=limit)
            return
        received = 0
        started = refused = False

        async def counted() -> Message:
            # past the limit: 413 is sent from here and the app is told the client has gone (an
            # exception would reach the route wrapped in the task groups of the layers between)
            nonlocal received, started, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        started = True
                        await _refuse(scope, send, length=None, limit=limit)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's answer to a body it did not get in full
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, watched)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _too_large(length: int | None, limit: int) -> str:
    size = f" ({megabytes(length)})" if length is not None else ""
    return f"the request{size} is larger than the limit of {megabytes(limit)}: nothing was read"


async def _refuse(scope: Scope, send: Send, *, length: int | None, limit: int) -> None:
    """413 with a plain message: JSON for the API, text for the pages."""
    message = _too_large(length, limit)
    if str(scope.get("path", "")).startswith("/api/"):
        body, kind = json.dumps({"detail": message}).encode(), b"application/json"
    else:
        body, kind = f"Not saved: {message}.".encode(), b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body is not waited for
        *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
