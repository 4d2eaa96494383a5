"""COSE for ISO/IEC 18013-5 (RFC 9052 / 9053 / 9360): COSE_Sign1, COSE_Mac0, COSE_Key.

Done by hand over ``cryptography`` and :mod:`protocols.cbor` (pycose 1.1.0 cannot decode
the untagged COSE_Sign1 mdoc uses, and breaks under cbor2 >= 6); cross-checked against
pycose in the tests.
"""

from protocols.cose.algorithms import (
    ECDSA_ALGORITHMS,
    ES256,
    ES384,
    ES512,
    ESP256,
    ESP384,
    ESP512,
    HEADER_ALG,
    HEADER_KID,
    HEADER_X5CHAIN,
    HMAC_256_256,
    CoseSigner,
    algorithm_for_curve,
    der_to_raw,
    ecdsa_verify,
    key_signer,
    raw_to_der,
)
from protocols.cose.errors import CoseDecodeError, CoseError, CoseKeyError, CoseSignatureError
from protocols.cose.key import CRV_P256, CRV_P384, CRV_P521, CoseKey
from protocols.cose.mac0 import Mac0, mac_structure
from protocols.cose.sign1 import Sign1, sig_structure

__all__ = [
    "CRV_P256",
    "CRV_P384",
    "CRV_P521",
    "ECDSA_ALGORITHMS",
    "ES256",
    "ES384",
    "ES512",
    "ESP256",
    "ESP384",
    "ESP512",
    "HEADER_ALG",
    "HEADER_KID",
    "HEADER_X5CHAIN",
    "HMAC_256_256",
    "CoseDecodeError",
    "CoseError",
    "CoseKey",
    "CoseKeyError",
    "CoseSignatureError",
    "CoseSigner",
    "Mac0",
    "Sign1",
    "algorithm_for_curve",
    "der_to_raw",
    "ecdsa_verify",
    "key_signer",
    "mac_structure",
    "raw_to_der",
    "sig_structure",
]
