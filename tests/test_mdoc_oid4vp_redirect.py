"""OpenID4VP 1.0 without the Digital Credentials API (:mod:`protocols.mdoc.oid4vp_redirect`):
the OpenID4VPHandover transcript byte for byte from the specification's example (Appendix
B.2.6.1), the authorization request URI both ways (signed by reference, unsigned by value),
the request object's checks, the direct_post.jwt form, and the parsers fuzzed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import cose
from protocols.mdoc import _parse as p
from protocols.mdoc import oid4vp
from protocols.mdoc import oid4vp_redirect as r
from protocols.mdoc.oid4vp import ClaimQuery, CredentialQuery, Oid4vpError

VECTOR = json.loads((Path(__file__).parent / "vectors" / "oid4vp-1.0-redirect-handover.json").read_text())
QUERY = CredentialQuery("q0", "org.iso.18013.5.1.mDL", (ClaimQuery("org.iso.18013.5.1", "family_name"),))
RESPONSE_URI = "https://verifier.example/oid4vp/responses/s1"
REQUEST_URI = "https://verifier.example/oid4vp/requests/s1"


def test_the_specifications_redirect_handover_example_byte_for_byte():
    v = VECTOR
    thumbprint = oid4vp.jwk_thumbprint(v["jwk"])
    assert thumbprint.hex() == v["jwkThumbprintHex"]
    assert p.encode([v["clientId"], v["nonce"], thumbprint, v["responseUri"]]).hex() == v["handoverInfoHex"]
    transcript = r.session_transcript(v["clientId"], v["nonce"], thumbprint, v["responseUri"])
    assert transcript.raw.hex() == v["sessionTranscriptHex"]
    assert p.encode(transcript.handover).hex() == v["handoverHex"]
    assert r.is_redirect_transcript(transcript) and not oid4vp.is_oid4vp_transcript(transcript)
    # every input is bound: another client_id, nonce, key or response_uri gives another transcript
    for changed in ((v["clientId"] + "x", v["nonce"], thumbprint, v["responseUri"]),
                    (v["clientId"], v["nonce"] + "x", thumbprint, v["responseUri"]),
                    (v["clientId"], v["nonce"], None, v["responseUri"]),
                    (v["clientId"], v["nonce"], thumbprint, v["responseUri"] + "2")):
        assert r.session_transcript(*changed).raw != transcript.raw


def _pki(dns=("verifier.example",)):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Verifier")])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(7).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9)))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return key, [builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)]


def _request(client_id, response_uri=RESPONSE_URI, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    return r.RedirectRequest.build([QUERY], key.public_key(), client_id=client_id, response_uri=response_uri), key


def test_a_signed_request_by_reference_round_trips():
    key, chain = _pki()
    client_id = r.client_id_for_uri(chain[0], RESPONSE_URI)
    assert client_id == "x509_san_dns:verifier.example"
    request, _ = _request(client_id)
    uri = r.authorization_uri(client_id, REQUEST_URI)
    assert uri.startswith("openid4vp://?") and parse_qs(urlsplit(uri).query) == {
        "client_id": [client_id], "request_uri": [REQUEST_URI]}
    auth = r.parse_authorization_uri(uri)
    assert (auth.client_id, auth.request_uri, auth.request_uri_method) == (client_id, REQUEST_URI, "get")
    jws = request.sign(cose.key_signer(key), chain)
    header = json.loads(p.unb64url(jws.split(".")[0], "h"))
    claims = json.loads(p.unb64url(jws.split(".")[1], "c"))
    assert header["typ"] == "oauth-authz-req+jwt" and claims["aud"] == r.STATIC_AUD
    assert claims["response_mode"] == "direct_post.jwt" and "redirect_uri" not in claims and claims["state"]
    parsed, signed = r.parse_request_object(jws, auth)
    assert parsed == request and signed.client_id == client_id
    assert parsed.transcript.raw == request.transcript.raw


def test_joserfc_verifies_our_request_object():
    from joserfc import jws as jose_jws
    from joserfc.jwk import ECKey

    key, chain = _pki()
    request, _ = _request(r.client_id_for_uri(chain[0], RESPONSE_URI))
    registry = jose_jws.JWSRegistry(algorithms=["ES256"])
    registry.max_header_length = 8192
    checked = jose_jws.deserialize_compact(request.sign(cose.key_signer(key), chain), ECKey.import_key(key.public_key()),
                                           registry=registry)
    assert json.loads(checked.payload)["client_id"] == "x509_san_dns:verifier.example"


def test_a_certificate_that_does_not_name_the_host_signs_with_its_hash():
    key, chain = _pki(dns=("other.example",))
    client_id = r.client_id_for_uri(chain[0], RESPONSE_URI)
    assert client_id.startswith("x509_hash:")
    request, _ = _request(client_id)
    parsed, _ = r.parse_request_object(request.sign(cose.key_signer(key), chain),
                                       r.parse_authorization_uri(r.authorization_uri(client_id, REQUEST_URI)))
    assert parsed.client_id == client_id


def _refused(jws, auth, **kw) -> str:
    with pytest.raises(Oid4vpError) as info:
        r.parse_request_object(jws, auth, **kw)
    return str(info.value)


def test_a_request_object_that_does_not_hold_is_refused_by_name():
    key, chain = _pki()
    client_id = "x509_san_dns:verifier.example"
    auth = r.parse_authorization_uri(r.authorization_uri(client_id, REQUEST_URI))
    good, _ = _request(client_id)
    signer = cose.key_signer(key)
    # the URI's client_id is not the request object's
    other = r.parse_authorization_uri(r.authorization_uri("x509_san_dns:evil.example", REQUEST_URI))
    assert "identical" in _refused(good.sign(signer, chain), other)
    # answers going to a host the certificate does not name
    elsewhere, _ = _request(client_id, response_uri="https://evil.example/collect")
    assert "certified host" in _refused(elsewhere.sign(signer, chain), auth)
    # a DNS name the certificate does not have
    wrong, _ = _request("x509_san_dns:evil.example", response_uri="https://evil.example/r")
    assert "not a DNS name" in _refused(wrong.sign(signer, chain), r.parse_authorization_uri(
        r.authorization_uri("x509_san_dns:evil.example", REQUEST_URI)))
    # a hash that is not the certificate's
    hashed = "x509_hash:" + p.b64url(b"\0" * 32)
    bad_hash, _ = _request(hashed)
    assert "SHA-256 hash" in _refused(bad_hash.sign(signer, chain), r.parse_authorization_uri(
        r.authorization_uri(hashed, REQUEST_URI)))
    # the wallet's nonce missing from the object it POSTed for
    assert "wallet_nonce" in _refused(good.sign(signer, chain), auth, wallet_nonce="n1")
    assert r.parse_request_object(good.sign(signer, chain, wallet_nonce="n1"), auth, wallet_nonce="n1")
    # a tampered payload
    head, body, sig = good.sign(signer, chain).split(".")
    claims = json.loads(p.unb64url(body, "b"))
    claims["response_uri"] = "https://verifier.example/elsewhere"
    assert "does not verify" in _refused(f"{head}.{p.b64url(json.dumps(claims).encode())}.{sig}", auth)
    # redirect_uri: cannot be signed
    with pytest.raises(Oid4vpError, match="cannot be signed"):
        _request(r.redirect_client_id(RESPONSE_URI))[0].sign(signer, chain)


def test_an_unsigned_request_by_value_round_trips_and_its_client_id_is_its_response_uri():
    request, _ = _request(r.redirect_client_id(RESPONSE_URI))
    uri = request.by_value_uri()
    auth = r.parse_authorization_uri(uri)
    assert auth.by_value
    assert r.parse_by_value(auth) == request
    query = dict(parse_qs(urlsplit(uri).query))
    query["response_uri"] = ["https://evil.example/collect"]
    forged = r.parse_authorization_uri("openid4vp://?" + urlencode({k: v[0] for k, v in query.items()}))
    with pytest.raises(Oid4vpError, match="response_uri .* itself"):
        r.parse_by_value(forged)
    with pytest.raises(Oid4vpError, match="redirect_uri:"):
        r.parse_by_value(r.parse_authorization_uri("openid4vp://?client_id=x509_san_dns%3Aa.example&nonce=n"))


@pytest.mark.parametrize(("uri", "reason"), [
    ("openid4vp://?request_uri=https%3A%2F%2Fa.example%2Fr", "no client_id"),
    ("openid4vp://?client_id=a&client_id=b", "given twice"),
    ("openid4vp://?client_id=a&request_uri_method=post", "without request_uri"),
    ("openid4vp://?client_id=a&request_uri=https%3A%2F%2Fa.example%2Fr&request_uri_method=put", "get or post"),
    ("openid4vp://?client_id=a&request_uri=ftp%3A%2F%2Fa.example%2Fr", "https"),
    ("openid4vp://?client_id=a&request=eyJ", "request_uri"),
    ("no scheme at all", "does not parse|no scheme"),
])
def test_authorization_uris_the_wallet_cannot_use_are_named(uri, reason):
    with pytest.raises(Oid4vpError, match=reason):
        r.parse_authorization_uri(uri)


def test_the_response_form_carries_the_state_inside_the_jwe():
    request, key = _request(r.redirect_client_id(RESPONSE_URI))
    form = r.response_form({"q0": ["AAAA"]}, request)
    assert set(form) == {"response"}
    payload = oid4vp.open_response(form["response"], key)
    assert payload == {"vp_token": {"q0": ["AAAA"]}, "state": request.state}
    assert r.parse_form(urlencode(form).encode()) == form
    assert r.error_form("access_denied", "no", request.state) == {
        "error": "access_denied", "error_description": "no", "state": request.state}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.builds(
    lambda q: "openid4vp://?" + urlencode(q), st.dictionaries(
        st.sampled_from(["client_id", "request_uri", "request_uri_method", "response_uri", "nonce", "state",
                         "dcql_query", "client_metadata", "response_mode", "response_type", "redirect_uri"]),
        st.text(max_size=60)))))
def test_any_authorization_uri_gives_a_request_or_a_typed_error(uri):
    try:
        auth = r.parse_authorization_uri(uri)
        if auth.by_value:
            r.parse_by_value(auth)
    except Oid4vpError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_any_form_body_parses_or_is_a_typed_error(body):
    try:
        r.parse_form(body)
    except Oid4vpError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_any_request_object_text_is_a_typed_error(text):
    auth = r.parse_authorization_uri(r.authorization_uri("x509_san_dns:a.example", REQUEST_URI))
    candidates = [text, base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") + ".e30.AA"]
    for jws in candidates:
        with pytest.raises(Oid4vpError):
            r.parse_request_object(jws, auth)
