"""GET STATUS paging (GPCS 11.4.2 P2 b1 "next occurrence", 11.4.3 SW 6310): the ISD answers
a long registry in pages that each fit a short secured response, and the TSM reads them
all."""

from __future__ import annotations

import pytest
from test_se_runtime import CLASSES, INST, PACKAGES, install_apdu, session
from test_tsm_jobs import MASTER

import wallet_sim
from protocols.gp.tlv import parse_all
from tsm.gp_commands import get_status, parse_status
from tsm.keys import InMemoryMasterKey
from tsm.session import SeLink, open_session
from tsm.steps import registry
from wallet_sim.se.isd import GET_STATUS_PAGE

AIDS = [INST[:-1] + bytes([i]) for i in range(1, 13)]  # 12 instances of the echo applet


@pytest.fixture
def crowded(tmp_path):
    pid = wallet_sim.create_phone(tmp_path)
    se = wallet_sim.open_secure_element(pid, tmp_path, applet_classes=CLASSES, packages=PACKAGES)
    host = session(se)
    for aid in AIDS:
        assert host.unwrap(se.transmit(host.wrap(install_apdu(aid=aid)))) == b"\x00\x90\x00"
    return pid, se, host, tmp_path


def _send(se, host, apdu: bytes) -> tuple[bytes, int]:
    r = host.unwrap(se.transmit(host.wrap(apdu)))
    return r[:-2], int.from_bytes(r[-2:], "big")


def _aids(data: bytes) -> list[bytes]:
    return [e.aid for e in parse_status(data)]


def test_pages_fit_a_short_response_and_cover_the_registry(crowded):
    _pid, se, host, _home = crowded
    data, sw = _send(se, host, get_status(0x40).to_bytes())
    pages = [data]
    while sw == 0x6310:
        data, sw = _send(se, host, get_status(0x40, more=True).to_bytes())
        pages.append(data)
    assert sw == 0x9000 and len(pages) > 2
    assert all(0 < len(p) <= GET_STATUS_PAGE for p in pages)
    assert [a for p in pages for a in _aids(p)] == AIDS
    for p in pages:  # whole entries only
        assert all(t.tag == 0xE3 for t in parse_all(p))
    # the listing is finished: there is nothing to continue
    assert _send(se, host, get_status(0x40, more=True).to_bytes()) == (b"", 0x6985)


def test_next_needs_the_same_query_and_a_first_request_starts_over(crowded):
    _pid, se, host, _home = crowded
    first, sw = _send(se, host, get_status(0x40).to_bytes())
    assert sw == 0x6310
    isd = bytes.fromhex("80F28003024F0000")  # next, but for P1 80 (the ISD): not this listing
    assert _send(se, host, isd) == (b"", 0x6985)
    assert _send(se, host, get_status(0x40, more=True).to_bytes())[1] == 0x6985  # dropped
    again, sw = _send(se, host, get_status(0x40).to_bytes())
    assert (again, sw) == (first, 0x6310)
    host = session(se)  # a new session forgets the listing
    assert _send(se, host, get_status(0x40, more=True).to_bytes()) == (b"", 0x6985)


def test_next_occurrence_bad_p2_is_still_refused(crowded):
    _pid, se, host, _home = crowded
    assert _send(se, host, bytes.fromhex("80F24000024F0000"))[1] == 0x6A86  # legacy format
    assert _send(se, host, bytes.fromhex("80F24001024F0000"))[1] == 0x6A86


def test_the_tsm_reads_every_page(crowded):
    pid, se, _host, _home = crowded
    from sqlalchemy import create_engine

    from tsm.audit import AuditLog
    from tsm.db import TsmBase

    engine = create_engine("sqlite://")
    TsmBase.metadata.create_all(engine)
    link = SeLink(engine, pid, se.transmit, InMemoryMasterKey(MASTER), AuditLog("t", pid))

    class Ctx:
        session = open_session(link)

    reg = registry(Ctx)
    assert sorted(reg) == sorted(AIDS) and set(reg.values()) == {0x07}
    pages = [r for r in link.audit.pending if r["event"] == "apdu" and r["ins"] == 0xF2]
    assert [r["p2"] for r in pages][0] == 0x02 and {r["p2"] for r in pages[1:]} == {0x03}
    assert [r["sw"] for r in pages][-1] == 0x9000 and len(pages) > 2


def test_a_listing_is_not_continued_in_the_next_session(crowded):
    """What a GET STATUS left belongs to the session that asked: a bad MAC ends it, and the
    next session (no SELECT in between) continuing the listing gets 6985, not the rest of
    a registry read under someone else's session (found by mutation testing)."""
    from test_se_refusals import open_session as open_without_select

    _pid, se, host, _home = crowded
    assert _send(se, host, get_status(0x40).to_bytes())[1] == 0x6310
    w = bytearray(host.wrap(get_status(0x40, more=True).to_bytes()))
    w[-2] ^= 1
    assert se.transmit(bytes(w)) == b"\x69\x82"
    host = open_without_select(se)
    assert _send(se, host, get_status(0x40, more=True).to_bytes()) == (b"", 0x6985)
