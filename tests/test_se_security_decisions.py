"""The SE's security decisions that mutation testing found unheld (wallet_sim/se/isd.py,
wallet_sim/se/runtime.py): each test names the attack or defect a bent check would let
through, and fails when that check is dropped."""

from __future__ import annotations

import os
from pathlib import Path

import cbor2
import pytest
from test_se_refusals import FACTORY, GET_STATUS, assert_no_session, image, open_session

import wallet_sim
from protocols.gp import HostChannel
from protocols.gp.apdu import CommandApdu
from protocols.gp.scp03 import InitializeUpdateResponse, SecureMessaging, derive_session_keys


@pytest.fixture
def phone(tmp_path: Path):
    return wallet_sim.create_phone(tmp_path, max_failed_authentications=3), tmp_path


def _initialize_update(se, hc: bytes) -> InitializeUpdateResponse:
    r = se.transmit(bytes.fromhex("8050000008") + hc + b"\x00")
    assert r[-2:] == b"\x90\x00"
    return InitializeUpdateResponse.parse(r[:-2])


def test_an_external_authenticate_without_the_sm_bit_counts_as_a_failed_authentication(phone) -> None:
    """A guess at the host cryptogram sent without C-MAC (CLA 80, not 84) is a failed
    authentication like any other: were it routed elsewhere (SCP11a's MUTUAL AUTHENTICATE
    shares the INS), an attacker would guess without ever blocking the keyset."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    for n in range(1, 4):
        _initialize_update(se, os.urandom(8))
        assert se.transmit(bytes.fromhex("8082330010") + os.urandom(16)) == b"\x63\x00"
        assert cbor2.loads(image(home, pid))["failed_authentications"] == {0x30: n}
    assert cbor2.loads(image(home, pid))["blocked_kvns"] == [0x30]
    assert se.transmit(HostChannel(FACTORY, 0x33, os.urandom(8)).initialize_update()) == b"\x69\x83"


def test_a_c_mac_external_authenticate_with_p2_11_is_scp03s_malformed_one(phone) -> None:
    """P2 = 11 names SCP11a's key only in a plain MUTUAL AUTHENTICATE; under C-MAC it is a
    malformed SCP03 EXTERNAL AUTHENTICATE (6A80), the session ended, nothing counted."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    hc = os.urandom(8)
    iu = _initialize_update(se, hc)
    sm = SecureMessaging(derive_session_keys(FACTORY, hc, iu.card_challenge), 0x01)
    ea = sm.wrap_command(CommandApdu(0x80, 0x82, 0x33, 0x11, bytes(8)))
    assert se.transmit(ea.to_bytes()) == b"\x6a\x80"
    assert_no_session(se)
    assert cbor2.loads(image(home, pid))["failed_authentications"] == {}


@pytest.mark.parametrize("ins", ["50", "82", "88", "2A"])
def test_gp_handshake_instructions_in_an_interindustry_class_are_not_gp_commands(phone, ins) -> None:
    """INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, INTERNAL AUTHENTICATE and PERFORM SECURITY
    OPERATION are GP's in CLA 80/84 only: with CLA 00 the ISD does not know them (6D00),
    and nothing moves (no sequence counter, no failure counted)."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    before = image(home, pid)
    assert se.transmit(bytes.fromhex(f"00{ins}000008") + os.urandom(8) + b"\x00") == b"\x6d\x00"
    assert image(home, pid) == before


def test_a_session_at_security_level_00_takes_plain_commands_under_its_floors(phone) -> None:
    """Level 00: authenticated, no secure messaging (Amendment D 7.1.2.1). Its commands come
    plain; GET DATA answers, but card content management (floor C-MAC) is refused, the
    session kept; a command with the SM bit ends it."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    open_session(se, level=0x00)
    assert se.channels[0].session is not None and se.channels[0].session.is_open
    assert se.transmit(bytes.fromhex("80CA006600"))[-2:] == b"\x90\x00"
    assert se.transmit(GET_STATUS) == b"\x69\x82"
    assert se.channels[0].session is not None and se.channels[0].session.is_open
    assert se.transmit(bytes.fromhex("84F28002024F0000")) == b"\x69\x82"
    assert_no_session(se)



def test_a_command_with_the_sm_bit_and_no_session_is_not_answered(phone) -> None:
    """Without a session nothing verifies a secured command: 6982, even for GET DATA (which
    needs no session when plain); answering it would take a forged C-MAC as good."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(bytes.fromhex("80CA006600"))[-2:] == b"\x90\x00"
    assert se.transmit(bytes.fromhex("84CA006608") + os.urandom(8) + b"\x00") == b"\x69\x82"
    assert_no_session(se)


def test_a_session_ended_by_a_bad_mac_is_closed_and_forgets_its_personalization_target(phone) -> None:
    """INSTALL [for personalization] names the applet STORE DATA goes to for this session
    only: after a tampered command ends the session, a new one (another TSM) has no target
    until it names one, and the old session object is closed."""
    from test_se_runtime import install_apdu, open_se, perso_apdu, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert send(se, host, perso_apdu()) == b"\x00\x90\x00"
    old = se.channels[0].session
    w = bytearray(host.wrap(bytes.fromhex("80E2000003AABBCC")))
    w[-2] ^= 1
    assert se.transmit(bytes(w)) == b"\x69\x82"
    assert old is not None and not old.is_open
    host = open_session(se)  # no SELECT in between (re-selecting the ISD also drops the target)
    assert send(se, host, "80E2000003AABBCC") == b"\x69\x85"  # no target named in this session


@pytest.mark.parametrize(("apdu", "sw"), [("8050000108", b"\x6a\x86"), ("8050000007", b"\x67\x00"),
                                          ("8050000010", b"\x67\x00")])
def test_a_malformed_initialize_update_is_refused_and_consumes_no_counter_value(phone, apdu, sw) -> None:
    """P2 not 00, or a host challenge the card's mode does not take: the card's status word,
    no session, and the sequence counter (persisted) not moved."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    before = image(home, pid)
    raw = bytes.fromhex(apdu)
    assert se.transmit(raw + os.urandom(raw[4]) + b"\x00") == sw
    assert_no_session(se)
    assert image(home, pid) == before


def test_a_replayed_external_authenticate_on_an_open_session_is_6985_and_not_counted(phone) -> None:
    """The recorded EXTERNAL AUTHENTICATE sent again on the open session: 6985 (no
    INITIALIZE UPDATE outstanding), the session ends, and it is not a failed authentication
    (it proves nothing about keys; counting it would let anyone who saw one block the
    keyset without guessing)."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = HostChannel(FACTORY, 0x33, os.urandom(8), sd_aid=bytes.fromhex("A000000151000000"))
    ea = host.on_initialize_update_response(se.transmit(host.initialize_update()))
    host.on_external_authenticate_response(se.transmit(ea))
    before = image(home, pid)
    assert se.transmit(ea) == b"\x69\x85"
    assert_no_session(se)
    assert image(home, pid) == before


def test_an_external_authenticate_at_a_level_the_card_refuses_is_6a86_and_not_counted(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    hc = os.urandom(8)
    iu = _initialize_update(se, hc)
    before = image(home, pid)
    sm = SecureMessaging(derive_session_keys(FACTORY, hc, iu.card_challenge), 0x01)
    assert se.transmit(sm.wrap_command(CommandApdu(0x80, 0x82, 0x02, 0x00, bytes(8))).to_bytes()) == b"\x6a\x86"
    assert_no_session(se)
    assert image(home, pid) == before


def test_failures_on_several_channels_block_the_keyset_once(phone) -> None:
    """INITIALIZE UPDATEs on all four channels before any EXTERNAL AUTHENTICATE fails: the
    fourth failure comes after the block (max 3) and must not enter the keyset a second
    time in the blocked list (PUT KEY lifts one entry: a second would keep it blocked)."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    for n in (1, 2, 3):
        assert se.transmit(bytes.fromhex("0070000001")) == bytes([n]) + b"\x90\x00"
    hcs = {}
    for ch in range(4):
        hc = os.urandom(8)
        r = se.transmit(bytes([0x80 | ch]) + bytes.fromhex("50000008") + hc + b"\x00")
        hcs[ch] = (hc, InitializeUpdateResponse.parse(r[:-2]))
    for ch, (hc, iu) in hcs.items():
        sm = SecureMessaging(derive_session_keys(FACTORY, hc, iu.card_challenge), 0x01)
        ea = sm.wrap_command(CommandApdu(0x80 | ch, 0x82, 0x33, 0x00, bytes(8)))
        assert se.transmit(ea.to_bytes()) == b"\x63\x00"
    st = cbor2.loads(image(home, pid))
    assert st["failed_authentications"] == {0x30: 4} and st["blocked_kvns"] == [0x30]


def test_get_data_is_the_one_isd_command_in_an_interindustry_class(phone) -> None:
    """ISO/IEC 7816-4 GET DATA (CLA 00) reads the card's public data objects; GP's other
    commands are CLA 80/84 only (6D00 in CLA 00, whatever the session)."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(bytes.fromhex("00CA9F7F00"))[-2:] == b"\x90\x00"
    before = image(home, pid)
    for apdu in ("00F28002024F0000", "00E400000A4F08A000000151000000", "00F0807F"):
        assert se.transmit(bytes.fromhex(apdu)) == b"\x6d\x00"
    assert image(home, pid) == before


# -- PUT KEY --------------------------------------------------------------------------------


def _put(se, host, old: int, new: int, keys=None, dek: bytes = FACTORY.dek, **kw) -> bytes:
    from protocols.gp.keys import put_key_command

    keys = keys if keys is not None else [os.urandom(16)] * 3
    return host.unwrap(se.transmit(host.wrap(put_key_command(old, new, keys, dek, **kw).to_bytes())))


def test_put_key_adding_a_kvn_that_exists_is_refused_not_an_overwrite(phone) -> None:
    """P1 = 00 adds a keyset: naming a KVN the card has is 6985. Taken as an add, it would
    replace that keyset without P1 naming it (and lift its failure count and block)."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    before = image(home, pid)
    assert _put(se, host, 0x00, 0x30) == b"\x69\x85"
    assert image(home, pid) == before
    assert _put(se, host, 0x00, 0x31)[-2:] == b"\x90\x00"  # a new KVN is added beside it
    assert set(cbor2.loads(image(home, pid))["keysets"]) == {0x30, 0x31}


def test_put_key_adds_at_most_four_keysets(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    for kvn in (0x31, 0x32, 0x33):
        assert _put(se, host, 0x00, kvn)[-2:] == b"\x90\x00"
    before = image(home, pid)
    assert _put(se, host, 0x00, 0x34) == b"\x6a\x84"
    assert image(home, pid) == before
    assert _put(se, host, 0x33, 0x34)[-2:] == b"\x90\x00"  # replacing one still may


@pytest.mark.parametrize("case", ["two-keys", "kid-2"])
def test_put_key_of_anything_but_a_whole_keyset_at_kid_1_is_refused(phone, case) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    before = image(home, pid)
    if case == "two-keys":
        assert _put(se, host, 0x30, 0x31, [os.urandom(16)] * 2) == b"\x6a\x80"
    else:
        assert _put(se, host, 0x30, 0x31, first_key_id=2) == b"\x6a\x86"
    assert image(home, pid) == before


def test_put_key_replacing_a_kvn_the_card_lacks_is_6a88(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    before = image(home, pid)
    assert _put(se, host, 0x35, 0x36) == b"\x6a\x88"
    assert image(home, pid) == before


def test_put_key_replacing_onto_another_existing_kvn_is_refused(phone) -> None:
    """Replacing 30 by keys numbered 31 while 31 exists would drop keyset 30 and overwrite
    31 in one command: 6985. Replacing a keyset under its own KVN is the ordinary rotation."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    assert _put(se, host, 0x00, 0x31)[-2:] == b"\x90\x00"
    before = image(home, pid)
    assert _put(se, host, 0x30, 0x31) == b"\x69\x85"
    assert image(home, pid) == before
    assert _put(se, host, 0x31, 0x31)[-2:] == b"\x90\x00"


def test_replacing_a_blocked_keyset_leaves_no_stale_block_or_count(phone) -> None:
    """Keyset 30 blocked by failures, replaced (from a session with keyset 31) by keys
    numbered 32: nothing is left about 30 in the blocked list or the failure counts."""
    from protocols.gp import StaticKeys

    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    k31 = [os.urandom(16)] * 3
    assert _put(se, host, 0x00, 0x31, k31)[-2:] == b"\x90\x00"
    se.reset()
    for _ in range(3):
        hc = os.urandom(8)
        iu = _initialize_update(se, hc)
        sm = SecureMessaging(derive_session_keys(FACTORY, hc, iu.card_challenge), 0x01)
        assert se.transmit(sm.wrap_command(CommandApdu(0x80, 0x82, 0x33, 0x00, bytes(8))).to_bytes()) == b"\x63\x00"
    assert cbor2.loads(image(home, pid))["blocked_kvns"] == [0x30]
    host = HostChannel(StaticKeys(*k31), 0x33, os.urandom(8), kvn=0x31)
    host.on_external_authenticate_response(se.transmit(host.on_initialize_update_response(
        se.transmit(host.initialize_update()))))
    assert _put(se, host, 0x30, 0x32, dek=k31[2])[-2:] == b"\x90\x00"
    st = cbor2.loads(image(home, pid))
    assert set(st["keysets"]) == {0x31, 0x32}
    assert st["blocked_kvns"] == [] and st["failed_authentications"] == {}


# -- card life cycle (SET STATUS P1 80) -------------------------------------------------------


def _life_cycle(home: Path, pid: str) -> int:
    return cbor2.loads(image(home, pid))["card_life_cycle"]


@pytest.mark.parametrize(("steps", "final"), [
    # SECURED -> LOCKED only with P2 7F; LOCKED -> SECURED only with P2 0F (GPCS 5.1.1, 11.10)
    ([("80F0800F", "6985")], 0x0F),  # unlock what is not locked
    ([("80F0807F", "9000"), ("80F0807F", "6985")], 0x7F),  # lock what is locked
    ([("80F0807F", "9000"), ("80F08007", "6A86")], 0x7F),  # back to INITIALIZED: no such move
    ([("80F0807F", "9000"), ("80F080FF", "6A86")], 0x7F),  # TERMINATED is not offered
    ([("80F08003", "6A86")], 0x0F),
    ([("80F0807F08" + "A000000151000000", "9000")], 0x7F),  # data, when given, is the ISD's AID
    ([("80F0807F06" + "F0AA00000101", "6A80")], 0x0F),  # another AID is not the card
])
def test_card_life_cycle_moves_only_between_secured_and_locked(phone, steps, final) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    for apdu, sw in steps:
        assert host.unwrap(se.transmit(host.wrap(bytes.fromhex(apdu)))).hex().upper() == sw, apdu
    assert _life_cycle(home, pid) == final


@pytest.mark.parametrize(("steps", "final"), [
    ([("83", "9000"), ("83", "6985")], 0x87),  # lock a locked application
    ([("83", "9000"), ("07", "9000")], 0x07),  # unlock gives the state back
    ([("0F", "9000"), ("07", "6985")], 0x0F),  # application-specific states only go forward
    ([("03", "6985")], 0x07),  # not back to INSTALLED
    ([("0B", "6985")], 0x07),  # b3..b1 must be 111 for an application-specific state
    ([("07", "6985")], 0x07),  # not to the state it has
])
def test_application_life_cycle_moves(phone, steps, final) -> None:
    from test_se_runtime import INST, install_apdu, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    for p2, sw in steps:
        assert send(se, host, bytes.fromhex(f"80F040{p2}06") + INST).hex().upper() == sw, p2
    apps = cbor2.loads(image(home, pid))["applications"]
    assert [a["life_cycle"] for a in apps] == [final]


def test_an_installed_application_gets_no_application_specific_state(phone) -> None:
    """Only a SELECTABLE (or later) application moves to an application-specific state;
    an INSTALLED one is made selectable by INSTALL [for make selectable] first."""
    from test_se_runtime import INST, install_apdu, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x04)) == b"\x00\x90\x00"
    assert send(se, host, bytes.fromhex("80F0400F06") + INST) == b"\x69\x85"
    assert [a["life_cycle"] for a in cbor2.loads(image(home, pid))["applications"]] == [0x03]


def test_locking_an_application_cuts_it_off_on_every_channel_that_selected_it(phone) -> None:
    """SET STATUS LOCKED (from the ISD on channel 0) while the application is selected on
    channel 1: channel 1's next command no longer reaches it (6A82), and it cannot be
    selected again until unlocked. Without the deselection a locked applet kept answering
    the channel that had it."""
    from test_se_runtime import INST, _installed_and_selected_on_channel_1, send

    se, host = _installed_and_selected_on_channel_1(phone)
    assert se.transmit(bytes.fromhex("8110000002CAFE00"))[-2:] == b"\x90\x00"
    assert send(se, host, bytes.fromhex("80F0408306") + INST) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("8110000002CAFE00")) == b"\x6a\x82"
    assert se.transmit(bytes.fromhex("01A4040006") + INST) == b"\x6a\x82"


# -- SELECT ---------------------------------------------------------------------------------


def test_select_with_the_sm_bit_is_refused_and_keeps_the_selection(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)
    assert se.transmit(bytes.fromhex("04A4040008A000000151000000")) == b"\x68\x82"
    assert host.unwrap(se.transmit(host.wrap(GET_STATUS)))[-2:] == b"\x90\x00"  # session kept


def test_select_by_aid_without_data_selects_the_isd(phone) -> None:
    from test_se_runtime import INST, install_apdu, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert se.transmit(bytes.fromhex("00A4040006") + INST) == b"\x90\x00"
    out = se.transmit(bytes.fromhex("00A40400"))
    assert out[-2:] == b"\x90\x00" and out[:2] == b"\x6f\x10"  # the ISD's FCI
    assert se.channels[0].selected == bytes.fromhex("A000000151000000")


def test_selecting_the_isd_deselects_the_application_the_channel_had(phone) -> None:
    """The application loses the channel (its deselect hook runs, clearing what it keeps
    per channel, such as a verified PIN) when the ISD is selected in its place."""
    from test_se_runtime import CLASSES, MOD, EchoApplet, _installed_and_selected_on_channel_1

    deselected: list[int] = []

    class Recording(EchoApplet):
        def deselect(self, ctx) -> None:  # noqa: ANN001
            deselected.append(ctx.channel)

    CLASSES[MOD] = Recording
    try:
        se, _host = _installed_and_selected_on_channel_1(phone)
        assert se.transmit(bytes.fromhex("01A4040008A000000151000000"))[-2:] == b"\x90\x00"
        assert deselected == [1]
        assert se.channels[1].selected == bytes.fromhex("A000000151000000")
    finally:
        CLASSES[MOD] = EchoApplet


def test_reselecting_the_isd_ends_its_session_and_what_the_session_left(phone) -> None:
    """SELECT of the ISD while it is selected starts afresh (GPCS 10.2: selecting a
    security domain ends its secure channel session): the next secured command has no
    session to verify it, the personalization target is forgotten, and so is the rest of
    a GET STATUS listing."""
    from test_se_runtime import INST, install_apdu, open_se, perso_apdu, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    for n in range(12):  # enough entries for a listing in pages
        assert send(se, host, install_apdu(aid=INST[:-1] + bytes([n]))) == b"\x00\x90\x00"
    assert send(se, host, "80F24002024F0000")[-2:] == b"\x63\x10"
    assert send(se, host, perso_apdu(INST[:-1] + b"\x01")) == b"\x00\x90\x00"
    assert se.transmit(bytes.fromhex("00A4040C08A000000151000000")) == b"\x90\x00"
    assert se.channels[0].session is None and se.channels[0].perso_target is None
    assert "get_status" not in se.channels[0].extra
    assert se.transmit(host.wrap(bytes.fromhex("80F24003024F0000"))) == b"\x69\x82"


def _recording_classes(select_answer=b"\x90\x00", select_raises=False, only_channel=None):
    from test_se_runtime import MOD, EchoApplet

    seen: list = []

    class Recording(EchoApplet):
        def select(self, p2, ctx):  # noqa: ANN001, ANN202
            seen.append(ctx)
            if only_channel is not None:  # selectable on that channel only
                if ctx.channel == only_channel:
                    return b"\x90\x00"
            if select_raises:
                raise RuntimeError("applet fault")
            return select_answer

        def process(self, apdu, ctx):  # noqa: ANN001, ANN202
            seen.append(ctx)
            return super().process(apdu, ctx)

    return {MOD: Recording}, seen


def _installed(home: Path, pid: str, classes):
    from test_se_runtime import INST, PACKAGES, install_apdu, send, session

    se = wallet_sim.open_secure_element(pid, home, applet_classes=classes, packages=PACKAGES)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    return se, host, INST


def test_selecting_an_application_over_the_isd_ends_the_isds_session(phone) -> None:
    """The ISD's open session does not pass to the application selected after it on the
    channel: the session ends, and the application is told no secure channel (else it
    would take plain commands as having come through one)."""
    pid, home = phone
    classes, seen = _recording_classes()
    se, host, inst = _installed(home, pid, classes)
    assert se.transmit(bytes.fromhex("00A4040006") + inst) == b"\x90\x00"
    assert se.channels[0].session is None
    assert se.transmit(bytes.fromhex("8010000002CAFE00"))[-2:] == b"\x90\x00"
    assert [c.secure_channel for c in seen] == [False, False]
    assert [c.security_level for c in seen] == [0, 0]


@pytest.mark.parametrize("how", ["refuses", "raises"])
def test_an_application_that_refuses_or_fails_its_select_is_not_selected(phone, how) -> None:
    pid, home = phone
    if how == "refuses":
        classes, _ = _recording_classes(select_answer=b"\x69\x85")
        want = b"\x69\x85"
    else:
        classes, _ = _recording_classes(select_raises=True)
        want = b"\x6f\x00"
    se, _host, inst = _installed(home, pid, classes)
    assert se.transmit(bytes.fromhex("00A4040006") + inst) == want
    assert se.channels[0].selected is None
    assert se.transmit(bytes.fromhex("8010000002CAFE00")) == b"\x6a\x82"  # nothing to route to


# -- MANAGE CHANNEL -------------------------------------------------------------------------


def test_manage_channel_with_the_sm_bit_is_refused(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(bytes.fromhex("0470000001")) == b"\x68\x82"
    assert set(se.channels) == {0}


def test_manage_channel_opens_only_channels_1_to_3_and_each_once(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    for p2 in ("04", "13", "FF"):
        assert se.transmit(bytes.fromhex(f"007000{p2}")) == b"\x6a\x86", p2
    assert se.transmit(bytes.fromhex("00700001")) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("00700001")) == b"\x6a\x86"  # already open
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x02\x90\x00"
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x03\x90\x00"
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x6a\x81"  # none left
    assert set(se.channels) == {0, 1, 2, 3}


def test_a_channel_opened_from_the_basic_channel_has_the_isd_whatever_channel_0_has(phone) -> None:
    """GPCS 11.1.2: MANAGE CHANNEL from the basic channel selects the ISD on the new one;
    from a supplementary channel, that channel's selection (the ISD too)."""
    from test_se_runtime import INST, install_apdu, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert se.transmit(bytes.fromhex("00A4040006") + INST) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    isd = bytes.fromhex("A000000151000000")
    assert se.channels[1].selected == isd
    assert se.transmit(bytes.fromhex("0170000001")) == b"\x02\x90\x00"  # from channel 1 (the ISD)
    assert se.channels[2].selected == isd


@pytest.mark.parametrize("how", ["refuses", "raises"])
def test_no_channel_opens_for_an_application_that_will_not_take_it(phone, how) -> None:
    """MANAGE CHANNEL from channel 1 (an application selected) selects that application on
    the new channel; if it refuses or fails, no channel opens (6985)."""
    pid, home = phone
    classes, _ = _recording_classes(select_answer=b"\x69\x85", select_raises=how == "raises", only_channel=1)
    se, _host, inst = _installed(home, pid, classes)
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    assert se.transmit(bytes.fromhex("01A4040006") + inst) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("0170000001")) == b"\x69\x85"
    assert set(se.channels) == {0, 1}


def test_manage_channel_close_without_a_number_closes_its_own_channel_and_never_the_basic_one(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    assert se.transmit(bytes.fromhex("00708000")) == b"\x6a\x81"  # the basic channel stays
    assert se.transmit(bytes.fromhex("01708000")) == b"\x90\x00"  # P2 00 on channel 1: itself
    assert set(se.channels) == {0}
    assert se.transmit(bytes.fromhex("00A4040008A000000151000000"))[-2:] == b"\x90\x00"


def test_manage_channel_close_deselects_and_refuses_what_is_not_open(phone) -> None:
    """Closing a channel deselects its application (its per-channel state is cleared by its
    deselect hook); closing a channel that is not open is 6881; P1 other than 00 / 80 6A86."""
    from test_se_runtime import MOD, EchoApplet

    deselected: list[int] = []

    class Recording(EchoApplet):
        def deselect(self, ctx) -> None:  # noqa: ANN001
            deselected.append(ctx.channel)

    pid, home = phone
    se, _host, inst = _installed(home, pid, {MOD: Recording})
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    assert se.transmit(bytes.fromhex("01A4040006") + inst) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("00708002")) == b"\x68\x81"
    assert se.transmit(bytes.fromhex("00704001")) == b"\x6a\x86"
    assert se.transmit(bytes.fromhex("00708001")) == b"\x90\x00"
    assert deselected == [1] and set(se.channels) == {0}


# -- SCP11 openings at the ISD (mutation testing, second round) ----------------------------


def _kloc_phone(home: Path, oce=None):  # noqa: ANN001, ANN202
    """A phone whose SE takes SCP11a from the OCEs of ``oce``'s KLOC CA (default: the
    installation's own TSM CA), its ISD selected."""
    from tsm.oce import kloc_certificate

    ca = oce.ca.public_key() if oce is not None else kloc_certificate(home).public_key()
    pid = wallet_sim.create_phone(home, kloc=ca)
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(bytes.fromhex("00A4040008A000000151000000"))[-2:] == b"\x90\x00"
    return se


def test_a_refused_internal_authenticate_still_ends_the_channels_open_session(phone) -> None:
    """INTERNAL AUTHENTICATE starts a new authentication on the channel: the session open
    there ends, as it does on INITIALIZE UPDATE, even when the card refuses the new one
    (6A88: KID 14 names no key). Else a refused opening would leave the old session
    running beside the new attempt."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    open_session(se)
    assert se.transmit(bytes.fromhex("8088011400")) == b"\x6a\x88"
    assert_no_session(se)


def test_an_se_without_an_scp11b_key_answers_internal_authenticate_6a88(phone) -> None:
    """An image made before SE makers certified a key (no ``scp11`` entry): INTERNAL
    AUTHENTICATE names no key (6A88), whatever its P1; it must not reach for the key's
    version number and fail inside the SE."""
    pid, home = phone
    path = home / "phones" / pid / "se.cbor"
    state = cbor2.loads(path.read_bytes())
    del state["scp11"]
    path.unlink()
    path.write_bytes(cbor2.dumps(state))
    se = wallet_sim.open_secure_element(pid, home)
    for p1 in ("00", "01"):
        assert se.transmit(bytes.fromhex(f"8088{p1}1300")) == b"\x6a\x88"


def test_perform_security_operation_ends_the_channels_open_session(tmp_path: Path) -> None:
    """PERFORM SECURITY OPERATION starts an SCP11a authentication: the SCP03 session open
    on the channel ends there (the OCE's chain is the first step of a new session)."""
    from tsm.oce import lab_oce

    se = _kloc_phone(tmp_path)
    open_session(se)
    pso = CommandApdu(0x80, 0x2A, 0x01, 0x10, lab_oce(tmp_path).certificates[0]).to_bytes()
    assert se.transmit(pso) == b"\x90\x00"
    assert_no_session(se)


def test_a_chain_interrupted_by_a_wrong_key_reference_is_forgotten(tmp_path: Path) -> None:
    """A PERFORM SECURITY OPERATION naming another CA key (6A88) in the middle of a chain
    forgets the certificates taken so far (specs/secure-element.md: any refusal forgets the
    chain): the leaf sent next stands alone under the CA-KLOC key and does not verify."""
    from test_gp_scp11a import Oce

    oce = Oce(intermediate=True)
    se = _kloc_phone(tmp_path, oce)
    mid, leaf = oce.chain
    assert se.transmit(CommandApdu(0x80, 0x2A, 0x01, 0x90, mid).to_bytes()) == b"\x90\x00"
    assert se.transmit(CommandApdu(0x80, 0x2A, 0x02, 0x90, mid).to_bytes()) == b"\x6a\x88"
    assert se.transmit(CommandApdu(0x80, 0x2A, 0x01, 0x10, leaf).to_bytes()) == b"\x69\x82"


def test_an_oce_chain_through_an_intermediate_ca_opens_scp11a_at_the_se(tmp_path: Path) -> None:
    """Amendment F: the OCE's chain may hold CA certificates between the CA-KLOC key and the
    OCE's; the SE collects them across PERFORM SECURITY OPERATIONs (P2 b8 set while more
    follow) and verifies the whole, so a two-certificate chain opens SCP11a. A card that
    started over at each certificate would verify the leaf alone under the CA-KLOC key."""
    from test_gp_scp11a import Oce, _sd_key

    from protocols.gp.scp03 import HostState
    from protocols.gp.scp11 import Scp11aHost

    oce = Oce(intermediate=True)
    se = _kloc_phone(tmp_path, oce)
    host = Scp11aHost(_sd_key(se, tmp_path), 0x01, oce_certificates=oce.chain, oce_exchange=oce.exchange)
    for apdu in host.certificate_commands():
        host.on_certificate_response(se.transmit(apdu))
    host.on_mutual_authenticate_response(se.transmit(host.mutual_authenticate()))
    assert host.state is HostState.OPEN
    assert host.unwrap(se.transmit(host.wrap(bytes.fromhex("80CA00E000"))))[-2:] == b"\x90\x00"


def test_after_the_ca_kloc_key_changes_each_channel_verifies_its_next_chain_under_the_new_key(
        tmp_path: Path) -> None:
    """The issuer replaces the CA-KLOC key (PUT KEY, here on channel 0): "from the next
    chain on, only the new CA's OCEs open SCP11a" (specs/secure-element.md), also on a
    channel that took a chain before, verified or refused. A channel that kept what it had
    collected under the old key (a verified chain's collector, or a refused one's) would
    let the retired CA's OCE in through it."""
    from test_gp_scp11a import Oce, _point

    from protocols.gp.keys import put_ec_public_key_command

    ca1, ca2 = Oce(), Oce()
    se = _kloc_phone(tmp_path, ca1)
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"

    def pso(kvn: int, der: bytes) -> bytes:
        return se.transmit(CommandApdu(0x81, 0x2A, kvn, 0x10, der).to_bytes())  # on channel 1

    def rotate(old: int, new: int, oce: Oce) -> None:
        host = open_session(se)
        r = host.unwrap(se.transmit(host.wrap(put_ec_public_key_command(old, new, 0x10, _point(oce.ca)).to_bytes())))
        assert r == bytes([new]) + b"\x90\x00"

    # channel 1: a refused certificate (not DER), then the CA changes: CA 1's OCE is refused
    assert pso(1, b"\x30\x03\x02\x01\x01") == b"\x6a\x80"
    rotate(1, 2, ca2)
    assert pso(2, ca1.chain[0]) == b"\x69\x82"
    # channel 1: CA 2's OCE verified, then the CA changes back: CA 2's OCE is refused
    assert pso(2, ca2.chain[0]) == b"\x90\x00"
    rotate(2, 3, ca1)
    assert pso(3, ca2.chain[0]) == b"\x69\x82"
    assert pso(3, ca1.chain[0]) == b"\x90\x00"


@pytest.mark.parametrize("change", ["new CA-KLOC key", "allowlist without the OCE"])
def test_a_chain_verified_before_the_ca_kloc_key_or_its_allowlist_changes_opens_no_session(
        tmp_path: Path, change: str) -> None:
    """A channel holding an OCE chain verified under the CA-KLOC key, when the issuer then
    replaces that key (PUT KEY) or retires the OCE's certificate (the allowlist, STORE
    DATA) on another channel: the retired OCE's MUTUAL AUTHENTICATE on the first channel is
    6982, as its chain would be if sent again, and leaves no session. Before, the chain
    verified under the old trust opened SCP11a on that channel after the change."""
    from cryptography import x509
    from test_gp_scp11a import Oce, _point, _sd_key

    from protocols.gp.keys import put_ec_public_key_command
    from protocols.gp.scp11 import Scp11aHost, allowlist_data

    old, new = Oce(), Oce()
    se = _kloc_phone(tmp_path, old)
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    on_channel_1 = Scp11aHost(_sd_key(se, tmp_path), 0x01, oce_certificates=old.chain, oce_exchange=old.exchange)
    for apdu in on_channel_1.certificate_commands():
        on_channel_1.on_certificate_response(se.transmit(bytes([apdu[0] | 0x01]) + apdu[1:]))
    host = open_session(se)  # the issuer, on channel 0
    if change == "new CA-KLOC key":
        command = put_ec_public_key_command(1, 2, 0x10, _point(new.ca))
    else:
        leaf = x509.load_der_x509_certificate(old.chain[-1]).serial_number
        command = CommandApdu(0x80, 0xE2, 0x90, 0x00, allowlist_data(0x10, 1, [leaf + 1]))
    assert host.unwrap(se.transmit(host.wrap(command.to_bytes())))[-2:] == b"\x90\x00"
    mutual = on_channel_1.mutual_authenticate()
    assert se.transmit(bytes([mutual[0] | 0x01]) + mutual[1:]) == b"\x69\x82"
    assert se.channels[1].session is None


# -- the runtime's transmit path (mutation testing, second round) --------------------------


def test_malformed_apdus_and_class_ff_are_refused_by_the_runtime(phone) -> None:
    """ISO/IEC 7816-4 5.1: a command whose length fields do not match its bytes is 6700;
    CLA FF is invalid (5.4.1: 6E00), not a class of the further interindustry layout
    naming channel 19."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(b"\x80\xca") == b"\x67\x00"
    assert se.transmit(bytes.fromhex("00A4040005A0")) == b"\x67\x00"
    assert se.transmit(bytes.fromhex("FFCA9F7F00")) == b"\x6e\x00"


def test_get_response_manage_channel_and_select_are_interindustry_plain_commands_only(phone) -> None:
    """GET RESPONSE (C0), MANAGE CHANNEL (70) and SELECT (A4 04) are the runtime's in an
    interindustry class without secure messaging (ISO/IEC 7816-4 5.4.1); with CLA 80 or
    the SM bit they are the ISD's, which knows no such GP command (6D00) or has no session
    to verify them (6982). So a proprietary C0 does not hand out what a 61xx left (it drops
    it, as any other command does), and 80 70 opens no channel."""
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    assert se.transmit(bytes.fromhex("80CA9F7F05"))[-2:] == b"\x61\x28"
    assert se.transmit(bytes.fromhex("80C0000028")) == b"\x6d\x00"
    assert se.transmit(bytes.fromhex("00C0000028")) == b"\x69\x85"  # the rest was dropped
    assert se.transmit(bytes.fromhex("80CA9F7F05"))[-2:] == b"\x61\x28"
    assert se.transmit(bytes.fromhex("04C0000028")) == b"\x69\x82"
    assert se.transmit(bytes.fromhex("8070000001")) == b"\x6d\x00"
    assert set(se.channels) == {0}
    assert se.transmit(bytes.fromhex("80A4040008A000000151000000")) == b"\x6d\x00"


def test_only_select_by_df_name_is_the_runtimes_select(phone) -> None:
    """The runtime takes SELECT with P1 04 (by DF name, the AID) only: another instruction
    with P1 04 (here one whose P1-P2 is an offset, as READ BINARY's is) and a SELECT by
    file identifier (P1 02, an applet's EF) go to the application selected on the channel.
    Taken for the runtime's SELECT, the first would select the ISD in the applet's place
    (no AID in its data) and the second answer 6A82."""
    from test_se_runtime import _installed_and_selected_on_channel_1

    se, _host = _installed_and_selected_on_channel_1(phone)
    assert se.transmit(bytes.fromhex("01B0040002CAFE")) == bytes.fromhex("CAFE01") + b"\x90\x00"
    assert se.transmit(bytes.fromhex("01A4020C020001")) == bytes.fromhex("000101") + b"\x90\x00"
    assert se.channels[1].selected == bytes.fromhex("F0AA00000101")


@pytest.mark.parametrize("apdu", ["1170000001", "11A4040008A000000151000000"])
def test_manage_channel_and_select_refuse_chaining_on_an_applications_channel_too(phone, apdu) -> None:
    """The runtime takes no command chaining (6884) for MANAGE CHANNEL and SELECT whatever
    is selected on the channel they come on; on a channel holding an application, the
    chained MANAGE CHANNEL opens no channel and the chained SELECT keeps the selection."""
    from test_se_runtime import INST, _installed_and_selected_on_channel_1

    se, _host = _installed_and_selected_on_channel_1(phone)
    assert se.transmit(bytes.fromhex(apdu)) == b"\x68\x84"
    assert set(se.channels) == {0, 1} and se.channels[1].selected == INST


def test_a_second_secure_element_object_sees_what_another_wrote_before_it_answers(phone) -> None:
    """Two processes (two SecureElement objects) on one phone's SE: each command first
    reloads an image another wrote since (like a re-inserted card), so the second sees the
    applet the first installed, and its next write cannot put the stale registry back."""
    from test_se_runtime import INST, install_apdu, open_se, send, session

    pid, home = phone
    first, second = open_se(pid, home), open_se(pid, home)
    host = session(first)
    assert send(first, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert second.transmit(bytes.fromhex("00A4040006") + INST) == b"\x90\x00"
    host = session(second)
    assert send(second, host, "80F24002024F0000")[-2:] == b"\x90\x00"
    assert open_se(pid, home).app_record(INST) is not None


def test_an_applet_answer_without_a_status_word_is_an_applet_fault(phone) -> None:
    """An applet's answer must end in SW1 SW2 (ISO/IEC 7816-4 5.1); one byte is not an
    answer, and the runtime answers 6F00 for it (the JCRE's answer to an applet fault)."""
    from test_se_runtime import MOD, EchoApplet

    class Broken(EchoApplet):
        def process(self, apdu, ctx):  # noqa: ANN001, ANN202
            return b"\x90"

    pid, home = phone
    se, _host, inst = _installed(home, pid, {MOD: Broken})
    assert se.transmit(bytes.fromhex("00A4040006") + inst) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("8010000002CAFE00")) == b"\x6f\x00"


def test_an_applet_fault_drops_what_the_failed_command_half_did(phone) -> None:
    """An exception inside the applet (6F00) loses what the command changed in the
    applet's object before it: the object is rebuilt from the image at its next use, so
    the torn state is neither answered from nor written to NVM."""
    from test_se_runtime import MOD, EchoApplet

    class Tearing(EchoApplet):
        def process(self, apdu, ctx):  # noqa: ANN001, ANN202
            self.blocks.append(b"torn")
            if apdu[1] == 0x66:
                raise RuntimeError("applet fault half way")
            return bytes([len(self.blocks)]) + b"\x90\x00"

    pid, home = phone
    se, _host, inst = _installed(home, pid, {MOD: Tearing})
    assert se.transmit(bytes.fromhex("00A4040006") + inst) == b"\x90\x00"
    before = image(home, pid)
    assert se.transmit(bytes.fromhex("8066000000")) == b"\x6f\x00"
    assert image(home, pid) == before
    assert se.transmit(bytes.fromhex("8010000000")) == b"\x01\x90\x00"  # one block: this command's


def test_a_deleted_instances_personalization_target_is_not_inherited_by_a_new_one(phone) -> None:
    """INSTALL [for personalization] names an instance for the session's STORE DATA; once
    that instance is deleted (from another channel), the channel has no target (6985), even
    after an instance with the same AID is installed again: the new one gets STORE DATA
    only after its own INSTALL [for personalization] (specs/secure-element.md)."""
    from test_se_runtime import INST, install_apdu, open_se, perso_apdu, send

    pid, home = phone
    se = open_se(pid, home)
    host0 = open_session(se)
    assert send(se, host0, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    host1 = HostChannel(FACTORY, 0x33, os.urandom(8), sd_aid=bytes.fromhex("A000000151000000"), channel=1)
    host1.on_external_authenticate_response(se.transmit(host1.on_initialize_update_response(
        se.transmit(host1.initialize_update()))))
    assert send(se, host1, perso_apdu(cla=0x81)) == b"\x00\x90\x00"
    assert send(se, host0, b"\x80\xe4\x00\x00\x08\x4f\x06" + INST) == b"\x00\x90\x00"
    assert send(se, host0, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert send(se, host1, "81E2000003AABBCC") == b"\x69\x85"
    assert se.applet(INST).blocks == []


# -- INSTALL and DELETE (mutation testing, second round) -----------------------------------


def _install_body(elf: bytes, module: bytes, aid: bytes, priv: bytes = b"\x00", params: bytes = b"\xc9\x00",
                  token: bytes = b"") -> bytes:
    return b"".join(bytes([len(x)]) + x for x in (elf, module, aid, priv, params, token))


@pytest.mark.parametrize(("p1p2", "body", "sw"), [
    ("0C01", None, b"\x6a\x86"),  # P2 is 00 in every INSTALL (GPCS 11.5)
    ("0C00", "aid4", b"\x6a\x80"),  # an AID is 5 to 16 bytes (ISO/IEC 7816-5)
    ("0C00", "aid17", b"\x6a\x80"),
    ("0C00", "priv2", b"\x6a\x80"),  # privileges are 1 or 3 bytes (GPCS 11.5)
    ("0C00", "five-fields", b"\x6a\x80"),  # no install token length
    ("0C00", "overrun", b"\x6a\x80"),  # a length running past the data
    ("0C00", "trailing", b"\x6a\x80"),
    ("0C00", "no-class", b"\x6a\x88"),  # a module of the load file the SE has no code for
    ("0C00", "isd-aid", b"\x69\x85"),  # the ISD's AID is taken
])
def test_install_refuses_what_the_registry_cannot_hold(phone, p1p2, body, sw) -> None:
    """INSTALL [for install] (GPCS 11.5): P2 00, the fields as LV pairs and nothing more,
    an instance AID of 5 to 16 bytes that is not the ISD's, privileges of 1 or 3 bytes, a
    module the SE has code for. Each refusal leaves the registry and the image as they
    were."""
    from test_se_runtime import ELF, INST, MOD, PACKAGES, EchoApplet, send, session

    pid, home = phone
    mod2 = MOD[:-1] + b"\x02"
    se = wallet_sim.open_secure_element(pid, home, applet_classes={MOD: EchoApplet},
                                        packages={**PACKAGES, ELF: (MOD, mod2)})
    host = session(se)
    data = {
        None: _install_body(ELF, MOD, INST),
        "aid4": _install_body(ELF, MOD, INST[:4]),
        "aid17": _install_body(ELF, MOD, INST + bytes(11)),
        "priv2": _install_body(ELF, MOD, INST, priv=b"\x00\x00"),
        "five-fields": _install_body(ELF, MOD, INST)[:-1],
        "overrun": _install_body(ELF, MOD, INST)[:-1] + b"\x05",
        "trailing": _install_body(ELF, MOD, INST) + b"\x00",
        "no-class": _install_body(ELF, mod2, INST),
        "isd-aid": _install_body(ELF, MOD, bytes.fromhex("A000000151000000")),
    }[body]
    before = image(home, pid)
    assert send(se, host, bytes.fromhex("80E6" + p1p2) + bytes([len(data)]) + data + b"\x00") == sw
    assert send(se, host, "80F24002024F0000") == b"\x6a\x88"  # no application
    assert image(home, pid) == before


def test_an_instance_cannot_take_a_load_files_aid(phone) -> None:
    """An AID names one entry of the GlobalPlatform Registry, and load files are entries of
    it (GET STATUS P1 20 lists them): INSTALL [for install] of an instance named like a load
    file is refused (6985), as a duplicate instance AID is. Before, the SE installed it,
    and it could never be deleted: DELETE takes that AID for the load file (in ROM, 6985),
    with or without "and related objects"."""
    from test_se_runtime import ELF, MOD, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    before = image(home, pid)
    body = _install_body(ELF, MOD, ELF)
    assert send(se, host, bytes([0x80, 0xE6, 0x0C, 0x00, len(body)]) + body + b"\x00") == b"\x69\x85"
    assert send(se, host, "80F24002024F0000") == b"\x6a\x88"  # no application
    assert image(home, pid) == before


def test_install_takes_sixteen_applications_and_hands_the_instance_its_parameters(phone) -> None:
    """The SE holds at most 16 application instances (specs/secure-element.md: the 17th is
    6A84, not enough memory), named by AIDs of 5 to 16 bytes (both ends taken); each new
    instance gets the INSTALL parameters field through its install hook (GPCS 11.5.2.3.7,
    here C9 01 2A)."""
    from test_se_runtime import ELF, INST, MOD, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    aids = [INST[:-1] + bytes([n]) for n in range(14)] + [bytes.fromhex("F0AB000001"), bytes(range(0xF0, 0x100))]
    for aid in aids:
        body = _install_body(ELF, MOD, aid, params=b"\xc9\x01\x2a")
        assert send(se, host, bytes([0x80, 0xE6, 0x0C, 0x00, len(body)]) + body + b"\x00") == b"\x00\x90\x00"
    assert se.applet(INST[:-1] + b"\x05").params == b"\xc9\x01\x2a"
    before = image(home, pid)
    body = _install_body(ELF, MOD, INST[:-1] + b"\x10")
    assert send(se, host, bytes([0x80, 0xE6, 0x0C, 0x00, len(body)]) + body + b"\x00") == b"\x6a\x84"
    assert image(home, pid) == before


@pytest.mark.parametrize("data", ["", "4F05F0AA", "5F0106", "C001AA"])
def test_delete_data_that_names_no_aid_is_6a80(phone, data) -> None:
    """DELETE's data is 4F <AID> (GPCS 11.2): nothing, a TLV that runs past the data,
    or another tag first is malformed (6A80), and nothing is deleted."""
    from test_se_runtime import INST, install_apdu, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert send(se, host, CommandApdu(0x80, 0xE4, 0x00, 0x00, bytes.fromhex(data), 256).to_bytes()) == b"\x6a\x80"
    assert se.app_record(INST) is not None


def test_store_data_goes_to_the_personalization_target_whatever_its_data_begins_with(phone) -> None:
    """Once INSTALL [for personalization] named an application, every STORE DATA of the
    session is that application's (GPCS 11.11), even one whose data begins with A6, the tag
    that without a target makes it the ISD's own (the OCE allowlist or the CA's name)."""
    from test_se_runtime import INST, install_apdu, open_se, perso_apdu, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert send(se, host, perso_apdu()) == b"\x00\x90\x00"
    assert send(se, host, "80E2000004A6028300") == b"\x01\x90\x00"
    assert se.applet(INST).blocks == [bytes.fromhex("A6028300")]


@pytest.mark.parametrize(("apdu", "sw"), [
    ("80E40100084F06F0AA00000101", b"\x6a\x86"),  # P1 b7-b1 are RFU (GPCS 11.2)
    ("80E40001084F06F0AA00000101", b"\x6a\x86"),  # P2 is 00 or 80 (and related objects)
    ("80E400000A4F08A000000151000000", b"\x69\x85"),  # the ISD is never deleted
])
def test_delete_refuses_other_parameters_and_the_isd(phone, apdu, sw) -> None:
    """DELETE [card content] takes P1 00 and P2 00 / 80 (GPCS 11.2: anything else 6A86),
    and never the ISD (6985, conditions of use not satisfied: it is not "not found")."""
    from test_se_runtime import INST, install_apdu, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    before = image(home, pid)
    assert send(se, host, apdu) == sw
    assert se.app_record(INST) is not None and image(home, pid) == before


def test_store_data_to_a_target_locked_since_install_for_personalization_is_refused(phone) -> None:
    """A locked application takes no STORE DATA (6985): INSTALL [for personalization]
    refuses a locked instance, and one locked after it was named (SET STATUS in the same
    session) is refused at its next STORE DATA, the applet given nothing."""
    from test_se_runtime import INST, install_apdu, open_se, perso_apdu, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert send(se, host, perso_apdu()) == b"\x00\x90\x00"
    assert send(se, host, b"\x80\xf0\x40\x80\x06" + INST) == b"\x90\x00"
    assert send(se, host, "80E2000003AABBCC") == b"\x69\x85"
    assert se.applet(INST).blocks == []


def test_an_applet_fault_in_store_data_drops_what_the_block_half_did(phone) -> None:
    """An exception inside the applet's STORE DATA (6F00) loses the half-done change, as a
    card aborts the transaction: the applet object is rebuilt from the image, which is not
    written."""
    from test_se_runtime import (
        INST,
        MOD,
        PACKAGES,
        EchoApplet,
        install_apdu,
        perso_apdu,
        send,
        session,
    )

    class Tearing(EchoApplet):
        def store_data(self, p1, p2, data, ctx):  # noqa: ANN001, ANN202
            self.blocks.append(data)
            if data == b"\xff":
                raise RuntimeError("applet fault half way")
            return bytes([len(self.blocks)]) + b"\x90\x00"

    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home, applet_classes={MOD: Tearing}, packages=PACKAGES)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert send(se, host, perso_apdu()) == b"\x00\x90\x00"
    assert send(se, host, "80E2000001AA") == b"\x01\x90\x00"
    before = image(home, pid)
    assert send(se, host, "80E2000101FF") == b"\x6f\x00"
    assert image(home, pid) == before
    assert send(se, host, "80E2000201BB") == b"\x02\x90\x00"  # AA, BB: nothing of the torn block
    assert se.applet(INST).blocks == [b"\xaa", b"\xbb"]


@pytest.mark.parametrize(("p1", "target", "lock", "sw"), [
    (0x08, "other", False, b"\x6a\x88"),  # make selectable: no such instance
    (0x08, "inst", False, b"\x69\x85"),  # already SELECTABLE
    (0x08, "inst", True, b"\x69\x85"),  # LOCKED: make selectable does not unlock it
    (0x20, "other", False, b"\x6a\x88"),  # for personalization: no such instance
    (0x20, "inst", True, b"\x69\x85"),  # a locked instance is not personalised
    (0x02, "inst", False, b"\x6a\x86"),  # for load: load files are in ROM
])
def test_install_make_selectable_and_personalization_refusals(phone, p1, target, lock, sw) -> None:
    """INSTALL [for make selectable] takes an instance from INSTALLED to SELECTABLE only
    (a locked application leaves LOCKED by SET STATUS alone, else INSTALL would unlock what
    the issuer locked); [for personalization] names an existing, unlocked
    instance; other P1 values this SE does not take (6A86). Nothing changes on a refusal."""
    from test_se_runtime import INST, install_apdu, open_se, send, session

    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    if lock:
        assert send(se, host, b"\x80\xf0\x40\x80\x06" + INST) == b"\x90\x00"
    aid = INST if target == "inst" else INST[:-1] + b"\x77"
    body = b"\x00\x00" + bytes([len(aid)]) + aid + b"\x00\x00\x00"
    before = image(home, pid)
    assert send(se, host, bytes([0x80, 0xE6, p1, 0x00, len(body)]) + body) == sw
    assert image(home, pid) == before and se.channels[0].perso_target is None


def test_a_refused_mutual_authenticate_ends_the_open_session_and_takes_only_a_whole_chain(tmp_path: Path) -> None:
    """MUTUAL AUTHENTICATE starts a new authentication: the channel's open session ends
    even when it is refused. It needs a whole verified chain: after a certificate sent with
    'more follow' (P2 b8) the OCE's key is not known yet, and the answer is 6985 (no
    verified chain), never an attempt with no key."""
    from test_gp_scp11a import Oce, _ma

    oce = Oce(intermediate=True)
    se = _kloc_phone(tmp_path, oce)
    open_session(se)
    assert se.transmit(_ma()) == b"\x69\x85"
    assert_no_session(se)
    assert se.transmit(CommandApdu(0x80, 0x2A, 0x01, 0x90, oce.chain[0]).to_bytes()) == b"\x90\x00"
    assert se.transmit(_ma()) == b"\x69\x85"


def test_store_data_names_the_ca_kloc_keys_ca_at_the_isd(tmp_path: Path) -> None:
    """STORE DATA to the ISD (no personalization target) with A6 { 80 00 42 <SKI> 83 10 KVN }
    names the CA-KLOC key's CA (yubikit's store_ca_issuer): GET DATA FF33 answers its SKI
    from then on. P1 must have b8 (one block) and P2 be 00 (6A86); malformed data is
    6A80; a KLCC CA (80 01) or another key 6A88."""
    from protocols.gp.scp11 import ca_identifiers_data, ca_issuer_data

    se = _kloc_phone(tmp_path)
    host = open_session(se)
    ski = bytes(range(20))

    def store(data: bytes, p1: int = 0x90, p2: int = 0x00) -> bytes:
        return host.unwrap(se.transmit(host.wrap(CommandApdu(0x80, 0xE2, p1, p2, data).to_bytes())))

    before = image(tmp_path, se.path.parent.name)
    assert store(ca_issuer_data(0x10, 0x01, ski), p1=0x10) == b"\x6a\x86"
    assert store(ca_issuer_data(0x10, 0x01, ski), p2=0x01) == b"\x6a\x86"
    assert store(ca_issuer_data(0x10, 0x01, ski)[:-1]) == b"\x6a\x80"
    assert store(ca_issuer_data(0x10, 0x01, ski, kind=1)) == b"\x6a\x88"
    assert store(ca_issuer_data(0x10, 0x02, ski)) == b"\x6a\x88"
    assert store(ca_issuer_data(0x11, 0x01, ski)) == b"\x6a\x88"
    assert image(tmp_path, se.path.parent.name) == before
    assert store(ca_issuer_data(0x10, 0x01, ski)) == b"\x90\x00"
    assert host.unwrap(se.transmit(host.wrap(bytes.fromhex("80CAFF3300")))) \
        == ca_identifiers_data([(ski, 0x10, 0x01)]) + b"\x90\x00"


def test_an_se_without_a_ca_kloc_key_takes_one_by_put_key_p1_00_and_nothing_about_it_before(phone) -> None:
    """The allowlist and the CA's name belong to the CA-KLOC key: on an SE without one they
    answer 6A88 (the key is not found), not a fault; P2 other than 00 is 6A86 on any SE.
    PUT KEY of KID 10 adds the key with P1 00 only (P1 names the version replaced, and
    there is none: 6A88)."""
    from test_gp_scp11a import Oce, _point

    from protocols.gp.keys import put_ec_public_key_command
    from protocols.gp.scp11 import allowlist_data, ca_issuer_data

    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = open_session(se)

    def send(cmd: CommandApdu) -> bytes:
        return host.unwrap(se.transmit(host.wrap(cmd.to_bytes())))

    data = allowlist_data(0x10, 0x01, [5])
    assert send(CommandApdu(0x80, 0xE2, 0x90, 0x00, data)) == b"\x6a\x88"
    assert send(CommandApdu(0x80, 0xE2, 0x90, 0x01, data)) == b"\x6a\x86"
    assert send(CommandApdu(0x80, 0xE2, 0x90, 0x00, ca_issuer_data(0x10, 0x01, bytes(20)))) == b"\x6a\x88"
    point = _point(Oce().ca)
    assert send(put_ec_public_key_command(0x01, 0x01, 0x10, point)) == b"\x6a\x88"
    assert "kloc" not in cbor2.loads(image(home, pid))
    assert send(put_ec_public_key_command(0x00, 0x01, 0x10, point)) == b"\x01\x90\x00"
    assert send(put_ec_public_key_command(0x00, 0x02, 0x10, point)) == b"\x6a\x88"  # there is one now
    assert send(CommandApdu(0x80, 0xE2, 0x90, 0x00, data)) == b"\x90\x00"
