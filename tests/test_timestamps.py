"""Signature time-stamps, end to end: the installation's TSA (`POST /tsa`, RFC 3161 over
HTTP), `mcred jpki sign --timestamp | --tsa URL` (CAdES-T; with --pdf, PAdES B-T) and the
relying party judging a time-stamped signature at its time-stamp: a signature made before
the certificate was revoked (an address change, a handover) stays valid, one made after is
refused, and one without a time-stamp is refused once the certificate is revoked.

pyHanko's own validator is the second opinion on the PDF's time-stamp; OpenSSL reads the
TSA's answers over HTTP."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import httpx
import pytest
from conftest import person
from cryptography.hazmat.primitives import serialization
from test_present_http import free_port, installation_env
from test_rp_http import run_cli
from typer.testing import CliRunner

import wallet_sim
from issuer.db import AuditEvent
from mcred.cli.main import app as cli
from mcred.context import Context
from mcred.jpki_flow import jpki_issuer, sign_file
from mcred.provision import parse_holder, provision
from mcred.timestamps import CLEAR_OF_STAMP_SECONDS, Stamper, TimestampError, time_stamp_authority
from protocols import tsp
from protocols.jpki.cms import verify_detached_signature
from reader.relying_party import RelyingPartyService, verify

try:
    import pyhanko
except ImportError:  # the pdf extra: the PAdES B-T part of a test is left out without it
    pyhanko = None

HOLDER = {"family_name": "山本", "given_name": "花子", "family_name_kana": "やまもと",
          "given_name_kana": "はなこ", "birth_date": "1988-03-03", "sex": 2,
          "address": "福岡県福岡市中央区天神1-8-1", "prefecture": "福岡県", "municipality": "福岡市"}
PASSWORD = "STAMP2026SIGN"
CONTENT = "賃貸借契約書 2026-12-05".encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from test_rp_http import served_installation

    with served_installation(tmp_path_factory, HOLDER, PASSWORD, ("p384", "rsa2048")) as w:
        (w["files"] / "lease.txt").write_bytes(CONTENT)
        yield {**w, "phone": w["phones"]["p384"], "moving": w["phones"]["rsa2048"],
               "tsa_roots": time_stamp_authority(w["ctx"]).roots()}


def _checks(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def test_the_tsa_over_http_is_read_by_openssl(world, tmp_path):
    url = f"{world['issuer_url']}/tsa"
    root_pem = httpx.get(f"{url}/root.pem").content
    assert root_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert httpx.get(f"{url}/root.der").headers["content-type"] == "application/pkix-cert"
    crl = httpx.get(f"{url}/root.crl")
    assert crl.headers["content-type"] == "application/pkix-crl"
    from cryptography import x509

    assert x509.load_der_x509_crl(crl.content).is_signature_valid(world["tsa_roots"][-1].public_key())
    request = tsp.build_request(tsp.digest("sha256", CONTENT), nonce=12345)
    answer = httpx.post(url, content=request, headers={"Content-Type": tsp.QUERY_MEDIA_TYPE})
    assert answer.status_code == 200 and answer.headers["content-type"] == tsp.REPLY_MEDIA_TYPE
    assert answer.headers["cache-control"] == "no-store"
    stamp = tsp.verify_token(tsp.token_of_response(answer.content), data=CONTENT, roots=world["tsa_roots"],
                             nonce=12345)
    # every token is logged, by serial, with what it stamped
    with world["ctx"].sessions() as s:
        logged = s.query(AuditEvent).filter_by(action="tsa.stamp", subject=format(stamp.serial, "x")).one()
    assert logged.detail["imprint"] == tsp.digest("sha256", CONTENT).hex()
    if shutil.which("openssl"):
        (tmp_path / "root.pem").write_bytes(root_pem)
        (tmp_path / "data").write_bytes(CONTENT)
        (tmp_path / "r.tsr").write_bytes(answer.content)
        done = subprocess.run(["openssl", "ts", "-verify", "-data", str(tmp_path / "data"), "-in",
                               str(tmp_path / "r.tsr"), "-CAfile", str(tmp_path / "root.pem")],
                              capture_output=True, text=True)
        assert "Verification: OK" in done.stdout, done.stderr
    # refusals: in-band for a bad request, HTTP 415 for a body that is not a query at all
    refused = httpx.post(url, content=b"\x30\x00", headers={"Content-Type": tsp.QUERY_MEDIA_TYPE})
    with pytest.raises(tsp.ResponseRefused, match="badDataFormat"):
        tsp.token_of_response(refused.content)
    wrong = httpx.post(url, content=request, headers={"Content-Type": "application/json"})
    assert wrong.status_code == 415 and "application/timestamp-query" in wrong.json()["detail"]
    big = httpx.post(url, content=bytes(20000), headers={"Content-Type": tsp.QUERY_MEDIA_TYPE})
    with pytest.raises(tsp.ResponseRefused, match="over 16384 bytes"):
        tsp.token_of_response(big.content)


def test_a_stamper_checks_the_token_before_it_is_embedded(world):
    stamper = Stamper.http(f"{world['issuer_url']}/tsa", roots=world["tsa_roots"])
    tsp.verify_token(stamper.stamp(b"x"), data=b"x", roots=world["tsa_roots"])
    # a TSA that answers a token for something else, or refuses, is no time-stamp
    other = stamper.respond(tsp.build_request(tsp.digest("sha256", b"other"), nonce=1))
    with pytest.raises(TimestampError, match="message imprint"):
        Stamper(lambda _request: other, "a lying TSA").stamp(b"x")
    with pytest.raises(TimestampError, match="rejection"):
        Stamper(lambda _request: tsp.reject("systemFailure", "down"), "a broken TSA").stamp(b"x")
    with pytest.raises(TimestampError, match="unreachable"):
        Stamper.http(f"http://127.0.0.1:{free_port()}/tsa").stamp(b"x")


def _sign(world, name: str, *extra: str, phone: str = "phone", what: str = "lease.txt"):
    files = world["files"]
    out = files / name
    run_cli("jpki", "sign", str(files / what), "--phone", world[phone], "--pin-file", str(files / "pw"),
         "--out", str(out), *extra)
    return out


def _verify(world, signature, *extra: str) -> dict:
    """``mcred jpki verify --json`` of the lease's detached signature: its verdict, whatever the exit code."""
    out = CliRunner().invoke(cli, ["jpki", "verify", str(world["files"] / "lease.txt"), "--signature",
                                   str(signature), "--json", *extra])
    return json.loads(out.output)


def test_a_time_stamped_signature_outlives_the_certificates_revocation(world, tmp_path):
    """The holder of phone ``moving`` (RSA-2048) signs a lease three ways, and a PDF with a
    time-stamp and its validation data (PAdES B-LT), then moves house: the signing
    certificate is revoked."""
    files = world["files"]
    stamped = _sign(world, "stamped.p7s", "--timestamp", phone="moving")
    with_data = _sign(world, "stamped-lt.p7s", "--timestamp", "--ltv", phone="moving")  # CAdES-LT: its OCSP answer inside
    over_http = _sign(world, "over-http.p7s", "--tsa", f"{world['issuer_url']}/tsa", "--tsa-root",
                      str(_tsa_pem(world, tmp_path)), phone="moving")
    plain = _sign(world, "plain.p7s", phone="moving")
    pdf = None
    if pyhanko is not None:
        from mcred.jpki_pdf import blank_pdf

        (files / "lease.pdf").write_bytes(blank_pdf())
        pdf = _sign(world, "lease-blt.pdf", "--pdf", "--ltv", "--timestamp", phone="moving", what="lease.pdf")
        _pdf_verdicts(world, pdf, revoked=False)
    cms = verify_detached_signature(stamped.read_bytes(), CONTENT)
    assert len(cms.timestamp_tokens) == 1
    before = _verify(world, stamped)
    assert before["valid"], before
    c = _checks(before)
    assert list(c) == ["signature", "signature_timestamp", "chain", "policy", "key_usage", "validity", "revocation"]
    assert c["signature_timestamp"]["reason"].startswith("signed before ")
    assert c["validity"]["reason"].endswith("judged at the time-stamp")
    assert _verify(world, over_http)["valid"]
    # the holder moves: the signing certificate is revoked (affiliationChanged). Revocation
    # times are whole seconds, and the TSA promises ±1 s: a revocation within 2 s of the
    # stamp cannot be told apart from one before it, and is refused; wait past that
    time.sleep(CLEAR_OF_STAMP_SECONDS)
    run_cli("revoke", "--phone", world["moving"], "--reason", "affiliationChanged", "--credential", "sign")
    after = _verify(world, stamped)
    assert after["valid"], after["checks"]
    reason = _checks(after)["revocation"]["reason"]
    assert "revoked (affiliationChanged)" in reason and "after the signature's time-stamp" in reason
    assert (_checks(after)["revocation"]["code"], _checks(after)["revocation"]["revocation_reason"]) == (
        "revoked_after_signing", "affiliationChanged")
    assert _verify(world, over_http)["valid"]
    offline = _verify(world, with_data, "--revocation", "embedded")
    assert offline["valid"] and "(embedded), current at the signature's time-stamp" in \
        _checks(offline)["revocation"]["reason"], offline["checks"]
    # ... not a signature without a time-stamp, nor one stamped after the revocation
    refused = _verify(world, plain)
    assert not refused["valid"] and "revoked (affiliationChanged)" in _checks(refused)["revocation"]["reason"]
    assert _checks(refused)["revocation"]["code"] == "revoked"
    late = _sign(world, "late.p7s", "--timestamp", phone="moving")
    late_verdict = _verify(world, late)
    assert not late_verdict["valid"] and _checks(late_verdict)["signature_timestamp"]["passed"]
    # without the TSA's root, a time-stamp is not relied on: refused by name
    (tmp_path / "other.pem").write_bytes(world["roots"][0].public_bytes(serialization.Encoding.PEM))
    own_roots = tmp_path / "jpki.pem"
    own_roots.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in world["roots"]))
    explicit = _verify(world, stamped, "--roots", str(own_roots))  # its own roots: no installation's TSA
    assert "no time-stamping root is trusted here" in _checks(explicit)["signature_timestamp"]["reason"]
    assert _verify(world, stamped, "--roots", str(own_roots), "--tsa-roots", str(_tsa_pem(world, tmp_path)))["valid"]
    untrusted = _verify(world, stamped, "--tsa-roots", str(tmp_path / "other.pem"))
    assert not untrusted["valid"]
    assert "does not chain to a trusted time-stamping root" in _checks(untrusted)["signature_timestamp"]["reason"]
    no_roots = verify(CONTENT, stamped.read_bytes(), roots=world["roots"], revocation="none")
    assert _checks(no_roots)["signature_timestamp"]["reason"] == ("the signature carries a time-stamp, but no "
                                                                  "time-stamping root is trusted here")
    # the relying-party service with the installation's TSA roots says the same over HTTP
    rp = RelyingPartyService(world["roots"], tsa_roots=lambda: time_stamp_authority(world["ctx"]).roots())
    assert rp.verify(CONTENT, stamped.read_bytes())["valid"]
    assert not rp.verify(CONTENT, plain.read_bytes())["valid"]
    if pdf is not None:
        _pdf_verdicts(world, pdf, revoked=True)
    run_cli("jpki", "sign", str(files / "lease.txt"), "--phone", world["phone"], "--pin-file", str(files / "pw"),
         "--timestamp", "--tsa", "http://x", code=2)


def _tsa_pem(world, tmp_path):
    path = tmp_path / "tsa-root.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in world["tsa_roots"]))
    return path


def _pdf_verdicts(world, pdf, *, revoked: bool) -> None:
    """Ours (``mcred jpki verify`` of the PDF) and pyHanko's on a PAdES B-T signature."""
    import io

    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    ours = json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(pdf), "--json"]).output)
    assert ours["valid"], ours["checks"]
    c = _checks(ours["signatures"][0])
    assert c["signature_timestamp"]["passed"]
    assert ("after the signature's time-stamp" in c["revocation"]["reason"]) is revoked
    # and from the OCSP answer it carries (B-LT), revoked since or not
    offline = json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(pdf), "--json", "--revocation",
                                                  "embedded"]).output)
    assert offline["valid"] and "(embedded)" in _checks(offline)["revocation"]["reason"], offline["checks"]
    trusted = [asn1_x509.Certificate.load(r.public_bytes(serialization.Encoding.DER))
               for r in [*world["roots"], *world["tsa_roots"]]]
    sig = PdfFileReader(io.BytesIO(pdf.read_bytes())).embedded_signatures[0]
    status = validate_pdf_signature(sig, ValidationContext(trust_roots=trusted),
                                    ts_validation_context=ValidationContext(trust_roots=trusted))
    assert status.timestamp_validity is not None and status.timestamp_validity.valid
    assert status.timestamp_validity.intact and status.timestamp_validity.trusted


def test_the_reader_serves_a_relying_party_with_tsa_roots(world, tmp_path):
    from mcred.present import ReaderServeConfig, ReaderServeError

    jpki = tmp_path / "jpki.pem"
    jpki.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in world["roots"]))
    config = ReaderServeConfig(jpki_roots=(str(jpki),), tsa_roots=(str(_tsa_pem(world, tmp_path)),))
    _service, rp, _line = config.build()
    assert rp.tsa_roots() == world["tsa_roots"]
    stamped = _sign(world, "served.p7s", "--timestamp")
    assert rp.verify(CONTENT, stamped.read_bytes(), revocation="none")["valid"]
    with pytest.raises(ReaderServeError, match="--tsa-roots"):
        ReaderServeConfig(jpki_roots=(str(jpki),), tsa_roots=(str(tmp_path / "missing.pem"),)).build()


def test_tsa_refusals_at_signing_are_said(world):
    files = world["files"]
    out = run_cli("jpki", "sign", str(files / "lease.txt"), "--phone", world["phone"], "--pin-file",
               str(files / "pw"), "--tsa", f"http://127.0.0.1:{free_port()}/tsa", "--out",
               str(files / "never.p7s"), code=2)
    assert "no time-stamp" in out and "unreachable" in out
    assert not (files / "never.p7s").exists()
    out = run_cli("jpki", "sign", str(files / "lease.txt"), "--phone", world["phone"], "--pin-file",
               str(files / "pw"), "--tsa-root", str(files / "pw"), code=2)
    assert "--tsa-root is the root of the TSA given with --tsa" in out
    out = run_cli("jpki", "sign", str(files / "lease.txt"), "--phone", world["phone"], "--pin-file",
               str(files / "pw"), "--ltv", code=2)
    assert "--ltv on a detached signature needs its time-stamp" in out


def test_export_tsa_root(world, tmp_path):
    run_cli("export", "tsa-root", "--out", str(tmp_path / "tsa.pem"))
    assert (tmp_path / "tsa.pem").read_bytes() == b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in world["tsa_roots"])
    run_cli("export", "tsa-root", "--out", str(tmp_path / "tsa.der"))
    assert (tmp_path / "tsa.der").read_bytes() == world["tsa_roots"][-1].public_bytes(serialization.Encoding.DER)


def test_sign_file_then_stamp_in_process(world):
    cms, _cert = sign_file(world["phone"], "sign", PASSWORD.encode(), CONTENT, world["home"])
    stamped = Stamper.local(world["ctx"]).stamp_signature(cms)
    sig = verify_detached_signature(stamped, CONTENT)
    assert sig.signature_value == verify_detached_signature(cms, CONTENT).signature_value
    tsp.verify_token(sig.timestamp_tokens[0], data=sig.signature_value, roots=world["tsa_roots"])


def test_the_tsa_on_both_databases(home, db_url):
    """The TSA's keys and log on SQLite and PostgreSQL; a second TSA over the same database
    (another worker process) stamps under the same root and unit, not new ones."""
    ctx = Context.open(home, db_url)
    first = time_stamp_authority(ctx)
    token = tsp.token_of_response(first.respond(tsp.build_request(tsp.digest("sha256", CONTENT), nonce=3)))
    stamp = tsp.verify_token(token, data=CONTENT, roots=first.roots(), nonce=3)
    from issuer.tsa import TimeStampAuthority

    second = TimeStampAuthority(ctx.sessions, ctx.keystore)
    assert second.roots() == first.roots() and second.unit().certificate == stamp.tsa_certificate
    unit = first.unit()
    from issuer.freshness import NEVER

    first._unit_read = NEVER  # due to read its unit again: the registry still names it, the object is kept
    assert first.unit() is unit
    with ctx.sessions() as s:
        assert s.query(AuditEvent).filter_by(action="tsa.stamp").count() == 1
        assert s.query(AuditEvent).filter_by(action="tsa.root.create").count() == 1


@pytest.mark.skipif(pyhanko is None, reason="the pdf extra (pip install 'mcred[pdf]')")
def test_a_long_term_pdf_pades_b_lta(world, tmp_path):
    """--pdf --ltv --timestamp --lta: the signature with its time-stamp, the validation data,
    then a document time-stamp over the whole file; each judged, by us and by pyHanko."""
    import io

    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_timestamp
    from pyhanko_certvalidator import ValidationContext

    from mcred.jpki_pdf import blank_pdf

    files = world["files"]
    (files / "archive.pdf").write_bytes(blank_pdf())
    out = _sign(world, "archive-lta.pdf", "--pdf", "--ltv", "--timestamp", "--lta", what="archive.pdf")
    ours = json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(out), "--json"]).output)
    assert ours["valid"], ours["checks"]
    assert [s["kind"] for s in ours["signatures"]] == ["signature", "document_timestamp"]
    assert _checks(ours)["pdf"]["reason"].startswith("1 signature(s) and 1 document time-stamp(s): Signature1, ")
    stamp = _checks(ours["signatures"][1])
    assert stamp["document_timestamp"]["reason"].startswith("the file as it was at ")
    assert _checks(ours["signatures"][0])["pdf_coverage"]["reason"].startswith("covers an earlier revision; only")
    trusted = [asn1_x509.Certificate.load(r.public_bytes(serialization.Encoding.DER)) for r in world["tsa_roots"]]
    doc_ts = PdfFileReader(io.BytesIO(out.read_bytes())).embedded_timestamp_signatures[0]
    status = validate_pdf_timestamp(doc_ts, ValidationContext(trust_roots=trusted))
    assert status.intact and status.valid and status.trusted
    # without the TSA's root, the document time-stamp is refused by name
    (tmp_path / "other.pem").write_bytes(world["roots"][0].public_bytes(serialization.Encoding.PEM))
    refused = json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(out), "--json", "--tsa-roots",
                                                  str(tmp_path / "other.pem")]).output)
    assert not refused["valid"]
    assert "does not chain" in _checks(refused["signatures"][1])["document_timestamp"]["reason"]
    said = run_cli("jpki", "sign", str(files / "archive.pdf"), "--phone", world["phone"], "--pin-file",
                str(files / "pw"), "--pdf", "--lta", "--timestamp", code=2)
    assert "--lta (PAdES B-LTA) needs --ltv and a time-stamp" in said
    # the archive renews it: the last time-stamp's validation data, then a new document time-stamp
    renewed = tmp_path / "archive-renewed.pdf"
    assert "a document time-stamp over" in run_cli("tsa", "stamp", str(out), "--pdf", "--out", str(renewed))
    again = json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(renewed), "--json"]).output)
    assert again["valid"], again["checks"]
    assert [s["kind"] for s in again["signatures"]] == ["signature", "document_timestamp", "document_timestamp"]
    assert _checks(again["signatures"][1])["pdf_coverage"]["reason"].startswith("covers an earlier revision; only")
    offline = json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(renewed), "--json", "--revocation",
                                                  "embedded"]).output)
    assert offline["valid"], offline["checks"]
    for doc_ts in PdfFileReader(io.BytesIO(renewed.read_bytes())).embedded_timestamp_signatures:
        status = validate_pdf_timestamp(doc_ts, ValidationContext(trust_roots=trusted))
        assert status.intact and status.valid and status.trusted
    # a PDF without a document time-stamp gets its first; what is not a PDF is refused
    first = tmp_path / "first.pdf"
    run_cli("tsa", "stamp", str(files / "archive.pdf"), "--pdf", "--out", str(first))
    assert [s["kind"] for s in json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(first), "--json"]).output)[
        "signatures"]] == ["document_timestamp"]
    said = run_cli("tsa", "stamp", str(files / "lease.txt"), "--pdf", "--out", str(tmp_path / "x.pdf"), code=2)
    assert "not a PDF" in said


def test_tsa_commands_stamp_verify_log(world, tmp_path):
    files = world["files"]
    out = run_cli("tsa", "stamp", str(files / "lease.txt"), "--out", str(tmp_path / "lease.tsr"))
    assert "stamped at" in out
    verdict = json.loads(run_cli("tsa", "verify", str(tmp_path / "lease.tsr"), "--data", str(files / "lease.txt"),
                              "--json"))
    assert verdict["valid"] and verdict["tsa"].startswith("CN=mcred TSA unit")
    # the log answers "did this TSA issue that token?"
    (entry,) = json.loads(run_cli("tsa", "log", "--serial", verdict["serial"], "--json"))
    assert entry["imprint"] == tsp.digest("sha256", CONTENT).hex()
    # as `openssl x509 -text` prints serials: whole octets with colons, a leading zero kept
    octets = ("0" * (len(verdict["serial"]) % 2) + verdict["serial"]).upper()
    colons = "00:" + ":".join(octets[i:i + 2] for i in range(0, len(octets), 2))
    assert json.loads(run_cli("tsa", "log", "--serial", colons, "--json")) == [entry]
    run_cli("tsa", "log", "--serial", "abc123", code=1)
    said = run_cli("tsa", "log", "--serial", "12g4", code=2)
    assert "--serial" in said and "not hexadecimal" in said
    # over HTTP, sha384; another file is refused
    run_cli("tsa", "stamp", str(files / "lease.txt"), "--url", f"{world['issuer_url']}/tsa", "--hash", "sha384",
         "--out", str(tmp_path / "http.tsr"))
    (tmp_path / "other.txt").write_bytes(b"another lease")
    said = run_cli("tsa", "verify", str(tmp_path / "http.tsr"), "--data", str(tmp_path / "other.txt"), code=1)
    assert "NOT VALID" in said and "message imprint" in said
    if shutil.which("openssl"):
        text = subprocess.run(["openssl", "ts", "-reply", "-in", str(tmp_path / "http.tsr"), "-text"],
                              capture_output=True, text=True).stdout
        assert "Status: Granted." in text and "Hash Algorithm: sha384" in text
    said = run_cli("tsa", "stamp", str(files / "lease.txt"), "--url", f"http://127.0.0.1:{free_port()}/tsa", code=2)
    assert "unreachable" in said
    said = run_cli("tsa", "stamp", str(files / "lease.txt"), "--url", f"{world['issuer_url']}/tsa", "--tsa-root",
                str(files / "lease.txt"), code=2)  # not a certificate: a bad parameter, not a traceback
    assert "Invalid value for --tsa-root" in said and "not a DER X.509 certificate" in said


@pytest.mark.skipif(pyhanko is None, reason="the pdf extra (pip install 'mcred[pdf]')")
def test_a_b_lt_pdf_verifies_from_its_own_validation_data(world):
    """--revocation embedded: the OCSP answer the PDF carries (PAdES B-LT), judged at the
    signature's time-stamp, with no network; refused by name without a time-stamp or data."""
    from mcred.jpki_pdf import blank_pdf

    files = world["files"]
    (files / "deed.pdf").write_bytes(blank_pdf())
    b_lt = _sign(world, "deed-lt.pdf", "--pdf", "--ltv", "--timestamp", what="deed.pdf")
    b_t = _sign(world, "deed-t.pdf", "--pdf", "--timestamp", what="deed.pdf")
    b_b = _sign(world, "deed-b.pdf", "--pdf", "--ltv", what="deed.pdf")

    def embedded(pdf) -> dict:
        return json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(pdf), "--json", "--revocation",
                                                   "embedded"]).output)

    ours = embedded(b_lt)
    assert ours["valid"], ours["checks"]
    reason = _checks(ours)["revocation"]["reason"]
    assert re.search(r"OCSP good at \S+ \(embedded\), current at the signature's time-stamp", reason), reason
    rp = RelyingPartyService(world["roots"], tsa_roots=world["tsa_roots"])
    assert rp.verify_pdf(b_lt.read_bytes(), revocation="embedded")["valid"]
    no_data = embedded(b_t)  # B-T: no validation data, not even for the TSA's unit
    assert not no_data["valid"]
    assert "no CRL of its root current at the time-stamp is embedded" in \
        _checks(no_data)["signature_timestamp"]["reason"]
    no_stamp = embedded(b_b)
    assert not no_stamp["valid"]
    assert "needs a signature time-stamp" in _checks(no_stamp)["revocation"]["reason"]
    # a detached signature without validation data of its own: said by name
    plain = _sign(world, "no-data.p7s", "--timestamp")
    said = json.loads(CliRunner().invoke(cli, ["jpki", "verify", str(files / "lease.txt"), "--signature", str(plain),
                                               "--json", "--revocation", "embedded"]).output)
    assert not said["valid"]
    assert "no CRL of its root current at the time-stamp is embedded" in _checks(said)["signature_timestamp"]["reason"]


def test_a_revoked_tsa_unit(home, db_url, tmp_path):
    """A TSA unit revoked: its root's CRL lists it (OpenSSL reads it), a new unit stamps;
    relying parties refuse its time-stamps made at or before the revocation, and every one
    of them once it is revoked for keyCompromise."""
    import dataclasses
    import datetime as dt

    from issuer.tsa import TimeStampAuthority, TsaError
    from reader.crl_cache import CrlCache
    from reader.relying_party import (
        EmbeddedRevocation,
        check_embedded,
        signature_timestamp,
        tsa_unit_revoked,
    )

    ctx = Context.open(home, db_url)
    url = "http://tsa.test/tsa/root.crl"
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=url)
    roots = tsa.roots()

    tokens = {}  # serial -> the token

    def stamp_of(authority) -> tsp.TimeStamp:
        token = tsp.token_of_response(authority.respond(tsp.build_request(tsp.digest("sha256", CONTENT))))
        stamp = tsp.verify_token(token, data=CONTENT, roots=roots)
        tokens[stamp.serial] = token
        return stamp

    def code(stamp, cache) -> str:  # the signature_timestamp check's code, its token judged now
        return signature_timestamp([(tokens[stamp.serial], CONTENT)], roots, revocation="crl", at=now_t,
                                   cache=cache)[0].code

    first = stamp_of(tsa)
    from protocols.certs import crl_url

    assert crl_url(first.tsa_certificate) == url
    # named as `openssl x509 -serial` prints it: serial=, upper case, whole octets
    openssl_form = "serial=" + format(first.tsa_certificate.serial_number, "040X")
    label, serial, now = tsa.revoke_unit(openssl_form, "superseded")
    assert (label, serial, now) == ("tsa-unit-1", first.tsa_certificate.serial_number, True)
    # revoked already: kept as it was for any reason but keyCompromise (test_a_unit_revoked_then_found_compromised_is_amended)
    assert tsa.revoke_unit("tsa-unit-1", "cessationOfOperation")[2] is False
    with pytest.raises(TsaError, match="reason 'lost'"):
        tsa.revoke_unit("tsa-unit-1", "lost")
    with pytest.raises(TsaError, match="no TSA unit 'tsa-unit-9'"):
        tsa.revoke_unit("tsa-unit-9", "superseded")
    # another process's TSA over the same database stops using the unit too
    second = stamp_of(TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=url))
    assert second.tsa_certificate.serial_number != serial
    crl_der = tsa.crl()
    if shutil.which("openssl"):
        (tmp_path / "root.crl").write_bytes(crl_der)
        text = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "root.crl"), "-text",
                               "-noout"], capture_output=True, text=True, check=True).stdout
        assert format(serial, "X").upper() in text.replace(":", "").upper() and "Superseded" in text
    cache = CrlCache()
    now_t = dt.datetime.now(dt.UTC)
    from cryptography import x509

    cache.get(url, now_t, lambda _url: x509.load_der_x509_crl(crl_der))  # as a relying party fetched it
    # superseded: a time-stamp from before the revocation stands; one within its second does not
    earlier = dataclasses.replace(first, gen_time=first.gen_time - dt.timedelta(hours=1))
    assert tsa_unit_revoked(earlier, now_t, cache=cache) is None
    assert "revoked (superseded)" in tsa_unit_revoked(first, now_t, cache=cache)
    assert (code(first, cache), code(second, cache)) == ("revoked", "ok")
    assert tsa_unit_revoked(second, now_t, cache=cache) is None
    # keyCompromise: none of the unit's time-stamps is relied on
    tsa.revoke_unit(format(second.tsa_certificate.serial_number, "x"), "keyCompromise")
    cache = CrlCache()
    cache.get(url, now_t, lambda _url: x509.load_der_x509_crl(tsa.crl()))
    old_second = dataclasses.replace(second, gen_time=second.gen_time - dt.timedelta(hours=1))
    assert "none of its time-stamps is relied on" in tsa_unit_revoked(old_second, now_t, cache=cache)
    # unreachable CRL: fail closed; embedded data without the root's CRL: said
    assert "cannot be checked" in tsa_unit_revoked(first, now_t, cache=CrlCache())
    # the root's CRL served past its nextUpdate (a replayed one): fail closed as well
    served = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=crl_der)))
    stale_at = x509.load_der_x509_crl(crl_der).next_update_utc + dt.timedelta(seconds=1)
    assert "its root's CRL at http://tsa.test/tsa/root.crl: out of date" in tsa_unit_revoked(
        dataclasses.replace(first, gen_time=stale_at), stale_at, client=served)
    assert code(first, CrlCache()) == "unavailable"  # ask again later
    assert "no CRL of its root current at the time-stamp is embedded" in tsa_unit_revoked(
        first, now_t, embedded=EmbeddedRevocation())
    assert "no embedded OCSP answer or CRL" in check_embedded(first.tsa_certificate, roots[0], first,
                                                              EmbeddedRevocation()).reason
    if db_url.startswith("sqlite"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MCRED_DATABASE_URL", db_url)
            out = run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "superseded")
            assert "was revoked already" in out
            run_cli("tsa", "revoke", "tsa-unit-7", "--reason", "superseded", code=2)


def test_the_issuer_services_relying_party_trusts_its_tsa(world):
    """POST /reader/rp/jpki/verify and /verify-pdf of `mcred serve` (scope reader): the
    installation's TSA roots are trusted there without configuration."""
    import base64

    from issuer.api.auth import create_token

    token = create_token(world["ctx"].sessions, ["reader"], "timestamps-test")[1]
    headers = {"Authorization": f"Bearer {token}"}
    stamped = _sign(world, "served-http.p7s", "--timestamp")
    got = httpx.post(f"{world['issuer_url']}/reader/rp/jpki/verify", headers=headers, json={
        "content": base64.b64encode(CONTENT).decode(), "signature": base64.b64encode(stamped.read_bytes()).decode()})
    assert got.status_code == 200 and got.json()["valid"], got.text
    assert _checks(got.json())["signature_timestamp"]["passed"]
    if pyhanko is not None:
        from mcred.jpki_pdf import blank_pdf

        (world["files"] / "served.pdf").write_bytes(blank_pdf())
        pdf = _sign(world, "served-blt.pdf", "--pdf", "--ltv", "--timestamp", what="served.pdf")
        for mode in ("ocsp", "embedded"):
            got = httpx.post(f"{world['issuer_url']}/reader/rp/jpki/verify-pdf?revocation={mode}",
                             headers={**headers, "Content-Type": "application/pdf"}, content=pdf.read_bytes())
            assert got.status_code == 200 and got.json()["valid"], (mode, got.text)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_openssl_reads_a_cades_t_signature(world, tmp_path):
    """OpenSSL verifies the CMS of a time-stamped signature (the unsigned attribute changes
    nothing signed), and the token inside it as a time-stamp of the signature value."""
    stamped = _sign(world, "openssl.p7s", "--timestamp", "--ltv")  # its crls field holds an OCSP answer and a CRL
    sig = verify_detached_signature(stamped.read_bytes(), CONTENT)
    assert len(sig.ocsp_responses) == 1 and len(sig.crls) == 1
    chain = tmp_path / "jpki.pem"
    chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in world["roots"]))
    cms_ok = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(stamped),
                             "-content", str(world["files"] / "lease.txt"), "-CAfile", str(chain),
                             "-purpose", "any", "-out", "/dev/null"], capture_output=True, text=True)
    assert cms_ok.returncode == 0, cms_ok.stderr
    (tmp_path / "token.der").write_bytes(sig.timestamp_tokens[0])
    ts_ok = subprocess.run(["openssl", "ts", "-verify", "-token_in", "-in", str(tmp_path / "token.der"),
                            "-digest", tsp.digest("sha256", sig.signature_value).hex(),
                            "-CAfile", str(_tsa_pem(world, tmp_path))], capture_output=True, text=True)
    assert "Verification: OK" in ts_ok.stdout, ts_ok.stderr


@pytest.mark.skipif(pyhanko is None, reason="the pdf extra (pip install 'mcred[pdf]')")
def test_validation_data_from_an_issuer_that_does_not_answer_is_said(home):
    """--ltv and a PDF's document time-stamp gather the validation data at the addresses in
    the certificates: with no issuer service answering there, the error says so."""
    from mcred.jpki_pdf import PdfSigningError, blank_pdf, sign_pdf_file, timestamp_pdf

    with installation_env(home, free_port()):  # the public URL's port: nothing listens there
        ctx = Context.open(home)
        phone = wallet_sim.create_phone(home)
        provision(ctx, phone, parse_holder(person(HOLDER)), key_type="p384", mdoc_batch=1, pin="1234", password=PASSWORD)
        roots = jpki_issuer(ctx).roots("sign")
        with pytest.raises(PdfSigningError, match=r"is the issuer's service \(mcred serve\) answering"):
            sign_pdf_file(phone, PASSWORD.encode(), blank_pdf(), home, ltv_roots=roots)
        stamper = Stamper.local(ctx)
        with pytest.raises(PdfSigningError, match=r"cannot be time-stamped: .*is the issuer's service"):
            timestamp_pdf(blank_pdf(), stamper, trust_roots=[*roots, *stamper.roots])


def test_a_unit_revoked_then_found_compromised_is_amended(home, tmp_path):
    """A unit revoked superseded (retired) and later known to have been compromised: revoked
    again for keyCompromise, its CRL entry says so (OpenSSL reads it), its revocation time
    stays, and a relying party then relies on none of its time-stamps, where superseded let
    one made before the revocation stand. Never back: another reason changes nothing."""
    import dataclasses
    import datetime as dt

    from cryptography import x509

    from issuer.tsa import TimeStampAuthority
    from reader.crl_cache import CrlCache
    from reader.relying_party import tsa_unit_revoked

    ctx = Context.open(home)
    url = "http://tsa.test/tsa/root.crl"
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url=url)
    token = tsp.token_of_response(tsa.respond(tsp.build_request(tsp.digest("sha256", CONTENT))))
    stamp = tsp.verify_token(token, data=CONTENT, roots=tsa.roots())
    earlier = dataclasses.replace(stamp, gen_time=stamp.gen_time - dt.timedelta(hours=1))
    label = tsa.revoke_unit_detail("tsa-unit-1", "superseded").label

    def judged(s: tsp.TimeStamp) -> str | None:
        cache, now = CrlCache(), dt.datetime.now(dt.UTC)
        cache.get(url, now, lambda _url: x509.load_der_x509_crl(tsa.crl()))
        return tsa_unit_revoked(s, now, cache=cache)

    assert judged(earlier) is None  # made before a superseded unit's revocation: it stands
    revoked_at = x509.load_der_x509_crl(tsa.crl()).get_revoked_certificate_by_serial_number(
        stamp.tsa_certificate.serial_number).revocation_date_utc
    done = tsa.revoke_unit_detail(label, "keyCompromise", actor="test")
    assert (done.changed, done.reason, done.amended_from) == (True, "keyCompromise", "superseded")
    entry = x509.load_der_x509_crl(tsa.crl()).get_revoked_certificate_by_serial_number(
        stamp.tsa_certificate.serial_number)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert entry.revocation_date_utc == revoked_at
    assert "none of its time-stamps is relied on" in judged(earlier)
    for reason in ("superseded", "cessationOfOperation", "keyCompromise"):
        again = tsa.revoke_unit_detail(label, reason)
        assert (again.changed, again.reason, again.amended_from) == (False, "keyCompromise", None), reason
    with ctx.sessions() as s:
        from sqlalchemy import select

        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "tsa.unit.revoke.amend")).all()
        assert event.actor == "test" and event.subject == label
        assert event.detail["previous_reason"] == "superseded" and event.detail["reason"] == "keyCompromise"
    if shutil.which("openssl"):
        (tmp_path / "root.crl").write_bytes(tsa.crl())
        text = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "root.crl"), "-text",
                               "-noout"], capture_output=True, text=True, check=True).stdout
        assert "Key Compromise" in text and "Superseded" not in text, text
    # the CLI says it, and --json carries amended_from (a second unit, revoked then amended)
    tsa.respond(tsp.build_request(tsp.digest("sha256", CONTENT)))  # a new unit stamps
    out = run_cli("tsa", "revoke", "tsa-unit-2", "--reason", "cessationOfOperation", "--json")
    assert json.loads(out)["changed"] is True
    out = run_cli("tsa", "revoke", "tsa-unit-2", "--reason", "keyCompromise")
    assert "revoked (cessationOfOperation) -> revoked (keyCompromise), amended" in out, out
    doc = json.loads(run_cli("tsa", "revoke", "tsa-unit-2", "--reason", "keyCompromise", "--json"))
    assert doc == {"unit": "tsa-unit-2", "serial": doc["serial"], "reason": "keyCompromise", "changed": False}


def test_every_process_serves_a_unit_revocation_and_its_amendment_at_once(home, db_url):
    """Two API processes on one database (mcred serve --workers 2): a unit revoked, or its
    revocation amended, through one is on the other's root CRL at its next request. Each
    process kept the CRL it had made for a minute, so a relying party asking the other one
    was told nothing of a keyCompromise for that long."""
    from cryptography import x509

    from issuer.tsa import TimeStampAuthority

    ctx = Context.open(home, db_url)
    one = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url="http://tsa.test/tsa/root.crl")
    other = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url="http://tsa.test/tsa/root.crl")
    token = tsp.token_of_response(one.respond(tsp.build_request(tsp.digest("sha256", CONTENT))))
    serial = tsp.verify_token(token, data=CONTENT, roots=one.roots()).tsa_certificate.serial_number

    def listed(authority) -> x509.ReasonFlags | None:
        entry = x509.load_der_x509_crl(authority.crl()).get_revoked_certificate_by_serial_number(serial)
        return None if entry is None else entry.extensions.get_extension_for_class(x509.CRLReason).value.reason

    assert listed(other) is None  # made and kept before the revocation
    one.revoke_unit("tsa-unit-1", "superseded")
    assert listed(other) is x509.ReasonFlags.superseded
    kept = other.crl()
    assert other.crl() == kept  # nothing changed: the CRL made is served again, not signed anew
    one.revoke_unit("tsa-unit-1", "keyCompromise")
    assert listed(other) is x509.ReasonFlags.key_compromise


def test_tsa_verify_refuses_a_revoked_units_time_stamps(tmp_path):
    """`mcred tsa verify` asks the unit's root CRL, as `mcred jpki verify` does for a
    signature's time-stamp: after `mcred tsa revoke ... --reason keyCompromise` a reply of
    that unit is NOT VALID (a README walk-through found it still called VALID); with no
    issuer answering, the CRL cannot be had and the verdict fails closed, saying how to
    leave it unchecked."""
    from test_present_http import Server

    from mcred.service import create_app

    home, port = tmp_path / "home", free_port()
    home.mkdir()
    (tmp_path / "doc.txt").write_bytes(CONTENT)
    reply, doc = str(tmp_path / "doc.txt.tsr"), str(tmp_path / "doc.txt")
    with installation_env(home, port):
        run_cli("tsa", "stamp", doc)
        said = run_cli("tsa", "verify", reply, "--data", doc, code=1)
        assert "cannot be checked" in said and "--revocation none" in said
        assert "not checked" in run_cli("tsa", "verify", reply, "--data", doc, "--revocation", "none")
        app = create_app(Context.open(home), job_workers=1)
        try:
            with Server(app, port):
                verdict = json.loads(run_cli("tsa", "verify", reply, "--data", doc, "--json"))
                assert verdict["valid"] and verdict["revocation"] == "crl"
                run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "keyCompromise")
                said = run_cli("tsa", "verify", reply, "--data", doc, code=1)
                assert "NOT VALID" in said and "none of its time-stamps is relied on" in said
        finally:
            app.state.jobs.shutdown()


def test_the_first_unit_is_made_within_a_root_made_a_second_later(home):
    """The TSA's first use makes its root, then its first unit; the unit's validity started
    at the clock read before the root's, so a first stamp whose two reads crossed a second
    made a unit that began before its root, refused with a ValueError (a full run met it
    once). Here every read of the clock is a second later than the one before."""
    import datetime as dt

    from issuer.tsa import TimeStampAuthority

    ctx = Context.open(home)
    t = [dt.datetime(2026, 12, 6, 5, 0, 0, 999_000, tzinfo=dt.UTC)]

    def clock():
        t[0] += dt.timedelta(seconds=1)
        return t[0]

    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, crl_url="http://tsa.test/tsa/root.crl", clock=clock)
    unit = tsa.unit()
    assert unit.certificate.not_valid_before_utc >= tsa.root().not_valid_before_utc


def test_the_tsa_remakes_its_crl_and_rereads_its_unit_by_the_wall_clock_too(home):
    """The TSA kept its CRL for CRL_REMAKE_SECONDS and its unit for UNIT_RECHECK_SECONDS by
    time.monotonic() alone, which stops while the machine is suspended: after a night's
    suspend it served the CRL it made the evening before, past its nextUpdate, and stamped
    with a unit another process had revoked meanwhile. Here the (injected) wall clock moves
    as across a suspend while the monotonic one does not: the CRL is made again and the
    unit read again."""
    import datetime as dt

    from cryptography import x509

    from issuer import tsa as tsa_module
    from issuer.tsa import TimeStampAuthority

    ctx = Context.open(home)
    t = [dt.datetime.now(dt.UTC).replace(microsecond=0)]
    tsa = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=lambda: t[0])
    first = x509.load_der_x509_crl(tsa.crl())
    assert tsa.crl() == first.public_bytes(serialization.Encoding.DER)  # within the interval: the same
    t[0] += dt.timedelta(seconds=tsa_module.CRL_REMAKE_SECONDS)
    remade = x509.load_der_x509_crl(tsa.crl())
    assert remade.last_update_utc == t[0] > first.last_update_utc
    t[0] += tsa_module.CRL_VALIDITY + dt.timedelta(hours=1)  # a night's suspend, past its nextUpdate
    assert x509.load_der_x509_crl(tsa.crl()).next_update_utc > t[0]

    unit = tsa.unit()
    other = TimeStampAuthority(ctx.sessions, ctx.keystore, clock=lambda: t[0])  # another process
    other.revoke_unit(format(unit.certificate.serial_number, "x"), "keyCompromise")
    assert tsa.unit() is unit  # within the interval: not read again (a bounded delay)
    t[0] += dt.timedelta(seconds=tsa_module.UNIT_RECHECK_SECONDS)
    assert tsa.unit().certificate.serial_number != unit.certificate.serial_number
    t[0] -= dt.timedelta(days=2)  # the clock set back before the CRL's thisUpdate: made again
    assert x509.load_der_x509_crl(tsa.crl()).last_update_utc == t[0]


def test_a_revoked_tsa_unit_says_when_and_why_as_a_revocation_does(tmp_path, every_answer_checked):
    """A ``signature_timestamp`` refused because its TSA unit was revoked said when only in
    its reason text, where a ``revocation`` check carries ``revoked_at`` and
    ``revocation_reason``: a script had to parse prose. Now the same two members, from the
    unit's CRL entry (null on a time-stamp that passes), in ``mcred jpki verify --json``, its
    text, and the HTTP relying party's answer (held to the reader's OpenAPI document)."""
    import base64
    import datetime as dt

    from cryptography import x509
    from fastapi.testclient import TestClient
    from test_present_http import Server
    from test_rp_http import rp_app
    from test_rp_jpki_verdicts import CONTENT as SIGNED
    from test_rp_jpki_verdicts import ROOTS, SIG, _crl

    from mcred.service import create_app
    from mcred.timestamps import Stamper

    home, port = tmp_path / "home", free_port()
    home.mkdir()
    files = {"doc.txt": SIGNED, "roots.pem": b"".join(r.public_bytes(serialization.Encoding.PEM) for r in ROOTS),
             "signer.crl": _crl()}
    with installation_env(home, port):
        ctx = Context.open(home)
        stamper = Stamper.local(ctx)
        files["tsa.pem"] = b"".join(r.public_bytes(serialization.Encoding.PEM) for r in stamper.roots)
        before = stamper.stamp_signature(SIG)  # judged before the unit is revoked: passes, both null
        good = verify(SIGNED, before, roots=ROOTS, revocation="crl", crl=_crl(), tsa_roots=stamper.roots,
                      client=httpx.Client(transport=httpx.MockTransport(
                          lambda r: httpx.Response(200, content=time_stamp_authority(ctx).crl()))))
        assert _checks(good)["signature_timestamp"]["code"] == "ok", good
        assert {k: _checks(good)["signature_timestamp"][k] for k in ("revoked_at", "revocation_reason")} == {
            "revoked_at": None, "revocation_reason": None}
        files["doc.txt.p7s"] = before
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        tsa = time_stamp_authority(ctx)
        tsa.revoke_unit("tsa-unit-1", "keyCompromise")
        crl = tsa.crl()
        (entry,) = list(x509.load_der_x509_crl(crl))
        when = entry.revocation_date_utc.astimezone(dt.UTC).isoformat()
        said = {"code": "revoked", "revoked_at": when, "revocation_reason": "keyCompromise"}
        args = ["jpki", "verify", str(tmp_path / "doc.txt"), "--signature", str(tmp_path / "doc.txt.p7s"),
                "--roots", str(tmp_path / "roots.pem"), "--tsa-roots", str(tmp_path / "tsa.pem"),
                "--revocation", "crl", "--crl", str(tmp_path / "signer.crl")]
        app = create_app(ctx, job_workers=1)
        try:
            with Server(app, port):  # the unit's CRL at the URL it names
                verdict = json.loads(run_cli(*args, "--json", code=1))
                text = run_cli(*args, code=1)
        finally:
            app.state.jobs.shutdown()
    stamp = _checks(verdict)["signature_timestamp"]
    assert {k: stamp[k] for k in said} == said and when.endswith("+00:00"), stamp
    # its reason writes the time as revoked_at does (it wrote 2026-11-23T01:02:03Z)
    assert f"the TSA unit was revoked (keyCompromise) at {when}" in stamp["reason"], stamp
    assert f"revoked_at={when} revocation_reason=keyCompromise" in text, text

    def answer(request: httpx.Request) -> httpx.Response:  # the TSA unit's CRL, and the signer's
        return httpx.Response(200, content=crl if request.url.path.startswith("/tsa/") else _crl())

    rp = RelyingPartyService(ROOTS, tsa_roots=list(stamper.roots),
                             client=httpx.Client(transport=httpx.MockTransport(answer)))
    with TestClient(rp_app(rp)) as c:
        r = c.post("/rp/jpki/verify", json={"content": base64.b64encode(SIGNED).decode(),
                                            "signature": base64.b64encode(before).decode(), "revocation": "crl"})
    assert r.status_code == 200 and not r.json()["valid"], r.text
    stamp = _checks(r.json())["signature_timestamp"]
    assert {k: stamp[k] for k in said} == said, stamp
    assert "POST /rp/jpki/verify 200" in every_answer_checked


@pytest.mark.skipif(pyhanko is None, reason="the pdf extra (pip install 'mcred[pdf]')")
def test_a_document_time_stamp_of_a_revoked_tsa_unit_vouches_for_nothing(tmp_path_factory, every_answer_checked):
    """A PDF's document time-stamp (PAdES B-LTA) was judged by its token alone: after `mcred
    tsa revoke tsa-unit-1 --reason keyCompromise` an archive stamped by that unit was still
    VALID, where a signature's time-stamp of the same unit is refused. Now
    ``document_timestamp`` asks the unit's root CRL as ``signature_timestamp`` does: code
    ``revoked`` with ``revoked_at`` and ``revocation_reason`` (null while it stands), from
    `mcred jpki verify FILE.pdf` (text and --json, every --revocation mode) and `POST
    /rp/jpki/verify-pdf`; with ``embedded``, from the root CRL in the PDF's document security
    store, and where there is none, the check says so instead of passing."""
    import datetime as dt
    import io

    from cryptography import x509
    from fastapi.testclient import TestClient
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
    from test_rp_http import rp_app, served_installation

    from mcred.jpki_pdf import _pyhanko_timestamper, blank_pdf
    from reader.jpki_pdf import embedded_validation_data

    def verdict(pdf, *extra: str, code: int = 0) -> dict:
        return json.loads(run_cli("jpki", "verify", str(pdf), "--json", *extra, code=code))

    def stamps(result: dict) -> list[dict]:  # each document time-stamp's own check
        return [_checks(s)["document_timestamp"] for s in result["signatures"] if s["kind"] == "document_timestamp"]

    with served_installation(tmp_path_factory, HOLDER, PASSWORD) as w:
        ctx, files = w["ctx"], w["files"]
        tsa_roots = time_stamp_authority(ctx).roots()
        (files / "deed.pdf").write_bytes(blank_pdf())
        run_cli("jpki", "sign", str(files / "deed.pdf"), "--phone", w["phones"]["p384"], "--pin-file",
                str(files / "pw"), "--pdf", "--out", str(files / "signed.pdf"))
        # the archive's document time-stamp, by tsa-unit-1, with its root's CRL in the store
        run_cli("tsa", "stamp", str(files / "signed.pdf"), "--pdf", "--out", str(files / "archive.pdf"))
        # one made by another tool: a document time-stamp without any validation data
        writer = IncrementalPdfFileWriter(io.BytesIO((files / "signed.pdf").read_bytes()), strict=False)
        bare = PdfTimeStamper(_pyhanko_timestamper(Stamper.local(ctx))).timestamp_pdf(writer, "sha256").getvalue()
        (files / "bare.pdf").write_bytes(bare)
        assert embedded_validation_data(PdfFileReader(io.BytesIO(bare), strict=False)).crls == ()
        before = verdict(files / "archive.pdf")
        assert before["valid"], before["checks"]
        (stamp,) = stamps(before)
        assert stamp["code"] == "ok" and (stamp["revoked_at"], stamp["revocation_reason"]) == (None, None), stamp
        assert "TSA unit 1" in stamp["reason"]
        # --revocation embedded with no root CRL in the PDF: what is missing is said, not passed
        (missing,) = stamps(verdict(files / "bare.pdf", "--revocation", "embedded", code=1))
        assert missing["code"] == "unavailable" and not missing["passed"], missing
        assert "no CRL of its root current at the time-stamp is embedded" in missing["reason"], missing

        run_cli("tsa", "revoke", "tsa-unit-1", "--reason", "keyCompromise")
        (entry,) = list(x509.load_der_x509_crl(time_stamp_authority(ctx).crl()))
        said = {"code": "revoked", "revoked_at": entry.revocation_date_utc.astimezone(dt.UTC).isoformat(),
                "revocation_reason": "keyCompromise"}
        for mode in ("ocsp", "crl", "auto"):
            after = verdict(files / "archive.pdf", "--revocation", mode, code=1)
            assert not after["valid"], mode
            (stamp,) = stamps(after)
            assert {k: stamp[k] for k in said} == said and not stamp["passed"], (mode, stamp)
            assert "none of its time-stamps is relied on" in stamp["reason"], stamp
            # the signature itself stands: the archive's time-stamp alone is refused
            assert [c["name"] for c in after["checks"] if not c["passed"]] == ["document_timestamp"], after
        text = run_cli("jpki", "verify", str(files / "archive.pdf"), code=1)
        assert "FAIL document_timestamp [revoked]" in text and "INVALID" in text, text
        assert f"revoked_at={said['revoked_at']} revocation_reason=keyCompromise" in text, text
        assert stamps(verdict(files / "archive.pdf", "--revocation", "none"))[0]["code"] == "ok"  # not asked
        # renewed: the last time-stamp's validation data, its root's CRL listing the unit now,
        # then a document time-stamp by the unit that took over
        run_cli("tsa", "stamp", str(files / "bare.pdf"), "--pdf", "--out", str(files / "renewed.pdf"))
        old, new = stamps(verdict(files / "renewed.pdf", "--revocation", "embedded", code=1))
        assert {k: old[k] for k in said} == said, old
        assert new["passed"] and "TSA unit 2" in new["reason"] and new["revoked_at"] is None, new

        rp = RelyingPartyService(w["roots"], tsa_roots=tsa_roots)
        with TestClient(rp_app(rp)) as c:
            for pdf, mode in (("archive.pdf", "ocsp"), ("renewed.pdf", "embedded")):
                r = c.post(f"/rp/jpki/verify-pdf?revocation={mode}", content=(files / pdf).read_bytes(),
                           headers={"Content-Type": "application/pdf"})
                assert r.status_code == 200 and not r.json()["valid"], r.text
                assert {k: stamps(r.json())[0][k] for k in said} == said, r.json()
    assert "POST /rp/jpki/verify-pdf 200" in every_answer_checked
