"""A database that does not answer is a 503 with Retry-After, not a 500: the load balancer
or the client tries again, and the answer carries neither SQL nor the server's address.
The readiness probe says the same, so the balancer takes the worker out meanwhile."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from issuer.api import problems
from mcred.db import make_engine
from mcred.present import reader_app, reader_pipeline
from reader.http import ReaderService
from reader.session import DEFAULT_REQUEST
from reader.trust import TrustStore
from wallet_sim.engagement import Engagement

NOWHERE = "postgresql+psycopg://mcred:hunter2@127.0.0.1:1/nothing?connect_timeout=2"


def _assert_unavailable(r) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"
    body = r.json()
    assert body["type"] == "/problems/database-unavailable" and body["status"] == 503
    for secret in ("hunter2", "127.0.0.1", "SELECT", "INSERT", "nothing"):
        assert secret not in r.text


def test_the_reader_answers_503_while_its_sessions_database_is_down():
    pytest.importorskip("psycopg")
    engine = make_engine(NOWHERE)
    try:
        client = TestClient(reader_app(ReaderService(reader_pipeline(trust=TrustStore()), [DEFAULT_REQUEST],
                                                     engine=engine)))
        _assert_unavailable(client.post("/sessions", content=Engagement.new().uri.encode()))
        _assert_unavailable(client.get("/sessions/abc/result"))
        _assert_unavailable(client.post("/sessions/abc", content=b"\xa0"))
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["sessions"]["ok"] is False
        assert "hunter2" not in ready.text
        assert client.get("/healthz").status_code == 200
    finally:
        engine.dispose()


@pytest.mark.parametrize("error", [
    sa.exc.OperationalError("SELECT secret FROM t WHERE x = %(x)s", {"x": "nothing"}, Exception("lost")),
    sa.exc.InterfaceError("INSERT INTO t", {}, Exception("closed")),
    sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
])
def test_each_kind_of_database_failure_is_a_503(error):
    app = FastAPI()
    problems.install(app)

    @app.get("/x")
    def fail():
        raise error

    _assert_unavailable(TestClient(app).get("/x"))
