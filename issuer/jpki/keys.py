"""Issuer keystore signers presented as ``cryptography`` private keys.

The pure builders of :mod:`protocols.jpki` (and ``cryptography``'s X.509 / CRL / OCSP builders)
sign with a private-key object. :func:`as_private_key` wraps a keystore :class:`Signer` in an
object of the matching abstract key class that offers ``public_key()`` and ``sign()`` only:
``sign`` forwards the to-be-signed bytes to the keystore, and every export (``private_bytes``,
``private_numbers``) is refused. The CA key itself never leaves the keystore (an HSM through
PKCS#11 fits behind the same :class:`Signer`).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from issuer.keystore import Signer, hash_for

from .errors import IssuerJpkiError


class KeyExportRefused(IssuerJpkiError):
    """Someone asked a keystore-backed key for its private material."""


def _check_hash(signer: Signer, algorithm: hashes.HashAlgorithm) -> None:
    want = hash_for(signer.algorithm)
    if algorithm.name != want.name:
        raise IssuerJpkiError(
            f"key {signer.label} ({signer.algorithm}) signs with {want.name}, not {algorithm.name}"
        )


class _KeystoreBacked:
    """What both proxies share: the public key, and refusals of every export."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def public_key(self):  # noqa: ANN201
        return self._signer.public_key()

    def private_numbers(self):  # noqa: ANN201
        raise KeyExportRefused(f"key {self._signer.label} stays in the keystore")

    def private_bytes(self, encoding, format, encryption_algorithm):  # noqa: ANN001, A002, ANN201
        raise KeyExportRefused(f"key {self._signer.label} stays in the keystore")

    def __copy__(self):  # noqa: ANN204
        return self

    def __deepcopy__(self, memo):  # noqa: ANN001, ANN204
        return self


class _RsaKey(_KeystoreBacked, rsa.RSAPrivateKey):
    def sign(self, data, padding_, algorithm):  # noqa: ANN001, ANN201 - cryptography's signature
        if not isinstance(padding_, padding.PKCS1v15):
            raise IssuerJpkiError(f"key {self._signer.label} signs PKCS#1 v1.5 only")
        _check_hash(self._signer, algorithm)
        return self._signer.sign(data)

    @property
    def key_size(self) -> int:
        return self._signer.public_key().key_size

    def decrypt(self, ciphertext, padding_):  # noqa: ANN001, ANN201
        raise KeyExportRefused(f"key {self._signer.label} only signs")


class _EcKey(_KeystoreBacked, ec.EllipticCurvePrivateKey):
    def sign(self, data, signature_algorithm):  # noqa: ANN001, ANN201
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise IssuerJpkiError(f"key {self._signer.label} signs ECDSA only")
        _check_hash(self._signer, signature_algorithm.algorithm)
        return self._signer.sign(data)

    @property
    def curve(self):  # noqa: ANN201
        return self._signer.public_key().curve

    @property
    def key_size(self) -> int:
        return self._signer.public_key().curve.key_size

    def exchange(self, algorithm, peer_public_key):  # noqa: ANN001, ANN201
        raise KeyExportRefused(f"key {self._signer.label} only signs")


def as_private_key(signer: Signer) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A signing-only private-key object whose ``sign`` goes through ``signer``."""
    public = signer.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return _RsaKey(signer)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return _EcKey(signer)
    raise IssuerJpkiError(f"key {signer.label} is neither RSA nor EC")
