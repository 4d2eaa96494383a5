"""CRL partitions: one per municipality (J-LIS CRLDP ``OU=<prefecture>, CN=<municipality>
CRLDP``), addressed in URLs by an ASCII code.

The code is the holder's 6-digit local government code when the holder record carries one
(``municipality_code``); otherwise a stable 8-hex-digit digest of prefecture and municipality
(a simulator without the code table still partitions the same municipality the same way).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from protocols.jpki.profile import Municipality

from .models import JpkiPartition


def partition_code(prefecture: str, municipality: str, code: str | None = None) -> str:
    if code:
        return code
    return hashlib.sha256(f"{prefecture}/{municipality}".encode()).hexdigest()[:8]


def municipality_of(data: dict) -> Municipality:
    """The municipality (and CRL partition) of a holder record."""
    pref, muni = data["prefecture"], data["municipality"]
    return Municipality(pref, muni, partition_code(pref, muni, data.get("municipality_code")))


def remember(session: Session, municipality: Municipality) -> None:
    """Record the partition code -> names (idempotent)."""
    if session.get(JpkiPartition, municipality.code) is None:
        session.add(JpkiPartition(code=municipality.code, prefecture=municipality.prefecture,
                                  municipality=municipality.municipality))
        session.flush()


def lookup(session: Session, code: str) -> Municipality | None:
    row = session.get(JpkiPartition, code)
    if row is None:
        return None
    return Municipality(row.prefecture, row.municipality, row.code)


def all_codes(session: Session) -> list[str]:
    return list(session.scalars(select(JpkiPartition.code).order_by(JpkiPartition.code)))
