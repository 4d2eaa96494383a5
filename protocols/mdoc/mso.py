"""MobileSecurityObject (ISO/IEC 18013-5:2021 §9.1.2.4) with the 2nd-edition ``status``.

``MobileSecurityObjectBytes = #6.24(bstr .cbor MobileSecurityObject)`` is the payload of
issuerAuth. It is parsed only after the issuer signature over those exact bytes verified.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols import cbor
from protocols.cose import CoseKey, CoseKeyError
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError

DIGEST_ALGORITHMS = {"SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


@dataclass(frozen=True)
class StatusListRef:
    """``status_list``: index into a token status list at ``uri``."""

    idx: int
    uri: str


@dataclass(frozen=True)
class IdentifierListRef:
    """``identifier_list``: identifier in the identifier list at ``uri``."""

    id: bytes
    uri: str


@dataclass(frozen=True)
class MsoStatus:
    status_list: StatusListRef | None = None
    identifier_list: IdentifierListRef | None = None

    def to_map(self) -> dict:
        out: dict[str, Any] = {}
        if self.status_list is not None:
            out["status_list"] = {"idx": self.status_list.idx, "uri": self.status_list.uri}
        if self.identifier_list is not None:
            out["identifier_list"] = {"id": self.identifier_list.id, "uri": self.identifier_list.uri}
        return out

    @classmethod
    def from_map(cls, value: Any) -> MsoStatus:
        m = p.as_map(value, "MSO.status")
        sl = il = None
        if "status_list" in m:
            s = p.as_map(m["status_list"], "MSO.status.status_list")
            idx = p.field(s, "idx", int, "MSO.status.status_list")
            if idx < 0:
                raise MdocDecodeError("MSO.status.status_list.idx: must be unsigned")
            sl = StatusListRef(idx, p.text(s, "uri", "MSO.status.status_list"))
        if "identifier_list" in m:
            s = p.as_map(m["identifier_list"], "MSO.status.identifier_list")
            il = IdentifierListRef(
                p.field(s, "id", bytes, "MSO.status.identifier_list"),
                p.text(s, "uri", "MSO.status.identifier_list"),
            )
        return cls(sl, il)


@dataclass(frozen=True)
class ValidityInfo:
    signed: dt.datetime
    valid_from: dt.datetime
    valid_until: dt.datetime
    expected_update: dt.datetime | None = None

    def to_map(self) -> dict:
        out = {"signed": self.signed, "validFrom": self.valid_from, "validUntil": self.valid_until}
        if self.expected_update is not None:
            out["expectedUpdate"] = self.expected_update
        return out

    @classmethod
    def from_map(cls, value: Any) -> ValidityInfo:
        m = p.as_map(value, "MSO.validityInfo")

        def t(key: str, optional: bool = False) -> dt.datetime | None:
            v = p.field(m, key, dt.datetime, "MSO.validityInfo", optional=optional)
            if v is not None and v.tzinfo is None:
                raise MdocDecodeError(f"MSO.validityInfo.{key}: tdate without a time zone")
            return v

        return cls(t("signed"), t("validFrom"), t("validUntil"), t("expectedUpdate", True))


@dataclass(frozen=True)
class DeviceKeyInfo:
    device_key: CoseKey
    key_authorizations: Mapping | None = field(default=None, hash=False)
    key_info: Mapping | None = field(default=None, hash=False)

    def to_map(self) -> dict:
        out: dict[str, Any] = {"deviceKey": self.device_key.to_map()}
        if self.key_authorizations is not None:
            out["keyAuthorizations"] = self.key_authorizations
        if self.key_info is not None:
            out["keyInfo"] = self.key_info
        return out

    @classmethod
    def from_map(cls, value: Any) -> DeviceKeyInfo:
        m = p.as_map(value, "MSO.deviceKeyInfo")
        try:
            key = CoseKey.from_map(p.field(m, "deviceKey", Mapping, "MSO.deviceKeyInfo"))
        except CoseKeyError as exc:
            raise MdocDecodeError(f"MSO.deviceKeyInfo.deviceKey: {exc}") from exc
        auth = p.field(m, "keyAuthorizations", Mapping, "MSO.deviceKeyInfo", optional=True)
        info = p.field(m, "keyInfo", Mapping, "MSO.deviceKeyInfo", optional=True)
        return cls(key, auth, info)


@dataclass(frozen=True)
class MobileSecurityObject:
    digest_algorithm: str
    value_digests: Mapping[str, Mapping[int, bytes]] = field(hash=False)
    device_key_info: DeviceKeyInfo
    doc_type: str
    validity_info: ValidityInfo
    version: str = "1.0"
    status: MsoStatus | None = None

    def to_map(self) -> dict:
        out: dict[str, Any] = {
            "version": self.version,
            "digestAlgorithm": self.digest_algorithm,
            "valueDigests": {ns: dict(d) for ns, d in self.value_digests.items()},
            "deviceKeyInfo": self.device_key_info.to_map(),
            "docType": self.doc_type,
            "validityInfo": self.validity_info.to_map(),
        }
        if self.status is not None:
            out["status"] = self.status.to_map()
        return out

    def to_bytes(self) -> bytes:
        """``MobileSecurityObjectBytes`` (tag 24 included): the issuerAuth payload."""
        return cbor.tag24_bytes(p.encode(self.to_map()))

    @classmethod
    def from_map(cls, value: Any) -> MobileSecurityObject:
        m = p.as_map(value, "MSO")
        version = p.text(m, "version", "MSO")
        if version != "1.0":
            raise MdocDecodeError(f"MSO.version: unsupported {version!r} (expected '1.0')")
        alg = p.text(m, "digestAlgorithm", "MSO")
        if alg not in DIGEST_ALGORITHMS:
            raise MdocDecodeError(f"MSO.digestAlgorithm: unsupported {alg!r}")
        digests: dict[str, dict[int, bytes]] = {}
        for ns, ids in p.field(m, "valueDigests", Mapping, "MSO").items():
            if not isinstance(ns, str):
                raise MdocDecodeError("MSO.valueDigests: namespace keys must be text")
            inner: dict[int, bytes] = {}
            for digest_id, digest in p.as_map(ids, f"MSO.valueDigests[{ns!r}]").items():
                if not isinstance(digest_id, int) or isinstance(digest_id, bool) or digest_id < 0:
                    raise MdocDecodeError(f"MSO.valueDigests[{ns!r}]: digestID {digest_id!r} not a uint")
                if not isinstance(digest, bytes):
                    raise MdocDecodeError(f"MSO.valueDigests[{ns!r}][{digest_id}]: digest not a bstr")
                inner[digest_id] = digest
            digests[ns] = inner
        status = MsoStatus.from_map(m["status"]) if "status" in m else None
        return cls(
            alg,
            digests,
            DeviceKeyInfo.from_map(m.get("deviceKeyInfo")),
            p.text(m, "docType", "MSO"),
            ValidityInfo.from_map(m.get("validityInfo")),
            version,
            status,
        )

    @classmethod
    def decode(cls, mso_bytes: bytes) -> MobileSecurityObject:
        """From ``MobileSecurityObjectBytes`` (the issuerAuth payload, tag 24 included)."""
        _, value = p.embedded(p.load(mso_bytes, "MobileSecurityObjectBytes"), "MobileSecurityObjectBytes")
        return cls.from_map(value)
