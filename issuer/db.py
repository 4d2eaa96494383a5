"""The issuer's registry: holders, phones, credentials, keys, status lists, CRL state.

Tables belong to the issuer alone (the TSM has its own, ``tsm.db``); other parties learn
about credentials only through the issuer's published bytes (certificates, CRLs, OCSP,
status lists). Alembic branch ``issuer`` in ``issuer/migrations/versions``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbtypes import UtcDateTime


def _bytewise(length: int) -> String:
    """A string column that compares code point by code point on every database, as a
    prefix's range needs (``issuer.audit``): SQLite's BINARY collation (the default),
    PostgreSQL's "C" (a database's default collation may order by language rules, under
    which the strings that start with ``p.`` are no range of an index)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def unindexed(column):  # noqa: ANN001, ANN201 - a column and an expression of it
    """``column`` as no index can look it up (``column || ''``): for a condition that only
    filters the rows another index finds (a subject's events), where SQLite, which keeps no
    statistics, would take ``ix_issuer_audit_action`` instead and walk every event of a
    common action (``credential.revoke``, ``jpki.issue``)."""
    return column.concat("")


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class IssuerBase(DeclarativeBase):
    pass


class Holder(IssuerBase):
    """A resident whose card the phone credentials derive from (the card's data, no My Number)."""

    __tablename__ = "holders"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    #: The parsed holder record (names, kana, birth date, sex, address, ...), JSON.
    data: Mapped[dict] = mapped_column(JSON)
    #: Card serial the credentials derive from (16 digits, simulated).
    card_number: Mapped[str] = mapped_column(String(32), unique=True)
    card_expiry: Mapped[dt.date] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    #: Who the record says the person is, for a holder registered from a holder file (which
    #: names no card): SHA-256 hex of the identity fields (``issuer.holders.identity_of``;
    #: their text normalised, ``identity_text``: revisions ``i0018idnorm``, ``i0020addrnorm``,
    #: ``i0021blocknum``), unique, so that the same person registered again is the same
    #: holder, also from two registrations at once; None for one registered by card number,
    #: and once erased (revision ``i0016holderid``).
    identity: Mapped[str | None] = mapped_column(String(64))

    #: Listings page in registration order (mcred holder list, GET /holders).
    __table_args__ = (Index("ix_holder_created", "created_at", "id"),
                      Index("ux_holder_identity", "identity", unique=True))


class Phone(IssuerBase):
    """The issuer's view of a phone holding a holder's credentials (one active per holder)."""

    __tablename__ = "phones"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder_id: Mapped[str | None] = mapped_column(ForeignKey("holders.id"), index=True)
    #: active | retired (handed over) | lost | revoked
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Credential(IssuerBase):
    """One issued credential: a JPKI certificate (slot sign / auth) or one mdoc MSO."""

    __tablename__ = "credentials"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    holder_id: Mapped[str] = mapped_column(ForeignKey("holders.id"), index=True)
    phone_id: Mapped[str] = mapped_column(ForeignKey("phones.id"), index=True)
    #: jpki-sign | jpki-auth | mdoc
    kind: Mapped[str] = mapped_column(String(16))
    #: valid | hold | revoked
    status: Mapped[str] = mapped_column(String(16), default="valid")
    reason: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: Of a credential revoked for good while on hold: when it went on hold, since when it is
    #: known to have been out of the holder's control (the JPKI CRL entry's and OCSP answer's
    #: invalidityDate, RFC 5280 5.3.2), so that a signature made during the hold is not taken
    #: as made before the revocation; None otherwise, and a released hold leaves none
    #: (revision ``i0017invalid``).
    invalid_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    issued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    #: Certificate serial (hex, unique per issuing key) for JPKI; None for mdocs.
    serial: Mapped[str | None] = mapped_column(String(64))
    #: Key label of the issuing key (CA key for certificates, DS key for mdocs).
    issuer_key: Mapped[str] = mapped_column(String(64))
    #: CRL partition (municipality) of a certificate.
    partition: Mapped[str | None] = mapped_column(String(128))
    #: Status-list reference of an mdoc.
    status_list_id: Mapped[str | None] = mapped_column(ForeignKey("status_lists.id"))
    status_idx: Mapped[int | None] = mapped_column(Integer)
    #: The credential as issued: certificate DER, or IssuerSigned CBOR.
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: The job (provisioning, handover) that issued it, for idempotent retries.
    job_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    #: Extra facts (device-key slot, SHA-256 of the public key, ...).
    meta: Mapped[dict] = mapped_column(JSON, default=dict)

    __table_args__ = (
        UniqueConstraint("issuer_key", "serial", name="uq_credential_serial"),
        UniqueConstraint("status_list_id", "status_idx", name="uq_credential_status_idx"),
        Index("ix_credential_phone_kind", "phone_id", "kind", "status"),
        #: The linkage service and the consent service look certificates up by serial alone.
        Index("ix_credential_serial", "serial"),
        #: Listings page in issuance order (GET /credentials, mcred credential list).
        Index("ix_credential_issued", "issued_at", "id"),
        #: A CRL's entries: its partition's revoked and held certificates of one issuing key.
        Index("ix_credential_crl", "issuer_key", "partition", "status"),
        #: The valid certificates of a kind expiring by a day (the expiry notices: mcred
        #: credential list --expiring-within, GET /credentials?expiring_within=): one range
        #: per kind, where every valid credential was read, mdocs (30-day MSOs) included.
        #: Of valid credentials only (partial: the query names ``status = 'valid'`` as a
        #: literal, :mod:`issuer.expiry_notices`), so that no other look-up by kind and status
        #: (a CRL's revoked certificates, a listing by kind) is taken off it.
        Index("ix_credential_expiry", "kind", "not_after", sqlite_where=text("status = 'valid'"),
              postgresql_where=text("status = 'valid'")),
    )


class IssuerKey(IssuerBase):
    """A key of the issuer (in the keystore, by label) and its current certificate."""

    __tablename__ = "issuer_keys"
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: jpki-sign-root | jpki-auth-root | jpki-ocsp-sign | jpki-ocsp-auth | iaca | ds | status-signer |
    #: vical-signer | vical-ca | tsa-root | tsa-unit
    purpose: Mapped[str] = mapped_column(String(32), index=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The newest key of a purpose is the active one; older generations stay for verification.
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    #: Set when the certificate was revoked (mdoc signers: listed on the IACA CRL).
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: RFC 5280 5.3.1 CRLReason name of that revocation.
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    #: Set when the private key was destroyed in the key store (``MdocPki.destroy_key``,
    #: ``JpkiCa.destroy_key``, ``TimeStampAuthority.destroy_key``; revision
    #: ``i0022keydestroy``); the certificate stays here.
    key_destroyed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: Of a revoked key (a TSA unit's): since when it is known or suspected to have been
    #: compromised or otherwise invalid, the CRL entry's invalidityDate (RFC 5280 5.3.2), when
    #: the operator gave one (``mcred tsa revoke --invalid-since``; revision ``i0023keyinvalid``).
    invalid_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class StatusList(IssuerBase):
    """One Token Status List (one per issuance period), published at ``uri``."""

    __tablename__ = "status_lists"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    uri: Mapped[str] = mapped_column(String(512), unique=True)
    bits: Mapped[int] = mapped_column(Integer, default=1)
    size: Mapped[int] = mapped_column(Integer)
    #: Number of indices handed out so far (allocation is random, never reused).
    allocated: Mapped[int] = mapped_column(Integer, default=0)
    period: Mapped[str] = mapped_column(String(32))
    #: Bumped on every status change: the published token is rebuilt when it moved.
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    #: The IACA generation whose document signers signed this list's mdocs (``mdoc-iaca-2``):
    #: its lists are signed by a status-list signer of that IACA, the one a reader takes a
    #: list from (revision ``i0015iacagen``; None only for a list made outside the issuer).
    iaca_label: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CrlState(IssuerBase):
    """The CRL number of each (purpose, partition), monotonic per RFC 5280 5.2.3."""

    __tablename__ = "crl_state"
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    partition: Mapped[str] = mapped_column(String(128), primary_key=True)
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class TsaRootCrl(IssuerBase):
    """The CRL each time-stamping root generation signed last (``issuer.tsa``; revision
    ``i0024tsacrl``): its cRLNumber only grows across processes, and once an older root's key
    is destroyed (its units all expired) it is its final CRL (nextUpdate 9999-12-31T23:59:59Z,
    :data:`protocols.crl.NO_NEXT_UPDATE`), which ``/tsa/root-gN.crl`` serves for good; a key
    destroyed before final CRLs were signed left an ordinary one, served until an hour before
    its nextUpdate (then ``410``: nothing can sign another)."""

    __tablename__ = "tsa_root_crls"
    root_label: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: RFC 5280 5.2.3: only grows (never below the Unix time of the build)
    crl_number: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    next_update: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class Handover(IssuerBase):
    """A persisted handover / revocation workflow (see specs/handover.md)."""

    __tablename__ = "handovers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    holder_id: Mapped[str] = mapped_column(ForeignKey("holders.id"), index=True)
    old_phone_id: Mapped[str | None] = mapped_column(String(64))
    new_phone_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(32), default="created")
    state: Mapped[str] = mapped_column(String(16), default="running")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    #: The run that holds the workflow (who: actor, host, process, run), since when and
    #: until when its lease lasts unless renewed; all None while no run holds it
    #: (:class:`issuer.handover.WorkflowRunner`, specs/handover.md "One run at a time").
    runner: Mapped[str | None] = mapped_column(String(200))
    run_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class ApiToken(IssuerBase):
    """A bearer token of the HTTP API: only a hash of its secret is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(128))
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    #: Refused from this instant on, as a revoked token is (None: until revoked).
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class AuditEvent(IssuerBase):
    """Who did what to which credential or phone (never secrets)."""

    __tablename__ = "issuer_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    #: Compared code point by code point (:func:`_bytewise`), as the action: an actor and
    #: those under it (``cli`` and ``cli:NAME``) are one range of ``ix_issuer_audit_actor``.
    actor: Mapped[str] = mapped_column(_bytewise(128))
    #: Compared code point by code point (:func:`_bytewise`): an action's family is one
    #: range of ``ix_issuer_audit_action``.
    action: Mapped[str] = mapped_column(_bytewise(64))
    subject: Mapped[str] = mapped_column(String(128), index=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)

    __table_args__ = (
        #: An action's events newest first, and the actions of a family (``mcred audit
        #: --action credential``: issuer.audit.events).
        Index("ix_issuer_audit_action", "action", "id"),
        #: An actor's events newest first, and the actors under one (``--actor token:ID``).
        Index("ix_issuer_audit_actor", "actor", "id"),
    )
