"""Jobs (state, progress, result, secrets kept out of the row, interrupted on restart) and
problem+json for every kind of error, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.testclient import TestClient

from issuer.api import problems
from issuer.api.auth import create_token
from issuer.api.jobs import FAILED, INTERRUPTED, SUCCEEDED, Job, JobRunner
from issuer.revocation import RevocationError
from mcred.context import Context
from mcred.db import make_engine, migrate
from mcred.service import Mount, create_app

#: every answer of the flows, refusals too, held to the OpenAPI document (tests/documented.py)
pytestmark = pytest.mark.usefixtures("every_answer_checked")

PROBLEM = "application/problem+json"


@pytest.fixture
def sessions(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    yield sa.orm.sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def test_a_job_reports_progress_and_its_result(sessions):
    runner = JobRunner(sessions, workers=2)
    gate = threading.Event()

    def work(params, progress):  # noqa: ANN001
        progress(0.5, "half way")
        gate.wait(10)
        return {"echo": params["x"], "had_secret": params["pin"] == "1234"}

    runner.register("echo", work)
    view = runner.submit("echo", {"x": 7}, private={"pin": "1234"}, scope="issuer", actor="t")
    for _ in range(200):
        mid = runner.get(view.id)
        if mid.progress == 0.5:
            break
        threading.Event().wait(0.01)
    assert mid.state == "running" and mid.note == "half way"
    gate.set()
    done = runner.wait(view.id)
    assert done.state == SUCCEEDED and done.progress == 1.0
    assert done.result == {"echo": 7, "had_secret": True}
    with sessions() as s:
        row = s.get(Job, view.id)
        assert "pin" not in row.params and "1234" not in repr(row.params) + repr(row.result)
    runner.shutdown()


def test_a_failing_job_records_the_error_and_the_runner_goes_on(sessions):
    runner = JobRunner(sessions, workers=1)

    def boom(params, progress):  # noqa: ANN001
        raise RevocationError("reason 'nope' is not one of ...")

    runner.register("boom", boom)
    runner.register("ok", lambda params, progress: {"ok": 1})
    bad = runner.wait(runner.submit("boom", {}, scope="issuer", actor="t").id)
    assert bad.state == FAILED and bad.error["type"] == "RevocationError"
    assert "nope" in bad.error["detail"]
    # the problem type a route answering the same error gives, for a client that reads one kind
    assert bad.error["problem"] == "/problems/revocation-refused"
    assert runner.wait(runner.submit("ok", {}, scope="issuer", actor="t").id).state == SUCCEEDED
    runner.shutdown()


def test_a_refused_job_logs_a_line_and_a_failed_one_its_traceback(sessions, caplog):
    """An expected refusal (a route would answer it 4xx: a phone on hold, a reason not
    known) is one warning line in the server's log; only the service's own failure carries a
    traceback (the PostgreSQL scale run found every refusal logged with its traceback)."""
    import logging

    runner = JobRunner(sessions, workers=1)

    def refused(params, progress):  # noqa: ANN001
        raise RevocationError("reason 'nope' is not one of ...")

    def broken(params, progress):  # noqa: ANN001
        raise KeyError("a bug")

    runner.register("refused", refused)
    runner.register("broken", broken)
    with caplog.at_level(logging.WARNING, logger="mcred.jobs"):
        first = runner.wait(runner.submit("refused", {}, scope="issuer", actor="t").id)
        second = runner.wait(runner.submit("broken", {}, scope="issuer", actor="t").id)
    runner.shutdown()
    (line,) = [r for r in caplog.records if first.id in r.getMessage()]
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "refused: reason 'nope'" in line.getMessage() and "/problems/revocation-refused" in line.getMessage()
    (trace,) = [r for r in caplog.records if second.id in r.getMessage()]
    assert trace.levelno == logging.ERROR and trace.exc_info is not None
    assert second.error["problem"] == "/problems/internal-error"


def test_jobs_of_a_dead_process_are_interrupted_at_the_next_start(sessions):
    crashed = JobRunner(sessions, workers=1)
    started, release = threading.Event(), threading.Event()
    crashed.register("hang", lambda params, progress: started.set() or release.wait(30) and {})
    queued_behind = []
    view = crashed.submit("hang", {}, scope="issuer", actor="t")
    queued_behind.append(crashed.submit("hang", {}, scope="issuer", actor="t"))
    assert started.wait(10)
    # The process "dies": its heartbeats stop. A new process starts later.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    fresh = JobRunner(sessions, workers=1)
    assert fresh.recover(now=later) == 2
    for v in (view, queued_behind[0]):
        after = fresh.get(v.id)
        assert after.state == INTERRUPTED and after.error["type"] == "interrupted"
    # A live runner's own jobs are never marked by itself, and fresh heartbeats protect them.
    assert fresh.recover() == 0
    # The "dead" runner's late finish does not overwrite what the client was told.
    release.set()
    crashed.shutdown(wait=True)
    assert fresh.get(view.id).state == INTERRUPTED
    assert fresh.get(queued_behind[0].id).state == INTERRUPTED
    fresh.shutdown()


def test_a_live_runners_jobs_are_not_taken_for_dead(sessions):
    a = JobRunner(sessions, workers=1)
    gate = threading.Event()
    a.register("wait", lambda params, progress: gate.wait(10) and {})
    v = a.submit("wait", {}, scope="issuer", actor="t")
    a.heartbeat()
    b = JobRunner(sessions, workers=1)
    assert b.recover() == 0 and b.get(v.id).state in ("queued", "running")
    gate.set()
    assert a.wait(v.id).state == SUCCEEDED
    a.shutdown()
    b.shutdown()



class _Hold:
    """A job's hold (issuer.api.jobs.Hold, as a workflow's lease) that counts what is done to it."""

    every = 0.05

    def __init__(self) -> None:
        self.renewed, self.released = 0, 0

    def renew(self) -> bool:
        self.renewed += 1
        return True

    def release(self) -> None:
        self.released += 1


def test_what_a_queued_job_holds_is_renewed_while_it_waits_and_released_when_it_ends(sessions):
    """A job queued behind a busy worker keeps what it holds (the workflow the API claimed
    for it) renewed however long it waits, and lets it go when it ends, not before."""
    runner = JobRunner(sessions, workers=1)
    gate = threading.Event()
    runner.register("wait", lambda params, progress: gate.wait(30) and {})
    runner.register("held", lambda params, progress: {"done": 1})
    busy = runner.submit("wait", {}, scope="issuer", actor="t")
    hold = _Hold()
    view = runner.submit("held", {}, scope="operator", actor="t", job_id="ab" * 16, hold=hold)
    assert view.id == "ab" * 16 and view.state == "queued"
    for _ in range(200):
        if hold.renewed >= 4:
            break
        threading.Event().wait(0.02)
    assert hold.renewed >= 4 and hold.released == 0 and runner.get(view.id).state == "queued"
    gate.set()
    assert runner.wait(busy.id).state == SUCCEEDED and runner.wait(view.id).state == SUCCEEDED
    assert hold.released == 1
    renewed = hold.renewed
    threading.Event().wait(0.2)
    assert hold.renewed == renewed  # not renewed after the job ended
    runner.shutdown()


def test_a_queued_job_the_service_stops_before_it_starts_lets_go_of_what_it_holds(sessions):
    """The service stops (shutdown without waiting) with a job queued: the job is marked
    interrupted and what it held released now, not held until its lease lapses."""
    runner = JobRunner(sessions, workers=1)
    gate, started = threading.Event(), threading.Event()
    runner.register("wait", lambda params, progress: started.set() or gate.wait(30) and {})
    runner.register("held", lambda params, progress: {"done": 1})
    runner.submit("wait", {}, scope="issuer", actor="t")
    assert started.wait(10)
    hold = _Hold()
    view = runner.submit("held", {}, scope="operator", actor="t", hold=hold)
    runner.shutdown(wait=False)
    try:
        assert hold.released == 1
        after = runner.get(view.id)
        assert after.state == INTERRUPTED and "before this job started" in after.error["detail"]
    finally:
        gate.set()
        runner.shutdown(wait=True)  # the running job's thread ends before the database goes


# --- problem+json ------------------------------------------------------------------------


def _app_with_failures(ctx: Context):
    r = APIRouter()

    @r.get("/explode")
    def explode() -> dict:
        raise RuntimeError("db password is hunter2")

    @r.get("/typed", responses=problems.refusals(problems.REVOCATION_REFUSED))  # as a real route declares it
    def typed() -> dict:
        raise RevocationError("reason 'x' is not one of keyCompromise, ...")

    @r.get("/number/{n}")
    def number(n: int) -> dict:
        return {"n": n}

    return create_app(ctx, extra_mounts=[Mount(r, scope="operator")])


def test_errors_are_problem_json_and_never_leak_a_traceback(home: Path):
    ctx = Context.open(home)
    app = _app_with_failures(ctx)
    _, tok = create_token(ctx.sessions, ["operator"])
    c = TestClient(app, raise_server_exceptions=False)
    h = {"Authorization": f"Bearer {tok}"}

    r = c.get("/explode", headers=h)
    assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"] == "/problems/internal-error" and body["status"] == 500
    assert "hunter2" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text

    r = c.get("/typed", headers=h)
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == "/problems/revocation-refused"

    r = c.get("/number/seven", headers=h)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"] == "/problems/validation" and body["errors"][0]["location"] == "path.n"

    r = c.get("/no/such/route", headers=h)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == "/problems/not-found"

    r = c.delete("/phones", headers=h)
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM

    r = c.post("/revocations", headers=h, json={"phone_id": "ph-x", "reason": "sad"})
    assert r.status_code == 422 and r.json()["type"] == "/problems/validation"
    r = c.post("/revocations", headers=h, json={"phone_id": "ph-x", "reason": "keyCompromise"})
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-phone"


def test_provisioning_refuses_a_bad_holder_before_any_job(home: Path):
    ctx = Context.open(home)
    app = create_app(ctx, job_workers=1)
    _, tok = create_token(ctx.sessions, ["issuer"])
    c = TestClient(app)
    h = {"Authorization": f"Bearer {tok}"}
    body = {"phone_id": "ph-000000000000", "holder": {"family_name": "x"}, "pin": "1234",
            "password": "ABC123", "puk": "12345678"}
    r = c.post("/provisioning", headers=h, json=body)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert "holder" in r.json()["type"] or "given_name" in r.json()["detail"]
    with ctx.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 0


@pytest.mark.parametrize("birth", ["2999-01-01", "0001-01-01"])
def test_provisioning_refuses_a_birth_date_nobody_living_has_before_any_job(home: Path, birth: str):
    """As the CLI's holder file: named at the door, not as a job stopped at issue-sign-cert."""
    ctx = Context.open(home)
    _, tok = create_token(ctx.sessions, ["issuer"])
    holder = {"family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
              "given_name_kana": "ハナコ", "birth_date": birth, "sex": 2,
              "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区"}
    with TestClient(create_app(ctx, job_workers=1)) as c:
        r = c.post("/provisioning", headers={"Authorization": f"Bearer {tok}"},
                   json={"phone_id": "ph-000000000000", "holder": holder, "pin": "1234", "password": "ABC123",
                         "puk": "12345678"})
    assert r.status_code == 422 and r.json()["type"] == "/problems/holder-invalid", r.text
    assert "'birth_date'" in r.json()["detail"]
    with ctx.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 0


def test_a_nul_in_the_url_or_a_holder_is_refused_on_every_backend(home: Path, db_url: str):
    """PostgreSQL refuses a string holding NUL in any statement, SQLite does not: a NUL in a
    query parameter (found by the schema fuzz run on PostgreSQL: ``GET /audit?subject=%00``)
    or in a holder's name was a 500 there. Both are refused before anything runs."""
    ctx = Context.open(home, db_url)
    _, tok = create_token(ctx.sessions, ["operator"])
    h = {"Authorization": f"Bearer {tok}"}
    with TestClient(create_app(ctx, job_workers=1)) as c:
        for url in ("/audit?subject=a%00b", "/jobs?kind=%00", "/credentials?phone_id=ph%00",
                    "/phones/ph-%00"):
            r = c.get(url, headers=h)
            assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, (url, r.text)
            assert "NUL" in r.json()["detail"]
        assert c.get("/audit?subject=a%2500b", headers=h).status_code == 200  # "%00" as text is fine
        body = {"phone_id": "ph-000000000000", "holder": {
            "family_name": "山\u0000田", "given_name": "花子", "family_name_kana": "ヤマダ",
            "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
            "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区"},
            "pin": "1234", "password": "ABC123", "puk": "12345678"}
        r = c.post("/provisioning", headers=h, json=body)
        assert r.status_code == 422 and "U+0000" in r.json()["detail"], r.text
    with ctx.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
    ctx.engine.dispose()


@pytest.mark.parametrize("secret,value", [("pin", "9999"), ("password", "OTHER9"), ("puk", "11112222"),
                                          ("pin", "1234")])
def test_provisioning_refuses_secrets_inside_the_holder_naming_the_field(home: Path, secret: str, value: str):
    """A CLI holder file may carry pin, password and puk; over HTTP they are the body's own
    (required there). One inside ``holder`` was silently ignored, the top-level one set: now
    it is a 422 naming ``body.holder.<name>``, before any job, even when the values agree."""
    ctx = Context.open(home)
    _, tok = create_token(ctx.sessions, ["issuer"])
    holder = {"family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
              "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
              "address": "東京都千代田区霞が関1-1", "prefecture": "東京都", "municipality": "千代田区",
              secret: value}
    with TestClient(create_app(ctx, job_workers=1)) as c:
        r = c.post("/provisioning", headers={"Authorization": f"Bearer {tok}"},
                   json={"phone_id": "ph-000000000000", "holder": holder, "pin": "1234", "password": "ABC123",
                         "puk": "12345678"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    body = r.json()
    assert body["type"] == "/problems/validation"
    assert body["errors"][0]["location"] == f"body.holder.{secret}" and f"body.holder.{secret}" in body["detail"]
    assert value not in r.text  # the secret is not echoed
    with ctx.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 0
