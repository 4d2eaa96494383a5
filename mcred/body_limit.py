"""A request body limit for the HTTP services (issuer service, reader service).

Starlette reads a request body whole before a route can look at its length, so a route's
own size check (the reader's 1 MiB, the OCSP responder's 16 KiB) came after the memory was
spent, and routes with JSON bodies had none. :class:`BodyLimit` is an ASGI middleware that
counts the body as the route reads it: a ``Content-Length`` over the limit, or a chunked
body that grows past it, ends the read with HTTP 413 (problem+json ``too-large``, through
the app's own handlers), before more than the limit is held. The limit is per path: a
default, and larger ones for the few routes that take large bodies by design (the relying
party's content to verify). ``MCRED_MAX_BODY`` (bytes) sets the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY = 1024 * 1024
#: Routes that take more by design, by path suffix: the relying party verifies content of up
#: to 4 MiB, sent base64 in JSON with its signature and certificate (reader/http.py).
LARGER = {"/rp/jpki/verify": 8 * 1024 * 1024}


def default_limit() -> int:
    raw = os.environ.get("MCRED_MAX_BODY", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_BODY


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int | None = None,
                 larger: Mapping[str, int] = LARGER) -> None:
        self.app = app
        self.max_bytes = max_bytes if max_bytes is not None else default_limit()
        self.larger = dict(larger)

    def limit_for(self, path: str) -> int:
        return max([self.max_bytes, *(n for suffix, n in self.larger.items() if path.endswith(suffix))])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        received = 0

        async def limited() -> Message:
            nonlocal received
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise HTTPException(413, f"request body of {int(declared)} bytes is over the "
                                         f"{limit}-byte limit of {scope.get('path', '')}")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body over the {limit}-byte limit of "
                                             f"{scope.get('path', '')}")
            return message

        await self.app(scope, limited, send)
