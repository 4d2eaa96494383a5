"""COSE_Mac0 with HMAC 256/256 (RFC 9052 §6.2, MAC_structure §6.3; RFC 9053 §3.1).

ISO/IEC 18013-5 §9.1.3.5: deviceMac is an untagged COSE_Mac0, payload nil, keyed with
EMacKey, detached content DeviceAuthenticationBytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from protocols import cbor
from protocols.cose._headers import TAG_MAC0, encode_protected, header_alg, split_array
from protocols.cose.algorithms import HEADER_ALG, HMAC_256_256
from protocols.cose.errors import CoseError, CoseSignatureError


def mac_structure(protected_bytes: bytes, external_aad: bytes, payload: bytes) -> bytes:
    """``MAC_structure = ["MAC0", protected, external_aad, payload]`` (§6.3)."""
    return cbor.dumps(["MAC0", protected_bytes, external_aad, payload])


def _hmac(key: bytes) -> hmac.HMAC:
    if not isinstance(key, bytes) or not key:
        raise CoseError("HMAC key must be non-empty bytes")
    return hmac.HMAC(key, hashes.SHA256())


@dataclass(frozen=True)
class Mac0:
    protected_bytes: bytes
    protected: dict = field(hash=False)
    unprotected: dict = field(hash=False)
    payload: bytes | None
    tag: bytes

    @staticmethod
    def create(
        key: bytes,
        payload: bytes | None,
        *,
        detached: bytes | None = None,
        protected: dict | None = None,
        unprotected: dict | None = None,
        external_aad: bytes = b"",
    ) -> Mac0:
        if (payload is None) == (detached is None):
            raise CoseError("Mac0.create: give exactly one of payload and detached")
        headers = {HEADER_ALG: HMAC_256_256}
        headers.update(protected or {})
        if headers[HEADER_ALG] != HMAC_256_256:
            raise CoseError(f"unsupported MAC algorithm {headers[HEADER_ALG]!r}: only HMAC 256/256 (5)")
        protected_bytes = encode_protected(headers)
        content = payload if payload is not None else detached
        mac = _hmac(key)
        mac.update(mac_structure(protected_bytes, external_aad, content))
        return Mac0(protected_bytes, headers, dict(unprotected or {}), payload, mac.finalize())

    @staticmethod
    def decode(data: bytes | list | tuple | cbor.CBORTag) -> Mac0:
        protected_bytes, protected, unprotected, payload, tag = split_array(data, TAG_MAC0, "COSE_Mac0")
        return Mac0(protected_bytes, protected, unprotected, payload, tag)

    def to_cbor_array(self) -> list:
        return [self.protected_bytes, self.unprotected, self.payload, self.tag]

    def encode(self, *, tag: bool = False) -> bytes:
        array = self.to_cbor_array()
        return cbor.dumps(cbor.CBORTag(TAG_MAC0, array) if tag else array)

    @property
    def alg(self) -> int | None:
        return header_alg(self.protected)

    def verify(self, key: bytes, *, detached: bytes | None = None, external_aad: bytes = b"") -> None:
        """Raise :class:`CoseSignatureError` unless the tag verifies (constant-time compare)."""
        if self.alg != HMAC_256_256:
            raise CoseSignatureError(f"COSE_Mac0 alg {self.alg!r} unsupported: only HMAC 256/256 (5)")
        if self.payload is not None and detached is not None:
            raise CoseSignatureError("COSE_Mac0 carries a payload: do not pass a detached one")
        content = self.payload if self.payload is not None else detached
        if content is None:
            raise CoseSignatureError("COSE_Mac0 payload is detached (nil): the detached content is needed")
        mac = _hmac(key)
        mac.update(mac_structure(self.protected_bytes, external_aad, content))
        try:
            mac.verify(self.tag)
        except InvalidSignature:
            raise CoseSignatureError("HMAC 256/256 tag does not verify") from None
