"""The user-authentication certificate linkage service (利用者証明用電子証明書の新旧紐付け).

A relying party that keys its customers' accounts by the serial number of their
user-authentication certificate (e-Tax binds its user number to it, the health-insurance
check of マイナ保険証 and the マイキープラットフォーム bind theirs) loses the customer when that
certificate is replaced: a new phone (機種変更), a phone reported lost then replaced, a card
renewal, a move to P-384. J-LIS therefore tells relying parties which newer
user-authentication certificates followed an old one, by serial number, so that the account
follows the holder without a new registration.

:func:`successors` answers a batch of old serials. For each: whether it is a
user-authentication certificate of this issuer, and the user-authentication certificates
issued to the same holder after it, oldest first, with their state; ``current`` is the
newest that is valid now (None when there is none: the holder died, moved abroad, or has not
been given a new one yet). A serial of a signing certificate is answered as unknown: a
signing certificate carries the basic four data and is followed only with the holder's
consent (:mod:`issuer.jpki.consents`).

What mcred adds to J-LIS's answer: each successor's certificate (DER). A
user-authentication certificate carries no basic four data (``C=JP, CN=<random id>``), and
with it the relying party can watch the new certificate at once
(:meth:`reader.rp_watch.RevocationWatch.relink`) instead of waiting for the customer's next
login.

Serials are 159 random bits (:func:`issuer.jpki.ca.random_serial`): one that the relying
party was not shown cannot be guessed. Every batch is audited (``linkage.query``: the relying
party, how many serials were asked and how many were linked; never the serials).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from issuer.db import AuditEvent, Credential, utcnow
from protocols.certs import MAX_SERIAL, SerialError, parse_serial, serial_text

KIND = "jpki-auth"
#: Serials one request may ask about.
MAX_BATCH = 1000
#: The longest serial text a request may give: ``serial=``, ``0x`` and 21 octets (20, and
#: a leading ``00`` some tools print) colon-separated are 71 characters; a decimal serial of
#: 20 octets 49 digits.
SERIAL_MAX = 80
#: Significant hex digits of a serial of at most 20 octets (RFC 5280 4.1.2.2).
_HEX_DIGITS = 40


class LinkageRefused(Exception):
    """A linkage request cannot be answered as asked; the message says why."""


def normal_serial(serial: str) -> str:
    """A serial as the registry keeps it: lower-case hex without leading zeros.

    Read as relying parties copy it: hex as the registry writes it (``1a2b...``), upper
    case, ``0x1A2B...``, ``openssl x509 -serial``'s ``serial=1A2B...``, ``openssl x509
    -text``'s ``1a:2b:...``, octets spaced (:func:`protocols.certs.parse_serial`), and
    decimal (Python's ``serial_number``, some certificate viewers) where it cannot be hex:
    only digits, more than 40 of them without leading zeros, so more than 20 octets read as
    hex. A serial of at most 40 digits is hex, as it always was here (every serial of this
    issuer has 159 random bits, whose decimal has 41 to 48 digits unless the value falls
    below 10^40, about 1 in 10^8). :class:`LinkageRefused` naming the value for anything
    else, zero, or more than 20 octets."""
    if not isinstance(serial, str):
        raise LinkageRefused(f"serial {repr(serial)[:50]} is not text: give it as hex (1a2b..., 1a:2b:..., "
                             "0x1a2b...) or as decimal")
    if len(serial) > SERIAL_MAX:
        raise LinkageRefused(f"serial {serial[:50]!r}... is longer than {SERIAL_MAX} characters")
    try:
        return serial_text(parse_serial(serial))
    except SerialError as exc:
        digits = serial.strip().lstrip("0")
        if digits.isascii() and digits.isdecimal() and len(digits) > _HEX_DIGITS and int(digits) < MAX_SERIAL:
            return serial_text(int(digits))
        raise LinkageRefused(f"serial {serial[:50]!r} is not a serial number: {_why(exc)}; give it as hex "
                             "(1a2b..., 1A:2B:..., 0x1a2b..., serial=1A2B...) or as decimal") from None


def _why(exc: SerialError) -> str:
    """:class:`protocols.certs.SerialError`'s reason, without the value it repeats."""
    text = str(exc)
    for marker in ("is not hexadecimal", "is longer than", "has no hexadecimal digits"):
        if marker in text:
            return text[text.index(marker):]
    return text.removeprefix("serial 0: ")


@dataclass(frozen=True)
class Successor:
    serial: str
    issued_at: dt.datetime
    not_after: dt.datetime
    #: valid | hold | revoked | expired
    status: str
    reason: str | None
    certificate: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"serial": self.serial, "issued_at": self.issued_at.isoformat(),
                "not_after": self.not_after.isoformat(), "status": self.status, "reason": self.reason,
                "certificate": base64.b64encode(self.certificate).decode()}


@dataclass(frozen=True)
class Link:
    """The answer about one old serial."""

    serial: str
    #: False: not a user-authentication certificate of this issuer (``problem`` says so).
    found: bool
    successors: list[Successor] = field(default_factory=list)
    problem: str | None = None

    @property
    def current(self) -> Successor | None:
        """The newest successor valid now."""
        return next((s for s in reversed(self.successors) if s.status == "valid"), None)

    def to_dict(self) -> dict[str, Any]:
        current = self.current
        return {"serial": self.serial, "found": self.found,
                "successors": [s.to_dict() for s in self.successors],
                "current": current.serial if current else None, "problem": self.problem}


def _state(row: Credential, now: dt.datetime) -> str:
    if row.status == "valid" and now > row.not_after:
        return "expired"
    return row.status


def successors(sessions: sessionmaker[Session], serials: Sequence[str], *, relying_party: str,
               actor: str, now: dt.datetime | None = None) -> list[Link]:
    """One :class:`Link` per serial asked, in the order asked (module docstring).
    :class:`LinkageRefused` when the batch is empty, longer than :data:`MAX_BATCH` or holds a
    serial :func:`normal_serial` refuses: nothing is answered then."""
    now = now or utcnow()
    if not serials:
        raise LinkageRefused("no serial asked about")
    if len(serials) > MAX_BATCH:
        raise LinkageRefused(f"{len(serials)} serials asked about: at most {MAX_BATCH} a request")
    asked = [normal_serial(s) for s in serials]
    with sessions.begin() as s:
        olds: dict[str, list[Credential]] = defaultdict(list)
        for row in s.scalars(select(Credential).where(Credential.kind == KIND,
                                                      Credential.serial.in_(set(asked)))):
            olds[row.serial].append(row)
        holders = {row.holder_id for rows in olds.values() for row in rows}
        lines: dict[str, list[Credential]] = defaultdict(list)
        if holders:
            for row in s.scalars(select(Credential).where(Credential.kind == KIND,
                                                          Credential.holder_id.in_(holders))
                                 .order_by(Credential.issued_at, Credential.id)):
                lines[row.holder_id].append(row)
        links = []
        for serial in asked:
            rows = olds.get(serial, [])
            if len(rows) != 1:
                problem = ("not a user-authentication certificate of this issuer" if not rows else
                           "this serial names more than one user-authentication certificate of this issuer")
                links.append(Link(serial, False, problem=problem))
                continue
            old = rows[0]
            later = [r for r in lines[old.holder_id]
                     if (r.issued_at, r.id) > (old.issued_at, old.id)]
            links.append(Link(serial, True, [Successor(r.serial, r.issued_at, r.not_after, _state(r, now),
                                                       r.reason, r.body) for r in later]))
        s.add(AuditEvent(actor=actor, action="linkage.query", subject=relying_party[:128],
                         detail={"relying_party": relying_party, "asked": len(asked),
                                 "linked": sum(1 for link in links if link.successors)}))
    return links


def answer(sessions: sessionmaker[Session], serials: Sequence[str], *, relying_party: str,
           actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """:func:`successors` as ``POST /jpki/linkage`` answers it: ``{"links": [each
    :meth:`Link.to_dict`], "as_of"}``."""
    now = now or utcnow()
    links = successors(sessions, serials, relying_party=relying_party, actor=actor, now=now)
    return {"links": [link.to_dict() for link in links], "as_of": now.isoformat()}
