"""The TSM audit log: who did what to which SE (specs/tsm.md, "Audit").

A command is recorded by its header (CLA INS P1 P2), the length of its plain data field and
the status word the SE answered, plus a short description; never its data, so neither key
blocks, PINs, passwords nor certificates can reach the log. ``detail`` holds only facts the
TSM chose to put there (AIDs, KVNs, counters, error messages that name no secret).

Records are buffered by :class:`AuditLog` and written in one transaction with the job's
progress (at each step boundary and whenever a run ends, successfully or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, insert, select

from protocols.gp.apdu import CommandApdu
from tsm.db import AuditRow, Bind, DriverStatement, transaction, utcnow

#: Longest ``what`` an audit record keeps (its column's width).
_WHAT = AuditRow.__table__.c.what.type.length

_INSERT = DriverStatement(insert(AuditRow.__table__))


@dataclass
class AuditLog:
    """Buffers audit records of one worker run for one SE."""

    actor: str
    se_id: str
    job_id: str | None = None
    step: str | None = None
    pending: list[dict] = field(default_factory=list)

    def event(self, event: str, what: str | None = None, **detail: object) -> None:
        self.pending.append(dict(
            at=utcnow(), actor=self.actor, se_id=self.se_id, job_id=self.job_id,
            step=self.step, event=event, what=None if what is None else what[:_WHAT],
            cla=None, ins=None, p1=None, p2=None,
            lc=None, sw=None, detail=detail))  # **detail: a new dict per call

    def command(self, cmd: CommandApdu, sw: int | None, what: str, **detail: object) -> None:
        """One command: header, plain data length, status word (None: no answer came)."""
        self.pending.append(dict(
            at=utcnow(), actor=self.actor, se_id=self.se_id, job_id=self.job_id,
            step=self.step, event="apdu", what=what[:_WHAT], cla=cmd.cla, ins=cmd.ins,
            p1=cmd.p1, p2=cmd.p2, lc=len(cmd.data), sw=sw, detail=detail))

    def flush(self, conn) -> None:
        """Write the buffered records on ``conn`` (inside the caller's transaction)."""
        if self.pending:
            _INSERT.executemany(conn, self.pending)
            self.pending = []

    def flush_now(self, bind: Bind) -> None:
        """Write the buffered records in a transaction of their own on ``bind``."""
        if self.pending:
            with transaction(bind) as conn:
                self.flush(conn)


def audit_rows(engine: Engine, se_id: str | None = None) -> list[AuditRow]:
    """The audit records (of one SE, or all) in the order written."""
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        q = select(AuditRow).order_by(AuditRow.id)
        if se_id is not None:
            q = q.where(AuditRow.se_id == se_id)
        return list(s.scalars(q))


def recent(bind: Bind, *, se_id: str | None = None, job_id: str | None = None, event: str | None = None,
           limit: int = 200, offset: int = 0) -> list[dict]:
    """The last ``limit`` audit records matching the filters, in the order written, as plain
    values (``mcred tsm audit``, ``GET /tsm-audit``): when, who, which SE, job and step, the
    event, a command's header, plain data length and status word, the description and the
    detail the TSM recorded (never a command's data). ``offset``: the newest this many skipped,
    so that the next page goes further back."""
    from sqlalchemy.orm import Session

    q = select(AuditRow).order_by(AuditRow.id.desc()).offset(offset).limit(limit)
    for column, value in ((AuditRow.se_id, se_id), (AuditRow.job_id, job_id), (AuditRow.event, event)):
        if value is not None:
            q = q.where(column == value)
    with Session(bind) as s:
        rows = list(s.scalars(q))
    return [{"id": r.id, "at": r.at.isoformat(timespec="seconds"), "actor": r.actor, "phone_id": r.se_id,
             "job": r.job_id, "step": r.step, "event": r.event,
             "command": None if r.ins is None else f"{r.cla:02X}{r.ins:02X}{r.p1:02X}{r.p2:02X}",
             "lc": r.lc, "sw": None if r.sw is None else f"{r.sw:04X}", "what": r.what,
             "detail": dict(r.detail or {})} for r in reversed(rows)]


def last_quarantine_cause(engine: Engine, se_id: str) -> str | None:
    """The event that last quarantined ``se_id``: ``keyset-rollback``, ``counter-regression``,
    or None when the audit holds neither."""
    with engine.connect() as conn:
        return conn.execute(select(AuditRow.event)
                            .where(AuditRow.se_id == se_id,
                                   AuditRow.event.in_(("keyset-rollback", "counter-regression")))
                            .order_by(AuditRow.id.desc()).limit(1)).scalar()

