"""The reader's side of an mdoc session, sans-I/O (ISO/IEC 18013-5:2021 §9.1.1, §8.3.2.1.2.1).

``start(engagement)`` takes the DeviceEngagement (bytes, or the ``mdoc:`` QR URI) and gives
the SessionEstablishment bytes (EReaderKey + encrypted DeviceRequest, optionally with
readerAuth §9.1.4); ``receive(session_data)`` takes the wallet's SessionData and gives a
:class:`ReaderOutcome` with the verdict of the pipeline over THIS session's transcript;
``terminate()`` gives SessionData status 20. Nothing here raises on the wallet's bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from protocols.cose import CoseKey, CoseSigner
from protocols.mdoc import (
    AlternativeDataElements,
    Check,
    DeviceEngagement,
    DeviceRequest,
    DeviceRequestInfo,
    DeviceResponse,
    DocRequest,
    DocRequestInfo,
    ItemsRequest,
    MdocError,
    SessionData,
    SessionEncryption,
    SessionEstablishment,
    SessionTranscript,
    UseCase,
    VerificationResult,
    age_over,
)
from protocols.mdoc.session import SESSION_STATUS_TERMINATION
from protocols.mdoc.verify import DisclosedDocument, json_value
from reader import hostile as hostile_faults
from reader.errors import ReaderSessionError, RequestSpecError
from reader.hostile import Hostile

SESSION = "session"
MATCHES_REQUEST = "matches_request"
WALLET_REFUSAL = "wallet_refusal"  # a hostile reader's verdict on the phone's answer (reader.hostile)
#: The code of a failed ``session`` check: no presentation to judge (present again)
SESSION_FAILED = "session_failed"
#: The code of a ``session`` check the phone ended before answering, on purpose: SessionData
#: status 20, or the transport's own termination (BLE State 0x02 "End"), ISO/IEC 18013-5
#: §9.1.1.4 and §8.3.3.1.1.5; no failure of the transport, nothing disclosed
HOLDER_ENDED = "holder_ended"
CARDSUB_DOCTYPE = "jp.mcred.mynumber.cardsub.1"
#: The namespaces of the docTypes whose whole list this reader knows (specs/
#: card-substitute-doctype.md: the card substitute's own, and the ISO mirror): a request
#: naming another is a mistake (a placeholder such as ``NS`` left in), whose every answer
#: would otherwise come back with no documents
KNOWN_NAMESPACES: dict[str, tuple[str, ...]] = {CARDSUB_DOCTYPE: (CARDSUB_DOCTYPE, "org.iso.18013.5.1")}


@dataclass(frozen=True)
class RequestSpec:
    """What the reader asks for one docType: namespace -> identifier -> IntentToRetain."""

    doc_type: str
    items: Mapping[str, Mapping[str, bool]] = field(hash=False)
    info: DocRequestInfo | None = None
    """the second edition's requestInfo: alternatives, issuer identifiers, a size limit"""

    def with_info(self, info: DocRequestInfo | None) -> RequestSpec:
        return RequestSpec(self.doc_type, self.items, info)

    def allowed(self) -> dict[str, set[str]]:
        """What a document may disclose for this request: the items asked and, for each,
        the elements of its alternativeDataElements sets."""
        out = {ns: set(ids) for ns, ids in self.items.items()}
        if self.info is not None:
            for alt in self.info.alternative_data_elements:
                if alt.requested[1] in self.items.get(alt.requested[0], {}):
                    for s in alt.alternatives:
                        for ns, ident in s:
                            out.setdefault(ns, set()).add(ident)
        return out

    @classmethod
    def parse(cls, doc_type: str, specs: Sequence[str], *, retain: bool = False) -> RequestSpec:
        """From ``NS:ID`` strings (``NS:ID!`` marks intent to retain)."""
        items: dict[str, dict[str, bool]] = {}
        for s in specs:
            for part in filter(None, (p.strip() for p in s.split(","))):
                ns, sep, ident = part.rpartition(":")
                if not sep or not ns or not ident:
                    raise RequestSpecError(f"{part!r}: expected NAMESPACE:IDENTIFIER")
                keep = ident.endswith("!")
                items.setdefault(ns, {})[ident.rstrip("!")] = retain or keep
        if not items:
            raise RequestSpecError("no items requested")
        ages = sorted({i for ids in items.values() for i in ids if age_over.threshold(i) is not None})
        if age_over.too_many(ages):
            raise RequestSpecError(f"{', '.join(ages)}: a reader asks for at most {age_over.MAX_REQUESTED} "
                                   "age_over_NN (ISO/IEC 18013-5 7.2.5)")
        known = KNOWN_NAMESPACES.get(doc_type)
        unknown = sorted(ns for ns in items if known is not None and ns not in known)
        if unknown:
            raise RequestSpecError(f"{', '.join(map(repr, unknown))}: docType {doc_type} has the namespaces "
                                   f"{' and '.join(known)}")
        return cls(doc_type, items)

    @staticmethod
    def parse_alternative(text: str) -> AlternativeDataElements:
        """``NS:ID=NS:ID+NS:ID|NS:ID``: the asked element, then its alternative sets in order
        of preference (``|`` between sets, ``+`` between the elements of one set)."""

        def ref(part: str) -> tuple[str, str]:
            ns, sep, ident = part.strip().rpartition(":")
            if not sep or not ns or not ident:
                raise RequestSpecError(f"--alternative {text!r}: {part.strip()!r} is not NAMESPACE:IDENTIFIER")
            return (ns, ident)

        asked, sep, rest = text.partition("=")
        if not sep or not rest.strip():
            raise RequestSpecError(f"--alternative {text!r}: expected NS:ID=NS:ID[+NS:ID][|NS:ID...]")
        sets = tuple(tuple(ref(e) for e in s.split("+")) for s in rest.split("|"))
        return AlternativeDataElements(ref(asked), sets)

    def with_alternatives(self, texts: Sequence[str]) -> RequestSpec:
        """This request with ``--alternative`` texts (:meth:`parse_alternative`) added to its
        requestInfo; each must stand in for an element the request asks for."""
        alts = [self.parse_alternative(t) for t in texts]
        for t, a in zip(texts, alts, strict=True):
            if a.requested[1] not in self.items.get(a.requested[0], {}):
                raise RequestSpecError(f"--alternative {t!r}: {a.requested[0]}:{a.requested[1]} is not asked for "
                                       "(--request)")
        info = self.info or DocRequestInfo()
        return self.with_info(dataclasses.replace(
            info, alternative_data_elements=info.alternative_data_elements + tuple(alts)))

    def to_json(self) -> dict:
        out: dict[str, Any] = {"docType": self.doc_type, "nameSpaces": {ns: dict(v) for ns, v in self.items.items()}}
        if self.info is not None:
            out["requestInfo"] = json_value(self.info.to_cbor())
        return out


DEFAULT_REQUEST = RequestSpec(CARDSUB_DOCTYPE, {CARDSUB_DOCTYPE: {
    "family_name": False, "given_name": False, "birth_date": False, "age_over_20": False,
    "document_number": False, "portrait": False,
}})


class Verifier(Protocol):
    def verify(self, response: bytes, *, session_transcript: SessionTranscript | bytes | None,
               reader_private_key: ec.EllipticCurvePrivateKey | None = None) -> VerificationResult: ...


@dataclass(frozen=True)
class ReaderOutcome:
    result: VerificationResult
    device_response: bytes | None = None
    session_transcript: SessionTranscript | None = None
    wallet_status: int | None = None

    @property
    def valid(self) -> bool:
        return self.result.valid


class ReaderSession:
    def __init__(
        self,
        requests: Sequence[RequestSpec],
        verifier: Verifier,
        *,
        reader_signer: CoseSigner | None = None,
        reader_chain: Sequence[bytes] = (),
        reader_auth_all: bool = False,
        use_cases: Sequence[UseCase] = (),
        hostile: Hostile | None = None,
    ) -> None:
        """``reader_auth_all``: sign once over every DocRequest (second edition's
        readerAuthAll) instead of each DocRequest's readerAuth. ``use_cases``: the second
        edition's deviceRequestInfo use cases (document sets by index into ``requests``).
        ``hostile``: a reader that is wrong on purpose (:mod:`reader.hostile`); the verdict
        is then on the phone's refusal where the standard says how the phone answers."""
        if not requests:
            raise ReaderSessionError("a reader session needs at least one RequestSpec")
        if reader_signer is not None and not reader_chain:
            raise ReaderSessionError("readerAuth needs the reader certificate chain")
        if reader_auth_all and reader_signer is None:
            raise ReaderSessionError("readerAuthAll needs a reader key (reader_signer)")
        if hostile is not None and hostile.needs_reader_key and reader_signer is None:
            raise ReaderSessionError(f"hostile {hostile.name} forges readerAuth: it needs a reader key and "
                                     "certificate (--reader-cert, --reader-key)")
        for r in requests:
            if age_over.too_many(i for ids in r.items.values() for i in ids):
                raise ReaderSessionError(f"{r.doc_type}: a reader asks for at most {age_over.MAX_REQUESTED} "
                                         "age_over_NN in one request (ISO/IEC 18013-5 7.2.5)")
        for n, case in enumerate(use_cases):
            for ids in case.document_sets:
                if not ids or any(not 0 <= i < len(requests) for i in ids):
                    raise ReaderSessionError(f"use case {n}: a document set names requests {list(ids)}, "
                                             f"there are {len(requests)}")
        self.requests = tuple(requests)
        self.verifier = verifier
        self.reader_signer = reader_signer
        self.reader_chain = list(reader_chain)
        self.reader_auth_all = reader_auth_all
        self.use_cases = tuple(use_cases)
        self.hostile = hostile
        self.state: Literal["idle", "awaiting_response", "done"] = "idle"
        self.transcript: SessionTranscript | None = None
        self.outcome: ReaderOutcome | None = None
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._crypto: SessionEncryption | None = None

    @classmethod
    def resume(
        cls,
        requests: Sequence[RequestSpec],
        verifier: Verifier,
        e_reader_private_key: ec.EllipticCurvePrivateKey,
        session_transcript: bytes,
    ) -> ReaderSession:
        """A session that :meth:`start` began elsewhere (another worker), awaiting the
        wallet's SessionData: from its EReaderKey and its SessionTranscript array bytes (the
        DeviceEngagement is inside). The keys are derived again; the reader sent one message
        (the DeviceRequest) and received none, so the counters go on at 2 and 1."""
        session = cls(requests, verifier)
        try:
            transcript = SessionTranscript.decode(session_transcript)
            if transcript.device_engagement_bytes is None:
                raise MdocError("SessionTranscript without DeviceEngagementBytes")
            de = DeviceEngagement.decode(transcript.device_engagement_bytes)
            session._crypto = SessionEncryption.for_reader(e_reader_private_key, de.e_device_key, transcript)
        except MdocError as exc:
            raise ReaderSessionError(f"resume: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - CoseKeyError and friends from a bad key
            raise ReaderSessionError(f"resume: {type(exc).__name__}: {exc}") from exc
        session._crypto.send_counter = 2
        session._key = e_reader_private_key
        session.transcript = transcript
        session.state = "awaiting_response"
        return session

    @property
    def e_reader_private_key(self) -> ec.EllipticCurvePrivateKey | None:
        """The ephemeral key (kept to verify a deviceMac, and for saved transcripts)."""
        return self._key

    def start(self, engagement: bytes | str, *, handover: Any = None) -> bytes:
        """The SessionEstablishment for this DeviceEngagement (bytes, or the QR code's
        ``mdoc:`` URI). ``handover``: the SessionTranscript's Handover, null after a QR code,
        ``NFCHandover`` after an NFC tap (:func:`protocols.mdoc.nfc.nfc_handover`)."""
        if self.state != "idle":
            raise ReaderSessionError(f"start: session is {self.state}")
        try:
            de = (DeviceEngagement.from_qr_uri(engagement) if isinstance(engagement, str)
                  else DeviceEngagement.decode(engagement))
            curve = de.e_device_key.public_key().curve
        except MdocError as exc:
            raise ReaderSessionError(f"DeviceEngagement: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - CoseKeyError and friends from a bad key
            raise ReaderSessionError(f"DeviceEngagement EDeviceKey: {exc}") from exc
        self._key = ec.generate_private_key(curve)
        e_reader_key = CoseKey.from_public_key(self._key.public_key())
        self.transcript = SessionTranscript.build(de.encode(), e_reader_key, handover)
        try:
            self._crypto = SessionEncryption.for_reader(self._key, de.e_device_key, self.transcript)
        except MdocError as exc:
            raise ReaderSessionError(f"session keys: {exc}") from exc
        request = self._device_request().encode()
        self.state = "awaiting_response"
        crypto = self._crypto
        if self.hostile is not None:
            request = hostile_faults.request_bytes(self.hostile, request)
            if self.hostile.name == "wrong-session-key":
                crypto = hostile_faults.stranger_encryption(self.transcript)
        return SessionEstablishment.build(e_reader_key, crypto.encrypt(request)).encode()

    def _device_request(self) -> DeviceRequest:
        """The DeviceRequest for :attr:`requests` in this session's transcript: each
        DocRequest signed (readerAuth), or all at once (readerAuthAll), or none."""
        each = self.reader_signer is not None and not self.reader_auth_all
        name = self.hostile.name if self.hostile is not None else None
        signed_over = hostile_faults.other_transcript() if name == "reader-auth-transcript" else self.transcript
        docs = [DocRequest.build(ItemsRequest.build(r.doc_type, r.items, info=r.info),
                                 reader_signer=self.reader_signer if each else None,
                                 reader_chain=self.reader_chain or None,
                                 session_transcript=signed_over if each else None)
                for r in self.requests]
        request = DeviceRequest.build(
            docs, device_request_info=DeviceRequestInfo.build(self.use_cases) if self.use_cases else None,
            reader_signer=self.reader_signer if self.reader_auth_all else None,
            reader_chain=self.reader_chain, session_transcript=signed_over if self.reader_auth_all else None)
        if name == "reader-auth-signature":
            flip = hostile_faults.flip_signature
            request = dataclasses.replace(
                request, reader_auth_all=tuple(flip(a) for a in request.reader_auth_all),
                doc_requests=tuple(DocRequest(d.items_request, flip(d.reader_auth) if d.reader_auth else None)
                                   for d in request.doc_requests))
        return request

    def _finish(self, outcome: ReaderOutcome) -> ReaderOutcome:
        self.state = "done"
        self.outcome = outcome
        return outcome

    def fail(self, reason: str) -> ReaderOutcome:
        """End the session with a failed ``session`` check (its transport failed, say):
        code ``session_failed``."""
        self._crypto = None
        return self._failed(reason)

    def ended_by_holder(self, reason: str) -> ReaderOutcome:
        """End the session the phone ended before answering by its transport's own
        termination (BLE State 0x02 "End", not a dropped link): as SessionData status 20,
        code ``holder_ended``."""
        self._crypto = None
        return self._failed(reason, code=HOLDER_ENDED)

    def _failed(self, reason: str, status: int | None = None, code: str = SESSION_FAILED) -> ReaderOutcome:
        return self._finish(ReaderOutcome(VerificationResult((Check(SESSION, False, reason, code=code),)),
                                          session_transcript=self.transcript, wallet_status=status))

    def receive(self, message: bytes) -> ReaderOutcome:
        if self.state != "awaiting_response":
            return self.outcome or self._failed(f"no response expected: session is {self.state}")
        try:
            sd = SessionData.decode(message)
        except MdocError as exc:
            return self._failed(f"SessionData: {exc}")
        except Exception as exc:  # noqa: BLE001 - the reader's boundary
            return self._failed(f"SessionData unreadable: {type(exc).__name__}")
        h = self.hostile
        if h is not None and h.session_status is not None:
            ok = sd.data is None and sd.status == h.session_status
            got = f"SessionData status {sd.status}" if sd.data is None else "SessionData with data"
            return self._finish(ReaderOutcome(VerificationResult((Check(
                WALLET_REFUSAL, ok, f"{h.name}: the phone answered {got}; it must {h.phone_must}", code="failed"),)),
                session_transcript=self.transcript, wallet_status=sd.status))
        if sd.data is None:
            # 20: the holder ended the session before answering; 10, 11: the wallet could not read ours
            return self._failed(f"wallet ended the session with status {sd.status}", sd.status,
                                HOLDER_ENDED if sd.status == SESSION_STATUS_TERMINATION else SESSION_FAILED)
        try:
            plaintext = self._crypto.decrypt(sd.data)
        except MdocError as exc:
            return self._failed(f"SessionData: {exc}", sd.status)
        session_check = Check(SESSION, True, "SessionData decrypted (AES-256-GCM, SKDevice)")
        if h is not None and h.response_status is not None:
            try:
                response = DeviceResponse.decode(plaintext)
                got = f"a DeviceResponse with status {response.status} and {len(response.documents)} document(s)"
                ok = response.status == h.response_status and not response.documents
            except MdocError as exc:
                got, ok = f"no DeviceResponse ({exc})", False
            return self._finish(ReaderOutcome(VerificationResult((session_check, Check(
                WALLET_REFUSAL, ok, f"{h.name}: the phone answered {got}; it must {h.phone_must}", code="failed"))),
                plaintext, self.transcript, sd.status))
        try:
            result = self.verifier.verify(plaintext, session_transcript=self.transcript,
                                          reader_private_key=self._key)
        except Exception as exc:  # noqa: BLE001 - a verifier bug must not take the reader down
            result = VerificationResult((Check("response_status", False, f"verifier error: {type(exc).__name__}: {exc}",
                                               code="failed"),))
        return self._finish(ReaderOutcome(self._judged(result, session_check), plaintext, self.transcript, sd.status))

    def _judged(self, result: VerificationResult, session_check: Check) -> VerificationResult:
        """The pipeline's ``result`` after the ``session`` check, judged against what was
        asked: ``matches_request`` added, and each disclosed document with what it says of
        each age_over_NN asked (:meth:`_age_answers`)."""
        return VerificationResult((session_check, *result.checks, *self._matches(result)),
                                  tuple(self._age_answers(d) for d in result.documents))

    def _age_answers(self, doc: DisclosedDocument) -> DisclosedDocument:
        """``doc`` with what it says of every age_over_NN this reader asked of its docType
        (ISO/IEC 18013-5 7.2.5, :func:`protocols.mdoc.age_over.read`): the element itself, or
        an age_over_MM that answers it (TRUE above, FALSE below), or nothing, never an
        element that says nothing of NN (age_over_16 = true for 18)."""
        answers = tuple(age_over.read(ns, nn, doc.elements.get(ns, {}))
                        for r in self.requests if r.doc_type == doc.doc_type
                        for ns, ids in r.items.items() for i in ids if (nn := age_over.threshold(i)) is not None)
        return dataclasses.replace(doc, age_over=answers) if answers else doc

    def _matches(self, result: VerificationResult) -> tuple[Check, ...]:
        """Every disclosed document and element was asked for (the mdoc returns nothing else,
        §8.3.2.1.2.2; an element of an alternativeDataElements set of an asked element counts
        as asked), every disclosed document of a requested docType carries at least one
        requested element: IssuerSigned may lawfully omit nameSpaces, but a reader that asked
        for items must not see "valid" over none (specs/mdoc-encoding.md), and with use cases,
        each mandatory one has a document set wholly disclosed. Checked only when documents
        were disclosed (no documents fails other checks already)."""
        if not result.documents:
            return ()
        asked = {r.doc_type: r.allowed() for r in self.requests}
        extra, empty = [], []
        for doc in result.documents:
            items = asked.get(doc.doc_type)
            if items is None:
                extra.append(f"docType {doc.doc_type} not requested")
                continue
            for ns, elements in doc.elements.items():
                instead = self._in_place(doc.doc_type, ns, elements)
                extra += [f"{ns}/{e}" + self._no_answer(doc.doc_type, ns, e, v) for e, v in elements.items()
                          if e not in items.get(ns, ()) and e not in instead]
            if not any(doc.elements.values()):
                empty.append(doc.doc_type)
        if extra:
            return (Check(MATCHES_REQUEST, False, "not requested: " + ", ".join(extra[:10]), code="not_requested"),)
        if empty:
            return (Check(MATCHES_REQUEST, False, "no requested element disclosed in " + ", ".join(empty),
                          code="declined"),)
        returned = {d.doc_type for d in result.documents}
        for n, case in enumerate(self.use_cases):
            if case.mandatory and not any(all(self.requests[i].doc_type in returned for i in ids)
                                          for ids in case.document_sets):
                sets = " or ".join("+".join(self.requests[i].doc_type for i in ids) for ids in case.document_sets)
                return (Check(MATCHES_REQUEST, False, f"mandatory use case {n} not met: none of {sets} disclosed",
                              code="declined"),)
        n = sum(len(e) for d in result.documents for e in d.elements.values())
        return (Check(MATCHES_REQUEST, True, f"{n} disclosed element(s), all requested"),)

    def _asked_ages(self, doc_type: str, namespace: str) -> list[int]:
        return [nn for r in self.requests if r.doc_type == doc_type
                for i in r.items.get(namespace, ()) if (nn := age_over.threshold(i)) is not None]

    def _in_place(self, doc_type: str, namespace: str, elements: Mapping[str, Any]) -> set[str]:
        """The age_over_MM of ``elements`` (one namespace's) that answer an age_over_NN asked
        there and not disclosed itself (ISO/IEC 18013-5 7.2.5: the mdoc returns it in place
        of one it does not hold): for each such NN, the one the reader reads as its answer
        (:func:`protocols.mdoc.age_over.read`); asked, as far as matches_request goes. Any
        other age_over_MM is a disclosure of its own: one that says nothing of NN (age_over_16
        = true for 18), a second beside the nearest, one beside the element asked itself."""
        return {age_over.identifier(a.returned) for nn in self._asked_ages(doc_type, namespace)
                if age_over.identifier(nn) not in elements
                and (a := age_over.read(namespace, nn, elements)).returned is not None}

    def _no_answer(self, doc_type: str, namespace: str, identifier: str, value: object) -> str:
        """Beside an age_over_MM in ``not requested``, when age_over_NN were asked in its
        namespace: that it is not the element that answers them in their place."""
        asked = self._asked_ages(doc_type, namespace)
        if not asked or age_over.threshold(identifier) is None:
            return ""
        return (f" (= {json.dumps(json_value(value))[:40]}: not the element that answers "
                f"{', '.join(age_over.identifier(nn) for nn in asked)} in its place, ISO/IEC 18013-5 7.2.5)")

    def terminate(self) -> bytes:
        self.state = "done"
        self._crypto = None
        return SessionData(status=SESSION_STATUS_TERMINATION).encode()
