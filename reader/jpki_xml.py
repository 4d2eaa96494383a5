"""The JPKI relying party for an XML document signed inside (an enveloped XML signature or
XAdES B-B, as e-Gov 電子申請 and e-Tax filings are signed; :mod:`protocols.jpki.xmlsig`).

The verdict has the shape of :func:`reader.relying_party.verify`: ``signature`` (the
enveloped signature verifies with the certificate its KeyInfo carries, every reference's
digest matches, the first reference is the whole document), then the certificate judged as
for any JPKI signature: chain, policy (a signing certificate: a user-authentication
certificate signs no document), key usage, validity, revocation (``ocsp``, ``crl``,
``auto`` or ``none``). A XAdES-T signature also gets ``signature_timestamp`` (the token
verified under ``tsa_roots``, its imprint the hash of the canonical ds:SignatureValue, its
TSA unit not revoked before it); once it passes, chain and validity are judged at its
genTime and a revocation after it passes, as for a CAdES-T signature (specs/revocation.md
5.2). ``embedded`` judges revocation from the signature's own xades:RevocationValues
(XAdES-LT) at its time-stamp, with no network. ``documents`` adds the document's root element, the signature form and, for XAdES,
the signing time the signer claims (claimed only: never trusted).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import httpx
from cryptography import x509

from protocols.jpki.profile import Purpose
from protocols.jpki.relying_party import Check
from protocols.jpki.xmlsig import XmlExtraMissing, XmlSignatureError, verify_enveloped
from reader.crl_cache import CrlCache
from reader.relying_party import EmbeddedRevocation, _result, judge_certificate, signature_timestamp

#: the revocation modes of an XML signature (embedded: its xades:RevocationValues, XAdES-LT)
XML_REVOCATION_MODES = ("ocsp", "crl", "auto", "embedded", "none")


def verify_xml(document: bytes, *, roots: Sequence[x509.Certificate], revocation: str = "ocsp",
               ocsp_url: str | None = None, crl: bytes | None = None, at: dt.datetime | None = None,
               client: httpx.Client | None = None, crl_cache: CrlCache | None = None,
               tsa_roots: Sequence[x509.Certificate] = ()) -> dict[str, Any]:
    """Verify the enveloped signature of ``document`` and judge its signer; never raises on
    bad input (a document that is no signed XML is a failed ``signature`` check). Raises
    :class:`~protocols.jpki.xmlsig.XmlExtraMissing` (an ImportError) when signxml, the
    ``xml`` extra, is missing."""
    at = at or dt.datetime.now(dt.UTC)
    try:
        signed = verify_enveloped(document)
    except XmlExtraMissing:
        raise
    except XmlSignatureError as exc:
        return _result([Check("signature", False, str(exc), code="bad_signature")], None)
    form = ((("XAdES B-LT" if signed.ocsp_responses or signed.crls else "XAdES B-T") if signed.timestamps
             else "XAdES B-B") if signed.xades else "XML signature")
    checks = [Check("signature", True, f"{form} (enveloped, {signed.signature_method.rsplit('#', 1)[-1]}) "
                    "verifies over the whole document")]
    if revocation not in XML_REVOCATION_MODES:
        checks.append(Check("revocation", False, f"revocation mode {revocation!r} for an XML signature: "
                            f"one of {', '.join(XML_REVOCATION_MODES)}", code="failed"))
        revocation = "none"
    embedded = EmbeddedRevocation(signed.ocsp_responses, signed.crls) if revocation == "embedded" else None
    stamp = None
    if signed.timestamps:
        stamped, stamp = signature_timestamp(signed.timestamps, tsa_roots, revocation=revocation, at=at,
                                             client=client, cache=crl_cache, embedded=embedded)
        checks.append(stamped)
    checks += judge_certificate(signed.signer_certificate, roots=roots, required=Purpose.SIGN,
                                revocation=revocation, at=at, stamp=stamp, ocsp_url=ocsp_url, crl=crl,
                                client=client, crl_cache=crl_cache, embedded=embedded)
    result = _result(checks, signed.signer_certificate)
    for doc in result["documents"]:
        doc["xml"] = {"root": signed.root, "form": form, "signature_method": signed.signature_method,
                      "claimed_signing_time": (signed.claimed_signing_time.isoformat()
                                               if signed.claimed_signing_time else None)}
    return result

