"""One lock per secure element: two workers never interleave sessions on one SE
(specs/tsm.md, "Locking").

PostgreSQL: the worker holds the row lock on the SE's ``tsm_se_locks`` row in a dedicated
connection for as long as it talks to the SE; the database releases it when the worker
commits, or when its connection dies (a crashed worker frees the SE at once). One
``INSERT .. ON CONFLICT DO UPDATE .. RETURNING`` takes it: it creates the row at first
contact, else updates it (owner, token), and holds the row's lock either way (a worker
behind it waits on the row, or on the uncommitted insert). ``lock_timeout`` bounds the
wait.

Other backends (SQLite): a lease row with an expiry, taken by one atomic conditional
UPDATE (free or expired -> mine) and renewed before every job step; a worker whose lease
has passed raises :class:`LockLostError` instead of sending more commands. The fencing
token grows with every acquisition.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, bindparam, exists, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from tsm.db import Bind, DriverStatement, SeLockRow, transaction
from tsm.errors import LockBusyError, LockLostError

_LOCKS = SeLockRow.__table__
#: PostgreSQL's SQLSTATE when lock_timeout ran out (lock_not_available)
_LOCK_NOT_AVAILABLE = "55P03"
_MINE = (_LOCKS.c.se_id == bindparam("b_se_id"), _LOCKS.c.owner == bindparam("b_owner"),
         _LOCKS.c.token == bindparam("b_token"))
_RENEW = update(_LOCKS).where(*_MINE, _LOCKS.c.expires_ms > bindparam("b_now")).values(
    expires_ms=bindparam("b_until"))
_TAKE = update(_LOCKS).where(_LOCKS.c.se_id == bindparam("b_se_id"),
                             _LOCKS.c.expires_ms <= bindparam("b_now")).values(
    owner=bindparam("b_owner"), token=_LOCKS.c.token + 1, expires_ms=bindparam("b_until"))
_TAKE_RETURNING = _TAKE.returning(_LOCKS.c.token)
_TOKEN = select(_LOCKS.c.token).where(_LOCKS.c.se_id == bindparam("b_se_id"))
_RELEASE = update(_LOCKS).where(*_MINE).values(owner=None, expires_ms=0)
_RELEASE_DRIVER = DriverStatement(_RELEASE)
_CREATE_TAKEN = insert(_LOCKS)


def _take_or_create():
    """Take a free or expired lease, or create the row already taken (token 1) at first
    contact, in one statement returning the new token (none: the lease is held)."""
    stmt = sqlite.insert(_LOCKS).values(se_id=bindparam("b_se_id"), owner=bindparam("b_owner"),
                                        token=1, expires_ms=bindparam("b_until"))
    return stmt.on_conflict_do_update(
        index_elements=[_LOCKS.c.se_id],
        set_={"owner": stmt.excluded.owner, "token": _LOCKS.c.token + 1,
              "expires_ms": stmt.excluded.expires_ms},
        where=_LOCKS.c.expires_ms <= bindparam("b_now")).returning(_LOCKS.c.token)


#: by dialect, where it has INSERT .. ON CONFLICT DO UPDATE .. RETURNING (a lease is taken
#: on backends without row locks: SQLite)
_TAKE_OR_CREATE = {"sqlite": DriverStatement(_take_or_create())}
#: "the lease is still ours and unexpired", for a WHERE clause of the caller's own write
#: (a job step's progress): the fence without a statement of its own
FENCE = exists().where(*_MINE, _LOCKS.c.expires_ms > bindparam("b_now"))
#: check() trusts a lease it confirmed in the database less than this part of the lease ago
TRUST_FRACTION = 4


def _lock_row():
    """PostgreSQL: the SE's lock row updated to ``owner`` with the next token, or created
    (token 1) at first contact, returning the token; the row stays locked until the
    transaction ends. (It was: a SELECT and, at first contact, an INSERT, each in a
    transaction of its own, then SELECT .. FOR UPDATE and an UPDATE: ten round trips at
    first contact where this is three, with BEGIN and SET LOCAL.)"""
    stmt = postgresql.insert(_LOCKS).values(se_id=bindparam("b_se_id"), owner=bindparam("b_owner"),
                                            token=1, expires_ms=bindparam("b_until"))
    return stmt.on_conflict_do_update(
        index_elements=[_LOCKS.c.se_id],
        set_={"owner": stmt.excluded.owner, "token": _LOCKS.c.token + 1,
              "expires_ms": stmt.excluded.expires_ms}).returning(_LOCKS.c.token)


_LOCK_ROW = _lock_row()


class SeLock:
    """A held lock on one SE. ``renew()`` before each step; ``release()`` at the end."""

    def __init__(self, engine: Engine, se_id: str, owner: str, token: int,
                 lease_ms: int, clock: Callable[[], float], conn=None,
                 bind: Bind | None = None) -> None:
        self.engine = engine
        #: where a lease's own statements run (release; check and renew without a bind):
        #: the worker's run connection when it gave one, else the engine
        self._bind: Bind = bind if bind is not None else engine
        self.se_id = se_id
        self.owner = owner
        self.token = token
        self._lease_ms = lease_ms
        self._clock = clock
        self._conn = conn  # PostgreSQL: the connection holding the row lock
        self.released = False
        #: our clock when the database last confirmed the lease ours (taken or renewed)
        self._confirmed_ms = self._now_ms()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def renew(self) -> None:
        """Extend the lease; raise :class:`LockLostError` if it is no longer ours."""
        if self.released:
            raise LockLostError(f"lock on SE {self.se_id} was already released")
        if self._conn is not None:
            return  # the row lock lives as long as the connection's transaction
        with self.engine.begin() as conn:
            self.renew_in(conn)

    def check(self, bind: Bind | None = None) -> None:
        """Check that the lease is still ours and unexpired (before a step); on ``bind``
        (the worker's run connection) if given.

        A lease the database confirmed ours (taken, or renewed) less than a quarter of the
        lease ago is ours without asking again: no other worker may take a lease before it
        expires, and it has at least three quarters left. Otherwise it is renewed here
        (one fenced UPDATE), which both checks it and extends it; the step's commit is
        fenced on its own (:meth:`fence_params`)."""
        if self.released:
            raise LockLostError(f"lock on SE {self.se_id} was already released")
        if self._conn is not None:
            return
        now = self._now_ms()
        if 0 <= now - self._confirmed_ms < self._lease_ms // TRUST_FRACTION:
            return
        with transaction(bind if bind is not None else self._bind) as conn:
            self.renew_in(conn)

    @property
    def fenced(self) -> bool:
        """Whether writes made under this lock must carry :data:`FENCE` (a lease); a
        PostgreSQL row lock needs no fence: nobody else can hold the row meanwhile."""
        return self._conn is None

    def fence_params(self) -> dict[str, object]:
        """The bound parameters of :data:`FENCE` for this lease, now."""
        return {"b_se_id": self.se_id, "b_owner": self.owner, "b_token": self.token,
                "b_now": self._now_ms()}

    def renew_in(self, conn) -> None:
        """Extend the lease inside the caller's transaction (with a step's commit); raise
        :class:`LockLostError` if it is no longer ours (the caller's transaction then
        rolls back, so a step is never recorded by a worker that lost the SE)."""
        if self._conn is not None:
            return
        now = self._now_ms()
        n = conn.execute(_RENEW, {"b_se_id": self.se_id, "b_owner": self.owner,
                                  "b_token": self.token, "b_now": now,
                                  "b_until": now + self._lease_ms}).rowcount
        if n != 1:
            raise LockLostError(
                f"lease of {self.owner} on SE {self.se_id} expired or was taken over")
        # a failed commit of this transaction ends the run (the error propagates)
        self._confirmed_ms = now

    def release_in(self, conn) -> None:
        """Free the lease inside the caller's transaction (a job's last commit); the caller
        sets :attr:`released` once that transaction has committed."""
        assert self._conn is None, "a row lock is released with its own connection"
        _RELEASE_DRIVER.execute(conn, {"b_se_id": self.se_id, "b_owner": self.owner,
                                       "b_token": self.token})

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._conn is not None:
            try:
                self._conn.execute(
                    update(SeLockRow).where(SeLockRow.se_id == self.se_id)
                    .values(owner=None, expires_ms=0))
                self._conn.commit()
            finally:
                self._conn.close()
            return
        with transaction(self._bind) as conn:
            conn.execute(_RELEASE, {"b_se_id": self.se_id, "b_owner": self.owner,
                                    "b_token": self.token})


def holds_row_lock(engine: Engine) -> bool:
    """Whether :func:`acquire` on ``engine`` takes a row lock in a connection of its own
    (PostgreSQL) rather than a lease."""
    return engine.dialect.name == "postgresql"


#: ``@host:pid/`` in an owner (:func:`process_owner`): the process that holds a lease
_PROCESS = re.compile(r"@([^@:/]+):([0-9]+)/[0-9a-f]{8}$")


def _host() -> str:
    """This host's name as an owner carries it."""
    return socket.gethostname()[:40]


def process_owner(name: str) -> str:
    """An owner for a lease taken by this process: ``name@host:pid/xxxxxxxx``, cut (``name``)
    to fit the lock's owner column. A worker waiting on a lease whose process, on this
    host, is gone (killed) takes it at once (:func:`acquire`), as PostgreSQL frees a dead
    connection's row lock, instead of waiting the lease out."""
    tag = f"@{_host()}:{os.getpid()}/{uuid.uuid4().hex[:8]}"
    return f"{name[:max(_LOCKS.c.owner.type.length - len(tag), 1)]}{tag}"


def _dead(owner: str | None) -> bool:
    """Whether ``owner`` names a process of this host that no longer runs."""
    m = _PROCESS.search(owner or "")
    if m is None or m.group(1) != _host():
        return False
    pid = int(m.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # no signal: only whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # another user's process (PermissionError): alive
        return False
    return False


_HOLDER = select(_LOCKS.c.owner, _LOCKS.c.token).where(_LOCKS.c.se_id == bindparam("b_se_id"))
_TAKE_FROM_DEAD = update(_LOCKS).where(
    _LOCKS.c.se_id == bindparam("b_se_id"), _LOCKS.c.owner == bindparam("b_dead"),
    _LOCKS.c.token == bindparam("b_token")).values(
    owner=bindparam("b_owner"), token=_LOCKS.c.token + 1, expires_ms=bindparam("b_until"))


def acquire(engine: Engine, se_id: str, owner: str, *, timeout_s: float = 10.0,
            lease_s: float = 60.0, clock: Callable[[], float] = time.time,
            poll_s: float = 0.02, bind: Bind | None = None,
            with_lease: Callable[[Connection], None] | None = None) -> SeLock:
    """Take the SE's lock for ``owner`` or raise :class:`LockBusyError` after ``timeout_s``.
    ``bind``: a connection the worker holds, on which a lease's statements run (taking,
    renewing and releasing it) instead of a pooled connection each; a row lock ignores it.
    ``with_lease``: for a lease only, called with the connection inside the transaction
    that takes it, so the caller's first statements under the lock share its commit (if it
    raises, the lease is not taken); a row lock never calls it."""
    lease_ms = int(lease_s * 1000)
    if holds_row_lock(engine):
        conn = engine.connect()
        try:
            conn.execute(text(f"SET LOCAL lock_timeout = '{max(1, int(timeout_s * 1000))}ms'"))
            token = conn.execute(_LOCK_ROW, {"b_se_id": se_id, "b_owner": owner,
                                             "b_until": int(clock() * 1000) + lease_ms}).scalar_one()
        except DBAPIError as exc:
            conn.rollback()
            conn.close()
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise  # not a wait that ran out (a value its column refuses, a lost server)
            raise LockBusyError(
                f"SE {se_id} is locked by another worker (waited {timeout_s:g} s)") from exc
        except BaseException:
            conn.rollback()
            conn.close()
            raise
        return SeLock(engine, se_id, owner, token, lease_ms, clock, conn)
    deadline = time.monotonic() + timeout_s
    row_known = False
    lease_bind: Bind = bind if bind is not None else engine
    while True:
        now = int(clock() * 1000)
        with transaction(lease_bind) as conn:
            params = {"b_se_id": se_id, "b_now": now, "b_owner": owner, "b_until": now + lease_ms}
            take_or_create = _TAKE_OR_CREATE.get(conn.dialect.name)
            if take_or_create is not None:  # taken, or created taken: one statement
                got = take_or_create.rows(conn, params)
                token = got[0].token if got else None
                n = int(token is not None)
                row_known = True
            elif conn.dialect.update_returning:  # the new token in the same statement
                token = conn.execute(_TAKE_RETURNING, params).scalar()
                n = int(token is not None)
            else:
                n = conn.execute(_TAKE, params).rowcount
                token = conn.execute(_TOKEN, {"b_se_id": se_id}).scalar_one() if n == 1 else None
            if n == 1:
                lock = SeLock(engine, se_id, owner, token, lease_ms, clock, bind=bind)
                lock._confirmed_ms = now  # the lease runs from the time it was set
                if with_lease is not None:
                    with_lease(conn)
                return lock
        if not row_known:  # no free row: first contact? create the row already ours
            row_known = True
            created = False
            try:
                with transaction(lease_bind) as conn:
                    conn.execute(_CREATE_TAKEN, {"se_id": se_id, "owner": owner, "token": 1,
                                                 "expires_ms": now + lease_ms})
                    created = True
                    lock = SeLock(engine, se_id, owner, 1, lease_ms, clock, bind=bind)
                    lock._confirmed_ms = now
                    if with_lease is not None:
                        with_lease(conn)
            except IntegrityError:
                if created:  # from with_lease: not ours to interpret
                    raise
                continue  # the row exists (held by another worker, or created just now)
            return lock
        with transaction(lease_bind) as conn:  # held by a process that is gone? take it over
            held = conn.execute(_HOLDER, {"b_se_id": se_id}).first()
            if held is not None and _dead(held.owner) and conn.execute(_TAKE_FROM_DEAD, {
                    "b_se_id": se_id, "b_dead": held.owner, "b_token": held.token, "b_owner": owner,
                    "b_until": now + lease_ms}).rowcount == 1:
                lock = SeLock(engine, se_id, owner, held.token + 1, lease_ms, clock, bind=bind)
                lock._confirmed_ms = now
                if with_lease is not None:
                    with_lease(conn)
                return lock
        if time.monotonic() >= deadline:
            raise LockBusyError(
                f"SE {se_id} is locked by another worker (waited {timeout_s:g} s)")
        time.sleep(poll_s)


@contextmanager
def se_locked(engine: Engine, se_id: str, owner: str, **kwargs) -> Iterator[SeLock]:
    """``with se_locked(engine, se_id, owner) as lock: ...`` (released on every exit)."""
    lock = acquire(engine, se_id, owner, **kwargs)
    try:
        yield lock
    finally:
        lock.release()
