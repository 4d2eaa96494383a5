"""The reader as an HTTP service: the session messages of ISO/IEC 18013-5 carried in POST
bodies, byte for byte (a transport adapter around :class:`reader.session.ReaderSession`).

* ``POST /sessions``: body the DeviceEngagement (CBOR, ``application/cbor``) or its QR
  text ``mdoc:...``; answers ``201`` with the SessionEstablishment (``application/cbor``),
  ``Location: /sessions/{id}``.
* ``POST /sessions/{id}``: body the wallet's SessionData; answers the reader's SessionData
  (status 20: the reader has what it asked for and ends the session).
* ``GET /sessions/{id}/result[?wait=S]``: the verdict, ``{"valid", "checks", "documents"}``
  (``409`` while pending; ``wait``: a long poll of up to 60 s).

Online presentation (:mod:`reader.online`), for the web page of the service's origin:

* ``POST /online/sessions?protocol=...``: answers ``201`` with ``{"session", "origin",
  "request"}``, ``request`` being what the page passes to ``navigator.credentials.get``
  (``org-iso-mdoc``, ISO/IEC TS 18013-7 Annex C: ``{"protocol", "data": {"deviceRequest",
  "encryptionInfo"}}``; ``openid4vp-v1-unsigned`` or ``-signed``, OpenID4VP 1.0),
  ``Location: /online/sessions/{id}``; or, with ``openid4vp-cross-device``, the
  authorization request URI a page shows as a QR code (``{"uri", "client_id",
  "response_uri", ? "request_uri", ? "qr"}``), ``Location: /sessions/{id}/result``.
* ``POST /online/sessions/{id}``: body the credential the browser returned (JSON
  ``{"protocol", "data": {"response"}}``, or ``{"response"}``); answers the verdict, as
  ``GET /sessions/{id}/result`` does afterwards. ``400`` for a body that is not such JSON
  (the session stays open); an EncryptedResponse that does not open ends it, failed.
* Cross-device (:func:`cross_device_router`, public: a phone has no token):
  ``GET|POST /oid4vp/requests/{id}`` the signed request object (the request_uri), and
  ``POST /oid4vp/responses/{id}`` the wallet's ``direct_post.jwt`` form (the response_uri).

Sessions live in a :mod:`reader.sessions` store: this process's memory by default, or the
database when the service is given an engine (any worker continues any session; the
SessionData is verified once, by the worker that claims it).

The JPKI relying party (:func:`relying_party_router`) joins the same service:

* ``POST /rp/jpki/verify``: JSON ``{"content", "signature", ? "certificate", ? "slot",
  ? "revocation"}`` (bytes in base64), a CMS detached signature as ``mcred jpki sign``
  makes it, or a raw one with the signer certificate; answers ``200`` with the verdict
  ``{"valid", "checks", "documents"}`` of :func:`reader.relying_party.verify` (revocation
  asked live: OCSP at the certificate's AIA, or its CRL distribution point); ``422`` for a
  body that is not such a request.
* ``POST /rp/jpki/verify-pdf?revocation=ocsp|crl|auto|embedded``: the signed PDF itself as the body
  (``application/pdf``, at most 16 MiB); answers ``200`` with the verdict of
  :func:`reader.jpki_pdf.verify_pdf` over every signature in it (``signatures``: each
  field's own); ``415`` for another content type, ``422`` for an empty body, ``501`` where
  pyHanko (the ``pdf`` extra) is not installed.
* ``POST /rp/jpki/verify-xml?revocation=ocsp|crl|auto|embedded``: an XML document signed inside (an
  enveloped XML signature or XAdES B-B, ``application/xml``, at most 16 MiB); answers ``200``
  with the verdict of :func:`reader.jpki_xml.verify_xml`; ``415`` for another content type,
  ``422`` for an empty body, ``501`` where signxml (the ``xml`` extra) is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from protocols import cbor, json_strict
from protocols.mdoc import (
    Check,
    SessionData,
    UseCase,
    VerificationResult,
    dcapi,
    is_issuer_signed,
    oid4vp,
    oid4vp_redirect,
)
from protocols.mdoc.session import SESSION_STATUS_TERMINATION
from reader.errors import (
    BleReaderBusy,
    NfcReaderBusy,
    NfcReaderError,
    NoBleReader,
    NoNfcReader,
    ReaderSessionError,
)
from reader.nfc import NfcReaderSession
from reader.online import (
    CROSS_DEVICE,
    ONLINE_KINDS,
    Oid4vpRedirectReaderSession,
    check_origin,
    credential_message,
    resume_any,
)
from reader.relying_party import RelyingPartyService
from reader.schemas import JpkiVerdict, MdocVerdict, PdfVerdict
from reader.session import (
    SESSION,
    SESSION_FAILED,
    ReaderOutcome,
    ReaderSession,
    RequestSpec,
    Verifier,
)
from reader.sessions import (
    AWAITING,
    DONE,
    PROCESSING,
    MemorySessionStore,
    SessionSealer,
    SessionStore,
    SqlSessionStore,
    State,
)

CBOR = "application/cbor"
#: ``responses=`` entry of a route answering an mdoc verdict (the routes send its JSON as
#: built: the model documents it, it does not filter it)
VERDICT = {"model": MdocVerdict, "description": "the verdict: valid, its checks, the documents disclosed"}
MAX_BODY = 1024 * 1024
#: The refusal of a route that reads or writes the sessions (or challenges) where the service
#: keeps them: in a database (``--db``, or inside ``mcred serve``), which may not answer.
SESSIONS_DB = {503: {"description": "/problems/database-unavailable: the sessions' database did not answer "
                                    "(a reader serving with --db; Retry-After)"}}
NO_SESSION = {404: {"description": "/problems/not-found: no such session (unknown or expired)"}}
#: POST /nfc/taps when its NFC reader read no phone (none tapped in time, PC/SC not answering).
NFC_UNAVAILABLE = "/problems/nfc-unavailable"
#: The longest a result request may wait for a pending verdict, and how often it looks
#: (in memory; in the database, less often).
MAX_WAIT, WAIT_STEP, WAIT_STEP_DB = 60.0, 0.05, 0.25
#: Where a cross-device OpenID4VP session's request object is served and its answer posted.
REQUESTS_PATH, RESPONSES_PATH = "/oid4vp/requests", "/oid4vp/responses"


def _public_url(url: str) -> str:
    """A base URL for the reader's routes: http(s), a host, no query or fragment; without
    its trailing slash."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and parts.hostname and not parts.query and not parts.fragment
    except ValueError:
        ok = False
    if not ok or "@" in parts.netloc:
        raise ReaderSessionError(f"public URL {url[:80]!r}: an http(s) URL with a host, no query (e.g. "
                                 "https://rp.example or https://rp.example/reader)")
    return url.rstrip("/")


def verdict_json(outcome: ReaderOutcome) -> bytes:
    """The verdict as ``GET /sessions/{id}/result`` answers it: the same bytes as FastAPI's
    ``JSONResponse`` would render (compact, UTF-8, no NaN)."""
    return json.dumps(outcome.result.to_json(), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


#: How long a session lives, and how many are kept (the oldest dropped first).
SESSION_TTL = dt.timedelta(minutes=5)
MAX_SESSIONS = 1000
#: How long a verification may take before the session is ended as interrupted: its worker
#: stopped (killed, or lost its database) between taking the SessionData and keeping the
#: verdict. A verification takes milliseconds; its fetches (status list, IACA CRL) time out
#: after 5 s each.
PROCESSING_LIMIT = dt.timedelta(minutes=1)


def failed_session(reason: str) -> ReaderOutcome:
    """A verdict of one failed ``session`` check: what a session the reader could not carry
    through ends with."""
    return ReaderOutcome(VerificationResult((Check(SESSION, False, reason, code=SESSION_FAILED),)))


def interrupted_outcome(claimed_at: dt.datetime, limit: dt.timedelta) -> ReaderOutcome:
    """The failed verdict of a session whose verification never finished."""
    return failed_session(
        f"verification interrupted: the wallet's response was taken at "
        f"{claimed_at.isoformat(timespec='seconds')} and no verdict was kept within "
        f"{limit.total_seconds():g} s (the reader worker stopped); the wallet must present again")


def session_result(store: SessionStore, sid: str, now: dt.datetime,
                   limit: dt.timedelta = PROCESSING_LIMIT) -> bytes | None | State:
    """What the result route answers for ``sid``: the verdict's JSON bytes; None for an
    unknown or expired session; its state (``awaiting_response``, ``processing``) while
    pending. A session ``processing`` for longer than ``limit`` is ended here with a failed
    verdict (:func:`interrupted_outcome`), by whichever caller gets there first."""
    view = store.view(sid, now)
    if view is not None and view.state == PROCESSING and view.claimed_at is not None \
            and now - view.claimed_at > limit:
        outcome = interrupted_outcome(view.claimed_at, limit)
        verdict = verdict_json(outcome)
        if store.interrupt(sid, now - limit, outcome, verdict):
            return verdict
        view = store.view(sid, now)  # finished (or interrupted) by another meanwhile
    if view is None or view.state != DONE:
        return None if view is None else view.state
    if view.verdict is not None:
        return view.verdict
    if view.outcome is None:
        raise ReaderSessionError("the verdict of this session could not be serialized")
    return verdict_json(view.outcome)


class ReaderService:
    """Sessions by id, bounded in number and age; one verifier (pipeline) for all.

    Sessions are kept in ``store``: this process's memory by default, or a
    :class:`reader.sessions.SqlSessionStore` when ``engine`` is given, so that every worker
    on that database can continue a session any of them opened."""

    def __init__(
        self,
        verifier: Verifier,
        requests: Sequence[RequestSpec],
        *,
        reader_signer=None,
        reader_chain: Sequence[bytes] = (),
        session_ttl: dt.timedelta = SESSION_TTL,
        max_sessions: int = MAX_SESSIONS,
        save_dir: Path | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        engine=None,
        processing_limit: dt.timedelta = PROCESSING_LIMIT,
        on_outcome: Callable[[ReaderOutcome, float], None] | None = None,
        session_sealer: SessionSealer | None = None,
        origin: str | None = None,
        public_url: str | None = None,
        tapper: Callable[[NfcReaderSession, float], ReaderOutcome] | None = None,
        ble_hci: str | None = None,
        reader_auth_all: bool = False,
        use_cases: Sequence[UseCase] = (),
    ) -> None:
        self.verifier = verifier
        #: ISO 18013-5 second edition: sign every DeviceRequest once (readerAuthAll), and
        #: the use cases its deviceRequestInfo carries (proximity, taps and Annex C)
        self.reader_auth_all = reader_auth_all
        self.use_cases = tuple(use_cases)
        #: How a tap reaches a phone on this reader's own NFC reader (:func:`reader.pcsc.tapper`):
        #: called with the tap's session and the seconds to wait for a phone, it returns the
        #: outcome or raises :class:`reader.errors.NfcReaderError`. None: no NFC reader.
        self.tapper = tapper
        self._tap_lock = threading.Lock()
        #: The HCI transport of this reader's own Bluetooth controller (``usb:0``,
        #: ``tcp-client:127.0.0.1:9101``) for reads over BLE; None: no BLE.
        self.ble_hci = ble_hci
        self._ble_lock = threading.Lock()
        #: The URL the reader's routes are reached at from a phone (``https://rp.example`` or
        #: ``.../reader``): the base of a cross-device session's request_uri and response_uri;
        #: None: no cross-device sessions.
        self.public_url = None if public_url is None else _public_url(public_url)
        #: The web origin whose page makes online requests (Annex C); None: no online sessions.
        self.origin = None if origin is None else check_origin(origin)
        self.requests = list(requests)
        self.reader_signer = reader_signer
        self.reader_chain = list(reader_chain)
        self.session_ttl = session_ttl
        self.max_sessions = max_sessions
        self.save_dir = save_dir
        self.clock = clock
        self.processing_limit = processing_limit
        #: Called with each verified session's outcome and the seconds its SessionData took
        #: (decryption and verification); the composition root counts verdicts with it.
        self.on_outcome = on_outcome
        self.store: SessionStore = (
            MemorySessionStore(session_ttl, max_sessions) if engine is None
            else SqlSessionStore(engine, session_ttl, max_sessions, self._resume, sealer=session_sealer))

    @property
    def verdict_blocks(self) -> bool:
        """True when looking a verdict up waits on the database (not on the event loop, then)."""
        return self.store.blocking

    def _resume(self, key, transcript: bytes, request: bytes | None = None) -> ReaderSession:  # noqa: ANN001
        session = resume_any(self.requests, self.verifier, key, transcript, request)
        session.use_cases = self.use_cases  # what its answer is matched against
        return session

    def _iso(self) -> dict:
        """How this reader's ISO DeviceRequests are made: readerAuth, readerAuthAll, use cases."""
        return {"reader_signer": self.reader_signer, "reader_chain": self.reader_chain,
                "reader_auth_all": self.reader_auth_all, "use_cases": self.use_cases}

    def verify_issuer_signed(self, data: bytes) -> VerificationResult | None:
        """The verifier's verdict on an IssuerSigned as issued (no session, no device
        authentication); None when the verifier cannot check one on its own."""
        verify = getattr(self.verifier, "verify_issuer_signed", None)
        return None if verify is None else verify(data)

    def open(self, engagement: bytes | str) -> tuple[str, bytes]:
        session = ReaderSession(self.requests, self.verifier, **self._iso())
        establishment = session.start(engagement)
        sid = secrets.token_urlsafe(16)
        self.store.add(sid, session, self.clock())
        return sid, establishment

    def tap(self, wait: float) -> ReaderOutcome:
        """Read the phone tapped on this reader's NFC reader (one tap at a time), waiting up
        to ``wait`` seconds for one: the outcome, counted and saved as a session's is.
        :class:`NoNfcReader`, :class:`NfcReaderBusy`, or the tapper's
        :class:`reader.errors.NfcReaderError` when no phone was read."""
        if self.tapper is None:
            raise NoNfcReader("this reader has no NFC reader (mcred reader serve --pcsc-reader NAME)")
        return self._read_alone(self._tap_lock, NfcReaderBusy("the NFC reader is reading another tap"), "nfc",
                                lambda session: self.tapper(NfcReaderSession(session), wait))

    def ble_read(self, engagement: str, wait: float) -> ReaderOutcome:
        """Read over BLE the phone whose QR code said ``engagement`` (its ``mdoc:`` URI), on
        this reader's Bluetooth controller, one phone at a time, waiting up to ``wait``
        seconds at each step: the outcome, counted and saved as a session's is (a phone not
        found, or not answering, is a failed ``session`` check). :class:`NoBleReader` or
        :class:`BleReaderBusy`. Not on the event loop: it runs one of its own."""
        if self.ble_hci is None:
            raise NoBleReader("this reader has no Bluetooth controller (mcred reader serve --ble-hci TRANSPORT)")
        import asyncio

        from reader import ble

        return self._read_alone(
            self._ble_lock, BleReaderBusy("the Bluetooth controller is reading another phone"), "ble",
            lambda session: asyncio.run(ble.read(session, engagement, self.ble_hci, timeout=wait)).outcome)

    def _read_alone(self, lock: threading.Lock, busy: Exception, kind: str,
                    read: Callable[[ReaderSession], ReaderOutcome]) -> ReaderOutcome:
        """One read on a device of this reader's own (its NFC reader, its Bluetooth
        controller) while nobody else reads on it (``busy`` raised if somebody does): a new
        session read by ``read``, the outcome counted and saved as a session's is."""
        if not lock.acquire(blocking=False):
            raise busy
        try:
            session = ReaderSession(self.requests, self.verifier, **self._iso())
            t0 = time.perf_counter()
            outcome = read(session)
            spent = time.perf_counter() - t0
        finally:
            lock.release()
        self._verified(f"{kind}-{secrets.token_urlsafe(8)}", outcome, spent, session.e_reader_private_key)
        return outcome

    def open_online(self, protocol: str = dcapi.PROTOCOL) -> tuple[str, dict]:
        """A new online session: its id and the request object for the page, in ``protocol``
        (``org-iso-mdoc``: ISO/IEC TS 18013-7 Annex C; ``openid4vp-v1-unsigned``: OpenID4VP 1.0)."""
        if self.origin is None:
            raise ReaderSessionError("this reader serves no web origin: online requests need its origin "
                                     "(mcred reader serve --origin https://rp.example)")
        kind = ONLINE_KINDS.get(protocol)
        if kind is None:
            raise ReaderSessionError(f"protocol {protocol!r:.60}: one of {', '.join(ONLINE_KINDS)}")
        session = kind(self.requests, self.verifier, self.origin, **self._iso())
        request = session.start()
        sid = secrets.token_urlsafe(16)
        self.store.add(sid, session, self.clock())
        return sid, request

    def open_cross_device(self) -> tuple[str, dict]:
        """A new cross-device OpenID4VP session (:class:`reader.online.Oid4vpRedirectReaderSession`):
        its id and ``{"uri", "client_id", "response_uri", ? "request_uri"}``, ``uri`` the
        authorization request the page shows as a QR code. Signed (by reference) when the
        reader has a certificate, unsigned by value (``redirect_uri:``) when it has none."""
        if self.public_url is None:
            raise ReaderSessionError("this reader has no public URL for a phone to reach it: cross-device "
                                     "requests need one (mcred reader serve --public-url https://rp.example)")
        sid = secrets.token_urlsafe(16)
        session = Oid4vpRedirectReaderSession(
            self.requests, self.verifier, response_uri=f"{self.public_url}{RESPONSES_PATH}/{sid}",
            request_uri=f"{self.public_url}{REQUESTS_PATH}/{sid}" if self.reader_signer is not None else None,
            reader_signer=self.reader_signer, reader_chain=self.reader_chain, use_cases=self.use_cases)
        request = session.start()
        self.store.add(sid, session, self.clock())
        return sid, request

    def request_object(self, sid: str, wallet_nonce: str | None = None) -> str | None:
        """The signed request object a cross-device session's ``request_uri`` serves (any
        worker, while the session awaits its answer); None for no such session, one that is
        answered already, or one with its request by value."""
        view = self.store.view(sid, self.clock())
        if view is None or view.state != AWAITING or view.request is None or self.reader_signer is None:
            return None
        return Oid4vpRedirectReaderSession.request_object(view.request, self.reader_signer, self.reader_chain,
                                                          wallet_nonce=wallet_nonce)

    def direct_post(self, sid: str, body: bytes) -> bool | None:
        """A wallet's form posted to a cross-device session's ``response_uri``: verified (by
        :meth:`message`) when the session awaits it; False when it was answered already, None
        when there is no such cross-device session."""
        view = self.store.view(sid, self.clock())
        if view is None or view.request is None:
            return None
        if view.state != AWAITING:
            return False
        self.message(sid, body)
        return True

    def message(self, sid: str, data: bytes) -> bytes | None:
        """The reader's SessionData for the wallet's ``data``; None for an unknown session.
        The first message is verified; a session already done (or being verified by another
        worker) answers the same termination without verifying anything again."""
        try:
            session = self.store.claim(sid, self.clock())
        except ReaderSessionError as exc:  # taken, but its row cannot be continued (key, transcript)
            outcome = failed_session(str(exc))
            self.store.finish(sid, outcome, verdict_json(outcome))
            if self.on_outcome is not None:
                self.on_outcome(outcome, 0.0)
            return SessionData(status=SESSION_STATUS_TERMINATION).encode()
        if session is None:
            return None
        if isinstance(session, str):
            return SessionData(status=SESSION_STATUS_TERMINATION).encode()
        t0 = time.perf_counter()
        outcome = session.receive(data)
        spent = time.perf_counter() - t0
        # serialized here, in the worker thread that verified it: the result route then
        # only looks the bytes up, without a thread of its own
        try:
            verdict = verdict_json(outcome)
        except ValueError:  # nothing json_value makes; should it happen, the route renders (and fails) itself
            verdict = None
        self.store.finish(sid, outcome, verdict)
        self._verified(sid, outcome, spent, session.e_reader_private_key)
        return session.terminate()

    def _verified(self, name: str, outcome: ReaderOutcome, spent: float, key) -> None:  # noqa: ANN001
        """A verdict reached (a session's or a tap's): counted, and its transcript saved."""
        if self.on_outcome is not None:
            self.on_outcome(outcome, spent)
        if self.save_dir is not None and outcome.device_response is not None:
            self._save(name, outcome, key)

    def outcome(self, sid: str) -> ReaderOutcome | None | bool:
        """The outcome, None for an unknown session, False while pending. Only the in-memory
        store keeps the object: with a database, a session done answers True (its verdict
        is :meth:`verdict`)."""
        view = self.store.view(sid, self.clock())
        if view is None:
            return None
        if view.state != DONE:
            return False
        return view.outcome if view.outcome is not None else True

    def verdict(self, sid: str) -> bytes | None | bool:
        """The verdict's JSON bytes, None for an unknown session, False while pending. With
        the in-memory store it never blocks (a lock held for a dict look-up): the result
        route calls it on the event loop; with a database it is one SELECT, in the thread
        pool. A verdict that could not be serialized then is rendered again here, and raises."""
        result = self.result(sid)
        return False if isinstance(result, str) else result

    def result(self, sid: str) -> bytes | None | State:
        """:meth:`verdict`, with the state of a pending session in place of False (see
        :func:`session_result`: a verification interrupted for longer than the service's
        ``processing_limit`` is ended with a failed verdict)."""
        return session_result(self.store, sid, self.clock(), self.processing_limit)

    def _save(self, sid: str, outcome: ReaderOutcome, key) -> None:  # noqa: ANN001
        from cryptography.hazmat.primitives import serialization

        m = {"deviceResponse": outcome.device_response,
             "sessionTranscript": outcome.session_transcript.raw}
        if key is not None:
            m["eReaderPrivateKey"] = key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        # a holder's data and the key that opens the session: the reader's operator's alone,
        # whatever the umask (a new file 0600 in a new directory 0700)
        self.save_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.save_dir / f"{sid}.cbor", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o600)
            f.write(cbor.dumps(m))


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"body over {MAX_BODY} bytes")
    return body


_PAGE_DIR = Path(__file__).resolve().parent
#: The test page's policy: its own script and requests only; the portrait as a data: image.
PAGE_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def online_page_router(service: ReaderService) -> APIRouter:
    """``GET /online``: a page that asks the browser's wallet (Digital Credentials API,
    ``org-iso-mdoc``) through this reader's online sessions and shows the verdict; ``GET
    /online/page.js`` its script (``reader/online_page.js``). For the stand-alone reader,
    whose pages a browser opens at the reader's origin."""
    import html

    router = APIRouter(tags=["reader"])

    @router.get("/online", response_class=Response, include_in_schema=False)
    async def online_page() -> Response:
        if service.origin is None:
            raise HTTPException(404, "this reader serves no web origin: start it with --origin")
        page = (_PAGE_DIR / "online_page.html").read_text(encoding="utf-8")
        # what this reader can ask with: a signed OpenID4VP request needs its certificate
        offered = ["org-iso-mdoc", *(["openid4vp-v1-signed"] if service.reader_signer is not None else []),
                   "openid4vp-v1-unsigned"]
        page = (page.replace("@@ORIGIN@@", html.escape(service.origin)).replace("@@PROTOCOLS@@", " ".join(offered))
                .replace("@@CROSS_DEVICE@@", "true" if service.public_url is not None else "false")
                .replace("@@NFC@@", "true" if service.tapper is not None else "false")
                .replace("@@BLE@@", "true" if service.ble_hci is not None else "false"))
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-store"})

    @router.get("/online/page.js", response_class=Response, include_in_schema=False)
    async def online_script() -> Response:
        return Response((_PAGE_DIR / "online_page.js").read_bytes(), media_type="text/javascript; charset=utf-8",
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    return router


def qr_data_uri(uri: str) -> str:
    """The QR code of ``uri`` as an SVG ``data:`` URI (segno), for a page to show as an image."""
    import segno

    return segno.make(uri, error="l").svg_data_uri(scale=4, border=4)


def _problem(status: int, type_: str, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem of a type of the reader's own (a bare ``HTTPException`` is answered
    with the generic type of its status)."""
    return JSONResponse({"type": type_, "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """An OAuth error response as a wallet of the cross-device flow reads one (``error``,
    ``error_description``), which is also an RFC 9457 problem like every 4xx of ours
    (``application/problem+json`` is JSON; the OAuth members are its extension members)."""
    return JSONResponse({"type": f"/problems/oauth-{error.replace('_', '-')}", "title": f"OAuth {error}",
                         "status": status, "detail": description, "error": error, "error_description": description},
                        status_code=status, media_type="application/problem+json", headers={"Cache-Control": "no-store"})


#: The form a wallet posts to the cross-device routes (wallet_nonce; response or error).
_FORM = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
    "schema": {"type": "object", "additionalProperties": {"type": "string"}}}}}}


def cross_device_router(service: ReaderService) -> APIRouter:
    """The two routes a phone's wallet calls in a cross-device OpenID4VP session
    (:meth:`ReaderService.open_cross_device`), without credentials of its own: ``GET|POST
    /oid4vp/requests/{id}`` (the request_uri) and ``POST /oid4vp/responses/{id}`` (the
    response_uri). Public wherever the reader is mounted: a session id is the capability."""
    router = APIRouter(tags=["reader: cross-device wallet"])

    async def serve(sid: str, wallet_nonce: str | None) -> Response:
        try:
            jws = await run_in_threadpool(service.request_object, sid, wallet_nonce)
        except ReaderSessionError as exc:
            return _oauth_error(400, "invalid_request_object", str(exc))
        if jws is None:
            raise HTTPException(404, "no such request: unknown, expired, answered already, or sent by value")
        return Response(jws, media_type=oid4vp_redirect.REQUEST_OBJECT_TYPE, headers={"Cache-Control": "no-store"})

    request_object_doc = {200: {"content": {oid4vp_redirect.REQUEST_OBJECT_TYPE: {}}},
                          400: {"description": "/problems/oauth-invalid-request-object, /problems/oauth-invalid-"
                                               "request: the request object cannot be made, the form refused"},
                          404: {"description": "/problems/not-found: no such request (unknown, expired, answered "
                                               "already, or sent by value)"}, **SESSIONS_DB}

    @router.get(REQUESTS_PATH + "/{sid}", response_class=Response, responses=request_object_doc,
                summary="A cross-device session's request object (its request_uri): a JWS, "
                        "application/oauth-authz-req+jwt")
    async def request_object(sid: str) -> Response:
        return await serve(sid, None)

    @router.post(REQUESTS_PATH + "/{sid}", response_class=Response, responses=request_object_doc,
                 summary="The request object for a wallet that asks with POST (request_uri_method=post): its "
                         "wallet_nonce signed into it (form body, OID4VP 1.0 5.10)",
                 openapi_extra=_FORM)
    async def request_object_posted(sid: str, request: Request) -> Response:
        body = await _body(request)
        try:
            form = oid4vp_redirect.parse_form(body) if body else {}
        except oid4vp.Oid4vpError as exc:
            return _oauth_error(400, "invalid_request", str(exc))
        return await serve(sid, form.get("wallet_nonce") or None)

    @router.post(RESPONSES_PATH + "/{sid}", response_class=JSONResponse,
                 summary="A cross-device session's response_uri: the wallet's direct_post.jwt form "
                         "(response=JWE, or an error); 200 {} once taken, the verdict at GET /sessions/{id}/result",
                 responses={200: {"content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}}},
                            400: {"description": "/problems/oauth-invalid-request: the form refused, or answered "
                                                 "already"},
                            404: {"description": "/problems/oauth-invalid-request: no such cross-device session"},
                            **SESSIONS_DB},
                 openapi_extra=_FORM)
    async def direct_post(sid: str, request: Request) -> Response:
        body = await _body(request)
        try:
            oid4vp_redirect.parse_form(body)
        except oid4vp.Oid4vpError as exc:
            return _oauth_error(400, "invalid_request", str(exc))
        taken = await run_in_threadpool(service.direct_post, sid, body)
        if taken is None:
            return _oauth_error(404, "invalid_request", "no such cross-device session (unknown or expired)")
        if not taken:
            return _oauth_error(400, "invalid_request", "this request was answered already")
        # the verdict is for the verifier's page (GET /sessions/{id}/result), not for the wallet
        return JSONResponse({}, headers={"Cache-Control": "no-store"})

    return router


def _mounted_at(request: Request, route_tail: str) -> str:
    """Where this router is served (``""`` alone, ``/reader`` inside ``mcred serve``): the
    request's path without ``route_tail``, the route's own path. A ``Location`` names the
    session as the client reaches it, whatever the mount."""
    path = request.scope.get("path", "")
    return path[: len(path) - len(route_tail)] if path.endswith(route_tail) else ""


def _body_doc(*media_types: str, description: str) -> dict:
    """``openapi_extra`` of a route that reads its body itself: the body the document declares,
    so that a generated client sends one (of these media types)."""
    schema = {"type": "string", "format": "binary"}
    return {"requestBody": {"required": True, "description": description,
                            "content": {m: {"schema": schema} for m in media_types}}}


def _session_headers(location: str) -> dict:
    """The headers of a ``201`` that opens a session: where it is, and its id."""
    return {"Location": {"required": True, "description": location, "schema": {"type": "string"}},
            "X-Session-Id": {"required": True, "description": "the session's id", "schema": {"type": "string"}}}


def reader_router(service: ReaderService) -> APIRouter:
    router = APIRouter(tags=["reader"])

    @router.post("/sessions", status_code=201, response_class=Response,
                 responses={201: {"content": {CBOR: {}}, "headers": _session_headers("/sessions/{id}")},
                            400: {"description": "/problems/bad-request: not a DeviceEngagement this reader reads"},
                            **SESSIONS_DB},
                 openapi_extra=_body_doc(CBOR, "text/plain", description="the phone's DeviceEngagement (CBOR), or "
                                         "its QR code's mdoc: URI as text"))
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
                        headers={"Location": f"{_mounted_at(request, '/sessions')}/sessions/{sid}",
                                 "X-Session-Id": sid})

    @router.post("/sessions/{sid}", response_class=Response,
                 responses={200: {"content": {CBOR: {}}}, **NO_SESSION, **SESSIONS_DB},
                 openapi_extra=_body_doc(CBOR, description="the phone's SessionEstablishment answer: SessionData"))
    async def session_data(sid: str, request: Request) -> Response:
        body = await _body(request)
        reply = await run_in_threadpool(service.message, sid, body)
        if reply is None:
            raise HTTPException(404, "no such session")
        return Response(reply, media_type=CBOR)

    @router.post("/nfc/taps", response_class=JSONResponse,
                 responses={200: VERDICT, 404: {"description": "/problems/not-found: this reader has no NFC reader"},
                            409: {"description": "/problems/conflict: the NFC reader is reading another tap"},
                            503: {"description": f"{NFC_UNAVAILABLE}: no phone was read (none tapped in time, "
                                                 "no PC/SC)"}},
                 summary="Read the phone tapped on this reader's NFC reader (ISO/IEC 18013-5 NFC engagement, "
                         "data retrieval over NFC): the verdict, as GET /sessions/{id}/result gives it")
    async def nfc_tap(wait: float = Query(30, gt=0, le=MAX_WAIT, description=(
            "seconds to wait for a phone on the reader"))) -> Response:
        try:
            outcome = await run_in_threadpool(service.tap, wait)
        except NoNfcReader as exc:
            raise HTTPException(404, str(exc)) from None
        except NfcReaderBusy as exc:
            raise HTTPException(409, str(exc)) from None
        except NfcReaderError as exc:
            return _problem(503, NFC_UNAVAILABLE, "No phone read on the NFC reader", str(exc))
        return Response(verdict_json(outcome), media_type="application/json")

    @router.post("/ble/reads", response_class=JSONResponse,
                 responses={200: VERDICT, 404: {"description": "/problems/not-found: this reader has no Bluetooth "
                                                               "controller"},
                            409: {"description": "/problems/conflict: the Bluetooth controller is reading another phone"},
                            422: {"description": "/problems/validation: the body is not {\"engagement\": \"mdoc:...\"}"}},
                 summary="Read over Bluetooth LE the phone whose QR code the page scanned (ISO/IEC 18013-5 QR "
                         "engagement, data retrieval over BLE): the verdict, as GET /sessions/{id}/result gives it")
    async def ble_read(body: BleReadBody, wait: float = Query(30, gt=0, le=MAX_WAIT, description=(
            "seconds to wait for the phone at each step (found, started, answered)"))) -> Response:
        try:
            outcome = await run_in_threadpool(service.ble_read, body.engagement, wait)
        except NoBleReader as exc:
            raise HTTPException(404, str(exc)) from None
        except BleReaderBusy as exc:
            raise HTTPException(409, str(exc)) from None
        return Response(verdict_json(outcome), media_type="application/json")

    @router.post("/online/sessions", status_code=201, response_class=JSONResponse,
                 responses={201: {"headers": _session_headers("/online/sessions/{id}, or a cross-device "
                                                               "session's /sessions/{id}/result"),
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "required": ["session", "origin", "request"],
                                      "properties": {"session": {"type": "string"},
                                                     "origin": {"type": ["string", "null"]},
                                                     "request": {"type": "object"}}}}}},
                            409: {"description": "/problems/conflict: this reader cannot open such a session (no "
                                                 "web origin; no public URL for a phone to reach, cross-device)"},
                            **SESSIONS_DB},
                 summary="Open an online presentation: the request object for navigator.credentials.get "
                         "(org-iso-mdoc, ISO/IEC TS 18013-7 Annex C; openid4vp-v1-unsigned or -signed, OpenID4VP "
                         "1.0), or with openid4vp-cross-device the authorization request URI for a QR code")
    async def open_online(http: Request, protocol: Literal["org-iso-mdoc", "openid4vp-v1-unsigned", "openid4vp-v1-signed",
                                            "openid4vp-cross-device"] = "org-iso-mdoc",
                          qr: bool = Query(False, description="openid4vp-cross-device: also the QR code of the "
                                           "authorization request URI, as an SVG data: URI (request.qr)")) -> Response:
        try:
            if protocol == CROSS_DEVICE:
                sid, request = await run_in_threadpool(service.open_cross_device)
                if qr:
                    request["qr"] = await run_in_threadpool(qr_data_uri, request["uri"])
            else:
                sid, request = await run_in_threadpool(service.open_online, protocol)
        except ReaderSessionError as exc:
            raise HTTPException(409, str(exc)) from None
        base = _mounted_at(http, "/online/sessions")
        location = f"{base}/sessions/{sid}/result" if protocol == CROSS_DEVICE else f"{base}/online/sessions/{sid}"
        return JSONResponse({"session": sid, "origin": service.origin, "request": request}, status_code=201,
                            headers={"Location": location, "X-Session-Id": sid})

    @router.post("/online/sessions/{sid}", response_class=JSONResponse,
                 responses={200: VERDICT, 400: {"description": "/problems/bad-request: not a credential response "
                                                              "(org-iso-mdoc or OpenID4VP)"},
                            **NO_SESSION, 409: {"description": "/problems/conflict: answered already, being verified"},
                            **SESSIONS_DB},
                 openapi_extra={"requestBody": {"required": True, "description": "the credential the browser's "
                                                "navigator.credentials.get returned (its data), as JSON",
                                                "content": {"application/json": {"schema": {"type": "object"}}}}},
                 summary="The credential the browser returned (org-iso-mdoc): verified, and the "
                         "verdict answered")
    async def online_response(sid: str, request: Request) -> Response:
        body = await _body(request)
        try:
            message = credential_message(json_strict.loads(body))  # whatever its Content-Type
        except (ValueError, dcapi.DcApiError, oid4vp.Oid4vpError) as exc:  # JSONDecodeError is a ValueError
            raise HTTPException(400, f"not a credential response (org-iso-mdoc or {oid4vp.PROTOCOL}): {exc}") from None
        reply = await run_in_threadpool(service.message, sid, message)
        if reply is None:
            raise HTTPException(404, "no such session")
        verdict = await run_in_threadpool(service.result, sid)
        if not isinstance(verdict, bytes):
            raise HTTPException(409, "the session was answered already and is being verified")
        return Response(verdict, media_type="application/json")

    @router.get("/sessions/{sid}/result", response_class=JSONResponse,
                responses={200: VERDICT, **NO_SESSION,
                           409: {"description": "/problems/conflict: no response received yet, or the wallet's "
                                                "response is being verified"}, **SESSIONS_DB})
    async def result(sid: str, wait: float = Query(0, ge=0, le=MAX_WAIT, description=(
            "seconds to wait for a pending session's verdict before answering 409 (a long poll: a page "
            "waiting for a phone asks once, not every second)"))) -> Response:
        # on the event loop: the verdict was serialized when the SessionData was verified
        # (a database look-up goes to the thread pool)
        deadline = time.monotonic() + wait
        while True:
            if getattr(service, "verdict_blocks", False):
                verdict = await run_in_threadpool(service.result, sid)
            else:
                verdict = service.result(sid)
            if verdict not in (AWAITING, PROCESSING) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(WAIT_STEP_DB if getattr(service, "verdict_blocks", False) else WAIT_STEP)
        if verdict is None:
            raise HTTPException(404, "no such session")
        if verdict == AWAITING:
            raise HTTPException(409, "no response received yet")
        if verdict == PROCESSING:
            raise HTTPException(409, "the wallet's response is being verified")
        return Response(verdict, media_type="application/json")

    @router.post("/issuer-signed/verify", response_class=JSONResponse,
                 summary="Verify an IssuerSigned as issued (CBOR, or the base64url text of an "
                 "OpenID4VCI mso_mdoc credential): every reader check but device authentication",
                 responses={200: VERDICT,
                            422: {"description": "/problems/validation: not an IssuerSigned, as CBOR or base64url text"},
                            501: {"description": "/problems/not-implemented: this reader's verifier does not check "
                                                 "an IssuerSigned on its own"}},
                 openapi_extra=_body_doc(CBOR, "text/plain", description="the IssuerSigned: CBOR, or the "
                                         "base64url text of an OpenID4VCI mso_mdoc credential"))
    async def verify_issuer_signed(request: Request) -> Response:
        data = cbor.from_text_or_raw(await _body(request))
        if not is_issuer_signed(data):
            raise HTTPException(422, "not an IssuerSigned (a CBOR map with issuerAuth), as CBOR or base64url text")
        result = await run_in_threadpool(service.verify_issuer_signed, data)
        if result is None:
            raise HTTPException(501, "this reader's verifier does not check an IssuerSigned on its own")
        return Response(json.dumps(result.to_json(), ensure_ascii=False), media_type="application/json")

    return router


# -- the JPKI relying party ---------------------------------------------------------------

#: Content up to 4 MiB (base64: 4/3 of that); signatures and certificates up to 48 KiB.
MAX_CONTENT_B64 = 4 * 1024 * 1024 * 4 // 3 + 4
MAX_BLOB_B64 = 64 * 1024
#: The whole JSON body of a relying-party request: content, signature and certificate in
#: base64, and the rest (FastAPI counts it as read and answers 413 past it).
RP_MAX_BODY = MAX_CONTENT_B64 + 3 * MAX_BLOB_B64 + 4096
_B64 = r"^[A-Za-z0-9+/_\-\s]*={0,2}\s*$"
#: The largest signed PDF ``POST /rp/jpki/verify-pdf`` takes (413 past it).
RP_MAX_PDF = 16 * 1024 * 1024
#: The largest signed XML document ``POST /rp/jpki/verify-xml`` takes (413 past it).
RP_MAX_XML = 16 * 1024 * 1024


async def _signed_document(request: Request, kinds: tuple[str, ...], what: str) -> bytes:
    """The body of a relying-party route that takes a signed document itself: 415 for a
    Content-Type other than ``kinds`` (or application/octet-stream; none given is the first),
    422 for an empty body."""
    kind = request.headers.get("content-type", kinds[0]).split(";")[0].strip().lower()
    if kind not in (*kinds, "application/octet-stream"):
        raise HTTPException(415, f"Content-Type {kind}: {what}, {kinds[0]}")
    body = await request.body()
    if not body:
        raise HTTPException(422, f"empty body: {what}, {kinds[0]}")
    return body


class BleReadBody(BaseModel):
    """The phone's QR code, as the counter page's scanner read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engagement: str = Field(min_length=6, max_length=4096, pattern=r"^mdoc:[A-Za-z0-9_\-]+$",
                            description="the phone's DeviceEngagement QR code: `mdoc:` and base64url")


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


class RpAuthRequest(BaseModel):
    """A phone's answer to a user-authentication challenge: bytes in base64."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    challenge_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="as `POST /rp/jpki/challenges` gave it")
    signature: str = Field(min_length=1, max_length=MAX_BLOB_B64, pattern=_B64,
                           description="raw signature over the challenge's nonce by the user-"
                           "authentication key (PKCS#1 v1.5 / SHA-256, or ECDSA / SHA-384 DER); base64")
    certificate: str = Field(min_length=1, max_length=MAX_BLOB_B64, pattern=_B64,
                             description="the user-authentication certificate (DER), base64")
    revocation: Literal["ocsp", "crl", "auto"] = Field("ocsp", description="as for /rp/jpki/verify")


def _b64(value: str, what: str) -> bytes:
    text = "".join(value.split())
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/")
                                + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{what}: not base64") from None


#: The refusals of a relying-party route that reads a signed document itself.
_DOCUMENT_REFUSALS = {415: {"description": "/problems/unsupported-media-type: a Content-Type other than the "
                                           "document's (or application/octet-stream)"},
                      422: {"description": "/problems/validation: an empty body"},
                      501: {"description": "/problems/not-implemented: this relying party reads no such document "
                                           "(an extra not installed)"}}
#: A route that hands out or takes back a challenge, where they are kept in a database.
_CHALLENGES_DB = {503: {"description": "/problems/database-unavailable: the challenges' database did not answer "
                                       "(Retry-After)"}}


def relying_party_router(rp: RelyingPartyService) -> APIRouter:
    """``POST /rp/jpki/verify``, ``POST /rp/jpki/challenges`` and ``POST
    /rp/jpki/authentications`` (no scope of their own: the composition root mounts them)."""
    router = APIRouter(tags=["relying party"])

    @router.post("/rp/jpki/challenges", status_code=201,
                 responses={201: {"content": {"application/json": {"schema": {
                     "type": "object", "required": ["challenge_id", "nonce", "expires_at"],
                     "properties": {"challenge_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                                    "nonce": {"type": "string", "format": "byte"},
                                    "expires_at": {"type": "string", "format": "date-time"}}}}}}, **_CHALLENGES_DB},
                 summary="A user-authentication challenge (利用者証明): a nonce for the phone's "
                 "user-authentication key to sign, answerable once before it expires")
    async def new_challenge() -> JSONResponse:
        c = await run_in_threadpool(rp.challenge) if rp.challenges.blocking else rp.challenge()
        return JSONResponse(c.to_json(), status_code=201)

    @router.post("/rp/jpki/authentications", responses={200: {"model": JpkiVerdict}, **_CHALLENGES_DB},
                 summary="Authenticate a phone's holder: the challenge taken back once, the "
                 "signature over its nonce, the user-authentication certificate's chain, "
                 "policy, validity and revocation")
    async def authenticate(body: RpAuthRequest) -> JSONResponse:
        signature = _b64(body.signature, "signature")
        certificate = _b64(body.certificate, "certificate")
        if not signature or not certificate:
            raise HTTPException(422, "signature and certificate: not empty")
        result = await run_in_threadpool(rp.authenticate, body.challenge_id, signature, certificate,
                                         revocation=body.revocation)
        return JSONResponse(result)

    @router.post("/rp/jpki/verify", responses={200: {"model": JpkiVerdict}}, summary="Verify a signature made with a phone's JPKI "
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

    @router.post("/rp/jpki/verify-pdf", responses={200: {"model": PdfVerdict}, **_DOCUMENT_REFUSALS}, summary="Verify every signature of a PDF signed with a phone's "
                 "JPKI signing certificate (PAdES): where each covers the file, then as /rp/jpki/verify",
                 max_body_size=RP_MAX_PDF, openapi_extra=_body_doc("application/pdf", description="the signed PDF"))
    async def verify_jpki_pdf(request: Request, revocation: Literal["ocsp", "crl", "auto", "embedded"] = Query(
            "ocsp", description="as for /rp/jpki/verify, or embedded: the OCSP answers and CRLs in the PDF's "
            "document security store (PAdES B-LT), judged at each signature's time-stamp, no network")
            ) -> JSONResponse:
        pdf = await _signed_document(request, ("application/pdf",), "the signed PDF itself")
        try:
            result = await run_in_threadpool(rp.verify_pdf, pdf, revocation=revocation)
        except ImportError:
            raise HTTPException(501, "this relying party reads no PDF: pip install 'mcred[pdf]'") from None
        return JSONResponse(result)

    @router.post("/rp/jpki/verify-xml", responses={200: {"model": JpkiVerdict}, **_DOCUMENT_REFUSALS}, summary="Verify an XML document signed inside with a phone's JPKI "
                 "signing certificate (an enveloped XML signature or XAdES B-B, as e-Gov and e-Tax filings): "
                 "the signature over the whole document, then as /rp/jpki/verify",
                 max_body_size=RP_MAX_XML, openapi_extra=_body_doc("application/xml", "text/xml",
                                                                   description="the signed XML document"))
    async def verify_jpki_xml(request: Request, revocation: Literal["ocsp", "crl", "auto", "embedded"] = Query(
            "ocsp", description="as for /rp/jpki/verify, or embedded: the OCSP answers and CRLs in the signature's "
            "xades:RevocationValues (XAdES B-LT), judged at its time-stamp, no network")) -> JSONResponse:
        document = await _signed_document(request, ("application/xml", "text/xml"), "the signed XML document itself")
        try:
            result = await run_in_threadpool(rp.verify_xml, document, revocation=revocation)
        except ImportError:
            raise HTTPException(501, "this relying party reads no XML signature: pip install 'mcred[xml]'") from None
        return JSONResponse(result)

    return router
