"""OCSP (RFC 6960), pure: parse a request, build a signed basic response, `respond`.

* Requests (4.1.1): one or more CertIDs hashed with SHA-1 or SHA-256, the nonce extension
  (RFC 8954: 1..32 octets) echoed in the response; request signatures are not checked
  (no JPKI rule requires signed requests); an unknown *critical* request extension is refused.
* Responses (4.2.1): signed by a delegated responder (4.2.2.2) whose certificate is issued by
  the CA of every CertID and is included in `certs`; ResponderID byKey; good / revoked (time,
  reason, and the invalidityDate singleExtension when the revocation has one: RFC 6960 4.4,
  the CRL entry extension of RFC 5280 5.3.2) / unknown; producedAt = thisUpdate = `now`,
  nextUpdate = now + responder.validity.
* `respond` never raises: an unparsable request gets `malformedRequest`, a CertID of a CA we do
  not answer for `unauthorized`, a failing lookup or signer `internalError` (4.2.1).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asn1crypto import algos as asn1algos
from asn1crypto import core as asn1core
from asn1crypto import ocsp as asn1ocsp
from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ._signing import IssuerKey, hash_for, sign_bytes
from .crl import RevocationReason
from .errors import JpkiError, OcspRequestError
from .profile import KeyType

HASH_LENGTHS = {"sha1": 20, "sha256": 32}
MAX_CERT_IDS = 16
# What asn1crypto may raise on hostile bytes; turned into OcspRequestError at the boundary.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                  UnicodeError, RecursionError, NotImplementedError)


def _digest(algorithm: str, data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA1() if algorithm == "sha1" else hashes.SHA256())  # noqa: S303
    h.update(data)
    return h.finalize()


@dataclass(frozen=True)
class CertId:
    """RFC 6960 4.1.1 CertID."""

    hash_algorithm: str  # "sha1" | "sha256"
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int

    @classmethod
    def for_certificate(cls, cert: x509.Certificate, issuer: x509.Certificate,
                        hash_algorithm: str = "sha256") -> CertId:
        name_hash, key_hash = issuer_hashes(issuer, hash_algorithm)
        return cls(hash_algorithm, name_hash, key_hash, cert.serial_number)

    def to_asn1(self) -> asn1ocsp.CertId:
        return asn1ocsp.CertId({
            "hash_algorithm": {"algorithm": self.hash_algorithm},
            "issuer_name_hash": self.issuer_name_hash,
            "issuer_key_hash": self.issuer_key_hash,
            "serial_number": self.serial,
        })


def issuer_hashes(issuer: x509.Certificate, hash_algorithm: str) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA certificate: hash of the DER subject, and of
    the subjectPublicKey BIT STRING value (RFC 6960 4.1.1)."""
    parsed = asn1x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
    subject_der = parsed["tbs_certificate"]["subject"].dump()
    key_bits = parsed["tbs_certificate"]["subject_public_key_info"]["public_key"].contents[1:]
    return _digest(hash_algorithm, subject_der), _digest(hash_algorithm, key_bits)


@dataclass(frozen=True)
class OcspRequest:
    cert_ids: tuple[CertId, ...]
    nonce: bytes | None


def parse_request(der: bytes) -> OcspRequest:
    """Parse a DER OCSPRequest; OcspRequestError says what was wrong."""
    if not isinstance(der, bytes | bytearray) or not der:
        raise OcspRequestError("OCSP request is empty")
    try:
        return _parse_request(bytes(der))
    except OcspRequestError:
        raise
    except _DECODE_ERRORS as exc:
        raise OcspRequestError(f"OCSP request does not decode: {type(exc).__name__}: {exc}"
                               ) from None


def _parse_request(der: bytes) -> OcspRequest:
    req = asn1ocsp.OCSPRequest.load(der, strict=True)
    tbs = req["tbs_request"]
    if tbs["version"].native != "v1":
        raise OcspRequestError(f"OCSP request version {tbs['version'].native!r} is not v1")
    items = list(tbs["request_list"])
    if not items:
        raise OcspRequestError("OCSP request list is empty")
    if len(items) > MAX_CERT_IDS:
        raise OcspRequestError(f"OCSP request has {len(items)} CertIDs, at most {MAX_CERT_IDS}")
    cert_ids = []
    for n, item in enumerate(items):
        cid = item["req_cert"]
        alg = cid["hash_algorithm"]["algorithm"].native
        if alg not in HASH_LENGTHS:
            raise OcspRequestError(f"CertID {n}: hash algorithm {alg!r} is not SHA-1 or SHA-256")
        params = cid["hash_algorithm"]["parameters"]
        if params.native is not None:
            raise OcspRequestError(f"CertID {n}: hash algorithm parameters must be absent/NULL")
        name_hash = cid["issuer_name_hash"].native
        key_hash = cid["issuer_key_hash"].native
        for label, value in (("issuerNameHash", name_hash), ("issuerKeyHash", key_hash)):
            if not isinstance(value, bytes) or len(value) != HASH_LENGTHS[alg]:
                raise OcspRequestError(f"CertID {n}: {label} is not a {alg} digest")
        serial = cid["serial_number"].native
        if not isinstance(serial, int) or serial < 0:
            raise OcspRequestError(f"CertID {n}: serial number {serial!r} is not a positive int")
        cert_ids.append(CertId(alg, name_hash, key_hash, serial))
    nonce = None
    for ext in tbs["request_extensions"] or []:
        ext_id = ext["extn_id"].native
        if ext_id == "nonce":
            if nonce is not None:
                raise OcspRequestError("OCSP request has two nonce extensions")
            value = ext["extn_value"].parsed.native
            if not isinstance(value, bytes) or not 1 <= len(value) <= 32:
                raise OcspRequestError("OCSP nonce must be an OCTET STRING of 1..32 octets")
            nonce = value
        elif ext["critical"].native:
            raise OcspRequestError(f"OCSP request has an unknown critical extension {ext_id}")
    return OcspRequest(tuple(cert_ids), nonce)


# ---- statuses --------------------------------------------------------------------------

@dataclass(frozen=True)
class Good:
    pass


@dataclass(frozen=True)
class Revoked:
    revoked_at: datetime
    reason: RevocationReason | None = None
    #: the invalidityDate singleExtension (RFC 5280 5.3.2): since when the certificate is
    #: known or suspected to have been invalid (a hold made final: the hold's time)
    invalid_since: datetime | None = None


@dataclass(frozen=True)
class Unknown:
    pass


CertStatus = Good | Revoked | Unknown
Lookup = Callable[[CertId], CertStatus]


class ResponseStatus(enum.Enum):
    """OCSPResponseStatus (RFC 6960 4.2.1) values we emit."""

    SUCCESSFUL = "successful"
    MALFORMED_REQUEST = "malformed_request"
    INTERNAL_ERROR = "internal_error"
    TRY_LATER = "try_later"
    UNAUTHORIZED = "unauthorized"


def error_response(status: ResponseStatus) -> bytes:
    """An unsigned error OCSPResponse (no responseBytes)."""
    if status is ResponseStatus.SUCCESSFUL:
        raise JpkiError("a successful response needs responseBytes: use build_response")
    return asn1ocsp.OCSPResponse({"response_status": status.value}).dump()


@dataclass(frozen=True)
class OcspResponder:
    """A delegated responder: its certificate and key, the CA it answers for."""

    certificate: x509.Certificate
    key: IssuerKey
    issuer: x509.Certificate
    validity: timedelta = timedelta(hours=1)
    _hashes: dict[str, tuple[bytes, bytes]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hashes",
                           {alg: issuer_hashes(self.issuer, alg) for alg in HASH_LENGTHS})

    def answers_for(self, cert_id: CertId) -> bool:
        expected = self._hashes.get(cert_id.hash_algorithm)
        return expected == (cert_id.issuer_name_hash, cert_id.issuer_key_hash)


def _gtime(at: datetime) -> asn1core.GeneralizedTime:
    if at.tzinfo is None:
        raise JpkiError("OCSP times must be timezone-aware")
    return asn1core.GeneralizedTime(at.replace(microsecond=0))


def _status_asn1(status: CertStatus) -> asn1ocsp.CertStatus:
    if isinstance(status, Good):
        return asn1ocsp.CertStatus(name="good", value=asn1core.Null())
    if isinstance(status, Unknown):
        return asn1ocsp.CertStatus(name="unknown", value=asn1core.Null())
    if isinstance(status, Revoked):
        info = {"revocation_time": _gtime(status.revoked_at)}
        if status.reason is not None:
            info["revocation_reason"] = status.reason.code
        return asn1ocsp.CertStatus(name="revoked", value=asn1ocsp.RevokedInfo(info))
    raise JpkiError(f"lookup returned {status!r}, not Good/Revoked/Unknown")


_CERT_ID_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}  # noqa: S303 - CertID hashes, not signatures


def _build_one(responder: OcspResponder, cert_id: CertId, status: CertStatus, now: datetime,
               nonce: bytes | None) -> bytes | None:
    """:func:`build_response` for one CertID with ``cryptography``'s OCSPResponseBuilder
    (three to four times less work than asn1crypto's generic encoder), or ``None`` when its
    answer would not be the one :func:`build_response` promises. The builder stamps
    producedAt from the system clock at signing, so its response is used only when that
    second is ``now``'s: always with the system clock as the responder's clock, save a
    signature that straddles a second; never with a test clock (the general path answers)."""
    this_update = now.replace(microsecond=0)
    if abs((datetime.now(UTC) - now).total_seconds()) > 1:
        return None
    revocation_time = reason = None
    if isinstance(status, Good):
        cert_status = ocsp.OCSPCertStatus.GOOD
    elif isinstance(status, Unknown):
        cert_status = ocsp.OCSPCertStatus.UNKNOWN
    elif isinstance(status, Revoked):
        if status.revoked_at.tzinfo is None:
            raise JpkiError("OCSP times must be timezone-aware")
        if status.invalid_since is not None:
            return None  # a singleExtension, which the builder does not write
        cert_status = ocsp.OCSPCertStatus.REVOKED
        revocation_time = status.revoked_at.replace(microsecond=0)
        reason = status.reason.flag if status.reason is not None else None
    else:
        raise JpkiError(f"lookup returned {status!r}, not Good/Revoked/Unknown")
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(cert_id.issuer_name_hash, cert_id.issuer_key_hash, cert_id.serial,
                                     _CERT_ID_HASHES[cert_id.hash_algorithm](), cert_status, this_update,
                                     this_update + responder.validity, revocation_time, reason)
               .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
               .certificates([responder.certificate]))
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(responder.key, hash_for(KeyType.of(responder.key)))
    if response.produced_at_utc != this_update:
        return None
    return response.public_bytes(serialization.Encoding.DER)


def build_response(*, responder: OcspResponder, answers: Sequence[tuple[CertId, CertStatus]],
                   now: datetime, nonce: bytes | None = None) -> bytes:
    """A successful, signed BasicOCSPResponse (RFC 6960 4.2.1) as DER OCSPResponse bytes.

    One CertID (what relying parties send) is built by ``cryptography`` when it can give
    producedAt = ``now`` (:func:`_build_one`) and the answer has no invalidity date (a
    singleExtension, which its builder does not write); several, or a ``now`` that is not the
    system clock's, or an invalidity date, by asn1crypto. Both give the same response fields (tests/test_jpki_revocation.py)."""
    if now.tzinfo is None:
        raise JpkiError("OCSP times must be timezone-aware")
    if len(answers) == 1:
        built = _build_one(responder, *answers[0], now, nonce)
        if built is not None:
            return built
    return _build_general(responder, answers, now, nonce)


def _single(cert_id: CertId, status: CertStatus, this_update: asn1core.GeneralizedTime,
            next_update: asn1core.GeneralizedTime) -> dict:
    """One SingleResponse; a revocation with an invalidity date carries it as the
    non-critical singleExtension invalidityDate (RFC 6960 4.4, RFC 5280 5.3.2)."""
    single = {"cert_id": cert_id.to_asn1(), "cert_status": _status_asn1(status),
              "this_update": this_update, "next_update": next_update}
    if isinstance(status, Revoked) and status.invalid_since is not None:
        single["single_extensions"] = [{"extn_id": "invalidity_date", "critical": False,
                                        "extn_value": _gtime(status.invalid_since)}]
    return single


def _build_general(responder: OcspResponder, answers: Sequence[tuple[CertId, CertStatus]],
                   now: datetime, nonce: bytes | None) -> bytes:
    """:func:`build_response` with asn1crypto: any number of CertIDs, producedAt = ``now``."""
    responder_der = responder.certificate.public_bytes(serialization.Encoding.DER)
    responder_asn1 = asn1x509.Certificate.load(responder_der)
    key_bits = responder_asn1["tbs_certificate"]["subject_public_key_info"]["public_key"]
    this_update = _gtime(now)
    next_update = _gtime(now + responder.validity)
    data = {
        "version": "v1",
        "responder_id": asn1ocsp.ResponderId(
            name="by_key", value=_digest("sha1", key_bits.contents[1:])),
        "produced_at": this_update,
        "responses": [_single(cert_id, status, this_update, next_update) for cert_id, status in answers],
    }
    if nonce is not None:
        data["response_extensions"] = [{"extn_id": "nonce", "critical": False,
                                        "extn_value": nonce}]
    tbs = asn1ocsp.ResponseData(data)
    signature, alg = sign_bytes(responder.key, tbs.dump())
    basic = asn1ocsp.BasicOCSPResponse({
        "tbs_response_data": tbs,
        # asn1crypto gives sha256WithRSAEncryption its NULL parameters (RFC 4055 2.1) itself
        "signature_algorithm": asn1algos.SignedDigestAlgorithm({"algorithm": alg}),
        "signature": signature,
        "certs": [responder_asn1],
    })
    return asn1ocsp.OCSPResponse({
        "response_status": "successful",
        "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
    }).dump()


def respond(request_der: bytes, lookup: Lookup,
            responder: OcspResponder | Sequence[OcspResponder], now: datetime) -> bytes:
    """Answer an OCSP request; never raises (see module docstring for the error mapping)."""
    try:
        request = parse_request(request_der)
    except OcspRequestError:
        return error_response(ResponseStatus.MALFORMED_REQUEST)
    try:
        candidates = (responder,) if isinstance(responder, OcspResponder) else tuple(responder)
        chosen = next((r for r in candidates
                       if all(r.answers_for(c) for c in request.cert_ids)), None)
        if chosen is None:
            return error_response(ResponseStatus.UNAUTHORIZED)
        answers = [(cid, lookup(cid)) for cid in request.cert_ids]
        return build_response(responder=chosen, answers=answers, now=now, nonce=request.nonce)
    except Exception:  # noqa: BLE001 - 4.2.1: any failure of ours is internalError
        return error_response(ResponseStatus.INTERNAL_ERROR)
