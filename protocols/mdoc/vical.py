"""VICAL (ISO/IEC 18013-5:2021 Annex C.1.7): a signed list of IACA certificates, what a
reader imports as trust anchors, each scoped to the docTypes listed for it.

``VICAL = {"version": tstr, "vicalProvider": tstr, "date": tdate, ? "vicalIssueID": uint,
? "nextUpdate": tdate, "certificateInfos": [* CertificateInfo], ? "extensions": {...}}``
and ``CertificateInfo = {"certificate": bstr, "serialNumber": biguint, "ski": bstr,
"docType": [+ tstr], ? "certificateProfile": [+ tstr], ? "issuingAuthority": tstr,
? "issuingCountry": tstr, ? "stateOrProvinceName": tstr, ? "issuer": bstr, ? "subject":
bstr, ? "notBefore": tdate, ? "notAfter": tdate, ? "extensions": {...}}``, the whole a
COSE_Sign1 whose payload is the VICAL's CBOR and whose ``x5chain`` (label 33, unprotected,
as the MSO carries it) holds the VICAL signer certificate (extKeyUsage 1.0.18013.5.1.8).

Pure: the caller gives the signer (a key store's COSE signer) and the clock's reading.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from protocols import cbor
from protocols.certs import subject_key_id
from protocols.cose import HEADER_X5CHAIN, CoseSigner, Sign1
from protocols.mdoc.errors import MdocEncodeError

VERSION = "1.0"


@dataclass(frozen=True)
class VicalEntry:
    """One IACA of a VICAL and the docTypes it is a trust point for."""

    certificate: x509.Certificate
    doc_types: tuple[str, ...]
    issuing_authority: str | None = None

    def to_map(self) -> dict:
        cert = self.certificate
        if not self.doc_types or not all(isinstance(d, str) and d for d in self.doc_types):
            raise MdocEncodeError("VICAL CertificateInfo: docType must be a non-empty list of text")
        ski = subject_key_id(cert)
        if ski is None:
            raise MdocEncodeError(f"VICAL CertificateInfo: certificate {cert.serial_number:x} has no "
                                  "subjectKeyIdentifier (Annex B requires one of an IACA)")
        out: dict = {
            "certificate": cert.public_bytes(serialization.Encoding.DER),
            "serialNumber": cbor.CBORTag(2, cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8 or 1,
                                                                        "big")),
            "ski": ski,
            "docType": list(self.doc_types),
        }
        if self.issuing_authority:
            out["issuingAuthority"] = self.issuing_authority
        countries = cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
        if countries:
            out["issuingCountry"] = str(countries[0].value)
        states = cert.subject.get_attributes_for_oid(NameOID.STATE_OR_PROVINCE_NAME)
        if states:
            out["stateOrProvinceName"] = str(states[0].value)
        out["issuer"] = cert.issuer.public_bytes()
        out["subject"] = cert.subject.public_bytes()
        out["notBefore"] = cert.not_valid_before_utc
        out["notAfter"] = cert.not_valid_after_utc
        return out


def vical_payload(provider: str, date: dt.datetime, entries: Iterable[VicalEntry], *,
                  issue_id: int | None = None, next_update: dt.datetime | None = None) -> bytes:
    """The VICAL's CBOR (the COSE_Sign1 payload): tdates in whole seconds, ``vicalIssueID``
    a uint the caller keeps unique and increasing, ``nextUpdate`` when the provider says."""
    if not provider:
        raise MdocEncodeError("VICAL: vicalProvider must not be empty")
    for name, t in (("date", date), ("nextUpdate", next_update)):
        if t is not None and t.tzinfo is None:
            raise MdocEncodeError(f"VICAL: {name} must be an aware datetime")
    if issue_id is not None and (type(issue_id) is not int or issue_id < 0):
        raise MdocEncodeError(f"VICAL: vicalIssueID must be a uint, got {issue_id!r}")
    if next_update is not None and next_update <= date:
        raise MdocEncodeError("VICAL: nextUpdate must be later than date")
    value: dict = {"version": VERSION, "vicalProvider": provider, "date": date.replace(microsecond=0)}
    if issue_id is not None:
        value["vicalIssueID"] = issue_id
    if next_update is not None:
        value["nextUpdate"] = next_update.replace(microsecond=0)
    value["certificateInfos"] = [e.to_map() for e in entries]
    return cbor.dumps(value)


def sign_vical(payload: bytes, signer: CoseSigner, chain: Sequence[bytes]) -> bytes:
    """The VICAL as published: an untagged COSE_Sign1 over ``payload`` with the VICAL
    signer's certificate chain (DER, the signer first) in ``x5chain``."""
    if not chain:
        raise MdocEncodeError("VICAL: the signer's certificate chain is empty")
    x5 = chain[0] if len(chain) == 1 else list(chain)
    return Sign1.create(signer, payload, unprotected={HEADER_X5CHAIN: x5}).encode()
