"""The TSM's view of the issuer (implemented by the composition root, mcred/).

Every method is idempotent by ``job_ref``: asked again with the same arguments after a
lost answer or a crash, the issuer returns the same challenge, certificate or IssuerSigned
and issues nothing new (specs/tsm.md, "IssuerPort").
"""

from __future__ import annotations

from typing import Protocol


class IssuerPort(Protocol):
    def jpki_challenge(self, job_ref: str, phone_id: str, slot: str) -> bytes:
        """A fresh challenge (16-64 bytes) the new key of ``slot`` ("sign" | "auth") must
        sign (with its SPKI appended) as proof of possession."""
        ...

    def issue_jpki_certificate(self, job_ref: str, phone_id: str, slot: str,
                               spki_der: bytes, proof: bytes) -> tuple[bytes, bytes]:
        """Check the proof over ``challenge || spki_der``, issue; return (end-entity
        certificate DER, CA certificate DER)."""
        ...

    def mdoc_challenge(self, job_ref: str, phone_id: str, slot_index: int) -> bytes:
        """A fresh challenge for the device key of mdoc slot ``slot_index``."""
        ...

    def issue_mdoc(self, job_ref: str, phone_id: str, slot_index: int,
                   device_public_key_der: bytes, proof: bytes) -> bytes:
        """Check the proof, sign an MSO for the device key; return IssuerSigned CBOR."""
        ...
