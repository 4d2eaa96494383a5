"""CRLs of the certification authorities other than the JPKI roots (RFC 5280 5): the IACA's
(document and status-list signers), a reader CA's (reader authentication certificates,
ISO/IEC 18013-5 Annex B.1.7) and the time-stamping root's (TSA units). The JPKI CAs'
partitioned CRLs, with certificateHold, are :mod:`protocols.jpki.crl`; the rules of reading
a CRL below are shared with their relying party (:mod:`protocols.jpki.relying_party`).

Building: :func:`crl_builder` gives an unsigned :class:`x509.CertificateRevocationListBuilder`
with what RFC 5280 5.2 requires of a conforming CA (authorityKeyIdentifier, cRLNumber) and
one entry per :class:`Revoked` (its reason code unless unspecified, 5.3.1).

Judging, in three questions a relying party asks in this order:

* :func:`refusal`: can anything on the CRL be believed of the issuer's certificates at a
  given time? Not when another issuer made it, its signature does not verify with the
  issuer's key, its thisUpdate is in the future or its nextUpdate has passed, it is a delta
  CRL or an indirect one (neither supported here), or it carries a critical extension, on
  itself or on an entry, that is not processed here (RFC 5280 5.2, 5.3: such a CRL "MUST
  NOT" be used). :func:`extension_refusal` is the part about extensions.
* :func:`scope`: does it speak for this certificate? Its issuingDistributionPoint, if any:
  the distribution point names (none: every certificate of the issuer) and the only* flags
  (RFC 5280 6.3.3 (b)(2)).
* :func:`incomplete`: does its silence mean "not revoked"? Not when it has no nextUpdate
  (5.1.2.5: a conforming CA MUST give one; without it nothing bounds how long the list
  stands, so it is not taken to say a certificate is good), nor when its
  issuingDistributionPoint limits it to some reasons (onlySomeReasons). An entry on such a
  list is still believed: a revocation is final (only a hold is ever lifted).

:func:`judge` is :func:`refusal` and :func:`incomplete` together: why a CRL cannot tell
which of the issuer's certificates are revoked. :func:`newest_first` orders several CRLs of
one issuer (the most recent first), :func:`revocation_text` says what an entry records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from protocols.certs import PARSE_ERRORS

#: Clocks of an issuer and of a relying party may differ by this much.
SKEW = dt.timedelta(minutes=5)

#: The nextUpdate of a CA's **final CRL**, the one it signs just before its key is destroyed
#: (specs/revocation.md, "A CA's final CRL"): the GeneralizedTime 99991231235959Z, which
#: RFC 5280 4.1.2.5 gives for "no well-defined expiration date" (there for a certificate's
#: notAfter; here for a list that no later one will follow: nothing can sign another).
#: A relying party takes it as current for ever, as the ordinary rule already says
#: (:func:`refusal_of`: nextUpdate not passed).
NO_NEXT_UPDATE = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
#: The ITU-T X.509 CRL extension expiredCertsOnCRL (id-ce 60, a GeneralizedTime): the CRL lists
#: the certificates revoked that expired on or after that time, so its silence speaks for an
#: expired certificate too (long-term validation, ETSI EN 319 102-1, reads it). Not in RFC
#: 5280; put non-critical, so a relying party that does not know it still uses the CRL.
EXPIRED_CERTS_ON_CRL = x509.ObjectIdentifier("2.5.29.60")

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


#: The CRL extensions read here, and so allowed to be critical (RFC 5280 5.2): any other
#: critical one makes the CRL unusable. deltaCRLIndicator is read only to refuse the CRL.
PROCESSED_EXTENSIONS = frozenset({ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
                                  ExtensionOID.ISSUING_DISTRIBUTION_POINT, ExtensionOID.DELTA_CRL_INDICATOR})
#: The CRL entry extensions read here (RFC 5280 5.3); certificateIssuer, which only an
#: indirect CRL carries, is not: indirect CRLs are not supported.
PROCESSED_ENTRY_EXTENSIONS = frozenset({CRLEntryExtensionOID.CRL_REASON, CRLEntryExtensionOID.INVALIDITY_DATE})
#: The reasons a distribution point may be limited to (RFC 5280 4.2.1.13 ReasonFlags; not
#: unspecified nor removeFromCRL): a CRL for all of them is complete.
ALL_REASONS = frozenset(x509.ReasonFlags) - {x509.ReasonFlags.unspecified, x509.ReasonFlags.remove_from_crl}


class CrlError(ValueError):
    """A CRL cannot be read or built; the message says why."""


@dataclass(frozen=True)
class Revoked:
    """One entry of a CRL: the serial number, when it was revoked and why (a :data:`REASONS`
    name), and since when it is known or suspected to have been invalid when that is known
    (the invalidityDate entry extension, RFC 5280 5.3.2)."""

    serial_number: int
    revoked_at: dt.datetime
    reason: str = "unspecified"
    invalid_since: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise CrlError(f"revocation reason {self.reason!r}: one of {', '.join(REASONS)}")
        if self.revoked_at.tzinfo is None:
            raise CrlError("revocation time must be timezone-aware")
        if self.invalid_since is not None and self.invalid_since.tzinfo is None:
            raise CrlError("invalidity date must be timezone-aware")

    @classmethod
    def of(cls, entry: x509.RevokedCertificate) -> Revoked:
        """An entry read back from a CRL (a reason this PKI does not record is refused)."""
        flag = reason_flag(entry)
        names = {v: k for k, v in REASONS.items()}
        if flag is not None and flag not in names:
            raise CrlError(f"serial {entry.serial_number:x}: reason {flag.value} is not one this CA records")
        try:
            since = entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
        except x509.ExtensionNotFound:
            since = None
        return cls(entry.serial_number, entry.revocation_date_utc, names[flag] if flag else "unspecified", since)


def expired_certs_on_crl(since: dt.datetime) -> x509.UnrecognizedExtension:
    """The expiredCertsOnCRL extension (:data:`EXPIRED_CERTS_ON_CRL`) saying that the CRL lists
    every certificate revoked that expired on or after ``since`` (a GeneralizedTime of whole
    seconds, DER: tag 0x18, length 15)."""
    text = since.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode()
    return x509.UnrecognizedExtension(EXPIRED_CERTS_ON_CRL, bytes([0x18, len(text)]) + text)


def is_final(crl: x509.CertificateRevocationList) -> bool:
    """Whether ``crl`` is a final CRL (its nextUpdate :data:`NO_NEXT_UPDATE`)."""
    return crl.next_update_utc == NO_NEXT_UPDATE


def crl_builder(issuer: x509.Certificate, *, number: int, this_update: dt.datetime,
                next_update: dt.timedelta | dt.datetime, revoked: Iterable[Revoked] = (),
                expired_certs_since: dt.datetime | None = None) -> x509.CertificateRevocationListBuilder:
    """An unsigned CRL of ``issuer``: thisUpdate (to the second), nextUpdate after it (a
    duration, or a time: :data:`NO_NEXT_UPDATE` for a final CRL), cRLNumber ``number``,
    authorityKeyIdentifier from the issuer's key, and the entries (each with its reason
    unless unspecified, and its invalidityDate when it has one; both non-critical, RFC 5280
    5.3.1, 5.3.2). ``expired_certs_since``: the CRL lists every certificate revoked that
    expired since then (:func:`expired_certs_on_crl`, non-critical)."""
    if number < 0 or number.bit_length() > 159:
        raise CrlError(f"cRLNumber {number}: a non-negative integer of at most 20 octets (RFC 5280 5.2.3)")
    start = this_update.astimezone(dt.UTC).replace(microsecond=0)
    if isinstance(next_update, dt.timedelta):
        next_update = start + next_update
    if next_update.tzinfo is None:
        raise CrlError("nextUpdate must be timezone-aware")
    if next_update <= start:
        raise CrlError("nextUpdate must come after thisUpdate")
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.subject)
               .last_update(start)
               .next_update(next_update.astimezone(dt.UTC).replace(microsecond=0))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),
                              critical=False))
    if expired_certs_since is not None:
        builder = builder.add_extension(expired_certs_on_crl(expired_certs_since), critical=False)
    seen: set[int] = set()
    for r in revoked:
        if r.serial_number in seen:
            raise CrlError(f"serial {r.serial_number:x} listed twice")
        seen.add(r.serial_number)
        entry = (x509.RevokedCertificateBuilder().serial_number(r.serial_number)
                 .revocation_date(r.revoked_at.astimezone(dt.UTC).replace(microsecond=0)))
        if r.reason != "unspecified":
            entry = entry.add_extension(x509.CRLReason(REASONS[r.reason]), critical=False)
        if r.invalid_since is not None:  # GeneralizedTime of whole seconds (RFC 5280 4.1.2.5.2)
            entry = entry.add_extension(x509.InvalidityDate(
                r.invalid_since.astimezone(dt.UTC).replace(microsecond=0)), critical=False)
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
    """Why ``crl`` cannot tell which of ``issuer``'s certificates are revoked at ``now`` (its
    :func:`refusal`, or why it is :func:`incomplete`), or None when it can. ``what`` names
    the issuer in the reasons (e.g. "the IACA"). Its :func:`scope` is the caller's to ask,
    with the certificate."""
    return refusal(crl, issuer, now, what=what) or incomplete(crl)


@dataclass(frozen=True)
class Refusal:
    """Why nothing on a CRL can be believed (:func:`refusal_of`): ``kind`` says which rule,
    for callers that word their verdicts their own way; ``text`` says what was seen."""

    #: ``issuer`` (another CA made it), ``signature`` (it does not verify with the issuer's
    #: key), ``future`` (thisUpdate ahead of the clock), ``expired`` (nextUpdate passed),
    #: ``extensions`` (:func:`extension_refusal`)
    kind: str
    text: str


def refusal_of(crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: dt.datetime, *,
               what: str = "the issuer") -> Refusal | None:
    """Why nothing on ``crl`` can be believed of ``issuer``'s certificates at ``now``
    (another issuer, a signature that does not verify with the issuer's key, a thisUpdate
    more than :data:`SKEW` in the future, a nextUpdate passed, :func:`extension_refusal`),
    or None."""
    if crl.issuer != issuer.subject:
        return Refusal("issuer", f"issued by {crl.issuer.rfc4514_string()}, not {what}")
    try:
        if not crl.is_signature_valid(issuer.public_key()):
            return Refusal("signature", f"signature does not verify with {what}'s key")
    except (TypeError, ValueError) as exc:
        return Refusal("signature", f"signature unverifiable: {exc}")
    if crl.last_update_utc > now + SKEW:
        return Refusal("future", f"thisUpdate {text(crl.last_update_utc)} is in the future")
    if crl.next_update_utc is not None and crl.next_update_utc < now:
        return Refusal("expired", f"out of date: nextUpdate {text(crl.next_update_utc)} has passed")
    why = extension_refusal(crl)
    return Refusal("extensions", why) if why else None


def refusal(crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: dt.datetime, *,
            what: str = "the issuer") -> str | None:
    """:func:`refusal_of`'s text, or None."""
    why = refusal_of(crl, issuer, now, what=what)
    return why.text if why else None


def extension_refusal(crl: x509.CertificateRevocationList) -> str | None:
    """Why ``crl``'s extensions keep it from being used at all, or None: unreadable, a delta
    CRL (deltaCRLIndicator: it lists only what changed since its base CRL; delta CRLs are
    not supported here, so it is never taken for a complete list), an indirect CRL
    (issuingDistributionPoint indirectCRL: entries may be other CAs' certificates; not
    supported), a critical extension not in :data:`PROCESSED_EXTENSIONS`, or an entry with a
    critical extension not in :data:`PROCESSED_ENTRY_EXTENSIONS` (RFC 5280 5.2, 5.3: such a
    CRL must not be used to determine the status of any certificate). Meant for a CRL whose
    signature verified: the scan of the entries is remembered by signature."""
    try:
        extensions = list(crl.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        return f"extensions unreadable: {exc}"
    for ext in extensions:
        if isinstance(ext.value, x509.DeltaCRLIndicator):
            return (f"a delta CRL (deltaCRLIndicator: only the changes since base CRL number "
                    f"{ext.value.crl_number}); delta CRLs are not supported here, and one is not a complete list")
        if isinstance(ext.value, x509.IssuingDistributionPoint) and ext.value.indirect_crl:
            return ("an indirect CRL (issuingDistributionPoint indirectCRL: it may list other CAs' "
                    "certificates); indirect CRLs are not supported here")
    for ext in extensions:
        if ext.critical and ext.oid not in PROCESSED_EXTENSIONS:
            return f"critical extension {ext.oid.dotted_string} is not processed here (RFC 5280 5.2)"
    return _entry_refusal(crl)


_ENTRY_SCANS: OrderedDict[bytes, str | None] = OrderedDict()
_ENTRY_SCANS_KEPT = 32
_ENTRY_SCANS_LOCK = threading.Lock()


def _entry_refusal(crl: x509.CertificateRevocationList) -> str | None:
    """The first entry of ``crl`` with a critical extension not processed here, said; the
    verdict kept by the digest of the signed contents (what the scan reads), since a national
    CRL's entries take far longer to scan than its bytes to hash. Not by the signature: one
    signature value verifies other contents under another key (ECDSA lets a key be derived for
    it), so a CRL of a second trusted issuer could have set the verdict of a genuine one."""
    key = hashlib.sha256(crl.tbs_certlist_bytes).digest()
    with _ENTRY_SCANS_LOCK:
        if key in _ENTRY_SCANS:
            _ENTRY_SCANS.move_to_end(key)
            return _ENTRY_SCANS[key]
    why = None
    try:
        for entry in crl:
            why = entry_refusal(entry)
            if why:
                break
    except ValueError as exc:
        why = f"entries unreadable: {exc}"
    with _ENTRY_SCANS_LOCK:
        _ENTRY_SCANS[key] = why
        while len(_ENTRY_SCANS) > _ENTRY_SCANS_KEPT:
            _ENTRY_SCANS.popitem(last=False)
    return why


def entry_refusal(entry: x509.RevokedCertificate) -> str | None:
    """Why one CRL entry's extensions keep the CRL from being used, or None."""
    try:
        extensions = list(entry.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        return f"the entry for serial {entry.serial_number:x} has unreadable extensions: {exc}"
    for ext in extensions:
        if ext.critical and ext.oid not in PROCESSED_ENTRY_EXTENSIONS:
            return (f"the entry for serial {entry.serial_number:x} has critical extension {ext.oid.dotted_string}, "
                    "which is not processed here (RFC 5280 5.3)")
    return None


def incomplete(crl: x509.CertificateRevocationList) -> str | None:
    """Why a certificate missing from ``crl`` (a CRL :func:`refusal` lets through, of the
    certificate's :func:`scope`) is not thereby known not to be revoked, or None:

    * no nextUpdate: RFC 5280 5.1.2.5 requires one of a conforming CA, and only it bounds
      how long the list's silence holds. Such a list is not taken as current for ever (as
      it once was here), nor for some allowance after its thisUpdate (an allowance of our
      choosing that the CA never promised): it cannot say "good". Its entries are still
      believed, a revocation being final (a hold on it is the caller's to weigh: one may
      since have been lifted, and nothing says when the list was due again).
    * onlySomeReasons (issuingDistributionPoint) short of :data:`ALL_REASONS`: the list is
      one of several partitions by reason (RFC 5280 6.3.3 (d), the reasons mask), and
      revocations for the other reasons are on another.
    """
    if crl.next_update_utc is None:
        return ("it has no nextUpdate (RFC 5280 5.1.2.5 requires one): nothing bounds how long it stands, "
                "so it cannot say a certificate is not revoked")
    reasons = only_some_reasons(crl)
    if reasons is not None and not ALL_REASONS <= reasons:
        named = ", ".join(sorted(r.value for r in reasons))
        return (f"it lists revocations for some reasons only (issuingDistributionPoint onlySomeReasons: "
                f"{named}), so it cannot say a certificate is not revoked")
    return None


def issuing_distribution_point(crl: x509.CertificateRevocationList) -> x509.IssuingDistributionPoint | None:
    """The CRL's issuingDistributionPoint, or None when it has none (or unreadable
    extensions, which :func:`extension_refusal` refuses)."""
    try:
        return crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return None


def only_some_reasons(crl: x509.CertificateRevocationList) -> frozenset[x509.ReasonFlags] | None:
    """The reasons the CRL is limited to (issuingDistributionPoint onlySomeReasons), or None."""
    idp = issuing_distribution_point(crl)
    return None if idp is None or idp.only_some_reasons is None else frozenset(idp.only_some_reasons)


def idp_names(crl: x509.CertificateRevocationList) -> set[x509.GeneralName] | None:
    """The distribution point names ``crl``'s issuingDistributionPoint speaks for: its
    fullName, or its nameRelativeToCRLIssuer appended to the CRL's issuer (RFC 5280 5.2.5).
    None when it has no issuingDistributionPoint or one that names no distribution point:
    it then speaks for every certificate of its issuer, as its only* flags allow."""
    idp = issuing_distribution_point(crl)
    if idp is None:
        return None
    return _point_names(idp.full_name, idp.relative_name, crl.issuer) or None


def certificate_dp_names(cert: x509.Certificate) -> set[x509.GeneralName]:
    """The names of ``cert``'s CRL distribution points (RFC 5280 4.2.1.13): each point's
    fullName, or its nameRelativeToCRLIssuer appended to its cRLIssuer (else the
    certificate's issuer), or, when it names no point, its cRLIssuer (6.3.3 (b)(2)(i))."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return set()
    names: set[x509.GeneralName] = set()
    for dp in points:
        crl_issuers = list(dp.crl_issuer or [])
        if dp.full_name is None and dp.relative_name is None:
            names.update(crl_issuers)
            continue
        bases = [n.value for n in crl_issuers if isinstance(n, x509.DirectoryName)] or [cert.issuer]
        for base in bases:
            names |= _point_names(dp.full_name, dp.relative_name, base)
    return names


def _point_names(full_name, relative_name, base: x509.Name) -> set[x509.GeneralName]:
    if full_name:
        return set(full_name)
    if relative_name is not None:
        return {x509.DirectoryName(x509.Name([*base.rdns, relative_name]))}
    return set()


def is_ca(cert: x509.Certificate) -> bool:
    """Whether ``cert`` has basicConstraints with cA asserted."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return False


def scope(cert: x509.Certificate, crl: x509.CertificateRevocationList) -> str | None:
    """Why ``crl`` does not speak for ``cert`` (RFC 5280 6.3.3 (b)(2)), or None when it
    does: no issuingDistributionPoint speaks for every certificate of the issuer; one that
    limits it to attribute certificates speaks for none, to end-entity (user) certificates
    not for a CA certificate, to CA certificates not for an end-entity one; one that names
    distribution points only for a certificate naming one of them (a partition's CRL). An
    issuingDistributionPoint naming no point (only flags or onlySomeReasons) is the whole
    issuer's scope, as far as its flags go."""
    idp = issuing_distribution_point(crl)
    if idp is None:
        return None
    if idp.only_contains_attribute_certs:
        return ("the CRL's issuingDistributionPoint says it lists attribute certificates only "
                "(onlyContainsAttributeCerts), never a public-key certificate")
    ca = is_ca(cert)
    if idp.only_contains_user_certs and ca:
        return ("the CRL's issuingDistributionPoint says it lists end-entity certificates only "
                "(onlyContainsUserCerts), and this is a CA certificate")
    if idp.only_contains_ca_certs and not ca:
        return ("the CRL's issuingDistributionPoint says it lists CA certificates only "
                "(onlyContainsCACerts), and this is an end-entity certificate")
    names = idp_names(crl)
    if names is not None and not names & certificate_dp_names(cert):
        return ("the CRL's issuingDistributionPoint names none of the certificate's distribution points "
                "(another partition's CRL)")
    return None


def newest_first(crls: Iterable[x509.CertificateRevocationList]) -> list[x509.CertificateRevocationList]:
    """Several CRLs of one issuer and scope, the most recent first: by cRLNumber (RFC 5280
    5.2.3: it grows with each CRL of a scope) when every one has it and they share one
    issuingDistributionPoint, else by thisUpdate (then cRLNumber). A relying party judging
    with the validation data a signature carries reads the newest it may, so that an older
    list without an entry does not hide a newer one with it."""
    crls = list(crls)
    if all(number(c) is not None for c in crls) and len({issuing_distribution_point(c) for c in crls}) <= 1:
        return sorted(crls, key=lambda c: (number(c), c.last_update_utc), reverse=True)
    return sorted(crls, key=lambda c: (c.last_update_utc, -1 if number(c) is None else number(c)), reverse=True)


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
    """A time in a reason: ISO 8601 with the UTC offset, ``2026-11-23T01:02:03+00:00``, as
    every verdict writes times (specs/cli.md "Names")."""
    return t.astimezone(dt.UTC).isoformat() if t else "-"
