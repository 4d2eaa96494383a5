"""Every mdoc decoder: arbitrary bytes give MdocError or a value; structures round-trip."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mdoc_vectors import hexv

from protocols import cose, mdoc

SETTINGS = settings(max_examples=200, deadline=None)

DECODERS = [
    mdoc.DeviceResponse.decode,
    mdoc.DeviceRequest.decode,
    mdoc.IssuerSigned.decode,
    mdoc.IssuerSignedItem.decode,
    mdoc.MobileSecurityObject.decode,
    mdoc.DeviceEngagement.decode,
    mdoc.SessionTranscript.decode,
    mdoc.SessionEstablishment.decode,
    mdoc.SessionData.decode,
    mdoc.ItemsRequest.decode,
]
SAMPLES = [hexv(n) for n in ("device_response", "device_request", "device_engagement_qr", "session_establishment",
                             "session_transcript_bytes", "items_request", "mobile_security_object_bytes")]


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.__qualname__)
@SETTINGS
@given(data=st.binary(max_size=96))
def test_arbitrary_bytes(decoder, data):
    try:
        decoder(data)
    except mdoc.MdocError:
        pass


@SETTINGS
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_real_messages(sample, data):
    """Flip a byte of a real message, feed it to every decoder and to the verifier."""
    pos = data.draw(st.integers(0, len(sample) - 1))
    mutated = sample[:pos] + bytes([sample[pos] ^ data.draw(st.integers(1, 255))]) + sample[pos + 1:]
    for decoder in DECODERS:
        try:
            decoder(mutated)
        except mdoc.MdocError:
            pass
    try:
        mdoc.verify_device_response(mutated, trust_anchors=[], session_transcript=None,
                                    now=dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
    except mdoc.MdocError:
        pass


def test_round_trips_on_annex_d():
    for decoder, name in [(mdoc.DeviceResponse.decode, "device_response"), (mdoc.DeviceRequest.decode, "device_request")]:
        assert decoder(hexv(name)).encode() == hexv(name)
    assert mdoc.DeviceEngagement.decode(hexv("device_engagement_qr")).encode() == hexv("device_engagement_qr")
    assert mdoc.SessionEstablishment.decode(hexv("session_establishment")).encode() == hexv("session_establishment")
    assert mdoc.SessionData.decode(hexv("session_data")).encode() == hexv("session_data")


_text = st.text(min_size=1, max_size=12)
_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | _text | st.binary(max_size=16)
    | st.dates(min_value=dt.date(1900, 1, 1)),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3), max_leaves=8,
)


@SETTINGS
@given(st.integers(0, 2**31), st.binary(min_size=16, max_size=32), _text, _value)
def test_issuer_signed_item_round_trip(digest_id, salt, ident, value):
    item = mdoc.IssuerSignedItem.create(digest_id, salt, ident, value)
    back = mdoc.IssuerSignedItem.decode(item.raw)
    assert back == item and back.raw == item.raw


@SETTINGS
@given(st.dictionaries(_text, st.dictionaries(_text, st.booleans(), min_size=1, max_size=4), min_size=1, max_size=3), _text)
def test_device_request_round_trip(name_spaces, doc_type):
    req = mdoc.DeviceRequest((mdoc.DocRequest(mdoc.ItemsRequest.build(doc_type, name_spaces)),))
    back = mdoc.DeviceRequest.decode(req.encode())
    assert back == req and back.encode() == req.encode()


@SETTINGS
@given(st.binary(max_size=64) | st.none(), st.integers(0, 2**16) | st.none())
def test_session_data_round_trip(data, status):
    if data is None and status is None:
        with pytest.raises(mdoc.MdocDecodeError):
            mdoc.SessionData(data, status)
        return
    sd = mdoc.SessionData(data, status)
    assert mdoc.SessionData.decode(sd.encode()) == sd


@SETTINGS
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_session_encryption_round_trip(a, b):
    reader = mdoc.SessionEncryption("reader", bytes(range(32)), bytes(range(1, 33)))
    device = mdoc.SessionEncryption("mdoc", bytes(range(32)), bytes(range(1, 33)))
    assert device.decrypt(reader.encrypt(a)) == a
    assert reader.decrypt(device.encrypt(b)) == b
    assert device.decrypt(reader.encrypt(b)) == b


def test_engagement_and_transcript_round_trip():
    from cryptography.hazmat.primitives.asymmetric import ec

    key = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    de = mdoc.DeviceEngagement.build(key, retrieval_methods=[[2, 1, {0: False, 1: True}]])
    assert mdoc.DeviceEngagement.decode(de.encode()) == de
    stx = mdoc.SessionTranscript.build(de.encode(), key, None)
    assert mdoc.SessionTranscript.decode(stx.tagged) == stx == mdoc.SessionTranscript.decode(stx.raw)
