"""Issuing: IssuerSignedItems with fresh salts, the MSO, and issuerAuth (ISO/IEC 18013-5:2021 §9.1.2).

Pure: the caller passes the times and may pass the randomness source; the document signer
key stays behind a :class:`~protocols.cose.CoseSigner`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import os
import struct
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols import cbor
from protocols.cose import CoseKey, CoseKeyError, CoseSigner, Sign1
from protocols.cose._headers import encode_protected
from protocols.cose.algorithms import HEADER_ALG
from protocols.cose.sign1 import sig_structure
from protocols.mdoc.errors import IssuingError
from protocols.mdoc.issuer_signed import (
    _DATE,
    _DATES,
    _IDENT_PARTS,
    _STR_HEADS,
    HASHES,
    IssuerSigned,
    IssuerSignedItem,
    _ident_part,
    encode_value,
)
from protocols.mdoc.mso import (
    _DEVICE_KEY,
    _MSO_KEYS,
    _VALIDITY_KEYS,
    DIGEST_ALGORITHMS,
    DeviceKeyInfo,
    MobileSecurityObject,
    MsoStatus,
    ValidityInfo,
    _encode_status,
)

Rng = Callable[[int], bytes]
_token_bytes = os.urandom
"""The default randomness: what ``secrets.token_bytes`` returns (it calls ``os.urandom``
through two Python frames), called directly."""
SALT_BYTES = 16  # §9.1.2.5: random "shall be at least 16 bytes"


_UNPACK: dict[int, Callable[[bytes], tuple[int, ...]]] = {}
_SHIFT = operator.rshift


def _digest_ids(count: int, rng: Rng, pool: bytes = b"") -> list[int]:
    """``count`` unique 31-bit digestIDs, first from ``pool`` (4 bytes each), then from ``rng``."""
    if len(pool) == 4 * count:  # the usual case: one unpack, and the 31-bit values are all distinct
        unpack = _UNPACK.get(count)
        if unpack is None:
            unpack = struct.Struct(f">{count}I").unpack
            if count <= 256:  # namespaces have a few dozen elements: a small table
                _UNPACK[count] = unpack
        first = list(map(_SHIFT, unpack(pool), itertools.repeat(1, count)))  # 31-bit: small CBOR uints
        if len(set(first)) == count:
            return first
    ids: set[int] = set()
    out: list[int] = []
    offset = 0
    while len(out) < count:
        if offset + 4 <= len(pool):
            chunk = pool[offset:offset + 4]
            offset += 4
        else:
            chunk = rng(4)
        candidate = int.from_bytes(chunk, "big") >> 1  # 31-bit, stays a small CBOR uint
        if candidate not in ids:
            ids.add(candidate)
            out.append(candidate)
    return out


def make_items(
    namespaces: Mapping[str, Mapping[str, Any]], rng: Rng = _token_bytes
) -> dict[str, tuple[IssuerSignedItem, ...]]:
    """One IssuerSignedItem per element: random unique digestIDs, 16-byte random salts."""
    out: dict[str, tuple[IssuerSignedItem, ...]] = {}
    for ns, elements in namespaces.items():
        if not isinstance(ns, str) or not elements:
            raise IssuingError(f"namespace {ns!r}: must be text with at least one element")
        n = len(elements)
        pool = rng(n * (4 + SALT_BYTES))  # one draw for every salt and digestID of the namespace
        salts = pool[4 * n:]
        if len(pool) != n * (4 + SALT_BYTES):
            raise IssuingError(f"rng returned {len(pool)} bytes, asked for {n * (4 + SALT_BYTES)}")
        ids = _digest_ids(n, rng, pool[:4 * n])
        randoms = [salts[SALT_BYTES * i:SALT_BYTES * (i + 1)] for i in range(n)]
        out[ns] = tuple(map(IssuerSignedItem.create, ids, randoms, elements.keys(), elements.values()))
    return out


def issue_mso(
    items: Mapping[str, tuple[IssuerSignedItem, ...]],
    doc_type: str,
    device_public_key: ec.EllipticCurvePublicKey | CoseKey,
    *,
    signed: dt.datetime,
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    expected_update: dt.datetime | None = None,
    status: MsoStatus | None = None,
    digest_alg: str = "SHA-256",
    key_authorizations: Mapping | None = None,
) -> MobileSecurityObject:
    """The MSO over ``items`` (digest of each tagged IssuerSignedItemBytes)."""
    if digest_alg not in DIGEST_ALGORITHMS:
        raise IssuingError(f"unsupported digest algorithm {digest_alg!r}")
    for name, t in (("signed", signed), ("valid_from", valid_from), ("valid_until", valid_until)):
        if t.tzinfo is None:
            raise IssuingError(f"{name} must be an aware datetime")
    if not signed.replace(microsecond=0) <= valid_from.replace(microsecond=0):
        raise IssuingError("need signed <= valid_from < valid_until")
    why = ValidityInfo(_whole(signed), _whole(valid_from), _whole(valid_until)).order_error()
    if why is not None:  # as the MSO writes them: tdates in whole seconds
        raise IssuingError(f"need signed <= valid_from < valid_until in whole seconds: {why}")
    try:
        key = device_public_key if isinstance(device_public_key, CoseKey) else CoseKey.from_public_key(device_public_key)
    except CoseKeyError as exc:
        raise IssuingError(f"device key: {exc}") from exc
    hash_fn, head = HASHES[digest_alg], cbor.bstr_head
    return MobileSecurityObject(
        digest_algorithm=digest_alg,
        value_digests={ns: {i.digest_id: hash_fn(b"\xd8\x18" + head(len(i.raw)) + i.raw).digest() for i in its}
                       for ns, its in items.items()},  # each over the tagged IssuerSignedItemBytes (§9.1.2.5)
        device_key_info=DeviceKeyInfo(key, key_authorizations),
        doc_type=doc_type,
        validity_info=ValidityInfo(signed, valid_from, valid_until, expected_update),
        status=status,
    )


def sign_mso(mso: MobileSecurityObject, signer: CoseSigner, ds_chain: list[bytes]) -> Sign1:
    """issuerAuth: untagged COSE_Sign1, alg protected, x5chain (33) unprotected (§9.1.2.4)."""
    if not ds_chain:
        raise IssuingError("ds_chain must hold at least the document signer certificate")
    x5chain: bytes | list[bytes] = ds_chain[0] if len(ds_chain) == 1 else list(ds_chain)
    return Sign1.create(signer, mso.to_bytes(), unprotected={33: x5chain})


def build_issuer_signed(
    namespaces: Mapping[str, Mapping[str, Any]] | PreparedNamespaces,
    doc_type: str,
    device_public_key: ec.EllipticCurvePublicKey | CoseKey,
    signer: CoseSigner,
    ds_chain: list[bytes],
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    *,
    signed: dt.datetime | None = None,
    expected_update: dt.datetime | None = None,
    status: MsoStatus | None = None,
    digest_alg: str = "SHA-256",
    key_authorizations: Mapping | None = None,
    rng: Rng = _token_bytes,
) -> IssuerSigned:
    """Issue one mdoc: items with fresh salts and digestIDs, the MSO, signed by ``signer``.

    The usual shape (SHA-256/384/512, no keyAuthorizations, aware times, an EC device key
    or its :class:`~protocols.cose.CoseKey`) is written in one pass by :func:`_build_fast`:
    item bytes, digests and the MSO's valueDigests map together, the MSO around them, no
    intermediate objects. It draws the
    same randomness in the same order and gives the same bytes as :func:`_build_general`
    (tests/test_mdoc_fastpaths.py checks it). ``namespaces`` may be a
    :class:`PreparedNamespaces`: the elements encoded once for a batch of MSOs.

    A ``CoseKey`` device key goes into the MSO as it is (its x and y, no conversion): the
    caller validated the point, as the issuer's ``device_key_from_spki`` does when it loads
    the key the secure element sent. An EC key object is serialised for each MSO."""
    signed = signed or valid_from
    if (key_authorizations is None and digest_alg in HASHES and _aware(signed) and _aware(valid_from)
            and _aware(valid_until) and (expected_update is None or _aware(expected_update))
            and (type(device_public_key) in _EC_PUBLIC_TYPES or type(device_public_key) is CoseKey
                 or _ec_public(device_public_key))
            and _in_order(signed, valid_from, valid_until) and ds_chain):
        out = _build_fast(namespaces, doc_type, device_public_key, signer, ds_chain, signed, valid_from,
                          valid_until, expected_update, status, digest_alg, rng)
        if out is not None:
            return out
    if type(namespaces) is PreparedNamespaces:
        namespaces = namespaces.namespaces
    return _build_general(namespaces, doc_type, device_public_key, signer, ds_chain, valid_from, valid_until,
                          signed=signed, expected_update=expected_update, status=status, digest_alg=digest_alg,
                          key_authorizations=key_authorizations, rng=rng)


def _build_general(
    namespaces: Mapping[str, Mapping[str, Any]],
    doc_type: str,
    device_public_key: ec.EllipticCurvePublicKey | CoseKey,
    signer: CoseSigner,
    ds_chain: list[bytes],
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    *,
    signed: dt.datetime | None = None,
    expected_update: dt.datetime | None = None,
    status: MsoStatus | None = None,
    digest_alg: str = "SHA-256",
    key_authorizations: Mapping | None = None,
    rng: Rng = _token_bytes,
) -> IssuerSigned:
    """:func:`build_issuer_signed` step by step: items, MSO, issuerAuth."""
    items = make_items(namespaces, rng)
    mso = issue_mso(
        items,
        doc_type,
        device_public_key,
        signed=signed or valid_from,
        valid_from=valid_from,
        valid_until=valid_until,
        expected_update=expected_update,
        status=status,
        digest_alg=digest_alg,
        key_authorizations=key_authorizations,
    )
    return IssuerSigned.from_items(items, sign_mso(mso, signer, ds_chain))


_ITEM_HEAD = b"\xa4" + cbor.tstr("digestID")
_RANDOM_PART = cbor.tstr("random") + cbor.bstr_head(SALT_BYTES)
_PACK_ID = struct.Struct(">BI").pack  # a uint of 0x10000 and more (31-bit digestIDs): 0x1a and 4 bytes
_DIGEST_HEAD = {"SHA-256": b"\x58\x20", "SHA-384": b"\x58\x30", "SHA-512": b"\x58\x40"}
_CRV = {"secp256r1": (1, 32), "secp384r1": (2, 48), "secp521r1": (3, 66)}
_X962, _UNCOMPRESSED = Encoding.X962, PublicFormat.UncompressedPoint
_ID5 = len(_ITEM_HEAD) + 5  # where an item's encoded 31-bit digestID ends (5 bytes: 0x1a and 4)
_FIXED = _ID5 + len(_RANDOM_PART) + SALT_BYTES  # an item's bytes before its identifier, with such an ID


def _aware(t: Any) -> bool:
    return type(t) is dt.datetime and t.utcoffset() is not None


_EC_PUBLIC_TYPES: set[type] = set()


def _ec_public(key: Any) -> bool:
    """``isinstance(key, ec.EllipticCurvePublicKey)``; the ABC check once per concrete class."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    if len(_EC_PUBLIC_TYPES) < 8:
        _EC_PUBLIC_TYPES.add(type(key))
    return True


def _whole(t: dt.datetime) -> dt.datetime:
    """``t.replace(microsecond=0)``, without the call when there is nothing to cut (the usual case)."""
    return t if t.microsecond == 0 else t.replace(microsecond=0)


def _in_order(signed: dt.datetime, valid_from: dt.datetime, valid_until: dt.datetime) -> bool:
    """``signed <= valid_from < valid_until`` as issue_mso checks it, to the second: as the MSO
    writes them (tdates without fractions), so that validUntil is later than validFrom in
    the MSO itself (ISO/IEC 18013-5 9.1.2.4), not only before the fractions are cut; when
    ``signed`` is ``valid_from`` (the default) the first holds as it is."""
    if signed is valid_from:
        return _whole(valid_from) < _whole(valid_until)
    return _whole(signed) <= _whole(valid_from) < _whole(valid_until)


class PreparedNamespaces:
    """Data elements encoded once for several MSOs (a holder's batch of slots).

    What does not change between the MSOs of a batch is encoded here: each namespace's
    name and map head, and for every element its ``"elementIdentifier": id, "elementValue":
    value`` bytes with the tag-24 head and item head in front (for the usual 31-bit
    digestID of 5 bytes). :func:`build_issuer_signed` takes it in place of the namespaces
    mapping and only adds the fresh digestIDs and salts: the same bytes as from the mapping
    (tests/test_mdoc_fastpaths.py checks it). Encoding errors are raised here, typed as they
    are from the mapping (:class:`~protocols.mdoc.errors.MdocEncodeError`). Values are taken
    as they are now: later changes to a mutable value are not seen.
    """

    __slots__ = ("namespaces", "_parts")

    def __init__(self, namespaces: Mapping[str, Mapping[str, Any]]) -> None:
        self.namespaces = {ns: dict(elements) for ns, elements in namespaces.items()}
        self._parts = _prepare(self.namespaces)


def prepare_namespaces(namespaces: Mapping[str, Mapping[str, Any]]) -> PreparedNamespaces:
    """``namespaces`` encoded once, to issue several MSOs over the same elements."""
    return PreparedNamespaces(namespaces)


def _prepare(namespaces: Mapping[str, Mapping[str, Any]]) -> tuple | None:
    """Per namespace ``(ns, ns_bytes, n, prefixes, tails, raw_slices, split, mask)`` (see
    :func:`_bulk` for the last two); ``None`` for a shape the fast path does not write (the
    general path then decides, and raises)."""
    out = []
    ident_parts, str_heads, ident_part, value_bytes = _IDENT_PARTS, _STR_HEADS, _ident_part, encode_value
    item_heads, dates = _HEADS, _DATES
    for ns, elements in namespaces.items():
        if type(ns) is not str or not elements:
            return None
    for ns, elements in namespaces.items():
        n = len(elements)
        tails, heads = [], []
        for ident, value in elements.items():
            if type(ident) is not str:  # checked here rather than in a pass of its own: the general path raises
                return None
            t = type(value)
            if t is str and len(value) < 64:  # at most 252 bytes of UTF-8: a one-byte length head
                encoded = value.encode()
                encoded = str_heads[len(encoded)] + encoded
            elif t is bool:
                encoded = b"\xf5" if value else b"\xf4"
            elif t is _DATE:  # encode_value's table of full-dates, without the call
                encoded = dates.get(value) or value_bytes(ident, value)
            else:
                encoded = value_bytes(ident, value)
            tail = (ident_parts.get(ident) or ident_part(ident)) + encoded
            tails.append(tail)
            heads.append(item_heads.get(len(tail)) or _item_head(len(tail)))
        prefixes, raw_slices = zip(*heads, strict=True)
        out.append((ns, cbor.tstr(ns) + cbor.map_head(n), n, prefixes, tuple(tails), raw_slices) + _bulk(n))
    return tuple(out)


_HEADS: dict[int, tuple[bytes, slice]] = {}
"""By an item's tail length (identifier and value): its prefix up to the digestID's 4 bytes
(tag 24, bstr head, item head, ``"digestID"`` and 0x1a) and the slice of the tagged bytes
that is the item itself."""


def _item_head(tail_len: int) -> tuple[bytes, slice]:
    hit = _HEADS.get(tail_len)
    if hit is None:
        head = cbor.tag24_head(_FIXED + tail_len)
        hit = (head + _ITEM_HEAD + b"\x1a", slice(len(head), None))
        if len(_HEADS) >= 4096:
            _HEADS.clear()
        _HEADS[tail_len] = hit
    return hit


_BULK: dict[int, tuple[Callable[[bytes], tuple[bytes, ...]], int]] = {}


def _bulk(n: int) -> tuple[Callable[[bytes], tuple[bytes, ...]], int]:
    """For a namespace of ``n`` elements: ``split``, which cuts n 4-byte digestIDs and n
    16-byte salts out of a pool, and ``mask``, 0x7fffffff in each of n 4-byte words (a
    big-endian integer of the pool's n ID words, shifted right by one bit and masked, is each
    word shifted right by one: n 31-bit IDs in three integer operations)."""
    hit = _BULK.get(n)
    if hit is None:
        hit = (struct.Struct(">" + "4s" * n + f"{SALT_BYTES}s" * n).unpack, int("7fffffff" * n, 16))
        if n <= 256:
            _BULK[n] = hit
    return hit


def _build_fast(namespaces, doc_type, device_public_key, signer, ds_chain, signed, valid_from, valid_until,
                expected_update, status, digest_alg, rng) -> IssuerSigned | None:
    """:func:`_build_general`'s bytes in one pass, or ``None`` (nothing drawn yet) for a
    shape it does not write, which then takes the general path."""
    if type(doc_type) is not str or (status is not None and type(status) is not MsoStatus):
        return None
    if type(device_public_key) is CoseKey:
        # the point as the caller holds it, no public_bytes: a CoseKey is EC2 on crv 1-3 with
        # x and y of the curve's size (its __post_init__), what the deviceKey heads below write
        crv, x, y = device_public_key.crv, device_public_key.x, device_public_key.y
    else:
        curve = _CRV.get(device_public_key.curve.name)
        if curve is None:
            return None
        crv, size = curve
        point = device_public_key.public_bytes(_X962, _UNCOMPRESSED)  # OpenSSL converts the point each time
        x, y = point[1:1 + size], point[1 + size:]
    parts = namespaces._parts if type(namespaces) is PreparedNamespaces else _prepare(namespaces)
    if parts is None:
        return None
    hash_fn, digest_head, random_part, pack_id = HASHES[digest_alg], _DIGEST_HEAD[digest_alg], _RANDOM_PART, _PACK_ID
    name_spaces: dict[str, tuple[bytes, ...]] = {}
    digest_parts = [_SMALL_MAP_HEADS[len(parts)] if len(parts) < 24 else cbor.map_head(len(parts))]
    for ns, ns_bytes, n, prefixes, tails, raw_slices, split, mask in parts:
        pool = rng(n * (4 + SALT_BYTES))  # one draw for every salt and digestID of the namespace
        if len(pool) != n * (4 + SALT_BYTES):
            raise IssuingError(f"rng returned {len(pool)} bytes, asked for {n * (4 + SALT_BYTES)}")
        # the 31-bit IDs (each 4-byte word >> 1, as _digest_ids draws them) as 4 big-endian
        # bytes, and the salts: cut out of the pool in one call, not one slice or pack per element
        fields = split(((int.from_bytes(pool[:4 * n], "big") >> 1) & mask).to_bytes(4 * n, "big") + pool[4 * n:])
        ids, salts = fields[:n], fields[n:]
        digest_parts.append(ns_bytes)
        # distinct, and none below 0x10000 (no ID starts with two zero bytes): all 5-byte heads
        if len(set(ids)) == n and min(ids) >= b"\x00\x01":
            raws = []
            for prefix, id4, salt, tail, raw_slice in zip(prefixes, ids, salts, tails, raw_slices, strict=True):
                tagged = b"".join((prefix, id4, random_part, salt, tail))
                raws.append(tagged[raw_slice])
                digest_parts += (b"\x1a", id4, digest_head, hash_fn(tagged).digest())  # over the tagged item (§9.1.2.5)
            name_spaces[ns] = tuple(raws)
            continue
        # a repeated ID (drawn again from rng, as _digest_ids does) or one below 0x10000 (a
        # namespace in a few thousand): item by item, with the shorter heads
        raws = []
        for digest_id, salt, tail in zip(_digest_ids(n, rng, pool[:4 * n]), salts, tails, strict=True):
            id_bytes = pack_id(0x1A, digest_id) if digest_id >= 0x10000 else cbor.uint_bytes(digest_id)
            raw = b"".join((_ITEM_HEAD, id_bytes, random_part, salt, tail))
            raws.append(raw)
            digest_parts += (id_bytes, digest_head, hash_fn(cbor.tag24_bytes(raw)).digest())
        name_spaces[ns] = tuple(raws)
    times = _VALIDITY[expected_update is not None]
    t_signed = _TDATES.get(signed) or _tdate(signed)
    t_from = t_signed if valid_from is signed else _TDATES.get(valid_from) or _tdate(valid_from)
    dki_x, dki_y = _DKI_HEADS[crv]
    mso = b"".join((
        _MSO_HEADS.get((status is not None, digest_alg)) or _mso_head(status is not None, digest_alg),
        b"".join(digest_parts), dki_x, x, dki_y, y,
        _DOC_TYPES.get((doc_type, expected_update is not None)) or _doc_type_part(doc_type, expected_update is not None),
        times[0], t_signed, times[1], t_from, times[2], _TDATES.get(valid_until) or _tdate(valid_until),
        b"" if expected_update is None else times[3] + _tdate(expected_update),
        b"" if status is None else _MSO_STATUS_KEY + _encode_status(status),
    ))
    x5chain: bytes | list[bytes] = ds_chain[0] if len(ds_chain) == 1 else list(ds_chain)
    alg = signer.alg
    sig = _SIG_PREFIX.get(alg) if type(alg) is int else None
    if sig is None:
        if type(alg) is not int:
            return IssuerSigned(name_spaces, Sign1.create(signer, cbor.tag24_bytes(mso), unprotected={33: x5chain}))
        protected = encode_protected({HEADER_ALG: alg})
        sig = _SIG_PREFIX[alg] = (protected, sig_structure(protected, b"", b"")[:-1])  # all but the payload's head
    n = len(mso)  # an MSO is a few hundred bytes to a few KB: a 2-byte length, written here
    payload = (cbor.TAG24_HEADS[n] if n < 256 else _TAG24_BSTR2(0xD818, 0x59, n) if n < 0x10000
               else b"\xd8\x18" + cbor.bstr_head(n)) + mso
    n = len(payload)
    signature = signer.sign(b"".join((sig[1], _BSTR2(0x59, n) if 0x100 <= n < 0x10000 else cbor.bstr_head(n),
                                      payload)))
    out = object.__new__(IssuerSigned)  # the frozen dataclass without its __init__: the fields are made here
    out.__dict__.update(name_spaces=name_spaces, issuer_auth=Sign1._of(
        sig[0], {HEADER_ALG: alg}, {33: x5chain}, payload, signature if type(signature) is bytes else bytes(signature)))
    return out


_SMALL_MAP_HEADS = tuple(bytes([0xA0 | k]) for k in range(24))
_BSTR2 = struct.Struct(">BH").pack  # a bstr head with a 2-byte length (59 nn nn)
_TAG24_BSTR2 = struct.Struct(">HBH").pack  # tag 24 (d8 18), then that head
_SIG_PREFIX: dict[int, tuple[bytes, bytes]] = {}
"""Per COSE alg: the protected header ``{1: alg}`` and the Sig_structure up to the payload."""
_MSO_HEADS: dict[tuple[bool, str], bytes] = {}
_DOC_TYPES: dict[tuple[str, bool], bytes] = {}
_DKI_HEADS = {crv: (b"".join((_MSO_KEYS[3], b"\xa1", _DEVICE_KEY, b"\xa4\x01\x02\x20", cbor.uint_bytes(crv), b"\x21",
                               cbor.bstr_head(size))), b"\x22" + cbor.bstr_head(size))
              for crv, size in _CRV.values()}
"""Per COSE crv: ``"deviceKeyInfo": {"deviceKey": {1: 2, -1: crv, -2:`` and the x head; ``-3:`` and the y head."""
_VALIDITY = {False: _VALIDITY_KEYS[:3], True: _VALIDITY_KEYS}
_MSO_STATUS_KEY = _MSO_KEYS[6]
_TDATES: dict[dt.datetime, bytes] = {}


def _mso_head(with_status: bool, digest_alg: str) -> bytes:
    """The MSO's map head, version, digestAlgorithm and the valueDigests key (CDDL order)."""
    hit = _MSO_HEADS.get((with_status, digest_alg))
    if hit is None:
        hit = _MSO_HEADS[(with_status, digest_alg)] = b"".join((
            b"\xa7" if with_status else b"\xa6", _MSO_KEYS[0], cbor.tstr("1.0"), _MSO_KEYS[1],
            cbor.tstr(digest_alg), _MSO_KEYS[2]))
    return hit


def _doc_type_part(doc_type: str, with_update: bool) -> bytes:
    """``"docType": doc_type, "validityInfo"`` and the validityInfo map head (a bounded table)."""
    hit = _DOC_TYPES.get((doc_type, with_update))
    if hit is None:
        hit = b"".join((_MSO_KEYS[4], cbor.tstr(doc_type), _MSO_KEYS[5], b"\xa4" if with_update else b"\xa3"))
        if len(_DOC_TYPES) >= 64:
            _DOC_TYPES.clear()
        _DOC_TYPES[(doc_type, with_update)] = hit
    return hit


def _tdate(when: dt.datetime) -> bytes:
    """An aware datetime as an encoded tdate (the caller checked it); the instants of a batch recur."""
    hit = _TDATES.get(when)
    if hit is None:
        hit = b"\xc0" + cbor.tstr(cbor.tdate_text(when))
        if len(_TDATES) >= 256:
            _TDATES.clear()
        _TDATES[when] = hit
    return hit
