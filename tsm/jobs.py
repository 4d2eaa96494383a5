"""Card content management as persisted, resumable jobs (specs/tsm.md, "Job model").

A job is an ordered script of step ids (``tsm.steps.script``) stored in ``tsm_jobs`` with
the index of the next step. :meth:`Tsm.run` takes the SE's lock, opens a fresh SCP03
session, and runs the remaining steps in order; after each step it commits, in one
transaction, the step's results, the new index and the step's audit records. A lost
response, a crash or any error leaves the index on the unfinished step; the next
:meth:`Tsm.run` opens a new session and re-runs that step, which reads the SE's state
and only completes what is missing.

Secrets (user-auth PIN, signing password, PUK) are never stored in clear: they are sealed
with AES-GCM under a key derived from the master key (bound to the job id) so another
worker can resume, and the sealed blob is erased when the job ends, or, for a provisioning
created with ``hold_secrets``, when its caller has shown them (:meth:`Tsm.release_secrets`):
a handover that provisions the new phone and then has steps to go keeps them until it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from sqlalchemy import Connection, Engine, Select, bindparam, func, select, update
from sqlalchemy.orm import Session

from tsm import records
from tsm.audit import AuditLog, last_quarantine_cause
from tsm.db import Bind, DriverStatement, JobRow, transaction, utcnow
from tsm.errors import JobError, JobInputError, LockLostError, TsmError
from tsm.keys import MasterKey
from tsm.lock import FENCE, acquire, holds_row_lock, process_owner
from tsm.oce import OceCredential
from tsm.ports import IssuerPort
from tsm.session import DEFAULT_SECURITY_LEVEL, CardSession, SeLink, Transmit, open_session
from tsm.steps import JPKI_SLOTS, STEPS, script
from tsm.trace import Sink

KINDS = ("provision", "provision-mdoc", "refresh-mdoc", "delete-credentials", "rotate-keys",
         "reset-secrets", "rotate-kloc", "issue-sign", "renew-jpki", "read-jpki")
#: States a job never leaves: done (its last step committed) and abandoned (an operator's
#: decision that it will not finish: :meth:`Tsm.abandon`)
ENDED = ("done", "abandoned")
#: Every state of a job: made (pending), running, stopped by an error or a lost answer
#: (interrupted, to be run again), and the two it never leaves
STATES = ("pending", "running", "interrupted", *ENDED)
_PIN = re.compile(r"[0-9]{4}")
_PASSWORD = re.compile(r"[A-Z0-9]{6,16}")
_PUK = re.compile(r"[0-9]{8}")
#: Width of a lock's owner: the worker's actor, "/" and 8 hex digits
#: Widths of an SE id and an actor as the job and audit tables keep them (SQLite would keep a
#: longer one, PostgreSQL refuses it: checked here so that both backends answer alike)
SE_ID_MAX = JobRow.__table__.c.se_id.type.length
ACTOR_MAX = JobRow.__table__.c.actor.type.length


def _check_text(what: str, value: object, width: int) -> str:
    """``value`` as a non-empty str of at most ``width`` characters without a NUL, or
    :class:`JobInputError` naming ``what``."""
    if not isinstance(value, str) or not value:
        raise JobInputError(f"{what} {value!r} is not a non-empty string")
    if len(value) > width:
        raise JobInputError(f"{what} {value[:40]!r}... has {len(value)} characters; at most {width} are kept")
    if "\x00" in value:
        raise JobInputError(f"{what} {value[:40]!r} holds a NUL character")
    return value


def _reason(what: str, reason: object) -> str:
    """An operator's reason, as the audit keeps it (no NUL), or :class:`JobInputError` when
    there is none: ``what`` names the decision it is for."""
    if not isinstance(reason, str) or not reason.strip():
        raise JobInputError(f"{what} needs a reason (it is audited)")
    return reason.replace("\x00", "")


@dataclass(frozen=True)
class JobSecrets:
    """PINs for a provisioning run; kept in memory, sealed in the DB, never logged.
    ``signing_password`` is None for a job that sets none (no signing key: a holder under 15),
    ``user_auth_pin`` for one that sets only the signing password (``issue-sign``)."""

    user_auth_pin: str | None
    signing_password: str | None
    puk: str | None = None

    def __post_init__(self) -> None:
        if self.user_auth_pin is not None and not _PIN.fullmatch(self.user_auth_pin):
            raise JobInputError("user_auth_pin must be exactly 4 digits")
        if self.signing_password is not None and not _PASSWORD.fullmatch(self.signing_password):
            raise JobInputError("signing_password must be 6-16 characters of A-Z and 0-9")
        if self.puk is not None and not _PUK.fullmatch(self.puk):
            raise JobInputError("puk must be exactly 8 digits")

    def __repr__(self) -> str:
        return "JobSecrets(<hidden>)"

    def to_bytes(self) -> bytes:
        return json.dumps({"pin": self.user_auth_pin, "password": self.signing_password,
                           "puk": self.puk}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> JobSecrets:
        d = json.loads(raw)
        return cls(d["pin"], d["password"], d["puk"])


@dataclass(frozen=True)
class JobLine:
    """What a listing of jobs shows of one (``mcred tsm jobs``, ``GET /tsm-jobs``): not its
    input or results (a provisioning's results carry its certificates and MSOs, some 20 kB)."""

    id: str
    se_id: str
    kind: str
    state: str
    steps: tuple[str, ...]
    next_step: int
    actor: str
    attempts: int
    error: str | None
    #: When it was made, and when it last moved (a step done, a failure, a run started):
    #: how long a stopped job has waited. Aware UTC; None for a job not from the registry.
    created_at: dt.datetime | None = field(default=None, kw_only=True)
    updated_at: dt.datetime | None = field(default=None, kw_only=True)

    @property
    def current_step(self) -> str | None:
        return self.steps[self.next_step] if self.next_step < len(self.steps) else None


@dataclass(frozen=True)
class JobView(JobLine):
    """A snapshot of a job's row (no secrets): its line, with its input and results."""

    input: dict
    results: dict


def _jobs_query(columns: Sequence, se_id: str | None = None, *, se_ids: Sequence[str] | None = None,
                kind: str | None = None, unfinished: bool = False, limit: int | None = None,
                offset: int = 0) -> Select:
    """``columns`` of the jobs a listing asks for, oldest first (on ``ix_tsm_jobs_created``),
    ``limit`` of them from ``offset``: of the SE ``se_id`` or of any of ``se_ids``, of one
    ``kind``, only those not ended."""
    q = select(*columns).order_by(JobRow.created_at, JobRow.id).offset(offset).limit(limit)
    if se_id is not None:
        q = q.where(JobRow.se_id == se_id)
    if se_ids is not None:
        q = q.where(JobRow.se_id.in_(list(se_ids)))
    if kind is not None:
        q = q.where(JobRow.kind == kind)
    if unfinished:
        q = q.where(JobRow.state.not_in(ENDED))
    return q


def list_jobs(bind: Bind, se_id: str | None = None, *, kind: str | None = None,
              unfinished: bool = False, limit: int | None = None, offset: int = 0,
              se_ids: Sequence[str] | None = None) -> list[JobView]:
    """Jobs from the registry, oldest first, ``limit`` of them from ``offset`` (no key
    needed: ``mcred tsm jobs``, and finding the job to resume after a failure), of the SE
    ``se_id`` or of any of ``se_ids``; on a Connection in a transaction, read in that
    transaction."""
    q = _jobs_query([JobRow], se_id, se_ids=se_ids, kind=kind, unfinished=unfinished, limit=limit, offset=offset)
    with Session(bind) as s, s.begin():  # committed: see issuer.jpki.ca.JpkiCa.generations
        return [_view(r) for r in s.scalars(q)]


def count_jobs(bind: Bind, se_id: str | None = None, *, unfinished: bool = False) -> int:
    """How many jobs :func:`list_jobs` would give (``mcred doctor``: the unfinished ones),
    counted by the database, none of them read."""
    q = _jobs_query([JobRow.id], se_id, unfinished=unfinished).order_by(None).subquery()
    connect = bind.connect() if isinstance(bind, Engine) else contextlib.nullcontext(bind)
    with connect as conn:
        return conn.execute(select(func.count()).select_from(q)).scalar_one()


_LINE = (JobRow.id, JobRow.se_id, JobRow.kind, JobRow.state, JobRow.steps, JobRow.next_step, JobRow.actor,
         JobRow.attempts, JobRow.error, JobRow.created_at, JobRow.updated_at)


def job_lines(bind: Bind, se_id: str | None = None, *, unfinished: bool = False, limit: int | None = None,
              offset: int = 0) -> Iterator[JobLine]:
    """:func:`list_jobs`' jobs as :class:`JobLine`, read a batch at a time as they are
    consumed: a listing of every job of a large installation holds neither every row nor
    any job's results in memory (``mcred tsm jobs`` at 20,840 jobs held 1.1 GB)."""
    q = _jobs_query(_LINE, se_id, unfinished=unfinished, limit=limit, offset=offset)
    connect = bind.connect() if isinstance(bind, Engine) else contextlib.nullcontext(bind)
    with connect as conn:
        for row in conn.execute(q.execution_options(yield_per=500)):
            yield JobLine(row.id, row.se_id, row.kind, row.state, tuple(row.steps), row.next_step, row.actor,
                          row.attempts, row.error, created_at=row.created_at, updated_at=row.updated_at)


def read_job(bind: Bind, job_id: str) -> JobView:
    """One job from the registry (no key needed); :class:`JobError` when there is none."""
    return _read_job(bind, job_id)[0]


def _view(row: JobRow) -> JobView:
    return JobView(row.id, row.se_id, row.kind, row.state, tuple(row.steps), row.next_step, row.actor,
                   row.attempts, row.error, input=dict(row.input), results=dict(row.results),
                   created_at=row.created_at, updated_at=row.updated_at)


def _check_input(kind: str, se_id: str, job_input: dict, secrets: JobSecrets | None) -> dict:
    if kind not in KINDS:
        raise JobInputError(f"job kind {kind!r} is not one of {', '.join(KINDS)}")
    out = {"phone_id": str(job_input.get("phone_id", se_id))}
    if kind in ("provision", "provision-mdoc", "refresh-mdoc"):
        alg = job_input.get("algorithm", "p384")
        if kind == "provision" and alg not in ("rsa2048", "p384"):
            raise JobInputError(f"algorithm {alg!r} is neither rsa2048 nor p384")
        count = job_input.get("mdoc_count", 0 if kind == "provision" else 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 16:
            raise JobInputError(f"mdoc_count {count!r} is not an integer 0..16")
        if kind in ("provision-mdoc", "refresh-mdoc") and count < 1:
            raise JobInputError(f"{kind} needs mdoc_count >= 1")
        out.update(algorithm=alg, mdoc_count=count)
        if kind == "refresh-mdoc":
            rotate = job_input.get("rotate", True)
            if not isinstance(rotate, bool):
                raise JobInputError(f"rotate {rotate!r} is not a boolean")
            out.update(rotate=rotate)
        if kind == "provision":
            if secrets is None:
                raise JobInputError("a provision job needs the PIN and password (JobSecrets)")
            if secrets.user_auth_pin is None:
                raise JobInputError("a provision job needs the user-authentication PIN")
            slots = _jpki_slots(job_input.get("jpki_slots", list(JPKI_SLOTS)))
            if ("sign" in slots) != (secrets.signing_password is not None):
                raise JobInputError("a signing password goes with the sign slot, and only with it "
                                    f"(jpki_slots {slots})")
            out.update(jpki_slots=slots, puk=secrets.puk is not None)
            hold = job_input.get("hold_secrets", False)
            if not isinstance(hold, bool):
                raise JobInputError(f"hold_secrets {hold!r} is not a boolean")
            if hold:
                out.update(hold_secrets=True)
    if kind == "rotate-kloc":
        check = job_input.get("check", False)
        if not isinstance(check, bool):
            raise JobInputError(f"check {check!r} is not a boolean")
        out.update(check=check)
    if kind == "reset-secrets":
        slots = job_input.get("slots", ["auth", "sign"])
        if (not isinstance(slots, list | tuple) or not slots or len(set(slots)) != len(slots)
                or not set(slots) <= {"auth", "sign"}):
            raise JobInputError(f"slots {slots!r}: one or both of auth and sign")
        puk = job_input.get("puk", False)
        if not isinstance(puk, bool):
            raise JobInputError(f"puk {puk!r} is not a boolean")
        if secrets is None:
            raise JobInputError("a reset-secrets job needs the new secrets (JobSecrets)")
        if "sign" in slots and secrets.signing_password is None:
            raise JobInputError("resetting the signing password needs a new one in the job's secrets")
        if "auth" in slots and secrets.user_auth_pin is None:
            raise JobInputError("resetting the PIN needs a new one in the job's secrets")
        if puk and secrets.puk is None:
            raise JobInputError("resetting the PUK needs a new PUK in the job's secrets")
        out.update(slots=sorted(slots), puk=puk)
    if kind == "issue-sign":
        alg = job_input.get("algorithm")
        if alg not in ("rsa2048", "p384"):
            raise JobInputError(f"algorithm {alg!r} is neither rsa2048 nor p384 (the phone's user-authentication key's)")
        if secrets is None or secrets.signing_password is None:
            raise JobInputError("an issue-sign job needs the signing password (JobSecrets)")
        if secrets.user_auth_pin is not None or secrets.puk is not None:
            raise JobInputError("an issue-sign job sets the signing password only: no PIN, no PUK")
        out.update(algorithm=alg)
    if kind == "renew-jpki":
        alg = job_input.get("algorithm")
        if alg not in ("rsa2048", "p384"):
            raise JobInputError(f"algorithm {alg!r} is neither rsa2048 nor p384 (the renewed certificates' keys')")
        slots = job_input.get("slots")
        if (not isinstance(slots, list | tuple) or not slots or not all(isinstance(x, str) for x in slots)
                or len(set(slots)) != len(slots) or not set(slots) <= set(JPKI_SLOTS)):
            raise JobInputError(f"slots {slots!r}: one or both of sign and auth")
        if secrets is not None:
            raise JobInputError("a renew-jpki job sets no secret: the holder's PIN and password stay as they are")
        out.update(algorithm=alg, slots=[x for x in JPKI_SLOTS if x in slots])
    if kind == "read-jpki" and secrets is not None:
        raise JobInputError("a read-jpki job reads the JPKI applet's state: it takes no secret")
    known = ({"phone_id"} if kind == "read-jpki" else
             {"phone_id", "slots", "puk"} if kind == "reset-secrets" else
             {"phone_id", "algorithm", "slots"} if kind == "renew-jpki" else
             {"phone_id", "algorithm"} if kind == "issue-sign" else
             {"phone_id", "check"} if kind == "rotate-kloc" else
             {"phone_id", "algorithm", "mdoc_count"} | ({"rotate"} if kind == "refresh-mdoc" else set())
             | ({"hold_secrets", "jpki_slots"} if kind == "provision" else set()))
    unknown = set(job_input) - known
    if unknown:
        raise JobInputError(f"unknown job input field(s): {', '.join(sorted(unknown))}")
    return out


def _jpki_slots(slots: object) -> list[str]:
    """A provisioning's JPKI slots (input ``jpki_slots``): auth, with or without sign, in
    :data:`JPKI_SLOTS` order; :class:`JobInputError` for anything else. The user-
    authentication certificate is issued at any age; a holder under 15 gets no signing
    certificate, so no signing key and no password (``protocols.jpki.eligibility``)."""
    if (not isinstance(slots, list | tuple) or not all(isinstance(x, str) for x in slots)
            or len(set(slots)) != len(slots) or "auth" not in slots or not set(slots) <= set(JPKI_SLOTS)):
        raise JobInputError(f"jpki_slots {slots!r}: auth, or auth and sign")
    return [x for x in JPKI_SLOTS if x in slots]


@dataclass
class StepContext:
    """What a step sees: the open session, the job, its results, the issuer, secrets."""

    tsm: Tsm
    link: SeLink
    job: JobView
    step: str
    all_results: dict
    secrets: JobSecrets | None
    _session: CardSession | None
    results: dict = field(default_factory=dict)

    @property
    def session(self) -> CardSession:
        if self._session is None:
            self._session = open_session(self.link)
        return self._session

    def session_then_commit(self) -> CardSession:
        """:attr:`session` for a step that sends nothing through it: a session opened here
        has its counter and identity records committed with the step
        (:func:`tsm.session.open_session` ``with_step``)."""
        if self._session is None:
            self._session = open_session(self.link, with_step=True)
        return self._session

    def reopen(self, *, then_commit: bool = False) -> None:
        """A new session; ``then_commit``: the step sends nothing more (see
        :meth:`session_then_commit`)."""
        if self._session is not None:
            self._session.close()
        self._session = open_session(self.link, with_step=then_commit)

    @property
    def se_id(self) -> str:
        return self.job.se_id

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def job_ref(self) -> str:
        return self.job.id

    @property
    def kind(self) -> str:
        return self.job.kind

    @property
    def input(self) -> dict:
        return self.job.input

    @property
    def phone_id(self) -> str:
        return self.job.input["phone_id"]

    @property
    def issuer(self) -> IssuerPort:
        if self.tsm.issuer is None:
            raise JobError(f"step {self.step} needs the issuer, and none was given")
        return self.tsm.issuer

    def rng(self, n: int) -> bytes:
        return self.link.rng(n)

    def results_of(self, step: str) -> dict:
        return self.all_results.get(step, {})


#: Test hook: called with the step id after a step ran, before its completion is committed.
StepHook = Callable[[str], None]


class Tsm:
    """The SP-TSM: creates jobs and runs them against an SE's ``transmit``."""

    def __init__(self, engine: Engine, master: MasterKey, *, issuer: IssuerPort | None = None,
                 actor: str = "tsm", security_level: int = DEFAULT_SECURITY_LEVEL,
                 lock_timeout_s: float = 30.0, lease_s: float = 120.0,
                 clock: Callable[[], float] = time.time,
                 rng: Callable[[int], bytes] = os.urandom,
                 se_roots: Sequence[x509.Certificate] | None = None,
                 oce: OceCredential | None = None, require_scp11a: bool = False,
                 retired_oce: Sequence[OceCredential] = ()) -> None:
        """``se_roots``: the SE makers trusted at first contact. Given (even empty), a
        factory-fresh SE must prove itself with SCP11 and a certificate that chains to one
        of them before it is sent anything secret; None meets it with the published factory
        keys. ``oce``: the TSM's own SCP11a identity, with which it proves itself to an SE
        that offers SCP11a (an SE that does not is met with SCP11b, unless
        ``require_scp11a``). ``retired_oce``: its chains from KLOC CAs it rotated away from,
        shown to an SE that still names such a CA, whose CA-KLOC key the job then replaces
        with ``oce``'s CA (specs/tsm.md, "First contact", "Rotating the KLOC CA")."""
        self.engine = engine
        self.master = master
        self.issuer = issuer
        self.actor = _check_text("actor", actor, ACTOR_MAX)
        self.security_level = security_level
        self.lock_timeout_s = lock_timeout_s
        self.lease_s = lease_s
        self.clock = clock
        self.rng = rng
        self.se_roots = None if se_roots is None else tuple(se_roots)
        self.oce = oce
        self.require_scp11a = require_scp11a
        self.retired_oce = tuple(retired_oce)
        if self.retired_oce and oce is None:
            raise ValueError("retired_oce needs the TSM's current OCE identity (oce=)")
        if (oce is not None or require_scp11a) and se_roots is None:
            raise ValueError("SCP11a needs se_roots: the SE's certificate is checked before the TSM proves itself")
        if require_scp11a and oce is None:
            raise ValueError("require_scp11a needs the TSM's OCE identity (oce=)")

    # --- jobs ------------------------------------------------------------------------------

    def create_job(self, se_id: str, kind: str, job_input: dict | None = None,
                   secrets: JobSecrets | None = None, actor: str | None = None) -> str:
        _check_text("SE id", se_id, SE_ID_MAX)
        who = self.actor if actor is None else _check_text("actor", actor, ACTOR_MAX)
        clean = _check_input(kind, se_id, dict(job_input or {}), secrets)
        job_id = uuid.uuid4().hex
        sealed = self.master.seal(secrets.to_bytes(), job_id.encode()) if secrets else None
        steps = script(kind, clean)
        audit = AuditLog(who, se_id, job_id)
        audit.event("job-created", kind, steps=len(steps))
        with Session(self.engine) as s, s.begin():
            s.add(JobRow(id=job_id, se_id=se_id, kind=kind, state="pending", steps=steps,
                         next_step=0, input=clean, sealed_secrets=sealed, results={},
                         actor=who, attempts=0))
            s.flush()
            audit.flush(s.connection())
        return job_id

    def job(self, job_id: str) -> JobView:
        return _read_job(self.engine, job_id)[0]

    def jobs(self, se_id: str | None = None) -> list[JobView]:
        return list_jobs(self.engine, se_id)

    def clear_quarantine(self, se_id: str, actor: str, reason: str) -> None:
        """An operator's decision that a quarantined SE may be used again, as it is now
        (audited): see :func:`tsm.records.reenrol`. Under the SE's lock; an SE the TSM does
        not know, or one not quarantined, is a :class:`JobInputError`."""
        _check_text("SE id", se_id, SE_ID_MAX)
        _check_text("actor", actor, ACTOR_MAX)
        text = _reason("clearing a quarantine", reason)
        lock = acquire(self.engine, se_id, process_owner(actor), timeout_s=self.lock_timeout_s,
                       lease_s=self.lease_s, clock=self.clock)
        try:
            rec = records.load(self.engine, se_id)
            if rec is None:
                raise JobInputError(f"the TSM has no record of SE {se_id}")
            if rec.state != "suspect":
                raise JobInputError(f"SE {se_id} is not quarantined (state {rec.state})")
            # only an SE quarantined for answering with the factory keys is keyed again:
            # after a counter regression the keyset on record stays the one it must answer
            cause = last_quarantine_cause(self.engine, se_id)
            rekey = cause == "keyset-rollback"
            records.reenrol(self.engine, se_id, factory_keys=rekey)
            log = AuditLog(actor, se_id)
            log.event("quarantine-cleared", text[:96], cause=cause, kvn_was=rec.kvn,
                      outcome="counters forgotten" + ("; factory keyset on record, keyed again by the next "
                                                      "job" if rekey else ""))
            log.flush_now(self.engine)
        finally:
            lock.release()

    def abandon(self, job_id: str, actor: str, reason: str) -> JobView:
        """An operator's decision that a job will not finish (its phone is gone, its SE
        stays quarantined, the holder withdrew): under the SE's lock, the job's state
        becomes ``abandoned`` for good and its sealed secrets are erased; audited
        (job-abandoned). What its steps already did stays as it is: the caller revokes what
        was issued under the job and wipes the SE (:func:`mcred.provision.abandon`).

        A finished job is a :class:`JobInputError` (there is nothing left to abandon); an
        abandoned one is returned as it is (a retried call changes nothing)."""
        _check_text("actor", actor, ACTOR_MAX)
        text = _reason("abandoning a job", reason)[:200]
        se_id, state = _job_se(self.engine, job_id)
        if state == "abandoned":
            return self.job(job_id)
        if state == "done":
            raise JobInputError(f"job {job_id} is done: only an unfinished job can be abandoned")
        lock = acquire(self.engine, se_id, process_owner(actor), timeout_s=self.lock_timeout_s,
                       lease_s=self.lease_s, clock=self.clock)
        try:
            job = self.job(job_id)  # again under the lock: a run may have finished it
            if job.state == "done":
                raise JobInputError(f"job {job_id} finished meanwhile: there is nothing to abandon")
            if job.state == "abandoned":
                return job
            log = AuditLog(actor, se_id, job_id)
            log.event("job-abandoned", job.kind, reason=text[:96], stopped_before=job.current_step,
                      steps_done=job.next_step)
            with transaction(self.engine) as conn:
                conn.execute(_UPDATE_JOB, {"b_id": job_id, "updated_at": utcnow(), "state": "abandoned",
                                           "sealed_secrets": None, "error": f"abandoned by {actor}: {text}"})
                log.flush(conn)
            return self.job(job_id)
        finally:
            lock.release()

    # --- running ---------------------------------------------------------------------------

    def run(self, job_id: str, transmit: Transmit, *, secrets: JobSecrets | None = None,
            trace: Sink | None = None, after_step: StepHook | None = None,
            actor: str | None = None) -> JobView:
        """Run a job's remaining steps under the SE's lock; return its final view.
        Raises the step's :class:`TsmError` (the job stays resumable) on failure.

        With a lease lock (SQLite) the run holds one database connection for its
        bookkeeping (the job's first read, taking, checking and releasing the lease,
        records, the per-step commits), each statement a short transaction on it; the
        transaction that takes the lease also marks the job running and reads (at first
        contact: creates) the SE's record, and the last step's commit also releases the
        lease. A PostgreSQL row lock already keeps a connection per run, so
        there the bookkeeping borrows pooled connections rather than hold a second one
        (a pool sized for one connection per worker must not run dry); once the lock is
        held, one transaction marks the job running and reads (at first contact: creates)
        the SE's record, as the lease's does."""
        who = self.actor if actor is None else _check_text("actor", actor, ACTOR_MAX)
        # a lease's run connection serves from the first read to the release
        db: Connection | None = None if holds_row_lock(self.engine) else self.engine.connect()
        # what the lease's transaction did under it: the job started (or None: done), and
        # the SE's record and counters
        under_lease: list[tuple[JobView, bytes | None] | None] = []
        known: tuple[records.SeRecord, dict[int, int]] | None = None

        def with_lease(conn: Connection) -> None:
            nonlocal known
            started = _start_job(conn, job_id)
            if started is not None:
                known = records.load_or_create_with_counters(conn, started[0].se_id)
            under_lease[:] = [started]

        try:
            # the SE and state only (the whole row comes back from _start_job under the lock)
            se_id, state = _job_se(db if db is not None else self.engine, job_id)
            if state == "abandoned":
                raise JobError(f"job {job_id} was abandoned: it does not run again "
                               "(`mcred tsm jobs` shows by whom and why)")
            if state == "done":
                job = _read_job(db if db is not None else self.engine, job_id)[0]
                if db is not None:
                    db.close()
                return job
            lock = acquire(self.engine, se_id, process_owner(who), timeout_s=self.lock_timeout_s,
                           lease_s=self.lease_s, clock=self.clock, bind=db,
                           with_lease=with_lease if db is not None else None)
        except BaseException:
            if db is not None:
                db.close()
            raise
        audit = AuditLog(who, se_id, job_id)
        session: CardSession | None = None
        link: SeLink | None = None
        try:
            bind: Bind = db if db is not None else self.engine
            if db is None:  # a row lock: what a lease's transaction did, in one of its own
                with transaction(self.engine) as conn:
                    with_lease(conn)
            link = SeLink(bind, se_id, transmit, self.master, audit, trace,
                          self.security_level, self.rng, known=known, se_roots=self.se_roots,
                          clock=self.clock, oce=self.oce, require_scp11a=self.require_scp11a,
                          retired_oce=self.retired_oce)
            # re-read under the lock (in the transaction that took a lease, or just above)
            started = under_lease[0]
            if started is None:  # done (or abandoned) meanwhile
                ended = _read_job(bind, job_id)[0]
                if ended.state == "abandoned":
                    raise JobError(f"job {job_id} was abandoned while this run waited for the SE")
                return ended
            job, sealed = started
            if secrets is None and sealed is not None:
                secrets = JobSecrets.from_bytes(self.master.unseal(sealed, job_id.encode()))
            results = dict(job.results)
            update_step = _STEP_FENCED if lock.fenced else _STEP
            for index in range(job.next_step, len(job.steps)):
                step = job.steps[index]
                lock.check(bind)
                audit.step = step
                ctx = StepContext(self, link, job, step, results, secrets, session)
                STEPS[step](ctx)
                session = ctx._session
                if after_step is not None:
                    after_step(step)
                results[step] = ctx.results
                audit.event("step-done", step)
                last = index + 1 == len(job.steps)
                values: dict[str, object] = dict(next_step=index + 1, results=dict(results))
                if last:
                    values.update(state="done")
                    if not job.input.get("hold_secrets"):  # else kept for the caller to show
                        values.update(sealed_secrets=None)
                    audit.step = None
                    audit.event("job-done", job.kind)
                params = {"b_id": job_id, "updated_at": utcnow(), **values}
                if lock.fenced:
                    params.update(lock.fence_params())
                release = last and lock.fenced  # a lease ends with the job's last commit
                with transaction(bind) as conn:
                    # the step's session records (if it left them for this commit), its
                    # progress, fenced by the lease's owner and token (a worker whose lease
                    # passed records nothing), and its audit records
                    link.write_records(conn)
                    if update_step.execute(conn, params) != 1:
                        raise LockLostError(
                            f"lease of {lock.owner} on SE {job.se_id} expired or was taken over")
                    audit.flush(conn)
                    if release:
                        lock.release_in(conn)
                link.records_written()
                if release:  # committed: nothing left for the release in ``finally``
                    lock.released = True
            if job.next_step >= len(job.steps):  # nothing ran
                return _read_job(bind, job_id)[0]
            # the row as just written (no read back): results as JSON stores them
            return dataclasses.replace(job, state="done", next_step=len(job.steps),
                                       results=json.loads(json.dumps(results)), error=None)
        except (TsmError, KeyboardInterrupt) as exc:
            # a step that failed, or the operator stopping it (Ctrl-C): recorded as interrupted
            # with the reason (not left running, as after a crash, for the lock's lease to pass)
            why = "stopped by the operator" if isinstance(exc, KeyboardInterrupt) else str(exc)
            audit.event("job-failed", type(exc).__name__, error=why[:500])
            state = "interrupted" if not isinstance(exc, LockLostError) else "running"
            bind = db if db is not None else self.engine
            if link is not None:
                link.flush_records()  # a session the step authenticated (never lowers)
            _update_job(bind, job_id, state=state, error=f"{type(exc).__name__}: {why}")
            audit.flush_now(bind)
            raise
        except BaseException:
            # a crash of the worker (simulated in tests): what was sent is still audited
            # (and the counter of a session the step authenticated still recorded)
            if link is not None:
                link.flush_records()
            audit.flush_now(db if db is not None else self.engine)
            raise
        finally:
            if session is not None:
                session.close()
            try:
                lock.release()
            finally:
                if db is not None:
                    db.close()

    def held_secrets(self, job_id: str) -> JobSecrets | None:
        """The secrets of a finished provisioning created with ``hold_secrets``, until
        :meth:`release_secrets`; None when there are none (any other job, or released)."""
        job, sealed = _read_job(self.engine, job_id)
        if job.state != "done" or sealed is None:
            return None
        return JobSecrets.from_bytes(self.master.unseal(sealed, job_id.encode()))

    def release_secrets(self, job_id: str, actor: str) -> bool:
        """Erase a finished job's held secrets once its caller has shown them (audited
        ``secrets-released``); False when there were none. An unfinished job keeps its
        secrets: its resume needs them."""
        _check_text("actor", actor, ACTOR_MAX)
        job = _read_job(self.engine, job_id)[0]
        if job.state != "done":
            return False
        with transaction(self.engine) as conn:
            erased = conn.execute(update(_JOBS).where(_JOBS.c.id == job_id, _JOBS.c.state == "done",
                                                      _JOBS.c.sealed_secrets.is_not(None))
                                  .values(sealed_secrets=None, updated_at=utcnow())).rowcount
            if erased:
                log = AuditLog(actor, job.se_id, job_id)
                log.event("secrets-released", job.kind)
                log.flush(conn)
        return bool(erased)

    def _unseal(self, job_id: str) -> JobSecrets | None:
        sealed = _read_job(self.engine, job_id)[1]
        if sealed is None:
            return None
        return JobSecrets.from_bytes(self.master.unseal(sealed, job_id.encode()))


_JOBS = JobRow.__table__
_READ_JOB = select(_JOBS).where(_JOBS.c.id == bindparam("b_id"))
_UPDATE_JOB = update(_JOBS).where(_JOBS.c.id == bindparam("b_id"))


_JOB_SE = DriverStatement(select(_JOBS.c.se_id, _JOBS.c.state).where(_JOBS.c.id == bindparam("b_id")))


def _job_se(bind: Bind, job_id: str) -> tuple[str, str]:
    """A job's SE and state (no JSON to decode: the lock is taken on this)."""
    with transaction(bind) as conn:
        rows = _JOB_SE.rows(conn, {"b_id": job_id})
    if not rows:
        raise JobError(f"no job {job_id[:40]!r}")
    return rows[0].se_id, rows[0].state


def _read_job(bind: Bind, job_id: str) -> tuple[JobView, bytes | None]:
    """A job's view and its sealed secrets (one statement built once)."""
    with transaction(bind) as conn:
        row = conn.execute(_READ_JOB, {"b_id": job_id}).first()
    if row is None:
        raise JobError(f"no job {job_id[:40]!r}")
    return _view(row), row.sealed_secrets


_UPDATE_JOB_FENCED = _UPDATE_JOB.where(FENCE)
#: a step's progress (the hot loop: on SQLite straight on the driver, see DriverStatement)
_STEP, _STEP_FENCED = DriverStatement(_UPDATE_JOB), DriverStatement(_UPDATE_JOB_FENCED)
# a job not in ENDED, spelt without an IN list (a DriverStatement binds no list)
_START_JOB = (update(_JOBS).where(_JOBS.c.id == bindparam("b_id"), *(_JOBS.c.state != e for e in ENDED))
              .values(state="running", attempts=_JOBS.c.attempts + 1, error=None,
                      updated_at=bindparam("b_now")))
_START_JOB_RETURNING = DriverStatement(_START_JOB.returning(*_JOBS.c))


def _start_job(bind: Bind, job_id: str) -> tuple[JobView, bytes | None] | None:
    """Mark a job running (one more attempt) and return its view and sealed secrets, in
    one statement where the database can return the row it updated; None when the job has
    ended (done or abandoned)."""
    with transaction(bind) as conn:
        if conn.dialect.update_returning:
            rows = _START_JOB_RETURNING.rows(conn, {"b_id": job_id, "b_now": utcnow()})
            row = rows[0] if rows else None
            if row is None:
                _read_job(conn, job_id)  # raises for a missing job
                return None
            return _view(row), row.sealed_secrets
        job, sealed = _read_job(conn, job_id)
        if job.state in ENDED:
            return None
        conn.execute(_START_JOB, {"b_id": job_id, "b_now": utcnow()})
    return dataclasses.replace(job, state="running", attempts=job.attempts + 1, error=None), sealed


def _update_job(bind: Bind, job_id: str, **values: object) -> None:
    with transaction(bind) as conn:
        conn.execute(_UPDATE_JOB, {"b_id": job_id, "updated_at": utcnow(), **values})
