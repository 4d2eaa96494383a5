"""The issuer's mdoc PKI: IACA root, document signers with rollover, status-list signers.

ISO/IEC 18013-5:2021 Annex B (profiles built by :mod:`protocols.iaca`), 9.1.2.4 (the DS
certificate travels in the MSO's ``x5chain``). Keys live in the issuer key store and are
only ever asked to sign; certificates and generations are recorded in ``issuer_keys``
(purposes ``iaca``, ``ds``, ``status-signer``; the newest active row of a purpose is used,
older generations stay for verification and for the IACA CRL).

Rollover: a document signer (or status-list signer) is replaced by a new generation once
less than ``rollover_margin`` of its validity remains, so an MSO (valid at most
``rollover_margin``) never outlives its DS certificate. Labels are deterministic per
generation (``mdoc-ds-3``) so two processes racing to roll over end with one row: the
loser's insert fails, its transaction is retried and finds the winner's generation.

IACA generations (specs/issuer-keys.md, "The mdoc IACA"): the IACA is never rolled over
by itself (readers must hold a new IACA before it vouches for anything): an operator rolls
it over (:meth:`MdocPki.rollover_iaca`), which makes the new IACA, its document signer and
its status-list signer in one transaction. Ahead of that the operator may stage the next
IACA (:meth:`MdocPki.stage_iaca`): made and published in the trust bundle, but vouching for
nothing until the rollover starts it, so readers can take it before its first mdoc (a staged
IACA is an inactive row of a later generation than the current one). An older IACA stays a trust anchor while a
signer it issued is within validity (:meth:`MdocPki.trusted_iacas`); its CRL keeps being
published at the URL its certificates carry (generation 1: ``/trust/iaca.crl``, as before
generations existed; generation N: ``/trust/iaca-N.crl``), and the status lists of the
mdocs its document signers signed keep being signed by a status-list signer it issued (a
reader takes a list only from a signer under the IACA of the mdoc's own chain).

The VICAL CA (the anchor readers trust for this installation's VICALs) is staged the same way
(:meth:`MdocPki.stage_vical_ca`, published in /trust/vical-ca.pem while the current CA's signer
signs the VICAL), by an operator or by itself in its last months (:meth:`MdocPki._vical_ca_at`),
and started by the rollover (:meth:`MdocPki.rollover_vical_ca`, the automatic one too).

Certificates are read from the ``issuer_keys`` rows (:class:`SignerCertificate`), keys only to
sign (:class:`ActiveKey`): a signer's key may be destroyed once no duty needs it
(:meth:`MdocPki.destroy_key`, specs/issuer-keys.md "A signer's key destroyed") and its
certificate is still published; what would sign with it raises :class:`SignerKeyDestroyed`.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from issuer.db import AuditEvent, IssuerKey, StatusList
from issuer.key_destruction import FinalCrl, destroy_in_store, destroy_restored, take_row
from issuer.keystore import CoseSignerAdapter, KeyStoreError
from issuer.mdoc.errors import (
    CaDutiesRemain,
    IacaAlreadyStaged,
    IacaEnded,
    IacaWithdrawn,
    KeyDestructionRefused,
    MdocKeyError,
    MdocKeysMissing,
    SignerKeyDestroyed,
    SignerRevocationError,
    SignerStillSigning,
    UnknownIaca,
    UnknownSigner,
    UnknownVicalCa,
    VicalCaAlreadyStaged,
    VicalCaEnded,
    VicalCaRolloverRefused,
    VicalCaWithdrawn,
)
from issuer.mdoc.models import IacaCrl, IdentifierListToken, StatusListToken
from protocols import crl as ca_crl
from protocols import iaca
from protocols.certs import SerialError, crl_url, parse_serial

PURPOSE_IACA = "iaca"
PURPOSE_DS = "ds"
PURPOSE_STATUS = "status-signer"
PURPOSE_VICAL_CA = "vical-ca"
PURPOSE_VICAL = "vical-signer"
_LABEL_PREFIX = {PURPOSE_IACA: "mdoc-iaca", PURPOSE_DS: "mdoc-ds", PURPOSE_STATUS: "mdoc-status",
                 PURPOSE_VICAL_CA: "mdoc-vical-ca", PURPOSE_VICAL: "mdoc-vical-signer"}
_ALGORITHMS = {"ES256": "p256", "ES384": "p384", "p256": "p256", "p384": "p384"}


@dataclass(frozen=True)
class MdocPkiConfig:
    """Names, algorithm and validity periods of the mdoc PKI (ES256 by default)."""

    algorithm: str = "ES256"
    country: str = "JP"
    organization: str = "mcred simulated issuing authority"
    iaca_validity: dt.timedelta = dt.timedelta(days=10 * 365)
    signer_validity: dt.timedelta = dt.timedelta(days=365)
    rollover_margin: dt.timedelta = dt.timedelta(days=90)
    #: How long before the VICAL CA's automatic rollover (its last ``rollover_margin``) the
    #: next VICAL CA is staged by itself (published in /trust/vical-ca.pem, certifying nothing
    #: yet): readers following /trust/vical-ca.pem hold it this long before the first VICAL
    #: under it. Staged in the CA's last 180 days, started in its last 90, by default.
    vical_ca_notice: dt.timedelta = dt.timedelta(days=90)
    #: A new certificate's notBefore is this long before it is made, as CAs do: a reader
    #: whose clock runs a little behind the issuer's (or that took its time just before
    #: the issuer made a status list signer) would otherwise refuse it as not yet valid.
    backdate: dt.timedelta = dt.timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.algorithm not in _ALGORITHMS:
            raise MdocKeyError(f"mdoc algorithm {self.algorithm!r}: use ES256 or ES384")
        if not dt.timedelta(0) <= self.backdate <= dt.timedelta(days=1):
            raise MdocKeyError(f"backdate {self.backdate}: between 0 and one day")
        if self.signer_validity + self.backdate > iaca.DS_MAX_VALIDITY:
            raise MdocKeyError(f"signer validity {self.signer_validity} beyond Annex B's 457 days")
        if not dt.timedelta(0) < self.rollover_margin < self.signer_validity:
            raise MdocKeyError("rollover margin must be positive and shorter than the signer validity")
        if not dt.timedelta(0) < self.vical_ca_notice < self.iaca_validity - self.rollover_margin:
            raise MdocKeyError(f"VICAL CA notice {self.vical_ca_notice}: positive and within the CA's validity "
                               "before its rollover margin")

    @property
    def key_algorithm(self) -> str:
        return _ALGORITHMS[self.algorithm]


class _CertificateFacts:
    """What both views of a signer read off its ``certificate``, each once."""

    certificate: x509.Certificate

    @functools.cached_property
    def der(self) -> bytes:
        """The certificate's DER, encoded once (it goes into every x5chain this key signs)."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @functools.cached_property
    def not_valid_after(self) -> dt.datetime:
        """The certificate's notAfter (aware, UTC), read once: every MSO it signs is cut there."""
        return self.certificate.not_valid_after_utc


@dataclass(frozen=True)
class ActiveKey(_CertificateFacts):
    """A key of the PKI ready to sign: its label, certificate and COSE signer."""

    label: str
    purpose: str
    certificate: x509.Certificate
    signer: CoseSignerAdapter = field(repr=False, compare=False)
    #: the label of the IACA that issued this signer's certificate (None for an IACA)
    iaca_label: str | None = None


@dataclass(frozen=True)
class SignerCertificate(_CertificateFacts):
    """A key of the PKI as its certificate alone, read from its ``issuer_keys`` row without
    the key store: what publishing it (``/trust/iaca-N.pem``, the bundle, the VICAL, the
    listings) and naming it as a CRL's or a new signer's issuer need. A signer whose key
    was destroyed (:meth:`MdocPki.destroy_key`) still has one; :class:`ActiveKey` is for
    signing."""

    label: str
    purpose: str
    certificate: x509.Certificate
    #: the label of the IACA that issued this signer's certificate (None for an IACA)
    iaca_label: str | None = None
    #: when its private key was destroyed (None: the key store holds it)
    key_destroyed_at: dt.datetime | None = None


@dataclass(frozen=True)
class KeyDestruction:
    """What :meth:`MdocPki.destroy_key` did: the signer's row as it is now, whether this call
    destroyed its key (False: destroyed before, ``already``), and whether the key store held
    no key to destroy (``found_absent``: gone already, e.g. destroyed by a call whose record
    was rolled back; recorded as destroyed now)."""

    row: IssuerKey
    changed: bool
    found_absent: bool = False
    #: recorded destroyed before, the key store held it again: destroyed again now
    restored: bool = False
    #: a CA's final CRL, signed before its key went (:meth:`MdocPki.seal`), or none
    final_crls: tuple[FinalCrl, ...] = ()


@dataclass(frozen=True)
class VicalCaRollover:
    """What :meth:`MdocPki.rollover_vical_ca` did: the VICAL CA before (retired, or withdrawn
    when its row is revoked), the one now current (staged since ``staged_since``, or None:
    made by the rollover, readers had no warning), the VICAL signer under it, the labels of
    the signers of the one before revoked with it (a compromise) or retired, and the staged
    CA withdrawn with it (``fresh``: its key shared the compromised environment), if any."""

    previous: IssuerKey
    current: IssuerKey
    signer: ActiveKey
    revoked_signers: tuple[str, ...] = ()
    retired_signers: tuple[str, ...] = ()
    staged_since: dt.datetime | None = None
    withdrawn_staged: str | None = None


@dataclass(frozen=True)
class IacaRevocation:
    """What :meth:`MdocPki.revoke_iaca` did: the IACA's row as it is now, whether the call
    changed it, the reason it had when the call amended its revocation, and, when it was the
    current IACA, the generation started in its place (staged since ``successor_staged_since``,
    or None: made then) with its signers; and the signers retired with it."""

    row: IssuerKey
    changed: bool
    amended_from: str | None = None
    successor: ActiveKey | None = None
    successor_staged_since: dt.datetime | None = None
    ds: ActiveKey | None = None
    status_signer: ActiveKey | None = None
    retired_signers: tuple[str, ...] = ()


class MdocPki:
    """Creates, rolls over and hands out the mdoc issuer keys (sessions come from the caller)."""

    def __init__(self, keystore, public_url: str, config: MdocPkiConfig | None = None) -> None:
        self.keystore = keystore
        self.public_url = public_url.rstrip("/")
        self.config = config or MdocPkiConfig()
        self._certs: dict[str, x509.Certificate] = {}
        self._crls: dict[bytes, x509.CertificateRevocationList] = {}

    # -- URLs put into certificates -----------------------------------------------------

    @property
    def crl_uri(self) -> str:
        """The CRL distribution point of the first IACA generation's signers."""
        return self.crl_uri_for(f"{_LABEL_PREFIX[PURPOSE_IACA]}-1")

    @property
    def iaca_uri(self) -> str:
        """Where the trust bundle (every IACA a reader needs) is published."""
        return f"{self.public_url}/trust/iaca.pem"

    def crl_uri_for(self, iaca_label: str) -> str:
        """The CRL distribution point of the signers under ``iaca_label``: ``/trust/iaca.crl``
        for generation 1 (the URL its certificates carried before there were generations),
        ``/trust/iaca-N.crl`` for generation N."""
        n = generation(iaca_label)
        return f"{self.public_url}/trust/iaca.crl" if n == 1 else f"{self.public_url}/trust/iaca-{n}.crl"

    def vical_crl_uri_for(self, ca_label: str) -> str:
        """The CRL distribution point of the VICAL signers under VICAL CA ``ca_label``, as the
        IACA's: ``/trust/vical-ca.crl`` for generation 1, ``/trust/vical-ca-N.crl`` for N."""
        n = generation(ca_label)
        return f"{self.public_url}/trust/vical-ca.crl" if n == 1 else f"{self.public_url}/trust/vical-ca-{n}.crl"

    def iaca_uri_for(self, iaca_label: str) -> str:
        """Where IACA ``iaca_label`` alone is published (its issuerAltName)."""
        n = generation(iaca_label)
        return f"{self.public_url}/trust/iaca.pem" if n == 1 else f"{self.public_url}/trust/iaca-{n}.pem"

    # -- reading ------------------------------------------------------------------------

    def _cert(self, row: IssuerKey) -> x509.Certificate:
        cert = self._certs.get(row.label)
        if cert is None:
            cert = x509.load_der_x509_certificate(row.certificate)
            self._certs[row.label] = cert
        return cert

    def _rows(self, session: Session, purpose: str) -> list[IssuerKey]:
        return list(session.scalars(
            select(IssuerKey).where(IssuerKey.purpose == purpose, IssuerKey.label.startswith(
                _LABEL_PREFIX[purpose] + "-")).order_by(IssuerKey.created_at, IssuerKey.label)
        ))

    def _active(self, session: Session, purpose: str, root: ActiveKey | None = None) -> IssuerKey | None:
        """The newest active, unrevoked row of ``purpose`` (issued by ``root`` when given)."""
        rows = [r for r in self._rows(session, purpose) if r.active and r.revoked_at is None
                and (root is None or self._cert(r).issuer == root.certificate.subject)]
        return rows[-1] if rows else None

    def _activekey(self, row: IssuerKey, iaca_label: str | None = None) -> ActiveKey:
        """``row`` ready to sign: its key from the key store (:class:`SignerKeyDestroyed`
        when it was destroyed: :meth:`_certkey` reads the certificate alone)."""
        return ActiveKey(row.label, row.purpose, self._cert(row), CoseSignerAdapter(self._signer(row)), iaca_label)

    def _certkey(self, row: IssuerKey, iaca_label: str | None = None) -> SignerCertificate:
        """``row``'s certificate, read from the registry alone (the key store is not asked)."""
        return SignerCertificate(row.label, row.purpose, self._cert(row), iaca_label, row.key_destroyed_at)

    def _signer(self, row: IssuerKey, what: str = "signs nothing more"):  # noqa: ANN202 - a keystore Signer
        """The key store's signer of ``row``: :class:`SignerKeyDestroyed` once its key was
        destroyed (it ``what``), :class:`MdocKeyError` when the store cannot give it."""
        if row.key_destroyed_at is not None:
            raise SignerKeyDestroyed(f"the key of {row.label} was destroyed at "
                                     f"{row.key_destroyed_at:%Y-%m-%d %H:%M:%S} UTC: it {what}")
        try:
            return self.keystore.signer(row.label)
        except KeyStoreError as exc:
            raise MdocKeyError(f"{row.purpose} key {row.label}: {exc}") from exc

    def _iaca_by_ref(self, session: Session, ref: str | int) -> IssuerKey:
        """The row of IACA generation ``ref`` (its label ``mdoc-iaca-2`` or number 2)."""
        label = ref if isinstance(ref, str) else f"{_LABEL_PREFIX[PURPOSE_IACA]}-{ref}"
        row = next((r for r in self._rows(session, PURPOSE_IACA) if r.label == label), None)
        if row is None:
            raise UnknownIaca(f"no IACA generation {ref!r}")
        return row

    def iaca(self, session: Session, ref: str | int | None = None) -> ActiveKey:
        """IACA generation ``ref`` (its label ``mdoc-iaca-2`` or number 2; None: the
        current one, which must exist), ready to sign: its key is needed
        (:meth:`iaca_certificate_of` reads its certificate alone)."""
        if ref is None:
            row = self._active(session, PURPOSE_IACA)
            if row is None:
                raise MdocKeysMissing("no IACA yet: run issuance once or `mcred export iaca`")
            return self._activekey(row)
        return self._activekey(self._iaca_by_ref(session, ref))

    def iaca_certificate_of(self, session: Session, ref: str | int) -> x509.Certificate:
        """The certificate of IACA generation ``ref`` (label or number), read from the
        registry: published whatever became of its key (revoked, destroyed)."""
        return self._cert(self._iaca_by_ref(session, ref))

    def trusted_iacas(self, session: Session, now: dt.datetime) -> list[x509.Certificate]:
        """The IACAs a reader needs at ``now``, the current one first: it, the staged next
        generation (:meth:`stage_iaca`: readers take it before it vouches for anything), and
        every older generation still valid that issued a signer still valid (an MSO or a
        status list it signed may still be presented), but none revoked (:meth:`revoke_iaca`);
        made when there is none yet."""
        current = self.ensure_iaca_certificate(session, now)
        staged = self.staged_iaca(session, now)
        signers = [self._cert(r) for p in (PURPOSE_DS, PURPOSE_STATUS) for r in self._rows(session, p)]
        out = [current.certificate] + ([self._cert(staged)] if staged is not None else [])
        for row in reversed(self._rows(session, PURPOSE_IACA)):
            cert = self._cert(row)
            if generation(row.label) >= generation(current.label) or not now < cert.not_valid_after_utc \
                    or row.revoked_at is not None:  # revoked (:meth:`revoke_iaca`): out of the bundle
                continue
            if any(s.issuer == cert.subject and now < s.not_valid_after_utc for s in signers):
                out.append(cert)
        return out

    def staged_iaca(self, session: Session, now: dt.datetime) -> IssuerKey | None:
        """The staged next IACA generation (:meth:`stage_iaca`), or None: an inactive,
        unrevoked IACA row of a later generation than the current IACA that can still be
        started: not in its own last ``rollover_margin``, where no document signer is made
        under it (it would vouch for nothing; a rollover makes a new IACA, and another can be
        staged, rather than a rollover refused, naming itself, until it ends)."""
        return self._staged(session, PURPOSE_IACA, now)

    def _staged(self, session: Session, purpose: str, now: dt.datetime) -> IssuerKey | None:
        """The staged next generation of the CA ``purpose`` (IACA, VICAL CA): an inactive,
        unrevoked row of a later generation than the current one, that can still be started
        (not in its own last ``rollover_margin``); None when there is none."""
        current = self._active(session, purpose)
        if current is None:
            return None
        later = [r for r in self._rows(session, purpose)
                 if not r.active and r.revoked_at is None and generation(r.label) > generation(current.label)
                 and now < self._cert(r).not_valid_after_utc - self.config.rollover_margin]
        return max(later, key=lambda r: generation(r.label)) if later else None

    def iaca_certificate(self, session: Session) -> x509.Certificate:
        """The active IACA certificate (the trust anchor readers import)."""
        row = self._active(session, PURPOSE_IACA)
        if row is None:
            raise MdocKeysMissing("no IACA yet: run issuance once or `mcred export iaca`")
        return self._cert(row)

    def certificates(self, session: Session, purpose: str) -> list[x509.Certificate]:
        """Every generation of ``purpose``, oldest first (for verification and the CRL)."""
        return [self._cert(r) for r in self._rows(session, purpose)]

    # -- creating -----------------------------------------------------------------------

    def _key(self, label: str):
        """The key of ``label``, created if absent (an orphan from a lost race is reused)."""
        if self.keystore.has(label):
            return self.keystore.signer(label)
        try:
            return self.keystore.create(label, self.config.key_algorithm)
        except KeyStoreError:
            if self.keystore.has(label):
                return self.keystore.signer(label)
            raise

    def _next_label(self, session: Session, purpose: str) -> str:
        return f"{_LABEL_PREFIX[purpose]}-{len(self._rows(session, purpose)) + 1}"

    def _record(self, session: Session, label: str, purpose: str, cert: x509.Certificate,
                algorithm: str, now: dt.datetime, active: bool = True) -> IssuerKey:
        rows = self._rows(session, purpose)
        won = next((r for r in rows if r.label == label), None)
        if won is not None and not active:  # two stagings at once: the other one staged it
            if purpose == PURPOSE_VICAL_CA:
                raise VicalCaAlreadyStaged(f"the VICAL CA {label} was staged at the same time by another request")
            raise IacaAlreadyStaged(f"the IACA {label} was staged at the same time by another request")
        if won is not None:  # a racing worker recorded this generation first: it is the one
            return won
        for old in rows if active else ():  # a staged IACA or VICAL CA (not active) retires nothing yet
            # one active status-list signer per IACA (each signs its own IACA's lists); one
            # active IACA and one active document signer in all
            if purpose != PURPOSE_STATUS or self._cert(old).issuer == cert.issuer:
                old.active = False
        row = IssuerKey(label=label, purpose=purpose, algorithm=algorithm,
                        certificate=cert.public_bytes(serialization.Encoding.DER), active=active,
                        created_at=now)
        session.add(row)
        session.flush()  # a racing process with the same label fails here and retries
        return row

    def ensure_iaca(self, session: Session, now: dt.datetime) -> ActiveKey:
        """The current IACA ready to sign, made when there is none."""
        row = self._active(session, PURPOSE_IACA)
        if row is not None:
            return self._activekey(row)
        return self._new_iaca(session, now)

    def ensure_iaca_certificate(self, session: Session, now: dt.datetime) -> SignerCertificate:
        """The current IACA's certificate (the key store is not asked), made when there is none."""
        row = self._active(session, PURPOSE_IACA)
        if row is not None:
            return self._certkey(row)
        made = self._new_iaca(session, now)
        return SignerCertificate(made.label, made.purpose, made.certificate)

    def _new_iaca(self, session: Session, now: dt.datetime, active: bool = True) -> ActiveKey:
        label = self._next_label(session, PURPOSE_IACA)
        signer = self._key(label)
        c = self.config
        builder = iaca.iaca_builder(
            signer.public_key(), common_name=f"mcred IACA {generation(label)} (simulated)",
            not_before=now - c.backdate, not_after=now + c.iaca_validity,
            issuer_alt_name_uri=self.iaca_uri_for(label), crl_uri=self.crl_uri_for(label),
            country=c.country, organization=c.organization,
        )
        cert = signer.sign_certificate(builder)
        return self._activekey(self._record(session, label, PURPOSE_IACA, cert, signer.algorithm, now, active))

    def lock_iacas(self, session: Session) -> None:
        """Take the IACA rows (PostgreSQL: ``FOR UPDATE``) and read them afresh: a staging or
        rollover decides on what the one before it committed (a second staging is refused,
        not made a generation further). On SQLite, whose driver runs a SELECT outside any
        transaction until the first write, a write that changes nothing comes first: it takes
        the database's write lock, so the second staging waits for the first to commit and
        then reads it (without it, both read "nothing staged" and made two generations)."""
        self._lock(session, PURPOSE_IACA)

    def _lock(self, session: Session, purpose: str) -> None:
        """Take the rows of ``purpose`` and read them afresh (:meth:`lock_iacas`)."""
        if session.get_bind().dialect.name == "sqlite":
            session.execute(update(IssuerKey).where(IssuerKey.purpose == purpose)
                            .values(active=IssuerKey.active).execution_options(synchronize_session=False))
        session.scalars(select(IssuerKey).where(IssuerKey.purpose == purpose)
                        .with_for_update().execution_options(populate_existing=True)).all()

    def stage_iaca(self, session: Session, now: dt.datetime) -> ActiveKey:
        """Make the next IACA generation without starting it: it joins the trust bundle
        (:meth:`trusted_iacas`) while the current IACA and its signers go on issuing, so
        readers can take it before the first MSO it vouches for; :meth:`rollover_iaca`
        starts it. One staged generation at a time (:class:`IacaAlreadyStaged`); none before
        the first IACA exists (it is made at first use, and trusted from its start)."""
        self.lock_iacas(session)
        current = self._active(session, PURPOSE_IACA)
        if current is None:
            raise MdocKeysMissing("no IACA yet: the first one is made at the first issuance (or mcred "
                                  "export iaca); a next generation can be staged once it exists")
        staged = self.staged_iaca(session, now)
        if staged is not None:
            raise IacaAlreadyStaged(
                f"the IACA {staged.label} is already staged (since {staged.created_at:%Y-%m-%d %H:%M} UTC): "
                "roll over to it (mcred mdoc iaca rollover, or POST /trust/iaca-rollover) before staging another")
        return self._new_iaca(session, now, active=False)

    def rollover_iaca(self, session: Session, now: dt.datetime) -> tuple[ActiveKey, ActiveKey, ActiveKey]:
        """Start the next IACA generation now, with its document signer and status-list
        signer (one transaction: no MSO is signed under an IACA without its signers): the
        staged one (:meth:`stage_iaca`) when there is one, which readers may already hold,
        else a new one made here. The older IACA is retired, not revoked: its signers' MSOs
        and status lists stay valid, its CRL and its lists are still published (module
        docstring). Readers need the new IACA (``/trust/iaca.pem``, ``mcred export iaca``)
        before the first MSO it vouches for."""
        self.lock_iacas(session)
        return self._start_next(session, now, self.staged_iaca(session, now))

    def _start_next(self, session: Session, now: dt.datetime,
                    staged: IssuerKey | None) -> tuple[ActiveKey, ActiveKey, ActiveKey]:
        """The next IACA generation started now (the only active one), with its document
        signer and status-list signer: ``staged`` when given, else a new one made here (a
        rollover, and the revocation of the current IACA)."""
        if staged is None:
            root = self._new_iaca(session, now)
        else:
            for row in self._rows(session, PURPOSE_IACA):
                row.active = row.label == staged.label
            session.flush()
            root = self._activekey(staged)
        return (root, self._ensure_signer(session, PURPOSE_DS, now, root=root),
                self._ensure_signer(session, PURPOSE_STATUS, now, root=root))

    def issued_by(self, session: Session, root: IssuerKey,
                  purposes: tuple[str, ...] = (PURPOSE_DS,)) -> list[IssuerKey]:
        """The signer rows of ``purposes`` whose certificates IACA ``root`` issued, oldest first."""
        subject = self._cert(root).subject
        return [r for p in purposes for r in self._rows(session, p) if self._cert(r).issuer == subject]

    def _ensure_signer(self, session: Session, purpose: str, now: dt.datetime,
                       force: bool = False, root: ActiveKey | SignerCertificate | None = None) -> ActiveKey:
        """The active signer of ``purpose`` under the IACA ``root`` (default: the current
        IACA; else as the caller just read it in ``session``), made when missing, stale or
        ``force``. In the IACA's last ``rollover_margin`` a document signer is refused (its
        MSOs would be cut short: roll the IACA over), while a status-list signer is kept to
        its own end, or made to the IACA's end: the lists of its mdocs are published while
        the IACA lasts. Past the IACA's end, :class:`IacaEnded`."""
        if root is None:
            root = self.ensure_iaca_certificate(session, now)  # its key only to certify a new signer
        row = self._active(session, purpose, root)
        if row is not None and not force:
            cert = self._cert(row)
            fresh = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc - self.config.rollover_margin
            if fresh:
                return self._activekey(row, root.label)
        end = min(now + self.config.signer_validity, root.certificate.not_valid_after_utc)
        if end - now <= self.config.rollover_margin:
            if not now < root.certificate.not_valid_after_utc:
                raise IacaEnded(f"the IACA {root.label} ended {root.certificate.not_valid_after_utc}: "
                                "it signs nothing more")
            if purpose != PURPOSE_STATUS:
                raise MdocKeyError(_closing(root.label, root.certificate.not_valid_after_utc))
            if row is not None and not force and \
                    self._cert(row).not_valid_before_utc <= now < self._cert(row).not_valid_after_utc:
                return self._activekey(row, root.label)  # kept to its end, as the IACA's lists
            # else a status-list signer to the IACA's end, however short: its lists are
            # published while the IACA lasts
        # the IACA's key first: no key is made for a signer its IACA (its key destroyed) could not certify
        iaca_signer = self._signer(session.get(IssuerKey, root.label), "certifies no new signer")
        self._refuse_sealed(session, root.label, "certifies no new signer")
        label = self._next_label(session, purpose)
        signer = self._key(label)
        make = iaca.document_signer_builder if purpose == PURPOSE_DS else iaca.status_list_signer_builder
        what = "Document Signer" if purpose == PURPOSE_DS else "Status List Signer"
        builder = make(
            signer.public_key(), root.certificate,
            common_name=f"mcred {what} {generation(label)} (simulated)",
            not_before=max(now - self.config.backdate, root.certificate.not_valid_before_utc), not_after=end,
            crl_uri=self.crl_uri_for(root.label), organization=self.config.organization,
        )
        cert = iaca_signer.sign_certificate(builder)
        return self._activekey(self._record(session, label, purpose, cert, signer.algorithm, now), root.label)

    def issuance_refusal(self, session: Session, now: dt.datetime) -> str | None:
        """Why no MSO can be signed at ``now`` (:func:`issuance_refusal`), or None."""
        return issuance_refusal(session, now, self.config.rollover_margin)

    def document_signer(self, session: Session, now: dt.datetime) -> ActiveKey:
        """The DS to sign MSOs with at ``now``: rolled over when near the end of its validity."""
        return self._ensure_signer(session, PURPOSE_DS, now)

    def status_signer(self, session: Session, now: dt.datetime, iaca_label: str | None = None) -> ActiveKey:
        """The status-list signer at ``now`` (same rollover rule) under IACA ``iaca_label``
        (the IACA of the list's mdocs; None: the current IACA)."""
        root = None
        if iaca_label is not None:  # read without its key: a revoked one is refused as such
            row = self._iaca_by_ref(session, iaca_label)
            self._refuse_withdrawn(session, row.label, "signs no status list")
            root = self._certkey(row)
        return self._ensure_signer(session, PURPOSE_STATUS, now, root=root)

    def rollover_ds(self, session: Session, now: dt.datetime) -> ActiveKey:
        """Start a new DS generation now (planned rollover or a suspected key)."""
        return self._ensure_signer(session, PURPOSE_DS, now, force=True)

    def setup(self, session: Session, now: dt.datetime) -> tuple[ActiveKey, ActiveKey | None, ActiveKey | None]:
        """Make sure the IACA, a DS and a status-list signer exist (idempotent), as far as
        the current IACA can still make them: in its last ``rollover_margin`` no DS (None:
        issuance refuses, naming the rollover), past its end neither signer. Every TSM run
        (``mcred.provision.issuer_port``) and the operator's signer commands, the IACA
        rollover first, call this: refusing them there would stop JPKI work and the very
        rollover the refusal asks for."""
        root = self.ensure_iaca(session, now)  # read once for both signers
        end = root.certificate.not_valid_after_utc
        ds = self._ensure_signer(session, PURPOSE_DS, now, root=root) \
            if end - now > self.config.rollover_margin else None
        status = self._ensure_signer(session, PURPOSE_STATUS, now, root=root) if now < end else None
        return root, ds, status

    # -- the VICAL provider's keys (Annex C.1.7) ----------------------------------------

    def vical_signer(self, session: Session, now: dt.datetime) -> tuple[ActiveKey, x509.Certificate]:
        """The VICAL signer to sign with at ``now`` and its VICAL CA (the anchor readers trust
        for this installation's VICALs), each made when missing: the CA for ten years, staged
        ahead and started in its last months by itself (:meth:`_vical_ca_at`), the signer for
        ``signer_validity`` within it, replaced in its last ``rollover_margin`` as a document
        signer is. A revoked signer (:meth:`revoke_vical_signer`) signs nothing more: the next
        generation is made in its place. So is a signer made before VICAL signers carried the
        VICAL CA's CRL distribution point (a reader could not look it up): each signer made
        carries it (:meth:`vical_crl_uri_for`)."""
        c = self.config
        ca_row = self._vical_ca_at(session, now)
        ca = self._cert(ca_row)
        row = next((r for r in reversed(self._rows(session, PURPOSE_VICAL))
                    if r.active and r.revoked_at is None and self._cert(r).issuer == ca.subject), None)
        if row is None or not self._cert(row).not_valid_before_utc <= now <= \
                self._cert(row).not_valid_after_utc - c.rollover_margin or crl_url(self._cert(row)) is None:
            label = self._next_label(session, PURPOSE_VICAL)
            key = self._key(label)
            cert = self._signer(ca_row, "certifies no new VICAL signer").sign_certificate(iaca.vical_signer_builder(
                key.public_key(), ca, common_name=f"mcred VICAL signer {generation(label)} (simulated)",
                not_before=max(now - c.backdate, ca.not_valid_before_utc),
                not_after=min(now + c.signer_validity, ca.not_valid_after_utc),
                crl_uri=self.vical_crl_uri_for(ca_row.label), organization=c.organization))
            row = self._record(session, label, PURPOSE_VICAL, cert, key.algorithm, now)
        return self._activekey(row), ca

    def _vical_ca_due(self, session: Session, row: IssuerKey, now: dt.datetime) -> str | None:
        """What the current VICAL CA ``row`` calls for at ``now``: ``"rollover"`` in its last
        ``rollover_margin``, ``"stage"`` in the ``vical_ca_notice`` before that while no next
        generation is staged, else None."""
        c = self.config
        rollover_at = self._cert(row).not_valid_after_utc - c.rollover_margin
        if not now < rollover_at:
            return "rollover"
        if not now < rollover_at - c.vical_ca_notice and self.staged_vical_ca(session, now) is None:
            return "stage"
        return None

    def _vical_ca_at(self, session: Session, now: dt.datetime) -> IssuerKey:
        """The current VICAL CA at ``now``, made when there is none, after what its last months
        call for (:meth:`_vical_ca_due`), so that readers following ``/trust/vical-ca.pem`` hold
        the next CA before the first VICAL under it: in the ``vical_ca_notice`` before its last
        ``rollover_margin`` the next generation is staged by itself (when none is); in its last
        ``rollover_margin`` the staged generation is started (a new one made when none is
        staged: readers had no warning). Both are audited (``mdoc.vical-ca.stage``,
        ``mdoc.vical-ca.rollover``, ``automatic`` in their detail); the rows are taken first
        (:meth:`_lock`), so two processes finding the same thing due do it once."""
        row = self._active(session, PURPOSE_VICAL_CA)
        if row is None:
            return self._new_vical_ca(session, now)
        if self._vical_ca_due(session, row, now) is None:
            return row
        self._lock(session, PURPOSE_VICAL_CA)  # read again after whoever held them
        row = self._active(session, PURPOSE_VICAL_CA)
        if row is None:  # none after all: made as at first use
            return self._new_vical_ca(session, now)
        due = self._vical_ca_due(session, row, now)
        if due == "stage":
            staged = self._new_vical_ca(session, now, active=False)
            session.add(AuditEvent(actor="issuer", action="mdoc.vical-ca.stage", subject=staged.label, detail={
                "current": row.label, "serial": format(self._cert(staged).serial_number, "x"), "automatic": True}))
            session.flush()
        elif due == "rollover":
            staged = self.staged_vical_ca(session, now)
            new = self._start_vical_ca(session, now, staged)
            session.add(AuditEvent(actor="issuer", action="mdoc.vical-ca.rollover", subject=new.label, detail={
                "previous": row.label, "serial": format(self._cert(new).serial_number, "x"), "compromised": False,
                "automatic": True, "staged_since": staged.created_at.isoformat() if staged is not None else None}))
            session.flush()
            return new
        return row

    def _new_vical_ca(self, session: Session, now: dt.datetime, active: bool = True) -> IssuerKey:
        """The next VICAL CA generation (``mdoc-vical-ca-N``, the reader CA's profile, for
        ``iaca_validity``), made now in the key store and recorded as the current one (the
        one before it retired: :meth:`_record`), or staged (``active`` False: it retires
        nothing, certifies nothing, and is published after the current one)."""
        c = self.config
        label = self._next_label(session, PURPOSE_VICAL_CA)
        key = self._key(label)
        cert = key.sign_certificate(iaca.vical_ca_builder(
            key.public_key(), common_name=f"mcred VICAL CA {generation(label)} (simulated)",
            not_before=now - c.backdate, not_after=now + c.iaca_validity, country=c.country,
            organization=c.organization))
        return self._record(session, label, PURPOSE_VICAL_CA, cert, key.algorithm, now, active)

    def _start_vical_ca(self, session: Session, now: dt.datetime, staged: IssuerKey | None) -> IssuerKey:
        """The next VICAL CA generation made current now: ``staged`` (the very certificate
        readers took from /trust/vical-ca.pem) when given, else a new one made here."""
        if staged is None:
            return self._new_vical_ca(session, now)
        for row in self._rows(session, PURPOSE_VICAL_CA):
            row.active = row.label == staged.label
        session.flush()
        return staged

    def staged_vical_ca(self, session: Session, now: dt.datetime) -> IssuerKey | None:
        """The staged next VICAL CA generation (:meth:`stage_vical_ca`, or staged by itself in
        the current CA's last months), or None: an inactive, unrevoked VICAL CA row of a later
        generation than the current one that can still be started (as :meth:`staged_iaca`)."""
        return self._staged(session, PURPOSE_VICAL_CA, now)

    def stage_vical_ca(self, session: Session, now: dt.datetime) -> IssuerKey:
        """Make the next VICAL CA generation without starting it: published in
        ``/trust/vical-ca.pem`` (:meth:`vical_cas`, right after the current CA) at once, while
        the current CA and its signer go on signing the VICAL, so readers following the VICAL
        take the new anchor before the first VICAL under it; :meth:`rollover_vical_ca` (or the
        automatic rollover in the current CA's last ``rollover_margin``) starts it. One staged
        generation at a time (:class:`VicalCaAlreadyStaged`); none before the first VICAL CA
        exists (:class:`UnknownVicalCa`: it is made with the first VICAL, and trusted from its
        start). The VICAL CA rows are taken first (:meth:`_lock`), so a second staging waits for
        the first and is refused."""
        self._lock(session, PURPOSE_VICAL_CA)
        current = self._active(session, PURPOSE_VICAL_CA)
        if current is None:
            raise UnknownVicalCa("no VICAL CA yet: the first is made with the first VICAL (mcred export vical, "
                                 "/trust/vical); a next generation can be staged once it exists")
        staged = self.staged_vical_ca(session, now)
        if staged is not None:
            raise VicalCaAlreadyStaged(
                f"the VICAL CA {staged.label} is already staged (in /trust/vical-ca.pem since "
                f"{staged.created_at:%Y-%m-%d %H:%M} UTC): roll over to it (mcred mdoc vical-ca rollover, or POST "
                "/trust/vical-ca-rollover; it also starts by itself in the current CA's last months) before "
                "staging another")
        return self._new_vical_ca(session, now, active=False)

    def vical_cas(self, session: Session, now: dt.datetime) -> list[x509.Certificate]:
        """The VICAL CAs a reader trusts for this installation's VICALs: the current one, the
        staged next generation (:meth:`stage_vical_ca`: readers take it before any VICAL under
        it), and each older one while it vouches (:meth:`vical_ca_vouching`); made when there
        is none."""
        _signer, current = self.vical_signer(session, now)
        staged = self.staged_vical_ca(session, now)
        out = [current] + ([self._cert(staged)] if staged is not None else [])
        for row in reversed(self._rows(session, PURPOSE_VICAL_CA)):
            if self._cert(row) != current and self.vical_ca_vouching(session, row, now):
                out.append(self._cert(row))
        return out

    def vical_ca_vouching(self, session: Session, row: IssuerKey, now: dt.datetime) -> bool:
        """Whether the older VICAL CA ``row`` is still one readers trust: not withdrawn
        (:meth:`rollover_vical_ca` with ``compromised``), within its validity, and certifying a
        VICAL signer valid and not revoked (a VICAL it signed may still be presented)."""
        cert = self._cert(row)
        if row.revoked_at is not None or not now < cert.not_valid_after_utc:
            return False
        return any(self._cert(r).issuer == cert.subject and now < self._cert(r).not_valid_after_utc
                   for r in self._rows(session, PURPOSE_VICAL) if r.revoked_at is None)

    def rollover_vical_ca(self, session: Session, now: dt.datetime, *, compromised: bool = False,
                          fresh: bool = False) -> VicalCaRollover:
        """Start the next VICAL CA generation now, with a VICAL signer under it (one
        transaction; the caller re-signs the VICAL in it, ``MdocService.rollover_vical_ca``):
        the staged one (:meth:`stage_vical_ca`) when there is one, the very certificate readers
        following ``/trust/vical-ca.pem`` took since its staging, else a new one made here
        (readers had no warning: ``staged_since`` None).

        Without ``compromised`` the CA before is retired, not withdrawn: it stays among the
        VICAL anchors (:meth:`vical_cas`) while a signer it certified is valid and not revoked,
        its CRL is published, and its signer is retired (a newer one signs). With
        ``compromised`` (its key, or that of a signer readers cannot look up, known or
        suspected in other hands) it is withdrawn: recorded revoked (cACompromise), out of the
        VICAL anchors at once, and its key signs nothing more: no signer certificate and no CRL
        (:class:`VicalCaWithdrawn`: a CA cannot be listed on its own CRL, and a CRL its key
        signs would prove nothing once the key is in other hands, RFC 5280 6.3.3). Each VICAL
        signer it certified that has not expired is revoked with it (cACompromise, recorded on
        its row; no CRL lists them: only the withdrawn key could sign one).

        A compromise starts the staged CA too: its key is another key, which never signed
        anything, so a leak of the current CA's key (or of one of its signers') says nothing of
        it, and readers that took /trust/vical-ca.pem since the staging take the new VICAL at
        once. ``fresh`` (with ``compromised`` only, :class:`VicalCaRolloverRefused` otherwise)
        is for a compromise of what the keys share (the key store, its passphrase, the host, the
        token): the staged CA is withdrawn with the current one (out of /trust/vical-ca.pem,
        cACompromise) and a new generation made. :class:`UnknownVicalCa` when there is no VICAL
        CA yet (the first is made with the first VICAL)."""
        if fresh and not compromised:
            raise VicalCaRolloverRefused(
                "fresh (a new VICAL CA instead of the staged one, which is withdrawn too) is for a compromise of "
                "the provider's keys: give it with compromised (mcred mdoc vical-ca rollover --compromised "
                "--fresh); a planned rollover starts the staged CA readers already hold")
        self._lock(session, PURPOSE_VICAL_CA)
        old = self._active(session, PURPOSE_VICAL_CA)
        if old is None:
            raise UnknownVicalCa("no VICAL CA yet: the first is made with the first VICAL (mcred export vical, "
                                 "/trust/vical); there is nothing to roll over")
        staged = self.staged_vical_ca(session, now)
        withdrawn_staged = None
        if staged is not None and fresh:  # its key may be in other hands as well: out of trust with the other
            staged.revoked_at, staged.revocation_reason = now, "cACompromise"
            withdrawn_staged, staged = staged.label, None
            session.flush()
        subject = self._cert(old).subject
        under = [r for r in self._rows(session, PURPOSE_VICAL) if self._cert(r).issuer == subject]
        new = self._start_vical_ca(session, now, staged)  # old is retired by it (active False)
        revoked = []
        if compromised:
            old.revoked_at, old.revocation_reason = now, "cACompromise"
            for row in under:
                if row.revoked_at is None and now < self._cert(row).not_valid_after_utc:
                    row.revoked_at, row.revocation_reason, row.active = now, "cACompromise", False
                    revoked.append(row.label)
            session.flush()
        retired = [r.label for r in under if r.active and r.revoked_at is None]
        signer, _ca = self.vical_signer(session, now)  # under the new CA: the one before is retired by it
        return VicalCaRollover(old, new, signer, tuple(revoked), tuple(retired),
                               staged.created_at if staged is not None else None, withdrawn_staged)

    def vical_ca(self, session: Session, ref: int) -> IssuerKey:
        """VICAL CA generation ``ref`` (its number), :class:`UnknownVicalCa` when there is none."""
        label = f"{_LABEL_PREFIX[PURPOSE_VICAL_CA]}-{ref}"
        row = next((r for r in self._rows(session, PURPOSE_VICAL_CA) if r.label == label), None)
        if row is None:
            raise UnknownVicalCa(f"no VICAL CA generation {ref!r}")
        return row

    def revoke_vical_signer(self, session: Session, ref: str, reason: str,
                            now: dt.datetime) -> tuple[IssuerKey, bool, str | None]:
        """Revoke the VICAL signer ``ref`` names (label or serial, :meth:`signer_row`), as
        :meth:`revoke_signer` revokes a document signer (the same reasons, the same
        idempotence, keyCompromise amending another reason): recorded on its row, listed on
        its VICAL CA's next CRL (:meth:`vical_ca_crl`; every stored CRL is marked stale), and
        never used to sign again: :meth:`vical_signer` makes the next generation in its place
        (the caller re-signs the VICAL in the same transaction, ``MdocService.revoke_vical_signer``)."""
        return self.revoke_signer(session, ref, reason, now, (PURPOSE_VICAL,))

    def vical_ca_crl(self, session: Session, now: dt.datetime, ca: int = 1, *,
                     next_update: dt.timedelta = dt.timedelta(hours=24)) -> x509.CertificateRevocationList:
        """The CRL of VICAL CA generation ``ca`` (RFC 5280 5, signed through the key store):
        every revoked VICAL signer it certified, with its revocation time and reason, until it
        has been on one CRL built after its end (as :meth:`iaca_crl`). Stored beside the IACA
        CRLs (``mdoc_iaca_crls``, keyed by the CA's label ``mdoc-vical-ca-N``), rebuilt when a
        revocation marked it stale or less than :data:`CRL_REFRESH` remains before its
        nextUpdate; its number only grows. A CA past its notAfter issues none
        (:class:`VicalCaEnded`: every signer it certified ended with it)."""
        row = self.vical_ca(session, ca)
        cert = self._cert(row)
        if row.revoked_at is not None:
            raise VicalCaWithdrawn(
                f"the VICAL CA {row.label} was withdrawn ({row.revocation_reason}) at "
                f"{row.revoked_at:%Y-%m-%d %H:%M:%S} UTC: its key signs no CRL any more (readers trust the VICAL "
                "CAs of /trust/vical-ca.pem, which no longer lists it)")
        final = self.final_crl(session, row.label)
        if final is not None:  # its key went (or goes): the last it signed, for good, also past its end
            return self._crl(final.body)
        if not now < cert.not_valid_after_utc:
            raise VicalCaEnded(f"the VICAL CA {row.label} ended {cert.not_valid_after_utc}: "
                               "no CRL is issued for it any more")
        return self._stored_crl(session, row.label, cert, self._entries(session, row.label), now, next_update)

    def _stored_crl(self, session: Session, label: str, cert: x509.Certificate, revoked,  # noqa: ANN001
                    now: dt.datetime, next_update: dt.timedelta | None) -> x509.CertificateRevocationList:
        """The CRL of CA ``label`` kept in ``mdoc_iaca_crls``: the stored one while it is not
        stale and more than :data:`CRL_REFRESH` from its nextUpdate, else one built now (its
        entries ``revoked(thisUpdate of the one before, or None)``), signed by the CA's key
        through the key store, with a number above the stored one's and at least the time.
        A final CRL stored (:meth:`seal`) is served whatever else: nothing is signed after it.
        ``next_update`` None: the final CRL itself, signed now unless one is stored (every
        certificate the CA revoked, expired or not; nextUpdate :data:`protocols.crl.NO_NEXT_UPDATE`)."""
        stored = session.get(IacaCrl, label)
        if _final(stored) or (next_update is not None and stored is not None and not stored.stale
                              and stored.next_update - now > CRL_REFRESH):
            return self._crl(stored.body)
        stored = session.get(IacaCrl, label, with_for_update=True)
        if stored is not None:
            session.refresh(stored)
            if _final(stored) or (next_update is not None and not stored.stale
                                  and stored.next_update - now > CRL_REFRESH):
                return self._crl(stored.body)  # another process rebuilt (or sealed) it meanwhile
        this_update = now.astimezone(dt.UTC).replace(microsecond=0)
        number = max((stored.crl_number + 1) if stored else 1, int(this_update.timestamp()))
        if next_update is None:  # final: every certificate it revoked, and says so (expiredCertsOnCRL)
            until, entries, since = ca_crl.NO_NEXT_UPDATE, revoked(None), cert.not_valid_before_utc
        else:
            until, since = this_update + next_update, None
            entries = revoked(min(stored.this_update, now) if stored else None)
        builder = ca_crl.crl_builder(cert, number=number, this_update=this_update, next_update=until,
                                     revoked=entries, expired_certs_since=since)
        crl = self._signer(session.get(IssuerKey, label), "issues no CRL any more").sign_crl(builder)
        body = crl.public_bytes(serialization.Encoding.DER)
        if stored is None:
            stored = IacaCrl(iaca_label=label)
            session.add(stored)
        stored.crl_number, stored.body, stored.stale = number, body, False
        stored.this_update, stored.next_update = this_update, until
        session.flush()
        return self._crl(body)

    # -- a CA's final CRL (specs/revocation.md, "A CA's final CRL") ------------------------

    def final_crl(self, session: Session, label: str) -> IacaCrl | None:
        """The final CRL CA ``label`` (an IACA or a VICAL CA) signed before its key went
        (:meth:`seal`), as stored, or None."""
        stored = session.get(IacaCrl, label)
        return stored if _final(stored) else None

    def _refuse_sealed(self, session: Session, label: str, what: str) -> None:
        """:class:`SignerKeyDestroyed` when CA ``label`` signed its final CRL: its key is being
        destroyed (or was), it ``what`` (a signer it certified now would be on no CRL)."""
        final = self.final_crl(session, label)
        if final is not None:
            raise SignerKeyDestroyed(f"{label} signed its final CRL at {final.this_update:%Y-%m-%d %H:%M:%S} UTC "
                                     f"(its key is destroyed): it {what}")

    def _final_of(self, row: IssuerKey, stored: IacaCrl) -> FinalCrl:
        url = self.crl_uri_for(row.label) if row.purpose == PURPOSE_IACA else self.vical_crl_uri_for(row.label)
        return FinalCrl(url.removeprefix(self.public_url), stored.crl_number, stored.this_update,
                        len(self._crl(stored.body)))

    def seal(self, session: Session, row: IssuerKey, now: dt.datetime, *, actor: str = "issuer") -> FinalCrl | None:
        """The final CRL of CA ``row`` (an IACA or a VICAL CA) whose key is to be destroyed now,
        signed now unless it signed one already (a destruction interrupted after it: never
        signed twice): every certificate it revoked, expired or not, thisUpdate ``now`` (after
        every certificate it certified has ended or been revoked: :meth:`key_duty`), cRLNumber
        above any before, nextUpdate :data:`protocols.crl.NO_NEXT_UPDATE`; stored in
        ``mdoc_iaca_crls`` and served from then on for good (:meth:`iaca_crl`,
        :meth:`vical_ca_crl`), past the CA's end too. An IACA's status-list signers that have
        not expired (kept to its end for the lists of its mdocs, which have all ended: no
        document signer it certified is valid) are revoked first, cessationOfOperation, so that
        the final CRL lists them (audited ``mdoc.signer.revoke``); their lists answer 410
        from then on. From then on the CA certifies nothing (:meth:`_refuse_sealed`).

        None, nothing signed: for another key; for a CA revoked or withdrawn (its CRL is not
        served, ``410`` ``iaca-withdrawn`` / ``vical-ca-withdrawn``: a CRL signed by a key that
        may be in other hands proves nothing, RFC 5280 6.3.3); for one past its end (it signs
        nothing then: ``iaca-ended``, ``vical-ca-ended``); for one whose key the store no
        longer holds (a destruction whose record was rolled back: the last CRL it signed is
        served as before, to an hour before its nextUpdate)."""
        if row.purpose not in (PURPOSE_IACA, PURPOSE_VICAL_CA) or row.revoked_at is not None:
            return None
        final = self.final_crl(session, row.label)
        if final is not None:
            return self._final_of(row, final)
        cert = self._cert(row)
        if not now < cert.not_valid_after_utc or not self.keystore.has(row.label):
            return None
        if row.purpose == PURPOSE_IACA:
            retired = []
            for signer in self.issued_by(session, row, (PURPOSE_STATUS,)):
                if signer.revoked_at is None and now < self._cert(signer).not_valid_after_utc:
                    signer.revoked_at, signer.revocation_reason, signer.active = now, "cessationOfOperation", False
                    retired.append(signer)
                    session.add(AuditEvent(actor=actor, action="mdoc.signer.revoke", subject=signer.label, detail={
                        "serial": format(self._cert(signer).serial_number, "x"), "reason": "cessationOfOperation",
                        "purpose": PURPOSE_STATUS, "final_crl_of": row.label}))
            if retired:
                lists = select(StatusList.id).where(StatusList.iaca_label == row.label)
                for model in (StatusListToken, IdentifierListToken):
                    session.execute(delete(model).where(model.list_id.in_(lists))
                                    .execution_options(synchronize_session=False))
            session.flush()
        self._stored_crl(session, row.label, cert, self._entries(session, row.label), now, None)
        return self._final_of(row, self.final_crl(session, row.label))

    # -- revocation of the IACA's signers (RFC 5280 5.3.1 reasons) --------------------

    def signer_row(self, session: Session, ref: str,
                   purposes: tuple[str, ...] = (PURPOSE_DS,)) -> IssuerKey:
        """The signer ``ref`` names: its label (``mdoc-ds-2``) or its certificate serial in
        hex (:func:`protocols.certs.parse_serial`: as openssl or the listings print it)."""
        rows = [r for p in purposes for r in self._rows(session, p)]
        for row in rows:
            if row.label == ref:
                return row
        try:
            serial = parse_serial(ref)
        except SerialError:
            serial = None
        for row in rows:
            if serial is not None and self._cert(row).serial_number == serial:
                return row
        names = {PURPOSE_DS: "document signer", PURPOSE_STATUS: "status list signer", PURPOSE_VICAL: "VICAL signer"}
        raise UnknownSigner(f"no {' or '.join(names.get(p, p) for p in purposes)} with label or serial {ref!r}")

    def revoke_signer(self, session: Session, ref: str, reason: str, now: dt.datetime,
                      purposes: tuple[str, ...] = (PURPOSE_DS,)) -> tuple[IssuerKey, bool, str | None]:
        """Revoke a signer certificate issued by the IACA: recorded on its ``issuer_keys``
        row, listed on the next IACA CRL, and never used to sign again (a revoked active
        signer is replaced by a new generation on next use). Revoking a status-list signer
        also drops every stored Status / Identifier List Token, which it signed: the next
        request rebuilds each one under the new generation, so readers that check the IACA
        CRL are not left with lists they must refuse. Returns ``(row, changed, reason it
        was revoked for before this call or None)``. Idempotent: a second revocation changes
        nothing and returns ``(row, False, its reason)``, but for keyCompromise asked of a
        signer revoked for another reason, which amends it (its CRL entry's reason becomes
        keyCompromise, its revocation time stays: a reader that lets an MSO signed before a
        superseded signer's revocation stand must refuse it once the key is known
        compromised; RFC 5280 lets a later CRL say so) and returns ``(row, True, the reason
        it had)``."""
        if reason not in SIGNER_REVOCATION_REASONS:
            raise SignerRevocationError(
                f"reason {reason!r}: use one of {', '.join(SIGNER_REVOCATION_REASONS)} "
                "(a signer is not put on hold)")
        row = self.signer_row(session, ref, purposes)
        session.refresh(row, with_for_update=True)
        if row.revoked_at is not None:
            previous = row.revocation_reason
            # one revoked with its withdrawn VICAL CA (cACompromise) is revoked for a compromise already
            if reason != "keyCompromise" or previous in COMPROMISE_REASONS:
                return row, False, previous
            row.revocation_reason = reason  # amended: the lists it signed were dropped at its revocation
            session.execute(update(IacaCrl).values(stale=True).execution_options(synchronize_session=False))
            session.flush()
            return row, True, previous
        row.revoked_at, row.revocation_reason, row.active = now, reason, False
        session.execute(update(IacaCrl).values(stale=True)
                        .execution_options(synchronize_session=False))
        if row.purpose == PURPOSE_STATUS:
            for model in (StatusListToken, IdentifierListToken):
                session.execute(delete(model).execution_options(synchronize_session=False))
        session.flush()
        return row, True, None

    # -- an IACA revoked ------------------------------------------------------------------

    def iaca_row(self, session: Session, ref: str | int) -> IssuerKey:
        """The IACA generation ``ref`` names: its label (``mdoc-iaca-2``), its number (2) or
        its certificate serial in hex (as ``mcred mdoc iaca list`` and openssl print it)."""
        text = str(ref).strip()
        label = f"{_LABEL_PREFIX[PURPOSE_IACA]}-{text}" if text.isdigit() and len(text) <= 4 else text
        try:
            return self.signer_row(session, label, (PURPOSE_IACA,))
        except UnknownSigner:
            raise UnknownIaca(f"no IACA generation with number, label or serial {ref!r} "
                              "(mcred mdoc iaca list shows them)") from None

    def _refuse_withdrawn(self, session: Session, label: str, what: str) -> None:
        """:class:`IacaWithdrawn` when IACA ``label`` was revoked: it ``what`` any more."""
        row = session.get(IssuerKey, label)
        if row is not None and row.revoked_at is not None:
            raise IacaWithdrawn(
                f"the IACA {label} was revoked ({row.revocation_reason}) at {row.revoked_at:%Y-%m-%d %H:%M:%S} "
                f"UTC and is out of the trust bundle and the VICAL: it {what} any more")

    def revoke_iaca(self, session: Session, ref: str | int, reason: str, now: dt.datetime) -> IacaRevocation:
        """Revoke IACA generation ``ref`` (:meth:`iaca_row`): a root cannot be listed on a CRL
        (its own would be signed by the very key in question), so it is taken out of trust:
        out of :meth:`trusted_iacas` at once, and so of ``/trust/iaca.pem`` and the next VICAL
        (a reader that takes the VICAL drops it at its next reload, refusing every MSO and
        status list under it). Its key signs nothing more (:class:`IacaWithdrawn`: no signer,
        no CRL, no status list), its document and status-list signers are retired with it,
        and the stored tokens of its lists are dropped (their lists answer 410 from now on).

        Revoking the current IACA starts the next generation in the same transaction, with
        its document signer and status-list signer, so issuance never stops: the staged one
        when there is one (readers that took the bundle since its staging trust it already:
        what staging ahead buys in an emergency), else a new one that readers need at once.
        The valid mdocs under the revoked IACA stay in the registry as they are; their phones
        need new MSOs (``mcred mdoc reissue --signer``). A staged or retired IACA may be
        revoked as well (nothing else changes).

        Idempotent: a revoked IACA is left as it is (``changed`` False), but for a compromise
        (cACompromise or keyCompromise) asked of one revoked for another reason, which amends
        the recorded reason (its time kept)."""
        if reason not in IACA_REVOCATION_REASONS:
            raise SignerRevocationError(
                f"reason {reason!r}: use one of {', '.join(IACA_REVOCATION_REASONS)} "
                "(cACompromise when the IACA's key is known or suspected compromised)")
        self.lock_iacas(session)
        row = self.iaca_row(session, ref)
        if row.revoked_at is not None:
            previous = row.revocation_reason
            if reason not in COMPROMISE_REASONS or previous in COMPROMISE_REASONS:
                return IacaRevocation(row, False)  # nothing amended: no amended_from
            row.revocation_reason = reason
            session.flush()
            return IacaRevocation(row, True, previous)
        current = self._active(session, PURPOSE_IACA)
        was_current = current is not None and current.label == row.label
        staged = self.staged_iaca(session, now) if was_current else None  # read while row is current
        row.revoked_at, row.revocation_reason, row.active = now, reason, False
        retired = []
        for signer in self.issued_by(session, row, (PURPOSE_DS, PURPOSE_STATUS)):
            if signer.active:
                signer.active = False
                retired.append(signer.label)
        lists = select(StatusList.id).where(StatusList.iaca_label == row.label)
        for model in (StatusListToken, IdentifierListToken):
            session.execute(delete(model).where(model.list_id.in_(lists))
                            .execution_options(synchronize_session=False))
        session.flush()
        if not was_current:
            return IacaRevocation(row, True, None, retired_signers=tuple(retired))
        root, ds, status = self._start_next(session, now, staged)
        return IacaRevocation(row, True, None, root, staged.created_at if staged is not None else None,
                              ds, status, tuple(retired))

    # -- a signer's key destroyed ---------------------------------------------------------

    #: the purposes whose keys :meth:`destroy_key` takes (the mdoc PKI's: never a JPKI or TSA key)
    DESTROYABLE = (PURPOSE_IACA, PURPOSE_DS, PURPOSE_STATUS, PURPOSE_VICAL, PURPOSE_VICAL_CA)

    def key_row(self, session: Session, ref: str) -> IssuerKey:
        """The signer of the mdoc PKI ``ref`` names, as the revoke commands take it: an IACA's
        number (``2``), any signer's label (``mdoc-ds-3``, ``mdoc-vical-ca-1``) or certificate
        serial in hex (:func:`protocols.certs.parse_serial`)."""
        text = str(ref).strip()
        try:
            if text.isdigit() and len(text) <= 4:
                return self.iaca_row(session, text)
            return self.signer_row(session, text, self.DESTROYABLE)
        except (UnknownSigner, UnknownIaca):
            raise UnknownSigner(f"no mdoc signer with label, serial or IACA number {ref!r} (mcred mdoc iaca "
                                "list, mcred mdoc ds list, mcred status-list signer list, mcred mdoc "
                                "vical-signer list, mcred mdoc vical-ca list show them)") from None

    def key_duty(self, session: Session, row: IssuerKey, now: dt.datetime) -> KeyDestructionRefused | None:
        """Why the key of ``row`` may not be destroyed at ``now`` (the refusal to raise), or
        None: a revoked signer's never has a duty (it signs nothing more, whatever the
        reason), nor a retired document, status-list or VICAL signer's (a newer generation
        signs in its place; none is ever started again), nor that of a CA past its end. The
        signers signing now are refused (:class:`SignerStillSigning`): the current IACA,
        document signer, status-list signer (one per IACA) and VICAL signer, the current
        VICAL CA, and a staged IACA or VICAL CA (the next rollover starts it). So is a retired CA that
        still signs for what it issued (:class:`CaDutiesRemain`): an older IACA while a
        document signer it certified has not expired (the MSOs it signed may be presented:
        readers look the signer up on the IACA's CRL, and the lists of those mdocs need
        status-list signers it certifies), an older VICAL CA while a VICAL signer it
        certified has not (its CRL)."""
        if row.revoked_at is not None:
            return None
        cert = self._cert(row)
        names = {PURPOSE_IACA: "IACA", PURPOSE_DS: "document signer", PURPOSE_STATUS: "status-list signer",
                 PURPOSE_VICAL: "VICAL signer", PURPOSE_VICAL_CA: "VICAL CA"}
        name = names[row.purpose]
        if row.active:
            how = {PURPOSE_IACA: "revoke it (mcred mdoc iaca revoke) or roll it over (mcred mdoc iaca rollover) "
                                 "first",
                   PURPOSE_DS: "revoke it (mcred mdoc ds revoke) or roll it over (mcred mdoc ds rollover) first",
                   PURPOSE_STATUS: "it signs its IACA's status lists: revoke it (mcred status-list signer revoke) "
                                   "first",
                   PURPOSE_VICAL: "revoke it (mcred mdoc vical-signer revoke) first",
                   PURPOSE_VICAL_CA: "roll it over (mcred mdoc vical-ca rollover; --compromised withdraws it "
                                     "at once) first"}[row.purpose]
            return SignerStillSigning(f"the {name} {row.label} is the one signing now: its key is needed; {how}")
        if row.purpose == PURPOSE_IACA:
            staged = self.staged_iaca(session, now)
            if staged is not None and staged.label == row.label:
                return SignerStillSigning(
                    f"the IACA {row.label} is staged (in the trust bundle since "
                    f"{row.created_at:%Y-%m-%d %H:%M} UTC): the next rollover starts it and it signs from then on; "
                    "revoke it first (mcred mdoc iaca revoke)", duty="staged")
        if row.purpose == PURPOSE_VICAL_CA:
            staged = self.staged_vical_ca(session, now)
            if staged is not None and staged.label == row.label:
                return SignerStillSigning(
                    f"the VICAL CA {row.label} is staged (in /trust/vical-ca.pem since "
                    f"{row.created_at:%Y-%m-%d %H:%M} UTC): the next rollover (mcred mdoc vical-ca rollover, or the "
                    "automatic one in the current CA's last months) starts it and it signs from then on; if its key "
                    "is in other hands, withdraw it with the current one first (mcred mdoc vical-ca rollover "
                    "--compromised --fresh)", duty="staged")
        if row.purpose not in (PURPOSE_IACA, PURPOSE_VICAL_CA) or not now < cert.not_valid_after_utc:
            return None
        issued = PURPOSE_DS if row.purpose == PURPOSE_IACA else PURPOSE_VICAL
        valid = [r for r in self._rows(session, issued)
                 if self._cert(r).issuer == cert.subject and now < self._cert(r).not_valid_after_utc]
        if not valid:
            return None
        until = max(self._cert(r).not_valid_after_utc for r in valid)
        what = ("the MSOs they signed may still be presented: readers look their signer up on its CRL, and "
                "their status lists need the status-list signers it certifies" if row.purpose == PURPOSE_IACA
                else "readers look them up on its CRL")
        return CaDutiesRemain(
            f"the {name} {row.label} is retired, not revoked, and still certifies {len(valid)} {names[issued]}(s) "
            f"that have not expired ({', '.join(r.label for r in valid[:5])}{', ...' if len(valid) > 5 else ''}; "
            f"the last ends {until:%Y-%m-%d %H:%M} UTC): {what}; its key may be destroyed after that, or once it "
            + ("is revoked" if row.purpose == PURPOSE_IACA else
               "is withdrawn (mcred mdoc vical-ca rollover --compromised, while it is the current one)"), until=until)

    def destroy_key(self, session: Session, ref: str, now: dt.datetime) -> KeyDestruction:
        """Destroy the private key of the signer ``ref`` names (:meth:`key_row`) in the key
        store, when no duty needs it (:meth:`key_duty`: refused otherwise, nothing changed),
        and record when on its row (``key_destroyed_at``). Its certificate stays in the
        registry and is published as before (the trust bundle, ``/trust/iaca-N.pem``, the
        listings, the VICAL, the chains of the CRLs it is on); what would sign with the key
        answers :class:`SignerKeyDestroyed`.

        Idempotent: a key destroyed before is left as it is (``changed`` False). The key is
        destroyed before the caller's transaction commits: a transaction rolled back after it
        leaves the key gone and no record, and the next call finds no key to destroy and
        records it then (``found_absent``)."""
        row = self._take(session, ref)
        if row.key_destroyed_at is not None:
            return KeyDestruction(row, False, restored=destroy_restored(self.keystore, row))
        refusal = self.key_duty(session, row, now)
        if refusal is not None:
            raise refusal
        final = self.seal(session, row, now)  # a CA's, before its key goes (signed already by seal_for)
        absent = destroy_in_store(self.keystore, row, now)
        session.flush()
        return KeyDestruction(row, True, absent, final_crls=(final,) if final is not None else ())

    def _take(self, session: Session, ref: str) -> IssuerKey:
        """The row of the signer ``ref`` names (:meth:`key_row`), taken for the caller's
        transaction and read afresh (a CA's with its kind's rows: what a rollover, staging or
        revocation committed is read after it)."""
        row = self.key_row(session, ref)
        if row.purpose in (PURPOSE_IACA, PURPOSE_VICAL_CA):
            self._lock(session, row.purpose)
            session.refresh(row)
        else:
            take_row(session, row)
        return row

    def seal_for(self, session: Session, ref: str, now: dt.datetime, *, actor: str = "issuer") -> FinalCrl | None:
        """The first step of destroying the key of the signer ``ref`` names, in a transaction
        of its own before :meth:`destroy_key`'s: a CA's final CRL (:meth:`seal`), when its key
        may go (:meth:`key_duty`'s refusal raised otherwise, nothing changed) and is not
        destroyed yet. Committed before the key is destroyed, so that no rollback leaves a
        CA's key gone without it; a crash between the two leaves the CA sealed (it signs
        nothing more) and the next destruction finds the CRL and destroys the key."""
        row = self._take(session, ref)
        if row.key_destroyed_at is not None:
            return None
        refusal = self.key_duty(session, row, now)
        if refusal is not None:
            raise refusal
        return self.seal(session, row, now, actor=actor)

    def revoked_signers(self, session: Session, root: x509.Certificate,
                        since: dt.datetime | None) -> list[tuple[x509.Certificate, IssuerKey]]:
        """Revoked signer certificates issued by ``root`` that had not expired at ``since``
        (the CRL's entries, with ``since`` the thisUpdate of the CRL before it, RFC 5280 3.3;
        None for the first CRL: every one)."""
        rows = session.scalars(select(IssuerKey).where(
            IssuerKey.purpose.in_((PURPOSE_DS, PURPOSE_STATUS)),
            IssuerKey.revoked_at.is_not(None)).order_by(IssuerKey.revoked_at, IssuerKey.label))
        out = []
        for row in rows:
            cert = self._cert(row)
            if cert.issuer == root.subject and (since is None or cert.not_valid_after_utc >= since):
                out.append((cert, row))
        return out

    def iaca_crl(self, session: Session, now: dt.datetime, *, iaca_label: str | int | None = None,
                 next_update: dt.timedelta = dt.timedelta(hours=24)) -> x509.CertificateRevocationList:
        """The IACA's CRL (RFC 5280 5): every revoked document signer and status-list signer
        it issued, with the revocation time and reason, until it has been on one CRL built
        after its end (RFC 5280 3.3: those not expired at the thisUpdate of the CRL before,
        every one on the first CRL). Built and stored
        once (``mdoc_iaca_crls``), rebuilt when a revocation marked it stale or less than
        :data:`CRL_REFRESH` remains before its nextUpdate. The CRL number only grows.
        ``iaca_label``: the IACA generation (label or number; None: the current one); an
        IACA past its notAfter has no new CRL (:class:`IacaEnded`)."""
        root = (self.ensure_iaca_certificate(session, now) if iaca_label is None
                else self._certkey(self._iaca_by_ref(session, iaca_label)))  # its key only to sign, below
        self._refuse_withdrawn(session, root.label, "issues no CRL")
        final = self.final_crl(session, root.label)
        if final is not None:  # its key went (or goes): the last it signed, for good, also past its end
            return self._crl(final.body)
        if not now < root.certificate.not_valid_after_utc:
            raise IacaEnded(f"the IACA {root.label} ended {root.certificate.not_valid_after_utc}: "
                            "no CRL is issued for it any more")
        return self._stored_crl(session, root.label, root.certificate, self._entries(session, root.label), now,
                                next_update)

    def _entries(self, session: Session, label: str):  # noqa: ANN202 - since -> list[ca_crl.Revoked]
        """What the CRL of CA ``label`` (an IACA or a VICAL CA) lists, as a function of the
        thisUpdate of the CRL before it (None: every certificate it revoked): each revoked
        signer it certified (document and status-list signers, or VICAL signers) with its
        revocation time and reason, but those that had expired by then (RFC 5280 3.3)."""
        row = session.get(IssuerKey, label)
        cert = self._cert(row)
        if row.purpose == PURPOSE_IACA:
            def revoked(since: dt.datetime | None) -> list[ca_crl.Revoked]:
                return [ca_crl.Revoked(c.serial_number, r.revoked_at, r.revocation_reason or "unspecified")
                        for c, r in self.revoked_signers(session, cert, since)]
            return revoked

        def revoked_vical(since: dt.datetime | None) -> list[ca_crl.Revoked]:
            rows = [r for r in self._rows(session, PURPOSE_VICAL) if r.revoked_at is not None]
            return [ca_crl.Revoked(self._cert(r).serial_number, r.revoked_at, r.revocation_reason or "unspecified")
                    for r in sorted(rows, key=lambda r: (r.revoked_at, r.label))
                    if self._cert(r).issuer == cert.subject
                    and (since is None or self._cert(r).not_valid_after_utc >= since)]
        return revoked_vical

    def _crl(self, body: bytes) -> x509.CertificateRevocationList:
        cached = self._crls.get(body)
        if cached is None:
            cached = x509.load_der_x509_crl(body)
            self._crls = {body: cached}
        return cached


def _closing(label: str, end: dt.datetime) -> str:
    return (f"the IACA {label} ends {end}: roll the IACA over (mcred mdoc iaca rollover, or POST "
            "/trust/iaca-rollover; it starts the staged next IACA when there is one) and give readers "
            "the new one (mcred export iaca, /trust/iaca.pem)")


def issuance_refusal(session: Session, now: dt.datetime,
                     margin: dt.timedelta = MdocPkiConfig.rollover_margin) -> str | None:
    """Why no MSO can be signed at ``now``, or None: the current IACA is in its last
    ``margin`` (no document signer can be made, :meth:`MdocPki._ensure_signer`) or past its
    end. Read before an issuance is started (a provisioning, an mdoc refresh, a workflow that
    re-issues mdocs), so that it is refused before anything is written or deleted, rather
    than stopped half-way by the issuer. None while there is no IACA yet (made at first use)."""
    rows = [r for r in session.scalars(select(IssuerKey).where(
        IssuerKey.purpose == PURPOSE_IACA, IssuerKey.label.startswith(_LABEL_PREFIX[PURPOSE_IACA] + "-")))
        if r.active and r.revoked_at is None]
    if not rows:
        return None
    row = max(rows, key=lambda r: (r.created_at, generation(r.label)))
    end = x509.load_der_x509_certificate(row.certificate).not_valid_after_utc
    if not now < end:
        return (f"the IACA {row.label} ended {end}: it signs nothing more; roll the IACA over (mcred mdoc "
                "iaca rollover, or POST /trust/iaca-rollover) and give readers the new one (mcred export "
                "iaca, /trust/iaca.pem)")
    if end - now <= margin:
        return _closing(row.label, end)
    return None


def _final(stored: IacaCrl | None) -> bool:
    """Whether the stored CRL ``stored`` is a CA's final CRL (:meth:`MdocPki.seal`)."""
    return stored is not None and stored.next_update == ca_crl.NO_NEXT_UPDATE


def generation(label: str) -> int:
    """The generation number of a label (``mdoc-iaca-2`` -> 2)."""
    return int(label.rsplit("-", 1)[1])


#: RFC 5280 5.3.1 reasons a signer certificate may be revoked with (no hold for signers).
SIGNER_REVOCATION_REASONS = ("keyCompromise", "superseded", "cessationOfOperation",
                             "affiliationChanged", "privilegeWithdrawn", "unspecified")
#: RFC 5280 5.3.1 reasons an IACA may be revoked with (taken out of trust: :meth:`MdocPki.revoke_iaca`).
IACA_REVOCATION_REASONS = ("cACompromise", "keyCompromise", "superseded", "cessationOfOperation",
                           "affiliationChanged", "privilegeWithdrawn", "unspecified")
#: The reasons that say the key is in other hands: they replace any other reason recorded.
COMPROMISE_REASONS = frozenset({"cACompromise", "keyCompromise"})
#: A stored IACA CRL is rebuilt when its nextUpdate is closer than this (readers keep a CRL
#: until its nextUpdate, 24 h after thisUpdate: the longest a DS revocation takes to reach them).
CRL_REFRESH = dt.timedelta(hours=1)
