"""A verification whose worker stopped between taking the wallet's SessionData and keeping
the verdict (killed, or its database gone) does not leave the session pending until it
expires: past ``processing_limit`` the result route ends it with a failed verdict that says
so, once, and a late verdict does not replace the one already given."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_reader_sessions_shared import NoVerifier, StepClock, _wallet_reply

from mcred.db import make_engine, migrate
from protocols.mdoc import Check, VerificationResult
from reader.http import ReaderService, reader_router, verdict_json
from reader.session import DEFAULT_REQUEST as REQUEST
from reader.session import ReaderOutcome
from wallet_sim.engagement import Engagement

LIMIT = dt.timedelta(seconds=60)


@pytest.fixture(params=["memory", "database"])
def service(request, db_url):
    clock = StepClock()
    engine = None
    if request.param == "database":
        engine = make_engine(db_url)
        migrate(engine)
    yield ReaderService(NoVerifier(), [REQUEST], engine=engine, clock=clock, processing_limit=LIMIT)
    if engine is not None:
        engine.dispose()


def _client(service: ReaderService) -> TestClient:
    app = FastAPI()
    app.include_router(reader_router(service))
    return TestClient(app)


def test_pending_answers_say_whether_the_response_came(service):
    client = _client(service)
    sid, _ = service.open(Engagement.new().uri)
    r = client.get(f"/sessions/{sid}/result")
    assert r.status_code == 409 and r.json()["detail"] == "no response received yet"
    assert service.result(sid) == "awaiting_response" and service.verdict(sid) is False
    assert not isinstance(service.store.claim(sid, service.clock()), str)  # a worker took it ...
    r = client.get(f"/sessions/{sid}/result")  # ... and is still verifying
    assert r.status_code == 409 and r.json()["detail"] == "the wallet's response is being verified"
    assert service.result(sid) == "processing" and service.verdict(sid) is False


def test_a_verification_that_never_finished_ends_failed_after_the_limit(service):
    client = _client(service)
    sid, _ = service.open(Engagement.new().uri)
    taken_at = service.clock()
    assert not isinstance(service.store.claim(sid, taken_at), str)  # the worker then dies
    service.clock.now += LIMIT  # at the limit: still pending
    assert client.get(f"/sessions/{sid}/result").status_code == 409
    service.clock.now += dt.timedelta(seconds=1)
    r = client.get(f"/sessions/{sid}/result")
    assert r.status_code == 200
    verdict = r.json()
    assert verdict["valid"] is False and len(verdict["checks"]) == 1
    check = verdict["checks"][0]
    assert check["name"] == "session" and not check["passed"]
    assert "verification interrupted" in check["reason"] and taken_at.isoformat(timespec="seconds") in check["reason"]
    # the same verdict to everyone after, and the wallet's message again is not verified
    assert client.get(f"/sessions/{sid}/result").content == r.content
    assert service.message(sid, b"\xa0") is not None
    assert client.get(f"/sessions/{sid}/result").content == r.content
    # the worker comes back with its verdict: the first conclusion stands
    late = ReaderOutcome(VerificationResult((Check("session", True, "late"),)))
    service.store.finish(sid, late, verdict_json(late))
    assert client.get(f"/sessions/{sid}/result").content == r.content


def test_a_verdict_kept_in_time_is_never_replaced(service):
    engagement = Engagement.new()
    sid, establishment = service.open(engagement.uri)
    assert service.message(sid, _wallet_reply(engagement, establishment, b"\xa0")) is not None
    kept = service.verdict(sid)
    assert json.loads(kept)["checks"][0]["passed"]  # decrypted
    service.clock.now += LIMIT * 3
    assert service.verdict(sid) == kept
    out = ReaderOutcome(VerificationResult((Check("session", False, "x"),)))
    assert service.store.interrupt(sid, service.clock(), out, verdict_json(out)) is False
    assert service.verdict(sid) == kept


def test_only_one_of_two_workers_interrupts(engine):
    """Two services on one database see the same stalled session: one conditional UPDATE
    ends it, the other reads the verdict it wrote."""
    clock = StepClock()
    a, b = (ReaderService(NoVerifier(), [REQUEST], engine=engine, clock=clock, processing_limit=LIMIT)
            for _ in range(2))
    sid, _ = a.open(Engagement.new().uri)
    a.store.claim(sid, clock())
    clock.now += LIMIT * 2
    out = ReaderOutcome(VerificationResult((Check("session", False, "first"),)))
    assert b.store.interrupt(sid, clock() - LIMIT, out, verdict_json(out)) is True
    assert a.store.interrupt(sid, clock() - LIMIT, out, b"other") is False
    assert a.result(sid) == b.result(sid) == verdict_json(out)


def test_sessions_of_a_database_from_before_claimed_at_carry_on(db_url):
    """A reader_sessions table at r0001 (no claimed_at) is upgraded with its rows: a session
    processing then has no claim time, stays pending, and is never interrupted by guess."""
    import sqlalchemy as sa
    from alembic import command

    from mcred.db import _alembic_config

    engine = make_engine(db_url)
    try:
        command.upgrade(_alembic_config(engine), "r0001")
        now = StepClock()()
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO reader_sessions (id, created_at, state, transcript) "
                                 "VALUES ('old', :now, 'processing', :t)"), {"now": now, "t": b"\x83"})
        migrate(engine)
        clock = StepClock()
        clock.now += LIMIT * 2
        service = ReaderService(NoVerifier(), [REQUEST], engine=engine, clock=clock, processing_limit=LIMIT)
        assert service.result("old") == "processing"
    finally:
        engine.dispose()
