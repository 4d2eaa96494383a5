"""Plain command APDUs, status words and BER-TLV, as the applets need them.

Small local parsers (ISO/IEC 7816-4:2020 5.1 command-response pairs, 5.4.1 class byte,
5.2 BER-TLV) so the applets depend on nothing but the ``Applet`` contract. Every parse
error is an :class:`~wallet_sim.applets.errors.StatusError` carrying the status word the
applet answers, so a malformed command can never escape as anything but an SW.
"""

from __future__ import annotations

from dataclasses import dataclass

from wallet_sim.applets.errors import StatusError

# ISO/IEC 7816-4:2020 5.6 status words used by the applets.
SW_OK = 0x9000
SW_END_OF_FILE = 0x6B00  # wrong P1-P2: offset at/after the end (JICSAP usage)
SW_WRONG_LENGTH = 0x6700
SW_SM_NOT_SUPPORTED = 0x6882
SW_CHAINING_NOT_SUPPORTED = 0x6884
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_AUTH_BLOCKED = 0x6983
SW_REF_DATA_NOT_USABLE = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_CURRENT_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FUNC_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_WRONG_P1P2 = 0x6A86
SW_REF_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00


def sw_bytes(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def respond(data: bytes = b"", sw: int = SW_OK) -> bytes:
    return data + sw_bytes(sw)


@dataclass(frozen=True)
class Command:
    """A parsed command APDU (ISO/IEC 7816-4 5.1, cases 1-4, short and extended)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    #: Ne, the maximum number of response bytes (None when the Le field is absent).
    le: int | None
    extended: bool

    @property
    def proprietary(self) -> bool:
        """b8 of CLA: proprietary class (80-8F, C0-CF...) versus interindustry."""
        return bool(self.cla & 0x80)


def check_class(cla: int) -> None:
    """Refuse class bytes the applets do not serve (ISO/IEC 7816-4 5.4.1).

    Logical channel bits are the runtime's business and ignored here; secure messaging
    is never used by the JPKI-AP (an SM CLA answers 6882 as myna-card saw on a real card);
    command chaining is not supported (6884); RFU and invalid classes answer 6E00.
    """
    if cla == 0xFF:
        raise StatusError(SW_CLA_NOT_SUPPORTED, f"CLA {cla:02X} is invalid")
    kind = cla & 0xE0
    if kind in (0x00, 0x80):  # first interindustry coding (and its proprietary mirror)
        sm, chaining = cla & 0x0C, cla & 0x10
    elif kind in (0x40, 0x60, 0xC0, 0xE0):  # further interindustry coding
        sm, chaining = cla & 0x20, cla & 0x10
    else:
        raise StatusError(SW_CLA_NOT_SUPPORTED, f"CLA {cla:02X} is RFU")
    if sm:
        raise StatusError(SW_SM_NOT_SUPPORTED, f"CLA {cla:02X} asks for secure messaging")
    if chaining:
        raise StatusError(SW_CHAINING_NOT_SUPPORTED, f"CLA {cla:02X} asks for command chaining")


def parse_command(apdu: bytes) -> Command:
    """Parse one command APDU; a malformed length structure answers 6700."""
    n = len(apdu)
    if n < 4:
        raise StatusError(SW_WRONG_LENGTH, f"APDU of {n} bytes is shorter than a header")
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    check_class(cla)
    body = apdu[4:]
    data, le, extended = b"", None, False
    if not body:
        pass  # case 1
    elif len(body) == 1:  # case 2 short
        le = body[0] or 256
    elif body[0] != 0:  # case 3 / 4 short
        lc = body[0]
        if len(body) == 1 + lc:
            data = body[1:]
        elif len(body) == 2 + lc:
            data, le = body[1:-1], body[-1] or 256
        else:
            raise StatusError(SW_WRONG_LENGTH, f"Lc={lc} does not match {len(body) - 1} bytes")
    else:  # extended length
        extended = True
        if len(body) == 3:  # case 2 extended
            le = int.from_bytes(body[1:3], "big") or 65536
        elif len(body) < 3:
            raise StatusError(SW_WRONG_LENGTH, "truncated extended length field")
        else:
            lc = int.from_bytes(body[1:3], "big")
            if lc == 0:
                raise StatusError(SW_WRONG_LENGTH, "extended Lc of zero")
            if len(body) == 3 + lc:
                data = body[3:]
            elif len(body) == 5 + lc:
                data, le = body[3:-2], int.from_bytes(body[-2:], "big") or 65536
            else:
                raise StatusError(SW_WRONG_LENGTH, f"extended Lc={lc} does not match the body")
    return Command(cla, ins, p1, p2, bytes(data), le, extended)


# --- BER-TLV (ISO/IEC 7816-4 5.2), definite lengths up to 3 length bytes ----------------


def _header(buf: bytes, i: int) -> tuple[int, int, int]:
    """(tag, value offset, value length) of the TLV object starting at ``i``."""
    if i >= len(buf):
        raise StatusError(SW_WRONG_DATA, f"TLV tag missing at offset {i}")
    start = i
    first = buf[i]
    i += 1
    if first & 0x1F == 0x1F:
        while True:
            if i >= len(buf):
                raise StatusError(SW_WRONG_DATA, f"TLV tag truncated at offset {start}")
            b = buf[i]
            i += 1
            if not b & 0x80:
                break
            if i - start > 3:
                raise StatusError(SW_WRONG_DATA, f"TLV tag too long at offset {start}")
    tag = int.from_bytes(buf[start:i], "big")
    if i >= len(buf):
        raise StatusError(SW_WRONG_DATA, f"TLV length missing for tag {tag:X}")
    b = buf[i]
    i += 1
    if b < 0x80:
        length = b
    elif 0x81 <= b <= 0x83:
        k = b - 0x80
        if i + k > len(buf):
            raise StatusError(SW_WRONG_DATA, f"TLV length truncated for tag {tag:X}")
        length = int.from_bytes(buf[i : i + k], "big")
        i += k
    else:
        raise StatusError(SW_WRONG_DATA, f"TLV length byte {b:02X} unsupported for tag {tag:X}")
    if i + length > len(buf):
        raise StatusError(SW_WRONG_DATA, f"TLV value of tag {tag:X} overruns the data")
    return tag, i, length


def parse_tlvs(buf: bytes) -> list[tuple[int, bytes]]:
    """A flat list of (tag, value) from concatenated BER-TLV objects."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(buf):
        tag, start, length = _header(buf, i)
        out.append((tag, buf[start : start + length]))
        i = start + length
    return out


def tlv_map(buf: bytes, allowed: set[int]) -> dict[int, list[bytes]]:
    """Parse a TLV list, refusing tags outside ``allowed``; values grouped by tag."""
    out: dict[int, list[bytes]] = {}
    for tag, value in parse_tlvs(buf):
        if tag not in allowed:
            raise StatusError(SW_WRONG_DATA, f"unexpected tag {tag:X}")
        out.setdefault(tag, []).append(value)
    return out


def one(fields: dict[int, list[bytes]], tag: int, *, optional: bool = False) -> bytes | None:
    """The single value of ``tag``; missing (unless optional) or repeated is an error."""
    values = fields.get(tag, [])
    if len(values) > 1:
        raise StatusError(SW_WRONG_DATA, f"tag {tag:X} repeated")
    if not values:
        if optional:
            return None
        raise StatusError(SW_WRONG_DATA, f"tag {tag:X} missing")
    return values[0]


def tlv(tag: int, value: bytes) -> bytes:
    """Encode one BER-TLV object (tag given as its integer byte string)."""
    tag_bytes = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n <= 0xFF:
        length = bytes([0x81, n])
    elif n <= 0xFFFF:
        length = b"\x82" + n.to_bytes(2, "big")
    else:
        length = b"\x83" + n.to_bytes(3, "big")
    return tag_bytes + length + value
