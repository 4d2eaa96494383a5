"""The SE lock's lease on a database with neither SQLite's one-statement upsert nor
PostgreSQL's row lock (MariaDB, MySQL, SQL Server, ...): the generic path of
:func:`tsm.lock.acquire`, exercised on SQLite with its own statement taken away, once with
``UPDATE .. RETURNING`` (the new token in the same statement) and once without (the row
count, then the token read back). The same guarantees as the dialect paths: first contact
creates the row already taken, a held lease excludes, every take raises the token, an
expired lease is taken over and fences out its old holder."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mcred.db import make_engine, migrate
from tsm import lock as tsm_lock
from tsm.db import SeLockRow
from tsm.errors import LockBusyError, LockLostError
from tsm.lock import acquire


@pytest.fixture(params=["update-returning", "rowcount"])
def engine(request, tmp_path, monkeypatch):
    engine = make_engine(f"sqlite:///{tmp_path / 'locks.sqlite3'}")
    migrate(engine)
    monkeypatch.setattr(tsm_lock, "_TAKE_OR_CREATE", {})
    if request.param == "rowcount":
        monkeypatch.setattr(engine.dialect, "update_returning", False)
    yield engine
    engine.dispose()


def _row(engine, se_id: str):
    with engine.connect() as conn:
        return conn.execute(select(SeLockRow.owner, SeLockRow.token).where(SeLockRow.se_id == se_id)).one()


def test_first_contact_exclusion_and_tokens(engine):
    seen = []
    a = acquire(engine, "se-g", "a", timeout_s=1, with_lease=lambda conn: seen.append("a"))
    assert a.token == 1 and seen == ["a"] and tuple(_row(engine, "se-g")) == ("a", 1)
    with pytest.raises(LockBusyError):
        acquire(engine, "se-g", "b", timeout_s=0.2, poll_s=0.01)
    a.check()
    a.release()
    b = acquire(engine, "se-g", "b", timeout_s=1, with_lease=lambda conn: seen.append("b"))
    assert b.token == 2 and seen == ["a", "b"] and tuple(_row(engine, "se-g")) == ("b", 2)
    b.release()


def test_an_expired_lease_is_taken_over_and_fences_the_old_holder(engine):
    now = [1000.0]
    a = acquire(engine, "se-x", "a", lease_s=5, clock=lambda: now[0])
    with pytest.raises(LockBusyError):
        acquire(engine, "se-x", "b", timeout_s=0.1, poll_s=0.01, clock=lambda: now[0])
    now[0] += 10
    b = acquire(engine, "se-x", "b", timeout_s=0.5, clock=lambda: now[0])
    assert b.token == a.token + 1
    with pytest.raises(LockLostError):
        a.check()
    with pytest.raises(LockLostError), engine.begin() as conn:
        a.renew_in(conn)  # a step's commit under the old lease is refused
    b.check()
    b.release()


def test_a_failing_first_statement_under_a_new_lease_takes_nothing(engine):
    """``with_lease`` raising (the caller's first statement under the lock) rolls the
    lease back with it: the SE stays free."""
    def boom(conn):
        raise RuntimeError("the caller's first statement failed")

    with pytest.raises(RuntimeError):
        acquire(engine, "se-f", "a", timeout_s=0.5, with_lease=boom)
    acquire(engine, "se-f", "b", timeout_s=0.5).release()
    with pytest.raises(RuntimeError):  # and on a row that already exists, the same
        acquire(engine, "se-f", "a", timeout_s=0.5, with_lease=boom)
    c = acquire(engine, "se-f", "c", timeout_s=0.5)
    assert _row(engine, "se-f").owner == "c"
    c.release()


_HOLD_AND_DIE = """
import os, sys, time
from mcred.db import make_engine
from tsm.lock import acquire, process_owner
lock = acquire(make_engine(sys.argv[1]), "se-k", process_owner("worker"), lease_s=120)
print(lock.owner, flush=True)
if sys.argv[2] == "die":
    os._exit(0)  # as killed: the lease stays in the table, taken for two minutes
time.sleep(60)
"""


@pytest.mark.parametrize("taking", ["dialect", "generic"])
def test_a_lease_of_a_killed_process_is_taken_at_once(tmp_path, monkeypatch, taking):
    """SQLite holds the SE lock as a lease: a worker killed mid-job left it taken until it
    expired, and every resume, abandon or handover waited 30 s then failed ("locked by
    another worker"; found by a chaos test). A lease names its process (host and pid): one
    whose process is gone from this host is taken over at once, with the next token; one
    whose process still runs is not."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'locks.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    if taking == "generic":
        monkeypatch.setattr(tsm_lock, "_TAKE_OR_CREATE", {})
    script = tmp_path / "hold.py"
    script.write_text(_HOLD_AND_DIE)
    died = subprocess.run([sys.executable, str(script), url, "die"], capture_output=True, text=True,
                          timeout=60, check=True)
    dead_owner = died.stdout.strip()
    assert tuple(_row(engine, "se-k")) == (dead_owner, 1)
    mine = acquire(engine, "se-k", tsm_lock.process_owner("resume"), timeout_s=1, poll_s=0.01)
    assert mine.token == 2 and _row(engine, "se-k").owner == mine.owner
    mine.release()
    alive = subprocess.Popen([sys.executable, str(script), url, "live"], stdout=subprocess.PIPE, text=True)
    try:
        alive.stdout.readline()
        with pytest.raises(LockBusyError):
            acquire(engine, "se-k", tsm_lock.process_owner("resume"), timeout_s=0.3, poll_s=0.01)
    finally:
        alive.kill()
        alive.wait()
    engine.dispose()
