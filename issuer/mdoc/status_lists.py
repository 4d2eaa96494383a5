"""Status lists of the issuer: one per issuance period, random never-reused indices.

draft-ietf-oauth-status-list (§4, §12.5) and ISO/IEC 18013-5 2nd ed. 12.3.6: each mdoc's
MSO carries ``status = {"status_list": {"idx": uint, "uri": tstr}}``; ``uri`` is where the
issuer publishes the list (``<public URL>/status/<list id>``).

Allocation (see ``specs/status-list.md``). Inside the caller's transaction:

1. the open list of the period is locked (a no-op ``UPDATE``, which on SQLite takes the
   database write lock at once), with the lists of the credentials the caller revokes in
   the same transaction, in id order as a revocation takes them, or a new list is created
   when none has room;
2. an index is drawn uniformly among the free ones with
   :func:`protocols.status.allocation.allocate_index` (the registry answers "is it used?");
3. the caller's credential row carrying (list, index) is inserted: the unique constraint
   ``uq_credential_status_idx`` is the last word, and a violation aborts the transaction,
   which :func:`issuer.mdoc.txn.run_transaction` runs again.

An index is never freed: a revoked or expired credential keeps its row and its index.
A list is full at ``max_fill`` of its size (the draws stay cheap); the next allocation of
the period opens a new list.

Every change of an mdoc credential's ``status`` goes through :mod:`issuer.revocation`,
which bumps its list's ``version`` in the same transaction; code that changes statuses any
other way must call :func:`mark_changed`. The publisher rebuilds a token only when the
version moved.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from issuer.db import Credential, StatusList, new_id
from issuer.mdoc.errors import StatusAllocationError, UnknownStatusList
from protocols.status.allocation import RandomSource, allocate_index
from protocols.status.bitlist import Status
from protocols.status.bitlist import StatusList as BitList
from protocols.status.errors import StatusListFullError
from protocols.status.identifier_list import IdentifierList

PERIODS = ("day", "week", "month", "year")

#: Credential ``status`` words (issuer/db.py, issuer/revocation.py) -> Status List value.
_STATUS_VALUE = {
    "valid": Status.VALID,
    "hold": Status.SUSPENDED,
    "suspended": Status.SUSPENDED,
    "revoked": Status.INVALID,
    "invalid": Status.INVALID,
}


def status_value(word: str) -> Status:
    """The list value of a credential status; anything unknown fails closed (INVALID)."""
    return _STATUS_VALUE.get(word, Status.INVALID)


@dataclass(frozen=True)
class StatusListPolicy:
    """How lists are cut and published.

    ``bits`` 2 so SUSPENDED (a hold) can be told from INVALID; ``size`` entries per list;
    ``ttl`` seconds a relying party may cache a token (claim 65534, Cache-Control max-age);
    ``lifetime`` seconds from a token's ``iat`` to its ``exp``.
    """

    bits: int = 2
    size: int = 1 << 16
    max_fill: float = 0.75
    period: str = "month"
    ttl: int = 300
    lifetime: int = 86_400

    def __post_init__(self) -> None:
        if self.bits not in (1, 2, 4, 8):
            raise ValueError(f"status list bits must be 1, 2, 4 or 8, got {self.bits!r}")
        if self.bits == 1:
            raise ValueError("1-bit lists cannot say SUSPENDED; mdoc holds need bits >= 2")
        if self.size <= 0 or self.size % (8 // self.bits):
            raise ValueError(f"size {self.size} must be a positive multiple of {8 // self.bits}")
        if not 0 < self.max_fill <= 1:
            raise ValueError(f"max_fill must be in (0, 1], got {self.max_fill!r}")
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {PERIODS}, got {self.period!r}")
        if not 0 < self.ttl <= self.lifetime:
            raise ValueError(f"need 0 < ttl ({self.ttl}) <= lifetime ({self.lifetime})")


def period_of(now: dt.datetime, period: str) -> str:
    """The issuance period ``now`` falls in: ``2026-11-23``, ``2026-W47``, ``2026-11``, ``2026``."""
    d = now.astimezone(dt.UTC).date()
    if period == "day":
        return d.isoformat()
    if period == "week":
        year, week, _ = d.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{d.year}-{d.month:02d}"
    if period == "year":
        return str(d.year)
    raise ValueError(f"unknown period {period!r}")


class _UsedInList:
    """The used indices of one list, as :func:`allocate_index` asks for them."""

    def __init__(self, session: Session, row: StatusList) -> None:
        self._session = session
        self._row = row

    def __len__(self) -> int:
        return self._row.allocated

    def __contains__(self, index: object) -> bool:
        found = self._session.execute(
            select(Credential.id).where(
                Credential.status_list_id == self._row.id, Credential.status_idx == index
            ).limit(1)
        ).first()
        return found is not None


#: The longest public base URL: a list's URI, ``<url>/status/<32 hex id>``, fits its
#: column (``status_lists.uri``; SQLite would keep a longer one, PostgreSQL refuses it).
PUBLIC_URL_MAX = StatusList.__table__.c.uri.type.length - len("/status/") - 32


class StatusRegistry:
    """Allocates status-list indices and says what a list currently holds."""

    def __init__(
        self,
        public_url: str,
        policy: StatusListPolicy | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        if len(self.public_url) > PUBLIC_URL_MAX:
            raise ValueError(f"public URL of {len(self.public_url)} characters; at most {PUBLIC_URL_MAX} "
                             "(a status list's URI is stored)")
        self.policy = policy or StatusListPolicy()
        self._rng = rng or secrets.SystemRandom()

    def uri_for(self, list_id: str) -> str:
        return f"{self.public_url}/status/{list_id}"

    def identifier_uri_for(self, list_id: str) -> str:
        """Where the Identifier List beside status list ``list_id`` is published."""
        return f"{self.public_url}/identifiers/{list_id}"

    # -- allocation --------------------------------------------------------------------

    def _lock(self, session: Session, list_ids: Iterable[str], held: set[str]) -> None:
        """Lock the lists ``list_ids`` not yet ``held`` (PostgreSQL: the row; SQLite: the
        database, at its first write) in id order, the order of every revocation
        (:func:`issuer.revocation._touch`): a transaction that waits for a list holds none
        of a higher id, so no two wait for each other. A list below one already held (the
        open list filled by another allocator before it was locked here) is taken only if
        no one holds it (NOWAIT): if someone does, the transaction fails with
        lock_not_available and :func:`~issuer.mdoc.txn.run_transaction` runs it again."""
        top = max(held, default="")
        for list_id in sorted(set(list_ids) - held):
            if list_id < top:
                session.execute(select(StatusList.id).where(StatusList.id == list_id)
                                .with_for_update(nowait=True))
            # a no-op UPDATE: the write lock now (SQLite's lazy BEGIN only locks at the
            # first write); from here on, "is this index used?" sees every committed
            # allocation and no one else allocates here
            session.execute(
                update(StatusList).where(StatusList.id == list_id)
                .values(allocated=StatusList.allocated)
                .execution_options(synchronize_session=False)
            )
            held.add(list_id)

    def _open_list(self, session: Session, period: str, now: dt.datetime,
                   touching: Iterable[str] = (), held: set[str] | None = None,
                   iaca: str | None = None) -> StatusList:
        """The open list of ``period`` for mdocs under IACA ``iaca``, locked with the lists
        ``touching`` (in id order: :meth:`_lock`), or a new one when none has room. A new
        list is no lock-order matter: no other transaction sees it before this one commits."""
        p = self.policy
        held = set() if held is None else held
        while True:
            list_id = session.scalar(
                select(StatusList.id)
                .where(
                    StatusList.period == period,
                    StatusList.bits == p.bits,
                    StatusList.size == p.size,
                    StatusList.allocated < p.max_fill * p.size,
                    StatusList.uri.startswith(self.public_url + "/status/"),
                    StatusList.iaca_label.is_(None) if iaca is None else StatusList.iaca_label == iaca,
                )
                .order_by(StatusList.created_at, StatusList.id)
                .limit(1)
            )
            self._lock(session, [*touching, *([list_id] if list_id is not None else [])], held)
            if list_id is None:
                break
            row = session.get(StatusList, list_id, populate_existing=True)
            if row.allocated < p.max_fill * p.size:
                return row
            # filled by another allocator before it was locked here: the next one
        list_id = new_id()
        row = StatusList(
            id=list_id, uri=self.uri_for(list_id), bits=p.bits, size=p.size, allocated=0,
            period=period, version=0, created_at=now, iaca_label=iaca,
        )
        session.add(row)
        session.flush()
        return row

    def allocate(
        self,
        session: Session,
        now: dt.datetime,
        make_row: Callable[[StatusList, int], Credential],
        *,
        touching: Iterable[str] = (),
        iaca: str | None = None,
    ) -> Credential:
        """Allocate an index in the open list of ``now``'s period for mdocs under IACA
        ``iaca`` (the label of the IACA that issued the signing DS: a list holds one IACA
        generation's mdocs, and is signed under it); insert ``make_row(list, idx)``.

        ``make_row`` builds the credential (it may sign an MSO naming ``list.uri`` and
        ``idx``); its ``status_list_id`` / ``status_idx`` are set here. ``touching``: the
        other lists the caller changes in this transaction (the ones of the credentials it
        revokes), locked here with the open one in id order, so that the caller bumps them
        without waiting. Must run inside a transaction that
        :func:`~issuer.mdoc.txn.run_transaction` retries.
        """
        period = period_of(now, self.policy.period)
        touching = {i for i in touching if i}
        held: set[str] = set()
        for _ in range(4):
            row = self._open_list(session, period, now, touching, held, iaca)
            try:
                idx = allocate_index(row.size, _UsedInList(session, row), self._rng,
                                     max_fill=self.policy.max_fill)
            except StatusListFullError:
                row.allocated = row.size  # close it: the next draw opens a new list
                session.flush()
                continue
            credential = make_row(row, idx)
            credential.status_list_id = row.id
            credential.status_idx = idx
            session.add(credential)
            session.flush()  # the unique constraint speaks here
            session.execute(
                update(StatusList)
                .where(StatusList.id == row.id)
                .values(allocated=StatusList.allocated + 1)
                .execution_options(synchronize_session=False)
            )
            session.refresh(row, ["allocated"])
            return credential
        raise StatusAllocationError(f"no status list of period {period} had a free index")

    # -- contents ----------------------------------------------------------------------

    @staticmethod
    def get(session: Session, list_id: str) -> StatusList:
        row = session.get(StatusList, list_id)
        if row is None:
            raise UnknownStatusList(f"no status list {list_id!r}")
        return row

    @staticmethod
    def by_uri(session: Session, uri: str) -> StatusList:
        row = session.scalars(select(StatusList).where(StatusList.uri == uri)).first()
        if row is None:
            raise UnknownStatusList(f"no status list published at {uri!r}")
        return row

    @staticmethod
    def contents(session: Session, row: StatusList) -> BitList:
        """The list as the registry says now: every non-valid mdoc at its index."""
        changes: dict[int, int] = {}
        for idx, word in session.execute(
            select(Credential.status_idx, Credential.status).where(
                Credential.status_list_id == row.id, Credential.status != "valid"
            )
        ):
            changes[idx] = int(status_value(word))
        invalid = [i for i, v in changes.items() if v == Status.INVALID]
        bits = BitList.from_indices(row.size, invalid, Status.INVALID, row.bits)
        others = {i: v for i, v in changes.items() if v != Status.INVALID}
        return bits.updated(others) if others else bits

    @staticmethod
    def identifiers(session: Session, row: StatusList, now: dt.datetime) -> IdentifierList:
        """The Identifier List beside ``row``: the identifier of every mdoc of the list that
        carries one and is not valid (revoked, or on hold: a released hold leaves the list)
        and has not expired (an expired MSO is refused by its validity alone)."""
        found = set()
        for meta, not_after in session.execute(
            select(Credential.meta, Credential.not_after).where(
                Credential.status_list_id == row.id, Credential.status != "valid")
        ):
            ident = (meta or {}).get("identifier")
            if ident and not_after >= now:
                found.add(bytes.fromhex(ident))
        return IdentifierList(frozenset(found))

    @staticmethod
    def counts(session: Session, row: StatusList) -> dict[str, int]:
        """How many credentials of the list are in each status word."""
        return dict(
            session.execute(
                select(Credential.status, func.count())
                .where(Credential.status_list_id == row.id)
                .group_by(Credential.status)
            ).all()
        )


def mark_changed(session: Session, list_ids: Iterable[str]) -> None:
    """Bump the ``version`` of each list (after a bulk status change outside the ORM)."""
    ids = sorted(set(list_ids))
    if ids:
        session.connection().execute(
            update(StatusList.__table__)
            .where(StatusList.__table__.c.id.in_(ids))
            .values(version=StatusList.__table__.c.version + 1)
        )
