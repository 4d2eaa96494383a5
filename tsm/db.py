"""The TSM's own tables (Alembic branch ``tsm`` in ``tsm/migrations/versions``)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class TsmBase(DeclarativeBase):
    pass
