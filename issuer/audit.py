"""The issuer's audit trail, read back (``mcred audit``, ``GET /audit``): who did what to
which credential, phone, holder or workflow, newest first. Records are written where the
acts happen (issuance, revocation, handover workflows, holders); none holds a secret."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, func, literal, select, union_all
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, Phone


def _prefixed(column, value: str, sep: str):  # noqa: ANN001, ANN202 - a column and its clause
    """``column`` is ``value`` or starts with ``value`` and ``sep`` (LIKE, escaped)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (column == value) | column.like(escaped + sep + "%", escape="\\")


def _in_family(column, family: str):  # noqa: ANN001, ANN202 - a column and its clause
    """``column`` is ``family`` or starts with ``family.``, as one range of an index on a
    column compared code point by code point (``issuer.db._bytewise``): from ``family`` up
    to ``family/`` ('/' follows '.'), less what lies between without being either
    (``family`` and a character before '.', ``credential-x``)."""
    return (column >= family) & (column < family + "/") & ((column == family) | (column >= family + "."))


#: More actions than this in a family: on SQLite their events are read off one range of
#: the index rather than as one newest-first walk of it each (a compound SELECT of that
#: many legs)
MAX_LEGS = 64


def _family(s: Session, family: str) -> list[str]:
    """The actions recorded that are ``family`` or start with ``family.``, each found as
    the least one after the last on ``ix_issuer_audit_action`` (a loose index scan: a
    probe per action, however many events each has)."""
    action = AuditEvent.action
    found = select(func.min(action).label("action")).where(action >= family, action < family + "/") \
        .cte("found", recursive=True)
    after = select(func.min(action)).where(action > found.c.action, action < family + "/").scalar_subquery()
    found = found.union_all(select(after).where(found.c.action.is_not(None)))
    names = s.scalars(select(found.c.action).where(found.c.action.is_not(None)))
    return [a for a in names if a == family or a.startswith(family + ".")]


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
    if actor is not None:
        conditions.append(_prefixed(AuditEvent.actor, actor.rstrip(":"), ":"))
    if since is not None:
        conditions.append(AuditEvent.at >= since)
    q = select(AuditEvent).order_by(newest)
    with sessions() as s:
        if action is not None:
            family = action.rstrip(".")
            # LIKE could use no index (SQLite's ignores case; PostgreSQL's only in the "C"
            # collation): a rare action walked back through the whole audit (at 105,000
            # events, 15-30 ms). A range of ix_issuer_audit_action instead; PostgreSQL's
            # planner weighs it against the walk from its statistics. SQLite has none (none
            # is gathered) and took the range for a common family too, sorting every event of
            # it (60 ms for jpki): there each action's newest events off the index, merged
            # (a statement costs no round trip); of a subject's few events, a filter
            names = [] if subject is not None or s.get_bind().dialect.name != "sqlite" else _family(s, family)
            if not names or len(names) > MAX_LEGS:
                q = q.where(_in_family(AuditEvent.action, family))
            elif len(names) == 1:
                q = q.where(AuditEvent.action == names[0])
            else:
                legs = [select(AuditEvent.id).where(AuditEvent.action == a, *conditions).order_by(newest)
                        .limit(offset + limit).subquery() for a in names]
                merged = union_all(*(select(leg.c.id) for leg in legs)).subquery()
                page = select(merged.c.id).order_by(merged.c.id.desc()).offset(offset).limit(limit)
                q, offset, conditions = q.where(AuditEvent.id.in_(page)), 0, []
        q = q.where(*conditions).offset(offset).limit(limit)
        return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action, "subject": e.subject,
                 "detail": dict(e.detail or {})} for e in s.scalars(q)]
