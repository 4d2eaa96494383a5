"""The one relational database of an installation: engine, sessions, migrations.

Each party owns its tables (``issuer.db.IssuerBase``, ``tsm.db.TsmBase``) and its Alembic
branch (``issuer/migrations/versions``, ``tsm/migrations/versions``); this composition root
only creates the engine and runs every branch to its head. SQLite in the data directory is
the embedded default; ``MCRED_DATABASE_URL`` selects PostgreSQL (or any SQLAlchemy URL).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

import issuer
import tsm


def database_url(home: Path) -> str:
    """``$MCRED_DATABASE_URL`` if set, else SQLite file ``<home>/mcred.sqlite3``."""
    url = os.environ.get("MCRED_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{Path(home) / 'mcred.sqlite3'}"


def make_engine(url: str, **kwargs) -> Engine:
    """An engine with the settings each backend needs for concurrent, safe use."""
    if url.startswith("sqlite"):
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

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    locations = [
        str(Path(issuer.__file__).parent / "migrations" / "versions"),
        str(Path(tsm.__file__).parent / "migrations" / "versions"),
    ]
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring every party's schema to its newest revision (``alembic upgrade heads``)."""
    command.upgrade(_alembic_config(engine), "heads")


def schema_status(engine: Engine) -> tuple[set[str], set[str]]:
    """``(applied, newest)`` revision heads: the database's and the code's. Equal when the
    schema is current (``mcred serve``'s readiness check)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    newest = set(ScriptDirectory.from_config(_alembic_config(engine)).get_heads())
    with engine.connect() as conn:
        applied = set(MigrationContext.configure(conn).get_current_heads())
    return applied, newest


def open_database(home: Path, url: str | None = None) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for ``home``, migrated to the newest schema."""
    engine = make_engine(url or database_url(home))
    migrate(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)
