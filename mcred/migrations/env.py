"""Alembic environment: runs on the engine handed over in ``config.attributes``.

Every revision of the run is applied in one transaction (mcred.db's module docstring):
on SQLite in :func:`mcred.db.sqlite_schema_transaction` (the driver would commit each DDL
statement on its own; BEGIN IMMEDIATE lets one process in at a time), elsewhere in
Alembic's.
"""

from __future__ import annotations

from alembic import context

from issuer.db import IssuerBase
from mcred.db import sqlite_schema_transaction
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
            context.run_migrations()
        connection.commit()


run_migrations_online()
