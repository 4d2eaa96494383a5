"""Independent checks with the system's OpenSSL: CRLs (verify -crl_check, scope) and the live
OCSP responder of ``mcred serve``'s app (uvicorn on a free 127.0.0.1 port), compared with our
own relying party; the CLI's revoke / release / export commands drive the changes."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_issuer_jpki_support import OTHER_TOWN, live_installation, provision
from typer.testing import CliRunner

from mcred.cli.main import app as cli
from reader.relying_party import check_ocsp

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A data directory, its issuer with two phones (Tokyo, Osaka) and the live service."""
    home = tmp_path_factory.mktemp("home")
    with live_installation(home) as (_ctx, issuer, url):
        tokyo, osaka = provision(issuer, algorithm="rsa2048"), provision(issuer, OTHER_TOWN)
        yield {"home": home, "url": url, "issuer": issuer, "tokyo": tokyo, "osaka": osaka,
               "dir": tmp_path_factory.mktemp("files")}


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _export(live, phone, slot: str):
    d = live["dir"]
    root, cert = d / f"{slot}-root.pem", d / f"{phone.phone_id}-{slot}.pem"
    _cli("export", "jpki-root", "--slot", slot, "--out", str(root))
    _cli("export", "jpki-cert", "--phone", phone.phone_id, "--slot", slot, "--out", str(cert))
    return root, cert


def _crl(live, slot: str, partition: str, ext: str = "crl"):
    path = live["dir"] / f"{slot}-{partition}.{ext}"
    _cli("export", "crl", "--slot", slot, "--partition", partition, "--out", str(path))
    return path


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def _verify(root, crl, cert) -> str:
    r = _openssl("verify", "-crl_check", "-CAfile", str(root), "-CRLfile", str(crl), str(cert))
    return r.stdout + r.stderr


def _ocsp_status(live, root, cert) -> str:
    r = _openssl("ocsp", "-issuer", str(root), "-sha256", "-cert", str(cert), "-url",
                 f"{live['url']}/ocsp", "-CAfile", str(root))
    out = r.stdout + r.stderr
    assert "Response verify OK" in out, out
    return out


def _ours(live, phone, slot: str):
    from cryptography import x509

    issuer = live["issuer"]
    cert = x509.load_der_x509_certificate(phone.certs[slot])
    import datetime as dt

    return check_ocsp(cert, issuer.root(slot), dt.datetime.now(dt.UTC))


def test_openssl_crl_good_revoked_and_scope(live):
    tokyo, osaka = live["tokyo"], live["osaka"]
    root, cert = _export(live, osaka, "auth")
    assert ": OK" in _verify(root, _crl(live, "auth", "271004"), cert)
    # Another municipality's CRL does not cover this certificate.
    assert "different CRL scope" in _verify(root, _crl(live, "auth", "131016", "pem"), cert)
    _cli("revoke", "--phone", osaka.phone_id, "--reason", "keyCompromise", "--credential", "auth")
    out = _verify(root, _crl(live, "auth", "271004"), cert)
    assert "error 23" in out and "certificate revoked" in out
    _root, tokyo_cert = _export(live, tokyo, "auth")
    assert ": OK" in _verify(root, _crl(live, "auth", "131016"), tokyo_cert)


def test_openssl_ocsp_good_hold_released_revoked_like_our_relying_party(live):
    phone = provision(live["issuer"])
    root, cert = _export(live, phone, "sign")
    assert f"{cert}: good" in _ocsp_status(live, root, cert)
    assert _ours(live, phone, "sign").passed

    _cli("revoke", "--phone", phone.phone_id, "--reason", "certificateHold")
    out = _ocsp_status(live, root, cert)
    assert f"{cert}: revoked" in out and "Reason: certificateHold" in out
    ours = _ours(live, phone, "sign")
    assert not ours.passed and "certificateHold" in ours.reason

    _cli("release", "--phone", phone.phone_id)
    assert f"{cert}: good" in _ocsp_status(live, root, cert)
    assert _ours(live, phone, "sign").passed
    crl = _crl(live, "sign", "131016")
    assert ": OK" in _verify(root, crl, cert)

    _cli("revoke", "--phone", phone.phone_id, "--reason", "affiliationChanged")
    out = _ocsp_status(live, root, cert)
    assert f"{cert}: revoked" in out and "Reason: affiliationChanged" in out
    ours = _ours(live, phone, "sign")
    assert not ours.passed and "affiliationChanged" in ours.reason
    assert "error 23" in _verify(root, _crl(live, "sign", "131016"), cert)


def test_openssl_reads_saved_response_files(live):
    phone = provision(live["issuer"])
    root, cert = _export(live, phone, "auth")
    d = live["dir"]
    req, resp = d / "req.der", d / "resp.der"
    r = _openssl("ocsp", "-issuer", str(root), "-sha1", "-cert", str(cert), "-no_nonce",
                 "-reqout", str(req))
    assert r.returncode == 0, r.stderr
    resp.write_bytes(httpx.post(f"{live['url']}/ocsp", content=req.read_bytes(),
                                headers={"Content-Type": "application/ocsp-request"}).content)
    r = _openssl("ocsp", "-respin", str(resp), "-issuer", str(root), "-cert", str(cert),
                 "-CAfile", str(root))
    assert f"{cert}: good" in r.stdout and "Response verify OK" in r.stderr + r.stdout


def test_ocsp_get_and_http_caching(live):
    import base64
    import urllib.parse

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    phone = live["tokyo"]
    cert = x509.load_der_x509_certificate(phone.certs["sign"])
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, live["issuer"].root("sign"),
                                                    hashes.SHA1()).build()
    b64 = urllib.parse.quote(base64.b64encode(req.public_bytes(Encoding.DER)).decode(), safe="")
    r = httpx.get(f"{live['url']}/ocsp/{b64}")
    assert r.headers["content-type"] == "application/ocsp-response"
    assert "max-age" in r.headers["cache-control"]
    assert ocsp.load_der_ocsp_response(r.content).certificate_status is ocsp.OCSPCertStatus.GOOD
    crl = httpx.get(f"{live['url']}/crl/sign/131016.crl")
    assert crl.status_code == 200 and "max-age" in crl.headers["cache-control"]
    x509.load_der_x509_crl(crl.content)
    assert httpx.get(f"{live['url']}/crl/sign/nowhere.crl").status_code == 404
    pem = httpx.get(f"{live['url']}/trust/jpki-auth-root.pem")
    assert x509.load_pem_x509_certificates(pem.content)
    assert httpx.get(f"{live['url']}/trust/jpki-auth-root.der").status_code == 200


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | st.builds(
    lambda head, tail: head + tail, st.sampled_from([b"\x30\x82\x01\x00", b"\x30\x03", b"\x30"]),
    st.binary(max_size=64)))
def test_fuzzed_ocsp_requests_get_malformed_request_never_500(live, body):
    r = httpx.post(f"{live['url']}/ocsp", content=body,
                   headers={"Content-Type": "application/ocsp-request"})
    assert r.status_code == 200
    status = ocsp.load_der_ocsp_response(r.content).response_status
    assert status in (ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
                      ocsp.OCSPResponseStatus.UNAUTHORIZED)


def test_cli_verify_asks_the_live_responder(live, tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    phone = provision(live["issuer"])
    doc, sig = tmp_path / "doc", tmp_path / "doc.sig"
    doc.write_bytes(b"hello")
    sig.write_bytes(phone.keys["auth"].sign(b"hello", ec.ECDSA(hashes.SHA384())))
    _root, cert = _export(live, phone, "auth")
    args = ["jpki", "verify", str(doc), "--signature", str(sig), "--certificate", str(cert),
            "--slot", "auth", "--json"]
    ok = CliRunner().invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    assert "OCSP good" in ok.output
    _cli("revoke", "--phone", phone.phone_id, "--reason", "superseded", "--credential", "auth")
    bad = CliRunner().invoke(cli, args)
    assert bad.exit_code == 1 and "revoked (superseded)" in bad.output


def test_one_bundle_of_both_roots_for_a_relying_party(live):
    """`mcred export jpki-root --slot all`: the signing and user-authentication roots in one
    PEM, what a relying party that checks signatures and logins trusts (the README built it
    from the signing root only, and `mcred jpki auth --rp` then failed its chain); OpenSSL
    verifies a certificate of each slot under it. DER holds one certificate: refused."""
    from cryptography import x509

    phone = provision(live["issuer"])
    bundle = live["dir"] / "both-roots.pem"
    assert "2 root(s): every generation of the sign and the auth slot" in _cli("export", "jpki-root", "--slot", "all", "--out", str(bundle))
    roots = x509.load_pem_x509_certificates(bundle.read_bytes())
    assert {r.subject for r in roots} == {r.subject for slot in ("sign", "auth") for r in live["issuer"].roots(slot)}
    for slot in ("sign", "auth"):
        _root, cert = _export(live, phone, slot)
        r = _openssl("verify", "-CAfile", str(bundle), str(cert))
        assert ": OK" in r.stdout, r.stdout + r.stderr
    refused = CliRunner().invoke(cli, ["export", "jpki-root", "--slot", "all", "--out", str(live["dir"] / "r.der")])
    assert refused.exit_code == 2 and "PEM bundle" in refused.output
