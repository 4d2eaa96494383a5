"""The issuer's OCSP service: the registry as the lookup of :func:`protocols.jpki.ocsp.respond`.

Every root generation of both purposes has its delegated responder (see :mod:`.ca`) until
the root expires (then its certificates' requests are ``unauthorized``), but a staged one
(``JpkiCa.stage``: it has issued nothing; its responder is made when the rollover starts it,
and a request naming it is ``unauthorized`` until then); a
request is answered by the responder of the generation its CertIDs name (issuerNameHash +
issuerKeyHash, SHA-1 or SHA-256, RFC 6960 4.1.1). Registry status maps to OCSP status:
valid -> good, hold -> revoked (certificateHold), revoked -> revoked (recorded reason and
time, and the invalidityDate singleExtension when it ended a hold: the hold's time), no such
serial under that key -> unknown. A released hold answers good again.
The responder set is cached for :data:`CACHE_SECONDS` (roots and responders change rarely),
counted by the wall clock as well as the monotonic one (:mod:`issuer.freshness`: after a
suspend the monotonic clock has not counted the time, and a responder that had ended, or a
root generation that had expired, was answered with for another minute).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, select

from issuer.db import Credential
from issuer.freshness import NEVER, Stamp
from protocols.jpki.crl import RevocationReason
from protocols.jpki.ocsp import (
    HASH_LENGTHS,
    CertId,
    Good,
    OcspResponder,
    ResponseStatus,
    Revoked,
    Unknown,
    error_response,
    issuer_hashes,
    respond,
)
from protocols.jpki.profile import Purpose

from .ca import KIND, Generation, JpkiCa, staged_of
from .errors import GenerationEnded, RootKeyDestroyed

CACHE_SECONDS = 60.0
#: A request naming no issuer of the cached set reloads it, at most this often: a root
#: generation made by another process (a rollover from the CLI beside a running service) is
#: answered for at once, and a stream of requests for unknown issuers costs one load a second.
MISS_RELOAD_SECONDS = 1.0
_UNAUTHORIZED = error_response(ResponseStatus.UNAUTHORIZED)
#: nextUpdate - thisUpdate of every response (the relying party's cache TTL).
RESPONSE_VALIDITY = dt.timedelta(minutes=10)


_STATUS = (select(Credential.status, Credential.reason, Credential.revoked_at, Credential.invalid_since)
           .where(Credential.kind == bindparam("kind"), Credential.issuer_key == bindparam("key"),
                  Credential.serial == bindparam("serial")))


class OcspService:
    """Answers DER OCSP requests from the registry; safe to share between requests."""

    def __init__(self, ca: JpkiCa) -> None:
        self.ca = ca
        self._loaded_at = NEVER
        self._responders: list[OcspResponder] = []
        self._by_hash: dict[tuple[str, bytes, bytes], Generation] = {}
        self._engine = None

    def _age(self) -> float:
        return self._loaded_at.age(self.ca.clock())

    def _load(self) -> None:
        now = self.ca.clock()
        if self._loaded_at.age(now) < CACHE_SECONDS:
            return
        responders, by_hash = [], {}
        for purpose in Purpose:
            generations = self.ca.generations(purpose)
            staged = staged_of(generations, now)
            for gen in generations:
                if staged is not None and gen.label == staged.label:
                    continue  # staged: it has issued nothing, and gets its responder when it starts
                try:
                    r = self.ca.responder(gen)
                except GenerationEnded:
                    continue  # an expired root: nothing it issued is valid, and it gets no responder
                except RootKeyDestroyed:
                    continue  # its key went once all it issued had expired: no new responder is certified
                if r.key_destroyed_at is not None:
                    continue  # its responder's key went too (all it answered for had expired)
                responders.append(OcspResponder(
                    certificate=r.certificate, key=self.ca.responder_key(r),
                    issuer=gen.certificate, validity=RESPONSE_VALIDITY))
                for alg in HASH_LENGTHS:
                    by_hash[(alg, *issuer_hashes(gen.certificate, alg))] = gen
        self._responders, self._by_hash = responders, by_hash
        self._loaded_at = Stamp.now(now)

    def invalidate(self) -> None:
        self._loaded_at = NEVER

    def _generation(self, cert_id: CertId) -> Generation | None:
        return self._by_hash.get((cert_id.hash_algorithm, cert_id.issuer_name_hash,
                                  cert_id.issuer_key_hash))

    def status(self, cert_id: CertId):
        """The registry's answer for one CertID (Good / Revoked / Unknown), on its own as
        well as :meth:`respond`'s lookup: it loads the root generations it needs, and an
        issuer they do not name reloads them as :meth:`respond` does (a generation another
        process made) before the answer is Unknown."""
        self._load()
        gen = self._generation(cert_id)
        if gen is None and self._age() >= MISS_RELOAD_SECONDS:
            self.invalidate()
            self._load()
            gen = self._generation(cert_id)
        if gen is None:
            return Unknown()
        engine = self._engine
        if engine is None:
            with self.ca.sessions() as s:
                engine = self._engine = s.get_bind()
        # one Core statement on a pooled connection: a third of an ORM session's cost, and
        # a responder answers many (the same columns, the same rules)
        with engine.connect() as conn:
            row = conn.execute(_STATUS, {"kind": KIND[gen.purpose], "key": gen.label,
                                         "serial": format(cert_id.serial, "x")}).first()
        if row is None:
            return Unknown()
        status, reason, revoked_at, invalid_since = row
        if status == "valid":
            return Good()
        if status == "hold":
            return Revoked(revoked_at, RevocationReason.CERTIFICATE_HOLD)
        return Revoked(revoked_at, RevocationReason.parse(reason or "cessationOfOperation"), invalid_since)

    def respond(self, request_der: bytes, now: dt.datetime | None = None) -> bytes:
        """A DER OCSPResponse; never raises (malformedRequest / unauthorized / internalError).
        A request this set of responders cannot answer (``unauthorized``: an issuer it does not
        know) reloads the set first, if it was loaded more than :data:`MISS_RELOAD_SECONDS`
        ago: the generation may have been made by another process since."""
        self._load()
        at = now or self.ca.clock()
        answer = respond(request_der, self.status, self._responders, at)
        if answer == _UNAUTHORIZED and self._age() >= MISS_RELOAD_SECONDS:
            self.invalidate()
            self._load()
            answer = respond(request_der, self.status, self._responders, at)
        return answer
