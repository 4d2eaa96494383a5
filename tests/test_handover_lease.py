"""One run of a workflow at a time (specs/handover.md "One run at a time"): a run takes the
workflow's row by a compare-and-set before its first step, so two runs of one workflow (two
operators, an API retry and a CLI resume, two service workers) never run a step's action at
once; the loser is refused with WorkflowBusy before it does anything, and the lease of a run
that died lapses so that a resume takes over."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker

from issuer import handover
from issuer.db import AuditEvent, Handover, Holder, Phone
from mcred.db import make_engine, migrate

#: every answer of the flows, refusals too, held to the OpenAPI document (tests/documented.py)
pytestmark = pytest.mark.usefixtures("every_answer_checked")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sessions(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _model_change(sessions) -> str:
    old, new = f"o-{uuid.uuid4().hex[:12]}", f"n-{uuid.uuid4().hex[:12]}"
    with sessions.begin() as s:
        h = Holder(data={}, card_number=uuid.uuid4().hex[:16], card_expiry=dt.date(2030, 1, 1))
        s.add(h)
        s.flush()
        s.add(Phone(id=old, holder_id=h.id))
        holder_id = h.id
    return handover.create(sessions, kind="model_change", holder_id=holder_id, old_phone_id=old,
                           new_phone_id=new)


def _wait_for(marker, proc, limit_s: float, why: str) -> None:  # noqa: ANN001
    """Until ``proc`` writes ``marker`` (polled every 50 ms; it ends or ``limit_s`` passes: fail)."""
    for _ in range(int(limit_s / 0.05)):
        if marker.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert marker.exists(), why


def _counting(calls: list, who: str, inside=None):  # noqa: ANN001, ANN202
    """Actions that record each call as (who, step); ``inside(step)`` is called in each."""

    def action(step: str):  # noqa: ANN202
        def run(ctx):  # noqa: ANN001, ANN202
            calls.append((who, step))
            if inside is not None:
                inside(step)
            return {"by": who}
        return run

    return {step: action(step) for step in ("provision_new", "revoke_old", "publish", "wipe_old")}


def _row(sessions, hid: str) -> tuple:
    with sessions() as s:
        h = s.get(Handover, hid)
        events = s.query(AuditEvent).filter_by(subject=hid).count()
        return h.step, h.state, h.detail, h.updated_at, events


def test_a_second_run_while_one_runs_is_refused_before_it_does_anything(sessions):
    """The first run is inside its provisioning step (a TSM job of seconds) when a second run
    of the same workflow starts: before, the second ran provision_new too (two provisioning
    jobs on one phone) and both recorded the steps after it."""
    hid = _model_change(sessions)
    calls: list = []
    inside, go = threading.Event(), threading.Event()

    def hold(step: str) -> None:
        if step == "provision_new":
            inside.set()
            assert go.wait(30)

    first = handover.WorkflowRunner(sessions, _counting(calls, "first", hold), actor="cli:alice")
    outcome: dict = {}
    t = threading.Thread(target=lambda: outcome.setdefault("h", first.run(hid)))
    t.start()
    try:
        assert inside.wait(30)
        before = _row(sessions, hid)
        second = handover.WorkflowRunner(sessions, _counting(calls, "second"), actor="token:t1:shop")
        with pytest.raises(handover.WorkflowBusy) as refused:
            second.run(hid)
        assert _row(sessions, hid) == before  # nothing recorded: no step, no audit event
        assert not [c for c in calls if c[0] == "second"]
        busy = refused.value
        assert busy.runner == first.run_as and "cli:alice" in str(busy) and f"pid {os.getpid()}" in str(busy)
        assert busy.since is not None and busy.until > busy.since
        assert isinstance(busy, handover.WorkflowError)
        with sessions() as s:  # a listing shows who runs it
            assert handover.lease_of(s.get(Handover, hid))["runner"] == first.run_as
    finally:
        go.set()
        t.join(30)
    assert outcome["h"].state == "done"
    assert calls == [("first", s) for s in ("provision_new", "revoke_old", "publish", "wipe_old")]
    with sessions() as s:  # released at the end: a listing shows no runner, a new run is let in
        h = s.get(Handover, hid)
        assert (h.runner, h.run_since, h.lease_until) == (None, None, None)
        assert handover.lease_of(h) is None


def _race(sessions) -> None:  # noqa: ANN001
    hid = _model_change(sessions)
    calls: list = []
    loser_done = threading.Event()
    barrier = threading.Barrier(2)
    results: dict = {}

    def wait_for_loser(step: str) -> None:  # the winner stays inside until the loser is answered
        if step == "provision_new":
            loser_done.wait(10)

    def go(who: str) -> None:
        runner = handover.WorkflowRunner(sessions, _counting(calls, who, wait_for_loser), actor=who)
        barrier.wait()
        try:
            results[who] = runner.run(hid).state
        except handover.WorkflowBusy as exc:
            results[who] = exc
            loser_done.set()

    threads = [threading.Thread(target=go, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    refused = [w for w, r in results.items() if isinstance(r, handover.WorkflowBusy)]
    assert len(refused) == 1, results
    winner = "b" if refused == ["a"] else "a"
    assert results[winner] == "done"
    assert calls == [(winner, s) for s in ("provision_new", "revoke_old", "publish", "wipe_old")]


def test_of_two_runs_started_together_exactly_one_runs_the_steps(sessions):
    """Two threads start one workflow at the same instant (a barrier), each a runner of its
    own: exactly one takes it and runs every step once; the other is refused."""
    for _ in range(3):
        _race(sessions)


def test_claims_at_once_one_wins(sessions):
    """The compare-and-set itself, eight claimers at one barrier: one holds the workflow."""
    hid = _model_change(sessions)
    barrier = threading.Barrier(8)
    won: list = []
    busy: list = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            handover.claim(sessions, hid, f"run {i}")
            won.append(i)
        except handover.WorkflowBusy as exc:
            busy.append(exc.runner)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1 and len(busy) == 7
    assert set(busy) == {f"run {won[0]}"}


def test_a_claim_that_loses_every_compare_and_set_is_refused_not_silently_let_through(sessions, monkeypatch):
    """A claimer that sees a lapsed lease but loses the compare-and-set to another run in each
    of its rounds (the row changed between its read and its write, every time) ends with
    WorkflowBusy naming the run it last saw: it never returns as if it held the workflow,
    which would let it run steps beside another run."""
    from sqlalchemy import update

    hid = _model_change(sessions)
    t0 = handover.utcnow()
    handover.claim(sessions, hid, "run dead", now=t0)
    now = t0 + dt.timedelta(seconds=handover.LEASE_SECONDS + 1)
    read = handover._holder_of
    thefts: list[str] = []

    def read_then_lose_the_race(sessions_, handover_id):  # noqa: ANN001, ANN202
        seen = read(sessions_, handover_id)
        thief = f"thief {len(thefts) + 1}"
        thefts.append(thief)
        with sessions_.begin() as s:  # another run takes it over, and its lease lapses as well
            s.execute(update(Handover).where(Handover.id == handover_id).values(
                runner=thief, run_since=now, lease_until=now - dt.timedelta(seconds=1)))
        return seen

    monkeypatch.setattr(handover, "_holder_of", read_then_lose_the_race)
    with pytest.raises(handover.WorkflowBusy) as refused:
        handover.claim(sessions, hid, "me", now=now)
    assert len(thefts) == 6  # five rounds, then the holder named in the refusal
    assert refused.value.runner == "thief 5"
    with sessions() as s:
        assert s.get(Handover, hid).runner == "thief 6"  # never "me"


def test_a_lapsed_lease_is_taken_over_by_a_resume(sessions):
    """A run that died holding the workflow (nothing released it) blocks a resume until its
    lease lapses; then the resume takes it over (audited) and finishes."""
    hid = _model_change(sessions)
    t0 = handover.utcnow()
    handover.claim(sessions, hid, "cli:bob (host h, pid 1, run dead)", now=t0)
    calls: list = []
    early = handover.WorkflowRunner(sessions, _counting(calls, "resume"), clock=lambda: t0 + dt.timedelta(seconds=59))
    with pytest.raises(handover.WorkflowBusy, match="cli:bob"):
        early.run(hid)
    assert calls == []
    late = handover.WorkflowRunner(sessions, _counting(calls, "resume"),
                                   clock=lambda: t0 + dt.timedelta(seconds=handover.LEASE_SECONDS + 1))
    assert late.run(hid).state == "done"
    assert len(calls) == 4
    with sessions() as s:
        took = s.query(AuditEvent).filter_by(subject=hid, action="workflow.takeover").one()
        assert took.detail["from"] == "cli:bob (host h, pid 1, run dead)" and took.detail["to"] == late.run_as


def test_a_run_whose_lease_was_taken_over_records_nothing_of_its_step(sessions):
    """A run frozen past its lease (its heartbeat stopped) whose workflow another run took
    over does not record its step over the other's: it is told it lost the workflow."""
    hid = _model_change(sessions)
    t0 = handover.utcnow()
    later = t0 + dt.timedelta(seconds=handover.LEASE_SECONDS + 5)

    def taken_over(step: str) -> None:
        if step == "provision_new":
            handover.claim(sessions, hid, "the other run", now=later)

    slow = handover.WorkflowRunner(sessions, _counting([], "slow", taken_over), clock=lambda: t0)
    with pytest.raises(handover.WorkflowBusy, match="lapsed while its step 'provision_new' ran"):
        slow.run(hid)
    with sessions() as s:
        h = s.get(Handover, hid)
        assert h.step == "prepare" and h.state == "running" and h.runner == "the other run"


_DYING_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sqlalchemy.orm import sessionmaker
    from issuer import handover
    from mcred.db import make_engine

    url, hid, marker = sys.argv[1:4]
    sessions = sessionmaker(make_engine(url), expire_on_commit=False)

    def provision_new(ctx):
        Path(marker).write_text("inside")
        time.sleep(600)  # a TSM job that never ends: the process is killed here

    handover.WorkflowRunner(sessions, {"provision_new": provision_new}, actor="cli:carol", lease=1.0).run(hid)
""")


def test_a_killed_run_holds_the_workflow_while_alive_and_a_resume_takes_over_once_its_lease_lapses(
        sessions, db_url, tmp_path):
    """kill -9 of a run inside a step: its heartbeat kept the 1 s lease alive while it lived
    (a resume was refused, naming it), and once dead its lease lapses and a resume finishes."""
    hid = _model_change(sessions)
    marker = tmp_path / "inside"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _DYING_RUN, db_url, hid, str(marker)], env=env)
    try:
        _wait_for(marker, proc, 30, "the run did not reach its step")
        time.sleep(1.5)  # past the first lease: the heartbeat renewed it
        calls: list = []
        with pytest.raises(handover.WorkflowBusy, match=f"cli:carol .*pid {proc.pid}"):
            handover.WorkflowRunner(sessions, _counting(calls, "resume")).run(hid)
        assert calls == []
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    for _ in range(100):  # its lease lapses within a second of its death
        try:
            h = handover.WorkflowRunner(sessions, _counting(calls, "resume")).run(hid)
            break
        except handover.WorkflowBusy:
            time.sleep(0.1)
    else:
        raise AssertionError("the dead run's lease never lapsed")
    assert h.state == "done" and [c[1] for c in calls] == ["provision_new", "revoke_old", "publish", "wipe_old"]


# --- the API and the command line ------------------------------------------------------------


def _registry_workflow(ctx, kind: str) -> tuple[str, str]:  # noqa: ANN001
    """A holder with a phone in the registry (no credentials) and a ``kind`` workflow of it."""
    phone = f"ph-{uuid.uuid4().hex[:12]}"
    with ctx.sessions.begin() as s:
        h = Holder(data={}, card_number=uuid.uuid4().hex[:16], card_expiry=dt.date(2030, 1, 1))
        s.add(h)
        s.flush()
        s.add(Phone(id=phone, holder_id=h.id))
        holder_id = h.id
    return holder_id, handover.create(ctx.sessions, kind=kind, holder_id=holder_id, old_phone_id=phone)


def test_the_api_answers_409_workflow_busy_for_a_run_while_another_runs(home, monkeypatch):
    """POST /handovers/{id}/run while a job of an earlier POST runs the workflow, or while a
    command line holds it: 409 /problems/workflow-busy naming the run, no job queued. Before,
    each answered 202 and two jobs ran the same steps."""
    from fastapi.testclient import TestClient
    from test_api_flows import _wait

    from issuer.api.auth import create_token
    from issuer.api.jobs import Job
    from mcred.context import Context
    from mcred.handover_actions import HandoverActions
    from mcred.service import create_app

    ctx = Context.open(home)
    _, hid = _registry_workflow(ctx, "death")
    inside, go = threading.Event(), threading.Event()
    prepare = HandoverActions.prepare

    def blocking_prepare(self, c):  # noqa: ANN001, ANN202 - the first job's first step, held open
        inside.set()
        assert go.wait(30)
        return prepare(self, c)

    monkeypatch.setattr(HandoverActions, "prepare", blocking_prepare)
    app = create_app(ctx, job_workers=2)
    token_id, secret = create_token(ctx.sessions, ["operator"], name="shop-7")
    auth = {"Authorization": f"Bearer {secret}"}
    with TestClient(app) as c:
        first = c.post(f"/handovers/{hid}/run", headers=auth)
        assert first.status_code == 202, first.json()
        try:
            assert inside.wait(30)
            listed = c.get("/handovers", headers=auth, params={"state": "running"}).json()["handovers"]
            (row,) = [h for h in listed if h["id"] == hid]
            assert "shop-7" in row["runner"]["runner"] and row["runner"]["since"]
            with ctx.sessions() as s:
                jobs_before = s.query(Job).count()
            again = c.post(f"/handovers/{hid}/run", headers=auth)
            assert again.status_code == 409, again.json()
            assert again.headers["content-type"] == "application/problem+json"
            assert again.json()["type"] == "/problems/workflow-busy"
            assert "shop-7" in again.json()["detail"] and "since" in again.json()["detail"]
            with ctx.sessions() as s:
                assert s.query(Job).count() == jobs_before  # refused at the door: no second job
        finally:
            go.set()
        job = _wait(c, auth, first.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        assert c.get(f"/handovers/{hid}", headers=auth).json()["runner"] is None

        # a command line's run holds another workflow: the API is refused the same way
        _, other = _registry_workflow(ctx, "death")
        handover.claim(ctx.sessions, other, handover.run_identity("cli:alice"))
        busy = c.post(f"/handovers/{other}/run", headers=auth)
        assert busy.status_code == 409 and "cli:alice" in busy.json()["detail"], busy.json()
        doc = app.openapi()["paths"]["/handovers/{handover_id}/run"]["post"]["responses"]["409"]
        assert "/problems/workflow-busy" in doc["description"]


def test_the_command_line_refuses_a_resume_while_another_run_holds_it(home):
    """`mcred holder update H --resume ID` while another run holds the workflow: exit 2 and
    who holds it since when; nothing run. `mcred workflows` shows the runner."""
    import json

    from typer.testing import CliRunner

    from mcred.cli.main import app as cli
    from mcred.context import Context

    ctx = Context.open(home)
    holder_id, hid = _registry_workflow(ctx, "basic_four_change")
    holder = handover.run_identity("token:abc:shop-7")
    handover.claim(ctx.sessions, hid, holder)
    before = _row(ctx.sessions, hid)
    out = CliRunner().invoke(cli, ["holder", "update", holder_id, "--resume", hid])
    assert out.exit_code == 2, out.output
    assert "shop-7" in out.output and "since" in out.output and "Traceback" not in out.output
    assert _row(ctx.sessions, hid) == before
    (row,) = json.loads(CliRunner().invoke(cli, ["workflows", "--json"]).stdout)
    assert row["runner"]["runner"] == holder
    assert "being run by token:abc:shop-7" in CliRunner().invoke(cli, ["workflows"]).stdout


def test_mcred_handover_resume_while_another_run_holds_it_exits_2_naming_it(home):
    """`mcred handover --resume ID` while another run holds the model change: refused (exit
    2, not the exit 1 of a stopped workflow with its "resume with" hint), nothing run."""
    from typer.testing import CliRunner

    from mcred.cli.main import app as cli
    from mcred.context import Context

    ctx = Context.open(home)
    holder_id, _ = _registry_workflow(ctx, "death")
    with ctx.sessions() as s:
        old = s.query(Phone).filter_by(holder_id=holder_id).one().id
    new = ctx.new_phone()
    hid = handover.create(ctx.sessions, kind="model_change", holder_id=holder_id, old_phone_id=old,
                          new_phone_id=new)
    handover.claim(ctx.sessions, hid, handover.run_identity("cli:alice"))
    before = _row(ctx.sessions, hid)
    out = CliRunner().invoke(cli, ["handover", "--phone", old, "--to", new, "--resume", hid])
    assert out.exit_code == 2, out.output
    assert "cli:alice" in out.output and "resume with" not in out.output
    assert _row(ctx.sessions, hid) == before


# --- a run the API queued: the workflow is the job's while it waits ------------------------------

#: The lease the API's runs get in these tests (seconds): waits past it stay short.
SHORT_LEASE = 1.0


def _busy_prepare(monkeypatch, hid: str) -> tuple[threading.Event, threading.Event]:
    """Workflow ``hid``'s first step held open (a job that keeps the service's one job worker
    busy): (inside, go)."""
    from mcred.handover_actions import HandoverActions

    inside, go = threading.Event(), threading.Event()
    prepare = HandoverActions.prepare

    def blocking_prepare(self, c):  # noqa: ANN001, ANN202
        if c.handover_id == hid:
            inside.set()
            assert go.wait(60)
        return prepare(self, c)

    monkeypatch.setattr(HandoverActions, "prepare", blocking_prepare)
    return inside, go


def test_a_run_the_api_queued_keeps_the_workflow_however_long_it_waits(home, db_url, monkeypatch):
    """POST /handovers/{id}/run while every job worker is busy: the run waits in the queue
    longer than its lease. Before, nothing renewed the lease the route took: once it lapsed a
    second POST /run (or a command line's resume) was let in, and the queued job, when it
    started, failed with workflow-busy though its caller did nothing wrong. Now the queued job
    keeps the workflow: two POSTs racing get one 202, a later POST is 409 naming the queued job,
    a command line is refused naming it, and the job runs the workflow once it starts."""
    from fastapi.testclient import TestClient
    from test_api_flows import _wait

    from issuer.api.auth import create_token
    from issuer.api.jobs import Job
    from mcred.context import Context
    from mcred.service import create_app

    ctx = Context.open(home, db_url)
    _, busy_wf = _registry_workflow(ctx, "death")
    _, queued_wf = _registry_workflow(ctx, "death")
    inside, go = _busy_prepare(monkeypatch, busy_wf)
    app = create_app(ctx, job_workers=1, workflow_lease=SHORT_LEASE)
    _, secret = create_token(ctx.sessions, ["operator"], name="shop-7")
    auth = {"Authorization": f"Bearer {secret}"}
    with TestClient(app) as c:
        try:
            first = c.post(f"/handovers/{busy_wf}/run", headers=auth)
            assert first.status_code == 202, first.json()
            assert inside.wait(30)  # the one worker is busy: what comes next waits in the queue

            barrier = threading.Barrier(2)
            answers: list = []

            def post() -> None:
                barrier.wait()
                answers.append(c.post(f"/handovers/{queued_wf}/run", headers=auth))

            racers = [threading.Thread(target=post) for _ in range(2)]
            for t in racers:
                t.start()
            for t in racers:
                t.join(60)
            assert sorted(a.status_code for a in answers) == [202, 409], [a.json() for a in answers]
            queued = next(a for a in answers if a.status_code == 202).json()
            assert queued["state"] == "queued"

            time.sleep(SHORT_LEASE * 1.5)  # past the lease the route took: it lapsed unless renewed
            assert c.get(f"/jobs/{queued['id']}", headers=auth).json()["state"] == "queued"
            again = c.post(f"/handovers/{queued_wf}/run", headers=auth)
            assert again.status_code == 409, again.json()
            assert again.json()["type"] == "/problems/workflow-busy"
            detail = again.json()["detail"]
            assert f"job {queued['id']}, queued (GET /jobs/{queued['id']})" in detail and "shop-7" in detail
            with pytest.raises(handover.WorkflowBusy) as cli:  # a command line's resume
                handover.claim(ctx.sessions, queued_wf, handover.run_identity("cli:alice"))
            assert handover.job_of(cli.value.runner) == queued["id"] and queued["id"] in str(cli.value)
            row = c.get(f"/handovers/{queued_wf}", headers=auth).json()
            assert handover.job_of(row["runner"]["runner"]) == queued["id"]
        finally:
            go.set()
        assert _wait(c, auth, first.json()["id"])["state"] == "succeeded"
        job = _wait(c, auth, queued["id"])
        assert job["state"] == "succeeded", job["error"]
        assert job["result"]["state"] == "done"
        shown = c.get(f"/handovers/{queued_wf}", headers=auth).json()
        assert shown["state"] == "done" and shown["runner"] is None  # released when the job ended
    with ctx.sessions() as s:
        assert s.query(Job).filter_by(kind="handover").count() == 2  # one per workflow, no second run
        assert s.query(AuditEvent).filter_by(subject=queued_wf, action="workflow.takeover").count() == 0


_DYING_SERVICE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fastapi.testclient import TestClient
    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.handover_actions import HandoverActions
    from mcred.service import create_app

    home, url, busy_wf, queued_wf, marker = sys.argv[1:6]
    ctx = Context.open(Path(home), url)
    prepare = HandoverActions.prepare

    def stuck(self, c):  # the service's one job worker busy until the process is killed
        if c.handover_id == busy_wf:
            Path(marker + ".inside").write_text("")
            time.sleep(600)
        return prepare(self, c)

    HandoverActions.prepare = stuck
    _, secret = create_token(ctx.sessions, ["operator"], name="shop-9")
    auth = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(ctx, job_workers=1, workflow_lease=float(sys.argv[6]))) as c:
        assert c.post(f"/handovers/{busy_wf}/run", headers=auth).status_code == 202
        while not Path(marker + ".inside").exists():
            time.sleep(0.05)
        job = c.post(f"/handovers/{queued_wf}/run", headers=auth).json()
        assert job["state"] == "queued", job
        Path(marker).write_text(job["id"])
        time.sleep(600)  # killed here, the job still queued
""")


def test_a_queued_run_of_a_killed_service_lets_the_workflow_go_once_its_lease_lapses(home, db_url, tmp_path):
    """kill -9 of the service while a run it accepted waits in its job queue: while it lived
    the job kept the workflow past its lease (a resume refused, naming the job and process);
    once dead nothing renews it, the lease lapses, a resume takes over (audited, from the job)
    and finishes, and the job reads interrupted: the workflow is not blocked for good."""
    from issuer.api.jobs import INTERRUPTED, JobRunner
    from mcred.context import Context

    ctx = Context.open(home, db_url)
    _, busy_wf = _registry_workflow(ctx, "death")
    _, queued_wf = _registry_workflow(ctx, "death")
    marker = tmp_path / "queued"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _DYING_SERVICE, str(home), db_url, busy_wf, queued_wf,
                             str(marker), str(SHORT_LEASE)], env=env)
    try:
        _wait_for(marker, proc, 60, "the service did not queue the run")
        job_id = marker.read_text()
        time.sleep(SHORT_LEASE * 1.5)  # past the lease: the queued job renewed it
        calls: list = []
        with pytest.raises(handover.WorkflowBusy, match=f"shop-9 .*pid {proc.pid}, job {job_id}"):
            handover.WorkflowRunner(ctx.sessions, _counting(calls, "resume")).run(queued_wf)
        assert calls == []
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    for _ in range(100):  # its lease lapses within a second of its death
        try:
            h = handover.WorkflowRunner(ctx.sessions, _counting(calls, "resume"), actor="cli:dave").run(queued_wf)
            break
        except handover.WorkflowBusy:
            time.sleep(0.1)
    else:
        raise AssertionError("the killed service's queued run never let the workflow go")
    assert h.state == "done" and [c[1] for c in calls] == ["revoke_old", "publish"]
    with ctx.sessions() as s:
        took = s.query(AuditEvent).filter_by(subject=queued_wf, action="workflow.takeover").one()
        assert handover.job_of(took.detail["from"]) == job_id
    assert JobRunner(ctx.sessions, stale_after=dt.timedelta(seconds=0.5)).get(job_id).state == INTERRUPTED


def test_the_lease_lasts_to_its_last_instant_and_only_its_run_renews_or_releases_it(sessions):
    """specs/handover.md "One run at a time": while a run's lease lasts another run is refused
    and a listing shows the runner; ``lease_until`` itself still belongs to it (the claim's
    compare-and-set takes only a lease that lapsed, ``lease_until < now``), so a listing
    agrees with a claim at that instant. Renewing or releasing is the holding run's alone: a
    run that lost the workflow renews nothing and releases nothing."""
    hid = _model_change(sessions)
    t0 = handover.utcnow()
    handover.claim(sessions, hid, "run A", now=t0, lease=10)
    end = t0 + dt.timedelta(seconds=10)

    def row() -> Handover:
        with sessions() as s:
            return s.get(Handover, hid)

    assert handover.lease_of(row(), now=end) == {"runner": "run A", "since": t0.isoformat(),
                                                 "until": end.isoformat()}
    with pytest.raises(handover.WorkflowBusy):
        handover.claim(sessions, hid, "run B", now=end)
    assert handover.lease_of(row(), now=end + dt.timedelta(microseconds=1)) is None
    # only run A renews or releases it
    assert handover.renew(sessions, hid, "run B", now=end) is False
    assert handover.release(sessions, hid, "run B") is False
    assert (row().runner, row().lease_until) == ("run A", end)
    assert handover.renew(sessions, hid, "run A", now=end, lease=10) is True
    assert row().lease_until == end + dt.timedelta(seconds=10)
    handover.claim(sessions, hid, "run A", now=end + dt.timedelta(seconds=1), lease=10)  # its own claim renews it
    assert row().lease_until == end + dt.timedelta(seconds=11)
    assert handover.release(sessions, hid, "run A") is True
    assert (row().runner, row().run_since, row().lease_until) == (None, None, None)
    assert handover.release(sessions, hid, "run A") is False
    with sessions() as s:  # nobody's lease was taken over
        assert s.query(AuditEvent).filter_by(subject=hid, action="workflow.takeover").count() == 0


def test_a_run_inside_a_hold_keeps_the_workflow_held_until_the_hold_ends(sessions):
    """``WorkflowRunner.holding`` is re-entrant: ``mcred handover --over-the-air`` holds the
    workflow while it waits for the phones' agents and runs it inside that hold; the run
    must neither claim it again nor release it when it ends, or another run is let in while
    the first still acts on the phones."""
    hid = _model_change(sessions)
    first = handover.WorkflowRunner(sessions, _counting([], "first"), actor="cli:alice")
    other = handover.WorkflowRunner(sessions, _counting([], "other"), actor="cli:bob")
    with first.holding(hid):
        first.run(hid, stop_after="provision_new")
        with pytest.raises(handover.WorkflowBusy, match="cli:alice"):
            other.run(hid)
        with sessions() as s:
            assert s.get(Handover, hid).runner == first.run_as
    with sessions() as s:
        assert s.get(Handover, hid).runner is None
    assert other.run(hid).state == "done"


def test_a_run_that_ended_claims_the_workflow_again_before_its_next_run(sessions):
    """A runner forgets a hold once it ends: run again (a ``--resume`` in the same process),
    it claims the workflow anew, so while another run holds it, it is refused before its
    action runs, not told afterwards that it lost the step."""
    hid = _model_change(sessions)
    calls: list = []
    first = handover.WorkflowRunner(sessions, _counting(calls, "first"), actor="cli:alice")
    first.run(hid, stop_after="prepare")
    handover.claim(sessions, hid, "cli:bob (host h, pid 2, run other)")
    with pytest.raises(handover.WorkflowBusy, match="nothing was done"):
        first.run(hid)
    assert calls == []


def test_unknown_workflows_and_missing_actions_are_workflow_errors(sessions):
    """Bad input is a precise WorkflowError, never an AttributeError: no such workflow (to
    run, claim or list the remaining steps of), or a step without an action (recorded as
    not done: a later run with the action continues there)."""
    for call in (lambda: handover.WorkflowRunner(sessions, {}).run("no-such"),
                 lambda: handover.WorkflowRunner(sessions, {}).remaining("no-such"),
                 lambda: handover.claim(sessions, "no-such", "run A")):
        with pytest.raises(handover.WorkflowError, match="no workflow 'no-such'"):
            call()
    hid = _model_change(sessions)
    actions = _counting([], "run")
    with pytest.raises(handover.WorkflowError, match="no action for step 'provision_new' of model_change"):
        handover.WorkflowRunner(sessions, {k: v for k, v in actions.items() if k != "provision_new"}).run(hid)
    with sessions() as s:
        assert s.get(Handover, hid).step == "prepare"
    assert handover.WorkflowRunner(sessions, actions).run(hid).state == "done"


def test_a_runner_is_named_by_its_actor_and_process_unless_given_a_claim_to_continue():
    """``handovers.runner`` names who runs a workflow (the actor, host, pid and a run id; a
    job's id for a run the API queued), which a refused run is told; a runner given
    ``run_as`` continues that claim under that name."""
    mine = handover.WorkflowRunner(None, {}, actor="cli:alice").run_as
    assert mine.startswith("cli:alice (host ") and f"pid {os.getpid()}, run " in mine
    assert handover.WorkflowRunner(None, {}, actor="cli:alice").run_as != mine
    job = handover.run_identity("token:t1", job="0" * 32)
    assert handover.job_of(job) == "0" * 32 and handover.job_of(mine) is None
    assert handover.WorkflowRunner(None, {}, actor="x", run_as=job).run_as == job
