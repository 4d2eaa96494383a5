"""Data retrieval over Bluetooth Low Energy (ISO/IEC 18013-5:2021 §8.3.3.1.1), the pure part.

The DeviceEngagement names the BLE options (``DeviceRetrievalMethod = [2, 1, BleOptions]``,
§8.2.1.1): which modes the mdoc supports and a fresh service UUID for each. Two modes:

- **mdoc peripheral server mode**: the mdoc is the GATT server and advertises the service
  UUID of key 10; the reader scans for it, connects and is the GATT client. Characteristics
  State ``00000001-…``, Client2Server ``00000002-…``, Server2Client ``00000003-…``.
- **mdoc central client mode**: the reader is the GATT server and advertises the UUID of
  key 11 (the one the mdoc's QR code named); the mdoc scans, connects and is the GATT
  client. Characteristics State ``00000005-…``, Client2Server ``00000006-…``,
  Server2Client ``00000007-…`` and Ident ``00000008-…``: before anything else the mdoc
  reads Ident and checks it is ``HKDF-SHA256(EDeviceKeyBytes, salt empty, info
  "BLEIdent", 16 bytes)``, so it talks only to the reader that read its engagement.

In both the GATT client subscribes to State and Server2Client (notifications), then writes
``0x01`` (start) to State. Session messages (SessionEstablishment, SessionData) are cut into
characteristic values of at most ``min(ATT_MTU - 3, 512)`` bytes whose first byte is
``0x01`` while more follow and ``0x00`` on the last; the client writes them to
Client2Server (write without response), the server notifies them on Server2Client. Either
side ends the session by ``0x02`` on State (the client writes it, the server notifies it).

This module is the framing, the options, the characteristic UUIDs and Ident: no radio. The
GATT ends live in :mod:`blelink` (bumble), the flows in ``wallet_sim.ble`` and ``reader.ble``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocols import cbor
from protocols.mdoc.engagement import RETRIEVAL_BLE, DeviceEngagement
from protocols.mdoc.errors import MdocDecodeError, MdocError

BLE_METHOD_VERSION = 1
STATE_START, STATE_END = b"\x01", b"\x02"
"""The State characteristic's two values (§8.3.3.1.1.5)."""
MORE, LAST = 0x01, 0x00
"""The first byte of a characteristic value of a session message: more follow / the last."""
MAX_VALUE = 512
"""The longest characteristic value GATT allows (Core Vol 3 Part F 3.2.9)."""
MIN_ATT_MTU = 23
MAX_MESSAGE = 4 * 1024 * 1024
"""The longest session message either side takes (a DeviceResponse with portraits fits)."""

_BASE = "-A123-48CE-896B-4C76973373E6"


def _uuid(n: int) -> uuid.UUID:
    return uuid.UUID(f"{n:08X}{_BASE}")


class BleError(MdocError):
    """A BLE engagement option, characteristic value or session message is not what §8.3.3.1.1
    says; the message names which and why."""


@dataclass(frozen=True)
class GattService:
    """The characteristics of the mdoc service (peripheral server mode) or of the mdoc reader
    service (central client mode), §8.3.3.1.1.4."""

    mode: str
    state: uuid.UUID
    client2server: uuid.UUID
    server2client: uuid.UUID
    ident: uuid.UUID | None
    server: str
    """Who is the GATT server in this mode: ``mdoc`` or ``reader``."""


PERIPHERAL_SERVER = GattService("peripheral server", _uuid(1), _uuid(2), _uuid(3), None, "mdoc")
CENTRAL_CLIENT = GattService("central client", _uuid(5), _uuid(6), _uuid(7), _uuid(8), "reader")
MODES = {"peripheral": PERIPHERAL_SERVER, "central": CENTRAL_CLIENT}


def ident(e_device_key_bytes: bytes) -> bytes:
    """The Ident characteristic's value for an EDeviceKey (its COSE_Key bytes, as
    :attr:`DeviceEngagement.e_device_key_bytes` keeps them): HKDF-SHA256 over
    EDeviceKeyBytes (``#6.24(bstr .cbor EDeviceKey)``), empty salt, info ``BLEIdent``."""
    ikm = cbor.dumps(cbor.CBORTag(24, bytes(e_device_key_bytes)))
    return HKDF(hashes.SHA256(), 16, None, b"BLEIdent").derive(ikm)


@dataclass(frozen=True)
class BleOptions:
    """``BleOptions`` of a DeviceEngagement: ``{0: peripheral server mode, 1: central client
    mode, ? 10: its UUID, ? 11: its UUID, ? 20: the mdoc's BLE address}``; other keys are
    kept as they came."""

    peripheral_server: bool
    central_client: bool
    peripheral_uuid: uuid.UUID | None = None
    central_uuid: uuid.UUID | None = None
    peripheral_address: bytes | None = None
    extra: Mapping[int, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def new(cls, *, peripheral: bool = True, central: bool = False) -> BleOptions:
        """Options for one engagement, with a fresh random UUID per offered mode (a UUID that
        lives for one presentation tells a bystander nothing)."""
        if not (peripheral or central):
            raise ValueError("BleOptions.new: offer peripheral server mode, central client mode or both")
        return cls(peripheral, central, uuid.uuid4() if peripheral else None, uuid.uuid4() if central else None)

    def uuid_for(self, mode: GattService) -> uuid.UUID:
        """The service UUID of ``mode``; :class:`BleError` if the mdoc does not offer it."""
        offered, found = ((self.peripheral_server, self.peripheral_uuid) if mode is PERIPHERAL_SERVER
                          else (self.central_client, self.central_uuid))
        if not offered:
            raise BleError(f"the mdoc does not offer mdoc {mode.mode} mode")
        if found is None:
            raise BleError(f"the mdoc offers mdoc {mode.mode} mode without its service UUID")
        return found

    def modes(self) -> list[GattService]:
        """The modes offered with their UUIDs, peripheral server mode first."""
        out = []
        for mode in (PERIPHERAL_SERVER, CENTRAL_CLIENT):
            try:
                self.uuid_for(mode)
            except BleError:
                continue
            out.append(mode)
        return out

    def to_map(self) -> dict[int, Any]:
        m: dict[int, Any] = {0: self.peripheral_server, 1: self.central_client}
        if self.peripheral_uuid is not None:
            m[10] = self.peripheral_uuid.bytes
        if self.central_uuid is not None:
            m[11] = self.central_uuid.bytes
        if self.peripheral_address is not None:
            m[20] = self.peripheral_address
        m.update(self.extra)
        return m

    def retrieval_method(self) -> list:
        """``DeviceRetrievalMethod = [2, 1, BleOptions]`` for a DeviceEngagement."""
        return [RETRIEVAL_BLE, BLE_METHOD_VERSION, self.to_map()]

    @classmethod
    def from_map(cls, m: object) -> BleOptions:
        if not isinstance(m, dict):
            raise MdocDecodeError(f"BleOptions: expected a map, got {type(m).__name__}")
        flags = []
        for key, what in ((0, "peripheral server mode"), (1, "central client mode")):
            value = m.get(key, False)
            if not isinstance(value, bool):
                raise MdocDecodeError(f"BleOptions.{key} ({what} supported): expected a bool, "
                                      f"got {type(value).__name__}")
            flags.append(value)
        uuids: list[uuid.UUID | None] = []
        for key in (10, 11):
            raw = m.get(key)
            if raw is not None and not (isinstance(raw, bytes) and len(raw) == 16):
                raise MdocDecodeError(f"BleOptions.{key}: expected a 16-byte UUID, got "
                                      f"{len(raw) if isinstance(raw, bytes) else type(raw).__name__}"
                                      f"{' bytes' if isinstance(raw, bytes) else ''}")
            uuids.append(uuid.UUID(bytes=raw) if raw is not None else None)
        address = m.get(20)
        if address is not None and not (isinstance(address, bytes) and len(address) == 6):
            raise MdocDecodeError("BleOptions.20: expected a 6-byte BLE device address")
        extra = {k: v for k, v in m.items() if k not in (0, 1, 10, 11, 20)}
        return cls(flags[0], flags[1], uuids[0], uuids[1], address, extra)

    @classmethod
    def of(cls, engagement: DeviceEngagement) -> BleOptions | None:
        """The BLE options among ``engagement``'s retrieval methods, or None if it names no
        BLE. :class:`MdocDecodeError` if the BLE method is malformed."""
        for method in engagement.retrieval_methods:
            if not isinstance(method, list) or len(method) < 3 or method[0] != RETRIEVAL_BLE \
                    or isinstance(method[0], bool):
                continue
            if method[1] != BLE_METHOD_VERSION or isinstance(method[1], bool):
                raise MdocDecodeError(f"DeviceRetrievalMethod BLE: unsupported version {method[1]!r}")
            return cls.from_map(method[2])
        return None


def value_size(att_mtu: int) -> int:
    """The longest characteristic value on a link of ATT MTU ``att_mtu``: ``min(MTU - 3, 512)``."""
    if not isinstance(att_mtu, int) or att_mtu < MIN_ATT_MTU:
        raise BleError(f"ATT MTU {att_mtu!r}: at least {MIN_ATT_MTU}")
    return min(att_mtu - 3, MAX_VALUE)


def fragments(message: bytes, size: int) -> list[bytes]:
    """``message`` as characteristic values of at most ``size`` bytes (:func:`value_size`),
    each ``0x01`` + data while more follow, ``0x00`` + data on the last."""
    if not message:
        raise BleError("a session message cannot be empty")
    if size < 2:
        raise BleError(f"characteristic value size {size}: at least 2")
    step = size - 1
    count = (len(message) + step - 1) // step
    return [bytes((MORE if i < count - 1 else LAST,)) + message[i * step:(i + 1) * step] for i in range(count)]


class Reassembler:
    """Joins the characteristic values of one direction into session messages.
    :meth:`feed` returns a message when its last value came, else None; a value that breaks
    the framing, or a message longer than ``max_message``, raises :class:`BleError` (the
    session is then over: the transport ends it)."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._parts: list[bytes] = []
        self._length = 0

    @property
    def pending(self) -> int:
        """Bytes of a message begun and not finished."""
        return self._length

    def feed(self, value: bytes) -> bytes | None:
        value = bytes(value)
        if not value:
            raise BleError("an empty characteristic value: each starts with 0x00 (last) or 0x01 (more)")
        if value[0] not in (MORE, LAST):
            raise BleError(f"characteristic value starts with 0x{value[0]:02X}: 0x00 (last) or 0x01 (more)")
        self._length += len(value) - 1
        if self._length > self.max_message:
            raise BleError(f"session message longer than {self.max_message} bytes")
        self._parts.append(value[1:])
        if value[0] == MORE:
            return None
        message, self._parts, self._length = b"".join(self._parts), [], 0
        if not message:
            raise BleError("an empty session message")
        return message


def state_value(value: bytes) -> str:
    """``start`` or ``end`` for a value written to or notified on State; :class:`BleError`
    for any other."""
    value = bytes(value)
    if value == STATE_START:
        return "start"
    if value == STATE_END:
        return "end"
    raise BleError(f"State characteristic value {value.hex() or 'empty'}: 01 (start) or 02 (end)")
