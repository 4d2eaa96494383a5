"""The SE refuses like a strict card: each refusal checks the status word, that no
secure channel session survives, and that the persisted image did not change (except the
failed-authentication counter, which must persist to be of any use)."""

from __future__ import annotations

import os
from pathlib import Path

import cbor2
import pytest

import wallet_sim
from protocols.gp import HostChannel, StaticKeys
from protocols.gp.keys import put_key_command

ISD = bytes.fromhex("A000000151000000")
FACTORY = StaticKeys(*(bytes.fromhex("404142434445464748494A4B4C4D4E4F"),) * 3)
WRONG = StaticKeys(*(bytes.fromhex("404142434445464748494A4B4C4D4E40"),) * 3)
GET_STATUS = bytes.fromhex("80F28002024F0000")


def image(home: Path, pid: str) -> bytes:
    return (home / "phones" / pid / "se.cbor").read_bytes()


def open_session(se, keys=FACTORY, level=0x33):
    host = HostChannel(keys, level, os.urandom(8), sd_aid=ISD)
    r = se.transmit(host.initialize_update())
    r = se.transmit(host.on_initialize_update_response(r))
    host.on_external_authenticate_response(r)
    return host


def assert_no_session(se) -> None:
    assert all(ch.session is None for ch in se.channels.values())
    # a secured command is refused: there is nothing to verify its MAC with
    assert se.transmit(bytes.fromhex("84F28002" "0A" "4F00" "0011223344556677" "00")) == b"\x69\x82"


def forged_external_authenticate(se, keys=WRONG):
    """A host with the wrong keys: the card cryptogram will not verify on its side, so
    it forges the EXTERNAL AUTHENTICATE from what it has (as an attacker would)."""
    from protocols.gp.apdu import CommandApdu
    from protocols.gp.scp03 import (
        InitializeUpdateResponse,
        SecureMessaging,
        derive_session_keys,
        host_cryptogram,
    )

    hc = os.urandom(8)
    r = se.transmit(bytes.fromhex("8050000008") + hc + b"\x00")
    assert r[-2:] == b"\x90\x00"
    iu = InitializeUpdateResponse.parse(r[:-2])
    sk = derive_session_keys(keys, hc, iu.card_challenge)
    sm = SecureMessaging(sk, 0x01)
    ea = sm.wrap_command(CommandApdu(0x80, 0x82, 0x33, 0x00, host_cryptogram(sk.s_mac, hc, iu.card_challenge, 8)))
    return se.transmit(ea.to_bytes())


@pytest.fixture
def phone(tmp_path: Path):
    return wallet_sim.create_phone(tmp_path, max_failed_authentications=3), tmp_path


def test_wrong_host_cryptogram(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    se.transmit(bytes.fromhex("00A4040008") + ISD)
    r = se.transmit(bytes.fromhex("8050000008") + os.urandom(8) + b"\x00")  # IU moves the counter
    before = cbor2.loads(image(home, pid))
    se.reset()
    assert forged_external_authenticate(se) == b"\x63\x00"  # Amendment D 7.1.2.5
    assert_no_session(se)
    after = cbor2.loads(image(home, pid))
    assert after["failed_authentications"] == {0x30: 1}
    for k in ("keysets", "applications", "card_life_cycle", "blocked_kvns", "cplc", "kdd"):
        assert after[k] == before[k]
    assert after["sequence_counter"] == before["sequence_counter"] + 1  # the forged IU consumed one
    assert r[-2:] == b"\x90\x00"


def test_ea_with_tampered_mac(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = HostChannel(FACTORY, 0x33, os.urandom(8))
    r = se.transmit(host.initialize_update())
    ea = bytearray(host.on_initialize_update_response(r))
    ea[-1] ^= 0x01
    before = image(home, pid)
    assert se.transmit(bytes(ea)) == b"\x63\x00"  # Amendment D 7.1.2.5, as for a wrong cryptogram
    assert_no_session(se)
    assert cbor2.loads(image(home, pid))["failed_authentications"] == {0x30: 1}
    assert {k: v for k, v in cbor2.loads(image(home, pid)).items() if k != "failed_authentications"} == \
        {k: v for k, v in cbor2.loads(before).items() if k != "failed_authentications"}


@pytest.mark.parametrize("level", [0x01, 0x03, 0x11, 0x13, 0x33])
def test_tampered_command_mac_ends_session(phone, level) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se, level=level)
    before = image(home, pid)
    w = bytearray(host.wrap(put_key_command(0x30, 0x31, [os.urandom(16)] * 3, FACTORY.dek).to_bytes()))
    w[-3] ^= 0x80  # inside the C-MAC (before Le)
    assert se.transmit(bytes(w)) == b"\x69\x82"
    assert_no_session(se)
    assert image(home, pid) == before


def test_wrong_host_cryptogram_under_a_good_mac_is_6300(phone) -> None:
    """A host with the right keys whose cryptogram is wrong (its C-MAC verifies): GPCS
    Amendment D 7.1.2.5 "authentication of host cryptogram failed", 6300, counted; no
    session opens and the image changes only in the failure count."""
    from protocols.gp.apdu import CommandApdu
    from protocols.gp.scp03 import InitializeUpdateResponse, SecureMessaging, derive_session_keys

    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    hc = os.urandom(8)
    iu = InitializeUpdateResponse.parse(se.transmit(bytes.fromhex("8050000008") + hc + b"\x00")[:-2])
    before = cbor2.loads(image(home, pid))
    sm = SecureMessaging(derive_session_keys(FACTORY, hc, iu.card_challenge), 0x01)
    ea = sm.wrap_command(CommandApdu(0x80, 0x82, 0x33, 0x00, bytes(8)))
    assert se.transmit(ea.to_bytes()) == b"\x63\x00"
    assert_no_session(se)
    after = cbor2.loads(image(home, pid))
    assert after.pop("failed_authentications") == {0x30: 1}
    before.pop("failed_authentications")
    assert after == before


def test_plain_command_inside_session_ends_it(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    open_session(se, level=0x01)
    before = image(home, pid)
    assert se.transmit(GET_STATUS) == b"\x69\x82"
    assert_no_session(se)
    assert image(home, pid) == before


def test_unknown_kvn(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    before = image(home, pid)
    host = HostChannel(FACTORY, 0x33, os.urandom(8), kvn=0x42)
    assert se.transmit(host.initialize_update()) == b"\x6a\x88"
    assert_no_session(se)
    assert image(home, pid) == before


def test_exhausted_sequence_counter(tmp_path: Path) -> None:
    pid = wallet_sim.create_phone(tmp_path, initial_sequence_counter=0xFFFFFE)
    se = wallet_sim.open_secure_element(pid, tmp_path)
    host = open_session(se)  # uses FFFFFF, the last value
    assert host.card is not None and host.card.sequence_counter == b"\xff\xff\xff"
    before = image(tmp_path, pid)
    assert se.transmit(HostChannel(FACTORY, 0x33, os.urandom(8)).initialize_update()) == b"\x69\x85"
    assert_no_session(se)  # the new INITIALIZE UPDATE also ended the open session
    assert image(tmp_path, pid) == before


def test_keyset_blocked_after_consecutive_failures(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    for _ in range(3):
        assert forged_external_authenticate(se) == b"\x63\x00"  # Amendment D 7.1.2.5
    before = image(home, pid)
    assert cbor2.loads(before)["blocked_kvns"] == [0x30]
    host = HostChannel(FACTORY, 0x33, os.urandom(8))
    assert se.transmit(host.initialize_update()) == b"\x69\x83"  # even with the right keys
    assert_no_session(se)
    assert image(home, pid) == before
    d = wallet_sim.describe(pid, home)["secure_element"]["security_domains"][0]["keysets"][0]
    assert d["blocked"] is True


def test_success_resets_failure_count(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    for _ in range(2):
        forged_external_authenticate(se)
    open_session(se)
    assert cbor2.loads(image(home, pid))["failed_authentications"] == {}


@pytest.mark.parametrize(("level", "apdu"), [
    (0x01, put_key_command(0x30, 0x31, [b"\x11" * 16] * 3, FACTORY.dek).to_bytes()),
    (0x11, bytes.fromhex("80E2800003AABBCC")),
])
def test_security_level_floors(phone, level, apdu) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se, level=level)
    before = image(home, pid)
    assert host.unwrap(se.transmit(host.wrap(apdu))) == b"\x69\x82"
    assert image(home, pid) == before
    # the floor refuses the command; the session itself stays usable
    assert host.unwrap(se.transmit(host.wrap(GET_STATUS)))[-2:] == b"\x90\x00"


def test_card_content_management_needs_a_session(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    before = image(home, pid)
    for apdu in ("80F28002024F0000", "80E400000A4F08A000000151000000", "80F0807F"):
        assert se.transmit(bytes.fromhex(apdu)) == b"\x69\x82"
    assert image(home, pid) == before


def test_external_authenticate_without_initialize_update(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    before = image(home, pid)
    assert se.transmit(bytes.fromhex("8482330010" + "00" * 16)) == b"\x69\x85"
    assert_no_session(se)
    assert image(home, pid) == before


def test_garbage_apdus_never_crash(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    rnd = __import__("random").Random(7)
    for _ in range(300):
        raw = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 40)))
        out = se.transmit(raw)
        assert len(out) >= 2


def test_select_p2_asks_for_the_fci_or_nothing(phone) -> None:
    """SELECT by AID of the ISD: P2 00 returns the FCI, P2 0C no response data (ISO/IEC
    7816-4 table 63: "no response data if Le field absent, or proprietary if present"), RFU
    bits of P2 6A86 and next occurrence 6A81, both leaving the selection and the ISD's
    session as they were."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    select = bytes.fromhex("00A40400") + bytes([len(ISD)]) + ISD
    assert se.transmit(select)[:2] == b"\x6f\x10" and se.transmit(select)[-2:] == b"\x90\x00"
    assert se.transmit(bytes.fromhex("00A4040C") + bytes([len(ISD)]) + ISD) == b"\x90\x00"
    host = open_session(se)
    before = image(home, pid)
    for p2 in (0x10, 0x8C, 0x02):
        want = b"\x6a\x81" if p2 == 0x02 else b"\x6a\x86"
        assert se.transmit(bytes([0x00, 0xA4, 0x04, p2, len(ISD)]) + ISD) == want
    # the ISD is still selected with its session open
    assert host.unwrap(se.transmit(host.wrap(GET_STATUS)))[-2:] == b"\x90\x00"
    assert image(home, pid) == before


@pytest.mark.parametrize(("apdu", "sw"), [
    ("10A4040008" + ISD.hex(), b"\x68\x84"),  # SELECT, chaining bit: not taken
    ("90CA9F7F00", b"\x68\x84"),  # GET DATA to the ISD, chaining bit
    ("94CA9F7F00", b"\x68\x84"),  # with the SM bit: refused before the session sees it
    ("D0CA9F7F00", b"\x68\x81"),  # channel 4 (further class layout) is not open
    ("1070000001", b"\x68\x84"),  # MANAGE CHANNEL, chaining bit
    ("20CA9F7F00", b"\x6e\x00"),  # ISO/IEC 7816-4 RFU class
    ("3FA4040008" + ISD.hex(), b"\x6e\x00"),
    ("A0CA9F7F00", b"\x6e\x00"),  # not a GP class (GPCS 11.1.4)
])
def test_chaining_and_rfu_classes_are_refused_and_change_nothing(phone, apdu, sw) -> None:
    """No command chaining in the runtime or the ISD (6884), RFU and non-GP classes 6E00;
    each refusal keeps the ISD's session and selection, and the image."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    before = image(home, pid)
    assert se.transmit(bytes.fromhex(apdu)) == sw
    assert set(se.channels) == {0}
    assert host.unwrap(se.transmit(host.wrap(GET_STATUS)))[-2:] == b"\x90\x00"
    assert image(home, pid) == before
