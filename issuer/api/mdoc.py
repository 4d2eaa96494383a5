"""Public HTTP routes of the issuer's mdoc side (mounted without a scope: public material).

* ``GET /status/{list_id}``: the Status List Token (``application/statuslist+cwt``,
  draft-ietf-oauth-status-list §8.1), with ``ETag`` and ``Cache-Control`` from the TTL;
  ``304 Not Modified`` on a matching ``If-None-Match`` (RFC 9110 §13.1.2).
* ``GET /identifiers/{list_id}``: the Identifier List Token beside that status list
  (``application/identifierlist+cwt``, ISO/IEC 18013-5 2nd edition), same headers and 304.
* ``GET /trust/iaca.pem``: every IACA a reader needs now, the current one first (a PEM
  bundle: after an IACA rollover, the older generation while its signers' mdocs or lists may
  be presented); ``/trust/iaca.der``: the current IACA alone.
* ``GET /trust/iaca-{n}.pem`` / ``.der``: IACA generation ``n`` alone.
* ``GET /trust/vical``: the same IACAs as a signed VICAL (ISO/IEC 18013-5 Annex C.1.7,
  ``application/cose``), each a trust point for this issuer's docType;
  ``GET /trust/vical-ca.pem``: the VICAL CAs a reader trusts for it (the current first).
* ``GET /trust/iaca.crl``: the first IACA generation's CRL (the CRL distribution point its
  certificates carry); ``GET /trust/iaca-{n}.crl``: generation ``n``'s (``n`` >= 2 carry that).
* ``GET /trust/vical-ca.crl``: the first VICAL CA generation's CRL (revoked VICAL signers: the
  distribution point its signers carry); ``GET /trust/vical-ca-{n}.crl``: generation ``n``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Header, Path, Response

from issuer.api import headers, problem, problems
from issuer.mdoc.errors import UnknownStatusList
from issuer.mdoc.publication import IDENTIFIER_MEDIA_TYPE, MEDIA_TYPE
from issuer.mdoc.service import MdocService

_TRUST_CACHE = "public, max-age=3600"
#: RFC 9052 section 9: a COSE_Sign1 (untagged, as VICALs are published)
VICAL_MEDIA_TYPE = 'application/cose; cose-type="cose-sign1"'
_CRL_CACHE = "public, max-age=600"
Factory = Callable[[], MdocService]
Generation = Annotated[int, Path(ge=1, le=10**6, description="the IACA generation (1 is the first)")]
VicalCaGeneration = Annotated[int, Path(ge=1, le=10**6, description="the VICAL CA generation (1 is the first)")]
#: What a route that reads the registry or signs with the mdoc keys may answer besides its own.
_UNAVAILABLE = problems.refusals((problems.DATABASE_UNAVAILABLE, "the registry did not answer (Retry-After)"),
                                 (problems.MDOC_KEYS_MISSING, "the mdoc issuer's keys are not set up"),
                                 (problems.KEYSTORE_ERROR, "the issuer's key store cannot be opened"))
#: What a published token's answer carries, 200 and 304 alike (RFC 9110 15.4.5): a cache
#: revalidates with the ETag and keeps a copy no longer than the token's TTL allows.
_TOKEN_HEADERS = headers(ETag="the token's entity tag, for If-None-Match",
                         Cache_Control="public, max-age=<seconds left of the token's TTL, at most the TTL>",
                         Expires="when the token expires (HTTP-date)",
                         Last_Modified="when the token was issued (HTTP-date)")
_TRUST_HEADERS = headers(Cache_Control=_TRUST_CACHE)
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_PUBLISHED = {304: {"description": "Not Modified: If-None-Match names the token as it is", "headers": _TOKEN_HEADERS},
              **problems.merge(problems.refusals(
                  (problems.UNKNOWN_STATUS_LIST, "no such list"),
                  (problems.IACA_ENDED, "the IACA of the list's mdocs is past its notAfter: its lists are not "
                                        "signed any more (every mdoc on it has expired)"),
                  (problems.IACA_WITHDRAWN, "the IACA of the list's mdocs was revoked (out of trust): its lists "
                                            "are not signed any more (no reader trusts its mdocs)"),
                  (problems.SIGNER_KEY_DESTROYED, "the list needs a new status-list signer and the key of the IACA "
                                                  "of its mdocs was destroyed (every mdoc on it has expired)")),
                  _UNAVAILABLE)}


def _not_found(list_id: str) -> Response:
    kind = problems.UNKNOWN_STATUS_LIST
    return problem(kind.status, kind.uri, kind.title, f"no status list {list_id!r}")


def status_router(service: Factory) -> APIRouter:
    router = APIRouter(tags=["status"])

    def published(list_id: str, if_none_match: str | None, token_of, media_type: str) -> Response:
        """A published token by list id, with ETag / Cache-Control and 304 (one rule for
        status lists and identifier lists)."""
        if not list_id.isalnum() or len(list_id) > 64:
            return _not_found(list_id[:64])
        svc = service()
        now = svc.clock()
        try:
            token = token_of(svc, list_id, now)
        except UnknownStatusList:
            return _not_found(list_id)
        headers = token.headers(now)
        if token.matches(if_none_match):
            return Response(status_code=304, headers=headers)
        return Response(token.token, media_type=media_type, headers=headers)

    @router.get("/status/{list_id}", response_class=Response,
                responses={200: {"description": "the Status List Token (draft-ietf-oauth-status-list 8.1, a CWT)",
                                 "content": {MEDIA_TYPE: _BINARY}, "headers": _TOKEN_HEADERS}, **_PUBLISHED})
    def status_list(list_id: str, if_none_match: str | None = Header(default=None)) -> Response:
        return published(list_id, if_none_match, lambda svc, i, now: svc.status_token(i, now), MEDIA_TYPE)

    @router.get("/identifiers/{list_id}", response_class=Response,
                responses={200: {"description": "the Identifier List Token (ISO/IEC 18013-5 2nd edition, a CWT)",
                                 "content": {IDENTIFIER_MEDIA_TYPE: _BINARY}, "headers": _TOKEN_HEADERS},
                           **_PUBLISHED})
    def identifier_list(list_id: str, if_none_match: str | None = Header(default=None)) -> Response:
        return published(list_id, if_none_match, lambda svc, i, now: svc.identifier_token(i, now),
                         IDENTIFIER_MEDIA_TYPE)

    return router


def trust_router(service: Factory) -> APIRouter:
    router = APIRouter(tags=["trust"])
    generation_refusals = problems.merge(problems.refusals((problems.UNKNOWN_IACA, "no IACA of that generation")),
                                         _UNAVAILABLE)
    crl_refusals = problems.merge(problems.refusals(
        (problems.IACA_ENDED, "the IACA is past its notAfter: no CRL is issued for it"),
        (problems.IACA_WITHDRAWN, "the IACA was revoked (out of trust): its key signs no CRL"),
        (problems.SIGNER_KEY_DESTROYED, "the IACA's key was destroyed (every signer it certified had ended) "
                                        "before final CRLs were signed (its final CRL is served for good "
                                        "otherwise): the CRL it signed last is served until an hour before its "
                                        "nextUpdate, none after")), generation_refusals)

    def pem(*certs: x509.Certificate) -> Response:
        return Response(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs),
                        media_type="application/x-pem-file", headers={"Cache-Control": _TRUST_CACHE})

    def der(cert: x509.Certificate) -> Response:
        return Response(cert.public_bytes(serialization.Encoding.DER), media_type="application/pkix-cert",
                        headers={"Cache-Control": _TRUST_CACHE})

    def crl(generation: int) -> Response:
        body = service().iaca_crl(generation).public_bytes(serialization.Encoding.DER)
        return Response(body, media_type="application/pkix-crl", headers={"Cache-Control": _CRL_CACHE})

    vical_crl_refusals = problems.merge(problems.refusals(
        (problems.UNKNOWN_VICAL_CA, "no VICAL CA of that generation"),
        (problems.VICAL_CA_ENDED, "the VICAL CA is past its notAfter: no CRL is issued for it"),
        (problems.VICAL_CA_WITHDRAWN, "the VICAL CA was withdrawn (a compromise rollover): its key signs no CRL"),
        (problems.SIGNER_KEY_DESTROYED, "the VICAL CA's key was destroyed (every VICAL signer it certified had "
                                        "ended) before final CRLs were signed (its final CRL is served for good "
                                        "otherwise): the CRL it signed last is served until an hour before its "
                                        "nextUpdate, none after")), _UNAVAILABLE)

    def vical_crl(generation: int) -> Response:
        body = service().vical_ca_crl(generation).public_bytes(serialization.Encoding.DER)
        return Response(body, media_type="application/pkix-crl", headers={"Cache-Control": _CRL_CACHE})

    @router.get("/trust/iaca.pem", response_class=Response,
                summary="Every IACA a reader needs now, the current one first (PEM bundle)",
                responses={200: {"content": {"application/x-pem-file": {}}, "headers": _TRUST_HEADERS}, **_UNAVAILABLE})
    def iaca_pem() -> Response:
        return pem(*service().trusted_iacas())

    @router.get("/trust/vical", response_class=Response,
                summary="Every IACA a reader needs now as a signed VICAL (ISO/IEC 18013-5 Annex C.1.7)",
                responses={200: {"content": {VICAL_MEDIA_TYPE: _BINARY}, "headers": _TRUST_HEADERS},
                           **_UNAVAILABLE})
    def vical() -> Response:
        return Response(service().vical(), media_type=VICAL_MEDIA_TYPE, headers={"Cache-Control": _TRUST_CACHE})

    @router.get("/trust/vical-ca.pem", response_class=Response,
                summary="The VICAL CAs a reader trusts for this issuer's VICALs, the current one first (PEM)",
                responses={200: {"content": {"application/x-pem-file": {}}, "headers": _TRUST_HEADERS},
                           **_UNAVAILABLE})
    def vical_ca() -> Response:
        return pem(*service().vical_cas())

    @router.get("/trust/vical-ca.crl", response_class=Response,
                summary="The CRL of the first VICAL CA generation: the VICAL signers it revoked (the CRL "
                        "distribution point its VICAL signers carry)",
                responses={200: {"content": {"application/pkix-crl": {}}, "headers": headers(Cache_Control=_CRL_CACHE)},
                           **vical_crl_refusals})
    def vical_ca_crl() -> Response:
        return vical_crl(1)

    @router.get("/trust/vical-ca-{generation}.crl", response_class=Response,
                summary="The CRL of VICAL CA generation n (the CRL distribution point its VICAL signers carry)",
                responses={200: {"content": {"application/pkix-crl": {}}, "headers": headers(Cache_Control=_CRL_CACHE)},
                           **vical_crl_refusals})
    def vical_ca_generation_crl(generation: VicalCaGeneration) -> Response:
        return vical_crl(generation)

    @router.get("/trust/iaca.der", response_class=Response, summary="The current IACA (DER)",
                responses={200: {"content": {"application/pkix-cert": {}}, "headers": _TRUST_HEADERS}, **_UNAVAILABLE})
    def iaca_der() -> Response:
        return der(service().iaca_certificate())

    @router.get("/trust/iaca.crl", response_class=Response,
                summary="The CRL of the first IACA generation (its certificates' CRL distribution point)",
                responses={200: {"content": {"application/pkix-crl": {}}, "headers": headers(Cache_Control=_CRL_CACHE)},
                           **crl_refusals})
    def iaca_crl() -> Response:
        return crl(1)

    @router.get("/trust/iaca-{generation}.pem", response_class=Response, summary="IACA generation n (PEM)",
                responses={200: {"content": {"application/x-pem-file": {}}, "headers": _TRUST_HEADERS},
                           **generation_refusals})
    def iaca_generation_pem(generation: Generation) -> Response:
        return pem(service().iaca_certificate(generation))

    @router.get("/trust/iaca-{generation}.der", response_class=Response, summary="IACA generation n (DER)",
                responses={200: {"content": {"application/pkix-cert": {}}, "headers": _TRUST_HEADERS},
                           **generation_refusals})
    def iaca_generation_der(generation: Generation) -> Response:
        return der(service().iaca_certificate(generation))

    @router.get("/trust/iaca-{generation}.crl", response_class=Response,
                summary="The CRL of IACA generation n (its certificates' CRL distribution point)",
                responses={200: {"content": {"application/pkix-crl": {}}, "headers": headers(Cache_Control=_CRL_CACHE)},
                           **crl_refusals})
    def iaca_generation_crl(generation: Generation) -> Response:
        return crl(generation)

    return router


def routers(service: Factory) -> list[APIRouter]:
    """Every public router of the mdoc side; ``service`` is a zero-argument factory."""
    return [status_router(service), trust_router(service)]
