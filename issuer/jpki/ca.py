"""The two JPKI root CAs of the issuer: key generations, rollover, OCSP responders.

One self-signed root per purpose (signing / user authentication), several key generations
under the same name; relying parties pick the issuer by key identifier (AKI = SKI), never by
name. Each generation has its own delegated OCSP responder (RFC 6960 4.2.2.2), because a
delegated responder must be issued by the CA that issued the certificate asked about.
Keys live in the issuer keystore (labels ``jpki-<purpose>-root-g<N>`` and
``jpki-<purpose>-root-g<N>-ocsp-<M>``); the registry's ``issuer_keys`` rows carry their
certificates and which root generation is active.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, IssuerKey, utcnow
from issuer.keystore import KeyStore
from protocols.jpki.certificates import build_ocsp_responder_certificate, build_root_ca
from protocols.jpki.profile import JpkiProfile, KeyType, Purpose
from protocols.jpki.validity import Validity

from .errors import CaNotSetUp, GenerationEnded
from .keys import as_private_key

ROOT_YEARS = 20
RESPONDER_DAYS = 365
#: A responder certificate is renewed when fewer days than this remain.
RESPONDER_RENEW_DAYS = 30

_DER = Encoding.DER

KIND = {Purpose.SIGN: "jpki-sign", Purpose.AUTH: "jpki-auth"}
SLOTS = {"sign": Purpose.SIGN, "auth": Purpose.AUTH}


def purpose_of(slot: str | Purpose) -> Purpose:
    if isinstance(slot, Purpose):
        return slot
    try:
        return SLOTS[slot]
    except KeyError:
        raise ValueError(f"slot {slot!r} is neither 'sign' nor 'auth'") from None


def root_purpose(purpose: Purpose) -> str:
    return f"jpki-{purpose.value}-root"


def responder_purpose(purpose: Purpose) -> str:
    return f"jpki-ocsp-{purpose.value}"


def random_serial() -> int:
    """A positive serial of 159 random bits (RFC 5280 4.1.2.2: at most 20 octets; CA/B
    Forum practice: at least 64 bits of CSPRNG output)."""
    while True:
        serial = secrets.randbits(159)
        if serial.bit_length() >= 64:
            return serial


@dataclass(frozen=True)
class Generation:
    """One root key generation of a purpose."""

    label: str
    purpose: Purpose
    algorithm: str
    certificate: x509.Certificate
    active: bool
    created_at: dt.datetime

    @property
    def key_id(self) -> bytes:
        return self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest


@dataclass(frozen=True)
class Responder:
    """The delegated OCSP responder of one root generation."""

    label: str
    generation: str
    certificate: x509.Certificate


@dataclass
class JpkiCa:
    """The issuer's JPKI CAs over a registry (``sessions``) and a keystore."""

    sessions: sessionmaker[Session]
    keystore: KeyStore
    profile: JpkiProfile = field(default_factory=JpkiProfile)
    clock: Callable[[], dt.datetime] = utcnow

    # -- generations -------------------------------------------------------------------------

    def generations(self, purpose: Purpose, session: Session | None = None) -> list[Generation]:
        """Every root generation of ``purpose``, oldest first; read in ``session`` if given
        (a caller's transaction), else in a transaction of its own."""
        query = (select(IssuerKey).where(IssuerKey.purpose == root_purpose(purpose))
                 .order_by(IssuerKey.created_at, IssuerKey.label))
        if session is not None:
            rows = session.scalars(query).all()
        else:
            # committed, not rolled back at close: on PostgreSQL a ROLLBACK also makes
            # psycopg drop the connection's prepared statements (DEALLOCATE ALL, and
            # parse them anew)
            with self.sessions.begin() as s:
                rows = s.scalars(query).all()
        return [Generation(r.label, purpose, r.algorithm,
                           x509.load_der_x509_certificate(r.certificate), r.active,
                           r.created_at) for r in rows if r.certificate]

    def active(self, purpose: Purpose, session: Session | None = None) -> Generation:
        active = [g for g in self.generations(purpose, session) if g.active]
        if not active:
            raise CaNotSetUp(f"no active {purpose.value} root: run `mcred jpki setup` first "
                             "(or JpkiCa.setup())")
        return active[-1]

    def generation(self, label: str) -> Generation:
        for purpose in Purpose:
            for g in self.generations(purpose):
                if g.label == label:
                    return g
        raise CaNotSetUp(f"no root generation {label!r}")

    def by_key_id(self, purpose: Purpose, key_id: bytes) -> Generation | None:
        for g in self.generations(purpose):
            if g.key_id == key_id:
                return g
        return None

    def is_set_up(self) -> bool:
        return all(any(g.active for g in self.generations(p)) for p in Purpose)

    def setup(self, key_type: KeyType = KeyType.RSA_2048) -> dict[Purpose, Generation]:
        """Create the roots (and responders) that do not exist yet; idempotent."""
        out = {}
        for purpose in Purpose:
            try:
                out[purpose] = self.active(purpose)
            except CaNotSetUp:
                out[purpose] = self.rollover(purpose, key_type)
            self.responder(out[purpose])
        return out

    def rollover(self, purpose: Purpose, key_type: KeyType = KeyType.RSA_2048,
                 actor: str = "issuer") -> Generation:
        """A new key generation under the same root name; it becomes the issuing one. Older
        generations stay published (trust store, CRLs, OCSP) for what they issued."""
        now = self.clock()
        with self.sessions() as s:
            existing = s.scalars(select(IssuerKey.label).where(
                IssuerKey.purpose == root_purpose(purpose))).all()
        n = len(existing) + 1
        label = f"{root_purpose(purpose)}-g{n}"
        while label in existing or self.keystore.has(label):
            n += 1
            label = f"{root_purpose(purpose)}-g{n}"
        signer = self.keystore.create(label, key_type.value)
        cert = build_root_ca(
            profile=self.profile, purpose=purpose, key=as_private_key(signer),
            serial=random_serial(),
            validity=Validity(now - dt.timedelta(minutes=5),
                              now + dt.timedelta(days=365 * ROOT_YEARS)),
        )
        with self.sessions.begin() as s:
            for row in s.scalars(select(IssuerKey).where(
                    IssuerKey.purpose == root_purpose(purpose), IssuerKey.active)).all():
                row.active = False
            s.add(IssuerKey(label=label, purpose=root_purpose(purpose), algorithm=key_type.value,
                            certificate=cert.public_bytes(_DER), active=True, created_at=now))
            s.add(AuditEvent(actor=actor, action="jpki.root.create", subject=label,
                             detail={"purpose": purpose.value, "algorithm": key_type.value}))
        gen = Generation(label, purpose, key_type.value, cert, True, now)
        self.responder(gen)
        return gen

    def signing_key(self, generation: Generation):
        """The root's key as a signing-only private-key object (see :mod:`.keys`)."""
        return as_private_key(self.keystore.signer(generation.label))

    # -- OCSP responders ---------------------------------------------------------------------

    def responder(self, generation: Generation) -> Responder:
        """The current delegated responder of ``generation``, created or renewed as needed:
        renewed when fewer than :data:`RESPONDER_RENEW_DAYS` remain, unless it already runs
        to the root's end (a renewal could not last longer: in a root's last days it would
        have made a new key at every call). Raises :class:`GenerationEnded` once the root
        has expired."""
        now = self.clock()
        root_end = generation.certificate.not_valid_after_utc
        if now >= root_end:
            raise GenerationEnded(f"root generation {generation.label} ended {root_end.isoformat()}: "
                                  "no OCSP responder is made for it")
        prefix = f"{generation.label}-ocsp-"
        with self.sessions() as s:
            rows = s.scalars(select(IssuerKey).where(
                IssuerKey.purpose == responder_purpose(generation.purpose),
                IssuerKey.label.startswith(prefix)).order_by(IssuerKey.created_at)).all()
        for row in reversed(rows):
            cert = x509.load_der_x509_certificate(row.certificate)
            end = cert.not_valid_after_utc
            if end - now > dt.timedelta(days=RESPONDER_RENEW_DAYS) or (end >= root_end and now < end):
                return Responder(row.label, generation.label, cert)
        label = f"{prefix}{len(rows) + 1}"
        key_type = KeyType(generation.algorithm)
        signer = self.keystore.create(label, key_type.value)
        not_after = min(now + dt.timedelta(days=RESPONDER_DAYS),
                        generation.certificate.not_valid_after_utc)
        cert = build_ocsp_responder_certificate(
            profile=self.profile, purpose=generation.purpose,
            issuer=generation.certificate, issuer_key=self.signing_key(generation),
            responder_key=signer.public_key(), serial=random_serial(),
            validity=Validity(now - dt.timedelta(minutes=5), not_after),
        )
        with self.sessions.begin() as s:
            s.add(IssuerKey(label=label, purpose=responder_purpose(generation.purpose),
                            algorithm=key_type.value, certificate=cert.public_bytes(_DER),
                            active=True, created_at=now))
        return Responder(label, generation.label, cert)

    def responder_key(self, responder: Responder):
        return as_private_key(self.keystore.signer(responder.label))

