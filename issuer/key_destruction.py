"""A key of the issuer destroyed once no duty needs it: what every PKI of the issuer shares.

The mdoc PKI (:meth:`issuer.mdoc.pki.MdocPki.destroy_key`), the JPKI roots and their OCSP
responders (:meth:`issuer.jpki.ca.JpkiCa.destroy_key`) and the time-stamping authority
(:meth:`issuer.tsa.TimeStampAuthority.destroy_key`) each decide when one of their keys may go
(its *duty*: what it still signs); what follows is the same for all (specs/issuer-keys.md, "A
signer's key destroyed"): the key store destroys the key (:meth:`issuer.keystore.KeyStore.destroy`),
the key's ``issuer_keys`` row records when (``key_destroyed_at``), its certificate stays in
the row and is published from there, the audit trail says who did it, and a second call
changes nothing and says so (``already``).

A CA's key (an IACA, a VICAL CA, a JPKI root generation, a TSA root) signs a **final CRL**
before it goes (:class:`FinalCrl`; specs/revocation.md, "A CA's final CRL"): every certificate
it revoked, thisUpdate the time of the destruction, nextUpdate
:data:`protocols.crl.NO_NEXT_UPDATE`, committed before the key is destroyed and served from
then on for good. Each PKI signs its own; the destruction reports them (``final_crls``).

The errors here are the common ground of the three PKIs' own (``issuer.mdoc.errors``
subclasses them): a caller that destroys keys of any PKI catches these, and the API answers
each with one problem type.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import update
from sqlalchemy.orm import Session

from issuer.db import AuditEvent, IssuerKey
from issuer.keystore import KeyNotFound, KeyStore

#: The revocation reasons that say a key is known or suspected to be in other hands: a key
#: kept after one is what ``mcred doctor`` names ("compromised signer keys").
COMPROMISE_REASONS = frozenset({"cACompromise", "keyCompromise"})


class KeyDestroyed(Exception):
    """The private key of an issuer key was destroyed: what would sign with it is refused
    (its certificate stays published)."""


class KeyDestructionRefused(Exception):
    """A key was not destroyed: a duty still needs it (``duty`` names which). Nothing was
    changed."""

    duty = "unspecified"


class SignerStillSigning(KeyDestructionRefused):
    """The key signs now, or will: the current one of its kind (an IACA, a document signer, a
    JPKI root generation issuing certificates, the OCSP responder answering for a root
    generation, the TSA unit stamping, the TSA root...), or a staged root (an IACA, a JPKI root
    generation, a TSA root: ``duty`` ``staged``, the next rollover starts it). Revoke it, roll
    it over or let it be replaced first."""

    def __init__(self, message: str, duty: str = "signing") -> None:
        super().__init__(message)
        self.duty = duty


class CaDutiesRemain(KeyDestructionRefused):
    """A retired, unrevoked CA still signs for certificates it issued that have not expired
    (their CRL, their OCSP responder's certificate): its key may be destroyed once the last of
    them ends (``until``), or once it is revoked where it can be."""

    duty = "crl"

    def __init__(self, message: str, until: dt.datetime | None = None) -> None:
        super().__init__(message)
        self.until = until


@dataclass(frozen=True)
class FinalCrl:
    """A final CRL a CA signed before its key was destroyed: where it is served (the path
    under the issuer's public URL), its cRLNumber, thisUpdate, and how many entries it has."""

    crl: str
    crl_number: int
    this_update: dt.datetime
    entries: int

    def to_json(self) -> dict:
        return {"crl": self.crl, "crl_number": self.crl_number, "this_update": self.this_update.isoformat(),
                "entries": self.entries}


@dataclass(frozen=True)
class KeyDestructionResult:
    """What a key destruction did: the key (never the key itself: its label, purpose and
    certificate's facts), when it was destroyed, whether this call destroyed it (False:
    ``already`` destroyed before), and whether the key store held no key any more when it
    was asked (``found_absent``)."""

    label: str
    purpose: str
    serial: str
    subject: str
    not_after: dt.datetime
    revoked_at: dt.datetime | None
    reason: str | None
    key_destroyed_at: dt.datetime
    changed: bool
    found_absent: bool = False
    #: recorded destroyed before, yet the key store held the key again (a backup of the store
    #: restored, a token re-imported): destroyed again by this call, the first record kept
    restored: bool = False
    #: a CA's: the final CRLs it signed before its key went (by this call, or by one
    #: interrupted after signing them); none for another key, a CA that signs no CRL any more
    #: (revoked, withdrawn, an IACA or VICAL CA past its end), one whose key the store no longer
    #: held, or in an answer ``already``
    final_crls: tuple[FinalCrl, ...] = ()

    @classmethod
    def of(cls, row: IssuerKey, changed: bool, found_absent: bool = False,
           restored: bool = False, final_crls: tuple[FinalCrl, ...] = ()) -> KeyDestructionResult:
        """The result for the key of ``row`` (its certificate read from the row)."""
        cert = x509.load_der_x509_certificate(row.certificate)
        return cls(row.label, row.purpose, format(cert.serial_number, "x"), cert.subject.rfc4514_string(),
                   cert.not_valid_after_utc, row.revoked_at, row.revocation_reason, row.key_destroyed_at,
                   changed, found_absent, restored, tuple(final_crls))

    def to_json(self) -> dict:
        """The answer of ``mcred mdoc|jpki|tsa key destroy --json`` and POST /trust/key-destructions."""
        return {"label": self.label, "purpose": self.purpose, "serial": self.serial, "subject": self.subject,
                "not_after": self.not_after.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "reason": self.reason,
                "key_destroyed_at": self.key_destroyed_at.isoformat(), "changed": self.changed,
                "already": not self.changed, "found_absent": self.found_absent, "restored": self.restored,
                "final_crls": [f.to_json() for f in self.final_crls]}


def take_row(session: Session, row: IssuerKey) -> None:
    """Lock ``row`` for the caller's transaction (PostgreSQL: its row lock; SQLite: the write
    lock) and read it afresh: two destructions, or a destruction and a revocation, of one key
    follow each other."""
    session.execute(update(IssuerKey).where(IssuerKey.label == row.label)
                    .values(key_destroyed_at=IssuerKey.key_destroyed_at)
                    .execution_options(synchronize_session=False))
    session.refresh(row)


def destroy_in_store(keystore: KeyStore, row: IssuerKey, now: dt.datetime) -> bool:
    """Destroy the key of ``row`` in ``keystore`` and record when on the row; whether the
    store held no key any more (``found_absent``: destroyed by a call whose record was rolled
    back, and recorded now)."""
    try:
        keystore.destroy(row.label)
        absent = False
    except KeyNotFound:
        absent = True
    row.key_destroyed_at = now
    return absent


def audit_destruction(session: Session, done: KeyDestructionResult, *, actor: str, action: str) -> None:
    """The audit event of a destruction ``done`` (subject the label; its serial, purpose,
    whether and why it was revoked, ``found_absent``, and how many final CRLs the CA signed
    before, ``final_crls``, when it signed any), in the caller's transaction."""
    session.add(AuditEvent(actor=actor, action=action, subject=done.label, detail={
        "serial": done.serial, "purpose": done.purpose, "revoked": done.revoked_at is not None,
        "reason": done.reason, "found_absent": done.found_absent,
        **({"restored": True} if done.restored else {}),
        **({"final_crls": len(done.final_crls)} if done.final_crls else {})}))
    session.flush()


def destroy_restored(keystore: KeyStore, row: IssuerKey) -> bool:
    """For the key of ``row``, recorded destroyed already: whether the key store held it
    again (a backup of the store restored, the token's objects re-imported) and it was
    destroyed again now. Nothing signs with a key recorded destroyed (each PKI refuses on
    the record), but a key that is there can still be copied: the destruction is what the
    record says."""
    if not keystore.has(row.label):
        return False
    try:
        keystore.destroy(row.label)
    except KeyNotFound:  # gone meanwhile
        return False
    return True


def take_destroyable(session: Session, keystore: KeyStore, row: IssuerKey, now: dt.datetime, *,
                     key_duty: Callable[[Session, IssuerKey, dt.datetime], KeyDestructionRefused | None],
                     actor: str, action: str) -> KeyDestructionResult | None:
    """Take ``row`` for ``session`` (:func:`take_row`) before its key is destroyed: the answer
    when it was destroyed before (:func:`already_destroyed`), else None once ``key_duty``
    found no duty (its refusal raised otherwise). The JPKI's and the TSA's ``destroy_key``."""
    take_row(session, row)
    if row.key_destroyed_at is not None:
        return already_destroyed(session, keystore, row, actor=actor, action=action)
    refusal = key_duty(session, row, now)
    if refusal is not None:
        raise refusal
    return None


def already_destroyed(session: Session, keystore: KeyStore, row: IssuerKey, *, actor: str,
                      action: str) -> KeyDestructionResult:
    """The answer to destroying the key of ``row`` again: ``already`` (nothing changed), or,
    when the key store held it again, destroyed once more and audited as ``action`` with
    ``restored`` (:func:`destroy_restored`); the row keeps the first ``key_destroyed_at``."""
    restored = destroy_restored(keystore, row)
    done = KeyDestructionResult.of(row, False, restored=restored)
    if restored:
        audit_destruction(session, done, actor=actor, action=action)
    return done


def destroy_and_record(session: Session, keystore: KeyStore, row: IssuerKey, now: dt.datetime, *,
                       actor: str, action: str, final_crls: tuple[FinalCrl, ...] = ()) -> KeyDestructionResult:
    """Destroy the key of ``row`` (no duty needs it: the caller asked) in ``keystore``, record
    when on the row and audit it as ``action`` (:func:`destroy_in_store`,
    :func:`audit_destruction`), in the caller's transaction. The key is destroyed before that
    transaction commits: one rolled back afterwards leaves the key gone and no record, and the
    next call finds no key and records it then (``found_absent``)."""
    absent = destroy_in_store(keystore, row, now)
    done = KeyDestructionResult.of(row, True, absent, final_crls=final_crls)
    audit_destruction(session, done, actor=actor, action=action)
    return done
