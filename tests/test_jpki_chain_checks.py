"""The JPKI relying party's certificate checks (protocols.jpki.relying_party: chain, key
usage) against the forgeries and edges they are there for, each a check that a mutation could otherwise
remove without any other test failing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from test_jpki_cms import CONTENT, se_signer
from test_jpki_fixtures import NOW, new_key
from test_rp_jpki_verdicts import CERT, ROOTS, SIG, P, _crl, _failed

from protocols.jpki import Purpose
from protocols.jpki.cms import build_detached_signature
from protocols.jpki.relying_party import (
    Check,
    check_chain,
    check_key_usage,
    check_policy,
    check_validity,
    verify_signed_content,
)
from reader.relying_party import verify

ROOT = P.roots[Purpose.SIGN]


def _copy_of(cert: x509.Certificate, key, *, issuer_key, skip=(), extra=()) -> x509.Certificate:
    """``cert`` again, signed by ``issuer_key``: for ``key`` (a private key; None keeps the
    certificate's public key), without the extensions of the types in ``skip``, with the
    (extension, critical) pairs of ``extra`` after the rest."""
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(cert.public_key() if key is None else key.public_key()).serial_number(cert.serial_number)
               .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        if type(ext.value) not in skip:
            builder = builder.add_extension(ext.value, ext.critical)
    for value, critical in extra:
        builder = builder.add_extension(value, critical)
    return builder.sign(issuer_key, hashes.SHA384())


def test_a_certificate_naming_the_roots_key_id_but_signed_by_another_key_is_not_chained():
    """The forger's certificate copies a real one (names, the root's authorityKeyIdentifier,
    policy, key usage) with their own key in it, and signs it with a key of their own: the
    signature over the content verifies with it, and only the chain check's verification of
    the certificate's signature with the root's key refuses it."""
    mine = new_key(P.key_type)
    forged = _copy_of(CERT, mine, issuer_key=new_key(P.key_type))
    sig = build_detached_signature(content=CONTENT, certificate=forged, sign=se_signer(mine), signing_time=NOW)
    failed = _failed(verify(CONTENT, sig, roots=ROOTS, at=NOW, revocation="none"))
    assert list(failed) == ["chain"] and failed["chain"].startswith("not issued by the root with that key id"), failed
    check, root = check_chain(forged, ROOTS, NOW)
    assert (check.passed, check.code, root) == (False, "untrusted_root", None)


def test_the_root_must_be_valid_at_the_time_judged_up_to_its_last_instant():
    for at in (ROOT.not_valid_before_utc, ROOT.not_valid_after_utc):
        assert check_chain(CERT, ROOTS, at)[0].passed, at
    for at in (ROOT.not_valid_before_utc - timedelta(seconds=1), ROOT.not_valid_after_utc + timedelta(seconds=1)):
        check, root = check_chain(CERT, ROOTS, at)
        assert (check.passed, check.code, root) == (False, "untrusted_root", None)
        assert check.reason == f"root {ROOT.serial_number} is not valid at {at}"


def test_a_certificate_without_authority_key_identifier_is_chained_to_no_root():
    """Roots are picked by key identifier only (never by name): a certificate with no AKI is
    chained to none, not even to a root of the same name that has no SKI either."""
    root_key = new_key(P.key_type)
    bare_root = _copy_of(ROOT, root_key, issuer_key=root_key,
                         skip=(x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier))
    bare = _copy_of(CERT, new_key(P.key_type), issuer_key=root_key, skip=(x509.AuthorityKeyIdentifier,))
    check, root = check_chain(bare, [bare_root], NOW)
    assert (check.passed, root) == (False, None)
    assert "key id not given" in check.reason, check


@pytest.mark.parametrize("kwargs", [dict(code="fine"), dict(code="revoked", revocation_reason="lost")])
def test_a_check_outside_the_closed_vocabulary_cannot_be_made(kwargs):
    with pytest.raises(ValueError, match="check code|CRLReason"):
        Check("revocation", False, "why", **kwargs)


def _with_key_usage(**usages) -> x509.Certificate:
    """A certificate issued by the signing root with only these keyUsage bits (none given:
    no keyUsage extension)."""
    key = new_key(P.key_type)
    builder = (x509.CertificateBuilder().subject_name(CERT.subject).issuer_name(CERT.issuer)
               .public_key(key.public_key()).serial_number(CERT.serial_number)
               .not_valid_before(CERT.not_valid_before_utc).not_valid_after(CERT.not_valid_after_utc))
    if usages:
        flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
                              False)
        builder = builder.add_extension(x509.KeyUsage(**{**flags, **usages}), critical=True)
    return builder.sign(P.root_keys[Purpose.SIGN], hashes.SHA384())


@pytest.mark.parametrize(("usages", "required", "passed"), [
    ({}, Purpose.AUTH, False),  # no keyUsage at all
    (dict(content_commitment=True), Purpose.SIGN, False),  # nonRepudiation without digitalSignature
    (dict(content_commitment=True), Purpose.AUTH, False),
    (dict(digital_signature=True), Purpose.SIGN, False),  # a signature for a document needs nonRepudiation
    (dict(digital_signature=True), Purpose.AUTH, True),
    (dict(digital_signature=True, content_commitment=True), Purpose.SIGN, True),
])
def test_key_usage_needs_digital_signature_and_for_documents_non_repudiation(usages, required, passed):
    check = check_key_usage(_with_key_usage(**usages), required)
    assert (check.passed, check.code) == (passed, "ok" if passed else "wrong_purpose"), check


def test_validity_allows_a_not_before_five_minutes_ahead_and_ends_at_not_after_itself():
    """notBefore may lie CLOCK_SKEW (5 minutes) after the relying party's clock (an issuer
    whose clock runs ahead); notAfter gets no allowance, its own instant still valid."""
    before, after = CERT.not_valid_before_utc, CERT.not_valid_after_utc
    said = {at: (c.passed, c.code) for at in (before - timedelta(minutes=5), before - timedelta(minutes=5, seconds=1),
                                               after, after + timedelta(seconds=1))
            for c in [check_validity(CERT, at)]}
    assert list(said.values()) == [(True, "ok"), (False, "not_yet_valid"), (True, "ok"), (False, "expired")], said


def test_a_certificate_with_no_jpki_policy_fails_the_policy_check():
    check = check_policy(_with_key_usage(digital_signature=True, content_commitment=True), Purpose.SIGN)
    assert not check.passed, check


def test_verify_signed_content_refuses_what_is_not_a_signature_and_takes_a_good_one():
    bad = verify_signed_content(b"\x30\x03\x02\x01\x00", CONTENT, roots=ROOTS, required=Purpose.SIGN, at=NOW)
    assert (bad.valid, [(c.name, c.passed) for c in bad.checks]) == (False, [("signature", False)])
    good = verify_signed_content(SIG, CONTENT, roots=ROOTS, required=Purpose.SIGN, at=NOW)
    assert good.valid and good.checks[0].passed and good.purpose is Purpose.SIGN, good.checks
    # a CRL given, but no trusted root to check it against: the revocation check fails too
    untrusted = verify_signed_content(SIG, CONTENT, roots=[P.roots[Purpose.AUTH]], required=Purpose.SIGN, at=NOW,
                                      crl=x509.load_der_x509_crl(_crl()))
    assert [(c.name, c.passed) for c in untrusted.checks if not c.passed] == [("chain", False), ("revocation", False)]


@pytest.mark.parametrize("critical", [True, False])
def test_a_critical_extension_the_relying_party_does_not_process_fails_the_chain(critical):
    """RFC 5280 4.2: "A certificate-using system MUST reject the certificate if it encounters
    a critical extension it does not recognize". A certificate of the root, otherwise a good
    signing certificate, with an unknown extension marked critical fails the chain check (the
    reason names the extension's OID); the same extension not critical is ignored. Before,
    the critical one was ignored too and the signature was valid."""
    mine = new_key(P.key_type)
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.42"), b"\x05\x00")
    cert = _copy_of(CERT, mine, issuer_key=P.root_keys[Purpose.SIGN], extra=[(unknown, critical)])
    sig = build_detached_signature(content=CONTENT, certificate=cert, sign=se_signer(mine), signing_time=NOW)
    result = verify(CONTENT, sig, roots=ROOTS, at=NOW, revocation="none")
    if critical:
        failed = _failed(result)
        assert list(failed) == ["chain"], failed
        assert "critical extension 1.3.6.1.4.1.99999.42 (unknown), which is not processed here" in failed["chain"]
        assert check_chain(cert, ROOTS, NOW)[1] is None
    else:
        assert result["valid"], result
