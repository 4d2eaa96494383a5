"""An IACA revoked (specs/issuer-keys.md, "An IACA revoked"): a root cannot be listed on a CRL
(its own would be signed by the key in question), so it is taken out of trust: out of the
trust bundle (/trust/iaca.pem) and the VICAL at once, and its key signs nothing more (no
signer, CRL or status list: 410 iaca-withdrawn). The current IACA is replaced in the same
transaction by the staged generation (a reader that took the bundle since the staging goes
on verifying the new mdocs without a trust update) or by a new one; the phones holding
mdocs under it are named, and ``mcred mdoc reissue --signer`` gives each new MSOs. Both
database backends."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from test_iaca_rollover import BASE, NOW, _issue, _present, _reader, world  # noqa: F401 - a fixture

from issuer.db import AuditEvent
from issuer.mdoc.errors import IacaWithdrawn, SignerRevocationError, UnknownIaca
from mcred.present import reader_pipeline
from reader.ds_crl import DsCrlCheck
from reader.pipeline import HttpAnswer
from reader.trust import TrustAnchor, TrustStore


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _answer(client, url: str) -> HttpAnswer:
    got = client.get(url.removeprefix(BASE))
    return HttpAnswer(got.status_code, got.content, dict(got.headers))


def _vical_iacas(client, now) -> list[x509.Certificate]:
    cas = x509.load_pem_x509_certificates(client.get("/trust/vical-ca.pem").content)
    trust = TrustStore()
    trust.import_vical(client.get("/trust/vical").content, vical_anchors=cas, now=now)
    return trust.certificates


def test_the_current_iaca_revoked_leaves_trust_and_the_staged_one_takes_over(world):  # noqa: F811
    svc, sessions, clock, client = world
    old_key, old = _issue(svc, "phone-1", "job-1")
    first = svc.iaca_certificate()
    clock.now = NOW + dt.timedelta(days=1)
    staged = svc.stage_iaca()
    bundle = x509.load_pem_x509_certificates(client.get("/trust/iaca.pem").content)
    assert bundle == [first, staged.certificate]
    held: list[str] = []
    before = _reader(client, clock, bundle, held)  # took the bundle after the staging
    data, st = _present(old, old_key)
    assert before.verify(data, session_transcript=st).valid

    clock.now = NOW + dt.timedelta(days=2)
    done = svc.revoke_iaca("1", "cACompromise", actor="test")
    assert done.changed and done.amended_from is None
    assert (done.info.label, done.info.reason, done.info.revoked_at) == ("mdoc-iaca-1", "cACompromise", clock.now)
    assert done.info.affected_mdocs == 1 and done.affected_phones == ("phone-1",)
    assert sorted(done.retired_signers) == ["mdoc-ds-1", "mdoc-status-1"]
    r = done.successor
    assert r is not None and r.iaca.certificate == staged.certificate
    assert r.staged_since == NOW + dt.timedelta(days=1)
    assert r.ds.certificate.issuer == r.status_signer.certificate.issuer == staged.certificate.subject

    # out of the bundle and the VICAL; the staged one is current
    assert svc.trusted_iacas() == [staged.certificate]
    assert x509.load_pem_x509_certificates(client.get("/trust/iaca.pem").content) == [staged.certificate]
    assert _vical_iacas(client, clock.now) == [staged.certificate]
    assert svc.iaca_certificate() == staged.certificate
    iacas = {i.label: (i.active, i.reason) for i in svc.signers("iaca")}
    assert iacas == {"mdoc-iaca-1": (False, "cACompromise"), "mdoc-iaca-2": (True, None)}
    # its key signs nothing more: no CRL, no status list (their URLs answer 410)
    for url in ("/trust/iaca.crl", old.mso().status.status_list.uri.removeprefix(BASE)):
        got = client.get(url)
        assert got.status_code == 410, (url, got.text)
        assert got.json()["type"].endswith("iaca-withdrawn") and "mdoc-iaca-1" in got.json()["detail"]
    with pytest.raises(IacaWithdrawn):
        svc.iaca_crl(1)
    # the certificate itself stays published by its generation (what it was is no secret);
    # /trust/iaca.der is the current one
    assert x509.load_der_x509_certificate(client.get("/trust/iaca-1.der").content) == first
    assert x509.load_der_x509_certificate(client.get("/trust/iaca.der").content) == staged.certificate

    # issuance goes on under the staged IACA, which the reader that took the bundle holds
    new_key, new = _issue(svc, "phone-2", "job-2")
    assert new.issuer_auth.x5chain and x509.load_der_x509_certificate(
        new.issuer_auth.x5chain[0]).issuer == staged.certificate.subject
    data, st = _present(new, new_key)
    result = before.verify(data, session_transcript=st)
    assert result.valid, [c for c in result.checks if not c.passed]
    # a reader of the bundle now refuses the old mdoc on its chain
    after = _reader(client, clock, [staged.certificate], [])
    data, st = _present(old, old_key)
    result = after.verify(data, session_transcript=st)
    assert not result.valid
    assert [c.name for c in result.checks if not c.passed][0] == "issuer_certificate_chain"
    # and one that never took the bundle again, still trusting the revoked IACA, finds its
    # status list and CRL gone, and refuses it too
    stale = reader_pipeline(trust=TrustStore([TrustAnchor(first), TrustAnchor(staged.certificate)]),
                            clock=lambda: clock.now + dt.timedelta(minutes=1),
                            fetcher=lambda uri, etag: _answer(client, uri), require_status=True,
                            ds_crl=DsCrlCheck(lambda url: _answer(client, url).body))
    result = stale.verify(data, session_transcript=st)
    failed = {c.name: c.reason for c in result.checks if not c.passed}
    assert not result.valid and "revocation_status" in failed, failed

    with sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="mdoc.iaca.revoke").all()
    assert (event.subject, event.actor) == ("mdoc-iaca-1", "test")
    assert event.detail["reason"] == "cACompromise" and event.detail["affected_phones"] == 1
    assert event.detail["successor"]["label"] == "mdoc-iaca-2"

    # again: nothing changes, whatever the reason (a compromise is never undone)
    for reason in ("cACompromise", "keyCompromise", "superseded"):
        again = svc.revoke_iaca("mdoc-iaca-1", reason)
        assert not again.changed and again.info.reason == "cACompromise" and again.successor is None


def test_the_current_iaca_revoked_with_none_staged_gets_a_new_one_and_a_compromise_amends(world):  # noqa: F811
    svc, sessions, clock, client = world
    first, _ds, _status = svc.setup()
    done = svc.revoke_iaca(_serial(first.certificate), "cessationOfOperation")
    r = done.successor
    assert r is not None and r.staged_since is None and r.iaca.label == "mdoc-iaca-2"
    assert svc.trusted_iacas() == [r.iaca.certificate] and done.affected_phones == ()
    assert svc.document_signer().iaca_label == "mdoc-iaca-2"

    clock.now = NOW + dt.timedelta(hours=1)
    amended = svc.revoke_iaca("mdoc-iaca-1", "cACompromise", actor="test")
    assert amended.changed and amended.amended_from == "cessationOfOperation"
    assert amended.info.reason == "cACompromise" and amended.info.revoked_at == NOW  # its time kept
    assert amended.successor is None and svc.iaca_certificate() == r.iaca.certificate
    with sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="mdoc.iaca.revoke.amend").all()
    assert event.detail["previous_reason"] == "cessationOfOperation"


def test_a_retired_or_staged_iaca_revoked_leaves_the_bundle_alone(world):  # noqa: F811
    svc, _sessions, clock, _client = world
    _issue(svc, "phone-1", "job-1")
    first = svc.iaca_certificate()
    clock.now = NOW + dt.timedelta(days=1)
    second = svc.rollover().iaca
    staged = svc.stage_iaca()
    assert svc.trusted_iacas() == [second.certificate, staged.certificate, first]

    done = svc.revoke_iaca(3, "superseded")  # the staged one
    assert done.changed and done.successor is None and done.retired_signers == ()
    assert svc.trusted_iacas() == [second.certificate, first] and svc.staged_iaca() is None
    done = svc.revoke_iaca(1, "cACompromise")  # the retired one, whose mdoc is still valid
    assert done.successor is None and done.affected_phones == ("phone-1",)
    assert svc.trusted_iacas() == [second.certificate]
    assert svc.iaca_certificate() == second.certificate and svc.document_signer().iaca_label == "mdoc-iaca-2"
    # a later staging makes generation 4: a revoked generation is never started
    assert svc.stage_iaca().label == "mdoc-iaca-4"


def test_a_revocation_refused_says_why_and_changes_nothing(world):  # noqa: F811
    svc, _sessions, _clock, _client = world
    first = svc.iaca_certificate()
    with pytest.raises(SignerRevocationError, match="certificateHold.*cACompromise"):
        svc.revoke_iaca(1, "certificateHold")
    for ref in ("9", "mdoc-iaca-9", "ffff", "not a serial"):
        with pytest.raises(UnknownIaca, match="no IACA generation"):
            svc.revoke_iaca(ref, "cACompromise")
    assert svc.trusted_iacas() == [first] and all(i.revoked_at is None for i in svc.signers("iaca"))


def test_a_stand_alone_reader_following_the_vical_drops_a_revoked_iaca_at_its_next_reload(world, tmp_path):  # noqa: F811
    """`mcred reader serve --vical http://ISSUER/trust/vical`: the revoked IACA leaves its
    trust at the next reload (30 s), with no restart and no operator at the reader, and its
    mdocs are refused from then on; the staged IACA that took over stays."""
    from test_vical_publication import _following_reader, _issuer_app, _served

    svc, _sessions, _clock, client = world
    key, signed = _issue(svc, "phone-1", "job-1")
    first = svc.iaca_certificate()
    staged = svc.stage_iaca()
    with _served(_issuer_app(svc)) as url:
        verifier, ticks, _what = _following_reader(f"{url}/trust/vical", client, tmp_path)
        assert verifier.trust().certificates == [first, staged.certificate]
        svc.revoke_iaca(1, "cACompromise")
        ticks.t = 31.0
        verifier.trust()
        verifier.refresher.join(10)
        assert verifier.trust().certificates == [staged.certificate] and verifier.reloads == 1
        assert verifier.last_error is None


def test_a_revocation_asked_again_amends_nothing_and_says_so(world):  # noqa: F811
    """An IACA revoked already, asked again with a reason that amends nothing: ``changed``
    false and ``amended_from`` (the reason a compromise replaced) null, as for a signer.
    ``amended_from`` named the reason still recorded, so that POST /trust/iaca-revocations
    and ``mcred mdoc iaca revoke --json`` answered an amendment that was not made (the
    lifecycle model found it)."""
    svc, sessions, _clock, _client = world
    svc.setup()
    svc.revoke_iaca(1, "superseded")
    for reason in ("superseded", "unspecified"):
        again = svc.revoke_iaca(1, reason)
        assert not again.changed and again.amended_from is None, again
        assert again.to_json()["amended_from"] is None and again.info.reason == "superseded"
    amended = svc.revoke_iaca(1, "cACompromise")
    assert amended.changed and amended.amended_from == "superseded"
    for reason in ("cACompromise", "keyCompromise", "superseded"):
        again = svc.revoke_iaca(1, reason)
        assert not again.changed and again.amended_from is None and again.info.reason == "cACompromise", again
    with sessions() as s:
        assert s.query(AuditEvent).filter_by(action="mdoc.iaca.revoke.amend").count() == 1
