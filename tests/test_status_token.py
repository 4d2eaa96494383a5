"""Status List Token and Identifier List Token (CWT in COSE_Sign1): round trip, every
verification step refusing what it must, and fuzzed bytes giving StatusListError only."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import cbor, cose, iaca
from protocols.status import (
    CLAIM_STATUS_LIST,
    TYP_STATUS_LIST,
    IdentifierList,
    Status,
    StatusList,
    StatusListClaimError,
    StatusListDecodeError,
    StatusListError,
    StatusListSignatureError,
    StatusListTooLargeError,
    StatusListTrustError,
    build_identifier_list_token,
    build_status_list_token,
    decode_status_list_token,
    verify_identifier_list_token,
    verify_status_list_token,
)

T0 = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
URI = "http://127.0.0.1:8470/status/2025-1"


def _pki(eku_builder=iaca.status_list_signer_builder):
    ik = ec.generate_private_key(ec.SECP256R1())
    ic = iaca.sign(iaca.iaca_builder(
        ik.public_key(), common_name="mcred TEST IACA", not_before=T0,
        not_after=T0 + dt.timedelta(days=3650), issuer_alt_name_uri="http://127.0.0.1:8470/",
        crl_uri="http://127.0.0.1:8470/crl/iaca.crl"), ik)
    sk = ec.generate_private_key(ec.SECP256R1())
    sc = iaca.sign(eku_builder(
        sk.public_key(), ic, common_name="mcred TEST status list signer", not_before=T0,
        not_after=T0 + dt.timedelta(days=400), crl_uri="http://127.0.0.1:8470/crl/iaca.crl"), ik)
    return ic, sk, sc


IACA, KEY, CERT = _pki()
LIST = StatusList.from_indices(10_000, [3, 77, 9_999])


def token(lst=LIST, *, key=KEY, cert=CERT, uri=URI, iat=NOW - dt.timedelta(hours=1),
          exp=NOW + dt.timedelta(days=1), ttl=3600):
    return build_status_list_token(lst, uri=uri, iat=iat, exp=exp, ttl=ttl,
                                   signer=cose.key_signer(key), certificate=cert)


def verify(data, **kw):
    args = dict(trust_anchor=IACA, uri=URI, now=NOW)
    args.update(kw)
    return verify_status_list_token(data, **args)


def test_round_trip_and_wire_shape():
    data = token()
    result = verify(data)
    assert result.status(77) == Status.INVALID and result.status(78) == Status.VALID
    assert result.status_list == LIST and result.header.sub == URI and result.header.ttl == 3600
    outer = cbor.loads(data)
    assert outer.tag == 18
    message = cose.Sign1.decode(outer)
    assert message.protected[16] == TYP_STATUS_LIST and message.protected[1] == cose.ES256
    claims = cbor.loads(message.payload)
    assert set(claims) == {2, 4, 6, 65534, CLAIM_STATUS_LIST}
    assert set(claims[CLAIM_STATUS_LIST]) == {"bits", "lst"}
    assert decode_status_list_token(data).status_list == LIST


def test_es384_signer():
    ik = ec.generate_private_key(ec.SECP384R1())
    ic = iaca.sign(iaca.iaca_builder(
        ik.public_key(), common_name="IACA 384", not_before=T0, not_after=T0 + dt.timedelta(days=3650),
        issuer_alt_name_uri="http://x/", crl_uri="http://x/crl"), ik)
    sk = ec.generate_private_key(ec.SECP384R1())
    sc = iaca.sign(iaca.status_list_signer_builder(
        sk.public_key(), ic, common_name="SL 384", not_before=T0,
        not_after=T0 + dt.timedelta(days=100), crl_uri="http://x/crl"), ik)
    data = token(key=sk, cert=sc)
    assert verify(data, trust_anchor=ic).status(3) == Status.INVALID


def test_list_signed_outside_the_iaca_chain_is_refused():
    other_iaca, other_key, other_cert = _pki()
    with pytest.raises(StatusListTrustError, match="issued_by_iaca"):
        verify(token(key=other_key, cert=other_cert))
    # our certificate, but signed with a key it does not certify
    with pytest.raises(StatusListSignatureError):
        verify(token(key=other_key, cert=CERT))


@pytest.mark.parametrize("critical", [True, False])
def test_a_signer_certificate_marking_an_unprocessed_extension_critical_signs_no_list(critical):
    """RFC 5280 4.2: a certificate with a critical extension the verifier does not process
    is rejected. A status-list signer of the IACA, by the profile in every other respect,
    with an unknown extension marked critical, signs no list a reader takes; the same
    extension not critical is ignored. Before, the critical one was ignored too."""
    from cryptography import x509

    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.11"), b"\x05\x00")
    ic, key, cert = _pki(lambda *a, **kw: iaca.status_list_signer_builder(*a, **kw).add_extension(unknown, critical))
    if critical:
        with pytest.raises(StatusListTrustError, match=r"status_signer\.critical_extensions: it carries the critical "
                                                       r"extension 1\.3\.6\.1\.4\.1\.99999\.11"):
            verify(token(key=key, cert=cert), trust_anchor=ic)
    else:
        assert verify(token(key=key, cert=cert), trust_anchor=ic).status(77) == 1


def test_document_signer_certificate_cannot_sign_status_lists():
    ic, key, cert = _pki(iaca.document_signer_builder)
    with pytest.raises(StatusListTrustError, match="extended_key_usage"):
        verify(token(key=key, cert=cert), trust_anchor=ic)


def test_claims_are_checked():
    with pytest.raises(StatusListClaimError, match="sub"):
        verify(token(), uri=URI + "x")
    with pytest.raises(StatusListClaimError, match="expired"):
        verify(token(exp=NOW - dt.timedelta(seconds=1), iat=NOW - dt.timedelta(hours=2)))
    with pytest.raises(StatusListClaimError, match="future"):
        verify(token(iat=NOW + dt.timedelta(hours=1), exp=NOW + dt.timedelta(hours=2)))
    with pytest.raises(StatusListClaimError, match="ttl"):
        verify(token(), fetched_at=NOW - dt.timedelta(seconds=3601))
    assert verify(token(), fetched_at=NOW - dt.timedelta(seconds=3599))
    assert verify(token(exp=None, ttl=None)).header.exp is None
    with pytest.raises(StatusListTrustError, match="validity"):
        verify(token(), now=T0 + dt.timedelta(days=401))


def test_wrong_typ_and_untagged_are_refused():
    message = cose.Sign1.decode(token())
    resigned = cose.Sign1.create(cose.key_signer(KEY), message.payload,
                                 protected={16: "application/cwt", 33: message.x5chain[0]})
    with pytest.raises(StatusListClaimError, match="typ"):
        verify(resigned.encode(tag=True))
    with pytest.raises(StatusListDecodeError, match="tagged 18"):
        verify(message.encode(tag=False))


def test_bomb_in_a_signed_token_is_refused():
    big = StatusList.empty(8 * 4_000_000)
    with pytest.raises(StatusListTooLargeError):
        verify(token(big), max_list_bytes=1_000_000)


def test_identifier_list_token():
    ids = IdentifierList(frozenset({b"\x01\x02", b"\xff" * 16}))
    data = build_identifier_list_token(ids, uri=URI, iat=NOW, exp=NOW + dt.timedelta(days=1), ttl=60,
                                       signer=cose.key_signer(KEY), certificate=CERT)
    result = verify_identifier_list_token(data, trust_anchor=IACA, uri=URI, now=NOW)
    assert result.is_revoked(b"\x01\x02") and not result.is_revoked(b"\x01")
    message = cose.Sign1.decode(data)
    assert message.protected[16] == "application/identifierlist+cwt"
    assert set(cbor.loads(message.payload)[65530]) == {"identifiers"}
    with pytest.raises(StatusListClaimError, match="typ"):
        verify(data)  # an identifier list is not a status list
    other_iaca, other_key, other_cert = _pki()
    forged = build_identifier_list_token(ids, uri=URI, iat=NOW, signer=cose.key_signer(other_key),
                                         certificate=other_cert)
    with pytest.raises(StatusListTrustError):
        verify_identifier_list_token(forged, trust_anchor=IACA, uri=URI, now=NOW)


GOOD = token(StatusList.from_statuses([1, 0, 1, 1]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)).map(
        lambda p: GOOD[:p[0]] + bytes([GOOD[p[0]] ^ p[1]]) + GOOD[p[0] + 1:]),
    st.integers(0, len(GOOD) - 1).map(lambda n: GOOD[:n]),
))
def test_fuzzed_token_bytes_give_status_list_error_only(data):
    try:
        decode_status_list_token(data)
    except StatusListError:
        pass
    try:
        verify(data)
    except StatusListError:
        return
    # a flip in an unsigned part may survive (e.g. none here); then the list must be intact
    assert data == GOOD


def test_signer_certificate_with_an_invalid_x509_version_is_a_typed_error():
    """cryptography raises InvalidVersion (not a ValueError) for version 4; found by fuzzing."""
    at = GOOD.find(bytes.fromhex("a003020102"))
    assert at > 0
    bad = GOOD[:at] + bytes.fromhex("a003020103") + GOOD[at + 5:]
    with pytest.raises(StatusListError):
        decode_status_list_token(bad)
    with pytest.raises(StatusListError):
        verify(bad)


def _resigned(change, *, claims_change=None):
    """A token signed by the real signer whose status_list map ``change`` altered (or whose
    claims ``claims_change`` altered): what a publisher with a bug could serve."""
    message = cose.Sign1.decode(token())
    claims = cbor.loads(message.payload)
    change(claims[CLAIM_STATUS_LIST])
    if claims_change:
        claims_change(claims)
    return cose.Sign1.create(cose.key_signer(KEY), cbor.dumps(claims),
                             protected={16: TYP_STATUS_LIST, 33: message.x5chain[0]}).encode(tag=True)


def test_aggregation_uri_is_read_back_and_must_be_text():
    data = build_status_list_token(LIST, uri=URI, iat=NOW, signer=cose.key_signer(KEY), certificate=CERT,
                                   aggregation_uri="http://127.0.0.1:8470/status/")
    assert verify(data).aggregation_uri == "http://127.0.0.1:8470/status/"
    assert decode_status_list_token(data).aggregation_uri == "http://127.0.0.1:8470/status/"
    assert verify(token()).aggregation_uri is None
    bad = _resigned(lambda body: body.update(aggregation_uri=b"http://127.0.0.1/"))
    with pytest.raises(StatusListDecodeError, match="aggregation_uri"):
        verify(bad)


@pytest.mark.parametrize("bits", [0, 3, 16, "1", None])
def test_a_signed_list_with_bits_outside_1_2_4_8_is_a_decode_error(bits):
    """bits is read from the signed claims: a value the draft does not allow is refused as
    the token's fault (StatusListDecodeError), never read with a guessed width."""
    bad = _resigned(lambda body: body.update(bits=bits))
    with pytest.raises(StatusListDecodeError, match="bits"):
        verify(bad)
    with pytest.raises(StatusListDecodeError, match="bits"):
        decode_status_list_token(bad)


@pytest.mark.parametrize("lst", [None, "eNrbWQIAAsoBOA", 5])
def test_a_signed_list_whose_lst_is_not_a_byte_string_is_a_decode_error(lst):
    bad = _resigned(lambda body: body.update(lst=lst) if lst is not None else body.pop("lst"))
    with pytest.raises(StatusListDecodeError, match="lst"):
        verify(bad)


@pytest.mark.parametrize("value", [None, [1, b"\x00"], b"\x78\xda\x03\x00\x00\x00\x00\x01"])
def test_a_signed_token_without_a_status_list_map_is_a_decode_error(value):
    def change(claims):
        if value is None:
            del claims[CLAIM_STATUS_LIST]
        else:
            claims[CLAIM_STATUS_LIST] = value
    bad = _resigned(lambda body: None, claims_change=change)
    with pytest.raises(StatusListDecodeError, match="status_list"):
        verify(bad)


@pytest.mark.parametrize("ttl", [10**15, 2**64])
def test_a_ttl_beyond_what_a_datetime_can_add_is_judged_not_raised(ttl):
    """A signed ttl of 10**15 s (more than datetime's 999999999 days) made the ttl check
    raise OverflowError out of verify_status_list_token, no StatusListError: the caller got
    a crash for a token it should simply keep (found by the deep fuzz campaign)."""
    assert verify(token(ttl=ttl), fetched_at=NOW - dt.timedelta(days=3650)).header.ttl == ttl
