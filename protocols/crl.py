"""CRLs of the certification authorities other than the JPKI roots (RFC 5280 5): the IACA's
(document and status-list signers), a reader CA's (reader authentication certificates,
ISO/IEC 18013-5 Annex B.1.7) and the time-stamping root's (TSA units). The JPKI CAs'
partitioned CRLs, with certificateHold, are :mod:`protocols.jpki.crl`.

Building: :func:`crl_builder` gives an unsigned :class:`x509.CertificateRevocationListBuilder`
with what RFC 5280 5.2 requires of a conforming CA (authorityKeyIdentifier, cRLNumber) and
one entry per :class:`Revoked` (its reason code unless unspecified, 5.3.1). Judging:
:func:`judge` says why a CRL cannot be relied on for a given issuer at a given time (another
issuer, a signature that does not verify with the issuer's key, a thisUpdate in the future,
a nextUpdate passed), or None; :func:`revocation_text` says what an entry records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from protocols.certs import PARSE_ERRORS

#: Clocks of an issuer and of a relying party may differ by this much.
SKEW = dt.timedelta(minutes=5)

#: The RFC 5280 reason names (CRLReason, 5.3.1) a CA of this PKI records, by their ASN.1
#: names. certificateHold and removeFromCRL are not among them: these CAs revoke for good.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}


class CrlError(ValueError):
    """A CRL cannot be read or built; the message says why."""


@dataclass(frozen=True)
class Revoked:
    """One entry of a CRL: the serial number, when it was revoked and why (a :data:`REASONS` name)."""

    serial_number: int
    revoked_at: dt.datetime
    reason: str = "unspecified"

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise CrlError(f"revocation reason {self.reason!r}: one of {', '.join(REASONS)}")
        if self.revoked_at.tzinfo is None:
            raise CrlError("revocation time must be timezone-aware")

    @classmethod
    def of(cls, entry: x509.RevokedCertificate) -> Revoked:
        """An entry read back from a CRL (a reason this PKI does not record is refused)."""
        flag = reason_flag(entry)
        names = {v: k for k, v in REASONS.items()}
        if flag is not None and flag not in names:
            raise CrlError(f"serial {entry.serial_number:x}: reason {flag.value} is not one this CA records")
        return cls(entry.serial_number, entry.revocation_date_utc, names[flag] if flag else "unspecified")


def crl_builder(issuer: x509.Certificate, *, number: int, this_update: dt.datetime,
                next_update: dt.timedelta, revoked: Iterable[Revoked] = ()) -> x509.CertificateRevocationListBuilder:
    """An unsigned CRL of ``issuer``: thisUpdate (to the second), nextUpdate after it,
    cRLNumber ``number``, authorityKeyIdentifier from the issuer's key, and the entries."""
    if number < 0 or number.bit_length() > 159:
        raise CrlError(f"cRLNumber {number}: a non-negative integer of at most 20 octets (RFC 5280 5.2.3)")
    if next_update <= dt.timedelta(0):
        raise CrlError("nextUpdate must come after thisUpdate")
    start = this_update.astimezone(dt.UTC).replace(microsecond=0)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.subject)
               .last_update(start)
               .next_update(start + next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),
                              critical=False))
    seen: set[int] = set()
    for r in revoked:
        if r.serial_number in seen:
            raise CrlError(f"serial {r.serial_number:x} listed twice")
        seen.add(r.serial_number)
        entry = (x509.RevokedCertificateBuilder().serial_number(r.serial_number)
                 .revocation_date(r.revoked_at.astimezone(dt.UTC).replace(microsecond=0)))
        if r.reason != "unspecified":
            entry = entry.add_extension(x509.CRLReason(REASONS[r.reason]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder


def load(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from DER or PEM bytes; :class:`CrlError` if it does not parse.

    As :mod:`protocols.certs` does for certificates, what ``cryptography`` reads only on
    first use is read here: the version (``InvalidVersion``, no ValueError), the issuer
    Name (``TypeError`` or ``ValueError`` for an attribute it cannot build; compared with
    the issuer's subject before the signature is checked) and the CRL's extensions. The
    entries are left to be read once the signature verified."""
    try:
        if data.lstrip().startswith(b"-----"):
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        crl.issuer.rfc4514_string()
        crl.extensions  # noqa: B018 - read now, so that no later check meets the error
    except PARSE_ERRORS as exc:
        raise CrlError(f"not a CRL: {type(exc).__name__}: {exc}") from None
    return crl


def number(crl: x509.CertificateRevocationList) -> int | None:
    """The cRLNumber, if the CRL has one."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return None


def judge(crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: dt.datetime, *,
          what: str = "the issuer") -> str | None:
    """Why ``crl`` cannot tell which of ``issuer``'s certificates are revoked at ``now``, or
    None when it can. ``what`` names the issuer in the reasons (e.g. "the IACA")."""
    if crl.issuer != issuer.subject:
        return f"issued by {crl.issuer.rfc4514_string()}, not {what}"
    try:
        if not crl.is_signature_valid(issuer.public_key()):
            return f"signature does not verify with {what}'s key"
    except (TypeError, ValueError) as exc:
        return f"signature unverifiable: {exc}"
    if crl.last_update_utc > now + SKEW:
        return f"thisUpdate {text(crl.last_update_utc)} is in the future"
    if crl.next_update_utc is not None and crl.next_update_utc < now:
        return f"out of date: nextUpdate {text(crl.next_update_utc)} has passed"
    return None


def reason_flag(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except (x509.ExtensionNotFound, ValueError):
        return None


def revocation_text(entry: x509.RevokedCertificate) -> str:
    """"revoked (keyCompromise) at 2026-12-05T10:00:00Z": what the entry records."""
    flag = reason_flag(entry)
    return f"revoked ({flag.value if flag else 'unspecified'}) at {text(entry.revocation_date_utc)}"


def text(t: dt.datetime | None) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"
