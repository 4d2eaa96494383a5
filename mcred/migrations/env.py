"""Alembic environment: runs on the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from issuer.db import IssuerBase
from reader.sessions import ReaderBase
from tsm.db import TsmBase

config = context.config
target_metadata = [IssuerBase.metadata, TsmBase.metadata, ReaderBase.metadata]


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
