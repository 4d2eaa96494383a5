"""A reader reads the phone over Bluetooth Low Energy (issue 6, data retrieval over BLE,
ISO/IEC 18013-5 §8.3.3.1.1): the phone's QR engagement offers BLE, and the two exchange the
session over bumble's Bluetooth host stack on a virtual radio, in both modes."""

from __future__ import annotations

import pytest
from test_wallet_session import REQUEST, make_wallet, pipeline, world  # noqa: F401 - fixtures

from mcred.present import verify_saved
from mcred.present_ble import present_ble_in_process
from protocols.mdoc import DeviceEngagement, SessionTranscript, ble
from reader.session import ReaderSession
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
