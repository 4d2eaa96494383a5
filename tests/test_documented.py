"""tests/documented.py's checks themselves: a flow test that meets a refusal its route does
not declare, or one that is not a problem document, fails."""

from __future__ import annotations

import pytest
from documented import check_every_answer
from fastapi import FastAPI
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
