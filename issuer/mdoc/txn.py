"""Run a unit of work in its own transaction, retrying on the conflicts concurrency causes.

Both backends are used by many writers at once (API processes, CLI, drills). A unit of work
that loses a race does not half-write: its transaction rolls back and it runs again from
the start, seeing what the winner committed. Retried: unique-constraint violations (two
allocators drew the same status index, two retries of one job), PostgreSQL deadlocks and
serialisation failures, and SQLite's "database is locked".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

_PG_RETRY_CODES = {"40001", "40P01", "55P03"}  # serialization_failure, deadlock, lock_not_available


def is_retryable(exc: BaseException) -> bool:
    """True for the errors that mean "another writer won, run again"."""
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if code in _PG_RETRY_CODES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(orig):
            return True
    return False


def run_transaction(
    sessions: sessionmaker[Session],
    work: Callable[[Session], T],
    *,
    attempts: int = 12,
) -> T:
    """``work(session)`` inside one transaction, committed; re-run on a retryable conflict.

    The last conflict is raised again when every attempt lost.
    """
    for attempt in range(attempts):
        session = sessions()
        try:
            with session.begin():
                result = work(session)
            return result
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts - 1:
                raise
        finally:
            session.close()
        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - jitter only
    raise AssertionError("unreachable")
