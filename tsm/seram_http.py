"""GP SERAM's HTTP REST binding, the Remote Agent's side: two routes over a :class:`SeramHub`.

``POST {prefix}/handshake?sessionId=`` and ``POST {prefix}/remoteManagement?sessionId=``
(the OpenAPI ``gpseram.yaml``; its server URL puts them under ``/gp/seram``). The
``sessionId`` is the capability: a random UUID the TSM gave the phone's device application
and nobody else. Errors are RFC 9457 problems: 404 an unknown session, 406 no common
protocol or SE, 400 a malformed message, 409 one out of order, 413 a body over 4 MiB, 415
a body that is not JSON. Each order sets the cookie ``seram-order-<sessionId>`` to its
number; a Local Agent that sends it back (the binding says it SHOULD take cookies) has a
report re-sent after a lost answer recognized, so that no R-APDU reaches the TSM twice.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from protocols.gp import seram
from tsm.seram import SeramHub, UnknownSession

COOKIE_PREFIX = "seram-order-"
_SESSION_ID_MAX = 128


def _problem(status: int, kind: str, title: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": f"/problems/{kind}", "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json",
                        headers={"Cache-Control": "no-store"})


def _refusal(exc: seram.SeramError) -> JSONResponse:
    if isinstance(exc, UnknownSession):
        return _problem(404, "seram-unknown-session", "Unknown management session", str(exc))
    if isinstance(exc, seram.SeramNegotiationError):
        return _problem(406, "seram-negotiation", "No common protocol", str(exc))
    if isinstance(exc, seram.SeramStateError):
        return _problem(409, "seram-out-of-order", "Message out of order", str(exc))
    return _problem(400, "seram-malformed", "Malformed GP SERAM message", str(exc))


async def _body(request: Request) -> bytes | JSONResponse:
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", ""):
        return _problem(415, "seram-media-type", "Not JSON", f"GP SERAM messages are application/json, not {kind}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > seram.MAX_MESSAGE_BYTES:
            return _problem(413, "seram-too-large", "Message too large",
                            f"over the {seram.MAX_MESSAGE_BYTES} bytes a GP SERAM message may have here")
        chunks.append(chunk)
    return b"".join(chunks)


def _seen(request: Request, session_id: str) -> int | None:
    raw = request.cookies.get(COOKIE_PREFIX + session_id)
    if raw is None:
        return None
    return int(raw) if raw.isdigit() and len(raw) < 10 else -1  # -1: refused as out of order


def router(hub: SeramHub) -> APIRouter:
    r = APIRouter()
    sid_query = Query(..., alias="sessionId", min_length=1, max_length=_SESSION_ID_MAX)

    async def answer(request: Request, make) -> Response:  # noqa: ANN001 - make(body) -> Response
        body = await _body(request)
        if isinstance(body, Response):
            return body
        try:
            return await make(body)
        except seram.SeramError as exc:
            return _refusal(exc)

    @r.post("/handshake", response_class=JSONResponse)
    async def handshake(request: Request, session_id: str = sid_query) -> Response:
        async def make(body: bytes) -> Response:
            return Response(hub.handshake(session_id, body), media_type="application/json",
                            headers={"Cache-Control": "no-store"})

        return await answer(request, make)

    @r.post("/remoteManagement", response_class=JSONResponse)
    async def remote_management(request: Request, session_id: str = sid_query) -> Response:
        async def make(body: bytes) -> Response:
            # a long poll: the hub waits (on this event loop) until there is something to order
            order, number = await hub.exchange(session_id, body, _seen(request, session_id))
            response = Response(order, media_type="application/json", headers={"Cache-Control": "no-store"})
            response.set_cookie(COOKIE_PREFIX + session_id, str(number), httponly=True, samesite="strict")
            return response

        return await answer(request, make)

    return r
