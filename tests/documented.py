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


def check_every_answer(client: httpx.Client, app: Any) -> list[str]:  # noqa: ANN401
    """From now on, every 2xx JSON answer ``client`` gets from ``app`` is held to ``app``'s
    document (:func:`assert_documented`, the operation found from the request's path); the
    list returned names the operations checked, as ``METHOD /template 200``."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    seen: list[str] = []

    def hook(response: httpx.Response) -> None:
        if not 200 <= response.status_code < 300 or not response.headers.get("content-type", "").startswith(
                "application/json"):
            return
        response.read()
        operation = schema.find_operation_by_path(response.request.method, response.request.url.path)
        assert operation is not None, f"{response.request.method} {response.request.url.path}: not in the document"
        operation.validate_response(response)
        seen.append(f"{operation.label} {response.status_code}")

    client.event_hooks["response"].append(hook)
    return seen
