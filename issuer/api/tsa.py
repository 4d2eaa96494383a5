"""The time-stamping authority over HTTP (RFC 3161 3.4), public like OCSP.

* ``POST /tsa``: body ``application/timestamp-query`` (a DER TimeStampReq, at most 16 KiB),
  answer ``application/timestamp-reply``; a bad request is refused in-band (status
  rejection with its PKIFailureInfo, HTTP 200), as RFC 3161 answers errors;
* ``GET /tsa/root.pem|.der``: the time-stamping roots a relying party trusts (every
  generation as a PEM bundle, the current first, or the current one as DER); ``GET
  /tsa/root.crl``: the first root generation's CRL of revoked TSA units (DER, made on request,
  cacheable 5 minutes), ``/tsa/root-gN.crl`` generation N's (the URL its units name), and
  ``/tsa/root-gN.pem|.der`` generation N alone. An older root whose key was destroyed (its
  units all expired) serves the final CRL it signed before, for good (nextUpdate
  99991231235959Z); one destroyed before final CRLs were signed, the CRL it signed last until
  an hour before its nextUpdate, then ``410`` ``/problems/signer-key-destroyed``.

Public as DigiCert's, Sectigo's and GlobalSign's TSAs are: stamping a hash discloses nothing
and changes nothing but the log.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from issuer.api import headers, problem, problems
from issuer.tsa import TimeStampAuthority, UnknownTsaKey
from protocols import tsp
from protocols.tsp.messages import MAX_REQUEST_BYTES

ROOT_MAX_AGE = 3600
CRL_MAX_AGE = 300
_BINARY = {"schema": {"type": "string", "format": "binary"}}
#: What a route that reads the TSA's keys and log may answer besides its own (a refusal of a
#: query itself is in-band).
_UNAVAILABLE = problems.refusals((problems.DATABASE_UNAVAILABLE, "the TSA's log did not answer (Retry-After)"),
                                 (problems.KEYSTORE_ERROR, "the issuer's key store cannot be opened"))
#: root-gN.pem|der|crl: root generation N alone (N >= 1, no leading zero)
_GENERATION = re.compile(r"root-g([1-9][0-9]{0,5})\.(pem|der|crl)")


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

    @router.get("/tsa/{filename}", response_class=Response, summary="Time-stamping roots and their CRLs",
                responses={200: {"description": "root.pem (every generation, the current first), root.der (the "
                                                "current one), root.crl (generation 1's CRL), root-gN.pem|der|crl "
                                                "(generation N's certificate or CRL)",
                                 "content": {"application/x-pem-file": {"schema": {"type": "string"}},
                                             "application/pkix-cert": _BINARY, "application/pkix-crl": _BINARY},
                                 "headers": headers(Cache_Control=f"public, max-age={ROOT_MAX_AGE} (a CRL: "
                                                                  f"{CRL_MAX_AGE})")},
                           404: {"description": "/problems/not-found: no such trust material (or root generation)"},
                           **problems.refusals((problems.SIGNER_KEY_DESTROYED, "the key of an older root generation "
                                                "was destroyed before final CRLs were signed (its final CRL is "
                                                "served for good otherwise): the CRL it signed last is served until "
                                                "an hour before its nextUpdate, none after")), **_UNAVAILABLE})
    def roots(filename: str) -> Response:  # sync: FastAPI runs it in its threadpool
        generation, kind = None, None
        if filename in ("root.pem", "root.der", "root.crl"):
            kind = filename[-3:]
            generation = 1 if kind == "crl" else None
        elif (m := _GENERATION.fullmatch(filename)) is not None:
            generation, kind = int(m.group(1)), m.group(2)
        if kind is None:
            return problem(404, "/problems/not-found", "No such trust material",
                           f"{filename}: use /tsa/root.pem, /tsa/root.der, /tsa/root.crl or /tsa/root-gN.pem|der|crl")
        try:
            if kind == "crl":
                return Response(tsa().crl(generation), media_type="application/pkix-crl",
                                headers={"Cache-Control": f"public, max-age={CRL_MAX_AGE}"})
            if generation is None:
                certs = tsa().roots() if kind == "pem" else [tsa().root()]
            else:
                certs = [tsa().root_of(generation)[1]]
        except UnknownTsaKey as exc:
            return problem(404, "/problems/not-found", "No such trust material", str(exc))
        if kind == "pem":
            body, media = b"".join(c.public_bytes(Encoding.PEM) for c in certs), "application/x-pem-file"
        else:
            body, media = certs[0].public_bytes(Encoding.DER), "application/pkix-cert"
        return Response(body, media_type=media, headers={"Cache-Control": f"public, max-age={ROOT_MAX_AGE}"})

    return router
