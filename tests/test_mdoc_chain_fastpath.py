"""The ECDSA fast path of protocols.mdoc.chain refuses what verify_directly_issued_by refuses:
a DS certificate naming another issuer, or signed by another key, fails issuer_certificate_chain."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from protocols import cose, mdoc
from protocols.mdoc import chain
from protocols.mdoc import verify as mdoc_verify
from protocols.mdoc.verify import ISSUER_CERTIFICATE_CHAIN

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DOC_TYPE = "org.iso.18013.5.1.mDL"
NS = "org.iso.18013.5.1"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _anchor(key, cn="test iaca", hash_alg=None) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hash_alg or hashes.SHA256()))


def _ds(ds_key, issuer_name: x509.Name, signing_key, hash_alg=None) -> bytes:
    cert = (x509.CertificateBuilder().subject_name(_name("test ds")).issuer_name(issuer_name)
            .public_key(ds_key.public_key()).serial_number(2)
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.ExtendedKeyUsage([mdoc.EKU_MDL_DS]), critical=True)
            .sign(signing_key, hash_alg or hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def keys():
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def _chain_check(ds_key, ds_der: bytes, anchor: x509.Certificate):
    device_key = ec.generate_private_key(ec.SECP256R1())
    issued = mdoc.build_issuer_signed({NS: {"family_name": "Yamada"}}, DOC_TYPE, device_key.public_key(),
                                      cose.key_signer(ds_key), [ds_der], NOW - dt.timedelta(hours=1),
                                      NOW + dt.timedelta(days=30))
    e_key = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    st = mdoc.SessionTranscript.build(mdoc.DeviceEngagement.build(e_key).encode(), e_key, None)
    doc = mdoc.build_document(issued, st, signer=cose.key_signer(device_key))
    response = mdoc.DeviceResponse((doc,)).encode()
    result = mdoc.verify_device_response(response, trust_anchors=[anchor], session_transcript=st, now=NOW)
    return next(c for c in result.checks if c.name == ISSUER_CERTIFICATE_CHAIN), result


@pytest.mark.parametrize("hash_alg", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_good_chain_passes_with_each_ecdsa_hash(keys, hash_alg):
    iaca_key, ds_key, _ = keys
    anchor = _anchor(iaca_key, hash_alg=hash_alg)
    ds_der = _ds(ds_key, anchor.subject, iaca_key, hash_alg)
    cert = x509.load_der_x509_certificate(ds_der)
    assert chain._issued_by_fast(cert, ds_der, anchor, anchor.public_bytes(Encoding.DER))
    assert chain._tbs_and_alg_ids(ds_der)[0] == cert.tbs_certificate_bytes
    check, result = _chain_check(ds_key, ds_der, anchor)
    assert check.passed and result.valid


def test_issuer_name_other_than_anchor_subject_is_refused(keys):
    iaca_key, ds_key, _ = keys
    anchor = _anchor(iaca_key)
    ds_der = _ds(ds_key, _name("some other iaca"), iaca_key)  # right key, wrong name
    with pytest.raises(chain.ChainError, match="no trust anchor issued"):
        chain.verify_chain([ds_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    check, result = _chain_check(ds_key, ds_der, anchor)
    assert not check.passed and not result.valid


def test_signature_by_another_key_is_refused(keys):
    iaca_key, ds_key, other_key = keys
    anchor = _anchor(iaca_key)
    ds_der = _ds(ds_key, anchor.subject, other_key)  # right name, wrong key
    with pytest.raises(chain.ChainError, match="no trust anchor issued"):
        chain.verify_chain([ds_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    check, result = _chain_check(ds_key, ds_der, anchor)
    assert not check.passed and not result.valid


def test_a_wrong_anchor_does_not_poison_the_right_one(keys):
    iaca_key, ds_key, other_key = keys
    anchor, impostor = _anchor(iaca_key), _anchor(other_key)  # same subject name, other key
    ds_der = _ds(ds_key, anchor.subject, iaca_key)
    assert chain.verify_chain([ds_der], [impostor, anchor], NOW).anchor == anchor
    with pytest.raises(chain.ChainError):
        chain.verify_chain([ds_der], [impostor], NOW)
    assert chain.verify_chain([ds_der], [anchor], NOW).anchor == anchor


def test_rsa_anchor_falls_back_to_cryptography(keys):
    _, ds_key, _ = keys
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    anchor = _anchor(rsa_key)
    ds_der = _ds(ds_key, anchor.subject, rsa_key)
    cert = x509.load_der_x509_certificate(ds_der)
    assert not chain._issued_by_fast(cert, ds_der, anchor, anchor.public_bytes(Encoding.DER))
    assert chain.verify_chain([ds_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS).anchor == anchor


def test_leaf_issued_by_anchor_only_for_a_direct_path(keys):
    """VerifiedChain.leaf_issued_by_anchor (the reader's Annex B ds.issued_by_iaca reuses it)
    is True only when the chain check itself verified the leaf directly under the anchor."""
    iaca_key, ds_key, mid_key = keys
    anchor = _anchor(iaca_key)
    ds_der = _ds(ds_key, anchor.subject, iaca_key)
    direct = chain.verify_chain([ds_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    assert direct.leaf_issued_by_anchor
    # the exact DER of both ends, and the leaf's own validity as cryptography reads it
    assert direct.leaf_der == ds_der and direct.anchor_der == anchor.public_bytes(Encoding.DER)
    leaf = x509.load_der_x509_certificate(ds_der)
    assert direct.leaf_validity == (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    assert chain._der_of(anchor) is chain._der_of(anchor) == anchor.public_bytes(Encoding.DER)
    # built without the frozen __init__: equal and frozen, same properties
    built = chain.VerifiedChain(direct.leaf, direct.public_key, direct.not_before, direct.not_after, direct.anchor,
                                None, True, direct.leaf_der, direct.anchor_der)
    assert direct == built and repr(direct) == repr(built)  # (unhashable either way: EC keys are)
    # made without saying so, a chain does not claim the leaf's signature by the anchor was
    # verified (the DS profile then verifies it itself)
    assert chain.VerifiedChain(direct.leaf, direct.public_key, direct.not_before, direct.not_after,
                               direct.anchor).leaf_issued_by_anchor is False
    assert direct.description == built.description and direct.leaf_validity == built.leaf_validity
    assert direct.anchor_subject == built.anchor_subject == anchor.subject.rfc4514_string()
    with pytest.raises(AttributeError):
        direct.not_after = NOW
    # the anchor carried at the end of x5chain is dropped: still a direct path
    with_anchor = chain.verify_chain([ds_der, anchor.public_bytes(Encoding.DER)], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    assert with_anchor.leaf_issued_by_anchor
    mid = (x509.CertificateBuilder().subject_name(_name("test mid")).issuer_name(anchor.subject)
           .public_key(mid_key.public_key()).serial_number(3)
           .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(iaca_key, hashes.SHA256()))
    leaf_der = _ds(ds_key, mid.subject, mid_key)
    via_mid = chain.verify_chain([leaf_der, mid.public_bytes(Encoding.DER)], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    assert not via_mid.leaf_issued_by_anchor


def _mid(anchor_key, anchor: x509.Certificate, mid_key, *, not_after=NOW + dt.timedelta(days=200),
         not_before=NOW - dt.timedelta(hours=12)) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name("test mid")).issuer_name(anchor.subject)
            .public_key(mid_key.public_key()).serial_number(3)
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(anchor_key, hashes.SHA256()))


def test_a_path_through_an_intermediate_is_checked_link_by_link_and_its_window_is_every_certificates(keys):
    """leaf <- intermediate <- anchor: each link's signature, every certificate's validity
    (the path's window is where all three are valid: the chain cache relies on it), and
    chain_path (what a revocation check is asked about) is the leaf and the intermediate,
    without a copy of the anchor sent along."""
    iaca_key, ds_key, mid_key = keys
    anchor = _anchor(iaca_key)
    mid = _mid(iaca_key, anchor, mid_key)
    mid_der, anchor_der = mid.public_bytes(Encoding.DER), anchor.public_bytes(Encoding.DER)
    leaf_der = _ds(ds_key, mid.subject, mid_key)
    leaf = x509.load_der_x509_certificate(leaf_der)
    for ders in ([leaf_der, mid_der], [leaf_der, mid_der, anchor_der]):
        verified = chain.verify_chain(ders, [anchor], NOW, eku=mdoc.EKU_MDL_DS)
        assert verified.anchor == anchor and verified.leaf == leaf
        # the narrowest of the three: the intermediate's notBefore, its notAfter
        assert (verified.not_before, verified.not_after) == (mid.not_valid_before_utc, mid.not_valid_after_utc)
        assert mdoc_verify.chain_path(ders, anchor) == [leaf, mid]
    assert mdoc_verify.chain_path([leaf_der], anchor) == [leaf]
    assert mdoc_verify.chain_path([leaf_der, anchor_der], anchor) == [leaf]
    # the intermediate not valid yet, or no longer: the path is refused, naming it
    for when in (mid.not_valid_before_utc - dt.timedelta(seconds=1), mid.not_valid_after_utc + dt.timedelta(seconds=1)):
        with pytest.raises(chain.ChainError, match="test mid.* not valid at"):
            chain.verify_chain([leaf_der, mid_der], [anchor], when, eku=mdoc.EKU_MDL_DS)
    # and at the very ends of its validity, accepted
    for when in (mid.not_valid_before_utc, mid.not_valid_after_utc):
        chain.verify_chain([leaf_der, mid_der], [anchor], when, eku=mdoc.EKU_MDL_DS)


def test_a_broken_link_anywhere_in_the_path_is_refused(keys):
    iaca_key, ds_key, mid_key = keys
    anchor = _anchor(iaca_key)
    mid = _mid(iaca_key, anchor, mid_key)
    mid_der = mid.public_bytes(Encoding.DER)
    # the leaf names the intermediate but another key signed it
    forged_leaf = _ds(ds_key, mid.subject, ds_key)
    with pytest.raises(chain.ChainError, match=r"x5chain\[0\] is not issued by x5chain\[1\]"):
        chain.verify_chain([forged_leaf, mid_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    # a self-made intermediate of the same name: the anchor did not issue it
    fake_mid = _mid(ds_key, anchor, mid_key)
    leaf_der = _ds(ds_key, mid.subject, mid_key)
    with pytest.raises(chain.ChainError, match="no trust anchor issued"):
        chain.verify_chain([leaf_der, fake_mid.public_bytes(Encoding.DER)], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    # the two in the wrong order
    with pytest.raises(chain.ChainError):
        chain.verify_chain([mid_der, leaf_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    # the leaf alone, its issuer not sent
    with pytest.raises(chain.ChainError, match="no trust anchor issued"):
        chain.verify_chain([leaf_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)


def test_a_trust_anchor_outside_its_own_validity_vouches_for_nothing(keys):
    """The anchor's own notBefore/notAfter count like every certificate's of the path: an
    expired IACA (or one not valid yet) vouches for no DS, even one valid itself."""
    iaca_key, ds_key, _ = keys
    anchor = (x509.CertificateBuilder().subject_name(_name("short iaca")).issuer_name(_name("short iaca"))
              .public_key(iaca_key.public_key()).serial_number(1)
              .not_valid_before(NOW - dt.timedelta(hours=1)).not_valid_after(NOW + dt.timedelta(hours=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .sign(iaca_key, hashes.SHA256()))
    ds_der = _ds(ds_key, anchor.subject, iaca_key)  # valid NOW - 1 day .. NOW + 365 days
    verified = chain.verify_chain([ds_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)
    assert (verified.not_before, verified.not_after) == (anchor.not_valid_before_utc, anchor.not_valid_after_utc)
    for when in (NOW - dt.timedelta(hours=1, seconds=1), NOW + dt.timedelta(hours=1, seconds=1)):
        with pytest.raises(chain.ChainError, match="short iaca.* not valid at"):
            chain.verify_chain([ds_der], [anchor], when, eku=mdoc.EKU_MDL_DS)


def test_a_leaf_with_an_rsa_key_is_refused_by_the_chain_check(keys):
    """A DS certificate issued by the anchor, with the DS EKU, but an RSA key: COSE issuerAuth
    here is ECDSA, so the chain check refuses it rather than hand on a key of no use."""
    iaca_key, _, _ = keys
    anchor = _anchor(iaca_key)
    rsa_der = _ds(rsa.generate_private_key(public_exponent=65537, key_size=2048), anchor.subject, iaca_key)
    with pytest.raises(chain.ChainError, match="leaf key is .*RSA.*need EC"):
        chain.verify_chain([rsa_der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    head = bytes([n]) if n < 0x80 else (b"\x81" + bytes([n]) if n < 0x100 else b"\x82" + n.to_bytes(2, "big"))
    return bytes([tag]) + head + body


def test_a_leaf_whose_key_cryptography_cannot_read_is_a_chain_error(keys):
    """A DS certificate, signed by the anchor, whose EC key names a curve cryptography does
    not know: the key is parsed lazily, so the failure surfaces inside the chain check, and
    is reported as a ChainError ("malformed certificate"), never as a chain that verified."""
    iaca_key, ds_key, _ = keys
    anchor = _anchor(iaca_key)
    good = x509.load_der_x509_certificate(_ds(ds_key, anchor.subject, iaca_key))
    p256 = bytes.fromhex("06082a8648ce3d030107")  # the OID of prime256v1 in the SubjectPublicKeyInfo
    tbs = good.tbs_certificate_bytes
    assert tbs.count(p256) == 1
    tbs = tbs.replace(p256, bytes.fromhex("06082a8648ce3d03017f"))  # 1.2.840.10045.3.1.127: no such curve
    signature = iaca_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    der = _der_tlv(0x30, tbs + bytes.fromhex("300a06082a8648ce3d040302") + _der_tlv(0x03, b"\x00" + signature))
    x509.load_der_x509_certificate(der)  # loads: the key is read only when asked for
    with pytest.raises(chain.ChainError, match="malformed certificate"):
        chain.verify_chain([der], [anchor], NOW, eku=mdoc.EKU_MDL_DS)


@pytest.mark.parametrize("where", ["leaf", "intermediate"])
def test_a_certificate_marking_an_unprocessed_extension_critical_breaks_the_chain(keys, where):
    """RFC 5280 4.2: a certificate with a critical extension the verifier does not process is
    rejected. A DS certificate (or a CA between it and the IACA) with an unknown critical
    extension, otherwise issued as it should be, fails the chain by name; before, the
    extension was ignored and the chain held. The same extension not critical is ignored."""
    iaca_key, ds_key, mid_key = keys
    anchor = _anchor(iaca_key)
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), b"\x05\x00")

    def cert(subject, subject_key, issuer, issuer_key, *, ca, critical):
        b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer.subject if issuer else
                                                                               _name("test iaca"))
             .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365)))
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True) if ca else \
            b.add_extension(x509.ExtendedKeyUsage([mdoc.EKU_MDL_DS]), critical=True)
        if critical is not None:
            b = b.add_extension(unknown, critical)
        return b.sign(issuer_key, hashes.SHA256())

    for critical in (True, False):
        if where == "leaf":
            ders = [cert("test ds", ds_key, anchor, iaca_key, ca=False, critical=critical).public_bytes(Encoding.DER)]
        else:
            mid = cert("test mid", mid_key, anchor, iaca_key, ca=True, critical=critical)
            ders = [cert("test ds", ds_key, mid, mid_key, ca=False, critical=None).public_bytes(Encoding.DER),
                    mid.public_bytes(Encoding.DER)]
        if critical:
            with pytest.raises(chain.ChainError, match=r"x5chain\[\d\] \(CN=test (ds|mid)\) cannot be relied on: it "
                                                       r"carries the critical extension 1\.3\.6\.1\.4\.1\.99999\.7"):
                chain.verify_chain(ders, [anchor], NOW, eku=mdoc.EKU_MDL_DS)
        else:
            assert chain.verify_chain(ders, [anchor], NOW, eku=mdoc.EKU_MDL_DS).leaf.subject == _name("test ds")
