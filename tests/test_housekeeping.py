"""Scheduled housekeeping (mcred/housekeeping.py, specs/revocation.md section 8): with no
request at all, the issuer's time-driven work is done on the clock: the VICAL CA staged in its
window and started in its last 90 days, a JPKI CRL signed again before a relying party asks
(and an older root generation's CRL issued beyond its certificates' end, before its key is
destroyed), the IACA CRL and status lists signed again, the document signer and the TSA unit
renewed, stale jobs and relay rows cleared. A task that fails is recorded and stops no other;
`mcred housekeeping run|tasks` say it in JSON and exit 0 or 1; `mcred serve`'s schedule runs
in one process at a time (two apps on one database: one runs, the other skips), stops with
the app, and is seen in /metrics and `mcred doctor`, never in /readyz. Both backends."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mdoc_world import HOLDER, Clock
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select
from test_issuer_jpki_support import provision
from test_present_http import free_port
from typer.testing import CliRunner

from issuer.api import mdoc as mdoc_api
from issuer.api.auth import create_token
from issuer.db import AuditEvent
from mcred import housekeeping as hk
from mcred.context import Context
from mcred.db import try_lock
from mcred.service import create_app

#: an hour ago (the certificates made now start 5 minutes before it)
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
BASE = "http://issuer.test"


@pytest.fixture
def installation(db_url, tmp_path):
    """An installation (data directory, database of either backend) whose services run on a
    clock the test moves: ``(context, clock)``."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    clock = Clock(NOW)
    ctx = Context(home=home, database=db_url, public_url=BASE, clock=clock)
    yield ctx, clock
    ctx.engine.dispose()


def _run(ctx: Context, *names: str) -> dict[str, hk.TaskResult]:
    return {r.task: r for r in hk.run(ctx, hk.select_tasks(names or None), runner="test", actor="test")}


def _events(ctx: Context, action: str) -> list[AuditEvent]:
    with ctx.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _said(result: hk.TaskResult) -> str:
    return " ".join(result.outcome.split())


def test_housekeeping_alone_stages_the_vical_ca_in_its_window_and_starts_it_in_its_last_90_days(installation):
    """Nobody asks for the VICAL or /trust/vical-ca.pem after the first VICAL: the schedule
    stages the next VICAL CA in the current one's last 180 days (audited by the issuer,
    automatic, not again by housekeeping), so a reader that takes the anchors then holds it,
    and starts it in the last 90 days."""
    from mcred.mdoc_flow import mdoc_service

    ctx, clock = installation
    svc = mdoc_service(ctx)
    svc.vical()  # the first VICAL, asked once
    (ca1,) = svc.vical_cas()
    end = ca1.not_valid_after_utc
    clock.now = end - dt.timedelta(days=181)
    assert _run(ctx, "vical")["vical"].ok
    assert [c.state for c in svc.vical_ca_list()] == ["current"]

    clock.now = end - dt.timedelta(days=179)
    assert [c.state for c in svc.vical_ca_list()] == ["current"]  # nothing asked: nothing staged yet
    staged = _run(ctx, "vical")["vical"]
    assert staged.ok and "staged mdoc-vical-ca-2" in staged.did, staged.outcome
    assert [(c.label, c.state) for c in svc.vical_ca_list()] == [("mdoc-vical-ca-1", "current"),
                                                                 ("mdoc-vical-ca-2", "staged")]
    (event,) = _events(ctx, "mdoc.vical-ca.stage")
    assert (event.actor, event.subject, event.detail["automatic"]) == ("issuer", "mdoc-vical-ca-2", True)
    with ctx.sessions() as s:  # the service audited it; housekeeping adds nothing of its own
        assert not s.scalars(select(AuditEvent).where(AuditEvent.action.like("housekeeping%"))).all()
    routes = FastAPI()
    for router in mdoc_api.routers(lambda: svc):
        routes.include_router(router)
    anchors = x509.load_pem_x509_certificates(TestClient(routes).get("/trust/vical-ca.pem").content)
    assert anchors[0] == ca1 and len(anchors) == 2  # what a reader taking the anchors now holds

    clock.now = end - dt.timedelta(days=89)
    started = _run(ctx, "vical")["vical"]
    assert {"started mdoc-vical-ca-2", "retired mdoc-vical-ca-1"} <= set(started.did), started.outcome
    rolled = _events(ctx, "mdoc.vical-ca.rollover")[-1]
    assert rolled.detail["automatic"] is True
    assert rolled.detail["staged_since"] == (end - dt.timedelta(days=179)).isoformat()
    assert hk.last_runs(ctx)["vical"].runs == 3


def _jpki(ctx: Context, clock: Clock):
    """The installation's JPKI issuer on the test's clock, its roots P-384 (fast to make), and
    a phone's two certificates in partition 131016."""
    from issuer.jpki import JpkiIssuer, profile_for
    from mcred.jpki_flow import jpki_issuer
    from protocols.jpki.profile import KeyType

    JpkiIssuer(ctx.sessions, ctx.keystore, profile_for(ctx.public_url), clock=clock).setup(KeyType.EC_P384)
    issuer = jpki_issuer(ctx)
    return issuer, provision(issuer)


def _cached(ctx: Context, key: str):
    from issuer.jpki.models import JpkiCrlCache

    with ctx.sessions() as s:
        return s.get(JpkiCrlCache, ("sign", key))


def _responders(ctx: Context):
    from issuer.db import IssuerKey

    with ctx.sessions() as s:
        return list(s.scalars(select(IssuerKey).where(IssuerKey.purpose.like("jpki-ocsp-%")).order_by(IssuerKey.label)))


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_housekeeping_re_signs_a_jpki_crl_before_a_relying_party_asks(installation):
    """The CRL a relying party fetched is signed again in its last hour by the schedule: the
    next relying party is served that one (no signature at its request). After a rollover, the
    older root generation's CRL goes on being issued, and past its last certificate's end one
    lists the certificate it revoked, beyond its validity (RFC 5280 3.3), with nobody asking:
    then its key may be destroyed, after its final CRL, which is served from then on."""
    from issuer.revocation import revoke
    from protocols.jpki.profile import KeyType, Purpose

    ctx, clock = installation
    issuer, phone = _jpki(ctx, clock)
    app = create_app(ctx, job_workers=1)  # no lifespan in this test: no schedule of its own
    try:
        with contextlib.closing(TestClient(app)) as client:
            first = x509.load_der_x509_crl(client.get("/crl/sign/131016.crl").content)
            assert first.last_update_utc == NOW
            clock.now = NOW + dt.timedelta(hours=23, minutes=30)  # less than an hour before its nextUpdate
            done = _run(ctx, "jpki")["jpki"]
            assert done.ok and "jpki-sign-root-g1/131016" in _said(done) and "jpki-auth-root-g1/131016" in _said(done)
            kept = _cached(ctx, "jpki-sign-root-g1/131016")
            assert kept.this_update == clock.now and kept.crl_number == _number(first) + 1
            served = x509.load_der_x509_crl(client.get("/crl/sign/131016.crl").content)
            assert (served.last_update_utc, _number(served)) == (clock.now, kept.crl_number)  # nothing signed now
            assert _cached(ctx, "jpki-sign-root-g1/131016").crl_number == kept.crl_number
            assert "nothing due" in _run(ctx, "jpki")["jpki"].outcome

            g1 = issuer.ca.active(Purpose.SIGN)
            issuer.stage("sign", KeyType.EC_P384)  # published ahead: it issued nothing, answers for nothing
            staged = _run(ctx, "jpki")["jpki"]
            assert staged.ok and "jpki-sign-root-g2" not in _said(staged), staged.outcome
            assert [r.label for r in _responders(ctx)] == ["jpki-auth-root-g1-ocsp-1", "jpki-sign-root-g1-ocsp-1"]
            issuer.rollover("sign", KeyType.EC_P384)
            revoke(ctx.sessions, phone.phone_id, "keyCompromise", "sign", now=clock.now)
            cert = x509.load_der_x509_certificate(phone.certs["sign"])
            clock.now = cert.not_valid_after_utc + dt.timedelta(hours=2)
            older = _run(ctx, "jpki")["jpki"]
            assert older.ok and "jpki-sign-root-g1/131016" in _said(older), older.outcome
            kept = _cached(ctx, "jpki-sign-root-g1/131016")
            assert kept.this_update == clock.now
            listed = x509.load_der_x509_crl(kept.body)
            assert listed.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
            assert listed.last_update_utc > cert.not_valid_after_utc
            assert issuer.destroy_key("jpki-sign-root-g1").changed
            # its key gone, the CRL served is the final one it signed first (specs/revocation.md
            # section 9): later than the one housekeeping had signed, listing the same certificate
            again = client.get(f"/crl/sign/131016.crl?key_id={g1.key_id.hex()}")
            assert again.status_code == 200, again.text
            final = x509.load_der_x509_crl(again.content)
            assert final.next_update_utc.year == 9999 and _number(final) > _number(listed)
            assert final.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    finally:
        app.state.jobs.shutdown()


def _mdoc_issued(ctx: Context):
    """The installation's mdoc service on the test's clock, with one mdoc issued (so one
    status list), its IACA CRL and its list's token published once (a reader's first look)."""
    from issuer.db import StatusList
    from issuer.holders import attach_phone, register
    from issuer.mdoc.issuance import make_proof
    from mcred.mdoc_flow import mdoc_service
    from protocols.cardsub import parse_holder

    svc = mdoc_service(ctx)
    attach_phone(ctx.sessions, register(ctx.sessions, parse_holder(HOLDER), now=NOW), "phone-1")
    key = ec.generate_private_key(ec.SECP256R1())
    spki, proof = make_proof(key, svc.mdoc_challenge("job-1", "phone-1", 0))
    svc.issue_mdoc("job-1", "phone-1", 0, spki, proof)
    with ctx.sessions() as s:
        (list_id,) = s.scalars(select(StatusList.id)).all()
    return svc, list_id, svc.status_token(list_id), svc.iaca_crl()


def test_housekeeping_re_signs_the_iaca_crl_and_status_lists_and_rolls_the_document_signer_over(installation):
    """In the last minutes of the status list token (its ttl before its exp) and the last hour
    of the IACA CRL, the schedule signs both again, before a reader asks; in the document
    signer's last 90 days it makes the next one, as the next issuance would have."""
    from issuer.mdoc.models import IacaCrl, IdentifierListToken, StatusListToken

    ctx, clock = installation
    svc, list_id, token, crl = _mdoc_issued(ctx)
    assert crl.last_update_utc == NOW
    clock.now = token.expires_at - dt.timedelta(seconds=200)
    done = _run(ctx, "iaca", "status-lists")
    assert "re-signed 1 status list token(s)" in _said(done["status-lists"])
    with ctx.sessions() as s:  # stored, for every worker to serve, before anyone asked
        kept = s.get(IacaCrl, "mdoc-iaca-1")
        assert kept.this_update == clock.now and kept.crl_number > _number(crl)
        assert done["iaca"].did == (f"re-signed CRL {kept.crl_number} of mdoc-iaca-1",)
        assert s.get(StatusListToken, list_id).issued_at == clock.now
        assert s.get(IdentifierListToken, list_id).issued_at == clock.now
    assert svc.status_token(list_id).issued_at == clock.now
    assert "nothing due" in _said(_run(ctx, "status-lists")["status-lists"])

    (ds,) = svc.signers()
    clock.now = ds.not_after - dt.timedelta(days=89)
    rolled = _run(ctx, "iaca")["iaca"]
    assert {"made mdoc-ds-2", "retired mdoc-ds-1"} <= set(rolled.did), rolled.outcome
    assert [s.label for s in svc.signers() if s.active] == ["mdoc-ds-2"]


def test_housekeeping_renews_the_tsa_unit_and_signs_its_roots_crl(installation):
    """The TSA's root CRL is signed again in its last hour with no relying party asking, its
    unit renewed in its last 90 days and its next root staged in the root's last four years,
    with no time-stamp asked (audited by the TSA)."""
    from issuer.db import TsaRootCrl
    from issuer.tsa import ROOT_RENEW_DAYS, ROOT_STAGE_DAYS
    from mcred.timestamps import time_stamp_authority

    ctx, clock = installation
    tsa = time_stamp_authority(ctx)  # its root and unit, made at the first time-stamp
    first = x509.load_der_x509_crl(tsa.crl())
    clock.now = NOW + dt.timedelta(hours=23, minutes=30)
    done = _run(ctx, "tsa")["tsa"]
    with ctx.sessions() as s:
        kept = s.get(TsaRootCrl, "tsa-root-g1")
    assert done.did == (f"re-signed CRL {kept.crl_number} of tsa-root-g1",) and kept.crl_number > _number(first)
    assert kept.this_update == clock.now
    assert "nothing due (1 root CRL(s) current)" == _said(_run(ctx, "tsa")["tsa"])

    clock.now = tsa.unit().certificate.not_valid_after_utc - dt.timedelta(days=89)
    renewed = _run(ctx, "tsa")["tsa"]
    assert "made tsa-unit-2" in renewed.did, renewed.outcome
    assert [e.actor for e in _events(ctx, "tsa.unit.create")] == ["issuer", "issuer"]

    # the root's last four years: the next root staged, no time-stamp asked
    clock.now = tsa.root().not_valid_after_utc - dt.timedelta(days=ROOT_RENEW_DAYS + ROOT_STAGE_DAYS - 1)
    staged = _run(ctx, "tsa")["tsa"]
    assert "staged tsa-root-g2" in staged.did, staged.outcome
    (event,) = _events(ctx, "tsa.root.stage")
    assert (event.actor, event.subject, event.detail["automatic"]) == ("issuer", "tsa-root-g2", True)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_failing_task_is_recorded_reported_and_stops_no_other(installation):
    """The key store lost the TSA root's key: the tsa task fails (its CRL cannot be signed),
    with its error recorded; every other task runs and does its work. /metrics shows each
    task's runs, failures and last run; `mcred doctor` names the task and how to run it again;
    /readyz does not look at housekeeping."""
    from mcred.doctor import _housekeeping
    from mcred.mdoc_flow import mdoc_service
    from mcred.timestamps import time_stamp_authority

    ctx, clock = installation
    never = _housekeeping(ctx)
    assert not never.ok and never.detail == "never ran in this installation"
    assert "--housekeeping-interval" in never.fix and "mcred housekeeping run" in never.fix
    mdoc_service(ctx).vical()
    time_stamp_authority(ctx)
    ctx.keystore.destroy("tsa-root-g1")  # its row does not say so: a key store that lost it
    clock.now = NOW + dt.timedelta(hours=23, minutes=30)
    results = hk.run(ctx, hk.TASKS, runner="test", actor="test")
    assert [r.task for r in results] == [t.name for t in hk.TASKS]  # every task ran
    by = {r.task: r for r in results}
    assert not by["tsa"].ok and by["tsa"].error.startswith("KeyNotFound: ") and "tsa-root-g1" in by["tsa"].error
    assert all(r.ok for r in results if r.task != "tsa"), [r.outcome for r in results]
    assert "signed CRL" in _said(by["vical"]) and "re-signed the VICAL" in _said(by["vical"])
    rows = hk.last_runs(ctx)
    assert (rows["tsa"].runs, rows["tsa"].failures, rows["tsa"].last_ok) == (1, 1, False)
    assert rows["tsa"].last_outcome == by["tsa"].error and rows["tsa"].last_success_at is None
    assert (rows["vical"].failures, rows["vical"].last_ok, rows["vical"].last_runner) == (0, True, "test")

    found = _housekeeping(ctx)
    assert not found.ok and "tsa failed at" in found.detail and "KeyNotFound" in found.detail
    assert found.fix.endswith("mcred housekeeping run --only tsa")

    app = create_app(ctx, job_workers=1)
    op = {"Authorization": "Bearer " + create_token(ctx.sessions, ["operator"], "prom")[1]}
    try:
        with contextlib.closing(TestClient(app)) as client:
            assert client.get("/readyz").status_code == 200
            m = _samples(client.get("/metrics", headers=op).text)
    finally:
        app.state.jobs.shutdown()
    assert m[("mcred_housekeeping_runs_total", (("task", "tsa"),))] == 1
    assert m[("mcred_housekeeping_failures_total", (("task", "tsa"),))] == 1
    assert m[("mcred_housekeeping_last_ok", (("task", "tsa"),))] == 0
    assert m[("mcred_housekeeping_last_ok", (("task", "vical"),))] == 1
    assert m[("mcred_housekeeping_failures_total", (("task", "vical"),))] == 0
    started = m[("mcred_housekeeping_last_run_timestamp_seconds", (("task", "vical"),))]
    assert started == pytest.approx(rows["vical"].last_started_at.timestamp())
    assert ("mcred_housekeeping_last_success_timestamp_seconds", (("task", "tsa"),)) not in m
    assert ("mcred_housekeeping_last_success_timestamp_seconds", (("task", "vical"),)) in m
    assert ("mcred_housekeeping_last_duration_seconds", (("task", "jpki"),)) in m

    for r in hk.run(ctx, hk.select_tasks(["jpki", "iaca"]), runner="test", actor="test"):
        assert r.ok
    again = _housekeeping(ctx)  # a partial run leaves the failed task named
    assert not again.ok and "tsa failed" in again.detail


def test_stale_api_jobs_and_relay_rows_are_cleared_and_the_jobs_audited(installation):
    """An API job whose process went away (its heartbeat a minute old) is marked interrupted,
    audited as housekeeping's (the runner does not audit it); a live one is left. GP SERAM
    relay rows a killed process left (a session a day old, a message an hour old) go; fresh
    ones stay."""
    from issuer.api.jobs import Job
    from tsm.db import SeramMessageRow, SeramSessionRow

    ctx, _clock = installation
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with ctx.sessions.begin() as s:
        s.add_all([Job(id="a" * 32, kind="provisioning", scope="issuer", state="running", actor="t", runner="gone",
                       heartbeat_at=old),
                   Job(id="b" * 32, kind="provisioning", scope="issuer", state="running", actor="t", runner="alive")])
    now = dt.datetime.now(dt.UTC)
    day = now - dt.timedelta(days=1, minutes=1)
    with ctx.engine.begin() as conn:
        conn.execute(insert(SeramSessionRow), [{"session_id": "old-session", "owner": "gone", "created_at": day},
                                               {"session_id": "new-session", "owner": "here", "created_at": now}])
        conn.execute(insert(SeramMessageRow), [
            {"session_id": "old-session", "owner": "gone", "route": "handshake", "body": b"{}", "created_at": day},
            {"session_id": "new-session", "owner": "here", "route": "handshake", "body": b"{}", "created_at": now}])
    done = _run(ctx, "api-jobs", "seram-relay")
    assert done["api-jobs"].did == ("marked 1 API job(s) interrupted (their process went away)",)
    assert done["seram-relay"].did == ("forgot 1 GP SERAM session(s) and 1 relayed message(s) of processes that "
                                       "went away",)
    with ctx.sessions() as s:
        assert (s.get(Job, "a" * 32).state, s.get(Job, "b" * 32).state) == ("interrupted", "running")
        assert [r.session_id for r in s.scalars(select(SeramSessionRow))] == ["new-session"]
        assert [r.session_id for r in s.scalars(select(SeramMessageRow))] == ["new-session"]
    (event,) = _events(ctx, "housekeeping.jobs.interrupted")
    assert (event.actor, event.detail) == ("test", {"count": 1})
    assert all("nothing due" in r.outcome for r in _run(ctx, "api-jobs", "seram-relay").values())


def test_try_lock_lets_one_holder_in_and_the_others_pass_at_once(db_url, tmp_path):
    """Two engines on one database (two processes of an installation): while one holds the
    lock the other is told at once, not made to wait; after it, the other takes it."""
    from mcred.db import make_engine

    first, second = make_engine(db_url), make_engine(db_url)
    try:
        with try_lock(first, tmp_path, "housekeeping") as held:
            assert held
            t0 = time.monotonic()
            with try_lock(second, tmp_path, "housekeeping") as other:
                assert other is False and time.monotonic() - t0 < 1
            with try_lock(second, tmp_path, "other-work") as unrelated:
                assert unrelated
        with try_lock(second, tmp_path, "housekeeping") as later:
            assert later
        with pytest.raises(ValueError, match="lock name"):
            with try_lock(first, tmp_path, "../x"):
                pass
    finally:
        first.dispose()
        second.dispose()


def _wait(condition, timeout: float = 15.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_service_schedule_runs_in_one_process_at_a_time_and_stops_with_the_app(db_url, tmp_path):
    """Two apps on one database (two workers of `mcred serve --workers 2`), each with its
    schedule: while another process runs housekeeping both skip their looks, nothing waits;
    after it, each run is made by one of them, never both at once. A task that fails at every
    run (the key store lost the TSA root's key) stops neither the schedule nor the service.
    Leaving the app stops the schedule's thread. A task run by one worker is not due for the
    other until the interval has passed."""
    from mcred.timestamps import time_stamp_authority

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    one, two, other = (Context(home=home, database=db_url, public_url=BASE) for _ in range(3))
    time_stamp_authority(one)
    one.keystore.destroy("tsa-root-g1")
    apps = [create_app(c, job_workers=1, housekeeping_interval=0.4) for c in (one, two)]
    keepers = [a.state.housekeeper for a in apps]
    try:
        with try_lock(other.engine, home, hk.LOCK_NAME) as held, TestClient(apps[0]), TestClient(apps[1]):
            assert held
            _wait(lambda: all(k.busy >= 1 for k in keepers))
            assert hk.last_runs(other) == {} and all(k.ran == 0 for k in keepers)
        assert all(k._thread is None for k in keepers)  # stopped with their apps

        with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
            _wait(lambda: sum(k.ran for k in keepers) >= 4)
            assert a.get("/readyz").status_code == b.get("/readyz").status_code == 200
            assert all(k._thread.is_alive() for k in keepers)
        assert all(k._thread is None for k in keepers)
        runs = sorted((start, end) for k in keepers for start, end in k.history)
        for (_start, end), (start, _end) in zip(runs, runs[1:], strict=False):
            assert end <= start, runs  # one at a time
        recorded = hk.last_runs(other)
        assert set(recorded) == {t.name for t in hk.TASKS}
        assert recorded["tsa"].failures == recorded["tsa"].runs >= 4 and not recorded["tsa"].last_ok
        assert all(r.last_ok for name, r in recorded.items() if name != "tsa")
        assert recorded["jpki"].last_runner == hk.serve_runner()
    finally:
        for app in apps:
            app.state.jobs.shutdown()
    for c in (one, two, other):
        c.engine.dispose()


def test_a_task_one_worker_ran_is_not_due_for_another_until_its_interval_has_passed(db_url, tmp_path):
    """Once per interval by the installation, not once per worker: the last run of each task
    is the installation's record, whichever process made it (a command line's too)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    one, two = (Context(home=home, database=db_url, public_url=BASE) for _ in range(2))
    try:
        daily = [hk.Housekeeper(c, 86400) for c in (one, two)]
        assert [r.task for r in daily[0].tick()] == [t.name for t in hk.TASKS]
        assert daily[1].tick() == [] and (daily[1].idle, daily[1].ran) == (1, 0)  # done by the other
        hk.run(one, hk.select_tasks(["vical"]), runner="cli:someone", actor="cli:someone")
        rows = hk.last_runs(one)
        scheduled = max(r.last_started_at for name, r in rows.items() if name != "vical")
        # due half a look (15 s) early, each by its own last run: vical, run since, is not yet
        at = scheduled + dt.timedelta(seconds=86400 - hk.CHECK_EVERY / 2)
        assert [t.name for t in hk.due(one, 86400, now=at)] == [t.name for t in hk.TASKS if t.name != "vical"]
        assert hk.due(one, 86400, now=at - dt.timedelta(seconds=1)) == []
        with pytest.raises(ValueError, match="above 0"):
            hk.Housekeeper(one, 0)
    finally:
        for c in (one, two):
            c.engine.dispose()


def _cli(*args: str):
    from mcred.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_the_command_line_runs_them_in_json_and_exits_1_when_one_failed(db_url, home, monkeypatch):
    """`mcred housekeeping tasks` lists the tasks with their last run; `mcred housekeeping run`
    runs them (all, or those --only names, in run order) and answers one JSON document: exit
    0 when each ran, 1 when one failed (the others ran), 1 when another process's run did not
    end within --wait, 2 for a task that does not exist."""
    from mcred.mdoc_flow import mdoc_service
    from mcred.timestamps import time_stamp_authority

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    monkeypatch.setenv("MCRED_ACTOR", "ops")
    listed = _cli("housekeeping", "tasks", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["task"] for r in rows] == [t.name for t in hk.TASKS]
    assert all(r["last_run_at"] is None and r["runs"] == 0 and r["what"] for r in rows)

    done = _cli("housekeeping", "run", "--json")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["ok"] is True and [t["task"] for t in doc["tasks"]] == [t.name for t in hk.TASKS]
    assert set(doc["tasks"][0]) == {"task", "ok", "changed", "did", "outcome", "error", "started_at", "seconds"}
    assert doc["tasks"][0]["outcome"].startswith("nothing due (no JPKI CA yet")

    ctx = Context.open(home)
    mdoc_service(ctx).vical()
    time_stamp_authority(ctx)
    ctx.keystore.destroy("tsa-root-g1")
    failed = _cli("housekeeping", "run", "--only", "vical", "--only", "tsa", "--json")
    assert failed.exit_code == 1, failed.output
    doc = json.loads(failed.stdout)
    assert doc["ok"] is False and [t["task"] for t in doc["tasks"]] == ["tsa", "vical"]
    tsa, vical = doc["tasks"]
    assert tsa["ok"] is False and tsa["error"].startswith("KeyNotFound") and tsa["outcome"] == tsa["error"]
    assert vical["ok"] is True and vical["changed"] is True and vical["error"] is None
    assert vical["did"] == ["signed CRL " + vical["did"][0].split()[2] + " of mdoc-vical-ca-1"]

    text = _cli("housekeeping", "run", "--only", "vical")
    assert text.exit_code == 0 and text.stdout.count("\n") == 1
    assert " ".join(text.stdout.split()).startswith("ok vical nothing due (the VICAL current, 1 VICAL CA CRL(s) "
                                                    "current) (")
    listed = {r["task"]: r for r in json.loads(_cli("housekeeping", "tasks", "--json").stdout)}
    assert (listed["tsa"]["runs"], listed["tsa"]["failures"], listed["tsa"]["last_ok"]) == (2, 1, False)
    assert listed["vical"]["last_runner"] == "cli:ops" and listed["vical"]["runs"] == 3
    said = " ".join(_cli("housekeeping", "tasks").stdout.split())
    assert "FAILED: KeyNotFound" in said and "never" not in said

    unknown = _cli("housekeeping", "run", "--only", "crls", "--json")
    assert unknown.exit_code == 2 and "no housekeeping task 'crls': the tasks are jpki, tsa" in json.loads(
        unknown.stdout)["error"]
    with try_lock(ctx.engine, home, hk.LOCK_NAME) as held:
        assert held
        busy = _cli("housekeeping", "run", "--wait", "0", "--json")
    assert busy.exit_code == 1 and "another process of this installation is running housekeeping" in json.loads(
        busy.stdout)["error"]
    assert hk.last_runs(ctx)["jpki"].runs == 1  # nothing ran then
    ctx.engine.dispose()


def test_mcred_serve_schedules_it_in_each_worker_and_0_turns_it_off(home, monkeypatch):
    """`mcred serve --housekeeping-interval S` (default 300): one process, its app's schedule;
    several, each worker's through $MCRED_HOUSEKEEPING_INTERVAL, which the uvicorn factory
    reads (a value that is no number of seconds stops it, named); 0: none."""
    import uvicorn

    from mcred.housekeeping import INTERVAL_ENV
    from mcred.service import app_from_env

    monkeypatch.setenv(INTERVAL_ENV, "unset")
    monkeypatch.setenv("MCRED_SERVE_WORKERS", "1")
    ran = []  # the edge: no server, what it would have served
    monkeypatch.setattr(uvicorn, "run",
                        lambda *a, **k: ran.append((a, k, {INTERVAL_ENV: os.environ.get(INTERVAL_ENV)})))
    port = free_port()
    assert _cli("serve", "--port", str(port)).exit_code == 0
    assert _cli("serve", "--port", str(port), "--housekeeping-interval", "0").exit_code == 0
    assert _cli("serve", "--port", str(port), "--workers", "2", "--housekeeping-interval", "60").exit_code == 0
    (default, _, _), (off, _, _), (workers, kwargs, env) = ran
    assert default[0].state.housekeeper.interval == 300 and off[0].state.housekeeper is None
    assert workers == ("mcred.service:app_from_env",) and kwargs["workers"] == 2 and env == {INTERVAL_ENV: "60.0"}
    for value, interval in (("60.0", 60.0), ("0", None), ("", 300.0)):
        monkeypatch.setenv(INTERVAL_ENV, value)
        served = app_from_env()
        assert (served.state.housekeeper.interval if served.state.housekeeper else None) == interval
        served.state.jobs.shutdown()
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(SystemExit) as stopped:
        app_from_env()
    assert stopped.value.code == 2
