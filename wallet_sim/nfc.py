"""The wallet on the NFC antenna: engagement and data retrieval by tapping (ISO/IEC 18013-5:2021
§8.2.2.1 static handover, §8.3.3.1.2 data retrieval over NFC).

The phone answers a reader's tap as Android host card emulation does:

- :class:`NfcTag` is the wallet's HCE service. It is an NFC Forum Type 4 Tag (NDEF
  application ``D2760000850101``: capability container ``E103``, NDEF file ``E104`` holding
  the Handover Select message with a fresh DeviceEngagement and the NFC carrier) and the
  mdoc application ``A0000002480400`` (ENVELOPE / GET RESPONSE, :class:`TransferCard`),
  behind which a :class:`~wallet_sim.wallet.WalletSession` answers.
- :class:`AidRouter` is the phone's NFC controller: a SELECT by AID of one of the wallet's
  AIDs routes the APDUs that follow to the wallet, any other SELECT by AID (the JPKI
  applet, the ISD) to the secure element, as an AID routing table with the eSE as the
  default route does.

Sans-I/O, bytes in and bytes out: ``transmit(command APDU) -> response APDU``. The tag never
raises: a fault is a status word, recorded in ``events``. A tap ends with the field
(:meth:`NfcTag.deactivate`): the session and its keys are gone, as with a real phone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Literal

import ndef

from protocols.gp import codes
from protocols.gp.apdu import ApduError, CommandApdu, channel_of
from protocols.mdoc import ble, nfc
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import Wallet, WalletSession

Transmit = Callable[[bytes], bytes]

WALLET_AIDS = (nfc.NDEF_APPLICATION_AID, nfc.MDOC_NFC_AID)
"""The AIDs the wallet registers for host card emulation."""


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class NfcTag:
    """One activation of the wallet's HCE service (a tap). ``carrier``: the lengths the
    phone takes in data retrieval over NFC, announced in the Handover Select message."""

    def __init__(self, wallet: Wallet, *, carrier: nfc.NfcCarrier | None = None,
                 handover: Literal["static", "negotiated"] = "static",
                 capability: nfc.CapabilityContainer | None = None,
                 engagement: Callable[[], Engagement] = Engagement.new,
                 ble_options: ble.BleOptions | None = None, nfc_retrieval: bool = True,
                 on_offer: Callable[[NfcTag], None] | None = None) -> None:
        """``ble_options``: also offer data retrieval over Bluetooth LE in these modes (the
        phone then goes on over BLE once the reader chose it: :attr:`ble_selected`);
        ``nfc_retrieval`` false: offer BLE only. ``on_offer(tag)``: called once the Handover
        Select is offered (a phone starts its BLE side then, before the reader chooses)."""
        if handover not in ("static", "negotiated"):
            raise ValueError(f"handover {handover!r}: static or negotiated")
        if not nfc_retrieval and ble_options is None:
            raise ValueError("an NFC engagement offers data retrieval over NFC, BLE or both")
        self.wallet = wallet
        self.ble_options = ble_options
        self.nfc_retrieval = nfc_retrieval
        self._on_offer = on_offer
        self.engagement: Engagement | None = None
        """The engagement this tap offered, its Handover in it (the BLE step's too)."""
        self.ble_selected: ble.BleOptions | None = None
        """After the engagement: the BLE mode and UUID the handover settled, if BLE was offered."""
        self.carrier = carrier or nfc.NfcCarrier()
        self.handover = handover
        self.capability = capability or nfc.CapabilityContainer(
            write_access=0x00 if handover == "negotiated" else 0xFF)
        self._new_engagement = engagement
        self.session: WalletSession | None = None
        self.events: list[str] = []
        self._app: bytes | None = None
        self._file: bytes | None = None
        self._writable = False
        self._ndef: bytes | None = None
        self._hs: bytes | None = None
        self._tnep: Literal["service", "request", "done"] = "service"
        self._written: bytearray | None = None
        self._transfer = nfc.TransferCard(self._answer)

    @property
    def handover_select(self) -> bytes | None:
        """The Handover Select message this tap offered (None before there was one)."""
        return self._hs

    def deactivate(self) -> None:
        """The field is gone: the session ends, its keys with it."""
        if self.session is not None and self.session.state != "terminated":
            self.session._end("the reader's field went away")  # noqa: SLF001 - the wallet's own session
        self._app = self._file = None

    def transmit(self, apdu: bytes) -> bytes:
        try:
            cmd = CommandApdu.parse(apdu)
        except (ApduError, TypeError) as exc:
            self.events.append(f"malformed APDU: {exc}")
            return _sw(codes.SW_WRONG_LENGTH)
        try:
            return self._handle(cmd)
        except Exception as exc:  # noqa: BLE001 - the tag's boundary: a fault is a status word
            self.events.append(f"fault: {type(exc).__name__}: {exc}")
            return _sw(codes.SW_NO_PRECISE_DIAGNOSIS)

    # -- dispatch ------------------------------------------------------------------------

    def _handle(self, cmd: CommandApdu) -> bytes:
        if cmd.ins == nfc.INS_SELECT:
            return self._select(cmd)
        if self._app == nfc.MDOC_NFC_AID:
            return self._transfer.handle(cmd)
        if self._app == nfc.NDEF_APPLICATION_AID:
            if cmd.ins == nfc.INS_READ_BINARY:
                return self._read_binary(cmd)
            if cmd.ins == nfc.INS_UPDATE_BINARY:
                return self._update_binary(cmd)
            return _sw(codes.SW_INS_NOT_SUPPORTED)
        return _sw(codes.SW_CONDITIONS_NOT_SATISFIED)

    def _select(self, cmd: CommandApdu) -> bytes:
        if cmd.cla != 0x00:
            return _sw(codes.SW_CLA_NOT_SUPPORTED)
        if cmd.p1 == 0x04:
            if cmd.data not in WALLET_AIDS:
                return _sw(codes.SW_FILE_NOT_FOUND)
            if cmd.data == nfc.MDOC_NFC_AID and self.session is None:
                self.events.append("SELECT mdoc application before the engagement was read")
                return _sw(codes.SW_CONDITIONS_NOT_SATISFIED)
            self._app, self._file = bytes(cmd.data), None
            self.events.append(f"selected {'mdoc' if cmd.data == nfc.MDOC_NFC_AID else 'NDEF'} application")
            return _sw(codes.SW_OK)
        if cmd.p1 == 0x00 and self._app == nfc.NDEF_APPLICATION_AID:
            if len(cmd.data) != 2:
                return _sw(codes.SW_WRONG_LENGTH)
            fid = int.from_bytes(cmd.data, "big")
            self._writable = False
            if fid == nfc.CC_FILE_ID:
                self._file = self.capability.encode()
            elif fid == self.capability.ndef_file_id:
                self._file = self._ndef_file()
                self._writable = self.handover == "negotiated"
            else:
                return _sw(codes.SW_FILE_NOT_FOUND)
            return _sw(codes.SW_OK)
        return _sw(codes.SW_INCORRECT_P1P2)

    def _ndef_file(self) -> bytes:
        """NLEN and the NDEF message: static handover, the Handover Select (made once per
        tap); negotiated, the TNEP Service Parameter record until the reader wrote its
        request, then the tag's answers."""
        if self._ndef is None:
            if self.handover == "static":
                self._ndef = self._static_offer()
            else:
                self._ndef = nfc.ServiceParameter().message()
                self.events.append("negotiated handover offered (TNEP service urn:nfc:sn:handover)")
        return len(self._ndef).to_bytes(2, "big") + self._ndef

    def _offer(self, request: nfc.HandoverRequest | None, *, nfc_retrieval: bool = True,
               ble_options: ble.BleOptions | None = None, ble_uuid: bool = True) -> bytes:
        """The Handover Select, on a fresh EDeviceKey; the wallet's session starts on it."""
        engagement = self._new_engagement()
        hs = nfc.HandoverSelect.build(engagement.device_engagement, self.carrier if nfc_retrieval else None,
                                      ble_options=ble_options, ble_uuid=ble_uuid)
        self._hs = hs.raw
        self.engagement = engagement = dataclasses.replace(engagement, handover=nfc.nfc_handover(hs, request))
        self.ble_selected = hs.ble_options(request)
        self.session = self.wallet.start(engagement)
        offered = [f"NFC carrier {self.carrier.max_command}/{self.carrier.max_response}"] if nfc_retrieval else []
        if self.ble_selected is not None:
            offered.append("BLE " + " and ".join(f"mdoc {m.mode} mode" for m in self.ble_selected.modes()))
        self.events.append(f"engagement offered: Handover Select of {len(hs.raw)} bytes, {', '.join(offered)}")
        if self._on_offer is not None:
            self._on_offer(self)
        return hs.raw

    def _static_offer(self) -> bytes:
        return self._offer(None, nfc_retrieval=self.nfc_retrieval, ble_options=self.ble_options)

    def _negotiated_offer(self, request: nfc.HandoverRequest) -> bytes | None:
        """What the phone selects of the reader's carriers: BLE in the first of its own modes
        the reader takes too (central client mode on the reader's UUID, left out of the
        select as Annex D's; peripheral server mode on the phone's own), and NFC; None if
        none fits."""
        nfc_ok = self.nfc_retrieval and any(c.kind == "nfc" for c in request.carriers)
        asked = next((c.ble for c in request.carriers if c.ble is not None), None)
        chosen = None
        if self.ble_options is not None and asked is not None:
            theirs = asked.modes()
            for mode in self.ble_options.modes():
                if mode in theirs:
                    central = mode is ble.CENTRAL_CLIENT
                    own = self.ble_options.uuid_for(mode)
                    chosen = ble.BleOptions(not central, central, None if central else own,
                                            asked.uuid_for(mode) if central else None)
                    break
        if not nfc_ok and chosen is None:
            return None
        return self._offer(request, nfc_retrieval=nfc_ok, ble_options=chosen,
                           ble_uuid=chosen is None or not chosen.central_client)

    def _update_binary(self, cmd: CommandApdu) -> bytes:
        """The T4T NDEF write procedure (NLEN 0, the message from offset 2, NLEN), or one
        write of NLEN and the message; a complete message goes to :meth:`_tnep_message`."""
        if self._file is None or not self._writable:
            return _sw(codes.SW_SECURITY_NOT_SATISFIED if self._file is not None else codes.SW_NO_CURRENT_EF)
        offset, data = (cmd.p1 << 8) | cmd.p2, bytes(cmd.data)
        if cmd.p1 & 0x80 or not data:
            return _sw(codes.SW_INCORRECT_P1P2 if data else codes.SW_WRONG_LENGTH)
        if offset == 0 and len(data) == 2:
            n = int.from_bytes(data, "big")
            if n == 0:
                self._written = bytearray()
                return _sw(codes.SW_OK)
            if self._written is None or n != len(self._written):
                self._written = None
                return _sw(codes.SW_WRONG_DATA)
            message, self._written = bytes(self._written), None
            return self._tnep_message(message)
        if offset == 0:
            if int.from_bytes(data[:2], "big") != len(data) - 2:
                return _sw(codes.SW_WRONG_DATA)
            self._written = None
            return self._tnep_message(data[2:])
        if self._written is None or offset != 2 + len(self._written):
            self._written = None
            return _sw(codes.SW_CONDITIONS_NOT_SATISFIED)
        if len(self._written) + len(data) > self.capability.ndef_max_size:
            self._written = None
            return _sw(codes.SW_NOT_ENOUGH_MEMORY)
        self._written += data
        return _sw(codes.SW_OK)

    def _tnep_message(self, message: bytes) -> bytes:
        """Negotiated handover (TNEP single response): the Service Select gets a TNEP status,
        the Handover Request the Handover Select; the NDEF file holds the answer."""
        try:
            if self._tnep == "service":
                service = nfc.selected_service(message)
                ok = service == nfc.HANDOVER_SERVICE
                self._ndef = nfc.tnep_status_message(0x00 if ok else 0x01)
                self._tnep = "request" if ok else "service"
                self.events.append(f"TNEP service {service!r} {'selected' if ok else 'unknown'}")
            elif self._tnep == "request":
                request = nfc.HandoverRequest.decode(message)
                offer = self._negotiated_offer(request)
                if offer is None:
                    self.events.append("the reader's Handover Request offers no carrier the phone takes")
                    self._ndef = b"".join(ndef.message_encoder([ndef.HandoverSelectRecord("1.5")]))
                else:
                    self._ndef = offer
                self._tnep = "done"
            else:
                return _sw(codes.SW_CONDITIONS_NOT_SATISFIED)
        except nfc.NfcError as exc:
            self.events.append(f"negotiated handover: {exc}")
            return _sw(codes.SW_WRONG_DATA)
        self._file = self._ndef_file()
        return _sw(codes.SW_OK)

    def _read_binary(self, cmd: CommandApdu) -> bytes:
        if self._file is None:
            return _sw(codes.SW_NO_CURRENT_EF)
        if cmd.data:
            return _sw(codes.SW_WRONG_LENGTH)
        offset = (cmd.p1 << 8) | cmd.p2
        if cmd.p1 & 0x80 or offset >= len(self._file):
            return _sw(codes.SW_WRONG_P1P2_OFFSET)
        n = min(cmd.ne or 256, self.capability.max_read)
        return self._file[offset : offset + n] + b"\x90\x00"

    def _answer(self, message: bytes) -> bytes | None:
        assert self.session is not None  # SELECT of the mdoc application needs it
        reply = self.session.receive(message)
        self.events.append(f"session message of {len(message)} bytes answered with "
                           f"{len(reply) if reply else 0}")
        return reply


class AidRouter:
    """The phone's NFC controller (routing by AID): SELECT by AID of a routed AID sends what
    follows to that service; any other SELECT by AID, and every command on a logical channel
    other than the basic one, go to ``default`` (the secure element). Services are made per
    activation by the caller (a new :class:`AidRouter` per tap)."""

    def __init__(self, default: Transmit, routes: Mapping[bytes, Transmit]) -> None:
        self.default = default
        self.routes = {bytes(k): v for k, v in routes.items()}
        self._current: Transmit = default

    def transmit(self, apdu: bytes) -> bytes:
        apdu = bytes(apdu)
        if len(apdu) >= 4 and channel_of(apdu[0]) != 0:
            return self.default(apdu)
        if len(apdu) >= 5 and apdu[1] == nfc.INS_SELECT and apdu[2] == 0x04:
            try:
                aid = CommandApdu.parse(apdu).data
            except ApduError:
                aid = b""
            self._current = self.routes.get(aid, self.default)
        return self._current(apdu)
