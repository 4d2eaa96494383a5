"""MobileSecurityObject (ISO/IEC 18013-5:2021 §9.1.2.4) with the 2nd-edition ``status``.

``MobileSecurityObjectBytes = #6.24(bstr .cbor MobileSecurityObject)`` is the payload of
issuerAuth. It is parsed only after the issuer signature over those exact bytes verified.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
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
        if type(value) is dict and len(value) == 1:  # a lone status_list {idx, uri}, the usual case
            s = value.get("status_list")
            if type(s) is dict and len(s) == 2:
                idx, uri = s.get("idx"), s.get("uri")
                if type(idx) is int and idx >= 0 and type(uri) is str:
                    return p.make(cls, status_list=p.make(StatusListRef, idx=idx, uri=uri), identifier_list=None)
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

    def order_error(self) -> str | None:
        """Why these times break ISO/IEC 18013-5 9.1.2.4's order, or None when they keep it:
        "the value of validUntil shall be later than validFrom" (else an MSO that is never
        valid: neither expired nor not yet valid), and validFrom "shall be equal or later
        than" signed (else the issuer vouches for a time before it signed: a backdated MSO)."""
        if self.signed <= self.valid_from < self.valid_until:
            return None
        if not self.valid_from < self.valid_until:
            return (f"validUntil {cbor.tdate_text(self.valid_until)} is not later than validFrom "
                    f"{cbor.tdate_text(self.valid_from)}: an MSO that is never valid (ISO/IEC 18013-5 9.1.2.4)")
        if self.signed.replace(microsecond=0) <= self.valid_from:
            return None  # a signing time with a fraction, validFrom its whole second (tdates have none)
        return (f"validFrom {cbor.tdate_text(self.valid_from)} is earlier than signed "
                f"{cbor.tdate_text(self.signed)}: a backdated MSO (ISO/IEC 18013-5 9.1.2.4: validFrom "
                "shall be equal or later than signed)")

    def to_map(self) -> dict:
        out = {"signed": self.signed, "validFrom": self.valid_from, "validUntil": self.valid_until}
        if self.expected_update is not None:
            out["expectedUpdate"] = self.expected_update
        return out

    @classmethod
    def from_map(cls, value: Any) -> ValidityInfo:
        m = p.as_map(value, "MSO.validityInfo")
        if type(m) is dict and "expectedUpdate" not in m:
            signed, start, end = m.get("signed"), m.get("validFrom"), m.get("validUntil")
            if (type(signed) is type(start) is type(end) is dt.datetime
                    and signed.tzinfo is not None and start.tzinfo is not None and end.tzinfo is not None):
                return p.make(cls, signed=signed, valid_from=start, valid_until=end, expected_update=None)

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
        key_map = m.get("deviceKey")
        if type(key_map) is not dict:
            key_map = p.field(m, "deviceKey", Mapping, "MSO.deviceKeyInfo")
        try:
            key = CoseKey.from_map(key_map)
        except CoseKeyError as exc:
            raise MdocDecodeError(f"MSO.deviceKeyInfo.deviceKey: {exc}") from exc
        if len(m) == 1:  # deviceKey alone, the usual case
            return p.make(cls, device_key=key, key_authorizations=None, key_info=None)
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

    def frozen(self) -> MobileSecurityObject | None:
        """This MSO with read-only valueDigests, safe to share between verifications; None
        when it carries keyAuthorizations or keyInfo (arbitrary maps, not frozen here)."""
        info = self.device_key_info
        if info.key_authorizations is not None or info.key_info is not None:
            return None
        digests = MappingProxyType({ns: MappingProxyType(dict(d)) for ns, d in self.value_digests.items()})
        return dataclasses.replace(self, value_digests=digests)

    def _frozen_in_place(self) -> MobileSecurityObject | None:
        """:meth:`frozen` for an MSO :meth:`decode` has just built, whose maps nobody else
        holds: its valueDigests wrapped read-only where they stand, no copy and no second
        instance (``dataclasses.replace`` runs the frozen ``__init__``, a setattr per field);
        the verifier's cache takes every MSO it parses this way."""
        info = self.device_key_info
        if info.key_authorizations is not None or info.key_info is not None:
            return None
        self.__dict__["value_digests"] = MappingProxyType(
            {ns: MappingProxyType(d) for ns, d in self.value_digests.items()})
        return self

    def to_bytes(self) -> bytes:
        """``MobileSecurityObjectBytes`` (tag 24 included): the issuerAuth payload."""
        encoded = _encode_fast(self)
        return cbor.tag24_bytes(encoded if encoded is not None else p.encode(self.to_map()))

    @classmethod
    def from_map(cls, value: Any) -> MobileSecurityObject:
        m = p.as_map(value, "MSO")
        version = m.get("version")
        if type(version) is not str:
            version = p.text(m, "version", "MSO")
        if version != "1.0":
            raise MdocDecodeError(f"MSO.version: unsupported {version!r} (expected '1.0')")
        alg = m.get("digestAlgorithm")
        if type(alg) is not str:
            alg = p.text(m, "digestAlgorithm", "MSO")
        if alg not in DIGEST_ALGORITHMS:
            raise MdocDecodeError(f"MSO.digestAlgorithm: unsupported {alg!r}")
        digests: dict[str, dict[int, bytes]] = {}
        for ns, ids in p.field(m, "valueDigests", Mapping, "MSO").items():
            if (type(ns) is str and type(ids) is dict
                    and all(type(i) is int and i >= 0 and type(d) is bytes for i, d in ids.items())):
                digests[ns] = ids  # the usual shape, checked in one pass
                continue
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
        key_info = DeviceKeyInfo.from_map(m.get("deviceKeyInfo"))
        doc_type = m.get("docType")
        if type(doc_type) is not str:
            doc_type = p.text(m, "docType", "MSO")
        validity = ValidityInfo.from_map(m.get("validityInfo"))
        return p.make(cls, digest_algorithm=alg, value_digests=digests, device_key_info=key_info, doc_type=doc_type,
                      validity_info=validity, version=version, status=status)

    @classmethod
    def decode(cls, mso_bytes: bytes) -> MobileSecurityObject:
        """From ``MobileSecurityObjectBytes`` (the issuerAuth payload, tag 24 included)."""
        # bytes: one decode (cbor.unembed reads a plain tag-24 head by hand)
        _, value = p.embedded(mso_bytes, "MobileSecurityObjectBytes")
        return cls.from_map(value)


_T = cbor.tstr
_MSO_KEYS = tuple(_T(k) for k in ("version", "digestAlgorithm", "valueDigests", "deviceKeyInfo", "docType",
                                 "validityInfo", "status"))
_VALIDITY_KEYS = tuple(_T(k) for k in ("signed", "validFrom", "validUntil", "expectedUpdate"))
_DEVICE_KEY = _T("deviceKey")
_PACK4 = struct.Struct(">BI").pack
_DIGEST_HEADS = {n: cbor.bstr_head(n) for n in (32, 48, 64)}


def _tdate(value: Any) -> bytes | None:
    if type(value) is not dt.datetime or value.tzinfo is None or value.utcoffset() is None:
        return None
    return b"\xc0" + _T(cbor.tdate_text(value))


def _encode_fast(mso: MobileSecurityObject) -> bytes | None:
    """``p.encode(mso.to_map())`` written field by field for the shape issuing produces
    (text, uint digestIDs, bstr digests, an EC2 COSE_Key, aware tdates): the same bytes
    (tests/test_mdoc_fastpaths.py checks it), without the general encoder's walk over the
    whole MSO. ``None`` for anything else, which then takes the general path."""
    if type(mso.version) is not str or type(mso.digest_algorithm) is not str or type(mso.doc_type) is not str:
        return None
    digests = mso.value_digests
    if type(digests) is not dict:
        return None
    parts = [cbor.map_head(len(digests))]
    uint, bstr_head = cbor.uint_bytes, cbor.bstr_head
    for ns, ids in digests.items():
        if type(ns) is not str or type(ids) is not dict:
            return None
        parts += (_T(ns), cbor.map_head(len(ids)))
        for digest_id, digest in ids.items():
            if type(digest_id) is not int or digest_id < 0 or type(digest) is not bytes:
                return None
            parts += (_PACK4(0x1A, digest_id) if 0x10000 <= digest_id < 0x100000000 else uint(digest_id),
                      _DIGEST_HEADS.get(len(digest)) or bstr_head(len(digest)), digest)
    info = mso.device_key_info
    key = info.device_key
    if info.key_authorizations is None and info.key_info is None and key.kty == 2 and type(key.crv) is int and key.crv >= 0:
        key_bytes = b"".join((b"\xa1", _DEVICE_KEY, b"\xa4\x01\x02\x20", uint(key.crv), b"\x21", bstr_head(len(key.x)),
                              key.x, b"\x22", bstr_head(len(key.y)), key.y))
    else:
        key_bytes = p.encode(info.to_map())
    v = mso.validity_info
    return encode_mso_parts(mso.version, mso.digest_algorithm, b"".join(parts), key_bytes, mso.doc_type,
                            v.signed, v.valid_from, v.valid_until, v.expected_update, mso.status)


def encode_mso_parts(version: str, digest_algorithm: str, value_digests: bytes, device_key_info: bytes,
                     doc_type: str, signed: Any, valid_from: Any, valid_until: Any, expected_update: Any,
                     status: MsoStatus | None) -> bytes | None:
    """The encoded MSO around its already encoded ``valueDigests`` map and ``deviceKeyInfo``
    map, in CDDL order (what :func:`_encode_fast` and the issuing fast path write); ``None``
    when a time is not an aware ``datetime`` (the general path then decides)."""
    parts = [b"\xa7" if status is not None else b"\xa6",
             _MSO_KEYS[0], _T(version), _MSO_KEYS[1], _T(digest_algorithm),
             _MSO_KEYS[2], value_digests, _MSO_KEYS[3], device_key_info, _MSO_KEYS[4], _T(doc_type), _MSO_KEYS[5],
             b"\xa4" if expected_update is not None else b"\xa3"]
    times = (signed, valid_from, valid_until) + ((expected_update,) if expected_update is not None else ())
    for name, when in zip(_VALIDITY_KEYS, times, strict=False):
        encoded = _tdate(when)
        if encoded is None:
            return None
        parts += (name, encoded)
    if status is not None:
        parts += (_MSO_KEYS[6], _encode_status(status))
    return b"".join(parts)


def _encode_status(status: MsoStatus) -> bytes:
    """``p.encode(status.to_map())``; a lone status_list reference (what issuing writes) by hand."""
    sl = status.status_list
    if (status.identifier_list is None and sl is not None and type(sl.idx) is int and 0 <= sl.idx < 1 << 64
            and type(sl.uri) is str):
        return b"".join((_STATUS_LIST_HEAD, cbor.uint_bytes(sl.idx), _URI_KEY, _T(sl.uri)))
    return p.encode(status.to_map())


_STATUS_LIST_HEAD = b"\xa1" + _T("status_list") + b"\xa2" + _T("idx")
_URI_KEY = _T("uri")
