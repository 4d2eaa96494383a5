"""Data Grouping Identifier records, the personalisation format STORE DATA carries.

GPCS 2.3.1 11.11.3.1 (after EMV CPS 1.1): each record is a 2-byte tag, a length on one
byte (00-FE) or FF followed by two bytes, and the value. The TSM writes these streams and
the applets read them; both use this one codec.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.gp.errors import DgiError


@dataclass(frozen=True)
class Dgi:
    tag: int
    value: bytes


def encode(tag: int, value: bytes) -> bytes:
    """One DGI record."""
    if not 0 <= tag <= 0xFFFF:
        raise DgiError(f"DGI tag {tag:X} does not fit two bytes")
    n = len(value)
    if n > 0xFFFF:
        raise DgiError(f"DGI {tag:04X} value of {n} bytes exceeds 65535")
    length = bytes([n]) if n < 0xFF else b"\xff" + n.to_bytes(2, "big")
    return tag.to_bytes(2, "big") + length + bytes(value)


def parse_all(stream: bytes) -> tuple[Dgi, ...]:
    """Split a stream into its DGI records; any truncation or overrun is a DgiError."""
    out: list[Dgi] = []
    i = 0
    while i < len(stream):
        if i + 3 > len(stream):
            raise DgiError(f"DGI header truncated at offset {i}")
        tag = int.from_bytes(stream[i : i + 2], "big")
        n = stream[i + 2]
        i += 3
        if n == 0xFF:
            if i + 2 > len(stream):
                raise DgiError(f"DGI {tag:04X} length truncated at offset {i}")
            n = int.from_bytes(stream[i : i + 2], "big")
            i += 2
        if i + n > len(stream):
            raise DgiError(
                f"DGI {tag:04X} at offset {i} needs {n} bytes, {len(stream) - i} remain")
        out.append(Dgi(tag, bytes(stream[i : i + n])))
        i += n
    return tuple(out)
