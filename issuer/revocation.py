"""Revoke, hold and release a phone's credentials (registry side, every credential kind).

Reasons are the RFC 5280 5.3.1 CRLReason names J-LIS uses (see specs/revocation.md):
affiliationChanged, superseded, cessationOfOperation, certificateHold, keyCompromise.
State machine per credential row (``credentials.status``)::

    valid --certificateHold--> hold --release--> valid      (removeFromCRL semantics)
    valid|hold --any other reason--> revoked                 (final)

A held credential revoked for good keeps when it went on hold as ``invalid_since`` (the
JPKI CRL entry's and OCSP answer's invalidityDate, RFC 5280 5.3.2): the key was out of the
holder's control from then, and a signature time-stamped during the hold is refused by a
relying party that reads it, where the revocation's own time alone passed it as made
before. A released hold leaves none.

Every call is idempotent (a held credential held again, a revoked one revoked again with
nothing more to say, a valid one released: nothing changes) and audited. A revoked one
revoked again with keyCompromise, or with an earlier invalidity date, is amended
(:func:`_amend`: the reason or date replaced, the revocation's time kept). Consumers derive their published status
from the rows: the JPKI CRLs and OCSP (``issuer.jpki``: certificateHold -> on hold, others
-> revoked with the reason), the mdoc status list (certificateHold -> SUSPENDED, others ->
INVALID, release -> VALID); this module marks the affected CRL partitions stale and bumps
the affected status lists' version so both are rebuilt. Each call is one transaction, run
again when it loses a race to another writer (:func:`issuer.mdoc.txn.run_transaction`:
a PostgreSQL deadlock or serialisation failure, SQLite's busy database), so that a
revocation meeting an issuance under way is not refused for it.

Lock order (PostgreSQL row locks; specs/revocation.md section 7). Every transaction that
changes a credential's status takes its locks in this order, each table's rows in the
order given, and never a lock of an earlier table after one of a later table:

1. ``phones``: the phone it acts on (a no-op ``UPDATE`` or ``FOR UPDATE``, its first lock);
2. ``holders``: an issuance, the holder's (so that two issuances of one holder to two
   phones follow each other, and the later one revokes what the earlier one issued); a
   change or erasure of the holder's record takes it first;
3. ``credentials`` (``FOR UPDATE``), by issue time then id, in one statement: a revocation
   the phone's, an issuance those it revokes (the slot's previous certificate or MSO, the
   holder's on other phones);
4. ``jpki_crl_cache`` (marked stale), by (kind, partition): :func:`_touch`;
5. ``status_lists`` (version bumped, or an index allocated), by id: :func:`_touch`,
   :meth:`issuer.mdoc.status_lists.StatusRegistry.allocate` (a list below one already
   held is taken ``NOWAIT``, and the transaction runs again if it is busy).

Rows no other transaction waits for come after: new credentials, audit events, a new
``jpki_partitions`` row. A CRL rebuild (:mod:`issuer.jpki.publication`) takes its
``crl_state`` row and then its ``jpki_crl_cache`` row and reads the credentials without
locking them; nothing that holds a ``jpki_crl_cache`` row waits for ``crl_state``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, select, update
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, Phone, StatusList, utcnow
from issuer.mdoc.txn import run_transaction

HOLD = "certificateHold"
#: The one reason a revocation already made is amended to (:func:`_amend`).
KEY_COMPROMISE = "keyCompromise"
#: Every reason accepted by :func:`revoke` (certificateHold = a hold).
REASONS = ("keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", HOLD)
_SNAKE = {"key_compromise": "keyCompromise", "affiliation_changed": "affiliationChanged",
          "cessation_of_operation": "cessationOfOperation", "certificate_hold": HOLD}
#: ``--credential`` choices and the credential kinds each one names.
SELECTORS: dict[str, tuple[str, ...]] = {
    "sign": ("jpki-sign",), "auth": ("jpki-auth",), "mdoc": ("mdoc",),
    "jpki": ("jpki-sign", "jpki-auth"), "all": ("jpki-sign", "jpki-auth", "mdoc"),
    "jpki-sign": ("jpki-sign",), "jpki-auth": ("jpki-auth",),
}


#: the selectors as a person types them (jpki-sign and jpki-auth are sign's and auth's kinds)
SELECTOR_NAMES = "sign, auth, jpki (both certificates), mdoc or all"


class RevocationError(Exception):
    """A revocation request names an unknown reason, selector or phone."""


class UnknownPhone(RevocationError):
    """The registry knows no phone of that id (a typo must not pass as "nothing to do")."""


class InvalidSinceRefused(RevocationError):
    """An invalidity date an operator gave that cannot be one: with no UTC offset, after the
    revocation (a time to come), or with a hold (which is not final). ``why``: the reason,
    without the field's name (``invalid_since``, ``--invalid-since``), which ``str`` leads with."""

    def __init__(self, why: str) -> None:
        super().__init__(f"invalid_since: {why}")
        self.why = why


def check_invalid_since(invalid_since: dt.datetime, reason: str, now: dt.datetime) -> dt.datetime:
    """An operator's invalidity date (RFC 5280 5.3.2: when the key is known or suspected to
    have been compromised, or the credential otherwise out of its holder's control) for a
    revocation for good with ``reason`` at ``now``, in UTC; :class:`InvalidSinceRefused`
    naming ``invalid_since`` otherwise. Every final reason may carry one; a hold may not (its
    own time becomes the invalidity date if it is made final)."""
    if parse_reason(reason) == HOLD:
        raise InvalidSinceRefused("a hold (certificateHold) carries no invalidity date; "
                                  "give it when revoking for good (keyCompromise, ...)")
    return check_invalidity_date(invalid_since, now)


def check_invalidity_date(invalid_since: dt.datetime, now: dt.datetime, what: str = "a credential") -> dt.datetime:
    """An operator's invalidity date for a revocation at ``now`` of ``what`` (a credential, a
    TSA unit: :meth:`issuer.tsa.TimeStampAuthority.revoke_unit_detail`), in UTC: with its UTC
    offset, and not after ``now``; :class:`InvalidSinceRefused` otherwise."""
    if invalid_since.tzinfo is None or invalid_since.utcoffset() is None:
        raise InvalidSinceRefused(f"{invalid_since.isoformat()} has no UTC offset: give one "
                                  "(2026-12-01T09:00:00+09:00)")
    if invalid_since > now:
        raise InvalidSinceRefused(f"{invalid_since.isoformat()} is after the revocation "
                                  f"({now.isoformat(timespec='seconds')}): {what} cannot be known "
                                  "compromised at a time to come")
    try:
        return invalid_since.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+09:00: before the first instant in UTC there is
        raise InvalidSinceRefused(f"{invalid_since.isoformat()} is before the first instant a date can "
                                  "name in UTC") from None


@dataclass(frozen=True)
class Change:
    """What one call did to one credential row."""

    credential_id: str
    phone_id: str
    kind: str
    serial: str | None
    partition: str | None
    before: str
    after: str
    reason: str | None
    #: a credential revoked already whose revocation this call amended (:func:`_amend`): the
    #: reason it had before (the same as ``reason`` when only its invalidity date moved)
    amended_from: str | None = None


def parse_reason(reason: str) -> str:
    """The RFC name of ``reason`` (accepts ``cessationOfOperation`` or ``cessation_of_operation``)."""
    name = _SNAKE.get(reason, reason)
    if name not in REASONS:
        raise RevocationError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
    return name


def kinds_of(credential: str) -> tuple[str, ...]:
    try:
        return SELECTORS[credential]
    except KeyError:
        raise RevocationError(f"credential {credential!r} is not one of {SELECTOR_NAMES}") from None


def mark_crl_stale(session: Session, kind: str, partition: str | None) -> None:
    """Flag the cached CRLs of (kind's purpose, partition), every root generation, for
    rebuild (cache keys are ``<generation>/<partition>``)."""
    if not kind.startswith("jpki-") or partition is None:
        return
    from issuer.jpki.models import JpkiCrlCache

    session.execute(update(JpkiCrlCache).where(JpkiCrlCache.purpose == kind[5:],
                                               JpkiCrlCache.partition.endswith(f"/{partition}"))
                    .values(stale=True))


def _touch(session: Session, rows: Iterable[Credential], *, crls_only: Iterable[Credential] = ()) -> None:
    """Mark the rows' CRLs stale and bump their status lists, each once, in one order for
    every transaction: the CRL caches by (kind, partition), then the lists by id. Taken in
    the order of a phone's credentials, two revocations in one partition (one phone's
    signing certificate older than its user-authentication one, the other's newer, as after
    a move) locked the same rows in opposite orders and PostgreSQL broke the deadlock by
    failing one of them. ``crls_only``: rows whose CRL entry changed and status list bits did
    not (an amended revocation, :func:`_amend`: an mdoc revoked stays INVALID whatever the
    reason), whose CRLs are taken in the same pass."""
    rows = list(rows)
    for kind, partition in sorted({(r.kind, r.partition) for r in [*rows, *crls_only] if r.partition is not None}):
        mark_crl_stale(session, kind, partition)
    for list_id in sorted({r.status_list_id for r in rows if r.status_list_id}):
        session.execute(update(StatusList).where(StatusList.id == list_id)
                        .values(version=StatusList.version + 1))


def _rows(session: Session, phone_id: str, kinds: tuple[str, ...], *, state: ColumnElement | None = None
          ) -> list[Credential]:
    """The phone's credentials of ``kinds``, locked, after its own row: a write on it (its
    ``state`` set to the expression given, if one is) as the first statement, so that an
    issuance to the phone in flight (which takes the same row first,
    :mod:`issuer.jpki.issuance`, :mod:`issuer.mdoc.issuance`) either ends before these rows
    are read, its credential among them, or starts after and finds the phone's new state."""
    values = {"state": state if state is not None else Phone.state}
    if not session.execute(update(Phone).where(Phone.id == phone_id).values(**values)).rowcount:
        raise UnknownPhone(f"no phone {phone_id!r} in the issuer's registry")
    return list(session.scalars(
        select(Credential).where(Credential.phone_id == phone_id, Credential.kind.in_(kinds))
        .order_by(Credential.issued_at, Credential.id).with_for_update()))


def _revoke_rows(session: Session, rows: Iterable[Credential], reason: str, *, actor: str,
                 now: dt.datetime, also_touch: Iterable[Credential] = (),
                 given_invalid_since: dt.datetime | None = None,
                 **detail: object) -> list[Change]:
    """Revoke (or, with certificateHold, hold) ``rows`` in the caller's transaction: status,
    reason and time, one audit event each, CRLs marked stale and status lists bumped.
    Revoked rows, and held rows asked to be held again, are left as they are.
    ``given_invalid_since``: an operator's invalidity date (:func:`check_invalid_since`); a
    row on hold keeps the earlier of it and the hold's time.
    ``also_touch``: rows the caller changed itself in this transaction, whose CRLs and lists
    are taken in the same ordered pass (:func:`_touch`)."""
    changes: list[Change] = []
    touched = []
    amended = []
    for row in rows:
        before = row.status
        if before == "revoked":
            change = _amend(session, row, reason, given_invalid_since, actor=actor, detail=detail)
            if change is not None:
                amended.append(row)
                changes.append(change)
            continue
        if before == "hold" and reason == HOLD:
            continue
        row.status = "hold" if reason == HOLD else "revoked"
        # revoked for good while on hold: invalid since the hold (RFC 5280 5.3.2 invalidityDate)
        invalid_since = row.revoked_at if before == "hold" else None
        if given_invalid_since is not None:  # the operator's date; the earlier wins
            invalid_since = min(given_invalid_since, invalid_since or given_invalid_since)
        row.reason, row.revoked_at, row.invalid_since = reason, now, invalid_since
        touched.append(row)
        changes.append(Change(row.id, row.phone_id, row.kind, row.serial, row.partition,
                              before, row.status, reason))
        session.add(AuditEvent(actor=actor, action="credential.hold" if reason == HOLD
                               else "credential.revoke", subject=row.id,
                               detail={"phone": row.phone_id, "kind": row.kind,
                                       "serial": row.serial, "reason": reason,
                                       "before": before, **detail,
                                       **({"invalid_since": invalid_since.isoformat()}
                                          if invalid_since is not None else {}),
                                       **({"invalid_since_given": given_invalid_since.isoformat()}
                                          if given_invalid_since is not None else {})}))
    _touch(session, [*touched, *also_touch], crls_only=amended)
    return changes


def _amend(session: Session, row: Credential, reason: str, given_invalid_since: dt.datetime | None, *,
           actor: str, detail: dict[str, object]) -> Change | None:
    """A credential revoked already, revoked again with ``reason``: its revocation amended
    where what comes to light later says more, else left as it is (None).

    * **keyCompromise** replaces any other reason (a lost phone, cessationOfOperation, later
      found to have been used by whoever had it): RFC 5280 lets a CRL entry's reason change
      in a later CRL, and the CA/Browser Forum's Baseline Requirements (4.9.1.1) and Mozilla's
      root policy (6.1.1) ask a CA to update an entry to keyCompromise once it learns of one.
      The other way never: a keyCompromise stays one, and another final reason asked of a
      credential revoked already changes nothing (every revocation is idempotent).
    * An **invalidity date** given earlier than the one recorded (or, with none, than the
      revocation's time) replaces it: the key was out of the holder's control since then.
      A later one says nothing new (the relying party judges by the earlier of the two).

    The revocation's own time (``revoked_at``, the CRL entry's revocationDate) stays: it is
    when the CA revoked, which no later knowledge moves. Audited as
    ``credential.revoke.amend`` with what was and what is."""
    new_reason = KEY_COMPROMISE if reason == KEY_COMPROMISE else row.reason
    new_since = row.invalid_since
    bound = row.invalid_since or row.revoked_at
    if given_invalid_since is not None and (bound is None or given_invalid_since < bound):
        new_since = given_invalid_since
    if new_reason == row.reason and new_since == row.invalid_since:
        return None
    previous_reason, previous_since = row.reason, row.invalid_since
    row.reason, row.invalid_since = new_reason, new_since
    session.add(AuditEvent(actor=actor, action="credential.revoke.amend", subject=row.id,
                           detail={"phone": row.phone_id, "kind": row.kind, "serial": row.serial,
                                   "reason": new_reason, "previous_reason": previous_reason,
                                   "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
                                   **detail,
                                   **({"invalid_since": new_since.isoformat()} if new_since is not None else {}),
                                   **({"previous_invalid_since": previous_since.isoformat()}
                                      if previous_since is not None else {}),
                                   **({"invalid_since_given": given_invalid_since.isoformat()}
                                      if given_invalid_since is not None else {})}))
    return Change(row.id, row.phone_id, row.kind, row.serial, row.partition, "revoked", "revoked",
                  new_reason, amended_from=previous_reason)


def revoke(sessions: sessionmaker[Session], phone_id: str, reason: str, credential: str = "all",
           *, actor: str = "operator", now: dt.datetime | None = None,
           invalid_since: dt.datetime | None = None) -> list[Change]:
    """Revoke (or, with certificateHold, hold) the phone's live credentials of ``credential``.
    With ``all``, the phone itself is out too: ``revoked`` (``lost`` for a hold, until
    :func:`release`), so that nothing more is issued to it, not even by a provisioning
    that was under way (its next issuance is refused: the job stops, to be abandoned); a
    phone already ``retired`` by a handover stays so. A new provisioning of the phone
    (:func:`issuer.holders.attach_phone`) makes it active again.

    ``invalid_since``: since when the operator knows or suspects the credentials were out of
    the holder's control (a keyCompromise's compromise time; any final reason, not a hold),
    checked by :func:`check_invalid_since` against the revocation's time; each credential
    revoked records it as its invalidity date, the earlier of it and its hold's time if it
    was on hold. Credentials revoked already keep theirs."""
    reason = parse_reason(reason)
    kinds = kinds_of(credential)
    state = None
    if credential == "all":  # an active or lost phone becomes lost (a hold) or revoked; the rest stay
        state = case((Phone.state.in_(("active", "lost")), "lost" if reason == HOLD else "revoked"),
                     else_=Phone.state)
    now = now or utcnow()
    given = check_invalid_since(invalid_since, reason, now) if invalid_since is not None else None
    return run_transaction(sessions, lambda s: _revoke_rows(
        s, _rows(s, phone_id, kinds, state=state), reason, actor=actor, now=now, given_invalid_since=given))


def revoke_ids(sessions: sessionmaker[Session], ids: Iterable[str], reason: str, *,
               kind: str | None = None, actor: str = "operator",
               now: dt.datetime | None = None) -> list[Change]:
    """Revoke exactly the credentials ``ids`` (of ``kind``, if given) that are still live:
    a workflow re-run after a crash never touches what it issued since."""
    reason = parse_reason(reason)
    now = now or utcnow()
    q = select(Credential).where(Credential.id.in_(set(ids)))
    if kind:
        q = q.where(Credential.kind == kind)
    return run_transaction(sessions, lambda s: _revoke_rows(
        s, s.scalars(q.order_by(Credential.issued_at, Credential.id).with_for_update()), reason, actor=actor, now=now))


#: The reason the one-phone rule records (specs/handover.md, policy 1 and reasons).
ONE_PHONE_REASON = "cessationOfOperation"

#: What a certificate revoked with an abandoned renewal carries in its ``meta``: the job, so
#: that its slot is known to be left without a usable certificate (:func:`renewals_needed`)
RENEWAL_ABANDONED = "renewal_abandoned"
#: The reason of such a revocation: the certificate is out of use (its key replaced in the SE,
#: or it never reached the phone), no key is suspected (RFC 5280 5.3.1; specs/tsm.md)
ABANDONED_RENEWAL_REASON = "cessationOfOperation"
#: A JPKI slot by the credential kind of its certificate, and back
SLOT_OF_KIND = {"jpki-sign": "sign", "jpki-auth": "auth"}


def revoke_abandoned_renewal(sessions: sessionmaker[Session], phone_id: str, slots: Iterable[str], job_ref: str,
                             job_created: dt.datetime, *, actor: str = "operator",
                             now: dt.datetime | None = None) -> list[Change]:
    """A certificate-only renewal (job ``job_ref``) given up with ``slots`` of the phone left
    without an installed certificate (its GENERATE KEY ran, or may have run, and the new
    certificate's write is not recorded): revoke the phone's live certificates of those
    slots, cessationOfOperation, and mark each (``meta`` :data:`RENEWAL_ABANDONED`, and the
    audit's ``renewal_abandoned``). That is the job's new certificate, issued and never
    installed, when the CA had issued it (the old one it superseded then), or else the old
    certificate, whose key the SE's GENERATE KEY replaced (and whose copy in the SE it
    erased). The slot's newest certificate so marked says the slot needs a renewal, which
    the holder is then given whatever its old certificate's expiry (:func:`renewals_needed`).
    Only the job's own certificates and those issued before it was made (``job_created``)
    are touched: one a later renewal issued (after the job was given up, or between the
    job's end and this call) is the phone's, and a second call changes nothing. One
    transaction, the phone's row locked first (the lock order above)."""
    kinds = tuple(k for k, slot in SLOT_OF_KIND.items() if slot in set(slots))
    if not kinds:
        return []
    now = now or utcnow()

    def run(s: Session) -> list[Change]:
        rows = [r for r in _rows(s, phone_id, kinds) if r.status in ("valid", "hold")
                and (r.job_ref == job_ref or r.issued_at < job_created)]
        changes = _revoke_rows(s, rows, ABANDONED_RENEWAL_REASON, actor=actor, now=now, renewal_abandoned=job_ref)
        for row in rows:
            row.meta = {**(row.meta or {}), RENEWAL_ABANDONED: job_ref}
        return changes

    return run_transaction(sessions, run)


#: What a signing certificate revoked with an abandoned ``issue-sign`` job carries in its
#: ``meta``: the job (the slot is to be issued again: ``mcred jpki issue-sign``)
SIGN_ISSUE_ABANDONED = "sign_issue_abandoned"


def revoke_abandoned_sign_issue(sessions: sessionmaker[Session], ids: Iterable[str], job_ref: str, *,
                                actor: str = "operator", now: dt.datetime | None = None) -> list[Change]:
    """An ``issue-sign`` job (``job_ref``) given up: revoke its signing certificates ``ids``
    that are still live, cessationOfOperation (out of use: never installed, or installed
    with no password the holder knows; no key is suspected), and mark each (``meta``
    :data:`SIGN_ISSUE_ABANDONED`, the audit's ``sign_issue_abandoned``), so that the slot is
    known to be issued again. One transaction; a second call changes nothing."""
    now = now or utcnow()
    q = (select(Credential).where(Credential.id.in_(set(ids)), Credential.job_ref == job_ref,
                                  Credential.kind == "jpki-sign")
         .order_by(Credential.issued_at, Credential.id).with_for_update())

    def run(s: Session) -> list[Change]:
        rows = [r for r in s.scalars(q) if r.status in ("valid", "hold")]
        changes = _revoke_rows(s, rows, ABANDONED_RENEWAL_REASON, actor=actor, now=now,
                               sign_issue_abandoned=job_ref)
        for row in rows:
            row.meta = {**(row.meta or {}), SIGN_ISSUE_ABANDONED: job_ref}
        return changes

    return run_transaction(sessions, run)


def renewals_needed(session: Session, phone_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Of ``phone_ids``, the active phones' JPKI slots left without a usable certificate by
    an abandoned renewal (:func:`revoke_abandoned_renewal`): the slot's newest certificate
    is revoked and marked. ``{phone: {slot: the abandoned job}}``; a slot renewed since (a
    newer certificate) is not in it."""
    out: dict[str, dict[str, str]] = {}
    for (phone_id, slot), (job, _credential) in _abandoned_slots(session, phone_ids, RENEWAL_ABANDONED).items():
        out.setdefault(phone_id, {})[slot] = job
    return out


def needing_renewal(session: Session, rows: Iterable[Credential]) -> set[str]:
    """Of the credentials ``rows``, the ids of those whose slot is still to be renewed after
    an abandoned renewal: each the newest certificate of its slot on an active phone, revoked
    and marked (:func:`renewals_needed`), what ``mcred credential list`` and ``GET
    /credentials`` call ``renewal_needed``. Only the phones of rows so marked are looked up
    (none for a page without one)."""
    return _needing(session, rows, RENEWAL_ABANDONED)


def sign_issues_needed(session: Session, phone_ids: Iterable[str]) -> dict[str, str]:
    """Of ``phone_ids``, the active phones left without a signing certificate by an abandoned
    ``issue-sign`` job (:func:`revoke_abandoned_sign_issue`): the signing slot's newest
    certificate is revoked and marked. ``{phone: the abandoned job}``; a phone issued a signing
    certificate since (``mcred jpki issue-sign``) is not in it."""
    return {phone_id: job for (phone_id, _slot), (job, _credential)
            in _abandoned_slots(session, phone_ids, SIGN_ISSUE_ABANDONED).items()}


def needing_sign_issue(session: Session, rows: Iterable[Credential]) -> set[str]:
    """Of the credentials ``rows``, the ids of the signing certificates revoked with an
    abandoned ``issue-sign`` job whose phone is still to be issued one (:func:`sign_issues_needed`),
    what ``mcred credential list`` and ``GET /credentials`` call ``sign_issue_needed``."""
    return _needing(session, rows, SIGN_ISSUE_ABANDONED)


def _needing(session: Session, rows: Iterable[Credential], marker: str) -> set[str]:
    marked = {r.id: r.phone_id for r in rows
              if r.status == "revoked" and isinstance((r.meta or {}).get(marker), str)}
    if not marked:
        return set()
    return {credential for (_job, credential) in _abandoned_slots(session, marked.values(), marker).values()
            if credential in marked}


def _abandoned_slots(session: Session, phone_ids: Iterable[str],
                     marker: str) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(phone, slot): (the abandoned job, the marked certificate's id)}``: the active
    phones' JPKI slots whose newest certificate is revoked and carries ``marker`` in its meta
    (:data:`RENEWAL_ABANDONED` or :data:`SIGN_ISSUE_ABANDONED`)."""
    ids = sorted(set(phone_ids))
    if not ids:
        return {}
    newest: dict[tuple[str, str], tuple[str, str, dict | None]] = {}
    for credential, phone_id, kind, status, meta in session.execute(
            select(Credential.id, Credential.phone_id, Credential.kind, Credential.status, Credential.meta)
            .join(Phone, Phone.id == Credential.phone_id)
            .where(Credential.phone_id.in_(ids), Credential.kind.in_(tuple(SLOT_OF_KIND)), Phone.state == "active")
            .order_by(Credential.issued_at, Credential.id)):
        newest[(phone_id, kind)] = (credential, status, meta)
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for (phone_id, kind), (credential, status, meta) in sorted(newest.items()):
        job = (meta or {}).get(marker) if status == "revoked" else None
        if isinstance(job, str):
            out[(phone_id, SLOT_OF_KIND[kind])] = (job, credential)
    return out


def supersede_on_other_phones(session: Session, holder_id: str, kind: str, phone_id: str, *,
                              rows: Iterable[Credential], actor: str = "policy",
                              now: dt.datetime | None = None,
                              also_touch: Iterable[Credential] = ()) -> list[Change]:
    """One phone per person (specs/handover.md, policy 1): revoke the holder's live
    credentials of ``kind`` on every phone but ``phone_id``, in the caller's transaction, so
    the credential about to be issued to ``phone_id`` and the revocation become visible
    together. ``rows``: those credentials, which the caller locked (``FOR UPDATE``, by issue
    time then id) in the statement that locks its own: an issuance that takes a status-list
    index locks the old phone's credentials before any list, as a revocation of that phone
    does, and then their lists with the one it allocates in, in id order
    (:meth:`issuer.mdoc.status_lists.StatusRegistry.allocate`).
    ``also_touch``: the credentials the caller revoked itself (a JPKI slot's superseded
    certificate), whose CRLs are marked stale with these rows' in one ordered pass."""
    return _revoke_rows(session, rows, ONE_PHONE_REASON, actor=actor, now=now or utcnow(),
                        also_touch=also_touch, by_phone=phone_id, policy="one-phone-per-person")


def supersede(session: Session, rows: Iterable[Credential], *, actor: str = "policy",
              now: dt.datetime, **detail: object) -> list[Change]:
    """Revoke ``rows`` with reason superseded, in the caller's transaction (a credential
    replaced by a newer one of the same phone, e.g. an mdoc slot's refreshed MSO)."""
    return _revoke_rows(session, rows, "superseded", actor=actor, now=now, **detail)


def hold(sessions: sessionmaker[Session], phone_id: str, credential: str = "all", *,
         actor: str = "operator", now: dt.datetime | None = None) -> list[Change]:
    """Put the phone's valid credentials on hold (certificateHold; mdoc SUSPENDED)."""
    return revoke(sessions, phone_id, HOLD, credential, actor=actor, now=now)


def release(sessions: sessionmaker[Session], phone_id: str, credential: str = "all", *,
            actor: str = "operator", now: dt.datetime | None = None) -> list[Change]:
    """Lift the holds of the phone's credentials: removeFromCRL (RFC 5280 5.3.1) - the entry
    leaves the next CRL, OCSP answers good, the mdoc is VALID again. Revoked rows stay."""
    kinds = kinds_of(credential)
    state = case((Phone.state == "lost", "active"), else_=Phone.state) if credential == "all" else None

    def work(s: Session) -> list[Change]:
        changes: list[Change] = []
        touched = []
        for row in _rows(s, phone_id, kinds, state=state):
            if row.status != "hold":
                continue
            row.status, row.reason, row.revoked_at, row.invalid_since = "valid", None, None, None
            touched.append(row)
            changes.append(Change(row.id, phone_id, row.kind, row.serial, row.partition,
                                  "hold", "valid", None))
            s.add(AuditEvent(actor=actor, action="credential.release", subject=row.id,
                             detail={"phone": phone_id, "kind": row.kind, "serial": row.serial,
                                     "at": (now or utcnow()).isoformat()}))
        _touch(s, touched)
        return changes

    return run_transaction(sessions, work)
