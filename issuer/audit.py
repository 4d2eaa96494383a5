"""The issuer's audit trail, read back (``mcred audit``, ``GET /audit``): who did what to
which credential, phone, holder or workflow, newest first. Records are written where the
acts happen (issuance, revocation, handover workflows, holders); none holds a secret."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, func, literal, select, union_all
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, Phone


def _in_family(column, family: str, sep: str):  # noqa: ANN001, ANN202 - a column and its clause
    """``column`` is ``family`` or starts with ``family`` and ``sep``, as one range of an
    index on a column compared code point by code point (``issuer.db._bytewise``): from
    ``family`` up to ``family`` and the character after ``sep``, less what lies between
    without being either (``family`` and a character before ``sep``: ``credential-x``)."""
    return ((column >= family) & (column < family + chr(ord(sep) + 1))
            & ((column == family) | (column >= family + sep)))


#: More values than this in a family: on SQLite their events are read off one range of the
#: index rather than as one newest-first walk of it each (a compound SELECT of that many legs)
MAX_LEGS = 64


def _family(s: Session, column, family: str, sep: str) -> list[str]:  # noqa: ANN001 - a column
    """The values of ``column`` recorded that are ``family`` or start with ``family`` and
    ``sep``, each found as the least one after the last on the column's index (a loose
    index scan: a probe per value, however many events each has)."""
    end = family + chr(ord(sep) + 1)
    found = select(func.min(column).label("value")).where(column >= family, column < end) \
        .cte("found", recursive=True)
    after = select(func.min(column)).where(column > found.c.value, column < end).scalar_subquery()
    found = found.union_all(select(after).where(found.c.value.is_not(None)))
    values = s.scalars(select(found.c.value).where(found.c.value.is_not(None)))
    return [v for v in values if v == family or v.startswith(family + sep)]


def events(sessions: sessionmaker[Session], *, subject: str | None = None, action: str | None = None,
           actor: str | None = None, since: dt.datetime | None = None, limit: int = 100,
           offset: int = 0) -> list[dict[str, Any]]:
    """At most ``limit`` events, newest first: of ``subject`` (a credential, phone, holder or
    workflow id; a phone's events include those of the credentials it carries, a holder's
    those of their phones and credentials: a revocation or an issuance is recorded on the
    credential), whose action is ``action`` or starts with it followed by a dot
    (``credential`` gives ``credential.revoke``, ``credential.hold``, ...), by ``actor`` or
    one under it followed by a colon (``cli`` gives every ``cli:<name>``, ``token:<id>`` that
    token's), at or after ``since``; the ``offset`` newest of them skipped (the next page)."""
    newest = AuditEvent.id.desc()
    conditions = []
    if subject is not None:
        # one set of subjects, each looked up on the subject index; as three ORed conditions
        # PostgreSQL walked back through the whole audit by id, testing each event
        # (at 105,000 events, 174 ms for a holder with five)
        subjects = union_all(
            select(literal(subject, String).label("id")),
            select(Credential.id).where((Credential.phone_id == subject) | (Credential.holder_id == subject)),
            select(Phone.id).where(Phone.holder_id == subject))
        conditions.append(AuditEvent.subject.in_(select(subjects.subquery().c.id)))
    if since is not None:
        conditions.append(AuditEvent.at >= since)
    q = select(AuditEvent).order_by(newest)
    with sessions() as s:
        # LIKE could use no index (SQLite's ignores case; PostgreSQL's only in the "C"
        # collation): a rare action or actor walked back through the whole audit (at
        # 105,000 events, 15-30 ms). A range of ix_issuer_audit_action (_actor) instead;
        # PostgreSQL's planner weighs it against the walk from its statistics. SQLite has
        # none (none is gathered) and took the range for a common family too, sorting every
        # event of it (60 ms for jpki): there each value's newest events off the index,
        # merged (a statement costs no round trip); of a subject's few events, a filter
        walk: tuple | None = None
        for column, value, sep in ((AuditEvent.action, action, "."), (AuditEvent.actor, actor, ":")):
            if value is None:
                continue
            family = value.rstrip(sep)
            values = ([] if subject is not None or walk is not None or s.get_bind().dialect.name != "sqlite"
                      else _family(s, column, family, sep))
            if values and len(values) <= MAX_LEGS:
                walk = (column, values)
            else:
                conditions.append(_in_family(column, family, sep))
        if walk is not None:
            column, values = walk
            if len(values) == 1:
                conditions.append(column == values[0])
            else:
                legs = [select(AuditEvent.id).where(column == v, *conditions).order_by(newest)
                        .limit(offset + limit).subquery() for v in values]
                merged = union_all(*(select(leg.c.id) for leg in legs)).subquery()
                page = select(merged.c.id).order_by(merged.c.id.desc()).offset(offset).limit(limit)
                q, offset, conditions = q.where(AuditEvent.id.in_(page)), 0, []
        q = q.where(*conditions).offset(offset).limit(limit)
        return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action, "subject": e.subject,
                 "detail": dict(e.detail or {})} for e in s.scalars(q)]
