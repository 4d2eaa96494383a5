"""IssuerSignedItem and IssuerSigned (ISO/IEC 18013-5:2021 §8.3.2.1.2.2, §9.1.2.4).

Each ``IssuerSignedItemBytes = #6.24(bstr .cbor IssuerSignedItem)`` is kept as the exact
bytes received: the value digest is over those bytes (tag included) and they are digested
before they are parsed. Nothing is re-encoded on the way to a verification.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from protocols import cbor
from protocols.cose import CoseError, Sign1
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocDecodeError, MdocEncodeError
from protocols.mdoc.mso import DIGEST_ALGORITHMS, MobileSecurityObject


@dataclass(frozen=True)
class IssuerSignedItem:
    digest_id: int
    random: bytes
    element_identifier: str
    element_value: Any = field(hash=False)
    raw: bytes = field(default=b"", repr=False, compare=False)
    """The exact embedded bytes (inside tag 24); set by :meth:`create` and :meth:`decode`."""

    @classmethod
    def create(cls, digest_id: int, random: bytes, element_identifier: str, element_value: Any) -> IssuerSignedItem:
        if type(digest_id) is int and 0 <= digest_id < 1 << 64 and type(random) is bytes and type(element_identifier) is str:
            # The map written key by key, in the same order and heads as the encoder below
            # would write it (only the value goes through the encoder): same bytes, less work.
            raw = b"".join((
                _ITEM_HEAD, _PACK4(0x1A, digest_id) if 0x10000 <= digest_id < 0x100000000 else cbor.uint_bytes(digest_id),
                _RANDOM_16 if len(random) == 16 else _RANDOM_KEY + cbor.bstr_head(len(random)), random,
                _ident_part(element_identifier), encode_value(element_identifier, element_value),
            ))
            return cls._of(digest_id, random, element_identifier, element_value, raw)
        item = {
            "digestID": digest_id,
            "random": random,
            "elementIdentifier": element_identifier,
            "elementValue": element_value,
        }
        try:
            raw = p.encode(item)
        except MdocEncodeError as exc:  # what p.encode raises for a value CBOR cannot carry
            raise MdocEncodeError(f"IssuerSignedItem {element_identifier!r}: {exc}") from exc
        return cls(digest_id, random, element_identifier, element_value, raw)

    @classmethod
    def _of(cls, digest_id: int, random: bytes, element_identifier: str, element_value: Any, raw: bytes) -> IssuerSignedItem:
        """The instance from fields already checked, without the frozen dataclass's
        ``__init__`` (one ``object.__setattr__`` per field): issuing makes one per element."""
        item = object.__new__(cls)
        item.__dict__.update(digest_id=digest_id, random=random, element_identifier=element_identifier,
                             element_value=element_value, raw=raw)
        return item

    @classmethod
    def decode(cls, raw: bytes) -> IssuerSignedItem:
        return cls._from_value(p.load(raw, "IssuerSignedItem"), raw)

    @classmethod
    def _from_value(cls, value: Any, raw: bytes) -> IssuerSignedItem:
        """From the decoded ``raw`` (decoded once, elsewhere, strictly). The CDDL map is
        closed: exactly the four keys, an unknown one is named in the error."""
        m = value if type(value) is dict else p.as_map(value, "IssuerSignedItem")
        if m.keys() != _ITEM_KEYS:
            unknown = sorted(repr(k) for k in m if k not in _ITEM_KEYS)
            if unknown:
                raise MdocDecodeError(f"IssuerSignedItem: unexpected key(s) {', '.join(unknown)}")
            missing = next(k for k in ("digestID", "random", "elementIdentifier", "elementValue") if k not in m)
            raise MdocDecodeError(f"IssuerSignedItem: missing {missing!r}")
        digest_id, random, ident = m["digestID"], m["random"], m["elementIdentifier"]
        if type(digest_id) is not int or type(random) is not bytes or type(ident) is not str:
            digest_id = p.field(m, "digestID", int, "IssuerSignedItem")
            random = p.field(m, "random", bytes, "IssuerSignedItem")
            ident = p.text(m, "elementIdentifier", "IssuerSignedItem")
        if digest_id < 0:
            raise MdocDecodeError("IssuerSignedItem.digestID: must be unsigned")
        return cls(digest_id, random, ident, m["elementValue"], raw if type(raw) is bytes else bytes(raw))

    @property
    def tagged(self) -> bytes:
        """``IssuerSignedItemBytes`` encoded: what the value digest covers."""
        return cbor.tag24_bytes(self.raw)

    def digest(self, algorithm: str = "SHA-256") -> bytes:
        return item_digest(self.raw, algorithm)


_DATE = dt.date
_PACK4 = struct.Struct(">BI").pack  # uint head with a 4-byte argument: issuing's 31-bit digestIDs
_FULL_DATE_HEAD = b"\xd9\x03\xec"
_ITEM_KEYS = frozenset({"digestID", "random", "elementIdentifier", "elementValue"})
_ITEM_HEAD = b"\xa4" + cbor.dumps("digestID")
_RANDOM_KEY = cbor.dumps("random")
_RANDOM_16 = _RANDOM_KEY + cbor.bstr_head(16)
_IDENT_KEY = cbor.dumps("elementIdentifier")
_VALUE_KEY = cbor.dumps("elementValue")
_STR_HEADS = tuple(bytes([0x60 | n]) if n < 24 else bytes([0x78, n]) for n in range(256))
_BSTR_HEADS = tuple(bytes([0x40 | n]) if n < 24 else bytes([0x58, n]) for n in range(256))
_IDENT_PARTS: dict[str, bytes] = {}
_DATES: dict[dt.date, bytes] = {}


def _ident_part(ident: str) -> bytes:
    """``"elementIdentifier": ident, "elementValue"`` encoded (the identifiers recur; bounded table)."""
    hit = _IDENT_PARTS.get(ident)
    if hit is None:
        hit = _IDENT_KEY + cbor.tstr(ident) + _VALUE_KEY
        if len(ident) <= 64:
            if len(_IDENT_PARTS) >= 1024:
                _IDENT_PARTS.clear()
            _IDENT_PARTS[ident] = hit
    return hit


def encode_value(element_identifier: str, value: Any) -> bytes:
    """An elementValue as the encoder writes it (``p.encode``): the usual scalars by hand."""
    t = type(value)
    if t is str:
        b = value.encode()
        return _STR_HEADS[len(b)] + b if len(b) < 256 else cbor2.dumps(value)
    if t is _DATE:  # tag 1004 (RFC 8943); the same few dates recur (birth, issue, expiry)
        hit = _DATES.get(value)
        if hit is None:
            hit = _FULL_DATE_HEAD + cbor.tstr(value.isoformat())
            if len(_DATES) >= 1024:
                _DATES.clear()
            _DATES[value] = hit
        return hit
    if t is bool:
        return b"\xf5" if value else b"\xf4"
    if t is bytes:
        return _BSTR_HEADS[len(value)] + value if len(value) < 256 else cbor.bstr_head(len(value)) + value
    if t is int and -(1 << 64) <= value < 1 << 64:
        return cbor2.dumps(value)  # what the encoder writes for these, without its setup
    try:
        return p.encode(value)
    except MdocEncodeError as exc:  # what p.encode raises for a value CBOR cannot carry
        raise MdocEncodeError(f"IssuerSignedItem {element_identifier!r}: {exc}") from exc


HASHES = {alg: getattr(hashlib, name) for alg, name in DIGEST_ALGORITHMS.items()}
"""The ``hashlib`` constructor of each MSO digestAlgorithm."""


def item_digest(raw: bytes, algorithm: str = "SHA-256") -> bytes:
    """Digest of ``#6.24(raw)``: the whole tagged IssuerSignedItemBytes (§9.1.2.5)."""
    hash_fn = HASHES.get(algorithm)
    if hash_fn is None:
        raise MdocEncodeError(f"unsupported digest algorithm {algorithm!r}")
    return hash_fn(cbor.tag24_bytes(raw)).digest()


_TAG = cbor.CBORTag
_ISSUER_SIGNED_KEYS = frozenset({"nameSpaces", "issuerAuth"})


@dataclass(frozen=True)
class IssuerSigned:
    """``IssuerSigned = {? "nameSpaces": IssuerNameSpaces, "issuerAuth": COSE_Sign1}``.

    ``name_spaces`` maps each namespace to the exact IssuerSignedItem bytes (tag 24 removed).
    """

    name_spaces: Mapping[str, tuple[bytes, ...]] = field(hash=False)
    issuer_auth: Sign1

    @classmethod
    def from_items(cls, items: Mapping[str, Iterable[IssuerSignedItem]], issuer_auth: Sign1) -> IssuerSigned:
        return cls({ns: tuple(i.raw for i in its) for ns, its in items.items()}, issuer_auth)

    def items(self) -> dict[str, tuple[IssuerSignedItem, ...]]:
        """Parse the items (do it after their digests verified)."""
        out: dict[str, tuple[IssuerSignedItem, ...]] = {}
        for ns, raws in self.name_spaces.items():
            parsed = []
            for i, raw in enumerate(raws):
                try:
                    parsed.append(IssuerSignedItem.decode(raw))
                except MdocDecodeError as exc:
                    raise MdocDecodeError(f"nameSpaces[{ns!r}][{i}]: {exc}") from exc
            out[ns] = tuple(parsed)
        return out

    def mso(self) -> MobileSecurityObject:
        """Parse the MSO in issuerAuth (do it after the issuer signature verified)."""
        if self.issuer_auth.payload is None:
            raise MdocDecodeError("issuerAuth: payload is nil, expected MobileSecurityObjectBytes")
        return MobileSecurityObject.decode(self.issuer_auth.payload)

    def select(self, wanted: Mapping[str, Iterable[str]]) -> IssuerSigned:
        """Keep only the items named in ``wanted`` (selective disclosure, §8.3.2.1.2.2)."""
        chosen: dict[str, tuple[bytes, ...]] = {}
        items = self.items()
        for ns, ids in wanted.items():
            ids = set(ids)
            kept = tuple(i.raw for i in items.get(ns, ()) if i.element_identifier in ids)
            if kept:
                chosen[ns] = kept
        return IssuerSigned(chosen, self.issuer_auth)

    def to_cbor(self) -> dict:
        out: dict[str, Any] = {}
        if self.name_spaces:
            out["nameSpaces"] = {
                ns: [cbor.CBORTag(24, raw) for raw in raws] for ns, raws in self.name_spaces.items()
            }
        out["issuerAuth"] = self.issuer_auth.to_cbor_array()
        return out

    def encode(self) -> bytes:
        """``p.encode(self.to_cbor())``; the usual shape written directly by :func:`_encode_issued`."""
        out = _encode_issued(self)
        return out if out is not None else p.encode(self.to_cbor())

    @classmethod
    def from_cbor(cls, value: Any, where: str = "IssuerSigned") -> IssuerSigned:
        m = value if type(value) is dict else p.as_map(p.load(value, where), where)
        if not _ISSUER_SIGNED_KEYS.issuperset(m):  # the CDDL map is closed: a mangled "nameSpaces" must not vanish silently
            unknown = [k for k in m if k not in _ISSUER_SIGNED_KEYS]
            raise MdocDecodeError(f"{where}: unexpected key(s) {', '.join(sorted(map(repr, unknown)))}")
        name_spaces: dict[str, tuple[bytes, ...]] = {}
        ns_map = m.get("nameSpaces")
        if type(ns_map) is not dict:
            ns_map = p.field(m, "nameSpaces", Mapping, where, optional=True) or {}
        if "nameSpaces" in m and not ns_map:
            raise MdocDecodeError(f"{where}.nameSpaces: present but empty")
        for ns, arr in ns_map.items():
            if type(ns) is str and type(arr) is list and arr:  # the usual shape, checked at C speed
                raws = [v.value for v in arr if type(v) is _TAG and v.tag == 24]
                if len(raws) == len(arr) and all(type(r) is bytes for r in raws):
                    name_spaces[ns] = tuple(raws)
                    continue
            if not isinstance(ns, str):
                raise MdocDecodeError(f"{where}.nameSpaces: namespace keys must be text")
            arr = p.as_array(arr, f"{where}.nameSpaces[{ns!r}]")
            if not arr:
                raise MdocDecodeError(f"{where}.nameSpaces[{ns!r}]: empty array")
            name_spaces[ns] = tuple(
                p.embedded_raw(v, f"{where}.nameSpaces[{ns!r}][{i}]") for i, v in enumerate(arr)
            )
        if "issuerAuth" not in m:
            raise MdocDecodeError(f"{where}: missing 'issuerAuth'")
        try:
            issuer_auth = Sign1.decode(m["issuerAuth"])
        except CoseError as exc:
            raise MdocDecodeError(f"{where}.issuerAuth: {exc}") from exc
        return p.make(cls, name_spaces=name_spaces, issuer_auth=issuer_auth)

    decode = from_cbor


_NAME_SPACES_KEY, _ISSUER_AUTH_KEY = cbor.tstr("nameSpaces"), cbor.tstr("issuerAuth")
_X5CHAIN_KEY = b"\x18\x21"  # the unprotected header label 33


def _encode_issued(issued: IssuerSigned) -> bytes | None:
    """What ``p.encode(issued.to_cbor())`` writes, for the shape issuing makes (a dict of
    text namespaces to tuples or lists of item bytes; a COSE_Sign1 with bytes for its
    protected header, payload and signature), joined from heads and the bytes themselves:
    the registry stores each MSO it signs encoded so, and the general encoder first rebuilds
    a tag-24 object per item and walks them all. ``None`` for any other shape (the encoder
    then writes it, or raises); tests/test_mdoc_fastpaths.py compares the two."""
    name_spaces, auth = issued.name_spaces, issued.issuer_auth
    protected, unprotected, payload, signature = auth.protected_bytes, auth.unprotected, auth.payload, auth.signature
    if (type(name_spaces) is not dict or type(protected) is not bytes or type(unprotected) is not dict
            or type(payload) is not bytes or type(signature) is not bytes):
        return None
    parts = [b"\xa2" + _NAME_SPACES_KEY + cbor.map_head(len(name_spaces)) if name_spaces else b"\xa1"]
    tag24_head, bstr_head = cbor.tag24_head, cbor.bstr_head
    for ns, raws in name_spaces.items():
        if type(ns) is not str or (type(raws) is not tuple and type(raws) is not list):
            return None
        parts += (cbor.tstr(ns), cbor.array_head(len(raws)))
        for raw in raws:
            if type(raw) is not bytes:
                return None
            parts += (tag24_head(len(raw)), raw)
    chain = unprotected.get(33) if len(unprotected) == 1 else None
    parts += (_ISSUER_AUTH_KEY, b"\x84", bstr_head(len(protected)), protected,
              b"\xa1" + _X5CHAIN_KEY + bstr_head(len(chain)) + chain if type(chain) is bytes
              else p.encode(unprotected),
              bstr_head(len(payload)), payload, bstr_head(len(signature)), signature)
    return b"".join(parts)


def is_issuer_signed(data: bytes) -> bool:
    """Whether ``data`` is shaped as an IssuerSigned (a map with ``issuerAuth``, no
    ``documents``) rather than a DeviceResponse, to choose the verifier; nothing is checked."""
    try:
        top = cbor.loads(data)
    except cbor.CborError:
        return False
    return isinstance(top, dict) and "issuerAuth" in top and "documents" not in top
