"""Creating and migrating the schema is all or nothing, and one process does it at a time.

A chaos test found that SIGKILL during a SQLite data directory's first command left the
schema half-built for good (``table api_tokens already exists`` at every later command):
the sqlite3 driver committed each CREATE TABLE on its own. Here a process is killed at a
chosen DDL statement (a SQLAlchemy event in the process, not a timer), and the next one
finds an empty database and builds it; two processes creating one database wait for each
other; a database an older mcred left half-built is named as such, with the way out, and
not touched.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from mcred.db import SchemaError, make_engine, migrate, schema_status

# what these tests check is migrating itself: never from a copy (tests/conftest.py)
pytestmark = pytest.mark.real_migrations

ROOT = Path(__file__).resolve().parents[1]

#: Migrates the database at argv[1]; argv[2] says where to stop: ``kill:N`` SIGKILLs the
#: process just before its Nth DDL statement, ``kill:commit`` just before the COMMIT, and
#: ``hold:DIR`` pauses after the first DDL statement (the write lock held) until DIR/release
#: exists, having made DIR/held; ``wait:DIR`` makes DIR/asked as it asks for the lock (the
#: statement that waits for it). ``-`` runs through.
DRIVER = r"""
import os, signal, sys, time
from pathlib import Path
from sqlalchemy import event
from mcred.db import make_engine, migrate, schema_status

url, how = sys.argv[1], sys.argv[2]
engine = make_engine(url)
ddl = [0]

def is_ddl(stmt):
    return stmt.lstrip().upper().startswith(("CREATE", "ALTER", "DROP"))

if how.startswith("kill:") and how != "kill:commit":
    @event.listens_for(engine, "before_cursor_execute")
    def _kill(conn, cursor, stmt, params, context, many):
        if is_ddl(stmt):
            ddl[0] += 1
            if ddl[0] == int(how[5:]):
                os.kill(os.getpid(), signal.SIGKILL)
elif how == "kill:commit":
    @event.listens_for(engine, "commit")
    def _kill(conn):
        os.kill(os.getpid(), signal.SIGKILL)
elif how.startswith("hold:"):
    where = Path(how[5:])
    @event.listens_for(engine, "after_cursor_execute")
    def _hold(conn, cursor, stmt, params, context, many):
        if is_ddl(stmt) and not ddl[0]:
            ddl[0] += 1
            (where / "held").touch()
            deadline = time.monotonic() + 60
            while not (where / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
elif how.startswith("wait:"):  # says when it asks for the lock the first holds
    where = Path(how[5:])
    @event.listens_for(engine, "before_cursor_execute")
    def _asks(conn, cursor, stmt, params, context, many):
        if stmt.strip().upper() == "BEGIN IMMEDIATE" or "pg_advisory_xact_lock" in stmt:
            (where / "asked").touch()
migrate(engine)
applied, newest = schema_status(engine)
print("current" if applied == newest else f"NOT CURRENT {sorted(applied)} {sorted(newest)}")
"""


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def _driver(url: str, how: str = "-") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DRIVER, url, how], capture_output=True, text=True,
                          env=_env(), timeout=120)


def _ddl_statements() -> list[str]:
    """Every DDL statement a first migration runs, in order (on an in-memory database)."""
    engine = make_engine("sqlite://")
    seen: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _log(conn, cursor, stmt, params, context, many):  # noqa: ANN001
        if stmt.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
            seen.append(" ".join(stmt.split()))

    migrate(engine)
    engine.dispose()
    return seen


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


@functools.cache
def _kill_points() -> dict[str, str]:
    ddl = _ddl_statements()

    def after(prefix: str) -> str:  # killed before the statement after it: it is made
        return f"kill:{_after(ddl, prefix)}"

    return {"first": "kill:2",  # alembic_version made, nothing else
            "a column": after("ALTER TABLE"),  # a revision recorded, a column of the next added
            "api_tokens": after("CREATE TABLE api_tokens"),  # where the chaos test broke (and below)
            "last": f"kill:{len(ddl)}", "commit": "kill:commit"}


def _after(ddl: list[str], prefix: str) -> int:
    """The number of the DDL statement after the first one that starts with ``prefix``."""
    return next(i for i, s in enumerate(ddl, 1) if s.startswith(prefix)) + 1


@pytest.mark.parametrize("where", ["first", "a column", "api_tokens", "last", "commit"])
def test_a_process_killed_while_creating_the_schema_leaves_nothing_behind(tmp_path, where):
    db = tmp_path / "mcred.sqlite3"
    killed = _driver(f"sqlite:///{db}", _kill_points()[where])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _tables(db) == []  # rolled back whole: no alembic_version, no table of any party
    again = _driver(f"sqlite:///{db}")
    assert again.returncode == 0 and again.stdout.strip() == "current", again.stderr[-2000:]


def test_the_next_command_works_after_a_kill_where_the_chaos_test_broke(tmp_path):
    """The chaos test's own shape: `mcred tsm jobs` on a fresh data directory killed part-way
    (here right after it created tsm_seram_sessions), then `mcred tsm jobs` again."""
    home = tmp_path / "h"
    home.mkdir()
    n = _after(_ddl_statements(), "CREATE TABLE tsm_seram_sessions")  # the other table it named
    killed = _driver(f"sqlite:///{home / 'mcred.sqlite3'}", f"kill:{n}")
    assert killed.returncode == -signal.SIGKILL
    env = _env(MCRED_HOME=str(home))
    env.pop("MCRED_DATABASE_URL", None)
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "mcred", "tsm", "jobs"], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Traceback" not in done.stderr


def test_a_second_process_waits_for_the_first_to_create_the_schema(tmp_path, db_url):
    """The first holds the lock (SQLite's write lock, PostgreSQL's advisory lock) in the
    middle of creating the schema; the second waits for it (it neither fails on a table the
    first made nor builds one of its own), then finds the schema current and has nothing to
    do."""
    url = db_url
    first = subprocess.Popen([sys.executable, "-c", DRIVER, url, f"hold:{tmp_path}"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "held").exists():
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second = subprocess.Popen([sys.executable, "-c", DRIVER, url, f"wait:{tmp_path}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=_env())
        while not (tmp_path / "asked").exists():  # its start-up, then it asks for the lock
            assert second.poll() is None, second.communicate()
            assert time.monotonic() < deadline + 60
            time.sleep(0.02)
        time.sleep(0.3)  # inside the driver's call now, waiting for the lock
        assert second.poll() is None, second.communicate()
        (tmp_path / "release").touch()
        out2, err2 = second.communicate(timeout=60)
        out1, err1 = first.communicate(timeout=60)
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert first.returncode == 0 and out1.strip() == "current", err1[-2000:]
    assert second.returncode == 0 and out2.strip() == "current", err2[-2000:]
    engine = make_engine(url)
    with engine.connect() as conn:
        versions = [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    applied, newest = schema_status(engine)
    engine.dispose()
    assert sorted(versions) == sorted(newest) == sorted(applied)  # one row per head, none twice


def test_first_commands_at_the_same_moment_all_work(db_url):
    """Three processes migrate a fresh database at once (on PostgreSQL the losers failed on
    pg_type's unique index before the advisory lock)."""
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER, db_url, "-"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.strip() == "current", err[-2000:]


def test_a_current_schema_is_found_without_the_write_lock(tmp_path):
    """Every command migrates at start; when there is nothing to do it only reads, so it does
    not wait behind (or hold up) a writer of an installation in use."""
    db = tmp_path / "mcred.sqlite3"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    engine.dispose()
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        engine = make_engine(f"sqlite:///{db}")
        done = threading.Event()
        threading.Thread(target=lambda: (migrate(engine), done.set()), daemon=True).start()
        assert done.wait(10)  # the busy timeout is 30 s: it took no lock
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        engine.dispose()


def test_other_connections_keep_the_drivers_transaction_handling(tmp_path):
    """Only the migration's connection takes BEGIN over; what the pool hands out afterwards
    is the sqlite3 driver's default (a SELECT opens no transaction), as before."""
    engine = make_engine(f"sqlite:///{tmp_path / 'mcred.sqlite3'}")
    migrate(engine)
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw.isolation_level == ""
        conn.execute(sa.text("SELECT count(*) FROM holders"))
        assert not raw.in_transaction
    engine.dispose()


# --- a data directory an older mcred left half-built ---------------------------------

def _half_built(path: Path, upto: str | None, sql: str) -> sa.Engine:
    """A database migrated to ``upto`` (None: not at all), then ``sql`` run as the next
    migration's first statements would have been when an older mcred was killed."""
    engine = make_engine(f"sqlite:///{path}")
    if upto:
        migrate(engine, upto)
    with engine.begin() as conn:
        for stmt in sql.split(";"):
            if stmt.strip():
                conn.exec_driver_sql(stmt)
    return engine


def _snapshot(path: Path) -> tuple:
    with sqlite3.connect(path) as db:
        return (sorted(db.execute("SELECT type, name, sql FROM sqlite_master")),
                sorted(db.execute("SELECT version_num FROM alembic_version"))
                if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone() else None)


def test_a_half_built_database_is_named_with_the_way_out_and_left_alone(tmp_path):
    db = tmp_path / "mcred.sqlite3"
    engine = _half_built(db, "t0002", "CREATE TABLE tsm_seram_sessions (session_id VARCHAR(128) PRIMARY KEY)")
    before = _snapshot(db)
    with pytest.raises(SchemaError) as caught:
        migrate(engine)
    engine.dispose()
    err = caught.value
    assert f"the database {db} is half-built: table tsm_seram_sessions already exists" in err.problem
    assert "records revision t0002:" in err.problem
    assert "migration t0003 (GP SERAM relay tables" in err.problem
    assert "Nothing was changed." in err.problem
    assert "It holds no data" in err.recovery
    assert _snapshot(db) == before
    # the way out it gives, followed to the letter, gives a working database
    command = re.search(r"\((mkdir .*?/)\)", err.recovery).group(1)
    subprocess.run(command, shell=True, check=True)
    assert (tmp_path / "half-built" / "mcred.sqlite3").exists() and not db.exists()
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    applied, newest = schema_status(engine)
    engine.dispose()
    assert applied == newest


def test_a_half_built_database_with_data_is_not_to_be_removed(tmp_path):
    db = tmp_path / "mcred.sqlite3"
    engine = _half_built(db, "r0001", "INSERT INTO reader_sessions (id, created_at, state, transcript) "
                         "VALUES ('s1', '2026-01-01 00:00:00', 'done', x'00');"
                         "ALTER TABLE reader_sessions ADD COLUMN claimed_at DATETIME")
    before = _snapshot(db)
    with pytest.raises(SchemaError) as caught:
        migrate(engine)
    engine.dispose()
    err = caught.value
    assert "column reader_sessions.claimed_at already exists" in err.problem
    assert "records revision r0001:" in err.problem and "migration r0002 (reader_sessions.claimed_at" in err.problem
    assert "It holds data (rows in reader_sessions): do not remove it" in err.recovery
    assert "r0002_claimed_at.py" in err.recovery and ".backup" in err.recovery
    assert _snapshot(db) == before


def test_tables_without_alembic_version_are_named_too(tmp_path):
    db = tmp_path / "mcred.sqlite3"
    engine = _half_built(db, None, "CREATE TABLE reader_sessions (id VARCHAR(32) PRIMARY KEY)")
    with pytest.raises(SchemaError) as caught:
        migrate(engine)
    engine.dispose()
    assert "table reader_sessions already exists, yet it records no revision: migration r0001" in str(caught.value)


def test_the_cli_and_doctor_say_it_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    home = tmp_path / "h"
    home.mkdir()
    _half_built(home / "mcred.sqlite3", "t0003", "CREATE TABLE api_tokens (id VARCHAR(32) PRIMARY KEY)").dispose()
    env = _env(MCRED_HOME=str(home))
    env.pop("MCRED_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "mcred", "tsm", "jobs"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: the database {home / 'mcred.sqlite3'} is half-built: "
                                  "table api_tokens already exists")
    assert "migration i0001" in done.stderr and "Traceback" not in done.stderr

    from mcred.context import Context
    from mcred.doctor import _database

    finding = _database(Context.open(home))
    assert not finding.ok
    assert "half-built" in finding.detail and finding.fix.startswith("It holds no data")


def test_uvicorn_factories_say_what_cannot_work_without_a_traceback(tmp_path, monkeypatch):
    """``uvicorn --factory mcred.service:app_from_env`` (a deployment's own uvicorn, and each
    worker of `mcred serve --workers N`) on a half-built database, a bad setting, and the
    reader's factory without its settings: one ``error:`` line and exit 2, as `mcred` says it
    (a walk-through met a SchemaError traceback)."""
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    home = tmp_path / "h"
    home.mkdir()
    _half_built(home / "mcred.sqlite3", "t0003", "CREATE TABLE api_tokens (id VARCHAR(32) PRIMARY KEY)").dispose()
    env = _env(MCRED_HOME=str(home))
    env.pop("MCRED_DATABASE_URL", None)
    env.pop("MCRED_READER_SERVE", None)

    def factory(name: str, **more: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "uvicorn", "--factory", name, "--port", "0"],
                              capture_output=True, text=True, env={**env, **more}, timeout=120)

    done = factory("mcred.service:app_from_env")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: the database {home / 'mcred.sqlite3'} is half-built: ")
    assert "Traceback" not in done.stderr
    done = factory("mcred.service:app_from_env", MCRED_PUBLIC_URL="ftp://x")
    assert done.returncode == 2 and done.stderr.startswith("error: MCRED_PUBLIC_URL='ftp://x'"), done.stderr
    done = factory("mcred.present:reader_app_from_env")
    assert done.returncode == 2 and done.stderr == "error: $MCRED_READER_SERVE is not set (mcred reader serve sets it)\n"


@pytest.mark.skipif(not __import__("shutil").which("sqlite3"), reason="the sqlite3 shell is not installed")
def test_the_advised_copy_of_a_half_built_database_is_the_owners_alone(tmp_path):
    """The copy the recovery advice makes holds every holder's personal data: run as written
    under the usual umask 022, it is made 0600, not world-readable (sqlite3's .backup makes
    its file with the umask's mode)."""
    db = tmp_path / "mcred.sqlite3"
    engine = _half_built(db, "r0001", "INSERT INTO reader_sessions (id, created_at, state, transcript) "
                         "VALUES ('s1', '2026-01-01 00:00:00', 'done', x'00');"
                         "ALTER TABLE reader_sessions ADD COLUMN claimed_at DATETIME")
    with pytest.raises(SchemaError) as caught:
        migrate(engine)
    engine.dispose()
    command = re.search(r"readable by you alone: (\(umask 077 && sqlite3 .*?\"\));", caught.value.recovery)
    assert command, caught.value.recovery
    subprocess.run(["sh", "-c", f"umask 022; {command[1]}"], check=True, timeout=60)
    copy = Path(f"{db}.bak")
    assert copy.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT id FROM reader_sessions").fetchall() == [("s1",)]


def test_the_advice_for_an_empty_half_built_database_keeps_it_to_its_owner(tmp_path):
    db = tmp_path / "mcred.sqlite3"
    engine = _half_built(db, "r0001", "ALTER TABLE reader_sessions ADD COLUMN claimed_at DATETIME")
    with pytest.raises(SchemaError) as caught:
        migrate(engine)
    engine.dispose()
    assert f"mkdir -m 700 {tmp_path / 'half-built'} && mv" in caught.value.recovery
