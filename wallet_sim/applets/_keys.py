"""Key pairs born inside the SE, and the signatures the applets compute with them.

Keys are generated with ``cryptography`` and kept as PKCS #8 DER in the applet's NVM image;
only the SubjectPublicKeyInfo (RFC 5280 4.1.2.7) ever leaves. ECDSA signatures answered by
APDUs are raw ``r || s`` (fixed width, as ISO/IEC 7816-8 and BSI TR-03111 5.2.1 plain
format); proofs of possession are DER ``Ecdsa-Sig-Value`` (RFC 5480 / X9.62), like a CSR.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
)

from wallet_sim.applets.errors import AppletStateError

RSA_2048 = "rsa2048"
EC_P256 = "p256"
EC_P384 = "p384"
_CURVES = {EC_P256: ec.SECP256R1(), EC_P384: ec.SECP384R1()}
_SIZES = {EC_P256: 32, EC_P384: 48}


def generate(algorithm: str) -> tuple[bytes, bytes]:
    """A fresh key pair: (PKCS #8 DER private key, SubjectPublicKeyInfo DER)."""
    if algorithm == RSA_2048:
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(65537, 2048)
    else:
        key = ec.generate_private_key(_CURVES[algorithm])
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _remember(pkcs8, key)  # the proof of possession that follows needs no re-parse
    return pkcs8, spki_of(key.public_key())


def spki_of(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


#: Key objects by their PKCS #8 bytes (the NVM form), most recently used last: parsing
#: PKCS #8 costs as much as an ECDSA signature. In this process only, like a card's RAM.
_LOADED: OrderedDict[bytes, object] = OrderedDict()
_LOADED_MAX = 64
_LOADED_LOCK = threading.Lock()


def _remember(pkcs8: bytes, key: object) -> None:
    with _LOADED_LOCK:
        _LOADED[pkcs8] = key
        _LOADED.move_to_end(pkcs8)
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)


def private_key(pkcs8: bytes):
    """Load (and cache) a private key from the NVM image."""
    with _LOADED_LOCK:
        key = _LOADED.get(pkcs8)
        if key is not None:
            _LOADED.move_to_end(pkcs8)
            return key
    try:
        key = serialization.load_der_private_key(pkcs8, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AppletStateError(f"stored private key does not load: {exc}") from exc
    _remember(pkcs8, key)
    return key


def check_pair(algorithm: str, pkcs8: bytes, spki: bytes) -> None:
    """Raise AppletStateError unless ``pkcs8`` is a key of ``algorithm`` matching ``spki``."""
    key = private_key(pkcs8)
    if algorithm == RSA_2048:
        ok = isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    elif algorithm in _CURVES:
        ok = (
            isinstance(key, ec.EllipticCurvePrivateKey)
            and key.curve.name == _CURVES[algorithm].name
        )
    else:
        ok = False
    if not ok or spki_of(key.public_key()) != spki:
        raise AppletStateError(f"stored {algorithm} key pair is inconsistent")


def raw_ecdsa(algorithm: str, der_signature: bytes) -> bytes:
    r, s = decode_dss_signature(der_signature)
    size = _SIZES[algorithm]
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_prehashed(pkcs8: bytes, algorithm: str, digest: bytes, hash_alg) -> bytes:
    """Raw r||s ECDSA signature over a digest computed by the caller."""
    key = private_key(pkcs8)
    der = key.sign(digest, ec.ECDSA(Prehashed(hash_alg)))
    return raw_ecdsa(algorithm, der)


def proof_of_possession(algorithm: str, pkcs8: bytes, message: bytes) -> bytes:
    """The new key's signature over ``message`` (challenge || SPKI): RSASSA-PKCS1-v1_5 with
    SHA-256 for RSA-2048, DER ECDSA with SHA-384 for P-384 and SHA-256 for P-256."""
    key = private_key(pkcs8)
    if algorithm == RSA_2048:
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    hash_alg = hashes.SHA384() if algorithm == EC_P384 else hashes.SHA256()
    return key.sign(message, ec.ECDSA(hash_alg))
