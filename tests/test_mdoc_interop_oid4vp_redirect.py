"""An independent cross-check of cross-device presentation with OpenID4VP 1.0 (no Digital
Credentials API; response_mode ``direct_post.jwt``) in node, interop/oid4vp-jose/oid4vp.mjs:
the OpenID4VPHandover SessionTranscript made by @owf/mdoc's own
``SessionTranscript.forOid4Vp`` and by hand with cbor-x and node:crypto, the request object
verified by jose (panva's) with its x5c leaf, the direct_post.jwt JWE opened and made by jose,
the DeviceResponse verified by @owf/mdoc.

Both ways: node opens what our wallet posted to our reader's response_uri and @owf/mdoc finds
it VALID with exactly the consented elements, over a transcript equal byte for byte to ours
and to the specification's example; over another response_uri device authentication fails;
and a vp_token node encrypts with the session's state, our reader finds VALID."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography import x509
from node_bridge import NodeBridge, jwk
from test_mdoc_interop_oid4vp import NOW, REQUEST, _wallet  # the same request, consent and clock
from test_present_kit import NS, kit_pipeline, kit_world
from test_present_oid4vp import _reader_pki

from protocols import cose
from protocols.mdoc import _parse as p
from reader.online import Oid4vpRedirectReaderSession

NODE = NodeBridge("oid4vp-jose", "jose", "oid4vp.mjs")
why = NODE.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"OpenID4VP interop (jose, @owf/mdoc): {why}")

VECTOR = json.loads((Path(__file__).parent / "vectors" / "oid4vp-1.0-redirect-handover.json").read_text())
BASE = "https://shop.example"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory)


def _signed_reader(world) -> tuple[Oid4vpRedirectReaderSession, x509.Certificate]:
    """A signed cross-device reader session, and its reader CA (which the wallet trusts)."""
    ca, key, chain = _reader_pki()
    return Oid4vpRedirectReaderSession([REQUEST], kit_pipeline(world["pki"]), response_uri=f"{BASE}/oid4vp/responses/1",
                                       request_uri=f"{BASE}/oid4vp/requests/1", reader_signer=cose.key_signer(key),
                                       reader_chain=chain), ca


def _claims(reader) -> dict:
    return json.loads(reader.request_claims)


def test_owf_mdoc_reproduces_the_specifications_redirect_example():
    got = NODE.call({"mode": "redirect-transcript", "clientId": VECTOR["clientId"], "nonce": VECTOR["nonce"],
                     "jwk": VECTOR["jwk"], "responseUri": VECTOR["responseUri"]})
    assert got["thumbprintHex"] == VECTOR["jwkThumbprintHex"]
    assert got["handoverInfoHex"] == VECTOR["handoverInfoHex"]
    assert got["transcriptHex"] == VECTOR["sessionTranscriptHex"]
    assert got["owfTranscriptHex"] == VECTOR["sessionTranscriptHex"]


def test_jose_verifies_our_request_object_and_node_opens_our_wallets_answer(world):
    reader, ca = _signed_reader(world)
    opened = reader.start()
    jws = reader.request_object(reader.request_claims, reader.reader_signer, reader.reader_chain)
    checked = NODE.call({"mode": "verify-request", "requestObject": jws})
    assert checked["verified"], checked["error"]
    assert checked["header"]["typ"] == "oauth-authz-req+jwt" and checked["claims"]["client_id"] == opened["client_id"]
    assert checked["claims"]["aud"] == "https://self-issued.me/v2"
    post = _wallet(world, [ca]).cross_device(opened["uri"]).respond(jws)
    got = NODE.call({"mode": "redirect-open", "verifierKey": jwk(reader.e_reader_private_key),
                     "claims": _claims(reader), "form": post.form, "iaca": [world["pki"].iaca_pem().decode()],
                     "now": NOW.isoformat()})
    assert got["decrypted"] and got["state"] == reader.redirect.state, got["error"]
    assert got["owfTranscriptHex"] == got["transcriptHex"] == reader.transcript.raw.hex()
    assert got["valid"], got["failed"]
    assert got["elements"] == {NS: {"family_name": "山田", "age_over_20": True}}
    # the same answer judged as if posted to another response_uri: @owf/mdoc's device check fails
    other = dict(_claims(reader), response_uri=f"{BASE}/oid4vp/responses/2")
    got = NODE.call({"mode": "redirect-open", "verifierKey": jwk(reader.e_reader_private_key), "claims": other,
                     "form": post.form, "iaca": [world["pki"].iaca_pem().decode()], "now": NOW.isoformat()})
    assert got["decrypted"] and not got["valid"]
    assert any("device" in f.lower() for f in got["failed"]), got["failed"]


def test_our_reader_takes_what_jose_encrypts(world):
    reader, ca = _signed_reader(world)
    opened = reader.start()
    jws = reader.request_object(reader.request_claims, reader.reader_signer, reader.reader_chain)
    made = _wallet(world, [ca]).cross_device(opened["uri"])
    made.respond(jws)  # our wallet's DeviceResponse, over this session's transcript
    sealed = NODE.call({"mode": "redirect-seal", "claims": _claims(reader),
                        "vpToken": {"q0": [p.b64url(made.device_response)]}})
    assert sealed["header"]["alg"] == "ECDH-ES" and sealed["header"]["enc"] == "A128GCM"
    outcome = reader.receive(urlencode(sealed["form"]).encode())
    assert outcome.result.valid, [c for c in outcome.result.to_json()["checks"] if not c["passed"]]
