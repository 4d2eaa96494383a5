"""SCP03's own checks, one attack or defect each, found by mutation testing
(protocols/gp/scp03.py): a check that can be dropped or bent without any test failing is a
hole. Each test here fails when its check is removed and passes as the code stands."""

from __future__ import annotations

import os

import pytest

from protocols.gp.apdu import CommandApdu
from protocols.gp.errors import (
    ApduError,
    KeyError_,
    Scp03AuthenticationError,
    Scp03Error,
    Scp03PaddingError,
    Scp03ProtocolError,
    Scp03SecurityLevelError,
    Scp03StateError,
)
from protocols.gp.scp03 import (
    CardChannel,
    CardKeyset,
    HostChannel,
    InitializeUpdateResponse,
    SecureMessaging,
    SessionKeys,
    StaticKeys,
)

AID = bytes.fromhex("A000000151000000")
KEYS = StaticKeys(*(bytes(range(16)),) * 3)


def _card(i: int = 0x70, keys: StaticKeys = KEYS, **kw) -> CardChannel:
    return CardChannel(CardKeyset(0x30, keys), i=i, key_diversification_data=bytes(10), sd_aid=AID,
                       sequence_counter=kw.pop("sequence_counter", 7), **kw)


def _handshake(level: int, *, i: int = 0x70, card_challenge: bytes | None = None):
    n = 16 if i & 0x01 else 8
    host = HostChannel(KEYS, level, os.urandom(n), sd_aid=AID)
    card = _card(i, card_challenge=card_challenge)
    ea = host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    host.on_external_authenticate_response(card.external_authenticate(CommandApdu.parse(ea)))
    return host, card


# -- security levels ------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0x02, 0x10, 0x12, 0x20, 0x31, 0x23, 0xFF])
def test_a_security_level_outside_the_six_is_refused_on_both_sides(level: int) -> None:
    """C-DECRYPTION without C-MAC (02), R-MAC without C-MAC (10), R-ENC without R-MAC (23)...
    Amendment D allows 00 01 03 11 13 33 only: neither a host nor a card opens another."""
    with pytest.raises(Scp03SecurityLevelError):
        HostChannel(KEYS, level, os.urandom(8))
    with pytest.raises(Scp03SecurityLevelError):
        SecureMessaging(SessionKeys(bytes(16), bytes(16), bytes(16)), level)
    host = HostChannel(KEYS, 0x01, os.urandom(8), sd_aid=AID)
    card = _card()
    host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    # the host's own EXTERNAL AUTHENTICATE for level 01, its P1 rewritten: the card refuses
    # the level before it looks at the MAC
    ea = CommandApdu.parse(host._sm.wrap_command(  # noqa: SLF001 - forge with the right keys
        CommandApdu(0x80, 0x82, level, 0x00, bytes(8))).to_bytes())
    with pytest.raises(Scp03ProtocolError) as e:
        card.external_authenticate(ea)
    assert e.value.sw == 0x6A86
    assert not card.is_open


@pytest.mark.parametrize(("i", "level"), [(0x10, 0x11), (0x10, 0x13), (0x30, 0x33), (0x50, 0x13)])
def test_a_level_needing_r_mac_or_r_enc_is_refused_by_a_card_whose_i_lacks_it(i: int, level: int) -> None:
    """A card whose i parameter offers no R-MAC (20) or no R-ENC (40) opens no session that
    would need it (Amendment D 7.1.2.1): the card answers 6A86, and a host asking for it
    stops at the card's answer to INITIALIZE UPDATE."""
    host = HostChannel(KEYS, level, os.urandom(8), sd_aid=AID)
    card = _card(i)
    with pytest.raises(Scp03SecurityLevelError):
        host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    # a host that asked for a level the card has, then sends another P1 under a good C-MAC
    host = HostChannel(KEYS, 0x01, os.urandom(8), sd_aid=AID)
    card = _card(i)
    host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    ea = host._sm.wrap_command(CommandApdu(0x80, 0x82, level, 0x00, bytes(8)))  # noqa: SLF001
    with pytest.raises(Scp03ProtocolError) as e:
        card.external_authenticate(ea)
    assert e.value.sw == 0x6A86 and not card.is_open


def test_r_mac_without_an_s_rmac_key_is_refused() -> None:
    with pytest.raises(Scp03SecurityLevelError):
        SecureMessaging(SessionKeys(bytes(16), bytes(16), None), 0x11)
    SecureMessaging(SessionKeys(bytes(16), bytes(16), None), 0x03)  # C-MAC, C-DEC need none


@pytest.mark.parametrize("mac_len", [0, 4, 7, 9, 15, 32])
def test_a_mac_length_other_than_s8_or_s16_is_refused(mac_len: int) -> None:
    """A truncated MAC of fewer bytes is easier to forge: only 8 (S8) and 16 (S16)."""
    with pytest.raises(Scp03Error):
        SecureMessaging(SessionKeys(bytes(16), bytes(16), bytes(16)), 0x01, mac_len)


# -- static keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"", bytes(8), bytes(15), bytes(17), bytes(20)])
def test_static_keys_of_a_length_aes_does_not_have_are_refused(bad: bytes) -> None:
    for keys in ((bad, bad, bad), (bad, bytes(16), bytes(16)), (bytes(16), bad, bytes(16)),
                 (bytes(16), bytes(16), bad)):
        with pytest.raises(KeyError_):
            StaticKeys(*keys)


@pytest.mark.parametrize("lengths", [(16, 24, 16), (16, 16, 32), (32, 24, 32)])
def test_static_keys_of_different_lengths_are_refused(lengths: tuple[int, int, int]) -> None:
    """A keyset is one key length: an AES-256 K-ENC beside an AES-128 K-MAC is a mix-up."""
    with pytest.raises(KeyError_):
        StaticKeys(*(bytes(n) for n in lengths))


# -- INITIALIZE UPDATE response -------------------------------------------------------------


def _iu_response(i: int = 0x70) -> bytes:
    host = HostChannel(KEYS, 0x01, os.urandom(16 if i & 1 else 8), sd_aid=AID)
    return _card(i).initialize_update(CommandApdu.parse(host.initialize_update()))[:-2]


def test_a_card_answering_another_scp_than_03_is_refused() -> None:
    """A card that says SCP02 (or anything else) at offset 11 does not get SCP03's
    EXTERNAL AUTHENTICATE."""
    raw = bytearray(_iu_response())
    raw[11] = 0x02
    with pytest.raises(Scp03ProtocolError):
        InitializeUpdateResponse.parse(bytes(raw))
    host = HostChannel(KEYS, 0x01, os.urandom(8))
    host.initialize_update()
    with pytest.raises(Scp03ProtocolError):
        host.on_initialize_update_response(bytes(raw) + b"\x90\x00")
    assert host.state.value == "closed"


@pytest.mark.parametrize("i", [0x70, 0x71, 0x60])
@pytest.mark.parametrize("delta", [-3, -1, 1, 3])
def test_an_initialize_update_response_of_the_wrong_length_for_its_i_is_refused(i: int, delta: int) -> None:
    """i fixes the answer's length (S8/S16, sequence counter or not): a byte more or less
    is refused, not read at shifted offsets."""
    raw = _iu_response(i) if i & 0x10 else _iu_response_random(i)
    assert InitializeUpdateResponse.parse(raw).i == i
    bad = raw[:delta] if delta < 0 else raw + bytes(delta)
    with pytest.raises(Scp03ProtocolError):
        InitializeUpdateResponse.parse(bad)


def _iu_response_random(i: int) -> bytes:
    host = HostChannel(KEYS, 0x01, os.urandom(16 if i & 1 else 8))
    card = _card(i, card_challenge=os.urandom(16 if i & 1 else 8))
    return card.initialize_update(CommandApdu.parse(host.initialize_update()))[:-2]


def test_a_card_with_a_random_challenge_answers_no_sequence_counter_and_opens() -> None:
    """i without 10: the card's challenge is random (given by its runtime), its answer has
    no sequence counter, and the session opens at every level the card's i offers."""
    raw = _iu_response_random(0x60)
    iu = InitializeUpdateResponse.parse(raw)
    assert iu.sequence_counter is None and len(raw) == 13 + 16
    host, card = _handshake(0x33, i=0x60, card_challenge=os.urandom(8))
    plain = card.unwrap(CommandApdu.parse(host.wrap(bytes.fromhex("80CA006600"))))
    assert plain.to_bytes() == bytes.fromhex("80CA006600")
    assert host.unwrap(card.wrap_response(b"\x66\x00", 0x9000)) == b"\x66\x00\x90\x00"


# -- command encoding -----------------------------------------------------------------------


def test_a_wrapped_data_field_of_65535_bytes_is_sent_and_one_more_is_refused() -> None:
    host, card = _handshake(0x01)
    at_limit = CommandApdu(0x80, 0xE2, 0x80, 0x00, bytes(65535 - 8), extended=True).to_bytes()
    assert card.unwrap(CommandApdu.parse(host.wrap(at_limit))).data == bytes(65535 - 8)
    with pytest.raises(ApduError):
        host.wrap(CommandApdu(0x80, 0xE2, 0x80, 0x00, bytes(65536 - 8), extended=True).to_bytes())


@pytest.mark.parametrize(("data_len", "extended"), [(247, False), (248, True)])
def test_a_command_becomes_extended_exactly_when_its_wrapped_data_passes_255(data_len: int, extended: bool) -> None:
    """Lc' = data + 8-byte C-MAC: 255 still fits the short form, 256 needs the extended one."""
    host, card = _handshake(0x01)
    wrapped = CommandApdu.parse(host.wrap(CommandApdu(0x80, 0xE2, 0x80, 0x00, bytes(data_len)).to_bytes()))
    assert wrapped.uses_extended is extended
    assert card.unwrap(wrapped).data == bytes(data_len)


def test_an_extended_plain_command_stays_extended_once_wrapped() -> None:
    host, card = _handshake(0x01)
    plain = CommandApdu(0x80, 0xCA, 0x00, 0x66, b"\x01\x02", 256, extended=True)
    wrapped = host.wrap(plain.to_bytes())
    assert wrapped[4] == 0x00 and CommandApdu.parse(wrapped).uses_extended
    got = card.unwrap(CommandApdu.parse(wrapped))
    assert (got.data, got.ne) == (plain.data, 256)


@pytest.mark.parametrize("ne", [257, 1000, 65536])
@pytest.mark.parametrize("data", [b"", b"\x01"])
def test_a_short_command_asking_more_than_256_bytes_is_wrapped_extended_with_its_le(ne: int, data: bytes) -> None:
    """A short Le holds at most 256: the wrapped command keeps the host's Ne by going
    extended, not Ne mod 256 (which asks for a few bytes, or for 256)."""
    host, card = _handshake(0x01)
    wrapped = CommandApdu.parse(host.wrap_apdu(CommandApdu(0x80, 0xCA, 0x00, 0x66, data, ne)))
    assert wrapped.uses_extended and wrapped.ne == ne
    assert card.unwrap(wrapped).ne == ne


# -- responses ------------------------------------------------------------------------------


@pytest.mark.parametrize("sw", [0x6A80, 0x6982, 0x6F00])
def test_data_beside_an_error_status_word_is_refused_under_r_mac(sw: int) -> None:
    """R-MAC covers 9000/62xx/63xx answers only; an error status word travels bare. Data
    beside one is not the card's (nothing protects it): the host refuses it and closes,
    rather than hand unauthenticated bytes to its caller."""
    host, card = _handshake(0x11)
    card.unwrap(CommandApdu.parse(host.wrap(bytes.fromhex("80CA006600"))))
    assert card.wrap_response(b"\x01\x02", sw) == sw.to_bytes(2, "big")  # the card sends none
    with pytest.raises(Scp03Error):
        host.unwrap(b"\x01\x02" + sw.to_bytes(2, "big"))
    assert host.state.value == "closed"


def test_an_r_enc_body_that_is_not_whole_blocks_is_a_padding_error_that_closes() -> None:
    """A card (with the keys: its R-MAC verifies) answering 15 R-ENC bytes: the host says
    Scp03PaddingError and closes, not a ValueError out of the cipher that leaves it open."""
    host, card = _handshake(0x33)
    card.unwrap(CommandApdu.parse(host.wrap(bytes.fromhex("80CA006600"))))
    rmac_only = SecureMessaging(card.session_keys, 0x11, 8, card.mac_chaining_value)
    with pytest.raises(Scp03PaddingError):
        host.unwrap(rmac_only.wrap_response(bytes(15), 0x9000))
    assert host.state.value == "closed"


def test_c_dec_data_that_is_not_whole_blocks_is_a_padding_error_that_closes() -> None:
    """A host (with the keys: its C-MAC verifies) sending 15 bytes as C-DEC data: the card
    says Scp03PaddingError and ends the session; a ValueError out of the cipher would pass
    the SE's handler, which catches the package's errors, and leave the session open."""
    host, card = _handshake(0x03)
    cmac_only = SecureMessaging(card.session_keys, 0x01, 8, card.mac_chaining_value)
    wrapped = cmac_only.wrap_command(CommandApdu(0x80, 0xE2, 0x80, 0x00, bytes(15)))
    with pytest.raises(Scp03PaddingError):
        card.unwrap(wrapped)
    assert not card.is_open


def test_a_command_maced_over_a_class_byte_without_the_sm_bit_is_refused() -> None:
    """The card takes a command as secured only when its CLA says so (GPCS 11.1.4), even
    when the MAC was computed over the class byte as sent."""
    host, card = _handshake(0x01)
    sm = SecureMessaging(card.session_keys, 0x01, 8, card.mac_chaining_value)
    data = b"\x4f\x00"
    mac = sm._mac.cmac(sm.chaining_value + bytes.fromhex("80F28002") + bytes([len(data) + 8]) + data)  # noqa: SLF001
    with pytest.raises(Scp03Error):
        card.unwrap(CommandApdu(0x80, 0xF2, 0x80, 0x02, data + mac[:8], 256))
    assert not card.is_open


def test_a_session_ended_by_a_bad_mac_keeps_no_session_keys_or_chaining_value() -> None:
    host, card = _handshake(0x33)
    w = bytearray(host.wrap(bytes.fromhex("80F28002024F0000")))
    w[-2] ^= 1
    with pytest.raises(Scp03Error):
        card.unwrap(CommandApdu.parse(bytes(w)))
    assert card.session_keys is None and card._sm is None and card._s_mac is None  # noqa: SLF001
    assert card.mac_chaining_value == bytes(16) and card.encryption_counter == 0


# -- the host's handshake states ------------------------------------------------------------


def test_a_9000_to_an_external_authenticate_never_sent_opens_nothing() -> None:
    """A card (or a man in the middle) answering 9000 before the host has authenticated it
    does not open the channel."""
    host = HostChannel(KEYS, 0x33, os.urandom(8))
    with pytest.raises(Scp03StateError):
        host.on_external_authenticate_response(b"\x90\x00")
    assert host.state.value != "open"
    host.initialize_update()
    with pytest.raises(Scp03StateError):
        host.on_external_authenticate_response(b"\x90\x00")
    assert host.state.value != "open"


def test_a_replayed_initialize_update_answer_is_refused_once_the_host_moved_on() -> None:
    host = HostChannel(KEYS, 0x33, os.urandom(8), sd_aid=AID)
    card = _card()
    iu = card.initialize_update(CommandApdu.parse(host.initialize_update()))
    host.on_initialize_update_response(iu)
    with pytest.raises(Scp03StateError):
        host.on_initialize_update_response(iu)


@pytest.mark.parametrize("answer", [b"", b"\x90"])
def test_an_answer_without_a_status_word_fails_the_handshake(answer: bytes) -> None:
    host = HostChannel(KEYS, 0x33, os.urandom(8))
    host.initialize_update()
    with pytest.raises(Scp03ProtocolError):
        host.on_initialize_update_response(answer)
    assert host.state.value == "closed"


def test_a_host_whose_session_failed_keeps_no_session_state() -> None:
    host, card = _handshake(0x33)
    card.unwrap(CommandApdu.parse(host.wrap(bytes.fromhex("80CA006600"))))
    r = bytearray(card.wrap_response(b"\x66\x00", 0x9000))
    r[0] ^= 1
    with pytest.raises(Scp03Error):
        host.unwrap(bytes(r))
    assert host._sm is None  # noqa: SLF001
    assert host.mac_chaining_value == bytes(16) and host.encryption_counter == 0


def test_the_host_wraps_nothing_before_the_card_accepted_its_external_authenticate() -> None:
    """Between EXTERNAL AUTHENTICATE sent and its 9000 the host holds S-MAC (it MACed the
    EXTERNAL AUTHENTICATE) but the card has not authenticated it: no command is wrapped,
    and no answer unwrapped, until it has."""
    host = HostChannel(KEYS, 0x33, os.urandom(8), sd_aid=AID)
    card = _card()
    host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    assert host.state.value == "external_authenticate_sent"
    with pytest.raises(Scp03StateError):
        host.wrap(bytes.fromhex("80F28002024F0000"))
    with pytest.raises(Scp03StateError):
        host.wrap_apdu(CommandApdu(0x80, 0xF2, 0x80, 0x02, b"\x4f\x00"))
    with pytest.raises(Scp03StateError):
        host.unwrap(b"\x90\x00")


def test_the_host_refuses_a_plain_command_that_already_claims_secure_messaging() -> None:
    """A caller's CLA 84 would be MACed as though it were plain and reach the card with a
    class byte the host did not choose."""
    host, _ = _handshake(0x01)
    with pytest.raises(Scp03Error):
        host.wrap(bytes.fromhex("84F28002024F0000"))
    with pytest.raises(Scp03Error):
        host.wrap_pipelined(CommandApdu(0x84, 0xF2, 0x80, 0x02, b"\x4f\x00"))


@pytest.mark.parametrize(("session_channel", "cla"), [(0, 0x81), (1, 0x80), (1, 0x82), (4, 0xC1)])
def test_the_host_wraps_only_commands_for_its_sessions_logical_channel(session_channel: int, cla: int) -> None:
    """A session belongs to one logical channel: a command for another would spend this
    session's MAC chain on a channel whose card side has no session (or another one)."""
    host = HostChannel(KEYS, 0x01, os.urandom(8), channel=session_channel, sd_aid=AID)
    card = _card()
    ea = host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    host.on_external_authenticate_response(card.external_authenticate(CommandApdu.parse(ea)))
    with pytest.raises(Scp03Error):
        host.wrap(bytes([cla]) + bytes.fromhex("F28002024F0000"))


@pytest.mark.parametrize("answer", [b"", b"\x90"])
def test_an_answer_too_short_for_a_status_word_fails_the_open_session(answer: bytes) -> None:
    host, _ = _handshake(0x33)
    with pytest.raises(Scp03ProtocolError):
        host.unwrap(answer)
    assert host.state.value == "closed" and host._sm is None  # noqa: SLF001


def test_a_closed_host_session_wraps_nothing_and_keeps_no_keys() -> None:
    host, _ = _handshake(0x33)
    host.close()
    assert host.state.value == "closed"
    assert host._sm is None and host.mac_chaining_value == bytes(16)  # noqa: SLF001
    with pytest.raises(Scp03StateError):
        host.wrap(bytes.fromhex("80F28002024F0000"))


# -- the host's parameters and INITIALIZE UPDATE --------------------------------------------


@pytest.mark.parametrize("n", [0, 7, 9, 15, 17, 32])
def test_a_host_challenge_other_than_8_or_16_bytes_is_refused(n: int) -> None:
    with pytest.raises(Scp03Error):
        HostChannel(KEYS, 0x33, os.urandom(n))


@pytest.mark.parametrize(("kvn", "ok"), [(0x00, True), (0x7F, True), (0x80, False), (0xFF, False), (-1, False)])
def test_the_host_asks_only_for_a_kvn_in_00_to_7f(kvn: int, ok: bool) -> None:
    if ok:
        assert HostChannel(KEYS, 0x33, os.urandom(8), kvn).initialize_update()[2] == kvn
    else:
        with pytest.raises(Scp03Error):
            HostChannel(KEYS, 0x33, os.urandom(8), kvn)


def test_both_sides_give_the_keysets_k_dek_for_put_key() -> None:
    keys = StaticKeys(bytes(16), bytes(range(16)), bytes(range(16, 32)))
    assert HostChannel(keys, 0x33, os.urandom(8)).key_dek == keys.dek
    assert _card(keys=keys).key_dek == keys.dek


def test_the_host_sends_initialize_update_once() -> None:
    host = HostChannel(KEYS, 0x33, os.urandom(8))
    host.initialize_update()
    with pytest.raises(Scp03StateError):
        host.initialize_update()


def test_a_garbled_initialize_update_answer_with_9000_fails_the_handshake() -> None:
    host = HostChannel(KEYS, 0x33, os.urandom(8))
    host.initialize_update()
    with pytest.raises(Scp03ProtocolError):
        host.on_initialize_update_response(bytes(12) + b"\x90\x00")
    assert host.state.value == "closed"


@pytest.mark.parametrize(("host_n", "card_i"), [(8, 0x71), (16, 0x70)])
def test_an_s8_s16_mismatch_between_host_challenge_and_card_answer_is_refused(host_n: int, card_i: int) -> None:
    """The card answers in the mode its i says; a host that asked in the other mode stops
    there rather than derive cryptograms of the wrong length."""
    other = HostChannel(KEYS, 0x33, os.urandom(24 - host_n), sd_aid=AID)
    answer = _card(card_i).initialize_update(CommandApdu.parse(other.initialize_update()))
    host = HostChannel(KEYS, 0x33, os.urandom(host_n), sd_aid=AID)
    host.initialize_update()
    with pytest.raises(Scp03ProtocolError):
        host.on_initialize_update_response(answer)
    assert host.state.value == "closed"


def test_a_card_answering_another_kvn_than_asked_is_refused() -> None:
    """A host that asked for keyset 31 does not authenticate with the card's keyset 30
    (a card, or a man in the middle, steering it to the factory keys)."""
    host = HostChannel(KEYS, 0x33, os.urandom(8), kvn=0x31, sd_aid=AID)
    answer = _card().initialize_update(CommandApdu.parse(host.initialize_update()))  # the card's KVN is 30
    with pytest.raises(Scp03ProtocolError):
        host.on_initialize_update_response(answer)
    assert host.state.value == "closed"
    host = HostChannel(KEYS, 0x33, os.urandom(8), kvn=0x30, sd_aid=AID)  # asked for: accepted
    host.on_initialize_update_response(_card().initialize_update(CommandApdu.parse(host.initialize_update())))


@pytest.mark.parametrize(("card_i", "ok"), [(0x70, True), (0x60, False), (0x30, False)])
def test_a_host_requiring_an_i_refuses_a_card_offering_another(card_i: int, ok: bool) -> None:
    """``required_i``: a TSM that knows its SE offers i = 70 refuses a card downgraded to
    a random challenge or to fewer response protections."""
    host = HostChannel(KEYS, 0x01, os.urandom(8), required_i=0x70)
    card = _card(card_i, card_challenge=None if card_i & 0x10 else os.urandom(8))
    answer = card.initialize_update(CommandApdu.parse(host.initialize_update()))
    if ok:
        host.on_initialize_update_response(answer)
        return
    with pytest.raises(Scp03ProtocolError):
        host.on_initialize_update_response(answer)
    assert host.state.value == "closed"


# -- the host authenticates the card ----------------------------------------------------------


def test_a_false_card_is_refused_at_its_cryptogram_before_external_authenticate() -> None:
    """A card without the keyset (another SE, an emulator) answers INITIALIZE UPDATE with a
    cryptogram that does not verify: the host sends no EXTERNAL AUTHENTICATE (which would
    give the false card a host cryptogram) and closes."""
    host = HostChannel(KEYS, 0x33, os.urandom(8), sd_aid=AID)
    false_card = _card(keys=StaticKeys(*(bytes(range(1, 17)),) * 3))
    with pytest.raises(Scp03AuthenticationError):
        host.on_initialize_update_response(false_card.initialize_update(CommandApdu.parse(host.initialize_update())))
    assert host.state.value == "closed" and host.session_keys is None


@pytest.mark.parametrize("byte", [0, 7])
def test_a_card_cryptogram_changed_in_one_bit_is_refused(byte: int) -> None:
    host = HostChannel(KEYS, 0x33, os.urandom(8), sd_aid=AID)
    answer = bytearray(_card().initialize_update(CommandApdu.parse(host.initialize_update())))
    answer[13 + 8 + byte] ^= 0x01  # kdd 10, kvn, scp, i, challenge 8, then the cryptogram
    with pytest.raises(Scp03AuthenticationError):
        host.on_initialize_update_response(bytes(answer))
    assert host.state.value == "closed"


def test_a_card_challenge_not_derived_from_its_sequence_counter_is_refused() -> None:
    """i = 70: the card's challenge is KDF(K-ENC, counter || SD AID) (Amendment D 6.2.2.1). A
    host knowing the SD AID refuses a challenge the card chose otherwise (a replayed or
    steered one), even under a valid cryptogram; one without the SD AID cannot check it."""
    host = HostChannel(KEYS, 0x33, os.urandom(8), sd_aid=AID)
    steered = _card(card_challenge=os.urandom(8))  # i = 70, counter sent, challenge not from it
    answer = steered.initialize_update(CommandApdu.parse(host.initialize_update()))
    with pytest.raises(Scp03AuthenticationError):
        host.on_initialize_update_response(answer)
    assert host.state.value == "closed"
    blind = HostChannel(KEYS, 0x33, os.urandom(8))
    steered = _card(card_challenge=os.urandom(8))
    blind.on_initialize_update_response(steered.initialize_update(CommandApdu.parse(blind.initialize_update())))


@pytest.mark.parametrize("sw", [b"\x63\x00", b"\x69\x82", b"\x6a\x88"])
def test_a_card_refusing_external_authenticate_leaves_the_host_closed(sw: bytes) -> None:
    """Only 9000 opens the channel: a card that did not accept the host's cryptogram (6300)
    has no session, and a host that went on wrapping would talk to nobody."""
    host = HostChannel(KEYS, 0x33, os.urandom(8), sd_aid=AID)
    host.on_initialize_update_response(_card().initialize_update(CommandApdu.parse(host.initialize_update())))
    with pytest.raises(Scp03ProtocolError):
        host.on_external_authenticate_response(sw)
    assert host.state.value == "closed"
    with pytest.raises(Scp03StateError):
        host.wrap(bytes.fromhex("80F28002024F0000"))


def test_a_closed_card_session_answers_bare_and_unwraps_nothing() -> None:
    """After the session ends (a bad MAC, a new INITIALIZE UPDATE) the card's answers go
    out as they are, without a MAC made with keys it no longer holds."""
    host, card = _handshake(0x33)
    card.close()
    assert card.wrap_response(b"\x01", 0x9000) == b"\x01\x90\x00"
    assert card.wrap_response(b"", 0x6982) == b"\x69\x82"
    with pytest.raises(Scp03StateError):
        card.unwrap(CommandApdu.parse(host.wrap(bytes.fromhex("80F28002024F0000"))))


# -- the card's parameters ------------------------------------------------------------------


@pytest.mark.parametrize("kdd", [b"", bytes(9), bytes(11)])
def test_a_card_with_key_diversification_data_other_than_10_bytes_is_refused(kdd: bytes) -> None:
    with pytest.raises(Scp03Error):
        CardChannel(CardKeyset(0x30, KEYS), i=0x70, key_diversification_data=kdd, sd_aid=AID, sequence_counter=1)


@pytest.mark.parametrize(("counter", "ok"), [(0, True), (0xFFFFFF, True), (0x1000000, False), (-1, False)])
def test_the_card_takes_a_sequence_counter_of_three_bytes_only(counter: int, ok: bool) -> None:
    """The counter travels in 3 bytes: a value past FFFFFF would wrap to an old one and
    repeat its pseudo-random challenge (and session keys)."""
    if ok:
        assert _card(sequence_counter=counter).sequence_counter == counter
    else:
        with pytest.raises(Scp03Error):
            _card(sequence_counter=counter)


def test_a_card_before_its_handshake_is_closed_at_level_00_on_the_basic_channel() -> None:
    card = _card()
    assert not card.is_open and card.security_level == 0 and card.channel == 0
    assert card.session_keys is None


def test_the_card_answers_one_initialize_update_per_session() -> None:
    """A second INITIALIZE UPDATE to the same card session (after it answered one, or once
    open) is refused: the SE starts a new session for it, with a new counter value."""
    host = HostChannel(KEYS, 0x33, os.urandom(8), sd_aid=AID)
    card = _card()
    iu = CommandApdu.parse(host.initialize_update())
    card.initialize_update(iu)
    with pytest.raises(Scp03StateError):
        card.initialize_update(iu)


@pytest.mark.parametrize("raw", ["8082000008", "8450000008", "80CA000008"])
def test_the_card_takes_as_initialize_update_only_a_plain_ins_50(raw: str) -> None:
    card = _card()
    with pytest.raises(Scp03ProtocolError) as e:
        card.initialize_update(CommandApdu.parse(bytes.fromhex(raw) + os.urandom(8)))
    assert e.value.sw == 0x6E00 and not card.is_open


@pytest.mark.parametrize(("raw", "sw"), [("8050000108", 0x6A86), ("8050000007", 0x6700),
                                         ("8050000009", 0x6700), ("8050000010", 0x6700)])
def test_the_card_refuses_initialize_update_with_p2_or_a_challenge_length_it_does_not_take(raw: str, sw: int) -> None:
    """P2 is 00; an S8 card takes an 8-byte host challenge only (a short one would weaken
    the session keys' context)."""
    apdu = bytes.fromhex(raw)
    card = _card()
    with pytest.raises(Scp03ProtocolError) as e:
        card.initialize_update(CommandApdu.parse(apdu + os.urandom(apdu[4])))
    assert e.value.sw == sw and not card.is_open


def test_a_random_challenge_card_needs_its_challenge_of_the_modes_length() -> None:
    host = HostChannel(KEYS, 0x33, os.urandom(8))
    iu = CommandApdu.parse(host.initialize_update())
    with pytest.raises(Scp03Error):
        _card(0x60).initialize_update(iu)  # i without 10 and no challenge given
    for cc in (bytes(7), bytes(16)):
        with pytest.raises(Scp03Error):
            _card(0x60, card_challenge=cc).initialize_update(iu)


# -- the card's EXTERNAL AUTHENTICATE ----------------------------------------------------------


def test_a_replayed_external_authenticate_on_an_open_session_is_refused() -> None:
    """Replaying the recorded EXTERNAL AUTHENTICATE would restart the MAC chain where it
    stood after it, and let every command recorded since be replayed in turn."""
    host = HostChannel(KEYS, 0x01, os.urandom(8), sd_aid=AID)
    card = _card()
    ea = CommandApdu.parse(host.on_initialize_update_response(
        card.initialize_update(CommandApdu.parse(host.initialize_update()))))
    host.on_external_authenticate_response(card.external_authenticate(ea))
    first = CommandApdu.parse(host.wrap(bytes.fromhex("80F28002024F0000")))
    card.unwrap(first)
    with pytest.raises(Scp03StateError):
        card.external_authenticate(ea)
    assert not card.is_open
    with pytest.raises(Scp03StateError):
        card.unwrap(first)


def test_external_authenticate_before_initialize_update_closes_the_card() -> None:
    card = _card()
    with pytest.raises(Scp03StateError):
        card.external_authenticate(CommandApdu.parse(bytes.fromhex("8482330010") + bytes(16)))
    assert card.state.value == "closed"
    with pytest.raises(Scp03StateError):  # no INITIALIZE UPDATE on it afterwards either
        card.initialize_update(CommandApdu.parse(HostChannel(KEYS, 0x33, os.urandom(8)).initialize_update()))


@pytest.mark.parametrize("bad_p1", [0x02, 0x12])
def test_one_external_authenticate_per_initialize_update(bad_p1: int) -> None:
    """A refused EXTERNAL AUTHENTICATE (here its level) ends the session: the host does not
    get a second try at the same card challenge."""
    host = HostChannel(KEYS, 0x01, os.urandom(8), sd_aid=AID)
    card = _card()
    good = host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    bad = SecureMessaging(card.session_keys, 0x01).wrap_command(CommandApdu(0x80, 0x82, bad_p1, 0x00, bytes(8)))
    with pytest.raises(Scp03ProtocolError):
        card.external_authenticate(bad)
    assert card.state.value == "closed"
    with pytest.raises(Scp03StateError):
        card.external_authenticate(CommandApdu.parse(good))


@pytest.mark.parametrize("change", ["p2", "short", "long", "channel"])
def test_a_malformed_external_authenticate_is_6a80_and_ends_the_session(change: str) -> None:
    """P2 not 00, a host cryptogram of another length than the mode's, or an EXTERNAL
    AUTHENTICATE on another logical channel than its INITIALIZE UPDATE: 6A80 and the
    session is gone, though the C-MAC verifies (the host MACed what it sent)."""
    host = HostChannel(KEYS, 0x01, os.urandom(8), sd_aid=AID)
    card = _card()
    host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    cla, p2, data = 0x80, 0x00, bytes(8)
    if change == "p2":
        p2 = 0x01
    elif change == "short":
        data = bytes(4)
    elif change == "long":
        data = bytes(16)
    else:
        cla = 0x81
    ea = SecureMessaging(card.session_keys, 0x01).wrap_command(CommandApdu(cla, 0x82, 0x01, p2, data))
    with pytest.raises(Scp03ProtocolError) as e:
        card.external_authenticate(ea)
    assert e.value.sw == 0x6A80 and card.state.value == "closed"


@pytest.mark.parametrize("spoil", ["mac", "cryptogram"])
def test_a_failed_external_authenticate_leaves_no_second_guess_at_the_same_challenge(spoil: str) -> None:
    """A wrong C-MAC or a wrong host cryptogram closes the card session: guessing again
    needs a new INITIALIZE UPDATE, which the SE counts and a blocked keyset refuses."""
    host = HostChannel(KEYS, 0x33, os.urandom(8), sd_aid=AID)
    card = _card()
    good = host.on_initialize_update_response(card.initialize_update(CommandApdu.parse(host.initialize_update())))
    if spoil == "mac":
        bad = bytearray(good)
        bad[-1] ^= 1
        bad = bytes(bad)
    else:
        bad = SecureMessaging(card.session_keys, 0x01).wrap_command(
            CommandApdu(0x80, 0x82, 0x33, 0x00, bytes(8))).to_bytes()
    with pytest.raises(Scp03Error):
        card.external_authenticate(CommandApdu.parse(bad))
    assert card.state.value == "closed"
    with pytest.raises(Scp03StateError):
        card.external_authenticate(CommandApdu.parse(good))
    assert not card.is_open


def test_secure_messaging_at_level_00_passes_commands_and_answers_as_they_are():
    """Security level 00 (Amendment D 7.1.2.1: authenticated, no secure messaging): the card
    side unwraps nothing (a plain command comes out as it went in, never refused for its
    missing SM bit) and wraps nothing."""
    sm = SecureMessaging(SessionKeys(bytes(16), bytes(16), bytes(16)), 0x00)
    plain = CommandApdu(0x80, 0xF2, 0x80, 0x02, bytes.fromhex("4F00"), 256)
    assert sm.unwrap_command(plain) == plain
    assert sm.wrap_response(b"\x01\x02", 0x9000) == b"\x01\x02\x90\x00"
