"""Builders of the JPKI certificates (RFC 5280 profile; J-LIS JPKI profile, TEST arc default).

* root CA per purpose, self-signed, several key generations under one name (SKI/AKI);
* signing certificate (署名用電子証明書): basic four data in subjectAltName otherNames;
* user-authentication certificate (利用者証明用電子証明書): no personal data;
* delegated OCSP responder certificate (RFC 6960 4.2.2.2).

Keys, serials and times are parameters; issuer keys are `cryptography` private key objects
(signing happens in :mod:`._signing` only); subject keys are public keys from the SE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from asn1crypto import core as asn1core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._signing import IssuerKey, sign_builder
from .era import JpkiBirthDate, decode_birth_date, encode_birth_date
from .errors import ProfileError
from .oids import (
    OID_ADDRESS,
    OID_ADDRESS_SUBSTITUTES,
    OID_BIRTH_DATE,
    OID_NAME,
    OID_NAME_SUBSTITUTES,
    OID_SEX,
)
from .profile import JpkiProfile, KeyType, Municipality, Purpose
from .validity import Validity

SubjectKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MAX_ADDRESS_CHARS = 200


class JpkiSex(enum.Enum):
    """Sex as the JPKI otherName writes it: 1 male, 2 female, 3 unknown."""

    MALE = "1"
    FEMALE = "2"
    UNKNOWN = "3"

    @classmethod
    def from_iso5218(cls, code: int) -> JpkiSex:
        """ISO/IEC 5218 (0 not known, 1 male, 2 female, 9 not applicable) to the JPKI code."""
        mapping = {0: cls.UNKNOWN, 1: cls.MALE, 2: cls.FEMALE, 9: cls.UNKNOWN}
        if code not in mapping:
            raise ProfileError(f"sex {code!r} is not an ISO/IEC 5218 code (0, 1, 2, 9)")
        return mapping[code]


def _check_substitutes(label: str, value: str, text: str) -> None:
    if not value.isascii() or any(c not in "01" for c in value):
        raise ProfileError(f"{label} {value!r} must be a string of '0'/'1' position flags")
    if len(value) > max(len(text), 1) * 4:
        raise ProfileError(f"{label} has {len(value)} flags for a {len(text)}-character value")


@dataclass(frozen=True)
class BasicFour:
    """The basic four data (基本4情報) of a signing certificate.

    `name` is "family<U+3000>given" as J-LIS writes it; the substitute strings flag, per
    character, whether it was replaced by a substitute character ('1') or not ('0')."""

    name: str
    sex: JpkiSex
    birth_date: JpkiBirthDate
    address: str
    name_substitutes: str
    address_substitutes: str

    @classmethod
    def of(cls, *, family_name: str, given_name: str, sex: JpkiSex, birth_date: date,
           address: str, name_substitutes: str | None = None,
           address_substitutes: str | None = None) -> BasicFour:
        """Build from holder fields; substitutes default to all '0' (none replaced)."""
        name = f"{family_name}\u3000{given_name}"
        return cls(
            name=name,
            sex=sex,
            birth_date=decode_birth_date(encode_birth_date(birth_date)),
            address=address,
            name_substitutes="0" * len(name) if name_substitutes is None else name_substitutes,
            address_substitutes=(
                "0" * len(address) if address_substitutes is None else address_substitutes
            ),
        )

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ProfileError("basic four: name is empty")
        if not self.address.strip():
            raise ProfileError("basic four: address is empty")
        if len(self.address) > MAX_ADDRESS_CHARS:
            raise ProfileError(
                f"basic four: address has {len(self.address)} characters, at most "
                f"{MAX_ADDRESS_CHARS}"
            )
        _check_substitutes("name_substitutes", self.name_substitutes, self.name)
        _check_substitutes("address_substitutes", self.address_substitutes, self.address)

    def other_names(self) -> list[x509.GeneralName]:
        """The six otherNames, in the order real certificates show them (1, 4, 3, 5, 2, 6)."""
        values = (
            (OID_NAME, self.name),
            (OID_BIRTH_DATE, self.birth_date.encode()),
            (OID_SEX, self.sex.value),
            (OID_ADDRESS, self.address),
            (OID_NAME_SUBSTITUTES, self.name_substitutes),
            (OID_ADDRESS_SUBSTITUTES, self.address_substitutes),
        )
        return [x509.OtherName(oid, asn1core.UTF8String(v).dump()) for oid, v in values]


def _check_serial(serial: int) -> None:
    if not isinstance(serial, int) or serial < 1 or serial.bit_length() > 159:
        raise ProfileError(f"serial {serial!r} must be a positive integer of at most 20 octets")


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_issuer(profile: JpkiProfile, purpose: Purpose, issuer: x509.Certificate,
                  issuer_key: IssuerKey) -> None:
    if issuer.subject != profile.root_name(purpose):
        raise ProfileError(
            f"issuer {issuer.subject.rfc4514_string()} is not the {purpose.value} root "
            f"{profile.root_name(purpose).rfc4514_string()} of this profile"
        )
    if _public_der(issuer.public_key()) != _public_der(issuer_key.public_key()):
        raise ProfileError("issuer_key does not belong to the issuer certificate")


def _check_subject_key(profile: JpkiProfile, key: object) -> None:
    if KeyType.of(key) is not profile.key_type:
        raise ProfileError(
            f"subject key is {KeyType.of(key).value}, the profile wants {profile.key_type.value}"
        )


def _check_subject_id(subject_id: str) -> None:
    if not subject_id or not subject_id.isascii() or not subject_id.isprintable():
        raise ProfileError(f"subject id {subject_id!r} must be non-empty printable ASCII")


def _ski(key: object) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)  # type: ignore[arg-type]


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def build_root_ca(*, profile: JpkiProfile, purpose: Purpose, key: IssuerKey, serial: int,
                  validity: Validity) -> x509.Certificate:
    """A self-signed root of one purpose and one key generation (same name, new key)."""
    _check_serial(serial)
    KeyType.of(key)
    name = profile.root_name(purpose)
    ski = _ski(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
    )
    return sign_builder(builder, key)


def _policies(profile: JpkiProfile, purpose: Purpose) -> x509.CertificatePolicies:
    qualifiers = [profile.cps_uri] if profile.cps_uri else None
    return x509.CertificatePolicies([x509.PolicyInformation(profile.arc.policy(purpose),
                                                            qualifiers)])


def _end_entity_builder(*, profile: JpkiProfile, purpose: Purpose, issuer: x509.Certificate,
                        issuer_key: IssuerKey, subject: x509.Name, subject_key: SubjectKey,
                        serial: int, validity: Validity, municipality: Municipality
                        ) -> x509.CertificateBuilder:
    _check_serial(serial)
    _check_issuer(profile, purpose, issuer, issuer_key)
    _check_subject_key(profile, subject_key)
    dp = x509.DistributionPoint(
        full_name=profile.crl_distribution_names(purpose, profile.partition_of(municipality)),
        relative_name=None, reasons=None, crl_issuer=None,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(subject_key)
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(_policies(profile, purpose), critical=True)
        .add_extension(x509.CRLDistributionPoints([dp]), critical=False)
        .add_extension(
            x509.AuthorityInformationAccess([
                x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(profile.ocsp_base_url),
                )
            ]),
            critical=False,
        )
        .add_extension(_aki(issuer), critical=False)
        .add_extension(_ski(subject_key), critical=False)
    )
    if profile.issuer_alt_organization:
        builder = builder.add_extension(
            x509.IssuerAlternativeName([x509.DirectoryName(x509.Name([
                x509.NameAttribute(NameOID.COUNTRY_NAME, profile.country),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, profile.issuer_alt_organization),
            ]))]),
            critical=False,
        )
    return builder


def build_signing_certificate(*, profile: JpkiProfile, issuer: x509.Certificate,
                              issuer_key: IssuerKey, subject_key: SubjectKey, serial: int,
                              validity: Validity, subject_id: str, municipality: Municipality,
                              basic_four: BasicFour) -> x509.Certificate:
    """Signing certificate: `C=JP, L=<prefecture>, L=<municipality>, CN=<subject_id>`,
    keyUsage digitalSignature + nonRepudiation (critical), the six otherNames."""
    _check_subject_id(subject_id)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, profile.country),
        x509.NameAttribute(NameOID.LOCALITY_NAME, municipality.prefecture),
        x509.NameAttribute(NameOID.LOCALITY_NAME, municipality.municipality),
        x509.NameAttribute(NameOID.COMMON_NAME, subject_id),
    ])
    builder = _end_entity_builder(
        profile=profile, purpose=Purpose.SIGN, issuer=issuer, issuer_key=issuer_key,
        subject=subject, subject_key=subject_key, serial=serial, validity=validity,
        municipality=municipality,
    )
    builder = builder.add_extension(
        x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
    ).add_extension(x509.SubjectAlternativeName(basic_four.other_names()), critical=False)
    return sign_builder(builder, issuer_key)


def build_auth_certificate(*, profile: JpkiProfile, issuer: x509.Certificate,
                           issuer_key: IssuerKey, subject_key: SubjectKey, serial: int,
                           validity: Validity, subject_id: str,
                           municipality: Municipality) -> x509.Certificate:
    """User-authentication certificate: `C=JP, CN=<subject_id>`, keyUsage digitalSignature,
    no personal data (the municipality only picks the CRL partition)."""
    _check_subject_id(subject_id)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, profile.country),
        x509.NameAttribute(NameOID.COMMON_NAME, subject_id),
    ])
    builder = _end_entity_builder(
        profile=profile, purpose=Purpose.AUTH, issuer=issuer, issuer_key=issuer_key,
        subject=subject, subject_key=subject_key, serial=serial, validity=validity,
        municipality=municipality,
    )
    builder = builder.add_extension(
        x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
    )
    return sign_builder(builder, issuer_key)


def build_ocsp_responder_certificate(*, profile: JpkiProfile, purpose: Purpose,
                                     issuer: x509.Certificate, issuer_key: IssuerKey,
                                     responder_key: SubjectKey, serial: int, validity: Validity,
                                     common_name: str = "OCSP Responder") -> x509.Certificate:
    """Delegated responder (RFC 6960 4.2.2.2): issued by the root whose certificates it
    answers for, EKU id-kp-OCSPSigning, id-pkix-ocsp-nocheck (4.2.2.2.1)."""
    _check_serial(serial)
    _check_issuer(profile, purpose, issuer, issuer_key)
    KeyType.of(responder_key)
    subject = x509.Name([*profile.root_name(purpose),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(responder_key)
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(_aki(issuer), critical=False)
        .add_extension(_ski(responder_key), critical=False)
    )
    return sign_builder(builder, issuer_key)
