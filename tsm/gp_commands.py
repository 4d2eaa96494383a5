"""The GlobalPlatform card content management commands the TSM sends to an ISD, and the
parsers for their answers (GPCS 2.3.1 chapter 11; DGI records per EMV CPS 1.1 / GPCS
11.11.3.1). Builders return plain :class:`CommandApdu`; the secure channel wraps them.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.gp import dgi as dgi_codec
from protocols.gp.apdu import CommandApdu
from protocols.gp.codes import (
    CLA_GP,
    INS_DELETE,
    INS_GET_DATA,
    INS_GET_STATUS,
    INS_INSTALL,
    INS_SELECT,
    INS_STORE_DATA,
)
from protocols.gp.errors import GpError
from protocols.gp.tlv import parse_all
from tsm.errors import CardDataError

ISD_AID = bytes.fromhex("A000000151000000")
#: GET STATUS P1 (GPCS 11.4.2.1): issuer security domain, applications and SDs.
STATUS_ISD = 0x80
STATUS_APPS = 0x40
#: Largest plain STORE DATA block that still fits a short APDU once padded and MACed.
STORE_DATA_BLOCK = 239


def select(aid: bytes) -> CommandApdu:
    """SELECT by DF name, first or only occurrence, FCI returned (ISO/IEC 7816-4 11.2.2)."""
    return CommandApdu(0x00, INS_SELECT, 0x04, 0x00, aid, 256)


def get_data(tag: int) -> CommandApdu:
    """GET DATA (GPCS 11.3): 9F7F CPLC, 00E0 key information template, 0066 card data."""
    return CommandApdu(CLA_GP, INS_GET_DATA, tag >> 8, tag & 0xFF, b"", 256)


def get_status(p1: int, more: bool = False) -> CommandApdu:
    """GET STATUS, all entries (search criteria 4F00), TLV answer (P2 b2), next occurrence
    when ``more`` (GPCS 11.4.2)."""
    return CommandApdu(CLA_GP, INS_GET_STATUS, p1, 0x03 if more else 0x02, b"\x4f\x00", 256)


def _lv(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def install_for_install(load_file_aid: bytes, module_aid: bytes, instance_aid: bytes,
                        privileges: bytes = b"\x00", params: bytes = b"\xc9\x00") -> CommandApdu:
    """INSTALL [for install and make selectable] (GPCS 11.5.2.3.2, P1 = 0C)."""
    data = (_lv(load_file_aid) + _lv(module_aid) + _lv(instance_aid) + _lv(privileges)
            + _lv(params) + _lv(b""))
    return CommandApdu(CLA_GP, INS_INSTALL, 0x0C, 0x00, data, 256)


def install_for_personalization(instance_aid: bytes) -> CommandApdu:
    """INSTALL [for personalization] (GPCS 11.5.2.3.5, P1 = 20)."""
    return CommandApdu(CLA_GP, INS_INSTALL, 0x20, 0x00,
                       b"\x00\x00" + _lv(instance_aid) + b"\x00\x00\x00", 256)


def delete(aid: bytes, related: bool = False) -> CommandApdu:
    """DELETE [card content] (GPCS 11.2.2): P2 = 80 also deletes related objects."""
    return CommandApdu(CLA_GP, INS_DELETE, 0x00, 0x80 if related else 0x00,
                       b"\x4f" + _lv(aid), 256)


def store_data_blocks(stream: bytes, block: int = STORE_DATA_BLOCK) -> list[CommandApdu]:
    """STORE DATA blocks for a DGI stream (GPCS 11.11.2): P1 = 08 (DGI), 88 on the last
    block; P2 numbers the blocks from 00. The last block, whose answer (a generated key, a
    READ STATE) may exceed the 256 bytes of a short response, asks with an extended Le for
    all of it; the others are short (specs/secure-element.md, "Response length")."""
    chunks = [stream[i : i + block] for i in range(0, len(stream), block)] or [b""]
    if len(chunks) > 256:
        raise CardDataError(f"STORE DATA stream of {len(stream)} bytes needs over 256 blocks")
    out = []
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        out.append(CommandApdu(CLA_GP, INS_STORE_DATA, 0x88 if last else 0x08, n, chunk,
                               65536 if last else 256, extended=last))
    return out


def dgi(tag: int, value: bytes) -> bytes:
    """One DGI record (:mod:`protocols.gp.dgi`); raises :class:`CardDataError`."""
    try:
        return dgi_codec.encode(tag, value)
    except GpError as exc:
        raise CardDataError(str(exc)) from exc


def parse_dgis(stream: bytes) -> list[tuple[int, bytes]]:
    """Split a DGI stream into (tag, value) records; raises :class:`CardDataError`."""
    try:
        return [(d.tag, d.value) for d in dgi_codec.parse_all(stream)]
    except GpError as exc:
        raise CardDataError(str(exc)) from exc


def tlv_fields(data: bytes, where: str) -> dict[int, list[bytes]]:
    """Top-level BER-TLV objects of ``data`` by tag; raises :class:`CardDataError`."""
    try:
        tlvs = parse_all(data)
    except GpError as exc:
        raise CardDataError(f"{where}: {exc}") from exc
    out: dict[int, list[bytes]] = {}
    for t in tlvs:
        out.setdefault(t.tag, []).append(t.value)
    return out


def one_field(fields: dict[int, list[bytes]], tag: int, where: str) -> bytes:
    vals = fields.get(tag, [])
    if len(vals) != 1:
        raise CardDataError(f"{where}: expected one {tag:02X} object, found {len(vals)}")
    return vals[0]


@dataclass(frozen=True)
class RegistryEntry:
    """One GET STATUS entry (GPCS 11.4.3.1 Table 11-36)."""

    aid: bytes
    life_cycle: int
    privileges: bytes = b""


def parse_status(data: bytes) -> list[RegistryEntry]:
    """The E3 entries of a GET STATUS answer in TLV format."""
    out = []
    for value in tlv_fields(data, "GET STATUS").get(0xE3, []):
        f = tlv_fields(value, "GET STATUS entry")
        aid = one_field(f, 0x4F, "GET STATUS entry")
        lc = f.get(0x9F70, [b"\x00"])[0]
        out.append(RegistryEntry(aid, lc[0] if lc else 0, f.get(0xC5, [b""])[0]))
    return out
