"""The TSM's record of each SE: identity, current keyset, sequence counters, quarantine
(tables ``tsm_se`` and ``tsm_se_counters``). Each function is one short transaction on
``bind`` (an Engine, or the Connection a worker holds for its run: ``tsm.db.Bind``).

Statements are built once (SQLAlchemy Core with bound parameters): building them per call
cost more than running them on SQLite."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from tsm.db import (
    Bind,
    DriverStatement,
    SecureElementRow,
    SequenceCounterRow,
    transaction,
    utcnow,
)
from tsm.keys import FACTORY_KVN

_SE = SecureElementRow.__table__
_COUNTERS = SequenceCounterRow.__table__


@dataclass(frozen=True)
class SeRecord:
    se_id: str
    kdd: bytes | None
    cplc: bytes | None
    kvn: int
    master_key_id: str | None
    state: str


def _record(row) -> SeRecord:
    return SeRecord(row.se_id, bytes.fromhex(row.kdd) if row.kdd else None,
                    bytes.fromhex(row.cplc) if row.cplc else None, row.kvn,
                    row.master_key_id, row.state)


_LOAD = select(_SE.c.se_id, _SE.c.kdd, _SE.c.cplc, _SE.c.kvn, _SE.c.master_key_id,
               _SE.c.state).where(_SE.c.se_id == bindparam("b_se_id"))
_CREATE = insert(_SE)
_UPDATE = DriverStatement(update(_SE).where(_SE.c.se_id == bindparam("b_se_id")))
_LAST_COUNTER = select(_COUNTERS.c.counter).where(
    _COUNTERS.c.se_id == bindparam("b_se_id"), _COUNTERS.c.kvn == bindparam("b_kvn"))


_LOAD_WITH_COUNTERS = DriverStatement(select(
    _SE.c.se_id, _SE.c.kdd, _SE.c.cplc, _SE.c.kvn, _SE.c.master_key_id, _SE.c.state,
    _COUNTERS.c.kvn.label("counter_kvn"), _COUNTERS.c.counter,
).select_from(_SE.outerjoin(_COUNTERS, _COUNTERS.c.se_id == _SE.c.se_id)).where(
    _SE.c.se_id == bindparam("b_se_id")))


def _raise_counter(dialect: str):
    """INSERT .. ON CONFLICT DO UPDATE that only ever raises the counter (one statement),
    for the dialects that have it; None elsewhere."""
    ins = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if ins is None:
        return None
    stmt = ins(_COUNTERS)
    return stmt.on_conflict_do_update(
        index_elements=[_COUNTERS.c.se_id, _COUNTERS.c.kvn],
        set_={"counter": stmt.excluded.counter, "updated_at": stmt.excluded.updated_at},
        where=_COUNTERS.c.counter < stmt.excluded.counter)


_RAISE_COUNTER = {d: DriverStatement(_raise_counter(d)) for d in ("sqlite", "postgresql")}
_CREATE_IF_ABSENT = {d: DriverStatement(ins(_SE).on_conflict_do_nothing(index_elements=[_SE.c.se_id]))
                     for d, ins in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))}


def load(bind: Bind, se_id: str) -> SeRecord | None:
    with transaction(bind) as conn:
        row = conn.execute(_LOAD, {"b_se_id": se_id}).first()
    return _record(row) if row else None


def load_or_create(bind: Bind, se_id: str) -> SeRecord:
    rec = load(bind, se_id)
    if rec is not None:
        return rec
    return _create(bind, se_id)


def _create(bind: Bind, se_id: str) -> SeRecord:
    """Create the record of an SE not seen before and return it as inserted, or, if it
    exists by now (created concurrently), read what the other worker wrote. Where the
    database has ON CONFLICT DO NOTHING no statement fails, so a transaction of the
    caller's that this joins stays usable."""
    now = utcnow()
    values = {"se_id": se_id, "kvn": FACTORY_KVN, "state": "new",
              "created_at": now, "updated_at": now}
    try:
        with transaction(bind) as conn:
            if_absent = _CREATE_IF_ABSENT.get(conn.dialect.name)
            if if_absent is None:
                conn.execute(_CREATE, values)
                inserted = True
            else:
                inserted = if_absent.execute(conn, values) == 1
        if inserted:
            return SeRecord(se_id, None, None, FACTORY_KVN, None, "new")  # as just inserted
    except IntegrityError:
        pass  # created concurrently: read what the other worker wrote
    rec = load(bind, se_id)
    assert rec is not None
    return rec


def load_or_create_with_counters(bind: Bind, se_id: str) -> tuple[SeRecord, dict[int, int]]:
    """:func:`load_or_create` and the SE's sequence counter records by KVN (as
    :func:`last_counter` reads them one by one), in one statement for a known SE; an SE
    the joined read does not find is created at once (no second read)."""
    with transaction(bind) as conn:
        rows = _LOAD_WITH_COUNTERS.rows(conn, {"b_se_id": se_id})
    if not rows:
        return _create(bind, se_id), {}
    counters = {r.counter_kvn: r.counter for r in rows if r.counter_kvn is not None}
    return _record(rows[0]), counters


def update_se(bind: Bind, se_id: str, **values: object) -> None:
    with transaction(bind) as conn:
        _UPDATE.execute(conn, {"b_se_id": se_id, "updated_at": utcnow(), **values})


def reenrol(bind: Bind, se_id: str, *, factory_keys: bool) -> None:
    """An operator's clearing of a quarantine, in one transaction: the SE is active again
    and its counter baseline is forgotten (the next authenticated session sets it again).
    ``factory_keys`` (the SE was quarantined for answering with them): its record goes back
    to the factory keyset, so that the next job keys it again (a card that kept the
    diversified keyset after all answers 6A88 to the factory KVN and the session goes on
    with it, as after a lost PUT KEY answer)."""
    values: dict[str, object] = {"state": "active", "updated_at": utcnow()}
    if factory_keys:
        values["kvn"] = FACTORY_KVN
    with transaction(bind) as conn:
        conn.execute(update(_SE).where(_SE.c.se_id == se_id).values(**values))
        conn.execute(delete(_COUNTERS).where(_COUNTERS.c.se_id == se_id))


def last_counter(bind: Bind, se_id: str, kvn: int) -> int | None:
    with transaction(bind) as conn:
        return conn.execute(_LAST_COUNTER, {"b_se_id": se_id, "b_kvn": kvn}).scalar()


def store_counter(bind: Bind, se_id: str, kvn: int, counter: int) -> None:
    """Remember ``counter`` as used by an authenticated session (never lowers it)."""
    with transaction(bind) as conn:
        upsert = _RAISE_COUNTER.get(conn.dialect.name)
        values = {"se_id": se_id, "kvn": kvn, "counter": counter, "updated_at": utcnow()}
        if upsert is not None:
            upsert.execute(conn, values)
            return
        row = conn.execute(_LAST_COUNTER.with_for_update(),
                           {"b_se_id": se_id, "b_kvn": kvn}).first()
        if row is None:
            conn.execute(insert(_COUNTERS), values)
        elif counter > row.counter:
            conn.execute(update(_COUNTERS).where(_COUNTERS.c.se_id == se_id, _COUNTERS.c.kvn == kvn)
                         .values(counter=counter, updated_at=values["updated_at"]))
