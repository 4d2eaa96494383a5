"""ISO/IEC 18013-5 second edition requests (DeviceRequest "1.1"): deviceRequestInfo with use
cases, readerAuthAll over ReaderAuthenticationAllBytes, and requestInfo's
alternativeDataElements, issuerIdentifiers, uniqueDocSetRequired and maximumResponseSize.

There are no published byte vectors for these; the encodings are checked against the
structures multipaz (openwallet-foundation/multipaz, DeviceRequestTest) prints for the same
requests, written out here as CBOR values, and the signature against a verifier that builds
ReaderAuthenticationAll itself from the CDDL."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_present_kit import T0, reader_pki

from protocols import cbor
from protocols.mdoc import (
    AlternativeDataElements,
    DeviceRequest,
    DeviceRequestInfo,
    DocRequest,
    DocRequestInfo,
    ItemsRequest,
    MdocDecodeError,
    UseCase,
    reader_authentication_all_bytes,
    verify_reader_auth,
)
from protocols.mdoc.verify import READER_AUTHENTICATION, READER_CERTIFICATE_CHAIN

MDL, MDL_NS = "org.iso.18013.5.1.mDL", "org.iso.18013.5.1"
ITEMS = {MDL_NS: {"age_over_18": True, "portrait": False}}
TRANSCRIPT = cbor.dumps([None, None, ["test", b"\x01"]])


def _request(info: DocRequestInfo | None = None, **kw) -> DeviceRequest:
    return DeviceRequest.build([DocRequest(ItemsRequest.build(MDL, ITEMS, info=info))], **kw)


def _items(request: DeviceRequest, i: int = 0) -> dict:
    return cbor.loads(request.doc_requests[i].items_request.raw)


def test_alternative_data_elements_encode_as_multipaz_writes_them():
    info = DocRequestInfo(alternative_data_elements=(AlternativeDataElements(
        (MDL_NS, "age_over_18"), (((MDL_NS, "age_in_years"),), ((MDL_NS, "birth_date"),))),))
    req = _request(info)
    assert req.version == "1.1"
    assert _items(req) == {"docType": MDL, "nameSpaces": ITEMS, "requestInfo": {"alternativeDataElements": [{
        "requestedElement": [MDL_NS, "age_over_18"],
        "alternativeElementSets": [[[MDL_NS, "age_in_years"]], [[MDL_NS, "birth_date"]]]}]}}
    again = DeviceRequest.decode(req.encode())
    assert again.version == "1.1" and again.doc_requests[0].items_request.info == info
    assert info.alternatives_for((MDL_NS, "age_over_18"))[1] == ((MDL_NS, "birth_date"),)
    assert info.alternatives_for((MDL_NS, "portrait")) == ()


@pytest.mark.parametrize(("info", "written"), [
    (DocRequestInfo(issuer_identifiers=(b"\x01\x02\x03", b"\x04\x05\x06")), {"issuerIdentifiers": [b"\x01\x02\x03", b"\x04\x05\x06"]}),
    (DocRequestInfo(unique_doc_set_required=True), {"uniqueDocSetRequired": True}),
    (DocRequestInfo(unique_doc_set_required=False), {"uniqueDocSetRequired": False}),
    (DocRequestInfo(maximum_response_size=42), {"maximumResponseSize": 42}),
])
def test_the_other_request_info_fields_encode_as_multipaz_writes_them(info, written):
    req = _request(info)
    assert req.version == "1.1"
    assert _items(req)["requestInfo"] == written
    assert DeviceRequest.decode(req.encode()).doc_requests[0].items_request.info == info


def test_a_first_edition_request_stays_version_1_0_and_keeps_unknown_request_info():
    plain = _request()
    assert plain.version == "1.0" and "requestInfo" not in _items(plain)
    kept = DeviceRequest.build([DocRequest(ItemsRequest.build(MDL, ITEMS, {"vendor.x": 7}))])
    assert kept.version == "1.0"
    info = DeviceRequest.decode(kept.encode()).doc_requests[0].items_request.info
    assert info.other == {"vendor.x": 7} and not info.second_edition


def test_use_cases_encode_as_multipaz_writes_them_and_name_existing_doc_requests():
    docs = [DocRequest(ItemsRequest.build(dt_, {ns: {"age_over_18": True, "portrait": False}}))
            for dt_, ns in ((MDL, MDL_NS), ("org.iso.23220.photoid.1", "org.iso.23220.2"),
                            ("eu.europa.ec.eudi.pid.1", "eu.europa.ec.eudi.pid.1"))]
    info = DeviceRequestInfo.build([UseCase(True, ((0,), (1,), (2,)))])
    req = DeviceRequest.build(docs, device_request_info=info)
    m = cbor.loads(req.encode())
    assert m["version"] == "1.1"
    assert m["deviceRequestInfo"].tag == 24
    assert cbor.loads(m["deviceRequestInfo"].value) == {"useCases": [{"mandatory": True,
                                                                       "documentSets": [[0], [1], [2]]}]}
    again = DeviceRequest.decode(req.encode())
    assert again.device_request_info == info and again.device_request_info.raw == info.raw
    with pytest.raises(MdocDecodeError, match="docRequest 3"):
        DeviceRequest.build(docs, device_request_info=DeviceRequestInfo.build([UseCase(True, ((3,),))]))


def test_doc_requests_chosen_by_use_case():
    docs = [DocRequest(ItemsRequest.build(t, {"ns": {"x": False}})) for t in ("a", "b", "c", "d")]
    cases = [UseCase(True, ((0,), (1, 2))), UseCase(False, ((3,),))]
    req = DeviceRequest.build(docs, device_request_info=DeviceRequestInfo.build(cases))
    held = {"b", "c"}
    # use case 0: set (0,) not held, set (1, 2) is; use case 1: nothing held -> answered (errors), unmet
    assert req.chosen(lambda i, d: d.items_request.doc_type in held) == ([1, 2, 3], [1])
    assert req.chosen(lambda i, d: True) == ([0, 3], [])
    assert _request().chosen(lambda i, d: False) == ([0], [])


# -- readerAuthAll ------------------------------------------------------------------------------


def _independent_reader_authentication_all(transcript: bytes, request: DeviceRequest) -> bytes:
    """ReaderAuthenticationAll built from the CDDL with the generic encoder."""
    info = request.device_request_info
    return cbor.dumps(cbor.CBORTag(24, cbor.dumps([
        "ReaderAuthenticationAll", cbor.loads(transcript),
        [cbor.CBORTag(24, d.items_request.raw) for d in request.doc_requests],
        None if info is None else cbor.CBORTag(24, info.raw)])))


def test_reader_auth_all_signs_every_items_request_and_the_request_info():
    pki = reader_pki()
    info = DeviceRequestInfo.build([UseCase(True, ((0,), (1,)))], {"vendor.purpose": "age check"})
    docs = [DocRequest(ItemsRequest.build(t, ITEMS)) for t in (MDL, "jp.example.other")]
    req = DeviceRequest.build(docs, device_request_info=info, reader_signer=pki.signer, reader_chain=pki.chain,
                              session_transcript=TRANSCRIPT)
    assert req.version == "1.1" and len(req.reader_auth_all) == 1
    assert all(d.reader_auth is None for d in req.doc_requests)
    expected = _independent_reader_authentication_all(TRANSCRIPT, req)
    assert reader_authentication_all_bytes(TRANSCRIPT, [d.items_request.raw for d in docs], info.raw) == expected
    req.reader_auth_all[0].verify(pki.key.public_key(), detached=expected)

    again = DeviceRequest.decode(req.encode())
    assert again.device_request_info.other == {"vendor.purpose": "age check"}
    result = verify_reader_auth(again, session_transcript=TRANSCRIPT, trust_anchors=[pki.ca], now=T0)
    assert result.valid, result
    assert [c.name for c in result.checks] == [READER_CERTIFICATE_CHAIN, READER_AUTHENTICATION]
    assert result.checks[1].reason.startswith("readerAuthAll[0]: ")

    # another session's transcript, another reader CA
    other = cbor.dumps([None, None, ["test", b"\x02"]])
    assert not verify_reader_auth(again, session_transcript=other, trust_anchors=[pki.ca], now=T0).valid
    stranger = verify_reader_auth(again, session_transcript=TRANSCRIPT, trust_anchors=[reader_pki().ca], now=T0)
    assert stranger.check(READER_AUTHENTICATION).passed and not stranger.check(READER_CERTIFICATE_CHAIN).passed


def test_reader_auth_all_covers_a_changed_items_request_or_request_info():
    pki = reader_pki()
    req = DeviceRequest.build([DocRequest(ItemsRequest.build(MDL, ITEMS))],
                              device_request_info=DeviceRequestInfo.build([UseCase(True, ((0,),))]),
                              reader_signer=pki.signer, reader_chain=pki.chain, session_transcript=TRANSCRIPT)
    m = cbor.loads(req.encode())
    asked_more = dict(m, docRequests=[{"itemsRequest": cbor.CBORTag(24, ItemsRequest.build(
        MDL, {MDL_NS: {"age_over_18": True, "portrait": False, "resident_address": False}}).raw)}])
    other_info = dict(m, deviceRequestInfo=cbor.CBORTag(24, DeviceRequestInfo.build([UseCase(False, ((0,),))]).raw))
    for tampered in (asked_more, other_info):
        result = verify_reader_auth(cbor.dumps(tampered), session_transcript=TRANSCRIPT, trust_anchors=[pki.ca], now=T0)
        assert not result.check(READER_AUTHENTICATION).passed


def test_a_doc_request_with_its_own_reader_auth_beside_reader_auth_all_is_checked_too():
    pki, other = reader_pki(), reader_pki("Other")
    items = ItemsRequest.build(MDL, ITEMS)
    own = DocRequest.build(items, reader_signer=other.signer, reader_chain=other.chain,
                           session_transcript=TRANSCRIPT)
    req = DeviceRequest.build([own], reader_signer=pki.signer, reader_chain=pki.chain, session_transcript=TRANSCRIPT)
    result = verify_reader_auth(DeviceRequest.decode(req.encode()), session_transcript=TRANSCRIPT,
                                trust_anchors=[pki.ca, other.ca], now=T0)
    assert result.valid and len(result.checks) == 4


def test_a_first_edition_request_carrying_second_edition_fields_has_them_ignored():
    pki = reader_pki()
    req = DeviceRequest.build([DocRequest(ItemsRequest.build(MDL, ITEMS))], reader_signer=pki.signer,
                              reader_chain=pki.chain, session_transcript=TRANSCRIPT,
                              device_request_info=DeviceRequestInfo.build([UseCase(True, ((0,),))]))
    m = dict(cbor.loads(req.encode()), version="1.0")
    old = DeviceRequest.decode(cbor.dumps(m))
    assert old.reader_auth_all == () and old.device_request_info is None
    result = verify_reader_auth(old, session_transcript=TRANSCRIPT, trust_anchors=[pki.ca], now=T0)
    assert not result.valid and "no readerAuth" in result.check(READER_AUTHENTICATION).reason
    assert DeviceRequest.decode(cbor.dumps(dict(m, version="1.2"))).reader_auth_all  # later 1.x: read


# -- malformed second-edition fields are named ---------------------------------------------------


def _with_items(request_info) -> bytes:
    raw = cbor.dumps({"docType": MDL, "nameSpaces": ITEMS, "requestInfo": request_info})
    return cbor.dumps({"version": "1.1", "docRequests": [{"itemsRequest": cbor.CBORTag(24, raw)}]})


@pytest.mark.parametrize(("request_info", "named"), [
    ({"alternativeDataElements": {}}, r"requestInfo\.alternativeDataElements: expected an array"),
    ({"alternativeDataElements": [{"requestedElement": [MDL_NS], "alternativeElementSets": [[[MDL_NS, "x"]]]}]},
     r"alternativeDataElements\[0\]\.requestedElement: expected \[NameSpace, DataElementIdentifier\]"),
    ({"alternativeDataElements": [{"requestedElement": [MDL_NS, "a"], "alternativeElementSets": []}]},
     r"alternativeElementSets: empty"),
    ({"alternativeDataElements": [{"requestedElement": [MDL_NS, "a"], "alternativeElementSets": [[[MDL_NS, 3]]]}]},
     r"alternativeElementSets\[0\]\[0\]"),
    ({"issuerIdentifiers": ["abc"]}, r"issuerIdentifiers\[0\]: expected a byte string, got str"),
    ({"uniqueDocSetRequired": 1}, r"uniqueDocSetRequired: expected bool"),
    ({"maximumResponseSize": True}, r"maximumResponseSize: expected int, got bool"),
    ({"maximumResponseSize": -1}, r"maximumResponseSize: must be an unsigned integer"),
    ({1: 2}, r"requestInfo: keys must be text"),
])
def test_malformed_request_info_is_refused_by_name(request_info, named):
    with pytest.raises(MdocDecodeError, match=named):
        DeviceRequest.decode(_with_items(request_info))


def _with_device_info(info) -> bytes:
    raw = cbor.dumps({"docType": MDL, "nameSpaces": ITEMS})
    return cbor.dumps({"version": "1.1", "docRequests": [{"itemsRequest": cbor.CBORTag(24, raw)}],
                       "deviceRequestInfo": info})


@pytest.mark.parametrize(("info", "named"), [
    ({"useCases": []}, r"expected #6.24\(bstr\)"),
    (cbor.CBORTag(24, cbor.dumps({"useCases": [{"mandatory": True, "documentSets": [[1]]}]})),
     r"useCases\[0\]\.documentSets\[0\]: docRequest 1 does not exist \(there are 1\)"),
    (cbor.CBORTag(24, cbor.dumps({"useCases": [{"mandatory": "yes", "documentSets": [[0]]}]})),
     r"useCases\[0\]\.mandatory: expected bool"),
    (cbor.CBORTag(24, cbor.dumps({"useCases": [{"mandatory": True, "documentSets": [[]]}]})),
     r"documentSets\[0\]: empty"),
    (cbor.CBORTag(24, cbor.dumps({"useCases": [{"mandatory": True, "documentSets": [[-1]]}]})),
     r"documentSets\[0\]\[0\]: expected a docRequest index"),
    (cbor.CBORTag(24, cbor.dumps({"useCases": [{"mandatory": True, "documentSets": [[0]], "purposeHints": {"a": "b"}}]})),
     r"purposeHints: expected \{tstr => int\}"),
    (cbor.CBORTag(24, b"\xa1"), r"deviceRequestInfo"),
])
def test_malformed_device_request_info_is_refused_by_name(info, named):
    with pytest.raises(MdocDecodeError, match=named):
        DeviceRequest.decode(_with_device_info(info))


def test_a_malformed_reader_auth_all_is_refused_by_name():
    raw = cbor.dumps({"docType": MDL, "nameSpaces": ITEMS})
    bad = cbor.dumps({"version": "1.1", "docRequests": [{"itemsRequest": cbor.CBORTag(24, raw)}],
                      "readerAuthAll": [[b"", {}, None]]})
    with pytest.raises(MdocDecodeError, match=r"readerAuthAll\[0\]"):
        DeviceRequest.decode(bad)


_SIGNED = None


def _signed_request() -> bytes:
    global _SIGNED
    if _SIGNED is None:
        pki = reader_pki()
        info = DocRequestInfo(alternative_data_elements=(AlternativeDataElements(
            (MDL_NS, "age_over_18"), (((MDL_NS, "birth_date"),),)),), issuer_identifiers=(b"\x01" * 20,),
            maximum_response_size=4096)
        _SIGNED = DeviceRequest.build(
            [DocRequest(ItemsRequest.build(MDL, ITEMS, info=info))],
            device_request_info=DeviceRequestInfo.build([UseCase(True, ((0,),), {"jp.example": 1})]),
            reader_signer=pki.signer, reader_chain=pki.chain, session_transcript=TRANSCRIPT).encode()
    return _SIGNED


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_second_edition_requests_fail_only_with_decode_errors(data):
    raw = bytearray(_signed_request())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        req = DeviceRequest.decode(bytes(raw))
    except MdocDecodeError:
        return
    # whatever decodes, checks without raising
    verify_reader_auth(req, session_transcript=TRANSCRIPT,
                       trust_anchors=[], now=T0 + dt.timedelta(days=1))
    req.chosen(lambda i, d: i % 2 == 0)
    for d in req.doc_requests:
        assert d.items_request.info is None or isinstance(d.items_request.info, DocRequestInfo)



def test_a_reader_auth_without_a_reader_certificate_fails_both_checks_by_name():
    """readerAuth whose x5chain is absent: no chain to a reader CA and no key to check the
    signature with; both checks are reported, failed, and nothing is valid (also a verdict
    built with no check at all: no check passed is no pass)."""
    pki = reader_pki()
    own = DocRequest.build(ItemsRequest.build(MDL, ITEMS), reader_signer=pki.signer, reader_chain=pki.chain,
                           session_transcript=TRANSCRIPT)
    m = cbor.loads(DeviceRequest.build([own]).encode())
    m["docRequests"][0]["readerAuth"][1] = {}  # the unprotected header, where x5chain was
    result = verify_reader_auth(cbor.dumps(m), session_transcript=TRANSCRIPT, trust_anchors=[pki.ca], now=T0)
    assert [c.name for c in result.checks] == [READER_CERTIFICATE_CHAIN, READER_AUTHENTICATION]
    assert result.failed() == [READER_CERTIFICATE_CHAIN, READER_AUTHENTICATION]
    assert result.check(READER_AUTHENTICATION).reason.endswith("no usable reader key")
    assert not result.valid
    assert not type(result)(()).valid


def test_a_reader_certificate_without_the_reader_auth_eku_fails_the_chain_check():
    """A certificate of a trusted reader CA, signature sound, but without extended key usage
    mdlReaderAuth (1.0.18013.5.1.6): not a reader authentication certificate."""
    pki = reader_pki(eku=False)
    own = DocRequest.build(ItemsRequest.build(MDL, ITEMS), reader_signer=pki.signer, reader_chain=pki.chain,
                           session_transcript=TRANSCRIPT)
    result = verify_reader_auth(DeviceRequest.build([own]).encode(), session_transcript=TRANSCRIPT,
                                trust_anchors=[pki.ca], now=T0)
    assert result.failed() == [READER_CERTIFICATE_CHAIN]
    assert "lacks extended key usage 1.0.18013.5.1.6" in result.check(READER_CERTIFICATE_CHAIN).reason


@pytest.mark.parametrize("x5chain", [[], 7, [b"\x30\x00", 7]])
def test_a_reader_auth_with_a_malformed_x5chain_fails_both_checks_not_raises(x5chain):
    """A hostile reader's readerAuth with x5chain not a bstr nor a non-empty array of bstr:
    the wallet's verify_reader_auth reports both checks failed (it raised CoseDecodeError)."""
    pki = reader_pki()
    own = DocRequest.build(ItemsRequest.build(MDL, ITEMS), reader_signer=pki.signer, reader_chain=pki.chain,
                           session_transcript=TRANSCRIPT)
    m = cbor.loads(DeviceRequest.build([own]).encode())
    m["docRequests"][0]["readerAuth"][1] = {33: x5chain}
    result = verify_reader_auth(cbor.dumps(m), session_transcript=TRANSCRIPT, trust_anchors=[pki.ca], now=T0)
    assert result.failed() == [READER_CERTIFICATE_CHAIN, READER_AUTHENTICATION]
    assert "x5chain (33)" in result.check(READER_CERTIFICATE_CHAIN).reason
