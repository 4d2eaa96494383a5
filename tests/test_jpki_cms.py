"""CMS detached signatures over an external (SE) signer, OpenSSL cms -verify, and the
relying party's named checks."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jpki_fixtures import CHIYODA, HOLDER, NOW, pem, pki

from protocols.jpki import CmsError, KeyType, Purpose
from protocols.jpki.cms import build_detached_signature, ecdsa_raw_to_der, verify_detached_signature
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
