"""Bearer tokens of the HTTP API (RFC 6750) with scopes; only a hash of a secret is stored.

Token format: ``mcred_<id>_<secret>`` where ``id`` is the row's 32 lowercase hex digits and
``secret`` is 32 random bytes (256 bits, :func:`secrets.token_urlsafe`). The token is shown
once, at creation; the database keeps ``sha256$<hex>`` of
``"mcred-api-token-v1" 0x00 id 0x00 secret``. A fast hash is the right one here: the secret
is 256 bits from the OS CSPRNG, so there is no dictionary to try and a stolen hash cannot be
inverted by brute force; a password hash (scrypt, Argon2) would add ~50 ms to every request
and protect nothing more. The id names the row, so verification is one primary-key lookup
and one constant-time compare (:func:`hmac.compare_digest`); an unknown id, a wrong secret
and a revoked token are all the same 401 to the caller.

Scopes (specs/api.md): ``operator`` | ``issuer`` | ``tsm`` | ``reader``. ``operator`` is the
installation's administrator and is allowed everything (it implies the three others);
``issuer`` manages credentials, revocations, holds and provisioning jobs; ``tsm`` phones and
their SEs; ``reader`` the verification endpoints. Tokens themselves are managed only on the
command line (``mcred token ...``), which needs the database, never over HTTP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from issuer.api.scopes import SCOPES
from issuer.db import ApiToken, AuditEvent, new_id, utcnow

#: The scope that implies every other one.
SUPER = "operator"
PREFIX = "mcred_"
_DOMAIN = b"mcred-api-token-v1"
_TOKEN = re.compile(r"^mcred_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$")


class TokenError(Exception):
    """A token request is malformed (unknown scope, unknown id)."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token says the caller is."""

    token_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return SUPER in self.scopes or scope in self.scopes

    @property
    def visible_scopes(self) -> frozenset[str] | None:
        """The scopes whose objects (API jobs) this principal may see, for a query's filter:
        what :meth:`allows`; None for every one (``SUPER``)."""
        return None if SUPER in self.scopes else self.scopes

    @property
    def actor(self) -> str:
        """``token:<id>:<name>``, cut to the width of the actor columns (a name longer
        than :data:`NAME_MAX`, kept by SQLite before that bound, loses its tail; the
        token id, which identifies the caller, always stays whole)."""
        return f"token:{self.token_id}:{self.name}"[:ACTOR_MAX]


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never its secret)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    revoked: bool
    created_at: str
    #: ISO 8601 UTC, or None: valid until revoked
    expires_at: str | None = None

    @property
    def state(self) -> str:
        """``revoked``, ``expired`` or ``active`` (now)."""
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and _past(dt.datetime.fromisoformat(self.expires_at)):
            return "expired"
        return "active"


def _past(at: dt.datetime | None) -> bool:
    """Whether an expiry ``at`` has come (None: none set, never)."""
    return at is not None and at <= utcnow()


def _digest(token_id: str, secret: str) -> str:
    h = hashlib.sha256(_DOMAIN + b"\x00" + token_id.encode() + b"\x00" + secret.encode())
    return "sha256$" + h.hexdigest()


#: Width of the columns that record who acted (``issuer_audit.actor``, ``api_jobs.actor``
#: and the TSM's; the TSM cuts its lock owner, the actor and a suffix, to its column).
ACTOR_MAX = AuditEvent.__table__.c.actor.type.length
#: Longest token name: the caller's actor ``token:<32 hex id>:<name>`` fits those columns
#: (and the name its own, ``api_tokens.name``). A longer name was stored by SQLite and
#: refused by PostgreSQL on the first write that recorded the actor (HTTP 500).
NAME_MAX = min(ApiToken.__table__.c.name.type.length, ACTOR_MAX - len("token:") - 32 - 1)


def parse_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out = []
    for sc in scopes:
        if sc not in SCOPES:
            raise TokenError(f"scope {sc!r} is not one of {', '.join(SCOPES)}")
        if sc not in out:
            out.append(sc)
    if not out:
        raise TokenError(f"a token needs at least one scope of {', '.join(SCOPES)}")
    return tuple(out)


def stored_name(token_id: str, name: str = "") -> str:
    """The name a token is kept under (and its calls recorded as, ``token:ID:NAME``): the
    one given, else ``token-`` and its id's first 8 digits."""
    return name or f"token-{token_id[:8]}"


def create_token(sessions: sessionmaker[Session], scopes: Iterable[str], name: str = "",
                 *, actor: str = "cli", expires_at: dt.datetime | None = None) -> tuple[str, str]:
    """A new token; returns ``(id, token)``. The token is not stored and cannot be shown again.
    ``name``: a label of at most :data:`NAME_MAX` characters (so that the actor it names
    fits the columns that record it: SQLite would keep a longer one, PostgreSQL refuses it).
    ``expires_at``: an aware instant in the future from which the token is refused, as a
    revoked one is (None: until revoked)."""
    scopes = parse_scopes(scopes)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise TokenError("the expiry needs a time zone (an aware datetime, e.g. UTC)")
        if _past(expires_at):
            raise TokenError(f"the expiry {expires_at.isoformat()} is not in the future")
    if len(name) > NAME_MAX:
        raise TokenError(f"the token name is {len(name)} characters; at most {NAME_MAX}")
    for i, ch in enumerate(name):
        # a control character (NUL among them: PostgreSQL refuses it, SQLite keeps it) or a
        # lone surrogate would reach every audit line and terminal that shows the actor
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise TokenError(f"the token name holds U+{ord(ch):04X} at position {i}; "
                             "control characters are not allowed")
    token_id = new_id()
    secret = secrets.token_urlsafe(32)
    name = stored_name(token_id, name)
    with sessions.begin() as s:
        s.add(ApiToken(id=token_id, name=name,
                       scopes=" ".join(scopes), secret_hash=_digest(token_id, secret),
                       expires_at=expires_at))
        s.add(AuditEvent(actor=actor, action="token.create", subject=token_id,
                         detail={"scopes": list(scopes), "name": name,
                                 **({"expires_at": expires_at.astimezone(dt.UTC).isoformat()}
                                    if expires_at else {})}))
    return token_id, f"{PREFIX}{token_id}_{secret}"


def list_tokens(sessions: sessionmaker[Session]) -> list[TokenInfo]:
    with sessions() as s:
        rows = s.scalars(select(ApiToken).order_by(ApiToken.created_at)).all()
        return [TokenInfo(r.id, r.name, tuple(r.scopes.split()), r.revoked, r.created_at.isoformat(),
                          r.expires_at.isoformat() if r.expires_at else None) for r in rows]


def revoke_token(sessions: sessionmaker[Session], token_id: str, *, actor: str = "cli") -> bool:
    """Revoke a token; False when it was revoked already. Unknown id: :class:`TokenError`."""
    with sessions.begin() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            raise TokenError(f"no token {token_id!r}")
        if row.revoked:
            return False
        row.revoked = True
        s.add(AuditEvent(actor=actor, action="token.revoke", subject=token_id, detail={}))
    return True


def verify_token(sessions: sessionmaker[Session], token: str) -> Principal | None:
    """The principal of a valid token, neither revoked nor expired; None for anything else."""
    m = _TOKEN.match(token)
    if m is None:
        return None
    token_id, secret = m.groups()
    with sessions() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            # Same work as a hit, so timing does not tell which ids exist.
            hmac.compare_digest(_digest(token_id, secret), _digest(token_id, ""))
            return None
        ok = hmac.compare_digest(_digest(token_id, secret), row.secret_hash)
        if not ok or row.revoked or _past(row.expires_at):
            return None
        return Principal(row.id, row.name, frozenset(row.scopes.split()))


_bearer = HTTPBearer(auto_error=False, description="`mcred_<id>_<secret>` from `mcred token create`")


class Authenticator:
    """Builds the FastAPI dependency that guards a mount with a scope."""

    def __init__(self, sessions: Callable[[], sessionmaker[Session]]) -> None:
        self._sessions = sessions

    def require(self, scope: str) -> Callable[..., Principal]:
        if scope not in SCOPES:
            raise TokenError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")

        def dependency(request: Request, credentials: HTTPAuthorizationCredentials | None
                       = Depends(_bearer)) -> Principal:
            challenge = f'Bearer realm="mcred", scope="{scope}"'
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise HTTPException(401, "this endpoint needs a bearer token "
                                    f"(scope {scope})", headers={"WWW-Authenticate": challenge})
            principal = verify_token(self._sessions(), credentials.credentials)
            if principal is None:
                raise HTTPException(401, "the bearer token is not valid (unknown, revoked, expired "
                                    "or malformed)", headers={"WWW-Authenticate":
                                                           challenge + ', error="invalid_token"'})
            if not principal.allows(scope):
                raise HTTPException(403, f"this endpoint needs scope {scope}; the token has "
                                    f"{', '.join(sorted(principal.scopes))}",
                                    headers={"WWW-Authenticate":
                                             challenge + ', error="insufficient_scope"'})
            request.state.principal = principal
            return principal

        dependency.mcred_scope = scope  # type: ignore[attr-defined]
        return dependency


def principal_of(request: Request) -> Principal | None:
    """The caller verified by the mount's dependency (None on public routes)."""
    return getattr(request.state, "principal", None)
