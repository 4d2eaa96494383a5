"""The reader as an HTTP service: the session messages of ISO/IEC 18013-5 carried in POST
bodies, byte for byte (a transport adapter around :class:`reader.session.ReaderSession`).

* ``POST /sessions``: body the DeviceEngagement (CBOR, ``application/cbor``) or its QR
  text ``mdoc:...``; answers ``201`` with the SessionEstablishment (``application/cbor``),
  ``Location: /sessions/{id}``.
* ``POST /sessions/{id}``: body the wallet's SessionData; answers the reader's SessionData
  (status 20: the reader has what it asked for and ends the session).
* ``GET /sessions/{id}/result``: the verdict, ``{"valid", "checks", "documents"}``.

The JPKI relying party (:func:`relying_party_router`) joins the same service:

* ``POST /rp/jpki/verify``: JSON ``{"content", "signature", ? "certificate", ? "slot",
  ? "revocation"}`` (bytes in base64), a CMS detached signature as ``mcred jpki sign``
  makes it, or a raw one with the signer certificate; answers ``200`` with the verdict
  ``{"valid", "checks", "documents"}`` of :func:`reader.relying_party.verify` (revocation
  asked live: OCSP at the certificate's AIA, or its CRL distribution point); ``422`` for a
  body that is not such a request.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from protocols import cbor
from reader.errors import ReaderSessionError
from reader.relying_party import RelyingPartyService
from reader.session import ReaderOutcome, ReaderSession, RequestSpec, Verifier

CBOR = "application/cbor"
MAX_BODY = 1024 * 1024


@dataclass
class _Entry:
    session: ReaderSession
    created: dt.datetime
    outcome: ReaderOutcome | None = None
    verdict: bytes | None = None  # outcome.result as JSON, serialized once, when it is known


def verdict_json(outcome: ReaderOutcome) -> bytes:
    """The verdict as ``GET /sessions/{id}/result`` answers it: the same bytes as FastAPI's
    ``JSONResponse`` would render (compact, UTF-8, no NaN)."""
    return json.dumps(outcome.result.to_json(), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


class ReaderService:
    """Sessions by id, bounded in number and age; one verifier (pipeline) for all."""

    def __init__(
        self,
        verifier: Verifier,
        requests: Sequence[RequestSpec],
        *,
        reader_signer=None,
        reader_chain: Sequence[bytes] = (),
        session_ttl: dt.timedelta = dt.timedelta(minutes=5),
        max_sessions: int = 1000,
        save_dir: Path | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.verifier = verifier
        self.requests = list(requests)
        self.reader_signer = reader_signer
        self.reader_chain = list(reader_chain)
        self.session_ttl = session_ttl
        self.max_sessions = max_sessions
        self.save_dir = save_dir
        self.clock = clock
        self._sessions: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, now: dt.datetime) -> None:
        while self._sessions:
            sid, entry = next(iter(self._sessions.items()))
            if len(self._sessions) < self.max_sessions and now - entry.created < self.session_ttl:
                break
            del self._sessions[sid]

    def open(self, engagement: bytes | str) -> tuple[str, bytes]:
        session = ReaderSession(self.requests, self.verifier, reader_signer=self.reader_signer,
                                reader_chain=self.reader_chain)
        establishment = session.start(engagement)
        sid = secrets.token_urlsafe(16)
        now = self.clock()
        with self._lock:
            self._prune(now)
            self._sessions[sid] = _Entry(session, now)
        return sid, establishment

    def _get(self, sid: str) -> _Entry | None:
        with self._lock:
            self._prune(self.clock())
            return self._sessions.get(sid)

    def message(self, sid: str, data: bytes) -> bytes | None:
        entry = self._get(sid)
        if entry is None:
            return None
        outcome = entry.session.receive(data)
        # serialized here, in the worker thread that verified it: the result route then
        # only looks the bytes up, without a thread of its own
        try:
            verdict = verdict_json(outcome)
        except ValueError:  # nothing json_value makes; should it happen, the route renders (and fails) itself
            verdict = None
        entry.verdict, entry.outcome = verdict, outcome
        if self.save_dir is not None and outcome.device_response is not None:
            self._save(sid, entry)
        return entry.session.terminate()

    def outcome(self, sid: str) -> ReaderOutcome | None | bool:
        """The outcome, None for an unknown session, False while pending."""
        entry = self._get(sid)
        if entry is None:
            return None
        return entry.outcome or False

    def verdict(self, sid: str) -> bytes | None | bool:
        """The verdict's JSON bytes, None for an unknown session, False while pending. Never
        blocks (a lock held for a dict look-up): the result route calls it on the event loop.
        A verdict that could not be serialized then is rendered again here, and raises."""
        entry = self._get(sid)
        if entry is None:
            return None
        if entry.outcome is None:
            return False
        return entry.verdict if entry.verdict is not None else verdict_json(entry.outcome)

    def _save(self, sid: str, entry: _Entry) -> None:
        from cryptography.hazmat.primitives import serialization

        key = entry.session.e_reader_private_key
        m = {"deviceResponse": entry.outcome.device_response,
             "sessionTranscript": entry.outcome.session_transcript.raw}
        if key is not None:
            m["eReaderPrivateKey"] = key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.save_dir.mkdir(parents=True, exist_ok=True)
        (self.save_dir / f"{sid}.cbor").write_bytes(cbor.dumps(m))


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"body over {MAX_BODY} bytes")
    return body


def reader_router(service: ReaderService) -> APIRouter:
    router = APIRouter(tags=["reader"])

    @router.post("/sessions", status_code=201, response_class=Response,
                 responses={201: {"content": {CBOR: {}}}, 400: {}})
    async def open_session(request: Request) -> Response:
        body = await _body(request)
        engagement: bytes | str = body
        if body.startswith(b"mdoc:"):
            try:
                engagement = body.decode("ascii").strip()
            except UnicodeDecodeError:
                raise HTTPException(400, "engagement URI is not ASCII") from None
        try:
            sid, establishment = await run_in_threadpool(service.open, engagement)
        except ReaderSessionError as exc:
            raise HTTPException(400, str(exc)) from None
        return Response(establishment, status_code=201, media_type=CBOR,
                        headers={"Location": f"/sessions/{sid}", "X-Session-Id": sid})

    @router.post("/sessions/{sid}", response_class=Response,
                 responses={200: {"content": {CBOR: {}}}, 404: {}})
    async def session_data(sid: str, request: Request) -> Response:
        body = await _body(request)
        reply = await run_in_threadpool(service.message, sid, body)
        if reply is None:
            raise HTTPException(404, "no such session")
        return Response(reply, media_type=CBOR)

    @router.get("/sessions/{sid}/result", response_class=JSONResponse)
    async def result(sid: str) -> Response:
        # on the event loop: the verdict was serialized when the SessionData was verified
        verdict = service.verdict(sid)
        if verdict is None:
            raise HTTPException(404, "no such session")
        if verdict is False:
            raise HTTPException(409, "no response received yet")
        return Response(verdict, media_type="application/json")

    return router


# -- the JPKI relying party ---------------------------------------------------------------

#: Content up to 4 MiB (base64: 4/3 of that); signatures and certificates up to 48 KiB.
MAX_CONTENT_B64 = 4 * 1024 * 1024 * 4 // 3 + 4
MAX_BLOB_B64 = 64 * 1024
#: The whole JSON body of a relying-party request: content, signature and certificate in
#: base64, and the rest (FastAPI counts it as read and answers 413 past it).
RP_MAX_BODY = MAX_CONTENT_B64 + 3 * MAX_BLOB_B64 + 4096
_B64 = r"^[A-Za-z0-9+/_\-\s]*={0,2}\s*$"


class RpVerifyRequest(BaseModel):
    """A signature to judge: bytes in base64 (standard or URL-safe alphabet)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str = Field(max_length=MAX_CONTENT_B64, pattern=_B64,
                         description="the signed content, base64")
    signature: str = Field(min_length=1, max_length=MAX_BLOB_B64, pattern=_B64,
                           description="CMS detached SignedData (DER, as `mcred jpki sign` "
                           "writes it), or a raw signature when `certificate` is given; base64")
    certificate: str | None = Field(None, min_length=1, max_length=MAX_BLOB_B64, pattern=_B64,
                                    description="signer certificate (DER), base64: "
                                    "`signature` is then raw (PKCS#1 v1.5 / ECDSA DER)")
    slot: Literal["sign", "auth"] = Field("sign", description="the certificate the relying "
                                          "party requires: signing or user authentication")
    revocation: Literal["ocsp", "crl", "auto"] = Field(
        "ocsp", description="ask the certificate's OCSP responder; or fetch its CRL (kept by "
        "the service until its nextUpdate, at most 5 minutes); or `auto`: OCSP, and the CRL "
        "only when the responder gave no verified answer")


def _b64(value: str, what: str) -> bytes:
    text = "".join(value.split())
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/")
                                + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{what}: not base64") from None


def relying_party_router(rp: RelyingPartyService) -> APIRouter:
    """``POST /rp/jpki/verify`` (no scope of its own: the composition root mounts it)."""
    router = APIRouter(tags=["relying party"])

    @router.post("/rp/jpki/verify", summary="Verify a signature made with a phone's JPKI "
                 "certificate: signature, chain, policy, key usage, validity, revocation",
                 max_body_size=RP_MAX_BODY)
    async def verify_jpki(body: RpVerifyRequest) -> JSONResponse:
        content = _b64(body.content, "content")
        signature = _b64(body.signature, "signature")
        certificate = _b64(body.certificate, "certificate") if body.certificate else None
        if not signature:
            raise HTTPException(422, "signature: empty")
        result = await run_in_threadpool(rp.verify, content, signature, slot=body.slot,
                                         certificate=certificate, revocation=body.revocation)
        return JSONResponse(result)

    return router
