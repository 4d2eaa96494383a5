"""Card content management commands with random parameters and data, sent inside a real
SCP03 session at SL 33 (the garbage-APDU test in test_se_refusals.py never gets past the
secure channel): the SE answers each with a status word, never an exception, and a
command it refuses leaves the persisted image exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_se_runtime import ELF, INST, MOD, install_apdu, open_se, session

import wallet_sim

SUCCESS = {0x9000, 0x6310}  # 6310: GET STATUS, more data available
INS = [0xE6, 0xE4, 0xE2, 0xD8, 0xF0, 0xF2, 0xCA]  # INSTALL DELETE STORE-DATA PUT-KEY SET-STATUS GET-STATUS GET-DATA


def _image(home: Path, pid: str) -> bytes:
    return (home / "phones" / pid / "se.cbor").read_bytes()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ccm")


def _lv(*fields: bytes) -> bytes:
    return b"".join(bytes([len(f)]) + f for f in fields)


# what a real INSTALL looks like, with one field changed: reaches the checks behind the parser
near_install = st.tuples(
    st.sampled_from([0x04, 0x0C, 0x08, 0x20, 0x02]),
    st.lists(st.binary(max_size=18), min_size=6, max_size=6),
    st.integers(0, 5),
).map(lambda t: (0xE6, t[0], 0x00, _lv(*(
    [ELF, MOD, INST, b"\x00", b"\xc9\x00", b""][i] if i != t[2] else t[1][i] for i in range(6)))))
# parameters the commands use (GPCS 11), else any byte; data around an AID TLV, else any bytes
P1P2 = {0xE6: ([0x04, 0x0C, 0x08, 0x20], [0x00]), 0xE4: ([0x00], [0x00, 0x80]), 0xE2: ([0x00, 0x80, 0x90], [0x00, 0x01]),
        0xD8: ([0x00, 0x30, 0x31], [0x01, 0x81]), 0xF0: ([0x80, 0x40, 0x60], [0x07, 0x0F, 0x83, 0x7F, 0xFF]),
        0xF2: ([0x80, 0x40, 0x20, 0x10], [0x00, 0x02]), 0xCA: ([0x00, 0x9F], [0x66, 0x7F, 0xE0, 0xC1])}
byte = st.integers(0, 255)
aid_data = st.sampled_from([INST, ELF, MOD, bytes.fromhex("A000000151000000")]).map(lambda a: b"\x4f" + bytes([len(a)]) + a)
random_ccm = st.sampled_from(INS).flatmap(lambda ins: st.tuples(
    st.just(ins), st.sampled_from(P1P2[ins][0]) | byte, st.sampled_from(P1P2[ins][1]) | byte,
    aid_data | st.binary(max_size=60) | st.tuples(aid_data, st.binary(max_size=8)).map(b"".join)))


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(command=random_ccm, installed=st.booleans())
def test_ccm_commands_inside_a_session_answer_a_status_and_refusals_change_nothing(home, command, installed):
    _check(home, command, installed)


@FUZZ
@given(command=near_install, installed=st.booleans())
def test_near_valid_install_inside_a_session_answers_a_status_and_refusals_change_nothing(home, command, installed):
    _check(home, command, installed)


def _check(home: Path, command: tuple[int, int, int, bytes], installed: bool) -> None:
    pid = wallet_sim.create_phone(home)
    se = open_se(pid, home)
    host = session(se, level=0x33)
    if installed:  # an instance to collide with, delete or lock
        assert host.unwrap(se.transmit(host.wrap(install_apdu(0x0C))))[-2:] == b"\x90\x00"
    ins, p1, p2, data = command
    plain = bytes([0x80, ins, p1, p2, len(data)]) + data + b"\x00" if data else bytes([0x80, ins, p1, p2, 0x00])
    before = _image(home, pid)
    answer = se.transmit(host.wrap(plain))
    assert len(answer) >= 2
    sw = int.from_bytes(answer[-2:], "big")
    if sw not in SUCCESS:
        assert _image(home, pid) == before, f"refused with {sw:04X} but the image changed"
    # whatever happened, the phone still opens: its SE loads from what was persisted
    assert wallet_sim.open_secure_element(pid, home).transmit(bytes.fromhex("00A4040008A000000151000000"))[-2:] \
        in (b"\x90\x00", b"\x6a\x82")
