"""Header handling shared by COSE_Sign1 and COSE_Mac0 (RFC 9052 §3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols import cbor
from protocols.cose.algorithms import HEADER_ALG, HEADER_X5CHAIN
from protocols.cose.errors import CoseDecodeError

TAG_SIGN1 = 18
TAG_MAC0 = 17


def encode_protected(protected: dict) -> bytes:
    """An empty protected header is the empty bstr, not an encoded empty map (§3)."""
    if len(protected) == 1:
        alg = protected.get(HEADER_ALG)
        if type(alg) is int and alg in _ALG_ONLY:
            return _ALG_ONLY[alg]  # {1: alg}, the header of nearly every message
    return cbor.dumps(protected) if protected else b""


_ALG_ONLY = {alg: cbor.dumps({HEADER_ALG: alg}) for alg in (-7, -35, -36, 5)}


_PROTECTED: dict[bytes, dict] = {}
"""Decoded protected headers by their exact bytes (a pure function of them; bounded). Most
messages carry one of a handful, ``{1: -7}`` above all."""
_PROTECTED_MAX = 256


def decode_protected(protected_bytes: bytes, where: str) -> dict:
    if protected_bytes == b"":
        return {}
    hit = _PROTECTED.get(protected_bytes)
    if hit is not None:
        return dict(hit)  # a copy: the caller's dict is its own
    try:
        value = cbor.loads(protected_bytes)
    except cbor.CborDecodeError as exc:
        raise CoseDecodeError(f"{where}: protected header: {exc}") from exc
    if not isinstance(value, Mapping):
        raise CoseDecodeError(f"{where}: protected header must encode a map, got {type(value).__name__}")
    value = dict(value)
    if len(protected_bytes) <= 64 and all(type(v) in (int, str, bytes) for v in value.values()):
        if len(_PROTECTED) >= _PROTECTED_MAX:
            _PROTECTED.clear()
        _PROTECTED[protected_bytes] = dict(value)
    return value


def split_array(data: Any, tag: int, where: str) -> list:
    """Decode (if bytes) and return the 4-element array, with or without its COSE tag."""
    if type(data) is list and len(data) == 4:  # the decoded array, as it comes out of a DeviceResponse
        protected_bytes, unprotected, payload, last = data
        if (type(protected_bytes) is bytes and type(unprotected) is dict and type(last) is bytes
                and (payload is None or type(payload) is bytes)):
            protected = decode_protected(protected_bytes, where)
            if protected.keys().isdisjoint(unprotected):
                return [protected_bytes, protected, dict(unprotected), payload, last]
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            data = cbor.loads(bytes(data))
        except cbor.CborDecodeError as exc:
            raise CoseDecodeError(f"{where}: {exc}") from exc
    if isinstance(data, cbor.CBORTag):
        if data.tag != tag:
            raise CoseDecodeError(f"{where}: unexpected tag {data.tag} (expected {tag} or none)")
        data = data.value
    if not isinstance(data, list | tuple) or len(data) != 4:
        raise CoseDecodeError(f"{where}: must be an array of 4 elements")
    protected_bytes, unprotected, payload, last = data
    if not isinstance(protected_bytes, bytes):
        raise CoseDecodeError(f"{where}: protected header must be a byte string")
    if not isinstance(unprotected, Mapping):
        raise CoseDecodeError(f"{where}: unprotected header must be a map")
    if payload is not None and not isinstance(payload, bytes):
        raise CoseDecodeError(f"{where}: payload must be a byte string or nil")
    if not isinstance(last, bytes):
        raise CoseDecodeError(f"{where}: signature/tag must be a byte string")
    protected = decode_protected(protected_bytes, where)
    overlap = set(protected) & set(unprotected)
    if overlap:
        raise CoseDecodeError(f"{where}: labels {sorted(map(repr, overlap))} in both header buckets")
    return [protected_bytes, protected, dict(unprotected), payload, last]


def header_alg(protected: dict) -> int | None:
    alg = protected.get(HEADER_ALG)
    return alg if isinstance(alg, int) and not isinstance(alg, bool) else None


def header_x5chain(protected: dict, unprotected: dict, where: str) -> list[bytes]:
    """x5chain (label 33, RFC 9360): one bstr or an array of bstr; protected wins."""
    value = protected.get(HEADER_X5CHAIN, unprotected.get(HEADER_X5CHAIN))
    if value is None:
        return []
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, bytes) for v in value):
        return list(value)
    raise CoseDecodeError(f"{where}: x5chain (33) must be a bstr or a non-empty array of bstr")
