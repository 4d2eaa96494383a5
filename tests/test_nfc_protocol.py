"""NFC engagement and data retrieval, the protocol alone (protocols.mdoc.nfc, ISO/IEC
18013-5:2021 §8.2.2.1, §8.3.3.1.2): Annex D's negotiated-handover messages read and put into
the SessionTranscript byte for byte; our Handover Select, NFC carrier record, capability
container and data object 53 round-trip; the ENVELOPE / GET RESPONSE chaining carries any
message at any lengths; hostile bytes get NfcError, never another exception."""

from __future__ import annotations

import json
from pathlib import Path

import ndef
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.cose import CoseKey
from protocols.gp.apdu import CommandApdu, ResponseApdu
from protocols.mdoc import DeviceEngagement, MdocDecodeError, SessionTranscript, nfc

VECTORS = json.loads((Path(__file__).parents[2] / "shared" / "vectors" / "iso18013-5-annex-d.json").read_text())
V = {k: bytes.fromhex(v["hex"]) for k, v in VECTORS["vectors"].items() if "hex" in v}
BOUNDED = settings(max_examples=150, deadline=None, database=None)
MULTIPAZ_REQUEST = bytes.fromhex(json.loads((Path(__file__).parent / "vectors" / "multipaz-nfc-engagement.json")
                                            .read_text())["negotiated"]["handover_request"])  # no cr record


def test_annex_d_handover_select_is_read():
    hs = nfc.HandoverSelect.decode(V["handover_select"])
    assert hs.version == "1.5"
    assert hs.raw == V["handover_select"]
    assert hs.device_engagement.encode() == V["device_engagement_in_transcript"]
    assert V["e_device_key_bytes"] == b"\xd8\x18\x58\x4b" + hs.device_engagement.e_device_key_bytes  # tag 24 around it
    assert [(c.kind, c.reference, c.power_state, c.auxiliary) for c in hs.carriers] == [("ble", "0", "active", ("mdoc",))]
    assert hs.nfc_carrier is None  # Annex D hands over to Bluetooth LE


def test_annex_d_handover_request_is_read():
    hr = nfc.HandoverRequest.decode(V["handover_request"])
    assert hr.version == "1.5"
    assert [c.kind for c in hr.carriers] == ["ble", "nfc", "wifi-aware"]


def test_annex_d_session_transcript_is_reproduced_from_the_handover_messages():
    """NFCHandover = [HandoverSelect, HandoverRequest] with the engagement read from the
    select message: the SessionTranscript of Annex D D.5.1, exactly."""
    hs = nfc.HandoverSelect.decode(V["handover_select"])
    hr = nfc.HandoverRequest.decode(V["handover_request"])
    erk = SessionTranscript.decode(V["session_transcript"]).e_reader_key_bytes
    built = SessionTranscript.build(hs.device_engagement.encode(), erk, nfc.nfc_handover(hs, hr))
    assert built.raw == V["session_transcript"]
    assert built.tagged == V["session_transcript_bytes"]


def _engagement() -> DeviceEngagement:
    from cryptography.hazmat.primitives.asymmetric import ec

    return DeviceEngagement.build(CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key()))


def test_our_handover_select_offers_nfc_and_reads_back():
    de = _engagement()
    hs = nfc.HandoverSelect.build(de, nfc.NfcCarrier(0xFFFF, 0xFFFF))
    records = list(ndef.message_decoder(hs.raw))
    assert [r.type for r in records] == ["urn:nfc:wkt:Hs", nfc.DEVICE_ENGAGEMENT_TYPE, nfc.NFC_CARRIER_TYPE]
    assert [r.name for r in records[1:]] == ["mdoc", "nfc"]
    assert records[2].data == bytes.fromhex("010301ffff0302ffff")  # version, then type-length-value
    again = nfc.HandoverSelect.decode(hs.raw)
    assert again.device_engagement.encode() == de.encode()
    assert again.nfc_carrier == nfc.NfcCarrier(0xFFFF, 0xFFFF)
    assert again.carriers[0].auxiliary == ("mdoc",)


@BOUNDED
@given(st.integers(1, 0xFFFF), st.integers(1, 0xFFFFFF))
def test_nfc_carrier_payload_round_trips(command, response):
    carrier = nfc.NfcCarrier(command, response)
    assert nfc.NfcCarrier.from_payload(carrier.payload()) == carrier


@pytest.mark.parametrize("payload, message", [
    (b"", "version missing"),
    (b"\x02\x03\x01\xff\xff\x03\x02\xff\xff", "version 02"),
    (b"\x01\x03\x01\xff\xff", "needs both"),
    (b"\x01\x09\x01\xff", "overruns"),
    (b"\x01\x03\x01\x00\x00\x03\x02\xff\xff", "out of range"),
])
def test_a_bad_nfc_carrier_record_is_named(payload, message):
    with pytest.raises(nfc.NfcHandoverError, match=message):
        nfc.NfcCarrier.from_payload(payload)


def test_a_handover_select_without_engagement_or_with_a_dangling_carrier_is_refused():
    hs = ndef.HandoverSelectRecord("1.5")
    hs.add_alternative_carrier("active", "nfc", "mdoc")
    carrier = ndef.Record(nfc.NFC_CARRIER_TYPE, "nfc", nfc.NfcCarrier().payload())
    with pytest.raises(nfc.NfcHandoverError, match="0 DeviceEngagement records"):
        nfc.HandoverSelect.decode(b"".join(ndef.message_encoder([hs, carrier])))
    de = ndef.Record(nfc.DEVICE_ENGAGEMENT_TYPE, "mdoc", _engagement().encode())
    with pytest.raises(nfc.NfcHandoverError, match="names no carrier configuration record"):
        nfc.HandoverSelect.decode(b"".join(ndef.message_encoder([hs, de])))
    text = ndef.TextRecord("hello")
    with pytest.raises(nfc.NfcHandoverError, match="not a Handover Select .Hs. record"):
        nfc.HandoverSelect.decode(b"".join(ndef.message_encoder([text, de])))
    with pytest.raises(nfc.NfcHandoverError, match="DeviceEngagement"):
        nfc.HandoverSelect.decode(b"".join(ndef.message_encoder(
            [hs, ndef.Record(nfc.DEVICE_ENGAGEMENT_TYPE, "mdoc", b"\xa0"), carrier])))


@BOUNDED
@given(st.binary(max_size=300))
def test_hostile_handover_bytes_raise_only_the_decode_error(data):
    for decode in (nfc.HandoverSelect.decode, nfc.HandoverRequest.decode):
        try:
            decode(data)
        except MdocDecodeError:
            pass


@BOUNDED
@given(st.sampled_from([0, 1, 127, 128, 255, 256, 65535, 65536]) | st.integers(0, 70000))
def test_data_object_53_round_trips(n):
    message = bytes([n % 251]) * n
    wrapped = nfc.encapsulate(message)
    assert wrapped[0] == 0x53
    assert nfc.decapsulate(wrapped) == message


@pytest.mark.parametrize("data, message", [
    (b"", "expected data object 53"), (b"\x54\x00", "expected data object 53"),
    (b"\x53\x84\x00\x00\x00\x01\x00", "length byte 84"), (b"\x53\x82\x01", "cut short"),
    (b"\x53\x02\x00", "length 2, but 1 bytes follow"), (b"\x53\x01\x00\x00", "length 1, but 2"),
])
def test_bad_data_object_53_is_named(data, message):
    with pytest.raises(nfc.NfcError, match=message):
        nfc.decapsulate(data)


def test_capability_container_round_trips_and_bad_ones_are_named():
    cc = nfc.CapabilityContainer()
    assert nfc.CapabilityContainer.decode(cc.encode()) == cc
    assert cc.encode().hex() == "000f2000ff00ff0406e1047fff00ff"
    with pytest.raises(nfc.NfcError, match="expected at least 15"):
        nfc.CapabilityContainer.decode(b"\x00\x0f")
    with pytest.raises(nfc.NfcError, match="not readable"):
        nfc.CapabilityContainer.decode(cc.encode()[:13] + b"\xff\xff")
    with pytest.raises(nfc.NfcError, match="mapping version 10"):
        nfc.CapabilityContainer.decode(cc.encode()[:2] + b"\x10" + cc.encode()[3:])


def _carry(message: bytes, reply: bytes | None, *, max_command: int, max_response: int, card_le_cap=None):
    """Run :func:`nfc.transceive` against a :class:`nfc.TransferCard`; returns (what the
    card's wallet got, what the reader got, the commands sent)."""
    got = []

    def answer(m: bytes) -> bytes | None:
        got.append(m)
        return reply

    card = nfc.TransferCard(answer)
    flow = nfc.transceive(message, max_command=max_command, max_response=max_response)
    commands = []
    cmd = next(flow)
    while True:
        commands.append(CommandApdu.parse(cmd))
        try:
            cmd = flow.send(card.handle(commands[-1]))
        except StopIteration as stop:
            return got, stop.value, commands


@BOUNDED
@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(1, 600), st.integers(1, 700))
def test_envelope_and_get_response_carry_any_message_at_any_lengths(n_in, n_out, max_command, max_response):
    message = bytes(i % 256 for i in range(n_in))
    reply = bytes((i * 7) % 256 for i in range(n_out)) or None
    got, back, commands = _carry(message, reply, max_command=max_command, max_response=max_response)
    assert got == [message]
    assert back == (reply or b"")
    envelopes = [c for c in commands if c.ins == nfc.INS_ENVELOPE]
    assert all(len(c.data) <= max_command for c in envelopes)
    assert [c.cla for c in envelopes] == [0x10] * (len(envelopes) - 1) + [0x00]
    assert all(c.ne is None for c in envelopes[:-1]) and envelopes[-1].ne == min(max_response, 0x10000)
    assert all(c.ins in (nfc.INS_ENVELOPE, nfc.INS_GET_RESPONSE) for c in commands)


def test_status_words_follow_the_le_rules():
    """Le < available <= Le + 255: 61 XX with what is left; more than that: 61 00."""
    card = nfc.TransferCard(lambda m: bytes(700))
    first = ResponseApdu.parse(card.handle(CommandApdu(0, nfc.INS_ENVELOPE, 0, 0, nfc.encapsulate(b"x"), ne=256)))
    assert (len(first.data), first.sw) == (256, 0x6100)  # 704 available > 256 + 255
    second = ResponseApdu.parse(card.handle(CommandApdu(0, nfc.INS_GET_RESPONSE, 0, 0, ne=256)))
    assert (len(second.data), second.sw) == (256, 0x61C0)  # 448 available: 192 left
    third = ResponseApdu.parse(card.handle(CommandApdu(0, nfc.INS_GET_RESPONSE, 0, 0, ne=0xC0)))
    assert (len(third.data), third.sw) == (192, 0x9000)
    nothing = ResponseApdu.parse(card.handle(CommandApdu(0, nfc.INS_GET_RESPONSE, 0, 0, ne=256)))
    assert nothing.sw == 0x6985


def test_transfer_card_refuses_what_is_not_data_retrieval():
    card = nfc.TransferCard(lambda m: b"reply")
    assert card.handle(CommandApdu(0x80, nfc.INS_ENVELOPE, 0, 0, b"\x53\x00")) == b"\x6e\x00"
    assert card.handle(CommandApdu(0x00, nfc.INS_ENVELOPE, 1, 0, b"\x53\x00")) == b"\x6a\x86"
    assert card.handle(CommandApdu(0x00, 0xB0, 0, 0, ne=4)) == b"\x6d\x00"
    assert card.handle(CommandApdu(0x00, nfc.INS_ENVELOPE, 0, 0, b"\x54\x00")) == b"\x6a\x80"
    big = nfc.TransferCard(lambda m: None, max_message=10)
    assert big.handle(CommandApdu(0x10, nfc.INS_ENVELOPE, 0, 0, bytes(20))) == b"\x6a\x84"
    assert big.handle(CommandApdu(0x00, nfc.INS_ENVELOPE, 0, 0, nfc.encapsulate(b"ok"))) == b"\x90\x00"


def _run(flow, answers):
    """Feed canned answers to a reader-side generator; returns its value or raises."""
    next(flow)
    for a in answers:
        try:
            flow.send(a)
        except StopIteration as stop:
            return stop.value
    raise AssertionError("the flow wanted more answers")


@pytest.mark.parametrize("answers, message", [
    ([b"\x6a\x82"], "SELECT NDEF application .* answered 6A82"),
    ([b"\x90"], "no status word"),
    ([b"\x90\x00", b"\x90\x00", b"\x00\x0f\x20\x00\x0f\x00\xff\x04\x06\xe1\x04\x7f\xff\x00\xff\x90\x00",
      b"\x90\x00", b"\x00\x00\x90\x00"], "NDEF file is empty"),
    ([b"\x90\x00", b"\x90\x00", b"\x00\x0f\x20\x00\x0f\x00\xff\x04\x06\xe1\x04\x00\x10\x00\xff\x90\x00",
      b"\x90\x00", b"\x01\x00\x90\x00"], "exceeds the file's 16 bytes"),
    ([b"\x90\x00", b"\x90\x00", b"\x00\x0f\x20\x00\x0f\x00\xff\x04\x06\xe1\x04\x7f\xff\x00\xff\x90\x00",
      b"\x90\x00", b"\x00\x05\x90\x00", b"\x90\x00"], "READ BINARY NDEF at 2 answered 9000 with 0 bytes"),
])
def test_the_reader_names_a_broken_tag(answers, message):
    with pytest.raises(nfc.NfcError, match=message):
        _run(nfc.nfc_engagement(), answers)


def test_transceive_names_a_broken_answer():
    with pytest.raises(nfc.NfcError, match="ENVELOPE answered 6A80"):
        _run(nfc.transceive(b"x", max_command=255, max_response=256), [b"\x6a\x80"])
    with pytest.raises(nfc.NfcError, match="ENVELOPE .chained, piece 1 of 2. answered 6700"):
        _run(nfc.transceive(bytes(300), max_command=255, max_response=256), [b"\x67\x00"])
    with pytest.raises(nfc.NfcError, match="GET RESPONSE answered 6F00"):
        _run(nfc.transceive(b"x", max_command=255, max_response=256), [b"\x53\x04\x61\x02", b"\x6f\x00"])
    with pytest.raises(nfc.NfcError, match="does not advance"):  # a tag that never ends its answer
        _run(nfc.transceive(b"x", max_command=255, max_response=256), [b"\x53\x04\x61\x00", b"\x61\x00"])
    with pytest.raises(nfc.NfcError, match="3 bytes for 2 asked"):
        _run(nfc.transceive(b"x", max_command=255, max_response=256), [b"\x53\x04\x61\x02", b"\x00\x00\x00\x90\x00"])
    with pytest.raises(nfc.NfcError, match="length 4, but 2 bytes follow"):
        _run(nfc.transceive(b"x", max_command=255, max_response=256), [b"\x53\x04\x00\x00\x90\x00"])


def test_tnep_service_parameter_round_trips_and_is_found_only_for_handover():
    parameter = nfc.ServiceParameter(wt_int=8, n_wait=3, max_ndef=0x1000)
    message = parameter.message()
    assert list(ndef.message_decoder(message))[0].type == "urn:nfc:wkt:Tp"
    assert nfc.ServiceParameter.find(message) == parameter
    other = nfc.ServiceParameter(service="urn:nfc:sn:other").message()
    assert nfc.ServiceParameter.find(other) is None
    assert nfc.ServiceParameter.find(V["handover_select"]) is None
    assert nfc.ServiceParameter.find(b"\xd1\x02") is None


def test_tnep_select_and_status_messages():
    assert nfc.selected_service(nfc.service_select(nfc.HANDOVER_SERVICE)) == nfc.HANDOVER_SERVICE
    assert nfc.tnep_status(nfc.tnep_status_message(0)) == 0
    assert nfc.tnep_status(nfc.tnep_status_message(1)) == 1
    with pytest.raises(nfc.NfcHandoverError, match="expected one Te record"):
        nfc.tnep_status(nfc.service_select(nfc.HANDOVER_SERVICE))
    with pytest.raises(nfc.NfcHandoverError, match="not one Ts record"):
        nfc.selected_service(nfc.tnep_status_message(0))


def test_our_handover_request_reads_like_annex_ds():
    """Hr 1.5, a collision resolution number, the NFC carrier's record with the version
    alone (Annex D's form) or with the reader's lengths."""
    annex = nfc.HandoverRequest.decode(V["handover_request"])
    ours = nfc.HandoverRequest.decode(nfc.handover_request(collision=0x0102))
    assert ours.version == annex.version == "1.5"
    nfc_annex = next(c for c in annex.carriers if c.kind == "nfc")
    (nfc_ours,) = ours.carriers
    assert (nfc_ours.record_type, nfc_ours.reference, nfc_ours.payload) == \
        (nfc_annex.record_type, nfc_annex.reference, nfc_annex.payload) == (nfc.NFC_CARRIER_TYPE, "nfc", b"\x01")
    with_lengths = nfc.HandoverRequest.decode(nfc.handover_request(nfc.NfcCarrier(255, 256)))
    assert with_lengths.carriers[0].nfc == nfc.NfcCarrier(255, 256)
    assert list(ndef.message_decoder(nfc.handover_request(collision=0x0102)))[0].collision_resolution_number == 0x0102


@settings(max_examples=400, deadline=None, database=None)
@given(st.sampled_from(["handover_select", "handover_request", "multipaz_request"]),
       st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 8))
def test_mutated_handover_messages_raise_only_the_decode_error(which, flips, cut):
    """Annex D's messages with bytes changed and the tail cut: deeper paths through the
    NDEF and handover parsers than random bytes reach."""
    data = bytearray(MULTIPAZ_REQUEST if which == "multipaz_request" else V[which])
    for at, value in flips:
        data[at % len(data)] = value
    data = bytes(data[: len(data) - cut])
    for decode in (nfc.HandoverSelect.decode, nfc.HandoverRequest.decode, nfc.ServiceParameter.find):
        try:
            decode(data)
        except MdocDecodeError:
            pass
