"""Every root generation of the time-stamping authority, with the units it certified, as the
registry has them: ``mcred tsa root list`` and ``GET /trust/tsa-roots`` (specs/issuer-keys.md,
"The TSA's root").

Read-only, from the registry alone (``issuer_keys``): the key store is never opened and
nothing is made (no first root, no unit, no staging: reading the TSA's unit would stage its
next root by itself), so an operator can look at the roots of an installation whose key store
is locked or elsewhere. A unit belongs to the root whose key identifier its certificate's
authorityKeyIdentifier names (the registry keeps no other link).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from issuer.db import IssuerKey
from issuer.tsa import (
    PURPOSE_ROOT,
    PURPOSE_UNIT,
    TimeStampAuthority,
    current_root,
    generation_of,
    staged_root,
)
from protocols.certs import authority_key_id, subject_key_id

#: the states of a root (:attr:`TsaRootInfo.state`) and of a unit (:attr:`TsaUnitInfo.state`)
STATES = ("current", "staged", "retired")
UNIT_STATES = ("stamping", "retired", "revoked", "expired")


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


@dataclass(frozen=True)
class TsaUnitInfo:
    """One TSA unit (never its key). ``state``: ``stamping`` (the newest unit, not revoked, not
    expired, certified by the current root: the one that stamps), ``retired`` (replaced, or
    retired with its root by a rollover: never used again), ``revoked``, ``expired``."""

    label: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    state: str
    revoked_at: dt.datetime | None
    reason: str | None
    key_destroyed_at: dt.datetime | None

    def to_json(self) -> dict:
        return {"label": self.label, "serial": format(self.serial, "x"), "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "state": self.state, "revoked_at": _iso(self.revoked_at),
                "reason": self.reason, "key_destroyed_at": _iso(self.key_destroyed_at)}


@dataclass(frozen=True)
class TsaRootInfo:
    """One root generation of the TSA, as :func:`list_roots` reads it."""

    label: str
    serial: int
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    state: str
    created_at: dt.datetime
    key_destroyed_at: dt.datetime | None
    #: the units it certified that are valid now (not revoked, not expired)
    valid_units: int
    #: the end of the last unit it certified that has not expired (revoked or not: its CRL lists
    #: a revoked one to its end); None: none
    duties_end_at: dt.datetime | None
    #: the distribution point of its CRL, which its units name (None: no public URL configured)
    crl: str | None
    units: tuple[TsaUnitInfo, ...]

    def to_json(self) -> dict:
        """A root in ``mcred tsa root list --json`` and ``GET /trust/tsa-roots``."""
        return {"label": self.label, "serial": format(self.serial, "x"), "subject": self.subject,
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "state": self.state, "created_at": self.created_at.isoformat(),
                "key_destroyed_at": _iso(self.key_destroyed_at), "valid_units": self.valid_units,
                "duties_end_at": _iso(self.duties_end_at), "crl": self.crl,
                "units": [u.to_json() for u in self.units]}


def list_roots(tsa: TimeStampAuthority, now: dt.datetime | None = None) -> list[TsaRootInfo]:
    """Every root generation of ``tsa``, oldest first, with its units, at ``now`` (default: the
    TSA's clock), from the registry alone: the key store is never asked. Empty before the
    first time-stamp (which makes the first root)."""
    now = now or tsa.clock()
    with tsa.sessions.begin() as s:  # one read transaction, committed
        roots, units = _rows(s, PURPOSE_ROOT), _rows(s, PURPOSE_UNIT)
    current, staged = current_root(roots), staged_root(roots, now)
    unit_certs = [(row, x509.load_der_x509_certificate(row.certificate)) for row in units]
    out = []
    for row in roots:
        cert = x509.load_der_x509_certificate(row.certificate)
        state = ("staged" if staged is not None and row.label == staged.label else
                 "current" if current is not None and row.label == current.label else "retired")
        ski = subject_key_id(cert)
        mine = []
        for unit, ucert in unit_certs:
            if authority_key_id(ucert) != ski:
                continue
            end = ucert.not_valid_after_utc
            newest = unit.label == units[-1].label
            ustate = ("revoked" if unit.revoked_at is not None else "expired" if now >= end else
                      "stamping" if newest and state == "current" else "retired")
            mine.append(TsaUnitInfo(unit.label, ucert.serial_number, ucert.not_valid_before_utc, end, ustate,
                                    unit.revoked_at, unit.revocation_reason, unit.key_destroyed_at))
        unexpired = [u.not_after for u in mine if now < u.not_after]
        out.append(TsaRootInfo(
            label=row.label, serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, state=state,
            created_at=row.created_at, key_destroyed_at=row.key_destroyed_at,
            valid_units=sum(1 for u in mine if u.revoked_at is None and now < u.not_after),
            duties_end_at=max(unexpired) if unexpired else None, crl=tsa.crl_url_of(generation_of(row.label)),
            units=tuple(mine)))
    return out


def _rows(s: Session, purpose: str) -> list[IssuerKey]:
    """The TSA's keys of ``purpose``, oldest generation first (by the number in the label, as
    the TSA orders them), detached from ``s``."""
    rows = s.scalars(select(IssuerKey).where(IssuerKey.purpose == purpose)).all()
    s.expunge_all()
    return sorted(rows, key=lambda r: generation_of(r.label))
