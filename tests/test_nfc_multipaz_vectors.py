"""NFC engagement against multipaz's own exchanges (tests/vectors/multipaz-nfc-engagement.json,
the APDU transcripts multipaz's MdocNfcEngagementHelperTest asserts between its wallet and
its reader): our TNEP records are its bytes; our reader reads its wallet's static and
negotiated Handover Select messages (replayed by a tag that answers as its wallet did); our
wallet takes its reader's Service Select and Handover Request (BLE and NFC offered, with a
reader engagement record) and presents VALID with that request in the transcript."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from test_wallet_session import REQUEST, make_wallet, pipeline, world  # noqa: F401 - fixtures

from protocols.gp.apdu import CommandApdu
from protocols.mdoc import SessionTranscript, nfc
from reader.nfc import NfcReaderSession, tap
from reader.session import ReaderSession
from wallet_sim.nfc import NfcTag

VECTORS = json.loads((Path(__file__).parent / "vectors" / "multipaz-nfc-engagement.json").read_text())
STATIC, NEGOTIATED = VECTORS["static"], VECTORS["negotiated"]
H = bytes.fromhex


class MultipazWallet:
    """Answers as multipaz's wallet did in its test: its capability container and NDEF
    messages, the negotiated exchange moving on as the reader's writes complete."""

    def __init__(self, flow: dict, negotiated: bool) -> None:
        self.flow, self.negotiated = flow, negotiated
        self.ndef = H(flow["service_parameter"] if negotiated else flow["handover_select"])
        self.file = b""
        self.written: list[bytes] = []
        self._pending = bytearray()

    def transmit(self, apdu: bytes) -> bytes:
        cmd = CommandApdu.parse(apdu)
        if cmd.ins == 0xA4:
            if cmd.p1 == 0x04:
                return b"\x90\x00" if cmd.data == nfc.NDEF_APPLICATION_AID else b"\x6a\x82"
            self.file = H(self.flow["capability_container"]) if cmd.data == b"\xe1\x03" else None
            return b"\x90\x00"
        if cmd.ins == 0xB0:
            data = self.file if self.file is not None else len(self.ndef).to_bytes(2, "big") + self.ndef
            offset = (cmd.p1 << 8) | cmd.p2
            return data[offset : offset + (cmd.ne or 256)] + b"\x90\x00"
        if cmd.ins == 0xD6:
            offset = (cmd.p1 << 8) | cmd.p2
            if offset == 0 and cmd.data == b"\x00\x00":
                self._pending = bytearray()
            elif offset == 0:
                message = bytes(self._pending)
                self.written.append(message)
                self.ndef = H(self.flow["tnep_status"] if len(self.written) == 1 else self.flow["handover_select"])
            else:
                self._pending += cmd.data
            return b"\x90\x00"
        return b"\x6d\x00"


def _engage(wallet: MultipazWallet) -> tuple[bytes, bytes | None]:
    flow = nfc.nfc_engagement()
    command = next(flow)
    while True:
        try:
            command = flow.send(wallet.transmit(command))
        except StopIteration as stop:
            return stop.value


def test_our_tnep_records_are_multipazs_bytes():
    assert nfc.ServiceParameter().message() == H(NEGOTIATED["service_parameter"])
    assert nfc.ServiceParameter.find(H(NEGOTIATED["service_parameter"])) == nfc.ServiceParameter()
    assert nfc.service_select(nfc.HANDOVER_SERVICE) == H(NEGOTIATED["service_select"])
    assert nfc.tnep_status_message(0) == H(NEGOTIATED["tnep_status"])


def test_our_reader_reads_multipazs_static_handover():
    hs_bytes, request = _engage(MultipazWallet(STATIC, negotiated=False))
    assert request is None and hs_bytes == H(STATIC["handover_select"])
    hs = nfc.HandoverSelect.decode(hs_bytes)
    assert [c.kind for c in hs.carriers] == ["ble", "nfc"]
    assert hs.nfc_carrier == nfc.NfcCarrier(0xFFFF, 0x10000)  # its response length in 3 bytes
    assert hs.device_engagement.e_device_key.x == H(VECTORS["e_device_key"]["x"])
    ble = next(c for c in hs.carriers if c.kind == "ble")
    assert uuid.UUID(VECTORS["ble_uuid"]).bytes[::-1] in ble.payload  # LE OOB: UUID little-endian


def test_our_reader_follows_multipazs_negotiated_handover_and_names_its_choice(world):  # noqa: F811
    """Its wallet picks the first carrier of a request: with ours (NFC only) it still
    answers BLE, as in its test; our reader follows TNEP through and names that."""
    wallet = MultipazWallet(NEGOTIATED, negotiated=True)
    hs_bytes, request = _engage(wallet)
    assert wallet.written[0] == H(NEGOTIATED["service_select"])  # our Service Select is its reader's
    assert request == wallet.written[1] and hs_bytes == H(NEGOTIATED["handover_select"])
    assert [c.kind for c in nfc.HandoverSelect.decode(hs_bytes).carriers] == ["ble"]
    outcome = tap(MultipazWallet(NEGOTIATED, negotiated=True).transmit,
                  NfcReaderSession(ReaderSession([REQUEST], pipeline(world))))
    assert "no data retrieval over NFC (carriers: ble)" in outcome.result.checks[0].reason


def test_our_wallet_answers_multipazs_reader_and_presents_valid(world):  # noqa: F811
    """Its reader's writes, byte for byte (one UPDATE BINARY each, NLEN first): our tag
    answers the Service Select with its status bytes and the Handover Request (BLE and NFC,
    a reader engagement record) with a Handover Select for NFC; the presentation over it is
    VALID with its request in the SessionTranscript."""
    tag = NfcTag(make_wallet(world), handover="negotiated")

    def ok(apdu: str | bytes) -> bytes:
        answer = tag.transmit(H(apdu) if isinstance(apdu, str) else apdu)
        assert answer[-2:] == b"\x90\x00", answer.hex()
        return answer[:-2]

    def read_ndef() -> bytes:
        n = int.from_bytes(ok("00B0000002"), "big")
        return ok(bytes([0x00, 0xB0, 0x00, 0x02, n]))

    for apdu in ("00A4040007D276000085010100", "00A4000C02E103", "00B000000F", "00A4000C02E104"):
        ok(apdu)
    assert read_ndef() == H(NEGOTIATED["service_parameter"])
    for message in (NEGOTIATED["service_select"], NEGOTIATED["handover_request"]):
        data = len(H(message)).to_bytes(2, "big") + H(message)
        ok(bytes([0x00, 0xD6, 0x00, 0x00, len(data)]) + data)
        if message == NEGOTIATED["service_select"]:
            assert read_ndef() == H(NEGOTIATED["tnep_status"])
    hs = nfc.HandoverSelect.decode(read_ndef())
    assert hs.nfc_carrier is not None
    request = H(NEGOTIATED["handover_request"])
    reader = ReaderSession([REQUEST], pipeline(world))
    establishment = reader.start(hs.device_engagement.encode(), handover=nfc.nfc_handover(hs, request))
    ok("00A4040007A000000248040000")  # the mdoc application
    flow = nfc.transceive(establishment, max_command=0xFFFF, max_response=0x10000)
    command = next(flow)
    while True:
        try:
            command = flow.send(tag.transmit(command))
        except StopIteration as stop:
            reply = stop.value
            break
    outcome = reader.receive(reply)
    assert outcome.valid, outcome.result
    assert SessionTranscript.decode(outcome.session_transcript.raw).handover == [hs.raw, request]


@pytest.mark.parametrize("which", ["static", "negotiated"])
def test_multipaz_handover_selects_carry_the_engagement_we_read(which):
    hs = nfc.HandoverSelect.decode(H(VECTORS[which]["handover_select"]))
    assert hs.version == "1.5"
    assert hs.device_engagement.e_device_key.y == H(VECTORS["e_device_key"]["y"])


def test_multipazs_handover_request_without_collision_resolution_is_read():
    """Connection Handover 1.5 asks a Handover Request for a collision resolution record;
    multipaz's reader sends none. Read anyway (the phone is always the selector); Annex D's
    has one."""
    theirs = nfc.HandoverRequest.decode(H(NEGOTIATED["handover_request"]))
    assert theirs.collision is None
    assert [(c.kind, c.reference) for c in theirs.carriers] == [("ble", "0"), ("nfc", "nfc")]
    assert theirs.carriers[1].nfc == nfc.NfcCarrier(0xFFFF, 0x10000)
    annex = json.loads((Path(__file__).parents[2] / "shared" / "vectors" / "iso18013-5-annex-d.json").read_text())
    assert nfc.HandoverRequest.decode(H(annex["vectors"]["handover_request"]["hex"])).collision == 0x0102
