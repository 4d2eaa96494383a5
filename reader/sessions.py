"""Where the reader service keeps its sessions between the three requests of a presentation.

:class:`MemorySessionStore` keeps them in this process (the stand-alone reader, tests).
:class:`SqlSessionStore` keeps them in the reader's own table ``reader_sessions`` (Alembic
branch ``reader`` in ``reader/migrations/versions``), so that any worker of a service with
several can continue a session another one opened. The composition root hands it the
engine; this package imports no other party.

A row holds what a worker needs to continue: the ephemeral EReaderKey (PKCS#8 DER, sealed
with AES-256-GCM under the service's session key when it has one, :class:`AesGcmSealer`,
the session id as associated data; erased when the session ends) and the SessionTranscript
array bytes (the DeviceEngagement is in them: the session keys are derived again); the
state, the verdict JSON once known (one kept by a worker of the version before check codes
gets them when read: :mod:`reader.legacy_verdicts`), the creation time (expiry) and the time
a worker claimed it. The SessionData is processed
once: the worker that moves the row from ``awaiting_response`` to ``processing`` (one
conditional UPDATE) does it; any other sees the session taken or ended. The first
conclusion stands: :meth:`SessionStore.finish` and :meth:`SessionStore.interrupt` each move
the session out of ``processing`` only if it is still there.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, LargeBinary, String, delete, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbtypes import UtcDateTime
from reader.errors import ReaderSessionError
from reader.legacy_verdicts import with_codes
from reader.session import ReaderOutcome, ReaderSession

AWAITING, PROCESSING, DONE = "awaiting_response", "processing", "done"
#: What an id the service makes looks like (``secrets.token_urlsafe(16)``); anything else
#: from a request path (a NUL, which PostgreSQL text refuses; a kilobyte) is unknown.
_SID = re.compile(r"[A-Za-z0-9_-]{1,32}")
State = Literal["awaiting_response", "processing", "done"]


@dataclass
class SessionView:
    """A session as the result route sees it."""

    state: State
    verdict: bytes | None = None  # the verdict JSON, when done (None: not serializable then)
    outcome: ReaderOutcome | None = None  # only the in-memory store keeps the object
    claimed_at: dt.datetime | None = None  # when a worker took the SessionData (processing, done)
    #: The request's parameters (JSON) of a kind that keeps them (cross-device OpenID4VP):
    #: what its request_uri signs and serves while the session awaits its answer.
    request: bytes | None = None


class SessionStore(Protocol):
    #: True when a call may wait on I/O (the result route then leaves the event loop).
    blocking: bool

    def add(self, sid: str, session: ReaderSession, now: dt.datetime) -> None:
        """Keep a started session; drop the expired and, past the limit, the oldest."""

    def claim(self, sid: str, now: dt.datetime) -> ReaderSession | State | None:
        """The session, for the one caller that takes it from ``awaiting_response`` to
        ``processing``; the state it is in for everyone else; None when unknown or expired."""

    def finish(self, sid: str, outcome: ReaderOutcome, verdict: bytes | None) -> None:
        """The session is done: keep its verdict, forget its key (if it is still processing:
        one interrupted meanwhile keeps the verdict it was given)."""

    def interrupt(self, sid: str, claimed_before: dt.datetime, outcome: ReaderOutcome, verdict: bytes) -> bool:
        """End a session still ``processing`` that was claimed before ``claimed_before``
        with this (failed) verdict; True if this call ended it."""

    def view(self, sid: str, now: dt.datetime) -> SessionView | None:
        """The session's state and verdict; None when unknown or expired."""


@dataclass
class _Entry:
    session: ReaderSession
    created: dt.datetime
    state: State = AWAITING
    outcome: ReaderOutcome | None = None
    verdict: bytes | None = None
    claimed_at: dt.datetime | None = None


class MemorySessionStore:
    """Sessions in this process, bounded in number and age (oldest dropped first)."""

    blocking = False

    def __init__(self, ttl: dt.timedelta, max_sessions: int) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, now: dt.datetime) -> None:
        while self._sessions:
            sid, entry = next(iter(self._sessions.items()))
            if len(self._sessions) < self.max_sessions and now - entry.created < self.ttl:
                break
            del self._sessions[sid]

    def _get(self, sid: str, now: dt.datetime) -> _Entry | None:
        self._prune(now)
        return self._sessions.get(sid)

    def add(self, sid: str, session: ReaderSession, now: dt.datetime) -> None:
        with self._lock:
            self._prune(now)
            self._sessions[sid] = _Entry(session, now)

    def claim(self, sid: str, now: dt.datetime) -> ReaderSession | State | None:
        with self._lock:
            entry = self._get(sid, now)
            if entry is None:
                return None
            if entry.state != AWAITING:
                return entry.state
            entry.state, entry.claimed_at = PROCESSING, now
            return entry.session

    def finish(self, sid: str, outcome: ReaderOutcome, verdict: bytes | None) -> None:
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is not None and entry.state == PROCESSING:
                entry.state, entry.outcome, entry.verdict = DONE, outcome, verdict

    def interrupt(self, sid: str, claimed_before: dt.datetime, outcome: ReaderOutcome, verdict: bytes) -> bool:
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None or entry.state != PROCESSING or not entry.claimed_at <= claimed_before:
                return False
            entry.state, entry.outcome, entry.verdict = DONE, outcome, verdict
            return True

    def view(self, sid: str, now: dt.datetime) -> SessionView | None:
        with self._lock:
            entry = self._get(sid, now)
            return None if entry is None else SessionView(entry.state, entry.verdict, entry.outcome, entry.claimed_at,
                                                          getattr(entry.session, "request_claims", None))


# -- in the database -----------------------------------------------------------------------


class SessionSealer(Protocol):
    """Seals a session's EReaderKey for its row (``aad``: the session id)."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        """Raises :class:`ReaderSessionError` when ``sealed`` does not open."""


#: The first byte of a sealed key (a clear PKCS#8 key, a DER SEQUENCE, starts with 0x30).
SEALED_V1 = b"\x01"


class AesGcmSealer:
    """AES-256-GCM under a key the reader's workers share (a file, or one made per run):
    ``01 || nonce(12) || ciphertext || tag(16)``, the session id as associated data, so a
    key copied into another row does not open there. Whoever reads the database alone
    (a backup, a replica) learns no session key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"the session sealing key is {len(key)} bytes; AES-256 needs 32")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:  # never show the key
        return "AesGcmSealer()"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return SEALED_V1 + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        if not sealed.startswith(SEALED_V1) or len(sealed) < 1 + 12 + 16:
            raise ReaderSessionError("the session's key is not sealed (a worker without the session "
                                     "key wrote it): this reader does not continue it")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], aad)
        except InvalidTag:
            raise ReaderSessionError("the session's key does not open under this reader's session "
                                     "key (another key, or another session's row)") from None


class ReaderBase(DeclarativeBase):
    pass


class ReaderSessionRow(ReaderBase):
    __tablename__ = "reader_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    #: awaiting_response | processing | done
    state: Mapped[str] = mapped_column(String(24))
    #: SessionTranscript array bytes (DeviceEngagementBytes and EReaderKeyBytes inside).
    transcript: Mapped[bytes] = mapped_column(LargeBinary)
    #: The ephemeral EReaderKey, PKCS#8 DER; NULL once the session is done.
    e_reader_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The verdict JSON, byte for byte as the result route answers it.
    verdict: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: When a worker took the SessionData to verify it (NULL while awaiting it).
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: A cross-device OpenID4VP session's request parameters (JSON); NULL for other kinds.
    request: Mapped[bytes | None] = mapped_column(LargeBinary)


class RpChallengeRow(ReaderBase):
    """A challenge of the JPKI relying party's user authentication (:mod:`reader.rp_auth`):
    handed out once, answered at most once, before it expires."""

    __tablename__ = "rp_challenges"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    #: When a signature over it was presented (NULL while unanswered): one answer only.
    used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class SqlSessionStore:
    """Sessions in ``reader_sessions``: shared by every process on the same database.
    ``resume`` rebuilds a session from its row (:meth:`ReaderSession.resume` with the
    service's requests and verifier): ``resume(key, transcript, request)``, ``request`` the
    request's parameters of a kind that keeps them (None for the others)."""

    blocking = True

    def __init__(self, engine: Engine, ttl: dt.timedelta, max_sessions: int,
                 resume: Callable[[ec.EllipticCurvePrivateKey, bytes, bytes | None], ReaderSession] | None,
                 sealer: SessionSealer | None = None) -> None:
        self.engine = engine
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.resume = resume
        #: None: the EReaderKey is kept in clear (the documented trade-off without a key).
        self.sealer = sealer

    def add(self, sid: str, session: ReaderSession, now: dt.datetime) -> None:
        key = session.e_reader_private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        if self.sealer is not None:
            key = self.sealer.seal(key, sid.encode())
        t = ReaderSessionRow.__table__
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.created_at <= now - self.ttl))
            over = conn.execute(select(func.count()).select_from(t)).scalar_one() - self.max_sessions + 1
            if over > 0:
                oldest = select(t.c.id).order_by(t.c.created_at, t.c.id).limit(over).scalar_subquery()
                conn.execute(delete(t).where(t.c.id.in_(oldest)))
            conn.execute(t.insert().values(id=sid, created_at=now, state=AWAITING,
                                           transcript=session.transcript.raw, e_reader_key=key,
                                           request=getattr(session, "request_claims", None)))

    def claim(self, sid: str, now: dt.datetime) -> ReaderSession | State | None:
        if not _SID.fullmatch(sid):
            return None
        t = ReaderSessionRow.__table__
        live = (t.c.id == sid) & (t.c.created_at > now - self.ttl)
        with self.engine.begin() as conn:
            taken = conn.execute(update(t).where(live & (t.c.state == AWAITING))
                                 .values(state=PROCESSING, claimed_at=now)).rowcount
            row = conn.execute(select(t.c.state, t.c.transcript, t.c.e_reader_key, t.c.request).where(live)).first()
        if row is None:
            return None
        if taken != 1:
            return row.state if row.state != AWAITING else PROCESSING
        stored = row.e_reader_key
        if stored is None:  # erased only when done: a row damaged outside this code
            raise ReaderSessionError("the session's key is missing from its row")
        if self.sealer is not None:
            stored = self.sealer.unseal(stored, sid.encode())
        elif stored.startswith(SEALED_V1):
            raise ReaderSessionError("the session's key is sealed and this reader has no session key")
        try:
            key = serialization.load_der_private_key(stored, None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ReaderSessionError(f"the session's key in its row is not a PKCS#8 key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ReaderSessionError(f"the session's key in its row is a {type(key).__name__}, not an EC key")
        return self.resume(key, row.transcript, row.request)

    def finish(self, sid: str, outcome: ReaderOutcome, verdict: bytes | None) -> None:
        t = ReaderSessionRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(t).where((t.c.id == sid) & (t.c.state == PROCESSING))
                         .values(state=DONE, verdict=verdict, e_reader_key=None))

    def interrupt(self, sid: str, claimed_before: dt.datetime, outcome: ReaderOutcome, verdict: bytes) -> bool:
        t = ReaderSessionRow.__table__
        with self.engine.begin() as conn:
            return conn.execute(
                update(t).where((t.c.id == sid) & (t.c.state == PROCESSING) & (t.c.claimed_at <= claimed_before))
                .values(state=DONE, verdict=verdict, e_reader_key=None)).rowcount == 1

    def view(self, sid: str, now: dt.datetime) -> SessionView | None:
        if not _SID.fullmatch(sid):
            return None
        t = ReaderSessionRow.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.state, t.c.verdict, t.c.claimed_at, t.c.request)
                               .where((t.c.id == sid) & (t.c.created_at > now - self.ttl))).first()
        if row is None:
            return None
        # a verdict kept by a worker of the version before check codes gets them now (rolling upgrade)
        verdict = None if row.verdict is None else with_codes(row.verdict)
        return SessionView(row.state, verdict, claimed_at=row.claimed_at, request=row.request)
