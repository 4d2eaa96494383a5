"""JPKI CRLs and OCSP, checked by OpenSSL from the system; OCSP request parser fuzzed."""

from __future__ import annotations

import subprocess
from datetime import timedelta, timezone

import pytest
from asn1crypto import core as asn1core
from asn1crypto import ocsp as asn1ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509ocsp
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jpki_fixtures import CHIYODA, NOW, SAPPORO, pem, pki

from protocols.jpki import JpkiError, KeyType, OcspRequestError, ProfileError, Purpose
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
    ResponseStatus,
    Revoked,
    Unknown,
    build_response,
    error_response,
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


def test_a_second_hold_keeps_the_first():
    """A hold on a held certificate changes nothing: the CRL keeps the first hold's date, the
    one since which the certificate is suspended (a second hold, say after a reported loss
    then a second report, must not move it later and so hide signatures made in between)."""
    first = apply_event({}, RevocationEvent(7, NOW, R.CERTIFICATE_HOLD))
    again = apply_event(first, RevocationEvent(7, NOW + timedelta(hours=5), R.CERTIFICATE_HOLD))
    assert again == first and again[7].revoked_at == NOW and again[7].on_hold


def test_reason_names_and_codes():
    assert R.parse("affiliation_changed") is R.AFFILIATION_CHANGED
    assert R.parse("certificateHold").code == 6
    with pytest.raises(ProfileError):
        R.parse("death")


def test_a_revocation_state_refuses_remove_from_crl_and_a_naive_time():
    """Revocation is what is on the CRL now: removeFromCRL is the event that releases a hold
    (apply_event), never a state a certificate is in, since no CRL we build carries it (no
    delta CRLs, RFC 5280 5.3.1); and revoked_at must say its offset, since a naive time would
    be read as the local time of whoever builds the CRL (RFC 5280 5.1.2.6: UTC)."""
    with pytest.raises(ProfileError, match="removeFromCRL is an event, not a state: use apply_event"):
        Revocation(7, NOW, R.REMOVE_FROM_CRL)
    with pytest.raises(ProfileError, match="revoked_at must be timezone-aware"):
        Revocation(7, NOW.replace(tzinfo=None), R.KEY_COMPROMISE)
    # the refusals are of those two only: a hold and an aware time in another zone stand
    held = Revocation(7, NOW.astimezone(timezone(timedelta(hours=9))), R.CERTIFICATE_HOLD)
    assert held.on_hold and held.revoked_at == NOW


def test_every_reason_code_is_the_crlreason_enumerated_value():
    """RevocationReason.code is the CRLReason ENUMERATED value (RFC 5280 5.3.1), read against
    asn1crypto's table; removeFromCRL is 8 (7 is unused), the one no CRL of ours carries."""
    from asn1crypto.crl import CRLReason

    assert R.REMOVE_FROM_CRL.code == 8 and R.REMOVE_FROM_CRL.flag is x509.ReasonFlags.remove_from_crl
    for reason in R:  # asn1crypto names 8 remove_from_crl, 6 certificate_hold, ...
        assert CRLReason(reason.code).native == reason.name.lower(), reason


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


def test_a_crl_number_is_0_to_2_159_and_times_run_forward():
    """RFC 5280 5.2.3: cRLNumber is a non-negative integer of at most 20 octets (so below
    2^159 as DER writes a positive one); a CRL's nextUpdate follows its thisUpdate."""
    p = pki(KeyType.EC_P384)
    for number in (0, (1 << 159) - 1):
        assert crl_for(p, CHIYODA, [], number=number).extensions.get_extension_for_class(
            x509.CRLNumber).value.crl_number == number
    for number in (-1, 1 << 159):
        with pytest.raises(ProfileError, match=rf"CRL number {number} must be 0\.\.2\^159-1 "):
            crl_for(p, CHIYODA, [], number=number)
    with pytest.raises(ProfileError, match="next_update must come after this_update"):
        build_crl(profile=p.profile, purpose=Purpose.SIGN, issuer=p.roots[Purpose.SIGN],
                  issuer_key=p.root_keys[Purpose.SIGN], partition=CHIYODA, revocations=[], crl_number=1,
                  this_update=NOW, next_update=NOW)
    # a naive time was read as this machine's local time (or, mixed with an aware one, a TypeError)
    for this, nxt in ((NOW.replace(tzinfo=None), NOW + timedelta(hours=1)),
                      (NOW, (NOW + timedelta(hours=1)).replace(tzinfo=None))):
        with pytest.raises(ProfileError, match="must be timezone-aware"):
            build_crl(profile=p.profile, purpose=Purpose.SIGN, issuer=p.roots[Purpose.SIGN],
                      issuer_key=p.root_keys[Purpose.SIGN], partition=CHIYODA, revocations=[], crl_number=1,
                      this_update=this, next_update=nxt)


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


# ---- request parsing, rule by rule (RFC 6960 4.1.1, RFC 8954) -----------------------------

def _raw_request(cert_ids=None, extensions=None, version=0) -> bytes:
    """An OCSPRequest built field by field, so that each rule of parse_request can be broken
    alone; by default one SHA-256 CertID of serial 7 and no extensions."""
    if cert_ids is None:
        cert_ids = [{"hash_algorithm": {"algorithm": "sha256"}, "issuer_name_hash": b"\x01" * 32,
                     "issuer_key_hash": b"\x02" * 32, "serial_number": 7}]
    tbs = {"version": version, "request_list": [{"req_cert": c} for c in cert_ids]}
    if extensions is not None:
        tbs["request_extensions"] = extensions
    return asn1ocsp.OCSPRequest({"tbs_request": tbs}).dump()


def _cid(alg="sha256", length=32, serial=7, **changes) -> dict:
    return {"hash_algorithm": {"algorithm": alg}, "issuer_name_hash": b"\x01" * length,
            "issuer_key_hash": b"\x02" * length, "serial_number": serial, **changes}


def _with_parameters(parameters: bytes) -> bytes:
    """A request whose SHA-256 CertID has ``parameters`` (DER) where NULL belongs."""
    der = _raw_request([_cid(hash_algorithm={"algorithm": "sha256", "parameters": asn1core.Null()})])
    at = der.index(bytes.fromhex("0609608648016503040201")) + 11
    assert der[at:at + 2] == b"\x05\x00"
    return der[:at] + parameters + der[at + 2:]


def _nonce(value: bytes) -> dict:
    return {"extn_id": "nonce", "critical": False, "extn_value": value}


def test_parse_request_takes_one_to_sixteen_certids_of_sha1_or_sha256_as_rfc_6960_4_1_1_has_them():
    """RFC 6960 4.1.1: each CertID's hashAlgorithm (SHA-1 or SHA-256 here, parameters absent
    or NULL) sets the length of issuerNameHash and issuerKeyHash; the serial is a
    non-negative INTEGER (RFC 5280 4.1.2.2); a request names at least one and here at most
    16 certificates (specs/revocation.md 3), is version v1, and is DER with nothing after it."""
    parsed = parse_request(_raw_request([_cid("sha1", 20, serial=0), _cid()] * 8))
    assert len(parsed.cert_ids) == 16 and parsed.nonce is None
    assert parsed.cert_ids[0] == CertId("sha1", b"\x01" * 20, b"\x02" * 20, 0)
    assert parsed.cert_ids[1] == CertId("sha256", b"\x01" * 32, b"\x02" * 32, 7)
    null = _cid(hash_algorithm={"algorithm": "sha256", "parameters": asn1core.Null()})
    assert parse_request(_raw_request([null])).cert_ids[0].hash_algorithm == "sha256"
    for request, message in (
            (_raw_request(version=1), "version 1 is not v1"),
            (_raw_request([]), "request list is empty"),
            (_raw_request([_cid()] * 17), "17 CertIDs, at most 16"),
            (_raw_request([_cid(), _cid("sha384", 48)]), "CertID 1: hash algorithm 'sha384'"),
            (_with_parameters(b"\x04\x00"), "does not decode"),
            (_raw_request() + b"\x00", "does not decode"),
            (_raw_request([_cid("sha1", 32)]), "CertID 0: issuerNameHash is not a sha1 digest"),
            (_raw_request([_cid(issuer_key_hash=b"\x02" * 31)]), "CertID 0: issuerKeyHash is not a sha256 digest"),
            (_raw_request([_cid(serial=-1)]), "serial number -1"),
    ):
        with pytest.raises(OcspRequestError, match=message):
            parse_request(request)


def test_parse_request_nonce_is_one_to_32_octets_once_and_unknown_critical_extensions_are_refused():
    """RFC 8954 2.1: a nonce of 1..32 octets; a second nonce is ambiguous; RFC 6960 4.1.2 /
    RFC 5280 4.2: a critical extension the responder does not know is refused, a non-critical
    one is ignored."""
    assert parse_request(_raw_request(extensions=[_nonce(b"\x05")])).nonce == b"\x05"
    assert parse_request(_raw_request(extensions=[_nonce(b"\x06" * 32)])).nonce == b"\x06" * 32
    unknown = {"extn_id": "1.3.6.1.4.1.99999.1", "critical": False, "extn_value": b"\x05\x00"}
    assert parse_request(_raw_request(extensions=[unknown, _nonce(b"x")])).nonce == b"x"
    for extensions, message in (
            ([_nonce(b"")], "1..32 octets"),
            ([_nonce(b"\x06" * 33)], "1..32 octets"),
            ([_nonce(b"a"), _nonce(b"b")], "two nonce extensions"),
            ([dict(unknown, critical=True)], "unknown critical extension 1.3.6.1.4.1.99999.1"),
    ):
        with pytest.raises(OcspRequestError, match=message):
            parse_request(_raw_request(extensions=extensions))


def test_a_request_of_several_certids_is_answered_for_each_also_at_the_system_clock():
    """RFC 6960 4.2.1: the response carries a SingleResponse for every CertID of the
    request, in its order; at the system clock too, where one CertID takes cryptography's
    builder (the same for several would answer the first alone)."""
    from datetime import UTC, datetime

    p = pki(KeyType.EC_P384)
    good, revoked = p.issue_signing(501)[0], p.issue_signing(502)[0]
    root = p.roots[Purpose.SIGN]
    cids = [CertId.for_certificate(c, root) for c in (good, revoked)]
    req = asn1ocsp.OCSPRequest({"tbs_request": {
        "version": "v1", "request_list": [{"req_cert": c.to_asn1()} for c in cids]}}).dump()
    table = {502: Revoked(NOW - timedelta(hours=1), R.KEY_COMPROMISE), 501: Good()}
    for now in (datetime.now(UTC), NOW - timedelta(days=1)):
        resp = x509ocsp.load_der_ocsp_response(respond(req, lookup_table(table), responder(p), now))
        assert [(r.serial_number, r.certificate_status) for r in resp.responses] == [
            (501, x509ocsp.OCSPCertStatus.GOOD), (502, x509ocsp.OCSPCertStatus.REVOKED)]


def test_ocsp_times_must_be_timezone_aware_on_either_path():
    """A GeneralizedTime of OCSP is UTC (RFC 6960 4.2.2.1, RFC 5280 4.1.2.5.2): a naive
    ``now`` or revocation time is refused (JpkiError), not read in some local zone, whether
    the response would be built by cryptography (the system clock) or by asn1crypto."""
    from datetime import UTC, datetime

    p = pki(KeyType.EC_P384)
    cert, _ = p.issue_signing(503)
    cid = CertId.for_certificate(cert, p.roots[Purpose.SIGN])
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(JpkiError, match="timezone-aware"):
        build_response(responder=responder(p), answers=[(cid, Good())], now=naive)
    for now in (datetime.now(UTC), NOW - timedelta(days=1)):
        with pytest.raises(JpkiError, match="timezone-aware"):
            build_response(responder=responder(p), answers=[(cid, Revoked(naive, R.SUPERSEDED))], now=now)


def test_a_lookup_answer_other_than_good_revoked_unknown_is_refused_on_either_path():
    """build_response states each CertID's status as RFC 6960 4.2.1 has it (good, revoked,
    unknown); anything else a lookup gives is a JpkiError (respond: internalError), not a
    response built from it."""
    from datetime import UTC, datetime

    p = pki(KeyType.EC_P384)
    cid = CertId.for_certificate(p.issue_signing(505)[0], p.roots[Purpose.SIGN])
    for now in (datetime.now(UTC), NOW - timedelta(days=1)):
        with pytest.raises(JpkiError, match="not Good/Revoked/Unknown"):
            build_response(responder=responder(p), answers=[(cid, "good")], now=now)


def test_produced_at_is_nows_second_when_the_system_clock_is_in_the_next_one():
    """specs/revocation.md 3: producedAt = thisUpdate = now. cryptography's builder stamps
    producedAt from the system clock at signing; a ``now`` less than a second behind it but in
    the second before is answered with ``now``'s second all the same (the builder's response
    is dropped)."""
    import time
    from datetime import UTC, datetime

    p = pki(KeyType.EC_P384)
    cid = CertId.for_certificate(p.issue_signing(506)[0], p.roots[Purpose.SIGN])
    while datetime.now(UTC).microsecond > 300_000:
        time.sleep(0.05)
    now = datetime.now(UTC) - timedelta(milliseconds=600)
    resp = x509ocsp.load_der_ocsp_response(build_response(responder=responder(p), answers=[(cid, Good())], now=now))
    assert resp.produced_at_utc == resp.this_update_utc == now.replace(microsecond=0)


def test_an_error_response_is_never_successful():
    """RFC 6960 4.2.1: a successful OCSPResponse carries responseBytes; error_response has
    none to give."""
    assert _status(error_response(ResponseStatus.TRY_LATER)) == "try_later"
    with pytest.raises(JpkiError, match="needs responseBytes"):
        error_response(ResponseStatus.SUCCESSFUL)


def test_an_rsa_responders_signature_algorithm_has_null_parameters_on_either_path():
    """RFC 4055 2.1: in an AlgorithmIdentifier of sha256WithRSAEncryption the parameters
    MUST be NULL; the response built by asn1crypto (a clock other than the system's) gives
    them as cryptography's builder does."""
    from datetime import UTC, datetime

    p = pki(KeyType.RSA_2048)
    cert, _ = p.issue_signing(504)
    cid = CertId.for_certificate(cert, p.roots[Purpose.SIGN])
    for now in (datetime.now(UTC), NOW - timedelta(days=1)):
        der = build_response(responder=responder(p), answers=[(cid, Good())], now=now)
        basic = asn1ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
        assert basic["signature_algorithm"].dump() == bytes.fromhex("300d06092a864886f70d01010b0500")


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


# ---- invalidityDate: a hold made final -----------------------------------------------------

def test_a_hold_made_final_keeps_its_time_as_the_crl_entrys_invalidity_date(tmp_path):
    """A held certificate revoked for good (a lost phone found, its signing certificate
    revoked; a loss confirmed) was out of the holder's control since the hold: its entry
    carries the hold's time as invalidityDate (RFC 5280 5.3.2, non-critical), which OpenSSL
    reads, and still makes the certificate revoked. A certificate revoked while valid, or
    held, released and then revoked, has none; a hold carries none (it may yet be lifted)."""
    p = pki(KeyType.RSA_2048)
    cert, _ = p.issue_signing(120)
    held_at, revoked_at = NOW - timedelta(days=3), NOW - timedelta(minutes=2)
    state = apply_event({}, RevocationEvent(120, held_at, R.CERTIFICATE_HOLD))
    assert state[120].invalid_since is None
    state = apply_event(state, RevocationEvent(120, revoked_at, R.CESSATION_OF_OPERATION))
    assert state[120] == Revocation(120, revoked_at, R.CESSATION_OF_OPERATION, held_at)
    released = apply_event(apply_event({}, RevocationEvent(121, held_at, R.CERTIFICATE_HOLD)),
                           RevocationEvent(121, held_at + timedelta(hours=1), R.REMOVE_FROM_CRL))
    released = apply_event(released, RevocationEvent(121, revoked_at, R.SUPERSEDED))
    assert released[121].invalid_since is None
    assert apply_event({}, RevocationEvent(122, revoked_at, R.KEY_COMPROMISE))[122].invalid_since is None
    crl = crl_for(p, CHIYODA, [*state.values(), *released.values()])
    entry = crl.get_revoked_certificate_by_serial_number(120)
    ext = entry.extensions.get_extension_for_class(x509.InvalidityDate)
    assert not ext.critical and ext.value.invalidity_date_utc == held_at
    assert entry.revocation_date_utc == revoked_at
    with pytest.raises(x509.ExtensionNotFound):
        crl.get_revoked_certificate_by_serial_number(121).extensions.get_extension_for_class(x509.InvalidityDate)
    (tmp_path / "c.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    text = run("openssl", "crl", "-noout", "-text", "-in", tmp_path / "c.crl").stdout
    assert "Invalidity Date:" in text and held_at.strftime("%b %e %H:%M:%S %Y GMT") in text, text
    assert text.count("Invalidity Date:") == 1, text
    out = verify(tmp_path, p.roots[Purpose.SIGN], cert, crl)
    assert "error 23" in out.stdout + out.stderr, out.stdout + out.stderr
    with pytest.raises(ProfileError, match="a hold carries no invalidity date"):
        Revocation(7, NOW, R.CERTIFICATE_HOLD, held_at)
    with pytest.raises(ProfileError, match="invalid_since must be timezone-aware"):
        Revocation(7, NOW, R.KEY_COMPROMISE, held_at.replace(tzinfo=None))


def test_an_ocsp_answer_carries_the_invalidity_date_as_a_single_extension(tmp_path):
    """OCSP says what the CRL entry says: invalidityDate as a non-critical singleExtension
    (RFC 6960 4.4), which OpenSSL prints; the answer is built by asn1crypto even at the system
    clock (cryptography's builder writes no singleExtensions), and one without an invalidity
    date is unchanged."""
    from datetime import UTC, datetime

    p = pki(KeyType.EC_P384)
    cert, _ = p.issue_signing(230)
    held_at = (NOW - timedelta(days=2)).replace(microsecond=0)
    status = Revoked(NOW - timedelta(hours=1), R.CESSATION_OF_OPERATION, held_at)
    for now in (NOW, datetime.now(UTC)):
        resp = respond(request_der(cert, p.roots[Purpose.SIGN], nonce=b"i" * 16),
                       lookup_table({230: status}), responder(p), now)
        parsed = x509ocsp.load_der_ocsp_response(resp)
        ext = parsed.single_extensions.get_extension_for_class(x509.InvalidityDate)
        assert not ext.critical and ext.value.invalidity_date_utc == held_at
        (tmp_path / "root.pem").write_bytes(pem(p.roots[Purpose.SIGN]))
        (tmp_path / "cert.pem").write_bytes(pem(cert))
        (tmp_path / "resp.der").write_bytes(resp)
        out = run("openssl", "ocsp", "-respin", tmp_path / "resp.der", "-issuer", tmp_path / "root.pem",
                  "-CAfile", tmp_path / "root.pem", "-no_nonce", "-cert", tmp_path / "cert.pem", "-resp_text")
        assert "Response verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
        assert ": revoked" in out.stdout and "Reason: cessationOfOperation" in out.stdout, out.stdout
        assert "Invalidity Date:" in out.stdout and held_at.strftime("%b %e %H:%M:%S %Y GMT") in out.stdout, out.stdout
    plain = x509ocsp.load_der_ocsp_response(respond(request_der(cert, p.roots[Purpose.SIGN]),
                                                    lookup_table({230: Revoked(NOW, R.KEY_COMPROMISE)}),
                                                    responder(p), NOW))
    assert len(plain.single_extensions) == 0
