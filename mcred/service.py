"""The assembled HTTP service (``mcred serve``): every party's routers behind one app.

Parties expose plain ``fastapi.APIRouter`` objects and declare, per router, the scope a
caller needs (``None`` = public trust and revocation material). This module alone mounts
them and attaches authentication, so a route without a declared scope cannot exist
(deny by default, see tests/test_api_*.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, FastAPI

from mcred.context import Context


@dataclass(frozen=True)
class Mount:
    router: APIRouter
    #: operator | issuer | tsm | reader, or None for public material.
    scope: str | None
    prefix: str = ""


def mounts(ctx: Context) -> list[Mount]:
    """Every router of the service, with its scope. Parties add theirs here."""
    from issuer.api.jpki import jpki_router
    from issuer.api.mdoc import routers as mdoc_routers
    from mcred.cli.mdoc_issue_cmds import mdoc_service
    from mcred.jpki_flow import jpki_issuer

    return [
        *[Mount(r, scope=None) for r in mdoc_routers(lambda: mdoc_service(ctx))],
        Mount(jpki_router(lambda: jpki_issuer(ctx)), scope=None),
    ]


def create_app(ctx: Context | None = None) -> FastAPI:
    ctx = ctx or Context.open()
    app = FastAPI(title="mcred issuer service", version="0.1.0")
    app.state.ctx = ctx
    for m in mounts(ctx):
        app.include_router(m.router, prefix=m.prefix)
    return app
