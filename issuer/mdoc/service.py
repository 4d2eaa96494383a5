"""The issuer's mdoc side assembled over one database and key store.

The composition root (``mcred/``) builds one :class:`MdocService` per installation and
hands it to the HTTP routers (:mod:`issuer.api.mdoc`), the CLI and the TSM's
``IssuerPort`` (whose ``mdoc_challenge`` / ``issue_mdoc`` are this object's).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, Holder, IssuerKey, utcnow
from issuer.key_destruction import KeyDestructionResult, audit_destruction
from issuer.mdoc import models as _models  # noqa: F401 - registers the mdoc tables
from issuer.mdoc.issuance import IssuancePolicy, MdocIssuer
from issuer.mdoc.models import PublishedVical
from issuer.mdoc.pki import (
    PURPOSE_DS,
    PURPOSE_IACA,
    PURPOSE_VICAL,
    PURPOSE_VICAL_CA,
    ActiveKey,
    MdocPki,
    MdocPkiConfig,
)
from issuer.mdoc.publication import IdentifierPublisher, PublishedToken, StatusPublisher
from issuer.mdoc.status_lists import StatusListPolicy, StatusRegistry
from issuer.mdoc.txn import run_transaction


@dataclass(frozen=True)
class SignerInfo:
    """A signer generation as operators see it (never the key)."""

    label: str
    purpose: str
    serial: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    active: bool
    revoked_at: dt.datetime | None
    reason: str | None
    affected_mdocs: int
    #: the label of the IACA generation that issued it (None for an IACA)
    iaca: str | None = None
    #: when its private key was destroyed (:meth:`MdocService.destroy_key`; None: it is kept)
    key_destroyed_at: dt.datetime | None = None

    def to_json(self) -> dict:
        return {"label": self.label, "purpose": self.purpose, "serial": self.serial,
                "subject": self.subject, "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "active": self.active,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "reason": self.reason, "affected_mdocs": self.affected_mdocs, "iaca": self.iaca,
                "key_destroyed_at": self.key_destroyed_at.isoformat() if self.key_destroyed_at else None}


@dataclass(frozen=True)
class IacaRolloverResult:
    """An IACA rollover: the IACA now current, the signers it issued at once, and when it was
    staged (None: made by the rollover itself)."""

    iaca: ActiveKey
    ds: ActiveKey
    status_signer: ActiveKey
    staged_since: dt.datetime | None = None

    def to_json(self) -> dict:
        """The answer of ``mcred mdoc iaca rollover --json`` and POST /trust/iaca-rollover."""
        return {"label": self.iaca.label, "serial": format(self.iaca.certificate.serial_number, "x"),
                "not_after": self.iaca.not_valid_after.isoformat(), "ds": self.ds.label,
                "status_signer": self.status_signer.label,
                "staged_since": self.staged_since.isoformat() if self.staged_since else None}


@dataclass(frozen=True)
class IacaStageResult:
    """An IACA staging: the staged IACA and the label of the IACA still current."""

    iaca: ActiveKey
    current: str

    def to_json(self) -> dict:
        """The answer of ``mcred mdoc iaca stage --json`` and POST /trust/iaca-stage."""
        return {"label": self.iaca.label, "serial": format(self.iaca.certificate.serial_number, "x"),
                "not_after": self.iaca.not_valid_after.isoformat(), "current": self.current}


@dataclass(frozen=True)
class SignerRevocationResult:
    """What :meth:`MdocService.revoke_signer_detail` did: the signer as it is now, whether
    the call changed it, and the reason it had when the call amended its revocation."""

    info: SignerInfo
    changed: bool
    amended_from: str | None = None
    #: the destruction of its key that followed (``destroy_key``), or None: not asked
    key_destruction: KeyDestructionResult | None = None


@dataclass(frozen=True)
class IacaRevocationResult:
    """What :meth:`MdocService.revoke_iaca` did: the IACA as it is now, whether the call
    changed it (and the reason it had when it amended the revocation), the generation started
    in its place when it was the current one, and the phones holding valid mdocs under it."""

    info: SignerInfo
    changed: bool
    amended_from: str | None
    successor: IacaRolloverResult | None
    retired_signers: tuple[str, ...]
    #: the phones that hold a valid mdoc under the revoked IACA (they need new MSOs)
    affected_phones: tuple[str, ...]
    #: the destruction of its key that followed (``destroy_key``), or None: not asked
    key_destruction: KeyDestructionResult | None = None

    def to_json(self) -> dict:
        """The answer of ``mcred mdoc iaca revoke --json`` and POST /trust/iaca-revoke."""
        return {**self.info.to_json(), "changed": self.changed, "amended_from": self.amended_from,
                "successor": self.successor.to_json() if self.successor is not None else None,
                "retired_signers": list(self.retired_signers),
                "affected_phones": list(self.affected_phones)}


@dataclass(frozen=True)
class VicalSignerInfo:
    """A VICAL signer generation as operators see it (never the key): its VICAL CA and the
    CRL distribution point its certificate names (None: one made before signers carried it)."""

    label: str
    serial: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    #: the signer of the VICALs signed from now on
    active: bool
    revoked_at: dt.datetime | None
    reason: str | None
    ca: str | None
    crl: str | None
    #: when its private key was destroyed (None: it is kept)
    key_destroyed_at: dt.datetime | None = None

    def to_json(self) -> dict:
        return {"label": self.label, "purpose": "vical-signer", "serial": self.serial, "subject": self.subject,
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "active": self.active, "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "reason": self.reason, "ca": self.ca, "crl": self.crl,
                "key_destroyed_at": self.key_destroyed_at.isoformat() if self.key_destroyed_at else None}


@dataclass(frozen=True)
class VicalSignerRevocationResult:
    """What :meth:`MdocService.revoke_vical_signer` did: the signer as it is now, whether the
    call changed it (and the reason it had when it amended the revocation), the signer of the
    VICAL published now and that VICAL's issue ID."""

    info: VicalSignerInfo
    changed: bool
    amended_from: str | None
    signing: VicalSignerInfo
    vical_issue_id: int
    #: the destruction of its key that followed (``destroy_key``), or None: not asked
    key_destruction: KeyDestructionResult | None = None

    def to_json(self) -> dict:
        """The answer of ``mcred mdoc vical-signer revoke --json`` and POST /trust/vical-signer-revocations."""
        return {**self.info.to_json(), "changed": self.changed, "amended_from": self.amended_from,
                "signing": {"label": self.signing.label, "serial": self.signing.serial},
                "vical_issue_id": self.vical_issue_id}


@dataclass(frozen=True)
class VicalCaInfo:
    """A VICAL CA generation as operators see it (never the key): whether it is the current
    one, staged (``mcred mdoc vical-ca stage``: published, certifying nothing until the
    rollover), retired or withdrawn (``mcred mdoc vical-ca rollover --compromised``), whether
    readers trust it now (``/trust/vical-ca.pem``), the CRL its signers name and the signers it
    certified."""

    label: str
    serial: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    #: current, staged, retired or withdrawn
    state: str
    #: in /trust/vical-ca.pem (the anchors readers of the VICAL trust)
    trusted: bool
    revoked_at: dt.datetime | None
    reason: str | None
    crl: str
    signers: tuple[str, ...]
    key_destroyed_at: dt.datetime | None = None

    def to_json(self) -> dict:
        return {"label": self.label, "purpose": "vical-ca", "serial": self.serial, "subject": self.subject,
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "state": self.state, "trusted": self.trusted,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "reason": self.reason,
                "crl": self.crl, "signers": list(self.signers),
                "key_destroyed_at": self.key_destroyed_at.isoformat() if self.key_destroyed_at else None}


@dataclass(frozen=True)
class VicalCaRolloverResult:
    """What :meth:`MdocService.rollover_vical_ca` did: the VICAL CA before (retired, or
    withdrawn), the one now current and when it was staged (None: made by the rollover, readers
    had no warning), the VICAL signer under it that signs the VICAL published now, that VICAL's
    issue ID, the signers of the CA before revoked with it or retired, and the staged CA
    withdrawn with it (``fresh``)."""

    previous: VicalCaInfo
    current: VicalCaInfo
    signing: VicalSignerInfo
    vical_issue_id: int
    withdrawn: bool
    revoked_signers: tuple[str, ...]
    retired_signers: tuple[str, ...]
    staged_since: dt.datetime | None = None
    withdrawn_staged: str | None = None

    def to_json(self) -> dict:
        """The answer of ``mcred mdoc vical-ca rollover --json`` and POST /trust/vical-ca-rollover."""
        return {"previous": self.previous.to_json(), "current": self.current.to_json(),
                "signing": {"label": self.signing.label, "serial": self.signing.serial},
                "vical_issue_id": self.vical_issue_id, "withdrawn": self.withdrawn,
                "revoked_signers": list(self.revoked_signers), "retired_signers": list(self.retired_signers),
                "staged_since": self.staged_since.isoformat() if self.staged_since else None,
                "withdrawn_staged": self.withdrawn_staged}


@dataclass(frozen=True)
class VicalCaStageResult:
    """A VICAL CA staging: the staged CA (as ``mcred mdoc vical-ca list`` shows it) and the
    label of the VICAL CA still current."""

    staged: VicalCaInfo
    current: str

    def to_json(self) -> dict:
        """The answer of ``mcred mdoc vical-ca stage --json`` and POST /trust/vical-ca-stage."""
        return {**self.staged.to_json(), "current": self.current}


class MdocService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        keystore,
        public_url: str,
        *,
        pki_config: MdocPkiConfig | None = None,
        status_policy: StatusListPolicy | None = None,
        issuance_policy: IssuancePolicy | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        portrait_for: Callable[[Holder], bytes | None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.pki = MdocPki(keystore, public_url, pki_config)
        self.registry = StatusRegistry(public_url, status_policy)
        self.issuer = MdocIssuer(sessions, self.pki, self.registry, issuance_policy,
                                 clock=clock, portrait_for=portrait_for)
        self.publisher = StatusPublisher(self.pki, self.registry)
        self.identifier_publisher = IdentifierPublisher(self.pki, self.registry)

    # -- keys ---------------------------------------------------------------------------

    def setup(self) -> tuple[ActiveKey, ActiveKey | None, ActiveKey | None]:
        """IACA, DS and status-list signer, created when missing (idempotent), as far as the
        current IACA can still make them (:meth:`MdocPki.setup`: no DS in its last months)."""
        return run_transaction(self.sessions, lambda s: self.pki.setup(s, self.clock()))

    def iaca_certificate(self, generation: int | str | None = None) -> x509.Certificate:
        """The current IACA (made when there is none), or IACA generation ``generation`` (its
        number or label), whatever became of its key."""
        if generation is None:
            return run_transaction(self.sessions,
                                   lambda s: self.pki.ensure_iaca_certificate(s, self.clock()).certificate)

        def work(s: Session) -> x509.Certificate:
            self.pki.ensure_iaca_certificate(s, self.clock())  # the first generation is made on first use
            return self.pki.iaca_certificate_of(s, generation)  # whatever became of its key

        return run_transaction(self.sessions, work)

    def trusted_iacas(self) -> list[x509.Certificate]:
        """Every IACA a reader needs now, the current one first (:meth:`MdocPki.trusted_iacas`)."""
        return run_transaction(self.sessions, lambda s: self.pki.trusted_iacas(s, self.clock()))

    #: how long a published VICAL says it stands (its nextUpdate), and how long one signed is
    #: served again while the IACAs in it stay the same
    VICAL_NEXT_UPDATE = dt.timedelta(hours=24)
    VICAL_REUSE = dt.timedelta(hours=1)

    def vical(self, now: dt.datetime | None = None) -> bytes:
        """The trust bundle as a signed VICAL (ISO/IEC 18013-5 Annex C.1.7, :mod:`protocols.mdoc.vical`):
        every IACA of :meth:`trusted_iacas` (current, staged, older still vouching), each a
        trust point for this issuer's docType, signed by the VICAL signer under the VICAL CA
        (:meth:`vical_cas`); ``nextUpdate`` a day later.

        The VICAL signed is kept in the database (``mdoc_vicals``, one row per provider) and
        served again for :attr:`VICAL_REUSE` while its IACAs, docType and signer stay the
        same, by every process on the database: so ``vicalIssueID`` (the signing time in
        seconds since the epoch, and always more than the last one signed) only grows,
        whichever worker a reader asks and across restarts, and a reader that refuses a VICAL
        going back from the one it holds (:func:`reader.trust.check_vical_succession`) never
        sees two workers' VICALs alternate. The row is taken before a new one is signed (a
        write that changes nothing: PostgreSQL's row lock, SQLite's write lock), so two
        processes that find it out of date sign one after the other, the second serving the
        first's; the first VICAL of all, raced, is signed by both and kept by the first."""
        at = (now or self.clock()).replace(microsecond=0)
        return run_transaction(self.sessions, lambda s: self._vical(s, at))

    def _vical(self, s: Session, at: dt.datetime) -> bytes:
        """:meth:`vical` in the caller's transaction (a VICAL signer revocation re-signs it there)."""
        from protocols.mdoc.vical import VicalEntry, sign_vical, vical_payload

        provider = self.pki.config.organization
        doc_type = self.issuer.policy.names.doctype

        def current(row: PublishedVical | None, content: str) -> bool:
            return row is not None and row.content == content and row.signed_at <= at < row.signed_at + self.VICAL_REUSE

        def read() -> tuple[list[x509.Certificate], ActiveKey, str]:
            iacas = self.pki.trusted_iacas(s, at)
            signer, _ca = self.pki.vical_signer(s, at)
            return iacas, signer, hashlib.sha256("\n".join([doc_type, signer.label, *(
                c.fingerprint(hashes.SHA256()).hex() for c in iacas)]).encode()).hexdigest()

        iacas, signer, content = read()
        row = s.get(PublishedVical, provider)
        if current(row, content):
            return row.body
        if row is not None:  # out of date: taken, and read again after whoever held it
            s.execute(update(PublishedVical).where(PublishedVical.provider == provider)
                      .values(issue_id=PublishedVical.issue_id).execution_options(synchronize_session=False))
            # the keys too: a VICAL signer (or an IACA) revoked by a transaction that committed
            # while this one waited would otherwise be signed with (or listed) as read before
            s.expire_all()
            iacas, signer, content = read()
            if current(row, content):
                return row.body
        issue_id = max(row.issue_id + 1 if row is not None else 0, int(at.timestamp()))
        entries = [VicalEntry(c, (doc_type,), self.pki.config.organization) for c in iacas]
        payload = vical_payload(provider, at, entries, issue_id=issue_id, next_update=at + self.VICAL_NEXT_UPDATE)
        signed = sign_vical(payload, signer.signer, [signer.der])
        if row is None:
            try:
                with s.begin_nested():
                    s.add(PublishedVical(provider=provider, issue_id=issue_id, content=content, body=signed,
                                         signed_at=at))
            except IntegrityError:  # another process signed the first one meanwhile: it stands
                return s.get(PublishedVical, provider, populate_existing=True).body
        else:
            row.issue_id, row.content, row.body, row.signed_at = issue_id, content, signed, at
        return signed

    def vical_cas(self) -> list[x509.Certificate]:
        """The VICAL CAs readers trust for this issuer's VICALs, the current one first."""
        return run_transaction(self.sessions, lambda s: self.pki.vical_cas(s, self.clock()))

    def vical_ca_crl(self, generation: int = 1) -> x509.CertificateRevocationList:
        """The CRL of VICAL CA generation ``generation`` (:meth:`MdocPki.vical_ca_crl`): the
        distribution point its VICAL signers carry. The VICAL keys are made at first use."""

        def work(s: Session) -> x509.CertificateRevocationList:
            now = self.clock()
            self.pki.vical_signer(s, now)
            return self.pki.vical_ca_crl(s, now, generation)

        return run_transaction(self.sessions, work)

    def vical_signers(self) -> list[VicalSignerInfo]:
        """Every VICAL signer generation, oldest first (none before the first VICAL is signed)."""
        return run_transaction(self.sessions, lambda s: [self._vical_info(s, r) for r in self.pki._rows(s, PURPOSE_VICAL)])

    def revoke_vical_signer(self, ref: str, reason: str, *, actor: str = "issuer",
                            destroy_key: bool = False) -> VicalSignerRevocationResult:
        """Revoke the VICAL signer ``ref`` names (label or serial; :meth:`MdocPki.revoke_vical_signer`:
        the reasons a document signer takes, keyCompromise amending another) and, in the same
        transaction, re-sign the published VICAL (``mdoc_vicals``): when the signer revoked was
        the one signing, the VICAL served from now on is signed by a new signer generation under
        the VICAL CA, with a higher issue ID. Its VICAL CA's CRL lists it from its next build
        (``/trust/vical-ca.crl``), so a reader that checks it refuses any VICAL the revoked key
        signs. Audited ``mdoc.vical-signer.revoke`` (``.amend`` when keyCompromise amends an
        earlier reason). ``destroy_key``: its key destroyed once the revocation is committed
        (:meth:`destroy_key`)."""

        def work(s: Session) -> VicalSignerRevocationResult:
            now = self.clock()
            at = now.replace(microsecond=0)
            row, changed, previous = self.pki.revoke_vical_signer(s, ref, reason, now)
            self._vical(s, at)  # signed by the next generation when the revoked one was signing
            signing = next(r for r in reversed(self.pki._rows(s, PURPOSE_VICAL)) if r.active and r.revoked_at is None)
            issue_id = s.get(PublishedVical, self.pki.config.organization).issue_id
            info = self._vical_info(s, row)
            if changed:
                detail = {"serial": info.serial, "reason": row.revocation_reason, "ca": info.ca,
                          "signing": signing.label, "vical_issue_id": issue_id}
                if previous is not None:
                    detail["previous_reason"] = previous
                s.add(AuditEvent(actor=actor, action="mdoc.vical-signer.revoke" if previous is None
                                 else "mdoc.vical-signer.revoke.amend", subject=row.label, detail=detail))
                s.flush()
            return VicalSignerRevocationResult(info, changed, previous if changed else None,
                                               self._vical_info(s, signing), issue_id)

        return self._then_destroy(run_transaction(self.sessions, work), destroy_key, actor)

    def vical_ca_list(self) -> list[VicalCaInfo]:
        """Every VICAL CA generation, oldest first (none before the first VICAL is signed)."""

        def work(s: Session) -> list[VicalCaInfo]:
            now = self.clock()
            return [self._vical_ca_info(s, r, now) for r in self.pki._rows(s, PURPOSE_VICAL_CA)]

        return run_transaction(self.sessions, work)

    def stage_vical_ca(self, *, actor: str = "issuer") -> VicalCaStageResult:
        """The next VICAL CA generation made and published in ``/trust/vical-ca.pem`` at once
        (after the current one) without signing anything yet (:meth:`MdocPki.stage_vical_ca`),
        audited ``mdoc.vical-ca.stage``; with the VICAL CA still current. The VICAL is not
        re-signed: its signer and its IACAs are the same."""

        def work(s: Session) -> VicalCaStageResult:
            now = self.clock()
            row = self.pki.stage_vical_ca(s, now)  # refused before the first VICAL CA, or with one staged
            current = self.pki._active(s, PURPOSE_VICAL_CA)
            info = self._vical_ca_info(s, row, now)
            s.add(AuditEvent(actor=actor, action="mdoc.vical-ca.stage", subject=row.label,
                             detail={"current": current.label, "serial": info.serial}))
            s.flush()
            return VicalCaStageResult(info, current.label)

        return run_transaction(self.sessions, work)

    def staged_vical_ca(self) -> VicalCaInfo | None:
        """The staged next VICAL CA generation, or None."""

        def work(s: Session) -> VicalCaInfo | None:
            now = self.clock()
            row = self.pki.staged_vical_ca(s, now)
            return self._vical_ca_info(s, row, now) if row is not None else None

        return run_transaction(self.sessions, work)

    def rollover_vical_ca(self, *, compromised: bool = False, fresh: bool = False,
                          actor: str = "issuer") -> VicalCaRolloverResult:
        """Start the next VICAL CA generation with a VICAL signer under it, and re-sign the
        published VICAL (``mdoc_vicals``) with that signer in the same transaction, its
        ``vicalIssueID`` higher than any before (:meth:`MdocPki.rollover_vical_ca`): the staged
        generation when there is one (readers that took ``/trust/vical-ca.pem`` since its
        staging take the new VICAL at once), else a new one readers need from now on.
        ``compromised``: the CA before is withdrawn (out of ``/trust/vical-ca.pem`` at once,
        its key signing nothing more, the signers it certified revoked with it, cACompromise),
        else retired (listed while a signer it certified is valid and not revoked); with
        ``fresh`` too the staged CA is withdrawn with it and a new one made (the provider's
        environment, not one key, in other hands). Audited ``mdoc.vical-ca.rollover``."""

        def work(s: Session) -> VicalCaRolloverResult:
            now = self.clock()
            at = now.replace(microsecond=0)
            done = self.pki.rollover_vical_ca(s, now, compromised=compromised, fresh=fresh)
            self._vical(s, at)  # signed by the new CA's signer: its content (the signer) changed
            issue_id = s.get(PublishedVical, self.pki.config.organization).issue_id
            signing = self._vical_info(s, s.get(IssuerKey, done.signer.label))
            result = VicalCaRolloverResult(self._vical_ca_info(s, done.previous, now),
                                           self._vical_ca_info(s, done.current, now), signing, issue_id,
                                           compromised, done.revoked_signers, done.retired_signers,
                                           done.staged_since, done.withdrawn_staged)
            detail = {"previous": done.previous.label, "serial": result.current.serial,
                      "compromised": compromised, "signing": signing.label, "vical_issue_id": issue_id,
                      "revoked_signers": list(done.revoked_signers), "retired_signers": list(done.retired_signers),
                      "staged_since": done.staged_since.isoformat() if done.staged_since else None}
            if done.withdrawn_staged is not None:
                detail["withdrawn_staged"] = done.withdrawn_staged
            s.add(AuditEvent(actor=actor, action="mdoc.vical-ca.rollover", subject=done.current.label, detail=detail))
            s.flush()
            return result

        return run_transaction(self.sessions, work)

    def _vical_ca_info(self, s: Session, row, now: dt.datetime) -> VicalCaInfo:  # noqa: ANN001
        cert = self.pki._cert(row)
        staged = self.pki.staged_vical_ca(s, now)
        state = ("withdrawn" if row.revoked_at is not None else "current" if row.active
                 else "staged" if staged is not None and staged.label == row.label else "retired")
        trusted = (state in ("current", "staged") and now < cert.not_valid_after_utc) \
            or self.pki.vical_ca_vouching(s, row, now)
        signers = tuple(r.label for r in self.pki._rows(s, PURPOSE_VICAL) if self.pki._cert(r).issuer == cert.subject)
        return VicalCaInfo(row.label, format(cert.serial_number, "x"), cert.subject.rfc4514_string(),
                           cert.not_valid_before_utc, cert.not_valid_after_utc, state, trusted, row.revoked_at,
                           row.revocation_reason, self.pki.vical_crl_uri_for(row.label), signers,
                           row.key_destroyed_at)

    def _vical_info(self, s: Session, row) -> VicalSignerInfo:  # noqa: ANN001
        from protocols.certs import crl_url

        cert = self.pki._cert(row)
        ca = next((r.label for r in self.pki._rows(s, PURPOSE_VICAL_CA) if self.pki._cert(r).subject == cert.issuer),
                  None)
        return VicalSignerInfo(row.label, format(cert.serial_number, "x"), cert.subject.rfc4514_string(),
                               cert.not_valid_before_utc, cert.not_valid_after_utc,
                               bool(row.active and row.revoked_at is None), row.revoked_at, row.revocation_reason,
                               ca, crl_url(cert), row.key_destroyed_at)

    def iaca_crl(self, generation: int | None = None) -> x509.CertificateRevocationList:
        """The CRL of the current IACA, or of IACA generation ``generation``."""

        def work(s: Session) -> x509.CertificateRevocationList:
            self.pki.ensure_iaca_certificate(s, self.clock())  # the first generation is made on first use
            return self.pki.iaca_crl(s, self.clock(), iaca_label=generation)

        return run_transaction(self.sessions, work)

    def rollover_iaca(self, *, actor: str = "issuer") -> tuple[ActiveKey, ActiveKey, ActiveKey]:
        """The next IACA generation started, with its document signer and status-list signer
        (:meth:`rollover`, without when it was staged)."""
        r = self.rollover(actor=actor)
        return r.iaca, r.ds, r.status_signer

    def rollover(self, *, actor: str = "issuer") -> IacaRolloverResult:
        """The next IACA generation started, with its document signer and status-list signer
        (:meth:`MdocPki.rollover_iaca`: the staged one when there is one), audited as
        ``mdoc.iaca.rollover`` (with ``staged_since`` when it had been staged)."""

        def work(s: Session) -> IacaRolloverResult:
            now = self.clock()
            self.pki.lock_iacas(s)  # what a staging or rollover just committed, read after it
            old = self.pki._active(s, PURPOSE_IACA)
            staged = self.pki.staged_iaca(s, now)
            staged_since = staged.created_at if staged is not None else None
            keys = self.pki.rollover_iaca(s, now)
            detail = {"previous": old.label if old is not None else None,
                      "serial": format(keys[0].certificate.serial_number, "x"),
                      "ds": keys[1].label, "status_signer": keys[2].label}
            if staged_since is not None:
                detail["staged_since"] = staged_since.isoformat()
            s.add(AuditEvent(actor=actor, action="mdoc.iaca.rollover", subject=keys[0].label, detail=detail))
            s.flush()
            return IacaRolloverResult(*keys, staged_since)

        return run_transaction(self.sessions, work)

    def stage_iaca(self, *, actor: str = "issuer") -> ActiveKey:
        """The next IACA generation, staged (:meth:`stage`)."""
        return self.stage(actor=actor).iaca

    def stage(self, *, actor: str = "issuer") -> IacaStageResult:
        """The next IACA generation made and published in the trust bundle without vouching
        for anything yet (:meth:`MdocPki.stage_iaca`), audited as ``mdoc.iaca.stage``; with
        the IACA still current."""

        def work(s: Session) -> IacaStageResult:
            self.pki.lock_iacas(s)
            current = self.pki._active(s, PURPOSE_IACA)
            root = self.pki.stage_iaca(s, self.clock())  # refused when there is no current IACA
            s.add(AuditEvent(actor=actor, action="mdoc.iaca.stage", subject=root.label,
                             detail={"current": current.label, "serial": format(root.certificate.serial_number, "x")}))
            s.flush()
            return IacaStageResult(root, current.label)

        return run_transaction(self.sessions, work)

    def revoke_iaca(self, ref: str | int, reason: str, *, actor: str = "issuer",
                    destroy_key: bool = False) -> IacaRevocationResult:
        """Revoke IACA generation ``ref`` (:meth:`MdocPki.revoke_iaca`: out of the trust bundle
        and the VICAL, signing nothing more; the current one replaced at once by the staged or
        a new generation), audited ``mdoc.iaca.revoke`` (``mdoc.iaca.revoke.amend`` when a
        compromise amends an earlier reason), with the phones whose mdocs it vouched for.
        ``destroy_key``: its key destroyed once the revocation is committed (:meth:`destroy_key`;
        a revoked IACA has no duty left), so that a transaction rolled back never leaves a
        current IACA without its key."""

        def work(s: Session) -> IacaRevocationResult:
            now = self.clock()
            done = self.pki.revoke_iaca(s, ref, reason, now)
            info = self._info(s, done.row)
            phones = self._phones_under(s, [done.row.label])["valid"]
            successor = None
            if done.successor is not None:
                successor = IacaRolloverResult(done.successor, done.ds, done.status_signer,
                                               done.successor_staged_since)
            if done.changed:
                detail = {"serial": info.serial, "reason": done.row.revocation_reason,
                          "affected_mdocs": info.affected_mdocs, "affected_phones": len(phones),
                          "retired_signers": list(done.retired_signers)}
                if done.amended_from is not None:
                    detail["previous_reason"] = done.amended_from
                if successor is not None:
                    detail["successor"] = successor.to_json()
                s.add(AuditEvent(actor=actor, action="mdoc.iaca.revoke" if done.amended_from is None
                                 else "mdoc.iaca.revoke.amend", subject=done.row.label, detail=detail))
                s.flush()
            return IacaRevocationResult(info, done.changed, done.amended_from, successor,
                                        done.retired_signers, tuple(phones))

        return self._then_destroy(run_transaction(self.sessions, work), destroy_key, actor)

    def _then_destroy(self, done, destroy_key: bool, actor: str):  # noqa: ANN001, ANN202 - a revocation's result
        """A revocation's result, with the signer's key destroyed after it committed when
        ``destroy_key`` (its own transaction: a rollback never leaves a signer in duty without
        its key), and the destruction recorded in it."""
        if not destroy_key:
            return done
        gone = self.destroy_key(done.info.label, actor=actor)
        return dataclasses.replace(done, info=dataclasses.replace(done.info, key_destroyed_at=gone.key_destroyed_at),
                                   key_destruction=gone)

    def destroy_key(self, ref: str, *, actor: str = "issuer") -> KeyDestructionResult:
        """Destroy the private key of the mdoc signer ``ref`` names (an IACA's number, any
        signer's label or serial: :meth:`MdocPki.destroy_key`) when no duty needs it any more
        (:class:`issuer.mdoc.errors.KeyDestructionRefused` otherwise, nothing changed): a
        revoked signer's, whatever the reason, or one whose duties have all ended. Recorded
        on its row (``key_destroyed_at``) and audited ``mdoc.key.destroy`` (with the signer's
        serial, purpose, revocation reason, and ``found_absent`` when the store held no key
        any more); a second call changes nothing and says so (``already``). A CA's key (an
        IACA, a VICAL CA) signs its final CRL first, in a transaction of its own committed
        before the key is destroyed (:meth:`MdocPki.seal_for`; ``final_crls``)."""
        run_transaction(self.sessions, lambda s: self.pki.seal_for(s, ref, self.clock(), actor=actor))

        def work(s: Session) -> KeyDestructionResult:
            done = self.pki.destroy_key(s, ref, self.clock())
            result = KeyDestructionResult.of(done.row, done.changed, done.found_absent, done.restored,
                                             done.final_crls)
            if done.changed or done.restored:
                audit_destruction(s, result, actor=actor, action="mdoc.key.destroy")
            return result

        return run_transaction(self.sessions, work)

    def signed_by(self, ref: str) -> tuple[SignerInfo, tuple[str, ...], tuple[str, ...]]:
        """The signer ``ref`` names (a document signer's or an IACA's label or serial; an IACA
        also by its number), the phones holding a valid mdoc it signed (an IACA: one its
        document signers signed), sorted: the phones a re-issue after its compromise goes to;
        and the phones whose only such mdocs are on hold (a lost phone: one to re-issue once
        they are released)."""

        def work(s: Session) -> tuple[SignerInfo, tuple[str, ...], tuple[str, ...]]:
            from issuer.mdoc.errors import UnknownIaca, UnknownSigner

            try:
                row = self.pki.signer_row(s, ref, (PURPOSE_DS,))
            except UnknownSigner:
                try:
                    row = self.pki.iaca_row(s, ref)
                except UnknownIaca:
                    raise UnknownSigner(f"no document signer or IACA with label or serial {ref!r} (mcred mdoc "
                                        "ds list, mcred mdoc iaca list)") from None
            found = self._phones_under(s, [row.label], "valid", "hold")
            phones = found["valid"]
            held = [p for p in found["hold"] if p not in phones]
            return self._info(s, row), tuple(phones), tuple(held)

        return run_transaction(self.sessions, work)

    def _phones_under(self, s: Session, labels: list[str], *statuses: str) -> dict[str, list[str]]:
        """The phones holding an mdoc of each of ``statuses`` (default: valid) signed by one of
        ``labels`` (document signers, or IACAs: by the document signers they issued), sorted,
        read in one query."""
        statuses = statuses or ("valid",)
        signers = set(labels)
        for root in self.pki._rows(s, PURPOSE_IACA):
            if root.label in signers:
                signers.update(r.label for r in self.pki.issued_by(s, root))
        out: dict[str, set[str]] = {status: set() for status in statuses}
        for phone, status in s.execute(select(Credential.phone_id, Credential.status).distinct().where(
                Credential.kind == "mdoc", Credential.issuer_key.in_(sorted(signers)),
                Credential.status.in_(statuses))):
            out[status].add(phone)
        return {status: sorted(phones) for status, phones in out.items()}

    def staged_iaca(self) -> SignerInfo | None:
        """The staged next IACA generation, as operators see it, or None."""

        def work(s: Session) -> SignerInfo | None:
            row = self.pki.staged_iaca(s, self.clock())
            return self._info(s, row) if row is not None else None

        return run_transaction(self.sessions, work)

    def issuance_refusal(self) -> str | None:
        """Why no MSO can be signed now (the current IACA in its last months, or ended:
        :func:`issuer.mdoc.pki.issuance_refusal`), or None."""
        return run_transaction(self.sessions, lambda s: self.pki.issuance_refusal(s, self.clock()))

    def document_signer(self) -> ActiveKey:
        return run_transaction(self.sessions, lambda s: self.pki.document_signer(s, self.clock()))

    def rollover_ds(self) -> ActiveKey:
        return run_transaction(self.sessions, lambda s: self.pki.rollover_ds(s, self.clock()))

    def signers(self, purpose: str = PURPOSE_DS) -> list[SignerInfo]:
        """Every generation of the document signers (or status-list signers), oldest first."""

        def work(s: Session) -> list[SignerInfo]:
            return [self._info(s, row) for row in self.pki._rows(s, purpose)]

        return run_transaction(self.sessions, work)

    def revoke_signer(self, ref: str, reason: str, *, actor: str = "issuer",
                      purposes: tuple[str, ...] = (PURPOSE_DS,), destroy_key: bool = False) -> tuple[SignerInfo, bool]:
        """Revoke the signer named by label or serial (see :meth:`MdocPki.revoke_signer`);
        ``(what it is now, whether this call changed it)``. The MSOs it signed stay in the
        registry as they are: readers that check the IACA CRL refuse them, and the holders'
        phones need new ones (``affected_mdocs`` counts the valid ones)."""
        done = self.revoke_signer_detail(ref, reason, actor=actor, purposes=purposes, destroy_key=destroy_key)
        return done.info, done.changed

    def revoke_signer_detail(self, ref: str, reason: str, *, actor: str = "issuer",
                             purposes: tuple[str, ...] = (PURPOSE_DS,),
                             destroy_key: bool = False) -> SignerRevocationResult:
        """:meth:`revoke_signer`, saying whether it amended a revocation made before (a
        signer revoked for another reason, now for keyCompromise: ``amended_from``), audited
        ``mdoc.signer.revoke`` or ``mdoc.signer.revoke.amend``. ``destroy_key``: its key
        destroyed once the revocation is committed (:meth:`destroy_key`)."""

        def work(s: Session) -> SignerRevocationResult:
            now = self.clock()
            row, changed, previous = self.pki.revoke_signer(s, ref, reason, now, purposes)
            info = self._info(s, row)
            if changed:  # revoked now, or (revoked before) amended to keyCompromise
                s.add(AuditEvent(actor=actor, action="mdoc.signer.revoke" if previous is None
                                 else "mdoc.signer.revoke.amend", subject=row.label,
                                 detail={"serial": info.serial, "reason": reason,
                                         "purpose": row.purpose,
                                         "affected_mdocs": info.affected_mdocs,
                                         **({"previous_reason": previous} if previous is not None else {})}))
                s.flush()
            return SignerRevocationResult(info, changed, previous if changed else None)

        return self._then_destroy(run_transaction(self.sessions, work), destroy_key, actor)

    def _info(self, s: Session, row) -> SignerInfo:  # noqa: ANN001
        cert = self.pki._cert(row)
        labels = [row.label]
        if row.purpose == PURPOSE_IACA:  # an IACA's mdocs: those of the document signers it issued
            labels = [r.label for r in self.pki.issued_by(s, row)]
        affected = s.scalar(select(func.count()).select_from(Credential).where(
            Credential.kind == "mdoc", Credential.issuer_key.in_(labels),
            Credential.status == "valid")) or 0
        revoked_at = row.revoked_at
        iaca = None if row.purpose == PURPOSE_IACA else next(
            (r.label for r in self.pki._rows(s, PURPOSE_IACA) if self.pki._cert(r).subject == cert.issuer), None)
        return SignerInfo(row.label, row.purpose, format(cert.serial_number, "x"),
                          cert.subject.rfc4514_string(), cert.not_valid_before_utc,
                          cert.not_valid_after_utc, bool(row.active and row.revoked_at is None),
                          revoked_at, row.revocation_reason, affected, iaca, row.key_destroyed_at)

    # -- IssuerPort (mdoc half) ---------------------------------------------------------

    def mdoc_challenge(self, job_ref: str, phone_id: str, slot_index: int) -> bytes:
        return self.issuer.mdoc_challenge(job_ref, phone_id, slot_index)

    def issue_mdoc(self, job_ref: str, phone_id: str, slot_index: int,
                   device_public_key_der: bytes, proof: bytes) -> bytes:
        return self.issuer.issue_mdoc(job_ref, phone_id, slot_index, device_public_key_der, proof)

    # -- publication --------------------------------------------------------------------

    def status_token(self, list_id: str, now: dt.datetime | None = None) -> PublishedToken:
        at = now or self.clock()
        return run_transaction(self.sessions, lambda s: self.publisher.token(s, list_id, at))

    def status_token_by_uri(self, uri: str, now: dt.datetime | None = None) -> PublishedToken:
        at = now or self.clock()
        return run_transaction(self.sessions, lambda s: self.publisher.token_by_uri(s, uri, at))

    def identifier_token(self, list_id: str, now: dt.datetime | None = None) -> PublishedToken:
        """The Identifier List Token published beside status list ``list_id``."""
        at = now or self.clock()
        return run_transaction(self.sessions,
                               lambda s: self.identifier_publisher.token(s, list_id, at))
