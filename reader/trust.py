"""The reader's trust store: IACA certificates (trust anchors for document signers and
status-list signers), from PEM files or imported from a VICAL.

VICAL (ISO/IEC 18013-5:2021 Annex C): an untagged or tagged COSE_Sign1 whose payload is
``{"version": tstr, "vicalProvider": tstr, "date": tdate, ? "vicalIssueID": uint,
? "nextUpdate": tdate, "certificateInfos": [+ {"certificate": bstr, "serialNumber":
biguint, "ski": bstr, "docType": [+ tstr], ...}]}``, signed by a VICAL signer whose
x5chain leads to an anchor the caller trusts for VICALs. Each imported IACA is scoped to
the docTypes its CertificateInfo lists; PEM anchors are trusted for every docType.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from protocols import cbor, iaca
from protocols import certs as x509certs
from protocols.cose import CoseError, Sign1
from protocols.mdoc import ChainError, verify_chain
from protocols.mdoc.chain import NoTrustAnchor


class TrustError(ValueError):
    """A trust anchor or a VICAL cannot be read or does not verify; the message says why."""


class VicalAnchorMissing(TrustError):
    """A VICAL whose signer was certified by a CA none of the reader's VICAL anchors is: the
    provider rolled its VICAL CA over (or withdrew it, a compromise) and the reader has not
    taken the new one. ``issuer``: the name of that CA (RFC 4514 text); ``key_id``: its key
    identifier as the signer's authorityKeyIdentifier names it (None: not named)."""

    def __init__(self, message: str, issuer: str = "", key_id: bytes | None = None) -> None:
        super().__init__(message)
        self.issuer, self.key_id = issuer, key_id


def _anchor_missing(exc: NoTrustAnchor, x5chain: Sequence[bytes],
                    anchors: Sequence[x509.Certificate]) -> VicalAnchorMissing:
    """:class:`VicalAnchorMissing` saying which CA certified the VICAL's signer (its name and
    key identifier) and which VICAL anchors the reader holds instead."""
    top = exc.certificate if exc.certificate is not None else x509certs.load_der(x5chain[-1])
    key_id = x509certs.authority_key_id(top)
    issuer = top.issuer.rfc4514_string()

    def named(anchor: x509.Certificate) -> str:
        ski = x509certs.subject_key_id(anchor)
        return anchor.subject.rfc4514_string() + (f" (key identifier {ski.hex()})" if ski else "")

    held = "; ".join(named(a) for a in anchors) or "none"
    kid = f" (key identifier {key_id.hex()})" if key_id else ""
    same_name = (": one of that name is held, with another key (a CA re-keyed under its name, or a forgery)"
                 if any(a.subject == top.issuer for a in anchors) else "")
    return VicalAnchorMissing(
        f"VICAL refused: its signer chains to the VICAL CA {issuer}{kid}, which is not among the "
        f"{len(anchors)} VICAL anchor(s) this reader trusts ({held}){same_name}; the provider has rolled its "
        "VICAL CA over, or withdrawn the one this reader holds: take the provider's current VICAL CA "
        "certificate(s) into the VICAL anchor file", issuer, key_id)


def _vical_signer_usage(der: bytes) -> None:
    """A VICAL signer whose certificate names its uses must name the VICAL signer's
    (Annex C.1.7.2, 1.0.18013.5.1.8): a document signer's or a reader's key under the same
    anchor signs no trust list. One without an extKeyUsage (a self-signed test anchor) passes."""
    try:
        eku = x509certs.load_der(der).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    except ValueError as exc:
        raise TrustError(f"VICAL refused: its signer certificate: {exc}") from exc
    if iaca.EKU_MDL_VICAL_SIGNER not in eku:
        names = ", ".join(o.dotted_string for o in eku)
        raise TrustError(f"VICAL refused: its signer's extKeyUsage ({names}) lacks the VICAL signer's "
                         f"{iaca.EKU_MDL_VICAL_SIGNER.dotted_string} (ISO/IEC 18013-5 Annex C.1.7.2)")


def _issuer_of(cert: x509.Certificate, between: Sequence[bytes], anchor: x509.Certificate) -> x509.Certificate:
    """The certificate of the verified chain that issued ``cert``: the anchor, or one of the
    x5chain's certificates between (the chain verified, so one of them is)."""
    if cert.issuer == anchor.subject:
        return anchor
    for der in between:
        c = x509certs.load_der(der)
        if c.subject == cert.issuer:
            return c
    return anchor


@dataclass(frozen=True)
class TrustAnchor:
    certificate: x509.Certificate
    doc_types: frozenset[str] | None = None
    """None: any docType; else only these (from the VICAL)."""
    source: str = ""

    @property
    def fingerprint(self) -> bytes:
        return self.certificate.fingerprint(hashes.SHA256())

    def allows(self, doc_type: str) -> bool:
        return self.doc_types is None or doc_type in self.doc_types

    @functools.cached_property
    def profile(self) -> iaca.IacaProfile:
        """The anchor's Annex B Table B.1 rules that do not depend on the time (its
        self-signature among them), worked out at the first use and kept with the anchor:
        a reader meets the same anchors at every verification. ``profile.at(now)`` adds
        the validity. Any country: an imported IACA need not be Japan's."""
        return iaca.iaca_profile(self.certificate, country=None)


@dataclass(frozen=True)
class VicalImport:
    provider: str
    date: dt.datetime
    issue_id: int | None
    imported: int
    skipped: tuple[str, ...] = field(default=())
    #: SHA-256 of the signed payload: the VICAL's content, however often it was signed (b"":
    #: not known); what tells two VICALs that claim one issue ID apart (:func:`check_vical_succession`)
    digest: bytes = b""


def check_vical_succession(held: VicalImport | None, new: VicalImport) -> None:
    """Refuse a VICAL that goes back from ``held``, the last one a reader took from the same
    vicalProvider: a replayed VICAL, still before its nextUpdate and validly signed, may list
    an IACA its provider has since dropped. From the same provider, ``new`` must have a
    vicalIssueID at least ``held``'s (when both have one; else a ``date`` at least ``held``'s),
    and one equal must be the same VICAL (the same payload): an issue ID (or, without one, a
    date) names one VICAL. Nothing held, or another provider: taken (nothing to go back from).

    The rule is here, with the reading of a VICAL; the memory of ``held`` is not: a store
    is built afresh on every reload of a reader's trust and knows nothing of the stores
    before it, so whatever outlives them (mcred.present_wiring.ReloadingVerifier) keeps
    the last VICAL it took and hands it to :meth:`TrustStore.import_vical`.
    Raises :class:`TrustError` naming both VICALs."""
    if held is None or held.provider != new.provider:
        return
    if held.issue_id is not None and new.issue_id is not None:
        what, old, got = "vicalIssueID", held.issue_id, new.issue_id
    else:
        what, old, got = "date", held.date, new.date
    show = (lambda v: v.isoformat()) if what == "date" else str
    if got < old:
        raise TrustError(f"VICAL refused: {new.provider!r} {what} {show(got)} goes back from {show(old)}, "
                         f"that of the VICAL held (an older VICAL replayed)")
    if got == old and held.digest and new.digest != held.digest:
        raise TrustError(f"VICAL refused: {new.provider!r} {what} {show(got)} is that of the VICAL held "
                         "but its content differs (one issue names one VICAL)")


class TrustStore:
    """A set of IACA trust anchors. Not frozen: anchors are added at start-up."""

    def __init__(self, anchors: Iterable[TrustAnchor] = ()) -> None:
        self._anchors: dict[bytes, TrustAnchor] = {}
        self._by_id: dict[int, TrustAnchor] = {}  # the same anchors by certificate object (anchor_for)
        #: moves on every :meth:`add`: a verifier built on :attr:`certificates` is built again
        #: when it moved (reader.pipeline.ReaderPipeline), so that an anchor added to a running
        #: reader (an IACA rollover) is trusted from its next verification
        self.version = 0
        for a in anchors:
            self.add(a)

    # -- building ----------------------------------------------------------------------

    def add(self, anchor: TrustAnchor | x509.Certificate, *, source: str = "") -> TrustAnchor:
        if isinstance(anchor, x509.Certificate):
            anchor = TrustAnchor(anchor, None, source)
        fingerprint = anchor.fingerprint
        replaced = self._anchors.get(fingerprint)
        if replaced is not None:
            self._by_id.pop(id(replaced.certificate), None)
        self._anchors[fingerprint] = anchor
        self._by_id[id(anchor.certificate)] = anchor
        if replaced is None:  # a certificate added again (its scope may change) is no new anchor
            self.version += 1
        return anchor

    def add_pem(self, data: bytes, *, source: str = "PEM") -> list[TrustAnchor]:
        try:
            certs = x509certs.load_pem_all(data)
        except ValueError as exc:
            raise TrustError(f"{source}: no PEM certificate ({exc})") from exc
        return [self.add(c, source=source) for c in certs]

    @classmethod
    def from_pem_files(cls, paths: Iterable[Path | str]) -> TrustStore:
        store = cls()
        for p in paths:
            try:
                data = Path(p).read_bytes()
            except OSError as exc:
                raise TrustError(f"{p}: {exc}") from exc
            store.add_pem(data, source=str(p))
        return store

    def import_vical(
        self,
        data: bytes,
        *,
        vical_anchors: Sequence[x509.Certificate],
        now: dt.datetime,
        held: VicalImport | None = None,
        signer_revocation: Callable[[x509.Certificate, x509.Certificate, dt.datetime], str | None] | None = None,
    ) -> VicalImport:
        """Verify a VICAL (signer chain to ``vical_anchors``, COSE signature) and add its IACAs.
        ``held``: the VICAL the caller took before (:func:`check_vical_succession`); one that
        goes back from it is refused before any of its IACAs is added. ``signer_revocation``:
        asked of (signer certificate, the CA that certified it, ``now``) last, before any IACA
        is added (:class:`reader.vical_crl.VicalSignerCheck`: the VICAL CA's CRL the signer's
        certificate names); a reason refuses the VICAL, naming the signer and its serial.
        None: the signer is taken on its chain alone. A VICAL whose signer chains to a CA that
        none of ``vical_anchors`` is (the provider rolled its VICAL CA over or withdrew it) is
        refused with :class:`VicalAnchorMissing`, naming that CA and the anchors held."""
        try:
            value = cbor.loads(data)
            message = Sign1.decode(value)
            chain = verify_chain(message.x5chain, vical_anchors, now)
            message.verify(chain.public_key)  # refuses a detached (nil) payload: no content given
        except NoTrustAnchor as exc:  # a sound chain to a CA the reader does not hold (a new one)
            raise _anchor_missing(exc, message.x5chain, vical_anchors) from exc
        except (cbor.CborError, CoseError, ChainError) as exc:
            raise TrustError(f"VICAL refused: {exc}") from exc
        _vical_signer_usage(message.x5chain[0])
        try:
            vical = cbor.loads(message.payload)
        except cbor.CborError as exc:
            raise TrustError(f"VICAL payload: {exc}") from exc
        if isinstance(vical, cbor.CBORTag) and vical.tag == 24:
            _, vical = cbor.unembed(vical, what="VICAL payload")
        if not isinstance(vical, Mapping) or not isinstance(vical.get("certificateInfos"), list | tuple):
            raise TrustError("VICAL: payload is not a map with certificateInfos")
        provider = vical.get("vicalProvider")
        date = vical.get("date")
        if not isinstance(provider, str) or not isinstance(date, dt.datetime):
            raise TrustError("VICAL: vicalProvider (tstr) and date (tdate) are required")
        next_update = vical.get("nextUpdate")
        if isinstance(next_update, dt.datetime) and next_update < now:
            raise TrustError(f"VICAL: nextUpdate {next_update.isoformat()} has passed")
        issue_id = vical.get("vicalIssueID")
        taken = VicalImport(provider, date, issue_id if type(issue_id) is int else None,  # not a bool
                            0, (), hashlib.sha256(message.payload).digest())
        check_vical_succession(held, taken)
        if signer_revocation is not None:
            signer = chain.leaf
            why = signer_revocation(signer, _issuer_of(signer, message.x5chain[1:], chain.anchor), now)
            if why:
                raise TrustError(f"VICAL refused: its signer {signer.subject.rfc4514_string()} serial "
                                 f"{signer.serial_number:x} {why}")
        imported, skipped = 0, []
        for n, info in enumerate(vical["certificateInfos"]):
            where = f"certificateInfos[{n}]"
            if not isinstance(info, Mapping) or not isinstance(info.get("certificate"), bytes):
                skipped.append(f"{where}: no certificate")
                continue
            doc_types = info.get("docType")
            if not isinstance(doc_types, list | tuple) or not doc_types or \
                    not all(isinstance(d, str) for d in doc_types):
                skipped.append(f"{where}: docType must be a non-empty list of text")
                continue
            try:
                cert = x509certs.load_der(info["certificate"])
            except ValueError as exc:
                skipped.append(f"{where}: {exc}")
                continue
            self.add(TrustAnchor(cert, frozenset(doc_types), f"VICAL {provider}"))
            imported += 1
        return dataclasses.replace(taken, imported=imported, skipped=tuple(skipped))

    # -- reading -----------------------------------------------------------------------

    @property
    def anchors(self) -> tuple[TrustAnchor, ...]:
        return tuple(self._anchors.values())

    @property
    def certificates(self) -> list[x509.Certificate]:
        return [a.certificate for a in self._anchors.values()]

    def anchor_for(self, certificate: x509.Certificate) -> TrustAnchor | None:
        # the verifier hands back the very certificate objects of this store: found by
        # identity without a fingerprint (which serialises and hashes the certificate)
        hit = self._by_id.get(id(certificate))
        if hit is not None and hit.certificate is certificate:
            return hit
        return self._anchors.get(certificate.fingerprint(hashes.SHA256()))

    def __len__(self) -> int:
        return len(self._anchors)
