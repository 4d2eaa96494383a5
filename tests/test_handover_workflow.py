"""The persisted workflow engine: resumable after a crash at any step, same final state."""

import datetime as dt
import uuid

import pytest
from sqlalchemy.orm import sessionmaker

from issuer import handover
from issuer.db import AuditEvent, Handover, Holder, Phone
from mcred.db import make_engine, migrate


@pytest.fixture
def sessions(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _holder(sessions, *phones: str) -> str:
    """A holder, carried by ``phones`` (the old phone a workflow names must be the holder's)."""
    with sessions.begin() as s:
        h = Holder(data={}, card_number=uuid.uuid4().hex[:16], card_expiry=dt.date(2030, 1, 1))
        s.add(h)
        s.flush()
        s.add_all(Phone(id=p, holder_id=h.id) for p in phones)
        return h.id


def _model_change(sessions) -> str:
    """A model_change workflow of a new holder, from the phone it carries to a new one."""
    old, new = f"o-{uuid.uuid4().hex[:12]}", f"n-{uuid.uuid4().hex[:12]}"
    return handover.create(sessions, kind="model_change", holder_id=_holder(sessions, old),
                           old_phone_id=old, new_phone_id=new)


class Crash(Exception):
    pass


def _actions(world: dict, crash_in: str | None = None):
    """Idempotent actions over a tiny world: each checks before it changes."""

    def provision_new(ctx):
        world.setdefault("new_credentials", 1)
        if crash_in == "provision_new":
            raise Crash("lost response")
        return {"issued": world["new_credentials"]}

    def revoke_old(ctx):
        world["old_revoked"] = ctx.reason
        return {"reason": ctx.reason}

    def publish(ctx):
        world["published"] = world.get("published", 0) + 1
        return {}

    def wipe_old(ctx):
        world["old_wiped"] = True
        return {"wiped": True}

    return {"provision_new": provision_new, "revoke_old": revoke_old, "publish": publish,
            "wipe_old": wipe_old}


def _final(world):
    return {k: v for k, v in world.items() if k != "published"}


def test_uninterrupted_model_change_runs_every_step_in_order(sessions):
    hid = _model_change(sessions)
    world: dict = {}
    h = handover.WorkflowRunner(sessions, _actions(world)).run(hid)
    assert h.state == "done" and h.step == "done"
    assert list(h.detail["timings"]) == list(handover.WORKFLOWS["model_change"])
    assert world == {"new_credentials": 1, "old_revoked": "cessationOfOperation",
                     "published": 1, "old_wiped": True}


@pytest.mark.parametrize("crash_after", handover.WORKFLOWS["model_change"][:-1])
def test_crash_after_each_step_then_resume_ends_in_the_same_state(sessions, crash_after):
    reference: dict = {}
    hid0 = _model_change(sessions)
    handover.WorkflowRunner(sessions, _actions(reference)).run(hid0)

    world: dict = {}
    hid = _model_change(sessions)
    handover.WorkflowRunner(sessions, _actions(world)).run(hid, stop_after=crash_after)
    # A new process picks the workflow up from the database.
    h = handover.WorkflowRunner(sessions, _actions(world)).run(hid)
    assert h.state == "done"
    assert _final(world) == _final(reference)


def test_failing_step_is_recorded_and_resumable(sessions):
    hid = _model_change(sessions)
    world: dict = {}
    with pytest.raises(handover.StepFailed):
        handover.WorkflowRunner(sessions, _actions(world, crash_in="provision_new")).run(hid)
    with sessions() as s:
        h = s.get(Handover, hid)
        assert h.state == "failed" and h.step == "prepare"
        assert h.detail["error"]["step"] == "provision_new"
        assert s.query(AuditEvent).filter_by(subject=hid).count() >= 2
    h = handover.WorkflowRunner(sessions, _actions(world)).run(hid)
    assert h.state == "done" and "error" not in h.detail


def test_refuses_unknown_kinds_and_missing_phones(sessions):
    hid = _holder(sessions)
    with pytest.raises(handover.UnknownWorkflow):
        handover.create(sessions, kind="teleport", holder_id=hid, old_phone_id="o")
    with pytest.raises(handover.WorkflowError):
        handover.create(sessions, kind="model_change", holder_id=hid, old_phone_id="o")
    with pytest.raises(handover.WorkflowError):
        handover.create(sessions, kind="death", holder_id=hid)


def test_the_phones_must_be_the_holders(sessions):
    """A workflow names a holder and acts on the phones: another holder's old phone would have
    its credentials revoked and its SE wiped under this holder's workflow."""
    mine, theirs = f"m-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}"
    me, _ = _holder(sessions, mine), _holder(sessions, theirs)
    for kind, old, new, why in (("lost_confirmed", theirs, None, "does not carry"),
                                ("lost_confirmed", "p-unknown", None, "does not carry"),
                                ("model_change", mine, theirs, "another holder"),
                                ("model_change", mine, mine, "both")):
        with pytest.raises(handover.WorkflowError, match=why):
            handover.create(sessions, kind=kind, holder_id=me, old_phone_id=old, new_phone_id=new)
    with sessions() as s:
        assert s.query(Handover).filter_by(holder_id=me).count() == 0
    assert handover.create(sessions, kind="lost_confirmed", holder_id=me, old_phone_id=mine)


def test_workflows_lists_filtered_newest_first_and_refuses_unknown_filters(sessions):
    """specs/handover.md "Workflows left to finish": ``mcred workflows [--state] [--kind]
    [--holder] [--limit --offset]`` lists workflows newest first, each filter narrowing the
    list; an unknown state or kind is a WorkflowError, not an empty list (a typo would read
    as "nothing left to finish")."""
    done = _model_change(sessions)
    handover.WorkflowRunner(sessions, _actions({})).run(done)
    waiting = _model_change(sessions)
    old = f"o-{uuid.uuid4().hex[:12]}"
    lost = handover.create(sessions, kind="lost_hold", holder_id=_holder(sessions, old), old_phone_id=old)
    with sessions.begin() as s:
        holder_of_done = s.get(Handover, done).holder_id
        for i, hid in enumerate((done, waiting, lost)):  # distinct, increasing last-changed times
            s.get(Handover, hid).updated_at = dt.datetime(2099, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
    mine = {done, waiting, lost}

    def ids(**filters) -> list[str]:
        return [h.id for h in handover.workflows(sessions, **filters) if h.id in mine]

    assert ids() == [lost, waiting, done]
    assert ids(state="done") == [done]
    assert ids(state="running") == [lost, waiting]
    assert ids(kind="lost_hold") == [lost]
    assert ids(kind="model_change") == [waiting, done]
    assert ids(holder_id=holder_of_done) == [done]
    assert [h.id for h in handover.workflows(sessions, holder_id=holder_of_done)] == [done]
    assert ids(limit=1) == [lost]
    assert ids(limit=2, offset=1) == [waiting, done]
    for bad in ({"state": "finished"}, {"kind": "teleport"}):
        with pytest.raises(handover.WorkflowError):
            handover.workflows(sessions, **bad)


def test_create_records_the_workflow_with_its_reason_and_audits_it(sessions):
    """A workflow starts as a row (kind, phones, the kind's reason, step ``created``,
    ``running``) and an audit event naming the holder and the phones, so that who started
    which workflow on which phones is on record before any step ran."""
    old = f"o-{uuid.uuid4().hex[:12]}"
    holder_id = _holder(sessions, old)
    hid = handover.create(sessions, kind="death", holder_id=holder_id, old_phone_id=old, actor="cli:alice")
    with sessions() as s:
        h = s.get(Handover, hid)
        assert (h.kind, h.reason, h.step, h.state, h.old_phone_id, h.new_phone_id) == (
            "death", "affiliationChanged", "created", "running", old, None)
        events = s.query(AuditEvent).filter_by(subject=hid).all()
        assert [(e.actor, e.action, e.detail) for e in events] == [
            ("cli:alice", "workflow.create.death", {"holder": holder_id, "old": old, "new": None})]


def test_each_step_is_audited_and_its_result_recorded_for_the_steps_after_it(sessions):
    """specs/handover.md "Steps": a row per workflow with the per-step results and timings,
    and an audit event per step; a failed step's audit event names it and its error. Each
    action is told the results of the steps before it (``StepContext.results``), which is how
    a later step tells what it found from what an earlier one issued."""
    hid = _model_change(sessions)
    world: dict = {}
    with pytest.raises(handover.StepFailed) as failed:
        handover.WorkflowRunner(sessions, _actions(world, crash_in="provision_new"), actor="cli:alice").run(hid)
    assert (failed.value.handover_id, failed.value.step) == (hid, "provision_new")
    seen: dict = {}
    actions = _actions(world)

    def revoke_old(ctx):
        seen["results"] = dict(ctx.results)
        return actions["revoke_old"](ctx)

    h = handover.WorkflowRunner(sessions, {**actions, "revoke_old": revoke_old}, actor="cli:bob").run(hid)
    assert seen["results"] == {"prepare": {}, "provision_new": {"issued": 1}}
    assert h.detail["results"] == {"prepare": {}, "provision_new": {"issued": 1},
                                   "revoke_old": {"reason": "cessationOfOperation"}, "publish": {},
                                   "wipe_old": {"wiped": True}, "done": {}}
    with sessions() as s:
        events = [(e.actor, e.action) for e in s.query(AuditEvent).filter_by(subject=hid).order_by(AuditEvent.id)]
        failure = s.query(AuditEvent).filter_by(subject=hid, action="workflow.step_failed.provision_new").one()
    assert events == [("operator", "workflow.create.model_change"), ("cli:alice", "workflow.step.prepare"),
                      ("cli:alice", "workflow.step_failed.provision_new")] + [
        ("cli:bob", f"workflow.step.{step}") for step in handover.WORKFLOWS["model_change"][1:]]
    assert failure.detail == {"step": "provision_new", "error": "Crash: lost response"}


def test_each_kind_is_refused_without_the_phone_it_acts_on(sessions):
    """A model change needs the new phone (its credentials go there) and every kind but a
    renewal and a found needs the old one; refused naming what is missing, even when the
    phone given is the holder's, and nothing is recorded."""
    old = f"o-{uuid.uuid4().hex[:12]}"
    me = _holder(sessions, old)
    with pytest.raises(handover.WorkflowError, match="model_change needs the new phone"):
        handover.create(sessions, kind="model_change", holder_id=me, old_phone_id=old)
    for kind in ("model_change", "resale_report", "lost_hold", "lost_confirmed", "death", "basic_four_change"):
        with pytest.raises(handover.WorkflowError, match=f"{kind} needs the old phone"):
            handover.create(sessions, kind=kind, holder_id=me, new_phone_id=f"n-{uuid.uuid4().hex[:12]}")
    with sessions() as s:
        assert s.query(Handover).filter_by(holder_id=me).count() == 0
