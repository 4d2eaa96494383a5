"""The TSM's own tables (Alembic branch ``tsm`` in ``tsm/migrations/versions``).

``tsm_se``          one row per secure element: identity (KDD, CPLC), current keyset, state
``tsm_se_counters`` the highest SCP03 sequence counter used per (SE, keyset)
``tsm_se_locks``    the per-SE lock row (row lock on PostgreSQL, lease with expiry elsewhere)
``tsm_jobs``        card content management jobs and their progress
``tsm_audit``       who did what to which SE: command headers, lengths, status words only

No table holds a key, PIN, password or PUK in clear: job secrets are sealed (AES-GCM under
a key derived from the master key) and erased when the job ends (specs/tsm.md).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TsmBase(DeclarativeBase):
    pass


class SecureElementRow(TsmBase):
    __tablename__ = "tsm_se"
    se_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Key diversification data (hex, 10 bytes) seen at first contact; None until then.
    kdd: Mapped[str | None] = mapped_column(String(20))
    #: CPLC data (GET DATA 9F7F, hex) read at first contact.
    cplc: Mapped[str | None] = mapped_column(Text)
    #: KVN of the keyset the TSM opens sessions with (30 factory until rotated, then 31).
    kvn: Mapped[int] = mapped_column(Integer, default=0x30)
    #: key_id of the master key that diversified the SE's keyset.
    master_key_id: Mapped[str | None] = mapped_column(String(32))
    #: new | active | suspect (a counter regression or keyset rollback was seen)
    state: Mapped[str] = mapped_column(String(16), default="new")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SequenceCounterRow(TsmBase):
    __tablename__ = "tsm_se_counters"
    se_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kvn: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The sequence counter of the last session that authenticated with this keyset.
    counter: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SeLockRow(TsmBase):
    __tablename__ = "tsm_se_locks"
    se_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    #: Incremented on every acquisition (a fencing token).
    token: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Lease end in milliseconds since the epoch (0: free).
    expires_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class JobRow(TsmBase):
    __tablename__ = "tsm_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    se_id: Mapped[str] = mapped_column(String(64), index=True)
    #: provision | provision-mdoc | refresh-mdoc | delete-credentials | rotate-keys
    kind: Mapped[str] = mapped_column(String(32))
    #: pending | running | done | failed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    #: The ordered step ids of the job's script.
    steps: Mapped[list] = mapped_column(JSON)
    #: Index into ``steps`` of the next step to run (len(steps) when done).
    next_step: Mapped[int] = mapped_column(Integer, default=0)
    #: Non-secret input (phone id, algorithm, batch size, ...).
    input: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Secrets (PINs, password, PUK) sealed under the master key; erased when the job ends.
    sealed_secrets: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Non-secret results of finished steps (fingerprints, counts), by step id.
    results: Mapped[dict] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditRow(TsmBase):
    __tablename__ = "tsm_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    se_id: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    step: Mapped[str | None] = mapped_column(String(48))
    #: apdu | session-open | session-failed | keys-rotated | counter-regression |
    #: keyset-rollback | identity-mismatch | job-created | step-done | job-done | job-failed
    event: Mapped[str] = mapped_column(String(32))
    #: What the command was for, in words (e.g. "INSTALL [for install] jpki").
    what: Mapped[str | None] = mapped_column(String(96))
    cla: Mapped[int | None] = mapped_column(Integer)
    ins: Mapped[int | None] = mapped_column(Integer)
    p1: Mapped[int | None] = mapped_column(Integer)
    p2: Mapped[int | None] = mapped_column(Integer)
    #: Length of the plain command data field (never the data itself).
    lc: Mapped[int | None] = mapped_column(Integer)
    sw: Mapped[int | None] = mapped_column(Integer)
    #: Non-secret facts (AIDs, KVNs, counters, error messages).
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


#: Where the TSM's statements run: an Engine (each call borrows a pooled connection) or
#: one Connection a worker holds for a whole run (``Tsm.run``), which saves a pool
#: checkout and reset per statement.
Bind = Engine | Connection


@contextmanager
def transaction(bind: Bind) -> Iterator[Connection]:
    """One short transaction on ``bind``, committed on success and rolled back on error.

    On a Connection already inside a transaction (a caller grouping several writes in one
    commit, such as a job step's progress with its audit records) it joins that one and
    leaves the commit to its owner; every statement the TSM runs on a held connection goes
    through here, so no transaction is left open between calls."""
    if isinstance(bind, Connection):
        if bind.in_transaction():
            yield bind
            return
        trans = bind.begin()  # explicitly, so that nested calls see it before any statement
        try:
            yield bind
        except BaseException:
            trans.rollback()
            raise
        trans.commit()
        return
    with bind.begin() as conn:
        yield conn
