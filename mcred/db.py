"""The one relational database of an installation: engine, sessions, migrations.

Each party owns its tables (``issuer.db.IssuerBase``, ``tsm.db.TsmBase``,
``reader.sessions.ReaderBase``) and its Alembic branch (``issuer/migrations/versions``,
``tsm/migrations/versions``, ``reader/migrations/versions``); this composition root
only creates the engine and runs every branch to its head. SQLite in the data directory is
the embedded default; ``MCRED_DATABASE_URL`` selects PostgreSQL (or any SQLAlchemy URL).

A migration is all or nothing, and one process at a time runs it. PostgreSQL runs DDL in
its transaction (Alembic's default there), under an advisory lock held to its end. On
SQLite, Python's sqlite3 driver (in its legacy transaction control, the default up to
Python 3.15) opens no transaction before DDL, so each CREATE TABLE committed on its own
and a process killed part-way left a half-built schema that every later command tripped
over; :func:`sqlite_schema_transaction` takes BEGIN over for the migration's connection
only (BEGIN IMMEDIATE: the write lock first, so a second process waits for the first and
then finds the schema built). Every other connection keeps the driver's behaviour. A
schema already up to date is found without any lock (:func:`migrate`). A database an
older version left half-built is named as such, with how to recover (:class:`SchemaError`).
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url as sqlalchemy_url
from sqlalchemy.orm import Session, sessionmaker

import issuer
import reader
import tsm


def database_url(home: Path) -> str:
    """``$MCRED_DATABASE_URL`` if set, else SQLite file ``<home>/mcred.sqlite3``."""
    url = os.environ.get("MCRED_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{Path(home) / 'mcred.sqlite3'}"


#: A pooled connection idle longer than this is pinged before it is handed out again.
PING_AFTER_IDLE_S = 1.0


def ping_when_idle(engine: Engine, after_s: float | None = None) -> None:
    """Pessimistic disconnect handling for connections that sat idle in ``engine``'s pool
    for more than ``after_s`` seconds: one ping (the dialect's, as ``pool_pre_ping`` sends
    it) before such a connection is handed out, and a connection the server dropped
    meanwhile (a restart, a failover, an idle timeout of the server, a proxy or a
    firewall) is replaced before the caller sees it.

    A connection returned less than ``after_s`` ago is handed out without a ping:
    ``pool_pre_ping`` pinged at every checkout, one round trip each, and one provisioning
    run checks connections out dozens of times, milliseconds apart. Should the server
    drop one within that second, its first statement fails and SQLAlchemy invalidates it
    and every older pooled connection (optimistic handling): the caller gets the error,
    as it does anyway for a statement that was in flight when the server went away, and a
    TSM job stays resumable at the step it was on (specs/tsm.md). ``after_s`` defaults to
    :data:`PING_AFTER_IDLE_S`."""
    limit = PING_AFTER_IDLE_S if after_s is None else after_s
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_conn, record) -> None:
        record.info["mcred_idle_since"] = None  # just connected: nothing to ping

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_conn, record) -> None:
        record.info["mcred_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
        since = record.info.get("mcred_idle_since")
        if since is None or time.monotonic() - since <= limit:
            return
        try:
            alive = dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            if not dialect.is_disconnect(err, dbapi_conn, None):
                raise
            alive = False
        if not alive:
            # the pool replaces this connection and every older one, then checks out anew
            raise exc.InvalidatePoolError()


def _create_private_sqlite_file(url: str) -> None:
    """Create the SQLite database file of ``url`` empty and 0600, if it is a file that does
    not exist yet: SQLite would create it 0644 (``SQLITE_DEFAULT_FILE_PERMISSIONS``) and
    its WAL and shared-memory files with the database's mode, world-readable, holding every
    holder's personal data, sealed secrets and token hashes. An empty file is a valid empty
    database. An existing file keeps its mode (`mcred doctor` reports one others may read)."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:  # there already; or no such directory, no permission: SQLite says so itself
        pass


#: rows ANALYZE reads per index when :func:`optimize_sqlite` runs it (SQLite's
#: ``analysis_limit``): statistics good enough to choose between indexes, in milliseconds
#: on a table of millions of rows
SQLITE_ANALYSIS_LIMIT = 400


def optimize_sqlite(dbapi_conn) -> None:  # noqa: ANN001 - a sqlite3.Connection
    """Gather the planner's statistics as SQLite asks of an application on closing a
    connection: ``PRAGMA optimize`` analyses the tables this connection used that were
    never analysed or have grown or shrunk much since. SQLite has no autovacuum to do it, and
    without statistics its plans follow heuristics that one new index can turn (the audit
    index once made three unrelated queries scan). Only counts are kept (sqlite_stat1): a
    SQLite built with STAT4 also stores sampled index keys (sqlite_stat4), among them card
    numbers that erasing a holder must not leave behind, so those samples are dropped. Best
    effort: a database that is busy, read-only or gone keeps the statistics it had."""
    import sqlite3

    try:
        dbapi_conn.execute(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
        dbapi_conn.execute("PRAGMA optimize")
        if dbapi_conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat4'").fetchone():
            dbapi_conn.execute("DELETE FROM sqlite_stat4")
            dbapi_conn.commit()
    except sqlite3.Error:
        pass


def make_engine(url: str, **kwargs) -> Engine:
    """An engine with the settings each backend needs for concurrent, safe use: on
    SQLite WAL and a busy timeout, and the planner's statistics gathered as each connection
    closes (:func:`optimize_sqlite`); on a server a ping for a connection that sat idle
    (:func:`ping_when_idle`)."""
    if url.startswith("sqlite"):
        _create_private_sqlite_file(url)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL never corrupts the database; a power cut may lose the last
            # commits, which the TSM's resumable jobs re-do (specs/tsm.md).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "close")
        def _sqlite_statistics(dbapi_conn, _record) -> None:
            optimize_sqlite(dbapi_conn)

        return engine
    engine = create_engine(url, **kwargs)
    ping_when_idle(engine)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", utc_session)
    return engine


def utc_session(dbapi_conn, _record=None) -> None:  # noqa: ANN001 - a DBAPI connection
    """Run a PostgreSQL session in UTC, whatever the server's, the role's or the client's
    (``PGTZ``) time zone. Every timestamp column is ``timestamptz`` read back aware in UTC
    (:class:`dbtypes.UtcDateTime`), so the zone changes no value; but psycopg hands a
    ``timestamptz`` back in the session's zone and cannot build a year past 9999, and a CA's
    final CRL is stored with nextUpdate 9999-12-31T23:59:59Z (``protocols.crl.NO_NEXT_UPDATE``),
    which is in the year 10000 east of UTC (``DataError: timestamp too large``)."""
    with dbapi_conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    dbapi_conn.commit()


def _alembic_config(engine: Engine) -> Config:
    cfg = _base_config()
    cfg.attributes["engine"] = engine
    return cfg


def _base_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    locations = [
        str(Path(issuer.__file__).parent / "migrations" / "versions"),
        str(Path(tsm.__file__).parent / "migrations" / "versions"),
        str(Path(reader.__file__).parent / "migrations" / "versions"),
    ]
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    """The revisions of every party, read once per process: each ``ScriptDirectory``
    made anew loads every revision file again (about 40), which cost each
    :func:`migrate` call, even one that finds nothing to do, 10-15 ms."""
    return ScriptDirectory.from_config(_base_config())


class DatabaseUnavailable(RuntimeError):
    """The database could not be opened at all (its URL names nothing SQLAlchemy can open, or
    no server answers there, or it refuses the login): said with the URL, its password
    hidden, and what to check; nothing was done. ``error``: SQLAlchemy's own, for an answer
    that must not name the URL (a service's readiness probe)."""

    def __init__(self, message: str, error: Exception) -> None:
        super().__init__(message)
        self.error = error


def open_engine(url: str, target: str = "heads") -> Engine:
    """:func:`make_engine` and :func:`migrate`, with a database that cannot be opened said as
    :class:`DatabaseUnavailable`, where it was a SQLAlchemy traceback on every command."""
    from_env = os.environ.get("MCRED_DATABASE_URL") == url
    try:
        shown = sqlalchemy_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        shown = "(not a database URL)"
    where = f"MCRED_DATABASE_URL={shown}" if from_env else shown
    try:
        engine = make_engine(url)
    except exc.ArgumentError as err:  # NoSuchModuleError too: an unknown dialect or driver
        raise DatabaseUnavailable(f"{where}: not a database URL this installation can open ({err}); "
                                  "e.g. postgresql+psycopg://USER@HOST:5432/DB, or unset it for SQLite", err) from None
    try:
        migrate(engine)
    except (exc.OperationalError, exc.InterfaceError) as err:
        engine.dispose()
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise DatabaseUnavailable(f"the database at {where} cannot be opened: {reason} (is it running, "
                                  "and is the URL right? `mcred doctor` checks it)", err) from None
    return engine


class SchemaError(RuntimeError):
    """A database whose schema cannot be brought to the code's: what is wrong
    (``problem``) and how to recover (``recovery``); nothing in the database was changed."""

    def __init__(self, problem: str, recovery: str) -> None:
        super().__init__(f"{problem} {recovery}")
        self.problem = problem
        self.recovery = recovery


@contextmanager
def sqlite_schema_transaction(conn: Connection) -> Iterator[Connection]:
    """One SQLite transaction around everything done on ``conn`` (a fresh connection):
    committed if the block ends, rolled back if it raises, and never half there if the
    process dies (SQLite's journal undoes an uncommitted transaction at the next open).

    The sqlite3 driver's legacy transaction control opens no transaction before DDL, so
    ``CREATE TABLE`` commits at once whatever SQLAlchemy or Alembic think; SQLAlchemy's
    recipe is to take BEGIN over (driver autocommit, our own BEGIN), and its AUTOCOMMIT
    isolation level sets exactly that driver mode, for this connection only (the pool puts
    the default back when it is returned). COMMIT and ROLLBACK still go through the driver,
    which issues them when SQLite says a transaction is open. ``BEGIN IMMEDIATE`` takes the
    write lock before the first read: a second process waits here (the busy timeout of
    :func:`make_engine`) until the first has committed, then reads what it wrote.

    Inside a transaction SQLite ignores ``PRAGMA foreign_keys``: a future migration that
    rebuilds a table other tables reference (Alembic batch "move and copy") runs with the
    engine's ``foreign_keys=ON``, so it sets ``PRAGMA defer_foreign_keys=ON`` and minds that
    the DROP of the old table fires ON DELETE actions."""
    conn.execution_options(isolation_level="AUTOCOMMIT")
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


#: First key of the migrations' ``pg_advisory_xact_lock(key, hashtext(schema))`` (any fixed
#: 32-bit value): one migration at a time per schema, not per database.
MIGRATION_LOCK_KEY = 0x6D634D49


def _at_target(engine: Engine, target: str) -> bool:
    """Whether the database already holds every revision ``target`` names: read without
    a lock or a write, so an installation in use is not held up by each process start."""
    wanted = {s.revision for s in _scripts().get_revisions(target) if s is not None}
    return bool(wanted) and wanted <= _applied_heads(engine)


def _upgrade(cfg: Config, target: str) -> None:
    """``alembic upgrade target`` (``alembic.command.upgrade``, online mode) with the
    process's :func:`_scripts` instead of a script directory read anew."""
    script = _scripts()

    def upgrade(rev, _context):  # noqa: ANN001, ANN202 - alembic's callback
        return script._upgrade_revs(target, rev)

    with EnvironmentContext(cfg, script, fn=upgrade, as_sql=False, starting_rev=None, destination_rev=target):
        script.run_env()


def migrate(engine: Engine, target: str = "heads") -> None:
    """Bring every party's schema to its newest revision (``alembic upgrade heads``), or
    one party's (``target="reader@head"``: a stand-alone reader's database): in one
    transaction, by one process at a time (the others wait and find it done); nothing is
    done, and no lock taken, when the database is there already. Raises
    :class:`SchemaError` for a SQLite database an interrupted older version half-built."""
    if _at_target(engine, target):
        return
    try:
        _upgrade(_alembic_config(engine), target)
    except exc.OperationalError as err:
        problem = _half_built(engine, err) if engine.dialect.name == "sqlite" else None
        if problem is None:
            raise
        raise problem from err


_ALREADY = re.compile(r"\b(table|index) \"?([^\s\"]+)\"? already exists|duplicate column name: (\S+)")
_ADD_COLUMN = re.compile(r"ALTER TABLE \"?([^\s\"]+)\"? ADD (?:COLUMN )?\"?([^\s\"]+)", re.IGNORECASE)


def _failed_revision(err: BaseException) -> tuple[str, str] | None:
    """The revision and file of the migration whose ``upgrade()`` raised ``err``: the
    innermost frame of a revision module (one with ``revision`` and ``down_revision``)."""
    found = None
    tb = err.__traceback__
    while tb is not None:
        g = tb.tb_frame.f_globals
        if isinstance(g.get("revision"), str) and "down_revision" in g:
            found = (g["revision"], tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    return found


def _half_built(engine: Engine, err: exc.OperationalError) -> SchemaError | None:
    """A :class:`SchemaError` when a migration failed on SQLite because what it creates is
    already there: a database an older version left behind when it was killed part-way
    through a migration (it committed each DDL statement on its own). None for any other
    failure. Called after the failed run was rolled back; it only reads."""
    import shlex

    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect, literal_column, select, table

    m = _ALREADY.search(str(err.orig))
    if m is None:
        return None
    if m.group(3):
        col = _ADD_COLUMN.search(err.statement or "")
        thing = f"column {col.group(1)}.{col.group(2)}" if col else f"column {m.group(3)}"
    else:
        thing = f"{m.group(1)} {m.group(2)}"
    failed = _failed_revision(err)
    if failed:
        script = _scripts().get_revision(failed[0])
        doc = " ".join((script.doc or "").split()).split(": ")[0] if script is not None else ""  # its title
        doc = doc if len(doc) <= 80 else doc[:77].rsplit(" ", 1)[0] + " ..."
        which = f"migration {failed[0]}" + (f" ({doc})" if doc else "")
        made = f"what its file {failed[1]} creates"
    else:
        which, made = "a migration", "what that migration creates"
    with engine.connect() as conn:
        names = [n for n in inspect(conn).get_table_names()
                 if n != "alembic_version" and not n.startswith("sqlite_")]
        with_rows = [n for n in names
                     if conn.execute(select(literal_column("1")).select_from(table(n)).limit(1)).first()]
        recorded = sorted(MigrationContext.configure(conn).get_current_heads())
    path = os.path.abspath(engine.url.database) if engine.url.database else "(in memory)"
    problem = (f"the database {path} is half-built: {thing} already exists, yet it records "
               f"{_revisions(recorded)}: {which} was cut "
               f"short by an earlier run (an older version committed each SQLite schema statement on its "
               f"own, and a process killed part-way left some of them behind). Nothing was changed.")
    if not with_rows:
        aside = os.path.join(os.path.dirname(path), "half-built")
        recovery = (f"It holds no data (its {len(names)} table(s) are empty): move it aside together "
                    f"with its -wal and -shm files (mkdir -m 700 {shlex.quote(aside)} && mv {shlex.quote(path)}* "
                    f"{shlex.quote(aside)}/) and run the command again, which creates it anew.")
    else:
        shown = ", ".join(with_rows[:5]) + (", ..." if len(with_rows) > 5 else "")
        # the copy holds every holder's personal data: the owner's alone, whatever the umask
        recovery = (f"It holds data (rows in {shown}): do not remove it. Copy it first, readable by you "
                    f"alone: (umask 077 && sqlite3 {shlex.quote(path)} "
                    f"\".backup {shlex.quote(path + '.bak')}\"); then either restore a "
                    f"backup from before the upgrade, or drop with the sqlite3 shell {made} that is there "
                    f"({thing} at least) and run the command again: the migration then runs whole.")
    return SchemaError(problem, recovery)


def _revisions(heads: list[str]) -> str:
    if not heads:
        return "no revision"
    return f"revision{'s' if len(heads) > 1 else ''} {', '.join(heads)}"


def _applied_heads(engine: Engine) -> set[str]:
    """The revision heads the database's ``alembic_version`` holds."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def schema_status(engine: Engine) -> tuple[set[str], set[str]]:
    """``(applied, newest)`` revision heads: the database's and the code's. Equal when the
    schema is current (``mcred serve``'s readiness check)."""
    newest = set(_scripts().get_heads())
    return _applied_heads(engine), newest


def branch_status(engine: Engine, branch: str) -> tuple[set[str], str]:
    """``(applied, newest)``: the database's revision heads and the code's head of one
    party's branch (``"reader"``); current when ``newest in applied``."""
    (head,) = _scripts().get_revisions(f"{branch}@head")
    return _applied_heads(engine), head.revision


def open_database(home: Path, url: str | None = None) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for ``home``, migrated to the newest schema."""
    engine = make_engine(url or database_url(home))
    migrate(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)


#: pg_advisory_lock key of the issuers' one-time setup (any fixed 64-bit value).
_ADVISORY_KEY = 0x6D63726564_5345


@contextmanager
def setup_lock(engine: Engine, home: Path) -> Iterator[None]:
    """Held by one process of an installation at a time: a PostgreSQL advisory lock, or on
    SQLite an exclusive lock on a file in the data directory. For first-use setup (roots,
    the TSA, the TSM master key) that two worker processes must not both do."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                conn.commit()
        return
    import fcntl

    fd = os.open(Path(home) / ".issuer-setup.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


#: First key of :func:`try_lock`'s ``pg_try_advisory_lock(key, hashtext(name and schema))``
#: (any fixed 32-bit value, not the migrations' :data:`MIGRATION_LOCK_KEY`)
TRY_LOCK_KEY = 0x6D635452


@contextmanager
def try_lock(engine: Engine, home: Path, name: str) -> Iterator[bool]:
    """Held by at most one process of an installation at a time, without waiting: yields
    True to the one that took it (held until the block ends), False at once to any other
    while it is held, so that the others skip the work rather than queue for it (the
    scheduled housekeeping of ``mcred serve --workers N``; :func:`setup_lock` waits instead).
    PostgreSQL: a session advisory lock on a connection of its own, keyed by ``name`` and
    the schema (so that installations in other schemas of one database do not meet); the
    server lets it go if that connection is lost. SQLite: ``flock`` on
    ``<home>/.<name>.lock`` (an exclusive lock per open file, so two engines of one process
    exclude each other as two processes do). ``name``: letters, digits, ``-`` and ``_``."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError(f"lock name {name!r}: 1 to 64 of A-Z a-z 0-9 - _")
    if engine.dialect.name == "postgresql":
        key = "hashtext(:n || '/' || coalesce(current_schema(), ''))"
        with engine.connect() as conn:
            got = bool(conn.execute(text(f"SELECT pg_try_advisory_lock(:k, {key})"),
                                    {"k": TRY_LOCK_KEY, "n": name}).scalar())
            conn.commit()  # a session lock outlives the transaction; nothing else is held
            try:
                yield got
            finally:
                if got:
                    conn.execute(text(f"SELECT pg_advisory_unlock(:k, {key})"), {"k": TRY_LOCK_KEY, "n": name})
                    conn.commit()
        return
    import fcntl

    fd = os.open(Path(home) / f".{name}.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
