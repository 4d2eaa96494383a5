"""Signed CWTs for status mechanisms: build, open, verify (RFC 8392 over COSE_Sign1, RFC 9052).

Shared by the Status List Token (draft-ietf-oauth-status-list section 5.2) and the ISO/IEC
18013-5 2nd edition Identifier List Token. Shape: ``COSE_Sign1`` tag 18, protected header
``{1: alg, 16: typ, 33: x5chain}`` (the signer certificate is signed with the token),
payload the CWT claims map with ``sub`` (2), ``iat`` (6), ``exp`` (4), ``ttl`` (65534).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols import cbor, certs, cose, iaca
from protocols.status.errors import (
    StatusListClaimError,
    StatusListDecodeError,
    StatusListSignatureError,
    StatusListTrustError,
)

HEADER_TYP = 16
CLAIM_SUB = 2
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_TTL = 65534
CLAIM_STATUS_LIST = 65533
CLAIM_IDENTIFIER_LIST = 65530
TYP_STATUS_LIST = "application/statuslist+cwt"
TYP_IDENTIFIER_LIST = "application/identifierlist+cwt"
CLOCK_SKEW = dt.timedelta(seconds=60)
#: The last NumericDate read (9999-12-31T23:59:59Z, the last second a datetime holds): a
#: later one is refused as malformed rather than escaping as a ValueError.
LAST_NUMERIC_DATE = 253402300799


@dataclass(frozen=True)
class CwtHeader:
    """The common claims of a status mechanism token, and the signer certificate."""

    sub: str
    iat: dt.datetime
    exp: dt.datetime | None
    ttl: int | None
    signer: x509.Certificate


def _seconds(value: dt.datetime, what: str) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StatusListClaimError(f"{what} must be an aware datetime, got naive {value!r}")
    return int(value.timestamp())


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StatusListClaimError(f"{what} must be an aware datetime, got naive {value!r}")
    return value.astimezone(dt.UTC)


def sign_cwt(
    claims: dict[int, Any],
    *,
    typ: str,
    uri: str,
    iat: dt.datetime,
    exp: dt.datetime | None,
    ttl: int | None,
    signer: cose.CoseSigner,
    certificate: x509.Certificate,
) -> bytes:
    """COSE_Sign1 (tag 18) over ``claims`` plus sub/iat/exp/ttl; returns the token bytes."""
    if not isinstance(uri, str) or not uri:
        raise StatusListClaimError("sub (the list URI) must be a non-empty string")
    payload: dict[int, Any] = {CLAIM_SUB: uri, CLAIM_IAT: _seconds(iat, "iat")}
    if exp is not None:
        payload[CLAIM_EXP] = _seconds(exp, "exp")
        if payload[CLAIM_EXP] <= payload[CLAIM_IAT]:
            raise StatusListClaimError("exp must be after iat")
    if ttl is not None:
        if type(ttl) is not int or ttl <= 0:
            raise StatusListClaimError(f"ttl must be a positive int of seconds, got {ttl!r}")
        payload[CLAIM_TTL] = ttl
    payload.update(claims)
    der = certificate.public_bytes(serialization.Encoding.DER)
    message = cose.Sign1.create(
        signer, cbor.dumps(payload), protected={HEADER_TYP: typ, cose.HEADER_X5CHAIN: der}
    )
    return message.encode(tag=True)


def _sign1(data: bytes) -> cose.Sign1:
    """The COSE_Sign1 (tag 18) of a token, decoded without verifying anything."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StatusListDecodeError(f"token must be bytes, got {type(data).__name__}")
    try:
        outer = cbor.loads(bytes(data))
    except cbor.CborDecodeError as exc:
        raise StatusListDecodeError(f"token: {exc}") from None
    if not isinstance(outer, cbor.CBORTag) or outer.tag != 18:
        raise StatusListDecodeError("token: not a COSE_Sign1 tagged 18")
    try:
        return cose.Sign1.decode(outer)
    except cose.CoseError as exc:
        raise StatusListDecodeError(f"token: {exc}") from None


def peek_typ(data: bytes) -> str | None:
    """The protected ``typ`` (16) of a token, without verifying anything (tools that take
    either kind of token); :class:`StatusListDecodeError` when it is not a COSE_Sign1."""
    typ = _sign1(data).protected.get(HEADER_TYP)
    return typ if isinstance(typ, str) else None


def peek_header(data: bytes) -> CwtHeader:
    """The common claims (sub, iat, exp, ttl) and signer of a token of either kind, without
    verifying anything (an issuer reading back what it stored); :class:`StatusListError`
    when they cannot be read."""
    typ = peek_typ(data)
    if typ not in (TYP_STATUS_LIST, TYP_IDENTIFIER_LIST):
        raise StatusListClaimError(f"protected typ (16) is {typ!r}, not a status mechanism token")
    return open_cwt(data, typ=typ)[1]


def open_cwt(data: bytes, *, typ: str) -> tuple[cose.Sign1, CwtHeader, dict]:
    """Decode without verifying: the message, the common claims and the whole claims map."""
    message = _sign1(data)
    try:
        chain = message.x5chain
    except cose.CoseError as exc:
        raise StatusListDecodeError(f"token: {exc}") from None
    found = message.protected.get(HEADER_TYP)
    if found != typ:
        raise StatusListClaimError(f"protected typ (16) is {found!r}, expected {typ!r}")
    if not chain:
        raise StatusListTrustError("token: no x5chain (33) with the signer certificate")
    try:
        signer = certs.load_der(chain[0])
    except certs.CertificateParseError as exc:
        raise StatusListTrustError(f"x5chain: the signer certificate is malformed: {exc}") from None
    if message.payload is None:
        raise StatusListDecodeError("token: payload is detached (nil)")
    try:
        claims = cbor.loads(message.payload)
    except cbor.CborDecodeError as exc:
        raise StatusListDecodeError(f"token claims: {exc}") from None
    if not isinstance(claims, dict):
        raise StatusListDecodeError(f"token claims must be a map, got {type(claims).__name__}")
    sub = claims.get(CLAIM_SUB)
    if not isinstance(sub, str) or not sub:
        raise StatusListClaimError("claim sub (2) missing or not a text string")
    iat = _numeric_date(claims, CLAIM_IAT, "iat", required=True)
    exp = _numeric_date(claims, CLAIM_EXP, "exp", required=False)
    ttl = claims.get(CLAIM_TTL)
    if ttl is not None and (type(ttl) is not int or ttl <= 0):
        raise StatusListClaimError(f"claim ttl (65534) must be a positive int, got {ttl!r}")
    return message, CwtHeader(sub, iat, exp, ttl, signer), claims


def _numeric_date(claims: dict, key: int, name: str, *, required: bool) -> dt.datetime | None:
    value = claims.get(key)
    if value is None:
        if required:
            raise StatusListClaimError(f"claim {name} ({key}) missing")
        return None
    if type(value) is not int or not 0 <= value <= LAST_NUMERIC_DATE:
        raise StatusListClaimError(f"claim {name} ({key}) must be a NumericDate int, got {value!r}")
    return dt.datetime.fromtimestamp(value, dt.UTC)


def verify_cwt(
    message: cose.Sign1,
    header: CwtHeader,
    *,
    trust_anchor: x509.Certificate,
    uri: str,
    now: dt.datetime,
    fetched_at: dt.datetime | None,
    eku: x509.ObjectIdentifier,
) -> None:
    """Signer chain to ``trust_anchor`` (as :mod:`protocols.iaca` checks it), signature,
    ``sub == uri``, ``iat`` not in the future, ``exp`` not passed, and, given the time the
    token was fetched, its ``ttl`` not run out."""
    now = _aware(now, "now")
    anchor = [c for c in iaca.check_iaca(trust_anchor, now, country=None)
              if c.name in ("iaca.validity", "iaca.key") and not c.passed]
    chain = iaca.failed(iaca.check_status_list_signer(header.signer, trust_anchor, now, eku=eku))
    problems = anchor + chain
    if problems:
        raise StatusListTrustError(
            "signer certificate refused: " + "; ".join(f"{c.name}: {c.reason}" for c in problems)
        )
    try:
        message.verify(header.signer.public_key())
    except cose.CoseError as exc:
        raise StatusListSignatureError(f"token signature: {exc}") from None
    if header.sub != uri:
        raise StatusListClaimError(f"sub {header.sub!r} is not the referenced uri {uri!r}")
    if header.iat > now + CLOCK_SKEW:
        raise StatusListClaimError(f"iat {header.iat.isoformat()} is in the future of {now.isoformat()}")
    if header.exp is not None and now >= header.exp:
        raise StatusListClaimError(f"token expired at {header.exp.isoformat()} (now {now.isoformat()})")
    if fetched_at is not None and header.ttl is not None:
        fetched = _aware(fetched_at, "fetched_at")
        # the age against the ttl, in seconds: fetched + ttl overflows datetime for a ttl of
        # more than 999999999 days (or past the year 9999), and the token's ttl is unbounded
        if (now - fetched).total_seconds() > header.ttl:
            raise StatusListClaimError(
                f"cached copy fetched {fetched.isoformat()} is older than its ttl of "
                f"{header.ttl} s: fetch the list again"
            )
