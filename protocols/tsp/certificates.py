"""Certificates of a time-stamping hierarchy: a root, and TSA units under it (RFC 3161 2.3:
the unit's extendedKeyUsage is id-kp-timeStamping alone, critical)."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID


def _hash(key) -> hashes.HashAlgorithm:  # noqa: ANN001
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}.get(
            key.curve.name, hashes.SHA256())
    return hashes.SHA256()


def build_tsa_root(*, name: x509.Name, key, serial: int, not_before: datetime,  # noqa: ANN001
                   not_after: datetime) -> x509.Certificate:
    """A self-signed time-stamping root (CA, keyCertSign and cRLSign, one level below)."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                            False, False), critical=True)
               .add_extension(ski, critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                              critical=False))
    return builder.sign(key, _hash(key))


def build_tsa_unit(*, name: x509.Name, public_key, issuer: x509.Certificate,  # noqa: ANN001
                   issuer_key, serial: int, not_before: datetime, not_after: datetime,  # noqa: ANN001
                   crl_url: str | None = None) -> x509.Certificate:
    """A TSA unit certificate: digitalSignature and nonRepudiation, EKU id-kp-timeStamping
    alone and critical, within its issuer's validity."""
    if not issuer.not_valid_before_utc <= not_before or not_after > issuer.not_valid_after_utc:
        raise ValueError("a TSA unit certificate must lie within its root's validity")
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject)
               .public_key(public_key).serial_number(serial)
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, True, False, False, False, False, False,
                                            False, False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                   issuer_ski), critical=False))
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
    return builder.sign(issuer_key, _hash(issuer_key))
