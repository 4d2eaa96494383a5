"""COSE_Key for EC2 public keys (RFC 9052 §7, RFC 9053 §7.1; ISO/IEC 18013-5 §9.1.5.2).

Coordinates are always the curve size: leading zero octets are kept (RFC 9053 §7.1.1),
and a decoded key with short or long coordinates is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols import cbor
from protocols.cose.errors import CoseKeyError

KTY_EC2 = 2
CRV_P256, CRV_P384, CRV_P521 = 1, 2, 3
_CURVES: dict[int, type[ec.EllipticCurve]] = {
    CRV_P256: ec.SECP256R1,
    CRV_P384: ec.SECP384R1,
    CRV_P521: ec.SECP521R1,
}
_CRV_BY_NAME = {c.name: crv for crv, c in _CURVES.items()}
_SIZES = {CRV_P256: 32, CRV_P384: 48, CRV_P521: 66}


@functools.lru_cache(maxsize=256)
def _public_key(crv: int, x: bytes, y: bytes) -> ec.EllipticCurvePublicKey:
    """The key for exactly these coordinates (a pure function of them, kept for the MSO
    device key a reader sees again at each presentation; errors are not cached)."""
    curve = _CURVES[crv]()
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
    except ValueError as exc:
        raise CoseKeyError(f"COSE_Key point is not on {curve.name}") from exc


@dataclass(frozen=True)
class CoseKey:
    """An EC2 public COSE_Key ``{1: 2, -1: crv, -2: x, -3: y}``."""

    crv: int
    x: bytes
    y: bytes
    kty: int = KTY_EC2

    def __post_init__(self) -> None:
        if self.kty != KTY_EC2:
            raise CoseKeyError(f"COSE_Key kty {self.kty!r} unsupported: only EC2 (2)")
        size = _SIZES.get(self.crv)
        if size is None:
            raise CoseKeyError(f"COSE_Key crv {self.crv!r} unsupported: need 1 (P-256), 2 (P-384), 3 (P-521)")
        for name, coord in (("x", self.x), ("y", self.y)):
            if not isinstance(coord, bytes) or len(coord) != size:
                got = len(coord) if isinstance(coord, bytes) else type(coord).__name__
                raise CoseKeyError(f"COSE_Key {name} must be {size} bytes for crv {self.crv}, got {got}")

    @classmethod
    def _of(cls, crv: int, x: bytes, y: bytes) -> CoseKey:
        """The key from coordinates already checked (crv 1-3, x and y bytes of its size),
        without the frozen dataclass's ``__init__`` and ``__post_init__``: equal, hashable
        and immutable like one built by ``cls(...)``."""
        key = object.__new__(cls)
        key.__dict__.update(crv=crv, x=x, y=y, kty=KTY_EC2)
        return key

    @classmethod
    def from_public_key(cls, key: ec.EllipticCurvePublicKey) -> CoseKey:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CoseKeyError(f"need an EC public key, got {type(key).__name__}")
        crv = _CRV_BY_NAME.get(key.curve.name)
        if crv is None:
            raise CoseKeyError(f"curve {key.curve.name} has no COSE_Key crv here")
        size = _SIZES[crv]
        point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)  # 04 || x || y, padded
        return cls(crv, point[1:1 + size], point[1 + size:])

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The ``cryptography`` key; refuses a point that is not on the curve."""
        return _public_key(self.crv, self.x, self.y)

    def to_map(self) -> dict[int, Any]:
        return {1: self.kty, -1: self.crv, -2: self.x, -3: self.y}

    def encode(self) -> bytes:
        return cbor.dumps(self.to_map())

    @classmethod
    def from_map(cls, value: Any) -> CoseKey:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise CoseKeyError(f"COSE_Key must be a map, got {type(value).__name__}")
        kty = value.get(1)
        if kty != KTY_EC2:
            raise CoseKeyError(f"COSE_Key kty {kty!r} unsupported: only EC2 (2)")
        crv = value.get(-1)
        if not isinstance(crv, int) or isinstance(crv, bool) or crv not in _SIZES:
            raise CoseKeyError(f"COSE_Key crv {crv!r} unsupported")
        x, y = value.get(-2), value.get(-3)
        if not isinstance(x, bytes):
            raise CoseKeyError("COSE_Key x (-2) missing or not a byte string")
        if isinstance(y, bool):
            point = bytes([0x03 if y else 0x02]) + x
            try:
                key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[crv](), point)
            except ValueError as exc:
                raise CoseKeyError("COSE_Key compressed point is not on the curve") from exc
            return cls.from_public_key(key)
        if not isinstance(y, bytes):
            raise CoseKeyError("COSE_Key y (-3) missing or not a byte string / bool")
        if type(x) is bytes and type(y) is bytes and len(x) == len(y) == _SIZES[crv]:
            return cls._of(crv, x, y)  # what __post_init__ checks holds: no frozen __init__
        return cls(crv, x, y)

    @classmethod
    def decode(cls, data: bytes) -> CoseKey:
        try:
            value = cbor.loads(data)
        except cbor.CborDecodeError as exc:
            raise CoseKeyError(f"COSE_Key: {exc}") from exc
        return cls.from_map(value)
