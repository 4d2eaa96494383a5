"""The Identifier List and its token (ISO/IEC 18013-5 2nd edition, status mechanism
``identifier_list``; MSO ``status: {"identifier_list": {"id": bstr, "uri": tstr}}``).

``IdentifierList = {"identifiers": {* bstr => IdentifierInfo}, ? "aggregation_uri": tstr}``
with ``IdentifierInfo`` a map (empty, reserved for future use): an mdoc whose identifier is
in the list is revoked. The token is a CWT like the Status List Token, with ``typ``
``application/identifierlist+cwt`` and the list at claim 65530.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from protocols import cose
from protocols.iaca import EKU_STATUS_LIST_SIGNER
from protocols.status._cwt import (
    CLAIM_IDENTIFIER_LIST,
    TYP_IDENTIFIER_LIST,
    CwtHeader,
    open_cwt,
    sign_cwt,
    verify_cwt,
)
from protocols.status.errors import StatusListDecodeError


@dataclass(frozen=True)
class IdentifierList:
    """The identifiers of revoked mdocs."""

    identifiers: frozenset[bytes]
    aggregation_uri: str | None = None

    def __contains__(self, identifier: object) -> bool:
        return identifier in self.identifiers

    def to_cbor(self) -> dict:
        out: dict = {"identifiers": {i: {} for i in sorted(self.identifiers)}}
        if self.aggregation_uri is not None:
            out["aggregation_uri"] = self.aggregation_uri
        return out

    @staticmethod
    def from_cbor(value: object) -> IdentifierList:
        if not isinstance(value, dict):
            raise StatusListDecodeError("identifier_list (65530) must be a map")
        identifiers = value.get("identifiers")
        if not isinstance(identifiers, dict):
            raise StatusListDecodeError("identifier_list.identifiers missing or not a map")
        for key, info in identifiers.items():
            if not isinstance(key, bytes):
                raise StatusListDecodeError("identifier_list: an identifier is not a byte string")
            if not isinstance(info, dict):
                raise StatusListDecodeError(f"identifier_list: info of {key.hex()} is not a map")
        aggregation_uri = value.get("aggregation_uri")
        if aggregation_uri is not None and not isinstance(aggregation_uri, str):
            raise StatusListDecodeError("identifier_list.aggregation_uri must be a text string")
        return IdentifierList(frozenset(identifiers), aggregation_uri)


@dataclass(frozen=True)
class IdentifierListToken:
    header: CwtHeader
    identifier_list: IdentifierList

    def is_revoked(self, identifier: bytes) -> bool:
        return identifier in self.identifier_list


def build_identifier_list_token(
    identifier_list: IdentifierList,
    *,
    uri: str,
    iat: dt.datetime,
    signer: cose.CoseSigner,
    certificate: x509.Certificate,
    exp: dt.datetime | None = None,
    ttl: int | None = None,
) -> bytes:
    return sign_cwt({CLAIM_IDENTIFIER_LIST: identifier_list.to_cbor()}, typ=TYP_IDENTIFIER_LIST,
                    uri=uri, iat=iat, exp=exp, ttl=ttl, signer=signer, certificate=certificate)


def decode_identifier_list_token(data: bytes) -> IdentifierListToken:
    """Parse WITHOUT verifying (tools)."""
    _, header, claims = open_cwt(data, typ=TYP_IDENTIFIER_LIST)
    return IdentifierListToken(header, IdentifierList.from_cbor(claims.get(CLAIM_IDENTIFIER_LIST)))


def verify_identifier_list_token(
    data: bytes,
    *,
    trust_anchor: x509.Certificate,
    uri: str,
    now: dt.datetime,
    fetched_at: dt.datetime | None = None,
    eku: x509.ObjectIdentifier = EKU_STATUS_LIST_SIGNER,
) -> IdentifierListToken:
    message, header, claims = open_cwt(data, typ=TYP_IDENTIFIER_LIST)
    verify_cwt(message, header, trust_anchor=trust_anchor, uri=uri, now=now,
               fetched_at=fetched_at, eku=eku)
    return IdentifierListToken(header, IdentifierList.from_cbor(claims.get(CLAIM_IDENTIFIER_LIST)))
