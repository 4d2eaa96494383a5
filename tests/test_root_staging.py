"""The next JPKI root generation and the TSA's next root published before their use
(specs/issuer-keys.md, "The JPKI root generations" and "The TSA's root"), as the IACA's
"Publish before use": a staged root is in the trust bundle at once, after the current one,
and issues nothing; the rollover starts it. A relying party holding the bundle it fetched
after the staging verifies what the new root issues after the rollover without fetching it
again; one holding the bundle from before the staging does not. One staged at a time (a
typed 409), decided under the roots' row lock; a staged root's key is never destroyed. The
library on both database backends, the commands (JSON), the routes with their roles, OpenSSL
reading a staged root, the keys in a PKCS#11 token, and `mcred doctor`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import threading
import time

import httpx
import pytest
from api_helpers import bearer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from documented import check_every_answer
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker
from test_issuer_jpki_support import open_issuer, provision
from test_rp_http import run_cli
from test_tsa_rollover import CONTENT, URL, Clock, _crl_served, _events, _timestamp_check, _token

from issuer.db import IssuerKey
from issuer.jpki import JpkiIssuer, profile_for
from issuer.jpki import ca as jpki_ca
from issuer.jpki.ca import ROOT_NOTICE_DAYS, ROOT_RENEW_DAYS
from issuer.jpki.errors import CaNotSetUp, JpkiRootAlreadyStaged, StagedRootMismatch
from issuer.key_destruction import SignerStillSigning
from issuer.keystore import MemoryKeyStore
from issuer.tsa import TimeStampAuthority, TsaRootAlreadyStaged
from mcred.context import Context
from mcred.db import make_engine, migrate
from mcred.timestamps import Stamper
from protocols import tsp
from protocols.jpki.profile import KeyType
from reader.relying_party import verify

DATA = "契約書 v2".encode()
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


def _aki(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def _ocsp_served(issuer: JpkiIssuer) -> httpx.Client:
    """The issuer's OCSP service, where the certificates' OCSP URL points."""
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(
        200, content=issuer.ocsp_respond(request.content), headers={"Content-Type": "application/ocsp-response"})))


def _signed(issuer: JpkiIssuer) -> tuple[bytes, bytes]:
    """A signing certificate the issuing root generation issues now, and a signature by its key."""
    phone = provision(issuer)
    key = phone.keys["sign"]
    return phone.certs["sign"], key.sign(DATA, ec.ECDSA(hashes.SHA384()))


def _checks(verdict: dict) -> dict[str, dict]:
    return {c["name"]: c for c in verdict["checks"]}


def test_jpki_a_relying_party_holding_the_bundle_from_after_the_staging_verifies_after_the_rollover(db_url):
    issuer = open_issuer(db_url)
    g1 = issuer.ca.active(jpki_ca.Purpose.SIGN)
    bundle_before = issuer.roots("sign")
    old_cert, old_sig = _signed(issuer)

    staged = issuer.stage("sign", KeyType.EC_P384, actor="test")
    gen = staged.generation
    assert (gen.label, gen.active, staged.current) == ("jpki-sign-root-g2", False, "jpki-sign-root-g1")
    assert staged.to_json()["current"] == "jpki-sign-root-g1" and staged.to_json()["slot"] == "sign"
    # published at once, after the issuing one, which goes on issuing alone
    bundle_after = issuer.roots("sign")
    assert bundle_after == [*bundle_before, gen.certificate] and gen.certificate.subject == g1.certificate.subject
    assert issuer.root("sign") == g1.certificate and issuer.ca.staged(jpki_ca.Purpose.SIGN).label == gen.label
    still, _ = _signed(issuer)
    assert _aki(x509.load_der_x509_certificate(still)) == g1.key_id
    assert issuer.ca.staged(jpki_ca.Purpose.AUTH) is None  # the other slot is left as it was
    # it has issued nothing: no OCSP responder answers for it until it starts
    blind = ocsp.OCSPRequestBuilder().add_certificate(  # a serial asked of the staged root (its name and key)
        x509.load_der_x509_certificate(old_cert), gen.certificate, hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(issuer.ocsp_respond(blind.public_bytes(serialization.Encoding.DER)))
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    # one staged at a time; its key is never destroyed (the next rollover starts it)
    with pytest.raises(JpkiRootAlreadyStaged, match="jpki-sign-root-g2 is already staged.*mcred jpki rollover"):
        issuer.stage("sign", KeyType.EC_P384)
    with pytest.raises(SignerStillSigning, match="jpki-sign-root-g2 is staged") as refused:
        issuer.destroy_key("jpki-sign-root-g2")
    assert refused.value.duty == "staged" and issuer.keystore.has("jpki-sign-root-g2")
    # a rollover asking for another key type than the staged one's is refused, nothing started
    with pytest.raises(StagedRootMismatch, match="has a p384 key, not rsa2048"):
        issuer.rollover_detail("sign", KeyType.RSA_2048)
    assert issuer.root("sign") == g1.certificate

    done = issuer.rollover_detail("sign", actor="test")
    assert done.generation.certificate == gen.certificate and done.generation.active  # the one relying parties hold
    assert (done.previous, done.staged_since) == ("jpki-sign-root-g1", gen.created_at)
    assert done.to_json()["staged_since"] == gen.created_at.isoformat() and done.to_json()["label"] == gen.label
    assert issuer.root("sign") == gen.certificate and issuer.ca.staged(jpki_ca.Purpose.SIGN) is None
    assert issuer.roots("sign") == bundle_after  # the bundle did not change
    new_cert, new_sig = _signed(issuer)
    assert _aki(x509.load_der_x509_certificate(new_cert)) == gen.key_id

    # the relying party that took the bundle after the staging: the new certificate, live OCSP
    ok = verify(DATA, new_sig, roots=bundle_after, certificate=new_cert, revocation="ocsp",
                client=_ocsp_served(issuer))
    assert ok["valid"], ok
    assert _checks(ok)["revocation"]["code"] == "good"
    old = verify(DATA, old_sig, roots=bundle_after, certificate=old_cert, revocation="ocsp",
                 client=_ocsp_served(issuer))
    assert old["valid"], old  # what the older generation issued, still
    # the one that took it before the staging refuses it, as before
    refused = verify(DATA, new_sig, roots=bundle_before, certificate=new_cert, revocation="none")
    assert not refused["valid"] and _checks(refused)["chain"]["code"] == "untrusted_root", refused

    # a rollover with nothing staged makes a new generation, as before: no bundle holds it
    third = issuer.rollover_detail("sign", KeyType.EC_P384, actor="test")
    assert (third.generation.label, third.previous, third.staged_since) == (
        "jpki-sign-root-g3", "jpki-sign-root-g2", None)
    later_cert, later_sig = _signed(issuer)
    assert not verify(DATA, later_sig, roots=bundle_after, certificate=later_cert, revocation="none")["valid"]

    with issuer.sessions() as s:
        events = [(e.action, e.subject, e.actor, e.detail) for e in s.query(jpki_ca.AuditEvent).filter(
            jpki_ca.AuditEvent.action.in_(("jpki.root.stage", "jpki.root.rollover"))).order_by(jpki_ca.AuditEvent.id)]
    assert events == [
        ("jpki.root.stage", "jpki-sign-root-g2", "test", {"purpose": "sign", "current": "jpki-sign-root-g1",
                                                          "algorithm": "p384",
                                                          "serial": format(gen.certificate.serial_number, "x")}),
        ("jpki.root.rollover", "jpki-sign-root-g2", "test", {
            "purpose": "sign", "previous": "jpki-sign-root-g1", "serial": format(gen.certificate.serial_number, "x"),
            "staged_since": gen.created_at.isoformat()}),
        ("jpki.root.rollover", "jpki-sign-root-g3", "test", {
            "purpose": "sign", "previous": "jpki-sign-root-g2",
            "serial": format(third.generation.certificate.serial_number, "x")})]


def test_jpki_staging_needs_an_issuing_root_and_a_staged_one_too_late_to_start_is_no_more_staged(tmp_path):
    """A staged generation left unstarted until it would issue certificates that outlive it
    (its own last ROOT_RENEW_DAYS) is no more staged: the rollover makes a new generation and
    another staging is taken, rather than starting one as late as that."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    clock = Clock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    issuer = JpkiIssuer(sessionmaker(engine, expire_on_commit=False), MemoryKeyStore(),
                        profile_for("http://issuer.test"), clock=clock)
    with pytest.raises(CaNotSetUp, match="a next generation can be staged once one issues"):
        issuer.stage("auth", KeyType.EC_P384)
    issuer.setup(KeyType.EC_P384)
    staged = issuer.stage("auth", KeyType.EC_P384).generation
    end = staged.certificate.not_valid_after_utc
    clock.at = end - dt.timedelta(days=ROOT_RENEW_DAYS + 1)
    assert issuer.ca.staged(jpki_ca.Purpose.AUTH).label == "jpki-auth-root-g2"
    clock.at = end - dt.timedelta(days=ROOT_RENEW_DAYS - 1)
    assert issuer.ca.staged(jpki_ca.Purpose.AUTH) is None
    with issuer.sessions() as s:  # no duty keeps its key now: it never issued, and is never started
        assert issuer.ca.key_duty(s, s.get(IssuerKey, "jpki-auth-root-g2"), clock.at) is None
    again = issuer.stage("auth", KeyType.EC_P384).generation
    assert again.label == "jpki-auth-root-g3"
    done = issuer.rollover_detail("auth")
    assert done.generation.label == "jpki-auth-root-g3" and done.staged_since == clock.at
    engine.dispose()


def test_jpki_two_operators_staging_at_once_make_one_staged_generation(db_url, monkeypatch):
    """The second staging waits for the first (the slot's root rows taken: FOR UPDATE on
    PostgreSQL, the write lock first on SQLite) and finds it staged: refused, nothing made.
    The window between reading "nothing staged" and making the next generation is widened."""
    issuer = open_issuer(db_url)
    read = jpki_ca.staged_of

    def slow(generations, now):  # noqa: ANN001, ANN202
        found = read(generations, now)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(jpki_ca, "staged_of", slow)
    barrier, out = threading.Barrier(2), []

    def stage() -> None:
        barrier.wait()
        try:
            out.append(issuer.stage("sign", KeyType.EC_P384))
        except JpkiRootAlreadyStaged as exc:
            out.append(exc)

    threads = [threading.Thread(target=stage) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(type(x).__name__ for x in out) == ["JpkiRootAlreadyStaged", "RootStage"], out
    assert [g.label for g in issuer.ca.generations(jpki_ca.Purpose.SIGN)] == ["jpki-sign-root-g1", "jpki-sign-root-g2"]


def _tsa_roots_served(tsa: TimeStampAuthority) -> httpx.Client:
    """Each root generation's CRL at the URL its units name (generation 1, 2, 3)."""
    where = {"/tsa/root.crl": 1, "/tsa/root-g2.crl": 2, "/tsa/root-g3.crl": 3}
    return httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=tsa.crl(where[request.url.path]))))


def test_tsa_a_relying_party_holding_the_roots_from_after_the_staging_verifies_after_the_rollover(home, db_url):
    from test_rp_jpki_verdicts import SIG

    ctx = Context.open(home, db_url)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=URL)
    before_token = _token(tsa)
    roots_before = tsa.roots()
    g1 = roots_before[0]

    staged = tsa.stage(actor="test")
    assert (staged.root, staged.current, staged.automatic) == ("tsa-root-g2", "tsa-root-g1", False)
    roots_after = tsa.roots()
    assert roots_after[0] == g1 == tsa.root() and len(roots_after) == 2  # the current first, then the staged one
    g2 = roots_after[1]
    assert g2.serial_number == staged.serial and g2.subject.rfc4514_string().startswith("CN=mcred Time-Stamping Root G2")
    assert tsa.root_of(2)[1] == g2 and tsa.root_of()[1] == g1
    assert x509.load_der_x509_crl(tsa.crl()).issuer == g1.subject  # the current root's CRL
    # the current root's unit goes on stamping
    assert tsp.verify_token(_token(tsa), data=CONTENT, roots=roots_before).root == g1
    with pytest.raises(TsaRootAlreadyStaged, match="tsa-root-g2 is already staged.*mcred tsa rollover"):
        tsa.stage()
    with pytest.raises(SignerStillSigning, match="tsa-root-g2 is staged") as refused:
        tsa.destroy_key("tsa-root-g2")
    assert refused.value.duty == "staged" and ctx.keystore.has("tsa-root-g2")
    (event,) = _events(ctx, "tsa.root.stage")
    assert (event.subject, event.actor, event.detail["current"], event.detail["automatic"]) == (
        "tsa-root-g2", "test", "tsa-root-g1", False)

    done = tsa.rollover(actor="test")
    assert (done.root, done.serial, done.previous, done.unit, done.automatic) == (
        "tsa-root-g2", staged.serial, "tsa-root-g1", "tsa-unit-2", False)
    with ctx.sessions() as s:
        assert done.staged_since == s.get(IssuerKey, "tsa-root-g2").created_at
    assert done.to_json()["staged_since"] == done.staged_since.isoformat()
    (event,) = _events(ctx, "tsa.root.rollover")
    assert event.detail["staged_since"] == done.staged_since.isoformat()
    assert tsa.roots() == [g2, g1]  # the same two, the new current one first
    after_token = _token(tsa)
    # the relying party that took the roots after the staging: the new unit's tokens, its CRL
    assert tsp.verify_token(after_token, data=CONTENT, roots=roots_after).root == g2
    assert tsp.verify_token(before_token, data=CONTENT, roots=roots_after).root == g1
    stamper = Stamper(tsa.respond, "the test's TSA", tuple(roots_after))
    signed = stamper.stamp_signature(SIG)
    assert _timestamp_check(signed, roots_after, _crl_served(tsa))["code"] == "ok"
    # the one that took them before the staging refuses it, as before
    with pytest.raises(tsp.TokenInvalid, match="does not chain to a trusted time-stamping root"):
        tsp.verify_token(after_token, data=CONTENT, roots=roots_before)
    refused = _timestamp_check(signed, roots_before, _crl_served(tsa))
    assert not refused["passed"] and "does not chain to a trusted time-stamping root" in refused["reason"]

    # a rollover with nothing staged makes a new root, as before
    third = tsa.rollover()
    assert (third.root, third.previous, third.staged_since) == ("tsa-root-g3", "tsa-root-g2", None)
    with pytest.raises(tsp.TokenInvalid, match="does not chain"):
        tsp.verify_token(_token(tsa), data=CONTENT, roots=roots_after)
    ctx.engine.dispose()


def test_tsa_two_operators_staging_at_once_make_one_staged_root(home, db_url, monkeypatch):
    import issuer.tsa as tsa_module

    ctx = Context.open(home, db_url)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=URL)
    tsa.roots()
    read = tsa_module.staged_root

    def slow(roots, now):  # noqa: ANN001, ANN202
        found = read(roots, now)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(tsa_module, "staged_root", slow)
    barrier, out = threading.Barrier(2), []
    others = [TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=URL) for _ in range(2)]  # two processes

    def stage(authority: TimeStampAuthority) -> None:
        barrier.wait()
        try:
            out.append(authority.stage())
        except TsaRootAlreadyStaged as exc:
            out.append(exc)

    threads = [threading.Thread(target=stage, args=(a,)) for a in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(type(x).__name__ for x in out) == ["RootStage", "TsaRootAlreadyStaged"], out
    with ctx.sessions() as s:
        assert sorted(r.label for r in s.query(IssuerKey).filter_by(purpose="tsa-root")) == ["tsa-root-g1", "tsa-root-g2"]
    ctx.engine.dispose()


def test_tsa_an_automatic_rollover_with_nothing_staged_makes_a_root_and_a_staged_one_starts(home):
    """A TSA that stamped nothing in the year before its root's last years (so staged nothing)
    rolls over onto a root made then, as before (staged_since none); one staged by the
    operator is what the automatic rollover starts."""
    from issuer.tsa import UNIT_RENEW_DAYS

    ctx = Context.open(home)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    clock = Clock(t0)
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=clock, crl_url=URL)
    first = tsp.verify_token(_token(tsa), data=CONTENT, roots=tsa.roots())
    g1 = tsa.root()
    # idle until the first unit is due in the root's last years: the unit comes with a root made then
    clock.at = g1.not_valid_after_utc - dt.timedelta(days=400)
    tsa.revoke_unit("tsa-unit-1", "superseded")
    _token(tsa)
    (rolled,) = _events(ctx, "tsa.root.rollover")
    assert (rolled.subject, rolled.detail["automatic"], "staged_since" in rolled.detail) == ("tsa-root-g2", True, False)
    assert not _events(ctx, "tsa.root.stage") and first.root == g1
    # years later, before the TSA would stage by itself, the operator stages; the TSA's own
    # rollover (the renewal of the unit made then, in g2's last years) starts that root
    clock.at = tsa.root().not_valid_after_utc - dt.timedelta(days=1600)
    staged = tsa.stage(actor="test")
    unit = tsp.verify_token(_token(tsa), data=CONTENT, roots=tsa.roots()).tsa_certificate  # g2's new unit
    assert len(_events(ctx, "tsa.root.rollover")) == 1 and unit.issuer == tsa.root().subject
    staged_at = clock.at
    clock.at = unit.not_valid_after_utc - dt.timedelta(days=UNIT_RENEW_DAYS - 1)
    renewed = tsp.verify_token(_token(tsa), data=CONTENT, roots=tsa.roots())
    assert renewed.root.serial_number == staged.serial == tsa.root().serial_number
    last = _events(ctx, "tsa.root.rollover")[-1]
    assert (last.subject, last.actor, last.detail["automatic"], last.detail["staged_since"]) == (
        "tsa-root-g3", "issuer", True, staged_at.isoformat())
    assert [e.detail["automatic"] for e in _events(ctx, "tsa.root.stage")] == [False]  # the operator's alone
    ctx.engine.dispose()


def _openssl_text(pem: bytes, tmp_path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(pem)
    return subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout


@needs_openssl
def test_the_commands_stage_and_roll_over_and_openssl_reads_the_staged_roots(home, tmp_path):
    # JPKI: the installation's roots (RSA-2048 by default)
    staged = json.loads(run_cli("jpki", "stage", "--slot", "auth", "--json"))
    assert (staged["slot"], staged["label"], staged["algorithm"], staged["current"]) == (
        "auth", "jpki-auth-root-g2", "rsa2048", "jpki-auth-root-g1")
    said = json.loads(run_cli("jpki", "stage", "--slot", "auth", "--json", code=2))
    assert "jpki-auth-root-g2 is already staged" in said["error"]
    refused = " ".join(run_cli("jpki", "key", "destroy", "jpki-auth-root-g2", code=2).split())
    assert "jpki-auth-root-g2 is staged" in refused and "mcred jpki rollover --slot auth" in refused
    run_cli("export", "jpki-root", "--slot", "auth", "--out", str(tmp_path / "auth.pem"))
    bundle = x509.load_pem_x509_certificates((tmp_path / "auth.pem").read_bytes())
    assert [format(c.serial_number, "x") for c in bundle][-1] == staged["serial"] and len(bundle) == 2
    text = _openssl_text(bundle[-1].public_bytes(serialization.Encoding.PEM), tmp_path, "jpki-staged.pem")
    assert format(bundle[-1].serial_number, "x") in text.replace(":", "").lower()
    assert "Public-Key: (2048 bit)" in text and "CA:TRUE" in text
    said = " ".join(run_cli("jpki", "rollover", "--slot", "auth", "--key-type", "p384", code=2).split())
    assert "has a rsa2048 key, not p384" in said
    rolled = json.loads(run_cli("jpki", "rollover", "--slot", "auth", "--json"))
    assert (rolled["label"], rolled["serial"], rolled["previous"], rolled["key_id"]) == (
        "jpki-auth-root-g2", staged["serial"], "jpki-auth-root-g1", staged["key_id"])
    assert rolled["staged_since"] and dt.datetime.fromisoformat(rolled["staged_since"]).tzinfo is not None
    text = " ".join(run_cli("jpki", "rollover", "--slot", "auth", "--key-type", "p384").split())
    assert "new generation jpki-auth-root-g3" in text and "mcred jpki stage publishes the next generation" in text
    run_cli("jpki", "stage", "--slot", "auth", "--key-type", "p384")
    text = " ".join(run_cli("jpki", "rollover", "--slot", "auth").split())
    assert "staged generation jpki-auth-root-g4 started" in text and "in the trust bundle since" in text

    # the TSA
    staged = json.loads(run_cli("tsa", "stage", "--json"))
    assert (staged["root"], staged["current"], staged["automatic"]) == ("tsa-root-g2", "tsa-root-g1", False)
    assert "tsa-root-g2 is already staged" in json.loads(run_cli("tsa", "stage", "--json", code=2))["error"]
    assert "tsa-root-g2 is staged" in " ".join(run_cli("tsa", "key", "destroy", "tsa-root-g2", code=2).split())
    run_cli("export", "tsa-root", "--out", str(tmp_path / "tsa.pem"))
    roots = x509.load_pem_x509_certificates((tmp_path / "tsa.pem").read_bytes())
    assert [format(c.serial_number, "x") for c in roots][1] == staged["serial"] and len(roots) == 2
    text = _openssl_text(roots[1].public_bytes(serialization.Encoding.PEM), tmp_path, "tsa-staged.pem")
    assert "mcred Time-Stamping Root G2" in text and "CA:TRUE" in text
    rolled = json.loads(run_cli("tsa", "rollover", "--json"))
    assert (rolled["root"], rolled["serial"], rolled["previous"]) == ("tsa-root-g2", staged["serial"], "tsa-root-g1")
    assert rolled["staged_since"]
    text = " ".join(run_cli("tsa", "rollover").split())
    assert "tsa-root-g3 (serial" in text and "mcred tsa stage publishes the next root" in text
    run_cli("tsa", "stage")
    text = " ".join(run_cli("tsa", "rollover").split())
    assert text.startswith("the staged root tsa-root-g4") and "relying parties that took them since then" in text


def test_the_routes_stage_and_roll_over_for_the_operator_alone(home, db_url):
    from mcred.api_models import JpkiRootRollover, JpkiRootStage, TsaRollover, TsaStage
    from mcred.service import create_app

    ctx = Context.open(home, db_url)
    api = create_app(ctx, job_workers=1)
    try:
        with contextlib.closing(TestClient(api)) as client:
            checked = check_every_answer(client, api)
            tok = bearer(ctx.sessions, ["operator", "issuer", "reader"])
            for route, body in (("/trust/jpki-stage", {"slot": "sign"}), ("/trust/jpki-rollover", {"slot": "sign"}),
                                ("/trust/tsa-stage", None)):
                assert client.post(route, json=body).status_code == 401
                for who in ("issuer", "reader"):
                    r = client.post(route, json=body, headers=tok[who])
                    assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden", (route, who)
            op = tok["operator"]
            assert len(x509.load_pem_x509_certificates(client.get("/trust/jpki-sign-root.pem").content)) == 1
            assert len(x509.load_pem_x509_certificates(client.get("/tsa/root.pem").content)) == 1  # nothing done

            r = client.post("/trust/jpki-stage", json={"slot": "sign", "key_type": "p384"}, headers=op)
            assert r.status_code == 200, r.text
            staged = JpkiRootStage.model_validate(r.json())
            assert (staged.label, staged.algorithm, staged.current) == ("jpki-sign-root-g2", "p384", "jpki-sign-root-g1")
            bundle = x509.load_pem_x509_certificates(client.get("/trust/jpki-sign-root.pem").content)
            assert len(bundle) == 2 and format(bundle[1].serial_number, "x") == staged.serial
            issuing = x509.load_der_x509_certificate(client.get("/trust/jpki-sign-root.der").content)
            assert issuing == bundle[0]  # the issuing one, still
            r = client.post("/trust/jpki-stage", json={"slot": "sign"}, headers=op)
            assert r.status_code == 409 and r.json()["type"] == "/problems/root-already-staged", r.text
            r = client.post("/trust/key-destructions", json={"signer": "jpki-sign-root-g2"}, headers=op)
            assert r.status_code == 409 and r.json()["type"] == "/problems/signer-still-signing", r.text
            assert "is staged" in r.json()["detail"]
            for bad in ({"slot": "both"}, {}, {"slot": "sign", "key_type": "rsa4096"}, {"slot": "sign", "x": 1}):
                r = client.post("/trust/jpki-rollover", json=bad, headers=op)
                assert r.status_code == 422 and r.json()["type"] == "/problems/validation", (bad, r.text)
            r = client.post("/trust/jpki-rollover", json={"slot": "sign", "key_type": "rsa2048"}, headers=op)
            assert r.status_code == 409 and r.json()["type"] == "/problems/jpki-error", r.text
            r = client.post("/trust/jpki-rollover", json={"slot": "sign"}, headers=op)
            assert r.status_code == 200, r.text
            rolled = JpkiRootRollover.model_validate(r.json())
            assert (rolled.label, rolled.serial, rolled.previous) == ("jpki-sign-root-g2", staged.serial,
                                                                       "jpki-sign-root-g1")
            assert rolled.staged_since is not None
            assert x509.load_der_x509_certificate(client.get("/trust/jpki-sign-root.der").content) == bundle[1]
            r = client.post("/trust/jpki-rollover", json={"slot": "auth", "key_type": "p384"}, headers=op)
            assert r.status_code == 200 and (r.json()["label"], r.json()["staged_since"]) == ("jpki-auth-root-g2", None)

            r = client.post("/trust/tsa-stage", headers=op)
            assert r.status_code == 200, r.text
            tstaged = TsaStage.model_validate(r.json())
            assert (tstaged.root, tstaged.current, tstaged.automatic) == ("tsa-root-g2", "tsa-root-g1", False)
            served = x509.load_pem_x509_certificates(client.get("/tsa/root.pem").content)
            assert [format(c.serial_number, "x") for c in served][1] == tstaged.serial and len(served) == 2
            assert x509.load_der_x509_certificate(client.get("/tsa/root.der").content) == served[0]
            assert x509.load_der_x509_certificate(client.get("/tsa/root-g2.der").content) == served[1]
            r = client.post("/trust/tsa-stage", headers=op)
            assert r.status_code == 409 and r.json()["type"] == "/problems/root-already-staged", r.text
            r = client.post("/trust/key-destructions", json={"signer": "tsa-root-g2"}, headers=op)
            assert r.status_code == 409 and r.json()["type"] == "/problems/signer-still-signing", r.text
            r = client.post("/trust/tsa-rollover", headers=op)
            trolled = TsaRollover.model_validate(r.json())
            assert (trolled.root, trolled.serial) == ("tsa-root-g2", tstaged.serial) and trolled.staged_since
            assert x509.load_der_x509_certificate(client.get("/tsa/root.der").content) == served[1]
            assert {"POST /trust/jpki-stage 200", "POST /trust/jpki-stage 409", "POST /trust/jpki-stage 401",
                    "POST /trust/jpki-stage 403", "POST /trust/jpki-rollover 200", "POST /trust/jpki-rollover 409",
                    "POST /trust/jpki-rollover 422", "POST /trust/tsa-stage 200", "POST /trust/tsa-stage 409",
                    "POST /trust/tsa-stage 403"} <= set(checked), checked
    finally:
        api.state.jobs.shutdown()
    with ctx.sessions() as s:
        actors = {e.action: e.actor for e in s.query(jpki_ca.AuditEvent).filter(jpki_ca.AuditEvent.action.in_(
            ("jpki.root.stage", "jpki.root.rollover", "tsa.root.stage", "tsa.root.rollover")))}
    assert set(actors) == {"jpki.root.stage", "jpki.root.rollover", "tsa.root.stage", "tsa.root.rollover"}
    assert all(a.startswith("token:") for a in actors.values()), actors
    ctx.engine.dispose()


def test_staged_roots_in_a_token(softhsm_token, tmp_path):
    """Over a PKCS#11 token (SoftHSM2): the staged roots' keys are born in the token; once
    started they certify there (the JPKI generation its OCSP responder, the TSA root its unit)."""
    pkcs11 = pytest.importorskip("pkcs11", reason="needs python-pkcs11 (the test extra installs it)")
    from softhsm import SOFTHSM_PIN

    from issuer.hsm import SOFTHSM2, Pkcs11KeyStore

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    keystore = Pkcs11KeyStore(SOFTHSM2, softhsm_token, SOFTHSM_PIN)
    jpki = JpkiIssuer(sessions, keystore, profile_for("http://issuer.test"))
    jpki.setup(KeyType.EC_P384)
    staged = jpki.stage("sign", KeyType.EC_P384).generation
    tsa = TimeStampAuthority(sessions, keystore, crl_url=URL)
    _token(tsa)
    tsa_staged = tsa.stage()
    with pkcs11.lib(SOFTHSM2).get_token(token_label=softhsm_token).open() as session:
        for label in ("jpki-sign-root-g2", "tsa-root-g2"):
            assert len(list(session.get_objects({pkcs11.Attribute.LABEL: label}))) == 2, label
    with pytest.raises(SignerStillSigning):
        jpki.destroy_key("jpki-sign-root-g2")
    jpki.rollover("sign")
    responder = jpki.ca.responder(jpki.ca.active(jpki_ca.Purpose.SIGN))
    responder.certificate.verify_directly_issued_by(staged.certificate)
    tsa.rollover()
    stamp = tsp.verify_token(_token(tsa), data=CONTENT, roots=tsa.roots())
    assert stamp.root.serial_number == tsa_staged.serial
    engine.dispose()


def test_doctor_names_a_staged_jpki_root_and_asks_for_one_before_a_rollover(home):
    from mcred.doctor import _jpki_roots

    ctx = Context.open(home)
    assert _jpki_roots(ctx).ok and "not made yet" in _jpki_roots(ctx).detail
    jpki = JpkiIssuer(ctx.sessions, ctx.keystore, profile_for(ctx.public_url))
    jpki.setup(KeyType.EC_P384)
    now = jpki.root("sign").not_valid_after_utc - dt.timedelta(days=ROOT_RENEW_DAYS)
    assert _jpki_roots(ctx).ok and "sign jpki-sign-root-g1 valid until" in _jpki_roots(ctx).detail
    assert _jpki_roots(ctx, now - dt.timedelta(days=ROOT_NOTICE_DAYS + 1)).ok
    late = _jpki_roots(ctx, now - dt.timedelta(days=ROOT_NOTICE_DAYS - 1))
    assert not late.ok and f"from {now.date().isoformat()} refuses the certificates that would outlive it" in late.detail
    assert "mcred jpki stage --slot sign, give relying parties the bundle" in late.fix
    assert "mcred jpki stage --slot auth" in late.fix
    jpki.stage("sign", KeyType.EC_P384)
    found = _jpki_roots(ctx, now - dt.timedelta(days=ROOT_NOTICE_DAYS - 1))
    assert not found.ok and "jpki-sign-root-g2 staged (in the trust bundle)" in found.detail
    assert "start jpki-sign-root-g2 once relying parties hold the bundle: mcred jpki rollover --slot sign" in found.fix
    assert _jpki_roots(ctx).ok and "jpki-sign-root-g2 staged" in _jpki_roots(ctx).detail
    ctx.engine.dispose()
