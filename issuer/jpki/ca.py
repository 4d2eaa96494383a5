"""The two JPKI root CAs of the issuer: key generations, rollover, OCSP responders.

One self-signed root per purpose (signing / user authentication), several key generations
under the same name; relying parties pick the issuer by key identifier (AKI = SKI), never by
name. Each generation has its own delegated OCSP responder (RFC 6960 4.2.2.2), because a
delegated responder must be issued by the CA that issued the certificate asked about.
Keys live in the issuer keystore (labels ``jpki-<purpose>-root-g<N>`` and
``jpki-<purpose>-root-g<N>-ocsp-<M>``); the registry's ``issuer_keys`` rows carry their
certificates and which root generation is active. A key no duty needs any more (an older
generation's once every certificate it issued has expired, a responder's once a newer one
answers) is destroyed in the key store (:meth:`JpkiCa.destroy_key`), its certificate kept in
the registry (specs/issuer-keys.md, "A signer's key destroyed").

Publish before use (specs/issuer-keys.md, "The JPKI root generations"): the next generation
may be staged (:meth:`JpkiCa.stage`): its key made and its certificate published in the trust
bundle (every generation, ``/trust/jpki-<purpose>-root.pem``) while the current one goes on
issuing, so relying parties take it before the first certificate it issues; the rollover
starts it (:meth:`JpkiCa.rollover_detail`). A staged generation is an inactive row of a later
generation than the active one (no schema change); it gets its OCSP responder when it starts.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, IssuerKey, utcnow
from issuer.key_destruction import (
    CaDutiesRemain,
    KeyDestructionRefused,
    KeyDestructionResult,
    SignerStillSigning,
    destroy_and_record,
    take_destroyable,
)
from issuer.keystore import KeyStore
from protocols.certs import SerialError, parse_serial
from protocols.jpki.certificates import build_ocsp_responder_certificate, build_root_ca
from protocols.jpki.profile import JpkiProfile, KeyType, Purpose
from protocols.jpki.validity import Validity

from .errors import (
    CaNotSetUp,
    GenerationEnded,
    JpkiRootAlreadyStaged,
    RootKeyDestroyed,
    StagedRootMismatch,
    UnknownJpkiKey,
)
from .keys import as_private_key

ROOT_YEARS = 20
RESPONDER_DAYS = 365
#: A responder certificate is renewed when fewer days than this remain.
RESPONDER_RENEW_DAYS = 30
#: A certificate issued now may run to the 10th birthday after its issue (the next card's rule,
#: ``protocols.jpki.validity.NEXT_CARD_RULE``), up to 11 years, and is not cut at its root's end:
#: a root generation with fewer days than this left may be asked for certificates that would
#: outlive it (a relying party refuses a chain past its root's end), which the issuer refuses
#: (``issuer.jpki.issuance.root_refusal``), so it is time to roll it over.
#: ``mcred doctor`` warns :data:`ROOT_NOTICE_DAYS` before; a staged generation this close to its
#: own end is no more staged (starting it would be as late).
ROOT_RENEW_DAYS = 11 * 366
ROOT_NOTICE_DAYS = 180

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


def generation_number(label: str) -> int:
    """The number of a root generation's label: ``jpki-sign-root-g2`` 2."""
    return int(label.rpartition("-g")[2])


def staged_of(generations: list[Generation], now: dt.datetime) -> Generation | None:
    """The staged generation among ``generations`` (one purpose's): the newest inactive one of
    a later generation than the active one, that can still be started (more than
    :data:`ROOT_RENEW_DAYS` before its end); None when there is none, or no active one."""
    active = [g for g in generations if g.active]
    if not active:
        return None
    current = generation_number(active[-1].label)
    later = [g for g in generations if not g.active and generation_number(g.label) > current
             and now < g.certificate.not_valid_after_utc - dt.timedelta(days=ROOT_RENEW_DAYS)]
    return max(later, key=lambda g: generation_number(g.label)) if later else None


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
    #: when its key was destroyed (:meth:`JpkiCa.destroy_key`; None: the key store holds it)
    key_destroyed_at: dt.datetime | None = None

    @property
    def key_id(self) -> bytes:
        return self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest


@dataclass(frozen=True)
class RootRollover:
    """What a rollover of a purpose's root did: the generation issuing from now on, the one it
    retired (``previous``), and when it was staged (``staged_since``; None: made by the
    rollover, so relying parties meet it with its first certificates)."""

    generation: Generation
    previous: str | None
    staged_since: dt.datetime | None = None

    def to_json(self) -> dict:
        """The answer of ``mcred jpki rollover --json`` and ``POST /trust/jpki-rollover``."""
        g = self.generation
        return {"slot": g.purpose.value, "label": g.label, "algorithm": g.algorithm, "key_id": g.key_id.hex(),
                "serial": format(g.certificate.serial_number, "x"),
                "not_after": g.certificate.not_valid_after_utc.isoformat(), "previous": self.previous,
                "staged_since": self.staged_since.isoformat() if self.staged_since else None}


@dataclass(frozen=True)
class RootStage:
    """What a staging did: the staged generation (in the trust bundle, issuing nothing yet)
    and the label of the generation still issuing."""

    generation: Generation
    current: str

    def to_json(self) -> dict:
        """The answer of ``mcred jpki stage --json`` and ``POST /trust/jpki-stage``."""
        g = self.generation
        return {"slot": g.purpose.value, "label": g.label, "algorithm": g.algorithm, "key_id": g.key_id.hex(),
                "serial": format(g.certificate.serial_number, "x"),
                "not_after": g.certificate.not_valid_after_utc.isoformat(), "current": self.current}


@dataclass(frozen=True)
class Responder:
    """The delegated OCSP responder of one root generation."""

    label: str
    generation: str
    certificate: x509.Certificate
    #: when its key was destroyed (:meth:`JpkiCa.destroy_key`, once its root generation's
    #: certificates had all expired); None: the key store holds it
    key_destroyed_at: dt.datetime | None = None


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
                           r.created_at, r.key_destroyed_at) for r in rows if r.certificate]

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

    def staged(self, purpose: Purpose, session: Session | None = None) -> Generation | None:
        """The staged next generation of ``purpose`` (:meth:`stage`), or None (:func:`staged_of`)."""
        return staged_of(self.generations(purpose, session), self.clock())

    @staticmethod
    def _lock(s: Session, purpose: Purpose) -> None:
        """Take the root rows of ``purpose`` for ``s`` and read them afresh (PostgreSQL: ``FOR
        UPDATE``; SQLite, whose driver reads outside any transaction until the first write: a
        write that changes nothing first, which takes the database's write lock): a staging or
        rollover decides on what the one before it committed (a second staging is refused, not
        made a generation further)."""
        if s.get_bind().dialect.name == "sqlite":
            s.execute(update(IssuerKey).where(IssuerKey.purpose == root_purpose(purpose))
                      .values(active=IssuerKey.active).execution_options(synchronize_session=False))
        s.scalars(select(IssuerKey).where(IssuerKey.purpose == root_purpose(purpose))
                  .with_for_update().execution_options(populate_existing=True)).all()

    def _new_generation(self, s: Session, purpose: Purpose, key_type: KeyType, now: dt.datetime,
                        active: bool, actor: str) -> Generation:
        """The next root generation of ``purpose`` (the roots' rows taken): its key made in the
        key store (a label whose key a failed attempt left there is skipped), its certificate
        self-signed, its row added to ``s`` (``active`` or not: staged), audited
        ``jpki.root.create``."""
        existing = set(s.scalars(select(IssuerKey.label).where(IssuerKey.purpose == root_purpose(purpose))).all())
        n = max((generation_number(label) for label in existing), default=0) + 1
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
        s.add(IssuerKey(label=label, purpose=root_purpose(purpose), algorithm=key_type.value,
                        certificate=cert.public_bytes(_DER), active=active, created_at=now))
        s.add(AuditEvent(actor=actor, action="jpki.root.create", subject=label,
                         detail={"purpose": purpose.value, "algorithm": key_type.value}))
        s.flush()
        return Generation(label, purpose, key_type.value, cert, active, now)

    def rollover(self, purpose: Purpose, key_type: KeyType | None = None,
                 actor: str = "issuer") -> Generation:
        """The generation issuing from now on (:meth:`rollover_detail`)."""
        return self.rollover_detail(purpose, key_type, actor).generation

    def rollover_detail(self, purpose: Purpose, key_type: KeyType | None = None,
                        actor: str = "issuer") -> RootRollover:
        """Start the next key generation under the same root name; it becomes the issuing one.
        The staged one (:meth:`stage`) when there is one, the very certificate relying parties
        took with the bundle since (a ``key_type`` other than its own is refused:
        :class:`StagedRootMismatch`), else a new one made here with a ``key_type`` key
        (default RSA-2048). Older generations stay published (trust store, CRLs, OCSP) for
        what they issued. Audited ``jpki.root.rollover`` (with ``staged_since``), but for the
        first generation (the set-up)."""
        now = self.clock()
        with self.sessions.begin() as s:
            self._lock(s, purpose)
            gens = self.generations(purpose, s)
            previous = next((g.label for g in reversed(gens) if g.active), None)
            staged = staged_of(gens, now)
            if staged is not None and key_type is not None and KeyType(staged.algorithm) is not key_type:
                raise StagedRootMismatch(
                    f"the staged root generation {staged.label} has a {staged.algorithm} key, not "
                    f"{key_type.value}: the rollover starts it as relying parties hold it (roll over without "
                    "--key-type)")
            for row in s.scalars(select(IssuerKey).where(
                    IssuerKey.purpose == root_purpose(purpose), IssuerKey.active)).all():
                row.active = False
            if staged is not None:
                s.get(IssuerKey, staged.label).active = True
                gen = Generation(staged.label, purpose, staged.algorithm, staged.certificate, True,
                                 staged.created_at, staged.key_destroyed_at)
            else:
                gen = self._new_generation(s, purpose, key_type or KeyType.RSA_2048, now, active=True, actor=actor)
            if previous is not None:
                s.add(AuditEvent(actor=actor, action="jpki.root.rollover", subject=gen.label, detail={
                    "purpose": purpose.value, "previous": previous, "serial": format(gen.certificate.serial_number, "x"),
                    **({"staged_since": staged.created_at.isoformat()} if staged is not None else {})}))
        self.responder(gen)
        return RootRollover(gen, previous, staged.created_at if staged is not None else None)

    def stage(self, purpose: Purpose, key_type: KeyType | None = None, actor: str = "issuer") -> RootStage:
        """Make the next root generation of ``purpose`` without starting it (a ``key_type`` key,
        default RSA-2048): it is in the trust bundle at once (:meth:`generations`, after the
        issuing one) while the issuing generation goes on alone, so relying parties take it
        before the first certificate it issues; it issues nothing and has no OCSP responder
        until :meth:`rollover_detail` starts it. One staged at a time
        (:class:`JpkiRootAlreadyStaged`); none before the first generation (:class:`CaNotSetUp`).
        Audited ``jpki.root.stage``."""
        now = self.clock()
        with self.sessions.begin() as s:
            self._lock(s, purpose)
            gens = self.generations(purpose, s)
            current = next((g for g in reversed(gens) if g.active), None)
            if current is None:
                raise CaNotSetUp(f"no active {purpose.value} root: run `mcred jpki setup` first; a next "
                                 "generation can be staged once one issues")
            staged = staged_of(gens, now)
            if staged is not None:
                raise JpkiRootAlreadyStaged(
                    f"the root generation {staged.label} is already staged (since {staged.created_at:%Y-%m-%d %H:%M} "
                    f"UTC): roll over to it (mcred jpki rollover --slot {purpose.value}, or POST /trust/jpki-rollover) "
                    "before staging another")
            gen = self._new_generation(s, purpose, key_type or KeyType.RSA_2048, now, active=False, actor=actor)
            s.add(AuditEvent(actor=actor, action="jpki.root.stage", subject=gen.label, detail={
                "purpose": purpose.value, "current": current.label, "algorithm": gen.algorithm,
                "serial": format(gen.certificate.serial_number, "x")}))
        return RootStage(gen, current.label)

    def signing_key(self, generation: Generation):
        """The root's key as a signing-only private-key object (see :mod:`.keys`):
        :class:`RootKeyDestroyed` once it was destroyed (its certificate is the registry's)."""
        if generation.key_destroyed_at is not None:
            raise RootKeyDestroyed(f"the key of root generation {generation.label} was destroyed at "
                                   f"{generation.key_destroyed_at:%Y-%m-%d %H:%M:%S} UTC (every certificate it "
                                   "issued had expired): it signs no CRL nor OCSP responder any more")
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
                return Responder(row.label, generation.label, cert, row.key_destroyed_at)
        label = f"{prefix}{len(rows) + 1}"
        key_type = KeyType(generation.algorithm)
        issuer_key = self.signing_key(generation)  # first: no key is made for a responder it could not certify
        signer = self.keystore.create(label, key_type.value)
        not_after = min(now + dt.timedelta(days=RESPONDER_DAYS),
                        generation.certificate.not_valid_after_utc)
        cert = build_ocsp_responder_certificate(
            profile=self.profile, purpose=generation.purpose,
            issuer=generation.certificate, issuer_key=issuer_key,
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

    # -- a key destroyed ---------------------------------------------------------------------

    #: the purposes whose keys :meth:`destroy_key` takes: the roots' and their responders'
    DESTROYABLE = tuple(f(p) for p in Purpose for f in (root_purpose, responder_purpose))

    def key_row(self, session: Session, ref: str) -> IssuerKey:
        """The root generation or OCSP responder ``ref`` names: its key's label
        (``jpki-sign-root-g1``, ``jpki-sign-root-g1-ocsp-2``) or its certificate's serial in hex
        (:func:`protocols.certs.parse_serial`)."""
        text = str(ref).strip()
        row = session.get(IssuerKey, text)
        if row is not None and row.purpose in self.DESTROYABLE:
            return row
        try:
            wanted = parse_serial(text)
        except SerialError:
            wanted = None
        if wanted is not None:
            for row in session.scalars(select(IssuerKey).where(IssuerKey.purpose.in_(self.DESTROYABLE))):
                if row.certificate and x509.load_der_x509_certificate(row.certificate).serial_number == wanted:
                    return row
        raise UnknownJpkiKey(f"no JPKI root generation or OCSP responder {ref!r} (a label jpki-sign-root-gN, "
                             "jpki-sign-root-gN-ocsp-M, ... or a certificate serial in hex)")

    def key_duty(self, session: Session, row: IssuerKey, now: dt.datetime) -> KeyDestructionRefused | None:
        """Why the key of ``row`` may not be destroyed at ``now``, or None.

        * A **root generation**: the issuing one never (:class:`SignerStillSigning`: roll it
          over first), nor a staged one (:meth:`stage`; ``duty`` ``staged``: the next rollover
          starts it, and relying parties hold it already). An older one while a certificate it issued has not expired, revoked or
          not (:class:`CaDutiesRemain`, ``until`` the last one's notAfter): it signs the CRLs
          of its partitions, which list its revoked certificates, and certifies the OCSP
          responder that answers for them. None once they have all expired, or past its own
          end.
        * An **OCSP responder**: the one answering for its root generation now (the newest of
          that generation, not expired) while that generation issues certificates, or has
          some that have not expired (:class:`SignerStillSigning`; it is replaced in its last
          30 days); none for one a newer responder replaced, one past its end, or one of a
          root generation past its end or whose certificates have all expired (the OCSP
          service then answers for that generation no more)."""
        cert = x509.load_der_x509_certificate(row.certificate)
        if row.revoked_at is not None or now >= cert.not_valid_after_utc:
            return None
        if row.purpose in (responder_purpose(p) for p in Purpose):
            generation, _, _ = row.label.rpartition("-ocsp-")
            root = session.get(IssuerKey, generation)
            if root is None or now >= x509.load_der_x509_certificate(root.certificate).not_valid_after_utc:
                return None
            newest = session.scalars(select(IssuerKey).where(
                IssuerKey.purpose == row.purpose, IssuerKey.label.startswith(f"{generation}-ocsp-"))
                .order_by(IssuerKey.created_at.desc(), IssuerKey.label.desc()).limit(1)).first()
            if newest is None or newest.label != row.label:
                return None
            if root.active:
                return SignerStillSigning(
                    f"the OCSP responder {row.label} is the one answering for root generation {generation}, which "
                    f"issues certificates now: its key is needed; it is replaced in its last {RESPONDER_RENEW_DAYS} "
                    "days (a newer one then answers, and this one's key may go)")
            count, until = self._unexpired(session, root, now)
            if root.key_destroyed_at is not None or not count:
                return None
            return SignerStillSigning(
                f"the OCSP responder {row.label} is the one answering for the retired root generation {generation}, "
                f"which has {count} certificate(s) that have not expired (the last ends {until:%Y-%m-%d %H:%M} UTC): "
                "its key is needed until then")
        slot = row.purpose.removeprefix("jpki-").removesuffix("-root")
        staged = staged_of(self.generations(Purpose(slot), session), now)
        if staged is not None and staged.label == row.label:
            return SignerStillSigning(
                f"the root generation {row.label} is staged (in the trust bundle since "
                f"{row.created_at:%Y-%m-%d %H:%M} UTC): the next rollover starts it and it issues certificates from "
                f"then on (mcred jpki rollover --slot {slot}); its key is needed", duty="staged")
        if row.active:
            return SignerStillSigning(
                f"the root generation {row.label} is the one issuing certificates now: its key is needed; roll it "
                f"over first (mcred jpki rollover --slot {slot})")
        count, until = self._unexpired(session, row, now)
        if not count:
            return None
        return CaDutiesRemain(
            f"the root generation {row.label} is retired and still has {count} certificate(s) it issued that have "
            f"not expired (the last ends {until:%Y-%m-%d %H:%M} UTC): it signs their partitions' CRLs and certifies "
            "the OCSP responder that answers for them; its key may be destroyed after that", until=until)

    @staticmethod
    def _unexpired(session: Session, root: IssuerKey, now: dt.datetime) -> tuple[int, dt.datetime | None]:
        """How many certificates root generation ``root`` issued have not expired at ``now``
        (valid, on hold or revoked: a revoked one is on its CRL until it expires), and when
        the last of them ends."""
        kind = KIND[Purpose(root.purpose.removeprefix("jpki-").removesuffix("-root"))]
        count, until = session.execute(
            select(func.count(), func.max(Credential.not_after)).where(
                Credential.kind == kind, Credential.issuer_key == root.label, Credential.not_after > now)).one()
        return count, until

    def destroy_key(self, ref: str, *, actor: str = "issuer") -> KeyDestructionResult:
        """Destroy the private key of the root generation or OCSP responder ``ref`` names
        (:meth:`key_row`) in the key store when no duty needs it (:meth:`key_duty`: refused
        otherwise, nothing changed), record when on its row (``key_destroyed_at``) and audit
        it (``jpki.key.destroy``). Its certificate stays in the registry: a root generation's
        is still in the trust bundle (``/trust/jpki-sign-root.pem``, ``mcred export
        jpki-root``), so what it issued still chains. Idempotent: a key destroyed before is
        left as it is (``changed`` False, ``already``).

        A root generation signs its final CRL of every partition first
        (:func:`issuer.jpki.publication.seal`), committed before the key is destroyed: served
        from then on for good (``final_crls``). A crash between the two leaves them signed; the
        next call finds them and destroys the key. None when the key store no longer holds
        the key (a destruction whose record was rolled back: ``found_absent``)."""
        from .publication import seal

        now = self.clock()
        with self.sessions.begin() as s:
            row, already = self._destroyable(s, ref, now, actor)
            if already is not None:
                return already
            root = row.label if row.purpose in (root_purpose(p) for p in Purpose) else None
        finals = tuple(seal(self, self.generation(root), now)) if root and self.keystore.has(root) else ()
        with self.sessions.begin() as s:
            row, already = self._destroyable(s, ref, now, actor)
            if already is not None:
                return already
            return destroy_and_record(s, self.keystore, row, now, actor=actor, action="jpki.key.destroy",
                                      final_crls=finals)

    def _destroyable(self, s: Session, ref: str, now: dt.datetime, actor: str
                     ) -> tuple[IssuerKey, KeyDestructionResult | None]:
        """The row of the key ``ref`` names, taken for ``s``, and the answer when it was
        destroyed before (:func:`issuer.key_destruction.already_destroyed`); the refusal of
        :meth:`key_duty` raised when a duty still needs it."""
        row = self.key_row(s, ref)
        return row, take_destroyable(s, self.keystore, row, now, key_duty=self.key_duty, actor=actor,
                                     action="jpki.key.destroy")
