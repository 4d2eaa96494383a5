"""Errors of the HTTP API as ``application/problem+json`` (RFC 9457).

Every error the service answers has a stable ``type`` URI (``/problems/<slug>``, relative to
the service, RFC 9457 3.1.1), a ``title`` that names the class of error, the HTTP
``status`` and a ``detail`` for this occurrence. Sources of errors, and what they become:

* request validation (FastAPI's ``RequestValidationError``): 422 ``/problems/validation``,
  with the offending fields in ``errors`` (location + message, never the input value);
* ``HTTPException`` raised by routes and by the auth dependency: its status, a type per
  status (401 ``/problems/unauthenticated`` keeps its ``WWW-Authenticate`` header, 403
  ``/problems/forbidden``, 404 ``/problems/not-found``, 405 ``/problems/method-not-allowed``);
  routes may raise :class:`ProblemException` for a precise type;
* the parties' typed errors, registered with :func:`register_error` (class -> status,
  slug, title; the most specific registered class of the exception's MRO wins), their
  message becomes the detail;
* the database not answering (SQLAlchemy's ``OperationalError``, ``InterfaceError`` or pool
  ``TimeoutError``: connection refused or lost, a timeout, a lock not granted): 503
  ``/problems/database-unavailable`` with ``Retry-After``, a fixed detail (the driver's
  message carries SQL, parameters or the server's address), the error's class in the log;
* a JSON body read strictly (:class:`StrictJsonMiddleware`): a repeated member name 422
  ``/problems/validation`` naming it, a body not UTF-8, too deep, with too long an integer
  or ``NaN`` 400 ``/problems/malformed-json`` saying which;
* anything else: 500 ``/problems/internal-error`` with a fixed detail; the traceback goes
  to the log, never to the client (:class:`CatchAllMiddleware`).

No answer names a file of the server: a typed error's message may (``cannot read SE image
/srv/mcred/phones/ph-1/se.cbor``, for the command line), so every detail goes through
:func:`redact`, which writes the directories the composition root declared with
:func:`hide_path` as their placeholder (``<home>/phones/ph-1/se.cbor``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MEDIA_TYPE = "application/problem+json"
PREFIX = "/problems/"
log = logging.getLogger("mcred.api")


@dataclass(frozen=True)
class ProblemType:
    """One class of error: its status, ``type`` slug and title."""

    status: int
    slug: str
    title: str

    @property
    def uri(self) -> str:
        return PREFIX + self.slug


VALIDATION = ProblemType(422, "validation", "Request failed validation")
UNAUTHENTICATED = ProblemType(401, "unauthenticated", "Bearer token missing or not valid")
FORBIDDEN = ProblemType(403, "forbidden", "Token lacks the scope this endpoint needs")
NOT_FOUND = ProblemType(404, "not-found", "Not found")
INTERNAL = ProblemType(500, "internal-error", "Internal error")
NOT_IMPLEMENTED = ProblemType(501, "not-implemented", "Not implemented in this build")
CONFLICT = ProblemType(409, "conflict", "Conflict with the current state")
BAD_REQUEST = ProblemType(400, "bad-request", "Bad request")
DATABASE_UNAVAILABLE = ProblemType(503, "database-unavailable", "Database unavailable")
MALFORMED_JSON = ProblemType(400, "malformed-json", "Request body is not JSON this service reads")

_BY_STATUS = {p.status: p for p in (VALIDATION, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, INTERNAL,
                                    NOT_IMPLEMENTED, CONFLICT, BAD_REQUEST)}
_BY_STATUS[405] = ProblemType(405, "method-not-allowed", "Method not allowed")
_BY_STATUS[413] = ProblemType(413, "too-large", "Request body too large")
_BY_STATUS[415] = ProblemType(415, "unsupported-media-type", "Unsupported media type")


def for_status(status: int) -> ProblemType:
    """The problem type the service uses for a bare HTTP status."""
    return _BY_STATUS.get(status) or ProblemType(status, f"http-{status}", "HTTP error")


class ProblemException(Exception):
    """Raised by a route to answer a precise problem."""

    def __init__(self, kind: ProblemType, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.extra = kind, detail, extra


#: Server directories no answer names: path -> the placeholder written instead (hide_path).
_HIDDEN: dict[str, str] = {}
_hidden_re: re.Pattern[str] | None = None


def hide_path(path: Any, placeholder: str) -> None:
    """Answer ``path`` (a directory of the server: the data directory) and what it resolves
    to as ``placeholder`` in every problem detail, job error and probe (:func:`redact`)."""
    global _hidden_re
    from pathlib import Path

    for p in {str(path), str(Path(path).resolve())}:
        p = p.rstrip("/")
        if len(p) > 1 and p not in _HIDDEN:
            _HIDDEN[p] = placeholder
            _hidden_re = None


def redact(text: str) -> str:
    """``text`` with each hidden directory (a whole path component, the longest first)
    written as its placeholder."""
    global _hidden_re
    if not _HIDDEN or not isinstance(text, str):
        return text
    if _hidden_re is None:
        alternatives = "|".join(re.escape(p) for p in sorted(_HIDDEN, key=len, reverse=True))
        _hidden_re = re.compile(f"(?:{alternatives})(?![^/\\s'\":;,)\\]}}])")
    return _hidden_re.sub(lambda m: _HIDDEN[m.group(0)], text)


def problem_response(kind: ProblemType, detail: str, headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    body = {"type": kind.uri, "title": kind.title, "status": kind.status, "detail": redact(detail),
            **extra}
    return JSONResponse(body, status_code=kind.status, media_type=MEDIA_TYPE, headers=headers)


#: The parties' typed errors: class -> problem type (filled by :func:`register_error`).
_ERRORS: dict[type[BaseException], ProblemType] = {}
_issuer_registered = False


def register_error(cls: type[BaseException], status: int, slug: str, title: str) -> None:
    """Answer ``cls`` (and subclasses without a registration of their own) as a problem."""
    _ERRORS[cls] = ProblemType(status, slug, title)


def _registered(exc: BaseException) -> ProblemType | None:
    for klass in type(exc).__mro__:
        if klass in _ERRORS:
            return _ERRORS[klass]
    return None


#: The issuer's typed errors as answered (registered by :func:`_register_issuer_errors`), for
#: the routes to declare (:func:`refusals`).
REVOCATION_REFUSED = ProblemType(400, "revocation-refused", "Revocation request refused")
UNKNOWN_PHONE = ProblemType(404, "unknown-phone", "Unknown phone")
WORKFLOW_ERROR = ProblemType(409, "workflow-error", "Workflow cannot be created or advanced")
UNKNOWN_WORKFLOW = ProblemType(400, "unknown-workflow", "Unknown workflow kind")
STEP_FAILED = ProblemType(409, "workflow-step-failed", "Workflow step failed")
WORKFLOW_BUSY = ProblemType(409, "workflow-busy", "Workflow is being run by another run")
JPKI_ERROR = ProblemType(409, "jpki-error", "JPKI issuer refused")
CA_NOT_SET_UP = ProblemType(503, "ca-not-set-up", "CA not set up")
UNKNOWN_CREDENTIAL = ProblemType(404, "unknown-credential", "Unknown credential")
PROOF_OF_POSSESSION = ProblemType(400, "proof-of-possession", "Proof of possession failed")
MDOC_ERROR = ProblemType(409, "mdoc-error", "mdoc issuer refused")
UNKNOWN_STATUS_LIST = ProblemType(404, "unknown-status-list", "Unknown status list")
MDOC_KEYS_MISSING = ProblemType(503, "mdoc-keys-missing", "mdoc issuer keys not set up")
UNKNOWN_SIGNER = ProblemType(404, "unknown-signer", "Unknown signer certificate")
UNKNOWN_IACA = ProblemType(404, "unknown-iaca", "Unknown IACA generation")
IACA_ENDED = ProblemType(410, "iaca-ended", "IACA generation ended")
IACA_WITHDRAWN = ProblemType(410, "iaca-withdrawn", "IACA generation revoked (out of trust)")
UNKNOWN_VICAL_CA = ProblemType(404, "unknown-vical-ca", "Unknown VICAL CA generation")
VICAL_CA_ENDED = ProblemType(410, "vical-ca-ended", "VICAL CA generation ended")
VICAL_CA_WITHDRAWN = ProblemType(410, "vical-ca-withdrawn", "VICAL CA generation withdrawn (out of trust)")
IACA_ALREADY_STAGED = ProblemType(409, "iaca-already-staged", "A next IACA generation is already staged")
VICAL_CA_ALREADY_STAGED = ProblemType(409, "vical-ca-already-staged", "A next VICAL CA generation is already staged")
ROOT_ALREADY_STAGED = ProblemType(409, "root-already-staged", "A next root generation is already staged")
SIGNER_REVOCATION_REFUSED = ProblemType(400, "signer-revocation-refused", "Signer revocation refused")
KEYSTORE_ERROR = ProblemType(503, "keystore-error", "Issuer keystore unavailable")
KEY_NOT_FOUND = ProblemType(503, "key-not-found", "Issuer key not found")
SIGNER_KEY_DESTROYED = ProblemType(410, "signer-key-destroyed", "The signer's private key was destroyed")
SIGNER_STILL_SIGNING = ProblemType(409, "signer-still-signing",
                                   "Key not destroyed: the signer signs now (or, staged, will)")
CA_DUTIES_REMAIN = ProblemType(409, "ca-duties-remain",
                               "Key not destroyed: the retired CA still signs for certificates it issued")


def register(cls: type[BaseException], kind: ProblemType) -> None:
    """:func:`register_error` of a problem type."""
    _ERRORS[cls] = kind


def _register_issuer_errors() -> None:
    """The issuer's own errors (other parties' are registered by the composition root)."""
    from issuer import key_destruction as kd
    from issuer.handover import StepFailed, UnknownWorkflow, WorkflowBusy, WorkflowError
    from issuer.jpki import errors as je
    from issuer.keystore import KeyNotFound, KeyStoreError
    from issuer.mdoc import errors as me
    from issuer.revocation import RevocationError, UnknownPhone
    from issuer.tsa import TsaRootAlreadyStaged, UnknownTsaKey

    register(RevocationError, REVOCATION_REFUSED)
    register(UnknownPhone, UNKNOWN_PHONE)
    register(WorkflowError, WORKFLOW_ERROR)
    register(UnknownWorkflow, UNKNOWN_WORKFLOW)
    register(StepFailed, STEP_FAILED)
    register(WorkflowBusy, WORKFLOW_BUSY)
    register(je.IssuerJpkiError, JPKI_ERROR)
    register(je.CaNotSetUp, CA_NOT_SET_UP)
    register(je.UnknownCredential, UNKNOWN_CREDENTIAL)
    register(je.ProofOfPossessionError, PROOF_OF_POSSESSION)
    register(me.IssuerMdocError, MDOC_ERROR)
    register(me.UnknownPhone, UNKNOWN_PHONE)
    register(me.UnknownStatusList, UNKNOWN_STATUS_LIST)
    register(me.MdocKeysMissing, MDOC_KEYS_MISSING)
    register(me.UnknownSigner, UNKNOWN_SIGNER)
    register(me.UnknownIaca, UNKNOWN_IACA)
    register(me.IacaEnded, IACA_ENDED)
    register(me.IacaWithdrawn, IACA_WITHDRAWN)
    register(me.IacaAlreadyStaged, IACA_ALREADY_STAGED)
    register(me.UnknownVicalCa, UNKNOWN_VICAL_CA)
    register(me.VicalCaEnded, VICAL_CA_ENDED)
    register(me.VicalCaWithdrawn, VICAL_CA_WITHDRAWN)
    register(me.VicalCaAlreadyStaged, VICAL_CA_ALREADY_STAGED)
    register(me.SignerRevocationError, SIGNER_REVOCATION_REFUSED)
    register(me.SignerKeyDestroyed, SIGNER_KEY_DESTROYED)
    register(me.SignerStillSigning, SIGNER_STILL_SIGNING)
    register(me.CaDutiesRemain, CA_DUTIES_REMAIN)
    # the JPKI's and the TSA's keys (issuer.key_destruction): their own classes first, since
    # a JPKI error's base (IssuerJpkiError) comes before the common one in its MRO
    register(kd.KeyDestroyed, SIGNER_KEY_DESTROYED)
    register(kd.SignerStillSigning, SIGNER_STILL_SIGNING)
    register(kd.CaDutiesRemain, CA_DUTIES_REMAIN)
    register(je.RootKeyDestroyed, SIGNER_KEY_DESTROYED)
    register(je.UnknownJpkiKey, UNKNOWN_SIGNER)
    register(UnknownTsaKey, UNKNOWN_SIGNER)
    register(je.JpkiRootAlreadyStaged, ROOT_ALREADY_STAGED)
    register(TsaRootAlreadyStaged, ROOT_ALREADY_STAGED)
    register(KeyStoreError, KEYSTORE_ERROR)
    register(KeyNotFound, KEY_NOT_FOUND)


def problem_of(exc: BaseException) -> ProblemType:
    """The problem type ``exc`` is answered as (the registered class of its MRO; the database's
    unavailability; else the internal error): what a failed job names beside its class."""
    _ensure_issuer_registered()
    kind = _registered(exc)
    if kind is not None:
        return kind
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return DATABASE_UNAVAILABLE
    return INTERNAL


def _ensure_issuer_registered() -> None:
    global _issuer_registered
    if not _issuer_registered:
        _register_issuer_errors()
        _issuer_registered = True


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append({"location": loc, "message": str(err.get("msg", "invalid"))})
    return out


def refuse_unknown_query(request: Request) -> None:
    """A dependency of every route (``FastAPI(dependencies=...)``): a route that takes query
    parameters refuses one it does not know, 422 naming it and the ones it takes. An ignored
    misspelt filter widened the answer silently (``GET /credentials?phone=X`` listed every
    holder's credentials: the filter is ``phone_id``). A route that takes none ignores them
    (a cache-busting parameter on a CRL or a certificate)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if known and unknown:
        takes = ", ".join(sorted(known))
        raise RequestValidationError([{"loc": ("query", name), "type": "extra_forbidden",
                                       "msg": f"unknown query parameter (this route takes {takes})"}
                                      for name in unknown[:8]])


def _query_names(dependant) -> set[str]:  # noqa: ANN001 - fastapi.dependencies.models.Dependant
    """The query parameter names a route's dependant takes, its sub-dependencies' included
    (a parameter declared as a model takes its fields' names)."""
    from pydantic import BaseModel

    names: set[str] = set()
    todo = [dependant]
    while todo:
        d = todo.pop()
        for field in d.query_params:
            model = getattr(field, "type_", None) or getattr(getattr(field, "field_info", None), "annotation", None)
            if isinstance(model, type) and issubclass(model, BaseModel):
                names.update(f.alias or n for n, f in model.model_fields.items())
            else:
                names.add(field.alias)
        todo.extend(d.dependencies)
    return names


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors) or "invalid request"
    return problem_response(VALIDATION, detail, errors=errors)


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else for_status(exc.status_code).title
    return problem_response(for_status(exc.status_code), detail, headers=exc.headers)


async def _on_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemException)
    return problem_response(exc.kind, exc.detail, **exc.extra)


#: Seconds a client should wait before trying again after a 503 of the database.
RETRY_AFTER = 1


async def _on_database(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                type(getattr(exc, "orig", None) or exc).__name__)
    return problem_response(DATABASE_UNAVAILABLE, "the database did not answer (connection refused "
                            "or lost, a timeout, or a lock not granted); try again",
                            headers={"Retry-After": str(RETRY_AFTER)})


async def _on_typed(_request: Request, exc: Exception) -> JSONResponse:
    kind = _registered(exc)
    if kind is None:  # pragma: no cover - only registered classes reach here
        raise exc
    if kind.status >= 500:
        log.warning("%s answered as %s: %s", type(exc).__name__, kind.status, exc)
    return problem_response(kind, str(exc) or kind.title)


class CatchAllMiddleware:
    """The last line: an exception no handler took becomes a 500 problem, traceback logged.

    A pure ASGI middleware (inside Starlette's ServerErrorMiddleware, which would re-raise
    after answering), so nothing escapes to the server and no stack trace reaches a client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def _send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = problem_response(INTERNAL, "the service failed to answer this request; "
                                        "the operator's log has the details")
            await response(scope, receive, send)


class TooLargeAsProblemMiddleware:
    """Starlette answers a body over ``max_body_size`` that its Content-Length announces with
    a plain-text 413 ("Content Too Large") before any handler of ours runs; this turns that
    answer into the 413 problem every other refusal of a large body is (RFC 9457), so that
    a client reads one error format whatever the way its body was too large."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def _send(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                media = dict(message.get("headers") or []).get(b"content-type", b"")
                if not media.startswith(MEDIA_TYPE.encode()):
                    replaced = True
                    await problem_response(for_status(413), "the request body is over this route's size limit "
                                           "(MCRED_MAX_BODY; specs/api.md)")(scope, receive, send)
                    return
            if replaced:  # the plain text's body: already answered
                return
            await send(message)

        await self.app(scope, receive, _send)


class NulInUrlMiddleware:
    """A NUL character in the path or the query (``%00``) is answered 400 before any route
    runs. No parameter of these services takes one, and PostgreSQL refuses a string holding
    one in any statement (SQLite does not), so a lookup by such a value was a 500 there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"")
            if "\x00" in scope.get("path", "") or b"\x00" in query or b"%00" in query:
                response = problem_response(BAD_REQUEST, "the request URL holds a NUL character (%00), "
                                            "which no parameter of this service takes")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyRefused(StarletteHTTPException):
    """A JSON request body refused by :class:`StrictJsonMiddleware` (an ``HTTPException``,
    so that FastAPI passes it on from its body reading rather than answering its generic
    "error parsing the body")."""

    def __init__(self, refused: Any) -> None:
        super().__init__(status_code=422 if refused.kind == "duplicate" else 400, detail=str(refused))
        self.refused = refused


async def _on_body_refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyRefused)
    refused = exc.refused
    if refused.kind == "duplicate":
        location = ".".join(str(p) for p in ("body", *refused.path))
        return problem_response(VALIDATION, f"{location}: {refused.detail}",
                                errors=[{"location": location, "message": refused.detail}])
    return problem_response(MALFORMED_JSON, refused.detail)


def _is_json(scope: Scope) -> bool:
    """FastAPI's rule for a body it parses as JSON: ``application/json`` or ``application/*+json``."""
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (media.startswith(b"application/")
                                                      and media.endswith(b"+json"))
    return False


class StrictJsonMiddleware:
    """Every JSON request body of the service read strictly (:mod:`protocols.json_strict`)
    as the route reads it: a member name given twice is a 422 naming it, a body that is not
    UTF-8 without a byte order mark, nests deeper than ``MAX_DEPTH``, holds an integer longer
    than Python converts or ``NaN`` a 400 ``/problems/malformed-json`` saying which. The
    check runs on the last chunk the route receives, inside FastAPI's body limit (so a
    route's own larger limit still holds), before the route's own parse sees the bytes; a
    text that is not JSON at all is left to that parse (422 ``validation``, or the route's
    own refusal). One place for both services (:func:`install`), whatever the route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        from protocols.json_strict import JsonRefused, loads

        chunks: list[bytes] = []

        async def strict_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = b"".join(chunks)
                    chunks.clear()
                    if body:
                        try:
                            loads(body)
                        except JsonRefused as refused:
                            if refused.kind != "syntax":
                                raise BodyRefused(refused) from None
            return message

        await self.app(scope, strict_receive, send)


#: The problem+json body (RFC 9457) as the OpenAPI document describes it.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Problem",
    "description": "RFC 9457 problem details (specs/api.md, \"Errors\")",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "/problems/<slug>, stable"},
        "title": {"type": "string", "description": "the class of error"},
        "status": {"type": "integer", "description": "the HTTP status"},
        "detail": {"type": "string", "description": "this occurrence"},
        "errors": {"type": "array", "description": "validation (422): the members refused",
                   "items": {"type": "object", "required": ["location", "message"],
                             "properties": {"location": {"type": "string"},
                                            "message": {"type": "string"}}}},
    },
    "additionalProperties": True,
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_CONTENT = {MEDIA_TYPE: {"schema": _PROBLEM_REF}}
#: The one generic answer of the service's own failure, declared once (``components/responses``)
#: and referred to by every operation.
INTERNAL_ERROR_RESPONSE = {"description": "the service failed (/problems/internal-error): a fixed detail, "
                                          "the traceback in the operator's log; on the GP SERAM routes under "
                                          "several workers, /problems/seram-relay-failed: the request relayed to "
                                          "the process holding the session failed there (the error's class in "
                                          "the detail)",
                           "content": _PROBLEM_CONTENT}
_INTERNAL_REF = {"$ref": "#/components/responses/InternalError"}


def refusals(*kinds: ProblemType | tuple[ProblemType, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route's own refusals, by status: each a problem type, or a type
    and when it is answered; the description names every type of the status, so that a
    client generated from the document knows what a 409 of this route means. The content
    (``application/problem+json``, the ``Problem`` schema) is filled in by
    :func:`document_problems`."""
    out: dict[int | str, dict[str, Any]] = {}
    for item in kinds:
        kind, when = item if isinstance(item, tuple) else (item, item.title)
        entry = out.setdefault(kind.status, {"description": ""})
        line = f"{kind.uri}: {when}"
        entry["description"] = f"{entry['description']}; {line}" if entry["description"] else line
    return out


def merge(*responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of several declarations at once (descriptions of one status joined)."""
    out: dict[int | str, dict[str, Any]] = {}
    for declared in responses:
        for status, entry in declared.items():
            if status in out and "description" in entry and out[status].get("description"):
                out[status] = {**out[status], **entry,
                               "description": f"{out[status]['description']}; {entry['description']}"}
            else:
                out[status] = {**out.get(status, {}), **entry}
    return out


def _also(responses: dict[str, Any], status: str, why: str) -> None:
    """Declare ``status`` for ``why`` beside what the route itself declared for it."""
    entry = responses.setdefault(status, {"description": why})
    text = entry.get("description") or ""
    if why not in text:
        entry["description"] = f"{text}; {why}" if text else why


_JSON_MEDIA = re.compile(r"^application/(?:[^/;]+\+)?json$")


def document_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document ``doc`` with its refusals as they are answered: each operation
    declares every status it can answer, nothing else (no ``default``), so that a client
    generated from the document knows them all, and the fuzz's status conformance fails on
    any other. Every error response is ``application/problem+json`` of the ``Problem``
    schema (FastAPI documents its 422 as a JSON ``HTTPValidationError`` this service never
    sends). Beside the refusals a route declares itself (:func:`refusals`), those that
    follow from the operation's shape, answered before the route runs:

    * protected (a ``security`` requirement): 401, 403, and 503 ``database-unavailable`` (the
      token is looked up in the database on every request);
    * a path or query parameter: 400 ``bad-request`` (a NUL in the URL, ``NulInUrlMiddleware``)
      and 422 ``validation``; a path parameter: 404 (no route matches a value holding ``/``);
    * a request body: 413 ``too-large``; a JSON one, read strictly first
      (:class:`StrictJsonMiddleware`): 400 ``malformed-json`` and 422 (a member given twice);
    * every operation: 500, the one generic ``InternalError`` response (``components/responses``).
    """
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components.setdefault("responses", {})["InternalError"] = INTERNAL_ERROR_RESPONSE
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            responses.pop("default", None)
            if responses.get("422", {}).get("description") == "Validation Error":  # FastAPI's own
                responses["422"]["description"] = ""
            where = {p.get("in") for p in op.get("parameters", ())}
            if op.get("security"):
                _also(responses, "401", "/problems/unauthenticated: no bearer token, or not a valid one "
                                        "(WWW-Authenticate names the scope)")
                _also(responses, "403", "/problems/forbidden: the token lacks the operation's scope (x-mcred-scope)")
                _also(responses, "503", "/problems/database-unavailable: the database did not answer (Retry-After)")
            if where & {"path", "query"}:
                _also(responses, "400", "/problems/bad-request: a NUL (%00) in the URL")
                _also(responses, "422", "/problems/validation: the request refused (errors: which members)")
            if "path" in where:
                _also(responses, "404", "/problems/not-found: no route for this path")
            body = op.get("requestBody")
            if body:
                _also(responses, "413", "/problems/too-large: the body is over the route's size limit")
                if any(_JSON_MEDIA.match(m) for m in body.get("content", {})):
                    _also(responses, "400", "/problems/malformed-json: not UTF-8, too deep, too long an "
                                            "integer, NaN")
                    _also(responses, "422", "/problems/validation: the request refused (errors: which members)")
            if "422" in responses:
                _also(responses, "422", "/problems/validation: the request refused (errors: which members)")
            responses["500"] = _INTERNAL_REF
            for status, response in responses.items():
                if status[:1] in ("4", "5") and isinstance(response, dict) and "$ref" not in response:
                    content = response.get("content") or {}
                    if not content or set(content) == {"application/json"}:
                        response["content"] = _PROBLEM_CONTENT
    schemas = components["schemas"]
    text = str(doc.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}'" not in text:
            schemas.pop(unused, None)
    return doc


def _document(app: FastAPI) -> None:
    """Make ``app.openapi()`` (``/openapi.json``) describe errors by :func:`document_problems`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Attach every problem+json handler to ``app`` (call before serving)."""
    _ensure_issuer_registered()
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(ProblemException, _on_problem)
    app.add_exception_handler(BodyRefused, _on_body_refused)
    from sqlalchemy import exc as sa_exc

    for cls in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
        app.add_exception_handler(cls, _on_database)
    for cls in list(_ERRORS):
        app.add_exception_handler(cls, _on_typed)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(NulInUrlMiddleware)
    app.add_middleware(StrictJsonMiddleware)
    _document(app)
    # outermost: FastAPI's own body limit stands outside every middleware added above
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: TooLargeAsProblemMiddleware(build())
