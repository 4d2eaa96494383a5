"""protocols.mdoc.oid4vp: OpenID4VP 1.0 over the Digital Credentials API for mdocs — the
OpenID4VPDCAPIHandover SessionTranscript and the RFC 7638 thumbprint reproduced from the
specification's example, the request and DCQL both ways, the JWE response (ECDH-ES,
A128GCM) sealed and opened, and the parsers under fuzzing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import cbor
from protocols.mdoc import oid4vp

VECTOR = json.loads((Path(__file__).parent / "vectors" / "oid4vp-1.0-dcapi-handover.json").read_text())
QUERY = oid4vp.CredentialQuery("cardsub", "jp.mcred.mynumber.cardsub.1", (
    oid4vp.ClaimQuery("jp.mcred.mynumber.cardsub.1", "family_name"),
    oid4vp.ClaimQuery("jp.mcred.mynumber.cardsub.1", "age_over_20", True),
))


def test_the_specification_example_thumbprint_and_transcript():
    thumbprint = oid4vp.jwk_thumbprint(VECTOR["jwk"])
    assert thumbprint.hex() == VECTOR["jwkThumbprintHex"]
    transcript = oid4vp.session_transcript(VECTOR["origin"], VECTOR["nonce"], thumbprint)
    assert transcript.raw.hex() == VECTOR["sessionTranscriptHex"]
    assert cbor.dumps([VECTOR["origin"], VECTOR["nonce"], thumbprint]).hex() == VECTOR["handoverInfoHex"]
    assert oid4vp.is_oid4vp_transcript(transcript)
    # dc_api (no encryption): the third element is null, another transcript
    plain = oid4vp.session_transcript(VECTOR["origin"], VECTOR["nonce"], None)
    assert plain.raw != transcript.raw and cbor.loads(plain.raw)[2][0] == "OpenID4VPDCAPIHandover"


def test_a_request_round_trips_and_says_what_oid4vp_1_0_says():
    key = ec.generate_private_key(ec.SECP256R1())
    request = oid4vp.Oid4vpRequest.build([QUERY], key.public_key(), kid="k1")
    obj = json.loads(json.dumps(request.to_json()))
    assert obj["protocol"] == "openid4vp-v1-unsigned"
    data = obj["data"]
    assert data["response_type"] == "vp_token" and data["response_mode"] == "dc_api.jwt"
    assert "client_id" not in data and len(data["nonce"]) >= 32
    (jwk,) = data["client_metadata"]["jwks"]["keys"]
    assert jwk["alg"] == "ECDH-ES" and jwk["use"] == "enc" and jwk["kid"] == "k1" and "d" not in jwk
    assert data["client_metadata"]["encrypted_response_enc_values_supported"] == ["A128GCM"]
    assert data["dcql_query"]["credentials"][0] == {
        "id": "cardsub", "format": "mso_mdoc", "meta": {"doctype_value": "jp.mcred.mynumber.cardsub.1"},
        "claims": [{"path": ["jp.mcred.mynumber.cardsub.1", "family_name"], "intent_to_retain": False},
                   {"path": ["jp.mcred.mynumber.cardsub.1", "age_over_20"], "intent_to_retain": True}]}
    back = oid4vp.Oid4vpRequest.parse(obj)
    assert back.nonce == request.nonce and back.queries == (QUERY,)
    assert back.thumbprint == request.thumbprint and len(back.thumbprint) == 32
    assert oid4vp.Oid4vpRequest.parse(obj["data"]).nonce == request.nonce


def test_claim_sets_take_the_first_set_the_wallet_can_fill():
    ns = "org.iso.18013.5.1"
    query = oid4vp.Oid4vpRequest.parse({"protocol": "openid4vp-v1-unsigned", "data": {
        "response_type": "vp_token", "response_mode": "dc_api", "nonce": "n", "dcql_query": {"credentials": [{
            "id": "mdl", "format": "mso_mdoc", "meta": {"doctype_value": "org.iso.18013.5.1.mDL"},
            "claims": [{"id": "a", "path": [ns, "age_over_21"]}, {"id": "b", "path": [ns, "birth_date"]}],
            "claim_sets": [["a"], ["b"]]}]}}}).queries[0]
    assert query.items({ns: frozenset({"birth_date"})}) == {ns: {"birth_date": False}}
    assert query.items({ns: frozenset({"age_over_21", "birth_date"})}) == {ns: {"age_over_21": False}}
    assert query.items(None) == {ns: {"age_over_21": False}}


def test_seal_and_open_an_encrypted_response():
    key = ec.generate_private_key(ec.SECP256R1())
    request = oid4vp.Oid4vpRequest.parse(oid4vp.Oid4vpRequest.build([QUERY], key.public_key(), kid="k1").to_json())
    answer = json.loads(json.dumps(oid4vp.seal(oid4vp.vp_token({"cardsub": [b"\xa0device response"]}), request)))
    jwe_text = oid4vp.response_payload(answer)
    header = json.loads(base64.urlsafe_b64decode(jwe_text.split(".")[0] + "=="))
    assert header["alg"] == "ECDH-ES" and header["enc"] == "A128GCM" and header["kid"] == "k1"
    assert header["epk"]["crv"] == "P-256" and jwe_text.split(".")[1] == ""  # direct key agreement
    payload = oid4vp.open_response(jwe_text, key)
    assert oid4vp.documents(payload, ["cardsub"]) == {"cardsub": [b"\xa0device response"]}
    with pytest.raises(oid4vp.Oid4vpDecryptError, match="does not decrypt"):
        oid4vp.open_response(jwe_text, ec.generate_private_key(ec.SECP256R1()))
    parts = jwe_text.split(".")
    parts[3] = parts[3][:-2] + ("AA" if parts[3][-2:] != "AA" else "BB")
    with pytest.raises(oid4vp.Oid4vpDecryptError):
        oid4vp.open_response(".".join(parts), key)
    with pytest.raises(oid4vp.Oid4vpError, match="not asked for: other"):
        oid4vp.documents({"vp_token": {"other": ["AA"]}}, ["cardsub"])


def test_dc_api_without_encryption_answers_in_the_clear():
    request = oid4vp.Oid4vpRequest.build([QUERY], None)
    assert request.to_json()["data"]["response_mode"] == "dc_api"
    assert "jwks" not in request.to_json()["data"]["client_metadata"]
    answer = oid4vp.seal(oid4vp.vp_token({"cardsub": [b"x"]}), request)
    assert oid4vp.response_payload(answer) == {"vp_token": {"cardsub": ["eA"]}}


def _request(**data):
    base = {"response_type": "vp_token", "response_mode": "dc_api", "nonce": "n",
            "dcql_query": {"credentials": [QUERY.to_json()]}}
    return {"protocol": "openid4vp-v1-unsigned", "data": {**base, **data}}


@pytest.mark.parametrize(("value", "message"), [
    ({"protocol": "org-iso-mdoc", "data": {}}, "request.protocol"),
    (_request(client_id="x509_san_dns:rp.example"), "signed request"),
    (_request(response_type="code"), "response_type"),
    (_request(nonce=""), "nonce"),
    (_request(response_mode="direct_post"), "response_mode"),
    (_request(response_mode="dc_api.jwt"), "jwks"),
    (_request(response_mode="dc_api.jwt", client_metadata={"jwks": {"keys": [{"kty": "OKP", "crv": "X25519"}]}}),
     "no EC P-256 key"),
    (_request(response_mode="dc_api.jwt", client_metadata={"jwks": {"keys": [
        {**VECTOR["jwk"], "x": VECTOR["jwk"]["x"] + "="}]}}), "without padding"),
    (_request(response_mode="dc_api.jwt", client_metadata={"jwks": {"keys": [
        {**VECTOR["jwk"], "y": VECTOR["jwk"]["x"]}]}}), "not an EC P-256 public key"),
    (_request(dcql_query={"credentials": []}), "non-empty"),
    (_request(dcql_query={"credentials": [{**QUERY.to_json(), "format": "dc+sd-jwt"}]}), "only 'mso_mdoc'"),
    (_request(dcql_query={"credentials": [{**QUERY.to_json(), "claims": [{"path": ["only-one"]}]}]}), "path"),
    (_request(dcql_query={"credentials": [QUERY.to_json(), QUERY.to_json()]}), "unique"),
    (_request(dcql_query={"credentials": [QUERY.to_json()], "credential_sets": []}), "credential_sets"),
    (_request(dcql_query={"credentials": [QUERY.to_json()], "credential_sets": [{"options": [["nope"]]}]}),
     r"credential_sets\[0\]\.options"),
    (_request(dcql_query={"credentials": [QUERY.to_json()], "credential_sets": [
        {"options": [[QUERY.id]], "required": "yes"}]}), "required"),
    (_request(dcql_query={"credentials": [{**QUERY.to_json(), "claims": [
        {"path": ["org.iso.18013.5.1", "family_name"], "values": [{"nested": 1}]}]}]}), "values"),
    (_request(dcql_query={"credentials": [{**QUERY.to_json(), "format": ""}]}), "format"),
    (_request(dcql_query={"credentials": [{**QUERY.to_json(), "claim_sets": [["nope"]]}]}), "claim_sets"),
])
def test_bad_requests_are_refused_by_name(value, message):
    with pytest.raises(oid4vp.Oid4vpError, match=message):
        oid4vp.Oid4vpRequest.parse(value)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["protocol", "data", "response_type", "response_mode", "nonce",
                                        "client_metadata", "dcql_query", "response", "vp_token"]), _json, max_size=6))
def test_arbitrary_json_only_raises_oid4vp_errors(value):
    for call in (oid4vp.Oid4vpRequest.parse, oid4vp.response_payload, lambda v: oid4vp.documents(v, ["cardsub"])):
        try:
            call(value)
        except oid4vp.Oid4vpError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ABCDEFabcdef0123456789-_.", max_size=200))
def test_arbitrary_jwe_text_only_raises_oid4vp_errors(text):
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        oid4vp.open_response(text, key)
    except oid4vp.Oid4vpError:
        pass


_b64 = st.binary(max_size=120).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode())


@settings(max_examples=300, deadline=None)
@given(head=_json | st.just({"alg": "ES256", "typ": "oauth-authz-req+jwt", "x5c": ["AAAA"]}),
       body=_json, sig=_b64, raw=st.booleans())
def test_arbitrary_signed_requests_only_raise_oid4vp_errors(head, body, sig, raw):
    """The signed request's JWS, from its parts: any header, payload and signature (or any
    text) is refused with Oid4vpError, never anything else."""
    def part(v):
        return base64.urlsafe_b64encode(json.dumps(v).encode()).rstrip(b"=").decode()

    jws = sig if raw else f"{part(head)}.{part(body)}.{sig}"
    try:
        oid4vp.parse_signed({"protocol": "openid4vp-v1-signed", "data": {"request": jws}}, "https://rp.example")
    except oid4vp.Oid4vpError:
        pass


def test_the_specifications_mso_mdoc_query_example_parses():
    """OID4VP 1.0 Appendix D's mso_mdoc example (a vehicle registration), with members of 1.0
    the wallet need not act on for an mdoc (multiple, require_cryptographic_holder_binding,
    trusted_authorities): parsed, the claims by namespace."""
    query = {"credentials": [{
        "id": "my_credential", "format": "mso_mdoc", "meta": {"doctype_value": "org.iso.7367.1.mVRC"},
        "multiple": False, "require_cryptographic_holder_binding": True,
        "trusted_authorities": [{"type": "aki", "values": ["s9tIpPmhxdiuNkHMEWNpYim8S8Y"]}],
        "claims": [{"path": ["org.iso.7367.1", "vehicle_holder"]}, {"path": ["org.iso.18013.5.1", "first_name"]}]}]}
    (parsed,) = oid4vp.parse_dcql(query)
    assert parsed.id == "my_credential" and parsed.doctype == "org.iso.7367.1.mVRC"
    assert parsed.items() == {"org.iso.7367.1": {"vehicle_holder": False}, "org.iso.18013.5.1": {"first_name": False}}


def test_credential_sets_and_values_parse_and_round_trip():
    dcql = {"credentials": [
        {"id": "pid", "format": "dc+sd-jwt", "meta": {"vct_values": ["urn:eudi:pid:1"]}, "claims": [{"path": ["x"]}]},
        {**QUERY.to_json(), "claims": [{"path": ["org.iso.18013.5.1", "family_name"], "intent_to_retain": False,
                                        "values": ["Doe", 7, True]}]}],
        "credential_sets": [{"options": [["pid"], [QUERY.id]]}, {"options": [[QUERY.id]], "required": False}]}
    request = oid4vp.Oid4vpRequest.parse(_request(dcql_query=dcql))
    pid, mdl = request.queries
    assert pid.format == "dc+sd-jwt" and not pid.satisfiable({"x": frozenset({"x"})})  # held nothing of that format
    assert mdl.claims[0].values == ("Doe", 7, True)
    assert mdl.claims[0].matches("Doe") and mdl.claims[0].matches(True) and not mdl.claims[0].matches(1)
    assert [(c.options, c.required) for c in request.credential_sets] == [((("pid",), (QUERY.id,)), True),
                                                                          (((QUERY.id,),), False)]
    again = oid4vp.Oid4vpRequest.parse(request.to_json())
    assert again.credential_sets == request.credential_sets and again.queries[1] == mdl
    # the first option the wallet can answer, per set; a required set it cannot answer is named
    assert [q.id for q in oid4vp.select_queries(request.queries, request.credential_sets,
                                                lambda q: q.format == "mso_mdoc")] == [QUERY.id]
    with pytest.raises(oid4vp.Oid4vpError, match=r"credential_sets\[0\]: no option"):
        oid4vp.select_queries(request.queries, request.credential_sets, lambda q: False)


@settings(max_examples=200, deadline=None)
@given(authorities=_json | st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["aki", "etsi_tl", ""]), "values": st.lists(st.text(max_size=30), max_size=3)}),
    max_size=3), claim_sets=st.none() | _json)
def test_arbitrary_trusted_authorities_and_claim_sets_only_raise_oid4vp_errors(authorities, claim_sets):
    query = dict(QUERY.to_json(), trusted_authorities=authorities)
    if claim_sets is not None:
        query["claim_sets"] = claim_sets
    try:
        (parsed,) = oid4vp.parse_dcql({"credentials": [query]})
    except oid4vp.Oid4vpError:
        return
    parsed.authority_key_ids  # judged values decode: nothing raises  # noqa: B018


def test_a_signed_request_whose_x5c_leaf_cryptography_refuses_late_is_an_oid4vp_error():
    """A hostile verifier's signed request with an x5c leaf of version 4: cryptography loads
    it and raises InvalidVersion (no ValueError) when its key is read, which escaped
    parse_signed, the wallet's parser of what any web page sends (found by the deep fuzz
    campaign). Refused as the loader of protocols.certs refuses it."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    from test_certs import with_version_4

    from protocols import cose

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "verifier")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(5).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    bad = with_version_4(leaf)
    jws = oid4vp.sign_request_object({"response_type": "vp_token", "nonce": "n"}, cose.key_signer(key), [bad])
    with pytest.raises(oid4vp.Oid4vpError, match="x5c: not a certificate"):
        oid4vp.parse_signed({"protocol": oid4vp.SIGNED_PROTOCOL, "data": {"request": jws}}, "https://rp.example")
    assert oid4vp.client_id_for(bad).startswith("x509_hash:")  # a name it cannot read: no DNS name
