"""protocols.crl, the CRLs of the IACA, reader CAs and the time-stamping root: what a
conforming CRL must be (RFC 5280 5) when built, and why one is not relied on when judged.
Each test holds a rule that a mutation of the module could otherwise drop unnoticed."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols import crl as ca_crl

NOW = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)


def _ca(name: str = "mcred TEST reader CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


CA, KEY = _ca()


def _crl(*, this=NOW - dt.timedelta(hours=1), nxt=dt.timedelta(days=1), revoked=(), key=KEY, number=1):
    return ca_crl.crl_builder(CA, number=number, this_update=this, next_update=nxt,
                              revoked=revoked).sign(key, hashes.SHA256())


@pytest.mark.parametrize(("kwargs", "said"), [
    (dict(reason="certificateHold"), "revocation reason 'certificateHold'"),  # these CAs revoke for good
    (dict(reason="lost"), "revocation reason 'lost'"),
    (dict(revoked_at=NOW.replace(tzinfo=None)), "timezone-aware"),
])
def test_an_entry_with_a_reason_not_recorded_here_or_a_naive_time_is_refused(kwargs, said):
    args = {"serial_number": 5, "revoked_at": NOW, **kwargs}
    with pytest.raises(ca_crl.CrlError, match=said):
        ca_crl.Revoked(**args)


@pytest.mark.parametrize(("number", "ok"), [(0, True), (2**159 - 1, True), (-1, False), (2**159, False)])
def test_the_crl_number_is_a_non_negative_integer_of_at_most_20_octets(number, ok):
    if ok:
        assert ca_crl.number(_crl(number=number)) == number
    else:
        with pytest.raises(ca_crl.CrlError, match="cRLNumber"):
            _crl(number=number)


@pytest.mark.parametrize("nxt", [dt.timedelta(0), dt.timedelta(seconds=-1)])
def test_next_update_must_come_after_this_update(nxt):
    with pytest.raises(ca_crl.CrlError, match="nextUpdate must come after thisUpdate"):
        _crl(nxt=nxt)


def test_entries_read_back_as_built_and_a_serial_twice_is_refused():
    entries = [ca_crl.Revoked(7, NOW - dt.timedelta(hours=3)),
               ca_crl.Revoked(8, NOW - dt.timedelta(hours=2), "keyCompromise")]
    built = _crl(revoked=entries)
    # unspecified is recorded by leaving the reason out (RFC 5280 5.3.1)
    assert len(built.get_revoked_certificate_by_serial_number(7).extensions) == 0
    assert [ca_crl.Revoked.of(e) for e in sorted(built, key=lambda e: e.serial_number)] == entries
    assert ca_crl.revocation_text(built.get_revoked_certificate_by_serial_number(8)) == (
        "revoked (keyCompromise) at 2026-12-05T08:00:00Z")
    with pytest.raises(ca_crl.CrlError, match="serial 7 listed twice"):
        _crl(revoked=[entries[0], ca_crl.Revoked(7, NOW)])


def test_an_entry_with_a_reason_this_ca_does_not_record_is_refused_when_read_back():
    held = (x509.RevokedCertificateBuilder().serial_number(9).revocation_date(NOW)
            .add_extension(x509.CRLReason(x509.ReasonFlags.certificate_hold), critical=False).build())
    crl = ca_crl.crl_builder(CA, number=1, this_update=NOW, next_update=dt.timedelta(days=1)) \
        .add_revoked_certificate(held).sign(KEY, hashes.SHA256())
    with pytest.raises(ca_crl.CrlError, match="reason certificateHold is not one this CA records"):
        ca_crl.Revoked.of(crl.get_revoked_certificate_by_serial_number(9))


def test_judge_takes_a_current_crl_of_the_issuer_up_to_its_edges():
    assert ca_crl.judge(_crl(), CA, NOW) is None
    # thisUpdate up to SKEW (5 minutes) ahead of the clock; nextUpdate itself still current
    assert ca_crl.judge(_crl(this=NOW + dt.timedelta(minutes=5)), CA, NOW) is None
    assert ca_crl.judge(_crl(this=NOW + dt.timedelta(minutes=5, seconds=1)), CA, NOW) == (
        "thisUpdate 2026-12-05T10:05:01Z is in the future")
    crl = _crl(nxt=dt.timedelta(hours=1))  # nextUpdate = NOW
    assert ca_crl.judge(crl, CA, NOW) is None
    assert ca_crl.judge(crl, CA, NOW + dt.timedelta(seconds=1)) == (
        "out of date: nextUpdate 2026-12-05T10:00:00Z has passed")


def test_judge_refuses_another_issuers_crl_and_one_its_key_did_not_sign():
    other, other_key = _ca("mcred TEST another CA")
    assert ca_crl.judge(_crl(), other, NOW, what="the reader CA") == (
        "issued by CN=mcred TEST reader CA, not the reader CA")
    # the right name, another key: a forged list (say, without the revoked entry)
    assert ca_crl.judge(_crl(key=other_key), CA, NOW, what="the IACA") == "signature does not verify with the IACA's key"


def test_the_crls_extensions_are_non_critical_as_rfc_5280_requires():
    """cRLNumber (5.2.3), authorityKeyIdentifier (5.2.1) and an entry's reasonCode (5.3.1)
    are non-critical: a relying party that does not know one still reads the list."""
    built = _crl(revoked=[ca_crl.Revoked(8, NOW - dt.timedelta(hours=2), "keyCompromise")])
    assert [(type(e.value).__name__, e.critical) for e in built.extensions] == [
        ("CRLNumber", False), ("AuthorityKeyIdentifier", False)]
    assert [e.critical for e in built.get_revoked_certificate_by_serial_number(8).extensions] == [False]


def test_load_reads_der_and_pem_and_names_anything_else():
    built = _crl()
    der = built.public_bytes(serialization.Encoding.DER)
    pem = b"\n  " + built.public_bytes(serialization.Encoding.PEM)
    assert ca_crl.load(der) == built and ca_crl.load(pem) == built
    for junk in (b"not a CRL", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"):
        with pytest.raises(ca_crl.CrlError, match="not a CRL"):
            ca_crl.load(junk)


def _version_0(der: bytes) -> bytes:
    """The CRL with its version INTEGER 1 (v2) made 0: cryptography's InvalidVersion."""
    at = der.index(b"\x02\x01\x01")  # the first INTEGER of TBSCertList is the version
    return der[:at] + b"\x02\x01\x00" + der[at + 3:]


def _issuer_as(der: bytes, tag: int) -> bytes:
    """The CRL with its issuer's commonName re-typed (UTF8String 0c): a BIT STRING (03) is
    TypeError, an empty SET of the RDN is ValueError, when cryptography first builds it."""
    at = der.index(bytes.fromhex("0603550403") + b"\x0c") + 5
    return der[:at] + bytes([tag]) + der[at + 1:]


@pytest.mark.parametrize("damage", ["version 0", "a BIT STRING in the issuer"])
def test_load_refuses_a_crl_cryptography_refuses_late_and_the_relying_party_says_so(damage):
    """A CRL cryptography loads but refuses on first use: version 0 (InvalidVersion, no
    ValueError) escaped load() and the relying party's CRL parser; an issuer Name it cannot
    build (TypeError) escaped judge_crl, which compares the issuer before the signature
    (the CRL comes from a distribution point over plain HTTP, or with the signed document).
    Found by the deep fuzz campaign; both are a named CrlError, the relying party's check
    unavailable."""
    from reader.relying_party import _parse_crl

    der = _crl().public_bytes(serialization.Encoding.DER)
    bad = _version_0(der) if damage == "version 0" else _issuer_as(der, 0x03)
    with pytest.raises(ca_crl.CrlError, match="not a CRL"):
        ca_crl.load(bad)
    check = _parse_crl(bad)
    assert not isinstance(check, x509.CertificateRevocationList)
    assert check.passed is False and check.code == "unavailable" and "CRL does not parse" in check.reason
