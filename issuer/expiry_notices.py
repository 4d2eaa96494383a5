"""Which certificates' holders get an expiry notice (有効期限通知書): the valid JPKI
certificates whose expiry falls within a number of days from now, or has passed (not yet
renewed), soonest first (specs/jpki-profile.md "Certificate renewal", "Notices").

One filter for the two doors that list them, ``mcred credential list --expiring-within
DAYS`` and ``GET /credentials?expiring_within=DAYS``, so that both mean the same; read off
``ix_credential_expiry`` (kind, not_after of the valid credentials).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Select, literal_column

from issuer.db import Credential
from protocols.jpki.renewal import NOTICE_MAX_DAYS

#: The kinds a notice is about: the JPKI certificates (an mdoc's MSO is refreshed, not renewed)
KINDS = ("jpki-sign", "jpki-auth")
#: The widest horizon asked, in days (ten years: no certificate runs longer)
MAX_DAYS = NOTICE_MAX_DAYS


class NoticeQueryError(ValueError):
    """An expiry-notice listing asked in a way that cannot mean anything: the message says
    what and why."""


def check_days(days: int) -> int:
    """``days`` as a horizon (0 .. :data:`MAX_DAYS`, an integer), or :class:`NoticeQueryError`."""
    if type(days) is not int or not 0 <= days <= MAX_DAYS:
        raise NoticeQueryError(f"{days!r} is not a number of days from 0 to {MAX_DAYS} (ten years: no "
                               "certificate runs longer)")
    return days


def check_filters(kind: str | None, status: str | None) -> None:
    """:class:`NoticeQueryError` for a kind or status that no certificate of a notice has
    (an mdoc, a certificate on hold or revoked)."""
    if kind is not None and kind not in KINDS or status not in (None, "valid"):
        raise NoticeQueryError("it lists valid JPKI certificates (an mdoc's MSO is refreshed, not renewed): "
                               "not with the kind mdoc, nor a status other than valid")


def expiring(q: Select, days: int, kind: str | None = None, now: dt.datetime | None = None) -> Select:
    """``q`` (a select of :class:`Credential`) narrowed to the valid JPKI certificates (of
    ``kind`` only, if given) whose expiry falls within ``days`` days of ``now`` or has passed,
    ordered soonest first (then by id: a stable order, so that pages neither skip nor repeat)
    in place of its own order."""
    check_filters(kind, None)
    until = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(days=check_days(days))
    # ``status = 'valid'`` as written in the partial index's condition (a literal, not a bound
    # parameter: a planner takes a partial index only for a condition it sees implies its own)
    return (q.where(Credential.kind.in_([kind] if kind else KINDS), Credential.status == literal_column("'valid'"),
                    Credential.not_after <= until)
            .order_by(None).order_by(Credential.not_after, Credential.id))
