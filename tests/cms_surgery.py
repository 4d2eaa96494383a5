"""Changes to a CMS SignedData made by our builders (no tests here): what a careless or
hostile signer could send, for the verifiers' refusals (test_jpki_cms.py, test_tsp.py)."""

from __future__ import annotations

from collections.abc import Callable

from asn1crypto import cms as asn1cms


def altered(der: bytes, change: Callable[[asn1cms.SignedData, asn1cms.SignerInfo], None], *,
            sign: Callable[[bytes], bytes] | None = None) -> bytes:
    """``der`` (a ContentInfo of SignedData with one SignerInfo) after ``change`` of its
    SignedData and SignerInfo; with ``sign``, the SignerInfo's signature made again over its
    signed attributes as the change left them (their bytes as they will travel, tagged as a
    SET OF), so that only the change is wrong."""
    info = asn1cms.ContentInfo.load(der)
    sd = info["content"]
    si = sd["signer_infos"][0]
    change(sd, si)
    if sign is not None:
        si["signature"] = sign(b"\x31" + si["signed_attrs"].dump()[1:])
    sd["signer_infos"] = asn1cms.SignerInfos([si])
    return asn1cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump(force=False)


def unsorted_attributes(si: asn1cms.SignerInfo) -> None:
    """The signed attributes in the reverse of DER's order (X.690 11.6), each as it was."""
    encodings = sorted(a.dump() for a in si["signed_attrs"])[::-1]
    body = b"".join(encodings)
    si["signed_attrs"] = asn1cms.CMSAttributes.load(b"\x31" + _length(len(body)) + body)


def with_attribute(si: asn1cms.SignerInfo, attribute: asn1cms.CMSAttribute, *, signed: bool = True) -> None:
    """``attribute`` added to the signed attributes (kept in DER order) or the unsigned ones."""
    field = "signed_attrs" if signed else "unsigned_attrs"
    attrs = [*(si[field] or []), attribute]
    if signed:
        attrs.sort(key=lambda a: a.dump())
    si[field] = asn1cms.CMSAttributes(attrs)


def replaced_attribute(si: asn1cms.SignerInfo, attribute: asn1cms.CMSAttribute) -> None:
    """The signed attribute of ``attribute``'s type replaced by it (DER order kept)."""
    name = attribute["type"].native
    attrs = [a for a in si["signed_attrs"] if a["type"].native != name] + [attribute]
    si["signed_attrs"] = asn1cms.CMSAttributes(sorted(attrs, key=lambda a: a.dump()))


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets
