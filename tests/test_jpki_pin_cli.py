"""The holder's secrets from the command line (`mcred jpki pin status|change|unblock`,
specs/jpki-applet.md section 3): tries left without spending one, a change that verifies the
old secret first, a lock after the last wrong try, and the PUK giving the tries back (and a
new value). A malformed secret or PUK is refused before the SE sees it: no try is spent."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import wallet_sim
from mcred.cli.main import app
from mcred.context import Context
from mcred.provision import parse_holder, provision

HOLDER = {"family_name": "暗証", "given_name": "番号", "family_name_kana": "アンショウ",
          "given_name_kana": "バンゴウ", "birth_date": "1970-01-01", "sex": 1,
          "address": "北海道札幌市中央区1-1", "prefecture": "北海道", "municipality": "札幌市"}


@pytest.fixture
def phone(home, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(ctx.home)
    provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1, pin="1234",
              password="PASS1234", puk="12345678")
    return pid


def _files(tmp_path, **values: str) -> dict[str, str]:
    out = {}
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n")
        out[name] = str(tmp_path / name)
    return out


def _status(pid: str) -> dict:
    r = CliRunner().invoke(app, ["jpki", "pin", "status", "--phone", pid, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _sign(pid: str, slot: str, pin_file: str, tmp_path) -> CliRunner:
    doc = tmp_path / "doc.txt"
    doc.write_text("契約書")
    return CliRunner().invoke(app, ["jpki", "sign", str(doc), "--phone", pid, "--slot", slot,
                                    "--pin-file", pin_file, "--out", str(tmp_path / "doc.p7s")])


def test_status_change_lock_and_unblock(phone, tmp_path):
    f = _files(tmp_path, pin="1234", bad="9999", new="4321", newer="5678", puk="12345678",
               wrongpuk="87654321", short="12", pw="PASS1234", newpw="NEWPASS9")
    run = CliRunner().invoke
    assert _status(phone) == {"auth": 3, "sign": 5}
    # a change verifies the old secret first: a wrong one spends a try
    r = run(app, ["jpki", "pin", "change", "--phone", phone, "--slot", "auth", "--pin-file", f["bad"],
                  "--new-pin-file", f["new"]])
    assert r.exit_code == 1 and "wrong user-auth PIN, 2 tries left" in r.output, r.output
    assert _status(phone) == {"auth": 2, "sign": 5}
    # malformed: refused before the SE, no try spent
    for args in (["--pin-file", f["short"], "--new-pin-file", f["new"]],
                 ["--pin-file", f["pin"], "--new-pin-file", f["short"]],
                 ["--pin-file", f["pin"], "--new-pin-file", f["pw"]]):
        r = run(app, ["jpki", "pin", "change", "--phone", phone, "--slot", "auth", *args])
        assert r.exit_code == 2 and "no try used" in r.output, (args, r.output)
    assert _status(phone) == {"auth": 2, "sign": 5}
    r = run(app, ["jpki", "pin", "change", "--phone", phone, "--slot", "auth", "--pin-file", f["pin"],
                  "--new-pin-file", f["new"]])
    assert r.exit_code == 0, r.output
    assert _status(phone) == {"auth": 3, "sign": 5}  # the counter is back to its maximum
    assert _sign(phone, "auth", f["new"], tmp_path).exit_code == 0
    assert _sign(phone, "auth", f["pin"], tmp_path).exit_code != 0  # the old one is gone (a try spent)
    assert _status(phone) == {"auth": 2, "sign": 5}
    r = run(app, ["jpki", "pin", "change", "--phone", phone, "--slot", "sign", "--pin-file", f["pw"],
                  "--new-pin-file", f["newpw"]])
    assert r.exit_code == 0 and _sign(phone, "sign", f["newpw"], tmp_path).exit_code == 0, r.output
    # locked after the last wrong try; the right PIN is refused while locked
    assert _sign(phone, "auth", f["bad"], tmp_path).exit_code != 0
    last = _sign(phone, "auth", f["bad"], tmp_path)
    assert "last try" in " ".join(last.output.split()) and "pin unblock" in last.output, last.output
    assert _status(phone) == {"auth": 0, "sign": 5}
    locked = _sign(phone, "auth", f["new"], tmp_path)
    assert locked.exit_code == 1 and "6984 (user-auth PIN locked" in " ".join(locked.output.split()), locked.output
    table = run(app, ["jpki", "pin", "status", "--phone", phone])
    assert "LOCKED" in table.output
    # the PUK: a wrong one spends one of its ten tries, a malformed one none
    r = run(app, ["jpki", "pin", "unblock", "--phone", phone, "--slot", "auth", "--puk-file", f["wrongpuk"]])
    assert r.exit_code == 1 and "wrong PUK, 9 tries left" in r.output, r.output
    r = run(app, ["jpki", "pin", "unblock", "--phone", phone, "--slot", "auth", "--puk-file", f["short"]])
    assert r.exit_code == 2 and "the PUK is 8 digits" in r.output, r.output
    r = run(app, ["jpki", "pin", "unblock", "--phone", phone, "--slot", "auth", "--puk-file", f["puk"],
                  "--new-pin-file", f["newer"]])
    assert r.exit_code == 0 and "set anew" in r.output, r.output
    assert _status(phone) == {"auth": 3, "sign": 5}
    assert _sign(phone, "auth", f["newer"], tmp_path).exit_code == 0


def test_a_phone_without_the_applet_or_no_phone_is_named(home, tmp_path):
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(ctx.home)
    r = CliRunner().invoke(app, ["jpki", "pin", "status", "--phone", pid])
    assert r.exit_code == 1 and "provisioned" in r.output, r.output
    r = CliRunner().invoke(app, ["jpki", "pin", "status", "--phone", "nope"])
    assert r.exit_code == 2 and "no phone" in r.output, r.output
    r = CliRunner().invoke(app, ["jpki", "pin", "change", "--phone", pid, "--slot", "x", "--pin-file", "a",
                                 "--new-pin-file", "b"])
    assert r.exit_code == 2


def test_a_phone_whose_applet_was_never_personalised_is_not_called_locked(home, tmp_path, monkeypatch):
    """A provisioning that stopped after writing the signing certificate, before SET PIN: the
    secrets were never set. jpki sign said "6984 (PIN locked: `mcred jpki pin unblock` with
    the PUK)" and pin status "5 tries left"; the SE answers 6A88 and the host says so."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home)
    pid = wallet_sim.create_phone(ctx.home)

    class Stop(Exception):
        pass

    def stop(step):  # noqa: ANN001
        if step == "write-sign-cert":
            raise Stop

    with pytest.raises(Stop):
        provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1, after_step=stop)
    f = _files(tmp_path, pw="PASS1234", puk="12345678")
    r = _sign(pid, "sign", f["pw"], tmp_path)
    text = " ".join(r.output.split())
    assert r.exit_code == 1 and "VERIFY signing password: SE answered 6A88 (this secret was never set" in text, r.output
    assert "locked" not in text and "unblock" not in text
    assert _status(pid) == {"auth": None, "sign": None}
    assert "not set (not provisioned)" in CliRunner().invoke(app, ["jpki", "pin", "status", "--phone", pid]).output
    r = CliRunner().invoke(app, ["jpki", "pin", "unblock", "--phone", pid, "--slot", "sign", "--puk-file", f["puk"]])
    assert r.exit_code == 1 and "was never set" in r.output and "locked" not in r.output, r.output


def test_the_issuer_resets_locked_secrets_without_touching_the_certificates(phone, tmp_path):
    """Both the PIN and the PUK locked: only the issuer can help. `mcred jpki pin reset`
    sets new secrets through the TSM (shown once), with fresh counters; the certificates
    and keys are the same, nothing is revoked, and the old PIN no longer works."""
    from sqlalchemy import select

    from issuer.db import AuditEvent, Credential
    from tsm.jobs import list_jobs

    ctx = Context.open()
    f = _files(tmp_path, pin="1234", bad="9999", wrongpuk="87654321")
    run = CliRunner().invoke
    for _ in range(3):
        _sign(phone, "auth", f["bad"], tmp_path)
    for _ in range(10):
        run(app, ["jpki", "pin", "unblock", "--phone", phone, "--slot", "auth", "--puk-file", f["wrongpuk"]])
    r = run(app, ["jpki", "pin", "unblock", "--phone", phone, "--slot", "auth", "--puk-file", f["wrongpuk"]])
    assert r.exit_code == 1 and "PUK is locked" in " ".join(r.output.split()), r.output
    before = wallet_sim.describe(phone, ctx.home)["secure_element"]
    r = run(app, ["jpki", "pin", "reset", "--phone", phone, "--slot", "auth", "--puk", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["reset"] == ["auth", "puk"] and set(out["secrets_shown_once"]) == {"pin", "puk"}
    new = _files(tmp_path, newpin=out["secrets_shown_once"]["pin"], newpuk=out["secrets_shown_once"]["puk"],
                 pw="PASS1234")
    assert _status(phone) == {"auth": 3, "sign": 5}
    assert _sign(phone, "auth", new["newpin"], tmp_path).exit_code == 0
    assert _sign(phone, "sign", new["pw"], tmp_path).exit_code == 0  # the password was not touched
    assert _sign(phone, "auth", f["pin"], tmp_path).exit_code != 0
    r = run(app, ["jpki", "pin", "unblock", "--phone", phone, "--slot", "auth", "--puk-file", new["newpuk"]])
    assert r.exit_code == 0, r.output
    after = wallet_sim.describe(phone, ctx.home)["secure_element"]
    jpki = [a["details"] for a in (before, after) for a in a["applets"] if a["aid"] == "D392F000260100000001"]
    assert jpki[0]["certificates"] == jpki[1]["certificates"] and jpki[0]["slots"] == jpki[1]["slots"]
    with ctx.sessions() as s:
        assert {c.status for c in s.scalars(select(Credential).where(Credential.phone_id == phone))} == {"valid"}
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "jpki.secrets-reset")).all()
        assert event.detail["reset"] == ["auth", "puk"] and out["secrets_shown_once"]["pin"] not in str(event.detail)
    (job,) = [j for j in list_jobs(ctx.engine, phone) if j.kind == "reset-secrets"]
    assert job.state == "done" and tsm_sealed(ctx, job.id) is None  # the secrets erased as it ended


def tsm_sealed(ctx, job_id):
    from tsm.jobs import _read_job

    return _read_job(ctx.engine, job_id)[1]


def test_a_reset_is_refused_where_there_is_nothing_to_reset(home, tmp_path):
    ctx = Context.open(home)
    bare = wallet_sim.create_phone(ctx.home)
    run = CliRunner().invoke
    for args, said in ((["--phone", bare], "not registered"), (["--phone", "nope"], "no phone"),
                       (["--phone", bare, "--slot", "x"], "use auth, sign or both")):
        r = run(app, ["jpki", "pin", "reset", *args])
        assert r.exit_code == 2 and said in " ".join(r.output.split()), (args, r.output)


def test_a_reset_that_stopped_is_resumed_and_shows_its_values(phone, tmp_path, monkeypatch):
    """The answer to the reset's STORE DATA is lost (here: the process dies after the step
    ran): the SE may hold values nobody has seen. The error names the job; `--resume`
    finishes it and shows the values, which then verify; `provision --resume` refuses it."""
    import tsm.jobs
    from mcred.provision import reset_secrets, resume_reset

    ctx = Context.open()
    real_run = tsm.jobs.Tsm.run

    def dying(self, job_id, transmit, **kw):
        def after(step):
            if step == "reset-secrets":
                raise RuntimeError("power lost")
        return real_run(self, job_id, transmit, **{**kw, "after_step": after})

    monkeypatch.setattr(tsm.jobs.Tsm, "run", dying)
    with pytest.raises(RuntimeError):
        reset_secrets(ctx, phone, slots=("auth",))
    monkeypatch.setattr(tsm.jobs.Tsm, "run", real_run)
    (job,) = [j for j in tsm.jobs.list_jobs(ctx.engine, phone, unfinished=True) if j.kind == "reset-secrets"]
    r = CliRunner().invoke(app, ["provision", "--resume", job.id])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "jpki pin reset --resume" in said and "again once" not in said, r.output
    r = CliRunner().invoke(app, ["jpki", "pin", "reset", "--resume", job.id, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["reset"] == ["auth"] and list(out["secrets_shown_once"]) == ["pin"]
    f = _files(tmp_path, newpin=out["secrets_shown_once"]["pin"])
    assert _sign(phone, "auth", f["newpin"], tmp_path).exit_code == 0
    again = resume_reset(ctx, job.id)  # done: nothing left to show
    assert again.values == {} and again.reset == ("auth",)
    r = CliRunner().invoke(app, ["jpki", "pin", "reset", "--resume", job.id, "--phone", phone])
    assert r.exit_code == 2


def test_trace_shows_the_jpki_hosts_apdus_and_never_a_secret(phone, tmp_path):
    """`mcred --trace jpki sign|pin change`: every APDU pair the JPKI host sends the SE, as the
    TSM's flows already showed theirs (a README walk-through found --trace silent here); the
    data of VERIFY and CHANGE REFERENCE DATA as a length only."""
    from mcred.cli.state import OPTIONS

    f = _files(tmp_path, pw="PASS1234", pin="1234", new="4321")
    doc = tmp_path / "doc.txt"
    doc.write_text("契約書")
    try:
        signed = CliRunner().invoke(app, ["--trace", "jpki", "sign", str(doc), "--phone", phone,
                                          "--pin-file", f["pw"], "--out", str(tmp_path / "doc.p7s")])
        changed = CliRunner().invoke(app, ["--trace", "jpki", "pin", "change", "--phone", phone, "--slot", "auth",
                                           "--pin-file", f["pin"], "--new-pin-file", f["new"]])
    finally:
        OPTIONS.trace = False
    assert signed.exit_code == 0 and changed.exit_code == 0, signed.output + changed.output
    sign_lines = [line for line in signed.output.splitlines() if line.startswith(("A>> jpki", "A<< jpki"))]
    assert any("00A4040C 0A D392F000260100000001" in line for line in sign_lines)  # SELECT JPKI-AP
    assert any("<8 bytes hidden>" in line for line in sign_lines)  # VERIFY of the signing password
    assert any(line.startswith("A>> jpki") and " 802A" in line for line in sign_lines)  # the signature
    for secret in ("PASS1234", "5041535331323334", "31323334", "34333231"):  # as text, and the bytes in hex
        assert secret not in "\n".join(line for line in (signed.output + changed.output).splitlines()
                                       if line.startswith("A>>"))
