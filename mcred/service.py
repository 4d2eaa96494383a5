"""The assembled HTTP service (``mcred serve``): every party's routers behind one app.

Parties expose plain ``fastapi.APIRouter`` objects and declare, per router, the scope a
caller needs (``None`` = public trust and revocation material). This module alone mounts
them and attaches authentication, so a route without a declared scope cannot exist
(deny by default, see tests/test_api_*.py and specs/api.md):

* every route of a :class:`Mount` with scope S depends on a bearer token carrying S
  (:mod:`issuer.api.auth`; ``operator`` implies every scope), public mounts on none;
* :func:`check_scopes` refuses an app in which any route was not declared through a mount
  (run by :func:`create_app` and again at startup, so a route added later also fails);
* errors are ``application/problem+json`` (:mod:`issuer.api.problems`), the parties' typed
  errors registered here, where the parties meet.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

from issuer.api import problems
from issuer.api.auth import SCOPES, Authenticator
from issuer.api.jobs import JobRunner
from mcred.context import Context

#: Routes FastAPI itself adds (the OpenAPI document and its viewers): public by design.
FRAMEWORK_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class UndeclaredRouteError(RuntimeError):
    """A route of the app was not mounted with a declared scope (deny by default)."""


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
    from issuer.api.tsa import tsa_router
    from mcred.api_routes import api_mounts
    from mcred.health import health_router
    from mcred.jpki_flow import jpki_issuer
    from mcred.mdoc_flow import mdoc_service
    from mcred.timestamps import time_stamp_authority

    return [  # the public material and the probes answer HEAD as well (answer_head)
        Mount(answer_head(health_router(ctx)), scope=None),
        *[Mount(answer_head(r), scope=None) for r in mdoc_routers(lambda: mdoc_service(ctx))],
        Mount(answer_head(jpki_router(lambda: jpki_issuer(ctx))), scope=None),
        Mount(answer_head(tsa_router(lambda: time_stamp_authority(ctx))), scope=None),
        *api_mounts(ctx),
    ]


def _register_party_errors() -> None:
    """The typed errors of the parties, answered as problems (the issuer's own are
    registered by :mod:`issuer.api.problems`; the kinds are :mod:`mcred.api_routes`', whose
    routes declare them)."""
    from mcred import api_routes as k
    from tsm import errors as te
    from wallet_sim.se.errors import PhoneNotFoundError, PhoneStateError, SeError, SeStateError

    problems.register(te.TsmError, k.TSM_ERROR)
    problems.register(te.MasterKeyError, k.TSM_MASTER_KEY)
    problems.register(te.LockBusyError, k.SE_BUSY)
    problems.register(te.JobInputError, k.TSM_JOB_INPUT)
    problems.register(SeError, k.SE_ERROR)
    problems.register(SeStateError, k.SE_STATE)
    problems.register(PhoneNotFoundError, problems.UNKNOWN_PHONE)
    problems.register(PhoneStateError, k.PHONE_STATE)
    from mcred.context import ConfigError

    problems.register(ConfigError, k.CONFIGURATION)
    try:
        from reader.errors import ReaderError
    except ImportError:  # pragma: no cover - reader not in this build
        pass
    else:
        problems.register(ReaderError, k.READER_REFUSED)
        from mcred.present import ReaderServeError

        problems.register(ReaderServeError, k.READER_UNAVAILABLE)
    try:
        from mcred.provision import HolderFileError, ProvisionError
    except ImportError:  # pragma: no cover - provisioning not in this build
        return
    problems.register(ProvisionError, k.PROVISIONING_REFUSED)
    problems.register(HolderFileError, k.HOLDER_INVALID)


def check_scopes(app: FastAPI) -> None:
    """Raise :class:`UndeclaredRouteError` unless every route came through a :class:`Mount`."""
    declared: dict[int, str | None] = app.state.route_scopes
    for m in app.state.mounted:  # routes added to a mounted router since it was included
        _tag(m)
    bad = []
    for route in app.router.routes:
        path = getattr(route, "path", "")
        if path in FRAMEWORK_PATHS and not isinstance(route, APIRoute):
            continue
        if id(route) not in declared:
            inner = getattr(route, "original_router", None)  # a lazily included router
            for r in (inner.routes if inner is not None else [route]):
                methods = ",".join(sorted(getattr(r, "methods", None) or ())) or "*"
                bad.append(f"{methods} {getattr(r, 'path', '?')}")
    if bad:
        raise UndeclaredRouteError("routes without a declared scope (mount them through "
                                   "mcred.service.mounts with a scope, or None for public "
                                   "material): " + "; ".join(bad))


def _tag(m: Mount) -> None:
    """Name the mount's scope in the OpenAPI document (``x-mcred-scope``, null = public)."""
    for r in m.router.routes:
        if isinstance(r, APIRoute) and (r.openapi_extra or {}).get("x-mcred-scope") != m.scope:
            r.openapi_extra = {**(r.openapi_extra or {}), "x-mcred-scope": m.scope}


def _include(app: FastAPI, auth: Authenticator, m: Mount) -> None:
    if m.scope is not None and m.scope not in SCOPES:
        raise UndeclaredRouteError(f"mount {m.prefix or '/'} declares unknown scope "
                                   f"{m.scope!r} (not one of {', '.join(SCOPES)} or None)")
    before = {id(r) for r in app.routes}
    deps = [] if m.scope is None else [Depends(auth.require(m.scope))]
    app.include_router(m.router, prefix=m.prefix, dependencies=deps)
    app.state.mounted.append(m)
    _tag(m)
    # Top-level entries this include added: the routes themselves (older FastAPI) or one
    # lazily included router (newer FastAPI); either way, declared with this scope.
    for r in app.router.routes:
        if id(r) not in before:
            app.state.route_scopes[id(r)] = m.scope


def answer_head(router: APIRouter, paths: Collection[str] | None = None) -> APIRouter:
    """``router`` with each of its GET routes (those of ``paths``, when given) answering HEAD
    as well (RFC 9110 9.3.2), so that a cache, a CDN or ``curl -I`` can look at a CRL, an
    OCSP answer, a status list or a certificate: the GET's endpoint, parameters,
    responses and headers, declared in the document as an operation of its own (its own
    operationId: FastAPI would give a route declared ``GET, HEAD`` one id for both). Called
    on the public material and the health probes only: a HEAD elsewhere is a 405, as the
    document says (a protected or one-time GET, a session's result, a request object, gains
    nothing from one and may not be repeated). :class:`HeadWithoutContentMiddleware` drops
    the body the endpoint makes."""
    heads = {r.path for r in router.routes if isinstance(r, APIRoute) and "HEAD" in r.methods}
    for route in list(router.routes):
        if (not isinstance(route, APIRoute) or "GET" not in route.methods or route.path in heads
                or (paths is not None and route.path not in paths)):
            continue
        twin = copy.copy(route)
        twin.methods = {"HEAD"}
        get_id = route.operation_id or route.unique_id
        twin.operation_id = f"{get_id.removesuffix('_get')}_head"
        router.routes.append(twin)
    return router


class HeadWithoutContentMiddleware:
    """A ``HEAD`` answered without content (RFC 9110 9.3.2): the routes :func:`answer_head`
    declared run their GET's endpoint, whose answer keeps the GET's status and headers
    (``Content-Length``, ``Content-Type``, ``Cache-Control``, ``ETag``); Starlette sends its
    body whatever the method, and this drops it. A route not declared for HEAD answers 405."""

    def __init__(self, app) -> None:  # noqa: ANN001 - an ASGI app
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_content(message) -> None:  # noqa: ANN001
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, without_content)


#: The methods a 405's ``Allow`` can name (RFC 9110 9.3 and PATCH, RFC 5789), in that order.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def allowed_methods(app, scope) -> list[str]:  # noqa: ANN001 - a Starlette app, an ASGI scope
    """Every method the app routes a request for ``scope``'s path to (of :data:`METHODS`):
    those a route matches fully, whichever route it is (``/trust/ds-rollover`` takes POST of
    its own and GET and HEAD of ``/trust/{filename}``)."""
    from starlette.routing import Match

    allowed = []
    for method in METHODS:
        probe = {"type": "http", "method": method, "headers": [], "query_string": b"",
                 **{k: scope[k] for k in ("path", "raw_path", "root_path") if k in scope}}
        if any(route.matches(dict(probe))[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


class AllowEveryMethodMiddleware:
    """A 405 names every method its path takes (RFC 9110 15.5.6: the ``Allow`` of a 405
    lists the target resource's supported methods). Starlette answers it from the first
    route whose path matches: ``HEAD /phones`` said ``Allow: POST`` though ``GET /phones``
    is a route as well, and a client took POST for the only method there. The body stays
    the problem the handlers made; only ``Allow`` is written anew, from the app's routes
    (:func:`allowed_methods`), so that it is the set the OpenAPI document declares."""

    def __init__(self, app) -> None:  # noqa: ANN001 - an ASGI app
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = dict(scope)  # the path as asked, before routing writes into the scope

        async def with_allow(message) -> None:  # noqa: ANN001
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(allowed_methods(asked["app"], asked)).encode("latin-1")
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow)]}
            await send(message)

        await self.app(scope, receive, with_allow)


DEFAULT_MAX_BODY = 1024 * 1024


def max_body_size() -> int:
    """The services' request body limit: ``$MCRED_MAX_BODY`` bytes, else 1 MiB. FastAPI
    counts a body as a route reads it and answers 413 past the limit (a larger
    ``Content-Length`` at the first read); routes that take more say so themselves."""
    raw = os.environ.get("MCRED_MAX_BODY", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_BODY


def create_app(ctx: Context | None = None, *, job_workers: int | None = None,
               extra_mounts: list[Mount] | None = None, seram_relay: bool | None = None,
               workflow_lease: float | None = None, housekeeping_interval: float | None = None) -> FastAPI:
    """The service for ``ctx``. ``extra_mounts`` (tests) go through the same checks.
    ``seram_relay``: GP SERAM sessions reachable through every process of the service
    (``tsm.seram_relay``); default: when ``mcred serve`` runs more than one.
    ``workflow_lease``: seconds the lease of a workflow run the API accepted lasts unless
    renewed (``issuer.handover.LEASE_SECONDS``; tests shorten it).
    ``housekeeping_interval``: seconds between the scheduled housekeeping runs
    (:class:`mcred.housekeeping.Housekeeper`, started and stopped with the app, in one process
    of the installation at a time); None or 0: none (``mcred serve`` and :func:`app_from_env`
    give it, 300 s by default)."""
    ctx = ctx or Context.open()
    ctx.se_roots  # noqa: B018 - a first-contact setting that cannot work stops the service now, named
    runner_box: list[JobRunner] = []
    relay_box: list = []
    from mcred.housekeeping import Housekeeper

    housekeeper = Housekeeper(ctx, housekeeping_interval) if housekeeping_interval else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        check_scopes(app)
        if runner_box:
            runner_box[0].start()
        if relay_box:
            relay_box[0].start()
        if housekeeper is not None:
            housekeeper.start()
        yield
        if housekeeper is not None:  # a task running is let finish; none starts after
            await asyncio.to_thread(housekeeper.stop)
        if relay_box:
            relay_box[0].stop()
        if runner_box:
            runner_box[0].shutdown(wait=False)

    app = FastAPI(title="mcred issuer service", version="0.1.0", lifespan=lifespan,
                  description="See specs/api.md. Bearer tokens from `mcred token create`.",
                  max_body_size=max_body_size(),  # counted as read: 413 past it (specs/api.md)
                  dependencies=[Depends(problems.refuse_unknown_query)])
    app.state.ctx = ctx
    app.state.housekeeper = housekeeper
    from mcred.mdoc_flow import age_over_setting

    age_over_setting()  # a setting that cannot work stops the server at its start, not at its first mdoc
    app.state.route_scopes = {}
    app.state.mounted = []
    _register_party_errors()
    problems.hide_path(ctx.home, "<home>")  # no answer names the server's data directory
    problems.install(app)
    app.add_middleware(HeadWithoutContentMiddleware)
    app.add_middleware(AllowEveryMethodMiddleware)
    auth = Authenticator(lambda: ctx.sessions)
    app.state.auth = auth
    workers = job_workers or int(os.environ.get("MCRED_JOB_WORKERS", "8"))
    runner = JobRunner(ctx.sessions, workers=workers)
    runner_box.append(runner)
    app.state.jobs = runner
    from issuer.handover import LEASE_SECONDS

    app.state.workflow_lease = workflow_lease or LEASE_SECONDS
    from mcred.metrics import Metrics, metrics_router

    metrics = Metrics(ctx)
    metrics.install(app)
    app.state.metrics = metrics
    from mcred.ota import SERAM_PREFIX
    from tsm.seram import SeramHub
    from tsm.seram_http import router as seram_router

    # the TSM's GP SERAM Remote Agent: phones reach it with a session id, their capability;
    # under several worker processes, through any of them (tsm.seram_relay)
    hub = app.state.seram_hub = SeramHub()
    app.state.seram_open = hub.open
    relay = None
    from mcred.api_routes import serve_workers

    if seram_relay if seram_relay is not None else serve_workers() > 1:
        from tsm.seram_relay import SeramRelay

        relay = SeramRelay(ctx.engine, hub, counted=lambda side: metrics.relayed.labels(side).inc())
        relay_box.append(relay)
        app.state.seram_open = relay.open
    app.state.seram_relay = relay
    seram = Mount(seram_router(hub, relay), scope=None, prefix=SERAM_PREFIX)
    for m in [*mounts(ctx), seram, Mount(metrics_router(metrics), scope="operator"), *(extra_mounts or [])]:
        _include(app, auth, m)
    check_scopes(app)
    return app


def tls_options(certfile: Path | None, keyfile: Path | None) -> dict[str, str]:
    """uvicorn's ``ssl_certfile`` / ``ssl_keyfile`` for ``--ssl-certfile`` / ``--ssl-keyfile``,
    checked before any worker starts: both or neither, each a readable PEM file, and the key
    the certificate's (ValueError naming what is wrong). Empty: plain HTTP."""
    if certfile is None and keyfile is None:
        return {}
    if certfile is None or keyfile is None:
        raise ValueError("--ssl-certfile and --ssl-keyfile go together")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"--ssl-certfile {certfile} / --ssl-keyfile {keyfile}: {exc}") from None
    return {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}


def app_from_env() -> FastAPI:
    """``uvicorn --factory mcred.service:app_from_env`` (one app per worker process). A
    setting, database or key store that cannot work is one ``error:`` line and exit 2, as
    from ``mcred serve``, not a traceback."""
    from mcred.fatal import unusable_exits
    from mcred.housekeeping import interval_from_env

    with unusable_exits():
        app = create_app(housekeeping_interval=interval_from_env())
    return app
