"""CMS SignedData pieces (RFC 5652) that JPKI's detached signatures (:mod:`protocols.jpki.cms`)
and RFC 3161 time-stamp tokens (:mod:`protocols.tsp`) share: the structure a verifier
checks beyond the signature (versions, digest algorithms, where each attribute may be),
which certificate a SignerInfo names, the signed attributes' bytes as signed, and the
SignerInfo's signature.

Each raises the caller's error class, so that a JPKI signature fails with ``CmsError`` and a
time-stamp token with ``TokenInvalid``, each naming what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from asn1crypto import cms as asn1cms
from asn1crypto import core as asn1core
from asn1crypto import tsp as _asn1tsp  # noqa: F401 - its names into asn1cms's maps (below)
from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from protocols.certs import subject_key_id

# asn1crypto.tsp adds its names (signing_certificate_v2, ...) to asn1crypto.cms's OID maps
# when it is imported, and asn1crypto fixes each map's names at the first lookup by name: a
# process that built or read a JPKI signature before it first imported protocols.tsp (a
# server whose first request was a signature to verify, its next a time-stamp) could then
# build and read no time-stamp token ("invalid literal for int() with base 10:
# 'signing_certificate_v2'"). Every CMS path of ours imports this module first.

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
#: What asn1crypto raises on bytes that do not decode as the structure asked for, and what
#: cryptography raises on a certificate it cannot load or a key it does not support.
DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError,
                 UnicodeError, RecursionError, NotImplementedError, x509.InvalidVersion,
                 UnsupportedAlgorithm)
#: The attributes RFC 5652 allows only signed, with exactly one value (11.1 content-type,
#: 11.2 message-digest, 11.3 signing-time), and the one it allows only unsigned (11.4).
SIGNED_ONLY = {"content_type": "11.1", "message_digest": "11.2", "signing_time": "11.3"}
UNSIGNED_ONLY = {"counter_signature": "11.4"}
#: SignerInfo version by the form of its sid (RFC 5652 5.3).
_SIGNER_INFO_VERSION = {"issuer_and_serial_number": "v1", "subject_key_identifier": "v3"}


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


def signed_data_version(sd: asn1cms.SignedData) -> tuple[str, str]:
    """The version RFC 5652 5.1 gives a SignedData of this content, and why: 5 with a
    certificate or revocation information of type other, 4 with a version 2 attribute
    certificate, 3 with a version 1 one, a SignerInfo of version 3 or an eContentType other
    than id-data, else 1."""
    certs = list(sd["certificates"] or [])
    crls = list(sd["crls"] or [])
    if any(c.name == "other" for c in certs) or any(c.name == "other" for c in crls):
        return "v5", "it carries a certificate or revocation information of type other"
    if any(c.name == "v2_attr_cert" for c in certs):
        return "v4", "it carries a version 2 attribute certificate"
    if any(c.name == "v1_attr_cert" for c in certs):
        return "v3", "it carries a version 1 attribute certificate"
    if any(si["version"].native == "v3" for si in sd["signer_infos"]):
        return "v3", "a SignerInfo is version 3"
    if sd["encap_content_info"]["content_type"].native != "data":
        return "v3", "its eContentType is not id-data"
    return "v1", "its eContentType is id-data, its SignerInfos version 1, its certificates X.509"


def check_structure(sd: asn1cms.SignedData, si: asn1cms.SignerInfo, error: type[Exception]) -> None:
    """What the signature does not cover and RFC 5652 still fixes: the SignerInfo's version
    by the form of its sid (5.3: 1 with issuerAndSerialNumber, 3 with subjectKeyIdentifier),
    the SignedData's by its content (5.1, :func:`signed_data_version`), the SignerInfo's
    digestAlgorithm among the SignedData's digestAlgorithms (5.1, 5.3), and no attribute
    that must be signed among the unsigned ones (11.1-11.3). ``error`` naming the first
    that does not hold."""
    try:
        sid = si["sid"].name
    except DECODE_ERRORS as exc:
        raise error(f"the SignerInfo's sid does not decode: {type(exc).__name__}: {exc}") from None
    version, wanted = si["version"].native, _SIGNER_INFO_VERSION[sid]
    if version != wanted:
        raise error(f"SignerInfo version is {version}, but its sid is {sid}: version must be {wanted} "
                    "(RFC 5652 5.3)")
    expected, why = signed_data_version(sd)
    if sd["version"].native != expected:
        raise error(f"SignedData version is {sd['version'].native}, but {why}: version must be {expected} "
                    "(RFC 5652 5.1)")
    alg = si["digest_algorithm"]  # parameters other than absent or NULL do not decode (RFC 5754 2)
    listed = [a["algorithm"].dotted for a in sd["digest_algorithms"]]
    if alg["algorithm"].dotted not in listed:
        names = ", ".join(a["algorithm"].native for a in sd["digest_algorithms"]) or "none"
        raise error(f"SignerInfo digestAlgorithm {alg['algorithm'].native} is not among the SignedData's "
                    f"digestAlgorithms ({names}) (RFC 5652 5.1, 5.3)")
    for attr in si["unsigned_attrs"] or []:
        name = attr["type"].native
        if name in SIGNED_ONLY:
            raise error(f"{name} is an unsigned attribute: it must be signed (RFC 5652 {SIGNED_ONLY[name]})")


def signed_attributes_bytes(si: asn1cms.SignerInfo, error: type[Exception]) -> bytes:
    """What the signature of ``si`` is over (RFC 5652 5.4): the DER of its signed attributes,
    tagged as a SET OF; ``error`` when it has none, or when they came in another encoding
    than DER (5.3: signedAttrs MUST be DER, a SET OF sorted by encoding, X.690 11.6), for
    then what was signed is not their DER. Take it before reading the attributes' values:
    asn1crypto re-encodes a structure whose children were read, which is slow and, for
    input that was not DER, not what was signed."""
    attrs = si["signed_attrs"]
    if not attrs:
        raise error("SignerInfo has no signed attributes")
    raw = b"\x31" + attrs.dump()[1:]
    try:
        again = asn1cms.CMSAttributes.load(raw, strict=True)
        each = [a.dump() for a in again]
        der = again.dump(force=True)
    except DECODE_ERRORS as exc:
        raise error(f"signed attributes do not decode: {type(exc).__name__}: {exc}") from None
    if each != sorted(each):
        raise error("signed attributes are not in DER order: a SET OF is sorted by the encodings of its "
                    "elements (RFC 5652 5.3, X.690 11.6)")
    if der != raw:
        raise error("signed attributes are not DER-encoded (RFC 5652 5.3): their DER, which is what is signed "
                    "(5.4), is not the bytes that came")
    return raw


def signed_attributes(si: asn1cms.SignerInfo, content_type: str, error: type[Exception]) -> dict[str, list]:
    """The signed attributes of ``si`` by name (each a list of values), after the rules of
    RFC 5652: each attribute once; content-type and message-digest present (5.3);
    content-type, message-digest and signing-time single-valued (11.1-11.3);
    content-type's value ``content_type``, the eContentType (11.1); countersignature not
    among them (11.4). ``error`` naming the first that does not hold."""
    attrs = si["signed_attrs"]
    if not attrs:
        raise error("SignerInfo has no signed attributes")
    found: dict[str, list] = {}
    for attr in attrs:
        name = attr["type"].native
        if name in found:
            raise error(f"signed attribute {name} appears twice")
        found[name] = list(attr["values"])
    for name in ("content_type", "message_digest"):
        if name not in found:
            raise error(f"signed attribute {name} is missing (RFC 5652 5.3)")
    for name, clause in SIGNED_ONLY.items():
        if name in found and len(found[name]) != 1:
            raise error(f"signed attribute {name} has {len(found[name])} values, not one (RFC 5652 {clause})")
    for name, clause in UNSIGNED_ONLY.items():
        if name in found:
            raise error(f"{name} is a signed attribute: it must be unsigned (RFC 5652 {clause})")
    got = found["content_type"][0].native
    if got != content_type:
        raise error(f"signed content-type attribute is {got}, not the eContentType {content_type} "
                    "(RFC 5652 11.1)")
    return found


def _sid_text(sid: asn1cms.SignerIdentifier) -> str:
    if sid.name == "issuer_and_serial_number":
        return (f"issuer {sid.chosen['issuer'].human_friendly}, "
                f"serial {format(sid.chosen['serial_number'].native, 'x')}")
    return f"subjectKeyIdentifier {sid.chosen.native.hex()}"


def find_signer(sid: asn1cms.SignerIdentifier, certs: Sequence[x509.Certificate],
                error: type[Exception], *, where: str = "the SignedData's certificates") -> x509.Certificate:
    """The certificate of ``certs`` (``where`` they come from, for the message) that ``sid``
    names (issuer and serial, or subject key identifier); ``error`` when the sid does not
    decode, when none matches, or when two different certificates do (which one signed
    would be a guess)."""
    try:
        matches = list(dict.fromkeys(_matching(sid, certs)))
        text = _sid_text(sid)
    except DECODE_ERRORS as exc:
        raise error(f"the SignerInfo's sid does not decode: {type(exc).__name__}: {exc}") from None
    if not matches:
        raise error(f"no certificate of {where} matches the SignerInfo's sid ({text})")
    if len(matches) > 1:
        raise error(f"{len(matches)} different certificates of {where} match the SignerInfo's sid ({text}): "
                    "which one signed is ambiguous")
    return matches[0]


def _matching(sid: asn1cms.SignerIdentifier, certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    if sid.name == "issuer_and_serial_number":
        issuer, serial = sid.chosen["issuer"], sid.chosen["serial_number"].native
        issuer_der = issuer.dump()
        return [cert for cert in certs if cert.serial_number == serial and (
            cert.issuer.public_bytes() == issuer_der  # the usual case, without asn1crypto's Name comparison
            or asn1x509.Certificate.load(cert.public_bytes(Encoding.DER)).issuer == issuer)]
    ski = sid.chosen.native
    return [cert for cert in certs if subject_key_id(cert) == ski]


def check_signature(cert: x509.Certificate, si: asn1cms.SignerInfo, digest_name: str, data: bytes,
                    error: type[Exception], *, what: str = "CMS signature") -> None:
    """The SignerInfo's signature over ``data`` with ``cert``'s key: PKCS#1 v1.5 (signature
    algorithm rsaEncryption or <hash>WithRSA, whose parameters decode only when NULL or
    absent) or ECDSA with ``digest_name`` (parameters absent: RFC 5758 3.2); ``error``
    naming the mismatch or the failure."""
    key = cert.public_key()
    sig_alg = si["signature_algorithm"]
    alg = sig_alg["algorithm"].native
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
            if not isinstance(sig_alg["parameters"], asn1core.Void):
                raise error(f"signature algorithm {alg} has parameters; ECDSA's are absent (RFC 5758 3.2)")
            key.verify(sig, data, ec.ECDSA(h))
        else:
            raise error(f"signer key {type(key).__name__} is not RSA or EC")
    except InvalidSignature:
        raise error(f"{what} does not verify with the signer certificate") from None
