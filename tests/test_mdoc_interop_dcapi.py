"""An independent cross-check of online presentation (ISO/IEC TS 18013-7 Annex C, protocol
``org-iso-mdoc`` of the Digital Credentials API) in node, interop/dcapi-hpke/dcapi.mjs: the
SessionTranscript made there from the request's encryptionInfo text and the origin with
cbor-x and node:crypto, HPKE by @hpke/core (dajiaji's RFC 9180 key schedule over WebCrypto;
ours is pyca/cryptography's), the DeviceResponse inside verified by @owf/mdoc.

Both ways: node opens what our wallet sealed for our reader's request and @owf/mdoc finds it
VALID with exactly the consented elements, over a transcript equal byte for byte to ours;
given another origin it cannot open it; and what node seals to our reader's key, our
``dcapi.open_response`` and our reader open, a DeviceResponse of our wallet's VALID."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from node_bridge import NodeBridge, jwk
from test_present_kit import (
    DOCTYPE,
    NS,
    T0,
    Clock,
    kit_pipeline,
    kit_world,
)

import wallet_sim
from protocols.mdoc import DeviceResponse, dcapi
from reader.online import OnlineReaderSession
from reader.session import RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.wallet import Wallet

NODE = NodeBridge("dcapi-hpke", "@hpke/core", "dcapi.mjs")
why = NODE.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"Annex C interop (@hpke/core, @owf/mdoc): {why}")

ORIGIN = "https://shop.example"
REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_20": False, "portrait": False}})
CONSENTED = {"documents": {DOCTYPE: {NS: ["family_name", "age_over_20"]}}}
NOW = T0 + dt.timedelta(minutes=1)  # the kit's Clock: its mdocs are valid around T0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory)


def _wallet(world) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, RulesConsent.from_mapping(CONSENTED), clock=Clock())


def _reader(world) -> OnlineReaderSession:
    pipeline = kit_pipeline(world["pki"])
    return OnlineReaderSession([REQUEST], pipeline, ORIGIN)


def _open(world, reader: OnlineReaderSession, request: dict, answer: dict, origin: str = ORIGIN) -> dict:
    return NODE.call({"mode": "open", "recipientKey": jwk(reader.e_reader_private_key),
                      "encryptionInfo": request["data"]["encryptionInfo"], "origin": origin,
                      "response": answer, "iaca": [world["pki"].iaca_pem().decode()], "now": NOW.isoformat()})


def _seal(public_key: ec.EllipticCurvePublicKey, encryption_info: str, plaintext: bytes, origin: str = ORIGIN) -> dict:
    return NODE.call({"mode": "seal", "recipientKey": jwk(public_key), "encryptionInfo": encryption_info,
                      "origin": origin, "plaintextHex": plaintext.hex()})


def test_node_opens_our_wallets_answer_and_owf_finds_it_valid_with_exactly_the_consented_items(world):
    reader = _reader(world)
    request = reader.start()
    answer = _wallet(world).online(ORIGIN).respond(request)
    got = _open(world, reader, request, answer)
    assert got["opened"] and got["error"] is None, got
    # the transcript node made from the two strings is ours, byte for byte; @owf/mdoc's
    # encoding of it (with the dcapi handover the bridge gives it) too
    ours = dcapi.session_transcript(request["data"]["encryptionInfo"], ORIGIN).raw
    assert ours == reader.transcript.raw
    assert got["transcriptHex"] == ours.hex()
    assert got["owfTranscriptHex"] == ours.hex()
    # our EncryptionInfo, read by cbor-x: Annex C's two fields, a 16-byte nonce, an EC2 P-256
    # COSE_Key that is the reader's key
    assert got["encryptionInfo"] == {"wellFormed": True, "keys": ["nonce", "recipientPublicKey"], "nonceLength": 16,
                                     "coseKty": 2, "coseCrv": 1, "recipientKeyMatches": True}
    assert got["valid"] and got["failed"] == [], got["failed"]
    assert "DEVICE_AUTH: Device signature must be valid" in got["passed"], got["passed"]
    assert any(p.startswith("ISSUER_AUTH") for p in got["passed"]) and any(
        p.startswith("DATA_INTEGRITY") for p in got["passed"]), got["passed"]
    assert {ns: set(ids) for ns, ids in got["elements"].items()} == {NS: {"family_name", "age_over_20"}}
    # and the values are the ones our reader reads from the same answer
    outcome = reader.receive(dcapi.parse_response_json(answer).encode())
    assert outcome.valid
    (doc,) = outcome.result.documents
    assert got["elements"][NS] == doc.elements[NS]
    assert DeviceResponse.decode(outcome.device_response).documents[0].errors == {NS: {"portrait": 0}}


@pytest.mark.parametrize("origin", ["https://relay.example", "https://shop.example/", "https://Shop.example",
                                    "https://shop.example:443"])
def test_node_given_another_origin_cannot_open_it(world, origin):
    reader = _reader(world)
    request = reader.start()
    answer = _wallet(world).online(ORIGIN).respond(request)
    got = _open(world, reader, request, answer, origin=origin)
    assert not got["opened"] and not got["valid"], got
    assert got["error"].startswith("OpenError"), got["error"]
    assert got["transcriptHex"] == dcapi.session_transcript(request["data"]["encryptionInfo"], origin).raw.hex()


def test_owf_checks_the_device_signature_against_the_dcapi_transcript(world):
    """Not a vacuous VALID: a DeviceResponse our wallet signed for a relaying origin, sealed
    by node for the shop's origin, opens in node but fails @owf/mdoc's device authentication
    (and ours) over the shop's transcript."""
    reader = _reader(world)
    request = reader.start()
    relayed = _wallet(world).online("https://relay.example")
    relayed.respond(request)
    public = reader.e_reader_private_key.public_key()
    resealed = _seal(public, request["data"]["encryptionInfo"], relayed.device_response)["response"]
    got = _open(world, reader, request, resealed)
    assert got["opened"] and not got["valid"], got
    assert any(f.startswith("DEVICE_AUTH") for f in got["failed"]), got["failed"]
    assert not any(f.startswith(("ISSUER_AUTH", "DATA_INTEGRITY")) for f in got["failed"]), got["failed"]
    outcome = reader.receive(dcapi.parse_response_json(resealed).encode())
    assert [c.name for c in outcome.result.checks if not c.passed] == ["device_authentication"]


def test_what_node_seals_to_our_key_our_side_opens():
    key = ec.generate_private_key(ec.SECP256R1())
    info = dcapi.EncryptionInfo.build(key.public_key())
    plaintext = "Annex C 試験".encode() * 50
    sealed = _seal(key.public_key(), info.b64, plaintext)
    assert sealed["response"]["protocol"] == dcapi.PROTOCOL
    st = dcapi.session_transcript(info, ORIGIN)
    assert sealed["transcriptHex"] == st.raw.hex()
    response = dcapi.parse_response_json(sealed["response"])
    assert len(response.enc) == dcapi.ENC_LENGTH and response.enc[0] == 0x04
    # the CBOR node wrote is the CBOR we write for the same values
    assert base64.urlsafe_b64decode(sealed["response"]["data"]["response"] + "==") == response.encode()
    assert dcapi.open_response(response, key, st) == plaintext
    with pytest.raises(dcapi.DcApiDecryptError):
        dcapi.open_response(response, key, dcapi.session_transcript(info, "https://relay.example"))


def test_our_reader_finds_a_device_response_of_our_wallet_node_sealed_valid(world):
    reader = _reader(world)
    request = reader.start()
    session = _wallet(world).online(ORIGIN)
    session.respond(request)  # its own sealed answer is dropped: node seals the DeviceResponse again
    public = reader.e_reader_private_key.public_key()
    assert public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint) == \
        dcapi.EncryptionInfo.from_b64(request["data"]["encryptionInfo"]).recipient_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    # sealed for another origin, the session (continued from its stored key and transcript,
    # as another worker would) cannot open it
    relayed = _seal(public, request["data"]["encryptionInfo"], session.device_response, origin="https://relay.example")
    twin = OnlineReaderSession.resume([REQUEST], reader.verifier, reader.e_reader_private_key, reader.transcript.raw)
    refused = twin.receive(dcapi.parse_response_json(relayed["response"]).encode())
    assert not refused.valid and [c.name for c in refused.result.checks if not c.passed] == ["session"]
    sealed = _seal(public, request["data"]["encryptionInfo"], session.device_response)
    outcome = reader.receive(dcapi.parse_response_json(sealed["response"]).encode())
    assert outcome.valid, [(c.name, c.reason) for c in outcome.result.checks if not c.passed]
    (doc,) = outcome.result.documents
    assert set(doc.elements[NS]) == {"family_name", "age_over_20"}
