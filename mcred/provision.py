"""Provisioning both credentials into a phone: the composition of issuer, TSM and phone
(ARCHITECTURE.md flow 1; issue 4 item 3, issue 5 item 5; specs/handover.md "Policy").

:func:`provision` registers the holder with the issuer, attaches the phone, and runs one
TSM ``provision`` job (JPKI signing + user-auth certificates, then a batch of mdocs) over
the phone's ``transmit``. The TSM reaches the issuer through :class:`CompositeIssuer`,
this module's :class:`tsm.ports.IssuerPort` over ``issuer.jpki`` and ``issuer.mdoc``.

:func:`resume` finishes a provisioning that stopped, :func:`abandon` gives up any TSM job
that cannot finish (revoking what it issued; for a provisioning, wiping the SE and letting
the phone go of its holder), :func:`refresh_mdocs` issues fresh MSOs, and
:func:`reset_secrets` / :func:`resume_reset` set a holder's forgotten or locked secrets anew
(specs/tsm.md).

One phone per person (specs/handover.md, policy 1) is the issuer's own rule
(``issuer.revocation.supersede_on_other_phones``, applied by both issuance paths); nothing
here needs to install it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

import wallet_sim
from issuer.db import Credential, Phone
from issuer.holders import HolderError as RegistryHolderError
from issuer.holders import attach_phone
from issuer.holders import register as register_holder
from issuer.jpki import JpkiIssuer
from issuer.jpki.errors import IssuerJpkiError, RootEndsTooSoon
from issuer.mdoc.errors import IssuerMdocError
from issuer.mdoc.service import MdocService
from issuer.revocation import RENEWAL_ABANDONED
from mcred.context import Context
from mcred.home import private_dir, write_private
from mcred.jpki_flow import jpki_issuer
from mcred.mdoc_flow import mdoc_service, portrait_path
from protocols import cardsub
from protocols.cardsub import HolderError
from tsm.errors import IssuerPortError, JobInputError, LockBusyError
from tsm.jobs import ENDED, JobSecrets, JobView, StepHook, Tsm, list_jobs, read_job

KEY_TYPES = ("rsa2048", "p384")
#: The reason recorded when a new phone's issuance ends the old phone's credential.
_LIVE = ("valid", "hold")
_DIGITS = "0123456789"
_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read once, typed later


class ProvisionError(Exception):
    """Provisioning was refused before anything was issued, or the job failed."""


class ProvisionRefused(ProvisionError):
    """Refused before anything was done (nothing registered, no job): the phone is another
    holder's, the holder is unknown or already provisioned, or no mdoc can be issued now
    (the IACA in its last months or ended, the card ended: :func:`check_mdoc_issuance`), or
    no JPKI certificate (its root ends before it would: :func:`check_jpki_issuance`). The CLI exits 2 for it
    (specs/cli.md "Exit status"), 1 for any other :class:`ProvisionError`."""


class JpkiRootEndingError(ProvisionRefused):
    """No JPKI certificate can be issued now: the slot's issuing root generation ends before
    the certificate would (``refusal``, the issuer's :class:`issuer.jpki.RootEndsTooSoon`,
    names the root, both ends and the rollover that lifts it). Found before the SE is
    touched (:func:`check_jpki_issuance`)."""

    def __init__(self, message: str, refusal: RootEndsTooSoon) -> None:
        super().__init__(message)
        self.refusal = refusal


class ProvisioningUnfinishedError(ProvisionError):
    """The phone already has a provisioning job that has not finished: resume that one."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class UnknownHolderError(ProvisionRefused):
    """No such holder in the issuer's registry."""


class HolderFileError(ProvisionError):
    """The holder file is unreadable, or a field is missing, misspelt or ill-typed;
    ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionResult:
    """What one provisioning run put into the phone. The secrets are shown once by the CLI
    when they were generated, and never appear in ``repr``."""

    phone_id: str
    holder_id: str
    job_id: str
    key_type: str
    #: None when no signing certificate was issued (a holder under 15: ``sign_withheld``)
    sign_certificate: bytes | None = field(repr=False)
    sign_ca: bytes | None = field(repr=False)
    auth_certificate: bytes = field(repr=False)
    auth_ca: bytes = field(repr=False)
    mdocs: tuple[bytes, ...] = field(repr=False)
    pin: str = field(repr=False)
    password: str = field(repr=False)
    puk: str = field(repr=False)
    #: Which of "pin", "password", "puk" were generated here (to be shown once).
    generated: tuple[str, ...] = ()
    seconds: float = 0.0
    #: Why no signing certificate was issued (:data:`SIGN_WITHHELD`), or None
    sign_withheld: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly facts (no secrets); ``sign_certificate`` None, and ``sign_withheld``
        saying why, when none was issued."""
        from cryptography import x509

        out: dict[str, Any] = {"phone": self.phone_id, "holder": self.holder_id,
                               "job": self.job_id, "key_type": self.key_type,
                               "mdocs": len(self.mdocs), "seconds": round(self.seconds, 3)}
        for slot, der in (("sign", self.sign_certificate), ("auth", self.auth_certificate)):
            if der is None:  # the signing certificate of a holder under 15
                out[f"{slot}_certificate"], out["sign_withheld"] = None, self.sign_withheld
                continue
            c = x509.load_der_x509_certificate(der)
            out[f"{slot}_certificate"] = {"serial": format(c.serial_number, "x"),
                                          "subject": c.subject.rfc4514_string(),
                                          "not_after": c.not_valid_after_utc.isoformat()}
        return out


def generate_secrets(pin: str | None = None, password: str | None = None,
                     puk: str | None = None, *, sign: bool = True) -> tuple[JobSecrets, tuple[str, ...]]:
    """The job secrets, generating what was not given, and the names generated. Without
    ``sign`` (no signing key is provisioned: a holder under 15) there is no signing
    password: one given is not used."""
    generated = tuple(n for n, v in (("pin", pin), ("password", password), ("puk", puk))
                      if v is None and (sign or n != "password"))
    pin = pin if pin is not None else "".join(secrets.choice(_DIGITS) for _ in range(4))
    password = None if not sign else password if password is not None else "".join(
        secrets.choice(_PASSWORD_ALPHABET) for _ in range(8))
    puk = puk if puk is not None else "".join(secrets.choice(_DIGITS) for _ in range(8))
    try:
        return JobSecrets(pin, password, puk), generated
    except JobInputError as exc:
        first = str(exc).split()[0]
        name = {"user_auth_pin": "pin", "signing_password": "password"}.get(first, "puk")
        raise HolderFileError(name, f"holder field {name!r}: {exc}") from None


# --- holder files ------------------------------------------------------------------------


def load_holder_file(path: Path) -> cardsub.Holder:
    """Parse a holder JSON file (issue 4 item 3); refuse it naming the bad field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise HolderFileError("<file>", f"cannot read holder file {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HolderFileError("<file>", f"holder file {path} is not JSON: {exc}") from None
    return parse_holder(data, base=Path(path).parent)


def parse_holder(data: Mapping[str, Any], *, base: Path | None = None) -> cardsub.Holder:
    """A typed holder from the decoded JSON, with the checks the TSM would make later
    (password alphabet, portrait file) made now, before anything is issued."""
    try:
        holder = cardsub.parse_holder(data)
    except HolderError as exc:
        raise HolderFileError(exc.field, str(exc)) from None
    if holder.password is not None and holder.password != holder.password.upper():
        raise HolderFileError("password", "holder field 'password': the applet takes upper-case "
                                          "letters A-Z and digits only")
    if holder.portrait is not None:
        p = Path(holder.portrait)
        if not p.is_absolute() and base is not None:
            p = base / p
        try:
            jpeg = p.read_bytes()
        except OSError as exc:
            raise HolderFileError("portrait", f"holder field 'portrait': cannot read {p}: "
                                              f"{exc.strerror}") from None
        try:  # a JPEG, and its size too, here: past the bound it failed the job at the mdoc's write
            cardsub.check_portrait(jpeg)
        except cardsub.CardSubError as exc:
            raise HolderFileError("portrait", f"holder field 'portrait': {p}: {exc}") from None
        holder = _replace(holder, portrait=str(p))
    return holder


def _replace(holder: cardsub.Holder, **changes: Any) -> cardsub.Holder:
    from dataclasses import replace

    return replace(holder, **changes)


# --- the issuer port ---------------------------------------------------------------------


class CompositeIssuer:
    """The TSM's :class:`tsm.ports.IssuerPort`: JPKI from ``issuer.jpki``, mdocs from
    ``issuer.mdoc``. Every call is idempotent by ``job_ref`` (the issuers' guarantee).

    An issuer's refusal (its typed errors) reaches the TSM as
    :class:`tsm.errors.IssuerPortError`, a step failure: the job stops *interrupted* with
    the refusal as its error (resumable, or abandoned), as any other step that fails; it
    went through the TSM as an unknown exception, a crash, leaving the job running and the
    command a traceback."""

    def __init__(self, jpki: JpkiIssuer, mdoc: MdocService) -> None:
        self.jpki = jpki
        self.mdoc = mdoc

    def jpki_challenge(self, job_ref: str, phone_id: str, slot: str) -> bytes:
        with _refusals("JPKI challenge"):
            return self.jpki.jpki_challenge(job_ref, phone_id, slot)

    def issue_jpki_certificate(self, job_ref: str, phone_id: str, slot: str,
                               spki_der: bytes, proof: bytes) -> tuple[bytes, bytes]:
        with _refusals(f"JPKI {slot} certificate"):
            return self.jpki.issue_jpki_certificate(job_ref, phone_id, slot, spki_der, proof)

    def mdoc_challenge(self, job_ref: str, phone_id: str, slot_index: int) -> bytes:
        with _refusals("mdoc challenge"):
            return self.mdoc.mdoc_challenge(job_ref, phone_id, slot_index)

    def issue_mdoc(self, job_ref: str, phone_id: str, slot_index: int,
                   device_public_key_der: bytes, proof: bytes) -> bytes:
        with _refusals(f"mdoc of slot {slot_index}"):
            return self.mdoc.issue_mdoc(job_ref, phone_id, slot_index, device_public_key_der, proof)


@contextmanager
def _refusals(what: str) -> Iterator[None]:
    """The issuers' refusals as :class:`tsm.errors.IssuerPortError` naming ``what``: the job
    stops there, recorded as interrupted with the reason (to be resumed once the cause is
    gone, or abandoned), where an exception the TSM does not know left it running, as after
    a crash, and reached the user as a traceback."""
    try:
        yield
    except (IssuerJpkiError, IssuerMdocError) as exc:
        raise IssuerPortError(f"the issuer refused the {what}: {exc}") from exc


#: What a provisioning says of the signing certificate it did not issue
SIGN_WITHHELD = "holder under 15 (a signing certificate, 署名用電子証明書, is issued from 15)"


def holder_birth_date(ctx: Context, holder: cardsub.Holder | str) -> dt.date | None:
    """The birth date of a parsed holder, or of a registered one (None: unknown, erased)."""
    if not isinstance(holder, str):
        return holder.birth_date
    from issuer.db import Holder

    with ctx.sessions() as s:
        row = s.get(Holder, holder) if len(holder) <= 32 else None
    try:
        return dt.date.fromisoformat(row.data["birth_date"]) if row is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def jpki_slots_for(ctx: Context, holder: cardsub.Holder | str, now: dt.datetime | None = None) -> tuple[str, ...]:
    """The JPKI slots to provision for ``holder`` today in Japan: the user-authentication
    certificate at any age, the signing certificate from 15 on (``protocols.jpki.eligibility``;
    the CA refuses it before, whatever is planned). A holder whose birth date is unknown, or
    after today (a record no holder file gives), gets both planned, and the CA decides."""
    from protocols.birthdays import today_in_japan
    from protocols.jpki.eligibility import signing_eligible

    birth = holder_birth_date(ctx, holder)
    today = today_in_japan(now or dt.datetime.now(dt.UTC))
    minor = birth is not None and birth <= today and not signing_eligible(birth, today)
    return ("auth",) if minor else ("sign", "auth")


def sign_withheld(ctx: Context, phone_id: str | None) -> str | None:
    """Why the phone holds no live signing certificate (:data:`SIGN_WITHHELD` for a holder
    under 15), or None when it holds one (or is nobody's)."""
    if not phone_id:
        return None
    with ctx.sessions() as s:
        holder_id = s.scalar(select(Phone.holder_id).where(Phone.id == phone_id))
        live = s.scalar(select(Credential.id).where(Credential.phone_id == phone_id, Credential.kind == "jpki-sign",
                                                    Credential.status.in_(_LIVE)).limit(1))
    if live is not None or holder_id is None:
        return None
    if "sign" not in jpki_slots_for(ctx, holder_id):
        return SIGN_WITHHELD
    return "no signing certificate on the phone"


def issuer_port(ctx: Context) -> CompositeIssuer:
    """The installation's IssuerPort (CAs and IACA set up). The one-phone-per-person rule is
    the issuers' own (``issuer.revocation.supersede_on_other_phones``)."""
    jpki = jpki_issuer(ctx)
    mdoc = mdoc_service(ctx)
    mdoc.setup()
    return CompositeIssuer(jpki, mdoc)


def tsm_for(ctx: Context, port: CompositeIssuer | None = None, actor: str = "mcred") -> Tsm:
    return Tsm(ctx.engine, ctx.master_key, issuer=port or issuer_port(ctx),
               actor=actor, **ctx.tsm_trust())


# --- provisioning ------------------------------------------------------------------------


def register(ctx: Context, holder: cardsub.Holder | str, phone_id: str, *, actor: str = "mcred") -> str:
    """The holder's id (registered now from a parsed holder, or an existing id) with
    ``phone_id`` attached to it."""
    if isinstance(holder, str):
        attach_phone(ctx.sessions, holder, phone_id, actor=actor)
        return holder
    # registered and attached at once: a phone another holder took meanwhile leaves no holder
    holder_id = register_holder(ctx.sessions, holder, actor=actor, phone_id=phone_id)
    if holder.portrait:
        dst = portrait_path(ctx.home, holder_id)
        write_private(private_dir(dst.parent) / dst.name, Path(holder.portrait).read_bytes())
    return holder_id


def provision(ctx: Context, phone_id: str, holder: cardsub.Holder | str, *,
              key_type: str = "rsa2048", mdoc_batch: int = 2, pin: str | None = None,
              password: str | None = None, puk: str | None = None,
              after_step: StepHook | None = None, job_id: str | None = None,
              trace: Any = None, actor: str = "mcred",
              transmit: Callable[[bytes], bytes] | None = None, alone: bool = False,
              hold_secrets: bool = False) -> ProvisionResult:
    """Provision both credentials into ``phone_id`` for ``holder`` (a parsed holder, or the
    id of a registered one: a handover's new phone) and return what was issued.

    A parsed holder (a holder file) whom the registry knows already (the same identity
    fields: :func:`registered_holder`) is that holder: refused as ``--holder-id`` is
    (:func:`check_holder_for_new_phone`: live credentials on another phone are moved by a
    handover), and provisioned as the holder's only phone.

    ``alone``: the holder's only phone (``--holder-id``, after
    :func:`check_holder_for_new_phone`; always for a parsed holder): a provisioning of the
    holder on another phone that started first, or another phone's live credentials, make
    this one give up before its first step (:func:`_claim_holder`), so two at once never
    split the holder's credentials between two phones.

    ``job_id`` resumes an interrupted run (its secrets are unsealed from the job);
    ``after_step`` is the TSM's test hook (crash injection). ``transmit`` reaches the SE
    another way than opening the phone here (over the air: mcred/ota.py); the phone need
    not be this installation's simulator then.

    ``hold_secrets``: the finished job keeps its secrets sealed until its caller has shown
    them and says so (:meth:`tsm.jobs.Tsm.release_secrets`): a handover, which has steps to
    go after this one, that stops before showing them shows them when resumed."""
    t0 = time.perf_counter()
    if job_id is not None:
        return resume(ctx, job_id, after_step=after_step, trace=trace, transmit=transmit)
    if key_type not in KEY_TYPES:
        raise ProvisionError(f"key type {key_type!r} is neither rsa2048 nor p384")
    if type(mdoc_batch) is not int or not 1 <= mdoc_batch <= 16:
        raise ProvisionError(f"mdoc batch {mdoc_batch!r} is not an integer 1..16")
    if not isinstance(holder, str):
        pin = pin if pin is not None else holder.pin
        password = password if password is not None else holder.password
        puk = puk if puk is not None else holder.puk
    slots = jpki_slots_for(ctx, holder)  # a holder under 15: no signing key, certificate or password
    job_secrets, generated = generate_secrets(pin, password, puk, sign="sign" in slots)
    if transmit is None:
        transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit  # the phone exists, or refuse now
    port = issuer_port(ctx)
    tsm = tsm_for(ctx, port, actor)  # the issuer's keys and the TSM master key open, or refuse now
    known = _check_phone_free(ctx, phone_id, holder)  # before anything is registered
    check_issuance(ctx, known, (known or holder, slots, key_type))  # mdocs and certificates, one read
    try:
        holder_id = register(ctx, holder, phone_id, actor=actor)
    except RegistryHolderError:  # the phone taken by another holder since the check above
        with ctx.sessions() as s:
            owner = s.scalar(select(Phone.holder_id).where(Phone.id == phone_id))
        if owner is not None and owner != holder:
            raise ProvisionRefused(another_holders_phone(phone_id)) from None
        raise
    job = tsm.create_job(phone_id, "provision",
                         {"algorithm": key_type, "mdoc_count": mdoc_batch, "jpki_slots": list(slots),
                          **({"hold_secrets": True} if hold_secrets else {})}, job_secrets)
    if alone or not isinstance(holder, str):  # a holder file's person may be provisioned elsewhere at once
        _claim_holder(ctx, tsm, holder_id, phone_id, job, actor)
    view = tsm.run(job, transmit, secrets=job_secrets, after_step=after_step, trace=trace)
    return _result(view, holder_id, job_secrets, generated, time.perf_counter() - t0)


def _claim_holder(ctx: Context, tsm: Tsm, holder_id: str, phone_id: str, job_id: str, actor: str) -> None:
    """After job ``job_id`` was created (committed) for a holder's only phone: refuse it
    (:class:`ProvisionError`; the job abandoned before any step, the phone let go of the
    holder) when another of the holder's phones has live credentials, or an unfinished
    provisioning created before this one. Of two runs at once, each sees the other's job once
    its own is written, and exactly one, the later, gives up: the check before
    (:func:`check_holder_for_new_phone`) cannot see a rival that has issued nothing yet."""
    with ctx.engine.begin() as conn:  # one read transaction, committed: every holder file's run makes it
        phones = list(conn.scalars(select(Phone.id).where(Phone.holder_id == holder_id)))
        busy = conn.scalar(select(Credential.phone_id).where(Credential.holder_id == holder_id,
                                                             Credential.phone_id != phone_id,
                                                             Credential.status.in_(_LIVE)).limit(1))
        first = list_jobs(conn, kind="provision", unfinished=True, se_ids=phones, limit=1)
    rival = busy or (first[0].se_id if first and first[0].id != job_id else None)
    if rival is None:
        return
    why = f"holder {holder_id} is being provisioned on phone {rival} at the same time"
    tsm.abandon(job_id, actor, why)
    _let_go(ctx, phone_id, job_id, why, actor)
    raise ProvisionError(f"{why}: one phone per person (nothing was written to {phone_id}; "
                         f"moving the credentials later is a handover, `mcred handover --phone {rival} --to {phone_id}`)")


def _let_go(ctx: Context, phone_id: str, job_id: str, why: str, actor: str) -> str | None:
    """Let the phone go of its holder once it carries no live credential (audited
    ``phone.detach``, naming ``job_id`` and ``why``), so that it can be provisioned again;
    the holder let go of, or None (nobody's phone, or live credentials on it)."""
    from issuer.db import AuditEvent

    with ctx.sessions.begin() as s:
        phone = s.get(Phone, phone_id, with_for_update=True)
        live = s.scalar(select(Credential.id).where(Credential.phone_id == phone_id,
                                                    Credential.status.in_(_LIVE)).limit(1))
        if phone is None or phone.holder_id is None or live is not None:
            return None
        released, phone.holder_id = phone.holder_id, None
        s.add(AuditEvent(actor=actor, action="phone.detach", subject=phone_id,
                         detail={"holder": released, "job": job_id, "why": why[:200]}))
        return released


def registered_holder(ctx: Context, holder: cardsub.Holder, bind: Connection | None = None) -> str | None:
    """The id of the holder registered already as the person a holder file names
    (``issuer.holders.registered``: the same names, kana, birth date, sex and address), or
    None (read in ``bind``'s transaction if given); :class:`ProvisionRefused` when the
    registry holds another Roman-letter name for them."""
    from issuer.holders import registered

    try:
        return registered(ctx.sessions, holder, bind=bind)
    except RegistryHolderError as exc:
        raise ProvisionRefused(str(exc)) from None


def check_holder_for_new_phone(ctx: Context, holder_id: str, phone_id: str | None = None) -> None:
    """Refuse (:class:`ProvisionError`, naming what to do instead) provisioning a registered
    holder afresh when the registry has no such holder, or when one of the holder's phones
    still has live credentials (moving them is a handover: ``mcred handover``; on
    ``phone_id`` itself, whose provisioning stopped half-way, the unfinished job to resume or
    give up: :class:`ProvisioningUnfinishedError`)."""
    from issuer.db import Holder
    from issuer.holders import is_erased

    with ctx.sessions() as s:
        holder = s.get(Holder, holder_id) if isinstance(holder_id, str) and len(holder_id) <= 32 else None
        if holder is None:
            raise UnknownHolderError(f"no holder {str(holder_id)[:40]!r} in the issuer's registry")
        if is_erased(holder.data):
            raise ProvisionRefused(f"holder {holder_id}'s personal data was erased (mcred holder forget): "
                                 "provision from the holder's card again (--holder FILE.json)")
        busy = s.scalar(select(Credential.phone_id).where(Credential.holder_id == holder_id,
                                                          Credential.status.in_(_LIVE)).limit(1))
    if busy is not None and busy == phone_id:
        job = unfinished_job(ctx, phone_id)
        if job is not None:  # its own provisioning stopped half-way: that job is finished, not a new one
            raise _unfinished(phone_id, job)
        raise ProvisionRefused(f"phone {busy} already holds holder {holder_id}'s live credentials: fresh MSOs "
                             f"come from `mcred mdoc refresh --phone {busy}`, new certificates from a "
                             "renewal (POST /handovers, kind renewal)")
    if busy is not None:
        raise ProvisionRefused(f"holder {holder_id} has live credentials on phone {busy}: moving them to "
                             f"another phone is a handover (`mcred handover --phone {busy} --to ID`, "
                             "or POST /handovers)")


def forget_holder(ctx: Context, holder_id: str, *, actor: str, reason: str) -> dict | None:
    """Erase a holder's personal data (:func:`issuer.holders.forget`) once nothing can issue
    from it again: no live credential, and no unfinished TSM job on any of the holder's
    phones (a resumed provisioning would issue from the data; ``mcred tsm abandon`` it
    first). :class:`ProvisionError` naming the job; the issuer's errors as they are."""
    from issuer.holders import forget

    with ctx.sessions() as s:
        phones = list(s.scalars(select(Phone.id).where(Phone.holder_id == holder_id)))
        phones += list(s.scalars(select(Credential.phone_id).where(Credential.holder_id == holder_id).distinct()))
    for phone_id in sorted(set(phones)):
        left = [j for j in list_jobs(ctx.engine, phone_id, unfinished=True) if j.kind != "delete-credentials"]
        if left:
            raise ProvisionError(f"phone {phone_id} has an unfinished TSM job {left[0].id} ({left[0].kind}), which "
                                 f"would issue from the holder's data if resumed: `mcred tsm abandon {left[0].id} "
                                 "--reason TEXT` first")
    return forget(ctx.sessions, holder_id, actor=actor, reason=reason)


def unfinished_job(ctx: Context, phone_id: str, bind: Connection | None = None) -> JobView | None:
    """The phone's provisioning job that has not finished (crashed, lost answer), if any:
    read from the registry, no key opened (in ``bind``'s transaction if given)."""
    left = list_jobs(bind if bind is not None else ctx.engine, phone_id, kind="provision",
                     unfinished=True)
    return left[-1] if left else None


def check_mdoc_issuance(ctx: Context, holder_id: str | None) -> None:
    """Refuse (:class:`ProvisionRefused`: nothing was done, exit 2) a provisioning or an mdoc refresh before anything is
    written when the issuer would refuse its mdocs: the IACA in its last months or ended
    (:meth:`issuer.mdoc.service.MdocService.issuance_refusal`: roll it over), or the
    registered holder's card expired (:func:`issuer.holders.card_refusal`).
    Found by the issuer half-way instead, a refresh had erased the phone's valid mdocs (its
    rotation deletes them before writing the new ones) and a provisioning had issued the
    certificates, then stopped."""
    check_issuance(ctx, holder_id)


def check_issuance(ctx: Context, holder_id: str | None,
                    jpki: tuple[cardsub.Holder | str, tuple[str, ...] | list[str], str] | None = None) -> None:
    """:func:`check_mdoc_issuance`, and with ``jpki`` (holder, slots, key type) then
    :func:`check_jpki_issuance`, in one read transaction (a provisioning's round trips:
    tests/test_db_roundtrips.py)."""
    from issuer.db import Holder, utcnow
    from issuer.holders import card_refusal
    from issuer.mdoc.txn import run_transaction

    svc = mdoc_service(ctx)

    def work(s) -> tuple[str | None, RootEndsTooSoon | None]:  # noqa: ANN001 - one transaction, committed: a
        why = svc.pki.issuance_refusal(s, svc.clock())  # read ending in ROLLBACK costs PostgreSQL's prepared statements
        if why is None and holder_id is not None:
            row = s.get(Holder, holder_id)
            if row is not None:
                why = card_refusal(row.id, row.card_expiry, utcnow())
        return why, (_jpki_refusal(ctx, s, *jpki) if why is None and jpki is not None else None)

    why, refused = run_transaction(svc.sessions, work)
    if why is not None:
        raise ProvisionRefused(f"no mdoc can be issued now, nothing was done: {why}")
    if refused is not None:
        raise JpkiRootEndingError(f"no JPKI {refused.slot} certificate can be issued now, nothing was done: "
                                  f"{refused}", refused)


def check_jpki_issuance(ctx: Context, holder: cardsub.Holder | str, slots: tuple[str, ...] | list[str],
                        key_type: str, now: dt.datetime | None = None) -> None:
    """Refuse (:class:`JpkiRootEndingError`: nothing was done, exit 2, ``409``) a provisioning,
    a certificate renewal, a first signing certificate or a workflow's re-issue, before the SE
    makes a key, when a certificate of ``slots`` for a ``key_type`` key issued to ``holder`` (a
    parsed holder, or a registered holder's id) would outlive its slot's issuing root
    generation: the issuer refuses it then (:meth:`issuer.jpki.JpkiIssuer.issuance_refusal`,
    the same rule on the installation's JPKI clock), after the TSM's GENERATE KEY had replaced
    the slot's key and erased its certificate. The registry alone is read (the roots' rows, the
    holder's birth date and card), in one transaction."""
    with ctx.sessions.begin() as s:  # committed: a read ending in ROLLBACK costs PostgreSQL's prepared statements
        refused = _jpki_refusal(ctx, s, holder, slots, key_type, now)
    if refused is not None:
        raise JpkiRootEndingError(f"no JPKI {refused.slot} certificate can be issued now, nothing was done: "
                                  f"{refused}", refused)


def _jpki_refusal(ctx: Context, s: Session, holder: cardsub.Holder | str, slots: tuple[str, ...] | list[str],
                  key_type: str, now: dt.datetime | None = None) -> RootEndsTooSoon | None:
    """What :func:`check_jpki_issuance` refuses, read in ``s``, or None."""
    from issuer.db import Holder
    from issuer.holders import simulated_card_expiry
    from protocols.birthdays import today_in_japan
    from protocols.jpki.profile import KeyType

    jpki = jpki_issuer(ctx)
    now = now or jpki.clock()
    if isinstance(holder, str):
        row = s.get(Holder, holder) if len(holder) <= 32 else None
        try:
            birth = dt.date.fromisoformat(row.data["birth_date"]) if row is not None else None
        except (KeyError, TypeError, ValueError):
            return None  # erased: the issuance refuses it, saying so
        card = row.card_expiry if row is not None else None
    else:
        birth = holder.birth_date
        card = holder.card_expiry_date or simulated_card_expiry(birth, today_in_japan(now))
    if birth is None:
        return None
    return jpki.issuance_refusal(tuple(slots), KeyType(key_type), birth, card, now, session=s)


def _check_phone_free(ctx: Context, phone_id: str, holder: cardsub.Holder | str) -> str | None:
    """Refuse, naming what to do instead, a phone with an unfinished provisioning job (it is
    resumed, not started again: its secrets and keys are already on their way; also when the
    job is this same person's), one that belongs to another holder, or a parsed holder whom
    the registry knows already (:func:`registered_holder`) with live credentials
    (:func:`check_holder_for_new_phone`: on another phone, moved by a handover). The
    registered holder ``holder`` is: itself for an id, the known person's or None for a
    parsed holder. The reads in one transaction (a provisioning's round trips:
    tests/test_db_roundtrips.py)."""
    with ctx.engine.begin() as conn:
        job = unfinished_job(ctx, phone_id, conn)
        owner = conn.execute(select(Phone.holder_id).where(Phone.id == phone_id)).scalar()
        known = holder if isinstance(holder, str) else registered_holder(ctx, holder, conn)
    if job is not None:
        raise _unfinished(phone_id, job)
    if known is not None and not isinstance(holder, str):  # the same person again: one phone per person
        check_holder_for_new_phone(ctx, known, phone_id)
    if owner and owner != (known or holder):
        raise ProvisionRefused(another_holders_phone(phone_id))
    return known


def _unfinished(phone_id: str, job: JobView) -> ProvisioningUnfinishedError:
    """The refusal of a phone whose provisioning job ``job`` has not finished."""
    where = f"stopped before step {job.current_step}" if job.current_step else "at its end"
    return ProvisioningUnfinishedError(
        f"phone {phone_id} has an unfinished provisioning job {job.id} ({job.state}, {where}"
        + (f": {job.error}" if job.error else "") + f"); resume it with `mcred provision --resume {job.id}`"
        f", or give it up with `mcred tsm abandon {job.id} --reason TEXT`",
        job.id)


def another_holders_phone(phone_id: str) -> str:
    """The refusal of a phone that is another holder's: the phone, never whose it is (the
    operator asked for a provisioning, not for the registry's record of the phone)."""
    return (f"phone {phone_id} belongs to another holder: a phone carries one holder's credentials "
            "(a holder's new phone takes their credentials by a handover, `mcred handover`)")


def resume(ctx: Context, job_id: str, *, after_step: StepHook | None = None,
           trace: Any = None, transmit: Callable[[bytes], bytes] | None = None) -> ProvisionResult:
    """Finish an interrupted provisioning job (a crash, a lost answer); ``transmit`` as for
    :func:`provision`."""
    t0 = time.perf_counter()
    tsm = tsm_for(ctx)
    job = tsm.job(job_id)
    if job.kind != "provision":  # the command as given: nothing ran, nothing to try again
        raise JobInputError(f"job {job_id} is a {job.kind} job, not a provisioning"
                            + (": `mcred jpki pin reset --resume` finishes it" if job.kind == "reset-secrets" else ""))
    # an unfinished job's secrets, or a finished one's held for the caller to show
    sealed = tsm._unseal(job_id) if job.state != "done" else tsm.held_secrets(job_id)
    if transmit is None:
        transmit = wallet_sim.open_secure_element(job.se_id, ctx.home).transmit
    view = tsm.run(job_id, transmit, after_step=after_step, trace=trace)
    with ctx.sessions() as s:
        holder_id = s.scalar(select(Phone.holder_id).where(Phone.id == job.se_id)) or ""
    secrets_ = sealed or JobSecrets("0000", "XXXXXX", None)
    # the interrupted run ended before it could show the holder's secrets: show them now,
    # the one time they can still be read (the job erases them as it ends)
    shown = ("pin", *(("password",) if sealed.signing_password else ()),
             *(("puk",) if sealed.puk else ())) if sealed is not None else ()
    return _result(view, holder_id, secrets_, shown, time.perf_counter() - t0,
                   secrets_known=sealed is not None)


def _result(view: JobView, holder_id: str, sec: JobSecrets, generated: tuple[str, ...],
            seconds: float,
            *, secrets_known: bool = True) -> ProvisionResult:
    if view.state != "done":  # pragma: no cover - Tsm.run raises instead
        raise ProvisionError(f"job {view.id} ended in state {view.state}: {view.error}")
    r = view.results
    sign, auth = r.get("issue-sign-cert"), r["issue-auth-cert"]  # no sign step: a holder under 15
    mdocs = r.get("issue-mdoc", {}).get("issuer_signed", {})
    return ProvisionResult(
        phone_id=view.se_id, holder_id=holder_id, job_id=view.id,
        key_type=view.input["algorithm"],
        sign_certificate=bytes.fromhex(sign["certificate"]) if sign else None,
        sign_ca=bytes.fromhex(sign["ca"]) if sign else None,
        auth_certificate=bytes.fromhex(auth["certificate"]), auth_ca=bytes.fromhex(auth["ca"]),
        mdocs=tuple(bytes.fromhex(mdocs[k]) for k in sorted(mdocs, key=int)),
        pin=sec.user_auth_pin if secrets_known else "",
        password=(sec.signing_password or "") if secrets_known else "",
        puk=(sec.puk or "") if secrets_known else "", generated=generated, seconds=seconds,
        sign_withheld=None if sign else SIGN_WITHHELD)


# --- MSO refresh ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshResult:
    """What one MSO refresh put into the phone."""

    phone_id: str
    job_id: str
    #: Slots whose device key was regenerated (0 when the keys were kept).
    rotated: int
    #: ``(credential id, slot, valid until)`` of each new MSO.
    issued: tuple[tuple[str, int, str], ...]
    #: Credential ids of the MSOs they replaced (revoked, reason superseded).
    superseded: tuple[str, ...]
    seconds: float = 0.0
    #: the job was one that had stopped (a crash, a lost answer), finished by this call
    resumed: bool = False

    def summary(self) -> dict[str, Any]:
        return {"phone": self.phone_id, "job": self.job_id, "resumed": self.resumed, "rotated_keys": self.rotated,
                "issued": [{"credential": c, "slot": slot, "valid_until": until}
                           for c, slot, until in self.issued],
                "superseded": list(self.superseded), "seconds": round(self.seconds, 3)}


def refresh_mdocs(ctx: Context, phone_id: str, *, batch: int | None = None, rotate: bool = True,
                  trace: Any = None, actor: str = "mcred", job_id: str | None = None,
                  after_step: StepHook | None = None,
                  transmit: Callable[[bytes], bytes] | None = None) -> RefreshResult:
    """Issue fresh MSOs into the phone's mdoc slots 0..N-1 (a TSM ``refresh-mdoc`` job): new
    device keys generated in the SE unless ``rotate`` is False, a new MSO per slot (new
    validity, salts, status index), written over the old one; the old MSOs are revoked as
    superseded in the issuing transaction. ``batch`` defaults to the slots holding a valid
    mdoc now. Refused before anything changes when the phone is not active, not registered,
    has credentials on hold (lift the hold first: the rotation erases the old MSOs), or, with
    no ``batch``, holds no valid mdoc (with a ``batch``, a phone whose MSOs were all revoked
    gets new ones: the operator's decision), or while the holder has live credentials on
    another phone (:func:`_refuse_live_elsewhere`). ``job_id`` resumes an interrupted refresh of this phone;
    ``after_step`` is the TSM's test hook (crash injection); ``transmit`` as for
    :func:`provision` (over the air)."""
    from issuer.mdoc.models import MdocIssuance

    t0 = time.perf_counter()
    left = [] if job_id is not None else list_jobs(ctx.engine, phone_id, kind="refresh-mdoc", unfinished=True)
    if left:  # a refresh of this phone that stopped (a crash, a lost answer) is finished, not started again
        done = refresh_mdocs(ctx, phone_id, trace=trace, actor=actor, job_id=left[-1].id, after_step=after_step,
                             transmit=transmit)
        return dataclasses.replace(done, resumed=True)
    if job_id is not None:
        tsm = tsm_for(ctx, issuer_port(ctx), actor)
        job = tsm.job(job_id)
        if job.kind != "refresh-mdoc" or job.se_id != phone_id:
            raise ProvisionError(f"job {job_id} is not a refresh of phone {phone_id!r}")
        if transmit is None:
            transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit
        return _refreshed(ctx, phone_id, tsm.run(job_id, transmit, after_step=after_step,
                                                 trace=trace), t0)
    if batch is not None and (type(batch) is not int or not 1 <= batch <= 16):
        raise ProvisionError(f"mdoc batch {batch!r} is not an integer 1..16")
    if transmit is None:
        transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit  # the phone exists, or refuse now
    with ctx.sessions() as s:
        _check_active(s, phone_id, "provision it first", "nothing is refreshed")
        held = s.scalar(select(Credential.id).where(Credential.phone_id == phone_id,
                                                    Credential.status == "hold").limit(1))
        if held is not None:
            raise ProvisionError(f"phone {phone_id!r} has credentials on hold ({held}): release "
                                 "them first (mcred release) or revoke them")
        _refuse_live_elsewhere(s, phone_id)
        slots = valid_mdoc_slots(s, phone_id)
        issued_before = s.scalar(select(func.max(MdocIssuance.slot)).where(MdocIssuance.phone_id == phone_id))
    if not slots and batch is None:
        if issued_before is None:
            raise ProvisionError(f"phone {phone_id!r} holds no valid mdoc to refresh: provision it")
        # its MSOs were all revoked (say, by an abandoned refresh that had superseded them):
        # new ones are issued only when asked with the number of slots
        raise ProvisionError(f"phone {phone_id!r} holds no valid mdoc: its last ones were revoked; "
                             f"`mcred mdoc refresh --phone {phone_id} --batch {issued_before + 1}` issues new "
                             "ones into its slots")
    count = batch if batch is not None else max(slots) + 1
    with ctx.sessions() as s:
        holder_id = s.get(Phone, phone_id).holder_id
    check_mdoc_issuance(ctx, holder_id)  # before the rotation erases the old MSOs
    tsm = tsm_for(ctx, issuer_port(ctx), actor)
    try:
        job = tsm.create_job(phone_id, "refresh-mdoc", {"mdoc_count": count, "rotate": rotate})
    except JobInputError as exc:
        raise ProvisionError(str(exc)) from exc
    return _refreshed(ctx, phone_id, tsm.run(job, transmit, after_step=after_step, trace=trace), t0)


def _refuse_live_elsewhere(s: Session, phone_id: str) -> None:
    """Refuse (:class:`ProvisionError`) a refresh of a phone while its holder has live
    credentials (valid, or on hold) on another phone. The new MSOs would revoke that phone's
    mdocs (one phone per person, by kind) and leave its certificates: a phone whose mdocs were
    all revoked, refreshed with ``--batch``, took the mdoc and left the JPKI certificates on
    the phone the holder had been provisioned on since, valid credentials on two phones (or,
    after the release of a hold, again on two). Card renewal and a move act on the phone with
    the holder's valid credentials, and refuse while one is on hold, the same way."""
    holder_id = s.get(Phone, phone_id).holder_id
    row = s.execute(select(Credential.phone_id, Credential.status).where(
        Credential.holder_id == holder_id, Credential.phone_id != phone_id,
        Credential.status.in_(_LIVE)).order_by(Credential.status.desc(), Credential.phone_id).limit(1)).first()
    if row is None:
        return
    other, status = row
    if status == "hold":
        raise ProvisionError(f"holder {holder_id} has credentials on hold (lost) on phone {other}: settle that "
                             f"first (a found, or lost_confirmed, of {other}), then refresh the phone that "
                             f"holds the credentials; nothing is refreshed on {phone_id}")
    raise ProvisionError(f"holder {holder_id}'s valid credentials are on phone {other}, not {phone_id}: "
                         f"a refresh of {phone_id} would leave the holder's credentials split between two "
                         f"phones (one phone per person); refresh {other} (`mcred mdoc refresh --phone "
                         f"{other}`), or move everything with a handover (`mcred handover --phone {other} "
                         f"--to {phone_id}`); nothing is refreshed")


def valid_mdoc_slots(s: Session, phone_id: str) -> list[int]:
    """The phone's mdoc slots that hold a valid MSO now, in order."""
    from issuer.mdoc.models import MdocIssuance

    return sorted(set(s.scalars(select(MdocIssuance.slot).join(
        Credential, Credential.id == MdocIssuance.credential_id).where(
        MdocIssuance.phone_id == phone_id, Credential.status == "valid"))))


def _check_active(s: Session, phone_id: str, if_unregistered: str, if_inactive: str) -> None:
    """Refuse (:class:`ProvisionError`) a phone the registry does not give a holder, or one
    that is not active (retired, lost, revoked), each with what that means for the caller."""
    phone = s.get(Phone, phone_id)
    if phone is None or phone.holder_id is None:
        raise ProvisionError(f"phone {phone_id!r} is not registered to a holder: {if_unregistered}")
    if phone.state == "lost":
        raise ProvisionError(f"phone {phone_id!r} is on hold (reported lost), not active: {if_inactive} "
                             f"(`mcred release --phone {phone_id}` once it is found)")
    if phone.state != "active":
        raise ProvisionError(f"phone {phone_id!r} is {phone.state}, not active: {if_inactive}")


def _refreshed(ctx: Context, phone_id: str, view: JobView, t0: float) -> RefreshResult:
    """The MSOs the job issued, and those their issuance superseded (the revocation audit
    of each names the credential that replaced it: ``by_credential``)."""
    from issuer.mdoc.models import MdocIssuance

    if view.state != "done":  # pragma: no cover - Tsm.run raises instead
        raise ProvisionError(f"job {view.id} ended in state {view.state}: {view.error}")
    with ctx.sessions() as s:
        rows = s.execute(select(MdocIssuance.credential_id, MdocIssuance.slot, Credential.not_after)
                         .join(Credential, Credential.id == MdocIssuance.credential_id)
                         .where(MdocIssuance.job_ref == view.id).order_by(MdocIssuance.slot)).all()
        revocations = superseded_revocations(s, phone_id)
    new_ids = {cid for cid, _, _ in rows}
    superseded = tuple(sorted({subject for subject, detail in revocations
                               if isinstance(detail, dict) and detail.get("by_credential") in new_ids}))
    issued = tuple((cid, slot, until.isoformat() if until else "") for cid, slot, until in rows)
    return RefreshResult(phone_id, view.id, view.results.get("rotate-device-keys", {}).get("generated", 0),
                         issued, superseded, time.perf_counter() - t0)


def superseded_revocations(s: Session, phone_id: str) -> list:
    """(credential id, audit detail) of each revocation of the phone's superseded mdocs: the
    phone's credentials first, each one's events off the subject index (on
    ``ix_issuer_audit_action`` SQLite walked every revocation of the installation)."""
    from issuer.db import AuditEvent, unindexed

    return list(s.execute(select(AuditEvent.subject, AuditEvent.detail)
                          .join(Credential, Credential.id == AuditEvent.subject)
                          .where(unindexed(AuditEvent.action) == "credential.revoke",
                                 Credential.phone_id == phone_id, Credential.kind == "mdoc",
                                 Credential.reason == "superseded")).all())


def live_credentials(ctx: Context, phone_id: str) -> list[Credential]:
    """The phone's credentials that are valid or on hold (registry view)."""
    with ctx.sessions() as s:
        return list(s.scalars(select(Credential).where(Credential.phone_id == phone_id,
                                                       Credential.status.in_(_LIVE))))


# --- giving a job up ---------------------------------------------------------------------


@dataclass(frozen=True)
class AbandonResult:
    """What abandoning a job undid: the credentials it had issued (revoked), the wipe of
    the phone's SE, and whether the phone was let go of its holder."""

    job_id: str
    phone_id: str
    kind: str
    #: ``(credential id, kind)`` of each credential the job issued that was still live
    revoked: tuple[tuple[str, str], ...]
    #: the delete-credentials job that wipes the SE (a provisioning job on a reachable
    #: phone), or None
    wipe_job: str | None
    #: whether the SE was wiped (the wipe job ran to its end)
    wiped: bool
    #: why it was not (an unreachable phone, a quarantined SE, ...), or None
    wipe_error: str | None
    #: the holder the phone was let go of, or None
    released_holder: str | None
    #: the wipe met a quarantined SE (:data:`tsm.errors.QUARANTINE_ERRORS`): only clearing
    #: the quarantine lets it run
    wipe_quarantined: bool = False
    #: a ``renew-jpki`` job's slots it left without a usable certificate, each to be renewed
    #: (``mcred jpki renew --phone ID --slot SLOT``, taken whatever the old expiry)
    renewal_needed: tuple[str, ...] = ()
    #: what the SE was found to hold where a step may have run (:class:`SlotCheck`), or None
    #: when nothing needed checking
    se_check: SlotCheck | None = None
    #: an ``issue-sign`` job left the phone with no live signing certificate (none issued,
    #: or the one issued revoked: not in use): it is to be issued again (``mcred jpki
    #: issue-sign --phone ID``)
    sign_issue_needed: bool = False

    def summary(self) -> dict[str, Any]:
        return {"job": self.job_id, "phone": self.phone_id, "kind": self.kind,
                "revoked": [{"credential": c, "kind": k} for c, k in self.revoked],
                "wipe_job": self.wipe_job, "wiped": self.wiped, "wipe_error": self.wipe_error,
                "released_holder": self.released_holder, "renewal_needed": list(self.renewal_needed),
                "se_check": None if self.se_check is None else self.se_check.summary(),
                "sign_issue_needed": self.sign_issue_needed}


@dataclass(frozen=True)
class SlotCheck:
    """What an abandon found in the phone's JPKI slots where the job stopped at a step that may
    have run (the TSM does not know whether its command reached the SE): a ``read-jpki`` TSM
    job read each slot's key and certificate digests (READ STATE), compared with the
    registry's certificates (:func:`_judge_slots`)."""

    #: the read-jpki job (None: none was made, the phone not reachable from here)
    job: str | None
    #: per slot checked: ``unchanged`` (its certificate from before the job and that
    #: certificate's key: the step never changed it), ``written`` (the job's new certificate
    #: and its key), ``password_unset`` (an issue-sign's certificate and key, no password),
    #: ``replaced`` (neither: the key replaced, no usable certificate) or ``unknown`` (not read)
    slots: dict[str, str]
    #: why the SE could not be read (then every slot is ``unknown``), or None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"job": self.job, "slots": dict(self.slots), "error": self.error}


class AbandonSeBusyError(LockBusyError):
    """An abandon that reads the phone's SE (a JPKI job stopped at a step that may have run,
    :func:`_check_slots`) found it held by another job past the lock's wait: the job is
    abandoned (it never runs again), but nothing is judged or revoked yet, and the read job
    waits, unfinished. The same abandon again reads the SE and decides. A busy SE is no
    reason to take the slots as changed: that revoked certificates the SE may well hold."""


#: The revocation reason of what an abandoned job had issued (it may never have reached
#: the holder: the job did not finish writing it)
ABANDON_REASON = "cessationOfOperation"


def abandon(ctx: Context, job_id: str, reason: str, *, actor: str = "mcred",
            transmit: Callable[[bytes], bytes] | None = None, trace: Any = None) -> AbandonResult:
    """Give up a TSM job that cannot finish (specs/tsm.md, "Abandoning a job").

    The job ends for good (:meth:`tsm.jobs.Tsm.abandon`: audited, its sealed secrets
    erased). Every credential issued under it that is still live is revoked
    (cessationOfOperation): it may sit in the issuer's registry without ever having reached
    the phone, and nothing else would end it.

    A ``renew-jpki`` job (:func:`renew_jpki`) is judged slot by slot (:func:`_renewal_left`):
    a slot whose new certificate the job wrote keeps it (it is on the phone, valid); a slot
    the job had not reached keeps its old certificate; a slot whose GENERATE KEY ran, or may
    have run, without the write recorded is left with no usable certificate: the SE's old
    key and certificate are gone, and the new certificate, if the CA issued it (superseding
    the old one), never reached the phone. Its live certificate (the new one, or else the
    old one) is revoked, cessationOfOperation, and marked
    (:func:`issuer.revocation.revoke_abandoned_renewal`): the slot is one to be renewed
    (``renewal_needed``; :func:`check_renew_jpki` takes it whatever the old expiry, ``mcred
    credential list`` and ``mcred holder show`` name it).

    For a ``provision`` job the phone is also cleared, so that it can be provisioned again:
    its SE is wiped by a ``delete-credentials`` job, and the phone, left with no live
    credential, is let go of its holder (who stays registered: ``mcred provision
    --holder-id`` provisions them again). A phone that is not reachable (gone from the data
    directory) is let go of without a wipe. A wipe that fails (a quarantined SE, a lost
    answer) is reported, not raised, and the phone stays with its holder: calling this
    again, once the cause is gone, resumes the same wipe job and then lets the phone go.
    ``transmit``: how to reach the phone's SE for the wipe (over the air, its GP SERAM
    session) instead of opening it in the data directory; ``trace``: the wipe's plain APDU
    pairs, as for :func:`provision`.
    """
    from issuer import revocation
    from tsm.errors import QUARANTINE_ERRORS, TsmError

    tsm = Tsm(ctx.engine, ctx.master_key, actor=actor, **ctx.tsm_trust())
    view = tsm.abandon(job_id, actor, reason)
    # the revocations' actor names the abandon, cut to fit the audit's column (128)
    by = f"{actor[:120]}:abandon"
    if view.kind == "renew-jpki":  # slot by slot: what the phone holds now
        created = view.created_at or dt.datetime.now(dt.UTC)
        maybe = _renewal_left(view)
        check = _check_slots(ctx, tsm, view, maybe, transmit, trace, actor) if maybe else None
        # a slot the SE shows unchanged (its old key and certificate) or written (the new ones) keeps them
        left = tuple(x for x in maybe if check is None or check.slots[x] not in ("unchanged", "written"))
        changes = revocation.revoke_abandoned_renewal(ctx.sessions, view.se_id, left, job_id, created, actor=by)
        with ctx.sessions() as s:
            needed = revocation.renewals_needed(s, [view.se_id]).get(view.se_id, {})
        result = AbandonResult(job_id, view.se_id, view.kind,
                               tuple(sorted((c.credential_id, c.kind) for c in changes)), None, False, None, None,
                               renewal_needed=tuple(x for x in left if needed.get(x) == job_id), se_check=check)
        _audit_abandon(ctx, result, by)
        return result
    if view.kind == "issue-sign":
        return _abandon_sign_issue(ctx, tsm, view, transmit, trace, actor, by)
    with ctx.sessions() as s:
        ids = list(s.scalars(select(Credential.id).where(Credential.job_ref == job_id,
                                                         Credential.status.in_(_LIVE))))
    changes = revocation.revoke_ids(ctx.sessions, ids, ABANDON_REASON, actor=by)
    revoked = tuple(sorted((c.credential_id, c.kind) for c in changes))
    if view.kind != "provision":
        return AbandonResult(job_id, view.se_id, view.kind, revoked, None, False, None, None)
    wipe_job = wipe_error = None
    wiped = quarantined = False
    reachable = transmit is not None or view.se_id in wallet_sim.list_phones(ctx.home)
    if not reachable:
        wipe_error = f"phone {view.se_id} is not under {ctx.home}: nothing to wipe"
    else:
        wiper = f"abandon:{job_id}"  # the wipe job's actor: a second call finds it again
        earlier = [j for j in list_jobs(ctx.engine, view.se_id, kind="delete-credentials")
                   if j.actor == wiper]
        try:
            wipe_job = earlier[-1].id if earlier else tsm.create_job(view.se_id, "delete-credentials",
                                                                     actor=wiper)
            if transmit is None:
                transmit = wallet_sim.open_secure_element(view.se_id, ctx.home).transmit
            wiped = tsm.run(wipe_job, transmit, actor=wiper, trace=trace).state == "done"
        except (TsmError, wallet_sim.SeError) as exc:
            wipe_error = f"{type(exc).__name__}: {exc}"
            quarantined = isinstance(exc, QUARANTINE_ERRORS)
    released = _let_go(ctx, view.se_id, job_id, "job abandoned", actor) if wiped or not reachable else None
    return AbandonResult(job_id, view.se_id, view.kind, revoked, wipe_job, wiped, wipe_error, released,
                         quarantined)


def _check_slots(ctx: Context, tsm: Tsm, view: JobView, slots: tuple[str, ...],
                 transmit: Callable[[bytes], bytes] | None, trace: Any, actor: str) -> SlotCheck:
    """Ask the phone's SE what ``slots`` hold now, for an abandon of ``view`` (a job that
    stopped at a step that may have run): a ``read-jpki`` TSM job (actor ``abandon:JOB``)
    reads the JPKI applet's state over a new secure channel, and :func:`_judge_slots`
    compares it with the registry. The job's parties meet only through the APDUs: the SE
    answers digests (SHA-256 of each slot's SubjectPublicKeyInfo and certificate), which the
    issuer's certificates are held to here, in the composition root.

    One read per abandon: a second call takes the first one's answer (or, if it failed, its
    failure), so that the abandon decides once however often it is called. A phone not
    reachable from here (not in the data directory, no ``transmit``), a quarantined SE, a
    lost answer: every slot ``unknown``, the read job abandoned (it is not left unfinished),
    and the caller revokes as for a step that ran. An SE another job holds is waited for as
    every job waits for it (the TSM's lock timeout, 30 s); held past that, the read never
    reached the SE, so nothing is decided: :class:`AbandonSeBusyError`, the read job left
    pending for the next call, which runs it."""
    from tsm.errors import TsmError

    reader = f"abandon:{view.id}"
    earlier = [j for j in list_jobs(ctx.engine, view.se_id, kind="read-jpki") if j.actor == reader]
    read = None
    if earlier:
        done = read_job(ctx.engine, earlier[-1].id)
        if done.state == "done":
            return SlotCheck(done.id, _judge_slots(ctx, view, slots, done.results["read-jpki-state"]))
        if done.state == "abandoned":
            return SlotCheck(done.id, dict.fromkeys(slots, "unknown"),
                             done.error or f"read-jpki job {done.id} {done.state}")
        read = done.id  # put off by a busy SE: read now
    if transmit is None and view.se_id not in wallet_sim.list_phones(ctx.home):
        error = f"phone {view.se_id} is not under {ctx.home}: its SE could not be read"
        if read is not None:
            tsm.abandon(read, reader, error[:200])
        return SlotCheck(read, dict.fromkeys(slots, "unknown"), error)
    if read is None:
        read = tsm.create_job(view.se_id, "read-jpki", actor=reader)
    try:
        if transmit is None:
            transmit = wallet_sim.open_secure_element(view.se_id, ctx.home).transmit
        done = tsm.run(read, transmit, actor=reader, trace=trace)
    except LockBusyError as exc:  # the SE not reached: nothing known either way, so nothing decided
        raise AbandonSeBusyError(
            f"job {view.id} is abandoned, but its phone's SE is busy with another job ({exc}): what the "
            f"job left in its {', '.join(slots)} slot(s) is not read, and nothing is revoked yet; run "
            f"`mcred tsm abandon {view.id} --reason TEXT` again once the other job has finished (the read "
            f"job {read} waits for it)") from exc
    except (TsmError, wallet_sim.SeError) as exc:
        # given up at once (not left unfinished), its error what a second call reports
        gone = tsm.abandon(read, reader, f"the SE could not be read ({type(exc).__name__}: {exc})"[:200])
        return SlotCheck(read, dict.fromkeys(slots, "unknown"), gone.error)
    return SlotCheck(read, _judge_slots(ctx, view, slots, done.results["read-jpki-state"]))


def _abandon_sign_issue(ctx: Context, tsm: Tsm, view: JobView, transmit: Callable[[bytes], bytes] | None,
                        trace: Any, actor: str, by: str) -> AbandonResult:
    """An ``issue-sign`` job given up (:func:`abandon`). Nothing was issued before its
    issue-sign-cert step: nothing is revoked (a key it generated stays in the SE, which the
    next ``issue-sign`` replaces). A certificate the CA issued under it is revoked and marked
    (:func:`issuer.revocation.revoke_abandoned_sign_issue`) unless it is in use: the SE
    holds it with its key and the signing password set (``written``, read by a
    ``read-jpki`` job when the job stopped at its write or later, :func:`_check_slots`), and
    the password is one the holder knows (given when the job was made, ``jpki.issue-sign``;
    a generated one was to be shown at the job's end, and the abandon erases it). Revoked,
    the slot holds no live signing certificate, so ``mcred jpki issue-sign`` runs again."""
    from issuer import revocation

    with ctx.sessions() as s:
        issued = list(s.scalars(select(Credential.id).where(Credential.job_ref == view.id,
                                                            Credential.kind == "jpki-sign",
                                                            Credential.status.in_(_LIVE))))
    check = None
    if issued and _sign_password_given(ctx, view) and view.next_step >= view.steps.index("write-sign-cert"):
        check = _check_slots(ctx, tsm, view, ("sign",), transmit, trace, actor)
    kept = check is not None and check.slots["sign"] == "written"
    changes = [] if kept else revocation.revoke_abandoned_sign_issue(ctx.sessions, issued, view.id, actor=by)
    result = AbandonResult(view.id, view.se_id, view.kind, tuple(sorted((c.credential_id, c.kind) for c in changes)),
                           None, False, None, None, se_check=check, sign_issue_needed=not kept)
    _audit_abandon(ctx, result, by, sign_issue_needed=result.sign_issue_needed,
                   password=None if not issued else "given" if _sign_password_given(ctx, view) else "generated")
    return result


def _sign_password_given(ctx: Context, view: JobView) -> bool:
    """Whether the ``issue-sign`` job's signing password was given (the holder's own) rather
    than generated, as :func:`issue_sign` recorded it (``jpki.issue-sign``); a job with no
    record counts as generated (its holder may never have seen it)."""
    from issuer.db import AuditEvent

    with ctx.sessions() as s:
        for detail in s.scalars(select(AuditEvent.detail).where(AuditEvent.action == "jpki.issue-sign",
                                                                AuditEvent.subject == view.se_id)):
            if (detail or {}).get("job") == view.id:
                return detail.get("password") == "given"
    return False


def _judge_slots(ctx: Context, view: JobView, slots: tuple[str, ...], state: Mapping[str, Any]) -> dict[str, str]:
    """Each of ``slots`` as the SE's READ STATE (``state``, :func:`tsm.steps.read_jpki_state`)
    shows it against the registry: ``unchanged`` when it holds the certificate that was the
    slot's before the job (issued before it was made) and that certificate's key, still live:
    the GENERATE KEY never reached the SE; ``written`` when it holds the job's new
    certificate and its key, live: the write reached the SE, its answer lost; otherwise
    ``replaced``. Only a certificate that is live in the registry counts: one superseded or
    revoked since is no usable certificate, whatever the SE holds. For an ``issue-sign``
    (the slot's first certificate) a written one with the signing password not set is
    ``password_unset``: nothing guards its key, and the holder cannot sign with it."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def digests(body: bytes) -> tuple[str, str]:
        spki = x509.load_der_x509_certificate(body).public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(body).hexdigest(), hashlib.sha256(spki).hexdigest()

    created = view.created_at or dt.datetime.now(dt.UTC)
    out = {}
    with ctx.sessions() as s:
        for slot in slots:
            held = (state.get("slots") or {}).get(slot) or {}
            found = (held.get("certificate_sha256"), held.get("spki_sha256"))
            rows = s.scalars(select(Credential).where(Credential.phone_id == view.se_id,
                                                      Credential.kind == _SLOT_KINDS[slot])
                             .order_by(Credential.issued_at, Credential.id)).all()
            before = [r for r in rows if r.job_ref != view.id and _aware(r.issued_at) < created]
            new = [r for r in rows if r.job_ref == view.id]
            verdict = "replaced"
            if found[0] and found[1]:
                if before and before[-1].status in _LIVE and digests(before[-1].body) == found:
                    verdict = "unchanged"
                elif any(r.status in _LIVE and digests(r.body) == found for r in new):
                    verdict = "written"
            if verdict == "written" and view.kind == "issue-sign" and not held.get("secret_set"):
                verdict = "password_unset"  # a first signing certificate with no password: unusable
            out[slot] = verdict
    return out


def _aware(t: dt.datetime) -> dt.datetime:
    """A time the database gave back, in UTC (SQLite keeps no offset)."""
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _audit_abandon(ctx: Context, result: AbandonResult, actor: str, **more: Any) -> None:
    """The issuer's record of what abandoning a JPKI job (``renew-jpki``, ``issue-sign``)
    decided for the phone's slots (``jpki.abandon``, subject the phone): what the SE was found
    to hold (``se_check``), what was revoked, which slots are to be renewed, and ``more``
    (an issue-sign's: whether the signing certificate is to be issued again, and whether its
    password was given or generated); the revocations keep their own ``credential.revoke``
    events."""
    from issuer.db import AuditEvent

    with ctx.sessions.begin() as s:
        s.add(AuditEvent(actor=actor, action="jpki.abandon", subject=result.phone_id, detail={
            "job": result.job_id, "kind": result.kind,
            "se_check": None if result.se_check is None else result.se_check.summary(),
            "revoked": [c for c, _k in result.revoked], "renewal_needed": list(result.renewal_needed), **more}))


def _renewal_left(view: JobView) -> tuple[str, ...]:
    """The slots a stopped ``renew-jpki`` job leaves without a usable certificate: it reached
    the slot's GENERATE KEY (done, or the step it stopped at: the command may have reached
    the SE, its answer lost, and a run that died records none of it) and its write of the new
    certificate is not recorded. Before that step the old key and certificate are as they
    were; after the write the new ones are on the phone."""
    out = []
    for slot in view.input.get("slots", ()):
        generate, write = view.steps.index(f"generate-{slot}-key-anew"), view.steps.index(f"write-{slot}-cert")
        if generate <= view.next_step <= write:
            out.append(slot)
    return tuple(out)


# --- a signing certificate for a holder who has turned 15 ---------------------------------


@dataclass(frozen=True)
class IssueSignResult:
    """What an ``issue-sign`` job put into the phone: the signing certificate, and its
    password (shown once by the CLI when generated; never in ``repr``)."""

    phone_id: str
    holder_id: str
    job_id: str
    certificate: bytes = field(repr=False)
    password: str = field(repr=False)
    #: ("password",) when it was generated here (to be shown once); () when given
    generated: tuple[str, ...] = ()
    #: the job was one that had stopped, finished by this call
    resumed: bool = False
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        from cryptography import x509

        c = x509.load_der_x509_certificate(self.certificate)
        return {"phone": self.phone_id, "holder": self.holder_id, "job": self.job_id, "resumed": self.resumed,
                "sign_certificate": {"serial": format(c.serial_number, "x"), "subject": c.subject.rfc4514_string(),
                                     "not_after": c.not_valid_after_utc.isoformat()},
                "seconds": round(self.seconds, 3)}


class SigningNotYetError(ProvisionError):
    """No signing certificate yet: the holder is under 15; ``eligible_from`` is the first day
    one may be issued (their 15th birthday)."""

    def __init__(self, message: str, eligible_from: dt.date) -> None:
        super().__init__(message)
        self.eligible_from = eligible_from


def check_issue_sign(ctx: Context, phone_id: str) -> tuple[str, str]:
    """Whether :func:`issue_sign` may issue a signing certificate onto ``phone_id`` today
    (nothing opened, nothing written): ``(holder_id, algorithm)``, the algorithm that of the
    phone's user-authentication key. Refused (:class:`ProvisionError`) for a phone not
    registered or not active, a holder whose birth date is not known (erased), a holder under
    15 (:class:`SigningNotYetError`, naming the day from which), a phone that holds a live
    (valid or held) signing certificate, or one without a live user-authentication certificate.
    The command line and the API's door both ask it, so that they refuse alike."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocols.birthdays import today_in_japan
    from protocols.jpki.eligibility import signing_eligible_from, signing_refusal

    with ctx.sessions() as s:
        _check_active(s, phone_id, "provision it first", "no signing certificate is issued to it")
        holder_id = s.scalar(select(Phone.holder_id).where(Phone.id == phone_id))
        live = {kind: body for kind, body in s.execute(
            select(Credential.kind, Credential.body).where(Credential.phone_id == phone_id,
                                                           Credential.kind.in_(("jpki-sign", "jpki-auth")),
                                                           Credential.status.in_(_LIVE)))}
    birth = holder_birth_date(ctx, holder_id)
    if birth is None:
        raise ProvisionError(f"holder {holder_id}'s birth date is not known (erased): no signing certificate")
    why = signing_refusal(birth, today_in_japan(dt.datetime.now(dt.UTC)))
    if why is not None:
        raise SigningNotYetError(f"phone {phone_id!r}: {why}", signing_eligible_from(birth))
    if "jpki-sign" in live:
        raise ProvisionError(f"phone {phone_id!r} holds a live signing certificate already: a new one comes "
                             "with a renewal (`mcred holder renew-card`) or a change of the basic four data")
    if "jpki-auth" not in live:
        raise ProvisionError(f"phone {phone_id!r} holds no live user-authentication certificate: provision it")
    key = x509.load_der_x509_certificate(live["jpki-auth"]).public_key()
    algorithm = "p384" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa2048"
    check_jpki_issuance(ctx, holder_id, ("sign",), algorithm)
    return holder_id, algorithm


def _stopped_jobs(ctx: Context, phone_id: str, kind: str, job_id: str | None) -> list:
    """The phone's unfinished TSM jobs of ``kind``, oldest first; with ``job_id``, that one
    only, and :class:`ProvisionError` when it is not among them."""
    left = list_jobs(ctx.engine, phone_id, kind=kind, unfinished=True)
    if job_id is not None:
        left = [j for j in left if j.id == job_id]
        if not left:
            raise ProvisionError(f"job {job_id} is not a stopped {kind} job of phone {phone_id!r}")
    return left


def issue_sign(ctx: Context, phone_id: str, *, password: str | None = None, actor: str = "mcred",
               transmit: Callable[[bytes], bytes] | None = None, trace: Any = None,
               after_step: StepHook | None = None, job_id: str | None = None) -> IssueSignResult:
    """A signing certificate onto the phone of a holder who has turned 15 since it was
    provisioned (none is issued under 15: ``protocols.jpki.eligibility``): a TSM
    ``issue-sign`` job generates the signing key in the SE (of the type of the phone's
    user-authentication key), the issuer issues its certificate, the TSM writes it and sets
    the password (``password``, else generated, to be shown once). Audited as a provisioning
    is (the TSM's job and steps, the issuer's ``jpki.issue``). Refused before anything runs
    (:class:`ProvisionError`) for a phone not registered or not active, a holder under 15
    (naming the day from which one may be issued), a phone that holds a live (valid or held)
    signing certificate, or one without a live user-authentication certificate (provision it).
    An ``issue-sign`` job of the phone that stopped (a crash, a lost answer) is finished
    instead, with the password it sealed; ``job_id`` names that job (the API's resume), and
    refuses when it is not the phone's stopped ``issue-sign`` job."""
    t0 = time.perf_counter()
    left = _stopped_jobs(ctx, phone_id, "issue-sign", job_id)
    tsm = tsm_for(ctx, issuer_port(ctx), actor)
    if left:  # finished, not started again: its key may be in the SE already
        if password is not None:
            raise ProvisionError(f"phone {phone_id!r} has an issue-sign job {left[-1].id} that stopped: it is "
                                 "finished with the password it sealed (give none)")
        sealed = tsm._unseal(left[-1].id)
        if transmit is None:
            transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit
        view = tsm.run(left[-1].id, transmit, after_step=after_step, trace=trace)
        return _sign_issued(ctx, view, sealed.signing_password if sealed else "", ("password",) if sealed else (),
                            t0, resumed=True)
    try:
        job_secrets = JobSecrets(None, password if password is not None else "".join(
            secrets.choice(_PASSWORD_ALPHABET) for _ in range(8)), None)
    except JobInputError as exc:
        raise ProvisionError(f"password: {exc}") from None
    if transmit is None:
        transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit  # the phone exists, or refuse now
    holder_id, algorithm = check_issue_sign(ctx, phone_id)
    job = tsm.create_job(phone_id, "issue-sign", {"algorithm": algorithm}, job_secrets)
    from issuer.db import AuditEvent

    with ctx.sessions.begin() as s:  # whether the holder knows the password: what an abandon keeps (abandon)
        s.add(AuditEvent(actor=actor, action="jpki.issue-sign", subject=phone_id, detail={
            "job": job, "holder": holder_id, "algorithm": algorithm,
            "password": "given" if password is not None else "generated"}))
    view = tsm.run(job, transmit, secrets=job_secrets, after_step=after_step, trace=trace)
    return _sign_issued(ctx, view, job_secrets.signing_password or "", () if password is not None else ("password",),
                        t0)


def _sign_issued(ctx: Context, view: JobView, password: str, generated: tuple[str, ...], t0: float,
                 *, resumed: bool = False) -> IssueSignResult:
    with ctx.sessions() as s:
        holder_id = s.scalar(select(Phone.holder_id).where(Phone.id == view.se_id)) or ""
    cert = bytes.fromhex(view.results["issue-sign-cert"]["certificate"])
    return IssueSignResult(view.se_id, holder_id, view.id, cert, password, generated, resumed,
                           time.perf_counter() - t0)


# --- certificate-only renewal (電子証明書の更新) -------------------------------------------


#: The JPKI slots and their registry kinds, in the order a renewal writes them
_SLOT_KINDS = {"sign": "jpki-sign", "auth": "jpki-auth"}


class RenewalTooEarlyError(ProvisionError):
    """The certificate has more than 3 months left (the expiry notice's window,
    ``protocols.jpki.renewal``): ``not_after`` its expiry, ``renewable_from`` the first day
    it may be renewed; ``--early`` with a reason drills it anyway."""

    def __init__(self, message: str, slot: str, not_after: dt.datetime, renewable_from: dt.date) -> None:
        super().__init__(message)
        self.slot, self.not_after, self.renewable_from = slot, not_after, renewable_from


@dataclass(frozen=True)
class RenewalPlan:
    """What :func:`renew_jpki` will renew on a phone, as :func:`check_renew_jpki` found it."""

    phone_id: str
    holder_id: str
    #: the slots renewed, in the order the job writes them
    slots: tuple[str, ...]
    algorithm: str
    #: per slot renewed: (credential id, serial, notAfter) of the certificate it replaces
    old: dict[str, tuple[str, str, dt.datetime]]
    #: the earliest notAfter among them, and the first day it may be renewed
    not_after: dt.datetime
    renewable_from: dt.date
    #: before the window: an operator's drill (``early``)
    early: bool
    #: why the signing certificate is not renewed (a holder under 15, none on the phone), or None
    sign_withheld: str | None = None
    #: the slots renewed because an abandoned renewal (the job named) left them without a
    #: usable certificate (:func:`abandon`): whatever the old expiry, no ``early`` needed
    after_abandoned: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RenewResult:
    """What a ``renew-jpki`` job put into the phone: per slot, the serial it replaced and the
    new certificate. No secret: the holder's PIN and password stay as they were."""

    phone_id: str
    holder_id: str
    job_id: str
    #: (slot, serial of the certificate replaced or None, new certificate DER)
    renewed: tuple[tuple[str, str | None, bytes], ...] = field(repr=False)
    sign_withheld: str | None = None
    resumed: bool = False
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        from cryptography import x509

        out = []
        for slot, old, der in self.renewed:
            c = x509.load_der_x509_certificate(der)
            out.append({"slot": slot, "old_serial": old, "serial": format(c.serial_number, "x"),
                        "subject": c.subject.rfc4514_string(), "not_before": c.not_valid_before_utc.isoformat(),
                        "not_after": c.not_valid_after_utc.isoformat()})
        return {"phone": self.phone_id, "holder": self.holder_id, "job": self.job_id, "resumed": self.resumed,
                "renewed": out, "sign_withheld": self.sign_withheld, "seconds": round(self.seconds, 3)}


def check_renew_jpki(ctx: Context, phone_id: str, slot: str = "both", *, early: bool = False,
                     now: dt.datetime | None = None) -> RenewalPlan:
    """Whether :func:`renew_jpki` may renew ``slot`` (``auth``, ``sign`` or ``both``) of the
    phone's JPKI certificates now (nothing opened, nothing written). ``both`` renews what
    the phone holds: a holder under 15's phone its user-authentication certificate alone.

    Refused (:class:`ProvisionError`) for a phone not registered or not active; a slot asked
    for by name whose certificate is not there to renew (none issued, revoked: a new one
    comes another way) or is on hold; a signing certificate for a holder under 15
    (:class:`SigningNotYetError`); a card that has expired, or that expires with the
    certificate (a renewal would end the same day: the card is renewed instead, `mcred
    holder renew-card`); and, unless ``early``, a certificate with more than 3 months left
    (:class:`RenewalTooEarlyError`, naming its expiry and the day from which). An expired
    certificate is renewed. A slot an abandoned renewal left without a usable certificate (its
    newest certificate revoked and marked by :func:`abandon`) is renewed whatever the old
    expiry, and ``both`` then leaves out a slot that is not due (the renewal's job wrote its
    new certificate before it was given up, say). The command line and the API's door both
    ask it."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from issuer.db import Holder
    from protocols.birthdays import today_in_japan
    from protocols.jpki.eligibility import signing_eligible_from, signing_refusal
    from protocols.jpki.renewal import expiry_date, renewable_from, renewal_refusal

    if slot not in ("auth", "sign", "both"):
        raise ProvisionError(f"slot {slot!r}: auth, sign or both")
    now = now or dt.datetime.now(dt.UTC)
    today = today_in_japan(now)
    asked = ("sign", "auth") if slot == "both" else (slot,)
    with ctx.sessions() as s:
        _check_active(s, phone_id, "provision it first", "its certificates are not renewed")
        holder_id = s.scalar(select(Phone.holder_id).where(Phone.id == phone_id))
        holder = s.get(Holder, holder_id)
        latest = {}
        for row in s.scalars(select(Credential).where(Credential.phone_id == phone_id,
                                                      Credential.kind.in_(_SLOT_KINDS.values()))
                             .order_by(Credential.issued_at, Credential.id)):
            latest[row.kind] = row  # the newest of each kind
    birth = holder_birth_date(ctx, holder_id)
    if birth is None:
        raise ProvisionError(f"holder {holder_id}'s birth date is not known (erased): nothing is issued from the "
                             "holder's data")
    slots: list[str] = []
    #: the slots an abandoned renewal left without a usable certificate, and its job
    repairs: dict[str, str] = {}
    withheld = None
    for name in asked:
        row = latest.get(_SLOT_KINDS[name])
        what = "signing certificate" if name == "sign" else "user-authentication certificate"
        if name == "sign":
            why = signing_refusal(birth, today)
            if why is not None:
                if slot == "sign":
                    raise SigningNotYetError(f"phone {phone_id!r}: {why}", signing_eligible_from(birth))
                withheld = SIGN_WITHHELD
                continue
        abandoned = (row.meta or {}).get(RENEWAL_ABANDONED) if row is not None and row.status == "revoked" else None
        if isinstance(abandoned, str):  # revoked with an abandoned renewal: the slot is renewed now
            repairs[name] = abandoned
            slots.append(name)
            continue
        if row is None or row.status == "revoked":
            if slot == "both" and name == "sign":
                withheld = "no signing certificate on the phone"
                continue
            how = ("`mcred jpki issue-sign` issues one" if name == "sign" else "provision the phone")
            gone = f"its last one was revoked ({row.reason})" if row is not None else "none was issued to it"
            raise ProvisionError(f"phone {phone_id!r} holds no {what} to renew ({gone}): {how}")
        if row.status == "hold":
            raise ProvisionError(f"phone {phone_id!r}'s {what} is on hold (reported lost): release it first "
                                 f"(`mcred release --phone {phone_id}`)")
        slots.append(name)
    if not slots:
        raise ProvisionError(f"phone {phone_id!r} holds no certificate to renew")
    if holder.card_expiry < today:
        raise ProvisionError(f"holder {holder_id}'s card expired on {holder.card_expiry.isoformat()}: its "
                             f"certificates are not renewed; the card is (`mcred holder renew-card {holder_id}`)")
    old = {name: (latest[_SLOT_KINDS[name]].id, latest[_SLOT_KINDS[name]].serial,
                  latest[_SLOT_KINDS[name]].not_after) for name in slots}
    # a slot an abandoned renewal left holds no usable certificate: neither its window nor the
    # card's expiry holds it back; beside one, ``both`` leaves out a slot not due
    due = []
    for name in (x for x in slots if x not in repairs):
        until = old[name][2]
        if holder.card_expiry <= expiry_date(until):
            if repairs and slot == "both":
                continue
            raise ProvisionError(f"phone {phone_id!r}: the {name} certificate runs to the card's expiry "
                                 f"({holder.card_expiry.isoformat()}), and a renewed one could run no longer: "
                                 f"the card is renewed (`mcred holder renew-card {holder_id}`)")
        if repairs and slot == "both" and not early and renewal_refusal(until, now) is not None:
            continue
        due.append(name)
    slots = [x for x in slots if x in repairs or x in due]
    first = min(due or slots, key=lambda name: old[name][2])
    not_after = old[first][2]
    why = renewal_refusal(not_after, now) if due else None
    if why is not None and not early:
        raise RenewalTooEarlyError(f"phone {phone_id!r}, {first} certificate: {why}; an operator drills it "
                                   "earlier with --early and a reason", first, not_after, renewable_from(not_after))
    types = {("p384" if isinstance(x509.load_der_x509_certificate(latest[_SLOT_KINDS[name]].body).public_key(),
                                   ec.EllipticCurvePublicKey) else "rsa2048") for name in slots}
    if len(types) != 1:
        raise ProvisionError(f"phone {phone_id!r}'s certificates have keys of two types ({', '.join(sorted(types))}): "
                             "renew them one at a time (--slot)")
    algorithm = types.pop()
    check_jpki_issuance(ctx, holder_id, slots, algorithm)  # before GENERATE KEY replaces a slot's key
    return RenewalPlan(phone_id, holder_id, tuple(x for x in ("sign", "auth") if x in slots), algorithm,
                       {x: old[x] for x in slots}, not_after, renewable_from(not_after), early and why is not None,
                       withheld, repairs)


def renew_jpki(ctx: Context, phone_id: str, *, slot: str = "both", early: bool = False, reason: str | None = None,
               actor: str = "mcred", transmit: Callable[[bytes], bytes] | None = None, trace: Any = None,
               after_step: StepHook | None = None, job_id: str | None = None) -> RenewResult:
    """Certificate-only renewal (電子証明書の更新): the phone's JPKI certificates of ``slot``
    renewed through a TSM ``renew-jpki`` job: a new key generated in the SE per slot (of the
    old one's type), a new certificate issued (valid from now to the 5th birthday after,
    capped by the card's expiry) and written. The issuer revokes the slot's previous
    certificate as ``superseded`` in the transaction that records the new one, so CRLs, OCSP,
    relying parties' watch lists and the user-authentication linkage see it. The holder's
    PIN and password stay as they were (GENERATE KEY leaves the secrets); the mdocs are not
    touched. Refused before anything runs as :func:`check_renew_jpki` says; ``early`` (with
    a ``reason``) renews before the window, an operator's drill. Audited ``jpki.renew`` (the
    job, the slots, the certificates' expiry, ``early`` and its reason) when the job is made,
    then as any issuance. A ``renew-jpki`` job of the phone that stopped (a crash, a lost
    answer) is finished instead; ``job_id`` names that job (the API's resume)."""
    from issuer.db import AuditEvent

    t0 = time.perf_counter()
    left = _stopped_jobs(ctx, phone_id, "renew-jpki", job_id)
    tsm = tsm_for(ctx, issuer_port(ctx), actor)
    if left:  # finished, not started again: its keys may be in the SE already
        if transmit is None:
            transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit
        view = tsm.run(left[-1].id, transmit, after_step=after_step, trace=trace)
        return _renewed(ctx, view, t0, resumed=True)
    if early and not (reason and reason.strip()):
        raise ProvisionError("an early renewal needs a reason (it is audited)")
    if reason is not None and not early:
        raise ProvisionError("a reason goes with an early renewal only")
    if transmit is None:
        transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit  # the phone exists, or refuse now
    plan = check_renew_jpki(ctx, phone_id, slot, early=early)
    job = tsm.create_job(phone_id, "renew-jpki", {"algorithm": plan.algorithm, "slots": list(plan.slots)})
    with ctx.sessions.begin() as s:
        s.add(AuditEvent(actor=actor, action="jpki.renew", subject=phone_id, detail={
            "job": job, "holder": plan.holder_id, "slots": list(plan.slots),
            "serials": {name: plan.old[name][1] for name in plan.slots},
            "not_after": plan.not_after.isoformat(), "renewable_from": plan.renewable_from.isoformat(),
            "early": plan.early, **({"reason": reason.replace("\x00", "")[:500]} if reason else {}),
            **({"after_abandoned": plan.after_abandoned} if plan.after_abandoned else {})}))
    view = tsm.run(job, transmit, after_step=after_step, trace=trace)
    return _renewed(ctx, view, t0, withheld=plan.sign_withheld)


def _renewed(ctx: Context, view: JobView, t0: float, *, resumed: bool = False,
             withheld: str | None = None) -> RenewResult:
    """The finished renewal: each slot's new certificate and the serial it replaced (read off
    the issuer's ``jpki.supersede`` records of the job)."""
    from issuer.db import AuditEvent, unindexed

    if view.state != "done":  # pragma: no cover - Tsm.run raises instead
        raise ProvisionError(f"job {view.id} ended in state {view.state}: {view.error}")
    slots = tuple(view.input["slots"])
    with ctx.sessions() as s:
        holder_id = s.scalar(select(Phone.holder_id).where(Phone.id == view.se_id)) or ""
        replaced = {kind: serial for kind, serial, detail in s.execute(
            select(Credential.kind, Credential.serial, AuditEvent.detail)
            .join(AuditEvent, AuditEvent.subject == Credential.id)
            .where(unindexed(AuditEvent.action) == "jpki.supersede", Credential.phone_id == view.se_id,
                   Credential.kind.in_([_SLOT_KINDS[x] for x in slots])))
            if isinstance(detail, dict) and detail.get("by_job") == view.id}
    renewed = tuple((x, replaced.get(_SLOT_KINDS[x]), bytes.fromhex(view.results[f"issue-{x}-cert"]["certificate"]))
                    for x in slots)
    if "sign" not in slots and withheld is None:  # resumed: as the phone is now (None: it holds one)
        withheld = sign_withheld(ctx, view.se_id)
    return RenewResult(view.se_id, holder_id, view.id, renewed, withheld, resumed, time.perf_counter() - t0)


# --- resetting the holder's secrets --------------------------------------------------------


@dataclass(frozen=True)
class ResetResult:
    """What a reset of the holder's secrets set: the new values of those reset (shown once
    by the CLI when they were generated; never in ``repr``)."""

    phone_id: str
    job_id: str
    #: what was reset: "auth" (the user-authentication PIN), "sign" (the signing
    #: password), "puk"
    reset: tuple[str, ...]
    values: dict[str, str] = field(repr=False)
    #: which of ``values`` were generated here (to be shown once)
    generated: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {"phone": self.phone_id, "job": self.job_id, "reset": list(self.reset)}


_SLOT_SECRET = {"auth": "pin", "sign": "password"}


def reset_secrets(ctx: Context, phone_id: str, *, slots: tuple[str, ...] = ("auth", "sign"),
                  puk: bool = False, pin: str | None = None, password: str | None = None,
                  new_puk: str | None = None, actor: str = "mcred",
                  transmit: Callable[[bytes], bytes] | None = None, trace: Any = None) -> ResetResult:
    """The issuer resets a holder's forgotten or locked secrets on the phone (at the
    municipal counter, or in an app after the holder proved who they are with the card):
    a TSM ``reset-secrets`` job sets the user-authentication PIN (``auth``), the signing
    password (``sign``) and, with ``puk``, the PUK anew, with fresh retry counters. The keys
    and certificates stay: nothing is revoked. Values not given are generated. Refused
    before anything runs for a phone that is not registered, not active, or holds no live
    JPKI certificate. Audited in the issuer's trail (``jpki.secrets-reset``: what, not the
    values). ``transmit`` as for :func:`provision` (over the air)."""

    if not slots or len(set(slots)) != len(slots) or not set(slots) <= set(_SLOT_SECRET):
        raise ProvisionError(f"slots {slots!r}: one or both of auth and sign")
    for name, value, slot in (("pin", pin, "auth"), ("password", password, "sign")):
        if value is not None and slot not in slots:
            raise ProvisionError(f"a new {name} was given but {slot} is not reset")
    if new_puk is not None and not puk:
        raise ProvisionError("a new PUK was given but the PUK is not reset")
    job_secrets, generated = generate_secrets(pin, password, new_puk, sign="sign" in slots)
    if transmit is None:
        transmit = wallet_sim.open_secure_element(phone_id, ctx.home).transmit  # the phone exists, or refuse now
    with ctx.sessions() as s:
        _check_active(s, phone_id, "nothing to reset", "its secrets are not reset")
        live = s.scalar(select(Credential.id).where(Credential.phone_id == phone_id,
                                                    Credential.kind.in_(("jpki-sign", "jpki-auth")),
                                                    Credential.status.in_(_LIVE)).limit(1))
        if live is None:
            raise ProvisionError(f"phone {phone_id!r} holds no live JPKI certificate: nothing to protect")
    if "sign" in slots and "sign" not in secret_slots(ctx, phone_id):
        minor = "sign" not in jpki_slots_for(ctx, _holder_of(ctx, phone_id) or "")
        raise ProvisionError(f"phone {phone_id!r} holds no signing certificate"
                             + (" (holder under 15: none is issued)" if minor else "")
                             + ": there is no signing password to reset; reset the PIN alone (--slot auth)")
    tsm = Tsm(ctx.engine, ctx.master_key, actor=actor, **ctx.tsm_trust())
    job = tsm.create_job(phone_id, "reset-secrets", {"slots": list(slots), "puk": puk}, job_secrets)
    view = tsm.run(job, transmit, secrets=job_secrets, trace=trace)
    return _reset_done(ctx, view, job_secrets, generated, actor)


def _holder_of(ctx: Context, phone_id: str) -> str | None:
    with ctx.sessions() as s:
        return s.scalar(select(Phone.holder_id).where(Phone.id == phone_id))


def secret_slots(ctx: Context, phone_id: str) -> tuple[str, ...]:
    """The secrets a reset of the phone may set: ``auth``, and ``sign`` when a signing
    certificate was ever issued to the phone (a holder under 15's phone has no signing key,
    and its password was never set)."""
    with ctx.sessions() as s:
        signed = s.scalar(select(Credential.id).where(Credential.phone_id == phone_id,
                                                      Credential.kind == "jpki-sign").limit(1))
    return ("auth", "sign") if signed is not None else ("auth",)


def resume_reset(ctx: Context, job_id: str, *, actor: str = "mcred",
                 after_step: StepHook | None = None,
                 transmit: Callable[[bytes], bytes] | None = None, trace: Any = None) -> ResetResult:
    """Finish a reset of the holder's secrets that stopped (a crash, a lost answer: the SE
    may already hold the new values). Its values are unsealed from the job and all shown:
    the stopped run never showed them, and the job erases them as it ends."""
    tsm = Tsm(ctx.engine, ctx.master_key, actor=actor, **ctx.tsm_trust())
    job = tsm.job(job_id)
    if job.kind != "reset-secrets":
        raise ProvisionError(f"job {job_id} is a {job.kind} job, not a reset of the holder's secrets")
    sealed = tsm._unseal(job_id) if job.state not in ENDED else None
    if transmit is None:
        transmit = wallet_sim.open_secure_element(job.se_id, ctx.home).transmit
    view = tsm.run(job_id, transmit, after_step=after_step, trace=trace)
    if sealed is None:  # it had ended before: nothing left to show
        return ResetResult(view.se_id, view.id, _reset_of(view), {})
    return _reset_done(ctx, view, sealed, None, actor)


def _reset_of(view: JobView) -> tuple[str, ...]:
    """What a finished reset job set: "auth", "sign", "puk"."""
    return tuple(view.results.get("reset-secrets", {}).get("reset", ()))


def _reset_done(ctx: Context, view: JobView, sec: JobSecrets, shown: tuple[str, ...] | None,
                actor: str) -> ResetResult:
    """The finished reset job's result, audited: the values of what it reset, of which
    ``shown`` (all when None) are to be shown once."""
    from issuer.db import AuditEvent

    reset = _reset_of(view)
    with ctx.sessions.begin() as s:
        s.add(AuditEvent(actor=actor, action="jpki.secrets-reset", subject=view.se_id,
                         detail={"job": view.id, "reset": list(reset)}))
    values = {"pin": sec.user_auth_pin, "password": sec.signing_password or "", "puk": sec.puk or ""}
    wanted = [_SLOT_SECRET.get(x, x) for x in reset]  # auth -> pin, sign -> password, puk
    return ResetResult(view.se_id, view.id, reset, {k: values[k] for k in wanted},
                       tuple(k for k in wanted if shown is None or k in shown))
