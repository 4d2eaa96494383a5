"""The actions of every handover workflow step (issuer/handover.py ``WORKFLOWS``;
specs/handover.md), wired across issuer, TSM and phones.

Each action is idempotent: it reads the state it is about to change before changing it
(the registry's credential status, the TSM's jobs of this workflow, the SE's key hashes),
so a crash after any step, or inside one, followed by ``WorkflowRunner.run`` again, ends
in the same final state as an uninterrupted run. TSM jobs a workflow starts carry the
actor ``handover:<id>:<what>`` so a re-run finds and resumes them instead of starting new
ones. Secrets of a new phone are never written into the workflow's results: they are
handed back in :attr:`HandoverActions.secrets` (shown once) and sealed in the TSM job; with
:attr:`HandoverActions.hold_secrets` the job keeps them after it ends, so that a run that
stopped before it could show them (a later step failed, the process was killed) leaves them
to the resume (:meth:`HandoverActions.new_phone_secrets`), until the caller has shown them
(:func:`release_secrets`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import wallet_sim
from issuer import handover as wf
from issuer import revocation
from issuer.db import Credential, Holder, Phone, StatusList, utcnow
from mcred.context import Context
from mcred.provision import (
    ProvisionResult,
    check_jpki_issuance,
    issuer_port,
    jpki_issuer,
    jpki_slots_for,
    mdoc_service,
    provision,
    resume,
    tsm_for,
)
from tsm import applets as ap
from tsm import steps as tsm_steps
from tsm.audit import AuditLog
from tsm.jobs import JobView, StepContext, Tsm
from tsm.lock import acquire, process_owner
from tsm.session import SeLink

_LIVE = ("valid", "hold")


def _stamp() -> str:
    return utcnow().isoformat()


def mdoc_refusal(ctx: Context) -> wf.MdocRefusal:
    """The installation's check of whether an MSO can be signed now, for a workflow's
    refusal before it is recorded (``issuer.handover.create``'s ``mdoc_refusal``): its mdoc
    PKI's (:func:`mcred.provision.mdoc_service`), with the rollover margin that PKI is
    configured with, so that a workflow is refused exactly when its issuance would be."""
    return mdoc_service(ctx).pki.issuance_refusal


@dataclass
class HandoverActions:
    """The actions for :class:`issuer.handover.WorkflowRunner`, over one installation."""

    ctx: Context
    key_type: str = "p384"
    mdoc_batch: int = 1
    #: Test hook: called with a TSM step id inside the workflow's TSM jobs (crash injection).
    tsm_hook: Callable[[str], None] | None = None
    #: Secrets generated for new phones / re-provisioned phones, by phone id (shown once).
    secrets: dict[str, ProvisionResult] = field(default_factory=dict)
    #: Secrets to set instead of generating them, by phone id (``pin``, ``password``,
    #: ``puk``): what an API caller gives, since a generated one could not be shown to it.
    #: Never written into the workflow's results (the TSM job seals them).
    given: dict[str, dict[str, str]] = field(default_factory=dict)
    #: How to reach a phone's SE other than opening it in this data directory, by phone id:
    #: a transmit (over the air, a GP SERAM session: mcred/ota.py).
    reach: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    #: The sink for the TSM jobs' plain APDU pairs (``mcred --trace``), or None.
    trace: Callable[[str], None] | None = None
    #: Generated secrets stay sealed in the provisioning job after it ends, until
    #: :func:`release_secrets`: for a caller that shows them (the CLI) once the workflow ends.
    hold_secrets: bool = False

    def actions(self) -> Mapping[str, wf.Action]:
        return {
            "prepare": self.prepare,
            "provision_new": self.provision_new,
            "revoke_old": self.revoke_old,
            "hold_old": self.hold_old,
            "publish": self.publish,
            "wipe_old": self.wipe_old,
            "release_auth": self.release_auth,
            "reissue_sign": self.reissue_sign,
            "release_mdoc": self.release_mdoc,
            "reissue_all": self.reissue_all,
            "reissue_mdoc": self.reissue_mdoc,
        }

    def runner(self, actor: str = "operator", run_as: str | None = None,
               lease: float | None = None) -> wf.WorkflowRunner:
        """A runner of these actions; ``run_as``: the run identity a claim was made for
        (:func:`issuer.handover.claim`: the API claims a workflow when it accepts its run),
        ``lease`` the seconds that claim lasts unless renewed (``issuer.handover.LEASE_SECONDS``)."""
        return wf.WorkflowRunner(self.ctx.sessions, self.actions(), actor=actor, run_as=run_as,
                                 lease=lease or wf.LEASE_SECONDS)

    # --- helpers ---------------------------------------------------------------------------

    def _tsm(self, actor: str) -> Tsm:
        return tsm_for(self.ctx, issuer_port(self.ctx), actor)

    def _jobs(self, phone_id: str, actor: str) -> list[JobView]:
        """The workflow's own TSM jobs on the phone; an abandoned one is not its any more (a
        re-run makes a new one: ``mcred tsm abandon`` is how an operator unsticks a step)."""
        return [j for j in self._tsm(actor).jobs(phone_id) if j.actor == actor and j.state != "abandoned"]

    def _run_job(self, phone_id: str, kind: str, actor: str) -> JobView:
        """Run (or resume, or return) the one ``kind`` job this workflow owns on the phone."""
        tsm = self._tsm(actor)
        mine = [j for j in self._jobs(phone_id, actor) if j.kind == kind]
        job_id = mine[-1].id if mine else tsm.create_job(phone_id, kind)
        transmit = self.reach.get(phone_id) or wallet_sim.open_secure_element(phone_id, self.ctx.home).transmit
        return tsm.run(job_id, transmit, after_step=self.tsm_hook, trace=self.trace)

    def _provision(self, phone_id: str, holder_id: str, actor: str) -> ProvisionResult:
        done = [j for j in self._jobs(phone_id, actor) if j.kind == "provision"]
        transmit = self.reach.get(phone_id)
        if done:
            result = resume(self.ctx, done[-1].id, after_step=self.tsm_hook, transmit=transmit, trace=self.trace)
        else:
            given = self.given.get(phone_id, {})
            result = provision(self.ctx, phone_id, holder_id, key_type=self.key_type,
                               mdoc_batch=self.mdoc_batch, after_step=self.tsm_hook, actor=actor,
                               transmit=transmit, trace=self.trace, hold_secrets=self.hold_secrets and not given,
                               **given)
        if result.pin:
            self.secrets[phone_id] = result
        return result

    def new_phone_secrets(self, handover_id: str, phone_id: str) -> dict[str, str]:
        """The secrets generated for ``phone_id`` by workflow ``handover_id`` (``pin``,
        ``password``, ``puk``) that are still to be shown: this run's, or those an earlier
        run held (:attr:`hold_secrets`) and could not show; empty when there are none."""
        got = self.secrets.get(phone_id)
        if got is not None:
            return {k: getattr(got, k) for k in got.generated}
        tsm = self._tsm(provision_actor(handover_id))
        for job in reversed(self._jobs(phone_id, provision_actor(handover_id))):
            held = tsm.held_secrets(job.id) if job.kind == "provision" else None
            if held is not None:
                return {"pin": held.user_auth_pin,
                        **({"password": held.signing_password} if held.signing_password else {}),
                        **({"puk": held.puk} if held.puk else {})}
        return {}

    def _changes(self, changes: list[revocation.Change]) -> dict[str, Any]:
        return {"changed": [f"{c.kind}:{c.before}->{c.after}" for c in changes], "at": _stamp()}

    def _status(self, phone_id: str) -> list[tuple[str, str, str | None]]:
        with self.ctx.sessions() as s:
            return sorted((c.kind, c.status, c.reason) for c in s.scalars(
                select(Credential).where(Credential.phone_id == phone_id)))

    def _card_ended(self, holder_id: str) -> str | None:
        """Why nothing can be issued from the holder's card now (past its last day:
        :func:`issuer.holders.card_refusal`, naming its renewal), or None."""
        from issuer.holders import card_refusal

        with self.ctx.sessions() as s:
            row = s.get(Holder, holder_id)
        return card_refusal(holder_id, row.card_expiry, utcnow()) if row is not None else None

    def _set_phone_state(self, phone_id: str | None, state: str, *, keep: tuple[str, ...] = ()) -> None:
        """Set the phone's state, unless it is one of ``keep`` (read under the row's lock)."""
        if not phone_id:
            return
        with self.ctx.sessions.begin() as s:
            p = s.get(Phone, phone_id, with_for_update=True)
            if p is not None and p.state != state and p.state not in keep:
                p.state = state

    # --- actions ---------------------------------------------------------------------------

    def prepare(self, c: wf.StepContext) -> dict:
        """Record what the old phone holds now (credential ids, the signing key's hash), so
        later steps can tell their own effect from the state they started from."""
        out: dict[str, Any] = {"at": _stamp()}
        phone = c.old_phone_id or c.new_phone_id
        if phone and c.kind in ("found", "basic_four_change"):
            try:
                st = _jpki_state(self.ctx, phone)
                key = st.keys.get(ap.SLOT_SIGN)
                out["sign_key_sha256"] = key.spki_sha256.hex() if key else None
            except wallet_sim.PhoneNotFoundError:  # an unreachable phone: nothing to record
                out["sign_key_sha256"] = None
        if phone:
            with self.ctx.sessions() as s:
                out["credentials"] = sorted(s.scalars(select(Credential.id).where(
                    Credential.phone_id == phone, Credential.status.in_(_LIVE))).all())
        return out

    def provision_new(self, c: wf.StepContext) -> dict:
        """Provision the new phone; its issuance revokes the old phone's same-kind
        credentials in the same transaction (one phone per person)."""
        assert c.new_phone_id
        r = self._provision(c.new_phone_id, c.holder_id, provision_actor(c.handover_id))
        return {"job": r.job_id, "mdocs": len(r.mdocs), "at": _stamp()}

    def revoke_old(self, c: wf.StepContext) -> dict:
        """Revoke whatever the old phone still has live, with the workflow's reason; the phone
        becomes ``retired`` (a model change) or ``revoked``, but a phone ``retired`` by a
        handover stays so (specs/revocation.md 1), as :func:`issuer.revocation.revoke` keeps it."""
        assert c.old_phone_id
        changes = revocation.revoke(self.ctx.sessions, c.old_phone_id, c.reason, "all",
                                    actor=f"handover:{c.handover_id}")
        self._set_phone_state(c.old_phone_id, "retired" if c.kind == "model_change" else "revoked",
                              keep=("retired",))
        return self._changes(changes)

    def hold_old(self, c: wf.StepContext) -> dict:
        assert c.old_phone_id
        changes = revocation.hold(self.ctx.sessions, c.old_phone_id, "all",  # the phone lost too
                                  actor=f"handover:{c.handover_id}")
        return self._changes(changes)

    def release_auth(self, c: wf.StepContext) -> dict:
        """The found phone's user-authentication hold lifted, and the phone back in use: the
        next step issues to it (a phone lost is issued nothing, issuer.revocation.revoke)."""
        phone = c.old_phone_id or c.new_phone_id
        out = self._changes(revocation.release(self.ctx.sessions, phone, "auth",
                                               actor=f"handover:{c.handover_id}"))
        self._set_phone_state(phone, "active")
        return out

    def release_mdoc(self, c: wf.StepContext) -> dict:
        phone = c.old_phone_id or c.new_phone_id
        out = self._changes(revocation.release(self.ctx.sessions, phone, "mdoc",
                                               actor=f"handover:{c.handover_id}"))
        self._set_phone_state(phone, "active")
        return out

    def reissue_sign(self, c: wf.StepContext) -> dict:
        """Revoke the phone's signing certificate, generate a new signing key in the SE, issue
        and write its certificate: a found phone's signing key was out of the holder's
        control (cessationOfOperation); after a basic four change the certificate carries
        data that no longer hold (superseded), and the new one carries the registry's. The
        signing password stays as the holder set it. A phone that held no signing certificate
        when the workflow started (a holder under 15 has none, and no password) gets none:
        there is nothing to re-issue, and a key with no password set would guard nothing.
        Past the card's last day the certificate is revoked and none is issued (``skipped``,
        naming the card's renewal): the issuer issues nothing from an ended card, and a found
        then stopped here, its holds lifted, for good (resumed, it failed again); the card's
        renewal re-issues everything on the phone (specs/handover.md, policy 2). A certificate that
        would outlive the signing root is refused before the SE makes a key
        (:func:`mcred.provision.check_jpki_issuance`): the step stops, its revocation done,
        and is resumed once the root is rolled over."""
        phone = c.old_phone_id or c.new_phone_id
        assert phone
        before = set(c.results.get("prepare", {}).get("credentials", []))
        if not self._any_of_kind(before, "jpki-sign"):
            return {"revoked": 0, "generated": False, "skipped": "no signing certificate on the phone",
                    "at": _stamp()}
        reason = "superseded" if c.kind == "basic_four_change" else "cessationOfOperation"
        revoked = self._revoke_ids(before, "jpki-sign", reason)
        ended = self._card_ended(c.holder_id)
        if ended is not None:
            return {"revoked": revoked, "generated": False, "skipped": ended, "at": _stamp()}
        # before the SE makes a key: a certificate that would outlive the signing root is refused
        # by the issuer, and GENERATE KEY would have erased the slot's certificate for nothing;
        # the step stops (resumed once the root is rolled over)
        check_jpki_issuance(self.ctx, c.holder_id, ("sign",), self._sign_key_type(before))
        old_key = c.results.get("prepare", {}).get("sign_key_sha256")
        job_ref = f"handover:{c.handover_id}:sign"
        with _se_steps(self.ctx, phone, job_ref, self.tsm_hook) as run:
            st = run.state()
            key = st.keys.get(ap.SLOT_SIGN)
            generated = key is None or key.spki_sha256.hex() == old_key
            if generated:
                run.generate_sign_key()
            run.step("issue-sign-cert")
            run.step("write-sign-cert")
        return {"revoked": revoked, "generated": generated, "at": _stamp()}

    def reissue_mdoc(self, c: wf.StepContext) -> dict:
        """New MSOs with the registry's card data on new SE device keys, into the slots that
        held a valid mdoc (a TSM ``refresh-mdoc`` job; its issuance supersedes the old ones).
        A re-run resumes this workflow's job rather than starting another. A phone that held
        no live mdoc when the workflow started (an operator revoked them) gets none
        (``skipped``), as :meth:`reissue_sign` skips a phone without a signing certificate:
        a refresh of it is refused, and the workflow stopped here on every run. Nor does a
        phone whose holder's card has ended (a workflow created before the card's last day ran
        after it): every MSO issued from the card ended with it, and a refresh is refused."""
        from mcred.provision import refresh_mdocs

        phone = c.old_phone_id or c.new_phone_id
        assert phone
        before = set(c.results.get("prepare", {}).get("credentials", []))
        if not self._any_of_kind(before, "mdoc"):
            return {"job": None, "mdocs": 0, "skipped": "no valid mdoc on the phone", "at": _stamp()}
        ended = self._card_ended(c.holder_id)
        if ended is not None:
            return {"job": None, "mdocs": 0, "skipped": ended, "at": _stamp()}
        actor = f"handover:{c.handover_id}:mdoc"
        started = [j for j in self._jobs(phone, actor) if j.kind == "refresh-mdoc"]
        result = refresh_mdocs(self.ctx, phone, actor=actor, after_step=self.tsm_hook,
                               job_id=started[-1].id if started else None)
        return {"job": result.job_id, "mdocs": len(result.issued), "at": _stamp()}

    def _sign_key_type(self, ids: set[str]) -> str:
        """The key type of the signing certificate among ``ids`` (what the SE makes the new key
        as: the type of the keys it holds), ``p384`` when none says."""
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa

        with self.ctx.sessions() as s:
            body = s.scalar(select(Credential.body).where(Credential.id.in_(sorted(ids)),
                                                          Credential.kind == "jpki-sign").limit(1))
        if body is None:
            return "p384"
        return "rsa2048" if isinstance(x509.load_der_x509_certificate(body).public_key(), rsa.RSAPublicKey) else "p384"

    def _any_of_kind(self, ids: set[str], kind: str) -> bool:
        """Whether any of the credentials ``ids`` is of ``kind``."""
        if not ids:
            return False
        with self.ctx.sessions() as s:
            return s.scalar(select(Credential.id).where(Credential.id.in_(sorted(ids)),
                                                        Credential.kind == kind).limit(1)) is not None

    def _revoke_ids(self, ids: set[str], kind: str | None, reason: str) -> int:
        """Revoke the live credentials among ``ids`` (of ``kind``), not any issued since:
        a re-run after a crash must not touch what this workflow itself issued."""
        return len(revocation.revoke_ids(self.ctx.sessions, ids, reason, kind=kind,
                                         actor="handover"))

    def reissue_all(self, c: wf.StepContext) -> dict:
        """Card renewed or basic four data changed: delete the phone's credentials (TSM),
        provision them again, and revoke every credential the phone held before as
        superseded (the JPKI issuer already supersedes same-slot certificates). Refused before
        the phone is wiped when a JPKI root would refuse the provisioning
        (:func:`mcred.provision.check_jpki_issuance`)."""
        phone = c.old_phone_id or c.new_phone_id
        assert phone
        prov_actor = provision_actor(c.handover_id)
        if not [j for j in self._jobs(phone, prov_actor) if j.kind == "provision"]:
            # before the phone is wiped: a provisioning its JPKI root refuses (a certificate that
            # would outlive it) stops here, the phone's credentials untouched, to be resumed
            # once the root is rolled over
            check_jpki_issuance(self.ctx, c.holder_id, jpki_slots_for(self.ctx, c.holder_id), self.key_type)
            self._run_job(phone, "delete-credentials", f"handover:{c.handover_id}:delete")
        r = self._provision(phone, c.holder_id, prov_actor)
        before = set(c.results.get("prepare", {}).get("credentials", []))
        revoked = self._revoke_ids(before, None, "superseded")
        return {"job": r.job_id, "superseded": revoked, "at": _stamp()}

    def publish(self, c: wf.StepContext) -> dict:
        """Rebuild the CRL partitions and Status List Tokens the workflow moved, so the
        first fetch after this step already carries the change."""
        phones = [p for p in (c.old_phone_id, c.new_phone_id) if p]
        with self.ctx.sessions() as s:
            creds = list(s.scalars(select(Credential).where(Credential.phone_id.in_(phones))))
            lists = {lst.id for lst in s.scalars(select(StatusList).where(
                StatusList.id.in_({x.status_list_id for x in creds if x.status_list_id})))}
        jpki = jpki_issuer(self.ctx)
        crls = set()
        for cr in creds:
            if cr.kind.startswith("jpki-") and cr.partition:
                slot = cr.kind[5:]
                if (slot, cr.partition) not in crls:
                    jpki.crl(slot, cr.partition)
                    crls.add((slot, cr.partition))
        from issuer.mdoc.errors import IacaEnded

        svc = mdoc_service(self.ctx)
        versions: dict[str, int | None] = {}
        for lid in sorted(lists):
            try:
                versions[lid] = svc.status_token(lid).version
            except IacaEnded:
                # a list of an IACA past its end is published no more (410 iaca-ended: every
                # MSO on it has ended); a phone that ever held one of its mdocs is no matter
                versions[lid] = None
        return {"crls": sorted(f"{a}/{b}" for a, b in crls), "status_lists": versions,
                "at": _stamp()}

    def wipe_old(self, c: wf.StepContext) -> dict:
        """Delete the old SE's applets through the TSM if the phone is reachable."""
        assert c.old_phone_id
        if c.old_phone_id not in self.reach and c.old_phone_id not in wallet_sim.list_phones(self.ctx.home):
            return {"reachable": False, "at": _stamp()}
        view = self._run_job(c.old_phone_id, "delete-credentials", f"handover:{c.handover_id}:wipe")
        return {"reachable": True, "job": view.id, "at": _stamp()}


# --- a signing-key re-issue over the TSM's own step functions ----------------------------


def _jpki_state(ctx: Context, phone_id: str) -> ap.JpkiState:
    with _se_steps(ctx, phone_id, "read-state", None) as run:
        return run.state()


class _StepsRun:
    def __init__(self, sctx: StepContext, hook: Callable[[str], None] | None) -> None:
        self.sctx, self.hook = sctx, hook

    def state(self) -> ap.JpkiState:
        return tsm_steps.jpki_state(self.sctx)

    def generate_sign_key(self) -> None:
        alg = next(iter(self.state().keys.values())).algorithm if self.state().keys else "p384"
        tsm_steps.personalise(self.sctx, ap.JPKI, ap.jpki_generate(ap.SLOT_SIGN, alg,
                                                                    self.sctx.rng(32)),
                              "jpki GENERATE KEY sign (re-issue)")
        if self.hook:
            self.hook("generate-sign-key")

    def step(self, name: str) -> None:
        self.sctx.step = name
        self.sctx.results = {}
        tsm_steps.STEPS[name](self.sctx)
        self.sctx.all_results[name] = self.sctx.results
        if self.hook:
            self.hook(name)


class _se_steps:  # noqa: N801 - used as a context manager, reads like a function
    """Run TSM step functions on one SE under its lock, outside a persisted job: for a
    re-issue of one slot, which the TSM's job kinds do not offer (reported upstream).
    ``job_ref`` makes the issuer calls idempotent."""

    def __init__(self, ctx: Context, phone_id: str, job_ref: str,
                 hook: Callable[[str], None] | None) -> None:
        self.ctx, self.phone_id, self.job_ref, self.hook = ctx, phone_id, job_ref, hook

    def __enter__(self) -> _StepsRun:
        tsm = tsm_for(self.ctx, issuer_port(self.ctx), "handover")
        self.lock = acquire(tsm.engine, self.phone_id, process_owner(f"handover/{self.job_ref[-12:]}"),
                            timeout_s=tsm.lock_timeout_s, lease_s=tsm.lease_s, clock=tsm.clock)
        try:
            audit = AuditLog("handover", self.phone_id, None)
            se = wallet_sim.open_secure_element(self.phone_id, self.ctx.home)
            self.audit = audit
            link = SeLink(tsm.engine, self.phone_id, se.transmit, tsm.master, audit, None,
                          tsm.security_level, tsm.rng, se_roots=tsm.se_roots, clock=tsm.clock,
                          oce=tsm.oce, require_scp11a=tsm.require_scp11a)
            job = JobView(id=_ref(self.job_ref), se_id=self.phone_id, kind="provision",
                          state="running", steps=(), next_step=0,
                          input={"phone_id": self.phone_id, "algorithm": "p384",
                                 "mdoc_count": 0},
                          results={}, actor="handover", attempts=0, error=None)
            self.sctx = StepContext(tsm, link, job, "re-issue", {}, None, None)
        except BaseException:
            self.lock.release()
            raise
        return _StepsRun(self.sctx, self.hook)

    def __exit__(self, *exc: object) -> None:
        try:
            if self.sctx._session is not None:  # noqa: SLF001
                self.sctx._session.close()  # noqa: SLF001
            self.audit.flush_now(self.ctx.engine)
        finally:
            self.lock.release()


def _ref(text: str) -> str:
    """A job reference of the issuer's length limits (stable for the same text)."""
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:31]



# --- 異動: a change of the holder's basic four data -------------------------------------------


def record_basic_four_change(ctx: Context, holder_id: str, changes: Mapping[str, Any], *, reason: str,
                             actor: str = "operator") -> dict[str, Any]:
    """Record the holder's new card data (:func:`issuer.holders.update`) and, when a phone of
    theirs carries live credentials, the ``basic_four_change`` workflow that brings it in
    line (created, not run). ``{"fields", "phone", "handover", "state", "card_ended"}``: state
    ``unchanged`` (the same values), ``registry only`` (no active phone: their next
    provisioning carries the new data; or their card has ended, ``card_ended`` saying so and
    naming its renewal, which issues everything anew with the new data) or ``running`` (the
    workflow waits to be run). Refused before anything changes
    (:class:`issuer.holders.HolderError`, or :class:`issuer.handover.WorkflowError` while a
    phone of theirs is on hold).

    Past the card's last day the phone's credentials all ended with the card (a certificate
    and an MSO run at most through it), so none carries the old data, and none can be
    re-issued: the workflow had revoked the signing certificate, then stopped half-way at
    the issuer's refusal. The move is recorded all the same (the holder did move; the
    renewed card carries the new address), and no workflow is made."""
    from issuer import holders
    from issuer.holders import card_refusal

    # the found workflow would release an mdoc that carries the old data
    _refuse_held(ctx, holder_id, "record the change")
    made: dict[str, str] = {}

    def workflow(s: Session, _fields: list[str]) -> None:
        # in the change's transaction: a run stopped between the two (a chaos test killed it
        # there) left the new data in the registry, the old in the credentials, and nothing
        # to resume, a second run of the command then changing nothing
        phone = _live_phone_in(s, holder_id)
        ended = card_refusal(holder_id, s.get(Holder, holder_id).card_expiry, utcnow())
        if phone is not None and ended is not None:
            made.update(phone=phone, card_ended=ended)
        elif phone is not None:
            made["phone"] = phone
            made["handover"] = wf.create_in(s, kind="basic_four_change", holder_id=holder_id,
                                            old_phone_id=phone, actor=actor, mdoc_refusal=mdoc_refusal(ctx))

    fields = holders.update(ctx.sessions, holder_id, changes, actor=actor, reason=reason, then=workflow)
    if not fields:
        return {"fields": [], "phone": None, "handover": None, "state": "unchanged", "card_ended": None}
    if "handover" not in made:
        return {"fields": fields, "phone": made.get("phone"), "handover": None, "state": "registry only",
                "card_ended": made.get("card_ended")}
    return {"fields": fields, "phone": made["phone"], "handover": made["handover"], "state": "running",
            "card_ended": None}


def _refuse_held(ctx: Context, holder_id: str, then: str) -> None:
    """:class:`issuer.handover.WorkflowError` while a phone of the holder is on hold (lost)."""
    with ctx.sessions() as s:
        held = s.scalar(select(Credential.phone_id).where(Credential.holder_id == holder_id,
                                                          Credential.status == "hold").limit(1))
    if held is not None:
        raise wf.WorkflowError(f"phone {held} of holder {holder_id} has credentials on hold (lost): "
                               f"settle that first (found, or lost_confirmed), then {then}")


def _live_phone_in(s: Session, holder_id: str) -> str | None:
    """The holder's active phone that carries valid credentials, if any (one per person),
    read in the caller's transaction. Looked for among the phones with a valid credential:
    a holder may have another active phone with none (its credentials revoked kind by kind,
    then the holder provisioned anew elsewhere), and taking the first active phone by id,
    then finding it without valid credentials, left the live phone out of the workflow."""
    return s.scalar(select(Phone.id).join(Credential, Credential.phone_id == Phone.id)
                    .where(Phone.holder_id == holder_id, Phone.state == "active", Credential.status == "valid")
                    .order_by(Phone.id).limit(1))


def change_basic_four(ctx: Context, holder_id: str, changes: Mapping[str, Any], *, reason: str,
                      actor: str = "operator", resume: str | None = None,
                      actions: HandoverActions | None = None) -> dict[str, Any]:
    """:func:`record_basic_four_change`, then its workflow run to its end (the signing
    certificate superseded and re-issued with the new data on a new SE key, the mdocs
    re-issued, the user-authentication certificate untouched). ``resume``: the id of such a
    workflow that stopped, run to its end (nothing is recorded again). Returns ``{"fields",
    "phone", "handover", "state", "steps"}``. A workflow that stops raises
    :class:`issuer.handover.StepFailed`, whose message names the workflow to resume."""
    actions = actions or HandoverActions(ctx)
    if resume is not None:
        phone = _resumed(ctx, resume, "basic_four_change", holder_id, "a basic four change").old_phone_id
        out = {"fields": [], "phone": phone, "handover": resume}
    else:
        out = record_basic_four_change(ctx, holder_id, changes, reason=reason, actor=actor)
        if out["handover"] is None:
            return {**out, "steps": {}, "sign_withheld": None}
    return {**out, **_run(actions, actor, out["handover"])}


def _resumed(ctx: Context, handover_id: str, kind: str, holder_id: str, what: str) -> wf.Handover:
    """The workflow to resume: of ``kind`` and of this holder, else a WorkflowError."""
    with ctx.sessions() as s:
        h = s.get(wf.Handover, handover_id)
    if h is None or h.kind != kind or h.holder_id != holder_id:
        raise wf.WorkflowError(f"{handover_id!r} is not {what} of holder {holder_id}")
    return h


def resume_command(h: wf.Handover) -> str:
    """How an operator resumes workflow ``h`` (a row of :func:`issuer.handover.workflows`):
    the command that started it, or the API's run for the kinds only the API starts."""
    return resume_command_for(h.kind, h.id, holder_id=h.holder_id, old_phone_id=h.old_phone_id,
                              new_phone_id=h.new_phone_id)


def resume_command_for(kind: str, handover_id: str, *, holder_id: str | None = None,
                       old_phone_id: str | None = None, new_phone_id: str | None = None) -> str:
    """:func:`resume_command` from the workflow's kind and ids, for a caller that holds no row
    (a CLI command whose run just stopped)."""
    if kind == "model_change":
        return f"mcred handover --phone {old_phone_id} --to {new_phone_id} --resume {handover_id}"
    if kind == "renewal":
        return f"mcred holder renew-card {holder_id} --resume {handover_id}"
    if kind == "basic_four_change":
        return f"mcred holder update {holder_id} --resume {handover_id}"
    return f"POST /handovers/{handover_id}/run (mcred serve, an operator token)"


def provision_actor(handover_id: str) -> str:
    """The actor of workflow ``handover_id``'s provisioning jobs on the TSM: how its jobs are
    told from the phone's others (resuming one, releasing its held secrets)."""
    return f"handover:{handover_id}:provision"


def release_secrets(ctx: Context, handover_id: str, phone_id: str, actor: str) -> int:
    """Erase the secrets workflow ``handover_id``'s provisioning of ``phone_id`` held
    (:attr:`HandoverActions.hold_secrets`), once they were shown; how many jobs had some."""
    tsm = tsm_for(ctx, issuer_port(ctx), actor)
    mine = provision_actor(handover_id)
    return sum(tsm.release_secrets(j.id, actor) for j in tsm.jobs(phone_id)
               if j.actor == mine and j.kind == "provision" and j.state == "done")


def _run(actions: HandoverActions, actor: str, handover_id: str) -> dict[str, Any]:
    """Run the workflow to its end: ``{"state", "steps", "sign_withheld"}`` (seconds per
    step; why the phone holds no signing certificate, or None: a holder under 15 gets none)."""
    from mcred.provision import sign_withheld

    h = actions.runner(actor).run(handover_id)
    return {"state": h.state, "steps": {k: round(v["seconds"], 3) for k, v in h.detail["timings"].items()},
            "sign_withheld": sign_withheld(actions.ctx, h.new_phone_id or h.old_phone_id)}


def record_card_renewal(ctx: Context, holder_id: str, *, reason: str, card_number: str | None = None,
                        actor: str = "operator", key_type: str = "p384") -> dict[str, Any]:
    """Record the holder's new card (:func:`issuer.holders.renew_card`) and, when a phone of
    theirs carries live credentials, the ``renewal`` workflow that re-issues them (created,
    not run). ``{"card", "phone", "handover", "mdoc_batch", "state"}``: state ``registry
    only`` (no active phone) or ``running``; ``mdoc_batch`` the number of mdoc slots the
    phone holds valid now (what the workflow issues again). Refused before anything changes
    while a phone of theirs is on hold, and when its workflow would be refused (the IACA in its
    last months, a JPKI root ending before the certificates of ``key_type`` keys it would
    issue: :func:`issuer.handover.create_in`)."""
    from issuer import holders
    from mcred.provision import valid_mdoc_slots

    _refuse_held(ctx, holder_id, "renew the card")
    made: dict[str, Any] = {}

    def workflow(s: Session) -> None:  # in the new card's transaction, as for a change of data
        phone = _live_phone_in(s, holder_id)
        if phone is not None:
            made.update(phone=phone, mdoc_batch=len(valid_mdoc_slots(s, phone)) or 1,
                        handover=wf.create_in(s, kind="renewal", holder_id=holder_id, new_phone_id=phone,
                                              actor=actor, mdoc_refusal=mdoc_refusal(ctx), jpki_key_type=key_type))

    card = holders.renew_card(ctx.sessions, holder_id, actor=actor, reason=reason, card_number=card_number,
                              then=workflow)
    if not made:
        return {"card": card, "phone": None, "handover": None, "mdoc_batch": 0, "state": "registry only"}
    return {"card": card, **made, "state": "running"}


def renew_card(ctx: Context, holder_id: str, *, reason: str, key_type: str = "p384",
               card_number: str | None = None, actor: str = "operator", resume: str | None = None,
               actions: HandoverActions | None = None, hold_secrets: bool = False) -> dict[str, Any]:
    """カードの更新: :func:`record_card_renewal`, then its ``renewal`` workflow run to its end
    (the TSM deletes the applets, provisions both certificates with keys of ``key_type``
    generated in the SE and new mdocs whose card validity is the new card's, and revokes all
    that the phone held before as superseded). ``key_type`` p384 is the next card's: the way
    an RSA-2048 phone is moved to ECDSA P-384 before RSA-2048 is retired. The new PIN,
    password and PUK are generated and returned once (``secrets``) unless ``actions.given``
    has them for the phone. ``resume``: the id of such a workflow that stopped.
    ``hold_secrets``: as :attr:`HandoverActions.hold_secrets` (the caller shows ``secrets``,
    then calls :func:`release_secrets`): a run that stopped after the phone was provisioned
    leaves them to the resume."""
    from mcred.provision import KEY_TYPES

    if key_type not in KEY_TYPES:
        raise wf.WorkflowError(f"key type {key_type!r} is neither rsa2048 nor p384")
    if resume is not None:
        phone = _resumed(ctx, resume, "renewal", holder_id, "a card renewal").new_phone_id
        out: dict[str, Any] = {"card": None, "phone": phone, "handover": resume}
        actions = actions or HandoverActions(ctx, key_type=key_type, hold_secrets=hold_secrets)
    else:
        out = record_card_renewal(ctx, holder_id, reason=reason, card_number=card_number, actor=actor,
                                  key_type=key_type)
        if out["handover"] is None:
            return {**out, "steps": {}, "secrets": {}, "sign_withheld": None}
        actions = actions or HandoverActions(ctx, key_type=key_type, mdoc_batch=out["mdoc_batch"],
                                             hold_secrets=hold_secrets)
    ran = _run(actions, actor, out["handover"])
    shown = actions.new_phone_secrets(out["handover"], out["phone"])
    return {**out, **ran, "key_type": key_type, "secrets": shown}
