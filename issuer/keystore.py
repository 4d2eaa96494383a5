"""The issuer's keys, behind one small signing interface.

Callers ask a :class:`KeyStore` for a :class:`Signer` by label and hand it what must be
signed (an X.509 builder, a CRL builder, an OCSP response builder, COSE to-be-signed bytes);
they never receive the private key. :class:`FileKeyStore` keeps PKCS#8 keys encrypted under
a passphrase in ``<home>/keys``; an HSM through PKCS#11 implements the same interface by
signing the to-be-signed bytes (``issuer.hsm``, specs/issuer-keys.md). A key no duty needs
any more (a revoked signer's, in a key-compromise procedure) is destroyed with
:meth:`KeyStore.destroy`; its certificate is the registry's, not the store's, and stays.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp

from protocols.cose.algorithms import der_to_raw_sized

ALGORITHMS = ("p256", "p384", "p521", "rsa2048")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_COSE_ALG = {"p256": -7, "p384": -35, "p521": -36}


class KeyStoreError(Exception):
    """A key could not be created, found or used."""


class KeyNotFound(KeyStoreError):
    """No key of that label in the store (never made, or destroyed)."""


def hash_for(algorithm: str) -> hashes.HashAlgorithm:
    """The hash each key type signs with: SHA-256 (RSA-2048, P-256), SHA-384, SHA-512."""
    return {"p256": hashes.SHA256(), "rsa2048": hashes.SHA256(), "p384": hashes.SHA384(),
            "p521": hashes.SHA512()}[algorithm]


def algorithm_of(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size != 2048:
            raise KeyStoreError(f"RSA-{key.key_size} is not supported (RSA-2048 only)")
        return "rsa2048"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        name = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}.get(key.curve.name)
        if name:
            return name
    raise KeyStoreError(f"unsupported key type {type(key).__name__}")


class Signer(Protocol):
    """What a caller may do with an issuer key."""

    label: str
    algorithm: str

    def public_key(self): ...
    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate: ...
    def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList: ...
    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder) -> ocsp.OCSPResponse: ...
    def sign_csr(self, builder: x509.CertificateSigningRequestBuilder) -> x509.CertificateSigningRequest: ...
    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class LocalSigner:
    """A :class:`Signer` over a key held in this process (file keystore, tests)."""

    label: str
    _key: object

    @property
    def algorithm(self) -> str:
        return algorithm_of(self._key)

    @property
    def alg(self) -> int:
        """COSE algorithm identifier (ES256/ES384/ES512), for use as a COSE signer."""
        try:
            return _COSE_ALG[self.algorithm]
        except KeyError:
            raise KeyStoreError(f"key {self.label} ({self.algorithm}) cannot sign COSE") from None

    def public_key(self):
        return self._key.public_key()

    def _hash(self) -> hashes.HashAlgorithm:
        return hash_for(self.algorithm)

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self._key, self._hash())

    def sign_crl(self, builder):
        return builder.sign(self._key, self._hash())

    def sign_ocsp(self, builder):
        return builder.sign(self._key, self._hash())

    def sign_csr(self, builder):
        return builder.sign(self._key, self._hash())

    def sign(self, data: bytes) -> bytes:
        """DER ECDSA signature or RSA PKCS#1 v1.5, with the key type's hash."""
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), self._hash())
        return self._key.sign(data, ec.ECDSA(self._hash()))

    @functools.cached_property
    def _raw_params(self) -> tuple[ec.ECDSA, int]:
        """What :meth:`sign_raw` signs with (ECDSA with the key type's hash) and the curve
        size in bytes: worked out once, the key never changes (errors are not kept)."""
        if not isinstance(self._key, ec.EllipticCurvePrivateKey):
            raise KeyStoreError(f"key {self.label} is not an EC key")
        return ec.ECDSA(self._hash()), (self._key.curve.key_size + 7) // 8

    def sign_raw(self, tbs: bytes) -> bytes:
        """COSE form of an ECDSA signature: r || s, each padded to the curve size."""
        ecdsa, size = self._raw_params
        return der_to_raw_sized(self._key.sign(tbs, ecdsa), size)  # cut out of the DER, no ints


class CoseSignerAdapter:
    """Adapts a :class:`LocalSigner` to the COSE signer protocol (``alg``, ``sign(tbs)``)."""

    def __init__(self, signer: LocalSigner) -> None:
        self._signer = signer
        self.alg = signer.alg

    def sign(self, tbs: bytes) -> bytes:
        return self._signer.sign_raw(tbs)


def generate_private_key(algorithm: str):
    if algorithm == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
    if algorithm not in curves:
        raise KeyStoreError(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    return ec.generate_private_key(curves[algorithm])


class KeyStore(Protocol):
    def create(self, label: str, algorithm: str) -> Signer: ...
    def signer(self, label: str) -> Signer: ...
    def has(self, label: str) -> bool: ...
    def labels(self) -> list[str]: ...

    def destroy(self, label: str) -> None:
        """Destroy the key ``label`` for good (a file key: its file removed durably; a token
        key: its private and public objects destroyed in the token). :class:`KeyNotFound`
        when there is none (never made, or destroyed already). The store forgets it: its
        :meth:`signer` raises :class:`KeyNotFound` from now on (a signer of a token key
        handed out before is refused by the token; one of a file key held in memory by
        another process lasts as long as that process)."""


class FileKeyStore:
    """PKCS#8 keys, encrypted with a passphrase, one PEM file per label in ``directory``.

    The passphrase comes from ``$MCRED_KEYSTORE_PASSPHRASE``, else from ``.passphrase``
    (mode 0600) created beside the keys on first use.
    """

    def __init__(self, directory: Path, passphrase: bytes | None = None) -> None:
        self.directory = Path(directory)
        # made 0700 (no moment in which others may enter it and plant a .passphrase or a
        # key of their own), and narrowed to 0700 if it was there already
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        self._passphrase = passphrase or self._load_passphrase()
        self._cache: dict[str, LocalSigner] = {}

    def _load_passphrase(self) -> bytes:
        env = os.environ.get("MCRED_KEYSTORE_PASSPHRASE")
        if env:
            return env.encode()
        path = self.directory / ".passphrase"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()

    def _path(self, label: str) -> Path:
        if not _LABEL.match(label):
            raise KeyStoreError(f"invalid key label {label!r}")
        return self.directory / f"{label}.pem"

    def has(self, label: str) -> bool:
        return self._path(label).exists()

    def labels(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.pem"))

    def create(self, label: str, algorithm: str) -> LocalSigner:
        path = self._path(label)
        key = generate_private_key(algorithm)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        # Written whole under a temporary name, made durable, then linked into place: a
        # concurrent reader sees no file or the whole key, never a torn one (two threads
        # rolling the same DS generation over found the half-written PEM), and link() fails
        # if the label exists, as O_EXCL did.
        tmp = self.directory / f".{label}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyStoreError(f"key {label!r} exists already") from None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        signer = LocalSigner(label, key)
        self._cache[label] = signer
        return signer

    def signer(self, label: str) -> LocalSigner:
        if label in self._cache:
            return self._cache[label]
        path = self._path(label)
        if not path.exists():
            raise KeyNotFound(f"no key {label!r} in {self.directory}")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), self._passphrase)
        except (ValueError, TypeError) as exc:
            raise KeyStoreError(f"key {label!r} cannot be opened: {exc}") from None
        signer = LocalSigner(label, key)
        self._cache[label] = signer
        return signer

    def destroy(self, label: str) -> None:
        """Remove the key file of ``label`` durably: its bytes overwritten with zeros and made
        durable (best effort: a copy-on-write file system or an SSD may keep the old blocks,
        which hold the key encrypted under the passphrase), the file unlinked, the directory
        fsynced as :meth:`create` does, so that the removal survives a crash. The key leaves
        this store's cache; another process that opened it keeps it in memory until it ends
        (every path that would sign with a revoked signer refuses it anyway)."""
        path = self._path(label)
        self._cache.pop(label, None)
        try:
            fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise KeyNotFound(f"no key {label!r} in {self.directory}") from None
        except OSError as exc:
            raise KeyStoreError(f"key {label!r} cannot be destroyed: {exc.strerror or exc}") from None
        try:
            size = os.fstat(fd).st_size
            os.write(fd, bytes(size))
            os.fsync(fd)
        except OSError:
            pass  # the unlink below is what counts
        finally:
            os.close(fd)
        try:
            path.unlink()
        except FileNotFoundError:  # another process destroyed it meanwhile
            raise KeyNotFound(f"no key {label!r} in {self.directory}") from None
        except OSError as exc:
            raise KeyStoreError(f"key {label!r} cannot be destroyed: {exc.strerror or exc}") from None
        _fsync_dir(self.directory)


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class MemoryKeyStore:
    """Throw-away keys for ``mcred demo`` steps and tests; same interface, nothing on disk."""

    def __init__(self) -> None:
        self._keys: dict[str, LocalSigner] = {}

    def has(self, label: str) -> bool:
        return label in self._keys

    def labels(self) -> list[str]:
        return sorted(self._keys)

    def create(self, label: str, algorithm: str) -> LocalSigner:
        if label in self._keys:
            raise KeyStoreError(f"key {label!r} exists already")
        self._keys[label] = LocalSigner(label, generate_private_key(algorithm))
        return self._keys[label]

    def signer(self, label: str) -> LocalSigner:
        try:
            return self._keys[label]
        except KeyError:
            raise KeyNotFound(f"no key {label!r}") from None

    def destroy(self, label: str) -> None:
        try:
            del self._keys[label]
        except KeyError:
            raise KeyNotFound(f"no key {label!r}") from None
