"""The wallet's reader CA revocation lists (wallet_sim/reader_crls.py), rule by rule, where
mutation testing found no test holding the rule: every certificate of a reader's path is
judged by its own issuer's list (RFC 5280 6.3; a reader CA under a root), only a list that
speaks for the certificate counts (issuingDistributionPoint scope, RFC 5280 6.3.3 (b)(2)),
the newest current list decides, and a refresh replaces all the lists or none."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols import crl as ca_crl
from wallet_sim.reader_crls import ReaderCrlError, ReaderCrls

NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key, issuer: x509.Certificate | None, issuer_key, *, ca: bool, serial: int) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer.subject if issuer else _name(cn))
         .public_key(key.public_key()).serial_number(serial).not_valid_before(NOW - dt.timedelta(days=10))
         .not_valid_after(NOW + dt.timedelta(days=300))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca and issuer else None), critical=True))
    return b.sign(issuer_key, hashes.SHA256())


class Pki:
    """A root reader CA, a reader CA under it, and a reader certificate of that one."""

    def __init__(self) -> None:
        self.root_key, self.ca_key, self.leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        self.root = _cert("Reader Root", self.root_key, None, self.root_key, ca=True, serial=1)
        self.ca = _cert("Reader CA", self.ca_key, self.root, self.root_key, ca=True, serial=2)
        self.leaf = _cert("Reader 1", self.leaf_key, self.ca, self.ca_key, ca=False, serial=3)

    @property
    def path(self) -> list[x509.Certificate]:
        return [self.leaf, self.ca]

    def crl(self, of: str, *, number: int = 1, revoked=(), this_update=NOW - dt.timedelta(hours=1),
            next_update=dt.timedelta(days=7), idp: x509.IssuingDistributionPoint | None = None) -> bytes:
        issuer, key = (self.root, self.root_key) if of == "root" else (self.ca, self.ca_key)
        builder = ca_crl.crl_builder(issuer, number=number, this_update=this_update, next_update=next_update,
                                     revoked=[ca_crl.Revoked(s, NOW - dt.timedelta(days=1), "keyCompromise")
                                              for s in revoked])
        if idp is not None:
            builder = builder.add_extension(idp, critical=True)
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _lists(*named: bytes) -> ReaderCrls:
    return ReaderCrls.load([(f"crl{i}", d) for i, d in enumerate(named)])


def test_each_certificate_of_the_path_is_judged_by_its_own_issuers_list():
    """The reader certificate by its reader CA's list, the reader CA by the root's."""
    pki = Pki()
    assert _lists(pki.crl("root"), pki.crl("ca"))(pki.path, pki.root, NOW) is None
    why = _lists(pki.crl("root"), pki.crl("ca", revoked=[3]))(pki.path, pki.root, NOW)
    assert why.startswith("CN=Reader 1,C=JP (serial 3) revoked (keyCompromise)") and "CN=Reader CA,C=JP" in why


def test_a_revoked_reader_ca_revokes_the_reader_under_it():
    pki = Pki()
    why = _lists(pki.crl("root", revoked=[2]), pki.crl("ca"))(pki.path, pki.root, NOW)
    assert why is not None and why.startswith("CN=Reader CA,C=JP (serial 2) revoked")


def test_no_list_of_the_reader_ca_under_the_root_fails_closed():
    pki = Pki()
    why = _lists(pki.crl("root"))(pki.path, pki.root, NOW)
    assert why is not None and "no revocation list of reader CA CN=Reader CA,C=JP is held" in why


def test_a_current_list_decides_over_a_newer_one_out_of_date():
    """A list whose nextUpdate has passed says nothing (fail closed); an older list still
    current does (here: it revokes the reader)."""
    pki = Pki()
    stale = pki.crl("ca", number=2, this_update=NOW - dt.timedelta(days=3), next_update=dt.timedelta(days=1))
    current = pki.crl("ca", number=1, revoked=[3], this_update=NOW - dt.timedelta(days=4),
                      next_update=dt.timedelta(days=30))
    why = _lists(pki.crl("root"), stale, current)(pki.path, pki.root, NOW)
    assert why is not None and "revoked (keyCompromise)" in why and "number 1" in why


def test_of_two_current_lists_of_one_number_the_later_decides():
    pki = Pki()
    earlier = pki.crl("ca", number=5, this_update=NOW - dt.timedelta(days=2))
    later = pki.crl("ca", number=5, revoked=[3], this_update=NOW - dt.timedelta(hours=2))
    for order in ((earlier, later), (later, earlier)):
        why = _lists(pki.crl("root"), *order)(pki.path, pki.root, NOW)
        assert why is not None and "revoked (keyCompromise)" in why


@pytest.mark.parametrize("idp", [
    x509.IssuingDistributionPoint(None, None, False, True, None, False, False),  # onlyContainsCACerts
    x509.IssuingDistributionPoint([x509.UniformResourceIdentifier("http://ca.test/partition-2.crl")], None,
                                  False, False, None, False, False),  # another partition's list
], ids=["only-ca-certs", "another-partition"])
def test_a_list_that_does_not_speak_for_the_reader_certificate_is_not_taken_as_its_silence(idp):
    """RFC 5280 6.3.3 (b)(2): a CRL whose issuingDistributionPoint limits it to CA
    certificates, or to a distribution point the certificate does not name, does not list
    the reader certificate whatever happened to it; its silence is not "not revoked"."""
    pki = Pki()
    why = _lists(pki.crl("root"), pki.crl("ca", idp=idp))(pki.path, pki.root, NOW)
    assert why is not None and "no current revocation list of reader CA CN=Reader CA,C=JP" in why
    assert "issuingDistributionPoint" in why


def test_a_list_for_end_entity_certificates_speaks_for_the_reader_certificate():
    pki = Pki()
    users = x509.IssuingDistributionPoint(None, None, True, False, None, False, False)
    assert _lists(pki.crl("root"), pki.crl("ca", idp=users))(pki.path, pki.root, NOW) is None
    why = _lists(pki.crl("root"), pki.crl("ca", idp=users, revoked=[3]))(pki.path, pki.root, NOW)
    assert why is not None and "revoked (keyCompromise)" in why


def test_a_refresh_replaces_all_the_lists_sorted_or_none_and_forgets_the_last_error():
    pki = Pki()
    served = {"root": pki.crl("root"), "ca": pki.crl("ca", number=1)}
    lists = ReaderCrls.load(served.items(), reload=lambda: list(served.items()))
    assert lists(pki.path, pki.root, NOW) is None
    served["ca-new"] = pki.crl("ca", number=2, revoked=[3])
    served["junk"] = b"not a CRL"
    assert not lists.refresh() and lists.last_error.startswith("junk: ")
    assert len(lists) == 2 and lists(pki.path, pki.root, NOW) is None  # the held lists, all of them, kept
    del served["junk"]
    assert lists.refresh() and lists.last_error is None and len(lists) == 3
    # the newest list of the reader CA decides, wherever it came in the reload
    assert "revoked (keyCompromise)" in lists(pki.path, pki.root, NOW)
    assert lists.crls[0] is not None and ca_crl.number(lists.crls[0]) == 2


def test_a_list_that_is_not_a_crl_is_named_and_none_is_taken():
    pki = Pki()
    with pytest.raises(ReaderCrlError, match="^second: "):
        ReaderCrls.load([("first", pki.crl("ca")), ("second", b"\x30\x00")])
