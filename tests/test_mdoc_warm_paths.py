"""The warm paths of verification (specs/mdoc-encoding.md, "Caches"): a verifier that has
already verified an mdoc gives, on any input, the same verdicts and reasons as a fresh one
and as the one-shot ``verify_device_response`` (no cache at all). Each tamper is tried
on a verifier warmed with the genuine presentation of the same mdoc."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mdoc_issuing import NOW, NS, device_key, issue, pki, present, transcript  # noqa: F401

from protocols import cbor, cose, mdoc

SETTINGS = settings(max_examples=80, deadline=None)
_POSITION = st.integers(0, 1 << 24)
ELEMENTS = {NS: {"family_name": "Yamada", "given_name": "Taro", "birth_date": dt.date(1990, 4, 1),
                 "portrait": b"\xff\xd8" + bytes(3000), "age_over_18": True, "height": 170,
                 "driving_privileges": [{"vehicle_category_code": "B"}]}}


def outcome(verifier: mdoc.MdocVerifier, data: bytes, stx, now=NOW):
    try:
        return verifier.verify(data, session_transcript=stx, now=now).to_json()
    except mdoc.MdocError as exc:
        return (type(exc).__name__, str(exc))


def assert_same(pki, warm: mdoc.MdocVerifier, data: bytes, stx, now=NOW):  # noqa: F811
    """The warm verifier, a fresh caching one and the one-shot verification agree."""
    cold = outcome(mdoc.MdocVerifier([pki[0]], cache_chains=False), data, stx, now)
    assert outcome(mdoc.MdocVerifier([pki[0]]), data, stx, now) == cold
    assert outcome(warm, data, stx, now) == cold
    return cold


@pytest.fixture(scope="module")
def world(pki, device_key):  # noqa: F811
    issued = issue(pki, device_key, elements=ELEMENTS)
    stx = transcript()
    data = present(issued, device_key, stx)
    warm = mdoc.MdocVerifier([pki[0]])
    assert warm.verify(data, session_transcript=stx, now=NOW).valid
    return issued, stx, data, warm


def _with_items(data: bytes, raws) -> bytes:
    dr = mdoc.DeviceResponse.decode(data)
    doc = dr.documents[0]
    signed = mdoc.IssuerSigned({NS: tuple(raws)}, doc.issuer_signed.issuer_auth)
    return mdoc.DeviceResponse((mdoc.Document(doc.doc_type, signed, doc.device_signed),)).encode()


def test_warm_verification_is_the_cold_one(pki, world):  # noqa: F811
    issued, stx, data, warm = world
    first = assert_same(pki, warm, data, stx)
    assert first["valid"] is True
    again = warm.verify(data, session_transcript=stx, now=NOW)
    assert again.to_json() == first
    (entry,) = warm._msos.values()
    kept = entry._items[NS]
    # small items with immutable values are kept; the portrait (too large) and the list are not
    idents = {item[1] for item in kept.values()}
    assert idents == {"family_name", "given_name", "birth_date", "age_over_18", "height"}
    # a caller mutating what it got does not reach the next verification
    again.documents[0].elements[NS]["family_name"] = "changed"
    again.documents[0].elements[NS]["driving_privileges"].append("x")
    assert warm.verify(data, session_transcript=stx, now=NOW).to_json() == first


@SETTINGS
@given(st.data())
def test_flipped_item_bit_on_a_warm_verifier(pki, world, data):  # noqa: F811
    issued, stx, genuine, warm = world
    raws = list(mdoc.DeviceResponse.decode(genuine).documents[0].issuer_signed.name_spaces[NS])
    n = data.draw(_POSITION) % len(raws)
    bit = data.draw(_POSITION) % (len(raws[n]) * 8)
    flipped = bytearray(raws[n])
    flipped[bit // 8] ^= 1 << (bit % 8)
    raws[n] = bytes(flipped)
    result = assert_same(pki, warm, _with_items(genuine, raws), stx)
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["value_digests"]


@SETTINGS
@given(st.data())
def test_flipped_response_bit_on_a_warm_verifier(pki, world, data):  # noqa: F811
    """Any bit of the whole DeviceResponse: same decode error or same verdicts and reasons."""
    issued, stx, genuine, warm = world
    bit = data.draw(_POSITION) % (len(genuine) * 8)
    flipped = bytearray(genuine)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert_same(pki, warm, bytes(flipped), stx)


def test_item_arrangements_on_a_warm_verifier(pki, device_key, world):  # noqa: F811
    issued, stx, genuine, warm = world
    raws = list(mdoc.DeviceResponse.decode(genuine).documents[0].issuer_signed.name_spaces[NS])
    other = issue(pki, device_key, elements=ELEMENTS).name_spaces[NS]  # another MSO's items
    cases = {
        "reversed": raws[::-1],
        "subset": raws[1:3],
        "one": raws[:1],
        "repeated": raws + raws[:1],
        "repeated small": [raws[0], raws[0]],
        "foreign item": raws[:-1] + [other[0]],
        "all foreign": list(other),
        "large only": [r for r in raws if len(r) > 1024],
    }
    for name, arrangement in cases.items():
        result = assert_same(pki, warm, _with_items(genuine, arrangement), stx)
        assert result["valid"] is (name in {"reversed", "subset", "one", "large only"}), name


def test_subset_first_then_more_items(pki, device_key):  # noqa: F811
    """Items decoded for one presentation, others decoded for the next, then all of them."""
    issued = issue(pki, device_key, elements=ELEMENTS)
    stx = transcript()
    warm = mdoc.MdocVerifier([pki[0]])
    for disclose in (["family_name"], ["given_name", "family_name", "portrait"], None, ["height"]):
        wanted = None if disclose is None else {NS: disclose}
        data = present(issued, device_key, stx, disclose=wanted)
        result = assert_same(pki, warm, data, stx)
        assert result["valid"] is True
        assert set(result["documents"][0]["elements"][NS]) == set(disclose or ELEMENTS[NS])


def test_mso_device_signature_and_transcript_tampers_on_a_warm_verifier(pki, device_key, world):  # noqa: F811
    issued, stx, genuine, warm = world
    doc = mdoc.DeviceResponse.decode(genuine).documents[0]
    auth = doc.issuer_signed.issuer_auth

    def with_doc(d):
        return mdoc.DeviceResponse((d,)).encode()

    payload = bytearray(auth.payload)
    payload[len(payload) // 2] ^= 4
    bad_mso = cose.Sign1(auth.protected_bytes, auth.protected, auth.unprotected, bytes(payload), auth.signature)
    sig = doc.device_signed.device_auth.device_signature
    bad_sig = cose.Sign1(sig.protected_bytes, sig.protected, sig.unprotected, None, sig.signature[:-1] + b"\x00")
    cases = [
        with_doc(mdoc.Document(doc.doc_type, mdoc.IssuerSigned(doc.issuer_signed.name_spaces, bad_mso),
                               doc.device_signed)),
        with_doc(mdoc.Document(doc.doc_type, doc.issuer_signed,
                               mdoc.DeviceSigned(doc.device_signed.name_spaces_bytes,
                                                 mdoc.DeviceAuth(device_signature=bad_sig)))),
        with_doc(mdoc.Document("org.example.other", doc.issuer_signed, doc.device_signed)),
        present(issued, device_key, transcript()),  # signed over another session
    ]
    for data in cases:
        assert assert_same(pki, warm, data, stx)["valid"] is False
    assert assert_same(pki, warm, genuine, transcript())["valid"] is False  # checked against another session
    late = assert_same(pki, warm, genuine, stx, now=NOW + dt.timedelta(days=400))
    assert [c["name"] for c in late["checks"] if not c["passed"]] == ["issuer_certificate_chain", "validity"]


def test_device_mac_on_a_warm_verifier(pki, device_key):  # noqa: F811
    from cryptography.hazmat.primitives.asymmetric import ec

    issued = issue(pki, device_key, elements=ELEMENTS)
    stx = transcript()
    reader_key = ec.generate_private_key(ec.SECP256R1())
    emac = mdoc.derive_emac_key(mdoc.ecdh(device_key, cose.CoseKey.from_public_key(reader_key.public_key())), stx)
    data = mdoc.DeviceResponse((mdoc.build_document(issued, stx, emac_key=emac),)).encode()
    warm = mdoc.MdocVerifier([pki[0]])
    for _ in range(2):
        cold = mdoc.verify_device_response(data, trust_anchors=[pki[0]], session_transcript=stx, now=NOW,
                                           reader_private_key=reader_key)
        got = warm.verify(data, session_transcript=stx, now=NOW, reader_private_key=reader_key)
        assert got.to_json() == cold.to_json() and got.valid
    other = ec.generate_private_key(ec.SECP256R1())
    assert (warm.verify(data, session_transcript=stx, now=NOW, reader_private_key=other).to_json()
            == mdoc.verify_device_response(data, trust_anchors=[pki[0]], session_transcript=stx, now=NOW,
                                           reader_private_key=other).to_json())


def _entry_after_two_verifications(pki, device_key, elements):  # noqa: F811
    """The warm verifier's one MSO entry after it verified a response with ``elements``
    twice, each time agreeing with a fresh verifier."""
    issued = issue(pki, device_key, elements=elements)
    stx = transcript()
    warm = mdoc.MdocVerifier([pki[0]])
    data = present(issued, device_key, stx)
    for _ in range(2):
        assert assert_same(pki, warm, data, stx)["valid"] is True
    (entry,) = warm._msos.values()
    return entry


def test_items_kept_per_mso_are_bounded(pki, device_key):  # noqa: F811
    from protocols.mdoc import verify as v

    entry = _entry_after_two_verifications(pki, device_key, {NS: {f"element_{i:03d}": "x" * 200
                                                                  for i in range(120)}})
    assert 0 < entry._item_bytes <= v._ITEMS_MAX
    assert sum(len(raw) for raw in entry._items[NS]) == entry._item_bytes


def test_cbor_tagged_values_are_not_kept(pki, device_key):  # noqa: F811
    entry = _entry_after_two_verifications(pki, device_key, {NS: {"family_name": "Yamada",
                                                                  "tagged": cbor.CBORTag(1234, "x")}})
    assert {item[1] for item in entry._items[NS].values()} == {"family_name"}
