"""TSM jobs against the real simulated SE: provisioning, interruption after every command
(lost answer) and every step (worker crash), deletion, secrets kept out of the DB."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from test_tsm_fakes import Crash, FakeIssuer, FlakyLink

import wallet_sim
from mcred.db import make_engine, migrate
from tsm.audit import audit_rows
from tsm.db import JobRow
from tsm.errors import CardDataError, SeApplicationInUseError, TransportError
from tsm.jobs import JobSecrets, Tsm
from tsm.keys import InMemoryMasterKey

SECRETS = JobSecrets("7391", "QZXWV9876", "58203917")
MASTER = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    if eng.dialect.name == "sqlite":
        @event.listens_for(eng, "connect")
        def _fast(dbapi_conn, _rec):  # tests need no durability across power loss
            dbapi_conn.execute("PRAGMA synchronous=OFF")
    migrate(eng)
    eng.dispose()
    yield eng
    eng.dispose()


@pytest.fixture
def world(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # the SE image need not hit the disk

    class World:
        home = tmp_path / "home"
        issuer = FakeIssuer()
        tsm = Tsm(engine, InMemoryMasterKey(MASTER), issuer=issuer, actor="test-op")

        def phone(self):
            pid = wallet_sim.create_phone(self.home)
            return pid, wallet_sim.open_secure_element(pid, self.home)

        def describe(self, pid):
            return wallet_sim.describe(pid, self.home)

    World.home.mkdir()
    return World()


def apdu_whats(engine, se_id):
    return [r.what for r in audit_rows(engine, se_id) if r.event == "apdu"]


def check_provisioned(w, pid, mdoc_count=2, *, sent_once=True):
    """The SE holds one JPKI applet (and one mdoc applet) with one key pair per slot, each
    certified once by the issuer. ``sent_once``: also, every changing command reached the
    SE once in the audit (true when answers were lost; not when a damaged command was
    refused by the SE and sent again)."""
    d = w.describe(pid)
    se = d["secure_element"]
    apps = [a["aid"] for a in se["applets"]]
    assert apps.count("D392F000260100000001") == 1
    assert apps.count("F06D63726564020101") == (1 if mdoc_count else 0)
    assert [k["kvn"] for k in se["security_domains"][0]["keysets"]] == ["31"]
    jpki = next(a for a in se["applets"] if a["aid"] == "D392F000260100000001")["details"]
    mine = [c for c in w.issuer.certificates if c.subject.rfc4514_string().find(pid) >= 0]
    assert w.issuer.issued[(pid, "sign")] == 1 and w.issuer.issued[(pid, "auth")] == 1
    for slot, name, fid in (("sign", "signing", "0001"), ("auth", "user_authentication", "000A")):
        cert = next(c for c in mine if f" {slot} " in c.subject.rfc4514_string())
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        assert jpki["slots"][name]["public_key_sha256"] == hashlib.sha256(spki).hexdigest()
        assert jpki["certificates"][fid]["serial"] == f"{cert.serial_number:X}"
    assert all(s["set"] and not s["blocked"] for s in jpki["secrets"].values())
    if mdoc_count:
        assert all(w.issuer.issued[(pid, f"mdoc{i}")] == 1 for i in range(mdoc_count))
    if not sent_once:
        return
    whats = apdu_whats(w.tsm.engine, pid)
    # each changing command reached the SE exactly once (a lost answer is audited too)
    assert whats.count("STORE DATA jpki GENERATE KEY sign") == 1
    assert whats.count("STORE DATA jpki GENERATE KEY auth") == 1
    assert whats.count("INSTALL [for install] jpki") == 1
    assert whats.count("PUT KEY replace 30 by 31") == 1
    if mdoc_count:
        assert whats.count(f"STORE DATA mdoc GENERATE KEYS x{mdoc_count}") == 1
        assert whats.count("INSTALL [for install] mdoc") == 1
        mdoc = next(a for a in se["applets"] if a["aid"] == "F06D63726564020101")["details"]
        assert mdoc and all(w.issuer.issued[(pid, f"mdoc{i}")] == 1 for i in range(mdoc_count))


def provision(w, pid, alg="p384", mdoc_count=2):
    return w.tsm.create_job(pid, "provision", {"algorithm": alg, "mdoc_count": mdoc_count}, SECRETS)


def test_provision_then_delete(world):
    pid, se = world.phone()
    job = provision(world, pid)
    view = world.tsm.run(job, se.transmit)
    assert view.state == "done" and view.next_step == len(view.steps)
    check_provisioned(world, pid)
    with Session(world.tsm.engine) as s:
        assert s.get(JobRow, job).sealed_secrets is None  # erased when the job ended
    # a second provision on the same SE is refused until the credentials are deleted
    again = provision(world, pid)
    with pytest.raises(Exception, match="already held a jpki applet"):
        world.tsm.run(again, se.transmit)
    delete = world.tsm.create_job(pid, "delete-credentials")
    world.tsm.run(delete, se.transmit)
    assert world.describe(pid)["secure_element"]["applets"] == []


def test_a_delete_that_meets_an_applet_held_on_a_channel_stops_resumable(world):
    """The phone's wallet holds the mdoc applet on logical channel 1 (an OMAPI session)
    while the TSM wipes the SE: the SE refuses that DELETE with 6985 (GP Application
    Removal). The job stops on delete-mdoc with an error naming the applet's AID (before,
    a bare CardStatusError 'DELETE mdoc refused (SW 6985)'), the JPKI applet deleted, the
    mdoc applet and the wallet's channel untouched; once the wallet closes its channel the
    same job finishes."""
    from wallet_sim.wallet import SeMdocApplet

    pid, se = world.phone()
    world.tsm.run(provision(world, pid, mdoc_count=1), se.transmit)
    assert se.transmit(bytes.fromhex("0070000001")) == b"\x01\x90\x00"
    on_channel_1 = SeMdocApplet(lambda apdu: se.transmit(bytes([apdu[0] | 0x01]) + apdu[1:]))
    slots = on_channel_1.slots()
    assert slots
    job = world.tsm.create_job(pid, "delete-credentials")
    with pytest.raises(SeApplicationInUseError, match=r"DELETE mdoc refused, the mdoc applet \(F06D63726564020101\) "
                       r"is selected on a logical channel.*\(SW 6985\)") as err:
        world.tsm.run(job, se.transmit)
    assert err.value.aid == bytes.fromhex("F06D63726564020101") and err.value.sw == 0x6985
    view = world.tsm.job(job)
    assert view.state == "interrupted" and view.current_step == "delete-mdoc"
    assert view.error.startswith("SeApplicationInUseError: ") and view.results["delete-jpki"] == {"deleted": True}
    assert [a["aid"] for a in world.describe(pid)["secure_element"]["applets"]] == ["F06D63726564020101"]
    assert on_channel_1.slots() == slots  # the wallet's session goes on
    assert se.transmit(bytes.fromhex("00708001")) == b"\x90\x00"  # the wallet closes its channel
    assert world.tsm.run(job, se.transmit).state == "done"
    assert world.describe(pid)["secure_element"]["applets"] == []
    whats = [(r.what, r.sw) for r in audit_rows(world.tsm.engine, pid) if r.event == "apdu" and "DELETE" in r.what]
    assert whats == [("DELETE jpki", 0x9000), ("DELETE mdoc", 0x6985), ("DELETE mdoc", 0x9000)]


def test_lost_answer_after_every_command_completes_once(world):
    pid, se = world.phone()
    reference = FlakyLink(se)
    world.tsm.run(provision(world, pid), reference)
    total = reference.sent
    # 35 commands (38 before READ STATE rode with the sequence before it, 41 before the
    # generate steps used the key slots the session knows): every one of them is lost below
    assert total >= 35
    # Every command on SQLite; every sixth on PostgreSQL (the SE's behaviour does not
    # depend on the backend, only the job bookkeeping does, which each run exercises).
    stride = 1 if world.tsm.engine.dialect.name == "sqlite" else 6
    for k in range(0, total, stride):
        pid, se = world.phone()
        job = provision(world, pid)
        with pytest.raises(TransportError):
            world.tsm.run(job, FlakyLink(se, lose_at=k))
        assert world.tsm.job(job).state == "interrupted"
        assert world.tsm.run(job, se.transmit).state == "done", f"lost answer {k}"
        check_provisioned(world, pid)


def test_crash_after_every_step_completes_once(world):
    pid, se = world.phone()
    steps = world.tsm.job(provision(world, pid)).steps
    for step in steps:
        pid, se = world.phone()
        job = provision(world, pid)

        def crash(done, step=step):
            if done == step:
                raise Crash(step)

        with pytest.raises(Crash):
            world.tsm.run(job, se.transmit, after_step=crash)
        assert world.tsm.job(job).current_step == step  # the DB never learnt it finished
        assert world.tsm.run(job, se.transmit).state == "done"
        check_provisioned(world, pid)


def test_rsa2048_keygen_answer_lost(world):
    pid, se = world.phone()
    job = provision(world, pid, alg="rsa2048", mdoc_count=0)
    ref_pid, ref_se = world.phone()
    world.tsm.run(provision(world, ref_pid, alg="rsa2048", mdoc_count=0), ref_se.transmit)
    at = apdu_whats(world.tsm.engine, ref_pid).index("STORE DATA jpki GENERATE KEY auth")
    with pytest.raises(TransportError):
        world.tsm.run(job, FlakyLink(se, lose_at=at))
    world.tsm.run(job, se.transmit)
    check_provisioned(world, pid, mdoc_count=0)
    jpki = world.describe(pid)["secure_element"]["applets"][0]["details"]
    assert jpki["slots"]["signing"]["algorithm"] == "rsa2048"


def test_no_secret_reaches_the_database(world):
    pid, se = world.phone()
    job = provision(world, pid)
    lines: list[str] = []
    with pytest.raises(TransportError):
        world.tsm.run(job, FlakyLink(se, lose_at=30), trace=lines.append)
    world.tsm.run(job, se.transmit, trace=lines.append)
    keys = world.tsm.master.se_keys(bytes.fromhex(world.describe(pid)["secure_element"]["key_diversification_data"]))
    # The 4-digit PIN as text can occur by chance inside hex (certificates in the job's
    # results, ciphertext): it is looked for only in the worded columns; its ASCII bytes
    # in hex, the password and the PUK are looked for everywhere.
    forbidden = [SECRETS.signing_password, SECRETS.puk]
    for v in (SECRETS.user_auth_pin, SECRETS.signing_password, SECRETS.puk):
        forbidden += [v.encode().hex(), v.encode().hex().upper()]
    for k in (MASTER, keys.enc, keys.mac, keys.dek):
        forbidden += [k.hex(), k.hex().upper()]
    with Session(world.tsm.engine) as s:
        jobs = [_text(r) for r in s.scalars(select(JobRow))]
        worded = [repr((r.input, r.error)) for r in s.scalars(select(JobRow))]
    dumped = [_text(r) for r in audit_rows(world.tsm.engine)] + jobs
    worded += [repr((r.what, r.detail, r.event)) for r in audit_rows(world.tsm.engine)]
    assert not any(SECRETS.user_auth_pin in text for text in worded)
    for text in dumped:
        for bad in forbidden:
            assert bad not in text
    plain = [line for line in lines if "plain" in line]
    assert plain and not any(bad in line for line in plain for bad in forbidden)
    assert any("hidden" in line for line in plain)
    assert any(line.startswith("A>> plain") for line in lines)


def _text(row) -> str:
    """Every stored column of a row except timestamps (whose digits match anything)."""
    return repr({k: v for k, v in row.__dict__.items()
                 if not k.startswith("_") and k not in ("at", "created_at", "updated_at")})


def test_secrets_are_checked_and_never_shown():
    with pytest.raises(Exception, match="4 digits"):
        JobSecrets("12a4", "ABCDEF")
    with pytest.raises(Exception, match="6-16"):
        JobSecrets("1234", "abcdef")
    assert "7391" not in repr(SECRETS)


def test_put_key_answer_with_wrong_key_check_values_fails_the_job(world, monkeypatch):
    """GPCS 11.8.3: the card answers the new keys' check values; a card whose KCVs are not
    those of the keys the TSM sent (a corrupted block, a false card) fails the rotation."""
    from protocols.gp import keys as gp_keys

    real = gp_keys.PutKeyData.response
    monkeypatch.setattr(gp_keys.PutKeyData, "response",
                        lambda self: real(self)[:-1] + bytes([real(self)[-1] ^ 1]))
    pid, se = world.phone()
    job = provision(world, pid)
    with pytest.raises(CardDataError, match="key check values"):
        world.tsm.run(job, se.transmit)


def test_a_reset_of_the_secrets_survives_a_lost_answer_after_every_command(world):
    """A reset-secrets job (the issuer's reset of a holder's PIN and PUK) loses the answer
    to each of its commands in turn; resumed, it ends with the new values set, fresh
    counters, and the keys and certificates as they were."""
    from mcred.jpki_flow import SeError, change_pin, pin_status, sign_challenge, unblock_pin

    new = JobSecrets("2580", "XXXXXX", "97531864")  # the password is not reset: a placeholder

    def reset(pid):
        return world.tsm.create_job(pid, "reset-secrets", {"slots": ["auth"], "puk": True}, new)

    pid, se = world.phone()
    world.tsm.run(provision(world, pid, mdoc_count=0), se.transmit)
    reference = FlakyLink(se)
    world.tsm.run(reset(pid), reference)
    total = reference.sent
    stride = 1 if world.tsm.engine.dialect.name == "sqlite" else 3
    for k in range(0, total, stride):
        pid, se = world.phone()
        world.tsm.run(provision(world, pid, mdoc_count=0), se.transmit)
        before = world.describe(pid)["secure_element"]["applets"][0]["details"]
        for _ in range(3):  # the holder locks the PIN
            with pytest.raises(SeError):
                sign_challenge(se.transmit, b"0000", b"n" * 32)
        job = reset(pid)
        with pytest.raises(TransportError):
            world.tsm.run(job, FlakyLink(se, lose_at=k))
        assert world.tsm.run(job, se.transmit).state == "done", f"lost answer {k}"
        assert pin_status(se.transmit) == {"auth": 3, "sign": 5}
        sign_challenge(se.transmit, b"2580", b"n" * 32)  # the new PIN
        unblock_pin(se.transmit, "auth", b"97531864")  # the new PUK
        after = world.describe(pid)["secure_element"]["applets"][0]["details"]
        assert after["certificates"] == before["certificates"] and after["slots"] == before["slots"]
        with pytest.raises(SeError, match="63C4"):  # the password was not touched: the placeholder is wrong
            change_pin(se.transmit, "sign", b"XXXXXX", b"YYYYYY")


@pytest.mark.parametrize("job_input", [
    {"slots": []}, {"slots": ["auth", "auth"]}, {"slots": ["pin"]}, {"slots": "auth"}, {"puk": "yes"},
    {"slots": ["auth"], "extra": 1}, {"slots": ["auth"], "mdoc_count": 1}, {"slots": ["auth"], "puk": True},
])
def test_a_reset_job_with_bad_input_is_refused_before_a_row_is_written(world, job_input):
    from tsm.errors import JobInputError
    from tsm.jobs import list_jobs

    pid, _ = world.phone()
    with pytest.raises(JobInputError):
        world.tsm.create_job(pid, "reset-secrets", job_input, JobSecrets("2580", "XXXXXX", None))
    assert list_jobs(world.tsm.engine, pid) == []
