"""RFC 3161 time-stamping, pure (protocols.tsp): our tokens read and verified by OpenSSL
(`openssl ts -verify`), OpenSSL's TSA tokens verified by us, every refusal typed and in-band,
every forged or mismatched token refused by name, hostile bytes never a crash."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import cms_surgery
import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import tsp
from protocols.tsp.certificates import build_tsa_root, build_tsa_unit

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
POLICY = "1.2.3.4.5"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _signer(key):
    if isinstance(key, rsa.RSAPrivateKey):
        return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    h = {"secp384r1": hashes.SHA384()}.get(key.curve.name, hashes.SHA256())
    return lambda data: key.sign(data, ec.ECDSA(h))


def _hierarchy(unit_key, *, unit_from=NOW - dt.timedelta(hours=1), unit_until=NOW + dt.timedelta(days=30)):
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = build_tsa_root(name=_name("Test TSA root"), key=root_key, serial=10**20,
                          not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=3650))
    unit = build_tsa_unit(name=_name("Test TSA unit"), public_key=unit_key.public_key(), issuer=root,
                          issuer_key=root_key, serial=10**21, not_before=unit_from, not_after=unit_until)
    return root, root_key, tsp.TsaUnit(certificate=unit, sign=_signer(unit_key), policy=POLICY, chain=(root,))


@pytest.fixture(scope="module")
def tsa():
    root, root_key, unit = _hierarchy(ec.generate_private_key(ec.SECP256R1()))
    return {"root": root, "root_key": root_key, "unit": unit, "token": _token(unit)}


def _token(unit, data=b"contract", *, nonce=7, cert_req=True, at=NOW):
    request = tsp.parse_request(tsp.build_request(tsp.digest("sha256", data), nonce=nonce, cert_req=cert_req))
    return tsp.token_of_response(tsp.grant(request, unit=unit, serial=42, gen_time=at))


def test_a_granted_token_verifies_and_says_what_it_stamped(tsa):
    stamp = tsp.verify_token(_token(tsa["unit"]), data=b"contract", roots=[tsa["root"]], nonce=7)
    assert stamp.gen_time == NOW and stamp.serial == 42 and stamp.policy == POLICY
    assert stamp.accuracy == dt.timedelta(seconds=1) and stamp.latest == NOW + dt.timedelta(seconds=1)
    assert stamp.tsa_certificate == tsa["unit"].certificate and stamp.root == tsa["root"]
    assert stamp.to_dict()["tsa"] == "CN=Test TSA unit,C=JP"
    # the same, asked by digest
    tsp.verify_token(_token(tsa["unit"]), hash_algorithm="sha256", message_digest=tsp.digest("sha256", b"contract"),
                     roots=[tsa["root"]])


@needs_openssl
@pytest.mark.parametrize("unit_key", ["p256", "p384", "rsa2048"])
def test_openssl_asks_and_verifies_our_tokens(tmp_path, unit_key):
    key = (rsa.generate_private_key(65537, 2048) if unit_key == "rsa2048"
           else ec.generate_private_key(ec.SECP384R1() if unit_key == "p384" else ec.SECP256R1()))
    root, _root_key, unit = _hierarchy(key)
    (tmp_path / "data").write_bytes(b"a contract signed in Osaka")
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    subprocess.run(["openssl", "ts", "-query", "-data", str(tmp_path / "data"), "-sha384", "-cert",
                    "-out", str(tmp_path / "q.tsq")], check=True, capture_output=True)
    request = tsp.parse_request((tmp_path / "q.tsq").read_bytes())
    assert request.hash_algorithm == "sha384" and request.cert_req and request.nonce is not None
    (tmp_path / "r.tsr").write_bytes(tsp.grant(request, unit=unit, serial=2**70 + 1, gen_time=NOW))
    text = subprocess.run(["openssl", "ts", "-reply", "-in", str(tmp_path / "r.tsr"), "-text"],
                          check=True, capture_output=True, text=True).stdout
    assert "Status: Granted." in text and f"Policy OID: {POLICY}" in text and "Hash Algorithm: sha384" in text
    verified = subprocess.run(["openssl", "ts", "-verify", "-data", str(tmp_path / "data"), "-in",
                               str(tmp_path / "r.tsr"), "-CAfile", str(tmp_path / "root.pem")],
                              capture_output=True, text=True)
    assert verified.returncode == 0 and "Verification: OK" in verified.stdout, verified.stderr
    (tmp_path / "other").write_bytes(b"another contract")
    refused = subprocess.run(["openssl", "ts", "-verify", "-data", str(tmp_path / "other"), "-in",
                              str(tmp_path / "r.tsr"), "-CAfile", str(tmp_path / "root.pem")],
                             capture_output=True, text=True)
    assert refused.returncode != 0


@needs_openssl
def test_we_verify_a_token_of_openssls_tsa(tmp_path, tsa):
    key = ec.generate_private_key(ec.SECP256R1())
    root, _root_key, unit = _hierarchy(key)
    (tmp_path / "unit.pem").write_bytes(unit.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "unit.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (tmp_path / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "serial").write_text("0A\n")
    (tmp_path / "tsa.cnf").write_text(f"""[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {tmp_path}
serial = $dir/serial
signer_cert = $dir/unit.pem
certs = $dir/root.pem
signer_key = $dir/unit.key
signer_digest = sha256
default_policy = {POLICY}
digests = sha256, sha384
accuracy = secs:1, millisecs:500
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""")
    (tmp_path / "data").write_bytes(b"stamp me")
    request = tsp.build_request(tsp.digest("sha256", b"stamp me"), nonce=99)
    (tmp_path / "q.tsq").write_bytes(request)
    subprocess.run(["openssl", "ts", "-reply", "-config", str(tmp_path / "tsa.cnf"), "-queryfile",
                    str(tmp_path / "q.tsq"), "-out", str(tmp_path / "r.tsr")], check=True, capture_output=True)
    token = tsp.token_of_response((tmp_path / "r.tsr").read_bytes())
    stamp = tsp.verify_token(token, data=b"stamp me", roots=[root], nonce=99)
    assert stamp.serial == 0x0B and stamp.accuracy  # the serial file holds the last one given == dt.timedelta(seconds=1, milliseconds=500)
    with pytest.raises(tsp.TokenInvalid, match="does not chain"):
        tsp.verify_token(token, data=b"stamp me", roots=[tsa["root"]])


def _rejected(der: bytes, failure: str) -> None:
    with pytest.raises(tsp.ResponseRefused) as info:
        tsp.token_of_response(der)
    assert info.value.status == "rejection" and info.value.failures == (failure,)


@pytest.mark.parametrize(("request_der", "failure", "said"), [
    (b"\x30\x03\x02\x01", "badDataFormat", "not a DER TimeStampReq"),
    (asn1_tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "md5"},
                                                                  "hashed_message": bytes(16)}}).dump(),
     "badAlg", "md5"),
    (asn1_tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                                                  "hashed_message": bytes(20)}}).dump(),
     "badDataFormat", "a sha256 imprint is 32 bytes, not 20"),
    (asn1_tsp.TimeStampReq({"version": 2, "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                                               "hashed_message": bytes(32)}}).dump(),
     "badRequest", "version"),
    (asn1_tsp.TimeStampReq({"version": "v1", "nonce": -5, "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes(32)}}).dump(), "badRequest", "nonce"),
    (asn1_tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                                                  "hashed_message": bytes(32)},
                            "extensions": [{"extn_id": "1.2.3", "extn_value": b"\x05\x00"}]}).dump(),
     "unacceptedExtension", "no request extensions"),
])
def test_a_bad_request_is_refused_with_its_failure_bit(tsa, request_der, failure, said):
    with pytest.raises(tsp.RequestRefused, match=said) as info:
        tsp.parse_request(request_der)
    assert info.value.failure == failure
    _rejected(tsp.reject(info.value.failure, str(info.value)), failure)


def test_a_request_for_another_policy_is_refused(tsa):
    request = tsp.parse_request(tsp.build_request(bytes(32), policy="1.9.9"))
    with pytest.raises(tsp.RequestRefused) as info:
        tsp.grant(request, unit=tsa["unit"], serial=1, gen_time=NOW)
    assert info.value.failure == "unacceptedPolicy"
    assert request.policy == "1.9.9"
    assert tsp.parse_request(tsp.build_request(bytes(32), policy=POLICY)).policy == POLICY


def test_a_mismatched_token_is_refused_by_name(tsa):
    token = _token(tsa["unit"])
    root = tsa["root"]
    with pytest.raises(tsp.TokenInvalid, match="message imprint"):
        tsp.verify_token(token, data=b"another", roots=[root])
    with pytest.raises(tsp.TokenInvalid, match="nonce"):
        tsp.verify_token(token, data=b"contract", roots=[root], nonce=8)
    with pytest.raises(tsp.TokenInvalid, match="no trusted time-stamping root"):
        tsp.verify_token(token, data=b"contract", roots=[])
    other_root, _k, _u = _hierarchy(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(tsp.TokenInvalid, match="does not chain"):
        tsp.verify_token(token, data=b"contract", roots=[other_root])
    # without certReq the token carries no certificate: found only when given
    bare = _token(tsa["unit"], cert_req=False)
    with pytest.raises(tsp.TokenInvalid, match="neither in the token nor given"):
        tsp.verify_token(bare, data=b"contract", roots=[root])
    tsp.verify_token(bare, data=b"contract", roots=[root], certificates=[tsa["unit"].certificate])
    assert tsp.check_imprint(token, data=b"contract", nonce=7) == NOW
    with pytest.raises(tsp.TokenInvalid, match="message imprint"):
        tsp.check_imprint(token, data=b"x")


def test_a_forged_token_is_refused(tsa):
    # signed by another key under the genuine certificate
    forged = tsp.TsaUnit(certificate=tsa["unit"].certificate, sign=_signer(ec.generate_private_key(ec.SECP256R1())),
                         policy=POLICY)
    with pytest.raises(tsp.TokenInvalid, match="signature does not verify"):
        tsp.verify_token(_token(forged), data=b"contract", roots=[tsa["root"]])
    # a certificate without the critical id-kp-timeStamping (a signing certificate, say)
    key = ec.generate_private_key(ec.SECP256R1())
    plain = (x509.CertificateBuilder().subject_name(_name("not a TSA")).issuer_name(tsa["root"].subject)
             .public_key(key.public_key()).serial_number(5).not_valid_before(NOW - dt.timedelta(days=1))
             .not_valid_after(NOW + dt.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=False)
             .sign(tsa["root_key"], hashes.SHA384()))
    with pytest.raises(tsp.TokenInvalid, match="id-kp-timeStamping alone and critical"):
        tsp.verify_token(_token(tsp.TsaUnit(plain, _signer(key), POLICY)), data=b"contract", roots=[tsa["root"]])
    # a genTime outside the unit certificate's validity
    with pytest.raises(tsp.TokenInvalid, match="not valid at the token's genTime"):
        tsp.verify_token(_token(tsa["unit"], at=NOW + dt.timedelta(days=60)), data=b"contract", roots=[tsa["root"]])
    # the eContent changed after signing
    token = bytearray(_token(tsa["unit"]))
    at = bytes(token).find(tsp.digest("sha256", b"contract"))
    token[at] ^= 1
    with pytest.raises(tsp.TokenInvalid, match="messageDigest does not match"):
        tsp.verify_token(bytes(token), data=b"contract", roots=[tsa["root"]])


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_requests_are_refusals(data):
    try:
        tsp.parse_request(data)
    except tsp.RequestRefused as exc:
        assert exc.failure in tsp.FAILURES


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_hostile_tokens_and_responses_are_typed_errors(tsa, data):
    token = tsa["token"]  # one token: ECDSA's lengths vary, and the draws must not
    cut = data.draw(st.integers(0, len(token)))
    flip = data.draw(st.integers(0, len(token) - 1))
    mutated = bytearray(token[:cut] + data.draw(st.binary(max_size=20)) + token[cut:])
    mutated[min(flip, len(mutated) - 1)] ^= data.draw(st.integers(1, 255))
    for candidate in (bytes(mutated), data.draw(st.binary(max_size=200))):
        try:
            tsp.verify_token(candidate, data=b"contract", roots=[tsa["root"]])
        except tsp.TokenInvalid:
            pass
        try:
            tsp.token_of_response(candidate)
        except tsp.TspError:
            pass


_IMPRINT = {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes(32)}
_GOOD_REQUEST = asn1_tsp.TimeStampReq({"version": "v1", "message_imprint": _IMPRINT}).dump()


@pytest.mark.parametrize(("request_der", "said"), [
    (b"\x30\x03\x02\x01\x01", "its field messageImprint is missing (inside TimeStampReq)"),
    (b"\x02\x01\x01", "TimeStampReq: a constructed encoding expected, a primitive one found"),
    (_GOOD_REQUEST[:-3], "truncated: a length says"),
    (_GOOD_REQUEST + b"\x00", "1 bytes follow the message's end"),
    (_GOOD_REQUEST.replace(b"\x06\x09", b"\x07\x09", 1),
     "OBJECT IDENTIFIER: tag 6 expected, tag 7 found (inside AlgorithmIdentifier)"),
    (b"", "no bytes"),
])
def test_a_refusal_says_in_rfc_3161_words_what_was_wrong(request_der, said):
    """What the TSA sends its client names the request's ASN.1 types and fields (RFC 3161
    2.4.1), never the decoder's classes (asn1crypto.tsp.TimeStampReq) or exceptions."""
    with pytest.raises(tsp.RequestRefused) as info:
        tsp.parse_request(request_der)
    text = str(info.value)
    assert text.startswith("not a DER TimeStampReq (RFC 3161 2.4.1): ") and said in text, text
    assert "asn1crypto" not in text and "Error" not in text and "\n" not in text


def test_the_tsa_over_http_sends_no_decoder_class_name(home):
    from fastapi.testclient import TestClient

    from mcred.context import Context
    from mcred.service import create_app

    with TestClient(create_app(Context.open(home), job_workers=1)) as client:
        r = client.post("/tsa", content=b"\x30\x03\x02\x01\x01",
                        headers={"Content-Type": tsp.QUERY_MEDIA_TYPE})
    assert r.status_code == 200 and r.headers["content-type"] == tsp.REPLY_MEDIA_TYPE
    with pytest.raises(tsp.ResponseRefused) as info:
        tsp.token_of_response(r.content)
    assert info.value.failures == ("badDataFormat",)
    assert "not a DER TimeStampReq (RFC 3161 2.4.1): its field messageImprint is missing" in str(info.value)
    assert b"asn1crypto" not in r.content


def _signed_data(field, value):
    return lambda sd, si: sd.__setitem__(field, value)


def _tsa_impostor(unit):
    """Another key under the TSA unit's issuer name and serial."""
    cert, key = unit.certificate, ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer).public_key(key.public_key())
            .serial_number(cert.serial_number).not_valid_before(cert.not_valid_before_utc)
            .not_valid_after(cert.not_valid_after_utc).sign(key, hashes.SHA256()))


def _name_only_certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder().subject_name(_name("someone else")).issuer_name(_name("someone else"))
            .public_key(key.public_key()).serial_number(77).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=1)).sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize(("change", "resign", "said"), [
    # RFC 5652 5.1: eContentType id-ct-TSTInfo is not id-data: version 3
    (_signed_data("version", "v1"), False, "SignedData version is v1, but its eContentType is not id-data: version "
                                           "must be v3 (RFC 5652 5.1)"),
    # 5.3: issuerAndSerialNumber: version 1
    (lambda sd, si: si.__setitem__("version", "v3"), False, "SignerInfo version is v3, but its sid is "
                                                            "issuer_and_serial_number: version must be v1"),
    # 5.1, 5.3: the SignerInfo's digest algorithm among the SignedData's
    (_signed_data("digest_algorithms", [{"algorithm": "sha512"}]), False,
     "SignerInfo digestAlgorithm sha256 is not among the SignedData's digestAlgorithms (sha512)"),
    # 5.3, 5.4: the signed attributes in DER, which is what is signed
    (lambda sd, si: cms_surgery.unsorted_attributes(si), True, "signed attributes are not in DER order"),
    # 11.2: message-digest is signed only
    (lambda sd, si: cms_surgery.with_attribute(si, asn1_cms.CMSAttribute({"type": "message_digest", "values": [
        bytes(32)]}), signed=False), False, "message_digest is an unsigned attribute: it must be signed"),
    # 11.1: content-type is the eContentType
    (lambda sd, si: cms_surgery.replaced_attribute(si, asn1_cms.CMSAttribute({"type": "content_type", "values": [
        "data"]})), True, "signed content-type attribute is data, not the eContentType tst_info (RFC 5652 11.1)"),
    # the token carries certificates, and none is the one its sid names
    (_signed_data("certificates", [asn1_x509.Certificate.load(_name_only_certificate())]), False,
     "no certificate of the token's certificates or those given matches the SignerInfo's sid (issuer "),
])
def test_a_token_whose_unsigned_structure_breaks_rfc_5652_is_refused_by_name(tsa, change, resign, said):
    """Each verified before: the signature over the signed attributes still holds (made
    again over the changed ones with ``resign``)."""
    token = cms_surgery.altered(tsa["token"], change, sign=tsa["unit"].sign if resign else None)
    with pytest.raises(tsp.TokenInvalid) as info:
        tsp.verify_token(token, data=b"contract", roots=[tsa["root"]])
    assert said in str(info.value)


def test_a_sid_that_names_two_certificates_is_refused(tsa):
    """A certificate given beside the token's, with the TSA's issuer and serial and another
    key: which one signed would be a guess."""
    with pytest.raises(tsp.TokenInvalid, match="2 different certificates of the token's certificates or those given "
                                               "match the SignerInfo's sid"):
        tsp.verify_token(tsa["token"], data=b"contract", roots=[tsa["root"]],
                         certificates=[_tsa_impostor(tsa["unit"])])
    # the TSA's own certificate given again is the same certificate, not a second one
    tsp.verify_token(tsa["token"], data=b"contract", roots=[tsa["root"]], certificates=[tsa["unit"].certificate])


def test_a_tsa_certificate_with_a_critical_extension_not_processed_is_refused(tsa):
    """RFC 5280 4.2: a certificate marking critical an extension the verifier does not
    process is rejected. A TSA unit certificate of the trusted root, with the critical
    id-kp-timeStamping RFC 3161 asks for, and a critical nameConstraints beside it (which this
    verifier does not process) no longer vouches for a token; before, the extension was
    ignored and the token verified."""
    key = ec.generate_private_key(ec.SECP256R1())
    constrained = (x509.CertificateBuilder().subject_name(_name("constrained unit")).issuer_name(tsa["root"].subject)
                   .public_key(key.public_key()).serial_number(6).not_valid_before(NOW - dt.timedelta(days=1))
                   .not_valid_after(NOW + dt.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
                   .add_extension(x509.NameConstraints([x509.DNSName("example.jp")], None), critical=True)
                   .sign(tsa["root_key"], hashes.SHA384()))
    with pytest.raises(tsp.TokenInvalid, match=r"critical extension 2\.5\.29\.30 \(nameConstraints\), which is not "
                                               "processed here"):
        tsp.verify_token(_token(tsp.TsaUnit(constrained, _signer(key), POLICY)), data=b"contract",
                         roots=[tsa["root"]])
