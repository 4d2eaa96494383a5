"""The TimeStampToken (RFC 3161 2.4.2): a CMS SignedData (RFC 5652) whose eContent is a
TSTInfo, signed by a TSA unit; built through a signing callable, verified in full.

The signed attributes are contentType (id-ct-TSTInfo), messageDigest and
signingCertificateV2 (RFC 5816: ESSCertIDv2 with SHA-256 of the TSA certificate and its
issuer and serial), which binds the token to its certificate. The TSA certificate carries
id-kp-timeStamping as its only, critical extended key usage (RFC 3161 2.3).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import cms as asn1cms
from asn1crypto import core as asn1core
from asn1crypto import tsp as asn1tsp
from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from protocols import cms as cms_pieces
from protocols.certs import authority_key_id, critical_refusal, subject_key_id

from .errors import TokenInvalid

HASHES = cms_pieces.HASHES
#: Longest path from a TSA certificate to a trusted root (unit, intermediates, root).
MAX_PATH = 4
_DECODE_ERRORS = cms_pieces.DECODE_ERRORS


digest = cms_pieces.digest


def _key_hash(key) -> str:  # noqa: ANN001
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp384r1": "sha384", "secp521r1": "sha512"}.get(key.curve.name, "sha256")
    return "sha256"


@dataclass(frozen=True)
class TsaUnit:
    """A TSA unit: its certificate, what signs with its key (``sign(data)`` returns a DER
    ECDSA or PKCS#1 v1.5 signature with the hash of :attr:`hash_algorithm`), the policy it
    stamps under, and the accuracy it promises."""

    certificate: x509.Certificate
    sign: Callable[[bytes], bytes]
    policy: str
    chain: tuple[x509.Certificate, ...] = ()
    accuracy: timedelta = timedelta(seconds=1)

    @property
    def hash_algorithm(self) -> str:
        return _key_hash(self.certificate.public_key())

    @functools.cached_property
    def _parts(self) -> _UnitParts:
        """What every token of this unit repeats, encoded once: asn1crypto re-encodes the
        certificate's Names each time they are copied into a new structure (~12 ms a token)."""
        cert = _asn1_cert(self.certificate)
        ess = asn1cms.CMSAttribute({"type": "signing_certificate_v2", "values": [{
            "certs": [{
                "cert_hash": digest("sha256", cert.dump()),
                "issuer_serial": {
                    "issuer": [asn1x509.GeneralName(name="directory_name", value=cert.issuer)],
                    "serial_number": cert.serial_number,
                },
            }],
        }]})
        sid = asn1cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": cert.issuer, "serial_number": cert.serial_number})
        certificates = asn1cms.CertificateSet([cert, *(_asn1_cert(c) for c in self.chain)])
        return _UnitParts(
            tsa=asn1x509.GeneralName(name="directory_name", value=cert.subject).dump(),
            sid=sid.dump(), signing_certificate=ess.dump(), certificates=certificates.dump(),
            signature_algorithm=_signature_algorithm(self.certificate, self.hash_algorithm))


@dataclass(frozen=True)
class _UnitParts:
    tsa: bytes
    sid: bytes
    signing_certificate: bytes
    certificates: bytes
    signature_algorithm: dict


def _asn1_cert(cert: x509.Certificate) -> asn1x509.Certificate:
    return asn1x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _accuracy(value: timedelta) -> asn1tsp.Accuracy:
    micros = round(value.total_seconds() * 1_000_000)
    fields = {}
    if micros // 1_000_000:
        fields["seconds"] = micros // 1_000_000
    if (micros // 1000) % 1000:
        fields["millis"] = (micros // 1000) % 1000
    if micros % 1000:
        fields["micros"] = micros % 1000
    return asn1tsp.Accuracy(fields)


def _signature_algorithm(cert: x509.Certificate, hash_name: str) -> dict:
    if isinstance(cert.public_key(), rsa.RSAPublicKey):
        return {"algorithm": "rsassa_pkcs1v15", "parameters": asn1core.Null()}
    return {"algorithm": f"{hash_name}_ecdsa"}


def build_token(*, unit: TsaUnit, hash_algorithm: str, message_digest: bytes, serial: int,
                gen_time: datetime, nonce: int | None = None, include_certificates: bool = True
                ) -> bytes:
    """DER ContentInfo(SignedData(TSTInfo)) stamping ``message_digest`` at ``gen_time``."""
    if gen_time.tzinfo is None:
        raise ValueError("gen_time must be timezone-aware")
    if hash_algorithm not in HASHES or len(message_digest) != HASHES[hash_algorithm].digest_size:
        raise ValueError(f"message imprint is not a {hash_algorithm} digest")
    if serial <= 0:
        raise ValueError("serialNumber must be positive")
    parts = unit._parts
    tst = {
        "version": "v1",
        "policy": unit.policy,
        "message_imprint": {"hash_algorithm": {"algorithm": hash_algorithm},
                            "hashed_message": message_digest},
        "serial_number": serial,
        "gen_time": gen_time.astimezone(UTC),
        "accuracy": _accuracy(unit.accuracy),
        "tsa": asn1x509.GeneralName.load(parts.tsa),
    }
    if nonce is not None:
        tst["nonce"] = nonce
    econtent = asn1tsp.TSTInfo(tst).dump()
    h = unit.hash_algorithm
    attrs = [
        asn1cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
        asn1cms.CMSAttribute({"type": "message_digest", "values": [digest(h, econtent)]}),
        asn1cms.CMSAttribute.load(parts.signing_certificate),
    ]
    attrs.sort(key=lambda a: a.dump())  # DER SET OF: sorted encodings (X.690 11.6)
    signed_attrs = asn1cms.CMSAttributes(attrs)
    signature = unit.sign(signed_attrs.dump())
    signer_info = asn1cms.SignerInfo({
        "version": "v1",
        "sid": asn1cms.SignerIdentifier.load(parts.sid),
        "digest_algorithm": {"algorithm": h},
        "signed_attrs": signed_attrs,
        "signature_algorithm": parts.signature_algorithm,
        "signature": signature,
    })
    signed_data = {
        "version": "v3",  # eContentType other than id-data (RFC 5652 5.1)
        "digest_algorithms": [{"algorithm": h}],
        "encap_content_info": {"content_type": "tst_info",
                               "content": asn1core.ParsableOctetString(econtent)},
        "signer_infos": [signer_info],
    }
    if include_certificates:
        signed_data["certificates"] = asn1cms.CertificateSet.load(parts.certificates)
    return asn1cms.ContentInfo({"content_type": "signed_data",
                                "content": asn1cms.SignedData(signed_data)}).dump()


@dataclass(frozen=True)
class TimeStamp:
    """A verified token: what was stamped, when, by which TSA certificate under which root."""

    gen_time: datetime
    accuracy: timedelta | None
    serial: int
    policy: str
    hash_algorithm: str
    message_digest: bytes
    nonce: int | None
    tsa_certificate: x509.Certificate
    root: x509.Certificate

    @property
    def latest(self) -> datetime:
        """The latest moment the token allows (genTime + accuracy)."""
        return self.gen_time + (self.accuracy or timedelta(0))

    def to_dict(self) -> dict:
        return {"gen_time": self.gen_time.isoformat(),
                "accuracy_seconds": self.accuracy.total_seconds() if self.accuracy else None,
                "serial": format(self.serial, "x"), "policy": self.policy,
                "tsa": self.tsa_certificate.subject.rfc4514_string(),
                "root": self.root.subject.rfc4514_string()}


def verify_token(token: bytes, *, roots: Sequence[x509.Certificate],
                 data: bytes | Callable[[str], bytes] | None = None,
                 hash_algorithm: str | None = None, message_digest: bytes | None = None,
                 nonce: int | None = None, certificates: Sequence[x509.Certificate] = ()
                 ) -> TimeStamp:
    """Verify ``token`` as a stamp of ``data`` (hashed with the token's own imprint
    algorithm; or a callable giving that hash by name, when the bytes are hashed elsewhere),
    or of ``message_digest`` under ``hash_algorithm``, by a TSA under one of ``roots``.

    Checks: the CMS structure (id-ct-TSTInfo, one SignerInfo; versions, digest algorithms,
    signer identifier and DER signed attributes as :mod:`protocols.cms`), messageDigest over the
    TSTInfo, signingCertificate(V2) naming the signer certificate, the signature, the TSA
    certificate's only and critical EKU id-kp-timeStamping, its path to one of ``roots``
    (by key identifier, each link's signature, each certificate valid at genTime), the
    message imprint, and ``nonce`` when one was asked. ``certificates``: where to find the
    TSA certificate when the token does not carry it (certReq false). Raises
    :class:`TokenInvalid` naming the first failure."""
    if not roots:
        raise TokenInvalid("no trusted time-stamping root given")
    if (data is None) == (message_digest is None) or (message_digest is not None and hash_algorithm is None):
        raise ValueError("give data, or message_digest with hash_algorithm")
    try:
        return _verify(bytes(token), data, hash_algorithm, message_digest, roots, nonce,
                       certificates)
    except TokenInvalid:
        raise
    except _DECODE_ERRORS as exc:
        raise TokenInvalid(f"time-stamp token does not decode: {type(exc).__name__}: {exc}") from None


def _verify(token: bytes, data: bytes | Callable[[str], bytes] | None, hash_algorithm: str | None,
            message_digest: bytes | None, roots: Sequence[x509.Certificate], nonce: int | None,
            extra: Sequence[x509.Certificate]) -> TimeStamp:
    sd = cms_pieces.signed_data_of(token, TokenInvalid)
    signer_infos = list(sd["signer_infos"])
    if len(signer_infos) != 1:
        raise TokenInvalid(f"the token has {len(signer_infos)} SignerInfos, expected 1")
    si = signer_infos[0]
    # first: a SignedData of version 1 is read as PKCS #7's, whose content is not an OCTET STRING
    cms_pieces.check_structure(sd, si, TokenInvalid)
    econtent, tst = _tst_info(sd)
    to_verify = cms_pieces.signed_attributes_bytes(si, TokenInvalid)
    certs = [x509.load_der_x509_certificate(c.chosen.dump())
             for c in (sd["certificates"] or []) if c.name == "certificate"]
    if not certs and not extra:
        raise TokenInvalid("the TSA certificate is neither in the token nor given (certReq was false?)")
    signer = cms_pieces.find_signer(si["sid"], [*certs, *extra], TokenInvalid,
                                    where="the token's certificates or those given")
    h = si["digest_algorithm"]["algorithm"].native
    if h not in HASHES:
        raise TokenInvalid(f"SignerInfo digest algorithm {h} is not SHA-256, SHA-384 or SHA-512")
    attrs = _signed_attributes(si)
    if attrs.get("message_digest") != digest(h, econtent):
        raise TokenInvalid("messageDigest does not match the TSTInfo")
    _check_signing_certificate(attrs, signer)
    cms_pieces.check_signature(signer, si, h, to_verify, TokenInvalid, what="the token's signature")
    _check_timestamping_eku(signer)
    gen_time = tst["gen_time"].native
    root = _path_to_root(signer, [*certs, *extra], roots, gen_time)
    if tst["version"].native != "v1":
        raise TokenInvalid(f"TSTInfo version {tst['version'].native}, expected v1")
    got_alg, message_digest = _check_imprint(tst, data, hash_algorithm, message_digest, nonce)
    return TimeStamp(gen_time=gen_time, accuracy=_read_accuracy(tst["accuracy"]),
                     serial=tst["serial_number"].native, policy=tst["policy"].dotted,
                     hash_algorithm=got_alg, message_digest=message_digest, nonce=tst["nonce"].native,
                     tsa_certificate=signer, root=root)


def _tst_info(sd: asn1cms.SignedData) -> tuple[bytes, asn1tsp.TSTInfo]:
    """The TSTInfo a token's SignedData encapsulates: its bytes (what messageDigest is over)
    and the parsed value."""
    encap = sd["encap_content_info"]
    if encap["content_type"].native != "tst_info":
        raise TokenInvalid(f"eContentType is {encap['content_type'].native}, not id-ct-TSTInfo")
    if not isinstance(encap["content"], asn1core.ParsableOctetString):
        raise TokenInvalid("the token carries no TSTInfo (eContent absent)")
    econtent = encap["content"].contents
    return econtent, asn1tsp.TSTInfo.load(econtent, strict=True)


def _check_imprint(tst: asn1tsp.TSTInfo, data: bytes | Callable[[str], bytes] | None,
                   hash_algorithm: str | None, message_digest: bytes | None,
                   nonce: int | None) -> tuple[str, bytes]:
    """The TSTInfo's imprint is of ``data`` (hashed with the imprint's own algorithm), or is
    ``message_digest`` under ``hash_algorithm``, and its nonce is ``nonce`` when one was
    asked: returns the imprint's algorithm and digest."""
    imprint = tst["message_imprint"]
    got_alg = imprint["hash_algorithm"]["algorithm"].native
    if data is not None:
        if got_alg not in HASHES:
            raise TokenInvalid(f"the token's imprint algorithm {got_alg} is not accepted")
        hash_algorithm, message_digest = got_alg, data(got_alg) if callable(data) else digest(got_alg, data)
    if got_alg != hash_algorithm or imprint["hashed_message"].native != message_digest:
        raise TokenInvalid("the token's message imprint is not the digest of what it should stamp")
    if nonce is not None and tst["nonce"].native != nonce:
        raise TokenInvalid("the token's nonce is not the request's")
    return got_alg, bytes(message_digest)


def check_imprint(token: bytes, *, data: bytes, nonce: int | None = None) -> datetime:
    """The token's genTime, after checking that it stamps ``data`` (with its own imprint
    algorithm) and carries ``nonce``: what a signer checks of a TSA it has no root for.
    The signature and the TSA are NOT verified (:func:`verify_token` does that)."""
    try:
        _econtent, tst = _tst_info(cms_pieces.signed_data_of(token, TokenInvalid))
        _check_imprint(tst, data, None, None, nonce)
        return tst["gen_time"].native
    except TokenInvalid:
        raise
    except _DECODE_ERRORS as exc:
        raise TokenInvalid(f"time-stamp token does not decode: {type(exc).__name__}: {exc}") from None


def _signed_attributes(si: asn1cms.SignerInfo) -> dict:
    """The signed attributes by name, each single-valued (RFC 5652's rules in
    :func:`protocols.cms.signed_attributes`, content-type id-ct-TSTInfo), read as values."""
    found: dict = {}
    for name, values in cms_pieces.signed_attributes(si, "tst_info", TokenInvalid).items():
        if len(values) != 1:
            raise TokenInvalid(f"signed attribute {name} is not single-valued")
        found[name] = values[0] if name.startswith("signing_certificate") else values[0].native
    return found


def _check_signing_certificate(attrs: dict, signer: x509.Certificate) -> None:
    """RFC 5816 / RFC 2634 5.4: the first ESSCertID(v2) is the signer's certificate."""
    der = signer.public_bytes(Encoding.DER)
    if "signing_certificate_v2" in attrs:
        first = attrs["signing_certificate_v2"]["certs"][0]
        alg = first["hash_algorithm"]["algorithm"].native
        if alg not in HASHES:
            raise TokenInvalid(f"ESSCertIDv2 hash {alg} is not supported")
        expected = digest(alg, der)
    elif "signing_certificate" in attrs:
        first = attrs["signing_certificate"]["certs"][0]
        sha1 = hashes.Hash(hashes.SHA1())  # noqa: S303 - ESSCertID (v1) is SHA-1 by definition
        sha1.update(der)
        expected = sha1.finalize()
    else:
        raise TokenInvalid("no signingCertificate(V2) attribute binds the TSA certificate")
    if first["cert_hash"].native != expected:
        raise TokenInvalid("signingCertificate names another certificate than the signer's")
    serial = first["issuer_serial"]
    if serial and serial.native and serial["serial_number"].native != signer.serial_number:
        raise TokenInvalid("signingCertificate's issuerSerial is not the signer's")


def _check_timestamping_eku(cert: x509.Certificate) -> None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TokenInvalid("the TSA certificate has no extendedKeyUsage") from None
    if list(ext.value) != [ExtendedKeyUsageOID.TIME_STAMPING] or not ext.critical:
        raise TokenInvalid("the TSA certificate's extendedKeyUsage is not id-kp-timeStamping "
                           "alone and critical (RFC 3161 2.3)")


def _valid_at(cert: x509.Certificate, at: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise TokenInvalid(f"{what} {cert.subject.rfc4514_string()} is not valid at the "
                           f"token's genTime {at.isoformat()}")


#: The extensions of a TSA unit's certificate, or of a CA between it and the root, that this
#: verifier processes: one marking any other critical is refused (RFC 5280 4.2).
PATH_EXTENSIONS = frozenset({
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE, ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS})


def _extensions_processed(cert: x509.Certificate, what: str) -> None:
    why = critical_refusal(cert, PATH_EXTENSIONS)
    if why:
        raise TokenInvalid(f"{what} {cert.subject.rfc4514_string()} cannot be relied on: {why}")


def _path_to_root(leaf: x509.Certificate, pool: Sequence[x509.Certificate],
                  roots: Sequence[x509.Certificate], at: datetime) -> x509.Certificate:
    _valid_at(leaf, at, "TSA certificate")
    _extensions_processed(leaf, "the TSA certificate")
    cert = leaf
    for _ in range(MAX_PATH):
        aki = authority_key_id(cert)
        for root in roots:
            if root.subject == cert.issuer and (aki is None or subject_key_id(root) == aki):
                try:
                    cert.verify_directly_issued_by(root)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                _valid_at(root, at, "time-stamping root")
                return root
        up = [c for c in pool if c.subject == cert.issuer and c != cert
              and (aki is None or subject_key_id(c) == aki)]
        if not up:
            break
        parent = up[0]
        try:
            cert.verify_directly_issued_by(parent)
            ca = parent.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            raise TokenInvalid(f"{cert.subject.rfc4514_string()} is not issued by the CA "
                               "certificate the token carries") from None
        if not ca:
            raise TokenInvalid(f"{parent.subject.rfc4514_string()} is not a CA")
        _valid_at(parent, at, "time-stamping CA")
        _extensions_processed(parent, "the time-stamping CA")
        cert = parent
    raise TokenInvalid(f"the TSA certificate {leaf.subject.rfc4514_string()} does not chain to "
                       "a trusted time-stamping root")


def _read_accuracy(value: asn1tsp.Accuracy) -> timedelta | None:
    if not value or value.native is None:
        return None
    native = value.native
    return timedelta(seconds=native.get("seconds") or 0, milliseconds=native.get("millis") or 0,
                     microseconds=native.get("micros") or 0)


__all__ = ["HASHES", "TimeStamp", "TsaUnit", "build_token", "check_imprint", "digest", "verify_token"]
