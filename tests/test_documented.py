"""tests/documented.py's checks themselves: a flow test that meets a refusal its route does
not declare, or one that is not a problem document, fails."""

from __future__ import annotations

import pytest
from documented import check_every_answer
from fastapi import FastAPI, Response
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient

from issuer.api import problems
from issuer.api.problems import ProblemException


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/declared", responses=problems.refusals(problems.CONFLICT))
    def declared() -> dict:
        raise ProblemException(problems.CONFLICT, "declared")

    @app.get("/undeclared")
    def undeclared() -> dict:
        raise ProblemException(problems.CONFLICT, "not in the document")

    @app.get("/plain", responses={400: {"description": "/problems/bad-request: plain text, wrongly"}})
    def plain() -> PlainTextResponse:
        return PlainTextResponse("no", status_code=400)

    problems.install(app)
    return app


def test_a_refusal_is_checked_as_declared_and_a_problem_document():
    app = _app()
    client = TestClient(app)
    seen = check_every_answer(client, app)
    assert client.get("/declared").status_code == 409
    assert seen == ["GET /declared 409"]
    with pytest.raises(AssertionError, match="GET /undeclared 409: a refusal the document does not declare"):
        client.get("/undeclared")
    with pytest.raises(AssertionError, match="GET /plain 400: 'text/plain', not a problem document"):
        client.get("/plain")
    assert client.get("/no/such/route").status_code == 404  # no operation: nothing declares it


def test_refusals_can_be_left_out():
    app = _app()
    client = TestClient(app)
    check_every_answer(client, app, refusals=False)
    assert client.get("/undeclared").status_code == 409


def _binary_app() -> FastAPI:
    app = FastAPI()
    cache = {"Cache-Control": {"required": True, "schema": {"type": "string"}}}

    @app.get("/crl/{name:path}", response_class=Response,
             responses={200: {"content": {"application/pkix-crl": {}}, "headers": cache}, 304: {"headers": cache}})
    def crl(name: str, how: str = "right") -> Response:
        if how == "stale":
            return Response(status_code=304, headers={"Cache-Control": "max-age=1"})
        if how == "undeclared":
            return Response(b"x", status_code=203, media_type="application/pkix-crl", headers={"Cache-Control": "x"})
        media = "application/octet-stream" if how == "media" else "application/pkix-crl"
        return Response(b"x", media_type=media, headers={} if how == "bare" else {"Cache-Control": "max-age=1"})

    problems.install(app)
    return app


def test_an_answer_of_any_media_type_is_checked_status_media_type_and_headers():
    """Not only JSON: a CRL, an OCSP response or a status list is held to the status, the media
    type and the required headers (Cache-Control, ETag) its operation declares, a 304 too; a
    path parameter holding ``%2F`` (an OCSP GET's base64) is still that one operation's."""
    app = _binary_app()
    client = TestClient(app)
    seen = check_every_answer(client, app)
    assert client.get("/crl/a%2Fb").status_code == 200
    assert client.get("/crl/a", params={"how": "stale"}).status_code == 304
    assert seen == ["GET /crl/{name} 200", "GET /crl/{name} 304"]
    for how, failure in (("media", "Undocumented Content-Type"), ("bare", "Missing required response headers"),
                         ("undeclared", "Undocumented status code")):
        with pytest.raises(BaseException, match=failure):
            client.get("/crl/a", params={"how": how})
    with pytest.raises(AssertionError, match="not in the document"):
        check_every_answer(client, FastAPI())
        client.get("/crl/a")
