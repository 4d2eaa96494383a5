"""The VICAL CA rolled over, and withdrawn when compromised (specs/issuer-keys.md, "The VICAL",
"The VICAL CA rolled over or withdrawn"): ``mcred mdoc vical-ca rollover [--compromised]``,
POST /trust/vical-ca-rollover. A new CA generation and a VICAL signer under it; the published
VICAL re-signed by it in the same transaction, its issue ID higher than any before. Without
``--compromised`` the CA before is retired (listed in /trust/vical-ca.pem while its signer is
valid, its CRL served); with it the CA is withdrawn (out of /trust/vical-ca.pem at once, its
CRL 410, its signers revoked, its key destroyable at once). A reader following the VICAL takes
the new one under the new anchor, and refuses it, naming the CA it lacks and where the new one
is published, with only the old anchor (keeping the trust it had). Both database backends."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os

import pytest
from api_helpers import bearer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from documented import check_every_answer
from fastapi.testclient import TestClient
from test_iaca_rollover import BASE, NOW, world  # noqa: F401 - a fixture
from test_vical_publication import _crl_fetch, _following_reader, _payload, _Published, _served
from test_vical_signer_revocation import _attacker_iaca, _signer_of
from typer.testing import CliRunner

from issuer.db import AuditEvent
from issuer.mdoc.errors import CaDutiesRemain, SignerStillSigning, UnknownVicalCa, VicalCaWithdrawn
from protocols import iaca
from protocols.cose import key_signer
from protocols.mdoc.vical import VicalEntry, sign_vical, vical_payload
from reader.trust import TrustError, TrustStore, VicalAnchorMissing
from reader.vical_crl import VicalSignerCheck

DOCTYPE = "jp.mcred.mynumber.cardsub.1"
PROVIDER = "mcred simulated issuing authority"


def _cas(client) -> list[x509.Certificate]:  # noqa: ANN001
    return x509.load_pem_x509_certificates(client.get("/trust/vical-ca.pem").content)


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _forged_under(svc, ca_label: str, at: dt.datetime, issue_id: int, *, crl_uri: str | None) -> bytes:  # noqa: ANN001
    """A VICAL listing an attacker's IACA, signed by a signer the key of VICAL CA ``ca_label``
    certifies, as whoever holds that key would make one (the key used through the issuer's key
    store); its signer names ``crl_uri`` as its CRL distribution point (None: none)."""
    from issuer.db import IssuerKey
    from issuer.mdoc.txn import run_transaction

    ca = run_transaction(svc.sessions, lambda s: x509.load_der_x509_certificate(s.get(IssuerKey, ca_label).certificate))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = svc.pki.keystore.signer(ca_label).sign_certificate(iaca.vical_signer_builder(
        key.public_key(), ca, common_name="thief's VICAL signer", not_before=at - dt.timedelta(minutes=1),
        not_after=at + dt.timedelta(days=30), crl_uri=crl_uri))
    entries = [VicalEntry(c, (DOCTYPE,), PROVIDER) for c in [*svc.trusted_iacas(), _attacker_iaca()]]
    payload = vical_payload(PROVIDER, at, entries, issue_id=issue_id, next_update=at + dt.timedelta(hours=24))
    return sign_vical(payload, key_signer(key), [cert.public_bytes(Encoding.DER)])


def test_a_rollover_retires_the_old_ca_and_the_vical_is_re_signed_under_the_new_one(world):  # noqa: F811
    """Without --compromised: CA 2 and its signer made, the VICAL re-signed by it at once
    (issue ID higher), CA 1 still in /trust/vical-ca.pem while its signer is valid, its CRL
    still served, its key kept for that duty; a reader with the bundle of both takes the new
    VICAL, one with CA 1 alone refuses it naming CA 2 and the anchors it holds."""
    svc, sessions, clock, client = world
    with pytest.raises(UnknownVicalCa, match="no VICAL CA yet"):
        svc.rollover_vical_ca(actor="test")
    first = client.get("/trust/vical").content
    (ca1,) = _cas(client)
    clock.now = NOW + dt.timedelta(minutes=5)
    done = svc.rollover_vical_ca(actor="test")
    assert not done.withdrawn and done.revoked_signers == () and done.retired_signers == ("mdoc-vical-signer-1",)
    assert (done.previous.label, done.previous.state, done.previous.trusted) == ("mdoc-vical-ca-1", "retired", True)
    assert (done.current.label, done.current.state, done.current.crl) == (
        "mdoc-vical-ca-2", "current", f"{BASE}/trust/vical-ca-2.crl")
    assert done.signing.label == "mdoc-vical-signer-2" and done.current.signers == ("mdoc-vical-signer-2",)
    assert done.vical_issue_id > _payload(first)["vicalIssueID"]
    served = client.get("/trust/vical").content
    assert _payload(served)["vicalIssueID"] == done.vical_issue_id  # re-signed in the same transaction
    assert _payload(served)["certificateInfos"] == _payload(first)["certificateInfos"]
    ca2, old = _cas(client)
    assert old == ca1 and "mcred VICAL CA 2" in ca2.subject.rfc4514_string()
    signer2 = _signer_of(served)
    signer2.verify_directly_issued_by(ca2)
    assert format(signer2.serial_number, "x") == done.signing.serial
    assert client.get("/trust/vical-ca.crl").status_code == 200  # CA 1's CRL: its signer may still be looked up
    crl2 = x509.load_der_x509_crl(client.get("/trust/vical-ca-2.crl").content)
    assert crl2.is_signature_valid(ca2.public_key()) and len(crl2) == 0
    with sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="mdoc.vical-ca.rollover").all()
    assert (event.actor, event.subject) == ("test", "mdoc-vical-ca-2")
    assert event.detail["previous"] == "mdoc-vical-ca-1" and event.detail["compromised"] is False
    assert event.detail["vical_issue_id"] == done.vical_issue_id and event.detail["signing"] == "mdoc-vical-signer-2"
    # the keys: the new CA signs now, the old one still has its CRL to sign
    with pytest.raises(SignerStillSigning, match="mcred mdoc vical-ca rollover"):
        svc.destroy_key("mdoc-vical-ca-2")
    with pytest.raises(CaDutiesRemain, match="mdoc-vical-signer-1"):
        svc.destroy_key("mdoc-vical-ca-1")

    check = VicalSignerCheck(_crl_fetch(client))
    took = TrustStore().import_vical(served, vical_anchors=[ca2, ca1], now=clock.now, signer_revocation=check)
    assert took.issue_id == done.vical_issue_id and took.imported == 1
    assert TrustStore().import_vical(first, vical_anchors=[ca2, ca1], now=clock.now, signer_revocation=check).imported
    with pytest.raises(VicalAnchorMissing) as refused:
        TrustStore().import_vical(served, vical_anchors=[ca1], now=clock.now, signer_revocation=check)
    said = str(refused.value)
    assert "mcred VICAL CA 2" in said and "not among the 1 VICAL anchor(s)" in said and "mcred VICAL CA 1" in said
    assert refused.value.issuer == ca2.subject.rfc4514_string()
    assert refused.value.key_id == ca2.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_a_compromise_rollover_withdraws_the_old_ca_at_once(world):  # noqa: F811
    """--compromised: CA 1 leaves /trust/vical-ca.pem at once, its signer is revoked with it
    (cACompromise), its CRL answers 410 vical-ca-withdrawn (its key signs nothing more), its key
    may be destroyed at once; the VICAL is signed under CA 2, which a reader given the new
    anchor takes. Whoever holds CA 1's key can still certify a signer: a reader that took the
    new anchor refuses its VICAL on the chain, one still holding CA 1 cannot look its signer up
    any more (fail closed); only a signer naming no CRL slips past the old anchor."""
    svc, sessions, clock, client = world
    first = client.get("/trust/vical").content
    (ca1,) = _cas(client)
    clock.now = NOW + dt.timedelta(minutes=5)
    done = svc.rollover_vical_ca(compromised=True, actor="test")
    assert done.withdrawn and done.revoked_signers == ("mdoc-vical-signer-1",) and done.retired_signers == ()
    assert (done.previous.state, done.previous.trusted, done.previous.reason, done.previous.revoked_at) == (
        "withdrawn", False, "cACompromise", clock.now)
    (ca2,) = _cas(client)  # the old CA out of the anchors at once
    assert ca2 != ca1 and done.current.serial == format(ca2.serial_number, "x")
    served = client.get("/trust/vical").content
    assert _payload(served)["vicalIssueID"] == done.vical_issue_id > _payload(first)["vicalIssueID"]
    _signer_of(served).verify_directly_issued_by(ca2)
    signers = {s.label: s for s in svc.vical_signers()}
    assert (signers["mdoc-vical-signer-1"].reason, signers["mdoc-vical-signer-1"].revoked_at) == (
        "cACompromise", clock.now)
    assert signers["mdoc-vical-signer-2"].active and signers["mdoc-vical-signer-2"].ca == "mdoc-vical-ca-2"
    # a VICAL signer revoked with its CA is revoked for a compromise: keyCompromise amends nothing
    assert not svc.revoke_vical_signer("mdoc-vical-signer-1", "keyCompromise").changed
    r = client.get("/trust/vical-ca.crl")
    assert r.status_code == 410 and r.json()["type"] == "/problems/vical-ca-withdrawn", r.text
    with pytest.raises(VicalCaWithdrawn, match="withdrawn"):
        svc.vical_ca_crl(1)
    assert [(c.label, c.state, c.trusted) for c in svc.vical_ca_list()] == [
        ("mdoc-vical-ca-1", "withdrawn", False), ("mdoc-vical-ca-2", "current", True)]
    with sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="mdoc.vical-ca.rollover").all()
    assert event.detail["compromised"] is True and event.detail["revoked_signers"] == ["mdoc-vical-signer-1"]

    check = VicalSignerCheck(_crl_fetch(client))
    assert TrustStore().import_vical(served, vical_anchors=[ca2], now=clock.now, signer_revocation=check).imported
    with pytest.raises(VicalAnchorMissing, match="mcred VICAL CA 2"):
        TrustStore().import_vical(served, vical_anchors=[ca1], now=clock.now, signer_revocation=check)
    forged = _forged_under(svc, "mdoc-vical-ca-1", clock.now, done.vical_issue_id + 5,
                           crl_uri=f"{BASE}/trust/vical-ca.crl")
    with pytest.raises(VicalAnchorMissing, match="mcred VICAL CA 1"):  # the new anchor alone
        TrustStore().import_vical(forged, vical_anchors=[ca2], now=clock.now, signer_revocation=check)
    with pytest.raises(TrustError, match="cannot be looked up.*HTTP 410"):  # the old anchor: its CRL is gone
        TrustStore().import_vical(forged, vical_anchors=[ca1], now=clock.now, signer_revocation=check)
    bare = _forged_under(svc, "mdoc-vical-ca-1", clock.now, done.vical_issue_id + 6, crl_uri=None)
    assert TrustStore().import_vical(bare, vical_anchors=[ca1], now=clock.now, signer_revocation=check).imported == 2

    # the key-compromise procedure's end: the withdrawn CA's key (and its signer's) go at once
    gone = svc.destroy_key("mdoc-vical-ca-1", actor="test")
    assert gone.changed and not svc.pki.keystore.has("mdoc-vical-ca-1")
    assert svc.destroy_key("mdoc-vical-signer-1").changed
    assert client.get("/trust/vical-ca.crl").json()["type"] == "/problems/vical-ca-withdrawn"
    assert client.get("/trust/vical").content == served
    (listed, _) = svc.vical_ca_list()
    assert listed.key_destroyed_at == clock.now


def test_the_reader_following_the_vical_refuses_it_under_an_anchor_it_lacks_and_keeps_its_trust(world, tmp_path):  # noqa: F811
    """`mcred reader serve --vical URL --vical-trust CA.pem` with CA 1 alone: after a compromise
    rollover the new VICAL (under CA 2) is refused at the reload, the trust kept, last_error
    naming CA 2 and where the issuer publishes it; once the operator puts /trust/vical-ca.pem
    in the anchor file the reader takes the VICAL (no restart). At start, with CA 1 alone, it
    does not start, and says the same."""
    from mcred.present_wiring import ReaderServeConfig, ReaderServeError

    svc, _sessions, clock, client = world
    published = _Published(client.get("/trust/vical").content)
    first = svc.iaca_certificate()
    with _served(published.app()) as url:
        verifier, ticks, _what = _following_reader(f"{url}/trust/vical", client, tmp_path)
        anchors = tmp_path / "vical-ca.pem"
        old_anchor = anchors.read_bytes()
        held = verifier.vical.issue_id
        done = svc.rollover_vical_ca(compromised=True, actor="test")
        staged = svc.stage_iaca().certificate  # the new VICAL lists an IACA the old one did not
        published.body, ticks.t = svc.vical(now=clock.now + dt.timedelta(hours=2)), 31.0
        verifier.trust()
        verifier.refresher.join(10)
        assert verifier.trust().certificates == [first] and verifier.reloads == 0 and verifier.vical.issue_id == held
        said = " ".join(verifier.last_error.split())
        assert "mcred VICAL CA 2" in said and "not among the 1 VICAL anchor(s)" in said, said
        assert f"{url}/trust/vical-ca.pem" in said and str(anchors) in said, said

        tmp = tmp_path / "vical-ca.pem.new"  # the operator puts the issuer's anchors in place
        tmp.write_bytes(client.get("/trust/vical-ca.pem").content)
        os.replace(tmp, anchors)
        ticks.t = 62.0
        verifier.trust()
        verifier.refresher.join(10)
        assert verifier.trust().certificates == [first, staged] and verifier.reloads == 1
        assert verifier.last_error is None and verifier.vical.issue_id > done.vical_issue_id

        old = tmp_path / "old-vical-ca.pem"
        old.write_bytes(old_anchor)
        with pytest.raises(ReaderServeError) as refused:
            ReaderServeConfig(vical=f"{url}/trust/vical", vical_trust=(str(old),)).build(
                vical_crl_fetch=_crl_fetch(client))
        said = " ".join(str(refused.value).split())
        assert "mcred VICAL CA 2" in said and f"{url}/trust/vical-ca.pem" in said, said


def test_a_reader_of_a_vical_file_takes_several_anchors_and_refuses_when_its_file_drops_the_ca(world, tmp_path):  # noqa: F811
    """`--vical FILE --vical-trust CA.pem`: the anchor file holds several CAs (after a planned
    rollover /trust/vical-ca.pem gives both) and the VICAL of either verifies; an anchor file
    that no longer holds the CA of the VICAL held is refused at the reload (trust kept,
    last_error), and the VICAL of the CA it holds is then taken."""
    from test_reader_trust_reload import Ticks

    from mcred.present_wiring import ReaderServeConfig

    svc, _sessions, clock, client = world
    vical = tmp_path / "vical.cbor"
    vical.write_bytes(client.get("/trust/vical").content)
    svc.rollover_vical_ca(actor="test")
    anchors = tmp_path / "vical-ca.pem"
    both = _cas(client)
    assert len(both) == 2
    anchors.write_bytes(_pem(both))
    service, _rp, what = ReaderServeConfig(vical=str(vical), vical_trust=(str(anchors),)).build(
        vical_crl_fetch=_crl_fetch(client))
    verifier = service.verifier
    ticks = Ticks()
    verifier._monotonic, verifier._checked = ticks, 0.0
    first = svc.iaca_certificate()
    assert verifier.trust().certificates == [first]

    def put(path, data: bytes, at: float) -> None:  # noqa: ANN001
        tmp = path.with_suffix(".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        ticks.t = at
        verifier.trust()

    staged = svc.stage_iaca().certificate
    put(vical, svc.vical(now=clock.now + dt.timedelta(hours=2)), 31.0)  # signed under CA 2, the same anchor file
    assert verifier.trust().certificates == [first, staged] and verifier.reloads == 1

    put(anchors, _pem(both[1:]), 62.0)  # CA 1 alone: the VICAL held is under CA 2
    assert verifier.trust().certificates == [first, staged] and verifier.reloads == 1
    said = " ".join(verifier.last_error.split())
    assert "trust files changed but were not taken" in said and "mcred VICAL CA 2" in said, said
    assert "/trust/vical-ca.pem" in said, said
    put(anchors, _pem(both[:1]), 93.0)  # CA 2 alone, the anchor of the VICAL held
    assert verifier.reloads == 2 and verifier.last_error is None


@pytest.fixture
def installation(home, db_url, monkeypatch):
    from mcred.context import Context

    monkeypatch.setenv("MCRED_DATABASE_URL", db_url)
    ctx = Context.open(home)
    yield ctx
    ctx.engine.dispose()


def _cli(*args: str) -> tuple[int, str]:
    from mcred.cli.main import app

    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_cli_vical_ca_list_and_rollover(installation, tmp_path):
    code, out = _cli("mdoc", "vical-ca", "list")
    assert code == 0 and "no VICAL CA yet" in out, out
    assert _cli("mdoc", "vical-ca", "list", "--json") == (0, "[]\n")
    code, out = _cli("mdoc", "vical-ca", "rollover", "--json")
    assert code == 2 and "no VICAL CA yet" in json.loads(out)["error"], out
    code, out = _cli("export", "vical", "--out", str(tmp_path / "v.cbor"))
    assert code == 0, out

    code, out = _cli("mdoc", "vical-ca", "rollover", "--json")
    assert code == 0, out
    done = json.loads(out)
    assert (done["previous"]["label"], done["previous"]["state"], done["current"]["label"]) == (
        "mdoc-vical-ca-1", "retired", "mdoc-vical-ca-2")
    assert done["withdrawn"] is False and done["signing"]["label"] == "mdoc-vical-signer-2"
    assert done["vical_issue_id"] > _payload((tmp_path / "v.cbor").read_bytes())["vicalIssueID"]
    code, out = _cli("mdoc", "vical-ca", "rollover", "--compromised")
    flat = " ".join(out.split())
    assert code == 0 and "new VICAL CA mdoc-vical-ca-3" in flat, out
    assert "mdoc-vical-ca-2 withdrawn (cACompromise)" in flat and "mdoc-vical-signer-2" in flat, out
    assert "mcred mdoc key destroy mdoc-vical-ca-2" in flat, out
    code, out = _cli("mdoc", "vical-ca", "list", "--json")
    assert [(r["label"], r["state"], r["trusted"]) for r in json.loads(out)] == [
        ("mdoc-vical-ca-1", "retired", True), ("mdoc-vical-ca-2", "withdrawn", False),
        ("mdoc-vical-ca-3", "current", True)]
    code, out = _cli("mdoc", "vical-ca", "list")
    flat = " ".join(out.split())
    assert code == 0 and "retired, still a VICAL anchor" in flat and "withdrawn (cACompromise" in flat, out
    code, out = _cli("mdoc", "key", "destroy", "mdoc-vical-ca-2", "--json")
    assert code == 0 and json.loads(out)["changed"], out
    code, out = _cli("export", "vical", "--out", str(tmp_path / "w.cbor"), "--ca", str(tmp_path / "ca.pem"))
    cas = x509.load_pem_x509_certificates((tmp_path / "ca.pem").read_bytes())
    assert code == 0 and ["mcred VICAL CA 3" in c.subject.rfc4514_string() for c in cas] == [True, False], out
    _signer_of((tmp_path / "w.cbor").read_bytes()).verify_directly_issued_by(cas[0])
    with installation.sessions() as s:
        assert [e.detail["compromised"] for e in s.query(AuditEvent).filter_by(action="mdoc.vical-ca.rollover")
                .order_by(AuditEvent.id)] == [False, True]


def test_vical_ca_rollover_over_http_operator_only(installation):
    from mcred.api_models import VicalCaRollover
    from mcred.service import create_app

    api = create_app(installation, job_workers=1)
    with contextlib.closing(TestClient(api)) as client:
        checked = check_every_answer(client, api)
        tok = bearer(installation.sessions, ["operator", "issuer"])
        r = client.post("/trust/vical-ca-rollover", headers=tok["operator"])
        assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-vical-ca", r.text
        first = client.get("/trust/vical").content
        (ca1,) = _cas(client)
        assert client.post("/trust/vical-ca-rollover", json={"compromised": True}).status_code == 401
        r = client.post("/trust/vical-ca-rollover", json={"compromised": True}, headers=tok["issuer"])
        assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"
        r = client.post("/trust/vical-ca-rollover", json={"compromised": "yes please"}, headers=tok["operator"])
        assert r.status_code == 422
        assert _cas(client) == [ca1]  # nothing changed by the refusals
        r = client.post("/trust/vical-ca-rollover", json={"compromised": True}, headers=tok["operator"])
        assert r.status_code == 200, r.text
        got = VicalCaRollover.model_validate(r.json())
        assert got.withdrawn and got.previous.state == "withdrawn" and got.current.label == "mdoc-vical-ca-2"
        assert got.revoked_signers == ["mdoc-vical-signer-1"]
        (ca2,) = _cas(client)
        served = client.get("/trust/vical").content
        assert _payload(served)["vicalIssueID"] == got.vical_issue_id > _payload(first)["vicalIssueID"]
        now = dt.datetime.now(dt.UTC)
        assert TrustStore().import_vical(served, vical_anchors=[ca2], now=now).imported == 1
        with pytest.raises(VicalAnchorMissing):
            TrustStore().import_vical(served, vical_anchors=[ca1], now=now)
        assert client.get("/trust/vical-ca.crl").status_code == 410
        r = client.post("/trust/vical-ca-rollover", headers=tok["operator"])  # no body: a planned rollover
        assert r.status_code == 200 and r.json()["withdrawn"] is False and r.json()["current"]["label"] == "mdoc-vical-ca-3"
        assert {"POST /trust/vical-ca-rollover 200", "POST /trust/vical-ca-rollover 403",
                "POST /trust/vical-ca-rollover 404", "GET /trust/vical-ca.crl 410"} <= set(checked), checked
        with installation.sessions() as s:
            events = s.query(AuditEvent).filter_by(action="mdoc.vical-ca.rollover").order_by(AuditEvent.id).all()
        assert [e.subject for e in events] == ["mdoc-vical-ca-2", "mdoc-vical-ca-3"] and events[0].actor != "issuer"


def test_the_vical_ca_compromise_drill(tmp_path):
    """`mcred drill vical_ca_compromise`: the thief's VICAL, signed under the leaked VICAL CA key,
    is taken before the rollover and refused after it by a reader of /trust/vical-ca.pem; a
    reader keeping the old anchor refuses the new VICAL and the thief's; every phone is still
    accepted; the withdrawn CA's key is destroyed. Its own installation (it withdraws the CA)."""
    from conftest import fsync_skipped

    from mcred.context import Context
    from mcred.drills import Env, render_markdown, run_drill
    from mcred.mdoc_flow import mdoc_service

    with fsync_skipped():
        own = Env(Context.open(tmp_path), ttl=1)
        report = run_drill(own.ctx, "vical_ca_compromise", phones=1, env=own)
    assert report.passed, report.error
    said = report.bystander["result"]
    assert said.startswith("VICAL CA mdoc-vical-ca-1 withdrawn (cACompromise)") and "mdoc-vical-ca-2" in said, said
    assert "mcred mdoc key destroy mdoc-vical-ca-1" in said, said
    (s,) = report.subjects
    assert s.final["after_rollover"].startswith("accepted by a reader of the VICAL under the new CA")
    assert "not among the 1 VICAL anchor(s)" in s.final["thief_to_fresh_reader"]
    assert "mcred VICAL CA 2" in s.final["stale_reader"]
    assert "cannot be looked up" in s.final["thief_to_stale_reader"] and "410" in s.final["thief_to_stale_reader"]
    svc = mdoc_service(own.ctx)
    assert [(c.label, c.state, c.key_destroyed_at is not None) for c in svc.vical_ca_list()] == [
        ("mdoc-vical-ca-1", "withdrawn", True), ("mdoc-vical-ca-2", "current", False)]
    assert "## vical_ca_compromise: PASSED" in render_markdown([report])
    own.close()
