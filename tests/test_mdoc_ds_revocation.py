"""Document-signer revocation (issue 5): the issuer revokes a DS certificate, the IACA CRL
(RFC 5280, signed by the IACA key through the keystore) lists it with its reason at the CRL
distribution point the certificates carry; OpenSSL reads the CRL and refuses the DS with
``-crl_check``; the reader's ``ds_revocation`` check (reader/ds_crl.py) refuses an mdoc
signed by the revoked DS and keeps a CRL until its nextUpdate. Both database backends."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from documented import check_every_answer
from fastapi.testclient import TestClient
from mdoc_world import mdoc_world
from typer.testing import CliRunner

from issuer.db import AuditEvent
from issuer.mdoc.errors import SignerRevocationError, UnknownSigner
from issuer.mdoc.issuance import make_proof
from mcred.present import reader_pipeline
from protocols import cose
from protocols.cose import CoseKey
from protocols.mdoc import DeviceResponse, IssuerSigned, SessionTranscript, build_document
from reader.ds_crl import CrlFetchError, DsCrlCheck, HttpCrlFetcher
from reader.pipeline import HttpAnswer
from reader.trust import TrustStore

NOW = dt.datetime(2026, 12, 3, 3, 0, tzinfo=dt.UTC)
DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


@pytest.fixture
def world(db_url):
    engine, sessions, clock, svc = mdoc_world(db_url, NOW)
    yield svc, sessions, clock
    engine.dispose()


def _issue(svc, job: str, slot: int = 0):
    key = ec.generate_private_key(ec.SECP256R1())
    spki, proof = make_proof(key, svc.mdoc_challenge(job, "phone-1", slot))
    return key, IssuerSigned.from_cbor(svc.issue_mdoc(job, "phone-1", slot, spki, proof))


def _present(signed: IssuerSigned, key) -> tuple[bytes, SessionTranscript]:
    reader_key = CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    st = SessionTranscript.build(b"\xa1\x00c1.0", reader_key, None)
    doc = build_document(signed, st, signer=cose.key_signer(key))
    return DeviceResponse((doc,)).encode(), st


def test_revoked_ds_is_on_the_iaca_crl_with_its_reason_and_is_replaced(world):
    svc, sessions, clock = world
    svc.setup()
    _key, first = _issue(svc, "job-1")
    ds = x509.load_der_x509_certificate(first.issuer_auth.x5chain[0])
    empty = svc.iaca_crl()
    assert len(empty) == 0 and svc.iaca_crl() is empty  # stored: the same CRL until a change
    (info,) = svc.signers()
    assert info.active and info.serial == format(ds.serial_number, "x") and info.affected_mdocs == 1

    clock.now = NOW + dt.timedelta(minutes=5)
    info, changed = svc.revoke_signer(f"{ds.serial_number:X}", "keyCompromise", actor="test")
    assert changed and not info.active and info.reason == "keyCompromise"
    assert info.revoked_at == clock.now
    crl = svc.iaca_crl()
    iaca = svc.iaca_certificate()
    assert crl.issuer == iaca.subject and crl.is_signature_valid(iaca.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(ds.serial_number)
    assert entry is not None and entry.revocation_date_utc == clock.now
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason \
        is x509.ReasonFlags.key_compromise
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(crl) > number(empty)
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(hours=24)

    # idempotent; by label too; unknown and hold refused with typed errors, nothing changed
    assert svc.revoke_signer("mdoc-ds-1", "superseded") == (info, False)
    with pytest.raises(UnknownSigner):
        svc.revoke_signer("00ff00", "keyCompromise")
    with pytest.raises(SignerRevocationError):
        svc.revoke_signer("mdoc-ds-1", "certificateHold")
    assert svc.iaca_crl() is crl
    # the next MSO is signed by a new generation, which is not on the CRL
    _key, second = _issue(svc, "job-2")
    ds2 = x509.load_der_x509_certificate(second.issuer_auth.x5chain[0])
    assert ds2.serial_number != ds.serial_number
    assert [s.label for s in svc.signers() if s.active] == ["mdoc-ds-2"]
    assert crl.get_revoked_certificate_by_serial_number(ds2.serial_number) is None
    with sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="mdoc.signer.revoke").all()
        assert event.subject == "mdoc-ds-1" and event.detail["reason"] == "keyCompromise"


def test_a_signer_revoked_superseded_and_then_found_compromised_is_amended(world):
    """A document signer retired (superseded) and later known compromised: revoked again for
    keyCompromise, its IACA CRL entry says keyCompromise from the next CRL on, its revocation
    time stays, audited mdoc.signer.revoke.amend; never back to another reason."""
    svc, sessions, clock = world
    svc.setup()
    _key, first = _issue(svc, "job-1")
    ds = x509.load_der_x509_certificate(first.issuer_auth.x5chain[0])
    clock.now = NOW + dt.timedelta(minutes=5)
    revoked_at = clock.now
    assert svc.revoke_signer("mdoc-ds-1", "superseded", actor="test")[1]
    reason = lambda: svc.iaca_crl().get_revoked_certificate_by_serial_number(  # noqa: E731
        ds.serial_number).extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason() is x509.ReasonFlags.superseded
    clock.now = NOW + dt.timedelta(minutes=9)
    done = svc.revoke_signer_detail("mdoc-ds-1", "keyCompromise", actor="test")
    assert (done.changed, done.amended_from, done.info.reason) == (True, "superseded", "keyCompromise")
    assert done.info.revoked_at == revoked_at
    assert reason() is x509.ReasonFlags.key_compromise
    entry = svc.iaca_crl().get_revoked_certificate_by_serial_number(ds.serial_number)
    assert entry.revocation_date_utc == revoked_at
    for again in ("superseded", "cessationOfOperation", "keyCompromise"):
        assert svc.revoke_signer_detail("mdoc-ds-1", again).changed is False, again
    with sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="mdoc.signer.revoke.amend").all()
        assert event.detail["previous_reason"] == "superseded" and event.detail["reason"] == "keyCompromise"


def test_reader_ds_revocation_refuses_an_mdoc_of_a_revoked_ds(world):
    svc, _sessions, clock = world
    key, signed = _issue(svc, "job-1")
    crl_urls: list[str] = []

    def crl_fetch(url: str) -> bytes:
        crl_urls.append(url)
        return svc.iaca_crl().public_bytes(DER)

    def status_fetch(uri: str, etag):  # noqa: ANN001
        return HttpAnswer(200, svc.status_token_by_uri(uri).token, {})

    def reader(check: DsCrlCheck):
        trust = TrustStore()
        trust.add(svc.iaca_certificate())
        return reader_pipeline(trust=trust, clock=lambda: clock.now + dt.timedelta(minutes=1),
                               fetcher=status_fetch, require_status=True, ds_crl=check)

    check = DsCrlCheck(crl_fetch)
    data, st = _present(signed, key)
    result = reader(check).verify(data, session_transcript=st)
    assert result.valid, [c for c in result.checks if not c.passed]
    assert "not on the IACA CRL" in result.check("ds_revocation").reason
    assert crl_urls == ["http://issuer.test/trust/iaca.crl"]

    svc.revoke_signer("mdoc-ds-1", "keyCompromise")
    # a reader keeps its CRL until the CRL's nextUpdate ...
    assert check(_ctx_stub(signed, svc)).passed and len(crl_urls) == 1
    # ... a reader without a copy (or past nextUpdate) sees the revocation
    fresh = reader(DsCrlCheck(crl_fetch)).verify(data, session_transcript=st)
    assert {c.name for c in fresh.checks if not c.passed} == {"ds_revocation"}
    assert "revoked (keyCompromise)" in fresh.check("ds_revocation").reason
    assert not fresh.documents
    ds = x509.load_der_x509_certificate(signed.issuer_auth.x5chain[0])
    # ... but at most max_age (one hour by default), however far its nextUpdate is
    assert check.max_age == dt.timedelta(hours=1)
    assert check.check(ds, svc.iaca_certificate(), clock.now + dt.timedelta(minutes=50)).passed
    assert len(crl_urls) == 2
    hour_later = check.check(ds, svc.iaca_certificate(), clock.now + dt.timedelta(minutes=62))
    assert not hour_later.passed and "revoked (keyCompromise)" in hour_later.reason
    assert len(crl_urls) == 3
    later = clock.now + dt.timedelta(hours=25)
    clock.now = later
    assert not check.check(ds, svc.iaca_certificate(), later).passed  # refetched
    assert len(crl_urls) >= 3


def _ctx_stub(signed, svc):  # noqa: ANN001
    """A DocumentContext stand-in: only ds_chain and now are read by the check."""
    ds = x509.load_der_x509_certificate(signed.issuer_auth.x5chain[0])

    class Chain:
        leaf, anchor = ds, svc.iaca_certificate()

    class Ctx:
        ds_chain, now = Chain, NOW + dt.timedelta(minutes=10)

    return Ctx


def test_ds_crl_check_fails_closed(world):
    svc, _sessions, _clock = world
    svc.setup()
    ds = svc.document_signer().certificate
    iaca = svc.iaca_certificate()
    at = NOW + dt.timedelta(minutes=1)

    def down(url: str) -> bytes:
        raise CrlFetchError(f"GET {url}: ConnectError")

    assert "unavailable" in DsCrlCheck(down).check(ds, iaca, at).reason
    assert "does not parse" in DsCrlCheck(lambda u: b"junk").check(ds, iaca, at).reason
    # a CRL in the IACA's name signed by another key
    forged = (x509.CertificateRevocationListBuilder().issuer_name(iaca.subject)
              .last_update(NOW).next_update(NOW + dt.timedelta(days=1))
              .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(DER))
    assert "does not verify" in DsCrlCheck(lambda u: forged).check(ds, iaca, at).reason
    stale = DsCrlCheck(lambda u: svc.iaca_crl().public_bytes(DER))
    assert "has passed" in stale.check(ds, iaca, at + dt.timedelta(days=2)).reason


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_cli_revoke_openssl_reads_the_crl_and_refuses_the_ds(home, tmp_path):
    from mcred.cli.main import app as cli
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service
    from mcred.service import create_app

    def run(*args: str, code: int = 0) -> str:
        out = CliRunner().invoke(cli, list(args))
        assert out.exit_code == code, out.output
        return out.output

    (ds_info,) = json.loads(run("mdoc", "ds", "list", "--json"))
    # the plain listing gives the serial whole: the revoke command takes it
    assert run("mdoc", "ds", "list").startswith(f"{ds_info['label']}  serial {ds_info['serial']}  until ")
    ctx = Context.open(home)
    svc = mdoc_service(ctx)
    iaca, ds = svc.iaca_certificate(), svc.document_signer().certificate
    iaca_pem, ds_pem, crl_file = tmp_path / "iaca.pem", tmp_path / "ds.pem", tmp_path / "iaca.crl"
    iaca_pem.write_bytes(iaca.public_bytes(PEM))
    ds_pem.write_bytes(ds.public_bytes(PEM))
    (dp,) = ds.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    path = dp.full_name[0].value.removeprefix(ctx.public_url)
    assert path == "/trust/iaca.crl"
    client = TestClient(create_app(ctx, job_workers=1))

    def fetch_crl() -> str:
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
        crl_file.write_bytes(r.content)
        return _openssl("crl", "-inform", "DER", "-in", str(crl_file), "-noout", "-text")

    def verify() -> str:
        pem = tmp_path / "iaca-crl.pem"
        pem.write_bytes(x509.load_der_x509_crl(crl_file.read_bytes()).public_bytes(PEM))
        return _openssl("verify", "-crl_check", "-purpose", "any", "-CAfile", str(iaca_pem),
                        "-CRLfile", str(pem), str(ds_pem))

    assert "No Revoked Certificates" in fetch_crl()
    assert verify().strip().endswith(": OK")
    # the reader's fetcher over HTTP (the service in-process): at the URL the DS names
    at = dt.datetime.now(dt.UTC)
    assert DsCrlCheck(HttpCrlFetcher(client)).check(ds, iaca, at).passed
    out = run("mdoc", "ds", "revoke", ds_info["serial"], "--reason", "keyCompromise", "--json")
    assert json.loads(out)["changed"] and json.loads(out)["reason"] == "keyCompromise"
    text = fetch_crl()
    serials = [int(line.split(":", 1)[1], 16) for line in text.splitlines()
               if line.strip().startswith("Serial Number:")]
    assert serials == [ds.serial_number], text  # (OpenSSL pads to whole bytes)
    assert "Key Compromise" in text and "X509v3 CRL Number" in text
    out = verify()
    assert "certificate revoked" in out and "error 23" in out, out
    refused = DsCrlCheck(HttpCrlFetcher(client)).check(ds, iaca, dt.datetime.now(dt.UTC))
    assert not refused.passed and "revoked (keyCompromise)" in refused.reason
    run("mdoc", "ds", "revoke", "nope", "--reason", "keyCompromise", code=2)
    assert "already revoked" in run("mdoc", "ds", "revoke", ds_info["label"], "--reason",
                                    "superseded")
    listed = json.loads(run("mdoc", "ds", "list", "--json"))
    assert [(s["label"], s["active"], s["reason"]) for s in listed] == [
        ("mdoc-ds-1", False, "keyCompromise"), ("mdoc-ds-2", True, None)]
    client.app.state.jobs.shutdown()


def _openssl(*args: str) -> str:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def test_cli_says_a_signer_revocation_was_amended(home):
    from mcred.cli.main import app as cli

    def run(*args: str) -> str:
        out = CliRunner().invoke(cli, list(args))
        assert out.exit_code == 0, out.output
        return out.output

    (ds_info,) = json.loads(run("mdoc", "ds", "list", "--json"))
    label = ds_info["label"]
    assert "amended_from" not in json.loads(run("mdoc", "ds", "revoke", label, "--reason", "superseded", "--json"))
    out = " ".join(run("mdoc", "ds", "revoke", label, "--reason", "keyCompromise").split())
    assert f"{label} serial {ds_info['serial']}: revoked (superseded) -> revoked (keyCompromise), amended" in out, out
    doc = json.loads(run("mdoc", "ds", "revoke", label, "--reason", "keyCompromise", "--json"))
    assert doc["changed"] is False and "amended_from" not in doc and doc["reason"] == "keyCompromise"


def test_http_ds_revocation_is_operator_only_and_typed(home):
    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service
    from mcred.service import create_app

    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    client = TestClient(app)
    checked = check_every_answer(client, app)  # the signers revoked, as the document declares them
    op = {"Authorization": "Bearer " + create_token(ctx.sessions, ["operator"], "op")[1]}
    issuer = {"Authorization": "Bearer " + create_token(ctx.sessions, ["issuer"], "is")[1]}
    body = {"ds": "mdoc-ds-1", "reason": "keyCompromise"}
    assert client.post("/trust/ds-revocations", json=body, headers=issuer).status_code == 403
    r = client.post("/trust/ds-revocations", json={**body, "ds": "mdoc-ds-9"}, headers=op)
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-signer"
    r = client.post("/trust/ds-revocations", json={**body, "reason": "certificateHold"}, headers=op)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    r = client.post("/trust/ds-revocations", json=body, headers=op)
    assert r.status_code == 200 and r.json()["changed"] and r.json()["reason"] == "keyCompromise"
    crl = x509.load_der_x509_crl(client.get("/trust/iaca.crl").content)
    serial = int(r.json()["serial"], 16)
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert not client.post("/trust/ds-revocations", json=body, headers=op).json()["changed"]
    # a serial in each form openssl prints names the same DS, as on the command line
    # (specs/revocation.md: protocols.certs.parse_serial): the longest, 20 octets, included
    octets = serial.to_bytes((serial.bit_length() + 7) // 8, "big")
    for form in ("serial=" + octets.hex().upper(), ":".join(f"{b:02x}" for b in octets),
                 " ".join(f"{b:02X}" for b in octets), "serial=" + ":".join(f"{b:02X}" for b in 20 * b"\xff")):
        r = client.post("/trust/ds-revocations", json={**body, "ds": form}, headers=op)
        if form.endswith("FF:FF"):
            assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-signer", (form, r.text)
        else:
            assert r.status_code == 200 and r.json()["serial"] == format(serial, "x"), (form, r.text)
    assert mdoc_service(ctx).document_signer().label == "mdoc-ds-2"
    # the status-list signer has its own route; neither route reaches the other's signers
    url = "/trust/status-signer-revocations"
    body = {"signer": "mdoc-status-1", "reason": "keyCompromise"}
    assert client.post(url, json=body, headers=issuer).status_code == 403
    assert client.post(url, json={**body, "signer": "mdoc-ds-2"}, headers=op).status_code == 404
    assert client.post("/trust/ds-revocations", json={"ds": "mdoc-status-1",
                       "reason": "keyCompromise"}, headers=op).status_code == 404
    r = client.post(url, json=body, headers=op)
    assert r.status_code == 200 and r.json()["changed"] and r.json()["purpose"] == "status-signer"
    crl = x509.load_der_x509_crl(client.get("/trust/iaca.crl").content)
    assert crl.get_revoked_certificate_by_serial_number(int(r.json()["serial"], 16)) is not None
    assert {"POST /trust/ds-revocations 200", "POST /trust/status-signer-revocations 200"} <= set(checked)
    app.state.jobs.shutdown()


def test_revoked_status_list_signer_fails_the_list_and_the_issuer_re_signs(world):
    """The status-list signer is certified by the IACA too: revoked, it is on the IACA CRL;
    a reader that checks the CRL refuses a list it signed (``status_list_signature``, the
    index not read), and the issuer re-signs every list under a new signer generation."""
    from issuer.mdoc.pki import PURPOSE_STATUS
    from protocols.status import decode_status_list_token

    svc, _sessions, clock = world
    key, signed = _issue(svc, "job-1")
    uri = signed.mso().status.status_list.uri

    def crl_fetch(url: str) -> bytes:
        return svc.iaca_crl().public_bytes(DER)

    def reader(fetch):  # noqa: ANN001
        trust = TrustStore()
        trust.add(svc.iaca_certificate())
        return reader_pipeline(trust=trust, clock=lambda: clock.now + dt.timedelta(minutes=1),
                               fetcher=fetch, require_status=True, ds_crl=DsCrlCheck(crl_fetch))

    live = lambda uri, etag: HttpAnswer(200, svc.status_token_by_uri(uri).token, {})  # noqa: E731
    data, st = _present(signed, key)
    result = reader(live).verify(data, session_transcript=st)
    assert result.valid, [c for c in result.checks if not c.passed]
    old = svc.status_token_by_uri(uri).token
    old_signer = decode_status_list_token(old).header.signer

    (info,) = svc.signers(PURPOSE_STATUS)
    assert info.serial == format(old_signer.serial_number, "x")
    clock.now = NOW + dt.timedelta(minutes=2)
    with pytest.raises(UnknownSigner):  # a status signer is not a DS: the DS route cannot reach it
        svc.revoke_signer(info.label, "keyCompromise")
    info, changed = svc.revoke_signer(info.label, "keyCompromise", purposes=(PURPOSE_STATUS,))
    assert changed and info.reason == "keyCompromise"
    assert svc.iaca_crl().get_revoked_certificate_by_serial_number(old_signer.serial_number)

    # a reader still served the list signed by the revoked signer refuses it
    replay = reader(lambda uri, etag: HttpAnswer(200, old, {})).verify(data, session_transcript=st)
    assert {c.name for c in replay.checks if not c.passed} == {"status_list_signature", "revocation_status"}
    reason = replay.check("status_list_signature").reason
    assert f"list signer serial {old_signer.serial_number:x} revoked (keyCompromise)" in reason
    assert replay.check("revocation_status").reason == "not checked: list not trusted"
    assert not replay.documents

    # the issuer's next answer is the same list under a new signer generation: accepted
    new = svc.status_token_by_uri(uri).token
    assert new != old
    assert decode_status_list_token(new).header.signer.serial_number != old_signer.serial_number
    again = reader(live).verify(data, session_transcript=st)
    assert again.valid, [c for c in again.checks if not c.passed]
    assert [(s.label, s.active, s.reason) for s in svc.signers(PURPOSE_STATUS)] == [
        ("mdoc-status-1", False, "keyCompromise"), ("mdoc-status-2", True, None)]


def test_a_reader_holding_a_list_whose_signer_is_revoked_fetches_it_again_once(world):
    """A reader that cached a list before its signer was revoked does not refuse every mdoc
    on it until the list's ttl runs out: finding the signer on the IACA CRL, it fetches the
    list once more, and takes the copy the issuer re-signed. An issuer still serving the old
    list is asked once, not at every verification."""
    from issuer.mdoc.pki import PURPOSE_STATUS

    svc, _sessions, clock = world
    key, signed = _issue(svc, "job-1")
    served: list[str] = []
    stale = {"on": False}
    old_token: list[bytes] = []

    def fetch(uri: str, etag: str | None) -> HttpAnswer:
        served.append(uri)
        token = old_token[0] if stale["on"] else svc.status_token_by_uri(uri).token
        return HttpAnswer(200, token, {})

    def crl_fetch(url: str) -> bytes:
        return svc.iaca_crl().public_bytes(DER)

    trust = TrustStore()
    trust.add(svc.iaca_certificate())
    reader = reader_pipeline(trust=trust, clock=lambda: clock.now + dt.timedelta(minutes=1), fetcher=fetch,
                             require_status=True, ds_crl=DsCrlCheck(crl_fetch, max_age=dt.timedelta(0)))
    data, st = _present(signed, key)
    assert reader.verify(data, session_transcript=st).valid
    assert len(served) == 1
    old_token.append(svc.status_token_by_uri(signed.mso().status.status_list.uri).token)

    (info,) = svc.signers(PURPOSE_STATUS)
    clock.now = NOW + dt.timedelta(seconds=30)  # well within the cached list's ttl
    svc.revoke_signer(info.label, "keyCompromise", purposes=(PURPOSE_STATUS,))
    again = reader.verify(data, session_transcript=st)
    assert again.valid, [c for c in again.checks if not c.passed]
    assert len(served) == 2  # fetched again at once, the re-signed copy taken
    assert again.check("status_list_freshness").reason.startswith("new copy; ")

    # a second signer revoked, and the issuer (say, a stale mirror) still serves the old list
    (info,) = [s for s in svc.signers(PURPOSE_STATUS) if s.active]
    old_token[0] = svc.status_token_by_uri(signed.mso().status.status_list.uri).token
    svc.revoke_signer(info.label, "keyCompromise", purposes=(PURPOSE_STATUS,))
    stale["on"] = True
    for _ in range(3):
        refused = reader.verify(data, session_transcript=st)
        assert {c.name for c in refused.checks if not c.passed} == {"status_list_signature", "revocation_status"}
    assert len(served) == 3  # asked once, then refused from the cache until its ttl runs out


def test_cli_status_list_signer_list_and_revoke(home):
    from mcred.cli.main import app as cli

    def run(*args: str, code: int = 0) -> str:
        out = CliRunner().invoke(cli, list(args))
        assert out.exit_code == code, out.output
        return out.output

    (signer,) = json.loads(run("status-list", "signer", "list", "--json"))
    assert signer["label"] == "mdoc-status-1" and signer["active"]
    run("status-list", "signer", "revoke", "mdoc-ds-1", "--reason", "keyCompromise", code=2)
    run("status-list", "signer", "revoke", "mdoc-status-1", "--reason", "certificateHold", code=2)
    out = json.loads(run("status-list", "signer", "revoke", signer["serial"], "--reason",
                         "keyCompromise", "--json"))
    assert out["changed"] and out["label"] == "mdoc-status-1"
    assert "already revoked" in run("status-list", "signer", "revoke", "mdoc-status-1",
                                    "--reason", "superseded")


def test_ds_crl_keeps_only_verified_crls_per_iaca(world):
    """The IACA CRL cache (reader.crl_cache, the relying party's rules): a CRL that fails
    verification is not kept, so the next check fetches again; a good one is kept per
    (URL, IACA) and a different IACA at the same URL gets its own verification;
    ``max_age`` zero keeps nothing."""
    svc, _sessions, _clock = world
    svc.setup()
    ds = svc.document_signer().certificate
    iaca = svc.iaca_certificate()
    at = NOW + dt.timedelta(minutes=1)
    good = svc.iaca_crl().public_bytes(DER)
    forged = (x509.CertificateRevocationListBuilder().issuer_name(iaca.subject)
              .last_update(NOW).next_update(NOW + dt.timedelta(days=1))
              .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()).public_bytes(DER))
    served = [forged]
    urls: list[str] = []

    def fetch(url: str) -> bytes:
        urls.append(url)
        return served[-1]

    check = DsCrlCheck(fetch)
    assert "does not verify" in check.check(ds, iaca, at).reason
    assert "does not verify" in check.check(ds, iaca, at).reason
    assert len(urls) == 2  # the forged CRL was not kept
    served.append(good)
    assert check.check(ds, iaca, at).passed and check.check(ds, iaca, at).passed
    assert len(urls) == 3  # the verified one is kept
    other = (x509.CertificateBuilder().subject_name(iaca.subject).issuer_name(iaca.subject)
             .public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).serial_number(9)
             .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
             .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    assert "does not verify" in check.check(ds, other, at).reason  # not the IACA that verified it
    assert len(urls) == 4
    never = DsCrlCheck(fetch, max_age=dt.timedelta(0))
    assert never.check(ds, iaca, at).passed and never.check(ds, iaca, at).passed
    assert len(urls) == 6


def test_ds_crl_check_believes_an_entry_of_a_list_without_next_update_never_its_silence():
    """An IACA CRL without nextUpdate (RFC 5280 5.1.2.5 requires one; a foreign IACA's may
    lack it) was taken as current for ever: the DS passed. Its entries are believed (the
    DS and a status-list signer it lists are refused), its silence is not; a CRL whose
    issuingDistributionPoint leaves the DS out does not speak for it either."""
    from test_ca_crl import CA, KEY, _idp, _leaf, _with, without_next_update

    url = "http://iaca.test/crl"
    point = x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
    ds = _leaf(points=[point], serial=90)
    at = dt.datetime.now(dt.UTC)

    def crl(*revoked, undated=True, idp=None):
        built = _with(*([(idp, True)] if idp else []), this=at - dt.timedelta(hours=1),
                      revoked=[x509.RevokedCertificateBuilder().serial_number(s).revocation_date(
                          at - dt.timedelta(hours=2)).build() for s in revoked])
        built = without_next_update(built, KEY) if undated else built
        return built.public_bytes(DER)

    silent = DsCrlCheck(lambda u: crl()).check(ds, CA, at)
    assert (silent.passed, silent.code) == (False, "unavailable"), silent
    assert silent.reason.startswith(f"IACA CRL at {url}: it has no nextUpdate (RFC 5280 5.1.2.5 requires one)")
    listed = DsCrlCheck(lambda u: crl(90)).check(ds, CA, at)
    assert (listed.passed, listed.code) == (False, "ds_revoked"), listed
    assert DsCrlCheck(lambda u: crl(90)).signer_revoked(ds, CA, at).startswith("serial 5a revoked (unspecified)")
    assert "it has no nextUpdate" in DsCrlCheck(lambda u: crl()).signer_revoked(ds, CA, at)
    assert DsCrlCheck(lambda u: crl(undated=False)).check(ds, CA, at).passed
    other = x509.DirectoryName(x509.Name.from_rfc4514_string("CN=another partition"))
    scoped = DsCrlCheck(lambda u: crl(undated=False, idp=_idp(full_name=[other]))).check(ds, CA, at)
    assert (scoped.passed, scoped.code) == (False, "unavailable"), scoped
    assert scoped.reason == (f"IACA CRL at {url}: the CRL's issuingDistributionPoint names none of the "
                             "certificate's distribution points (another partition's CRL)")


def test_the_http_crl_fetcher_turns_an_error_status_or_a_failed_request_into_a_fetch_error():
    """A CRL is only what a 200 answer carries: any other status, or no answer at all, is a
    CrlFetchError (ds_revocation then says the CRL is unavailable), never a body to parse."""
    import httpx

    def answer(request):
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        assert request.headers["accept"] == "application/pkix-crl"
        return httpx.Response(200 if request.url.path == "/crl" else 404, content=b"crl bytes")

    fetcher = HttpCrlFetcher(httpx.Client(transport=httpx.MockTransport(answer)))
    assert fetcher("http://issuer.test/crl") == b"crl bytes"
    with pytest.raises(CrlFetchError, match="HTTP 404"):
        fetcher("http://issuer.test/gone")
    with pytest.raises(CrlFetchError, match="ConnectError"):
        fetcher("http://issuer.test/down")


def test_ds_revocation_without_a_chain_or_a_distribution_point_is_not_a_pass():
    """No trusted DS chain: ``ds_revocation`` is not checked. A DS certificate (or a status
    list signer) naming no CRL distribution point: nowhere to learn its revocation, so the
    check fails as unavailable (fail closed), and the signer is not trusted."""
    from test_present_kit import make_pki

    pki = make_pki()
    fetched = []
    check = DsCrlCheck(lambda url: fetched.append(url) or b"")

    class Ctx:
        ds_chain, now = None, NOW

    untrusted = check(Ctx)
    assert (untrusted.passed, untrusted.code) == (False, "not_checked")
    bare = (x509.CertificateBuilder().subject_name(pki.ds.subject).issuer_name(pki.iaca.subject)
            .public_key(pki.ds_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(pki.ds.not_valid_before_utc).not_valid_after(pki.ds.not_valid_after_utc)
            .sign(pki.iaca_key, hashes.SHA256()))
    at = pki.ds.not_valid_before_utc + dt.timedelta(days=1)
    result = check.check(bare, pki.iaca, at)
    assert (result.passed, result.code) == (False, "unavailable")
    assert "names no CRL distribution point" in result.reason
    assert "names no CRL distribution point" in check.signer_revoked(bare, pki.iaca, at)
    assert fetched == []


def test_a_revoked_ds_is_on_the_first_iaca_crl_after_its_end_and_on_none_later(world):
    """RFC 5280 3.3: "An entry MUST NOT be removed from the CRL until it appears on one
    regularly scheduled CRL issued beyond the revoked certificate's validity period." The
    IACA CRL built just after the revoked DS ended still lists it (the one before was built
    while it was valid); the next one, a day on, does not."""
    svc, _sessions, clock = world
    svc.setup()
    _key, signed = _issue(svc, "job-1")
    ds = x509.load_der_x509_certificate(signed.issuer_auth.x5chain[0])
    clock.now = NOW + dt.timedelta(minutes=5)
    svc.revoke_signer(f"{ds.serial_number:X}", "keyCompromise", actor="test")
    assert svc.iaca_crl().get_revoked_certificate_by_serial_number(ds.serial_number) is not None
    clock.now = ds.not_valid_after_utc + dt.timedelta(seconds=1)
    after_end = svc.iaca_crl()
    assert after_end.last_update_utc > ds.not_valid_after_utc
    assert after_end.get_revoked_certificate_by_serial_number(ds.serial_number) is not None
    clock.now += dt.timedelta(hours=24)
    later = svc.iaca_crl()
    assert later.last_update_utc > after_end.last_update_utc
    assert later.get_revoked_certificate_by_serial_number(ds.serial_number) is None
