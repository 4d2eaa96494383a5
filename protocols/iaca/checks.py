"""Profile validators for the mdoc issuer PKI (ISO/IEC 18013-5:2021 Annex B).

Each validator returns one :class:`Check` per rule, passed or not, so a reader can put
them into its verdict as they are. Rules for the IACA follow Table B.1, for the document
signer Table B.3; the status-list signer is the document signer profile with its own EKU
(see :mod:`protocols.iaca.oids`); a reader authentication certificate B.1.7. A malformed certificate yields failed checks, never an
exception.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from protocols.certs import critical_refusal
from protocols.iaca.builders import DS_MAX_VALIDITY, IACA_MAX_VALIDITY, READER_MAX_VALIDITY
from protocols.iaca.oids import (
    DISALLOWED_EXTENSIONS,
    EKU_MDL_DS,
    EKU_MDL_READER_AUTH,
    EKU_STATUS_LIST_SIGNER,
)

_ECDSA_SIGNATURES = (
    SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    SignatureAlgorithmOID.ECDSA_WITH_SHA512,
)
_CURVES = ("secp256r1", "secp384r1", "secp521r1")


@dataclass(frozen=True)
class Check:
    """One named verification step: ``passed`` and why (``reason``)."""

    name: str
    passed: bool
    reason: str


class _Fail(Exception):
    """Raised inside a rule to fail it with a reason."""


def _run(name: str, rule: Callable[[], str]) -> Check:
    try:
        reason = rule()
    except _Fail as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - a malformed certificate fails the rule, never crashes
        return Check(name, False, f"unreadable: {type(exc).__name__}: {exc}")
    # Check(name, True, reason) without the frozen __init__ (one object.__setattr__ per field;
    # a reader's cold DS chain runs 27 rules): equal, hashed and frozen alike (tests/test_iaca_profiles.py)
    check = object.__new__(Check)
    check.__dict__.update(name=name, passed=True, reason=reason)
    return check


class _Extensions:
    """A certificate's extensions by class, read in one pass at the first lookup (each
    ``get_extension_for_class`` walks them all again; a DS profile asks for seven)."""

    __slots__ = ("cert", "_by_class")

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self._by_class: dict[type, x509.Extension] | None = None

    def value(self, cls: type, critical: bool):
        """The extension's value; fails the rule when it is missing or its critical flag
        is not ``critical``."""
        by_class = self._by_class
        if by_class is None:
            by_class = {}
            for ext in self.cert.extensions:  # raises on a malformed extension: the rule fails
                by_class.setdefault(type(ext.value), ext)  # the first, as get_extension_for_class
            self._by_class = by_class
        ext = by_class.get(cls)
        if ext is None:
            raise _Fail(f"{cls.__name__} extension missing")
        if ext.critical != critical:
            raise _Fail(f"{cls.__name__} must be {'critical' if critical else 'non-critical'}")
        return ext.value


def _name_uri_or_email(names, what: str) -> str:
    # never empty: GeneralNames is SIZE (1..MAX), and cryptography refuses to parse (or to
    # build) an empty one, which fails the rule as a malformed extension
    values = list(names)
    for name in values:
        if not isinstance(name, x509.UniformResourceIdentifier | x509.RFC822Name):
            raise _Fail(f"{what} holds a {type(name).__name__}: only URI or rfc822Name allowed")
    return ", ".join(str(n.value) for n in values)


def _aware(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise TypeError(f"now must be an aware datetime, got naive {now!r}")
    return now.astimezone(dt.UTC)


# -- rules shared by both profiles -------------------------------------------------------


def _version(cert: x509.Certificate) -> str:
    if cert.version != x509.Version.v3:
        raise _Fail(f"version {cert.version.name}, need v3")
    return "v3"


def _serial(cert: x509.Certificate) -> str:
    serial = cert.serial_number
    if serial <= 0:
        raise _Fail(f"serial number {serial} is not positive")
    if (serial.bit_length() + 8) // 8 > 20:
        raise _Fail("serial number longer than 20 octets")
    if serial.bit_length() < 63:
        raise _Fail(f"serial number has {serial.bit_length()} bits: too few to be unpredictable")
    return f"serial {serial:x}"


def _key(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _CURVES:
        raise _Fail(f"public key {type(key).__name__} is not EC P-256/384/521")
    if cert.signature_algorithm_oid not in _ECDSA_SIGNATURES:
        raise _Fail(f"signature algorithm {cert.signature_algorithm_oid.dotted_string} is not ECDSA")
    return f"{key.curve.name}, {cert.signature_algorithm_oid._name}"


def _validity_at(cert: x509.Certificate, now: dt.datetime) -> str:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not start <= now <= end:
        raise _Fail(f"{now.isoformat()} is outside {start.isoformat()}..{end.isoformat()}")
    return f"valid {start.isoformat()}..{end.isoformat()}"


def _period(cert: x509.Certificate, limit: dt.timedelta) -> str:
    period = cert.not_valid_after_utc - cert.not_valid_before_utc
    if period > limit:
        raise _Fail(f"validity period {period.days} days exceeds {limit.days} days")
    return f"{period.days} days"


def _ian(exts: _Extensions) -> str:
    return _name_uri_or_email(exts.value(x509.IssuerAlternativeName, critical=False), "issuerAltName")


def _crldp(exts: _Extensions) -> str:
    points = list(exts.value(x509.CRLDistributionPoints, critical=False))
    if not points:
        raise _Fail("no CRL distribution point")
    out = []
    for point in points:
        if point.reasons is not None or point.crl_issuer is not None:
            raise _Fail("a CRL distribution point has reasons or cRLIssuer")
        if not point.full_name:
            raise _Fail("a CRL distribution point has no fullName")
        out.append(_name_uri_or_email(point.full_name, "CRL distribution point"))
    return "; ".join(out)


def _ski(exts: _Extensions) -> str:
    return exts.value(x509.SubjectKeyIdentifier, critical=False).digest.hex()


def _country(cert: x509.Certificate, country: str | None) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    if len(values) != 1:
        raise _Fail(f"subject must have one countryName, has {len(values)}")
    value = str(values[0].value)
    if country is not None and value != country:
        raise _Fail(f"subject country {value!r}, expected {country!r}")
    if not cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise _Fail("subject has no commonName")
    return f"C={value}"


# -- IACA --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IacaProfile:
    """The Table B.1 rules of one IACA that do not depend on the time, worked out once.

    An IACA is a trust anchor: a reader meets the same few at every verification, and all
    its rules but ``iaca.validity`` (its self-signature included) are a pure function of
    the certificate. :meth:`at` adds the validity at a given time and gives what
    :func:`check_iaca` gives for that time, in the same order."""

    certificate: x509.Certificate
    rules: tuple[Check, ...]
    """Every rule but ``iaca.validity``, in Table B.1 order."""

    def at(self, now: dt.datetime) -> list[Check]:
        """All the rules of :func:`check_iaca` at ``now`` (an aware datetime)."""
        now = _aware(now)
        cert = self.certificate
        rules = self.rules
        return [*rules[:_IACA_VALIDITY_AT], _run("iaca.validity", lambda: _validity_at(cert, now)),
                *rules[_IACA_VALIDITY_AT:]]


_IACA_VALIDITY_AT = 5
"""Where ``iaca.validity`` stands among the Table B.1 rules (after ``iaca.self_signed``)."""


def iaca_profile(cert: x509.Certificate, *, country: str | None = "JP") -> IacaProfile:
    """The time-independent Table B.1 rules for the IACA root ``cert`` (see :class:`IacaProfile`)."""
    exts = _Extensions(cert)

    def self_signed() -> str:
        if cert.issuer != cert.subject:
            raise _Fail("issuer differs from subject")
        from protocols.mdoc.chain import certainly_issued_by  # (the mdoc chain check's ECDSA path)

        if certainly_issued_by(cert, cert):  # else cryptography decides and explains
            return "self-signed"
        try:
            cert.verify_directly_issued_by(cert)
        except Exception as exc:  # noqa: BLE001 - any failure to verify is a failed rule
            raise _Fail(f"self-signature does not verify: {exc or type(exc).__name__}") from None
        return "self-signed"

    def basic_constraints() -> str:
        bc = exts.value(x509.BasicConstraints, critical=True)
        if not bc.ca or bc.path_length != 0:
            raise _Fail(f"need CA=true, pathLen=0; got CA={bc.ca}, pathLen={bc.path_length}")
        return "CA, pathLen 0"

    def key_usage() -> str:
        ku = exts.value(x509.KeyUsage, critical=True)
        if not (ku.key_cert_sign and ku.crl_sign):
            raise _Fail("keyCertSign and cRLSign must both be set")
        if ku.digital_signature or ku.content_commitment or ku.key_encipherment or \
                ku.data_encipherment or ku.key_agreement:
            raise _Fail("key usages beyond keyCertSign and cRLSign are set")
        return "keyCertSign, cRLSign"

    def disallowed() -> str:
        present = [e.oid.dotted_string for e in cert.extensions if e.oid in DISALLOWED_EXTENSIONS]
        if present:
            raise _Fail(f"extensions not allowed in an IACA: {', '.join(present)}")
        return "none present"

    rules = (
        _run("iaca.version", lambda: _version(cert)),
        _run("iaca.serial_number", lambda: _serial(cert)),
        _run("iaca.key", lambda: _key(cert)),
        _run("iaca.subject", lambda: _country(cert, country)),
        _run("iaca.self_signed", self_signed),
        # iaca.validity goes here (_IACA_VALIDITY_AT): IacaProfile.at
        _run("iaca.validity_period", lambda: _period(cert, IACA_MAX_VALIDITY)),
        _run("iaca.basic_constraints", basic_constraints),
        _run("iaca.key_usage", key_usage),
        _run("iaca.subject_key_identifier", lambda: _ski(exts)),
        _run("iaca.issuer_alt_name", lambda: _ian(exts)),
        _run("iaca.crl_distribution_points", lambda: _crldp(exts)),
        _run("iaca.disallowed_extensions", disallowed),
    )
    return IacaProfile(cert, rules)


def check_iaca(cert: x509.Certificate, now: dt.datetime, *, country: str | None = "JP") -> list[Check]:
    """Table B.1 rules for an IACA root certificate at time ``now``."""
    now = _aware(now)
    return iaca_profile(cert, country=country).at(now)


# -- document signer and status-list signer ----------------------------------------------


def _check_signer(
    cert: x509.Certificate, iaca: x509.Certificate, now: dt.datetime, prefix: str,
    eku: x509.ObjectIdentifier, signature_verified: bool = False, *, reader: bool = False,
) -> list[Check]:
    """The signer rules under ``iaca``: Table B.3's (a document signer, a status-list
    signer), or with ``reader`` B.1.7's for a reader authentication certificate under its
    reader CA (at most 1187 days; no issuerAltName or CRL distribution point required, no
    country tied to the CA's; the reader EKU among others allowed)."""
    now = _aware(now)
    exts = _Extensions(cert)
    ca = "reader CA" if reader else "IACA"

    def issued_by() -> str:
        if cert.issuer != iaca.subject:
            raise _Fail(f"issuer {cert.issuer.rfc4514_string()} is not the {ca} "
                        f"{iaca.subject.rfc4514_string()}")
        if signature_verified:  # the caller's chain check verified this very pair directly
            return f"issued by {iaca.subject.rfc4514_string()}"
        try:
            cert.verify_directly_issued_by(iaca)
        except Exception as exc:  # noqa: BLE001 - any failure to verify is a failed rule
            raise _Fail(f"signature by the {ca} does not verify: {exc or type(exc).__name__}") from None
        return f"issued by {iaca.subject.rfc4514_string()}"

    def aki() -> str:
        value = exts.value(x509.AuthorityKeyIdentifier, critical=False)
        try:
            iaca_ski = iaca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            raise _Fail(f"the {ca} has no subjectKeyIdentifier to match") from None
        if value.key_identifier != iaca_ski.digest:
            raise _Fail(f"authorityKeyIdentifier does not match the {ca}'s subjectKeyIdentifier")
        return value.key_identifier.hex()

    def key_usage() -> str:
        ku = exts.value(x509.KeyUsage, critical=True)
        if not ku.digital_signature or ku.key_cert_sign or ku.crl_sign or ku.content_commitment \
                or ku.key_encipherment or ku.data_encipherment or ku.key_agreement:
            raise _Fail("keyUsage must be digitalSignature only")
        return "digitalSignature"

    def extended_key_usage() -> str:
        usages = list(exts.value(x509.ExtendedKeyUsage, critical=True))
        if (eku not in usages) if reader else (usages != [eku]):
            raise _Fail(f"extKeyUsage {[u.dotted_string for u in usages]}, need [{eku.dotted_string}]")
        return eku.dotted_string

    def country() -> str:
        if reader:
            if not cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
                raise _Fail("subject has no commonName")
            return cert.subject.rfc4514_string()
        mine = cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        theirs = iaca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        if [a.value for a in mine] != [a.value for a in theirs] or not mine:
            raise _Fail("subject countryName differs from the IACA's")
        states = cert.subject.get_attributes_for_oid(NameOID.STATE_OR_PROVINCE_NAME)
        if states and [a.value for a in states] != [
            a.value for a in iaca.subject.get_attributes_for_oid(NameOID.STATE_OR_PROVINCE_NAME)
        ]:
            raise _Fail("subject stateOrProvinceName differs from the IACA's")
        if not cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            raise _Fail("subject has no commonName")
        return f"C={mine[0].value}"

    def within_iaca() -> str:
        if cert.not_valid_before_utc < iaca.not_valid_before_utc or \
                cert.not_valid_after_utc > iaca.not_valid_after_utc:
            raise _Fail(f"validity is not within the {ca}'s validity")
        return f"within the {ca}'s validity"

    rules = [
        _run(f"{prefix}.version", lambda: _version(cert)),
        _run(f"{prefix}.serial_number", lambda: _serial(cert)),
        _run(f"{prefix}.key", lambda: _key(cert)),
        _run(f"{prefix}.subject", country),
        _run(f"{prefix}.issued_by_{'ca' if reader else 'iaca'}", issued_by),
        _run(f"{prefix}.validity", lambda: _validity_at(cert, now)),
        _run(f"{prefix}.validity_period", lambda: _period(cert, READER_MAX_VALIDITY if reader else DS_MAX_VALIDITY)),
        _run(f"{prefix}.validity_within_{'ca' if reader else 'iaca'}", within_iaca),
        _run(f"{prefix}.key_usage", key_usage),
        _run(f"{prefix}.extended_key_usage", extended_key_usage),
        _run(f"{prefix}.authority_key_identifier", aki),
        _run(f"{prefix}.subject_key_identifier", lambda: _ski(exts)),
    ]
    if not reader:
        rules += [_run(f"{prefix}.issuer_alt_name", lambda: _ian(exts)),
                  _run(f"{prefix}.crl_distribution_points", lambda: _crldp(exts))]
    return rules


def check_document_signer(cert: x509.Certificate, iaca: x509.Certificate, now: dt.datetime, *,
                          signature_verified: bool = False) -> list[Check]:
    """Table B.3 rules for a document signer certificate under ``iaca`` at time ``now``.

    ``signature_verified=True`` only when the caller itself verified, for these very two
    certificates, that ``iaca`` directly issued ``cert`` (issuer Name and signature; e.g. a
    :class:`protocols.mdoc.VerifiedChain` with ``leaf_issued_by_anchor``): ``issued_by_iaca``
    then checks the Names and does not verify the same signature a second time."""
    return _check_signer(cert, iaca, now, "ds", EKU_MDL_DS, signature_verified)


def check_status_list_signer(
    cert: x509.Certificate, iaca: x509.Certificate, now: dt.datetime, *,
    eku: x509.ObjectIdentifier = EKU_STATUS_LIST_SIGNER,
) -> list[Check]:
    """The document signer rules with the status-list EKU (``specs/status-list.md``), and
    no extension marked critical that is not processed here (RFC 5280 4.2; the same list as
    an mdoc x5chain's, :data:`protocols.mdoc.chain.PATH_EXTENSIONS`, which a document
    signer's chain check applies)."""
    from protocols.mdoc.chain import PATH_EXTENSIONS

    def critical() -> str:
        why = critical_refusal(cert, PATH_EXTENSIONS)
        if why:
            raise _Fail(why)
        return "no unprocessed critical extension"

    return [*_check_signer(cert, iaca, now, "status_signer", eku), _run("status_signer.critical_extensions", critical)]


def check_reader_certificate(cert: x509.Certificate, reader_ca: x509.Certificate, now: dt.datetime) -> list[Check]:
    """Annex B.1.7 rules for a reader authentication certificate under ``reader_ca``: v3,
    an unpredictable serial, an EC key, a commonName, issued by the CA (names, signature, AKI
    = its SKI, inside its validity), valid at ``now`` for at most 1187 days, keyUsage
    digitalSignature (critical) and EKU 1.0.18013.5.1.6 (critical), an SKI."""
    return _check_signer(cert, reader_ca, now, "reader", EKU_MDL_READER_AUTH, reader=True)


def failed(checks: list[Check]) -> list[Check]:
    """The checks that did not pass."""
    return [c for c in checks if not c.passed]
