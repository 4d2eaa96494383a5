"""JPKI user authentication at the relying party (利用者証明, specs/presentation.md section 2, "User authentication").

The relying party hands out a challenge (a random nonce with an id and an expiry); the
holder's phone signs the nonce with the user-authentication key in its JPKI applet (PIN
verified in the SE) and sends the signature with its certificate; the relying party takes
the challenge back (once: a second answer is a replay), then verifies the signature over
that nonce, the chain to a trusted root, the user-authentication policy and key usage, the
validity and the revocation (:func:`reader.relying_party.verify`, slot ``auth``).

A challenge store keeps what was handed out: :class:`MemoryChallengeStore` in this process,
:class:`SqlChallengeStore` in the reader's table ``rp_challenges``, so that any worker takes
back what another handed out. Taking a challenge back is one conditional UPDATE: of two
answers racing for it, exactly one wins.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: How long a challenge may be answered.
CHALLENGE_TTL = dt.timedelta(minutes=2)
#: Bytes of random in a nonce.
NONCE_LEN = 32
#: Challenges kept at most (the oldest are dropped first past it).
MAX_CHALLENGES = 10_000
#: What a challenge id looks like (32 hex digits); anything else is unknown.
CHALLENGE_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Challenge:
    """A nonce for the phone to sign, with the id it is taken back by."""

    id: str
    nonce: bytes
    expires_at: dt.datetime

    def to_json(self) -> dict:
        """As ``POST /rp/jpki/challenges`` answers it (the nonce in base64)."""
        return {"challenge_id": self.id, "nonce": base64.b64encode(self.nonce).decode(),
                "expires_at": self.expires_at.isoformat()}


class ChallengeRefused(Exception):  # noqa: N818 - a verdict's reason, not a fault
    """The challenge cannot be taken back: unknown, expired or already answered."""


class ChallengeStore(Protocol):
    #: True when a call may wait on I/O.
    blocking: bool

    def issue(self, now: dt.datetime) -> Challenge:
        """A new challenge, kept until it expires or is taken back."""

    def take(self, challenge_id: str, now: dt.datetime) -> bytes:
        """The challenge's nonce, for the one caller that takes it back before it expires;
        :class:`ChallengeRefused` naming why for everyone else."""


def _new(now: dt.datetime, ttl: dt.timedelta) -> Challenge:
    return Challenge(secrets.token_hex(16), secrets.token_bytes(NONCE_LEN), now + ttl)


class MemoryChallengeStore:
    """Challenges in this process (a reader with one worker, tests, the CLI's local relying
    party), bounded in number and age."""

    blocking = False

    def __init__(self, ttl: dt.timedelta = CHALLENGE_TTL, max_challenges: int = MAX_CHALLENGES) -> None:
        self.ttl = ttl
        self.max_challenges = max_challenges
        self._open: OrderedDict[str, Challenge] = OrderedDict()
        #: taken back, until they would have expired: a replay is named as one
        self._used: OrderedDict[str, dt.datetime] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, now: dt.datetime) -> None:
        for kept in (self._open, self._used):
            while kept:
                cid, item = next(iter(kept.items()))
                expires = item.expires_at if isinstance(item, Challenge) else item
                if len(kept) <= self.max_challenges and expires > now:
                    break
                del kept[cid]

    def issue(self, now: dt.datetime) -> Challenge:
        c = _new(now, self.ttl)
        with self._lock:
            self._open[c.id] = c
            self._prune(now)  # past the bound, the oldest go first
        return c

    def take(self, challenge_id: str, now: dt.datetime) -> bytes:
        with self._lock:
            self._prune(now)
            c = self._open.pop(challenge_id, None) if isinstance(challenge_id, str) else None
            if c is None:
                if challenge_id in self._used:
                    raise ChallengeRefused("the challenge was already answered (a replay)")
                raise ChallengeRefused("unknown or expired challenge")
            self._used[challenge_id] = c.expires_at
            return c.nonce


class SqlChallengeStore:
    """Challenges in ``rp_challenges``: shared by every process on the same database.
    SQLAlchemy is imported when it is used: a relying party that verifies a signature and
    hands out no challenge (``mcred jpki verify``) loads no database stack."""

    blocking = True

    def __init__(self, engine: Engine, ttl: dt.timedelta = CHALLENGE_TTL,
                 max_challenges: int = MAX_CHALLENGES) -> None:
        self.engine = engine
        self.ttl = ttl
        self.max_challenges = max_challenges

    def issue(self, now: dt.datetime) -> Challenge:
        from sqlalchemy import delete, func, select

        from reader.sessions import RpChallengeRow

        c = _new(now, self.ttl)
        t = RpChallengeRow.__table__
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.expires_at <= now))  # on the index: the expired only
            over = conn.execute(select(func.count()).select_from(t)).scalar_one() - self.max_challenges + 1
            if over > 0:  # a flood of requests: the oldest go first
                oldest = select(t.c.id).order_by(t.c.expires_at, t.c.id).limit(over).scalar_subquery()
                conn.execute(delete(t).where(t.c.id.in_(oldest)))
            conn.execute(t.insert().values(id=c.id, nonce=c.nonce, expires_at=c.expires_at))
        return c

    def take(self, challenge_id: str, now: dt.datetime) -> bytes:
        if not isinstance(challenge_id, str) or not CHALLENGE_ID.fullmatch(challenge_id):
            raise ChallengeRefused("unknown or expired challenge")
        from sqlalchemy import select, update

        from reader.sessions import RpChallengeRow

        t = RpChallengeRow.__table__
        mine = t.c.id == challenge_id
        with self.engine.begin() as conn:
            taken = conn.execute(update(t).where(mine & t.c.used_at.is_(None) & (t.c.expires_at > now))
                                 .values(used_at=now)).rowcount
            row = conn.execute(select(t.c.nonce, t.c.used_at, t.c.expires_at).where(mine)).first()
        if taken == 1 and row is not None:
            return row.nonce
        if row is not None and row.used_at is not None:
            raise ChallengeRefused("the challenge was already answered (a replay)")
        raise ChallengeRefused("unknown or expired challenge")
