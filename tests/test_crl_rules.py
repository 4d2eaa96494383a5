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


def _entry(serial: int, *extensions) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - dt.timedelta(hours=2))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.build()


UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")


def test_an_entry_with_an_unprocessed_critical_extension_refuses_the_crl_whatever_follows_it():
    """RFC 5280 5.3: one such entry and the CRL is not used; a clean entry after it does not
    make the verdict good again (the scan stops at the first refusal, it is not the last
    entry's verdict)."""
    crl = _with(revoked=[_entry(6, (UNKNOWN, True)), _entry(7), _entry(8)])
    why = ca_crl.refusal(crl, CA, NOW)
    assert why is not None and why.startswith("the entry for serial 6 has critical extension 1.3.6.1.4.1.99999.1")


def test_the_memory_of_entry_scans_goes_by_the_signed_contents_not_by_the_signature():
    """One signature value verifies other contents under another key (ECDSA lets a key be
    derived for it): a clean CRL's scan kept by its signature alone answered for another CRL
    carrying the same signature bytes whose first entry the scan refuses."""
    clean = _with(revoked=[_entry(7)])
    for _ in range(50):  # a refused CRL whose signature has the clean one's length
        bad = _with(revoked=[_entry(6, (UNKNOWN, True))])
        if len(bad.signature) == len(clean.signature):
            break
    der = bad.public_bytes(serialization.Encoding.DER)
    forged = x509.load_der_x509_crl(der[:-len(bad.signature)] + clean.signature)
    assert forged.signature == clean.signature and forged.tbs_certlist_bytes == bad.tbs_certlist_bytes
    assert ca_crl._entry_refusal(clean) is None
    why = ca_crl._entry_refusal(forged)
    assert why is not None and "serial 6" in why


def test_an_entry_extension_processed_here_may_be_critical():
    """reasonCode and invalidityDate are read here (PROCESSED_ENTRY_EXTENSIONS): marked
    critical (RFC 5280 wants them non-critical, a foreign CA may not), they do not make the
    CRL unusable; only an extension not processed here does."""
    crl = _with(revoked=[_entry(6, (x509.CRLReason(x509.ReasonFlags.key_compromise), True),
                                (x509.InvalidityDate(dt.datetime(2026, 12, 1)), True))])
    assert ca_crl.judge(crl, CA, NOW) is None
    assert ca_crl.revocation_text(crl.get_revoked_certificate_by_serial_number(6)).startswith(
        "revoked (keyCompromise) at ")


def test_newest_first_of_two_scopes_goes_by_this_update_even_against_the_numbers():
    """cRLNumber grows within one scope (RFC 5280 5.2.3) only: of two issuingDistributionPoints
    the numbers say nothing of which list is newer, thisUpdate does."""
    east = x509.UniformResourceIdentifier("http://ca.test/crl/east.crl")
    west = x509.UniformResourceIdentifier("http://ca.test/crl/west.crl")
    old_east = _with((_idp(full_name=[east]), True), number=90, this=NOW - dt.timedelta(hours=5))
    new_west = _with((_idp(full_name=[west]), True), number=2, this=NOW - dt.timedelta(hours=1))
    for order in ([old_east, new_west], [new_west, old_east]):
        assert ca_crl.newest_first(order) == [new_west, old_east]
    # one scope (the same issuingDistributionPoint): the number decides, against thisUpdate
    old_number = _with((_idp(full_name=[east]), True), number=91, this=NOW - dt.timedelta(hours=6))
    assert ca_crl.newest_first([old_east, old_number]) == [old_number, old_east]


def test_newest_first_puts_crl_number_0_above_none_at_one_this_update():
    """0 is a cRLNumber (RFC 5280 5.2.3: a non-negative integer): of one thisUpdate, a list
    numbered 0 is above one with no number, in either order given."""
    same = NOW - dt.timedelta(hours=3)
    zero = _crl(number=0, this=same)
    unnumbered = (x509.CertificateRevocationListBuilder().issuer_name(CA.subject).last_update(same)
                  .next_update(NOW + dt.timedelta(days=1)).sign(KEY, hashes.SHA256()))
    for order in ([unnumbered, zero], [zero, unnumbered]):
        assert ca_crl.newest_first(order) == [zero, unnumbered]


def test_a_distribution_point_relative_to_its_crl_issuer_is_named_under_that_issuer():
    """RFC 5280 4.2.1.13: nameRelativeToCRLIssuer is relative to the point's cRLIssuer when it
    has one, not to the certificate's issuer; so a CRL of the certificate's issuer with the
    same relative name is another point (another partition)."""
    from cryptography.x509.oid import NameOID
    from test_ca_crl import _leaf

    east = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "east")])
    crl_issuer = x509.Name.from_rfc4514_string("CN=mcred TEST CRL issuer")
    cert = _leaf(points=[x509.DistributionPoint(None, east, None, [x509.DirectoryName(crl_issuer)])])
    assert ca_crl.certificate_dp_names(cert) == {x509.DirectoryName(x509.Name([*crl_issuer.rdns, east]))}
    assert ca_crl.scope(cert, _with((_idp(relative_name=east), True))) == (
        "the CRL's issuingDistributionPoint names none of the certificate's distribution points "
        "(another partition's CRL)")


def test_values_are_immutable_and_is_ca_is_a_bool():
    import dataclasses

    from test_ca_crl import _leaf

    entry = ca_crl.Revoked(5, NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.reason = "keyCompromise"
    assert {entry, ca_crl.Revoked(5, NOW)} == {entry}
    refused = ca_crl.Refusal("expired", "out of date")
    with pytest.raises(dataclasses.FrozenInstanceError):
        refused.kind = "future"
    assert hash(refused) == hash(ca_crl.Refusal("expired", "out of date"))
    no_basic_constraints = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=bare"))
                            .issuer_name(CA.subject).public_key(KEY.public_key()).serial_number(77)
                            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
                            .sign(KEY, hashes.SHA256()))
    assert ca_crl.is_ca(no_basic_constraints) is False
    assert ca_crl.is_ca(_leaf()) is False and ca_crl.is_ca(CA) is True


# ---- protocols.jpki.crl ------------------------------------------------------------------

def _jpki():
    from test_jpki_fixtures import pki

    from protocols.jpki import KeyType

    return pki(KeyType.EC_P384)


def _jpki_crl(p, *, profile=None, partition=None, purpose=None, issuer=None, issuer_key=None):
    from test_jpki_fixtures import NOW as JNOW

    from protocols.jpki import Purpose
    from protocols.jpki.crl import build_crl

    purpose = purpose or Purpose.SIGN
    return build_crl(profile=profile or p.profile, purpose=purpose, issuer=issuer or p.roots[purpose],
                     issuer_key=issuer_key or p.root_keys[purpose], partition=partition, revocations=[],
                     crl_number=3, this_update=JNOW - dt.timedelta(hours=1), next_update=JNOW + dt.timedelta(days=1))


def test_a_jpki_crl_has_exactly_the_extensions_rfc_5280_and_the_spec_give_it():
    """specs/revocation.md 2: cRLNumber and authorityKeyIdentifier non-critical (RFC 5280
    5.2.3, 5.2.1 after 4.2.1.1), and on a partition's CRL a critical issuingDistributionPoint
    naming that partition's directory name and nothing else: no only* flag (it speaks for
    every certificate of the partition), no reasons (it is complete), not indirect."""
    from test_jpki_fixtures import CHIYODA

    from protocols.jpki.crl import issuing_distribution_point

    p = _jpki()
    crl = _jpki_crl(p, partition=CHIYODA)
    assert [(type(e.value).__name__, e.critical) for e in crl.extensions] == [
        ("CRLNumber", False), ("AuthorityKeyIdentifier", False), ("IssuingDistributionPoint", True)]
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    assert idp == issuing_distribution_point(p.profile, CHIYODA)
    assert (idp.full_name, idp.relative_name) == ([x509.DirectoryName(p.profile.crldp_name(CHIYODA))], None)
    assert not (idp.only_contains_user_certs or idp.only_contains_ca_certs or idp.indirect_crl
                or idp.only_contains_attribute_certs) and idp.only_some_reasons is None


def test_an_unpartitioned_jpki_crl_has_no_issuing_distribution_point():
    """A profile without partitions has one CRL per root: no issuingDistributionPoint, so it
    speaks for every certificate of the root."""
    import dataclasses

    p = _jpki()
    crl = _jpki_crl(p, profile=dataclasses.replace(p.profile, partitioned_crls=False))
    assert [(type(e.value).__name__, e.critical) for e in crl.extensions] == [
        ("CRLNumber", False), ("AuthorityKeyIdentifier", False)]


def test_a_jpki_crl_is_only_built_by_its_purposes_root_with_that_roots_key():
    """A CRL of the signing root signed with the authentication root's key (or issued in
    its name) would list one root's revocations under the other's: refused before signing."""
    from test_jpki_fixtures import CHIYODA

    from protocols.jpki import ProfileError, Purpose

    p = _jpki()
    with pytest.raises(ProfileError, match="is not the sign root"):
        _jpki_crl(p, partition=CHIYODA, issuer=p.roots[Purpose.AUTH], issuer_key=p.root_keys[Purpose.AUTH])
    with pytest.raises(ProfileError, match="issuer_key does not belong to the issuer certificate"):
        _jpki_crl(p, partition=CHIYODA, issuer_key=p.root_keys[Purpose.AUTH])


def test_jpki_revocation_values_are_immutable():
    import dataclasses

    from protocols.jpki.crl import Revocation, RevocationEvent, RevocationReason

    held = Revocation(7, NOW, RevocationReason.CERTIFICATE_HOLD)
    event = RevocationEvent(7, NOW, RevocationReason.REMOVE_FROM_CRL)
    for value, field in ((held, "reason"), (event, "serial")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, 8)
    assert len({held, Revocation(7, NOW, RevocationReason.CERTIFICATE_HOLD), event}) == 2
