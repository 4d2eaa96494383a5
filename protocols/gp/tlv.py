"""BER-TLV as used by ISO/IEC 7816-4 (5.2.2) and GlobalPlatform data objects.

Tags are kept as integers of their encoded bytes (``0x9F7F``, ``0xE3``, ``0x4F``); lengths
use the definite forms 1 to 4 bytes (``81``, ``82``, ``83``). Indefinite length and
non-minimal length encodings are rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocols.gp.errors import TlvError


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes

    @property
    def constructed(self) -> bool:
        first = self.tag.to_bytes(_tag_len(self.tag), "big")[0]
        return bool(first & 0x20)

    def children(self) -> tuple[Tlv, ...]:
        if not self.constructed:
            raise TlvError(f"tag {self.tag:X} is primitive and has no children")
        return parse_all(self.value)

    def to_bytes(self) -> bytes:
        return encode(self.tag, self.value)


def _tag_len(tag: int) -> int:
    return max(1, (tag.bit_length() + 7) // 8)


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return b"\x81" + bytes([n])
    if n <= 0xFFFF:
        return b"\x82" + n.to_bytes(2, "big")
    if n <= 0xFFFFFF:
        return b"\x83" + n.to_bytes(3, "big")
    raise TlvError(f"length {n} does not fit in 3 bytes")


def _check_tag(tag: int) -> None:
    if tag <= 0:
        raise TlvError(f"tag {tag} is not positive")
    raw = tag.to_bytes(_tag_len(tag), "big")
    multi = raw[0] & 0x1F == 0x1F
    if len(raw) > 1 and not multi or multi and (
        len(raw) == 1 or any(not b & 0x80 for b in raw[1:-1]) or raw[-1] & 0x80
    ):
        raise TlvError(f"{raw.hex().upper()} is not a well-formed BER tag")


def encode(tag: int, value: bytes | Iterable[Tlv]) -> bytes:
    """Encode one TLV; ``value`` may be bytes or child TLVs."""
    if not isinstance(value, bytes | bytearray):
        value = b"".join(t.to_bytes() for t in value)
    _check_tag(tag)
    return tag.to_bytes(_tag_len(tag), "big") + encode_length(len(value)) + bytes(value)


def parse_one(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """Parse the TLV at ``offset``; return it and the offset after it."""
    n = len(data)
    start = offset
    if offset >= n:
        raise TlvError(f"no tag at offset {offset}: data ends")
    first = data[offset]
    if first in (0x00, 0xFF):
        raise TlvError(f"padding byte {first:02X} where a tag was expected at offset {offset}")
    offset += 1
    tag = first
    if first & 0x1F == 0x1F:
        while True:
            if offset >= n:
                raise TlvError(f"multi-byte tag starting at offset {start} is truncated")
            b = data[offset]
            offset += 1
            tag = (tag << 8) | b
            if not b & 0x80:
                break
            if offset - start > 4:
                raise TlvError(f"tag at offset {start} is longer than 4 bytes")
    if offset >= n:
        raise TlvError(f"tag {tag:X} at offset {start} has no length")
    lb = data[offset]
    offset += 1
    if lb < 0x80:
        length = lb
    elif lb == 0x80:
        raise TlvError(f"indefinite length of tag {tag:X} at offset {offset - 1}")
    elif lb <= 0x83:
        k = lb & 0x7F
        if offset + k > n:
            raise TlvError(f"length of tag {tag:X} at offset {offset - 1} is truncated")
        length = int.from_bytes(data[offset : offset + k], "big")
        if length < (0x80 if k == 1 else 1 << (8 * (k - 1))):
            raise TlvError(f"non-minimal length {lb:02X} of tag {tag:X} at offset {offset - 1}")
        offset += k
    else:
        raise TlvError(f"length byte {lb:02X} of tag {tag:X} at offset {offset - 1} unsupported")
    if offset + length > n:
        raise TlvError(
            f"value of tag {tag:X} at offset {start} needs {length} bytes, {n - offset} remain"
        )
    return Tlv(tag, bytes(data[offset : offset + length])), offset + length


def parse_all(data: bytes) -> tuple[Tlv, ...]:
    """Parse a concatenation of TLVs that fills ``data`` exactly."""
    data = bytes(data)
    out: list[Tlv] = []
    offset = 0
    while offset < len(data):
        tlv, offset = parse_one(data, offset)
        out.append(tlv)
    return tuple(out)


def find(tlvs: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first TLV with ``tag`` among ``tlvs`` (one level, no recursion)."""
    for t in tlvs:
        if t.tag == tag:
            return t
    return None
