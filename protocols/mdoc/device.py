"""The mdoc's side of a presentation: DeviceSigned and Document (ISO/IEC 18013-5:2021 §9.1.3).

The device key never appears here: the secure element signs through a
:class:`~protocols.cose.CoseSigner`, or the caller supplies the EMacKey it derived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from protocols.cose import CoseSigner, Mac0, Sign1
from protocols.mdoc import _parse as p
from protocols.mdoc.errors import MdocEncodeError
from protocols.mdoc.issuer_signed import IssuerSigned
from protocols.mdoc.response import DeviceAuth, DeviceSigned, Document
from protocols.mdoc.transcript import SessionTranscript, device_authentication_bytes


def build_device_signed(
    doc_type: str,
    session_transcript: SessionTranscript | bytes,
    *,
    signer: CoseSigner | None = None,
    emac_key: bytes | None = None,
    device_name_spaces: Mapping[str, Mapping[str, Any]] | None = None,
) -> DeviceSigned:
    """deviceSignature (ECDSA by ``signer``) or deviceMac (HMAC with ``emac_key``) over
    DeviceAuthenticationBytes, detached payload (§9.1.3.4-6)."""
    if (signer is None) == (emac_key is None):
        raise MdocEncodeError("build_device_signed: give exactly one of signer and emac_key")
    ns_bytes = p.encode({ns: dict(v) for ns, v in (device_name_spaces or {}).items()})
    detached = device_authentication_bytes(session_transcript, doc_type, ns_bytes)
    if signer is not None:
        auth = DeviceAuth(device_signature=Sign1.create(signer, None, detached=detached))
    else:
        auth = DeviceAuth(device_mac=Mac0.create(emac_key, None, detached=detached))
    return DeviceSigned(ns_bytes, auth)


def build_document(
    issuer_signed: IssuerSigned,
    session_transcript: SessionTranscript | bytes,
    *,
    disclose: Mapping[str, Iterable[str]] | None = None,
    signer: CoseSigner | None = None,
    emac_key: bytes | None = None,
    doc_type: str | None = None,
    errors: Mapping[str, Mapping[str, int]] | None = None,
) -> Document:
    """A Document with only the items in ``disclose`` (all when None), device-authenticated."""
    doc_type = doc_type or issuer_signed.mso().doc_type
    chosen = issuer_signed if disclose is None else issuer_signed.select(disclose)
    signed = build_device_signed(doc_type, session_transcript, signer=signer, emac_key=emac_key)
    return Document(doc_type, chosen, signed, errors)
