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
        "revoked (keyCompromise) at 2026-12-05T08:00:00+00:00")
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
        "thisUpdate 2026-12-05T10:05:01+00:00 is in the future")
    crl = _crl(nxt=dt.timedelta(hours=1))  # nextUpdate = NOW
    assert ca_crl.judge(crl, CA, NOW) is None
    assert ca_crl.judge(crl, CA, NOW + dt.timedelta(seconds=1)) == (
        "out of date: nextUpdate 2026-12-05T10:00:00+00:00 has passed")


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


# -- what a relying party may not read into a CRL (RFC 5280 5.1.2.5, 5.2, 5.3, 6.3.3) --

def without_next_update(crl: x509.CertificateRevocationList, key) -> x509.CertificateRevocationList:
    """``crl`` signed again by ``key`` without its nextUpdate: cryptography's builder always
    writes one (RFC 5280 5.1.2.5 requires it of a conforming CA), a foreign CA's list may not."""
    from asn1crypto import crl as asn1_crl
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    whole = asn1_crl.CertificateList.load(crl.public_bytes(serialization.Encoding.DER))
    tbs = whole["tbs_cert_list"]
    kept = asn1_crl.TbsCertList({name: tbs[name] for name, *_ in asn1_crl.TbsCertList._fields  # noqa: SLF001
                                 if name != "next_update" and tbs[name].native is not None})
    algorithm = crl.signature_hash_algorithm
    signature = (key.sign(kept.dump(), padding.PKCS1v15(), algorithm) if isinstance(key, rsa.RSAPrivateKey)
                 else key.sign(kept.dump(), ec.ECDSA(algorithm)))
    return x509.load_der_x509_crl(asn1_crl.CertificateList({
        "tbs_cert_list": kept, "signature_algorithm": whole["signature_algorithm"], "signature": signature}).dump())


def _with(*extensions, revoked=(), number=1, this=NOW - dt.timedelta(hours=1), key=KEY):
    """A CRL of CA with more (extension, critical) pairs, and more entries (built)."""
    builder = ca_crl.crl_builder(CA, number=number, this_update=this, next_update=dt.timedelta(days=1))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(key, hashes.SHA256())


def _leaf(*, ca=False, points=None, serial=42):
    """A certificate of CA: a CA certificate when ``ca``, with ``points`` (DistributionPoint
    list) as its cRLDistributionPoints."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(f"CN=leaf {serial}"))
               .issuer_name(CA.subject).public_key(key.public_key()).serial_number(serial)
               .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if points is not None:
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    return builder.sign(KEY, hashes.SHA256())


def _idp(*, full_name=None, relative_name=None, user=False, ca=False, reasons=None, indirect=False,
         attribute=False) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(full_name=full_name, relative_name=relative_name,
                                         only_contains_user_certs=user, only_contains_ca_certs=ca,
                                         only_some_reasons=reasons, indirect_crl=indirect,
                                         only_contains_attribute_certs=attribute)


URL = x509.UniformResourceIdentifier("http://ca.test/crl/east.crl")
POINT = x509.DistributionPoint([URL], None, None, None)


def test_a_crl_without_next_update_says_who_is_revoked_but_never_that_one_is_not():
    """RFC 5280 5.1.2.5: a conforming CA MUST give nextUpdate. judge took a list without one
    as current for ever; now its entries are believed (refusal: None) but its silence is not
    (incomplete), and judge, which a caller reads as "can say good", refuses it by name."""
    crl = without_next_update(_crl(revoked=[ca_crl.Revoked(7, NOW - dt.timedelta(hours=2))]), KEY)
    assert crl.next_update_utc is None and crl.is_signature_valid(CA.public_key())
    assert ca_crl.refusal(crl, CA, NOW + dt.timedelta(days=400)) is None
    said = ca_crl.incomplete(crl)
    assert said is not None and said.startswith("it has no nextUpdate (RFC 5280 5.1.2.5 requires one)"), said
    assert ca_crl.judge(crl, CA, NOW) == said


EVERY_REASON = frozenset(x509.ReasonFlags) - {x509.ReasonFlags.unspecified, x509.ReasonFlags.remove_from_crl}


@pytest.mark.parametrize(("reasons", "complete"), [
    (frozenset({x509.ReasonFlags.key_compromise}), False),
    (EVERY_REASON - {x509.ReasonFlags.aa_compromise}, False),
    (EVERY_REASON, True),
])
def test_a_crl_for_some_reasons_only_cannot_say_good(reasons, complete):
    """onlySomeReasons (RFC 5280 5.2.5, 6.3.3 (d)): a list of some reasons is one partition;
    revocations for the others are elsewhere. With no distribution point named, it is still
    the whole issuer's scope."""
    assert EVERY_REASON == ca_crl.ALL_REASONS
    crl = _with((_idp(reasons=reasons), True))
    assert ca_crl.refusal(crl, CA, NOW) is None and ca_crl.scope(_leaf(points=[POINT]), crl) is None
    said = ca_crl.incomplete(crl)
    if complete:
        assert said is None
    else:
        assert said is not None and said.startswith("it lists revocations for some reasons only "
                                                    "(issuingDistributionPoint onlySomeReasons: "), said


def test_a_delta_crl_is_never_taken_for_a_complete_list():
    delta = _with((x509.DeltaCRLIndicator(1), True), number=2)
    assert ca_crl.refusal(delta, CA, NOW) == (
        "a delta CRL (deltaCRLIndicator: only the changes since base CRL number 1); delta CRLs are not "
        "supported here, and one is not a complete list")
    assert ca_crl.judge(delta, CA, NOW) == ca_crl.refusal(delta, CA, NOW)


def test_an_indirect_crl_is_refused_as_unsupported():
    crl = _with((_idp(indirect=True), True))
    assert ca_crl.refusal(crl, CA, NOW) == (
        "an indirect CRL (issuingDistributionPoint indirectCRL: it may list other CAs' certificates); indirect "
        "CRLs are not supported here")


def test_a_critical_extension_not_processed_here_makes_the_crl_unusable():
    """RFC 5280 5.2: a CRL with a critical extension the relying party cannot process MUST
    NOT be used; cryptography reads such an extension as an UnrecognizedExtension and raises
    nothing, so judge took it. Non-critical, it is ignored; and so for a CRL entry (5.3),
    whichever entry carries it."""
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    assert ca_crl.judge(_with((unknown, False)), CA, NOW) is None
    assert ca_crl.refusal(_with((unknown, True)), CA, NOW) == (
        "critical extension 1.3.6.1.4.1.99999.1 is not processed here (RFC 5280 5.2)")
    # freshestCRL must not be critical (5.2.6): one that is asks for deltas that are not read here
    fresh = x509.FreshestCRL([POINT])
    assert ca_crl.judge(_with((fresh, False)), CA, NOW) is None
    assert ca_crl.refusal(_with((fresh, True)), CA, NOW) == (
        "critical extension 2.5.29.46 is not processed here (RFC 5280 5.2)")

    def entry(serial, critical):
        return (x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - dt.timedelta(hours=2))
                .add_extension(unknown, critical=critical).build())

    assert ca_crl.judge(_with(revoked=[entry(5, False)]), CA, NOW) is None
    assert ca_crl.refusal(_with(revoked=[entry(5, False), entry(6, True)]), CA, NOW) == (
        "the entry for serial 6 has critical extension 1.3.6.1.4.1.99999.1, which is not processed here "
        "(RFC 5280 5.3)")
    # certificateIssuer (critical, of indirect CRLs only) is not processed either
    issuer = (x509.RevokedCertificateBuilder().serial_number(7).revocation_date(NOW - dt.timedelta(hours=2))
              .add_extension(x509.CertificateIssuer([x509.DirectoryName(CA.subject)]), critical=True).build())
    assert "critical extension 2.5.29.29" in ca_crl.refusal(_with(revoked=[issuer]), CA, NOW)


def test_the_issuing_distribution_point_flags_decide_the_scope():
    """RFC 5280 6.3.3 (b)(2): an issuingDistributionPoint naming no distribution point is the
    whole issuer's scope (it was taken for "another scope"), as far as its flags go:
    onlyContainsUserCerts leaves out a CA certificate, onlyContainsCACerts an end-entity
    one, onlyContainsAttributeCerts every public-key certificate."""
    user, ca = _leaf(points=[POINT]), _leaf(ca=True, points=[POINT])
    users_only = _with((_idp(user=True), True))
    assert ca_crl.scope(user, users_only) is None
    assert ca_crl.scope(ca, users_only) == ("the CRL's issuingDistributionPoint says it lists end-entity "
                                           "certificates only (onlyContainsUserCerts), and this is a CA certificate")
    cas_only = _with((_idp(ca=True), True))
    assert ca_crl.scope(ca, cas_only) is None
    assert ca_crl.scope(user, cas_only) == ("the CRL's issuingDistributionPoint says it lists CA certificates "
                                           "only (onlyContainsCACerts), and this is an end-entity certificate")
    attributes = _with((_idp(attribute=True), True))
    assert ca_crl.scope(user, attributes).startswith("the CRL's issuingDistributionPoint says it lists attribute "
                                                     "certificates only (onlyContainsAttributeCerts)")
    assert ca_crl.scope(ca, attributes) == ca_crl.scope(user, attributes)
    # and no issuingDistributionPoint at all: every certificate of the issuer
    assert ca_crl.scope(user, _crl()) is None and ca_crl.scope(ca, _crl()) is None


def test_distribution_point_names_full_or_relative_to_the_issuer_decide_the_partition():
    """A partition's CRL names its distribution point by fullName or by a name relative to
    the CRL issuer (RFC 5280 5.2.5); the certificate's point, relative to its issuer (or
    cRLIssuer), must be the same name."""
    east = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "east")])
    west = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "west")])
    as_full = x509.DirectoryName(x509.Name([*CA.subject.rdns, east]))
    relative_east = _leaf(points=[x509.DistributionPoint(None, east, None, None)])
    full_east = _leaf(points=[x509.DistributionPoint([as_full], None, None, None)])
    for crl in (_with((_idp(relative_name=east), True)), _with((_idp(full_name=[as_full]), True))):
        assert ca_crl.scope(relative_east, crl) is None and ca_crl.scope(full_east, crl) is None
        for other in (_leaf(points=[x509.DistributionPoint(None, west, None, None)]), _leaf(points=[POINT]),
                      _leaf()):
            assert ca_crl.scope(other, crl) == ("the CRL's issuingDistributionPoint names none of the "
                                                "certificate's distribution points (another partition's CRL)")
    # a point that names only its cRLIssuer: the CRL's names must include that issuer
    by_issuer = _leaf(points=[x509.DistributionPoint(None, None, None, [x509.DirectoryName(CA.subject)])])
    assert ca_crl.scope(by_issuer, _with((_idp(full_name=[x509.DirectoryName(CA.subject)]), True))) is None


def test_newest_first_by_crl_number_else_this_update():
    older, newer = _crl(number=3), _crl(number=4, this=NOW - dt.timedelta(hours=2))
    # the number decides within one scope, even against thisUpdate
    assert ca_crl.newest_first([older, newer]) == [newer, older]
    assert ca_crl.newest_first([newer, older]) == [newer, older]
    # without a number on each, thisUpdate
    latest = without_next_update(_crl(this=NOW - dt.timedelta(minutes=30)), KEY)
    plain = (x509.CertificateRevocationListBuilder().issuer_name(CA.subject).last_update(NOW - dt.timedelta(hours=3))
             .next_update(NOW + dt.timedelta(days=1)).sign(KEY, hashes.SHA256()))
    assert ca_crl.newest_first([plain, older, latest]) == [latest, older, plain]
    # and of one thisUpdate, the number then decides, none counting below any
    same = NOW - dt.timedelta(hours=3)
    unnumbered = (x509.CertificateRevocationListBuilder().issuer_name(CA.subject).last_update(same)
                  .next_update(NOW + dt.timedelta(days=1)).sign(KEY, hashes.SHA256()))
    five, six = _crl(number=5, this=same), _with((_idp(user=True), True), number=6, this=same)  # two scopes
    for order in ([unnumbered, five, six], [six, unnumbered, five], [five, six, unnumbered]):
        assert ca_crl.newest_first(order) == [six, five, unnumbered]


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


def test_a_crl_whose_signature_cannot_be_checked_with_the_issuers_key_is_refused_by_that_name():
    """An issuer certificate of the CRL's name whose key cannot verify signatures at all (an
    X25519 key): refused as "unverifiable", with cryptography's reason, never a TypeError."""
    from cryptography.hazmat.primitives.asymmetric import x25519

    odd = (x509.CertificateBuilder().subject_name(CA.subject).issuer_name(CA.subject)
           .public_key(x25519.X25519PrivateKey.generate().public_key()).serial_number(9)
           .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=9))
           .sign(KEY, hashes.SHA256()))
    why = ca_crl.refusal_of(_crl(), odd, NOW)
    assert why is not None and why.kind == "signature"
    assert why.text.startswith("signature unverifiable: Key must be an rsa, dsa, ec")


def test_a_crl_with_an_extension_twice_is_refused_as_unreadable():
    """RFC 5280 4.2 (as for certificates, a CRL "MUST NOT include more than one instance of a
    particular extension"): cryptography refuses to read such extensions; the CRL is not
    used, with that reason. Built by hand (asn1crypto), re-signed by the CA."""
    from asn1crypto import crl as asn1_crl

    signed = asn1_crl.CertificateList.load(_crl().public_bytes(serialization.Encoding.DER))
    tbs = signed["tbs_cert_list"]
    tbs["crl_extensions"] = asn1_crl.TBSCertListExtensions([*tbs["crl_extensions"], tbs["crl_extensions"][0]])
    tbs_der = tbs.dump(force=True)
    twice = x509.load_der_x509_crl(asn1_crl.CertificateList({
        "tbs_cert_list": asn1_crl.TbsCertList.load(tbs_der), "signature_algorithm": signed["signature_algorithm"],
        "signature": KEY.sign(tbs_der, ec.ECDSA(hashes.SHA256()))}).dump())
    assert ca_crl.refusal_of(twice, CA, NOW) == ca_crl.Refusal(
        "extensions", "extensions unreadable: Duplicate 2.5.29.20 extension found")


def test_the_remembered_scan_of_a_crls_entries_gives_the_same_verdict_again():
    """The entries' scan is kept by the CRL's signature (a national CRL's entries take long
    to read): the same CRL judged again is refused again, for the same entry, and a clean
    one passes again; neither verdict leaks to the other."""
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    bad_entry = (x509.RevokedCertificateBuilder().serial_number(6).revocation_date(NOW - dt.timedelta(hours=2))
                 .add_extension(unknown, critical=True).build())
    bad, clean = _with(revoked=[bad_entry]), _with(revoked=[])
    first = ca_crl.refusal(bad, CA, NOW)
    assert first is not None and first.startswith("the entry for serial 6 has critical extension")
    for _ in range(2):
        assert ca_crl.refusal(bad, CA, NOW) == first
        assert ca_crl.refusal(clean, CA, NOW) is None


def test_an_entry_with_an_extension_twice_makes_the_crl_unusable():
    """RFC 5280 5.3: an entry whose extensions cannot be read cannot say why or since when
    its certificate was revoked; the CRL is refused naming the entry, never taken as if the
    entry had none. Built by hand (asn1crypto), re-signed by the CA."""
    from asn1crypto import crl as asn1_crl

    entry = (x509.RevokedCertificateBuilder().serial_number(0x2A).revocation_date(NOW - dt.timedelta(hours=2))
             .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
    signed = asn1_crl.CertificateList.load(_with(revoked=[entry]).public_bytes(serialization.Encoding.DER))
    tbs = signed["tbs_cert_list"]
    revoked = tbs["revoked_certificates"][0]
    revoked["crl_entry_extensions"] = asn1_crl.CRLEntryExtensions([*revoked["crl_entry_extensions"],
                                                                   revoked["crl_entry_extensions"][0]])
    tbs["revoked_certificates"] = asn1_crl.RevokedCertificates([revoked])
    tbs_der = tbs.dump(force=True)
    twice = x509.load_der_x509_crl(asn1_crl.CertificateList({
        "tbs_cert_list": asn1_crl.TbsCertList.load(tbs_der), "signature_algorithm": signed["signature_algorithm"],
        "signature": KEY.sign(tbs_der, ec.ECDSA(hashes.SHA256()))}).dump())
    why = ca_crl.refusal_of(twice, CA, NOW)
    assert why is not None and why.kind == "extensions"
    assert why.text.startswith("the entry for serial 2a has unreadable extensions: ")
