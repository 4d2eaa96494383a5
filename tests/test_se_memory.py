"""The SE's non-volatile memory (specs/secure-element.md, "Memory"): a phone is made with a
capacity; GET DATA FF21 reports what is free; a command that would need more is refused
with 6A84 and undone, while its secure channel session goes on; a command that frees memory
always runs. Through the TSM, a job that meets a full SE stops with SeMemoryError (nothing
torn on the card), and abandoning it wipes the SE and frees the phone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_se_runtime import INST, install_apdu, open_se, perso_apdu, send, session
from test_tsm_abandon import HOLDER
from typer.testing import CliRunner

import wallet_sim
from mcred.cli.main import app
from mcred.context import Context
from mcred.provision import abandon, parse_holder, provision
from protocols.gp.resources import parse_resources
from tsm.errors import SeMemoryError
from tsm.jobs import list_jobs
from wallet_sim.se.store import DEFAULT_NVM, NVM_MAX, NVM_MIN


def _resources(se, host=None) -> dict[int, int]:
    out = send(se, host, "80CAFF2100") if host else se.transmit(bytes.fromhex("80CAFF2100"))
    assert out[-2:] == b"\x90\x00", out.hex()
    return parse_resources(out[:-2])


def test_ff21_reports_the_free_memory_of_the_image(tmp_path: Path):
    pid = wallet_sim.create_phone(tmp_path, nvm_bytes=8192)
    se = open_se(pid, tmp_path)
    image = (tmp_path / "phones" / pid / "se.cbor").stat().st_size
    assert _resources(se) == {0x81: 0, 0x82: 8192 - image, 0x83: 4096}
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    after = _resources(se, host)
    assert after[0x81] == 1 and after[0x82] < 8192 - image
    mem = wallet_sim.describe(pid, tmp_path)["secure_element"]["memory"]
    assert mem == {"nvm_capacity": 8192, "nvm_used": 8192 - after[0x82], "nvm_free": after[0x82]}
    assert wallet_sim.describe(wallet_sim.create_phone(tmp_path), tmp_path)["secure_element"][
        "memory"]["nvm_capacity"] == DEFAULT_NVM


def test_a_command_that_does_not_fit_is_refused_and_undone_and_the_session_goes_on(tmp_path: Path):
    pid = wallet_sim.create_phone(tmp_path, nvm_bytes=NVM_MIN)
    se = open_se(pid, tmp_path)
    host = session(se)
    assert send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    assert send(se, host, perso_apdu()) == b"\x00\x90\x00"
    path = tmp_path / "phones" / pid / "se.cbor"
    blocks = 0
    while True:  # STORE DATA blocks of 200 bytes until the NVM is full
        before = path.read_bytes()
        out = send(se, host, bytes([0x80, 0xE2, 0x00, blocks & 0xFF, 200]) + os.urandom(200))
        if out == b"\x6a\x84":
            break
        assert out == bytes([blocks + 1]) + b"\x90\x00"
        blocks += 1
        assert blocks < 20
    assert blocks >= 1
    assert path.read_bytes() == before  # undone: the image is the one before the command
    assert _resources(se, host)[0x82] < 200 + 8
    # the session goes on, and the refused block was not kept: a small one still fits
    assert send(se, host, bytes([0x80, 0xE2, 0x00, 0x00, 1]) + b"x") == bytes([blocks + 1]) + b"\x90\x00"
    assert open_se(pid, tmp_path).applet(INST).blocks == se.applet(INST).blocks
    assert len(se.applet(INST).blocks) == blocks + 1
    # a command that frees memory always runs
    assert send(se, host, b"\x80\xe4\x00\x00\x08\x4f\x06" + INST) == b"\x00\x90\x00"
    assert _resources(se, host)[0x81] == 0


@pytest.mark.parametrize("bad", [NVM_MIN - 1, NVM_MAX + 1, 0, "64K", True])
def test_a_capacity_out_of_bounds_is_refused(tmp_path: Path, bad):
    with pytest.raises(ValueError, match="nvm_bytes"):
        wallet_sim.create_phone(tmp_path, nvm_bytes=bad)
    assert wallet_sim.list_phones(tmp_path) == []


def test_cli_phone_new_takes_a_size(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MCRED_HOME", str(tmp_path))
    run = CliRunner().invoke
    for size, want in (("64K", 65536), ("1M", 1 << 20), ("300000", 300000), ("16KiB", 16384)):
        r = run(app, ["phone", "new", "--nvm", size, "--json"])
        assert r.exit_code == 0, r.output
        pid = json.loads(r.output)["id"]
        assert wallet_sim.describe(pid, tmp_path)["secure_element"]["memory"]["nvm_capacity"] == want
    for bad in ("1K", "65M", "lots", "-5", "1.5M"):
        r = run(app, ["phone", "new", "--nvm", bad])
        assert r.exit_code == 2 and "--nvm" in r.output, (bad, r.output)
    assert len(wallet_sim.list_phones(tmp_path)) == 4


def test_an_se_too_small_for_a_provisioning_is_refused_before_anything_is_issued(home, monkeypatch):
    """The TSM reads the free memory (GET DATA FF21) in its survey: a fresh provisioning
    onto an SE reporting less than the least it takes stops there, before a certificate is
    issued; abandoning it has nothing to revoke and frees the phone."""
    from sqlalchemy import select

    from issuer.db import Credential
    from mcred.cli.main import app as cli_app

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(ctx.home, nvm_bytes=9000)
    with pytest.raises(SeMemoryError, match="reports 8[0-9]{3} bytes of free memory") as err:
        provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)
    assert err.value.sw == 0x6A84 and "nothing was issued" in str(err.value)
    (job,) = list_jobs(ctx.engine, pid, unfinished=True)
    assert job.current_step == "survey"
    with ctx.sessions() as s:
        assert s.scalars(select(Credential).where(Credential.phone_id == pid)).all() == []
    r = CliRunner().invoke(cli_app, ["tsm", "abandon", job.id, "--reason", "SE too small", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["revoked"] == [] and out["wiped"] and out["released_holder"]


def test_a_write_that_outgrows_the_se_stops_the_job_and_is_given_up(home, monkeypatch, tmp_path):
    """The survey's lower bound passes (a portrait makes the mdoc larger than the least an
    mdoc takes) and the SE refuses the credential's write with 6A84: nothing torn on the
    card, a resume meets the same wall, abandoning revokes what was issued and wipes."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    (tmp_path / "face.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(12_000))
    pid = wallet_sim.create_phone(ctx.home, nvm_bytes=20_000)
    holder = parse_holder(dict(HOLDER, portrait="face.jpg"), base=tmp_path)
    with pytest.raises(SeMemoryError, match="out of memory") as err:
        provision(ctx, pid, holder, key_type="p384", mdoc_batch=1)
    assert err.value.sw == 0x6A84 and f"phone show {pid}" in str(err.value)
    (job,) = list_jobs(ctx.engine, pid, unfinished=True)
    assert job.current_step == "write-mdoc" and job.results["survey"]["nvm_free"] > 9400
    se = wallet_sim.describe(pid, ctx.home)["secure_element"]
    mdoc = [a for a in se["applets"] if a["aid"].startswith("F06D6372")]
    slots = mdoc[0]["details"]["slots"]
    assert slots and all(v["credential_bytes"] == 0 for v in slots.values())  # nothing torn
    with pytest.raises(SeMemoryError):  # resuming meets the same wall
        provision(ctx, pid, holder, job_id=job.id)
    gone = abandon(ctx, job.id, "SE too small for the portrait")
    assert sorted(k for _, k in gone.revoked) == ["jpki-auth", "jpki-sign", "mdoc"]
    assert gone.wiped and gone.released_holder
    assert wallet_sim.describe(pid, ctx.home)["secure_element"]["applets"] == []


@pytest.mark.parametrize("key_type", ["p384", "rsa2048"])
def test_the_survey_bound_never_refuses_what_fits(home, monkeypatch, key_type):
    """The least a provisioning takes, as the survey assumes it, stays below what the
    shortest holder record really takes (one and two mdocs): the bound refuses only what
    could not fit."""
    from tsm.steps import NVM_JPKI_AT_LEAST, NVM_MDOC_AT_LEAST

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    shortest = {"family_name": "山", "given_name": "太", "family_name_kana": "や", "given_name_kana": "た",
                "birth_date": "1990-04-01", "sex": 1, "address": "都", "prefecture": "東京都",
                "municipality": "区"}
    for n in (1, 2):
        pid = wallet_sim.create_phone(ctx.home)
        before = wallet_sim.describe(pid, ctx.home)["secure_element"]["memory"]["nvm_used"]
        provision(ctx, pid, parse_holder(dict(shortest, given_name="太" * n)), key_type=key_type, mdoc_batch=n)
        taken = wallet_sim.describe(pid, ctx.home)["secure_element"]["memory"]["nvm_used"] - before
        assert taken >= NVM_JPKI_AT_LEAST[key_type] + n * NVM_MDOC_AT_LEAST, (n, taken)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(sizes=st.lists(st.integers(0, 255), min_size=1, max_size=30), capacity=st.integers(NVM_MIN, 6000),
       deletes=st.lists(st.integers(0, 29), max_size=3))
def test_random_writes_never_outgrow_the_nvm_and_the_image_is_what_the_applet_holds(tmp_path_factory, sizes,
                                                                                   capacity, deletes):
    """Random STORE DATA blocks (and a DELETE and re-INSTALL now and then) on a small SE:
    the image never grows past the capacity, every 6A84 leaves the image as it was, and
    what a fresh process reads back is what the live SE holds."""
    home = tmp_path_factory.mktemp("nvm")
    pid = wallet_sim.create_phone(home, nvm_bytes=capacity)
    se = open_se(pid, home)
    host = session(se)
    path = home / "phones" / pid / "se.cbor"
    installed = send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
    if installed:
        assert send(se, host, perso_apdu()) == b"\x00\x90\x00"
    for i, n in enumerate(sizes):
        before = path.read_bytes()
        if i in deletes and installed:
            assert send(se, host, b"\x80\xe4\x00\x00\x08\x4f\x06" + INST) == b"\x00\x90\x00"  # always runs
            installed = send(se, host, install_apdu(0x0C)) == b"\x00\x90\x00"
            if installed:
                assert send(se, host, perso_apdu()) == b"\x00\x90\x00"
            continue
        out = send(se, host, bytes([0x80, 0xE2, 0x00, i & 0xFF, n]) + os.urandom(n)) if installed else b"\x6a\x84"
        if out == b"\x6a\x84":
            assert path.read_bytes() == before
        else:
            assert out[-2:] == b"\x90\x00", out.hex()
        assert len(path.read_bytes()) <= max(capacity, len(before))
    if installed:
        assert open_se(pid, home).applet(INST).blocks == se.applet(INST).blocks


def test_an_se_that_does_not_report_its_memory_is_not_checked_before(home, monkeypatch):
    """An SE that answers GET DATA FF21 with 6A88 (it keeps its resources to itself): the
    survey records no free memory and lets the job go on; the SE's own 6A84 still stops it."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(ctx.home, nvm_bytes=9000)
    se = wallet_sim.open_secure_element(pid, ctx.home)

    def silent(apdu: bytes) -> bytes:
        answer = se.transmit(apdu)  # the SE sees every command (its MAC chain goes on)
        return b"\x6a\x88" if apdu[1] == 0xCA and apdu[2:4] == b"\xff\x21" else answer

    from mcred.provision import tsm_for
    from tsm.jobs import JobSecrets

    tsm = tsm_for(ctx)
    from mcred.provision import register

    register(ctx, parse_holder(HOLDER), pid)
    job = tsm.create_job(pid, "provision", {"algorithm": "p384", "mdoc_count": 1}, JobSecrets("1234", "ABC123"))
    with pytest.raises(SeMemoryError, match="out of memory"):
        tsm.run(job, silent)
    view = tsm.job(job)
    assert view.results["survey"]["nvm_free"] is None and view.current_step == "write-mdoc"


def test_the_survey_counts_only_the_applets_a_job_adds(home, monkeypatch):
    """A phone holding its JPKI applet gets an mdoc batch (provision-mdoc): the survey counts
    what the mdoc applet will take, not the JPKI applet already there, and refuses a batch
    the SE cannot hold before an MSO is issued."""
    from mcred.provision import register, tsm_for
    from tsm.jobs import JobSecrets

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(ctx.home, nvm_bytes=8000)
    register(ctx, parse_holder(HOLDER), pid)
    tsm = tsm_for(ctx)
    se = wallet_sim.open_secure_element(pid, ctx.home)
    jpki_only = tsm.create_job(pid, "provision", {"algorithm": "p384", "mdoc_count": 0}, JobSecrets("1234", "ABC123"))
    assert tsm.run(jpki_only, se.transmit).state == "done"  # 5,000 at least, of about 7,700 free
    batch = tsm.create_job(pid, "provision-mdoc", {"mdoc_count": 1})
    with pytest.raises(SeMemoryError, match="takes at least 4400"):
        tsm.run(batch, se.transmit)
    assert tsm.job(batch).current_step == "survey"


def test_the_ff21_template_round_trips_and_refuses_what_is_not_one():
    from protocols.gp.errors import TlvError
    from protocols.gp.resources import encode_resources

    raw = encode_resources(2, 70_000, 4096)
    assert raw[:2] == b"\xff\x21" and parse_resources(raw) == {0x81: 2, 0x82: 70_000, 0x83: 4096}
    for bad in (b"", b"\xff\x21", raw[:-1], b"\x9f\x21" + raw[2:], raw + b"\x00"):
        with pytest.raises(TlvError):
            parse_resources(bad)
    assert parse_resources(b"\xff\x21\x02\x82\x00") == {}  # an empty 82 says nothing
