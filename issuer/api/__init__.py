"""The issuer's HTTP routers (mounted by the composition root, ``mcred.service``).

Routers take a zero-argument factory of the issuer object they serve, so the issuer never
learns how an installation is wired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi.responses import JSONResponse


def problem(status: int, type_: str, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem+json response. (FastAPI is imported here, not with the package:
    the command line reads :mod:`issuer.api.scopes` without loading a web framework.)"""
    from fastapi.responses import JSONResponse

    return JSONResponse({"type": type_, "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def headers(**described: str) -> dict:
    """The OpenAPI ``headers`` of a response that always carries each header named (keyword
    ``Cache_Control`` for ``Cache-Control``), a string described by its value: what a cache,
    a CDN or a client generated from the document reads (``ETag`` for ``If-None-Match``,
    ``Cache-Control`` for how long a copy is good)."""
    return {name.replace("_", "-"): {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in described.items()}
