"""OpenID4VP 1.0 without the Digital Credentials API: the cross-device flow, where a
verifier's page shows a QR code, the phone's wallet scans it, fetches the request and posts
its answer straight back to the verifier (the page learns the verdict from its own backend).
Sans-I/O, like :mod:`protocols.mdoc.oid4vp`, whose DCQL, keys and JWE it shares.

* **Authorization request URI** (OID4VP 1.0 sections 5, 9): ``openid4vp://?client_id=...``
  and either ``request_uri`` (by reference: a signed request object, RFC 9101, fetched with
  GET, or POST with ``wallet_nonce`` when ``request_uri_method=post``) or the parameters
  themselves (by value: only unsigned, client identifier prefix ``redirect_uri:``).
* **Client identifier prefixes** (5.9.3): ``x509_san_dns:<DNS name>`` and
  ``x509_hash:<base64url SHA-256 of the leaf>`` sign the request object (``typ``
  oauth-authz-req+jwt, ``x5c``); for ``x509_san_dns`` the host of the ``response_uri`` is
  that DNS name of the leaf certificate. ``redirect_uri:<response_uri>`` cannot be signed.
* **Response mode** ``direct_post.jwt`` (8.3): the wallet POSTs
  ``application/x-www-form-urlencoded`` ``response=<JWE>`` to ``response_uri``, the JWE's
  payload ``{"vp_token": {...}, "state"}``; an error is posted in the clear (``error``,
  ``error_description``, ``state``). The verifier answers ``200`` with a JSON object.
* **SessionTranscript** (Appendix B.2.6.1, reproduced byte for byte from its example in
  tests/vectors/oid4vp-1.0-redirect-handover.json)::

      [null, null, ["OpenID4VPHandover", SHA-256(CBOR([client_id, nonce, jwkThumbprint, response_uri]))]]

  so a DeviceResponse made for one verifier, request or response endpoint does not verify
  at another.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from protocols.mdoc import _parse as p
from protocols.mdoc.oid4vp import (
    CredentialQuery,
    CredentialSet,
    Oid4vpError,
    Oid4vpRequest,
    SignedBy,
    encrypt,
    public_jwk,
    sign_request_object,
    verify_request_object,
)
from protocols.mdoc.transcript import SessionTranscript, hashed_handover, is_hashed_handover

HANDOVER = "OpenID4VPHandover"
SCHEME = "openid4vp"
RESPONSE_MODE = "direct_post.jwt"
PLAIN_RESPONSE_MODE = "direct_post"
#: ``aud`` of a request object when the wallet's metadata is static (OID4VP 1.0 5.8).
STATIC_AUD = "https://self-issued.me/v2"
REDIRECT_URI = "redirect_uri:"
X509_SAN_DNS = "x509_san_dns:"
X509_HASH = "x509_hash:"
REQUEST_OBJECT_TYPE = "application/oauth-authz-req+jwt"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_URI = 64 * 1024
MAX_FORM = 4 * 1024 * 1024
#: The parameters of the request an unsigned authorization request URI carries by value.
_BY_VALUE = ("response_type", "response_mode", "client_id", "response_uri", "nonce", "state", "dcql_query",
             "client_metadata")
_JSON_PARAMS = ("dcql_query", "client_metadata")


# -- the transcript -----------------------------------------------------------------------------


def session_transcript(client_id: str, nonce: str, thumbprint: bytes | None, response_uri: str) -> SessionTranscript:
    """``[null, null, ["OpenID4VPHandover", SHA-256(CBOR([client_id, nonce, thumbprint,
    response_uri]))]]``; ``client_id`` with its prefix, ``thumbprint`` the RFC 7638 SHA-256
    thumbprint of the response encryption key (None when the response is not encrypted)."""
    for name, value in (("client_id", client_id), ("nonce", nonce), ("response_uri", response_uri)):
        if not isinstance(value, str) or not value:
            raise Oid4vpError(f"SessionTranscript: {name} is a non-empty string")
    if thumbprint is not None and (not isinstance(thumbprint, bytes) or len(thumbprint) != 32):
        raise Oid4vpError("SessionTranscript: the JWK thumbprint is 32 bytes (SHA-256)")
    return hashed_handover(HANDOVER, [client_id, nonce, thumbprint, response_uri])


def is_redirect_transcript(transcript: SessionTranscript) -> bool:
    return is_hashed_handover(transcript, HANDOVER)


# -- the request ----------------------------------------------------------------------------------


def _check_uri(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > 2048:
        raise Oid4vpError(f"{where}: an absolute https (or http) URL")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:
        raise Oid4vpError(f"{where} {value[:80]!r}: not a URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not host or parts.fragment or "@" in parts.netloc:
        raise Oid4vpError(f"{where} {value[:80]!r}: an absolute https (or http) URL without a fragment")
    return value


@dataclass(frozen=True)
class RedirectRequest:
    """An OID4VP 1.0 request for mdocs answered by ``direct_post.jwt`` (or ``direct_post``)
    to :attr:`response_uri`: the DCQL query, nonce and encryption key of :attr:`request`, the
    verifier's :attr:`client_id` (with its prefix) and an optional :attr:`state`."""

    request: Oid4vpRequest
    client_id: str
    response_uri: str
    state: str | None = None

    @classmethod
    def build(cls, queries: Sequence[CredentialQuery], encryption_key: ec.EllipticCurvePublicKey, *,
              client_id: str, response_uri: str, nonce: str | None = None, state: str | None = None,
              kid: str | None = None, credential_sets: Sequence[CredentialSet] = ()) -> RedirectRequest:
        jwk = public_jwk(encryption_key, kid=kid or secrets.token_urlsafe(8))
        request = Oid4vpRequest(nonce or secrets.token_urlsafe(32), tuple(queries), jwk,
                                credential_sets=tuple(credential_sets))
        return cls(request, client_id, _check_uri(response_uri, "response_uri"),
                   secrets.token_urlsafe(16) if state is None else state)

    @property
    def response_mode(self) -> str:
        return PLAIN_RESPONSE_MODE if self.request.encryption_jwk is None else RESPONSE_MODE

    @functools.cached_property
    def transcript(self) -> SessionTranscript:
        return session_transcript(self.client_id, self.request.nonce, self.request.thumbprint, self.response_uri)

    def claims(self) -> dict[str, Any]:
        """The request's parameters, as a request object's claims (or, JSON values as
        strings, an authorization request URI's query)."""
        data = dict(self.request.to_json()["data"])
        out = {"response_type": data["response_type"], "response_mode": self.response_mode,
               "client_id": self.client_id, "response_uri": self.response_uri, "nonce": self.request.nonce}
        if self.state is not None:
            out["state"] = self.state
        out["dcql_query"] = data["dcql_query"]
        out["client_metadata"] = data["client_metadata"]
        return out

    def sign(self, signer: Any, chain: Sequence[bytes], *, wallet_nonce: str | None = None) -> str:
        """The request object for ``request_uri`` (a JWS: ``typ`` oauth-authz-req+jwt, ``x5c``
        ``chain``, ``aud`` the static one, ``wallet_nonce`` when the wallet sent one)."""
        if self.client_id.startswith(REDIRECT_URI):
            raise Oid4vpError("a request with client_id prefix redirect_uri: cannot be signed (OID4VP 1.0 5.9.3)")
        claims = {**self.claims(), "aud": STATIC_AUD}
        if wallet_nonce is not None:
            claims["wallet_nonce"] = wallet_nonce
        return sign_request_object(claims, signer, chain)

    def by_value_uri(self, scheme: str = SCHEME) -> str:
        """The unsigned authorization request URI carrying every parameter (``redirect_uri:``)."""
        if not self.client_id.startswith(REDIRECT_URI):
            raise Oid4vpError("only a redirect_uri: request goes by value; a signed one goes by request_uri")
        claims = self.claims()
        claims = {"client_id": claims.pop("client_id"), **claims}  # who asks, first (as the signed URI has it)
        query = {k: json.dumps(v, separators=(",", ":")) if k in _JSON_PARAMS else v for k, v in claims.items()}
        return f"{scheme}://?{urlencode(query)}"

    @classmethod
    def of_claims(cls, claims: Mapping[str, Any]) -> RedirectRequest:
        """From a request's parameters (a verified request object's claims, or the query of
        an unsigned URI with its JSON values parsed): :class:`Oid4vpError` naming the first
        that is wrong."""
        if "redirect_uri" in claims:
            raise Oid4vpError("redirect_uri: not with response_mode direct_post[.jwt], which answers to "
                              "response_uri (OID4VP 1.0 8.2: invalid_request)")
        if "transaction_data" in claims:
            raise Oid4vpError("transaction_data: not supported here (a wallet must refuse what it cannot honour)")
        response_uri = _check_uri(claims.get("response_uri"), "response_uri")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or not client_id or len(client_id) > 2048:
            raise Oid4vpError("client_id: a non-empty string")
        state = claims.get("state")
        if state is not None and (not isinstance(state, str) or not state or len(state) > 512):
            raise Oid4vpError("state: a non-empty string")
        request = Oid4vpRequest.of_params(claims, modes=(RESPONSE_MODE, PLAIN_RESPONSE_MODE))
        return cls(request, client_id, response_uri, state)


def redirect_client_id(response_uri: str) -> str:
    """``redirect_uri:<response_uri>``: the client identifier of an unsigned request."""
    return REDIRECT_URI + _check_uri(response_uri, "response_uri")


def authorization_uri(client_id: str, request_uri: str, *, method: str | None = None, scheme: str = SCHEME) -> str:
    """``openid4vp://?client_id=...&request_uri=...`` (``request_uri_method=post`` when the
    verifier wants the wallet's nonce): what the QR code shows for a signed request."""
    query = {"client_id": client_id, "request_uri": _check_uri(request_uri, "request_uri")}
    if method is not None:
        query["request_uri_method"] = method
    return f"{scheme}://?{urlencode(query)}"


@dataclass(frozen=True)
class AuthorizationUri:
    """An authorization request URI as the wallet receives it (scanned, or a link)."""

    client_id: str
    request_uri: str | None
    request_uri_method: str
    params: Mapping[str, str]

    @property
    def by_value(self) -> bool:
        return self.request_uri is None


def parse_authorization_uri(uri: Any) -> AuthorizationUri:
    """``scheme://?query`` (``openid4vp:``, another wallet scheme or an https link): its
    ``client_id`` and ``request_uri`` (``request_uri_method`` get or post), or the
    parameters of a request by value. Each parameter once."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI:
        raise Oid4vpError(f"authorization request URI: a string of at most {MAX_URI} characters")
    try:
        parts = urlsplit(uri.strip())
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True, max_num_fields=64)
    except ValueError as exc:
        raise Oid4vpError(f"authorization request URI: its query does not parse ({exc})") from None
    if not parts.scheme:
        raise Oid4vpError("authorization request URI: no scheme (expected openid4vp://?client_id=...)")
    params: dict[str, str] = {}
    for k, v in pairs:
        if k in params:
            raise Oid4vpError(f"authorization request URI: {k!r:.40} given twice")
        params[k] = v
    client_id = params.get("client_id")
    if not client_id:
        raise Oid4vpError("authorization request URI: no client_id")
    request_uri = params.get("request_uri")
    method = params.get("request_uri_method")
    if request_uri is None:
        if method is not None:
            raise Oid4vpError("request_uri_method without request_uri (OID4VP 1.0 5.1)")
        if "request" in params:
            raise Oid4vpError("request (a request object by value): send it by request_uri")
        return AuthorizationUri(client_id, None, "get", params)
    _check_uri(request_uri, "request_uri")
    if method not in (None, "get", "post"):
        raise Oid4vpError(f"request_uri_method {method!r:.20}: get or post (invalid_request_uri_method)")
    return AuthorizationUri(client_id, request_uri, method or "get", params)


def parse_by_value(auth: AuthorizationUri) -> RedirectRequest:
    """The unsigned request an authorization URI carries: ``client_id`` must be
    ``redirect_uri:`` followed by the ``response_uri`` (any other prefix is signed, and
    comes by ``request_uri``)."""
    if not auth.by_value:
        raise Oid4vpError("this authorization request is by reference (request_uri): fetch it")
    if not auth.client_id.startswith(REDIRECT_URI):
        raise Oid4vpError(f"client_id {auth.client_id[:60]!r}: a request by value is unsigned, so its client_id "
                          "has the prefix redirect_uri: (a signed one comes by request_uri)")
    claims: dict[str, Any] = {}
    for k in _BY_VALUE:
        if k in auth.params:
            claims[k] = auth.params[k]
    for k in ("redirect_uri", "transaction_data"):
        if k in auth.params:
            claims[k] = auth.params[k]
    for k in _JSON_PARAMS:
        if k in claims:
            try:
                claims[k] = json.loads(claims[k])
            except ValueError as exc:
                raise Oid4vpError(f"{k}: not JSON ({exc})") from None
    request = RedirectRequest.of_claims(claims)
    if request.client_id != REDIRECT_URI + request.response_uri:
        raise Oid4vpError(f"client_id {request.client_id[:80]!r}: with prefix redirect_uri: it is the response_uri "
                          f"({request.response_uri[:80]!r}) itself (OID4VP 1.0 5.9.3)")
    return request


def _dns_names(leaf_der: bytes) -> list[str]:
    from cryptography import x509

    from protocols import certs

    try:
        return certs.load_der(leaf_der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except (x509.ExtensionNotFound, ValueError):  # CertificateParseError is a ValueError
        return []


def client_id_for_uri(leaf_der: bytes, response_uri: str) -> str:
    """The client identifier a verifier with certificate ``leaf_der`` signs with when it
    answers at ``response_uri``: ``x509_san_dns:<host>`` when the certificate names that host,
    else ``x509_hash:<base64url SHA-256 of the leaf>`` (which ties no host)."""
    host = urlsplit(response_uri).hostname
    if host and host in _dns_names(leaf_der):
        return X509_SAN_DNS + host
    return X509_HASH + p.b64url(hashlib.sha256(leaf_der).digest())


def _names_this_wallet(aud: Any) -> bool:
    """Whether a request object's ``aud`` names this wallet (static metadata: ``STATIC_AUD``):
    the string itself, or an array of strings holding it (RFC 7519 4.1.3: a JWT for several
    audiences carries an array, and the one a recipient is must be in it)."""
    if isinstance(aud, str):
        return aud == STATIC_AUD
    return type(aud) is list and all(isinstance(a, str) for a in aud) and STATIC_AUD in aud


def parse_request_object(jws: Any, auth: AuthorizationUri, *,
                         wallet_nonce: str | None = None) -> tuple[RedirectRequest, SignedBy]:
    """The request object fetched from ``auth.request_uri``: its JWS verified with its
    ``x5c`` leaf (``typ`` oauth-authz-req+jwt); its ``client_id`` identical to the URI's
    (prefix included) and the leaf's: ``x509_san_dns:`` a DNS name of the leaf, which is
    also the host of ``response_uri``; ``x509_hash:`` the hash of the leaf. ``aud``, when
    present, the static one; ``wallet_nonce`` the one the wallet sent. Whether the leaf
    chains to a trusted verifier CA is the caller's (the holder is shown either way)."""
    claims, chain = verify_request_object(jws)
    client_id = claims.get("client_id")
    if client_id != auth.client_id:
        raise Oid4vpError(f"request object client_id {str(client_id)[:80]!r}: not the authorization request's "
                          f"({auth.client_id[:80]!r}); they must be identical (OID4VP 1.0 5.10.1)")
    if "aud" in claims and not _names_this_wallet(claims["aud"]):
        raise Oid4vpError(f"request object aud {str(claims['aud'])[:60]!r}: expected {STATIC_AUD!r} "
                          "(this wallet's metadata is static), or an array of strings holding it")
    if wallet_nonce is not None and claims.get("wallet_nonce") != wallet_nonce:
        raise Oid4vpError("request object wallet_nonce: not the one this wallet sent (a replayed request object)")
    request = RedirectRequest.of_claims({k: v for k, v in claims.items() if k not in ("aud", "iss", "wallet_nonce",
                                                                                       "exp", "iat", "nbf", "jti")})
    if client_id.startswith(X509_SAN_DNS):
        name = client_id[len(X509_SAN_DNS):]
        if name not in _dns_names(chain[0]):
            raise Oid4vpError(f"client_id {client_id[:80]!r}: {name[:60]!r} is not a DNS name of the request's "
                              "certificate")
        host = urlsplit(request.response_uri).hostname
        if host != name:
            raise Oid4vpError(f"response_uri {request.response_uri[:80]!r}: its host is not {name!r}, the verifier's "
                              "certificate's (x509_san_dns: the answer goes only to the certified host)")
    elif client_id.startswith(X509_HASH):
        if client_id != X509_HASH + p.b64url(hashlib.sha256(chain[0]).digest()):
            raise Oid4vpError(f"client_id {client_id[:80]!r}: not the SHA-256 hash of the request's certificate")
    else:
        raise Oid4vpError(f"client_id {client_id[:60]!r}: a signed request here names its verifier by "
                          "x509_san_dns: or x509_hash: (redirect_uri: cannot be signed; other prefixes are not "
                          "supported)")
    return request, SignedBy(chain, client_id, ())


# -- the response -------------------------------------------------------------------------------


def response_form(token: Mapping[str, list[str]], request: RedirectRequest) -> dict[str, str]:
    """What the wallet POSTs to ``response_uri``: ``{"response": JWE}`` whose payload is
    ``{"vp_token", "state"}`` (``direct_post.jwt``), or ``vp_token`` (JSON) and ``state`` in
    the clear (``direct_post``)."""
    payload: dict[str, Any] = {"vp_token": dict(token)}
    if request.state is not None:
        payload["state"] = request.state
    if request.request.encryption_jwk is None:
        return {"vp_token": json.dumps(payload["vp_token"], separators=(",", ":")),
                **({"state": request.state} if request.state is not None else {})}
    return {"response": encrypt(payload, request.request)}


def error_form(error: str, description: str, state: str | None) -> dict[str, str]:
    """An error response (OID4VP 1.0 8.5), posted in the clear: nothing is disclosed."""
    return {"error": error, "error_description": description, **({"state": state} if state is not None else {})}


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (UTF-8), each name once."""
    if not isinstance(body, bytes | bytearray) or len(body) > MAX_FORM:
        raise Oid4vpError(f"response: a form of at most {MAX_FORM} bytes")
    try:
        pairs = parse_qsl(bytes(body).decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                          max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Oid4vpError(f"response: not an application/x-www-form-urlencoded body ({exc})") from None
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise Oid4vpError(f"response: {k!r:.40} given twice")
        out[k] = v
    if not out:
        raise Oid4vpError("response: an empty form")
    return out
