"""Verifying a DeviceResponse and readerAuth (ISO/IEC 18013-5:2021 §9.3, §9.1.2-9.1.4).

Every check has a stable name (listed in specs/mdoc-encoding.md) and lands in the result
with pass/fail and a reason. Order follows verify-before-parse: the issuer signature is
checked over the exact MSO bytes before the MSO is parsed; each item is digested before
it is parsed. A reader adds checks (status, Annex B profile) through ``extra_checks`` and
keeps one :class:`MdocVerifier` to reuse verified document-signer chains.
"""

from __future__ import annotations

import base64
import datetime as dt
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import cbor, certs
from protocols.cose import CoseError, CoseKey, Sign1
from protocols.cose.sign1 import verify_sign1
from protocols.mdoc.age_over import AgeAnswer
from protocols.mdoc.chain import (
    EKU_MDL_DS,
    EKU_MDL_READER_AUTH,
    ChainError,
    VerifiedChain,
    verify_chain,
)
from protocols.mdoc.errors import MdocDecodeError, MdocError
from protocols.mdoc.issuer_signed import _ITEM_KEYS, HASHES, IssuerSigned, IssuerSignedItem
from protocols.mdoc.mso import MobileSecurityObject
from protocols.mdoc.request import DeviceRequest
from protocols.mdoc.response import STATUS_OK, DeviceResponse, Document
from protocols.mdoc.session import derive_emac_key, ecdh
from protocols.mdoc.transcript import (
    SessionTranscript,
    device_authentication_bytes,
    reader_authentication_bytes,
)

# Stable check names (specs/mdoc-encoding.md)
RESPONSE_STATUS = "response_status"
ISSUER_CERTIFICATE_CHAIN = "issuer_certificate_chain"
ISSUER_SIGNATURE = "issuer_signature"
MSO_STRUCTURE = "mso_structure"
DOC_TYPE = "doc_type"
VALUE_DIGESTS = "value_digests"
VALIDITY = "validity"
DEVICE_AUTHENTICATION = "device_authentication"
KEY_AUTHORIZATIONS = "key_authorizations"
READER_CERTIFICATE_CHAIN = "reader_certificate_chain"
READER_AUTHENTICATION = "reader_authentication"
#: only with a revocation source (``verify_reader_auth(..., revocation=)``): the reader
#: certificate path of a chain that verified is not revoked, as current lists tell
READER_CERTIFICATE_REVOCATION = "reader_certificate_revocation"

EMacKeyProvider = Callable[[CoseKey, SessionTranscript], bytes]
#: Why a verified reader certificate path must not be trusted: ``(path, anchor, now)``,
#: the path's certificates leaf first without the anchor, gives the reason (a certificate
#: revoked, or no current CRL to tell) or None when it may be. The wallet's answer from the
#: revocation lists it holds (``wallet_sim.reader_crls.ReaderCrls``).
ReaderRevocation = Callable[[Sequence[x509.Certificate], x509.Certificate, dt.datetime], str | None]


#: What a check's ``code`` may be: a closed vocabulary for a script to branch on (the reason
#: is for a person), the one source of the ``code`` enum of the reader's OpenAPI document
#: (reader/schemas.py ``MdocCheck``), of the ``code`` label of its failed-checks metric and of
#: the table in specs/presentation.md 4 ("Codes"). ``ok`` is every passed check and only
#: those; ``failed`` a failure with no more specific code.
CHECK_CODES = (
    "ok", "failed",
    "not_checked",         # not judged: a check it needs failed (that one's code says why), or the reader lacks what it takes
    "session_failed",      # no presentation to judge: the transport, the session's encryption, a wallet error status, an expired session
    "declined",            # the holder released nothing asked for (documentErrors, access_denied): declined or not held, alike on purpose
    "holder_ended",        # the phone ended the session before answering (SessionData status 20, BLE State 0x02 "End")
    "not_requested",       # matches_request: the wallet disclosed what was not asked for
    "malformed",           # bytes that are no DeviceResponse, MSO, item or saved transcript
    "untrusted_issuer",    # no trusted IACA vouches for the document signer (for this docType, by Annex B, at the MSO's signing)
    "tampered",            # what the issuer signed does not match: issuer signature, a digest, the docType, keyAuthorizations
    "device_auth_failed",  # the device key did not authenticate this session: a cloned or replayed presentation
    "expired", "not_yet_valid",  # validity of the MSO
    "revoked", "suspended",      # revocation_status: the status list says INVALID, SUSPENDED
    "ds_revoked",          # ds_revocation: the document signer is on the IACA CRL
    "unavailable",         # no trustworthy status list or IACA CRL (unreachable, stale, untrusted): ask again later
)
_CODES = frozenset(CHECK_CODES)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    reason: str
    #: one of :data:`CHECK_CODES`: given, the code of the check if it failed (a passed check
    #: is always ``ok``); not given, ``failed`` for a failed check
    code: str | None = None

    def __post_init__(self) -> None:
        if self.passed:
            object.__setattr__(self, "code", "ok")
        elif self.code is None:
            object.__setattr__(self, "code", "failed")
        elif self.code == "ok" or self.code not in _CODES:
            _bad_code(self.code)

    def to_json(self) -> dict:
        return {"name": self.name, "passed": self.passed, "reason": self.reason, "code": self.code}

    @classmethod
    def _of(cls, name: str, passed: bool, reason: str, code: str | None = None) -> Check:
        """The verifier's own checks, without the frozen dataclass's ``__init__`` (one
        ``object.__setattr__`` per field; a verification makes eight or more). ``code``:
        taken when the check failed (checked then), ``ok`` when it passed."""
        check = _new(cls)
        fields = check.__dict__
        fields["name"], fields["passed"], fields["reason"] = name, passed, reason
        if passed:
            fields["code"] = "ok"
        elif code is None or code == "ok" or code not in _CODES:
            fields["code"] = "failed" if code is None else _bad_code(code)
        else:
            fields["code"] = code
        return check


def _bad_code(code: str) -> str:
    raise ValueError(f"check code {code!r}: not one of CHECK_CODES, or ok for a failed check")


_new = object.__new__


@dataclass(frozen=True)
class DisclosedDocument:
    doc_type: str
    elements: Mapping[str, Mapping[str, Any]] = field(hash=False)
    #: what the document says of each age_over_NN the reader asked (ISO/IEC 18013-5 7.2.5):
    #: set by a reader that knows its request, never an element of ``elements``
    age_over: tuple[AgeAnswer, ...] = field(default=(), hash=False)

    @classmethod
    def _of(cls, doc_type: str, elements: Mapping[str, Mapping[str, Any]]) -> DisclosedDocument:
        """Without the frozen ``__init__`` (see :meth:`Check._of`)."""
        made = _new(cls)
        fields = made.__dict__
        fields["doc_type"], fields["elements"] = doc_type, elements
        return made

    def to_json(self) -> dict:
        out = {
            "docType": self.doc_type,
            "elements": {ns: {k: json_value(v) for k, v in e.items()} for ns, e in self.elements.items()},
        }
        if self.age_over:
            out["ageOver"] = [a.to_json() for a in self.age_over]
        return out


@dataclass(frozen=True)
class VerificationResult:
    checks: tuple[Check, ...]
    documents: tuple[DisclosedDocument, ...] = ()

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str) -> Check | None:
        """The first check called ``name`` that failed, else the first one of that name."""
        named = [c for c in self.checks if c.name == name]
        return next((c for c in named if not c.passed), named[0] if named else None)

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    @classmethod
    def _of(cls, checks: tuple[Check, ...], documents: tuple[DisclosedDocument, ...]) -> VerificationResult:
        """Without the frozen ``__init__`` (see :meth:`Check._of`)."""
        made = _new(cls)
        fields = made.__dict__
        fields["checks"], fields["documents"] = checks, documents
        return made

    def to_json(self) -> dict:
        return {
            "valid": self.valid,
            "checks": [c.to_json() for c in self.checks],
            "documents": [d.to_json() for d in self.documents],
        }


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_value(value: Any) -> Any:
    """JSON-friendly element values: bytes as standard padded base64, full-date as
    ``YYYY-MM-DD``, tdate as ``YYYY-MM-DDTHH:MM:SSZ``, other tags as {"tag", "value"}, a
    float JSON has no number for (CBOR has: NaN, +-infinity) as the string "NaN",
    "Infinity" or "-Infinity" (as the protobuf JSON mapping writes them)."""
    if type(value) is float and value - value != 0.0:  # NaN or an infinity
        return _NON_FINITE[repr(value)]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return cbor.tdate_text(value) if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, cbor.CBORTag):
        return {"tag": value.tag, "value": json_value(value.value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True)
class DocumentContext:
    """What an extra check sees, after the built-in checks of one document ran."""

    document: Document
    mso: MobileSecurityObject | None
    ds_chain: VerifiedChain | None
    now: dt.datetime
    session_transcript: SessionTranscript | None
    checks: tuple[Check, ...]


DocumentCheck = Callable[[DocumentContext], Check | Iterable[Check]]
ValidityCheck = Callable[[MobileSecurityObject, VerifiedChain | None, dt.datetime, str], Check]
"""``(mso, ds_chain, now, docType) -> the validity check``: a reader's own rule in place of
the built-in one (``validFrom <= now <= validUntil`` and MSO signed within the DS validity)."""


class MdocVerifier:
    """A reusable verifier: trust anchors, extra checks, and a cache of verified DS chains.

    ``validity`` replaces the built-in ``validity`` check by the caller's (a reader with a
    clock skew, say): it is called where the built-in one would run, and its check counts
    like any other for the verdict and for listing the document.

    The cache keeps, per (x5chain bytes), the verified key and the window in which every
    certificate of the path is valid; a hit skips the chain's signature checks when ``now``
    falls in that window.

    A second bounded cache keeps, per exact MobileSecurityObjectBytes, the parsed MSO and
    what follows from it alone (:class:`_MsoEntry`: the digest -> digestID table of each
    namespace, the device public key) and the IssuerSignedItems already digested, matched
    and decoded under it, by their exact bytes; the way a reader sees the same mdoc
    presented again. It is consulted only after the issuer signature over those very bytes
    verified in this call, and it holds no verdict: every item is digested and matched,
    and the docType, validity at ``now``, device authentication over this transcript and
    keyAuthorizations are checked every time (a passed check whose reason follows from the
    MSO is made once and handed out again, once it passed in this call).
    ``cache_chains=False`` turns both caches off. specs/mdoc-encoding.md lists every cache.
    """

    def __init__(
        self,
        trust_anchors: Sequence[x509.Certificate],
        *,
        extra_checks: Sequence[DocumentCheck] = (),
        cache_chains: bool = True,
        validity: ValidityCheck | None = None,
    ) -> None:
        self.trust_anchors = list(trust_anchors)
        self.extra_checks = list(extra_checks)
        self.validity = validity
        self._cache: dict[tuple[bytes, ...], VerifiedChain] | None = {} if cache_chains else None
        self._msos: dict[bytes, _MsoEntry] | None = {} if cache_chains else None
        self._heads: dict[tuple, tuple[VerifiedChain, tuple[Check, ...]]] | None = {} if cache_chains else None

    def _mso(self, doc: Document) -> _MsoEntry:
        """The MSO of issuerAuth's payload, with the verifier's notes on it; call only once
        the issuer signature over that payload verified (raises MdocDecodeError)."""
        payload = doc.issuer_signed.issuer_auth.payload
        cache = self._msos
        if cache is not None and payload is not None:
            hit = cache.get(payload)
            if hit is not None:
                hit._keep = True  # seen again: from now on it keeps items and passed checks
                return hit
        mso = doc.issuer_signed.mso()
        if cache is not None and payload is not None:
            # the MSO just parsed is ours alone: made read-only where it stands, and kept
            # cold (nothing noted beyond the parse) until it comes back: most MSOs a reader
            # sees come once, and notes it would never read again cost a fresh holder
            frozen = mso._frozen_in_place()
            if frozen is not None:
                if len(cache) >= 1024:
                    cache.clear()
                entry = cache[payload] = _MsoEntry(frozen, keep_items=False)
                return entry
        return _MsoEntry(mso, keep_items=False)

    # -- document signer chain --------------------------------------------------------

    def _ds_chain(self, ders: list[bytes], now: dt.datetime) -> VerifiedChain:
        key = tuple(ders)
        if self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None and hit.not_before <= now <= hit.not_after:
                return hit
        chain = verify_chain(ders, self.trust_anchors, now, eku=EKU_MDL_DS)
        if self._cache is not None:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = chain
        return chain

    # -- the pipeline ---------------------------------------------------------------

    def verify(
        self,
        response: bytes | DeviceResponse,
        *,
        session_transcript: SessionTranscript | bytes | None,
        now: dt.datetime,
        reader_private_key: ec.EllipticCurvePrivateKey | None = None,
        emac_key_provider: EMacKeyProvider | None = None,
    ) -> VerificationResult:
        """Raises :class:`MdocDecodeError` only when ``response`` is not a DeviceResponse at all."""
        if now.tzinfo is None:
            raise MdocError("now must be an aware datetime")
        dr = response if isinstance(response, DeviceResponse) else DeviceResponse.decode(response)
        st = None if session_transcript is None else SessionTranscript.coerce(session_transcript)
        checks: list[Check] = []
        if dr.status == STATUS_OK and dr.documents:
            n = len(dr.documents)
            checks.append(_STATUS_OK[n] if n < len(_STATUS_OK) else
                          Check._of(RESPONSE_STATUS, True, f"status 0, {n} document(s)"))
        else:
            errs = ", ".join(f"{k}: {v}" for e in dr.document_errors for k, v in e.items())
            # an error status that came with documents anyway: still refused, and not as "no documents"
            what = f" (an error) with {len(dr.documents)} document(s)" if dr.documents else ", no documents"
            checks.append(Check(RESPONSE_STATUS, False, f"status {dr.status}{what}" + (f"; documentErrors {errs}" if errs else ""),
                                code=_no_documents_code(dr.status)))
        docs: list[DisclosedDocument] = []
        for doc in dr.documents:
            doc_checks, disclosed = self._document(doc, st, now, reader_private_key, emac_key_provider)
            checks.extend(doc_checks)
            if disclosed is not None and all([c.passed for c in doc_checks]):
                docs.append(disclosed)
        return VerificationResult._of(tuple(checks), tuple(docs))

    def verify_issuer_signed(
        self,
        issuer_signed: bytes | IssuerSigned,
        *,
        now: dt.datetime,
        doc_type: str | None = None,
    ) -> VerificationResult:
        """Verify an IssuerSigned on its own, as an issuer hands it to a wallet (ISO 18013-5
        issuance, or OpenID4VCI's ``mso_mdoc`` credential once base64url-decoded): DS chain,
        issuer signature, MSO structure, docType, every item's digest and validity at
        ``now``, and the caller's extra checks. There is no presentation, so there is no
        device authentication to check and no ``device_authentication`` check in the result:
        VALID says the credential is sound as issued, not that a holder presented it.

        ``doc_type`` is the docType the caller expects; without it the MSO's docType is taken
        and the ``doc_type`` check says so. Raises :class:`MdocDecodeError` only when the
        bytes are not an IssuerSigned at all."""
        if now.tzinfo is None:
            raise MdocError("now must be an aware datetime")
        signed = issuer_signed if isinstance(issuer_signed, IssuerSigned) else IssuerSigned.from_cbor(issuer_signed)
        expected = doc_type
        if expected is None:
            try:  # the MSO's own docType, read before its signature is checked: only compared with itself
                expected = signed.mso().doc_type
            except MdocError:
                expected = ""  # mso_structure fails below and says why
        doc = IssuerSignedDocument(expected, signed)
        checks, disclosed = self._document(doc, None, now, None, None, issuer_only=True)
        if doc_type is None:
            checks = [Check(DOC_TYPE, True, f"{expected!r}, the MSO's (no docType given to compare)")
                      if c.name == DOC_TYPE and c.passed else c for c in checks]
        docs = (disclosed,) if disclosed is not None and all(c.passed for c in checks) else ()
        return VerificationResult._of(tuple(checks), docs)

    def _document(self, doc, st, now, reader_private_key, emac_key_provider, issuer_only=False):
        checks: list[Check] = []
        pre = f"{doc.doc_type}: " if doc.doc_type else ""

        def add(name: str, passed: bool, reason: str, code: str | None = None) -> bool:
            checks.append(Check._of(name, passed, pre + reason, code))
            return passed

        def skip(*names: str, because: str) -> None:
            for n in names:
                add(n, False, f"not checked: {because}", code="not_checked")

        auth = doc.issuer_signed.issuer_auth
        chain = None
        try:
            chain = self._ds_chain(auth.x5chain, now)
        except (ChainError, CoseError) as exc:
            add(ISSUER_CERTIFICATE_CHAIN, False, str(exc), code="untrusted_issuer")
        # The signature is checked with the DS key even when the chain failed, to report both.
        # (A chain that verified is reported with the checks after it, in the same order.)
        ds_key = chain.public_key if chain else _leaf_key(auth)
        later = _AFTER_SIGNATURE_ISSUER_ONLY if issuer_only else _AFTER_SIGNATURE
        # key_authorizations is reported only when it applies, which needs the MSO
        if ds_key is None:
            add(ISSUER_SIGNATURE, False, "no usable document signer key in x5chain", code="untrusted_issuer")
            skip(*later, because="issuer signature unverifiable")
            return checks, None
        try:
            verify_sign1(auth, ds_key)
        except CoseError as exc:
            if chain is not None:
                add(ISSUER_CERTIFICATE_CHAIN, True, chain.description)
            add(ISSUER_SIGNATURE, False, str(exc), code="tampered")
            skip(*later, because="issuer signature failed")
            return checks, None
        try:
            entry = self._mso(doc)
        except MdocDecodeError as exc:
            if chain is not None:
                add(ISSUER_CERTIFICATE_CHAIN, True, chain.description)
            add(ISSUER_SIGNATURE, True, f"alg {auth.alg} over MobileSecurityObjectBytes")
            add(MSO_STRUCTURE, False, str(exc), code="malformed")
            skip(*later[1:], because="MSO unreadable")
            return checks, None
        mso = entry.mso
        checks.extend(entry.head(doc.doc_type, pre, auth, chain, self._heads))
        elements, count = self._digests(doc, entry, add)
        if elements is not None:
            checks.append(entry.passed((VALUE_DIGESTS, pre, count, len(elements)), VALUE_DIGESTS, lambda: pre + (
                f"{count} item(s) in {len(elements)} namespace(s) match ({mso.digest_algorithm})" if elements
                else "no issuer-signed item disclosed (IssuerSigned without nameSpaces)")))
        if self.validity is None:
            self._validity(entry, chain, now, add)
        else:
            checks.append(self.validity(mso, chain, now, doc.doc_type))
        if not issuer_only:
            self._device_auth(doc, entry, st, reader_private_key, emac_key_provider, add, checks, pre)
        key_authorizations_check(doc, mso, add)
        if self.extra_checks:
            ctx = object.__new__(DocumentContext)  # the frozen __init__ without its setattr per field
            ctx.__dict__.update(document=doc, mso=mso, ds_chain=chain, now=now, session_transcript=st,
                                checks=tuple(checks))
            for extra in self.extra_checks:
                out = extra(ctx)
                checks.extend([out] if isinstance(out, Check) else list(out))
        return checks, (DisclosedDocument._of(doc.doc_type, elements) if elements is not None else None)

    @staticmethod
    def _digests(doc: Document, entry: _MsoEntry, add) -> tuple[dict | None, int]:
        """Every item of every namespace is digested (over its tagged bytes, §9.1.2.5) and
        matched to a digestID of the MSO before any item of that namespace is decoded; the
        matched items are then decoded in one strict pass (cbor.loads_many) and checked, or
        taken from those already decoded under this very MSO (same bytes, :class:`_MsoEntry`).
        The elements and their count; (None, 0) once a failed ``value_digests`` is reported
        (the caller reports it passed)."""
        mso = entry.mso
        hash_fn = HASHES[mso.digest_algorithm]
        name_spaces = doc.issuer_signed.name_spaces
        if not name_spaces:
            return {}, 0
        elements: dict[str, dict[str, Any]] = {}
        count = 0
        head, heads = cbor.bstr_head, cbor.TAG24_HEADS
        for ns, raws in name_spaces.items():
            by_digest = entry.table(ns)
            if by_digest is None:
                add(VALUE_DIGESTS, False, f"namespace {ns!r} has no digests in the MSO", code="tampered")
                return None, 0
            digests = [hash_fn((heads[len(raw)] if len(raw) < 256 else b"\xd8\x18" + head(len(raw))) + raw).digest()
                       for raw in raws]
            ids = list(map(by_digest.get, digests))
            if None in ids:
                add(VALUE_DIGESTS, False, f"{ns}[{ids.index(None)}]: digest matches no valueDigest of the MSO",
                    code="tampered")
                return None, 0
            out = entry.known_items(ns, raws, ids)
            if out is None:
                out = _decode_items(entry, ns, raws, ids, add)
                if out is None:
                    return None, 0
            count += len(out)
            elements[ns] = out
        return elements, count

    @staticmethod
    def _validity(entry: _MsoEntry, chain: VerifiedChain | None, now: dt.datetime, add) -> None:
        v = entry.mso.validity_info
        why = v.order_error()  # before now is judged against a window that is none
        if why is not None:
            add(VALIDITY, False, why, code="malformed")
            return
        if not v.valid_from <= now <= v.valid_until:
            add(VALIDITY, False, f"{cbor.tdate_text(now)} outside validFrom {cbor.tdate_text(v.valid_from)} .. validUntil {cbor.tdate_text(v.valid_until)}",
                code="not_yet_valid" if now < v.valid_from else "expired")
            return
        if chain is not None and not chain.leaf_validity[0] <= v.signed <= chain.leaf_validity[1]:
            add(VALIDITY, False, f"MSO signed {cbor.tdate_text(v.signed)} outside the DS certificate validity",
                code="untrusted_issuer")
            return
        within = entry.within
        if within is None:
            within = entry.within = f" within {cbor.tdate_text(v.valid_from)} .. {cbor.tdate_text(v.valid_until)}"
        add(VALIDITY, True, cbor.tdate_text(now) + within)

    @staticmethod
    def _device_auth(doc, entry, st, reader_private_key, emac_key_provider, add, checks, pre) -> None:
        if st is None:
            add(DEVICE_AUTHENTICATION, False, "no SessionTranscript given: device authentication cannot be checked",
                code="not_checked")
            return
        signed = doc.device_signed
        detached = device_authentication_bytes(st, doc.doc_type, signed.name_spaces_bytes)
        device_key = entry.mso.device_key_info.device_key
        try:
            if signed.device_auth.device_signature is not None:
                sig = signed.device_auth.device_signature
                verify_sign1(sig, entry.device_public_key(), detached=detached)
                checks.append(entry.passed((DEVICE_AUTHENTICATION, pre, sig.protected_bytes), DEVICE_AUTHENTICATION,
                                           lambda: f"{pre}deviceSignature alg {sig.alg} by the MSO device key"))
                return
            mac = signed.device_auth.device_mac
            if emac_key_provider is not None:
                emac_key = emac_key_provider(device_key, st)
            elif reader_private_key is not None:
                emac_key = derive_emac_key(ecdh(reader_private_key, device_key), st)
            else:
                add(DEVICE_AUTHENTICATION, False, "deviceMac needs the reader's ephemeral private key", code="not_checked")
                return
            mac.verify(emac_key, detached=detached)
            add(DEVICE_AUTHENTICATION, True, "deviceMac (HMAC 256/256) with EMacKey from the MSO device key")
        except (CoseError, MdocError) as exc:
            add(DEVICE_AUTHENTICATION, False, str(exc), code="device_auth_failed")


def key_authorizations_apply(doc: Document, mso: MobileSecurityObject) -> bool:
    """Whether :func:`key_authorizations_check` reports on this document: keyAuthorizations
    is present or something is device-signed (DeviceNameSpaces not the empty map)."""
    if doc.device_signed is None:  # an IssuerSigned on its own: nothing is device-signed yet
        return False
    return mso.device_key_info.key_authorizations is not None or doc.device_signed.name_spaces_bytes != b"\xa0"


def key_authorizations_check(doc: Document, mso: MobileSecurityObject, add) -> None:
    """``key_authorizations`` (§9.1.2.4): every element in DeviceNameSpaces must be authorized
    by deviceKeyInfo.keyAuthorizations, by its namespace (``nameSpaces``) or by name
    (``dataElements``); with no keyAuthorizations the device key is authorized for nothing.
    Reported when keyAuthorizations is present or anything is device-signed; ``add(name,
    passed, reason)`` as in :meth:`MdocVerifier._document`."""
    if not key_authorizations_apply(doc, mso):
        return
    auth = mso.device_key_info.key_authorizations
    try:
        signed = doc.device_signed.name_spaces()
    except MdocError as exc:
        add(KEY_AUTHORIZATIONS, False, f"DeviceNameSpaces unreadable: {exc}", code="malformed")
        return
    if auth is None:
        if any(signed.values()):
            ns, items = next((ns, items) for ns, items in signed.items() if items)
            add(KEY_AUTHORIZATIONS, False,
                f"device-signed {ns}/{next(iter(items))} but the MSO has no keyAuthorizations", code="tampered")
        else:
            add(KEY_AUTHORIZATIONS, True, "nothing device-signed, no keyAuthorizations")
        return
    whole = auth.get("nameSpaces", ())
    elements = auth.get("dataElements", {})
    if (set(auth) - {"nameSpaces", "dataElements"}
            or not isinstance(whole, list | tuple) or not all(type(n) is str for n in whole)
            or not isinstance(elements, Mapping)
            or not all(type(n) is str and isinstance(ids, list | tuple) and all(type(i) is str for i in ids)
                       for n, ids in elements.items())):
        add(KEY_AUTHORIZATIONS, False, "keyAuthorizations malformed (expected {? nameSpaces: [+ tstr], "
            "? dataElements: {+ tstr => [+ tstr]}})", code="malformed")
        return
    for ns, items in signed.items():
        for ident in items:
            if ns not in whole and ident not in elements.get(ns, ()):
                add(KEY_AUTHORIZATIONS, False, f"device-signed {ns}/{ident} not authorized for the device key",
                    code="tampered")
                return
    n = sum(map(len, signed.values()))
    add(KEY_AUTHORIZATIONS, True, f"{n} device-signed element(s) authorized")


def _no_documents_code(status: int) -> str:
    """``response_status`` without documents: ``declined`` when the wallet answered status 0
    (OK: it released nothing asked, each docType in documentErrors, ErrorCode 0 "data not
    returned", §8.3.2.1.2.3; a docType refused and one not held alike, so that a reader does
    not learn what a holder lacks), ``session_failed`` for a wallet's error status (10, 11, 12)."""
    return "declined" if status == STATUS_OK else "session_failed"


#: The code of a failed readerAuth check (the wallet's judgement of a reader, not part of a
#: reader's verdict: the vocabulary has no finer code for it).
_READER_SIDE = "failed"

_AFTER_SIGNATURE = (MSO_STRUCTURE, DOC_TYPE, VALUE_DIGESTS, VALIDITY, DEVICE_AUTHENTICATION)
"""The checks reported "not checked" when the issuer signature cannot be verified."""
_AFTER_SIGNATURE_ISSUER_ONLY = _AFTER_SIGNATURE[:-1]

_STATUS_OK = (None, *(Check(RESPONSE_STATUS, True, f"status 0, {n} document(s)") for n in range(1, 8)))
"""The passed ``response_status`` check for 1..7 documents (immutable, handed out again)."""

_IMMUTABLE = frozenset({str, bytes, int, bool, float, type(None), dt.date, dt.datetime})
"""Element value types an :class:`_MsoEntry` may hand out again (shared, so never mutable)."""
_ITEM_MAX = 1024
"""Largest IssuerSignedItem (bytes) an :class:`_MsoEntry` keeps decoded (a portrait is
decoded at each verification: mostly one copy of its bytes)."""
_ITEMS_MAX = 16 * 1024
"""Bytes of IssuerSignedItems one :class:`_MsoEntry` keeps (1024 entries: 16 MiB at most)."""


class _MsoEntry:
    """The verifier's notes on one MobileSecurityObjectBytes whose issuer signature verified.

    All of it is a pure function of those bytes, or of item bytes checked against them: the
    parsed MSO, the digest -> digestID table of each of its namespaces, the device public
    key, and (``keep_items``) the IssuerSignedItems that were digested, matched to this MSO
    and decoded into the usual shape, by their exact bytes, only small ones with an
    immutable elementValue, at most ``_ITEMS_MAX`` bytes, and passed checks whose reasons
    follow from this MSO (:meth:`head`, :meth:`passed`). Nothing here is a verdict: every
    item is digested and matched, and every check runs, at every call."""

    __slots__ = ("mso", "_tables", "_items", "_item_bytes", "_keep", "_device_key", "_passed", "_heads", "within")

    def __init__(self, mso: MobileSecurityObject, *, keep_items: bool) -> None:
        self.mso = mso
        self._tables: dict[str, dict[bytes, int]] = {}
        self._items: dict[str, dict[bytes, tuple[int, str, Any]]] = {}
        self._item_bytes = 0
        self._keep = keep_items
        self._device_key: ec.EllipticCurvePublicKey | None = None
        self._passed: dict[tuple, Check] = {}
        self._heads: dict[tuple[str, bytes], tuple[VerifiedChain, tuple[Check, ...]]] = {}
        self.within: str | None = None
        """The built-in validity reason after ``now`` (`` within validFrom .. validUntil``)."""

    def passed(self, key: tuple, name: str, reason: Callable[[], str]) -> Check:
        """The passed check ``name`` whose reason is ``reason()``, a pure function of ``key``
        and this MSO: made once per key (at most 32 per MSO) and then handed out again (a
        Check is immutable). Call it only once the check has passed in this verification."""
        hit = self._passed.get(key)
        if hit is None:
            hit = Check._of(name, True, reason())
            if self._keep and len(self._passed) < 32:
                self._passed[key] = hit
        return hit

    def head(self, doc_type: str, pre: str, auth: Sign1, chain: VerifiedChain | None,
             shared: dict[tuple, tuple[VerifiedChain, tuple[Check, ...]]] | None = None) -> tuple[Check, ...]:
        """The checks reported once the issuer signature verified and this MSO parsed:
        ``issuer_certificate_chain`` (when ``chain`` verified), ``issuer_signature``,
        ``mso_structure`` and ``doc_type`` (docType compared here, each time). Their reasons
        are a pure function of the docType, issuerAuth's protected header, the chain object
        and this MSO: the checks are made once per (docType, protected header, chain) (at
        most 8 per MSO) and handed out again; with the verifier's ``shared`` table, once per
        (docType, alg, MSO version, digest algorithm and docType) for the same chain object,
        across MSOs (the reasons read nothing else)."""
        mso = self.mso
        same = doc_type == mso.doc_type
        key = (doc_type, auth.protected_bytes)
        hit = self._heads.get(key)
        if hit is not None and hit[0] is chain and chain is not None and hit[1][-1].passed is same:
            return hit[1]
        alg = auth.alg
        wide = None
        if shared is not None and chain is not None and type(alg) is int and type(doc_type) is str:
            # the same reasons for every MSO of this docType, alg, version, digest algorithm
            # and chain object: a new MSO from a known issuer takes the checks made before
            wide = (doc_type, alg, mso.version, mso.digest_algorithm, mso.doc_type)
            got = shared.get(wide)
            if got is not None and got[0] is chain:
                if self._keep and (hit is not None or len(self._heads) < 8):
                    self._heads[key] = got
                return got[1]
        made = (Check._of(ISSUER_SIGNATURE, True, f"{pre}alg {alg} over MobileSecurityObjectBytes"),
                Check._of(MSO_STRUCTURE, True, f"{pre}version {mso.version}, {mso.digest_algorithm}"),
                Check._of(DOC_TYPE, same,
                          f"{pre}document {doc_type!r} {'==' if same else '!='} MSO {mso.doc_type!r}", "tampered"))
        if chain is None:
            return made
        made = (Check._of(ISSUER_CERTIFICATE_CHAIN, True, pre + chain.description), *made)
        if wide is not None:
            if len(shared) >= 64:
                shared.clear()
            shared[wide] = (chain, made)
        if self._keep and (hit is not None or len(self._heads) < 8):
            self._heads[key] = (chain, made)
        return made

    def table(self, ns: str) -> dict[bytes, int] | None:
        """digest -> digestID of namespace ``ns`` (None when the MSO has no digests for it)."""
        hit = self._tables.get(ns)
        if hit is None:
            expected = self.mso.value_digests.get(ns)
            if not expected:
                return None
            hit = self._tables[ns] = {d: i for i, d in expected.items()}  # one per MSO namespace
        return hit

    def device_public_key(self) -> ec.EllipticCurvePublicKey:
        """The MSO device key as a ``cryptography`` key (CoseKeyError when off the curve)."""
        key = self._device_key
        if key is None:
            key = self._device_key = self.mso.device_key_info.device_key.public_key()
        return key

    def known_items(self, ns: str, raws: Sequence[bytes], ids: list[int]) -> dict | None:
        """``{elementIdentifier: elementValue}`` of these items, already digested and matched
        (``ids``), when all of them are in the usual shape and agree with ``ids``, taking the
        ones decoded earlier under this MSO (looked up by their exact bytes) and decoding the
        others; None at any doubt, and then the general path decides and explains."""
        known = self._items.get(ns)
        if known is None:
            return None
        hits = [known.get(raw) if len(raw) <= _ITEM_MAX else None for raw in raws]
        missing = None
        if None in hits:
            missing = [n for n, h in enumerate(hits) if h is None]
            try:
                values = [cbor.loads(raws[missing[0]])] if len(missing) == 1 else cbor.loads_many(
                    [raws[n] for n in missing])
            except cbor.CborDecodeError:
                return None
            for n, v in zip(missing, values, strict=True):
                if not (type(v) is dict and v.keys() == _ITEM_KEYS and type(v["digestID"]) is int
                        and v["digestID"] == ids[n] and type(v["random"]) is bytes
                        and type(v["elementIdentifier"]) is str):
                    return None
                hits[n] = (ids[n], v["elementIdentifier"], v["elementValue"])
        # each hit carries ids[n]: a kept item was kept under the digestID this MSO's table
        # gives its bytes, and a repeated digestID is the same bytes, so the same identifier,
        # which the count below catches
        out = {h[1]: h[2] for h in hits}
        if len(out) != len(hits):
            return None
        if missing and any([len(raws[n]) <= _ITEM_MAX for n in missing]):
            self.keep(ns, [raws[n] for n in missing], [hits[n] for n in missing])
        return out

    def keep(self, ns: str, raws: list[bytes], items: list[tuple[int, str, Any]]) -> None:
        """Note items ``(digestID, identifier, value)``, digested and matched to this MSO, by
        their exact bytes ``raws``."""
        if not self._keep:
            return
        known = self._items.get(ns)
        if known is None:
            known = self._items[ns] = {}  # ns has digests in this MSO: bounded by it
        for raw, item in zip(raws, items, strict=True):
            size = len(raw)
            if (size <= _ITEM_MAX and type(item[2]) in _IMMUTABLE and raw not in known
                    and self._item_bytes + size <= _ITEMS_MAX):
                known[raw] = item
                self._item_bytes += size


_ITEM_FIELDS = operator.itemgetter("digestID", "random", "elementIdentifier", "elementValue")
_DICT, _FOUR, _INT, _BYTES, _STR = {dict}, {4}, {int}, {bytes}, {str}


def _decode_items(entry: _MsoEntry, ns: str, raws: Sequence[bytes], ids: list[int], add) -> dict | None:
    """The general path of :meth:`MdocVerifier._digests` for one namespace whose items are
    digested and matched (``ids``): decode them, check them, explain any failure (None)."""
    try:
        values = cbor.loads_many(raws)
    except cbor.CborDecodeError:
        values = None
    if values is not None and {*map(type, values)} == _DICT and {*map(len, values)} == _FOUR:
        # the usual case, checked column by column (maps of four entries holding the four
        # keys: exactly _ITEM_KEYS), each in one pass at C speed; any doubt goes to the item
        # by item loop below, which decides and explains
        try:
            item_ids, randoms, idents, element_values = zip(*map(_ITEM_FIELDS, values), strict=True)
        except KeyError:
            pass
        else:
            if (list(item_ids) == ids and {*map(type, item_ids)} == _INT and len(set(ids)) == len(ids)
                    and {*map(type, randoms)} == _BYTES and {*map(type, idents)} == _STR):
                out = dict(zip(idents, element_values, strict=True))
                if len(out) == len(values):
                    if entry._keep:
                        entry.keep(ns, list(raws), list(zip(ids, idents, element_values, strict=True)))
                    return out
    out: dict[str, Any] = {}
    seen_ids: set[int] = set()
    for n, digest_id in enumerate(ids):
        v = values[n] if values is not None else None
        if (type(v) is dict and v.keys() == _ITEM_KEYS and type(v["digestID"]) is int
                and type(v["random"]) is bytes and type(v["elementIdentifier"]) is str):
            item_id, ident, value = v["digestID"], v["elementIdentifier"], v["elementValue"]
        else:  # anything unusual: the item parser decides and explains
            try:
                item = (IssuerSignedItem.decode(raws[n]) if values is None
                        else IssuerSignedItem._from_value(v, raws[n]))
            except MdocDecodeError as exc:
                add(VALUE_DIGESTS, False, f"{ns}[{n}]: {exc}", code="malformed")
                return None
            item_id, ident, value = item.digest_id, item.element_identifier, item.element_value
        if item_id != digest_id or digest_id in seen_ids or ident in out:
            add(VALUE_DIGESTS, False, f"{ns}/{ident}: digestID {item_id} mismatched or repeated", code="tampered")
            return None
        seen_ids.add(digest_id)
        out[ident] = value
    return out


def chain_path(ders: Sequence[bytes], anchor: x509.Certificate) -> list[x509.Certificate]:
    """The certificates of a chain that :func:`verify_chain` accepted under ``anchor``, leaf
    first, up to the one ``anchor`` issued (a copy of the anchor sent along is left out)."""
    path = []
    for der in ders:
        cert = certs.load_der(der)
        if cert == anchor:
            break
        path.append(cert)
        if cert.issuer == anchor.subject:
            break
    return path


def _leaf_key(auth: Sign1) -> ec.EllipticCurvePublicKey | None:
    """The EC key of the first certificate of ``auth``'s x5chain; None when there is none to
    read (no x5chain, a malformed one, a certificate that does not parse, not EC)."""
    try:
        key = certs.public_key_of(certs.load_der(auth.x5chain[0]))
    except (certs.CertificateParseError, CoseError, IndexError):
        return None
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


@dataclass(frozen=True)
class IssuerSignedDocument:
    """An IssuerSigned standing where a Document would, for
    :meth:`MdocVerifier.verify_issuer_signed` and the extra checks it runs: no DeviceSigned
    (``device_signed`` is None) and no errors."""

    doc_type: str
    issuer_signed: IssuerSigned
    device_signed: None = None
    errors: None = None


def verify_issuer_signed(
    issuer_signed: bytes | IssuerSigned,
    *,
    trust_anchors: Sequence[x509.Certificate],
    now: dt.datetime,
    doc_type: str | None = None,
    extra_checks: Sequence[DocumentCheck] = (),
) -> VerificationResult:
    """One-shot :meth:`MdocVerifier.verify_issuer_signed` (no chain cache)."""
    return MdocVerifier(trust_anchors, extra_checks=extra_checks, cache_chains=False).verify_issuer_signed(
        issuer_signed, now=now, doc_type=doc_type)


def verify_device_response(
    response_bytes: bytes | DeviceResponse,
    *,
    trust_anchors: Sequence[x509.Certificate],
    session_transcript: SessionTranscript | bytes | None,
    now: dt.datetime,
    reader_private_key: ec.EllipticCurvePrivateKey | None = None,
    emac_key_provider: EMacKeyProvider | None = None,
    extra_checks: Sequence[DocumentCheck] = (),
) -> VerificationResult:
    """One-shot verification (no chain cache); see :class:`MdocVerifier`."""
    return MdocVerifier(trust_anchors, extra_checks=extra_checks, cache_chains=False).verify(
        response_bytes,
        session_transcript=session_transcript,
        now=now,
        reader_private_key=reader_private_key,
        emac_key_provider=emac_key_provider,
    )


def verify_reader_auth(
    device_request: bytes | DeviceRequest,
    *,
    session_transcript: SessionTranscript | bytes,
    trust_anchors: Sequence[x509.Certificate],
    now: dt.datetime,
    revocation: ReaderRevocation | None = None,
) -> VerificationResult:
    """Reader authentication of a DeviceRequest: each readerAuthAll signature (second
    edition) over ReaderAuthenticationAllBytes, and each DocRequest's readerAuth (§9.1.4)
    over its ReaderAuthenticationBytes; for each, the chain to a reader CA and the
    signature. A DocRequest without readerAuth fails both checks, unless readerAuthAll
    covers it. With ``revocation``, each chain that verified is also judged by it:
    ``reader_certificate_revocation``, failed with its reason when it refuses the path
    (revoked, or no current list to tell)."""
    req = device_request if isinstance(device_request, DeviceRequest) else DeviceRequest.decode(device_request)
    st = SessionTranscript.coerce(session_transcript)
    checks: list[Check] = []
    if req.reader_auth_all:
        detached = req.reader_authentication_all_bytes(st)
        for i, auth in enumerate(req.reader_auth_all):
            checks += _reader_signature(auth, detached, f"readerAuthAll[{i}]: ", "ReaderAuthenticationAllBytes",
                                        trust_anchors, now, revocation)
    for doc in req.doc_requests:
        pre = f"{doc.items_request.doc_type}: "
        if doc.reader_auth is None:
            if not req.reader_auth_all:
                checks += [Check(n, False, pre + "no readerAuth", code=_READER_SIDE)
                           for n in (READER_CERTIFICATE_CHAIN, READER_AUTHENTICATION)]
            continue
        checks += _reader_signature(doc.reader_auth, reader_authentication_bytes(st, doc.items_request.raw), pre,
                                    "ReaderAuthenticationBytes", trust_anchors, now, revocation)
    return VerificationResult(tuple(checks))


def check_reader_chain(x5chain: Sequence[bytes], trust_anchors: Sequence[x509.Certificate], now: dt.datetime,
                       revocation: ReaderRevocation | None = None, *,
                       pre: str = "") -> tuple[list[Check], VerifiedChain | None]:
    """The certificate path of a reader that signs, by readerAuth (§9.1.4) or an OpenID4VP
    request object (whose verifier's certificate is its reader certificate): ``x5chain``
    (leaf first) to one of ``trust_anchors``, valid at ``now``, the leaf with the extended
    key usage mdlReaderAuth 1.0.18013.5.1.6 (Annex B.1.7); with ``revocation``, the path
    judged by it once it verified. The checks ``reader_certificate_chain`` (and
    ``reader_certificate_revocation``), each reason after ``pre``; the verified chain, or
    None when it is not one."""
    try:
        chain = verify_chain(x5chain, trust_anchors, now, eku=EKU_MDL_READER_AUTH)
    except ChainError as exc:
        return [Check(READER_CERTIFICATE_CHAIN, False, pre + str(exc), code=_READER_SIDE)], None
    checks = [Check(READER_CERTIFICATE_CHAIN, True, pre + chain.leaf.subject.rfc4514_string())]
    if revocation is not None:
        why = revocation(chain_path(x5chain, chain.anchor), chain.anchor, now)
        checks.append(Check(READER_CERTIFICATE_REVOCATION, why is None,
                            pre + (why or "not on a current revocation list of its CA"), code=_READER_SIDE))
    return checks, chain


def _reader_signature(auth: Sign1, detached: bytes, pre: str, what: str,
                      trust_anchors: Sequence[x509.Certificate], now: dt.datetime,
                      revocation: ReaderRevocation | None) -> list[Check]:
    try:
        checks, chain = check_reader_chain(auth.x5chain, trust_anchors, now, revocation, pre=pre)
    except CoseError as exc:  # no x5chain to read
        checks, chain = [Check(READER_CERTIFICATE_CHAIN, False, pre + str(exc), code=_READER_SIDE)], None
    key = chain.public_key if chain is not None else _leaf_key(auth)
    if key is None:
        checks.append(Check(READER_AUTHENTICATION, False, pre + "no usable reader key", code=_READER_SIDE))
        return checks
    try:
        auth.verify(key, detached=detached)
        checks.append(Check(READER_AUTHENTICATION, True, pre + f"alg {auth.alg} over {what}"))
    except CoseError as exc:
        checks.append(Check(READER_AUTHENTICATION, False, pre + str(exc), code=_READER_SIDE))
    return checks
