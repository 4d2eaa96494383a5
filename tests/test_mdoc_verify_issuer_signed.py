"""An IssuerSigned verified on its own, as an issuer hands it to a wallet (ISO 18013-5
issuance, OpenID4VCI's mso_mdoc credential): every issuer-side check named, no device
authentication (there is no presentation), and the same refusals as in a DeviceResponse."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mdoc_issuing import DOC_TYPE, NOW, NS, issue, make_pki

from protocols import cbor, cose, mdoc

ISSUER_CHECKS = ["issuer_certificate_chain", "issuer_signature", "mso_structure", "doc_type", "value_digests",
                 "validity"]


@pytest.fixture(scope="module")
def pki():
    return make_pki()


@pytest.fixture(scope="module")
def issued(pki):
    return issue(pki, ec.generate_private_key(ec.SECP256R1()))


def test_a_sound_issuer_signed_passes_every_issuer_check_and_lists_every_element(pki, issued):
    result = mdoc.verify_issuer_signed(issued.encode(), trust_anchors=[pki[0]], now=NOW)
    assert result.valid and [c.name for c in result.checks] == ISSUER_CHECKS
    assert "device_authentication" not in {c.name for c in result.checks}
    assert "(no docType given to compare)" in result.check("doc_type").reason
    (doc,) = result.documents
    assert doc.doc_type == DOC_TYPE and set(doc.elements[NS]) == {i.element_identifier for i in issued.items()[NS]}
    expected = mdoc.verify_issuer_signed(issued, trust_anchors=[pki[0]], now=NOW, doc_type=DOC_TYPE)
    assert expected.valid and "== MSO" in expected.check("doc_type").reason


@pytest.mark.parametrize(("change", "failed"), [
    ("doc_type", ["doc_type"]),
    ("expired", ["validity"]),
    ("untrusted", ["issuer_certificate_chain"]),
    ("item", ["value_digests"]),
    ("mso", ["issuer_signature", "mso_structure", "doc_type", "value_digests", "validity"]),
])
def test_each_refusal_is_named(pki, issued, change, failed):
    kw = {"trust_anchors": [pki[0]], "now": NOW}
    data = issued
    if change == "doc_type":
        kw["doc_type"] = "org.iso.23220.photoid.1"
    elif change == "expired":
        kw["now"] = NOW + dt.timedelta(days=320)  # after validUntil, inside the DS certificate
    elif change == "untrusted":
        kw["trust_anchors"] = [make_pki()[0]]
    elif change == "item":
        raws = list(issued.name_spaces[NS])
        raws[0] = raws[0].replace(b"Yamada", b"Yamado")
        data = mdoc.IssuerSigned({NS: tuple(raws)}, issued.issuer_auth)
    elif change == "mso":
        auth = issued.issuer_auth
        payload = bytearray(auth.payload)
        payload[-3] ^= 0x01
        data = mdoc.IssuerSigned(issued.name_spaces, cose.Sign1(auth.protected_bytes, auth.protected,
                                                                auth.unprotected, bytes(payload), auth.signature))
    result = mdoc.verify_issuer_signed(data.encode(), **kw)
    assert not result.valid and result.failed() == failed, result.checks
    assert not result.documents


def test_the_annex_d_issuer_signed_verifies_on_its_own():
    from test_mdoc_vectors import cert, hexv

    response = mdoc.DeviceResponse.decode(hexv("device_response"))
    issued = response.documents[0].issuer_signed
    result = mdoc.verify_issuer_signed(issued.encode(), trust_anchors=[cert("iaca_cert")],
                                       now=dt.datetime(2021, 1, 1, tzinfo=dt.UTC), doc_type="org.iso.18013.5.1.mDL")
    assert result.valid, result.checks
    assert result.documents[0].elements["org.iso.18013.5.1"]["family_name"] == "Doe"


def test_key_authorizations_in_the_mso_need_no_device_signed(pki):
    issued = issue(pki, ec.generate_private_key(ec.SECP256R1()), key_authorizations={"nameSpaces": [NS]})
    result = mdoc.verify_issuer_signed(issued.encode(), trust_anchors=[pki[0]], now=NOW)
    assert result.valid and [c.name for c in result.checks] == ISSUER_CHECKS


def test_what_is_not_an_issuer_signed_is_a_decode_error(pki):
    for data in (b"", b"\xa0", cbor.dumps({"documents": []}), cbor.dumps([1, 2])):
        with pytest.raises(mdoc.MdocError):
            mdoc.verify_issuer_signed(data, trust_anchors=[pki[0]], now=NOW)
    with pytest.raises(mdoc.MdocError, match="aware"):
        mdoc.verify_issuer_signed(b"\xa0", trust_anchors=[pki[0]], now=NOW.replace(tzinfo=None))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_mdoc_error_or_a_result(pki, data):
    try:
        result = mdoc.verify_issuer_signed(data, trust_anchors=[pki[0]], now=NOW)
    except mdoc.MdocError:
        return
    assert not result.valid


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_bit_of_the_issuer_signed_is_refused(pki, issued, data):
    raw = bytearray(issued.encode())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        result = mdoc.verify_issuer_signed(bytes(raw), trust_anchors=[pki[0]], now=NOW, doc_type=DOC_TYPE)
    except mdoc.MdocError:
        return
    assert not result.valid


def test_the_reader_pipeline_checks_an_issued_card_substitute_mdoc_and_its_status():
    """The whole reader pipeline on an IssuerSigned as our issuer makes it: the issuer-side
    checks, the Annex B profiles, the trust anchor's scope and the status list the issuer
    publishes, which says VALID, then INVALID once the credential is revoked."""
    from sqlalchemy.orm import sessionmaker

    from issuer.holders import attach_phone, register
    from issuer.keystore import MemoryKeyStore
    from issuer.mdoc.issuance import make_proof
    from issuer.mdoc.service import MdocService
    from issuer.revocation import revoke
    from mcred.db import make_engine, migrate
    from protocols.cardsub import parse_holder
    from reader.fetch import HttpAnswer
    from reader.pipeline import ReaderPipeline, StatusListCache
    from reader.trust import TrustStore

    engine = make_engine("sqlite://")
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    svc = MdocService(sessions, MemoryKeyStore(), "http://issuer.test")
    holder = {"family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ", "given_name_kana": "ハナコ",
              "birth_date": "1990-04-01", "sex": 2, "address": "東京都千代田区", "prefecture": "東京都",
              "municipality": "千代田区"}
    attach_phone(sessions, register(sessions, parse_holder(holder)), "phone-a")
    device = ec.generate_private_key(ec.SECP256R1())
    spki, proof = make_proof(device, svc.mdoc_challenge("job-a", "phone-a", 0))
    issued = svc.issue_mdoc("job-a", "phone-a", 0, spki, proof)

    def fetcher(uri: str, etag: str | None) -> HttpAnswer:  # the issuer's endpoint, in memory
        token = svc.status_token_by_uri(uri)
        return HttpAnswer(200, token.token, {"etag": token.etag, "cache-control": "max-age=0"})

    store = TrustStore()
    store.add(svc.iaca_certificate())
    # a reader whose clock is 30 s behind the issuer's, meeting certificates made just now
    # (the DS at issuance, the list signer at the first fetch): the issuer backdates
    # notBefore, so neither is "not yet valid" (the MSO's validFrom is within the skew)
    behind = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    result = ReaderPipeline(store, status=StatusListCache(fetcher)).verify_issuer_signed(issued, now=behind)
    assert result.valid, [c for c in result.checks if not c.passed]
    names = [c.name for c in result.checks]
    assert names[:6] == ISSUER_CHECKS and "device_authentication" not in names and "key_authorizations" not in names
    assert {"iaca_profile", "ds_profile", "trust_anchor_scope", "revocation_status"} <= set(names)
    assert result.documents[0].elements
    revoke(sessions, "phone-a", "keyCompromise", "mdoc")
    later = ReaderPipeline(store, status=StatusListCache(fetcher)).verify_issuer_signed(issued)
    assert later.failed() == ["revocation_status"], later.checks
    garbage = ReaderPipeline(store).verify_issuer_signed(b"\xff\x00")
    assert not garbage.valid and garbage.checks[0].name == "mso_structure"


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.binary(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=8))
def test_cbor_maps_and_arrays_pass_through_and_their_base64url_text_decodes(value):
    import base64

    data = cbor.dumps({"v": value})
    assert cbor.from_text_or_raw(data) == data  # a map starts with 0xa1: never taken for text
    text = base64.urlsafe_b64encode(data).rstrip(b"=")
    assert cbor.from_text_or_raw(text) == data
    assert cbor.from_text_or_raw(b"  " + text + b"\n") == data
    assert cbor.from_text_or_raw(base64.urlsafe_b64encode(data)) == data  # padded too
