"""ISO/IEC 18013-5 Annex B rules (protocols.iaca.checks), one altered certificate each:
every rule fails on the certificate that breaks it, and only that rule, and passes at its
edges. Each case holds a rule that a mutation of the module could otherwise drop without any
test failing (tests/test_iaca_profiles.py has the builders' own chain)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_iaca_profiles import NOW, make_ds, make_iaca, names

from protocols import iaca
from protocols.iaca.builders import DS_MAX_VALIDITY, IACA_MAX_VALIDITY, READER_MAX_VALIDITY

IACA_KEY, IACA = make_iaca(state="Tokyo")
DS_KEY, DS = make_ds(IACA_KEY, IACA)  # its state is the IACA's


def rebuild(cert, sign_key, *, public_key=None, serial=None, subject=None, issuer=None, not_before=None,
            not_after=None, replace=(), drop=(), hash_alg=None) -> x509.Certificate:
    """``cert`` again with what is given changed (``replace``: extensions by type, critical
    as before unless given as (value, critical)), signed by ``sign_key``."""
    b = (x509.CertificateBuilder().subject_name(subject or cert.subject).issuer_name(issuer or cert.issuer)
         .public_key(public_key or cert.public_key()).serial_number(serial or cert.serial_number)
         .not_valid_before(not_before or cert.not_valid_before_utc)
         .not_valid_after(not_after or cert.not_valid_after_utc))
    new = {type(v[0] if isinstance(v, tuple) else v): v for v in replace}
    for ext in cert.extensions:
        kind = type(ext.value)
        if kind in drop:
            continue
        if kind in new:
            value = new.pop(kind)
            value, critical = value if isinstance(value, tuple) else (value, ext.critical)
            b = b.add_extension(value, critical)
        else:
            b = b.add_extension(ext.value, ext.critical)
    for value in new.values():
        value, critical = value if isinstance(value, tuple) else (value, False)
        b = b.add_extension(value, critical)
    return b.sign(sign_key, hash_alg or hashes.SHA256())


def _iaca(**kw):
    return rebuild(IACA, kw.pop("sign_key", IACA_KEY), **kw)


def _ds(**kw):
    return rebuild(DS, kw.pop("sign_key", IACA_KEY), **kw)


def _name(*attrs):
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


def _ku(**on):
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    return x509.KeyUsage(**{**flags, **on})


def _reason(checks, name: str) -> str:
    return next(c.reason for c in checks if c.name == name)


def _patched(cert, old: bytes, new: bytes) -> x509.Certificate:
    """``cert``'s DER with ``old`` (found once) replaced: what no builder makes."""
    der = cert.public_bytes(Encoding.DER)
    assert der.count(old) == 1
    return x509.load_der_x509_certificate(der.replace(old, new))


def test_a_v1_certificate_fails_the_version_rule():
    """v1 is the version field left out (DER: a DEFAULT is not encoded): the IACA's DER
    without it, both enclosing SEQUENCEs 5 bytes shorter."""
    der = IACA.public_bytes(Encoding.DER)
    assert der[0:2] == der[4:6] == b"\x30\x82" and der[8:13] == bytes.fromhex("a003020102")
    shorter = [(int.from_bytes(der[i:i + 2], "big") - 5).to_bytes(2, "big") for i in (2, 6)]
    v1 = x509.load_der_x509_certificate(b"\x30\x82" + shorter[0] + b"\x30\x82" + shorter[1] + der[13:])
    assert v1.version is x509.Version.v1
    assert "iaca.version" in names(iaca.check_iaca(v1, NOW))
    assert _reason(iaca.check_iaca(v1, NOW), "iaca.version") == "version v1, need v3"


def test_a_rule_that_cannot_read_the_certificate_fails_as_unreadable():
    """A key of an algorithm nobody knows (id-ecPublicKey's OID altered): the key rule cannot
    even read it, and fails (never passes) saying so."""
    odd = _patched(DS, bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d0209"))
    check = next(c for c in iaca.check_document_signer(odd, IACA, NOW) if c.name == "ds.key")
    assert not check.passed and check.reason.startswith("unreadable: "), check


def test_the_unaltered_certificates_pass():
    assert iaca.failed(iaca.check_iaca(IACA, NOW)) == []
    assert iaca.failed(iaca.check_document_signer(DS, IACA, NOW)) == []
    assert names(iaca.check_iaca(rebuild(IACA, IACA_KEY), NOW)) == set()


def test_the_iaca_rules_are_in_table_b1_order_validity_after_self_signed():
    assert [c.name for c in iaca.check_iaca(IACA, NOW)] == [
        "iaca.version", "iaca.serial_number", "iaca.key", "iaca.subject", "iaca.self_signed", "iaca.validity",
        "iaca.validity_period", "iaca.basic_constraints", "iaca.key_usage", "iaca.subject_key_identifier",
        "iaca.issuer_alt_name", "iaca.crl_distribution_points", "iaca.disallowed_extensions"]


@pytest.mark.parametrize(("serial", "ok"), [
    (2**62 - 1, False),  # 62 bits: too few to be unpredictable
    (2**62, True),  # 63 bits
    (2**158, True),  # 159 bits: 20 octets, the most a serial may take
])
def test_a_serial_has_at_least_63_bits(serial, ok):
    assert names(iaca.check_iaca(_iaca(serial=serial), NOW)) == (set() if ok else {"iaca.serial_number"})


def test_a_serial_that_is_not_positive_fails():
    """cryptography builds no such certificate: the IACA's DER with the serial's sign bit set
    (its signature no longer verifies; the serial rule fails on its own account). Built on a
    serial of 101 bits (13 octets, the first 0x10): the module's IACA has a random one, and
    one whose first octet is 0x7F became 0xFF followed by an octet with its top bit set, an
    INTEGER not in its shortest form, which the parser refuses before any rule is asked
    (about 1 run in 256; a CI run met it)."""
    cert = _iaca(serial=2**100 + 12345)
    der = cert.public_bytes(Encoding.DER)
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    assert serial[0] == 0x10
    at = der.index(serial)
    negative = x509.load_der_x509_certificate(der[:at] + bytes([der[at] | 0x80]) + der[at + 1:])
    assert negative.serial_number < 0
    assert "iaca.serial_number" in names(iaca.check_iaca(negative, NOW))


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    head = bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else b"\x82" + n.to_bytes(2, "big")
    return bytes([tag]) + head + body


def _der_span(der: bytes, pos: int) -> tuple[int, int]:
    """(start of contents, end) of the DER TLV at ``pos``."""
    first = der[pos + 1]
    if first < 0x80:
        return pos + 2, pos + 2 + first
    start = pos + 2 + (first & 0x7F)
    return start, start + int.from_bytes(der[pos + 2:start], "big")


def test_a_serial_longer_than_20_octets_fails():
    """RFC 5280 4.1.2.2: at most 20 octets. cryptography builds no such certificate: the
    IACA's TBSCertificate with a 21-octet serial, signed again by its key, so that the
    serial rule is the only one to fail."""
    der = IACA.public_bytes(Encoding.DER)
    body = _der_span(der, 0)[0]
    tbs_body, tbs_end = _der_span(der, body)
    serial_at = _der_span(der, tbs_body)[1]  # after [0] version
    serial_end = _der_span(der, serial_at)[1]
    tbs = _der_tlv(0x30, der[tbs_body:serial_at] + _der_tlv(0x02, b"\x01" + bytes(range(1, 21)))
                   + der[serial_end:tbs_end])
    alg = der[tbs_end:_der_span(der, tbs_end)[1]]
    signature = IACA_KEY.sign(tbs, ec.ECDSA(hashes.SHA256()))
    long_serial = x509.load_der_x509_certificate(_der_tlv(0x30, tbs + alg + _der_tlv(0x03, b"\x00" + signature)))
    assert (long_serial.serial_number.bit_length() + 8) // 8 == 21
    assert names(iaca.check_iaca(long_serial, NOW)) == {"iaca.serial_number"}
    assert "longer than 20 octets" in _reason(iaca.check_iaca(long_serial, NOW), "iaca.serial_number")


@pytest.mark.parametrize(("key", "hash_alg", "rule"), [
    (rsa.generate_private_key(65537, 2048), hashes.SHA256(), "key"),  # not EC
    (ec.generate_private_key(ec.SECP256K1()), hashes.SHA256(), "key"),  # not a NIST curve of the profile
    (None, hashes.SHA224(), "key"),  # ECDSA with SHA-224: not among the allowed signatures
])
def test_the_key_is_ec_p256_p384_or_p521_and_the_signature_ecdsa_with_sha2(key, hash_alg, rule):
    key = key or IACA_KEY
    cert = rebuild(IACA, key, public_key=key.public_key(), hash_alg=hash_alg,
                   replace=[x509.SubjectKeyIdentifier.from_public_key(key.public_key())])
    assert names(iaca.check_iaca(cert, NOW)) == {f"iaca.{rule}"}
    said = _reason(iaca.check_iaca(cert, NOW), f"iaca.{rule}")
    assert said.endswith("is not ECDSA" if hash_alg.name == "sha224" else "is not EC P-256/384/521"), said
    p521 = ec.generate_private_key(ec.SECP521R1())
    ok = rebuild(IACA, p521, public_key=p521.public_key(), hash_alg=hashes.SHA512(),
                 replace=[x509.SubjectKeyIdentifier.from_public_key(p521.public_key())])
    assert names(iaca.check_iaca(ok, NOW)) == set()


def test_validity_includes_both_edges_and_the_period_its_limit():
    start, end = IACA.not_valid_before_utc, IACA.not_valid_after_utc
    for at in (start, end):
        assert names(iaca.check_iaca(IACA, at)) == set()
    assert names(iaca.check_iaca(IACA, end + dt.timedelta(seconds=1))) == {"iaca.validity"}
    assert names(iaca.check_iaca(_iaca(not_after=start + IACA_MAX_VALIDITY), NOW)) == set()
    assert names(iaca.check_iaca(_iaca(not_after=start + IACA_MAX_VALIDITY + dt.timedelta(seconds=1)), NOW)) == {
        "iaca.validity_period"}
    with pytest.raises(TypeError, match="aware"):
        iaca.check_iaca(IACA, NOW.replace(tzinfo=None))


@pytest.mark.parametrize(("subject", "rule"), [
    (_name((NameOID.COUNTRY_NAME, "JP"), (NameOID.COUNTRY_NAME, "JP"), (NameOID.COMMON_NAME, "x")), "subject"),
    (_name((NameOID.COMMON_NAME, "no country")), "subject"),
    (_name((NameOID.COUNTRY_NAME, "JP"), (NameOID.ORGANIZATION_NAME, "no common name")), "subject"),
])
def test_the_iaca_subject_has_one_country_and_a_common_name(subject, rule):
    cert = _iaca(subject=subject, issuer=subject)
    assert names(iaca.check_iaca(cert, NOW)) == {f"iaca.{rule}"}


def test_an_iaca_whose_issuer_is_not_its_subject_is_not_self_signed():
    assert names(iaca.check_iaca(_iaca(issuer=_name((NameOID.COUNTRY_NAME, "JP"),
                                                     (NameOID.COMMON_NAME, "someone else"))), NOW)) == {
        "iaca.self_signed"}


@pytest.mark.parametrize(("value", "ok"), [
    (x509.BasicConstraints(ca=False, path_length=None), False),
    (x509.BasicConstraints(ca=True, path_length=None), False),
    (x509.BasicConstraints(ca=True, path_length=1), False),
    (x509.BasicConstraints(ca=True, path_length=0), True),
])
def test_basic_constraints_ca_with_path_length_zero(value, ok):
    assert names(iaca.check_iaca(_iaca(replace=[(value, True)]), NOW)) == (set() if ok else {"iaca.basic_constraints"})


@pytest.mark.parametrize(("usages", "ok"), [
    (dict(key_cert_sign=True, crl_sign=True), True),
    (dict(key_cert_sign=True), False),
    (dict(crl_sign=True), False),
    *[(dict(key_cert_sign=True, crl_sign=True, **{extra: True}), False)
      for extra in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                    "key_agreement")],
])
def test_the_iaca_key_usage_is_key_cert_sign_and_crl_sign_only(usages, ok):
    assert names(iaca.check_iaca(_iaca(replace=[(_ku(**usages), True)]), NOW)) == (
        set() if ok else {"iaca.key_usage"})


@pytest.mark.parametrize(("value", "rule"), [
    (x509.IssuerAlternativeName([x509.DNSName("mcred.test")]), "issuer_alt_name"),
    (x509.CRLDistributionPoints([x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://127.0.0.1/c.crl")], None,
        frozenset({x509.ReasonFlags.key_compromise}), None)]), "crl_distribution_points"),
    (x509.CRLDistributionPoints([x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://127.0.0.1/c.crl")], None, None,
        [x509.DirectoryName(_name((NameOID.COMMON_NAME, "other CRL issuer")))])]), "crl_distribution_points"),
    (x509.CRLDistributionPoints([x509.DistributionPoint(
        None, x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "rel")]), None, None)]),
     "crl_distribution_points"),
    # no distribution point at all: cryptography builds and parses the empty SEQUENCE that
    # RFC 5280 4.2.1.13 (SIZE (1..MAX)) does not allow
    (x509.CRLDistributionPoints([]), "crl_distribution_points"),
])
def test_issuer_alt_name_and_crl_distribution_points_hold_uris_or_emails_only(value, rule):
    assert names(iaca.check_iaca(_iaca(replace=[value]), NOW)) == {f"iaca.{rule}"}
    assert not _reason(iaca.check_iaca(_iaca(replace=[value]), NOW), f"iaca.{rule}").startswith("unreadable")
    assert names(iaca.check_iaca(_iaca(replace=[x509.IssuerAlternativeName([x509.RFC822Name("ca@mcred.test")])]),
                                 NOW)) == set()


# -- document signer, status-list signer, reader certificate -------------------------------------


def test_a_forged_signer_fails_issued_by_unless_the_caller_verified_the_pair():
    """Without signature_verified (the default), issued_by verifies the IACA's signature."""
    other = ec.generate_private_key(ec.SECP256R1())
    forged = _ds(sign_key=other)
    assert names(iaca.check_document_signer(forged, IACA, NOW)) == {"ds.issued_by_iaca"}
    assert names(iaca.check_status_list_signer(rebuild(forged, other), IACA, NOW)) >= {
        "status_signer.issued_by_iaca"}


@pytest.mark.parametrize("extra", ["key_cert_sign", "crl_sign", "content_commitment", "key_encipherment",
                                   "data_encipherment", "key_agreement", None])
def test_a_signer_key_usage_is_digital_signature_only(extra):
    usages = {"digital_signature": True, **({extra: True} if extra else {})}
    assert names(iaca.check_document_signer(_ds(replace=[(_ku(**usages), True)]), IACA, NOW)) == (
        {"ds.key_usage"} if extra else set())
    for alone in (_ku(content_commitment=True), _ku()):  # no digitalSignature
        assert names(iaca.check_document_signer(_ds(replace=[(alone, True)]), IACA, NOW)) == {"ds.key_usage"}


def test_a_document_signer_has_exactly_its_eku_a_reader_at_least_its_own():
    two = x509.ExtendedKeyUsage([iaca.EKU_MDL_DS, ExtendedKeyUsageOID.CLIENT_AUTH])
    assert names(iaca.check_document_signer(_ds(replace=[(two, True)]), IACA, NOW)) == {"ds.extended_key_usage"}
    reader_eku = x509.ExtendedKeyUsage([iaca.EKU_MDL_READER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    reader = _ds(replace=[(reader_eku, True)])
    assert "reader.extended_key_usage" not in names(iaca.check_reader_certificate(reader, IACA, NOW))
    assert "reader.extended_key_usage" in names(iaca.check_reader_certificate(DS, IACA, NOW))


@pytest.mark.parametrize(("subject", "ok"), [
    (_name((NameOID.COUNTRY_NAME, "JP"), (NameOID.STATE_OR_PROVINCE_NAME, "Tokyo"), (NameOID.COMMON_NAME, "s")),
     True),
    (_name((NameOID.COUNTRY_NAME, "JP"), (NameOID.COMMON_NAME, "no state: allowed")), True),
    (_name((NameOID.COUNTRY_NAME, "DE"), (NameOID.COMMON_NAME, "another country")), False),
    (_name((NameOID.COMMON_NAME, "no country")), False),
    (_name((NameOID.COUNTRY_NAME, "JP"), (NameOID.STATE_OR_PROVINCE_NAME, "Osaka"), (NameOID.COMMON_NAME, "s")),
     False),
    (_name((NameOID.COUNTRY_NAME, "JP"), (NameOID.STATE_OR_PROVINCE_NAME, "Tokyo")), False),
])
def test_a_signer_subject_has_the_iacas_country_and_state_and_a_common_name(subject, ok):
    assert names(iaca.check_document_signer(_ds(subject=subject), IACA, NOW)) == (set() if ok else {"ds.subject"})
    said = _reason(iaca.check_document_signer(_ds(subject=subject), IACA, NOW), "ds.subject")
    assert said.startswith("C=") if ok else not said.startswith("unreadable"), said


def test_a_signer_needs_a_country_even_under_an_iaca_without_one():
    name = _name((NameOID.COMMON_NAME, "IACA without a country"))
    bare = rebuild(IACA, IACA_KEY, subject=name, issuer=name)
    ds = _ds(subject=_name((NameOID.COMMON_NAME, "DS without a country")), issuer=name)
    assert _reason(iaca.check_document_signer(ds, bare, NOW), "ds.subject") == (
        "subject countryName differs from the IACA's")


def test_a_reader_certificate_needs_only_a_common_name():
    assert "reader.subject" not in names(iaca.check_reader_certificate(
        _ds(subject=_name((NameOID.COMMON_NAME, "Counter 1"))), IACA, NOW))
    assert "reader.subject" in names(iaca.check_reader_certificate(
        _ds(subject=_name((NameOID.ORGANIZATION_NAME, "no common name"))), IACA, NOW))
    other_key, other = make_iaca(common_name="mcred TEST reader CA")
    said = _reason(iaca.check_reader_certificate(DS, other, NOW), "reader.issued_by_ca")
    assert said.startswith("issuer ") and said.endswith("is not the reader CA CN=mcred TEST reader CA,O=mcred TEST,C=JP")


def test_a_signer_is_valid_within_the_iacas_validity_up_to_its_edges_and_for_at_most_its_limit():
    start, end = IACA.not_valid_before_utc, IACA.not_valid_after_utc
    assert names(iaca.check_document_signer(_ds(not_before=start, not_after=start + DS_MAX_VALIDITY), IACA,
                                            start + dt.timedelta(days=1))) == set()
    assert names(iaca.check_document_signer(_ds(not_before=end - DS_MAX_VALIDITY, not_after=end), IACA,
                                            end - dt.timedelta(days=1))) == set()
    early = _ds(not_before=start - dt.timedelta(seconds=1), not_after=start + dt.timedelta(days=30))
    late = _ds(not_before=end - dt.timedelta(days=30), not_after=end + dt.timedelta(seconds=1))
    for cert, at in ((early, start + dt.timedelta(days=1)), (late, end - dt.timedelta(days=1))):
        assert names(iaca.check_document_signer(cert, IACA, at)) == {"ds.validity_within_iaca"}
    long = _ds(not_before=start, not_after=start + DS_MAX_VALIDITY + dt.timedelta(seconds=1))
    assert names(iaca.check_document_signer(long, IACA, start + dt.timedelta(days=1))) == {"ds.validity_period"}
    # a reader certificate may live up to 1187 days (B.1.7)
    reader = _ds(not_before=start, not_after=start + READER_MAX_VALIDITY,
                 replace=[(x509.ExtendedKeyUsage([iaca.EKU_MDL_READER_AUTH]), True)])
    assert "reader.validity_period" not in names(iaca.check_reader_certificate(reader, IACA, start))


def test_the_authority_key_identifier_needs_the_iacas_subject_key_identifier():
    no_ski = rebuild(IACA, IACA_KEY, drop=(x509.SubjectKeyIdentifier,))
    assert _reason(iaca.check_document_signer(DS, no_ski, NOW), "ds.authority_key_identifier") == (
        "the IACA has no subjectKeyIdentifier to match")


def test_a_signer_is_held_to_table_b3_and_a_reader_certificate_to_b17_without_ian_and_crl_dp():
    common = ["version", "serial_number", "key", "subject"]
    middle = ["validity", "validity_period"]
    tail = ["key_usage", "extended_key_usage", "authority_key_identifier", "subject_key_identifier"]
    assert [c.name for c in iaca.check_document_signer(DS, IACA, NOW)] == [
        f"ds.{n}" for n in [*common, "issued_by_iaca", *middle, "validity_within_iaca", *tail,
                            "issuer_alt_name", "crl_distribution_points"]]
    assert [c.name for c in iaca.check_reader_certificate(DS, IACA, NOW)] == [
        f"reader.{n}" for n in [*common, "issued_by_ca", *middle, "validity_within_ca", *tail]]
