"""Handover and revocation workflows as persisted, resumable state machines.

A workflow is a row in ``handovers`` plus an ordered list of named steps (see
specs/handover.md). The issuer owns the bookkeeping: which step completed last, when each
step started and ended, what it returned, and the audit trail. The *actions* of the steps
(run a TSM job on a phone, revoke in the registry, publish) are handed in by the
composition root, because they cross parties; each action must be idempotent, i.e. check
the state it is about to change before changing it, so a crash after any step, followed by
:meth:`WorkflowRunner.run` again, ends in the same final state as an uninterrupted run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Handover, Holder, Phone, utcnow
from issuer.holders import is_erased

#: The step lists of every workflow kind (specs/handover.md names the reason each uses).
WORKFLOWS: dict[str, tuple[str, ...]] = {
    # 機種変更: old phone online, credentials move to a new phone.
    "model_change": ("prepare", "provision_new", "revoke_old", "publish", "wipe_old", "done"),
    # The owner reports a phone sold or given away without revocation.
    "resale_report": ("prepare", "revoke_old", "publish", "done"),
    # Lost phone: temporary hold (certificateHold, mdoc SUSPENDED).
    "lost_hold": ("prepare", "hold_old", "publish", "done"),
    # Lost phone found: user-auth hold released, signing certificate re-issued, mdoc VALID.
    "found": ("prepare", "release_auth", "reissue_sign", "release_mdoc", "publish", "done"),
    # Lost phone not found: the hold becomes a revocation.
    "lost_confirmed": ("prepare", "revoke_old", "publish", "done"),
    # Card renewed or basic four data changed: superseded, re-issued on the same phone.
    "renewal": ("prepare", "reissue_all", "publish", "done"),
    # Death: affiliationChanged, everything revoked, nothing re-issued.
    "death": ("prepare", "revoke_old", "publish", "done"),
    # 異動: a basic four datum changed (moved, name changed; the registry holds the new data,
    # issuer.holders.update): the signing certificate, which carries them, superseded and
    # re-issued on a new SE key; the mdoc re-issued with the new card data; the
    # user-authentication certificate, which carries none, untouched.
    "basic_four_change": ("prepare", "reissue_sign", "reissue_mdoc", "publish", "done"),
}

#: The revocation reason each workflow records (RFC 5280 names, as J-LIS uses them).
REASONS: dict[str, str] = {
    "model_change": "cessationOfOperation",
    "resale_report": "cessationOfOperation",
    "lost_hold": "certificateHold",
    "found": "removeFromCRL",
    "lost_confirmed": "cessationOfOperation",
    "renewal": "superseded",
    "death": "affiliationChanged",
    "basic_four_change": "superseded",
}


class WorkflowError(Exception):
    """A workflow could not be created or advanced."""


class UnknownWorkflow(WorkflowError):
    pass


class StepFailed(WorkflowError):
    """A step's action raised; the workflow stays resumable at that step."""

    def __init__(self, message: str, handover_id: str = "", step: str = "") -> None:
        super().__init__(message)
        #: The workflow to resume, and the step that failed.
        self.handover_id, self.step = handover_id, step


@dataclass(frozen=True)
class StepContext:
    """What an action is told about the workflow it serves."""

    handover_id: str
    kind: str
    holder_id: str
    old_phone_id: str | None
    new_phone_id: str | None
    reason: str
    step: str
    #: Results of the steps completed so far (``detail["results"]``).
    results: Mapping[str, dict]


Action = Callable[[StepContext], dict | None]


def create(
    sessions: sessionmaker[Session],
    *,
    kind: str,
    holder_id: str,
    old_phone_id: str | None = None,
    new_phone_id: str | None = None,
    actor: str = "operator",
) -> str:
    """Record a new workflow of ``kind`` and return its id (nothing runs yet)."""
    with sessions.begin() as s:
        return create_in(s, kind=kind, holder_id=holder_id, old_phone_id=old_phone_id,
                         new_phone_id=new_phone_id, actor=actor)


def create_in(s: Session, *, kind: str, holder_id: str, old_phone_id: str | None = None,
              new_phone_id: str | None = None, actor: str = "operator") -> str:
    """:func:`create` in the caller's transaction (with what made the workflow needed: a
    change of the holder's data, :func:`issuer.holders.update`)."""
    if kind not in WORKFLOWS:
        raise UnknownWorkflow(f"unknown workflow {kind!r}; known: {', '.join(WORKFLOWS)}")
    if kind == "model_change" and not new_phone_id:
        raise WorkflowError("model_change needs the new phone")
    if kind != "renewal" and kind != "found" and not old_phone_id:
        raise WorkflowError(f"{kind} needs the old phone")
    if old_phone_id and old_phone_id == new_phone_id:
        raise WorkflowError(f"the old and the new phone are both {old_phone_id}")
    holder = s.get(Holder, holder_id)
    if holder is not None and is_erased(holder.data):
        raise WorkflowError(f"holder {holder_id}'s personal data was erased (mcred holder forget): "
                            "nothing can be issued from it")
    # the phones must be this holder's (or, the new one, nobody's yet): a workflow names a
    # holder and acts on the phones, so another holder's phone would have its credentials
    # revoked or wiped under this holder's workflow
    old = s.get(Phone, old_phone_id) if old_phone_id else None
    if old_phone_id and (old is None or old.holder_id != holder_id):
        raise WorkflowError(f"the old phone {old_phone_id} does not carry holder {holder_id}'s credentials")
    new = s.get(Phone, new_phone_id) if new_phone_id else None
    if new is not None and new.holder_id not in (None, holder_id):
        raise WorkflowError(f"the new phone {new_phone_id} carries another holder's credentials")
    h = Handover(
        holder_id=holder_id,
        old_phone_id=old_phone_id,
        new_phone_id=new_phone_id,
        kind=kind,
        reason=REASONS[kind],
        step="created",
        state="running",
        detail={"results": {}, "timings": {}},
    )
    s.add(h)
    s.flush()
    s.add(AuditEvent(actor=actor, action=f"workflow.create.{kind}", subject=h.id,
                     detail={"holder": holder_id, "old": old_phone_id, "new": new_phone_id}))
    return h.id


#: A workflow's states: ``running`` (created, or between steps, or a run in progress),
#: ``failed`` (a step raised: resumable at it), ``done``.
STATES = ("running", "failed", "done")


def workflows(sessions: sessionmaker[Session], *, state: str | None = None, kind: str | None = None,
              holder_id: str | None = None, limit: int = 100, offset: int = 0) -> list[Handover]:
    """Workflows, newest first (last changed), filtered by ``state``, ``kind`` and holder;
    ``limit`` from ``offset``. Detached rows."""
    if state is not None and state not in STATES:
        raise WorkflowError(f"state {state!r}: one of {', '.join(STATES)}")
    if kind is not None and kind not in WORKFLOWS:
        raise UnknownWorkflow(f"unknown workflow {kind!r}; known: {', '.join(WORKFLOWS)}")
    query = select(Handover)
    if state is not None:
        query = query.where(Handover.state == state)
    if kind is not None:
        query = query.where(Handover.kind == kind)
    if holder_id is not None:
        query = query.where(Handover.holder_id == holder_id)
    with sessions() as s:
        rows = list(s.scalars(query.order_by(Handover.updated_at.desc(), Handover.id)
                              .limit(limit).offset(offset)))
        s.expunge_all()
    return rows


class WorkflowRunner:
    """Runs a workflow's remaining steps with the given actions, persisting after each."""

    def __init__(self, sessions: sessionmaker[Session], actions: Mapping[str, Action], *,
                 actor: str = "operator", clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._sessions = sessions
        self._actions = actions
        self._actor = actor
        self._clock = clock

    def remaining(self, handover_id: str) -> Sequence[str]:
        with self._sessions() as s:
            h = self._get(s, handover_id)
            steps = WORKFLOWS[h.kind]
            if h.step == "created":
                return steps
            return steps[steps.index(h.step) + 1:]

    @staticmethod
    def _get(s: Session, handover_id: str) -> Handover:
        h = s.get(Handover, handover_id)
        if h is None:
            raise WorkflowError(f"no workflow {handover_id!r}")
        return h

    def run(self, handover_id: str, *, stop_after: str | None = None) -> Handover:
        """Run the remaining steps; ``stop_after`` ends early after that step (drills use it
        to simulate a crash at a step boundary)."""
        for step in self.remaining(handover_id):
            self._run_step(handover_id, step)
            if step == stop_after:
                break
        with self._sessions() as s:
            return self._get(s, handover_id)

    def _run_step(self, handover_id: str, step: str) -> None:
        with self._sessions() as s:
            h = self._get(s, handover_id)
            ctx = StepContext(
                handover_id=h.id, kind=h.kind, holder_id=h.holder_id,
                old_phone_id=h.old_phone_id, new_phone_id=h.new_phone_id,
                reason=h.reason or "", step=step, results=dict(h.detail.get("results", {})),
            )
        started = self._clock()
        t0 = time.perf_counter()
        action = self._actions.get(step)
        if action is None and step not in ("prepare", "done"):
            raise WorkflowError(f"no action for step {step!r} of {ctx.kind}")
        try:
            result = (action(ctx) if action else None) or {}
        except Exception as exc:
            with self._sessions.begin() as s:
                h = self._get(s, handover_id)
                h.state = "failed"
                detail = dict(h.detail)
                detail["error"] = {"step": step, "error": f"{type(exc).__name__}: {exc}"}
                h.detail = detail
                h.updated_at = self._clock()
                s.add(AuditEvent(actor=self._actor, action=f"workflow.step_failed.{step}",
                                 subject=handover_id, detail=detail["error"]))
            raise StepFailed(f"step {step!r} of workflow {handover_id} failed: {exc}", handover_id, step) from exc
        elapsed = time.perf_counter() - t0
        with self._sessions.begin() as s:
            h = self._get(s, handover_id)
            detail = dict(h.detail)
            detail["results"] = {**detail.get("results", {}), step: result}
            detail["timings"] = {**detail.get("timings", {}),
                                 step: {"started": started.isoformat(), "seconds": elapsed}}
            detail.pop("error", None)
            h.detail = detail
            h.step = step
            h.state = "done" if step == "done" else "running"
            h.updated_at = self._clock()
            s.add(AuditEvent(actor=self._actor, action=f"workflow.step.{step}",
                             subject=handover_id, detail={"seconds": elapsed}))
