"""Plain command APDUs, status words and BER-TLV, as the applets need them.

The applet view of ISO/IEC 7816-4:2020 over :mod:`protocols.gp` (5.1 command-response
pairs, 5.2 BER-TLV) plus the class-byte rules of 5.4.1 the applets enforce. Every parse
error is an :class:`~wallet_sim.applets.errors.StatusError` carrying the status word the
applet answers, so a malformed command can never escape as anything but an SW.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.gp import codes
from protocols.gp import tlv as ber
from protocols.gp.apdu import CommandApdu
from protocols.gp.errors import GpError
from wallet_sim.applets.errors import StatusError

# ISO/IEC 7816-4:2020 5.6 status words used by the applets (protocols.gp.codes).
SW_OK = codes.SW_OK
SW_END_OF_FILE = codes.SW_WRONG_P1P2_OFFSET  # offset at/after the end (JICSAP usage)
SW_WRONG_LENGTH = codes.SW_WRONG_LENGTH
SW_SM_NOT_SUPPORTED = codes.SW_SM_NOT_SUPPORTED
SW_CHAINING_NOT_SUPPORTED = codes.SW_CHAINING_NOT_SUPPORTED
SW_INCOMPATIBLE_FILE = codes.SW_INCOMPATIBLE_FILE
SW_SECURITY_NOT_SATISFIED = codes.SW_SECURITY_NOT_SATISFIED
SW_AUTH_BLOCKED = codes.SW_AUTH_METHOD_BLOCKED
SW_REF_DATA_NOT_USABLE = codes.SW_REF_DATA_NOT_USABLE
SW_CONDITIONS_NOT_SATISFIED = codes.SW_CONDITIONS_NOT_SATISFIED
SW_NO_CURRENT_EF = codes.SW_NO_CURRENT_EF
SW_WRONG_DATA = codes.SW_WRONG_DATA
SW_FUNC_NOT_SUPPORTED = codes.SW_FUNCTION_NOT_SUPPORTED
SW_FILE_NOT_FOUND = codes.SW_FILE_NOT_FOUND
SW_NOT_ENOUGH_MEMORY = codes.SW_NOT_ENOUGH_MEMORY
SW_WRONG_P1P2 = codes.SW_INCORRECT_P1P2
SW_REF_NOT_FOUND = codes.SW_REFERENCED_DATA_NOT_FOUND
SW_INS_NOT_SUPPORTED = codes.SW_INS_NOT_SUPPORTED
SW_CLA_NOT_SUPPORTED = codes.SW_CLA_NOT_SUPPORTED


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
    """Parse one command APDU with :class:`protocols.gp.apdu.CommandApdu`; a malformed
    length structure answers 6700, a class byte the applets do not serve its own SW."""
    if len(apdu) >= 4:
        check_class(apdu[0])
    try:
        cmd = CommandApdu.parse(apdu)
    except GpError as exc:
        raise StatusError(SW_WRONG_LENGTH, str(exc)) from None
    return Command(cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, cmd.ne, cmd.extended)


# --- BER-TLV (ISO/IEC 7816-4 5.2) through protocols.gp.tlv, errors as 6A80 ---------------


def parse_tlvs(buf: bytes) -> list[tuple[int, bytes]]:
    """A flat list of (tag, value) from concatenated BER-TLV objects."""
    try:
        return [(t.tag, t.value) for t in ber.parse_all(buf)]
    except GpError as exc:
        raise StatusError(SW_WRONG_DATA, f"TLV: {exc}") from None


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
    return ber.encode(tag, value)
