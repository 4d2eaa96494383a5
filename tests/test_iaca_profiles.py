"""ISO/IEC 18013-5 Annex B profiles: builders produce certificates the validators accept,
and each rule fails on the certificate that breaks it."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import iaca

T0 = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
BASE = "http://127.0.0.1:8470"


def make_iaca(curve=ec.SECP256R1, **kw):
    key = ec.generate_private_key(curve())
    args = dict(
        common_name="mcred TEST IACA", not_before=T0, not_after=T0 + dt.timedelta(days=3650),
        issuer_alt_name_uri=f"{BASE}/", crl_uri=f"{BASE}/crl/iaca.crl",
        organization="mcred TEST",
    )
    args.update(kw)
    return key, iaca.sign(iaca.iaca_builder(key.public_key(), **args), key)


def make_ds(iaca_key, iaca_cert, curve=ec.SECP256R1, builder=iaca.document_signer_builder, **kw):
    key = ec.generate_private_key(curve())
    args = dict(common_name="mcred TEST DS 1", not_before=T0, not_after=T0 + dt.timedelta(days=400),
                crl_uri=f"{BASE}/crl/iaca.crl")
    args.update(kw)
    return key, iaca.sign(builder(key.public_key(), iaca_cert, **args), iaca_key)


def names(checks):
    return {c.name for c in checks if not c.passed}


@pytest.mark.parametrize("curve", [ec.SECP256R1, ec.SECP384R1])
def test_built_chain_passes_every_check(curve):
    ik, ic = make_iaca(curve)
    _, ds = make_ds(ik, ic, curve)
    _, sl = make_ds(ik, ic, curve, builder=iaca.status_list_signer_builder, common_name="mcred TEST SL")
    for checks in (iaca.check_iaca(ic, NOW), iaca.check_document_signer(ds, ic, NOW),
                   iaca.check_status_list_signer(sl, ic, NOW)):
        assert iaca.failed(checks) == [], checks
        assert all(isinstance(c, iaca.Check) and c.reason for c in checks)
    expected_hash = hashes.SHA256 if curve is ec.SECP256R1 else hashes.SHA384
    assert isinstance(ds.signature_hash_algorithm, expected_hash)


def test_profile_contents():
    ik, ic = make_iaca()
    _, ds = make_ds(ik, ic)
    bc = ic.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ic.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ic.subject.get_attributes_for_oid(x509.NameOID.COUNTRY_NAME)[0].value == "JP"
    eku = ds.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [x509.ObjectIdentifier("1.0.18013.5.1.2")]
    assert ds.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == \
        ic.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ds.not_valid_after_utc <= ic.not_valid_after_utc


def test_builders_refuse_what_the_profile_forbids():
    ik, ic = make_iaca()
    with pytest.raises(iaca.IacaProfileError, match="within the IACA"):
        make_ds(ik, ic, not_before=T0 - dt.timedelta(days=1))
    with pytest.raises(iaca.IacaProfileError, match="457"):
        make_ds(ik, ic, not_after=T0 + dt.timedelta(days=500))
    with pytest.raises(iaca.IacaProfileError, match="20 years|limit"):
        make_iaca(not_after=T0 + dt.timedelta(days=25 * 365))
    with pytest.raises(iaca.IacaProfileError, match="country"):
        make_iaca(country="Japan")
    with pytest.raises(iaca.IacaProfileError, match="naive"):
        make_iaca(not_before=dt.datetime(2025, 1, 1))
    with pytest.raises(iaca.IacaProfileError, match="EC"):
        iaca.hash_for_key(object())


def test_time_outside_validity_fails_only_validity():
    ik, ic = make_iaca()
    _, ds = make_ds(ik, ic)
    late = T0 + dt.timedelta(days=401)
    assert names(iaca.check_document_signer(ds, ic, late)) == {"ds.validity"}
    assert names(iaca.check_iaca(ic, T0 - dt.timedelta(seconds=1))) == {"iaca.validity"}


def test_signer_of_another_iaca_is_refused():
    ik, ic = make_iaca()
    ok, oc = make_iaca()  # same name, other key
    _, ds = make_ds(ok, oc)
    failed = names(iaca.check_document_signer(ds, ic, NOW))
    assert "ds.issued_by_iaca" in failed and "ds.authority_key_identifier" in failed


def test_status_list_signer_is_not_a_document_signer():
    ik, ic = make_iaca()
    _, sl = make_ds(ik, ic, builder=iaca.status_list_signer_builder)
    assert names(iaca.check_document_signer(sl, ic, NOW)) == {"ds.extended_key_usage"}
    _, ds = make_ds(ik, ic)
    assert names(iaca.check_status_list_signer(ds, ic, NOW)) == {"status_signer.extended_key_usage"}


def _raw_cert(issuer_key, subject_key, *, issuer=None, extensions=(), days=100):
    name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(x509.NameOID.COMMON_NAME, "hand made")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
         .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(T0).not_valid_after(T0 + dt.timedelta(days=days)))
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    return b.sign(issuer_key, hashes.SHA256())


def test_iaca_missing_every_extension_fails_each_rule():
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _raw_cert(key, key)
    assert names(iaca.check_iaca(cert, NOW)) == {
        "iaca.basic_constraints", "iaca.key_usage", "iaca.subject_key_identifier",
        "iaca.issuer_alt_name", "iaca.crl_distribution_points",
    }


def test_iaca_wrong_key_usage_and_path_length():
    key = ec.generate_private_key(ec.SECP256R1())
    ku = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    cert = _raw_cert(key, key, extensions=[(x509.BasicConstraints(True, 1), True), (ku, True),
                                           (x509.NameConstraints([x509.DNSName("a.jp")], None), True)])
    failed = names(iaca.check_iaca(cert, NOW))
    assert {"iaca.basic_constraints", "iaca.key_usage", "iaca.disallowed_extensions"} <= failed


def test_iaca_other_country_and_key_type():
    ik, ic = make_iaca(country="DE")
    assert names(iaca.check_iaca(ic, NOW)) == {"iaca.subject"}
    assert iaca.failed(iaca.check_iaca(ic, NOW, country=None)) == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_accepts_the_chain(tmp_path):
    ik, ic = make_iaca()
    _, ds = make_ds(ik, ic, not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=30))
    (tmp_path / "iaca.pem").write_bytes(ic.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ds.pem").write_bytes(ds.public_bytes(serialization.Encoding.PEM))
    at = str(int((NOW + dt.timedelta(days=1)).timestamp()))
    out = subprocess.run(["openssl", "verify", "-attime", at, "-CAfile", tmp_path / "iaca.pem",
                          tmp_path / "ds.pem"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ds_issued_by_with_signature_verified_still_checks_names():
    """signature_verified=True (the reader's chain check verified this very pair) spares the
    second ECDSA verify, never the Name check; without it a foreign signature still fails."""
    ik, ic = make_iaca()
    _, ds = make_ds(ik, ic)
    plain = iaca.check_document_signer(ds, ic, NOW)
    spared = iaca.check_document_signer(ds, ic, NOW, signature_verified=True)
    assert [(c.name, c.passed, c.reason) for c in plain] == [(c.name, c.passed, c.reason) for c in spared]
    other_key, other = make_iaca(common_name="mcred OTHER IACA")
    assert "ds.issued_by_iaca" in names(iaca.check_document_signer(ds, other, NOW, signature_verified=True))
    _, forged = make_ds(other_key, ic)  # names ic as issuer, signed by another key
    assert "ds.issued_by_iaca" in names(iaca.check_document_signer(forged, ic, NOW))


def test_passed_rules_are_plain_checks():
    """Passed rules are built without the frozen __init__: equal, equally hashed, frozen."""
    import dataclasses

    ik, ic = make_iaca()
    _, ds = make_ds(ik, ic)
    for check in iaca.check_iaca(ic, NOW) + iaca.check_document_signer(ds, ic, NOW):
        assert check.passed
        twin = iaca.Check(check.name, check.passed, check.reason)
        assert check == twin and hash(check) == hash(twin) and repr(check) == repr(twin)
        with pytest.raises(dataclasses.FrozenInstanceError):
            check.passed = False


@pytest.mark.parametrize("curve", [ec.SECP256R1, ec.SECP384R1])
def test_iaca_self_signature_by_another_key_fails(curve):
    """iaca.self_signed takes the ECDSA path of the chain check when it decides, else asks
    cryptography: a self-signed-looking IACA signed by another key fails either way."""
    key = ec.generate_private_key(curve())
    other = ec.generate_private_key(curve())
    builder = iaca.iaca_builder(key.public_key(), common_name="mcred TEST IACA", not_before=T0,
                                not_after=T0 + dt.timedelta(days=3650), issuer_alt_name_uri=f"{BASE}/",
                                crl_uri=f"{BASE}/crl/iaca.crl", organization="mcred TEST")
    good, forged = iaca.sign(builder, key), iaca.sign(builder, other)
    assert "iaca.self_signed" not in names(iaca.check_iaca(good, NOW))
    bad = {c.name: c for c in iaca.check_iaca(forged, NOW)}
    assert not bad["iaca.self_signed"].passed
    assert bad["iaca.self_signed"].reason.startswith("self-signature does not verify")
    assert names(iaca.check_iaca(forged, NOW)) == {"iaca.self_signed"}


def test_iaca_profile_at_gives_check_iaca_at_any_time():
    """IacaProfile keeps the time-independent rules; ``at(now)`` adds the validity in its
    place: the same checks, in the same order, as check_iaca, before, during and after the
    validity, for a good and a forged IACA."""
    key, good = make_iaca()
    other = ec.generate_private_key(ec.SECP256R1())
    forged = iaca.sign(iaca.iaca_builder(key.public_key(), common_name="mcred TEST IACA", not_before=T0,
                                         not_after=T0 + dt.timedelta(days=3650), issuer_alt_name_uri=f"{BASE}/",
                                         crl_uri=f"{BASE}/crl/iaca.crl", organization="mcred TEST"), other)
    for cert in (good, forged):
        for country in ("JP", None, "DE"):
            profile = iaca.iaca_profile(cert, country=country)
            assert "iaca.validity" not in [c.name for c in profile.rules]
            for when in (T0 - dt.timedelta(seconds=1), NOW, T0 + dt.timedelta(days=3651)):
                assert profile.at(when) == iaca.check_iaca(cert, when, country=country)
    with pytest.raises(TypeError):
        iaca.iaca_profile(good).at(dt.datetime(2025, 6, 1))  # naive, as check_iaca refuses it


def test_extension_rules_fail_on_missing_and_wrong_criticality():
    """The rules read the extensions in one pass (iaca.checks._Extensions): a missing
    extension and a wrong critical flag still fail the rule that needs it, by name."""
    ik, ic = make_iaca()
    _, ds = make_ds(ik, ic)
    dk = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(ds.subject).issuer_name(ic.subject)
         .public_key(dk.public_key()).serial_number(ds.serial_number)
         .not_valid_before(ds.not_valid_before_utc).not_valid_after(ds.not_valid_after_utc))
    for ext in ds.extensions:
        if isinstance(ext.value, x509.SubjectKeyIdentifier):
            continue  # dropped
        critical = (not ext.critical) if isinstance(ext.value, x509.KeyUsage) else ext.critical
        b = b.add_extension(ext.value, critical=critical)
    broken = b.sign(ik, hashes.SHA256())
    failed = {c.name: c.reason for c in iaca.check_document_signer(broken, ic, NOW) if not c.passed}
    assert failed == {"ds.key_usage": "KeyUsage must be critical",
                      "ds.subject_key_identifier": "SubjectKeyIdentifier extension missing"}
