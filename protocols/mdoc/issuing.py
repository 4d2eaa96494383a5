"""Issuing: IssuerSignedItems with fresh salts, the MSO, and issuerAuth (ISO/IEC 18013-5:2021 §9.1.2).

Pure: the caller passes the times and may pass the randomness source; the document signer
key stays behind a :class:`~protocols.cose.CoseSigner`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import struct
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols import cbor
from protocols.cose import CoseKey, CoseKeyError, CoseSigner, Sign1
from protocols.mdoc.errors import IssuingError
from protocols.mdoc.issuer_signed import (
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
    DIGEST_ALGORITHMS,
    DeviceKeyInfo,
    MobileSecurityObject,
    MsoStatus,
    ValidityInfo,
    encode_mso_parts,
)

Rng = Callable[[int], bytes]
SALT_BYTES = 16  # §9.1.2.5: random "shall be at least 16 bytes"


def _digest_ids(count: int, rng: Rng, pool: bytes = b"") -> list[int]:
    """``count`` unique 31-bit digestIDs, first from ``pool`` (4 bytes each), then from ``rng``."""
    if len(pool) == 4 * count:  # the usual case: one unpack, and the 31-bit values are all distinct
        first = [v >> 1 for v in struct.unpack(f">{count}I", pool)]
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
    namespaces: Mapping[str, Mapping[str, Any]], rng: Rng = secrets.token_bytes
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
    if not signed.replace(microsecond=0) <= valid_from.replace(microsecond=0) < valid_until:
        raise IssuingError("need signed <= valid_from < valid_until")
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
    rng: Rng = secrets.token_bytes,
) -> IssuerSigned:
    """Issue one mdoc: items with fresh salts and digestIDs, the MSO, signed by ``signer``.

    The usual shape (SHA-256/384/512, no keyAuthorizations, aware times, an EC device key)
    is written in one pass by :func:`_build_fast`: item bytes, digests and the MSO's
    valueDigests map together, the MSO around them, no intermediate objects. It draws the
    same randomness in the same order and gives the same bytes as :func:`_build_general`
    (tests/test_mdoc_fastpaths.py checks it)."""
    signed = signed or valid_from
    if (key_authorizations is None and digest_alg in HASHES and _aware(signed) and _aware(valid_from)
            and _aware(valid_until) and (expected_update is None or _aware(expected_update))
            and isinstance(device_public_key, ec.EllipticCurvePublicKey)
            and signed.replace(microsecond=0) <= valid_from.replace(microsecond=0) < valid_until and ds_chain):
        out = _build_fast(namespaces, doc_type, device_public_key, signer, ds_chain, signed, valid_from,
                          valid_until, expected_update, status, digest_alg, rng)
        if out is not None:
            return out
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
    rng: Rng = secrets.token_bytes,
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
_TAG24_HEADS = tuple(b"\xd8\x18" + cbor.bstr_head(n) for n in range(256))
_PACK_ID = struct.Struct(">BI").pack  # a uint of 0x10000 and more (31-bit digestIDs): 0x1a and 4 bytes
_DIGEST_HEAD = {"SHA-256": b"\x58\x20", "SHA-384": b"\x58\x30", "SHA-512": b"\x58\x40"}
_CRV = {"secp256r1": (1, 32), "secp384r1": (2, 48), "secp521r1": (3, 66)}
_X962, _UNCOMPRESSED = Encoding.X962, PublicFormat.UncompressedPoint


def _aware(t: Any) -> bool:
    return type(t) is dt.datetime and t.utcoffset() is not None


def _build_fast(namespaces, doc_type, device_public_key, signer, ds_chain, signed, valid_from, valid_until,
                expected_update, status, digest_alg, rng) -> IssuerSigned | None:
    """:func:`_build_general`'s bytes in one pass, or ``None`` (nothing drawn yet) for a
    shape it does not write, which then takes the general path."""
    if type(doc_type) is not str or (status is not None and type(status) is not MsoStatus):
        return None
    curve = _CRV.get(device_public_key.curve.name)
    if curve is None:
        return None
    for ns, elements in namespaces.items():
        if type(ns) is not str or not elements or not all(type(k) is str for k in elements):
            return None
    crv, size = curve
    point = device_public_key.public_bytes(_X962, _UNCOMPRESSED)
    key_bytes = b"".join((b"\xa1", _DEVICE_KEY, b"\xa4\x01\x02\x20", cbor.uint_bytes(crv), b"\x21",
                          cbor.bstr_head(size), point[1:1 + size], b"\x22", cbor.bstr_head(size), point[1 + size:]))
    hash_fn = HASHES[digest_alg]
    heads, ident_part, value_bytes, pack_id, uint = _TAG24_HEADS, _ident_part, encode_value, _PACK_ID, cbor.uint_bytes
    item_head, random_part, digest_head = _ITEM_HEAD, _RANDOM_PART, _DIGEST_HEAD[digest_alg]
    ident_parts, str_heads = _IDENT_PARTS, _STR_HEADS
    name_spaces: dict[str, tuple[bytes, ...]] = {}
    digest_parts = [cbor.map_head(len(namespaces))]
    for ns, elements in namespaces.items():
        n = len(elements)
        pool = rng(n * (4 + SALT_BYTES))  # one draw for every salt and digestID of the namespace
        if len(pool) != n * (4 + SALT_BYTES):
            raise IssuingError(f"rng returned {len(pool)} bytes, asked for {n * (4 + SALT_BYTES)}")
        salts = pool[4 * n:]
        raws = []
        entries = [cbor.tstr(ns), cbor.map_head(n)]
        for digest_id, start, ident, value in zip(_digest_ids(n, rng, pool[:4 * n]), range(0, n * SALT_BYTES, SALT_BYTES),
                                                  elements.keys(), elements.values(), strict=True):
            id_bytes = pack_id(0x1A, digest_id) if digest_id >= 0x10000 else uint(digest_id)
            part = ident_parts.get(ident) or ident_part(ident)
            t = type(value)
            if t is str and len(value) < 64:  # at most 252 bytes of UTF-8: a one-byte length head
                encoded = value.encode()
                encoded = str_heads[len(encoded)] + encoded
            elif t is bool:
                encoded = b"\xf5" if value else b"\xf4"
            else:
                encoded = value_bytes(ident, value)
            raw = b"".join((item_head, id_bytes, random_part, salts[start:start + SALT_BYTES], part, encoded))
            raws.append(raw)
            n_raw = len(raw)
            digest = hash_fn((heads[n_raw] if n_raw < 256 else b"\xd8\x18" + cbor.bstr_head(n_raw)) + raw).digest()
            entries += (id_bytes, digest_head, digest)  # over the tagged IssuerSignedItemBytes (§9.1.2.5)
        name_spaces[ns] = tuple(raws)
        digest_parts += entries
    mso = encode_mso_parts("1.0", digest_alg, b"".join(digest_parts), key_bytes, doc_type, signed, valid_from,
                           valid_until, expected_update, status)
    if mso is None:  # not reached: the caller checked the times
        raise IssuingError("MSO times must be aware datetimes")
    x5chain: bytes | list[bytes] = ds_chain[0] if len(ds_chain) == 1 else list(ds_chain)
    return IssuerSigned(name_spaces, Sign1.create(signer, cbor.tag24_bytes(mso), unprotected={33: x5chain}))
