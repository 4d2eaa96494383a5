"""COSE algorithms used by ISO/IEC 18013-5 (clause 9.1.3.6 / 9.1.3.5; RFC 9053 §2.1, §3.1).

ECDSA ES256 / ES384 / ES512 (raw ``r||s`` signatures, RFC 9053 §2.1) and HMAC 256/256.
The fully-specified ECDSA identifiers of RFC 9864 §2.1 (ESP256 -9, ESP384 -51, ESP512 -52:
the same signatures with the curve named by the algorithm) are verified too, as multipaz
and other current mdoc implementations sign with them; we sign with ES256/384/512, the
identifiers ISO/IEC 18013-5:2021 §9.1.3.6 lists.
Keys stay behind :class:`CoseSigner`: whoever signs (a key file, a secure element)
returns the signature, never the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from protocols.cose.errors import CoseKeyError, CoseSignatureError

ES256 = -7
ES384 = -35
ES512 = -36
ESP256 = -9
ESP384 = -51
ESP512 = -52
HMAC_256_256 = 5

# COSE header labels (RFC 9052 §3.1, RFC 9360 §2)
HEADER_ALG = 1
HEADER_KID = 4
HEADER_X5CHAIN = 33


@dataclass(frozen=True)
class EcdsaAlgorithm:
    alg: int
    name: str
    curve: type[ec.EllipticCurve]
    hash: type[hashes.HashAlgorithm]
    size: int  # bytes per coordinate / per r and s


ECDSA_ALGORITHMS: dict[int, EcdsaAlgorithm] = {
    ES256: EcdsaAlgorithm(ES256, "ES256", ec.SECP256R1, hashes.SHA256, 32),
    ES384: EcdsaAlgorithm(ES384, "ES384", ec.SECP384R1, hashes.SHA384, 48),
    ES512: EcdsaAlgorithm(ES512, "ES512", ec.SECP521R1, hashes.SHA512, 66),
    ESP256: EcdsaAlgorithm(ESP256, "ESP256", ec.SECP256R1, hashes.SHA256, 32),
    ESP384: EcdsaAlgorithm(ESP384, "ESP384", ec.SECP384R1, hashes.SHA384, 48),
    ESP512: EcdsaAlgorithm(ESP512, "ESP512", ec.SECP521R1, hashes.SHA512, 66),
}
"""What :func:`ecdsa_verify` accepts. Signing picks ES256/384/512 by the key's curve."""
_BY_CURVE = {a.curve.name: a for a in ECDSA_ALGORITHMS.values() if a.alg in (ES256, ES384, ES512)}
_SIZE_BY_CURVE = {a.curve.name: a.size for a in ECDSA_ALGORITHMS.values()}
_ECDSA = {alg: ec.ECDSA(a.hash()) for alg, a in ECDSA_ALGORITHMS.items()}
"""The ``cryptography`` signature algorithm objects, built once (they are immutable)."""


def algorithm_for_curve(curve: ec.EllipticCurve) -> EcdsaAlgorithm:
    """The ES* algorithm RFC 9053 pairs with ``curve`` (P-256/384/521)."""
    try:
        return _BY_CURVE[curve.name]
    except KeyError:
        raise CoseKeyError(f"unsupported curve {curve.name}: need P-256, P-384 or P-521") from None


def coordinate_size(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def der_to_raw(signature: bytes, curve: ec.EllipticCurve) -> bytes:
    """DER ``Ecdsa-Sig-Value`` -> COSE ``r||s``, each padded to the curve size."""
    size = coordinate_size(curve)
    try:
        r, s = decode_dss_signature(signature)
    except ValueError as exc:
        raise CoseSignatureError(f"malformed DER ECDSA signature: {exc}") from exc
    if r.bit_length() > size * 8 or s.bit_length() > size * 8:
        raise CoseSignatureError("ECDSA signature values larger than the curve")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def raw_to_der(signature: bytes, curve: ec.EllipticCurve) -> bytes:
    """COSE ``r||s`` -> DER; refuses a length other than twice the curve size."""
    size = _SIZE_BY_CURVE.get(curve.name) or coordinate_size(curve)
    if len(signature) != 2 * size:
        raise CoseSignatureError(
            f"COSE ECDSA signature on {curve.name} must be {2 * size} bytes, got {len(signature)}"
        )
    return encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))


_EC_PUBLIC_TYPES: set[type] = set()


@runtime_checkable
class CoseSigner(Protocol):
    """Anything that signs a COSE ``ToBeSigned`` and returns the raw ``r||s`` signature."""

    alg: int

    def sign(self, tbs: bytes) -> bytes: ...


@dataclass(frozen=True)
class _KeySigner:
    private_key: ec.EllipticCurvePrivateKey
    alg: int

    def sign(self, tbs: bytes) -> bytes:
        return der_to_raw_sized(self.private_key.sign(tbs, _ECDSA[self.alg]), ECDSA_ALGORITHMS[self.alg].size)


def key_signer(private_key: ec.EllipticCurvePrivateKey) -> CoseSigner:
    """A :class:`CoseSigner` over an in-memory EC key; ES256/384/512 chosen by its curve."""
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise CoseKeyError(f"key_signer needs an EC private key, got {type(private_key).__name__}")
    return _KeySigner(private_key, algorithm_for_curve(private_key.curve).alg)


def ecdsa_verify(alg: int, public_key: ec.EllipticCurvePublicKey, signature: bytes, tbs: bytes) -> None:
    """Verify a raw COSE ECDSA signature; raise :class:`CoseSignatureError` on any failure."""
    algorithm = ECDSA_ALGORITHMS.get(alg)
    if algorithm is None:
        raise CoseSignatureError(f"unsupported signature algorithm {alg!r}: need ES256/ES384/ES512 (or ESP256/ESP384/ESP512)")
    if type(public_key) not in _EC_PUBLIC_TYPES:
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CoseKeyError(f"{algorithm.name} needs an EC public key, got {type(public_key).__name__}")
        if len(_EC_PUBLIC_TYPES) < 8:
            _EC_PUBLIC_TYPES.add(type(public_key))  # the ABC check once per concrete class
    curve = public_key.curve
    if curve.name != algorithm.curve.name:
        raise CoseSignatureError(
            f"{algorithm.name} needs a {algorithm.curve.name} key, got {curve.name}"
        )
    der = raw_to_der(signature, curve)
    try:
        public_key.verify(der, tbs, _ECDSA[alg])
    except InvalidSignature:
        raise CoseSignatureError(f"{algorithm.name} signature does not verify") from None


def _der_uint(value: bytes) -> bytes:
    """DER INTEGER contents of the unsigned big-endian ``value``: shortest, sign byte when needed."""
    value = value.lstrip(b"\x00")
    return b"\x00" + value if not value or value[0] & 0x80 else value


def _der_heads(size: int) -> tuple[tuple[bytes, bytes], ...]:
    """For r and s of ``size`` bytes, both with a non-zero first byte: (SEQUENCE and r
    INTEGER heads, s INTEGER head), indexed by (r's high bit, s's high bit)."""
    out = []
    for index in range(4):
        lr, ls = size + (index >> 1), size + (index & 1)  # a 0x00 sign byte when the high bit is set
        n = 4 + lr + ls
        seq = b"\x30" + (bytes((n,)) if n < 0x80 else b"\x81" + bytes((n,)))
        out.append((seq + b"\x02" + bytes((lr,)) + b"\x00" * (index >> 1), b"\x02" + bytes((ls,)) + b"\x00" * (index & 1)))
    return tuple(out)


_DER_HEADS = {a.size: _der_heads(a.size) for a in ECDSA_ALGORITHMS.values()}


def raw_to_der_sized(signature: bytes, size: int) -> bytes:
    """COSE ``r||s`` (exactly ``2 * size`` bytes, the caller checked) -> DER ``Ecdsa-Sig-Value``:
    the bytes :func:`raw_to_der` gives (``encode_dss_signature``), written by hand
    (tests/test_cose_messages.py compares the two)."""
    r0, s0 = signature[0], signature[size]
    heads = _DER_HEADS.get(size)
    if r0 and s0 and heads is not None:  # no leading zero octet to strip: all but 1 in 128
        head, mid = heads[(r0 >> 7) << 1 | s0 >> 7]
        return b"".join((head, signature[:size], mid, signature[size:]))
    r, s = _der_uint(signature[:size]), _der_uint(signature[size:])
    body = b"".join((b"\x02", bytes((len(r),)), r, b"\x02", bytes((len(s),)), s))
    n = len(body)
    return b"".join((b"\x30", bytes((n,)) if n < 0x80 else b"\x81" + bytes((n,)), body))


def der_to_raw_sized(signature: bytes, size: int) -> bytes:
    """DER ``Ecdsa-Sig-Value`` -> COSE ``r||s`` for a curve of ``size``-byte coordinates: the
    bytes :func:`der_to_raw` gives, cut out of the DER rather than decoded to integers and
    written back (a signer turns each of its signatures: ``decode_dss_signature`` and two
    ``int.to_bytes`` cost about as much again as the rest of a COSE_Sign1's framing).

    The usual shape is cut: a one-byte SEQUENCE length, r and s each a minimal non-negative
    INTEGER of ``size`` bytes, or of one more for a 0x00 sign octet (all but about 1 in 128
    signatures). Anything else, malformed included, goes to :func:`der_to_raw`'s decoder,
    which pads or refuses (tests/test_cose_messages.py compares the two)."""
    n = len(signature)
    if 6 < n < 0x82 and signature[0] == 0x30 and signature[1] == n - 2 and signature[2] == 0x02:
        end_r = 4 + signature[3]  # r is signature[4:end_r], s signature[end_r + 2:]
        if (end_r + 3 < n and signature[end_r] == 0x02 and end_r + 2 + signature[end_r + 1] == n
                and _cut_uint(signature[4], signature[5], end_r - 4, size)
                and _cut_uint(signature[end_r + 2], signature[end_r + 3], n - end_r - 2, size)):
            return signature[end_r - size:end_r] + signature[n - size:]
    curve = _CURVE_BY_SIZE.get(size)
    if curve is None:
        raise CoseSignatureError(f"no ECDSA curve has {size}-byte coordinates here")
    return der_to_raw(signature, curve)


def _cut_uint(first: int, second: int, length: int, size: int) -> bool:
    """Whether a DER INTEGER of ``length`` bytes starting ``first, second`` is minimal,
    non-negative and its last ``size`` bytes are the value padded to ``size``."""
    if first >= 0x80 or not first and second < 0x80:  # negative, or a needless leading zero
        return False
    return length == size or length == size + 1 and not first


_CURVE_BY_SIZE = {a.size: a.curve() for a in ECDSA_ALGORITHMS.values()}
_ES = {alg: (a.name, a.curve.name, a.size, _ECDSA[alg]) for alg, a in ECDSA_ALGORITHMS.items()}


def ecdsa_verify_raw(alg: int, public_key: ec.EllipticCurvePublicKey, signature: bytes, tbs: bytes) -> None:
    """:func:`ecdsa_verify` (same checks, same errors), with the DER of ``r||s`` written by
    :func:`raw_to_der_sized`; anything but a supported alg, a key of its curve and a
    signature of its length goes to :func:`ecdsa_verify`, which refuses and explains."""
    es = _ES.get(alg)
    if es is None or type(public_key) not in _EC_PUBLIC_TYPES or type(signature) is not bytes:
        return ecdsa_verify(alg, public_key, signature, tbs)
    name, curve_name, size, algorithm = es
    if public_key.curve.name != curve_name or len(signature) != 2 * size:
        return ecdsa_verify(alg, public_key, signature, tbs)
    try:
        public_key.verify(raw_to_der_sized(signature, size), tbs, algorithm)
    except InvalidSignature:
        raise CoseSignatureError(f"{name} signature does not verify") from None
    return None
