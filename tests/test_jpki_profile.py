"""JPKI profiles: builders, era digit, validity rule, basic-four parser (with OpenSSL)."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime

import pytest
from asn1crypto import core as asn1core
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jpki_fixtures import BIRTH, CHIYODA, HOLDER, NOW, new_key, pem, pki

from protocols.jpki import (
    CURRENT_CARD_RULE,
    NEXT_CARD_RULE,
    PRODUCTION_ARC,
    BirthDateError,
    CertificateFormatError,
    Era,
    FixedYears,
    JpkiProfile,
    JpkiSex,
    KeyType,
    ProfileError,
    Purpose,
    classify,
    decode_birth_date,
    encode_birth_date,
    end_entity_validity,
    era_of,
    read_basic_four,
)
from protocols.jpki.oids import OID_BIRTH_DATE, OID_NAME, OID_SEX
from protocols.jpki.parse import certificate_policies

KEY_TYPES = list(KeyType)


@pytest.mark.parametrize(
    ("day", "era", "encoded"),
    [
        (date(1980, 2, 17), Era.SHOWA, "319800217"),
        (date(1989, 1, 7), Era.SHOWA, "319890107"),
        (date(1989, 1, 8), Era.HEISEI, "419890108"),
        (date(2019, 4, 30), Era.HEISEI, "420190430"),
        (date(2019, 5, 1), Era.REIWA, "520190501"),
        (date(1926, 12, 25), Era.SHOWA, "319261225"),
        (date(1926, 12, 24), Era.TAISHO, "219261224"),
        (date(1912, 7, 30), Era.TAISHO, "219120730"),
        (date(1912, 7, 29), Era.MEIJI, "119120729"),
    ],
)
def test_era_digit(day, era, encoded):
    assert era_of(day) is era
    assert encode_birth_date(day) == encoded
    assert decode_birth_date(encoded).date == day


@pytest.mark.parametrize("bad", ["419800217", "61980021", "3198002300", "31980-217", "６19800217", "319800230"])
def test_birth_date_rejects(bad):
    with pytest.raises(BirthDateError):
        decode_birth_date(bad)


def test_unknown_era_digit_is_accepted():
    assert decode_birth_date("019800217").era is Era.UNKNOWN


def test_validity_fifth_birthday_inclusive_jst():
    issued = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)
    v = end_entity_validity(CURRENT_CARD_RULE, issued, date(1980, 2, 17))
    # 5th birthday strictly after 2024-06-01 is 2029-02-17; valid through 23:59:59 JST.
    assert v.not_after == datetime(2029, 2, 17, 14, 59, 59, tzinfo=UTC)
    assert v.not_before == issued


def test_validity_issued_on_birthday_does_not_count_that_day():
    issued = datetime(2024, 2, 17, 1, 0, tzinfo=UTC)  # 10:00 JST on the birthday
    v = end_entity_validity(CURRENT_CARD_RULE, issued, date(1980, 2, 17))
    assert v.not_after.date() == date(2029, 2, 17)


def test_validity_leap_day_and_card_cap():
    issued = datetime(2024, 3, 1, tzinfo=UTC)
    v = end_entity_validity(CURRENT_CARD_RULE, issued, date(2000, 2, 29))
    assert v.not_after == datetime(2029, 2, 28, 14, 59, 59, tzinfo=UTC)
    capped = end_entity_validity(CURRENT_CARD_RULE, issued, date(2000, 2, 29), date(2027, 5, 5))
    assert capped.not_after == datetime(2027, 5, 5, 14, 59, 59, tzinfo=UTC)
    assert end_entity_validity(NEXT_CARD_RULE, issued, date(2000, 2, 29)).not_after.year == 2034
    assert end_entity_validity(FixedYears(10), issued, BIRTH).not_after == datetime(
        2034, 2, 28, 14, 59, 59, tzinfo=UTC)


def test_validity_rejects_naive_and_future_birth():
    with pytest.raises(ProfileError):
        end_entity_validity(CURRENT_CARD_RULE, datetime(2024, 1, 1), BIRTH)
    with pytest.raises(ProfileError):
        end_entity_validity(CURRENT_CARD_RULE, datetime(2024, 1, 1, tzinfo=UTC), date(2025, 1, 1))


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_signing_certificate_profile(key_type):
    p = pki(key_type)
    cert, _ = p.issue_signing(11)
    assert read_basic_four(cert) == HOLDER
    assert classify(cert) is Purpose.SIGN
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert certificate_policies(cert) == {p.profile.arc.signing}
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = p.roots[Purpose.SIGN].extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.value.digest
    dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0]
    assert x509.DirectoryName(p.profile.crldp_name(CHIYODA)) in dp.full_name


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_auth_certificate_has_no_personal_data(key_type):
    cert, _ = pki(key_type).issue_auth(12)
    assert classify(cert) is Purpose.AUTH
    assert [a.oid.dotted_string for a in cert.subject] == ["2.5.4.6", "2.5.4.3"]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    with pytest.raises(CertificateFormatError):
        read_basic_four(cert)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.content_commitment


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_openssl_parses_and_verifies(tmp_path, key_type):
    p = pki(key_type)
    sign, _ = p.issue_signing(13)
    auth, _ = p.issue_auth(14)
    for purpose, cert in ((Purpose.SIGN, sign), (Purpose.AUTH, auth)):
        (tmp_path / "root.pem").write_bytes(pem(p.roots[purpose]))
        (tmp_path / "cert.pem").write_bytes(pem(cert))
        text = subprocess.run(["openssl", "x509", "-text", "-noout", "-in", tmp_path / "cert.pem"],
                              capture_output=True, text=True, check=True).stdout
        assert p.profile.arc.policy(purpose).dotted_string in text
        out = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "root.pem",
                              tmp_path / "cert.pem"], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    text = subprocess.run(["openssl", "x509", "-text", "-noout"], input=pem(sign),
                          capture_output=True, check=True).stdout.decode()
    assert "1.2.392.200149.8.5.5.4::319800217" in text


def test_root_generations_share_name_differ_by_key_id():
    from test_jpki_fixtures import CA_VALIDITY

    from protocols.jpki import Validity, build_root_ca

    profile = JpkiProfile()
    a = build_root_ca(profile=profile, purpose=Purpose.SIGN, key=new_key(KeyType.RSA_2048),
                      serial=1, validity=CA_VALIDITY)
    b = build_root_ca(profile=profile, purpose=Purpose.SIGN, key=new_key(KeyType.EC_P384),
                      serial=2, validity=Validity(NOW, NOW.replace(year=NOW.year + 20)))
    assert a.subject == b.subject
    ski = [c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
           for c in (a, b)]
    assert ski[0] != ski[1]


def test_builder_refuses_misuse():
    p = pki(KeyType.RSA_2048)
    with pytest.raises(ProfileError):  # P-384 subject key under an RSA profile
        p.issue_signing(15, subject_key=new_key(KeyType.EC_P384))
    with pytest.raises(ProfileError):  # auth root used for a signing certificate
        from test_jpki_fixtures import CA_VALIDITY

        from protocols.jpki import build_signing_certificate

        build_signing_certificate(
            profile=p.profile, issuer=p.roots[Purpose.AUTH], issuer_key=p.root_keys[Purpose.AUTH],
            subject_key=new_key(KeyType.RSA_2048).public_key(), serial=3, validity=CA_VALIDITY,
            subject_id="X", municipality=CHIYODA, basic_four=HOLDER)
    with pytest.raises(ProfileError):
        p.issue_signing(0)


def test_test_arc_differs_from_production():
    cert, _ = pki(KeyType.RSA_2048).issue_signing(16)
    assert not certificate_policies(cert) & {PRODUCTION_ARC.signing, PRODUCTION_ARC.auth}
    with pytest.raises(CertificateFormatError):
        classify(cert, PRODUCTION_ARC)
    assert "TEST" in cert.issuer.rfc4514_string()


def test_sex_from_iso5218():
    assert JpkiSex.from_iso5218(1) is JpkiSex.MALE
    assert JpkiSex.from_iso5218(9) is JpkiSex.UNKNOWN
    with pytest.raises(ProfileError):
        JpkiSex.from_iso5218(3)


# --- fuzz the basic-four parser: any otherName content gives BasicFour or our error -------

_ROOT_KEY = new_key(KeyType.EC_P384)


def _cert_with_san(names: list[x509.GeneralName]) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes

    name = x509.Name([])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(_ROOT_KEY.public_key()).serial_number(1)
               .not_valid_before(NOW).not_valid_after(NOW.replace(year=NOW.year + 1)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(_ROOT_KEY, hashes.SHA256())


_OIDS = st.sampled_from([OID_NAME, OID_BIRTH_DATE, OID_SEX] + [
    x509.ObjectIdentifier(f"1.2.392.200149.8.5.5.{i}") for i in range(2, 8)])
_VALUES = st.one_of(
    st.binary(max_size=20),
    st.text(max_size=12).map(lambda s: asn1core.UTF8String(s).dump()),
    st.from_regex(r"[0-9]{9}", fullmatch=True).map(lambda s: asn1core.UTF8String(s).dump()),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_OIDS, _VALUES), max_size=8))
def test_fuzz_basic_four_parser(pairs):
    names: list[x509.GeneralName] = []
    for oid, value in pairs:
        names.append(x509.OtherName(oid, value))
    try:
        cert = _cert_with_san(names)
    except ValueError:
        return  # cryptography refused to encode the value: nothing to parse
    try:
        read_basic_four(cert)
    except CertificateFormatError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_basic_four_parser_bytes(data):
    try:
        read_basic_four(data)
    except CertificateFormatError:
        pass


def test_a_card_that_ended_before_the_day_of_issue_is_named_as_such():
    """After the card's last day the validity came out as one that "ends before it starts";
    the refusal now names the card's end and the renewal (every workflow checks before
    issuing, so this is the issuer's own last word)."""
    import datetime as _dt

    import pytest as _pytest

    from protocols.jpki.errors import ProfileError
    from protocols.jpki.validity import CURRENT_CARD_RULE, end_entity_validity

    issued = _dt.datetime(2031, 4, 2, 1, 0, tzinfo=_dt.UTC)  # 10:00 JST on the day after the card's end
    with _pytest.raises(ProfileError, match="the card ended 2031-04-01 .* renew the card first"):
        end_entity_validity(CURRENT_CARD_RULE, issued, _dt.date(1990, 4, 1), card_expiry=_dt.date(2031, 4, 1))
    # on the card's last day itself, a certificate to its end (23:59:59 JST)
    last = end_entity_validity(CURRENT_CARD_RULE, issued - _dt.timedelta(days=1), _dt.date(1990, 4, 1),
                               card_expiry=_dt.date(2031, 4, 1))
    assert last.not_after == _dt.datetime(2031, 4, 1, 14, 59, 59, tzinfo=_dt.UTC)
