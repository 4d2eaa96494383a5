"""What binds an online presentation to its request, its origin and its verifier
(protocols/mdoc/dcapi.py, oid4vp.py, oid4vp_redirect.py), rule by rule, where mutation
testing found no test holding the rule: Annex C's EncryptionInfo (ISO/IEC TS 18013-7 C.3:
a nonce of 16 bytes at least, an HPKE key on P-256, its text hashed as the request carried
it, a non-empty origin), and OpenID4VP 1.0's signed request objects and DCQL parts."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import cbor
from protocols.cose import CoseKey
from protocols.mdoc import dcapi

# -- Annex C -------------------------------------------------------------------------------------------


def _info_b64(nonce: bytes, key: ec.EllipticCurvePublicKey) -> str:
    return dcapi.b64url(cbor.dumps(["dcapi", {"nonce": nonce, "recipientPublicKey": CoseKey.from_public_key(key)
                                              .to_map()}]))


def test_an_encryption_info_nonce_shorter_than_16_bytes_is_refused():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(dcapi.DcApiError, match="nonce: at least 16 bytes, got 15"):
        dcapi.EncryptionInfo.from_b64(_info_b64(bytes(15), key))
    assert dcapi.EncryptionInfo.from_b64(_info_b64(bytes(16), key)).nonce == bytes(16)


def test_an_encryption_info_key_not_on_p256_is_refused():
    """HPKE here is DHKEM(P-256): a recipient key on another curve is refused when read, not
    when the wallet comes to seal to it."""
    with pytest.raises(dcapi.DcApiError, match="DHKEM\\(P-256\\) needs a P-256 key"):
        dcapi.EncryptionInfo.from_b64(_info_b64(bytes(16), ec.generate_private_key(ec.SECP384R1()).public_key()))


def test_the_transcript_hashes_the_encryption_info_text_as_the_request_carried_it():
    """Base64EncryptionInfo is the string of the request: one sent with padding is hashed
    with its padding, so the wallet's transcript is the reader's (who made that string)."""
    text = _info_b64(bytes(16), ec.generate_private_key(ec.SECP256R1()).public_key())
    padded = text + "=" * (-len(text) % 4)
    assert padded != text
    info = dcapi.EncryptionInfo.from_b64(padded)
    assert info.b64 == padded
    assert dcapi.session_transcript(info, "https://rp.example") == dcapi.session_transcript(padded,
                                                                                          "https://rp.example")
    assert dcapi.session_transcript(info, "https://rp.example") != dcapi.session_transcript(text,
                                                                                          "https://rp.example")


def test_an_annex_c_transcript_needs_an_origin():
    with pytest.raises(dcapi.DcApiError, match="empty origin"):
        dcapi.session_transcript("abc", "")


def _transcript_array(text: str, origin: str) -> bytes:
    """The SessionTranscript array bytes of Annex C, made here from the annex's own words."""
    import hashlib

    return cbor.dumps([None, None, ["dcapi", hashlib.sha256(cbor.dumps([text, origin])).digest()]])


def test_the_hpke_info_is_the_session_transcript_array_bytes():
    """Annex C: HPKE info is the SessionTranscript (the CBOR array, not wrapped in tag 24),
    so a response sealed by another implementation opens here and ours opens there."""
    key = ec.generate_private_key(ec.SECP256R1())
    info = dcapi.EncryptionInfo.build(key.public_key())
    transcript = dcapi.session_transcript(info, "https://rp.example")
    raw = _transcript_array(info.b64, "https://rp.example")
    assert transcript.raw == raw
    theirs = dcapi.HPKE_SUITE.encrypt(b"DeviceResponse", key.public_key(), info=raw)
    sealed = dcapi.EncryptedResponse(theirs[:dcapi.ENC_LENGTH], theirs[dcapi.ENC_LENGTH:])
    assert dcapi.open_response(sealed, key, transcript) == b"DeviceResponse"
    ours = dcapi.seal(b"DeviceResponse", info, transcript)
    assert dcapi.HPKE_SUITE.decrypt(ours.enc + ours.cipher_text, key, info=raw) == b"DeviceResponse"


def test_an_encrypted_response_of_another_protocol_tag_is_refused():
    good = cbor.loads(dcapi.seal(b"x", dcapi.EncryptionInfo.build(ec.generate_private_key(ec.SECP256R1())
                                                                  .public_key()),
                                 dcapi.session_transcript("abc", "https://rp.example")).encode())
    assert dcapi.EncryptedResponse.decode(cbor.dumps(good))
    with pytest.raises(dcapi.DcApiError, match='expected \\["dcapi", EncryptedResponseData\\]'):
        dcapi.EncryptedResponse.decode(cbor.dumps(["DCAPI", good[1]]))


def test_only_an_http_or_https_url_has_a_web_origin():
    assert dcapi.origin_of("HTTPS://RP.example:443/r?x=1") == "https://rp.example"
    for url in ("ftp://rp.example/r", "openid4vp://rp.example", "file:///etc/passwd"):
        with pytest.raises(dcapi.DcApiError, match="an http or https URL with a host has an origin"):
            dcapi.origin_of(url)


# -- OpenID4VP 1.0 signed request objects (section 5; A.3.2) -------------------------------------------


def _verifier():
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Verifier")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("rp.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    return key, [cert.public_bytes(Encoding.DER)]


def _signed(header: dict, claims: dict, key) -> dict:
    """A request object signed by ``key`` (ES256, r||s) under ``header`` as given."""
    import json

    from protocols import cose
    from protocols.mdoc import oid4vp

    signing_input = (oid4vp._b64url(json.dumps(header).encode()) + "." + oid4vp._b64url(json.dumps(claims).encode()))
    jws = signing_input + "." + oid4vp._b64url(cose.key_signer(key).sign(signing_input.encode()))
    return {"protocol": oid4vp.SIGNED_PROTOCOL, "data": {"request": jws}}


def _claims(chain, origins) -> dict:
    from protocols.mdoc import oid4vp

    return {"response_type": "vp_token", "response_mode": "dc_api", "nonce": "n-1",
            "dcql_query": {"credentials": [{"id": "q0", "format": "mso_mdoc", "meta": {"doctype_value": "d"},
                                            "claims": [{"path": ["ns", "e"]}]}]},
            "client_id": oid4vp.client_id_for(chain[0]), "expected_origins": origins}


def test_a_request_object_must_say_it_is_one_and_be_signed_with_ecdsa():
    """A wallet MUST NOT process a request object whose typ is not oauth-authz-req+jwt (5),
    and takes ES256/384/512 only: another alg (none, HS256) is a typed refusal, never a
    KeyError out of the verifier."""
    import base64

    from protocols.mdoc import oid4vp

    key, chain = _verifier()
    claims = _claims(chain, ["https://rp.example"])
    x5c = [base64.b64encode(c).decode() for c in chain]
    good = {"alg": "ES256", "typ": oid4vp.REQUEST_TYP, "x5c": x5c}
    assert oid4vp.parse_signed(_signed(good, claims, key), "https://rp.example")[1].client_id == "x509_san_dns:rp.example"
    for typ in ("JWT", None, "oauth-authz-req+JWT"):
        with pytest.raises(oid4vp.Oid4vpError, match="typ: expected 'oauth-authz-req\\+jwt'"):
            oid4vp.parse_signed(_signed({**good, "typ": typ}, claims, key), "https://rp.example")
    for alg in ("none", "HS256", "RS256", "EdDSA"):
        with pytest.raises(oid4vp.Oid4vpError, match="alg: .*ES256, ES384 or ES512"):
            oid4vp.parse_signed(_signed({**good, "alg": alg}, claims, key), "https://rp.example")


def test_expected_origins_is_an_array_of_strings_and_nothing_else():
    """A.3.2: expected_origins is an array of origins; one carrying other values is refused,
    even when the page's origin is among them."""
    import base64

    from protocols.mdoc import oid4vp

    key, chain = _verifier()
    header = {"alg": "ES256", "typ": oid4vp.REQUEST_TYP, "x5c": [base64.b64encode(c).decode() for c in chain]}
    for origins in (["https://rp.example", 7], ["https://rp.example", None], "https://rp.example"):
        with pytest.raises(oid4vp.Oid4vpError, match="expected_origins: an array of origins"):
            oid4vp.parse_signed(_signed(header, _claims(chain, origins), key), "https://rp.example")


def test_a_request_objects_x5c_is_at_most_five_certificates():
    """x5c is the verifier's chain, leaf first; more than five certificates is no verifier's
    chain this wallet walks (a bound on work an unauthenticated request can ask for)."""
    import base64

    from protocols.mdoc import oid4vp

    key, chain = _verifier()
    x5c = [base64.b64encode(c).decode() for c in chain]
    header = {"alg": "ES256", "typ": oid4vp.REQUEST_TYP}
    claims = _claims(chain, ["https://rp.example"])
    assert oid4vp.parse_signed(_signed({**header, "x5c": x5c * 5}, claims, key), "https://rp.example")
    with pytest.raises(oid4vp.Oid4vpError, match="x5c: the verifier's certificates"):
        oid4vp.parse_signed(_signed({**header, "x5c": x5c * 6}, claims, key), "https://rp.example")


# -- OpenID4VP 1.0 over the Digital Credentials API: the response key and mode --------------------------


def _jwk(**extra) -> dict:
    from protocols.mdoc import oid4vp

    return {**oid4vp.public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), kid="k"), **extra}


def _dc_api_jwt(keys, **metadata) -> dict:
    return {"protocol": "openid4vp-v1-unsigned", "data": {
        "response_type": "vp_token", "response_mode": "dc_api.jwt", "nonce": "n-1",
        "client_metadata": {"jwks": {"keys": keys}, **metadata},
        "dcql_query": {"credentials": [{"id": "q0", "format": "mso_mdoc", "meta": {"doctype_value": "d"},
                                        "claims": [{"path": ["ns", "e"]}]}]}}}


def test_the_response_is_encrypted_only_to_a_key_meant_for_ecdh_es_encryption():
    """client_metadata.jwks may carry other keys (a signing key, one for another algorithm):
    the wallet encrypts to the P-256 key for ECDH-ES and use enc (either member absent
    allowed), and the transcript's thumbprint is of that key; with none, it refuses."""
    from protocols.mdoc import oid4vp

    signing, other_alg, enc = _jwk(use="sig"), _jwk(alg="ECDH-ES+A128KW"), _jwk()
    request = oid4vp.Oid4vpRequest.parse(_dc_api_jwt([signing, other_alg, enc]))
    assert request.thumbprint == oid4vp.jwk_thumbprint(enc)
    for keys in ([signing], [other_alg], [signing, other_alg]):
        with pytest.raises(oid4vp.Oid4vpError, match="no EC P-256 key for ECDH-ES"):
            oid4vp.Oid4vpRequest.parse(_dc_api_jwt(keys))


def test_an_encrypted_response_needs_a_content_encryption_the_wallet_has():
    from protocols.mdoc import oid4vp

    request = oid4vp.Oid4vpRequest.parse(_dc_api_jwt([_jwk()], encrypted_response_enc_values_supported=[
        "A256CBC-HS512", "A256GCM"]))
    assert request.encs == ("A256GCM",)
    for offered in (["A256CBC-HS512"], []):
        with pytest.raises(oid4vp.Oid4vpError, match="encrypted_response_enc_values_supported: none of"):
            oid4vp.Oid4vpRequest.parse(_dc_api_jwt([_jwk()], encrypted_response_enc_values_supported=offered))


def test_a_response_of_another_protocol_is_not_read_as_an_openid4vp_one():
    from protocols.mdoc import oid4vp

    data = {"vp_token": {"q0": ["AA"]}}
    assert oid4vp.response_payload({"protocol": oid4vp.SIGNED_PROTOCOL, "data": data}) == data
    with pytest.raises(oid4vp.Oid4vpError, match="response.protocol: expected"):
        oid4vp.response_payload({"protocol": "org-iso-mdoc", "data": data})


# -- OpenID4VP 1.0 cross-device: the request object and the request by value ----------------------------


RESPONSE_URI = "https://rp.example/oid4vp/responses/s1"
REQUEST_URI = "https://rp.example/oid4vp/requests/s1"


def _redirect(client_id: str, response_uri: str = RESPONSE_URI):
    from protocols.mdoc import oid4vp_redirect as r
    from protocols.mdoc.oid4vp import ClaimQuery, CredentialQuery

    query = CredentialQuery("q0", "org.iso.18013.5.1.mDL", (ClaimQuery("org.iso.18013.5.1", "family_name"),))
    return r.RedirectRequest.build([query], ec.generate_private_key(ec.SECP256R1()).public_key(),
                                   client_id=client_id, response_uri=response_uri)


def _by_reference(client_id: str):
    from protocols.mdoc import oid4vp_redirect as r

    return r.parse_authorization_uri(r.authorization_uri(client_id, REQUEST_URI))


def test_a_request_object_for_another_audience_is_refused():
    """5.8: with static wallet metadata the request object's aud, when present, is
    https://self-issued.me/v2; one meant for another wallet (or server) is not this one's."""
    from protocols import cose
    from protocols.mdoc import oid4vp_redirect as r
    from protocols.mdoc.oid4vp import Oid4vpError, sign_request_object

    key, chain = _verifier()
    request = _redirect("x509_san_dns:rp.example")
    auth = _by_reference(request.client_id)
    assert r.parse_request_object(request.sign(cose.key_signer(key), chain), auth)[0] == request
    for aud in ("https://wallet.example", "https://self-issued.me/v1"):
        jws = sign_request_object({**request.claims(), "aud": aud}, cose.key_signer(key), chain)
        with pytest.raises(Oid4vpError, match="aud .*expected 'https://self-issued.me/v2'"):
            r.parse_request_object(jws, auth)


def test_a_request_object_for_several_audiences_is_taken_when_this_wallet_is_one():
    """RFC 7519 4.1.3: aud is in general an array of strings, a single string being the
    special case of one audience; a request object whose array holds
    https://self-issued.me/v2 is this wallet's (it was refused for not being the string),
    one whose array does not, or holds a non-string, is not."""
    from protocols import cose
    from protocols.mdoc import oid4vp_redirect as r
    from protocols.mdoc.oid4vp import Oid4vpError, sign_request_object

    key, chain = _verifier()
    request = _redirect("x509_san_dns:rp.example")
    auth = _by_reference(request.client_id)
    for aud in ([r.STATIC_AUD], ["https://other.example", r.STATIC_AUD]):
        jws = sign_request_object({**request.claims(), "aud": aud}, cose.key_signer(key), chain)
        assert r.parse_request_object(jws, auth)[0] == request, aud
    for aud in ([], ["https://other.example"], [r.STATIC_AUD, 7], {"aud": r.STATIC_AUD}, 7):
        jws = sign_request_object({**request.claims(), "aud": aud}, cose.key_signer(key), chain)
        with pytest.raises(Oid4vpError, match="aud .*expected 'https://self-issued.me/v2'"):
            r.parse_request_object(jws, auth)


@pytest.mark.parametrize("client_id", ["rp.example", "redirect_uri:" + RESPONSE_URI, "https://rp.example",
                                       "decentralized_identifier:did:example:123", "verifier_attestation:rp.example"])
def test_a_signed_request_names_its_verifier_by_its_certificate_only(client_id):
    """5.9.3: a request object signed here is bound to its certificate by x509_san_dns: or
    x509_hash:; any other client identifier (none at all, redirect_uri:, prefixes not
    supported) ties the signature to nobody, and is refused."""
    from protocols import cose
    from protocols.mdoc import oid4vp_redirect as r
    from protocols.mdoc.oid4vp import Oid4vpError, sign_request_object

    key, chain = _verifier()
    jws = sign_request_object(_redirect(client_id).claims(), cose.key_signer(key), chain)
    with pytest.raises(Oid4vpError, match="names its verifier by x509_san_dns: or x509_hash:"):
        r.parse_request_object(jws, _by_reference(client_id))


@pytest.mark.parametrize(("extra", "reason"), [
    ({"redirect_uri": "https://rp.example/back"}, "redirect_uri: not with response_mode direct_post"),
    ({"transaction_data": '["e30"]'}, "transaction_data: not supported here"),
])
def test_a_request_by_value_with_parameters_the_wallet_cannot_honour_is_refused(extra, reason):
    """8.2: redirect_uri is not used with direct_post (invalid_request); transaction_data the
    wallet cannot honour must be refused, not ignored (5.1, 8.4)."""
    from urllib.parse import urlencode

    from protocols.mdoc import oid4vp_redirect as r
    from protocols.mdoc.oid4vp import Oid4vpError

    uri = _redirect(r.redirect_client_id(RESPONSE_URI)).by_value_uri()
    assert r.parse_by_value(r.parse_authorization_uri(uri))
    with pytest.raises(Oid4vpError, match=reason):
        r.parse_by_value(r.parse_authorization_uri(uri + "&" + urlencode(extra)))


@pytest.mark.parametrize("uri", ["https://rp.example/r#frag", "https://user@rp.example/r",
                                 "https://user:pw@rp.example/r", "ftp://rp.example/r", "https:///r"])
def test_a_response_uri_is_an_absolute_http_url_without_user_or_fragment(uri):
    """The answer goes to response_uri, and the transcript binds it: userinfo (which hides
    the real host from a reader of the URI) or a fragment (never sent) is refused."""
    from protocols.mdoc import oid4vp_redirect as r
    from protocols.mdoc.oid4vp import Oid4vpError

    with pytest.raises(Oid4vpError, match="response_uri"):
        r.redirect_client_id(uri)


@pytest.mark.parametrize("state", ["", 5, "x" * 513, ["s"]])
def test_a_requests_state_is_a_non_empty_string(state):
    from protocols.mdoc import oid4vp_redirect as r
    from protocols.mdoc.oid4vp import Oid4vpError

    claims = _redirect(r.redirect_client_id(RESPONSE_URI)).claims()
    assert r.RedirectRequest.of_claims(claims).state == claims["state"]
    with pytest.raises(Oid4vpError, match="state: a non-empty string"):
        r.RedirectRequest.of_claims({**claims, "state": state})


def test_a_posted_form_names_each_parameter_once():
    """Which of two 'response' (or 'state') values would a reader take? Neither: the form is
    refused."""
    from protocols.mdoc import oid4vp_redirect as r
    from protocols.mdoc.oid4vp import Oid4vpError

    assert r.parse_form(b"response=a&state=s") == {"response": "a", "state": "s"}
    for body in (b"response=a&response=b", b"state=s&response=a&state=t"):
        with pytest.raises(Oid4vpError, match="given twice"):
            r.parse_form(body)
