"""The issuer's mdoc-only tables (Alembic revision ``i0002mdoc`` of branch ``issuer``).

* ``mdoc_issuances``: one row per (job reference, device-key slot), pointing at the
  credential issued for it. Its primary key makes issuance idempotent even when two
  retries of the same job race: the loser's insert fails and it returns the winner's MSO.
* ``mdoc_challenges``: the fresh challenge each (job, slot)'s device key must sign with its
  SPKI as proof of possession; stored so a retried job gets the same one back.
* ``mdoc_iaca_crls`` (revision ``i0004dsrev``): the IACA's CRL last published per IACA
  generation, with its CRL number, rebuilt when a signer revocation marks it stale or its
  nextUpdate draws near; the VICAL CA's CRL (revoked VICAL signers) is kept here too, under
  the CA's label (``mdoc-vical-ca-N``, a primary key no IACA label can take).
* ``identifier_list_tokens`` (revision ``i0005idlist``): the same for the Identifier List
  published beside each status list.
* ``mdoc_vicals`` (revision ``i0019vical``): the VICAL last signed, per provider, so that every
  API process serves the same one and its vicalIssueID only grows, across processes and
  restarts (a reader refuses a VICAL whose issue ID goes back from the one it holds).
* ``status_list_tokens``: the Status List Token last published for each list, kept in the
  database so every stateless API process serves the same bytes (the same ETag) until the
  list's ``version`` moves or the token nears its ``exp``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from dbtypes import UtcDateTime
from issuer.db import IssuerBase, utcnow


class MdocIssuance(IssuerBase):
    __tablename__ = "mdoc_issuances"
    job_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone_id: Mapped[str] = mapped_column(String(64), index=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id"), unique=True)
    #: SHA-256 (hex) of the device public key's SubjectPublicKeyInfo DER.
    device_key_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class _PublishedToken:
    """The columns of a token last published for a status list (one row per list)."""

    list_id: Mapped[str] = mapped_column(ForeignKey("status_lists.id"), primary_key=True)
    #: The list's ``version`` this token was built from.
    version: Mapped[int] = mapped_column(Integer)
    token: Mapped[bytes] = mapped_column(LargeBinary)
    etag: Mapped[str] = mapped_column(String(80))
    issued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class StatusListToken(_PublishedToken, IssuerBase):
    __tablename__ = "status_list_tokens"


class IdentifierListToken(_PublishedToken, IssuerBase):
    """The Identifier List Token last published beside each status list (revision
    ``i0005idlist``): same rules as ``status_list_tokens``."""

    __tablename__ = "identifier_list_tokens"


class MdocChallenge(IssuerBase):
    __tablename__ = "mdoc_challenges"
    job_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone_id: Mapped[str] = mapped_column(String(64))
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class IacaCrl(IssuerBase):
    """The CRL each IACA and VICAL CA generation signed last (keyed by its label), rebuilt when
    stale or near its nextUpdate; a CA's final CRL, signed before its key is destroyed, has
    nextUpdate 9999-12-31T23:59:59Z (:data:`protocols.crl.NO_NEXT_UPDATE`) and is served for good."""

    __tablename__ = "mdoc_iaca_crls"
    iaca_label: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: RFC 5280 5.2.3: only grows (never below the Unix time of the build, as before).
    crl_number: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    next_update: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    stale: Mapped[bool] = mapped_column(default=False)


class PublishedVical(IssuerBase):
    """The VICAL last signed for a provider (:meth:`issuer.mdoc.service.MdocService.vical`)."""

    __tablename__ = "mdoc_vicals"
    provider: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: vicalIssueID: only grows (never below the Unix time of the signing)
    issue_id: Mapped[int] = mapped_column(BigInteger)
    #: SHA-256 (hex) of what it says: its IACAs, docType and signer; another is signed when it changes
    content: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    signed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
