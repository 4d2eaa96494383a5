"""The suite's shortcut (tests/conftest.py): a new SQLite database is copied from one the
same code migrated, never different from migrating it the real way, and never used where a
test needs the real way."""

import sqlite3

import pytest
import sqlalchemy as sa

import mcred.db
from mcred.db import make_engine, schema_status


def _dump(path) -> list:  # noqa: ANN001 - a Path
    """Every schema object and every table's rows, in a fixed order."""
    with sqlite3.connect(path) as conn:
        out = []
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master ORDER BY type, name"):
            out.append((name, sql))
            if sql and sql.startswith("CREATE TABLE"):
                out.append(sorted(map(repr, conn.execute(f'SELECT * FROM "{name}"'))))
        return out


def _copies() -> int:
    return mcred.db.migrate.copies


@pytest.fixture(autouse=True)
def _shortcut_installed(monkeypatch) -> None:
    if not hasattr(mcred.db.migrate, "real"):
        pytest.fail("tests/conftest.py did not install the migrated-copy shortcut")
    monkeypatch.delenv("MCRED_TEST_REAL_MIGRATIONS", raising=False)


@pytest.mark.parametrize("target", ["heads", "reader@head"])
def test_a_copied_database_is_the_one_a_real_migration_makes(tmp_path, target) -> None:
    copied, real = tmp_path / "copied.sqlite3", tmp_path / "real.sqlite3"
    for path, migrate in ((copied, mcred.db.migrate), (real, mcred.db.migrate.real)):
        before = _copies()
        engine = make_engine(f"sqlite:///{path}")
        migrate(engine, target)
        if target == "heads":
            applied, newest = schema_status(engine)
            assert applied == newest
        engine.dispose()
        assert _copies() == before + (path == copied)
    assert _dump(copied) == _dump(real)
    assert (copied.stat().st_mode & 0o777) == 0o600  # the file make_engine made keeps its mode


def test_a_database_with_a_table_is_migrated_the_real_way(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE someone_elses (id INTEGER)")
    before = _copies()
    mcred.db.migrate(engine)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert _copies() == before
    assert "someone_elses" in tables and "alembic_version" in tables  # migrated, not overwritten


@pytest.mark.real_migrations
def test_the_marker_asks_for_the_real_way(tmp_path) -> None:
    before = _copies()
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    mcred.db.migrate(engine)
    applied, newest = schema_status(engine)
    engine.dispose()
    assert applied == newest and _copies() == before
