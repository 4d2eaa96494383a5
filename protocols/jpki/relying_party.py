"""Relying-party checks on a JPKI signature, as pure functions (RFC 5280 6, simplified to
the JPKI shape: end-entity certificates issued directly by a root).

Each check returns `Check(name, passed, reason, code=...)`: ``code`` one of :data:`CHECK_CODES`
(specs/revocation.md 5, "Codes"), for a script to branch on, the reason for a person;
`verify_signed_content` runs them all and
returns `{"valid", "checks", ...}` in the shape of the mdoc verifier. Revocation is checked
against a given CRL here; OCSP is the caller's transport concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtensionOID

from protocols import crl as ca_crl
from protocols.certs import authority_key_id, critical_refusal, subject_key_id

from .certificates import BasicFour
from .cms import verify_detached_signature
from .errors import JpkiError
from .parse import classify, read_basic_four
from .profile import PolicyArc, Purpose

#: What a check's ``code`` may be: a closed vocabulary, the one source of the verdict's
#: ``code`` enum in the reader's OpenAPI document (reader/schemas.py) and of the table in
#: specs/revocation.md 5. ``ok`` is any passed check but ``revocation``; ``failed`` a failure
#: with no more specific code.
CHECK_CODES = (
    "ok", "failed",
    "bad_signature",    # signature: it does not verify over the content, or is no signature that can be read
    "untrusted_root",   # chain: no trusted root issued the certificate (at the time judged)
    "wrong_purpose",    # policy, key_usage: the certificate is not for this use
    "expired", "not_yet_valid",  # validity
    # revocation (and signature_timestamp, document_timestamp for their TSA unit):
    "good",             # a verified answer: not revoked
    "revoked",          # a verified answer: revoked for a final reason (revocation_reason says which)
    "on_hold",          # a verified answer: certificateHold, the one status a release may lift
    "unknown",          # a verified OCSP answer: the responder does not know the certificate
    "unavailable",      # no trustworthy answer about the certificate: ask again later
    "revoked_after_signing",  # revoked or on hold, but after the signature's time-stamp: passes
)
#: The codes of a ``revocation`` check (``failed``: not asked; the mode is unknown, or no
#: trusted root to ask about, which the ``chain`` check says).
REVOCATION_CODES = ("good", "revoked_after_signing", "revoked", "on_hold", "unknown", "unavailable", "failed")
#: A ``revocation_reason``: an RFC 5280 5.3.1 CRLReason by its name.
REVOCATION_REASONS = tuple(flag.value for flag in x509.ReasonFlags)
#: The checks that say whether something was revoked, and so carry ``revoked_at`` and
#: ``revocation_reason`` (null unless it was): the signer's certificate (``revocation``), the
#: TSA unit that stamped the signature (``signature_timestamp``) and the one that made a
#: PDF's document time-stamp (``document_timestamp``, PAdES B-LTA).
REVOCATION_CHECKS = ("revocation", "signature_timestamp", "document_timestamp")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    reason: str
    #: for a ``revocation`` check on a verified "revoked" (``revoked``, ``on_hold``,
    #: ``revoked_after_signing``): when (so that a signature time-stamped before it can still
    #: be judged valid); for a ``signature_timestamp`` or ``document_timestamp`` of code
    #: ``revoked``: when the TSA unit was
    revoked_at: datetime | None = None
    #: one of :data:`CHECK_CODES`; by default ``ok`` when passed, else ``failed``
    code: str | None = None
    #: for a verified "revoked" (``revoked``, ``on_hold``, ``revoked_after_signing``; a
    #: ``signature_timestamp``'s or ``document_timestamp``'s TSA unit revoked): the CRLReason
    #: name (``certificateHold``
    #: for a hold)
    revocation_reason: str | None = None
    #: for a ``revocation`` check on a verified "revoked" whose answer gives an invalidity date
    #: (the CRL entry's or OCSP singleExtension's invalidityDate, RFC 5280 5.3.2: since when the
    #: key is known or suspected to have been out of the holder's control; the issuer gives the
    #: time a hold began when it revokes a held certificate for good): a signature time-stamped
    #: after it is refused, though the revocation (``revoked_at``) came later
    invalid_since: datetime | None = None

    def __post_init__(self) -> None:
        if self.code is None:
            object.__setattr__(self, "code", "ok" if self.passed else "failed")
        if self.code not in CHECK_CODES:
            raise ValueError(f"check code {self.code!r}: not one of CHECK_CODES")
        if self.revocation_reason is not None and self.revocation_reason not in REVOCATION_REASONS:
            raise ValueError(f"revocation reason {self.revocation_reason!r}: not an RFC 5280 CRLReason")

    def to_dict(self) -> dict[str, Any]:
        """The check in a verdict's JSON; a ``revocation``, ``signature_timestamp`` or
        ``document_timestamp`` check (:data:`REVOCATION_CHECKS`) also with ``revoked_at`` (ISO 8601, UTC: the OCSP answer's
        revocationTime or the CRL entry's revocationDate; the TSA unit's CRL entry's) and
        ``revocation_reason``, both null when no verified answer says revoked; a ``revocation``
        check also with ``invalid_since``, null unless the answer gives an invalidity date."""
        out: dict[str, Any] = {"name": self.name, "passed": self.passed, "reason": self.reason, "code": self.code}
        if self.name in REVOCATION_CHECKS or self.revoked_at is not None or self.revocation_reason is not None:
            out["revoked_at"] = None if self.revoked_at is None else utc_text(self.revoked_at)
            out["revocation_reason"] = self.revocation_reason
        if self.name == "revocation" or self.invalid_since is not None:
            out["invalid_since"] = None if self.invalid_since is None else utc_text(self.invalid_since)
        return out

    @property
    def invalid_from(self) -> datetime | None:
        """When the certificate stopped being valid by this check's answer: the earlier of
        ``revoked_at`` and ``invalid_since`` (None when the answer says no revocation)."""
        if self.revoked_at is None:
            return None
        if self.invalid_since is None:
            return self.revoked_at
        return min(self.revoked_at, self.invalid_since)


def unavailable(reason: str) -> Check:
    """A failed ``revocation`` check with no trustworthy answer about the certificate
    (unreachable, HTTP error, unparseable, stale, out of scope, not signed by the root...):
    code ``unavailable``, asking again later may give one."""
    return Check("revocation", False, reason, code="unavailable")


def revoked_check(reason_name: str, at: datetime, text: str, invalid_since: datetime | None = None) -> Check:
    """A failed ``revocation`` check on a verified "revoked" at ``at`` for ``reason_name``
    (code ``on_hold`` for certificateHold, else ``revoked``), invalid since ``invalid_since``
    when the answer gives an invalidity date."""
    return Check("revocation", False, text, at, code="on_hold" if reason_name == "certificateHold" else "revoked",
                 revocation_reason=reason_name, invalid_since=invalid_since)


def find_issuer(cert: x509.Certificate, roots: Sequence[x509.Certificate]
                ) -> x509.Certificate | None:
    """The root whose SKI equals the certificate's AKI (never chosen by name alone)."""
    aki = authority_key_id(cert)
    if aki is None:
        return None
    for root in roots:
        if subject_key_id(root) == aki:
            return root
    return None


#: The extensions of a JPKI end-entity certificate this relying party processes: a
#: certificate marking any other critical is refused (RFC 5280 4.2). The key identifiers find
#: the root, basicConstraints and keyUsage are read, certificatePolicies says the purpose,
#: subjectAltName holds the basic four, the CRL distribution point and the OCSP URL
#: (authorityInfoAccess) say where revocation is asked.
LEAF_EXTENSIONS = frozenset({
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE, ExtensionOID.CERTIFICATE_POLICIES, ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.CRL_DISTRIBUTION_POINTS, ExtensionOID.AUTHORITY_INFORMATION_ACCESS})


def check_chain(cert: x509.Certificate, roots: Sequence[x509.Certificate], at: datetime
                ) -> tuple[Check, x509.Certificate | None]:
    """The certificate issued by one of ``roots`` (found by key id, never by name alone),
    valid at ``at``, and no critical extension of the certificate left unprocessed
    (:data:`LEAF_EXTENSIONS`); the root, or None when the chain fails."""
    root = find_issuer(cert, roots)
    if root is None:
        aki = authority_key_id(cert)
        return Check("chain", False, f"no trusted root has the certificate's authority key identifier: issued by "
                     f"{cert.issuer.rfc4514_string()} (key id {aki.hex() if aki else 'not given'}), none of "
                     f"the {len(roots)} trusted root(s): a certificate of another PKI, a root generation missing "
                     "from the trust bundle, or one issued by an intermediate CA (JPKI certificates are "
                     "issued by a root directly)", code="untrusted_root"), None
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        return Check("chain", False, f"not issued by the root with that key id: "
                     f"{type(exc).__name__} {exc}", code="untrusted_root"), None
    if not root.not_valid_before_utc <= at <= root.not_valid_after_utc:
        return Check("chain", False, f"root {root.serial_number} is not valid at {at}", code="untrusted_root"), None
    why = critical_refusal(cert, LEAF_EXTENSIONS)
    if why:
        return Check("chain", False, f"the certificate cannot be relied on: {why}"), None
    return Check("chain", True, f"issued by root serial {root.serial_number}"), root


_PURPOSE_NAMES = {Purpose.SIGN: "signing (署名用)", Purpose.AUTH: "user-authentication (利用者証明用)"}
_PURPOSE_USE = {Purpose.SIGN: "a document is signed with the signing certificate",
                Purpose.AUTH: "a login is proved with the user-authentication certificate"}


def check_policy(cert: x509.Certificate, required: Purpose, arc: PolicyArc | None = None
                 ) -> Check:
    try:
        purpose = classify(cert, arc)
    except JpkiError as exc:
        return Check("policy", False, str(exc))
    if purpose is not required:
        return Check("policy", False, f"a {_PURPOSE_NAMES[purpose]} certificate where a "
                     f"{_PURPOSE_NAMES[required]} certificate is required ({_PURPOSE_USE[required]})",
                     code="wrong_purpose")
    return Check("policy", True, f"{purpose.value} certificate policy")


def check_key_usage(cert: x509.Certificate, required: Purpose) -> Check:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return Check("key_usage", False, "no keyUsage extension", code="wrong_purpose")
    if not ku.digital_signature or (required is Purpose.SIGN and not ku.content_commitment):
        return Check("key_usage", False, "keyUsage lacks digitalSignature"
                     + (" / nonRepudiation" if required is Purpose.SIGN else ""), code="wrong_purpose")
    return Check("key_usage", True, "keyUsage fits")


def check_validity(cert: x509.Certificate, at: datetime) -> Check:
    """notBefore within :data:`CLOCK_SKEW` after ``at`` (the JPKI profile puts notBefore at
    the moment of issuance: a certificate issued a moment ago by an issuer whose clock runs
    ahead is not "not yet valid"); notAfter gets none."""
    if at + CLOCK_SKEW < cert.not_valid_before_utc:
        return Check("validity", False, f"not valid before {cert.not_valid_before_utc}", code="not_yet_valid")
    if at > cert.not_valid_after_utc:
        return Check("validity", False, f"expired at {cert.not_valid_after_utc}", code="expired")
    return Check("validity", True, f"valid until {cert.not_valid_after_utc}")


#: How far a CRL's thisUpdate (or a certificate's notBefore) may lie after the relying
#: party's clock: the issuer's clock may run ahead, and a CRL made on request is stamped
#: after the relying party read its clock (the same allowance as for OCSP responses).
#: nextUpdate (and notAfter) get none.
CLOCK_SKEW = ca_crl.SKEW


def judge_crl(crl: x509.CertificateRevocationList, root: x509.Certificate, at: datetime
              ) -> Check | None:
    """Why a CRL cannot tell of ``root``'s certificates which are revoked at ``at`` (None:
    it can): its :func:`crl_refusal`, or its silence proves nothing (:func:`crl_incomplete`).
    The checks of the CRL itself, made once however many certificates are then looked up
    (each still against :func:`crl_scope`)."""
    return crl_refusal(crl, root, at) or crl_incomplete(crl)


def crl_refusal(crl: x509.CertificateRevocationList, root: x509.Certificate, at: datetime
                ) -> Check | None:
    """Why nothing on a CRL can be believed at ``at`` (None: its entries can), by the rules
    of :func:`protocols.crl.refusal_of` (not signed by ``root``, not current, extensions
    that keep it from use), in this verdict's words."""
    why = ca_crl.refusal_of(crl, root, at, what="the certificate's root")
    if why is None:
        return None
    if why.kind in ("issuer", "signature"):
        return unavailable("CRL is not signed by the certificate's root")
    if why.kind == "future":
        return unavailable(f"CRL is not current: thisUpdate {ca_crl.text(crl.last_update_utc)} "
                           f"is more than {CLOCK_SKEW} after {ca_crl.text(at)}")
    if why.kind == "expired":
        return unavailable(f"CRL is not current: nextUpdate {ca_crl.text(crl.next_update_utc)} passed")
    return unavailable(f"CRL cannot be used: {why.text}")


def crl_incomplete(crl: x509.CertificateRevocationList) -> Check | None:
    """Why a certificate missing from a CRL is not thereby "good" (None: it is): no
    nextUpdate, or onlySomeReasons (:func:`protocols.crl.incomplete`)."""
    why = ca_crl.incomplete(crl)
    return unavailable(f"CRL is incomplete: {why}") if why else None


def crl_scope(cert: x509.Certificate, crl: x509.CertificateRevocationList) -> Check | None:
    """Why ``crl`` does not speak for ``cert`` (None: it does): its issuingDistributionPoint
    names none of the certificate's distribution points (another partition's CRL), or its
    only* flags leave the certificate out (:func:`protocols.crl.scope`)."""
    why = ca_crl.scope(cert, crl)
    return unavailable(f"different CRL scope: {why}") if why else None


def crl_invalidity(entry: x509.RevokedCertificate) -> datetime | None:
    """The entry's invalidityDate (RFC 5280 5.3.2), in UTC, or None when it gives none."""
    try:
        return entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc
    except x509.ExtensionNotFound:
        return None


def crl_reason(entry: x509.RevokedCertificate) -> str:
    """The entry's CRLReason by its RFC 5280 name (``unspecified`` when it gives none)."""
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except x509.ExtensionNotFound:
        return "unspecified"


#: How a hold reads in a verdict: a suspension that a release may lift, not a revocation.
HOLD = "on hold (certificateHold: the card or phone was reported lost; a release may lift it)"


def utc_text(t: datetime) -> str:
    """A time in a verdict, its ``revoked_at`` and its reasons alike: ISO 8601 with the UTC
    offset, ``2026-11-23T01:02:03+00:00`` (specs/cli.md "Names")."""
    return t.astimezone(UTC).isoformat()


#: How an invalidity date reads in a verdict, after its time.
INVALID_SINCE = "(invalidityDate: out of the holder's control from then, on hold or compromised)"


def revoked_text(reason: str, at: datetime, invalid_since: datetime | None = None) -> str:
    """A verified "revoked" in a verdict: ``revoked (<reason>) at <time>``, with ``, invalid
    since <time> (invalidityDate: ...)`` when the answer gives an invalidity date before it,
    or for certificateHold :data:`HOLD` ``since <time>`` (specs/revocation.md 1: the one
    reason that is not final); the times as :func:`utc_text` writes them, whether an OCSP
    answer or a CRL entry said them."""
    if reason == "certificateHold":
        return f"{HOLD} since {utc_text(at)}"
    since = (f", invalid since {utc_text(invalid_since)} {INVALID_SINCE}"
             if invalid_since is not None and invalid_since < at else "")
    return f"revoked ({reason}) at {utc_text(at)}{since}"


def check_crl(cert: x509.Certificate, root: x509.Certificate,
              crl: x509.CertificateRevocationList, at: datetime) -> Check:
    """Revocation from a full CRL: signed by the root, current (thisUpdate within
    :data:`CLOCK_SKEW` of ``at``, nextUpdate not passed), usable (:func:`crl_refusal`), in
    scope (issuingDistributionPoint), then the entry. An entry for a final reason is
    believed from any such CRL (a revocation is never taken back); no entry ("good") only
    from a complete one (:func:`crl_incomplete`: a nextUpdate, every reason); a hold only
    from one with a nextUpdate (a hold may be lifted, and without one nothing says the list
    still stands)."""
    refused = crl_refusal(crl, root, at) or crl_scope(cert, crl)
    if refused is not None:
        return refused
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return crl_incomplete(crl) or Check("revocation", True, "not on the CRL", code="good")
    reason = crl_reason(entry)
    if reason == "certificateHold" and crl.next_update_utc is None:
        return unavailable("CRL lists the certificate on hold but has no nextUpdate (RFC 5280 5.1.2.5 requires "
                           "one): nothing says the hold was not lifted since")
    invalid_since = crl_invalidity(entry)
    return revoked_check(reason, entry.revocation_date_utc,
                         revoked_text(reason, entry.revocation_date_utc, invalid_since), invalid_since)


@dataclass(frozen=True)
class VerificationResult:
    valid: bool
    checks: tuple[Check, ...]
    signer_certificate: x509.Certificate | None
    purpose: Purpose | None
    basic_four: BasicFour | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "valid": self.valid,
            "checks": [c.to_dict() for c in self.checks],
            "purpose": self.purpose.value if self.purpose else None,
        }
        if self.signer_certificate is not None:
            out["signer"] = {"subject": self.signer_certificate.subject.rfc4514_string(),
                             "serial": self.signer_certificate.serial_number}
        if self.basic_four is not None:
            bf = self.basic_four
            out["basic_four"] = {"name": bf.name, "sex": bf.sex.value,
                                 "birth_date": bf.birth_date.date.isoformat(),
                                 "address": bf.address}
        return out


def verify_signed_content(signature: bytes, content: bytes, *,
                          roots: Sequence[x509.Certificate], required: Purpose, at: datetime,
                          arc: PolicyArc | None = None,
                          crl: x509.CertificateRevocationList | None = None
                          ) -> VerificationResult:
    """Signature, chain to one of `roots` (by AKI), policy, key usage, validity, and (if
    given) the CRL; never raises on bad input, a failed step is a failed check."""
    checks: list[Check] = []
    try:
        sig = verify_detached_signature(signature, content)
    except JpkiError as exc:
        checks.append(Check("signature", False, str(exc), code="bad_signature"))
        return VerificationResult(False, tuple(checks), None, None, None)
    cert = sig.signer_certificate
    checks.append(Check("signature", True, f"{sig.digest_algorithm} signature verifies"))
    chain, root = check_chain(cert, roots, at)
    checks += [chain, check_policy(cert, required, arc), check_key_usage(cert, required),
               check_validity(cert, at)]
    if crl is not None:
        checks.append(check_crl(cert, root, crl, at) if root is not None
                      else Check("revocation", False, "no root to check the CRL against", code="failed"))
    purpose = None
    try:
        purpose = classify(cert, arc)
    except JpkiError:
        pass
    basic_four = None
    if purpose is Purpose.SIGN:
        try:
            basic_four = read_basic_four(cert)
        except JpkiError as exc:
            checks.append(Check("basic_four", False, str(exc)))
    return VerificationResult(all(c.passed for c in checks), tuple(checks), cert, purpose,
                              basic_four)
