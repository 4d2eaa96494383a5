"""Builders for the mdoc issuer PKI: IACA root, document signer, status-list signer.

ISO/IEC 18013-5:2021 Annex B: Table B.1 (IACA root certificate) and Table B.3 (document
signer certificate). Each builder returns an unsigned :class:`x509.CertificateBuilder`, so
the issuer's key stays behind its signing interface (``Signer.sign_certificate``);
:func:`sign` does the same for an in-memory key (tests, tools).

Profile choices (see ``specs/status-list.md`` for the status-list signer):

* IACA: self-signed, basicConstraints critical CA pathlen 0, keyUsage critical keyCertSign
  + cRLSign, SKI, issuerAltName (URI), CRL distribution point (URI), subject C=JP + CN.
* Document signer: keyUsage critical digitalSignature, extKeyUsage critical
  1.0.18013.5.1.2, AKI = the IACA's SKI, SKI, issuerAltName copied from the IACA, CRL
  distribution point, subject C (the IACA's) + CN, validity inside the IACA's and at most
  :data:`DS_MAX_VALIDITY`.
* Status-list signer: the document signer profile with the status-list EKU instead.
* Reader CA (the root a wallet trusts for readerAuth; the 2021 edition sets no profile for
  it): self-signed, basicConstraints critical CA pathlen 0, keyUsage critical keyCertSign +
  cRLSign, SKI, CRL distribution point when given, subject C + CN.
* Reader authentication certificate (Annex B.1.7): keyUsage critical digitalSignature,
  extKeyUsage critical 1.0.18013.5.1.6, AKI = the reader CA's SKI, SKI, subjectAltName DNS
  names when given (a verifier's ``x509_san_dns`` client_id), CRL distribution point when
  given, validity inside the CA's and at most :data:`READER_MAX_VALIDITY` (1187 days).
* VICAL CA (the root a reader trusts for VICALs; Annex C sets no profile for it): the reader
  CA's profile. VICAL signer (Annex C.1.7.2): keyUsage critical digitalSignature,
  extKeyUsage critical 1.0.18013.5.1.8, AKI = the VICAL CA's SKI, SKI, the VICAL CA's CRL
  distribution point (a URI, as the profile asks) when given, validity inside the CA's and
  at most :data:`DS_MAX_VALIDITY`.
* ES256 (P-256 / SHA-256) by default, ES384 (P-384 / SHA-384) and P-521 available.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.iaca.errors import IacaProfileError
from protocols.iaca.oids import (
    EKU_MDL_DS,
    EKU_MDL_READER_AUTH,
    EKU_MDL_VICAL_SIGNER,
    EKU_STATUS_LIST_SIGNER,
)

IACA_MAX_VALIDITY = dt.timedelta(days=20 * 365 + 5)  # Annex B: at most 20 years
DS_MAX_VALIDITY = dt.timedelta(days=457)  # Annex B: at most 457 days
READER_MAX_VALIDITY = dt.timedelta(days=1187)  # Annex B.1.7: at most 1187 days
_CURVES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}


def hash_for_key(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    """SHA-256 for P-256 (ES256), SHA-384 for P-384 (ES384), SHA-512 for P-521."""
    if not isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        raise IacaProfileError(f"Annex B keys are EC keys, got {type(key).__name__}")
    try:
        return _CURVES[key.curve.name]()
    except KeyError:
        raise IacaProfileError(f"unsupported curve {key.curve.name}: P-256, P-384 or P-521") from None


def sign(builder: x509.CertificateBuilder, private_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """Sign ``builder`` with an in-memory EC key, hashing as :func:`hash_for_key` says."""
    return builder.sign(private_key, hash_for_key(private_key))


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise IacaProfileError(f"{what} must be an aware datetime, got naive {value!r}")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _window(not_before: dt.datetime, not_after: dt.datetime, limit: dt.timedelta, what: str):
    start, end = _aware(not_before, f"{what} not_before"), _aware(not_after, f"{what} not_after")
    if end <= start:
        raise IacaProfileError(f"{what}: not_after {end} is not after not_before {start}")
    if end - start > limit:
        raise IacaProfileError(f"{what}: validity {end - start} exceeds the Annex B limit {limit}")
    return start, end


def _name(country: str, common_name: str, organization: str | None, state: str | None) -> x509.Name:
    if len(country) != 2 or not country.isascii() or not country.isalpha() or not country.isupper():
        raise IacaProfileError(f"country must be an ISO 3166-1 alpha-2 code, got {country!r}")
    if not common_name:
        raise IacaProfileError("common_name must not be empty")
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)]
    if state:
        attrs.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, state))
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _crl_dp(crl_uri: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_uri)], None, None, None)]
    )


_KU_CA = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                       encipher_only=False, decipher_only=False)
"""keyCertSign + cRLSign: an IACA's, a reader CA's"""
_KU_SIGN = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)
"""digitalSignature: a document signer's, a status-list signer's, a reader's"""


def _root(public_key: ec.EllipticCurvePublicKey, name: x509.Name, start: dt.datetime, end: dt.datetime,
          serial_number: int | None) -> x509.CertificateBuilder:
    """A self-signed CA of path length 0 (keyCertSign + cRLSign, SKI): an IACA's or a reader CA's skeleton."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_KU_CA, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf(public_key: ec.EllipticCurvePublicKey, issuer: x509.Name, subject: x509.Name, start: dt.datetime,
          end: dt.datetime, serial_number: int | None, eku: x509.ObjectIdentifier,
          issuer_ski: x509.SubjectKeyIdentifier) -> x509.CertificateBuilder:
    """An end-entity signer (digitalSignature, one critical EKU, AKI, SKI): a document
    signer's, a status-list signer's or a reader's skeleton."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(_KU_SIGN, critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _issued_by(public_key: ec.EllipticCurvePublicKey, ca: x509.Certificate, ca_name: str, what: str,
               common_name: str, not_before: dt.datetime, not_after: dt.datetime, limit: dt.timedelta,
               organization: str | None, serial_number: int | None,
               eku: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    """A :func:`_leaf` under a CA that is not an IACA (a reader CA, a VICAL CA): validity
    within the CA's and at most ``limit``, AKI from the CA's SKI, subject C the CA's (JP when
    it names none) + CN."""
    _check_key(public_key, what)
    start, end = _window(not_before, not_after, limit, what)
    if start < ca.not_valid_before_utc or end > ca.not_valid_after_utc:
        raise IacaProfileError(
            f"{what}: validity {start}..{end} is not within the {ca_name}'s "
            f"{ca.not_valid_before_utc}..{ca.not_valid_after_utc}"
        )
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise IacaProfileError(f"{what}: the {ca_name} certificate has no subjectKeyIdentifier") from None
    countries = ca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    subject = _name(str(countries[0].value) if countries else "JP", common_name, organization, None)
    return _leaf(public_key, ca.subject, subject, start, end, serial_number, eku, ski)


def _check_key(public_key: object, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise IacaProfileError(f"{what}: Annex B needs an EC public key, got {type(public_key).__name__}")
    hash_for_key(public_key)
    return public_key


def iaca_builder(
    public_key: ec.EllipticCurvePublicKey,
    *,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    issuer_alt_name_uri: str,
    crl_uri: str,
    country: str = "JP",
    organization: str | None = None,
    state: str | None = None,
    serial_number: int | None = None,
) -> x509.CertificateBuilder:
    """An IACA root certificate (Table B.1), self-signed by the key of ``public_key``."""
    _check_key(public_key, "IACA")
    start, end = _window(not_before, not_after, IACA_MAX_VALIDITY, "IACA")
    return (
        _root(public_key, _name(country, common_name, organization, state), start, end, serial_number)
        .add_extension(
            x509.IssuerAlternativeName([x509.UniformResourceIdentifier(issuer_alt_name_uri)]),
            critical=False,
        )
        .add_extension(_crl_dp(crl_uri), critical=False)
    )


def _signer_builder(
    public_key: ec.EllipticCurvePublicKey,
    iaca: x509.Certificate,
    *,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    crl_uri: str,
    eku: x509.ObjectIdentifier,
    organization: str | None,
    serial_number: int | None,
    what: str,
) -> x509.CertificateBuilder:
    _check_key(public_key, what)
    start, end = _window(not_before, not_after, DS_MAX_VALIDITY, what)
    if start < iaca.not_valid_before_utc or end > iaca.not_valid_after_utc:
        raise IacaProfileError(
            f"{what}: validity {start}..{end} is not within the IACA's "
            f"{iaca.not_valid_before_utc}..{iaca.not_valid_after_utc}"
        )
    countries = iaca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    states = iaca.subject.get_attributes_for_oid(NameOID.STATE_OR_PROVINCE_NAME)
    if not countries:
        raise IacaProfileError(f"{what}: the IACA subject has no countryName")
    try:
        ski = iaca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        ian = iaca.extensions.get_extension_for_class(x509.IssuerAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise IacaProfileError(f"{what}: the IACA certificate lacks {exc.oid.dotted_string}") from None
    subject = _name(
        str(countries[0].value), common_name, organization, str(states[0].value) if states else None
    )
    return (
        _leaf(public_key, iaca.subject, subject, start, end, serial_number, eku, ski)
        .add_extension(x509.IssuerAlternativeName(list(ian)), critical=False)
        .add_extension(_crl_dp(crl_uri), critical=False)
    )


def document_signer_builder(
    public_key: ec.EllipticCurvePublicKey,
    iaca: x509.Certificate,
    *,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    crl_uri: str,
    organization: str | None = None,
    serial_number: int | None = None,
) -> x509.CertificateBuilder:
    """A document signer certificate (Table B.3) issued by ``iaca``."""
    return _signer_builder(
        public_key, iaca, common_name=common_name, not_before=not_before, not_after=not_after,
        crl_uri=crl_uri, eku=EKU_MDL_DS, organization=organization,
        serial_number=serial_number, what="document signer",
    )


def status_list_signer_builder(
    public_key: ec.EllipticCurvePublicKey,
    iaca: x509.Certificate,
    *,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    crl_uri: str,
    eku: x509.ObjectIdentifier = EKU_STATUS_LIST_SIGNER,
    organization: str | None = None,
    serial_number: int | None = None,
) -> x509.CertificateBuilder:
    """A status-list signer certificate: the document signer profile with ``eku``."""
    return _signer_builder(
        public_key, iaca, common_name=common_name, not_before=not_before, not_after=not_after,
        crl_uri=crl_uri, eku=eku, organization=organization, serial_number=serial_number,
        what="status-list signer",
    )


def reader_ca_builder(
    public_key: ec.EllipticCurvePublicKey,
    *,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    crl_uri: str | None = None,
    country: str = "JP",
    organization: str | None = None,
    serial_number: int | None = None,
) -> x509.CertificateBuilder:
    """A reader CA root (the anchor a wallet trusts for readerAuth), self-signed by the key
    of ``public_key``; at most as long-lived as an IACA."""
    _check_key(public_key, "reader CA")
    start, end = _window(not_before, not_after, IACA_MAX_VALIDITY, "reader CA")
    builder = _root(public_key, _name(country, common_name, organization, None), start, end, serial_number)
    return builder.add_extension(_crl_dp(crl_uri), critical=False) if crl_uri else builder


def reader_auth_builder(
    public_key: ec.EllipticCurvePublicKey,
    reader_ca: x509.Certificate,
    *,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    dns_names: tuple[str, ...] = (),
    crl_uri: str | None = None,
    organization: str | None = None,
    serial_number: int | None = None,
) -> x509.CertificateBuilder:
    """A reader authentication certificate (Annex B.1.7) issued by ``reader_ca``: what a
    reader signs readerAuth, readerAuthAll and OpenID4VP request objects with."""
    what = "reader certificate"
    builder = _issued_by(public_key, reader_ca, "reader CA", what, common_name, not_before, not_after,
                         READER_MAX_VALIDITY, organization, serial_number, EKU_MDL_READER_AUTH)
    if dns_names:
        try:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        except ValueError as exc:
            raise IacaProfileError(f"{what}: DNS name: {exc}") from None
    return builder.add_extension(_crl_dp(crl_uri), critical=False) if crl_uri else builder


def vical_ca_builder(
    public_key: ec.EllipticCurvePublicKey,
    *,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    country: str = "JP",
    organization: str | None = None,
    serial_number: int | None = None,
) -> x509.CertificateBuilder:
    """A VICAL CA root (the anchor a reader trusts for VICALs), self-signed by the key of
    ``public_key``: the reader CA's profile, at most as long-lived as an IACA."""
    _check_key(public_key, "VICAL CA")
    start, end = _window(not_before, not_after, IACA_MAX_VALIDITY, "VICAL CA")
    return _root(public_key, _name(country, common_name, organization, None), start, end, serial_number)


def vical_signer_builder(
    public_key: ec.EllipticCurvePublicKey,
    vical_ca: x509.Certificate,
    *,
    common_name: str,
    not_before: dt.datetime,
    not_after: dt.datetime,
    crl_uri: str | None = None,
    organization: str | None = None,
    serial_number: int | None = None,
) -> x509.CertificateBuilder:
    """A VICAL signer certificate (Annex C.1.7.2: extKeyUsage 1.0.18013.5.1.8) issued by
    ``vical_ca``: what signs the COSE_Sign1 of a VICAL. ``crl_uri``: the VICAL CA's CRL,
    where a reader looks the signer up before it takes a VICAL it signed (a signer whose
    key is in other hands could otherwise sign a VICAL of any IACA)."""
    builder = _issued_by(public_key, vical_ca, "VICAL CA", "VICAL signer", common_name, not_before, not_after,
                         DS_MAX_VALIDITY, organization, serial_number, EKU_MDL_VICAL_SIGNER)
    return builder.add_extension(_crl_dp(crl_uri), critical=False) if crl_uri else builder
