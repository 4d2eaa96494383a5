"""CBOR diagnostic notation (RFC 8949 §8), with tag 24 contents shown decoded as ``<< >>``."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from cbor2 import CBORSimpleValue, CBORTag

from protocols.cbor import CborDecodeError, loads


def diagnostic(value: Any, *, indent: int = 2, unwrap: bool = True) -> str:
    """Diagnostic notation of a decoded value; nested tag-24 bytes are decoded when valid."""
    return _diag(value, 0, indent, unwrap)


def _diag(v: Any, level: int, indent: int, unwrap: bool) -> str:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bytes | bytearray):
        return f"h'{bytes(v).hex()}'"
    if isinstance(v, dt.datetime):
        return f'0("{v.isoformat().replace("+00:00", "Z")}")'
    if isinstance(v, dt.date):
        return f'1004("{v.isoformat()}")'
    if isinstance(v, CBORTag):
        if v.tag == 24 and unwrap and isinstance(v.value, bytes):
            try:
                inner = loads(v.value)
            except CborDecodeError:
                return f"24({_diag(v.value, level, indent, unwrap)})"
            return f"24(<< {_diag(inner, level, indent, unwrap)} >>)"
        return f"{v.tag}({_diag(v.value, level, indent, unwrap)})"
    if isinstance(v, CBORSimpleValue):
        return f"simple({v.value})"
    if isinstance(v, Mapping):
        if not v:
            return "{}"
        items = [f"{pad}{_diag(k, level + 1, indent, unwrap)}: {_diag(x, level + 1, indent, unwrap)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(v, list | tuple):
        if not v:
            return "[]"
        return "[\n" + ",\n".join(pad + _diag(x, level + 1, indent, unwrap) for x in v) + "\n" + end + "]"
    if isinstance(v, frozenset | set):
        return f"258({_diag(sorted(v, key=repr), level, indent, unwrap)})"
    return repr(v)
