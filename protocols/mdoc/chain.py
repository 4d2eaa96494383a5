"""X.509 chain checks for issuerAuth / readerAuth x5chain (ISO/IEC 18013-5:2021 §9.3.3, Annex B).

Deliberately small: each certificate must be directly issued by the next (name and
signature), the last by a trust anchor, all valid at ``now``, the leaf carrying the
expected extended key usage. Full Annex B profile checks are for the reader to add.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from protocols.mdoc.errors import MdocError

EKU_MDL_DS = x509.ObjectIdentifier("1.0.18013.5.1.2")
EKU_MDL_READER_AUTH = x509.ObjectIdentifier("1.0.18013.5.1.6")


class ChainError(MdocError):
    """A certificate chain does not lead to a trust anchor, or a certificate is unusable."""


@dataclass(frozen=True)
class VerifiedChain:
    leaf: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    not_before: dt.datetime
    not_after: dt.datetime
    """The window in which every certificate of the path (anchor included) is valid."""
    anchor: x509.Certificate

    @property
    def description(self) -> str:
        return _describe(self.leaf, self.anchor)


@functools.lru_cache(maxsize=256)
def _describe(leaf: x509.Certificate, anchor: x509.Certificate) -> str:
    return f"{leaf.subject.rfc4514_string()} <- {anchor.subject.rfc4514_string()}"


def load_chain(ders: Sequence[bytes]) -> list[x509.Certificate]:
    if not ders:
        raise ChainError("x5chain is empty: no document signer certificate")
    certs = []
    for i, der in enumerate(ders):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
            raise ChainError(f"x5chain[{i}]: not a DER certificate ({exc})") from exc
    return certs


def _eku_ok(cert: x509.Certificate, eku: x509.ObjectIdentifier) -> bool:
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return False
    return eku in ext.value


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


def _verify_chain(ders, trust_anchors, now, eku) -> VerifiedChain:
    certs = load_chain(ders)
    leaf = certs[0]
    if eku is not None and not _eku_ok(leaf, eku):
        raise ChainError(f"leaf certificate lacks extended key usage {eku.dotted_string}")
    path = list(certs)
    # drop a trailing anchor included in the chain itself
    while len(path) > 1 and any(path[-1] == a for a in trust_anchors):
        path.pop()
    for i in range(len(path) - 1):
        try:
            path[i].verify_directly_issued_by(path[i + 1])
        except Exception as exc:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError
            raise ChainError(f"x5chain[{i}] is not issued by x5chain[{i + 1}]: {type(exc).__name__} {exc}") from None
    top = path[-1]
    anchor = None
    for candidate in trust_anchors:
        try:
            top.verify_directly_issued_by(candidate)
        except Exception:  # noqa: BLE001 - not this anchor
            continue
        anchor = candidate
        break
    if anchor is None:
        issuer = top.issuer.rfc4514_string()
        raise ChainError(f"no trust anchor issued {top.subject.rfc4514_string()} (issuer {issuer})")
    full = [*path, anchor]
    not_before = max(c.not_valid_before_utc for c in full)
    not_after = min(c.not_valid_after_utc for c in full)
    for c in full:
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise ChainError(
                f"certificate {c.subject.rfc4514_string()} not valid at {now.isoformat()} "
                f"({c.not_valid_before_utc.isoformat()} .. {c.not_valid_after_utc.isoformat()})"
            )
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ChainError(f"leaf key is {type(key).__name__}, need EC")
    return VerifiedChain(leaf, key, not_before, not_after, anchor)

