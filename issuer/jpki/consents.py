"""The latest basic four data service (最新の利用者情報提供): a relying party to which a holder
consented, by signing :mod:`protocols.jpki.consent`'s document with their signing certificate,
asks the issuer for the holder's current name, birth date, sex and address, as often as it
needs while the consent lasts (ten years from its registration) and until the holder
withdraws it.

``jpki_consents`` (:class:`issuer.jpki.models.JpkiConsent`) keeps each registered consent: the holder it was signed by (found through the
signing certificate in the registry), the relying party, the document and its signature as
given, when it was granted, until when, and when and by whom it was withdrawn. Every
registration, answer and withdrawal is audited (``consent.register``, ``consent.query``,
``consent.withdraw``: the consent, the relying party, never the data).

Registration verifies the CMS signature over the document, requires its signer to be a
signing certificate this issuer issued (the same DER in the registry) that is valid now (not
revoked, not on hold, not expired), and the document to name the registering relying party.
An answer is the holder registry's data now (J-LIS answers from the resident register), with
the basic four fields that changed since the consent's certificate and the serial of the
holder's valid signing certificate now, if any (the new one after a move): the relying party
can watch that one instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, Holder, utcnow
from issuer.holders import is_erased
from issuer.jpki.models import JpkiConsent
from protocols.jpki.cms import verify_detached_signature
from protocols.jpki.consent import MAX_AGE, TERM, ConsentError, parse_consent
from protocols.jpki.errors import JpkiError
from protocols.jpki.parse import read_basic_four

#: A consent document's clock may run this far ahead of the issuer's.
SKEW = dt.timedelta(minutes=5)


class ConsentRefused(Exception):
    """A consent cannot be registered, answered or withdrawn; the message says why.
    ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ConsentView:
    id: str
    holder_id: str
    relying_party: str
    purpose: str
    signer_serial: str
    granted_at: dt.datetime
    expires_at: dt.datetime
    withdrawn_at: dt.datetime | None

    @classmethod
    def of(cls, row: JpkiConsent) -> ConsentView:
        return cls(row.id, row.holder_id, row.relying_party, row.purpose, row.signer_serial,
                   row.granted_at, row.expires_at, row.withdrawn_at)

    def state(self, now: dt.datetime) -> str:
        if self.withdrawn_at is not None:
            return "withdrawn"
        return "expired" if now >= self.expires_at else "active"

    def to_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        return {"id": self.id, "holder": self.holder_id, "relying_party": self.relying_party,
                "purpose": self.purpose, "signer_serial": self.signer_serial,
                "granted_at": self.granted_at.isoformat(), "expires_at": self.expires_at.isoformat(),
                "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
                "state": self.state(now or utcnow())}


def register(sessions: sessionmaker[Session], document: bytes, signature: bytes, *,
             relying_party: str, actor: str, now: dt.datetime | None = None) -> tuple[ConsentView, bool]:
    """Register the consent ``document`` signed (CMS, detached) by ``signature`` for
    ``relying_party`` (module docstring). ``(consent, registered)``: ``registered`` is
    False when this document was registered before (by the same party: the same consent
    comes back). :class:`ConsentRefused` naming the reason otherwise."""
    now = now or utcnow()
    try:
        consent = parse_consent(document)
        signer = verify_detached_signature(signature, document).signer_certificate
    except (ConsentError, JpkiError) as exc:
        raise ConsentRefused(str(exc)) from None
    if consent.relying_party != relying_party:
        raise ConsentRefused(f"the consent is to {consent.relying_party!r}, not to {relying_party!r}", 403)
    if consent.issued_at > now + SKEW or now - consent.issued_at > MAX_AGE:
        raise ConsentRefused(f"the consent document was made at {consent.issued_at.isoformat()}: "
                             f"register it within {MAX_AGE.days} days of that")
    der = signer.public_bytes(Encoding.DER)
    digest = hashlib.sha256(bytes(document)).hexdigest()

    def registered(s: Session) -> ConsentView | None:
        """This document's consent when registered before, to this party (another's: refused)."""
        known = s.scalar(select(JpkiConsent).where(JpkiConsent.document_sha256 == digest))
        if known is not None and known.relying_party != relying_party:
            raise ConsentRefused("this consent document is registered to another relying party", 403)
        return None if known is None else ConsentView.of(known)

    try:
        with sessions.begin() as s:
            if (known := registered(s)) is not None:
                return known, False
            cred = s.scalar(select(Credential).where(Credential.kind == "jpki-sign",
                                                     Credential.serial == format(signer.serial_number, "x"),
                                                     Credential.body == der))
            if cred is None:
                raise ConsentRefused("the consent is not signed with a signing certificate of this issuer")
            if cred.status != "valid" or not cred.not_before <= now <= cred.not_after:
                state = cred.status if cred.status != "valid" else "not valid now"
                raise ConsentRefused(f"the consent's signing certificate is {state}"
                                     + (f" ({cred.reason})" if cred.reason else ""))
            holder = s.get(Holder, cred.holder_id)
            if holder is None or is_erased(holder.data):
                raise ConsentRefused("the consent's holder is no longer in the registry")
            row = JpkiConsent(holder_id=cred.holder_id, relying_party=relying_party, purpose=consent.purpose,
                              signer_serial=cred.serial, signer_credential=cred.id, document_sha256=digest,
                              document=bytes(document), signature=bytes(signature), granted_at=now,
                              expires_at=now + TERM)
            s.add(row)
            s.flush()
            s.add(AuditEvent(actor=actor, action="consent.register", subject=row.id,
                             detail={"holder": row.holder_id, "relying_party": relying_party}))
            return ConsentView.of(row), True
    except IntegrityError:  # the same document registered by another request at the same moment
        with sessions() as s:
            known = registered(s)
        if known is None:
            raise ConsentRefused("this consent document is registered to another relying party", 403) from None
        return known, False


def latest_basic_four(sessions: sessionmaker[Session], consent_id: str, *, relying_party: str,
                      actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The holder's basic four data now, for the relying party of an active consent:
    ``{"consent", "basic_four": {"name", "birth_date", "sex", "address"}, "changed":
    [fields changed since the consent's certificate], "signing_certificate": serial of the
    holder's valid signing certificate now or None, "as_of"}``. An unknown consent, or
    another party's, is :class:`ConsentRefused` 404 (nothing tells it exists); a withdrawn
    or expired one 403."""
    now = now or utcnow()
    with sessions.begin() as s:
        row = s.get(JpkiConsent, consent_id) if isinstance(consent_id, str) else None
        if row is None or row.relying_party != relying_party:
            raise ConsentRefused(f"no consent {str(consent_id)[:40]!r} to {relying_party!r}", 404)
        state = ConsentView.of(row).state(now)
        if state != "active":
            raise ConsentRefused(f"consent {row.id} is {state}", 403)
        holder = s.get(Holder, row.holder_id)
        if holder is None or is_erased(holder.data):
            raise ConsentRefused(f"consent {row.id}: the holder is no longer in the registry", 403)
        data = holder.data
        now_four = {"name": f"{data['family_name']}\u3000{data['given_name']}",
                    "birth_date": data["birth_date"], "sex": int(data["sex"]), "address": data["address"]}
        signed = s.get(Credential, row.signer_credential)
        then = read_basic_four(x509.load_der_x509_certificate(signed.body))
        then_four = {"name": then.name, "birth_date": then.birth_date.date.isoformat(),
                     "sex": int(then.sex.value), "address": then.address}
        current = s.scalar(select(Credential.serial).where(
            Credential.holder_id == row.holder_id, Credential.kind == "jpki-sign",
            Credential.status == "valid").order_by(Credential.issued_at.desc()).limit(1))
        s.add(AuditEvent(actor=actor, action="consent.query", subject=row.id,
                         detail={"relying_party": relying_party}))
    return {"consent": row.id, "basic_four": now_four,
            "changed": sorted(k for k in now_four if now_four[k] != then_four[k]),
            "signing_certificate": current, "as_of": now.isoformat()}


def withdraw(sessions: sessionmaker[Session], consent_id: str, *, holder_id: str, actor: str,
             reason: str, now: dt.datetime | None = None) -> ConsentView:
    """The holder withdraws a consent (idempotent: a withdrawn one stays as it was); audited
    with ``reason``."""
    now = now or utcnow()
    with sessions.begin() as s:
        row = s.get(JpkiConsent, consent_id, with_for_update=True) if isinstance(consent_id, str) else None
        if row is None or row.holder_id != holder_id:
            raise ConsentRefused(f"holder {holder_id} has no consent {str(consent_id)[:40]!r}", 404)
        if row.withdrawn_at is None:
            row.withdrawn_at, row.withdrawn_by = now, actor[:160]
            s.add(AuditEvent(actor=actor, action="consent.withdraw", subject=row.id,
                             detail={"holder": holder_id, "relying_party": row.relying_party,
                                     "reason": reason[:200]}))
        return ConsentView.of(row)


def of_holder(sessions: sessionmaker[Session], holder_id: str) -> list[ConsentView]:
    """The holder's consents, oldest first; :class:`ConsentRefused` (404) for a holder the
    registry does not know, whose "no consent" would read as an answer about a person."""
    with sessions() as s:
        if (s.get(Holder, holder_id) if isinstance(holder_id, str) else None) is None:
            raise ConsentRefused(f"no holder {str(holder_id)[:40]!r} in the issuer's registry", 404)
        return [ConsentView.of(r) for r in s.scalars(select(JpkiConsent).where(
            JpkiConsent.holder_id == holder_id).order_by(JpkiConsent.granted_at))]

