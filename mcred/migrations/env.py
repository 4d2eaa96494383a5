"""Alembic environment: runs on the engine handed over in ``config.attributes``.

Every revision of the run is applied in one transaction, by one process at a time
(mcred.db's module docstring): on SQLite in :func:`mcred.db.sqlite_schema_transaction`
(the driver would commit each DDL statement on its own; BEGIN IMMEDIATE lets one process
in at a time), on PostgreSQL in Alembic's, under a transaction-scoped advisory lock.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from issuer.db import IssuerBase
from mcred.db import MIGRATION_LOCK_KEY, sqlite_schema_transaction
from reader.sessions import ReaderBase
from tsm.db import TsmBase

config = context.config
target_metadata = [IssuerBase.metadata, TsmBase.metadata, ReaderBase.metadata]


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            with sqlite_schema_transaction(connection):
                # the connection is in a transaction already: Alembic begins and commits none
                context.configure(connection=connection, target_metadata=target_metadata)
                context.run_migrations()
            return
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # released at commit; the heads are read after it, so a second process
                # finds the first one's revisions and has nothing left to do
                connection.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(coalesce(current_schema(), '')))"),
                                   {"k": MIGRATION_LOCK_KEY})
            context.run_migrations()
        connection.commit()


run_migrations_online()
