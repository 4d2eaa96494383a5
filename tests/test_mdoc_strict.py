"""Closed CDDL maps are decoded strictly, and a document that discloses nothing says so
(ISO/IEC 18013-5:2021 §8.3.2.1.2.2; specs/mdoc-encoding.md)."""

from __future__ import annotations

import pytest
from test_mdoc_issuing import NS, device_key, issue, pki, present, transcript, verify  # noqa: F401

from protocols import cbor, mdoc


def _rewrite(data: bytes, fn) -> bytes:
    m = cbor.loads(data)
    fn(m["documents"][0])
    return cbor.dumps(m, canonical=False)


def test_corrupted_name_spaces_key_is_a_decode_error_naming_it(pki, device_key):  # noqa: F811
    st = transcript()
    good = present(issue(pki, device_key), device_key, st)
    bad = _rewrite(good, lambda d: d["issuerSigned"].__setitem__("nameSpaceX", d["issuerSigned"].pop("nameSpaces")))
    with pytest.raises(mdoc.MdocDecodeError, match="nameSpaceX"):
        mdoc.DeviceResponse.decode(bad)
    with pytest.raises(mdoc.MdocDecodeError, match="nameSpaceX"):
        verify(pki, bad, st)


def test_any_unknown_issuer_signed_key_is_refused(pki, device_key):  # noqa: F811
    isg = issue(pki, device_key).to_cbor()
    isg[7] = "extra"
    with pytest.raises(mdoc.MdocDecodeError, match="IssuerSigned: unexpected key"):
        mdoc.IssuerSigned.from_cbor(isg)


@pytest.mark.parametrize("key", ["digestID", "random", "elementIdentifier", "elementValue"])
def test_issuer_signed_item_with_a_renamed_key_names_it(key):
    item = {"digestID": 1, "random": bytes(16), "elementIdentifier": "x", "elementValue": 1}
    item[key + "X"] = item.pop(key)
    with pytest.raises(mdoc.MdocDecodeError, match=f"unexpected key.*{key}X"):
        mdoc.IssuerSignedItem.decode(cbor.dumps(item))
    item.pop(key + "X")
    with pytest.raises(mdoc.MdocDecodeError, match=f"missing '{key}'"):
        mdoc.IssuerSignedItem.decode(cbor.dumps(item))


def test_renamed_item_key_inside_a_response_fails_value_digests_by_name(pki, device_key):  # noqa: F811
    # a renamed key changes the item's bytes, so its digest fails first: still no silent pass
    st = transcript()
    good = present(issue(pki, device_key), device_key, st)

    def rename(doc):
        raw = doc["issuerSigned"]["nameSpaces"][NS][0].value
        doc["issuerSigned"]["nameSpaces"][NS][0] = cbor.CBORTag(24, raw.replace(b"random", b"randoX"))

    result = verify(pki, _rewrite(good, rename), st)
    assert result.failed() == ["value_digests"]


def test_issuer_signed_without_name_spaces_passes_the_core_but_says_so(pki, device_key):  # noqa: F811
    st = transcript()
    good = present(issue(pki, device_key), device_key, st)
    bare = _rewrite(good, lambda d: d["issuerSigned"].pop("nameSpaces"))
    result = verify(pki, bare, st)
    assert result.valid, result.to_json()
    assert result.check("value_digests").reason.endswith("no issuer-signed item disclosed (IssuerSigned without nameSpaces)")
    assert result.documents[0].elements == {}


@pytest.mark.parametrize("bad", [True, False, 1.0, "10"])
def test_error_codes_are_integers_not_booleans(bad):
    """ErrorCode is an int (§8.3.2.1.2.3); Python's bool is an int too, so ``true`` needs its
    own refusal, in documentErrors and in a Document's errors."""
    ok = mdoc.DeviceResponse.decode(cbor.dumps({"version": "1.0", "status": 0, "documentErrors": [{"x": 10}]}))
    assert ok.document_errors == ({"x": 10},)
    with pytest.raises(mdoc.MdocDecodeError, match="documentErrors"):
        mdoc.DeviceResponse.decode(cbor.dumps({"version": "1.0", "status": 0, "documentErrors": [{"x": bad}]}))
    with pytest.raises(mdoc.MdocDecodeError, match="errors"):
        mdoc.Document.from_cbor({"docType": "d", "issuerSigned": {}, "errors": {"ns": {"x": bad}}})


def test_disclosed_values_map_to_json_by_their_cbor_type():
    """DisclosedDocument.to_json (the reader's JSON verdict) maps each element value by its
    CBOR type: bstr as padded base64, tdate (aware) as YYYY-MM-DDTHH:MM:SSZ, full-date as
    YYYY-MM-DD, a naive datetime as ISO text, arrays and maps element by element (keys as
    text), other tags as {"tag", "value"}, floats JSON has no number for as text, and
    anything else JSON cannot carry as its text."""
    import datetime as dt
    import decimal

    when = dt.datetime(2026, 6, 1, 9, 0, 30, 250000, tzinfo=dt.UTC)
    values = {
        "b": b"\x00\xff", "t": when, "naive": when.replace(tzinfo=None), "d": dt.date(1990, 4, 1),
        "list": [b"\x01", dt.date(2000, 1, 2)], "tuple": (1, "x"), "map": {1: when},
        "tag": cbor.CBORTag(1004, "1990-04-01"), "nan": float("nan"), "inf": float("-inf"),
        "plain": [None, True, 3, 1.5, "s"], "other": decimal.Decimal("2.50"),
    }
    doc = mdoc.DisclosedDocument("d", {"ns": values})
    assert doc.to_json()["elements"]["ns"] == {
        "b": "AP8=", "t": "2026-06-01T09:00:30Z", "naive": "2026-06-01T09:00:30.250000", "d": "1990-04-01",
        "list": ["AQ==", "2000-01-02"], "tuple": [1, "x"], "map": {"1": "2026-06-01T09:00:30Z"},
        "tag": {"tag": 1004, "value": "1990-04-01"}, "nan": "NaN", "inf": "-Infinity",
        "plain": [None, True, 3, 1.5, "s"], "other": "2.50",
    }


@pytest.mark.parametrize("status_list", [[7, "https://issuer.test/status/1"], "ab", b"ab", {"idx": 7}])
def test_an_mso_status_list_reference_that_is_no_idx_uri_map_is_a_decode_error(status_list):
    """MSO ``status`` (18013-5 2nd edition, status list §8): ``status_list`` is the map
    {idx: uint, uri: tstr}; an array, a string or a map lacking one is refused by name."""
    with pytest.raises(mdoc.MdocDecodeError, match="status_list"):
        mdoc.MsoStatus.from_map({"status_list": status_list})
    assert mdoc.MsoStatus.from_map({"status_list": {"idx": 7, "uri": "u"}}).status_list.idx == 7


@pytest.mark.parametrize("status", [
    mdoc.MsoStatus(identifier_list=mdoc.IdentifierListRef(b"\x01\x02", "https://issuer.test/ids/1")),
    mdoc.MsoStatus(mdoc.StatusListRef(7, "https://issuer.test/status/1"),
                   mdoc.IdentifierListRef(b"\x01", "https://issuer.test/ids/1")),
])
def test_an_mso_status_with_an_identifier_list_alone_or_beside_a_status_list_round_trips(status):
    """MSO ``status`` may name an identifier list instead of (or beside) a status list: each
    reference written is read back, and a missing one stays absent."""
    assert mdoc.MsoStatus.from_map(status.to_map()) == status
    assert ("status_list" in status.to_map()) is (status.status_list is not None)


@pytest.mark.parametrize("key", ["signed", "validFrom", "validUntil", "expectedUpdate"])
def test_a_validity_time_without_a_time_zone_is_a_decode_error(key):
    """18013-5 §9.1.2.4: the validityInfo times are tdate (RFC 3339 with its offset); a
    time without one could not be compared with the reader's clock: refused by name."""
    import datetime as dt

    t = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    value = {"signed": t, "validFrom": t, "validUntil": t + dt.timedelta(days=1), "expectedUpdate": t}
    value[key] = value[key].replace(tzinfo=None)
    with pytest.raises(mdoc.MdocDecodeError, match=f"MSO.validityInfo.{key}: tdate without a time zone"):
        mdoc.ValidityInfo.from_map(value)


# -- the MSO's own fields (18013-5 §9.1.2.4, §9.1.2.5): what its decoder refuses and keeps ---

def _mso_map(**changes):
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ec

    from protocols import cose

    key = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    t = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    m = mdoc.MobileSecurityObject("SHA-256", {"ns": {0: bytes(32)}}, mdoc.DeviceKeyInfo(key), "d",
                                  mdoc.ValidityInfo(t, t, t + dt.timedelta(days=1))).to_map()
    m.update(changes)
    return m


@pytest.mark.parametrize("version", ["2.0", "1", ""])
def test_an_mso_of_another_version_is_refused_by_name(version):
    """§9.1.2.4: the MSO version is "1.0"; a decoder that read another version's MSO as this
    one could take fields whose meaning changed: refused by name, "1.0" read."""
    with pytest.raises(mdoc.MdocDecodeError, match=r"MSO.version: unsupported"):
        mdoc.MobileSecurityObject.from_map(_mso_map(version=version))
    assert mdoc.MobileSecurityObject.from_map(_mso_map()).version == "1.0"


@pytest.mark.parametrize("alg", ["SHA-1", "MD5", "sha-256", "SHA-224"])
def test_an_mso_digest_algorithm_outside_sha_256_384_512_is_refused_by_name(alg):
    """§9.1.2.5: digestAlgorithm is "SHA-256", "SHA-384" or "SHA-512" (a tstr compared
    exactly); a weaker or unknown one is refused when the MSO is read, not taken."""
    with pytest.raises(mdoc.MdocDecodeError, match=r"MSO.digestAlgorithm: unsupported"):
        mdoc.MobileSecurityObject.from_map(_mso_map(digestAlgorithm=alg))
    for ok in ("SHA-256", "SHA-384", "SHA-512"):
        assert mdoc.MobileSecurityObject.from_map(_mso_map(digestAlgorithm=ok)).digest_algorithm == ok


@pytest.mark.parametrize("beside", [{}, {"identifier_list": {"id": b"\x01", "uri": "https://issuer.test/ids/1"}}])
def test_an_mso_status_list_index_is_a_uint_alone_or_beside_an_identifier_list(beside):
    """``status_list`` = {idx: uint, uri: tstr}: index 0 is the list's first entry and is
    read; a negative index or a bool, or a uri that is no text, is refused by name, whether
    the reference stands alone or beside an identifier_list."""
    ok = mdoc.MsoStatus.from_map({"status_list": {"idx": 0, "uri": "u"}, **beside})
    assert ok.status_list == mdoc.StatusListRef(0, "u")
    with pytest.raises(mdoc.MdocDecodeError, match=r"status_list.idx: must be unsigned"):
        mdoc.MsoStatus.from_map({"status_list": {"idx": -1, "uri": "u"}, **beside})
    with pytest.raises(mdoc.MdocDecodeError, match=r"status_list.idx: expected int, got bool"):
        mdoc.MsoStatus.from_map({"status_list": {"idx": True, "uri": "u"}, **beside})
    with pytest.raises(mdoc.MdocDecodeError, match=r"status_list.uri: expected str, got bytes"):
        mdoc.MsoStatus.from_map({"status_list": {"idx": 1, "uri": b"u"}, **beside})


@pytest.mark.parametrize("key", ["signed", "validFrom", "validUntil"])
def test_a_validity_time_without_a_time_zone_is_refused_without_expected_update_too(key):
    """The usual validityInfo has no expectedUpdate; §9.1.2.4's tdate rule holds for it as
    for the four-time map: a time without a zone is refused by name."""
    import datetime as dt

    t = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    value = {"signed": t, "validFrom": t, "validUntil": t + dt.timedelta(days=1)}
    value[key] = value[key].replace(tzinfo=None)
    with pytest.raises(mdoc.MdocDecodeError, match=f"MSO.validityInfo.{key}: tdate without a time zone"):
        mdoc.ValidityInfo.from_map(value)


@pytest.mark.parametrize("expected_update", [False, True])
@pytest.mark.parametrize("key", ["signed", "validFrom", "validUntil"])
def test_a_validity_info_missing_a_required_time_is_refused_by_name(key, expected_update):
    """§9.1.2.4 ValidityInfo: signed, validFrom and validUntil are required, expectedUpdate
    optional; a map without one of the three is refused by name, with or without it."""
    import datetime as dt

    t = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    value = {"signed": t, "validFrom": t, "validUntil": t + dt.timedelta(days=1)}
    if expected_update:
        value["expectedUpdate"] = t
    del value[key]
    with pytest.raises(mdoc.MdocDecodeError, match=f"MSO.validityInfo: missing '{key}'"):
        mdoc.ValidityInfo.from_map(value)


def test_a_validity_info_with_expected_update_keeps_its_four_times():
    """expectedUpdate (optional) read beside the three required times, each as written."""
    import datetime as dt

    t = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    times = {"signed": t, "validFrom": t + dt.timedelta(hours=1), "validUntil": t + dt.timedelta(days=9),
             "expectedUpdate": t + dt.timedelta(days=3)}
    assert mdoc.ValidityInfo.from_map(times) == mdoc.ValidityInfo(*times.values())
    mso = mdoc.MobileSecurityObject.from_map(_mso_map(validityInfo=times))
    assert mdoc.MobileSecurityObject.decode(mso.to_bytes()).validity_info == mdoc.ValidityInfo(*times.values())


def test_mso_parts_are_frozen_and_hashable_even_with_their_open_maps():
    """The decoded MSO and its parts are frozen values: none can be changed after the
    signature over them verified, and each hashes, leaving out its open maps (valueDigests,
    keyAuthorizations, keyInfo) from the hash."""
    import dataclasses

    m = _mso_map(status={"identifier_list": {"id": b"\x01", "uri": "https://issuer.test/ids/1"}})
    m["deviceKeyInfo"].update(keyAuthorizations={"nameSpaces": ["ns"]}, keyInfo={1: 2})
    mso = mdoc.MobileSecurityObject.from_map(m)
    again = mdoc.MobileSecurityObject.from_map(m)
    for part in (mso, mso.device_key_info, mso.status, mso.status.identifier_list):
        with pytest.raises(dataclasses.FrozenInstanceError):
            part.x = 1  # type: ignore[attr-defined]
    assert hash(mso) == hash(again) and hash(mso.device_key_info) == hash(again.device_key_info)
    assert hash(mso.status.identifier_list) == hash(again.status.identifier_list)


def test_a_frozen_mso_has_read_only_value_digests_and_none_with_open_device_key_maps():
    """:meth:`MobileSecurityObject.frozen`: the same MSO, its valueDigests read-only at both
    levels, the original untouched; None when keyAuthorizations or keyInfo is present."""
    mso = mdoc.MobileSecurityObject.from_map(_mso_map())
    frozen = mso.frozen()
    assert frozen == mso and frozen.value_digests == {"ns": {0: bytes(32)}}
    with pytest.raises(TypeError):
        frozen.value_digests["ns"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        frozen.value_digests["ns"][1] = bytes(32)  # type: ignore[index]
    mso.value_digests["ns"][1] = bytes(32)  # the original stays an ordinary dict, not shared
    assert frozen.value_digests == {"ns": {0: bytes(32)}}
    for extra in ({"keyAuthorizations": {"nameSpaces": ["ns"]}}, {"keyInfo": {1: 2}}):
        m = _mso_map()
        m["deviceKeyInfo"].update(extra)
        assert mdoc.MobileSecurityObject.from_map(m).frozen() is None


@pytest.mark.parametrize(("digests", "error"), [
    ({1: {0: bytes(32)}}, r"MSO.valueDigests: namespace keys must be text"),
    ({"ns": {-1: bytes(32)}}, r"MSO.valueDigests\['ns'\]: digestID -1 not a uint"),
    ({"ns": {True: bytes(32)}}, r"MSO.valueDigests\['ns'\]: digestID True not a uint"),
    ({"ns": {"0": bytes(32)}}, r"MSO.valueDigests\['ns'\]: digestID '0' not a uint"),
    ({"ns": {0: bytes(32), 1: "digest"}}, r"MSO.valueDigests\['ns'\]\[1\]: digest not a bstr"),
    ({"ns": [bytes(32)]}, r"MSO.valueDigests\['ns'\]: expected a map"),
])
def test_mso_value_digests_outside_the_cddl_are_refused_by_name(digests, error):
    """§9.1.2.4: ValueDigests = {+ NameSpace => DigestIDs}, NameSpace a tstr and DigestIDs
    = {+ DigestID => Digest} with DigestID a uint and Digest a bstr; anything else is
    refused where it stands, never matched against an item's digest."""
    with pytest.raises(mdoc.MdocDecodeError, match=error):
        mdoc.MobileSecurityObject.from_map(_mso_map(valueDigests=digests))


@pytest.mark.parametrize("expected_update", [False, True])
@pytest.mark.parametrize("key", ["signed", "validFrom", "validUntil"])
def test_a_validity_time_that_is_no_tdate_is_refused_by_name(key, expected_update):
    """§9.1.2.4: each validityInfo time is a tdate (tag 0); the same instant as bare text
    (or as an epoch number) is no tdate and is refused by name, not read as a time."""
    import datetime as dt

    t = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    value = {"signed": t, "validFrom": t, "validUntil": t + dt.timedelta(days=1)}
    if expected_update:
        value["expectedUpdate"] = t
    for bare in ("2026-06-01T00:00:00Z", int(t.timestamp())):
        with pytest.raises(mdoc.MdocDecodeError, match=f"MSO.validityInfo.{key}: expected datetime"):
            mdoc.ValidityInfo.from_map({**value, key: bare})
        # the times before it bare too: the first named
        order = ["signed", "validFrom", "validUntil"]
        bare_up_to = {**value, **dict.fromkeys(order[:order.index(key) + 1], bare)}
        with pytest.raises(mdoc.MdocDecodeError, match="MSO.validityInfo.signed: expected datetime"):
            mdoc.ValidityInfo.from_map(bare_up_to)


@pytest.mark.parametrize("extra", [{"keyInfo": {1: 2}}, {"keyAuthorizations": {"nameSpaces": ["ns"]}}])
def test_device_key_info_takes_key_info_or_key_authorizations_alone(extra):
    """§9.1.2.4 DeviceKeyInfo: keyAuthorizations and keyInfo are each optional; either one
    stands without the other and is kept as written."""
    m = _mso_map()
    m["deviceKeyInfo"].update(extra)
    info = mdoc.MobileSecurityObject.from_map(m).device_key_info
    assert info.key_info == extra.get("keyInfo") and info.key_authorizations == extra.get("keyAuthorizations")


# -- SessionTranscript (18013-5 §9.1.5.1) and DeviceAuthenticationBytes (§9.1.3.4) ------------

@pytest.mark.parametrize("parts", [[None, None], [None, None, None, None], []])
def test_a_session_transcript_of_other_than_three_elements_is_refused_by_name(parts):
    """SessionTranscript = [DeviceEngagementBytes, EReaderKeyBytes, Handover]: an array
    of any other length is refused by name, as the array and inside its tag 24."""
    raw = cbor.dumps(parts)
    for data in (raw, cbor.tag24_bytes(raw)):
        with pytest.raises(mdoc.MdocDecodeError, match=f"SessionTranscript: expected 3 elements, got {len(parts)}"):
            mdoc.SessionTranscript.decode(data)


def test_a_session_transcript_keeps_each_of_its_byte_strings_whichever_is_null():
    """Each of DeviceEngagementBytes and EReaderKeyBytes is read from its own place, the
    other one null or not: neither is taken for the other or dropped."""
    de, erk = b"\xa1\x00\x63\x31\x2e\x30", b"\xa1\x01\x02"
    for engagement, key in ((de, None), (None, erk), (de, erk), (None, None)):
        st = mdoc.SessionTranscript.decode(mdoc.SessionTranscript.build(engagement, key, [1]).raw)
        assert (st.device_engagement_bytes, st.e_reader_key_bytes, st.handover) == (engagement, key, [1])


def test_a_session_transcript_is_a_frozen_hashable_value_whatever_its_handover():
    """The transcript enters every session key and signature: frozen once made, and equal
    transcripts hash alike even with a Handover that is a CBOR array (a list)."""
    import dataclasses

    a = mdoc.SessionTranscript.build(b"\xa0", b"\xa0", [b"select", b"request"])
    b = mdoc.SessionTranscript.decode(a.tagged)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.raw = b""  # type: ignore[misc]


def test_device_authentication_bytes_are_the_same_from_a_bytearray():
    """DeviceAuthenticationBytes (§9.1.3.4) depend on the DeviceNameSpacesBytes' content,
    not on the Python type that holds them: a bytearray gives the same bytes."""
    from protocols.mdoc.transcript import device_authentication_bytes

    st = mdoc.SessionTranscript.build(b"\xa0", b"\xa0", None)
    want = device_authentication_bytes(st, "org.iso.18013.5.1.mDL", b"\xa0")
    assert cbor.loads(cbor.loads(want).value) == ["DeviceAuthentication", cbor.loads(st.raw),
                                                  "org.iso.18013.5.1.mDL", cbor.CBORTag(24, b"\xa0")]
    assert device_authentication_bytes(st, "org.iso.18013.5.1.mDL", bytearray(b"\xa0")) == want


def test_authentication_bytes_are_the_same_from_a_memoryview_and_refuse_what_is_no_bytes():
    """A memoryview holds the same content as bytes, but cbor2 encodes it as an array of
    integers: DeviceAuthenticationBytes, ReaderAuthenticationBytes (§9.1.4.4) and
    ReaderAuthenticationAllBytes take its content as a bstr all the same, on the hot path
    (doc_type text) and off it; text or an integer where the encoded bytes belong is
    refused by name, not encoded as something else (bytes(2) would be two zero bytes)."""
    from protocols.mdoc.errors import MdocEncodeError
    from protocols.mdoc.transcript import (
        device_authentication_bytes,
        reader_authentication_all_bytes,
        reader_authentication_bytes,
    )

    st = mdoc.SessionTranscript.build(b"\xa0", b"\xa0", None)
    for doc_type in ("org.iso.18013.5.1.mDL", cbor.CBORTag(0, "x")):  # off the hot path: not text
        want = device_authentication_bytes(st, doc_type, b"\xa0")
        assert device_authentication_bytes(st, doc_type, memoryview(b"\xa0")) == want
    want = reader_authentication_bytes(st, b"\xa1\x00\x00")
    assert reader_authentication_bytes(st, memoryview(b"\xa1\x00\x00")) == want
    assert cbor.loads(cbor.loads(want).value)[2] == cbor.CBORTag(24, b"\xa1\x00\x00")
    want = reader_authentication_all_bytes(st, [b"\xa0"], b"\xa0")
    assert reader_authentication_all_bytes(st, [memoryview(b"\xa0")], bytearray(b"\xa0")) == want
    for bad, call in (("a0", lambda v: device_authentication_bytes(st, "x", v)),
                      (2, lambda v: reader_authentication_bytes(st, v)),
                      ("a0", lambda v: reader_authentication_all_bytes(st, [v])),
                      (2, lambda v: reader_authentication_all_bytes(st, [b"\xa0"], v))):
        with pytest.raises(MdocEncodeError, match="must be bytes, not"):
            call(bad)


# -- IssuerSignedItem and IssuerSigned (18013-5 §8.3.2.1.2.2, §9.1.2.4, §9.1.2.5) ------------

def _issued(status=None):
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric import ec

    from protocols import cose

    key = ec.generate_private_key(ec.SECP256R1())
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return mdoc.build_issuer_signed({"ns": {"a": 1, "b": "x"}}, "d", key.public_key(), cose.key_signer(key), [b"ds"],
                                    t, t + dt.timedelta(days=1), status=status)


@pytest.mark.parametrize("digest_id", [-1, -(2**64)])
def test_an_issuer_signed_item_with_a_negative_digest_id_is_refused_by_name(digest_id):
    """§8.3.2.1.2.2: DigestID = uint; a negative one (CBOR major type 1) could never match
    an MSO digestID and is refused where it is read."""
    raw = cbor.dumps({"digestID": digest_id, "random": bytes(16), "elementIdentifier": "x", "elementValue": 1})
    with pytest.raises(mdoc.MdocDecodeError, match="IssuerSignedItem.digestID: must be unsigned"):
        mdoc.IssuerSignedItem.decode(raw)


@pytest.mark.parametrize("missing", ["digestID", "random", "elementIdentifier", "elementValue"])
def test_an_issuer_signed_item_missing_a_key_names_it(missing):
    """The IssuerSignedItem map has exactly its four keys: one left out is named."""
    item = {"digestID": 1, "random": bytes(16), "elementIdentifier": "x", "elementValue": 1}
    del item[missing]
    with pytest.raises(mdoc.MdocDecodeError, match=f"IssuerSignedItem: missing '{missing}'"):
        mdoc.IssuerSignedItem.decode(cbor.dumps(item))


def test_an_item_digest_is_over_the_tagged_item_bytes_with_the_msos_algorithm_only():
    """§9.1.2.5: the value digest is over IssuerSignedItemBytes, #6.24(bstr .cbor item),
    tag included, with SHA-256/384/512; another algorithm is refused by name."""
    import hashlib

    item = mdoc.IssuerSignedItem.create(3, bytes(16), "x", 1)
    assert item.tagged == cbor.dumps(cbor.CBORTag(24, item.raw))
    for alg, fn in (("SHA-256", hashlib.sha256), ("SHA-384", hashlib.sha384), ("SHA-512", hashlib.sha512)):
        assert item.digest(alg) == mdoc.item_digest(item.raw, alg) == fn(item.tagged).digest()
    for alg in ("SHA-1", "sha-256", "MD5"):
        with pytest.raises(mdoc.MdocEncodeError, match="unsupported digest algorithm"):
            mdoc.item_digest(item.raw, alg)


@pytest.mark.parametrize("fields", [
    ("1", bytes(16), "x", 1), (1.5, bytes(16), "x", 1), (0xFFFF, bytes(16), "x", 1), (0x10000, bytes(16), "x", 1), (0xFFFFFFFF, bytes(16), "x", 1),
    (2**32, bytes(16), "x", 1), (2**64 - 1, bytes(17), "x", 1), (2**64, bytes(16), "x", 1), (1, bytearray(16), "x", 1), (1, bytes(16), 7, 1),
    (1, bytes(16), "x", 2**64), (1, bytes(16), "x", -(2**64) - 1), (1, bytes(16), "x", "é" * 200),
    (1, bytes(16), "x", bytes(300)), (1, bytes(16), "x" * 70, "v"),
])
def test_an_item_created_from_other_shapes_has_the_general_encoding(fields):
    """An IssuerSignedItem made from values outside issuing's usual shape (a digestID at each
    CBOR head bound or past uint64, a salt of 17 bytes or in a bytearray, a non-text identifier, big integers, long text and byte
    strings) is the general encoder's map, byte for byte, as every verifier digests it."""
    from protocols.mdoc import _parse as p

    digest_id, random, ident, value = fields
    item = mdoc.IssuerSignedItem.create(digest_id, random, ident, value)
    assert item.raw == p.encode({"digestID": digest_id, "random": random, "elementIdentifier": ident,
                                 "elementValue": value})


@pytest.mark.parametrize("random", [bytes(16), bytearray(16)])
def test_an_item_whose_value_cbor_cannot_carry_is_an_encode_error_naming_it(random):
    """An elementValue with no CBOR encoding is an MdocEncodeError naming the element, on
    either path of IssuerSignedItem.create, never a TypeError from inside the encoder."""
    with pytest.raises(mdoc.MdocEncodeError, match="IssuerSignedItem 'x'"):
        mdoc.IssuerSignedItem.create(1, random, "x", object())


def test_issuer_signed_without_a_payload_is_refused_when_its_mso_is_read():
    """issuerAuth's payload is the MobileSecurityObjectBytes (§9.1.2.4): a detached (nil)
    payload leaves no MSO and is refused by name."""
    import dataclasses

    issued = _issued()
    detached = dataclasses.replace(issued, issuer_auth=dataclasses.replace(issued.issuer_auth, payload=None))
    with pytest.raises(mdoc.MdocDecodeError, match="issuerAuth: payload is nil"):
        detached.mso()


@pytest.mark.parametrize(("edit", "error"), [
    (lambda m: m.__setitem__("nameSpaces", {}), r"IssuerSigned.nameSpaces: present but empty"),
    (lambda m: m["nameSpaces"].__setitem__("ns", []), r"IssuerSigned.nameSpaces\['ns'\]: empty array"),
    (lambda m: m["nameSpaces"].__setitem__(1, m["nameSpaces"].pop("ns")), r"IssuerSigned.nameSpaces: namespace keys must be text"),
    (lambda m: m["nameSpaces"]["ns"].append(b"\xa0"), r"IssuerSigned.nameSpaces\['ns'\]\[2\]: expected #6.24\(bstr\)"),
    (lambda m: m["nameSpaces"]["ns"].append(cbor.CBORTag(24, "text")), r"IssuerSigned.nameSpaces\['ns'\]\[2\]: tag 24 must wrap"),
    (lambda m: m["nameSpaces"].__setitem__("ns", cbor.CBORTag(24, b"\xa0")), r"IssuerSigned.nameSpaces\['ns'\]: expected an array"),
    (lambda m: m["nameSpaces"].__setitem__("ns", [cbor.CBORTag(99, b"\xa0")]), r"\['ns'\]\[0\]: expected #6.24\(bstr\), got tag 99"),
    (lambda m: m["nameSpaces"].__setitem__("ns", [cbor.CBORTag(24, "text")]), r"\['ns'\]\[0\]: tag 24 must wrap a byte string"),
    (lambda m: m.pop("issuerAuth"), r"IssuerSigned: missing 'issuerAuth'"),
    (lambda m: m.__setitem__("issuerAuth", [1, 2]), r"IssuerSigned.issuerAuth: "),
])
def test_issuer_signed_outside_its_cddl_is_refused_by_name(edit, error):
    """§8.3.2.1.2.2: IssuerSigned = {? "nameSpaces": IssuerNameSpaces, "issuerAuth":
    COSE_Sign1}, IssuerNameSpaces = {+ NameSpace => [+ IssuerSignedItemBytes]}: an empty
    map or array, a non-text namespace, an item that is no #6.24(bstr), or a missing or
    broken issuerAuth is refused by name, as a map and as bytes."""
    m = _issued().to_cbor()
    edit(m)
    for value in (m, cbor.dumps(m)):
        with pytest.raises(mdoc.MdocDecodeError, match=error):
            mdoc.IssuerSigned.from_cbor(value)


def test_issuer_signed_and_its_items_are_hashable_values_whatever_they_carry():
    """IssuerSigned and IssuerSignedItem are frozen values that hash, leaving out their open
    parts (the nameSpaces map, an elementValue that is an array or a map): equal ones hash
    alike."""
    issued = _issued()
    again = mdoc.IssuerSigned.from_cbor(issued.encode())
    assert issued == again and hash(issued) == hash(again)
    item = mdoc.IssuerSignedItem.create(1, bytes(16), "x", [1, {"a": 2}])
    assert hash(item) == hash(mdoc.IssuerSignedItem.decode(item.raw))


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xa0", cbor.dumps({"documents": [], "issuerAuth": 1}),
                                  cbor.dumps([1])])
def test_what_is_shaped_as_no_issuer_signed_is_told_apart_with_false(data):
    """is_issuer_signed answers a bool: False for bytes that are no CBOR, or no map with
    issuerAuth and without documents; True for an IssuerSigned."""
    assert mdoc.is_issuer_signed(data) is False
    assert mdoc.is_issuer_signed(_issued().encode()) is True


def test_parsing_an_issuer_signed_names_the_item_that_does_not_decode():
    """IssuerSigned.items() parses every item it holds: one that is no IssuerSignedItem is
    an error naming its namespace and place, never skipped."""
    issued = _issued()
    raws = issued.name_spaces["ns"]
    bad = mdoc.IssuerSigned({"ns": (raws[0], cbor.dumps({"digestID": 1}))}, issued.issuer_auth)
    with pytest.raises(mdoc.MdocDecodeError, match=r"nameSpaces\['ns'\]\[1\]: IssuerSignedItem: missing"):
        bad.items()
    assert [i.element_identifier for i in issued.items()["ns"]] == ["a", "b"]


@pytest.mark.parametrize(("edit", "error"), [
    ({"version": 1}, r"MSO.version: expected str, got int"),
    ({"digestAlgorithm": ["SHA-256"]}, r"MSO.digestAlgorithm: expected str, got list"),
    ({"docType": 5}, r"MSO.docType: expected str, got int"),
    ({"deviceKeyInfo": {}}, r"MSO.deviceKeyInfo: missing 'deviceKey'"),
    ({"deviceKeyInfo": {"deviceKey": [1, 2]}}, r"MSO.deviceKeyInfo.deviceKey: expected Mapping, got list"),
])
def test_mso_fields_of_the_wrong_type_are_refused_by_name(edit, error):
    """§9.1.2.4: version, digestAlgorithm and docType are tstr, deviceKeyInfo holds a
    deviceKey COSE_Key map; a value of another type is refused by name, never taken on
    (a non-text docType) or left to fail elsewhere (an unhashable algorithm)."""
    with pytest.raises(mdoc.MdocDecodeError, match=error):
        mdoc.MobileSecurityObject.from_map(_mso_map(**edit))


@pytest.mark.parametrize(("key", "value", "error"), [
    ("digestID", True, r"IssuerSignedItem.digestID: expected int, got bool"),
    ("random", "salt", r"IssuerSignedItem.random: expected bytes, got str"),
    ("elementIdentifier", 5, r"IssuerSignedItem.elementIdentifier: expected str, got int"),
])
def test_issuer_signed_item_fields_of_the_wrong_type_are_refused_by_name(key, value, error):
    """§8.3.2.1.2.2: digestID uint, random bstr, elementIdentifier tstr; each of another
    type is refused by name when the item is read, the other two being right."""
    item = {"digestID": 1, "random": bytes(16), "elementIdentifier": "x", "elementValue": 1}
    item[key] = value
    with pytest.raises(mdoc.MdocDecodeError, match=error):
        mdoc.IssuerSignedItem.decode(cbor.dumps(item))
