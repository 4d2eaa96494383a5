"""IACA generations (specs/issuer-keys.md, "The mdoc IACA: generations and rollover"): an
operator rolls the IACA over; the new IACA, its document signer and its status-list signer are
made at once; mdocs of both generations verify at a reader that holds the trust bundle
(/trust/iaca.pem), each with its status list signed under its own IACA and its DS on its own
IACA's CRL (the URL its certificates carry); the older IACA leaves the bundle once nothing it
vouches for is valid, and signs nothing after its end. Both database backends."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from documented import check_every_answer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mdoc_world import HOLDER, mdoc_world
from typer.testing import CliRunner

from issuer.api import mdoc as mdoc_api
from issuer.api import problems
from issuer.db import AuditEvent
from issuer.holders import attach_phone, register
from issuer.mdoc.errors import IacaEnded, MdocKeyError, UnknownIaca
from issuer.mdoc.issuance import make_proof
from mcred.present import reader_pipeline
from protocols import cose
from protocols.cardsub import parse_holder
from protocols.cose import CoseKey
from protocols.mdoc import DeviceResponse, IssuerSigned, SessionTranscript, build_document
from protocols.status import decode_status_list_token
from reader.ds_crl import DsCrlCheck
from reader.pipeline import HttpAnswer
from reader.trust import TrustStore

#: an hour ago: `mcred status-list show` judges a token at the real time
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM
BASE = "http://issuer.test"


@pytest.fixture
def world(db_url):
    engine, sessions, clock, svc = mdoc_world(db_url, NOW, phones=2, base=BASE)
    app = FastAPI()
    problems.install(app)
    for router in mdoc_api.routers(lambda: svc):
        app.include_router(router)
    yield svc, sessions, clock, TestClient(app)
    engine.dispose()


def _issue(svc, phone: str, job: str):
    key = ec.generate_private_key(ec.SECP256R1())
    spki, proof = make_proof(key, svc.mdoc_challenge(job, phone, 0))
    return key, IssuerSigned.from_cbor(svc.issue_mdoc(job, phone, 0, spki, proof))


def _present(signed: IssuerSigned, key) -> tuple[bytes, SessionTranscript]:
    reader_key = CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    st = SessionTranscript.build(b"\xa1\x00c1.0", reader_key, None)
    doc = build_document(signed, st, signer=cose.key_signer(key))
    return DeviceResponse((doc,)).encode(), st


def _ds(signed: IssuerSigned) -> x509.Certificate:
    return x509.load_der_x509_certificate(signed.issuer_auth.x5chain[0])


def _crl_url(cert: x509.Certificate) -> str:
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return dp.full_name[0].value


def _alt_name(cert: x509.Certificate) -> str:
    return cert.extensions.get_extension_for_class(x509.IssuerAlternativeName).value[0].value


def _reader(client: TestClient, clock, anchors: list[x509.Certificate], fetched: list[str]):
    def get(url: str) -> bytes:
        fetched.append(url)
        r = client.get(url.removeprefix(BASE))
        assert r.status_code == 200, (url, r.text)
        return r.content

    trust = TrustStore()
    for cert in anchors:
        trust.add(cert)
    return reader_pipeline(trust=trust, clock=lambda: clock.now + dt.timedelta(minutes=1),
                           fetcher=lambda uri, etag: HttpAnswer(200, get(uri), {}),
                           require_status=True, ds_crl=DsCrlCheck(get))


def test_rollover_makes_a_new_iaca_with_its_own_signers_urls_and_audit(world):
    svc, sessions, clock, _client = world
    first, ds1, status1 = svc.setup()
    assert (first.label, ds1.iaca_label, status1.iaca_label) == ("mdoc-iaca-1", "mdoc-iaca-1", "mdoc-iaca-1")
    # the first generation keeps the URLs its certificates always carried
    assert _crl_url(first.certificate) == _crl_url(ds1.certificate) == f"{BASE}/trust/iaca.crl"
    assert _alt_name(first.certificate) == f"{BASE}/trust/iaca.pem"

    clock.now = NOW + dt.timedelta(days=30)
    root, ds, status = svc.rollover_iaca(actor="test")
    assert (root.label, ds.label, status.label) == ("mdoc-iaca-2", "mdoc-ds-2", "mdoc-status-2")
    assert root.certificate.subject != first.certificate.subject
    assert "mcred IACA 2" in root.certificate.subject.rfc4514_string()
    assert root.certificate.not_valid_before_utc == clock.now - dt.timedelta(minutes=5)
    for signer in (ds, status):
        assert signer.iaca_label == "mdoc-iaca-2"
        assert signer.certificate.issuer == root.certificate.subject
        signer.certificate.verify_directly_issued_by(root.certificate)
    assert {_crl_url(c) for c in (root.certificate, ds.certificate, status.certificate)} == {
        f"{BASE}/trust/iaca-2.crl"}
    assert _alt_name(root.certificate) == f"{BASE}/trust/iaca-2.pem"
    # the new IACA is current; the older one retired (not revoked); one active DS in all, and
    # one active status-list signer per IACA (each signs its own IACA's lists)
    assert svc.iaca_certificate() == root.certificate
    assert svc.iaca_certificate(1) == first.certificate
    iacas = {i.label: i for i in svc.signers("iaca")}
    assert iacas["mdoc-iaca-2"].active and not iacas["mdoc-iaca-1"].active
    assert iacas["mdoc-iaca-1"].revoked_at is None and iacas["mdoc-iaca-1"].iaca is None
    assert [(s.label, s.iaca) for s in svc.signers() if s.active] == [("mdoc-ds-2", "mdoc-iaca-2")]
    assert sorted((s.label, s.iaca) for s in svc.signers("status-signer") if s.active) == [
        ("mdoc-status-1", "mdoc-iaca-1"), ("mdoc-status-2", "mdoc-iaca-2")]
    assert svc.document_signer().label == "mdoc-ds-2"
    assert svc.trusted_iacas() == [root.certificate, first.certificate]
    with sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="mdoc.iaca.rollover").all()
    assert event.subject == "mdoc-iaca-2" and event.actor == "test"
    assert event.detail == {"previous": "mdoc-iaca-1", "serial": format(root.certificate.serial_number, "x"),
                            "ds": "mdoc-ds-2", "status_signer": "mdoc-status-2"}
    with pytest.raises(UnknownIaca):
        svc.iaca_certificate(3)


def test_mdocs_of_both_generations_verify_each_under_its_own_iaca(world, tmp_path):
    """An mdoc issued before the rollover and one after: each on a status list of its own IACA
    (a reader takes a list only from a signer under the mdoc's IACA), each DS on its own IACA's
    CRL; a reader with the bundle finds both valid, one with the old IACA alone refuses the new
    mdoc; a DS revocation of the old generation reaches the old CRL only."""
    svc, _sessions, clock, client = world
    old_key, old = _issue(svc, "phone-1", "job-1")
    clock.now = NOW + dt.timedelta(minutes=30)
    svc.rollover_iaca()
    new_key, new = _issue(svc, "phone-2", "job-2")
    assert _ds(old).issuer == svc.iaca_certificate(1).subject
    assert _ds(new).issuer == svc.iaca_certificate(2).subject
    old_list, new_list = (signed_status(s) for s in (old, new))
    assert old_list != new_list  # a list holds one IACA generation's mdocs
    for uri, generation in ((old_list, 1), (new_list, 2)):
        token = decode_status_list_token(client.get(uri.removeprefix(BASE)).content)
        signer = token.header.signer
        assert signer.issuer == svc.iaca_certificate(generation).subject, generation

    bundle = x509.load_pem_x509_certificates(client.get("/trust/iaca.pem").content)
    assert bundle == [svc.iaca_certificate(2), svc.iaca_certificate(1)]
    fetched: list[str] = []
    reader = _reader(client, clock, bundle, fetched)
    for key, signed in ((old_key, old), (new_key, new)):
        data, st = _present(signed, key)
        result = reader.verify(data, session_transcript=st)
        assert result.valid, [c for c in result.checks if not c.passed]
        assert result.check("revocation_status").passed and result.check("ds_revocation").passed
    assert {u for u in fetched if u.endswith(".crl")} == {f"{BASE}/trust/iaca.crl", f"{BASE}/trust/iaca-2.crl"}

    # `mcred status-list show --trust-anchor` with the bundle: each list under its own IACA
    from mcred.cli.main import app as cli

    anchors = tmp_path / "bundle.pem"
    anchors.write_bytes(client.get("/trust/iaca.pem").content)
    for n, uri in enumerate((old_list, new_list)):
        token = tmp_path / f"list-{n}.cwt"
        token.write_bytes(client.get(uri.removeprefix(BASE)).content)
        out = CliRunner().invoke(cli, ["status-list", "show", str(token), "--trust-anchor", str(anchors),
                                       "--revocation", "none", "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output.splitlines()[-1])["verified"].startswith("valid"), out.output

    data, st = _present(new, new_key)
    refused = _reader(client, clock, [svc.iaca_certificate(1)], []).verify(data, session_transcript=st)
    assert not refused.valid and not refused.check("issuer_certificate_chain").passed

    svc.revoke_signer("mdoc-ds-1", "keyCompromise")
    gen1 = x509.load_der_x509_crl(client.get("/trust/iaca.crl").content)
    gen2 = x509.load_der_x509_crl(client.get("/trust/iaca-2.crl").content)
    assert gen1.is_signature_valid(svc.iaca_certificate(1).public_key())
    assert gen2.is_signature_valid(svc.iaca_certificate(2).public_key())
    assert gen1.issuer == svc.iaca_certificate(1).subject and gen2.issuer == svc.iaca_certificate(2).subject
    assert gen1.get_revoked_certificate_by_serial_number(_ds(old).serial_number) is not None
    assert len(gen2) == 0
    assert client.get("/trust/iaca-1.crl").content == client.get("/trust/iaca.crl").content
    fresh = _reader(client, clock, bundle, [])
    data, st = _present(old, old_key)
    assert {c.name for c in fresh.verify(data, session_transcript=st).checks if not c.passed} == {"ds_revocation"}
    data, st = _present(new, new_key)
    assert fresh.verify(data, session_transcript=st).valid


def signed_status(signed: IssuerSigned) -> str:
    return signed.mso().status.status_list.uri


def test_trust_routes_serve_each_generation_and_the_bundle_drops_a_spent_iaca(world):
    svc, _sessions, clock, client = world
    svc.setup()
    clock.now = NOW + dt.timedelta(days=1)
    svc.rollover_iaca()
    one, two = svc.iaca_certificate(1), svc.iaca_certificate(2)
    assert x509.load_der_x509_certificate(client.get("/trust/iaca.der").content) == two
    assert x509.load_pem_x509_certificates(client.get("/trust/iaca-1.pem").content) == [one]
    assert x509.load_der_x509_certificate(client.get("/trust/iaca-2.der").content) == two
    r = client.get("/trust/iaca-7.pem")
    assert r.status_code == 404 and r.json()["type"] == problems.UNKNOWN_IACA.uri
    assert client.get("/trust/iaca-0.crl").status_code == 422
    # the older IACA is in the bundle while a signer it issued is valid (its mdocs and lists
    # may still be presented), then no more, though the IACA itself lasts ten years
    last = max(c.not_after for c in (svc.signers() + svc.signers("status-signer")) if c.iaca == "mdoc-iaca-1")
    clock.now = last - dt.timedelta(seconds=1)
    assert svc.trusted_iacas() == [two, one]
    clock.now = last
    assert svc.trusted_iacas() == [two]
    assert x509.load_pem_x509_certificates(client.get("/trust/iaca.pem").content) == [two]
    assert clock.now < one.not_valid_after_utc
    assert client.get("/trust/iaca.crl").status_code == 200  # still served while the IACA lasts


def test_issuance_in_the_iacas_last_months_asks_for_a_rollover_and_its_lists_live_to_its_end(world):
    """Without a rollover, no document signer can be made in the IACA's last months (its MSOs
    would be cut short): issuance stops with a message naming the command. Its status lists
    are still signed, by a signer kept or made to the IACA's end; past that end the IACA signs
    nothing more: its CRL and lists answer 410."""
    svc, _sessions, clock, client = world
    key, signed = _issue(svc, "phone-1", "job-1")
    iaca = svc.iaca_certificate()
    end = iaca.not_valid_after_utc
    clock.now = end - dt.timedelta(days=30)
    with pytest.raises(MdocKeyError, match="mcred mdoc iaca rollover"):
        _issue(svc, "phone-2", "job-2")
    uri = signed_status(signed)
    token = decode_status_list_token(client.get(uri.removeprefix(BASE)).content)
    signer = token.header.signer
    assert signer.issuer == iaca.subject and signer.not_valid_after_utc == end
    assert client.get("/trust/iaca.crl").status_code == 200
    clock.now = end - dt.timedelta(days=1)  # the same signer, no new one on every request
    status_signers = len(svc.signers("status-signer"))
    svc.publisher._memory.clear()
    assert client.get(uri.removeprefix(BASE), headers={"If-None-Match": "x"}).status_code == 200
    assert len(svc.signers("status-signer")) == status_signers

    svc.rollover_iaca()
    # issuance goes on under the new IACA (the holder's card has ended by now: no mdoc for it)
    assert svc.document_signer().iaca_label == "mdoc-iaca-2"
    clock.now = end
    with pytest.raises(IacaEnded):
        svc.iaca_crl(1)
    svc.publisher._memory.clear()
    with svc.sessions() as s, pytest.raises(IacaEnded):  # the stored token has expired by now
        svc.pki.status_signer(s, clock.now, "mdoc-iaca-1")
    for path in ("/trust/iaca.crl", uri.removeprefix(BASE)):
        r = client.get(path)
        assert r.status_code == 410 and r.json()["type"] == problems.IACA_ENDED.uri, (path, r.text)
    assert client.get("/trust/iaca-2.crl").status_code == 200
    assert svc.trusted_iacas() == [svc.iaca_certificate(2)]


def _openssl(*args: str) -> str:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_cli_rollover_export_and_openssl(home, tmp_path):
    """`mcred mdoc iaca rollover|list`, `mcred export iaca` (the bundle, --current, --der);
    OpenSSL verifies each generation's DS with the bundle and reads each generation's CRL."""
    from mcred.cli.main import app as cli
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service

    def run(*args: str, code: int = 0) -> str:
        out = CliRunner().invoke(cli, list(args))
        assert out.exit_code == code, out.output
        return out.output

    (listed,) = json.loads(run("mdoc", "iaca", "list", "--json"))
    assert (listed["label"], listed["active"], listed["trusted"]) == ("mdoc-iaca-1", True, True)
    svc = mdoc_service(Context.open(home))
    ds1 = svc.document_signer().certificate
    rolled = json.loads(run("mdoc", "iaca", "rollover", "--json"))
    assert (rolled["label"], rolled["ds"], rolled["status_signer"]) == ("mdoc-iaca-2", "mdoc-ds-2", "mdoc-status-2")
    text = run("mdoc", "iaca", "list")
    assert "mdoc-iaca-1  serial" in text and "retired, still a trust anchor" in text
    assert "mdoc-iaca-2  serial" in text and "current" in text
    assert "mcred export iaca" in run("mdoc", "iaca", "rollover")  # the reminder; a third generation
    ds3 = svc.document_signer().certificate

    bundle, current, der = tmp_path / "bundle.pem", tmp_path / "current.pem", tmp_path / "current.der"
    assert "3 IACAs" in run("export", "iaca", "--out", str(bundle))
    run("export", "iaca", "--out", str(current), "--current")
    run("export", "iaca", "--out", str(der), "--der")
    certs = x509.load_pem_x509_certificates(bundle.read_bytes())
    assert [c.subject for c in certs] == [svc.iaca_certificate(n).subject for n in (3, 2, 1)]
    assert x509.load_pem_x509_certificates(current.read_bytes()) == certs[:1]
    assert x509.load_der_x509_certificate(der.read_bytes()) == certs[0]
    for ds in (ds1, ds3):
        leaf = tmp_path / "ds.pem"
        leaf.write_bytes(ds.public_bytes(PEM))
        assert _openssl("verify", "-purpose", "any", "-CAfile", str(bundle), str(leaf)).strip().endswith(": OK")
    for n in (1, 3):
        crl, anchor = tmp_path / f"iaca-{n}.crl", tmp_path / f"iaca-{n}.pem"
        crl.write_bytes(svc.iaca_crl(n).public_bytes(DER))
        anchor.write_bytes(svc.iaca_certificate(n).public_bytes(PEM))
        assert "verify OK" in _openssl("crl", "-inform", "DER", "-in", str(crl), "-noout", "-CAfile", str(anchor))


def test_http_iaca_rollover_is_operator_only_and_documented(home):
    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.service import create_app

    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    client = TestClient(app)
    checked = check_every_answer(client, app)
    op = {"Authorization": "Bearer " + create_token(ctx.sessions, ["operator"], "op")[1]}
    issuer = {"Authorization": "Bearer " + create_token(ctx.sessions, ["issuer"], "is")[1]}
    assert client.post("/trust/iaca-rollover", headers=issuer).status_code == 403
    assert client.post("/trust/iaca-rollover").status_code == 401
    r = client.post("/trust/iaca-rollover", headers=op)
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "mdoc-iaca-2" and r.json()["ds"] == "mdoc-ds-2"
    bundle = x509.load_pem_x509_certificates(client.get("/trust/iaca.pem").content)
    assert [format(c.serial_number, "x") for c in bundle][0] == r.json()["serial"] and len(bundle) == 2
    assert client.get("/trust/iaca-2.crl").status_code == 200
    assert "POST /trust/iaca-rollover 200" in set(checked)
    app.state.jobs.shutdown()


def test_the_services_reader_trusts_the_new_iaca_after_a_rollover(home, monkeypatch):
    """`mcred serve`'s own reader (/reader) reads the installation's IACAs again (every minute;
    at once here): an mdoc of the new IACA is on a chain it trusts, where the reader built
    before the rollover had only the first IACA (its verifier takes its anchors when made)."""
    from issuer.api.auth import create_token
    from mcred import api_routes
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service
    from mcred.service import create_app

    ctx = Context.open(home)
    svc = mdoc_service(ctx)
    for n in (1, 2):
        attach_phone(ctx.sessions, register(ctx.sessions, parse_holder(dict(HOLDER, given_name=f"花子{n}"))),
                     f"phone-{n}")
    app = create_app(ctx, job_workers=1)
    client = TestClient(app)
    token = {"Authorization": "Bearer " + create_token(ctx.sessions, ["reader"], "rd")[1]}

    def chain_of(signed: IssuerSigned):  # noqa: ANN202
        r = client.post("/reader/issuer-signed/verify", content=signed.encode(), headers=token)
        assert r.status_code == 200, r.text
        return next(c for c in r.json()["checks"] if c["name"] == "issuer_certificate_chain")

    _k, old = _issue(svc, "phone-1", "job-1")
    assert chain_of(old)["passed"]  # the reader is built now, trusting IACA 1
    svc.rollover_iaca()
    _k, new = _issue(svc, "phone-2", "job-2")
    monkeypatch.setattr(api_routes._LazyReader, "TRUST_REFRESH", 0.0)
    assert chain_of(new)["passed"], chain_of(new)
    assert chain_of(old)["passed"]
    app.state.jobs.shutdown()


def test_a_running_reader_trusts_an_iaca_added_to_its_store_after_a_rollover(world):
    """An IACA added to a running pipeline's trust store (a drill's reader, any embedding
    that adds the bundle's IACAs as they come) is trusted from the next verification: the
    pipeline had built its verifier on the store's anchors once, so an IACA rolled over while
    it ran was never trusted. (The installation's own reader builds a new pipeline when the
    bundle changes: test_the_services_reader_trusts_the_new_iaca_after_a_rollover.)"""
    svc, _sessions, clock, client = world
    svc.setup()
    clock.now = NOW + dt.timedelta(minutes=30)
    svc.rollover_iaca()
    key, signed = _issue(svc, "phone-1", "job-1")
    reader = _reader(client, clock, [svc.iaca_certificate(1)], [])
    data, st = _present(signed, key)
    assert not reader.verify(data, session_transcript=st).check("issuer_certificate_chain").passed
    reader.trust.add(svc.iaca_certificate(2), source="bundle")
    result = reader.verify(data, session_transcript=st)
    assert result.valid, [c for c in result.checks if not c.passed]


def test_the_rollover_and_jpki_work_go_on_in_the_iacas_last_months_and_past_its_end(home):
    """Every TSM run (mcred.provision.issuer_port) and the operator's signer commands and
    routes, `mcred mdoc iaca rollover` and POST /trust/iaca-rollover first, set the mdoc keys up
    (MdocService.setup), which asked for a document signer: in the IACA's last months that is
    refused, past its end the IACA signs nothing, so a JPKI renewal, a revocation workflow and
    the very rollover the refusal names were all refused, and past the end no command could
    ever make the new IACA. Now setup makes what the IACA can still make; issuance alone is
    refused, naming the rollover."""
    import time_machine

    from issuer.api.auth import create_token
    from mcred.cli.main import app as cli
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service
    from mcred.provision import issuer_port
    from mcred.service import create_app

    ctx = Context.open(home)
    svc = mdoc_service(ctx)
    end = svc.iaca_certificate().not_valid_after_utc
    with time_machine.travel(end - dt.timedelta(days=30), tick=False):
        issuer_port(ctx)  # what `mcred jpki renew`, a handover, a revocation workflow open
        root, ds, status = svc.setup()
        assert (root.label, ds, status.label) == ("mdoc-iaca-1", None, "mdoc-status-1")
        with pytest.raises(MdocKeyError, match="mcred mdoc iaca rollover"):
            svc.document_signer()
        out = CliRunner().invoke(cli, ["mdoc", "iaca", "list", "--json"])
        assert out.exit_code == 0, out.output
    with time_machine.travel(end + dt.timedelta(days=1), tick=False):
        issuer_port(ctx)
        assert svc.setup()[1:] == (None, None)
        with pytest.raises(IacaEnded):
            svc.document_signer()
        app = create_app(ctx, job_workers=1)
        op = {"Authorization": "Bearer " + create_token(ctx.sessions, ["operator"], "op")[1]}
        r = TestClient(app).post("/trust/iaca-rollover", headers=op)
        app.state.jobs.shutdown()
        assert r.status_code == 200, r.text
        assert r.json()["label"] == "mdoc-iaca-2"
        assert svc.document_signer().iaca_label == "mdoc-iaca-2"
        out = CliRunner().invoke(cli, ["mdoc", "iaca", "rollover", "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["label"] == "mdoc-iaca-3"


def test_a_list_signed_in_its_iacas_last_hours_is_not_served_past_its_end(world):
    """In the IACA's last months its lists are signed by a status-list signer kept to the
    IACA's end, and a token lives 24 h: one signed in the last hours was stored and served as
    it was past the IACA's end (200, by a signer every reader refuses by then), where the
    list answers 410 iaca-ended (specs/issuer-keys.md)."""
    svc, _sessions, clock, client = world
    _key, signed = _issue(svc, "phone-1", "job-1")
    path = signed_status(signed).removeprefix(BASE)
    end = svc.iaca_certificate().not_valid_after_utc
    clock.now = end - dt.timedelta(hours=2)
    token = decode_status_list_token(client.get(path).content)
    assert token.header.exp > end and token.header.signer.not_valid_after_utc == end
    clock.now = end + dt.timedelta(minutes=1)
    r = client.get(path)
    assert r.status_code == 410 and r.json()["type"] == problems.IACA_ENDED.uri, r.status_code
    assert client.get(path.replace("/status/", "/identifiers/")).status_code == 410


def test_a_provisioning_the_iaca_cannot_issue_for_is_refused_as_nothing_done_exit_2(home, tmp_path):
    """In the IACA's last months `mcred provision` is refused before anything is written
    (mcred.provision.check_mdoc_issuance): that is exit 2 (specs/cli.md), as every refusal
    before anything was done, with --json too; it was exit 1, a job that tried and failed."""
    import time_machine

    from mcred.cli.main import app as cli
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service

    ctx = Context.open(home)
    end = mdoc_service(ctx).iaca_certificate().not_valid_after_utc
    holder = tmp_path / "holder.json"
    holder.write_text(json.dumps(HOLDER, ensure_ascii=False), encoding="utf-8")
    with time_machine.travel(end - dt.timedelta(days=30), tick=False):
        out = CliRunner().invoke(cli, ["provision", "--phone", "new", "--holder", str(holder)])
        assert out.exit_code == 2, out.output
        assert "no mdoc can be issued now, nothing was done" in out.stderr and "iaca rollover" in out.stderr
        out = CliRunner().invoke(cli, ["provision", "--phone", "new", "--holder", str(holder), "--json"])
        assert out.exit_code == 2 and "no mdoc can be issued now" in json.loads(out.output)["error"]
    from issuer.db import Holder

    with ctx.sessions() as s:
        assert s.query(Holder).count() == 0  # nothing registered
