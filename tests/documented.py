"""Real answers against the OpenAPI document of the app that sent them: the schema-driven
fuzz (tests/test_api_fuzz.py) sees mostly refusals and empty lists, so the tests that walk
a real flow (a valid presentation, a signed document, a provisioned phone) hand the bodies
they get to :func:`assert_documented`, which runs schemathesis's own response checks
(status, media type, body schema) on them."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: The pages FastAPI serves beside the operations: the document itself is no operation of it.
from mcred.service import FRAMEWORK_PATHS


def assert_documented(app: Any, method: str, path: str, response: httpx.Response) -> None:  # noqa: ANN401
    """``response`` (to ``method path``, ``path`` as the document names it: ``/sessions/{sid}/result``)
    is one the document of ``app`` (a FastAPI app) declares; raises with schemathesis's
    report otherwise."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema[path][method.upper()].validate_response(response)


def json_response(body: Any, status: int = 200, method: str = "GET", url: str = "http://test/") -> httpx.Response:  # noqa: ANN401
    """A JSON body a test got from a helper (not the response itself) as the response it was."""
    response = httpx.Response(status, json=body, request=httpx.Request(method, url))
    response.elapsed = dt.timedelta(0)  # schemathesis asks how long it took
    return response


#: What every refusal is: an RFC 9457 problem (specs/api.md "Errors").
PROBLEM_MEDIA_TYPE = "application/problem+json"


def assert_refusal_documented(operation: Any, response: httpx.Response) -> None:  # noqa: ANN401
    """``response``, a 4xx or 5xx answer to the schemathesis ``operation``, is a status the
    operation declares (``500`` by the shared ``InternalError``) and a problem document:
    ``application/problem+json``, a ``type`` of ours (``/problems/<slug>``), a ``title``,
    the ``status`` it was answered with and a ``detail``."""
    label = f"{operation.label} {response.status_code}"
    declared = operation.definition.raw.get("responses", {})
    assert str(response.status_code) in declared, (
        f"{label}: a refusal the document does not declare (it declares {sorted(declared)}): {response.text[:300]}")
    media = response.headers.get("content-type", "").split(";")[0].strip()
    assert media == PROBLEM_MEDIA_TYPE, f"{label}: {media!r}, not a problem document: {response.text[:300]}"
    body = response.json()
    assert isinstance(body, dict), f"{label}: {body!r}"
    assert isinstance(body.get("type"), str) and body["type"].startswith("/problems/"), f"{label}: {body}"
    assert isinstance(body.get("title"), str) and isinstance(body.get("detail"), str), f"{label}: {body}"
    assert body.get("status") == response.status_code, f"{label}: {body}"


#: What a client generated from the document relies on, as the fuzz checks it
#: (tests/test_api_fuzz.py): the status is one the operation declares, the media type one it
#: names for that status (``application/ocsp-response``, ``application/pkix-crl``,
#: ``application/statuslist+cwt`` as much as JSON), the body valid against that status's
#: schema, and every header it declares required (``ETag``, ``Cache-Control``) present.
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance,
               response_headers_conformance]



def raw_path(url: httpx.URL) -> str:
    """``url``'s path as sent, percent-escapes kept (an OCSP GET's base64 holds ``%2F``: the
    decoded ``/`` would split its one path parameter in two), without the query."""
    return url.raw_path.decode("ascii").split("?", 1)[0]


def case_for(operation: Any, path: str) -> Any:  # noqa: ANN401
    """A schemathesis case of ``operation`` for the request path ``path`` (its path
    parameters read back from it), to run the :data:`CONFORMANCE` checks on an answer."""
    parts = re.split(r"{([^}/]+)}", operation.path)  # literal parts at even places, names at odd
    names = parts[1::2]
    pattern = "".join("([^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts))
    match = re.fullmatch(pattern, path)
    values = match.groups() if match else ("x",) * len(names)
    return operation.Case(path_parameters=dict(zip(names, values, strict=True)))


def _check(schema: Any, response: httpx.Response, seen: list[str], *, refusals: bool = True,  # noqa: ANN401
           path: str | None = None) -> None:
    """One answer held to ``schema`` (:func:`check_every_answer`); ``path``: the request's,
    as the app sees it (without the prefix it is served under), percent-escapes kept."""
    status, method = response.status_code, response.request.method
    path = raw_path(response.request.url) if path is None else path
    if status >= 400 and not refusals:
        return
    operation = schema.find_operation_by_path(method, path)
    if operation is not None and operation.method.upper() != method:
        # schemathesis's router takes a GET for a HEAD: a HEAD is documented only where the
        # document declares it (mcred.service.answer_head), anywhere else it is a 405
        declared = method.lower() in schema.raw_schema["paths"].get(operation.path, {})
        operation = schema[operation.path][method] if declared else None
    if operation is None:
        # no route (a 404 or 405 of the app's own), or the document itself: nothing declares it
        assert status in (404, 405) or path in FRAMEWORK_PATHS, f"{method} {path} {status}: not in the document"
        return
    response.read()
    # a HEAD (the GET's endpoint, mcred.service.answer_head) has the GET's status and headers,
    # no body
    if status >= 400 and method != "HEAD":
        assert_refusal_documented(operation, response)
    checks = [c for c in CONFORMANCE if method != "HEAD" or c is not response_schema_conformance]
    case_for(operation, path).validate_response(response, checks=checks)
    seen.append(f"{operation.label} {status}")


def check_every_answer(client: httpx.Client, app: Any, *, refusals: bool = True,  # noqa: ANN401
                       seen: list[str] | None = None) -> list[str]:
    """From now on, every answer ``client`` gets from ``app`` to an operation of ``app``'s
    document is held to it (the operation found from the request's path): its status,
    media type, body and declared headers (:data:`CONFORMANCE`), whatever the media type, and
    (``refusals``) every 4xx or 5xx answer to :func:`assert_refusal_documented` as well; an
    answer (not a 404 or 405) to a path the document does not name fails. The list returned
    names the operations checked, as ``METHOD /template 200`` (``seen``, when given)."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    seen = [] if seen is None else seen

    def hook(response: httpx.Response) -> None:
        _check(schema, response, seen, refusals=refusals)

    client.event_hooks["response"].append(hook)
    return seen


def check_every_test_client(monkeypatch: Any) -> list[str]:  # noqa: ANN401
    """:func:`check_every_answer` on every ``TestClient`` a test builds from now on (over an
    app with an OpenAPI document), for the flow tests that build their clients as they go
    (``pytestmark = pytest.mark.usefixtures("every_answer_checked")``, tests/conftest.py); the
    list returned names the operations checked, of every client."""
    from fastapi.testclient import TestClient

    seen: list[str] = []
    build = TestClient.__init__

    def checked(self: TestClient, app: Any, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        build(self, app, *args, **kwargs)
        if callable(getattr(app, "openapi", None)) and app.openapi_url:
            check_every_answer(self, app, seen=seen)

    monkeypatch.setattr(TestClient, "__init__", checked)
    return seen


def check_every_served_answer(monkeypatch: Any, served: dict[str, Any],  # noqa: ANN401
                              failures: list[str] | None = None) -> list[str]:
    """:func:`check_every_answer` for apps served by a real server (``served``: base URL ->
    the app, or one built alike): every answer an ``httpx`` client gets from under a base URL
    (the longest that fits) is held to that app's document, refusals too. A check that fails
    inside a server (a relying party asking the issuer's OCSP responder, in its own thread)
    raises there, where the route may turn it into a 500: ``failures`` gets each one too,
    for the test to assert empty at its end."""
    schemas = {base.rstrip("/"): schemathesis.openapi.from_dict(app.openapi()) for base, app in served.items()}
    seen: list[str] = []
    send = httpx.Client.send

    def checked(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:  # noqa: ANN401
        response = send(self, request, *args, **kwargs)
        url = str(request.url).split("?", 1)[0]  # percent-escapes kept (raw_path)
        fits = [base for base in schemas if url.startswith(base + "/")]
        if fits:
            base = max(fits, key=len)
            try:
                _check(schemas[base], response, seen, path=url[len(base):])
            except BaseException as exc:
                if failures is not None:
                    failures.append(f"{request.method} {url}: {exc}")
                raise
        return response

    monkeypatch.setattr(httpx.Client, "send", checked)
    return seen
