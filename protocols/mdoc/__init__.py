"""ISO/IEC 18013-5:2021 mdoc data model and protocol core (clauses 8 and 9). Pure: no I/O.

Definitions (this package) vs flows: the session state machines live with the parties;
here are the structures, session encryption as a sans-I/O object, issuing, the device's
authentication, and verification with named checks.
"""

from protocols.mdoc.chain import (
    EKU_MDL_DS,
    EKU_MDL_READER_AUTH,
    ChainError,
    VerifiedChain,
    verify_chain,
)
from protocols.mdoc.device import build_device_signed, build_document
from protocols.mdoc.engagement import CIPHER_SUITE_1, DeviceEngagement
from protocols.mdoc.errors import (
    IssuingError,
    MdocDecodeError,
    MdocEncodeError,
    MdocError,
    SessionDecryptError,
    SessionError,
)
from protocols.mdoc.issuer_signed import (
    IssuerSigned,
    IssuerSignedItem,
    is_issuer_signed,
    item_digest,
)
from protocols.mdoc.issuing import build_issuer_signed, issue_mso, make_items, sign_mso
from protocols.mdoc.mso import (
    DeviceKeyInfo,
    IdentifierListRef,
    MobileSecurityObject,
    MsoStatus,
    StatusListRef,
    ValidityInfo,
)
from protocols.mdoc.request import DeviceRequest, DocRequest, ItemsRequest
from protocols.mdoc.response import (
    STATUS_CBOR_DECODING_ERROR,
    STATUS_CBOR_VALIDATION_ERROR,
    STATUS_GENERAL_ERROR,
    STATUS_OK,
    DeviceAuth,
    DeviceResponse,
    DeviceSigned,
    Document,
)
from protocols.mdoc.session import (
    SESSION_STATUS_DECODING_ERROR,
    SESSION_STATUS_ENCRYPTION_ERROR,
    SESSION_STATUS_TERMINATION,
    SessionData,
    SessionEncryption,
    SessionEstablishment,
    derive_emac_key,
    derive_session_keys,
    ecdh,
)
from protocols.mdoc.transcript import (
    SessionTranscript,
    device_authentication_bytes,
    reader_authentication_bytes,
)
from protocols.mdoc.verify import (
    Check,
    DisclosedDocument,
    DocumentCheck,
    DocumentContext,
    IssuerSignedDocument,
    MdocVerifier,
    VerificationResult,
    json_value,
    key_authorizations_check,
    verify_device_response,
    verify_issuer_signed,
    verify_reader_auth,
)

__all__ = [
    "CIPHER_SUITE_1",
    "ChainError",
    "Check",
    "DeviceAuth",
    "DeviceEngagement",
    "DeviceKeyInfo",
    "DeviceRequest",
    "DeviceResponse",
    "DeviceSigned",
    "DisclosedDocument",
    "DocRequest",
    "Document",
    "DocumentCheck",
    "DocumentContext",
    "EKU_MDL_DS",
    "EKU_MDL_READER_AUTH",
    "IdentifierListRef",
    "IssuerSigned",
    "IssuerSignedItem",
    "IssuerSignedDocument",
    "IssuingError",
    "ItemsRequest",
    "MdocDecodeError",
    "MdocEncodeError",
    "MdocError",
    "MdocVerifier",
    "MobileSecurityObject",
    "MsoStatus",
    "SESSION_STATUS_DECODING_ERROR",
    "SESSION_STATUS_ENCRYPTION_ERROR",
    "SESSION_STATUS_TERMINATION",
    "STATUS_CBOR_DECODING_ERROR",
    "STATUS_CBOR_VALIDATION_ERROR",
    "STATUS_GENERAL_ERROR",
    "STATUS_OK",
    "SessionData",
    "SessionDecryptError",
    "SessionEncryption",
    "SessionError",
    "SessionEstablishment",
    "SessionTranscript",
    "StatusListRef",
    "ValidityInfo",
    "VerificationResult",
    "VerifiedChain",
    "build_device_signed",
    "build_document",
    "build_issuer_signed",
    "derive_emac_key",
    "derive_session_keys",
    "device_authentication_bytes",
    "ecdh",
    "is_issuer_signed",
    "issue_mso",
    "item_digest",
    "json_value",
    "key_authorizations_check",
    "make_items",
    "reader_authentication_bytes",
    "sign_mso",
    "verify_chain",
    "verify_device_response",
    "verify_issuer_signed",
    "verify_reader_auth",
]
