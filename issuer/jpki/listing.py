"""Every JPKI root generation of a slot as the registry has it: ``mcred jpki root list`` and
``GET /trust/jpki-roots`` (specs/issuer-keys.md, "The JPKI root generations").

Read-only, from the registry alone (``issuer_keys``, ``credentials``): the key store is never
opened and nothing is made (no first generation, no OCSP responder), so an operator can look
at the roots of an installation whose key store is locked or elsewhere. For each generation:
its certificate (serial, subject, validity, key identifier), its state (``issuing``,
``staged``: in the trust bundle, issuing nothing until the rollover starts it, ``retired``),
when its key was destroyed, how many certificates it issued are still valid, until when it
has duties (the last certificate it issued that has not expired: its CRLs and OCSP go on to
then, and its key may be destroyed after), the URLs of its CRLs (one per partition it issued
in, with ``key_id``: served whichever generation issues now) and its OCSP responders.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import func, select

from issuer.db import Credential, IssuerKey
from protocols.jpki.profile import Municipality

from .ca import KIND, JpkiCa, purpose_of, responder_purpose, staged_of
from .models import JpkiPartition

#: the states of a root generation (:attr:`RootGeneration.state`)
STATES = ("issuing", "staged", "retired")
#: the states of an OCSP responder (:attr:`ResponderInfo.state`)
RESPONDER_STATES = ("answering", "replaced", "expired")


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


@dataclass(frozen=True)
class ResponderInfo:
    """One delegated OCSP responder of a root generation (never its key). ``state``:
    ``answering`` (the newest of its generation, not expired: it signs the answers), ``replaced``
    (a newer one answers; its key may be destroyed), ``expired``."""

    label: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    state: str
    key_destroyed_at: dt.datetime | None

    def to_json(self) -> dict:
        return {"label": self.label, "serial": format(self.serial, "x"), "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "state": self.state,
                "key_destroyed_at": _iso(self.key_destroyed_at)}


@dataclass(frozen=True)
class RootGeneration:
    """One root generation of a slot, as :func:`list_roots` reads it."""

    slot: str
    label: str
    algorithm: str
    key_id: bytes
    serial: int
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    state: str
    created_at: dt.datetime
    key_destroyed_at: dt.datetime | None
    #: certificates it issued that are valid now (not revoked, not on hold, not expired)
    valid_certificates: int
    #: the end of the last certificate it issued that has not expired (valid, on hold or
    #: revoked: a revoked one is on its CRL to its end); None: none
    duties_end_at: dt.datetime | None
    crls: tuple[str, ...]
    responders: tuple[ResponderInfo, ...]

    def to_json(self) -> dict:
        """A generation in ``mcred jpki root list --json`` and ``GET /trust/jpki-roots``."""
        return {"slot": self.slot, "label": self.label, "algorithm": self.algorithm, "key_id": self.key_id.hex(),
                "serial": format(self.serial, "x"), "subject": self.subject,
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "state": self.state, "created_at": self.created_at.isoformat(),
                "key_destroyed_at": _iso(self.key_destroyed_at), "valid_certificates": self.valid_certificates,
                "duties_end_at": _iso(self.duties_end_at), "crls": list(self.crls),
                "responders": [r.to_json() for r in self.responders]}


def list_roots(ca: JpkiCa, slots: tuple[str, ...] = ("sign", "auth"),
               now: dt.datetime | None = None) -> list[RootGeneration]:
    """Every root generation of ``slots`` (in that order; each slot's oldest first, as the
    trust bundle lists them) at ``now`` (default: the CA's clock), from the registry alone:
    ``ca``'s key store is never asked (it may be None). Empty for a slot not set up yet."""
    now = now or ca.clock()
    out: list[RootGeneration] = []
    with ca.sessions.begin() as s:  # one read transaction, committed (see JpkiCa.generations)
        towns = {row.code: Municipality(row.prefecture, row.municipality, row.code)
                 for row in s.scalars(select(JpkiPartition))}
        for slot in slots:
            purpose = purpose_of(slot)
            kind = KIND[purpose]
            generations = ca.generations(purpose, s)
            staged = staged_of(generations, now)
            counts = dict(s.execute(
                select(Credential.issuer_key, func.count()).where(
                    Credential.kind == kind, Credential.status == "valid", Credential.not_after > now)
                .group_by(Credential.issuer_key)).all())
            ends = dict(s.execute(
                select(Credential.issuer_key, func.max(Credential.not_after)).where(
                    Credential.kind == kind, Credential.not_after > now)
                .group_by(Credential.issuer_key)).all())
            issued_in: dict[str, list[str]] = {}
            for label, code in s.execute(select(Credential.issuer_key, Credential.partition).where(
                    Credential.kind == kind).distinct().order_by(Credential.partition)):
                if code:
                    issued_in.setdefault(label, []).append(code)
            responders: dict[str, list[IssuerKey]] = {}
            for row in s.scalars(select(IssuerKey).where(IssuerKey.purpose == responder_purpose(purpose))
                                 .order_by(IssuerKey.created_at, IssuerKey.label)):
                responders.setdefault(row.label.rpartition("-ocsp-")[0], []).append(row)
            for g in generations:
                cert = g.certificate
                state = ("issuing" if g.active else
                         "staged" if staged is not None and staged.label == g.label else "retired")
                crls = [f"{ca.profile.crl_uri(purpose, ca.profile.partition_of(towns[code]))}?key_id={g.key_id.hex()}"
                        for code in issued_in.get(g.label, []) if code in towns]
                out.append(RootGeneration(
                    slot=purpose.value, label=g.label, algorithm=g.algorithm, key_id=g.key_id,
                    serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
                    not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, state=state,
                    created_at=g.created_at, key_destroyed_at=g.key_destroyed_at,
                    valid_certificates=int(counts.get(g.label, 0)), duties_end_at=ends.get(g.label),
                    crls=tuple(dict.fromkeys(crls)), responders=_responders(responders.get(g.label, []), now)))
    return out


def _responders(rows: list[IssuerKey], now: dt.datetime) -> tuple[ResponderInfo, ...]:
    """The OCSP responders of one generation (``rows``, oldest first) and their states."""
    out = []
    for i, row in enumerate(rows):
        cert = x509.load_der_x509_certificate(row.certificate)
        end = cert.not_valid_after_utc
        state = "expired" if now >= end else "answering" if i == len(rows) - 1 else "replaced"
        out.append(ResponderInfo(row.label, cert.serial_number, cert.not_valid_before_utc, end, state,
                                 row.key_destroyed_at))
    return tuple(out)
