"""Issuer keys in an HSM through PKCS#11 (ARCHITECTURE.md "State": the production shape).

:class:`Pkcs11KeyStore` has the :class:`issuer.keystore.FileKeyStore` interface (``create``,
``signer``, ``has``, ``labels``, ``destroy``) over one PKCS#11 token: keys are generated *in* the token
(``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``), found again by ``CKA_LABEL``, and sign there.
Each key is handed to the rest of the issuer as a ``cryptography`` private-key object whose
``sign`` asks the token (:class:`HsmEcKey`, :class:`HsmRsaKey`), so certificates, CRLs, OCSP
responses, CSRs and COSE signatures are built by ``cryptography``'s builders exactly as with
a file key; ``private_bytes`` / ``private_numbers`` / ``exchange`` refuse.

The token computes: ECDSA over a digest made here (``CKM_ECDSA``; the token's raw ``r || s``
becomes DER through ``cryptography``'s ``encode_dss_signature``), RSA PKCS#1 v1.5 with the
hash in the mechanism (``CKM_SHA256_RSA_PKCS`` ...). PKCS#11 sessions are not thread-safe:
one session per process and token (:func:`hsm.open_token`, shared with the TSM's master key),
behind a lock (the service signs from its thread pool).

Configuration (``mcred.context``): ``MCRED_KEYSTORE=pkcs11``, ``MCRED_PKCS11_MODULE`` (the
library; default SoftHSM2's), ``MCRED_PKCS11_TOKEN`` (label, default ``mcred``),
``MCRED_PKCS11_PIN`` or ``MCRED_PKCS11_PIN_FILE`` (the user PIN). Tested against SoftHSM2.
"""

from __future__ import annotations

import os
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils

from hsm import (
    SOFTHSM2,
    Token,
    close_all,
    open_token,
    pkcs11_module,
    raised_as,
    token_settings,
)
from issuer.keystore import _LABEL, KeyNotFound, KeyStoreError, LocalSigner

__all__ = ["SOFTHSM2", "HsmEcKey", "HsmError", "HsmRsaKey", "Pkcs11KeyStore", "close_all"]
_CURVES = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
_RSA_MECHANISMS = {"sha256": "SHA256_RSA_PKCS", "sha384": "SHA384_RSA_PKCS", "sha512": "SHA512_RSA_PKCS"}


class HsmError(KeyStoreError):
    """The token refused, or is not there."""


class _Keys:
    """The issuer's key pairs on the process's token session (:func:`hsm.open_token`)."""

    def __init__(self, token: Token) -> None:
        self.token = token
        self.lock = token.lock
        self._signing: dict[str, object] = {}  # label -> private key handle, found once

    @property
    def session(self):  # noqa: ANN201
        return self.token.session

    def find_private(self, label: str):
        pkcs11 = pkcs11_module()
        with self.lock:
            found = list(self.session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
                                                   pkcs11.Attribute.LABEL: label}))
        if len(found) > 1:
            raise HsmError(f"{len(found)} private keys labelled {label!r} on the token")
        return found[0] if found else None

    def public_key(self, label: str):
        """The ``cryptography`` public key of the pair labelled ``label``."""
        pkcs11 = pkcs11_module()
        from pkcs11.util.ec import encode_ec_public_key

        with self.lock:
            found = list(self.session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PUBLIC_KEY,
                                                   pkcs11.Attribute.LABEL: label}))
            if len(found) != 1:
                raise HsmError(f"{len(found)} public keys labelled {label!r} on the token")
            (pub,) = found
            if pub.key_type == pkcs11.KeyType.EC:
                return serialization.load_der_public_key(encode_ec_public_key(pub))
            n = int.from_bytes(pub[pkcs11.Attribute.MODULUS], "big")
            e = int.from_bytes(pub[pkcs11.Attribute.PUBLIC_EXPONENT], "big")
            return rsa.RSAPublicNumbers(e, n).public_key()

    def sign(self, label: str, data: bytes, mechanism: str) -> bytes:
        pkcs11 = pkcs11_module()
        with self.lock:
            key = self._signing.get(label)
            if key is None:
                key = self.find_private(label)
                if key is None:
                    raise KeyNotFound(f"no key {label!r} on the token")
                self._signing[label] = key  # a handle stays valid for the session's life (or its destruction)
            try:
                return key.sign(data, mechanism=getattr(pkcs11.Mechanism, mechanism))
            except (pkcs11.exceptions.KeyHandleInvalid, pkcs11.exceptions.ObjectHandleInvalid):  # destroyed since
                self._signing.pop(label, None)
                raise KeyNotFound(f"no key {label!r} on the token (destroyed)") from None
            except pkcs11.exceptions.PKCS11Error as exc:
                raise HsmError(f"token refused to sign with {label!r} ({mechanism}): "
                               f"{type(exc).__name__} {exc}") from exc

    def destroy(self, label: str) -> None:
        """``C_DestroyObject`` on every private and public key object labelled ``label``:
        :class:`KeyNotFound` when there is none of either."""
        pkcs11 = pkcs11_module()
        with self.lock:
            self._signing.pop(label, None)
            found = [o for kind in (pkcs11.ObjectClass.PRIVATE_KEY, pkcs11.ObjectClass.PUBLIC_KEY)
                     for o in self.session.get_objects({pkcs11.Attribute.CLASS: kind, pkcs11.Attribute.LABEL: label})]
            if not found:
                raise KeyNotFound(f"no key {label!r} on the token")
            for obj in found:
                try:
                    obj.destroy()
                except pkcs11.exceptions.PKCS11Error as exc:
                    raise HsmError(f"token refused to destroy key {label!r}: {type(exc).__name__} {exc}") from exc


class _NoExport:
    """What a key that lives in the token refuses."""

    label: str

    def private_bytes(self, *args, **kwargs):  # noqa: ANN002, ANN003
        raise KeyStoreError(f"key {self.label!r} lives in the HSM: it is not exported")

    def private_numbers(self):
        raise KeyStoreError(f"key {self.label!r} lives in the HSM: it is not exported")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):  # noqa: ANN001
        return self


class HsmEcKey(_NoExport, ec.EllipticCurvePrivateKey):
    """An EC private key in the token: ``sign`` hashes here, the token signs the digest."""

    def __init__(self, token: _Keys, label: str, public: ec.EllipticCurvePublicKey) -> None:
        self._token, self.label, self._public = token, label, public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def exchange(self, algorithm, peer_public_key):  # noqa: ANN001
        raise KeyStoreError(f"key {self.label!r} signs only")

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise HsmError(f"unsupported signature algorithm {signature_algorithm!r}")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, asym_utils.Prehashed):
            digest = data
        else:
            h = hashes.Hash(algorithm)
            h.update(data)
            digest = h.finalize()
        raw = self._token.sign(self.label, digest, "ECDSA")
        half = len(raw) // 2
        der = asym_utils.encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                              int.from_bytes(raw[half:], "big"))
        try:  # a wrong answer from the token must not become a certificate
            self._public.verify(der, digest, ec.ECDSA(asym_utils.Prehashed(
                algorithm.algorithm if isinstance(algorithm, asym_utils.Prehashed) else algorithm)))
        except InvalidSignature:
            raise HsmError(f"the token's signature with {self.label!r} does not verify") from None
        return der


class HsmRsaKey(_NoExport, rsa.RSAPrivateKey):
    """An RSA private key in the token: PKCS#1 v1.5 with the hash in the mechanism."""

    def __init__(self, token: _Keys, label: str, public: rsa.RSAPublicKey) -> None:
        self._token, self.label, self._public = token, label, public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def decrypt(self, ciphertext: bytes, padding_: padding.AsymmetricPadding) -> bytes:
        raise KeyStoreError(f"key {self.label!r} signs only")

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding, algorithm) -> bytes:  # noqa: ANN001
        if not isinstance(padding_, padding.PKCS1v15) or isinstance(algorithm, asym_utils.Prehashed):
            raise HsmError(f"key {self.label!r}: only PKCS#1 v1.5 over the data is supported")
        mechanism = _RSA_MECHANISMS.get(algorithm.name)
        if mechanism is None:
            raise HsmError(f"key {self.label!r}: no PKCS#11 mechanism for {algorithm.name}")
        return self._token.sign(self.label, data, mechanism)


class Pkcs11KeyStore:
    """Issuer keys on one PKCS#11 token; the :class:`issuer.keystore.FileKeyStore` interface."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self.module, self.token_label = module, token_label
        with raised_as(HsmError):
            self._token = _Keys(open_token(module, token_label, pin))
        self._cache: dict[str, LocalSigner] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Pkcs11KeyStore:
        with raised_as(HsmError):
            return cls(*token_settings(os.environ if env is None else env, "MCRED_KEYSTORE=pkcs11"))

    @staticmethod
    def _check(label: str) -> str:
        if not _LABEL.match(label):
            raise KeyStoreError(f"invalid key label {label!r}")
        return label

    def has(self, label: str) -> bool:
        return self._token.find_private(self._check(label)) is not None

    def labels(self) -> list[str]:
        pkcs11 = pkcs11_module()
        with self._token.lock:
            return sorted({k.label for k in self._token.session.get_objects(
                {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}) if k.label})

    def create(self, label: str, algorithm: str) -> LocalSigner:
        """A new key pair generated in the token, sensitive and not extractable."""
        pkcs11 = pkcs11_module()
        from pkcs11.util.ec import encode_named_curve_parameters

        self._check(label)
        private = {pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False,
                   pkcs11.Attribute.SIGN: True, pkcs11.Attribute.TOKEN: True,
                   pkcs11.Attribute.PRIVATE: True}
        public = {pkcs11.Attribute.VERIFY: True, pkcs11.Attribute.TOKEN: True}
        with self._lock, self._token.lock:
            if self._token.find_private(label) is not None:
                raise KeyStoreError(f"key {label!r} exists already")
            try:
                if algorithm == "rsa2048":
                    self._token.session.generate_keypair(
                        pkcs11.KeyType.RSA, 2048, label=label, store=True,
                        public_template=public, private_template=private)
                elif algorithm in _CURVES:
                    params = self._token.session.create_domain_parameters(
                        pkcs11.KeyType.EC, {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters(
                            _CURVES[algorithm].name)}, local=True)
                    params.generate_keypair(label=label, store=True, public_template=public,
                                            private_template=private)
                else:
                    raise KeyStoreError(f"unsupported key algorithm {algorithm!r}")
            except pkcs11.exceptions.PKCS11Error as exc:
                raise HsmError(f"token could not generate {algorithm} key {label!r}: "
                               f"{type(exc).__name__} {exc}") from exc
        return self.signer(label)

    def signer(self, label: str) -> LocalSigner:
        hit = self._cache.get(label)
        if hit is not None:
            return hit
        if self._token.find_private(self._check(label)) is None:
            raise KeyNotFound(f"no key {label!r} on PKCS#11 token {self.token_label!r}")
        public = self._token.public_key(label)
        key = (HsmEcKey(self._token, label, public) if isinstance(public, ec.EllipticCurvePublicKey)
               else HsmRsaKey(self._token, label, public))
        signer = LocalSigner(label, key)
        self._cache[label] = signer
        return signer

    def destroy(self, label: str) -> None:
        """Destroy the key pair ``label`` in the token (its private and its public key
        object, ``C_DestroyObject``): :class:`KeyNotFound` when the token holds neither."""
        self._check(label)
        with self._lock:
            self._cache.pop(label, None)
            self._token.destroy(label)
