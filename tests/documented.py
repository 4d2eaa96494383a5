"""Real answers against the OpenAPI document of the app that sent them: the schema-driven
fuzz (tests/test_api_fuzz.py) sees mostly refusals and empty lists, so the tests that walk
a real flow (a valid presentation, a signed document, a provisioned phone) hand the bodies
they get to :func:`assert_documented`, which runs schemathesis's own response checks
(status, media type, body schema) on them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import schemathesis

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


def _check(schema: Any, response: httpx.Response, seen: list[str], *, refusals: bool = True,  # noqa: ANN401
           path: str | None = None) -> None:
    """One answer held to ``schema`` (:func:`check_every_answer`); ``path``: the request's,
    as the app sees it (without the prefix it is served under)."""
    status, method = response.status_code, response.request.method
    path = response.request.url.path if path is None else path
    if refusals and status >= 400:
        response.read()
        operation = schema.find_operation_by_path(method, path)
        if operation is None:  # no route (a 404 or 405 of the app's own): nothing declares it
            return
        assert_refusal_documented(operation, response)
        seen.append(f"{operation.label} {status}")
        return
    if not 200 <= status < 300 or not response.headers.get("content-type", "").startswith("application/json"):
        return
    response.read()
    operation = schema.find_operation_by_path(method, path)
    if operation is None and path in FRAMEWORK_PATHS:  # the document itself, its pages: no operation of it
        return
    assert operation is not None, f"{method} {path}: not in the document"
    operation.validate_response(response)
    seen.append(f"{operation.label} {status}")


def check_every_answer(client: httpx.Client, app: Any, *, refusals: bool = True,  # noqa: ANN401
                       seen: list[str] | None = None) -> list[str]:
    """From now on, every 2xx JSON answer ``client`` gets from ``app`` is held to ``app``'s
    document (:func:`assert_documented`, the operation found from the request's path), and
    (``refusals``) every 4xx or 5xx answer to an operation of the document to
    :func:`assert_refusal_documented`; the list returned names the operations checked, as
    ``METHOD /template 200`` (``seen``, when given)."""
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


def check_every_served_answer(monkeypatch: Any, served: dict[str, Any]) -> list[str]:  # noqa: ANN401
    """:func:`check_every_answer` for apps served by a real server (``served``: base URL ->
    the app, or one built alike): every answer an ``httpx`` client gets from under a base URL
    is held to that app's document, refusals too."""
    schemas = {base.rstrip("/"): schemathesis.openapi.from_dict(app.openapi()) for base, app in served.items()}
    seen: list[str] = []
    send = httpx.Client.send

    def checked(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:  # noqa: ANN401
        response = send(self, request, *args, **kwargs)
        url = str(request.url).split("?", 1)[0]
        for base, schema in schemas.items():
            if url.startswith(base + "/"):
                _check(schema, response, seen, path=url[len(base):])
        return response

    monkeypatch.setattr(httpx.Client, "send", checked)
    return seen
