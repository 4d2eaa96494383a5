"""Public JPKI revocation and trust material over HTTP.

* ``POST /ocsp`` (body ``application/ocsp-request``) and ``GET /ocsp/{base64}`` (RFC 6960
  Appendix A.1; base64 of the DER request, URL-encoded), answering
  ``application/ocsp-response``; a malformed request gets an OCSP ``malformedRequest``
  response (HTTP 200, as RFC 6960 answers errors in-band), never a 5xx.
* ``GET /crl/{sign|auth}/{partition}.crl``: the full CRL of the partition, DER
  ``application/pkix-crl`` (RFC 5280 4.2.1.13 / RFC 2585); ``?key_id=<hex>`` selects an older
  root generation by its key identifier.
* ``GET /trust/jpki-{sign|auth}-root.pem|.der``: every root generation (PEM bundle) or the
  active root (DER).

Responses carry ``Cache-Control`` (RFC 5019 5 for OCSP GET): the material is static between
updates, so a CDN or cache may serve it.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from issuer.api import headers, problem, problems
from issuer.jpki import JpkiIssuer
from issuer.jpki.errors import CaNotSetUp, UnknownCredential
from issuer.jpki.ocsp import RESPONSE_VALIDITY
from protocols.jpki.ocsp import ResponseStatus, error_response

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
MAX_REQUEST = 16 * 1024
CRL_MAX_AGE = 300
ROOT_MAX_AGE = 3600

_BINARY = {"schema": {"type": "string", "format": "binary"}}
#: What the OpenAPI document says these routes answer (the media types of RFC 6960 and 2585).
#: What a route that reads the registry or the CAs' keys may answer besides its own.
_UNAVAILABLE = problems.refusals((problems.DATABASE_UNAVAILABLE, "the registry did not answer (Retry-After)"),
                                 (problems.CA_NOT_SET_UP, "the JPKI CAs are not set up"),
                                 (problems.KEYSTORE_ERROR, "the issuer's key store cannot be opened"))
_OCSP_DOC = {200: {"description": "an OCSP response (RFC 6960 4.2), errors in-band (malformedRequest)",
                   "content": {OCSP_RESPONSE: _BINARY},
                   "headers": headers(Cache_Control="no-store after a POST; public, max-age=<the response's "
                                                    "validity>, no-transform after a GET (RFC 5019 5)")},
             **_UNAVAILABLE}


def _ocsp(issuer: JpkiIssuer, der: bytes, cacheable: bool) -> Response:
    if len(der) > MAX_REQUEST:
        body = error_response(ResponseStatus.MALFORMED_REQUEST)
    else:
        body = issuer.ocsp_respond(der)
    cache = (f"public, max-age={int(RESPONSE_VALIDITY.total_seconds())}, no-transform"
             if cacheable else "no-store")
    return Response(body, media_type=OCSP_RESPONSE, headers={"Cache-Control": cache})


def jpki_router(issuer: Callable[[], JpkiIssuer]) -> APIRouter:
    router = APIRouter(tags=["jpki"])

    @router.post("/ocsp", response_class=Response, summary="OCSP (RFC 6960), POST", responses=_OCSP_DOC,
                 openapi_extra={"requestBody": {"content": {OCSP_REQUEST: _BINARY}, "required": True}})
    async def ocsp_post(request: Request) -> Response:
        der = await request.body()
        # Signing and the registry read block: keep them off the event loop.
        return await run_in_threadpool(_ocsp, issuer(), der, False)

    @router.get("/ocsp/{encoded:path}", response_class=Response, summary="OCSP (RFC 6960), GET",
                responses=_OCSP_DOC)
    def ocsp_get(encoded: str) -> Response:
        try:
            der = base64.b64decode(urllib.parse.unquote(encoded), validate=True)
        except (binascii.Error, ValueError):
            der = b""
        return _ocsp(issuer(), der, cacheable=True)

    @router.get("/crl/{slot}/{filename}", response_class=Response,
                summary="Full CRL of one partition (DER)",
                responses={200: {"description": "the CRL (RFC 5280), DER", "content": {"application/pkix-crl": _BINARY},
                                 "headers": headers(Cache_Control=f"public, max-age={CRL_MAX_AGE}")},
                           400: {"description": "/problems/bad-key-id: key_id is not hex"},
                           404: {"description": "/problems/not-found: no such CRL"},
                           **problems.refusals((problems.SIGNER_KEY_DESTROYED, "the key of the root generation was "
                                                "destroyed (every certificate it issued had expired) before final CRLs "
                                                "were signed, or the partition was first known after that (a final "
                                                "CRL is served for good otherwise): the CRL it signed last is served "
                                                "until an hour before its nextUpdate, none after")), **_UNAVAILABLE})
    def crl(slot: str, filename: str, key_id: str | None = None) -> Response:
        if slot not in ("sign", "auth") or not filename.endswith(".crl"):
            return problem(404, "/problems/not-found", "No such CRL",
                           f"CRLs are at /crl/sign|auth/<partition>.crl, not {slot}/{filename}")
        try:
            kid = bytes.fromhex(key_id) if key_id is not None else None
        except ValueError:
            return problem(400, "/problems/bad-key-id", "Bad key id", "key_id must be hex")
        try:
            der = issuer().crl(slot, filename[:-4], key_id=kid)
        except UnknownCredential as exc:
            return problem(404, "/problems/not-found", "No such CRL", str(exc))
        except CaNotSetUp as exc:
            return problem(503, "/problems/ca-not-set-up", "CA not set up", str(exc))
        return Response(der, media_type="application/pkix-crl",
                        headers={"Cache-Control": f"public, max-age={CRL_MAX_AGE}"})

    @router.get("/trust/{filename}", response_class=Response, summary="JPKI root certificates",
                responses={200: {"description": "every root generation (.pem) or the active root (.der)",
                                 "content": {"application/x-pem-file": {"schema": {"type": "string"}},
                                             "application/pkix-cert": _BINARY},
                                 "headers": headers(Cache_Control=f"public, max-age={ROOT_MAX_AGE}")},
                           404: {"description": "/problems/not-found: no such trust material"}, **_UNAVAILABLE})
    def root(filename: str) -> Response:
        stem, _, ext = filename.rpartition(".")
        slot = {"jpki-sign-root": "sign", "jpki-auth-root": "auth"}.get(stem)
        if slot is None or ext not in ("pem", "der"):
            return problem(404, "/problems/not-found", "No such trust material",
                           f"{filename}: use jpki-sign-root.pem|.der or jpki-auth-root.pem|.der")
        try:
            if ext == "der":
                body = issuer().root(slot).public_bytes(Encoding.DER)
                media = "application/pkix-cert"
            else:
                body = b"".join(c.public_bytes(Encoding.PEM) for c in issuer().roots(slot))
                media = "application/x-pem-file"
        except CaNotSetUp as exc:
            return problem(503, "/problems/ca-not-set-up", "CA not set up", str(exc))
        return Response(body, media_type=media,
                        headers={"Cache-Control": f"public, max-age={ROOT_MAX_AGE}"})

    return router
