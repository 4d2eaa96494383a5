"""NFC engagement and NFC data retrieval (ISO/IEC 18013-5:2021 §8.2.2.1, §8.3.3.1.2, §9.1.5.1).

A reader taps the phone. The phone answers as an NFC Forum Type 4 Tag (the NDEF application
``D2760000850101``): its NDEF file holds a Connection Handover Select message (static
handover, NFC Forum Connection Handover 1.5) with

- a Handover Select record ``Hs`` listing the alternative carriers, each naming its carrier
  configuration record and the auxiliary record ``mdoc``;
- the DeviceEngagement, an NFC Forum external record ``iso.org:18013:deviceengagement``
  with id ``mdoc`` (no DeviceRetrievalMethods inside: the carriers say how to connect);
- the carrier configuration records: ``iso.org:18013:nfc`` (id ``nfc``) for data retrieval
  over NFC, or a Bluetooth LE OOB record, or a Wi-Fi Aware one.

In negotiated handover the NDEF file first holds a TNEP Service Parameter record (NFC
Forum Tag NDEF Exchange Protocol 1.0) for ``urn:nfc:sn:handover``; the reader selects that
service and writes its Handover Request (UPDATE BINARY), and the phone's Handover Select
then takes its place. The SessionTranscript's Handover is ``NFCHandover = [HandoverSelect
message bytes, HandoverRequest message bytes or null]`` (null for static handover): the
bytes as read and written.

Data retrieval over NFC selects the mdoc application ``A0000002480400`` and carries each
session message in BER-TLV data object ``53``, sent in ENVELOPE commands (INS ``C3``,
CLA ``10`` while more follow, ``00`` on the last, whose Le is the longest response wanted)
and answered by Le-sized pieces: ``90 00`` on the last, else ``61 XX`` (XX more bytes, at
most 255) or ``61 00`` (more than Le + 255), each fetched with GET RESPONSE (INS ``C0``).

Pure: the NDEF records come from ndeflib (nfcpy's NDEF library); the two flows are sans-I/O
(a generator for the reader's side, :class:`TransferCard` for the mdoc's).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import ndef

from protocols.gp import codes
from protocols.gp.apdu import ApduError, CommandApdu, ResponseApdu
from protocols.mdoc import ble
from protocols.mdoc.engagement import DeviceEngagement
from protocols.mdoc.errors import MdocDecodeError, MdocError

NDEF_APPLICATION_AID = bytes.fromhex("D2760000850101")
"""NFC Forum Type 4 Tag NDEF application (T4T 2.0)."""
MDOC_NFC_AID = bytes.fromhex("A0000002480400")
"""ISO/IEC 18013-5 NFC data transfer application (§8.3.3.1.2)."""
CC_FILE_ID = 0xE103
NDEF_FILE_ID = 0xE104
INS_SELECT, INS_READ_BINARY, INS_ENVELOPE, INS_GET_RESPONSE = 0xA4, 0xB0, 0xC3, 0xC0
CLA_LAST, CLA_CHAINING = 0x00, 0x10
DO_53 = 0x53

DEVICE_ENGAGEMENT_TYPE = "urn:nfc:ext:iso.org:18013:deviceengagement"
NFC_CARRIER_TYPE = "urn:nfc:ext:iso.org:18013:nfc"
BLE_CARRIER_TYPE = "application/vnd.bluetooth.le.oob"
WIFI_AWARE_CARRIER_TYPE = "application/vnd.wfa.nan"
CARRIER_KINDS = {NFC_CARRIER_TYPE: "nfc", BLE_CARRIER_TYPE: "ble", WIFI_AWARE_CARRIER_TYPE: "wifi-aware"}

MAX_MESSAGE = 4 * 1024 * 1024
"""The longest session message either side takes (a DeviceResponse with portraits fits)."""


class NfcError(MdocError):
    """An NFC engagement or transfer went wrong; the message says at which step and why."""


class NfcHandoverError(NfcError, MdocDecodeError):
    """A Handover Select / Request message, or one of its records, is not what §8.2.2.1 says."""


# -- carriers ----------------------------------------------------------------------------------

_MAX_COMMAND_TYPE, _MAX_RESPONSE_TYPE = 0x01, 0x02


@dataclass(frozen=True)
class NfcCarrier:
    """The ``iso.org:18013:nfc`` carrier configuration (§8.2.2.2): the longest command and
    response data fields the mdoc takes in data retrieval over NFC."""

    max_command: int = 0xFFFF
    max_response: int = 0xFFFF

    def __post_init__(self) -> None:
        if not 1 <= self.max_command <= 0xFFFF or not 1 <= self.max_response <= 0xFFFFFF:
            raise NfcError(f"NFC carrier: lengths {self.max_command}/{self.max_response} out of range")

    def payload(self) -> bytes:
        """Version 01, then two length-type-value entries (type 01 command, 02 response)."""
        cmd = self.max_command.to_bytes(2, "big")
        rsp = self.max_response.to_bytes(2 if self.max_response <= 0xFFFF else 3, "big")
        return (b"\x01" + bytes([1 + len(cmd), _MAX_COMMAND_TYPE]) + cmd
                + bytes([1 + len(rsp), _MAX_RESPONSE_TYPE]) + rsp)

    @classmethod
    def from_payload(cls, data: bytes) -> NfcCarrier:
        if len(data) < 1 or data[0] != 0x01:
            raise NfcHandoverError(f"NFC carrier record: version {data[:1].hex() or 'missing'}, expected 01")
        values: dict[int, int] = {}
        i = 1
        while i < len(data):
            n = data[i]
            if n < 2 or i + 1 + n > len(data):
                raise NfcHandoverError(f"NFC carrier record: entry at offset {i} of length {n} overruns "
                                       f"the {len(data)}-byte payload")
            values[data[i + 1]] = int.from_bytes(data[i + 2 : i + 1 + n], "big")
            i += 1 + n
        if _MAX_COMMAND_TYPE not in values or _MAX_RESPONSE_TYPE not in values:
            raise NfcHandoverError("NFC carrier record: needs both the maximum command (01) and response (02) "
                                   "data lengths")
        try:
            return cls(values[_MAX_COMMAND_TYPE], values[_MAX_RESPONSE_TYPE])
        except NfcError as exc:
            raise NfcHandoverError(str(exc)) from None


# -- the Bluetooth LE carrier: an LE OOB record (Bluetooth Secure Simple Pairing Using NFC 1.2 §3) --

AD_COMPLETE_128_BIT_UUIDS, AD_LE_DEVICE_ADDRESS, AD_LE_ROLE = 0x07, 0x1B, 0x1C
LE_ROLE_PERIPHERAL, LE_ROLE_CENTRAL, LE_ROLE_BOTH_PERIPHERAL_PREFERRED, LE_ROLE_BOTH_CENTRAL_PREFERRED = 0, 1, 2, 3
"""LE Role values (Core Specification Supplement §1.17): the roles of the device whose record it is."""


def _ad_structures(payload: bytes, what: str) -> dict[int, bytes]:
    """The AD structures ``[length][type][data]`` of an LE OOB payload (Core Vol 3 Part C §11)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(payload):
        n = payload[i]
        if n == 0:  # early termination (Core Vol 3 Part C §11)
            break
        if i + 1 + n > len(payload):
            raise NfcHandoverError(f"{what}: AD structure at offset {i} of length {n} overruns the "
                                   f"{len(payload)}-byte payload")
        out.setdefault(payload[i + 1], payload[i + 2 : i + 1 + n])
        i += 1 + n
    return out


def ble_carrier_options(payload: bytes, *, of: str, uuid_from: ble.BleOptions | None = None) -> ble.BleOptions:
    """The BLE options an LE OOB carrier record offers, in the mdoc's terms (ISO/IEC 18013-5
    §8.2.2.1): ``of`` is whose record it is, ``mdoc`` (a Handover Select: LE Role 00, only
    peripheral, is mdoc peripheral server mode; 01, only central, mdoc central client mode)
    or ``reader`` (a Handover Request: the other way round); 02 / 03 both. The record's
    128-bit service UUID serves every mode it offers; a Handover Select without one (Annex
    D's, central client mode) takes the UUID the reader's request offered, ``uuid_from``.
    The LE device address (type 1B: six bytes, least significant first, then its type) is
    kept as :attr:`~protocols.mdoc.ble.BleOptions.peripheral_address`, its six bytes as
    they came."""
    what = f"Bluetooth LE carrier record of the {'Handover Select' if of == 'mdoc' else 'Handover Request'}"
    ad = _ad_structures(bytes(payload), what)
    role = ad.get(AD_LE_ROLE)
    if role is None or len(role) != 1:
        raise NfcHandoverError(f"{what}: no LE Role (AD type 1C, one byte)")
    if role[0] > LE_ROLE_BOTH_CENTRAL_PREFERRED:
        raise NfcHandoverError(f"{what}: LE Role {role[0]:02X} (00 to 03)")
    peripheral_device = role[0] != LE_ROLE_CENTRAL
    central_device = role[0] != LE_ROLE_PERIPHERAL
    # the mdoc's peripheral server mode is the mdoc as peripheral: the reader as central
    peripheral, central = ((peripheral_device, central_device) if of == "mdoc" else (central_device, peripheral_device))
    found = None
    uuids = ad.get(AD_COMPLETE_128_BIT_UUIDS)
    if uuids is not None:
        if not uuids or len(uuids) % 16:
            raise NfcHandoverError(f"{what}: a 128-bit service UUID list of {len(uuids)} bytes")
        found = uuid.UUID(bytes=uuids[:16][::-1])  # AD data is little-endian
    elif uuid_from is not None:
        found = uuid_from.central_uuid or uuid_from.peripheral_uuid
    address = ad.get(AD_LE_DEVICE_ADDRESS)
    if address is not None and len(address) != 7:
        raise NfcHandoverError(f"{what}: LE device address of {len(address)} bytes (6 and a type)")
    return ble.BleOptions(peripheral, central, found if peripheral else None, found if central else None,
                          address[:6] if address else None)


def ble_carrier_payload(options: ble.BleOptions, *, of: str, with_uuid: bool = True) -> bytes:
    """The LE OOB payload offering ``options`` (:func:`ble_carrier_options` read backwards):
    LE Role, then the service UUID unless ``with_uuid`` is false (a phone answering a reader
    that already named one, as Annex D's does). Both modes share one UUID."""
    modes = options.modes()
    if not modes:
        raise NfcError("a BLE carrier needs at least one mode with its UUID")
    both = len(modes) == 2
    if both and options.peripheral_uuid != options.central_uuid:
        raise NfcError("a BLE carrier offering both modes names one UUID for both")
    peripheral_device = ble.PERIPHERAL_SERVER in modes if of == "mdoc" else ble.CENTRAL_CLIENT in modes
    role = (LE_ROLE_BOTH_CENTRAL_PREFERRED if both else LE_ROLE_PERIPHERAL if peripheral_device else LE_ROLE_CENTRAL)
    out = bytes([2, AD_LE_ROLE, role])
    if with_uuid:
        out += bytes([17, AD_COMPLETE_128_BIT_UUIDS]) + options.uuid_for(modes[0]).bytes[::-1]
    return out


@dataclass(frozen=True)
class Carrier:
    """One alternative carrier of a handover message, with its configuration record."""

    kind: str
    """``nfc``, ``ble``, ``wifi-aware``, or the record type of one this module does not know."""
    reference: str
    power_state: str
    auxiliary: tuple[str, ...]
    record_type: str
    payload: bytes = field(repr=False)
    nfc: NfcCarrier | None = None
    ble: ble.BleOptions | None = None
    """A Bluetooth LE carrier's options in the mdoc's terms (its UUID still None when a
    Handover Select leaves it to the reader's request: :meth:`HandoverSelect.ble_options`)."""


def _records(data: bytes, what: str, head: type, short: str, *, errors: str = "strict") -> list:
    """The NDEF records of a handover message whose first record must be a ``head``."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise NfcHandoverError(f"{what}: empty")
    try:
        records = list(ndef.message_decoder(bytes(data), errors=errors))
    except (ndef.DecodeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise NfcHandoverError(f"{what}: not an NDEF message: {exc}") from None
    if not isinstance(records[0], head):
        raise NfcHandoverError(f"{what}: first record is {records[0].type!r}, not a {short} record")
    return records


def _carriers(head, records: list, what: str, *, lengths: bool = True) -> tuple[Carrier, ...]:  # noqa: ANN001
    """The alternative carriers of a handover message's first record (``head``), each with
    its configuration record. ``lengths``: an NFC carrier must give its lengths (the mdoc's
    select does; the reader's request may send the version alone); it also says whose
    message it is, for a BLE carrier's LE Role (the mdoc's select, the reader's request)."""
    by_id: dict[str, object] = {}
    for r in records[1:]:
        by_id.setdefault(r.name, r)
    out = []
    for ac in head.alternative_carriers:
        ref = ac.carrier_data_reference
        record = by_id.get(ref)
        if record is None:
            raise NfcHandoverError(f"{what}: alternative carrier {ref!r} names no carrier configuration record")
        aux = tuple(ac.auxiliary_data_reference)
        kind = CARRIER_KINDS.get(record.type, record.type)
        nfc = None
        if kind == "nfc" and (lengths or len(record.data) > 1):
            nfc = NfcCarrier.from_payload(bytes(record.data))
        options = None
        if kind == "ble":  # a malformed one is no offer; HandoverSelect.ble_options names its fault
            with contextlib.suppress(NfcHandoverError):
                options = ble_carrier_options(bytes(record.data), of="mdoc" if lengths else "reader")
        out.append(Carrier(kind, ref, ac.carrier_power_state, aux, record.type, bytes(record.data), nfc, options))
    return tuple(out)


@dataclass(frozen=True)
class HandoverSelect:
    """A Handover Select message of NFC engagement (§8.2.2.1), kept as the bytes read: they
    go verbatim into the SessionTranscript."""

    version: str
    device_engagement: DeviceEngagement
    carriers: tuple[Carrier, ...]
    raw: bytes = field(repr=False)

    @property
    def nfc_carrier(self) -> NfcCarrier | None:
        return next((c.nfc for c in self.carriers if c.nfc is not None), None)

    def ble_options(self, request: HandoverRequest | None = None) -> ble.BleOptions | None:
        """The BLE options of this select's Bluetooth LE carrier (None if it offers none),
        with the UUID of the reader's ``request`` where the select names none;
        :class:`NfcHandoverError` naming what is wrong with a malformed one."""
        carrier = next((c for c in self.carriers if c.kind == "ble"), None)
        if carrier is None:
            return None
        asked = next((c.ble for c in request.carriers if c.ble is not None), None) if request else None
        return ble_carrier_options(carrier.payload, of="mdoc", uuid_from=asked)

    @classmethod
    def build(cls, device_engagement: DeviceEngagement, nfc: NfcCarrier | None = None, *,
              ble_options: ble.BleOptions | None = None, ble_uuid: bool = True) -> HandoverSelect:
        """A Handover Select: ``Hs`` (1.5) with an alternative carrier per offer (power state
        active, auxiliary ``mdoc``), the DeviceEngagement record and the carriers'
        configuration records: ``nfc`` (data retrieval over NFC, id ``nfc``) and / or
        ``ble_options`` (a Bluetooth LE OOB record, id ``0`` as Annex D's; ``ble_uuid``
        false leaves its UUID out, the one the reader's request named then serving)."""
        if nfc is None and ble_options is None:
            raise NfcError("a Handover Select offers at least one carrier")
        hs = ndef.HandoverSelectRecord("1.5")
        before, after, carriers = [], [], []  # Annex D: the BLE record before the engagement's
        if ble_options is not None:
            hs.add_alternative_carrier("active", "0", "mdoc")
            payload = ble_carrier_payload(ble_options, of="mdoc", with_uuid=ble_uuid)
            before.append(ndef.Record(BLE_CARRIER_TYPE, "0", payload))
            carriers.append(Carrier("ble", "0", "active", ("mdoc",), BLE_CARRIER_TYPE, payload, None,
                                    ble_carrier_options(payload, of="mdoc")))
        if nfc is not None:
            hs.add_alternative_carrier("active", "nfc", "mdoc")
            after.append(ndef.Record(NFC_CARRIER_TYPE, "nfc", nfc.payload()))
            carriers.append(Carrier("nfc", "nfc", "active", ("mdoc",), NFC_CARRIER_TYPE, nfc.payload(), nfc))
        de = ndef.Record(DEVICE_ENGAGEMENT_TYPE, "mdoc", device_engagement.encode())
        raw = b"".join(ndef.message_encoder([hs, *before, de, *after]))
        return cls("1.5", device_engagement, tuple(carriers), raw)

    @classmethod
    def decode(cls, data: bytes) -> HandoverSelect:
        what = "Handover Select message"
        records = _records(data, what, ndef.HandoverSelectRecord, "Handover Select (Hs)")
        head = records[0]
        if head.error is not None:
            raise NfcHandoverError(f"{what}: the mdoc reports a handover error {head.error}")
        if not head.alternative_carriers:
            raise NfcHandoverError(f"{what}: no alternative carrier (the phone takes none of those offered)")
        engagements = [r for r in records[1:] if r.type == DEVICE_ENGAGEMENT_TYPE]
        if len(engagements) != 1:
            raise NfcHandoverError(f"{what}: {len(engagements)} DeviceEngagement records "
                                   "(iso.org:18013:deviceengagement), expected one")
        try:
            de = DeviceEngagement.decode(bytes(engagements[0].data))
        except MdocDecodeError as exc:
            raise NfcHandoverError(f"{what}: {exc}") from None
        return cls(head.version_string, de, _carriers(head, records, what), bytes(data))


@dataclass(frozen=True)
class HandoverRequest:
    """A Handover Request message (negotiated handover: the reader's carriers), as read.

    Read leniently in one respect: a request without the collision resolution record that
    Connection Handover 1.5 asks for is taken (``collision`` None), as multipaz's reader
    sends one; the phone is always the selector, so it has no collision to resolve."""

    version: str
    carriers: tuple[Carrier, ...]
    raw: bytes = field(repr=False)
    collision: int | None = None

    @classmethod
    def decode(cls, data: bytes) -> HandoverRequest:
        what = "Handover Request message"
        try:
            records = _records(data, what, ndef.HandoverRequestRecord, "Handover Request (Hr)")
        except NfcHandoverError as exc:
            if "without collision resolution record" not in str(exc):
                raise
            records = _records(data, what, ndef.HandoverRequestRecord, "Handover Request (Hr)", errors="relax")
        head = records[0]
        return cls(head.version_string, _carriers(head, records, what, lengths=False), bytes(data),
                   head.collision_resolution_number)


def nfc_handover(select: HandoverSelect | bytes, request: HandoverRequest | bytes | None = None) -> list:
    """``NFCHandover = [HandoverSelect bytes, HandoverRequest bytes / null]``, the
    SessionTranscript's Handover after NFC engagement (§9.1.5.1)."""
    hs = select.raw if isinstance(select, HandoverSelect) else bytes(select)
    hr = request.raw if isinstance(request, HandoverRequest) else request
    return [hs, None if hr is None else bytes(hr)]


# -- negotiated handover: NFC Forum Tag NDEF Exchange Protocol (TNEP 1.0) --------------------

HANDOVER_SERVICE = "urn:nfc:sn:handover"
TNEP_PARAMETER_TYPE, TNEP_SELECT_TYPE, TNEP_STATUS_TYPE = "urn:nfc:wkt:Tp", "urn:nfc:wkt:Ts", "urn:nfc:wkt:Te"
INS_UPDATE_BINARY = 0xD6


@dataclass(frozen=True)
class ServiceParameter:
    """A TNEP Service Parameter record (TNEP 1.0 §4.1.2): the phone offers a service (here
    connection handover) that the reader selects by writing to the NDEF file."""

    service: str = HANDOVER_SERVICE
    version: int = 0x10
    mode: int = 0x00
    """Communication mode: 00 single response."""
    wt_int: int = 0
    """Minimum waiting time, coded: 2^(WT_INT / 4 - 1) ms."""
    n_wait: int = 15
    max_ndef: int = 0xFFFF

    def message(self) -> bytes:
        name = self.service.encode()
        payload = (bytes([self.version, len(name)]) + name + bytes([self.mode, self.wt_int, self.n_wait])
                   + self.max_ndef.to_bytes(2, "big"))
        return b"".join(ndef.message_encoder([ndef.Record(TNEP_PARAMETER_TYPE, "", payload)]))

    @classmethod
    def find(cls, message: bytes) -> ServiceParameter | None:
        """The connection handover service's record in an NDEF message, if there is one."""
        try:
            records = list(ndef.message_decoder(bytes(message), errors="strict"))
        except (ndef.DecodeError, ValueError, TypeError, IndexError, KeyError):
            return None
        for r in records:
            p = bytes(r.data)
            if r.type != TNEP_PARAMETER_TYPE or len(p) < 2 or len(p) != p[1] + 7:
                continue
            n = p[1]
            if p[2 : 2 + n] == HANDOVER_SERVICE.encode():
                return cls(HANDOVER_SERVICE, p[0], p[2 + n], p[3 + n], p[4 + n] & 0x0F,
                           int.from_bytes(p[5 + n : 7 + n], "big"))
        return None


def service_select(service: str) -> bytes:
    """The Service Select message (TNEP 1.0 §4.2.2)."""
    name = service.encode()
    return b"".join(ndef.message_encoder([ndef.Record(TNEP_SELECT_TYPE, "", bytes([len(name)]) + name)]))


def selected_service(message: bytes) -> str:
    records = _records(message, "Service Select message", ndef.Record, "Service Select (Ts)")
    p = bytes(records[0].data)
    if records[0].type != TNEP_SELECT_TYPE or len(p) < 1 or len(p) != 1 + p[0]:
        raise NfcHandoverError("Service Select message: not one Ts record with a service name")
    return p[1:].decode("utf-8", "replace")


def tnep_status_message(status: int) -> bytes:
    """The TNEP Status message (TNEP 1.0 §4.3): 00 success, 01 protocol error."""
    return b"".join(ndef.message_encoder([ndef.Record(TNEP_STATUS_TYPE, "", bytes([status]))]))


def tnep_status(message: bytes) -> int:
    records = _records(message, "TNEP Status message", ndef.Record, "TNEP Status (Te)")
    status = [bytes(r.data) for r in records if r.type == TNEP_STATUS_TYPE]
    if len(status) != 1 or len(status[0]) != 1:
        raise NfcHandoverError("TNEP Status message: expected one Te record of one byte")
    return status[0][0]


def handover_request(carrier: NfcCarrier | None = None, *, collision: int | None = None,
                     ble_options: ble.BleOptions | None = None, nfc: bool = True) -> bytes:
    """The reader's Handover Request (negotiated handover): ``Hr`` 1.5 with a collision
    resolution number and its alternative carriers: ``ble_options`` (a Bluetooth LE OOB
    record with the reader's LE Role and one service UUID, id ``0``), then data retrieval
    over NFC (unless ``nfc`` is false), whose configuration record gives the version alone
    (as Annex D's) or the reader's lengths."""
    import secrets

    hr = ndef.HandoverRequestRecord("1.5", secrets.randbelow(0x10000) if collision is None else collision)
    records = []
    if ble_options is not None:
        hr.add_alternative_carrier("active", "0")
        records.append(ndef.Record(BLE_CARRIER_TYPE, "0", ble_carrier_payload(ble_options, of="reader")))
    if nfc:
        hr.add_alternative_carrier("active", "nfc")
        records.append(ndef.Record(NFC_CARRIER_TYPE, "nfc", carrier.payload() if carrier else b"\x01"))
    if not records:
        raise NfcError("a Handover Request offers at least one carrier")
    return b"".join(ndef.message_encoder([hr, *records]))


def is_nfc_transcript(transcript) -> bool:  # noqa: ANN001 - a SessionTranscript
    """Whether a SessionTranscript followed NFC engagement: its Handover is NFCHandover,
    ``[HandoverSelect bytes, HandoverRequest bytes or null]``."""
    h = transcript.handover
    return (isinstance(h, list) and len(h) == 2 and isinstance(h[0], bytes)
            and (h[1] is None or isinstance(h[1], bytes)) and transcript.device_engagement_bytes is not None)


# -- NFC Forum Type 4 Tag: the capability container ---------------------------------------------


@dataclass(frozen=True)
class CapabilityContainer:
    """The Type 4 Tag's CC file (T4T 2.0, mapping version 2.0): the longest READ BINARY
    answer (MLe) and UPDATE BINARY data (MLc), and the NDEF file's id, size and access."""

    max_read: int = 0x00FF
    max_update: int = 0x00FF
    ndef_file_id: int = NDEF_FILE_ID
    ndef_max_size: int = 0x7FFF
    read_access: int = 0x00
    write_access: int = 0xFF
    mapping_version: int = 0x20

    def encode(self) -> bytes:
        tlv = bytes([0x04, 0x06]) + self.ndef_file_id.to_bytes(2, "big") + self.ndef_max_size.to_bytes(2, "big")
        return (b"\x00\x0f" + bytes([self.mapping_version]) + self.max_read.to_bytes(2, "big")
                + self.max_update.to_bytes(2, "big") + tlv + bytes([self.read_access, self.write_access]))

    @classmethod
    def decode(cls, data: bytes) -> CapabilityContainer:
        if len(data) < 15:
            raise NfcError(f"capability container: {len(data)} bytes, expected at least 15")
        if data[7:9] != b"\x04\x06":
            raise NfcError(f"capability container: NDEF File Control TLV starts {data[7:9].hex()}, expected 0406")
        cc = cls(int.from_bytes(data[3:5], "big"), int.from_bytes(data[5:7], "big"),
                 int.from_bytes(data[9:11], "big"), int.from_bytes(data[11:13], "big"), data[13], data[14], data[2])
        if cc.mapping_version >> 4 not in (2, 3):
            raise NfcError(f"capability container: mapping version {cc.mapping_version:02X}, expected 2.x or 3.x")
        if cc.max_read < 0x0F:
            raise NfcError(f"capability container: MLe {cc.max_read} is below 15")
        if cc.read_access != 0x00:
            raise NfcError(f"capability container: the NDEF file is not readable (access {cc.read_access:02X})")
        return cc


# -- data object 53 ------------------------------------------------------------------------------


def encapsulate(message: bytes) -> bytes:
    """Data object ``53`` around a session message (BER-TLV length, at most 3 bytes)."""
    n = len(message)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    elif n < 0x10000:
        length = b"\x82" + n.to_bytes(2, "big")
    elif n < 0x1000000:
        length = b"\x83" + n.to_bytes(3, "big")
    else:
        raise NfcError(f"a message of {n} bytes does not fit data object 53")
    return bytes([DO_53]) + length + bytes(message)


def decapsulate(data: bytes) -> bytes:
    """The session message inside data object ``53`` (nothing may follow it)."""
    if len(data) < 2 or data[0] != DO_53:
        raise NfcError(f"expected data object 53, got {bytes(data[:2]).hex() or 'nothing'}")
    first = data[1]
    if first < 0x80:
        n, start = first, 2
    elif 0x81 <= first <= 0x83:
        k = first - 0x80
        if len(data) < 2 + k:
            raise NfcError("data object 53: length field cut short")
        n, start = int.from_bytes(data[2 : 2 + k], "big"), 2 + k
    else:
        raise NfcError(f"data object 53: length byte {first:02X} is not a definite length of up to 3 bytes")
    if len(data) - start != n:
        raise NfcError(f"data object 53: length {n}, but {len(data) - start} bytes follow")
    return bytes(data[start:])


# -- the reader's side, as generators: yield a command APDU, get its response APDU ---------------

Exchange = Generator[bytes, bytes, "bytes"]


def _answer(raw: bytes, what: str) -> ResponseApdu:
    try:
        return ResponseApdu.parse(raw)
    except ApduError as exc:
        raise NfcError(f"{what}: {exc}") from None


def _select(aid_or_file: bytes, *, by_name: bool) -> bytes:
    return CommandApdu(0x00, INS_SELECT, 0x04 if by_name else 0x00, 0x00 if by_name else 0x0C, aid_or_file,
                       ne=256 if by_name else None).to_bytes()


def select_application(aid: bytes, what: str, *, not_found: str = "") -> Generator[bytes, bytes, None]:
    """SELECT by AID; ``not_found``: what a 6A82 answer means, for the message."""
    r = _answer((yield _select(aid, by_name=True)), f"SELECT {what}")
    if r.sw != codes.SW_OK:
        hint = f": {not_found}" if not_found and r.sw == codes.SW_FILE_NOT_FOUND else ""
        raise NfcError(f"SELECT {what} ({aid.hex().upper()}) answered {r.sw:04X}{hint}")


def _select_file(file_id: int, what: str) -> Generator[bytes, bytes, None]:
    r = _answer((yield _select(file_id.to_bytes(2, "big"), by_name=False)), f"SELECT {what}")
    if r.sw != codes.SW_OK:
        raise NfcError(f"SELECT {what} ({file_id:04X}) answered {r.sw:04X}")


def _read_binary(start: int, length: int, chunk: int, what: str) -> Exchange:
    """``length`` bytes of the selected file from ``start``, READ BINARY ``chunk`` at a time."""
    out = b""
    while len(out) < length:
        n = min(chunk, length - len(out))
        offset = start + len(out)
        if offset > 0x7FFF:
            raise NfcError(f"{what}: offset {offset} beyond READ BINARY's 15 bits")
        r = _answer((yield CommandApdu(0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, ne=n).to_bytes()),
                    f"READ BINARY {what}")
        if r.sw != codes.SW_OK or not r.data or len(r.data) > n:
            raise NfcError(f"READ BINARY {what} at {offset} answered {r.sw:04X} with {len(r.data)} bytes "
                           f"({n} asked)")
        out += r.data
    return out


def _read_ndef(cc: CapabilityContainer, chunk: int) -> Exchange:
    """The NDEF message in the selected NDEF file (``b""`` when NLEN is 0)."""
    nlen = _answer((yield CommandApdu(0x00, INS_READ_BINARY, 0, 0, ne=2).to_bytes()), "READ BINARY NLEN")
    if nlen.sw != codes.SW_OK or len(nlen.data) != 2:
        raise NfcError(f"READ BINARY NLEN answered {nlen.sw:04X} with {len(nlen.data)} bytes")
    size = int.from_bytes(nlen.data, "big")
    if size + 2 > cc.ndef_max_size or size > 0x7FFD:
        raise NfcError(f"NDEF message length {size} exceeds the file's {cc.ndef_max_size} bytes")
    return (yield from _read_binary(2, size, chunk, "NDEF"))


def _write_ndef(message: bytes, chunk: int, what: str) -> Generator[bytes, bytes, None]:
    """T4T NDEF write procedure: NLEN 0000, the message from offset 2, then its NLEN."""
    def update(offset: int, data: bytes, step: str) -> Generator[bytes, bytes, None]:
        r = _answer((yield CommandApdu(0x00, INS_UPDATE_BINARY, offset >> 8, offset & 0xFF, data).to_bytes()),
                    f"UPDATE BINARY {what}")
        if r.sw != codes.SW_OK:
            raise NfcError(f"UPDATE BINARY {what} ({step}) answered {r.sw:04X}")

    if len(message) > 0x7FFD:
        raise NfcError(f"{what}: {len(message)} bytes do not fit an NDEF file")
    yield from update(0, b"\x00\x00", "NLEN 0")
    for i in range(0, len(message), chunk):
        yield from update(2 + i, message[i : i + chunk], f"at {2 + i}")
    yield from update(0, len(message).to_bytes(2, "big"), "NLEN")


def _transact(cc: CapabilityContainer, message: bytes, parameter: ServiceParameter, chunk: int,
              what: str) -> Exchange:
    """TNEP single response: write ``message``, read the tag's answer (read again while the
    NDEF file is still empty, at most N_wait + 1 times: the transport is the wait)."""
    yield from _write_ndef(message, max(1, min(chunk, cc.max_update)), what)
    for _ in range(parameter.n_wait + 1):
        answer = yield from _read_ndef(cc, chunk)
        if answer:
            return answer
    raise NfcError(f"no answer to the {what} after {parameter.n_wait + 1} reads")


def nfc_engagement(*, max_read: int = 0xFF, carrier: NfcCarrier | None = None,
                   request: bytes | None = None) -> Generator[bytes, bytes, tuple[bytes, bytes | None]]:
    """The reader's NFC engagement: select the NDEF application, read the capability
    container and the NDEF file. A Handover Select there is static handover; a TNEP Service
    Parameter record for ``urn:nfc:sn:handover`` is negotiated handover: select the service,
    write our Handover Request (data retrieval over NFC, ``carrier``), read the phone's
    Handover Select (``request``: a Handover Request message of the caller's own instead).
    Returns ``(Handover Select, Handover Request or None)``, as read and written: the
    SessionTranscript's NFCHandover."""
    yield from select_application(NDEF_APPLICATION_AID, "NDEF application",
                                  not_found="no NFC engagement (no mdoc wallet on this phone, or the phone is "
                                            "locked: unlock it and tap again)")
    yield from _select_file(CC_FILE_ID, "capability container")
    cc = CapabilityContainer.decode((yield from _read_binary(0, 15, 15, "capability container")))
    chunk = max(1, min(cc.max_read, max_read))
    yield from _select_file(cc.ndef_file_id, "NDEF file")
    first = yield from _read_ndef(cc, chunk)
    if not first:
        raise NfcError("the NDEF file is empty: the phone offers no handover")
    parameter = ServiceParameter.find(first)
    if parameter is None:
        return first, None
    if cc.write_access != 0x00:
        raise NfcError("the phone asks for negotiated handover but its NDEF file is not writable")
    status = yield from _transact(cc, service_select(HANDOVER_SERVICE), parameter, chunk, "Service Select")
    code = tnep_status(status)
    if code != 0:
        raise NfcError(f"the phone refused the connection handover service: TNEP status {code:02X}")
    request = handover_request(carrier) if request is None else bytes(request)
    select = yield from _transact(cc, request, parameter, chunk, "Handover Request")
    return select, request


def transceive(message: bytes, *, max_command: int, max_response: int,
               max_message: int = MAX_MESSAGE) -> Exchange:
    """One session message over NFC (§8.3.3.1.2): the ENVELOPE chain, then GET RESPONSE
    while the mdoc says more is available; returns the mdoc's message (``b""`` when it
    answered with no data). ``max_command`` / ``max_response``: the lengths both sides take."""
    data = encapsulate(message)
    step = max(1, min(max_command, 0xFFFF))
    le = max(1, min(max_response, 0x10000))
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    r = None
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        cmd = CommandApdu(CLA_LAST if last else CLA_CHAINING, INS_ENVELOPE, 0, 0, piece,
                          ne=le if last else None, extended=le > 256 or len(piece) > 255)
        r = _answer((yield cmd.to_bytes()), "ENVELOPE")
        if not last and r.sw != codes.SW_OK:
            raise NfcError(f"ENVELOPE (chained, piece {i + 1} of {len(pieces)}) answered {r.sw:04X}")
    assert r is not None
    out, what = bytearray(r.data), "ENVELOPE"
    while r.sw != codes.SW_OK:
        if r.sw >> 8 != 0x61:
            raise NfcError(f"{what} answered {r.sw:04X}")
        if len(out) > max_message + 4:
            raise NfcError(f"the mdoc's answer exceeds {max_message} bytes")
        want = r.sw & 0xFF or le
        cmd = CommandApdu(0x00, INS_GET_RESPONSE, 0, 0, ne=want, extended=want > 256)
        what = "GET RESPONSE"
        r = _answer((yield cmd.to_bytes()), what)
        if r.sw >> 8 == 0x61 and not r.data:
            raise NfcError(f"GET RESPONSE answered {r.sw:04X} with no data: the mdoc's answer does not advance")
        if len(r.data) > want:
            raise NfcError(f"GET RESPONSE answered {len(r.data)} bytes for {want} asked")
        out += r.data
    if not out:
        return b""
    return decapsulate(bytes(out))


# -- the mdoc's side -------------------------------------------------------------------------------


class TransferCard:
    """The mdoc's half of data retrieval over NFC, after SELECT of the mdoc application:
    ENVELOPE pieces are gathered; a complete message is handed to ``answer`` (the wallet),
    whose reply goes out in Le-sized pieces under ``61 XX`` / ``61 00`` and GET RESPONSE.
    Every fault is a status word; nothing is raised."""

    def __init__(self, answer: Callable[[bytes], bytes | None], *, max_message: int = MAX_MESSAGE) -> None:
        self.answer = answer
        self.max_message = max_message
        self._incoming = bytearray()
        self._outgoing = b""

    def handle(self, cmd: CommandApdu) -> bytes:
        if cmd.ins == INS_ENVELOPE:
            return self._envelope(cmd)
        if cmd.ins == INS_GET_RESPONSE:
            if cmd.cla != 0x00 or cmd.data:
                return _sw(codes.SW_WRONG_DATA if cmd.data else codes.SW_CLA_NOT_SUPPORTED)
            if not self._outgoing:
                return _sw(codes.SW_CONDITIONS_NOT_SATISFIED)
            return self._piece(cmd.ne or 256)
        return _sw(codes.SW_INS_NOT_SUPPORTED)

    def _envelope(self, cmd: CommandApdu) -> bytes:
        if cmd.cla not in (CLA_LAST, CLA_CHAINING):
            return _sw(codes.SW_CLA_NOT_SUPPORTED)
        if cmd.p1 or cmd.p2:
            return _sw(codes.SW_INCORRECT_P1P2)
        if len(self._incoming) + len(cmd.data) > self.max_message + 4:
            self._incoming.clear()
            return _sw(codes.SW_NOT_ENOUGH_MEMORY)
        self._outgoing = b""  # a new message: an answer not fetched is dropped
        self._incoming += cmd.data
        if cmd.cla == CLA_CHAINING:
            return _sw(codes.SW_OK)
        data, self._incoming = bytes(self._incoming), bytearray()
        try:
            message = decapsulate(data)
        except NfcError:
            return _sw(codes.SW_WRONG_DATA)
        reply = self.answer(message)
        if not reply:
            return _sw(codes.SW_OK)
        self._outgoing = encapsulate(reply)
        return self._piece(cmd.ne or 256)

    def _piece(self, le: int) -> bytes:
        piece, self._outgoing = self._outgoing[:le], self._outgoing[le:]
        left = len(self._outgoing)
        if not left:
            return piece + b"\x90\x00"
        return piece + bytes([0x61, left if left <= 255 else 0])


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")
