"""Addresses that hold data: a subject code as one path segment, whatever its characters.

New subject codes cannot hold a ``/`` (:mod:`celltrial.ingest.subject_codes`), but a study may
have been given one before that rule (``A/1``). Its page address encodes it (``/subjects/A%2F1``,
:func:`path_part`); the server decodes ``%2F`` before routing, which would split the segment in
two, so :class:`EncodedSlashes` keeps an encoded slash inside its segment (as
:data:`SLASH_IN_SEGMENT`) and :func:`restore_slashes` gives the route its ``/`` back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request

#: Stands for an encoded ``/`` inside one path segment between routing and the route (a
#: private-use character: no code holds it).
SLASH_IN_SEGMENT = "\ue000"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def path_part(value: object) -> str:
    """``value`` as one path segment of an address: every reserved character encoded."""
    return quote(str(value), safe="")


class EncodedSlashes:
    """ASGI middleware: an encoded slash (``%2F``) stays inside its path segment."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw and b"%2f" in raw.lower():
            text = raw.decode("latin-1").split("?", 1)[0]
            segments = [
                unquote(s.replace("%2F", SLASH_IN_SEGMENT).replace("%2f", SLASH_IN_SEGMENT))
                for s in text.split("/")
            ]
            scope = dict(scope, path="/".join(segments))
        await self.app(scope, receive, send)


async def restore_slashes(request: Request) -> None:
    """Every route: path parameters get their encoded slashes back (see the module)."""
    params = request.scope.get("path_params") or {}
    for name, value in params.items():
        if isinstance(value, str) and SLASH_IN_SEGMENT in value:
            params[name] = value.replace(SLASH_IN_SEGMENT, "/")
