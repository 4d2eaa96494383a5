"""Token status mechanisms: draft-ietf-oauth-status-list (Status List, Status List Token
in CWT form) and the ISO/IEC 18013-5 2nd edition Identifier List. Pure: no I/O, no clock
(times are parameters). See ``specs/status-list.md``.
"""

from protocols.status._cwt import (
    CLAIM_EXP,
    CLAIM_IAT,
    CLAIM_IDENTIFIER_LIST,
    CLAIM_STATUS_LIST,
    CLAIM_SUB,
    CLAIM_TTL,
    CLOCK_SKEW,
    HEADER_TYP,
    TYP_IDENTIFIER_LIST,
    TYP_STATUS_LIST,
    CwtHeader,
    peek_header,
    peek_typ,
)
from protocols.status.allocation import DEFAULT_MAX_FILL, allocate_index
from protocols.status.bitlist import ALLOWED_BITS, DEFAULT_MAX_LIST_BYTES, Status, StatusList
from protocols.status.errors import (
    StatusIndexError,
    StatusListClaimError,
    StatusListDecodeError,
    StatusListError,
    StatusListFullError,
    StatusListSignatureError,
    StatusListTooLargeError,
    StatusListTrustError,
    StatusValueError,
)
from protocols.status.identifier_list import (
    IdentifierList,
    IdentifierListToken,
    build_identifier_list_token,
    decode_identifier_list_token,
    verify_identifier_list_token,
)
from protocols.status.token import (
    StatusListToken,
    build_status_list_token,
    decode_status_list_token,
    verify_status_list_token,
)

__all__ = [
    "ALLOWED_BITS",
    "CLAIM_EXP",
    "CLAIM_IAT",
    "CLAIM_IDENTIFIER_LIST",
    "CLAIM_STATUS_LIST",
    "CLAIM_SUB",
    "CLAIM_TTL",
    "CLOCK_SKEW",
    "DEFAULT_MAX_FILL",
    "DEFAULT_MAX_LIST_BYTES",
    "HEADER_TYP",
    "TYP_IDENTIFIER_LIST",
    "TYP_STATUS_LIST",
    "CwtHeader",
    "IdentifierList",
    "IdentifierListToken",
    "Status",
    "StatusIndexError",
    "StatusList",
    "StatusListClaimError",
    "StatusListDecodeError",
    "StatusListError",
    "StatusListFullError",
    "StatusListSignatureError",
    "StatusListToken",
    "StatusListTooLargeError",
    "StatusListTrustError",
    "StatusValueError",
    "allocate_index",
    "build_identifier_list_token",
    "build_status_list_token",
    "decode_identifier_list_token",
    "decode_status_list_token",
    "peek_header",
    "peek_typ",
    "verify_identifier_list_token",
    "verify_status_list_token",
]
