"""The issuer's HTTP routers (mounted by the composition root, ``mcred.service``).

Routers take a zero-argument factory of the issuer object they serve, so the issuer never
learns how an installation is wired.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse


def problem(status: int, type_: str, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem+json response."""
    return JSONResponse({"type": type_, "title": title, "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")
