"""A reader taps the phone (issue 6, NFC engagement and data retrieval over NFC): the wallet's
HCE service behind the phone's AID routing, against the reader's sans-I/O tap, in-process.
VALID with the NFC handover in the SessionTranscript; the phone's fuzzed APDUs never crash it;
a broken or hostile tag ends the reader's tap with a failed check that names the step."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wallet_session import REQUEST, make_wallet, pipeline, se, world  # noqa: F401 - fixtures

from mcred.present import present_nfc_in_process, verify_saved
from protocols.mdoc import SessionTranscript, nfc
from reader.nfc import NfcReaderSession, tap
from reader.session import ReaderSession
from wallet_sim.consent import RulesConsent
from wallet_sim.nfc import WALLET_AIDS, AidRouter, NfcTag

#: every answer of the reader service, refusals too, held to its OpenAPI document (tests/documented.py)
pytestmark = pytest.mark.usefixtures("every_answer_checked")

ISD_AID = bytes.fromhex("A000000151000000")


def static_phone(message: bytes):
    """A phone whose NDEF file holds ``message`` (static handover): it answers SELECTs with
    9000 and READ BINARY from its capability container and NDEF file, nothing more."""
    ndef_file = len(message).to_bytes(2, "big") + message

    def transmit(apdu: bytes) -> bytes:
        if apdu[1] == 0xB0 and apdu[2:4] == b"\x00\x00" and apdu[4] == 15:
            return nfc.CapabilityContainer().encode() + b"\x90\x00"
        if apdu[1] == 0xB0:
            offset = (apdu[2] << 8) | apdu[3]
            return ndef_file[offset : offset + (apdu[4] or 256)] + b"\x90\x00"
        return b"\x90\x00"

    return transmit


def reader(world):  # noqa: F811
    return ReaderSession([REQUEST], pipeline(world))


def test_a_tap_is_valid_with_the_nfc_handover_in_the_transcript(world):  # noqa: F811
    apdus = []
    out = present_nfc_in_process(make_wallet(world), reader(world), trace=lambda d, a: apdus.append((d, a)))
    assert out.valid, out.result
    transcript = SessionTranscript.decode(out.session_transcript)
    hs, hr = transcript.handover
    assert hr is None  # static handover
    assert nfc.HandoverSelect.decode(hs).device_engagement.encode() == transcript.device_engagement_bytes
    sent = [a for d, a in apdus if d == ">"]
    assert sent[0] == bytes.fromhex("00A4040007D276000085010100")  # SELECT the NDEF application
    assert any(a[1] == nfc.INS_ENVELOPE for a in sent)
    names = {c["name"]: c["passed"] for c in out.result["checks"]}
    assert names["device_authentication"] and names["revocation_status"]
    # the saved transcript verifies again, handover and all
    assert verify_saved(out.saved(), pipeline(world)).valid


@pytest.mark.parametrize("lengths", [(1, 1), (20, 17), (255, 256), (0xFFFF, 0x10000)])
def test_any_carrier_lengths_carry_the_presentation(world, lengths):  # noqa: F811
    """The phone's carrier (or the reader's antenna) as small as one byte a command."""
    out = present_nfc_in_process(make_wallet(world), reader(world),
                                 carrier=nfc.NfcCarrier(min(lengths[0], 0xFFFF), min(lengths[1], 0xFFFF)),
                                 max_command=lengths[0], max_response=lengths[1])
    assert out.valid, out.result


def test_mac_device_authentication_over_nfc(world):  # noqa: F811
    out = present_nfc_in_process(make_wallet(world, device_auth="mac"), reader(world))
    assert out.valid, out.result
    assert any(c["name"] == "device_authentication" and "deviceMac" in c["reason"] for c in out.result["checks"])


def test_the_holder_refusing_ends_invalid_not_broken(world):  # noqa: F811
    refuse = RulesConsent.from_mapping({"documents": {}})
    out = present_nfc_in_process(make_wallet(world, consent=refuse), reader(world))
    assert not out.valid
    assert out.result["checks"][0]["name"] == "session"


def test_the_aid_router_sends_the_wallet_aids_to_the_wallet_and_the_rest_to_the_se(world):  # noqa: F811
    tag = NfcTag(make_wallet(world))
    router = AidRouter(se(world).transmit, {aid: tag.transmit for aid in WALLET_AIDS})
    assert router.transmit(bytes.fromhex("00A4040007D276000085010100")) == b"\x90\x00"  # the wallet
    assert router.transmit(bytes.fromhex("00A4000C02E103")) == b"\x90\x00"  # still the wallet's file
    isd = router.transmit(bytes.fromhex("00A4040008") + ISD_AID + b"\x00")
    assert isd[-2:] == b"\x90\x00" and isd[:1] == b"\x6f"  # the SE's ISD answers with its FCI
    assert tag.transmit(bytes.fromhex("00A4040008") + ISD_AID + b"\x00") == b"\x6a\x82"
    assert router.transmit(bytes.fromhex("00B0000002")) != tag.transmit(bytes.fromhex("00B0000002"))


def test_select_of_the_mdoc_application_before_the_engagement_is_refused(world):  # noqa: F811
    tag = NfcTag(make_wallet(world))
    assert tag.transmit(bytes.fromhex("00A4040007A000000248040000")) == b"\x69\x85"
    assert tag.transmit(bytes.fromhex("00C3000003530100")) == b"\x69\x85"


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(__import__("hypothesis").HealthCheck))
@given(st.lists(st.one_of(
    st.binary(max_size=40),
    st.builds(lambda ins, p1, p2, data: bytes([0, ins, p1, p2, len(data)]) + data,
              st.sampled_from([0xA4, 0xB0, 0xC3, 0xC0, 0xD6, 0x20]), st.integers(0, 255), st.integers(0, 255),
              st.binary(max_size=20)),
    st.sampled_from([bytes.fromhex("00A4040007D276000085010100"), bytes.fromhex("00A4000C02E104"),
                     bytes.fromhex("00A4040007A000000248040000"), bytes.fromhex("00B0000002"),
                     bytes.fromhex("00B00002FF"), bytes.fromhex("00C3000003530100"),
                     bytes.fromhex("10C3000002530500"), bytes.fromhex("00D60000020000"),
                     bytes.fromhex("00D6000002001A"), bytes.fromhex("00B0000002")])), max_size=12),
       st.sampled_from(["static", "negotiated"]))
def test_fuzzed_apdus_never_crash_the_tag_and_a_new_tap_still_works(world, apdus, handover):  # noqa: F811
    wallet = make_wallet(world)
    tag = NfcTag(wallet, handover=handover)
    for apdu in apdus:
        answer = tag.transmit(apdu)
        assert isinstance(answer, bytes) and len(answer) >= 2
    tag.deactivate()
    assert not [e for e in tag.events if e.startswith("fault")], tag.events
    out = present_nfc_in_process(wallet, reader(world), handover=handover)
    assert out.valid, out.result


class Hostile:
    """A tag that answers like the phone's, then does one thing wrong at step ``at``."""

    def __init__(self, world, at: int, answer: bytes) -> None:  # noqa: F811
        self.tag = NfcTag(make_wallet(world))
        self.at, self.answer, self.n = at, answer, 0

    def transmit(self, apdu: bytes) -> bytes:
        self.n += 1
        real = self.tag.transmit(apdu)
        return self.answer if self.n == self.at else real


@pytest.mark.parametrize("at, answer, reason", [
    (1, b"\x6a\x82", "SELECT NDEF application .* answered 6A82: no NFC engagement .*unlock it and tap again"),
    (3, nfc.CapabilityContainer(mapping_version=0x10).encode() + b"\x90\x00", "mapping version 10"),
    (5, b"\x00\x03\x90\x00", "Handover Select message: not an NDEF message"),
    (7, b"\x6a\x82", "SELECT mdoc application .* answered 6A82"),
    (8, b"\x53\x03\xa0\x90\x00", "length 3, but 1 bytes follow"),
    (8, b"\x53\x01\xa0\x90\x00", "SessionData"),
    (8, b"\x90\x00", "no SessionData"),
    (8, b"\x61", "no status word"),
])
def test_a_hostile_tag_ends_the_tap_with_a_named_failure(world, at, answer, reason):  # noqa: F811
    hostile = Hostile(world, at, answer)
    outcome = tap(hostile.transmit, NfcReaderSession(reader(world)))
    assert not outcome.valid
    check = outcome.result.checks[0]
    assert check.name == "session" and not check.passed
    assert __import__("re").search(reason, check.reason), check.reason


def test_a_phone_that_hands_over_to_bluetooth_only_is_named(world):  # noqa: F811
    import json
    from pathlib import Path

    vectors = json.loads((Path(__file__).parents[2] / "shared" / "vectors" / "iso18013-5-annex-d.json").read_text())
    hs = bytes.fromhex(vectors["vectors"]["handover_select"]["hex"])
    outcome = tap(static_phone(hs), NfcReaderSession(reader(world)))
    assert "no data retrieval over NFC (carriers: ble)" in outcome.result.checks[0].reason


def test_a_transport_that_fails_mid_tap_is_named(world):  # noqa: F811
    tag = NfcTag(make_wallet(world))

    def flaky(apdu: bytes) -> bytes:
        if apdu[1] == nfc.INS_ENVELOPE:
            raise OSError("the phone left the field")
        return tag.transmit(apdu)

    outcome = tap(flaky, NfcReaderSession(reader(world)))
    assert "transport: OSError: the phone left the field" in outcome.result.checks[0].reason


def test_the_field_going_away_ends_the_wallet_session(world):  # noqa: F811
    tag = NfcTag(make_wallet(world))
    for apdu in ("00A4040007D276000085010100", "00A4000C02E104", "00B0000002"):
        assert tag.transmit(bytes.fromhex(apdu))[-2:] == b"\x90\x00"
    assert tag.session is not None and tag.session.state == "engaged"
    tag.deactivate()
    assert tag.session.state == "terminated"


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(__import__("hypothesis").HealthCheck))
@given(st.lists(st.one_of(st.binary(max_size=30), st.sampled_from([b"\x90\x00", b"\x61\x00", b"\x61\x05",
                                                                  b"\x6a\x82", b"\x53\x00\x90\x00"])),
                min_size=1, max_size=14))
def test_a_fuzzed_tag_never_crashes_the_reader(world, answers):  # noqa: F811
    """Whatever a tag answers, the reader's tap goes on with a command or ends with an
    outcome that is not VALID; it never raises."""
    session = NfcReaderSession(reader(world))
    command = session.start()
    for answer in answers:
        assert isinstance(command, bytes)
        command = session.receive(answer)
        if command is None:
            break
    if command is None:
        assert session.outcome is not None and not session.outcome.valid
    else:
        assert session.abort("the phone left the field").result.checks[0].reason.endswith("left the field")


def test_negotiated_handover_puts_both_messages_in_the_transcript(world):  # noqa: F811
    """The phone offers TNEP's connection handover service; the reader selects it, writes its
    Handover Request (NFC, its lengths) and reads the Handover Select: NFCHandover =
    [Hs, Hr], as in Annex D."""
    apdus = []
    out = present_nfc_in_process(make_wallet(world), reader(world), handover="negotiated",
                                 trace=lambda d, a: apdus.append((d, a)))
    assert out.valid, out.result
    hs, hr = SessionTranscript.decode(out.session_transcript).handover
    request = nfc.HandoverRequest.decode(hr)
    assert [c.kind for c in request.carriers] == ["nfc"]
    assert request.carriers[0].nfc == nfc.NfcCarrier(0xFFFF, 0xFFFF)  # the reader's lengths
    assert nfc.HandoverSelect.decode(hs).nfc_carrier is not None
    writes = [a for d, a in apdus if d == ">" and a[1] == nfc.INS_UPDATE_BINARY]
    assert len(writes) == 6  # Service Select and Handover Request: NLEN 0, the message, NLEN


@pytest.mark.parametrize("service, status", [("urn:nfc:sn:other", 0x01), (nfc.HANDOVER_SERVICE, 0x00)])
def test_the_tag_answers_a_service_select_with_a_tnep_status(world, service, status):  # noqa: F811
    tag = NfcTag(make_wallet(world), handover="negotiated")
    for apdu in ("00A4040007D276000085010100", "00A4000C02E104"):
        assert tag.transmit(bytes.fromhex(apdu)) == b"\x90\x00"
    message = nfc.service_select(service)
    single = bytes.fromhex("00D60000") + bytes([len(message) + 2]) + len(message).to_bytes(2, "big") + message
    assert tag.transmit(single) == b"\x90\x00"
    nlen = tag.transmit(bytes.fromhex("00B0000002"))
    answer = tag.transmit(bytes.fromhex("00B00002") + nlen[:2][1:])
    assert nfc.tnep_status(answer[:-2]) == status


def test_the_tag_refuses_writes_out_of_order_or_to_a_static_file(world):  # noqa: F811
    static = NfcTag(make_wallet(world))
    for apdu in ("00A4040007D276000085010100", "00A4000C02E104"):
        static.transmit(bytes.fromhex(apdu))
    assert static.transmit(bytes.fromhex("00D60000020000")) == b"\x69\x82"  # read-only NDEF file
    tag = NfcTag(make_wallet(world), handover="negotiated")
    for apdu in ("00A4040007D276000085010100", "00A4000C02E104"):
        tag.transmit(bytes.fromhex(apdu))
    assert tag.transmit(bytes.fromhex("00D6000502AAAA")) == b"\x69\x85"  # no NLEN 0 first
    assert tag.transmit(bytes.fromhex("00D60000020000")) == b"\x90\x00"
    assert tag.transmit(bytes.fromhex("00D6000902AAAA")) == b"\x69\x85"  # not sequential
    assert tag.transmit(bytes.fromhex("00D60000020005")) == b"\x6a\x80"  # NLEN of nothing written
    assert tag.transmit(bytes.fromhex("00D6000004000201FF")) == b"\x6a\x80"  # not a Service Select


def test_a_reader_handover_request_without_nfc_gets_an_empty_select(world):  # noqa: F811
    """A reader offering only Bluetooth (Annex D's request, less its NFC carrier) gets a
    Handover Select with no carrier; our reader names that."""
    tag = NfcTag(make_wallet(world), handover="negotiated")
    import ndef

    hr = ndef.HandoverRequestRecord("1.5", 7)
    hr.add_alternative_carrier("active", "0")
    ble = ndef.BluetoothLowEnergyRecord()
    ble.name = "0"
    request = b"".join(ndef.message_encoder([hr, ble]))
    for apdu in ("00A4040007D276000085010100", "00A4000C02E104"):
        tag.transmit(bytes.fromhex(apdu))
    for message in (nfc.service_select(nfc.HANDOVER_SERVICE), request):
        data = len(message).to_bytes(2, "big") + message
        assert tag.transmit(bytes.fromhex("00D60000") + bytes([len(data)]) + data) == b"\x90\x00"
    nlen = tag.transmit(bytes.fromhex("00B0000002"))
    answer = tag.transmit(bytes.fromhex("00B00002") + nlen[1:2])[:-2]
    with pytest.raises(nfc.NfcHandoverError, match="no alternative carrier"):
        nfc.HandoverSelect.decode(answer)
    assert tag.session is None


@pytest.mark.parametrize("handover", ["static", "negotiated"])
def test_reader_authentication_over_nfc_signs_the_nfc_transcript(world, handover):  # noqa: F811
    """readerAuth is over ReaderAuthentication with the NFC handover in the transcript: the
    wallet verifies it (and shows the reader as verified) for either engagement."""
    from test_present_kit import Clock, reader_pki

    from wallet_sim.consent import InteractiveConsent
    from wallet_sim.wallet import Wallet

    pki = reader_pki()
    shown = []
    consent = InteractiveConsent(ask=lambda q: "y", show=shown.append)
    wallet = Wallet(se(world).transmit, consent, clock=Clock(), reader_trust_anchors=[pki.ca])
    session = ReaderSession([REQUEST], pipeline(world), reader_signer=pki.signer, reader_chain=pki.chain)
    out = present_nfc_in_process(wallet, session, handover=handover)
    assert out.valid, out.result
    assert shown[0] == "reader: CN=Shop Reader 1,C=JP (verified)"
    event = next(e for e in out.wallet_events if e.kind == "response")
    assert event.reader.signature_valid


def test_a_reader_that_sends_termination_over_nfc_gets_9000_and_ends_the_session(world):  # noqa: F811
    """Our reader lifts the field; a reader that sends SessionData {status: 20} in an
    ENVELOPE instead gets 9000 with no data, and the wallet's session is over."""
    from protocols.mdoc import SessionData
    from protocols.mdoc.session import SESSION_STATUS_TERMINATION

    tag = NfcTag(make_wallet(world))
    session = NfcReaderSession(reader(world))
    outcome = tap(tag.transmit, session)
    assert outcome.valid
    end = nfc.encapsulate(SessionData(status=SESSION_STATUS_TERMINATION).encode())
    assert tag.transmit(bytes([0, nfc.INS_ENVELOPE, 0, 0, len(end)]) + end + b"\x00") == b"\x90\x00"
    assert tag.session.state == "terminated"


@pytest.mark.parametrize("args, message", [
    ([], "no IACA to trust: give --trust IACA.pem"),
    (["--phone", "p", "--pcsc-reader", "0", "--trust", "x.pem"], "give one of them"),
    (["--consent", "c.json", "--trust", "x.pem"], "are the simulated phone's"),
    (["--handover", "both", "--trust", "x.pem"], "--handover 'both': static or negotiated"),
    (["--loop", "--phone", "p", "--trust", "x.pem"], "--loop reads phones on a PC/SC reader"),
    (["--reader-trust", "x.pem", "--trust", "x.pem"], "--reader-trust and --reader-crl are the simulated phone's"),
    (["--fault", "replay", "--trust", "x.pem"], "--fault is the simulated phone's"),
])
def test_mcred_reader_nfc_names_unusable_options(args, message, tmp_path):
    import json

    from typer.testing import CliRunner

    from mcred.cli.main import app

    pem = tmp_path / "x.pem"
    pem.write_text("")
    args = [str(pem) if a == "x.pem" else a for a in args]
    result = CliRunner().invoke(app, ["reader", "nfc", "--json", *args])
    assert result.exit_code == 2, result.output
    assert message in json.loads(result.stdout)["error"]


def _service(world, tapper):  # noqa: F811
    from fastapi.testclient import TestClient

    from mcred.present import reader_app
    from reader.http import ReaderService

    return TestClient(reader_app(ReaderService(pipeline(world), [REQUEST], tapper=tapper)))


def test_the_reader_service_reads_a_tap_for_a_counter_page(world):  # noqa: F811
    """POST /nfc/taps: the reader reads the phone tapped on its own NFC reader (here a
    simulated phone in-process; `mcred reader serve --pcsc-reader` wires PC/SC) and answers
    the verdict; counted as mode nfc."""
    taps = []

    def tapper(session, wait):
        taps.append(wait)
        return tap(NfcTag(make_wallet(world)).transmit, session)

    client = _service(world, tapper)
    r = client.post("/nfc/taps", params={"wait": 5})
    assert r.status_code == 200, r.text
    assert r.json()["valid"] and taps == [5.0]
    assert 'mcred_reader_presentations_total{mode="nfc",valid="true"} 1.0' in client.get("/metrics").text


def test_the_reader_service_without_an_nfc_reader_or_phone_says_so(world):  # noqa: F811
    from reader.pcsc import PcscError

    r = _service(world, None).post("/nfc/taps")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert "no NFC reader" in r.json()["detail"]

    def nobody(session, wait):
        raise PcscError(f"Virtual PCD 00 00: no phone tapped within {wait:g} s")

    r = _service(world, nobody).post("/nfc/taps", params={"wait": 0.5})
    assert r.status_code == 503 and "no phone tapped within 0.5 s" in r.json()["detail"]
    assert r.json()["type"] == "/problems/nfc-unavailable"  # not the generic /problems/http-503
    assert _service(world, nobody).post("/nfc/taps", params={"wait": 0}).status_code == 422


def test_one_tap_at_a_time(world):  # noqa: F811
    import threading

    entered, go = threading.Event(), threading.Event()

    def slow(session, wait):
        entered.set()
        go.wait(10)
        return tap(NfcTag(make_wallet(world)).transmit, session)

    client = _service(world, slow)
    first: dict = {}
    t = threading.Thread(target=lambda: first.setdefault("r", client.post("/nfc/taps")))
    t.start()
    assert entered.wait(10)
    second = client.post("/nfc/taps")
    go.set()
    t.join(10)
    assert second.status_code == 409 and "reading another tap" in second.json()["detail"]
    assert first["r"].status_code == 200 and first["r"].json()["valid"]


def test_no_pcscd_is_a_named_pcsc_error_not_a_crash(monkeypatch):
    """pyscard's PC/SC layer raises its own exceptions (no pcscd: "Failed to establish
    context"); the reader turns them into PcscError, which the CLI and the HTTP route name."""
    pytest.importorskip("smartcard", reason="pyscard is not installed")
    import smartcard.System
    from smartcard.pcsc.PCSCExceptions import EstablishContextException

    from reader import pcsc

    def no_service(*_a):
        raise EstablishContextException(0x8010001D)

    monkeypatch.setattr(smartcard.System, "readers", no_service)
    with pytest.raises(pcsc.PcscError, match="is pcscd running"):
        pcsc.reader_names()
    with pytest.raises(pcsc.PcscError, match="is pcscd running"), pcsc.tapped(wait=0.1):
        pass
