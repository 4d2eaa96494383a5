"""The JPKI relying party's revocation watch (失効情報の活用; specs/presentation.md section 17).

A relying party that keeps its customers' JPKI certificates (the signing certificate that
signed an application or a consent, the user-authentication certificate of a login) asks
J-LIS's revocation information about them again and again, not only when the customer next
comes: life insurers do it to learn of deaths (``affiliationChanged``: death, or moving
abroad) and, from a certificate still valid, that a pensioner lives (no 現況届 needed); a
``superseded`` signing certificate tells that a basic four datum (name, birth date, sex,
address) changed, so the customer's record needs the new one; ``certificateHold`` says the
card or phone was reported lost, and its disappearance from the CRL that it was found.

:class:`RevocationWatch` keeps the watch list in the reader's tables ``rp_watch`` (one row
per customer reference and certificate, with its last known status) and ``rp_watch_events``
(every change of status, when it was seen and on which evidence), and sweeps it:

* by CRL (the default, what a relying party with many customers does): the certificates are
  grouped by CRL distribution point and issuing root; each CRL is fetched once, its
  signature and currency judged once (:func:`protocols.jpki.relying_party.judge_crl`), then
  each certificate is looked up in it after its scope (issuingDistributionPoint) is checked;
* by OCSP: one signed, nonced request per certificate (:func:`reader.relying_party.ocsp_answer`).

A certificate that could not be judged (distribution point unreachable, CRL not signed by
its root or stale, responder without a verified answer) keeps its last status and is
reported with the reason; nothing is written for it. Only an expired certificate is final
and no longer asked about. A certificate on hold is asked again and goes back to ``good``
when the hold is lifted. A revoked one is asked again until it expires, because the issuer
amends revocations (specs/revocation.md, "Amending a revocation"): a lost phone's
``cessationOfOperation`` becomes ``keyCompromise`` once it is found to have been used, and an
earlier invalidity date (RFC 5280 5.3.2's ``invalidityDate``, kept as ``invalid_since``)
replaces a later one, whatever the reason, keyCompromise included. Either is a change of
status: it tells the relying party which of the signatures it archived (those made after the
invalidity date) are no longer to be trusted. In a CRL sweep that costs a dictionary look-up
and a batched refresh per revoked certificate (the CRL is fetched anyway); in an OCSP sweep
one request each, the revoked share of the list more. A revocation is never undone: evidence
that a certificate revoked before is good, on hold or unknown is not believed (the
certificate is reported unjudged and keeps its status).

Each status change is an UPDATE conditional on the status it changes from, and its event is
written only when that UPDATE changed a row: two sweeps racing (two cron jobs, two workers)
record each change once.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import (
    Engine,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from dbtypes import UtcDateTime
from protocols import certs
from protocols.certs import SerialError, parse_serial, serial_text
from protocols.jpki.errors import JpkiError
from protocols.jpki.parse import classify, load_certificate
from protocols.jpki.relying_party import (
    Check,
    check_chain,
    crl_invalidity,
    crl_reason,
    crl_scope,
    judge_crl,
    utc_text,
)
from reader.errors import ReaderError
from reader.relying_party import fetch_crl, ocsp_answer
from reader.sessions import ReaderBase

#: Statuses that never change again: nothing more is asked about them. Not ``revoked``: the
#: issuer amends a revocation's reason (to keyCompromise) and invalidity date (module docstring).
FINAL: frozenset[str] = frozenset({"expired"})
VIA = ("crl", "ocsp")
#: The longest customer reference kept.
REF_MAX = 128
#: Watch-list rows a sweep reads and judges at a time.
CHUNK = 5000
#: Serials asked of the linkage service at a time (its limit per request).
LINK_BATCH = 1000
#: A watch-list row as a sweep reads it: a plain row of ``rp_watch``'s columns (``id``,
#: ``ref``, ``serial``, ``status``, ...), not an ORM object.
_Row = Any

#: What each revocation reason tells a relying party (DOMAIN.md, "Revocation as the
#: national PKI does it"); any other reason is shown by its name.
REASON_MEANINGS = {
    "affiliationChanged": "death, or moving abroad (the two cannot be told apart)",
    "cessationOfOperation": "card lost, or moving abroad",
    "superseded": "certificate renewed: a basic four datum (name, birth date, sex, address) "
                  "changed, or the certificate came near its expiry (電子証明書の更新: the data as "
                  "before); with the customer's consent the latest basic four data service says "
                  "which and gives it",
    "certificateHold": "suspended: the card or phone was reported lost",
}
#: What an invalidity date adds: which archived signatures the relying party may keep.
UNTRUSTED_AFTER = "signatures made after it are not to be trusted"


def meaning(status: str, reason: str | None, before: str | None = None,
            invalid_since: dt.datetime | None = None) -> str:
    """What a status (with its revocation reason and invalidity date) tells the relying
    party; a revocation amended (revoked before and after) says so first."""
    if status == "good":
        return ("hold lifted: valid again" if before == "hold"
                else "valid: neither revoked nor suspended (the holder lives)")
    if status == "revoked":
        since = None if invalid_since is None else utc_text(invalid_since)
        if reason == "keyCompromise":
            said = (f"key compromised since {since}: {UNTRUSTED_AFTER}" if since is not None else
                    "key compromised (no invalidity date given): signatures made after the "
                    "revocation are not to be trusted")
        else:
            said = REASON_MEANINGS.get(reason or "", f"revoked ({reason or 'unspecified'})")
            if since is not None:
                said = f"{said}; invalid since {since}: {UNTRUSTED_AFTER}"
        return f"revocation amended: {said}" if before == "revoked" else said
    if status == "hold":
        return REASON_MEANINGS.get(reason or "", f"revoked ({reason or 'unspecified'})")
    return {"unchecked": "not yet asked about",
            "expired": "expired: past its notAfter, nothing more will be published about it",
            "unknown": "the OCSP responder does not know this certificate"}.get(status, status)


class WatchError(ReaderError):
    """A certificate cannot be put on the watch list, or the list cannot be swept as asked;
    the message says why."""


class RpWatchRow(ReaderBase):
    """A customer's certificate on the relying party's watch list, with its last status."""

    __tablename__ = "rp_watch"
    __table_args__ = (UniqueConstraint("ref", "issuer_key_id", "serial", name="uq_rp_watch_cert"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The relying party's own reference for the customer (a policy number, an account).
    ref: Mapped[str] = mapped_column(String(REF_MAX), index=True)
    purpose: Mapped[str] = mapped_column(String(4))  # sign | auth
    serial: Mapped[str] = mapped_column(String(42))  # hex, no leading zeros
    issuer_key_id: Mapped[str] = mapped_column(String(128))  # the root's SKI, hex
    certificate: Mapped[bytes] = mapped_column(LargeBinary)  # DER
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    crl_url: Mapped[str | None] = mapped_column(Text)
    #: Every name of its cRLDistributionPoints, canonical (:func:`_dp_names`): certificates
    #: with the same names are in the same CRL scope, checked once for all of them.
    dp_names: Mapped[str] = mapped_column(Text)
    ocsp_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: The evidence's own time: the CRL's thisUpdate, the OCSP response's thisUpdate.
    as_of: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: The revocation's invalidity date (the CRL entry's or OCSP answer's invalidityDate,
    #: RFC 5280 5.3.2): signatures made after it are not to be trusted. NULL when none given.
    invalid_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    checked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    #: Why the last sweep could not judge it (NULL when it could).
    problem: Mapped[str | None] = mapped_column(Text)
    #: A replaced user-authentication certificate: the serial of the valid one the linkage
    #: service named after it (watched under the same reference from ``linked_at`` on).
    successor: Mapped[str | None] = mapped_column(String(42))
    linked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class RpWatchEventRow(ReaderBase):
    """One change of a watched certificate's status (kept when the certificate is removed
    from the list: the relying party's record of what it learnt, and when)."""

    __tablename__ = "rp_watch_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(REF_MAX), index=True)
    serial: Mapped[str] = mapped_column(String(42))
    purpose: Mapped[str] = mapped_column(String(4))
    seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    before: Mapped[str | None] = mapped_column(String(16))
    after: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    as_of: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: The invalidity date the evidence gave with the new status (NULL when none).
    invalid_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: Where it was learnt: ``CRL <url>``, ``OCSP <url>``, ``notAfter``, ``added``.
    source: Mapped[str] = mapped_column(Text)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Watched:
    """A watched certificate as the list shows it."""

    ref: str
    purpose: str
    serial: str
    issuer_key_id: str
    not_after: dt.datetime
    status: str
    reason: str | None
    revoked_at: dt.datetime | None
    as_of: dt.datetime | None
    checked_at: dt.datetime | None
    added_at: dt.datetime
    problem: str | None
    successor: str | None = None
    linked_at: dt.datetime | None = None
    invalid_since: dt.datetime | None = None

    @classmethod
    def of(cls, row: RpWatchRow) -> Watched:
        return cls(row.ref, row.purpose, row.serial, row.issuer_key_id, row.not_after, row.status,
                   row.reason, row.revoked_at, row.as_of, row.checked_at, row.added_at, row.problem,
                   row.successor, row.linked_at, row.invalid_since)

    @property
    def meaning(self) -> str:
        return meaning(self.status, self.reason, invalid_since=self.invalid_since)

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "purpose": self.purpose, "serial": self.serial,
                "issuer_key_id": self.issuer_key_id, "not_after": _iso(self.not_after),
                "status": self.status, "reason": self.reason, "meaning": self.meaning,
                "revoked_at": _iso(self.revoked_at), "as_of": _iso(self.as_of),
                "checked_at": _iso(self.checked_at), "added_at": _iso(self.added_at),
                "problem": self.problem, "successor": self.successor, "linked_at": _iso(self.linked_at),
                "invalid_since": _iso(self.invalid_since)}


@dataclass(frozen=True)
class Change:
    """A status change, as a sweep found it or the event log keeps it."""

    ref: str
    serial: str
    purpose: str
    before: str | None
    after: str
    reason: str | None
    revoked_at: dt.datetime | None
    as_of: dt.datetime | None
    seen_at: dt.datetime
    source: str
    invalid_since: dt.datetime | None = None

    @classmethod
    def of(cls, row: RpWatchEventRow) -> Change:
        return cls(row.ref, row.serial, row.purpose, row.before, row.after, row.reason,
                   row.revoked_at, row.as_of, row.seen_at, row.source, row.invalid_since)

    @property
    def meaning(self) -> str:
        return meaning(self.after, self.reason, self.before, self.invalid_since)

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "serial": self.serial, "purpose": self.purpose,
                "before": self.before, "after": self.after, "reason": self.reason,
                "meaning": self.meaning, "revoked_at": _iso(self.revoked_at),
                "as_of": _iso(self.as_of), "seen_at": _iso(self.seen_at), "source": self.source,
                "invalid_since": _iso(self.invalid_since)}


@dataclass(frozen=True)
class Unjudged:
    """A watched certificate a sweep could not judge; its last status stands."""

    ref: str
    serial: str
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "serial": self.serial, "problem": self.problem}


@dataclass(frozen=True)
class Relinked:
    """What the linkage service said of one replaced user-authentication certificate."""

    ref: str
    serial: str
    #: linked | no valid successor | unknown to the issuer | refused
    outcome: str
    successor: str | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "serial": self.serial, "outcome": self.outcome,
                "successor": self.successor, "problem": self.problem}


@dataclass(frozen=True)
class Source:
    """One CRL a sweep read (or could not)."""

    url: str
    issuer_key_id: str
    certificates: int
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    entries: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "issuer_key_id": self.issuer_key_id,
                "certificates": self.certificates, "this_update": _iso(self.this_update),
                "next_update": _iso(self.next_update), "entries": self.entries,
                "problem": self.problem}


@dataclass
class SweepReport:
    """What one sweep of the watch list found."""

    at: dt.datetime
    via: str
    asked: int = 0
    changes: list[Change] = field(default_factory=list)
    unjudged: list[Unjudged] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every certificate asked about was judged."""
        return not self.unjudged

    def to_dict(self) -> dict[str, Any]:
        return {"at": _iso(self.at), "via": self.via, "asked": self.asked,
                "complete": self.complete, "changes": [c.to_dict() for c in self.changes],
                "unjudged": [u.to_dict() for u in self.unjudged],
                "sources": [s.to_dict() for s in self.sources], "counts": dict(self.counts)}


@dataclass(frozen=True)
class _Verdict:
    status: str
    reason: str | None = None
    revoked_at: dt.datetime | None = None
    as_of: dt.datetime | None = None
    source: str = ""
    invalid_since: dt.datetime | None = None


def check_ref(ref: str) -> str:
    """A customer reference as kept: 1 to :data:`REF_MAX` printable characters."""
    if not isinstance(ref, str) or not 0 < len(ref) <= REF_MAX or not ref.isprintable():
        raise WatchError(f"a customer reference is 1 to {REF_MAX} printable characters")
    return ref


serial_hex = serial_text


class RevocationWatch:
    """The watch list on ``engine`` (the reader's tables, migrated by the composition root)
    and the sweeps over it. ``roots`` are the trusted JPKI roots (a sequence, or a callable
    read at each use so that a root rollover is seen): a certificate is put on the list only
    when it chains to one, and a CRL is believed only when that root signed it."""

    def __init__(self, engine: Engine,
                 roots: Sequence[x509.Certificate] | Callable[[], Sequence[x509.Certificate]], *,
                 client: httpx.Client | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.engine = engine
        self._roots = roots
        self.client = client
        self.clock = clock

    def roots(self) -> list[x509.Certificate]:
        return list(self._roots() if callable(self._roots) else self._roots)

    # -- the list ------------------------------------------------------------------------

    def add(self, ref: str, certificate: bytes, *, source: str = "added") -> tuple[Watched, bool]:
        """Put ``certificate`` (DER or PEM) on the list under ``ref``: it must chain to a
        trusted root, carry a JPKI policy and not be expired. ``(entry, added)``: ``added``
        is False when the same reference already watches the same certificate (nothing is
        written then). ``source``: how the event log says it came (``added``; ``linked from
        <serial>`` by :meth:`relink`)."""
        ref = check_ref(ref)
        at = self.clock()
        admitted = self._admit(certificate, at)
        try:
            with Session(self.engine) as db, db.begin():
                row, added = self._insert(db, ref, admitted, at, source)
                return Watched.of(row), added
        except IntegrityError:  # the same certificate added for the same customer at the same moment
            with Session(self.engine) as db:
                return Watched.of(db.scalar(_same(ref, admitted))), False

    def _admit(self, certificate: bytes | x509.Certificate, at: dt.datetime) -> _Admitted:
        """A certificate (bytes, or one loaded by :func:`load_certificate`) that may go on the
        list (:meth:`add`'s conditions); :class:`WatchError` naming the one it fails."""
        try:
            cert = certificate if isinstance(certificate, x509.Certificate) else load_certificate(certificate)
            purpose = classify(cert).value
        except JpkiError as exc:
            raise WatchError(str(exc)) from None
        chain, root = check_chain(cert, self.roots(), at)
        if root is None:
            raise WatchError(f"not a certificate of a trusted JPKI root: {chain.reason}")
        if cert.not_valid_after_utc < at:
            raise WatchError(f"expired at {cert.not_valid_after_utc.isoformat()}: nothing left to watch")
        return _Admitted(cert, purpose, _ski(root), serial_hex(cert.serial_number))

    @staticmethod
    def _insert(db: Session, ref: str, admitted: _Admitted, at: dt.datetime,
                source: str) -> tuple[RpWatchRow, bool]:
        """The list's row for ``ref`` and the admitted certificate, inserted with its event
        unless there (``(row, inserted)``), in ``db``'s transaction."""
        row = db.scalar(_same(ref, admitted))
        if row is not None:
            return row, False
        values, event = _new_entry(ref, admitted, at, source)
        row = RpWatchRow(**values)
        db.add(row)
        db.add(RpWatchEventRow(**event))
        db.flush()
        return row, True

    def remove(self, ref: str, serial: str | None = None) -> int:
        """Take ``ref``'s certificates (only the one with ``serial``, hex, when given) off
        the list; how many. Their events stay."""
        ref = check_ref(ref)
        query = delete(RpWatchRow).where(RpWatchRow.ref == ref)
        if serial is not None:
            query = query.where(RpWatchRow.serial == _norm_serial(serial))
        with Session(self.engine) as db, db.begin():
            return db.execute(query).rowcount

    def entries(self, ref: str | None = None, status: str | None = None) -> list[Watched]:
        """The list (one reference's, one status's), by reference then addition."""
        query = select(RpWatchRow).order_by(RpWatchRow.ref, RpWatchRow.id)
        if ref is not None:
            query = query.where(RpWatchRow.ref == check_ref(ref))
        if status is not None:
            query = query.where(RpWatchRow.status == status)
        with Session(self.engine) as db:
            return [Watched.of(r) for r in db.scalars(query)]

    def events(self, ref: str | None = None, since: dt.datetime | None = None) -> list[Change]:
        """The changes recorded (one reference's; seen at or after ``since``), oldest first."""
        query = select(RpWatchEventRow).order_by(RpWatchEventRow.id)
        if ref is not None:
            query = query.where(RpWatchEventRow.ref == check_ref(ref))
        if since is not None:
            query = query.where(RpWatchEventRow.seen_at >= since)
        with Session(self.engine) as db:
            return [Change.of(r) for r in db.scalars(query)]

    def counts(self) -> dict[str, int]:
        """How many watched certificates have each status."""
        with self.engine.connect() as conn:
            return dict(sorted(conn.execute(select(RpWatchRow.status, func.count())
                                            .group_by(RpWatchRow.status)).all()))

    def relink(self, ask: Callable[[list[str]], Sequence[dict[str, Any]]],
               refs: Sequence[str] | None = None) -> list[Relinked]:
        """Follow replaced user-authentication certificates to their successors (the
        linkage service, 利用者証明用電子証明書の新旧紐付け): every watched one that is revoked,
        on hold or expired and not linked yet (only ``refs``' when given) is asked about, at
        most :data:`LINK_BATCH` serials per call of ``ask``, which answers as the issuer's
        ``POST /jpki/linkage`` does (one link per serial, in order). When a link names a
        valid successor and carries its certificate, that certificate is put on the list
        under the same reference (:meth:`add`: it must chain to a trusted root, be a
        user-authentication certificate and have the serial the link names) and the old
        entry records it as its ``successor``; it is then asked about no more. What ``ask``
        raises (the issuer unreachable, a refusal) propagates; an answer that does not fit
        is :class:`WatchError`."""
        query = (select(RpWatchRow.id, RpWatchRow.ref, RpWatchRow.serial)
                 .where(RpWatchRow.purpose == "auth", RpWatchRow.status.in_(("revoked", "hold", "expired")),
                        RpWatchRow.successor.is_(None)).order_by(RpWatchRow.id))
        if refs is not None:
            query = query.where(RpWatchRow.ref.in_([check_ref(r) for r in refs]))
        out: list[Relinked] = []
        last = 0
        while True:
            with self.engine.connect() as conn:
                rows = list(conn.execute(query.where(RpWatchRow.id > last).limit(LINK_BATCH)))
            if not rows:
                return out
            last = rows[-1].id
            serials = sorted({row.serial for row in rows})
            links = ask(serials)
            if not isinstance(links, Sequence) or len(links) != len(serials):
                raise WatchError(f"the linkage service answered {len(links) if isinstance(links, Sequence) else 0} "
                                 f"links for {len(serials)} serials")
            by_serial = dict(zip(serials, links, strict=True))
            at = self.clock()
            judged = [self._judge_link(row, by_serial[row.serial], at) for row in rows]
            linkable = [(row, j) for row, j in zip(rows, judged, strict=True) if isinstance(j, _Admitted)]
            try:  # the batch's successors watched and their old rows linked in one transaction
                with Session(self.engine) as db, db.begin():
                    self._link_all(db, linkable, at)
            except IntegrityError:  # a racing relink or add watched one of them first: one by one
                for row, admitted in linkable:
                    try:
                        with Session(self.engine) as db, db.begin():
                            self._link_all(db, [(row, admitted)], at)
                    except IntegrityError:
                        with Session(self.engine) as db, db.begin():
                            _mark_linked(db, row, admitted, at)
            out.extend(Relinked(row.ref, row.serial, "linked", j.serial) if isinstance(j, _Admitted) else j
                       for row, j in zip(rows, judged, strict=True))

    @staticmethod
    def _link_all(db: Session, linkable: list[tuple[_Row, _Admitted]], at: dt.datetime) -> None:
        """Each admitted successor watched under its old row's reference (unless it is
        already) with its ``linked from`` event, and every old row marked linked, in a few
        set-based statements in ``db``'s transaction."""
        if not linkable:
            return
        refs = sorted({row.ref for row, _admitted in linkable})
        watched: set[tuple[str, str, str]] = set()
        for i in range(0, len(refs), _BATCH):
            watched.update(tuple(r) for r in db.execute(
                select(RpWatchRow.ref, RpWatchRow.issuer_key_id, RpWatchRow.serial)
                .where(RpWatchRow.ref.in_(refs[i:i + _BATCH]))))
        rows, events = [], []
        for row, a in linkable:
            if (row.ref, a.key_id, a.serial) in watched:
                continue
            watched.add((row.ref, a.key_id, a.serial))
            values, event = _new_entry(row.ref, a, at, f"linked from {row.serial}")
            rows.append(values)
            events.append(event)
        if rows:
            db.execute(insert(RpWatchRow), rows)
            db.execute(insert(RpWatchEventRow), events)
        table = RpWatchRow.__table__
        db.connection().execute(
            table.update().where(table.c.id == bindparam("old_id"), table.c.successor.is_(None))
            .values(successor=bindparam("new_serial"), linked_at=at),
            [{"old_id": row.id, "new_serial": a.serial} for row, a in linkable])

    def _judge_link(self, row: _Row, link: Any, at: dt.datetime) -> Relinked | _Admitted:
        """The link the service gave for one watched certificate: its successor admitted to the
        list, or what to report instead."""
        try:
            if not isinstance(link, dict) or _norm_serial(str(link.get("serial"))) != row.serial:
                raise WatchError(f"the linkage service's answer is not about serial {row.serial}")
            if not link.get("found"):
                said = link.get("problem")
                return Relinked(row.ref, row.serial, "unknown to the issuer",
                                problem=None if said is None else str(said)[:200])
            current = link.get("current")
            chosen = next((s for s in link.get("successors") or () if isinstance(s, dict)
                           and current is not None and s.get("serial") == current), None)
            if chosen is None:
                return Relinked(row.ref, row.serial, "no valid successor")
            try:
                der = base64.b64decode(chosen.get("certificate") or "", validate=True)
                cert = load_certificate(der)
                kind = classify(cert).value
            except (ValueError, TypeError, JpkiError) as exc:
                raise WatchError(f"the successor's certificate does not parse: {exc}") from None
            if kind != "auth" or serial_hex(cert.serial_number) != _norm_serial(str(current)):
                raise WatchError(f"the successor's certificate is not the user-authentication "
                                 f"certificate {current}")
            return self._admit(cert, at)
        except WatchError as exc:
            return Relinked(row.ref, row.serial, "refused", problem=str(exc))

    # -- sweeps --------------------------------------------------------------------------

    def sweep(self, via: str = "crl", refs: Sequence[str] | None = None) -> SweepReport:
        """Ask about every certificate whose status can still change (module docstring), or
        only those of the customers ``refs``, and record what changed. The list is read
        :data:`CHUNK` rows at a time (memory stays bounded however long it is); each CRL is
        fetched and judged once per sweep."""
        if via not in VIA:
            raise WatchError(f"unknown sweep {via!r}: one of {', '.join(VIA)}")
        at = self.clock()
        report = SweepReport(at=at, via=via)
        # plain rows of the columns a sweep reads (no ORM objects: a list may be long); a CRL
        # sweep reads one certificate per scope, not each row's
        columns = [RpWatchRow.id, RpWatchRow.ref, RpWatchRow.purpose, RpWatchRow.serial,
                   RpWatchRow.issuer_key_id, RpWatchRow.not_after, RpWatchRow.crl_url,
                   RpWatchRow.dp_names, RpWatchRow.ocsp_url, RpWatchRow.status, RpWatchRow.reason,
                   RpWatchRow.invalid_since, RpWatchRow.revoked_at]
        if via == "ocsp":
            columns.append(RpWatchRow.certificate)
        query = select(*columns).where(RpWatchRow.status.not_in(FINAL)).order_by(RpWatchRow.id)
        if refs is not None:
            query = query.where(RpWatchRow.ref.in_([check_ref(r) for r in refs]))
        roots = {_ski(r): r for r in self.roots()}
        crls: dict[tuple[str, str], tuple[Source, tuple[x509.CertificateRevocationList, dict] | None]] = {}
        last = 0
        while True:
            with self.engine.connect() as conn:
                rows = list(conn.execute(query.where(RpWatchRow.id > last).limit(CHUNK)))
            if not rows:
                break
            last = rows[-1].id
            report.asked += len(rows)
            live, expired = [], []
            for row in rows:
                if row.not_after < at:
                    expired.append((row, _Verdict("expired", as_of=row.not_after, source="notAfter")))
                else:
                    live.append(row)
            self._record(expired, at, report)
            if via == "crl":
                self._sweep_crl(live, roots, at, report, crls)
            else:
                self._sweep_ocsp(live, roots, at, report)
        report.sources = [source for source, _judged in crls.values()]
        report.counts = self.counts()
        return report

    def _judged_crl(self, url: str, key_id: str, root: x509.Certificate | None, at: dt.datetime
                    ) -> tuple[Source, tuple[x509.CertificateRevocationList, dict] | None]:
        """The CRL at ``url`` fetched and judged (signed by ``root``, current), its entries
        by serial; or None, with the problem in the :class:`Source`."""
        if root is None:
            return Source(url, key_id, 0, problem=f"root {key_id} is no longer trusted"), None
        crl = self._fetch_crl(url)
        if isinstance(crl, str):
            return Source(url, key_id, 0, problem=crl), None
        refused = judge_crl(crl, root, at)
        if refused:
            return Source(url, key_id, 0, crl.last_update_utc, crl.next_update_utc,
                          problem=f"CRL at {url}: {refused.reason}"), None
        revoked = {e.serial_number: e for e in crl}
        return Source(url, key_id, 0, crl.last_update_utc, crl.next_update_utc, len(revoked)), (crl, revoked)

    def _sweep_crl(self, rows: list[_Row], roots: dict[str, x509.Certificate], at: dt.datetime,
                   report: SweepReport,
                   crls: dict[tuple[str, str], tuple[Source, tuple[x509.CertificateRevocationList, dict] | None]]
                   ) -> None:
        groups: dict[tuple[str | None, str], list[_Row]] = defaultdict(list)
        for row in rows:
            groups[(row.crl_url, row.issuer_key_id)].append(row)
        for (url, key_id), members in groups.items():
            if url is None:
                self._unjudged(members, "certificate names no CRL distribution point", at, report)
                continue
            if (url, key_id) not in crls:
                crls[(url, key_id)] = self._judged_crl(url, key_id, roots.get(key_id), at)
            source, judged = crls[(url, key_id)]
            crls[(url, key_id)] = (replace(source, certificates=source.certificates + len(members)), judged)
            if judged is None:
                self._unjudged(members, source.problem or "", at, report)
                continue
            crl, revoked = judged
            evidence = f"CRL {url}"
            good = _Verdict("good", as_of=crl.last_update_utc, source=evidence)
            scopes: dict[str, list[_Row]] = defaultdict(list)
            for row in members:
                scopes[row.dp_names].append(row)
            verdicts = []
            for same_names in scopes.values():
                # certificates naming the same distribution points are in the CRL's scope
                # (issuingDistributionPoint) or out of it together: one is checked for all
                out_of_scope = crl_scope(self._certificate(same_names[0]), crl)
                if out_of_scope:
                    self._unjudged(same_names, f"CRL at {url}: {out_of_scope.reason}", at, report)
                    continue
                for row in same_names:
                    entry = revoked.get(int(row.serial, 16))
                    if entry is None:
                        verdicts.append((row, good))
                        continue
                    reason = crl_reason(entry)
                    verdicts.append((row, _Verdict("hold" if reason == "certificateHold" else "revoked",
                                                   reason, entry.revocation_date_utc,
                                                   crl.last_update_utc, evidence, crl_invalidity(entry))))
            self._record(verdicts, at, report)

    def _certificate(self, row: _Row) -> x509.Certificate:
        with Session(self.engine) as db:
            der = db.scalar(select(RpWatchRow.certificate).where(RpWatchRow.id == row.id))
        return x509.load_der_x509_certificate(der)

    def _fetch_crl(self, url: str) -> x509.CertificateRevocationList | str:
        got = fetch_crl(url, self.client)
        return got.reason if isinstance(got, Check) else got

    def _sweep_ocsp(self, rows: list[_Row], roots: dict[str, x509.Certificate],
                    at: dt.datetime, report: SweepReport) -> None:
        for row in rows:
            root = roots.get(row.issuer_key_id)
            if root is None:
                self._unjudged([row], f"root {row.issuer_key_id} is no longer trusted", at, report)
                continue
            cert = x509.load_der_x509_certificate(row.certificate)
            got = ocsp_answer(cert, root, at, url=row.ocsp_url, client=self.client)
            if isinstance(got, Check):
                self._unjudged([row], got.reason, at, report)
                continue
            status = {"good": "good", "unknown": "unknown"}.get(got.status, "revoked")
            if status == "revoked" and got.reason == "certificateHold":
                status = "hold"
            self._record([(row, _Verdict(status, got.reason, got.revoked_at, got.this_update,
                                         f"OCSP {got.url}", got.invalid_since))], at, report)

    def _unjudged(self, rows: Iterable[_Row], problem: str, at: dt.datetime,
                  report: SweepReport) -> None:
        ids = []
        for row in rows:
            report.unjudged.append(Unjudged(row.ref, row.serial, problem))
            ids.append(row.id)
        with Session(self.engine) as db, db.begin():
            for i in range(0, len(ids), _BATCH):
                db.execute(update(RpWatchRow).where(RpWatchRow.id.in_(ids[i:i + _BATCH]))
                           .values(problem=problem[:2000], checked_at=at))

    def _record(self, verdicts: list[tuple[_Row, _Verdict]], at: dt.datetime,
                report: SweepReport) -> None:
        """Write the verdicts in one transaction. A certificate whose status, reason and
        invalidity date stay as read is refreshed (evidence time, check time) with the others
        alike, in batches; one whose status, reason or invalidity date moved (a revocation
        amended) gets its own UPDATE, conditional on all three as read, and an event (and a
        change in ``report``) only when that UPDATE was the one that moved it. A revoked
        certificate the evidence calls anything but revoked is reported unjudged (a
        revocation is never undone) and keeps its status."""
        undone = [row for row, verdict in verdicts
                  if row.status == "revoked" and verdict.status not in ("revoked", "expired")]
        if undone:
            self._unjudged(undone, "revoked before, and this evidence does not say revoked: a revocation "
                                   "is never undone, the status is kept", at, report)
            verdicts = [(row, verdict) for row, verdict in verdicts
                        if not (row.status == "revoked" and verdict.status not in ("revoked", "expired"))]
        if not verdicts:
            return
        same: dict[tuple, list[int]] = defaultdict(list)
        with Session(self.engine) as db, db.begin():
            for row, verdict in verdicts:
                if (verdict.status, verdict.reason, verdict.invalid_since) == (row.status, row.reason,
                                                                               row.invalid_since):
                    # refreshed in batches of one (status, reason, date, evidence time): a
                    # revocation time is the row's own, so it is set (one UPDATE each) only
                    # where the evidence gives another than the one held, which it does not
                    # (an amendment keeps it), and every revoked row is not an UPDATE of its own
                    moved = verdict.revoked_at if verdict.revoked_at != row.revoked_at else _KEPT
                    same[(row.status, row.reason, row.invalid_since, verdict.as_of, moved)].append(row.id)
                    continue
                done = db.execute(update(RpWatchRow).where(_as_read(row)).values(
                    status=verdict.status, reason=verdict.reason, revoked_at=verdict.revoked_at,
                    invalid_since=verdict.invalid_since, as_of=verdict.as_of, checked_at=at,
                    problem=None)).rowcount
                if not done:
                    continue  # another sweep moved it first and recorded the change
                event = RpWatchEventRow(ref=row.ref, serial=row.serial, purpose=row.purpose,
                                        seen_at=at, before=row.status, after=verdict.status,
                                        reason=verdict.reason, revoked_at=verdict.revoked_at,
                                        invalid_since=verdict.invalid_since, as_of=verdict.as_of,
                                        source=verdict.source)
                db.add(event)
                db.flush()
                report.changes.append(Change.of(event))
            for (status, reason, invalid_since, as_of, moved), ids in same.items():
                values = {"as_of": as_of, "checked_at": at, "problem": None}
                if moved is not _KEPT:
                    values["revoked_at"] = moved
                for i in range(0, len(ids), _BATCH):
                    db.execute(update(RpWatchRow).where(
                        RpWatchRow.id.in_(ids[i:i + _BATCH]), RpWatchRow.status == status,
                        _is(RpWatchRow.reason, reason), _is(RpWatchRow.invalid_since, invalid_since),
                    ).values(**values))


#: Rows refreshed by one UPDATE at most (SQLite binds at most 32766 parameters).
_BATCH = 500
#: A refresh's revocation time when the evidence gives the one the row holds: left as it is.
_KEPT = object()


def _is(column, value):  # noqa: ANN001, ANN202 - a SQL condition
    """``column`` holds ``value`` (IS NULL for None: ``= NULL`` is never true)."""
    return column.is_(None) if value is None else column == value


def _as_read(row: _Row):  # noqa: ANN202 - a SQL condition
    """The row still has the status, reason and invalidity date it was read with."""
    return and_(RpWatchRow.id == row.id, RpWatchRow.status == row.status,
                _is(RpWatchRow.reason, row.reason), _is(RpWatchRow.invalid_since, row.invalid_since))


@dataclass(frozen=True)
class _Admitted:
    """A certificate :meth:`RevocationWatch._admit` let on the list."""

    cert: x509.Certificate
    purpose: str
    key_id: str
    serial: str


def _same(ref: str, admitted: _Admitted):  # noqa: ANN202 - a SELECT
    return select(RpWatchRow).where(RpWatchRow.ref == ref, RpWatchRow.issuer_key_id == admitted.key_id,
                                    RpWatchRow.serial == admitted.serial)


def _new_entry(ref: str, admitted: _Admitted, at: dt.datetime, source: str) -> tuple[dict, dict]:
    """The columns of a new ``rp_watch`` row for ``ref`` and the admitted certificate, and of
    its first event (``source``: how it came)."""
    cert = admitted.cert
    row = {"ref": ref, "purpose": admitted.purpose, "serial": admitted.serial, "issuer_key_id": admitted.key_id,
           "certificate": cert.public_bytes(Encoding.DER), "not_after": cert.not_valid_after_utc,
           "crl_url": certs.crl_url(cert), "dp_names": _dp_names(cert), "ocsp_url": certs.ocsp_url(cert),
           "status": "unchecked", "added_at": at}
    event = {"ref": ref, "serial": admitted.serial, "purpose": admitted.purpose, "seen_at": at,
             "before": None, "after": "unchecked", "source": source[:200]}
    return row, event


def _mark_linked(db: Session, row: _Row, admitted: _Admitted, at: dt.datetime) -> None:
    """The old row records its successor (once: a racing relink's mark stands)."""
    db.execute(update(RpWatchRow).where(RpWatchRow.id == row.id, RpWatchRow.successor.is_(None))
               .values(successor=admitted.serial, linked_at=at))


def _ski(root: x509.Certificate) -> str:
    try:
        return root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(root.public_key()).digest.hex()


def _dp_names(cert: x509.Certificate) -> str:
    """The names of the certificate's cRLDistributionPoints, one canonical string (sorted;
    a directory name as RFC 4514, a URI as it is): equal for two certificates exactly when
    the CRL scope check sees the same names."""
    try:
        dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return ""
    names = set()
    for dp in dps:
        for name in dp.full_name or []:
            value = name.value.rfc4514_string() if isinstance(name, x509.DirectoryName) else str(name.value)
            names.add(f"{type(name).__name__}:{value}")
    return "\n".join(sorted(names))


def _norm_serial(serial: str) -> str:
    try:
        return serial_text(parse_serial(serial))
    except SerialError as exc:
        raise WatchError(str(exc)) from None
