"""The last VICAL a reader took, kept in the reader's database (``reader_vicals``, one row
per vicalProvider), so that the memory a VICAL may not go back from
(:func:`reader.trust.check_vical_succession`) outlives the process: a restarted reader, and
each worker of ``mcred reader serve --workers N``, refuses a VICAL older than one any
process on the same database took, and the workers cannot drift to different VICALs for
long (each takes only what goes forward from the row).

The row moves forward only: :meth:`SqlVicalMemory.take` reads it, judges the new VICAL
against it with :func:`~reader.trust.check_vical_succession` (the rule stays there), and
writes with an UPDATE conditional on the digest it read (an INSERT when there was no row);
when another process moved the row in between, the UPDATE changes nothing and the new VICAL
is judged again against the row as it is now. Two writers racing thus keep the newest, and
the one that lost is refused (it would go back). Without a database a reader keeps its
memory in the process only (mcred.present_wiring.ReloadingVerifier).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import BigInteger, Engine, LargeBinary, Text, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from dbtypes import UtcDateTime
from reader.errors import ReaderError
from reader.sessions import ReaderBase
from reader.trust import VicalImport, check_vical_succession

#: the largest vicalIssueID a BIGINT column keeps (a VICAL's is a CBOR uint, up to 2**64 - 1)
ISSUE_ID_MAX = 2**63 - 1


class VicalMemoryError(ReaderError):
    """The reader's database could not be read or written for its VICAL memory, or the
    VICAL cannot be kept there; the message says why."""


class ReaderVicalRow(ReaderBase):
    """The last VICAL a reader of this database took from one vicalProvider."""

    __tablename__ = "reader_vicals"
    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    #: its vicalIssueID (NULL: it had none, and its ``date`` orders it)
    issue_id: Mapped[int | None] = mapped_column(BigInteger)
    date: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    #: SHA-256 of its signed payload (:attr:`reader.trust.VicalImport.digest`)
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    #: when a reader of this database took it
    taken_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


def _as_import(row) -> VicalImport:  # noqa: ANN001 - a row of reader_vicals
    return VicalImport(row.provider, row.date, row.issue_id, 0, (), row.digest)


class SqlVicalMemory:
    """The VICALs taken by every reader on ``engine`` (``reader_vicals``)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.engine = engine
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def held(self, provider: str) -> VicalImport | None:
        """The last VICAL a reader of this database took from ``provider`` (None: none yet).
        Raises :class:`VicalMemoryError` when the database cannot be read."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(ReaderVicalRow.__table__)
                                   .where(ReaderVicalRow.provider == provider)).first()
        except SQLAlchemyError as exc:
            raise VicalMemoryError(f"the reader's VICAL memory cannot be read: {type(exc).__name__}: {exc}") from None
        return None if row is None else _as_import(row)

    def taken_at(self, provider: str) -> dt.datetime | None:
        """When the VICAL held for ``provider`` was taken (None: none is)."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(select(ReaderVicalRow.taken_at)
                                    .where(ReaderVicalRow.provider == provider)).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise VicalMemoryError(f"the reader's VICAL memory cannot be read: {type(exc).__name__}: {exc}") from None

    def take(self, vical: VicalImport) -> VicalImport:
        """Record ``vical`` as taken, when it moves forward from the row of its provider,
        and give the VICAL held after (``vical``, or the same VICAL the row already had).
        Raises :class:`reader.trust.TrustError` when it goes back from the row (another
        process took a later one: the row stays), :class:`VicalMemoryError` when the
        database cannot be written or cannot keep its issue ID."""
        if vical.issue_id is not None and not 0 <= vical.issue_id <= ISSUE_ID_MAX:
            raise VicalMemoryError(f"VICAL {vical.provider!r} vicalIssueID {vical.issue_id} is beyond what the "
                                   f"reader's database keeps (at most {ISSUE_ID_MAX})")
        table = ReaderVicalRow.__table__
        values = {"issue_id": vical.issue_id, "date": vical.date, "digest": vical.digest}
        try:
            for _ in range(16):  # each round another process moved the row forward: bounded
                held = self.held(vical.provider)
                check_vical_succession(held, vical)  # TrustError: it goes back from the row
                if held is not None and held.digest == vical.digest:
                    return held
                if held is None:
                    try:
                        with self.engine.begin() as conn:
                            conn.execute(insert(table).values(provider=vical.provider, taken_at=self._clock(),
                                                              **values))
                    except IntegrityError:
                        continue  # another process inserted it first: judged against its row
                    return vical
                with self.engine.begin() as conn:  # only from the row read: never over a newer one
                    moved = conn.execute(update(table).where(table.c.provider == vical.provider,
                                                             table.c.digest == held.digest)
                                         .values(taken_at=self._clock(), **values)).rowcount
                if moved == 1:
                    return vical
        except SQLAlchemyError as exc:
            raise VicalMemoryError(f"the reader's VICAL memory cannot be written: {type(exc).__name__}: {exc}") from None
        raise VicalMemoryError(f"VICAL {vical.provider!r}: the reader's VICAL memory kept moving under this "
                               "reader; not taken")
