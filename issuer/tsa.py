"""The installation's time-stamping authority (RFC 3161): a root, a TSA unit, every token logged.

A lab TSA beside the JPKI CAs, so that a JPKI signature can carry a signature time-stamp
(CAdES-T, PAdES B-T) and a relying party can judge it at the time it was made, after the
signing certificate was revoked for an address change or a handover (specs/revocation.md
5.2). In Japan a TSA is a business of its own, accredited by the Minister for Internal
Affairs; the lab runs one in the issuer's service for the drills, under its own root and
its own policy, apart from the JPKI hierarchy.

Keys sit in the issuer keystore (labels ``tsa-root-g1``, ``tsa-unit-<N>``; the signing
interface, never exported); the ``issuer_keys`` rows (purposes ``tsa-root`` and
``tsa-unit``) carry their certificates. A unit certificate is renewed when fewer than
:data:`UNIT_RENEW_DAYS` remain. Each token granted is logged (audit action ``tsa.stamp``:
serial, genTime, imprint), as a TSA must keep records of its tokens (ETSI EN 319 421 7.10).
A unit can be revoked (:meth:`TimeStampAuthority.revoke_unit`; a new one takes over), with
the time its key is known or suspected to have been compromised or otherwise invalid from
(``invalid_since``, the entry's invalidityDate); the root's CRL
(:meth:`TimeStampAuthority.crl`, ``GET /tsa/root.crl``) lists it, at the distribution point
the unit certificates name. A key no duty needs any more (a revoked or retired unit's) is
destroyed in the key store (:meth:`TimeStampAuthority.destroy_key`), its certificate kept in
the registry (specs/issuer-keys.md, "A signer's key destroyed").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, IssuerKey, utcnow
from issuer.freshness import NEVER, Stamp
from issuer.jpki.ca import random_serial
from issuer.jpki.keys import as_private_key
from issuer.key_destruction import (
    CaDutiesRemain,
    KeyDestructionRefused,
    KeyDestructionResult,
    SignerStillSigning,
    destroy_and_record,
    take_row,
)
from issuer.keystore import KeyStore
from issuer.revocation import check_invalidity_date
from protocols import tsp
from protocols.certs import SerialError, authority_key_id, parse_serial, subject_key_id
from protocols.crl import REASONS, Revoked, crl_builder
from protocols.tsp.certificates import build_tsa_root, build_tsa_unit

#: The lab TSA's policy: an OID under 2.25 (ITU-T X.667: a UUID as an OID, which needs no
#: registration), UUID 2176a635-70ca-52d0-bc7a-c93781ee97a3 (version 5 of
#: "https://github.com/mcred/tsa-policy/1" in the URL namespace).
POLICY = "2.25.44480586004203068099401053557132007331"
ROOT_YEARS = 20
UNIT_DAYS = 3 * 365
UNIT_RENEW_DAYS = 90
#: how long a process keeps its unit before reading the registry again (a revocation elsewhere);
#: this and CRL_REMAKE_SECONDS are counted by the wall clock as well as the monotonic one
#: (issuer.freshness: the monotonic clock stops while the machine is suspended)
UNIT_RECHECK_SECONDS = 30.0
#: nextUpdate - thisUpdate of the root's CRL
CRL_VALIDITY = dt.timedelta(days=1)
#: how long a made CRL is served before it is made again (a revocation here remakes it at once)
CRL_REMAKE_SECONDS = 60.0
ALGORITHM = "p256"
ROOT_NAME = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mcred lab"),
                       x509.NameAttribute(NameOID.COMMON_NAME, "mcred Time-Stamping Root")])


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
    """No key of the TSA answers to the label or serial given."""


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


@dataclass
class TimeStampAuthority:
    """The TSA over a registry (``sessions``) and a keystore; safe to share between threads."""

    sessions: sessionmaker[Session]
    keystore: KeyStore
    clock: Callable[[], dt.datetime] = utcnow
    policy: str = POLICY
    #: the CRL distribution point its unit certificates name (``<public URL>/tsa/root.crl``)
    crl_url: str | None = None
    _unit: tsp.TsaUnit | None = field(default=None, init=False, repr=False)
    _unit_read: Stamp = field(default=NEVER, init=False, repr=False)
    _crl: tuple[bytes, Stamp, tuple] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _rows(self, purpose: str) -> list[IssuerKey]:
        with self.sessions.begin() as s:
            rows = s.scalars(select(IssuerKey).where(IssuerKey.purpose == purpose)
                             .order_by(IssuerKey.created_at, IssuerKey.label)).all()
            s.expunge_all()
        return list(rows)

    def roots(self) -> list[x509.Certificate]:
        """Every time-stamping root (the relying party's TSA trust store), oldest first; the
        first is created on first use."""
        roots = [x509.load_der_x509_certificate(r.certificate) for r in self._rows("tsa-root")
                 if r.certificate]
        return roots or [self._create_root()]

    def root(self) -> x509.Certificate:
        """The newest root."""
        return self.roots()[-1]

    def _root(self) -> tuple[x509.Certificate, str]:
        """The newest root and its key's label (made on first use)."""
        self.roots()
        row = self._rows("tsa-root")[-1]
        return x509.load_der_x509_certificate(row.certificate), row.label

    def _create_root(self) -> x509.Certificate:
        now = self.clock()
        label = "tsa-root-g1"
        signer = (self.keystore.signer(label) if self.keystore.has(label)
                  else self.keystore.create(label, ALGORITHM))
        cert = build_tsa_root(name=ROOT_NAME, key=as_private_key(signer), serial=random_serial(),
                              not_before=now - dt.timedelta(minutes=5),
                              not_after=now + dt.timedelta(days=365 * ROOT_YEARS))
        with self.sessions.begin() as s:
            s.add(IssuerKey(label=label, purpose="tsa-root", algorithm=ALGORITHM,
                            certificate=cert.public_bytes(Encoding.DER), active=True,
                            created_at=now))
            s.add(AuditEvent(actor="issuer", action="tsa.root.create", subject=label, detail={}))
        return cert

    def unit(self) -> tsp.TsaUnit:
        """The current TSA unit, created or renewed as needed; read again from the registry
        every :data:`UNIT_RECHECK_SECONDS`, so that a unit revoked by another process stops
        stamping here too."""
        now = self.clock()
        unit = self._unit
        if (unit is not None and self._unit_read.age(now) < UNIT_RECHECK_SECONDS
                and unit.certificate.not_valid_after_utc - now > dt.timedelta(days=UNIT_RENEW_DAYS)):
            return unit
        with self._lock:
            self._unit = self._load_or_create_unit(now)
            self._unit_read = Stamp.now(now)
            return self._unit

    def _load_or_create_unit(self, now: dt.datetime) -> tsp.TsaUnit:
        root, root_label = self._root()
        rows = self._rows("tsa-unit")
        for row in reversed(rows):
            cert = x509.load_der_x509_certificate(row.certificate)
            if row.revoked_at is None and cert.not_valid_after_utc - now > dt.timedelta(days=UNIT_RENEW_DAYS):
                if self._unit is not None and self._unit.certificate == cert:
                    return self._unit  # the same unit: keep its encoded parts (TsaUnit._parts)
                return self._as_unit(row.label, cert, root)
        n = len(rows) + 1
        label = f"tsa-unit-{n}"
        signer = (self.keystore.signer(label) if self.keystore.has(label)
                  else self.keystore.create(label, ALGORITHM))
        root_signer = self.keystore.signer(root_label)
        cert = build_tsa_unit(name=_unit_name(n), public_key=signer.public_key(), issuer=root,
                              issuer_key=as_private_key(root_signer), serial=random_serial(),
                              # not before its root: a root made on this first use, a clock
                              # read later (across a second), starts a little after now - 5 min
                              not_before=max(now - dt.timedelta(minutes=5), root.not_valid_before_utc),
                              not_after=min(now + dt.timedelta(days=UNIT_DAYS),
                                            root.not_valid_after_utc), crl_url=self.crl_url)
        with self.sessions.begin() as s:
            s.add(IssuerKey(label=label, purpose="tsa-unit", algorithm=ALGORITHM,
                            certificate=cert.public_bytes(Encoding.DER), active=True,
                            created_at=now))
            s.add(AuditEvent(actor="issuer", action="tsa.unit.create", subject=label,
                             detail={"serial": format(cert.serial_number, "x")}))
        return self._as_unit(label, cert, root)

    def _as_unit(self, label: str, cert: x509.Certificate, root: x509.Certificate) -> tsp.TsaUnit:
        return tsp.TsaUnit(certificate=cert, sign=self.keystore.signer(label).sign,
                           policy=self.policy, chain=(root,))

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
                self._crl = None
        if destroy_key:  # committed: no rollback takes the revocation back with a failed destruction
            done = dataclasses.replace(done, key_destruction=self.destroy_key(done.label, actor=actor))
        return done

    def _revoke(self, s: Session, which: str, reason: str, given: dt.datetime | None, now: dt.datetime,
                actor: str) -> UnitRevocation:
        """:meth:`revoke_unit_detail`'s work in the transaction ``s``."""
        rows = s.scalars(select(IssuerKey).where(IssuerKey.purpose == PURPOSE_UNIT).with_for_update()).all()
        row = _find(rows, which)
        if row is None:
            raise TsaError(f"no TSA unit {which!r} (a label tsa-unit-N, or a serial in hex)")
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
        (a newer unit stamps: none is ever used again), nor any key past its certificate's
        end. The unit stamping now (the newest not revoked) is refused, and so is the newest
        root (it signs the CRL relying parties ask about every unit, and certifies the next
        unit): :class:`SignerStillSigning`. An older root, while a unit it certified has not
        expired (its CRL): :class:`CaDutiesRemain`."""
        cert = x509.load_der_x509_certificate(row.certificate)
        if row.revoked_at is not None or now >= cert.not_valid_after_utc:
            return None
        rows = session.scalars(select(IssuerKey).where(IssuerKey.purpose == row.purpose)
                               .order_by(IssuerKey.created_at, IssuerKey.label)).all()
        if row.purpose == PURPOSE_UNIT:
            current = next((r for r in reversed(rows) if r.revoked_at is None), None)
            if current is not None and current.label == row.label:
                return SignerStillSigning(
                    f"the TSA unit {row.label} is the one stamping now: its key is needed; revoke it first "
                    f"(mcred tsa revoke {row.label} --reason superseded: a new unit takes over)")
            return None
        if rows[-1].label == row.label:
            return SignerStillSigning(
                f"the TSA root {row.label} is the current one: it signs the CRL (/tsa/root.crl) on which relying "
                "parties look up every unit, and certifies the next unit; its key is needed while the TSA runs")
        units = [x509.load_der_x509_certificate(r.certificate) for r in session.scalars(
            select(IssuerKey).where(IssuerKey.purpose == PURPOSE_UNIT))]
        valid = [u for u in units if authority_key_id(u) == subject_key_id(cert) and now < u.not_valid_after_utc]
        if not valid:
            return None
        until = max(u.not_valid_after_utc for u in valid)
        return CaDutiesRemain(
            f"the TSA root {row.label} is retired and still certifies {len(valid)} unit(s) that have not expired "
            f"(the last ends {until:%Y-%m-%d %H:%M} UTC): relying parties look them up on its CRL; its key may be "
            "destroyed after that", until=until)

    def destroy_key(self, which: str, *, actor: str = "issuer") -> KeyDestructionResult:
        """Destroy the private key of the TSA key ``which`` names (:meth:`key_row`) in the key
        store when no duty needs it (:meth:`key_duty`: refused otherwise, nothing changed),
        record when on its row (``key_destroyed_at``) and audit it (``tsa.key.destroy``). Its
        certificate stays in the registry (a unit's travels in every token it made, which
        verify as before; the root's is published at ``/tsa/root.pem``). Idempotent: a key
        destroyed before is left as it is (``changed`` False, ``already``)."""
        now = self.clock()
        with self.sessions.begin() as s:
            row = self.key_row(s, which)
            take_row(s, row)
            if row.key_destroyed_at is not None:
                return KeyDestructionResult.of(row, False)
            refusal = self.key_duty(s, row, now)
            if refusal is not None:
                raise refusal
            done = destroy_and_record(s, self.keystore, row, now, actor=actor, action="tsa.key.destroy")
        with self._lock:
            self._unit = None
        return done

    def crl(self) -> bytes:
        """The root's CRL (DER): every revoked unit with its time and reason; cRLNumber the
        time in seconds (it only grows), nextUpdate a day later. Made again when the revoked
        units in the registry are not those it lists (a revocation or an amendment by any
        process on the database: one small read a request, so that a keyCompromise reaches
        every worker's CRL at once, where each kept its own for up to a minute), or when
        :data:`CRL_REMAKE_SECONDS` have passed, by the monotonic clock or by the wall clock
        (after a suspend the monotonic one has not counted the night, and a CRL kept by it
        alone was served past its nextUpdate). A public route must not sign on every request."""
        now = self.clock()
        listed = self._revoked_units()
        cached = self._crl
        if cached is not None and cached[2] == listed and cached[1].age(now) < CRL_REMAKE_SECONDS:
            return cached[0]
        der = self._make_crl(now)
        self._crl = (der, Stamp.now(now), listed)
        return der

    def _revoked_units(self) -> tuple:
        """What the root's CRL lists, as the registry has it now: each revoked unit's label,
        time, reason and invalidity date."""
        with self.sessions.begin() as s:
            return tuple(tuple(r) for r in s.execute(
                select(IssuerKey.label, IssuerKey.revoked_at, IssuerKey.revocation_reason, IssuerKey.invalid_since)
                .where(IssuerKey.purpose == "tsa-unit", IssuerKey.revoked_at.is_not(None))
                .order_by(IssuerKey.label)))

    def _make_crl(self, now: dt.datetime) -> bytes:
        root, root_label = self._root()
        revoked = [Revoked(x509.load_der_x509_certificate(r.certificate).serial_number, r.revoked_at,
                           r.revocation_reason or "unspecified", r.invalid_since)
                   for r in self._rows("tsa-unit") if r.revoked_at is not None]
        builder = crl_builder(root, number=int(now.timestamp()), this_update=now,
                              next_update=CRL_VALIDITY, revoked=revoked)
        return self.keystore.signer(root_label).sign_crl(builder).public_bytes(Encoding.DER)

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
