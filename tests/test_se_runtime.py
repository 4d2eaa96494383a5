"""The GP-SE runtime seen from outside: an SCP03 host with the factory keys, card content
management, applets over logical channels, persistence and the phone API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import wallet_sim
from protocols.gp import HostChannel, StaticKeys
from protocols.gp.keys import put_key_command
from protocols.gp.tlv import parse_all
from wallet_sim.se.applet import Applet, CommandContext

ISD = bytes.fromhex("A000000151000000")
FACTORY = StaticKeys(*(bytes.fromhex("404142434445464748494A4B4C4D4E4F"),) * 3)
ELF = bytes.fromhex("F0AA000000")
MOD = bytes.fromhex("F0AA000001")
INST = bytes.fromhex("F0AA00000101")


class EchoApplet(Applet):
    """A tiny applet: echoes data, counts STORE DATA blocks, holds a 'private' secret."""

    MODULE_AID = MOD

    def __init__(self, instance_aid: bytes) -> None:
        super().__init__(instance_aid)
        self.blocks: list[bytes] = []
        self.secret = os.urandom(16)
        self.params = b""
        self.selected = 0

    def install(self, params: bytes) -> None:
        self.params = params

    def select(self, p2: int, ctx: CommandContext) -> bytes:
        self.selected += 1
        return b"\x90\x00"

    def process(self, apdu: bytes, ctx: CommandContext) -> bytes:
        return apdu[5:] + bytes([ctx.channel]) + b"\x90\x00"

    def store_data(self, p1: int, p2: int, data: bytes, ctx: CommandContext) -> bytes:
        if not ctx.secure_channel or not ctx.security_level & 0x02:
            return b"\x69\x82"
        self.blocks.append(data)
        return bytes([len(self.blocks)]) + b"\x90\x00"

    def snapshot(self) -> dict:
        return {"blocks": list(self.blocks), "secret": self.secret, "params": self.params}

    def restore(self, state: dict) -> None:
        self.blocks = list(state["blocks"])
        self.secret = state["secret"]
        self.params = state["params"]

    def describe(self) -> dict:
        return {"blocks": len(self.blocks)}


CLASSES = {MOD: EchoApplet}
PACKAGES = {ELF: (MOD,)}


def open_se(pid: str, home: Path):
    return wallet_sim.open_secure_element(pid, home, applet_classes=CLASSES, packages=PACKAGES)


def session(se, keys=FACTORY, level=0x33, kvn=0):
    host = HostChannel(keys, level, os.urandom(8), kvn=kvn, sd_aid=ISD)
    assert se.transmit(bytes.fromhex("00A4040008") + ISD)[-2:] == b"\x90\x00"
    r = se.transmit(host.initialize_update())
    r = se.transmit(host.on_initialize_update_response(r))
    host.on_external_authenticate_response(r)
    return host


def send(se, host, hexapdu: str | bytes) -> bytes:
    apdu = bytes.fromhex(hexapdu) if isinstance(hexapdu, str) else hexapdu
    return host.unwrap(se.transmit(host.wrap(apdu)))


def install_apdu(p1=0x0C, aid=INST, module=MOD, elf=ELF, params=b"\xc9\x00") -> bytes:
    body = b"".join(bytes([len(x)]) + x for x in (elf, module, aid, b"\x00", params, b""))
    return bytes([0x80, 0xE6, p1, 0x00, len(body)]) + body + b"\x00"


def perso_apdu(aid=INST, cla=0x80) -> bytes:
    """INSTALL [for personalization] of the application ``aid`` (GPCS 11.5.2.3.4)."""
    body = b"\x00\x00" + bytes([len(aid)]) + aid + b"\x00\x00\x00"
    return bytes([cla, 0xE6, 0x20, 0x00, len(body)]) + body


@pytest.fixture
def phone(tmp_path: Path) -> tuple[str, Path]:
    return wallet_sim.create_phone(tmp_path, model="test-phone"), tmp_path


def test_factory_phone_answers_outside_scp03_host(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = session(se, level=0x33)
    assert host.card is not None and host.card.i == 0x70 and host.card.kvn == 0x30
    out = send(se, host, "80F28002024F0000")
    assert out[-2:] == b"\x90\x00"
    entry = parse_all(out[:-2])[0]
    assert entry.tag == 0xE3 and entry.children()[0].value == ISD


def test_each_se_has_a_unique_identity(tmp_path: Path) -> None:
    a, b = wallet_sim.create_phone(tmp_path), wallet_sim.create_phone(tmp_path)
    kdds = set()
    for pid in (a, b):
        se = wallet_sim.open_secure_element(pid, tmp_path)
        host = HostChannel(FACTORY, 0x01, os.urandom(8))
        r = se.transmit(host.initialize_update())
        kdds.add(r[:10])
        cplc = se.transmit(bytes.fromhex("80CA9F7F00"))
        assert cplc[:3] == bytes.fromhex("9F7F2A") and cplc[-2:] == b"\x90\x00"
        assert cplc[3 + 12 : 3 + 16] == r[4:8]  # IC serial number is inside the KDD
    assert len(kdds) == 2
    assert wallet_sim.list_phones(tmp_path) == sorted([a, b])


@pytest.mark.parametrize("level", [0x01, 0x03, 0x11, 0x13, 0x33])
def test_get_data_objects(phone, level) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    host = session(se, level=level)
    for tag in ("9F7F", "0066", "00E0", "00C1"):
        out = send(se, host, f"80CA{tag}00")
        assert out[-2:] == b"\x90\x00", tag
        assert parse_all(out[:-2])[0].tag == int(tag, 16)
    assert send(se, host, "80CA00C100")[:-2] == bytes.fromhex("C103000001")


def test_install_personalize_select_delete(phone) -> None:
    pid, home = phone
    se = open_se(pid, home)
    host = session(se, level=0x33)
    assert send(se, host, install_apdu(0x04)) == b"\x00\x90\x00"
    assert send(se, host, install_apdu(0x04)) == b"\x69\x85"  # duplicate instance
    status = send(se, host, "80F24002024F0000")
    e = parse_all(status[:-2])[0].children()
    assert e[0].value == INST and e[1].value == b"\x03"  # INSTALLED
    assert se.transmit(bytes.fromhex("00A4040006") + INST)[-2:] == b"\x6a\x82"  # not selectable yet
    mk = b"\x00\x00" + bytes([len(INST)]) + INST + b"\x00\x00\x00"
    assert send(se, host, bytes([0x80, 0xE6, 0x08, 0x00, len(mk)]) + mk) == b"\x00\x90\x00"
    assert send(se, host, perso_apdu()) == b"\x00\x90\x00"
    assert send(se, host, "80E2000003AABBCC") == b"\x01\x90\x00"
    assert send(se, host, "80E2800102DDEE") == b"\x02\x90\x00"
    # a new process sees the personalised applet
    se2 = open_se(pid, home)
    assert se2.transmit(bytes.fromhex("00A4040006") + INST) == b"\x90\x00"
    assert se2.transmit(bytes.fromhex("8010000002CAFE00")) == bytes.fromhex("CAFE00" "00") + b"\x90\x00"
    d = wallet_sim.describe(pid, home)
    assert d["secure_element"]["applets"][0]["life_cycle"] == "SELECTABLE"
    # no path in describe() or the APDUs exports the applet's secret
    secret = se2.applet(INST).secret
    assert secret.hex() not in repr(d).lower() and secret.hex().upper() not in repr(d)
    host = session(se2)
    assert send(se2, host, b"\x80\xe4\x00\x00\x02\x4f\x00") == b"\x6a\x88"
    assert send(se2, host, b"\x80\xe4\x00\x00\x08\x4f\x06" + INST) == b"\x00\x90\x00"
    assert send(se2, host, "80F24002024F0000") == b"\x6a\x88"


def _installed_and_selected_on_channel_1(phone):  # noqa: ANN001, ANN202
    """The test applet installed over an SCP03 session on channel 0 (kept open: the SE and
    its host session are returned), channel 1 opened and the applet selected on it."""
    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    assert se.transmit(bytes.fromhex("01A4040006") + INST) == b"\x90\x00"
    return se, host


def test_logical_channels_route_to_applets(phone) -> None:
    se, host = _installed_and_selected_on_channel_1(phone)
    assert se.transmit(bytes.fromhex("8110000001AB00")) == b"\xab\x00\x01\x90\x00"
    # channel 0 still holds the ISD session
    assert send(se, host, "80CA00C100")[-2:] == b"\x90\x00"
    assert se.transmit(bytes.fromhex("00708001")) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("8110000001AB00")) == b"\x68\x81"


def test_a_channel_opened_from_a_supplementary_one_has_its_application(phone) -> None:
    """MANAGE CHANNEL OPEN from the basic channel selects the ISD on the new channel; from a
    supplementary one, that channel's application (ISO/IEC 7816-4 11.1.2, GP 11.1.2, as
    Java Card's dispatcher does): a host that opens a second channel to the applet it is
    talking to can use it at once. Before, the ISD was selected whatever the origin."""
    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    assert se.transmit(bytes.fromhex("01A4040C06") + INST) == b"\x90\x00"
    selects = se.applet(INST).selected
    assert se.transmit(bytes.fromhex("0170000001")) == b"\x02\x90\x00"  # from channel 1
    assert se.applet(INST).selected == selects + 1
    assert se.transmit(bytes.fromhex("8210000001CD00")) == b"\xcd\x00\x02\x90\x00"  # the applet, on channel 2
    assert se.transmit(bytes.fromhex("01700003")) == b"\x90\x00"  # a channel named by P2: the same
    assert se.transmit(bytes.fromhex("8310000001EF00")) == b"\xef\x00\x03\x90\x00"
    assert se.transmit(bytes.fromhex("00708003")) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("00700003")) == b"\x90\x00"  # from the basic channel: the ISD
    assert se.transmit(bytes.fromhex("8310000001EF00"))[-2:] != b"\x90\x00"


DELETE_INST = b"\x80\xe4\x00\x00\x08\x4f\x06" + INST
APPS = "80F24002024F0000"


@pytest.mark.parametrize("release", ["close channel 1", "select the ISD on channel 1"])
def test_delete_refused_while_selected_on_another_channel(phone, release) -> None:
    """GP Card Specification, Application Removal: the OPEN deletes an application only if
    it "is not currently selected on another logical channel" (Java Card RE 11.3.4.1
    likewise); a card answers 6985 and changes nothing. Before, the SE deleted the applet
    from under the channel that held it."""
    se, host = _installed_and_selected_on_channel_1(phone)
    image, registry = se.persisted_image(), send(se, host, APPS)
    assert registry[-2:] == b"\x90\x00"
    # DELETE on channel 0, inside the SCP03 session, with and without "related objects"
    assert send(se, host, DELETE_INST) == b"\x69\x85"
    assert send(se, host, b"\x80\xe4\x00\x80" + DELETE_INST[4:]) == b"\x69\x85"
    # nor does the instance's load file go with its instances (in ROM, and one is in use)
    assert send(se, host, b"\x80\xe4\x00\x80\x07\x4f\x05" + ELF) == b"\x69\x85"
    assert send(se, host, APPS) == registry  # the registry unchanged
    assert se.persisted_image() == image  # nothing written
    assert open_se(*phone).app_record(INST) is not None  # a new process sees it too
    assert se.channels_selecting(INST) == [1]
    assert se.transmit(bytes.fromhex("8110000001AB00")) == b"\xab\x00\x01\x90\x00"  # channel 1 still works
    if release == "close channel 1":
        assert se.transmit(bytes.fromhex("00708001")) == b"\x90\x00"
    else:
        assert se.transmit(bytes.fromhex("01A4040008") + ISD)[-2:] == b"\x90\x00"
    assert send(se, host, DELETE_INST) == b"\x00\x90\x00"
    assert send(se, host, APPS) == b"\x6a\x88"
    assert se.persisted_image() != image
    # no channel is left pointing at the deleted applet
    assert se.channels_selecting(INST) == []
    if release == "close channel 1":
        assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"  # opened again: the ISD
    assert se.transmit(bytes.fromhex("81CA9F7F00"))[-2:] == b"\x90\x00"
    assert se.transmit(bytes.fromhex("01A4040006") + INST) == b"\x6a\x82"


def test_delete_waits_for_every_channel_that_selected_the_instance(phone) -> None:
    """An instance selected on two channels is deleted only once neither holds it."""
    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    for n in (1, 2, 3):
        assert se.transmit(bytes.fromhex("0070000001")) == bytes([n]) + b"\x90\x00"
    assert se.transmit(bytes.fromhex("03A4040006") + INST) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("02A4040006") + INST) == b"\x90\x00"
    assert send(se, host, DELETE_INST) == b"\x69\x85"
    assert se.transmit(bytes.fromhex("00708003")) == b"\x90\x00"
    assert send(se, host, DELETE_INST) == b"\x69\x85"  # still selected on channel 2
    assert se.transmit(bytes.fromhex("00708002")) == b"\x90\x00"
    assert send(se, host, DELETE_INST) == b"\x00\x90\x00"


def test_put_key_rotates_factory_keys(phone) -> None:
    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    new = [os.urandom(16) for _ in range(3)]
    cmd = put_key_command(0x30, 0x31, new, FACTORY.dek)
    out = send(se, host, cmd.to_bytes())
    assert out[:1] == b"\x31" and out[-2:] == b"\x90\x00"
    se2 = open_se(pid, home)
    assert se2.transmit(HostChannel(FACTORY, 0x01, os.urandom(8), kvn=0x30).initialize_update()) == b"\x6a\x88"
    host2 = session(se2, StaticKeys(*new), kvn=0x31)
    assert send(se2, host2, "80CA00E000")[:-2] == bytes.fromhex("E012C00401318810C00402318810C00403318810")


def test_set_status_lock_and_unlock(phone) -> None:
    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    send(se, host, install_apdu(0x0C))
    assert send(se, host, b"\x80\xf0\x40\x83\x06" + INST) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    assert se.transmit(bytes.fromhex("01A4040006") + INST) == b"\x6a\x82"
    assert send(se, host, b"\x80\xf0\x40\x07\x06" + INST) == b"\x90\x00"
    assert se.transmit(bytes.fromhex("01A4040006") + INST) == b"\x90\x00"
    assert send(se, host, "80F0807F") == b"\x90\x00"  # card locked
    assert se.transmit(bytes.fromhex("01A4040006") + INST) == b"\x6a\x82"
    assert send(se, host, "80F0800F") == b"\x90\x00"
    assert wallet_sim.describe(pid, home)["secure_element"]["card_life_cycle"] == "SECURED"


def test_factory_reset_keeps_the_se(phone) -> None:
    pid, home = phone
    se = open_se(pid, home)
    host = session(se)
    send(se, host, install_apdu(0x0C))
    appdir = wallet_sim.app_dir(pid, home)
    (appdir / "wallet.db").write_bytes(b"x")
    before = (home / "phones" / pid / "se.cbor").read_bytes()
    wallet_sim.factory_reset(pid, home)
    assert list(appdir.iterdir()) == []
    assert (home / "phones" / pid / "se.cbor").read_bytes() == before


def test_unknown_phone(tmp_path: Path) -> None:
    with pytest.raises(wallet_sim.PhoneNotFoundError):
        wallet_sim.open_secure_element("ph-nope", tmp_path)
    with pytest.raises(wallet_sim.PhoneNotFoundError):
        wallet_sim.open_secure_element("../etc", tmp_path)


def test_mcred_home_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MCRED_HOME", str(tmp_path))
    pid = wallet_sim.create_phone()
    assert (tmp_path / "phones" / pid / "se.cbor").is_file()


def test_shipped_applets_are_installable_when_present(phone) -> None:
    pid, home = phone
    se = wallet_sim.open_secure_element(pid, home)
    if not se.applet_classes:
        pytest.skip("wallet_sim.applets not present")
    host = session(se)
    out = send(se, host, "80F21002024F0000")
    assert out[-2:] == b"\x90\x00"
