"""protocols.crl and protocols.jpki.crl: rules a mutation test of the two modules found no
test holding (each mutant survived tests/test_ca_crl.py and its neighbours). The helpers
are test_ca_crl's, so that a CRL here is one of the same CA."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_ca_crl import CA, KEY, NOW, _crl, _idp, _with

from protocols import crl as ca_crl


def _extension_twice() -> bytes:
    """DER of a CRL of CA with its cRLNumber twice (RFC 5280 4.2: at most one instance of an
    extension), re-signed by the CA."""
    from asn1crypto import crl as asn1_crl

    signed = asn1_crl.CertificateList.load(_crl().public_bytes(serialization.Encoding.DER))
    tbs = signed["tbs_cert_list"]
    tbs["crl_extensions"] = asn1_crl.TBSCertListExtensions([*tbs["crl_extensions"], tbs["crl_extensions"][0]])
    tbs_der = tbs.dump(force=True)
    return asn1_crl.CertificateList({
        "tbs_cert_list": asn1_crl.TbsCertList.load(tbs_der), "signature_algorithm": signed["signature_algorithm"],
        "signature": KEY.sign(tbs_der, ec.ECDSA(hashes.SHA256()))}).dump()


def test_load_refuses_a_crl_whose_extensions_cryptography_reads_only_later():
    """load() reads the extensions at once: the wallet's reader CRLs are sorted by
    cRLNumber (number(), which catches ValueError only) before any is judged, so a CRL with
    an extension twice must be a named CrlError here, not a DuplicateExtension there."""
    with pytest.raises(ca_crl.CrlError, match="not a CRL: DuplicateExtension"):
        ca_crl.load(_extension_twice())


def test_newest_first_takes_any_iterable_once():
    """newest_first(Iterable): a generator is read once, so every CRL comes back, not those
    left after the check that each has a cRLNumber consumed the rest."""
    three, four = _crl(number=3), _crl(number=4)
    assert ca_crl.newest_first(c for c in (three, four)) == [four, three]
    assert ca_crl.newest_first(iter([])) == []


def test_idp_names_is_none_without_an_issuing_distribution_point():
    assert ca_crl.idp_names(_crl()) is None
    # one with only flags names no point either: the issuer's whole scope
    assert ca_crl.idp_names(_with((_idp(user=True), True))) is None
    assert ca_crl.only_some_reasons(_crl()) is None and ca_crl.issuing_distribution_point(_crl()) is None


def _entry_crl(serial: int) -> x509.CertificateRevocationList:
    entry = (x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - dt.timedelta(hours=2))
             .build())
    return _with(revoked=[entry])


def test_the_entries_of_one_crl_are_scanned_once_and_the_memory_of_scans_stays_bounded(monkeypatch):
    """A national CRL's entries take longer to scan than its signature to verify: the
    verdict is kept by signature, so judging the same CRL again reads no entry; and only the
    last _ENTRY_SCANS_KEPT verdicts are kept (least recently used out first), so a relying
    party that runs for months does not grow with every CRL it ever saw."""
    scanned: list[int] = []
    real = ca_crl.entry_refusal

    def counting(entry):
        scanned.append(entry.serial_number)
        return real(entry)

    monkeypatch.setattr(ca_crl, "entry_refusal", counting)
    monkeypatch.setattr(ca_crl, "_ENTRY_SCANS", type(ca_crl._ENTRY_SCANS)())
    first = _entry_crl(1)
    assert ca_crl.refusal(first, CA, NOW) is None and scanned == [1]
    assert ca_crl.refusal(first, CA, NOW) is None and scanned == [1]
    kept = ca_crl._ENTRY_SCANS_KEPT
    others = [_entry_crl(100 + i) for i in range(kept)]
    for i, crl in enumerate(others):
        assert ca_crl.refusal(crl, CA, NOW) is None
        if i == kept // 2:
            # the first one, used again, is the most recently used one
            assert ca_crl.refusal(first, CA, NOW) is None
    assert len(ca_crl._ENTRY_SCANS) == kept
    # the first was used since the second of the others was: that one went, the first stayed
    del scanned[:]
    ca_crl.refusal(first, CA, NOW)
    ca_crl.refusal(others[-1], CA, NOW)
    assert scanned == []
    ca_crl.refusal(others[0], CA, NOW)
    assert scanned == [100]
