"""NFC engagement handing over to BLE (ISO/IEC 18013-5 §8.2.2.1 with a Bluetooth LE carrier):
the reader taps the phone, the Handover Select settles a BLE mode and service UUID, and the
session goes on over BLE with the NFCHandover in the SessionTranscript. Our LE OOB carrier
records are multipaz's bytes; Annex D's and multipaz's handovers settle the mode they show."""

from __future__ import annotations

import uuid

import ndef
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mdoc_vectors import hexv
from test_nfc_multipaz_vectors import NEGOTIATED, STATIC, VECTORS, MultipazWallet
from test_present_nfc import static_phone
from test_wallet_session import REQUEST, make_wallet, pipeline, world  # noqa: F401 - fixtures

from mcred.present import present_nfc_in_process, verify_saved
from mcred.present_ble import present_tap_ble_in_process
from protocols.mdoc import SessionTranscript, ble, nfc
from reader.nfc import NfcReaderSession, tap
from reader.session import ReaderSession

pytest.importorskip("bumble")

H = bytes.fromhex
MULTIPAZ_UUID = uuid.UUID(VECTORS["ble_uuid"])


def reader(world):  # noqa: F811
    return ReaderSession([REQUEST], pipeline(world))


def test_our_le_oob_carrier_records_are_multipazs_bytes():
    static = nfc.HandoverSelect.decode(H(STATIC["handover_select"]))
    negotiated = nfc.HandoverSelect.decode(H(NEGOTIATED["handover_select"]))
    request = nfc.HandoverRequest.decode(H(NEGOTIATED["handover_request"]))
    both = ble.BleOptions(True, True, MULTIPAZ_UUID, MULTIPAZ_UUID)
    assert static.ble_options() == both  # its wallet offers both modes on one UUID (LE Role 03)
    assert nfc.ble_carrier_payload(both, of="mdoc") == static.carriers[0].payload
    assert nfc.ble_carrier_payload(both, of="reader") == request.carriers[0].payload
    central = ble.BleOptions(False, True, None, MULTIPAZ_UUID)  # its wallet's choice, on its reader's UUID
    assert negotiated.ble_options(request) == central
    assert nfc.ble_carrier_payload(central, of="mdoc", with_uuid=False) == negotiated.carriers[0].payload


def test_annex_d_handover_settles_central_client_mode_on_the_readers_uuid():
    hs = nfc.HandoverSelect.decode(hexv("handover_select"))
    hr = nfc.HandoverRequest.decode(hexv("handover_request"))
    asked = next(c.ble for c in hr.carriers if c.kind == "ble")
    assert asked.modes() == [ble.PERIPHERAL_SERVER, ble.CENTRAL_CLIENT]  # the reader: LE Role 02, both
    assert asked.peripheral_uuid == uuid.UUID("3a82d455-d5fc-4db3-bea0-6fd2f6ff32c8")
    settled = hs.ble_options(hr)  # the mdoc: LE Role 01, central only, no UUID of its own
    assert settled.modes() == [ble.CENTRAL_CLIENT] and settled.central_uuid == asked.peripheral_uuid
    assert settled.peripheral_address == H("28128b372828")  # its LE device address, as the record has it
    assert hs.ble_options() == ble.BleOptions(False, True, None, None, H("28128b372828"))  # no UUID alone


@pytest.mark.parametrize("handover", ["static", "negotiated"])
@pytest.mark.parametrize("mode", ["peripheral", "central"])
def test_a_tap_hands_over_to_ble_and_the_presentation_is_valid(world, handover, mode):  # noqa: F811
    out, steps = present_tap_ble_in_process(make_wallet(world), reader(world), mode=mode, handover=handover,
                                            timeout=10)
    assert out.valid, (out.result, steps)
    hs_bytes, hr_bytes = SessionTranscript.decode(out.session_transcript).handover  # NFCHandover
    hs = nfc.HandoverSelect.decode(hs_bytes)
    assert [c.kind for c in hs.carriers] == ["ble"]
    assert (hr_bytes is None) == (handover == "static")
    settled = hs.ble_options(nfc.HandoverRequest.decode(hr_bytes) if hr_bytes else None)
    assert [m.mode for m in settled.modes()] == [f"{mode} {'server' if mode == 'peripheral' else 'client'}"]
    if handover == "negotiated" and mode == "central":  # as Annex D: the reader's UUID, left out of the select
        assert nfc.HandoverRequest.decode(hr_bytes).carriers[0].ble.central_uuid == settled.central_uuid
        assert hs.carriers[0].payload == b"\x02\x1c\x01"
    assert any(s.startswith("tap: data retrieval over BLE") for s in steps), steps
    assert verify_saved(out.saved(), pipeline(world)).valid


def test_our_reader_taps_multipazs_negotiated_wallet_and_settles_its_choice(world):  # noqa: F811
    session = NfcReaderSession(reader(world), carriers=("ble", "nfc"))
    assert tap(MultipazWallet(NEGOTIATED, negotiated=True).transmit, session) is None
    assert session.state == "handed over"
    ours = nfc.HandoverRequest.decode(session.handover_request)
    assert [c.kind for c in ours.carriers] == ["ble", "nfc"]
    offered = ours.carriers[0].ble  # both modes on one fresh UUID
    assert session.ble_options == ble.BleOptions(False, True, None, offered.central_uuid)
    assert session.handover == [H(NEGOTIATED["handover_select"]), session.handover_request]


def test_a_reader_takes_the_carriers_in_its_order(world):  # noqa: F811
    # a phone offering NFC only: a reader preferring BLE falls back to NFC, one taking BLE only names it
    out = present_nfc_in_process(make_wallet(world), reader(world), carriers=("ble", "nfc"))
    assert out.valid, out.result
    out = present_nfc_in_process(make_wallet(world), reader(world), carriers=("ble",))
    assert not out.valid
    assert "offers no data retrieval over BLE (carriers: nfc)" in out.result["checks"][0]["reason"]
    # a phone offering both: a reader preferring NFC reads over NFC; the tag reports both offered
    session = NfcReaderSession(reader(world), carriers=("nfc", "ble"))
    from wallet_sim.nfc import NfcTag

    tag = NfcTag(make_wallet(world), ble_options=ble.BleOptions.new())
    assert tap(tag.transmit, session).valid
    assert [c.kind for c in session.handover_select.carriers] == ["ble", "nfc"]


def test_a_malformed_ble_carrier_is_named_by_the_reader(world):  # noqa: F811
    record = ndef.Record(nfc.BLE_CARRIER_TYPE, "0", b"\x02\x1c\x07")  # LE Role 07
    hs = ndef.HandoverSelectRecord("1.5")
    hs.add_alternative_carrier("active", "0", "mdoc")
    de = ndef.Record(nfc.DEVICE_ENGAGEMENT_TYPE, "mdoc", hexv("device_engagement_qr"))
    phone = static_phone(b"".join(ndef.message_encoder([hs, record, de])))
    outcome = tap(phone, NfcReaderSession(reader(world), carriers=("ble",)))
    assert "LE Role 07 (00 to 03)" in outcome.result.checks[0].reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.sampled_from(["mdoc", "reader"]))
def test_any_le_oob_payload_gives_options_or_names_the_fault(payload, of):
    try:
        options = nfc.ble_carrier_options(payload, of=of)
    except nfc.NfcHandoverError as exc:
        assert str(exc).startswith("Bluetooth LE carrier record")
        return
    assert options.peripheral_server or options.central_client
    if options.modes():  # a UUID came with it: written back, read back the same
        again = nfc.ble_carrier_options(nfc.ble_carrier_payload(options, of=of), of=of)
        assert again == ble.BleOptions(options.peripheral_server, options.central_client,
                                       options.peripheral_uuid, options.central_uuid)

