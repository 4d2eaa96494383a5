"""An answer never exceeds what a short command asked for (ISO/IEC 7816-4 5.3.4): the first
Ne bytes (256 without a Le field) come with 61xx, the rest with GET RESPONSE on the same
channel; an extended Le takes it whole (specs/secure-element.md, "Response length")."""

from __future__ import annotations

import os

import pytest

import wallet_sim
from protocols.gp import HostChannel, StaticKeys
from protocols.gp.apdu import CommandApdu
from tsm import applets as tsm_applets
from tsm.gp_commands import install_for_install, install_for_personalization

ISD = bytes.fromhex("A000000151000000")
FACTORY = StaticKeys(*(bytes.fromhex("404142434445464748494A4B4C4D4E4F"),) * 3)
MDOC = tsm_applets.MDOC


def _session(se, channel: int = 0) -> HostChannel:
    host = HostChannel(FACTORY, 0x33, os.urandom(8), sd_aid=ISD, channel=channel)
    r = se.transmit(host.initialize_update())
    host.on_external_authenticate_response(se.transmit(host.on_initialize_update_response(r)))
    return host


def _collect(se, first: bytes, cla: int = 0x00, le: int = 0) -> tuple[bytes, list[bytes]]:
    """Follow 61xx with GET RESPONSE; the whole answer and each piece's status word."""
    data, sws = first[:-2], [first[-2:]]
    while sws[-1][0] == 0x61:
        r = se.transmit(bytes([cla, 0xC0, 0x00, 0x00, le or sws[-1][1]]))
        data, sws = data + r[:-2], [*sws, r[-2:]]
    return data + sws[-1], sws


@pytest.fixture
def se(tmp_path):
    pid = wallet_sim.create_phone(tmp_path)
    card = wallet_sim.open_secure_element(pid, tmp_path)
    host = _session(card)
    r = host.unwrap(card.transmit(host.wrap(install_for_install(MDOC.load_file_aid, MDOC.module_aid,
                                                                 MDOC.instance_aid).to_bytes())))
    assert r[-2:] == b"\x90\x00"
    card.reset()  # no session: plain commands from here on
    return card


def _generate(se, host: HostChannel, ne: int) -> bytes:
    assert host.unwrap(se.transmit(host.wrap(install_for_personalization(MDOC.instance_aid).to_bytes())))[-2:] \
        == b"\x90\x00"
    stream = tsm_applets.mdoc_generate([0, 1], os.urandom(32))
    return se.transmit(host.wrap(CommandApdu(0x80, 0xE2, 0x88, 0x00, stream, ne).to_bytes()))


def test_a_long_wrapped_answer_comes_in_61xx_pieces_and_unwraps_whole(se):
    host = _session(se)
    first = _generate(se, host, 256)
    assert first[-2] == 0x61 and len(first) == 256 + 2  # not the ~600 bytes the answer is
    whole, sws = _collect(se, first)
    assert sws[-1] == b"\x90\x00" and len(sws) >= 3
    plain = host.unwrap(whole)  # the R-MAC covers the answer as reassembled
    keys = tsm_applets.parse_mdoc_keys(tsm_applets.answer_of(plain[:-2], tsm_applets.MDOC_GENERATE, "GEN"))
    assert [k.slot for k in keys] == [0, 1]
    # GET RESPONSE is transport, not secure messaging: the session goes on
    assert host.unwrap(se.transmit(host.wrap(bytes.fromhex("80F24002024F0000"))))[-2:] == b"\x90\x00"


def test_an_extended_le_takes_the_answer_whole(se):
    host = _session(se)
    r = _generate(se, host, 65536)
    assert r[-2:] == b"\x90\x00" and len(r) > 258
    assert host.unwrap(r)[-2:] == b"\x90\x00"


def test_a_short_le_gets_that_many_bytes_then_the_rest(se):
    whole = se.transmit(bytes.fromhex("80CA9F7F00"))
    assert len(whole) == 45 + 2 and whole[-2:] == b"\x90\x00"
    first = se.transmit(bytes.fromhex("80CA9F7F05"))
    assert first == whole[:5] + b"\x61\x28"
    assert _collect(se, first)[0] == whole
    # an applet's answer alike: GET PUBLIC KEY (a 91-byte SPKI) with Le 10
    _generate(se, _session(se), 65536)
    se.reset()
    assert se.transmit(bytes.fromhex("00A4040C09") + MDOC.instance_aid) == b"\x90\x00"
    spki = se.transmit(bytes.fromhex("8012000000"))
    first = se.transmit(bytes.fromhex("8012000010"))
    assert first == spki[:16] + bytes([0x61, len(spki) - 2 - 16])
    got, sws = _collect(se, first, le=0x20)
    assert got == spki and sws == [b"\x61\x4b", b"\x61\x2b", b"\x61\x0b", b"\x90\x00"]


def test_get_response_refusals_and_what_drops_the_rest(se):
    first = se.transmit(bytes.fromhex("80CA9F7F05"))
    assert first[-2:] == b"\x61\x28"
    assert se.transmit(bytes.fromhex("00C0000100")) == b"\x6a\x86"  # P1-P2 not 0000: the rest kept
    assert se.transmit(bytes.fromhex("00C00000")) == b"\x67\x00"  # no Le
    r = se.transmit(bytes.fromhex("00C0000010"))
    assert r[-2:] == b"\x61\x18" and len(r) == 16 + 2
    assert se.transmit(bytes.fromhex("80CA00C100"))[-2:] == b"\x90\x00"  # another command...
    assert se.transmit(bytes.fromhex("00C0000000")) == b"\x69\x85"  # ...dropped the rest
    assert se.transmit(bytes.fromhex("00C0000000")) == b"\x69\x85"  # nothing ever left


def test_what_is_left_waits_on_its_own_channel(se):
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    assert se.transmit(bytes.fromhex("01A4040C08") + ISD) == b"\x90\x00"
    first = se.transmit(bytes.fromhex("81CA9F7F05"))
    assert first[-2:] == b"\x61\x28"
    assert se.transmit(bytes.fromhex("80CA00C100"))[-2:] == b"\x90\x00"  # channel 0's command
    rest = se.transmit(bytes.fromhex("01C0000028"))
    assert rest[-2:] == b"\x90\x00" and first[:-2] + rest == se.transmit(bytes.fromhex("80CA9F7F00"))


def test_an_extended_command_takes_its_answer_whole_even_with_a_smaller_le(se):
    """specs/secure-element.md: an extended command takes its answer whole; its Le (here
    0100, 256 bytes, less than the ~600-byte answer) does not cut it into 61xx pieces."""
    host = _session(se)
    assert host.unwrap(se.transmit(host.wrap(install_for_personalization(MDOC.instance_aid).to_bytes())))[-2:] \
        == b"\x90\x00"
    stream = tsm_applets.mdoc_generate([0, 1], os.urandom(32))
    r = se.transmit(host.wrap(CommandApdu(0x80, 0xE2, 0x88, 0x00, stream, 256, extended=True).to_bytes()))
    assert r[-2:] == b"\x90\x00" and len(r) > 258
    assert host.unwrap(r)[-2:] == b"\x90\x00"


@pytest.mark.parametrize(("apdu", "sw"), [("00C0010000", b"\x6a\x86"), ("00C0000001AA28", b"\x67\x00")])
def test_get_response_with_p1_or_a_data_field_is_refused_and_keeps_the_rest(se, apdu, sw):
    """GET RESPONSE is 0x C0 00 00 Le (ISO/IEC 7816-4 11.7.1): P1 other than 00 is 6A86,
    a data field (a case 4 command) 6700; either keeps what was left."""
    first = se.transmit(bytes.fromhex("80CA9F7F05"))
    assert first[-2:] == b"\x61\x28"
    assert se.transmit(bytes.fromhex(apdu)) == sw
    assert _collect(se, first)[0] == se.transmit(bytes.fromhex("80CA9F7F00"))
