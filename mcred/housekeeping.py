"""Scheduled housekeeping: the issuer's time-driven work done on a schedule, not only when a
request happens to need it (specs/revocation.md section 8).

Every such piece of work already happens lazily in the service that owns it, when a request
asks for what it affects: a CRL near its nextUpdate is signed again when a relying party asks
for it, the VICAL CA stages its successor in its last months when the VICAL or its anchors are
asked for, a document signer rolls over at the next issuance, the TSA's unit (and root) at the
next time-stamp, a job left running by a process that went away is marked interrupted when it
is read. So nothing was done when nobody asked: the first relying party after a CRL's refresh
time waited for the signature, a reader never fetching ``/trust/vical-ca.pem`` in the VICAL
CA's window was never warned, and an older CA whose key is to be destroyed after its last CRL
issued none beyond its certificates' end unless someone asked.

Here each piece is a named :class:`Task`, a small function over a :class:`Context` that asks
the owning service's public methods for what a request would ask for (the trust bundle, the
VICAL and its CAs, every CRL of every root generation and partition, the status lists) and
says what that did (:class:`Done`): ``re-signed CRL 17 of mdoc-iaca-1``, ``staged
mdoc-vical-ca-2``, or nothing due. No PKI rule is written here: when a CRL is due, when a CA
stages or rolls over, what a CRL lists, stays the service's. Nothing is made before its first
use (no IACA, VICAL, JPKI CA or TSA is created by housekeeping: each task reports that there
is none yet).

:func:`run` runs tasks one by one, each isolated (a task that raises is recorded with its
error and the next one runs), and records each task's last run in ``task_runs``
(:mod:`issuer.task_runs`), read by ``mcred doctor`` and ``GET /metrics``. It audits only what
changes state that no service audits itself: API jobs marked interrupted
(``housekeeping.jobs.interrupted``). A staging or rollover is audited by the service that did
it (actor ``issuer``, ``automatic``); a CRL, status list or VICAL signed again is publication,
audited by no one, whether a request or housekeeping asked for it.

:class:`Housekeeper` is ``mcred serve``'s schedule: a thread that looks every
:data:`CHECK_EVERY` seconds (or the interval, if shorter) and runs the tasks whose last run,
by any process, is an interval old, under :func:`mcred.db.try_lock`: one process of ``mcred
serve --workers N`` at a time runs them, the others skip that look rather than queue.
``mcred housekeeping run`` runs them from a command line (cron, an operator).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from sqlalchemy import select

from issuer.db import utcnow
from mcred.context import Context
from mcred.db import try_lock

log = logging.getLogger("mcred.housekeeping")

#: ``mcred serve``'s interval, seconds (``--housekeeping-interval``; 0 turns it off)
DEFAULT_INTERVAL = 300.0
#: ``$MCRED_HOUSEKEEPING_INTERVAL``: the interval of the service's workers
#: (``uvicorn --factory mcred.service:app_from_env``; ``mcred serve --workers N`` sets it)
INTERVAL_ENV = "MCRED_HOUSEKEEPING_INTERVAL"
#: how often a process of the service looks whether a task is due, at most (seconds)
CHECK_EVERY = 30.0
#: how long after the service starts it looks first, at most (seconds): its first requests
#: are answered before housekeeping signs anything
START_DELAY = 5.0
#: the name of the cross-process lock (:func:`mcred.db.try_lock`)
LOCK_NAME = "housekeeping"
#: the audit actor of what the service's schedule changes (a command line's is its operator's)
ACTOR = "housekeeping"
#: how many changes a task's outcome names one by one before it counts the rest
NAMED = 5


class UnknownTask(ValueError):
    """A task name that is not one of :data:`TASKS` (the message names them)."""


@dataclass(frozen=True)
class Done:
    """What a task did: a line per change (``re-signed CRL 17 of mdoc-iaca-1``, ``staged
    mdoc-vical-ca-2``), none when nothing was due; ``checked``: what it looked at and left as
    it was (``4 CRL(s) current``)."""

    did: tuple[str, ...] = ()
    checked: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.did)

    def summary(self) -> str:
        if self.did:
            return "; ".join(self.did)
        return "nothing due" + (f" ({self.checked})" if self.checked else "")


@dataclass(frozen=True)
class Task:
    #: its name, for ``--only`` and the records (``jpki``, ``vical``, ...)
    name: str
    #: what it does, in a line (``mcred housekeeping tasks``)
    what: str
    #: the work: ``(context, audit actor) -> Done``
    work: Callable[[Context, str], Done]


@dataclass(frozen=True)
class TaskResult:
    """One task's run: whether it succeeded, what it did (``did``, ``checked``) or its error,
    when it started (the system clock) and how long it took."""

    task: str
    ok: bool
    did: tuple[str, ...]
    checked: str
    error: str | None
    started_at: dt.datetime
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.did)

    @property
    def outcome(self) -> str:
        """What it did, or its error."""
        return self.error if self.error is not None else Done(self.did, self.checked).summary()

    def to_json(self) -> dict:
        return {"task": self.task, "ok": self.ok, "changed": self.changed, "did": list(self.did),
                "outcome": self.outcome, "error": self.error, "started_at": self.started_at.isoformat(),
                "seconds": round(self.seconds, 3)}


# -- what the tasks share -------------------------------------------------------------------


def _keys(ctx: Context, purposes: Iterable[str]) -> dict[str, tuple[bool, bool]]:
    """The issuer keys of ``purposes``: label -> (active, revoked), to tell what a service
    made, staged, started or retired while a task asked it for something."""
    from issuer.db import IssuerKey

    with ctx.sessions() as s:
        rows = s.execute(select(IssuerKey.label, IssuerKey.active, IssuerKey.revoked_at)
                         .where(IssuerKey.purpose.in_(list(purposes)))).all()
    return {label: (bool(active), revoked is not None) for label, active, revoked in rows}


def _generation_order(label: str) -> tuple[str, int]:
    head, _, tail = label.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (label, 0)


def _key_changes(before: dict[str, tuple[bool, bool]], after: dict[str, tuple[bool, bool]]) -> list[str]:
    """What became of the keys between two :func:`_keys` readings: ``made X`` (a new key in
    use), ``staged X`` (a new one not in use yet), ``started X``, ``retired X``."""
    lines = [f"{'made' if after[label][0] else 'staged'} {label}"
             for label in sorted(after.keys() - before.keys(), key=_generation_order)]
    for label in sorted(after.keys() & before.keys(), key=_generation_order):
        if after[label][0] and not before[label][0]:
            lines.append(f"started {label}")
        elif before[label][0] and not after[label][0] and not after[label][1]:
            lines.append(f"retired {label}")
    return lines


def _stored(ctx: Context, key, value) -> dict:  # noqa: ANN001 - two columns of one table
    """``{key: value}`` of what a table holds of the published material (the number of each
    CRL kept, the ETag of each list token kept): read before a service is asked, and compared
    with what it answers, to tell a CRL or token it signed now from the one it served again."""
    with ctx.sessions() as s:
        return dict(s.execute(select(key, value)).all())


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _named(items: Sequence[str], what: str) -> str:
    """``what`` with the first :data:`NAMED` of ``items``, and how many more."""
    shown = ", ".join(items[:NAMED]) + (f" and {len(items) - NAMED} more" if len(items) > NAMED else "")
    return f"{what}: {shown}"


# -- the tasks ------------------------------------------------------------------------------


def jpki(ctx: Context, actor: str) -> Done:
    """The JPKI CAs, as relying parties find them: each root generation's trust bundle, the
    OCSP responder of each generation but a staged one (renewed in its last 30 days, as the
    OCSP service's next reload would), and the CRL of every partition of every root generation
    but a staged one, which issued nothing (the issuing
    one's for every partition, an older one's for those it issued in), signed again when
    less than an hour is left before its nextUpdate or a revocation marked it stale
    (``issuer.jpki.publication``). An older generation thus issues CRLs beyond its
    certificates' end without anyone asking, before its key is destroyed."""
    from issuer.db import Credential
    from issuer.jpki import partitions
    from issuer.jpki.ca import KIND, responder_purpose, root_purpose, staged_of
    from issuer.jpki.errors import GenerationEnded
    from issuer.jpki.models import JpkiCrlCache
    from issuer.key_destruction import KeyDestroyed
    from mcred.jpki_flow import jpki_issuer
    from protocols.jpki.profile import Purpose

    if not _keys(ctx, [root_purpose(p) for p in Purpose]):
        return Done(checked="no JPKI CA yet: set up at the first certificate (mcred jpki setup)")
    purposes = [f(p) for p in Purpose for f in (root_purpose, responder_purpose)]
    before = _keys(ctx, purposes)
    issuer = jpki_issuer(ctx)
    with ctx.sessions() as s:
        codes = partitions.all_codes(s)
        issued: dict[str, set[str]] = {}
        for label, code in s.execute(select(Credential.issuer_key, Credential.partition).distinct().where(
                Credential.kind.in_(list(KIND.values())), Credential.partition.is_not(None))):
            issued.setdefault(label, set()).add(code)
        kept = {(purpose, key): n for purpose, key, n in s.execute(
            select(JpkiCrlCache.purpose, JpkiCrlCache.partition, JpkiCrlCache.crl_number))}
    signed: list[str] = []
    current = ended = 0
    for purpose in Purpose:
        issuer.roots(purpose.value)  # the trust bundle, as a relying party takes it
        now = issuer.ca.clock()
        generations = issuer.ca.generations(purpose)
        staged = staged_of(generations, now)
        for gen in generations:
            if staged is not None and gen.label == staged.label:
                continue  # staged (mcred jpki stage): it issued nothing, and gets its responder when it starts
            if gen.key_destroyed_at is not None or not now < gen.certificate.not_valid_after_utc:
                ended += 1
                continue
            try:
                issuer.ca.responder(gen)
            except (GenerationEnded, KeyDestroyed):
                ended += 1
                continue
            for code in (codes if gen.active else sorted(issued.get(gen.label, ()))):
                der = issuer.crl(purpose.value, code, key_id=None if gen.active else gen.key_id)
                number = _number(x509.load_der_x509_crl(der))
                if kept.get((purpose.value, f"{gen.label}/{code}")) == number:
                    current += 1
                else:
                    signed.append(f"{gen.label}/{code} (CRL {number})")
    made = _key_changes(before, _keys(ctx, purposes))
    if made:
        issuer.ocsp.invalidate()  # a responder renewed here: this process's OCSP answers take it now
    did = made + ([_named(signed, f"re-signed {len(signed)} CRL(s)")] if signed else [])
    checked = f"{current} CRL(s) current" + (f", {ended} root generation(s) ended or destroyed" if ended else "")
    return Done(tuple(did), checked)


def tsa(ctx: Context, actor: str) -> Done:
    """The time-stamping authority: its unit (renewed in its last 90 days, with a new root
    generation in the root's last three years, the next root staged a year before that, as
    the next time-stamp would: issuer/tsa.py),
    its roots as relying parties take them, and each root's CRL signed again when the one it
    signed last has less than an hour left (or none was signed): so that an older root's CRL
    goes on being issued, beyond its units' end, without anyone asking."""
    from issuer.db import IssuerKey, TsaRootCrl
    from issuer.key_destruction import KeyDestroyed
    from issuer.tsa import CRL_REFRESH, PURPOSE_ROOT, PURPOSE_UNIT, generation_of
    from mcred.timestamps import time_stamp_authority

    purposes = (PURPOSE_ROOT, PURPOSE_UNIT)
    before = _keys(ctx, purposes)
    if not _keys(ctx, [PURPOSE_ROOT]):
        return Done(checked="no TSA yet: made at the first time-stamp")
    authority = time_stamp_authority(ctx)
    authority.unit()
    authority.roots()
    did = _key_changes(before, _keys(ctx, purposes))
    now = authority.clock()
    with ctx.sessions() as s:
        roots = s.execute(select(IssuerKey.label, IssuerKey.certificate, IssuerKey.key_destroyed_at)
                          .where(IssuerKey.purpose == PURPOSE_ROOT)).all()
        kept = {label: (n, due) for label, n, due in s.execute(
            select(TsaRootCrl.root_label, TsaRootCrl.crl_number, TsaRootCrl.next_update))}
    current = ended = 0
    for label, der, destroyed in sorted(roots, key=lambda r: generation_of(r[0])):
        if destroyed is not None or not now < x509.load_der_x509_certificate(der).not_valid_after_utc:
            ended += 1
            continue
        if label in kept and kept[label][1] - now > CRL_REFRESH:
            current += 1
            continue
        try:
            number = _number(x509.load_der_x509_crl(authority.crl(generation_of(label))))
        except KeyDestroyed:
            ended += 1
            continue
        if label in kept and kept[label][0] == number:
            current += 1
        else:
            did.append(f"{'re-signed' if label in kept else 'signed'} CRL {number} of {label}")
    checked = f"{current} root CRL(s) current" + (f", {ended} root(s) ended or destroyed" if ended else "")
    return Done(tuple(did), checked)


def iaca(ctx: Context, actor: str) -> Done:
    """The mdoc IACA and its signers: the document signer and status-list signer made or
    rolled over in their last 90 days (as the next issuance or list would:
    ``MdocService.setup``), the trust bundle readers take, and the CRL of every IACA
    generation that still issues one, signed again when less than an hour is left before its
    nextUpdate or a revocation marked it stale."""
    from issuer.key_destruction import KeyDestroyed
    from issuer.mdoc.errors import IacaEnded
    from issuer.mdoc.models import IacaCrl
    from issuer.mdoc.pki import PURPOSE_DS, PURPOSE_IACA, PURPOSE_STATUS, generation
    from mcred.mdoc_flow import mdoc_service

    svc = mdoc_service(ctx)
    if not svc.signers(PURPOSE_IACA):
        return Done(checked="no IACA yet: made at the first mdoc issuance")
    purposes = (PURPOSE_IACA, PURPOSE_DS, PURPOSE_STATUS)
    before = _keys(ctx, purposes)
    svc.setup()
    svc.trusted_iacas()
    did = _key_changes(before, _keys(ctx, purposes))
    current, ended = _ca_crls(
        svc.signers(PURPOSE_IACA),
        lambda info: info.revoked_at is not None or info.key_destroyed_at is not None
        or not svc.clock() < info.not_after,
        lambda label: svc.iaca_crl(generation(label)), (IacaEnded, KeyDestroyed),
        _stored(ctx, IacaCrl.iaca_label, IacaCrl.crl_number), did)
    checked = f"{current} IACA CRL(s) current" + (f", {ended} IACA(s) ended, revoked or destroyed" if ended else "")
    return Done(tuple(did), checked)


def _ca_crls(cas: Iterable, gone: Callable[[object], bool], crl_of: Callable[[str], bytes],
             ended: tuple[type[Exception], ...], kept: dict, did: list[str]) -> tuple[int, int]:
    """Ask each CA of ``cas`` (listing rows with a ``label``) that is not ``gone`` for its CRL
    (``crl_of(label)``), as a reader would; a CA that answers one of ``ended`` counts as
    ended. Each CRL whose number is not the one ``kept`` (label -> cRLNumber stored before)
    is said in ``did``; the counts of CAs current and ended."""
    current = done = 0
    for info in cas:
        if gone(info):
            done += 1
            continue
        try:
            number = _number(crl_of(info.label))
        except ended:
            done += 1
            continue
        if kept.get(info.label) == number:
            current += 1
        else:
            did.append(f"{'re-signed' if info.label in kept else 'signed'} CRL {number} of {info.label}")
    return current, done


def vical(ctx: Context, actor: str) -> Done:
    """The VICAL and its CAs, as a reader following them asks: ``/trust/vical-ca.pem`` (in the
    VICAL CA's last 180 days the next one is staged, in its last 90 started:
    ``MdocPki.vical_signer``), the VICAL (signed again once the published one is an hour old
    or its IACAs changed), and the CRL of every VICAL CA generation that still issues one."""
    from issuer.key_destruction import KeyDestroyed
    from issuer.mdoc.errors import VicalCaEnded
    from issuer.mdoc.models import IacaCrl, PublishedVical
    from issuer.mdoc.pki import PURPOSE_VICAL, PURPOSE_VICAL_CA, generation
    from mcred.mdoc_flow import mdoc_service
    from protocols import cbor
    from protocols.cose import Sign1

    svc = mdoc_service(ctx)
    if not svc.vical_ca_list():
        return Done(checked="no VICAL yet: made at the first one asked (mcred export vical, /trust/vical)")
    purposes = (PURPOSE_VICAL_CA, PURPOSE_VICAL)
    before = _keys(ctx, purposes)
    issued = set(_stored(ctx, PublishedVical.provider, PublishedVical.issue_id).values())
    svc.vical_cas()
    issue_id = cbor.loads(Sign1.decode(cbor.loads(svc.vical())).payload).get("vicalIssueID")
    did = _key_changes(before, _keys(ctx, purposes))
    if issue_id not in issued:
        did.append(f"{'re-signed' if issued else 'signed'} the VICAL (issue {issue_id})")
    current, ended = _ca_crls(
        svc.vical_ca_list(),
        lambda info: info.state == "withdrawn" or info.key_destroyed_at is not None
        or not svc.clock() < info.not_after,
        lambda label: svc.vical_ca_crl(generation(label)), (VicalCaEnded, KeyDestroyed),
        _stored(ctx, IacaCrl.iaca_label, IacaCrl.crl_number), did)
    checked = "the VICAL current, " + f"{current} VICAL CA CRL(s) current" + (
        f", {ended} VICAL CA(s) ended, withdrawn or destroyed" if ended else "")
    return Done(tuple(did), checked)


def status_lists(ctx: Context, actor: str) -> Done:
    """The Status List Token and the Identifier List Token of every list that holds an mdoc
    not yet expired (what readers ask for), signed again when its list changed or less than
    its ttl is left before its exp (``issuer.mdoc.publication``); a list of an IACA ended or
    withdrawn is left (it answers 410)."""
    from issuer.db import Credential, StatusList
    from issuer.key_destruction import KeyDestroyed
    from issuer.mdoc.errors import IacaEnded
    from issuer.mdoc.models import IdentifierListToken, StatusListToken
    from mcred.mdoc_flow import mdoc_service

    svc = mdoc_service(ctx)
    now = svc.clock()
    with ctx.sessions() as s:
        ids = list(s.scalars(select(StatusList.id).where(StatusList.id.in_(
            select(Credential.status_list_id).where(Credential.kind == "mdoc", Credential.not_after > now)))
            .order_by(StatusList.created_at, StatusList.id)))
    if not ids:
        return Done(checked="no list holds an mdoc that has not expired")
    kept = {"status": _stored(ctx, StatusListToken.list_id, StatusListToken.etag),
            "identifier": _stored(ctx, IdentifierListToken.list_id, IdentifierListToken.etag)}
    signed: dict[str, list[str]] = {"status": [], "identifier": []}
    current = ended = 0
    for list_id in ids:
        for what, token_of in (("status", svc.status_token), ("identifier", svc.identifier_token)):
            try:
                token = token_of(list_id)
            except (IacaEnded, KeyDestroyed):
                ended += 1
                break
            if kept[what].get(list_id) != token.etag:
                signed[what].append(list_id)
            else:
                current += 1
    did = tuple(_named(signed[what], f"re-signed {len(signed[what])} {what} list token(s)")
                for what in ("status", "identifier") if signed[what])
    checked = f"{current} token(s) current" + (f", {ended} list(s) of an IACA ended or withdrawn" if ended else "")
    return Done(did, checked)


def api_jobs(ctx: Context, actor: str) -> Done:
    """API jobs left queued or running by a process that went away (its heartbeat older than
    30 s) marked ``interrupted``, as a read of one of them would (``JobRunner.recover``), so
    that ``GET /jobs`` and ``/metrics`` stop counting them as live; audited
    ``housekeeping.jobs.interrupted`` (the runner does not audit it)."""
    from issuer.api.jobs import JobRunner
    from issuer.db import AuditEvent

    runner = JobRunner(ctx.sessions, workers=1)
    try:
        n = runner.recover()
    finally:
        runner.shutdown(wait=False)
    if not n:
        return Done(checked="no job left live by a process that went away")
    with ctx.sessions.begin() as s:
        s.add(AuditEvent(actor=actor, action="housekeeping.jobs.interrupted", subject="api_jobs",
                         detail={"count": n}))
    return Done((f"marked {n} API job(s) interrupted (their process went away)",))


def seram_relay(ctx: Context, actor: str) -> Done:
    """What processes that went away left in the GP SERAM relay's tables
    (``tsm.seram_relay.forget_stale``): session rows a day old, messages an hour old."""
    from tsm.seram_relay import forget_stale

    sessions, messages = forget_stale(ctx.engine)
    if not sessions and not messages:
        return Done(checked="no session or message left by a process that went away")
    return Done((f"forgot {sessions} GP SERAM session(s) and {messages} relayed message(s) of processes "
                 "that went away",))


#: Every task, in the order a run takes them.
TASKS: tuple[Task, ...] = (
    Task("jpki", "JPKI roots, OCSP responders, the CRL of every partition of every root generation", jpki),
    Task("tsa", "the TSA's unit and root (renewed, rolled over), each root's CRL", tsa),
    Task("iaca", "mdoc document and status-list signers rolled over, the trust bundle, each IACA's CRL", iaca),
    Task("vical", "the VICAL CA staged and started in its last months, the VICAL, each VICAL CA's CRL", vical),
    Task("status-lists", "the status and identifier list tokens of every list with an unexpired mdoc",
         status_lists),
    Task("api-jobs", "API jobs left running by a process that went away marked interrupted", api_jobs),
    Task("seram-relay", "GP SERAM relay rows left by processes that went away forgotten", seram_relay),
)


def select_tasks(only: Iterable[str] | None = None, tasks: Sequence[Task] = TASKS) -> list[Task]:
    """The tasks ``only`` names, in their run order (all of them when None);
    :class:`UnknownTask` for a name that is none."""
    if only is None:
        return list(tasks)
    wanted = list(dict.fromkeys(only))
    names = [t.name for t in tasks]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise UnknownTask(f"no housekeeping task {', '.join(map(repr, unknown))}: the tasks are {', '.join(names)}")
    return [t for t in tasks if t.name in wanted]


# -- running and recording ------------------------------------------------------------------


def run(ctx: Context, tasks: Sequence[Task], *, runner: str, actor: str,
        stop: threading.Event | None = None) -> list[TaskResult]:
    """Run ``tasks`` one after the other, each isolated: one that raises is recorded with its
    error (``Class: message``, the traceback in the log) and the next one runs. Each result
    is recorded in ``task_runs`` (who ran it: ``runner``); a record that cannot be written is
    logged, not raised. ``stop`` set: no task starts after the one running."""
    results = []
    for task in tasks:
        if stop is not None and stop.is_set():
            break
        started, t0 = utcnow(), time.perf_counter()
        try:
            done = task.work(ctx, actor)
        except Exception as exc:  # noqa: BLE001 - one task's failure is its own (recorded), not the run's
            log.exception("housekeeping task %s failed", task.name)
            text = " ".join(str(exc).split()) or "(no message)"
            result = TaskResult(task.name, False, (), "", f"{type(exc).__name__}: {text}", started,
                                time.perf_counter() - t0)
        else:
            result = TaskResult(task.name, True, done.did, done.checked, None, started, time.perf_counter() - t0)
        try:
            record(ctx, result, runner)
        except Exception:  # noqa: BLE001 - the work stands; only its record is missing
            log.exception("housekeeping: the run of %s could not be recorded", task.name)
        results.append(result)
    return results


def record(ctx: Context, result: TaskResult, runner: str) -> None:
    """``result`` as its task's last run in ``task_runs``, its counters moved on."""
    from sqlalchemy.exc import IntegrityError

    from issuer.task_runs import OUTCOME_MAX, TaskRun

    outcome = result.outcome
    outcome = outcome if len(outcome) <= OUTCOME_MAX else outcome[:OUTCOME_MAX - 3] + "..."
    for attempt in range(2):
        try:
            with ctx.sessions.begin() as s:
                row = s.get(TaskRun, result.task, with_for_update=True)
                if row is None:
                    row = TaskRun(task=result.task, runs=0, failures=0)
                    s.add(row)
                row.runs += 1
                row.failures += 0 if result.ok else 1
                row.last_started_at, row.last_seconds = result.started_at, result.seconds
                row.last_ok, row.last_changed, row.last_outcome = result.ok, result.changed, outcome
                row.last_runner = runner[:200]
                if result.ok:
                    row.last_success_at = result.started_at
                else:
                    row.last_failure_at = result.started_at
            return
        except IntegrityError:  # another process recorded this task's first run meanwhile
            if attempt:
                raise


def last_runs(ctx: Context) -> dict[str, object]:
    """Every task's last run as recorded (``issuer.task_runs.TaskRun`` rows), by task name."""
    from issuer.task_runs import TaskRun

    with ctx.sessions() as s:
        return {row.task: row for row in s.scalars(select(TaskRun))}


def due(ctx: Context, interval: float, tasks: Sequence[Task] = TASKS, now: dt.datetime | None = None) -> list[Task]:
    """The tasks whose last run, by any process of the installation, started ``interval``
    seconds ago or more (less half a look, so that a look that comes a moment early does not
    put it off a whole look), or never."""
    now = now or utcnow()
    slack = min(interval, CHECK_EVERY) / 2
    last = last_runs(ctx)
    return [t for t in tasks if t.name not in last
            or (now - last[t.name].last_started_at).total_seconds() >= interval - slack]


def serve_runner() -> str:
    """Who the service's schedule records as the runner: ``serve <host>:<pid>``."""
    return f"serve {socket.gethostname()}:{os.getpid()}"


def interval_from_env() -> float:
    """``$MCRED_HOUSEKEEPING_INTERVAL`` seconds (:data:`DEFAULT_INTERVAL` when unset; 0: off),
    or ValueError naming the setting."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        from mcred.context import ConfigError

        raise ConfigError(f"{INTERVAL_ENV}={raw[:40]!r}: give a number of seconds (0 turns housekeeping off)")
    return value


@dataclass
class Housekeeper:
    """The service's schedule: a thread that looks every ``min(interval, CHECK_EVERY)``
    seconds (the first look ``min(interval, START_DELAY)`` after :meth:`start`) and runs the
    tasks :func:`due`, if it can take the installation's housekeeping lock without waiting
    (:func:`mcred.db.try_lock`); a process that cannot skips the look (:attr:`busy`). A task
    that fails, or a look that fails (the database away), is logged and tried again at the
    next look: nothing here stops the service."""

    ctx: Context
    interval: float
    tasks: Sequence[Task] = TASKS
    runner: str = field(default_factory=serve_runner)
    #: looks that ran tasks, found none due, found another process running them
    ran: int = 0
    idle: int = 0
    busy: int = 0
    #: the results of the last run
    last: list[TaskResult] = field(default_factory=list)
    #: (start, end) of each run, ``time.monotonic()``, the last 100
    history: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"a housekeeping interval is a number of seconds above 0, not {self.interval!r}")

    def tick(self) -> list[TaskResult] | None:
        """One look: the results of the tasks it ran ([] when none was due), or None when
        another process holds the lock (it is running them)."""
        with try_lock(self.ctx.engine, self.ctx.home, LOCK_NAME) as held:
            if not held:
                self.busy += 1
                return None
            tasks = due(self.ctx, self.interval, self.tasks)
            if not tasks:
                self.idle += 1
                return []
            start = time.monotonic()
            results = run(self.ctx, tasks, runner=self.runner, actor=ACTOR, stop=self._stop)
            self.history = [*self.history[-99:], (start, time.monotonic())]
            self.ran += 1
            self.last = results
            return results

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="mcred-housekeeping", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop looking; a task running is let finish (up to ``timeout`` seconds), no other starts."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        wait = min(self.interval, START_DELAY)
        while not self._stop.wait(wait):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the next look tries again; the service goes on
                log.exception("housekeeping: a look failed")
            wait = min(self.interval, CHECK_EVERY)
