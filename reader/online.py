"""The reader's side of an online presentation, sans-I/O: ISO/IEC TS 18013-7 Annex C, the
``org-iso-mdoc`` protocol of the W3C Digital Credentials API (:mod:`protocols.mdoc.dcapi`),
described here; OpenID4VP 1.0 over the same API (:class:`Oid4vpReaderSession`); and
OpenID4VP 1.0 cross-device, a QR code and ``direct_post.jwt`` without the browser
(:class:`Oid4vpRedirectReaderSession`).

``start()`` makes the request object the web page hands to ``navigator.credentials.get``:
a DeviceRequest (reader-authenticated when the reader has a key) and an EncryptionInfo
with a fresh nonce and an HPKE recipient key of this session. ``receive(encrypted)``
takes the EncryptedResponse (CBOR) the wallet answered through the browser, opens it with
HPKE and runs the same pipeline as a proximity session over THIS request's
SessionTranscript, which binds the page's origin: a response made for another origin (a
relaying site) neither opens nor verifies. There is no engagement and no session
encryption after the response; device authentication is by signature.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from protocols.cose import CoseSigner
from protocols.mdoc import (
    Check,
    MdocError,
    SessionTranscript,
    UseCase,
    VerificationResult,
    dcapi,
    oid4vp,
    oid4vp_redirect,
)
from reader.errors import ReaderSessionError
from reader.session import (
    SESSION,
    SESSION_FAILED,
    ReaderOutcome,
    ReaderSession,
    RequestSpec,
    Verifier,
)


def check_origin(origin: str) -> str:
    """A web origin as browsers serialize it (``scheme://host[:port]``, no path, no slash at
    the end); the transcript hashes the exact text, so nothing else is accepted."""
    from urllib.parse import urlsplit

    if not isinstance(origin, str) or not origin:
        raise ReaderSessionError("origin: empty")
    parts = urlsplit(origin)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.path or parts.query or parts.fragment \
            or "@" in parts.netloc:
        raise ReaderSessionError(f"origin {origin!r}: expected scheme://host[:port] (a web origin, "
                                 "e.g. https://rp.example), as the browser reports it")
    if parts.netloc != parts.netloc.lower():
        raise ReaderSessionError(f"origin {origin!r}: a serialized origin has a lower-case host")
    return origin


def origin_of(url: str) -> str:
    """The web origin of ``url`` as a browser serializes it (:func:`protocols.mdoc.dcapi.origin_of`)."""
    try:
        return dcapi.origin_of(url)
    except dcapi.DcApiError as exc:
        raise ReaderSessionError(str(exc)) from None


class _WebSession(ReaderSession):
    """What both online kinds share: the page's origin, a P-256 key of the session's own
    (HPKE's recipient key, or the JWE's), a transcript with no engagement; kept by the
    reader service's session stores like a proximity session (:attr:`e_reader_private_key`
    is that key, :attr:`transcript` carries everything needed to continue elsewhere)."""

    #: What the transcript of this kind is, for :meth:`resume`'s refusal; and its test.
    kind = "online"

    @staticmethod
    def _is_own(transcript: SessionTranscript) -> bool:
        raise NotImplementedError

    def __init__(self, requests: Sequence[RequestSpec], verifier: Verifier, origin: str, *,
                 reader_signer: CoseSigner | None = None, reader_chain: Sequence[bytes] = (),
                 reader_auth_all: bool = False, use_cases: Sequence[UseCase] = ()) -> None:
        super().__init__(requests, verifier, reader_signer=reader_signer, reader_chain=reader_chain,
                         reader_auth_all=reader_auth_all, use_cases=use_cases)
        self.origin = check_origin(origin)
        self.request = None

    #: The request's parameters as the session store keeps them (JSON bytes) for a kind that
    #: needs them to continue elsewhere; None for the others.
    request_claims: bytes | None = None

    @classmethod
    def resume(cls, requests: Sequence[RequestSpec], verifier: Verifier,
               e_reader_private_key: ec.EllipticCurvePrivateKey, session_transcript: bytes,
               request_claims: bytes | None = None) -> _WebSession:
        """A session :meth:`start` began in another worker, from its key and transcript (the
        origin is hashed into the transcript: not needed to continue)."""
        session = cls.__new__(cls)
        ReaderSession.__init__(session, requests, verifier)
        session.origin, session.request = "", None
        try:
            transcript = SessionTranscript.decode(session_transcript)
        except MdocError as exc:
            raise ReaderSessionError(f"resume: {exc}") from exc
        if not cls._is_own(transcript):
            raise ReaderSessionError(f"resume: not an {cls.kind} SessionTranscript")
        if not isinstance(e_reader_private_key, ec.EllipticCurvePrivateKey) \
                or not isinstance(e_reader_private_key.curve, ec.SECP256R1):
            raise ReaderSessionError(f"resume: the {cls.kind} session's key is not a P-256 key")
        session._key, session.transcript, session.state = e_reader_private_key, transcript, "awaiting_response"
        session._resumed(request_claims)
        return session

    def _resumed(self, request_claims: bytes | None) -> None:
        """What a kind restores of its request, from :attr:`request_claims` as stored."""

    def _begin(self, engagement: bytes | str | None) -> ec.EllipticCurvePublicKey:
        """Checks that the session may start; its new key's public half."""
        if self.state != "idle":
            raise ReaderSessionError(f"start: session is {self.state}")
        if engagement is not None:
            raise ReaderSessionError("an online session has no device engagement")
        self._key = ec.generate_private_key(ec.SECP256R1())
        return self._key.public_key()

    def _verified(self, responses: Sequence[bytes], session_check: Check) -> ReaderOutcome:
        """The pipeline's verdict on each DeviceResponse over this transcript, merged, after
        the ``session`` check and before the request match."""
        checks: list[Check] = []
        docs: list = []
        for response in responses:
            try:
                result = self.verifier.verify(response, session_transcript=self.transcript, reader_private_key=None)
            except Exception as exc:  # noqa: BLE001 - a verifier bug must not take the reader down
                result = VerificationResult((Check("response_status", False,
                                                   f"verifier error: {type(exc).__name__}: {exc}", code="failed"),))
            checks += result.checks
            docs += result.documents
        result = self._judged(VerificationResult(tuple(checks), tuple(docs)), session_check)
        return self._finish(ReaderOutcome(result, responses[0] if responses else None, self.transcript, None))

    def _done_already(self) -> ReaderOutcome | None:
        if self.state != "awaiting_response":
            return self.outcome or self._failed(f"no response expected: session is {self.state}")
        return None


class OnlineReaderSession(_WebSession):
    """One Annex C presentation (``org-iso-mdoc``): :attr:`e_reader_private_key` is the HPKE
    recipient key, :attr:`transcript` the dcapi SessionTranscript."""

    kind = "Annex C (dcapi)"
    _is_own = staticmethod(dcapi.is_dcapi_transcript)
    request: dcapi.DcApiRequest | None

    def start(self, engagement: bytes | str | None = None) -> dict:  # type: ignore[override]
        """The request object for the Digital Credentials API (``{"protocol", "data"}``)."""
        info = dcapi.EncryptionInfo.build(self._begin(engagement))
        self.transcript = dcapi.session_transcript(info, self.origin)
        self.request = dcapi.DcApiRequest(self._device_request().encode(), info)
        self.state = "awaiting_response"
        return self.request.to_json()

    def receive(self, message: bytes) -> ReaderOutcome:
        """``message``: the EncryptedResponse (CBOR), out of the credential's base64url."""
        done = self._done_already()
        if done is not None:
            return done
        try:
            sealed = dcapi.EncryptedResponse.decode(message)
            plaintext = dcapi.open_response(sealed, self._key, self.transcript)
        except dcapi.DcApiError as exc:
            return self._failed(f"EncryptedResponse: {exc}")
        except Exception as exc:  # noqa: BLE001 - the reader's boundary
            return self._failed(f"EncryptedResponse unreadable: {type(exc).__name__}")
        return self._verified([plaintext], Check(
            SESSION, True, "EncryptedResponse opened (HPKE DHKEM(P-256), AES-128-GCM) for this request and "
                           "origin (ISO/IEC TS 18013-7 Annex C)"))


class Oid4vpReaderSession(_WebSession):
    """One OpenID4VP 1.0 presentation over the Digital Credentials API
    (``openid4vp-v1-unsigned``, :mod:`protocols.mdoc.oid4vp`): ``start()`` gives the request
    (a DCQL credential query ``q0``, ``q1``, ... per RequestSpec, the response encrypted to
    this session's P-256 key with ECDH-ES); ``receive()`` takes the page's credential as JSON
    bytes (``{"protocol", "data": {"response": JWE}}``), decrypts it and verifies each
    DeviceResponse of the vp_token over the OpenID4VPDCAPIHandover transcript."""

    kind = "OpenID4VPDCAPIHandover"
    _is_own = staticmethod(oid4vp.is_oid4vp_transcript)
    request: oid4vp.Oid4vpRequest | None
    signed = False  # a resumed session has sent its request already: how does not matter

    def __init__(self, requests: Sequence[RequestSpec], verifier: Verifier, origin: str, *,
                 reader_signer: CoseSigner | None = None, reader_chain: Sequence[bytes] = (),
                 signed: bool = False, reader_auth_all: bool = False, use_cases: Sequence[UseCase] = ()) -> None:
        """``signed``: the request a JWS by the reader's certificate (``openid4vp-v1-signed``,
        ``client_id`` from the certificate, ``expected_origins`` this origin), which needs
        ``reader_signer`` and ``reader_chain``. ``reader_auth_all`` does not apply (a DCQL
        query has no readerAuth); ``use_cases`` are asked as DCQL credential sets."""
        super().__init__(requests, verifier, origin, reader_signer=reader_signer, reader_chain=reader_chain,
                         use_cases=use_cases)
        if signed and (reader_signer is None or not self.reader_chain):
            raise ReaderSessionError("a signed OpenID4VP request needs the reader's certificate and key "
                                     "(mcred reader serve --reader-cert, --reader-key)")
        self.signed = signed

    @property
    def query_ids(self) -> list[str]:
        return [f"q{i}" for i in range(len(self.requests))]

    def _queries(self) -> list[oid4vp.CredentialQuery]:
        """A DCQL credential query per RequestSpec, ``q0``, ``q1``, ...; a second-edition
        requestInfo's alternatives as claim sets, its issuer identifiers as trusted
        authorities (:func:`protocols.mdoc.oid4vp.credential_query`)."""
        return [oid4vp.credential_query(qid, r.doc_type, r.items, r.info)
                for qid, r in zip(self.query_ids, self.requests, strict=True)]

    def _credential_sets(self) -> tuple[oid4vp.CredentialSet, ...]:
        """The use cases as DCQL credential sets."""
        return oid4vp.credential_sets_of(self.use_cases, self.query_ids)

    def start(self, engagement: bytes | str | None = None) -> dict:  # type: ignore[override]
        key = self._begin(engagement)
        self.request = oid4vp.Oid4vpRequest.build(self._queries(), key, credential_sets=self._credential_sets())
        self.transcript = oid4vp.session_transcript(self.origin, self.request.nonce, self.request.thumbprint)
        self.state = "awaiting_response"
        if self.signed:
            return oid4vp.sign_request(self.request, self.reader_signer, self.reader_chain,
                                       expected_origins=[self.origin])
        return self.request.to_json()

    #: The ``session`` check's reason once an answer of this kind is opened.
    opened = "JWE decrypted (ECDH-ES) for this request (OpenID4VP 1.0 over the Digital Credentials API)"

    def receive(self, message: bytes) -> ReaderOutcome:
        """``message``: the answer as this kind takes it (:meth:`_open`); each DeviceResponse
        of its vp_token verified, or the ``session`` check failed naming what it is instead."""
        done = self._done_already()
        if done is not None:
            return done
        try:
            opened = self._open(message)
        except (ValueError, oid4vp.Oid4vpError) as exc:  # JSONDecodeError is a ValueError
            return self._failed(f"OpenID4VP response: {exc}")
        except Exception as exc:  # noqa: BLE001 - the reader's boundary
            return self._failed(f"OpenID4VP response unreadable: {type(exc).__name__}")
        if isinstance(opened, ReaderOutcome):
            return opened
        if not opened:
            return self._failed("vp_token: no credential query answered")
        return self._verified([r for qid in sorted(opened) for r in opened[qid]], Check(
            SESSION, True, f"{self.opened}; vp_token answers " + ", ".join(sorted(opened))))

    def _open(self, message: bytes) -> dict[str, list[bytes]] | ReaderOutcome:
        """The credential the page received, as JSON bytes: the DeviceResponses of its
        vp_token by query id, or the failed outcome of an answer that carries none."""
        value = json.loads(message)
        if isinstance(value, dict) and isinstance(value.get("data"), dict) and "error" in value["data"]:
            error = value["data"]
            return self._wallet_refused(error.get("error"), error.get("error_description", ""))
        payload = oid4vp.response_payload(value)
        if not isinstance(payload, str):
            return self._failed("vp_token in the clear: this reader asked for an encrypted response (dc_api.jwt)")
        return oid4vp.documents(oid4vp.open_response(payload, self._key), self.query_ids)

    def _wallet_refused(self, error: Any, description: Any) -> ReaderOutcome:
        """OAuth's error response (``access_denied``, ...), named in the ``session`` check:
        ``access_denied`` (the holder declined, OpenID4VP 1.0 8.5) is code ``declined``."""
        return self._failed(f"the wallet answered {str(error)[:40]!r}: {str(description)[:200]}",
                            code="declined" if error == "access_denied" else SESSION_FAILED)


class Oid4vpRedirectReaderSession(Oid4vpReaderSession):
    """One OpenID4VP 1.0 presentation without the Digital Credentials API: the cross-device
    flow (:mod:`protocols.mdoc.oid4vp_redirect`). :meth:`start` gives the authorization
    request URI the verifier's page shows as a QR code: with a reader certificate a short
    ``openid4vp://?client_id=x509_...&request_uri=...`` whose request object
    :meth:`request_object` signs when the wallet fetches it; without one, the unsigned
    request by value (``client_id`` ``redirect_uri:<response_uri>``). The wallet posts
    ``response=<JWE>`` to ``response_uri``; :meth:`receive` takes that form body, checks its
    ``state``, decrypts it and verifies each DeviceResponse over the OpenID4VPHandover
    transcript (client_id, nonce, key thumbprint, response_uri)."""

    kind = "OpenID4VPHandover"
    _is_own = staticmethod(oid4vp_redirect.is_redirect_transcript)
    redirect: oid4vp_redirect.RedirectRequest | None = None

    def __init__(self, requests: Sequence[RequestSpec], verifier: Verifier, *, response_uri: str,
                 request_uri: str | None = None, reader_signer: CoseSigner | None = None,
                 reader_chain: Sequence[bytes] = (), use_cases: Sequence[UseCase] = ()) -> None:
        """``response_uri``: where this session's answer is posted; ``request_uri``: where
        its signed request object is served (needed with ``reader_signer``); ``use_cases``
        asked as DCQL credential sets."""
        super().__init__(requests, verifier, origin_of(response_uri), reader_signer=reader_signer,
                         reader_chain=reader_chain, use_cases=use_cases)
        if reader_signer is not None and (not self.reader_chain or request_uri is None):
            raise ReaderSessionError("a signed cross-device request needs the reader's certificate chain and "
                                     "the request_uri it is served at")
        self.response_uri, self.request_uri = response_uri, request_uri

    def start(self, engagement: bytes | str | None = None) -> dict:  # type: ignore[override]
        """``{"uri", "client_id", "response_uri", ? "request_uri"}``: ``uri`` for the QR code."""
        key = self._begin(engagement)
        signed = self.reader_signer is not None
        try:
            client_id = (oid4vp_redirect.client_id_for_uri(self.reader_chain[0], self.response_uri) if signed
                         else oid4vp_redirect.redirect_client_id(self.response_uri))
            self.redirect = oid4vp_redirect.RedirectRequest.build(
                self._queries(), key, client_id=client_id, response_uri=self.response_uri,
                credential_sets=self._credential_sets())
        except oid4vp.Oid4vpError as exc:
            raise ReaderSessionError(f"cross-device request: {exc}") from None
        self.request = self.redirect.request
        self.transcript = self.redirect.transcript
        self.request_claims = json.dumps(self.redirect.claims(), separators=(",", ":")).encode()
        self.state = "awaiting_response"
        out = {"client_id": client_id, "response_uri": self.response_uri}
        if signed:
            out["request_uri"] = self.request_uri
            out["uri"] = oid4vp_redirect.authorization_uri(client_id, self.request_uri)
        else:
            out["uri"] = self.redirect.by_value_uri()
        return out

    def _resumed(self, request_claims: bytes | None) -> None:
        self.redirect, self.request_claims = self.restore(request_claims), request_claims
        self.request = self.redirect.request

    @staticmethod
    def restore(request_claims: bytes | None) -> oid4vp_redirect.RedirectRequest:
        if request_claims is None:
            raise ReaderSessionError("resume: a cross-device session's request is missing from its row")
        try:
            return oid4vp_redirect.RedirectRequest.of_claims(json.loads(request_claims))
        except (ValueError, oid4vp.Oid4vpError) as exc:
            raise ReaderSessionError(f"resume: the cross-device session's request does not parse ({exc})") from None

    @staticmethod
    def request_object(request_claims: bytes, signer: CoseSigner, chain: Sequence[bytes], *,
                       wallet_nonce: str | None = None) -> str:
        """The signed request object of a session, from its stored parameters: what
        ``request_uri`` answers (any worker, any number of times while the session awaits
        its answer; with the wallet's ``wallet_nonce`` when it POSTed one)."""
        try:
            return Oid4vpRedirectReaderSession.restore(request_claims).sign(signer, chain, wallet_nonce=wallet_nonce)
        except oid4vp.Oid4vpError as exc:
            raise ReaderSessionError(f"request object: {exc}") from None

    opened = ("JWE decrypted (ECDH-ES) for this request, posted to its response_uri with its state (OpenID4VP 1.0 "
              "direct_post.jwt, cross-device)")

    def _open(self, message: bytes) -> dict[str, list[bytes]] | ReaderOutcome:
        """``message``: the form body the wallet posted to ``response_uri``; its ``state`` this
        session's, in the clear and inside the JWE."""
        expected = self.redirect.state if self.redirect is not None else None
        form = oid4vp_redirect.parse_form(message)
        if form.get("state") is not None and form.get("state") != expected:
            return self._failed("state: not this session's request (a response for another request)")
        if "error" in form:
            return self._wallet_refused(form["error"], form.get("error_description", ""))
        if "response" not in form:
            return self._failed("vp_token in the clear: this reader asked for an encrypted response "
                                "(direct_post.jwt)" if "vp_token" in form else "the form has no response")
        payload = oid4vp.open_response(form["response"], self._key)
        if payload.get("state") != expected:
            return self._failed("state: the encrypted response does not carry this session's state")
        return oid4vp.documents(payload, self.query_ids)


def credential_message(credential: Any) -> bytes:
    """What an online session's ``receive`` takes, from the credential the page received
    (``{"protocol", "data"}``): an OpenID4VP one as its JSON (the session reads it whole:
    an error answer, a JWE or a clear vp_token), an Annex C one as its EncryptedResponse
    (CBOR). :class:`~protocols.mdoc.dcapi.DcApiError` or
    :class:`~protocols.mdoc.oid4vp.Oid4vpError` for what is no credential at all."""
    if isinstance(credential, Mapping) and credential.get("protocol") in oid4vp.PROTOCOLS:
        if not isinstance(credential.get("data"), Mapping):
            raise oid4vp.Oid4vpError("data: expected a JSON object")
        return json.dumps(credential).encode()
    return dcapi.parse_response_json(credential).encode()


#: The protocol name of a cross-device OpenID4VP session (the page's QR code, the phone posting
#: its answer to the reader itself: ``POST /online/sessions?protocol=openid4vp-cross-device``).
CROSS_DEVICE = "openid4vp-cross-device"

ONLINE_KINDS = {dcapi.PROTOCOL: OnlineReaderSession, oid4vp.PROTOCOL: Oid4vpReaderSession,
                oid4vp.SIGNED_PROTOCOL: functools.partial(Oid4vpReaderSession, signed=True)}
"""The online session class of each Digital Credentials API protocol the reader asks with."""


def resume_any(requests: Sequence[RequestSpec], verifier: Verifier, key: ec.EllipticCurvePrivateKey,
               session_transcript: bytes, request_claims: bytes | None = None) -> ReaderSession:
    """A stored session of any kind, told apart by its transcript (an online one has no
    DeviceEngagement, and a dcapi, an OpenID4VPDCAPIHandover or an OpenID4VPHandover
    handover)."""
    try:
        transcript = SessionTranscript.decode(session_transcript)
    except MdocError as exc:
        raise ReaderSessionError(f"resume: {exc}") from exc
    if oid4vp_redirect.is_redirect_transcript(transcript):
        return Oid4vpRedirectReaderSession.resume(list(requests), verifier, key, session_transcript, request_claims)
    cls = (OnlineReaderSession if dcapi.is_dcapi_transcript(transcript)
           else Oid4vpReaderSession if oid4vp.is_oid4vp_transcript(transcript) else ReaderSession)
    return cls.resume(list(requests), verifier, key, session_transcript)
