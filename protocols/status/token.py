"""The Status List Token in CWT form (draft-ietf-oauth-status-list section 5.2).

``COSE_Sign1`` tag 18, protected ``typ`` (16) ``application/statuslist+cwt`` and the
signer certificate in ``x5chain`` (33); claims ``sub`` (2, the list URI), ``iat`` (6),
``exp`` (4), ``ttl`` (65534) and ``status_list`` (65533) = ``{"bits": uint, "lst": bstr,
? "aggregation_uri": tstr}``. The signer is a status-list signer certificate issued by the
IACA (:func:`protocols.iaca.status_list_signer_builder`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from protocols import cose
from protocols.iaca import EKU_STATUS_LIST_SIGNER
from protocols.status._cwt import (
    CLAIM_STATUS_LIST,
    TYP_STATUS_LIST,
    CwtHeader,
    open_cwt,
    sign_cwt,
    verify_cwt,
)
from protocols.status.bitlist import DEFAULT_MAX_LIST_BYTES, StatusList
from protocols.status.errors import StatusListDecodeError, StatusValueError


@dataclass(frozen=True)
class StatusListToken:
    """A decoded (and, from :func:`verify_status_list_token`, verified) Status List Token."""

    header: CwtHeader
    status_list: StatusList
    aggregation_uri: str | None = None

    def status(self, index: int) -> int:
        """The status at ``index`` (``StatusIndexError`` outside the list)."""
        return self.status_list.get(index)


def build_status_list_token(
    status_list: StatusList,
    *,
    uri: str,
    iat: dt.datetime,
    signer: cose.CoseSigner,
    certificate: x509.Certificate,
    exp: dt.datetime | None = None,
    ttl: int | None = None,
    aggregation_uri: str | None = None,
) -> bytes:
    """Compress and sign ``status_list`` as the token published at ``uri``."""
    body: dict = {"bits": status_list.bits, "lst": status_list.compress()}
    if aggregation_uri is not None:
        body["aggregation_uri"] = aggregation_uri
    return sign_cwt({CLAIM_STATUS_LIST: body}, typ=TYP_STATUS_LIST, uri=uri, iat=iat, exp=exp,
                    ttl=ttl, signer=signer, certificate=certificate)


def decode_status_list_token(data: bytes, *, max_list_bytes: int = DEFAULT_MAX_LIST_BYTES) -> StatusListToken:
    """Parse a token WITHOUT verifying it (tools, ``mcred status-list show``)."""
    _, header, claims = open_cwt(data, typ=TYP_STATUS_LIST)
    return _token(header, claims, max_list_bytes)


def verify_status_list_token(
    data: bytes,
    *,
    trust_anchor: x509.Certificate,
    uri: str,
    now: dt.datetime,
    fetched_at: dt.datetime | None = None,
    eku: x509.ObjectIdentifier = EKU_STATUS_LIST_SIGNER,
    max_list_bytes: int = DEFAULT_MAX_LIST_BYTES,
) -> StatusListToken:
    """Verify a token referenced as ``uri`` at time ``now`` against the IACA ``trust_anchor``.

    Raises a :class:`StatusListError` subclass naming the first failed step: decoding, typ,
    signer chain, signature, sub/iat/exp/ttl, or the list itself.
    """
    message, header, claims = open_cwt(data, typ=TYP_STATUS_LIST)
    verify_cwt(message, header, trust_anchor=trust_anchor, uri=uri, now=now,
               fetched_at=fetched_at, eku=eku)
    return _token(header, claims, max_list_bytes)


def _token(header: CwtHeader, claims: dict, max_list_bytes: int) -> StatusListToken:
    body = claims.get(CLAIM_STATUS_LIST)
    if not isinstance(body, dict):
        raise StatusListDecodeError("claim status_list (65533) missing or not a map")
    bits, lst = body.get("bits"), body.get("lst")
    if not isinstance(lst, bytes):
        raise StatusListDecodeError("status_list.lst missing or not a byte string")
    aggregation_uri = body.get("aggregation_uri")
    if aggregation_uri is not None and not isinstance(aggregation_uri, str):
        raise StatusListDecodeError("status_list.aggregation_uri must be a text string")
    try:
        status_list = StatusList.decompress(lst, bits, max_bytes=max_list_bytes)
    except StatusValueError as exc:
        raise StatusListDecodeError(f"status_list.bits: {exc}") from None
    return StatusListToken(header, status_list, aggregation_uri)
