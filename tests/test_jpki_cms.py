"""CMS detached signatures over an external (SE) signer, OpenSSL cms -verify, and the
relying party's named checks."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import cms_surgery
import pytest
from asn1crypto import cms as asn1cms
from asn1crypto import core as asn1core
from asn1crypto import ocsp as asn1ocsp
from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jpki_fixtures import CHIYODA, HOLDER, NOW, pem, pki

from protocols.certs import subject_key_id
from protocols.jpki import CmsError, KeyType, Purpose
from protocols.jpki.cms import (
    add_revocation_info,
    build_detached_signature,
    ecdsa_raw_to_der,
    verify_detached_signature,
)
from protocols.jpki.crl import Revocation, RevocationReason, build_crl
from protocols.jpki.relying_party import verify_signed_content

KEY_TYPES = list(KeyType)
CONTENT = "申請書 / application form\n".encode() * 50


def se_signer(key, calls: list | None = None):
    """What the SE does: RSA PKCS#1 v1.5 SHA-256, or ECDSA P-384 returning raw r||s."""
    def sign(data: bytes) -> bytes:
        if calls is not None:
            calls.append(data)
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA384())))
        return ecdsa_raw_to_der(r.to_bytes(48, "big") + s.to_bytes(48, "big"))
    return sign


def sign_with(key_type, purpose=Purpose.SIGN, serial=500, content=CONTENT):
    p = pki(key_type)
    cert, key = (p.issue_signing if purpose is Purpose.SIGN else p.issue_auth)(serial)
    calls: list = []
    der = build_detached_signature(content=content, certificate=cert,
                                   sign=se_signer(key, calls), signing_time=NOW)
    assert len(calls) == 1 and calls[0][0] == 0x31  # the SE signs the SET OF attributes
    return p, cert, der


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_cms_roundtrip_and_openssl(tmp_path, key_type):
    p, cert, der = sign_with(key_type)
    result = verify_detached_signature(der, CONTENT)
    assert result.signer_certificate == cert
    assert result.signing_time == NOW
    assert result.digest_algorithm == ("sha256" if key_type is KeyType.RSA_2048 else "sha384")
    (tmp_path / "sig.der").write_bytes(der)
    (tmp_path / "data.bin").write_bytes(CONTENT)
    (tmp_path / "root.pem").write_bytes(pem(p.roots[Purpose.SIGN]))
    out = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                          tmp_path / "sig.der", "-content", tmp_path / "data.bin", "-CAfile",
                          tmp_path / "root.pem", "-out", "/dev/null"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "Verification successful" in out.stderr, out.stderr
    (tmp_path / "data.bin").write_bytes(CONTENT + b"x")
    out = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                          tmp_path / "sig.der", "-content", tmp_path / "data.bin", "-CAfile",
                          tmp_path / "root.pem", "-out", "/dev/null"],
                         capture_output=True, text=True)
    assert out.returncode != 0


def test_cms_rejects_tampering():
    _, _, der = sign_with(KeyType.RSA_2048, serial=501)
    with pytest.raises(CmsError, match="messageDigest"):
        verify_detached_signature(der, CONTENT + b"!")
    bad = bytearray(der)
    bad[-5] ^= 1  # inside the signature value
    with pytest.raises(CmsError):
        verify_detached_signature(bytes(bad), CONTENT)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_content_hashed_elsewhere_is_checked_by_its_digest(key_type):
    """A PDF's signed byte ranges are hashed once by the PDF reader: the digest stands for
    the content, under the hash the signature names."""
    from cryptography.hazmat.primitives import hashes

    _, cert, der = sign_with(key_type, serial=502)
    asked = []

    def digest_of(name: str) -> bytes:
        asked.append(name)
        h = hashes.Hash({"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}[name])
        h.update(CONTENT)
        return h.finalize()

    assert verify_detached_signature(der, digest_of).signer_certificate == cert
    assert asked == ["sha256" if key_type is KeyType.RSA_2048 else "sha384"]
    with pytest.raises(CmsError, match="messageDigest does not match"):
        verify_detached_signature(der, lambda name: bytes(48))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_cms_verifier(data):
    with pytest.raises(CmsError):
        verify_detached_signature(data, CONTENT)


def names(result):
    return {c.name: c.passed for c in result.checks}


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_relying_party_accepts_signing_certificate(key_type):
    p, cert, der = sign_with(key_type, serial=510)
    roots = [pki(k).roots[Purpose.SIGN] for k in KEY_TYPES]  # several roots, same name
    result = verify_signed_content(der, CONTENT, roots=roots, required=Purpose.SIGN, at=NOW)
    assert result.valid, result.to_dict()
    d = result.to_dict()
    assert d["valid"] and d["basic_four"]["name"] == HOLDER.name
    assert {c["name"] for c in d["checks"]} == {"signature", "chain", "policy", "key_usage",
                                                "validity"}


def test_relying_party_refuses_auth_where_signing_required():
    p, _, der = sign_with(KeyType.EC_P384, Purpose.AUTH, serial=511)
    result = verify_signed_content(der, CONTENT, roots=[p.roots[Purpose.AUTH]],
                                   required=Purpose.SIGN, at=NOW)
    assert not result.valid
    assert names(result)["policy"] is False and names(result)["chain"] is True
    ok = verify_signed_content(der, CONTENT, roots=[p.roots[Purpose.AUTH]],
                               required=Purpose.AUTH, at=NOW)
    assert ok.valid, ok.to_dict()


def test_relying_party_wrong_root_expired_and_revoked():
    p, cert, der = sign_with(KeyType.RSA_2048, serial=512)
    other = pki(KeyType.EC_P384).roots[Purpose.SIGN]
    r = verify_signed_content(der, CONTENT, roots=[other], required=Purpose.SIGN, at=NOW)
    assert names(r)["chain"] is False and not r.valid
    late = cert.not_valid_after_utc + timedelta(seconds=1)
    r = verify_signed_content(der, CONTENT, roots=[p.roots[Purpose.SIGN]],
                              required=Purpose.SIGN, at=late)
    assert names(r)["validity"] is False
    crl = build_crl(profile=p.profile, purpose=Purpose.SIGN, issuer=p.roots[Purpose.SIGN],
                    issuer_key=p.root_keys[Purpose.SIGN], partition=CHIYODA,
                    revocations=[Revocation(512, NOW, RevocationReason.CERTIFICATE_HOLD)],
                    crl_number=9, this_update=NOW - timedelta(hours=1),
                    next_update=NOW + timedelta(hours=5))
    r = verify_signed_content(der, CONTENT, roots=[p.roots[Purpose.SIGN]],
                              required=Purpose.SIGN, at=NOW, crl=crl)
    assert names(r)["revocation"] is False and "certificateHold" in r.checks[-1].reason
    r = verify_signed_content(b"junk", CONTENT, roots=[p.roots[Purpose.SIGN]],
                              required=Purpose.SIGN, at=NOW)
    assert r.to_dict() == {"valid": False, "checks": [r.checks[0].to_dict()], "purpose": None}


def test_ecdsa_raw_to_der_rejects_odd():
    with pytest.raises(CmsError):
        ecdsa_raw_to_der(b"\x01" * 95)


def test_pem_of_signature_is_parseable_by_openssl(tmp_path):
    _, _, der = sign_with(KeyType.EC_P384, serial=513)
    (tmp_path / "s.der").write_bytes(der)
    out = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in",
                          tmp_path / "s.der"], capture_output=True, text=True)
    assert out.returncode == 0 and "ecdsa-with-SHA384" in out.stdout


# -- what the signature does not cover, and RFC 5652 still fixes --------------------------------


@pytest.fixture(scope="module")
def signed():
    """One signature for the refusals below, as (certificate, key, DER). Made when a test
    asks, not at import: asn1crypto keeps the names of its OID maps as they are at the first
    lookup, which must not come before the other modules (asn1crypto.tsp) add theirs."""
    cert, key = pki(KeyType.EC_P384).issue_signing(520)
    return cert, key, build_detached_signature(content=CONTENT, certificate=cert, sign=se_signer(key),
                                               signing_time=NOW)


def _openssl_verifies_signature(der: bytes, tmp_path) -> None:  # noqa: ANN001
    """``openssl cms -verify`` takes the signature over CONTENT (its signature, not the chain)."""
    (tmp_path / "sig.der").write_bytes(der)
    (tmp_path / "data.bin").write_bytes(CONTENT)
    out = subprocess.run(["openssl", "cms", "-verify", "-binary", "-noverify", "-inform", "DER", "-in",
                          tmp_path / "sig.der", "-content", tmp_path / "data.bin", "-out", "/dev/null"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _signer_cert(sd):
    return x509.load_der_x509_certificate(sd["certificates"][0].chosen.dump())


def _ski_sid(sd):
    return asn1cms.SignerIdentifier(name="subject_key_identifier", value=subject_key_id(_signer_cert(sd)))


def _signer_info(field, value):
    return lambda sd, si: si.__setitem__(field, value)


def _signed_data(field, value):
    return lambda sd, si: sd.__setitem__(field, value)


def _impostor(cert):
    """A certificate with the issuer name and serial of ``cert``, another key and issuer key."""
    key = ec.generate_private_key(ec.SECP384R1())
    return (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
            .public_key(key.public_key()).serial_number(cert.serial_number)
            .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc)
            .sign(key, hashes.SHA384()))


def _with_impostor(sd, si):
    impostor = _impostor(_signer_cert(sd))
    sd["certificates"] = [*sd["certificates"], asn1x509.Certificate.load(impostor.public_bytes(Encoding.DER))]


def _ski_sid_version(version):
    def change(sd, si):
        si["sid"] = _ski_sid(sd)
        si["version"] = version
    return change


@pytest.mark.parametrize(("change", "resign", "said"), [
    # RFC 5652 5.3: version 1 with issuerAndSerialNumber, 3 with subjectKeyIdentifier
    (_signer_info("version", "v3"), False, "SignerInfo version is v3, but its sid is issuer_and_serial_number: version must "
                                   "be v1 (RFC 5652 5.3)"),
    (_ski_sid_version("v1"), False, "SignerInfo version is v1, but its sid is subject_key_identifier: version must "
                                    "be v3"),
    # 5.1: id-data, SignerInfos of version 1, X.509 certificates only: version 1
    (_signed_data("version", "v3"), False, "SignedData version is v3, but its eContentType is "
                                                            "id-data, its SignerInfos version 1"),
    (_ski_sid_version("v3"), False, "SignedData version is v1, but a SignerInfo is version 3: version must be v3"),
    # 5.1, 5.3: the SignerInfo's digestAlgorithm is one of the SignedData's
    (_signed_data("digest_algorithms", [{"algorithm": "sha512"}]), False,
     "SignerInfo digestAlgorithm sha384 is not among the SignedData's digestAlgorithms (sha512)"),
    (_signed_data("digest_algorithms", []), False, "digestAlgorithms (none)"),
    # RFC 5758 3.2: ECDSA's parameters are absent
    (_signer_info("signature_algorithm", {"algorithm": "sha384_ecdsa", "parameters": asn1core.Null()}), False,
     "signature algorithm sha384_ecdsa has parameters; ECDSA's are absent"),
    # the sid names one certificate, or the signer is a guess
    (_with_impostor, False, "2 different certificates of the SignedData's certificates "
                                                         "match the SignerInfo's sid"),
    (_signed_data("certificates", []), False,
     "no certificate of the SignedData's certificates matches the SignerInfo's sid (issuer "),
    (_signer_info("sid", asn1cms.SignerIdentifier.load(b"\x30\x08\x30\x03\x02\x01\x05\x02\x01\x07")), False, "the SignerInfo's sid does not decode"),
    # 5.3: signedAttrs MUST be DER, what 5.4 signs: a SET OF in the order of its encodings
    (lambda sd, si: cms_surgery.unsorted_attributes(si), True, "signed attributes are not in DER order"),
    # 11.3: signing-time has one value
    (lambda sd, si: cms_surgery.replaced_attribute(si, asn1cms.CMSAttribute({"type": "signing_time", "values": [
        asn1cms.Time(name="utc_time", value=NOW), asn1cms.Time(name="utc_time", value=NOW - timedelta(days=400))]})),
     True, "signed attribute signing_time has 2 values, not one (RFC 5652 11.3)"),
    # 11.4: a countersignature is unsigned; 11.1-11.3: content-type, message-digest, signing-time are signed
    (lambda sd, si: cms_surgery.with_attribute(si, asn1cms.CMSAttribute({"type": "counter_signature", "values": [
        asn1cms.SignerInfo.load(si.dump())]})), True, "counter_signature is a signed attribute: it must be unsigned"),
    (lambda sd, si: cms_surgery.with_attribute(si, asn1cms.CMSAttribute({"type": "content_type", "values": [
        "signed_data"]}), signed=False), False, "content_type is an unsigned attribute: it must be signed (RFC 5652 "
                                                "11.1)"),
    (lambda sd, si: cms_surgery.with_attribute(si, asn1cms.CMSAttribute({"type": "signing_time", "values": [
        asn1cms.Time(name="utc_time", value=NOW)]}), signed=False), False, "signing_time is an unsigned attribute"),
])
def test_what_the_signature_does_not_cover_is_still_checked_by_name(signed, change, resign, said):
    """Each of these verified before (the signature over the signed attributes still holds:
    ``resign`` makes it again over the changed ones); each is refused, naming the rule."""
    _cert, key, good = signed
    der = cms_surgery.altered(good, change, sign=se_signer(key) if resign else None)
    with pytest.raises(CmsError) as info:
        verify_detached_signature(der, CONTENT)
    assert said in str(info.value)


def test_a_subject_key_identifier_sid_with_versions_3_verifies(signed, tmp_path):
    """The other sid form (``openssl cms -sign -keyid`` makes it): SignerInfo and SignedData
    version 3; OpenSSL verifies the same bytes."""
    cert, _key, good = signed
    der = cms_surgery.altered(good, lambda sd, si: (si.__setitem__("sid", _ski_sid(sd)), si.__setitem__("version", "v3"),
                                                    sd.__setitem__("version", "v3")))
    assert verify_detached_signature(der, CONTENT).signer_certificate == cert
    _openssl_verifies_signature(der, tmp_path)


def test_validation_data_added_to_a_signature_makes_it_version_5_and_it_still_verifies(signed, tmp_path):
    """An OCSP response goes in the crls field as revocation information of type other
    (RFC 5940): RFC 5652 5.1 then makes the SignedData version 5, which the verifier holds
    it to; OpenSSL reads and verifies the result."""
    answer = asn1ocsp.OCSPResponse({"response_status": "try_later"}).dump()
    der = add_revocation_info(signed[2], ocsp_responses=[answer])
    assert asn1cms.ContentInfo.load(der)["content"]["version"].native == "v5"
    assert verify_detached_signature(der, CONTENT).ocsp_responses == (answer,)
    _openssl_verifies_signature(der, tmp_path)
    with pytest.raises(CmsError, match="SignedData version is v1, but it carries a certificate or revocation "
                                       "information of type other: version must be v5"):
        verify_detached_signature(cms_surgery.altered(der, _signed_data("version", "v1")), CONTENT)


def test_a_time_stamp_attribute_resolves_after_a_cms_name_lookup_in_a_fresh_process():
    """asn1crypto fixes each OID class's names at its first lookup by name, and
    asn1crypto.tsp adds signing_certificate_v2 only when imported: a process whose CMS code
    looked a name up before protocols.tsp was imported could build no time-stamp token."""
    import subprocess
    import sys

    code = ("import protocols.jpki.cms\n"
            "from asn1crypto import cms\n"
            "cms.CMSAttributeType('content_type')\n"  # as our CMS builder does first
            "import protocols.tsp\n"
            "print(cms.CMSAttributeType('signing_certificate_v2').dotted)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "1.2.840.113549.1.9.16.2.47"
