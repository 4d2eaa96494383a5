"""The issuer's JPKI side: root CAs with key generations, issuance into the registry,
partitioned CRLs and the OCSP service (see specs/revocation.md and specs/jpki-profile.md).

Entry point: :class:`JpkiIssuer` over a session factory and a keystore. The TSM reaches it
through the composition root's ``IssuerPort`` (``jpki_challenge`` / ``issue_jpki_certificate``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import Credential, utcnow
from issuer.keystore import KeyStore
from protocols.jpki.profile import JpkiProfile, KeyType, Purpose

from . import issuance, publication
from .ca import KIND, Generation, JpkiCa, RootRollover, RootStage, purpose_of
from .errors import (
    CaNotSetUp,
    IssuanceError,
    IssuerJpkiError,
    ProofOfPossessionError,
    RevocationError,
    RootEndsTooSoon,
    SigningCertificateRefused,
    UnknownCredential,
)
from .ocsp import OcspService

__all__ = [
    "CaNotSetUp", "Generation", "IssuanceError", "IssuerJpkiError", "JpkiCa", "JpkiIssuer",
    "ProofOfPossessionError", "RevocationError", "RootEndsTooSoon", "RootRollover", "RootStage",
    "SigningCertificateRefused",
    "UnknownCredential", "profile_for",
]


def profile_for(public_url: str, **changes) -> JpkiProfile:
    """The TEST-arc profile whose CRL and OCSP URLs point at this installation's service."""
    base = public_url.rstrip("/")
    return JpkiProfile(crl_base_url=base, ocsp_base_url=f"{base}/ocsp", **changes)


@dataclass
class JpkiIssuer:
    """Facade over the CA, issuance, CRL publication and OCSP of one installation."""

    sessions: sessionmaker[Session]
    keystore: KeyStore
    profile: JpkiProfile = field(default_factory=JpkiProfile)
    clock: Callable[[], dt.datetime] = utcnow

    def __post_init__(self) -> None:
        self.ca = JpkiCa(self.sessions, self.keystore, self.profile, self.clock)
        self.ocsp = OcspService(self.ca)

    # CA -------------------------------------------------------------------------------------
    def setup(self, key_type: KeyType = KeyType.RSA_2048) -> dict[Purpose, Generation]:
        return self.ca.setup(key_type)

    def rollover(self, slot: str, key_type: KeyType | None = None, *, actor: str = "issuer") -> Generation:
        """The generation issuing from now on (:meth:`rollover_detail`)."""
        return self.rollover_detail(slot, key_type, actor=actor).generation

    def rollover_detail(self, slot: str, key_type: KeyType | None = None, *, actor: str = "issuer") -> RootRollover:
        """Start the next root generation of ``slot``: the staged one when there is one, else
        a new one (:meth:`JpkiCa.rollover_detail`); the OCSP service reads its responders again."""
        done = self.ca.rollover_detail(purpose_of(slot), key_type, actor)
        self.ocsp.invalidate()
        return done

    def stage(self, slot: str, key_type: KeyType | None = None, *, actor: str = "issuer") -> RootStage:
        """Stage the next root generation of ``slot``: in the trust bundle at once, issuing
        nothing until the rollover starts it (:meth:`JpkiCa.stage`)."""
        return self.ca.stage(purpose_of(slot), key_type, actor)

    def destroy_key(self, ref: str, *, actor: str = "issuer"):  # noqa: ANN201 - a KeyDestructionResult
        """Destroy the key of a root generation or OCSP responder no duty needs any more
        (:meth:`JpkiCa.destroy_key`); the OCSP service reads its responders again."""
        done = self.ca.destroy_key(ref, actor=actor)
        self.ocsp.invalidate()
        return done

    def roots(self, slot: str) -> list[x509.Certificate]:
        """Every root generation of the slot, oldest first (the relying party's trust store):
        the retired ones, the issuing one, and the staged next one."""
        return [g.certificate for g in self.ca.generations(purpose_of(slot))]

    def root(self, slot: str) -> x509.Certificate:
        return self.ca.active(purpose_of(slot)).certificate

    # Issuance (the TSM's IssuerPort, JPKI part) ---------------------------------------------
    def jpki_challenge(self, job_ref: str, phone_id: str, slot: str) -> bytes:
        return issuance.challenge(self.ca, job_ref, phone_id, slot)

    def issue_jpki_certificate(self, job_ref: str, phone_id: str, slot: str, spki_der: bytes,
                               proof: bytes) -> tuple[bytes, bytes]:
        return issuance.issue(self.ca, job_ref, phone_id, slot, spki_der, proof)

    def issuance_refusal(self, slots: tuple[str, ...] | list[str], key_type: KeyType, birth: dt.date,
                         card_expiry: dt.date | None, now: dt.datetime | None = None,
                         session: Session | None = None) -> RootEndsTooSoon | None:
        """Why a certificate of ``slots`` for a ``key_type`` key, issued now to a holder born on
        ``birth`` whose card runs through ``card_expiry``, would be refused for outliving its
        slot's issuing root generation (:func:`issuance.root_refusal`), or None: what
        :func:`issuance.issue` decides, found before anything is done (before the SE makes a
        key), from the registry alone (the key store is not opened; one statement, in
        ``session`` when given). None too when a slot has no root yet (the set-up makes one of
        full term) or the rule itself refuses (a card ended: the issuance says so)."""
        now = now or self.clock()
        if session is not None:
            return issuance.issuance_refusal(session, slots, key_type, birth, card_expiry, now)
        with self.sessions.begin() as s:  # committed: see JpkiCa.generations
            return issuance.issuance_refusal(s, slots, key_type, birth, card_expiry, now)

    # Lookups --------------------------------------------------------------------------------
    def certificate(self, phone_id: str, slot: str, *, live_only: bool = False) -> bytes:
        """DER of the phone's newest certificate of ``slot``."""
        kind = KIND[purpose_of(slot)]
        with self.sessions() as s:
            q = select(Credential.body).where(Credential.phone_id == phone_id,
                                              Credential.kind == kind)
            if live_only:
                q = q.where(Credential.status.in_(("valid", "hold")))
            body = s.scalar(q.order_by(Credential.issued_at.desc()).limit(1))
        if body is None:
            raise UnknownCredential(f"phone {phone_id!r} has no {slot} certificate")
        return body

    def partition_of(self, phone_id: str, slot: str) -> str:
        kind = KIND[purpose_of(slot)]
        with self.sessions() as s:
            code = s.scalar(select(Credential.partition).where(
                Credential.phone_id == phone_id, Credential.kind == kind)
                .order_by(Credential.issued_at.desc()).limit(1))
        if code is None:
            raise UnknownCredential(f"phone {phone_id!r} has no {slot} certificate")
        return code

    # Publication ----------------------------------------------------------------------------
    def crl(self, slot: str, partition: str, *, key_id: bytes | None = None,
            now: dt.datetime | None = None) -> bytes:
        purpose = purpose_of(slot)
        if key_id is not None:
            return publication.crl_for_key_id(self.ca, purpose, partition, key_id, now)
        return publication.crl(self.ca, purpose, partition, now=now)

    def ocsp_respond(self, request_der: bytes, now: dt.datetime | None = None) -> bytes:
        return self.ocsp.respond(request_der, now)
