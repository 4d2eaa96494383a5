"""The TSM's own tables (Alembic branch ``tsm`` in ``tsm/migrations/versions``).

``tsm_se``          one row per secure element: identity (KDD, CPLC), current keyset, state
``tsm_se_counters`` the highest SCP03 sequence counter used per (SE, keyset)
``tsm_se_locks``    the per-SE lock row (row lock on PostgreSQL, lease with expiry elsewhere)
``tsm_jobs``        card content management jobs and their progress
``tsm_audit``       who did what to which SE: command headers, lengths, status words only
``tsm_seram_sessions`` / ``tsm_seram_messages``  GP SERAM across the processes of one
                    service: which process holds a management session, and the phone's
                    requests relayed to it and its answers (``tsm.seram_relay``; a message
                    lives until its answer is taken)

No table holds a key, PIN, password or PUK in clear: job secrets are sealed (AES-GCM under
a key derived from the master key) and erased when the job ends (specs/tsm.md).
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from collections import namedtuple
from collections.abc import Callable
from operator import itemgetter

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbtypes import UtcDateTime


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
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class SequenceCounterRow(TsmBase):
    __tablename__ = "tsm_se_counters"
    se_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kvn: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The sequence counter of the last session that authenticated with this keyset.
    counter: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


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
    #: pending | running | interrupted | done | abandoned
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
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)

    #: Listings page in creation order (mcred tsm jobs, GET /tsm-jobs).
    __table_args__ = (Index("ix_tsm_jobs_created", "created_at", "id"),)


class AuditRow(TsmBase):
    __tablename__ = "tsm_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    se_id: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    step: Mapped[str | None] = mapped_column(String(48))
    #: apdu | session-open | session-failed | keys-rotated | counter-regression |
    #: keyset-rollback | keyset-unknown | identity-mismatch | job-created | step-done | job-done | job-failed |
    #: job-abandoned | quarantine-cleared
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

    #: The last records of one event (``mcred tsm audit --event``), read newest first off
    #: the index rather than by walking back through every command the TSM ever sent.
    __table_args__ = (Index("ix_tsm_audit_event", "event", "id"),)


class SeramSessionRow(TsmBase):
    """A GP SERAM management session, and the process whose hub holds it."""

    __tablename__ = "tsm_seram_sessions"
    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: the holding process's relay id (``tsm.seram_relay.SeramRelay.owner``)
    owner: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class SeramMessageRow(TsmBase):
    """A phone's request that reached another process than the one holding its session,
    waiting there for the holder's answer. The body and the answer are GP SERAM JSON: the
    C-APDUs and R-APDUs in it are SCP03 or SCP11 wrapped, as on the wire."""

    __tablename__ = "tsm_seram_messages"
    #: never reused (SQLite's AUTOINCREMENT): an id names one message in the pump's memory
    #: and in a notification, also after its row is gone
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(32), index=True)
    #: handshake | remoteManagement
    route: Mapped[str] = mapped_column(String(16))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: the order number the phone's cookie named (None: no cookie)
    seen: Mapped[int | None] = mapped_column(Integer)
    #: the answer: HTTP status, body, and the order's number for the cookie (None: unanswered)
    status: Mapped[int | None] = mapped_column(Integer)
    answer: Mapped[bytes | None] = mapped_column(LargeBinary)
    number: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


#: Where the TSM's statements run: an Engine (each call borrows a pooled connection) or
#: one Connection a worker holds for a whole run (``Tsm.run``), which saves a pool
#: checkout and reset per statement.
Bind = Engine | Connection


class transaction:  # lower case: called as the function it was, ``with transaction(bind) as conn``
    """One short transaction on ``bind``, committed on success and rolled back on error.

    On a Connection already inside a transaction (a caller grouping several writes in one
    commit, such as a job step's progress with its audit records) it joins that one and
    leaves the commit to its owner; every statement the TSM runs on a held connection goes
    through here, so no transaction is left open between calls.

    A class rather than a ``@contextmanager`` generator: a run enters it some 30 times, and
    the generator's frame, ``next`` and ``StopIteration`` cost more than the work here."""

    __slots__ = ("_bind", "_trans", "_outer")

    def __init__(self, bind: Bind) -> None:
        self._bind = bind
        self._trans = None  # a transaction begun here on the caller's Connection
        self._outer = None  # the Engine's own ``begin()`` context

    def __enter__(self) -> Connection:
        bind = self._bind
        if isinstance(bind, Connection):
            if not bind.in_transaction():
                # explicitly, so that nested calls see it before any statement
                self._trans = bind.begin()
            return bind
        self._outer = bind.begin()
        return self._outer.__enter__()

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        trans = self._trans
        if trans is not None:
            if exc_type is None:
                trans.commit()
            else:
                trans.rollback()
            return None
        if self._outer is not None:
            return self._outer.__exit__(exc_type, exc, tb)
        return None


def _empty_map_once(process: Callable) -> Callable:
    """A JSON bind processor that serializes an empty map once, up front, with the
    processor itself (so the stored text is the same): most audit records have no detail."""
    empty = process({})

    def processed(value):
        if type(value) is dict and not value:
            return empty
        return process(value)

    return processed


def _iso_datetime_once(process: Callable) -> Callable:
    """SQLite's bind processor of a timestamp column (``UtcDateTime``, or a plain
    ``DateTime``) with a fast path for a ``datetime`` in UTC (every timestamp the TSM writes:
    ``utcnow()`` in audit records, ``updated_at``): ``isoformat`` cut after the microseconds is
    the default storage format "YYYY-MM-DD HH:MM:SS.ffffff" that the processor builds with a
    ``%`` and a seven-key dict, at two thirds of its cost, after UtcDateTime's conversion to
    UTC, which leaves such a time as it is. Used only where the processor gives the same text
    for sample values (a custom storage format keeps the processor as it is); anything else
    (a naive time, another offset, not a ``datetime``) goes to the processor."""
    utc = dt.UTC
    samples = (dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=utc), dt.datetime(999, 12, 31, 23, 59, 59, tzinfo=utc),
               dt.datetime(2026, 7, 8, 9, 10, 11, 999999, tzinfo=utc))
    if any(process(v) != v.isoformat(" ", "microseconds")[:26] for v in samples):
        return process
    datetime = dt.datetime

    def processed(value):
        if type(value) is datetime and value.tzinfo is utc:
            return value.isoformat(" ", "microseconds")[:26]
        return process(value)

    return processed


def _args_of(binds: tuple) -> Callable[[dict], tuple]:
    """The function giving a statement's positional parameters from a parameter map;
    ``binds``: per position (key, bind processor or None, None) for a caller's value, or
    (None, None, processed constant). Where every position is a caller's value, the values
    come out in one ``itemgetter`` call and only the positions with a processor are
    processed (an audit row has 14 values and 2 processors)."""
    # (itemgetter of one name gives the value, not a tuple: one position takes the loop too)
    if len(binds) < 2 or any(n is None for n, _, _ in binds):
        def args_of(params: dict) -> tuple:
            return tuple(c if n is None else (params[n] if p is None else p(params[n]))
                         for n, p, c in binds)
        return args_of
    names = [n for n, _, _ in binds]
    procs = tuple((i, p) for i, (_, p, _) in enumerate(binds) if p is not None)
    get = itemgetter(*names)
    if not procs:
        return get

    def args_of(params: dict) -> tuple:
        values = list(get(params))
        for i, p in procs:
            values[i] = p(values[i])
        return values  # type: ignore[return-value]  # a sequence, as the driver takes it
    return args_of


_ROWCOUNT = {"preserve_rowcount": True}


class DriverStatement:
    """A Core statement that, on SQLite, runs straight on the connection's DBAPI cursor:
    compiled once per dialect and parameter set by SQLAlchemy (its SQL text, its own bind
    processors and constant binds, and its result processors, so values are stored and read
    exactly as Core stores and reads them), without Core's per-execution context. The TSM's
    hot loop (a job step's commit: the job UPDATE and the audit INSERT) paid ~60 us of Core
    overhead per statement on top of ~30 us of SQLite.

    It runs inside the transaction SQLAlchemy began on ``conn`` (pysqlite begins it at the
    first write, whoever sends it) and raises SQLAlchemy's exception types. Elsewhere
    (PostgreSQL, where the round trip dominates) it is a plain ``conn.execute``."""

    def __init__(self, stmt) -> None:
        self.stmt = stmt
        table = getattr(stmt, "table", None)
        self._columns = frozenset(table.c.keys()) if table is not None else frozenset()
        self._plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        #: the dialect last planned for (weakly) and its plans: WeakKeyDictionary.setdefault
        #: makes a weak reference with a callback on every call
        self._last: tuple[weakref.ref, dict] | None = None

    def _plan(self, dialect, keys: frozenset[str]):
        last = self._last
        if last is not None and last[0]() is dialect:
            by_keys = last[1]
        else:
            by_keys = self._plans.setdefault(dialect, {})
            self._last = (weakref.ref(dialect), by_keys)
        plan = by_keys.get(keys)
        if plan is None:
            compiled = self.stmt.compile(dialect=dialect,
                                         column_keys=[k for k in keys if k in self._columns])
            # a positional statement with every value given (no Python-side defaults)
            assert compiled.positional and not compiled.insert_prefetch \
                and not compiled.update_prefetch, "not a statement for the driver path"
            procs = compiled._bind_processors
            binds = []
            for n in compiled.positiontup:
                p = procs.get(n)
                if p is not None and isinstance(compiled.binds[n].type, JSON):
                    p = _empty_map_once(p)
                elif p is not None and isinstance(compiled.binds[n].type, (UtcDateTime, DateTime)):
                    p = _iso_datetime_once(p)
                if n in keys:
                    binds.append((n, p, None))
                else:  # a value the statement carries (a literal the caller does not pass)
                    value = compiled.binds[n].effective_value
                    binds.append((None, None, value if p is None else p(value)))
            result = None
            if compiled._result_columns:
                cols = compiled._result_columns
                result = (namedtuple("DriverRow", [c.keyname for c in cols]),  # type: ignore[misc]
                          tuple(c.type._cached_result_processor(dialect, None) for c in cols))
            plan = by_keys[keys] = (compiled.string, _args_of(tuple(binds)), result)
        return plan

    def _driver(self, conn: Connection):
        """The sqlite3 connection under ``conn`` if this statement may run on it."""
        if conn.dialect.name != "sqlite":
            return None
        raw = conn.connection.driver_connection
        # pysqlite's own transaction handling (not autocommit), as SQLAlchemy relies on it
        return raw if getattr(raw, "isolation_level", None) is not None else None

    def _raise(self, conn: Connection, sql: str, args, exc: Exception, many: bool = False):
        raise DBAPIError.instance(sql, args, exc, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect, ismulti=many) from exc

    def execute(self, conn: Connection, params: dict) -> int:
        """Run with one parameter set; the row count."""
        raw = self._driver(conn)
        if raw is None:
            # SQLAlchemy keeps the row count of an UPDATE or DELETE only, unless asked: an
            # INSERT .. ON CONFLICT DO NOTHING said -1 on PostgreSQL, "not inserted"
            return conn.execute(self.stmt, params, execution_options=_ROWCOUNT).rowcount
        sql, args_of, _ = self._plan(conn.dialect, frozenset(params))
        args = args_of(params)
        try:
            return raw.execute(sql, args).rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            self._raise(conn, sql, args, exc)
            raise  # pragma: no cover - _raise raised

    def rows(self, conn: Connection, params: dict) -> list:
        """Run with one parameter set; all the rows it returns (SELECT, or RETURNING), each
        with its columns as attributes, processed as Core processes them."""
        raw = self._driver(conn)
        if raw is None:
            return conn.execute(self.stmt, params).all()
        sql, args_of, result = self._plan(conn.dialect, frozenset(params))
        args = args_of(params)
        try:
            fetched = raw.execute(sql, args).fetchall()
        except conn.dialect.loaded_dbapi.Error as exc:
            self._raise(conn, sql, args, exc)
            raise  # pragma: no cover - _raise raised
        row_type, procs = result
        if any(procs):
            fetched = [tuple(v if p is None else p(v) for v, p in zip(r, procs, strict=True))
                       for r in fetched]
        return [row_type._make(r) for r in fetched]

    def executemany(self, conn: Connection, rows: list[dict]) -> None:
        """Run once per row (every row with the same keys)."""
        raw = self._driver(conn)
        if raw is None:
            conn.execute(self.stmt, rows)
            return
        sql, args_of, _ = self._plan(conn.dialect, frozenset(rows[0]))
        args = [args_of(r) for r in rows]
        try:
            raw.executemany(sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            self._raise(conn, sql, args, exc, many=True)
