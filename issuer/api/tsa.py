"""The time-stamping authority over HTTP (RFC 3161 3.4), public like OCSP.

* ``POST /tsa``: body ``application/timestamp-query`` (a DER TimeStampReq, at most 16 KiB),
  answer ``application/timestamp-reply``; a bad request is refused in-band (status
  rejection with its PKIFailureInfo, HTTP 200), as RFC 3161 answers errors;
* ``GET /tsa/root.pem|.der``: the time-stamping roots a relying party trusts (every
  generation as a PEM bundle, or the newest as DER); ``GET /tsa/root.crl``: the root's
  CRL of revoked TSA units (DER, made on request, cacheable 5 minutes).

Public as DigiCert's, Sectigo's and GlobalSign's TSAs are: stamping a hash discloses nothing
and changes nothing but the log.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from issuer.api import headers, problem, problems
from issuer.tsa import TimeStampAuthority
from protocols import tsp
from protocols.tsp.messages import MAX_REQUEST_BYTES

ROOT_MAX_AGE = 3600
CRL_MAX_AGE = 300
_BINARY = {"schema": {"type": "string", "format": "binary"}}
#: What a route that reads the TSA's keys and log may answer besides its own (a refusal of a
#: query itself is in-band).
_UNAVAILABLE = problems.refusals((problems.DATABASE_UNAVAILABLE, "the TSA's log did not answer (Retry-After)"),
                                 (problems.KEYSTORE_ERROR, "the issuer's key store cannot be opened"))


def tsa_router(tsa: Callable[[], TimeStampAuthority]) -> APIRouter:
    router = APIRouter(tags=["tsa"])

    @router.post("/tsa", response_class=Response, summary="Time-stamp (RFC 3161), POST",
                 responses={200: {"description": "a TimeStampResp (RFC 3161 2.4.2), refusals in-band",
                                  "content": {tsp.REPLY_MEDIA_TYPE: _BINARY},
                                  "headers": headers(Cache_Control="no-store")},
                            415: {"description": "/problems/unsupported-media-type: not "
                                                 "application/timestamp-query"}, **_UNAVAILABLE},
                 openapi_extra={"requestBody": {"content": {tsp.QUERY_MEDIA_TYPE: {
                     "schema": {"type": "string", "format": "binary"}}}, "required": True}})
    async def stamp(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != tsp.QUERY_MEDIA_TYPE:
            return problem(415, "/problems/unsupported-media-type", "Unsupported media type",
                           f"send a DER TimeStampReq as {tsp.QUERY_MEDIA_TYPE}, not {media or 'nothing'}")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return Response(tsp.reject("badDataFormat", f"request over {MAX_REQUEST_BYTES} bytes"),
                                media_type=tsp.REPLY_MEDIA_TYPE, headers={"Cache-Control": "no-store"})
        # signing and the log's write block: keep them off the event loop
        answer = await run_in_threadpool(tsa().respond, body)
        return Response(answer, media_type=tsp.REPLY_MEDIA_TYPE, headers={"Cache-Control": "no-store"})

    @router.get("/tsa/{filename}", response_class=Response, summary="Time-stamping roots and their CRL",
                responses={200: {"description": "root.pem, root.der, root.crl",
                                 "content": {"application/x-pem-file": {"schema": {"type": "string"}},
                                             "application/pkix-cert": _BINARY, "application/pkix-crl": _BINARY},
                                 "headers": headers(Cache_Control=f"public, max-age={ROOT_MAX_AGE} (root.crl: "
                                                                  f"{CRL_MAX_AGE})")},
                           404: {"description": "/problems/not-found: no such trust material"}, **_UNAVAILABLE})
    def roots(filename: str) -> Response:  # sync: FastAPI runs it in its threadpool
        if filename == "root.pem":
            body = b"".join(c.public_bytes(Encoding.PEM) for c in tsa().roots())
            media = "application/x-pem-file"
        elif filename == "root.der":
            body, media = tsa().root().public_bytes(Encoding.DER), "application/pkix-cert"
        elif filename == "root.crl":
            body = tsa().crl()
            return Response(body, media_type="application/pkix-crl",
                            headers={"Cache-Control": f"public, max-age={CRL_MAX_AGE}"})
        else:
            return problem(404, "/problems/not-found", "No such trust material",
                           f"{filename}: use /tsa/root.pem, /tsa/root.der or /tsa/root.crl")
        return Response(body, media_type=media, headers={"Cache-Control": f"public, max-age={ROOT_MAX_AGE}"})

    return router
