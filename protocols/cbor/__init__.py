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

import datetime as _dt
import io
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
    "full_date",
    "loads",
    "tdate",
    "tdate_text",
    "tag24_bytes",
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
    return value.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def dumps(obj: Any, *, canonical: bool = True) -> bytes:
    """Encode ``obj`` deterministically (RFC 7049 §3.9 canonical, as cbor2 ``canonical=True``).

    ``canonical=False`` keeps maps in insertion order (shortest forms all the same): used for
    the session messages, where ISO 18013-5 Annex D writes maps in CDDL order.
    """
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
    try:
        value = cbor2.CBORDecoder(fp, allow_duplicate_keys=False).decode()
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


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise CborEncodeError("length too large")


def tag24_bytes(raw: bytes) -> bytes:
    """Encoded ``#6.24(bstr raw)`` without a round trip through the encoder (hot path of digesting)."""
    return b"\xd8\x18" + _head(2, len(raw)) + raw


def embed(obj: Any) -> CBORTag:
    """``#6.24(bstr .cbor obj)``: encode ``obj`` deterministically and wrap it in tag 24."""
    return CBORTag(TAG_ENCODED_CBOR, dumps(obj))


def unembed(value: Any, *, what: str = "embedded CBOR") -> tuple[bytes, Any]:
    """Open ``#6.24(bstr)``: return ``(the exact embedded bytes, the decoded item)``.

    ``value`` is a decoded :class:`CBORTag` or the encoded bytes of one.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        value = loads(bytes(value))
    if not isinstance(value, CBORTag) or value.tag != TAG_ENCODED_CBOR:
        raise CborDecodeError(f"{what}: expected #6.24(bstr), got {_describe(value)}")
    inner = value.value
    if not isinstance(inner, bytes):
        raise CborDecodeError(f"{what}: tag 24 must wrap a byte string, got {_describe(inner)}")
    try:
        return inner, loads(inner)
    except CborDecodeError as exc:
        raise CborDecodeError(f"{what}: {exc}") from exc


def _describe(value: Any) -> str:
    if isinstance(value, CBORTag):
        return f"tag {value.tag}"
    return type(value).__name__
