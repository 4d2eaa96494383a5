"""MdocVerifier's caches hold parsed bytes, never verdicts: a hit still needs the issuer
signature over the same bytes, and every time- or transcript-dependent check still runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest
from test_mdoc_issuing import NOW, device_key, issue, pki, present, transcript  # noqa: F401

from protocols import cbor, cose, mdoc


def test_a_cached_mso_needs_the_signature_again_and_the_time_and_transcript_checks(pki, device_key):  # noqa: F811
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    data = present(issue(pki, device_key), device_key, st)
    assert verifier.verify(data, session_transcript=st, now=NOW).valid
    assert len(verifier._msos) == 1
    # same MSO bytes, broken issuer signature: refused before the cache is consulted
    doc = mdoc.DeviceResponse.decode(data).documents[0]
    auth = doc.issuer_signed.issuer_auth
    forged = cose.Sign1(auth.protected_bytes, auth.protected, auth.unprotected, auth.payload, bytes(64))
    bad = dataclasses.replace(doc, issuer_signed=mdoc.IssuerSigned(doc.issuer_signed.name_spaces, forged))
    result = verifier.verify(mdoc.DeviceResponse((bad,)).encode(), session_transcript=st, now=NOW)
    assert result.check("issuer_signature").passed is False
    assert result.check("mso_structure").reason.endswith("not checked: issuer signature failed")
    # cache hit, but validity at another time and device authentication over another transcript fail
    late = verifier.verify(data, session_transcript=st, now=NOW + dt.timedelta(days=301))
    assert late.failed() == ["validity"]
    other = verifier.verify(data, session_transcript=transcript(), now=NOW)
    assert other.failed() == ["device_authentication"]


def test_cached_mso_is_read_only_and_caches_are_bounded(pki, device_key):  # noqa: F811
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    data = present(issue(pki, device_key), device_key, st)
    verifier.verify(data, session_transcript=st, now=NOW)
    (entry,) = verifier._msos.values()
    mso = entry.mso
    ns = next(iter(mso.value_digests))
    with pytest.raises(TypeError):
        mso.value_digests[ns][0] = b"x"  # type: ignore[index]
    with pytest.raises(TypeError):
        mso.value_digests["other"] = {}  # type: ignore[index]
    for _ in range(3):  # fresh salts each time: a new MSO each time
        d = present(issue(pki, device_key), device_key, st)
        verifier.verify(d, session_transcript=st, now=NOW)
    assert len(verifier._msos) == 4
    assert mdoc.MdocVerifier([pki[0]], cache_chains=False)._msos is None


def test_mso_with_key_authorizations_is_not_cached(pki, device_key):  # noqa: F811
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    data = present(issue(pki, device_key, key_authorizations={"nameSpaces": ["x"]}), device_key, st)
    assert verifier.verify(data, session_transcript=st, now=NOW).valid
    assert verifier._msos == {}


def test_an_mso_seen_once_and_again_gives_the_same_result(pki, device_key):  # noqa: F811
    """An MSO is cached cold at first sight (parsed, read-only, nothing else noted) and
    keeps items and passed checks from its second sight on: the results are the same
    at every sight, and the same as without any cache."""
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    data = present(issue(pki, device_key), device_key, st)
    cold = mdoc.verify_device_response(data, trust_anchors=[pki[0]], session_transcript=st, now=NOW).to_json()
    assert cold["valid"] is True
    assert verifier.verify(data, session_transcript=st, now=NOW).to_json() == cold
    (entry,) = verifier._msos.values()
    assert entry._keep is False and entry._items == {} and entry._passed == {} and entry._heads == {}
    assert verifier.verify(data, session_transcript=st, now=NOW).to_json() == cold
    assert entry._keep is True and entry._items and entry._passed and entry._heads
    assert verifier.verify(data, session_transcript=st, now=NOW).to_json() == cold
    # a new MSO (fresh salts) beside it starts cold again, with the same verdict
    other = present(issue(pki, device_key), device_key, st)
    assert verifier.verify(other, session_transcript=st, now=NOW).valid
    assert [e._keep for e in verifier._msos.values()] == [True, False]


def test_an_off_curve_device_key_fails_device_authentication_at_every_sight(pki, device_key):  # noqa: F811
    """An MSO whose device key is not on its curve (signed by the issuer all the same) is
    refused at device authentication, first sight or cached, as without a cache."""
    issued = issue(pki, device_key)
    mso = issued.mso()
    genuine = mso.device_key_info.device_key
    off = cose.CoseKey(genuine.crv, genuine.x, bytes([genuine.y[0] ^ 1]) + genuine.y[1:])
    with pytest.raises(cose.CoseKeyError, match="not on"):
        off.public_key()
    mso = dataclasses.replace(mso, device_key_info=dataclasses.replace(mso.device_key_info, device_key=off))
    auth = issued.issuer_auth
    resigned = cose.Sign1.create(cose.key_signer(pki[1]), mso.to_bytes(), unprotected=auth.unprotected)
    st = transcript()
    data = present(mdoc.IssuerSigned(issued.name_spaces, resigned), device_key, st)
    cold = mdoc.verify_device_response(data, trust_anchors=[pki[0]], session_transcript=st, now=NOW).to_json()
    verifier = mdoc.MdocVerifier([pki[0]])
    for _ in range(3):
        result = verifier.verify(data, session_transcript=st, now=NOW)
        assert result.to_json() == cold
        assert result.failed() == ["device_authentication"]
        assert "not on" in result.check("device_authentication").reason


def test_new_msos_of_a_known_issuer_share_the_head_checks_with_the_same_reasons(pki, device_key):  # noqa: F811
    """The head checks (chain, issuer signature, MSO structure, docType) of a new MSO from a
    known issuer are the ones made before when their reasons would read the same, and the
    docType comparison still decides each time."""
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    first, second = (present(issue(pki, device_key), device_key, st) for _ in range(2))
    a = verifier.verify(first, session_transcript=st, now=NOW)
    b = verifier.verify(second, session_transcript=st, now=NOW)
    for data, result in ((first, a), (second, b)):
        assert result.to_json() == mdoc.verify_device_response(
            data, trust_anchors=[pki[0]], session_transcript=st, now=NOW).to_json()
    assert a.checks[1:5] == b.checks[1:5] and a.checks[1] is b.checks[1]
    doc = mdoc.DeviceResponse.decode(second).documents[0]
    other = mdoc.DeviceResponse((dataclasses.replace(doc, doc_type="org.example.other"),)).encode()
    result = verifier.verify(other, session_transcript=st, now=NOW)
    assert result.to_json() == mdoc.verify_device_response(
        other, trust_anchors=[pki[0]], session_transcript=st, now=NOW).to_json()
    assert result.check("doc_type").passed is False


@pytest.mark.parametrize("identifier", [[1, 2], {"a": 1}, 7, b"id"])
def test_an_item_whose_identifier_is_not_text_is_refused_not_raised(pki, device_key, identifier):  # noqa: F811
    """An IssuerSignedItem whose elementIdentifier is not a tstr (an array or map cannot even
    be a dict key), under an MSO that digests it and a valid issuer signature: a named
    ``value_digests`` failure from the verifier, cached or not, never an exception."""
    issued = issue(pki, device_key)
    mso = issued.mso()
    ns = next(iter(issued.name_spaces))
    raw = cbor.dumps({"digestID": 7, "random": bytes(16), "elementIdentifier": identifier, "elementValue": 1},
                     canonical=False)
    digest = hashlib.sha256(cbor.tag24_bytes(raw)).digest()
    mso = dataclasses.replace(mso, value_digests={ns: {7: digest}})
    resigned = cose.Sign1.create(cose.key_signer(pki[1]), mso.to_bytes(), unprotected=issued.issuer_auth.unprotected)
    st = transcript()
    data = present(mdoc.IssuerSigned({ns: (raw,)}, resigned), device_key, st)
    for verifier in (mdoc.MdocVerifier([pki[0]]), mdoc.MdocVerifier([pki[0]], cache_chains=False)):
        for _ in range(2):
            result = verifier.verify(data, session_transcript=st, now=NOW)
            assert result.failed() == ["value_digests"], result.checks
            assert "elementIdentifier" in result.check("value_digests").reason


def _item(digest_id=7, random=bytes(16), ident="family_name", value="Yamada", **extra) -> bytes:
    return cbor.dumps({"digestID": digest_id, "random": random, "elementIdentifier": ident, "elementValue": value,
                       **extra}, canonical=False)


_UNUSUAL_ITEMS = [
    # bytes that are no CBOR at all (a truncated map)
    ([(7, _item()[:-3])], "malformed CBOR"),
    # an array of the four fields, not a map: the fast path reads a map's keys
    ([(7, cbor.dumps([7, bytes(16), "family_name", "Yamada"]))], "IssuerSignedItem"),
    # a fifth key beside the four: the CDDL map is closed
    ([(7, _item(extra="x"))], "unexpected key"),
    # the item says digestID 8, the MSO lists its digest under 7
    ([(7, _item(digest_id=8))], "digestID 8 mismatched"),
    # digestID true: equal to 1 in Python, not an unsigned integer in CBOR
    ([(1, _item(digest_id=True))], "digestID"),
    ([(7, _item(random="not bytes"))], "random"),
    # two items of one identifier (both digested by the MSO): which value would count?
    ([(7, _item(value="Yamada")), (8, _item(digest_id=8, value="Suzuki"))], "family_name: digestID 8 mismatched or repeated"),
    # the very same item twice
    ([(7, _item()), (7, _item())], "family_name: digestID 7 mismatched or repeated"),
]


@pytest.mark.parametrize(("items", "why"), _UNUSUAL_ITEMS)
def test_issuer_signed_items_of_an_unusual_shape_are_refused_by_name(pki, device_key, items, why):  # noqa: F811
    """Items the MSO digests (a faulty or hostile issuer signed them) but that are no proper
    IssuerSignedItems of distinct identifiers: a named ``value_digests`` failure, cached or
    not, seen once or again, never an exception nor an element disclosed."""
    issued = issue(pki, device_key)
    mso = issued.mso()
    ns = next(iter(issued.name_spaces))
    digests = {i: hashlib.sha256(cbor.tag24_bytes(raw)).digest() for i, raw in items}
    mso = dataclasses.replace(mso, value_digests={ns: digests})
    resigned = cose.Sign1.create(cose.key_signer(pki[1]), mso.to_bytes(), unprotected=issued.issuer_auth.unprotected)
    st = transcript()
    data = present(mdoc.IssuerSigned({ns: tuple(raw for _, raw in items)}, resigned), device_key, st)
    for verifier in (mdoc.MdocVerifier([pki[0]]), mdoc.MdocVerifier([pki[0]], cache_chains=False)):
        for _ in range(2):
            result = verifier.verify(data, session_transcript=st, now=NOW)
            assert result.failed() == ["value_digests"], result.checks
            assert [c.name for c in result.checks].count("value_digests") == 1  # refused, not also passed
            assert why in result.check("value_digests").reason
            assert result.documents == ()


def test_a_cached_mso_whose_ds_chain_no_longer_verifies_reports_one_failed_chain_check(pki, device_key):  # noqa: F811
    """The head checks kept with a cached MSO (chain, signature, structure, docType) are
    handed out only for the chain object verified in this very call: once the DS chain no
    longer verifies (here: past the DS certificate's notAfter), the result has one
    issuer_certificate_chain check, failed, as a fresh verifier says."""
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    data = present(issue(pki, device_key), device_key, st)
    for _ in range(2):
        assert verifier.verify(data, session_transcript=st, now=NOW).valid
    late = NOW + dt.timedelta(days=366)
    result = verifier.verify(data, session_transcript=st, now=late)
    assert [c.name for c in result.checks].count("issuer_certificate_chain") == 1
    assert result.check("issuer_certificate_chain").passed is False
    assert result.to_json() == mdoc.verify_device_response(
        data, trust_anchors=[pki[0]], session_transcript=st, now=late).to_json()


def test_what_the_verifier_hands_out_is_frozen(pki, device_key):  # noqa: F811
    """Passed checks are made once per MSO and handed out again to later verifications, and
    extra checks see the document through a DocumentContext: none of them can be changed
    in place by a caller (a check flipped to passed in one verdict would be in the next)."""
    seen = []
    verifier = mdoc.MdocVerifier([pki[0]], extra_checks=[lambda ctx: seen.append(ctx) or []])
    st = transcript()
    data = present(issue(pki, device_key), device_key, st)
    result = verifier.verify(data, session_transcript=st, now=NOW)
    again = verifier.verify(data, session_transcript=st, now=NOW)
    assert result.valid and again.valid
    assert result.check("value_digests").reason.endswith("5 item(s) in 1 namespace(s) match (SHA-256)")
    # every built-in check of a presentation is named in a valid verdict, device authentication too
    assert [c.name for c in result.checks] == ["response_status", "issuer_certificate_chain", "issuer_signature",
                                              "mso_structure", "doc_type", "value_digests", "validity",
                                              "device_authentication"]
    # what an extra check is given: this session's transcript and the checks made before it
    assert seen[0].session_transcript == st and [c.name for c in seen[0].checks] == [c.name for c in result.checks[1:]]
    for obj, name in ((result, "checks"), (result.checks[0], "passed"), (result.documents[0], "doc_type"),
                      (seen[0], "now")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, name, None)


@pytest.mark.parametrize(("items", "why"), _UNUSUAL_ITEMS)
def test_unusual_items_beside_items_the_verifier_keeps_are_refused_by_name(pki, device_key, items, why):  # noqa: F811
    """The same items under an MSO that also digests a proper item (digestID 9), which a
    verifier has seen disclosed alone often enough to keep it decoded: disclosed beside
    that kept item, the unusual ones still give the named ``value_digests`` failure (the
    kept items' shortcut decides nothing about the others)."""
    issued = issue(pki, device_key)
    mso = issued.mso()
    ns = next(iter(issued.name_spaces))
    good = _item(digest_id=9, ident="given_name", value="Hanako")
    digests = {i: hashlib.sha256(cbor.tag24_bytes(raw)).digest() for i, raw in [*items, (9, good)]}
    mso = dataclasses.replace(mso, value_digests={ns: digests})
    resigned = cose.Sign1.create(cose.key_signer(pki[1]), mso.to_bytes(), unprotected=issued.issuer_auth.unprotected)
    st = transcript()
    verifier = mdoc.MdocVerifier([pki[0]])
    alone = present(mdoc.IssuerSigned({ns: (good,)}, resigned), device_key, st)
    for _ in range(2):
        assert verifier.verify(alone, session_transcript=st, now=NOW).valid
    data = present(mdoc.IssuerSigned({ns: (good, *(raw for _, raw in items))}, resigned), device_key, st)
    for _ in range(2):
        result = verifier.verify(data, session_transcript=st, now=NOW)
        assert result.failed() == ["value_digests"], result.checks
        assert why in result.check("value_digests").reason
        assert result.documents == ()
