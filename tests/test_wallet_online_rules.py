"""The holder's side of online presentations, rule by rule, where mutation testing found no
test holding the rule (each test kills a mutant of wallet_sim/wallet.py the suite let
through): whom a signed OpenID4VP request's verifier is trusted by, and which DCQL
credential queries (OpenID4VP 1.0 section 6) a wallet answers."""

from __future__ import annotations

import json

import pytest
from test_present_kit import DOCTYPE, NS, Clock, kit_world, reader_pki

import wallet_sim
from protocols import cose
from protocols.mdoc import DeviceResponse, oid4vp
from wallet_sim.consent import InteractiveConsent, RulesConsent
from wallet_sim.wallet import Wallet

ORIGIN = "https://shop.example"
ALL = {"documents": {"*": {"*": "*"}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory)


def wallet(world, consent=None, **kw) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, consent or RulesConsent.from_mapping(ALL), clock=Clock(), **kw)


def clear_request(*credentials, credential_sets=None) -> dict:
    dcql = {"credentials": list(credentials)}
    if credential_sets is not None:
        dcql["credential_sets"] = credential_sets
    return {"protocol": oid4vp.PROTOCOL, "data": {"response_type": "vp_token", "response_mode": "dc_api",
                                                  "nonce": "n-1", "dcql_query": dcql}}


def card(qid: str, *claims: str, **extra) -> dict:
    return {"id": qid, "format": "mso_mdoc", "meta": {"doctype_value": DOCTYPE},
            "claims": [{"path": [NS, c]} for c in claims], **extra}


def released(answer: dict) -> dict[str, set[str]]:
    """query id -> the element identifiers its DeviceResponse discloses (dc_api: in the clear)."""
    out = {}
    for qid, (presentation,) in answer["data"]["vp_token"].items():
        doc = DeviceResponse.decode(oid4vp.unb64url(presentation, "x")).documents[0]
        out[qid] = {i.element_identifier for items in doc.issuer_signed.items().values() for i in items}
    return out


# -- the verifier of a signed request ---------------------------------------------------------------


def test_a_verifier_is_trusted_by_the_wallets_reader_cas_never_by_a_ca_its_own_x5c_carries(world):
    """A signed request (openid4vp-v1-signed) may carry its CA certificate in x5c; the
    verifier is still trusted only if that CA is one of the wallet's reader trust anchors:
    a chain's own root vouches for nothing, and a request it alone vouches for is answered
    invalid_request without the holder being asked (OID4VP 1.0 5.9.3, 8.5)."""
    from cryptography.hazmat.primitives import serialization
    from test_present_kit import kit_pipeline

    from reader.online import Oid4vpReaderSession
    from reader.session import RequestSpec

    pki = reader_pki("Shop Web Verifier", ca_cn="Shop CA", dns="shop.example")
    chain = [*pki.chain, pki.ca.public_bytes(serialization.Encoding.DER)]
    shown: list[str] = []
    for anchors in ([], [pki.ca]):
        shown.clear()
        r = Oid4vpReaderSession([RequestSpec(DOCTYPE, {NS: {"family_name": False}})], kit_pipeline(world["pki"]),
                                ORIGIN, reader_signer=cose.key_signer(pki.key), reader_chain=chain, signed=True)
        w = wallet(world, InteractiveConsent(ask=lambda q: "y", show=shown.append), reader_trust_anchors=anchors)
        session = w.online(ORIGIN)
        answer = session.respond(r.start())
        (event,) = [e for e in session.events if e.kind in ("response", "error")]
        assert event.reader.trusted == bool(anchors) and event.reader.signature_valid
        if anchors:
            assert shown[1] == "reader: CN=Shop Web Verifier,C=JP (verified)", shown
            assert r.receive(json.dumps(answer).encode()).valid
        else:
            assert shown == [] and answer["data"]["error"] == "invalid_request"


# -- which DCQL credential queries are answered (OpenID4VP 1.0 section 6) ---------------------------


def test_a_query_naming_only_trusted_authorities_the_wallet_cannot_judge_is_not_answered(world):
    """trusted_authorities (6.1.1) restrict the issuers a credential may come from; of types
    this wallet cannot judge (etsi_tl, openid_federation) they match no credential, so the
    query is left unanswered (specs/presentation.md 14), and the holder is told why."""
    session = wallet(world).online(ORIGIN)
    answer = session.respond(clear_request(card("q0", "family_name", trusted_authorities=[
        {"type": "etsi_tl", "values": ["https://lotl.example/tl.xml"]}])))
    assert answer["data"]["error"] == "access_denied"
    assert any("no trusted_authorities of a type this wallet judges" in e.detail for e in session.events)


def test_a_credential_set_option_of_trusted_authorities_the_wallet_cannot_judge_is_passed_over(world):
    """credential_sets (6.4.2): the first option the wallet can satisfy; an option whose
    query names only issuers the wallet cannot judge is not one, so the next is answered."""
    answer = wallet(world).online(ORIGIN).respond(clear_request(
        card("judged_not", "family_name", trusted_authorities=[{"type": "etsi_tl", "values": ["x"]}]),
        card("plain", "given_name"),
        credential_sets=[{"options": [["judged_not"], ["plain"]]}]))
    assert released(answer) == {"plain": {"given_name"}}


def test_a_credential_set_takes_the_first_option_whose_claims_the_credential_holds(world):
    """An option is satisfied by a credential of its docType that holds its claims, not by
    the docType alone (6.4.2)."""
    answer = wallet(world).online(ORIGIN).respond(clear_request(
        card("unheld", "no_such_element"), card("held", "family_name"),
        credential_sets=[{"options": [["unheld"], ["held"]]}]))
    assert released(answer) == {"held": {"family_name"}}


def test_a_query_whose_values_match_nothing_held_answers_nothing_and_the_holder_is_told(world):
    """values (6.3): a claim is returned only with one of those values; a query none of whose
    claims match is not put to the holder at all."""
    session = wallet(world).online(ORIGIN)
    answer = session.respond(clear_request(card("q0", "family_name") | {
        "claims": [{"path": [NS, "family_name"], "values": ["佐藤"]}]}))
    assert answer["data"]["error"] == "access_denied"
    (event,) = [e for e in session.events if e.kind == "response"]
    assert event.detail == "no claim held with the values asked" and event.doc_type == DOCTYPE


# -- cross-device (OpenID4VP 1.0 without the Digital Credentials API) ---------------------------------


def _unsigned_reader(world):
    from test_present_kit import kit_pipeline

    from reader.online import Oid4vpRedirectReaderSession
    from reader.session import RequestSpec

    return Oid4vpRedirectReaderSession([RequestSpec(DOCTYPE, {NS: {"family_name": False}})],
                                       kit_pipeline(world["pki"]), response_uri=f"{ORIGIN}/oid4vp/responses/s1")


def test_a_cross_device_presentation_answers_once(world):
    from wallet_sim.wallet import OnlineRequestError

    session = wallet(world).cross_device(_unsigned_reader(world).start()["uri"])
    post = session.respond(None)
    assert post.method == "POST" and "response" in post.form
    with pytest.raises(OnlineRequestError, match="already answered"):
        session.respond(None)


def test_a_request_by_value_takes_no_request_object_from_elsewhere(world):
    """An authorization request URI that carries its parameters (redirect_uri:, unsigned)
    is answered as it says: a request object handed in beside it (from whoever) is refused,
    not read in its place."""
    from wallet_sim.wallet import OnlineRequestError

    session = wallet(world).cross_device(_unsigned_reader(world).start()["uri"])
    assert session.fetch is None
    with pytest.raises(OnlineRequestError, match="carries its request by value"):
        session.respond("eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
    assert session.state == "terminated"
