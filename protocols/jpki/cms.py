"""CMS detached signatures (RFC 5652 5) over a signature made elsewhere (the phone's SE).

SignedData v1, one SignerInfo v1 (issuerAndSerialNumber), eContentType id-data without
eContent (detached), signed attributes contentType, signingTime, messageDigest (5.3, 11).
RSA-2048: SHA-256 with PKCS#1 v1.5 (signatureAlgorithm rsaEncryption); P-384: SHA-384 with
ECDSA (ecdsa-with-SHA384, DER Ecdsa-Sig-Value). The signer callback receives the DER of the
signed attributes as a SET OF (5.4) and returns the signature in that form; an SE returning
raw r||s converts it with :func:`ecdsa_raw_to_der`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms as asn1cms
from asn1crypto import core as asn1core
from asn1crypto import crl as asn1crl
from asn1crypto import ocsp as asn1ocsp
from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from protocols import certs as x509certs
from protocols import cms as cms_pieces

from .errors import CmsError, JpkiError
from .profile import KeyType

Signer = Callable[[bytes], bytes]

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
_DECODE_ERRORS = cms_pieces.DECODE_ERRORS


def ecdsa_raw_to_der(signature: bytes) -> bytes:
    """Raw r||s (96 bytes for P-384) to the DER Ecdsa-Sig-Value CMS carries."""
    if len(signature) % 2 or not signature:
        raise CmsError(f"raw ECDSA signature of {len(signature)} bytes is not r||s")
    half = len(signature) // 2
    return encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                int.from_bytes(signature[half:], "big"))


_digest = cms_pieces.digest


def _algorithms(cert: x509.Certificate) -> tuple[str, dict]:
    try:
        key_type = KeyType.of(cert.public_key())
    except JpkiError as exc:
        raise CmsError(f"signer certificate key: {exc}") from None
    if key_type is KeyType.RSA_2048:
        return "sha256", {"algorithm": "rsassa_pkcs1v15", "parameters": asn1core.Null()}
    return "sha384", {"algorithm": "sha384_ecdsa"}


def build_detached_signature(*, content: bytes, certificate: x509.Certificate, sign: Signer,
                             signing_time: datetime,
                             chain: Sequence[x509.Certificate] = ()) -> bytes:
    """DER ContentInfo(SignedData) signing `content` (detached), signature from `sign`."""
    if signing_time.tzinfo is None:
        raise CmsError("signing_time must be timezone-aware")
    digest_name, sig_alg = _algorithms(certificate)
    cert_asn1 = asn1x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    attrs = [
        asn1cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        asn1cms.CMSAttribute({"type": "signing_time", "values": [
            asn1cms.Time(name="utc_time", value=signing_time.replace(microsecond=0))
            if 1950 <= signing_time.year < 2050
            else asn1cms.Time(name="generalized_time", value=signing_time.replace(microsecond=0))
        ]}),
        asn1cms.CMSAttribute({"type": "message_digest", "values": [_digest(digest_name, content)]}),
    ]
    attrs.sort(key=lambda a: a.dump())  # DER SET OF: sorted encodings (X.690 11.6)
    signed_attrs = asn1cms.CMSAttributes(attrs)
    signature = sign(signed_attrs.dump())
    if not isinstance(signature, bytes) or not signature:
        raise CmsError("signer returned no signature bytes")
    signer_info = asn1cms.SignerInfo({
        "version": "v1",
        "sid": asn1cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value=asn1cms.IssuerAndSerialNumber({
                "issuer": cert_asn1.issuer, "serial_number": cert_asn1.serial_number}),
        ),
        "digest_algorithm": {"algorithm": digest_name},
        "signed_attrs": signed_attrs,
        "signature_algorithm": sig_alg,
        "signature": signature,
    })
    certs = [cert_asn1] + [
        asn1x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in chain]
    signed_data = asn1cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": digest_name}],
        "encap_content_info": {"content_type": "data"},
        "certificates": certs,
        "signer_infos": [signer_info],
    })
    return asn1cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


@dataclass(frozen=True)
class CmsSignature:
    """A verified detached signature: who signed, when they said they did, with what hash."""

    signer_certificate: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    signing_time: datetime | None
    digest_algorithm: str
    #: the SignerInfo's signature octets (what a signature time-stamp stamps)
    signature_value: bytes = b""
    #: DER TimeStampTokens of the unsigned signature-time-stamp attribute (RFC 3161
    #: Appendix A; CAdES-T), not yet verified: the relying party does that
    timestamp_tokens: tuple[bytes, ...] = ()
    #: validation data the SignedData carries in its ``crls`` field (RFC 5652 10.2.1): DER
    #: OCSP responses (id-ri-ocsp-response, RFC 5940) and CRLs, not yet judged
    ocsp_responses: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()


def verify_detached_signature(signature: bytes, content: bytes | Callable[[str], bytes]) -> CmsSignature:
    """Check digest and signature of a detached SignedData; returns the signer certificate.
    ``content``: the signed bytes, or what gives their digest under the signature's hash
    (``"sha256"`` or ``"sha384"``) when they were hashed elsewhere (a PDF's byte ranges).

    Chain, policy, validity and revocation are the relying party's checks
    (:mod:`.relying_party`); this verifies only the CMS structure and the signature: one
    SignerInfo, versions that fit its sid and content, its digestAlgorithm among the
    SignedData's, DER signed attributes with content-type (id-data, the eContentType),
    message-digest and signing-time once each, the signer's certificate carried and named
    by the sid alone (:mod:`protocols.cms`)."""
    try:
        return _verify(bytes(signature), content)
    except CmsError:
        raise
    except _DECODE_ERRORS as exc:
        raise CmsError(f"CMS signature does not decode: {type(exc).__name__}: {exc}") from None


def _verify(signature: bytes, content: bytes | Callable[[str], bytes]) -> CmsSignature:
    sd = cms_pieces.signed_data_of(signature, CmsError)
    encap = sd["encap_content_info"]
    if encap["content_type"].native != "data":
        raise CmsError(f"eContentType is {encap['content_type'].native}, not id-data")
    if encap["content"].native is not None:
        raise CmsError("SignedData carries eContent: not a detached signature")
    signer_infos = list(sd["signer_infos"])
    if len(signer_infos) != 1:
        raise CmsError(f"SignedData has {len(signer_infos)} SignerInfos, expected 1")
    si = signer_infos[0]
    cms_pieces.check_structure(sd, si, CmsError)
    to_verify = cms_pieces.signed_attributes_bytes(si, CmsError)
    certs = []
    for choice in sd["certificates"] or []:
        if choice.name != "certificate":
            continue
        certs.append(x509certs.load_der(choice.chosen.dump()))
    # no other source: the signer's certificate travels in the SignedData (RFC 5652 5.1 lets
    # it be left out only for a recipient that has it otherwise)
    signer = cms_pieces.find_signer(si["sid"], certs, CmsError)
    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise CmsError(f"digest algorithm {digest_name} is not SHA-256 or SHA-384")
    found = cms_pieces.signed_attributes(si, encap["content_type"].native, CmsError)
    expected = content(digest_name) if callable(content) else _digest(digest_name, content)
    if found["message_digest"][0].native != expected:
        raise CmsError("messageDigest does not match the content")
    signing_time = None
    if "signing_time" in found:
        signing_time = found["signing_time"][0].native
    cms_pieces.check_signature(signer, si, digest_name, to_verify, CmsError)
    tokens = tuple(value.dump() for attr in (si["unsigned_attrs"] or [])
                   if attr["type"].native == "signature_time_stamp_token" for value in attr["values"])
    ocsps, crls = [], []
    for choice in sd["crls"] or []:
        if choice.name == "crl":
            crls.append(choice.chosen.dump())
        elif choice.chosen["other_rev_info_format"].native == "ocsp_response":
            ocsps.append(choice.chosen["other_rev_info"].dump())
    return CmsSignature(signer, tuple(certs), signing_time, digest_name, si["signature"].native, tokens,
                        tuple(ocsps), tuple(crls))


def _one_signer_info(signature: bytes) -> tuple[asn1cms.ContentInfo, asn1cms.SignerInfo]:
    try:
        info = asn1cms.ContentInfo.load(bytes(signature), strict=True)
        infos = info["content"]["signer_infos"] if info["content_type"].native == "signed_data" else []
        if len(infos) != 1:
            raise CmsError("not a SignedData with one SignerInfo")
        return info, infos[0]
    except _DECODE_ERRORS as exc:
        raise CmsError(f"CMS signature does not decode: {type(exc).__name__}: {exc}") from None


def signature_value(signature: bytes) -> bytes:
    """The signature octets of the one SignerInfo of a SignedData: what a signature
    time-stamp's message imprint hashes (RFC 3161 Appendix A)."""
    return _one_signer_info(signature)[1]["signature"].native


def add_revocation_info(signature: bytes, *, ocsp_responses: Sequence[bytes] = (),
                        crls: Sequence[bytes] = ()) -> bytes:
    """``signature`` (DER SignedData) with validation data in its ``crls`` field (RFC 5652
    10.2.1: RevocationInfoChoices; an OCSP response as other, id-ri-ocsp-response, RFC
    5940), kept beside what it had: what a relying party needs to judge it later without
    asking anyone (the CAdES-LT idea). Nothing signed changes; the SignedData's version
    follows what it now carries (5.1: 5 once it holds an OCSP response)."""
    info, _si = _one_signer_info(signature)
    try:
        choices = list(info["content"]["crls"] or [])
        choices += [asn1cms.RevocationInfoChoice(name="crl", value=asn1crl.CertificateList.load(bytes(c), strict=True))
                    for c in crls]
        choices += [asn1cms.RevocationInfoChoice(name="other", value={
            "other_rev_info_format": "ocsp_response",
            "other_rev_info": asn1ocsp.OCSPResponse.load(bytes(o), strict=True)}) for o in ocsp_responses]
    except _DECODE_ERRORS as exc:
        raise CmsError(f"validation data does not decode: {type(exc).__name__}: {exc}") from None
    info["content"]["crls"] = asn1cms.RevocationInfoChoices(choices)
    # an OCSP response is revocation information of type other: SignedData version 5 (5.1)
    info["content"]["version"] = cms_pieces.signed_data_version(info["content"])[0]
    return asn1cms.ContentInfo({"content_type": "signed_data", "content": info["content"]}).dump()


def add_signature_timestamp(signature: bytes, token: bytes) -> bytes:
    """``signature`` (DER SignedData, one SignerInfo) with ``token`` added as its unsigned
    signature-time-stamp attribute (id-aa-signatureTimeStampToken, RFC 3161 Appendix A): a
    CAdES-T signature. The signed part is untouched; verify the token before adding it."""
    info, si = _one_signer_info(signature)
    try:
        token_info = asn1cms.ContentInfo.load(bytes(token), strict=True)
    except _DECODE_ERRORS as exc:
        raise CmsError(f"time-stamp token does not decode: {type(exc).__name__}: {exc}") from None
    attrs = [a for a in (si["unsigned_attrs"] or []) if a["type"].native != "signature_time_stamp_token"]
    attrs.append(asn1cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token_info]}))
    si["unsigned_attrs"] = asn1cms.CMSAttributes(attrs)
    info["content"]["signer_infos"] = asn1cms.SignerInfos([si])
    return asn1cms.ContentInfo({"content_type": "signed_data", "content": info["content"]}).dump()
