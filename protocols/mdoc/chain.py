"""X.509 chain checks for issuerAuth / readerAuth x5chain (ISO/IEC 18013-5:2021 §9.3.3, Annex B).

Deliberately small: each certificate must be directly issued by the next (name and
signature), the last by a trust anchor, all valid at ``now``, the leaf carrying the
expected extended key usage. Full Annex B profile checks are for the reader to add.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from protocols import certs as x509certs
from protocols.mdoc.errors import MdocError

EKU_MDL_DS = x509.ObjectIdentifier("1.0.18013.5.1.2")
EKU_MDL_READER_AUTH = x509.ObjectIdentifier("1.0.18013.5.1.6")


#: The extensions of a certificate of an x5chain (a document signer, a reader's, a CA between
#: one and its anchor) that these checks and the Annex B profile checks process: one marking
#: any other critical is refused (RFC 5280 4.2). The anchor, trusted as configured, is not
#: judged by its extensions.
PATH_EXTENSIONS = frozenset({
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE, ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS})


class ChainError(MdocError):
    """A certificate chain does not lead to a trust anchor, or a certificate is unusable."""


class NoTrustAnchor(ChainError):
    """No trust anchor given issued the chain's top certificate (``certificate``, whose issuer
    the anchors lack): the chain is sound as far as it goes, its CA is not trusted here."""

    def __init__(self, message: str, certificate: x509.Certificate | None = None) -> None:
        super().__init__(message)
        self.certificate = certificate


@dataclass(frozen=True)
class VerifiedChain:
    leaf: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    not_before: dt.datetime
    not_after: dt.datetime
    """The window in which every certificate of the path (anchor included) is valid."""
    anchor: x509.Certificate

    _description: str | None = field(default=None, repr=False, compare=False)
    leaf_issued_by_anchor: bool = field(default=False, compare=False)
    """True when the leaf itself was verified as directly issued by ``anchor`` (issuer Name
    and signature), i.e. the path had no intermediate certificate: a later profile check of
    the same pair (Annex B ``ds.issued_by_iaca``) need not verify that signature again."""
    leaf_der: bytes = field(default=b"", repr=False, compare=False)
    anchor_der: bytes = field(default=b"", repr=False, compare=False)
    """The exact DER of the leaf and of the anchor (keys for what is worked out per pair)."""

    @functools.cached_property
    def leaf_validity(self) -> tuple[dt.datetime, dt.datetime]:
        """The leaf's own (notBefore, notAfter), read once per verified chain."""
        return self.leaf.not_valid_before_utc, self.leaf.not_valid_after_utc

    @functools.cached_property
    def anchor_subject(self) -> str:
        """The anchor's subject as RFC 4514 text (read once per verified chain)."""
        return self.anchor.subject.rfc4514_string()

    @functools.cached_property
    def description(self) -> str:
        """``leaf subject <- anchor subject`` (the chain check's reason at every verification)."""
        if self._description is not None:
            return self._description
        return f"{self.leaf.subject.rfc4514_string()} <- {self.anchor.subject.rfc4514_string()}"


def verify_chain(
    ders: Sequence[bytes],
    trust_anchors: Sequence[x509.Certificate],
    now: dt.datetime,
    *,
    eku: x509.ObjectIdentifier | None = None,
) -> VerifiedChain:
    """Walk ``ders`` (leaf first) to one of ``trust_anchors``; raise :class:`ChainError` with the reason."""
    try:
        return _verify_chain(ders, trust_anchors, now, eku)
    except ChainError:
        raise
    except (ValueError, UnsupportedAlgorithm) as exc:  # cryptography parses extensions and keys lazily
        raise ChainError(f"malformed certificate: {exc}") from exc


# ECDSA signature algorithms (RFC 5758 §3.2: the AlgorithmIdentifier has no parameters),
# with the exact DER of that AlgorithmIdentifier and the hash to use.
_ECDSA_ALGS: dict[x509.ObjectIdentifier, tuple[bytes, hashes.HashAlgorithm]] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: (bytes.fromhex("300a06082a8648ce3d040302"), hashes.SHA256()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: (bytes.fromhex("300a06082a8648ce3d040303"), hashes.SHA384()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: (bytes.fromhex("300a06082a8648ce3d040304"), hashes.SHA512()),
}


@dataclass(frozen=True)
class _Parsed:
    """What verification reads from one certificate, parsed once per exact DER bytes: a pure
    function of them (never a verdict: signatures and times are checked at every use)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePublicKey | None
    """The EC public key, None if not EC."""
    tbs: bytes | None
    """TBS bytes when inner and outer signature algorithms are the same parameterless ECDSA id."""
    ecdsa: ec.ECDSA | None
    issuer_name: bytes | None
    """DER of the issuer Name, and of the subject Name (None if the walk failed)."""
    subject_name: bytes | None
    not_before: dt.datetime
    not_after: dt.datetime

    @functools.cached_property
    def subject_text(self) -> str:
        """The subject as RFC 4514 text, worked out once per certificate."""
        return self.cert.subject.rfc4514_string()

    @functools.cached_property
    def critical_refusal(self) -> str | None:
        """Why the certificate cannot be relied on for an extension it marks critical and a
        chain check here does not process (:data:`PATH_EXTENSIONS`), or None."""
        return x509certs.critical_refusal(self.cert, PATH_EXTENSIONS)

    @functools.cached_property
    def ekus(self) -> frozenset[x509.ObjectIdentifier] | None:
        """The extended key usages (None without the extension); raises like cryptography
        on a malformed extension, and is then worked out again at the next use."""
        try:
            ext = self.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            return None
        return frozenset(ext.value)


@functools.lru_cache(maxsize=256)
def _parsed(der: bytes) -> _Parsed:
    """Raise :class:`~protocols.certs.CertificateParseError` for bytes that are no certificate."""
    cert = x509certs.load_der(der)
    try:
        key = x509certs.public_key_of(cert)
    except x509certs.CertificateParseError:
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        key = None
    tbs = ecdsa = issuer_name = subject_name = None
    try:
        tbs, inner_alg, outer_alg, issuer_name, subject_name = _tbs_fields(der)
        alg = _ECDSA_ALGS.get(cert.signature_algorithm_oid)
        if alg is not None and inner_alg == outer_alg == alg[0]:
            ecdsa = ec.ECDSA(alg[1])
        else:
            tbs = None
    except (ValueError, IndexError, UnsupportedAlgorithm):
        tbs = None
    return _Parsed(cert, key, tbs, ecdsa, issuer_name, subject_name, cert.not_valid_before_utc, cert.not_valid_after_utc)


_DER_BY_ID: dict[int, tuple[x509.Certificate, bytes]] = {}
"""The DER of a trust anchor object, by identity (the anchors are the same few objects at
every verification; hashing a Certificate serialises it, ~1 us, and public_bytes ~6 us).
The entry keeps its certificate alive, so its id cannot be reused while it is there."""


def _der_of(cert: x509.Certificate) -> bytes:
    hit = _DER_BY_ID.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1]
    der = cert.public_bytes(Encoding.DER)
    if len(_DER_BY_ID) >= 64:
        _DER_BY_ID.clear()
    _DER_BY_ID[id(cert)] = (cert, der)
    return der


def _tlv_end(der: bytes, pos: int) -> tuple[int, int]:
    """(start of contents, end) of the DER TLV at ``pos`` (X.690 §8.1); ValueError if truncated."""
    if pos + 2 > len(der):
        raise ValueError("truncated")
    first = der[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        n = first & 0x7F
        if not 1 <= n <= 4 or pos + 2 + n > len(der):
            raise ValueError("bad length")
        start, length = pos + 2 + n, int.from_bytes(der[pos + 2 : pos + 2 + n], "big")
    if start + length > len(der):
        raise ValueError("truncated")
    return start, start + length


def _tbs_fields(der: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature } (RFC 5280 §4.1):
    the TBS bytes, its inner ``signature`` AlgorithmIdentifier, the outer one, and the DER
    of the issuer and subject Names."""
    body, end = _tlv_end(der, 0)
    if der[0] != 0x30 or end != len(der):
        raise ValueError("not a SEQUENCE")
    tbs_body, tbs_end = _tlv_end(der, body)
    outer_alg = der[tbs_end : _tlv_end(der, tbs_end)[1]]
    pos = tbs_body
    if der[pos] == 0xA0:  # [0] EXPLICIT version
        pos = _tlv_end(der, pos)[1]
    pos = _tlv_end(der, pos)[1]  # serialNumber
    alg_end = _tlv_end(der, pos)[1]
    inner_alg = der[pos:alg_end]
    issuer_end = _tlv_end(der, alg_end)[1]
    validity_end = _tlv_end(der, issuer_end)[1]
    subject_end = _tlv_end(der, validity_end)[1]
    if der[alg_end] != 0x30 or der[validity_end] != 0x30 or subject_end > tbs_end:
        raise ValueError("unexpected TBSCertificate layout")
    return der[body:tbs_end], inner_alg, outer_alg, der[alg_end:issuer_end], der[validity_end:subject_end]


def _tbs_and_alg_ids(der: bytes) -> tuple[bytes, bytes, bytes]:
    """The TBS bytes and the inner and outer signature AlgorithmIdentifiers (see :func:`_tbs_fields`)."""
    return _tbs_fields(der)[:3]


def _issued_by_fast(cert: x509.Certificate, cert_der: bytes, issuer: x509.Certificate, issuer_der: bytes) -> bool:
    """True only when ``cert`` (``cert_der``) is certainly directly issued by ``issuer``
    (``issuer_der``) with ECDSA, judged from the DER bytes: inner and outer signature algorithms are the same parameterless
    ECDSA identifier, the issuer Name is byte for byte the issuer's subject Name and the
    signature verifies over the TBS bytes. False means "not decided here" (another algorithm,
    a non-EC key, names that differ in encoding only, any failure): the caller then asks
    cryptography's ``verify_directly_issued_by``, which gives the verdict and the error."""
    c, i = _parsed(cert_der), _parsed(issuer_der)
    if c.tbs is None or i.key is None or c.issuer_name is None or c.issuer_name != i.subject_name:
        return False
    try:
        i.key.verify(c.cert.signature, c.tbs, c.ecdsa)
    except InvalidSignature:
        return False
    return True


def certainly_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True only when ``issuer`` certainly directly issued ``cert`` (issuer Name byte for byte
    the issuer's subject, same parameterless ECDSA algorithm inside and out, signature
    verifies over the TBS bytes: :func:`_issued_by_fast`); False means "not decided here",
    and the caller asks cryptography's ``verify_directly_issued_by``. For certificates seen
    again and again (a trust anchor's self-signature in the Annex B rules)."""
    try:
        return _issued_by_fast(cert, _der_of(cert), issuer, _der_of(issuer))
    except Exception:  # noqa: BLE001 - anything odd: not decided here
        return False


def _check_issued_by(cert: x509.Certificate, cert_der: bytes, issuer: x509.Certificate, issuer_der: bytes) -> None:
    """Raise (like ``verify_directly_issued_by``) unless ``issuer`` directly issued ``cert``."""
    try:
        decided = _issued_by_fast(cert, cert_der, issuer, issuer_der)
    except Exception:  # noqa: BLE001 - anything odd: let cryptography decide and explain
        decided = False
    if not decided:
        cert.verify_directly_issued_by(issuer)


def _verify_chain(ders, trust_anchors, now, eku) -> VerifiedChain:
    if not ders:
        raise ChainError("x5chain is empty: no document signer certificate")
    ders = [d if type(d) is bytes else bytes(d) for d in ders]
    parsed = []
    for i, der in enumerate(ders):
        try:
            parsed.append(_parsed(der))
        except x509certs.CertificateParseError as exc:
            raise ChainError(f"x5chain[{i}]: not a DER certificate ({exc})") from exc
    certs = [c.cert for c in parsed]
    leaf = certs[0]
    if eku is not None and eku not in (parsed[0].ekus or ()):
        raise ChainError(f"leaf certificate lacks extended key usage {eku.dotted_string}")
    path = list(certs)
    # drop a trailing anchor included in the chain itself
    while len(path) > 1 and any(path[-1] == a for a in trust_anchors):
        path.pop()
    for i in range(len(path)):
        why = parsed[i].critical_refusal
        if why:
            raise ChainError(f"x5chain[{i}] ({parsed[i].subject_text}) cannot be relied on: {why}")
    for i in range(len(path) - 1):
        try:
            _check_issued_by(path[i], ders[i], path[i + 1], ders[i + 1])
        except Exception as exc:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError
            raise ChainError(f"x5chain[{i}] is not issued by x5chain[{i + 1}]: {type(exc).__name__} {exc}") from None
    top, top_der = path[-1], ders[len(path) - 1]
    anchor = None
    for candidate in trust_anchors:
        try:
            _check_issued_by(top, top_der, candidate, _der_of(candidate))
        except Exception:  # noqa: BLE001 - not this anchor
            continue
        anchor = candidate
        break
    if anchor is None:
        issuer = top.issuer.rfc4514_string()
        raise NoTrustAnchor(f"no trust anchor issued {top.subject.rfc4514_string()} (issuer {issuer})", top)
    windows = [(p.not_before, p.not_after, p.cert) for p in parsed[:len(path)]]
    anchor_der = _der_of(anchor)
    anchor_parsed = _parsed(anchor_der)
    windows.append((anchor_parsed.not_before, anchor_parsed.not_after, anchor))
    not_before = max([w[0] for w in windows])
    not_after = min([w[1] for w in windows])
    for start, end, c in windows:
        if not start <= now <= end:
            raise ChainError(
                f"certificate {c.subject.rfc4514_string()} not valid at {now.isoformat()} "
                f"({start.isoformat()} .. {end.isoformat()})"
            )
    key = parsed[0].key  # an EC key, or None (_parsed keeps no other)
    if key is None:
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ChainError(f"leaf key is {type(key).__name__}, need EC")
    description = f"{parsed[0].subject_text} <- {anchor_parsed.subject_text}"
    # VerifiedChain(...) without the frozen __init__ (one object.__setattr__ per field; equal
    # to the __init__-built one, tests/test_mdoc_chain_fastpath.py), its two cached
    # properties filled from what was read here
    chain = object.__new__(VerifiedChain)
    chain.__dict__.update(leaf=leaf, public_key=key, not_before=not_before, not_after=not_after, anchor=anchor,
                          _description=description, leaf_issued_by_anchor=len(path) == 1, leaf_der=ders[0],
                          anchor_der=anchor_der, description=description, anchor_subject=anchor_parsed.subject_text,
                          leaf_validity=(parsed[0].not_before, parsed[0].not_after))
    return chain
