"""CMS SignedData pieces (RFC 5652) that JPKI's detached signatures (:mod:`protocols.jpki.cms`)
and RFC 3161 time-stamp tokens (:mod:`protocols.tsp`) share: which certificate a
SignerInfo names, the signed attributes' bytes as signed, and the SignerInfo's signature.

Each raises the caller's error class, so that a JPKI signature fails with ``CmsError`` and a
time-stamp token with ``TokenInvalid``, each naming what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from asn1crypto import cms as asn1cms
from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from protocols.certs import subject_key_id

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
#: What asn1crypto raises on bytes that do not decode as the structure asked for, and what
#: cryptography raises on a certificate it cannot load or a key it does not support.
DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 UnicodeError, RecursionError, NotImplementedError, x509.InvalidVersion,
                 UnsupportedAlgorithm)


def digest(name: str, data: bytes) -> bytes:
    """``data`` hashed with ``name`` (one of :data:`HASHES`)."""
    h = hashes.Hash(HASHES[name]())
    h.update(data)
    return h.finalize()


def signed_data_of(der: bytes, error: type[Exception]) -> asn1cms.SignedData:
    """The SignedData of a DER ContentInfo (RFC 5652 3, 5.1); ``error`` when it holds
    another content type. Decoding errors are the caller's to map."""
    info = asn1cms.ContentInfo.load(bytes(der), strict=True)
    if info["content_type"].native != "signed_data":
        raise error(f"ContentInfo type is {info['content_type'].native}, not signedData")
    return info["content"]


def signed_attributes_bytes(si: asn1cms.SignerInfo) -> bytes:
    """What the signature of ``si`` is over (RFC 5652 5.4): its signed attributes as they
    came, re-tagged as a SET OF. Take it before reading the attributes' values: asn1crypto
    re-encodes a structure whose children were read, which is slow and, for input that was
    not DER, not what was signed."""
    return b"\x31" + si["signed_attrs"].dump()[1:]


def find_signer(sid: asn1cms.SignerIdentifier, certs: Sequence[x509.Certificate],
                error: type[Exception]) -> x509.Certificate:
    """The certificate of ``certs`` that ``sid`` names (issuer and serial, or subject key
    identifier); ``error`` when none does."""
    if sid.name == "issuer_and_serial_number":
        issuer, serial = sid.chosen["issuer"], sid.chosen["serial_number"].native
        issuer_der = issuer.dump()
        for cert in certs:
            if cert.serial_number == serial and (
                    cert.issuer.public_bytes() == issuer_der  # the usual case, without asn1crypto's Name comparison
                    or asn1x509.Certificate.load(cert.public_bytes(Encoding.DER)).issuer == issuer):
                return cert
    elif sid.name == "subject_key_identifier":
        for cert in certs:
            if subject_key_id(cert) == sid.chosen.native:
                return cert
    raise error("no certificate at hand matches the SignerInfo's sid")


def check_signature(cert: x509.Certificate, si: asn1cms.SignerInfo, digest_name: str, data: bytes,
                    error: type[Exception], *, what: str = "CMS signature") -> None:
    """The SignerInfo's signature over ``data`` with ``cert``'s key: PKCS#1 v1.5 (signature
    algorithm rsaEncryption or <hash>WithRSA) or ECDSA with ``digest_name``; ``error``
    naming the mismatch or the failure."""
    key = cert.public_key()
    alg = si["signature_algorithm"]["algorithm"].native
    sig = si["signature"].native
    h = HASHES[digest_name]()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if alg not in ("rsassa_pkcs1v15", f"{digest_name}_rsa"):
                raise error(f"signature algorithm {alg} does not fit an RSA key")
            key.verify(sig, data, padding.PKCS1v15(), h)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if alg != f"{digest_name}_ecdsa":
                raise error(f"signature algorithm {alg} does not fit ECDSA with {digest_name}")
            key.verify(sig, data, ec.ECDSA(h))
        else:
            raise error(f"signer key {type(key).__name__} is not RSA or EC")
    except InvalidSignature:
        raise error(f"{what} does not verify with the signer certificate") from None
