"""Read JPKI certificates back: the basic four data, and signing/auth by policy.

Parsers are strict and raise only :class:`CertificateFormatError` (or its subclass
:class:`BirthDateError`) on anything they do not recognise.
"""

from __future__ import annotations

from asn1crypto import core as asn1core
from cryptography import x509

from protocols import certs

from .certificates import BasicFour, JpkiSex
from .era import decode_birth_date
from .errors import CertificateFormatError, JpkiError
from .oids import (
    OID_ADDRESS,
    OID_ADDRESS_SUBSTITUTES,
    OID_BIRTH_DATE,
    OID_NAME,
    OID_NAME_SUBSTITUTES,
    OID_SEX,
    POLICY_AUTH,
    POLICY_SIGNING,
    TEST_POLICY_AUTH,
    TEST_POLICY_SIGNING,
)
from .profile import PRODUCTION_ARC, TEST_ARC, PolicyArc, Purpose

_FIELDS = {
    OID_NAME: "name",
    OID_NAME_SUBSTITUTES: "name_substitutes",
    OID_SEX: "sex",
    OID_BIRTH_DATE: "birth_date",
    OID_ADDRESS: "address",
    OID_ADDRESS_SUBSTITUTES: "address_substitutes",
}


def load_certificate(data: bytes) -> x509.Certificate:
    """DER or PEM to a certificate, CertificateFormatError otherwise."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return certs.load_pem_all(data)[0]
        return certs.load_der(data)
    except certs.CertificateParseError as exc:
        raise CertificateFormatError(f"not an X.509 certificate: {exc}") from None


def _utf8(oid: x509.ObjectIdentifier, value: bytes) -> str:
    try:
        parsed = asn1core.UTF8String.load(value, strict=True)
        text = parsed.native
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CertificateFormatError(
            f"otherName {oid.dotted_string} is not a DER UTF8String: {exc}"
        ) from None
    if not isinstance(text, str):
        raise CertificateFormatError(f"otherName {oid.dotted_string} is not a UTF8String")
    return text


def read_basic_four(certificate: x509.Certificate | bytes) -> BasicFour:
    """The basic four data of a signing certificate (subjectAltName otherNames 8.5.5.1-6)."""
    cert = load_certificate(certificate) if isinstance(certificate, bytes) else certificate
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateFormatError("certificate has no subjectAltName: not a signing "
                                     "certificate") from None
    except ValueError as exc:
        raise CertificateFormatError(f"certificate extensions do not parse: {exc}") from None
    values: dict[str, str] = {}
    for other in san.get_values_for_type(x509.OtherName):
        field = _FIELDS.get(other.type_id)
        if field is None:
            continue
        if field in values:
            raise CertificateFormatError(f"otherName {other.type_id.dotted_string} appears twice")
        values[field] = _utf8(other.type_id, other.value)
    missing = [f for f in _FIELDS.values() if f not in values]
    if missing:
        raise CertificateFormatError(f"subjectAltName lacks the otherNames {', '.join(missing)}")
    try:
        sex = JpkiSex(values["sex"])
    except ValueError:
        raise CertificateFormatError(f"sex {values['sex']!r} is not 1, 2 or 3") from None
    try:
        return BasicFour(
            name=values["name"],
            sex=sex,
            birth_date=decode_birth_date(values["birth_date"]),
            address=values["address"],
            name_substitutes=values["name_substitutes"],
            address_substitutes=values["address_substitutes"],
        )
    except CertificateFormatError:
        raise
    except JpkiError as exc:
        raise CertificateFormatError(f"basic four data invalid: {exc}") from None


def certificate_policies(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return frozenset()
    except ValueError as exc:
        raise CertificateFormatError(f"certificate extensions do not parse: {exc}") from None
    return frozenset(p.policy_identifier for p in ext)


def classify(cert: x509.Certificate, arc: PolicyArc | None = None) -> Purpose:
    """SIGN or AUTH from the certificate policy of `arc` (default: TEST or production arc).

    A certificate carrying both or neither policy is refused."""
    arcs = (arc,) if arc is not None else (TEST_ARC, PRODUCTION_ARC)
    policies = certificate_policies(cert)
    found = {
        purpose
        for a in arcs
        for purpose in Purpose
        if a.policy(purpose) in policies
    }
    if len(found) != 1:
        known = ", ".join(o.dotted_string for o in (POLICY_SIGNING, POLICY_AUTH,
                                                     TEST_POLICY_SIGNING, TEST_POLICY_AUTH))
        raise CertificateFormatError(
            f"certificate policies {sorted(p.dotted_string for p in policies)} name "
            f"{'both purposes' if found else 'no JPKI purpose'} (known: {known})"
        )
    return found.pop()
