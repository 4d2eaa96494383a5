"""An independent cross-check of online presentation with OpenID4VP 1.0 over the Digital
Credentials API (protocol ``openid4vp-v1-unsigned``, ``dc_api.jwt``) in node,
interop/oid4vp-jose/oid4vp.mjs: the RFC 7638 thumbprint and the JWE (ECDH-ES, A128GCM) by
jose (panva's; ours is joserfc's), the OpenID4VPDCAPIHandover SessionTranscript made both by
@owf/mdoc's own ``SessionTranscript.forOid4VpDcApi`` and by hand with cbor-x and node:crypto,
the DeviceResponse of the vp_token verified by @owf/mdoc.

Both ways: node decrypts what our wallet encrypted for our reader's request and @owf/mdoc
finds it VALID with exactly the consented elements, over a transcript equal byte for byte to
ours (and to the specification's example); given another origin the JWE still decrypts (the
origin is bound in the transcript, not in the encryption) but device authentication fails;
and a vp_token node encrypts to our reader's key, our reader finds VALID."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
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
from protocols.mdoc import DeviceResponse, oid4vp
from reader.online import Oid4vpReaderSession
from reader.session import RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.wallet import Wallet

NODE = NodeBridge("oid4vp-jose", "jose", "oid4vp.mjs")
why = NODE.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"OpenID4VP interop (jose, @owf/mdoc): {why}")

VECTOR = json.loads((Path(__file__).parent / "vectors" / "oid4vp-1.0-dcapi-handover.json").read_text())
ORIGIN = "https://shop.example"
REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_20": True, "portrait": False}})
CONSENTED = {"documents": {DOCTYPE: {NS: ["family_name", "age_over_20"]}}}
NOW = T0 + dt.timedelta(minutes=1)  # the kit's Clock: its mdocs are valid around T0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory)


def _wallet(world, reader_trust_anchors=()) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, RulesConsent.from_mapping(CONSENTED), clock=Clock(),
                  reader_trust_anchors=reader_trust_anchors)


def _reader(world) -> Oid4vpReaderSession:
    pipeline = kit_pipeline(world["pki"])
    return Oid4vpReaderSession([REQUEST], pipeline, ORIGIN)


def _open(world, reader: Oid4vpReaderSession, request: dict, answer: dict, origin: str = ORIGIN) -> dict:
    return NODE.call({"mode": "open", "verifierKey": jwk(reader.e_reader_private_key), "request": request,
                      "origin": origin, "response": answer, "iaca": [world["pki"].iaca_pem().decode()],
                      "now": NOW.isoformat()})


def test_node_reproduces_the_specifications_example():
    got = NODE.call({"mode": "transcript", "origin": VECTOR["origin"], "nonce": VECTOR["nonce"], "jwk": VECTOR["jwk"]})
    assert got["thumbprintHex"] == VECTOR["jwkThumbprintHex"]
    assert got["handoverInfoHex"] == VECTOR["handoverInfoHex"]
    assert got["transcriptHex"] == VECTOR["sessionTranscriptHex"]
    assert got["owfTranscriptHex"] == VECTOR["sessionTranscriptHex"]


def test_node_decrypts_our_wallets_answer_and_owf_finds_it_valid_with_exactly_the_consented_items(world):
    reader = _reader(world)
    request = reader.start()
    answer = _wallet(world).online(ORIGIN).respond(request)
    got = _open(world, reader, request, answer)
    assert got["decrypted"] and got["error"] is None, got
    (key,) = request["data"]["client_metadata"]["jwks"]["keys"]
    assert got["keyMatches"]
    # OID4VP 1.0 section 8.3: ECDH-ES to the request's key, an enc it offered, its kid
    header = got["header"]
    assert (header["alg"], header["enc"], header["kid"]) == ("ECDH-ES", "A128GCM", key["kid"]), header
    assert header["epk"]["kty"] == "EC" and header["epk"]["crv"] == "P-256" and "d" not in header["epk"]
    assert got["headerProblems"] == []
    # jose's thumbprint is ours; both node transcripts are ours, byte for byte
    assert got["thumbprintHex"] == oid4vp.jwk_thumbprint(key).hex()
    assert got["transcriptHex"] == reader.transcript.raw.hex()
    assert got["owfTranscriptHex"] == reader.transcript.raw.hex()
    assert got["queries"] == ["q0"]
    assert got["valid"] and got["failed"] == [], got["failed"]
    assert "DEVICE_AUTH: Device signature must be valid" in got["passed"], got["passed"]
    assert any(p.startswith("ISSUER_AUTH") for p in got["passed"]) and any(
        p.startswith("DATA_INTEGRITY") for p in got["passed"]), got["passed"]
    assert {ns: set(ids) for ns, ids in got["elements"].items()} == {NS: {"family_name", "age_over_20"}}
    # and the values are the ones our reader reads from the same answer
    outcome = reader.receive(json.dumps(answer).encode())
    assert outcome.valid
    (doc,) = outcome.result.documents
    assert got["elements"][NS] == doc.elements[NS]
    assert DeviceResponse.decode(outcome.device_response).documents[0].errors == {NS: {"portrait": 0}}


@pytest.mark.parametrize("origin", ["https://relay.example", "https://shop.example:443"])
def test_given_another_origin_the_jwe_decrypts_but_owf_device_authentication_fails(world, origin):
    reader = _reader(world)
    request = reader.start()
    answer = _wallet(world).online(ORIGIN).respond(request)
    got = _open(world, reader, request, answer, origin=origin)
    assert got["decrypted"] and got["headerProblems"] == [], got
    expected = oid4vp.session_transcript(origin, request["data"]["nonce"], reader.request.thumbprint).raw.hex()
    assert got["transcriptHex"] == got["owfTranscriptHex"] == expected != reader.transcript.raw.hex()
    assert not got["valid"], got
    assert any(f.startswith("DEVICE_AUTH") for f in got["failed"]), got["failed"]
    assert not any(f.startswith(("ISSUER_AUTH", "DATA_INTEGRITY")) for f in got["failed"]), got["failed"]


def test_our_reader_finds_a_vp_token_node_encrypted_valid(world):
    reader = _reader(world)
    request = reader.start()
    session = _wallet(world).online(ORIGIN)
    session.respond(request)  # its own JWE is dropped: node encrypts the DeviceResponse again
    token = oid4vp.vp_token({"q0": [session.device_response]})
    sealed = NODE.call({"mode": "seal", "request": request, "vpToken": token})
    (key,) = request["data"]["client_metadata"]["jwks"]["keys"]
    assert sealed["response"]["protocol"] == oid4vp.PROTOCOL
    assert (sealed["header"]["alg"], sealed["header"]["enc"], sealed["header"]["kid"]) == ("ECDH-ES", "A128GCM",
                                                                                           key["kid"])
    # our own opening of jose's JWE gives back the vp_token node was given
    payload = oid4vp.open_response(sealed["response"]["data"]["response"], reader.e_reader_private_key)
    assert payload == {"vp_token": token}
    outcome = reader.receive(json.dumps(sealed["response"]).encode())
    assert outcome.valid, [(c.name, c.reason) for c in outcome.result.checks if not c.passed]
    assert outcome.device_response == session.device_response
    (doc,) = outcome.result.documents
    assert set(doc.elements[NS]) == {"family_name", "age_over_20"}


def test_our_reader_refuses_a_device_response_for_another_origin_node_encrypted(world):
    """Not a vacuous VALID: a DeviceResponse our wallet signed for a relaying origin, encrypted
    by node to the shop's key, decrypts in our reader but fails device authentication."""
    reader = _reader(world)
    request = reader.start()
    relayed = _wallet(world).online("https://relay.example")
    relayed.respond(request)
    sealed = NODE.call({"mode": "seal", "request": request,
                        "vpToken": oid4vp.vp_token({"q0": [relayed.device_response]})})
    outcome = reader.receive(json.dumps(sealed["response"]).encode())
    assert [c.name for c in outcome.result.checks if not c.passed] == ["device_authentication"]
