"""Issue -> present -> verify with our own stack; each tamper fails its named check."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import cbor, cose, mdoc

SETTINGS = settings(max_examples=60, deadline=None)
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DOC_TYPE = "org.iso.18013.5.1.mDL"
NS = "org.iso.18013.5.1"
ELEMENTS = {NS: {"family_name": "Yamada", "given_name": "Taro", "birth_date": dt.date(1990, 4, 1),
                 "portrait": b"\xff\xd8" + bytes(40), "age_over_18": True}}


def make_pki(now: dt.datetime = NOW, *, ds_eku: bool = True):
    """A throw-away IACA and document signer (P-256); returns (iaca_cert, ds_key, ds_cert)."""
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    iaca_key, ds_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    start = now - dt.timedelta(days=30)
    iaca = (
        x509.CertificateBuilder().subject_name(name("test iaca")).issuer_name(name("test iaca"))
        .public_key(iaca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(iaca_key, hashes.SHA256())
    )
    b = (
        x509.CertificateBuilder().subject_name(name("test ds")).issuer_name(iaca.subject)
        .public_key(ds_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + dt.timedelta(days=365))
    )
    if ds_eku:
        b = b.add_extension(x509.ExtendedKeyUsage([mdoc.EKU_MDL_DS]), critical=True)
    return iaca, ds_key, b.sign(iaca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    return make_pki()


@pytest.fixture(scope="module")
def device_key():
    return ec.generate_private_key(ec.SECP256R1())


def issue(pki, device_key, **kw):
    iaca, ds_key, ds_cert = pki
    return mdoc.build_issuer_signed(
        kw.pop("elements", ELEMENTS), kw.pop("doc_type", DOC_TYPE), device_key.public_key(), cose.key_signer(ds_key),
        [ds_cert.public_bytes(Encoding.DER)],
        NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=300), **kw,
    )


def transcript() -> mdoc.SessionTranscript:
    e_dev = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    e_rdr = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    return mdoc.SessionTranscript.build(mdoc.DeviceEngagement.build(e_dev).encode(), e_rdr, None)


def present(issuer_signed, device_key, st, **kw) -> bytes:
    doc = mdoc.build_document(issuer_signed, st, signer=cose.key_signer(device_key), **kw)
    return mdoc.DeviceResponse((doc,)).encode()


def verify(pki, data, st, **kw):
    return mdoc.verify_device_response(data, trust_anchors=[pki[0]], session_transcript=st, now=kw.pop("now", NOW), **kw)


def test_issue_present_verify(pki, device_key):
    issued = issue(pki, device_key)
    st = transcript()
    result = verify(pki, present(issued, device_key, st), st)
    assert result.valid, result.to_json()
    assert result.documents[0].elements[NS]["birth_date"] == dt.date(1990, 4, 1)
    assert result.to_json()["documents"][0]["elements"][NS]["birth_date"] == "1990-04-01"


def test_issued_items_have_fresh_salts_and_random_ids(pki, device_key):
    a, b = issue(pki, device_key).items()[NS], issue(pki, device_key).items()[NS]
    assert all(len(i.random) >= 16 for i in a)
    assert {i.random for i in a}.isdisjoint({i.random for i in b})
    assert len({i.digest_id for i in a}) == len(a)
    assert [i.digest_id for i in a] != list(range(len(a)))


def test_mso_tdate_and_full_date_encoding(pki, device_key):
    issued = issue(pki, device_key)
    raw, _ = cbor.unembed(issued.issuer_auth.payload)
    validity = cbor.loads(raw)  # check tags on the wire, not the decoded datetimes
    assert b"\xc0\x74" in raw  # tag 0 + 20-char text: YYYY-MM-DDTHH:MM:SSZ
    assert validity["validityInfo"]["validFrom"].tzinfo is not None
    item = next(i for i in issued.items()[NS] if i.element_identifier == "birth_date")
    assert b"\xd9\x03\xec\x6a1990-04-01" in item.raw


def test_selective_disclosure(pki, device_key):
    st = transcript()
    data = present(issue(pki, device_key), device_key, st, disclose={NS: ["family_name", "age_over_18"]})
    result = verify(pki, data, st)
    assert result.valid
    assert set(result.documents[0].elements[NS]) == {"family_name", "age_over_18"}


def test_device_mac_path(pki, device_key):
    st = transcript()
    reader = ec.generate_private_key(ec.SECP256R1())
    emac = mdoc.derive_emac_key(mdoc.ecdh(device_key, reader.public_key()), st)
    doc = mdoc.build_document(issue(pki, device_key), st, emac_key=emac)
    data = mdoc.DeviceResponse((doc,)).encode()
    assert verify(pki, data, st, reader_private_key=reader).valid
    assert verify(pki, data, st, reader_private_key=ec.generate_private_key(ec.SECP256R1())).failed() == ["device_authentication"]


def test_status_round_trip(pki, device_key):
    status = mdoc.MsoStatus(mdoc.StatusListRef(42, "https://example.jp/sl/1"), mdoc.IdentifierListRef(b"\x01\x02", "https://example.jp/il"))
    assert issue(pki, device_key, status=status).mso().status == status


def test_other_curves_and_digest_algs(device_key):
    iaca, _, _ = pki = make_pki()
    for alg in ("SHA-384", "SHA-512"):
        st = transcript()
        dk = ec.generate_private_key(ec.SECP384R1())
        data = present(issue(pki, dk, digest_alg=alg), dk, st)
        assert verify(pki, data, st).valid


def test_wrong_transcript_fails_device_authentication(pki, device_key):
    data = present(issue(pki, device_key), device_key, transcript())
    assert verify(pki, data, transcript()).failed() == ["device_authentication"]
    assert verify(pki, data, None).failed() == ["device_authentication"]


def test_expired_and_not_yet_valid(pki, device_key):
    st = transcript()
    data = present(issue(pki, device_key), device_key, st)
    assert verify(pki, data, st, now=NOW + dt.timedelta(days=301)).failed() == ["validity"]
    assert verify(pki, data, st, now=NOW - dt.timedelta(days=2)).failed() == ["validity"]


def test_ds_without_eku_fails_chain(device_key):
    pki = make_pki(ds_eku=False)
    st = transcript()
    assert verify(pki, present(issue(pki, device_key), device_key, st), st).failed() == ["issuer_certificate_chain"]


def test_extra_checks_and_chain_cache(pki, device_key):
    st = transcript()
    data = present(issue(pki, device_key, status=mdoc.MsoStatus(mdoc.StatusListRef(7, "u"))), device_key, st)

    def status_check(ctx: mdoc.DocumentContext) -> mdoc.Check:
        return mdoc.Check("status", ctx.mso.status.status_list.idx != 7, "idx 7 is revoked in this test")

    verifier = mdoc.MdocVerifier([pki[0]], extra_checks=[status_check])
    first = verifier.verify(data, session_transcript=st, now=NOW)
    second = verifier.verify(data, session_transcript=st, now=NOW)
    assert first.failed() == second.failed() == ["status"]
    assert first.documents == ()
    assert len(verifier._cache) == 1
    # a cached chain is not used outside its validity window
    late = verifier.verify(data, session_transcript=st, now=NOW + dt.timedelta(days=400))
    assert "issuer_certificate_chain" in late.failed()


# --- flipping any bit fails the right named check --------------------------------------


def _response(pki, device_key, st):
    return mdoc.DeviceResponse.decode(present(issue(pki, device_key), device_key, st))


#: Where to flip a bit, drawn from one fixed range and reduced modulo the length of what is
#: flipped: the length of a freshly issued MSO varies (a random digestID may need a shorter
#: head), and a strategy whose range followed it would change between hypothesis's replays
#: (FlakyStrategyDefinition).
_POSITION = st.integers(0, 1 << 24)


@SETTINGS
@given(st.data())
def test_flip_issuer_signed_item_bit_fails_value_digests(pki, device_key, data):
    stx = transcript()
    dr = _response(pki, device_key, stx)
    doc = dr.documents[0]
    raws = list(doc.issuer_signed.name_spaces[NS])
    n = data.draw(_POSITION) % len(raws)
    bit = data.draw(_POSITION) % (len(raws[n]) * 8)
    flipped = bytearray(raws[n])
    flipped[bit // 8] ^= 1 << (bit % 8)
    raws[n] = bytes(flipped)
    bad = mdoc.Document(doc.doc_type, mdoc.IssuerSigned({NS: tuple(raws)}, doc.issuer_signed.issuer_auth), doc.device_signed)
    result = verify(pki, mdoc.DeviceResponse((bad,)).encode(), stx)
    assert result.failed() == ["value_digests"]


@SETTINGS
@given(st.data())
def test_flip_mso_bit_fails_issuer_signature(pki, device_key, data):
    stx = transcript()
    doc = _response(pki, device_key, stx).documents[0]
    auth = doc.issuer_signed.issuer_auth
    bit = data.draw(_POSITION) % (len(auth.payload) * 8)
    payload = bytearray(auth.payload)
    payload[bit // 8] ^= 1 << (bit % 8)
    bad_auth = cose.Sign1(auth.protected_bytes, auth.protected, auth.unprotected, bytes(payload), auth.signature)
    bad = mdoc.Document(doc.doc_type, mdoc.IssuerSigned(doc.issuer_signed.name_spaces, bad_auth), doc.device_signed)
    result = verify(pki, mdoc.DeviceResponse((bad,)).encode(), stx)
    assert result.check("issuer_signature").passed is False
    assert result.check("issuer_certificate_chain").passed is True


@SETTINGS
@given(st.data())
def test_flip_device_signature_bit_fails_device_authentication(pki, device_key, data):
    stx = transcript()
    doc = _response(pki, device_key, stx).documents[0]
    sig = doc.device_signed.device_auth.device_signature
    bit = data.draw(_POSITION) % (len(sig.signature) * 8)
    s = bytearray(sig.signature)
    s[bit // 8] ^= 1 << (bit % 8)
    bad_sig = cose.Sign1(sig.protected_bytes, sig.protected, sig.unprotected, None, bytes(s))
    signed = mdoc.DeviceSigned(doc.device_signed.name_spaces_bytes, mdoc.DeviceAuth(device_signature=bad_sig))
    bad = mdoc.Document(doc.doc_type, doc.issuer_signed, signed)
    assert verify(pki, mdoc.DeviceResponse((bad,)).encode(), stx).failed() == ["device_authentication"]


@pytest.mark.parametrize("x5chain", ["absent", "rsa leaf"])
def test_issuer_auth_without_an_ec_document_signer_key_is_refused_once_and_named(device_key, x5chain):
    """An issuerAuth whose x5chain holds no usable key (none at all, or an RSA certificate):
    no key to check the issuer signature with, so each check after it is reported "not
    checked", once, and nothing is disclosed (a genuine signature by the DS key changes
    nothing: no one may take the key from elsewhere)."""
    iaca, ds_key, ds_cert = pki = make_pki()
    st = transcript()
    genuine = mdoc.DeviceResponse.decode(present(issue(pki, device_key), device_key, st)).documents[0]
    auth = genuine.issuer_signed.issuer_auth
    if x5chain == "absent":
        unprotected = {}
    else:
        rsa_cert = (x509.CertificateBuilder().subject_name(ds_cert.subject).issuer_name(ds_cert.issuer)
                    .public_key(rsa.generate_private_key(65537, 2048).public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(ds_cert.not_valid_before_utc).not_valid_after(ds_cert.not_valid_after_utc)
                    .sign(ds_key, hashes.SHA256()))
        unprotected = {33: rsa_cert.public_bytes(Encoding.DER)}
    bad_auth = cose.Sign1(auth.protected_bytes, auth.protected, unprotected, auth.payload, auth.signature)
    bad = mdoc.Document(genuine.doc_type, mdoc.IssuerSigned(genuine.issuer_signed.name_spaces, bad_auth),
                        genuine.device_signed)
    result = verify(pki, mdoc.DeviceResponse((bad,)).encode(), st)
    names = ["issuer_certificate_chain", "issuer_signature", "mso_structure", "doc_type", "value_digests",
             "validity", "device_authentication"]
    assert [c.name for c in result.checks] == ["response_status", *names]
    assert result.failed() == names
    assert "no usable document signer key" in result.check("issuer_signature").reason
    assert all(result.check(n).code == "not_checked" for n in names[2:])
    assert result.documents == ()


@pytest.mark.parametrize(("now", "code"), [
    (NOW - dt.timedelta(days=1), None),  # now == validFrom
    (NOW + dt.timedelta(days=300), None),  # now == validUntil: "ValidUntil equal or later than now" (9.3.1)
    (NOW + dt.timedelta(days=300, microseconds=1), "expired"),
    (NOW - dt.timedelta(days=1, microseconds=1), "not_yet_valid"),
])
def test_validity_bounds_are_inclusive_and_a_refusal_says_which_side(pki, device_key, now, code):
    """The built-in ``validity``: validFrom <= now <= validUntil, both ends included; past
    either end one failed check, its code telling which end."""
    st = transcript()
    result = verify(pki, present(issue(pki, device_key), device_key, st), st, now=now)
    assert [c.name for c in result.checks].count("validity") == 1
    assert result.failed() == ([] if code is None else ["validity"])
    assert result.check("validity").code == (code or "ok")


@pytest.mark.parametrize(("signed", "ok"), [
    (NOW - dt.timedelta(days=30), True),  # the DS certificate's notBefore
    (NOW + dt.timedelta(days=365), True),  # its notAfter
    (NOW - dt.timedelta(days=30, seconds=1), False),
    (NOW + dt.timedelta(days=365, seconds=1), False),
])
def test_an_mso_signed_outside_the_ds_certificate_validity_fails_validity(pki, device_key, signed, ok):
    """The MSO's signed time must fall within its document signer certificate's validity
    (both ends included): an MSO dated before the DS existed, or after it expired, was not
    signed by a valid DS (a leaked expired DS key back-dating nothing, forward-dating MSOs)."""
    issued = issue(pki, device_key)
    mso = issued.mso()  # signed by hand: issuing itself keeps signed <= validFrom
    # validFrom not before signed (9.1.2.4, checked on its own below), presented from then on
    v = mso.validity_info
    start, end = max(v.valid_from, signed), max(v.valid_until, signed + dt.timedelta(days=1))
    mso = dataclasses.replace(mso, validity_info=mdoc.ValidityInfo(signed, start, end))
    auth = cose.Sign1.create(cose.key_signer(pki[1]), mso.to_bytes(), unprotected=issued.issuer_auth.unprotected)
    st = transcript()
    result = verify(pki, present(mdoc.IssuerSigned(issued.name_spaces, auth), device_key, st), st, now=max(NOW, start))
    assert [c.name for c in result.checks].count("validity") == 1
    # signed after the DS certificate's end can be presented only after that end (validFrom
    # is not before signed), when its chain fails (a leaked expired DS key forward-dating MSOs)
    if signed > NOW + dt.timedelta(days=365):
        assert result.failed() == ["issuer_certificate_chain"]
        return
    assert result.failed() == ([] if ok else ["validity"])
    if not ok:
        assert result.check("validity").code == "untrusted_issuer"
        assert "outside the DS certificate validity" in result.check("validity").reason


@pytest.mark.parametrize("signed", [NOW - dt.timedelta(days=1) + dt.timedelta(seconds=1), NOW + dt.timedelta(days=365)])
def test_an_mso_valid_from_before_its_signing_is_refused_as_backdated(pki, device_key, signed):
    """ISO/IEC 18013-5 9.1.2.4: validFrom shall be equal or later than signed. An MSO whose
    validFrom is earlier vouches for a time before its issuer signed it; it was accepted
    (however far the gap: the DS-validity check saw only signed). Now ``validity`` fails,
    code malformed, naming both times, at a reader instant inside validFrom .. validUntil."""
    issued = issue(pki, device_key)  # validFrom NOW - 1 day
    mso = issued.mso()  # signed by hand: issuing refuses these times
    mso = dataclasses.replace(mso, validity_info=dataclasses.replace(mso.validity_info, signed=signed))
    auth = cose.Sign1.create(cose.key_signer(pki[1]), mso.to_bytes(), unprotected=issued.issuer_auth.unprotected)
    st = transcript()
    result = verify(pki, present(mdoc.IssuerSigned(issued.name_spaces, auth), device_key, st), st)
    assert result.failed() == ["validity"]
    validity = result.check("validity")
    assert validity.code == "malformed" and "a backdated MSO" in validity.reason
    assert "validFrom 2026-05-31T00:00:00Z is earlier than signed" in validity.reason


def test_a_signing_time_with_a_fraction_in_validfroms_second_is_not_backdated():
    """A peer that writes signed with a fraction of a second and validFrom as its whole second
    (tdates carry none in 18013-5) is within the rule."""
    t = NOW.replace(hour=9)
    assert mdoc.ValidityInfo(t + dt.timedelta(microseconds=500_000), t, t + dt.timedelta(days=1)).order_error() is None
    assert "backdated" in mdoc.ValidityInfo(t + dt.timedelta(seconds=1), t, t + dt.timedelta(days=1)).order_error()


@pytest.mark.parametrize("until", [NOW - dt.timedelta(days=1), NOW - dt.timedelta(days=2)])  # == / < validFrom
@pytest.mark.parametrize("now", [NOW - dt.timedelta(days=3), NOW - dt.timedelta(days=1), NOW])
def test_an_mso_whose_valid_until_is_not_after_its_valid_from_is_refused_by_that_name(pki, device_key, until, now):
    """ISO/IEC 18013-5 9.1.2.4: validUntil shall be later than validFrom. An MSO that breaks
    it is never valid; it was reported as expired or not yet valid (whichever side ``now``
    fell on). Now ``validity`` fails with its own reason, code malformed, at any instant."""
    issued = issue(pki, device_key)
    mso = issued.mso()  # signed by hand: issuing refuses these times (below)
    mso = dataclasses.replace(mso, validity_info=dataclasses.replace(mso.validity_info, valid_until=until))
    auth = cose.Sign1.create(cose.key_signer(pki[1]), mso.to_bytes(), unprotected=issued.issuer_auth.unprotected)
    st = transcript()
    result = verify(pki, present(mdoc.IssuerSigned(issued.name_spaces, auth), device_key, st), st, now=now)
    assert result.failed() == ["validity"]
    validity = result.check("validity")
    assert validity.code == "malformed"
    assert validity.reason == (f"{DOC_TYPE}: validUntil {cbor.tdate_text(until)} is not later than validFrom "
                               f"{cbor.tdate_text(NOW - dt.timedelta(days=1))}: an MSO that is never valid "
                               "(ISO/IEC 18013-5 9.1.2.4)")


@pytest.mark.parametrize(("valid_from", "valid_until"), [
    (NOW, NOW),
    (NOW, NOW - dt.timedelta(seconds=1)),
    (NOW + dt.timedelta(microseconds=200_000), NOW + dt.timedelta(microseconds=900_000)),  # one whole second
])
def test_issuing_refuses_a_valid_until_not_later_than_valid_from_as_the_mso_writes_them(pki, device_key, valid_from,
                                                                                        valid_until):
    """Our issuer never writes such an MSO: the check is on the times as the MSO writes them
    (tdates without fractions), so 0.2 s and 0.9 s past the same second, which would both be
    written as that second, are refused too (they used to pass, ordered before the cut)."""
    iaca, ds_key, ds_cert = pki
    for signed in (None, valid_from.replace(microsecond=0)):  # signed defaulting to valid_from, or its own
        with pytest.raises(mdoc.IssuingError, match=r"validUntil .* is not later than validFrom .*9\.1\.2\.4"):
            mdoc.build_issuer_signed(ELEMENTS, DOC_TYPE, device_key.public_key(), cose.key_signer(ds_key),
                                     [ds_cert.public_bytes(Encoding.DER)], valid_from, valid_until, signed=signed)


@pytest.mark.parametrize("status", [10, 11, 12])
def test_an_error_status_with_documents_is_refused_and_says_so(pki, device_key, status):
    """A DeviceResponse whose status is an error (10, 11, 12: §8.3.2.1.2.3) yet carries a
    sound document: response_status fails (session_failed), its reason counts the documents
    rather than claiming there were none; the document's own checks are still reported."""
    st = transcript()
    genuine = mdoc.DeviceResponse.decode(present(issue(pki, device_key), device_key, st))
    data = mdoc.DeviceResponse(genuine.documents, status=status).encode()
    result = verify(pki, data, st)
    assert result.failed() == ["response_status"]
    check = result.check("response_status")
    assert check.code == "session_failed"
    assert check.reason == f"status {status} (an error) with 1 document(s)"
    assert not result.valid


def test_a_naive_now_is_refused():
    """``now`` without a time zone would compare wrongly with the MSO's UTC times: refused."""
    iaca = make_pki()[0]
    with pytest.raises(mdoc.MdocError, match="aware"):
        mdoc.verify_device_response(b"\xa0", trust_anchors=[iaca], session_transcript=None, now=dt.datetime(2026, 6, 1))
    with pytest.raises(mdoc.MdocError, match="aware"):
        mdoc.verify_issuer_signed(b"\xa0", trust_anchors=[iaca], now=dt.datetime(2026, 6, 1))


def test_device_mac_with_the_emac_key_from_a_provider(pki, device_key):
    """``emac_key_provider``: the reader's EMacKey from elsewhere (an HSM, a session kept
    apart), given the MSO device key and the transcript; without it and without the
    reader's private key, deviceMac cannot be checked and says so."""
    st = transcript()
    reader = ec.generate_private_key(ec.SECP256R1())
    emac = mdoc.derive_emac_key(mdoc.ecdh(device_key, reader.public_key()), st)
    data = mdoc.DeviceResponse((mdoc.build_document(issue(pki, device_key), st, emac_key=emac),)).encode()
    asked = []

    def provider(device_cose_key, transcript_):
        asked.append((device_cose_key, transcript_))
        return mdoc.derive_emac_key(mdoc.ecdh(reader, device_cose_key), transcript_)

    assert verify(pki, data, st, emac_key_provider=provider).valid
    assert asked and asked[0][0] == cose.CoseKey.from_public_key(device_key.public_key())
    unchecked = verify(pki, data, st)
    assert unchecked.failed() == ["device_authentication"]
    assert unchecked.check("device_authentication").code == "not_checked"


def test_a_failed_issuer_signature_or_unreadable_mso_stops_the_document_there(pki, device_key):
    """Past a failed issuer signature (the MSO changed after signing) nothing of the MSO is
    read: each later check once, "not checked"; an MSO whose signature verifies but that is
    no MSO fails mso_structure and stops there. A verified chain is reported in both."""
    st = transcript()
    genuine = mdoc.DeviceResponse.decode(present(issue(pki, device_key), device_key, st)).documents[0]
    auth = genuine.issuer_signed.issuer_auth
    changed = bytearray(auth.payload)
    changed[-1] ^= 1
    forged = cose.Sign1(auth.protected_bytes, auth.protected, auth.unprotected, bytes(changed), auth.signature)
    no_mso = cose.Sign1.create(cose.key_signer(pki[1]), cbor.dumps(cbor.CBORTag(24, cbor.dumps({"not": "an MSO"}))),
                               unprotected=auth.unprotected)
    later = ["mso_structure", "doc_type", "value_digests", "validity", "device_authentication"]
    for issuer_auth, failed, skipped in ((forged, ["issuer_signature", *later], later),
                                         (no_mso, later, later[1:])):
        doc = mdoc.Document(genuine.doc_type, mdoc.IssuerSigned(genuine.issuer_signed.name_spaces, issuer_auth),
                            genuine.device_signed)
        result = verify(pki, mdoc.DeviceResponse((doc,)).encode(), st)
        assert [c.name for c in result.checks] == ["response_status", "issuer_certificate_chain", "issuer_signature",
                                                  *later]
        assert result.failed() == failed
        assert all(result.check(n).code == "not_checked" for n in skipped)
        assert result.documents == ()


@pytest.mark.parametrize("x5chain", [[], 7, [b"\x30\x00", 7], "text"])
def test_a_malformed_x5chain_is_refused_by_name_not_raised(device_key, x5chain):
    """issuerAuth's x5chain (label 33) must be one bstr or a non-empty array of bstr (RFC
    9360): anything else fails issuer_certificate_chain and issuer_signature (no key to
    check it with), from verify and verify_issuer_signed alike; it was a CoseDecodeError
    out of the verifier, which promises to raise only for bytes that are no DeviceResponse."""
    iaca, _, _ = pki = make_pki()
    st = transcript()
    m = cbor.loads(present(issue(pki, device_key), device_key, st))
    m["documents"][0]["issuerSigned"]["issuerAuth"][1] = {33: x5chain}
    result = verify(pki, cbor.dumps(m), st)
    assert result.failed()[:2] == ["issuer_certificate_chain", "issuer_signature"]
    assert "x5chain (33) must be a bstr or a non-empty array of bstr" in result.check("issuer_certificate_chain").reason
    assert result.check("issuer_certificate_chain").code == "untrusted_issuer"
    alone = mdoc.verify_issuer_signed(cbor.dumps(m["documents"][0]["issuerSigned"]), trust_anchors=[iaca], now=NOW)
    assert alone.failed()[:2] == ["issuer_certificate_chain", "issuer_signature"]


def test_an_x5chain_given_as_an_array_with_the_anchor_verifies(pki, device_key):
    """x5chain as an array [DS, IACA] (the IACA copy is dropped): verified, and the same
    verdict as the DS certificate alone."""
    iaca, _, ds_cert = pki
    st = transcript()
    m = cbor.loads(present(issue(pki, device_key), device_key, st))
    m["documents"][0]["issuerSigned"]["issuerAuth"][1] = {33: [ds_cert.public_bytes(Encoding.DER),
                                                               iaca.public_bytes(Encoding.DER)]}
    result = verify(pki, cbor.dumps(m), st)
    assert result.valid, result.to_json()


@pytest.mark.parametrize("n", [1, 7, 8, 9])
def test_response_status_counts_the_documents_whatever_their_number(pki, device_key, n):
    """A DeviceResponse with status 0 and n documents passes response_status and says n,
    below and beyond the few passed checks the verifier keeps made (1..7)."""
    st = transcript()
    doc = mdoc.build_document(issue(pki, device_key), st, signer=cose.key_signer(device_key))
    result = verify(pki, mdoc.DeviceResponse((doc,) * n).encode(), st)
    assert result.valid and len(result.documents) == n
    assert result.check("response_status").reason == f"status 0, {n} document(s)"


@pytest.mark.parametrize("size", [255, 256, 257, 65535, 65536])
def test_an_item_digests_over_its_tagged_bytes_whatever_their_length(pki, device_key, size):
    """§9.1.2.5: the value digest is over IssuerSignedItemBytes, #6.24(bstr), whose head
    grows with the item's length (2, 3 and 5 bytes of length): an item of every edge
    size verifies, through the kept heads (below 256 bytes) and beyond them."""
    def raw_size(n):
        return len(issue(pki, device_key, elements={NS: {"blob": bytes(n)}}).name_spaces[NS][0])

    n = size - (raw_size(size) - size)  # the overhead is the same for the lengths near ``size``
    n += size - raw_size(n)
    issued = issue(pki, device_key, elements={NS: {"blob": bytes(n)}})
    assert len(issued.name_spaces[NS][0]) == size
    st = transcript()
    result = verify(pki, present(issued, device_key, st), st)
    assert result.valid, result.failed()
    assert result.documents[0].elements[NS]["blob"] == bytes(n)
