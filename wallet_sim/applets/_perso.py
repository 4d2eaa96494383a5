"""Personalisation transport shared by the applets: GP STORE DATA blocks carrying DGIs.

GlobalPlatform Card Specification 2.3.1, 11.11 STORE DATA: P1 b8 = last block, b7-b6 =
encryption information, b5-b4 = data structure (01 = DGI), P2 = block number counted from
00 in one sequence. The blocks of a sequence are concatenated and the complete stream is
parsed as DGI records (tag on 2 bytes, length on 1 byte, or FF followed by 2 bytes; EMV CPS
1.1 / GPCS 11.11.3.1) only when the last block arrives, so one record (a certificate, an
IssuerSigned) may span any number of blocks. Records are executed in order against a copy
of the state, which is committed only when all of them succeeded: a refused sequence
changes nothing.
"""

from __future__ import annotations

from protocols.gp import dgi as dgi_codec
from protocols.gp.dgi import Dgi
from protocols.gp.errors import GpError
from wallet_sim.applets._apdu import (
    SW_NOT_ENOUGH_MEMORY,
    SW_SECURITY_NOT_SATISFIED,
    SW_WRONG_DATA,
    SW_WRONG_P1P2,
)
from wallet_sim.applets.errors import StatusError
from wallet_sim.se.applet import CommandContext

P1_LAST_BLOCK = 0x80
_P1_ENCRYPTION = 0x60
_P1_STRUCTURE = 0x18
_P1_STRUCTURE_NONE = 0x00
_P1_STRUCTURE_DGI = 0x08
#: SCP03 security level bit for C-DECRYPTION (GPCS Amendment D 5.1 / 7.1.2.4).
SL_C_DECRYPTION = 0x02


def parse_dgis(stream: bytes) -> tuple[Dgi, ...]:
    """Split a STORE DATA stream into DGI records; any overrun answers 6A80."""
    try:
        return dgi_codec.parse_all(stream)
    except GpError as exc:
        raise StatusError(SW_WRONG_DATA, str(exc)) from None


def dgi(tag: int, value: bytes) -> bytes:
    """Encode one DGI record (also used for the applets' response records)."""
    return dgi_codec.encode(tag, value)


class BlockAssembler:
    """Collects the blocks of one STORE DATA sequence (volatile: lost on power-off)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._next: int | None = None

    def reset(self) -> None:
        self._buf.clear()
        self._next = None

    def feed(self, p1: int, p2: int, data: bytes, ctx: CommandContext) -> bytes | None:
        """Add one block; return the whole stream when it was the last block, else None.

        A block numbered 00 always starts a new sequence (a TSM retrying after a lost
        response starts again from 00); any other out-of-order number answers 6A86 and
        drops the sequence.
        """
        if not ctx.secure_channel:
            self.reset()
            raise StatusError(SW_SECURITY_NOT_SATISFIED, "STORE DATA outside a secure channel")
        if p1 & _P1_ENCRYPTION:
            self.reset()
            raise StatusError(SW_WRONG_P1P2, f"P1={p1:02X}: DGI encryption is not supported")
        if p1 & _P1_STRUCTURE not in (_P1_STRUCTURE_NONE, _P1_STRUCTURE_DGI) or p1 & 0x07:
            self.reset()
            raise StatusError(SW_WRONG_P1P2, f"P1={p1:02X}: only DGI-formatted data is accepted")
        if p2 == 0:
            self.reset()
        elif self._next != p2:
            self.reset()
            raise StatusError(SW_WRONG_P1P2, f"block number {p2:02X} out of sequence")
        if len(self._buf) + len(data) > self._max:
            self.reset()
            raise StatusError(SW_NOT_ENOUGH_MEMORY, f"sequence exceeds {self._max} bytes")
        self._buf += data
        self._next = (p2 + 1) & 0xFF
        if not p1 & P1_LAST_BLOCK:
            return None
        stream = bytes(self._buf)
        self.reset()
        return stream
