"""The installation's time-stamping authority (RFC 3161): a root, a TSA unit, every token logged.

A lab TSA beside the JPKI CAs, so that a JPKI signature can carry a signature time-stamp
(CAdES-T, PAdES B-T) and a relying party can judge it at the time it was made, after the
signing certificate was revoked for an address change or a handover (specs/revocation.md
5.2). In Japan a TSA is a business of its own, accredited by the Minister for Internal
Affairs; the lab runs one in the issuer's service for the drills, under its own root and
its own policy, apart from the JPKI hierarchy.

Keys sit in the issuer keystore (labels ``tsa-root-g<N>``, ``tsa-unit-<N>``; the signing
interface, never exported); the ``issuer_keys`` rows (purposes ``tsa-root`` and
``tsa-unit``) carry their certificates. A unit certificate is renewed when fewer than
:data:`UNIT_RENEW_DAYS` remain. Each token granted is logged (audit action ``tsa.stamp``:
serial, genTime, imprint), as a TSA must keep records of its tokens (ETSI EN 319 421 7.10).
A unit can be revoked (:meth:`TimeStampAuthority.revoke_unit`; a new one takes over), with
the time its key is known or suspected to have been compromised or otherwise invalid from
(``invalid_since``, the entry's invalidityDate); its root's CRL
(:meth:`TimeStampAuthority.crl`, ``GET /tsa/root.crl``, ``/tsa/root-gN.crl`` for generation N)
lists it, at the distribution point the unit certificate names.

The root rolls over (:meth:`TimeStampAuthority.rollover`, ``mcred tsa rollover``; by itself
when fewer than :data:`ROOT_RENEW_DAYS` remain and a new unit is due, so that no unit is cut
short by its root's end): a new generation ``tsa-root-gN`` with a new unit under it stamps at
once; the older root certifies nothing more but keeps signing the CRL of the units it
certified, at its own URL, until they have all expired (a relying party looks a unit up there
for as long as it is valid). Relying parties trust every generation
(:meth:`TimeStampAuthority.roots`, the current first), so tokens made before the rollover verify
as those made after. Publish before use: the next root may be staged
(:meth:`TimeStampAuthority.stage`; by the TSA itself :data:`ROOT_STAGE_DAYS` before its root
enters its last :data:`ROOT_RENEW_DAYS`): made and listed in ``/tsa/root.pem`` right after the
current one, certifying nothing until the rollover (asked for, or the TSA's own) starts it, so
relying parties that follow the bundle hold it before its first time-stamp. A staged root is an
inactive row of a later generation than the current (active) one. A key no duty needs any more (a revoked or retired unit's, an older root's
once its units have expired) is destroyed in the key store
(:meth:`TimeStampAuthority.destroy_key`), its certificate kept in the registry
(specs/issuer-keys.md, "A signer's key destroyed"); an older root signs its final CRL first
(:meth:`TimeStampAuthority.seal`: every unit it revoked, nextUpdate
:data:`protocols.crl.NO_NEXT_UPDATE`), served from then on for good.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, IssuerKey, TsaRootCrl, utcnow
from issuer.freshness import NEVER, Stamp
from issuer.jpki.ca import random_serial
from issuer.jpki.keys import as_private_key
from issuer.key_destruction import (
    CaDutiesRemain,
    FinalCrl,
    KeyDestroyed,
    KeyDestructionRefused,
    KeyDestructionResult,
    SignerStillSigning,
    destroy_and_record,
    take_destroyable,
)
from issuer.keystore import KeyStore
from issuer.revocation import check_invalidity_date
from protocols import tsp
from protocols.certs import SerialError, authority_key_id, parse_serial, subject_key_id
from protocols.crl import NO_NEXT_UPDATE, REASONS, Revoked, crl_builder
from protocols.tsp.certificates import build_tsa_root, build_tsa_unit

_log = logging.getLogger(__name__)

#: The lab TSA's policy: an OID under 2.25 (ITU-T X.667: a UUID as an OID, which needs no
#: registration), UUID 2176a635-70ca-52d0-bc7a-c93781ee97a3 (version 5 of
#: "https://github.com/mcred/tsa-policy/1" in the URL namespace).
POLICY = "2.25.44480586004203068099401053557132007331"
ROOT_YEARS = 20
UNIT_DAYS = 3 * 365
UNIT_RENEW_DAYS = 90
#: A root with fewer days than this left certifies no new unit: the next unit due (a renewal, a
#: revoked unit's successor) comes with a new root generation (an automatic rollover), so that
#: every unit has its full :data:`UNIT_DAYS` and none outlives its root. ``mcred doctor`` warns
#: :data:`ROOT_NOTICE_DAYS` before, for the operator to roll over first and hand relying parties
#: the new root.
ROOT_RENEW_DAYS = UNIT_DAYS
#: The TSA stages its next root by itself (:meth:`TimeStampAuthority.stage`, at its next time-stamp)
#: once its root has fewer than ``ROOT_RENEW_DAYS + ROOT_STAGE_DAYS`` left: a year before the
#: window where the next unit due comes with a new root, so that relying parties following
#: ``/tsa/root.pem`` hold it at least a year before its first time-stamp (the IACA's 180 days of
#: notice before its 90 days' margin, scaled to the TSA's three years: a unit is made every two
#: years and nine months, so the rollover may come up to that long after the window opens, and
#: a year lets relying parties that fetch the bundle yearly take it).
ROOT_STAGE_DAYS = 365
#: ``mcred doctor`` warns this long before the TSA would stage by itself, while nothing is staged.
ROOT_NOTICE_DAYS = 180
#: how long a process keeps its unit before reading the registry again (a revocation elsewhere);
#: this and CRL_REMAKE_SECONDS are counted by the wall clock as well as the monotonic one
#: (issuer.freshness: the monotonic clock stops while the machine is suspended)
UNIT_RECHECK_SECONDS = 30.0
#: nextUpdate - thisUpdate of the root's CRL
CRL_VALIDITY = dt.timedelta(days=1)
#: how long a made CRL is served before it is made again (a revocation here remakes it at once)
CRL_REMAKE_SECONDS = 60.0
#: a root whose key was destroyed without a final CRL (before final CRLs were signed) serves
#: the CRL it signed last until this long before its nextUpdate, as a JPKI root generation's
#: cached CRL is (``issuer.jpki.publication.REFRESH``)
CRL_REFRESH = dt.timedelta(hours=1)
ALGORITHM = "p256"
ROOT_NAME = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mcred lab"),
                       x509.NameAttribute(NameOID.COMMON_NAME, "mcred Time-Stamping Root")])


def root_name(n: int) -> x509.Name:
    """The subject of root generation ``n``: the first keeps the name it always had, a later
    one says its generation (``mcred Time-Stamping Root G2``), so that no two roots share a
    name (a validator that finds a CRL or an issuer by name first, as OpenSSL does, never
    takes another generation's)."""
    if n == 1:
        return ROOT_NAME
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mcred lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"mcred Time-Stamping Root G{n}")])


def generation_of(label: str) -> int:
    """The number of a TSA key's label: ``tsa-root-g2`` 2, ``tsa-unit-7`` 7."""
    return int(label.rpartition("-")[2].lstrip("g"))


def _unit_name(n: int) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mcred lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"mcred TSA unit {n}")])


class TsaError(ValueError):
    """A TSA operation refused; the message says why."""


#: The one reason a unit revoked already is amended to (:meth:`TimeStampAuthority.revoke_unit_detail`)
KEY_COMPROMISE = "keyCompromise"
#: The purposes of the TSA's keys (``issuer_keys.purpose``)
PURPOSE_ROOT, PURPOSE_UNIT = "tsa-root", "tsa-unit"


class UnknownTsaKey(TsaError):
    """No key of the TSA answers to the label or serial given (a unit, a root generation)."""


class TsaRootAlreadyStaged(TsaError):
    """A next root generation is staged already (:meth:`TimeStampAuthority.stage`): one at a
    time; the rollover starts it before another is staged."""


class TsaRootKeyDestroyed(KeyDestroyed):
    """The key of an older TSA root was destroyed (its units had all expired): it signs no CRL
    any more; the one it signed last was served until an hour before its nextUpdate."""


@dataclass(frozen=True)
class RootRollover:
    """What a rollover of the TSA's root made: the new root generation and the unit it
    certified, which stamps from now on; ``previous`` the root it retired (None: none was
    there); ``crl`` the distribution point the new unit names (the new root's CRL);
    ``automatic`` True when the TSA rolled over by itself (its root in its last
    :data:`ROOT_RENEW_DAYS`)."""

    root: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    unit: str
    unit_serial: int
    unit_not_after: dt.datetime
    previous: str | None
    crl: str | None
    automatic: bool = False
    #: when the root was staged (:meth:`TimeStampAuthority.stage`) and joined ``/tsa/root.pem``;
    #: None: made by the rollover, so relying parties meet it with its first time-stamps
    staged_since: dt.datetime | None = None

    def to_json(self) -> dict:
        """The answer of ``mcred tsa rollover --json`` and ``POST /trust/tsa-rollover``."""
        return {"root": self.root, "serial": format(self.serial, "x"), "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "unit": self.unit,
                "unit_serial": format(self.unit_serial, "x"), "unit_not_after": self.unit_not_after.isoformat(),
                "previous": self.previous, "crl": self.crl, "automatic": self.automatic,
                "staged_since": self.staged_since.isoformat() if self.staged_since else None}


@dataclass(frozen=True)
class RootStage:
    """What a staging of the TSA's next root made: the staged root generation (in
    ``/tsa/root.pem``, certifying nothing yet), the root still current, and whether the TSA
    staged it by itself."""

    root: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    current: str
    automatic: bool = False

    def to_json(self) -> dict:
        """The answer of ``mcred tsa stage --json`` and ``POST /trust/tsa-stage``."""
        return {"root": self.root, "serial": format(self.serial, "x"), "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "current": self.current, "automatic": self.automatic}


def current_root(roots: list[IssuerKey]) -> IssuerKey | None:
    """The current root among ``roots`` (oldest generation first): the newest active one (a
    staged root is inactive); None when there is none."""
    active = [r for r in roots if r.active]
    return active[-1] if active else (roots[-1] if roots else None)


def staged_root(roots: list[IssuerKey], now: dt.datetime) -> IssuerKey | None:
    """The staged next root among ``roots`` (oldest generation first): the newest inactive one of
    a later generation than the current one that could still certify a unit of full term (more
    than :data:`ROOT_RENEW_DAYS` before its end: starting one later would roll over again at the
    next unit); None when there is none."""
    current = current_root(roots)
    if current is None:
        return None
    later = [r for r in roots if not r.active and generation_of(r.label) > generation_of(current.label)
             and now < x509.load_der_x509_certificate(r.certificate).not_valid_after_utc
             - dt.timedelta(days=ROOT_RENEW_DAYS)]
    return later[-1] if later else None


def stage_due(roots: list[IssuerKey], now: dt.datetime) -> bool:
    """Whether the TSA stages its next root by itself at ``now``: its current root has fewer than
    ``ROOT_RENEW_DAYS + ROOT_STAGE_DAYS`` left and nothing is staged."""
    current = current_root(roots)
    if current is None or staged_root(roots, now) is not None:
        return False
    end = x509.load_der_x509_certificate(current.certificate).not_valid_after_utc
    return end - now < dt.timedelta(days=ROOT_RENEW_DAYS + ROOT_STAGE_DAYS)


@dataclass(frozen=True)
class UnitRevocation:
    """What a revocation of a TSA unit did: ``changed`` False when the unit was revoked
    already with nothing to amend; ``reason`` the unit's reason now; ``amended_from`` the
    reason it had when this call amended its revocation (to keyCompromise, or to an earlier
    invalidity date); ``invalid_since`` its invalidity date now (None: none given)."""

    label: str
    serial: int
    changed: bool
    reason: str | None
    amended_from: str | None = None
    invalid_since: dt.datetime | None = None
    #: the destruction of its key that followed (``destroy_key``), or None: not asked
    key_destruction: KeyDestructionResult | None = None

    def to_json(self) -> dict:
        """The answer of ``mcred tsa revoke --json`` and ``POST /trust/tsa-revocations``: the
        members that do not apply left out (``amended_from``, ``invalid_since``,
        ``key_destroyed_at``)."""
        gone = self.key_destruction
        return {"unit": self.label, "serial": f"{self.serial:x}", "reason": self.reason, "changed": self.changed,
                **({"amended_from": self.amended_from} if self.amended_from else {}),
                **({"invalid_since": self.invalid_since.isoformat()} if self.invalid_since else {}),
                **({"key_destroyed_at": gone.key_destroyed_at.isoformat()} if gone else {})}


@dataclass
class TimeStampAuthority:
    """The TSA over a registry (``sessions``) and a keystore; safe to share between threads."""

    sessions: sessionmaker[Session]
    keystore: KeyStore
    clock: Callable[[], dt.datetime] = utcnow
    policy: str = POLICY
    #: the CRL distribution point the units of the first root generation name (``<public
    #: URL>/tsa/root.crl``); generation N's is the same with ``-gN`` before ``.crl``
    #: (:meth:`crl_url_of`)
    crl_url: str | None = None
    _unit: tsp.TsaUnit | None = field(default=None, init=False, repr=False)
    _unit_read: Stamp = field(default=NEVER, init=False, repr=False)
    #: per root label: the CRL made, when, and the revoked units it lists
    _crls: dict[str, tuple[bytes, Stamp, tuple]] = field(default_factory=dict, init=False, repr=False)
    #: per unit label: its certificate's authorityKeyIdentifier and serial (they never change)
    _units_seen: dict[str, tuple[bytes, int]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def crl_url_of(self, generation: int) -> str | None:
        """The CRL distribution point of root generation ``generation``: :attr:`crl_url` for
        the first (the URL its units always named), ``.../root-gN.crl`` for generation N (as
        the IACA's generations have URLs of their own); None when no URL is configured."""
        if self.crl_url is None:
            return None
        if generation == 1:
            return self.crl_url
        return f"{self.crl_url.removesuffix('.crl')}-g{generation}.crl"

    def _rows(self, purpose: str, session: Session | None = None) -> list[IssuerKey]:
        """The keys of ``purpose``, oldest generation first (by the number in the label, not
        the creation time: a clock set back must not reorder them)."""
        query = select(IssuerKey).where(IssuerKey.purpose == purpose)
        if session is not None:
            rows = session.scalars(query).all()
        else:
            with self.sessions.begin() as s:
                rows = s.scalars(query).all()
                s.expunge_all()
        return sorted(rows, key=lambda r: generation_of(r.label))

    def roots(self) -> list[x509.Certificate]:
        """Every time-stamping root generation, the current first, then the staged next one
        (:meth:`stage`), then the older ones, newest first: what a relying party trusts
        (``/tsa/root.pem``, ``mcred export tsa-root``). None leaves: a token made by a unit of
        an older root is verified at its genTime for as long as the document it stamps is
        kept, and needs that root then. The first is created on first use."""
        rows = self._rows(PURPOSE_ROOT)
        if not rows:
            with self._lock:
                self._first_root()
            rows = self._rows(PURPOSE_ROOT)
        first = [r for r in (current_root(rows), staged_root(rows, self.clock())) if r is not None]
        ordered = first + [r for r in reversed(rows) if r not in first]
        return [x509.load_der_x509_certificate(r.certificate) for r in ordered if r.certificate]

    def root(self) -> x509.Certificate:
        """The current root (the newest active generation)."""
        return self.roots()[0]

    def root_of(self, generation: int | None = None) -> tuple[IssuerKey, x509.Certificate]:
        """The registry row and certificate of root ``generation`` (None: the current one);
        :class:`UnknownTsaKey` when there is no such generation."""
        rows = self._rows(PURPOSE_ROOT)
        if not rows and generation in (None, 1):
            self.roots()
            rows = self._rows(PURPOSE_ROOT)
        row = current_root(rows) if generation is None else next(
            (r for r in rows if generation_of(r.label) == generation), None)
        if row is None:
            raise UnknownTsaKey(f"no TSA root generation {generation} (there are {len(rows)})")
        return row, x509.load_der_x509_certificate(row.certificate)

    def _first_root(self) -> None:
        """Root generation 1, made on first use (nothing when another process made it)."""
        now = self.clock()
        try:
            with self.sessions.begin() as s:
                if self._rows(PURPOSE_ROOT, s):
                    return
                self._new_root(s, 1, now)
                s.add(AuditEvent(actor="issuer", action="tsa.root.create", subject="tsa-root-g1", detail={}))
        except IntegrityError:
            pass  # another process made it: read it

    def _new_root(self, s: Session, n: int, now: dt.datetime, *, active: bool = True
                  ) -> tuple[IssuerKey, x509.Certificate]:
        """Root generation ``n``: its key made in the key store (or the one a failed attempt
        left there), its certificate self-signed, its row added to ``s``; ``active``: it is the
        current root from now on, the older roots retired (``active`` false); else staged (the
        current one stays)."""
        label = f"tsa-root-g{n}"
        signer = self.keystore.signer(label) if self.keystore.has(label) else self.keystore.create(label, ALGORITHM)
        cert = build_tsa_root(name=root_name(n), key=as_private_key(signer), serial=random_serial(),
                              not_before=now - dt.timedelta(minutes=5),
                              not_after=now + dt.timedelta(days=365 * ROOT_YEARS))
        for older in self._rows(PURPOSE_ROOT, s) if active else ():
            older.active = False
        row = IssuerKey(label=label, purpose=PURPOSE_ROOT, algorithm=ALGORITHM,
                        certificate=cert.public_bytes(Encoding.DER), active=active, created_at=now)
        s.add(row)
        s.flush()
        return row, cert

    @staticmethod
    def _lock_roots(s: Session) -> None:
        """Take the roots' rows for ``s`` (PostgreSQL: their row locks; SQLite: the write
        lock), so that two processes do not both roll over, nor both make the next unit."""
        s.execute(update(IssuerKey).where(IssuerKey.purpose == PURPOSE_ROOT)
                  .values(active=IssuerKey.active).execution_options(synchronize_session=False))

    def unit(self) -> tsp.TsaUnit:
        """The current TSA unit, created or renewed as needed (with a new root generation when
        the current root is in its last :data:`ROOT_RENEW_DAYS`); read again from the registry
        every :data:`UNIT_RECHECK_SECONDS`, so that a unit revoked, or a root rolled over, by
        another process is seen here too."""
        now = self.clock()
        unit = self._unit
        if (unit is not None and self._unit_read.age(now) < UNIT_RECHECK_SECONDS
                and unit.certificate.not_valid_after_utc - now > dt.timedelta(days=UNIT_RENEW_DAYS)):
            return unit
        with self._lock:
            self._unit = self._load_or_create_unit(now)
            self._unit_read = Stamp.now(now)
            return self._unit

    @staticmethod
    def _stamping(roots: list[IssuerKey], units: list[IssuerKey], now: dt.datetime
                  ) -> tuple[IssuerKey, x509.Certificate, x509.Certificate] | None:
        """The unit that stamps at ``now``, with its certificate and its root's: the newest
        unit, when it is not revoked, has more than :data:`UNIT_RENEW_DAYS` left and was
        certified by the current root (never a staged one). None: a new one is due. An older unit is never taken
        up again (a retired unit's key may have been destroyed)."""
        if not roots or not units:
            return None
        row = units[-1]
        cert = x509.load_der_x509_certificate(row.certificate)
        root = x509.load_der_x509_certificate(current_root(roots).certificate)
        if (row.revoked_at is None and cert.not_valid_after_utc - now > dt.timedelta(days=UNIT_RENEW_DAYS)
                and authority_key_id(cert) == subject_key_id(root)):
            return row, cert, root
        return None

    def _load_or_create_unit(self, now: dt.datetime) -> tsp.TsaUnit:
        """The unit stamping now (:meth:`_unit_now`); then, when the root is near the window
        where the next unit comes with a new root, the next root staged (:func:`stage_due`)."""
        unit = self._unit_now(now)
        if stage_due(self._rows(PURPOSE_ROOT), now):
            self._stage_by_itself(now)
        return unit

    def _unit_now(self, now: dt.datetime) -> tsp.TsaUnit:
        found = self._stamping(self._rows(PURPOSE_ROOT), self._rows(PURPOSE_UNIT), now)
        for _attempt in range(3):
            if found is not None:
                row, cert, root = found
                if self._unit is not None and self._unit.certificate == cert:
                    return self._unit  # the same unit: keep its encoded parts (TsaUnit._parts)
                return self._as_unit(row.label, cert, root)
            try:
                with self.sessions.begin() as s:
                    self._lock_roots(s)
                    roots, units = self._rows(PURPOSE_ROOT, s), self._rows(PURPOSE_UNIT, s)
                    found = self._stamping(roots, units, now)  # another process made it meanwhile
                    if found is not None:
                        continue
                    if not roots:
                        root_row, root = self._new_root(s, 1, now)
                        s.add(AuditEvent(actor="issuer", action="tsa.root.create", subject=root_row.label, detail={}))
                    else:
                        root_row = current_root(roots)
                        root = x509.load_der_x509_certificate(root_row.certificate)
                    if root.not_valid_after_utc - now < dt.timedelta(days=ROOT_RENEW_DAYS):
                        # the staged root when there is one (announced ahead), else one made now
                        found = self._roll(s, roots, now, actor="issuer", automatic=True)[1]
                    else:
                        row, cert = self._new_unit(s, len(units) + 1, root_row, root, now)
                        found = (row, cert, root)
            except IntegrityError:  # another process took the label: read what it made
                found = self._stamping(self._rows(PURPOSE_ROOT), self._rows(PURPOSE_UNIT), now)
        raise TsaError("no TSA unit could be made: other processes kept taking its label")

    def _new_unit(self, s: Session, n: int, root_row: IssuerKey, root: x509.Certificate,
                  now: dt.datetime) -> tuple[IssuerKey, x509.Certificate]:
        """Unit ``n`` certified by ``root``: within the root's validity, naming the root's CRL;
        its row and the audit event added to ``s``."""
        label = f"tsa-unit-{n}"
        signer = self.keystore.signer(label) if self.keystore.has(label) else self.keystore.create(label, ALGORITHM)
        root_signer = self.keystore.signer(root_row.label)
        cert = build_tsa_unit(name=_unit_name(n), public_key=signer.public_key(), issuer=root,
                              issuer_key=as_private_key(root_signer), serial=random_serial(),
                              # not before its root: a root made on this first use, a clock
                              # read later (across a second), starts a little after now - 5 min
                              not_before=max(now - dt.timedelta(minutes=5), root.not_valid_before_utc),
                              not_after=min(now + dt.timedelta(days=UNIT_DAYS), root.not_valid_after_utc),
                              crl_url=self.crl_url_of(generation_of(root_row.label)))
        row = IssuerKey(label=label, purpose=PURPOSE_UNIT, algorithm=ALGORITHM,
                        certificate=cert.public_bytes(Encoding.DER), active=True, created_at=now)
        s.add(row)
        s.add(AuditEvent(actor="issuer", action="tsa.unit.create", subject=label,
                         detail={"serial": format(cert.serial_number, "x"), "root": root_row.label}))
        s.flush()
        return row, cert

    def _as_unit(self, label: str, cert: x509.Certificate, root: x509.Certificate) -> tsp.TsaUnit:
        return tsp.TsaUnit(certificate=cert, sign=self.keystore.signer(label).sign,
                           policy=self.policy, chain=(root,))

    # -- the root's rollover -------------------------------------------------------------

    def rollover(self, *, actor: str = "issuer") -> RootRollover:
        """Roll the root over: the next generation, the staged one (:meth:`stage`) when there
        is one (relying parties that took ``/tsa/root.pem`` since hold it already), else a new
        ``tsa-root-gN`` (its key made in the key store), and a new unit it certifies, which
        stamps from now on, in one transaction (audited ``tsa.root.rollover``, with
        ``staged_since``). The older root is retired, not revoked: it certifies nothing more,
        and signs the CRL of the units it certified (at its own URL) until they have all
        expired; their tokens verify as before under it. Its unit is retired too (none is ever
        used again; its key may be destroyed). Relying parties need the new root
        (:meth:`roots`) before they accept the new unit's tokens."""
        now = self.clock()
        with self._lock:
            with self.sessions.begin() as s:
                self._lock_roots(s)
                done, _ = self._roll(s, self._rows(PURPOSE_ROOT, s), now, actor=actor, automatic=False)
            self._unit, self._unit_read = None, NEVER
        return done

    def _roll(self, s: Session, roots: list[IssuerKey], now: dt.datetime, *, actor: str, automatic: bool
              ) -> tuple[RootRollover, tuple[IssuerKey, x509.Certificate, x509.Certificate]]:
        """:meth:`rollover`'s work in the transaction ``s`` (the roots' rows taken): what it
        made, and the new unit's row, certificate and root certificate."""
        current = current_root(roots)
        previous = current.label if current is not None else None
        staged = staged_root(roots, now)
        if staged is not None:  # started: the current root from now on, the others retired
            for row in roots:
                row.active = row.label == staged.label
            s.flush()
            root_row, root = staged, x509.load_der_x509_certificate(staged.certificate)
        else:
            n = max((generation_of(r.label) for r in roots), default=0) + 1
            root_row, root = self._new_root(s, n, now)
        n = generation_of(root_row.label)
        since = staged.created_at if staged is not None else None
        units = self._rows(PURPOSE_UNIT, s)
        unit_row, unit = self._new_unit(s, len(units) + 1, root_row, root, now)
        done = RootRollover(root_row.label, root.serial_number, root.not_valid_before_utc, root.not_valid_after_utc,
                            unit_row.label, unit.serial_number, unit.not_valid_after_utc, previous,
                            self.crl_url_of(n), automatic, since)
        s.add(AuditEvent(actor=actor, action="tsa.root.rollover", subject=root_row.label,
                         detail={"serial": format(root.serial_number, "x"), "previous": previous,
                                 "unit": unit_row.label, "unit_serial": format(unit.serial_number, "x"),
                                 "not_after": root.not_valid_after_utc.isoformat(), "automatic": automatic,
                                 **({"staged_since": since.isoformat()} if since else {})}))
        return done, (unit_row, unit, root)

    # -- the next root staged ------------------------------------------------------------

    def stage(self, *, actor: str = "issuer") -> RootStage:
        """Make the next root generation without starting it: listed in :meth:`roots` (``/tsa/root.pem``,
        ``mcred export tsa-root``) right after the current one, while the current root and its
        unit go on stamping, so that relying parties take it before its first time-stamp;
        :meth:`rollover` (asked for, or the TSA's own in its root's last years) starts it. One
        staged at a time (:class:`TsaRootAlreadyStaged`). Audited ``tsa.root.stage``. The TSA
        stages by itself :data:`ROOT_STAGE_DAYS` before its root's last :data:`ROOT_RENEW_DAYS`
        (:func:`stage_due`, at a time-stamp)."""
        now = self.clock()
        self.roots()  # the first generation, made on first use: the next one follows it
        with self._lock, self.sessions.begin() as s:
            self._lock_roots(s)
            return self._stage(s, now, actor=actor, automatic=False)

    def _stage(self, s: Session, now: dt.datetime, *, actor: str, automatic: bool) -> RootStage:
        """:meth:`stage`'s work in the transaction ``s`` (the roots' rows taken)."""
        roots = self._rows(PURPOSE_ROOT, s)
        current = current_root(roots)
        staged = staged_root(roots, now)
        if staged is not None:
            raise TsaRootAlreadyStaged(
                f"the TSA root {staged.label} is already staged (in /tsa/root.pem since "
                f"{staged.created_at:%Y-%m-%d %H:%M} UTC): roll over to it (mcred tsa rollover, or POST "
                "/trust/tsa-rollover) before staging another")
        n = max(generation_of(r.label) for r in roots) + 1
        row, cert = self._new_root(s, n, now, active=False)
        s.add(AuditEvent(actor=actor, action="tsa.root.stage", subject=row.label,
                         detail={"serial": format(cert.serial_number, "x"), "current": current.label,
                                 "not_after": cert.not_valid_after_utc.isoformat(), "automatic": automatic}))
        return RootStage(row.label, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc,
                         current.label, automatic)

    def _stage_by_itself(self, now: dt.datetime) -> None:
        """The next root staged by the TSA (:func:`stage_due`), unless another process did it
        meanwhile (the roots' rows taken, then read again). A staging that fails stops no
        time-stamp: it is tried again at the next reading of the unit (``mcred doctor`` says
        that nothing is staged)."""
        try:
            with self.sessions.begin() as s:
                self._lock_roots(s)
                if stage_due(self._rows(PURPOSE_ROOT, s), now):
                    self._stage(s, now, actor="issuer", automatic=True)
        except IntegrityError:
            pass  # another process took the label: it staged
        except Exception as exc:  # noqa: BLE001 - the TSA stamps on; said, and tried again
            _log.warning("the TSA could not stage its next root: %s: %s", type(exc).__name__, exc)

    # -- revocation of a unit ------------------------------------------------------------

    def revoke_unit(self, which: str, reason: str, *, actor: str = "issuer") -> tuple[str, int, bool]:
        """Revoke a TSA unit (its label, or its certificate's serial in hex) for ``reason``
        (an RFC 5280 name: keyCompromise, superseded, cessationOfOperation, ...): listed on
        the root's CRL from now on, no longer stamping (a new unit takes over). Returns
        (label, serial, whether it changed now; False: it was revoked already, with nothing
        to amend): :meth:`revoke_unit_detail` says more."""
        done = self.revoke_unit_detail(which, reason, actor=actor)
        return done.label, done.serial, done.changed

    def revoke_unit_detail(self, which: str, reason: str, *, actor: str = "issuer",
                           invalid_since: dt.datetime | None = None, destroy_key: bool = False) -> UnitRevocation:
        """:meth:`revoke_unit`, saying what it did. ``invalid_since``: since when the unit's key
        is known or suspected to have been compromised, or the unit otherwise invalid (its
        clock out of its accuracy, say), with its UTC offset and not after now
        (:func:`issuer.revocation.check_invalidity_date`): the CRL entry's invalidityDate (RFC
        5280 5.3.2), from which a relying party refuses the unit's time-stamps where the
        revocation's time alone let them stand.

        A unit revoked already is amended as a credential's revocation is
        (:func:`issuer.revocation._amend`): for keyCompromise, when it was revoked for another
        reason (retired, then found compromised), its reason becomes keyCompromise and a
        relying party then relies on none of its time-stamps, where the earlier reason
        refused only those from its revocation on (RFC 3161 4.1; RFC 5280 lets a later CRL
        give an entry another reason; the CA/Browser Forum's practice for a compromise
        learned later); and an ``invalid_since`` earlier than the one recorded (or, with none,
        than the revocation) replaces it. Its revocation time stays. Never the other way: a
        keyCompromise stays one, a later date says nothing new, and another reason asked of a
        unit revoked already changes nothing. Audited ``tsa.unit.revoke`` or
        ``tsa.unit.revoke.amend``. ``destroy_key``: its key destroyed once the revocation is
        committed (:meth:`destroy_key`, in a transaction of its own: a key store that fails
        leaves the revocation standing, and the destruction to be asked again)."""
        if reason not in REASONS:
            raise TsaError(f"reason {reason!r}: one of {', '.join(REASONS)}")
        now = self.clock()
        given = check_invalidity_date(invalid_since, now, "a TSA unit") if invalid_since is not None else None
        with self.sessions.begin() as s:
            done = self._revoke(s, which, reason, given, now, actor)
        if done.changed:
            with self._lock:
                self._unit = None
                self._crls.clear()
        if destroy_key:  # committed: no rollback takes the revocation back with a failed destruction
            done = dataclasses.replace(done, key_destruction=self.destroy_key(done.label, actor=actor))
        return done

    def _revoke(self, s: Session, which: str, reason: str, given: dt.datetime | None, now: dt.datetime,
                actor: str) -> UnitRevocation:
        """:meth:`revoke_unit_detail`'s work in the transaction ``s``."""
        rows = s.scalars(select(IssuerKey).where(IssuerKey.purpose == PURPOSE_UNIT).with_for_update()).all()
        row = _find(rows, which)
        if row is None:
            raise UnknownTsaKey(f"no TSA unit {which!r} (a label tsa-unit-N, or a serial in hex)")
        serial = x509.load_der_x509_certificate(row.certificate).serial_number
        amended_from = None
        if row.revoked_at is not None:  # amended, or left as it is
            new_reason = KEY_COMPROMISE if reason == KEY_COMPROMISE else row.revocation_reason
            bound = row.invalid_since or row.revoked_at
            new_since = given if given is not None and given < bound else row.invalid_since
            if (new_reason, new_since) == (row.revocation_reason, row.invalid_since):
                return UnitRevocation(row.label, serial, False, row.revocation_reason,
                                      invalid_since=row.invalid_since)
            amended_from, previous_since = row.revocation_reason, row.invalid_since
            row.revocation_reason, row.invalid_since = new_reason, new_since
            s.add(AuditEvent(actor=actor, action="tsa.unit.revoke.amend", subject=row.label,
                             detail={"serial": format(serial, "x"), "reason": new_reason,
                                     "previous_reason": amended_from, "revoked_at": row.revoked_at.isoformat(),
                                     **({"invalid_since": new_since.isoformat()} if new_since else {}),
                                     **({"previous_invalid_since": previous_since.isoformat()}
                                        if previous_since else {})}))
        else:
            row.revoked_at, row.revocation_reason, row.active = now, reason, False
            row.invalid_since = given
            s.add(AuditEvent(actor=actor, action="tsa.unit.revoke", subject=row.label,
                             detail={"serial": format(serial, "x"), "reason": reason,
                                     **({"invalid_since": given.isoformat()} if given else {})}))
        return UnitRevocation(row.label, serial, True, row.revocation_reason, amended_from, row.invalid_since)

    # -- a key destroyed -------------------------------------------------------------------

    def key_row(self, session: Session, which: str) -> IssuerKey:
        """The TSA key ``which`` names: a label (``tsa-unit-2``, ``tsa-root-g1``) or a
        certificate serial in hex (:func:`protocols.certs.parse_serial`)."""
        rows = session.scalars(select(IssuerKey).where(IssuerKey.purpose.in_((PURPOSE_ROOT, PURPOSE_UNIT)))
                               .order_by(IssuerKey.created_at, IssuerKey.label)).all()
        row = _find(rows, which)
        if row is None:
            raise UnknownTsaKey(f"no TSA key {which!r} (a unit tsa-unit-N, the root tsa-root-gN, or a "
                                "certificate serial in hex)")
        return row

    def key_duty(self, session: Session, row: IssuerKey, now: dt.datetime) -> KeyDestructionRefused | None:
        """Why the key of ``row`` may not be destroyed at ``now``, or None. A revoked unit's
        has no duty (nothing relies on a time-stamp it makes from now on), nor a retired one's
        (a newer unit stamps, or a rollover retired its root: none is ever used again), nor any
        key past its certificate's end. The unit stamping now (the newest, unless revoked) is
        refused, and so is the current root (the newest generation: it signs the CRL on which
        relying parties look up its units, and certifies the next unit), and so is a staged root
        (the next rollover starts it; ``duty`` ``staged``): :class:`SignerStillSigning`. An older root, while a unit it certified has not expired,
        revoked or not (it signs their CRL, where a revoked one is listed to its end):
        :class:`CaDutiesRemain`, ``until`` the last one's end."""
        cert = x509.load_der_x509_certificate(row.certificate)
        if row.revoked_at is not None or now >= cert.not_valid_after_utc:
            return None
        rows = self._rows(row.purpose, session)
        if row.purpose == PURPOSE_UNIT:
            if rows[-1].label == row.label:  # the newest, not revoked (above)
                return SignerStillSigning(
                    f"the TSA unit {row.label} is the one stamping now: its key is needed; revoke it first "
                    f"(mcred tsa revoke {row.label} --reason superseded: a new unit takes over)")
            return None
        where = self._crl_path(generation_of(row.label))
        staged = staged_root(rows, now)
        if staged is not None and staged.label == row.label:
            return SignerStillSigning(
                f"the TSA root {row.label} is staged (in /tsa/root.pem since {row.created_at:%Y-%m-%d %H:%M} UTC): "
                "the next rollover (mcred tsa rollover, or the TSA's own in its root's last years) starts it and "
                "it certifies the units from then on; its key is needed", duty="staged")
        if current_root(rows).label == row.label:
            return SignerStillSigning(
                f"the TSA root {row.label} is the current one: it signs the CRL ({where}) on which relying "
                "parties look up its units, and certifies the next unit; its key is needed while it is current "
                "(mcred tsa rollover makes the next generation)")
        units = [x509.load_der_x509_certificate(r.certificate) for r in self._rows(PURPOSE_UNIT, session)]
        valid = [u for u in units if authority_key_id(u) == subject_key_id(cert) and now < u.not_valid_after_utc]
        if not valid:
            return None
        until = max(u.not_valid_after_utc for u in valid)
        return CaDutiesRemain(
            f"the TSA root {row.label} is retired and still certifies {len(valid)} unit(s) that have not expired "
            f"(the last ends {until:%Y-%m-%d %H:%M} UTC): relying parties look them up on its CRL ({where}); its "
            "key may be destroyed after that", until=until)

    @staticmethod
    def _crl_path(generation: int) -> str:
        """Where root generation ``generation``'s CRL is served (the path under the public URL)."""
        return "/tsa/root.crl" if generation == 1 else f"/tsa/root-g{generation}.crl"

    def destroy_key(self, which: str, *, actor: str = "issuer") -> KeyDestructionResult:
        """Destroy the private key of the TSA key ``which`` names (:meth:`key_row`) in the key
        store when no duty needs it (:meth:`key_duty`: refused otherwise, nothing changed),
        record when on its row (``key_destroyed_at``) and audit it (``tsa.key.destroy``). Its
        certificate stays in the registry (a unit's travels in every token it made, which
        verify as before; the root's is published at ``/tsa/root.pem``). Idempotent: a key
        destroyed before is left as it is (``changed`` False, ``already``).

        A root signs its final CRL first (:meth:`seal`), committed before its key is destroyed
        (``final_crls``): a crash between the two leaves it signed, and the next call finds it
        and destroys the key."""
        now = self.clock()
        with self.sessions.begin() as s:
            row, already = self._destroyable(s, which, now, actor)
            if already is not None:
                return already
            root = row.label if row.purpose == PURPOSE_ROOT else None
        final = self.seal(root, now) if root is not None and self.keystore.has(root) else None
        with self.sessions.begin() as s:
            row, already = self._destroyable(s, which, now, actor)
            if already is not None:
                return already
            done = destroy_and_record(s, self.keystore, row, now, actor=actor, action="tsa.key.destroy",
                                      final_crls=(final,) if final is not None else ())
        with self._lock:
            self._unit = None
            self._crls.pop(row.label, None)  # a root's: served from the registry from now on
        return done

    def _destroyable(self, s: Session, which: str, now: dt.datetime, actor: str
                     ) -> tuple[IssuerKey, KeyDestructionResult | None]:
        """The row of the key ``which`` names, taken for ``s``, and the answer when it was
        destroyed before (:func:`issuer.key_destruction.already_destroyed`); the refusal of
        :meth:`key_duty` raised when a duty still needs it."""
        row = self.key_row(s, which)
        return row, take_destroyable(s, self.keystore, row, now, key_duty=self.key_duty, actor=actor,
                                     action="tsa.key.destroy")

    def seal(self, label: str, now: dt.datetime) -> FinalCrl:
        """The final CRL of the root ``label``, whose key is to be destroyed (:meth:`destroy_key`),
        signed now unless it signed one already (never twice): every unit it revoked, with its
        time, reason and invalidity date, thisUpdate ``now`` (after every unit it certified has
        ended: :meth:`key_duty`; a unit never outlives its root), cRLNumber above any before,
        nextUpdate :data:`protocols.crl.NO_NEXT_UPDATE`, kept in ``tsa_root_crls`` and served
        from then on for good (:meth:`crl`)."""
        with self.sessions.begin() as s:
            row = s.get(IssuerKey, label)
            s.expunge(row)
        root = x509.load_der_x509_certificate(row.certificate)
        der = self._make_crl(row, root, self._revoked_units(root), now, final=True)
        with self.sessions.begin() as s:
            kept = s.get(TsaRootCrl, label)
            return FinalCrl(self._crl_path(generation_of(label)), kept.crl_number, kept.this_update,
                            len(x509.load_der_x509_crl(der)))

    def crl(self, generation: int | None = None) -> bytes:
        """The CRL (DER) of root ``generation`` (None: the current root): every revoked unit it
        certified, with its time, reason and invalidity date; cRLNumber above the one it
        signed last and at least the time in seconds (it only grows), nextUpdate a day later.
        Made again when the revoked units in the registry are not those it lists (a revocation
        or an amendment by any process on the database: one small read a request, so that a
        keyCompromise reaches every worker's CRL at once, where each kept its own for up to a
        minute), or when :data:`CRL_REMAKE_SECONDS` have passed, by the monotonic clock or by
        the wall clock (after a suspend the monotonic one has not counted the night, and a CRL
        kept by it alone was served past its nextUpdate). A public route must not sign on
        every request. Each CRL signed is kept in the registry (``tsa_root_crls``): a root
        whose key was destroyed (its units all expired) serves its final CRL (:meth:`seal`) for
        good, or, destroyed before final CRLs were signed, the one it signed last until
        :data:`CRL_REFRESH` before its nextUpdate, then :class:`TsaRootKeyDestroyed`. A root
        that signed its final CRL signs no other (its key is being destroyed): another
        process's CRL made before is served until it is made again (:data:`CRL_REMAKE_SECONDS`).
        :class:`UnknownTsaKey` for a generation there is not."""
        now = self.clock()
        row, root = self.root_of(generation)
        if row.key_destroyed_at is not None:
            return self._last_signed(row, now)
        listed = self._revoked_units(root)
        cached = self._crls.get(row.label)
        if cached is not None and cached[2] == listed and cached[1].age(now) < CRL_REMAKE_SECONDS:
            return cached[0]
        der = self._make_crl(row, root, listed, now)
        self._crls[row.label] = (der, Stamp.now(now), listed)
        return der

    def _revoked_units(self, root: x509.Certificate) -> tuple:
        """What ``root``'s CRL lists, as the registry has it now: each revoked unit it
        certified, its label, serial, time, reason and invalidity date."""
        with self.sessions.begin() as s:
            rows = s.execute(select(IssuerKey.label, IssuerKey.certificate, IssuerKey.revoked_at,
                                    IssuerKey.revocation_reason, IssuerKey.invalid_since)
                             .where(IssuerKey.purpose == PURPOSE_UNIT, IssuerKey.revoked_at.is_not(None))
                             .order_by(IssuerKey.label)).all()
        ski, out = subject_key_id(root), []
        for label, der, revoked_at, reason, since in rows:
            seen = self._units_seen.get(label)
            if seen is None:
                cert = x509.load_der_x509_certificate(der)
                seen = self._units_seen[label] = (authority_key_id(cert), cert.serial_number)
            if seen[0] == ski:
                out.append((label, seen[1], revoked_at, reason, since))
        return tuple(out)

    def _make_crl(self, row: IssuerKey, root: x509.Certificate, listed: tuple, now: dt.datetime, *,
                  final: bool = False) -> bytes:
        """Sign ``root``'s CRL of the units ``listed`` (:meth:`_revoked_units`) and keep it
        (``tsa_root_crls``), its number above the one kept, under that row's lock; the final
        CRL kept (:meth:`seal`) instead, when there is one. ``final``: the final CRL itself
        (nextUpdate :data:`protocols.crl.NO_NEXT_UPDATE`, X.509 expiredCertsOnCRL from the
        root's notBefore: every unit it revoked is on it)."""
        revoked = [Revoked(serial, at, reason or "unspecified", since) for _label, serial, at, reason, since in listed]
        for _attempt in range(3):
            try:
                with self.sessions.begin() as s:
                    s.execute(update(TsaRootCrl).where(TsaRootCrl.root_label == row.label)
                              .values(crl_number=TsaRootCrl.crl_number).execution_options(synchronize_session=False))
                    kept = s.get(TsaRootCrl, row.label, with_for_update=True, populate_existing=True)
                    if kept is not None and kept.next_update == NO_NEXT_UPDATE:
                        return kept.body  # its final CRL: nothing is signed after it
                    this_update = now.astimezone(dt.UTC).replace(microsecond=0)
                    number = max(kept.crl_number + 1 if kept else 1, int(this_update.timestamp()))
                    until = NO_NEXT_UPDATE if final else this_update + CRL_VALIDITY
                    builder = crl_builder(root, number=number, this_update=this_update, next_update=until,
                                          revoked=revoked,
                                          expired_certs_since=root.not_valid_before_utc if final else None)
                    der = self.keystore.signer(row.label).sign_crl(builder).public_bytes(Encoding.DER)
                    if kept is None:
                        kept = TsaRootCrl(root_label=row.label)
                        s.add(kept)
                    kept.crl_number, kept.body = number, der
                    kept.this_update, kept.next_update = this_update, until
                return der
            except IntegrityError:
                continue  # another process kept the first CRL of this root meanwhile: go again
        raise TsaError(f"the CRL of {row.label} could not be kept: other processes kept taking its row")

    def _last_signed(self, row: IssuerKey, now: dt.datetime) -> bytes:
        """The CRL root ``row`` signed last: its final CRL for good (:meth:`seal`), else (a key
        destroyed before final CRLs were signed) while more than :data:`CRL_REFRESH` remains
        before its nextUpdate: its key was destroyed, nothing can sign another."""
        with self.sessions.begin() as s:
            kept = s.get(TsaRootCrl, row.label)
            due = kept.next_update if kept is not None else None
            if due is not None and (due == NO_NEXT_UPDATE or due - now > CRL_REFRESH):
                return kept.body
        raise TsaRootKeyDestroyed(
            f"the key of the TSA root {row.label} was destroyed at {row.key_destroyed_at:%Y-%m-%d %H:%M:%S} UTC "
            "(every unit it certified had expired): it signs no CRL any more"
            + (f"; the one it signed last is due at {due:%Y-%m-%d %H:%M:%S} UTC" if due else ""))

    def respond(self, der: bytes) -> bytes:
        """A DER TimeStampResp for a DER TimeStampReq: granted, logged, or refused with the
        failure bit that says why (badDataFormat, badAlg, badRequest, unacceptedPolicy,
        unacceptedExtension); systemFailure when the TSA itself could not stamp."""
        try:
            request = tsp.parse_request(der)
            unit = self.unit()
            now = self.clock()
            serial = random_serial()
            response = tsp.grant(request, unit=unit, serial=serial, gen_time=now)
            with self.sessions.begin() as s:  # logged before it is handed out
                s.add(AuditEvent(actor="tsa", action="tsa.stamp", subject=format(serial, "x"),
                                 detail={"gen_time": now.isoformat(),
                                         "hash_algorithm": request.hash_algorithm,
                                         "imprint": request.message_digest.hex(),
                                         "policy": unit.policy}))
        except tsp.RequestRefused as exc:
            return tsp.reject(exc.failure, str(exc))
        except Exception as exc:  # noqa: BLE001 - a TSA answers in-band (RFC 3161 2.4.2)
            return tsp.reject("systemFailure", f"the TSA could not stamp: {type(exc).__name__}")
        return response


def _find(rows, which: str) -> IssuerKey | None:  # noqa: ANN001 - IssuerKey rows
    """The row of ``rows`` whose label is ``which``, else whose certificate's serial it is (in
    hex, as :func:`protocols.certs.parse_serial` reads one)."""
    row = next((r for r in rows if r.label == which), None)
    if row is not None:
        return row
    try:
        wanted = parse_serial(which)
    except SerialError:
        return None
    return next((r for r in rows if x509.load_der_x509_certificate(r.certificate).serial_number == wanted), None)
