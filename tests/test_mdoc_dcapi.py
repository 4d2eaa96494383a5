"""protocols.mdoc.dcapi: ISO/IEC TS 18013-7 Annex C (org-iso-mdoc over the Digital
Credentials API): the SessionTranscript against a request the multipaz online verifier
signed, HPKE sealing both ways, and the decoders under fuzzing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import cbor
from protocols.mdoc import DeviceRequest, dcapi, verify_reader_auth
from protocols.mdoc.verify import READER_AUTHENTICATION

VECTOR = json.loads((Path(__file__).parent / "vectors" / "annex-c-multipaz-request.json").read_text())
SIGNED_AT = dt.datetime.fromisoformat(VECTOR["signedAt"])


def _reader_auth(origin: str):
    transcript = dcapi.session_transcript(VECTOR["encryptionInfoB64"], origin)
    request = DeviceRequest.decode(dcapi.unb64url(VECTOR["deviceRequestB64"], "deviceRequest"))
    return verify_reader_auth(request, session_transcript=transcript, trust_anchors=[], now=SIGNED_AT)


def test_multipaz_reader_authentication_verifies_over_our_session_transcript():
    """multipaz signed ReaderAuthentication over ITS Annex C SessionTranscript; the signature
    verifies over ours, so the two are the same bytes (origin, encryptionInfo text, hash)."""
    check = _reader_auth(VECTOR["origin"]).check(READER_AUTHENTICATION)
    assert check.passed, check.reason
    assert "alg -9" in check.reason  # ESP256, RFC 9864


@pytest.mark.parametrize("origin", ["https://verifier.multipaz.org/", "http://verifier.multipaz.org",
                                    "https://evil.example"])
def test_another_origin_gives_another_transcript(origin):
    check = _reader_auth(origin).check(READER_AUTHENTICATION)
    assert not check.passed and "does not verify" in check.reason


def test_multipaz_encryption_info_decodes_and_keeps_its_text():
    info = dcapi.EncryptionInfo.from_b64(VECTOR["encryptionInfoB64"])
    assert len(info.nonce) == 16
    assert isinstance(info.recipient_key.public_key().curve, ec.SECP256R1)
    assert info.b64 == VECTOR["encryptionInfoB64"]
    request = dcapi.DcApiRequest.parse({"protocol": "org-iso-mdoc", "data": {
        "deviceRequest": VECTOR["deviceRequestB64"], "encryptionInfo": VECTOR["encryptionInfoB64"]}})
    assert request.to_json()["data"] == {"deviceRequest": VECTOR["deviceRequestB64"],
                                         "encryptionInfo": VECTOR["encryptionInfoB64"]}


def test_transcript_is_the_annex_structure():
    t = dcapi.session_transcript("abc", "https://rp.example")
    want = hashlib.sha256(cbor.dumps(["abc", "https://rp.example"])).digest()
    assert cbor.loads(t.raw) == [None, None, ["dcapi", want]]
    assert dcapi.is_dcapi_transcript(t)
    assert t.device_engagement_bytes is None and t.e_reader_key_bytes is None


def test_encryption_info_built_is_what_the_annex_defines():
    key = ec.generate_private_key(ec.SECP256R1())
    info = dcapi.EncryptionInfo.build(key.public_key())
    value = cbor.loads(dcapi.unb64url(info.b64, "x"))
    assert value[0] == "dcapi" and set(value[1]) == {"nonce", "recipientPublicKey"}
    assert len(value[1]["nonce"]) == 16
    cose = value[1]["recipientPublicKey"]
    assert cose[1] == 2 and cose[-1] == 1 and len(cose[-2]) == 32 and len(cose[-3]) == 32
    assert "=" not in info.b64
    back = dcapi.EncryptionInfo.from_b64(info.b64)
    assert back.nonce == info.nonce and back.recipient_key == info.recipient_key
    with pytest.raises(dcapi.DcApiError, match="P-256"):
        dcapi.EncryptionInfo.build(ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(dcapi.DcApiError, match="16 bytes"):
        dcapi.EncryptionInfo.build(key.public_key(), nonce=bytes(15))


def test_seal_and_open_round_trip_and_bind_the_transcript():
    key = ec.generate_private_key(ec.SECP256R1())
    info = dcapi.EncryptionInfo.build(key.public_key())
    transcript = dcapi.session_transcript(info, "https://rp.example")
    sealed = dcapi.seal(b"device response bytes", info, transcript)
    assert len(sealed.enc) == 65 and sealed.enc[0] == 4
    assert len(sealed.cipher_text) == len(b"device response bytes") + 16
    wire = dcapi.parse_response_json(json.loads(json.dumps(dcapi.response_json(sealed))))
    assert wire == sealed
    assert dcapi.open_response(wire, key, transcript) == b"device response bytes"
    # relayed from another origin, for another request, to another key, or altered
    for other_key, other_transcript in (
        (key, dcapi.session_transcript(info, "https://evil.example")),
        (key, dcapi.session_transcript(dcapi.EncryptionInfo.build(key.public_key()), "https://rp.example")),
        (ec.generate_private_key(ec.SECP256R1()), transcript),
    ):
        with pytest.raises(dcapi.DcApiDecryptError, match="does not open"):
            dcapi.open_response(sealed, other_key, other_transcript)
    flipped = dcapi.EncryptedResponse(sealed.enc, sealed.cipher_text[:-1] + bytes([sealed.cipher_text[-1] ^ 1]))
    with pytest.raises(dcapi.DcApiDecryptError):
        dcapi.open_response(flipped, key, transcript)
    off_curve = dcapi.EncryptedResponse(b"\x04" + bytes(64), sealed.cipher_text)
    with pytest.raises(dcapi.DcApiDecryptError):
        dcapi.open_response(off_curve, key, transcript)


@pytest.mark.parametrize(("value", "message"), [
    ([], "JSON object"),
    ({"protocol": "openid4vp", "data": {}}, "protocol"),
    ({"protocol": "org-iso-mdoc", "data": []}, "request.data"),
    ({"protocol": "org-iso-mdoc", "data": {"deviceRequest": "oA"}}, "encryptionInfo"),
    ({"deviceRequest": 5, "encryptionInfo": "x"}, "base64url string"),
    ({"deviceRequest": "oA", "encryptionInfo": "!!"}, "not base64url"),
    ({"deviceRequest": "oA", "encryptionInfo": dcapi.b64url(cbor.dumps(["dcapi"]))}, "1 element"),
    ({"deviceRequest": "oA", "encryptionInfo": dcapi.b64url(cbor.dumps(["x", {}]))}, "dcapi"),
    ({"deviceRequest": "oA", "encryptionInfo": dcapi.b64url(cbor.dumps(["dcapi", {"nonce": b"1"}]))},
     "recipientPublicKey"),
])
def test_bad_requests_are_refused_by_name(value, message):
    with pytest.raises(dcapi.DcApiError, match=message):
        dcapi.DcApiRequest.parse(value)


@pytest.mark.parametrize(("value", "message"), [
    ({"response": dcapi.b64url(cbor.dumps(["dcapi", {"enc": bytes(65), "cipherText": bytes(20)}]))},
     "uncompressed point"),
    ({"response": dcapi.b64url(cbor.dumps(["dcapi", {"enc": b"\x04" + bytes(64), "cipherText": b"x"}]))},
     "AES-GCM tag"),
    ({"response": dcapi.b64url(cbor.dumps(["dcapi", {"enc": b"\x04" + bytes(64)}]))}, "cipherText"),
    ({"response": dcapi.b64url(cbor.dumps({"enc": 1}))}, "array"),
    ({"protocol": "x", "data": {"response": "AA"}}, "protocol"),
    ({"data": {}}, "missing 'response'"),
])
def test_bad_responses_are_refused_by_name(value, message):
    with pytest.raises(dcapi.DcApiError, match=message):
        dcapi.parse_response_json(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_dcapi_errors(data):
    text = dcapi.b64url(data) if data else "A"
    for call in (lambda: dcapi.EncryptionInfo.from_b64(text),
                 lambda: dcapi.EncryptedResponse.decode(data),
                 lambda: dcapi.parse_response_json({"response": text}),
                 lambda: dcapi.DcApiRequest.parse({"deviceRequest": text, "encryptionInfo": text})):
        try:
            call()
        except dcapi.DcApiError:
            pass


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["protocol", "data", "deviceRequest", "encryptionInfo", "response"]),
                       _json, max_size=4))
def test_arbitrary_json_only_raises_dcapi_errors(value):
    for call in (dcapi.DcApiRequest.parse, dcapi.parse_response_json):
        try:
            call(value)
        except dcapi.DcApiError:
            pass
