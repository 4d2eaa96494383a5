"""Strict, deterministic CBOR for ISO/IEC 18013-5 (clause 8.1 / RFC 8949, RFC 7049 §3.9).

A thin layer over :mod:`cbor2`:

* :func:`dumps` writes the canonical form ISO 18013-5 clause 8.1 points to (RFC 7049 §3.9:
  map keys sorted length-first, shortest integer forms, definite lengths). ``datetime``
  values become ``tdate`` (tag 0, UTC, ``Z``, fractional seconds dropped) and ``date``
  values become ``full-date`` (tag 1004, RFC 8943).
* :func:`loads` is strict: duplicate map keys, trailing bytes and anything malformed raise
  :class:`CborDecodeError` and nothing else. Arrays come back as ``list`` and maps as
  ``dict``, except where cbor2 6 needs hashable values: inside a map key and inside the
  content of an undecoded tag (tag 18, say) they are ``tuple`` and ``cbor2.frozendict``.
  Consumers therefore test for ``Sequence`` / ``Mapping``, never ``list`` / ``dict``. Tag 24 stays
  a :class:`cbor2.CBORTag` wrapping the exact embedded bytes; tags 0 / 1 come back as
  aware ``datetime``, tag 1004 as ``date``.
* :func:`embed` / :func:`unembed` handle ``#6.24(bstr .cbor X)`` (RFC 8949 §3.4.5.1),
  keeping the exact bytes that were signed or digested: never re-encode what you verify.
"""

from __future__ import annotations

import base64 as _base64
import binascii as _binascii
import datetime as _dt
import functools
import io
import re as _re
import struct
from collections.abc import Sequence
from typing import Any

import cbor2
from cbor2 import CBORTag

__all__ = [
    "CBORTag",
    "CborDecodeError",
    "CborEncodeError",
    "CborError",
    "TAG_ENCODED_CBOR",
    "TAG_FULL_DATE",
    "TAG_TDATE",
    "dumps",
    "embed",
    "from_text_or_raw",
    "full_date",
    "loads",
    "loads_many",
    "tdate",
    "tdate_text",
    "tag24_bytes",
    "TAG24_HEADS",
    "tag24_head",
    "tstr",
    "map_head",
    "bstr_head",
    "uint_bytes",
    "unembed",
]

TAG_TDATE = 0
TAG_EPOCH = 1
TAG_ENCODED_CBOR = 24
TAG_FULL_DATE = 1004


class CborError(ValueError):
    """Base of every CBOR error of this package."""


class CborDecodeError(CborError):
    """The bytes are not one well-formed, acceptable CBOR data item."""


class CborEncodeError(CborError):
    """The value cannot be written as deterministic CBOR."""


def tdate_text(value: _dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC without fractions (RFC 3339 profile of 18013-5 §7.2.1)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise CborEncodeError(f"tdate needs an aware datetime, got naive {value!r}")
    if type(value) is _dt.datetime:
        return _tdate_text(value)  # the same few instants (MSO, certificates) come back at every check
    return _tdate_text.__wrapped__(value)


@functools.lru_cache(maxsize=1024)
def _tdate_text(value: _dt.datetime) -> str:
    u = value if value.tzinfo is _dt.UTC else value.astimezone(_dt.UTC)  # decoded tdates are UTC
    # RFC 3339 date-fullyear is 4DIGIT: year 999 is "0999" (strftime's %Y does not pad, and
    # loads() refuses the unpadded text, so a date before 1000 did not survive its own round trip)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def tdate(value: _dt.datetime) -> CBORTag:
    """``tdate = #6.0(tstr)``: UTC, ``Z``, no fractional seconds."""
    return CBORTag(TAG_TDATE, tdate_text(value))


def full_date(value: _dt.date) -> CBORTag:
    """``full-date = #6.1004(tstr)`` (RFC 8943), ``YYYY-MM-DD``."""
    if isinstance(value, _dt.datetime):
        raise CborEncodeError(f"full-date takes a date, not a datetime: {value!r}")
    return CBORTag(TAG_FULL_DATE, value.isoformat())


def _encode_datetime(encoder: cbor2.CBOREncoder, value: _dt.datetime) -> None:
    encoder.encode(tdate(value))


def _encode_date(encoder: cbor2.CBOREncoder, value: _dt.date) -> None:
    encoder.encode(full_date(value))


_ENCODERS = {_dt.datetime: _encode_datetime, _dt.date: _encode_date}


_SCALARS = frozenset({str, bytes, int, bool, type(None)})
_DATE, _DATETIME, _TAG = _dt.date, _dt.datetime, CBORTag


class _Slow(Exception):
    """Raised by :func:`_prepare` for a value only the full encoder path handles exactly."""


def _prepare(obj: Any, maps: list) -> Any:
    """``obj`` with ``date`` / ``datetime`` replaced by their tags, when it holds only types
    whose cbor2 encoding does not depend on ``encoders`` / ``canonical`` (maps aside, which
    are noted in ``maps``); else raise :class:`_Slow`. Output bytes are identical to the
    full path's; it only spares cbor2 its slow custom-encoder and canonical machinery."""
    t = type(obj)
    if t in _SCALARS:
        return obj
    if t is list or t is tuple:
        return [_prepare(v, maps) for v in obj] if t is list else tuple(_prepare(v, maps) for v in obj)
    if t is dict:
        maps.append(True)
        out = {_prepare(k, maps): _prepare(v, maps) for k, v in obj.items()}
        if len(out) != len(obj):  # two keys that encode alike (a date and its tag): keep both
            raise _Slow
        return out
    if t is _DATE:
        return full_date(obj)
    if t is _DATETIME:
        if obj.tzinfo is None or obj.utcoffset() is None:
            raise _Slow
        return tdate(obj)
    if t is _TAG:
        return CBORTag(obj.tag, _prepare(obj.value, maps))
    raise _Slow


def dumps(obj: Any, *, canonical: bool = True) -> bytes:
    """Encode ``obj`` deterministically (RFC 7049 §3.9 canonical, as cbor2 ``canonical=True``).

    ``canonical=False`` keeps maps in insertion order (shortest forms all the same): used for
    the session messages, where ISO 18013-5 Annex D writes maps in CDDL order.
    """
    t = type(obj)
    if t is bytes or t is str:  # the hot path of Sig_structure / transcript assembly
        return cbor2.dumps(obj)
    maps: list = []
    try:
        prepared = _prepare(obj, maps)
    except (_Slow, RecursionError):
        pass
    else:
        try:
            return cbor2.dumps(prepared, canonical=canonical and bool(maps))
        except (cbor2.CBORError, TypeError, ValueError, OverflowError, RecursionError):
            pass  # let the full path below raise its own error
    try:
        return cbor2.dumps(obj, canonical=canonical, encoders=_ENCODERS)
    except CborError:
        raise
    except (cbor2.CBORError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise CborEncodeError(f"cannot encode {type(obj).__name__}: {exc}") from exc


def loads(data: bytes) -> Any:
    """Decode exactly one CBOR data item from ``data``; refuse duplicates and trailing bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CborDecodeError(f"expected bytes, got {type(data).__name__}")
    if type(data) is not bytes:
        data = bytes(data)
    if not data:
        raise CborDecodeError("empty input: no CBOR data item")
    fp = io.BytesIO(data)
    n = len(data)
    try:  # a read buffer the size of the input (up to 1 MiB): one read, not one per 4 KiB
        value = cbor2.CBORDecoder(fp, allow_duplicate_keys=False,
                                  read_size=n if 4096 < n <= 1 << 20 else 4096).decode()
    except RecursionError as exc:
        raise CborDecodeError("nesting too deep") from exc
    except MemoryError as exc:
        raise CborDecodeError("declared length too large") from exc
    except Exception as exc:  # noqa: BLE001 - the decoder's boundary: every failure is ours
        raise CborDecodeError(f"malformed CBOR: {exc}") from exc
    end = fp.tell()
    if end != len(data):
        raise CborDecodeError(f"{len(data) - end} trailing byte(s) after the CBOR item at offset {end}")
    return value


def loads_many(parts: Sequence[bytes]) -> list[Any]:
    """``[loads(p) for p in parts]``, decoded in one pass where every part is exactly one
    well-formed item (checked by the decoder's position at each part's end); any part
    that is not goes through :func:`loads` one by one, so errors are exactly :func:`loads`'s."""
    if all(type(part) is bytes and part for part in parts):
        fp = io.BytesIO(b"".join(parts))
        decoder = cbor2.CBORDecoder(fp, allow_duplicate_keys=False)
        out = []
        end = 0
        try:
            for part in parts:
                end += len(part)
                out.append(decoder.decode())
                if fp.tell() != end:
                    break
            else:
                return out
        except Exception:  # noqa: BLE001, S110 - redone below part by part, with loads's own errors
            pass
    return [loads(part) for part in parts]


_SMALL_HEADS = tuple(tuple(bytes([major << 5 | n]) for n in range(24)) for major in range(8))


_PACK1, _PACK2, _PACK4, _PACK8 = (struct.Struct(f">B{c}").pack for c in "BHIQ")


def _head(major: int, n: int) -> bytes:
    """The shortest head of major type ``major`` with argument ``n`` (RFC 8949 §3)."""
    if 0 <= n < 24:
        return _SMALL_HEADS[major][n]
    if 24 <= n < 0x100:
        return _PACK1(major << 5 | 24, n)
    if 0x100 <= n < 0x10000:
        return _PACK2(major << 5 | 25, n)
    if 0x10000 <= n < 0x100000000:
        return _PACK4(major << 5 | 26, n)
    if n < 0:
        raise CborEncodeError("negative length or argument")
    if n < 1 << 64:
        return _PACK8(major << 5 | 27, n)
    raise CborEncodeError("length too large")


def uint_bytes(n: int) -> bytes:
    """An unsigned integer (major type 0) in its shortest head, as the encoder writes it."""
    return _head(0, n)


def tstr(text: str) -> bytes:
    """A text string encoded (major type 3), as the encoder writes it; the short ones that
    recur (map keys, element identifiers, namespaces) are kept in a bounded table."""
    hit = _TSTR.get(text)
    if hit is None:
        hit = cbor2.dumps(text)
        if len(text) <= 64 and type(text) is str:
            if len(_TSTR) >= 4096:
                _TSTR.clear()
            _TSTR[text] = hit
    return hit


_TSTR: dict[str, bytes] = {}


def map_head(length: int) -> bytes:
    """The shortest head of a definite map of ``length`` pairs (major type 5)."""
    return _head(5, length)


def array_head(length: int) -> bytes:
    """The shortest head of a definite array of ``length`` items (major type 4)."""
    return _head(4, length)


def bstr_head(length: int) -> bytes:
    """The shortest head of a definite byte string of ``length`` bytes (major type 2)."""
    return _head(2, length)


def tag24_head(length: int) -> bytes:
    """Tag 24 and the bstr head of ``length`` bytes of embedded CBOR: what :func:`tag24_bytes`
    writes before them, for callers that join the parts themselves."""
    return TAG24_HEADS[length] if 0 <= length < 256 else b"\xd8\x18" + _head(2, length)


def tag24_bytes(raw: bytes) -> bytes:
    """Encoded ``#6.24(bstr raw)`` without a round trip through the encoder (hot path of digesting)."""
    return tag24_head(len(raw)) + raw


TAG24_HEADS = tuple(b"\xd8\x18" + _head(2, n) for n in range(256))
""":func:`tag24_head` of 0..255, by length: the table hot loops index directly."""


def embed(obj: Any) -> CBORTag:
    """``#6.24(bstr .cbor obj)``: encode ``obj`` deterministically and wrap it in tag 24."""
    return CBORTag(TAG_ENCODED_CBOR, dumps(obj))


def unembed(value: Any, *, what: str = "embedded CBOR") -> tuple[bytes, Any]:
    """Open ``#6.24(bstr)``: return ``(the exact embedded bytes, the decoded item)``.

    ``value`` is a decoded :class:`CBORTag` or the encoded bytes of one.
    """
    if type(value) is bytes and value[:2] == b"\xd8\x18":
        inner = _tag24_content(value)
        if inner is not None:
            try:
                return inner, loads(inner)
            except CborDecodeError as exc:
                raise CborDecodeError(f"{what}: {exc}") from exc
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = loads(bytes(value))
        except CborDecodeError as exc:
            raise CborDecodeError(f"{what}: {exc}") from exc
    if not isinstance(value, CBORTag) or value.tag != TAG_ENCODED_CBOR:
        raise CborDecodeError(f"{what}: expected #6.24(bstr), got {_describe(value)}")
    inner = value.value
    if not isinstance(inner, bytes):
        raise CborDecodeError(f"{what}: tag 24 must wrap a byte string, got {_describe(inner)}")
    try:
        return inner, loads(inner)
    except CborDecodeError as exc:
        raise CborDecodeError(f"{what}: {exc}") from exc


def _tag24_content(data: bytes) -> bytes | None:
    """The content of ``data`` when it is exactly ``tag24_bytes(content)`` (shortest heads,
    definite length, nothing after): what :func:`loads` would give as ``CBORTag(24, content)``.
    ``None`` for any other form, which then takes the general decoder."""
    n = len(data)
    if n < 3:
        return None
    info = data[2]
    if 0x40 <= info <= 0x57:
        start, length = 3, info - 0x40
    elif info == 0x58 and n >= 4:
        start, length = 4, data[3]
    elif info == 0x59 and n >= 5:
        start, length = 5, int.from_bytes(data[3:5], "big")
    elif info == 0x5A and n >= 7:
        start, length = 7, int.from_bytes(data[3:7], "big")
    else:
        return None
    if n - start != length:
        return None
    return data[start:]


def _describe(value: Any) -> str:
    if isinstance(value, CBORTag):
        return f"tag {value.tag}"
    return type(value).__name__


_BASE64URL = _re.compile(rb"[A-Za-z0-9_\-]+={0,2}")


def from_text_or_raw(data: bytes) -> bytes:
    """The CBOR in ``data``: as it is, or decoded from base64url text, the form OpenID4VCI
    gives an mso_mdoc credential (base64url of its IssuerSigned) and OpenID4VP a
    DeviceResponse. Text is recognised safely: a CBOR map or array starts with a byte of
    0x80 or more, which base64url text never contains; anything else is returned unchanged
    for the decoder to judge."""
    text = data.strip()
    if _BASE64URL.fullmatch(text):
        unpadded = text.rstrip(b"=")
        try:
            return _base64.urlsafe_b64decode(unpadded + b"=" * (-len(unpadded) % 4))
        except (ValueError, _binascii.Error):
            pass
    return data
