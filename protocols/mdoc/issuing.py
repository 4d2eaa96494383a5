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

from protocols import cbor
from protocols.cose import CoseKey, CoseKeyError, CoseSigner, Sign1
from protocols.mdoc.errors import IssuingError
from protocols.mdoc.issuer_signed import HASHES, IssuerSigned, IssuerSignedItem
from protocols.mdoc.mso import (
    DIGEST_ALGORITHMS,
    DeviceKeyInfo,
    MobileSecurityObject,
    MsoStatus,
    ValidityInfo,
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
    """Issue one mdoc: items with fresh salts and digestIDs, the MSO, signed by ``signer``."""
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
