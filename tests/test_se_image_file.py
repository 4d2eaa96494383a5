"""The SE's NVM image written double-buffered (wallet_sim.se.store.ImageFile): se.cbor is
always one whole image, a crash mid-write leaves the old one, and commands that change
nothing do not write at all."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_se_refusals import GET_STATUS, open_session

import wallet_sim
from wallet_sim.se import store


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_writes_alternate_two_slots_and_the_image_is_always_whole(tmp_path):
    path = tmp_path / store.SE_FILE
    img = store.ImageFile(path)
    inodes = set()
    for n in range(6):
        img.write(cbor2.dumps({"n": n, "pad": b"x" * (100 * n)}))
        assert cbor2.loads(path.read_bytes())["n"] == n
        inodes.add(path.stat().st_ino)
    assert len(inodes) == 2  # no inode created or freed per write after the first two
    assert _names(tmp_path) == [".se.cbor.a", ".se.cbor.b", "se.cbor"]
    assert path.stat().st_size == len(cbor2.dumps({"n": 5, "pad": b"x" * 500}))


def test_a_crash_while_writing_the_slot_leaves_the_old_image(tmp_path, monkeypatch):
    path = tmp_path / store.SE_FILE
    img = store.ImageFile(path)
    img.write(b"old image")
    img.write(b"newer image")

    def torn(fd, data, offset):
        os.write(fd, bytes(data[:3]))
        raise OSError("power cut")

    monkeypatch.setattr(os, "pwrite", torn)
    with pytest.raises(OSError):
        img.write(b"never seen")
    assert path.read_bytes() == b"newer image"


def test_a_link_left_by_a_crash_does_not_block_the_next_write(tmp_path):
    path = tmp_path / store.SE_FILE
    img = store.ImageFile(path)
    img.write(b"one")
    os.link(tmp_path / ".se.cbor.a", tmp_path / ".se.cbor.switch")  # crashed before replace
    img.write(b"two")
    img.write(b"three")
    assert path.read_bytes() == b"three"
    assert ".se.cbor.switch" not in _names(tmp_path)


def test_an_image_replaced_from_outside_is_never_overwritten_in_place(tmp_path):
    path = tmp_path / store.SE_FILE
    img = store.ImageFile(path)
    img.write(b"mine 1")
    img.write(b"mine 2")
    store.write_atomically(path, b"restored elsewhere")  # a new inode, neither slot
    img.write(b"mine 3")
    assert path.read_bytes() == b"mine 3"
    path.write_bytes(b"rolled back in place")  # writes into the active slot's inode
    img.write(b"mine 4")  # goes to the other slot
    assert path.read_bytes() == b"mine 4"


@pytest.mark.parametrize(("env", "expected"), [(None, 0), ("1", 1)])
def test_fsync_only_when_asked(tmp_path, monkeypatch, env, expected):
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    monkeypatch.delenv(store.FSYNC_ENV, raising=False)
    if env is not None:
        monkeypatch.setenv(store.FSYNC_ENV, env)
    img = store.ImageFile(tmp_path / store.SE_FILE)
    img.write(b"a")
    img.write(b"b")
    assert len(calls) == 2 * expected


def test_commands_that_change_nothing_do_not_write(tmp_path):
    pid = wallet_sim.create_phone(tmp_path)
    se = wallet_sim.open_secure_element(pid, tmp_path)
    path = tmp_path / "phones" / pid / store.SE_FILE

    def stamp():
        st = path.stat()
        return st.st_ino, st.st_mtime_ns, path.read_bytes()

    host = open_session(se)  # INITIALIZE UPDATE wrote the sequence counter
    before = stamp()
    assert cbor2.loads(before[2])["sequence_counter"] == 1
    for _ in range(3):
        assert host.unwrap(se.transmit(host.wrap(GET_STATUS)))[-2:] == b"\x90\x00"
        assert se.transmit(bytes.fromhex("80CA9F7F00"))[-2:] == b"\x69\x82"  # plain in session
        host = open_session(se)  # ... which ended it; this consumes a counter value
    assert stamp() != before
    before = stamp()
    assert host.unwrap(se.transmit(host.wrap(GET_STATUS)))[-2:] == b"\x90\x00"
    assert stamp() == before  # read-only: the file was not touched
    se2 = wallet_sim.open_secure_element(pid, tmp_path)
    assert se2.state == se.state  # and it holds everything the SE knows


def test_a_new_phone_has_both_nvm_banks_and_its_commands_create_no_file(tmp_path):
    pid = wallet_sim.create_phone(tmp_path)
    d = tmp_path / "phones" / pid
    path = d / store.SE_FILE
    slots = {p.stat().st_ino for p in (d / ".se.cbor.a", d / ".se.cbor.b")}
    assert (d / ".se.cbor.a").read_bytes() == (d / ".se.cbor.b").read_bytes() == path.read_bytes()
    assert path.stat().st_ino == (d / ".se.cbor.a").stat().st_ino
    se = wallet_sim.open_secure_element(pid, tmp_path)
    for _ in range(3):
        open_session(se)  # each INITIALIZE UPDATE writes the sequence counter
        assert path.stat().st_ino in slots
    assert cbor2.loads(path.read_bytes())["sequence_counter"] == 3
    assert {p.stat().st_ino for p in (d / ".se.cbor.a", d / ".se.cbor.b")} == slots
    with pytest.raises(FileExistsError):
        store.ImageFile(path).create(b"a second image")


def test_a_phone_made_before_the_banks_existed_still_opens_and_writes(tmp_path):
    pid = wallet_sim.create_phone(tmp_path)
    d = tmp_path / "phones" / pid
    image = (d / store.SE_FILE).read_bytes()
    for p in (d / ".se.cbor.a", d / ".se.cbor.b", d / store.SE_FILE):
        p.unlink()
    store.write_atomically(d / store.SE_FILE, image)  # as create_phone wrote it before
    se = wallet_sim.open_secure_element(pid, tmp_path)
    open_session(se)
    open_session(se)
    assert cbor2.loads((d / store.SE_FILE).read_bytes())["sequence_counter"] == 2
    assert wallet_sim.open_secure_element(pid, tmp_path).state == se.state
    assert ".se.cbor.a" in _names(d) and ".se.cbor.b" in _names(d)


def test_the_incremental_encoder_gives_the_canonical_image_byte_for_byte():
    import copy
    import random

    rnd = random.Random(7)
    state = store.factory_state()
    enc = store.StateEncoder(cbor2.loads(store.encode_state(state)))
    assert enc.encode(state) is None  # as on disk: nothing to write
    assert enc.encode(state, force=True) == store.encode_state(state)

    def app(n):
        return {"aid": bytes([0xA0, n]), "module_aid": b"\xa0\x01", "elf_aid": b"\xa0",
                "life_cycle": 7, "privileges": b"\x00\x00\x00",
                "state": {"version": 1, "keys": {1: {"pkcs8": rnd.randbytes(40)}},
                          "z": [1, 2], "serial": "S" * n}}

    mutations = [
        lambda s: s.__setitem__("sequence_counter", s["sequence_counter"] + 1),
        lambda s: s["applications"].append(app(rnd.randrange(1, 40))),
        lambda s: s["applications"] and s["applications"][-1]["state"]["keys"].__setitem__(
            rnd.randrange(1, 4), {"pkcs8": rnd.randbytes(rnd.randrange(1, 300))}),
        lambda s: s["applications"] and s["applications"].pop(rnd.randrange(len(s["applications"]))),
        lambda s: s["failed_authentications"].__setitem__(0x30, rnd.randrange(5)),
        lambda s: s["keysets"].__setitem__(0x31, {"enc": rnd.randbytes(16), "mac": b"m" * 16,
                                                   "dek": b"d" * 16}),
        lambda s: s.__setitem__("blocked_kvns", [*s["blocked_kvns"], 0x30]),
        lambda s: s.__setitem__("extra", {"b": 1, "aa": [b"x"]}),  # a key the image lacks
        lambda s: s.pop("extra", None),
        lambda s: s.__setitem__("blocked_kvns", tuple(s["blocked_kvns"])),  # equal encoded
        lambda s: None,
    ]
    last = store.encode_state(state)
    for _ in range(400):
        rnd.choice(mutations)(state)
        want = store.encode_state(state)
        got = enc.encode(state)
        if want == last:
            assert got is None
        else:
            assert got == want
        assert enc.encode(copy.deepcopy(state), force=True) == want
        last = want


def test_every_image_the_se_writes_is_its_state_encoded_canonically(tmp_path):
    pid = wallet_sim.create_phone(tmp_path)
    se = wallet_sim.open_secure_element(pid, tmp_path)
    path = tmp_path / "phones" / pid / store.SE_FILE
    for _ in range(3):
        host = open_session(se)
        assert path.read_bytes() == store.encode_state(se.state)
        assert host.unwrap(se.transmit(host.wrap(GET_STATUS)))[-2:] == b"\x90\x00"
        assert path.read_bytes() == store.encode_state(se.state)


def test_a_shorter_image_leaves_nothing_of_the_longer_one(tmp_path):
    path = tmp_path / store.SE_FILE
    img = store.ImageFile(path)
    for data in (b"L" * 5000, b"M" * 4000, b"short", b"tiny", b"x" * 4097, b"y"):
        stamp = img.write(data)
        assert path.read_bytes() == data
        st = path.stat()
        assert stamp == (st.st_ino, st.st_mtime_ns, st.st_size)


def test_the_image_refuses_types_that_equality_would_confuse():
    """No bool or float enters an image: ``==`` takes True for 1, so the "nothing changed"
    comparison could not see such a change. Refused when first encoded, naming the path."""
    state = store.factory_state()
    enc = store.StateEncoder(cbor2.loads(store.encode_state(state)))
    for bad, path in ((True, "state['flag']"), (1.0, "state['flag']"), ({"x": [False]}, "state['flag']['x'][0]")):
        s = dict(state, flag=bad)
        with pytest.raises(store.SeStateError, match=re.escape(path)):
            enc.encode(s)
        with pytest.raises(store.SeStateError):
            store.encode_state(s)
    app = {"aid": b"\xa0\x01", "state": {"n": 1.5}}
    with pytest.raises(store.SeStateError, match=re.escape("applications[0]['state']['n']: float")):
        enc.encode(dict(state, applications=[app]))
    # a changed application record is checked too
    enc.encode(dict(state, applications=[{"aid": b"\xa0\x01", "state": {"n": 1}}]))
    with pytest.raises(store.SeStateError, match="bool"):
        enc.encode(dict(state, applications=[{"aid": b"\xa0\x01", "state": {"n": 2, "b": False}}]))


def test_a_jpki_image_with_the_old_boolean_flag_still_loads():
    from wallet_sim.applets.jpki import JpkiApplet

    snap = JpkiApplet().snapshot()
    assert snap["auth_cert_needs_pin"] == 1 and type(snap["auth_cert_needs_pin"]) is int
    for legacy, want in ((True, True), (False, False), (0, False), (1, True)):
        other = JpkiApplet()
        other.restore(dict(snap, auth_cert_needs_pin=legacy))
        assert other.state.auth_cert_needs_pin is want
    for bad in (2, "1", None, 1.0):
        with pytest.raises(Exception, match="flag"):
            JpkiApplet().restore(dict(snap, auth_cert_needs_pin=bad))


def test_an_encode_refused_half_way_does_not_leave_the_encoder_ahead_of_the_image():
    """A refused value raises after earlier entries were brought to the new state; were the
    next call to trust those copies, a state that changed them and then put the refused
    entry back would compare "unchanged" and never be written."""
    state = store.factory_state()
    image = store.encode_state(state)
    enc = store.StateEncoder(cbor2.loads(image))
    changed = dict(state, card_life_cycle=state["card_life_cycle"] ^ 0x80)
    bad = dict(changed, zzz_flag=1.5)  # refused after card_life_cycle was brought to ``changed``
    with pytest.raises(store.SeStateError):
        enc.encode(bad)
    again = enc.encode(changed)  # card_life_cycle differs from the image: it must be written
    assert again == store.encode_state(changed)
    assert enc.encode(changed) is None  # and now the copies match the image again


def test_a_command_whose_state_is_refused_leaves_the_se_as_its_image(tmp_path, monkeypatch):
    """When the image refuses the state a command left (a fault in the SE's own code), the
    SE raises, writes nothing and goes on from its image: the command's effects are gone,
    and a later command that changes the same entry back writes what it holds."""
    pid = wallet_sim.create_phone(tmp_path)
    se = wallet_sim.open_secure_element(pid, tmp_path)
    before = se.persisted_image()
    real = se._persist

    def faulty_persist():
        se.state["sequence_counter"] += 7  # an effect the image would hold...
        se.state["zzz_flag"] = True  # ...next to a value it refuses
        real()

    monkeypatch.setattr(se, "_persist", faulty_persist)
    with pytest.raises(store.SeStateError, match="zzz_flag"):
        se.transmit(bytes.fromhex("00A4040008A000000151000000"))
    monkeypatch.undo()
    assert se.persisted_image() == before
    assert se.state == cbor2.loads(before)  # the effects were dropped with the failed write
    assert se.transmit(bytes.fromhex("00A4040008A000000151000000"))[-2:] == b"\x90\x00"
    se.state["sequence_counter"] += 7
    se._persist()
    assert cbor2.loads(se.persisted_image())["sequence_counter"] == cbor2.loads(before)["sequence_counter"] + 7


_KEYS = st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=30), st.binary(max_size=30))
_PLAIN = st.recursive(
    st.one_of(st.none(), st.integers(-(2**70), 2**70), st.binary(max_size=300), st.text(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.tuples(inner, inner),
                            st.dictionaries(_KEYS, inner, max_size=8)),
    max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(_PLAIN)
def test_the_ordered_copy_encodes_as_cbor2s_canonical_mode(value):
    """The encoder's fast path (keys put in canonical order, then cbor2's plain encoding)
    gives cbor2's canonical bytes for any plain value, and its copy equals the value as the
    image decodes it (tuples come back as lists)."""
    copy, enc = store._plain_encoding(value, "v")
    assert enc == cbor2.dumps(value, canonical=True)
    assert copy == cbor2.loads(enc)
    assert store._image_encoding(value) == enc


@pytest.mark.parametrize("bad", [True, 1.5, {"a": [False]}, {True: 1}, {1.0: 1}, [bytearray(b"x")]])
def test_the_ordered_copy_refuses_what_check_plain_refuses(bad):
    with pytest.raises(store.SeStateError):
        store.check_plain(bad)
    with pytest.raises(store.SeStateError):
        store._plain_encoding(bad, "v")
    # what an image read back holds is encoded all the same (a legacy boolean flag)
    assert store._image_encoding(bad) == cbor2.dumps(bad, canonical=True)
