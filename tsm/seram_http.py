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

from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from protocols.gp import seram
from tsm.seram import SeramHub, UnknownSession

COOKIE_PREFIX = "seram-order-"
_SESSION_ID_MAX = 128


# The bodies, as JSON Schema for the OpenAPI document: written from the standard's texts
# (its examples' member names; the readers in protocols.gp.seram also take the schema's
# other names, specs/tsm.md "Where the texts disagree").
_HEX = {"type": "string", "pattern": "^([0-9A-Fa-f]{2})*$"}
_SE = {"type": "object", "required": ["seType", "seId"], "properties": {
    "seType": {"type": "string", "enum": list(seram.SE_TYPES)}, "seId": {"type": "string"},
    "seExtraInfo": {"type": "string"}}}
_HANDSHAKE = {"type": "object", "required": ["secureElements"], "properties": {
    "secureElements": {"type": "array", "items": _SE, "minItems": 1, "maxItems": seram.MAX_SECURE_ELEMENTS},
    "supportedTransportProtocols": {"type": "array", "items": {"type": "string"}},
    "supportedDataFormats": {"type": "array", "items": {"type": "string"}},
    "supportedVersions": {"type": "array", "items": {"type": "string"}}}}
_HANDSHAKE_ANSWER = {"type": "object", "properties": {
    "chosenTransportProtocol": {"type": "string"}, "chosenDataFormat": {"type": "string"},
    "chosenDataProtocol": {"type": "string"}, "chosenVersion": {"type": "string"}}}
_REPORT = {"type": "object", "required": ["localAgentStatus"], "properties": {
    "localAgentStatus": {"type": "object", "required": ["localAgentStatusEnum"], "properties": {
        "localAgentStatusEnum": {"type": "string", "enum": list(seram.STATUSES)},
        "executedSeRamCommands": {"type": "integer", "minimum": 0},
        "executedRamCommands": {"type": "integer", "minimum": 0},
        "errorMsg": {"type": "string"}}},
    "ramResponses": {"type": "array", "items": {"type": "object", "required": ["ramResponseType", "listOfRAPDU"],
                                                "properties": {"ramResponseType": {"const": "seRamResponse"},
                                                               "listOfRAPDU": {"type": "array", "items": _HEX}}}}}}
_ORDER = {"type": "object", "properties": {
    "delay": {"type": "integer", "minimum": 0}, "chosenSecureElement": _SE,
    "ramCommands": {"type": "array", "items": {"type": "object", "required": ["ramCommandType"], "properties": {
        "ramCommandType": {"type": "string", "enum": ["startCommand", "seRamCommand", "notificationCommand",
                                                      "stopCommand"]},
        "listOfCAPDU": {"type": "array", "items": _HEX}, "deviceAppNotification": {"type": "string"}}}}}}


def _documented(body: dict, answer: dict, summary: str) -> dict:
    """``openapi_extra`` for a route that reads its JSON body itself."""
    return {"summary": summary,
            "requestBody": {"required": True, "content": {seram.DATA_FORMAT: {"schema": body}}},
            "responses": {"200": {"description": "OK", "content": {seram.DATA_FORMAT: {"schema": answer}}},
                          **_REFUSALS}}


#: What the Remote Agent refuses, each an RFC 9457 problem (:func:`_refusal`, :func:`_body`).
_REFUSALS = {
    "400": {"description": "/problems/seram-malformed: not a GP SERAM message of this step"},
    "404": {"description": "/problems/seram-unknown-session: no such management session"},
    "406": {"description": "/problems/seram-negotiation: no protocol, format or version in common"},
    "409": {"description": "/problems/seram-out-of-order: a message out of the session's order"},
    "413": {"description": "/problems/seram-too-large: over the size a GP SERAM message may have here"},
    "415": {"description": "/problems/seram-media-type: not application/json"},
    "503": {"description": "/problems/database-unavailable: the relay between the service's processes did not "
                           "answer (under several workers; Retry-After)"},
    "504": {"description": "/problems/seram-holder-silent: the service process holding the session did not "
                           "answer in time (under several workers: tsm.seram_relay)"},
}


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


@dataclass(frozen=True)
class Answer:
    """What the Remote Agent answers one request: an HTTP status, a JSON body (a GP SERAM
    message, or an RFC 9457 problem), and the order's number for the cookie."""

    status: int
    body: bytes
    number: int | None = None

    def response(self, session_id: str) -> Response:
        if self.status != 200:
            return Response(self.body, status_code=self.status, media_type="application/problem+json",
                            headers={"Cache-Control": "no-store"})
        response = Response(self.body, media_type="application/json", headers={"Cache-Control": "no-store"})
        if self.number is not None:
            response.set_cookie(COOKIE_PREFIX + session_id, str(self.number), httponly=True, samesite="strict")
        return response


ROUTES = ("handshake", "remoteManagement")


async def serve(hub: SeramHub, route: str, session_id: str, body: bytes, seen: int | None) -> Answer:
    """The hub's answer to one request of ``route`` (a phone's, or one relayed from another
    process of the service: ``tsm.seram_relay``)."""
    try:
        if route == "handshake":
            return Answer(200, hub.handshake(session_id, body))
        # a long poll: the hub waits (on this event loop) until there is something to order
        order, number = await hub.exchange(session_id, body, seen)
        return Answer(200, order, number)
    except seram.SeramError as exc:
        return refusal(exc)


def _answer(response: JSONResponse) -> Answer:
    return Answer(response.status_code, bytes(response.body))


def refusal(exc: seram.SeramError) -> Answer:
    """The problem answering a refused message (404, 406, 409 or 400, as the routes say)."""
    return _answer(_refusal(exc))


def problem(status: int, kind: str, title: str, detail: str) -> Answer:
    """An RFC 9457 problem answer of the Remote Agent's own (``/problems/<kind>``)."""
    return _answer(_problem(status, kind, title, detail))


class Relay(Protocol):
    """Where a request for a session this process's hub does not hold goes
    (:class:`tsm.seram_relay.SeramRelay`)."""

    async def forward(self, route: str, session_id: str, body: bytes, seen: int | None) -> Answer: ...


def router(hub: SeramHub, relay: Relay | None = None) -> APIRouter:
    """The two routes over ``hub``; with a ``relay``, a session another process of the
    service holds is answered by that process."""
    r = APIRouter()
    sid_query = Query(..., alias="sessionId", min_length=1, max_length=_SESSION_ID_MAX)

    async def answer(request: Request, route: str, session_id: str) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        seen = _seen(request, session_id) if route == "remoteManagement" else None
        if relay is not None and not hub.holds(session_id):
            out = await relay.forward(route, session_id, body, seen)
        else:
            out = await serve(hub, route, session_id, body, seen)
        return out.response(session_id)

    @r.post("/handshake", response_class=JSONResponse, openapi_extra=_documented(
        _HANDSHAKE, _HANDSHAKE_ANSWER, "GP SERAM handshake: the phone's SEs and protocols in, the choice out"))
    async def handshake(request: Request, session_id: str = sid_query) -> Response:
        return await answer(request, "handshake", session_id)

    @r.post("/remoteManagement", response_class=JSONResponse, openapi_extra=_documented(
        _REPORT, _ORDER, "GP SERAM command exchange: a report in (a long poll), the next order out"))
    async def remote_management(request: Request, session_id: str = sid_query) -> Response:
        return await answer(request, "remoteManagement", session_id)

    return r
