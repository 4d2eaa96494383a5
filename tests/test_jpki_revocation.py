"""JPKI CRLs and OCSP, checked by OpenSSL from the system; OCSP request parser fuzzed."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from asn1crypto import ocsp as asn1ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509ocsp
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jpki_fixtures import CHIYODA, NOW, SAPPORO, pem, pki

from protocols.jpki import KeyType, OcspRequestError, ProfileError, Purpose
from protocols.jpki.crl import (
    Revocation,
    RevocationEvent,
    RevocationReason,
    apply_event,
    build_crl,
)
from protocols.jpki.ocsp import (
    CertId,
    Good,
    OcspResponder,
    Revoked,
    Unknown,
    parse_request,
    respond,
)

KEY_TYPES = list(KeyType)
R = RevocationReason


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


def crl_for(p, partition, revocations, purpose=Purpose.SIGN, number=1):
    return build_crl(profile=p.profile, purpose=purpose, issuer=p.roots[purpose],
                     issuer_key=p.root_keys[purpose], partition=partition,
                     revocations=revocations, crl_number=number,
                     this_update=NOW - timedelta(hours=1), next_update=NOW + timedelta(days=1))


def verify(tmp_path, root, cert, crl) -> subprocess.CompletedProcess:
    (tmp_path / "root.pem").write_bytes(pem(root))
    (tmp_path / "cert.pem").write_bytes(pem(cert))
    (tmp_path / "part.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return run("openssl", "verify", "-crl_check", "-CAfile", tmp_path / "root.pem",
               "-CRLfile", tmp_path / "part.crl", tmp_path / "cert.pem")


# ---- reasons and the hold/release state -------------------------------------------------

def test_event_fold_hold_release_and_final():
    s = apply_event({}, RevocationEvent(7, NOW, R.CERTIFICATE_HOLD))
    assert s[7].on_hold
    assert apply_event(s, RevocationEvent(7, NOW, R.REMOVE_FROM_CRL)) == {}
    final = apply_event(s, RevocationEvent(7, NOW, R.CESSATION_OF_OPERATION))
    assert final[7].reason is R.CESSATION_OF_OPERATION
    with pytest.raises(ProfileError):
        apply_event(final, RevocationEvent(7, NOW, R.REMOVE_FROM_CRL))
    with pytest.raises(ProfileError):
        apply_event(final, RevocationEvent(7, NOW, R.SUPERSEDED))
    with pytest.raises(ProfileError):
        apply_event({}, RevocationEvent(8, NOW, R.REMOVE_FROM_CRL))


def test_reason_names_and_codes():
    assert R.parse("affiliation_changed") is R.AFFILIATION_CHANGED
    assert R.parse("certificateHold").code == 6
    with pytest.raises(ProfileError):
        R.parse("death")


# ---- CRLs against OpenSSL ---------------------------------------------------------------

@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_crl_good_revoked_out_of_scope(tmp_path, key_type):
    p = pki(key_type)
    good, _ = p.issue_signing(101)
    bad, _ = p.issue_signing(102)
    other, _ = p.issue_signing(103, municipality=SAPPORO)
    crl = crl_for(p, CHIYODA, [Revocation(102, NOW - timedelta(minutes=5), R.SUPERSEDED)])
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert idp.value.full_name == [x509.DirectoryName(p.profile.crldp_name(CHIYODA))]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    root = p.roots[Purpose.SIGN]
    out = verify(tmp_path, root, good, crl)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
    out = verify(tmp_path, root, bad, crl)
    assert out.returncode != 0 and "error 23" in out.stdout + out.stderr
    out = verify(tmp_path, root, other, crl)
    assert out.returncode != 0
    assert "different CRL scope" in (out.stdout + out.stderr).lower().replace("crl", "CRL")


def test_crl_hold_then_release_with_openssl(tmp_path):
    p = pki(KeyType.RSA_2048)
    cert, _ = p.issue_auth(110)
    state = apply_event({}, RevocationEvent(110, NOW - timedelta(minutes=3), R.CERTIFICATE_HOLD))
    held = crl_for(p, CHIYODA, state.values(), purpose=Purpose.AUTH, number=5)
    out = verify(tmp_path, p.roots[Purpose.AUTH], cert, held)
    assert "error 23" in out.stdout + out.stderr
    assert held.get_revoked_certificate_by_serial_number(110).extensions.get_extension_for_class(
        x509.CRLReason).value.reason is x509.ReasonFlags.certificate_hold
    state = apply_event(state, RevocationEvent(110, NOW, R.REMOVE_FROM_CRL))
    released = crl_for(p, CHIYODA, state.values(), purpose=Purpose.AUTH, number=6)
    out = verify(tmp_path, p.roots[Purpose.AUTH], cert, released)
    assert out.returncode == 0, out.stdout + out.stderr


def test_crl_partition_must_match_profile():
    p = pki(KeyType.RSA_2048)
    with pytest.raises(ProfileError):
        crl_for(p, None, [])


# ---- OCSP -------------------------------------------------------------------------------

def responder(p, purpose=Purpose.SIGN) -> OcspResponder:
    return OcspResponder(certificate=p.responders[purpose], key=p.responder_keys[purpose],
                         issuer=p.roots[purpose], validity=timedelta(minutes=30))


def request_der(cert, issuer, algorithm=hashes.SHA256(), nonce: bytes | None = None) -> bytes:
    builder = x509ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def openssl_ocsp(tmp_path, p, cert, resp: bytes, purpose=Purpose.SIGN, digest="-sha256") -> str:
    (tmp_path / "root.pem").write_bytes(pem(p.roots[purpose]))
    (tmp_path / "cert.pem").write_bytes(pem(cert))
    (tmp_path / "resp.der").write_bytes(resp)
    out = run("openssl", "ocsp", "-respin", tmp_path / "resp.der", "-issuer",
              tmp_path / "root.pem", "-CAfile", tmp_path / "root.pem", "-no_nonce", digest,
              "-cert", tmp_path / "cert.pem")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Response verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
    return out.stdout


def lookup_table(table):
    return lambda cid: table.get(cid.serial, Unknown())


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_ocsp_good_revoked_unknown_with_openssl(tmp_path, key_type):
    p = pki(key_type)
    good, _ = p.issue_signing(201)
    revoked, _ = p.issue_signing(202)
    unknown, _ = p.issue_signing(203)
    table = {201: Good(), 202: Revoked(NOW - timedelta(hours=2), R.AFFILIATION_CHANGED)}
    for cert, expect in ((good, ": good"), (revoked, ": revoked"), (unknown, ": unknown")):
        resp = respond(request_der(cert, p.roots[Purpose.SIGN], nonce=b"n" * 16),
                       lookup_table(table), responder(p), NOW)
        out = openssl_ocsp(tmp_path, p, cert, resp)
        assert expect in out, out
        if cert is revoked:
            assert "Reason: affiliationChanged" in out
            assert "Revocation Time:" in out


@pytest.mark.parametrize("reason", [r for r in R if r is not R.REMOVE_FROM_CRL])
def test_ocsp_each_reason(tmp_path, reason):
    p = pki(KeyType.EC_P384)
    cert, _ = p.issue_auth(300 + reason.code)
    resp = respond(request_der(cert, p.roots[Purpose.AUTH], hashes.SHA1()),
                   lookup_table({cert.serial_number: Revoked(NOW, reason)}),
                   [responder(p, Purpose.SIGN), responder(p, Purpose.AUTH)], NOW)
    out = openssl_ocsp(tmp_path, p, cert, resp, Purpose.AUTH, "-sha1")
    assert f"Reason: {reason.value}" in out, out


def test_ocsp_nonce_echo_and_sha1_certid():
    p = pki(KeyType.RSA_2048)
    cert, _ = p.issue_signing(204)
    req = request_der(cert, p.roots[Purpose.SIGN], hashes.SHA1(), nonce=b"\x01" * 20)
    parsed = parse_request(req)
    assert parsed.nonce == b"\x01" * 20
    assert parsed.cert_ids == (CertId.for_certificate(cert, p.roots[Purpose.SIGN], "sha1"),)
    resp = x509ocsp.load_der_ocsp_response(respond(req, lookup_table({}), responder(p), NOW))
    assert resp.response_status is x509ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"\x01" * 20
    assert resp.certificate_status is x509ocsp.OCSPCertStatus.UNKNOWN
    assert resp.this_update_utc == NOW and resp.produced_at_utc == NOW
    assert resp.next_update_utc == NOW + timedelta(minutes=30)
    assert resp.certificates == [p.responders[Purpose.SIGN]]
    p.responders[Purpose.SIGN].public_key().verify(
        resp.signature, resp.tbs_response_bytes,
        *((__import__("cryptography.hazmat.primitives.asymmetric.padding",
                      fromlist=["PKCS1v15"]).PKCS1v15(), hashes.SHA256())))


def test_ocsp_openssl_generated_request(tmp_path):
    p = pki(KeyType.RSA_2048)
    cert, _ = p.issue_signing(205)
    (tmp_path / "root.pem").write_bytes(pem(p.roots[Purpose.SIGN]))
    (tmp_path / "cert.pem").write_bytes(pem(cert))
    out = run("openssl", "ocsp", "-issuer", tmp_path / "root.pem", "-sha256", "-cert",
              tmp_path / "cert.pem", "-nonce", "-reqout", tmp_path / "req.der")
    assert out.returncode == 0, out.stderr
    req = (tmp_path / "req.der").read_bytes()
    assert parse_request(req).nonce is not None
    resp = respond(req, lookup_table({205: Revoked(NOW, R.KEY_COMPROMISE)}), responder(p), NOW)
    (tmp_path / "resp.der").write_bytes(resp)
    # -reqin alone: OpenSSL checks the echoed nonce against that request's nonce.
    out = run("openssl", "ocsp", "-reqin", tmp_path / "req.der", "-respin",
              tmp_path / "resp.der", "-CAfile", tmp_path / "root.pem", "-resp_text")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Response verify OK" in text, text
    assert "Cert Status: revoked" in text and "keyCompromise" in text, text
    assert "nonce" not in text.lower().replace("ocsp nonce", ""), text


def _status(der: bytes) -> str:
    return asn1ocsp.OCSPResponse.load(der)["response_status"].native


def test_ocsp_error_responses():
    p = pki(KeyType.RSA_2048)
    cert, _ = p.issue_signing(206)
    other = pki(KeyType.EC_P384)
    assert _status(respond(b"\x30\x00", lookup_table({}), responder(p), NOW)) == \
        "malformed_request"
    # a CertID of a CA this responder does not answer for
    req = request_der(cert, p.roots[Purpose.SIGN])
    assert _status(respond(req, lookup_table({}), responder(other), NOW)) == "unauthorized"

    def broken(_cid):
        raise RuntimeError("database down")

    assert _status(respond(req, broken, responder(p), NOW)) == "internal_error"
    assert _status(respond(req, lambda c: "good", responder(p), NOW)) == "internal_error"


def test_parse_request_errors_are_precise():
    with pytest.raises(OcspRequestError, match="empty"):
        parse_request(b"")
    with pytest.raises(OcspRequestError):
        parse_request(b"\x30\x03\x02\x01\x00")


_VALID = request_der(pki(KeyType.RSA_2048).issue_signing(207)[0],
                     pki(KeyType.RSA_2048).roots[Purpose.SIGN], nonce=b"abcdefgh")


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)).map(
        lambda t: _VALID[: t[0]] + bytes([t[1]]) + _VALID[t[0] + 1:]),
    st.integers(0, len(_VALID)).map(lambda n: _VALID[:n]),
))
def test_fuzz_ocsp_request_never_crashes(data):
    try:
        parse_request(data)
    except OcspRequestError:
        pass
    resp = respond(data, lookup_table({207: Good()}), responder(pki(KeyType.RSA_2048)), NOW)
    assert _status(resp) in {"successful", "malformed_request", "unauthorized"}


def _fields(der: bytes) -> dict:
    r = x509ocsp.load_der_ocsp_response(der)
    ext = {e.oid.dotted_string: (e.critical, e.value.public_bytes()) for e in r.extensions}
    return {
        "status": r.response_status, "cert_status": r.certificate_status, "serial": r.serial_number,
        "hash": r.hash_algorithm.name, "name_hash": r.issuer_name_hash, "key_hash": r.issuer_key_hash,
        "this_update": r.this_update_utc, "next_update": r.next_update_utc, "produced_at": r.produced_at_utc,
        "revocation_time": r.revocation_time_utc if r.certificate_status is x509ocsp.OCSPCertStatus.REVOKED else None,
        "reason": r.revocation_reason if r.certificate_status is x509ocsp.OCSPCertStatus.REVOKED else None,
        "responder_key_hash": r.responder_key_hash, "responder_name": r.responder_name,
        "certificates": r.certificates, "signature_oid": r.signature_algorithm_oid,
        "hash_of_signature": r.signature_hash_algorithm.name, "extensions": ext, "count": len(list(r.responses)),
    }


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_ocsp_single_certid_fast_path_answers_like_the_general_one(tmp_path, key_type):
    """One CertID is built by cryptography's OCSPResponseBuilder when its producedAt (the
    system clock at signing) is ``now``'s second; otherwise, and for several CertIDs, by
    asn1crypto. Both give the same fields for every status, with and without a nonce, for
    SHA-1 and SHA-256 CertIDs, and OpenSSL verifies the fast one."""
    from datetime import UTC, datetime

    from protocols.jpki.ocsp import _build_general, _build_one

    p = pki(key_type)
    cert, _ = p.issue_signing(401)
    r = responder(p)
    statuses = [Good(), Unknown(), Revoked(NOW - timedelta(hours=3), None)]
    statuses += [Revoked(NOW - timedelta(minutes=5, microseconds=7), reason)
                 for reason in R if reason is not R.REMOVE_FROM_CRL]
    for n, status in enumerate(statuses):
        for alg, nonce in ((hashes.SHA256(), b"\x02" * 16), (hashes.SHA1(), None)):
            cid = parse_request(request_der(cert, p.roots[Purpose.SIGN], alg)).cert_ids[0]
            for _ in range(3):  # a signature that straddles a second falls back: try again
                now = datetime.now(UTC)
                fast = _build_one(r, cid, status, now, nonce)
                if fast is not None:
                    break
            assert fast is not None
            assert _fields(fast) == _fields(_build_general(r, [(cid, status)], now, nonce)), (status, alg)
            if n < 3:
                expect = {Good: ": good", Unknown: ": unknown", Revoked: ": revoked"}[type(status)]
                assert expect in openssl_ocsp(tmp_path, p, cert, fast, digest="-sha256" if nonce else "-sha1")
    # a responder clock away from the system clock never takes the fast path
    assert _build_one(r, cid, Good(), NOW - timedelta(days=1), None) is None
