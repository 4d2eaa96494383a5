"""Round trips to the database, counted by kind, as the database sees them.

:class:`RoundTrips` attaches to an engine (before it opens the connections to be counted)
and counts what each of its connections sends:

* PostgreSQL (psycopg): libpq's own protocol trace of the connection (``PQtrace``), so
  it counts what SQLAlchemy never sees: the pool's pre-ping, psycopg's ``BEGIN`` before a
  transaction's first statement, its ``DEALLOCATE ALL`` after a ``ROLLBACK`` and the
  extra round trip that prepares a statement run often. One round trip is one simple
  ``Query`` message, or one extended-protocol batch ended by ``Sync``.
* SQLite: the driver's statement trace (``sqlite3.Connection.set_trace_callback``): every
  statement the library runs, ``BEGIN``/``COMMIT`` included, and each row of an
  ``executemany`` (one run of the statement each). Nothing crosses a network; each still
  costs a call into the library and, for a commit, a WAL write.

Kinds: ``ping``, ``begin``, ``commit``, ``rollback``, ``deallocate``, ``prepare``,
``statement`` and ``setup`` (SQLite's connect-time PRAGMAs). For measurements
(``python -m benchmarks provision``) and regression tests, on an engine used by one thread
at a time while :meth:`RoundTrips.snapshot` reads; not for a serving process.
"""

from __future__ import annotations

import re
import tempfile
import threading
import weakref
from collections import Counter
from typing import IO, Any

from sqlalchemy import Engine, event

KINDS = ("ping", "begin", "commit", "rollback", "deallocate", "prepare", "statement", "setup")

_COMMANDS = {"BEGIN": "begin", "COMMIT": "commit", "ROLLBACK": "rollback",
             "DEALLOCATE": "deallocate", "PRAGMA": "setup"}
_FIRST_WORD = re.compile(r"\s*([A-Za-z]+)")


def _kind_of(sql: str, ping: str | None = None) -> str:
    """The kind of one statement; ``ping``: the text of the pool's pre-ping."""
    if ping is not None and sql.strip() == ping:
        return "ping"
    m = _FIRST_WORD.match(sql)
    return _COMMANDS.get(m.group(1).upper(), "statement") if m else "statement"


class _PgTrace:
    """One psycopg connection's libpq trace file and the reader's place in it."""

    def __init__(self, dbapi_conn: Any, ping: str) -> None:
        from psycopg.pq import Trace

        self.ping = ping
        self.file: IO[bytes] = tempfile.TemporaryFile()
        self.offset = 0
        self.pending = b""
        self.bound = False  # a Bind since the last Sync (else a Parse alone: a prepare)
        self.conn = weakref.ref(dbapi_conn)
        pgconn = dbapi_conn.pgconn
        pgconn.trace(self.file.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)

    def close(self) -> None:
        """Stop the connection's trace (if it is still open), then close the file: libpq
        must not write to a file descriptor number that may be reused."""
        conn = self.conn()
        if conn is not None and not conn.closed:
            conn.pgconn.untrace()
        self.file.close()

    def read(self, into: Counter) -> None:
        """Count the round trips written since the last read (libpq writes each message
        whole and flushes it)."""
        self.file.seek(self.offset)
        data = self.pending + self.file.read()
        self.offset = self.file.tell()
        *lines, self.pending = data.split(b"\n")
        for line in lines:
            fields = line.split(b"\t", 3)
            if len(fields) < 3 or fields[0] != b"F":
                continue  # the server's messages
            message = fields[2]
            if message == b"Query":
                text = fields[3].decode(errors="replace").strip().strip('"') if len(fields) > 3 else ""
                into[_kind_of(text, self.ping)] += 1
            elif message == b"Bind":
                self.bound = True
            elif message == b"Sync":
                into["statement" if self.bound else "prepare"] += 1
                self.bound = False


class RoundTrips:
    """Counts the round trips of every connection ``engine`` opens from now on.

    ``RoundTrips(engine)`` before the engine connects (or followed by ``engine.dispose()``
    to replace the pooled connections), then ``before = trips.snapshot()``, the work, and
    ``trips.since(before)``: the round trips by kind, a :class:`collections.Counter`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._pg: list[_PgTrace] = []
        self._sqlite: list[Any] = []  # (sqlite3 connections take no weak reference)
        if self.dialect == "postgresql" and engine.dialect.driver != "psycopg":
            raise NotImplementedError("round trips are counted on PostgreSQL through psycopg only")
        if self.dialect not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"no round-trip count for {self.dialect}")
        event.listen(engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        if self.dialect == "postgresql":
            # the pool's pre-ping: the dialect's cheapest statement (";" on psycopg)
            trace = _PgTrace(dbapi_conn, self.engine.dialect._dialect_specific_select_one.strip())
            with self._lock:
                self._pg.append(trace)
            return

        def traced(sql: str) -> None:
            kind = _kind_of(sql)
            with self._lock:
                self._counts[kind] += 1

        dbapi_conn.set_trace_callback(traced)
        with self._lock:
            self._sqlite.append(dbapi_conn)

    def snapshot(self) -> Counter[str]:
        """Every round trip counted so far, by kind."""
        with self._lock:
            for trace in self._pg:
                trace.read(self._counts)
            return Counter(self._counts)

    def since(self, before: Counter[str]) -> Counter[str]:
        """The round trips counted after ``before`` (a :meth:`snapshot`), by kind."""
        now = self.snapshot()
        now.subtract(before)
        return +now

    def detach(self) -> None:
        """Stop counting: no new connection is traced, and the open ones stop (call it, or
        dispose of the engine, before letting go of a counter whose engine lives on)."""
        event.remove(self.engine, "connect", self._on_connect)
        with self._lock:
            for trace in self._pg:
                trace.close()
            self._pg.clear()
            for conn in self._sqlite:
                try:
                    conn.set_trace_callback(None)
                except Exception:  # noqa: BLE001,S110 - closed meanwhile: nothing to stop
                    pass
            self._sqlite.clear()


def total(counts: Counter[str]) -> int:
    return sum(counts.values())


def describe(counts: Counter[str]) -> str:
    """``"207 (ping 39, begin 39, ...)"``: the total and each kind, in :data:`KINDS` order."""
    parts = [f"{k} {counts[k]}" for k in KINDS if counts.get(k)]
    return f"{total(counts)} ({', '.join(parts)})"
