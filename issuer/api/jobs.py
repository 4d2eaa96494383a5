"""Long work as jobs with a status resource: ``POST`` creates one (202 + ``Location``),
``GET /jobs/{id}`` gives its state, progress and result (specs/api.md).

A job is a row in ``api_jobs`` (Alembic revision ``i0003jobs``) run by a thread pool in
the API process. States: ``queued -> running -> succeeded | failed``, and ``interrupted``
for a job whose process went away: every runner refreshes ``heartbeat_at`` of its live jobs
every few seconds, and a job still queued or running whose heartbeat is older than
``stale_after`` is marked ``interrupted`` (at a runner's start, and whenever it is read).
Several API processes may share the table; each only runs what it was handed.
A job may hold something for its work from the moment it is queued (``submit(hold=...)``: a
workflow's lease, ``issuer.handover.Hold``): the runner renews it while the job is queued or
running and releases it when the job ends, or when the job will never start (the service
stopped before it did: the job is marked ``interrupted``).
The work functions are given by the composition root (``register``); they are called with
the job's parameters and a ``progress(fraction, note)`` callback and return a JSON-able dict.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import JSON, Float, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from dbtypes import UtcDateTime
from issuer.db import IssuerBase, new_id, utcnow

log = logging.getLogger("mcred.jobs")

QUEUED, RUNNING, SUCCEEDED, FAILED, INTERRUPTED = (
    "queued", "running", "succeeded", "failed", "interrupted")
LIVE = (QUEUED, RUNNING)

_DATE_TIME = {"format": "date-time"}


class JobFailure(BaseModel):
    """Why a job did not succeed: ``failed`` (the error) or ``interrupted`` (its process went
    away)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="the error's class, or interrupted")
    problem: str | SkipJsonSchema[None] = Field(None, pattern="^/problems/", description=(
        "the problem type a route answering the same error gives (/problems/se-state, ...); "
        "absent for an interrupted job"))
    detail: str


class JobBody(BaseModel):
    """A job as :meth:`JobView.as_dict` answers it: the envelope every kind shares. The
    composition root, which registers the kinds, declares each one's ``kind``, ``params``
    and ``result`` by a subclass (``mcred.api_models``); this base leaves them open."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^[0-9a-f]{32}$")
    kind: str
    state: Literal["queued", "running", "succeeded", "failed", "interrupted"]
    progress: float = Field(ge=0, le=1)
    note: str = Field(description="what it is doing now")
    params: dict[str, Any] = Field(description="what it was asked to do (never a secret)")
    result: dict[str, Any] | None = Field(description="what it did, once succeeded (never a secret); "
                                                      "null before, and when it failed")
    error: JobFailure | None
    created_at: str = Field(json_schema_extra=_DATE_TIME)
    started_at: str | None = Field(json_schema_extra=_DATE_TIME)
    finished_at: str | None = Field(json_schema_extra=_DATE_TIME)


#: The ``Location`` of every ``202``: the job's own resource.
JOB_LOCATION = {"Location": {"required": True, "description": "/jobs/{id}",
                             "schema": {"type": "string", "pattern": "^/jobs/[0-9a-f]{32}$"}}}


def accepted(model: Any = JobBody, description: str = "the job, queued: follow Location "  # noqa: ANN401
             "(GET /jobs/{id}) for its progress and result") -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that answers ``202`` with ``Location`` and ``model`` (the job,
    or a body that holds it)."""
    return {202: {"description": description, "headers": JOB_LOCATION, "model": model}}


Progress = Callable[[float, str], None]
Work = Callable[[dict, Progress], dict | None]


class Hold(Protocol):
    """What a job holds for its work from the moment it is queued (``issuer.handover.Hold``, a
    workflow's lease): renewed every :attr:`every` seconds while the job is queued or running,
    released when it ends or will never start."""

    @property
    def every(self) -> float: ...

    def renew(self) -> bool:
        """Extend it; False once it is not held any more (nothing left to renew)."""
        ...

    def release(self) -> object: ...


class Job(IssuerBase):
    """One job of the HTTP API."""

    __tablename__ = "api_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    #: The scope that created it: only tokens allowed that scope may read it.
    scope: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    note: Mapped[str] = mapped_column(String(256), default="")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[dict | None] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(128))
    runner: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


@dataclass(frozen=True)
class JobView:
    """A job as the API shows it."""

    id: str
    kind: str
    scope: str
    state: str
    progress: float
    note: str
    params: dict
    result: dict | None
    error: dict | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @classmethod
    def of(cls, j: Job) -> JobView:
        def iso(t: dt.datetime | None) -> str | None:
            return t.isoformat() if t else None

        return cls(j.id, j.kind, j.scope, j.state, j.progress, j.note, dict(j.params or {}),
                   j.result, j.error, iso(j.created_at) or "", iso(j.started_at),
                   iso(j.finished_at))

    def as_dict(self) -> dict[str, Any]:
        """The job as the API answers it: an error's detail without the server's paths
        (:func:`issuer.api.problems.redact`), as every problem's."""
        from issuer.api.problems import redact

        error = self.error
        if isinstance(error, dict) and isinstance(error.get("detail"), str):
            error = {**error, "detail": redact(error["detail"])}
        return {"id": self.id, "kind": self.kind, "state": self.state,
                "progress": self.progress, "note": redact(self.note), "params": self.params,
                "result": self.result, "error": error, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at}


class UnknownJobKind(Exception):
    """No work function is registered for a job kind."""


class JobRunner:
    """Runs jobs on a thread pool and keeps their rows current."""

    def __init__(self, sessions: sessionmaker[Session], *, workers: int = 8,
                 stale_after: dt.timedelta = dt.timedelta(seconds=30),
                 heartbeat: float = 5.0) -> None:
        self._sessions = sessions
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mcred-job")
        self._work: dict[str, Work] = {}
        self.runner_id = uuid.uuid4().hex
        self._stale_after = stale_after
        self._interval = heartbeat
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        #: What the live jobs hold (:class:`Hold`), by job id, and the thread that renews it.
        self._holds: dict[str, Hold] = {}
        self._holds_lock = threading.Lock()
        self._holds_changed = threading.Event()
        self._keeper: threading.Thread | None = None

    def register(self, kind: str, work: Work) -> None:
        self._work[kind] = work

    def start(self) -> int:
        """Mark jobs of dead runners interrupted, start the heartbeat; returns how many."""
        n = self.recover()
        if self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                          name="mcred-job-heartbeat")
            self._beat.start()
        return n

    def shutdown(self, wait: bool = True) -> None:
        """Stop; ``wait``: run the queued jobs first (their holds kept while they wait), else
        cancel them (each marked interrupted and its hold released, :meth:`_never_started`)."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._stop.set()
        self._holds_changed.set()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.heartbeat()
            except Exception:  # noqa: BLE001 - a missed beat only risks a stale mark
                log.exception("job heartbeat failed")

    def heartbeat(self) -> None:
        with self._sessions.begin() as s:
            s.execute(update(Job).where(Job.runner == self.runner_id, Job.state.in_(LIVE))
                      .values(heartbeat_at=utcnow()))

    def recover(self, now: dt.datetime | None = None) -> int:
        """Mark live jobs of other runners whose heartbeat is stale as interrupted."""
        cutoff = (now or utcnow()) - self._stale_after
        with self._sessions.begin() as s:
            res = s.execute(
                update(Job).where(Job.state.in_(LIVE), Job.runner != self.runner_id,
                                  Job.heartbeat_at < cutoff)
                .values(state=INTERRUPTED, finished_at=utcnow(),
                        error={"type": "interrupted",
                               "detail": "the process running this job went away; "
                                         "create a new job to retry"}))
            return res.rowcount or 0

    def submit(self, kind: str, params: dict, *, scope: str, actor: str,
               private: dict | None = None, job_id: str | None = None,
               hold: Hold | None = None) -> JobView:
        """Record a queued job and hand it to the pool. ``private`` (secrets) is passed to
        the work function with ``params`` but never stored. ``job_id``: the id to give it
        (one a ``hold`` was taken in the name of); ``hold``: kept alive from now until the job
        ends, then released (:class:`Hold`); the caller releases it if this raises."""
        work = self._work.get(kind)
        if work is None:
            raise UnknownJobKind(f"no work registered for job kind {kind!r}")
        with self._sessions.begin() as s:
            job = Job(id=job_id or new_id(), kind=kind, scope=scope, state=QUEUED, params=params,
                      actor=actor, runner=self.runner_id, progress=0.0, note="")
            s.add(job)
            s.flush()
            view = JobView.of(job)
        if hold is not None:
            self._keep(view.id, hold)
        try:
            # the work acts as the job's actor (its audit records name the token, not "api")
            future = self._pool.submit(self._run, view.id, work, {"actor": actor, **params, **(private or {})})
        except BaseException:
            self._drop(view.id)
            raise
        future.add_done_callback(lambda f: self._never_started(view.id) if f.cancelled() else None)
        return view

    # --- what jobs hold: renewed while they are queued or running, released when they end --

    def _keep(self, job_id: str, hold: Hold) -> None:
        with self._holds_lock:
            self._holds[job_id] = hold
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep_loop, daemon=True, name="mcred-job-holds")
                self._keeper.start()
        self._holds_changed.set()

    def _drop(self, job_id: str) -> Hold | None:
        with self._holds_lock:
            return self._holds.pop(job_id, None)

    def _let_go(self, job_id: str) -> None:
        """Release what the job held (it ended, or never will start)."""
        hold = self._drop(job_id)
        if hold is not None:
            try:
                hold.release()
            except Exception:  # noqa: BLE001 - not renewed any more, it lapses by itself
                log.warning("could not release what job %s held", job_id, exc_info=True)

    def _keep_loop(self) -> None:
        """Renew each job's hold every ``hold.every`` seconds (the first one that long after
        it was taken) until the runner stops; a hold its work gave up is dropped."""
        due: dict[str, float] = {}
        while not self._stop.is_set():
            self._holds_changed.clear()
            with self._holds_lock:
                holds = dict(self._holds)
            now = time.monotonic()
            due = {job_id: due.get(job_id, now + hold.every) for job_id, hold in holds.items()}
            for job_id, hold in holds.items():
                if due[job_id] > now:
                    continue
                due[job_id] = now + hold.every
                try:
                    if not hold.renew():  # the work released it (or lost it): nothing to keep
                        with self._holds_lock:
                            if self._holds.get(job_id) is hold:
                                del self._holds[job_id]
                except Exception:  # noqa: BLE001 - the database hiccuped: the next round tries again
                    log.warning("could not renew what job %s holds", job_id, exc_info=True)
            soonest = min(due.values(), default=None)
            self._holds_changed.wait(None if soonest is None else max(0.0, soonest - time.monotonic()))

    def _never_started(self, job_id: str) -> None:
        """A queued job the pool cancelled (the service stopped): what it held is released now,
        not when its lease lapses, and the job is marked interrupted, as its client is to
        retry it."""
        self._let_go(job_id)
        try:
            self._set(job_id, state=INTERRUPTED, finished_at=utcnow(),
                      error={"type": "interrupted", "detail": "the service stopped before this job "
                                                              "started; create a new job to retry"})
        except Exception:  # noqa: BLE001 - left queued: the next runner's start marks it
            log.warning("could not mark job %s interrupted", job_id, exc_info=True)

    def _set(self, job_id: str, **values: Any) -> None:
        # Only a live job moves: one already marked interrupted (its runner was taken for
        # dead) keeps that state, since its client was told so and may have retried.
        with self._sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.state.in_(LIVE))
                      .values(heartbeat_at=utcnow(), **values))

    def _run(self, job_id: str, work: Work, params: dict) -> None:
        try:
            self._set(job_id, state=RUNNING, started_at=utcnow())

            def progress(fraction: float, note: str = "") -> None:
                self._set(job_id, progress=max(0.0, min(1.0, float(fraction))),
                          note=note[:256])

            try:
                result = work(params, progress) or {}
            finally:  # released before the job is seen ended: a client may start the next run then
                self._let_go(job_id)
            self._set(job_id, state=SUCCEEDED, progress=1.0, result=result,
                      finished_at=utcnow())
        except Exception as exc:  # noqa: BLE001 - the job's outcome is recorded, not raised
            from issuer.api.problems import problem_of

            problem = problem_of(exc)
            if problem.status < 500:  # a refusal a route would answer 4xx (a phone on hold, ...): a line
                log.warning("job %s refused: %s (%s)", job_id, exc, problem.uri)
            else:  # the service's own failure: the traceback, for the operator
                log.exception("job %s failed", job_id)
            try:
                # "problem": the type the same error has when a route answers it (se-state, ...)
                self._set(job_id, state=FAILED, finished_at=utcnow(),
                          error={"type": type(exc).__name__, "problem": problem.uri, "detail": "; ".join(
                              (str(exc), *getattr(exc, "__notes__", ())))[:2000]})
            except Exception:  # noqa: BLE001
                log.exception("could not record the failure of job %s", job_id)
        finally:
            self._let_go(job_id)  # if recording that it runs failed

    def get(self, job_id: str) -> JobView | None:
        with self._sessions() as s:
            job = s.get(Job, job_id)
            if job is None:
                return None
            if job.state in LIVE and job.runner != self.runner_id and \
                    job.heartbeat_at < utcnow() - self._stale_after:
                self.recover()
                s.refresh(job)
            return JobView.of(job)

    def list(self, *, kind: str | None = None, state: str | None = None,
             limit: int = 100, offset: int = 0, scopes: Iterable[str] | None = None) -> list[JobView]:
        """Newest first (then by id, so that pages neither skip nor repeat), ``limit`` from
        ``offset``; only jobs created under one of ``scopes`` when given (a token's view)."""
        with self._sessions() as s:
            q = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).offset(offset).limit(limit)
            if scopes is not None:
                q = q.where(Job.scope.in_(sorted(scopes)))
            if kind:
                q = q.where(Job.kind == kind)
            if state:
                q = q.where(Job.state == state)
            return [JobView.of(j) for j in s.scalars(q)]

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> JobView:
        """Block until the job leaves the live states (tests, CLI)."""
        deadline = threading.Event()
        waited = 0.0
        while True:
            view = self.get(job_id)
            if view is None or view.state not in LIVE or waited >= timeout:
                assert view is not None, f"no job {job_id}"
                return view
            deadline.wait(poll)
            waited += poll
