"""Tables of the JPKI CA beside the shared registry (Alembic revision ``i0002_jpki``).

* ``jpki_challenges``: the nonce handed to the SE for each (job, slot); the proof of
  possession signs it, so an API process needs no memory between the two calls.
* ``jpki_partitions``: the municipality behind each CRL partition code (the CRL's
  issuingDistributionPoint names it).
* ``jpki_crl_cache``: the last CRL published per (purpose, partition), rebuilt when a
  revocation marked it stale or its nextUpdate draws near; the CRL number lives in
  ``crl_state`` (RFC 5280 5.2.3).
* ``jpki_consents``: holders' consents to the latest basic four data service
  (:mod:`issuer.jpki.consents`; revision ``i0006consent``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dbtypes import UtcDateTime
from issuer.db import IssuerBase, new_id, utcnow


class JpkiChallenge(IssuerBase):
    __tablename__ = "jpki_challenges"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_ref: Mapped[str] = mapped_column(String(128))
    phone_id: Mapped[str] = mapped_column(String(64))
    slot: Mapped[str] = mapped_column(String(8))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("job_ref", "slot", name="uq_jpki_challenge_job_slot"),)


class JpkiPartition(IssuerBase):
    __tablename__ = "jpki_partitions"
    code: Mapped[str] = mapped_column(String(128), primary_key=True)
    prefecture: Mapped[str] = mapped_column(String(64))
    municipality: Mapped[str] = mapped_column(String(128))


class JpkiCrlCache(IssuerBase):
    __tablename__ = "jpki_crl_cache"
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    partition: Mapped[str] = mapped_column(String(128), primary_key=True)
    crl_number: Mapped[int] = mapped_column()
    body: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    next_update: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    stale: Mapped[bool] = mapped_column(default=False)


class JpkiConsent(IssuerBase):
    """A holder's registered consent to the latest basic four data service."""

    __tablename__ = "jpki_consents"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    holder_id: Mapped[str] = mapped_column(ForeignKey("holders.id"), index=True)
    relying_party: Mapped[str] = mapped_column(String(128), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    #: The signing certificate that signed it (hex serial, and the credential).
    signer_serial: Mapped[str] = mapped_column(String(64))
    signer_credential: Mapped[str] = mapped_column(ForeignKey("credentials.id"))
    #: SHA-256 of the document: one registration per document.
    document_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    document: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    granted_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    withdrawn_by: Mapped[str | None] = mapped_column(String(160))
