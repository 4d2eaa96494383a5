"""Our relying party against OpenSSL as the other party: a CMS signature made by
``openssl cms -sign`` with a key certified by our JPKI CA, an OCSP responder that is
``openssl ocsp -index`` (asked by our relying party, nonce and all), and a CRL made by
``openssl ca -gencrl``. Our outputs read by OpenSSL are in test_jpki_cms.py,
test_jpki_revocation.py and test_issuer_jpki_openssl.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from test_jpki_fixtures import NOW, pem, pki

from protocols.jpki import KeyType, Purpose
from reader.relying_party import verify

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")

CONTENT = "電子契約書: 賃貸借契約 第1条\n".encode() * 20


def _openssl(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _key_pem(key) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _files(tmp_path: Path, key_type: KeyType, serial: int, purpose: Purpose = Purpose.SIGN):
    p = pki(key_type)
    cert, key = (p.issue_signing if purpose is Purpose.SIGN else p.issue_auth)(serial)
    (tmp_path / "root.pem").write_bytes(pem(p.roots[purpose]))
    (tmp_path / "root.key").write_bytes(_key_pem(p.root_keys[purpose]))
    (tmp_path / "cert.pem").write_bytes(pem(cert))
    (tmp_path / "cert.key").write_bytes(_key_pem(key))
    (tmp_path / "responder.pem").write_bytes(pem(p.responders[purpose]))
    (tmp_path / "responder.key").write_bytes(_key_pem(p.responder_keys[purpose]))
    (tmp_path / "content.txt").write_bytes(CONTENT)
    return p, cert


def _openssl_signature(tmp_path: Path, *extra: str) -> bytes:
    _openssl("cms", "-sign", "-binary", "-in", tmp_path / "content.txt", "-signer", tmp_path / "cert.pem",
             "-inkey", tmp_path / "cert.key", "-outform", "DER", "-out", tmp_path / "sig.p7s",
             "-md", "sha256", *extra)
    return (tmp_path / "sig.p7s").read_bytes()


@pytest.mark.parametrize("key_type", list(KeyType))
def test_a_cms_signature_made_by_openssl_is_judged_like_ours(tmp_path, key_type):
    p, _cert = _files(tmp_path, key_type, 801)
    sig = _openssl_signature(tmp_path)
    result = verify(CONTENT, sig, roots=[p.roots[Purpose.SIGN]], revocation="none")
    assert result["valid"], result
    assert result["documents"][0]["basic_four"]["address"] == "東京都千代田区霞が関二丁目一番二号"
    # the content changed: the messageDigest no longer matches
    changed = verify(CONTENT + b"!", sig, roots=[p.roots[Purpose.SIGN]], revocation="none")
    assert not changed["valid"] and changed["checks"][0]["name"] == "signature", changed
    # without signed attributes (-noattr: nothing binds the content type or names the signing
    # certificate, what CAdES requires) the signature is refused, by name
    plain = verify(CONTENT, _openssl_signature(tmp_path, "-noattr"), roots=[p.roots[Purpose.SIGN]], revocation="none")
    assert plain["checks"] == [{"name": "signature", "passed": False, "reason": "SignerInfo has no signed attributes",
                                "code": "bad_signature"}]


def test_openssls_signature_with_a_user_authentication_key_is_no_document_signature(tmp_path):
    p, _cert = _files(tmp_path, KeyType.RSA_2048, 802, Purpose.AUTH)
    sig = _openssl_signature(tmp_path)
    result = verify(CONTENT, sig, roots=[p.roots[Purpose.SIGN], p.roots[Purpose.AUTH]], revocation="none")
    failed = {c["name"]: c["reason"] for c in result["checks"] if not c["passed"]}
    assert not result["valid"] and "policy" in failed, result


def _index_line(cert, revoked: str | None = None) -> str:
    """A line of OpenSSL's CA database (index.txt): V or R, expiry, revocation, serial, -, subject."""
    expiry = cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    status, when = ("R", revoked) if revoked else ("V", "")
    return f"{status}\t{expiry}\t{when}\t{cert.serial_number:04X}\tunknown\t/CN=test\n"


def _openssl_responder(tmp_path: Path, index: str) -> httpx.Client:
    """Our relying party's HTTP client, answered by `openssl ocsp -index` (the delegated
    responder's key and certificate) from the request our relying party sent."""
    (tmp_path / "index.txt").write_text(index)

    def handle(request: httpx.Request) -> httpx.Response:
        (tmp_path / "req.der").write_bytes(request.content)
        _openssl("ocsp", "-index", tmp_path / "index.txt", "-rsigner", tmp_path / "responder.pem",
                 "-rkey", tmp_path / "responder.key", "-CA", tmp_path / "root.pem", "-reqin", tmp_path / "req.der",
                 "-respout", tmp_path / "resp.der", "-ndays", "1")
        return httpx.Response(200, content=(tmp_path / "resp.der").read_bytes(),
                              headers={"Content-Type": "application/ocsp-response"})

    return httpx.Client(transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("key_type", list(KeyType))
def test_openssls_ocsp_responder_answers_our_relying_party(tmp_path, key_type):
    p, cert = _files(tmp_path, key_type, 803)
    sig = _openssl_signature(tmp_path)
    roots = [p.roots[Purpose.SIGN]]
    good = verify(CONTENT, sig, roots=roots, client=_openssl_responder(tmp_path, _index_line(cert)))
    assert good["valid"], good
    assert good["checks"][-1]["reason"] == "OCSP good (http://jpki.test.invalid/ocsp)"
    assert good["checks"][-1]["code"] == "good"
    when = (NOW - timedelta(hours=1)).strftime("%y%m%d%H%M%SZ")
    for reason, said, code in (("affiliationChanged", "revoked (affiliationChanged) at ", "revoked"),
                               ("certificateHold", "on hold (certificateHold", "on_hold")):
        client = _openssl_responder(tmp_path, _index_line(cert, f"{when},{reason}"))
        result = verify(CONTENT, sig, roots=roots, client=client)
        assert not result["valid"] and result["checks"][-1]["reason"].startswith(said), result
        assert (result["checks"][-1]["code"], result["checks"][-1]["revocation_reason"]) == (code, reason)
    # a serial its database does not hold: unknown
    unknown = verify(CONTENT, sig, roots=roots, client=_openssl_responder(tmp_path, ""))
    assert unknown["checks"][-1]["reason"] == "OCSP status unknown", unknown
    assert unknown["checks"][-1]["code"] == "unknown"


def test_a_crl_made_by_openssl_ca(tmp_path):
    p, cert = _files(tmp_path, KeyType.RSA_2048, 804)
    sig = _openssl_signature(tmp_path)
    roots = [p.roots[Purpose.SIGN]]
    when = (NOW - timedelta(hours=1)).strftime("%y%m%d%H%M%SZ")
    (tmp_path / "ca.cnf").write_text(
        "[ca]\ndefault_ca = jpki\n[jpki]\ndatabase = index.txt\ncrlnumber = crlnumber\n"
        "default_md = sha256\ndefault_crl_hours = 24\ncrl_extensions = ext\n[ext]\n"
        "authorityKeyIdentifier = keyid\n")
    (tmp_path / "crlnumber").write_text("01\n")

    def crl(index: str) -> bytes:
        (tmp_path / "index.txt").write_text(index)
        _openssl("ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "root.key", "-cert", "root.pem",
                 "-out", "crl.pem", cwd=tmp_path)
        return (tmp_path / "crl.pem").read_bytes()

    assert verify(CONTENT, sig, roots=roots, revocation="crl", crl=crl(_index_line(cert)))["valid"]
    result = verify(CONTENT, sig, roots=roots, revocation="crl", crl=crl(_index_line(cert, f"{when},superseded")))
    assert not result["valid"] and result["checks"][-1]["reason"].startswith("revoked (superseded) at "), result


def test_an_openssl_answer_about_several_certificates_is_read_for_ours(tmp_path):
    """`openssl ocsp` asked about several certificates at once answers each in one response
    (RFC 6960 4.2.1, a SingleResponse each): the relying party reads the one about its
    certificate, where it refused the whole answer as unreadable."""
    import datetime as dt

    from cryptography.x509 import ocsp

    from reader.relying_party import OcspAnswer, judge_ocsp

    p, good = _files(tmp_path, KeyType.RSA_2048, 805)
    revoked, _key = p.issue_signing(806)
    root = p.roots[Purpose.SIGN]
    (tmp_path / "other.pem").write_bytes(pem(revoked))
    when = (dt.datetime.now(dt.UTC) - timedelta(hours=1)).strftime("%y%m%d%H%M%SZ")
    (tmp_path / "index.txt").write_text(_index_line(good) + _index_line(revoked, f"{when},keyCompromise"))
    _openssl("ocsp", "-issuer", tmp_path / "root.pem", "-cert", tmp_path / "other.pem", "-cert", tmp_path / "cert.pem",
             "-no_nonce", "-reqout", tmp_path / "req.der")
    _openssl("ocsp", "-index", tmp_path / "index.txt", "-rsigner", tmp_path / "responder.pem",
             "-rkey", tmp_path / "responder.key", "-CA", tmp_path / "root.pem", "-reqin", tmp_path / "req.der",
             "-respout", tmp_path / "resp.der", "-ndays", "1")
    resp = ocsp.load_der_ocsp_response((tmp_path / "resp.der").read_bytes())
    assert len(list(resp.responses)) == 2
    now = dt.datetime.now(dt.UTC)
    ours = judge_ocsp(resp, good, root, now, where="openssl")
    assert isinstance(ours, OcspAnswer) and ours.status == "good", ours
    theirs = judge_ocsp(resp, revoked, root, now, where="openssl")
    assert isinstance(theirs, OcspAnswer) and (theirs.status, theirs.reason) == ("revoked", "keyCompromise"), theirs
    third, _key = p.issue_signing(807)  # in neither SingleResponse
    assert judge_ocsp(resp, third, root, now, where="openssl").reason == "OCSP response is about another certificate"


def _openssl_time(text: str, label: str) -> str:
    """The time OpenSSL prints after ``label`` (``Revocation Time: Nov  3 01:02:03 2026 GMT``;
    an extension's, ``Invalidity Date``, on the line after it), in ISO 8601 UTC."""
    import datetime as dt

    found = re.search(rf"{label}:\s*(\w+ +\d+ [\d:]+ \d+) GMT", text)  # an extension's on the next line
    assert found, text
    return dt.datetime.strptime(" ".join(found[1].split()), "%b %d %H:%M:%S %Y").replace(tzinfo=dt.UTC).isoformat()


@pytest.mark.parametrize("source", ["ocsp", "crl"])
def test_revoked_at_is_the_time_openssl_reads(tmp_path, source):
    """The revocation check's ``revoked_at`` is the time OpenSSL reads in the same answer
    (``openssl ocsp -resp_text``: Revocation Time; ``openssl crl -text``: Revocation Date),
    ISO 8601 in UTC, and ``revocation_reason`` the reason it names; both null for a good
    certificate. An answer made by ``openssl ocsp -index`` or ``openssl ca -gencrl``."""
    p, cert = _files(tmp_path, KeyType.RSA_2048, 808)
    sig = _openssl_signature(tmp_path)
    roots = [p.roots[Purpose.SIGN]]
    when = (NOW - timedelta(hours=5, minutes=7, seconds=9)).strftime("%y%m%d%H%M%SZ")
    if source == "ocsp":
        def judged(index: str) -> tuple[dict, str]:
            result = verify(CONTENT, sig, roots=roots, client=_openssl_responder(tmp_path, index))
            read = _openssl("ocsp", "-respin", tmp_path / "resp.der", "-resp_text", "-noverify").stdout
            return result, read
        label, reason_label = "Revocation Time", "Revocation Reason"
    else:
        (tmp_path / "ca.cnf").write_text(
            "[ca]\ndefault_ca = jpki\n[jpki]\ndatabase = index.txt\ncrlnumber = crlnumber\n"
            "default_md = sha256\ndefault_crl_hours = 24\ncrl_extensions = ext\n[ext]\n"
            "authorityKeyIdentifier = keyid\n")
        (tmp_path / "crlnumber").write_text("01\n")

        def judged(index: str) -> tuple[dict, str]:
            (tmp_path / "index.txt").write_text(index)
            _openssl("ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "root.key", "-cert", "root.pem",
                     "-out", "crl.pem", cwd=tmp_path)
            result = verify(CONTENT, sig, roots=roots, revocation="crl", crl=(tmp_path / "crl.pem").read_bytes())
            return result, _openssl("crl", "-in", tmp_path / "crl.pem", "-text", "-noout").stdout
        label, reason_label = "Revocation Date", "CRL Reason Code"
    good, _read = judged(_index_line(cert))
    assert good["valid"] and (good["checks"][-1]["revoked_at"], good["checks"][-1]["revocation_reason"]) == (
        None, None), good
    for reason in ("cessationOfOperation", "superseded", "certificateHold"):
        result, read = judged(_index_line(cert, f"{when},{reason}"))
        check = result["checks"][-1]
        assert check["revoked_at"] == _openssl_time(read, label) and check["revoked_at"].endswith("+00:00"), (
            check, read)
        # OpenSSL names the reason its own way: cessationOfOperation (0x5), or Cessation Of Operation
        named = re.search(rf"{reason_label}:\s*([A-Za-z ]+?)\s*(\(0x|\n)", read)
        assert named and named[1].replace(" ", "").lower() == check["revocation_reason"].lower(), read
        assert check["revocation_reason"] == reason
        assert check["invalid_since"] is None
    # keyCompromise with the time of the compromise (index.txt's "keyTime", what `openssl ca
    # -revoke -crl_compromise` records): OpenSSL writes it as the CRL entry's invalidityDate and
    # the OCSP singleExtension, which the check reports as invalid_since
    since = (NOW - timedelta(days=3, minutes=1)).strftime("%Y%m%d%H%M%SZ")
    result, read = judged(_index_line(cert, f"{when},keyTime,{since}"))
    check = result["checks"][-1]
    assert (check["code"], check["revocation_reason"]) == ("revoked", "keyCompromise"), check
    assert check["revoked_at"] == _openssl_time(read, label), (check, read)
    assert check["invalid_since"] == _openssl_time(read, "Invalidity Date"), (check, read)
    assert f"invalid since {check['invalid_since']}" in check["reason"], check
