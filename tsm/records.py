"""The TSM's record of each SE: identity, current keyset, sequence counters, quarantine
(tables ``tsm_se`` and ``tsm_se_counters``). Each function is one short transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tsm.db import SecureElementRow, SequenceCounterRow, utcnow
from tsm.keys import FACTORY_KVN


@dataclass(frozen=True)
class SeRecord:
    se_id: str
    kdd: bytes | None
    cplc: bytes | None
    kvn: int
    master_key_id: str | None
    state: str


def _record(row: SecureElementRow) -> SeRecord:
    return SeRecord(row.se_id, bytes.fromhex(row.kdd) if row.kdd else None,
                    bytes.fromhex(row.cplc) if row.cplc else None, row.kvn,
                    row.master_key_id, row.state)


def load(engine: Engine, se_id: str) -> SeRecord | None:
    with Session(engine) as s:
        row = s.get(SecureElementRow, se_id)
        return _record(row) if row else None


def load_or_create(engine: Engine, se_id: str) -> SeRecord:
    rec = load(engine, se_id)
    if rec is not None:
        return rec
    try:
        with Session(engine) as s, s.begin():
            s.add(SecureElementRow(se_id=se_id, kvn=FACTORY_KVN, state="new"))
    except IntegrityError:
        pass  # created concurrently
    rec = load(engine, se_id)
    assert rec is not None
    return rec


def update_se(engine: Engine, se_id: str, **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(update(SecureElementRow).where(SecureElementRow.se_id == se_id)
                     .values(updated_at=utcnow(), **values))


def last_counter(engine: Engine, se_id: str, kvn: int) -> int | None:
    with Session(engine) as s:
        return s.scalar(select(SequenceCounterRow.counter).where(
            SequenceCounterRow.se_id == se_id, SequenceCounterRow.kvn == kvn))


def store_counter(engine: Engine, se_id: str, kvn: int, counter: int) -> None:
    """Remember ``counter`` as used by an authenticated session (never lowers it)."""
    with Session(engine) as s, s.begin():
        row = s.get(SequenceCounterRow, (se_id, kvn), with_for_update=True)
        if row is None:
            s.add(SequenceCounterRow(se_id=se_id, kvn=kvn, counter=counter))
        elif counter > row.counter:
            row.counter = counter
            row.updated_at = utcnow()


def list_records(engine: Engine) -> list[SeRecord]:
    with Session(engine) as s:
        return [_record(r) for r in s.scalars(select(SecureElementRow).order_by(SecureElementRow.se_id))]
