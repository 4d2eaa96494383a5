"""The relying party's side of a PDF signed with a phone's JPKI signing certificate (PAdES,
ETSI EN 319 142-1: the CMS signature inside the PDF, over the file's bytes but its own).

pyHanko reads the PDF: each signature field's /ByteRange and /Contents, whether the signed
bytes are the whole file or an earlier revision of it, and what the revisions after it
changed (ISO 32000-2 12.8: incremental updates; DocMDP). Our relying party
(:func:`reader.relying_party.verify`) judges the signature itself as it judges a detached
one: the CMS over the covered bytes, the chain to a JPKI root, the signing policy, key
usage, validity and revocation (OCSP or CRL), and reads the basic four data.

A verdict per signature field, in the order they were signed; the PDF is valid when it has
at least one signature and every one is. One named check of the PDF's own per signature,
``pdf_coverage``: it passes when the signature covers the whole file, or an earlier revision
after which only what does not change the signed content was added (validation data and
document timestamps, PAdES-LT/LTA; form filling and further signatures that the document's
DocMDP permissions allow). A document time-stamp (/DocTimeStamp, PAdES B-LTA) is judged as
its own field: ``pdf_coverage`` and ``document_timestamp`` (the token over the bytes it
covers, by a TSA under the relying party's time-stamping roots, whose unit its root's CRL
does not list revoked, as for a signature's time-stamp). Never raises on hostile bytes:
what cannot be read is a failed ``pdf`` check with the reason.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from asn1crypto import parser as asn1_parser
from cryptography import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    ModificationLevel,
    SuspiciousModification,
)
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature, SignatureCoverageLevel

from protocols import tsp
from protocols.jpki.errors import CmsError
from protocols.jpki.relying_party import Check
from reader.crl_cache import CrlCache
from reader.relying_party import EmbeddedRevocation, tsa_unit_refusal, verify

#: the largest PDF the relying party reads (a signed contract with its scans, not a library)
MAX_PDF_BYTES = 32 * 1024 * 1024
#: what may follow a signed revision without touching what was signed
_HARMLESS = {ModificationLevel.NONE, ModificationLevel.LTA_UPDATES, ModificationLevel.FORM_FILLING}


def refresh_asn1_name_maps() -> None:
    """Let asn1crypto resolve the names that were added to its OID maps after it first
    looked a name up. asn1crypto builds each OID class's name-to-OID map on the first
    lookup by name and keeps it; asn1crypto.tsp, pyHanko and pyhanko-certvalidator add names
    (signing_certificate_v2, CAdES attributes, extensions) when they are imported. In a
    process where our own CMS or OCSP code looked a name up before pyHanko was imported
    (``mcred demo``; a reader that verified a detached signature first), those names would
    stay unknown ("invalid literal for int() with base 10: 'signing_certificate_v2'"). A
    name map missing a name of its OID map is built again from the OID map."""
    from asn1crypto import core

    stack: list[type] = [core.ObjectIdentifier]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        names, oids = cls.__dict__.get("_reverse_map"), getattr(cls, "_map", None)
        if names is not None and oids and any(name not in names for name in oids.values()):
            cls._reverse_map = {name: oid for oid, name in oids.items()}  # as asn1crypto's _setup builds it


def is_pdf(data: bytes) -> bool:
    """A PDF's header (ISO 32000-2 7.5.2: ``%PDF-`` within the first 1024 bytes)."""
    return b"%PDF-" in data[:1024]


@dataclass(frozen=True)
class PdfSignature:
    """One signature field as the PDF holds it."""

    field: str
    byte_range: tuple[int, int, int, int]
    """what it signs: (start, length, start, length), the file without the /Contents hole"""
    cms: bytes
    """/Contents without its padding: the CMS SignedData DER"""
    embedded: EmbeddedPdfSignature
    kind: str = "signature"
    """``signature``, or ``document_timestamp`` (a /DocTimeStamp: PAdES B-LTA)"""


def signatures(pdf: bytes) -> list[PdfSignature]:
    """The signature fields of ``pdf``, document time-stamps among them, in signing order.
    Raises ValueError (or pyHanko's errors) on a PDF that cannot be read."""
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    if reader.encrypted:
        raise ValueError("the PDF is encrypted: decrypt it first")
    out = []
    for sig in reader.embedded_signatures:
        contents = bytes(sig.sig_object["/Contents"])
        _cls, _method, _tag, header, body, _trailer = asn1_parser.parse(contents)
        br = [int(x) for x in sig.byte_range]
        if len(br) != 4 or min(br) < 0 or br[0] + br[1] > len(pdf) or br[2] + br[3] > len(pdf):
            raise ValueError(f"{sig.field_name}: /ByteRange {br} does not fit the file")
        kind = "document_timestamp" if sig.sig_object.get("/Type") == "/DocTimeStamp" else "signature"
        out.append(PdfSignature(sig.field_name, (br[0], br[1], br[2], br[3]), header + body, sig, kind))
    return out


def _coverage(sig: PdfSignature) -> dict[str, Any]:
    """pyHanko's reading of where the signature lies in the PDF: the bytes it covers, and
    what the revisions after it changed (whether the covered bytes still match the
    signature is the ``signature`` check's)."""
    sig.embedded.compute_integrity_info(DEFAULT_DIFF_POLICY)
    info = sig.embedded.summarise_integrity_info()
    coverage, diff, docmdp_ok = info["coverage"], info.get("diff_result"), info.get("docmdp_ok", True)
    if coverage is SignatureCoverageLevel.ENTIRE_FILE:
        return _check("pdf_coverage", True, "covers the whole file")
    if coverage is not SignatureCoverageLevel.ENTIRE_REVISION:
        return _check("pdf_coverage", False, f"covers neither the file nor a revision of it ({coverage.name})")
    if isinstance(diff, SuspiciousModification):  # what pyHanko's own verdict counts as OTHER
        return _check("pdf_coverage", False, f"covers an earlier revision; the file was changed after it (OTHER: "
                      f"{' '.join(str(diff).split())[:300]})")
    level = getattr(diff, "modification_level", None)
    if level is None or level not in _HARMLESS or not docmdp_ok:
        what = "changes that cannot be judged" if level is None else level.name
        return _check("pdf_coverage", False, f"covers an earlier revision; the file was changed after it ({what}"
                      + ("" if docmdp_ok else ", beyond what its DocMDP permissions allow") + ")")
    return _check("pdf_coverage", True, f"covers an earlier revision; only {level.name} after it")


def verify_pdf(pdf: bytes, *, roots: Sequence[x509.Certificate], revocation: str = "ocsp",
               ocsp_url: str | None = None, crl: bytes | None = None, at: dt.datetime | None = None,
               client: httpx.Client | None = None, crl_cache: CrlCache | None = None,
               tsa_roots: Sequence[x509.Certificate] = ()) -> dict[str, Any]:
    """The verdict on every signature of ``pdf`` (``slot`` sign: documents are signed with
    the signing certificate), as :func:`reader.relying_party.verify` gives it for one, plus
    ``pdf_coverage``; ``signatures`` holds each field's own verdict. Never raises."""
    if len(pdf) > MAX_PDF_BYTES:
        return _verdict([_check("pdf", False, f"{len(pdf)} bytes: over the {MAX_PDF_BYTES} this relying party reads")])
    if not is_pdf(pdf):
        return _verdict([_check("pdf", False, "not a PDF (no %PDF- header)")])
    try:
        found = signatures(pdf)
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds on hostile bytes
        return _verdict([_check("pdf", False, f"not a readable signed PDF: {type(exc).__name__}: {exc}")])
    if not found:
        return _verdict([_check("pdf", False, "no signature in this PDF")])
    refresh_asn1_name_maps()
    embedded = None
    if revocation == "embedded":
        try:
            embedded = embedded_validation_data(found[0].embedded.reader)  # the reader signatures() opened
        except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds on hostile bytes
            return _verdict([_check("pdf", False, f"its document security store cannot be read: "
                                    f"{type(exc).__name__}: {exc}")])
    stamps = sum(1 for s in found if s.kind == "document_timestamp")
    counted = f"{len(found) - stamps} signature(s)" + (f" and {stamps} document time-stamp(s)" if stamps else "")
    checks = [_check("pdf", True, f"{counted}: {', '.join(s.field for s in found)}")]
    fields, documents = [], []
    for sig in found:
        try:
            coverage = _coverage(sig)
        except Exception as exc:  # noqa: BLE001 - as above
            coverage = _check("pdf_coverage", False, f"cannot be read: {type(exc).__name__}: {exc}")
        # the CMS's messageDigest against pyHanko's digest of the byte ranges (computed once,
        # for the coverage, and kept): the signed bytes are not copied out nor hashed twice
        try:
            if sig.kind == "document_timestamp":
                ours = _document_timestamp(sig, tsa_roots, revocation=revocation, at=at, client=client,
                                           crl_cache=crl_cache, embedded=embedded)
            else:
                ours = verify(_digest_of(sig), sig.cms, roots=roots, slot="sign", revocation=revocation,
                              ocsp_url=ocsp_url, crl=crl, at=at, client=client, crl_cache=crl_cache,
                              tsa_roots=tsa_roots, embedded=embedded)
        except Exception as exc:  # noqa: BLE001 - hostile bytes end as a refusal, as in RelyingPartyService
            ours = {"valid": False, "documents": [],
                    "checks": [_check("signature", False, f"unverifiable: {type(exc).__name__}: {exc}",
                                      code="bad_signature")]}
        own = [coverage, *ours["checks"]]
        fields.append({"field": sig.field, "kind": sig.kind, "valid": coverage["passed"] and ours["valid"],
                       "checks": own, "documents": ours["documents"]})
        checks += [{**c, "reason": f"{sig.field}: {c['reason']}"} for c in own]
        documents += ours["documents"]
    return {"valid": all(c["passed"] for c in checks), "checks": checks, "documents": documents,
            "signatures": fields}


def embedded_validation_data(reader: PdfFileReader) -> EmbeddedRevocation:
    """The OCSP responses and CRLs in the document security store of the PDF ``reader``
    reads (ISO 32000-2 12.8.4.3, PAdES B-LT), as DER; none when it has no store."""
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except Exception:  # noqa: BLE001 - pyHanko's NoDSSFoundError, or a damaged store
        if "/DSS" in reader.root:
            raise
        return EmbeddedRevocation()
    return EmbeddedRevocation(tuple(bytes(o.get_object().data) for o in dss.ocsps),
                              tuple(bytes(c.get_object().data) for c in dss.crls))


def _document_timestamp(sig: PdfSignature, tsa_roots: Sequence[x509.Certificate], *, revocation: str = "ocsp",
                        at: dt.datetime | None = None, client: httpx.Client | None = None,
                        crl_cache: CrlCache | None = None,
                        embedded: EmbeddedRevocation | None = None) -> dict[str, Any]:
    """A /DocTimeStamp's verdict (PAdES B-LTA): its /Contents is a TimeStampToken whose
    imprint is the hash of the bytes it covers, by a TSA under ``tsa_roots`` whose unit was
    not revoked before it (for keyCompromise: at all), judged as a signature's time-stamp is
    (:func:`reader.relying_party.tsa_unit_refusal`: the root's CRL fetched, or with
    ``revocation`` embedded the one in the PDF's document security store, current at the
    time-stamp; not asked with ``none``). A revoked unit's time-stamp vouches for nothing:
    the check fails with code ``revoked``, ``revoked_at`` and ``revocation_reason``."""
    if not tsa_roots:
        checks = [_check("document_timestamp", False, "a document time-stamp, but no time-stamping root is "
                         "trusted here")]
    else:
        try:
            stamp = tsp.verify_token(sig.cms, data=_digest_of(sig), roots=tsa_roots)
        except (tsp.TspError, CmsError) as exc:
            checks = [_check("document_timestamp", False, str(exc))]
        else:
            refused = None if revocation == "none" else tsa_unit_refusal(
                stamp, at or dt.datetime.now(dt.UTC), client=client, cache=crl_cache,
                embedded=(embedded or EmbeddedRevocation()) if revocation == "embedded" else None,
                name="document_timestamp")
            checks = [refused.to_dict()] if refused else [
                _check("document_timestamp", True, f"the file as it was at {stamp.gen_time.isoformat()}, "
                       f"time-stamp {stamp.serial:x} by {stamp.tsa_certificate.subject.rfc4514_string()}")]
    return {"valid": all(c["passed"] for c in checks), "checks": checks, "documents": []}


def _digest_of(sig: PdfSignature) -> Callable[[str], bytes]:
    def digest(name: str) -> bytes:
        try:
            return sig.embedded.compute_digest(name)
        except Exception as exc:  # noqa: BLE001 - pyHanko's, on a damaged file
            raise CmsError(f"the signed byte ranges cannot be hashed: {type(exc).__name__}: {exc}") from None

    return digest


def _check(name: str, passed: bool, reason: str, code: str | None = None) -> dict[str, Any]:
    """A check of the PDF's own, as :meth:`protocols.jpki.relying_party.Check.to_dict` gives one."""
    return Check(name, passed, reason, code=code).to_dict()


def _verdict(checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"valid": False, "checks": checks, "documents": [], "signatures": []}
