"""Small helpers that turn decoded CBOR into typed values with precise errors."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

from protocols import cbor
from protocols.mdoc.errors import MdocDecodeError

_MISSING = object()


def encode(obj: Any) -> bytes:
    """mdoc structures are written with maps in CDDL order (the order Annex D shows);
    preferred (shortest) encodings throughout. See specs/mdoc-encoding.md."""
    try:
        return cbor.dumps(obj, canonical=False)
    except cbor.CborEncodeError as exc:
        from protocols.mdoc.errors import MdocEncodeError

        raise MdocEncodeError(str(exc)) from exc


def make(cls: type, **fields: Any) -> Any:
    """An instance of the frozen dataclass ``cls`` from fields its decoder already checked,
    without the frozen ``__init__`` (one ``object.__setattr__`` per field); for classes
    without ``__post_init__`` or whose ``__post_init__`` check the caller made. Equal,
    hashable and immutable like one built by ``cls(...)`` (tests/test_mdoc_fastpaths.py)."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def load(data: Any, where: str) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            return cbor.loads(bytes(data))
        except cbor.CborDecodeError as exc:
            raise MdocDecodeError(f"{where}: {exc}") from exc
    return data


def as_map(value: Any, where: str) -> Mapping:
    if type(value) is dict:
        return value
    if not isinstance(value, Mapping):
        raise MdocDecodeError(f"{where}: expected a map, got {_kind(value)}")
    return value


def as_array(value: Any, where: str) -> Sequence:
    if not isinstance(value, list | tuple):
        raise MdocDecodeError(f"{where}: expected an array, got {_kind(value)}")
    return value


def field(m: Mapping, key: Any, types: type | tuple[type, ...], where: str, *, optional: bool = False) -> Any:
    value = m.get(key, _MISSING)
    if value is _MISSING:
        if optional:
            return None
        raise MdocDecodeError(f"{where}: missing {key!r}")
    if type(value) is types:
        return value
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise MdocDecodeError(f"{where}.{key}: expected {_names(types)}, got bool")
    if not isinstance(value, types):
        raise MdocDecodeError(f"{where}.{key}: expected {_names(types)}, got {_kind(value)}")
    return value


def text(m: Mapping, key: Any, where: str, *, optional: bool = False) -> str | None:
    return field(m, key, str, where, optional=optional)


def embedded(value: Any, where: str) -> tuple[bytes, Any]:
    try:
        return cbor.unembed(value, what=where)
    except cbor.CborDecodeError as exc:
        raise MdocDecodeError(str(exc)) from exc


def embedded_raw(value: Any, where: str) -> bytes:
    """The exact bytes inside ``#6.24(bstr)`` without decoding them (digest before parse)."""
    if not isinstance(value, cbor.CBORTag) or value.tag != cbor.TAG_ENCODED_CBOR:
        raise MdocDecodeError(f"{where}: expected #6.24(bstr), got {_kind(value)}")
    if not isinstance(value.value, bytes):
        raise MdocDecodeError(f"{where}: tag 24 must wrap a byte string")
    return value.value


_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def b64url(data: bytes) -> str:
    """base64url without padding, as JSON carries CBOR and keys in the online protocols
    (ISO/IEC TS 18013-7 Annex C, OpenID4VP)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: Any, where: str, error: type[Exception] = MdocDecodeError) -> bytes:
    """The bytes of a base64url string (padding tolerated, nothing else); ``error`` names
    what was wrong and where."""
    if not isinstance(text, str):
        raise error(f"{where}: expected a base64url string, got {type(text).__name__}")
    if not text:
        raise error(f"{where}: empty")
    if _B64URL.fullmatch(text) is None:
        raise error(f"{where}: not base64url (only A-Z a-z 0-9 - _, then at most two '=')")
    try:
        raw = text.rstrip("=").encode("ascii")
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise error(f"{where}: not base64url ({exc})") from None


def _names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def _kind(value: Any) -> str:
    if isinstance(value, cbor.CBORTag):
        return f"tag {value.tag}"
    return type(value).__name__
