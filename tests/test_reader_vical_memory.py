"""The reader database's memory of the last VICAL taken (``reader_vicals``,
reader/vical_memory.py): it moves forward only, whoever writes and in whatever order."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa

from mcred.db import make_engine, migrate
from reader.trust import TrustError, VicalImport
from reader.vical_memory import SqlVicalMemory, VicalMemoryError

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def _vical(issue_id: int | None, *, provider: str = "MCRED", content: str = "", hours: int = 0) -> VicalImport:
    return VicalImport(provider, T0 + dt.timedelta(hours=hours), issue_id, 1, (),
                       hashlib.sha256(f"{provider}/{issue_id}/{hours}/{content}".encode()).digest())


@pytest.fixture
def reader_engine(db_url):
    engine = make_engine(db_url)
    migrate(engine, "reader@head")
    yield engine
    engine.dispose()


def test_the_row_moves_forward_only(reader_engine):
    """An older VICAL written after a newer one is refused and the row keeps the newer; the
    same VICAL again is held as it is; another provider has a row of its own; without issue
    IDs the date orders them."""
    memory = SqlVicalMemory(reader_engine)
    assert memory.held("MCRED") is None
    newer, older = _vical(7), _vical(6)
    assert memory.take(newer) == newer
    with pytest.raises(TrustError, match="vicalIssueID 6 goes back from 7"):
        memory.take(older)
    assert memory.held("MCRED") == VicalImport("MCRED", newer.date, 7, 0, (), newer.digest)
    assert memory.take(newer).issue_id == 7  # the same VICAL: held, nothing moves
    with pytest.raises(TrustError, match="content differs"):
        memory.take(_vical(7, content="another"))
    assert memory.take(_vical(3, provider="OTHER")).issue_id == 3
    assert memory.held("MCRED").digest == newer.digest
    dated = _vical(None, provider="DATED", hours=2)
    memory.take(dated)
    with pytest.raises(TrustError, match="date .* goes back"):
        memory.take(_vical(None, provider="DATED", hours=1))
    assert memory.held("DATED").date == dated.date


class _Stale(SqlVicalMemory):
    """A writer that read the row before another process wrote it (its first read is ``stale``)."""

    def __init__(self, engine, stale: VicalImport | None) -> None:  # noqa: ANN001
        super().__init__(engine)
        self._stale, self.reads = stale, 0

    def held(self, provider: str) -> VicalImport | None:
        self.reads += 1
        return self._stale if self.reads == 1 else super().held(provider)


def test_two_writers_racing_keep_the_newest(reader_engine):
    """Two workers that both read the row before either wrote: the later writer's conditional
    INSERT or UPDATE finds the row moved, judges its VICAL against the row as it is, and is
    refused when it would go back; the row keeps the newest."""
    first, second, third = _vical(1), _vical(2), _vical(3)
    # both read "no row": the newer inserts first, the older's INSERT collides and is refused
    SqlVicalMemory(reader_engine).take(second)
    loser = _Stale(reader_engine, None)
    with pytest.raises(TrustError, match="vicalIssueID 1 goes back from 2"):
        loser.take(first)
    assert loser.reads == 2 and SqlVicalMemory(reader_engine).held("MCRED").issue_id == 2
    # both read N=1 (stale for the second writer): N+2 written, then N+1's UPDATE matches no row
    SqlVicalMemory(reader_engine).take(third)
    loser = _Stale(reader_engine, first)
    with pytest.raises(TrustError, match="vicalIssueID 2 goes back from 3"):
        loser.take(second)
    assert loser.reads == 2
    row = SqlVicalMemory(reader_engine).held("MCRED")
    assert (row.issue_id, row.digest) == (3, third.digest)
    # a writer racing forward from a stale row still moves it on, once it judged it again
    fourth = _vical(4)
    assert _Stale(reader_engine, second).take(fourth) == fourth
    assert SqlVicalMemory(reader_engine).held("MCRED").issue_id == 4


def test_a_database_that_cannot_keep_it_says_so(reader_engine):
    """An issue ID beyond BIGINT, or a database without the table: a precise error, no traceback."""
    memory = SqlVicalMemory(reader_engine)
    with pytest.raises(VicalMemoryError, match="beyond what the reader's database keeps"):
        memory.take(_vical(2**64 - 1))
    with reader_engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE reader_vicals"))
    with pytest.raises(VicalMemoryError, match="cannot be read"):
        memory.take(_vical(1))
