"""The last run of each of the installation's scheduled housekeeping tasks (Alembic revision
``i0025taskruns`` of branch ``issuer``): when it ran, how long, whether it succeeded, what it
did or why it failed, and how many times it ran and failed. The composition root's
housekeeping (``mcred/housekeeping.py``) writes a row per task it runs, whichever process of
the installation runs it; ``mcred doctor`` and ``GET /metrics`` read them, so that each
reports the installation, not one process. Nothing in the issuer reads or writes them: its
services do their time-driven work when asked, as before, whoever asks.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dbtypes import UtcDateTime
from issuer.db import IssuerBase

#: the longest outcome kept (what a task did, or its error): longer ones are cut
OUTCOME_MAX = 1000


class TaskRun(IssuerBase):
    __tablename__ = "task_runs"
    #: the task's name (``mcred housekeeping tasks``)
    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: runs and failed runs so far (counters: they only grow)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: the last run: when it started, how many seconds it took, whether it succeeded, whether
    #: it changed anything, and what it did (or its error)
    last_started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    last_seconds: Mapped[float] = mapped_column(Float)
    last_ok: Mapped[bool] = mapped_column(Boolean)
    last_changed: Mapped[bool] = mapped_column(Boolean)
    last_outcome: Mapped[str] = mapped_column(String(OUTCOME_MAX))
    #: who ran it last: ``serve <host>:<pid>`` (the service's schedule) or ``cli:<name>``
    last_runner: Mapped[str] = mapped_column(String(200))
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
