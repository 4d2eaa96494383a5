"""Property tests: host and card SCP03 interoperate at every security level, key length and
mode; decoders fail only with the package's errors."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.gp import tlv
from protocols.gp.apdu import CommandApdu, ResponseApdu
from protocols.gp.errors import GpError, Scp03MacError, Scp03StateError
from protocols.gp.keys import parse_key_information_template, parse_put_key_data
from protocols.gp.scp03 import (
    CardChannel,
    CardKeyset,
    HostChannel,
    InitializeUpdateResponse,
    StaticKeys,
)

LEVELS = [0x00, 0x01, 0x03, 0x11, 0x13, 0x33]
AID = bytes.fromhex("A000000151000000")
FUZZ = settings(max_examples=200, deadline=None)


def _open(level: int, klen: int, s16: bool, channel: int = 0):
    keys = StaticKeys(os.urandom(klen), os.urandom(klen), os.urandom(klen))
    n = 16 if s16 else 8
    host = HostChannel(keys, level, os.urandom(n), kvn=0x30, channel=channel, sd_aid=AID)
    card = CardChannel(CardKeyset(0x30, keys), i=0x71 if s16 else 0x70, key_diversification_data=os.urandom(10),
                       sd_aid=AID, sequence_counter=5)
    r = card.initialize_update(CommandApdu.parse(host.initialize_update()))
    ea = host.on_initialize_update_response(r)
    host.on_external_authenticate_response(card.external_authenticate(CommandApdu.parse(ea)))
    return host, card


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("klen", [16, 24, 32])
@pytest.mark.parametrize("s16", [False, True])
def test_fixed_edge_lengths_interoperate(level: int, klen: int, s16: bool) -> None:
    host, card = _open(level, klen, s16)
    for n in (0, 15, 16, 17, 255):
        for ne in (None, 256):
            plain = CommandApdu(0x80, 0xE2, 0x90, 0x00, bytes(range(256))[:n] if n else b"", ne)
            got = card.unwrap(CommandApdu.parse(host.wrap(plain.to_bytes())))
            assert got.to_bytes() == plain.to_bytes()
            for rn in (0, 15, 16, 17, 255):
                data = os.urandom(rn)
                for sw in (0x9000, 0x6310):
                    # a response answers one command only; re-open the exchange per response
                    assert host.unwrap(card.wrap_response(data, sw)) == data + sw.to_bytes(2, "big")
                    card_cmd = CommandApdu.parse(host.wrap(CommandApdu(0x80, 0xCA, 0, 0x66, ne=256).to_bytes()))
                    card.unwrap(card_cmd)
            assert host.unwrap(card.wrap_response(b"", 0x6A88)) == b"\x6a\x88"


@given(level=st.sampled_from(LEVELS), klen=st.sampled_from([16, 24, 32]), s16=st.booleans(),
       channel=st.integers(0, 19),
       cmds=st.lists(st.tuples(st.integers(0, 0x7F), st.binary(max_size=300), st.one_of(st.none(), st.integers(1, 65536)),
                               st.binary(max_size=300), st.sampled_from([0x9000, 0x6200, 0x63C2, 0x6982])),
                     min_size=1, max_size=4))
@settings(max_examples=60, deadline=None)
def test_random_apdus_interoperate(level, klen, s16, channel, cmds) -> None:
    host, card = _open(level, klen, s16, channel)
    from protocols.gp.apdu import with_channel

    for ins, data, ne, rdata, sw in cmds:
        plain = CommandApdu(with_channel(0x80, channel), ins, 1, 2, data, ne)
        got = card.unwrap(CommandApdu.parse(host.wrap(plain.to_bytes())))
        assert (got.cla, got.ins, got.data, got.ne) == (plain.cla, plain.ins, plain.data, plain.ne)
        out = host.unwrap(card.wrap_response(rdata, sw))
        if level & 0x10 and sw not in (0x9000, 0x6200, 0x63C2):
            assert out == sw.to_bytes(2, "big")
        else:
            assert out == rdata + sw.to_bytes(2, "big")


@given(level=st.sampled_from(LEVELS), s16=st.booleans(),
       cmds=st.lists(st.tuples(st.integers(0, 0x7F), st.binary(max_size=300), st.binary(max_size=300),
                               st.sampled_from([0x9000, 0x6200, 0x63C2, 0x6A80])), min_size=1, max_size=6),
       order=st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_pipelined_commands_are_the_sequential_ones_and_their_answers_unwrap_in_any_order(
        level, s16, cmds, order) -> None:
    """Several commands wrapped before any answer comes (one GP SERAM order carries them):
    the card sees exactly the commands a one-at-a-time host sends, and each answer, taken
    in any order, unwraps with its own command's chaining value and counter."""
    host, card = _open(level, 16, s16)
    plains = [CommandApdu(0x80, ins, 1, 2, data) for ins, data, _, _ in cmds]
    batch = [host.wrap_pipelined(p) for p in plains]  # all wrapped before the card answers one
    answers = []
    for p, b, (_, _, rdata, sw) in zip(plains, batch, cmds, strict=True):
        got = card.unwrap(CommandApdu.parse(b.wrapped))  # the card's C-MAC chain accepts them
        assert (got.ins, got.data) == (p.ins, p.data)
        answers.append((card.wrap_response(rdata, sw), rdata, sw, b))
    shuffled = list(answers)
    order.shuffle(shuffled)
    for raw, rdata, sw, b in shuffled:
        out = host.unwrap_apdu(raw, command=b)
        want = b"" if level & 0x10 and sw == 0x6A80 else rdata
        assert (out.data, out.sw) == (want, sw)


@pytest.mark.parametrize("level", [0x01, 0x03, 0x11, 0x13, 0x33])
def test_tampered_command_closes_card_session(level: int) -> None:
    host, card = _open(level, 16, False)
    w = bytearray(host.wrap(bytes.fromhex("80F28002024F0000")))
    w[-2] ^= 1
    with pytest.raises(Scp03MacError):
        card.unwrap(CommandApdu.parse(bytes(w)))
    assert not card.is_open
    with pytest.raises(Scp03StateError):
        card.unwrap(CommandApdu.parse(host.wrap(bytes.fromhex("80F28002024F0000"))))


@pytest.mark.parametrize("level", [0x11, 0x13, 0x33])
def test_tampered_response_closes_host_session(level: int) -> None:
    host, card = _open(level, 16, False)
    card.unwrap(CommandApdu.parse(host.wrap(bytes.fromhex("80CA006600"))))
    r = bytearray(card.wrap_response(b"\x66\x00", 0x9000))
    r[0] ^= 1
    with pytest.raises(GpError):
        host.unwrap(bytes(r))
    with pytest.raises(Scp03StateError):
        host.wrap(bytes.fromhex("80CA006600"))


@given(st.binary(max_size=300))
@FUZZ
def test_decoders_raise_only_gp_errors(raw: bytes) -> None:
    for f in (CommandApdu.parse, ResponseApdu.parse, tlv.parse_all, InitializeUpdateResponse.parse,
              parse_key_information_template, lambda b: parse_put_key_data(b, b"\x00" * 16)):
        try:
            f(raw)
        except GpError:
            pass


@given(st.binary(max_size=300))
@FUZZ
def test_card_channel_never_crashes_on_bad_bytes(raw: bytes) -> None:
    keys = StaticKeys(b"\x40" * 16, b"\x40" * 16, b"\x40" * 16)
    card = CardChannel(CardKeyset(0x30, keys), i=0x70, key_diversification_data=b"\x00" * 10, sd_aid=AID,
                       sequence_counter=1)
    for step in (card.initialize_update, card.external_authenticate, card.unwrap):
        try:
            step(CommandApdu.parse(raw))
        except GpError:
            pass


@given(cla=st.integers(0, 0xFF), ins=st.integers(0, 0xFF), data=st.binary(max_size=70000).filter(lambda d: len(d) <= 65535),
       ne=st.one_of(st.none(), st.integers(1, 65536)), ext=st.booleans())
@settings(max_examples=100, deadline=None)
def test_apdu_roundtrip(cla, ins, data, ne, ext) -> None:
    a = CommandApdu(cla, ins, 0, 0, data, ne, ext)
    b = CommandApdu.parse(a.to_bytes())
    assert (b.data, b.ne, b.to_bytes()) == (a.data, a.ne, a.to_bytes())


@given(st.lists(st.tuples(st.sampled_from([0x4F, 0x9F70, 0xC5, 0x5F20, 0xDF8122]), st.binary(max_size=70000)), max_size=3))
@settings(max_examples=50, deadline=None)
def test_tlv_roundtrip(items) -> None:
    raw = b"".join(tlv.encode(t, v) for t, v in items)
    assert [(t.tag, t.value) for t in tlv.parse_all(raw)] == items
