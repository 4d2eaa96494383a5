"""Extended Card Resources Information, GET DATA ``FF21`` (ETSI TS 102 226 8.2.1.7.2, as
GlobalPlatform cards give it): ``FF21 L { 81 installed applications, 82 free non-volatile
memory, 83 free volatile memory }``, unsigned big-endian integers in their shortest form.

The first tag byte FF is one that ISO/IEC 7816-4 BER-TLV parsers take for padding
(:func:`protocols.gp.tlv.parse_one` refuses it), so the template is taken apart here, by
hand (one short-form length: three small counts), and only its content goes through
:mod:`protocols.gp.tlv`.
"""

from __future__ import annotations

from protocols.gp.errors import TlvError
from protocols.gp.tlv import Tlv, encode, parse_all

TAG = 0xFF21
INSTALLED_APPLICATIONS, FREE_NON_VOLATILE, FREE_VOLATILE = 0x81, 0x82, 0x83


def _uint(n: int) -> bytes:
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def encode_resources(applications: int, free_non_volatile: int, free_volatile: int) -> bytes:
    """The FF21 template with the three counts."""
    return encode(TAG, [Tlv(INSTALLED_APPLICATIONS, _uint(applications)),
                        Tlv(FREE_NON_VOLATILE, _uint(free_non_volatile)), Tlv(FREE_VOLATILE, _uint(free_volatile))])


def parse_resources(data: bytes) -> dict[int, int]:
    """The FF21 template's entries (tag -> unsigned integer; an entry with no value bytes
    says nothing and is left out); :class:`TlvError` for bytes that are not one FF21
    template of TLVs."""
    if len(data) < 3 or data[:2] != b"\xff\x21" or data[2] != len(data) - 3:
        raise TlvError(f"{data[:40].hex()} is not an FF21 template")
    return {t.tag: int.from_bytes(t.value, "big") for t in parse_all(data[3:]) if t.value}
