"""A staged IACA rollover (specs/issuer-keys.md, "Publish before use"): the next IACA is made
and published in the trust bundle while the current one goes on issuing; a reader that took
the bundle then verifies the first mdocs of the new IACA without a trust update; the rollover
starts the staged IACA (the same certificate), with its signers. Both database backends."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from documented import check_every_answer
from fastapi.testclient import TestClient
from test_iaca_rollover import BASE, NOW, _issue, _present, _reader, world  # noqa: F401 - a fixture
from typer.testing import CliRunner

from issuer.api import problems
from issuer.db import AuditEvent
from issuer.mdoc.errors import IacaAlreadyStaged, MdocKeyError, MdocKeysMissing


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def test_a_staged_iaca_is_in_the_bundle_before_it_vouches_and_the_rollover_starts_it(world):  # noqa: F811
    svc, sessions, clock, client = world
    old_key, old = _issue(svc, "phone-1", "job-1")
    first = svc.iaca_certificate()

    clock.now = NOW + dt.timedelta(days=1)
    staged = svc.stage_iaca(actor="test")
    assert staged.label == "mdoc-iaca-2" and staged.iaca_label is None
    assert staged.certificate.not_valid_before_utc == clock.now - dt.timedelta(minutes=5)
    # published at once, beside the current one, which goes on issuing alone
    bundle = x509.load_pem_x509_certificates(client.get("/trust/iaca.pem").content)
    assert bundle == [first, staged.certificate]
    assert x509.load_der_x509_certificate(client.get("/trust/iaca-2.der").content) == staged.certificate
    assert x509.load_der_x509_certificate(client.get("/trust/iaca.der").content) == first
    assert client.get("/trust/iaca-2.crl").status_code == 200  # its (empty) CRL, before its first signer
    assert svc.iaca_certificate() == first and svc.document_signer().iaca_label == "mdoc-iaca-1"
    assert not any(s.iaca == "mdoc-iaca-2" for s in svc.signers() + svc.signers("status-signer"))
    info = svc.staged_iaca()
    assert info is not None and (info.label, info.active, info.serial) == ("mdoc-iaca-2", False, _serial(staged.certificate))
    with pytest.raises(IacaAlreadyStaged, match="mdoc-iaca-2 is already staged"):
        svc.stage_iaca()

    # a reader that took the bundle now, and is never told again
    fetched: list[str] = []
    reader = _reader(client, clock, bundle, fetched)

    clock.now = NOW + dt.timedelta(days=30)
    r = svc.rollover(actor="test")
    assert r.iaca.label == "mdoc-iaca-2" and r.iaca.certificate == staged.certificate  # the one readers hold
    assert r.staged_since == NOW + dt.timedelta(days=1)
    assert (r.ds.iaca_label, r.status_signer.iaca_label) == ("mdoc-iaca-2", "mdoc-iaca-2")
    assert svc.staged_iaca() is None and svc.iaca_certificate() == staged.certificate
    assert svc.trusted_iacas() == [staged.certificate, first]
    iacas = {i.label: i.active for i in svc.signers("iaca")}
    assert iacas == {"mdoc-iaca-1": False, "mdoc-iaca-2": True}
    new_key, new = _issue(svc, "phone-2", "job-2")
    assert x509.load_der_x509_certificate(new.issuer_auth.x5chain[0]).issuer == staged.certificate.subject
    for key, signed in ((old_key, old), (new_key, new)):
        data, st = _present(signed, key)
        result = reader.verify(data, session_transcript=st)
        assert result.valid, [c for c in result.checks if not c.passed]
    assert f"{BASE}/trust/iaca-2.crl" in fetched

    with sessions() as s:
        events = {e.action: e for e in s.query(AuditEvent).filter(AuditEvent.action.like("mdoc.iaca.%"))}
    assert events["mdoc.iaca.stage"].subject == "mdoc-iaca-2" and events["mdoc.iaca.stage"].actor == "test"
    assert events["mdoc.iaca.stage"].detail == {"current": "mdoc-iaca-1", "serial": _serial(staged.certificate)}
    assert events["mdoc.iaca.rollover"].detail == {
        "previous": "mdoc-iaca-1", "serial": _serial(staged.certificate), "ds": r.ds.label,
        "status_signer": r.status_signer.label, "staged_since": (NOW + dt.timedelta(days=1)).isoformat()}

    # the next rollover without a stage makes a new generation, as before
    r3 = svc.rollover()
    assert r3.iaca.label == "mdoc-iaca-3" and r3.staged_since is None


def test_staging_needs_a_current_iaca_and_a_staged_one_left_unstarted_leaves_the_bundle_at_its_end(world):  # noqa: F811
    svc, _sessions, clock, _client = world
    with pytest.raises(MdocKeysMissing, match="no IACA yet"):
        svc.stage_iaca()
    first = svc.iaca_certificate()
    staged = svc.stage_iaca()
    assert svc.trusted_iacas() == [first, staged.certificate]
    clock.now = staged.certificate.not_valid_after_utc  # never started, and ended (first ended before it)
    assert svc.staged_iaca() is None
    assert staged.certificate not in svc.trusted_iacas()


def test_a_staged_iaca_in_its_own_last_months_is_no_more_staged(world):  # noqa: F811
    """A staged IACA left unstarted until its own last months (its 90 days' rollover margin)
    can vouch for nothing: no document signer is made under it. The rollover had tried to
    start it and failed on that, naming the rollover itself, and a new staging was refused
    (one staged): no IACA could be started until it ended, up to 90 days without issuance.
    It is no more staged then: it leaves the bundle, the rollover makes a new IACA, and a
    new staging is taken."""
    svc, _sessions, clock, client = world
    first = svc.iaca_certificate()
    clock.now = NOW + dt.timedelta(days=1)
    staged = svc.stage_iaca()
    end = staged.certificate.not_valid_after_utc
    clock.now = end - dt.timedelta(days=91)  # still startable (the first IACA has ended)
    assert svc.staged_iaca() is not None and svc.trusted_iacas() == [first, staged.certificate]
    clock.now = end - dt.timedelta(days=30)
    assert svc.staged_iaca() is None
    assert staged.certificate not in svc.trusted_iacas()
    assert staged.certificate not in x509.load_pem_x509_certificates(client.get("/trust/iaca.pem").content)
    again = svc.stage_iaca()  # one can be staged again
    assert again.label == "mdoc-iaca-3" and svc.trusted_iacas() == [first, again.certificate]
    r = svc.rollover()
    assert r.iaca.certificate == again.certificate and r.staged_since == clock.now
    assert r.ds.certificate.issuer == again.certificate.subject


def test_a_rollover_past_a_staged_iaca_in_its_last_months_makes_a_new_one(world):  # noqa: F811
    svc, _sessions, clock, _client = world
    svc.iaca_certificate()
    staged = svc.stage_iaca()
    clock.now = staged.certificate.not_valid_after_utc - dt.timedelta(days=30)
    r = svc.rollover()
    assert r.iaca.label == "mdoc-iaca-3" and r.staged_since is None
    assert svc.document_signer().certificate.issuer == r.iaca.certificate.subject
    assert svc.trusted_iacas() == [r.iaca.certificate]


def test_a_staged_iaca_in_the_current_ones_last_months_and_the_refusal_names_it(world):  # noqa: F811
    """In the current IACA's last months issuance stops, naming the rollover, which starts the
    staged IACA; issuance then goes on under it."""
    svc, _sessions, clock, _client = world
    first = svc.iaca_certificate()
    clock.now = first.not_valid_after_utc - dt.timedelta(days=200)
    staged = svc.stage_iaca()
    clock.now = first.not_valid_after_utc - dt.timedelta(days=30)
    with pytest.raises(MdocKeyError, match="starts the staged next IACA"):
        svc.document_signer()
    assert "starts the staged next IACA" in svc.issuance_refusal()
    r = svc.rollover()
    assert r.iaca.certificate == staged.certificate and r.staged_since is not None
    assert svc.issuance_refusal() is None
    assert svc.document_signer().certificate.issuer == staged.certificate.subject


def test_cli_stage_list_and_rollover(home):
    from mcred.cli.main import app as cli

    def run(*args: str, code: int = 0) -> str:
        out = CliRunner().invoke(cli, list(args))
        assert out.exit_code == code, out.output
        return out.output + (out.stderr if code else "")

    staged = json.loads(run("mdoc", "iaca", "stage", "--json"))
    assert (staged["label"], staged["current"]) == ("mdoc-iaca-2", "mdoc-iaca-1")
    listed = {r["label"]: r for r in json.loads(run("mdoc", "iaca", "list", "--json"))}
    assert (listed["mdoc-iaca-2"]["state"], listed["mdoc-iaca-2"]["trusted"]) == ("staged", True)
    assert (listed["mdoc-iaca-1"]["state"], listed["mdoc-iaca-1"]["active"]) == ("current", True)
    assert "staged: in the trust bundle" in run("mdoc", "iaca", "list")
    refused = run("mdoc", "iaca", "stage", code=2)  # refused before anything was made
    assert "already staged" in refused and "mcred mdoc iaca rollover" in refused
    assert "already staged" in json.loads(run("mdoc", "iaca", "stage", "--json", code=2))["error"]
    text = run("mdoc", "iaca", "rollover")
    assert "staged IACA mdoc-iaca-2 started" in text and "in the trust bundle since" in text
    listed = {r["label"]: r["state"] for r in json.loads(run("mdoc", "iaca", "list", "--json"))}
    assert listed == {"mdoc-iaca-1": "retired", "mdoc-iaca-2": "current"}
    rolled = json.loads(run("mdoc", "iaca", "rollover", "--json"))
    assert (rolled["label"], rolled["staged_since"]) == ("mdoc-iaca-3", None)


def test_http_stage_is_operator_only_documented_and_refused_twice(home):
    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.service import create_app

    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    client = TestClient(app)
    checked = check_every_answer(client, app)
    op = {"Authorization": "Bearer " + create_token(ctx.sessions, ["operator"], "op")[1]}
    issuer = {"Authorization": "Bearer " + create_token(ctx.sessions, ["issuer"], "is")[1]}
    try:
        assert client.post("/trust/iaca-stage").status_code == 401
        assert client.post("/trust/iaca-stage", headers=issuer).status_code == 403
        r = client.post("/trust/iaca-stage", headers=op)
        assert r.status_code == 200, r.text
        assert (r.json()["label"], r.json()["current"]) == ("mdoc-iaca-2", "mdoc-iaca-1")
        bundle = x509.load_pem_x509_certificates(client.get("/trust/iaca.pem").content)
        assert [_serial(c) for c in bundle][1] == r.json()["serial"]
        again = client.post("/trust/iaca-stage", headers=op)
        assert again.status_code == 409 and again.json()["type"] == problems.IACA_ALREADY_STAGED.uri
        rolled = client.post("/trust/iaca-rollover", headers=op)
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["serial"] == r.json()["serial"] and rolled.json()["staged_since"]
        assert {"POST /trust/iaca-stage 200", "POST /trust/iaca-stage 409"} <= set(checked)
    finally:
        app.state.jobs.shutdown()


def test_doctor_names_the_staged_iaca_in_the_current_ones_last_months(home):
    from mcred.context import Context
    from mcred.doctor import _mdoc_iaca
    from mcred.mdoc_flow import mdoc_service

    ctx = Context.open(home)
    svc = mdoc_service(ctx)
    end = svc.iaca_certificate().not_valid_after_utc
    late = end - dt.timedelta(days=200)
    finding = _mdoc_iaca(ctx, now=late)
    assert not finding.ok and "mcred mdoc iaca stage" in finding.fix
    svc.stage_iaca()
    finding = _mdoc_iaca(ctx, now=late)
    assert not finding.ok and "mdoc-iaca-2 staged" in finding.detail
    assert finding.fix.startswith("start mdoc-iaca-2") and "mcred mdoc iaca rollover" in finding.fix
    assert _mdoc_iaca(ctx).ok and "mdoc-iaca-2 staged" in _mdoc_iaca(ctx).detail


def test_two_operators_staging_at_once_make_one_staged_iaca(world, monkeypatch):  # noqa: F811
    """The second staging waits for the first (the IACA rows locked: FOR UPDATE on
    PostgreSQL, the write lock taken first on SQLite) and finds the IACA staged: refused,
    nothing else made. The window between reading "nothing staged" and making the next
    generation is widened here; without the lock both read "nothing staged" and the second
    made a generation further (seen once in CI on SQLite, whose driver reads outside any
    transaction until the first write)."""
    import threading
    import time

    from issuer.mdoc.pki import MdocPki

    svc, _sessions, _clock, _client = world
    svc.setup()
    read = MdocPki.staged_iaca

    def slow(self, session, now):  # noqa: ANN001, ANN202
        found = read(self, session, now)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(MdocPki, "staged_iaca", slow)
    barrier = threading.Barrier(2)
    out: list[object] = []

    def stage() -> None:
        barrier.wait()
        try:
            out.append(svc.stage_iaca())
        except IacaAlreadyStaged as exc:
            out.append(exc)

    threads = [threading.Thread(target=stage) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(type(x).__name__ for x in out) == ["ActiveKey", "IacaAlreadyStaged"], out
    assert [i.label for i in svc.signers("iaca")] == ["mdoc-iaca-1", "mdoc-iaca-2"]
    assert svc.staged_iaca().label == "mdoc-iaca-2"
