"""Liveness and readiness of the service (``mcred serve``) for process managers and load
balancers (ARCHITECTURE.md: stateless API processes behind a load balancer).

* ``GET /healthz``: the process answers (no dependency is touched): ``200 {"status": "ok"}``.
* ``GET /readyz``: the process can serve: the database answers, its schema is at the
  code's newest revision (every party's Alembic head), the issuer key store opens (for
  ``MCRED_KEYSTORE=pkcs11``: the token is reachable and logged in), and so does the TSM
  master key (``MCRED_TSM_MASTER_KEY``: its file, or its key in the token, with its
  non-secret ``key_id``), and the reader's session key file is usable where it exists.
  ``200`` with each check,
  or ``503`` ``application/problem+json`` naming the checks that failed.

Both are public (no token): a probe carries none, and the answers name components and
exception types only, never data, URLs with credentials, key material or the server's
paths (the data directory is ``<home>``, :func:`issuer.api.problems.redact`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from issuer.api import problems
from mcred.api_models import Liveness, Readiness
from mcred.context import Context, master_key_store
from mcred.db import schema_status
from tsm.keys import master_key_path


def check_database(ctx: Context) -> str:
    """The dialect of a database that answers ``SELECT 1``."""
    engine = _engine(ctx)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return engine.dialect.name


def _engine(ctx: Context) -> Engine:
    """``ctx.engine``; a database that cannot be opened said by SQLAlchemy's own error, as
    before :class:`mcred.db.DatabaseUnavailable` named the URL: a probe's answer names none."""
    from mcred.db import DatabaseUnavailable

    try:
        return ctx.engine
    except DatabaseUnavailable as exc:
        raise exc.error from None


def check_schema(ctx: Context) -> str:
    """Raise unless every party's newest revision is applied."""
    applied, newest = schema_status(_engine(ctx))
    if applied != newest:
        missing = sorted(newest - applied)
        raise RuntimeError(f"schema not at the newest revision: missing {', '.join(missing) or '-'}")
    return f"{len(newest)} head(s) current"


def check_keystore(ctx: Context) -> str:
    """The key store's kind and key count (raises when it cannot open)."""
    labels = ctx.keystore.labels()
    return f"{type(ctx.keystore).__name__}, {len(labels)} key(s)"


def check_master_key(ctx: Context) -> str:
    """Where the TSM master key is and its ``key_id`` (raises when it cannot open: no token,
    a wrong PIN, a refused key). A key not made yet is reported, not made."""
    if master_key_store() == "pkcs11":
        from tsm.hsm import HsmMasterKey

        key = HsmMasterKey.existing()
        if key is None:
            return "PKCS#11 token: none yet (made at the first provisioning)"
        return key.describe()
    if not master_key_path(ctx.home).exists():
        return f"{master_key_path(ctx.home)}: none yet (made at the first provisioning)"
    return ctx.master_key.describe()


def check_reader_session_key(ctx: Context) -> str:
    """The key that seals the reader's sessions in the database (raises when the file is
    there but unusable); a key not made yet is reported, not made."""
    from mcred.present import reader_session_key_path, session_sealer

    path = reader_session_key_path(ctx.home)
    if not path.exists():
        return f"{path}: none yet (made at the first presentation)"
    session_sealer(path)
    return f"{path}, AES-256"


CHECKS: dict[str, Callable[[Context], str]] = {"database": check_database, "schema": check_schema,
                                                "keystore": check_keystore,
                                                "tsm-master-key": check_master_key,
                                                "reader-session-key": check_reader_session_key}


def readiness(checks: dict[str, Callable[[], str]], title: str) -> JSONResponse:
    """Run every check (each returns a detail or raises): ``200`` ``{"status": "ready",
    "checks"}``, or ``503`` problem+json naming those that failed. A check's exception is
    reported by type and first line, never raised."""
    results: dict[str, Any] = {}
    failed = []
    for name, check in checks.items():
        t0 = time.perf_counter()
        try:
            detail, ok = check(), True
        except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
            detail, ok = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}", False
            failed.append(name)
        results[name] = {"ok": ok, "detail": problems.redact(detail),  # no server path
                         "ms": round((time.perf_counter() - t0) * 1000, 1)}
    if failed:
        return JSONResponse({"type": "/problems/not-ready", "title": title, "status": 503,
                             "detail": f"not ready: {', '.join(failed)}", "checks": results},
                            status_code=503, media_type="application/problem+json")
    return JSONResponse({"status": "ready", "checks": results})


def health_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers", response_model=Liveness)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: database, schema, issuer key store, TSM master key",
                response_model=Any, responses={200: {"model": Readiness}, 503: {
                    "description": "/problems/not-ready: a dependency is not ready (checks: each, failed or not)"}})
    def readyz() -> JSONResponse:
        return readiness({name: functools.partial(check, ctx) for name, check in CHECKS.items()},
                         "Service not ready")

    return router
