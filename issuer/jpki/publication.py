"""Full CRLs per (purpose, root generation, partition), with a monotonic CRL number.

The entries are the registry's ``credentials`` rows of that root generation and partition
whose status is ``revoked`` (reason as recorded; invalidityDate the time of the hold it ended,
if it ended one) or ``hold`` (certificateHold); a released
hold is simply absent from the next CRL (removeFromCRL semantics, RFC 5280 5.3.1; no delta
CRLs). An expired certificate's entry is left out once it has been on one CRL issued after
its notAfter (RFC 5280 3.3: "An entry MUST NOT be removed from the CRL until it appears on
one regularly scheduled CRL issued beyond the revoked certificate's validity period"): a
CRL lists the certificates that ended since the thisUpdate of the CRL before it (the first
CRL of a partition, every one). The CRL number
lives in ``crl_state`` keyed (purpose, "<generation>/<partition>") and only grows
(RFC 5280 5.2.3); a built CRL is cached in ``jpki_crl_cache`` until a revocation marks it
stale or its nextUpdate is less than :data:`REFRESH` away, so serving it is a read.

A root generation whose key is to be destroyed signs a **final CRL** of each partition first
(:func:`seal`; specs/revocation.md, "A CA's final CRL"): every certificate it revoked or held
in that partition, expired or not, nextUpdate :data:`protocols.crl.NO_NEXT_UPDATE`. Cached as
any CRL, it is served from then on for good: no revocation marks it stale (a later change to
a certificate of that generation, every one of which had expired, reaches no CRL: nothing can
sign one).
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from issuer.db import Credential, CrlState
from issuer.key_destruction import FinalCrl
from protocols.crl import NO_NEXT_UPDATE
from protocols.jpki.crl import Revocation, RevocationReason, build_crl
from protocols.jpki.profile import Purpose

from . import partitions
from .ca import _DER, KIND, Generation, JpkiCa
from .errors import UnknownCredential
from .models import JpkiCrlCache

#: nextUpdate - thisUpdate of every CRL (J-LIS publishes daily).
VALIDITY = dt.timedelta(hours=24)
#: A cached CRL is rebuilt when its nextUpdate is closer than this.
REFRESH = dt.timedelta(hours=1)


def revocations(session, generation: Generation, partition: str, now: dt.datetime,
                since: dt.datetime | None) -> list[Revocation]:
    """The entries of the partition's CRL built at ``now``: its revoked and held
    certificates that had not expired at ``since`` (the thisUpdate of the CRL before it;
    None for the first CRL, which follows none: all of them), so that a certificate revoked
    before its end is on the first CRL after it too (RFC 5280 3.3) and on none later."""
    where = [Credential.kind == KIND[generation.purpose], Credential.issuer_key == generation.label,
             Credential.partition == partition, Credential.status.in_(("revoked", "hold"))]
    if since is not None:
        where.append(Credential.not_after >= min(since, now))
    rows = session.execute(
        select(Credential.serial, Credential.revoked_at, Credential.reason, Credential.status,
               Credential.invalid_since)
        .where(*where).order_by(Credential.revoked_at))
    out = []
    for serial, revoked_at, reason, status, invalid_since in rows:
        why = (RevocationReason.CERTIFICATE_HOLD if status == "hold"
               else RevocationReason.parse(reason or "cessationOfOperation"))
        out.append(Revocation(int(serial, 16), revoked_at, why,
                              invalid_since if status != "hold" else None))
    return out


def crl(ca: JpkiCa, purpose: Purpose, partition: str, *, generation: Generation | None = None,
        now: dt.datetime | None = None) -> bytes:
    """The current CRL (DER) of ``partition`` for ``generation`` (default: the active one)."""
    gen = generation or ca.active(purpose)
    now = now or ca.clock()
    key = f"{gen.label}/{partition}"
    with ca.sessions() as s:
        if partitions.lookup(s, partition) is None:
            raise UnknownCredential(f"no CRL partition {partition!r}")
        cached = s.get(JpkiCrlCache, (purpose.value, key))
        if _current(cached, now):
            return cached.body
    if cached is None:
        _first(ca, purpose, key, now)
    for _attempt in range(3):
        try:
            return _rebuild(ca, gen, partition, key, now)
        except IntegrityError:
            continue  # a concurrent first publication created the state row: go again
    return _rebuild(ca, gen, partition, key, now)


def _first(ca: JpkiCa, purpose: Purpose, key: str, now: dt.datetime) -> None:
    """Before the first CRL of ``key`` is built, its cached row, stale, committed: a
    revocation marks an existing row (:func:`issuer.revocation.mark_crl_stale`), so the first
    build locks it as every later one does; with no row, a revocation that committed while
    the first CRL was built had nothing to mark, and that CRL was served without it."""
    try:
        with ca.sessions.begin() as s:
            s.add(JpkiCrlCache(purpose=purpose.value, partition=key, crl_number=0, body=b"",
                               this_update=now, next_update=now, stale=True))
    except IntegrityError:
        pass  # another request made it


def _current(cached: JpkiCrlCache | None, now: dt.datetime) -> bool:
    """Whether the cached CRL may be served as it is: no revocation since, not near its end;
    a final CRL (:func:`seal`) always."""
    return cached is not None and (_final(cached) or (not cached.stale and cached.next_update - now > REFRESH))


def _final(cached: JpkiCrlCache | None) -> bool:
    """Whether the cached CRL is its root generation's final CRL of the partition (:func:`seal`)."""
    return cached is not None and cached.next_update == NO_NEXT_UPDATE


def seal(ca: JpkiCa, gen: Generation, now: dt.datetime) -> list[FinalCrl]:
    """The final CRL of root generation ``gen`` for every partition there is, before its key is
    destroyed (:meth:`JpkiCa.destroy_key`): every certificate it revoked or held in the
    partition, expired or not (X.509 expiredCertsOnCRL from its notBefore), thisUpdate ``now``,
    cRLNumber above any before, nextUpdate :data:`protocols.crl.NO_NEXT_UPDATE`; each signed and
    cached in a transaction of its own, under the same locks as any rebuild, unless one is
    cached already (a destruction interrupted after it: never signed twice)."""
    with ca.sessions.begin() as s:  # committed, not rolled back (psycopg keeps its prepared statements)
        codes = partitions.all_codes(s)
        known = {c.partition for c in s.scalars(select(JpkiCrlCache).where(
            JpkiCrlCache.purpose == gen.purpose.value, JpkiCrlCache.partition.startswith(f"{gen.label}/")))}
    out = []
    for code in codes:
        key = f"{gen.label}/{code}"
        if key not in known:
            _first(ca, gen.purpose, key, now)
        for _attempt in range(3):
            try:
                _rebuild(ca, gen, code, key, now, final=True)
                break
            except IntegrityError:
                continue  # a concurrent first publication created the state row: go again
        with ca.sessions.begin() as s:
            cached = s.get(JpkiCrlCache, (gen.purpose.value, key))
            out.append(FinalCrl(f"/crl/{gen.purpose.value}/{code}.crl?key_id={gen.key_id.hex()}", cached.crl_number,
                                cached.this_update, len(load(cached.body))))
    return out


def _rebuild(ca: JpkiCa, gen: Generation, partition: str, key: str, now: dt.datetime, *,
             final: bool = False) -> bytes:
    """Build, number and cache the CRL, under the lock of its ``crl_state`` row and then of
    its cached row. Locking the cached row before the registry is read is what keeps a
    revocation on the CRL: one that marked the row stale and has not committed is waited for
    (and so is read), and one that comes later marks it stale after this commit, not before
    (it would have been overwritten with a CRL that lacks it, served until nextUpdate).
    Requests that waited while another rebuilt it serve that one instead of numbering and
    signing the same CRL again. The cached row is there: :func:`crl` committed it
    (:func:`_first`) before, and nothing deletes one. ``final``: the generation's final CRL
    of the partition (:func:`seal`), unless one is cached already."""
    purpose = gen.purpose
    with ca.sessions.begin() as s:
        state = s.scalar(select(CrlState).where(CrlState.purpose == purpose.value,
                                                CrlState.partition == key).with_for_update())
        if state is None:
            state = CrlState(purpose=purpose.value, partition=key, crl_number=0)
            s.add(state)
            s.flush()
        cached = s.scalar(select(JpkiCrlCache).where(JpkiCrlCache.purpose == purpose.value,
                                                     JpkiCrlCache.partition == key)
                          .with_for_update().execution_options(populate_existing=True))
        if _final(cached) or (not final and _current(cached, now)):
            return cached.body
        muni = partitions.lookup(s, partition)
        # the thisUpdate of the CRL this one follows (the first follows none; a final one lists all)
        since = cached.this_update if cached.crl_number and not final else None
        state.crl_number += 1
        state.updated_at = now
        this_update = now.replace(microsecond=0)
        next_update = NO_NEXT_UPDATE if final else this_update + VALIDITY
        body = build_crl(
            profile=ca.profile, purpose=purpose, issuer=gen.certificate,
            issuer_key=ca.signing_key(gen),
            partition=muni if ca.profile.partitioned_crls else None,
            revocations=revocations(s, gen, partition, now, since), crl_number=state.crl_number,
            this_update=this_update, next_update=next_update,
            expired_certs_since=gen.certificate.not_valid_before_utc if final else None,
        ).public_bytes(_DER)
        cached.crl_number, cached.body, cached.stale = state.crl_number, body, False
        cached.this_update, cached.next_update = this_update, next_update
    return body


def crl_for_key_id(ca: JpkiCa, purpose: Purpose, partition: str, key_id: bytes,
                   now: dt.datetime | None = None) -> bytes:
    """The CRL of the root generation whose SKI is ``key_id`` (older generations)."""
    gen = ca.by_key_id(purpose, key_id)
    if gen is None:
        raise UnknownCredential(f"no {purpose.value} root with key id {key_id.hex()}")
    return crl(ca, purpose, partition, generation=gen, now=now)


def load(der: bytes) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(der)
