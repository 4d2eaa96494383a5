"""Another SCP03 host talks to our secure element: Yubico's yubikit (yubikey-manager).

yubikit's ``SmartCardProtocol.init_scp`` is the SCP03 host Yubico ships for its own
secure elements (INITIALIZE UPDATE, card cryptogram check, EXTERNAL AUTHENTICATE at
security level 33, then C-MAC + C-DECRYPTION + R-MAC + R-ENCRYPTION on every command,
extended-length APDUs). Here it drives a factory-fresh phone's SE through nothing but
``transmit(apdu) -> response``, with the GlobalPlatform test keys the SE documents
(KVN 0x30): the Done-when of issue 3 ("an outside SCP03 host with those keys can open a
session at i=70, SL 33, and run GET STATUS") checked with a host that is not ours.

yubikit comes from the yubikey-manager wheel, installed without its dependencies (pyscard
needs a compiler and PC/SC headers, and the ``yubikit.core`` modules used here need only
``cryptography``): ``pip install --no-deps yubikey-manager==5.5.1``, as .ci/run does.
"""

from __future__ import annotations

import pytest

yubikit = pytest.importorskip(
    "yubikit.core.smartcard",
    reason="yubikit not installed: pip install --no-deps yubikey-manager==5.5.1 (as .ci/run does)")

from yubikit.core import TRANSPORT  # noqa: E402
from yubikit.core.smartcard import ApduError, SmartCardConnection, SmartCardProtocol  # noqa: E402
from yubikit.core.smartcard.scp import KeyRef, Scp03KeyParams, StaticKeys  # noqa: E402

import wallet_sim  # noqa: E402
from protocols.gp import tlv  # noqa: E402

ISD_AID = bytes.fromhex("A000000151000000")
TEST_KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")


class SeConnection(SmartCardConnection):
    """yubikit's connection interface over the SE's one method."""

    def __init__(self, transmit) -> None:  # noqa: ANN001
        self._transmit = transmit
        self.sent: list[bytes] = []

    @property
    def transport(self) -> TRANSPORT:
        return TRANSPORT.USB

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        resp = self._transmit(apdu)
        return resp[:-2], int.from_bytes(resp[-2:], "big")

    def close(self) -> None:
        pass


@pytest.fixture
def se(tmp_path):
    pid = wallet_sim.create_phone(tmp_path)
    return wallet_sim.open_secure_element(pid, tmp_path)


def _open(se, key: bytes = TEST_KEY, kvn: int = 0x30) -> tuple[SmartCardProtocol, SeConnection]:  # noqa: ANN001
    conn = SeConnection(se.transmit)
    proto = SmartCardProtocol(conn)
    proto.select(ISD_AID)
    proto.init_scp(Scp03KeyParams(KeyRef(0x01, kvn), StaticKeys(key, key, key)))
    return proto, conn


def test_yubikit_opens_sl33_with_the_test_keys_and_runs_get_status(se):
    proto, conn = _open(se)
    # EXTERNAL AUTHENTICATE asked for C-MAC, C-DEC, R-MAC and R-ENC (P1 = 33)
    assert any(a[1] == 0x82 and a[2] == 0x33 for a in conn.sent)
    isd = proto.send_apdu(0x80, 0xF2, 0x80, 0x02, b"\x4f\x00")  # GET STATUS, ISD, TLV format
    assert conn.sent[-1][0] & 0x04  # secure messaging indicated; the answer was R-ENC'd and R-MAC'd
    (entry,) = tlv.parse_all(isd)
    fields = {t.tag: t.value for t in tlv.parse_all(entry.value)}
    assert fields[0x4F] == ISD_AID
    # GET DATA: CPLC, card data, key information (the factory keyset KVN 0x30, AES-128)
    assert len(proto.send_apdu(0x80, 0xCA, 0x9F, 0x7F)) >= 42
    assert proto.send_apdu(0x80, 0xCA, 0x00, 0x66)[:1] == b"\x66"
    key_info = proto.send_apdu(0x80, 0xCA, 0x00, 0xE0)  # ENC, MAC, DEK: KID 1-3, KVN 30, AES (88), 16 bytes
    assert key_info == bytes.fromhex("E012" "C00401308810" "C00402308810" "C00403308810")


def test_every_command_of_a_session_keeps_the_chain(se):
    """Many commands in one session: the MAC chaining value and the encryption counter
    stay in step on both sides (any slip would end the session with 6982)."""
    proto, _conn = _open(se)
    for _ in range(40):
        assert proto.send_apdu(0x80, 0xF2, 0x80, 0x02, b"\x4f\x00")
        assert proto.send_apdu(0x80, 0xCA, 0x00, 0x66)


def test_wrong_keys_are_refused_by_the_card_and_count_as_a_failed_authentication(se):
    """A host with other keys gets a card cryptogram it cannot match (yubikit refuses
    before EXTERNAL AUTHENTICATE); an unknown KVN is 6A88, which yubikit reports as
    incorrect parameters."""
    with pytest.raises(ValueError, match="Incorrect SCP parameters"):
        _open(se, key=bytes(16))
    with pytest.raises(ValueError, match="Incorrect SCP parameters"):
        _open(se, kvn=0x3F)
    proto, _ = _open(se)  # the right keys still open a session
    assert proto.send_apdu(0x80, 0xF2, 0x80, 0x02, b"\x4f\x00")


def test_a_command_without_secure_messaging_in_a_session_ends_it(se):
    """Inside an SL 33 session a plain command (no C-MAC) is refused with 6982 and the
    session ends: the next wrapped command is refused too."""
    proto, conn = _open(se)
    plain = se.transmit(bytes.fromhex("80F28002024F00"))
    assert plain[-2:] == b"\x69\x82"
    with pytest.raises(ApduError) as refused:
        proto.send_apdu(0x80, 0xF2, 0x80, 0x02, b"\x4f\x00")
    assert refused.value.sw == 0x6982


def test_after_the_tsm_rotated_the_keys_yubikit_opens_the_diversified_keyset(home, monkeypatch):
    """A phone the TSM provisioned no longer answers to the test keys; with the keyset the
    TSM diversified for it (KVN 0x31, specs/tsm.md) Yubico's host opens SL 33 and GET
    STATUS lists the JPKI and mdoc applets the TSM installed."""
    import os

    from mcred.context import Context
    from mcred.provision import parse_holder, provision
    from tsm.keys import DIVERSIFIED_KVN, default_master_key
    from wallet_sim.se.store import key_diversification_data

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(ctx.home)
    holder = parse_holder({"family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
                           "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
                           "address": "東京都千代田区霞が関1-1", "prefecture": "東京都",
                           "municipality": "千代田区"})
    provision(ctx, pid, holder, key_type="p384", mdoc_batch=1)
    se = wallet_sim.open_secure_element(pid, ctx.home)
    with pytest.raises(ValueError, match="Incorrect SCP parameters"):
        _open(se)  # the factory keyset is gone
    assert se.transmit(bytes.fromhex("00A4040008") + ISD_AID)[-2:] == b"\x90\x00"
    cplc = se.transmit(bytes.fromhex("80CA9F7F00"))  # GET DATA CPLC needs no session
    assert cplc[-2:] == b"\x90\x00"
    kdd = key_diversification_data(cplc[3:-2])  # 9F7F 2A: the 42 CPLC bytes
    keys = default_master_key(ctx.home).se_keys(kdd)
    conn = SeConnection(se.transmit)
    proto = SmartCardProtocol(conn)
    proto.select(ISD_AID)
    proto.init_scp(Scp03KeyParams(KeyRef(0x01, DIVERSIFIED_KVN), StaticKeys(keys.enc, keys.mac, keys.dek)))
    apps = proto.send_apdu(0x80, 0xF2, 0x40, 0x02, b"\x4f\x00")  # applications, TLV format
    aids = {t.value for e in tlv.parse_all(apps) for t in tlv.parse_all(e.value) if t.tag == 0x4F}
    assert {bytes.fromhex("D392F000260100000001"), bytes.fromhex("F06D63726564020101")} <= aids
