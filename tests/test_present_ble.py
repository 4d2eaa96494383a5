"""A reader reads the phone over Bluetooth Low Energy (issue 6, data retrieval over BLE,
ISO/IEC 18013-5 §8.3.3.1.1): the phone's QR engagement offers BLE, and the two exchange the
session over bumble's Bluetooth host stack on a virtual radio, in both modes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wallet_session import REQUEST, make_wallet, pipeline, se, world  # noqa: F401 - fixtures

import blelink
from mcred.present import verify_saved
from mcred.present_ble import present_ble_in_process
from protocols.mdoc import DeviceEngagement, SessionTranscript, ble
from reader import ble as reader_ble
from reader.session import ReaderSession
from wallet_sim import ble as wallet_ble
from wallet_sim.consent import RulesConsent

pytest.importorskip("bumble")


def reader(world):  # noqa: F811
    return ReaderSession([REQUEST], pipeline(world))


@pytest.mark.parametrize("mode", ["peripheral", "central"])
def test_a_presentation_over_ble_is_valid_in_either_mode(world, mode):  # noqa: F811
    out, steps = present_ble_in_process(make_wallet(world), reader(world), mode=mode, timeout=10)
    assert out.valid, (out.result, steps)
    transcript = SessionTranscript.decode(out.session_transcript)
    assert transcript.handover is None  # QR engagement
    options = ble.BleOptions.of(DeviceEngagement.decode(transcript.device_engagement_bytes))
    assert options.peripheral_server == (mode == "peripheral") and options.central_client == (mode == "central")
    assert any("ATT MTU 517" in s for s in steps), steps
    if mode == "central":
        assert "phone: Ident matches the engagement's EDeviceKey" in steps
    assert any(s.startswith("phone: session ended") for s in steps), steps
    assert verify_saved(out.saved(), pipeline(world)).valid


def test_mac_device_authentication_over_ble(world):  # noqa: F811
    out, _ = present_ble_in_process(make_wallet(world, device_auth="mac"), reader(world), timeout=10)
    assert out.valid, out.result
    assert any(c["name"] == "device_authentication" and "deviceMac" in c["reason"] for c in out.result["checks"])


def test_the_holder_refusing_ends_invalid_not_broken(world):  # noqa: F811
    refuse = RulesConsent.from_mapping({"documents": {}})
    out, _ = present_ble_in_process(make_wallet(world, consent=refuse), reader(world), timeout=10)
    assert not out.valid
    assert out.result["checks"][0]["name"] == "session"


# -- a hostile or broken other side: named, never a crash --------------------------------------


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def _shown(loop_future):
    return lambda engagement: loop_future.set_result(engagement)


def test_the_phone_refuses_a_reader_whose_ident_is_not_its_engagements(world):  # noqa: F811
    async def run():
        radio = blelink.Radio()
        shown = asyncio.get_running_loop().create_future()
        phone = asyncio.create_task(wallet_ble.present(make_wallet(world), radio, mode="central",
                                                       on_engagement=_shown(shown), timeout=5))
        engagement = await shown
        options = ble.BleOptions.of(engagement.device_engagement)
        async with blelink.opened(radio, "impostor") as dev:  # a reader that overheard the UUID only
            end = blelink.GattServerEnd(dev, ble.CENTRAL_CLIENT, options.central_uuid, ident=bytes(16))
            await end.advertise()
            with pytest.raises(blelink.LinkError):
                await end.wait(1.0)  # the phone never starts the session
        return await phone

    transfer = _run(run())
    assert transfer.session is None  # nothing was ever answered
    assert "Ident is 00000000000000000000000000000000" in transfer.problem
    assert "not the reader that read the engagement" in transfer.problem


def _phone_read_by(world, act, *, timeout: float = 5, phone_may_leave: bool = False):  # noqa: F811
    """The phone (peripheral server mode) against a bare GATT client in the reader's place,
    which connects and then does ``act(end)``: the phone's transfer and what ``act`` returned.
    ``phone_may_leave``: with a short ``timeout`` on a loaded machine the phone may have given
    up before the client got to connect or write; that is the client's failure, not the
    phone's (``acted`` is then None), and the phone's transfer is still what is judged."""

    async def run():
        radio = blelink.Radio()
        shown = asyncio.get_running_loop().create_future()
        phone = asyncio.create_task(wallet_ble.present(make_wallet(world), radio, on_engagement=_shown(shown),
                                                       timeout=timeout))
        engagement = await shown
        options = ble.BleOptions.of(engagement.device_engagement)
        acted = None
        async with blelink.opened(radio, "hostile reader") as dev:
            end = blelink.GattClientEnd(dev, ble.PERIPHERAL_SERVER, options.peripheral_uuid)
            try:
                await end.connect(5)
                acted = await act(end)
            except Exception:
                if not (phone_may_leave and phone.done()):
                    raise
        return await phone, acted

    return _run(run())


def test_broken_framing_from_a_reader_ends_the_phones_session_with_the_reason(world):  # noqa: F811
    async def garble(end):
        await end._c2s.write_value(b"\x07not a header", with_response=False)
        assert await end.receive(5) is None  # the phone ends the session
        return end.why

    transfer, why = _phone_read_by(world, garble)
    assert "characteristic value starts with 0x07" in transfer.problem
    assert why == "peer ended the session (State 0x02)"  # the phone says so before hanging up


def _outcome_of_a_phone_that(world, misbehave, *, timeout: float = 5):  # noqa: F811
    """The reader's outcome of reading a bare GATT server in the phone's place, which takes
    the SessionEstablishment and then does ``misbehave(device, end)`` instead of answering."""

    async def run():
        radio = blelink.Radio()
        engagement = wallet_ble.ble_engagement("peripheral")
        options = ble.BleOptions.of(engagement.device_engagement)
        async with blelink.opened(radio, "phone") as dev:
            end = blelink.GattServerEnd(dev, ble.PERIPHERAL_SERVER, options.peripheral_uuid)
            await end.advertise()
            read = asyncio.create_task(reader_ble.read(reader(world), engagement.uri, radio, timeout=timeout))
            await end.wait(5)
            assert await end.receive(5)  # the SessionEstablishment
            await misbehave(dev, end)
            return await read

    return _run(run()).outcome


def _read_a_phone_that(world, misbehave, code: str = "session_failed"):  # noqa: F811
    """The failed session check of :func:`_outcome_of_a_phone_that`, of ``code``: its reason."""
    (check,) = _outcome_of_a_phone_that(world, misbehave).result.checks
    assert check.name == "session" and not check.passed
    assert check.code == code, check
    return check.reason


def test_a_phone_that_goes_away_before_answering_fails_the_readers_session_check(world):  # noqa: F811
    """A link dropped without State 0x02: the transport failed (``session_failed``, present again)."""
    async def hang_up(dev, end):
        await end.connection.disconnect()

    assert "ended the session before answering (disconnected" in _read_a_phone_that(world, hang_up)


def test_a_phone_that_ends_the_session_before_answering_is_holder_ended_not_a_failure(world):  # noqa: F811
    """State 0x02 "End" before the SessionData (ISO/IEC 18013-5 §8.3.3.1.1.5): the phone ended the
    session itself, as with SessionData status 20, the holder's doing and no failure of the link:
    code ``holder_ended``, not ``session_failed`` (which it was: a script retried a holder who
    had said no)."""
    async def end_it(dev, end):
        await end.end()  # 02 on State, then the phone hangs up

    reason = _read_a_phone_that(world, end_it, code="holder_ended")
    assert reason == "BLE: the phone ended the session before answering (peer ended the session (State 0x02))"


def test_broken_framing_from_a_phone_fails_the_readers_session_check(world):  # noqa: F811
    async def garble(dev, end):
        await dev.notify_subscriber(end.connection, end._s2c, b"\x09garbage", force=True)

    assert "BLE: characteristic value starts with 0x09" in _read_a_phone_that(world, garble)


@pytest.mark.parametrize("engagement", ["mdoc:AAAA", "qr"])
def test_an_engagement_without_usable_ble_fails_the_session_check_before_any_radio(world, engagement):  # noqa: F811
    from wallet_sim.engagement import Engagement

    uri = Engagement.new().uri if engagement == "qr" else engagement  # a QR code that names no BLE
    got = _run(reader_ble.read(reader(world), uri, "no-such-transport:x"))
    (check,) = got.outcome.result.checks
    assert check.name == "session" and not check.passed
    assert ("offers no data retrieval over BLE" if engagement == "qr" else "DeviceEngagement") in check.reason
    with pytest.raises(ble.BleError, match="does not offer mdoc central client mode"):
        reader_ble.choose_mode(ble.BleOptions.new(), "central")


@pytest.mark.parametrize("tap", [None, "negotiated"])
def test_reader_authentication_over_ble_signs_this_sessions_transcript(world, tap):  # noqa: F811
    """readerAuth over ReaderAuthentication with this session's transcript (Handover null
    after the QR code, NFCHandover after a tap): the wallet verifies it and shows the reader
    as verified, whichever engagement led to BLE."""
    from test_present_kit import Clock, reader_pki

    from mcred.present_ble import present_tap_ble_in_process
    from wallet_sim.consent import InteractiveConsent
    from wallet_sim.wallet import Wallet

    pki = reader_pki()
    shown = []
    wallet = Wallet(se(world).transmit, InteractiveConsent(ask=lambda q: "y", show=shown.append), clock=Clock(),
                    reader_trust_anchors=[pki.ca])
    session = ReaderSession([REQUEST], pipeline(world), reader_signer=pki.signer, reader_chain=pki.chain)
    if tap is None:
        out, _ = present_ble_in_process(wallet, session, mode="central", timeout=10)
    else:
        out, _ = present_tap_ble_in_process(wallet, session, mode="central", handover=tap, timeout=10)
    assert out.valid, out.result
    assert shown[0] == "reader: CN=Shop Reader 1,C=JP (verified)"
    assert next(e for e in out.wallet_events if e.kind == "response").reader.signature_valid


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["state", "c2s"]), st.binary(max_size=30)), min_size=1, max_size=8))
def test_whatever_a_reader_writes_the_phone_ends_with_a_reason_or_waits_never_a_crash(world, writes):  # noqa: F811
    """A fuzzing GATT client in the reader's place: any values on State and Client2Server.
    The phone's side returns a transfer (answered, refused with a named reason, or nothing
    asked within its wait) and never raises."""

    async def write_all(end):
        for where, value in writes:
            char = end._state_char if where == "state" else end._c2s
            await char.write_value(value, with_response=False)

    transfer, _ = _phone_read_by(world, write_all, timeout=0.5, phone_may_leave=True)
    assert transfer.problem is None or isinstance(transfer.problem, str)
    if transfer.session is not None:
        assert transfer.session.state in ("open", "engaged", "terminated")


@pytest.mark.parametrize(("mode", "suffix"), [("peripheral", ".btsnoop"), ("central", ".pcap")])
def test_the_readers_hci_traffic_is_a_capture_wireshark_reads(world, tmp_path, mode, suffix):  # noqa: F811
    """``snoop``: the reader's HCI packets as btsnoop (Android's btsnoop_hci.log) or pcap
    (link type 201). tshark decodes the session: the MTU exchange, start and end on State,
    the SessionEstablishment in one last value, the SessionData in 512-byte values."""
    import shutil
    import struct
    import subprocess

    capture = tmp_path / f"reader{suffix}"
    out, _ = present_ble_in_process(make_wallet(world), reader(world), mode=mode, timeout=10, snoop=capture)
    assert out.valid, out.result
    data = capture.read_bytes()
    if suffix == ".btsnoop":
        assert data[:16] == b"btsnoop\0" + struct.pack(">LL", 1, 1002)  # version 1, HCI H4
    else:
        assert struct.unpack("<IHHIIII", data[:24])[::6] == (0xA1B2C3D4, 201)  # pcap, DLT_BLUETOOTH_HCI_H4_WITH_PHDR
    if shutil.which("tshark") is None:
        pytest.skip("tshark (Wireshark) is not installed: the capture's headers were checked, not its decoding")
    fields = subprocess.run(["tshark", "-r", str(capture), "-Y", "btatt", "-T", "fields", "-e", "btatt.opcode",
                             "-e", "btatt.client_rx_mtu", "-e", "btatt.value"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in fields.splitlines()]
    assert ["0x02", "517", ""] in rows  # Exchange MTU Request
    ours_out = "0x52" if mode == "peripheral" else "0x1b"  # the reader writes as client, notifies as server
    ours_in = "0x1b" if mode == "peripheral" else "0x52"
    sent = [v for op, _, v in rows if op == ours_out and v]
    got = [v for op, _, v in rows if op == ours_in and v]
    state = [v for v in sent if len(v) == 2]
    if mode == "peripheral":  # the client starts and ends on State
        assert state[0] == "01" and state[-1] == "02"
    else:  # the phone (client) starts; the reader (server) says the end on State
        assert "01" in [v for v in got if len(v) == 2] and state[-1] == "02"
    messages = [v for v in sent if len(v) > 2]
    assert messages[0].startswith("00a26a655265616465724b6579")  # last value: {"eReaderKey": ..., "data": ...}
    assert messages[-1] == "00a16673746174757314"  # SessionData {"status": 20}
    answer = [v for v in got if len(v) > 2]
    assert [v[:2] for v in answer] == ["01"] * (len(answer) - 1) + ["00"]
    assert all(len(v) == 1024 for v in answer[:-1])  # 512-byte values


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=6))
def test_whatever_a_phone_notifies_the_reader_judges_it_invalid_never_a_crash(world, values):  # noqa: F811
    """A fuzzing GATT server in the phone's place notifies any values on Server2Client after
    the SessionEstablishment: the reader's read ends INVALID, with its reason, and never raises."""

    async def notify_all(dev, end):
        for value in values:
            await dev.notify_subscriber(end.connection, end._s2c, value, force=True)

    outcome = _outcome_of_a_phone_that(world, notify_all, timeout=0.5)
    assert not outcome.valid
    failed = [c for c in outcome.result.checks if not c.passed]
    assert failed and all(isinstance(c.reason, str) and c.reason for c in failed)



@pytest.mark.parametrize("when", ["connection", "mtu"])
def test_a_phone_that_goes_away_during_discovery_is_a_link_error_not_a_cancellation(when):
    """The phone disconnects while the reader is still exchanging the MTU or discovering its
    service (a phone that gave up waiting, or walked away): the reader's connect ends with a
    LinkError that says so. bumble cancels the pending ATT request on a disconnection, and
    that CancelledError must not escape as if the reader's own task had been cancelled."""
    import uuid

    service = uuid.uuid4()

    async def run():
        radio = blelink.Radio()
        async with blelink.opened(radio, "phone") as phone_dev, blelink.opened(radio, "reader") as reader_dev:
            server = blelink.GattServerEnd(phone_dev, ble.PERIPHERAL_SERVER, service)

            def leave(connection):  # noqa: ANN001 - a bumble Connection
                async def go():
                    if when == "mtu":
                        await asyncio.sleep(0)
                    await connection.disconnect()
                asyncio.get_running_loop().create_task(go())

            phone_dev.on("connection", leave)
            await server.advertise()
            client = blelink.GattClientEnd(reader_dev, ble.PERIPHERAL_SERVER, service)
            with pytest.raises(blelink.LinkError, match="disconnected"):
                await client.connect(5)

    _run(run())
