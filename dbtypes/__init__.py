"""Column types that every party's schema shares, below all of them (like ``hsm/``): the
parties keep their own tables, and no party imports another.

:class:`UtcDateTime` is ``DateTime(timezone=True)`` that stores and returns UTC on every
backend. PostgreSQL keeps the instant of an aware time whatever its offset; SQLite keeps
the wall-clock digits and drops the offset, so ``12:00+09:00`` written there came back as
``12:00`` and was read as UTC, nine hours late. With this type a time is turned into UTC
before it is bound (also in WHERE clauses, which SQLite compares as text), and every value
read comes back aware, in UTC. A naive time is taken as UTC, as the registry has always
read one.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

__all__ = ["UtcDateTime", "as_utc"]


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC time (a naive one is taken as UTC)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=dt.UTC)
    return value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)


class UtcDateTime(TypeDecorator):
    """A timestamp column in UTC (see the module): aware UTC in, aware UTC out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:  # noqa: ANN001
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"a timestamp column takes a datetime, not {type(value).__name__}")
        return as_utc(value)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:  # noqa: ANN001
        return None if value is None else as_utc(value)
