"""The signed CWT under both status mechanism tokens (protocols.status._cwt): every claim and
header rule refusing what it must, at its edges. Each test holds a rule that a mutation of
the module could otherwise drop without any test failing."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from test_status_token import CERT, IACA, KEY, NOW, T0, URI, token, verify

from protocols import cbor, cose, iaca
from protocols.status import (
    TYP_STATUS_LIST,
    StatusList,
    StatusListClaimError,
    StatusListDecodeError,
    StatusListTrustError,
    build_status_list_token,
    decode_status_list_token,
)
from protocols.status._cwt import CLOCK_SKEW, LAST_NUMERIC_DATE, peek_header, peek_typ

LIST = StatusList.from_statuses([0, 1])
CLAIMS = {2: URI, 6: int((NOW - dt.timedelta(hours=1)).timestamp()), 65533: {"bits": 1, "lst": LIST.compress()}}
DER = CERT.public_bytes(Encoding.DER)


def _signed(payload, protected=None, *, detached=None) -> bytes:
    """A token signed by the real signer with these exact claims (bytes or a map) and header."""
    protected = {16: TYP_STATUS_LIST, 33: DER} if protected is None else protected
    body = payload if isinstance(payload, bytes) or payload is None else cbor.dumps(payload)
    return cose.Sign1.create(cose.key_signer(KEY), body, detached=detached, protected=protected).encode(tag=True)


@pytest.mark.parametrize(("kwargs", "said"), [
    (dict(uri=""), "sub \\(the list URI\\) must be a non-empty string"),
    (dict(uri=None), "sub \\(the list URI\\) must be a non-empty string"),
    (dict(uri=5), "sub \\(the list URI\\) must be a non-empty string"),
    (dict(iat=NOW.replace(tzinfo=None)), "iat must be an aware datetime"),
    (dict(exp=(NOW + dt.timedelta(days=1)).replace(tzinfo=None)), "exp must be an aware datetime"),
    (dict(exp=NOW), "exp must be after iat"),
    (dict(exp=NOW - dt.timedelta(seconds=1)), "exp must be after iat"),
    (dict(ttl=0), "ttl must be a positive int"),
    (dict(ttl=-5), "ttl must be a positive int"),
    (dict(ttl=60.0), "ttl must be a positive int"),
    (dict(ttl=True), "ttl must be a positive int"),
])
def test_a_token_that_would_not_verify_is_not_signed(kwargs, said):
    args = {**dict(uri=URI, iat=NOW, exp=None, ttl=None, signer=cose.key_signer(KEY), certificate=CERT), **kwargs}
    with pytest.raises(StatusListClaimError, match=said):
        build_status_list_token(LIST, **args)
    # the least that is allowed
    build_status_list_token(LIST, uri="u", iat=NOW, exp=NOW + dt.timedelta(seconds=1), ttl=1,
                            signer=cose.key_signer(KEY), certificate=CERT)


@pytest.mark.parametrize(("data", "error", "said"), [
    ("a token as text", StatusListDecodeError, "token must be bytes, got str"),
    (b"\xff", StatusListDecodeError, "token: "),
    (cbor.dumps([1, 2]), StatusListDecodeError, "not a COSE_Sign1 tagged 18"),
    (cbor.dumps(cbor.CBORTag(98, cbor.loads(_signed(CLAIMS)).value)), StatusListDecodeError,
     "not a COSE_Sign1 tagged 18"),
    (_signed(CLAIMS, {16: TYP_STATUS_LIST, 33: 5}), StatusListDecodeError, "token: "),
    (_signed(CLAIMS, {16: TYP_STATUS_LIST}), StatusListTrustError, "no x5chain \\(33\\)"),
    (_signed(CLAIMS, {16: TYP_STATUS_LIST, 33: b"\x30\x03\x02\x01\x01"}), StatusListTrustError,
     "the signer certificate is malformed"),
    (_signed(None, detached=cbor.dumps(CLAIMS)), StatusListDecodeError, "payload is detached"),
    (_signed(b"\xff\xff"), StatusListDecodeError, "token claims: "),
    (_signed([1, 2]), StatusListDecodeError, "token claims must be a map, got list"),
    (_signed({**CLAIMS, 2: ""}), StatusListClaimError, "claim sub \\(2\\) missing or not a text string"),
    (_signed({**CLAIMS, 2: b"uri"}), StatusListClaimError, "claim sub \\(2\\) missing"),
    (_signed({k: v for k, v in CLAIMS.items() if k != 6}), StatusListClaimError, "claim iat \\(6\\) missing"),
    (_signed({**CLAIMS, 6: -1}), StatusListClaimError, "claim iat \\(6\\) must be a NumericDate int"),
    (_signed({**CLAIMS, 6: 2**40}), StatusListClaimError, "claim iat \\(6\\) must be a NumericDate int"),
    (_signed({**CLAIMS, 6: 1.5e9}), StatusListClaimError, "claim iat \\(6\\) must be a NumericDate int"),
    (_signed({**CLAIMS, 4: "tomorrow"}), StatusListClaimError, "claim exp \\(4\\) must be a NumericDate int"),
    (_signed({**CLAIMS, 65534: 0}), StatusListClaimError, "claim ttl \\(65534\\) must be a positive int"),
    (_signed({**CLAIMS, 65534: "60"}), StatusListClaimError, "claim ttl \\(65534\\) must be a positive int"),
])
def test_each_malformed_token_is_refused_naming_its_fault(data, error, said):
    with pytest.raises(error, match=said):
        decode_status_list_token(data)


def test_numeric_dates_from_the_epoch_to_the_year_9999_are_read():
    """A NumericDate past 9999-12-31T23:59:59Z was taken up to 2**40 and then escaped from
    decoding as a bare ValueError (year out of range), not a StatusListError."""
    with pytest.raises(StatusListClaimError, match="claim exp \\(4\\) must be a NumericDate int"):
        decode_status_list_token(_signed({**CLAIMS, 4: LAST_NUMERIC_DATE + 1}))
    for iat in (0, LAST_NUMERIC_DATE):
        assert decode_status_list_token(_signed({**CLAIMS, 6: iat})).header.iat == dt.datetime.fromtimestamp(
            iat, dt.UTC)
    assert decode_status_list_token(bytearray(_signed(CLAIMS))).header.sub == URI


def test_iat_may_lie_a_minute_ahead_exp_and_ttl_end_at_their_own_instant():
    assert CLOCK_SKEW == dt.timedelta(seconds=60)
    verify(token(iat=NOW + dt.timedelta(seconds=60), exp=NOW + dt.timedelta(hours=1)))
    with pytest.raises(StatusListClaimError, match="in the future"):
        verify(token(iat=NOW + dt.timedelta(seconds=61), exp=NOW + dt.timedelta(hours=1)))
    # exp is the first instant the token is no longer valid (RFC 8392 3.1.4)
    verify(token(iat=NOW - dt.timedelta(hours=1), exp=NOW + dt.timedelta(seconds=1)))
    with pytest.raises(StatusListClaimError, match="expired"):
        verify(token(iat=NOW - dt.timedelta(hours=1), exp=NOW))
    verify(token(), fetched_at=NOW - dt.timedelta(seconds=3600))  # ttl 3600: its last second
    with pytest.raises(StatusListClaimError, match="ttl"):
        verify(token(), fetched_at=NOW - dt.timedelta(seconds=3601))


@pytest.mark.parametrize("kwargs", [dict(now=NOW.replace(tzinfo=None)),
                                    dict(fetched_at=NOW.replace(tzinfo=None))])
def test_naive_times_are_refused_not_guessed(kwargs):
    with pytest.raises(StatusListClaimError, match="must be an aware datetime"):
        verify(token(), **kwargs)


def test_the_trust_anchor_is_judged_on_its_validity_and_key_only():
    """The IACA given as trust anchor is not held to every Table B.1 rule (a country other than
    the signer's own test is the signer's), but one not valid at the time is refused."""
    assert verify(token(), trust_anchor=IACA)
    with pytest.raises(StatusListTrustError, match="iaca.validity"):
        verify(token(), now=IACA.not_valid_after_utc + dt.timedelta(seconds=1))


def test_ttl_of_one_second_is_read_and_a_token_without_ttl_has_no_cache_limit():
    assert decode_status_list_token(_signed({**CLAIMS, 65534: 1})).header.ttl == 1
    assert verify(token(ttl=None), fetched_at=NOW - dt.timedelta(days=300)).header.ttl is None


def test_peek_reads_either_kind_of_token_without_verifying_and_refuses_others():
    data = token()
    assert peek_typ(data) == TYP_STATUS_LIST and peek_header(data).sub == URI
    assert peek_typ(_signed(CLAIMS, {16: 7, 33: DER})) is None
    for typ in ("application/cwt", None):
        protected = {33: DER} if typ is None else {16: typ, 33: DER}
        with pytest.raises(StatusListClaimError, match="not a status mechanism token"):
            peek_header(_signed(CLAIMS, protected))


def test_the_trust_anchor_is_held_to_its_validity_and_key_not_to_every_iaca_rule():
    """The IACA an operator configured as trust anchor is judged on its validity and key
    only (verify_cwt): one whose serial number is too short for Table B.1 still anchors."""
    ik = ec.generate_private_key(ec.SECP256R1())
    anchor = iaca.sign(iaca.iaca_builder(
        ik.public_key(), common_name="mcred TEST IACA short serial", not_before=T0,
        not_after=T0 + dt.timedelta(days=3650), issuer_alt_name_uri="http://127.0.0.1:8470/",
        crl_uri="http://127.0.0.1:8470/crl/iaca.crl", serial_number=1000), ik)
    assert [c.name for c in iaca.failed(iaca.check_iaca(anchor, NOW))] == ["iaca.serial_number"]
    sk = ec.generate_private_key(ec.SECP256R1())
    signer = iaca.sign(iaca.status_list_signer_builder(
        sk.public_key(), anchor, common_name="mcred TEST status list signer", not_before=T0,
        not_after=T0 + dt.timedelta(days=400), crl_uri="http://127.0.0.1:8470/crl/iaca.crl"), ik)
    assert verify(token(key=sk, cert=signer), trust_anchor=anchor).status(1) == 0
