"""Online presentation with OpenID4VP 1.0 over the Digital Credentials API
(``openid4vp-v1-unsigned``): the wallet answers a DCQL query with a vp_token encrypted to the
page's key (dc_api.jwt), the reader decrypts it and verifies each DeviceResponse over the
OpenID4VPDCAPIHandover transcript of its origin, nonce and key.

Each refusal asserted by name: a relayed origin fails device authentication (the JWE opens,
the device signature is over another transcript); a replay into another request does not
decrypt; a holder who releases nothing answers access_denied. Over HTTP the protocol is
chosen per session, and a session opened by one reader process is finished by another."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, kit_world

import wallet_sim
from mcred.present import (
    present_online_in_process,
    present_online_over_http,
    reader_app,
)
from protocols.mdoc import DeviceResponse, oid4vp
from reader.http import ReaderService
from reader.online import Oid4vpReaderSession
from reader.session import RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.wallet import OnlineRequestError, Wallet

ORIGIN = "https://shop.example"
REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_20": True, "portrait": False}})
CONSENT = {"documents": {DOCTYPE: {NS: ["family_name", "age_over_20"]}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory, slots=(0, 1))


def wallet(world, consent=CONSENT, reader_trust_anchors=()) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, RulesConsent.from_mapping(consent), clock=Clock(),
                  reader_trust_anchors=reader_trust_anchors)


def pipeline(world):
    return kit_pipeline(world["pki"])


def reader(world) -> Oid4vpReaderSession:
    return Oid4vpReaderSession([REQUEST], pipeline(world), ORIGIN)


def failed(result: dict) -> list[str]:
    return [c["name"] for c in result["checks"] if not c["passed"]]


def test_valid_with_exactly_the_consented_items(world):
    r = reader(world)
    out = present_online_in_process(wallet(world), r)
    assert out.valid, failed(out.result)
    assert out.result["documents"][0]["elements"] == {NS: {"family_name": "山田", "age_over_20": True}}
    assert "JWE decrypted" in out.result["checks"][0]["reason"]
    # the request was OID4VP 1.0's; the one DeviceResponse names the refused portrait
    data = r.request.to_json()["data"]
    assert data["response_mode"] == "dc_api.jwt" and data["dcql_query"]["credentials"][0]["id"] == "q0"
    assert DeviceResponse.decode(out.device_response).documents[0].errors == {NS: {"portrait": 0}}


def test_a_relayed_origin_fails_device_authentication(world):
    out = present_online_in_process(wallet(world), reader(world), origin="https://shop.example.relay.test")
    assert failed(out.result) == ["device_authentication"]


def test_a_response_replayed_into_another_request_does_not_decrypt(world):
    first, second = reader(world), reader(world)
    answer = wallet(world).online(ORIGIN).respond(first.start())
    second.start()
    outcome = second.receive(json.dumps(answer).encode())
    assert not outcome.valid and [c.name for c in outcome.result.checks] == ["session"]
    assert "does not decrypt" in outcome.result.checks[0].reason
    assert first.receive(json.dumps(answer).encode()).valid


def test_a_holder_who_releases_nothing_answers_access_denied(world):
    r = reader(world)
    session = wallet(world, {"documents": {}}).online(ORIGIN)
    answer = session.respond(r.start())
    assert answer["data"]["error"] == "access_denied" and "response" not in answer["data"]
    outcome = r.receive(json.dumps(answer).encode())
    assert [c.name for c in outcome.result.checks] == ["session"] and "access_denied" in outcome.result.checks[0].reason


def test_the_wallet_fills_the_first_claim_set_it_can(world):
    request = {"protocol": "openid4vp-v1-unsigned", "data": {
        "response_type": "vp_token", "response_mode": "dc_api", "nonce": "n-1",
        "dcql_query": {"credentials": [{"id": "card", "format": "mso_mdoc", "meta": {"doctype_value": DOCTYPE},
                                        "claims": [{"id": "a", "path": [NS, "no_such_element"]},
                                                   {"id": "b", "path": [NS, "family_name"]}],
                                        "claim_sets": [["a"], ["b"]]}]}}}
    answer = wallet(world, {"documents": {"*": {"*": "*"}}}).online(ORIGIN).respond(request)
    (presentation,) = answer["data"]["vp_token"]["card"]  # dc_api: in the clear
    doc = DeviceResponse.decode(oid4vp.unb64url(presentation, "x")).documents[0]
    assert {i.element_identifier for i in doc.issuer_signed.items()[NS]} == {"family_name"}


def _clear_request(dcql: dict) -> dict:
    return {"protocol": "openid4vp-v1-unsigned", "data": {
        "response_type": "vp_token", "response_mode": "dc_api", "nonce": "n-1", "dcql_query": dcql}}


def _released(answer: dict) -> dict[str, set[str]]:
    """query id -> the element identifiers its DeviceResponse discloses (dc_api: in the clear)."""
    out = {}
    for qid, (presentation,) in answer["data"]["vp_token"].items():
        doc = DeviceResponse.decode(oid4vp.unb64url(presentation, "x")).documents[0]
        out[qid] = {i.element_identifier for items in doc.issuer_signed.items().values() for i in items}
    return out


CARD = {"id": "card", "format": "mso_mdoc", "meta": {"doctype_value": DOCTYPE},
        "claims": [{"path": [NS, "family_name"]}]}
MDL = {"id": "mdl", "format": "mso_mdoc", "meta": {"doctype_value": "org.iso.18013.5.1.mDL"},
       "claims": [{"path": ["org.iso.18013.5.1", "family_name"]}]}
PID_SD_JWT = {"id": "pid", "format": "dc+sd-jwt", "meta": {"vct_values": ["urn:eudi:pid:1"]},
              "claims": [{"path": ["family_name"]}]}


def test_credential_sets_take_the_first_option_the_wallet_holds_and_leave_other_formats_unanswered(world):
    """A verifier that accepts a PID (SD-JWT), an mDL or our card substitute, and would like an
    mDL besides: the wallet holds only the card substitute and answers with it alone."""
    answer = wallet(world, {"documents": {"*": {"*": "*"}}}).online(ORIGIN).respond(_clear_request({
        "credentials": [PID_SD_JWT, MDL, CARD],
        "credential_sets": [{"options": [["pid"], ["mdl"], ["card"]]}, {"options": [["mdl"]], "required": False}]}))
    assert _released(answer) == {"card": {"family_name"}}


def test_a_required_credential_set_the_wallet_cannot_answer_gets_access_denied(world):
    session = wallet(world, {"documents": {"*": {"*": "*"}}}).online(ORIGIN)
    answer = session.respond(_clear_request({"credentials": [PID_SD_JWT, MDL, CARD],
                                             "credential_sets": [{"options": [["pid"], ["mdl"]]}]}))
    assert answer["data"]["error"] == "access_denied"
    assert any("credential_sets[0]: no option" in e.detail for e in session.events)


def test_claim_values_release_a_claim_only_when_its_value_is_one_of_them(world):
    """DCQL values (OID4VP 1.0 6.3): type and value both; True is not 1; in a claim set the
    first set whose values all match."""
    held_sex = 2  # the kit's holder
    answer = wallet(world, {"documents": {"*": {"*": "*"}}}).online(ORIGIN).respond(_clear_request({"credentials": [
        {"id": "card", "format": "mso_mdoc", "meta": {"doctype_value": DOCTYPE}, "claims": [
            {"path": [NS, "family_name"], "values": ["山田", "佐藤"]},
            {"path": [NS, "sex"], "values": [held_sex + 1]},
            {"path": [NS, "age_over_20"], "values": [1]}]},
        {"id": "adult", "format": "mso_mdoc", "meta": {"doctype_value": DOCTYPE}, "claims": [
            {"id": "a", "path": [NS, "age_over_20"], "values": [False]},
            {"id": "b", "path": [NS, "age_over_18"], "values": [True]}], "claim_sets": [["a"], ["b"]]}]}))
    assert _released(answer) == {"card": {"family_name"}, "adult": {"age_over_18"}}
    with pytest.raises(OnlineRequestError, match="values"):
        wallet(world).online(ORIGIN).respond(_clear_request({"credentials": [
            {**CARD, "claims": [{"path": [NS, "family_name"], "values": [1.5]}]}]}))


@pytest.mark.parametrize("request_value", [
    {"protocol": "openid4vp-v1-unsigned", "data": {"response_type": "vp_token", "nonce": "n",
                                                   "dcql_query": {"credentials": [{"id": "x", "format": "dc+sd-jwt"}]}}},
    {"protocol": "openid4vp-v1-unsigned", "data": {"request": "eyJ..."}},
])
def test_requests_the_wallet_cannot_answer_raise_a_typed_error(world, request_value):
    with pytest.raises(OnlineRequestError):
        wallet(world).online(ORIGIN).respond(request_value)


def test_over_http_the_protocol_is_chosen_per_session(world):
    service = ReaderService(pipeline(world), [REQUEST], origin=ORIGIN)
    with TestClient(reader_app(service), base_url="http://reader.test") as client:
        out = present_online_over_http(wallet(world), "http://reader.test", origin=ORIGIN, client=client,
                                       protocol="openid4vp-v1-unsigned")
        assert out.valid, failed(out.result)
        opened = client.post("/online/sessions", params={"protocol": "openid4vp-v1-unsigned"}).json()
        assert opened["request"]["protocol"] == "openid4vp-v1-unsigned"
        assert client.post("/online/sessions", params={"protocol": "openid4vp"}).status_code == 422
        url = f"/online/sessions/{opened['session']}"
        bad = client.post(url, json={"protocol": "openid4vp-v1-unsigned", "data": "x"})
        assert bad.status_code == 400
        # an Annex C answer to an OpenID4VP session fails it, by name
        from protocols.mdoc import dcapi

        annex_c = dcapi.response_json(dcapi.EncryptedResponse(b"\x04" + bytes(64), bytes(32)))
        r = client.post(url, json=annex_c)
        assert r.status_code == 200 and failed(r.json()) == ["session"]
        assert "OpenID4VP response" in r.json()["checks"][0]["reason"]


def test_an_oid4vp_session_opened_by_one_reader_is_finished_by_another(world, engine):
    from reader.sessions import AesGcmSealer

    sealer = AesGcmSealer(bytes(32))
    a = ReaderService(pipeline(world), [REQUEST], origin=ORIGIN, engine=engine, session_sealer=sealer)
    b = ReaderService(pipeline(world), [REQUEST], origin=ORIGIN, engine=engine, session_sealer=sealer)
    sid, request = a.open_online("openid4vp-v1-unsigned")
    answer = wallet(world).online(ORIGIN).respond(request)
    assert b.message(sid, json.dumps(answer).encode()) is not None
    verdict = json.loads(a.result(sid))
    assert verdict["valid"], failed(verdict)


def test_present_online_cli_with_openid4vp(world, tmp_path, monkeypatch):
    from test_present_cli import cli
    from test_present_http import Server, free_port
    from typer.testing import CliRunner

    app = cli()
    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    rules = tmp_path / "consent.json"
    rules.write_text(json.dumps(CONSENT))
    port = free_port()
    service = ReaderService(pipeline(world), [REQUEST], origin=f"http://127.0.0.1:{port}")
    with Server(reader_app(service), port) as server:
        r = CliRunner().invoke(app, ["present", "--phone", world["phone"], "--reader", server.url, "--online",
                                     "--protocol", "openid4vp", "--consent", str(rules), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout.strip().splitlines()[-1])["valid"]
        r = CliRunner().invoke(app, ["present", "--phone", world["phone"], "--reader", server.url,
                                     "--protocol", "openid4vp", "--consent", str(rules), "--json"])
        assert r.exit_code == 2 and "--online" in json.loads(r.stdout)["error"]
        r = CliRunner().invoke(app, ["present", "--phone", world["phone"], "--reader", server.url, "--online",
                                     "--protocol", "carrier-pigeon", "--consent", str(rules), "--json"])
        assert r.exit_code == 2


# -- signed requests (openid4vp-v1-signed) -----------------------------------------------------


def _reader_pki(dns: str | None = "shop.example"):
    """A verifier's certificate and its CA, as (CA, key, chain): a reader certificate (EKU
    mdlReaderAuth), as `mcred reader certificate` issues and the wallet requires of a
    request object's signer as of readerAuth's."""
    from test_present_kit import reader_pki

    pki = reader_pki("Shop Web Verifier", ca_cn="Shop CA", dns=dns)
    return pki.ca, pki.key, pki.chain


def _signed_reader(world, key, chain) -> Oid4vpReaderSession:
    from protocols import cose

    return Oid4vpReaderSession([REQUEST], pipeline(world), ORIGIN, reader_signer=cose.key_signer(key),
                               reader_chain=chain, signed=True)


def test_a_signed_request_names_its_verifier_to_the_holder(world):
    from wallet_sim.consent import InteractiveConsent

    ca, key, chain = _reader_pki()
    r = _signed_reader(world, key, chain)
    request = r.start()
    assert request["protocol"] == "openid4vp-v1-signed" and set(request["data"]) == {"request"}
    # the JWS verifies with joserfc too (an implementation other than our hand-made framing)
    from joserfc import jws
    from joserfc.jwk import ECKey

    registry = jws.JWSRegistry(algorithms=["ES256"])
    registry.max_header_length = 8192  # the x5c chain is in the header
    checked = jws.deserialize_compact(request["data"]["request"], ECKey.import_key(key.public_key()), registry=registry)
    claims = json.loads(checked.payload)
    assert checked.headers()["typ"] == "oauth-authz-req+jwt" and checked.headers()["alg"] == "ES256"
    assert claims["client_id"] == "x509_san_dns:shop.example" and claims["expected_origins"] == [ORIGIN]
    shown = []
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    w = Wallet(se.transmit, InteractiveConsent(ask=lambda q: "y", show=shown.append), clock=Clock(),
               reader_trust_anchors=[ca])
    answer = w.online(ORIGIN).respond(request)
    assert answer["protocol"] == "openid4vp-v1-signed"
    assert shown[:2] == [f"web site: {ORIGIN} (online request, as the browser reports it)",
                         "reader: CN=Shop Web Verifier,C=JP (verified)"]
    outcome = r.receive(json.dumps(answer).encode())
    assert outcome.valid, [c for c in outcome.result.checks if not c.passed]


def test_a_signed_request_whose_certificate_the_wallet_cannot_chain_is_refused_before_the_holder(world):
    """OID4VP 1.0 5.9.3: for x509_san_dns / x509_hash the wallet MUST validate the signature
    and the trust chain of the certificate. A wallet that does not know the verifier's CA
    answers invalid_request (8.5) and never puts the request to the holder, however
    generous the holder; the verifier reads the refusal by name. x509_hash as x509_san_dns."""
    from wallet_sim.consent import InteractiveConsent

    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    for dns in ("shop.example", None):
        ca, key, chain = _reader_pki(dns=dns)
        asked: list[str] = []
        shown: list[str] = []
        stranger = Wallet(se.transmit, InteractiveConsent(ask=lambda q, asked=asked: asked.append(q) or "y",
                                                            show=shown.append),
                          clock=Clock(), reader_trust_anchors=[_reader_pki()[0]])  # another reader CA
        r = _signed_reader(world, key, chain)
        session = stranger.online(ORIGIN)
        answer = session.respond(r.start())
        assert answer["protocol"] == "openid4vp-v1-signed" and set(answer["data"]) == {"error", "error_description"}
        assert answer["data"]["error"] == "invalid_request"
        assert answer["data"]["error_description"].startswith(
            "the request's certificate does not chain to a reader CA this wallet trusts: ")
        assert asked == [] and shown == [] and session.state == "terminated"
        assert not [e for e in session.events if e.kind == "response"]
        outcome = r.receive(json.dumps(answer).encode())
        assert not outcome.valid and [c.name for c in outcome.result.checks] == ["session"]
        assert "'invalid_request'" in outcome.result.checks[0].reason


def test_a_verifier_whose_certificate_its_ca_revoked_is_not_trusted(world):
    """The wallet's reader CA CRLs (``--reader-crl``) apply to a signed request's certificate
    as to readerAuth: revoked, its path does not validate (RFC 5280 6.1.3), so the request
    is answered invalid_request, with the CRL's word, and never shown to the holder, even
    one who releases everything to anyone."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from test_present_kit import T0, reader_pki

    from protocols import crl as ca_crl
    from wallet_sim.consent import InteractiveConsent
    from wallet_sim.reader_crls import ReaderCrls

    pki = reader_pki("Shop Web Verifier", ca_cn="Shop CA", dns="shop.example")
    listed = ca_crl.crl_builder(pki.ca, number=7, this_update=T0, next_update=dt.timedelta(days=7), revoked=[
        ca_crl.Revoked(pki.leaf.serial_number, T0, "keyCompromise")]).sign(pki.ca_key, hashes.SHA256())
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    shown = []
    w = Wallet(se.transmit, InteractiveConsent(ask=lambda q: "y", show=shown.append), clock=Clock(),
               reader_trust_anchors=[pki.ca], reader_revocation=ReaderCrls([listed]))
    session = w.online(ORIGIN)
    answer = session.respond(_signed_reader(world, pki.key, pki.chain).start())
    assert shown == [] and answer["data"]["error"] == "invalid_request"
    why = answer["data"]["error_description"]
    assert "revoked (keyCompromise)" in why and "CRL number 7" in why
    (refused,) = [e for e in session.events if e.kind == "error"]
    assert refused.reader.revocation_failed and refused.reader.signature_valid and not refused.reader.trusted
    # the same verifier, its CA's list not naming it, is answered
    clean = ca_crl.crl_builder(pki.ca, number=8, this_update=T0, next_update=dt.timedelta(days=7),
                               revoked=[]).sign(pki.ca_key, hashes.SHA256())
    w = Wallet(se.transmit, RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "trusted_readers_only": True}),
               clock=Clock(), reader_trust_anchors=[pki.ca], reader_revocation=ReaderCrls([clean]))
    r = _signed_reader(world, pki.key, pki.chain)
    assert r.receive(json.dumps(w.online(ORIGIN).respond(r.start())).encode()).valid


def reader_eku_or_not():
    """A reader CA, the key of a verifier, and two certificates of that key from that CA:
    one without the extended key usage mdlReaderAuth (1.0.18013.5.1.6), one with it (a
    reader certificate, ISO/IEC 18013-5 Annex B.1.7), as (ReaderPki, chain without, chain
    with)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from test_present_kit import reader_pki

    from protocols.mdoc.chain import EKU_MDL_READER_AUTH

    pki = reader_pki("Shop Web Verifier", ca_cn="Shop CA", dns="shop.example", eku=False)
    leaf = pki.leaf
    builder = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(leaf.issuer)
               .public_key(leaf.public_key()).serial_number(leaf.serial_number + 1)
               .not_valid_before(leaf.not_valid_before_utc).not_valid_after(leaf.not_valid_after_utc)
               .add_extension(x509.ExtendedKeyUsage([EKU_MDL_READER_AUTH]), critical=True))
    for ext in leaf.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    with_eku = builder.sign(pki.ca_key, hashes.SHA256())
    return pki, pki.chain, [with_eku.public_bytes(Encoding.DER)]


def test_a_request_signed_without_the_reader_authentication_eku_is_not_from_a_trusted_verifier(world):
    """A request object's signer is judged as readerAuth's signer is, by the same check
    (protocols.mdoc.verify.check_reader_chain): a certificate of a trusted reader CA that
    lacks mdlReaderAuth is not a reader certificate, so its path does not validate and the
    request is answered invalid_request, saying why, without the holder being asked; the
    same CA's certificate with the EKU, for the same key, is verified and answered."""
    from wallet_sim.consent import InteractiveConsent

    pki, without, with_eku = reader_eku_or_not()
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    shown: list[str] = []
    w = Wallet(se.transmit, InteractiveConsent(ask=lambda q: "y", show=shown.append), clock=Clock(),
               reader_trust_anchors=[pki.ca])
    session = w.online(ORIGIN)
    assert session.respond(_signed_reader(world, pki.key, without).start())["data"] == {
        "error": "invalid_request", "error_description": "the request's certificate does not chain to a reader CA "
        "this wallet trusts: leaf certificate lacks extended key usage 1.0.18013.5.1.6"}
    assert shown == [] and not [e for e in session.events if e.kind == "response"]
    (event,) = [e for e in session.events if e.kind == "error"]
    assert event.reader.signature_valid and not event.reader.trusted
    cautious = {"documents": {"*": {"*": "*"}}, "trusted_readers_only": True}
    r = _signed_reader(world, pki.key, with_eku)
    answer = Wallet(se.transmit, RulesConsent.from_mapping(cautious), clock=Clock(),
                    reader_trust_anchors=[pki.ca]).online(ORIGIN).respond(r.start())
    assert r.receive(json.dumps(answer).encode()).valid


def test_a_signed_request_from_another_origin_or_altered_is_refused(world):
    import base64

    ca, key, chain = _reader_pki()
    request = _signed_reader(world, key, chain).start()
    with pytest.raises(OnlineRequestError, match="replayed from another site"):
        wallet(world).online("https://relay.example").respond(request)
    head, body, sig = request["data"]["request"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["dcql_query"]["credentials"][0]["claims"].append({"path": [NS, "portrait"]})
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(OnlineRequestError, match="signature does not verify"):
        wallet(world).online(ORIGIN).respond({"protocol": "openid4vp-v1-signed",
                                              "data": {"request": f"{head}.{forged}.{sig}"}})


def test_a_certificate_without_a_dns_name_gives_an_x509_hash_client_id(world):
    import base64
    import hashlib

    ca, key, chain = _reader_pki(dns=None)
    request = _signed_reader(world, key, chain).start()
    body = json.loads(base64.urlsafe_b64decode(request["data"]["request"].split(".")[1] + "=="))
    digest = base64.urlsafe_b64encode(hashlib.sha256(chain[0]).digest()).rstrip(b"=").decode()
    assert body["client_id"] == f"x509_hash:{digest}"
    assert wallet(world, reader_trust_anchors=[ca]).online(ORIGIN).respond(request)["data"]["response"]


def test_a_claimed_client_id_that_is_not_the_certificates_is_refused(world):
    import base64

    from protocols import cose

    ca, key, chain = _reader_pki()
    request = _signed_reader(world, key, chain).start()
    head, body, _ = request["data"]["request"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["client_id"] = "x509_san_dns:bank.example"
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(cose.key_signer(key).sign(f"{head}.{body}".encode())).rstrip(b"=").decode()
    with pytest.raises(OnlineRequestError, match="not the one its certificate gives"):
        wallet(world).online(ORIGIN).respond({"protocol": "openid4vp-v1-signed",
                                              "data": {"request": f"{head}.{body}.{sig}"}})


def test_a_signed_session_needs_the_readers_certificate(world):
    from reader.errors import ReaderSessionError

    with pytest.raises(ReaderSessionError, match="--reader-cert"):
        Oid4vpReaderSession([REQUEST], pipeline(world), ORIGIN, signed=True)
    with TestClient(reader_app(ReaderService(pipeline(world), [REQUEST], origin=ORIGIN))) as client:
        r = client.post("/online/sessions", params={"protocol": "openid4vp-v1-signed"})
        assert r.status_code == 409 and "--reader-cert" in r.json()["detail"]


def test_a_saved_openid4vp_presentation_verifies_again(world, tmp_path):
    """``mcred present --save`` keeps the DeviceResponse and the OpenID4VPDCAPIHandover
    transcript: ``mcred verify``'s pipeline checks the device signature over it again."""
    from mcred.present import verify_saved

    out = present_online_in_process(wallet(world), reader(world))
    result = verify_saved(out.saved(), pipeline(world))
    checks = {c.name: c.passed for c in result.checks}
    assert checks["device_authentication"] and checks["issuer_signature"] and result.valid


@pytest.mark.parametrize(("data", "reason"), [
    ({"vp_token": {"q0": ["oA"]}}, "in the clear"),
    ({"response": "a.b.c"}, "JWE in compact serialization"),
    ({"response": "aaaa..bbbb.cccc.dddd"}, "does not decrypt"),
    ({}, "neither 'response'"),
])
def test_the_reader_names_what_is_wrong_with_an_answer(world, data, reason):
    r = reader(world)
    r.start()
    outcome = r.receive(json.dumps({"protocol": "openid4vp-v1-unsigned", "data": data}).encode())
    assert [c.name for c in outcome.result.checks] == ["session"]
    assert reason in outcome.result.checks[0].reason


def test_a_jwe_with_an_empty_vp_token_is_named(world):
    r = reader(world)
    request = oid4vp.Oid4vpRequest.parse(r.start())
    answer = oid4vp.seal({}, request)
    outcome = r.receive(json.dumps(answer).encode())
    assert outcome.result.checks[0].reason == "vp_token: no credential query answered"
