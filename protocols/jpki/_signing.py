"""The one place where the package signs with an issuer key object.

Issuer keys (root CAs, OCSP responders) are `cryptography` private keys handed over by the
issuer's keystore. RSA-2048 signs with PKCS#1 v1.5 and SHA-256, P-384 with ECDSA and SHA-384.
"""

from __future__ import annotations

from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from .profile import KeyType

IssuerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_Built = TypeVar("_Built")


def hash_for(key_type: KeyType) -> hashes.HashAlgorithm:
    return hashes.SHA256() if key_type is KeyType.RSA_2048 else hashes.SHA384()


def sign_builder(builder: x509.CertificateBuilder | x509.CertificateRevocationListBuilder,
                 key: IssuerKey):  # noqa: ANN201 - returns Certificate or CRL
    """Sign an x509 certificate or CRL builder with `key` (hash chosen by key type)."""
    return builder.sign(key, hash_for(KeyType.of(key)))


def sign_bytes(key: IssuerKey, data: bytes) -> tuple[bytes, str]:
    """Sign raw bytes; returns (signature, asn1crypto signature algorithm name)."""
    key_type = KeyType.of(key)
    if key_type is KeyType.RSA_2048:
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, ec.ECDSA(hashes.SHA384())), "sha384_ecdsa"
