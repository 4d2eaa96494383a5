"""A PDF signed on the phone with its JPKI signing certificate (PAdES), end to end: `mcred
jpki sign --pdf` (pyHanko writes the PDF, the SE signs through the JPKI-AP), `mcred jpki
verify signed.pdf` (pyHanko reads where each signature lies, our relying party judges it:
CMS, chain, policy, validity, OCSP at the live issuer), and `POST /rp/jpki/verify-pdf`.

pyHanko's own validator (pyhanko-certvalidator: RFC 5280 paths, RFC 6960 OCSP) is the
second opinion: it accepts our certificates and our OCSP answers, fetched live or embedded
in the PDF (``--ltv``), and sees the revocation. Changes after signing, broken bytes and
the wrong certificate are refused by name; hostile bytes are verdicts, never crashes."""

from __future__ import annotations

import io
import json
import os

import httpx
import pytest
from conftest import person
from documented import assert_documented
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rp_http import rp_app, run_cli

import wallet_sim
from mcred.jpki_pdf import PdfSigningError, blank_pdf, sign_pdf_file
from mcred.provision import parse_holder, provision

pyhanko = pytest.importorskip("pyhanko", reason="the pdf extra (pip install 'mcred[pdf]')")

from asn1crypto import x509 as asn1_x509  # noqa: E402 - pyHanko's dependency
from cryptography.hazmat.primitives import serialization  # noqa: E402
from pyhanko.pdf_utils import generic  # noqa: E402
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.sign.validation import validate_pdf_signature  # noqa: E402
from pyhanko.sign.validation.dss import DocumentSecurityStore  # noqa: E402
from pyhanko_certvalidator import ValidationContext  # noqa: E402

from reader.jpki_pdf import verify_pdf  # noqa: E402
from reader.relying_party import RelyingPartyService  # noqa: E402

HOLDER = {"family_name": "高橋", "given_name": "一郎", "family_name_kana": "たかはし",
          "given_name_kana": "いちろう", "birth_date": "1975-07-07", "sex": 1,
          "address": "大阪府大阪市北区中之島1-3-20", "prefecture": "大阪府", "municipality": "大阪市"}
PASSWORD = "PDF2026SIGN"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from test_rp_http import served_installation

    with served_installation(tmp_path_factory, HOLDER, PASSWORD, ("p384", "rsa2048")) as w:
        (w["files"] / "contract.pdf").write_bytes(blank_pdf(2))
        yield w


def _checks(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def _pyhanko_context(world, **kw) -> ValidationContext:
    roots = [asn1_x509.Certificate.load(r.public_bytes(serialization.Encoding.DER)) for r in world["roots"]]
    return ValidationContext(trust_roots=roots, revocation_mode="hard-fail", **kw)


def _sign(world, key_type: str, pdf: bytes, **options) -> bytes:
    return sign_pdf_file(world["phones"][key_type], PASSWORD.encode(), pdf, world["home"], **options)


@pytest.mark.parametrize("key_type", ["p384", "rsa2048"])
def test_signed_on_the_phone_verified_by_us_and_by_pyhanko(world, key_type):
    files = world["files"]
    out = files / f"contract-{key_type}.pdf"
    run_cli("jpki", "sign", str(files / "contract.pdf"), "--pdf", "--phone", world["phones"][key_type],
         "--pin-file", str(files / "pw"), "--reason", "売買契約", "--location", "大阪市", "--out", str(out))
    signed = out.read_bytes()
    original = (files / "contract.pdf").read_bytes()
    assert signed.startswith(original)  # an incremental update: the original stays byte for byte
    result = json.loads(run_cli("jpki", "verify", str(out), "--json"))
    assert result["valid"], result
    c = _checks(result)
    assert list(c) == ["pdf", "pdf_coverage", "signature", "chain", "policy", "key_usage", "validity",
                       "revocation"]
    assert c["pdf_coverage"]["reason"] == "Signature1: covers the whole file"
    assert c["revocation"]["reason"].startswith(f"Signature1: OCSP good ({world['issuer_url']}/ocsp")
    assert result["documents"][0]["basic_four"]["address"] == world["holders"][key_type]["address"]
    # pyHanko's own validator, fetching our OCSP answer itself
    sig = PdfFileReader(io.BytesIO(signed)).embedded_signatures[0]
    status = validate_pdf_signature(sig, _pyhanko_context(world, allow_fetching=True))
    assert status.bottom_line, status.pretty_print_details()
    assert sig.sig_object["/Reason"] == "売買契約" and sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert status.md_algorithm == ("sha384" if key_type == "p384" else "sha256")


def test_a_second_signature_keeps_the_first_valid(world):
    once = _sign(world, "p384", blank_pdf())
    twice = _sign(world, "rsa2048", once, reason="承認")
    result = verify_pdf(twice, roots=world["roots"], revocation="ocsp")
    assert result["valid"], result
    assert [s["field"] for s in result["signatures"]] == ["Signature1", "Signature2"]
    first = _checks(result["signatures"][0])
    assert first["pdf_coverage"]["reason"].startswith("covers an earlier revision; only ")
    with pytest.raises(PdfSigningError, match="has a signature field 'Signature1' already"):
        _sign(world, "p384", once, field="Signature1")


def test_changes_after_signing_and_broken_bytes_are_refused_by_name(world):
    signed = _sign(world, "p384", blank_pdf(2))
    # an incremental update that changes a page's size after the signature
    w = IncrementalPdfFileWriter(io.BytesIO(signed))
    page = w.root["/Pages"]["/Kids"][1].get_object()
    page["/MediaBox"] = generic.ArrayObject([generic.NumberObject(n) for n in (0, 0, 100, 100)])
    w.update_container(page)
    later = io.BytesIO()
    w.write(later)
    c = _checks(verify_pdf(later.getvalue(), roots=world["roots"], revocation="none"))
    assert not c["pdf_coverage"]["passed"]
    assert "the file was changed after it (OTHER" in c["pdf_coverage"]["reason"]
    assert c["signature"]["passed"]  # the signed revision itself is intact
    # a byte of the signed content changed in place
    broken = bytearray(signed)
    at = broken.index(b"/MediaBox")
    broken[at + 1] ^= 0x20
    c = _checks(verify_pdf(bytes(broken), roots=world["roots"], revocation="none"))
    assert not c["signature"]["passed"] and "messageDigest does not match" in c["signature"]["reason"]
    assert c["pdf_coverage"]["passed"]  # it still covers the whole file: what it covers changed
    # no signature, not a PDF
    assert _checks(verify_pdf(blank_pdf(), roots=world["roots"]))["pdf"]["reason"] == "no signature in this PDF"
    assert _checks(verify_pdf(b"hello", roots=world["roots"]))["pdf"]["reason"] == "not a PDF (no %PDF- header)"


def test_ltv_gathers_its_validation_data_when_the_responder_answers_seconds_later(world, monkeypatch):
    """pyHanko fixes the validation time when its context is made and, with its default
    tolerance of 1 s, takes an OCSP answer produced more than a second later for one from the
    future: a busy responder, a slow network or a responder clock a little ahead, and
    `mcred jpki sign --pdf --ltv` failed with "could not be validated" (CI under load showed
    it). The signer allows OpenSSL's default 5 minutes of skew. Here the responder's answer
    comes 2.5 s after the context is made."""
    import time

    import mcred.jpki_pdf as jpki_pdf

    made = jpki_pdf._validation_context

    def then_wait(roots):  # noqa: ANN001, ANN202
        context = made(roots)
        time.sleep(2.5)
        return context

    monkeypatch.setattr(jpki_pdf, "_validation_context", then_wait)
    signed = _sign(world, "p384", blank_pdf(), ltv_roots=world["roots"])
    dss = DocumentSecurityStore.read_dss(PdfFileReader(io.BytesIO(signed)))
    assert len(dss.ocsps) == 1
    assert verify_pdf(signed, roots=world["roots"], revocation="ocsp")["valid"]


def test_ltv_embeds_what_a_later_verifier_needs(world):
    signed = _sign(world, "p384", blank_pdf(), ltv_roots=world["roots"])
    reader = PdfFileReader(io.BytesIO(signed))
    dss = DocumentSecurityStore.read_dss(reader)
    assert len(dss.ocsps) == 1 and len(list(dss.load_certs())) >= 2  # the OCSP answer; the certificate and root
    # validation with no network at all: the embedded OCSP answer decides
    roots = [asn1_x509.Certificate.load(r.public_bytes(serialization.Encoding.DER)) for r in world["roots"]]
    context = dss.as_validation_context({"trust_roots": roots, "allow_fetching": False,
                                         "revocation_mode": "hard-fail"})
    status = validate_pdf_signature(reader.embedded_signatures[0], context)
    assert status.bottom_line, status.pretty_print_details()
    assert verify_pdf(signed, roots=world["roots"], revocation="ocsp")["valid"]


def test_revoked_is_seen_by_us_and_by_pyhanko(world):
    from issuer.revocation import revoke

    phone = wallet_sim.create_phone(world["home"])
    provision(world["ctx"], phone, parse_holder(person(HOLDER)), key_type="p384", mdoc_batch=1, pin="1234",
              password=PASSWORD)
    signed = sign_pdf_file(phone, PASSWORD.encode(), blank_pdf(), world["home"])
    assert verify_pdf(signed, roots=world["roots"])["valid"]
    revoke(world["ctx"].sessions, phone, "keyCompromise", "sign")
    c = _checks(verify_pdf(signed, roots=world["roots"]))
    assert [n for n, v in c.items() if not v["passed"]] == ["revocation"]
    assert "revoked (keyCompromise)" in c["revocation"]["reason"]
    status = validate_pdf_signature(PdfFileReader(io.BytesIO(signed)).embedded_signatures[0],
                                    _pyhanko_context(world, allow_fetching=True))
    assert not status.bottom_line and status.revoked


def test_the_relying_party_service_verifies_a_posted_pdf(world):
    signed = _sign(world, "rsa2048", blank_pdf())
    url = world["reader_url"] + "/rp/jpki/verify-pdf"
    r = httpx.post(url, content=signed, headers={"Content-Type": "application/pdf"})
    assert r.status_code == 200 and r.json()["valid"], r.text
    assert r.json()["signatures"][0]["documents"][0]["basic_four"]
    assert_documented(rp_app(RelyingPartyService([])), "POST", "/rp/jpki/verify-pdf", r)  # a PdfVerdict
    r = httpx.post(url + "?revocation=crl", content=signed, headers={"Content-Type": "application/pdf"})
    assert r.status_code == 200 and "CRL" in _checks(r.json())["revocation"]["reason"]
    assert httpx.post(url, content=b"", headers={"Content-Type": "application/pdf"}).status_code == 422
    assert httpx.post(url, json={"pdf": "x"}).status_code == 415
    r = httpx.post(url, content=b"%PDF-1.7 nothing", headers={"Content-Type": "application/pdf"})
    assert r.status_code == 200 and not r.json()["valid"]
    assert "not a readable signed PDF" in _checks(r.json())["pdf"]["reason"]
    # the same route in the issuer service, under /reader with a reader token
    from issuer.api.auth import create_token

    token = create_token(world["ctx"].sessions, ["reader"], "pdf-test")[1]
    mounted = world["issuer_url"] + "/reader/rp/jpki/verify-pdf"
    r = httpx.post(mounted, content=signed, headers={"Content-Type": "application/pdf",
                                                     "Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["valid"], r.text
    assert httpx.post(mounted, content=signed, headers={"Content-Type": "application/pdf"}).status_code == 401
    # the command line asks the service
    path = world["files"] / "posted.pdf"
    path.write_bytes(signed)
    result = json.loads(run_cli("jpki", "verify", str(path), "--rp", world["reader_url"], "--json"))
    assert result["valid"] and result["signatures"][0]["field"] == "Signature1"


def test_the_commands_name_what_is_wrong(world):
    files, phone = world["files"], world["phones"]["p384"]
    base = ["jpki", "sign", "--phone", phone, "--pin-file", str(files / "pw")]
    (files / "note.txt").write_text("not a pdf")
    out = run_cli(*base, str(files / "note.txt"), "--pdf", code=2)
    assert "not a PDF" in out and not (files / "note.signed.pdf").exists()
    assert "documents are signed with the signing certificate" in run_cli(*base, str(files / "contract.pdf"), "--pdf",
                                                                          "--slot", "auth", code=2)
    assert "add --pdf" in run_cli(*base, str(files / "note.txt"), "--reason", "x", code=2)
    out = run_cli("jpki", "verify", str(files / "note.txt"), code=2)
    assert "is neither a PDF nor an XML document: give its detached signature with --signature" in out
    (files / "badpw").write_text("WRONG1\n")
    out = run_cli("jpki", "sign", "--phone", phone, "--pin-file", str(files / "badpw"), str(files / "contract.pdf"),
               "--pdf", "--out", str(files / "x.pdf"), code=1)
    assert "wrong signing password" in out and "tries left" in out and not (files / "x.pdf").exists()


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_damage_is_a_verdict_never_a_crash(world, data):
    signed = world.setdefault("fuzz_pdf", _sign(world, "p384", blank_pdf()))
    how = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    damaged = bytearray(signed)
    if how == "flip":
        for at in data.draw(st.lists(st.integers(0, len(signed) - 1), min_size=1, max_size=8)):
            damaged[at] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        damaged = damaged[:data.draw(st.integers(0, len(signed) - 1))]
    else:
        at = data.draw(st.integers(0, len(signed)))
        damaged[at:at] = data.draw(st.binary(min_size=1, max_size=64))
    result = verify_pdf(bytes(damaged), roots=world["roots"], revocation="none")
    assert isinstance(result["valid"], bool) and result["checks"]
    if how == "truncate":
        assert not result["valid"]


def test_a_process_that_verified_a_detached_signature_first_still_signs_and_reads_pdfs(world):
    """asn1crypto keeps the names it first resolved; pyHanko adds names when imported. In a
    fresh process that used our own CMS code before importing pyHanko (as `mcred demo` and a
    reader service do), PDFs are still signed and read (reader.jpki_pdf.refresh_asn1_name_maps)."""
    import subprocess
    import sys

    script = f"""
import sys
from mcred.context import Context
from mcred.jpki_flow import jpki_issuer, sign_file
from reader.relying_party import verify
home, phone = {str(world["home"])!r}, {world["phones"]["p384"]!r}
roots = jpki_issuer(Context.open(home)).roots("sign")
cms, _ = sign_file(phone, "sign", {PASSWORD!r}.encode(), b"x", home)
assert verify(b"x", cms, roots=roots, revocation="none")["valid"]
assert "pyhanko" not in sys.modules
from mcred.jpki_pdf import sign_pdf_file
from reader.jpki_pdf import verify_pdf
from mcred.jpki_pdf import blank_pdf
signed = sign_pdf_file(phone, {PASSWORD!r}.encode(), blank_pdf(), home)
result = verify_pdf(signed, roots=roots, revocation="none")
assert result["valid"], result
print("ok")
"""
    env = {**os.environ, "MCRED_HOME": str(world["home"]), "PYTHONPATH": os.path.dirname(__file__)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
