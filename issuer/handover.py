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
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, Handover, Holder, Phone, utcnow
from issuer.holders import is_erased

log = logging.getLogger("mcred.handover")

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


class WorkflowBusy(WorkflowError):
    """Another run holds the workflow (its lease has not lapsed): this run was refused before
    it did anything, or, ``lost`` the step it ran, found the workflow taken over by another
    run after its own lease lapsed, and recorded nothing of that step."""

    def __init__(self, handover_id: str, runner: str | None, since: dt.datetime | None,
                 until: dt.datetime | None, *, lost: str | None = None) -> None:
        #: The workflow, the run that holds it, since when, and until when its lease lasts.
        self.handover_id, self.runner, self.since, self.until = handover_id, runner, since, until
        held = (f"is being run by {runner or 'another run'}"
                + (f" since {_stamp(since)}" if since else "")
                + (f" (its lease lasts until {_stamp(until)} unless that run renews it)" if until else ""))
        if lost is not None:
            text = (f"workflow {handover_id} {held}: this run's lease lapsed while its step {lost!r} ran, "
                    "and that step's result was not recorded")
        else:
            text = (f"workflow {handover_id} {held}: nothing was done; wait for that run to end "
                    "(`mcred workflows` shows it), or, if it died, run this again once its lease has lapsed")
        super().__init__(text)


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

#: Why no MSO can be signed at an instant, read in the caller's session, or None: the
#: installation's own check (``issuer.mdoc.pki.MdocPki.issuance_refusal``, with the rollover
#: margin its PKI is configured with), handed in by the composition root.
MdocRefusal = Callable[[Session, dt.datetime], str | None]


def create(
    sessions: sessionmaker[Session],
    *,
    kind: str,
    holder_id: str,
    old_phone_id: str | None = None,
    new_phone_id: str | None = None,
    actor: str = "operator",
    mdoc_refusal: MdocRefusal | None = None,
    jpki_key_type: str | None = None,
) -> str:
    """Record a new workflow of ``kind`` and return its id (nothing runs yet). ``mdoc_refusal``:
    the installation's mdoc-issuance check (:data:`MdocRefusal`; the composition root's
    ``mcred.handover_actions.mdoc_refusal``), else the default PKI configuration's.
    ``jpki_key_type``: the key type its runner makes the certificates of a phone provisioned
    anew with (a model change, a renewal; default ``p384``, the runner's default), for the
    JPKI roots' refusal (:func:`_jpki_refusal`)."""
    with sessions.begin() as s:
        return create_in(s, kind=kind, holder_id=holder_id, old_phone_id=old_phone_id,
                         new_phone_id=new_phone_id, actor=actor, mdoc_refusal=mdoc_refusal,
                         jpki_key_type=jpki_key_type)


def _issuance_refusal(s: Session, kind: str, holder: Holder | None, target: Phone | None,
                      mdoc_refusal: MdocRefusal | None = None, jpki_key_type: str | None = None) -> str | None:
    """Why a workflow of ``kind`` would be refused by the issuer half-way, found before it is
    recorded: a model change and a renewal provision a phone with new mdocs from the
    holder's card (none from a card that has expired:
    :func:`issuer.holders.card_refusal`), and these and a change of the basic four data
    re-issue mdocs, which no IACA in its last months or past its end signs
    (:func:`issuer.mdoc.pki.issuance_refusal`, specs/issuer-keys.md "The mdoc IACA"). Started
    anyway, a renewal deleted the phone's applets before its provisioning was refused (and a
    model change registered the new phone), leaving the holder without credentials until the
    cause was gone. The IACA's last months are the installation's (``mdoc_refusal``, its PKI's
    rollover margin): read with the default margin, an installation configured with a shorter
    one had a workflow refused that its issuer would have gone through with, and with a longer
    one a workflow stopped half-way again. A change of the basic four data past the card's
    end is refused too: it re-issues the signing certificate and the mdocs, which the issuer
    refuses then, so it stopped half-way (the certificate revoked, nothing issued); every
    credential issued from the card ended with it, so nothing valid carries the old data, and
    the change belongs in the registry alone (``mcred.handover_actions.record_basic_four_change``
    records it so), for the card's renewal to issue. A workflow whose JPKI certificates would
    outlive their root is refused too (:func:`_jpki_refusal`)."""
    from issuer.holders import card_refusal
    from issuer.mdoc.pki import issuance_refusal

    now = utcnow()
    if kind in ("model_change", "renewal", "basic_four_change") and holder is not None:
        why = card_refusal(holder.id, holder.card_expiry, now)
        if why is not None:
            return why
    mdocs = kind in ("model_change", "renewal") or (
        kind == "basic_four_change" and target is not None and s.scalar(select(Credential.id).where(
            Credential.phone_id == target.id, Credential.kind == "mdoc",
            Credential.status.in_(("valid", "hold"))).limit(1)) is not None)
    why = (mdoc_refusal or issuance_refusal)(s, now) if mdocs else None
    return why or _jpki_refusal(s, kind, holder, target, jpki_key_type, now)


def _jpki_refusal(s: Session, kind: str, holder: Holder | None, target: Phone | None, key_type: str | None,
                  now: dt.datetime) -> str | None:
    """Why the JPKI certificates a workflow of ``kind`` issues would be refused now: one would
    outlive its slot's issuing root generation (:func:`issuer.jpki.issuance.issuance_refusal`;
    specs/issuer-keys.md "The JPKI root generations"), or None. A model change and a renewal
    provision a phone anew: both certificates (the signing one from 15) with ``key_type`` keys
    (the runner's, ``p384`` unless said); a change of the basic four data and a found re-issue
    the signing certificate of a phone that holds one (valid or on hold), on a key of its type
    (the SE makes it so); a found past the card's end issues none. Started anyway, the workflow
    stopped at its re-issuing step, a renewal's before it wiped the phone
    (``mcred.handover_actions``), to be resumed after the rollover: refused here, it is not
    recorded, as for the IACA's last months."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    from issuer.holders import card_refusal
    from issuer.jpki.issuance import issuance_refusal
    from protocols.birthdays import today_in_japan
    from protocols.jpki.eligibility import signing_eligible
    from protocols.jpki.profile import KeyType

    if holder is None or kind not in ("model_change", "renewal", "basic_four_change", "found"):
        return None
    try:
        birth = dt.date.fromisoformat(holder.data["birth_date"])
    except (KeyError, TypeError, ValueError):
        return None  # erased (refused above) or unknown: the issuance says so
    today = today_in_japan(now)
    if kind in ("model_change", "renewal"):
        slots: tuple[str, ...] = ("sign", "auth") if birth > today or signing_eligible(birth, today) else ("auth",)
        algorithm = key_type or "p384"
    else:
        body = s.scalar(select(Credential.body).where(
            Credential.phone_id == target.id, Credential.kind == "jpki-sign",
            Credential.status.in_(("valid", "hold"))).limit(1)) if target is not None else None
        if body is None or (kind == "found" and card_refusal(holder.id, holder.card_expiry, now) is not None):
            return None
        slots = ("sign",)
        rsa_key = isinstance(x509.load_der_x509_certificate(body).public_key(), rsa.RSAPublicKey)
        algorithm = "rsa2048" if rsa_key else "p384"
    refused = issuance_refusal(s, slots, KeyType(algorithm), birth, holder.card_expiry, now)
    return f"no JPKI {refused.slot} certificate can be issued now: {refused}" if refused is not None else None


def create_in(s: Session, *, kind: str, holder_id: str, old_phone_id: str | None = None,
              new_phone_id: str | None = None, actor: str = "operator",
              mdoc_refusal: MdocRefusal | None = None, jpki_key_type: str | None = None) -> str:
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
    # the phone the workflow acts on (a renewal's, or a found's without an old one, is given
    # as the new phone) in the state its kind is for: a phone handed over already carries
    # none of the holder's credentials (a lost_hold or a death of it did nothing while the
    # holder's live phone stayed valid, a model change from it moved that phone's
    # credentials without retiring it, a found or a renewal made it active again), and a
    # found ends a hold (of a phone never lost it re-keyed the signing certificate)
    target = old if old_phone_id else new if kind in ("renewal", "found") else None
    if target is not None and target.state == "retired":
        raise WorkflowError(f"phone {target.id} was handed over already (retired): its credentials went "
                            f"to holder {holder_id}'s next phone, which is the one to name")
    held = target is not None and s.scalar(select(Credential.id).where(
        Credential.phone_id == target.id, Credential.status == "hold").limit(1)) is not None
    if kind == "found":
        if target is None:
            raise WorkflowError("found needs the phone that was found")
        if not held:
            raise WorkflowError(f"nothing of phone {target.id} is on hold: a phone is found after it was "
                                "reported lost (lost_hold), whose hold the found lifts")
    # a renewal deletes the phone's applets, then provisions it: the issuer issues nothing to a
    # phone lost or revoked, so the workflow stopped there for good with the SE wiped; and a
    # hold is settled first (found, or lost_confirmed), as for a card renewal
    if kind == "renewal" and target is not None and (target.state != "active" or held):
        raise WorkflowError(f"phone {target.id} is {target.state}"
                            + (" with credentials on hold" if held else "")
                            + ": a renewal re-issues the credentials of a phone in use; settle a loss first "
                              "(found, or lost_confirmed)")
    why = _issuance_refusal(s, kind, holder, target, mdoc_refusal, jpki_key_type)
    if why is not None:
        raise WorkflowError(f"{kind} of holder {holder_id}: {why}")
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


# --- one run at a time: the lease ---------------------------------------------------------

#: Seconds a run's lease on a workflow lasts unless renewed. A run renews it with each step it
#: records and, while a step's action runs (a TSM job may take seconds, over the air more),
#: every quarter of it from a heartbeat thread; so only a run whose process died (kill -9, a
#: power cut) lets it lapse, and a resume takes the workflow over at most this long after.
LEASE_SECONDS = 60.0
_RUNNER_MAX = 200  # handovers.runner


def run_identity(actor: str, *, job: str | None = None) -> str:
    """Who a run is, as ``handovers.runner`` records it and a refused run is told: the actor,
    the host and process, and a random run id (two runs of one process are two runs); for a
    run the API queued as a job, that job's id instead (:func:`job_of`), so that whoever is
    refused is told which job holds the workflow."""
    run = f"job {job}" if job else f"run {secrets.token_hex(4)}"
    where = f" (host {socket.gethostname()}, pid {os.getpid()}, {run})"
    return actor[:_RUNNER_MAX - len(where)] + where


_JOB_RUN = re.compile(r", job ([0-9a-f]{32})\)$")


def job_of(runner: str | None) -> str | None:
    """The id of the API job a run identity (:func:`run_identity`) names, if it names one."""
    m = _JOB_RUN.search(runner or "")
    return m.group(1) if m else None


def _holder_of(sessions: sessionmaker[Session], handover_id: str) -> Handover:
    with sessions() as s:
        h = s.get(Handover, handover_id)
        if h is None:
            raise WorkflowError(f"no workflow {handover_id!r}")
        s.expunge(h)
        return h


def claim(sessions: sessionmaker[Session], handover_id: str, runner: str, *,
          now: dt.datetime | None = None, lease: float = LEASE_SECONDS, actor: str = "operator") -> None:
    """Take workflow ``handover_id`` for the run ``runner`` (:func:`run_identity`) until
    ``now`` + ``lease``: a compare-and-set on its row, so that of two runs claiming it at once
    exactly one wins, on SQLite and PostgreSQL alike. Renews the lease of a run that holds it
    already; takes over one whose lease lapsed (audited, ``workflow.takeover``, with the run it
    took it from). Raises :class:`WorkflowBusy` (changing nothing) while another run's lease
    lasts, :class:`WorkflowError` for no such workflow."""
    now = now or utcnow()
    until = now + dt.timedelta(seconds=lease)
    if renew(sessions, handover_id, runner, now=now, lease=lease):
        return
    for _ in range(5):  # each round: a holder seen, and a compare-and-set against it
        seen = _holder_of(sessions, handover_id)
        if seen.runner is not None and seen.lease_until is not None and seen.lease_until >= now:
            raise WorkflowBusy(handover_id, seen.runner, seen.run_since, seen.lease_until)
        with sessions.begin() as s:
            same = Handover.runner.is_(None) if seen.runner is None else Handover.runner == seen.runner
            taken = s.execute(update(Handover).where(
                Handover.id == handover_id, same,
                or_(Handover.lease_until.is_(None), Handover.lease_until < now))
                .values(runner=runner, run_since=now, lease_until=until)
                .execution_options(synchronize_session=False)).rowcount
            if taken == 1:
                if seen.runner is not None:
                    s.add(AuditEvent(actor=actor, action="workflow.takeover", subject=handover_id,
                                     detail={"from": seen.runner, "lease_until": seen.lease_until.isoformat()
                                             if seen.lease_until else None, "to": runner}))
                return
    seen = _holder_of(sessions, handover_id)
    raise WorkflowBusy(handover_id, seen.runner, seen.run_since, seen.lease_until)


def renew(sessions: sessionmaker[Session], handover_id: str, runner: str, *,
          now: dt.datetime | None = None, lease: float = LEASE_SECONDS) -> bool:
    """Extend ``runner``'s lease to ``now`` + ``lease``; False when it does not hold the
    workflow (any more)."""
    now = now or utcnow()
    with sessions.begin() as s:
        return s.execute(update(Handover).where(Handover.id == handover_id, Handover.runner == runner)
                         .values(lease_until=now + dt.timedelta(seconds=lease))
                         .execution_options(synchronize_session=False)).rowcount == 1


def release(sessions: sessionmaker[Session], handover_id: str, runner: str) -> bool:
    """Give the workflow up, if ``runner`` holds it (a run that lost it releases nothing)."""
    with sessions.begin() as s:
        return s.execute(update(Handover).where(Handover.id == handover_id, Handover.runner == runner)
                         .values(runner=None, run_since=None, lease_until=None)
                         .execution_options(synchronize_session=False)).rowcount == 1


@dataclass(frozen=True)
class Hold:
    """A claim (:func:`claim`) kept for a run that has not started: the API claims a workflow
    when it accepts a run and queues the run as a job; the job runner renews this every
    :attr:`every` seconds while the job waits in the queue and runs (``issuer.api.jobs``,
    ``JobRunner.submit(hold=...)``), and releases it when the job ends. So a queued run keeps
    the workflow however long it waits, and a second run is refused at once, naming the job;
    a service that dies with the job queued stops renewing, and the lease lapses as a killed
    run's does."""

    sessions: sessionmaker[Session]
    handover_id: str
    runner: str
    lease: float = LEASE_SECONDS

    @property
    def every(self) -> float:
        """Seconds between renewals: a quarter of the lease, as a running step's heartbeat."""
        return self.lease / 4

    def renew(self) -> bool:
        """:func:`renew`: False once the run no longer holds it (it ended and released it)."""
        return renew(self.sessions, self.handover_id, self.runner, lease=self.lease)

    def release(self) -> bool:
        """:func:`release`: nothing if the run gave it up already."""
        return release(self.sessions, self.handover_id, self.runner)


def lease_of(h: Handover, now: dt.datetime | None = None) -> dict | None:
    """The run that holds ``h`` while its lease lasts (``{"runner", "since", "until"}``),
    else None: what ``mcred workflows`` and ``GET /handovers`` show."""
    now = now or utcnow()
    if h.runner is None or h.lease_until is None or h.lease_until < now:
        return None
    return {"runner": h.runner, "since": h.run_since.isoformat() if h.run_since else None,
            "until": h.lease_until.isoformat()}


class _Heartbeat:
    """Renews a run's lease every quarter of it while a step runs (a thread)."""

    def __init__(self, renew_once: Callable[[], bool], every: float) -> None:
        self._renew, self._every = renew_once, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="workflow-lease", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._renew():
                    return  # taken over: the step's record will say so
            except Exception:  # noqa: BLE001 - the database hiccuped: the next beat tries again
                log.warning("could not renew a workflow lease", exc_info=True)


class WorkflowRunner:
    """Runs a workflow's remaining steps with the given actions, persisting after each.

    A run holds the workflow for itself while it runs (:meth:`holding`): a lease on its row
    (``runner``, ``run_since``, ``lease_until``), so that a second run of the same workflow
    is refused (:class:`WorkflowBusy`) before it does anything."""

    def __init__(self, sessions: sessionmaker[Session], actions: Mapping[str, Action], *,
                 actor: str = "operator", clock: Callable[[], dt.datetime] = utcnow,
                 run_as: str | None = None, lease: float = LEASE_SECONDS) -> None:
        self._sessions = sessions
        self._actions = actions
        self._actor = actor
        self._clock = clock
        #: Who this run is (:func:`run_identity`); given, it continues a claim made for it
        #: (the API claims a workflow when it accepts the run, the job runs it).
        self.run_as = run_as or run_identity(actor)
        self._lease = lease
        self._holding: set[str] = set()

    @contextmanager
    def holding(self, handover_id: str) -> Iterator[None]:
        """Hold the workflow for this run (:func:`claim`, :class:`WorkflowBusy` if another run
        does) and keep its lease alive until the block ends, then release it. Re-entrant:
        :meth:`run` inside it runs under the same hold."""
        if handover_id in self._holding:
            yield
            return
        claim(self._sessions, handover_id, self.run_as, now=self._clock(), lease=self._lease,
              actor=self._actor)
        self._holding.add(handover_id)
        try:
            with _Heartbeat(lambda: renew(self._sessions, handover_id, self.run_as, now=self._clock(),
                                          lease=self._lease), self._lease / 4):
                yield
        finally:
            self._holding.discard(handover_id)
            release(self._sessions, handover_id, self.run_as)

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
        """Run the remaining steps, holding the workflow (:meth:`holding`: refused with
        :class:`WorkflowBusy` while another run holds it); ``stop_after`` ends early after
        that step (drills use it to simulate a crash at a step boundary). A finished
        workflow is returned as it is."""
        if self.remaining(handover_id):
            with self.holding(handover_id):
                for step in self.remaining(handover_id):  # read again: what the last run left
                    self._run_step(handover_id, step)
                    if step == stop_after:
                        break
        with self._sessions() as s:
            return self._get(s, handover_id)

    def _hold(self, s: Session, handover_id: str, step: str) -> Handover:
        """The workflow's row in ``s``, once this run's lease is renewed in the same
        transaction (the row stays this run's until it commits); :class:`WorkflowBusy` if
        another run took it over."""
        now = self._clock()
        held = s.execute(update(Handover).where(Handover.id == handover_id, Handover.runner == self.run_as)
                         .values(lease_until=now + dt.timedelta(seconds=self._lease))
                         .execution_options(synchronize_session=False)).rowcount
        h = self._get(s, handover_id)
        if held != 1:
            raise WorkflowBusy(handover_id, h.runner, h.run_since, h.lease_until, lost=step)
        return h

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
                h = self._hold(s, handover_id, step)
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
            h = self._hold(s, handover_id, step)
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
