"""Publishing Status List Tokens (draft-ietf-oauth-status-list §5.2, §8 "Status List
Request"; RFC 9110 §8.8.3 ETag, §13.1.2 If-None-Match; RFC 9111 Cache-Control).

A token is signed by the active status-list signer of the IACA generation whose document
signers signed the list's mdocs (``status_lists.iaca_label``) and stored in
``status_list_tokens`` so every API process serves the same bytes. It is rebuilt only when
the list's ``version`` moved (a status changed), when no more than ``ttl`` seconds remain
before its ``exp``, when its ``iat`` is more than 60 s ahead of ``now`` (a reader's clock
skew), or when the policy would not sign it as it is (its ``ttl`` claim or its
lifetime is not the policy's: a drill shortening the ttl, a process started with another
one), or once the certificate that signed it has ended (in its IACA's last day a token outlives
its signer, kept to the IACA's end); otherwise the stored one is served. The ETag is a hash of the token bytes;
``Cache-Control: max-age`` is the ttl the token carries, cut to the time left before ``exp``.

:class:`IdentifierPublisher` publishes the ISO/IEC 18013-5 2nd edition Identifier List
beside each status list (``<public URL>/identifiers/<list id>``, stored in
``identifier_list_tokens``) by the same rules: the same signer, TTL, lifetime and
version-driven rebuilds, so a revocation reaches both lists at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from issuer.db import StatusList
from issuer.mdoc.errors import UnknownStatusList
from issuer.mdoc.models import IdentifierListToken, StatusListToken
from issuer.mdoc.pki import ActiveKey, MdocPki
from issuer.mdoc.status_lists import StatusRegistry
from protocols.status import (
    CLOCK_SKEW,
    TYP_IDENTIFIER_LIST,
    TYP_STATUS_LIST,
    build_identifier_list_token,
    build_status_list_token,
    peek_header,
)

MEDIA_TYPE = TYP_STATUS_LIST  # application/statuslist+cwt
IDENTIFIER_MEDIA_TYPE = TYP_IDENTIFIER_LIST  # application/identifierlist+cwt


@dataclass(frozen=True)
class PublishedToken:
    list_id: str
    uri: str
    version: int
    token: bytes
    etag: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    #: the ``ttl`` claim signed into ``token`` (what a reader caches it for)
    ttl: int | None
    #: the notAfter of the certificate that signed ``token``: not served from then on
    signer_until: dt.datetime | None = None

    def max_age(self, now: dt.datetime) -> int:
        left = int((self.expires_at - now).total_seconds())
        return max(0, left if self.ttl is None else min(self.ttl, left))

    def headers(self, now: dt.datetime) -> dict[str, str]:
        return {
            "ETag": self.etag,
            "Cache-Control": f"public, max-age={self.max_age(now)}",
            "Expires": _http_date(self.expires_at),
            "Last-Modified": _http_date(self.issued_at),
        }

    def matches(self, if_none_match: str | None) -> bool:
        """RFC 9110 §13.1.2 weak comparison against an If-None-Match header."""
        if not if_none_match:
            return False
        tags = [t.strip() for t in if_none_match.split(",")]
        return "*" in tags or any(t.removeprefix("W/") == self.etag for t in tags)


def _http_date(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


class StatusPublisher:
    """Builds, stores and serves the token of each list."""

    #: The table the published tokens are kept in.
    model: type = StatusListToken

    def __init__(self, pki: MdocPki, registry: StatusRegistry) -> None:
        self.pki = pki
        self.registry = registry
        self._memory: dict[str, PublishedToken] = {}

    def _fresh(self, version: int, stored: StatusListToken | None, now: dt.datetime) -> bool:
        if stored is None or stored.version != version:
            return False
        issued, expires = stored.issued_at, stored.expires_at
        # a reader refuses a token whose iat is beyond its clock + CLOCK_SKEW (60 s): re-sign one
        # that far ahead of ours (a clock set back)
        return issued - CLOCK_SKEW <= now and now + dt.timedelta(
            seconds=self.registry.policy.ttl) < expires

    def token(self, session: Session, list_id: str, now: dt.datetime) -> PublishedToken:
        """The current token of ``list_id`` at ``now`` (rebuilt and stored when stale)."""
        head = session.execute(
            select(StatusList.version, StatusList.uri).where(StatusList.id == list_id)
        ).first()
        if head is None:
            raise UnknownStatusList(f"no status list {list_id!r}")
        version, uri = head
        uri = self._uri(list_id, uri)
        stored = session.get(self.model, list_id)
        current = self._current(list_id, uri, version, stored, now)
        if current is not None:
            return current
        return self._rebuild(session, list_id, now, stored)

    def _current(self, list_id: str, uri: str, version: int,
                 stored: StatusListToken | IdentifierListToken | None,
                 now: dt.datetime) -> PublishedToken | None:
        """The stored token when it may be served as it is at ``now``: built from the list's
        ``version``, not near its ``exp``, and signed as the policy signs now (its ttl and
        lifetime). A token signed under another ttl would have readers cache it for that one:
        a drill that shortened the ttl to see a revocation within seconds waited five minutes."""
        if not self._fresh(version, stored, now):
            return None
        cached = self._memory.get(list_id)
        published = (cached if cached is not None and cached.etag == stored.etag
                     else self._remember(list_id, uri, stored))
        policy = self.registry.policy
        if (published.ttl != policy.ttl
                or published.expires_at - published.issued_at != dt.timedelta(seconds=policy.lifetime)):
            return None
        if published.signer_until is not None and not now < published.signer_until:
            # signed in its IACA's last day by a signer kept to the IACA's end: its exp is
            # later, but past the signer's end no reader takes it, and past the IACA's end
            # the list answers iaca-ended (the rebuild finds no signer)
            return None
        return published

    def _uri(self, list_id: str, status_uri: str) -> str:
        """Where this publisher's token of ``list_id`` is published (its ``sub``)."""
        return status_uri

    def _build(self, session: Session, row: StatusList, uri: str, signer: ActiveKey,
               iat: dt.datetime, exp: dt.datetime) -> bytes:
        return build_status_list_token(self.registry.contents(session, row), uri=uri, iat=iat,
                                       exp=exp, ttl=self.registry.policy.ttl,
                                       signer=signer.signer, certificate=signer.certificate)

    def _rebuild(self, session: Session, list_id: str, now: dt.datetime,
                 stored: StatusListToken | IdentifierListToken | None) -> PublishedToken:
        row = session.get(StatusList, list_id, with_for_update=True)
        session.refresh(row)
        uri = self._uri(list_id, row.uri)
        if stored is None:  # none before the lock: another process may have stored one since
            stored = session.get(self.model, list_id)
        else:
            session.refresh(stored)
        if stored is not None:
            current = self._current(list_id, uri, row.version, stored, now)
            if current is not None:  # another process rebuilt meanwhile
                return current
        policy = self.registry.policy
        signer = self.pki.status_signer(session, now, row.iaca_label)
        iat = now.astimezone(dt.UTC).replace(microsecond=0)
        exp = iat + dt.timedelta(seconds=policy.lifetime)
        token = self._build(session, row, uri, signer, iat, exp)
        etag = '"' + hashlib.sha256(token).hexdigest()[:40] + '"'
        if stored is None:
            stored = self.model(list_id=list_id)
            session.add(stored)
        stored.version, stored.token, stored.etag = row.version, token, etag
        stored.issued_at, stored.expires_at = iat, exp
        session.flush()
        return self._remember(list_id, uri, stored)

    def _remember(self, list_id: str, uri: str,
                  stored: StatusListToken | IdentifierListToken) -> PublishedToken:
        header = peek_header(stored.token)
        published = PublishedToken(list_id, uri, stored.version, stored.token, stored.etag,
                                    stored.issued_at, stored.expires_at, header.ttl,
                                    header.signer.not_valid_after_utc)
        self._memory[list_id] = published
        return published

    def token_by_uri(self, session: Session, uri: str, now: dt.datetime) -> PublishedToken:
        return self.token(session, self.registry.by_uri(session, uri).id, now)


class IdentifierPublisher(StatusPublisher):
    """The Identifier List Token beside each status list (same signer, TTL and cache rules)."""

    model = IdentifierListToken

    def _uri(self, list_id: str, status_uri: str) -> str:
        return self.registry.identifier_uri_for(list_id)

    def _build(self, session: Session, row: StatusList, uri: str, signer: ActiveKey,
               iat: dt.datetime, exp: dt.datetime) -> bytes:
        return build_identifier_list_token(
            self.registry.identifiers(session, row, iat), uri=uri, iat=iat, exp=exp,
            ttl=self.registry.policy.ttl, signer=signer.signer, certificate=signer.certificate)
