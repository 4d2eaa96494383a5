"""Revocation reasons and full, partitioned CRLs (RFC 5280 5).

JPKI uses four reasons (affiliationChanged: death or moving abroad; cessationOfOperation:
card lost or moving abroad; superseded: renewed because one of the basic four changed;
certificateHold: temporary hold of a lost card) plus keyCompromise. A hold is released by
`removeFromCRL` (RFC 5280 5.3.1): the entry disappears from the next full CRL and OCSP
answers good again. No delta CRLs: removeFromCRL never appears on a CRL we build. A held
certificate revoked for good keeps the time of its hold as the entry's invalidityDate
(RFC 5280 5.3.2, non-critical): the key was out of the holder's control since then.

Each partition (municipality) gets its own full CRL, with a critical issuingDistributionPoint
naming exactly that partition's directory name (RFC 5280 5.2.5), so a relying party (OpenSSL)
refuses it for a certificate of another municipality ("different CRL scope").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from protocols.crl import expired_certs_on_crl

from ._signing import IssuerKey, sign_builder
from .certificates import _aki, _check_issuer
from .errors import ProfileError
from .profile import JpkiProfile, Municipality, Purpose


class RevocationReason(enum.Enum):
    """CRLReason values used by JPKI (RFC 5280 5.3.1), plus removeFromCRL for a release."""

    KEY_COMPROMISE = "keyCompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    REMOVE_FROM_CRL = "removeFromCRL"

    @property
    def flag(self) -> x509.ReasonFlags:
        return x509.ReasonFlags(self.value)

    @property
    def code(self) -> int:
        """The CRLReason ENUMERATED value."""
        return {
            "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4,
            "cessationOfOperation": 5, "certificateHold": 6, "removeFromCRL": 8,
        }[self.value]

    @classmethod
    def parse(cls, name: str) -> RevocationReason:
        """From the RFC name (`affiliationChanged`) or the snake form (`affiliation_changed`)."""
        for reason in cls:
            if name in (reason.value, reason.name.lower()):
                return reason
        raise ProfileError(f"revocation reason {name!r} is not one of "
                           f"{', '.join(r.value for r in cls)}")


@dataclass(frozen=True)
class Revocation:
    """A certificate currently on the CRL."""

    serial: int
    revoked_at: datetime
    reason: RevocationReason
    #: the entry's invalidityDate (RFC 5280 5.3.2): since when the key is known or suspected
    #: to have been out of the holder's control (a hold later made final: when it went on
    #: hold), when that is before ``revoked_at``
    invalid_since: datetime | None = None

    def __post_init__(self) -> None:
        if self.reason is RevocationReason.REMOVE_FROM_CRL:
            raise ProfileError("removeFromCRL is an event, not a state: use apply_event")
        if self.revoked_at.tzinfo is None:
            raise ProfileError("revoked_at must be timezone-aware")
        if self.invalid_since is not None:
            if self.invalid_since.tzinfo is None:
                raise ProfileError("invalid_since must be timezone-aware")
            if self.on_hold:
                raise ProfileError("a hold carries no invalidity date: it may yet be lifted")

    @property
    def on_hold(self) -> bool:
        return self.reason is RevocationReason.CERTIFICATE_HOLD


@dataclass(frozen=True)
class RevocationEvent:
    serial: int
    at: datetime
    reason: RevocationReason


def apply_event(state: Mapping[int, Revocation], event: RevocationEvent) -> dict[int, Revocation]:
    """The revocation state after `event` (pure; returns a new dict).

    * certificateHold on a good certificate: held.
    * removeFromCRL: only on a held certificate; it becomes good again.
    * any other reason: final. A held certificate may become final (keeping the
      new reason and time, and the time of its hold as its invalidity date); a final
      revocation never changes."""
    current = state.get(event.serial)
    new = dict(state)
    if event.reason is RevocationReason.REMOVE_FROM_CRL:
        if current is None or not current.on_hold:
            raise ProfileError(f"serial {event.serial}: removeFromCRL needs a held certificate")
        del new[event.serial]
        return new
    if current is not None and not current.on_hold:
        raise ProfileError(
            f"serial {event.serial} is already revoked ({current.reason.value}); final"
        )
    if current is not None and event.reason is RevocationReason.CERTIFICATE_HOLD:
        return new
    new[event.serial] = Revocation(event.serial, event.at, event.reason,
                                   current.revoked_at if current is not None else None)
    return new


def issuing_distribution_point(profile: JpkiProfile, partition: Municipality
                               ) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(
        full_name=[x509.DirectoryName(profile.crldp_name(partition))],
        relative_name=None,
        only_contains_user_certs=False,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )


def _entry(rev: Revocation) -> x509.RevokedCertificate:
    """One CRL entry: serial, revocationDate, CRLReason, and invalidityDate when known
    (both entry extensions non-critical, RFC 5280 5.3.1, 5.3.2)."""
    entry = (x509.RevokedCertificateBuilder().serial_number(rev.serial).revocation_date(rev.revoked_at)
             .add_extension(x509.CRLReason(rev.reason.flag), critical=False))
    if rev.invalid_since is not None:
        # GeneralizedTime of whole seconds (RFC 5280 4.1.2.5.2: no fractional seconds)
        entry = entry.add_extension(x509.InvalidityDate(rev.invalid_since.replace(microsecond=0)), critical=False)
    return entry.build()


def build_crl(*, profile: JpkiProfile, purpose: Purpose, issuer: x509.Certificate,
              issuer_key: IssuerKey, partition: Municipality | None,
              revocations: Iterable[Revocation], crl_number: int, this_update: datetime,
              next_update: datetime, expired_certs_since: datetime | None = None
              ) -> x509.CertificateRevocationList:
    """A full CRL of one root (key generation) and one partition (None: unpartitioned).
    ``expired_certs_since``: it lists every certificate revoked that expired since then
    (X.509 expiredCertsOnCRL, non-critical: :func:`protocols.crl.expired_certs_on_crl`), as a
    root's final CRL does (``next_update`` :data:`protocols.crl.NO_NEXT_UPDATE`)."""
    _check_issuer(profile, purpose, issuer, issuer_key)
    if crl_number < 0 or crl_number.bit_length() > 159:
        raise ProfileError(f"CRL number {crl_number} must be 0..2^159-1 (RFC 5280 5.2.3: at most 20 octets)")
    for name, t in (("this_update", this_update), ("next_update", next_update)):
        if t.tzinfo is None:  # a naive time would be read as this machine's local time
            raise ProfileError(f"{name} {t!r} must be timezone-aware")
    if next_update <= this_update:
        raise ProfileError("next_update must come after this_update")
    if profile.partitioned_crls != (partition is not None):
        raise ProfileError("partition must be given exactly when the profile partitions CRLs")
    # Entries go in through the constructor: add_revoked_certificate copies the builder each
    # time (quadratic for a million entries).
    entries = [_entry(rev) for rev in revocations]
    builder = (
        x509.CertificateRevocationListBuilder(revoked_certificates=entries)
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_aki(issuer), critical=False)
    )
    if partition is not None:
        builder = builder.add_extension(issuing_distribution_point(profile, partition),
                                        critical=True)
    if expired_certs_since is not None:
        builder = builder.add_extension(expired_certs_on_crl(expired_certs_since), critical=False)
    return sign_builder(builder, issuer_key)
