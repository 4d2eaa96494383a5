"""ISO/IEC 7816-4 command and response APDUs (clause 5.1), short and extended length,
and the class byte's logical channel and secure messaging bits (clause 5.4.1).

``CommandApdu.parse`` accepts exactly the seven cases of ISO/IEC 7816-4 5.1 (1, 2S, 3S, 4S,
2E, 3E, 4E) and raises :class:`ApduError` on anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from protocols.gp.codes import SW_OK  # noqa: F401 - re-exported, used below
from protocols.gp.errors import ApduError


def sw_is_success_or_warning(sw: int) -> bool:
    """9000, 62xx and 63xx: the status words after which R-MAC applies (Amendment D 6.2.5)."""
    return sw == 0x9000 or (sw >> 8) in (0x62, 0x63)


def _is_further_interindustry(cla: int) -> bool:
    # ISO/IEC 7816-4 5.4.1: b7 = 1 selects the "further" class layout (channels 4..19).
    return bool(cla & 0x40)


def channel_of(cla: int) -> int:
    """The logical channel number a class byte addresses (0..19)."""
    if _is_further_interindustry(cla):
        return (cla & 0x0F) + 4
    return cla & 0x03


def with_channel(cla: int, channel: int) -> int:
    """``cla`` re-addressed to logical ``channel``, keeping b8 (proprietary) and SM bits."""
    if not 0 <= channel <= 19:
        raise ApduError(f"logical channel {channel} is outside 0..19")
    proprietary = cla & 0x80
    sm = has_secure_messaging(cla)
    if channel <= 3:
        out = proprietary | channel | (0x04 if sm else 0)
    else:
        out = proprietary | 0x40 | (channel - 4) | (0x20 if sm else 0)
    return out


def has_secure_messaging(cla: int) -> bool:
    """True when the class byte indicates secure messaging (b3 or b6, by layout)."""
    if _is_further_interindustry(cla):
        return bool(cla & 0x20)
    return bool(cla & 0x0C)


def set_secure_messaging(cla: int) -> int:
    """Class byte with the GlobalPlatform secure messaging indication set (GPCS 11.1.4)."""
    return cla | (0x20 if _is_further_interindustry(cla) else 0x04)


def clear_secure_messaging(cla: int) -> int:
    """Class byte with the secure messaging indication cleared."""
    return cla & ~(0x20 if _is_further_interindustry(cla) else 0x0C) & 0xFF


@dataclass(frozen=True)
class CommandApdu:
    """A command APDU. ``ne`` is the expected response length (``None``: no Le field;
    256 / 65536 encode as Le = 00 / 0000). ``extended`` forces extended length fields."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    ne: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.cla <= 0xFF and 0 <= self.ins <= 0xFF and 0 <= self.p1 <= 0xFF
                and 0 <= self.p2 <= 0xFF):
            for name in ("cla", "ins", "p1", "p2"):
                v = getattr(self, name)
                if not 0 <= v <= 0xFF:
                    raise ApduError(f"{name} = {v} is not a byte")
        if len(self.data) > 65535:
            raise ApduError(f"data field of {len(self.data)} bytes exceeds 65535")
        if self.ne is not None and not 1 <= self.ne <= 65536:
            raise ApduError(f"Ne = {self.ne} is outside 1..65536")

    @property
    def channel(self) -> int:
        return channel_of(self.cla)

    @property
    def uses_extended(self) -> bool:
        """Whether :meth:`to_bytes` encodes extended length fields."""
        return (
            self.extended
            or len(self.data) > 255
            or (self.ne is not None and self.ne > 256)
        )

    def lc_field(self) -> bytes:
        """The Lc field as encoded (empty when there is no data)."""
        if not self.data:
            return b""
        if self.uses_extended:
            return b"\x00" + len(self.data).to_bytes(2, "big")
        return bytes([len(self.data)])

    def le_field(self) -> bytes:
        if self.ne is None:
            return b""
        if self.uses_extended:
            le = b"" if self.data else b"\x00"
            return le + (self.ne % 65536).to_bytes(2, "big")
        return bytes([self.ne % 256])

    def header(self) -> bytes:
        return bytes([self.cla, self.ins, self.p1, self.p2])

    def to_bytes(self) -> bytes:
        return self.header() + self.lc_field() + self.data + self.le_field()

    def replace(self, **changes: object) -> CommandApdu:
        return replace(self, **changes)

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Decode one command APDU (ISO/IEC 7816-4 5.1, cases 1 to 4E)."""
        raw = bytes(raw)
        n = len(raw)
        if n < 4:
            raise ApduError(f"command APDU of {n} bytes is shorter than the 4-byte header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        b = len(body)
        if b == 0:  # case 1
            return cls(cla, ins, p1, p2)
        if b == 1:  # case 2S
            return cls(cla, ins, p1, p2, ne=body[0] or 256)
        if body[0] != 0:  # short Lc: case 3S or 4S
            lc = body[0]
            if b == 1 + lc:
                return cls(cla, ins, p1, p2, body[1:])
            if b == 2 + lc:
                return cls(cla, ins, p1, p2, body[1 : 1 + lc], ne=body[-1] or 256)
            raise ApduError(
                f"short Lc = {lc} at offset 4 does not match the {b - 1} bytes that follow"
            )
        # body[0] == 0 and b >= 2: extended length
        if b == 3:  # case 2E
            le = int.from_bytes(body[1:3], "big")
            return cls(cla, ins, p1, p2, ne=le or 65536, extended=True)
        if b < 3:
            raise ApduError(f"{b}-byte body starting 00 is neither short Le nor extended length")
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise ApduError("extended Lc = 0000 at offset 4 is not allowed")
        if b == 3 + lc:  # case 3E
            return cls(cla, ins, p1, p2, body[3:], extended=True)
        if b == 5 + lc:  # case 4E
            le = int.from_bytes(body[-2:], "big")
            return cls(cla, ins, p1, p2, body[3 : 3 + lc], ne=le or 65536, extended=True)
        raise ApduError(
            f"extended Lc = {lc} at offset 4 does not match the {b - 3} bytes that follow"
        )


@dataclass(frozen=True)
class ResponseApdu:
    """A response APDU: data field and status word (ISO/IEC 7816-4 5.1)."""

    data: bytes
    sw: int

    def __post_init__(self) -> None:
        if not 0 <= self.sw <= 0xFFFF:
            raise ApduError(f"status word {self.sw} is not two bytes")

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        raw = bytes(raw)
        if len(raw) < 2:
            raise ApduError(f"response APDU of {len(raw)} bytes has no status word")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))


def response(sw: int, data: bytes = b"") -> bytes:
    """Encode ``data || SW1 SW2``."""
    return bytes(data) + sw.to_bytes(2, "big")
