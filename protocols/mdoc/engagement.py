"""DeviceEngagement (ISO/IEC 18013-5:2021 §8.2.1.1) and the QR form (§8.2.2.3).

``DeviceEngagement = {0: version, 1: Security, ? 2: DeviceRetrievalMethods, ...}`` with
``Security = [1 (cipher suite), EDeviceKeyBytes]``. The received bytes are kept: they go
verbatim into the SessionTranscript.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols import cbor
from protocols.cose import CoseKey, CoseKeyError
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError

CIPHER_SUITE_1 = 1
# DeviceRetrievalMethod types (§8.2.1.1)
RETRIEVAL_NFC, RETRIEVAL_BLE, RETRIEVAL_WIFI_AWARE = 1, 2, 3


@dataclass(frozen=True)
class DeviceEngagement:
    version: str
    e_device_key: CoseKey
    e_device_key_bytes: bytes
    retrieval_methods: tuple = field(default=(), hash=False)
    extra: Mapping[int, Any] = field(default_factory=dict, hash=False)
    raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def build(
        cls,
        e_device_key: CoseKey,
        *,
        retrieval_methods: list | None = None,
        version: str = "1.0",
        extra: Mapping[int, Any] | None = None,
    ) -> DeviceEngagement:
        key_bytes = e_device_key.encode()
        m: dict[int, Any] = {0: version, 1: [CIPHER_SUITE_1, cbor.CBORTag(24, key_bytes)]}
        if retrieval_methods:
            m[2] = retrieval_methods
        m.update(extra or {})
        return cls(version, e_device_key, key_bytes, tuple(retrieval_methods or ()), dict(extra or {}), p.encode(m))

    def encode(self) -> bytes:
        return self.raw

    @classmethod
    def decode(cls, data: bytes) -> DeviceEngagement:
        m = p.as_map(p.load(data, "DeviceEngagement"), "DeviceEngagement")
        version = p.text(m, 0, "DeviceEngagement")
        if not version.startswith("1."):
            raise MdocDecodeError(f"DeviceEngagement.0 version: unsupported {version!r}")
        sec = p.as_array(m.get(1), "DeviceEngagement.1 Security")
        if len(sec) != 2:
            raise MdocDecodeError("DeviceEngagement.1 Security: expected [cipherSuite, EDeviceKeyBytes]")
        if sec[0] != CIPHER_SUITE_1 or isinstance(sec[0], bool):
            raise MdocDecodeError(f"DeviceEngagement Security: unsupported cipher suite {sec[0]!r}")
        key_bytes, key_value = p.embedded(sec[1], "DeviceEngagement Security EDeviceKeyBytes")
        try:
            key = CoseKey.from_map(key_value)
        except CoseKeyError as exc:
            raise MdocDecodeError(f"DeviceEngagement EDeviceKey: {exc}") from exc
        methods = tuple(p.as_array(m[2], "DeviceEngagement.2")) if 2 in m else ()
        extra = {k: v for k, v in m.items() if k not in (0, 1, 2)}
        return cls(version, key, key_bytes, methods, extra, bytes(data))

    def to_qr_uri(self) -> str:
        """``mdoc:`` + base64url (no padding) of the DeviceEngagement bytes (§8.2.2.3)."""
        return "mdoc:" + base64.urlsafe_b64encode(self.raw).rstrip(b"=").decode()

    @classmethod
    def from_qr_uri(cls, uri: str) -> DeviceEngagement:
        if not isinstance(uri, str) or not uri.startswith("mdoc:"):
            raise MdocDecodeError("DeviceEngagement QR: expected an 'mdoc:' URI")
        body = uri[5:]
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError as exc:
            raise MdocDecodeError(f"DeviceEngagement QR: bad base64url: {exc}") from exc
        return cls.decode(data)
