"""holders.identity, normalised: the identity (``issuer.holders.identity_of``) now compares
each text field in one form (NFKC, dashes folded, white space collapsed:
``issuer.holders.identity_text``), so that the same person typed once with full-width digits,
hyphens or spaces and once without is one person to the registry (and the one-phone rule
refuses their second phone), where each was a holder of its own. Recomputed for the holders
that have one (registered from a holder file, not erased), oldest first: holders that are one
person only in the new form keep the oldest as the one matched, the later ones none (they stay
apart, as they were; as i0016holderid did). A holder without an identity (registered by card
number, erased, a later duplicate) stays without. The downgrade gives the holders that keep
one the identity of their text as stored, as before this revision.

Revision ID: i0018idnorm
Revises: i0017invalid
Create Date: 2026-12-10 07:00:00
"""

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "i0018idnorm"
down_revision = "i0017invalid"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

#: The identity fields as i0016holderid hashed them (``issuer.holders.IDENTITY_FIELDS``).
_FIELDS = ("family_name", "given_name", "family_name_kana", "given_name_kana", "birth_date",
           "sex", "address", "prefecture", "municipality")


def _as_stored(data: dict) -> str:
    """The identity before this revision: the identity fields' text exactly as stored."""
    values = [data[k] for k in _FIELDS]
    values[_FIELDS.index("sex")] = int(values[_FIELDS.index("sex")])
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _recompute(identity: Callable[[dict], str]) -> None:
    """Every holder with an identity gets ``identity(data)``, oldest first; one the identity
    of an older holder is given already gets none. The holders whose identity changes lose
    theirs first, so that no update meets the unique index on a value another row is yet to
    give up."""
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, data, identity FROM holders WHERE identity IS NOT NULL "
                                "ORDER BY created_at, id")).all()
    seen: dict[str, str] = {}
    target: dict[str, str | None] = {}
    for holder_id, data, old in rows:
        data = json.loads(data) if isinstance(data, str) else data
        try:
            new = identity(data)
        except (KeyError, TypeError, ValueError, AttributeError):  # not a record with the identity fields
            new = None
        if new is not None and new in seen:
            log.warning("holder %s is the same person as holder %s: it keeps no identity", holder_id, seen[new])
            new = None
        if new is not None:
            seen[new] = holder_id
        if new != old:
            target[holder_id] = new
    for holder_id in target:
        conn.execute(sa.text("UPDATE holders SET identity = NULL WHERE id = :h"), {"h": holder_id})
    for holder_id, new in target.items():
        if new is not None:
            conn.execute(sa.text("UPDATE holders SET identity = :i WHERE id = :h"), {"i": new, "h": holder_id})


# The normalised form as this revision defines it, frozen here (``issuer.holders.identity_text``
# may change later; what this migration computes must not).
_DASHES = re.compile("[\u2010-\u2015\u2043\u2212\u2500\u2501]")
_DIGIT_CHOON = re.compile("(?<=[0-9])\u30FC(?=[0-9])")
_SPACES = re.compile(r"\s+")
_PLACE_FIELDS = frozenset({"address", "prefecture", "municipality"})


def _text(field: str, value: str) -> str:
    text = _DASHES.sub("-", unicodedata.normalize("NFKC", value))
    if field in _PLACE_FIELDS:
        text = _DIGIT_CHOON.sub("-", text)
    return _SPACES.sub(" ", text).strip()


def _normalised(data: dict) -> str:
    """The identity of this revision: the identity fields' text in :func:`_text`'s form."""
    values = [_text(k, data[k]) if isinstance(data[k], str) else data[k] for k in _FIELDS]
    values[_FIELDS.index("sex")] = int(values[_FIELDS.index("sex")])
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def upgrade() -> None:
    _recompute(_normalised)


def downgrade() -> None:
    _recompute(_as_stored)
