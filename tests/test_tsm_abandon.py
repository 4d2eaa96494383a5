"""Giving up a job that cannot finish (specs/tsm.md, "Abandoning a job"): `mcred tsm
abandon` ends it for good, revokes what it had issued, wipes the SE and lets the phone go
of its holder, who is provisioned again with `mcred provision --holder-id`. A wipe that
cannot run (a quarantined SE) leaves the phone with its holder until a second call."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import wallet_sim
from issuer.db import AuditEvent, Credential, Phone
from mcred.cli.main import app
from mcred.cli.state import cli_actor
from mcred.context import Context
from mcred.provision import abandon, parse_holder, provision, tsm_for
from tsm.audit import audit_rows
from tsm.errors import JobError, JobInputError
from tsm.jobs import list_jobs

HOLDER = {"family_name": "山田", "given_name": "太郎", "family_name_kana": "やまだ",
          "given_name_kana": "たろう", "birth_date": "1990-04-01", "sex": 1,
          "address": "東京都千代田区千代田1-1", "prefecture": "東京都", "municipality": "千代田区"}
JPKI_AID = "D392F000260100000001"


class Crash(Exception):
    pass


@pytest.fixture
def ctx(home, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    return Context.open(home)


def _stopped(ctx, step: str = "write-mdoc") -> tuple[str, str]:
    """A phone whose provisioning died after ``step`` ran (before it was committed): its id
    and the job's."""
    pid = wallet_sim.create_phone(ctx.home)

    def crash(s: str) -> None:
        if s == step:
            raise Crash(s)

    with pytest.raises(Crash):
        provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1, after_step=crash)
    (job,) = list_jobs(ctx.engine, pid, unfinished=True)
    return pid, job.id


def _stopped_refresh(ctx, step: str) -> str:
    """A provisioned phone (P-384, one mdoc) whose mdoc refresh died after ``step`` ran
    (before it was committed); its id."""
    from mcred.provision import refresh_mdocs

    pid = wallet_sim.create_phone(ctx.home)
    provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)

    def crash(s: str) -> None:
        if s == step:
            raise Crash(s)

    with pytest.raises(Crash):
        refresh_mdocs(ctx, pid, after_step=crash)
    return pid


def _creds(ctx, pid):
    with ctx.sessions() as s:
        return {c.id: (c.kind, c.status, c.reason) for c in s.scalars(
            select(Credential).where(Credential.phone_id == pid))}


def _applets(ctx, pid) -> set[str]:
    return {a["aid"] for a in wallet_sim.describe(pid, ctx.home)["secure_element"]["applets"]}


def _holder_of(ctx, pid):
    with ctx.sessions() as s:
        return s.get(Phone, pid).holder_id


def test_abandoning_a_stopped_provisioning_frees_the_phone_for_the_same_holder(ctx):
    pid, job = _stopped(ctx)
    holder = _holder_of(ctx, pid)
    issued = _creds(ctx, pid)
    assert sorted(k for k, st, _ in issued.values() if st == "valid") == ["jpki-auth", "jpki-sign", "mdoc"]
    assert JPKI_AID in _applets(ctx, pid)
    runner = CliRunner()
    r = runner.invoke(app, ["tsm", "abandon", job, "--reason", "holder withdrew", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["kind"] == "provision" and out["phone"] == pid and out["wiped"] is True
    assert out["released_holder"] == holder and out["wipe_error"] is None
    assert sorted(c["credential"] for c in out["revoked"]) == sorted(issued)
    # revoked with the reason a relying party's CRL and the status list carry
    assert {v for v in _creds(ctx, pid).values()} == {(k, "revoked", "cessationOfOperation")
                                                       for k, _, _ in issued.values()}
    listed = runner.invoke(app, ["credential", "list", "--phone", pid]).output.splitlines()
    assert runner.invoke(app, ["credential", "list", "--phone", pid, "--limit", "1", "--offset", "2"]
                         ).output.splitlines() == listed[2:3]
    assert sorted(line.split()[0] for line in listed) == sorted(issued)  # whole ids, for `credential show`
    assert all("revoked (cessationOfOperation)" in line for line in listed)
    assert JPKI_AID not in _applets(ctx, pid)  # wiped by a delete-credentials job
    assert _holder_of(ctx, pid) is None
    # the job is ended for good: not listed as unfinished, its secrets erased, audited
    jobs = {j.id: j for j in list_jobs(ctx.engine, pid)}
    assert jobs[job].state == "abandoned" and "holder withdrew" in jobs[job].error
    assert list_jobs(ctx.engine, pid, unfinished=True) == []
    listed = runner.invoke(app, ["tsm", "jobs", "--phone", pid]).output.splitlines()
    assert listed[0].startswith(f"{job}  {pid}  provision abandoned ")  # the whole id, to copy
    assert listed[1].strip() == f"abandoned by {cli_actor()}: holder withdrew"
    assert runner.invoke(app, ["tsm", "jobs", "--unfinished"]).output.strip() == "no unfinished job"
    paged = runner.invoke(app, ["tsm", "jobs", "--phone", pid, "--limit", "1", "--offset", "1"]).output.splitlines()
    assert len(paged) == 1 and "delete-credentials done" in paged[0]  # the wipe, after the provisioning
    assert tsm_for(ctx)._unseal(job) is None
    events = [(a.event, a.actor) for a in audit_rows(ctx.engine, pid) if a.job_id == job]
    assert ("job-abandoned", cli_actor()) in events
    with ctx.sessions() as s:
        assert s.scalar(select(AuditEvent.detail).where(AuditEvent.action == "phone.detach"))["job"] == job
    # it does not run again, from the CLI or the TSM
    again = runner.invoke(app, ["provision", "--resume", job])
    assert again.exit_code == 2 and "abandoned" in again.output, again.output
    with pytest.raises(JobError, match="abandoned"):
        tsm_for(ctx).run(job, wallet_sim.open_secure_element(pid, ctx.home).transmit)
    # a second abandon changes nothing
    r = runner.invoke(app, ["tsm", "abandon", job, "--reason", "again", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["revoked"] == [], r.output
    # the holder, still registered, is provisioned onto the same phone again
    r = runner.invoke(app, ["provision", "--phone", pid, "--holder-id", holder, "--key-type", "p384",
                            "--mdoc-batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    fresh = json.loads(r.output)
    assert fresh["holder"] == holder and set(fresh["secrets_shown_once"]) >= {"pin", "password"}
    live = [v for k, v in _creds(ctx, pid).items() if k not in issued]
    assert sorted(k for k, st, _ in live if st == "valid") == ["jpki-auth", "jpki-sign", "mdoc"]
    assert _holder_of(ctx, pid) == holder


def test_abandon_refuses_what_it_cannot_abandon(ctx):
    pid = wallet_sim.create_phone(ctx.home)
    done = provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)
    runner = CliRunner()
    for args, said in ((["tsm", "abandon", done.job_id, "--reason", "x"], "is done"),
                       (["tsm", "abandon", "no-such-job", "--reason", "x"], "no job"),
                       (["tsm", "abandon", done.job_id, "--reason", " "], "needs a reason")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and said in " ".join(r.output.split()), (args, r.output)
    with pytest.raises(JobInputError, match="is done"):
        abandon(ctx, done.job_id, "x")
    assert {st for _, st, _ in _creds(ctx, pid).values()} == {"valid"}  # nothing touched


def test_a_wipe_that_cannot_run_keeps_the_phone_until_the_second_call(ctx, tmp_path, monkeypatch):
    """The SE is quarantined (an image from before the last session): the job is abandoned
    and its credentials revoked at once, but the phone stays with its holder; once the
    quarantine is cleared, a second call resumes the same wipe job and lets the phone go."""
    pid, job = _stopped(ctx, "issue-auth-cert")
    image = ctx.home / "phones" / pid / "se.cbor"
    saved = image.read_bytes()
    with pytest.raises(Crash):  # one more session moves the counter on
        from mcred.provision import resume

        resume(ctx, job, after_step=lambda s: (_ for _ in ()).throw(Crash(s)))
    image.write_bytes(saved)
    first = abandon(ctx, job, "phone sent back", actor="ops")
    assert {k for _, k in first.revoked} == {"jpki-sign", "jpki-auth"}
    assert not first.wiped and first.wipe_job and first.released_holder is None
    assert first.wipe_error.startswith("SequenceCounterRegressionError"), first.wipe_error
    assert first.wipe_quarantined
    assert _holder_of(ctx, pid) is not None
    runner = CliRunner()
    monkeypatch.delenv("COLUMNS", raising=False)  # as a pipe has it (pytest-xdist's workers set 80)
    r = runner.invoke(app, ["tsm", "abandon", job, "--reason", "phone sent back"])  # still quarantined
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and "SE not wiped" in said and "stays with its holder" in said, r.output
    assert f"clear-quarantine --phone {pid}" in said and f"tsm abandon {job}" in said
    # the commands to copy are whole on their line (not a terminal: nothing wraps mid-token)
    assert any(f"`mcred tsm abandon {job} --reason TEXT` again" in line for line in r.output.splitlines()), r.output
    assert runner.invoke(app, ["tsm", "clear-quarantine", "--phone", pid, "--reason", "image restored"]).exit_code == 0
    r = runner.invoke(app, ["tsm", "abandon", job, "--reason", "phone sent back"])
    assert r.exit_code == 0 and "let go of holder" in " ".join(r.output.split()), r.output
    assert any("let go of holder" in line and "`mcred provision --phone ID --holder-id " in line
               for line in r.output.splitlines()), r.output
    assert _holder_of(ctx, pid) is None and JPKI_AID not in _applets(ctx, pid)
    wipes = [j for j in list_jobs(ctx.engine, pid, kind="delete-credentials")]
    assert [(j.id, j.state) for j in wipes] == [(first.wipe_job, "done")]  # the same job, resumed


def test_a_phone_that_is_gone_is_let_go_without_a_wipe(ctx):
    pid, job = _stopped(ctx, "write-sign-cert")
    shutil.rmtree(ctx.home / "phones" / pid)
    result = abandon(ctx, job, "phone lost before delivery")
    assert not result.wiped and result.wipe_job is None and "not under" in result.wipe_error
    assert result.released_holder is not None and [k for _, k in result.revoked] == ["jpki-sign"]


def test_provision_holder_id_is_checked_at_the_door(ctx, tmp_path):
    pid = wallet_sim.create_phone(ctx.home)
    done = provision(ctx, pid, parse_holder(HOLDER), key_type="p384", mdoc_batch=1)
    other = wallet_sim.create_phone(ctx.home)
    f = tmp_path / "h.json"
    f.write_text(json.dumps(HOLDER, ensure_ascii=False), encoding="utf-8")
    runner = CliRunner()
    r = runner.invoke(app, ["provision", "--phone", pid, "--holder-id", done.holder_id])
    assert r.exit_code == 2 and "mdoc refresh" in " ".join(r.output.split()), r.output  # its own phone
    for args, said in ((["--holder-id", done.holder_id], "mcred handover"),
                       (["--holder-id", "nope"], "no holder"),
                       (["--holder-id", "x" * 200], "no holder"),
                       (["--holder-id", done.holder_id, "--holder", str(f)], "one of --holder or --holder-id")):
        r = runner.invoke(app, ["provision", "--phone", other, *args])
        assert r.exit_code == 2 and said in " ".join(r.output.split()), (args, r.output)
    assert _creds(ctx, other) == {}


def test_holder_list_and_show_name_the_holder_to_provision_again(ctx, monkeypatch):
    """`mcred holder list|show`: where an operator finds the id `--holder-id` takes. After an
    abandoned provisioning the holder is listed with no phone and nothing live."""
    pid, job = _stopped(ctx)
    holder = _holder_of(ctx, pid)
    runner = CliRunner()
    (row,) = json.loads(runner.invoke(app, ["holder", "list", "--json"]).output)
    assert row["id"] == holder and row["phones"] == [{"id": pid, "state": "active"}] and row["live"] == 3
    assert row["name"] == "山田 太郎" and len(row["card_number"]) == 16
    assert runner.invoke(app, ["tsm", "abandon", job, "--reason", "x"]).exit_code == 0
    (row,) = json.loads(runner.invoke(app, ["holder", "list", "--json"]).output)
    assert row["phones"] == [] and row["live"] == 0 and row["credentials"]["jpki-sign:revoked"] == 1
    table = runner.invoke(app, ["holder", "list"])
    assert table.exit_code == 0 and holder in table.output  # whole, never cut
    # on its row, with every column (not a terminal: the table is not cut at 80 columns)
    monkeypatch.delenv("COLUMNS", raising=False)  # as a pipe has it (pytest-xdist's workers set 80)
    table = runner.invoke(app, ["holder", "list"])
    (line,) = [line for line in table.output.splitlines() if holder in line]
    assert line.split()[1:] == ["山田", "太郎", "-", "0"], line
    shown = json.loads(runner.invoke(app, ["holder", "show", holder, "--json"]).output)
    assert shown["data"]["family_name_kana"] == "やまだ" and shown["id"] == holder
    r = runner.invoke(app, ["holder", "show", holder])
    assert r.exit_code == 0 and "千代田区" in r.output
    for bad in ("nope", "x" * 300, ""):
        r = runner.invoke(app, ["holder", "show", bad])
        assert r.exit_code == 2 and "no holder" in r.output, (bad, r.output)
    # found by the card at the counter; listed a page at a time
    other = wallet_sim.create_phone(ctx.home)
    provision(ctx, other, parse_holder(dict(HOLDER, given_name="次郎")), key_type="p384", mdoc_batch=1)
    (found,) = json.loads(runner.invoke(app, ["holder", "list", "--card", row["card_number"], "--json"]).output)
    assert found["id"] == holder
    assert json.loads(runner.invoke(app, ["holder", "list", "--card", "0" * 16, "--json"]).output) == []
    page = json.loads(runner.invoke(app, ["holder", "list", "--limit", "1", "--offset", "1", "--json"]).output)
    assert [h["name"] for h in page] == ["山田 次郎"]
    for bad in (["--card", "１２３４５６７８９０１２３４５６"], ["--card", "123"], ["--limit", "0"], ["--offset", "-1"]):
        assert runner.invoke(app, ["holder", "list", *bad]).exit_code == 2, bad


def test_an_se_held_by_another_worker_changes_nothing(ctx, monkeypatch):
    """The SE's lock is busy (a worker is running the job): abandon changes nothing, says
    so and exits 1, and works once the lock is free."""
    import tsm.jobs
    from tsm.errors import LockBusyError

    pid, job = _stopped(ctx)

    def busy(*a, **k):
        raise LockBusyError(f"SE {pid} is locked by another worker")

    real = tsm.jobs.acquire
    monkeypatch.setattr(tsm.jobs, "acquire", busy)
    r = CliRunner().invoke(app, ["tsm", "abandon", job, "--reason", "x"])
    assert r.exit_code == 1 and "nothing was changed" in " ".join(r.output.split()), r.output
    assert {st for _, st, _ in _creds(ctx, pid).values()} == {"valid"}
    assert list_jobs(ctx.engine, pid, unfinished=True)[0].id == job
    monkeypatch.setattr(tsm.jobs, "acquire", real)
    assert CliRunner().invoke(app, ["tsm", "abandon", job, "--reason", "x"]).exit_code == 0


def test_abandon_and_reset_on_each_backend(home, db_url, monkeypatch):
    """The abandon (under the SE's lock: a lease on SQLite, a row lock on PostgreSQL), the
    wipe, the re-provisioning by holder id and a secrets reset, on both backends."""
    from mcred.provision import reset_secrets

    monkeypatch.setattr(os, "fsync", lambda fd: None)
    ctx = Context.open(home, db_url)
    pid, job = _stopped(ctx, "issue-auth-cert")
    gone = abandon(ctx, job, "x" * 300, actor="a" * 128)  # a long reason is cut, the widest actor fits
    assert gone.wiped and sorted(k for _, k in gone.revoked) == ["jpki-auth", "jpki-sign"]
    assert abandon(ctx, job, "again").revoked == ()
    r = provision(ctx, pid, gone.released_holder, key_type="p384", mdoc_batch=1)
    assert r.holder_id == gone.released_holder
    reset = reset_secrets(ctx, pid, slots=("auth", "sign"), puk=True)
    assert set(reset.values) == {"pin", "password", "puk"} and reset.reset == ("auth", "sign", "puk")


def test_an_abandoned_refresh_revokes_its_new_msos_and_leaves_the_phone(ctx):
    """Not a provisioning: the MSOs the stopped refresh issued are revoked, the SE is not
    wiped and the phone keeps its holder (the refresh can simply run again)."""
    from mcred.provision import refresh_mdocs

    pid = _stopped_refresh(ctx, "issue-mdoc")
    (job,) = list_jobs(ctx.engine, pid, unfinished=True)
    gone = abandon(ctx, job.id, "refresh given up")
    assert gone.kind == "refresh-mdoc" and [k for _, k in gone.revoked] == ["mdoc"]
    assert gone.wipe_job is None and not gone.wiped and gone.released_holder is None
    assert _holder_of(ctx, pid) is not None and JPKI_AID in _applets(ctx, pid)
    # the refresh had superseded the old MSO: none is valid now. A plain refresh says how to
    # get new ones (it used to say "provision it", which the phone refuses); with the slots
    # named, it issues them
    from mcred.provision import ProvisionError

    with pytest.raises(ProvisionError, match="--batch 1"):
        refresh_mdocs(ctx, pid)
    r = CliRunner().invoke(app, ["mdoc", "refresh", "--phone", pid, "--batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert [st for k, st, _ in _creds(ctx, pid).values() if k == "mdoc"].count("valid") == 1


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"slots": ()}, "one or both"), ({"slots": ("auth", "auth")}, "one or both"), ({"slots": ("pin",)}, "one or both"),
    ({"slots": ("auth",), "password": "ABCDEF"}, "password was given but sign"),
    ({"slots": ("sign",), "pin": "1234"}, "pin was given but auth"),
    ({"new_puk": "12345678"}, "PUK is not reset"),
])
def test_a_reset_asked_wrongly_is_refused_before_the_phone_is_touched(ctx, kwargs, said):
    from mcred.provision import ProvisionError, reset_secrets

    with pytest.raises(ProvisionError, match=said):
        reset_secrets(ctx, "no-such-phone", **kwargs)
