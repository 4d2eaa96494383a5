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
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from issuer.db import IssuerKey
from issuer.keystore import CoseSignerAdapter, KeyStoreError
from issuer.mdoc.errors import MdocKeyError, MdocKeysMissing
from protocols import iaca

PURPOSE_IACA = "iaca"
PURPOSE_DS = "ds"
PURPOSE_STATUS = "status-signer"
_LABEL_PREFIX = {PURPOSE_IACA: "mdoc-iaca", PURPOSE_DS: "mdoc-ds", PURPOSE_STATUS: "mdoc-status"}
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

    def __post_init__(self) -> None:
        if self.algorithm not in _ALGORITHMS:
            raise MdocKeyError(f"mdoc algorithm {self.algorithm!r}: use ES256 or ES384")
        if self.signer_validity > iaca.DS_MAX_VALIDITY:
            raise MdocKeyError(f"signer validity {self.signer_validity} beyond Annex B's 457 days")
        if not dt.timedelta(0) < self.rollover_margin < self.signer_validity:
            raise MdocKeyError("rollover margin must be positive and shorter than the signer validity")

    @property
    def key_algorithm(self) -> str:
        return _ALGORITHMS[self.algorithm]


@dataclass(frozen=True)
class ActiveKey:
    """A key of the PKI ready to sign: its label, certificate and COSE signer."""

    label: str
    purpose: str
    certificate: x509.Certificate
    signer: CoseSignerAdapter = field(repr=False, compare=False)

    @functools.cached_property
    def der(self) -> bytes:
        """The certificate's DER, encoded once (it goes into every x5chain this key signs)."""
        return self.certificate.public_bytes(serialization.Encoding.DER)


class MdocPki:
    """Creates, rolls over and hands out the mdoc issuer keys (sessions come from the caller)."""

    def __init__(self, keystore, public_url: str, config: MdocPkiConfig | None = None) -> None:
        self.keystore = keystore
        self.public_url = public_url.rstrip("/")
        self.config = config or MdocPkiConfig()
        self._certs: dict[str, x509.Certificate] = {}

    # -- URLs put into certificates -----------------------------------------------------

    @property
    def crl_uri(self) -> str:
        return f"{self.public_url}/trust/iaca.crl"

    @property
    def iaca_uri(self) -> str:
        return f"{self.public_url}/trust/iaca.pem"

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

    def _active(self, session: Session, purpose: str) -> IssuerKey | None:
        rows = [r for r in self._rows(session, purpose) if r.active]
        return rows[-1] if rows else None

    def _activekey(self, row: IssuerKey) -> ActiveKey:
        try:
            signer = CoseSignerAdapter(self.keystore.signer(row.label))
        except KeyStoreError as exc:
            raise MdocKeyError(f"{row.purpose} key {row.label}: {exc}") from exc
        return ActiveKey(row.label, row.purpose, self._cert(row), signer)

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
                algorithm: str, now: dt.datetime) -> IssuerKey:
        for old in self._rows(session, purpose):
            old.active = False
        row = IssuerKey(label=label, purpose=purpose, algorithm=algorithm,
                        certificate=cert.public_bytes(serialization.Encoding.DER), active=True,
                        created_at=now)
        session.add(row)
        session.flush()  # a racing process with the same label fails here and retries
        return row

    def ensure_iaca(self, session: Session, now: dt.datetime) -> ActiveKey:
        row = self._active(session, PURPOSE_IACA)
        if row is not None:
            return self._activekey(row)
        label = self._next_label(session, PURPOSE_IACA)
        signer = self._key(label)
        c = self.config
        builder = iaca.iaca_builder(
            signer.public_key(), common_name=f"mcred IACA {label.rsplit('-', 1)[1]} (simulated)",
            not_before=now, not_after=now + c.iaca_validity, issuer_alt_name_uri=self.iaca_uri,
            crl_uri=self.crl_uri, country=c.country, organization=c.organization,
        )
        cert = signer.sign_certificate(builder)
        return self._activekey(self._record(session, label, PURPOSE_IACA, cert, signer.algorithm, now))

    def _ensure_signer(self, session: Session, purpose: str, now: dt.datetime,
                       force: bool = False) -> ActiveKey:
        root = self.ensure_iaca(session, now)
        row = self._active(session, purpose)
        if row is not None and not force:
            cert = self._cert(row)
            fresh = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc - self.config.rollover_margin
            if fresh and cert.issuer == root.certificate.subject:
                return self._activekey(row)
        label = self._next_label(session, purpose)
        signer = self._key(label)
        end = min(now + self.config.signer_validity, root.certificate.not_valid_after_utc)
        if end - now <= self.config.rollover_margin:
            raise MdocKeyError(f"the IACA {root.label} expires {end}: roll the IACA over first")
        make = iaca.document_signer_builder if purpose == PURPOSE_DS else iaca.status_list_signer_builder
        what = "Document Signer" if purpose == PURPOSE_DS else "Status List Signer"
        builder = make(
            signer.public_key(), root.certificate,
            common_name=f"mcred {what} {label.rsplit('-', 1)[1]} (simulated)",
            not_before=max(now, root.certificate.not_valid_before_utc), not_after=end,
            crl_uri=self.crl_uri, organization=self.config.organization,
        )
        iaca_signer = self.keystore.signer(root.label)
        cert = iaca_signer.sign_certificate(builder)
        return self._activekey(self._record(session, label, purpose, cert, signer.algorithm, now))

    def document_signer(self, session: Session, now: dt.datetime) -> ActiveKey:
        """The DS to sign MSOs with at ``now``: rolled over when near the end of its validity."""
        return self._ensure_signer(session, PURPOSE_DS, now)

    def status_signer(self, session: Session, now: dt.datetime) -> ActiveKey:
        """The status-list signer at ``now`` (same rollover rule)."""
        return self._ensure_signer(session, PURPOSE_STATUS, now)

    def rollover_ds(self, session: Session, now: dt.datetime) -> ActiveKey:
        """Start a new DS generation now (planned rollover or a suspected key)."""
        return self._ensure_signer(session, PURPOSE_DS, now, force=True)

    def setup(self, session: Session, now: dt.datetime) -> tuple[ActiveKey, ActiveKey, ActiveKey]:
        """Make sure the IACA, a DS and a status-list signer exist (idempotent)."""
        return (self.ensure_iaca(session, now), self.document_signer(session, now),
                self.status_signer(session, now))

    def iaca_crl(self, session: Session, now: dt.datetime, *, next_update: dt.timedelta =
                 dt.timedelta(days=7)) -> x509.CertificateRevocationList:
        """The IACA's CRL (RFC 5280): no DS or status signer is revoked by this simulator."""
        root = self.ensure_iaca(session, now)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.certificate.subject)
            .last_update(now.replace(microsecond=0))
            .next_update((now + next_update).replace(microsecond=0))
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                root.certificate.public_key()), critical=False)
        )
        return self.keystore.signer(root.label).sign_crl(builder)
