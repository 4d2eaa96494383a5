"""The wallet app on the phone: presents the mdoc kept in the SE's mdoc applet
(ISO/IEC 18013-5:2021 §9.1.1 session, §8.3.2.1.2 request/response, §9.1.3 mdoc
authentication).

Sans-I/O: :class:`WalletSession` takes the reader's bytes (SessionEstablishment, then
SessionData) and gives back the bytes to send (SessionData), never touching a socket.
The device key stays in the SE: the applet signs a SHA-256 digest (deviceSignature) or
gives the ECDH secret behind EMacKey (deviceMac, §9.1.3.5); the wallet never writes to
the SE, so no input can damage the stored credential.

Status codes: SessionData ``status`` 10 (session encryption error), 11 (CBOR decoding
error), 20 (termination), §9.1.1.4; DeviceResponse ``status`` 10 (general error), 11 (CBOR
decoding), 12 (CBOR validation), §8.3.2.1.2.3. Refused items go into the Document's
``errors`` (ErrorCode 0, data not returned; not an age_over_NN that the age_over_MM released
in its place answers, ISO/IEC 18013-5 7.2.5); a docType not held or nothing released into
``documentErrors``: the same answer for declined and not held, on purpose, so that a reader
does not learn which documents (or elements) the holder does not have.

Second-edition requests (DeviceRequest 1.1) are answered too: readerAuthAll is shown to
the holder as readerAuth is, use cases choose the document set answered, an alternative
stands in for an element the document does not hold, issuerIdentifiers and
maximumResponseSize can keep a document back (specs/presentation.md section 14).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509

from protocols import cbor
from protocols.cose import ES256
from protocols.iaca import check_reader_certificate
from protocols.mdoc import (
    STATUS_CBOR_DECODING_ERROR,
    STATUS_CBOR_VALIDATION_ERROR,
    STATUS_GENERAL_ERROR,
    DeviceRequest,
    DeviceResponse,
    DocRequest,
    DocRequestInfo,
    Document,
    IssuerSigned,
    ItemsRequest,
    MdocDecodeError,
    MdocError,
    MobileSecurityObject,
    SessionData,
    SessionEncryption,
    SessionEstablishment,
    SessionTranscript,
    age_over,
    build_document,
    dcapi,
    derive_emac_key,
    oid4vp,
    oid4vp_redirect,
    verify_reader_auth,
)
from protocols.mdoc.session import (
    SESSION_STATUS_DECODING_ERROR,
    SESSION_STATUS_ENCRYPTION_ERROR,
    SESSION_STATUS_TERMINATION,
)
from protocols.mdoc.verify import (
    READER_AUTHENTICATION,
    READER_CERTIFICATE_CHAIN,
    READER_CERTIFICATE_REVOCATION,
    Check,
    ReaderRevocation,
    check_reader_chain,
)
from wallet_sim import faults
from wallet_sim.consent import ConsentPolicy, ConsentRequest, ReaderIdentity
from wallet_sim.engagement import Engagement
from wallet_sim.faults import Fault

MDOC_AID = bytes.fromhex("F06D63726564020101")
ERROR_DATA_NOT_RETURNED = 0
DeviceAuthMode = Literal["signature", "mac"]


class WalletError(Exception):
    """Base of the wallet app's errors."""


class WalletSeError(WalletError):
    """The SE's mdoc applet refused a command; ``sw`` is its status word."""

    def __init__(self, message: str, sw: int) -> None:
        super().__init__(f"{message}: SW {sw:04X}")
        self.sw = sw


# -- the mdoc applet, over APDUs (specs/mdoc-applet.md) ----------------------------------


class SeMdocApplet:
    """The wallet's handle on the mdoc applet: list, read, SIGN, KEY AGREEMENT."""

    def __init__(self, transmit: Callable[[bytes], bytes]) -> None:
        self._transmit = transmit
        self._selected = False

    def _send(self, apdu: bytes, what: str) -> bytes:
        out = self._transmit(apdu)
        if len(out) < 2:
            raise WalletSeError(f"{what}: short answer", 0)
        sw = int.from_bytes(out[-2:], "big")
        if sw != 0x9000:
            raise WalletSeError(what, sw)
        return out[:-2]

    def select(self) -> None:
        if not self._selected:
            try:
                self._send(bytes([0x00, 0xA4, 0x04, 0x00, len(MDOC_AID)]) + MDOC_AID + b"\x00", "SELECT mdoc applet")
            except WalletSeError as exc:
                if exc.sw != 0x6A82:
                    raise
                raise WalletSeError("SELECT mdoc applet (not on this SE: no mdoc was written to it, or it was "
                                    "wiped)", exc.sw) from None
            self._selected = True

    def _command(self, apdu: bytes, what: str) -> bytes:
        """``apdu`` to the applet, selected first. A refusal of a command sent on an earlier
        selection may mean the applet is no longer selected: the SE was written by another
        process and loaded again (a re-inserted card: channel 0 back on the ISD), or was
        reset. Then the applet is selected again and the command sent once more (each of
        the applet's commands can be repeated); a refusal after a fresh SELECT is the
        applet's own."""
        fresh = not self._selected
        self.select()
        try:
            return self._send(apdu, what)
        except WalletSeError:
            if fresh:
                raise
            self._selected = False
            self.select()
            return self._send(apdu, what)

    def slots(self) -> list[tuple[int, bool, int]]:
        """``(slot, holds a credential, credential length)`` per slot holding a key."""
        raw = self._command(bytes.fromhex("8010000000"), "LIST SLOTS")
        return [(raw[i], bool(raw[i + 1] & 0x02), int.from_bytes(raw[i + 2 : i + 6], "big"))
                for i in range(0, len(raw) - 5, 6)]

    def read(self, slot: int, length: int) -> bytes:
        """The slot's IssuerSigned: extended APDUs (Le 0000 = 65536) take it whole."""
        out = b""
        while len(out) < length:
            apdu = bytes([0x80, 0x14, slot, 0x00, 0x00, 0x00, 0x03]) + len(out).to_bytes(3, "big") + b"\x00\x00"
            chunk = self._command(apdu, f"READ CREDENTIAL slot {slot}")
            if not chunk:
                break
            out += chunk
        return out

    def sign_digest(self, slot: int, digest: bytes) -> bytes:
        return self._command(bytes([0x80, 0x2A, slot, 0x00, 0x20]) + digest + b"\x00", f"SIGN slot {slot}")

    def key_agreement(self, slot: int, peer_point: bytes) -> bytes:
        return self._command(bytes([0x80, 0x86, slot, 0x00, len(peer_point)]) + peer_point + b"\x00",
                             f"KEY AGREEMENT slot {slot}")


@dataclass(frozen=True)
class SeSigner:
    """A :class:`~protocols.cose.CoseSigner` whose key is a slot of the SE (ES256)."""

    applet: SeMdocApplet
    slot: int
    alg: int = ES256

    def sign(self, tbs: bytes) -> bytes:
        return self.applet.sign_digest(self.slot, hashlib.sha256(tbs).digest())


@dataclass(frozen=True)
class HeldCredential:
    slot: int
    issuer_signed: IssuerSigned
    mso: MobileSecurityObject
    elements: Mapping[str, frozenset[str]] = field(hash=False)

    @property
    def doc_type(self) -> str:
        return self.mso.doc_type

    @functools.cached_property
    def ages(self) -> Mapping[str, Mapping[int, bool]]:
        """namespace -> NN -> value of the age_over_NN it holds (ISO/IEC 18013-5 7.2.5)."""
        return {ns: ages for ns, items in self.issuer_signed.items().items()
                if (ages := age_over.attestations({i.element_identifier: i.element_value for i in items}))}

    def answering(self, namespace: str, identifier: str) -> str | None:
        """The element of ``namespace`` this credential answers a request for ``identifier``
        with: the element itself when held; for an age_over_NN it does not hold, the nearest
        age_over_MM of ISO/IEC 18013-5 7.2.5 (:func:`protocols.mdoc.age_over.nearest`); None
        when it holds nothing that answers."""
        if identifier in self.elements.get(namespace, ()):
            return identifier
        nn = age_over.threshold(identifier)
        if nn is None:
            return None
        mm = age_over.nearest(nn, self.ages.get(namespace, {}))
        return None if mm is None else age_over.identifier(mm)

    @functools.cached_property
    def issuer_key_ids(self) -> frozenset[bytes]:
        """The key identifiers of the authorities above the document signer, as a second-
        edition request's ``issuerIdentifiers`` name them: each x5chain certificate's
        authorityKeyIdentifier, and each CA certificate's subjectKeyIdentifier."""
        ids: set[bytes] = set()
        try:
            chain = [x509.load_der_x509_certificate(c) for c in self.issuer_signed.issuer_auth.x5chain]
        except Exception:  # noqa: BLE001 - an unreadable chain names no issuer
            return frozenset()
        for i, cert in enumerate(chain):
            for ext, attr in ((x509.AuthorityKeyIdentifier, "key_identifier"), (x509.SubjectKeyIdentifier, "digest")):
                if ext is x509.SubjectKeyIdentifier and i == 0:
                    continue  # the document signer's own key is not an issuing authority's
                try:
                    value = getattr(cert.extensions.get_extension_for_class(ext).value, attr)
                except (x509.ExtensionNotFound, ValueError):
                    continue
                if value:
                    ids.add(bytes(value))
        return frozenset(ids)


# -- what happened in a session (for the UI and the tests) -------------------------------


@dataclass(frozen=True)
class WalletEvent:
    kind: str  # "request" | "response" | "error" | "terminated"
    detail: str
    doc_type: str | None = None
    reader: ReaderIdentity | None = None
    released: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    refused: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    status: int | None = None
    slot: int | None = None
    #: asked for, but not in the document (or no document of that docType held), and not
    #: answered: not sent, as ``refused`` is not, and not the holder's refusal either. Both are
    #: the document's ``errors`` in the DeviceResponse (ISO/IEC 18013-5 8.3.2.1.2.3: an
    #: element not returned).
    not_held: Mapping[str, frozenset[str]] = field(default_factory=dict, hash=False)
    #: namespace -> {age_over_NN asked: the age_over_MM released in its place} (ISO/IEC
    #: 18013-5 7.2.5): the asked element is answered, so it is in neither ``not_held`` nor
    #: the document's ``errors``; the element in its place is in ``released``.
    answered_by: Mapping[str, Mapping[str, str]] = field(default_factory=dict, hash=False)


class Wallet:
    """The wallet app over one phone's SE.

    ``state_path`` (in the phone's app data directory) remembers how often each slot was
    presented, so each presentation takes the least used MSO of the batch.
    """

    def __init__(
        self,
        transmit: Callable[[bytes], bytes],
        consent: ConsentPolicy,
        *,
        device_auth: DeviceAuthMode = "signature",
        reader_trust_anchors: Sequence[x509.Certificate] = (),
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        state_path: Path | None = None,
        fault: Fault | None = None,
        reader_revocation: ReaderRevocation | None = None,
    ) -> None:
        """``fault``: a hostile phone on purpose (:mod:`wallet_sim.faults`), for checking
        that readers refuse what it sends; None for an honest one. ``reader_revocation``:
        what says a reader certificate was revoked (:class:`wallet_sim.reader_crls.ReaderCrls`,
        the reader CAs' CRLs the wallet holds); None checks none."""
        if device_auth not in ("signature", "mac"):
            raise ValueError(f"device_auth must be 'signature' or 'mac', got {device_auth!r}")
        self.fault = fault
        self._replay: Document | None = None  # the fault "replay": the Document it repeats
        self.applet = SeMdocApplet(transmit)
        self.consent = consent
        self.device_auth = device_auth
        self.reader_trust_anchors = list(reader_trust_anchors)
        self.reader_revocation = reader_revocation
        self.clock = clock
        self.state_path = state_path
        self._uses: dict[int, int] = {}
        self._held: dict[tuple[int, int], HeldCredential] = {}
        self._load_uses()

    def _load_uses(self) -> None:
        if self.state_path is None or not self.state_path.is_file():
            return
        try:
            data = json.loads(self.state_path.read_text())
            self._uses = {int(k): int(v) for k, v in data.get("slot_uses", {}).items()}
            replay = data.get("replay")
            self._replay = Document.from_cbor(cbor.loads(bytes.fromhex(replay))) if replay else None
        except (OSError, ValueError, AttributeError, TypeError, MdocError, cbor.CborDecodeError):
            self._uses, self._replay = {}, None

    def _save_state(self) -> None:
        if self.state_path is None:
            return
        state: dict = {"slot_uses": {str(k): v for k, v in self._uses.items()}}
        if self._replay is not None:
            state["replay"] = cbor.dumps(self._replay.to_cbor()).hex()
        tmp = self.state_path.with_suffix(".tmp")
        # the app's state (a presented Document for the fault "replay": personal data) is
        # the app's alone: 0600 from creation whatever the umask, as the phone's directory
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, 0o600)
            f.write(json.dumps(state))
        os.replace(tmp, self.state_path)

    def _note_use(self, slot: int) -> None:
        self._uses[slot] = self._uses.get(slot, 0) + 1
        self._save_state()

    def _keep_for_replay(self, doc: Document) -> None:
        """The fault "replay": the Document its next presentations repeat (kept with the
        wallet's state, so a phone replays across taps and runs)."""
        self._replay = doc
        self._save_state()

    def credentials(self) -> list[HeldCredential]:
        """Every slot whose IssuerSigned parses (a slot that does not is skipped).

        Parsed credentials are kept by (slot, length) as LIST SLOTS reports them, so a
        presentation costs LIST SLOTS and SIGN, not a full read of every slot."""
        out = []
        listing = self.applet.slots()
        self._held = {k: v for k, v in self._held.items() if (k[0], True, k[1]) in listing}
        for slot, has, length in listing:
            if not has:
                continue
            cached = self._held.get((slot, length))
            if cached is not None:
                out.append(cached)
                continue
            try:
                isg = IssuerSigned.decode(self.applet.read(slot, length))
                mso = isg.mso()
                elements = {ns: frozenset(i.element_identifier for i in items)
                            for ns, items in isg.items().items()}
            except (MdocError, WalletSeError):
                continue
            held = HeldCredential(slot, isg, mso, elements)
            self._held[(slot, length)] = held
            out.append(held)
        return out

    def choose(self, doc_type: str, now: dt.datetime, issuers: Sequence[bytes] = ()) -> HeldCredential | None:
        """The least presented valid credential of ``doc_type`` (fresh MSO per presentation);
        with ``issuers`` (a request's issuerIdentifiers), only one those authorities issued."""
        held = [c for c in self.credentials() if c.doc_type == doc_type
                and (not issuers or not c.issuer_key_ids.isdisjoint(issuers))]
        valid = [c for c in held if c.mso.validity_info.valid_from <= now <= c.mso.validity_info.valid_until]
        pool = valid or held
        if not pool:
            return None
        return min(pool, key=lambda c: (self._uses.get(c.slot, 0), c.slot))

    def start(self, engagement: Engagement | None = None) -> WalletSession:
        """A new presentation: fresh EDeviceKey and DeviceEngagement (or ``engagement``, as
        an NFC tap made it, with its handover)."""
        return WalletSession(self, engagement or Engagement.new())

    def cross_device(self, uri: str) -> CrossDeviceWalletSession:
        """An OpenID4VP request scanned from a verifier's QR code (``openid4vp://?...``): see
        :class:`CrossDeviceWalletSession`. :class:`OnlineRequestError` for a URI it cannot use."""
        return CrossDeviceWalletSession(self, uri)

    def online(self, origin: str) -> OnlineWalletSession:
        """A new online presentation (ISO/IEC TS 18013-7 Annex C, or OpenID4VP 1.0) for the
        web page at ``origin``, as the browser reports it."""
        return OnlineWalletSession(self, origin)


class WalletSession:
    """One presentation, sans-I/O: :meth:`receive` takes the reader's message, returns the
    message to send back (or None when there is nothing to send)."""

    def __init__(self, wallet: Wallet, engagement: Engagement | None) -> None:
        self.wallet = wallet
        self.engagement = engagement
        self.origin: str | None = None
        """The web origin of an online request (the browser's word), shown to the holder."""
        self.state: Literal["engaged", "open", "terminated"] = "engaged"
        self.transcript: SessionTranscript | None = None
        self.events: list[WalletEvent] = []
        self._crypto: SessionEncryption | None = None
        self._e_reader_point: bytes | None = None
        self.device_response: bytes | None = None
        """The last DeviceResponse sent (plaintext), e.g. to save a transcript."""

    # -- transport-facing ----------------------------------------------------------------

    def receive(self, message: bytes) -> bytes | None:
        try:
            return self._receive(message)
        except Exception as exc:  # noqa: BLE001 - the wallet's boundary: it never crashes
            return self._fail(SESSION_STATUS_ENCRYPTION_ERROR, f"internal error: {type(exc).__name__}: {exc}")

    def terminate(self) -> bytes:
        """SessionData with status 20: the holder ends the session."""
        self._end("holder ended the session")
        return SessionData(status=SESSION_STATUS_TERMINATION).encode()

    @property
    def last_response(self) -> WalletEvent | None:
        return next((e for e in reversed(self.events) if e.kind == "response"), None)

    # -- the state machine ---------------------------------------------------------------

    def _end(self, why: str, status: int | None = None) -> None:
        if self.state != "terminated":
            self.state = "terminated"
            self.events.append(WalletEvent("terminated", why, status=status))
        self._crypto = None

    def _fail(self, status: int, why: str) -> bytes:
        self.events.append(WalletEvent("error", why, status=status))
        self._end(why, status)
        return SessionData(status=status).encode()

    def _receive(self, message: bytes) -> bytes | None:
        if self.state == "terminated":
            return None
        if not isinstance(message, bytes | bytearray):
            return self._fail(SESSION_STATUS_DECODING_ERROR, "message is not bytes")
        message = bytes(message)
        if self.state == "engaged":
            try:
                est = SessionEstablishment.decode(message)
                self.transcript = SessionTranscript.build(self.engagement.bytes, est.e_reader_key_bytes,
                                                         self.engagement.handover)
                self._crypto = SessionEncryption.for_mdoc(
                    self.engagement.e_device_private_key, est.e_reader_key, self.transcript)
                self._e_reader_point = b"\x04" + est.e_reader_key.x + est.e_reader_key.y
            except MdocDecodeError as exc:
                return self._fail(SESSION_STATUS_DECODING_ERROR, f"SessionEstablishment: {exc}")
            except MdocError as exc:
                return self._fail(SESSION_STATUS_ENCRYPTION_ERROR, f"SessionEstablishment: {exc}")
            self.state = "open"
            ciphertext, ends = est.data, False
        else:
            try:
                sd = SessionData.decode(message)
            except MdocError as exc:
                return self._fail(SESSION_STATUS_DECODING_ERROR, f"SessionData: {exc}")
            if sd.data is None:
                self._end(f"reader sent status {sd.status}", sd.status)
                return None
            ciphertext, ends = sd.data, sd.status == SESSION_STATUS_TERMINATION
        try:
            plaintext = self._crypto.decrypt(ciphertext)
        except MdocError as exc:
            return self._fail(SESSION_STATUS_ENCRYPTION_ERROR, f"decrypt: {exc}")
        response = self._respond(plaintext)
        self.device_response = response
        out = SessionData(data=self._crypto.encrypt(response)).encode()
        if ends:
            self._end("reader ended the session with its request")
        return out

    # -- DeviceRequest -> DeviceResponse ---------------------------------------------------

    def _error_response(self, status: int, why: str) -> bytes:
        self.events.append(WalletEvent("error", why, status=status))
        return DeviceResponse(status=status).encode()

    def _respond(self, plaintext: bytes) -> bytes:
        try:
            cbor.loads(plaintext)
        except cbor.CborDecodeError as exc:
            return self._error_response(STATUS_CBOR_DECODING_ERROR, f"DeviceRequest: {exc}")
        try:
            request = DeviceRequest.decode(plaintext)
        except MdocError as exc:
            return self._error_response(STATUS_CBOR_VALIDATION_ERROR, f"DeviceRequest: {exc}")
        documents, doc_errors = [], []
        everyone = self._reader_all(request)
        now = self.wallet.clock()

        def can_answer(_: int, doc_request: DocRequest) -> bool:
            items = doc_request.items_request
            issuers = items.info.issuer_identifiers if items.info is not None else ()
            return self.wallet.choose(items.doc_type, now, issuers) is not None

        chosen, unmet = request.chosen(can_answer)
        if unmet:
            self.events.append(WalletEvent("use_cases", "no document set of use case(s) "
                                           + ", ".join(map(str, unmet)) + " can be answered"))
        try:
            for i in chosen:
                doc_request = request.doc_requests[i]
                doc = self._document(doc_request, everyone if doc_request.reader_auth is None else None)
                if doc is None:
                    doc_errors.append({doc_request.items_request.doc_type: ERROR_DATA_NOT_RETURNED})
                else:
                    documents.append(doc)
        except WalletSeError as exc:
            return self._error_response(STATUS_GENERAL_ERROR, f"secure element: {exc}")
        return DeviceResponse(tuple(documents), tuple(doc_errors)).encode()

    def _reader_all(self, request: DeviceRequest) -> ReaderIdentity | None:
        """Who the reader is by readerAuthAll (second edition), if it signed that way: the
        first signature's certificate; verified only if every signature is."""
        if not request.reader_auth_all:
            return None
        # the DocRequests' own readerAuth, if any, are the per-document identities' business
        bare = DeviceRequest(tuple(DocRequest(d.items_request) for d in request.doc_requests), request.version,
                             request.device_request_info, request.reader_auth_all)
        result = verify_reader_auth(bare, session_transcript=self.transcript,
                                    trust_anchors=self.wallet.reader_trust_anchors, now=self.wallet.clock(),
                                    revocation=self.wallet.reader_revocation)
        return self._identity(lambda: request.reader_auth_all[0].x5chain, result.checks)

    def _identity(self, x5chain: Callable[[], Sequence[bytes]], checks) -> ReaderIdentity:
        """Who the reader is, as the holder is shown it: the subject of the leaf of
        ``x5chain`` (read when asked: a readerAuth's may not decode), whether its signatures
        verified and its certificate path held (``checks``: :func:`verify_reader_auth`'s, or
        :func:`check_reader_chain`'s for a request object), and the profile rules it breaks."""
        try:
            leaf = x509.load_der_x509_certificate(x5chain()[0])
            subject = leaf.subject.rfc4514_string()
        except (ValueError, IndexError, MdocError, Exception):  # noqa: BLE001 - shown as unknown
            leaf, subject = None, None
        sigs = [c for c in checks if c.name == READER_AUTHENTICATION]
        chains = [c for c in checks if c.name == READER_CERTIFICATE_CHAIN]
        revoked = next((c for c in checks if c.name == READER_CERTIFICATE_REVOCATION and not c.passed), None)
        failed = next((c for c in chains if not c.passed), revoked)
        trusted = bool(chains) and failed is None
        return ReaderIdentity(subject, bool(sigs) and all(c.passed for c in sigs), trusted,
                              "" if failed is None else failed.reason,
                              self._profile(leaf) if trusted and leaf is not None else (),
                              revocation_failed=revoked is not None and failed is revoked)

    def _profile(self, leaf: x509.Certificate) -> tuple[str, ...]:
        """The Annex B.1.7 rules a trusted reader's certificate breaks, against the reader CA
        that issued it (none found: none judged)."""
        ca = next((a for a in self.wallet.reader_trust_anchors if a.subject == leaf.issuer), None)
        if ca is None:
            return ()
        return tuple(f"{c.name}: {c.reason}" for c in check_reader_certificate(leaf, ca, self.wallet.clock())
                     if not c.passed)

    def _reader(self, doc_request: DocRequest) -> ReaderIdentity | None:
        auth = doc_request.reader_auth
        if auth is None:
            return None
        result = verify_reader_auth(DeviceRequest((doc_request,)), session_transcript=self.transcript,
                                    trust_anchors=self.wallet.reader_trust_anchors, now=self.wallet.clock(),
                                    revocation=self.wallet.reader_revocation)
        return self._identity(lambda: auth.x5chain, result.checks)

    def _document(self, doc_request: DocRequest, reader: ReaderIdentity | None = None):
        items = doc_request.items_request
        info = items.info
        reader = reader if reader is not None else self._reader(doc_request)
        now = self.wallet.clock()
        held = self.wallet.choose(items.doc_type, now, info.issuer_identifiers if info is not None else ())
        requested = {ns: frozenset(ids) for ns, ids in items.name_spaces.items()}
        if held is None:
            why = ("docType not held" if info is None or not info.issuer_identifiers
                   or self.wallet.choose(items.doc_type, now) is None
                   else "docType not held from any of the reader's issuerIdentifiers")
            self.events.append(WalletEvent("response", why, items.doc_type, reader, not_held=requested))
            return None
        asked, answers, withheld = self._with_age_over(items.name_spaces, held)
        asked, instead_of = self._with_alternatives(asked, info, held, {(a.namespace, age_over.identifier(a.requested))
                                                                         for a in answers})
        consent_request = ConsentRequest(items.doc_type, asked, reader, held.elements, self.origin,
                                         cross_device=isinstance(self, CrossDeviceWalletSession),
                                         instead_of=instead_of, age_answers=answers)
        try:
            decided = self.wallet.consent.decide(consent_request)
        except Exception as exc:  # noqa: BLE001 - a failing prompt refuses everything
            decided = {}
            self.events.append(WalletEvent("error", f"consent: {type(exc).__name__}: {exc}"))
        wanted = {ns: frozenset(ids) for ns, ids in asked.items()}
        released = {ns: frozenset(ids & set(decided.get(ns, ())) & held.elements.get(ns, frozenset()))
                    for ns, ids in wanted.items()}
        released = {ns: ids for ns, ids in released.items() if ids}
        # what was asked and not sent: refused by the holder (or the consent rules), or not held
        not_held = {ns: frozenset(ids - held.elements.get(ns, frozenset())) for ns, ids in requested.items()}
        not_held = {ns: ids for ns, ids in not_held.items() if ids}
        refused = {ns: frozenset(ids - released.get(ns, frozenset()) - not_held.get(ns, frozenset()))
                   for ns, ids in requested.items()}
        refused = {ns: ids for ns, ids in refused.items() if ids}
        why_withheld = (f"; {', '.join(sorted(withheld))} withheld: more than {age_over.MAX_REQUESTED} age_over_NN "
                        "asked (ISO/IEC 18013-5 7.2.5)") if withheld else ""
        if not released:
            self.events.append(WalletEvent("response", "nothing released" + why_withheld, items.doc_type, reader,
                                           refused=refused, slot=held.slot, not_held=not_held))
            return None
        # an age_over_NN answered in its place by the age_over_MM released (7.2.5) is answered,
        # not "not returned": errors (and the event's not_held) name only what nothing released answers
        answered_by: dict[str, dict[str, str]] = {}
        for a in answers:
            if age_over.identifier(a.returned) in released.get(a.namespace, ()):
                answered_by.setdefault(a.namespace, {})[age_over.identifier(a.requested)] = \
                    age_over.identifier(a.returned)
        answered = {(ns, asked_id) for ns, by in answered_by.items() for asked_id in by}
        not_held = {ns: frozenset(i for i in ids if (ns, i) not in answered) for ns, ids in not_held.items()}
        not_held = {ns: ids for ns, ids in not_held.items() if ids}
        errors = {ns: {i: ERROR_DATA_NOT_RETURNED for i in sorted(refused.get(ns, frozenset()) | not_held.get(ns, frozenset()))}
                  for ns in refused.keys() | not_held.keys()}
        errors = {ns: items for ns, items in errors.items() if items}
        doc = self._build(held, released, errors)
        if info is not None and info.maximum_response_size is not None:
            size = len(cbor.dumps(doc.to_cbor()))
            if size > info.maximum_response_size:
                self.events.append(WalletEvent(
                    "response", f"document of {size} bytes is over the reader's maximumResponseSize "
                    f"({info.maximum_response_size})", items.doc_type, reader, refused=requested, slot=held.slot))
                return None
        self.wallet._note_use(held.slot)
        stood_in = [f"{a[1]} in place of {r[1]}" for a, r in instead_of.items() if a[1] in released.get(a[0], ())]
        stood_in += [f"{age_over.identifier(a.returned)} in place of {age_over.identifier(a.requested)}"
                     for a in answers if age_over.identifier(a.returned) in released.get(a.namespace, ())]
        self.events.append(WalletEvent("response", f"released {sum(map(len, released.values()))} item(s)"
                                       + (f" ({', '.join(stood_in)})" if stood_in else "") + why_withheld,
                                       items.doc_type, reader, released, refused, slot=held.slot, not_held=not_held,
                                       answered_by=answered_by))
        return doc

    def _build(self, held: HeldCredential, released: Mapping[str, frozenset[str]],
               errors: Mapping[str, Mapping[str, int]]) -> Document:
        """The Document of ``released``, device-authenticated in the SE (a signature, or a
        MAC from the SE's key agreement); as the wallet's fault, if it has one, makes it."""
        f = self.wallet.fault
        name = f.name if f is not None else None
        if name == "replay" and self.wallet._replay is not None:
            return self.wallet._replay
        doc_type = held.doc_type + ".forged" if name == "doc-type" else None
        if name == "unrequested":
            extra = next(((ns, e) for ns in sorted(held.elements) for e in sorted(held.elements[ns])
                          if e not in released.get(ns, ())), None)
            if extra is not None:
                released = {**released, extra[0]: released.get(extra[0], frozenset()) | {extra[1]}}
        if self.wallet.device_auth == "signature" or self._e_reader_point is None:
            # online (Annex C) there is no reader key to agree a MAC key with: a signature
            signer = faults.stranger_signer() if name == "device-signature" else SeSigner(self.wallet.applet,
                                                                                           held.slot)
            doc = build_document(held.issuer_signed, self.transcript, disclose=released, signer=signer,
                                 errors=errors or None, doc_type=doc_type)
        else:
            z = (secrets.token_bytes(32) if name == "device-signature"
                 else self.wallet.applet.key_agreement(held.slot, self._e_reader_point))
            doc = build_document(held.issuer_signed, self.transcript, disclose=released,
                                 emac_key=derive_emac_key(z, self.transcript), errors=errors or None,
                                 doc_type=doc_type)
        if name == "replay":
            self.wallet._keep_for_replay(doc)
        return faults.after_build(f, doc, self.wallet.clock)

    @staticmethod
    def _with_age_over(name_spaces, held: HeldCredential):
        """The items to put to the holder for ISO/IEC 18013-5 7.2.5: those asked, and for each
        age_over_NN asked that this document does not hold, the nearest age_over_MM that
        answers it (:meth:`HeldCredential.answering`), with the intent to retain of what it
        answers (retained if any of them is, or it is asked itself to be retained); the
        answers (:class:`~protocols.mdoc.age_over.AgeAnswer`, shown to the holder with the
        value they disclose). A request for more than two age_over_NN gets none of them: they
        are not put to the holder at all (third value: the identifiers withheld)."""
        asked = {ns: dict(ids) for ns, ids in name_spaces.items()}
        answers: list[age_over.AgeAnswer] = []
        if age_over.too_many(i for ids in name_spaces.values() for i in ids):
            withheld = {i for ids in name_spaces.values() for i in ids if age_over.threshold(i) is not None}
            return ({ns: {i: r for i, r in ids.items() if i not in withheld} for ns, ids in asked.items()},
                    (), frozenset(withheld))
        for ns, ids in name_spaces.items():
            for ident, retain in ids.items():
                nn = age_over.threshold(ident)
                if nn is None or ident in held.elements.get(ns, frozenset()):
                    continue
                instead = held.answering(ns, ident)
                if instead is None:
                    continue
                asked[ns][instead] = asked[ns].get(instead, False) or retain
                mm = age_over.threshold(instead)
                answers.append(age_over.AgeAnswer(ns, nn, mm, held.ages[ns][mm]))
        return asked, tuple(answers), frozenset()

    @staticmethod
    def _with_alternatives(asked, info, held: HeldCredential, answered=frozenset()):
        """The items to put to the holder: ``asked``, and for each asked element this
        document does not hold (and no age_over_MM ``answered`` for it), the first of its
        alternativeDataElements sets (second edition) whose elements it all holds, with the
        asked element's intent to retain. Also which alternative stands in for which asked
        element (shown to the holder)."""
        name_spaces = {ns: dict(ids) for ns, ids in asked.items()}
        asked = {ns: dict(ids) for ns, ids in asked.items()}
        instead_of: dict[tuple[str, str], tuple[str, str]] = {}
        if info is None or not info.alternative_data_elements:
            return asked, instead_of
        for ns, ids in name_spaces.items():
            for ident, retain in ids.items():
                if ident in held.elements.get(ns, frozenset()) or (ns, ident) in answered:
                    continue
                for alternative in info.alternatives_for((ns, ident)):
                    if all(e in held.elements.get(n, frozenset()) for n, e in alternative):
                        for ref in alternative:
                            if ref[1] not in asked.get(ref[0], {}):
                                asked.setdefault(ref[0], {})[ref[1]] = retain
                                instead_of[ref] = (ns, ident)
                        break
        return asked, instead_of



class OnlineRequestError(WalletError):
    """An online request the wallet cannot answer at all: its envelope is not Annex C's
    (protocol, encryptionInfo, base64url) nor OpenID4VP 1.0's (a DCQL query it supports, a
    signed request whose signature, client_id or expected_origins do not hold). A malformed
    DeviceRequest inside a sound Annex C envelope is answered, with a DeviceResponse status
    (§8.3.2.1.2.3)."""


class UntrustedVerifierError(OnlineRequestError):
    """A cross-device OpenID4VP request signed by a certificate whose path does not validate
    against the wallet's reader trust anchors (OID4VP 1.0 5.9.3): refused without asking the
    holder and without posting anything to its ``response_uri``. :attr:`reader` is the
    verifier as the wallet judged it (its reason says why it is not trusted)."""

    def __init__(self, message: str, reader: ReaderIdentity) -> None:
        super().__init__(message)
        self.reader = reader


class OnlineWalletSession(WalletSession):
    """One online presentation, sans-I/O: :meth:`respond` takes the request object the page
    passed to the Digital Credentials API and gives the credential's answer, for either
    protocol a web page may ask with:

    * ``org-iso-mdoc`` (ISO/IEC TS 18013-7 Annex C): ``{"deviceRequest", "encryptionInfo"}``
      in, the DeviceResponse sealed with HPKE to the page's key out;
    * ``openid4vp-v1-unsigned`` (OpenID4VP 1.0, Appendix A and B.2): a DCQL query in, a
      ``vp_token`` of one DeviceResponse per answered credential query out, as a JWE to the
      page's key (``dc_api.jwt``) or in the clear (``dc_api``);
    * ``openid4vp-v1-signed``: the same, the request a JWS by the verifier's certificate,
      which the holder is shown (as readerAuth's) once its signature, client_id and
      expected_origins hold and its certificate path validates against the wallet's reader
      trust anchors (OID4VP 1.0 5.9.3); a path that does not is answered ``invalid_request``
      (8.5) and never put to the holder.

    Everything is bound to the SessionTranscript of the request and of the origin the
    browser vouches for, which the holder is shown at consent; the device key signs (there
    is no reader key for a MAC). :attr:`device_response` is the last DeviceResponse made."""

    def __init__(self, wallet: Wallet, origin: str) -> None:
        super().__init__(wallet, None)
        self.origin = origin
        self.protocol: str | None = None

    def _refuse(self, exc: Exception) -> OnlineRequestError:
        self.events.append(WalletEvent("error", f"online request: {exc}"))
        self._end("online request refused")
        return OnlineRequestError(str(exc))

    def respond(self, request: Mapping) -> dict:
        if self.state == "terminated":
            raise OnlineRequestError("this online presentation has already answered")
        self.protocol = request.get("protocol") if isinstance(request, Mapping) else None
        if self.protocol in oid4vp.PROTOCOLS:
            return self._respond_oid4vp(request)
        try:
            parsed = dcapi.DcApiRequest.parse(request)
            self.transcript = dcapi.session_transcript(parsed.encryption_info, self.origin)
        except dcapi.DcApiError as exc:
            raise self._refuse(exc) from None
        self.state = "open"
        try:
            response = self._respond(parsed.device_request)
        except Exception as exc:  # noqa: BLE001 - the wallet's boundary: a status, never a crash
            response = self._error_response(STATUS_GENERAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        self.device_response = response
        sealed = dcapi.seal(response, parsed.encryption_info, self.transcript)
        self._end("response sent to " + self.origin)
        return dcapi.response_json(sealed)

    def _verifier(self, signed: oid4vp.SignedBy) -> ReaderIdentity:
        """The verifier of a signed request, as the holder is shown it, judged as a reader
        that signs readerAuth is (its certificate is its reader certificate:
        :func:`check_reader_chain`, the mdlReaderAuth extended key usage included): its
        certificate's subject, the signature (checked already), whether it chains to a
        reader CA the wallet trusts and is not revoked, the profile rules it breaks. Not
        trusted, the request is refused before the holder sees it
        (:meth:`_untrusted_verifier`)."""
        checks, _chain = check_reader_chain(signed.chain, self.wallet.reader_trust_anchors, self.wallet.clock(),
                                            self.wallet.reader_revocation)
        checks.append(Check(READER_AUTHENTICATION, True, "the request object's signature"))
        return self._identity(lambda: signed.chain, checks)

    def _respond_oid4vp(self, request: Mapping) -> dict:
        reader = None
        try:
            if self.protocol == oid4vp.SIGNED_PROTOCOL:
                parsed, signed = oid4vp.parse_signed(request, self.origin)
                reader = self._verifier(signed)
            else:
                parsed = oid4vp.Oid4vpRequest.parse(request)
            self.transcript = oid4vp.session_transcript(self.origin, parsed.nonce, parsed.thumbprint)
        except oid4vp.Oid4vpError as exc:
            raise self._refuse(exc) from None
        if reader is not None and not reader.trusted:
            return {"protocol": self.protocol, "data": {
                "error": INVALID_REQUEST, "error_description": self._untrusted_verifier(reader)}}
        answered = self._answer_queries(parsed, reader)
        if not answered:  # OAuth's error response (OID4VP 1.0 section 8.5): no credential leaves
            return {"protocol": self.protocol, "data": {
                "error": "access_denied", "error_description": NOTHING_RELEASED}}
        return oid4vp.seal(oid4vp.vp_token(answered), parsed, protocol=self.protocol)

    def _untrusted_verifier(self, reader: ReaderIdentity) -> str:
        """Ends the presentation of a signed request whose certificate path does not validate
        against the wallet's reader trust anchors (or its reader CAs' lists refuse it): OID4VP
        1.0 5.9.3 has the wallet validate the signature *and the trust chain* of an
        ``x509_san_dns:`` / ``x509_hash:`` verifier's certificate, so the request never
        reaches the holder (unlike an untrusted ISO readerAuth, which the consent rules judge).
        The error description of the ``invalid_request`` answer (8.5: the requirements of
        the client identifier prefix violated)."""
        why = f"{UNTRUSTED_VERIFIER}: {reader.reason}"[:300]
        self.events.append(WalletEvent("error", f"online request refused: {why}", reader=reader))
        self._end("online request refused")
        return why

    def _answer_queries(self, request: oid4vp.Oid4vpRequest, reader: ReaderIdentity | None) -> dict[str, list[bytes]]:
        """A DeviceResponse per DCQL credential query the holder releases something of, over
        :attr:`transcript`: every query, or with credential sets the first option of each
        that the wallet's credentials answer whole (claim sets and ``values`` judged against
        what it holds); the session ends."""
        self.state = "open"
        answered: dict[str, list[bytes]] = {}
        held: dict[tuple[str, tuple[bytes, ...] | None], HeldCredential | None] = {}

        def holding(query: oid4vp.CredentialQuery) -> HeldCredential | None:
            """The credential that answers ``query``: of its docType, and with
            trusted_authorities, issued under one of them (none when it names only types
            this wallet cannot judge)."""
            akis = query.authority_key_ids
            key = (query.doctype, akis)
            if key not in held:
                held[key] = None if akis == () else self.wallet.choose(query.doctype, self.wallet.clock(), akis or ())
            return held[key]

        def satisfiable(query: oid4vp.CredentialQuery) -> bool:
            h = holding(query) if query.format == oid4vp.FORMAT else None
            return h is not None and query.satisfiable(*_answerable(h, query))

        try:
            try:
                queries = oid4vp.select_queries(request.queries, request.credential_sets, satisfiable)
            except oid4vp.Oid4vpError as exc:
                self.events.append(WalletEvent("response", f"nothing answered: {exc}"))
                queries = ()
            for query in queries:
                if query.format != oid4vp.FORMAT:
                    continue  # a format this wallet holds nothing of
                # what the wallet holds decides the items only with claim sets or values (one SE listing less)
                h = holding(query) if query.needs_holdings else None
                items = query.items(*_answerable(h, query))
                if not items:
                    self.events.append(WalletEvent("response", "no claim held with the values asked", query.doctype,
                                                   reader))
                    continue
                akis = query.authority_key_ids
                if akis == ():
                    self.events.append(WalletEvent("response", "no trusted_authorities of a type this wallet judges "
                                                   "(aki)", query.doctype, reader))
                    continue
                info = DocRequestInfo(issuer_identifiers=akis) if akis else None
                doc = self._document(DocRequest.build(ItemsRequest.build(query.doctype, items, info=info)), reader)
                if doc is not None:
                    self.device_response = DeviceResponse((doc,)).encode()
                    answered[query.id] = [self.device_response]
        except WalletSeError as exc:
            self.events.append(WalletEvent("error", f"secure element: {exc}"))
        except Exception as exc:  # noqa: BLE001 - the wallet's boundary
            self.events.append(WalletEvent("error", f"internal error: {type(exc).__name__}: {exc}"))
        self._end("response sent to " + self.origin)
        return answered


def _values_of(held: HeldCredential | None) -> oid4vp.ValueOf | None:
    """The element values of a held credential, for DCQL ``values`` (looked up on demand)."""
    if held is None:
        return None

    def value_of(namespace: str, identifier: str):  # noqa: ANN202 - a CBOR value
        for item in held.issuer_signed.items().get(namespace, ()):
            if item.element_identifier == identifier:
                return item.element_value
        return None

    return value_of


def _answerable(held: HeldCredential | None, query: oid4vp.CredentialQuery
                ) -> tuple[Mapping[str, frozenset[str]] | None, oid4vp.ValueOf | None]:
    """What a DCQL query is judged against (its claim sets, its ``values``): the elements of
    ``held`` with their values and, for each age_over_NN the query names that ``held`` does
    not hold but answers by ISO/IEC 18013-5 7.2.5 (:meth:`HeldCredential.answering`), that
    claim as held, its value the answer (``values: [true]`` is met only by an answer that the
    holder is NN or over). The items asked are then answered as any request is
    (:meth:`WalletSession._document`: the age_over_MM in place, put to the holder)."""
    if held is None:
        return None, None
    elements = {ns: set(ids) for ns, ids in held.elements.items()}
    answers: dict[tuple[str, str], bool | None] = {}
    for c in query.claims:
        instead = held.answering(c.namespace, c.identifier)
        if instead is not None and instead != c.identifier:
            mm = age_over.threshold(instead)
            elements.setdefault(c.namespace, set()).add(c.identifier)
            answers[(c.namespace, c.identifier)] = age_over.answer(age_over.threshold(c.identifier), mm,
                                                                   held.ages[c.namespace][mm])
    values = _values_of(held)

    def value_of(namespace: str, identifier: str):  # noqa: ANN202 - a CBOR value
        key = (namespace, identifier)
        return answers[key] if key in answers else values(namespace, identifier)

    return {ns: frozenset(ids) for ns, ids in elements.items()}, value_of


NOTHING_RELEASED = "the holder released none of the requested claims"
INVALID_REQUEST = "invalid_request"
"""OID4VP 1.0 8.5: among others, the requirements of the request's client identifier prefix
were violated (for ``x509_san_dns:`` / ``x509_hash:``, a certificate path the wallet cannot
validate, 5.9.3)"""
UNTRUSTED_VERIFIER = "the request's certificate does not chain to a reader CA this wallet trusts"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class HttpExchange:
    """An HTTP request the wallet app makes for a :class:`CrossDeviceWalletSession`: GET
    ``url`` (``form`` None) or POST ``form`` to it (``application/x-www-form-urlencoded``),
    with ``accept`` as the Accept header."""

    method: Literal["GET", "POST"]
    url: str
    form: Mapping[str, str] | None = None
    accept: str = "application/json"


class CrossDeviceWalletSession(OnlineWalletSession):
    """An OpenID4VP 1.0 request scanned from a verifier's QR code, answered straight to the
    verifier (:mod:`protocols.mdoc.oid4vp_redirect`); sans-I/O, the wallet app makes the two
    HTTP requests it names:

    1. :attr:`fetch`: the request object at ``request_uri`` (GET, or POST with a
       ``wallet_nonce`` when the URI says ``request_uri_method=post``); None when the URI
       carries an unsigned request by value (``redirect_uri:``);
    2. :meth:`respond` with that body (or None) gives the POST of the answer to the
       request's ``response_uri``: ``response=<JWE>`` (``direct_post.jwt``), or OAuth's
       ``access_denied`` when the holder releases nothing.

    A signed request is checked (signature, ``client_id`` the URI's and the certificate's,
    the ``response_uri`` on the certified host for ``x509_san_dns:``, the certificate path to
    one of the wallet's reader CAs) and its verifier shown to the holder as readerAuth's is;
    a certificate path that does not validate (OID4VP 1.0 5.9.3) raises
    :class:`UntrustedVerifierError`, the holder never asked and nothing posted: that
    verifier's ``response_uri`` is unauthenticated, and an ``invalid_request`` sent there
    would tell whoever chose it that this wallet read the request (8.5, RFC 6749 4.1.2.1).
    The answer goes only to https, or to http on this
    machine (a lab's reader). The device signs over the OpenID4VPHandover transcript, which
    binds the client_id, nonce, encryption key and response_uri."""

    protocol_name = "openid4vp-cross-device"

    def __init__(self, wallet: Wallet, uri: str) -> None:
        super().__init__(wallet, "")
        self.protocol = self.protocol_name
        self.redirect: oid4vp_redirect.RedirectRequest | None = None
        try:
            self.authorization = oid4vp_redirect.parse_authorization_uri(uri)
        except oid4vp.Oid4vpError as exc:
            raise self._refuse(exc) from None
        self.wallet_nonce = (secrets.token_urlsafe(16) if self.authorization.request_uri_method == "post" else None)

    @property
    def fetch(self) -> HttpExchange | None:
        auth = self.authorization
        if auth.by_value:
            return None
        form = {"wallet_nonce": self.wallet_nonce} if self.wallet_nonce is not None else None
        return HttpExchange("POST" if form else "GET", auth.request_uri, form,
                            accept=oid4vp_redirect.REQUEST_OBJECT_TYPE)

    def respond(self, request_object: str | bytes | None = None) -> HttpExchange:  # type: ignore[override]
        """The POST of the answer, for the request object :attr:`fetch` got (its body)."""
        if self.state == "terminated":
            raise OnlineRequestError("this presentation has already answered")
        reader = None
        try:
            if self.authorization.by_value:
                if request_object is not None:
                    raise oid4vp.Oid4vpError("this authorization request carries its request by value")
                redirect = oid4vp_redirect.parse_by_value(self.authorization)
            else:
                if isinstance(request_object, bytes):
                    request_object = request_object.decode("ascii", "replace").strip()
                redirect, signed = oid4vp_redirect.parse_request_object(
                    request_object, self.authorization, wallet_nonce=self.wallet_nonce)
                reader = self._verifier(signed)
            where = urlsplit(redirect.response_uri)
            if where.scheme != "https" and where.hostname not in _LOOPBACK:
                raise oid4vp.Oid4vpError(f"response_uri {redirect.response_uri[:80]!r}: an answer leaves this phone "
                                         "only over https (http only to this machine's own reader)")
            self.origin = dcapi.origin_of(redirect.response_uri)
            self.transcript = redirect.transcript
        except (oid4vp.Oid4vpError, dcapi.DcApiError) as exc:
            raise self._refuse(exc) from None
        self.redirect = redirect
        if reader is not None and not reader.trusted:
            # Nothing is posted: the response_uri is the unauthenticated verifier's own choice,
            # and an error sent there would tell whoever made the request that this wallet exists
            # and read it (OID4VP 1.0 8.5 follows RFC 6749 4.1.2.1: a client that cannot be
            # authenticated is not sent the error; the holder is told instead).
            why = self._untrusted_verifier(reader)
            raise UntrustedVerifierError(f"{why}; nothing was sent to {redirect.response_uri[:80]} (an unverified "
                                         "verifier's response_uri)", reader)
        answered = self._answer_queries(redirect.request, reader)
        try:
            form = (oid4vp_redirect.response_form(oid4vp.vp_token(answered), redirect) if answered
                    else oid4vp_redirect.error_form("access_denied", NOTHING_RELEASED, redirect.state))
        except oid4vp.Oid4vpError as exc:
            raise OnlineRequestError(str(exc)) from None
        return HttpExchange("POST", redirect.response_uri, form)
